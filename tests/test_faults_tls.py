# SPDX-License-Identifier: MIT
"""STARTTLS (RFC 3207) and AUTH (RFC 4954) faults from a scripted server, under MicroPython
and CPython: injected plaintext, stripped STARTTLS, capabilities that must be forgotten,
handshake failures, endless or malformed challenges, AUTH error codes."""

import base64
import ssl

import pytest

from faultkit import (
    DATA, EOD, GOOD_LINES, GREET, MAIL, QUIT, RCPT, WIRE, assert_second_mail, drive,
)

USER, PASSWORD = "device", "s3cret"
PLAIN_IR = base64.b64encode(b"\0device\0s3cret")
# Before TLS the server offers more than after it: a client that remembers would AUTH.
EHLO_PLAIN = [("expect", b"EHLO "), ("send", b"250-fake.example\r\n250-PIPELINING\r\n"
                                             b"250-AUTH PLAIN LOGIN\r\n250 STARTTLS\r\n")]
EHLO_TLS = [("expect", b"EHLO "), ("send", b"250-fake.example\r\n250 8BITMIME\r\n")]
EHLO_TLS_AUTH = [("expect", b"EHLO "), ("send", b"250-fake.example\r\n250 AUTH PLAIN\r\n")]
STARTTLS = [("expect", b"STARTTLS"), ("send", b"220 2.0.0 go ahead\r\n")]
TAIL = MAIL + RCPT + DATA + EOD + QUIT


@pytest.fixture(scope="module")
def tls(certs):
    """Server contexts by certificate name, and the client's CA (DER) path."""
    def ctx(name):
        c = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        c.load_cert_chain(certs[name + ".pem"], certs[name + ".key"])
        return c
    return {"good": ctx("server"), "untrusted": ctx("untrusted"),
            "wrongname": ctx("wrongname"), "ca": certs["ca.der"]}


def tls_good(tls):
    """A good STARTTLS + AUTH PLAIN session (the reference for the second mail)."""
    return GREET + EHLO_PLAIN + STARTTLS + [("starttls", tls["good"])] + EHLO_TLS_AUTH + [
        ("expect", b"AUTH PLAIN " + PLAIN_IR), ("send", b"235 2.7.0 ok\r\n")] + TAIL


CLIENT_TLS_TWICE = """
ctx = sc.create_context(open(ARGS[0], "rb").read())
c = sc.Client(HOST, PORT, username="device", password="s3cret", from_addr=FROM,
              tls="starttls", context=ctx, timeout=TIMEOUT)
report(lambda: c.send(TO, MSG))
report(lambda: c.send(TO, MSG))
"""


def after(lines, word):
    """The lines the client sent after the first one starting with word."""
    for k, line in enumerate(lines):
        if line.startswith(word):
            return lines[k + 1:]
    raise AssertionError(f"no {word!r} in {lines!r}")


# ------------------------------------------------------------ 8. STARTTLS

@pytest.mark.parametrize("injected", [
    b"250 injected\r\n",
    b"250-fake.example\r\n250 AUTH PLAIN\r\n",
    b"2",
])
def test_starttls_injected_plaintext(runtime, tls, injected):
    # RFC 3207 5 / 6 (CVE-2011-0411): bytes that follow the 220 in the clear were not sent
    # by the TLS peer; the client must not take them as post-TLS replies. It stops: no
    # handshake, no AUTH, no MAIL.
    script = GREET + EHLO_PLAIN + [("expect", b"STARTTLS"),
                                   ("send", b"220 2.0.0 go ahead\r\n" + injected),
                                   ("wait_close",)]
    outs, srv = drive(runtime, [script, tls_good(tls)], CLIENT_TLS_TWICE, args=[tls["ca"]])
    assert outs[0].exc == "SMTPProtocolError", outs[0]
    assert srv.received[0].endswith(b"STARTTLS\r\n"), srv.received[0]  # not even a ClientHello
    assert_second_mail(outs[1], srv)
    srv.check()


def test_starttls_injected_through_smtp(runtime, tls):
    script = GREET + EHLO_PLAIN + [("expect", b"STARTTLS"),
                                   ("send", b"220 go ahead\r\n250 injected\r\n"),
                                   ("wait_close",)]
    outs, srv = drive(runtime, script, """
        s = sc.SMTP(timeout=TIMEOUT)
        s.connect(HOST, PORT)
        report(lambda: s.starttls(context=sc.create_context(open(ARGS[0], "rb").read())), s)
    """, args=[tls["ca"]])
    srv.check()
    assert (outs[0].exc, outs[0].closed) == ("SMTPProtocolError", True), outs[0]
    assert srv.received[0].endswith(b"STARTTLS\r\n")


BYE = [("expect", b"QUIT"), ("send", b"221 bye\r\n"), ("wait_close",)]


@pytest.mark.parametrize("auth", ["auto", "plain"])
def test_starttls_not_offered(runtime, tls, auth):
    # RFC 3207 4: with tls="starttls" a server (or a man in the middle) that drops STARTTLS
    # from the EHLO reply gets nothing: no AUTH, no MAIL; only QUIT (RFC 5321 4.1.1.10).
    ehlo = [("expect", b"EHLO "), ("send", b"250-fake.example\r\n250 AUTH PLAIN LOGIN\r\n")]
    outs, srv = drive(runtime, [GREET + ehlo + BYE, tls_good(tls)], f"""
        ctx = sc.create_context(open(ARGS[0], "rb").read())
        c = sc.Client(HOST, PORT, username="device", password="s3cret", from_addr=FROM,
                      tls="starttls", context=ctx, timeout=TIMEOUT, auth="{auth}")
        report(lambda: c.send(TO, MSG))
        report(lambda: c.send(TO, MSG))
    """, args=[tls["ca"]])
    assert outs[0].exc == "SMTPNotSupportedError", outs[0]
    assert [x[:5] for x in srv.lines[0]] == [b"EHLO ", b"QUIT"]
    assert_second_mail(outs[1], srv)
    srv.check()


@pytest.mark.parametrize("reply,code", [(b"454 4.7.0 TLS not available\r\n", 454),
                                        (b"421 4.3.2 going down\r\n", 421),
                                        (b"502 5.5.1 no\r\n", 502)])
def test_starttls_refused(runtime, tls, reply, code):
    # A refusal keeps the session in step: QUIT (RFC 5321 4.1.1.10); 421 closed it already.
    bye = BYE if code != 421 else [("wait_close",)]
    script = GREET + EHLO_PLAIN + [("expect", b"STARTTLS"), ("send", reply)] + bye
    outs, srv = drive(runtime, [script, tls_good(tls)], CLIENT_TLS_TWICE, args=[tls["ca"]])
    o = outs[0]
    assert (o.exc, o.code, o.transient) == ("SMTPResponseException", code, code < 500), o
    # No AUTH, no MAIL in the clear.
    assert srv.received[0].endswith(b"STARTTLS\r\n" if code == 421 else b"QUIT\r\n")
    assert_second_mail(outs[1], srv)
    srv.check()


def test_starttls_forgets_capabilities(runtime, tls):
    # RFC 3207 4.2: after the handshake the client discards what it learnt and says EHLO
    # again. Before TLS the server offered AUTH; after it, not: with auth="auto" the mail
    # goes without AUTH.
    script = GREET + EHLO_PLAIN + STARTTLS + [("starttls", tls["good"])] + EHLO_TLS + TAIL
    outs, srv = drive(runtime, [script, script], """
        ctx = sc.create_context(open(ARGS[0], "rb").read())
        c = sc.Client(HOST, PORT, username="device", password="s3cret", from_addr=FROM,
                      tls="starttls", context=ctx, timeout=TIMEOUT)
        report(lambda: c.send(TO, MSG))
        s = sc.SMTP(timeout=TIMEOUT)
        s.connect(HOST, PORT)
        s.ehlo()
        before = sorted(s.esmtp_features)
        report(lambda: [before, s.starttls(context=ctx)[0], sorted(s.esmtp_features),
                        s.has_extn("auth"), s.has_extn("starttls")], s)
        report(lambda: [s.sendmail(FROM, TO, MSG), s.quit()[0]], s)
    """, args=[tls["ca"]])
    srv.check()
    assert outs[0].ok == {"refused": {}}, outs[0]
    # Right after starttls() nothing is known (smtplib's state too); the EHLO inside TLS is
    # said by the next command, sendmail here.
    assert outs[1].ok == [["auth", "pipelining", "starttls"], 220, [], False, False]
    assert outs[2].ok == [{}, 221], outs[2]
    for conn in (0, 1):
        assert after(srv.lines[conn], b"STARTTLS")[0].startswith(b"EHLO ")
        assert after(srv.lines[conn], b"STARTTLS")[1:] == GOOD_LINES
    assert srv.data == [[WIRE], [WIRE]]


def test_starttls_then_auth(runtime, tls):
    # The positive reference for the tests above: AUTH is used when offered after TLS.
    outs, srv = drive(runtime, tls_good(tls), """
        ctx = sc.create_context(open(ARGS[0], "rb").read())
        c = sc.Client(HOST, PORT, username="device", password="s3cret", from_addr=FROM,
                      tls="starttls", context=ctx, timeout=TIMEOUT)
        report(lambda: c.send(TO, MSG))
    """, args=[tls["ca"]])
    assert_second_mail(outs[0], srv, 0)
    srv.check()


@pytest.mark.parametrize("fault", ["garbage", "close", "untrusted", "wrongname"])
def test_starttls_handshake_fails(runtime, tls, fault):
    # RFC 3207 4.1 / RFC 7817: a failed or unverifiable handshake ends the session; nothing
    # is sent in the clear instead. The server reads the ClientHello's record header before
    # it misbehaves, so the failure is in the handshake (not data after the 220).
    if fault in ("garbage", "close"):
        bad = [("recv", 5)] + ([("send", b"not TLS at all\r\n")] if fault == "garbage" else []) \
            + [("close",)]
    else:
        bad = [("starttls", tls[fault])]
    script = GREET + EHLO_PLAIN + STARTTLS + bad
    outs, srv = drive(runtime, [script, tls_good(tls)], CLIENT_TLS_TWICE, args=[tls["ca"]])
    assert outs[0].exc == "SMTPTLSError", outs[0]
    if fault in ("garbage", "close"):
        assert srv.data[0][0][0] == 0x16  # a TLS handshake record
        assert not srv.errors, srv.errors
    else:
        assert len(srv.errors) == 1 and "conn 0" in srv.errors[0]  # the client aborted
    assert after(srv.lines[0], b"STARTTLS") == []
    assert_second_mail(outs[1], srv)


TLS_DISCONNECTS = {
    "close after STARTTLS": [("expect", b"STARTTLS"), ("close",)],
    "mid 220 to STARTTLS": [("expect", b"STARTTLS"), ("send", b"220 go"), ("close",)],
    "reset after STARTTLS": [("expect", b"STARTTLS"), ("reset",)],
    "close after EHLO in TLS": STARTTLS + [("starttls", "good"), ("expect", b"EHLO "),
                                           ("close",)],
    "close after AUTH": STARTTLS + [("starttls", "good"), *EHLO_TLS_AUTH,
                                    ("expect", b"AUTH "), ("close",)],
    "mid 334": STARTTLS + [("starttls", "good"), *EHLO_TLS_AUTH, ("expect", b"AUTH "),
                           ("send", b"334 VXNl"), ("close",)],
}


@pytest.mark.parametrize("steps", list(TLS_DISCONNECTS.values()), ids=list(TLS_DISCONNECTS))
def test_disconnect_during_starttls_and_auth(runtime, tls, steps):
    steps = [(op, tls[a[0]]) if op == "starttls" else (op, *a) for op, *a in steps]
    script = GREET + EHLO_PLAIN + steps
    outs, srv = drive(runtime, [script, tls_good(tls)], CLIENT_TLS_TWICE, args=[tls["ca"]])
    assert outs[0].exc == "SMTPServerDisconnected", outs[0]
    assert not any(line.startswith(b"MAIL") for line in srv.lines[0])
    assert_second_mail(outs[1], srv)
    srv.check()


# --------------------------------------------------------------------- 12. AUTH

SMTP_LOGIN = """
s = sc.SMTP(timeout=TIMEOUT)
s.connect(HOST, PORT)
report(lambda: s.login("device", "s3cret", mechanism=ARGS[0], allow_plaintext_auth=True), s)
report(lambda: again(s), s)
"""
EHLO_AUTH = [("expect", b"EHLO "), ("send", b"250-fake.example\r\n"
                                            b"250 AUTH PLAIN LOGIN CRAM-MD5\r\n")]
AUTH_GOOD = GREET + EHLO_AUTH + TAIL


@pytest.mark.parametrize("mechanism", ["PLAIN", "LOGIN", "CRAM-MD5"])
def test_endless_challenges_are_bounded(runtime, mechanism):
    # RFC 4954 4: a server that answers every response with another 334 must not keep the
    # client forever; the client gives up after a few rounds and closes.
    rounds = 40
    script = GREET + EHLO_AUTH + [("expect", b"AUTH " + mechanism.encode())] + [
        ("send", b"334 PDEyMzQ1QGZha2U+\r\n"), ("expect", b"")] * rounds
    outs, srv = drive(runtime, [script, AUTH_GOOD], SMTP_LOGIN, args=[mechanism])
    o = outs[0]
    assert o.exc == "SMTPAuthenticationError" and o.closed, o
    assert o.secs < 2, o
    answered = len(srv.lines[0]) - 2  # after EHLO and AUTH
    assert 1 <= answered <= 10, srv.lines[0]
    assert_second_mail(outs[1], srv)
    # The endless script cannot finish: the client walked away, as it should.
    assert len(srv.errors) == 1 and "conn 0" in srv.errors[0], srv.errors


@pytest.mark.parametrize("reply,code", [
    (b"535 5.7.8 authentication credentials invalid", 535),
    (b"534 5.7.9 authentication mechanism is too weak", 534),
    (b"454 4.7.0 temporary authentication failure", 454),
    (b"538 5.7.11 encryption required", 538),
    (b"504 5.5.4 unrecognized authentication type", 504),
    (b"501 5.5.2 cannot decode", 501),
])
def test_auth_refused(runtime, reply, code):
    # RFC 4954 6: the failure codes; 4xx are transient. The session stays usable.
    script = GREET + EHLO_AUTH + [("expect", b"AUTH PLAIN "), ("send", reply + b"\r\n")] \
        + MAIL + RCPT + DATA + EOD + QUIT
    outs, srv = drive(runtime, script, """
        s = sc.SMTP(timeout=TIMEOUT)
        s.connect(HOST, PORT)
        report(lambda: s.login("device", "s3cret", allow_plaintext_auth=True,
                               mechanism="PLAIN"), s)
        report(lambda: [s.sendmail(FROM, TO, MSG), s.quit()[0]], s)
    """)
    srv.check()
    o = outs[0]
    assert (o.exc, o.code, o.transient) == ("SMTPAuthenticationError", code, code < 500), o
    assert o.enhanced == reply.split()[1].decode() and o.closed is False, o
    assert outs[1].ok == [{}, 221]


@pytest.mark.parametrize("code", [535, 454])
def test_auth_refused_through_client(runtime, code):
    # The Client names no mechanism: like smtplib's login() it tries each one offered
    # (CRAM-MD5, PLAIN, LOGIN); every refusal leaves the session in step, so it then says
    # QUIT before it closes (RFC 5321 4.1.1.10), as smtplib's quit() would.
    refuse = [("send", b"%d no\r\n" % code)]
    script = GREET + EHLO_AUTH + [("expect", b"AUTH CRAM-MD5")] + refuse + [
        ("expect", b"AUTH PLAIN ")] + refuse + [("expect", b"AUTH LOGIN ")] + refuse + [
        ("expect", b"QUIT"), ("send", b"221 bye\r\n"), ("wait_close",)]
    good = GREET + EHLO_AUTH + [("expect", b"AUTH "), ("send", b"235 ok\r\n")] + TAIL
    outs, srv = drive(runtime, [script, good], """
        c = sc.Client(HOST, PORT, username="device", password="s3cret", from_addr=FROM,
                      tls="none", allow_plaintext_auth=True, timeout=TIMEOUT)
        report(lambda: c.send(TO, MSG))
        report(lambda: c.send(TO, MSG))
    """)
    o = outs[0]
    assert (o.exc, o.code, o.transient) == ("SMTPAuthenticationError", code, code == 454), o
    assert len(srv.lines[0]) == 5  # EHLO, 3 x AUTH, QUIT: no MAIL
    assert_second_mail(outs[1], srv)
    srv.check()


def test_auth_421_closes(runtime):
    script = GREET + EHLO_AUTH + [("expect", b"AUTH "), ("send", b"421 4.3.2 bye\r\n"),
                                  ("wait_close",)]
    outs, srv = drive(runtime, [script, AUTH_GOOD], SMTP_LOGIN, args=["PLAIN"])
    o = outs[0]
    assert (o.exc, o.code, o.transient, o.closed) == ("SMTPAuthenticationError", 421, True,
                                                       True), o
    assert_second_mail(outs[1], srv)
    srv.check()


@pytest.mark.parametrize("challenge", [b"not base64!", b"abc", b"YQ"])
def test_challenge_not_base64(runtime, challenge):
    # RFC 4954 4: the 334 text is base64. Anything else is a protocol error, and the
    # half-done exchange cannot go on: the session is closed.
    script = GREET + EHLO_AUTH + [("expect", b"AUTH LOGIN"),
                                  ("send", b"334 " + challenge + b"\r\n"), ("wait_close",)]
    outs, srv = drive(runtime, [script, AUTH_GOOD], SMTP_LOGIN, args=["LOGIN"])
    o = outs[0]
    assert (o.exc, o.closed) == ("SMTPProtocolError", True), o
    assert len(srv.lines[0]) == 2
    assert_second_mail(outs[1], srv)
    srv.check()


def test_no_credentials_in_the_clear(runtime):
    # DESIGN.md: credentials never go out before TLS unless the caller opted in.
    script = GREET + EHLO_AUTH + [("wait_close",)]
    outs, srv = drive(runtime, [GREET + EHLO_AUTH + BYE, script], """
        c = sc.Client(HOST, PORT, username="device", password="s3cret", from_addr=FROM,
                      tls="none", timeout=TIMEOUT)
        report(lambda: c.send(TO, MSG))
        s = sc.SMTP(timeout=TIMEOUT)
        s.connect(HOST, PORT)
        report(lambda: s.login("device", "s3cret"), s)
    """)
    srv.check()
    assert [o.exc for o in outs] == ["SMTPNotSupportedError"] * 2, outs
    # EHLO only (and the Client's QUIT: the refusal left the session in step).
    assert [len(lines) for lines in srv.lines] == [2, 1], srv.lines
