# SPDX-License-Identifier: MIT
"""Soak (issue 7.4): many mails through the private Postfix over STARTTLS + AUTH, from the
unix port and from CPython, and every delivered byte checked against what was sent.

SOAK_MAILS mails (default 50 in `make test`; `make soak`: 1000) of mixed sizes (0 B to
200 KB of body, some 8-bit, the larger ones streamed from a generator), 1 to 5 recipients
each (device@, other@, postmaster@ and unknown users, which Postfix refuses at RCPT; a mail
with only unknown users fails as a whole), in batches of 1 to 8 mails per connection:
Client.send_many, SMTP.send_many (connect, starttls, login, quit=True) and Client.send
per mail. Half the batches run on the unix port, half on CPython.

Checks: every mail's result is what its recipients call for (sent, exactly the unknown
users refused); every valid recipient's mailbox holds the mail exactly once, byte for byte
(Postfix's prepended headers cut at the X-Test-Id marker, CRLF as LF: tools/postfix.py);
nothing else is delivered. Zero lost, zero duplicated, zero corrupted.
"""

import json
import os
import random
import sys
import time

import pytest

from harness import MP_DIR, run_ok
from postfix import PASSWORD, USER, delivered_form, strip_prepended

if str(MP_DIR) not in sys.path:  # soakgen (tests/mp) builds the expected bytes here too
    sys.path.insert(0, str(MP_DIR))
from soakgen import body  # noqa: E402

N = int(os.environ.get("SOAK_MAILS", "50"))
SEED = int(os.environ.get("SOAK_SEED", "2025"))
VALID = [USER, "other@example.test", "postmaster@example.test"]
MAX_UNKNOWN = 6  # per connection: Postfix slows down after 10 errors (smtpd_soft_error_limit)

SNIPPET = """
import sys, json
sys.path.append(sys.argv[6])  # tests/mp (the unix port has it already, CPython not)
import smtp_client as sc
import soakgen

plan = json.load(open(sys.argv[1]))
PORT = int(sys.argv[2])
ctx = sc.create_context(cadata=open(sys.argv[3], "rb").read())
USER, PW = sys.argv[4], sys.argv[5]
FROM = "device@example.test"


def msg(m):
    i, size, rcpts, eight, stream = m
    return soakgen.chunks(i, size, eight) if stream else soakgen.body(i, size, eight)


def cls(e):
    return None if e is None else type(e).__name__


def client():
    return sc.Client("127.0.0.1", PORT, tls="starttls", context=ctx, username=USER,
                     password=PW, from_addr=FROM, local_hostname="dev.example.test")


for mode, mails in plan:
    try:
        if mode == "client":
            rs = client().send_many([(m[2], msg(m)) for m in mails])
        elif mode == "session":
            s = sc.SMTP(local_hostname="dev.example.test")
            s.connect("127.0.0.1", PORT)
            s.starttls(context=ctx)
            s.login(USER, PW)
            rs = s.send_many([(FROM, m[2], msg(m)) for m in mails], quit=True)
        else:
            c = client()
            rs = []
            for m in mails:
                try:
                    rs.append(c.send(m[2], msg(m)))
                except sc.SMTPException as e:
                    r = sc.SendResult(FROM, m[2], b"")  # the record of a mail that failed
                    r.refused = getattr(e, "recipients", {})
                    r.error = e
                    rs.append(r)
        for m, r in zip(mails, rs):
            print(json.dumps({"id": m[0], "sent": r.sent, "refused": sorted(r.refused),
                              "error": cls(r.error)}))
    except Exception as e:
        for m in mails:
            print(json.dumps({"id": m[0], "sent": False, "refused": [], "error": cls(e),
                              "batch": repr(e)}))
"""


def make_plan(n, seed):
    """[(runtime, mode, [(id, size, rcpts, eight, stream), ...]), ...]"""
    rnd = random.Random(seed)
    mails = []
    for i in range(n):
        r = rnd.random()
        if r < 0.4:
            size = rnd.randint(0, 200)
        elif r < 0.7:
            size = rnd.randint(200, 5000)
        elif r < 0.9:
            size = rnd.randint(5000, 50000)
        else:
            size = rnd.randint(50000, 200000)
        valid = rnd.sample(VALID, len(VALID))
        rcpts = []
        for j in range(rnd.randint(1, 5)):
            if rnd.random() < 0.2 or not valid:
                rcpts.append(f"ghost{i}-{j}@example.test")
            else:
                rcpts.append(valid.pop())
        stream = size > 30000 or rnd.random() < 0.2
        eight = not stream and rnd.random() < 0.25
        mails.append((i, size, rcpts, eight, stream))
    batches = []
    k = 0
    while k < len(mails):
        want = rnd.randint(1, 8)
        batch, unknown = [], 0
        while k < len(mails) and len(batch) < want:
            u = sum(1 for a in mails[k][2] if a.startswith("ghost"))
            if batch and unknown + u > MAX_UNKNOWN:
                break
            batch.append(mails[k])
            unknown += u
            k += 1
        mode = rnd.choice(["client", "client", "session", "session", "single"])
        runtime = "micropython" if len(batches) % 2 == 0 else "cpython"
        batches.append((runtime, mode, batch))
    return mails, batches


def _count(pf, mailbox):
    try:
        return len(os.listdir(pf._newdir(mailbox)))
    except FileNotFoundError:
        return 0


def _queue_empty(pf):
    q = pf.base / "queue"
    for d in ("maildrop", "incoming", "active", "deferred", "hold"):
        if (q / d).exists() and any(p.is_file() for p in (q / d).rglob("*")):
            return False
    return True


@pytest.mark.soak
@pytest.mark.timeout(3600)
def test_soak(postfix_tls, certs, tmp_path):
    pf = postfix_tls
    pf.clear()
    mails, batches = make_plan(N, SEED)
    t0 = time.monotonic()
    results = {}
    for runtime in ("micropython", "cpython"):
        mine = [[mode, [list(m) for m in batch]] for rt, mode, batch in batches if rt == runtime]
        path = tmp_path / f"plan-{runtime}.json"
        path.write_text(json.dumps(mine))
        out = run_ok(SNIPPET, runtime=runtime, timeout=3000,
                     args=[path, pf.port, certs["ca.der"], USER, PASSWORD, MP_DIR])
        for line in out.splitlines():
            if line.startswith("{"):
                r = json.loads(line)
                assert r["id"] not in results, r
                results[r["id"]] = r
    t_send = time.monotonic() - t0
    assert sorted(results) == list(range(N)), "a mail has no result"

    # What each mail's result must be.
    expect = {box: set() for box in VALID}
    for i, _size, rcpts, _eight, _stream in mails:
        r = results[i]
        unknown = sorted(a for a in rcpts if a.startswith("ghost"))
        if len(unknown) == len(rcpts):
            assert (r["sent"], r["error"]) == (False, "SMTPRecipientsRefused"), r
            continue
        assert r["sent"] and r["error"] is None, r
        assert r["refused"] == unknown, r
        for a in rcpts:
            if a in expect:
                expect[a].add(i)

    # Wait for Postfix to deliver everything (counting files, not reading them).
    deadline = time.monotonic() + 120 + N * 0.5
    while time.monotonic() < deadline:
        if all(_count(pf, b) >= len(ids) for b, ids in expect.items()) and _queue_empty(pf):
            break
        time.sleep(0.1)
    lost = dup = corrupt = 0
    problems = []
    sizes = {m[0]: m for m in mails}
    for box, ids in expect.items():
        seen = {}
        for raw in pf.delivered(box):
            clean = strip_prepended(raw, marker=b"X-Test-Id: ")
            i = int(clean.split(b"\n", 1)[0][11:])
            if i in seen:
                dup += 1
                problems.append(f"{box}: mail {i} twice")
                continue
            seen[i] = clean
            m = sizes[i]
            if clean != delivered_form(body(m[0], m[1], m[3])):
                corrupt += 1
                problems.append(f"{box}: mail {i} corrupted")
        for i in ids - set(seen):
            lost += 1
            problems.append(f"{box}: mail {i} lost")
        for i in set(seen) - ids:
            problems.append(f"{box}: mail {i} delivered but not addressed here")
    delivered = sum(len(ids) for ids in expect.values())
    print(f"\nSOAK {N} mails ({sum(m[1] for m in mails)} body bytes), {len(batches)} "
          f"connections, {delivered} deliveries checked: {lost} lost, {dup} duplicated, "
          f"{corrupt} corrupted; sending took {t_send:.1f} s, "
          f"all {time.monotonic() - t0:.1f} s")
    assert not problems, problems[:10]
    pf.clear()

