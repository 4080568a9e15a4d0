# SPDX-License-Identifier: MIT
"""smtp_client: a memory-frugal SMTP client for MicroPython, CircuitPython and CPython.

`Session` is the whole protocol without I/O: it owns the buffers of a `Pool`, builds
commands in `tx`, parses replies in `rx` where they lie, encodes the body, and decides what
happens next. Its operations are generators that yield one small int at a time, an order to
the driver: SYNC (write what tx holds, then read replies until at most `left` are
outstanding, giving each to `take()`), REGION (write `src[0:rj]` straight from the caller's
buffer) or TLS (upgrade the connection). The blocking driver is `SMTP` (smtplib's names,
signatures and exceptions), `SMTP_SSL` and the NetX-shaped `Client`; smtp_async runs the
same generators with awaits. Rarely used features live in smtp_ext (send_many, DSN,
REQUIRETLS, CRAM-MD5, XOAUTH2, the trace), imported on first use; CPython and CircuitPython
sockets in smtp_cpython.
"""

from array import array
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
_SIZE = const(64)
_AUTH = const(128)
_REQUIRETLS = const(256)
_CAPS = (b"STARTTLS", b"PIPELINING", b"CHUNKING", b"8BITMIME", b"SMTPUTF8", b"DSN", b"SIZE",
         b"AUTH", b"REQUIRETLS")

# The driver's orders (smtp_async repeats them: const names are not module attributes).
_SYNC = const(1)
_REGION = const(2)
_TLS = const(3)

# What a reply answers: kind in the low 3 bits, the mail's index above them.
_X_CMD = const(0)  # a single command: its code and text go to session.code/.text
_X_RSET = const(1)
_X_MAIL = const(2)
_X_RCPT = const(3)
_X_DATA = const(4)
_X_BDAT = const(5)
_X_END = const(6)  # the end of data, or BDAT LAST
_X_QUIT = const(7)
# Replies outstanding at most: a pipelined batch is read back when 72 are due (RFC 2920
# 3.4: neither side's buffers may fill while the other waits; 72 short replies are ~2-3 KB,
# well inside a board's TCP window), so 30 mails of 3 recipients cost 2 read-backs.
_RING = const(80)
# A mail's stage: nothing yet (0), then
_GO = const(1)  # DATA got 354
_ENDED = const(2)  # its end of data went out
_ACCEPTED = const(3)  # the server answered 250 to it

_AUTH_ROUNDS = const(5)  # RFC 4954 4: a bound on 334 challenges keeps a hostile server finite
_REPLY_LINES = const(64)  # lines of a reply: real servers send < 20
_BDAT_ROOM = const(24)  # room before a BDAT chunk for "BDAT <n> LAST" CRLF (RFC 3030 2)
_STEP = const(4096)  # bytes written from the caller's buffer between progress calls
# The longest wait: a 32-bit port's ticks_add refuses 2**29 ms (half its ticks_ms period).
_MAX_MS = const(536870911)  # 2**29 - 1 ms, 6 days

# Error messages by number: their text is smtp_errors', loaded while a message is made
# (STYLE.md: pay for what you import; as str constants they held ~4 KB from import on).
_E_BUFSIZE = const(0)
_E_POOL = const(1)
_E_LONG_LINE = const(2)
_E_CLOSED = const(3)
_E_MALFORMED = const(4)
_E_CODE_CHANGED = const(5)
_E_LONG_REPLY = const(6)
_E_INJECTION = const(7)
_E_UNSOLICITED = const(8)
_E_LONG_COMMAND = const(9)
_E_EHLO_ASCII = const(10)
_E_NO_STARTTLS = const(11)
_E_TLS_ACTIVE = const(12)
_E_PLAIN_AUTH = const(13)
_E_CHALLENGE = const(14)
_E_NO_AUTH = const(15)
_E_NO_MECHANISM = const(16)
_E_BATCH = const(17)
_E_CHUNK_TYPE = const(18)
_E_NOT_OFFERED = const(19)
_E_PROGRESS = const(20)
_E_LONG_ADDR = const(21)
_E_SMTPUTF8 = const(22)
_E_8BIT = const(23)
_E_SIZE = const(24)
_E_TYPE = const(25)
_E_CRLF = const(26)
_E_BRACKETS = const(27)
_E_EMPTY = const(28)
_E_NO_RCPT = const(29)
_E_STR_ASCII = const(30)
_E_MSG_TYPE = const(31)
_E_HANDSHAKE = const(32)
_E_LOST = const(33)
_E_CADATA = const(34)
_E_SOCKET_POOL = const(35)
_E_NO_GREETING = const(36)
_E_HANDSHAKE_HOST = const(37)
_E_NOT_CONNECTED = const(38)
_E_WRITE = const(39)
_E_READ = const(40)
_E_CP_STARTTLS = const(41)
_E_PORT_465 = const(42)
_E_TLS_ARG = const(43)
_E_AUTH_ARG = const(44)
_E_CREDENTIALS = const(45)
_E_CP_TLS = const(46)
_E_NO_FROM = const(47)

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
    """The server replied with an error code: `smtp_code` (int), `smtp_error` (bytes),
    `enhanced` (the RFC 3463 "5.1.1" when sent), `transient` (4xx), `permanent` (5xx)."""

    def __init__(self, code, msg, *rest):
        self.smtp_code = code
        self.smtp_error = msg
        self.args = (code, msg) + rest
        self.enhanced = _enhanced(code, msg)
        self.transient = 400 <= code < 500
        self.permanent = code >= 500


class SMTPSenderRefused(SMTPResponseException):
    """MAIL FROM was refused; `sender` is the address."""

    def __init__(self, code, msg, sender):
        super().__init__(code, msg, sender)
        self.sender = sender


class SMTPRecipientsRefused(SMTPException):
    """Every recipient was refused; `recipients` maps address -> (code, msg). `transient`:
    every refusal was 4xx (the same mail may succeed later)."""

    def __init__(self, recipients):
        self.recipients = recipients
        self.args = (recipients,)
        self.transient = True
        for c, _ in recipients.values():
            if not 400 <= c < 500:
                self.transient = False
        self.permanent = not self.transient


class SMTPDataError(SMTPResponseException):
    """DATA or the end of the message was refused."""


class SMTPConnectError(SMTPResponseException):
    """The greeting was not 220."""


class SMTPHeloError(SMTPResponseException):
    """EHLO and HELO were refused."""


class SMTPAuthenticationError(SMTPResponseException):
    """Authentication failed (535, 534, 454, ...)."""


def _msg(n, *args):
    """The text of error n (a _E_ number), formatted with args. smtp_errors is unloaded again
    unless the application imported it: its ~4.5 KB are held only while a message is made,
    not from the first error on (a board may run for months)."""
    kept = "smtp_errors" in sys.modules
    try:
        import smtp_errors

        text = smtp_errors.TEXT[n]
    except (ImportError, MemoryError):  # copied without it, or no heap left for it now
        return "smtp_client error %d" % n
    finally:
        if not kept:
            sys.modules.pop("smtp_errors", None)
    return text % args if args else text


def _enhanced(code, msg):
    # RFC 3463 2: "class.subject.detail" starts the text, its class the reply's first digit.
    if not isinstance(msg, (bytes, bytearray)):
        return None
    word = msg.split(b" ", 1)[0]
    parts = word.split(b".")
    if len(parts) != 3 or parts[0] != b"%d" % (code // 100):
        return None
    for part in parts:
        if not 1 <= len(part) <= 3 or not part.isdigit():
            return None
    return word.decode()


# ------------------------------------------------------------------------------- session


class Pool:
    """The preallocated buffers of one session at a time: `rx` for replies, `tx` for what
    goes out, `chunk` for file reads of the body (made for the first file body: an in-memory
    body never needs it). `bufsize` is the longest reply line accepted and the size of each
    write. Sessions may share a pool one after the other; a second session using it at the
    same time gets SMTPException, never mixed bytes."""

    user = None  # the session using it now
    chunk = None

    def __init__(self, bufsize=512):
        # RFC 5321 4.5.3.1.5: a reply line may be 512 octets long, a command line too.
        if bufsize < 512:
            raise ValueError(_msg(_E_BUFSIZE))
        seg = bufsize // 8
        # rx is read at one of 9 fixed offsets (multiples of seg), so a partial line moved
        # just below one of them is continued in place without allocating a memoryview.
        self.rx = bytearray(bufsize + seg)
        mv = memoryview(self.rx)
        self.rxv = []
        for k in range(9):
            self.rxv.append(mv[k * seg :])
        self.tx = bytearray(bufsize)
        self.seg = seg
        self.bufsize = bufsize


class Session:
    """SMTP (RFC 5321 with 3207, 4954, 2920, 3030, 1870, 6152, 6531) without I/O.

    The generators `do_command` (no verb: the greeting), `do_ehlo`,
    `do_starttls`, `do_auth`, `do_login`, `do_mails` and `do_client` yield orders (SYNC,
    REGION, TLS); a driver carries each out and resumes the generator. Every sequencing and
    security rule is here, once."""

    # Class-level defaults keep instances small (smtplib does the same).
    caps = 0
    size_limit = 0
    auth_line = b""
    ehlo_resp = helo_resp = None
    does_esmtp = False
    _tls = False
    plain_ok = False  # credentials may go out without TLS (the caller opted in)
    pipelining = chunking = True  # escape hatches for servers that advertise and break
    local_hostname = None
    _host = ""
    code = 0  # the last single command's reply
    text = b""
    mails = None
    timeout = 30
    ms = 30000  # timeout in ms

    def __init__(self, pool=None, bufsize=512):
        pool = pool if pool is not None else Pool(bufsize)
        self.pool = pool
        self.rx = pool.rx
        self.tx = pool.tx
        # What each outstanding reply answers: a ring of kind + 8 * mail index (16 bits).
        self.exp = array("H", range(_RING))
        # Every attribute a mail sets, set now: the instance dict takes its final size here,
        # not by growing (and leaving the smaller table behind) in the middle of a mail.
        self.code = self.chunks = self.ri = self.rj = 0
        self.text = b""
        self.lines = []
        self.mails = self.src = None
        self.reset()

    def reset(self):
        """Forget the connection: replies, capabilities, TLS (the buffers stay)."""
        self.rx_pos = self.rx_end = 0  # rx[rx_pos:rx_end]: received, not parsed
        self.tx_start = self.tx_len = 0  # tx[tx_start:tx_len]: what goes out next
        if self.timeout != 30:
            # Once: a float timeout allocates at every use. None (smtplib: no deadline, the
            # caller's choice) waits 6 days, the most a ticks_ms deadline holds.
            t = self.timeout
            self.ms = _MAX_MS if t is None else min(int(t * 1000), _MAX_MS)
        self.head = self.out = 0  # ring head; replies outstanding
        self.sent = 0  # of those, the ones whose command went out
        self.left = 0  # SYNC reads until this many are outstanding
        self.poll = False  # check for unsolicited bytes before the next write
        self.line = self.nlines = 0  # code and lines so far of the reply being parsed
        self.lines.clear()  # its text, when kept
        self.chunk_at = -1
        self.bol = True  # body encoder: at the beginning of a line
        self.cr = False  # body encoder: a CR was read and not written yet
        self.stuff = True  # body encoder: dot-stuff (DATA); BDAT needs none (RFC 3030 2)
        self.caps = self.size_limit = 0
        self.auth_line = b""
        self.ehlo_resp = self.helo_resp = None
        self.does_esmtp = self._tls = False

    def own(self, take):
        """Take the pool for this session (a connection starts) or give it back. A pool
        serves one session at a time: a second one gets an error, never mixed bytes."""
        pool = self.pool
        if take:
            if pool.user is not None and pool.user is not self:
                raise SMTPException(_msg(_E_POOL))
            pool.user = self
        elif pool.user is self:
            pool.user = None

    # ----- replies (RFC 5321 4.2), parsed where they lie

    def rx_view(self):
        """Make room for more reply bytes; return the memoryview to read into."""
        pool = self.pool
        rx = self.rx
        p = self.rx_pos
        n = self.rx_end - p
        if n >= pool.bufsize:
            raise SMTPProtocolError(_msg(_E_LONG_LINE))
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
        if not n:
            raise SMTPServerDisconnected(_msg(_E_CLOSED))
        self.rx_end += n

    def parse(self):
        """Parse the complete lines received; return the code of a complete reply, or 0
        when more bytes are needed. Keeps the text of errors and single commands."""
        rx = self.rx
        p = self.rx_pos
        end = self.rx_end
        while True:
            lf = rx.find(b"\n", p, end)
            if lf < 0:
                self.rx_pos = p
                return 0
            e = lf - 1 if lf > p and rx[lf - 1] == _CR else lf
            # Reply-code = %x32-35 %x30-35 %x30-39, then SP, "-" or the end of the line.
            if e - p < 3:
                raise SMTPProtocolError(_msg(_E_MALFORMED))
            d0 = rx[p] - 48
            d1 = rx[p + 1] - 48
            d2 = rx[p + 2] - 48
            sep = rx[p + 3] if e > p + 3 else _SP
            if not (2 <= d0 <= 5 and 0 <= d1 <= 5 and 0 <= d2 <= 9) or (
                sep != _SP and sep != _DASH
            ):
                raise SMTPProtocolError(_msg(_E_MALFORMED))
            code = d0 * 100 + d1 * 10 + d2
            if self.line and code != self.line:
                raise SMTPProtocolError(_msg(_E_CODE_CHANGED))
            if self.out <= 0:
                raise self.unsolicited()
            self.line = code
            # RFC 5321 4.2 sets no bound on a reply: bound it, and what is copied out of it
            # (a refusal's text is kept per recipient), so an endless or huge reply is a
            # protocol error or cut short, never a MemoryError.
            self.nlines += 1
            if self.nlines > _REPLY_LINES:
                raise SMTPProtocolError(_msg(_E_LONG_REPLY))
            cmd = self.exp[self.head] & 7 == _X_CMD
            if cmd or code >= 400:
                n = (4096 if cmd else 512) - len(self.lines)
                for t in self.lines:
                    n -= len(t)
                n = min(max(e - p - 4, 0), n)
                if n >= 0:
                    self.lines.append(bytes(rx[p + 4 : p + 4 + n]))
            p = lf + 1
            if sep == _DASH:
                continue
            self.rx_pos = p
            self.line = self.nlines = 0
            return code

    def unsolicited(self, starttls=False):
        """The exception for bytes that answer nothing (RFC 5321 4.2: one reply per
        command). RFC 5321 3.8: a server shutting down sends 421 and closes: transient."""
        rx = self.rx
        p = self.rx_pos
        if self.rx_end - p >= 3 and rx[p : p + 3] == b"421":
            return SMTPResponseException(421, bytes(rx[p + 4 : self.rx_end]).strip())
        return SMTPProtocolError(_msg(_E_INJECTION if starttls else _E_UNSOLICITED))

    def broken(self, ex):
        """Must the connection be dropped after `ex`? Not after a clean error reply or
        input refused before it was sent: the session is in step (smtplib keeps it open).
        Yes after 421 (RFC 5321 3.8), a broken connection or protocol, with replies still
        due or commands unsent, while the server waits for an AUTH answer (334) or for the
        rest of a body, and after anything else (MemoryError half-way)."""
        return (not isinstance(ex, (SMTPResponseException, SMTPNotSupportedError, ValueError,
                                    TypeError)) and type(ex) is not SMTPException
                or self.out or self.tx_len > self.tx_start or self.code == 334
                or self.src is not None  # in the middle of a body
                or getattr(ex, "smtp_code", 0) == 421)

    def wait_ms(self):
        """How long the next reply may take. RFC 5321 4.5.3.2.6: the end of data may take
        longest (the server checks the message now): twice the command timeout."""
        ms = self.ms
        return min(ms * 2, _MAX_MS) if self.exp[self.head] & 7 == _X_END else ms

    def take(self, code):
        """Give a complete reply to what it answers (RFC 2920 3.1: replies come in the order
        of the commands). 421 ends the session (RFC 5321 3.8) after it is recorded."""
        x = self.exp[self.head]
        self.head = (self.head + 1) % _RING
        self.out -= 1
        self.sent -= 1
        # The reply's text: its lines joined by "\n" (smtplib's shape). The same list serves
        # every reply: no garbage, no holes in the heap.
        lines = self.lines
        text = b""
        if lines:  # (clear() reallocates even an empty list)
            text = lines[0] if len(lines) == 1 else b"\n".join(lines)
            lines.clear()
        kind = x & 7
        if kind == _X_CMD:
            self.code = code
            self.text = text
        elif kind != _X_RSET and kind != _X_QUIT:
            self.mails[x >> 3].reply(kind, code, text)
        if code == 421 and kind != _X_CMD:
            raise SMTPResponseException(code, text)

    # ----- commands (RFC 5321 4.1)

    def put(self, data):
        """Append bytes or ASCII text to tx."""
        if isinstance(data, str):
            data = data.encode()
        p = self.tx_len
        n = len(data)
        if p + n > len(self.tx):
            raise ValueError(_msg(_E_LONG_COMMAND))
        self.tx[p : p + n] = data
        self.tx_len = p + n

    def expect(self, kind, index=0):
        if not self.sent:
            self.poll = True  # a new flight: bytes waiting before it are unsolicited
        self.exp[(self.head + self.out) % _RING] = kind + 8 * index
        self.out += 1

    def queue(self, verb, arg=None, kind=_X_CMD, index=0):
        """Queue one command line and what its reply answers."""
        t = self.tx_len
        try:
            self.put(verb)
            if arg:
                self.put(b" ")
                self.put(arg)
            self.put(_CRLF)
        except BaseException:
            self.tx_len = t  # nothing went out: take it back
            raise
        self.expect(kind, index)

    def full(self, need):
        """True when tx has no room for `need` more bytes or the ring is nearly full: SYNC
        then writes and reads back (RFC 2920 3.4: never let both sides' buffers fill)."""
        self.left = self.out if self.out < _RING - 8 else 8
        return len(self.tx) - self.tx_len < need or self.out >= _RING - 8

    def do_command(self, verb=None, arg=None):
        """One command, lock-step; its reply in `code` and `text`. No verb: the greeting
        (RFC 5321 3.1)."""
        if verb is None:
            self.expect(_X_CMD)
        else:
            self.queue(verb, arg)
        self.left = 0
        yield _SYNC

    # ----- EHLO/HELO, STARTTLS (RFC 5321 4.1.1.1, 4.1.4; RFC 3207)

    def do_ehlo(self, name, helo=False):
        """EHLO; with `helo`, HELO when the server refuses it with a 5xx (RFC 5321 4.1.4
        names 500 and 502; 501, 504 and 550 are seen too; a 4xx is no answer to retry with
        HELO), and SMTPHeloError when that fails too."""
        yield from self.do_command(b"EHLO", name)
        if self.code == 250:
            self.parse_ehlo(self.text)
            return
        self.ehlo_resp = self.text
        if not helo:
            return
        if self.code >= 500:
            yield from self.do_command(b"HELO", name)
            self.helo_resp = self.text
            if self.code == 250:
                return
        raise SMTPHeloError(self.code, self.text)

    def parse_ehlo(self, text):
        """The capabilities of an EHLO reply (RFC 5321 4.1.1.1), its first line (the
        greeting) left out."""
        if text and max(text) >= 128:
            raise SMTPProtocolError(_msg(_E_EHLO_ASCII))
        caps = 0
        lines = text.split(b"\n")
        for k in range(1, len(lines)):  # (no copy of the list, as lines[1:] would be)
            word = lines[k].upper().split(None, 1)
            if word and word[0][:5] == b"AUTH=":  # pre-RFC 4954 servers: "AUTH=PLAIN LOGIN"
                word = (b"AUTH", word[0][5:] + b" " + (word[1] if len(word) > 1 else b""))
            if not word:
                continue
            if word[0] in _CAPS:
                caps |= 1 << _CAPS.index(word[0])
            if len(word) > 1:
                if word[0] == b"SIZE" and word[1].strip().isdigit():
                    self.size_limit = int(word[1])
                elif word[0] == b"AUTH":  # both forms may come: the mechanisms of each
                    self.auth_line += b" " + b" ".join(word[1].split()) + b" "
        self.caps = caps
        self.ehlo_resp = text
        self.does_esmtp = True

    def do_starttls(self):
        """RFC 3207: STARTTLS, then TLS; fails closed: bytes already received after the 220
        are an injection (RFC 3207 6). Capabilities are forgotten (RFC 3207 4.2): the next
        command, or ehlo(), says EHLO again inside TLS (smtplib's habit ehlo(), starttls(),
        ehlo(), login() sends one EHLO there, not two)."""
        if not self.caps & _STARTTLS:
            raise SMTPNotSupportedError(_msg(_E_NO_STARTTLS))
        if self._tls:
            raise SMTPProtocolError(_msg(_E_TLS_ACTIVE))
        yield from self.do_command(b"STARTTLS")
        if self.code != 220:
            return
        yield _TLS  # the driver rejects any byte waiting, then runs the handshake
        self.reset()
        self._tls = True

    # ----- AUTH (RFC 4954)

    def do_auth(self, mechanism, authobject, initial_response_ok=True):
        """One SASL exchange; authobject(challenge) returns the response (None challenge:
        the initial response), or authobject is the list of responses in order, the first
        one the initial response. Credentials only over TLS unless `plain_ok`."""
        if not (self._tls or self.plain_ok):
            raise SMTPNotSupportedError(_msg(_E_PLAIN_AUTH))
        said = authobject if isinstance(authobject, list) else None
        arg = None
        if initial_response_ok:
            ir = authobject(None) if said is None else said.pop(0)
            if ir is not None:
                arg = _b64(ir) if ir else b"="  # RFC 4954 4: "=" is an empty response
        yield from self.do_command(b"AUTH " + mechanism.encode(), arg)
        rounds = 0
        while self.code == 334:
            # An error here leaves the server waiting for an answer (code 334): the driver
            # drops the connection.
            rounds += 1
            if rounds > _AUTH_ROUNDS:
                raise SMTPAuthenticationError(535, b"too many AUTH challenges")
            import binascii

            try:
                challenge = binascii.a2b_base64(self.text)
            except ValueError:
                raise SMTPProtocolError(_msg(_E_CHALLENGE))
            yield from self.do_command(_b64(authobject(challenge) if said is None else
                                            said.pop(0) if said else b""))
        if self.code not in (235, 503):  # 503: already authenticated
            raise SMTPAuthenticationError(self.code, self.text)

    def do_login(self, user, password, mechanism=None, initial_response_ok=True):
        """AUTH with `mechanism`, or with what the server offers of CRAM-MD5, PLAIN, LOGIN
        in that order (smtplib's), the next one when one is refused (a server that keeps
        hashed passwords refuses CRAM-MD5 with 535); XOAUTH2 and OAUTHBEARER only when
        asked for: their password is a token. The caller has checked user and password."""
        if mechanism is not None:
            names = [mechanism.upper()]
        elif not self.caps & _AUTH:
            raise SMTPNotSupportedError(_msg(_E_NO_AUTH))
        else:
            names = []
            for m in ("CRAM-MD5", "PLAIN", "LOGIN"):
                if b" " + m.encode() + b" " in self.auth_line:
                    names.append(m)
            if not names:
                raise SMTPException(_msg(_E_NO_MECHANISM))
        user = _b(user)
        password = _b(password)
        for mechanism in names:
            if mechanism == "PLAIN":
                # RFC 4616 2: authzid NUL authcid NUL passwd, authzid empty.
                obj = [b"\0" + user + b"\0" + password]
            elif mechanism == "LOGIN":
                # The LOGIN draft: the user name (as the initial response, as smtplib sends
                # it, or on the "Username:" challenge), then the password on "Password:".
                obj = [user, password]
            else:
                import smtp_ext

                obj = smtp_ext.authobject(mechanism, user, password)
            try:
                yield from self.do_auth(mechanism, obj, initial_response_ok)
                return
            except SMTPAuthenticationError:
                # The next mechanism only from a clean refusal: not when the server still
                # waits for an answer (334) or is closing (421).
                if mechanism is names[-1] or self.code in (334, 421):
                    raise

    # ----- mail transactions (RFC 5321 3.3; RFC 2920 PIPELINING; RFC 3030 CHUNKING)

    def do_mails(self, mails, quit=False):
        """Send each mail of `mails` (a list of SendResult); what happens to each is recorded
        in it. Every mail is checked against the EHLO now, before the first byte."""
        if len(mails) > 8191:
            raise ValueError(_msg(_E_BATCH))  # the reply ring's 13 bits
        for m in mails:
            m.prepare(self)
        self.mails = mails  # from here on, each mail gets its own outcome (conclude())
        # Pipelined when the server allows it, one command per write otherwise (RFC 2920
        # is the server's opt-in). quit: QUIT in the last flight.
        piped = self.pipelining and self.caps & _PIPELINING
        chunked = self.chunking and self.caps & _CHUNKING
        prev = None
        for i in range(len(mails)):
            m = mails[i]
            if m.error is not None:
                continue
            if prev is not None and (chunked and piped or prev.stage < _ENDED):
                # RFC 5321 4.1.1.5: a failed transaction may still be open; RSET closes it.
                self.queue(b"RSET", None, _X_RSET)  # (room: see data())
                if not piped:
                    yield _SYNC
            prev = m
            k = 0
            n = len(m.to_addrs)
            while k <= n:
                if self.full(m.line(k) + 2):
                    yield _SYNC
                m.line(k, self)
                self.expect(_X_MAIL if k == 0 else _X_RCPT, i)
                k += 1
                if not piped:
                    self.left = 0
                    yield _SYNC
                    if m.error is not None:
                        break  # MAIL refused: no RCPT
            if not piped and (m.error is not None or len(m.refused) == n):
                continue
            yield from self.do_data(m, i, piped, chunked)
        if quit:
            self.queue(b"QUIT", None, _X_QUIT)  # (room: see data())
        self.left = 0
        yield _SYNC
        if not quit and prev is not None and prev.stage != _ACCEPTED:
            yield from self.do_command(b"RSET")  # RFC 5321 4.1.1.5: the session stays usable

    def do_data(self, m, i, piped, chunked):
        """The body of mail i: DATA (dot-stuffed, RFC 5321 4.1.1.4) after 354, or BDAT
        chunks of tx's size, the last marked LAST (RFC 3030 2)."""
        self.chunks = 0  # BDAT chunks of this mail before LAST
        self.bol = True  # the encoder's line state (RFC 5321 4.5.2)
        self.cr = False
        self.stuff = not chunked
        # The first chunk's BDAT and some data fit behind MAIL/RCPT; or DATA does.
        if self.full(_BDAT_ROOM + 32 if chunked else 8):
            yield _SYNC
        if not chunked:
            self.queue(b"DATA", None, _X_DATA, i)
            self.left = 0
            yield _SYNC
        body = self.open_body(m, i, chunked)
        if body is None:
            return
        done = 0  # body bytes taken before src (the progress hook's count)
        j = self.piece(body, None)
        while j >= 0:
            src = self.src
            s = 0
            if j > len(self.tx) and self.clean(src, 0, j):
                # A clean region goes out straight from the caller's buffer; its last bytes
                # are encoded, so the end of data can share their write. Never cut between
                # CR and LF: the encoder would see a bare LF.
                s = j - 32 - (src[j - 33] == _CR)
                if not self.resume(m, chunked, False):
                    return
                self.cut(i, s, piped, chunked)
                yield _SYNC
                self.rj = 0
                while self.step(m, s, done):
                    yield _REGION
                self.bol = src[s - 1] == _LF
                self.cut(i, 0, piped, chunked)
                yield _SYNC
                if not self.resume(m, chunked):
                    return
            s = self.encode(src, s, j)
            while s < j:  # (the loop of a body that needs encoding: as few calls as it takes)
                self.cut(i, 0, piped, chunked)
                if m.progress is not None:
                    self.tick(m, done + s)
                yield _SYNC
                if chunked and not self.resume(m, True):
                    return
                s = self.encode(src, s, j)
            done += j
            j = self.piece(body, src)
        self.tick(m, done)  # the whole body is taken: its last bytes go with the end of data
        if len(self.tx) - self.tx_len < 11:
            # Room for the end (CRLF, "." CRLF) and what may follow it in the same flight
            # without a check: the next mail's RSET, or QUIT.
            self.cut(i, 0, piped, chunked)
            yield _SYNC
            if not self.resume(m, chunked):
                return
        self.body_end(chunked, m, i)
        if not piped:
            self.left = 0
            yield _SYNC

    def step(self, m, s, done):
        """The next part of src[0:s] to write straight from the caller's buffer, as
        src[ri:rj]; False when it is all written. With a progress hook, steps of _STEP
        bytes, each followed by a call: a long write never starves a board's watchdog."""
        if self.rj:
            self.tick(m, done + self.rj)
        if self.rj >= s:
            return False
        self.ri = self.rj
        self.rj = min(s, self.ri + _STEP) if m.progress is not None else s
        return True

    def tick(self, m, done):
        """The progress hook of mail m: done body bytes of the total (None: not known)."""
        if m.progress is not None:
            body = m.body
            t = type(body)  # (isinstance(body, (bytes, bytearray)) would build a tuple)
            m.progress(done, len(body) if t is bytes or t is bytearray else None)

    def open_body(self, m, i, chunked):
        """Open the body: the first BDAT chunk, or after DATA's 354 (RFC 5321 4.1.1.4: the
        body only after it). Returns what to send, None for nothing."""
        if chunked:
            if not self.resume(m, True):
                return None  # its failure was read already: no BDAT at all (RFC 3030 2)
            self.src = b""  # a body is open: a failure before its end breaks the session
            if m.size >= 0:
                # An in-memory body's size is known: one chunk, "BDAT <size> LAST", streamed
                # in as many writes as it takes (RFC 3030 2 sets no bound on a chunk), so a
                # mail costs no wait of its own.
                self.tx_len += m.size  # frame() counts the chunk's octets from tx_len
                self.frame(True)
                self.tx_len -= m.size
                self.chunks = -1
                self.expect(_X_END, i)
            return m.body
        if m.stage != _GO:
            return None
        self.src = b""  # a body is open: a failure before its end breaks the session
        if m.error is not None or len(m.refused) == len(m.to_addrs):
            return b""  # RFC 2920 3.1: answer that 354 with the end of data alone
        return m.body

    def piece(self, body, prev):
        """The next part of the body in `src`; returns its length, -1 at the end."""
        if type(body) is bytes or type(body) is bytearray:  # (a tuple would allocate)
            self.src = body
            return len(body) if prev is None and body else -1
        if hasattr(body, "readinto"):
            pool = self.pool
            if pool.chunk is None:
                pool.chunk = bytearray(pool.bufsize)  # once, for the first file body
            n = body.readinto(pool.chunk)
            self.src = pool.chunk
            return n if n else -1
        for piece in body:
            if isinstance(piece, memoryview):
                piece = bytes(piece)
            if not isinstance(piece, (bytes, bytearray)):
                raise TypeError(_msg(_E_CHUNK_TYPE))
            if piece:
                self.src = piece
                return len(piece)
        return -1

    def cut(self, i, extra, piped, chunked):
        """tx is full: close the open BDAT chunk of mail i (with `extra` bytes that follow
        it straight from the caller's buffer), and set what the next SYNC reads back. A
        chunk's bytes follow its BDAT before any wait. RFC 3030 2: after a failed chunk (or
        a refused MAIL, every RCPT refused) no further BDAT may be sent, so the replies of
        the envelope are read before the next chunk; without PIPELINING each chunk's reply
        is awaited (RFC 2920 1). DATA reads nothing back while the body goes out."""
        if self.chunk_at >= 0:
            self.tx_len += extra
            self.frame(False)
            self.tx_len -= extra
            self.expect(_X_BDAT, i)
            self.chunks += 1
        if extra or not chunked or self.chunks < 0:
            self.left = self.out
        elif not piped:
            self.left = 0
        else:
            self.left = min(self.out, self.chunks) if self.chunks < _RING - 8 else 8

    def resume(self, m, chunked, reopen=True):
        """After a SYNC in the body: False when the mail failed and its BDAT must stop
        (RFC 3030 2); else open the next chunk (`reopen`)."""
        if chunked and self.chunks >= 0:
            if m.error is not None:
                self.src = None  # stopped at a chunk's end: the session is in step
                return False
            if reopen:
                self.chunk_at = self.tx_len + _BDAT_ROOM
                self.tx_len = self.chunk_at
        return True

    def body_end(self, chunked, m=None, i=0):
        """Close an open last line (RFC 5321 2.3.8: the message ends with CRLF), then "."
        CRLF (RFC 5321 4.1.1.4) or the LAST chunk (RFC 3030 2): the end of data of mail m,
        the i-th (none: the encoder alone, as tests/test_memory.py drives it)."""
        self.src = None  # (the body is complete: no reference to the caller's data)
        if self.cr or not self.bol:
            self.put(_CRLF)
        if not chunked:
            self.put(b".\r\n")
        elif self.chunk_at >= 0:
            self.frame(True)
        if m is not None:
            if self.chunks >= 0:  # (a single announced chunk expects its reply already)
                self.expect(_X_END, i)
            m.stage = _ENDED

    def frame(self, last):
        """Write "BDAT <n> [LAST]" right before the chunk's data (RFC 3030 2: exactly n
        octets follow the command) and move the commands queued before it up to it, so
        tx[tx_start:tx_len] is one contiguous flight."""
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

    # ----- body encoding (RFC 5321 4.1.1.4, 4.5.2, 2.3.8)

    def clean(self, src, i, j):
        """True when src[i:j] can go out verbatim: lines end in CRLF, no line starts with
        "." (with DATA), and it continues the previous part cleanly. Four scans in C."""
        if self.cr or (self.stuff and self.bol and src[i] == _DOT):
            return False
        n = src.count(b"\n", i, j)
        return (
            src.count(b"\r", i, j) == n
            and src.count(_CRLF, i, j) == n
            and not (self.stuff and src.find(b"\n.", i, j) >= 0)
        )

    def encode(self, src, i, j):
        """Encode src[i:j] into tx until it is consumed or tx is nearly full; return the new
        i. Bare CR and bare LF become CRLF (RFC 5321 2.3.8), a "." starting a line gets one
        more (RFC 5321 4.5.2); the line state carries across calls, so no split of the
        input can make an early end of data (SMTP smuggling)."""
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
            stop = src.find(b"\n", i, j)
            if stop < 0:
                stop = j
            cr = src.find(b"\r", i, stop)
            if cr >= 0:
                stop = cr
            n = min(stop - i, room - p)  # out of room mid-line: the rest continues it
            _copy(tx, p, src, i, n)
            p += n
            i += n
            if i == stop and i < j:
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

    # ----- the NetX Duo sequence (nx_smtp_mail_send): one connection, one or more mails

    def do_client(self, c):
        """After the greeting: EHLO (HELO), STARTTLS as `c.tls` asks (RFC 3207 4: required,
        so a stripped STARTTLS stops before anything private is sent), AUTH. The driver then
        runs do_mails(mails, True): the mails and QUIT in the last flight (a generator
        apart, so this one is gone while the bodies go out)."""
        yield from self.do_ehlo(self.local_name(), True)
        if c.tls == "starttls":
            if not self.caps & _STARTTLS:
                raise SMTPNotSupportedError(_msg(_E_NOT_OFFERED))
            yield from self.do_starttls()
            if self.code != 220:
                raise SMTPResponseException(self.code, self.text)
            yield from self.do_ehlo(self.local_name(), True)
        if c.username is not None and c.auth != "none" and (c.auth != "auto" or self.caps & _AUTH):
            # NetX Duo: with "auto" and no AUTH advertised, send without it; a mechanism
            # the caller named is tried even when the EHLO lists none.
            yield from self.do_login(c.username, c.password,
                                  None if c.auth == "auto" else c.auth.upper())

    def local_name(self):
        # RFC 5321 4.1.3 / 4.1.4: without a host name, an address literal of this host.
        # lwIP and the unix port have no getsockname: the WLAN address, or the server's
        # when it is an address, else the loopback address.
        if self.local_hostname:
            return self.local_hostname
        addr = self._host if ":" in self._host or self._host.replace(".", "").isdigit() else None
        if addr is None:
            try:
                import network  # type: ignore[import-not-found]  # boards only

                addr = network.WLAN(network.STA_IF).ifconfig()[0]
            except Exception:
                addr = "127.0.0.1"
        return "[IPv6:%s]" % addr if ":" in addr else "[%s]" % addr

    def conclude(self, error=None):
        """After the mails' transaction, or when it failed with `error`: a failure before
        the mails were under way (bad input, connect, TLS, AUTH) is raised; after, a mail
        the server accepted stays accepted and the others get the error (a bad body part
        fails its mail). smtplib: every recipient refused is the error itself."""
        if self.mails is None:
            raise error
        for m in self.mails:
            if error is not None and m.stage != _ACCEPTED and m.error is None:
                m.error = error
            if len(m.refused) == len(m.to_addrs) and not isinstance(m.error, SMTPSenderRefused):
                m.error = SMTPRecipientsRefused(m.refused)
            m.sent = m.error is None
            m.ok = m.sent and not m.refused
            m.body = None  # no reference to the caller's data


def _copy(dst, d, src, s, n):
    # dst[d:d+n] = src[s:s+n]. MicroPython allocates for every slice or memoryview slice,
    # so its copy is a byte loop; CPython slices are cheap and fast.
    if _MPY:
        for k in range(n):
            dst[d + k] = src[s + k]
    else:
        dst[d : d + n] = src[s : s + n]


# ---------------------------------------------------------------------------------- mails


class SendResult:
    """One mail: its checked input (all of it before any byte is sent), then what happened
    to it, which is what a send returns: `refused` maps each refused recipient to (code,
    msg); `error` is the exception that stopped the mail (None: the server accepted it);
    `sent` (accepted), `ok` (accepted for every recipient). One object per mail, for the
    whole send: the record is the result."""

    rcpt_extra = None  # per-recipient parameters (DSN's NOTIFY, ORCPT: smtp_ext)
    options = None
    progress = None  # progress=callable(sent_bytes, total or None), called per write

    @property
    def enhanced(self):
        """RFC 3463 status of each refused recipient ("5.1.1"), where the server sent one."""
        d = {}
        for a, (c, t) in self.refused.items():
            d[a] = _enhanced(c, t)
        return d

    def __repr__(self):
        return "SendResult(refused=%r, error=%r)" % (self.refused, self.error)

    def __init__(self, from_addr, to_addrs, msg, mail_options=(), rcpt_options=(), options=None):
        self.from_addr = _check_addr(from_addr, "from_addr", True)
        to = [to_addrs] if isinstance(to_addrs, (str, bytes)) else list(to_addrs)
        if not to:
            raise ValueError(_msg(_E_NO_RCPT))
        self.to_addrs = to
        for k in range(len(to)):
            to[k] = _check_addr(to[k], "recipient")
        mopts: list = []
        ropts: list = []
        for opts, given in ((mopts, mail_options), (ropts, rcpt_options)):
            for o in given:
                opts.append(_b(_check_text(o, "mail or rcpt option")))
        self.mopts = mopts
        self.ropts = ropts or ()
        if options and "progress" in options:
            p = self.progress = options["progress"]
            if p is not None and not callable(p):
                raise TypeError(_msg(_E_PROGRESS))
        if options and len(options) > ("progress" in options):  # DSN, REQUIRETLS: smtp_ext
            import smtp_ext

            smtp_ext.check_options(options)
            self.options = options
        self.body = _body(msg)
        self.size = -1  # an in-memory body's size on the wire (no dot-stuffing), when known
        self.refused = {}
        self.error = None
        self.sent = self.ok = False  # set now: concluding a mail must not allocate
        self.got = 0  # RCPT replies seen
        self.stage = 0  # _GO, _ENDED, _ACCEPTED

    def prepare(self, s):
        """Add the ESMTP parameters the server's EHLO allows; a mail it cannot take gets
        SMTPNotSupportedError and is skipped. Raises ValueError when a command would not
        fit a line (RFC 5321 4.5.3.1.4)."""
        try:
            self.params(s)
        except SMTPNotSupportedError as ex:
            self.error = ex
            return
        for k in range(len(self.to_addrs) + 1):
            if self.line(k) + 2 > len(s.tx):
                raise ValueError(_msg(_E_LONG_ADDR))

    def params(self, s):
        caps = s.caps
        mopts = self.mopts
        # What the caller gave goes out once, not again beside what is added here.
        given = b" " + b" ".join(mopts).upper()
        ascii = _ascii(_b(self.from_addr))
        for a in self.to_addrs:
            ascii = ascii and _ascii(_b(a))
        if not ascii:
            # RFC 6531 3.4: a non-ASCII address needs the server's SMTPUTF8.
            if not caps & _SMTPUTF8:
                raise SMTPNotSupportedError(_msg(_E_SMTPUTF8))
            if b" SMTPUTF8 " not in given + b" ":
                mopts.append(b"SMTPUTF8")
        body = self.body
        # RFC 6152 3: 8-bit content is declared, and without 8BITMIME it may not be sent. A
        # body not known to be 7-bit (a file, an iterable) is declared when the server
        # offers 8BITMIME; smtp_message.Message picks its encodings now the EHLO is known.
        eight = True
        memory = isinstance(body, (bytes, bytearray))
        if memory:
            eight = not _ascii(body)
            if eight and not caps & _8BITMIME:
                raise SMTPNotSupportedError(_msg(_E_8BIT))
        elif hasattr(body, "plan"):
            eight = body.plan(bool(caps & _8BITMIME))
        if eight and caps & _8BITMIME and b" BODY=" not in given:
            mopts.append(b"BODY=8BITMIME")
        if memory and (caps & _SIZE or s.chunking and caps & _CHUNKING):
            # The size after CRLF normalisation, with the last line closed and without
            # dot-stuffing: RFC 1870 6's SIZE, and the length of a single BDAT chunk.
            # Three scans of the body in C: only when the server can use the number.
            self.size = size = _wire_size(body)
            if caps & _SIZE:
                if s.size_limit and size > s.size_limit:
                    raise SMTPNotSupportedError(_msg(_E_SIZE, size, s.size_limit))
                mopts.append(b"SIZE=%d" % size)
        if self.options:
            import smtp_ext

            smtp_ext.params(self, s)

    def line(self, k, s=None):
        """Command line k (0: MAIL FROM, k: RCPT TO for recipient k) put into s.tx in
        pieces (RFC 5321 4.1.1.2-3); without s, its length."""
        if k == 0:
            verb = b"MAIL FROM:<"
            addr = _b(self.from_addr)
            opts = self.mopts
        else:
            verb = b"RCPT TO:<"
            addr = _b(self.to_addrs[k - 1])
            opts = self.ropts if self.rcpt_extra is None else self.rcpt_extra[k - 1]
        if s is None:
            n = len(verb) + len(addr) + 1
            for o in opts:
                n += len(o) + 1
            return n
        s.put(verb)
        s.put(addr)
        s.put(b">")
        for o in opts:
            s.put(b" ")
            s.put(o)
        s.put(_CRLF)

    def reply(self, kind, code, text):
        if kind == _X_MAIL:
            if code != 250:
                self.error = SMTPSenderRefused(code, text, self.from_addr)
        elif kind == _X_RCPT:
            addr = self.to_addrs[self.got]
            self.got += 1
            # RFC 2920 3.1: after a refused MAIL the server answers its pipelined RCPTs
            # with 503 (bad sequence): that is about the sender, not these recipients.
            if code != 250 and code != 251 and not isinstance(self.error, SMTPSenderRefused):
                self.refused[addr] = (code, text)
                if code == 421 or len(self.refused) == len(self.to_addrs):
                    # Every recipient refused, or the server is closing (421, RFC 5321
                    # 3.8; only those refused so far are listed, as smtplib does): the mail
                    # failed now (its body, BDAT chunks included, stops here: RFC 3030 2).
                    self.error = self.error or SMTPRecipientsRefused(self.refused)
        elif kind == _X_DATA:
            if code == 354:
                self.stage = _GO
            else:
                self.error = self.error or SMTPDataError(code, text)
        elif code != 250:  # a BDAT chunk, or the end of data
            self.error = self.error or SMTPDataError(code, text)
        elif kind == _X_END and self.error is None:
            self.stage = _ACCEPTED



def _b(s):
    if isinstance(s, str):
        return s.encode()
    return s if isinstance(s, bytes) else bytes(s)


def _ascii(data):
    # CPython answers in C; MicroPython's max() is C too (about 26 ns a byte).
    if hasattr(data, "isascii"):
        return data.isascii()
    return not data or max(data) < 128


def _wire_size(body):
    # Each bare CR or LF becomes CRLF (RFC 5321 2.3.8: one byte more), an open last line is
    # closed (two more). Three scans in C; smtp_native's is one.
    size = len(body) + body.count(b"\n") + body.count(b"\r") - 2 * body.count(_CRLF)
    return size + 2 * (size > 0 and body[-1] != _LF and body[-1] != _CR)


def _b64(data):
    import binascii

    return binascii.b2a_base64(_b(data))[:-1]


def _check_text(value, what):
    # RFC 5321 2.3.8 / 4.1.2: CR, LF and NUL would end or corrupt the command line and let
    # a caller's data inject commands; refuse before a byte is sent.
    v = value.encode() if isinstance(value, str) else value
    if not isinstance(v, (bytes, bytearray)):
        raise TypeError(_msg(_E_TYPE, what))
    if b"\r" in v or b"\n" in v or b"\0" in v:
        raise ValueError(_msg(_E_CRLF, what))
    return value


def _check_addr(addr, what, null=False):
    # "Name <a@example.com>" and "<a@example.com>", as people write them, mean the
    # addr-spec between the brackets (RFC 5322 3.4); returned in the type given.
    s = isinstance(_check_text(addr, what), str)
    i = addr.find("<" if s else b"<")
    if i >= 0 and addr[-1:] == (">" if s else b">"):
        addr = addr[i + 1 : -1]  # (a "<" or ">" left in it is refused below)
    # RFC 5321 4.1.2: the path is enclosed in <>: a bracket inside, or a space or tab
    # outside a quoted local part, would smuggle parameters. An empty path is the null
    # reverse-path of bounces and DSNs (RFC 5321 4.5.5): a sender only.
    a = _b(addr)
    if b"<" in a or b">" in a or ((b" " in a or b"\t" in a) and a[:1] != b'"'):
        raise ValueError(_msg(_E_BRACKETS, what))
    if not a and not null:
        raise ValueError(_msg(_E_EMPTY, what))
    return addr


def _body(msg):
    """Check the message type before anything is sent."""
    if isinstance(msg, str):
        data = msg.encode()
        if len(data) != len(msg):
            raise ValueError(_msg(_E_STR_ASCII))
        return data
    if isinstance(msg, memoryview):
        return bytes(msg)  # memoryview has no find/count
    if isinstance(msg, (bytes, bytearray)) or hasattr(msg, "readinto"):
        return msg
    try:
        return iter(msg)
    except TypeError:
        raise TypeError(_msg(_E_MSG_TYPE))


# ------------------------------------------------------------------- MicroPython transport


if _MPY:

    def _deadline(ms):
        return time.ticks_add(time.ticks_ms(), ms)

    def _left(deadline):
        return time.ticks_diff(deadline, time.ticks_ms())

else:  # CPython and CircuitPython: monotonic_ns keeps ms resolution after hours of uptime

    def _deadline(ms):
        return time.monotonic_ns() // 1000000 + ms

    def _left(deadline):
        return deadline - time.monotonic_ns() // 1000000


class _Io:
    """MicroPython: a blocking readinto waits for a FULL buffer, so the socket is made
    non-blocking and every wait is select.poll().ipoll(ms), which allocates nothing after
    its first call. Every wait ends at its deadline (ticks_ms)."""

    def __init__(self, sock, shaking=False):
        import select

        self.sock = sock
        self.shaking = shaking  # the TLS handshake runs inside the first reads and writes
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

    def _tls_error(self, ex):
        # A handshake that fails surfaces in the first read or write: OSError, or
        # ValueError for a host name mismatch.
        if self.shaking:
            raise SMTPTLSError(_msg(_E_HANDSHAKE, ex))
        raise SMTPServerDisconnected(_msg(_E_LOST, ex))

    def readinto(self, buf, deadline):
        while True:
            try:
                n = self.sock.readinto(buf)  # TLS may hold decrypted bytes: read first
            except (OSError, ValueError) as ex:
                self._tls_error(ex)
            if n is not None:
                self.shaking = False
                return n
            self._wait(self.pin, deadline)

    def ready(self):
        """Bytes (or EOF) waiting right now."""
        for _ in self.pin.ipoll(0):  # type: ignore[attr-defined]  # MicroPython's poll
            return True
        return False

    def write(self, buf, off, n, ms):
        # A deadline bounds a wait without progress: it restarts after each part written.
        # (Its clock starts at the first wait: a write that needs none reads no clock.)
        sock = self.sock
        end = off + n
        deadline = None
        while off < end:
            try:
                k = sock.write(buf, off, end - off)
            except (OSError, ValueError) as ex:
                self._tls_error(ex)
            if k is None:
                if deadline is None:
                    deadline = _deadline(ms)
                self._wait(self.pout, deadline)
            else:
                off += k
                deadline = None

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass


def create_context(cadata=None, *, verify=True):
    """An SSLContext for a client: certificates verified by default. `cadata`: a CA
    certificate in DER, or a list of them (MicroPython needs DER; CPython also takes PEM).
    `verify=False` turns verification off: anyone on the path can then read the password.
    It is never the default and it prints a warning."""
    if not _MPY:
        import smtp_cpython

        return smtp_cpython.create_context(cadata, verify)
    try:
        import tls  # type: ignore[import-not-found,unused-ignore]  # MicroPython's
    except ImportError:  # before MicroPython 1.23
        import ssl as tls  # type: ignore[no-redef]
    ctx = tls.SSLContext(tls.PROTOCOL_TLS_CLIENT)
    if not verify:
        ctx.verify_mode = tls.CERT_NONE  # type: ignore[attr-defined]
        print("smtp_client: WARNING: TLS certificate verification is OFF")
        return ctx
    ctx.verify_mode = tls.CERT_REQUIRED  # type: ignore[attr-defined]
    if isinstance(cadata, str):
        raise TypeError(_msg(_E_CADATA))
    if cadata is not None:
        for ca in cadata if isinstance(cadata, (list, tuple)) else (cadata,):
            ctx.load_verify_locations(ca)  # positional DER; each call adds one CA
    return ctx


# ------------------------------------------------------------------------- blocking driver


class SMTP(Session):
    """An SMTP session, smtplib-compatible; the blocking driver of `Session`. Extensions
    are keyword-only."""

    sock = None
    _io = None
    tracer = None  # smtp_ext's trace, while set_debuglevel() has it on
    debuglevel = 0
    default_port = SMTP_PORT
    source_address = None
    socket_pool = context = None
    _implicit = False  # TLS from the first byte (SMTP_SSL)

    def __init__(self, host="", port=0, local_hostname=None, timeout=30, source_address=None,
                 *, context=None, bufsize=512, pool=None, pipelining=True, chunking=True,
                 socket_pool=None, ssl_context=None):
        super().__init__(pool, bufsize)
        if socket_pool is not None and _MPY:
            raise ValueError(_msg(_E_SOCKET_POOL))
        # socket_pool: where sockets come from (CircuitPython's socketpool.SocketPool);
        # context: TLS for STARTTLS and SMTP_SSL (ssl_context is Adafruit's name for it).
        # Only what differs from the class defaults: a small instance dict (heap).
        for name, value, default in (
                ("socket_pool", socket_pool, None),
                ("context", context if context is not None else ssl_context, None),
                ("local_hostname", local_hostname, None), ("timeout", timeout, 30),
                ("source_address", source_address, None), ("pipelining", pipelining, True),
                ("chunking", chunking, True)):
            if value != default:
                setattr(self, name, value)
        if local_hostname is not None:
            _check_text(local_hostname, "local_hostname")
        if host:
            code, msg = self.connect(host, port)
            if code != 220:
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

    # ----- connection

    def connect(self, host="localhost", port=0, source_address=None):
        """Connect and read the greeting; return (code, msg). RFC 5321 3.1: 220 is the
        greeting, 554 (no service) and 421 are refusals."""
        if source_address is not None:
            self.source_address = source_address
        self.close()  # RFC 5321 4.1.4: every session starts afresh with EHLO
        if ":" in host or host[:1] == "[":
            import smtp_ext

            host, port = smtp_ext.host_port(host, port)  # smtplib's "host:port", "[::1]"
        port = port or self.default_port
        self.own(True)
        self.reset()
        self._host = host
        if self.tracer is not None:
            self.tracer.reset()
        try:
            if _MPY:
                # The first address of host that answers (IPv4 or IPv6).
                err = OSError("no address")
                infos = socket.getaddrinfo(host, port, 0, socket.SOCK_STREAM)
                for af, kind, proto, _, addr in infos:
                    self.sock = socket.socket(af, kind, proto)
                    try:
                        self.sock.settimeout(self.timeout)
                        if self.source_address is not None:
                            self.sock.bind(self.source_address)
                        self.sock.connect(addr)
                        break
                    except OSError as e:
                        err = e
                        self.sock.close()
                else:
                    raise err
                try:
                    # Flights are single writes; NODELAY also spares the Nagle + delayed-ACK
                    # stall where the end of data follows a body written from the caller.
                    self.sock.setsockopt(6, 1, 1)  # IPPROTO_TCP, TCP_NODELAY (Linux, lwIP)
                except (OSError, AttributeError):
                    pass
                self._io = _Io(self.sock)
                if self._implicit:
                    self._wrap(self.context)
            else:
                import smtp_cpython

                smtp_cpython.open(self, host, port)
            self._run(self.do_command())
        except SMTPTimeoutError:
            self.close()
            if self._implicit:
                raise
            # A server that waits for a TLS ClientHello says nothing (RFC 8314 3.3).
            raise SMTPTimeoutError(_msg(_E_NO_GREETING))
        except BaseException:
            self.close()
            raise
        if self.code != 220:
            self.close()
        return self.code, self.text

    def _wrap(self, context):
        """TLS on the connected socket. MicroPython: the handshake runs inside the first
        non-blocking reads and writes, so every one of its waits has a deadline."""
        if context is None:
            context = create_context()
        try:
            self.sock = context.wrap_socket(self.sock, server_hostname=self._host,
                                            do_handshake_on_connect=False)
        except (OSError, ValueError) as e:
            raise SMTPTLSError(_msg(_E_HANDSHAKE_HOST, self._host, e))
        self._io = _Io(self.sock, True)
        self._tls = True

    def close(self):
        """Close the connection; the object can connect again."""
        io = self._io
        sock = self.sock
        self._io = self.sock = None
        self.own(False)
        self.ehlo_resp = self.helo_resp = None
        self.does_esmtp = self._tls = False
        self.out = self.tx_start = self.tx_len = 0
        self.src = None  # no reference to the caller's body
        if io is not None:
            io.close()
        if sock is not None and sock is not getattr(io, "sock", io):
            try:
                sock.close()  # a TLS socket whose transport was never made (MemoryError)
            except OSError:
                pass

    # ----- the driver: carry out the session's orders; every wait has a deadline

    def _run(self, ops):
        if self._io is None:
            raise SMTPServerDisconnected(_msg(_E_NOT_CONNECTED))
        try:
            for op in ops:
                if op == _SYNC:
                    self._sync()
                elif op == _REGION:
                    self._write(self.src, self.ri, self.rj - self.ri)
                else:
                    self._check(True)
                    if _MPY:
                        self._wrap(self.context)
                    else:
                        import smtp_cpython

                        smtp_cpython.wrap(self, self.context)
        except BaseException as ex:
            if self.broken(ex):
                self.close()
            raise
        if self.code == 421 and self.out == 0:
            self.close()  # RFC 5321 3.8: the server is closing the channel
        return self.code, self.text

    def _check(self, starttls=False):
        """Before a flight: any byte already waiting answers nothing (unsolicited)."""
        self.poll = False
        if self.rx_pos < self.rx_end or self._io.ready():
            if self.rx_pos == self.rx_end:
                self.received(self._read(_deadline(1000)))
            raise self.unsolicited(starttls)

    def _sync(self):
        n = self.tx_len - self.tx_start
        if n:
            if self.poll and not self.sent:
                self._check()
            self._write(self.tx, self.tx_start, n)
            self.tx_start = self.tx_len = 0
        self.sent = self.out
        while self.out > self.left:
            self.take(self._reply())

    def _write(self, buf, off, n):
        if self.tracer is not None:
            self.tracer.sent(buf, off, n)
        try:
            self._io.write(buf, off, n, self.ms)
        except SMTPException:
            raise
        except OSError as ex:
            raise SMTPServerDisconnected(_msg(_E_WRITE, ex))

    def _reply(self):
        """Read until the next reply is complete; every wait and the whole reply end at the
        deadline (an endless continuation too)."""
        deadline = _deadline(self.wait_ms())
        while True:
            code = self.parse()
            if code:
                if self.tracer is not None:
                    self.tracer.code(code)
                return code
            if _left(deadline) <= 0:
                raise SMTPTimeoutError("timed out")
            self.received(self._read(deadline))

    def _read(self, deadline):
        v = self.rx_view()
        try:
            n = self._io.readinto(v, deadline)
        except SMTPException:
            raise
        except OSError as ex:
            raise SMTPServerDisconnected(_msg(_E_READ, ex))
        if self.tracer is not None:
            self.tracer.received(v, n)
        return n

    # ----- smtplib's methods (the less used ones, docmd, noop, rset, helo, has_extn,
    # esmtp_features, auth, send_many, set_debuglevel, are smtp_ext's: __getattr__)

    def __getattr__(self, name):
        # Loaded on first use (umqtt.robust's pattern, without a subclass to choose).
        import smtp_ext

        return smtp_ext.attr(self, name)

    def quit(self):
        """Send QUIT and close, whatever the server answers."""
        try:
            return self._run(self.do_command(b"QUIT"))
        finally:
            self.close()

    def ehlo(self, name=""):
        """Send EHLO; parse the extensions. Returns (code, msg)."""
        return self._run(self.do_ehlo(_check_text(name, "EHLO name") or self.local_name()))

    def ehlo_or_helo_if_needed(self):
        if self.helo_resp is None and self.ehlo_resp is None:
            self._run(self.do_ehlo(self.local_name(), True))

    def starttls(self, keyfile=None, certfile=None, *, context=None):
        """Upgrade to TLS; fails closed (RFC 3207 6). Returns (code, msg)."""
        if self.socket_pool is not None:
            raise SMTPNotSupportedError(_msg(_E_CP_STARTTLS))
        self.ehlo_or_helo_if_needed()
        if context is not None:
            self.context = context
        return self._run(self.do_starttls())

    def login(self, user, password, *, initial_response_ok=True, mechanism=None,
              allow_plaintext_auth=False):
        """Authenticate with `mechanism`, or the strongest the server offers (CRAM-MD5,
        PLAIN, LOGIN). Credentials only go over TLS unless `allow_plaintext_auth=True`
        (then anyone on the path can read them)."""
        _check_text(user, "user")
        _check_text(password, "password")
        self.ehlo_or_helo_if_needed()
        if self.plain_ok != allow_plaintext_auth:  # (an attribute less: a smaller dict)
            self.plain_ok = allow_plaintext_auth
        return self._run(self.do_login(user, password, mechanism, initial_response_ok))

    def sendmail(self, from_addr, to_addrs, msg, mail_options=(), rcpt_options=(), **options):
        """Send one mail; return {refused address: (code, msg)}. Raises
        SMTPRecipientsRefused only when every recipient was refused (smtplib). Options
        (smtp_ext: RFC 3461 DSN, RFC 8689): notify=, ret=, envid=, requiretls=True."""
        mail = SendResult(from_addr, to_addrs, msg, mail_options, rcpt_options, options)
        self._mails([mail], False)
        if mail.error is not None:
            raise mail.error
        return mail.refused

    def _mails(self, mails, quit, client=None):
        """Run the mails (after EHLO, STARTTLS and AUTH when `client`, a Client, asks for
        them). A failure before the first mail is raised; after it, a mail the server
        accepted stays accepted and the others get the error."""
        if self._io is None:
            raise SMTPServerDisconnected(_msg(_E_NOT_CONNECTED))
        if client is None:
            self.ehlo_or_helo_if_needed()
        try:
            if client is not None:
                self._run(self.do_client(client))
            self._run(self.do_mails(mails, quit))
            self.conclude()
        except Exception as ex:
            if quit and self.mails is None and self._io is not None:
                # A clean refusal before the mails (AUTH 535, STARTTLS 454, no STARTTLS
                # offered) leaves the session in step: say goodbye (RFC 5321 4.1.1.10).
                try:
                    self._run(self.do_command(b"QUIT"))
                except Exception:
                    pass
            self.conclude(ex)
        finally:
            self.mails = None
            if quit:
                self.close()

class SMTP_SSL(SMTP):
    """SMTP over implicit TLS (RFC 8314 3.3, port 465)."""

    default_port = SMTP_SSL_PORT
    _implicit = True


# --------------------------------------------------------------------------- per-mail Client


class Client:
    """A mail client shaped like NetX Duo's: configure once, then `send()` opens a fresh
    connection per mail, sends, quits, and always returns to its initial state. `options`
    are SMTP's keywords: context (or ssl_context), local_hostname, timeout, bufsize, pool,
    pipelining, chunking, socket_pool, source_address."""

    _session = SMTP  # AsyncClient's is smtp_async's driver

    def __init__(self, host, port=None, *, username=None, password=None, from_addr=None,
                 auth="auto", tls=None, allow_plaintext_auth=False, **options):
        # RFC 8314 3.3: port 465 is TLS from the first byte; STARTTLS there would wait for a
        # greeting the server never sends (it waits for the ClientHello).
        if tls is None:
            tls = "implicit" if port == SMTP_SSL_PORT else "starttls"
        elif tls == "starttls" and port == SMTP_SSL_PORT:
            raise ValueError(_msg(_E_PORT_465))
        if tls not in ("starttls", "implicit", "none"):
            raise ValueError(_msg(_E_TLS_ARG))
        if auth not in ("auto", "plain", "login", "cram-md5", "xoauth2", "oauthbearer", "none"):
            raise ValueError(_msg(_E_AUTH_ARG))
        if (username is None) != (password is None) or auth not in ("auto", "none") and (
                username is None):
            raise ValueError(_msg(_E_CREDENTIALS))
        if username is not None:
            _check_text(username, "username")
            _check_text(password, "password")
        if from_addr is not None:
            _check_addr(from_addr, "from_addr", True)
        if tls == "starttls" and options.get("socket_pool") is not None:
            raise ValueError(_msg(_E_CP_TLS))
        self.host = _check_text(host, "host")
        self.port = port or (SUBMISSION_PORT if tls == "starttls" else
                             SMTP_SSL_PORT if tls == "implicit" else SMTP_PORT)
        self.username = username
        self.password = password
        self.from_addr = from_addr
        self.auth = auth
        self.tls = tls
        # The session of every send: made once (options checked now), connected afresh
        # and closed by each send.
        s = self.session = self._session(**options)
        if tls == "implicit":
            s._implicit = True
        if allow_plaintext_auth:
            s.plain_ok = True

    def send(self, to_addrs, msg, *, from_addr=None, **options):
        """Send one mail over a fresh connection; return a SendResult, or raise the
        classified exception. A mail the server accepted is reported as sent even if QUIT
        fails afterwards. The connection is closed whatever happens. Options as for
        SMTP.sendmail (notify, ret, envid, requiretls)."""
        mail = SendResult(self._sender(from_addr), to_addrs, msg, (), (), options)
        self._run([mail])
        if mail.error is not None:
            raise mail.error
        return mail

    def _sender(self, from_addr):
        from_addr = from_addr if from_addr is not None else self.from_addr
        if from_addr is None:
            raise ValueError(_msg(_E_NO_FROM))
        return from_addr

    def _run(self, mails):
        """One connection: greeting, EHLO, STARTTLS, AUTH, the mails, QUIT; then close."""
        s = self.session
        try:
            code, msg = s.connect(self.host, self.port)
            if code != 220:
                raise SMTPConnectError(code, msg)
            s._mails(mails, True, self)
        finally:
            s.close()

    def __getattr__(self, name):
        # send_many and send_mail live in smtp_ext, loaded on their first use.
        import smtp_ext

        return smtp_ext.attr(self, name)
