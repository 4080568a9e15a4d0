# SPDX-License-Identifier: MIT
"""lib/smtp_async.py: the asyncio driver on the same engine, on the unix port and CPython.

Against aiosmtpd (plain, implicit TLS, STARTTLS+AUTH) and ScriptedServer (a slow server
while another task ticks; a silent server for the timeout).
"""

import ast
import textwrap

import pytest

from harness import run_ok
from scripted import ScriptedServer

FROM = "dev@example.com"

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
