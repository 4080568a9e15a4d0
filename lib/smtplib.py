# SPDX-License-Identifier: MIT
"""smtplib: CPython's smtplib surface for MicroPython, built on smtp_client.

    import smtplib
    with smtplib.SMTP("mail.example.com", 587) as s:
        s.starttls(context=smtplib.create_context(ca_der))  # verified by default anyway
        s.login(user, password)
        s.sendmail(from_addr, to_addrs, msg)

`SMTP` is smtp_client.SMTP (pipelined sendmail, streamed bodies, every check of the core)
plus what smtplib programs call that the core leaves out: mail/rcpt/data,
vrfy/verify/expn/help, send/putcmd/getreply/docmd, auth with auth_plain/auth_login/
auth_cram_md5, send_message, quoteaddr/quotedata. `SMTP_SSL` is implicit TLS (port 465).
`LMTP` (RFC 2033) says LHLO and reads one reply per recipient after the data. The
exceptions are the core's own classes. The rarely used methods (noop, rset, helo, has_extn,
esmtp_features, the trace) load smtp_ext on first use, as on smtp_client.SMTP.

Stricter than CPython's, by design:
- TLS certificates are verified by default (CPython's starttls() and SMTP_SSL without a
  context verify nothing): give context=create_context(cadata=CA_DER) for your own CA, or
  create_context(verify=False) to turn verification off (insecure).
- Credentials never go out over plain TCP unless the program opts in:
  login(..., allow_plaintext_auth=True), the same keyword of auth(), or the attribute
  `allow_plaintext_auth = True` on the object (or on the class, for a whole program).
- timeout is seconds > 0, or None (no deadline, as in CPython); 0 raises ValueError.
"""

from micropython import const
import sys

import smtp_client as sc
from smtp_client import (  # noqa: F401  (smtplib's names: the core's classes themselves)
    SMTPAuthenticationError,
    SMTPConnectError,
    SMTPDataError,
    SMTPException,
    SMTPHeloError,
    SMTPNotSupportedError,
    SMTPProtocolError,
    SMTPRecipientsRefused,
    SMTPResponseException,
    SMTPSenderRefused,
    SMTPServerDisconnected,
    SMTPTimeoutError,
    SMTPTLSError,
    create_context,
)

__version__ = "0.1.0"

SMTP_PORT = const(25)
SMTP_SSL_PORT = const(465)
LMTP_PORT = const(2003)
CRLF = "\r\n"
bCRLF = b"\r\n"
# The longest reply line by default: the core's buffer (SMTP(bufsize=...); RFC 5321
# 4.5.3.1.5 says 512). A longer one is a protocol error.
_MAXLINE = const(512)

_SYNC = const(1)  # smtp_client's order: write tx, then read until `left` replies are due

_TLS_HINT = const(" (certificates are verified: context=smtplib.create_context(cadata=CA_DER)"
                  " trusts your CA; create_context(verify=False) verifies nothing, insecure)")


def quoteaddr(addrstring):
    """The address of "addr", "<addr>" or "Name <addr>" in angle brackets."""
    return "<%s>" % _addr(addrstring)


def quotedata(data):
    """A str as DATA sends it: CRLF line ends, a "." starting a line doubled (RFC 5321
    4.5.2). sendmail() and data() do this themselves, while sending."""
    data = data.replace("\r\n", "\n").replace("\r", "\n").replace("\n", "\r\n")
    return ("." if data[:1] == "." else "") + data.replace("\r\n.", "\r\n..")


def _addr(a):
    # smtplib's address forms: "Name <addr>" and "<addr>" give addr, "<>" the null sender.
    if not isinstance(a, str):
        return a
    a = a.strip()
    i = a.rfind("<")
    return a[i + 1 : -1] if i >= 0 and a[-1:] == ">" else a


class SMTP(sc.SMTP):
    """smtplib.SMTP: smtp_client.SMTP and the rest of smtplib's methods. See the module
    docstring for what is stricter."""

    # The base class is named, not super(): a zero-argument super() costs MicroPython
    # about 48 B of RAM per method that uses it.

    command_encoding = "ascii"  # "utf-8" once mail() was given SMTPUTF8
    user = password = None  # for auth_plain, auth_login, auth_cram_md5
    allow_plaintext_auth = False  # True: login() and auth() may send credentials without TLS
    _rcpts = None  # the recipients accepted since mail() (LMTP reads a reply for each)
    _said = 0  # auth_login's answers in this exchange

    # ----- connection

    def connect(self, host="localhost", port=0, source_address=None):
        """Connect and read the greeting: (code, msg). A greeting that breaks the protocol
        raises SMTPConnectError with code -1."""
        if self.timeout is not None and self.timeout <= 0:
            raise ValueError("timeout must be seconds > 0, or None (no deadline)")
        if not port and host.count(":") == 1 and not host.partition(":")[2].isdigit():
            raise OSError("nonnumeric port")
        if self.debuglevel:
            self._print("connect", (host, port))
        try:
            return sc.SMTP.connect(self, host, port, source_address)
        except SMTPProtocolError as e:
            raise SMTPConnectError(-1, str(e).encode())
        except SMTPTLSError as e:
            raise SMTPTLSError(str(e) + _TLS_HINT)

    def __exit__(self, *exc):
        # smtplib's: a QUIT answered other than 221 raises SMTPResponseException.
        try:
            if self.sock is not None:
                code, msg = self.quit()
                if code != 221:
                    raise SMTPResponseException(code, msg)
        except SMTPServerDisconnected:
            pass
        finally:
            self.close()

    def ehlo_or_helo_if_needed(self):
        """EHLO, or HELO when EHLO is refused, unless one of them was said already."""
        if self.helo_resp is None and self.ehlo_resp is None:
            if not 200 <= self.ehlo()[0] < 300:
                code, msg = self.helo()
                if not 200 <= code < 300:
                    raise SMTPHeloError(code, msg)

    def starttls(self, keyfile=None, certfile=None, *, context=None):
        """STARTTLS (RFC 3207); the certificate is verified unless `context` says otherwise
        (smtp_client.create_context). EHLO is said again over TLS. Returns (code, msg)."""
        if keyfile is not None or certfile is not None:
            raise ValueError("keyfile, certfile: load them into an SSLContext, give context=")
        try:
            return sc.SMTP.starttls(self, context=context)
        except SMTPTLSError as e:
            raise SMTPTLSError(str(e) + _TLS_HINT)

    # ----- single commands

    def send(self, s):
        """Send s (str in command_encoding, or bytes) as it is."""
        if self.sock is None:
            raise SMTPServerDisconnected("please run connect() first")
        if isinstance(s, str):
            s = s.encode(self.command_encoding)
        try:
            self._write(s, 0, len(s))
        except OSError:
            self.close()
            raise

    def putcmd(self, cmd, args=""):
        """Send one command line; CR or LF in it raises ValueError (nothing is sent)."""
        s = cmd + " " + args if args else cmd
        if "\r" in s or "\n" in s:
            raise ValueError("command and arguments contain prohibited newline characters: "
                             + s.replace("\r", "\\r").replace("\n", "\\n"))
        self.send(s + "\r\n")

    def getreply(self):
        """Read one reply: (code, msg), its lines joined by "\\n"."""
        return self._run(self.do_command())

    def docmd(self, cmd, args=""):
        """Send a command; return its reply (code, msg)."""
        self.putcmd(cmd, args)
        return self.getreply()

    def vrfy(self, address):
        """VRFY (RFC 5321 3.5.1): (code, msg)."""
        return self.docmd("VRFY", _addr(address))

    verify = vrfy

    def expn(self, address):
        """EXPN (RFC 5321 3.5.2): (code, msg), one member per line of msg."""
        return self.docmd("EXPN", _addr(address))

    def help(self, args=""):
        """HELP: the server's text (bytes)."""
        return self.docmd("HELP", args)[1]

    # ----- a mail one command at a time

    def _opts(self, options):
        # ESMTP parameters go out only after EHLO; SMTPUTF8 needs the server's (RFC 6531 3.4)
        # and sends the commands in UTF-8.
        if not (options and self.does_esmtp):
            return ""
        for o in options:
            if o.upper() == "SMTPUTF8":
                if not self.has_extn("smtputf8"):
                    raise SMTPNotSupportedError("SMTPUTF8 not supported by server")
                self.command_encoding = "utf-8"
        return " " + " ".join(options)

    def mail(self, sender, options=()):
        """MAIL FROM (RFC 5321 4.1.1.2): (code, msg)."""
        self._rcpts = []
        return self.docmd("MAIL", "FROM:" + quoteaddr(sender) + self._opts(options))

    def rcpt(self, recip, options=()):
        """RCPT TO (RFC 5321 4.1.1.3): (code, msg)."""
        reply = self.docmd("RCPT", "TO:" + quoteaddr(recip) + self._opts(options))
        if reply[0] in (250, 251) and self._rcpts is not None:
            self._rcpts.append(recip)
        return reply

    def data(self, msg):
        """DATA, then msg (bytes, str, a file or an iterable of bytes) with CRLF line ends
        and dot-stuffing, then "." CRLF (RFC 5321 4.1.1.4); returns the reply (code, msg).
        SMTPDataError when DATA is not answered 354."""
        code, text = self.docmd("DATA")
        if code != 354:
            raise SMTPDataError(code, text)
        self._run(self._body(msg))
        return self.getreply()

    def _body(self, msg):
        # The core's encoder (RFC 5321 2.3.8, 4.5.2; its line state carries across pieces):
        # tx goes out whenever it is full, nothing is read until the end of data is out.
        body = msg.encode() if isinstance(msg, str) else msg
        if not isinstance(body, (bytes, bytearray)) and not hasattr(body, "readinto"):
            body = iter(body)
        self.src = b""  # a body is open: a failure now drops the connection
        self.bol = True
        self.cr = False
        self.stuff = True
        self.left = self.out
        src = None
        while True:
            j = self.piece(body, src)
            if j < 0:
                break
            src = self.src
            i = self.encode(src, 0, j)
            while i < j:
                yield _SYNC
                i = self.encode(src, i, j)
        if len(self.tx) - self.tx_len < 5:
            yield _SYNC  # room for CRLF "." CRLF
        self.body_end(False)
        yield _SYNC

    # ----- whole mails

    def sendmail(self, from_addr, to_addrs, msg, mail_options=(), rcpt_options=(), **options):
        """smtp_client.SMTP.sendmail (pipelined where the server allows it) with smtplib's
        address forms ("Name <addr>", "<>" for the null sender). SMTPUTF8 in mail_options
        needs the server's; a non-ASCII address gets it by itself when the server has it."""
        self.ehlo_or_helo_if_needed()
        self._opts(mail_options)
        to = []
        for a in [to_addrs] if isinstance(to_addrs, str) else to_addrs:
            to.append(_addr(a))
        return sc.SMTP.sendmail(self, _addr(from_addr), to, msg, mail_options, rcpt_options,
                                **options)

    def send_message(self, msg, from_addr=None, to_addrs=None, mail_options=(),
                     rcpt_options=()):
        """Send an smtp_message.Message (its sender and recipients are the envelope unless
        given), or an email.message.Message where the email package exists: the envelope
        from its headers (Sender or From; To, Cc, Bcc; the Resent- fields of a resent
        message), Bcc fields left out, SMTPUTF8 when an address needs it."""
        if hasattr(msg, "readinto"):
            try:
                return self.sendmail(msg.sender if from_addr is None else from_addr,
                                     msg.recipients if to_addrs is None else to_addrs, msg,
                                     mail_options, rcpt_options)
            finally:
                if hasattr(msg, "plan"):
                    msg.close()  # smtp_message: a file it opened, if sending stopped early
        # The email package: CPython's (MicroPython has none unless installed).
        import copy  # type: ignore[import-not-found,unused-ignore]
        import email.generator  # type: ignore[import-not-found,unused-ignore]
        import email.utils  # type: ignore[import-not-found,unused-ignore]
        import io

        self.ehlo_or_helo_if_needed()
        # RFC 5322 3.6.6: a resent message names its envelope in its Resent- fields; more
        # than one set of them is ambiguous.
        resent = msg.get_all("Resent-Date") or ()
        if len(resent) > 1:
            raise ValueError("message has more than one 'Resent-' header block")
        pre = "Resent-" if resent else ""
        if from_addr is None:
            # RFC 5322 3.6.2: Sender names the sender when From has more than one author.
            field = msg[pre + "Sender"] or msg[pre + "From"]
            from_addr = email.utils.getaddresses([field])[0][1]
        if to_addrs is None:
            fields = []
            for name in ("To", "Bcc", "Cc"):
                fields += msg.get_all(pre + name, [])
            to_addrs = [a for _, a in email.utils.getaddresses(fields)]
        out = copy.copy(msg)
        del out["Bcc"]
        del out["Resent-Bcc"]
        addrs = from_addr + "".join(to_addrs)
        utf8 = len(addrs.encode()) != len(addrs)
        if utf8:
            if not self.has_extn("smtputf8"):
                raise SMTPNotSupportedError("an address needs SMTPUTF8 (RFC 6531), which "
                                            "the server does not offer")
            mail_options = tuple(mail_options) + ("SMTPUTF8", "BODY=8BITMIME")
        flat = io.BytesIO()
        email.generator.BytesGenerator(
            flat, policy=msg.policy.clone(utf8=True) if utf8 else None).flatten(
            out, linesep="\r\n")
        return self.sendmail(from_addr, to_addrs, flat.getvalue(), mail_options,
                             rcpt_options)

    # ----- AUTH (RFC 4954)

    def login(self, user, password, *, initial_response_ok=True, allow_plaintext_auth=False,
              mechanism=None):
        """Authenticate with the first mechanism the server offers of CRAM-MD5, PLAIN,
        LOGIN (or `mechanism`). Over plain TCP only with allow_plaintext_auth=True (or the
        attribute): anyone on the path can then read the password. Returns (code, msg)."""
        self.user = user
        self.password = password
        return sc.SMTP.login(self, user, password, initial_response_ok=initial_response_ok,
                             mechanism=mechanism,
                             allow_plaintext_auth=allow_plaintext_auth or
                             self.allow_plaintext_auth)

    def auth(self, mechanism, authobject, *, initial_response_ok=True,
             allow_plaintext_auth=False):
        """One SASL exchange: authobject(challenge) returns each response (str or bytes),
        challenge None for the initial response. auth_plain, auth_login and auth_cram_md5
        answer with self.user and self.password. Returns (code, msg)."""
        import smtp_ext

        self._said = 0
        return smtp_ext.auth(self, mechanism, authobject,
                             initial_response_ok=initial_response_ok,
                             allow_plaintext_auth=allow_plaintext_auth or
                             self.allow_plaintext_auth)

    def auth_plain(self, challenge=None):
        """PLAIN (RFC 4616): NUL user NUL password."""
        return "\0%s\0%s" % (self.user, self.password)

    def auth_login(self, challenge=None):
        """LOGIN: the user name first (initial response or first challenge), then the
        password."""
        self._said += 1
        return self.user if self._said < 2 else self.password

    def auth_cram_md5(self, challenge=None):
        """CRAM-MD5 (RFC 2195): no initial response; user and HMAC-MD5 of the challenge."""
        if challenge is None:
            return None
        import smtp_ext

        return smtp_ext.cram_md5(self.user.encode(), self.password.encode(), challenge)

    # ----- debugging

    def set_debuglevel(self, debuglevel):
        """1: the protocol on stderr (AUTH secrets and bodies redacted); 2: each line with
        the time."""
        import smtp_ext

        smtp_ext.set_debuglevel(self, debuglevel, trace=self._print)

    def _print(self, what, data):
        if self.debuglevel > 1:
            import time

            t = time.time_ns()
            lt = time.localtime(t // 1000000000)
            print("%02d:%02d:%02d.%06d" % (lt[3], lt[4], lt[5], t // 1000 % 1000000), end=" ",
                  file=sys.stderr)
        print(what + ":", repr(data), file=sys.stderr)


class SMTP_SSL(SMTP):
    """smtplib.SMTP over implicit TLS (RFC 8314 3.3, port 465); the certificate is verified
    unless context= says otherwise."""

    default_port = SMTP_SSL_PORT
    _implicit = True


class LMTP(SMTP):
    """LMTP (RFC 2033): LHLO instead of EHLO; after the data, one reply per recipient
    accepted at RCPT. sendmail() goes one command at a time and returns the recipients
    refused at RCPT or after the data. TCP only (no Unix socket path)."""

    default_port = LMTP_PORT
    data_refused = None  # after data(): {recipient: (code, msg)} of those not delivered

    def do_command(self, verb=None, arg=None):
        # RFC 2033 4.1: LHLO where SMTP says EHLO (after STARTTLS as well).
        return SMTP.do_command(self, b"LHLO" if verb == b"EHLO" else verb, arg)

    def data(self, msg):
        """The data, then one reply per recipient rcpt() accepted since mail(), in their
        order (RFC 2033 4.2). Returns the first reply other than 250, else the last;
        `data_refused` maps each recipient not delivered to its reply."""
        reply = SMTP.data(self, msg)
        refused = self.data_refused = {}
        rcpts = self._rcpts or ()
        first = None
        for k in range(len(rcpts)):
            if k:
                reply = self.getreply()
            if reply[0] != 250:
                refused[rcpts[k]] = reply
                first = first or reply
        return first or reply

    def sendmail(self, from_addr, to_addrs, msg, mail_options=(), rcpt_options=(), **options):
        """MAIL, RCPT, DATA one at a time; returns {recipient: (code, msg)} of those refused
        at RCPT or after the data. SMTPRecipientsRefused when that is every one. The DSN
        and REQUIRETLS keywords of SMTP.sendmail are not for LMTP (TypeError)."""
        if options:
            raise TypeError("LMTP.sendmail takes no DSN or REQUIRETLS options")
        self.ehlo_or_helo_if_needed()
        to = [to_addrs] if isinstance(to_addrs, str) else to_addrs
        try:
            code, text = self.mail(from_addr, mail_options)
            if code != 250:
                raise SMTPSenderRefused(code, text, from_addr)
            refused = {}
            for a in to:
                code, text = self.rcpt(a, rcpt_options)
                if code != 250 and code != 251:
                    refused[a] = (code, text)
            if self._rcpts:
                self.data(msg)
                refused.update(self.data_refused)
            if len(refused) == len(to):
                raise SMTPRecipientsRefused(refused)
            return refused
        except SMTPException:
            if self.sock is not None:
                try:
                    self.docmd("RSET")  # RFC 5321 4.1.1.5: the session stays usable
                except SMTPException:
                    pass
            raise
