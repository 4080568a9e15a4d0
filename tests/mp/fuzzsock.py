# SPDX-License-Identifier: MIT
"""A fake server fed from a list of byte strings, for the fuzz tests (issue 7.2); the same
code under CPython (tests/test_fuzz.py, hypothesis) and MicroPython (the corpus sample).

    install(sc)                       # smtp_client's socket and _Io now come from here
    conn = arm(turns, piece=1, end="eof", fail_write=-1)
    ... run a client session (tests/mp/scenarios.py) ...

turns[0] is sent when the client connects, turns[i] right after the client's i-th write (a
flight), whatever it wrote: a reply stream in the rhythm of a real conversation, which the
fuzzer then mutates. Reads hand over at most `piece` bytes (0: all there is). When the
turns run out, the server closes (end="eof") or goes silent (end="silent": the read times
out, as at the deadline). fail_write=k makes the k-th write (from 0) fail with EPIPE, after
which the server is gone. The fake is its own transport (readinto/write/ready/close), so
no real socket, select or thread is involved and every run is deterministic.
"""

_OPS_LIMIT = 20000  # reads + writes: a client that loops on a fake server is a bug


class Runaway(Exception):
    """The client kept reading or writing: it would spin (not one of the library's)."""


class FuzzConn:
    def __init__(self, turns, piece=0, end="eof", fail_write=-1):
        self.turns = turns
        self.piece = piece
        self.end = end
        self.fail_write = fail_write
        self.data = bytearray(turns[0] if turns else b"")
        self.pos = 0
        self.released = 1
        self.writes = 0
        self.ops = 0
        self.gone = False  # the server closed (a failed write)
        self.closed = False  # the client closed
        self.tls = 0
        self.wrote = bytearray()  # everything the client wrote

    # the socket part (SMTP._open, SMTP._wrap)
    def settimeout(self, t):
        pass

    def setblocking(self, flag):
        pass

    def do_handshake(self):
        pass  # FakeContext: the handshake always succeeds

    def setsockopt(self, *a):
        pass

    def connect(self, addr):
        pass

    def getsockname(self):
        return ("192.0.2.7", 40000)

    # the transport part (smtp_client._Io's interface)
    def _tick(self):
        self.ops += 1
        if self.ops > _OPS_LIMIT:
            raise Runaway("more than %d reads and writes" % _OPS_LIMIT)

    def server_closed(self):
        return self.gone or (self.end == "eof" and self.released >= len(self.turns))

    def readinto(self, buf, deadline):
        self._tick()
        if self.closed:
            raise OSError(9, "EBADF")
        n = len(self.data) - self.pos
        if n <= 0:
            if self.server_closed():
                return 0
            import smtp_client

            raise smtp_client.SMTPTimeoutError("timed out")  # the deadline passes
        if self.piece and n > self.piece:
            n = self.piece
        if n > len(buf):
            n = len(buf)
        for i in range(n):
            buf[i] = self.data[self.pos + i]
        self.pos += n
        return n

    def ready(self):
        self._tick()
        return self.pos < len(self.data) or self.server_closed()

    def write(self, buf, off, n, deadline):
        self._tick()
        if self.closed:
            raise OSError(9, "EBADF")
        if self.gone or self.writes == self.fail_write:
            self.gone = True
            raise OSError(32, "EPIPE")
        self.writes += 1
        self.wrote += buf[off:off + n]
        if self.released < len(self.turns):
            self.data += self.turns[self.released]
            self.released += 1

    def close(self):
        self.closed = True


class FakeContext:
    """The STARTTLS handshake always succeeds: the fuzz target is the reply stream."""

    def wrap_socket(self, sock, server_hostname=None, **kw):
        sock.tls += 1
        return sock


class _Net:
    AF_INET = 2
    SOCK_STREAM = 1

    def __init__(self):
        self.conn = None
        self.made = 0

    def getaddrinfo(self, host, port, *a):
        return [(2, 1, 6, "", ("192.0.2.25", port))]

    def socket(self, *a):
        conn = self.conn
        if conn is None:
            raise OSError(111, "ECONNREFUSED")
        self.conn = None  # one connection per armed case
        self.made += 1
        return conn


NET = _Net()


def install(sc):
    """Point smtp_client at the fake (CPython: use monkeypatch instead, see test_fuzz)."""
    NET.timeout = OSError
    sc.socket = NET
    sc._Io = _transport


def _transport(sock, shaking=False):
    return sock


def arm(turns, piece=0, end="eof", fail_write=-1):
    """The next connection plays these turns; returns the FuzzConn."""
    conn = FuzzConn(turns, piece, end, fail_write)
    NET.conn = conn
    NET.made = 0
    return conn


def _ends(wrote):
    # An empty body's "." follows DATA's own CRLF: counted by the first pattern too.
    return wrote.count(b"\r\n.\r\n") + wrote.count(b" LAST\r\n")


def _cls(e):
    return None if e is None else type(e).__name__


def run_once(name, turns, piece=0, end="eof", fail_write=-1, handle=None):
    """One session of scenario `name` against these turns; returns (summary, handle).
    summary: {"mails": [[sent, error class], ...] per batch, "exc": class of the exception
    that ended the session, "bad": reprs of exceptions that are not SMTPException,
    "leak": the client forgot the socket without closing it, "open": the session's socket
    is still open (allowed for an SMTP session the scenario left mid-way)}."""
    import smtp_client as sc
    from scenarios import SCENARIOS, Outcome, smtp_of

    make, run, _ = SCENARIOS[name]
    if handle is None:
        handle = make("mail.example.test", 587, FakeContext())
    conn = arm(turns, piece, end, fail_write)
    out = Outcome()
    try:
        run(handle, out)
    except Exception as ex:
        out.exc = ex
        if not isinstance(ex, sc.SMTPException) and ex not in out.bad:
            out.bad.append(ex)
    NET.conn = None
    smtp = smtp_of(handle.obj)
    held = smtp is not None and smtp.sock is conn
    return {
        "mails": [[[s, _cls(e)] for s, e in row] for row in out.batches],
        "exc": _cls(out.exc),
        "bad": [repr(b) for b in out.bad],
        "leak": NET.made > 0 and not held and not conn.closed,
        "open": held and not conn.closed,
        # mails reported sent, and ends of data the client wrote (RFC 5321 4.1.1.4 "."
        # alone on a line; RFC 3030 "BDAT <n> LAST"): never more of the former
        "sent": sum(1 for row in out.batches for s, _ in row if s),
        "ends": _ends(conn.wrote),
    }, handle


def run_case(name, turns, piece, end, fail_write, base):
    """A fuzz case, then the uncut conversation `base` on the same client object."""
    first, handle = run_once(name, turns, piece, end, fail_write)
    again, _ = run_once(name, base, handle=handle)
    return first, again
