# SPDX-License-Identifier: MIT
"""The test infrastructure itself: runtimes, run(), the real mail server, certificates.

The mail server is checked with CPython's smtplib, which is known good, so a failing library
test cannot be blamed on the harness.
"""

import base64
import smtplib
import ssl

import pytest

from harness import MICROPYTHON, free_port, run, run_ok

MSG = b"Subject: infra\r\n\r\n.leading dot\r\nbody\r\n"
USERS = {"device": "s3cret"}


def test_micropython_is_installed():
    assert MICROPYTHON, "micropython not found: run `make venv`"


def test_run_both_runtimes(runtime):
    out = run_ok("""
        import sys
        from micropython import const
        X = const(40)
        print(sys.implementation.name, X + 2, sys.argv[1:])
    """, runtime=runtime, args=["a", 1])
    assert out.split() == [runtime, "42", "['a',", "'1']"]


def test_run_returns_failures_and_heapsize():
    p = run("import sys\nprint('out')\nsys.exit(3)\n")
    assert (p.returncode, p.stdout) == (3, "out\n")
    # A tiny heap really limits allocations. (This port prints uncaught tracebacks on stdout.)
    p = run("b = bytearray(100000)\n", heapsize="16k")
    assert p.returncode == 1 and "MemoryError" in p.stdout + p.stderr


def test_run_timeout_shows_partial_output():
    with pytest.raises(AssertionError, match="(?s)timed out.*before the hang"):
        run("import time\nprint('before the hang')\ntime.sleep(30)\n", timeout=1)


def test_micropython_has_what_the_library_needs():
    run_ok("""
        import socket, ssl, tls, select, hashlib, binascii, asyncio, micropython
        hashlib.md5(b"x")
        micropython.heap_lock(); micropython.heap_unlock()
    """)


def _client(srv, ctx):
    if srv.tls == "implicit":
        return smtplib.SMTP_SSL(srv.host, srv.port, context=ctx, timeout=10)
    c = smtplib.SMTP(srv.host, srv.port, timeout=10)
    if srv.tls == "starttls":
        c.starttls(context=ctx)
    return c


@pytest.mark.parametrize("mechanism", ["PLAIN", "LOGIN", "CRAM-MD5"])
def test_mailserver_starttls_auth(mailserver, certs, mechanism):
    srv = mailserver(tls="starttls", auth=USERS)
    ctx = ssl.create_default_context(cafile=str(certs["ca.pem"]))  # verifies, checks hostname
    with _client(srv, ctx) as c:
        c.ehlo()
        c.user, c.password = "device", "s3cret"
        code, _ = c.auth(mechanism, getattr(c, "auth_" + mechanism.lower().replace("-", "_")))
        assert code == 235
        assert c.sendmail("dev@example.com", ["a@example.com", "b@example.com"], MSG) == {}
    (mail,) = srv.messages
    assert (mail.mail_from, mail.rcpt_tos) == ("dev@example.com", ["a@example.com", "b@example.com"])
    assert mail.content == MSG  # dot-stuffing undone: what the sender meant
    assert (mail.tls, mail.login) == (True, "device")
    assert srv.auth_log == [(mechanism, "device", True)]
    assert [tls for _, tls in srv.ehlo_log] == [False, True]  # EHLO again after STARTTLS


@pytest.mark.parametrize("mechanism", ["PLAIN", "LOGIN", "CRAM-MD5"])
def test_mailserver_wrong_password(mailserver, certs, mechanism):
    srv = mailserver(tls="starttls", auth=USERS, mechanisms=[mechanism])
    ctx = ssl.create_default_context(cafile=str(certs["ca.pem"]))
    with _client(srv, ctx) as c:
        with pytest.raises(smtplib.SMTPAuthenticationError) as e:
            c.login("device", "wrong")  # smtplib picks the only mechanism offered
        assert e.value.smtp_code == 535
    assert srv.auth_log == [(mechanism, "device", False)]


def test_mailserver_xoauth2(mailserver, certs):
    srv = mailserver(tls="starttls", auth=USERS)
    ctx = ssl.create_default_context(cafile=str(certs["ca.pem"]))
    with _client(srv, ctx) as c:
        c.ehlo()
        bad = base64.b64encode(b"user=device\x01auth=Bearer nope\x01\x01").decode()
        code, blob = c.docmd("AUTH XOAUTH2 " + bad)
        assert code == 334 and b"401" in base64.b64decode(blob)  # JSON error, then...
        assert c.docmd("")[0] == 535  # ...an empty line gets the final 535
        good = base64.b64encode(b"user=device\x01auth=Bearer s3cret\x01\x01").decode()
        assert c.docmd("AUTH XOAUTH2 " + good)[0] == 235
    assert srv.auth_log == [("XOAUTH2", "device", False), ("XOAUTH2", "device", True)]


def test_mailserver_requires_starttls_before_auth(mailserver):
    srv = mailserver(tls="starttls", auth=USERS)
    with smtplib.SMTP(srv.host, srv.port, timeout=10) as c:
        c.ehlo()
        assert "starttls" in c.esmtp_features and "auth" not in c.esmtp_features
        assert c.docmd("AUTH PLAIN " + base64.b64encode(b"\0device\0s3cret").decode())[0] == 530
        assert c.docmd("MAIL FROM:<a@b>")[0] == 530


def test_mailserver_advertise_auth_off(mailserver, certs):
    srv = mailserver(tls="starttls", auth=USERS, advertise_auth=False, ehlo_hide={"SIZE"})
    ctx = ssl.create_default_context(cafile=str(certs["ca.pem"]))
    with _client(srv, ctx) as c:
        c.ehlo()
        assert "auth" not in c.esmtp_features and "size" not in c.esmtp_features
        assert c.docmd("AUTH PLAIN " + base64.b64encode(b"\0device\0s3cret").decode())[0] == 235


def test_mailserver_implicit_tls(mailserver, certs):
    srv = mailserver(tls="implicit", auth=USERS)
    ctx = ssl.create_default_context(cafile=str(certs["ca.pem"]))
    with _client(srv, ctx) as c:
        c.login("device", "s3cret")
        c.sendmail("dev@example.com", ["a@example.com"], MSG)
    assert srv.messages[0].tls and srv.messages[0].login == "device"


@pytest.mark.parametrize("cert", ["untrusted", "wrongname"])
def test_bad_certificates_are_rejected(mailserver, certs, cert):
    srv = mailserver(tls="implicit", cert=cert)
    ctx = ssl.create_default_context(cafile=str(certs["ca.pem"]))
    with pytest.raises(ssl.SSLCertVerificationError):
        _client(srv, ctx)


def test_mailserver_plain_and_ipv6(mailserver):
    try:
        srv = mailserver(host="::1")
    except OSError:
        pytest.skip("no IPv6 loopback")
    with smtplib.SMTP(srv.host, srv.port, timeout=10) as c:
        c.sendmail("a@b", ["c@d"], MSG)
    assert srv.messages[0].content == MSG and not srv.messages[0].tls


def test_certs_reused(certs):
    from certs import make_certs

    before = certs["ca.der"].read_bytes()
    assert make_certs(certs["dir"])["ca.der"].read_bytes() == before


def test_micropython_verifies_against_ca_der(mailserver, certs):
    # The port's TLS takes DER and checks the name, including IP addresses in the SAN.
    srv = mailserver(tls="implicit")
    out = run_ok("""
        import socket, ssl, sys
        port, ca = int(sys.argv[1]), open(sys.argv[2], "rb").read()
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        ctx.verify_mode = ssl.CERT_REQUIRED
        ctx.load_verify_locations(cadata=ca)
        s = socket.socket()
        s.connect(socket.getaddrinfo("127.0.0.1", port)[0][-1])
        s = ctx.wrap_socket(s, server_hostname="127.0.0.1")
        print(s.read(4))
        s.close()
    """, args=[srv.port, certs["ca.der"]])
    assert out.strip() == "b'220 '"


def test_free_port_is_closed():
    with pytest.raises(ConnectionRefusedError):
        smtplib.SMTP("127.0.0.1", free_port(), timeout=5)


def test_versions_agree():
    # STYLE.md: __version__ in the module is the one source; package.json (mip), manifest.py
    # (freezing) and pyproject.toml (pip) must match it.
    import json
    import re

    from harness import LIB, ROOT

    pyproject = (ROOT / "pyproject.toml").read_text()
    versions = {
        "package.json": json.loads((ROOT / "package.json").read_text())["version"],
        "manifest.py": re.search(r'version="([^"]+)"', (ROOT / "manifest.py").read_text())[1],
    }
    # pyproject.toml reads it from the module (dynamic, attr smtp_client.__version__): there
    # is then nothing to disagree; a static version must match.
    static = re.search(r'(?m)^version = "([^"]+)"', pyproject)
    if static or 'attr = "smtp_client.__version__"' not in pyproject:
        versions["pyproject.toml"] = static[1] if static else None
    core = LIB / "smtp_client.py"
    if core.exists():
        m = re.search(r'(?m)^__version__ = "([^"]+)"', core.read_text())
        versions["lib/smtp_client.py"] = m[1] if m else None
    assert len(set(versions.values())) == 1, versions
