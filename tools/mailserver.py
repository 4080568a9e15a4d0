# SPDX-License-Identifier: MIT
"""A real SMTP server for tests and the demo: aiosmtpd in a thread (CPython only).

    with MailServer(tls="starttls", auth={"device": "s3cret"}, certdir=d) as srv:
        ... send to srv.host:srv.port, trusting srv.certs["ca.der"] ...
        srv.messages[0].content         # bytes as received, dot-stuffing removed

tls:  "none"; "starttls" (STARTTLS offered and required before MAIL/AUTH); "implicit" (TLS
      from the first byte, as on port 465).
auth: None (no AUTH at all) or {user: password}. Mechanisms PLAIN and LOGIN (aiosmtpd's own),
      CRAM-MD5 (RFC 2195, really checked) and XOAUTH2 (the password is the bearer token).

As a script, prints "READY <port>", then every mail it receives, until SIGINT/SIGTERM:

    python tools/mailserver.py --tls starttls --auth user:pass --certdir DIR --port 0
"""

import base64
import binascii
import hmac
import json
import logging
import os
import signal
import ssl
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import MISSING, AuthResult

sys.path.insert(0, str(Path(__file__).resolve().parent))
from certs import make_certs  # noqa: E402

MECHANISMS = ("CRAM-MD5", "LOGIN", "PLAIN", "XOAUTH2")
# Offered only when asked for (mechanisms=[..., "OAUTHBEARER"]): RFC 7628, the token as the
# password, like XOAUTH2.
OPTIONAL = ("OAUTHBEARER",)

# aiosmtpd itself sets the deprecated Session.login_data on every successful AUTH and then
# warns about it on stderr; the warning is about aiosmtpd's own code, so drop it.
logging.getLogger("mail.log").addFilter(lambda r: "login_data is deprecated" not in r.getMessage())


@dataclass
class Mail:
    """One mail as the server accepted it."""

    mail_from: str
    rcpt_tos: list
    content: bytes  # the DATA payload with dot-stuffing undone, CRLFs kept, no final "."
    mail_options: list
    rcpt_options: list
    login: object = None  # the authenticated user name (str), or None
    tls: bool = False  # was the session encrypted when DATA arrived
    ehlo: str = ""  # the name given in EHLO/HELO


def _tls_active(server):
    # Works for both STARTTLS (aiosmtpd swaps in the SSL app transport) and implicit TLS.
    t = server.transport
    return t is not None and t.get_extra_info("ssl_object") is not None


def _text(b):
    return b.decode("utf-8", "surrogateescape") if isinstance(b, bytes) else b


class _Handler:
    """aiosmtpd handler: records mails and implements the extra AUTH mechanisms.

    aiosmtpd turns every handler method named auth_<MECH> into an AUTH mechanism ("__" means
    "-"), so auth_CRAM__MD5 adds CRAM-MD5.
    """

    def __init__(self, owner):
        self.owner = owner

    async def handle_EHLO(self, server, session, envelope, hostname, responses):
        # The 5-argument hook replaces aiosmtpd's reply, and must set host_name itself.
        session.host_name = hostname
        self.owner.ehlo_log.append((hostname, _tls_active(server)))
        hide = self.owner.ehlo_hide
        # The last line ("250 HELP") is never hidden, so the "250 " terminator stays intact.
        return [r for r in responses[:-1] if r[4:].split(" ")[0].upper() not in hide] + [
            responses[-1]
        ]

    async def handle_MAIL(self, server, session, envelope, address, mail_options):
        # aiosmtpd's default, plus a log: lets a test prove that no MAIL reached the server.
        self.owner.mail_log.append(address)
        envelope.mail_from = address
        envelope.mail_options.extend(mail_options)
        return "250 OK"

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):
        # aiosmtpd's default, unless the address is in refuse_rcpt (then its reply is sent).
        refusal = self.owner.refuse_rcpt.get(address)
        if refusal is not None:
            return refusal
        envelope.rcpt_tos.append(address)
        envelope.rcpt_options.extend(rcpt_options)
        return "250 OK"

    async def handle_DATA(self, server, session, envelope):
        mail = Mail(
            mail_from=envelope.mail_from,
            rcpt_tos=list(envelope.rcpt_tos),
            content=envelope.original_content,
            mail_options=list(envelope.mail_options),
            rcpt_options=list(envelope.rcpt_options),
            login=session.auth_data if session.authenticated else None,
            tls=_tls_active(server),
            ehlo=session.host_name or "",
        )
        # Recorded before the 250 goes out: once a client has its reply, the mail is here.
        self.owner.messages.append(mail)
        if self.owner.on_message:
            self.owner.on_message(mail)
        return "250 2.0.0 OK queued"

    async def auth_CRAM__MD5(self, server, args):
        # RFC 2195: challenge <unique@host>, response "user HEX(HMAC-MD5(password, challenge))".
        if len(args) > 1:
            return AuthResult(success=False, handled=False,
                              message="501 5.5.2 CRAM-MD5 takes no initial response")
        challenge = f"<{os.getpid()}.{time.monotonic_ns()}@{server.hostname}>".encode()
        resp = await server.challenge_auth(challenge)
        if resp is MISSING:  # "*" or bad base64: aiosmtpd already replied 501
            return AuthResult(success=False)
        user, _, digest = resp.rpartition(b" ")
        password = self.owner.auth.get(_text(user))
        ok = password is not None and hmac.compare_digest(
            digest, hmac.new(password.encode(), challenge, "md5").hexdigest().encode()
        )
        return self.owner._result("CRAM-MD5", user, ok)

    async def auth_XOAUTH2(self, server, args):
        # Google/Microsoft convention: base64("user=U\x01auth=Bearer T\x01\x01"), usually as the
        # initial response. On failure: 334 + base64 JSON error, the client sends an empty line,
        # then 535.
        blob = await _response(server, args)
        if isinstance(blob, AuthResult):
            return blob
        fields = dict(p.split(b"=", 1) for p in blob.split(b"\x01") if b"=" in p)
        user = fields.get(b"user", b"")
        token = fields.get(b"auth", b"")
        password = self.owner.auth.get(_text(user))
        ok = password is not None and hmac.compare_digest(token, b"Bearer " + password.encode())
        if ok:
            return self.owner._result("XOAUTH2", user, True)
        self.owner._result("XOAUTH2", user, False)
        error = json.dumps({"status": "401", "schemes": "bearer", "scope": "mail"}).encode()
        await server.challenge_auth(error)  # the client answers with an empty line
        return AuthResult(success=False, handled=False)  # aiosmtpd sends 535 5.7.8


    async def auth_OAUTHBEARER(self, server, args):
        # RFC 7628 3.1: base64("n,a=U," ^A "auth=Bearer T" ^A ^A). On failure (3.2.2): 334 +
        # base64 JSON error, the client answers with a single ^A (3.2.3), then 535.
        blob = await _response(server, args)
        if isinstance(blob, AuthResult):
            return blob
        gs2, _, rest = blob.partition(b"\x01")
        fields = dict(p.split(b"=", 1) for p in rest.split(b"\x01") if b"=" in p)
        user = next((f[2:] for f in gs2.split(b",") if f.startswith(b"a=")), b"")
        user = user.replace(b"=2C", b",").replace(b"=3D", b"=")
        password = self.owner.auth.get(_text(user))
        ok = (gs2.startswith(b"n,") and password is not None
              and hmac.compare_digest(fields.get(b"auth", b""), b"Bearer " + password.encode()))
        if ok:
            return self.owner._result("OAUTHBEARER", user, True)
        self.owner._result("OAUTHBEARER", user, False)
        error = json.dumps({"status": "invalid_token", "scope": "mail"}).encode()
        if await server.challenge_auth(error) != b"\x01":
            return AuthResult(success=False, handled=False,
                              message="501 5.5.2 expected ^A after the error")
        return AuthResult(success=False, handled=False)  # aiosmtpd sends 535 5.7.8


async def _response(server, args):
    """The client's first response of an AUTH exchange: the initial response (base64), or
    the answer to an empty 334. An AuthResult when there is none to use."""
    if len(args) > 1:
        try:
            return base64.b64decode(args[1], validate=True)
        except binascii.Error:
            return AuthResult(success=False, handled=False,
                              message="501 5.5.2 Can't decode base64")
    blob = await server.challenge_auth("")
    return AuthResult(success=False) if blob is MISSING else blob


class _Controller(Controller):
    """aiosmtpd's Controller, plus port 0.

    Controller.start() checks readiness by connecting to (hostname, self.port); with port 0
    that would be port 0. By then the server socket is bound, so read the real port first.
    With implicit TLS the check wraps its socket with verification off, so our CA is not needed.
    """

    def _trigger_server(self):
        self.port = self.server.sockets[0].getsockname()[1]
        super()._trigger_server()

    def factory(self):
        # One bytearray per connection gets every byte the SMTP protocol receives (after TLS):
        # a test can check what went over the wire, not only what was delivered. asyncio
        # calls data_received for all data before connection_lost.
        proto = super().factory()
        wire = bytearray()
        self.handler.owner.wire.append(wire)
        receive = proto.data_received

        def data_received(data):
            wire.extend(data)
            receive(data)

        proto.data_received = data_received
        return proto


class MailServer:
    """A real SMTP server (aiosmtpd) on a thread. Use start()/stop() or `with`.

    Attributes after start(): host, port, certs (dict from tools.certs, None without TLS),
    messages (list of Mail), auth_log (list of (mechanism, user, ok)), ehlo_log (list of
    (ehlo name, tls active)), mail_log (the address of every MAIL command that got past
    aiosmtpd's own checks), wire (per connection, a bytearray of everything the server
    received, decrypted; the start-up check's connection comes first).

    auth_require_tls: like a real submission server, hide AUTH from EHLO and refuse it until
        the session is encrypted: 530 with tls="starttls" (which also refuses MAIL before
        STARTTLS), 538 with tls="none". Implicit TLS always counts as encrypted.
    mechanisms: AUTH mechanisms to offer (default all of MECHANISMS). aiosmtpd matches the
        name case-sensitively: "AUTH plain" gets 504.
    advertise_auth=False: AUTH is left out of EHLO but still accepted.
    ehlo_hide: more EHLO keywords to leave out (e.g. {"SIZE", "8BITMIME"}).
    on_message: called with each Mail (in the server thread).
    refuse_rcpt: recipients to refuse at RCPT: {address: reply line} (e.g. "450 4.2.1 Busy"),
        or a sequence of addresses, each refused with "550 5.1.1 No such user".
    smtp_kwargs: passed to aiosmtpd.smtp.SMTP (data_size_limit, enable_SMTPUTF8, timeout, ...).
    """

    def __init__(self, *, tls="none", auth=None, auth_require_tls=True, certdir=None,
                 cert="server", host="127.0.0.1", port=0, mechanisms=None,
                 advertise_auth=True, ehlo_hide=(), on_message=None, refuse_rcpt=(),
                 **smtp_kwargs):
        if tls not in ("none", "starttls", "implicit"):
            raise ValueError(f"tls must be none, starttls or implicit, not {tls!r}")
        self.tls = tls
        self.auth = dict(auth or {})
        self.host = host
        self.port = port
        self.messages = []
        self.auth_log = []
        self.ehlo_log = []
        self.mail_log = []
        self.wire = []
        if not isinstance(refuse_rcpt, dict):
            refuse_rcpt = dict.fromkeys(refuse_rcpt, "550 5.1.1 No such user")
        self.refuse_rcpt = refuse_rcpt
        self.on_message = on_message
        self._running = False
        self.ehlo_hide = {k.upper() for k in ehlo_hide}
        if not advertise_auth:
            self.ehlo_hide.add("AUTH")
        self.certs = None
        ctx = None
        if tls != "none":
            self.certs = make_certs(certdir or tempfile.mkdtemp(prefix="smtp_client-certs-"))
            ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
            ctx.load_cert_chain(self.certs[cert + ".pem"], self.certs[cert + ".key"])
        kw = dict(
            # A fixed name: the default, socket.getfqdn(), can stall on DNS.
            server_hostname="mail.test",
            ready_timeout=10,
        )
        if tls == "starttls":
            kw.update(tls_context=ctx, require_starttls=True)
        elif tls == "implicit":
            kw.update(ssl_context=ctx)
        if self.auth:
            offered = MECHANISMS if mechanisms is None else [m.upper() for m in mechanisms]
            kw.update(
                authenticator=self._authenticate,
                auth_exclude_mechanism=[m for m in MECHANISMS + OPTIONAL if m not in offered],
                # aiosmtpd only counts STARTTLS as encryption (issues #274, #281): under
                # implicit TLS it would hide AUTH and answer 538.
                auth_require_tls=auth_require_tls and tls != "implicit",
            )
        else:
            # No mechanisms left: hide the keyword too, or aiosmtpd would send a bare "AUTH".
            kw.update(auth_exclude_mechanism=list(MECHANISMS + OPTIONAL))
            self.ehlo_hide.add("AUTH")
        kw.update(smtp_kwargs)
        self._controller = _Controller(_Handler(self), hostname=host, port=port, **kw)

    def _result(self, mechanism, user, ok):
        self.auth_log.append((mechanism, _text(user), ok))
        return AuthResult(success=ok, handled=False, auth_data=_text(user))

    def _authenticate(self, server, session, envelope, mechanism, login_password):
        # aiosmtpd's PLAIN and LOGIN decode the credentials and call this.
        user = _text(login_password.login)
        ok = user in self.auth and hmac.compare_digest(self.auth[user].encode(),
                                                       login_password.password)
        return self._result(mechanism, user, ok)

    def start(self):
        self._controller.start()
        self.port = self._controller.port
        self._running = True
        return self

    def stop(self):
        if self._running:  # stop() twice (e.g. a test and the fixture) is fine
            self._running = False
            self._controller.stop()

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()


def _print_mail(mail):
    print(f"--- mail from {mail.mail_from} to {', '.join(mail.rcpt_tos)} "
          f"(tls={mail.tls}, login={mail.login})", flush=True)
    print(mail.content.decode("utf-8", "replace"), flush=True)


def main(argv=None):
    import argparse

    p = argparse.ArgumentParser(description="Run a local SMTP server for smtp_client tests.")
    p.add_argument("--tls", default="none", choices=["none", "starttls", "implicit"])
    p.add_argument("--auth", action="append", default=[], metavar="USER:PASS")
    p.add_argument("--certdir", help="where the test certificates are (or get generated)")
    p.add_argument("--cert", default="server", help="server, untrusted or wrongname")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=0)
    p.add_argument("--no-auth-require-tls", action="store_true")
    a = p.parse_args(argv)
    auth = dict(x.split(":", 1) for x in a.auth)
    srv = MailServer(tls=a.tls, auth=auth or None, certdir=a.certdir, cert=a.cert,
                     host=a.host, port=a.port, on_message=_print_mail,
                     auth_require_tls=not a.no_auth_require_tls)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    with srv:
        print(f"READY {srv.port}", flush=True)
        if srv.certs:
            print(f"CA {srv.certs['ca.der']}", file=sys.stderr, flush=True)
        while not stop.wait(0.5):
            pass


if __name__ == "__main__":
    main()
