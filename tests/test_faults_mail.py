# SPDX-License-Identifier: MIT
"""Faults in the mail transaction itself, from a scripted server, under MicroPython and
CPython: refusals and their classification, the exact bytes of the DATA payload for every
awkward body and chunking (SMTP smuggling), and input validation before any byte is sent.
"""

import itertools
import re

import pytest

from faultkit import (
    CLIENT_TWICE, DATA, EHLO, EOD, GOOD, GOOD_LINES, GREET, MAIL, QUIT, RCPT, RSET, WIRE,
    assert_second_mail, drive,
)

REST = MAIL + RCPT + DATA + EOD + QUIT  # a good mail after a refusal, same session


def rcpt(addr, reply):
    return [("expect", b"RCPT TO:<%s>" % addr), ("send", reply)]


# ------------------------------------------------------------- 9. refusals

def test_one_of_three_recipients_refused(runtime):
    # 3.3 / smtplib: sendmail returns the refused recipients and sends to the others.
    script = GREET + EHLO + MAIL + rcpt(b"a@x", b"250 ok\r\n") \
        + rcpt(b"b@x", b"550 5.1.1 no such user\r\n") + rcpt(b"c@x", b"251 will forward\r\n") \
        + DATA + EOD + QUIT
    outs, srv = drive(runtime, [script, script], """
        s = sc.SMTP(timeout=TIMEOUT)
        s.connect(HOST, PORT)
        report(lambda: s.sendmail(FROM, ["a@x", "b@x", "c@x"], MSG), s)
        s.quit()
        c = sc.Client(HOST, PORT, tls="none", from_addr=FROM, timeout=TIMEOUT)
        report(lambda: c.send(["a@x", "b@x", "c@x"], MSG))
    """)
    srv.check()
    refused = {"b@x": [550, "5.1.1 no such user"]}
    assert [o.ok for o in outs] == [refused, {"refused": refused}], outs
    assert srv.data == [[WIRE], [WIRE]]


@pytest.mark.parametrize("replies,transient", [
    ((b"550 5.1.1 no such user", b"553 5.1.3 bad address"), False),
    ((b"452 4.2.2 mailbox full", b"450 4.2.1 try later"), True),
    ((b"452 4.5.3 too many recipients", b"550 5.1.1 no"), False),
])
def test_every_recipient_refused(runtime, replies, transient):
    # smtplib: SMTPRecipientsRefused when nobody accepted; RFC 5321 4.1.1.5: RSET ends the
    # transaction, and the session stays usable for the next mail.
    script = GREET + EHLO + MAIL + rcpt(b"a@x", replies[0] + b"\r\n") \
        + rcpt(b"b@x", replies[1] + b"\r\n") + RSET + REST
    outs, srv = drive(runtime, script, """
        s = sc.SMTP(timeout=TIMEOUT)
        s.connect(HOST, PORT)
        report(lambda: s.sendmail(FROM, ["a@x", "b@x"], MSG), s)
        report(lambda: (s.sendmail(FROM, TO, MSG), s.quit())[0], s)
    """)
    srv.check()
    o = outs[0]
    assert o.exc == "SMTPRecipientsRefused" and o.closed is False, o
    assert o.recipients == {
        "a@x": [int(replies[0][:3]), replies[0][4:].decode()],
        "b@x": [int(replies[1][:3]), replies[1][4:].decode()],
    }
    assert o.transient is transient
    assert outs[1].ok == {}, outs[1]
    assert srv.data == [[WIRE]]  # only the second mail had a body
    assert b"DATA" not in srv.received[0].split(b"RSET")[0]


STEP_REFUSED = {
    "MAIL 550": (GREET + EHLO + [("expect", b"MAIL"), ("send", b"550 5.7.1 sender denied\r\n")],
                 "SMTPSenderRefused", 550, "5.7.1"),
    "MAIL 451": (GREET + EHLO + [("expect", b"MAIL"), ("send", b"451 4.7.1 greylisted\r\n")],
                 "SMTPSenderRefused", 451, "4.7.1"),
    "MAIL 552 multi-line": (
        GREET + EHLO + [("expect", b"MAIL"),
                        ("send", b"552-5.3.4 message too big\r\n552 5.3.4 see you\r\n")],
        "SMTPSenderRefused", 552, "5.3.4"),
    "DATA 554": (GREET + EHLO + MAIL + RCPT + [("expect", b"DATA"), ("send", b"554 no\r\n")],
                 "SMTPDataError", 554, None),
    "DATA 451": (GREET + EHLO + MAIL + RCPT + [("expect", b"DATA"),
                                              ("send", b"451 4.3.0 later\r\n")],
                 "SMTPDataError", 451, "4.3.0"),
    "DATA 250": (GREET + EHLO + MAIL + RCPT + [("expect", b"DATA"), ("send", b"250 what\r\n")],
                 "SMTPDataError", 250, None),
    "end of data 552": (GREET + EHLO + MAIL + RCPT + DATA + [
        ("expect_data",), ("send", b"552 5.3.4 message too big\r\n")],
        "SMTPDataError", 552, "5.3.4"),
    "end of data 451": (GREET + EHLO + MAIL + RCPT + DATA + [
        ("expect_data",), ("send", b"451 4.7.1 spam suspected, later\r\n")],
        "SMTPDataError", 451, "4.7.1"),
    "end of data 554": (GREET + EHLO + MAIL + RCPT + DATA + [
        ("expect_data",), ("send", b"554 5.6.0 no\r\n")], "SMTPDataError", 554, "5.6.0"),
}


@pytest.mark.parametrize("case", list(STEP_REFUSED))
def test_refused_step_raises_and_resets(runtime, case):
    script, exc, code, enhanced = STEP_REFUSED[case]
    outs, srv = drive(runtime, script + RSET + REST, """
        s = sc.SMTP(timeout=TIMEOUT)
        s.connect(HOST, PORT)
        report(lambda: s.sendmail(FROM, TO, MSG), s)
        report(lambda: (s.sendmail(FROM, TO, MSG), s.quit())[0], s)
    """)
    srv.check()
    o = outs[0]
    assert (o.exc, o.code, o.enhanced) == (exc, code, enhanced), o
    assert o.transient is (400 <= code < 500) and o.closed is False, o
    assert outs[1].ok == {}, outs[1]
    assert srv.lines[0][-5:] == [b"RSET"] + GOOD_LINES


def test_refusals_through_client(runtime):
    # Client.send classifies the same way and closes the connection itself: QUIT ends the
    # failed transaction, no RSET (and no wait for its reply) is needed first.
    scripts = [STEP_REFUSED["MAIL 451"][0] + QUIT,
               STEP_REFUSED["end of data 552"][0] + QUIT, GOOD]
    outs, srv = drive(runtime, scripts, CLIENT_TWICE + "report(lambda: c.send(TO, MSG))")
    srv.check()
    assert [(o.exc, o.code, o.transient) for o in outs[:2]] == [
        ("SMTPSenderRefused", 451, True), ("SMTPDataError", 552, False)], outs
    assert_second_mail(outs[2], srv, 2)


ENHANCED = [
    (b"550 5.1.1 no such user", "5.1.1"),
    (b"550 5.1.10 null MX", "5.1.10"),
    (b"550 5.100.999 long parts", "5.100.999"),
    (b"452 4.2.2 mailbox full", "4.2.2"),
    (b"550 4.1.1 class differs from the reply", None),
    (b"550 55.1.1 class has two digits", None),
    (b"550 5.1.1000 detail too long", None),
    (b"550 5.1 too few parts", None),
    (b"550 5.1.1.1 too many parts", None),
    (b"550 5.a.1 not digits", None),
    (b"550 no code at all", None),
    (b"550 5.1.1", "5.1.1"),
    (b"550", None),
]


@pytest.mark.parametrize("reply,enhanced", ENHANCED, ids=[r.decode() for r, _ in ENHANCED])
def test_enhanced_status_codes(runtime, reply, enhanced):
    # RFC 3463 2: status-code = class "." subject "." detail; class is one digit (2, 4, 5)
    # and matches the reply; subject and detail have 1-3 digits.
    script = GREET + EHLO + [("expect", b"MAIL"), ("send", reply + b"\r\n")] + RSET + \
        [("wait_close",)]
    outs, srv = drive(runtime, script, """
        s = sc.SMTP(timeout=TIMEOUT)
        s.connect(HOST, PORT)
        report(lambda: s.sendmail(FROM, TO, MSG), s)
    """)
    srv.check()
    o = outs[0]
    assert (o.exc, o.code, o.enhanced) == ("SMTPSenderRefused", int(reply[:3]), enhanced), o
    assert o.text == reply[4:].decode()


# ------------------------------------------------------- 10. the bytes on the wire

def wire(body):
    """An independent reference: RFC 5321 2.3.8 (CRLF only), 4.5.2 (dot-stuffing),
    4.1.1.4 (a line break before the final "." line)."""
    out = re.sub(rb"\r\n|\r|\n", b"\r\n", body)
    out = re.sub(rb"(^|\r\n)\.", rb"\1..", out)
    if out and not out.endswith(b"\r\n"):
        out += b"\r\n"
    return out + b".\r\n"


def assert_safe(payload):
    """What the server got after DATA: CRLF only, one end of data, at the very end."""
    assert payload == b".\r\n" or payload.endswith(b"\r\n.\r\n"), payload
    assert payload.find(b"\r\n.\r\n") in (-1, len(payload) - 5), payload  # no smuggling
    assert payload.count(b"\r") == payload.count(b"\n") == payload.count(b"\r\n"), payload


def test_reference_encoder():
    # The reference itself, on cases worked out by hand.
    assert wire(b"") == b".\r\n"
    assert wire(b"a") == b"a\r\n.\r\n"
    assert wire(b"a\r\n.\r\nb") == b"a\r\n..\r\nb\r\n.\r\n"
    assert wire(b".\n.\r.\r\n") == b"..\r\n..\r\n..\r\n.\r\n"
    assert wire(b"\r\r\n\n") == b"\r\n\r\n\r\n.\r\n"
    assert wire(b"..x\n") == b"...x\r\n.\r\n"
    for body in TRICKY:
        assert_safe(wire(body))


TRICKY = [
    b"a\r\n.\r\nb",
    b".\n.\r.\r\n",
    b"\r\r\n\n",
    b"\r\n.\r\n",
    b"\n.\n",
    b"\r.\r",
    b"x\n.\r\ny",
    b"..\r\n.",
    b"a\rb\nc\r\nd",
    b".",
    b"\r",
    b"\n",
    b"",
    b"no final line break",
    b"\r\n\r\n.",
]


def chunkings(body, exhaustive):
    """Ways to cut body into chunks: every set of cut points (exhaustive; bodies of up to
    10 bytes), or no cut, every single cut and byte by byte."""
    n = len(body)
    if exhaustive and n <= 10:
        cuts = itertools.chain.from_iterable(
            itertools.combinations(range(1, n), k) for k in range(n))
    else:
        cuts = [()] + [(k,) for k in range(1, n)] + [tuple(range(1, n))]
    out = []
    for c in cuts:
        edges = (0,) + tuple(c) + (n,)
        out.append([body[a:b] for a, b in zip(edges, edges[1:])])
    return out


def test_chunkings():
    assert chunkings(b"abc", True) == [[b"abc"], [b"a", b"bc"], [b"ab", b"c"], [b"a", b"b", b"c"]]
    assert chunkings(b"abc", False) == [[b"abc"], [b"a", b"bc"], [b"ab", b"c"], [b"a", b"b", b"c"]]
    assert len(chunkings(b"a\r\n.\r\nb", True)) == 2 ** 6


def send_bodies(runtime, bodies, tmp_path, *, bufsize=512):
    """Send each body (bytes, or a list of chunks) as one mail of one session; return what
    the server got after each DATA."""
    path = tmp_path / "bodies.txt"
    path.write_text(repr(bodies))
    txn = MAIL + RCPT + DATA + EOD
    script = GREET + EHLO + txn * len(bodies) + QUIT
    outs, srv = drive(runtime, script, f"""
        bodies = eval(open(ARGS[0]).read())
        s = sc.SMTP(timeout=TIMEOUT, bufsize={bufsize})
        s.connect(HOST, PORT)
        def go():
            for b in bodies:
                s.sendmail(FROM, TO, b)
            return s.quit()[0]
        report(go, s)
    """, args=[path], run_timeout=60)
    srv.check()
    assert outs[0].ok == 221, outs[0]
    assert len(srv.data[0]) == len(bodies)
    return srv.data[0]


def test_tricky_bodies_every_chunking(runtime, tmp_path):
    # 2.3.8: bare CR and bare LF go out as CRLF; 4.5.2: a leading "." is doubled; the
    # encoder's line state survives any chunk boundary, so no cut (say between "\r" and
    # "\n", or before a ".") can end the data early. CPython tries every set of cut points,
    # MicroPython every single cut plus byte by byte.
    cases = [(body, chunks) for body in TRICKY
             for chunks in chunkings(body, exhaustive=runtime == "cpython")]
    got = send_bodies(runtime, [chunks for _, chunks in cases], tmp_path)
    for (body, chunks), payload in zip(cases, got):
        assert payload == wire(body), (chunks, payload)
        assert_safe(payload)


def test_body_types(runtime, tmp_path):
    # The same bytes as bytes, bytearray and str bodies go out identically.
    outs, srv = drive(runtime, GREET + EHLO + (MAIL + RCPT + DATA + EOD) * 4 + QUIT, r"""
        s = sc.SMTP(timeout=TIMEOUT)
        s.connect(HOST, PORT)
        body = b".a\r.\n\r\n.\rb"
        report(lambda: [s.sendmail(FROM, TO, m) for m in (
            body, bytearray(body), body.decode(), [memoryview(body)[:3], body[3:]])], s)
        s.quit()
    """)
    srv.check()
    assert outs[0].ok == [{}] * 4, outs[0]
    assert srv.data[0] == [wire(b".a\r.\n\r\n.\rb")] * 4


def big_bodies():
    """Bodies larger than the 512-byte buffer, cut so that the cut or the buffer edge lands
    between CR and LF, before a ".", or in the middle of the body's tail."""
    out = []
    for n in (509, 510, 511, 512, 513, 567, 568, 569, 600, 1100):
        clean = b"a" * n + b"\r\n" + b"b" * 40 + b"\r\n"  # CRLF everywhere: may go out raw
        out.append([clean])
        out.append(clean)
        out.append([clean, b".\r\n.."])
        out.append([clean[:-1], b"\n.\r\n"])
        out.append(b"c" * n + b"\r" + b"\n." * 3 + b"\r")
        out.append(b"." + b"d" * n + b"\n.\n")
    # The fast path sends all but the last 32 bytes of a clean chunk untouched: put a CRLF
    # exactly across that edge.
    for k in range(28, 37):
        out.append(b"e" * (600 - k) + b"\r\n" + b"f" * (k - 2))
        out.append([b"e" * (600 - k) + b"\r\n" + b"f" * (k - 2), b".x"])
    return out


def test_big_bodies(runtime, tmp_path):
    bodies = big_bodies()
    got = send_bodies(runtime, bodies, tmp_path)
    for body, payload in zip(bodies, got):
        flat = b"".join(body) if isinstance(body, list) else body
        assert payload == wire(flat), (len(flat), payload[-80:], wire(flat)[-80:])
        assert_safe(payload)


def test_file_body_and_bufsize(runtime, tmp_path):
    # A file body is read in buffer-sized pieces: cuts fall every 512 (or 1024) bytes.
    path = tmp_path / "body.eml"
    body = (b"x" * 511 + b"\r\n.") * 3 + b"\n" * 600 + b"." * 1100 + b"\r"
    path.write_bytes(body)
    script = GREET + EHLO + MAIL + RCPT + DATA + EOD + QUIT
    outs, srv = drive(runtime, [script, script], """
        for bufsize in (512, 1024):
            s = sc.SMTP(timeout=TIMEOUT, bufsize=bufsize)
            s.connect(HOST, PORT)
            with open(ARGS[0], "rb") as f:
                report(lambda: s.sendmail(FROM, TO, f), s)
            s.quit()
    """, args=[path])
    srv.check()
    assert [o.ok for o in outs] == [{}, {}], outs
    assert srv.data == [[wire(body)]] * 2
    assert_safe(srv.data[0][0])


# ------------------------------------------------------- 11. input validation

# Each call must raise ValueError on a connected session before a byte goes out; then a
# good mail goes through on the same session (nothing was half-sent).
SMTP_BAD = {
    "from CRLF": r's.sendmail("a@x\r\nRCPT TO:<evil@x>", TO, MSG)',
    "from CR": r's.sendmail("a@x\revil", TO, MSG)',
    "from LF": r's.sendmail("a@x\nevil", TO, MSG)',
    "from NUL": r's.sendmail("a@x\0evil", TO, MSG)',
    "from bytes LF": r's.sendmail(b"a@x\nevil", TO, MSG)',
    "from <": r's.sendmail("evil<a@x", TO, MSG)',
    "from >": r's.sendmail("a@x> SIZE=1 evil", TO, MSG)',
    "rcpt CRLF": r's.sendmail(FROM, ["b@x", "c@x\r\nDATA evil"], MSG)',
    "rcpt CR": r's.sendmail(FROM, "c@x\revil", MSG)',
    "rcpt NUL": r's.sendmail(FROM, ["c@x\0evil"], MSG)',
    "rcpt <": r's.sendmail(FROM, ["b@x", "<evil@x"], MSG)',
    "rcpt >": r's.sendmail(FROM, ["evil@x> NOTIFY=NEVER"], MSG)',
    "mail option CRLF": r's.sendmail(FROM, TO, MSG, ["SIZE=1\r\nRCPT TO:<evil@x>"])',
    "mail option NUL": r's.sendmail(FROM, TO, MSG, ["BODY=8BITMIME\0evil"])',
    "rcpt option LF": r's.sendmail(FROM, TO, MSG, (), ["NOTIFY=NEVER\nevil"])',
    "rcpt option CR": r's.sendmail(FROM, TO, MSG, (), ["NOTIFY=NEVER\revil"])',
    "no recipients": r's.sendmail(FROM, [], MSG)',
    "non-ASCII str body": r's.sendmail(FROM, TO, "caf\u00e9 evil")',
    "ehlo name": r's.ehlo("me\r\nMAIL FROM:<evil@x>")',
    "helo name": r's.helo("me\nevil")',
    "login user": r's.login("u\r\nevil", "p", allow_plaintext_auth=True)',
    "login password": r's.login("u", "p\0evil", allow_plaintext_auth=True)',
    "docmd command": r's.docmd("NOOP\r\nRSET evil")',
    "docmd args": r's.docmd("NOOP", "x\nevil")',
}


@pytest.mark.parametrize("call", list(SMTP_BAD.values()), ids=list(SMTP_BAD))
def test_bad_input_raises_before_sending(runtime, call):
    outs, srv = drive(runtime, GOOD, f"""
        s = sc.SMTP(timeout=TIMEOUT)
        s.connect(HOST, PORT)
        report(lambda: {call}, s)
        report(lambda: (s.sendmail(FROM, TO, MSG), s.quit())[0], s)
    """)
    srv.check()
    o = outs[0]
    assert o.exc == "ValueError" and o.closed is False, o
    assert srv.received[0].startswith(b"EHLO "), srv.received[0]  # nothing before it
    assert b"evil" not in srv.received[0]
    assert outs[1].ok == {}
    assert srv.lines[0][1:] == GOOD_LINES and srv.data[0] == [WIRE]


CLIENT_BAD = {
    "username": 'sc.Client(HOST, PORT, username="u\\r\\nevil", password="p", from_addr=FROM)',
    "password": 'sc.Client(HOST, PORT, username="u", password="p\\nevil", from_addr=FROM)',
    "from_addr": 'sc.Client(HOST, PORT, from_addr="a@x\\r\\nevil")',
    "from_addr <": 'sc.Client(HOST, PORT, from_addr="a<@x")',
    "local_hostname": 'sc.Client(HOST, PORT, from_addr=FROM, local_hostname="h\\r\\nevil")',
    "SMTP local_hostname": 'sc.SMTP(HOST, PORT, local_hostname="h\\0evil")',
    "send recipient": 'sc.Client(HOST, PORT, tls="none", from_addr=FROM).send('
                      '["ok@x", "b@x\\r\\nevil"], MSG)',
    "send recipient >": 'sc.Client(HOST, PORT, tls="none", from_addr=FROM).send("b@x>", MSG)',
    "send from_addr": 'sc.Client(HOST, PORT, tls="none", from_addr=FROM).send('
                      'TO, MSG, from_addr="a\\rb@x")',
    "send body type": 'sc.Client(HOST, PORT, tls="none", from_addr=FROM).send(TO, 42)',
}


@pytest.mark.parametrize("call", list(CLIENT_BAD.values()), ids=list(CLIENT_BAD))
def test_bad_input_raises_before_connecting(runtime, call):
    outs, srv = drive(runtime, GOOD, f"report(lambda: {call})", join=False)
    o = outs[0]
    assert o.exc in ("ValueError", "TypeError"), o
    assert (o.exc == "TypeError") == ("42" in call)
    assert srv.received == [b""]
    assert any("never connected" in e for e in srv.errors), srv.errors
