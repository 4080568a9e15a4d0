"""Issue 11: the forms smtplib programs and real servers use, end to end on both runtimes
against aiosmtpd (the socket-free rules are in tests/test_session.py)."""

import sys

from harness import LIB, SHIM, results


def test_timeout_none_means_no_deadline(runtime, mailserver):
    # smtplib accepts timeout=None (block as long as it takes): the caller's choice.
    srv = mailserver(tls="none")
    res = results(runtime, """
        s = sc.SMTP({host!r}, {port}, timeout=None)
        report(lambda: s.sendmail("a@example.com", ["b@example.com"], b"Subject: t\\r\\n\\r\\nx"))
        s.quit()
        c = sc.Client({host!r}, {port}, tls="none", from_addr="a@example.com", timeout=None)
        report(lambda: c.send("c@example.com", b"Subject: u\\r\\n\\r\\ny").ok)
    """, host=srv.host, port=srv.port)
    assert res == [{}, True]
    assert [m.rcpt_tos for m in srv.messages] == [["b@example.com"], ["c@example.com"]]


def test_long_timeouts_fit_a_32_bit_clock(wasm32):
    # A 32-bit port's time.ticks_add refuses a wait of 2**29 ms or more (OverflowError), the
    # deadline of every wait with timeout=None before this test. Every wait the driver asks
    # for (a command's, the end of data's doubled one) must fit: run on the WebAssembly port,
    # a 32-bit MicroPython, with the core's .mpy.
    p = wasm32("""
        import smtp_client as sc
        for t in (None, 10 ** 7, 3):
            s = sc.SMTP(timeout=t)
            s.reset()  # as connect() does
            waits = [s.wait_ms()]  # a command's reply
            m = sc.SendResult("a@example.com", ["b@example.com"], b"x")
            s.body_end(False, m, 0)  # the end of data is due now: the longest wait
            waits.append(s.wait_ms())
            for w in waits:
                sc._deadline(w)
            print(waits)
    """)
    assert p.returncode == 0, p.stdout + p.stderr
    six_days = (1 << 29) - 1
    assert p.stdout.split("\n")[:3] == [f"[{six_days}, {six_days}]"] * 2 + ["[3000, 6000]"]


def test_addresses_with_names_and_the_null_sender(runtime, mailserver):
    srv = mailserver(tls="none")
    res = results(runtime, """
        s = sc.SMTP({host!r}, {port}, timeout=10)
        report(lambda: s.sendmail("Device <dev@example.com>",
                                  ["Bob Smith <b@example.com>", "<c@example.com>"], b"x"))
        report(lambda: s.sendmail("<>", "b@example.com", b"bounce"))
        s.quit()
    """, host=srv.host, port=srv.port)
    assert res == [{}, {}]
    (one, two) = srv.messages
    assert (one.mail_from, one.rcpt_tos) == ("dev@example.com", ["b@example.com", "c@example.com"])
    assert two.mail_from in ("", "<>")  # aiosmtpd shows the null path as "<>"


def test_smtplib_habit_says_ehlo_once_inside_tls(runtime, mailserver, certs):
    # ehlo(); starttls(); ehlo(); login(): one EHLO before TLS, one inside (before, starttls
    # said EHLO itself and the program's ehlo() a second: a wasted round trip). A Client says
    # one too.
    srv = mailserver(tls="starttls", auth={"device": "s3cret"})
    res = results(runtime, """
        ctx = sc.create_context(open({ca!r}, "rb").read())
        s = sc.SMTP({host!r}, {port}, timeout=10)
        s.ehlo()
        s.starttls(context=ctx)
        report(lambda: s.ehlo()[0])
        report(lambda: s.login("device", "s3cret")[0])
        report(lambda: s.sendmail("a@example.com", "b@example.com", b"x"))
        s.quit()
        c = sc.Client({host!r}, {port}, username="device", password="s3cret", context=ctx,
                      from_addr="a@example.com", timeout=10)
        report(lambda: c.send("b@example.com", b"y").ok)
    """, host=srv.host, port=srv.port, ca=str(certs["ca.der"]))
    assert res == [250, 235, {}, True]
    assert [tls for _, tls in srv.ehlo_log] == [False, True, False, True], srv.ehlo_log


def test_oauthbearer(runtime, mailserver, certs):
    # RFC 7628 (Gmail offers it beside XOAUTH2): the token goes in the GS2-framed initial
    # response; a refused token gets the JSON error challenge, answered with ^A (3.2.3),
    # then 535, and the Client says QUIT.
    srv = mailserver(tls="starttls", auth={"device": "tok3n"},
                     mechanisms=["PLAIN", "OAUTHBEARER"])
    res = results(runtime, """
        ctx = sc.create_context(open({ca!r}, "rb").read())
        for token in ("tok3n", "expired"):
            c = sc.Client({host!r}, {port}, username="device", password=token, context=ctx,
                          auth="oauthbearer", from_addr="a@example.com", timeout=10)
            report(lambda: c.send("b@example.com", b"x").ok)
    """, host=srv.host, port=srv.port, ca=str(certs["ca.der"]))
    assert res[0] is True and res[1][0] == "SMTPAuthenticationError", res
    assert srv.auth_log == [("OAUTHBEARER", "device", True), ("OAUTHBEARER", "device", False)]
    assert len(srv.messages) == 1


def test_orcpt_of_a_utf8_address_is_utf8_typed():
    # RFC 6533 3: a UTF-8 address is named in ORCPT as "utf-8;" utf-8-addr-unitext (RFC
    # 3461's "rfc822;" is for ASCII addresses); "+", "=", "\" become \x{HEX}.
    for p in (str(LIB), str(SHIM)):
        if p not in sys.path:
            sys.path.insert(0, p)
    import smtp_ext

    assert smtp_ext.orcpt(b"a+b@x.test") == b"ORCPT=rfc822;a+2Bb@x.test"
    assert smtp_ext.orcpt("jürgen+x@bü.test".encode()) == \
        "ORCPT=utf-8;jürgen\\x{2B}x@bü.test".encode()
