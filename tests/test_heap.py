# SPDX-License-Identifier: MIT
"""Heap exhaustion on the unix port (issue 7.3): sends at many heap sizes, from far too
small to enough, with the library and the driver below as .mpy (mpy-cross -O3), against the
private Postfix (PIPELINING, CHUNKING: the transaction engine at full stretch).

1. `-X heapsize` sweep: coarse steps from 16 KB, then HEAP_STEP-byte steps (default 128;
   `make heap`: 16) across the band where the import has just become possible. Each run
   imports the library (MemoryError here is the documented outcome: the heap is too small
   for the module), then sends a batch of three mails, two single mails (one with a
   recipient Postfix refuses: reply text is copied), a batch, and a last single mail,
   with gc.collect() between sends, through a Client and through one SMTP session.
2. squeeze: one process, a roomy heap, and before each send a ballast that leaves only
   about F bytes free in one region, F from 0 up in 16-byte steps, so the heap runs out at
   every point of a send in turn (preparing the mails, mid-batch, reading a refusal);
   then the ballast goes and the next send on the same object must go through.

Every run: a send either succeeds or fails with MemoryError or the library's own exception,
never anything else; the client is never left unusable (after a failure and gc.collect(),
the next send on the same Client or SMTP object goes through when the heap allows, and a
SMTP session that failed half-way is closed, not left out of step); every mail Postfix
delivers is byte-exact and delivered once, every mail reported sent is delivered.
"""

import os
import subprocess
import textwrap

import pytest

import measure
from postfix import USER, delivered_form, strip_prepended

STEP = int(os.environ.get("HEAP_STEP", "128"))
SQUEEZE_STEP = int(os.environ.get("HEAP_SQUEEZE_STEP", "32"))
# The squeeze's free region goes up to this: a batch of three mails through a Client (a
# fresh connection, the session's generators, three mails' records) needs about 6.1 KB.
SQUEEZE_TOP = 8192

# Compiled with mpy-cross: no source to compile on the device, so the heap goes to the
# library and the sends. argv: host port mode tag [lo hi step]
DRIVER = """
import gc, sys
gc.collect()
try:
    import smtp_client
    # send_many lives in smtp_ext, which smtp_client imports on first use. A program that
    # sends batches on a tight heap imports it at startup (README), before the heap is
    # fragmented: so does this one, and the sends below are what is measured.
    import smtp_ext  # noqa: F401
except MemoryError:
    print("IMPORT MemoryError")
    raise SystemExit
gc.collect()

FROM = "dev@example.test"
TO = ["device@example.test"]
REF = ["ghost@example.test", "device@example.test"]
SLOTS = []  # the squeeze's ballast (allocated in squeeze mode only)


def body(tag):
    return b"X-Test-Id: " + tag + b"\\r\\nSubject: heap\\r\\n\\r\\n.dot\\r\\nline\\r\\n"


def name(e):
    if isinstance(e, MemoryError):
        return "MemoryError"
    if isinstance(e, smtp_client.SMTPException):
        return "SMTP:" + type(e).__name__
    return "BAD:" + type(e).__name__


def note(tags, results):
    for t, r in zip(tags, results):
        if r.error is None:
            print("M", t.decode(), "refused" if r.refused else "ok")
        else:
            print("M", t.decode(), name(r.error))


class Sender:
    # A Client, or an SMTP session that reconnects only when it was closed.
    def __init__(self, mode, host, port):
        self.mode = mode
        self.host = host
        self.port = port
        self.c = None

    def send(self, tags, bodies, refuse):
        rcpts = REF if refuse else TO
        if self.c is None:
            if self.mode == "client":
                self.c = smtp_client.Client(self.host, self.port, tls="none", from_addr=FROM,
                                            local_hostname="dev.example.test")
            else:
                self.c = smtp_client.SMTP(local_hostname="dev.example.test")
        c = self.c
        if self.mode == "session" and c.sock is None:
            c.connect(self.host, self.port)
        if len(tags) > 1:
            if self.mode == "client":
                note(tags, c.send_many([(rcpts, b) for b in bodies]))
            else:
                note(tags, c.send_many([(FROM, rcpts, b) for b in bodies]))
        elif self.mode == "client":
            note(tags, [c.send(rcpts, bodies[0])])
        else:
            refused = c.sendmail(FROM, rcpts, bodies[0])
            print("M", tags[0].decode(), "refused" if refused else "ok")

    def attempt(self, label, tag, k, many, refuse):
        # The driver's own allocations first, outside the library: a MemoryError here says
        # nothing about the library ("P" lines are not judged).
        try:
            tag = tag + b"-" + str(k).encode()
            tags = [tag + b"-" + str(j).encode() for j in range(3)] if many else [tag]
            bodies = [body(t) for t in tags]
        except MemoryError:
            print("P", label)
            gc.collect()
            return
        try:
            self.send(tags, bodies, refuse)
        except Exception as e:
            # The exception of a single mail: Client.send/sendmail raise it.
            tags = bodies = None
            print("E", label, tag.decode(), name(e),
                  "open" if self.c is not None and self.mode == "session"
                  and self.c.sock is not None else "closed")
        gc.collect()
        print("H", label, gc.mem_alloc())  # what stays allocated after this send


def squeeze(free):
    # Leave about `free` bytes in one region: reserve them, fill every other hole of the
    # heap with ballast, then let the reserved block go.
    empty()
    SLOTS[0] = bytearray(free) if free else None
    i = 1
    size = 4096
    while i < len(SLOTS):
        try:
            SLOTS[i] = bytearray(size)
            i += 1
        except MemoryError:
            if size == 0:
                break
            size //= 2
    SLOTS[0] = None
    gc.collect()


def empty():
    for i in range(len(SLOTS)):
        SLOTS[i] = None
    gc.collect()


def main():
    host, port, mode, tag = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4].encode()
    s = Sender(mode, host, port)
    if len(sys.argv) == 5:
        # The -X heapsize sweep: a batch, single mails, one refusal, a batch, a last mail.
        plan = ((True, False), (False, False), (False, True), (True, True), (False, False))
        for k in range(len(plan)):
            many, refuse = plan[k]
            s.attempt("send" if k < len(plan) - 1 else "last", tag, k, many, refuse)
        return
    lo, hi, step = int(sys.argv[5]), int(sys.argv[6]), int(sys.argv[7])
    SLOTS.extend([None] * 4000)
    for free in range(lo, hi, step):
        squeeze(free)
        s.attempt("squeezed", tag, free * 10, free % 32 == 0, free % 48 == 16)
        empty()
        s.attempt("last", tag, free * 10 + 1, False, False)
    if mode == "session" and s.c is not None and s.c.sock is not None:
        s.c.quit()


try:
    main()
except MemoryError:
    # Only outside the library's calls (the driver's own setup): reported, not judged.
    print("SETUP MemoryError")
"""


@pytest.fixture(scope="module")
def mpydir(tmp_path_factory):
    d = tmp_path_factory.mktemp("heap")
    measure.build_mpy(d)
    src = d / "heapdrv.py"
    src.write_text(textwrap.dedent(DRIVER))
    subprocess.run([str(measure.MPY_CROSS), "-O3", "-o", str(d / "heapdrv.mpy"), str(src)],
                   check=True)
    src.unlink()
    return d


def _run(mpydir, heapsize, args, timeout=120):
    p = measure.run_snippet("import heapdrv\n", heapsize=heapsize, libdir=mpydir,
                            args=[str(a) for a in args], timeout=timeout)
    out = p.stdout + p.stderr
    assert p.returncode == 0, f"heapsize={heapsize}: exit {p.returncode}\n{out[-3000:]}"
    return out


class Ledger:
    """What the client said about each mail (tag -> outcome) and every other line."""

    def __init__(self):
        self.mails = {}
        self.errors = []  # (label, tag, exception, open/closed)
        self.runs = 0
        self.imports_failed = 0
        self.driver_failed = 0
        self.memory_errors = 0
        self.held = []  # gc.mem_alloc() after each send and gc.collect(), in order

    def add(self, out):
        self.runs += 1
        for line in out.splitlines():
            f = line.split()
            if not f:
                continue
            if f[0] == "M":
                assert f[1] not in self.mails, f"tag {f[1]} reported twice"
                self.mails[f[1]] = f[2]
                self.memory_errors += f[2] == "MemoryError"
            elif f[0] == "E":
                self.errors.append(tuple(f[1:]))
                self.memory_errors += f[3] == "MemoryError"
            elif line == "IMPORT MemoryError":
                self.imports_failed += 1
            elif f[0] == "P":
                self.driver_failed += 1
            elif f[0] == "H":
                self.held.append(int(f[2]))
            elif line != "SETUP MemoryError":
                raise AssertionError(f"unexpected output: {line!r}\n{out[-2000:]}")

    def check_outcomes(self):
        for tag, what in self.mails.items():
            assert what in ("ok", "refused", "MemoryError") or what.startswith("SMTP:"), (
                tag, what)
        for label, tag, exc, _ in self.errors:
            assert exc == "MemoryError" or exc.startswith("SMTP:"), (label, tag, exc)


def _queue_empty(pf):
    q = pf.base / "queue"
    return not any(any(True for _ in (q / d).rglob("*") if _.is_file())
                   for d in ("maildrop", "incoming", "active", "deferred", "hold")
                   if (q / d).exists())


def check_delivered(pf, ledger, timeout=60):
    """Every mail reported sent is delivered once, byte-exact; nothing else is delivered
    but byte-exact mails the client reported failed (the server had accepted them when
    the heap ran out: the same ambiguity as a connection lost after the end of data)."""
    import time

    sent = {t for t, w in ledger.mails.items() if w in ("ok", "refused")}
    pf.wait_delivered(len(sent), timeout=timeout)
    deadline = time.monotonic() + timeout
    while not _queue_empty(pf) and time.monotonic() < deadline:
        time.sleep(0.05)
    seen = {}
    for raw in pf.delivered(USER):
        clean = strip_prepended(raw, marker=b"X-Test-Id: ")
        tag = clean.split(b"\n", 1)[0][len(b"X-Test-Id: "):].decode()
        assert tag not in seen, f"{tag} delivered twice"
        seen[tag] = clean
    for tag, clean in seen.items():
        want = b"X-Test-Id: " + tag.encode() + b"\r\nSubject: heap\r\n\r\n.dot\r\nline\r\n"
        assert clean == delivered_form(want), f"{tag} corrupted: {clean[:200]!r}"
        assert tag in ledger.mails or any(e[1] == tag for e in ledger.errors), (
            f"{tag} delivered but never sent")
    missing = sent - set(seen)
    assert not missing, f"reported sent, not delivered: {sorted(missing)[:5]}"
    return len(seen), len(seen) - len(sent)


def _import_threshold(mpydir, pf):
    # The smallest heap (1 KB resolution) at which the import succeeds.
    lo, hi = 4096, 512 * 1024
    while hi - lo > 1024:
        mid = (lo + hi) // 2 // 256 * 256
        out = _run(mpydir, mid, [pf.host, pf.port, "client", "probe"])
        if "IMPORT MemoryError" in out:
            lo = mid
        else:
            hi = mid
    return hi


COUNTS = {}


@pytest.mark.timeout(1800)
@pytest.mark.parametrize("mode", ["client", "session"])
def test_heapsize_sweep(mpydir, postfix, mode):
    postfix.clear()
    ledger = Ledger()
    imp = _import_threshold(mpydir, postfix)
    postfix.clear()  # the probes' mails
    sizes = list(range(16 * 1024, imp - 2048, 4096)) + list(range(imp - 2048, imp + 8192, STEP))
    last_failures = []
    leaks = []
    for h in sizes:
        before = len(ledger.errors)
        held = len(ledger.held)
        out = _run(mpydir, h, [postfix.host, postfix.port, mode, f"h{h}"])
        ledger.add(out)
        last_failures += [(h, tag, exc) for label, tag, exc, _ in ledger.errors[before:]
                          if label == "last"]
        # A failed send leaves nothing behind: after gc.collect() the heap holds what it
        # held before it (the client, its session and pool, a connection open or closed,
        # the last reply's text), give or take 1 KB, whatever failed.
        # One step up is the client itself, made by the first send that got that far.
        after = ledger.held[held:]
        if len([b for a, b in zip(after, after[1:]) if b > a + 1024]) > 1:
            leaks.append((h, after))
    ledger.check_outcomes()
    assert not leaks, f"sends left memory behind: {leaks[:3]}"
    # The last send follows gc.collect() after every failure: when the import fit and a
    # send ever succeeded at this heap size, the client was not left unusable. Within 6 KB
    # of the import threshold that is luck: which holes the first sends left decides
    # whether the next fits (the leak check above covers that band).
    ok_heaps = {int(t.split("-")[0][1:]) for t, w in ledger.mails.items() if w == "ok"}
    stuck = [f for f in last_failures if f[0] in ok_heaps and f[0] >= imp + 6144]
    assert not stuck, f"the last send failed after an earlier success: {stuck[:5]}"
    # Far enough above the import threshold every send works: 6 KB holds the client, its
    # session and pool, a connection, and a batch of three mails with their generators.
    top = [h for h in sizes if h >= imp + 6144]
    for h in top:
        bad = [(t, w) for t, w in ledger.mails.items()
               if t.startswith(f"h{h}-") and w not in ("ok", "refused")]
        assert not bad, f"heapsize={h} is enough, yet {bad}"
    delivered, ambiguous = check_delivered(postfix, ledger)
    COUNTS[f"heapsize {mode}"] = (len(sizes), ledger.memory_errors, delivered, ambiguous)
    print(f"\nHEAP {mode}: {len(sizes)} heap sizes ({sizes[0]}..{sizes[-1]}), import needs "
          f"{imp}, {ledger.memory_errors} MemoryErrors, {delivered} mails delivered "
          f"({ambiguous} reported failed but accepted)")


@pytest.mark.timeout(1800)
@pytest.mark.parametrize("mode", ["client", "session"])
def test_squeezed_heap(mpydir, postfix, mode):
    postfix.clear()
    ledger = Ledger()
    out = _run(mpydir, 192 * 1024,
               [postfix.host, postfix.port, mode, "q", 0, SQUEEZE_TOP, SQUEEZE_STEP], timeout=600)
    ledger.add(out)
    ledger.check_outcomes()
    levels = len(range(0, SQUEEZE_TOP, SQUEEZE_STEP))
    # Every level ends with a send on the same object after the ballast is gone.
    lasts = {t: w for t, w in ledger.mails.items() if int(t.split("-")[1]) % 10 == 1}
    failed = [e for e in ledger.errors if e[0] == "last"]
    assert not failed and len(lasts) == levels, (failed[:5], len(lasts), levels)
    assert all(w == "ok" for w in lasts.values()), [x for x in lasts.items() if x[1] != "ok"]
    squeezed = [w for t, w in ledger.mails.items() if int(t.split("-")[1]) % 10 == 0]
    squeezed += [e[2] for e in ledger.errors if e[0] == "squeezed"]
    assert "MemoryError" in squeezed and any(w in ("ok", "refused") for w in squeezed), (
        "the squeeze never crossed from too little to enough")
    delivered, ambiguous = check_delivered(postfix, ledger)
    COUNTS[f"squeeze {mode}"] = (levels, ledger.memory_errors, delivered, ambiguous)
    print(f"\nHEAP squeeze {mode}: {levels} levels, {ledger.memory_errors} MemoryErrors, "
          f"{delivered} mails delivered ({ambiguous} reported failed but accepted)")


def test_heap_counts():
    if COUNTS:
        print("\nHEAP " + "; ".join(f"{k}: {v}" for k, v in COUNTS.items()))

