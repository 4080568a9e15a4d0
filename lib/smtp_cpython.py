# SPDX-License-Identifier: MIT
"""smtp_cpython: smtp_client's sockets on CPython and CircuitPython.

smtp_client imports this module itself when it connects on those runtimes; MicroPython never
loads it. CPython: a blocking socket with a timeout per call, recv_into and send, TLS through
the ssl module with a bounded handshake. CircuitPython (`socket_pool=`, Adafruit style):
`recv_into` returns what is there, `send` may write less than asked, a timeout is
OSError(ETIMEDOUT), there is no select, and ssl cannot wrap a connected socket (implicit TLS
only: the socket is wrapped before connect).
"""

import select
import sys

import smtp_client as sc
from smtp_client import (SMTPException, SMTPNotSupportedError, SMTPServerDisconnected,
                         SMTPTimeoutError, SMTPTLSError)

# What a socketpool socket raises when nothing came in time: EAGAIN (a zero timeout, or
# mbedTLS's WANT_READ) and ETIMEDOUT, which is 110 or 116 depending on the port's libc.
_WAIT_ERRNOS = (11, 110, 116)


def open(s, host, port):  # noqa: A001  # smtp_client calls smtp_cpython.open(session, ...)
    """Connect session `s` (an smtp_client.SMTP) and set its transport; implicit TLS runs
    its handshake here."""
    if s.socket_pool is not None:
        _open_pool(s, host, port)
        return
    socket = sc.socket
    deadline = sc._deadline(s.ms)
    err = OSError("no address for " + host)
    for af, kind, proto, _, addr in socket.getaddrinfo(host, port, 0, socket.SOCK_STREAM):
        sock = socket.socket(af, kind, proto)
        try:
            sock.settimeout(max(sc._left(deadline), 1) / 1000)
            if s.source_address is not None:
                sock.bind(s.source_address)
            sock.connect(addr)
            break
        except OSError as e:
            err = e
            sock.close()
    else:
        raise err
    _nodelay(sock)
    s.sock = sock
    s._io = Io(sock)
    if s._implicit:
        wrap(s, s.context)


def _nodelay(sock):
    # Flights are single writes anyway; NODELAY also removes the Nagle + delayed-ACK stall
    # where a flight follows a large body write.
    try:
        sock.setsockopt(6, 1, 1)  # IPPROTO_TCP, TCP_NODELAY
    except (OSError, AttributeError, TypeError):
        pass


def wrap(s, context):
    """TLS on s.sock; the handshake runs non-blocking, so a server that drips bytes cannot
    hold it past the session's timeout."""
    import ssl

    if context is None:
        context = create_context()
    sock = s.sock
    deadline = sc._deadline(s.ms)
    try:
        tls = context.wrap_socket(sock, server_hostname=s._host, do_handshake_on_connect=False)
        tls.setblocking(False)
        while True:
            try:
                tls.do_handshake()
                break
            except ssl.SSLWantReadError:
                r, w = [tls], []
            except ssl.SSLWantWriteError:
                r, w = [], [tls]
            ms = sc._left(deadline)
            if ms <= 0 or not any(select.select(r, w, [], ms / 1000)):
                raise SMTPTimeoutError("TLS handshake timed out")
    except (ssl.SSLError, ssl.CertificateError, ValueError) as e:
        raise SMTPTLSError("TLS handshake with %s failed: %r" % (s._host, e))
    except OSError as e:
        if isinstance(e, SMTPTimeoutError):
            raise
        raise SMTPServerDisconnected("TLS handshake with %s broke: %r" % (s._host, e))
    tls.setblocking(True)
    s.sock = tls
    s._io = Io(tls)
    s._tls = True


def create_context(cadata=None, verify=True):
    """smtp_client.create_context on CPython and CircuitPython."""
    import ssl

    if isinstance(cadata, str) and not cadata.lstrip().startswith("-----BEGIN"):
        raise TypeError("cadata: the certificate's DER bytes or PEM text, not a path "
                        "(open(path, 'rb').read())")
    cas = cadata if isinstance(cadata, (list, tuple)) else () if cadata is None else (cadata,)
    if sys.implementation.name == "circuitpython":
        ctx = cp_context(ssl, cas, verify)
    elif verify:
        if cas:  # CPython reads concatenated DER certificates (or PEM text)
            cadata = ("" if isinstance(cas[0], str) else b"").join(cas)
        ctx = ssl.create_default_context(cadata=cadata)
    else:
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
    if not verify:
        print("smtp_client: WARNING: TLS certificate verification is OFF")
    return ctx


def cp_context(ssl, cas, verify):
    # CircuitPython's ssl: create_default_context() trusts the firmware's root bundle; its
    # load_verify_locations(cadata=) takes PEM text and replaces that bundle. A bare
    # SSLContext() has no CA at all, which means no verification.
    if not verify:
        return ssl.SSLContext()
    ctx = ssl.create_default_context()
    if cas:
        ctx.load_verify_locations(cadata="".join(c if isinstance(c, str) else pem(c) for c in cas))
    return ctx


def pem(der):
    """A DER certificate as PEM text (RFC 7468: base64 in lines of 64)."""
    import binascii

    b64 = binascii.b2a_base64(der).strip().decode()
    lines = [b64[i : i + 64] for i in range(0, len(b64), 64)]
    return "-----BEGIN CERTIFICATE-----\n%s\n-----END CERTIFICATE-----\n" % "\n".join(lines)


class Io:
    """CPython: blocking socket, a timeout per call; the same interface as smtp_client._Io
    (readinto(buf, deadline), ready(), write(buf, off, n, ms), close())."""

    early = b""  # a byte ready() had to read ahead on a TLS socket

    def __init__(self, sock):
        self.sock = sock

    def _timeout(self, deadline):
        ms = sc._left(deadline)
        if ms <= 0:
            raise SMTPTimeoutError("timed out")
        # timeout=None (the session's longest wait, 6 days): a blocking socket, as smtplib
        # leaves it.
        self.sock.settimeout(None if ms > 1 << 28 else ms / 1000)

    def readinto(self, buf, deadline):
        if self.early:
            buf[0] = self.early[0]
            self.early = b""
            return 1
        self._timeout(deadline)
        try:
            return self.sock.recv_into(buf)
        except TimeoutError:
            raise SMTPTimeoutError("timed out")

    def ready(self):
        sock = self.sock
        pending = getattr(sock, "pending", None)
        if self.early or (pending and pending()):
            return True
        if not select.select([sock], [], [], 0)[0]:
            return False
        if pending is None:
            return True
        # RFC 8446 4.6.1: a TLS 1.3 server sends NewSessionTicket after the handshake; it
        # makes the socket readable but carries no data. Read without waiting to tell the
        # two apart, and keep a real byte for readinto.
        import ssl

        sock.settimeout(0)
        try:
            self.early = sock.recv(1)
        except ssl.SSLWantReadError:
            return False  # only TLS records without data
        except OSError:
            return True  # reset or broken: the read that follows reports it
        return True

    def write(self, buf, off, n, ms):
        # send() in parts with a fresh timeout for each: a deadline bounds a wait without
        # progress, not the whole body (sendall's timeout is for all of it).
        view = memoryview(buf)
        end = off + n
        while off < end:
            self._timeout(sc._deadline(ms))
            try:
                off += self.sock.send(view[off:end])
            except TimeoutError:
                raise SMTPTimeoutError("timed out")

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass


def _open_pool(s, host, port):
    # CircuitPython's ssl cannot wrap a connected socket: for implicit TLS the socket is
    # wrapped first and the handshake runs inside connect(). Its errors are OSErrors with
    # negative (mbedTLS) numbers, or ValueError; TCP errors have positive ones.
    pool = s.socket_pool
    af, kind, proto, _, addr = pool.getaddrinfo(host, port, 0, pool.SOCK_STREAM)[0]
    sock = pool.socket(af, kind, proto)
    try:
        sock.settimeout(s.timeout)
        if s.source_address is not None:
            sock.bind(s.source_address)
        if s._implicit:
            ctx = s.context or sc.create_context()
            sock = ctx.wrap_socket(sock, server_hostname=host)
        sock.connect(addr)
    except (OSError, ValueError) as e:
        sock.close()
        if s._implicit and (isinstance(e, ValueError) or (e.errno or 0) < 0):
            raise SMTPTLSError("TLS handshake with %s failed: %r" % (host, e))
        raise
    _nodelay(sock)
    s.sock = sock
    s._io = PoolIo(sock)
    s._tls = s._implicit


class PoolIo(Io):
    """Sockets from a `socket_pool`: short reads, short sends, OSError(ETIMEDOUT), no
    select (a read with a zero timeout tells whether a byte waits)."""

    eof = False  # ready() saw the connection close

    def __init__(self, sock):
        self.sock = sock
        self.one = bytearray(1)  # early: ready() read this byte ahead

    def readinto(self, buf, deadline):
        if self.early:
            self.early = b""
            buf[0] = self.one[0]
            return 1
        if self.eof:
            return 0
        self._timeout(deadline)
        try:
            return self.sock.recv_into(buf)
        except OSError as ex:
            if ex.errno in _WAIT_ERRNOS or sc._left(deadline) <= 0:
                raise SMTPTimeoutError("timed out")
            raise

    def ready(self):
        if self.early or self.eof:
            return True
        sock = self.sock
        sock.settimeout(0)
        try:
            n = sock.recv_into(self.one, 1)
        except OSError as ex:
            # EAGAIN: nothing waiting. Anything else (ENOTCONN: closed) is reported by the
            # read that follows.
            return ex.errno not in _WAIT_ERRNOS
        if n:
            self.early = self.one
        else:
            self.eof = True
        return True

    def write(self, buf, off, n, ms):
        sock = self.sock
        view = memoryview(buf)
        end = off + n
        deadline = sc._deadline(ms)
        while off < end:
            self._timeout(deadline)
            try:
                k = sock.send(view[off:end])
            except OSError as ex:
                if ex.errno in _WAIT_ERRNOS:
                    continue  # the deadline check above ends this
                raise
            off += k
            deadline = sc._deadline(ms)


# ----- smtp_async's driver on CPython (asyncio streams)


def wait_for_ms(aw, ms):
    """MicroPython's asyncio.wait_for_ms."""
    import asyncio

    return asyncio.wait_for(aw, ms / 1000)


async def open_stream(d, host, port):
    """The driver's reader and writer; implicit TLS (RFC 8314 3.3) is part of the connection,
    which needs no StreamWriter.start_tls (CPython 3.11)."""
    import asyncio

    ctx = (d.context or sc.create_context()) if d._implicit else None
    try:
        rw = await d._wait(asyncio.open_connection(host, port, ssl=ctx), d.ms)
    except SMTPException:  # its timeout
        raise
    except (OSError, ValueError) as ex:
        if ctx is None:
            raise
        d._tls_failed(ex)
    d._tls = ctx is not None
    return rw


async def stream_read(r, v, now):
    """Read into v from StreamReader r (no readinto: one bytes object a read); `now`: only
    what it holds already (None when it holds nothing)."""
    import asyncio

    if now:
        await asyncio.sleep(0)  # let the loop move what arrived into the reader
        if not getattr(r, "_buffer", None) and not r.at_eof():
            return None
    data = await r.read(len(v))
    v[: len(data)] = data
    return len(data)


async def start_tls(d, ctx):
    """STARTTLS on the driver's stream: StreamWriter.start_tls, CPython 3.11 and later."""
    if not hasattr(d.w, "start_tls"):
        raise SMTPNotSupportedError("STARTTLS with asyncio needs CPython 3.11 or later")
    try:
        await d._wait(d.w.start_tls(ctx, server_hostname=d._host), d.ms)
    except SMTPException:  # its timeout
        raise
    except (OSError, ValueError) as ex:
        d._tls_failed(ex)
