# SPDX-License-Identifier: MIT
"""lib/smtp_async.py: the asyncio driver on the same engine, on the unix port and CPython.

Against aiosmtpd (plain, implicit TLS, STARTTLS+AUTH) and ScriptedServer (a slow server
while another task ticks; a silent server for the timeout). Regressions of the driver
before the shared Session: a body failing in send_many keeps the earlier mails' results
(aiosmtpd, Postfix), a 250 nothing asked for during the body (ScriptedServer), and
PIPELINING + CHUNKING against the private Postfix.
"""

import ast
import textwrap
import time

import pytest

from faultkit import DATA, EHLO, GREET, MAIL, RCPT
from harness import run_ok
from postfix import USER, delivered_form, strip_prepended
from scripted import ScriptedServer

FROM = "dev@example.com"
OTHER = "other@example.test"  # the private Postfix's second mailbox

PROLOGUE = '''\
import asyncio, sys, time
import smtp_client as sc
import smtp_async
MPY = sys.implementation.name == "micropython"
HOST = {host!r}
PORT = {port}
CA = {ca!r}

def ms():
    return time.ticks_ms() if MPY else int(time.monotonic() * 1000)

def ctx():
    return sc.create_context(cadata=open(CA, "rb").read())

def show(x):
    print("R", repr(x))

async def catch(aw):
    try:
        r = await aw
    except Exception as e:
        return {{"error": type(e).__name__, "code": getattr(e, "smtp_code", None),
                 "msg": str(e)}}
    if isinstance(r, list):
        return [{{"ok": x.ok, "refused": x.refused, "error": type(x.error).__name__}} for x in r]
    return {{"ok": r.ok, "refused": r.refused}}
'''


def go(runtime, host, port, code, certs=None, timeout=60):
    src = PROLOGUE.format(host=host, port=port, ca=str(certs["ca.der"]) if certs else "")
    out = run_ok(src + textwrap.dedent(code), runtime=runtime, timeout=timeout)
    return [ast.literal_eval(line[2:]) for line in out.splitlines() if line.startswith("R ")]


def test_private_constants_match_core():
    # smtp_async and smtp_ext repeat a few of smtp_client's const()s (MicroPython folds
    # them away; under CPython's shim they stay module attributes).
    out = run_ok("""
        import smtp_async, smtp_ext, smtp_client
        for m, n in ((smtp_async, "_SYNC"), (smtp_async, "_REGION"), (smtp_ext, "_DSN"),
                     (smtp_ext, "_REQUIRETLS")):
            print(n, getattr(m, n) == getattr(smtp_client, n))
    """, runtime="cpython")
    assert out.split().count("True") == 4, out


def test_send_plain(runtime, mailserver):
    srv = mailserver()
    r = go(runtime, srv.host, srv.port, f"""
        c = smtp_async.AsyncClient(HOST, PORT, tls="none", from_addr={FROM!r}, timeout=10)
        async def main():
            show(await catch(c.send(["a@example.com", "b@example.com"],
                                    b"Subject: one\\r\\n\\r\\n.dot\\nline\\r\\n")))
            show(await catch(c.send_many([
                (["a@example.com"], b"Subject: two\\r\\n\\r\\nx"),
                (["a@example.com"], [b"Subject: three\\r\\n\\r\\n", (b"y" * 99 + b"\\n") * 30]),
            ])))
        asyncio.run(main())
    """)
    assert r[0] == {"ok": True, "refused": {}}
    assert [x["ok"] for x in r[1]] == [True, True], r
    assert len(srv.messages) == 3
    assert srv.messages[0].rcpt_tos == ["a@example.com", "b@example.com"]
    assert srv.messages[0].content == b"Subject: one\r\n\r\n.dot\r\nline\r\n"
    assert srv.messages[2].content.endswith((b"y" * 99 + b"\r\n") * 30)


def test_refusal_classified(runtime, mailserver):
    srv = mailserver(refuse_rcpt=["bad@example.com"])
    r = go(runtime, srv.host, srv.port, f"""
        c = smtp_async.AsyncClient(HOST, PORT, tls="none", from_addr={FROM!r}, timeout=10)
        async def main():
            show(await catch(c.send(["a@example.com", "bad@example.com"], b"x")))
            show(await catch(c.send(["bad@example.com"], b"x")))
        asyncio.run(main())
    """)
    assert r[0] == {"ok": False, "refused": {"bad@example.com": (550, b"5.1.1 No such user")}}
    assert r[1]["error"] == "SMTPRecipientsRefused"
    assert len(srv.messages) == 1


def test_implicit_tls(runtime, mailserver, certs):
    srv = mailserver(tls="implicit", auth={"u": "pw"})
    r = go(runtime, srv.host, srv.port, f"""
        c = smtp_async.AsyncClient(HOST, PORT, tls="implicit", context=ctx(), username="u",
                                   password="pw", from_addr={FROM!r}, timeout=10)
        bad = smtp_async.AsyncClient(HOST, PORT, tls="implicit",
                                     context=sc.create_context(), from_addr={FROM!r},
                                     timeout=10)
        async def main():
            show(await catch(c.send("a@example.com", b"Subject: tls\\r\\n\\r\\nhi")))
            show(await catch(bad.send("a@example.com", b"x")))  # CA not trusted
        asyncio.run(main())
    """, certs=certs)
    assert r[0] == {"ok": True, "refused": {}}
    assert r[1]["error"] == "SMTPTLSError"
    assert len(srv.messages) == 1 and srv.messages[0].tls and srv.messages[0].login == "u"


def test_cpython_without_start_tls(mailserver, certs):
    # CPython before 3.11 has no StreamWriter.start_tls: implicit TLS is part of opening the
    # connection there, and STARTTLS says what it needs.
    implicit = mailserver(tls="implicit")
    starttls = mailserver(tls="starttls")
    r = go("cpython", implicit.host, implicit.port, f"""
        del asyncio.StreamWriter.start_tls  # as on CPython 3.9 and 3.10
        async def main():
            c = smtp_async.AsyncClient(HOST, PORT, tls="implicit", context=ctx(),
                                       from_addr={FROM!r}, timeout=10)
            show(await catch(c.send("a@example.com", b"Subject: tls\\r\\n\\r\\nhi")))
            c = smtp_async.AsyncClient(HOST, {starttls.port}, context=ctx(), from_addr={FROM!r},
                                       timeout=10)
            show(await catch(c.send("a@example.com", b"x")))
        asyncio.run(main())
    """, certs=certs)
    assert r[0] == {"ok": True, "refused": {}}
    assert r[1]["error"] == "SMTPNotSupportedError" and "3.11" in r[1]["msg"]
    assert len(implicit.messages) == 1 and implicit.messages[0].tls


def test_starttls_auth(runtime, mailserver, certs):
    # MicroPython too: the stream's socket is wrapped in place after the 220.
    srv = mailserver(tls="starttls", auth={"u": "pw"})
    r = go(runtime, srv.host, srv.port, f"""
        async def main():
            for mech in ("auto", "plain", "login", "cram-md5", "xoauth2"):
                c = smtp_async.AsyncClient(HOST, PORT, context=ctx(), username="u",
                                           password="pw", auth=mech, from_addr={FROM!r},
                                           timeout=10)
                show(await catch(c.send("a@example.com", b"Subject: s\\r\\n\\r\\nhi")))
            c = smtp_async.AsyncClient(HOST, PORT, context=ctx(), username="u",
                                       password="wrong", from_addr={FROM!r}, timeout=10)
            show(await catch(c.send("a@example.com", b"x")))
        asyncio.run(main())
    """, certs=certs)
    assert r[:5] == [{"ok": True, "refused": {}}] * 5
    assert r[5]["error"] == "SMTPAuthenticationError" and r[5]["code"] == 535
    # The refusals left the session in step: QUIT before the close (RFC 5321 4.1.1.10), as
    # Client says it.
    assert bytes(srv.wire[-1]).endswith(b"QUIT\r\n"), bytes(srv.wire[-1])[-80:]
    assert [m.tls and m.login == "u" for m in srv.messages] == [True] * 5
    assert [m for m, _, ok in srv.auth_log if ok] == [
        "CRAM-MD5", "PLAIN", "LOGIN", "CRAM-MD5", "XOAUTH2"]


def _slow_script():
    return [
        ("send", b"220 slow\r\n"),
        ("expect", b"EHLO"), ("send", b"250 ok\r\n"),
        ("expect", b"MAIL"), ("send", b"250 ok\r\n"),
        ("expect", b"RCPT"), ("send", b"250 ok\r\n"),
        ("expect", b"DATA"), ("send", b"354 go\r\n"),
        ("expect_data",), ("sleep", 1.0), ("send", b"250 queued\r\n"),
        ("expect", b"QUIT"), ("send", b"221 bye\r\n"),
    ]


def test_other_tasks_run_while_waiting(runtime):
    with ScriptedServer(_slow_script()) as srv:
        r = go(runtime, srv.host, srv.port, f"""
            ticks = []
            done = [False]
            async def ticker():
                while not done[0]:
                    ticks.append(ms())
                    await asyncio.sleep(0.05)
            async def main():
                c = smtp_async.AsyncClient(HOST, PORT, tls="none", from_addr={FROM!r},
                                           timeout=5)
                t = asyncio.create_task(ticker())
                await asyncio.sleep(0)
                res = await catch(c.send("a@example.com", b"Subject: slow\\r\\n\\r\\nx"))
                done[0] = True
                await t
                gaps = [b - a for a, b in zip(ticks, ticks[1:])]
                show((res, len(ticks), max(gaps)))
            asyncio.run(main())
        """)
        srv.join(5)
    srv.check()
    res, n, gap = r[0]
    assert res == {"ok": True, "refused": {}}
    assert n >= 15, n
    assert gap < 200, gap


def test_silent_server_times_out(runtime):
    with ScriptedServer([("sleep", 3.0)]) as srv:
        r = go(runtime, srv.host, srv.port, f"""
            async def main():
                c = smtp_async.AsyncClient(HOST, PORT, tls="none", from_addr={FROM!r},
                                           timeout=0.5)
                t0 = ms()
                res = await catch(c.send("a@example.com", b"x"))
                show((res["error"], ms() - t0))
            asyncio.run(main())
        """)
    err, took = r[0]
    assert err == "SMTPTimeoutError"
    assert 400 <= took < 2000, took


@pytest.mark.parametrize("step", ["greeting", "data"])
def test_timeout_mid_session(runtime, step):
    script = [("send", b"220 hi\r\n"), ("expect", b"EHLO"), ("send", b"250 ok\r\n"),
              ("expect", b"MAIL"), ("send", b"250 ok\r\n"), ("expect", b"RCPT"),
              ("send", b"250 ok\r\n"), ("expect", b"DATA"), ("send", b"354 go\r\n"),
              ("expect_data",), ("sleep", 3.0)]
    if step == "greeting":
        script = [("sleep", 3.0)]
    with ScriptedServer(script) as srv:
        r = go(runtime, srv.host, srv.port, f"""
            async def main():
                c = smtp_async.AsyncClient(HOST, PORT, tls="none", from_addr={FROM!r},
                                           timeout=0.4)
                show((await catch(c.send("a@example.com", b"x")))["error"])
            asyncio.run(main())
        """)
    assert r == ["SMTPTimeoutError"]


@pytest.mark.parametrize("step", ["greeting", "ehlo"])
def test_421_closes_without_quit(runtime, step):
    # RFC 5321 3.8: a server that answers 421 closes the channel; the client closes too, as
    # smtp_client.SMTP does, instead of saying QUIT to it (after a 421 greeting the driver
    # before this test did).
    script = [("send", b"220 hi\r\n"), ("expect", b"EHLO"),
              ("send", b"421 4.3.2 shutting down\r\n"), ("wait_close",)]
    if step == "greeting":
        script = [("send", b"421 4.3.2 busy\r\n"), ("wait_close",)]
    with ScriptedServer(script) as srv:
        r = go(runtime, srv.host, srv.port, f"""
            async def main():
                c = smtp_async.AsyncClient(HOST, PORT, tls="none", from_addr={FROM!r},
                                           timeout=5)
                res = await catch(c.send("a@example.com", b"x"))
                show((res["error"], res["code"]))
            asyncio.run(main())
        """)
    srv.check()
    assert r == [("SMTPConnectError" if step == "greeting" else "SMTPHeloError", 421)]
    assert b"QUIT" not in bytes(srv.received[0]), srv.received[0]
    assert srv.client_closed[0]


# --------------------------------------- regressions of the old driver (before the Session)
#
# Each of these failed against the asyncio driver that preceded the shared Session (git
# cd027e4~1, lib/smtp_async.py with its smtp_client.py); the snippets only use names that
# driver had too, so they fail by their assertions.

# A body that fails half-way, after part of it went out: an iterable that raises, or a file
# whose read fails (what a flaky SD card does).
BAD_BODIES = {
    "iterable": '''
        def bad_body():
            yield b"Subject: two\\r\\n\\r\\n" + b"first part of the body\\r\\n" * 50
            raise RuntimeError("the source of the body failed")
    ''',
    "file": '''
        class _BadFile:
            def __init__(self):
                # Two reads (over 512 bytes: some of it is written), then a failing one.
                self.parts = [b"Subject: two\\r\\n\\r\\n" + b"first part of the body\\r\\n" * 15,
                              b"second part of the body\\r\\n" * 15]

            def readinto(self, buf):
                if not self.parts:
                    raise OSError(5, "read failed")
                data = self.parts.pop(0)
                buf[: len(data)] = data
                return len(data)

        def bad_body():
            return _BadFile()
    ''',
}
BAD_ERROR = {"iterable": "RuntimeError", "file": "OSError"}


def test_send_many_refuses_smtp_send_many_tuples(runtime, mailserver):
    # SMTP.send_many's (from_addr, to_addrs, msg) given to AsyncClient.send_many: the same
    # ValueError as Client.send_many, before a connection (the async driver built its mails
    # itself and reported "CR, LF or NUL in from_addr" about the body).
    srv = mailserver()
    r = go(runtime, srv.host, srv.port, f"""
        c = smtp_async.AsyncClient(HOST, PORT, tls="none", from_addr={FROM!r}, timeout=10)
        async def main():
            show(await catch(c.send_many([("a@example.com", ["b@example.com"], b"x")])))
        asyncio.run(main())
    """)
    assert r[0]["error"] == "ValueError" and "(to_addrs, msg" in r[0]["msg"], r
    assert srv.messages == [] and srv.mail_log == []


@pytest.mark.parametrize("kind", list(BAD_BODIES))
def test_send_many_keeps_an_accepted_mail_when_a_later_body_fails(runtime, mailserver, kind):
    # A mail the server accepted is reported sent, whatever happens to the next one: the old
    # driver let the failing body's exception out of send_many, so the caller lost the
    # result of mail 1 (already delivered) and an outbox on top would send it again. Now
    # mail 1 is ok, mail 2 carries its body's error, and mail 3, never sent over the dropped
    # connection, is reported failed too. aiosmtpd (no PIPELINING): mail 1 is answered
    # before mail 2 starts.
    srv = mailserver()
    r = go(runtime, srv.host, srv.port, BAD_BODIES[kind] + f"""
        c = smtp_async.AsyncClient(HOST, PORT, tls="none", from_addr={FROM!r}, timeout=10)
        async def main():
            show(await catch(c.send_many([
                (["a@example.com"], b"Subject: one\\r\\n\\r\\nfirst mail\\r\\n"),
                (["a@example.com"], bad_body()),
                (["a@example.com"], b"Subject: three\\r\\n\\r\\nthird mail\\r\\n"),
            ])))
            # The client is usable afterwards (its pool was given back).
            show(await catch(c.send("a@example.com", b"Subject: four\\r\\n\\r\\nx\\r\\n")))
        asyncio.run(main())
    """)
    assert isinstance(r[0], list), r  # a result per mail, not an exception
    assert [x["ok"] for x in r[0]] == [True, False, False], r
    assert r[0][0]["error"] == "NoneType", r
    assert r[0][1]["error"] == BAD_ERROR[kind], r
    assert r[0][2]["error"] != "NoneType", r
    assert r[1] == {"ok": True, "refused": {}}
    assert [m.content for m in srv.messages] == [
        b"Subject: one\r\n\r\nfirst mail\r\n", b"Subject: four\r\n\r\nx\r\n"]


def test_send_many_keeps_accepted_mails_when_a_later_body_fails_postfix(runtime, postfix):
    # The same with PIPELINING and CHUNKING: mail 1 goes out pipelined; mail 2's body fails
    # after its first chunks went out (so mail 1's replies have been read). Mail 1 is
    # reported sent and delivered; mail 2 carries the error and is not delivered (its
    # transaction never got a LAST chunk).
    postfix.clear()
    r = go(runtime, "127.0.0.1", postfix.port, BAD_BODIES["iterable"] + f"""
        c = smtp_async.AsyncClient(HOST, PORT, tls="none", from_addr="dev@example.test",
                                   local_hostname="dev.example.test", timeout=10)
        async def main():
            show(await catch(c.send_many([
                ([{USER!r}], b"X-Test-Id: 1\\r\\n\\r\\nfirst mail\\r\\n"),
                ([{USER!r}], bad_body()),
            ])))
        asyncio.run(main())
    """)
    assert isinstance(r[0], list), r
    assert [(x["ok"], x["error"]) for x in r[0]] == [(True, "NoneType"),
                                                     (False, "RuntimeError")], r
    got = postfix.wait_delivered(1, timeout=30)
    assert [strip_prepended(m, marker=b"X-Test-Id: ") for m in got] == [
        b"X-Test-Id: 1\n\nfirst mail\n"]


# The server's side of test_spurious_250_during_the_body: after 354 it reads the first
# 1500 bytes of the body, then sends a 250 that answers nothing, then takes the rest and
# refuses the mail. A client that reads that 250 as the reply to its end of data reports a
# refused mail as sent.
SPURIOUS = GREET + EHLO + MAIL + RCPT + DATA + [
    ("recv", 1500), ("send", b"250 2.0.0 spurious\r\n"),
    ("expect_data",), ("send", b"554 5.7.1 refused\r\n"),
    ("expect", b"QUIT"), ("send", b"221 2.0.0 bye\r\n"), ("wait_close",),
]


def test_spurious_250_during_the_body(runtime):
    # RFC 5321 4.2: one reply per command; nothing answers a body while it is being sent.
    # The old driver never looked at the connection between its body writes and took the
    # unasked 250 for the end of data's reply: the mail was reported sent. Now the bytes
    # waiting before the end of data are found: SMTPProtocolError (or the mail failed).
    # Timing without sleeps: the body's iterator gives its second half only once the 250
    # is readable on the client's socket (the first half, ~2.9 KB through a 512-byte
    # buffer, has put well over 1500 bytes on the wire by then).
    with ScriptedServer(SPURIOUS) as srv:
        r = go(runtime, srv.host, srv.port, """
            import select
            streams = []
            _open = asyncio.open_connection
            async def open_connection(*a, **kw):
                rw = await _open(*a, **kw)
                streams.append(rw)
                return rw
            asyncio.open_connection = open_connection  # to find the client's socket

            def wait_readable():
                r, w = streams[-1]
                if not MPY and r._buffer:
                    return  # CPython's loop has read it already
                p = select.poll()
                p.register(w.s if MPY else w.get_extra_info("socket"), select.POLLIN)
                p.poll(5000)  # bounded; the assertion below tells if it never came

            def body():
                yield b"Subject: t\\r\\n\\r\\n" + (b"x" * 70 + b"\\n") * 40
                wait_readable()
                yield (b"y" * 70 + b"\\n") * 40

            async def main():
                c = smtp_async.AsyncClient(HOST, PORT, tls="none",
                                           from_addr="from@example.com", timeout=5)
                show(await catch(c.send("to@example.com", body())))
            asyncio.run(main())
        """)
        srv.join(5)
    assert len(srv.data[0]) >= 1 and len(srv.data[0][0]) == 1500, srv.errors  # it was sent
    assert r[0].get("error") in ("SMTPProtocolError", "SMTPDataError"), r


def test_send_many_chunked_postfix(runtime, postfix):
    # AsyncClient with PIPELINING and CHUNKING against Postfix: three mails on one
    # connection, the second to a recipient Postfix refuses (550 5.1.1) and one it takes.
    # Each result belongs to its mail; what Postfix delivered is what was sent, byte for
    # byte. The bodies take each path of the body writer: a clean body larger than the
    # buffer (written from the caller's bytes), bare LFs and dots (encoded), an iterable.
    # Postfix's log line at disconnect counts the session's commands: BDAT, no DATA (the
    # old driver went lock-step with DATA: it delivered the same, without CHUNKING).
    postfix.clear()
    name = "async-chunked.example.test"  # finds this session in Postfix's log
    bodies = [
        b"X-Test-Id: 0\r\nSubject: clean\r\n\r\n" + b"a clean line of the body\r\n" * 200,
        b"X-Test-Id: 1\r\nSubject: encoded\r\n\r\n.a leading dot\n..two\n.\n"
        + b"x" * 3000 + b"\n" + "caf\u00e9 \u00fcber\n".encode() * 30,
        [b"X-Test-Id: 2\r\nSubject: pieces\r\n\r\n", b"one piece, ", b"then more\r\n" * 99,
         b".last line without an end"],
    ]
    r = go(runtime, "127.0.0.1", postfix.port, f"""
        c = smtp_async.AsyncClient(HOST, PORT, tls="none", from_addr="dev@example.test",
                                   local_hostname={name!r}, timeout=10)
        async def main():
            rs = await c.send_many([
                ([{USER!r}], {bodies[0]!r}),
                (["ghost@example.test", {OTHER!r}], {bodies[1]!r}),
                ([{USER!r}], {bodies[2]!r}),
            ])
            show([(x.ok, x.sent, x.error is None,
                   dict((a, code) for a, (code, t) in x.refused.items())) for x in rs])
        asyncio.run(main())
    """)
    assert r[0] == [(True, True, True, {}),
                    (False, True, True, {"ghost@example.test": 550}),
                    (True, True, True, {})], r
    sent = [bodies[0], bodies[1].replace(b"\n", b"\r\n").replace(b"\r\r\n", b"\r\n"),
            b"".join(bodies[2]) + b"\r\n"]
    mine = sorted(strip_prepended(m, marker=b"X-Test-Id: ")
                  for m in postfix.wait_delivered(2, timeout=30))
    assert mine == [delivered_form(sent[0]), delivered_form(sent[2])]
    other = postfix.wait_delivered(1, timeout=30, mailbox=OTHER)
    assert [strip_prepended(m, marker=b"X-Test-Id: ") for m in other] == [
        delivered_form(sent[1])]
    counts = _session_counts(postfix, name)
    assert counts.get("bdat", 0) >= 3 and "data" not in counts, counts
    assert counts["mail"] == 3 and counts["rcpt"] == "3/4", counts


def _session_counts(pf, helo, timeout=10):
    """The command counts Postfix's smtpd logs when the session that said EHLO `helo` (and
    had a recipient refused: that log line names the helo) disconnects, e.g.
    {"ehlo": 1, "mail": 3, "rcpt": "3/4", "bdat": 4, ...}. Polled, bounded: the log is
    written by another process."""
    deadline = time.monotonic() + timeout
    while True:
        pid = None
        for line in pf.log().splitlines():
            if pid is None and "helo=<%s>" % helo in line and "postfix/smtpd[" in line:
                pid = line.split("postfix/smtpd[", 1)[1].split("]", 1)[0]
            elif pid is not None and "postfix/smtpd[%s]: disconnect from" % pid in line:
                counts = {}
                for word in line.split("]", 2)[2].split():
                    k, _, v = word.partition("=")
                    if v:
                        counts[k] = int(v) if v.isdigit() else v
                return counts
        assert time.monotonic() < deadline, "no disconnect line for %s:\n%s" % (
            helo, pf.log()[-3000:])
        time.sleep(0.05)  # polling another process's log file, not synchronisation
