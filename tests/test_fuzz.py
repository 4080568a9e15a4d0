# SPDX-License-Identifier: MIT
"""Fuzzed servers (issue 7.2): hypothesis feeds the library (in this process, CPython)
arbitrary and mutated reply streams through a fake server (tests/mp/fuzzsock.py); the
streams start from real recorded sessions (tests/sessions.py) and are mutated by
tests/fuzzcases.py: split points, code digits, separators, CR/LF placement, long lines,
unsolicited lines, 421 anywhere, truncation, garbage, floods.

Properties, for every case:
  - the only exceptions that escape are the library's own (SMTPException subclasses; the
    arguments are valid, so not even ValueError), also inside SendResult.error;
  - the client never forgets an open socket, and a Client always closes it;
  - the client never spins (bounded reads and writes) and never waits without a deadline;
  - the same client object then sends the unmutated session exactly as a fresh one does.

`make test` runs FUZZ_EXAMPLES (default 2500) derandomized cases, `make fuzz` 100 000 with
a random seed. A sample of the mutated corpus (FUZZ_SAMPLE, default 150) also runs on the
unix port, over the same fake, and must give the same results as CPython, case by case.
"""

import json
import os
import time

import pytest
from hypothesis import HealthCheck, given, settings

from replay import sc, smtp_cpython  # first: it puts lib/ and tests/mp/ on sys.path
from fuzzcases import sample, strategy
from harness import run_ok
from sessions import SCENARIOS, recording

import fuzzsock  # noqa: E402  (tests/mp)

EXAMPLES = int(os.environ.get("FUZZ_EXAMPLES", "2500"))
RANDOM = os.environ.get("FUZZ_RANDOM") == "1"  # make fuzz: a new seed each run
SAMPLE = int(os.environ.get("FUZZ_SAMPLE", "150"))
CLIENTS = {name for name, s in SCENARIOS.items() if s.make.__name__.endswith("client")}


@pytest.fixture
def bases(request, monkeypatch):
    """The recorded sessions as turns, with smtp_client pointed at the fuzz server."""
    out = {}
    for name in SCENARIOS:
        try:
            out[name] = recording(request, name).turns()
        except pytest.skip.Exception:
            if os.environ.get("CI") == "true":
                raise
    if not out:
        pytest.skip("no recordings")
    monkeypatch.setattr(sc, "socket", fuzzsock.NET)
    monkeypatch.setattr(smtp_cpython, "Io", fuzzsock._transport)
    return out


def _baselines(bases):
    out = {}
    for name, turns in bases.items():
        first, again = fuzzsock.run_case(name, turns, 0, "eof", -1, turns)
        assert first == again, (name, first, again)
        assert first["exc"] is None and not first["bad"], (name, first)
        out[name] = first
    return out


def judge(case, first, again, baseline):
    """The properties; returns a description of the first one broken, or None."""
    name = case[0]
    if first["bad"] or again["bad"]:
        return f"exception not from the library: {first['bad'] or again['bad']}"
    for row in first["mails"]:
        for _, exc in row:
            if exc is not None and not issubclass(getattr(sc, exc, object), sc.SMTPException):
                return f"SendResult.error {exc} is not an SMTPException"
    if first["sent"] > first["ends"]:
        return f"{first['sent']} mails reported sent, only {first['ends']} ends of data written"
    if first["leak"] or again["leak"]:
        return "the client dropped a socket without closing it"
    if name in CLIENTS and first["open"]:
        return "Client left its connection open"
    if again != baseline[name]:
        return f"the next session differs: {again} != {baseline[name]}"
    return None


@pytest.mark.timeout(3600)  # make fuzz: 100 000 cases take minutes
def test_fuzzed_reply_streams(bases):
    baseline = _baselines(bases)
    count = [0]

    @settings(max_examples=EXAMPLES, derandomize=not RANDOM, deadline=None, database=None,
              suppress_health_check=list(HealthCheck))
    @given(case=strategy(bases))
    def check(case):
        count[0] += 1
        first, again = fuzzsock.run_case(*case, bases[case[0]])
        why = judge(case, first, again, baseline)
        assert why is None, f"{why}\ncase: {case!r}\nfirst: {first}"

    t0 = time.monotonic()
    check()
    print(f"\nFUZZ {count[0]} cases in {time.monotonic() - t0:.1f} s "
          f"({'random seed' if RANDOM else 'derandomized'})")
    assert count[0] >= min(EXAMPLES, 1000)


def test_corpus_sample_on_the_unix_port(bases, tmp_path):
    # The same cases, the same fake server, the same library under MicroPython: every case
    # must give exactly CPython's result (and so pass the same properties).
    baseline = _baselines(bases)
    cases = sample(bases, SAMPLE)
    want = [fuzzsock.run_case(*case, bases[case[0]]) for case in cases]
    for case, (first, again) in zip(cases, want):
        why = judge(case, first, again, baseline)
        assert why is None, f"{why}\ncase: {case!r}\nfirst: {first}"
    # One JSON document per line (the port's heap holds one case at a time): the base
    # sessions first, then the cases. Bytes travel as latin-1 text.
    path = tmp_path / "corpus.jsonl"
    with open(path, "w") as f:
        f.write(json.dumps({n: [t.decode("latin-1") for t in b] for n, b in bases.items()}))
        f.write("\n")
        for n, turns, p, e, w in cases:
            f.write(json.dumps([n, [t.decode("latin-1") for t in turns], p, e, w]) + "\n")
    out = run_ok("""
        import sys, json
        import smtp_client as sc
        import fuzzsock
        fuzzsock.install(sc)

        def raw(texts):
            # str.encode("latin-1") is not on the port: each char is one byte here
            return [bytes(ord(ch) for ch in t) for t in texts]

        with open(sys.argv[1]) as f:
            bases = json.loads(f.readline())
            for name in bases:
                bases[name] = raw(bases[name])
            while True:
                line = f.readline()
                if not line:
                    break
                n, turns, p, e, w = json.loads(line)
                print(json.dumps(fuzzsock.run_case(n, raw(turns), p, e, w, bases[n])))
    """, runtime="micropython", args=[path], timeout=600)
    got = [json.loads(line) for line in out.splitlines() if line.startswith("[")]
    assert len(got) == len(cases), out[-2000:]
    diff = [(case, w, g) for case, w, g in zip(cases, want, got) if list(w) != g]
    assert not diff, f"{len(diff)} of {len(cases)} differ; first: {diff[0]!r}"
