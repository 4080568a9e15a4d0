# SPDX-License-Identifier: MIT
"""SMTP.set_debuglevel(): the redacted protocol trace (commands and replies shown; AUTH
arguments, answers to 334 challenges and message bodies not), on the unix port and CPython."""

import ast
import base64
import hmac
import textwrap

import pytest

from harness import run, run_ok

USER, PW = "u", "S3cret-Pw!x"
BODY_MARK = b"BODYMARKER-do-not-trace"

SNIPPET = '''\
import smtp_client as sc
lines = []
s = sc.SMTP({host!r}, {port}, timeout=10)
s.set_debuglevel(1, trace=lambda d, data: lines.append((d, data)))
s.starttls(context=sc.create_context(cadata=open({ca!r}, "rb").read()))
s.login({user!r}, {pw!r}, mechanism={mech!r})
s.sendmail("dev@example.com", ["a@example.com"], b"Subject: t\\r\\n\\r\\n{mark}\\r\\n.x\\r\\n")
s.quit()
for d, data in lines:
    print("R", repr((d, data)))
'''


def secrets(mech, trace):
    """Every form the credentials could take on the wire for this mechanism."""
    b64 = lambda b: base64.b64encode(b)  # noqa: E731
    pw = PW.encode()
    forms = [pw, b64(pw), b64(b"\0" + USER.encode() + b"\0" + pw),
             b64(b"user=" + USER.encode() + b"\x01auth=Bearer " + pw + b"\x01\x01"),
             b64(USER.encode()) if mech == "LOGIN" else pw]
    if mech == "CRAM-MD5":
        challenge = next(base64.b64decode(d[4:].strip()) for k, d in trace
                         if k == "reply" and d.startswith(b"334 "))
        digest = hmac.new(pw, challenge, "md5").hexdigest().encode()
        forms += [digest, b64(USER.encode() + b" " + digest)]
    return forms


@pytest.mark.parametrize("mech", ["PLAIN", "LOGIN", "CRAM-MD5", "XOAUTH2"])
def test_trace_redacts_secrets(runtime, mailserver, certs, mech):
    srv = mailserver(tls="starttls", auth={USER: PW})
    out = run_ok(SNIPPET.format(host=srv.host, port=srv.port, ca=str(certs["ca.der"]),
                                user=USER, pw=PW, mech=mech, mark=BODY_MARK.decode()),
                 runtime=runtime, timeout=60)
    trace = [ast.literal_eval(line[2:]) for line in out.splitlines() if line.startswith("R ")]
    assert len(srv.messages) == 1 and srv.auth_log[-1][2] is True
    sent = [d for k, d in trace if k == "send"]
    blob = b"".join(d for _, d in trace)
    for secret in secrets(mech, trace):
        assert secret not in blob, (secret, trace)
    assert BODY_MARK not in blob
    # Commands and replies do appear; the AUTH argument and 334 answers are redacted.
    assert any(d.startswith(b"MAIL FROM:<dev@example.com>") for d in sent)
    assert b"RCPT TO:<a@example.com>\r\n" in sent
    assert b"STARTTLS\r\n" in sent and b"QUIT\r\n" in sent
    assert any(k == "reply" and d.startswith(b"220") for k, d in trace)
    assert any(k == "reply" and b"235" in d for k, d in trace)
    auth = [d for d in sent if d.startswith(b"AUTH ")]
    # LOGIN: the user name is the initial response (as smtplib sends it), the password
    # answers the one challenge.
    assert auth == [b"AUTH " + mech.encode() + (b"\r\n" if mech == "CRAM-MD5"
                                                 else b" [redacted]\r\n")]
    challenges = sum(1 for k, d in trace if k == "reply" and d.startswith(b"334"))
    assert sent.count(b"[redacted]\r\n") == challenges == {"PLAIN": 0, "LOGIN": 1,
                                                           "CRAM-MD5": 1, "XOAUTH2": 0}[mech]
    # The body: one count, then the end of data. Wire size: dot-stuffed ".x" -> "..x".
    size = len(b"Subject: t\r\n\r\n" + BODY_MARK + b"\r\n..x\r\n")
    assert sent[sent.index(b"DATA\r\n") + 1 : sent.index(b"DATA\r\n") + 3] == [
        b"[body %d bytes]" % size, b".\r\n"]


def test_debuglevel_prints_smtplib_shape(runtime, mailserver):
    srv = mailserver()
    p = run(f"""
        import smtp_client as sc
        s = sc.SMTP({srv.host!r}, {srv.port}, timeout=10)
        s.set_debuglevel(1)
        s.sendmail("dev@example.com", "a@example.com", (b"x" * 98 + b"\\r\\n") * 30)
        s.set_debuglevel(0)
        s.noop()
        s.quit()
    """, runtime=runtime)
    assert p.returncode == 0, p.stdout + p.stderr
    assert "send: b'MAIL FROM:<dev@example.com>" in p.stderr
    assert "reply: b'250" in p.stderr
    assert "[body 3000 bytes]" in p.stderr and "xxx" not in p.stderr
    assert "NOOP" not in p.stderr and "QUIT" not in p.stderr  # level 0: off


def test_bdat_chunks_counted():
    # aiosmtpd has no CHUNKING: feed the tracer BDAT flights as the driver writes them.
    out = run_ok("""
        import smtp_ext
        got = []
        t = smtp_ext.Tracer(lambda d, data: got.append(data))
        flight = b"MAIL FROM:<a@b>\\r\\nRCPT TO:<c@d>\\r\\nBDAT 10\\r\\n0123"
        t.sent(flight, 0, len(flight))
        t.sent(b"456789BDAT 3 LAST\\r\\nab", 0, 21)
        t.sent(b"cRSET\\r\\n", 0, 7)
        print(got)
    """, runtime="cpython")
    assert ast.literal_eval(out) == [
        b"MAIL FROM:<a@b>\r\n", b"RCPT TO:<c@d>\r\n", b"BDAT 10\r\n", b"[body 10 bytes]",
        b"BDAT 3 LAST\r\n", b"[body 3 bytes]", b"RSET\r\n"]


def test_data_end_split_across_writes():
    # A body ending exactly at a write boundary: the next write starts with "." CRLF.
    out = run_ok("""
        import smtp_ext
        got = []
        t = smtp_ext.Tracer(lambda d, data: got.append(data))
        t.code(354)
        t.sent(b"..a\\r\\nb\\r\\n", 0, 8)
        t.sent(b".\\r\\nMAIL FROM:<x@y>\\r\\n", 0, 20)
        print(got)
    """, runtime="cpython")
    assert ast.literal_eval(textwrap.dedent(out)) == [
        b"[body 8 bytes]", b".\r\n", b"MAIL FROM:<x@y>\r\n"]
