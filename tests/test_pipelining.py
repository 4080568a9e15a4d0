# SPDX-License-Identifier: MIT
"""The transaction engine against a scripted server, under MicroPython and CPython (issue 3):
PIPELINING (RFC 2920) flights, CHUNKING (RFC 3030) framing, which reply belongs to which mail
in send_many, the pipelining=/chunking= switches, and the MAIL/RCPT parameters of SIZE
(RFC 1870), 8BITMIME (RFC 6152), SMTPUTF8 (RFC 6531), DSN (RFC 3461), REQUIRETLS (RFC 8689)
and ENHANCEDSTATUSCODES (RFC 2034 / 3463).

"One write" is checked twice. At the server, ("expect_group", [...]) fails unless the whole
group came in one read (tests/scripted.py), and it replies to none of the group's commands,
so a client that waits for a reply inside a group stalls and fails. In the client, FLIGHTS
records each write the transport makes, which is exact where a split write could still
arrive in one read.
"""

import re
import ssl

import pytest

from faultkit import GOOD, GREET, MSG, QUIT, WIRE, assert_second_mail, drive

# What each mail's results become in the snippet (indented like the snippets: drive dedents).
RES = """
        def res(rs):
            out = []
            for r in rs:
                e = r.error
                out.append({"refused": plain(r.refused), "renh": r.enhanced,
                            "exc": None if e is None else type(e).__name__,
                            "code": getattr(e, "smtp_code", None),
                            "enhanced": getattr(e, "enhanced", None),
                            "transient": getattr(e, "transient", None),
                            "recipients": plain(getattr(e, "recipients", None))})
            return out
"""

# Every write the client makes, recorded at its transport: a flight is one call.
FLIGHTS = """
        flights = []
        _write = sc.SMTP._write
        def _record(self, buf, off, n):
            flights.append(bytes(buf[off:off + n]))
            return _write(self, buf, off, n)
        sc.SMTP._write = _record
"""

OK = {"refused": {}, "renh": {}, "exc": None, "code": None, "enhanced": None,
      "transient": None, "recipients": None}


def res(**kw):
    """An expected res() entry: OK with some fields changed."""
    return dict(OK, **kw)


def ehlo(*extensions):
    lines = [b"fake.example"] + list(extensions)
    reply = b"".join(b"250-" + x + b"\r\n" for x in lines[:-1]) + b"250 " + lines[-1] + b"\r\n"
    return [("expect", b"EHLO "), ("send", reply)]


def group(*prefixes, joined=False):
    """The server reads these command lines, replying to none; they must come in one read
    (joined: the same read as the bytes before them, e.g. the end of the previous body)."""
    return ("expect_group", list(prefixes), {"joined": joined})


def expect(*prefixes):
    return [("expect", p) for p in prefixes]


def send(*replies, split=None):
    data = b"".join(r + b"\r\n" for r in replies)
    return ("send", data, {"split": split}) if split else ("send", data)


def norm(body):
    """Independent reference for a BDAT payload: CRLF-normalised (RFC 5321 2.3.8), a last
    line closed, no dot-stuffing (RFC 3030 2)."""
    out = re.sub(rb"\r\n|\r|\n", b"\r\n", body)
    if out and not out.endswith(b"\r\n"):
        out += b"\r\n"
    return out


M, R, D, S, Q = b"MAIL", b"RCPT", b"DATA", b"RSET", b"QUIT"
PIPE = ehlo(b"PIPELINING", b"ENHANCEDSTATUSCODES", b"8BITMIME")
CHUNK = ehlo(b"PIPELINING", b"CHUNKING", b"ENHANCEDSTATUSCODES", b"8BITMIME")
BYE = [send(b"221 2.0.0 bye"), ("wait_close",)]


# ------------------------------------------------------------- RFC 2920: flights

def test_pipelined_flights(runtime):
    # 3.1: MAIL, every RCPT and DATA go out in one write; the body's end and the next mail's
    # MAIL/RCPT/DATA share one; QUIT rides in the last one (Client, send_many(quit=True)).
    go = send(b"250 2.1.0 ok", b"250 2.1.5 ok", b"354 go")
    queued = send(b"250 2.0.0 queued")
    scripts = [
        # sendmail to three recipients: one write, replied to at once.
        GREET + PIPE + [group(M, R, R, R, D), send(*[b"250 ok"] * 4, b"354 go"),
                        ("expect_data",), queued] + QUIT,
        # Client.send: the end of data and QUIT in one write.
        GREET + PIPE + [group(M, R, D), go, ("expect_data",), group(Q, joined=True),
                        queued] + BYE,
        # Client.send_many: the first body's end with the second mail's group, then QUIT.
        GREET + PIPE + [group(M, R, D), go, ("expect_data",), group(M, R, D, joined=True),
                        send(b"250 2.0.0 queued", b"250 ok", b"250 ok", b"354 go"),
                        ("expect_data",), group(Q, joined=True), queued] + BYE,
        # SMTP.send_many(quit=True), three mails.
        GREET + PIPE + [group(M, R, D), go, ("expect_data",), group(M, R, R, D, joined=True),
                        send(b"250 2.0.0 queued", b"250 ok", b"250 ok", b"250 ok", b"354 go"),
                        ("expect_data",), group(M, R, D, joined=True),
                        send(b"250 2.0.0 queued", b"250 ok", b"250 ok", b"354 go"),
                        ("expect_data",), group(Q, joined=True), queued] + BYE,
    ]
    outs, srv = drive(runtime, scripts, RES + FLIGHTS + """
        s = sc.SMTP(timeout=TIMEOUT)
        s.connect(HOST, PORT)
        report(lambda: s.sendmail(FROM, ["a@x", "b@x", "c@x"], MSG), s)
        s.quit()
        c = sc.Client(HOST, PORT, tls="none", from_addr=FROM, timeout=TIMEOUT)
        report(lambda: c.send(TO, MSG).ok)
        report(lambda: res(c.send_many([(TO, MSG), (["b@x"], MSG, "other@x")])))
        s.connect(HOST, PORT)
        s.ehlo()
        del flights[:]
        report(lambda: res(s.send_many([(FROM, TO, MSG), (FROM, ["a@x", "b@x"], MSG),
                                        (FROM, TO, MSG)], quit=True)), s)
        report(lambda: flights)
    """)
    srv.check()
    assert [o.ok for o in outs[:4]] == [{}, True, [OK, OK], [OK, OK, OK]], outs
    assert outs[3].closed, outs[3]  # quit=True closed the connection
    mail = "MAIL FROM:<from@example.com>\r\n"
    wire = WIRE.decode()
    assert outs[4].ok == [
        mail + "RCPT TO:<to@example.com>\r\nDATA\r\n",
        wire + mail + "RCPT TO:<a@x>\r\nRCPT TO:<b@x>\r\nDATA\r\n",
        wire + mail + "RCPT TO:<to@example.com>\r\nDATA\r\n",
        wire + "QUIT\r\n",
    ], outs[4]
    assert srv.data == [[WIRE], [WIRE], [WIRE] * 2, [WIRE] * 3]
    assert srv.lines[2][1:] == [b"MAIL FROM:<from@example.com>", b"RCPT TO:<to@example.com>",
                                b"DATA", b"MAIL FROM:<other@x>", b"RCPT TO:<b@x>", b"DATA",
                                b"QUIT"]


# ------------------------------------------------------------- RFC 3030: CHUNKING

BODIES = [
    b"",  # BDAT 0 LAST
    b".\r\n",  # no dot-stuffing: a lone "." is just data
    b"a\r\n.\r\nb",  # no early end of data either; last line closed
    b"x\ny\rz\r\n..lead\n",  # bare LF / CR become CRLF; ".." stays ".."
    b"caf\xc3\xa9\r\n",  # 8-bit (8BITMIME offered): BODY=8BITMIME
    bytearray(b"\r"),
]


def test_bdat_framing(runtime, tmp_path):
    # 2: "BDAT <n> LAST" and exactly n octets follow; the payload is CRLF-normalised and
    # never dot-stuffed; MAIL + RCPT + BDAT + data go out in one write.
    path = tmp_path / "bodies.txt"
    path.write_text(repr(BODIES))
    txn = [group(M, R), ("expect_bdat",), send(b"250 ok", b"250 ok", b"250 2.0.0 queued")]
    outs, srv = drive(runtime, GREET + CHUNK + txn * len(BODIES) + QUIT, """
        bodies = eval(open(ARGS[0]).read())
        s = sc.SMTP(timeout=TIMEOUT)
        s.connect(HOST, PORT)
        report(lambda: [s.sendmail(FROM, TO, b) for b in bodies], s)
        s.quit()
    """, args=[path])
    srv.check()
    assert outs[0].ok == [{}] * len(BODIES), outs[0]
    assert srv.data[0] == [norm(bytes(b)) for b in BODIES]
    bdats = [x for x in srv.lines[0] if x.startswith(b"BDAT")]
    assert bdats == [b"BDAT %d LAST" % len(norm(bytes(b))) for b in BODIES]
    mails = [x for x in srv.lines[0] if x.startswith(b"MAIL")]
    assert mails[4] == b"MAIL FROM:<from@example.com> BODY=8BITMIME", mails
    assert b"DATA" not in srv.lines[0] and b"RSET" not in srv.lines[0]  # one mail per batch
    # Each mail's commands and its BDAT chunk: one write, so one read at the server.
    for k, blob in enumerate(srv.data[0]):
        bdat = bdats[k] + b"\r\n" + blob
        assert any(r.endswith(bdat) and r.startswith(b"MAIL") for r in srv.reads[0]), k


@pytest.mark.parametrize("bufsize", [512, 1024])
def test_bdat_chunks_sized_by_the_buffer(runtime, bufsize):
    # A body in memory has a known size: one chunk, "BDAT <size> LAST", written in
    # buffer-sized pieces (bare LFs force the encoder; a clean body takes the zero-copy
    # path). A file's size is unknown: several chunks, each one buffer-sized write (command
    # + data), every count exact, LAST only on the final one.
    lf = b"".join(b"line %04d\n" % k for k in range(150))  # 1500 bytes, bare LF
    crlf = b"".join(b"line %04d xx\r\n" % k for k in range(120))  # 1680 bytes, clean
    txn = [group(M, R), send(b"250 ok", b"250 ok"),
           ("expect_bdat", {"until_last": True, "reply": b"250 2.0.0 chunk ok\r\n"}),
           send(b"250 2.0.0 queued")]
    outs, srv = drive(runtime, GREET + CHUNK + txn * 3 + QUIT, f"""
        import io
        lf = b"".join(b"line %04d\\n" % k for k in range(150))
        crlf = b"".join(b"line %04d xx\\r\\n" % k for k in range(120))
        s = sc.SMTP(timeout=TIMEOUT, bufsize={bufsize})
        s.connect(HOST, PORT)
        report(lambda: [s.sendmail(FROM, TO, b) for b in (lf, io.BytesIO(lf), crlf)], s)
        s.quit()
    """)
    srv.check()
    assert outs[0].ok == [{}] * 3, outs[0]
    lines = [x for x in srv.lines[0] if x.startswith(b"BDAT")]
    chunks = srv.data[0]
    assert len(lines) == len(chunks)
    mails, cur = [], []
    for line, chunk in zip(lines, chunks):
        n, _, last = line[5:].partition(b" ")
        assert int(n) == len(chunk) and last in (b"", b"LAST"), line
        cur.append((line, chunk))
        if last:
            mails.append(cur)
            cur = []
    assert cur == [] and len(mails) == 3
    assert [b"".join(c for _, c in m) for m in mails] == [norm(lf), norm(lf), crlf]
    assert [len(m) for m in mails] [::2] == [1, 1], [[x for x, _ in m] for m in mails]
    # The file: encoded chunks, each (command + data) fits the buffer and fills it but the
    # tail.
    sizes = [len(line) + 2 + len(c) for line, c in mails[1]]
    assert len(sizes) > len(norm(lf)) // bufsize and max(sizes) <= bufsize, sizes
    assert min(sizes[1:-1] or [bufsize]) >= bufsize - 40, sizes
    # Zero-copy: the clean body larger than the buffer went out straight from the source,
    # in a read of its own at the server (the end of the body shares the last write).
    assert any(len(r) > bufsize and crlf[:100] in r for r in srv.reads[0]), bufsize


def test_bdat_many_recipients_fill_the_buffer(runtime):
    # The queued MAIL/RCPT lines (here 477 to 511 of the 512-byte buffer) leave less room
    # than a BDAT command and its data need: the commands go first, then the chunk (which
    # must neither overrun the buffer nor be an empty "BDAT 0").
    rcpts = ["r%02d%s@example.com" % (k, "x" * 20) for k in range(9)]  # 9 lines of 47 bytes
    tos = [rcpts + ["y" * extra + "@x"] for extra in range(10, 46, 2)]
    txn = [("expect", M)] + [("expect", R)] * 10 + [
        send(*[b"250 ok"] * 11),
        ("expect_bdat", {"until_last": True, "reply": b"250 2.0.0 chunk ok\r\n"}),
        send(b"250 2.0.0 queued")]
    outs, srv = drive(runtime, GREET + CHUNK + txn * len(tos) + QUIT, f"""
        s = sc.SMTP(timeout=TIMEOUT)
        s.connect(HOST, PORT)
        report(lambda: [s.sendmail(FROM, to, b"x" * 100 + b"\\n") for to in {tos!r}], s)
        s.quit()
    """)
    srv.check()
    assert outs[0].ok == [{}] * len(tos), outs[0]
    bodies, cur = [], b""
    for line, chunk in zip([x for x in srv.lines[0] if x.startswith(b"BDAT")], srv.data[0]):
        assert chunk, line
        cur += chunk
        if line.endswith(b"LAST"):
            bodies.append(cur)
            cur = b""
    assert bodies == [b"x" * 100 + b"\r\n"] * len(tos)


# ------------------------------------------------------------- attribution (send_many)

@pytest.mark.parametrize("split", [None, 1], ids=["at-once", "byte-by-byte"])
def test_send_many_attribution_data(runtime, split):
    # RFC 2920 3.1: replies come in order, each is matched to its command, and every one
    # is checked: a refused RCPT belongs to its mail and address; a refused MAIL fails only
    # its mail (the server answers 503 to the rest of its group); a refused DATA; a DATA the
    # server accepts although every RCPT was refused gets a lone "." (not the body).
    script = GREET + PIPE + [
        group(M, R, R, D),
        send(b"250 2.1.0 ok", b"250 2.1.5 ok", b"550 5.1.1 no such user b", b"354 go",
             split=split),
        ("expect_data",), group(M, R, D, joined=True),
        send(b"250 2.0.0 queued 1", b"550 5.7.1 sender denied", b"503 5.5.1 MAIL first",
             b"503 5.5.1 MAIL first", split=split),
        group(S, M, R, D),
        send(b"250 2.0.0 reset", b"250 ok", b"250 ok", b"554 5.3.0 no data today", split=split),
        group(S, M, R, R, D),
        send(b"250 2.0.0 reset", b"250 ok", b"550 5.1.1 no e", b"450 4.2.1 f busy",
             b"354 go anyway", split=split),
        ("expect_data",), group(M, R, D, joined=True),
        send(b"554 5.5.1 no valid recipients", b"250 ok", b"250 ok", b"354 go", split=split),
        ("expect_data",), send(b"250 2.0.0 queued 5", split=split)] + QUIT
    outs, srv = drive(runtime, script, RES + """
        s = sc.SMTP(timeout=TIMEOUT)
        s.connect(HOST, PORT)
        report(lambda: res(s.send_many([(FROM, ["a@x", "b@x"], MSG), ("bad@x", ["c@x"], MSG),
                                        (FROM, ["d@x"], MSG), (FROM, ["e@x", "f@x"], MSG),
                                        (FROM, ["g@x"], MSG)])), s)
        s.quit()
    """)
    srv.check()
    assert outs[0].ok == [
        res(refused={"b@x": [550, "5.1.1 no such user b"]}, renh={"b@x": "5.1.1"}),
        res(exc="SMTPSenderRefused", code=550, enhanced="5.7.1", transient=False),
        res(exc="SMTPDataError", code=554, enhanced="5.3.0", transient=False),
        res(exc="SMTPRecipientsRefused", transient=False,
            refused={"e@x": [550, "5.1.1 no e"], "f@x": [450, "4.2.1 f busy"]},
            renh={"e@x": "5.1.1", "f@x": "4.2.1"},
            recipients={"e@x": [550, "5.1.1 no e"], "f@x": [450, "4.2.1 f busy"]}),
        OK,
    ], outs[0]
    assert outs[0].closed is False
    assert srv.data[0] == [WIRE, b".\r\n", WIRE]
    assert [x for x in srv.lines[0] if x.startswith(b"RCPT")] == [
        b"RCPT TO:<%s@x>" % a for a in (b"a", b"b", b"c", b"d", b"e", b"f", b"g")]


@pytest.mark.parametrize("split", [None, 1], ids=["at-once", "byte-by-byte"])
def test_send_many_attribution_bdat(runtime, split):
    # RFC 3030 with RFC 2920: every mail's MAIL, RCPT and BDAT go out without waiting, an
    # RSET before each later mail (a failed transaction may still be open); the replies are
    # matched in order: RCPT, BDAT and MAIL refusals land on their own mail.
    # Six mails overflow the 512-byte buffer: the batch goes in two writes, so the server
    # reads line by line, but replies only when it has read everything up to QUIT.
    bdat = ("expect_bdat",)
    script = GREET + CHUNK + expect(M, R) + [bdat] + expect(S, M, R, R) + [bdat] + \
        (expect(S, M, R) + [bdat]) * 2 + expect(S, M, R, R) + [bdat] + expect(S, M, R) + [
        bdat, ("expect", Q), send(
            b"250 2.1.0 ok", b"250 2.1.5 ok", b"250 2.0.0 queued 1",
            b"250 2.0.0 reset", b"250 ok", b"250 ok", b"550 5.1.1 no c", b"250 2.0.0 queued 2",
            b"250 2.0.0 reset", b"250 ok", b"250 ok", b"554 5.6.0 content refused",
            b"250 2.0.0 reset", b"550 5.7.1 sender denied", b"503 5.5.1 MAIL first",
            b"503 5.5.1 MAIL first",
            b"250 2.0.0 reset", b"250 ok", b"550 5.1.1 no g", b"553 5.1.3 bad h",
            b"554 5.5.1 no valid recipients",
            b"250 2.0.0 reset", b"250 ok", b"250 ok", b"250 2.0.0 queued 6",
            b"221 2.0.0 bye", split=split), ("wait_close",)]
    outs, srv = drive(runtime, script, RES + """
        s = sc.SMTP(timeout=TIMEOUT)
        s.connect(HOST, PORT)
        report(lambda: res(s.send_many([(FROM, ["a@x"], MSG), (FROM, ["b@x", "c@x"], MSG),
                                        (FROM, ["d@x"], MSG), ("bad@x", ["e@x"], MSG),
                                        (FROM, ["g@x", "h@x"], MSG), (FROM, ["i@x"], MSG)],
                                       quit=True)), s)
    """)
    srv.check()
    refused = {"g@x": [550, "5.1.1 no g"], "h@x": [553, "5.1.3 bad h"]}
    assert outs[0].ok == [
        OK,
        res(refused={"c@x": [550, "5.1.1 no c"]}, renh={"c@x": "5.1.1"}),
        res(exc="SMTPDataError", code=554, enhanced="5.6.0", transient=False),
        res(exc="SMTPSenderRefused", code=550, enhanced="5.7.1", transient=False),
        res(exc="SMTPRecipientsRefused", transient=False, refused=refused, recipients=refused,
            renh={"g@x": "5.1.1", "h@x": "5.1.3"}),
        OK,
    ], outs[0]
    assert outs[0].closed is True
    assert srv.data[0] == [MSG] * 6
    assert [x for x in srv.lines[0] if x.startswith(b"BDAT")] == [b"BDAT %d LAST" % len(MSG)] * 6
    assert [x[:4] for x in srv.lines[0][1:]].count(S) == 5


def test_421_in_the_middle_of_a_group(runtime):
    # RFC 5321 3.8: 421 closes the connection. The mail whose command got it fails with the
    # 421 classified for that command; the mails after it fail transient (try again);
    # mails accepted before it stay accepted; the object connects again afterwards.
    data_mode = GREET + PIPE + [
        group(M, R, D), send(b"250 ok", b"250 ok", b"354 go"),
        ("expect_data",), group(M, R, R, D, joined=True),
        send(b"250 2.0.0 queued 1", b"421 4.3.2 shutting down"), ("close",)]
    # Three chunked mails fit the buffer: one write, each mail joined to the previous chunk.
    bdat_mode = GREET + CHUNK + [
        group(M, R), ("expect_bdat",), group(S, M, R, R, joined=True), ("expect_bdat",),
        group(S, M, R, joined=True), ("expect_bdat",),
        send(b"250 ok", b"250 ok", b"250 2.0.0 queued 1", b"250 2.0.0 reset", b"250 ok",
             b"421 4.3.2 shutting down"), ("close",)]
    outs, srv = drive(runtime, [data_mode, GOOD, bdat_mode, GOOD], RES + FLIGHTS + """
        s = sc.SMTP(timeout=TIMEOUT)
        for k in range(2):
            s.connect(HOST, PORT)
            s.ehlo()
            del flights[:]
            report(lambda: res(s.send_many([(FROM, TO, MSG), (FROM, ["b@x", "c@x"], MSG),
                                            (FROM, TO, MSG)])), s)
            report(lambda: flights)
            report(lambda: again(s), s)
    """)
    srv.check()
    flights = [outs.pop(1).ok, outs.pop(3).ok]
    mail, to, bc = (b"MAIL FROM:<from@example.com>\r\n", b"RCPT TO:<to@example.com>\r\n",
                    b"RCPT TO:<b@x>\r\nRCPT TO:<c@x>\r\n")
    bdat = b"BDAT %d LAST\r\n" % len(MSG) + MSG
    assert flights == [
        [(mail + to + b"DATA\r\n").decode(), (WIRE + mail + bc + b"DATA\r\n").decode()],
        # RFC 3030 + 2920: all three chunked mails in one write.
        [(mail + to + bdat + b"RSET\r\n" + mail + bc + bdat + b"RSET\r\n" + mail + to
          + bdat).decode()],
    ], flights
    later = res(exc="SMTPResponseException", code=421, enhanced="4.3.2", transient=True)
    # Only b@x was refused (the server closed before answering c@x), as smtplib lists it.
    refused = {"b@x": [421, "4.3.2 shutting down"]}
    assert outs[0].ok == [
        OK, res(exc="SMTPSenderRefused", code=421, enhanced="4.3.2", transient=True), later,
    ], outs[0]
    assert outs[2].ok == [
        OK, res(exc="SMTPRecipientsRefused", transient=True, refused=refused,
                renh={"b@x": "4.3.2"}, recipients=refused), later,
    ], outs[2]
    assert outs[0].closed and outs[2].closed
    assert_second_mail(outs[1], srv, 1)
    assert_second_mail(outs[3], srv, 3)
    assert srv.data[0] == [WIRE] and srv.data[2] == [MSG] * 3


# ------------------------------------------------------------- switches

def test_switches_force_lock_step(runtime):
    # pipelining=False: one command, one reply, even when PIPELINING is offered (RFC 2920
    # is optional); with CHUNKING each BDAT waits for its reply and a refused chunk is the
    # last one sent (RFC 3030 2: no further BDAT after a 4xx/5xx). chunking=False: DATA.
    alone = {"alone": True}
    lock = GREET + CHUNK + [
        ("expect", M, alone), send(b"250 ok"), ("expect", R, alone), send(b"250 ok"),
        ("expect", R, alone), send(b"250 ok"), ("expect", D, alone), send(b"354 go"),
        ("expect_data",), send(b"250 2.0.0 queued")] + QUIT
    lock_bdat = GREET + CHUNK + [
        ("expect", M, alone), send(b"250 ok"), ("expect", R, alone), send(b"250 ok"),
        ("expect_bdat", {"until_last": True, "reply": b"250 2.0.0 chunk ok\r\n", "alone": True}),
        send(b"250 2.0.0 queued"),
        ("expect", M, alone), send(b"250 ok"), ("expect", R, alone), send(b"250 ok"),
        ("expect_bdat", alone), send(b"554 5.6.0 content refused"),
        ("expect", S, alone), send(b"250 2.0.0 reset")] + QUIT
    piped_data = GREET + CHUNK + [group(M, R, R, D), send(b"250 ok", b"250 ok", b"250 ok",
                                                          b"354 go"),
                                  ("expect_data",), send(b"250 2.0.0 queued")] + QUIT
    client_lock = GREET + CHUNK + [
        ("expect", M, alone), send(b"250 ok"), ("expect", R, alone), send(b"250 ok"),
        ("expect", D, alone), send(b"354 go"), ("expect_data",), send(b"250 2.0.0 queued"),
        ("expect", Q, alone)] + BYE
    outs, srv = drive(runtime, [lock, lock_bdat, piped_data, client_lock], """
        big = b"".join(b"line %04d\\n" % k for k in range(150))
        s = sc.SMTP(timeout=TIMEOUT, pipelining=False, chunking=False)
        s.connect(HOST, PORT)
        report(lambda: s.sendmail(FROM, ["a@x", "b@x"], MSG), s)
        s.quit()
        import io
        s = sc.SMTP(timeout=TIMEOUT, pipelining=False)
        s.connect(HOST, PORT)
        # From a file: its size is unknown, so several chunks (one in memory is a single
        # "BDAT <size> LAST").
        report(lambda: s.sendmail(FROM, TO, io.BytesIO(big)), s)
        report(lambda: s.sendmail(FROM, TO, io.BytesIO(big)), s)
        s.quit()
        s = sc.SMTP(timeout=TIMEOUT, chunking=False)
        s.connect(HOST, PORT)
        report(lambda: s.sendmail(FROM, ["a@x", "b@x"], MSG), s)
        s.quit()
        c = sc.Client(HOST, PORT, tls="none", from_addr=FROM, timeout=TIMEOUT,
                      pipelining=False, chunking=False)
        report(lambda: c.send(TO, MSG).ok)
    """)
    srv.check()
    big = b"".join(b"line %04d\n" % k for k in range(150))
    assert [o.ok for o in outs] == [{}, {}, None, {}, True], outs
    o = outs[2]
    assert (o.exc, o.code, o.enhanced, o.closed) == ("SMTPDataError", 554, "5.6.0", False), o
    assert srv.data[0] == [WIRE] and srv.data[2] == [WIRE] and srv.data[3] == [WIRE]
    *first, refused = srv.data[1]
    assert b"".join(first) == norm(big) and len(first) >= 3
    assert len(refused) < len(norm(big))  # the refused mail's first chunk, and no more


# ------------------------------------------------------------- MAIL/RCPT parameters

def mail_lines(lines):
    return [x for x in lines if x.startswith(b"MAIL")]


def test_size(runtime):
    # RFC 1870: SIZE=<n> counts the CRLF-normalised message (6: not the dot-stuffing); a
    # message above the server's limit is refused before a byte of its transaction is sent
    # (a message exactly at the limit is fine), in sendmail and for one mail of a batch.
    txn = [("expect", M), send(b"250 ok"), ("expect", R), send(b"250 ok"),
           ("expect", D), send(b"354 go"), ("expect_data",), send(b"250 2.0.0 queued")]
    script = GREET + ehlo(b"SIZE 1000", b"8BITMIME") + txn * 3 + QUIT
    outs, srv = drive(runtime, script, RES + """
        s = sc.SMTP(timeout=TIMEOUT)
        s.connect(HOST, PORT)
        report(lambda: s.sendmail(FROM, TO, b"a\\nb\\r\\n..c"), s)
        report(lambda: s.sendmail(FROM, TO, b"x" * 999), s)
        report(lambda: s.sendmail(FROM, TO, b"x" * 998), s)
        report(lambda: res(s.send_many([(FROM, TO, b"y" * 1200), (FROM, TO, MSG)])), s)
        s.quit()
    """)
    srv.check()
    o = outs[1]
    assert (o.exc, o.closed) == ("SMTPNotSupportedError", False), o
    assert "1001" in o.why and "1000" in o.why, o
    assert outs[3].ok[0]["exc"] == "SMTPNotSupportedError" and outs[3].ok[1] == OK, outs[3]
    assert [outs[0].ok, outs[2].ok] == [{}, {}]
    assert mail_lines(srv.lines[0]) == [b"MAIL FROM:<from@example.com> SIZE=%d" % n
                                        for n in (11, 1000, len(MSG))]
    assert srv.data[0] == [b"a\r\nb\r\n...c\r\n.\r\n", b"x" * 998 + b"\r\n.\r\n", WIRE]
    assert b"y" * 10 not in srv.received[0]


def test_8bitmime(runtime):
    # RFC 6152 2-3: an 8-bit body is declared BODY=8BITMIME; without the extension it may
    # not be sent at all (refused before MAIL, the session stays usable).
    txn = [("expect", M), send(b"250 ok"), ("expect", R), send(b"250 ok"),
           ("expect", D), send(b"354 go"), ("expect_data",), send(b"250 2.0.0 queued")]
    outs, srv = drive(runtime, [GREET + ehlo(b"8BITMIME") + txn * 3 + QUIT,
                                GREET + ehlo(b"DSN") + txn + QUIT], """
        s = sc.SMTP(timeout=TIMEOUT)
        for k in range(2):
            s.connect(HOST, PORT)
            if not k:
                report(lambda: s.sendmail(FROM, TO, bytearray(b"caf\\xe9\\r\\n")), s)
            report(lambda: s.sendmail(FROM, TO, b"\\x80\\r\\n"), s)
            report(lambda: s.sendmail(FROM, TO, MSG), s)
            s.quit()
    """)
    srv.check()
    assert [o.ok for o in outs[:3]] == [{}, {}, {}], outs
    o = outs[3]
    assert (o.exc, o.closed) == ("SMTPNotSupportedError", False), o
    assert outs[4].ok == {}, outs[4]
    bare = b"MAIL FROM:<from@example.com>"
    assert mail_lines(srv.lines[0]) == [bare + b" BODY=8BITMIME"] * 2 + [bare]
    assert mail_lines(srv.lines[1]) == [bare]
    assert srv.data[0][:2] == [b"caf\xe9\r\n.\r\n", b"\x80\r\n.\r\n"]


def test_smtputf8(runtime):
    # RFC 6531 3.4: a non-ASCII address needs SMTPUTF8 on MAIL (sent as UTF-8); without the
    # extension the mail is refused before MAIL and the session stays usable.
    txn = [("expect", M), send(b"250 ok"), ("expect", R), send(b"250 ok"),
           ("expect", D), send(b"354 go"), ("expect_data",), send(b"250 2.0.0 queued")]
    outs, srv = drive(runtime, [GREET + ehlo(b"SMTPUTF8", b"8BITMIME") + txn * 2 + QUIT,
                                GREET + ehlo(b"8BITMIME") + txn + QUIT], """
        s = sc.SMTP(timeout=TIMEOUT)
        s.connect(HOST, PORT)
        report(lambda: s.sendmail("j\\u00fcrgen@example.com", TO, MSG), s)
        report(lambda: s.sendmail(FROM, ["\\u00f6@example.com"], MSG), s)
        s.quit()
        s.connect(HOST, PORT)
        report(lambda: s.sendmail("j\\u00fcrgen@example.com", TO, MSG), s)
        report(lambda: s.sendmail(FROM, ["\\u00f6@example.com"], MSG), s)
        report(lambda: s.sendmail(FROM, TO, MSG), s)
        s.quit()
    """)
    srv.check()
    assert [o.ok for o in outs[:2]] == [{}, {}], outs
    for o in outs[2:4]:
        assert (o.exc, o.closed) == ("SMTPNotSupportedError", False), o
    assert outs[4].ok == {}, outs[4]
    assert srv.lines[0][1:3] == ["MAIL FROM:<jürgen@example.com> SMTPUTF8".encode(),
                                 b"RCPT TO:<to@example.com>"]
    assert srv.lines[0][4:6] == [b"MAIL FROM:<from@example.com> SMTPUTF8",
                                 "RCPT TO:<ö@example.com>".encode()]
    assert mail_lines(srv.lines[1]) == [b"MAIL FROM:<from@example.com>"]
    assert "\u00fc".encode() not in srv.received[1] and "\u00f6".encode() not in srv.received[1]


def test_dsn(runtime):
    # RFC 3461 4.1-4.4: NOTIFY and ORCPT (xtext) on every RCPT, RET and ENVID (xtext) on
    # MAIL; Client.send passes the same options; without DSN each option is refused
    # before MAIL.
    txn = [("expect", M), send(b"250 ok"), ("expect", R), send(b"250 ok"), ("expect", R),
           send(b"250 ok"), ("expect", D), send(b"354 go"), ("expect_data",),
           send(b"250 2.0.0 queued")]
    one = [("expect", M), send(b"250 ok"), ("expect", R), send(b"250 ok"),
           ("expect", D), send(b"354 go"), ("expect_data",), send(b"250 2.0.0 queued")]
    outs, srv = drive(runtime, [GREET + ehlo(b"DSN") + txn + QUIT,
                                GREET + ehlo(b"DSN") + one + QUIT,
                                GREET + ehlo(b"8BITMIME") + one + QUIT], """
        s = sc.SMTP(timeout=TIMEOUT)
        s.connect(HOST, PORT)
        report(lambda: s.sendmail(FROM, ["x+y@example.com", "b=c@x"], MSG,
                                  notify="failure, delay", ret="HDRS", envid="a+b=c"), s)
        s.quit()
        c = sc.Client(HOST, PORT, tls="none", from_addr=FROM, timeout=TIMEOUT)
        report(lambda: c.send(TO, MSG, notify="NEVER", ret="FULL").ok)
        s.connect(HOST, PORT)
        for kw in ({"notify": "NEVER"}, {"ret": "HDRS"}, {"envid": "x"}):
            report(lambda: s.sendmail(FROM, TO, MSG, **kw), s)
        report(lambda: s.sendmail(FROM, TO, MSG), s)
        s.quit()
    """)
    srv.check()
    assert [o.ok for o in outs[:2]] == [{}, True], outs
    for o in outs[2:5]:
        assert (o.exc, o.closed) == ("SMTPNotSupportedError", False), o
    assert outs[5].ok == {}
    assert srv.lines[0][1:4] == [
        b"MAIL FROM:<from@example.com> RET=HDRS ENVID=a+2Bb+3Dc",
        b"RCPT TO:<x+y@example.com> NOTIFY=FAILURE,DELAY ORCPT=rfc822;x+2By@example.com",
        b"RCPT TO:<b=c@x> NOTIFY=FAILURE,DELAY ORCPT=rfc822;b+3Dc@x"]
    assert srv.lines[1][1:3] == [b"MAIL FROM:<from@example.com> RET=FULL",
                                 b"RCPT TO:<to@example.com> NOTIFY=NEVER ORCPT=rfc822;"
                                 b"to@example.com"]
    assert srv.lines[2][1:3] == [b"MAIL FROM:<from@example.com>", b"RCPT TO:<to@example.com>"]


@pytest.fixture(scope="module")
def tls_ctx(certs):
    c = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    c.load_cert_chain(certs["server.pem"], certs["server.key"])
    return c, certs["ca.der"]


def test_requiretls(runtime, tls_ctx):
    # RFC 8689 4: REQUIRETLS only over TLS and only to a server that offers it; otherwise
    # refused before MAIL, the session stays usable.
    server_ctx, ca = tls_ctx
    one = [("expect", M), send(b"250 ok"), ("expect", R), send(b"250 ok"),
           ("expect", D), send(b"354 go"), ("expect_data",), send(b"250 2.0.0 queued")]
    script = GREET + ehlo(b"REQUIRETLS", b"STARTTLS") + [
        ("expect", b"STARTTLS"), send(b"220 2.0.0 go ahead"), ("starttls", server_ctx)] + \
        ehlo(b"REQUIRETLS") + one * 2
    plain_tls = GREET + ehlo(b"STARTTLS") + [
        ("expect", b"STARTTLS"), send(b"220 2.0.0 go ahead"), ("starttls", server_ctx)] + \
        ehlo(b"8BITMIME") + one
    outs, srv = drive(runtime, [script, plain_tls], """
        ctx = sc.create_context(open(ARGS[0], "rb").read())
        s = sc.SMTP(timeout=TIMEOUT, local_hostname="me.example")
        for k in range(2):
            s.connect(HOST, PORT)
            if not k:
                report(lambda: s.sendmail(FROM, TO, MSG, requiretls=True), s)
            s.starttls(context=ctx)
            report(lambda: s.sendmail(FROM, TO, MSG, requiretls=True), s)
            report(lambda: s.sendmail(FROM, TO, MSG), s)
            s.close()
    """, args=[ca])
    srv.check()
    assert outs[0].exc == "SMTPNotSupportedError" and outs[0].closed is False, outs[0]
    assert [outs[1].ok, outs[2].ok] == [{}, {}], outs
    assert outs[3].exc == "SMTPNotSupportedError" and outs[3].closed is False, outs[3]
    assert outs[4].ok == {}, outs[4]
    assert mail_lines(srv.lines[0]) == [b"MAIL FROM:<from@example.com> REQUIRETLS",
                                        b"MAIL FROM:<from@example.com>"]
    assert mail_lines(srv.lines[1]) == [b"MAIL FROM:<from@example.com>"]
