# SPDX-License-Identifier: MIT
"""CircuitPython's `socketpool` and `ssl`, as far as smtp_client uses them, on CPython.

    import cpadapter
    pool = cpadapter.SocketPool(max_recv=7, max_send=5)      # like socketpool.SocketPool(radio)
    ctx = cpadapter.ssl.create_default_context()             # like CircuitPython's ssl
    ctx.load_verify_locations(cadata=PEM_TEXT)               # PEM str only, one trust set
    s = smtp_client.SMTP_SSL(host, 465, socket_pool=pool, ssl_context=ctx)

What the adapter imitates (shared-bindings/socketpool/Socket.c, ports/espressif/common-hal/
socketpool/Socket.c and shared-module/ssl/SSLSocket.c in CircuitPython 9/10):
- `recv_into(buf[, nbytes])` returns what is there, often fewer bytes than asked (here: a
  seeded random 1..max_recv), 0 at EOF with a timeout set;
- `send(buf)` may write fewer bytes than given (here 1..max_send) and returns the count;
  SSLSocket has no `sendall`;
- `settimeout(0)`: a read with nothing waiting raises OSError(EAGAIN); at EOF it raises
  OSError(ENOTCONN); `settimeout(t)`: a read that waits t raises OSError(ETIMEDOUT) (110 on
  the plain socket, 116 as esp-idf's newlib numbers it on the TLS socket), never
  socket.timeout;
- no `select`, `makefile`, `recv`, `getsockname`, `readinto`, `write`, `fileno`;
- `SSLContext.wrap_socket(sock, server_hostname=)` wraps a socket that is NOT connected; the
  handshake runs in `connect()`; a failed verification is OSError(-9984, "X509 - Certificate
  verification failed ..."), other handshake failures OSError(-29312) and the like (negative
  mbedTLS codes); wrapping a connected socket fails at `connect()` with EISCONN, as
  CircuitPython cannot take over a connected socket;
- `create_default_context()` trusts a root bundle (here the system's), a bare `SSLContext()`
  verifies nothing, `load_verify_locations(cadata=)` takes one PEM string and replaces the
  bundle.
"""

import errno
import random
import socket as _socket
import ssl as _ssl
import types

_ETIMEDOUT_TLS = 116  # esp-idf newlib's ETIMEDOUT, as the TLS socket passes it up
_X509_VERIFY_FAILED = -0x2700  # MBEDTLS_ERR_X509_CERT_VERIFY_FAILED
_SSL_CONN_EOF = -0x7280  # MBEDTLS_ERR_SSL_CONN_EOF


class SocketPool:
    AF_INET = _socket.AF_INET
    SOCK_STREAM = _socket.SOCK_STREAM
    IPPROTO_TCP = 6
    TCP_NODELAY = 1
    EAI_NONAME = -2

    class gaierror(OSError):
        pass

    def __init__(self, radio=None, *, max_recv=7, max_send=5, seed=1):
        self.max_recv = max_recv
        self.max_send = max_send
        self.random = random.Random(seed)
        self.sockets = []  # every socket made, for the tests to inspect
        self.calls = []  # (method, size asked, size done) of every recv_into/send

    def getaddrinfo(self, host, port, family=0, type=0, proto=0, flags=0):
        # CircuitPython resolves to one IPv4 address.
        try:
            addr = _socket.getaddrinfo(host, port, _socket.AF_INET, _socket.SOCK_STREAM)[0][4]
        except _socket.gaierror as e:
            raise self.gaierror(self.EAI_NONAME, str(e)) from None
        return [(self.AF_INET, self.SOCK_STREAM, self.IPPROTO_TCP, "", addr)]

    def socket(self, family=AF_INET, type=SOCK_STREAM, proto=IPPROTO_TCP):
        s = Socket(self, _socket.socket(family, type, proto))
        self.sockets.append(s)
        return s


class Socket:
    type = SocketPool.SOCK_STREAM

    def __init__(self, pool, sock):
        self._pool = pool
        self._s = sock
        self._timeout = None
        self.connected = False
        self.closed = False
        self.options = []

    def settimeout(self, value):
        self._timeout = value

    def setblocking(self, flag):
        self._timeout = None if flag else 0

    def setsockopt(self, level, optname, value):
        self.options.append((level, optname, value))
        self._s.setsockopt(level, optname, value)

    def bind(self, address):
        self._s.bind(address)

    def connect(self, address):
        if self.connected:
            raise OSError(errno.EISCONN, "already connected")
        self._s.settimeout(self._timeout)
        try:
            self._s.connect(address)
        except _socket.timeout:
            raise OSError(errno.ETIMEDOUT, "connect timed out") from None
        self.connected = True

    def _ready(self):
        if self.closed:
            raise OSError(errno.EBADF, "closed")

    def recv_into(self, buffer, nbytes=0):
        self._ready()
        n = len(buffer) if nbytes <= 0 else min(nbytes, len(buffer))
        if n == 0:
            return 0
        k = min(n, self._pool.random.randint(1, self._pool.max_recv))
        self._s.settimeout(self._timeout)
        try:
            got = self._s.recv_into(memoryview(buffer)[:k])
        except BlockingIOError:
            raise OSError(errno.EAGAIN, "EAGAIN") from None
        except _socket.timeout:
            raise OSError(errno.ETIMEDOUT, "ETIMEDOUT") from None
        if got == 0 and self._timeout == 0:
            self.connected = False
            raise OSError(errno.ENOTCONN, "ENOTCONN")
        self._pool.calls.append(("recv_into", n, got))
        return got

    def send(self, data):
        self._ready()
        if not self.connected:
            raise BrokenPipeError()
        data = memoryview(data)
        k = min(len(data), self._pool.random.randint(1, self._pool.max_send))
        self._s.settimeout(self._timeout)
        try:
            sent = self._s.send(data[:k])
        except BlockingIOError:
            raise OSError(errno.EAGAIN, "EAGAIN") from None
        except _socket.timeout:
            raise OSError(errno.ETIMEDOUT, "ETIMEDOUT") from None
        self._pool.calls.append(("send", len(data), sent))
        return sent

    def close(self):
        self.closed = True
        self._s.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


class SSLContext:
    """CircuitPython's ssl.SSLContext. A bare one has no CA: it verifies nothing."""

    def __init__(self):
        self._cadata = None
        self._bundle = False
        self.check_hostname = True

    def load_verify_locations(self, cafile=None, capath=None, cadata=None):
        if cafile is not None or capath is not None:
            raise NotImplementedError("cafile" if cafile is not None else "capath")
        if not isinstance(cadata, str):
            raise TypeError("can't convert %s to str" % type(cadata).__name__)
        self._cadata = cadata  # replaces the bundle
        self._bundle = False

    def set_default_verify_paths(self):
        self._bundle = True

    def wrap_socket(self, sock, *, server_side=False, server_hostname=None):
        if getattr(sock, "type", None) != SocketPool.SOCK_STREAM:
            raise RuntimeError("Invalid socket for TLS")
        return SSLSocket(self, sock, server_hostname)

    def _cpython_context(self):
        ctx = _ssl.SSLContext(_ssl.PROTOCOL_TLS_CLIENT)
        if self._cadata is not None:
            ctx.load_verify_locations(cadata=self._cadata)
        elif self._bundle:
            ctx.load_default_certs()
        else:
            ctx.check_hostname = False
            ctx.verify_mode = _ssl.CERT_NONE
            return ctx
        ctx.check_hostname = self.check_hostname
        return ctx


def create_default_context():
    ctx = SSLContext()
    ctx.set_default_verify_paths()
    return ctx


class SSLSocket:
    """Handshake in connect(); recv_into/send as short as the plain socket's."""

    def __init__(self, context, sock, server_hostname):
        self._ctx = context
        self._sock = sock
        self._hostname = server_hostname
        self._tls = None
        self.closed = False

    @property
    def type(self):
        return self._sock.type

    def settimeout(self, value):
        self._sock.settimeout(value)

    def setblocking(self, flag):
        self._sock.setblocking(flag)

    def setsockopt(self, level, optname, value):
        self._sock.setsockopt(level, optname, value)

    def bind(self, address):
        self._sock.bind(address)

    def connect(self, address):
        # CircuitPython: the wrapped socket's connect(), then the mbedTLS handshake.
        self._sock.connect(address)
        raw = self._sock._s
        raw.settimeout(self._sock._timeout)
        try:
            self._tls = self._ctx._cpython_context().wrap_socket(
                raw, server_hostname=self._hostname)
        except _ssl.SSLCertVerificationError as e:
            raise OSError(_X509_VERIFY_FAILED,
                          "X509 - Certificate verification failed, e.g. CRL, CA or signature "
                          "check failed; " + str(e.verify_message)) from None
        except (_ssl.SSLError, ConnectionError) as e:
            raise OSError(_SSL_CONN_EOF, "SSL - %s" % e) from None
        except _socket.timeout:
            raise OSError(errno.ETIMEDOUT, "ETIMEDOUT") from None

    def _ready(self):
        if self.closed or self._tls is None:
            raise OSError(errno.EBADF, "closed")

    def recv_into(self, buffer, nbytes=0):
        self._ready()
        pool = self._sock._pool
        n = len(buffer) if nbytes <= 0 else min(nbytes, len(buffer))
        if n == 0:
            return 0
        k = min(n, pool.random.randint(1, pool.max_recv))
        timeout = self._sock._timeout
        self._tls.settimeout(timeout)
        try:
            got = self._tls.recv_into(memoryview(buffer)[:k], k)
        except (_ssl.SSLWantReadError, BlockingIOError):
            raise OSError(errno.EAGAIN, "EAGAIN") from None  # MP_EWOULDBLOCK
        except _socket.timeout:
            raise OSError(_ETIMEDOUT_TLS, "ETIMEDOUT") from None
        except _ssl.SSLError as e:
            raise OSError(_SSL_CONN_EOF, "SSL - %s" % e) from None
        pool.calls.append(("recv_into", n, got))
        return got

    def send(self, data):
        self._ready()
        pool = self._sock._pool
        data = memoryview(data)
        k = min(len(data), pool.random.randint(1, pool.max_send))
        self._tls.settimeout(self._sock._timeout)
        try:
            sent = self._tls.send(data[:k])
        except (_ssl.SSLWantWriteError, BlockingIOError):
            raise OSError(errno.EAGAIN, "EAGAIN") from None
        except _socket.timeout:
            raise OSError(_ETIMEDOUT_TLS, "ETIMEDOUT") from None
        pool.calls.append(("send", len(data), sent))
        return sent

    def close(self):
        if not self.closed:
            self.closed = True
            self._sock.close()


# `import cpadapter; cpadapter.ssl.create_default_context()` reads like CircuitPython code.
ssl = types.SimpleNamespace(SSLContext=SSLContext, create_default_context=create_default_context)
