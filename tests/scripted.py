# SPDX-License-Identifier: MIT
"""A scripted fake SMTP server for fault tests (CPython, stdlib only, threaded).

Each connection plays a script, a list of steps:

    ("send", b"220 hi\\r\\n")                 send bytes
    ("send", data, {"split": 1})            ... N bytes per write (TCP_NODELAY is on), with
                                            {"delay": s} between writes (default 1 ms)
    ("expect", b"EHLO")                     read one CRLF-terminated line; it must start with
                                            the prefix (case-insensitive); kept in lines
    ("expect", b"MAIL", {"alone": True})    ... and nothing may follow it in what has been read:
                                            the client stopped to wait for the reply (lock-step)
    ("expect_group", [b"MAIL", b"RCPT"])    read one line per prefix (as "expect"), replying to
                                            none; the whole group must have come in ONE read
                                            (RFC 2920 pipelining: one write), with
                                            {"joined": True} the same read as the bytes before it
    ("expect_bdat",)                        read "BDAT <n>[ LAST]" (exact RFC 3030 grammar; line in
                                            lines) and exactly n octets after it (kept in data)
    ("expect_bdat", {"until_last": True, "reply": b"250 ok\\r\\n"})
                                            ... chunks until a LAST one, sending `reply` after each
                                            non-LAST chunk; {"alone": True}: nothing may follow a
                                            non-LAST chunk before its reply (RFC 3030 lock-step)
    ("expect_data",)                        read up to and including b"\\r\\n.\\r\\n"; kept in data
    ("recv", n)                             read exactly n bytes; kept in data
    ("starttls", server_ssl_context)        TLS handshake, server side
    ("sleep", seconds)                      say nothing for a while
    ("close",)                              close the connection now
    ("reset",)                              close with RST (SO_LINGER 0)
    ("wait_close",)                         wait (bounded) until the client closes

    srv = ScriptedServer(script, accept=2)         # two connections, same script
    srv = ScriptedServer([script_a, script_b])     # one script per connection
    with srv:                                      # start(); stop() at exit
        ... connect to ("127.0.0.1", srv.port) ...
        srv.join(5)
    srv.check()                                    # AssertionError listing failed steps

Per connection i (in accept order): received[i] (every byte read, in order, decrypted after
STARTTLS), reads[i] (what each recv returned, in order), lines[i] (lines read by "expect",
"expect_group" and "expect_bdat", without CRLF), data[i] (blobs read by "expect_data", "recv"
and "expect_bdat"), client_closed[i] (the client closed or sent EOF by the end). Every read is
bounded by `timeout`; a failing step is recorded in `errors` (never raised in the thread) and
ends that connection. A TLS handshake the client aborts (e.g. it rejects the certificate)
counts as a failed step: assert on `errors` instead of calling check() in such tests.
"""

import re
import socket
import ssl
import struct
import threading
import time

_MAX_LINE = 65536  # a runaway client must not eat the test machine's memory
_BDAT = re.compile(rb"BDAT ([0-9]+)( LAST)?\Z", re.I)  # RFC 3030 3: bdat-cmd


class _Fail(Exception):
    pass


class ScriptedServer:
    def __init__(self, script, accept=1, host="127.0.0.1", timeout=10.0):
        if script and isinstance(script[0], list):
            self.scripts = list(script)
        else:
            self.scripts = [list(script)] * accept
        n = len(self.scripts)
        self.host = host
        self.timeout = timeout
        self.received = [bytearray() for _ in range(n)]
        self.reads = [[] for _ in range(n)]
        self.lines = [[] for _ in range(n)]
        self.data = [[] for _ in range(n)]
        self.client_closed = [False] * n
        self.errors = []
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        self._listener = socket.socket(family, socket.SOCK_STREAM)
        self._listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._listener.bind((host, 0))
        self._listener.listen(n)
        self._listener.settimeout(timeout)
        self.port = self._listener.getsockname()[1]
        self._threads = []
        self._conns = []
        self._stopped = False
        self._acceptor = threading.Thread(target=self._accept_loop, daemon=True)

    # --- control ---

    def start(self):
        self._acceptor.start()
        return self

    def join(self, timeout=None):
        """Wait until every connection's script has ended; True if they all did in time."""
        if self._acceptor.ident is None:  # never started
            return True
        deadline = time.monotonic() + (self.timeout * 2 if timeout is None else timeout)
        self._acceptor.join(max(0, deadline - time.monotonic()))
        for t in list(self._threads):
            t.join(max(0, deadline - time.monotonic()))
        return not self._acceptor.is_alive() and not any(t.is_alive() for t in self._threads)

    def stop(self):
        """Stop accepting, cut connections whose scripts are still running, wait for threads."""
        self._stopped = True
        # On Linux, close() alone does not wake a thread blocked in accept()/recv(); shutdown does.
        for s in [self._listener] + [c.sock for c in self._conns if c.sock is not None]:
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        self._listener.close()
        self.join(self.timeout)

    def check(self):
        """Raise AssertionError if any step failed or a script never finished."""
        if not self.join(0):
            self.errors.append("a script was still running")
        if self.errors:
            raise AssertionError("scripted server: " + "; ".join(self.errors))

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()

    # --- server thread ---

    def _accept_loop(self):
        for i in range(len(self.scripts)):
            try:
                conn, _ = self._listener.accept()
            except OSError as e:  # timeout, or stop()
                why = "stop() came first" if self._stopped else e
                self.errors.append(f"conn {i}: the client never connected ({why})")
                return
            t = threading.Thread(target=self._serve, args=(i, conn), daemon=True)
            self._threads.append(t)
            t.start()

    def _serve(self, i, conn):
        conn.settimeout(self.timeout)
        # Each write goes out at once, so "split" really produces small segments.
        conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        c = _Conn(self, i, conn)
        self._conns.append(c)
        try:
            for k, step in enumerate(self.scripts[i]):
                try:
                    c.step(step)
                except (_Fail, OSError) as e:
                    why = "stop() came first" if self._stopped else f"{type(e).__name__}: {e}"
                    self.errors.append(f"conn {i} step {k} {step[0]}: {why}")
                    break
                if c.sock is None:  # "close"/"reset" ended the conversation
                    break
            c.poll_closed()
        finally:
            c.close()


class _Conn:
    """One connection: a socket (plain or TLS) plus the bytes read but not yet consumed."""

    def __init__(self, srv, i, sock):
        self.srv, self.i, self.sock = srv, i, sock
        self.buf = bytearray()
        self.taken = 0  # bytes consumed by steps so far (an offset into received)
        self.ends = []  # offsets into received where each recv ended

    def _read_more(self):
        try:
            chunk = self.sock.recv(4096)
        except (ssl.SSLEOFError, ConnectionResetError):
            chunk = b""  # a TLS peer that closes without close_notify, or a reset: both EOF
        if not chunk:
            self.srv.client_closed[self.i] = True
            raise _Fail(f"client closed; unconsumed {bytes(self.buf)!r}")
        self.srv.received[self.i] += chunk
        self.srv.reads[self.i].append(chunk)
        self.ends.append(len(self.srv.received[self.i]))
        self.buf += chunk

    def _take(self, n):
        out = bytes(self.buf[:n])
        del self.buf[:n]
        self.taken += len(out)
        return out

    def _read_until(self, marker, what):
        try:
            while True:
                end = self.buf.find(marker)
                if end >= 0:
                    return self._take(end + len(marker))
                if len(self.buf) > _MAX_LINE:
                    raise _Fail(f"no {what} in {len(self.buf)} bytes")
                self._read_more()
        except socket.timeout:
            raise _Fail(f"timeout waiting for {what}; got {bytes(self.buf)!r}") from None

    def _expect_line(self, prefix):
        line = self._read_until(b"\r\n", "CRLF-terminated line")[:-2]
        self.srv.lines[self.i].append(line)
        if not line.upper().startswith(prefix.upper()):
            raise _Fail(f"expected {prefix!r}..., got {line!r}")

    def _recv(self, n):
        try:
            while len(self.buf) < n:
                self._read_more()
        except socket.timeout:
            raise _Fail(f"timeout: wanted {n} bytes, got {bytes(self.buf)!r}") from None
        return self._take(n)

    def step(self, step):
        op, args = step[0], list(step[1:])
        opts = args.pop() if args and isinstance(args[-1], dict) else {}
        if op == "send":
            data, split = args[0], opts.get("split")
            if not split:
                self.sock.sendall(data)
                return
            for off in range(0, len(data), split):
                self.sock.sendall(data[off:off + split])
                time.sleep(opts.get("delay", 0.001))  # let each piece leave as its own segment
        elif op == "expect":
            self._expect_line(args[0])
            if opts.get("alone") and self.buf:
                raise _Fail(f"{args[0]!r} was not alone: {bytes(self.buf)!r} came with it")
        elif op == "expect_group":
            start = self.taken
            for prefix in args[0]:
                self._expect_line(prefix)
            # A read that ended inside the group (or, joined, right before it) split it.
            lo = start if opts.get("joined") else start + 1
            cuts = [e - start for e in self.ends if lo <= e < self.taken]
            if cuts:
                raise _Fail(f"group {args[0]!r} came in several reads (cut at {cuts})")
        elif op == "expect_bdat":
            while True:
                line = self._read_until(b"\r\n", "BDAT line")[:-2]
                self.srv.lines[self.i].append(line)
                m = _BDAT.match(line)
                if not m:
                    raise _Fail(f"expected BDAT <n> [LAST], got {line!r}")
                self.srv.data[self.i].append(self._recv(int(m.group(1))))
                if not m.group(2) and opts.get("alone") and self.buf:
                    raise _Fail(f"{bytes(self.buf)[:40]!r} came before the reply to {line!r}")
                if m.group(2) or not opts.get("until_last"):
                    break
                if "reply" in opts:
                    self.sock.sendall(opts["reply"])
        elif op == "expect_data":
            # An empty body ends right after DATA's own CRLF: the terminator is then just ".\r\n".
            # Read until the first 3 bytes decide (they may not have arrived yet).
            try:
                while len(self.buf) < 3 and b".\r\n".startswith(bytes(self.buf)):
                    self._read_more()
            except socket.timeout:
                raise _Fail(f"timeout waiting for data; got {bytes(self.buf)!r}") from None
            if self.buf[:3] == b".\r\n":
                blob = self._take(3)
            else:
                blob = self._read_until(b"\r\n.\r\n", "end of data")
            self.srv.data[self.i].append(blob)
        elif op == "recv":
            self.srv.data[self.i].append(self._recv(args[0]))
        elif op == "starttls":
            if self.buf:  # RFC 3207: nothing may follow STARTTLS before the handshake
                raise _Fail(f"client sent {bytes(self.buf)!r} before the TLS handshake")
            # wrap_socket detaches the plain socket even when the handshake fails (the client
            # rejects the certificate): don't keep the dead object (poll_closed would EBADF).
            plain, self.sock = self.sock, None
            self.sock = args[0].wrap_socket(plain, server_side=True)
        elif op == "sleep":
            time.sleep(args[0])
        elif op in ("close", "reset"):
            if op == "reset":
                self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            self.close()
        elif op == "wait_close":
            deadline = time.monotonic() + self.srv.timeout
            while not self.srv.client_closed[self.i] and time.monotonic() < deadline:
                try:
                    self._read_more()
                except _Fail:
                    pass  # EOF: client_closed is now set
                except socket.timeout:
                    break  # still open: client_closed stays False
        else:
            raise _Fail(f"unknown step {op!r}")

    def poll_closed(self):
        """At the end of a script: note an EOF the client has already sent, without waiting."""
        if self.sock is None or self.srv.client_closed[self.i]:
            return
        self.sock.settimeout(0)
        try:
            self._read_more()
        except _Fail:
            pass
        except (BlockingIOError, ssl.SSLWantReadError):
            pass
        except OSError:
            self.srv.client_closed[self.i] = True

    def close(self):
        if self.sock is not None:
            self.sock.close()
            self.sock = None
