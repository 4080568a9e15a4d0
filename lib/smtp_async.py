# SPDX-License-Identifier: MIT
"""smtp_async: smtp_client's session driven by asyncio (MicroPython's and CPython's).
AsyncClient takes Client's arguments and runs the same `Session` generators, carrying out
their orders with awaits, each bounded by `timeout`:
`await AsyncClient(host, username=..., password=..., from_addr=...).send(to, msg)`."""

import asyncio
import sys

import smtp_client as sc
from smtp_client import (SMTPConnectError, SMTPException, SMTPServerDisconnected,
                         SMTPTimeoutError, SMTPTLSError)

__version__ = "0.1.0"

_MPY = sys.implementation.name == "micropython"
if not _MPY:
    import smtp_cpython  # CPython's streams: connect, read, start_tls
_SYNC, _REGION = 1, 2  # smtp_client's orders (its const()s are not module attributes)


class _Driver(sc.SMTP):
    """An AsyncClient's session: SMTP's state and rules, with awaits where SMTP blocks."""

    r = w = None
    shaking = False  # MicroPython: the TLS handshake runs inside the first reads

    async def _wait(self, aw, ms):
        try:  # ms, not seconds: a board's single-precision float would round them up
            if not _MPY:
                return await smtp_cpython.wait_for_ms(aw, ms)
            return await asyncio.wait_for_ms(aw, ms)  # type: ignore[attr-defined]
        except asyncio.TimeoutError:
            raise SMTPTimeoutError("timed out")

    def _tls_failed(self, ex):
        raise SMTPTLSError("TLS handshake with %s failed: %r" % (self._host, ex))

    async def open(self, c):
        self.own(True)
        self.reset()
        self._host = c.host
        if not _MPY:
            self.r, self.w = await smtp_cpython.open_stream(self, c.host, c.port)
            return
        self.r, self.w = await self._wait(asyncio.open_connection(c.host, c.port), self.ms)
        self.sock = self.w.s
        try:
            self.sock.setsockopt(6, 1, 1)  # TCP_NODELAY, as smtp_client (no Nagle stall)
        except (OSError, AttributeError):
            pass
        if self._implicit:
            await self._tls_on()  # RFC 8314 3.3: TLS from the first byte

    def close(self):
        if self.w is not None and not _MPY:  # (MicroPython's Stream.close() is a no-op)
            self.w.close()
        self.r = self.w = None
        super().close()  # the socket (MicroPython), the pool, the session's state

    async def run(self, ops):
        """Carry out the session's orders; the same rules as smtp_client.SMTP._run."""
        try:
            for op in ops:
                if op == _SYNC:
                    await self._sync()
                elif op == _REGION:
                    await self._write(self.src, self.ri, self.rj)
                else:  # RFC 3207 6: bytes after the 220 would pass as if over TLS
                    await self._check(True)
                    await self._tls_on()
        except BaseException as ex:
            if self.broken(ex):
                self.close()
            raise
        if self.code == 421 and self.out == 0:
            self.close()  # RFC 5321 3.8: the server is closing the channel

    async def _check(self, starttls=False):
        # Before a flight: a byte already waiting answers nothing (RFC 5321 4.2).
        self.poll = False
        if self.rx_pos < self.rx_end or await self._read(True):
            raise self.unsolicited(starttls)

    async def _sync(self):
        if self.tx_len > self.tx_start:
            if self.poll and not self.sent:
                await self._check()
            await self._write(self.tx, self.tx_start, self.tx_len)
            self.tx_start = self.tx_len = 0
        self.sent = self.out
        while self.out > self.left:
            self.take(await self._wait(self._reply(), self.wait_ms()))

    async def _reply(self):
        code = self.parse()
        while not code:
            await self._read()
            code = self.parse()
        return code

    async def _read(self, now=False):
        """Read into rx (the caller bounds the wait); `now`: only what is there (False: none)."""
        v = self.rx_view()
        try:
            if not _MPY:  # (StreamReader has no readinto)
                n = await smtp_cpython.stream_read(self.r, v, now)
            else:  # straight into rx; read before waiting: TLS may hold decrypted bytes
                n = self.r.s.readinto(v)
                while n is None and not now:
                    n = await self.r.readinto(v)
        except (OSError, ValueError) as ex:  # (no SMTPException: the caller keeps the time)
            if self.shaking:
                self._tls_failed(ex)
            raise SMTPServerDisconnected("read failed: %r" % (ex,))
        if n is None:
            return False
        self.shaking = False
        self.received(n)
        return True

    async def _write(self, buf, a, b):
        # In pieces, each drained within the timeout: it bounds a wait without progress.
        mv = memoryview(buf)
        try:
            while a < b:
                k = min(b, a + 4096)
                self.w.write(mv[a:k] if _MPY else bytes(mv[a:k]))  # (CPython keeps it)
                await self._wait(self.w.drain(), self.ms)
                a = k
        except OSError as ex:
            if isinstance(ex, SMTPException):
                raise
            raise SMTPServerDisconnected("write failed: %r" % (ex,))

    async def _tls_on(self):
        ctx = self.context or sc.create_context()
        if _MPY:
            # The stream's socket is wrapped in place; the handshake runs in the next reads
            # and writes, non-blocking, so its waits have the session's deadlines too.
            try:
                tls = ctx.wrap_socket(self.w.s, server_hostname=self._host,
                                      do_handshake_on_connect=False)
            except (OSError, ValueError) as ex:
                self._tls_failed(ex)
            tls.setblocking(False)
            self.r = self.w = asyncio.StreamReader(tls)
            self.sock = tls
            self.shaking = True
        else:
            await smtp_cpython.start_tls(self, ctx)
        self._tls = True


class AsyncClient(sc.Client):
    """smtp_client.Client for asyncio: the same arguments; `send()` and `send_many()` are
    coroutines. Sends on one client run one at a time (they share its pool)."""

    _lock = None
    _session = _Driver

    def __getattr__(self, name):
        raise AttributeError(name)  # not Client's blocking extras (smtp_ext)

    async def send(self, to_addrs, msg, *, from_addr=None, **options):
        """One mail over a fresh connection; a SendResult, or the classified exception."""
        mail = sc.SendResult(self._sender(from_addr), to_addrs, msg, (), (), options)
        return await self._send([mail], mail)

    async def send_many(self, mails, **options):
        """Client.send_many as a coroutine (it loads smtp_ext)."""
        import smtp_ext
        return await self._send(smtp_ext.client_batch(self, mails, options))

    async def _send(self, mails, one=None):
        if self._lock is None:
            self._lock = asyncio.Lock()
        async with self._lock:
            s = self.session
            try:
                await s.open(self)
                await s.run(s.do_command())  # the greeting
                if s.code != 220:
                    raise SMTPConnectError(s.code, s.text)
                await s.run(s.do_client(self))
                await s.run(s.do_mails(mails, True))
                s.conclude()
            except Exception as ex:
                if s.mails is None and s.w is not None:  # a clean refusal: RFC 5321 4.1.1.10
                    try:
                        await s.run(s.do_command(b"QUIT"))
                    except Exception:
                        pass
                s.conclude(ex)
            finally:
                s.mails = None
                s.close()
        if one is not None and one.error is not None:
            raise one.error
        return one or mails
