# SPDX-License-Identifier: MIT
"""Fuzz cases for the client (issue 7.2): reply streams built from recorded sessions, then
mutated, and reply streams made up from scratch. Used by tests/test_fuzz.py through
hypothesis (CPython) and by sample() for the corpus the unix port replays.

A case is (scenario name, turns, piece, end, fail_write): see tests/mp/fuzzsock.py.
Mutations (MUTATIONS, applied in order) work on one turn each and take three ints and a few
bytes, all reduced modulo what they index, so any draw is valid:
    split, join       move a turn boundary: replies come late or early (unsolicited)
    digit, code       change a digit of a reply code, or the whole code
    sep               change the separator after the code (" ", "-", CR, LF, junk, none)
    crlf              insert or delete CR/LF, or change a line end to LF, CR or LF CR
    long              insert a line of 100..5000 bytes (around the 512-byte buffer)
    unsolicited       insert a whole extra reply line
    421               insert "421 ... closing" anywhere, maybe with nothing after it
    truncate          cut the stream: the server closes there
    garbage           insert arbitrary bytes
    dup, drop         repeat or remove a line
    flood             insert 10..200 continuation lines ("250-x")
"""

import random

from hypothesis import strategies as st

PIECES = (0, 0, 0, 1, 2, 3, 7, 64)
ENDS = ("eof", "silent")
DIGITS = b"0123456789a -\xff\r"
SEPS = (b" ", b"-", b"", b"x", b"\r", b"\n", b"\t", b"--")
CODES = (b"250", b"550", b"451", b"354", b"334", b"221", b"220", b"421", b"500", b"502",
         b"999", b"000", b"2500", b"25", b"235", b"535", b"251", b"252", b"199", b"600")
UNSOLICITED = (b"250 ok\r\n", b"220 hi\r\n", b"354 go\r\n", b"250-more\r\n", b"334 \r\n",
               b"221 bye\r\n", b"421 4.3.2 closing\r\n", b"550 5.1.1 no\r\n", b"\r\n",
               b"250 2.0.0 Ok: queued as ABC\r\n", b"334 VXNlcm5hbWU6\r\n")
LONG = (100, 255, 509, 510, 511, 512, 513, 575, 576, 600, 1024, 5000)
FLOOD = (10, 62, 63, 64, 65, 200)


def _line_starts(t):
    out = [0]
    i = t.find(b"\n")
    while i >= 0:
        if i + 1 < len(t):
            out.append(i + 1)
        i = t.find(b"\n", i + 1)
    return out


def _line_at(t, a):
    starts = _line_starts(t)
    s = starts[a % len(starts)]
    e = t.find(b"\n", s)
    return s, (len(t) if e < 0 else e + 1)


def mutate(turns, op, a, b, c, blob):
    """Apply one mutation; returns (new turns, end override or None)."""
    turns = list(turns)
    if not turns:
        return [blob], None
    k = a % len(turns)
    t = turns[k]
    end = None
    if op == "split":
        p = b % (len(t) + 1)
        turns[k:k + 1] = [t[:p], t[p:]]
    elif op == "join":
        if k + 1 < len(turns):
            turns[k:k + 2] = [t + turns[k + 1]]
    elif op == "digit" and t:
        s, _ = _line_at(t, b)
        p = min(s + c % 3, len(t) - 1)
        turns[k] = t[:p] + DIGITS[c % len(DIGITS): c % len(DIGITS) + 1] + t[p + 1:]
    elif op == "code" and t:
        s, _ = _line_at(t, b)
        turns[k] = t[:s] + CODES[c % len(CODES)] + t[s + 3:]
    elif op == "sep" and t:
        s, e = _line_at(t, b)
        p = min(s + 3, e)
        turns[k] = t[:p] + SEPS[c % len(SEPS)] + t[p + 1:]
    elif op == "crlf":
        p = b % (len(t) + 1)
        kind = c % 7
        if kind == 0:
            turns[k] = t[:p] + b"\r" + t[p:]
        elif kind == 1:
            turns[k] = t[:p] + b"\n" + t[p:]
        elif kind == 2:
            turns[k] = t[:p] + b"\r\n" + t[p:]
        elif kind == 3:
            turns[k] = t[:p] + t[p + 1:]
        else:
            e = t.find(b"\r\n", p)
            if e >= 0:
                turns[k] = t[:e] + (b"\n", b"\r", b"\n\r")[kind - 4] + t[e + 2:]
    elif op == "long":
        s, _ = _line_at(t, b) if t else (0, 0)
        n = LONG[c % len(LONG)]
        line = (b"250-" if c & 64 else b"250 ") + (blob * n)[:n] if blob else b"x" * n
        turns[k] = t[:s] + line + (b"\r\n" if c & 128 == 0 else b"") + t[s:]
    elif op == "unsolicited":
        s = _line_at(t, b)[0] if t else 0
        line = UNSOLICITED[c % len(UNSOLICITED)]
        if c & 32:
            turns.insert(k + 1, line)  # a turn of its own: after a write nobody answers
        else:
            turns[k] = t[:s] + line + t[s:]
    elif op == "421":
        p = _line_at(t, b)[0] if c & 1 else b % (len(t) + 1)
        turns[k] = t[:p] + b"421 4.3.2 Service shutting down\r\n" + (t[p:] if c & 2 else b"")
        if not c & 2:
            del turns[k + 1:]
            end = "eof"
    elif op == "truncate":
        turns[k] = t[: b % (len(t) + 1)]
        del turns[k + 1:]
        end = "eof"
    elif op == "garbage":
        p = b % (len(t) + 1)
        turns[k] = t[:p] + blob + t[p:]
    elif op == "dup" and t:
        s, e = _line_at(t, b)
        turns[k] = t[:e] + t[s:e] * (1 + c % 3) + t[e:]
    elif op == "drop" and t:
        s, e = _line_at(t, b)
        turns[k] = t[:s] + t[e:]
    elif op == "flood":
        s = _line_at(t, b)[0] if t else 0
        turns[k] = t[:s] + b"250-x\r\n" * FLOOD[c % len(FLOOD)] + t[s:]
    return turns, end


MUTATIONS = ("split", "join", "digit", "code", "sep", "crlf", "long", "unsolicited", "421",
             "truncate", "garbage", "dup", "drop", "flood")


def build(bases, name, ops, piece, end, fail_write):
    """A case from a base recording and a list of (op, a, b, c, blob)."""
    turns = bases[name]
    for op, a, b, c, blob in ops:
        turns, forced = mutate(turns, op, a, b, c, blob)
        end = forced or end
    return name, [bytes(t) for t in turns], piece, end, fail_write


# --- made-up streams: lines of SMTP-ish tokens, and raw bytes

_TOKENS = st.one_of(
    st.sampled_from(CODES + (b"220", b"250", b"250", b"354", b"334", b"235")),
    st.binary(min_size=0, max_size=4),
)
_LINE = st.builds(
    lambda code, sep, text, eol: code + sep + text + eol,
    _TOKENS, st.sampled_from(SEPS), st.binary(max_size=12) | st.just(b"ok"),
    st.sampled_from((b"\r\n", b"\r\n", b"\r\n", b"\n", b"\r", b"")),
)
_TURN = st.lists(_LINE, max_size=6).map(b"".join) | st.binary(max_size=40)


def strategy(bases):
    """Hypothesis strategy of cases: mostly mutated recordings, some made-up streams."""
    names = sorted(bases)
    op = st.tuples(st.sampled_from(MUTATIONS), st.integers(0, 1 << 16),
                   st.integers(0, 1 << 16), st.integers(0, 1 << 16), st.binary(max_size=8))
    common = (st.sampled_from(PIECES), st.sampled_from(ENDS),
              st.sampled_from((-1,) * 6 + tuple(range(12))))
    mutated = st.builds(lambda name, ops, p, e, f: build(bases, name, ops, p, e, f),
                        st.sampled_from(names), st.lists(op, max_size=4), *common)
    made_up = st.builds(lambda name, turns, p, e, f: (name, turns, p, e, f),
                        st.sampled_from(names), st.lists(_TURN, max_size=12), *common)
    return st.one_of(mutated, mutated, mutated, made_up)


def sample(bases, n, seed=7):
    """n mutated cases drawn with random.Random(seed): the corpus the unix port replays."""
    rnd = random.Random(seed)
    names = sorted(bases)
    out = []
    for _ in range(n):
        ops = [(rnd.choice(MUTATIONS), rnd.randrange(1 << 16), rnd.randrange(1 << 16),
                rnd.randrange(1 << 16), bytes(rnd.randrange(256) for _ in range(rnd.randrange(9))))
               for _ in range(rnd.randrange(1, 4))]
        out.append(build(bases, rnd.choice(names), ops, rnd.choice(PIECES), rnd.choice(ENDS),
                         rnd.choice((-1,) * 6 + tuple(range(12)))))
    return out
