# SPDX-License-Identifier: MIT
"""smtp_native: smtp_client's body encoder as machine code (`@micropython.viper`).

Optional, and importing it is the opt-in: `import smtp_native` (say in main.py) puts its
`encode` and `clean` in the place of `Session.encode` and `Session.clean` for every session,
with the same signatures and the same results, call by call; the pure-Python ones stay the
reference and the fallback wherever it is not imported. Nothing in smtp_client looks for
it, so a program without it pays nothing, not even a failed import in the middle of a send.
MicroPython with a native emitter only; a .mpy is per architecture (`python
tools/build_native.py`: mpy-cross -march=x64|armv6m|armv7emsp|xtensawin), and another
architecture's raises ValueError on import. They allocate nothing: the line state goes back
into the session's own attributes (tx_len, bol, cr: small ints and bools), the result is an
int (a bool).

How (the rules are the core's, RFC 5321 2.3.8 and 4.5.2): text between line ends is copied
four bytes at a time, two words per step, and a step stops at any byte below 14 (CR is 13,
LF 10), found with the "has a byte less than n" test on each word:
(w - 0x0E0E0E0E) & ~w & 0x80808080 is nonzero exactly when one byte of w is below 0x0E.
Such a byte, a line's start and the tail go through the byte path, which is Session.encode
step by step: the same bytes written, the same stop when tx is full, the same state after
every call (tests/test_native.py checks this per call).
- Word access only at 4-byte aligned addresses (Cortex-M0+ and Xtensa fault on others):
  stores at an aligned tx position; loads from the aligned words around the source, shifted
  together when the source is not aligned with tx. No word read goes past src[j].
- No literal of 2**30 or more: mpy-cross keeps small ints to 31 bits, and a bigger constant
  is an object viper cannot mix with ints, so 0x80808080 is built by a shift.
- viper keeps the first three locals (here the arguments self, src, i) in registers; the
  inner loops advance `i` alone and address tx relative to it.
"""

import micropython

import smtp_client

__version__ = "0.1.0"

if False:  # for linters and type checkers: viper's casts are the compiler's, not names
    ptr8 = ptr32 = uint = int


@micropython.viper  # type: ignore[attr-defined]  # (CPython's shim: const only)
def encode(self, src, i: int, j: int) -> int:
    """Session.encode: encode src[i:j] into self.tx from self.tx_len until it is consumed
    or tx is nearly full; return the new i. Bare CR and bare LF become CRLF, a "." starting
    a line gets one more when self.stuff (DATA); self.bol and self.cr carry the line state
    across calls."""
    s = ptr8(src)
    sb = int(s)
    tx = self.tx
    d = ptr8(tx)
    db = int(d)
    p = int(self.tx_len)
    room = int(len(tx)) - 3  # one input byte makes at most 3 output bytes (".", CR LF)
    bol = 1 if self.bol else 0
    cr = 1 if self.cr else 0
    hi = 0x20202020
    hi <<= 2  # 0x80808080 (see the module docstring)
    while i < j and p < room:
        if cr:
            # The previous byte was CR: CRLF ends the line either way.
            d[p] = 13
            d[p + 1] = 10
            p += 2
            cr = 0
            bol = 1
            i += int(s[i] == 10)  # CR LF: the LF is consumed (branch-free)
            continue
        if bol and s[i] == 46 and self.stuff:  # (stuff read only where it counts)
            d[p] = 46  # RFC 5321 4.5.2
            p += 1
        bol = 0
        # Copy up to the next CR or LF, or until tx is full: the rest continues the line.
        # lim = min(j, i + room - p) without a call or a branch: e < 0 when tx fills first,
        # and then e >> 31 is -1 (|e| < 2**31: a buffer's size).
        e = room - p - j + i
        lim = j + (e & (e >> 31))
        while i < lim:
            if (db + p) & 3 == 0:
                dk = db + p - i  # tx address of src[i] is dk + i
                o = (sb + i) & 3
                if o == 0:
                    we = lim - 9  # (every word loop stops before lim: s[i] is in range)
                    while i <= we:
                        w = ptr32(sb + i)[0]
                        v = ptr32(sb + i)[1]
                        if ((w - 0x0E0E0E0E) & ~w | (v - 0x0E0E0E0E) & ~v) & hi:
                            break
                        ptr32(dk + i)[0] = w
                        ptr32(dk + i)[1] = v
                        i += 8
                else:
                    # src[i:i+8] from the three aligned words around it; the last of them
                    # ends before src[lim].
                    we = lim - 12 + o
                    a = sb - o
                    sh = o << 3
                    sl = 32 - sh
                    while i <= we:
                        m = uint(ptr32(a + i)[1])
                        x = int(uint(ptr32(a + i)[0]) >> sh | m << sl)
                        y = int(m >> sh | uint(ptr32(a + i)[2]) << sl)
                        if ((x - 0x0E0E0E0E) & ~x | (y - 0x0E0E0E0E) & ~y) & hi:
                            break
                        ptr32(dk + i)[0] = x
                        ptr32(dk + i)[1] = y
                        i += 8
                p = dk + i - db
            c = s[i]
            if c == 10 or c == 13:
                break
            d[p] = c
            p += 1
            i += 1
        if i < j:
            c = s[i]
            if c == 10:
                d[p] = 13  # RFC 5321 2.3.8: a bare LF ends the line as CRLF
                d[p + 1] = 10
                p += 2
                bol = 1
                i += 1
            elif c == 13:
                cr = 1  # decided by the next byte: CRLF or a bare CR
                i += 1
    self.tx_len = p
    self.bol = bol != 0
    self.cr = cr != 0
    return i


@micropython.viper  # type: ignore[attr-defined]
def clean(self, src, i: int, j: int) -> bool:
    """Session.clean: True when src[i:j] can go out verbatim (every CR followed by LF and
    every LF preceded by CR within it, no line starting with "." when self.stuff, and it
    continues the previous part cleanly). One pass, a word at a time between line ends."""
    s = ptr8(src)
    sb = int(s)
    stuff = 1 if self.stuff else 0
    if self.cr or (stuff and self.bol and i < j and s[i] == 46):
        return False
    hi = 0x20202020
    hi <<= 2
    while i < j:
        if (sb + i) & 3 == 0:
            we = j - 8
            while i <= we:
                w = ptr32(sb + i)[0]
                v = ptr32(sb + i)[1]
                if ((w - 0x0E0E0E0E) & ~w | (v - 0x0E0E0E0E) & ~v) & hi:
                    break
                i += 8
            if i >= j:
                break
        c = s[i]
        if c == 13:
            if i + 1 == j or s[i + 1] != 10:
                return False
            i += 2
            if stuff and i < j and s[i] == 46:
                return False
        elif c == 10:
            return False
        else:
            i += 1
    return True


@micropython.viper  # type: ignore[attr-defined]
def ascii_only(data) -> bool:
    """smtp_client._ascii in one pass: no byte of data has its high bit set (RFC 6152 3:
    else the body is 8-bit). MicroPython's max() takes ~40 ns a byte, this ~1."""
    n = int(len(data))
    s = ptr8(data)  # noqa: F821  # viper's cast
    sb = int(s)
    i = 0
    while i < n and (sb + i) & 3:  # bytes up to a word boundary (aligned loads only)
        if s[i] & 0x80:
            return False
        i += 1
    hi = 0x20202020
    hi <<= 2  # 0x80808080 (a literal of 2**30 or more is no viper int)
    while i + 4 <= n:
        if ptr32(sb + i)[0] & hi:  # noqa: F821
            return False
        i += 4
    while i < n:
        if s[i] & 0x80:
            return False
        i += 1
    return True


@micropython.viper  # type: ignore[attr-defined]
def wire_size(body) -> int:
    """smtp_client._wire_size in one pass: the size on the wire before dot-stuffing (RFC
    1870 6's SIZE, a single BDAT chunk's length): a bare CR or LF becomes CRLF, an open
    last line is closed."""
    n = int(len(body))
    s = ptr8(body)  # noqa: F821
    sb = int(s)
    hi = 0x20202020
    hi <<= 2  # 0x80808080
    size = n
    prev = 0
    i = 0
    while i < n:
        # Aligned words with no byte below 14 (no CR, no LF) change nothing, unless a CR
        # before them was left open: skip them, two at a time (as clean does).
        if prev != 13 and (sb + i) & 3 == 0:
            k = i
            we = n - 8
            while i <= we:
                w = ptr32(sb + i)[0]  # noqa: F821
                v = ptr32(sb + i)[1]  # noqa: F821
                if ((w - 0x0E0E0E0E) & ~w | (v - 0x0E0E0E0E) & ~v) & hi:
                    break
                i += 8
            if i != k:
                prev = s[i - 1]
            if i >= n:
                break
        c = s[i]
        if (c == 10 and prev != 13) or (prev == 13 and c != 10):
            size += 1
        prev = c
        i += 1
    if prev == 13:
        size += 1  # a bare CR at the very end
    elif n and prev != 10:
        size += 2
    return size


# The opt-in (see the docstring): every Session from now on, and those already made; and
# the core's scans of an in-memory body (its 8-bit check and its SIZE).
smtp_client.Session.encode = encode
smtp_client.Session.clean = clean
smtp_client._ascii = ascii_only
smtp_client._wire_size = wire_size
