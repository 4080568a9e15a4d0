# SPDX-License-Identifier: MIT
"""smtp_client: a memory-frugal SMTP client for MicroPython, CircuitPython and CPython.

One protocol engine (`Engine`) owns two preallocated buffers and never touches a socket;
the blocking drivers `SMTP`, `SMTP_SSL` and the per-mail `Client` move bytes between a
transport and those buffers. The smtplib names, signatures and exceptions are kept.
"""

from micropython import const
import sys
import time

try:
    import socket
except ImportError:  # CircuitPython has no socket module: pass socket_pool= (Adafruit style)
    socket = None  # type: ignore[assignment]

__version__ = "0.1.0"

_MPY = sys.implementation.name == "micropython"

_CR = const(13)
_LF = const(10)
_DOT = const(46)
_SP = const(32)
_DASH = const(45)
_CRLF = const(b"\r\n")

# Capability bits, parsed once per EHLO (RFC 5321 4.1.1.1).
_STARTTLS = const(1)
_PIPELINING = const(2)
_CHUNKING = const(4)
_8BITMIME = const(8)
_SMTPUTF8 = const(16)
_DSN = const(32)
_ENHANCED = const(64)
_SIZE = const(128)
_AUTH = const(256)
_REQUIRETLS = const(512)
_CAP_NAMES = (
    (b"STARTTLS", _STARTTLS),
    (b"PIPELINING", _PIPELINING),
    (b"CHUNKING", _CHUNKING),
    (b"8BITMIME", _8BITMIME),
    (b"SMTPUTF8", _SMTPUTF8),
    (b"DSN", _DSN),
    (b"ENHANCEDSTATUSCODES", _ENHANCED),
    (b"SIZE", _SIZE),
    (b"AUTH", _AUTH),
    (b"REQUIRETLS", _REQUIRETLS),
)

# AUTH mechanisms in order of preference for login(): the strongest first. XOAUTH2 is
# only used when asked for, because its "password" is a token.
_MECHANISMS = ("CRAM-MD5", "PLAIN", "LOGIN")
_AUTH_ROUNDS = const(5)  # RFC 4954 4: a bound on 334 challenges keeps a hostile server finite
_REPLY_LINES = const(64)  # lines of reply text kept (EHLO, errors): real servers send < 20

# What a queued reply answers (the transaction engine's expectations).
_X_RSET = const(0)
_X_MAIL = const(1)
_X_RCPT = const(2)
_X_DATA = const(3)
_X_BDAT = const(4)
_X_END = const(5)  # the end of data, or BDAT LAST
_X_QUIT = const(6)
_ENDED = const(1)  # a mail's end of data went out: its transaction is over either way
_ACCEPTED = const(2)  # the server answered 250 to it

# Room kept in tx before a BDAT chunk for "BDAT <n> LAST" CRLF (RFC 3030 2).
_BDAT_ROOM = const(24)

SMTP_PORT = const(25)
SUBMISSION_PORT = const(587)
SMTP_SSL_PORT = const(465)


# ---------------------------------------------------------------------------- exceptions


class SMTPException(OSError):
    """Base class of every error this module raises (smtplib's hierarchy)."""


class SMTPNotSupportedError(SMTPException):
    """The command or option is not supported by the server (or by this runtime)."""


class SMTPServerDisconnected(SMTPException):
    """The connection broke: closed by the server, reset, or not connected."""


class SMTPTimeoutError(SMTPServerDisconnected):
    """The server did not answer within the deadline; the connection was closed."""


class SMTPProtocolError(SMTPException):
    """The server broke the protocol: malformed, overlong, inconsistent or unsolicited replies."""


class SMTPTLSError(SMTPException):
    """The TLS handshake failed (certificate not trusted, wrong host name, no common cipher)."""


class SMTPResponseException(SMTPException):
    """The server replied with an error code.

    `smtp_code` is the int code, `smtp_error` the reply text (bytes), `enhanced` the
    RFC 3463 status code ("5.1.1") when the server sent one. `transient` is True for 4xx
    replies (try again later), `permanent` for 5xx (don't retry as is).
    """

    def __init__(self, code, msg):
        self.smtp_code = code
        self.smtp_error = msg
        self.enhanced = _enhanced(code, msg)
        self.args = (code, msg)

    @property
    def transient(self):
        return 400 <= self.smtp_code < 500

    @property
    def permanent(self):
        return self.smtp_code >= 500


class SMTPSenderRefused(SMTPResponseException):
    """MAIL FROM was refused; `sender` is the address."""

    def __init__(self, code, msg, sender):
        super().__init__(code, msg)
        self.sender = sender
        self.args = (code, msg, sender)


class SMTPRecipientsRefused(SMTPException):
    """Every recipient was refused; `recipients` maps address -> (code, msg)."""

    def __init__(self, recipients):
        self.recipients = recipients
        self.args = (recipients,)

    @property
    def transient(self):
        """True when every refusal was 4xx: the same mail may succeed later."""
        return all(400 <= c < 500 for c, _ in self.recipients.values())

    @property
    def permanent(self):
        return not self.transient


class SMTPDataError(SMTPResponseException):
    """DATA or the end of the message was refused."""


class SMTPConnectError(SMTPResponseException):
    """The greeting was not 220."""


class SMTPHeloError(SMTPResponseException):
    """EHLO and HELO were refused."""


class SMTPAuthenticationError(SMTPResponseException):
    """Authentication failed (535, 534, 454, ...)."""


class _Stop(Exception):
    """Private: ends a message body early (a refused BDAT chunk in lock-step)."""


def _enhanced(code, msg):
    # RFC 2034 / RFC 3463 2: "class.subject.detail" at the start of the text, the class digit
    # matching the reply's first digit. Only runs on error paths.
    if not isinstance(msg, (bytes, bytearray)) or len(msg) < 5:
        return None
    end = msg.find(b" ")
    word = msg[: end if end >= 0 else len(msg)]
    parts = word.split(b".")
    # RFC 3463 2: class = "2" / "4" / "5", one digit ("55.1.1" is no status code).
    if len(parts) != 3 or len(parts[0]) != 1 or word[0] - 48 != code // 100:
        return None
    for part in parts:
        if not 1 <= len(part) <= 3 or not part.isdigit():
            return None
    return word.decode()


# -------------------------------------------------------------------------------- engine


def _copy(dst, d, src, s, n):
    # Copy src[s:s+n] to dst[d:]. MicroPython allocates a new object for every slice or
    # memoryview slice, so its copy is a byte loop; CPython slices are cheap and fast.
    if _MPY:
        for k in range(n):
            dst[d + k] = src[s + k]
    else:
        dst[d : d + n] = src[s : s + n]


class Pool:
    """The preallocated buffers one session uses; pass one to several sessions to share it.

    `rx` holds server replies, `tx` what goes out, `chunk` file reads of the body.
    `bufsize` is the longest reply line accepted and the size of each write.
    """

    def __init__(self, bufsize=512):
        # RFC 5321 4.5.3.1.5: a reply line may be 512 octets long, a command line too.
        if bufsize < 512:
            raise ValueError("bufsize must be at least 512")
        seg = bufsize // 8
        # rx is read at one of 9 fixed offsets (multiples of seg), so a partial line moved
        # just below one of them is continued in place without allocating a memoryview.
        self.rx = bytearray(bufsize + seg)
        mv = memoryview(self.rx)
        self.rxv = [mv[k * seg :] for k in range(9)]
        self.tx = bytearray(bufsize)
        self.chunk = bytearray(bufsize)
        self.seg = seg
        self.bufsize = bufsize


class Engine:
    """The SMTP protocol, without I/O: builds commands in `pool.tx`, parses replies in
    `pool.rx` in place, encodes the body, and validates input. Drivers do the I/O."""

    def __init__(self, pool):
        self.pool = pool
        self.rx = pool.rx
        self.tx = pool.tx
        self.reset()

    def reset(self):
        """Forget everything of the last connection (buffers are kept)."""
        self.rx_pos = 0  # first unparsed byte in rx
        self.rx_end = 0  # end of received bytes in rx
        self.tx_start = 0  # tx[tx_start:tx_len] is what goes out next
        self.tx_len = 0
        self.chunk_at = -1  # where the open BDAT chunk's data starts in tx, or -1
        self.pending = 0  # replies expected and not yet parsed
        self.code = 0  # code of the multi-line reply being parsed
        self.keep = False  # copy reply text out (public methods and errors)
        self.text = []
        self.caps = 0
        self.size_limit = 0
        self.auth = ()
        self.bol = True  # body encoder: at the beginning of a line
        self.cr = False  # body encoder: a CR was read and not written yet
        self.stuff = True  # body encoder: dot-stuff (DATA); BDAT needs none (RFC 3030 2)

    # ----- replies (RFC 5321 4.2)

    def rx_view(self):
        """Make room for more reply bytes; return the memoryview to read into."""
        pool = self.pool
        rx = self.rx
        p = self.rx_pos
        n = self.rx_end - p
        if n >= pool.bufsize:
            raise SMTPProtocolError("reply line longer than %d bytes" % pool.bufsize)
        seg = pool.seg
        k = (n + seg - 1) // seg
        d = k * seg - n
        if d < p:
            for i in range(n):
                rx[d + i] = rx[p + i]
        elif d > p:
            for i in range(n - 1, -1, -1):
                rx[d + i] = rx[p + i]
        self.rx_pos = d
        self.rx_end = k * seg
        return pool.rxv[k]

    def received(self, n):
        self.rx_end += n

    def parse(self):
        """Parse complete lines received so far; return the code of a complete reply, or 0
        when more bytes are needed. Allocates nothing unless reply text is kept."""
        rx = self.rx
        p = self.rx_pos
        end = self.rx_end
        while True:
            lf = rx.find(b"\n", p, end)
            if lf < 0:
                self.rx_pos = p
                return 0
            e = lf
            if e > p and rx[e - 1] == _CR:
                e -= 1
            # Reply-code = %x32-35 %x30-35 %x30-39, then SP, "-" or the end of the line.
            if e - p < 3:
                raise SMTPProtocolError("malformed reply line")
            d0 = rx[p] - 48
            d1 = rx[p + 1] - 48
            d2 = rx[p + 2] - 48
            if not (2 <= d0 <= 5 and 0 <= d1 <= 5 and 0 <= d2 <= 9):
                raise SMTPProtocolError("malformed reply code")
            sep = rx[p + 3] if e > p + 3 else _SP
            if sep != _SP and sep != _DASH:
                raise SMTPProtocolError("malformed reply code")
            code = d0 * 100 + d1 * 10 + d2
            if self.code and code != self.code:
                raise SMTPProtocolError("multi-line reply changed its code")
            if self.pending <= 0:
                raise SMTPProtocolError("unsolicited reply")
            self.code = code
            if self.keep or code >= 400:
                # RFC 5321 4.2 sets no line count: bound the kept text, so an endless
                # multi-line reply is a protocol error, not a MemoryError on a device.
                if len(self.text) >= _REPLY_LINES:
                    raise SMTPProtocolError("reply longer than %d lines" % _REPLY_LINES)
                self.text.append(bytes(rx[p + 4 : e]) if e > p + 4 else b"")
            p = lf + 1
            if sep == _DASH:
                continue
            self.rx_pos = p
            self.code = 0
            self.pending -= 1
            # Bytes beyond the last expected reply stay in rx: the driver rejects them before
            # its next command (RFC 5321 4.2: one reply per command), so a reply that was
            # complete, such as the 250 that accepted a mail, still counts.
            return code

    def take_text(self):
        """The text of the last reply, lines joined by "\\n" (smtplib's shape)."""
        if not self.text:
            return b""  # no text kept: allocate nothing
        t = b"\n".join(self.text)
        self.text = []
        return t

    # ----- commands (RFC 5321 4.1)

    def room(self):
        return len(self.tx) - self.tx_len

    def put(self, data):
        """Append bytes or ASCII text to tx."""
        if isinstance(data, str):
            data = data.encode()
        p = self.tx_len
        n = len(data)
        if p + n > len(self.tx):
            raise ValueError("command longer than the buffer")
        self.tx[p : p + n] = data
        self.tx_len = p + n

    def command(self, verb, arg=None):
        """Queue one command line; each queued command expects one reply (RFC 2920 3.1)."""
        self.put(verb)
        if arg:
            self.put(b" ")
            self.put(arg)
        self.put(_CRLF)
        self.pending += 1

    def path_command(self, verb, addr, options):
        """MAIL FROM:<addr> / RCPT TO:<addr> with ESMTP parameters (RFC 5321 4.1.1.2-3)."""
        self.put(verb)
        self.put(b"<")
        self.put(addr)
        self.put(b">")
        for opt in options:
            self.put(b" ")
            self.put(opt)
        self.put(_CRLF)
        self.pending += 1

    # ----- capabilities (RFC 5321 4.1.1.1, RFC 1870, RFC 4954)

    def set_capabilities(self, lines):
        """Parse EHLO reply lines (all but the first name the extensions)."""
        caps = 0
        self.size_limit = 0
        self.auth = ()
        for line in lines[1:]:
            word = line.split(None, 1)
            if not word:
                continue
            key = word[0].upper()
            for name, bit in _CAP_NAMES:
                if key == name:
                    caps |= bit
            if key == b"SIZE" and len(word) > 1 and word[1].strip().isdigit():
                self.size_limit = int(word[1])
            elif key == b"AUTH" and len(word) > 1:
                self.auth = tuple(m.decode() for m in word[1].upper().split())
        self.caps = caps

    # ----- body (RFC 5321 4.1.1.4, 4.5.2, 2.3.8)

    def clean(self, src, i, j):
        """True when src[i:j] can go out verbatim: lines end in CRLF, no line starts with
        ".", and the region continues the previous one cleanly. Four scans in C."""
        if self.cr or (self.stuff and self.bol and src[i] == _DOT):
            return False
        n = src.count(b"\n", i, j)
        return (
            src.count(b"\r", i, j) == n
            and src.count(_CRLF, i, j) == n
            and not (self.stuff and src.find(b"\n.", i, j) >= 0)
        )

    def passed(self, src, j):
        """Note that a clean region ending at src[j-1] went out verbatim."""
        self.bol = src[j - 1] == _LF

    def encode(self, src, i, j):
        """Encode src[i:j] into tx until it is consumed or tx is nearly full; return the
        new i. Bare CR and bare LF become CRLF (RFC 5321 2.3.8), a "." at the start of a
        line gets one more "." (RFC 5321 4.5.2); the line state carries across calls, so
        no split of the input can produce an early end of data (SMTP smuggling)."""
        tx = self.tx
        p = self.tx_len
        room = len(tx) - 3  # one input byte makes at most 3 output bytes (".", CR LF)
        while i < j and p < room:
            if self.cr:
                # The previous byte was CR: CRLF ends the line either way.
                tx[p] = _CR
                tx[p + 1] = _LF
                p += 2
                self.cr = False
                self.bol = True
                if src[i] == _LF:
                    i += 1
                continue
            if self.stuff and self.bol and src[i] == _DOT:
                tx[p] = _DOT
                p += 1
            self.bol = False
            lf = src.find(b"\n", i, j)
            stop = lf if lf >= 0 else j
            cr = src.find(b"\r", i, stop)
            if cr >= 0:
                stop = cr
            n = stop - i
            if n > room - p:
                # Out of room mid-line: copy what fits; the rest continues the same line.
                n = room - p
                _copy(tx, p, src, i, n)
                p += n
                i += n
                break
            _copy(tx, p, src, i, n)
            p += n
            i = stop
            if i < j:
                if src[i] == _LF:
                    tx[p] = _CR
                    tx[p + 1] = _LF
                    p += 2
                    self.bol = True
                else:
                    self.cr = True  # decided by the next byte: CRLF or a bare CR
                i += 1
        self.tx_len = p
        return i

    def finish(self):
        """Queue the end of data: close an open line, then "." CRLF (RFC 5321 4.1.1.4)."""
        self.end_line()
        self.put(b".\r\n")
        self.pending += 1

    def body_start(self, stuff=True):
        self.bol = True
        self.cr = False
        self.stuff = stuff

    def end_line(self):
        """Close an open last line: the message ends with CRLF (RFC 5321 2.3.8)."""
        if self.cr or not self.bol:
            self.put(_CRLF)
        self.cr = False
        self.bol = True

    def chunk_open(self):
        """Start a BDAT chunk: its data follows what tx holds, after room for its command."""
        self.chunk_at = self.tx_len + _BDAT_ROOM
        self.tx_len = self.chunk_at

    def chunk_close(self, last):
        """Write "BDAT <n> [LAST]" right before the chunk's data (RFC 3030 2: exactly n
        octets follow the command) and close the gap by moving the commands queued before
        it, so tx[tx_start:tx_len] is one contiguous flight."""
        tx = self.tx
        at = self.chunk_at
        n = self.tx_len - at
        p = at - 2
        tx[p] = _CR
        tx[p + 1] = _LF
        if last:
            p -= 5
            tx[p : p + 5] = b" LAST"
        while True:
            p -= 1
            tx[p] = 48 + n % 10
            n //= 10
            if not n:
                break
        p -= 5
        tx[p : p + 5] = b"BDAT "
        start = self.tx_start
        k = at - _BDAT_ROOM - start  # bytes of commands queued before the chunk
        for i in range(k - 1, -1, -1):
            tx[p - k + i] = tx[start + i]
        self.tx_start = p - k
        self.chunk_at = -1
        self.pending += 1

    # ----- AUTH (RFC 4954, RFC 4616, RFC 2195)

    @staticmethod
    def auth_plain(user, password):
        # RFC 4616 2: authzid NUL authcid NUL passwd, authzid empty.
        return b"\0" + _b(user) + b"\0" + _b(password)

    @staticmethod
    def auth_cram_md5(user, password, challenge):
        # RFC 2195 2: user SP hex(HMAC-MD5(password, challenge)); RFC 2104 HMAC by hand,
        # MicroPython has no hmac module.
        import hashlib

        key = _b(password)
        if len(key) > 64:
            key = hashlib.md5(key).digest()
        key = key + bytes(64 - len(key))
        inner = hashlib.md5(bytes(k ^ 0x36 for k in key))
        inner.update(challenge)
        outer = hashlib.md5(bytes(k ^ 0x5C for k in key))
        outer.update(inner.digest())
        return _b(user) + b" " + _hex(outer.digest())

    @staticmethod
    def auth_xoauth2(user, token):
        # Google's and Microsoft's XOAUTH2: user=U ^A auth=Bearer T ^A ^A.
        return b"user=" + _b(user) + b"\x01auth=Bearer " + _b(token) + b"\x01\x01"


def _b(s):
    if isinstance(s, str):
        return s.encode()
    return s if isinstance(s, bytes) else bytes(s)


def _hex(data):
    import binascii

    return binascii.hexlify(data)


def _b64(data):
    import binascii

    return binascii.b2a_base64(data)[:-1]


def _unb64(data):
    import binascii

    try:
        return binascii.a2b_base64(data)
    except ValueError:
        raise SMTPProtocolError("334 challenge is not base64")


def _check_text(value, what):
    # RFC 5321 2.3.8 / 4.1.2: CR, LF and NUL would end or corrupt the command line and let
    # a caller's data inject commands; refuse before a byte is sent.
    if isinstance(value, (bytes, bytearray)):
        bad = b"\r" in value or b"\n" in value or b"\0" in value
    elif isinstance(value, str):
        bad = "\r" in value or "\n" in value or "\0" in value
    else:
        raise TypeError("%s must be str or bytes" % what)
    if bad:
        raise ValueError("CR, LF or NUL in %s" % what)
    return value


def _check_addr(addr, what):
    _check_text(addr, what)
    # RFC 5321 4.1.2: the path is enclosed in <>; a bracket inside would smuggle parameters.
    a = _b(addr)
    if b"<" in a or b">" in a:
        raise ValueError("< or > in %s" % what)
    return a


def _addr_list(to_addrs):
    if isinstance(to_addrs, (str, bytes)):
        to_addrs = [to_addrs]
    to_addrs = list(to_addrs)
    if not to_addrs:
        raise ValueError("no recipients")
    return to_addrs


# ----------------------------------------------------------------------- I/O per runtime

if _MPY:

    def _now():
        return time.ticks_ms()

    def _left(deadline):
        return time.ticks_diff(deadline, time.ticks_ms())

    def _deadline(seconds):
        return time.ticks_add(time.ticks_ms(), int(seconds * 1000))

    def _after(ms):
        # For loops: a float timeout's seconds * 1000 allocates a float on every call.
        return time.ticks_add(time.ticks_ms(), ms)

else:
    # CPython and CircuitPython. monotonic_ns: CircuitPython's float monotonic() loses
    # millisecond resolution after about an hour of uptime.

    def _now():
        return time.monotonic_ns() // 1000000

    def _left(deadline):
        return deadline - time.monotonic_ns() // 1000000

    def _deadline(seconds):
        return time.monotonic_ns() // 1000000 + int(seconds * 1000)

    def _after(ms):
        return time.monotonic_ns() // 1000000 + ms


class _MpyTransport:
    """MicroPython: a blocking readinto waits for a FULL buffer, so the socket is made
    non-blocking and waits happen in select.poll().ipoll(), which allocates nothing after
    its first call."""

    def __init__(self, sock):
        import select

        self.sock = sock
        sock.setblocking(False)
        self.pin = select.poll()
        self.pin.register(sock, select.POLLIN)
        self.pout = select.poll()
        self.pout.register(sock, select.POLLOUT)

    def _wait(self, poll, deadline):
        ms = _left(deadline)
        if ms > 0:
            for _ in poll.ipoll(ms):
                return
        raise SMTPTimeoutError("timed out")

    def readinto(self, buf, deadline):
        while True:
            n = self.sock.readinto(buf)  # TLS may hold decrypted bytes: read before polling
            if n is not None:
                return n
            self._wait(self.pin, deadline)

    def ready(self):
        """Bytes waiting to be read right now (used to detect unsolicited data)."""
        for _ in self.pin.ipoll(0):  # type: ignore[attr-defined]  # MicroPython's poll
            return True
        return False

    def write(self, buf, off, n, deadline):
        sock = self.sock
        end = off + n
        while off < end:
            k = sock.write(buf, off, end - off)
            if k is None:
                self._wait(self.pout, deadline)
            else:
                off += k

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass


class _CpyTransport:
    """CPython: blocking socket with a timeout per call, recv_into and sendall."""

    early = b""  # a byte ready() had to read ahead on a TLS socket

    def __init__(self, sock):
        self.sock = sock

    def _timeout(self, deadline):
        ms = _left(deadline)
        if ms <= 0:
            raise SMTPTimeoutError("timed out")
        self.sock.settimeout(ms / 1000)

    def readinto(self, buf, deadline):
        if self.early:
            buf[0] = self.early[0]
            self.early = b""
            return 1
        self._timeout(deadline)
        try:
            return self.sock.recv_into(buf)
        except socket.timeout:  # type: ignore[attr-defined]  # this class is CPython's
            raise SMTPTimeoutError("timed out")

    def ready(self):
        import select

        sock = self.sock
        pending = getattr(sock, "pending", None)
        if self.early or (pending and pending()):
            return True
        if not select.select([sock], [], [], 0)[0]:  # type: ignore[attr-defined]  # CPython
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

    def write(self, buf, off, n, deadline):
        self._timeout(deadline)
        try:
            self.sock.sendall(memoryview(buf)[off : off + n])
        except socket.timeout:  # type: ignore[attr-defined]  # this class is CPython's
            raise SMTPTimeoutError("timed out")

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass


_Transport = _MpyTransport if _MPY else _CpyTransport

if not _MPY:  # MicroPython never builds this class (a smaller heap after import)
    # What a socketpool socket raises when nothing came in time: EAGAIN (a zero timeout, or
    # mbedTLS's WANT_READ) and ETIMEDOUT, which is 110 or 116 depending on the port's libc.
    _WAIT_ERRNOS = (11, 110, 116)

    class _PoolTransport(_CpyTransport):
        """Sockets from a `socket_pool` (CircuitPython's socketpool and ssl, Adafruit style):
        `recv_into` returns what is there (a short read), `send` may write less than asked,
        a timeout is OSError(ETIMEDOUT), and there is no select: a read with a zero timeout
        tells whether a byte waits. _timeout and close are _CpyTransport's."""

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
                if ex.errno in _WAIT_ERRNOS or _left(deadline) <= 0:
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
                # EAGAIN: nothing waiting. Anything else (ENOTCONN: closed) is reported by
                # the read that follows.
                return ex.errno not in _WAIT_ERRNOS
            if n:
                self.early = self.one
            else:
                self.eof = True
            return True

        def write(self, buf, off, n, deadline):
            sock = self.sock
            view = memoryview(buf)
            end = off + n
            while off < end:
                self._timeout(deadline)
                try:
                    k = sock.send(view[off:end])
                except OSError as ex:
                    if ex.errno in _WAIT_ERRNOS:
                        continue  # the deadline check above ends this
                    raise
                off += k


def create_context(cadata=None, *, verify=True):
    """An SSLContext for a client: certificates verified by default.

    `cadata`: a CA certificate in DER, or a list of them (a server's chain may end at any
    of several roots, e.g. certs/gts-root-r1.der and certs/gts-root-r4.der for Gmail).
    MicroPython needs DER; CPython also takes PEM text. `verify=False` turns verification
    off: anyone on the path can then read the password. It is never the default and it
    prints a warning."""
    cas = cadata if isinstance(cadata, (list, tuple)) else () if cadata is None else (cadata,)
    if _MPY:
        try:
            import tls
        except ImportError:  # before MicroPython 1.23
            import ssl as tls  # type: ignore[no-redef]
        ctx = tls.SSLContext(tls.PROTOCOL_TLS_CLIENT)
        # verify_mode: documented (library/ssl.html), missing from the ports' stubs.
        if verify:
            ctx.verify_mode = tls.CERT_REQUIRED  # type: ignore[attr-defined]
            for ca in cas:
                # tls.SSLContext takes the DER CA positionally (no keyword arguments);
                # each call adds one to the trusted set.
                ctx.load_verify_locations(ca)
        else:
            ctx.verify_mode = tls.CERT_NONE  # type: ignore[attr-defined]
    elif sys.implementation.name == "circuitpython":
        import ssl

        ctx = _cp_context(ssl, cas, verify)
    else:
        import ssl

        if verify:
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


def _cp_context(ssl, cas, verify):
    # CircuitPython's ssl: create_default_context() trusts the firmware's root bundle; its
    # load_verify_locations(cadata=) takes PEM text and replaces that bundle. A bare
    # SSLContext() has no CA at all, which means no verification.
    if not verify:
        return ssl.SSLContext()
    ctx = ssl.create_default_context()
    if cas:
        ctx.load_verify_locations(cadata="".join(c if isinstance(c, str) else _pem(c) for c in cas))
    return ctx


def _pem(der):
    """A DER certificate as PEM text (RFC 7468: base64 in lines of 64)."""
    import binascii

    b64 = binascii.b2a_base64(der).strip().decode()
    lines = [b64[i : i + 64] for i in range(0, len(b64), 64)]
    return "-----BEGIN CERTIFICATE-----\n%s\n-----END CERTIFICATE-----\n" % "\n".join(lines)


def _is_ip(host):
    return ":" in host or host.replace(".", "").isdigit()


def _print_trace(direction, data):
    # smtplib's debuglevel 1 shape ("send: b'...'", "reply: b'...'"), on stderr.
    print(direction + ":", repr(data), file=sys.stderr)


class _Tracer:
    """The redacted protocol trace of set_debuglevel(): `fn(direction, data)` gets each
    command line sent ("send") and each chunk of reply bytes read ("reply"). AUTH arguments
    and every line answering a 334 challenge become "[redacted]"; a message body shows only
    as "[body N bytes]". It exists only while tracing is on (off costs one attribute test)."""

    def __init__(self, fn):
        self.fn = fn
        self.reset()

    def reset(self):
        self.skip = 0  # octets of a BDAT chunk still to come (RFC 3030 2)
        self.data = False  # inside a DATA body (after 354) until "." CRLF
        self.bol = True  # the body bytes so far ended a line
        self.body = 0  # body octets counted and not reported yet
        self.secret = False  # the next line answers a 334 challenge (RFC 4954 4)

    def code(self, code):
        if code == 334:
            self.secret = True
        elif code == 354:
            self.data = True
            self.bol = True

    def received(self, buf, n):
        self.fn("reply", bytes(buf[:n]))

    def sent(self, buf, off, n):
        data = bytes(buf[off : off + n])
        i = 0
        while i < n:
            if self.skip:
                k = min(self.skip, n - i)
                self.skip -= k
                self._count(k, not self.skip)
                i += k
            elif self.data:
                # RFC 5321 4.5.2: the body is dot-stuffed, so "." CRLF at a line start ends it.
                if self.bol and data[i : i + 3] == b".\r\n":
                    end = i
                else:
                    end = data.find(b"\r\n.\r\n", i)
                    end = n if end < 0 else end + 2
                if end - i >= 2:
                    self.bol = data[end - 2 : end] == _CRLF
                self.data = end == n
                self._count(end - i, end < n)
                i = end
            else:
                lf = data.find(b"\n", i)
                j = n if lf < 0 else lf + 1
                line = data[i:j]
                i = j
                verb = line[:5].upper()
                if self.secret:
                    self.secret = False
                    line = b"[redacted]\r\n"
                elif verb == b"AUTH ":
                    sp = line.find(b" ", 5)
                    if sp > 0:
                        line = line[:sp] + b" [redacted]\r\n"
                elif verb == b"BDAT ":
                    self.skip = int(line[5:].split()[0])
                self.fn("send", line)

    def _count(self, k, done):
        self.body += k
        if done:
            self.fn("send", b"[body %d bytes]" % self.body)
            self.body = 0


# ----------------------------------------------------------------------- smtplib session


class SMTP:
    """An SMTP session, smtplib-compatible. Extensions are keyword-only."""

    # Class-level defaults keep instances small (smtplib does the same).
    debuglevel = 0
    _tracer = None  # a _Tracer while set_debuglevel() has tracing on
    sock = None
    _io = None
    _host = ""
    helo_resp = None
    ehlo_resp = None
    does_esmtp = False
    _tls = False
    default_port = SMTP_PORT
    local_hostname = source_address = None
    timeout = 30
    pipelining = chunking = True  # escape hatches for servers that advertise and break
    _exp = _mails = None  # the transaction engine's state while a batch runs
    _sent = _ms = 0
    socket_pool = ssl_context = context = None  # context: SMTP_SSL's
    _implicit = False  # TLS from the first byte (SMTP_SSL)

    def __init__(
        self,
        host="",
        port=0,
        local_hostname=None,
        timeout=30,
        source_address=None,
        *,
        bufsize=512,
        pool=None,
        pipelining=True,
        chunking=True,
        socket_pool=None,
        ssl_context=None,
    ):
        # socket_pool: where sockets come from (CircuitPython's socketpool.SocketPool);
        # default: the socket module. ssl_context: the context for TLS when none is given
        # to starttls() (or, in SMTP_SSL, as context=).
        if socket_pool is not None:
            self.socket_pool = socket_pool
            if _MPY:
                raise ValueError("socket_pool is for CircuitPython; MicroPython uses socket")
        if ssl_context is not None:
            self.ssl_context = ssl_context
        if local_hostname is not None:
            _check_text(local_hostname, "local_hostname")
            self.local_hostname = local_hostname
        # Values equal to the class defaults stay there: a smaller instance dict.
        if timeout != 30:
            self.timeout = timeout
        if source_address is not None:
            self.source_address = source_address
        if not pipelining:
            self.pipelining = False
        if not chunking:
            self.chunking = False
        self.pool = pool if pool is not None else Pool(bufsize)
        self.engine = Engine(self.pool)
        if host:
            code, msg = self.connect(host, port)
            if code != 220:
                self.close()
                raise SMTPConnectError(code, msg)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        try:
            if self._io is not None:
                self.quit()
        except (SMTPException, OSError):
            pass
        finally:
            self.close()

    def set_debuglevel(self, level, *, trace=None):
        """smtplib's: level 1 or more prints the protocol trace on stderr ("send: ...",
        "reply: ..."), redacted: AUTH arguments and answers to 334 challenges show as
        [redacted], bodies as [body N bytes]. `trace`: a callable(direction, data) that gets
        those lines (bytes) instead of printing. Level 0 turns tracing off."""
        self.debuglevel = level
        self._tracer = _Tracer(trace or _print_trace) if level else None

    # ----- connection

    def _open(self, host, port, deadline):
        """Connect to the first address of host that answers (IPv4 or IPv6)."""
        if self.socket_pool is not None:
            return self._open_pool(host, port, deadline)
        infos = socket.getaddrinfo(host, port, 0, socket.SOCK_STREAM)
        if not infos:
            raise OSError("no address for %s" % host)
        err = None
        for af, kind, proto, _, addr in infos:
            sock = socket.socket(af, kind, proto)
            try:
                sock.settimeout(max(_left(deadline), 1) / 1000)
                if self.source_address is not None:
                    sock.bind(self.source_address)
                sock.connect(addr)
                self._set_nodelay(sock)
                return sock
            except OSError as e:
                err = e
                sock.close()
        raise err

    def _open_pool(self, host, port, deadline):
        # CircuitPython's ssl cannot wrap a connected socket: for implicit TLS the socket is
        # wrapped first and the handshake runs inside connect(). Its errors are OSErrors
        # with negative (mbedTLS) numbers, or ValueError; TCP errors have positive ones.
        pool = self.socket_pool
        af, kind, proto, _, addr = pool.getaddrinfo(host, port, 0, pool.SOCK_STREAM)[0]
        sock = pool.socket(af, kind, proto)
        try:
            sock.settimeout(max(_left(deadline), 1) / 1000)
            if self.source_address is not None:
                sock.bind(self.source_address)
            if self._implicit:
                ctx = self.context or self.ssl_context or create_context()
                sock = ctx.wrap_socket(sock, server_hostname=host)
            sock.connect(addr)
        except (OSError, ValueError) as e:
            sock.close()
            if self._implicit and (isinstance(e, ValueError) or (e.errno or 0) < 0):
                raise SMTPTLSError("TLS handshake with %s failed: %r" % (host, e))
            raise
        self._set_nodelay(sock)
        return sock

    @staticmethod
    def _set_nodelay(sock):
        # Flights are single writes anyway; NODELAY also removes the Nagle + delayed-ACK
        # stall where a flight must follow a large body write.
        try:
            sock.setsockopt(6, 1, 1)  # IPPROTO_TCP, TCP_NODELAY
        except (OSError, AttributeError, TypeError):
            pass

    def connect(self, host="localhost", port=0, source_address=None):
        """Connect and read the greeting; return (code, msg). RFC 5321 3.1: 220 is the
        greeting, 554 (no service) and 421 are refusals."""
        if source_address is not None:
            self.source_address = source_address
        # Always: close() also forgets the last session's EHLO/HELO state, which ehlo() may
        # have stored after a 421 had already closed the socket. RFC 5321 4.1.4: every new
        # session starts with EHLO (or HELO).
        self.close()
        if not port:
            if host.startswith("[") and "]:" in host:
                host, _, port = host[1:].partition("]:")
            elif host.count(":") == 1:
                host, _, port = host.partition(":")
            port = int(port) if port else self.default_port
        if host.startswith("[") and host.endswith("]"):
            host = host[1:-1]
        self._host = host
        self.engine.reset()
        if self._tracer is not None:
            self._tracer.reset()
        deadline = _deadline(self.timeout)
        sock = self._open(host, port, deadline)
        self.sock = sock
        try:
            self._after_connect(deadline)
            if self.socket_pool is not None:
                self._io = _PoolTransport(self.sock)  # type: ignore[name-defined]  # not _MPY
            else:
                self._io = _Transport(self.sock)
            self.engine.pending = 1
            code = self._reply(deadline, keep=True)
        except BaseException:
            self.close()
            raise
        msg = self.engine.take_text()
        if code != 220:
            self.close()
        return code, msg

    def _after_connect(self, deadline):
        pass

    def _wrap(self, context, deadline):
        """TLS handshake on self.sock (blocking with the session's deadline)."""
        if context is None:
            context = create_context()
        sock = self.sock
        # The handshake runs blocking, bounded by the session's deadline; the transport
        # makes the TLS socket non-blocking afterwards.
        sock.settimeout(max(_left(deadline), 1) / 1000)
        host = self._host
        try:
            self.sock = context.wrap_socket(sock, server_hostname=host)
        except (OSError, ValueError) as e:
            try:
                sock.close()
            except OSError:
                pass
            self.close()
            raise SMTPTLSError("TLS handshake with %s failed: %r" % (host, e))
        except BaseException:
            # MemoryError mid-handshake: the stream is in an unknown state.
            try:
                sock.close()
            except OSError:
                pass
            self.close()
            raise
        self._tls = True

    def close(self):
        """Close the connection; the object can connect again."""
        io = self._io
        self._io = None
        self.sock = None
        # Reset only what was set: an attribute equal to its class default need not take a
        # slot in the instance dict.
        if self.ehlo_resp is not None:
            self.ehlo_resp = None
        if self.helo_resp is not None:
            self.helo_resp = None
        if self.does_esmtp:
            self.does_esmtp = False
        if self._tls:
            self._tls = False
        if io is not None:
            io.close()

    # ----- I/O glue (the driver's part: every wait has a deadline)

    def _need(self):
        if self._io is None:
            raise SMTPServerDisconnected("not connected")

    def _write(self, buf, off, n, deadline):
        if self._tracer is not None:
            self._tracer.sent(buf, off, n)
        try:
            self._io.write(buf, off, n, deadline)
        except SMTPException:
            self.close()
            raise
        except OSError as ex:
            self.close()
            raise SMTPServerDisconnected("write failed: %r" % (ex,))
        except BaseException:
            # MemoryError, KeyboardInterrupt: part of the bytes may be out. A later command
            # must not continue this one: drop the connection (tests/test_heap.py).
            self.close()
            raise

    def _flush(self, deadline):
        e = self.engine
        if e.tx_len > e.tx_start:
            self._write(e.tx, e.tx_start, e.tx_len - e.tx_start, deadline)
        e.tx_len = e.tx_start = 0

    def _send_flight(self, deadline):
        """Write the queued commands in one write. A byte that arrived while we were not
        waiting for a reply is unsolicited: answering it as ours would desync the session."""
        self._need()
        e = self.engine
        if e.rx_pos < e.rx_end or self._io.ready():
            self._unsolicited()
        self._flush(deadline)

    def _unsolicited(self):
        # RFC 5321 3.8: a server shutting down may send 421 and close; report that as the
        # transient error it is. Anything else is a protocol violation.
        e = self.engine
        e.pending = 1
        try:
            code = self._reply(_deadline(1))
        except SMTPTimeoutError:
            code = 0
        msg = e.take_text()
        self.close()
        if code == 421:
            raise SMTPResponseException(code, msg)
        raise SMTPProtocolError("unsolicited data from server")

    def _peek(self, deadline):
        """The socket is readable: read what is there into rx; 0 means EOF (or a reset)."""
        e = self.engine
        try:
            n = self._io.readinto(e.rx_view(), deadline)
        except OSError:
            return 0
        e.received(n)
        return n

    def _reply(self, deadline, keep=False):
        """Read until the next reply is complete; return its code. Any failure closes the
        connection; so does 421 (RFC 5321 3.8: the server is closing the channel), whose
        code is returned so the caller raises its own exception class."""
        e = self.engine
        io = self._io
        e.keep = keep
        try:
            while True:
                code = e.parse()
                if code:
                    if self._tracer is not None:
                        self._tracer.code(code)
                    if code == 421:
                        self.close()
                    return code
                v = e.rx_view()
                n = io.readinto(v, deadline)
                if not n:
                    raise SMTPServerDisconnected("connection closed by server")
                if self._tracer is not None:
                    self._tracer.received(v, n)
                e.received(n)
        except SMTPException:
            self.close()
            raise
        except OSError as ex:
            self.close()
            raise SMTPServerDisconnected("read failed: %r" % (ex,))
        except BaseException:
            # MemoryError half-way through a reply (its text is copied out): the replies
            # still due would answer the next command. Drop the connection.
            self.close()
            raise

    def _cmd(self, verb, arg=None, keep=True):
        """Send one command, lock-step; return (code, msg)."""
        deadline = _deadline(self.timeout)
        e = self.engine
        t = e.tx_len
        try:
            e.command(verb, arg)
        except BaseException:
            # Too long (ValueError) or MemoryError: nothing went out; take back the part
            # already in tx, or the next command would carry it (tests/test_hardening.py).
            e.tx_len = t
            raise
        self._send_flight(deadline)
        code = self._reply(deadline, keep=keep)
        return code, e.take_text()

    def docmd(self, cmd, args=""):
        """Send a raw command line; return (code, msg)."""
        _check_text(cmd, "command")
        _check_text(args, "command arguments")
        self._need()
        return self._cmd(cmd, args)

    def putcmd(self, cmd, args=""):
        raise SMTPNotSupportedError("putcmd/getreply are not supported; use docmd")

    # ----- EHLO / HELO (RFC 5321 4.1.1.1)

    def _local_name(self):
        if self.local_hostname:
            return self.local_hostname
        # RFC 5321 4.1.3 / 4.1.4: without a host name, send an address literal of the
        # local address. lwIP and the unix port have no getsockname.
        try:
            addr = self.sock.getsockname()[0]
        except (AttributeError, OSError):
            addr = self._host if _is_ip(self._host) else None
            if addr is None:
                try:
                    import network  # type: ignore[import-not-found]  # boards only

                    addr = network.WLAN(network.STA_IF).ifconfig()[0]
                except Exception:
                    addr = "127.0.0.1"
        if ":" in addr:
            return "[IPv6:%s]" % addr
        return "[%s]" % addr

    def ehlo(self, name=""):
        """Send EHLO; parse the extensions. Returns (code, msg)."""
        self._need()
        name = _check_text(name, "EHLO name") or self._local_name()
        code, msg = self._cmd(b"EHLO", name)
        if code != 250:
            self.ehlo_resp = msg
            return code, msg
        if msg and max(msg) >= 128:
            # RFC 5321 4.1.1.1: EHLO keywords and parameters are ASCII.
            self.close()
            raise SMTPProtocolError("EHLO reply is not ASCII")
        self.engine.set_capabilities(msg.split(b"\n"))
        self.ehlo_resp = msg
        self.does_esmtp = True
        return code, msg

    @property
    def esmtp_features(self):
        """smtplib's {extension: parameters} of the last EHLO (made when asked for: a board
        keeps only the reply text and the engine's capability bits)."""
        features = {}
        if self.does_esmtp:
            for line in self.ehlo_resp.split(b"\n")[1:]:
                word = line.split(None, 1)
                if word:
                    key = word[0].decode().lower()
                    features[key] = word[1].decode().strip() if len(word) > 1 else ""
        return features

    def helo(self, name=""):
        self._need()
        name = _check_text(name, "HELO name") or self._local_name()
        code, msg = self._cmd(b"HELO", name)
        self.helo_resp = msg
        return code, msg

    def ehlo_or_helo_if_needed(self):
        if self.helo_resp is None and self.ehlo_resp is None:
            code, msg = self.ehlo()
            # RFC 5321 4.1.4: a server that does not know EHLO answers 500/502; fall back.
            if not 200 <= code < 300:
                if code not in (500, 502):
                    raise SMTPHeloError(code, msg)
                code, msg = self.helo()
                if code != 250:
                    raise SMTPHeloError(code, msg)

    def has_extn(self, opt):
        return opt.lower() in self.esmtp_features

    # ----- STARTTLS (RFC 3207)

    def starttls(self, keyfile=None, certfile=None, *, context=None):
        """Upgrade to TLS. Fails closed: bytes received after the 220 are an attack
        (RFC 3207 6, CVE-2011-0411 style injection)."""
        if self.socket_pool is not None:
            raise SMTPNotSupportedError(
                "STARTTLS is not possible with socket_pool: CircuitPython cannot wrap a "
                "connected socket; use implicit TLS (SMTP_SSL, port 465, tls='implicit')"
            )
        self.ehlo_or_helo_if_needed()
        if not self.engine.caps & _STARTTLS:
            raise SMTPNotSupportedError("STARTTLS extension not supported by server.")
        if self._tls:
            raise SMTPProtocolError("TLS is already active")
        deadline = _deadline(self.timeout)
        e = self.engine
        e.command(b"STARTTLS")
        self._send_flight(deadline)
        code = self._reply(deadline, keep=True)
        msg = e.take_text()
        if code != 220:
            return code, msg
        if e.rx_pos < e.rx_end or self._io.ready():
            # A socket is readable at EOF too: a server that closed after its 220 is a
            # disconnect (retry), not an injection (found by tests/test_sweep.py).
            if e.rx_pos == e.rx_end and not self._peek(deadline):
                self.close()
                raise SMTPServerDisconnected("connection closed by server after STARTTLS")
            self.close()
            raise SMTPProtocolError("server sent data after 220 to STARTTLS (injection)")
        self._wrap(context or self.ssl_context, deadline)
        try:
            self._io = _Transport(self.sock)
        except BaseException:
            # MemoryError: _tls is set but the old transport still writes to the plain
            # socket; a login() now would send the password around TLS. Fail closed.
            tls_sock = self.sock
            self.close()
            try:
                tls_sock.close()
            except OSError:
                pass
            raise
        # RFC 3207 4.2: forget everything learnt before TLS and say EHLO again.
        e.reset()
        self.ehlo_resp = self.helo_resp = None
        self.does_esmtp = False
        self._tls = True
        self.ehlo()
        return code, msg

    # ----- AUTH (RFC 4954)

    def auth(self, mechanism, authobject, *, initial_response_ok=True):
        """Run one SASL exchange: authobject(challenge) returns the response (str or
        bytes); challenge is None for the initial response. Returns (code, msg)."""
        self._need()
        mechanism = mechanism.upper()
        _check_text(mechanism, "mechanism")
        deadline = _deadline(self.timeout)
        e = self.engine
        arg = None
        if initial_response_ok:
            ir = authobject(None)
            if ir is not None:
                arg = _b64(_b(ir)) if ir else b"="  # RFC 4954 4: "=" is an empty response
        t = e.tx_len
        try:
            e.command(b"AUTH " + mechanism.encode(), arg)
        except BaseException:
            e.tx_len = t  # too long, or MemoryError: nothing went out, take it back
            raise
        self._send_flight(deadline)
        for _ in range(_AUTH_ROUNDS):
            code = self._reply(deadline, keep=True)
            msg = e.take_text()
            if code != 334:
                if code in (235, 503):
                    return code, msg
                raise SMTPAuthenticationError(code, msg)
            try:
                challenge = _unb64(msg)
                resp = authobject(challenge)
                e.put(_b64(_b(resp)) if resp else b"")
                e.put(_CRLF)
            except BaseException:
                # RFC 4954 4: the server now waits for a response line we cannot compute
                # (not base64, or MemoryError while computing it); the session is out of
                # step, so close it like any other protocol error.
                self.close()
                raise
            e.pending += 1
            self._send_flight(deadline)
        # Too many rounds: cancel the exchange (RFC 4954 4: "*") and give up.
        self.close()
        raise SMTPAuthenticationError(535, b"too many AUTH challenges")

    def login(
        self,
        user,
        password,
        *,
        initial_response_ok=True,
        mechanism=None,
        allow_plaintext_auth=False,
    ):
        """Authenticate with the strongest mechanism the server offers (CRAM-MD5, PLAIN,
        LOGIN), or with `mechanism` when given (tried even if not advertised). Credentials
        are only sent over TLS unless `allow_plaintext_auth=True` (then anyone on the path
        can read them)."""
        return self._login(user, password, initial_response_ok, mechanism, allow_plaintext_auth)

    def _login(self, user, password, initial_response_ok, mechanism, plaintext):
        _check_text(user, "user")
        _check_text(password, "password")
        self.ehlo_or_helo_if_needed()
        if not self._tls and not plaintext:
            raise SMTPNotSupportedError(
                "refusing to send credentials without TLS; use starttls() or SMTP_SSL"
            )
        if mechanism is None:
            if not self.engine.caps & _AUTH:
                raise SMTPNotSupportedError("SMTP AUTH extension not supported by server.")
            for m in _MECHANISMS:
                if m in self.engine.auth:
                    mechanism = m
                    break
            else:
                raise SMTPException("No suitable authentication method found.")
        mechanism = mechanism.upper()
        obj = _authobject(mechanism, user, password)
        code, msg = self.auth(mechanism, obj, initial_response_ok=initial_response_ok)
        if code == 503:  # RFC 4954 4: already authenticated
            return code, msg
        if code != 235:
            raise SMTPAuthenticationError(code, msg)
        return code, msg

    # ----- mail transaction (RFC 5321 3.3)

    def sendmail(self, from_addr, to_addrs, msg, mail_options=(), rcpt_options=(), **options):
        """Send one mail; return {refused address: (code, msg)}. Raises
        SMTPRecipientsRefused only when every recipient was refused (smtplib semantics).
        Keyword options (RFC 3461 DSN, RFC 8689): notify="FAILURE,DELAY", ret="HDRS",
        envid="...", requiretls=True."""
        self._need()
        mail = _Mail(from_addr, to_addrs, msg, mail_options, rcpt_options, options)
        self._batch([mail], False)
        if mail.error is not None:
            raise mail.error
        return mail.refused

    def send_many(self, mails, mail_options=(), rcpt_options=(), *, quit=False, **options):
        """Send several mails on this connection, pipelined when the server allows it;
        return one SendResult per mail, in order. `mails` holds (from_addr, to_addrs, msg)
        tuples. A failed mail never stops the others: its result carries the exception.
        quit=True sends QUIT in the last flight and closes."""
        self._need()
        batch = [_Mail(f, t, m, mail_options, rcpt_options, options) for f, t, m in mails]
        self._batch(batch, quit)
        return [SendResult(m.refused, m.error) for m in batch]

    def send_message(self, *args, **kwargs):
        raise SMTPNotSupportedError("send_message needs the email package; use sendmail")

    # ----- the transaction engine: lock-step, PIPELINING (RFC 2920), CHUNKING (RFC 3030)

    def _batch(self, mails, quit):
        self.ehlo_or_helo_if_needed()
        e = self.engine
        caps = e.caps
        for mail in mails:
            mail.prepare(self, caps)  # checks against the EHLO, before any byte is sent
        piped = self.pipelining and caps & _PIPELINING
        chunked = self.chunking and caps & _CHUNKING
        # Expectations are ints (kind + 8 * index in mails): appending one allocates nothing.
        self._exp = []
        self._mails = mails
        self._sent = 0
        self._ms = int(self.timeout * 1000)  # once: a float timeout would allocate per use
        prev = None
        try:
            for mail in mails:
                if self._io is None:
                    raise SMTPServerDisconnected("connection closed")
                if mail.error is not None:
                    continue
                if prev is not None and (chunked and piped or not prev.stage):
                    # RFC 5321 4.1.1.5: a failed transaction may still be open (a refused
                    # DATA or BDAT); RSET makes sure the next MAIL starts a fresh one.
                    self._queue(_X_RSET, None, b"RSET")
                prev = mail
                # Addresses are encoded here, per command: garbage, not part of the mail's
                # record, which stays small (it lives for the whole send).
                self._queue(_X_MAIL, mail, b"MAIL FROM:", _b(mail.from_addr), mail.mopts)
                if not piped:
                    self._collect(0)
                    if mail.error is not None:
                        continue
                for addr, ropts in zip(mail.to_addrs, mail.ropts):
                    self._queue(_X_RCPT, mail, b"RCPT TO:", _b(addr), ropts)
                    if not piped:
                        self._collect(0)
                if not piped and len(mail.refused) == len(mail.to_addrs):
                    continue
                if chunked:
                    self._send_body(mail, False)
                else:
                    self._queue(_X_DATA, mail, b"DATA")
                    self._collect(0)  # the body may only follow 354 (RFC 5321 4.1.1.4)
                    if mail.data == 354:
                        if len(mail.refused) == len(mail.to_addrs):
                            # RFC 2920 3.1: DATA accepted although every RCPT was refused:
                            # end it with a single dot, never the message.
                            mail.body = b""
                        self._send_body(mail, True)
                    else:
                        continue
                if not piped:
                    self._collect(0)
            if quit:
                self._queue(_X_QUIT, None, b"QUIT")
            self._collect(0)
        except SMTPException as ex:
            # The connection is gone (the driver closed it): every mail not yet accepted
            # gets this error; the ones the server accepted stay accepted.
            for mail in mails:
                if mail.stage != _ACCEPTED and mail.error is None:
                    mail.error = ex
        except Exception as ex:
            # MemoryError (or the message source failed) half-way: commands may be queued
            # or sent, replies unread. Drop the connection, so no later command is answered
            # by this batch's replies; report it like a disconnect: what the server accepted
            # stays accepted, the rest get the exception (tests/test_heap.py).
            self.close()
            for mail in mails:
                if mail.stage != _ACCEPTED and mail.error is None:
                    mail.error = ex
        except BaseException:
            self.close()
            raise
        finally:
            self._exp = self._mails = None
            if quit:
                self.close()
        for mail in mails:
            mail.conclude()
        if not quit and prev is not None and prev.stage != _ACCEPTED and self._io is not None:
            # RFC 5321 4.1.1.5: abort a failed transaction so the session can be reused.
            self._rset_quietly()

    def _queue(self, kind, mail, verb, addr=None, options=()):
        """Queue a command and what its reply means; flush first if tx is too full."""
        e = self.engine
        need = len(verb) + 4
        if addr is not None:
            need += len(addr)
            for o in options:
                need += len(o) + 1
        if need > e.room():
            self._push()
        if addr is None:
            e.command(verb)
        else:
            e.path_command(verb, addr, options)
        self._expect(kind, mail)

    def _expect(self, kind, mail):
        self._exp.append(kind if mail is None else kind + 8 * self._mails.index(mail))

    def _push(self):
        """Write what tx holds. Replies that arrived meanwhile are read first, so neither
        side's buffers fill up while the other waits (RFC 2920 3.4); bytes that arrive when
        no reply is outstanding are unsolicited (RFC 5321 4.2: one reply per command)."""
        e = self.engine
        while e.rx_pos < e.rx_end or self._io.ready():
            if not self._sent:
                self._unsolicited()
            self._take()
        self._flush(_after(self._ms))
        self._sent = len(self._exp)

    def _collect(self, left):
        """Write what is queued, then read replies until `left` are outstanding."""
        e = self.engine
        if e.tx_len > e.tx_start:
            self._push()
        while len(self._exp) > left:
            self._take()

    def _take(self):
        """Read one reply and give it to the mail whose command it answers."""
        x = self._exp[0]
        kind = x & 7
        # RFC 5321 4.5.3.2.6: the reply to the end of data may take longest: the server
        # checks the message now. Allow twice the command timeout.
        code = self._reply(_after(self._ms * 2 if kind == _X_END else self._ms))
        self._exp.pop(0)
        self._sent -= 1
        text = self.engine.take_text()
        if kind != _X_RSET and kind != _X_QUIT:
            self._mails[x >> 3].reply(kind, code, text)
        if self._io is None:  # a 421 closed the connection (RFC 5321 3.8)
            raise SMTPResponseException(code, text)

    def _send_body(self, mail, stuff):
        """Stream the body through tx: with DATA, dot-stuffed and ended by "." (RFC 5321
        4.1.1.4); with BDAT, in chunks of tx's size, the last one marked LAST (RFC 3030;
        lock-step without PIPELINING, where a refused chunk ends it). If the source fails,
        the connection is dropped without an end of data, so a truncated mail is never
        delivered."""
        e = self.engine
        body = mail.body
        e.body_start(stuff)
        if not stuff:
            if e.room() < _BDAT_ROOM + 32:
                # MAIL/RCPT lines filled tx: send them first, so the chunk's "BDAT <n>" and
                # some data fit behind them (RFC 3030 2; a group may span writes, RFC 2920).
                self._push()
            e.chunk_open()
        try:
            if hasattr(body, "readinto"):
                chunk = self.pool.chunk
                while True:
                    n = body.readinto(chunk)
                    if not n:
                        break
                    self._region(chunk, n, mail)
            elif isinstance(body, (bytes, bytearray)):
                self._region(body, len(body), mail)
            else:
                for piece in body:
                    if isinstance(piece, memoryview):
                        piece = bytes(piece)
                    if not isinstance(piece, (bytes, bytearray)):
                        raise TypeError("message chunks must be bytes")
                    self._region(piece, len(piece), mail)
            if e.room() < 5:
                # The end needs room too: CRLF for an open last line, then "." CRLF.
                if not stuff:
                    self._next_chunk(mail, 0)
                self._push()
                if not stuff:
                    self._chunk_sent(mail)
                    e.chunk_open()
        except _Stop:
            return  # RFC 3030 2: a refused chunk ends the body (no LAST); RSET follows
        except SMTPException:
            raise
        except BaseException:
            self.close()
            raise
        if stuff:
            e.finish()
        else:
            e.end_line()
            e.chunk_close(True)
        self._expect(_X_END, mail)
        mail.stage = _ENDED

    def _region(self, src, j, mail):
        """Send src[0:j]. A clean region larger than tx goes out straight from src (no
        copy); with DATA its last bytes are copied so the end of data shares their write."""
        e = self.engine
        i = 0
        if j > len(e.tx) and e.clean(src, 0, j):
            k = j - 32
            if src[k - 1] == _CR:
                # Never cut between CR and LF: the encoder would see a bare LF and send a
                # second CRLF after the raw CR (RFC 5321 2.3.8: no bare CR on the wire).
                k -= 1
            if e.chunk_at >= 0:
                self._next_chunk(mail, k)  # the whole region is one BDAT chunk
            self._push()
            self._write(src, 0, k, _after(self._ms))
            e.passed(src, k)
            i = k
            if not e.stuff:
                self._chunk_sent(mail)
                e.chunk_open()
        while i < j:
            i = e.encode(src, i, j)
            if i < j:
                if e.chunk_at >= 0:
                    self._next_chunk(mail, 0)
                self._push()
                if not e.stuff:
                    self._chunk_sent(mail)
                    e.chunk_open()

    def _chunk_sent(self, mail):
        """A BDAT chunk (not the last) went out. Without PIPELINING wait for its reply
        (RFC 2920 1: one command at a time): RFC 3030 2 forbids any further BDAT after a
        4xx/5xx to a chunk, so a refused chunk stops the body (_Stop)."""
        if not (self.pipelining and self.engine.caps & _PIPELINING):
            self._collect(0)
            if mail.error is not None:
                raise _Stop

    def _next_chunk(self, mail, extra):
        """Close the open BDAT chunk (with `extra` bytes that will be written straight
        from the source after tx) as a non-last chunk."""
        e = self.engine
        e.tx_len += extra
        e.chunk_close(False)
        e.tx_len -= extra
        self._expect(_X_BDAT, mail)

    def _rset_quietly(self):
        # RFC 5321 4.1.1.5: RSET aborts the transaction so the session can be reused.
        if self._io is None:
            return
        try:
            self._cmd(b"RSET", keep=False)
        except SMTPException:
            pass

    def noop(self):
        self._need()
        return self._cmd(b"NOOP")

    def rset(self):
        self._need()
        return self._cmd(b"RSET")

    def quit(self):
        """Send QUIT and close, whatever the server answers."""
        try:
            self._need()
            return self._cmd(b"QUIT")
        finally:
            self.close()


def _eight_bit(body, exact):
    """Does the body have bytes over 127? CPython answers in C (isascii). MicroPython has
    only max(), about 26 ns a byte: unless `exact`, a body over 64 KB is taken as 8-bit
    (BODY=8BITMIME may be declared for 7-bit data too, RFC 6152 3), so a 10 MB body is not
    scanned twice before it is sent."""
    if hasattr(body, "isascii"):
        return not body.isascii()
    if not exact and len(body) > 65536:
        return True
    return bool(body) and max(body) >= 128


def _wire_size(body):
    # Bytes after CRLF normalisation (bare CR and bare LF become CRLF, a last line gets
    # its CRLF), counted in C.
    n = len(body)
    crlf = body.count(_CRLF)
    n += body.count(b"\n") - crlf + body.count(b"\r") - crlf
    if n and body[-1] != _LF and body[-1] != _CR:
        n += 2
    return n


def _xtext(data):
    # RFC 3461 4: "+" and "=" and bytes outside "!".."~" become "+HH".
    out = b""
    for c in data:
        if 33 <= c <= 126 and c != 43 and c != 61:
            out += bytes((c,))
        else:
            out += b"+%02X" % c
    return out


def _ascii_bytes(data):
    for c in data:
        if c >= 128:
            return False
    return True


def _ascii(text):
    data = text.encode()
    if len(data) != len(text):
        raise ValueError("a str message must be ASCII; encode it to bytes yourself")
    return data


def _body(msg):
    """Check the message type before anything is sent."""
    if isinstance(msg, str):
        return _ascii(msg)
    if isinstance(msg, memoryview):
        return bytes(msg)  # memoryview has no find/count
    if isinstance(msg, (bytes, bytearray)) or hasattr(msg, "readinto"):
        return msg
    try:
        return iter(msg)
    except TypeError:
        raise TypeError("msg must be bytes, str, a file or an iterable of bytes")


def _authobject(mechanism, user, password):
    if mechanism == "PLAIN":
        return lambda challenge: Engine.auth_plain(user, password)
    if mechanism == "LOGIN":
        # The LOGIN draft: the server asks "Username:" then "Password:"; no initial response.
        state = [0]

        def login(challenge):
            if challenge is None:
                return None
            state[0] += 1
            return _b(user) if state[0] == 1 else _b(password)

        return login
    if mechanism == "CRAM-MD5":
        return lambda challenge: (
            None if challenge is None else Engine.auth_cram_md5(user, password, challenge)
        )
    if mechanism == "XOAUTH2":
        sent = [False]

        def xoauth2(challenge):
            if challenge is None or not sent[0]:
                sent[0] = True
                return Engine.auth_xoauth2(user, password)
            # An error challenge (JSON): RFC 7628 3.2.3 style, answer empty to get the 535.
            return b""

        return xoauth2
    raise SMTPNotSupportedError("unknown AUTH mechanism %s" % mechanism)


class SMTP_SSL(SMTP):
    """SMTP over implicit TLS (RFC 8314 3.3, port 465)."""

    default_port = SMTP_SSL_PORT
    _implicit = True

    def __init__(self, host="", port=0, local_hostname=None, timeout=30, source_address=None,
                 *, context=None, **kw):
        # ssl_context= (Adafruit's name) is the same as context=.
        self.context = context if context is not None else kw.get("ssl_context")
        super().__init__(host, port, local_hostname, timeout, source_address, **kw)

    def _after_connect(self, deadline):
        if self.socket_pool is not None:
            self._tls = True  # the handshake ran in _open_pool
        else:
            self._wrap(self.context, deadline)


# --------------------------------------------------------------------------- per-mail Client


class SendResult:
    """What happened to one mail: `refused` maps each refused recipient to (code, msg);
    `error` is the exception that stopped the mail (None: the server accepted it)."""

    def __init__(self, refused, error=None):
        self.refused = refused
        self.error = error

    @property
    def sent(self):
        return self.error is None

    @property
    def ok(self):
        """Accepted for every recipient."""
        return self.error is None and not self.refused

    @property
    def enhanced(self):
        """RFC 3463 status of each refused recipient ("5.1.1"), where the server sent one."""
        return {a: _enhanced(c, t) for a, (c, t) in self.refused.items()}

    def __repr__(self):
        return "SendResult(refused=%r, error=%r)" % (self.refused, self.error)


class _Mail:
    """One mail of a batch: its checked input and what the server said about it."""

    options = None  # DSN and REQUIRETLS keywords, when given

    def __init__(self, from_addr, to_addrs, msg, mail_options, rcpt_options, options):
        self.from_addr = from_addr
        self.to_addrs = _addr_list(to_addrs)
        _check_addr(from_addr, "from_addr")
        for a in self.to_addrs:
            _check_addr(a, "recipient")
        self.mopts = [_b(_check_text(o, "mail option")) for o in mail_options]
        ropts = [_b(_check_text(o, "rcpt option")) for o in rcpt_options]
        self.ropts = [ropts] * len(self.to_addrs)
        for key in options:
            if key not in ("notify", "ret", "envid", "requiretls"):
                raise TypeError("unknown option %s" % key)
            if key != "requiretls" and options[key] is not None:
                _check_text(options[key], key)
        if options:
            self.options = options
        self.body = _body(msg)
        self.refused = {}
        # Set here, not left to class defaults: the instance dict gets its final size now
        # (12 entries), not by growing in the middle of the send.
        self.error = None
        self.got = 0  # RCPT replies seen
        self.data = 0  # DATA's reply
        self.stage = 0  # _ENDED: the end of data went out; _ACCEPTED: 250 to it

    def prepare(self, smtp, caps):
        """Add the ESMTP parameters the server's EHLO allows; record what it can't take
        (checked before any byte of the batch is sent)."""
        try:
            self._params(smtp, caps)
        except SMTPNotSupportedError as ex:
            self.error = ex

    def _params(self, smtp, caps):
        opts = self.options
        mopts = self.mopts
        if not all(_ascii_bytes(_b(a)) for a in [self.from_addr] + self.to_addrs):
            # RFC 6531 3.4: a non-ASCII address needs the server's SMTPUTF8.
            if not caps & _SMTPUTF8:
                raise SMTPNotSupportedError("non-ASCII address and no SMTPUTF8 at the server")
            mopts.append(b"SMTPUTF8")
        body = self.body
        declared = any(o.upper().startswith(b"BODY=") for o in mopts)
        if isinstance(body, (bytes, bytearray)):
            # RFC 6152 3: declare 8-bit content; without 8BITMIME it may not be sent.
            if caps & _8BITMIME:
                if not declared and _eight_bit(body, False):
                    mopts.append(b"BODY=8BITMIME")
            elif _eight_bit(body, True):
                raise SMTPNotSupportedError("8-bit message and no 8BITMIME at the server")
            if caps & _SIZE:
                # RFC 1870 6: the size after CRLF normalisation, without dot-stuffing.
                size = _wire_size(body)
                limit = smtp.engine.size_limit
                if limit and size > limit:
                    raise SMTPNotSupportedError(
                        "message of %d bytes exceeds the server's SIZE %d" % (size, limit)
                    )
                mopts.append(b"SIZE=%d" % size)
        elif hasattr(body, "plan"):
            # smtp_message.Message picks its transfer encodings now that the EHLO is known:
            # 8bit text needs BODY=8BITMIME (RFC 6152 3).
            if body.plan(bool(caps & _8BITMIME)) and not declared:
                mopts.append(b"BODY=8BITMIME")
        if not opts:
            return
        notify, ret, envid = opts.get("notify"), opts.get("ret"), opts.get("envid")
        if notify or ret or envid:
            if not caps & _DSN:
                raise SMTPNotSupportedError("DSN options and no DSN at the server")
            if ret:
                mopts.append(b"RET=" + _b(ret).upper())  # RFC 3461 4.3: FULL or HDRS
            if envid:
                mopts.append(b"ENVID=" + _xtext(_b(envid)))  # RFC 3461 4.4
            if notify:
                # RFC 3461 4.1-4.2: NOTIFY per recipient, with ORCPT naming the address.
                n = b"NOTIFY=" + _b(notify).upper().replace(b" ", b"")
                self.ropts = [
                    r + [n, b"ORCPT=rfc822;" + _xtext(_b(a))]
                    for r, a in zip(self.ropts, self.to_addrs)
                ]
        if opts.get("requiretls"):
            # RFC 8689 4: only over TLS, and only to a server that offers it.
            if not (smtp._tls and caps & _REQUIRETLS):
                raise SMTPNotSupportedError("REQUIRETLS needs TLS and the server's REQUIRETLS")
            mopts.append(b"REQUIRETLS")

    def reply(self, kind, code, text):
        if kind == _X_MAIL:
            if code != 250:
                self.fail(SMTPSenderRefused(code, text, self.from_addr))
        elif kind == _X_RCPT:
            addr = self.to_addrs[self.got]
            self.got += 1
            # RFC 2920 3.1: after a refused MAIL the server answers its pipelined RCPTs
            # with 503 (bad sequence): that is about the sender, not these recipients.
            if code != 250 and code != 251 and not isinstance(self.error, SMTPSenderRefused):
                self.refused[addr] = (code, text)
                if code == 421:  # the server is closing: nobody gets this mail (smtplib too)
                    for other in self.to_addrs:
                        self.refused.setdefault(other, (code, text))
                    self.fail(SMTPRecipientsRefused(self.refused))
        elif kind == _X_DATA:
            self.data = code
            if code != 354:
                self.fail(SMTPDataError(code, text))
        elif code != 250:  # a BDAT chunk, or the end of data
            self.fail(SMTPDataError(code, text))
        elif kind == _X_END and self.error is None:
            self.stage = _ACCEPTED

    def fail(self, error):
        if self.error is None:
            self.error = error

    def conclude(self):
        # smtplib: when every recipient was refused, that is the error (not DATA's 554).
        if self.to_addrs and len(self.refused) == len(self.to_addrs):
            if not isinstance(self.error, SMTPSenderRefused):
                self.error = SMTPRecipientsRefused(self.refused)


_TLS_MODES = ("starttls", "implicit", "none")
_AUTH_MODES = ("auto", "plain", "login", "cram-md5", "xoauth2", "none")


class Client:
    """A mail client shaped like NetX Duo's: configure once, then `send()` opens a fresh
    connection per mail, sends, quits, and always returns to its initial state."""

    username = password = from_addr = context = local_hostname = socket_pool = None
    auth = "auto"
    tls = "starttls"
    timeout = 30
    allow_plaintext_auth = False
    pipelining = chunking = True
    _smtp = None

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
        pipelining=True,
        chunking=True,
        socket_pool=None,
        ssl_context=None,
    ):
        if tls not in _TLS_MODES:
            raise ValueError("tls must be one of %s" % (_TLS_MODES,))
        if socket_pool is not None and tls == "starttls":
            raise ValueError(
                "socket_pool needs tls='implicit' (port 465) or tls='none': CircuitPython "
                "cannot wrap a connected socket, so STARTTLS is impossible"
            )
        if context is None:
            context = ssl_context  # Adafruit's name for the same thing
        if auth not in _AUTH_MODES:
            raise ValueError("auth must be one of %s" % (_AUTH_MODES,))
        if auth not in ("auto", "none") and (username is None or password is None):
            raise ValueError("auth=%r needs username and password" % auth)
        if (username is None) != (password is None):
            raise ValueError("give both username and password, or neither")
        if username is not None:
            _check_text(username, "username")
            _check_text(password, "password")
        if from_addr is not None:
            _check_addr(from_addr, "from_addr")
        if local_hostname is not None:
            _check_text(local_hostname, "local_hostname")
        _check_text(host, "host")
        self.host = host
        if port is None:
            port = {"starttls": SUBMISSION_PORT, "implicit": SMTP_SSL_PORT, "none": SMTP_PORT}[tls]
        self.port = port
        self.pool = pool if pool is not None else Pool(bufsize)
        # Only values that differ from the class defaults become instance attributes: a
        # small instance dict is a few hundred bytes less heap on a board.
        for name, value in (
            ("username", username), ("password", password), ("from_addr", from_addr),
            ("auth", auth), ("tls", tls), ("context", context),
            ("local_hostname", local_hostname), ("timeout", timeout),
            ("allow_plaintext_auth", allow_plaintext_auth), ("pipelining", pipelining),
            ("chunking", chunking), ("socket_pool", socket_pool),
        ):
            if getattr(Client, name) != value:
                setattr(self, name, value)

    def _prepare(self, s):
        """Connect, say EHLO, secure and authenticate as configured."""
        code, msg = s.connect(self.host, self.port)
        if code != 220:
            raise SMTPConnectError(code, msg)
        s.ehlo_or_helo_if_needed()
        if self.tls == "starttls":
            # RFC 3207 4: STARTTLS is required here; if it is not offered, stop before
            # anything secret or private is sent (defeats STARTTLS stripping).
            if not s.has_extn("starttls"):
                raise SMTPNotSupportedError("server does not offer STARTTLS (tls='starttls')")
            code, msg = s.starttls(context=self.context)
            if code != 220:
                raise SMTPResponseException(code, msg)
        if self.username is None or self.auth == "none":
            return
        if self.auth == "auto":
            if not s.engine.caps & _AUTH:
                return  # NetX Duo: with "auto" and no AUTH advertised, send without it
            mechanism = None
        else:
            # NetX Duo: an EHLO that lists no AUTH does not prove there is none; a
            # mechanism the caller asked for is tried anyway.
            mechanism = self.auth.upper()
        s.login(
            self.username,
            self.password,
            mechanism=mechanism,
            allow_plaintext_auth=self.allow_plaintext_auth,
        )

    def send(self, to_addrs, msg, *, from_addr=None, **options):
        """Send one mail over a fresh connection; return a SendResult. Raises the
        classified exception on failure. A mail the server accepted is reported as sent
        even if QUIT fails afterwards. The connection is closed whatever happens.
        Options as for SMTP.sendmail (notify, ret, envid, requiretls)."""
        mail = _Mail(self._sender(from_addr), to_addrs, msg, (), (), options)
        self._run([mail])
        if mail.error is not None:
            raise mail.error
        return SendResult(mail.refused)

    def send_many(self, mails, **options):
        """Send several mails on one fresh connection; `mails` holds (to_addrs, msg) or
        (to_addrs, msg, from_addr) tuples. Returns one SendResult per mail, in order; a
        mail's failure is in its result's `error`. Errors before the first mail (connect,
        TLS, AUTH) are raised."""
        batch = [
            _Mail(self._sender(m[2] if len(m) > 2 else None), m[0], m[1], (), (), options)
            for m in mails
        ]
        self._run(batch)
        return [SendResult(m.refused, m.error) for m in batch]

    def _sender(self, from_addr):
        from_addr = from_addr if from_addr is not None else self.from_addr
        if from_addr is None:
            raise ValueError("no from_addr")
        return from_addr

    def _run(self, mails):
        """One connection: prepare, send the batch with QUIT in its last flight, close."""
        s = self._smtp
        if s is None:
            # Made once and reused: every send() connects it afresh (connect() starts from a
            # clean engine) and closes it, so nothing carries over between mails.
            if self.tls == "implicit":
                s = SMTP_SSL(local_hostname=self.local_hostname, timeout=self.timeout,
                             context=self.context, pool=self.pool, pipelining=self.pipelining,
                             chunking=self.chunking, socket_pool=self.socket_pool)
            else:
                s = SMTP(local_hostname=self.local_hostname, timeout=self.timeout,
                         pool=self.pool, pipelining=self.pipelining, chunking=self.chunking,
                         socket_pool=self.socket_pool)
            self._smtp = s
        try:
            self._prepare(s)
            s._batch(mails, True)
        finally:
            s.close()

    def send_mail(self, to_addrs, subject, body, *, from_addr=None, **compose):
        """NetX Duo's nx_smtp_mail_send(recipient, priority, subject, body): compose the
        mail with smtp_message (imported here, so send() works without that module) while
        it is sent over one fresh connection. `compose` takes smtp_message.Message's
        keywords (priority, attachments, html, cc, bcc, reply_to, inline, headers, date,
        eightbit). Returns a SendResult."""
        import smtp_message

        msg = smtp_message.Message(self._sender(from_addr), to_addrs, subject, body, **compose)
        try:
            return self.send(msg.recipients, msg, from_addr=msg.sender)
        finally:
            msg.close()
