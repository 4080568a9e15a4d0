# SPDX-License-Identifier: MIT
"""smtp_outbox: a persistent outbox for smtp_client, on the device's filesystem.

    import smtp_client, smtp_outbox
    outbox = smtp_outbox.Outbox("/outbox")             # recovers what a power cut left
    mail_id = outbox.put(["me@example.com"], b"Subject: Alarm\\r\\n\\r\\nDoor open\\r\\n",
                         from_addr="cam@example.com")   # on disk when it returns
    ...
    result = outbox.flush(client)                      # sends what is due
    print(result.sent, result.retried, result.dead, result.remaining, result.due_in)

`put()` never needs the network; `flush(client)` sends every mail that is due over
`client.send()` (an smtp_client.Client), streaming the body from its file.

What happens to a mail (the guarantee is at least once, never zero):
- accepted by the server: the file is removed (one unlink, atomic). A mail accepted while
  the removal could not happen is sent again later: receivers can recognise the duplicate
  by its Message-ID, which is part of the stored bytes (`put` adds one when the message has
  none). Recipients refused while others accepted it: the mail counts as sent, and a report
  `dead/<id>.ref` lists the refused addresses with the server's replies.
- refused for good (5xx to MAIL FROM, to every RCPT, or to the data): moved to `dead/` with
  the server's code and text (see `dead()`, `retry()`, `discard()`).
- transient failure (4xx, connection refused or reset, time-outs, no network, a server that
  breaks the protocol, a 5xx at the greeting, EHLO, STARTTLS or AUTH, which is about the
  device's configuration and not about the mail): kept, next try after an exponential
  backoff (`base` * 2**(tries-1) seconds, at most `cap`, minus up to `jitter` of it). A
  connection-level failure also ends the flush: the next mails would fail the same way.
  After `max_attempts` tries the mail goes to `dead/` with the last error.
- a try is counted before the mail is sent, so a mail that crashes or resets the device
  while being sent also ends in `dead/` after `max_attempts`, instead of looping forever.

Files (all in `root`; `<id>` is 8 decimal digits, in the order of `put`; after 99999999
the ids wrap around to 00000001, skipping ids still in use):
    <id>.mail   written once: "outbox 1 <body size, 10 digits>", "from <addr>" (empty:
                the client's), "to <addr>" per recipient, "time <put time>", an empty line,
                then the message bytes as given (plus a Message-ID line when it had none).
                The part before the empty line is at most 16 KB (several hundred
                recipients): `put` refuses more with ValueError, so flush reads it bounded.
    <id>.st     the mail's state, replaced atomically: "state wait|sending|sent|dead",
                "tries N", "due T", "code C", "error TEXT", "end". No file: never tried.
    *.tmp, *.stt  files being written; ignored and removed (or completed) when the outbox
                opens. Every other file is complete: a write goes to a temporary file that is
                flushed, closed and synced, then renamed over its name (rename is atomic on
                littlefs and POSIX; on FAT MicroPython removes the old name first, and an
                orphaned complete *.stt is adopted).
    dead/<id>.mail + dead/<id>.st   dead letters; dead/<id>.ref  partial refusal reports.
Other names are not the outbox's and are left alone. A file with one of its names that is
not a regular file (a FIFO would block the open forever) or not in its format is never
read beyond these bounds: a .mail goes to dead/ as corrupt, a state counts as missing.

Disk use is bounded: the queue holds at most `max_items` mails and `max_bytes` bytes of
files; `put` raises OutboxFull rather than dropping anything (also when the filesystem is
full). `dead/` keeps the newest `max_dead` entries: the oldest are deleted (counted in the
flush result's `dropped`), so a board left alone never fills up with failures.

One process per outbox folder. Time comes from `clock` (default `time.time`); a due time
further away than `cap` (the clock went back, e.g. a board without RTC before NTP) counts
as due now.
"""

from micropython import const
import os
import sys
import time

__version__ = "0.1.0"

_MPY = sys.implementation.name == "micropython"

_MAGIC = const(b"outbox 1 ")
_SIZE_DIGITS = const(10)
_ENOENT = const(2)
_EEXIST = const(17)
_ENOSPC = const(28)
_BUF = const(512)
_MID = const(b"message-id:")
_HEAD_LINES = const(200)  # a header section longer than this is not a mail header
_HEAD_MAX = const(16384)  # bytes of a .mail's own header (put refuses more)
_ST_MAX = const(2048)  # bytes of a state file: its error text is cut to _TEXT_MAX
_TEXT_MAX = const(400)  # characters of a server reply kept in a state or report
_ID_MAX = const(99999999)  # ids have 8 digits

# Outcomes of one send, from _classify.
_PERMANENT = const(1)  # the mail itself was refused for good: dead letter
_AGAIN = const(2)  # this mail failed for now: back off, go on with the next one
_DOWN = const(3)  # the connection, network or server failed: back off, stop the flush


class OutboxFull(Exception):
    """put() refused a mail: the queue is at max_items or max_bytes, or the filesystem is
    full. Nothing was stored. Not an OSError, so it is not mistaken for a network error."""


class FlushResult:
    """What one flush() did. sent: accepted by the server (removed); retried: kept for a
    later try; dead: moved to dead/; remaining: still queued (including retried); refused:
    sent mails with some recipients refused (a dead/<id>.ref each); dropped: old dead/
    entries deleted to stay within max_dead; error: the exception that ended the flush
    early (network down, ...), else None; due_in: seconds until the next queued mail is
    due (0: now), None when the queue is empty."""

    def __init__(self):
        self.sent = 0
        self.retried = 0
        self.dead = 0
        self.remaining = 0
        self.refused = 0
        self.dropped = 0
        self.error = None
        self.due_in = None

    def __repr__(self):
        return ("FlushResult(sent=%d, retried=%d, dead=%d, remaining=%d, refused=%d, "
                "dropped=%d, due_in=%r, error=%r)" % (
                    self.sent, self.retried, self.dead, self.remaining, self.refused,
                    self.dropped, self.due_in, self.error))


class Dead:
    """A dead/ entry. kind: "dead" (a dead letter: `path` is its file, `code` and `error`
    the server's last reply or the reason, `tries`) or "refused" (a report: the mail was
    sent, `refused` maps address -> (code, text)). `message_id` when known."""

    def __init__(self, id, kind):
        self.id = id
        self.kind = kind
        self.path = None
        self.code = 0
        self.error = ""
        self.tries = 0
        self.refused = None
        self.message_id = None

    def __repr__(self):
        if self.kind == "refused":
            return "Dead(%r, refused=%r)" % (self.id, self.refused)
        return "Dead(%r, code=%d, error=%r, tries=%d)" % (
            self.id, self.code, self.error, self.tries)


# --------------------------------------------------------------------------- file helpers


def _errno(e):
    return e.args[0] if e.args else 0


def _remove(path):
    try:
        os.remove(path)
    except OSError as e:
        if _errno(e) != _ENOENT:
            raise


def _exists(path):
    try:
        os.stat(path)
        return True
    except OSError:
        return False


def _mkdir(path):
    try:
        os.mkdir(path)
    except OSError as e:
        if _errno(e) != _EEXIST:
            raise


def _durable(f):
    """Push a file's bytes to the storage before it is renamed into place."""
    f.flush()  # MicroPython: the VFS flush (fsync on the unix port)
    if not _MPY:
        os.fsync(f.fileno())


def _sync(folder):
    """Make a rename in `folder` durable."""
    if _MPY:
        sync = getattr(os, "sync", None)  # ESP32, rp2; not the unix port (flush fsyncs)
        if sync is not None:
            sync()
    else:
        fd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def _replace(src, dst):
    # POSIX and littlefs replace dst atomically; a filesystem that refuses to rename over
    # an existing file gets it removed first (the complete src is adopted on recovery).
    try:
        os.rename(src, dst)
    except OSError:
        _remove(dst)
        os.rename(src, dst)


def _write(f, buf, off, n):
    if n:
        f.write(memoryview(buf)[off : off + n])


def _line(text):
    """One header value on one line: server replies may span lines. At most _TEXT_MAX
    characters (4 bytes each at most in UTF-8), so a state file stays within _ST_MAX."""
    if isinstance(text, (bytes, bytearray)):
        try:
            text = bytes(text).decode()
        except UnicodeError:
            text = repr(bytes(text))
    return str(text)[:_TEXT_MAX].replace("\r", "").replace("\n", " | ")


def _write_state(path, state, tries, due, code, error):
    """Write a state file atomically (path.stt, then rename to path.st)."""
    tmp = path + "t"
    f = open(tmp, "wb")
    try:
        f.write(("state %s\ntries %d\ndue %d\ncode %d\nerror %s\nend\n" % (
            state, tries, due, code, _line(error))).encode())
        _durable(f)
    finally:
        f.close()
    _replace(tmp, path)


def _open(path):
    """(file opened for reading, size) for one of the outbox's files. Only a regular file
    (stat()[0] & S_IFMT 0xF000 == S_IFREG 0x8000, on MicroPython too): opening a FIFO
    would wait for a writer forever."""
    st = os.stat(path)
    if st[0] & 0xF000 != 0x8000:
        raise ValueError("not a regular file")
    return open(path, "rb"), st[6]


def _read_kv(path, limit):
    """A state or report file as a list of (key, value) str pairs; None when it is missing,
    not a regular file, or incomplete (no "end" line, also when longer than limit bytes;
    -1: no limit)."""
    try:
        f = _open(path)[0]
    except (OSError, ValueError):
        return None
    try:
        data = f.read(limit)
    finally:
        f.close()
    try:
        lines = data.decode().split("\n")
    except UnicodeError:
        return None
    if len(lines) < 2 or lines[-1] != "" or lines[-2] != "end":
        return None
    out = []
    for ln in lines[:-2]:
        k, _, v = ln.partition(" ")
        out.append((k, v))
    return out


def _read_state(path):
    """(state, tries, due, code, error) from a state file, or None."""
    kv = _read_kv(path, _ST_MAX)
    if kv is None:
        return None
    d = {}
    for k, v in kv:
        d[k] = v
    try:
        return (d["state"], int(d["tries"]), int(d["due"]), int(d["code"]), d.get("error", ""))
    except (KeyError, ValueError):
        return None


def _read_head(f):
    """Parse a .mail header from an open file; return (from, [to], body offset, body size).
    Raises ValueError when the header is not complete. Reads at most _HEAD_MAX bytes, the
    most put() writes: a file without line ends costs no more."""
    first = f.readline(len(_MAGIC) + _SIZE_DIGITS + 1)
    if not first.startswith(_MAGIC) or len(first) != len(_MAGIC) + _SIZE_DIGITS + 1:
        raise ValueError("not an outbox mail")
    size = int(first[len(_MAGIC) : -1])
    frm = None
    to = []
    left = _HEAD_MAX - len(first)
    while left > 0:
        ln = f.readline(left)
        if not ln.endswith(b"\n"):
            raise ValueError("header too long" if len(ln) == left else "truncated header")
        left -= len(ln)
        if ln == b"\n":
            if not to:
                raise ValueError("no recipient")
            return frm, to, f.tell(), size
        k, _, v = ln[:-1].partition(b" ")
        if k == b"from":
            frm = v.decode() if v else None
        elif k == b"to":
            to.append(v.decode())
    raise ValueError("header too long")


def _check_mail(path):
    """(from, [to], offset, size) when path is a complete .mail file, else raise ValueError."""
    f, n = _open(path)
    try:
        head = _read_head(f)
    finally:
        f.close()
    if n != head[2] + head[3]:
        raise ValueError("size mismatch")
    return head


def _message_id(f, offset):
    """The Message-ID of the stored message (for reports), or None."""
    f.seek(offset)
    start = True  # ln begins a line (a longer line is read in pieces)
    for _ in range(_HEAD_LINES):
        ln = f.readline(1000)  # RFC 5322 2.1.1: a line is at most 998 characters and CRLF
        if not ln or start and ln in (b"\n", b"\r\n"):
            return None
        if start and ln[:11].lower() == _MID:
            return ln[11:].strip().decode("utf-8", "replace")
        start = ln.endswith(b"\n")
    return None


def _is_id(id):
    # What _new_id makes: 8 ASCII digits (str.isdigit also takes other scripts' digits,
    # which take more than a byte each in UTF-8).
    return isinstance(id, str) and len(id) == 8 and len(id.encode()) == 8 and id.isdigit()


def _classify(e):
    """(outcome, code, text) for an exception from Client.send()."""
    import smtp_client as s

    if isinstance(e, s.SMTPRecipientsRefused):
        codes = [c for c, _ in e.recipients.values()]
        text = "; ".join("%s: %d %s" % (a, c, _line(t)) for a, (c, t) in e.recipients.items())
        code = max(codes) if codes else 0
        if 421 in codes:
            return _DOWN, 421, text  # RFC 5321 3.8: the server is closing the channel
        return (_AGAIN if e.transient else _PERMANENT), code, text
    if isinstance(e, (s.SMTPSenderRefused, s.SMTPDataError)):
        # A reply to this mail's transaction: about the mail (5xx) or the moment (4xx).
        code = e.smtp_code
        if code == 421:
            return _DOWN, code, _line(e.smtp_error)
        return (_PERMANENT if e.permanent else _AGAIN), code, _line(e.smtp_error)
    if isinstance(e, s.SMTPResponseException):
        # Greeting, EHLO, STARTTLS, AUTH: about the device or the server, not the mail.
        return _DOWN, e.smtp_code, _line(e.smtp_error)
    return _DOWN, 0, _line(repr(e))


# -------------------------------------------------------------------------------- outbox


class Outbox:
    """A persistent queue of mails in the folder `root` (created if missing; its parent
    must exist). Opening it recovers from whatever a power cut left. See the module
    docstring for the policy; the keyword arguments are its numbers:

    max_items, max_bytes: the queue's bound (put raises OutboxFull beyond it).
    max_dead: dead/ entries kept (the oldest are deleted beyond it).
    base, cap, jitter: backoff in seconds: base * 2**(tries-1), at most cap, minus up to
        jitter (a fraction, 0 for none) of it at random.
    max_attempts: tries before a mail that keeps failing transiently goes to dead/.
    clock: a function returning seconds (default time.time).
    from_addr: the default sender for put() and put_mail().
    """

    def __init__(self, root="outbox", *, max_items=50, max_bytes=256 * 1024, max_dead=10,
                 base=30, cap=3600, jitter=0.2, max_attempts=10, clock=None, from_addr=None):
        if max_items < 1 or max_bytes < 1 or max_dead < 0 or max_attempts < 1:
            raise ValueError("limits must be positive")
        if base < 0 or cap < base or not 0 <= jitter < 1:
            raise ValueError("need 0 <= base <= cap and 0 <= jitter < 1")
        root = root.rstrip("/") or "/"
        self.root = root
        self.dead_dir = root + "/dead" if root != "/" else "/dead"
        self.max_items = max_items
        self.max_bytes = max_bytes
        self.max_dead = max_dead
        self.base = base
        self.cap = cap
        self.jitter = jitter
        self.max_attempts = max_attempts
        self.clock = clock if clock is not None else time.time
        self.from_addr = from_addr
        self._buf = None  # put()'s read buffer, allocated on the first streamed put
        self._q = {}  # id -> [tries, due, size]; due None: sent, removal pending
        self._bytes = 0
        self._next = 1
        _mkdir(root)
        _mkdir(self.dead_dir)
        self._recover()

    # ----- paths and state

    def _p(self, id, ext):
        return self.root + "/" + id + ext

    def _d(self, id, ext):
        return self.dead_dir + "/" + id + ext

    def _now(self):
        return int(self.clock())

    def __len__(self):
        return len(self._q)

    def pending(self):
        """Ids of the queued mails, oldest first."""
        return sorted(self._q)

    @property
    def used_bytes(self):
        """Bytes of the queued mails' files (what max_bytes bounds)."""
        return self._bytes

    # ----- recovery

    def _recover(self):
        """Bring the folders into a consistent state after a crash or power cut."""
        top = 0
        names = os.listdir(self.root)
        ids = {}
        for name in names:
            id, dot, ext = name.partition(".")
            if not dot or not _is_id(id):
                continue
            if ext == "tmp":
                _remove(self._p(id, ".tmp"))  # a put that never returned: not stored
                continue
            ids.setdefault(id, []).append(ext)
        for id in ids:
            exts = ids[id]
            if "mail" in exts:
                top = max(top, int(id))
            self._recover_id(id, exts)
        for name in os.listdir(self.dead_dir):
            id, dot, ext = name.partition(".")
            if not dot or not _is_id(id):
                continue
            if ext in ("tmp", "stt", "reft"):
                _remove(self._d(id, "." + ext))
                continue
            if ext == "st" and not _exists(self._d(id, ".mail")):
                _remove(self._d(id, ".st"))  # retry() moved the mail back
                continue
            top = max(top, int(id))
        self._next = top + 1

    def _recover_id(self, id, exts):
        """Recover one id of the queue from the extensions of its files: finish or drop a
        state write, finish a move to dead/, queue the mail with its state."""
        st_path = self._p(id, ".st")
        if "stt" in exts:
            # A state write that did not reach its rename: adopt it if complete and
            # no older state is there (FAT's remove-then-rename), else drop it.
            if "st" not in exts and _read_state(st_path + "t") is not None:
                os.rename(st_path + "t", st_path)
                exts.append("st")
            else:
                _remove(st_path + "t")
        state = _read_state(st_path) if "st" in exts else None
        if "mail" not in exts:
            if state is not None and state[0] == "dead" and _exists(self._d(id, ".mail")):
                _replace(st_path, self._d(id, ".st"))  # finish a move to dead/
            elif "st" in exts:
                _remove(st_path)  # the mail is gone (sent): its state is left over
            return
        mail = self._p(id, ".mail")
        try:
            head = _check_mail(mail)
        except (OSError, ValueError) as e:
            self._bury(id, 0, "corrupt mail file: %s" % e, 0)
            return
        if "st" in exts and state is None:
            _remove(st_path)  # unreadable state: the mail starts again
        size = head[2] + head[3]
        ent = self._q[id] = [0, 0, size]
        self._bytes += size
        if state is None:
            return
        ent[0] = state[1]
        if state[0] == "sent":
            ent[1] = None
            self._done(id)  # accepted before the cut: remove it, don't send it again
        elif state[0] == "dead":
            self._bury(id, state[3], state[4], state[1])
        elif state[0] == "wait":
            ent[1] = state[2]
        # "sending": the cut came during the send; due now: sent again (at least once).

    # ----- put

    def _new_id(self):
        # Ids keep their 8 digits, so recovery always finds them: past 99999999 they wrap
        # around to 00000001, skipping every id still in use (queued or in dead/). The
        # oldest-first order breaks once at the wrap; no mail is lost or overwritten.
        n = self._next
        while True:
            if n > _ID_MAX:
                n = 1
            id = "%08d" % n
            n += 1
            if id not in self._q and not _exists(self._d(id, ".mail")) \
                    and not _exists(self._d(id, ".ref")):
                self._next = n
                return id

    def put(self, to_addrs, msg, *, from_addr=None):
        """Store a mail for sending; return its id once it is on disk (and synced).

        to_addrs, msg, from_addr: as for Client.send(): msg may be bytes, bytearray, an
        ASCII str, a file or any object with readinto (e.g. smtp_message.Message), or an
        iterable of bytes; it is streamed to the file, never joined. from_addr None: the
        outbox's from_addr, else the client's at flush time. A message whose header
        section has no Message-ID gets one (RFC 5322 3.6.4), so a receiver can recognise
        a duplicate. Raises OutboxFull (nothing stored), ValueError/TypeError for bad
        arguments, OSError for filesystem errors (nothing stored)."""
        import smtp_client

        if from_addr is None:
            from_addr = self.from_addr
        if from_addr is not None:
            smtp_client._check_addr(from_addr, "from_addr")
        to = [to_addrs] if isinstance(to_addrs, (str, bytes)) else list(to_addrs)
        if not to:
            raise ValueError("no recipients")
        for a in to:
            smtp_client._check_addr(a, "recipient")
        msg = smtp_client._body(msg)
        if len(self._q) >= self.max_items:
            raise OutboxFull("outbox full: %d mails queued" % len(self._q))
        budget = self.max_bytes - self._bytes
        if isinstance(msg, (bytes, bytearray)) and len(msg) > budget:
            raise _full(budget)
        id = self._new_id()
        tmp = self._p(id, ".tmp")
        try:
            f = open(tmp, "wb")
            try:
                f.write(_MAGIC + b"0" * _SIZE_DIGITS + b"\n")
                f.write(b"from " + (smtp_client._b(from_addr) if from_addr else b"") + b"\n")
                for a in to:
                    f.write(b"to " + smtp_client._b(a) + b"\n")
                f.write(b"time %d\n\n" % self._now())
                head = f.tell()
                if head > _HEAD_MAX:  # what flush reads back, bounded (_read_head)
                    raise ValueError("too many recipients: the envelope is over %d bytes"
                                     % _HEAD_MAX)
                body = self._store(f, msg, from_addr, budget - head)
                f.seek(len(_MAGIC))
                f.write(b"%010d" % body)
                _durable(f)
            finally:
                f.close()
            os.rename(tmp, self._p(id, ".mail"))  # the commit: from now on the mail exists
            _sync(self.root)
        except BaseException as e:
            try:
                _remove(tmp)
            except OSError:
                pass
            if isinstance(e, OSError) and _errno(e) == _ENOSPC:
                raise OutboxFull("filesystem full")
            raise
        self._q[id] = [0, 0, head + body]
        self._bytes += head + body
        return id

    def put_mail(self, to_addrs, subject, body, *, from_addr=None, **kw):
        """Compose a mail with smtp_message.Message (the other keyword arguments are its
        own: cc, bcc, html, attachments, ...) and put() it. Attachments given as paths are
        read now, into the outbox. Text goes out as quoted-printable unless eightbit=True:
        the server is not known yet. Returns the id."""
        import smtp_message

        if from_addr is None:
            from_addr = self.from_addr
        if from_addr is None:
            raise ValueError("no from_addr")
        m = smtp_message.Message(from_addr, to_addrs, subject, body, **kw)
        try:
            return self.put(m.recipients, m, from_addr=m.sender)
        finally:
            m.close()

    def _store(self, f, msg, from_addr, budget):
        """Write the message; add a Message-ID at the end of its header section when it
        has none. Returns the bytes written; OutboxFull past budget."""
        # Header scan state: [at a line start, bytes of this line's start, Message-ID
        # seen, done]. Only the header section is scanned, with find: a 1 MB body costs
        # nothing more than its writes.
        st = [True, b"", False, False]
        n = 0
        if isinstance(msg, (bytes, bytearray)):
            n = self._chunk(f, msg, len(msg), st, from_addr, n, budget)
        elif hasattr(msg, "readinto"):
            buf = self._buf
            if buf is None:
                buf = self._buf = bytearray(_BUF)
            while True:
                k = msg.readinto(buf)
                if not k:
                    break
                n = self._chunk(f, buf, k, st, from_addr, n, budget)
        else:
            for piece in msg:
                if isinstance(piece, memoryview):
                    piece = bytes(piece)
                if not isinstance(piece, (bytes, bytearray)):
                    raise TypeError("message chunks must be bytes")
                n = self._chunk(f, piece, len(piece), st, from_addr, n, budget)
        return n

    def _chunk(self, f, src, k, st, from_addr, n, budget):
        i = 0
        if not st[3]:
            end = _scan(src, k, st)
            if end >= 0:
                st[3] = True
                if not st[2]:
                    mid = b"Message-ID: " + _new_mid(from_addr) + b"\r\n"
                    n += end + len(mid)
                    if n > budget:
                        raise _full(budget)
                    _write(f, src, 0, end)
                    f.write(mid)
                    i = end
        n += k - i
        if n > budget:
            raise _full(budget)
        _write(f, src, i, k - i)
        return n

    # ----- flush

    def _due(self, ent, now):
        due = ent[1]
        # A due time beyond the backoff cap means the clock went back: due now.
        return due is None or due <= now or due > now + self.cap

    def flush(self, client, *, limit=None):
        """Send the mails that are due, oldest first, each over client.send(); return a
        FlushResult. limit: at most this many sends. Never raises for a failed send (see
        the module docstring), except for ValueError/TypeError (e.g. no from_addr anywhere)
        and MemoryError, which are recorded as a failed try and re-raised. Filesystem
        errors (OSError while writing the outbox's own files) are raised."""
        r = FlushResult()
        now = self._now()
        tries = 0
        for id in sorted(self._q):
            ent = self._q.get(id)
            if ent is None:
                continue
            if ent[1] is None:
                self._done(id)  # accepted earlier, removal failed: retry the removal
                continue
            if r.error is not None or not self._due(ent, now):
                continue
            if limit is not None and tries >= limit:
                continue
            tries += 1
            self._send_one(client, id, ent, now, r)
        for id in self._q:
            ent = self._q[id]
            if ent[1] is None:
                continue
            r.remaining += 1
            wait = 0 if self._due(ent, now) else ent[1] - now
            if r.due_in is None or wait < r.due_in:
                r.due_in = wait
        if r.dead or r.refused:
            r.dropped = self._trim_dead()
        return r

    def _send_one(self, client, id, ent, now, r):
        mail = self._p(id, ".mail")
        try:
            f = _open(mail)[0]
        except (OSError, ValueError):
            self._forget(id)  # removed or replaced behind our back
            return
        try:
            try:
                frm, to, off, _ = _read_head(f)
            except ValueError as e:
                f.close()
                f = None
                self._bury(id, 0, "corrupt mail file: %s" % e, ent[0])
                r.dead += 1
                return
            ent[0] += 1
            # Counted before the send: a mail that resets the device still ends somewhere.
            self._state(id, "sending", ent, 0, "")
            f.seek(off)
            try:
                res = client.send(to, f, from_addr=frm)
            except Exception as e:
                kind, code, text = _classify(e)
                if kind == _PERMANENT:
                    f.close()
                    f = None
                    self._bury(id, code, text, ent[0])
                    r.dead += 1
                    return
                self._again(id, ent, now, code, text, r)
                if isinstance(e, (ValueError, TypeError, MemoryError)):
                    raise
                if kind == _DOWN:
                    r.error = e
                return
            if res.refused:
                try:
                    self._report(id, f, off, frm, res.refused)
                except OSError:
                    _remove(self._d(id, ".reft"))  # no room for the report: still sent
                r.refused += 1
            f.close()
            f = None
            self._done(id)
            r.sent += 1
        finally:
            if f is not None:
                f.close()

    def _again(self, id, ent, now, code, text, r):
        if ent[0] >= self.max_attempts:
            self._bury(id, code, "gave up after %d tries: %s" % (ent[0], text), ent[0])
            r.dead += 1
            return
        delay = min(self.cap, self.base * (1 << min(ent[0] - 1, 30)))
        if self.jitter and delay:
            import random

            delay -= delay * self.jitter * random.getrandbits(16) / 65536
        ent[1] = now + int(delay)
        self._state(id, "wait", ent, code, text)
        r.retried += 1

    def _state(self, id, state, ent, code, text):
        # The count and the schedule also live in memory: on a full filesystem the mail
        # is still sent (the state only protects against crash loops and restarts).
        try:
            _write_state(self._p(id, ".st"), state, ent[0], ent[1], code, text)
        except OSError:
            _remove(self._p(id, ".stt"))

    def _forget(self, id):
        ent = self._q.pop(id, None)
        if ent is not None:
            self._bytes -= ent[2]

    def _done(self, id):
        """The server accepted the mail: remove it (the unlink is the commit)."""
        try:
            _remove(self._p(id, ".mail"))
        except OSError:
            # Could not remove it: say "sent" so it is never sent again, retry the removal
            # at the next flush or open.
            ent = self._q[id]
            if ent[1] is not None:
                ent[1] = None
                _write_state(self._p(id, ".st"), "sent", ent[0], 0, 250, "")
            return
        _remove(self._p(id, ".st"))
        self._forget(id)

    def _bury(self, id, code, text, tries):
        """Move a mail to dead/ with the reason: state "dead" first, then the moves, each
        atomic; recovery finishes a move a power cut interrupted."""
        st = self._p(id, ".st")
        try:
            _write_state(st, "dead", tries, 0, code, text)
        except OSError:
            _remove(st + "t")  # no room for the reason: the letter still moves
            _remove(st)
        os.rename(self._p(id, ".mail"), self._d(id, ".mail"))
        if _exists(st):
            _replace(st, self._d(id, ".st"))
        _sync(self.root)
        self._forget(id)

    def _report(self, id, f, off, frm, refused):
        """dead/<id>.ref: the recipients a sent mail was refused for, with the replies."""
        mid = _message_id(f, off)
        path = self._d(id, ".ref")
        tmp = path + "t"
        out = open(tmp, "wb")
        try:
            out.write(("mid %s\nfrom %s\n" % (mid or "", frm or "")).encode())
            for a in refused:
                code, text = refused[a]
                out.write(("refused %d %s %s\n" % (code, a, _line(text))).encode())
            out.write(b"end\n")
            _durable(out)
        finally:
            out.close()
        _replace(tmp, path)

    # ----- dead letters

    def _dead_ids(self):
        ids = {}
        for name in os.listdir(self.dead_dir):
            id, dot, ext = name.partition(".")
            if dot and _is_id(id) and ext in ("mail", "ref"):
                ids[id] = ext
        return ids

    def _trim_dead(self):
        ids = self._dead_ids()
        drop = sorted(ids)[: max(len(ids) - self.max_dead, 0)]
        for id in drop:
            self.discard(id)
        return len(drop)

    def dead(self):
        """The dead/ entries, oldest first, as Dead objects."""
        out = []
        ids = self._dead_ids()
        for id in sorted(ids):
            if ids[id] == "ref":
                d = Dead(id, "refused")
                d.refused = {}
                for k, v in _read_kv(self._d(id, ".ref"), -1) or ():
                    if k == "mid":
                        d.message_id = v or None
                    elif k == "refused":
                        code, _, rest = v.partition(" ")
                        addr, _, text = rest.partition(" ")
                        d.refused[addr] = (int(code), text)
            else:
                d = Dead(id, "dead")
                d.path = self._d(id, ".mail")
                state = _read_state(self._d(id, ".st"))
                if state is not None:
                    d.tries, d.code, d.error = state[1], state[3], state[4]
                try:
                    f = _open(d.path)[0]
                    try:
                        d.message_id = _message_id(f, _read_head(f)[2])
                    finally:
                        f.close()
                except (OSError, ValueError):
                    pass
            out.append(d)
        return out

    def discard(self, id):
        """Delete a dead/ entry (dead letter or report). ValueError for anything that is not
        an id put() made: no path can reach outside dead/."""
        if not _is_id(id):
            raise ValueError("not an outbox id: %r" % (id,))
        _remove(self._d(id, ".mail"))
        _remove(self._d(id, ".st"))
        _remove(self._d(id, ".ref"))

    def retry(self, id):
        """Put a dead letter back in the queue, with its tries reset (after fixing what
        made it fail). The bounds of put() apply. ValueError for anything that is not an
        id put() made."""
        if not _is_id(id):
            raise ValueError("not an outbox id: %r" % (id,))
        mail = self._d(id, ".mail")
        size = os.stat(mail)[6]
        if len(self._q) >= self.max_items or self._bytes + size > self.max_bytes:
            raise OutboxFull("outbox full")
        _check_mail(mail)
        os.rename(mail, self._p(id, ".mail"))
        _remove(self._d(id, ".st"))
        _sync(self.root)
        self._q[id] = [0, 0, size]
        self._bytes += size


def _full(budget):
    return OutboxFull("outbox full: the mail is larger than the %d bytes left of max_bytes"
                      % max(budget, 0))


def _scan(src, k, st):
    """Scan src[0:k] for the end of the header section (the first empty line), carrying
    the line state in st across chunks; note a Message-ID field on the way. Returns the
    offset of the empty line, or -1 when the header section continues."""
    i = 0
    while i < k:
        if st[0]:
            c = src[i]
            if c == 10 or c == 13:  # RFC 5322 2.1: an empty line ends the header section
                return i
            st[0] = False
            st[1] = b""
        lf = src.find(b"\n", i, k)
        e = lf if lf >= 0 else k
        got = len(st[1])
        if got < 11:
            st[1] += bytes(src[i : min(e, i + 11 - got)])
            if len(st[1]) == 11 and st[1].lower() == _MID:
                st[2] = True
        if lf < 0:
            return -1
        i = lf + 1
        st[0] = True
    return -1


def _new_mid(from_addr):
    """A new Message-ID: 64 random bits at the sender's domain (RFC 5322 3.6.4)."""
    import binascii

    dom = "localhost"
    if from_addr:
        a = from_addr.decode() if isinstance(from_addr, (bytes, bytearray)) else from_addr
        at = a.rfind("@")
        if at >= 0 and at + 1 < len(a):
            dom = a[at + 1 :]
    return b"<" + binascii.hexlify(os.urandom(8)) + b"@" + dom.encode() + b">"
