# SPDX-License-Identifier: MIT
"""lib/smtp_outbox.py under crafted input (issue 12, item 7): what put accepts flush sends,
however many recipients; files in the folder that are not the outbox's, or are but are not
in its format (no line end, a FIFO), are skipped or moved to dead/ without blocking the
rest; ids stay 8 digits after 99999999; discard() and retry() take only ids. Same drivers
as tests/test_outbox.py: snippets on the unix port and on CPython, a clock moved by hand."""

from harness import run_ok
from test_outbox import _out, _snip


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
