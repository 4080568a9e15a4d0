# SPDX-License-Identifier: MIT
"""smtp_message: RFC 5322 / MIME mail composed on the fly, for smtp_client.

A `Message` is what `SMTP.sendmail()` and `Client.send()` take as `msg`: an object with
`readinto(buf)`. Each call writes the next piece of the mail into `buf` (the core passes its
preallocated `pool.chunk`) and returns how many bytes it wrote; 0 means the end. Nothing is
joined: headers are rendered once per mail (a few hundred bytes), bodies and attachments are
encoded straight from your bytes, str or file (anything with `readinto`) into `buf`.

    import smtp_message
    msg = smtp_message.Message("cam@example.com", ["me@example.com"], "Motion", "See photo.",
                               html='<img src="cid:snap@cam">',
                               inline=[("snap@cam", "snap.jpg", jpeg_bytes)],
                               attachments=["/log.txt"])
    with smtp_client.SMTP(host, 587) as s:
        s.starttls(context=ctx)
        s.login(user, password)
        refused = msg.send(s)        # BODY=8BITMIME when the server offers it and it helps

or, in one call over a fresh connection: `client.send_mail(to, subject, body, ...)`.

What comes out (RFC 5322, RFC 2045-2047, RFC 2231, RFC 2387):
- Date (RFC 5322 3.3, UTC, from the RTC or `date=`), Message-ID (random, at the sender's
  domain), From, To, Cc (Bcc only in the envelope), Reply-To, Subject (RFC 2047 encoded-words
  when not plain ASCII), X-Priority + Importance, your own headers (checked), MIME-Version.
- text/plain (and text/html) in UTF-8: 7bit when ASCII, 8bit when the server offers
  8BITMIME (`send()` asks its EHLO, or call `plan(True)` and add BODY=8BITMIME yourself),
  quoted-printable otherwise, and always for a body read from a file, whose line lengths
  are not known in advance.
- multipart/alternative for an HTML version, multipart/related for inline images
  (Content-ID), multipart/mixed for attachments, in base64 with 76-character lines; file
  names in RFC 2231 form when not short ASCII.
- Header lines are folded at 78 characters; no line of the mail exceeds 998.
- Each address is one mailbox of its header field (RFC 5322 3.4): display names with
  specials and local parts that are not a dot-atom go out as quoted-strings; a domain that
  is neither a dot-atom nor a [literal] is refused. The envelope keeps the addresses given.

The buffer contract: the mail is written into the caller's `buf` and only there, so the
caller must use those bytes before the next `readinto` call (the core sends them first).
The encoders allocate nothing: base64 and quoted-printable are table-driven byte loops, and
a file is read with `readinto` into the end of that same `buf` and encoded in place to its
start (base64 turns 57 bytes into 78, so the reading stays ahead of the writing). A mail
with a 1 MB attachment needs no more heap than the same mail without it.
"""

from micropython import const
import sys

__version__ = "0.1.0"

_MPY = sys.implementation.name == "micropython"

_CR = const(13)
_LF = const(10)
_EQ = const(61)
_SP = const(32)
_TAB = const(9)
_LINE = const(78)  # RFC 5322 2.1.1: lines SHOULD be at most 78 characters
_MAX_LINE = const(998)  # RFC 5322 2.1.1: lines MUST be at most 998 characters
_EW = const(75)  # RFC 2047 2: an encoded-word is at most 75 characters
_B64_RAW = const(57)  # RFC 2045 6.8: 76 base64 characters per line encode 57 bytes
_MIN_BUF = const(80)  # readinto needs room for one base64 line and CRLF
_MIN_YEAR = const(2025)  # an RTC before this year was never set
_B64 = const(b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/")
_HEX = const(b"0123456789ABCDEF")

# NetX Duo's NX_SMTP_MAIL_PRIORITY_* values; "low", "normal", "high" work too.
PRIORITY_LOW = const(1)
PRIORITY_NORMAL = const(2)
PRIORITY_HIGH = const(4)

# Text part transfer encodings.
_7BIT = const(0)
_8BIT = const(1)
_QP = const(2)

# Tables as single strings: one object each in RAM, not a tuple of many.
_DAYS = const("SunMonTueWedThuFriSat")
_MONTHS = const("JanFebMarAprMayJunJulAugSepOctNovDec")
_SAKAMOTO = const(b"\x00\x03\x02\x05\x00\x03\x05\x01\x04\x06\x02\x04")

# Headers the composer writes itself; a user header may not repeat them.
_OWN = const(" date from sender to cc bcc reply-to subject message-id mime-version x-priority "
             "importance ")

# " extension type " pairs for file names without a content type.
_TYPES = const(" txt text/plain log text/plain csv text/csv htm text/html html text/html "
               "json application/json xml application/xml pdf application/pdf "
               "zip application/zip gz application/gzip jpg image/jpeg jpeg image/jpeg "
               "png image/png gif image/gif bmp image/bmp wav audio/wav ")

# RFC 5322 3.2.3 atext, besides letters and digits (a display name made of these is sent as is).
_ATEXT = "!#$%&'*+-/=?^_`{|}~ "
# RFC 2231 7 / RFC 2045 5.1 attribute-char, besides letters and digits (not percent-encoded).
_ATTR = "!#$&+-.^_`|~"


# ------------------------------------------------------------------------ copy and checks


def _copy(dst, d, src, s, n):
    # dst[d:d+n] = src[s:s+n]. Assigning a whole object does not allocate; on MicroPython a
    # slice of src would, so a part of it is copied byte by byte.
    if s == 0 and n == len(src):
        dst[d : d + n] = src
    elif _MPY:
        for k in range(n):
            dst[d + k] = src[s + k]
    else:
        dst[d : d + n] = src[s : s + n]


def _printable(text):
    # Printable ASCII and space only: anything else is encoded.
    for ch in text:
        if not " " <= ch <= "~":
            return False
    return True


def _check(value, what):
    # RFC 5322 2.2: a CR or LF in a header value would end the header and let a caller's
    # data add headers or a body (header injection); NUL is not allowed in mail at all.
    if not isinstance(value, str):
        raise TypeError("%s must be str" % what)
    if "\r" in value or "\n" in value or "\0" in value:
        raise ValueError("CR, LF or NUL in %s" % what)
    return value


def _atext(text, more):
    # RFC 5322 3.2.3 atext (RFC 6532 3.2: UTF-8 too), and the characters in `more`.
    for ch in text:
        if not (ch.isalpha() or ch.isdigit() or ch in _ATEXT or ch in more or ch >= "\x80"):
            return False
    return True


def _check_addr(addr, what):
    _check(addr, what)
    for ch in addr:
        if ch in "<>,; \t":
            raise ValueError("%s contains %r: %r" % (what, ch, addr))
    # RFC 5322 3.4.1: the domain is a dot-atom or a domain-literal. Unlike the local part
    # (see _addr_spec) it cannot be quoted: other specials there are refused.
    at = addr.rfind("@")
    dom = addr[at + 1 :]
    if dom[:1] == "[" and dom[-1:] == "]":
        dom = dom[1:-1]
        ok = "[" not in dom and "]" not in dom and "\\" not in dom  # dtext
    else:
        ok = dom and _atext(dom, ".")
    if at < 0 or not ok:
        raise ValueError("%s is not an address: %r" % (what, addr))
    return addr


def _mailbox(entry, what):
    # "addr@example.com" or ("Display Name", "addr@example.com").
    if isinstance(entry, str):
        return None, _check_addr(entry, what)
    if isinstance(entry, (tuple, list)) and len(entry) == 2:
        name = entry[0]
        if name is not None:
            _check(name, what + " name")
        return name or None, _check_addr(entry[1], what)
    raise TypeError("%s must be an address or a (name, address) pair" % what)


def _mailboxes(entries, what):
    if entries is None:
        return []
    if isinstance(entries, str) or (
        isinstance(entries, tuple) and len(entries) == 2 and isinstance(entries[1], str)
        and (entries[0] is None or isinstance(entries[0], str) and "@" not in entries[0])
    ):
        entries = [entries]  # one address, or one (name, address) pair
    return [_mailbox(e, what) for e in entries]


# ------------------------------------------------------------------------------ headers


def _b64text(data):
    import binascii

    return binascii.b2a_base64(data)[:-1].decode()


def _encoded_words(data, first, rest=_EW):
    """RFC 2047 "B" encoded-words for the UTF-8 bytes `data`: the first at most `first`
    characters long, the others at most `rest`. A word never splits a UTF-8 character."""
    out = []
    limit = first if first >= 20 else rest  # too little room: a long line, once
    i = 0
    n = len(data)
    while i < n:
        j = i + (limit - 12) // 4 * 3  # =?utf-8?B? and ?= are 12 characters
        if j >= n:
            j = n
        else:
            while data[j] & 0xC0 == 0x80:  # a continuation byte: back up to a character start
                j -= 1
        out.append("=?utf-8?B?" + _b64text(data[i:j]) + "?=")
        i = j
        limit = rest
    return out or ["=?utf-8?B??="]


def _text_tokens(value, first):
    """Words of an unstructured header value (RFC 5322 3.2.5), for _fold. Printable ASCII is
    sent as is and folded at its spaces; anything else as encoded-words (RFC 2047 5.1)."""
    if _printable(value) and "=?" not in value:
        words = value.split(" ")
        if max(len(w) for w in words) < _MAX_LINE - 80:
            return words
    return _encoded_words(value.encode(), first)


def _phrase_tokens(name, first):
    """A display name (RFC 5322 3.2.5 phrase): atoms, one quoted-string, or encoded-words."""
    if _printable(name) and "=?" not in name and len(name) < _MAX_LINE - 80:
        if _atext(name, ""):
            return name.split()
        # RFC 5322 3.2.4: a quoted-string, with '"' and "\\" as quoted-pairs.
        return ['"' + name.replace("\\", "\\\\").replace('"', '\\"') + '"']
    return _encoded_words(name.encode(), first)


def _addr_spec(addr):
    """addr as a header shows it (RFC 5322 3.4.1 addr-spec): the local part as given when
    it is a dot-atom or already a quoted-string, else made a quoted-string (3.2.4). Left
    bare, a "(" would open a comment and a '"' a quoted-string running over the next
    addresses of the field, hiding them. _check_addr checked the domain."""
    at = addr.rfind("@")
    local = addr[:at]
    n = len(local)
    if n > 1 and local[0] == '"' and local[-1] == '"':
        i = 1
        while i < n - 1 and local[i] != '"':
            i += 2 if local[i] == "\\" else 1  # a quoted-pair
        if i == n - 1:
            return addr  # quoted, and nothing escapes its end
    elif n and local[0] != "." and local[-1] != "." and ".." not in local \
            and _atext(local, "."):
        return addr  # a dot-atom
    return '"' + local.replace("\\", "\\\\").replace('"', '\\"') + '"' + addr[at:]


def _address_tokens(mailboxes, first):
    tokens = []
    for k, (name, addr) in enumerate(mailboxes):
        addr = _addr_spec(addr)
        if name:
            tokens.extend(_phrase_tokens(name, first if k == 0 else _EW))
            tokens.append("<" + addr + ">")
        else:
            tokens.append(addr)
        if k < len(mailboxes) - 1:
            tokens[-1] += ","
    return tokens


def _fold(name, tokens):
    """One header field, folded (RFC 5322 2.2.3): the words joined by single spaces, a CRLF
    inserted before a space where the line would pass 78 characters. Unfolding gives the
    value back exactly. No line may pass 998."""
    line = name + ":"
    start = len(line)
    out = []
    for tok in tokens:
        # Never fold right after the colon: parsers keep that space in the value.
        if tok and len(line) + 1 + len(tok) > _LINE and len(line) > start:
            out.append(line)
            line = " " + tok
        else:
            line += " " + tok
        if len(line) > _MAX_LINE:
            raise ValueError("%s: a word too long for one line" % name)
    out.append(line)
    return "\r\n".join(out) + "\r\n"


def _check_name(name):
    # RFC 5322 3.6.8: field-name = 1*ftext, printable ASCII except ":".
    _check(name, "header name")
    if not name:
        raise ValueError("empty header name")
    for ch in name:
        if not "!" <= ch <= "~" or ch == ":":
            raise ValueError("invalid header name %r" % name)
    low = name.lower()
    if " " + low + " " in _OWN or low.startswith("content-"):
        raise ValueError("header %r is written by the composer" % name)
    return name


def format_date(t):
    """RFC 5322 3.3 date-time for the UTC time tuple t = (year, month, mday, hour, minute,
    second, ...), e.g. "Mon, 23 Nov 2026 04:16:13 +0000". The weekday is computed (time
    tuples of different ports disagree on where it is and where it starts)."""
    y, mo, d, h, mi, s = t[0], t[1], t[2], t[3], t[4], t[5]
    if not (1 <= mo <= 12 and 1 <= d <= 31 and 0 <= h < 24 and 0 <= mi < 60 and 0 <= s <= 60):
        raise ValueError("invalid date %r" % (t,))
    yy = y - 1 if mo < 3 else y
    wd = (yy + yy // 4 - yy // 100 + yy // 400 + _SAKAMOTO[mo - 1] + d) % 7
    return "%s, %02d %s %04d %02d:%02d:%02d +0000" % (
        _DAYS[3 * wd : 3 * wd + 3], d, _MONTHS[3 * mo - 3 : 3 * mo], y, h, mi, s)


def _date(date):
    if date is False:
        return None
    if isinstance(date, str):
        return _check(date, "date")
    if not isinstance(date, (tuple, list)) and date is not None:
        raise TypeError("date must be None, False, a str or a UTC time tuple")
    if date is None:
        import time

        t = time.gmtime()  # fields, not seconds: the epoch differs between ports
        if t[0] < _MIN_YEAR:
            # The RTC was never set (no NTP yet): rather than a Date in 2000, leave it to the
            # submission server, which adds a missing Date (RFC 6409 8.1). Pass date= to
            # set it yourself.
            return None
        return format_date(t)
    return format_date(date)


def _priority(p):
    # X-Priority (1 highest .. 5 lowest; Outlook, Thunderbird) and Importance (RFC 2156).
    if p is None:
        return None
    if p == "high" or p == PRIORITY_HIGH:
        return "1 (Highest)", "high"
    if p == "normal" or p == PRIORITY_NORMAL:
        return "3 (Normal)", "normal"
    if p == "low" or p == PRIORITY_LOW:
        return "5 (Lowest)", "low"
    raise ValueError("priority must be 'low', 'normal', 'high' or PRIORITY_*, not %r" % (p,))


def _filename_param(filename):
    """RFC 2231 filename*=utf-8''... (percent-encoded), continued over several lines when
    long (filename*0*=, filename*1*=, ...), as the bytes that follow "; " ."""
    segs = []
    seg = ""
    for c in filename.encode():
        ch = chr(c)
        piece = ch if c < 128 and (ch.isalpha() or ch.isdigit() or ch in _ATTR) else "%%%02X" % c
        if len(seg) + len(piece) > 50:  # lines of at most 78; never split a %XX
            segs.append(seg)
            seg = ""
        seg += piece
    segs.append(seg)
    if len(segs) == 1:
        return ("filename*=utf-8''" + seg).encode()
    out = []
    for k, s in enumerate(segs):
        out.append("filename*%d*=%s%s" % (k, "utf-8''" if k == 0 else "", s))
    return ";\r\n ".join(out).encode()


def _guess_type(filename):
    ext = filename[filename.rfind(".") + 1 :].lower()
    if ext and " " not in ext and "/" not in ext:  # every type in _TYPES has a "/"
        i = _TYPES.find(" " + ext + " ")
        if i >= 0:
            i += len(ext) + 2
            return _TYPES[i : _TYPES.find(" ", i)].encode()
    return b"application/octet-stream"


def _check_type(ctype):
    _check(ctype, "content type")
    if not _printable(ctype) or ctype.find("/") <= 0 or len(ctype) > 200:
        raise ValueError("invalid content type %r" % ctype)
    return ctype.encode()


def _source(src, what, encode=True):
    if isinstance(src, str):
        return src.encode() if encode else src
    if isinstance(src, (bytes, bytearray, memoryview)) or hasattr(src, "readinto"):
        return src
    raise TypeError("%s must be bytes, str or a file opened in binary mode" % what)


def _part(item, cid=None, send=None):
    """Check an attachment or inline part (send=None), or also make it ready to send:
    (its delimiter and header as one tuple of bytes, mostly constants, beginning with the
    three delimiter pieces in `send`; its data; the path of its file or None)."""
    path = None
    src = None
    ctype = None
    if isinstance(item, str):  # a file name: opened, streamed and closed while sending
        path = item
        if send is None:
            import os

            try:
                os.stat(path)
            except OSError:
                raise ValueError("no such file: %r" % path)
        filename = path[path.rfind("/") + 1 :]
    else:
        if not isinstance(item, (tuple, list)) or not 2 <= len(item) <= 3:
            raise TypeError("an attachment is a path or (filename, data[, content_type])")
        filename = item[0]
        src = _source(item[1], "attachment data", send is not None)
        if len(item) > 2:
            ctype = item[2]
    _check(filename, "filename")
    if not filename:
        raise ValueError("empty filename")
    ctype = _check_type(ctype) if ctype else _guess_type(filename)
    if cid is not None:
        _check(cid, "content id")
        if not cid or not _printable(cid) or " " in cid or "<" in cid or ">" in cid \
                or len(cid) > 200:
            raise ValueError("invalid content id %r" % cid)
    if send is None:
        return None
    if _printable(filename) and len(filename) <= 60:
        if '"' in filename or "\\" in filename:
            filename = filename.replace("\\", "\\\\").replace('"', '\\"')
        name = filename.encode()
        params = (b';\r\n name="', name, b'"')  # name= too, for old mail readers
        fparam = (b'filename="', name, b'"')
    else:
        params = (b"", b"", b"")
        fparam = (_filename_param(filename), b"", b"")
    head = (send[0], send[1], send[2], b"Content-Type: ", ctype) + params + (
        b"\r\nContent-Transfer-Encoding: base64\r\n",
        b"Content-ID: <" if cid else b"", cid.encode() if cid else b"", b">\r\n" if cid else b"",
        b"Content-Disposition: inline;\r\n " if cid else b"Content-Disposition: attachment;\r\n ",
    ) + fparam + (b"\r\n\r\n",)
    return head, src, path


def _inline(item, send=None):
    if not isinstance(item, (tuple, list)) or not 3 <= len(item) <= 4:
        raise TypeError("an inline part is (content_id, filename, data[, content_type])")
    return _part(tuple(item[1:]), item[0], send)


def _is_stream(src):
    return hasattr(src, "readinto")


# ------------------------------------------------------------------------------ steps

# Indexes into Message._st.
_I = const(0)  # index in the step's data; -1 when the step is complete
_COL = const(1)  # quoted-printable: output column
_WS = const(2)  # quoted-printable: a space or tab not written yet
_CRF = const(3)  # quoted-printable: the last byte was CR
_K = const(4)  # the step; -1 before the first readinto
_PHASE = const(5)  # the piece of a tuple of bytes; text part: 2 for the data
_F = const(6)  # the file opened from a path
_VIEW = const(7)  # the window a file is read into ...
_VBUF = const(8)  # ... a view of this buffer ...
_VOFF = const(9)  # ... at this offset
_CTES = const(10)  # transfer encodings of body and html

_TEXT = const(1)
_PART = const(2)
_TEXT_HEAD = (b'Content-Type: text/plain; charset="utf-8"\r\nContent-Transfer-Encoding: ',
              b'Content-Type: text/html; charset="utf-8"\r\nContent-Transfer-Encoding: ')
_CTE_LINE = (b"7bit\r\n\r\n", b"8bit\r\n\r\n", b"quoted-printable\r\n\r\n")


def _reset(st):
    st[_I] = st[_COL] = st[_WS] = st[_PHASE] = 0
    st[_CRF] = False


def _put(buf, p, data, st):
    """Copy data[st[_I]:] into buf at p, as much as fits; st[_I] = -1 when all of it is."""
    i = st[_I]
    n = len(data) - i
    room = len(buf) - p
    if n <= room:
        _copy(buf, p, data, i, n)
        st[_I] = -1
        return p + n
    _copy(buf, p, data, i, room)
    st[_I] = i + room
    return p + room


# Multipart pieces: the random boundary goes between them (not joined: a bytes object per
# delimiter would cost more than the tuple slots).
_MIXED = (b'Content-Type: multipart/mixed;\r\n boundary="', b'm"\r\n\r\n--', b"m\r\n",
          b"\r\n--", b"m--")
_ALTERNATIVE = (b'Content-Type: multipart/alternative;\r\n boundary="', b'a"\r\n\r\n--',
                b"a\r\n", b"\r\n--", b"a--")
# RFC 2387 3.1: type= names the root part's type.
_RELATED = (b'Content-Type: multipart/related; type="text/html";\r\n boundary="',
            b'r"\r\n\r\n--', b"r\r\n", b"\r\n--", b"r--")


def _open(prog, kind, bnd):
    prog.append((kind[0], bnd, kind[1], bnd, kind[2]))


def _close(prog, kind, bnd):
    prog.append((kind[3], bnd, kind[4]))


def _parts(prog, items, kind, bnd):
    # RFC 2046 5.1.1: the CRLF before "--boundary" belongs to the delimiter, so a part's
    # content ends exactly where its data ends.
    delimiter = (kind[3], bnd, kind[2])
    for item in items:
        head, src, path = _inline(item, delimiter) if kind is _RELATED else \
            _part(item, None, delimiter)
        prog.append((_PART, head, src, path))
    _close(prog, kind, bnd)


def _program(prog, body, html, atts, parts, bnd):
    """Append the steps after the header to prog: a tuple of bytes objects is copied as it
    is, (_TEXT, data, 0 or 1) is the text or the HTML part, (_PART, header pieces, data,
    path) an attachment or inline part. Small tuples, not one long list: no large block to
    find in a fragmented heap."""
    if atts:
        _open(prog, _MIXED, bnd)
    if html is not None:
        _open(prog, _ALTERNATIVE, bnd)
    prog.append((_TEXT, body, 0))
    if html is not None:
        k = _ALTERNATIVE
        prog.append((k[3], bnd, k[2]))
        if parts:
            _open(prog, _RELATED, bnd)
        prog.append((_TEXT, html, 1))
        if parts:
            _parts(prog, parts, _RELATED, bnd)
        _close(prog, _ALTERNATIVE, bnd)
    if atts:
        _parts(prog, atts, _MIXED, bnd)


def _pieces(buf, p, pieces, st):
    """Put a tuple of bytes objects one after the other; st[_PHASE] is the one at hand."""
    last = len(pieces) - 1
    while True:
        j = st[_PHASE]
        p = _put(buf, p, pieces[j], st)
        if st[_I] >= 0 or j == last:
            return p
        st[_PHASE] = j + 1
        st[_I] = 0


# ----------------------------------------------------------------------------- encoders


def _b64_lines(buf, p, raw, i, end, lines):
    """RFC 2045 6.8: encode raw[i:end], at most `lines` lines of 57 bytes, into buf at p as
    base64 lines of 76 characters and CRLF (the last one shorter and padded with "=").
    Returns the new p. A table-driven byte loop: allocates nothing. raw may overlap buf when
    it starts at least 21 bytes per line after p (each line reads 57 bytes and writes 78)."""
    T = _B64
    while lines and i < end:
        k = end - i
        if k > _B64_RAW:
            k = _B64_RAW
        for _ in range(k // 3):
            a = raw[i]
            b = raw[i + 1]
            c = raw[i + 2]
            buf[p] = T[a >> 2]
            buf[p + 1] = T[((a & 3) << 4) | (b >> 4)]
            buf[p + 2] = T[((b & 15) << 2) | (c >> 6)]
            buf[p + 3] = T[c & 63]
            i += 3
            p += 4
        r = k % 3
        if r:
            a = raw[i]
            b = raw[i + 1] if r == 2 else 0
            buf[p] = T[a >> 2]
            buf[p + 1] = T[((a & 3) << 4) | (b >> 4)]
            buf[p + 2] = T[(b & 15) << 2] if r == 2 else _EQ
            buf[p + 3] = _EQ
            i += r
            p += 4
        buf[p] = _CR
        buf[p + 1] = _LF
        p += 2
        lines -= 1
    return p


def _qp_bytes(buf, p, lim, raw, end, st):
    """RFC 2045 6.7 quoted-printable: encode raw[st[_I]:end] into buf at p until the input
    is used up or p passes lim (one input byte writes at most 10 bytes). Returns the new p.
    st carries the state between calls: next input index, output column, a pending space
    or tab, whether the last byte was CR (a list: returning a tuple would allocate).
    Line breaks (CRLF, LF or CR) become CRLF; "=", controls and 8-bit bytes become =XX;
    a space or tab before a line break is encoded (rule 3); soft line breaks "=" CRLF keep
    every line at 76 characters or less (rule 5)."""
    H = _HEX
    i = st[_I]
    col = st[_COL]
    ws = st[_WS]
    cr = st[_CRF]
    while i < end and p <= lim:
        c = raw[i]
        i += 1
        if c == _LF and cr:
            cr = False
            continue
        cr = c == _CR
        if c == _LF or cr:
            if ws:
                if col > 72:
                    buf[p] = _EQ
                    buf[p + 1] = _CR
                    buf[p + 2] = _LF
                    p += 3
                buf[p] = _EQ
                buf[p + 1] = H[ws >> 4]
                buf[p + 2] = H[ws & 15]
                p += 3
                ws = 0
            buf[p] = _CR
            buf[p + 1] = _LF
            p += 2
            col = 0
            continue
        if ws:
            if col > 74:
                buf[p] = _EQ
                buf[p + 1] = _CR
                buf[p + 2] = _LF
                p += 3
                col = 0
            buf[p] = ws
            p += 1
            col += 1
            ws = 0
        if c == _SP or c == _TAB:
            ws = c
        elif 33 <= c <= 126 and c != _EQ:
            if col > 74:
                buf[p] = _EQ
                buf[p + 1] = _CR
                buf[p + 2] = _LF
                p += 3
                col = 0
            buf[p] = c
            p += 1
            col += 1
        else:
            if col > 72:
                buf[p] = _EQ
                buf[p + 1] = _CR
                buf[p + 2] = _LF
                p += 3
                col = 0
            buf[p] = _EQ
            buf[p + 1] = H[c >> 4]
            buf[p + 2] = H[c & 15]
            p += 3
            col += 3
    st[_I] = i
    st[_COL] = col
    st[_WS] = ws
    st[_CRF] = cr
    return p


def _qp_end(buf, p, st):
    """The end of the data ends a line: encode a pending space or tab (at most 6 bytes)."""
    ws = st[_WS]
    if ws:
        if st[_COL] > 72:
            buf[p] = _EQ
            buf[p + 1] = _CR
            buf[p + 2] = _LF
            p += 3
        buf[p] = _EQ
        buf[p + 1] = _HEX[ws >> 4]
        buf[p + 2] = _HEX[ws & 15]
        p += 3
        st[_WS] = 0
    return p


# ------------------------------------------------------------------------------ message


class Message:
    """A mail, composed while it is sent. See the module docstring.

    from_addr, to_addrs, cc, bcc, reply_to: "addr@example.com" or ("Name", "addr@example.com"),
        or lists of them. A (name, address) pair whose name has no "@" is one mailbox.
        Bcc goes only into the envelope.
    subject: str. body, html: str, bytes (UTF-8) or a file opened in binary mode.
    attachments: each a path ("/log.txt", opened and closed while sending) or
        (filename, data[, content_type]) with data bytes, str or a binary file.
    inline: (content_id, filename, data[, content_type]) parts for the HTML, which refers to
        them as "cid:content_id" (needs html).
    priority: "low", "normal", "high" or PRIORITY_LOW/NORMAL/HIGH (NetX Duo's values).
    headers: ((name, value), ...) extra header fields, checked (no CR/LF, valid names, not
        one the composer writes).
    date: None (the RTC; left out while the RTC is unset), a UTC time tuple
        (year, month, day, hour, minute, second, ...), a preformatted str, or False (no Date).
    eightbit: True (default): UTF-8 text may go out as 8bit where the session allows it
        (plan(); send() asks the server's EHLO); False: always 7-bit (quoted-printable).

    `sender` and `recipients` (To, Cc and Bcc addresses) are the envelope for sendmail();
    `message_id` is the Message-ID. Arguments are checked here, before anything is sent:
    ValueError or TypeError. A file given as an object is read once, from where it is.
    """

    def __init__(self, from_addr, to_addrs, subject, body="", *, cc=(), bcc=(),
                 reply_to=None, html=None, attachments=(), inline=(), priority=None,
                 headers=(), date=None, eightbit=True):
        import binascii
        import os

        sender = _mailbox(from_addr, "from_addr")
        to = _mailboxes(to_addrs, "recipient")
        cc = _mailboxes(cc, "cc")
        bcc = _mailboxes(bcc, "bcc")
        reply = _mailboxes(reply_to, "reply_to")
        if not (to or cc or bcc):
            raise ValueError("no recipients")
        _check(subject, "subject")
        body = _source(body, "body")
        if html is not None:
            html = _source(html, "html")
        # Parts are checked first (nothing is built for a mail with bad arguments), their
        # headers made with the program below: nothing is allocated for them while sending.
        atts = list(attachments)
        for item in atts:
            _part(item)
        parts = list(inline)
        for item in parts:
            _inline(item)
        if parts and html is None:
            raise ValueError("inline parts are referred to by the html: give html")

        h = []
        d = _date(date)
        if d:
            h.append("Date: " + d + "\r\n")
        for name, boxes in (("From", [sender]), ("To", to), ("Cc", cc), ("Reply-To", reply)):
            if boxes:
                h.append(_fold(name, _address_tokens(boxes, _LINE - len(name) - 2)))
        h.append(_fold("Subject", _text_tokens(subject, _LINE - 9)))
        addr = sender[1]
        # RFC 5322 3.6.4: unique: 64 random bits at the sender's domain.
        mid = "<" + binascii.hexlify(os.urandom(8)).decode() + addr[addr.rfind("@") :] + ">"
        h.append("Message-ID: " + mid + "\r\n")
        pr = _priority(priority)
        if pr:
            h.append("X-Priority: " + pr[0] + "\r\nImportance: " + pr[1] + "\r\n")
        if hasattr(headers, "items"):
            headers = headers.items()
        for name, value in headers:
            _check_name(name)
            _check(value, "header " + name)
            h.append(_fold(name, _text_tokens(value, _LINE - len(name) - 2)))
        h.append("MIME-Version: 1.0\r\n")
        for k in range(len(h)):
            h[k] = h[k].encode()  # small pieces: no large block to find in a fragmented heap

        # RFC 2046 5.1.1: a boundary must not occur in the parts. "=_" never occurs in
        # base64 or quoted-printable; 7bit/8bit text is checked for it in _cte.
        bnd = b"=_" + binascii.hexlify(os.urandom(12))

        # The mail as a program of a few steps, run by readinto (see _program), after the
        # header pieces.
        prog = [tuple(h)]
        h = None
        _program(prog, body, html, atts, parts, bnd)

        # Every attribute is set here, and there are few: an attribute added later would
        # grow the instance's dict (a reallocation) in the middle of the send.
        self.sender = addr
        self.recipients = [a for _, a in to + cc + bcc]
        self.message_id = mid
        self.eightbit = eightbit
        self._texts = (body, html, bool(atts) or html is not None, bnd)
        self._prog = prog
        # Where readinto is (see _I.._CTES): the step, the index in it (-1: complete), the
        # quoted-printable state, the piece, the open file, the read window, the transfer
        # encodings of body and html (chosen by plan).
        self._st = [0, 0, 0, False, -1, 0, None, None, None, 0, None]  # type: list

    # ----- what the envelope needs to know

    def plan(self, eightbit_ok):
        """Start the mail from its first byte, choosing each text part's transfer encoding:
        eightbit_ok says the server offered 8BITMIME. Returns True when a text part will go
        out as 8bit: then MAIL FROM must carry BODY=8BITMIME (RFC 6152 2). Without a call,
        readinto plans for a server without 8BITMIME: 7-bit data only."""
        self.rewind()
        body, html, multi, _ = self._texts
        ok = eightbit_ok and self.eightbit
        ctes = self._st[_CTES] = (self._cte(body, ok, multi),
                                  _QP if html is None else self._cte(html, ok, multi))
        return _8BIT in ctes

    def _cte(self, src, eight, multi):
        if _is_stream(src):
            return _QP  # line lengths unknown until read: quoted-printable is always safe
        n = len(src)
        if not n:
            return _7BIT
        if isinstance(src, memoryview):
            src = bytes(src)
        # RFC 2045 2.7/2.8: 7bit and 8bit data have lines of at most 998 octets and no NUL.
        if src.find(b"\0") >= 0 or (multi and src.find(b"--" + self._texts[3]) >= 0):
            return _QP
        i = 0
        while i < n:
            j = src.find(b"\n", i)
            if j < 0:
                j = n
            if j - i > _MAX_LINE + (1 if j > i and src[j - 1] == _CR else 0):
                return _QP
            i = j + 1
        if max(src) < 128:
            return _7BIT
        return _8BIT if eight else _QP

    def send(self, smtp):
        """Send over a connected smtp_client.SMTP session (EHLO, STARTTLS, login done or
        done here as needed). Returns sendmail's dict of refused recipients. Uses 8bit text
        and BODY=8BITMIME (RFC 6152) when the server offers it, unless eightbit=False.
        Sending again sends the same mail (same Message-ID; files from paths reopened)."""
        smtp.ehlo_or_helo_if_needed()
        eight = self.plan(smtp.has_extn("8bitmime"))
        try:
            return smtp.sendmail(self.sender, self.recipients, self,
                                 ("BODY=8BITMIME",) if eight else ())
        finally:
            self.close()

    # ----- streaming

    def rewind(self):
        """Start again from the first byte (files given as objects are not rewound)."""
        self.close()
        self._st[_K] = -1
        self._st[_CTES] = None

    def close(self):
        """Stop a half-sent mail: close the file opened from a path, if any."""
        st = self._st
        f = st[_F]
        st[_F] = st[_VIEW] = st[_VBUF] = None
        if f is not None:
            f.close()

    def readinto(self, buf):
        """Write the next bytes of the mail into buf; return their number, 0 at the end.
        The bytes must be used before the next call: the same buf may be written again."""
        st = self._st
        prog = self._prog
        k = st[_K]
        if k < 0:
            if len(buf) < _MIN_BUF:
                raise ValueError("buffer smaller than %d bytes" % _MIN_BUF)
            if st[_CTES] is None:
                self.plan(False)
            k = st[_K] = 0
            _reset(st)
        p = 0
        while k < len(prog):
            step = prog[k]
            if step[0] == _TEXT:
                p = self._text(buf, p, step[1], step[2])
            elif step[0] == _PART:
                p = self._part(buf, p, step)
            else:
                p = _pieces(buf, p, step, st)
            if st[_I] >= 0:
                if p:
                    return p  # buf is full (or the step wants a fresh one)
                continue  # nothing yet (a file's next bytes were only the LF of a CRLF)
            k = st[_K] = k + 1
            _reset(st)
        return p

    def __iter__(self):
        """The mail as bytes chunks (allocates a copy per chunk: for tests and debugging;
        sendmail uses readinto)."""
        self.rewind()
        buf = bytearray(512)
        while True:
            n = self.readinto(buf)
            if not n:
                return
            yield bytes(buf[:n])

    def _window(self, buf, off, n):
        # buf[off:off+n] as a memoryview to read a file into. A view costs an allocation, so
        # it is kept while buf, off and n stay the same: every call once a part is under way.
        st = self._st
        v = st[_VIEW]
        if v is None or st[_VBUF] is not buf or st[_VOFF] != off or len(v) != n:
            v = st[_VIEW] = memoryview(buf)[off : off + n]
            st[_VBUF] = buf
            st[_VOFF] = off
        return v

    def _text(self, buf, p, src, which):
        st = self._st
        cte = st[_CTES][which]
        while st[_PHASE] < 2:  # the part's header: two pieces
            p = _put(buf, p, _CTE_LINE[cte] if st[_PHASE] else _TEXT_HEAD[which], st)
            if st[_I] >= 0:
                return p
            st[_I] = 0
            st[_PHASE] += 1
        if cte != _QP:
            return _put(buf, p, src, st)  # lines and bytes checked in _cte; the core does CRLF
        size = len(buf)
        if not _is_stream(src):
            end = len(src)
            if st[_I] < end:
                p = _qp_bytes(buf, p, size - 16, src, end, st)
                if st[_I] < end:
                    return p
        else:
            # In place: read at most a fifth of the buffer into its end (a byte becomes at
            # most 3 and a bit) and encode it to the start; one window per call, into a
            # fresh buffer, so the window stays the same.
            if p:
                return p
            n = (size - 16) // 5
            end = src.readinto(self._window(buf, size - n, n)) or 0
            if end:
                st[_I] = 0
                return _qp_bytes(buf, p, size, st[_VIEW], end, st)
        if p > size - 8:
            return p
        p = _qp_end(buf, p, st)
        st[_I] = -1
        return p

    def _part(self, buf, p, step):
        """An attachment or inline part: delimiter and header, then the data in base64."""
        st = self._st
        if st[_PHASE] >= 0:
            p = _pieces(buf, p, step[1], st)
            if st[_I] >= 0:
                return p
            st[_PHASE] = -1
            st[_I] = 0
        return self._base64(buf, p, step[2], step[3])

    def _base64(self, buf, p, src, path):
        """A part's data in base64. From a file, in place: each call reads 57 bytes per line
        that fits into the end of the caller's buffer and encodes them to its start."""
        st = self._st
        if path is not None:
            src = st[_F]
            if src is None:
                src = st[_F] = open(path, "rb")
        lines = (len(buf) - p) // 78
        if not lines:
            return p
        if not _is_stream(src):
            i = st[_I]
            end = len(src)
            p = _b64_lines(buf, p, src, i, end, lines)
            i += _B64_RAW * lines
            st[_I] = -1 if i >= end else i
            return p
        n = _B64_RAW * lines
        raw = self._window(buf, p + 21 * lines, n)
        end = src.readinto(raw) or 0
        while 0 < end < n:  # base64 needs whole 3-byte groups until the end
            k = src.readinto(memoryview(raw)[end:]) or 0  # files: at the end only
            if not k:
                break
            end += k
        p = _b64_lines(buf, p, raw, 0, end, lines)
        if end < n:  # the end of the file
            st[_I] = -1
            if path is not None:
                self.close()
        return p
