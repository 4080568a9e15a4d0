# SPDX-License-Identifier: MIT
"""lib/smtp_outbox.py under crafted input (issue 12, item 7): what put accepts flush sends,
however many recipients; files in the folder that are not the outbox's, or are but are not
in its format (no line end, a FIFO), are skipped or moved to dead/ without blocking the
rest; ids stay 8 digits after 99999999; discard() and retry() take only ids. Same drivers
as tests/test_outbox.py: snippets on the unix port and on CPython, a clock moved by hand."""

import os

from harness import run_ok
from test_outbox import _out, _snip

# A long line without a line end: read whole, it needs more than the heap given below.
NO_EOL = b"x" * 300_000
HEAP = "256k"


def test_a_mail_to_250_recipients_is_sent_not_buried(runtime, mailserver, tmp_path):
    # 198 recipients and more made a header of more than 200 lines, which flush (and
    # recovery) took for a corrupt file: the mail went to dead/ unsent.
    srv = mailserver(tls="none")
    out = run_ok(_snip("""
    d, port = sys.argv[1], int(sys.argv[2])
    ob = smtp_outbox.Outbox(d, clock=clock, from_addr="dev@example.org")
    to = ["r%03d@example.com" % k for k in range(250)]
    ids = [ob.put(to, b"Subject: many\\r\\n\\r\\nx"),
           ob.put(to[:198], b"Subject: 198\\r\\n\\r\\nx")]
    mk = lambda: smtp_client.Client("127.0.0.1", port, tls="none", timeout=10)
    r1 = ob.flush(mk(), limit=1)                 # the same outbox that put it
    ob = smtp_outbox.Outbox(d, clock=clock)      # and one that found it on disk
    pend = ob.pending()
    r2 = ob.flush(mk())
    print((ids, (r1.sent, r1.dead), pend, (r2.sent, r2.dead),
           [(x.id, x.error) for x in ob.dead()]))
    """), runtime=runtime, args=[tmp_path / "ob", srv.port])
    ids, r1, pend, r2, dead = _out(out)
    assert (r1, pend, r2, dead) == ((1, 0), [ids[1]], (1, 0), [])
    assert [m.rcpt_tos for m in srv.messages] == [
        ["r%03d@example.com" % k for k in range(250)],
        ["r%03d@example.com" % k for k in range(198)]]


def test_put_refuses_an_envelope_flush_could_not_read(runtime, tmp_path):
    # The bound is put's, stated up front: ValueError, nothing stored, the id not burnt
    # for the next mail's file.
    out = run_ok(_snip("""
    d = sys.argv[1]
    ob = smtp_outbox.Outbox(d, clock=clock, from_addr="dev@example.org")
    to = ["recipient%05d@example.com" % k for k in range(1000)]  # 30 KB of "to" lines
    try:
        ob.put(to, b"x")
        res = "accepted"
    except ValueError as e:
        res = str(e)
    print((res, len(ob), sorted(os.listdir(d))))
    """), runtime=runtime, args=[tmp_path / "ob"])
    res, n, names = _out(out)
    assert "too many recipients" in res
    assert (n, names) == (0, ["dead"])


# Put one good mail; then the test adds its files; then open, flush, list, put.
FIRST = """
ob = smtp_outbox.Outbox(sys.argv[1], clock=clock, from_addr="dev@example.org")
ob.put("a@example.com", b"Subject: ok\\r\\n\\r\\nx")
"""
THEN = """
d, port = sys.argv[1], int(sys.argv[2])
ob = smtp_outbox.Outbox(d, clock=clock)
pend = ob.pending()
r = ob.flush(smtp_client.Client("127.0.0.1", port, tls="none", timeout=5))
dead = [(x.id, x.error) for x in ob.dead()]
ob.discard("00000006")
new_id = ob.put("b@example.com", b"y", from_addr="dev@example.org")
print((pend, (r.sent, r.dead, r.remaining), dead, sorted(os.listdir(d)),
       sorted(os.listdir(d + "/dead")), new_id))
"""


def test_files_without_line_ends_are_read_bounded(runtime, mailserver, tmp_path):
    # Read whole, each of these needed more than the heap (MemoryError in Outbox()).
    srv = mailserver(tls="none")
    d = tmp_path / "ob"
    run_ok(_snip(FIRST), runtime=runtime, args=[d])
    (d / "00000001.st").write_bytes(NO_EOL)  # the good mail's state
    (d / "00000002.mail").write_bytes(NO_EOL)
    (d / "00000003.mail").write_bytes(b"outbox 1 0000000000\nfrom \nto " + NO_EOL)
    (d / "dead" / "00000006.mail").write_bytes(NO_EOL)
    (d / "dead" / "00000006.st").write_bytes(NO_EOL)
    (d / "notes.txt").write_bytes(NO_EOL)  # not ours by name: left alone
    out = run_ok(_snip(THEN), runtime=runtime, heapsize=HEAP, args=[d, srv.port])
    pend, r, dead, names, in_dead, new_id = _out(out)
    assert pend == ["00000001"]  # its unreadable state counts as none: sent from scratch
    assert r == (1, 0, 0)
    assert dead == [("00000002", "corrupt mail file: not an outbox mail"),
                    ("00000003", "corrupt mail file: header too long"),
                    ("00000006", "")]
    assert names == ["00000007.mail", "dead", "notes.txt"]
    assert in_dead == ["00000002.mail", "00000002.st", "00000003.mail", "00000003.st"]
    assert new_id == "00000007"  # after the highest id seen, in dead/ too
    assert [m.rcpt_tos for m in srv.messages] == [["a@example.com"]]


def test_fifos_are_never_opened(runtime, mailserver, tmp_path):
    # Opening a FIFO for reading waits for a writer: Outbox() hung (a bounded run fails).
    srv = mailserver(tls="none")
    d = tmp_path / "ob"
    run_ok(_snip(FIRST), runtime=runtime, args=[d])
    os.mkfifo(d / "00000001.st")  # the good mail's state
    os.mkfifo(d / "00000003.mail")
    os.mkfifo(d / "00000004.st")
    os.mkfifo(d / "00000005.stt")
    os.mkfifo(d / "dead" / "00000006.mail")
    os.mkfifo(d / "dead" / "00000006.st")
    os.mkfifo(d / "pipe")  # not ours by name: left alone
    out = run_ok(_snip(THEN), runtime=runtime, timeout=20, args=[d, srv.port])
    pend, r, dead, names, in_dead, new_id = _out(out)
    assert pend == ["00000001"]
    assert r == (1, 0, 0)
    assert dead == [("00000003", "corrupt mail file: not a regular file"), ("00000006", "")]
    assert names == ["00000007.mail", "dead", "pipe"]
    assert in_dead == ["00000003.mail", "00000003.st"]
    assert new_id == "00000007"
    assert [m.rcpt_tos for m in srv.messages] == [["a@example.com"]]


def test_ids_wrap_around_after_99999999_and_survive_a_restart(runtime, mailserver, tmp_path):
    srv = mailserver(tls="none")
    out = run_ok(_snip("""
    d, port = sys.argv[1], int(sys.argv[2])
    ob = smtp_outbox.Outbox(d, clock=clock, from_addr="dev@example.org")
    ob.put("a@example.com", b"Subject: 1\\r\\n\\r\\nx")
    ob.put("a@example.com", b"Subject: top\\r\\n\\r\\nx")
    # The last id there is (after 10**8 puts, or a file copied in), and a report in dead/.
    os.rename(d + "/00000002.mail", d + "/99999999.mail")
    with open(d + "/dead/00000003.ref", "w") as f:
        f.write("mid <r@x>\\nfrom dev@example.org\\nend\\n")
    ob = smtp_outbox.Outbox(d, clock=clock, from_addr="dev@example.org")
    ids = [ob.put("a@example.com", b"Subject: %d\\r\\n\\r\\nx" % k) for k in (2, 3)]
    ob = smtp_outbox.Outbox(d, clock=clock, from_addr="dev@example.org")  # a restart
    pend = ob.pending()
    ids.append(ob.put("a@example.com", b"Subject: 4\\r\\n\\r\\nx"))
    r = ob.flush(smtp_client.Client("127.0.0.1", port, tls="none", timeout=5))
    print((ids, pend, (r.sent, r.dead, r.remaining), [x.id for x in ob.dead()]))
    """), runtime=runtime, args=[tmp_path / "ob", srv.port])
    ids, pend, r, dead = _out(out)
    # Past 99999999 (before: 100000000, a name recovery ignores): 00000001 is queued,
    # 00000003 is in dead/; after the restart 00000001 to 00000004 are all taken.
    assert ids == ["00000002", "00000004", "00000005"]
    assert pend == ["00000001", "00000002", "00000004", "99999999"]
    assert r == (5, 0, 0) and dead == ["00000003"]
    subjects = sorted(m.content.split(b"\r\n")[0] for m in srv.messages)
    assert subjects == [b"Subject: %s" % s for s in (b"1", b"2", b"3", b"4", b"top")]


BAD_IDS = ["../../x", "../../../x", "../x", "/x", "0000000a", "1", "000000001", "-1234567",
           " 1234567", "+1234567", "0000000\u00b2", "\uff10" * 8, "0000/../", "", None, 1]


def test_discard_and_retry_take_only_ids(runtime, tmp_path):
    d = tmp_path / "sub" / "ob"
    (tmp_path / "sub").mkdir()
    victims = [tmp_path / ("x" + ext) for ext in (".mail", ".st", ".ref")]
    victims += [tmp_path / "sub" / ("x" + ext) for ext in (".mail", ".st", ".ref")]
    for v in victims:
        v.write_bytes(b"not the outbox's\n")
    out = run_ok(_snip("""
    d, bad = sys.argv[1], eval(sys.argv[2])
    ob = smtp_outbox.Outbox(d, clock=clock)
    res = []
    for id in bad:
        for op in (ob.discard, ob.retry):
            try:
                op(id)
                res.append("done")
            except ValueError:
                res.append("ValueError")
            except Exception as e:
                res.append(type(e).__name__)
    with open(d + "/dead/00000001.ref", "w") as f:
        f.write("mid \\nfrom \\nend\\n")
    ob.discard("00000001")    # an id still works
    print((res, os.listdir(d + "/dead")))
    """), runtime=runtime, args=[d, repr(BAD_IDS)])
    res, left = _out(out)
    assert res == ["ValueError"] * (2 * len(BAD_IDS))
    assert left == []
    assert all(v.read_bytes() == b"not the outbox's\n" for v in victims)
