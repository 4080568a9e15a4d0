# SPDX-License-Identifier: MIT
"""Interop with a real MTA (issue 3): the pipelined and chunked paths against a private
Postfix, which offers PIPELINING, CHUNKING, SIZE, 8BITMIME, SMTPUTF8, DSN and
ENHANCEDSTATUSCODES. What Postfix delivered to its mailboxes must be what was sent, byte for
byte (after the header lines Postfix prepends, and with its LF line ends: tools/postfix.py)."""

import json

import pytest

from harness import run_ok
from postfix import USER, delivered_form, strip_prepended

OTHER = "other@example.test"


def _send(runtime, port, source, heapsize=None):
    out = run_ok("""
        import sys, smtp_client
        PORT = int(sys.argv[1])
        def result(r):
            e = r.error
            return {"refused": {a: c for a, (c, t) in r.refused.items()},
                    "error": None if e is None else type(e).__name__,
                    "code": getattr(e, "smtp_code", None),
                    "enhanced": getattr(e, "enhanced", None)}
    """ + source, runtime=runtime, args=[port], heapsize=heapsize)
    return [json.loads(line) for line in out.splitlines() if line.startswith(("{", "["))]


def _body(i, extra=b""):
    # A marker header first (strip_prepended cuts there), dots, long lines, 8-bit text.
    return (b"X-Test-Id: %d\r\nSubject: mail %d\r\n\r\n" % (i, i)
            + b".a line with a leading dot\r\n..two dots\r\n.\r\n"
            + b"x" * 3000 + b"\r\n" + extra
            + "caf\u00e9 \u00fcber\r\n".encode())


@pytest.mark.parametrize("chunking", [True, False], ids=["BDAT", "DATA"])
def test_batch_pipelined_delivered_byte_identical(postfix, runtime, chunking):
    postfix.clear()
    n = 12
    bodies = [_body(i, b"chunk boundary filler\r\n" * (i * 7)) for i in range(n)]
    res = _send(runtime, postfix.port, """
        s = smtp_client.SMTP("127.0.0.1", PORT, local_hostname="dev.example.test",
                             chunking=%r)
        s.ehlo()
        print(json.dumps([s.has_extn("pipelining"), s.has_extn("chunking")]))
        rs = s.send_many([("dev@example.test", [%r], b) for b in %r], quit=True)
        print(json.dumps([result(r) for r in rs]))
    """.replace("json.", "__import__('json').") % (chunking, USER, bodies))
    assert res[0] == [True, True]
    assert all(r["error"] is None and not r["refused"] for r in res[1]), res
    got = postfix.wait_delivered(n, timeout=30)
    by_id = {}
    for raw in got:
        clean = strip_prepended(raw, marker=b"X-Test-Id: ")
        by_id[int(clean.split(b"\n", 1)[0].split(b": ")[1])] = clean
    assert sorted(by_id) == list(range(n))
    for i, body in enumerate(bodies):
        assert by_id[i] == delivered_form(body), i


def test_refusals_attributed_to_the_right_mail(postfix, runtime):
    # Postfix refuses unknown users at RCPT (550 5.1.1): in a pipelined, chunked batch the
    # refusal lands on the right mail and recipient; a mail with no valid recipient fails
    # alone; the others are delivered.
    postfix.clear()
    res = _send(runtime, postfix.port, """
        s = smtp_client.SMTP("127.0.0.1", PORT, local_hostname="dev.example.test")
        rs = s.send_many([
            ("dev@example.test", [%r, "nobody@example.test"], b"X-Test-Id: 0\\r\\n\\r\\na\\r\\n"),
            ("dev@example.test", ["ghost@example.test"], b"X-Test-Id: 1\\r\\n\\r\\nb\\r\\n"),
            ("dev@example.test", [%r], b"X-Test-Id: 2\\r\\n\\r\\nc\\r\\n"),
        ], quit=True)
        print(__import__("json").dumps([result(r) for r in rs]))
    """ % (USER, USER))[0]
    assert res[0]["error"] is None and res[0]["refused"] == {"nobody@example.test": 550}
    assert res[1]["error"] == "SMTPRecipientsRefused" and res[1]["refused"] == {
        "ghost@example.test": 550}
    assert res[2] == {"refused": {}, "error": None, "code": None, "enhanced": None}
    got = postfix.wait_delivered(2, timeout=30)
    ids = sorted(strip_prepended(r, marker=b"X-Test-Id: ").split(b"\n")[0] for r in got)
    assert ids == [b"X-Test-Id: 0", b"X-Test-Id: 2"]


def test_size_limit_refused_before_sending(postfix, runtime):
    # RFC 1870: Postfix announces SIZE 10240000; a larger mail is refused by the client
    # before MAIL FROM, and the session goes on.
    postfix.clear()
    res = _send(runtime, postfix.port, """
        s = smtp_client.SMTP("127.0.0.1", PORT, local_hostname="dev.example.test")
        big = b"X-Test-Id: 9\\r\\n\\r\\n" + b"y" * 10240000
        try:
            s.sendmail("dev@example.test", [%r], big)
            print("[\\"sent\\"]")
        except smtp_client.SMTPNotSupportedError as e:
            print("[\\"refused\\"]")
        s.sendmail("dev@example.test", [%r], b"X-Test-Id: 1\\r\\n\\r\\nsmall\\r\\n")
        s.quit()
    """ % (USER, USER), heapsize="32m")
    assert res == [["refused"]]
    got = postfix.wait_delivered(1, timeout=30)
    assert strip_prepended(got[0], marker=b"X-Test-Id: ") == b"X-Test-Id: 1\n\nsmall\n"


def test_dsn_and_smtputf8_accepted(postfix, runtime):
    # RFC 3461 NOTIFY/ORCPT/RET/ENVID and RFC 6531 SMTPUTF8 go through a real MTA.
    postfix.clear()
    res = _send(runtime, postfix.port, """
        s = smtp_client.SMTP("127.0.0.1", PORT, local_hostname="dev.example.test")
        r = s.sendmail("d\\u00e9v@example.test", [%r], b"X-Test-Id: 3\\r\\n\\r\\nhi\\r\\n",
                       notify="FAILURE,DELAY", ret="HDRS", envid="id+1=2")
        print(__import__("json").dumps(r))
        s.quit()
    """ % USER)
    assert res == [{}]
    got = postfix.wait_delivered(1, timeout=30)
    assert b"Return-Path: <d\xc3\xa9v@example.test>" in got[0]
