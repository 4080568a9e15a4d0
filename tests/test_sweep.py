# SPDX-License-Identifier: MIT
"""Disconnect sweep (issue 7.1): real sessions, recorded, replayed with the server closing
the connection after every byte offset of its output, and after every byte offset of the
client's input (tests/replay.py, tests/sessions.py).

Every run must end
  - with success or a classified exception: a cut is SMTPServerDisconnected (unless the
    error is the refusal the uncut session gets too), and a mail counts as sent exactly
    when the server had sent its 250 to the end of data before the cut (never a false
    success, never an accepted mail reported failed);
  - with the socket closed by the client, without waiting for bytes that never come;
  - with a client object that sends the next mails: the same object runs the whole session
    again against an uncut replay and every mail goes through.
The client's writes must match the recording up to the cut (the cut is the only change).

CPython runs in this process over fake sockets: every offset, about 17 000 runs in 10
seconds. The unix port replays the same recordings over real TCP (and real TLS) from a
server thread, every SWEEP_STEP-th offset (default 41; every offset with `make sweep`),
where a close can race a write, so a handshake cut short may also be SMTPTLSError.
"""

import os
import time

import pytest

from replay import FakeNet, expected_sent, sc
from sessions import SCENARIOS, recording

NAMES = list(SCENARIOS)
COUNTS = {}  # what ran, for the summary line: {kind: runs}


def _cut_error(ex, base):
    """A cut is a disconnect: SMTPServerDisconnected, unless the error is the one the uncut
    session gets too (a refusal the server sent before the cut)."""
    if isinstance(ex, sc.SMTPServerDisconnected) and not isinstance(ex, sc.SMTPTimeoutError):
        return True
    return base is not None and type(ex) is type(base) and repr(ex) == repr(base)


def _judge(rec, out, cut, base):
    """The checks every run must pass; returns a short description of a failure or None.
    `base` is the Outcome of the uncut session."""
    sock = out.sock
    if out.bad:
        return f"non-library exception {out.bad!r}"
    if out.exc is not None and not _cut_error(out.exc, None):
        return f"misclassified: {out.exc!r}"
    if sock.stalled:
        return "the client waited for bytes the server never sends (would hang to the deadline)"
    if sock.diverged is not None:
        return f"client output differs from the recording: {sock.diverged!r}"
    if not sock.closed:
        return "socket left open"
    obj = out.handle.obj
    smtp = obj.session if isinstance(obj, sc.Client) else obj
    if smtp is not None and smtp.sock is not None:
        return "the SMTP object still holds a socket"
    for b, row in enumerate(out.batches):
        for i, (sent, err) in enumerate(row):
            base_err = base.batches[b][i][1] if i < len(base.batches[b]) else None
            if err is not None and not _cut_error(err, base_err):
                return f"mail {b}.{i}: misclassified {err!r}"
            want = expected_sent(rec, b, i, **cut)
            if sent != want:
                return (f"mail {b}.{i}: reported {'sent' if sent else 'failed'} ({err!r}), "
                        f"but the server {'had' if want else 'had not'} accepted it")
    # Mails the scenario never got to (an early failure) must not have been accepted.
    seen = {(b, i) for b, row in enumerate(out.batches) for i in range(len(row))}
    for b, i, _ in rec.accepts:
        if (b, i) not in seen and expected_sent(rec, b, i, **cut):
            return f"mail {b}.{i} was accepted by the server but never reported"
    return None


def _again(net, scenario, rec, out):
    """The same client object, a whole session, no cut: everything must go through."""
    again = net.replay(scenario, rec, handle=out.handle)
    if again.exc is not None or again.bad or again.sock.stalled or again.sock.diverged:
        return f"next session failed: {again!r} diverged={again.sock.diverged!r}"
    flags = again.sent_flags()
    want = [expected_sent(rec, b, i) for b, row in enumerate(again.batches)
            for i in range(len(row))]
    if flags != want or not again.sock.closed:
        return f"next session: sent {flags}, expected {want}"
    return None


def _sweep(net, scenario, rec, kind, cuts):
    base = net.replay(scenario, rec)
    assert base.exc is None and not base.bad, base
    failures = []
    t0 = time.monotonic()
    worst = 0.0
    for cut in cuts:
        t = time.monotonic()
        out = net.replay(scenario, rec, **cut)
        why = _judge(rec, out, {k: v for k, v in cut.items() if k.startswith("cut_")}, base)
        why = why or _again(net, scenario, rec, out)
        worst = max(worst, time.monotonic() - t)
        if why:
            failures.append((cut, why))
    COUNTS[kind] = COUNTS.get(kind, 0) + len(cuts)
    return failures, time.monotonic() - t0, worst


@pytest.mark.parametrize("name", NAMES)
def test_server_closes_after_every_byte_of_its_output(request, monkeypatch, name):
    rec = recording(request, name)
    net = FakeNet(monkeypatch)
    n = len(rec.server)
    cuts = [{"cut_server": k, "lenient": lenient}
            for k in range(n + 1) for lenient in (False, True)]
    failures, secs, worst = _sweep(net, SCENARIOS[name], rec, "server output", cuts)
    assert not failures, f"{len(failures)} of {len(cuts)} runs failed, first: {failures[:3]}"
    assert worst < 2, f"a run took {worst:.2f} s"


@pytest.mark.parametrize("name", NAMES)
def test_server_closes_after_every_byte_of_the_clients_input(request, monkeypatch, name):
    rec = recording(request, name)
    net = FakeNet(monkeypatch)
    cuts = [{"cut_client": k} for k in range(len(rec.client) + 1)]
    failures, secs, worst = _sweep(net, SCENARIOS[name], rec, "client input", cuts)
    assert not failures, f"{len(failures)} of {len(cuts)} runs failed, first: {failures[:3]}"
    assert worst < 2, f"a run took {worst:.2f} s"


@pytest.mark.parametrize("name", ["plain", "postfix_pipelined_data"])
def test_one_byte_reads(request, monkeypatch, name):
    # The same server-output sweep with every reply handed over one byte per recv: a reply
    # split anywhere, then the cut.
    rec = recording(request, name)
    net = FakeNet(monkeypatch)
    cuts = [{"cut_server": k, "piece": 1} for k in range(len(rec.server) + 1)]
    failures, _, _ = _sweep(net, SCENARIOS[name], rec, "server output, 1-byte reads", cuts)
    assert not failures, f"{len(failures)} of {len(cuts)} runs failed, first: {failures[:3]}"


# ----------------------------------------------------------------------------- unix port

MP_CLIENT = """
import sys, json, time
import smtp_client as sc
from scenarios import SCENARIOS, Outcome, smtp_of

name, port, runs, ca = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
make, run, _ = SCENARIOS[name]
ctx = sc.create_context(cadata=open(ca, "rb").read())

def cls(e):
    return None if e is None else type(e).__name__

for k in range(runs):
    h = make("127.0.0.1", port, ctx)
    for phase in ("cut", "again"):
        out = Outcome()
        t0 = time.ticks_ms()
        try:
            run(h, out)
        except Exception as ex:
            out.exc = ex
            if not isinstance(ex, sc.SMTPException):
                out.bad.append(ex)
        smtp = smtp_of(h.obj)
        print(json.dumps({
            "k": k, "phase": phase,
            "batches": [[[s, cls(e)] for s, e in row] for row in out.batches],
            "exc": cls(out.exc), "bad": [repr(b) for b in out.bad],
            "closed": smtp is None or smtp.sock is None,
            "ms": time.ticks_diff(time.ticks_ms(), t0)}))
"""


def _step():
    return int(os.environ.get("SWEEP_STEP", "41"))


@pytest.mark.timeout(3600)  # `make sweep`: every offset takes minutes per scenario
@pytest.mark.parametrize("name", NAMES)
def test_unix_port_replay_with_cuts(request, certs, name):
    # Every SWEEP_STEP-th offset of both sweeps (all of them with `make sweep`), over TCP
    # with real TLS; each cut run is followed by an uncut one on the same client object.
    import json
    import ssl

    from harness import run_ok
    from replay import TcpReplayServer

    rec = recording(request, name)
    step = _step()
    cuts = ([{"cut_server": k} for k in range(0, len(rec.server) + 1, step)]
            + [{"cut_client": k} for k in range(0, len(rec.client) + 1, step)])
    server_ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server_ctx.load_cert_chain(certs["server.pem"], certs["server.key"])
    plan = [c for cut in cuts for c in (cut, None)]
    with TcpReplayServer(rec, plan, server_ctx) as srv:
        out = run_ok(MP_CLIENT, runtime="micropython", timeout=3000,
                     args=[name, srv.port, len(cuts), certs["ca.der"]])
    rows = [json.loads(line) for line in out.splitlines() if line.startswith("{")]
    assert len(rows) == 2 * len(cuts), out[-2000:]
    assert not srv.errors, srv.errors
    problems = []
    for i, cut in enumerate(cuts):
        first, again = rows[2 * i], rows[2 * i + 1]
        log = srv.log[2 * i]
        why = _judge_json(rec, first, cut) or _judge_json(rec, again, {})
        if not why and log and log[2]:
            why = f"client output differs from the recording: {log[2]!r}"
        if not why and srv.log[2 * i + 1] and srv.log[2 * i + 1][2]:
            why = f"next session differs from the recording: {srv.log[2 * i + 1][2]!r}"
        if why:
            problems.append((cut, why))
    COUNTS["unix port"] = COUNTS.get("unix port", 0) + len(cuts)
    assert not problems, f"{len(problems)} of {len(cuts)} runs failed, first: {problems[:3]}"


_DISCONNECTS = ("SMTPServerDisconnected", "SMTPTLSError")  # TLS: closed mid-handshake


def _judge_json(rec, row, cut):
    if row["bad"]:
        return f"non-library exception {row['bad']}"
    if row["exc"] is not None and row["exc"] not in _DISCONNECTS:
        return f"misclassified {row['exc']}"
    if not row["closed"]:
        return "socket left open"
    if row["ms"] > 4000:
        return f"took {row['ms']} ms (a wait ran into the deadline)"
    for b, mails in enumerate(row["batches"]):
        for i, (sent, exc) in enumerate(mails):
            want = expected_sent(rec, b, i, **cut)
            if sent and not want:
                return f"mail {b}.{i} reported sent, but the server had not accepted it"
            if want and not sent:
                return f"mail {b}.{i} reported failed ({exc}), but the server had accepted it"
            if exc not in (None, "SMTPRecipientsRefused") + _DISCONNECTS:
                return f"mail {b}.{i}: misclassified {exc}"
    return None


def test_sweep_counts():
    # Printed for the README's "Hardening counts" (pytest -s, or make sweep).
    if COUNTS:
        print("\nSWEEP " + ", ".join(f"{k}: {v} runs" for k, v in COUNTS.items()))
    assert os.environ.get("SWEEP_STEP", "1")  # nothing to check: a report
