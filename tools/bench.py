# SPDX-License-Identifier: MIT
"""`make bench`: our client beside CPython's smtplib and beside itself with PIPELINING and
CHUNKING turned off, in one run; results go to BENCHMARKS.md.

What is measured, and how:
  waits      how many times a client waits for the server after the greeting: the client
             "flights" seen by a recording proxy (data from the client that follows data
             from the server). Against a private Postfix, offering CHUNKING or not
             (smtpd_discard_ehlo_keywords), for 1 mail to 3 recipients and for 30 mails to 3
             recipients on one connection, QUIT included.
             Each driver: smtp_client.SMTP.send_many, smtp_client.Client and
             smtp_async.AsyncClient (send for 1 mail, send_many for 30; a fresh connection,
             EHLO, the mails, QUIT), on the unix port and on CPython.
  wall       the same sends through the proxy with 10 ms each way (20 ms round trip).
  per mail   time per plain 2 KB mail on loopback, no added latency (Postfix).
  throughput a 10 MB body to a sink server that discards what it reads, against a raw socket
             write of the same bytes to the same sink, in the same runtime (a ratio: 1.0 means
             as fast as the raw write).
The peak heap and the .mpy size come from tools/measure.py (`make measure`).
Needs root and Postfix (`make postfix-installed`), like the Postfix tests.
"""

import argparse
import socket
import sys
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))
sys.path.insert(0, str(ROOT / "tools"))

from harness import run  # noqa: E402
from postfix import Postfix  # noqa: E402

RCPTS = ["alice@example.test", "bob@example.test", "carol@example.test"]
FROM = "device@example.test"
MAIL = (b"Subject: bench\r\n\r\n"
        + b"0123456789 abcdefghijklmnopqrstuvwxyz 0123456789 abcdefghijklmnopqrs\r\n" * 29)


# ------------------------------------------------------------------ the recording proxy


class Proxy:
    """A TCP proxy that delays each direction by `delay` seconds and counts client flights:
    bytes from the client that arrive after the server has spoken since the client's last
    bytes. Each such flight is one wait of the client for the server."""

    def __init__(self, target, delay=0.0):
        self.target = target
        self.delay = delay
        self.flights = []  # per connection
        self.lsock = socket.socket()
        self.lsock.bind(("127.0.0.1", 0))
        self.lsock.listen(8)
        self.port = self.lsock.getsockname()[1]
        self.stopped = False
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self):
        while not self.stopped:
            try:
                c, _ = self.lsock.accept()
            except OSError:
                return
            s = socket.create_connection(self.target)
            for x in (c, s):
                x.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            i = len(self.flights)
            self.flights.append(0)
            state = {"server_spoke": False, "greeted": False}
            lock = threading.Lock()

            def note(from_client, i=i, state=state, lock=lock):
                with lock:
                    if from_client:
                        if state["server_spoke"] and state["greeted"]:
                            self.flights[i] += 1
                        state["greeted"] = True
                        state["server_spoke"] = False
                    else:
                        state["server_spoke"] = True

            # The greeting is not a wait: the first client flight (EHLO) after it counts,
            # as every later one does.
            state["greeted"] = True
            for a, b, fc in ((c, s, True), (s, c, False)):
                threading.Thread(target=self._pump, args=(a, b, fc, note), daemon=True).start()

    def _pump(self, src, dst, from_client, note):
        import queue

        q = queue.Queue()

        def writer():
            while True:
                item = q.get()
                if item is None:
                    try:
                        dst.shutdown(socket.SHUT_WR)
                    except OSError:
                        pass
                    return
                due, data = item
                wait = due - time.monotonic()
                if wait > 0:
                    time.sleep(wait)  # the added latency itself, not synchronisation
                try:
                    dst.sendall(data)
                except OSError:
                    return

        threading.Thread(target=writer, daemon=True).start()
        while True:
            try:
                data = src.recv(65536)
            except OSError:
                data = b""
            if not data:
                q.put(None)
                return
            note(from_client)
            q.put((time.monotonic() + self.delay, data))

    def close(self):
        self.stopped = True
        self.lsock.close()


# ------------------------------------------------------------------------ a sink server


class Sink:
    """A minimal SMTP server that discards mail as fast as it can read it (for the
    throughput ratio: the server must not be the bottleneck). Also a raw discard port."""

    def __init__(self, chunking=True):
        self.chunking = chunking
        self.lsock = socket.socket()
        self.lsock.bind(("127.0.0.1", 0))
        self.lsock.listen(8)
        self.port = self.lsock.getsockname()[1]
        self.raw = socket.socket()
        self.raw.bind(("127.0.0.1", 0))
        self.raw.listen(8)
        self.raw_port = self.raw.getsockname()[1]
        threading.Thread(target=self._accept, args=(self.lsock, self._smtp), daemon=True).start()
        threading.Thread(target=self._accept, args=(self.raw, self._discard), daemon=True).start()

    def _accept(self, ls, handler):
        while True:
            try:
                c, _ = ls.accept()
            except OSError:
                return
            threading.Thread(target=handler, args=(c,), daemon=True).start()

    def _discard(self, c):
        # "<length>\n", then that many bytes; the ack tells the client all of them arrived,
        # so the raw time is comparable with sendmail's (which waits for the final 250).
        buf = bytearray()
        while b"\n" not in buf:
            buf += c.recv(64)
        head, _, rest = bytes(buf).partition(b"\n")
        left = int(head) - len(rest)
        while left > 0:
            data = c.recv(1 << 20)
            if not data:
                break
            left -= len(data)
        c.sendall(b"ok\n")
        c.close()

    def _smtp(self, c):
        buf = bytearray()

        def fill():
            data = c.recv(1 << 20)
            if not data:
                raise EOFError
            buf.extend(data)

        def line():
            while True:
                i = buf.find(b"\r\n")
                if i >= 0:
                    out = bytes(buf[:i])
                    del buf[: i + 2]
                    return out
                fill()

        try:
            c.sendall(b"220 sink\r\n")
            while True:
                cmd = line()
                verb = cmd[:4].upper()
                if verb == b"EHLO":
                    caps = b"250-sink\r\n250-PIPELINING\r\n250-8BITMIME\r\n"
                    if self.chunking:
                        caps += b"250-CHUNKING\r\n"
                    c.sendall(caps + b"250 SIZE 100000000\r\n")
                elif verb == b"DATA":
                    c.sendall(b"354 go\r\n")
                    start = 0
                    while True:
                        i = buf.find(b"\r\n.\r\n", max(0, start - 4))
                        if i >= 0:
                            del buf[: i + 5]
                            break
                        start = len(buf)
                        fill()
                    c.sendall(b"250 ok\r\n")
                elif verb == b"BDAT":
                    # Discard the chunk as it arrives, like the raw port does (no copy).
                    n = int(cmd.split()[1])
                    take = min(n, len(buf))
                    del buf[:take]
                    n -= take
                    scratch = bytearray(1 << 20)
                    while n > 0:
                        k = c.recv_into(scratch, min(n, len(scratch)))
                        if not k:
                            raise EOFError
                        n -= k
                    c.sendall(b"250 ok\r\n")
                elif verb == b"QUIT":
                    c.sendall(b"221 bye\r\n")
                    break
                else:
                    c.sendall(b"250 ok\r\n")
        except (EOFError, OSError):
            pass
        c.close()


# ------------------------------------------------------------------------------ clients

PRELUDE = """
import sys, time
HOST = sys.argv[1]
PORT = int(sys.argv[2])
N = int(sys.argv[3])
RCPTS = %r
FROM = %r
MAIL = %r
""" % (RCPTS, FROM, MAIL)

# One connection, N mails, QUIT in the last flight where the client can.
OURS = PRELUDE + """
import smtp_client
PIPE = sys.argv[4] == "1"
t = time.time()
s = smtp_client.SMTP(HOST, PORT, local_hostname="bench.example.test",
                     pipelining=PIPE, chunking=PIPE)
rs = s.send_many([(FROM, RCPTS, MAIL)] * N, quit=True)
t = time.time() - t
assert all(r.ok for r in rs), rs
print("T", t)
"""
# The same mails through the per-connection clients: the blocking Client and the asyncio
# AsyncClient (the same constructor arguments, the same Session underneath). One mail goes
# through send(), more through send_many(); either way one connection, QUIT included.
CLIENT = PRELUDE + """
import smtp_client
PIPE = sys.argv[4] == "1"
t = time.time()
c = smtp_client.Client(HOST, PORT, tls="none", from_addr=FROM, timeout=30,
                       local_hostname="bench.example.test", pipelining=PIPE, chunking=PIPE)
rs = [c.send(RCPTS, MAIL)] if N == 1 else c.send_many([(RCPTS, MAIL)] * N)
t = time.time() - t
assert len(rs) == N and all(r.ok for r in rs), rs
print("T", t)
"""
ASYNC = PRELUDE + """
import asyncio, smtp_async
PIPE = sys.argv[4] == "1"
c = smtp_async.AsyncClient(HOST, PORT, tls="none", from_addr=FROM, timeout=30,
                           local_hostname="bench.example.test", pipelining=PIPE,
                           chunking=PIPE)
async def main():
    if N == 1:
        return [await c.send(RCPTS, MAIL)]
    return await c.send_many([(RCPTS, MAIL)] * N)
t = time.time()
rs = asyncio.run(main())
t = time.time() - t
assert len(rs) == N and all(r.ok for r in rs), rs
print("T", t)
"""
SMTPLIB = PRELUDE + """
import os
# The standard library's smtplib, not lib/smtplib.py (MicroPython's) that PYTHONPATH puts first.
sys.path[:] = [p for p in sys.path if p not in os.environ.get("PYTHONPATH", "").split(os.pathsep)]
import smtplib
assert "lib/smtplib.py" not in smtplib.__file__, smtplib.__file__
t = time.time()
s = smtplib.SMTP(HOST, PORT, local_hostname="bench.example.test")
for _ in range(N):
    s.sendmail(FROM, RCPTS, MAIL)
s.quit()
print("T", time.time() - t)
"""

BIG = 10 * 1024 * 1024
# argv: host port raw_port kind native bufsize. kind: clean (CRLF text), dots (every tenth
# line starts with "."), lf (bare LF line ends); native: 1 imports smtp_native first.
THROUGHPUT = """
import sys, time
HOST = sys.argv[1]
PORT = int(sys.argv[2])
RAW = int(sys.argv[3])
KIND = sys.argv[4]
import socket, smtp_client
if sys.argv[5] == "1":
    import smtp_native  # noqa: F401
line = b"The quick brown fox jumps over the lazy dog; 0123456789 ABCDEFGHIJKLMNOPQRS\\r\\n"
if KIND == "lf":
    line = line[:-2] + b"\\n"
lines = line * 10
if KIND == "dots":
    lines = b"." + lines[1:]
body = b"Subject: big\\r\\n\\r\\n" + lines * (%d // len(lines))
best_raw = best_ours = 1e9
for _ in range(3):
    t = time.time()
    a = socket.getaddrinfo(HOST, RAW)[0][-1]
    r = socket.socket()
    r.connect(a)
    send = r.sendall if hasattr(r, "sendall") else r.write
    send(b"%%d\\n" %% len(body))
    send(body)
    r.recv(16)
    r.close()
    best_raw = min(best_raw, time.time() - t)
    t = time.time()
    s = smtp_client.SMTP(HOST, PORT, bufsize=int(sys.argv[6]))
    s.sendmail("a@example.test", ["b@example.test"], body)
    s.quit()
    best_ours = min(best_ours, time.time() - t)
print("RAW", best_raw, "OURS", best_ours, "LEN", len(body))
""" % BIG
KINDS = (("clean", "clean CRLF text"), ("dots", "every tenth line starts with a dot"),
         ("lf", "bare LF line ends"))


def client_run(kind, runtime, port, n, pipe=True):
    src = {"smtplib": SMTPLIB, "ours": OURS, "client": CLIENT, "async": ASYNC}[kind]
    p = run(src, runtime=runtime, timeout=600, args=["127.0.0.1", port, n, "1" if pipe else "0"])
    out = p.stdout + p.stderr
    for line in out.splitlines():
        if line.startswith("T "):
            return float(line.split()[1])
    raise RuntimeError(f"{kind} {runtime} failed:\n{out}")


CLIENTS = [
    ("smtp_client, unix port", "ours", "micropython", True),
    ("smtp_client.Client, unix port", "client", "micropython", True),
    ("smtp_async.AsyncClient, unix port", "async", "micropython", True),
    ("smtp_client, unix port, pipelining/chunking off", "ours", "micropython", False),
    ("smtp_client, CPython", "ours", "cpython", True),
    ("smtp_client.Client, CPython", "client", "cpython", True),
    ("smtp_async.AsyncClient, CPython", "async", "cpython", True),
    ("CPython smtplib (reference)", "smtplib", "cpython", True),
]


def waits_and_wall(pf_chunk, pf_plain, rows):
    out = []
    for label, kind, runtime, pipe in CLIENTS:
        row = [label]
        for server in (pf_chunk, pf_plain):
            for n in (1, 30):
                # Counted with the latency on: a reply then comes back only after the whole
                # flight has left, so a flight is never cut in two by a fast answer.
                proxy = Proxy((server.host, server.port), delay=0.010)
                wall = client_run(kind, runtime, proxy.port, n, pipe)
                proxy.close()
                row.append((proxy.flights[-1], wall))
        out.append(row)
        rows.append(row)
    return out


def per_mail(pf):
    res = []
    for label, kind, runtime, pipe in CLIENTS:
        n = 50
        t = client_run(kind, runtime, pf.port, n, pipe)
        res.append((label, t / n * 1000))
    return res




def throughput():
    """[(runtime, native, kind, bytes, raw s, ours s, bufsize)]: each body kind on the unix
    port without and with smtp_native, and on CPython, with the default bufsize (512); and
    the body that must be copied whole (bare LF) with 4096, where a buffer's write costs
    more than its encoding."""
    sink = Sink()
    res = []
    runs = [(runtime, native, kind, 512) for runtime, native in (
        ("micropython", "0"), ("micropython", "1"), ("cpython", "0")) for kind, _ in KINDS]
    runs.append(("micropython", "1", "lf", 4096))
    for runtime, native, kind, bufsize in runs:
        # The 10 MB body is held in RAM for the comparison: a big heap for the unix port.
        p = run(THROUGHPUT, runtime=runtime, timeout=600,
                heapsize="48m" if runtime == "micropython" else None,
                args=["127.0.0.1", sink.port, sink.raw_port, kind, native, bufsize])
        out = p.stdout + p.stderr
        line = [x for x in out.splitlines() if x.startswith("RAW ")]
        if not line:
            raise RuntimeError(f"throughput {runtime} {kind} failed:\n{out}")
        f = line[0].split()
        res.append((runtime, native == "1", kind, int(f[5]), float(f[1]), float(f[3]),
                    bufsize))
    return res


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default=str(ROOT / "BENCHMARKS.md"))
    a = ap.parse_args(argv)
    t0 = time.time()
    with Postfix(users=RCPTS) as pf_chunk, \
            Postfix(users=RCPTS, main_cf={"smtpd_discard_ehlo_keywords": "chunking"}) as pf_plain:
        rows = []
        waits_and_wall(pf_chunk, pf_plain, rows)
        pm = per_mail(pf_chunk)
    tp = throughput()

    lines = [
        "# Benchmarks",
        "",
        "Made by `make bench` (`tools/bench.py`) in one run on this machine: %s, 2 cores." % (
            time.strftime("%Y-%m-%d")),
        "Servers: a private Postfix 3.7 on loopback (offering CHUNKING, and a second one with",
        "`smtpd_discard_ehlo_keywords = chunking`); both offer PIPELINING. Clients: this",
        "library on the MicroPython unix port and on CPython through each of its drivers",
        "(`smtp_client` = `SMTP.send_many(..., quit=True)`; `smtp_client.Client` and",
        "`smtp_async.AsyncClient`: `send()` for 1 mail, `send_many()` for 30, one fresh",
        "connection each), the same with `pipelining=False, chunking=False`, and CPython's",
        "smtplib as the reference.",
        "",
        "## Waits for the server after the greeting (QUIT included)",
        "",
        "A wait is a client flight that follows a server reply, counted by a recording proxy",
        "that adds 10 ms each way (20 ms round trip); the time is the wall time of the send.",
        "",
        "| client | 1 mail / 3 rcpt, CHUNKING | 30 mails / 3 rcpt, CHUNKING "
        "| 1 mail, PIPELINING only | 30 mails, PIPELINING only |",
        "|---|---:|---:|---:|---:|",
    ]
    for row in rows:
        cells = ["%d waits, %.0f ms" % (w, t * 1000) for w, t in row[1:]]
        lines.append("| %s | %s |" % (row[0], " | ".join(cells)))
    lines += [
        "",
        "Targets (issue 3), for SMTP, Client and AsyncClient alike: 1 mail <= 2 waits with",
        "CHUNKING (<= 3 with PIPELINING only); 30 mails <= 4 waits with CHUNKING and <= 32",
        "without.",
        "",
        "## Time per plain 2 KB mail to 3 recipients on loopback "
        "(Postfix, 50 mails, one connection)",
        "",
        "| client | ms per mail |",
        "|---|---:|",
    ]
    for label, ms in pm:
        lines.append("| %s | %.2f |" % (label, ms))
    lines += [
        "",
        "## Body throughput: a 10 MB body vs a raw socket write of the same bytes",
        "",
        "To a sink server that discards what it reads (best of 3). Ratio = raw time / our time.",
        "Bodies: " + "; ".join("%s: %s" % k for k in KINDS) + ". On the unix port without",
        "and with `import smtp_native` (the viper encoder), and on CPython.",
        "",
        "| runtime | body | bytes | raw write | sendmail | ratio |",
        "|---|---|---:|---:|---:|---:|",
    ]
    for runtime, native, kind, n, raw, ours, bufsize in tp:
        lines.append("| %s | %s | %d | %.1f ms | %.1f ms | %.3f |" % (
            runtime + (" + smtp_native" if native else "")
            + ("" if bufsize == 512 else ", bufsize=%d" % bufsize), kind, n, raw * 1000,
            ours * 1000, raw / ours))
    lines += [
        "",
        "Peak heap and `.mpy` size: see `make measure` (README, \"Measured\").",
        "",
        "(bench ran in %.0f s)" % (time.time() - t0),
        "",
    ]
    text = "\n".join(lines)
    print(text)
    Path(a.out).write_text(text)


if __name__ == "__main__":
    main()
