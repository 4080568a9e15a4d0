# SPDX-License-Identifier: MIT
"""smtp_async: an asyncio driver for smtp_client's engine (MicroPython's asyncio and CPython's).

    import asyncio, smtp_async
    c = smtp_async.AsyncClient("smtp.example.com", username="u", password="p",
                               from_addr="dev@example.com", tls="implicit")
    asyncio.run(c.send("you@example.com", b"Subject: hi\\r\\n\\r\\nHello"))

The protocol (commands, reply parsing, body encoding, AUTH, input checks, error classes) is
smtp_client's `Engine` and `_Mail`; this module only moves bytes with awaits. Commands go out
lock-step (one reply awaited per command; no PIPELINING, no BDAT: DATA everywhere).
Every wait is bounded by `timeout` (SMTPTimeoutError). Other tasks keep running while a send
waits on the server.

MicroPython's asyncio cannot upgrade an open stream to TLS: there, tls="starttls" raises
SMTPNotSupportedError; use tls="implicit" (port 465).
"""

import asyncio
import sys

import smtp_client as sc
from smtp_client import (
    SMTPAuthenticationError,
    SMTPConnectError,
    SMTPException,
    SMTPHeloError,
    SMTPNotSupportedError,
    SMTPProtocolError,
    SMTPResponseException,
    SMTPServerDisconnected,
    SMTPTimeoutError,
    SMTPTLSError,
    SendResult,
)

__version__ = "0.1.0"

_MPY = sys.implementation.name == "micropython"

# smtp_client's private const()s are folded away by MicroPython's compiler (not module
# attributes), so the few this driver needs are repeated here; tests/test_async.py checks
# they match.
_STARTTLS = 1  # capability bits (smtp_client._STARTTLS, _AUTH)
_AUTH = 256
_X_MAIL = 1  # what a reply answers (smtp_client._X_*)
_X_RCPT = 2
_X_DATA = 3
_X_END = 5
_ENDED = 1  # smtp_client._ENDED / _ACCEPTED (a _Mail's stage)
_ACCEPTED = 2
_AUTH_ROUNDS = 5  # smtp_client._AUTH_ROUNDS


class _Session:
    """One connection, lock-step. Mirrors SMTP's sequencing with awaits; `engine` and `_tls`
    are the names smtp_client._Mail.prepare() reads."""

    _tls = False
    _shake = False  # the next read may fail in MicroPython's lazy TLS handshake
    r = w = sock = None

    def __init__(self, client):
        self.c = client
        self.engine = sc.Engine(client.pool)
        self._host = client.host
        self.local_hostname = client.local_hostname

    # ----- I/O glue: every wait under asyncio.wait_for

    async def _wait(self, aw, factor=1):
        try:
            return await asyncio.wait_for(aw, self.c.timeout * factor)
        except asyncio.TimeoutError:
            self.close()
            raise SMTPTimeoutError("timed out")

    def close(self):
        w = self.w
        self.r = self.w = self.sock = None
        if w is not None:
            try:
                if _MPY:
                    w.s.close()  # MicroPython's Stream.close() does nothing; its socket is .s
                else:
                    w.close()
            except OSError:
                pass

    async def _read_reply(self):
        e = self.engine
        while True:
            code = e.parse()
            if code:
                return code
            v = e.rx_view()
            if _MPY:
                # Straight into rx. Read before waiting: TLS may hold decrypted bytes the
                # socket's readiness does not show, and the first read starts the handshake
                # (open_connection leaves it to us). None: nothing yet; wait, read again.
                n = self.r.s.readinto(v)
                while n is None:
                    n = await self.r.readinto(v)
            else:
                # CPython's StreamReader has no readinto: one bytes object per read.
                data = await self.r.read(len(v))
                n = len(data)
                v[:n] = data
            if not n:
                raise SMTPServerDisconnected("connection closed by server")
            e.received(n)

    async def reply(self, factor=1):
        """The next reply as (code, text). 421 closes the connection and raises
        (RFC 5321 3.8), after the caller had no chance to attribute it: see _take."""
        e = self.engine
        e.keep = True  # text is copied out for every reply: the async driver allocates
        if self.r is None:
            raise SMTPServerDisconnected("not connected")
        try:
            code = await self._wait(self._read_reply(), factor)
        except SMTPException:
            self.close()
            raise
        except (OSError, ValueError) as ex:
            self.close()
            if self._shake and (isinstance(ex, ValueError) or (getattr(ex, "errno", 0) or 0) < 0):
                # MicroPython shakes hands on the first read: its TLS errors are OSErrors
                # with negative (mbedTLS) numbers, or ValueError (host name mismatch).
                raise SMTPTLSError("TLS handshake with %s failed: %r" % (self._host, ex))
            raise SMTPServerDisconnected("read failed: %r" % (ex,))
        text = e.take_text()
        if code == 421:
            self.close()
        return code, text

    async def flush(self):
        e = self.engine
        if self.w is None:
            raise SMTPServerDisconnected("not connected")
        if e.rx_pos < e.rx_end:
            # RFC 5321 4.2: one reply per command; bytes nobody asked for desync the session.
            self.close()
            raise SMTPProtocolError("unsolicited data from server")
        if e.tx_len > e.tx_start:
            if _MPY:
                # Stream.write sends at once, or copies what is left into its own buffer.
                self.w.write(memoryview(e.tx)[e.tx_start : e.tx_len])
            else:
                # CPython's TLS transport keeps a reference: give it a copy, tx is reused.
                self.w.write(bytes(e.tx[e.tx_start : e.tx_len]))
            e.tx_len = e.tx_start = 0
            try:
                await self._wait(self.w.drain())
            except SMTPException:
                raise
            except OSError as ex:
                self.close()
                raise SMTPServerDisconnected("write failed: %r" % (ex,))

    async def cmd(self, verb, arg=None):
        self.engine.command(verb, arg)
        await self.flush()
        return await self.reply()

    async def _take(self, kind, mail):
        # RFC 5321 4.5.3.2.6: the end of data may take longest; allow twice the timeout.
        code, text = await self.reply(2 if kind == _X_END else 1)
        mail.reply(kind, code, text)
        if code == 421:
            raise SMTPResponseException(code, text)

    # ----- session set-up: connect, EHLO, STARTTLS, AUTH (as Client._prepare)

    async def open(self):
        c = self.c
        ctx = None
        if c.tls == "implicit":
            ctx = c.context if c.context is not None else sc.create_context()
        try:
            self.r, self.w = await self._wait(asyncio.open_connection(c.host, c.port, ssl=ctx))
        except OSError as ex:
            # CPython shakes hands inside open_connection; ssl.SSLError is an OSError.
            if ctx is not None and not _MPY:
                import ssl

                if isinstance(ex, (ssl.SSLError, ssl.CertificateError)):
                    raise SMTPTLSError("TLS handshake with %s failed: %r" % (c.host, ex))
            raise
        self.sock = self.w.s if _MPY else self.w.get_extra_info("socket")
        self._tls = ctx is not None
        self.engine.pending = 1
        self._shake = _MPY and ctx is not None
        code, text = await self.reply()
        self._shake = False
        if code != 220:
            self.close()
            raise SMTPConnectError(code, text)
        await self.hello()
        if c.tls == "starttls":
            await self.starttls()
        await self.login()

    async def hello(self):
        # SMTP._local_name needs only local_hostname, sock and _host: reuse it as is.
        name = sc.SMTP._local_name(self)  # type: ignore[arg-type]
        code, text = await self.cmd(b"EHLO", name)
        if code == 250:
            if text and max(text) >= 128:
                self.close()
                raise SMTPProtocolError("EHLO reply is not ASCII")
            self.engine.set_capabilities(text.split(b"\n"))
            return
        if code in (500, 502):  # RFC 5321 4.1.4: no EHLO; fall back to HELO
            code, text = await self.cmd(b"HELO", name)
            if code == 250:
                return
        raise SMTPHeloError(code, text)

    async def starttls(self):
        e = self.engine
        # RFC 3207 4: required; not offered means stop before anything private is sent.
        if not e.caps & _STARTTLS:
            raise SMTPNotSupportedError("server does not offer STARTTLS (tls='starttls')")
        code, text = await self.cmd(b"STARTTLS")
        if code != 220:
            raise SMTPResponseException(code, text)
        if e.rx_pos < e.rx_end or getattr(self.r, "_buffer", None):
            # RFC 3207 6: bytes after the 220 would be read as if they came over TLS.
            self.close()
            raise SMTPProtocolError("server sent data after 220 to STARTTLS (injection)")
        ctx = self.c.context if self.c.context is not None else sc.create_context()
        try:
            await self._wait(self.w.start_tls(ctx, server_hostname=self._host))
        except SMTPException:
            raise
        except (OSError, ValueError) as ex:
            self.close()
            raise SMTPTLSError("TLS handshake with %s failed: %r" % (self._host, ex))
        # RFC 3207 4.2: forget what was learnt before TLS and say EHLO again.
        e.reset()
        self._tls = True
        await self.hello()

    async def login(self):
        c = self.c
        e = self.engine
        if c.username is None or c.auth == "none":
            return
        if c.auth == "auto":
            if not e.caps & _AUTH:
                return  # as Client: "auto" and no AUTH advertised sends without it
            for mech in sc._MECHANISMS:
                if mech in e.auth:
                    break
            else:
                raise SMTPException("No suitable authentication method found.")
        else:
            mech = c.auth.upper()
        if not self._tls and not c.allow_plaintext_auth:
            raise SMTPNotSupportedError("refusing to send credentials without TLS")
        # SMTP.auth with awaits: initial response where the mechanism has one (RFC 4954 4).
        obj = sc._authobject(mech, c.username, c.password)
        ir = obj(None)
        arg = None if ir is None else sc._b64(sc._b(ir)) if ir else b"="
        e.command(b"AUTH " + mech.encode(), arg)
        await self.flush()
        for _ in range(_AUTH_ROUNDS):
            code, text = await self.reply()
            if code != 334:
                if code in (235, 503):
                    return
                raise SMTPAuthenticationError(code, text)
            try:
                resp = obj(sc._unb64(text))
            except SMTPProtocolError:
                self.close()
                raise
            e.put(sc._b64(sc._b(resp)) if resp else b"")
            e.put(b"\r\n")
            e.pending += 1
            await self.flush()
        self.close()
        raise SMTPAuthenticationError(535, b"too many AUTH challenges")

    # ----- mail transactions (SMTP._batch, lock-step, DATA)

    async def batch(self, mails):
        e = self.engine
        for mail in mails:
            mail.prepare(self, e.caps)  # checks against the EHLO, before any byte is sent
        prev = None
        try:
            for mail in mails:
                if mail.error is not None:
                    continue
                if prev is not None and not prev.stage:
                    # RFC 5321 4.1.1.5: a refused DATA may leave the transaction open.
                    await self.cmd(b"RSET")
                prev = mail
                e.path_command(b"MAIL FROM:", sc._b(mail.from_addr), mail.mopts)
                await self.flush()
                await self._take(_X_MAIL, mail)
                if mail.error is not None:
                    continue
                for addr, ropts in zip(mail.to_addrs, mail.ropts):
                    e.path_command(b"RCPT TO:", sc._b(addr), ropts)
                    await self.flush()
                    await self._take(_X_RCPT, mail)
                if len(mail.refused) == len(mail.to_addrs):
                    continue
                e.command(b"DATA")
                await self.flush()
                await self._take(_X_DATA, mail)
                if mail.data != 354:  # RFC 5321 4.1.1.4: the body only after 354
                    continue
                await self.body(mail.body)
                mail.stage = _ENDED
                await self._take(_X_END, mail)
            await self.cmd(b"QUIT")
        except SMTPException as ex:
            # As SMTP._batch: mails the server accepted stay accepted.
            for mail in mails:
                if mail.stage != _ACCEPTED and mail.error is None:
                    mail.error = ex
        finally:
            self.close()
        for mail in mails:
            mail.conclude()

    async def body(self, body):
        """Stream the body through tx, dot-stuffed, then "." (RFC 5321 4.1.1.4). If the
        source fails, the connection is dropped without an end of data."""
        e = self.engine
        e.body_start(True)
        try:
            if hasattr(body, "readinto"):
                chunk = self.c.pool.chunk
                while True:
                    n = body.readinto(chunk)
                    if not n:
                        break
                    await self._region(chunk, n)
            elif isinstance(body, (bytes, bytearray)):
                await self._region(body, len(body))
            else:
                for piece in body:
                    if isinstance(piece, memoryview):
                        piece = bytes(piece)
                    if not isinstance(piece, (bytes, bytearray)):
                        raise TypeError("message chunks must be bytes")
                    await self._region(piece, len(piece))
            if e.room() < 5:
                await self.flush()
        except SMTPException:
            raise
        except BaseException:
            self.close()
            raise
        e.finish()
        await self.flush()

    async def _region(self, src, j):
        e = self.engine
        i = 0
        while i < j:
            i = e.encode(src, i, j)
            if i < j:
                await self.flush()


class AsyncClient:
    """smtp_client.Client for asyncio: configure once; each `send()` opens a fresh
    connection, sends, quits and closes. Sends on one client run one at a time (they share
    its buffers); use one client per concurrent connection."""

    allow_plaintext_auth = False

    def __init__(
        self,
        host,
        port=None,
        *,
        username=None,
        password=None,
        from_addr=None,
        auth="auto",
        tls="starttls",
        context=None,
        local_hostname=None,
        timeout=30,
        bufsize=512,
        pool=None,
        allow_plaintext_auth=False,
    ):
        # smtp_client.Client checks every argument the same way: build one, keep its values.
        ref = sc.Client(
            host, port, username=username, password=password, from_addr=from_addr,
            auth=auth, tls=tls, context=context, local_hostname=local_hostname,
            timeout=timeout, bufsize=bufsize, pool=pool,
            allow_plaintext_auth=allow_plaintext_auth,
        )
        if tls == "starttls" and _MPY:
            raise SMTPNotSupportedError(
                "tls='starttls' is not possible with MicroPython's asyncio (it cannot "
                "upgrade an open stream to TLS); use tls='implicit' (port 465)"
            )
        for name in ("host", "port", "username", "password", "from_addr", "auth", "tls",
                     "context", "local_hostname", "timeout", "pool"):
            setattr(self, name, getattr(ref, name))
        if allow_plaintext_auth:
            self.allow_plaintext_auth = True
        self._sender = ref._sender
        self._lock = asyncio.Lock()

    async def send(self, to_addrs, msg, *, from_addr=None):
        """Send one mail over a fresh connection; return a SendResult, or raise the
        classified exception (as smtp_client.Client.send)."""
        mail = sc._Mail(self._sender(from_addr), to_addrs, msg, (), (), {})
        await self._run([mail])
        if mail.error is not None:
            raise mail.error
        return SendResult(mail.refused)

    async def send_many(self, mails):
        """Send (to_addrs, msg[, from_addr]) tuples over one fresh connection; return one
        SendResult per mail, in order. Errors before the first mail are raised."""
        batch = [
            sc._Mail(self._sender(m[2] if len(m) > 2 else None), m[0], m[1], (), (), {})
            for m in mails
        ]
        await self._run(batch)
        return [SendResult(m.refused, m.error) for m in batch]

    async def _run(self, mails):
        async with self._lock:
            s = _Session(self)
            try:
                await s.open()
                await s.batch(mails)
            finally:
                s.close()
