# SPDX-License-Identifier: MIT
"""Shared helpers for the fault tests (tests/test_faults*.py).

    outs, srv = drive(runtime, scripts, '''
        s = sc.SMTP(timeout=TIMEOUT)
        report(lambda: first(s), s)
        report(lambda: again(s), s)
    ''')
    assert outs[0].exc == "SMTPProtocolError" and outs[0].closed

drive() starts a ScriptedServer with `scripts` (one script, or a list of scripts, one per
connection), runs the client snippet under `runtime` with PRELUDE in front of it, waits
(bounded) for the server's scripts to end and returns (outcomes, server). The snippet sees:

    sc                  the smtp_client module
    HOST, PORT          where the scripted server listens
    TIMEOUT             the client timeout (seconds) given to drive()
    ARGS                further arguments given to drive(args=...)
    FROM, TO, MSG       the standard mail (GOOD below is the server side of it)
    first(s)            connect s and send the standard mail (a 220-less greeting is returned)
    again(s)            connect s again, send the standard mail, QUIT: proves s is reusable
    cue(s)              send b"CUE\r\n" raw on s.sock (not through the engine), then wait
                        until the server's next bytes are readable (see CUE below)
    report(fn, s=None)  call fn(), print one "RESULT {json}" line with what happened

Each outcome is an Outcome (a dict with attribute access, None for missing keys):
exc (exception class name, None on success), ok (the return value, bytes decoded, tuples
as lists, SendResult as {"refused": ...}), code, text, enhanced, transient (from
SMTPResponseException / SMTPRecipientsRefused), recipients ({addr: [code, text]}), why
(str of the first exception argument), secs (how long fn ran), closed (s.sock is None; only
when s was given).
"""

import json
import textwrap

from harness import run_ok
from scripted import ScriptedServer

FROM = "from@example.com"
TO = "to@example.com"
MSG = b"Subject: t\r\n\r\nhello\r\n"
WIRE = MSG + b".\r\n"  # what the server must receive for MSG after DATA

PRELUDE = r'''
import sys, json, time
import smtp_client as sc
HOST = sys.argv[1]
PORT = int(sys.argv[2])
TIMEOUT = float(sys.argv[3])
ARGS = sys.argv[4:]
FROM = "from@example.com"
TO = ["to@example.com"]
MSG = b"Subject: t\r\n\r\nhello\r\n"


def now():
    try:
        return time.ticks_ms() / 1000
    except AttributeError:
        return time.monotonic()


def plain(x):
    if isinstance(x, (bytes, bytearray)):
        return bytes(x).decode()
    if isinstance(x, (tuple, list)):
        return [plain(v) for v in x]
    if isinstance(x, dict):
        return dict((str(k), plain(v)) for k, v in x.items())
    if isinstance(x, sc.SendResult):
        return {"refused": plain(x.refused)}
    return x


def first(s):
    code, msg = s.connect(HOST, PORT)
    if code != 220:
        return ["greeting", code, plain(msg), s.sock is None]
    return s.sendmail(FROM, TO, MSG)


def again(s):
    code, msg = s.connect(HOST, PORT)
    r = s.sendmail(FROM, TO, MSG)
    s.quit()
    return [code, r, s.sock is None]


def cue(s):
    # Deterministic timing for unsolicited data: write a line behind the engine's back (the
    # server's script expects it, then speaks), and wait until the server's bytes are here.
    import select
    s.sock.send(b"CUE\r\n")
    p = select.poll()
    p.register(s.sock, select.POLLIN)
    p.poll(5000)


def report(fn, s=None):
    d = {"exc": None}
    t = now()
    try:
        d["ok"] = plain(fn())
    except Exception as e:
        d["exc"] = type(e).__name__
        d["why"] = str(e.args[0]) if e.args else ""
        d["code"] = getattr(e, "smtp_code", None)
        d["text"] = plain(getattr(e, "smtp_error", None))
        d["enhanced"] = getattr(e, "enhanced", None)
        d["transient"] = getattr(e, "transient", None)
        d["recipients"] = plain(getattr(e, "recipients", None))
    d["secs"] = now() - t
    if s is not None:
        d["closed"] = s.sock is None
    print("RESULT " + json.dumps(d))
'''

# The server side of the standard mail, in pieces to build fault scripts from.
GREET = [("send", b"220 fake.example ESMTP\r\n")]
EHLO_REPLY = b"250-fake.example\r\n250 8BITMIME\r\n"  # no SIZE: MAIL lines stay bare
EHLO = [("expect", b"EHLO "), ("send", EHLO_REPLY)]
MAIL = [("expect", b"MAIL FROM:<from@example.com>"), ("send", b"250 2.1.0 ok\r\n")]
RCPT = [("expect", b"RCPT TO:<to@example.com>"), ("send", b"250 2.1.5 ok\r\n")]
DATA = [("expect", b"DATA"), ("send", b"354 go ahead\r\n")]
EOD = [("expect_data",), ("send", b"250 2.0.0 queued\r\n")]
RSET = [("expect", b"RSET"), ("send", b"250 2.0.0 reset\r\n")]
CUE = [("expect", b"CUE")]  # the server waits here until the snippet calls cue(s)
QUIT = [("expect", b"QUIT"), ("send", b"221 2.0.0 bye\r\n"), ("wait_close",)]
GOOD = GREET + EHLO + MAIL + RCPT + DATA + EOD + QUIT
GOOD_LINES = [b"MAIL FROM:<from@example.com>", b"RCPT TO:<to@example.com>", b"DATA", b"QUIT"]

# The standard mail cut where the server has just read each command (or, for "eod", the
# body): append the fault. The greeting stage is before/at the greeting itself.
STAGES = {
    "greeting": [],
    "ehlo": GREET + [("expect", b"EHLO ")],
    "mail": GREET + EHLO + MAIL[:1],
    "rcpt": GREET + EHLO + MAIL + RCPT[:1],
    "data": GREET + EHLO + MAIL + RCPT + DATA[:1],
    "eod": GREET + EHLO + MAIL + RCPT + DATA + EOD[:1],
}

# The client snippets most tests use: a fault on the first mail, then a good second one.
SMTP_TWICE = """
s = sc.SMTP(timeout=TIMEOUT)
report(lambda: first(s), s)
report(lambda: again(s), s)
"""
CLIENT_TWICE = """
c = sc.Client(HOST, PORT, tls="none", from_addr=FROM, timeout=TIMEOUT)
report(lambda: c.send(TO, MSG))
report(lambda: c.send(TO, MSG))
"""


class Outcome(dict):
    """One RESULT line: keys as attributes, None when absent."""

    def __getattr__(self, name):
        return self.get(name)


def drive(runtime, scripts, client, *, host="127.0.0.1", timeout=5, args=(),
          srv_timeout=5.0, run_timeout=30, join=True):
    """Run the client snippet against a ScriptedServer; return (outcomes, server).

    `timeout` is the client's (TIMEOUT in the snippet). The server is stopped before this
    returns; with join=True it first waits (bounded) for every script to end, so its
    received/lines/data are complete. Use join=False when the client may never connect.
    """
    srv = ScriptedServer(scripts, host=host, timeout=srv_timeout)
    source = PRELUDE + textwrap.dedent(client)
    with srv:
        out = run_ok(source, runtime=runtime, timeout=run_timeout,
                     args=[host, srv.port, timeout, *args])
        if join:
            srv.join(srv_timeout)
    outs = [Outcome(json.loads(line[7:])) for line in out.splitlines()
            if line.startswith("RESULT ")]
    return outs, srv


def assert_second_mail(out, srv, conn=1):
    """The snippet's again(s) (or a Client.send) delivered the standard mail on `conn`."""
    assert out.exc is None, out
    assert out.ok in ([220, {}, True], {"refused": {}}), out
    assert srv.data[conn] == [WIRE]
    assert srv.lines[conn][-4:] == GOOD_LINES

