# SPDX-License-Identifier: MIT
"""smtp_async: smtp_client's session driven by asyncio (MicroPython's and CPython's).
AsyncClient takes Client's arguments and runs the same `Session` generators, carrying out
their orders with awaits, each bounded by `timeout`:
`await AsyncClient(host, username=..., password=..., from_addr=...).send(to, msg)`."""

import asyncio
import sys

import smtp_client as sc
from smtp_client import (SMTPConnectError, SMTPException, SMTPNotSupportedError,
                         SMTPServerDisconnected, SMTPTimeoutError, SMTPTLSError)

__version__ = "0.1.0"

_MPY = sys.implementation.name == "micropython"
_SYNC = 1  # smtp_client's orders (its const()s are not module attributes; a test checks)
_REGION = 2


class _Driver(sc.SMTP):
    """The session of an AsyncClient: SMTP's options and state, a reader and a writer, and
    awaits where SMTP blocks (its _check, _sync, _read and _write are overridden here)."""

    r = w = None
    shaking = False  # MicroPython: the TLS handshake runs inside the first reads

    async def _wait(self, aw, ms):
        try:
            if _MPY:
                return await asyncio.wait_for_ms(aw, ms)  # type: ignore[attr-defined]
            return await asyncio.wait_for(aw, ms / 1000)
        except asyncio.TimeoutError:
            raise SMTPTimeoutError("timed out")

    def _tls_failed(self, ex):
        if isinstance(ex, SMTPException):  # (a timeout of the handshake is one already)
            raise ex
        raise SMTPTLSError("TLS handshake with %s failed: %r" % (self._host, ex))

    async def open(self, c):
        self.own(True)
        self.reset()
        self._host = c.host
        ctx = (self.context or sc.create_context()) if self._implicit else None
        try:
            self.r, self.w = await self._wait(
                asyncio.open_connection(c.host, c.port, ssl=ctx), self.ms)
        except (OSError, ValueError) as ex:
            if ctx is None:
                raise
            self._tls_failed(ex)
        if _MPY:
            try:
                self.w.s.setsockopt(6, 1, 1)  # TCP_NODELAY, as smtp_client (no Nagle stall)
            except (OSError, AttributeError):
                pass
        self._tls = ctx is not None
        self.shaking = self._tls and _MPY
        self._poll()

    def _poll(self):
        if _MPY:  # for _check: MicroPython's StreamReader keeps no buffer of its own
            import select

            self.pin = select.poll()
            self.pin.register(self.r.s, select.POLLIN)

    def close(self):
        w = self.w
        self.r = self.w = None
        self.own(False)
        if w is not None:
            try:
                w.s.close() if _MPY else w.close()  # MicroPython's Stream.close() is a no-op
            except OSError:
                pass

    async def run(self, ops):
        """Carry out the session's orders; the same rules as smtp_client.SMTP._run."""
        if self.w is None:
            raise SMTPServerDisconnected("not connected")
        try:
            for op in ops:
                if op == _SYNC:
                    await self._sync()
                elif op == _REGION:
                    await self._write(self.src, self.ri, self.rj)
                else:
                    await self._starttls()
        except BaseException as ex:
            if self.broken(ex):
                self.close()
            raise

    async def _check(self, starttls=False):
        # Before a flight: a byte already waiting answers nothing (RFC 5321 4.2).
        self.poll = False
        if _MPY:
            ready = any(True for _ in self.pin.ipoll(0))
        else:
            await asyncio.sleep(0)  # let the loop move what arrived into the reader
            ready = bool(getattr(self.r, "_buffer", None)) or self.r.at_eof()
        if self.rx_pos < self.rx_end or ready:
            if self.rx_pos == self.rx_end:
                await self._read(1000)
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
            await self._read(0)
            code = self.parse()
        return code

    async def _read(self, ms):
        v = self.rx_view()
        try:
            if _MPY:  # straight into rx; read before waiting: TLS may hold decrypted bytes
                n = self.r.s.readinto(v)
                while n is None:
                    n = await (self._wait(self.r.readinto(v), ms) if ms else self.r.readinto(v))
            else:  # CPython's StreamReader has no readinto: one bytes object per read
                data = await (self._wait(self.r.read(len(v)), ms) if ms else self.r.read(len(v)))
                n = len(data)
                v[:n] = data
        except (OSError, ValueError) as ex:
            if isinstance(ex, SMTPException):
                raise
            if self.shaking:
                self._tls_failed(ex)
            raise SMTPServerDisconnected("read failed: %r" % (ex,))
        self.shaking = False
        self.received(n)

    async def _write(self, buf, a, b):
        # In pieces, each drained within the timeout: a deadline bounds a wait without
        # progress, not a whole body written from the caller's buffer.
        mv = memoryview(buf)
        try:
            while a < b:
                k = min(b, a + 4096)
                # CPython's transports keep a reference: give them a copy, tx is reused.
                self.w.write(mv[a:k] if _MPY else bytes(mv[a:k]))
                await self._wait(self.w.drain(), self.ms)
                a = k
        except OSError as ex:
            if isinstance(ex, SMTPException):
                raise
            raise SMTPServerDisconnected("write failed: %r" % (ex,))

    async def _starttls(self):
        await self._check(True)  # RFC 3207 6: bytes after the 220 would pass as if over TLS
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
            self._poll()
            self.shaking = True
        elif not hasattr(self.w, "start_tls"):
            raise SMTPNotSupportedError("STARTTLS with asyncio needs CPython 3.11 or later")
        else:
            try:
                await self._wait(self.w.start_tls(ctx, server_hostname=self._host), self.ms)
            except (OSError, ValueError) as ex:
                self._tls_failed(ex)
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
        await self._send([mail])
        if mail.error is not None:
            raise mail.error
        return mail

    async def send_many(self, mails, **options):
        """Client.send_many as a coroutine (it loads smtp_ext)."""
        import smtp_ext

        mails = smtp_ext.client_batch(self, mails, options)
        await self._send(mails)
        return mails

    async def _send(self, mails):
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
