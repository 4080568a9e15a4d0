# SPDX-License-Identifier: MIT
"""Client sessions for the hardening tests (issue 7), runnable under MicroPython and CPython.

tests/sessions.py records them against real servers (CPython) and tests/test_sweep.py replays
them with cuts, in-process (CPython) and over TCP on the unix port, where this module is
imported from tests/mp (harness MICROPYPATH). Same code, same bytes on the wire.

Each scenario: make(host, port, ctx) -> Handle (the Client or SMTP in .obj), and
run(handle, out): the session, every mail noted in `out` (an Outcome), one Outcome.mail /
.many call per SMTP._batch.
"""

import smtp_client as sc

FROM = "device@example.test"
TO = "device@example.test"
OTHER = "other@example.test"
GHOST = "ghost@example.test"  # unknown to Postfix: 550 5.1.1 at RCPT
USER = "device"  # aiosmtpd's user (tests/sessions.py)
PF_USER = "device@example.test"  # Postfix's (tools/postfix.py USER / PASSWORD)
PASSWORD = "s3cret"
LOCAL = "dev.example.test"


def body(i, lines=3, width=60):
    """A mail with a marker header, leading dots (dot-stuffing), and `lines` lines."""
    out = [b"X-Test-Id: %d\r\nSubject: sweep %d\r\n\r\n" % (i, i)]
    for k in range(lines):
        out.append((b"." if k % 4 == 0 else b"") + (b"%03d " % k) + b"x" * (width - 4)
                   + b"\r\n")
    return b"".join(out)


SMALL = body(1, 2)
MEDIUM = body(2, 6)
BIG = body(3, 22)  # about 1.4 KB: three BDAT chunks with the 512-byte buffer


class Handle:
    def __init__(self, obj, host, port, ctx):
        self.obj = obj
        self.host = host
        self.port = port
        self.ctx = ctx


class Outcome:
    """What one run did: per batch, per mail, (sent, error); the exception that ended the
    session (exc); exceptions that are not the library's own (bad)."""

    def __init__(self):
        self.batches = []
        self.exc = None
        self.bad = []
        self.handle = self.sock = None
        self.connections = 0

    def _note(self, ex):
        if not isinstance(ex, sc.SMTPException):
            self.bad.append(ex)

    def mail(self, fn):
        try:
            fn()
        except Exception as ex:
            self._note(ex)
            self.batches.append([(False, ex)])
            return False
        self.batches.append([(True, None)])
        return True

    def many(self, fn):
        try:
            results = fn()
        except Exception as ex:
            self._note(ex)
            self.batches.append([(False, ex)])
            return None
        row = []
        for r in results:
            if r.error is not None:
                self._note(r.error)
            row.append((r.sent, r.error))
        self.batches.append(row)
        return results

    def step(self, fn):
        try:
            return fn()
        except Exception as ex:
            self._note(ex)
            self.exc = ex
            raise

    def sent_flags(self):
        return [sent for row in self.batches for sent, _ in row]

    def __repr__(self):
        return "Outcome(batches=%r, exc=%r, bad=%r, connections=%d)" % (
            self.batches, self.exc, self.bad, self.connections)


# --- aiosmtpd: no PIPELINING, no CHUNKING (lock-step DATA)

def _plain_client(host, port, ctx):
    return Handle(sc.Client(host, port, tls="none", from_addr=FROM, local_hostname=LOCAL,
                            timeout=5), host, port, ctx)


def _run_plain_client(h, out):
    out.mail(lambda: h.obj.send([TO], SMALL))


def _session(host, port, ctx):
    return Handle(sc.SMTP(local_hostname=LOCAL, timeout=5), host, port, ctx)


def _run_starttls_session(h, out):
    s = h.obj
    out.step(lambda: s.connect(h.host, h.port))
    out.step(s.ehlo)
    out.step(lambda: s.starttls(context=h.ctx))
    out.step(lambda: s.login(USER, PASSWORD))  # CRAM-MD5: the strongest offered
    out.mail(lambda: s.sendmail(FROM, [TO], SMALL))
    out.mail(lambda: s.sendmail(FROM, [TO, OTHER], MEDIUM))
    out.step(s.quit)


def _login_client(host, port, ctx):
    return Handle(sc.Client(host, port, tls="starttls", context=ctx, username=USER,
                            password=PASSWORD, auth="login", from_addr=FROM,
                            local_hostname=LOCAL, timeout=5), host, port, ctx)


def _plain_auth_client(host, port, ctx):
    return Handle(sc.Client(host, port, tls="starttls", context=ctx, username=USER,
                            password=PASSWORD, auth="plain", from_addr=FROM,
                            local_hostname=LOCAL, timeout=5), host, port, ctx)


def _run_client_medium(h, out):
    out.mail(lambda: h.obj.send([TO, OTHER], MEDIUM))


# --- Postfix: PIPELINING, CHUNKING, ENHANCEDSTATUSCODES, SIZE, 8BITMIME, DSN

def _pf_tls_client(host, port, ctx):
    return Handle(sc.Client(host, port, tls="starttls", context=ctx, username=PF_USER,
                            password=PASSWORD, from_addr=FROM, local_hostname=LOCAL,
                            timeout=5), host, port, ctx)


def _run_pf_tls_batch(h, out):
    # Pipelined and chunked, QUIT in the last flight; the third mail is refused outright.
    out.many(lambda: h.obj.send_many([([TO], SMALL), ([TO, GHOST], BIG), ([GHOST], MEDIUM)]))


def _pf_data_session(host, port, ctx):
    return Handle(sc.SMTP(local_hostname=LOCAL, timeout=5, chunking=False), host, port, ctx)


def _run_pf_pipelined_data(h, out):
    s = h.obj
    out.step(lambda: s.connect(h.host, h.port))
    out.many(lambda: s.send_many([(FROM, [TO], SMALL), (FROM, [GHOST, TO], BIG),
                                  (FROM, [OTHER], MEDIUM)], quit=True))


def _pf_lockstep_session(host, port, ctx):
    return Handle(sc.SMTP(local_hostname=LOCAL, timeout=5, pipelining=False), host, port, ctx)


def _run_pf_lockstep_bdat(h, out):
    s = h.obj
    out.step(lambda: s.connect(h.host, h.port))
    out.mail(lambda: s.sendmail(FROM, [TO], BIG))
    out.mail(lambda: s.sendmail(FROM, [GHOST, OTHER], SMALL))
    out.step(s.quit)


# name: (make, run, the server that records it)
SCENARIOS = {
    "plain": (_plain_client, _run_plain_client, "aiosmtpd"),
    "starttls_cram_session": (_session, _run_starttls_session, "aiosmtpd-tls"),
    "starttls_login_client": (_login_client, _run_client_medium, "aiosmtpd-tls"),
    "starttls_plain_client": (_plain_auth_client, _run_client_medium, "aiosmtpd-tls"),
    "postfix_tls_chunked_batch": (_pf_tls_client, _run_pf_tls_batch, "postfix_tls"),
    "postfix_pipelined_data": (_pf_data_session, _run_pf_pipelined_data, "postfix"),
    "postfix_lockstep_bdat": (_pf_lockstep_session, _run_pf_lockstep_bdat, "postfix"),
}


def smtp_of(obj):
    """The SMTP object behind a Client (None before its first send) or the SMTP itself."""
    return obj.session if isinstance(obj, sc.Client) else obj
