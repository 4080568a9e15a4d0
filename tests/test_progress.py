"""Issue 13, item 4: progress=callable(sent_bytes, total_or_None) on every send, called at
most once per write, without allocating, so a board can feed its watchdog during a long
attachment. On the unix port and CPython, against aiosmtpd."""

import ast
import textwrap

import pytest

from harness import run_ok

MB = 1 << 20

SNIPPET = """\
import sys, time
from array import array
import smtp_client as sc
try:
    import micropython
except ImportError:
    micropython = None

try:
    ticks = time.ticks_ms
    diff = time.ticks_diff
except AttributeError:
    ticks = lambda: int(time.monotonic() * 1000)  # noqa: E731
    diff = lambda a, b: a - b  # noqa: E731

# The hook allocates nothing: its record lives in arrays made now. calls, last sent, the
# total it was given (-1: None), the longest gap in ms, a count of sent going backwards,
# the ticks of the previous call.
rec = array("i", [0, 0, -2, 0, 0, 0])
LOCK = {lock}
END = array("i", [0])  # the body's size: the last call unlocks the heap


def hook(sent, total):
    now = ticks()
    if rec[0] and diff(now, rec[5]) > rec[3]:
        rec[3] = diff(now, rec[5])
    if sent < rec[1]:
        rec[4] += 1
    if LOCK and not rec[0] and micropython is not None:
        micropython.heap_lock()  # from the first call to the end of the body
    if LOCK and sent == END[0] and micropython is not None:
        micropython.heap_unlock()
    rec[0] += 1
    rec[1] = sent
    rec[2] = -1 if total is None else total
    rec[5] = now


def report(what, result):
    print("R", repr([what, result, rec[0], rec[1], rec[2], rec[3], rec[4]]))
    for k in range(6):
        rec[k] = 0
    rec[2] = -2


c = sc.Client({host!r}, {port}, tls="none", from_addr="a@example.com", timeout=10)
body = b"Subject: big\\r\\n\\r\\n" + b"0123456789abcdef" * 4 + b"\\r\\n"
body = body * ({mb} // len(body))
END[0] = len(body)
report("bytes", c.send("b@example.com", body, progress=hook).ok)
END[0] = {size}
with open({path!r}, "rb") as f:
    report("file", c.send("b@example.com", f, progress=hook).ok)
s = sc.SMTP({host!r}, {port}, timeout=10)
END[0] = 100000
report("sendmail", s.sendmail("a@example.com", "b@example.com", body[:100000], progress=hook))
s.quit()
"""


@pytest.mark.parametrize("lock", [False, True], ids=["timed", "heap_locked"])
def test_progress_feeds_a_watchdog(runtime, mailserver, tmp_path, lock):
    if lock and runtime != "micropython":
        pytest.skip("heap_lock is MicroPython's")
    srv = mailserver(tls="none")
    path = tmp_path / "big.eml"
    line = b"a line of a file body, with a bare LF end\n"
    path.write_bytes(b"Subject: file\r\n\r\n" + line * (MB // len(line)))
    out = run_ok(SNIPPET.format(host=srv.host, port=srv.port, mb=MB, path=str(path), lock=lock,
                                size=path.stat().st_size),
                 runtime=runtime, timeout=120)
    res = [ast.literal_eval(x[2:]) for x in out.splitlines() if x.startswith("R ")]
    assert [r[:2] for r in res] == [["bytes", True], ["file", True], ["sendmail", {}]], out
    (b, f, sm) = res
    # In memory: written from the caller's buffer in 4 KB steps, a call after each; the
    # count reaches the whole body, the total known.
    assert b[2] >= MB // 4096 and b[3] == b[4] == len(srv.messages[0].content), b
    # From a file: a call per buffer flush (512 bytes of wire), the total not known.
    assert f[2] >= path.stat().st_size // 1024 and f[3] == path.stat().st_size and f[4] == -1, f
    assert sm[2] >= 100000 // 4096 and sm[3] == sm[4] == 100000, sm
    for r in res:
        assert r[6] == 0, r  # sent never goes back
        assert r[5] < 1000, r  # a watchdog of 1 s would be fed (loopback: far less)
    assert len(srv.messages) == 3


def test_progress_must_be_callable(runtime):
    out = run_ok(textwrap.dedent("""\
        import smtp_client as sc
        c = sc.Client("127.0.0.1", 9, tls="none", from_addr="a@x.test")
        try:
            c.send("b@x.test", b"x", progress=5)  # refused before connecting (port 9)
        except TypeError as e:
            print("R", repr(str(e)))
    """), runtime=runtime)
    assert "progress must be callable" in out
