# SPDX-License-Identifier: MIT
"""Run CPython's own smtplib test suite against lib/smtplib.py.

    python tools/cpython_smtplib_suite.py [--threshold N] [--core] [--bare] [--strict-auth] [-v]

The local CPython's `test/test_smtplib.py` (with its `test.support`, `mock_socket` and
`smtpd` helpers) is imported with `sys.modules["smtplib"]` set to this repository's
lib/smtplib.py, and run unmodified. Prints "N of M passed", then each failure with its
reason; exits 1 when fewer than N (default 74) pass, 2 when the suite cannot run.

What the runner adapts, and says so when it runs (the test bodies are unchanged):
- plaintext AUTH: lib/smtplib refuses to send credentials without TLS unless the program
  opts in; the suite's servers have no TLS, so the runner sets
  `smtplib.SMTP.allow_plaintext_auth = True` (--strict-auth leaves it off).
- sockets: the suite swaps `smtplib.socket` for its `mock_socket`; our sockets are made by
  the core, so the assignment is forwarded to `smtp_client.socket`, and the mock's socket
  gets the `recv_into` a real socket has (the core reads with it).

--core measures the core alone as smtplib (`smtp_client`, with `LMTP = SMTP` and
`_MAXLINE = 8192` stood in, since the suite refers to them when it is imported); --bare
leaves the sockets alone (the mock-socket tests then fail). Measured on CPython 3.11.7:
the core alone 19 of 82 bare, 31 of 82 adapted; lib/smtplib.py 75 of 82.
"""

import argparse
import importlib.util
import io
import os
import sys
import time
import types
import unittest
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
LIB = ROOT / "lib"
THRESHOLD = 76


class _Forward(types.ModuleType):
    """A module whose `socket` attribute, when a test assigns it, is also the core's."""

    def __setattr__(self, name, value):
        super().__setattr__(name, value)
        if name == "socket":
            sys.modules["smtp_client"].socket = value


def _recv_into(self, buf, nbytes=0):
    # What a real socket does with the mock's data: copy what recv() returns.
    data = self.recv(nbytes or len(buf))
    buf[: len(data)] = data
    return len(data)


def load(core=False):
    """Put our smtplib (or the core alone) into sys.modules["smtplib"]; return it."""
    sys.path[:0] = [str(LIB), str(ROOT / "cpython")]  # cpython/: the `micropython` shim
    import smtp_client

    if core:
        mod = types.ModuleType("smtplib")
        mod.__dict__.update(smtp_client.__dict__)
        mod.LMTP = smtp_client.SMTP
        mod._MAXLINE = 8192
    else:
        spec = importlib.util.spec_from_file_location("smtplib", LIB / "smtplib.py")
        mod = importlib.util.module_from_spec(spec)
        sys.modules["smtplib"] = mod
        spec.loader.exec_module(mod)
    sys.modules["smtplib"] = mod
    return mod


class _Result(unittest.TestResult):
    """Collects (test id, outcome, reason) per test, not per subTest."""

    def __init__(self):
        super().__init__()
        self.outcomes = {}

    def _note(self, test, outcome, err=None):
        tid = test.id()
        reason = ""
        if err is not None:
            reason = self._exc_info_to_string(err, test).strip().splitlines()[-1]
        if tid not in self.outcomes or outcome != "pass":
            self.outcomes[tid] = (outcome, reason)

    def addSuccess(self, test):
        self._note(test, "pass")

    def addFailure(self, test, err):
        self._note(test, "FAIL", err)

    def addError(self, test, err):
        self._note(test, "ERROR", err)

    def addSkip(self, test, reason):
        self.outcomes[test.id()] = ("skip", reason)

    def addSubTest(self, test, subtest, err):
        if err is not None:
            kind = "FAIL" if issubclass(err[0], test.failureException) else "ERROR"
            self._note(test, kind, err)


def run(core=False, strict_auth=False, verbose=False, bare=False):
    """Run the suite; return (passed, total, [(test id, outcome, reason)], seconds, notes)."""
    mod = load(core)
    notes = []
    if not core and not strict_auth:
        mod.SMTP.allow_plaintext_auth = True
        notes.append("plaintext AUTH opted in: smtplib.SMTP.allow_plaintext_auth = True")
    if not bare:
        from test import mock_socket

        mod.__class__ = _Forward
        mock_socket.MockSocket.recv_into = _recv_into
        notes.append("smtplib.socket forwarded to smtp_client.socket; mock_socket.MockSocket "
                     "given recv_into")
    try:
        import test.test_smtplib as suite
    except ImportError as e:  # a CPython without its test package (Debian's python3-minimal)
        print(f"cpython_smtplib_suite: cannot import test.test_smtplib: {e}", file=sys.stderr)
        raise SystemExit(2)
    if sys.modules["smtplib"] is not mod or suite.smtplib is not mod:
        print("cpython_smtplib_suite: the suite did not import our smtplib", file=sys.stderr)
        raise SystemExit(2)
    tests = unittest.defaultTestLoader.loadTestsFromModule(suite)
    result = _Result()
    t0 = time.monotonic()
    # The suite's servers print to stdout/stderr on their own: keep the report readable.
    quiet = io.StringIO() if not verbose else None
    old = sys.stdout, sys.stderr
    if quiet is not None:
        sys.stdout = sys.stderr = quiet
    try:
        tests.run(result)
    finally:
        sys.stdout, sys.stderr = old
    seconds = time.monotonic() - t0
    rows = sorted((tid, o, r) for tid, (o, r) in result.outcomes.items())
    passed = sum(1 for _, o, _ in rows if o == "pass")
    return passed, len(rows), rows, seconds, notes


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--threshold", type=int, default=THRESHOLD,
                    help="exit 1 when fewer tests pass (default %(default)s)")
    ap.add_argument("--core", action="store_true",
                    help="measure smtp_client itself as smtplib (no lib/smtplib.py)")
    ap.add_argument("--strict-auth", action="store_true",
                    help="do not opt in to plaintext AUTH")
    ap.add_argument("--bare", action="store_true",
                    help="no socket adaptation: the mock-socket tests use real sockets")
    ap.add_argument("-v", "--verbose", action="store_true",
                    help="let the suite's own output through")
    a = ap.parse_args(argv)
    os.chdir(ROOT)
    passed, total, rows, seconds, notes = run(a.core, a.strict_auth, a.verbose, a.bare)
    name = "smtp_client (the core alone)" if a.core else "lib/smtplib.py"
    print(f"CPython {sys.version.split()[0]} test_smtplib against {name}")
    for n in notes:
        print("note: " + n)
    print(f"{passed} of {total} passed ({seconds:.1f} s)")
    for tid, outcome, reason in rows:
        if outcome != "pass":
            print(f"  {outcome} {tid.replace('test.test_smtplib.', '')}: {reason}")
    return 0 if passed >= a.threshold else 1


if __name__ == "__main__":
    sys.exit(main())
