# SPDX-License-Identifier: MIT
"""smtp_native (the viper body encoder) against the pure-Python encoder and a reference.

The native `encode` and `clean` must do what `Session.encode` and `Session.clean` do, call
by call: the same bytes written into tx (and none elsewhere in it), the same input index
returned, the same tx_len and line state (bol, cr) after every call. A MicroPython process
runs random bodies cut into random chunks through three encoders side by side (REFERENCE
below: Session.encode's contract byte by byte; lib/smtp_client.py's Session.encode, the
fallback; smtp_native.encode), counts the calls where they differ and prints a digest of the
reference's output per segment of cases:
- bodies: random windows (0-63 bytes, one in 16 up to 600) of a 64 KB corpus of text runs
  (letters, bytes >= 0x80, TAB/NUL/VT/FF and others below 14 that the word test flags too)
  and line ends: a clean corpus (CRLF and "." only: the word paths and clean()'s True case)
  and one with bare CR, bare LF, CRLF, CR before LF or a dot, leading dots ...;
- chunks: 0 to 6 random cuts (empty chunks too) of the body, which sits in a bytes or
  bytearray between 0-7 bytes of junk and 0-7 more: every source alignment, and bytes
  before i and past j (line ends, dots) that must not matter;
- tx of 8 to 40 bytes (full every few bytes) or 512, prefilled with junk, tx_len at a
  random offset before every call (every tx alignment against every source one);
- stuff on and off (DATA, BDAT), any initial bol/cr.
CASES go through the x64 .mpy that tools/build_native.py makes (what a board runs, for its
own architecture), PY_CASES through the .py source compiled by the unix port; the digests of
the first CHECK cases must also match the one CPython computes with the same generator and
REFERENCE. Then: every alignment directed, word access aligned (a trap on x64), a long body,
a real send before and after `import smtp_native` (the opt-in), heap_lock, the error another
architecture's .mpy raises, the builds, RAM after import, and (when MICROPYTHON32 names one)
the same cases on a 32-bit unix port. Importing smtp_native replaces Session.encode/clean:
each snippet keeps the pure-Python pair before it imports it.
"""

import hashlib
import os
import re
import subprocess
import sys

import pytest

from harness import LIB, ROOT, run, run_ok

sys.path.insert(0, str(ROOT / "tools"))
import build_native  # noqa: E402

CASES = 100_000  # through the x64 .mpy (about 19 s of CPU, on two cores)
PY_CASES = 10_000  # through the .py source compiled by the unix port
CHECK = 5_000  # cases CPython recomputes with the reference

# Runs on MicroPython and CPython alike: the generator and the reference encoder.
COMMON = r"""
M32 = 0xFFFFFFFF


class Rand:
    # a 32-bit LCG (69069: small ints on both runtimes), its high 16 bits: the same numbers
    # on MicroPython and CPython, and cheap (the generator is most of the test's time)
    def __init__(self, seed):
        self.x = seed & M32

    def below(self, n):
        self.x = x = (self.x * 69069 + 1) & M32
        return (x >> 16) % n


TEXT = b"abcdefghijklmnopqrstuvwxyz ABCDEFGHIJKLMNOPQRSTUVWXYZ 0123456789"
ODD = b"\t\x00\x01\x0b\x0c\x0e\x7f\x80\xff\xc3\xa9"  # below 14, or >= 0x80
SPECIAL = (b"\r\n", b"\r", b"\n", b".", b"..", b"\r\n.", b"\n.", b"\r.", b"\r\r\n",
           b"\n\r", b"\r\n\r\n", b".\r\n")


def corpus(r, clean):
    # 64 KB of text runs (letters, bytes >= 0x80, TAB/NUL/VT/FF and others below 14 that the
    # word test flags too) between line ends: CRLF and "." only when clean, else any SPECIAL
    out = bytearray()
    while len(out) < 65536:
        k = r.below(10)
        if k < 5:
            for _ in range(r.below(8) if r.below(3) else r.below(90)):
                if r.below(24) == 0:
                    out.append(ODD[r.below(len(ODD))])
                else:
                    out.append(TEXT[r.below(len(TEXT))])
        elif clean:
            out += b"\r\n" if k < 9 else b"."
        else:
            out += SPECIAL[r.below(len(SPECIAL))]
    return bytes(out)


def body(r, corpora):
    # (data, stuff, bol, cr): a random window of a corpus, up to 600 bytes (tx is 512 at most)
    c = corpora[r.below(2)]
    n = r.below(600) if r.below(16) == 0 else r.below(64)
    o = r.below(len(c) - n)
    return c[o:o + n], r.below(2) == 0, r.below(2) == 0, r.below(4) == 0


def ref_encode(st, tx, p, src, i, j):
    # Session.encode's contract byte by byte. st = [bol, cr, stuff]. A new step starts at
    # the call, after a line end and after CRLF for a pending CR: it needs room (p < room).
    # A regular byte needs room; the CR or LF right after regular bytes of the same step
    # ends their line even when they filled tx (the line end always fits: room = len - 3).
    room = len(tx) - 3
    bol, cr, stuff = st
    step = True
    while i < j:
        c = src[i]
        if step:
            if p >= room:
                break
            if cr:  # RFC 5321 2.3.8: CR then anything but LF is a bare CR: CRLF
                tx[p] = 13
                tx[p + 1] = 10
                p += 2
                cr = False
                bol = True
                if c == 10:
                    i += 1
                continue
            if stuff and bol and c == 46:  # RFC 5321 4.5.2
                tx[p] = 46
                p += 1
            bol = False
            step = False
        if c == 10:  # a bare LF (a CR before it was taken above)
            tx[p] = 13
            tx[p + 1] = 10
            p += 2
            bol = True
            step = True
        elif c == 13:
            cr = True
            step = True
        elif p >= room:
            break
        else:
            tx[p] = c
            p += 1
        i += 1
    st[0] = bol
    st[1] = cr
    return i, p


def ref_clean(bol, cr, stuff, src, i, j):
    # Session.clean's contract: src[i:j] may go out verbatim after this state
    if cr or (stuff and bol and src[i] == 46):
        return False
    k = i
    while k < j:
        c = src[k]
        if c == 13 and (k + 1 == j or src[k + 1] != 10):
            return False
        if c == 10 and (k == i or src[k - 1] != 13):
            return False
        if c == 10 and stuff and k + 1 < j and src[k + 1] == 46:
            return False
        k += 1
    return True


def chunks(r, data):
    # (src, i, j) per chunk: 0-6 random cuts (empty chunks too) of one buffer (bytes or
    # bytearray) that holds the body between 0-7 bytes of junk and 0-7 more
    pre = b"\r\n.x\r\n.x"[: r.below(8)]
    buf = pre + data + b"\n\r.\n\r.\n"[: r.below(8)]
    if r.below(2):
        buf = bytearray(buf)
    cuts = [len(pre) + r.below(len(data) + 1) for _ in range(r.below(7))]
    cuts.sort()
    cuts.append(len(pre) + len(data))
    out = []
    a = len(pre)
    for b in cuts:
        out.append((buf, a, b))
        a = b
    return out


def case(r, corpora, encoders, digest):
    # One body through each encoder(st, tx, p, src, i, j) -> (i, p), the first being the
    # reference; returns the number of calls where another differs from it (index, tx_len,
    # bol, cr or any byte of tx: tx keeps its junk and old bytes, so a stray write shows).
    # The reference's output and state go into digest.
    data, stuff, bol, cr = body(r, corpora)
    size = 512 if r.below(8) == 0 else 8 + r.below(33)
    room = size - 3
    junk = bytes((k * 37 + 11) & 255 for k in range(size))
    txs = [bytearray(junk) for _ in encoders]
    sts = [[bol, cr, stuff] for _ in encoders]
    ref, tx0, st0 = encoders[0], txs[0], sts[0]
    bad = 0
    for src, i, j in chunks(r, data):
        if i < j:  # (Session.clean reads src[i])
            want = ref.clean(st0, src, i, j)
            for e in encoders[1:]:
                if e.clean(st0, src, i, j) != want:
                    bad += 1
        calls = 0
        while True:
            p0 = r.below(room)
            i1, p1 = ref(st0, tx0, p0, src, i, j)
            for k in range(1, len(encoders)):
                i2, p2 = encoders[k](sts[k], txs[k], p0, src, i, j)
                if i2 != i1 or p2 != p1 or sts[k] != st0 or txs[k] != tx0:
                    bad += 1  # (then go on from the reference's state)
                    sts[k][:] = st0
                    txs[k][:] = tx0
            digest.update(tx0[p0:p1])
            digest.update(b"%d;" % (i1 * 4 + st0[0] * 2 + st0[1]))
            i = i1
            calls += 1
            if i >= j or calls > 3 * len(data) + 8:
                break
    return bad


class Ref:
    # the reference as an encoder of case()
    def __call__(self, st, tx, p, src, i, j):
        return ref_encode(st, tx, p, src, i, j)

    def clean(self, st, src, i, j):
        return ref_clean(st[0], st[1], st[2], src, i, j)
"""

# MicroPython: the same cases through Session.encode and smtp_native.encode.
DRIVER = COMMON + r"""
import sys
import hashlib

if sys.argv[1] != "-":
    sys.path.insert(0, sys.argv[1])  # the folder with the x64 smtp_native.mpy
import smtp_client

S = smtp_client.Session
py_encode, py_clean = S.encode, S.clean  # (importing smtp_native replaces them)
import smtp_native

if (S.encode, S.clean) != (smtp_native.encode, smtp_native.clean):
    raise SystemExit("importing smtp_native did not bind its encoder")


class Through:
    # Session.encode / Session.clean, or the native pair, on a Session's attributes
    def __init__(self, enc, cln):
        self.s = smtp_client.Session(smtp_client.Pool(512))
        self.enc = enc
        self.cln = cln

    def __call__(self, st, tx, p, src, i, j):
        s = self.s
        s.tx = tx
        s.tx_len = p
        s.bol, s.cr, s.stuff = st
        i = self.enc(s, src, i, j)
        if type(s.bol) is not bool or type(s.cr) is not bool:
            raise TypeError("bol/cr must stay bools")
        st[0] = s.bol
        st[1] = s.cr
        return i, s.tx_len

    def clean(self, st, src, i, j):
        s = self.s
        s.bol, s.cr, s.stuff = st
        return self.cln(s, src, i, j)


encoders = [Ref(), Through(py_encode, py_clean), Through(smtp_native.encode, smtp_native.clean)]
n, seed = int(sys.argv[2]), int(sys.argv[4])
marks = [int(x) for x in sys.argv[3].split(",") if int(x) < n] + [n]
r = Rand(seed)
corpora = (corpus(r, True), corpus(r, False))
h = hashlib.sha256()
bad = seg = 0
for k in range(n + 1):
    if k == marks[seg]:
        # the digest of each segment of cases (digest() ends a MicroPython hash)
        print("SEG%d" % seg, "".join("%02x" % b for b in h.digest()))
        h = hashlib.sha256()
        seg += 1
    if k < n:
        bad += case(r, corpora, encoders, h)
print("FILE", smtp_native.__file__)
print("BAD", bad)
"""


@pytest.fixture(scope="module")
def mpy_dir(tmp_path_factory):
    """A folder holding smtp_native.mpy for x64, built as tools/build_native.py does."""
    out = tmp_path_factory.mktemp("native")
    build_native.build("x64", out_root=out)
    return out / "x64"


def fields(out):
    return dict(line.split(" ", 1) for line in out.splitlines() if " " in line)


def reference_digest(cases, seed):
    """The digest of the first `cases` cases, computed by CPython with REFERENCE alone."""
    scope = {}
    exec(compile(COMMON, "native-common", "exec"), scope)  # noqa: S102 (this file's own code)
    r = scope["Rand"](seed)
    corpora = (scope["corpus"](r, True), scope["corpus"](r, False))
    h = hashlib.sha256()
    for _ in range(cases):
        assert scope["case"](r, corpora, [scope["Ref"]()], h) == 0
    return h.hexdigest()


def test_equivalence_random_chunks(mpy_dir):
    # CASES through the .mpy in two processes (two seeds: both cores), PY_CASES through the
    # source compiled by the port (the first seed), in parallel; CPython recomputes the
    # first CHECK cases of the first seed with the reference alone.
    from harness import command

    seeds = (20260701, 20260702)
    runs = [(str(mpy_dir), CASES // 2, seeds[0]), (str(mpy_dir), CASES - CASES // 2, seeds[1]),
            ("-", PY_CASES, seeds[0])]
    path = mpy_dir.parent / "driver.py"
    path.write_text(DRIVER)
    procs = []
    for where, n, seed in runs:
        argv, env = command(path, args=[where, n, "%d,%d" % (CHECK, PY_CASES), seed])
        procs.append(subprocess.Popen(argv, env=env, cwd=ROOT, stdout=subprocess.PIPE,
                                      stderr=subprocess.STDOUT, text=True))
    want = reference_digest(CHECK, seeds[0])
    outs = []
    for p in procs:
        try:
            out, _ = p.communicate(timeout=110)
        except subprocess.TimeoutExpired:
            p.kill()
            raise
        assert p.returncode == 0, out
        outs.append(fields(out))
    mpy, mpy2, py = outs
    assert mpy["FILE"] == mpy2["FILE"] == str(mpy_dir / "smtp_native.mpy")
    assert py["FILE"] == str(LIB / "smtp_native.py")
    assert mpy["BAD"] == mpy2["BAD"] == py["BAD"] == "0"
    assert mpy["SEG0"] == py["SEG0"] == want
    assert mpy["SEG1"] == py["SEG1"] and "SEG2" in mpy and "SEG2" not in py


SWEEP = COMMON + r"""
import sys
sys.path.insert(0, sys.argv[1])
import smtp_client
S = smtp_client.Session
py_encode, py_clean = S.encode, S.clean
import smtp_native
s = S(smtp_client.Pool(512))
t = S(smtp_client.Pool(512))
bad = n = 0
text = TEXT * 3
for end in (b"\r\n", b"\n", b"\r", b"\t", b"\x80", b"\r\n.", b"\n.", b""):
    for length in range(41):
        data = text[:length] + end + text[:length]
        for so in range(4):
            src = bytearray(b"." * so + data)
            for po in range(4):
                for stuff in (True, False):
                    for x in (s, t):
                        x.tx_len, x.bol, x.cr, x.stuff = po, True, False, stuff
                        x.tx[:] = bytes(512)
                    a = py_encode(s, src, so, len(src))
                    b = smtp_native.encode(t, src, so, len(src))
                    if (a, s.tx_len, s.bol, s.cr, s.tx) != (b, t.tx_len, t.bol, t.cr, t.tx):
                        bad += 1
                    if so < len(src) and (py_clean(s, src, so, len(src))
                                          != smtp_native.clean(t, src, so, len(src))):
                        bad += 1
                    n += 1
print("CASES", n, "BAD", bad)
"""


def test_every_alignment_and_run_length(mpy_dir):
    # Directed: a run of 0-40 text bytes, then a line end (or a byte the word test flags),
    # then more text, from every source alignment into every tx alignment, stuff on/off.
    out = run_ok(SWEEP, args=[mpy_dir])
    assert out.split()[-1] == "0" and int(out.split()[1]) > 10000


def test_word_access_is_aligned(tmp_path):
    # Cortex-M0+ and Xtensa fault on a word load or store at an address that is not a
    # multiple of 4; x64 does not. So every ptr32(ADDR) of a copy of the source becomes
    # ptr32(ADDR + ((ADDR & 3) << 48)): an unaligned ADDR turns into a non-canonical x64
    # address and the process dies with SIGSEGV. The sweep and 5 000 random cases run on it.
    src = (LIB / "smtp_native.py").read_text()
    strict, n = re.subn(r"ptr32\(([^()]*)\)", r"ptr32(\1 + ((\1 & 3) << 48))", src)
    assert n == src.count("ptr32(") >= 8
    (tmp_path / "smtp_native.py").write_text(strict)
    out = run_ok(SWEEP, args=[tmp_path])
    assert out.split()[-1] == "0"
    out = run_ok(DRIVER, args=[tmp_path, 5_000, "5000", 1], timeout=100)
    assert fields(out)["BAD"] == "0" and fields(out)["FILE"] == str(tmp_path / "smtp_native.py")
    # (the trick itself: an unaligned word load dies)
    bad = strict.replace("a = sb - o\n", "a = sb - o + 1\n")
    assert bad != strict
    (tmp_path / "smtp_native.py").write_text(bad)
    p = run(SWEEP, args=[tmp_path])
    assert p.returncode < 0  # killed by a signal


def test_long_body_through_small_tx(mpy_dir):
    # 200 KB with every kind of line end and dot lines, through tx of 512 and 4096 bytes:
    # the same output stream and the same number of calls as Session.encode.
    out = run_ok(r"""
import sys
sys.path.insert(0, sys.argv[1])
import smtp_client
S = smtp_client.Session
py_encode = S.encode
import smtp_native
line = b"The quick brown fox jumps over the lazy dog 0123456789"
parts = []
for k in range(4000):
    parts.append(line[: k % 50] + (b"\r\n", b"\n", b"\r", b"\r\n.", b".\n")[k % 5])
body = b"".join(parts)
for size in (512, 4096):
    outs = []
    for enc in (py_encode, smtp_native.encode):
        s = S(smtp_client.Pool(size))
        acc = bytearray()
        i = calls = 0
        while i < len(body):
            i = enc(s, body, i, len(body))
            acc += s.tx[: s.tx_len]
            s.tx_len = 0
            calls += 1
        outs.append((bytes(acc), calls, s.bol, s.cr))
    print(size, outs[0] == outs[1], len(outs[0][0]), outs[0][1])
""", args=[mpy_dir], heapsize="8m")
    lines = out.split("\n")
    assert lines[0].split()[:2] == ["512", "True"] and lines[1].split()[:2] == ["4096", "True"]


def test_one_pass_scans_match_the_core(mpy_dir):
    # smtp_native's 8-bit check and wire size against the core's (max(), three counts) on
    # random bodies of CR, LF, CRLF, dots, text and 8-bit bytes, every length up to 40 and
    # longer ones: the same answer for each.
    out = run_ok(r"""
import sys, random
sys.path.insert(0, sys.argv[1])
import smtp_client
py_ascii, py_size = smtp_client._ascii, smtp_client._wire_size
import smtp_native
assert smtp_client._wire_size is smtp_native.wire_size  # the import switched them
random.seed(7)
pieces = (b"\r\n", b"\r", b"\n", b".", b"ab", b"x", b"\x80", b"\xc3\xa9", b"\r\r\n",
          b"0123456789abcdefghijklmnopqrstuv")  # (long runs: the word-at-a-time paths)
bad = 0
for k in range(20000):
    body = b"".join(pieces[random.getrandbits(4) % 10] for _ in range(k % 41 + (k // 41) % 3))
    if py_ascii(body) != smtp_native.ascii_only(body) or \
            py_size(body) != smtp_native.wire_size(body):
        bad += 1
        print("BAD", repr(body))
print("cases 20000 bad", bad)
""", args=[mpy_dir], heapsize="8m")
    assert "cases 20000 bad 0" in out, out


def test_send_with_native(mpy_dir, mailserver):
    # The opt-in end to end: a mail sent after `import smtp_native` arrives as the one sent
    # without it (bare CR and LF made CRLF, leading dots stuffed and unstuffed by the server),
    # its body in memory (clean() decides, then encode()) and in pieces. (aiosmtpd speaks
    # DATA; BDAT's no-stuffing is in the random cases, stuff off.)
    srv = mailserver()
    out = run_ok(r"""
import sys
sys.path.insert(0, sys.argv[1])
import smtp_client
host, port = sys.argv[2], int(sys.argv[3])
line = b"The quick brown fox jumps over the lazy dog 0123456789\r\n"
body = (b"Subject: opt-in\r\n\r\n" + line * 40 + b".dot\nbare lf\rbare cr\r\n" + line * 40
        + b"..two\r\n" + b"x" * 700 + b"\n.")


def send(tag):
    s = smtp_client.SMTP(host, port, timeout=10)
    s.sendmail("a@example.test", ["b@example.test"], body + tag)
    s.sendmail("a@example.test", ["b@example.test"], [body[:333], body[333:], tag])
    s.quit()


send(b"TAG-PY")
import smtp_native
assert smtp_client.Session.encode is smtp_native.encode
send(b"TAG-NV")
print("SENT")
""", args=[mpy_dir, srv.host, srv.port])
    assert out.split()[-1] == "SENT"
    py1, py2, nat1, nat2 = [m.content for m in srv.messages]
    assert py1 == py2 and nat1 == nat2
    assert nat1.replace(b"TAG-NV", b"TAG-PY") == py1
    assert b"\r\n.dot\r\nbare lf\r\nbare cr\r\n" in nat1 and b"\r\n..two\r\n" in nat1
    assert nat1.endswith(b"x" * 700 + b"\r\n.TAG-NV\r\n")


def test_no_allocation(mpy_dir):
    # STYLE.md: the body loop allocates nothing. encode and clean under heap_lock.
    out = run_ok(r"""
import sys
sys.path.insert(0, sys.argv[1])
import micropython
import smtp_client
import smtp_native
body = b"line one\r\n.dot\nbare lf\rbare cr\r\n" * 100
s = smtp_client.Session(smtp_client.Pool(512))


def loop():
    i = 0
    while i < len(body):
        i = smtp_native.encode(s, body, i, len(body))
        s.tx_len = 0
    return smtp_native.clean(s, body, 0, len(body))


loop()  # warm up
micropython.heap_lock()
try:
    ok = loop() is False
finally:
    micropython.heap_unlock()
print("OK", ok)
""", args=[mpy_dir])
    assert out.strip() == "OK True"


def test_wrong_architecture_is_a_value_error(tmp_path):
    # Another architecture's .mpy: MicroPython raises ValueError on import (a board's
    # main.py that imports smtp_native in a try catches it with ImportError).
    arm = build_native.build("armv6m", out_root=tmp_path).parent
    out = run_ok(r"""
import sys
sys.path.insert(0, sys.argv[1])
try:
    import smtp_native
    print("imported")
except ValueError as e:
    print("ValueError", e)
""", args=[arm])
    assert out.startswith("ValueError")


def test_builds_every_architecture(tmp_path):
    # tools/build_native.py: one .mpy per board architecture, each smaller than 6 KB (the
    # issue's prototype was ~5.6 KB on armv6m).
    sizes = {}
    for arch in build_native.ARCHS:
        out = build_native.build(arch, out_root=tmp_path)
        assert out == tmp_path / arch / "smtp_native.mpy"
        sizes[arch] = out.stat().st_size
    assert set(sizes) == {"x64", "armv6m", "armv7emsp", "xtensawin"}
    # The prototype encoder alone was ~5.6 KB on armv6m; this one also carries the
    # one-pass scans of an in-memory body (8-bit check, wire size).
    assert sizes["armv6m"] < 5 * 1024 and max(sizes.values()) < 8192, sizes


def test_import_cost(mpy_dir):
    # RAM the module holds after import on the unix port (the machine code itself is in the
    # port's executable memory, outside the GC heap here; see the report in the module).
    out = run_ok(r"""
import sys
sys.path.insert(0, sys.argv[1])
import gc
import smtp_client
gc.collect()
a = gc.mem_alloc()
import smtp_native
gc.collect()
print(gc.mem_alloc() - a)
""", args=[mpy_dir])
    assert int(out) < 1024


@pytest.mark.skipif(not os.environ.get("MICROPYTHON32"),
                    reason="MICROPYTHON32 names no 32-bit unix port")
def test_32bit_port(tmp_path):
    # The x64 port has 64-bit ints: a sign or shift slip that only a 32-bit viper int shows
    # (a ptr32 load with its top bit set, >> on int instead of uint) passes there. Boards are
    # 32-bit: MICROPYTHON32=path/to/micropython, a unix port built 32-bit from MicroPython's
    # source (ports/unix: make CFLAGS_EXTRA=-m32 LDFLAGS_EXTRA=-m32 MICROPY_PY_FFI=0
    # MICROPY_PY_BTREE=0 MICROPY_PY_SSL=0 MICROPY_SSL_MBEDTLS=0 FROZEN_MANIFEST=, with
    # gcc-multilib), runs the x86 .mpy and the source.
    x86 = build_native.build("x86", out_root=tmp_path).parent
    path = tmp_path / "driver.py"
    path.write_text(DRIVER)
    env = dict(os.environ, MICROPYPATH=str(LIB))
    seed = 20260701
    want = reference_digest(CHECK, seed)
    for where, n in ((str(x86), 20_000), ("-", 5_000)):
        p = subprocess.run([os.environ["MICROPYTHON32"], str(path), where, str(n), str(CHECK),
                            str(seed)], env=env, capture_output=True, text=True, timeout=100)
        assert p.returncode == 0, p.stdout + p.stderr
        f = fields(p.stdout)
        assert f["BAD"] == "0" and f["SEG0"] == want, p.stdout
