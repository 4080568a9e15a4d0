# SPDX-License-Identifier: MIT
"""Record real SMTP sessions, then replay them in-process with the server cut short (issue 7).

    rec = record(scenario, host, port, ctx)        # a real server, CPython, real TLS
    net = FakeNet(monkeypatch)                     # smtp_client.socket and ._Transport
    out = net.replay(scenario, rec, cut_server=17)  # ... now fake: no sockets, no threads

Recording: the library runs in this process against a real server (aiosmtpd, Postfix) with
its transport wrapped, so every plaintext byte it writes and reads is logged in order
(decrypted after STARTTLS), with the point where TLS started and, for every mail the server
accepted, the server offset where its 250 to the end of data ends. A recording is the
client's view: each server byte carries a trigger, the number of client bytes written before
the client read it.

Replay: a fake socket plays the recording back. A server byte is released once the client
has written as many bytes as its trigger, so the same (deterministic) client sees the same
conversation. The server can be cut:
  cut_server=N   it sends only its first N bytes of output, then closes;
  cut_client=M   it reads only the first M bytes of the client's output (sending what those
                 bytes triggered), then closes.
After the close, reads give EOF (what was sent stays readable, as on a real socket) and
writes raise BrokenPipeError (lenient=True: the first writes after a server-side cut are
swallowed, as a TCP send buffer does, and only the next read sees the EOF). STARTTLS is a
fake handshake at the recorded point (FakeContext); it fails like a real one (OSError) when
the server is gone. No run can hang: a read that would wait for bytes the recording never
releases raises socket.timeout at once and marks the run `stalled` (the client diverged
from the recording). Every client write is compared with the recording (`diverged`).
"""

import socket
import ssl
import sys
import types

from harness import LIB, MP_DIR, SHIM

# The library as a board has it, `micropython` from the shim, tests/mp's helpers.
for _p in (str(SHIM), str(LIB), str(MP_DIR)):
    if _p not in sys.path:
        sys.path.insert(0, _p)

import smtp_client as sc  # noqa: E402
import smtp_cpython  # noqa: E402
from scenarios import Outcome  # noqa: E402, F401  (shared with the unix port)


# --------------------------------------------------------------------------------- recording


class Recording:
    """One connection's conversation, in the client's view.

    client: every byte the client wrote. chunks: [(trigger, bytes)] the server's bytes in
    the order the client read them, trigger = client bytes written before that read.
    server: the chunks joined. tls: (client offset, server offset) of the STARTTLS
    handshake, or None. accepts: [(batch, index, end)] for every mail the server accepted:
    the n-th transaction (Session.do_mails), the mail's index in it, and the server offset just past
    the 250 that accepted it.
    """

    def __init__(self, name):
        self.name = name
        self.client = bytearray()
        self.writes = []  # len(client) after each write: the client's flights
        self.chunks = []
        self.tls = None
        self.accepts = []

    @property
    def server(self):
        return b"".join(c for _, c in self.chunks)

    def release_trigger(self, offset):
        """The client bytes after which server byte `offset - 1` is released."""
        pos = 0
        for trig, data in self.chunks:
            pos += len(data)
            if offset <= pos:
                return trig
        raise ValueError(f"offset {offset} beyond the server's {pos} bytes")

    def turns(self):
        """The server's bytes as turns: turns[0] before the first write, turns[i] what the
        client read after its i-th write and before the next (tests/mp/fuzzsock.py)."""
        out = [bytearray() for _ in range(len(self.writes) + 1)]
        index = {end: i + 1 for i, end in enumerate(self.writes)}
        for trig, data in self.chunks:
            out[index.get(trig, 0)] += data
        return [bytes(t) for t in out]


class _Recorder(smtp_cpython.Io):
    rec = None
    batches = 0

    def __init__(self, sock):
        super().__init__(sock)
        rec = _Recorder.rec
        if isinstance(sock, ssl.SSLSocket):
            rec.tls = (len(rec.client), len(rec.server))

    def readinto(self, buf, deadline):
        n = super().readinto(buf, deadline)
        if n:
            rec = _Recorder.rec
            rec.chunks.append((len(rec.client), bytes(buf[:n])))
        return n

    def write(self, buf, off, n, deadline):
        super().write(buf, off, n, deadline)
        rec = _Recorder.rec
        rec.client += bytes(buf[off : off + n])
        rec.writes.append(len(rec.client))


def _watch_accepts(monkeypatch, on_accept):
    """Call on_accept(smtp, mail) when a mail's end of data is answered 250."""
    take = sc.Session.take

    def watched(session, code):
        take(session, code)
        for mail in session.mails or ():
            if mail.stage == sc._ACCEPTED and not getattr(mail, "_seen", 0):
                mail._seen = 1
                on_accept(mail)

    monkeypatch.setattr(sc.Session, "take", watched)


def record(monkeypatch, scenario, host, port, ctx, name=None):
    """Run `scenario` once against a real server at host:port; return its Recording.
    The scenario must run through (mails may be refused, but no step may fail)."""
    rec = Recording(name or scenario.name)
    state = {"batch": -1, "smtp": None}
    batch = sc.Session.do_mails

    def counted(self, mails, quit=False):
        state["batch"] += 1
        state["smtp"] = self
        return batch(self, mails, quit)

    def on_accept(mail):
        s = state["smtp"]
        end = len(rec.server) - (s.rx_end - s.rx_pos)
        rec.accepts.append((state["batch"], s.mails.index(mail), end))

    with monkeypatch.context() as m:
        m.setattr(smtp_cpython, "Io", _Recorder)
        m.setattr(sc.Session, "do_mails", counted)
        _watch_accepts(m, on_accept)
        _Recorder.rec = rec
        try:
            out = Outcome()
            scenario.run(scenario.make(host, port, ctx), out)
        finally:
            _Recorder.rec = None
    if out.bad or out.exc is not None or not any(out.sent_flags()):
        raise AssertionError(f"recording {rec.name} failed: {out}")
    return rec


# ----------------------------------------------------------------------------------- replay


class FakeSocket:
    """The server side of one replayed connection, seen through a socket's methods."""

    family = socket.AF_INET

    def __init__(self, rec, cut_server=None, cut_client=None, lenient=False, piece=None):
        self.rec = rec
        self.server = rec.server
        self.expect = bytes(rec.client)
        # Cumulative server offset at the end of each chunk, with its trigger.
        self.ends = []
        pos = 0
        for trig, data in rec.chunks:
            pos += len(data)
            self.ends.append((trig, pos))
        self.cut_server = len(self.server) if cut_server is None else cut_server
        self.cut_client = cut_client
        self.lenient = lenient
        self.piece = piece  # at most this many bytes per recv (None: all available)
        self.got = 0  # client bytes the server has taken
        self.read = 0  # server bytes the client has read
        self.tls = False
        self.closed = False  # by the client
        self.stalled = False
        self.diverged = None
        self.swallowed = 0

    # ----- the server's state

    def _released(self):
        got = self.got if self.cut_client is None else min(self.got, self.cut_client)
        out = 0
        for trig, end in self.ends:
            if trig > got:
                break
            out = end
        return min(out, self.cut_server)

    def server_closed(self):
        if self.cut_client is not None and self.got >= self.cut_client:
            return True
        # The server closes right after its last byte, or its N-th with cut_server=N.
        return self._released() >= self.cut_server

    def available(self):
        return self._released() - self.read

    # ----- what the client calls

    def settimeout(self, t):
        pass

    def setblocking(self, flag):
        pass

    def do_handshake(self):
        pass  # FakeContext.wrap_socket ran handshake()

    def setsockopt(self, *a):
        pass

    def connect(self, addr):
        pass

    def getsockname(self):
        return ("192.0.2.7", 40000)

    def fileno(self):
        return -1

    def recv_into(self, buf, nbytes=0):
        if self.closed:
            raise OSError(9, "Bad file descriptor")
        n = self.available()
        if n <= 0:
            if self.server_closed():
                return 0
            self.stalled = True
            raise socket.timeout("timed out (the replay has nothing to release)")
        n = min(n, len(buf), nbytes or len(buf), self.piece or n)
        buf[:n] = self.server[self.read : self.read + n]
        self.read += n
        return n

    def sendall(self, data):
        if self.closed:
            raise OSError(9, "Bad file descriptor")
        data = bytes(data)
        if self.server_closed():
            if self.lenient and self.cut_client is None and self.swallowed < 2:
                self.swallowed += 1  # TCP takes a write or two before the RST comes back
                return
            raise BrokenPipeError(32, "Broken pipe")
        start = self.got
        if self.expect[start : start + len(data)] != data and self.diverged is None:
            self.diverged = (start, data[:80], self.expect[start : start + 80])
        self.got += len(data)

    def send(self, data):
        self.sendall(data)  # the whole of it: TCP would take a short write as it comes
        return len(data)

    def close(self):
        self.closed = True

    # ----- the fake TLS handshake

    def handshake(self):
        tls = self.rec.tls
        if tls is None or self.tls:
            raise ssl.SSLError("no TLS at this point of the recording")
        if self.server_closed() or self.got < tls[0]:
            raise ConnectionResetError(104, "Connection reset by peer (during handshake)")
        if self.got != tls[0] or self.read != tls[1]:
            self.diverged = self.diverged or ("tls", self.got, self.read, tls)
            raise ssl.SSLError("handshake out of step with the recording")
        self.tls = True


class FakeContext:
    """Stands in for an SSLContext: the handshake is FakeSocket.handshake()."""

    def wrap_socket(self, sock, server_hostname=None, **kw):
        if isinstance(sock, FakeSocket):
            sock.handshake()
            return sock
        raise TypeError("FakeContext wraps only FakeSockets")


class _FakeTransport(smtp_cpython.Io):
    """The CPython transport, with ready() answered by the fake (no select on a fake)."""

    def ready(self):
        sock = self.sock
        return bool(self.early) or sock.available() > 0 or sock.server_closed()


class FakeNet:
    """Patches smtp_client so its connections go to FakeSockets, one per connect()."""

    def __init__(self, monkeypatch):
        self.queue = []
        self.made = []
        fake = types.SimpleNamespace(
            AF_INET=socket.AF_INET, SOCK_STREAM=socket.SOCK_STREAM, timeout=socket.timeout,
            getaddrinfo=self._getaddrinfo, socket=self._socket)
        monkeypatch.setattr(sc, "socket", fake)
        monkeypatch.setattr(smtp_cpython, "Io", _FakeTransport)

    def _getaddrinfo(self, host, port, *a):
        return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", ("192.0.2.25", port))]

    def _socket(self, *a):
        if not self.queue:
            raise ConnectionRefusedError(111, "no replay queued")
        s = self.queue.pop(0)
        self.made.append(s)
        return s

    def replay(self, scenario, rec, handle=None, **cut):
        """Run the scenario once over a FakeSocket of `rec` (cut as given); return the
        Outcome (with .handle, what scenario.make built, and .sock, the FakeSocket).
        Pass the handle of an earlier run to run the same client object again."""
        sock = FakeSocket(rec, **cut)
        self.queue = [sock]
        self.made = []
        out = Outcome()
        if handle is None:
            handle = scenario.make("mail.example.test", 587, FakeContext())
        out.handle = handle
        out.sock = sock
        try:
            scenario.run(handle, out)
        except Exception as ex:  # noqa: BLE001  (judged by the caller)
            out.exc = ex
        out.connections = len(self.made)
        return out


# -------------------------------------------------------------------------------- scenarios


class Scenario:
    """A client session to record and replay: make(host, port, ctx) builds a handle (a
    namespace with .obj, the Client or SMTP, and host, port, ctx), run(handle, out) uses it,
    noting every mail in `out` (one Outcome.mail/.many call per transaction)."""

    def __init__(self, name, make, run, server):
        self.name = name
        self.make = make
        self.run = run
        self.server = server  # which real server records it: "aiosmtpd", "postfix", ...


def expected_sent(rec, batch, index, cut_server=None, cut_client=None):
    """Did the server accept mail `index` of `batch` before it was cut?"""
    for b, i, end in rec.accepts:
        if (b, i) == (batch, index):
            if cut_client is not None:
                return rec.release_trigger(end) <= cut_client
            return cut_server is None or end <= cut_server
    return False


# ------------------------------------------------------------------- replay over real TCP


class TcpReplayServer:
    """The same replay for a client in another process (the unix port): a thread accepts
    connections one after another and plays `rec` on the i-th with cuts[i] (a dict like
    FakeSocket's keywords, or None: uncut), with a real TLS handshake (server_ctx) at the
    recorded point. Per connection, `log[i]` = (client bytes taken, server bytes sent,
    divergence or None)."""

    def __init__(self, rec, cuts, server_ctx=None, timeout=10):
        import threading

        self.rec = rec
        self.cuts = list(cuts)
        self.ctx = server_ctx
        self.timeout = timeout
        self.log = []
        self.errors = []
        self.lsock = socket.socket()
        self.lsock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.lsock.bind(("127.0.0.1", 0))
        self.lsock.listen(8)
        self.lsock.settimeout(timeout)
        self.port = self.lsock.getsockname()[1]
        self.thread = threading.Thread(target=self._serve, daemon=True)

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        try:
            self.lsock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        self.lsock.close()
        self.thread.join(self.timeout)

    def _serve(self):
        for cut in self.cuts:
            try:
                conn, _ = self.lsock.accept()
            except OSError:
                return
            try:
                self.log.append(self._play(conn, cut or {}))
            except Exception as ex:  # noqa: BLE001  (reported by the test)
                self.errors.append(f"conn {len(self.log)}: {ex!r}")
                self.log.append(None)
            finally:
                conn.close()

    def _play(self, conn, cut):
        rec = self.rec
        server = rec.server
        expect = bytes(rec.client)
        ends = []
        pos = 0
        for trig, data in rec.chunks:
            pos += len(data)
            ends.append((trig, pos))
        cut_server = cut.get("cut_server", len(server))
        cut_client = cut.get("cut_client")
        conn.settimeout(self.timeout)
        conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        got = sent = 0
        diverged = None
        tls_done = rec.tls is None
        while True:
            limit = got if cut_client is None else min(got, cut_client)
            target = 0
            for trig, end in ends:
                if trig > limit:
                    break
                target = end
            target = min(target, cut_server)
            if target > sent:
                conn.sendall(server[sent:target])
                sent = target
            if sent >= cut_server or (cut_client is not None and got >= cut_client):
                break  # the cut (or the end of the recording): close
            if not tls_done and (got, sent) == rec.tls:
                tls_done = True
                try:
                    conn = self.ctx.wrap_socket(conn, server_side=True)
                except (OSError, ssl.SSLError):
                    break  # the client gave up on the handshake
                conn.settimeout(self.timeout)
                continue
            try:
                data = conn.recv(65536)
            except socket.timeout:
                diverged = diverged or ("stalled", got, sent)
                break
            except (ConnectionError, ssl.SSLError):
                data = b""
            if not data:
                break  # the client closed first
            if cut_client is not None:
                data = data[: max(0, cut_client - got)]
            if diverged is None and expect[got : got + len(data)] != data:
                diverged = (got, data[:60], expect[got : got + 60])
            got += len(data)
        return got, sent, diverged
