# SPDX-License-Identifier: MIT
"""smtp_client.Session without a socket: transcripts in, exact bytes out.

The session is the whole protocol (DESIGN.md): its generators yield orders and take replies.
`Wire` below is a driver made of a script: it records every flight the session writes and
feeds it the server's bytes, so each test states what goes on the wire, write by write,
for a given conversation. Run in-process under CPython (the session's code is the same on
MicroPython; the drivers are tested against real servers elsewhere).
"""

import sys

import pytest

from harness import LIB, SHIM

for _p in (str(SHIM), str(LIB)):
    if _p not in sys.path:
        sys.path.insert(0, _p)

import smtp_client as sc  # noqa: E402

SYNC, REGION, TLS = sc._SYNC, sc._REGION, sc._TLS


class Wire:
    """A scripted driver: `replies` is every byte the server sends, in order; each SYNC
    writes what tx holds as one flight and reads what the session waits for."""

    def __init__(self, replies, bufsize=512):
        self.s = sc.Session(sc.Pool(bufsize))
        self.s.local_hostname = "dev.test"
        self.replies = replies
        self.pos = 0
        self.flights = []

    def run(self, ops):
        s = self.s
        for op in ops:
            if op == SYNC:
                if s.tx_len > s.tx_start:
                    self.flights.append(bytes(s.tx[s.tx_start : s.tx_len]))
                    s.tx_start = s.tx_len = 0
                s.sent = s.out
                while s.out > s.left:
                    s.take(self.reply())
            elif op == REGION:
                self.flights.append(bytes(s.src[s.ri : s.rj]))
            else:
                assert op == TLS and s.rx_pos == s.rx_end  # nothing after the 220
                self.flights.append("TLS")
                s._tls = True
        return self

    def reply(self):
        s = self.s
        while True:
            code = s.parse()
            if code:
                return code
            v = s.rx_view()  # a line per read: no byte of the next reply is read early
            n = min(len(v), self.replies.find(b"\n", self.pos) + 1 - self.pos)
            v[:n] = self.replies[self.pos : self.pos + n]
            self.pos += n
            s.received(n)

    def done(self):
        assert self.pos == len(self.replies), self.replies[self.pos :]


def ehlo(*ext):
    lines = [b"mx.test"] + [e.encode() for e in ext]
    return b"".join(b"250-" + x + b"\r\n" for x in lines[:-1]) + b"250 " + lines[-1] + b"\r\n"


def opened(replies, *ext):
    """A Wire past the greeting and an EHLO that offers `ext`."""
    w = Wire(b"220 mx.test ESMTP\r\n" + ehlo(*ext) + replies)
    w.run(w.s.do_command())
    w.run(w.s.do_ehlo("dev.test", True))
    w.flights.clear()
    return w


def mail(to=("b@x.test",), body=b"hi\r\n", sender="a@x.test", **kw):
    return sc.SendResult(sender, list(to), body, (), (), kw or None)


# ------------------------------------------------------------------ greeting and EHLO


def test_ehlo_capabilities():
    w = Wire(b"220 mx.test\r\n" + ehlo("PIPELINING", "SIZE 1000", "AUTH PLAIN LOGIN",
                                       "CHUNKING", "8BITMIME", "STARTTLS"))
    w.run(w.s.do_command()).run(w.s.do_ehlo("dev.test", True)).done()
    s = w.s
    assert w.flights == [b"EHLO dev.test\r\n"]
    for bit in (sc._PIPELINING, sc._CHUNKING, sc._8BITMIME, sc._STARTTLS, sc._SIZE, sc._AUTH):
        assert s.caps & bit
    assert not s.caps & sc._SMTPUTF8
    assert s.size_limit == 1000 and s.auth_line == b" PLAIN LOGIN "


@pytest.mark.parametrize("code", [b"500", b"502", b"501", b"504", b"550"])
def test_helo_after_ehlo_refused(code):
    # RFC 5321 4.1.4: 500/502 to EHLO means an old server: HELO. Servers also answer 501,
    # 504 or 550 to an EHLO they dislike; smtplib tries HELO after any refusal, so do we.
    w = Wire(b"220 mx.test\r\n" + code + b" what\r\n250 mx.test\r\n")
    w.run(w.s.do_command()).run(w.s.do_ehlo("dev.test", True)).done()
    assert w.flights == [b"EHLO dev.test\r\n", b"HELO dev.test\r\n"]
    assert w.s.caps == 0 and w.s.helo_resp == b"mx.test"


def test_ehlo_and_helo_refused():
    w = Wire(b"220 mx.test\r\n554 no\r\n554 no\r\n")
    w.run(w.s.do_command())
    with pytest.raises(sc.SMTPHeloError):
        w.run(w.s.do_ehlo("dev.test", True))
    assert w.flights == [b"EHLO dev.test\r\n", b"HELO dev.test\r\n"]


def test_ehlo_4xx_is_not_retried_with_helo():
    # A 4xx is "not now" (RFC 5321 4.2.1), not "I do not know EHLO".
    w = Wire(b"220 mx.test\r\n451 later\r\n")
    w.run(w.s.do_command())
    with pytest.raises(sc.SMTPHeloError):
        w.run(w.s.do_ehlo("dev.test", True))
    assert w.flights == [b"EHLO dev.test\r\n"]


@pytest.mark.parametrize("lines", [("AUTH=PLAIN LOGIN",), ("AUTH LOGIN", "AUTH=PLAIN")])
def test_old_style_auth_counts(lines):
    # Servers from before RFC 4954 (some Exchange) advertise "AUTH=PLAIN LOGIN"; smtplib
    # reads both forms. The mechanisms of both go into the choice.
    w = opened(b"235 ok\r\n", *lines)
    assert w.s.caps & sc._AUTH
    w.s._tls = True
    w.run(w.s.do_login("u", "p")).done()
    assert w.flights == [b"AUTH PLAIN AHUAcA==\r\n"]


# ------------------------------------------------------------------------- STARTTLS


def test_starttls_forgets_and_says_ehlo_again():
    # RFC 3207 4.2: capabilities learnt before TLS are forgotten; EHLO again inside, once:
    # by the next command (smtplib's ehlo_or_helo_if_needed), not by starttls itself.
    w = opened(b"220 go\r\n" + ehlo("AUTH PLAIN"), "STARTTLS", "PIPELINING")
    w.run(w.s.do_starttls())
    assert w.flights == [b"STARTTLS\r\n", "TLS"]
    assert w.s._tls and w.s.caps == 0 and w.s.code == 220 and w.s.ehlo_resp is None
    w.run(w.s.do_ehlo("dev.test", True)).done()
    assert w.flights[2:] == [b"EHLO dev.test\r\n"] and w.s.caps == sc._AUTH


def test_starttls_not_offered():
    w = opened(b"", "PIPELINING")
    with pytest.raises(sc.SMTPNotSupportedError):
        w.run(w.s.do_starttls())
    assert w.flights == []


# ----------------------------------------------------------------------------- AUTH


def test_no_credentials_without_tls():
    w = opened(b"", "AUTH PLAIN")
    with pytest.raises(sc.SMTPNotSupportedError):
        w.run(w.s.do_login("u", "p"))
    assert w.flights == []


def test_auth_plain_initial_response():
    w = opened(b"235 ok\r\n", "AUTH PLAIN LOGIN")
    w.s._tls = True
    w.run(w.s.do_login("u", "p")).done()
    assert w.flights == [b"AUTH PLAIN AHUAcA==\r\n"]  # RFC 4616: NUL u NUL p


def test_auth_login_initial_response():
    # As smtplib: the user name goes with AUTH LOGIN (one round trip less), the password on
    # the "Password:" challenge.
    w = opened(b"334 UGFzc3dvcmQ6\r\n235 ok\r\n", "AUTH LOGIN")
    w.s._tls = True
    w.run(w.s.do_login("u", "p")).done()
    assert w.flights == [b"AUTH LOGIN dQ==\r\n", b"cA==\r\n"]


def test_auth_login_challenges():
    w = opened(b"334 VXNlcm5hbWU6\r\n334 UGFzc3dvcmQ6\r\n235 ok\r\n", "AUTH LOGIN")
    w.s._tls = True
    w.run(w.s.do_login("u", "p", initial_response_ok=False)).done()
    assert w.flights == [b"AUTH LOGIN\r\n", b"dQ==\r\n", b"cA==\r\n"]


def test_auth_rounds_bounded():
    w = opened(b"334 eA==\r\n" * 7, "AUTH LOGIN")
    w.s._tls = True
    with pytest.raises(sc.SMTPAuthenticationError):
        w.run(w.s.do_login("u", "p"))
    assert len(w.flights) == 6  # AUTH, then 5 answers (RFC 4954 4 sets no bound: we do)


def test_auth_refused():
    w = opened(b"535 5.7.8 no\r\n", "AUTH PLAIN")
    w.s._tls = True
    with pytest.raises(sc.SMTPAuthenticationError) as e:
        w.run(w.s.do_login("u", "p"))
    assert e.value.smtp_code == 535 and e.value.enhanced == "5.7.8"


# ---------------------------------------------------------------------- transactions


def test_lock_step_one_command_per_write():
    # RFC 2920 is the server's opt-in: without PIPELINING every command is its own write,
    # RSET too (OpenSMTPD closes on two commands in one read).
    w = opened(b"550 no\r\n250 ok\r\n250 ok\r\n250 ok\r\n354 go\r\n250 queued\r\n221 bye\r\n")
    ms = [mail(), mail()]
    w.run(w.s.do_mails(ms, True)).done()
    assert w.flights == [b"MAIL FROM:<a@x.test>\r\n", b"RSET\r\n", b"MAIL FROM:<a@x.test>\r\n",
                         b"RCPT TO:<b@x.test>\r\n", b"DATA\r\n", b"hi\r\n.\r\n", b"QUIT\r\n"]
    assert isinstance(ms[0].error, sc.SMTPSenderRefused) and ms[1].stage == sc._ACCEPTED


def test_pipelined_data_two_waits():
    w = opened(b"250 ok\r\n250 ok\r\n250 ok\r\n354 go\r\n250 queued\r\n221 bye\r\n",
               "PIPELINING")
    m = mail(to=("b@x.test", "c@x.test"))
    w.run(w.s.do_mails([m], True)).done()
    assert w.flights == [
        b"MAIL FROM:<a@x.test>\r\nRCPT TO:<b@x.test>\r\nRCPT TO:<c@x.test>\r\nDATA\r\n",
        b"hi\r\n.\r\nQUIT\r\n"]
    assert m.stage == sc._ACCEPTED and m.refused == {}


def test_pipelined_chunked_one_flight():
    # RFC 3030 + RFC 2920: the whole mail and QUIT in one write, one wait.
    w = opened(b"250 ok\r\n250 ok\r\n250 queued\r\n221 bye\r\n", "PIPELINING", "CHUNKING")
    m = mail(body=b".x\nend")
    w.run(w.s.do_mails([m], True)).done()
    assert w.flights == [b"MAIL FROM:<a@x.test>\r\nRCPT TO:<b@x.test>\r\n"
                         b"BDAT 9 LAST\r\n.x\r\nend\r\nQUIT\r\n"]


def test_refused_mail_gets_no_body_after_354():
    # RFC 2920 3.1: MAIL refused, yet DATA got 354: the end of data alone, never the body.
    w = opened(b"550 no\r\n503 sequence\r\n354 go\r\n554 no transaction\r\n250 ok\r\n",
               "PIPELINING")
    m = mail(body=b"secret\r\n")
    w.run(w.s.do_mails([m])).done()
    assert w.flights[1] == b".\r\n" and b"secret" not in b"".join(w.flights[:2])
    assert isinstance(m.error, sc.SMTPSenderRefused) and m.refused == {}
    assert w.flights[2] == b"RSET\r\n"


def test_bdat_stops_after_a_failure_is_read():
    # RFC 3030 2: no BDAT after a failure the client has read. The envelope's replies are
    # read before the second chunk; MAIL was refused, so the body stops there.
    body = b"y" * 70 + b"\r\n"
    w = opened(b"550 no\r\n503 sequence\r\n503 no\r\n250 ok\r\n", "PIPELINING", "CHUNKING")
    m = mail(body=body * 40)
    w.run(w.s.do_mails([m])).done()
    sent = b"".join(f for f in w.flights if f != "TLS")
    assert sent.count(b"BDAT ") == 1 and sent.endswith(b"RSET\r\n")
    assert isinstance(m.error, sc.SMTPSenderRefused)


def test_every_recipient_refused():
    w = opened(b"250 ok\r\n550 5.1.1 no\r\n250 ok\r\n")
    m = mail()
    w.run(w.s.do_mails([m])).done()
    w.s.conclude()
    assert isinstance(m.error, sc.SMTPRecipientsRefused)
    assert w.flights == [b"MAIL FROM:<a@x.test>\r\n", b"RCPT TO:<b@x.test>\r\n", b"RSET\r\n"]


def test_421_mid_group_ends_the_session():
    w = opened(b"250 ok\r\n421 4.3.2 closing\r\n", "PIPELINING")
    m = mail()
    with pytest.raises(sc.SMTPResponseException) as e:
        w.run(w.s.do_mails([m]))
    assert e.value.smtp_code == 421 and e.value.transient


def test_size_and_8bit_declared():
    # RFC 1870: SIZE= the CRLF-normalised size; RFC 6152: BODY=8BITMIME for 8-bit bytes.
    w = opened(b"250 ok\r\n250 ok\r\n354 go\r\n250 ok\r\n", "SIZE 100", "8BITMIME")
    w.run(w.s.do_mails([mail(body=b"caf\xc3\xa9\n")])).done()
    assert w.flights[0] == b"MAIL FROM:<a@x.test> BODY=8BITMIME SIZE=7\r\n"


def test_over_size_is_refused_before_sending():
    w = opened(b"", "SIZE 10")
    m = mail(body=b"x" * 20)
    w.run(w.s.do_mails([m]))
    assert isinstance(m.error, sc.SMTPNotSupportedError) and w.flights == []


def test_long_address_refused_before_any_byte():
    w = opened(b"", "PIPELINING")
    ms = [mail(), mail(to=("b" * 600 + "@x.test",))]
    with pytest.raises(ValueError):
        w.run(w.s.do_mails(ms))
    assert w.flights == []


@pytest.mark.parametrize("bad", ["a@x.test SIZE=1", "a@x.test\tX=1", "<a@x.test> SIZE=1",
                                 "<a@x.test SIZE=1>", "a\r\n@x"])
def test_address_injection_refused(bad):
    with pytest.raises(ValueError):
        mail(to=(bad,))


@pytest.mark.parametrize("data, error", [(b"250 ok\r\n", sc.SMTPProtocolError),
                                         (b"421 4.3.2 bye\r\n", sc.SMTPResponseException)])
def test_unsolicited_reply(data, error):
    # RFC 5321 4.2: one reply per command; a reply nothing asked for is an error, a 421
    # (RFC 5321 3.8: the server is going away) the transient one it is.
    s = sc.Session(sc.Pool())
    v = s.rx_view()
    v[: len(data)] = data
    s.received(len(data))
    with pytest.raises(error):
        s.parse()


def test_refusal_text_is_bounded():
    # RFC 5321 4.2 sets no bound on a reply: the text kept per refusal is (512 bytes).
    line = b"550-5.1.1 " + b"z" * 400 + b"\r\n"
    w = opened(b"250 ok\r\n" + line * 20 + b"550 5.1.1 end\r\n" + b"250 ok\r\n")
    m = mail()
    w.run(w.s.do_mails([m])).done()
    code, text = m.refused["b@x.test"]
    assert code == 550 and len(text) <= 512 + 20


def test_no_bdat_for_a_mail_whose_failure_was_read():
    # A pipelined group is read back when 72 replies are due (RFC 2920 3.4). When that read
    # already brought the mail's refusal, its body is not sent at all (RFC 3030 2): no BDAT,
    # then RSET. 75 recipients: MAIL and 71 RCPT (in buffer-sized writes), read back, 4 more.
    to = ["r%d@x.test" % k for k in range(75)]
    replies = b"550 5.7.1 sender denied\r\n" + b"503 5.5.1 MAIL first\r\n" * 75 + b"250 ok\r\n"
    w = opened(replies, "PIPELINING", "CHUNKING")
    m = mail(to=to)
    w.run(w.s.do_mails([m])).done()
    sent = b"".join(w.flights)
    assert b"BDAT" not in sent and sent.count(b"RCPT TO:") == 75, w.flights
    assert w.flights[-1] == b"RSET\r\n"
    assert isinstance(m.error, sc.SMTPSenderRefused)


@pytest.mark.parametrize("given", [["SMTPUTF8"], ["smtputf8", "BODY=8BITMIME"]])
def test_a_parameter_given_and_detected_goes_out_once(given):
    # SMTPUTF8 given by the caller and also needed by the address (RFC 6531 3.4) is one
    # parameter: RFC 5321 4.1.1.2 has each at most once ("MAIL ... SMTPUTF8 SMTPUTF8" is
    # a syntax error to a strict server). The same for BODY= beside 8-bit content.
    w = opened(b"250 ok\r\n250 ok\r\n354 go\r\n250 ok\r\n", "SMTPUTF8", "8BITMIME")
    m = sc.SendResult("jürgen@x.test", ["b@x.test"], "hé\r\n".encode(), given)
    w.run(w.s.do_mails([m])).done()
    head = w.flights[0].split(b"\r\n")[0].upper()
    assert head.count(b"SMTPUTF8") == 1 and head.count(b"BODY=") <= 1, w.flights


def test_addresses_as_people_write_them():
    # "Name <addr>" and "<addr>" mean the addr-spec (RFC 5322 3.4); "" and "<>" are the null
    # reverse-path (RFC 5321 4.5.5) of bounces and DSNs.
    w = opened(b"250 ok\r\n250 ok\r\n250 ok\r\n354 go\r\n250 ok\r\n")
    m = sc.SendResult("<>", ["Bob Smith <b@x.test>", "<c@x.test>"], b"hi\r\n")
    w.run(w.s.do_mails([m])).done()
    assert w.flights[:3] == [b"MAIL FROM:<>\r\n", b"RCPT TO:<b@x.test>\r\n",
                             b"RCPT TO:<c@x.test>\r\n"]
    assert sc.SendResult("", ["b@x.test"], b"x").from_addr == ""


@pytest.mark.parametrize("to", ["", "<>", "Bob <b@x.test", "a <b> <c@x.test>", "b@x.test>",
                                "Bob <b@x.test> x", "b @x.test", "<b@x.test\r\n>"])
def test_malformed_recipients_refused_before_sending(to):
    with pytest.raises(ValueError):
        sc.SendResult("a@x.test", [to], b"x")


def test_login_tries_the_next_mechanism_after_a_refusal():
    # smtplib's login(): a server that keeps hashed passwords offers CRAM-MD5 but refuses
    # it (535); PLAIN then works.
    w = opened(b"334 PDEyMzQ+\r\n535 5.7.8 no\r\n235 ok\r\n", "AUTH CRAM-MD5 PLAIN")
    w.s._tls = True
    w.run(w.s.do_login("u", "p")).done()
    assert [f.split()[:2] for f in w.flights] == [[b"AUTH", b"CRAM-MD5"], [w.flights[1][:-2]],
                                                 [b"AUTH", b"PLAIN"]]


def test_login_does_not_go_on_after_421_or_a_named_mechanism():
    w = opened(b"421 4.3.2 bye\r\n", "AUTH CRAM-MD5 PLAIN")
    w.s._tls = True
    with pytest.raises(sc.SMTPAuthenticationError):
        w.run(w.s.do_login("u", "p"))
    assert len(w.flights) == 1
    w = opened(b"535 no\r\n", "AUTH PLAIN LOGIN")
    w.s._tls = True
    with pytest.raises(sc.SMTPAuthenticationError):
        w.run(w.s.do_login("u", "p", "PLAIN"))
    assert len(w.flights) == 1


@pytest.mark.parametrize("body", [[b"caf\xc3\xa9\r\n"], [b"plain\r\n"]])
def test_a_body_not_known_to_be_7bit_is_declared_8bit(body):
    # RFC 6152 3: 8-bit content needs BODY=8BITMIME. A file or an iterable is not scanned
    # ahead: when the server offers 8BITMIME it is declared (harmless for 7-bit text); an
    # in-memory body is declared only when it has 8-bit bytes.
    w = opened(b"250 ok\r\n250 ok\r\n354 go\r\n250 ok\r\n", "8BITMIME")
    w.run(w.s.do_mails([sc.SendResult("a@x.test", ["b@x.test"], iter(body))])).done()
    assert w.flights[0] == b"MAIL FROM:<a@x.test> BODY=8BITMIME\r\n"
    w = opened(b"250 ok\r\n250 ok\r\n354 go\r\n250 ok\r\n", "8BITMIME")
    w.run(w.s.do_mails([sc.SendResult("a@x.test", ["b@x.test"], body[0])])).done()
    assert w.flights[0] == b"MAIL FROM:<a@x.test>" + (
        b" BODY=8BITMIME" if body[0][3] > 127 else b"") + b"\r\n"
