# SPDX-License-Identifier: MIT
"""`make demo`: MicroPython sends a mail to a local server over STARTTLS + AUTH.

1. make test certificates (build/demo-certs),
2. start a real SMTP server (aiosmtpd) on 127.0.0.1 that requires STARTTLS before AUTH,
3. run examples/demo.py under the MicroPython unix port, trusting only the test CA,
4. show what the server received.
Exits non-zero if the example failed or no mail arrived.
"""

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tools"))
from certs import make_certs  # noqa: E402
from mailserver import MailServer  # noqa: E402

USER, PASSWORD = "device", "correct horse battery staple"


def main():
    certs = make_certs(ROOT / "build" / "demo-certs")
    micropython = Path(sys.executable).parent / "micropython"
    # lib/ holds smtp_client; ".frozen" keeps the port's built-in modules importable.
    env = dict(os.environ, MICROPYPATH=f"{ROOT / 'lib'}:.frozen")
    with MailServer(tls="starttls", auth={USER: PASSWORD}, certdir=certs["dir"]) as srv:
        print(f"== SMTP server on {srv.host}:{srv.port} (STARTTLS required, AUTH as {USER!r})")
        argv = [str(micropython), "examples/demo.py", srv.host, str(srv.port), USER, PASSWORD,
                str(certs["ca.der"].relative_to(ROOT))]
        shown = ["micropython"] + argv[1:5] + ["'***'"] + argv[6:]
        print("== running: MICROPYPATH=lib:.frozen", " ".join(shown))
        try:
            p = subprocess.run(argv, cwd=ROOT, env=env, capture_output=True, text=True,
                               timeout=60)
            out, err, rc = p.stdout, p.stderr, p.returncode
        except subprocess.TimeoutExpired as e:
            out, err, rc = e.stdout or "", (e.stderr or "") + "\n(timed out after 60 s)", -1
            out, err = [x.decode() if isinstance(x, bytes) else x for x in (out, err)]
        print("== MicroPython said:")
        print(_indent(out + err) or "    (nothing)")
    mails = srv.messages
    for m in mails:
        print(f"== the server received a mail (TLS: {m.tls}, logged in as: {m.login})")
        print(f"    envelope from: {m.mail_from}")
        print(f"    envelope to:   {', '.join(m.rcpt_tos)}")
        print(_indent(m.content.decode("utf-8", "replace")))
    if rc != 0:
        print(f"== FAILED: the example exited with {rc}")
        return 1
    if not mails:
        print("== FAILED: the example finished but no mail arrived")
        return 1
    if not (mails[0].tls and mails[0].login == USER):
        print("== FAILED: the mail arrived without TLS or without AUTH")
        return 1
    print("== OK: one mail sent from MicroPython, over TLS, with AUTH, certificate verified")
    return 0


def _indent(text):
    return "\n".join("    " + line for line in text.rstrip().splitlines())


if __name__ == "__main__":
    sys.exit(main())
