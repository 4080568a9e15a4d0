# SPDX-License-Identifier: MIT
"""Fixtures for the smtp_client tests. pyproject.toml puts tests/ and tools/ on sys.path.

Helpers (import them: `from harness import run, run_ok, free_port, MICROPYTHON, ROOT, LIB`):
    run(source, *, runtime="micropython", heapsize=None, timeout=60, args=()) -> CompletedProcess
    run_ok(source, **same) -> stdout (asserts exit 0)
    free_port(host="127.0.0.1") -> int
Fixtures:
    runtime      "micropython" and "cpython" (the test runs once per runtime)
    certs        session-wide test certificates: {"ca.pem": Path, "ca.der": ..., "dir": ...}
    mailserver   factory: mailserver(tls=..., auth=..., ...) -> started MailServer, stopped at
                 teardown (certdir defaults to the session's certs)
    postfix      session-wide private Postfix (tools/postfix.py) on 127.0.0.1:postfix.port,
                 no TLS, no AUTH; mailboxes device@ and other@example.test. Shared by every
                 test: call postfix.clear() first, then postfix.wait_delivered(n).
    postfix_tls  the same with STARTTLS (the session's certs) and AUTH after STARTTLS:
                 `from postfix import USER, PASSWORD` (PLAIN, LOGIN, CRAM-MD5).
    Without Postfix (or not root) these skip, except on CI (CI=true), where they fail.
    wasm32       session-wide: wasm32(source) -> CompletedProcess, the snippet run on the
                 WebAssembly port (a 32-bit MicroPython; npm installs it into build/wasm when
                 missing) with the core's .mpy (as make mpy builds it) importable
"""

import os
import subprocess
import textwrap

# The standard library's smtplib, imported before a test module puts lib/ (where
# lib/smtplib.py, the MicroPython one, lives) at the front of sys.path: test_infra and
# test_postfix_infra check the servers with CPython's own.
import smtplib  # noqa: F401

import pytest

import measure
from certs import make_certs
from harness import LIB, MICROPYTHON, ROOT, RUNTIMES, free_port, run, run_ok  # noqa: F401
from mailserver import MailServer
from postfix import PASSWORD as POSTFIX_PASSWORD
from postfix import USER as POSTFIX_USER
from postfix import Postfix
from postfix import available as postfix_available


@pytest.fixture(params=RUNTIMES)
def runtime(request):
    """The runtime for run()/run_ok(): each test using it runs under both."""
    return request.param


@pytest.fixture(scope="session")
def wasm32(tmp_path_factory):
    """Run a snippet on the 32-bit WebAssembly port with the core's .mpy files."""
    lib = tmp_path_factory.mktemp("wasm-lib")
    measure.build_mpy(lib)
    mjs = measure.wasm_port()

    def run_wasm(source, timeout=300):
        snippet = tmp_path_factory.mktemp("wasm-snippet") / "snippet.py"
        snippet.write_text(textwrap.dedent(source))
        return subprocess.run(["node", str(measure.WASM_HELPER), str(mjs), str(lib),
                               str(snippet)], capture_output=True, text=True, timeout=timeout)

    return run_wasm


@pytest.fixture(scope="session")
def certs(tmp_path_factory):
    """Test CA and server certificates (see tools/certs.py), generated once per session."""
    return make_certs(tmp_path_factory.mktemp("certs"))


@pytest.fixture
def mailserver(certs):
    """Factory for real SMTP servers: `srv = mailserver(tls="starttls", auth={"u": "p"})`.

    Takes MailServer's keyword arguments; returns it started (srv.host, srv.port,
    srv.messages, srv.auth_log, srv.certs). Every server is stopped at teardown.
    """
    servers = []

    def start(**kw):
        kw.setdefault("certdir", certs["dir"])
        srv = MailServer(**kw).start()
        servers.append(srv)
        return srv

    yield start
    for srv in servers:
        srv.stop()


def _start_postfix(**kw):
    why = postfix_available()
    if why:
        if os.environ.get("CI") == "true":
            pytest.fail(f"CI must run the Postfix tests (`make test` installs it): {why}")
        pytest.skip(f"no private Postfix here: {why}")
    return Postfix(**kw).start()


@pytest.fixture(scope="session")
def postfix():
    """A private Postfix (tools/postfix.py), plain SMTP, started once per session."""
    pf = _start_postfix()
    yield pf
    pf.stop()


@pytest.fixture(scope="session")
def postfix_tls(certs):
    """A private Postfix with STARTTLS (trust certs["ca.pem"]/["ca.der"]) and AUTH after it."""
    pf = _start_postfix(tls=True, certdir=certs["dir"], auth={POSTFIX_USER: POSTFIX_PASSWORD})
    yield pf
    pf.stop()
