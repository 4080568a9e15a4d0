# SPDX-License-Identifier: MIT
"""CPython: the package pip builds from pyproject.toml works on its own, and a program
written for smtplib runs unchanged on `import smtp_client as smtplib`.

The wheel is built from a copy of the repository's packaging files (no build/ or egg-info
left in the work tree) with the venv's setuptools, installed into an empty folder, and used
from there alone: no tests/shim, no lib/ on the path.
"""

import shutil
import subprocess
import sys
import textwrap

import pytest

import package_check
from harness import ROOT

USERS = {"device": "s3cret"}

# Typical smtplib code, as found in tutorials and scripts: STARTTLS + login + sendmail with a
# refused recipient, noop/rset, the exception classes and their attributes, connect()/quit()
# by hand, SMTP_SSL. Only its import line changes between the two runs.
SMTPLIB_PROGRAM = '''\
import smtplib
import ssl
import sys

host, port, ssl_port, cafile = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
ctx = ssl.create_default_context(cafile=cafile)
msg = ("From: dev@example.com\\r\\nTo: a@example.com\\r\\nSubject: smtplib usage\\r\\n\\r\\n"
       "hello\\r\\n.a line with a leading dot\\r\\n")

with smtplib.SMTP(host, port, timeout=10) as s:
    s.set_debuglevel(0)
    code, _ = s.ehlo()
    print("ehlo", code, s.has_extn("starttls"), "size" in s.esmtp_features)
    print("starttls", s.starttls(context=ctx)[0])
    s.ehlo()
    print("login", s.login("device", "s3cret")[0])
    refused = s.sendmail("dev@example.com", ["a@example.com", "bad@example.com"], msg)
    print("refused", {k: v[0] for k, v in refused.items()})
    print("noop", s.noop()[0], "rset", s.rset()[0])

try:
    with smtplib.SMTP(host, port, timeout=10) as s:
        s.starttls(context=ctx)
        s.login("device", "wrong")
except smtplib.SMTPAuthenticationError as e:
    print("auth error", e.smtp_code, isinstance(e, smtplib.SMTPException))

try:
    with smtplib.SMTP(host, port, timeout=10) as s:
        s.starttls(context=ctx)
        s.login("device", "s3cret")
        s.sendmail("dev@example.com", ["bad@example.com"], msg)
except smtplib.SMTPRecipientsRefused as e:
    print("all refused", sorted(e.recipients), isinstance(e, smtplib.SMTPException))

s = smtplib.SMTP(timeout=10)
print("connect", s.connect(host, port)[0])
print("quit", s.quit()[0])

with smtplib.SMTP_SSL(host, ssl_port, context=ctx, timeout=10) as s:
    s.login("device", "s3cret")
    print("ssl", s.sendmail("dev@example.com", "a@example.com", msg.encode()))

try:
    smtplib.SMTP(host, 1, timeout=5)
except OSError as e:
    print("refused connection", type(e).__name__)
'''


@pytest.fixture(scope="module")
def installed(tmp_path_factory):
    """The wheel of this repository, installed into an empty folder; returns that folder."""
    tmp = tmp_path_factory.mktemp("pip")
    src = tmp / "src"
    src.mkdir()
    for name in ("pyproject.toml", "README.md", "LICENSE"):
        shutil.copy(ROOT / name, src / name)
    for d in ("lib", "cpython"):
        shutil.copytree(ROOT / d, src / d, ignore=shutil.ignore_patterns("__pycache__"))
    pip = [sys.executable, "-m", "pip", "--disable-pip-version-check", "--quiet"]
    r = subprocess.run(pip + ["wheel", "--no-deps", "--no-build-isolation", "--no-index",
                              "-w", str(tmp / "dist"), str(src)],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stdout + r.stderr
    (wheel,) = (tmp / "dist").glob("*.whl")
    site = tmp / "site"
    r = subprocess.run(pip + ["install", "--no-deps", "--no-index", "--target", str(site),
                              str(wheel)], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stdout + r.stderr
    return site


def _python(site, code, *args, cwd):
    # -S: no site-packages; the installed folder is the only place the library can come from.
    env = {"PYTHONPATH": str(site), "PYTHONDONTWRITEBYTECODE": "1", "PATH": "/usr/bin:/bin"}
    return subprocess.run([sys.executable, "-S", "-c", code, *map(str, args)], cwd=cwd,
                          env=env, capture_output=True, text=True, timeout=60)


def test_wheel_holds_the_modules_and_the_shim(installed, tmp_path):
    r = _python(installed, textwrap.dedent("""
        import micropython, smtp_client, smtp_message, smtp_outbox
        print(smtp_client.__version__, micropython.const(7))
        for m in (micropython, smtp_client, smtp_message, smtp_outbox):
            print(m.__file__.startswith(sys.argv[1]))
    """).replace("import micropython", "import sys, micropython"), installed, cwd=tmp_path)
    assert r.returncode == 0, r.stdout + r.stderr
    lines = r.stdout.split("\n")
    assert lines[0] == package_check.module_version("smtp_client") + " 7"
    assert lines[1:5] == ["True"] * 4


def test_smtplib_program_runs_unchanged(installed, mailserver, certs, tmp_path):
    refuse = {"bad@example.com": "550 5.1.1 No such user"}
    outputs = []
    for module in ("smtplib", "smtp_client"):
        srv = mailserver(tls="starttls", auth=USERS, refuse_rcpt=refuse)
        ssl_srv = mailserver(tls="implicit", auth=USERS)
        program = SMTPLIB_PROGRAM
        if module != "smtplib":
            program = program.replace("import smtplib\n", "import smtp_client as smtplib\n", 1)
        r = _python(installed, program, srv.host, srv.port, ssl_srv.port, certs["ca.pem"],
                    cwd=tmp_path)
        assert r.returncode == 0, f"{module}:\n{r.stdout}{r.stderr}"
        outputs.append(r.stdout)
        mails = srv.messages + ssl_srv.messages
        assert [m.rcpt_tos for m in mails] == [["a@example.com"], ["a@example.com"]], module
        assert all(m.content.endswith(b"\r\n.a line with a leading dot\r\n") for m in mails)
    assert outputs[0] == outputs[1]
    assert "refused {'bad@example.com': 550}" in outputs[0]
