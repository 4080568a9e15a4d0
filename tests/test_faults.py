# SPDX-License-Identifier: MIT
"""Connection and reply faults a real server won't produce, from a scripted server, with the
library running under MicroPython and CPython (RFC 5321 unless noted).

Every failure must leave the SMTP object closed (`s.sock is None`) where the session cannot
go on, and the same object (or Client) must send the next mail on a fresh connection: most
tests run a second, good connection after the fault (faultkit.again / CLIENT_TWICE).
Refusals (5xx to MAIL/RCPT/DATA, 535 to AUTH) leave the session open, as smtplib does;
test_faults_mail.py covers them.
"""

import pytest

from faultkit import (
    CLIENT_TWICE, CUE, DATA, EHLO, EHLO_REPLY, EOD, GOOD, GOOD_LINES, GREET, MAIL, QUIT, RCPT,
    RSET, SMTP_TWICE, STAGES, WIRE, assert_second_mail, drive,
)


def split(script, n=1):
    """The same script with every "send" written n bytes at a time."""
    return [(s[0], s[1], {"split": n}) if s[0] == "send" else s for s in script]


def assert_failed_then_sent(outs, srv, exc, *, closed=True):
    """First mail: `exc`, session closed. Second mail on connection 1: delivered."""
    assert len(outs) == 2, outs
    assert outs[0].exc == exc, outs[0]
    if closed is not None and outs[0].closed is not None:
        assert outs[0].closed is closed, outs[0]
    assert_second_mail(outs[1], srv)
    srv.check()


# ------------------------------------------------------------ 1. replies in odd pieces


def test_every_reply_split_at_every_byte(runtime):
    # 4.2: a reply is complete at its CRLF, however TCP cuts it. Multi-line greeting too.
    script = split(
        [("send", b"220-fake.example ESMTP\r\n220 ready\r\n")]
        + [("expect", b"EHLO "), ("send", b"250-fake.example\r\n250-8BITMIME\r\n250 SIZE 1000000\r\n")]
        + [("expect", b"MAIL FROM:<from@example.com> SIZE=21"), ("send", b"250 2.1.0 ok\r\n")]
        + RCPT + DATA + EOD + QUIT
    )
    outs, srv = drive(runtime, script, """
        s = sc.SMTP(timeout=TIMEOUT)
        report(lambda: s.connect(HOST, PORT), s)
        report(lambda: (s.ehlo(), s.has_extn("8bitmime"), s.esmtp_features["size"])[1:], s)
        report(lambda: s.sendmail(FROM, TO, MSG), s)
        report(lambda: s.quit(), s)
    """)
    srv.check()
    assert [o.ok for o in outs] == [
        [220, "fake.example ESMTP\nready"], [True, "1000000"], {}, [221, "2.0.0 bye"],
    ], outs
    assert srv.data == [[WIRE]]


def test_client_send_split_at_every_byte(runtime):
    outs, srv = drive(runtime, split(GOOD), """
        c = sc.Client(HOST, PORT, tls="none", from_addr=FROM, timeout=TIMEOUT)
        report(lambda: c.send(TO, MSG))
    """)
    srv.check()
    assert outs[0].ok == {"refused": {}}, outs
    assert srv.data == [[WIRE]] and srv.lines[0][1:] == GOOD_LINES


@pytest.mark.parametrize("n", [7, 97, 500])
def test_512_byte_reply_lines_fit(runtime, n):
    # 4.5.3.1.5: a reply line is up to 512 octets with its CRLF; that must fit the default
    # buffer whatever the segment size.
    long = b"x" * 506
    script = split(
        [("send", b"220-" + long + b"\r\n220 " + long + b"\r\n")]
        + [("expect", b"EHLO "), ("send", b"250-" + long + b"\r\n250 8BITMIME\r\n")]
        + MAIL + RCPT + DATA + EOD + QUIT,
        n,
    )
    assert len(b"220 " + long + b"\r\n") == 512
    outs, srv = drive(runtime, script, "s = sc.SMTP(timeout=TIMEOUT)\nreport(lambda: again(s), s)")
    assert_second_mail(outs[0], srv, 0)
    srv.check()


def test_bigger_bufsize_takes_longer_lines(runtime):
    long = b"y" * 1000
    script = [("send", b"220 " + long + b"\r\n")] + EHLO + MAIL + RCPT + DATA + EOD + QUIT
    outs, srv = drive(runtime, script, """
        s = sc.SMTP(timeout=TIMEOUT, bufsize=1024)
        report(lambda: again(s), s)
    """)
    assert_second_mail(outs[0], srv, 0)
    srv.check()


# Several replies in one write to a lock-step client: only the first was asked for; the rest
# is unsolicited (4.2, RFC 2920 3.2: without PIPELINING one reply per command).
LOCKSTEP = {
    "greeting+ehlo": ([("send", GREET[0][1] + EHLO_REPLY)], []),
    "ehlo+mail": (GREET + [("expect", b"EHLO "), ("send", EHLO_REPLY + b"250 ok\r\n")],
                  [b"EHLO"]),
    "mail+rcpt+data": (GREET + EHLO + [("expect", b"MAIL"),
                                       ("send", b"250 ok\r\n250 ok\r\n354 go\r\n")],
                       [b"EHLO", b"MAIL"]),
    "rcpt+data": (GREET + EHLO + MAIL + [("expect", b"RCPT"), ("send", b"250 ok\r\n354 go\r\n")],
                  [b"EHLO", b"MAIL", b"RCPT"]),
}


@pytest.mark.parametrize("case", list(LOCKSTEP))
def test_replies_ahead_of_commands_are_unsolicited(runtime, case):
    script, sent = LOCKSTEP[case]
    outs, srv = drive(runtime, [script + [("wait_close",)], GOOD], SMTP_TWICE)
    assert_failed_then_sent(outs, srv, "SMTPProtocolError")
    # Nothing was sent after the reply that carried the extra bytes.
    assert [line.split()[0] for line in srv.lines[0]] == sent


def test_end_of_data_reply_with_extra_bytes(runtime):
    # "250 queued" accepted the mail: it is reported as sent (never failed, or a retry would
    # deliver it twice). The unasked "221" after it is caught before the next command.
    script = STAGES["eod"] + [("send", b"250 queued\r\n221 bye\r\n"), ("wait_close",)]
    outs, srv = drive(runtime, [script, GOOD], """
s = sc.SMTP(timeout=TIMEOUT)
report(lambda: first(s), s)
report(lambda: s.noop(), s)
report(lambda: again(s), s)
""")
    assert outs[0].exc is None and outs[0].ok == {}, outs[0]
    assert outs[1].exc == "SMTPProtocolError" and outs[1].closed, outs[1]
    assert outs[2].exc is None, outs[2]  # the next connection works


def test_client_reports_accepted_mail_despite_extra_bytes(runtime):
    script = STAGES["eod"] + [("send", b"250 queued\r\n221 bye\r\n"), ("wait_close",)]
    outs, srv = drive(runtime, [script], """
c = sc.Client(HOST, PORT, tls="none", from_addr=FROM, timeout=TIMEOUT)
report(lambda: c.send(TO, MSG).refused)
""")
    assert outs[0].exc is None and outs[0].ok == {}, outs[0]
    # QUIT was not sent into a desynchronised session.
    assert not any(line.startswith(b"QUIT") for line in srv.lines[0])


# ------------------------------------------------------------------------ 2. greeting


@pytest.mark.parametrize("greeting,code,enhanced", [
    (b"554 5.7.1 no service here\r\n", 554, "5.7.1"),
    (b"421 4.3.2 busy, try later\r\n", 421, "4.3.2"),
])
def test_refused_greeting_from_constructor(runtime, greeting, code, enhanced):
    # 3.1: 554 (or 421) instead of 220: no session. smtplib raises SMTPConnectError.
    transient = code == 421
    outs, srv = drive(runtime, [[("send", greeting), ("wait_close",)], GOOD], """
        report(lambda: sc.SMTP(HOST, PORT, timeout=TIMEOUT))
        report(lambda: again(sc.SMTP(timeout=TIMEOUT)))
    """)
    o = outs[0]
    assert (o.exc, o.code, o.transient) == ("SMTPConnectError", code, transient), o
    assert o.enhanced == enhanced
    assert srv.received[0] == b""  # not even EHLO
    assert_second_mail(outs[1], srv)
    srv.check()


@pytest.mark.parametrize("code", [554, 421])
def test_refused_greeting_from_client(runtime, code):
    greeting = b"%d no service\r\n" % code
    outs, srv = drive(runtime, [[("send", greeting), ("wait_close",)], GOOD], CLIENT_TWICE)
    o = outs[0]
    assert (o.exc, o.code, o.transient) == ("SMTPConnectError", code, code == 421), o
    assert srv.received[0] == b""
    assert_failed_then_sent(outs, srv, "SMTPConnectError")


def test_connect_returns_refused_greeting_and_closes(runtime):
    # smtplib's connect() returns (code, msg); the library also closes on a non-220.
    outs, srv = drive(runtime, [[("send", b"554 go away\r\n"), ("wait_close",)], GOOD],
                      SMTP_TWICE)
    assert outs[0].ok == ["greeting", 554, "go away", True], outs[0]
    assert_second_mail(outs[1], srv)
    srv.check()


# ------------------------------------------------------------------- 3. 421 at each stage

# The exception each stage's failing reply raises from sendmail / Client.send.
STAGE_EXC = {
    "ehlo": "SMTPHeloError",
    "mail": "SMTPSenderRefused",
    "rcpt": "SMTPRecipientsRefused",
    "data": "SMTPDataError",
    "eod": "SMTPDataError",
}


@pytest.mark.parametrize("api", ["smtp", "client"])
@pytest.mark.parametrize("stage", list(STAGE_EXC))
def test_421_at_each_stage(runtime, stage, api):
    # 3.8: 421 means the server is closing the channel: transient, and the client must
    # close too (no RSET, no QUIT on it).
    script = STAGES[stage] + [("send", b"421 4.3.2 shutting down\r\n"), ("wait_close",)]
    outs, srv = drive(runtime, [script, GOOD], SMTP_TWICE if api == "smtp" else CLIENT_TWICE)
    o = outs[0]
    if stage == "rcpt":
        assert o.recipients == {"to@example.com": [421, "4.3.2 shutting down"]}, o
    else:
        assert (o.code, o.enhanced) == (421, "4.3.2"), o
    assert o.transient is True, o
    assert_failed_then_sent(outs, srv, STAGE_EXC[stage])
    # The client said nothing after the 421.
    assert not srv.received[0].endswith((b"RSET\r\n", b"QUIT\r\n")), srv.received[0]


def test_421_to_one_of_several_recipients(runtime):
    # A 421 to the 2nd RCPT ends the session: SMTPRecipientsRefused lists the recipients
    # the server refused, as smtplib's does (not a@x, which it accepted), and the 3rd RCPT
    # is never sent.
    script = GREET + EHLO + MAIL + [
        ("expect", b"RCPT TO:<a@x>"), ("send", b"250 ok\r\n"),
        ("expect", b"RCPT TO:<b@x>"), ("send", b"421 4.4.5 too busy\r\n"), ("wait_close",),
    ]
    outs, srv = drive(runtime, [script, GOOD], """
        s = sc.SMTP(timeout=TIMEOUT)
        s.connect(HOST, PORT)
        report(lambda: s.sendmail(FROM, ["a@x", "b@x", "c@x"], MSG), s)
        report(lambda: again(s), s)
    """)
    o = outs[0]
    assert o.exc == "SMTPRecipientsRefused" and o.transient is True and o.closed, o
    assert sorted(o.recipients) == ["b@x"]
    assert all(v[0] == 421 for v in o.recipients.values()), o
    assert b"c@x" not in srv.received[0]
    assert_second_mail(outs[1], srv)
    srv.check()


# ------------------------------------------------------------- 4. disconnects and resets

DISCONNECTS = {
    "before greeting": [("close",)],
    "mid greeting line": [("send", b"220 fake.exa"), ("close",)],
    "mid multi-line greeting": [("send", b"220-fake.example\r\n"), ("close",)],
    "after greeting": GREET + [("close",)],
    "after EHLO": STAGES["ehlo"] + [("close",)],
    "mid multi-line EHLO": STAGES["ehlo"] + [("send", b"250-fake.example\r\n250-8BI"),
                                             ("close",)],
    "mid EHLO line": STAGES["ehlo"] + [("send", b"250 fake"), ("close",)],
    "after MAIL": STAGES["mail"] + [("close",)],
    "mid MAIL reply": STAGES["mail"] + [("send", b"250 2.1.0"), ("close",)],
    "after RCPT": STAGES["rcpt"] + [("close",)],
    "after DATA": STAGES["data"] + [("close",)],
    "after 354": STAGES["data"] + [("send", b"354 go ahead\r\n"), ("close",)],
    "after end of data": STAGES["eod"] + [("close",)],
    "mid end-of-data reply": STAGES["eod"] + [("send", b"25"), ("close",)],
}
RESETS = {
    "before greeting": [("reset",)],
    "after EHLO": STAGES["ehlo"] + [("reset",)],
    "after MAIL": STAGES["mail"] + [("reset",)],
    "after 354": STAGES["data"] + [("send", b"354 go ahead\r\n"), ("reset",)],
    "after end of data": STAGES["eod"] + [("reset",)],
}


@pytest.mark.parametrize(
    "script", list(DISCONNECTS.values()) + list(RESETS.values()),
    ids=["close " + k for k in DISCONNECTS] + ["reset " + k for k in RESETS],
)
def test_disconnect_at_each_stage(runtime, script):
    outs, srv = drive(runtime, [script, GOOD], SMTP_TWICE)
    exc = "SMTPServerDisconnected"
    if script == [("reset",)] and outs[0].exc == "ConnectionResetError":
        # The RST can land while connect() itself still waits for the handshake to
        # complete: then it is a failed connect, a plain OSError as smtplib raises for a
        # refused one (SMTPException is an OSError too).
        exc = "ConnectionResetError"
    assert_failed_then_sent(outs, srv, exc)


@pytest.mark.parametrize("how", ["close", "reset"])
def test_disconnect_with_client(runtime, how):
    outs, srv = drive(runtime, [STAGES["mail"] + [(how,)], GOOD], CLIENT_TWICE)
    assert_failed_then_sent(outs, srv, "SMTPServerDisconnected")


def test_commands_after_disconnect_say_not_connected(runtime):
    outs, srv = drive(runtime, STAGES["ehlo"] + [("close",)], """
        s = sc.SMTP(timeout=TIMEOUT)
        s.connect(HOST, PORT)
        report(lambda: s.ehlo(), s)
        report(lambda: s.noop(), s)
        report(lambda: s.sendmail(FROM, TO, MSG), s)
        report(lambda: s.quit(), s)
    """)
    srv.check()
    assert [o.exc for o in outs] == ["SMTPServerDisconnected"] * 4, outs
    assert all(o.closed for o in outs)


# -------------------------------------------------------------------------- 5. silence

SILENCE = {"greeting": 1, "data": 1, "eod": 2}  # deadline in client timeouts


@pytest.mark.parametrize("stage", list(SILENCE))
def test_silent_server_times_out(runtime, stage):
    # 4.5.3.2: every wait has a deadline. The end of data gets 2x (4.5.3.2.6: the longest).
    outs, srv = drive(runtime, [STAGES[stage] + [("wait_close",)], GOOD], SMTP_TWICE, timeout=1)
    o = outs[0]
    assert o.exc == "SMTPTimeoutError", o
    assert 0.8 * SILENCE[stage] <= o.secs <= SILENCE[stage] + 1.5, o
    assert_failed_then_sent(outs, srv, "SMTPTimeoutError")
    assert srv.client_closed[0]


def test_silence_after_quit_still_sent(runtime):
    # Client.send: the 250 after the end of data is what counts (see test 13 below).
    script = GOOD[:-3] + [("expect", b"QUIT"), ("wait_close",)]
    outs, srv = drive(runtime, [script, GOOD], CLIENT_TWICE, timeout=1)
    assert outs[0].ok == {"refused": {}} and outs[0].secs < 2.5, outs[0]
    assert srv.data[0] == [WIRE]
    assert_second_mail(outs[1], srv)
    srv.check()


# --------------------------------------------------------------- 6. malformed replies

BAD_REPLIES = {
    "4-digit code": b"2500 ok\r\n",
    "2-digit code": b"25 ok\r\n",
    "code only 2 digits": b"25\r\n",
    "letters": b"abc\r\n",
    "letter in code": b"2a0 ok\r\n",
    "code 600": b"600 x\r\n",
    "code 199": b"199 x\r\n",
    "code 260": b"260 x\r\n",
    "code 2.0": b"2 0 ok\r\n",
    "bad separator": b"250x ok\r\n",
    "leading space": b" 250 ok\r\n",
    "empty line": b"\r\n",
    "multi-line code changes": b"250-a\r\n251 b\r\n",
    "multi-line class changes": b"250-a\r\n550 b\r\n",
    "overlong, no LF": b"250 " + b"x" * 2000,
    "overlong line": b"250 " + b"x" * 1000 + b"\r\n",
    "overlong 2nd line": b"250-ok\r\n250 " + b"x" * 700 + b"\r\n",
}


# Every malformed reply at the greeting and to MAIL; a few to EHLO and the end of data.
MALFORMED = [(stage, name) for stage in ("greeting", "mail") for name in BAD_REPLIES] + [
    (stage, name) for stage in ("ehlo", "eod")
    for name in ("4-digit code", "multi-line code changes", "overlong, no LF")
]


@pytest.mark.parametrize("stage,name", MALFORMED, ids=[f"{s}-{n}" for s, n in MALFORMED])
def test_malformed_reply(runtime, stage, name):
    # 4.2: Reply-code = %x32-35 %x30-35 %x30-39, then SP or "-"; a multi-line reply keeps its
    # code; a line longer than the buffer is a protocol error, not a reallocation.
    reply = BAD_REPLIES[name]
    outs, srv = drive(runtime, [STAGES[stage] + [("send", reply), ("wait_close",)], GOOD],
                      SMTP_TWICE)
    o = outs[0]
    assert o.exc == "SMTPProtocolError", o
    if b"x" * 700 in reply:
        assert "longer" in o.why, o
    assert_failed_then_sent(outs, srv, "SMTPProtocolError")


@pytest.mark.parametrize("stage,first", [("ehlo", b"250"), ("mail", b"550")])
def test_endless_multi_line_reply(runtime, stage, first):
    # 4.2 sets no limit on the number of lines, but the client keeps the text of EHLO and
    # error replies: a server streaming continuation lines must get a protocol error, not
    # exhaust the heap (MemoryError on a device; the unix port's heap is gone after ~30k).
    lines = first + b"-" + b"x" * 60 + b"\r\n"
    script = STAGES[stage] + [("send", lines * 50000 + first + b" end\r\n"), ("wait_close",)]
    outs, srv = drive(runtime, [script, GOOD], SMTP_TWICE)
    assert (outs[0].exc, outs[0].closed) == ("SMTPProtocolError", True), outs[0]
    assert "lines" in outs[0].why, outs[0]
    assert_second_mail(outs[1], srv)
    # The client hung up in the middle of the 3 MB: the server's write may fail, no more.
    assert all(e.startswith("conn 0 step %d send" % len(STAGES[stage])) for e in srv.errors), \
        srv.errors


def test_long_multi_line_replies_are_fine(runtime):
    # What real servers send is well within the bound: 40 EHLO lines, a 20-line 550.
    ehlo = b"250-fake.example\r\n" + b"".join(b"250-X-EXT%d arg\r\n" % k for k in range(39)) \
        + b"250 8BITMIME\r\n"
    err = b"550-5.7.1 line\r\n" * 19 + b"550 5.7.1 last\r\n"
    script = GREET + [("expect", b"EHLO "), ("send", ehlo),
                      ("expect", b"MAIL"), ("send", err)] + RSET + [("wait_close",)]
    outs, srv = drive(runtime, script, """
        s = sc.SMTP(timeout=TIMEOUT)
        s.connect(HOST, PORT)
        report(lambda: [s.ehlo()[0], len(s.esmtp_features)], s)
        report(lambda: s.sendmail(FROM, TO, MSG), s)
    """)
    srv.check()
    assert outs[0].ok == [250, 40], outs[0]
    assert (outs[1].exc, outs[1].enhanced) == ("SMTPSenderRefused", "5.7.1"), outs[1]
    assert outs[1].text.count("\n") == 19


@pytest.mark.parametrize("line", [b"250-X-\xff\xfe bad", b"250-AUTH PLAIN \xc3", b"250-SIZE \xff"])
def test_ehlo_reply_not_ascii(runtime, line):
    # 4.1.1.1: ehlo-keyword and ehlo-param are printable ASCII; 8-bit bytes there are a
    # protocol error (not a UnicodeError escaping from ehlo() with the socket open).
    script = STAGES["ehlo"] + [("send", b"250-fake\r\n" + line + b"\r\n250 8BITMIME\r\n"),
                               ("wait_close",)]
    outs, srv = drive(runtime, [script, GOOD], SMTP_TWICE)
    assert_failed_then_sent(outs, srv, "SMTPProtocolError")


def test_code_without_text_is_valid(runtime):
    # 4.2: "Reply-code [ SP textstring ] CRLF": the text is optional.
    script = [("send", b"220\r\n"), ("expect", b"EHLO "), ("send", b"250-fake\r\n250\r\n")] \
        + MAIL + RCPT + DATA + EOD + QUIT
    outs, srv = drive(runtime, script, "s = sc.SMTP(timeout=TIMEOUT)\nreport(lambda: again(s))")
    assert_second_mail(outs[0], srv, 0)
    srv.check()


# --------------------------------------------------------------- 7. EHLO rejected

@pytest.mark.parametrize("code", [500, 502])
def test_ehlo_unknown_falls_back_to_helo(runtime, code):
    # 4.1.4 / 3.2: a server that does not know EHLO answers 500 or 502; say HELO instead.
    script = GREET + [
        ("expect", b"EHLO "), ("send", b"%d 5.5.1 what?\r\n" % code),
        ("expect", b"HELO "), ("send", b"250 fake.example\r\n"),
    ] + MAIL + RCPT + DATA + EOD + QUIT
    outs, srv = drive(runtime, [script, script], """
        s = sc.SMTP(timeout=TIMEOUT)
        report(lambda: again(s), s)
        c = sc.Client(HOST, PORT, tls="none", from_addr=FROM, timeout=TIMEOUT)
        report(lambda: c.send(TO, MSG))
    """)
    srv.check()
    for conn, out in enumerate(outs):
        assert_second_mail(out, srv, conn)
        assert srv.lines[conn][0][:5] == b"EHLO " and srv.lines[conn][1][:5] == b"HELO "


# A 5xx to EHLO gets HELO (RFC 5321 4.1.4; smtplib does the same), a 4xx does not; 421 ends.
@pytest.mark.parametrize("ehlo,helo", [(554, 554), (421, None), (451, None), (550, 550),
                                       (502, 554), (500, 421)])
def test_ehlo_refused(runtime, ehlo, helo):
    script = GREET + [("expect", b"EHLO "), ("send", b"%d no\r\n" % ehlo)]
    if helo:
        script += [("expect", b"HELO "), ("send", b"%d no\r\n" % helo)]
    outs, srv = drive(runtime, [script + [("wait_close",)], GOOD], SMTP_TWICE)
    o = outs[0]
    assert (o.exc, o.code) == ("SMTPHeloError", helo or ehlo), o
    assert len(srv.lines[0]) == (2 if helo else 1)  # no MAIL
    assert_failed_then_sent(outs, srv, "SMTPHeloError", closed=True if 421 in (ehlo, helo)
                            else None)


# ------------------------------------------------------------ 14. unsolicited data

def test_extra_line_with_greeting(runtime):
    script = [("send", b"220 fake.example\r\n250 surprise\r\n"), ("wait_close",)]
    outs, srv = drive(runtime, [script, GOOD], SMTP_TWICE)
    assert_failed_then_sent(outs, srv, "SMTPProtocolError")
    assert srv.received[0] == b""


@pytest.mark.parametrize("extra", [b"250 surprise\r\n", b"250-sur\r\n250 prise\r\n",
                                   b"220 again\r\n", b"554 no\r\n", b"250 partial"])
def test_extra_line_after_greeting_before_ehlo(runtime, extra):
    # The extra reply arrives on its own, after the greeting was read: the client finds it
    # before sending EHLO (it would otherwise take it as the EHLO reply and desync).
    script = GREET + CUE + [("send", extra), ("wait_close",)]
    outs, srv = drive(runtime, [script, GOOD], """
        s = sc.SMTP(timeout=TIMEOUT)
        s.connect(HOST, PORT)
        cue(s)
        report(lambda: s.ehlo(), s)
        report(lambda: again(s), s)
    """, timeout=1)
    assert_failed_then_sent(outs, srv, "SMTPProtocolError")
    assert srv.received[0] == b"CUE\r\n"  # no EHLO


@pytest.mark.parametrize("when", ["before MAIL", "before QUIT"])
def test_unsolicited_421_before_a_command(runtime, when):
    # 3.8: a server shutting down may send 421 unasked and close; the client reads it
    # when it next wants to send, and reports the transient 421.
    prefix = GREET + EHLO
    setup = "pass"
    if when == "before QUIT":
        prefix += MAIL + RCPT + DATA + EOD
        setup = "s.sendmail(FROM, TO, MSG)"
    step = "s.quit()" if when == "before QUIT" else "s.sendmail(FROM, TO, MSG)"
    script = prefix + CUE + [("send", b"421 4.3.2 shutting down\r\n"), ("wait_close",)]
    outs, srv = drive(runtime, [script, GOOD], f"""
        s = sc.SMTP(timeout=TIMEOUT)
        s.connect(HOST, PORT)
        s.ehlo()
        {setup}
        cue(s)
        report(lambda: {step}, s)
        report(lambda: again(s), s)
    """)
    o = outs[0]
    assert (o.exc, o.code, o.transient) == ("SMTPResponseException", 421, True), o
    assert o.closed
    assert not srv.received[0].endswith((b"MAIL FROM:<from@example.com>\r\n", b"QUIT\r\n"))
    assert_second_mail(outs[1], srv)
    srv.check()


# ------------------------------------------------- 13. after the mail was accepted

AFTER_ACCEPT = {
    "close before QUIT": [("close",)],
    # (No "250, then RST": a reset may discard the 250 still in the server's send queue.)
    "close after QUIT": [("expect", b"QUIT"), ("close",)],
    "reset after QUIT": [("expect", b"QUIT"), ("reset",)],
    "garbage to QUIT": [("expect", b"QUIT"), ("send", b"garbage\r\n"), ("wait_close",)],
    "500 to QUIT": [("expect", b"QUIT"), ("send", b"500 what\r\n"), ("wait_close",)],
    "421 to QUIT": [("expect", b"QUIT"), ("send", b"421 bye\r\n"), ("wait_close",)],
    "half a reply to QUIT": [("expect", b"QUIT"), ("send", b"22"), ("close",)],
}


@pytest.mark.parametrize("tail", list(AFTER_ACCEPT.values()), ids=list(AFTER_ACCEPT))
def test_client_send_is_sent_once_250_came(runtime, tail):
    # 4.1.1.4 / 6.1: after the 250 to the end of data the server is responsible for the
    # mail; what happens to QUIT must not make the caller send it twice.
    script = STAGES["eod"] + [("send", b"250 2.0.0 queued\r\n")] + tail
    outs, srv = drive(runtime, [script, GOOD], CLIENT_TWICE)
    assert outs[0].ok == {"refused": {}}, outs[0]
    assert srv.data[0] == [WIRE]
    assert_second_mail(outs[1], srv)
    srv.check()


# ---------------------------------------------------------------------------- 15. IPv6

def test_ipv6_loopback(runtime):
    try:
        outs, srv = drive(runtime, [GOOD, GOOD, GOOD], """
            s = sc.SMTP(timeout=TIMEOUT)
            report(lambda: again(s), s)
            report(lambda: (s.connect("[::1]:%d" % PORT), s.sendmail(FROM, TO, MSG),
                            s.quit())[1], s)
            c = sc.Client(HOST, PORT, tls="none", from_addr=FROM, timeout=TIMEOUT)
            report(lambda: c.send(TO, MSG))
        """, host="::1")
    except OSError:
        pytest.skip("no IPv6 loopback")
    srv.check()
    assert [o.ok for o in outs] == [[220, {}, True], {}, {"refused": {}}], outs
    # 4.1.3: without a host name, EHLO names the IPv6 address literal.
    assert [lines[0] for lines in srv.lines] == [b"EHLO [IPv6:::1]"] * 3
    assert srv.data == [[WIRE]] * 3
