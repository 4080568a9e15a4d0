# SPDX-License-Identifier: MIT
"""Deterministic soak mails (issue 7.4), the same bytes under MicroPython and CPython.

chunks(i, size, eight) yields mail i in pieces (a marker header first, then `size` bytes of
body lines: leading dots, "." alone, empty lines, lines up to 998 bytes, 8-bit text when
`eight`); body() joins them. tests/test_soak.py sends them from the unix port or CPython
and compares what Postfix delivered with body().
"""

_PAT = (b"The quick brown fox jumps over the lazy dog. 0123456789 "
        b"PACK MY BOX WITH FIVE DOZEN LIQUOR JUGS; ~!@#$%^&*()_+-=[]{}|:,<>?/ ") * 12
_PAT8 = ("Gr\u00fc\u00dfe aus K\u00f6ln, caf\u00e9 cr\u00e8me, \u00e6\u00f8\u00e5 "
         "\u03b1\u03b2\u03b3 ").encode() * 20


def head(i):
    return b"X-Test-Id: " + str(i).encode() + b"\r\nSubject: soak " + str(i).encode() + (
        b"\r\nFrom: device@example.test\r\n\r\n")


def chunks(i, size, eight=False):
    yield head(i)
    x = (i * 7919 + 17) & 0x7FFFFFFF
    out = []
    n = 0  # bytes in out
    left = size
    while left > 0:
        x = (x * 1103515245 + 12345) & 0x7FFFFFFF
        r = x >> 8
        if r % 61 == 0:
            line = b"." if r % 2 else b""  # a lone dot (stuffed on the wire), an empty line
        elif r % 47 == 0:
            line = _PAT[: 900 + r % 98]  # near RFC 5321's 998
        else:
            pat = _PAT8 if eight and r % 5 == 0 else _PAT
            o = r % 300
            line = pat[o : o + 1 + (r >> 9) % 120]
            if r % 7 == 0:
                line = b"." + line
            elif r % 11 == 0:
                line = b".." + line
        line += b"\r\n"
        if len(line) > left:
            line = (b"z" * (left - 2) + b"\r\n") if left >= 2 else b"z"  # last, no CRLF
        out.append(line)
        n += len(line)
        left -= len(line)
        if n >= 2048:
            yield b"".join(out)
            out = []
            n = 0
    if out:
        yield b"".join(out)


def body(i, size, eight=False):
    return b"".join(chunks(i, size, eight))
