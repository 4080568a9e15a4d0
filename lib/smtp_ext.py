# SPDX-License-Identifier: MIT
"""smtp_ext: what smtp_client's common path does not need, loaded on first use.

smtp_client imports it by itself when a feature is used (SMTP's and Client's __getattr__),
so an application never imports it, but it must be installed beside smtp_client:
- SMTP: `send_many`, `docmd`, `noop`, `rset`, `helo`, `has_extn`, `esmtp_features`, `auth`,
  `send_message`, `set_debuglevel` (the redacted protocol trace);
- Client: `send_many`, `send_mail` (the composer, smtp_message);
- DSN (RFC 3461: notify=, ret=, envid=) and REQUIRETLS (RFC 8689) mail options;
- CRAM-MD5 (RFC 2195) and XOAUTH2 authentication.
"""

import sys

import smtp_client as sc
from smtp_client import SMTPNotSupportedError

__version__ = "0.1.0"

# smtp_client's private const()s are folded away by the compiler; tests/test_ext.py checks
# these match.
_DSN = 32
_REQUIRETLS = 256


def attr(obj, name):
    """The attribute `name` of an smtp_client.SMTP or Client that lives here: a method
    bound to obj, or esmtp_features' value."""
    table = _CLIENT if isinstance(obj, sc.Client) else _SMTP
    f = table.get(name)
    if f is None:
        raise AttributeError(name)
    if name == "esmtp_features":
        return f(obj)
    return lambda *args, **kw: f(obj, *args, **kw)


# ----- SMTP


def send_many(s, mails, mail_options=(), rcpt_options=(), *, quit=False, **options):
    """Several mails on this connection, pipelined when the server allows it: `mails` holds
    (from_addr, to_addrs, msg) tuples; one SendResult per mail, in order. A failed mail
    never stops the others: its result carries the exception. quit=True: QUIT in the last
    flight, then close. Options as for sendmail."""
    if s._io is None:
        raise sc.SMTPServerDisconnected("not connected")
    batch = [sc.SendResult(f, t, m, mail_options, rcpt_options, options) for f, t, m in mails]
    s._mails(batch, quit)
    return batch


def host_port(host, port):
    """smtplib's connect("host:port"), with "[v6 address]" or "[v6 address]:port"."""
    if not port:
        if host.startswith("[") and "]:" in host:
            host, _, port = host[1:].partition("]:")
        elif host.count(":") == 1:
            host, _, port = host.partition(":")
        port = int(port) if port else 0
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    return host, port


def docmd(s, cmd, args=""):
    """Send a raw command line; return (code, msg)."""
    sc._check_text(args, "command arguments")
    return s._run(s.do_command(sc._check_text(cmd, "command"), args))


def noop(s):
    return docmd(s, "NOOP")


def rset(s):
    return docmd(s, "RSET")


def helo(s, name=""):
    s._run(s.do_command(b"HELO", sc._check_text(name, "HELO name") or s.local_name()))
    s.helo_resp = s.text
    return s.code, s.text


def has_extn(s, opt):
    return opt.lower() in features(s)


def auth(s, mechanism, authobject, *, initial_response_ok=True, allow_plaintext_auth=False):
    """One SASL exchange (smtplib's auth): authobject(challenge) returns the response (str
    or bytes); challenge is None for the initial response. Returns (code, msg). Not over
    plain TCP unless allow_plaintext_auth=True."""
    mechanism = sc._check_text(mechanism.upper(), "mechanism")
    if s.plain_ok != allow_plaintext_auth:
        s.plain_ok = allow_plaintext_auth
    return s._run(s.do_auth(mechanism, authobject, initial_response_ok))


def send_message(s, *args, **kwargs):
    raise SMTPNotSupportedError("send_message needs the email package; use sendmail")


# ----- Client


def client_send_many(c, mails, **options):
    """Several mails on one fresh connection; `mails` holds (to_addrs, msg) or (to_addrs,
    msg, from_addr) tuples. One SendResult per mail, in order; a mail's failure is in its
    result's `error`; errors before the first mail (connect, TLS, AUTH) are raised."""
    mails = client_batch(c, mails, options)
    c._run(mails)
    return mails


def client_batch(c, mails, options):
    """The SendResults of Client.send_many's (and AsyncClient's) tuples, all checked."""
    batch = []
    for m in mails:
        if len(m) > 2 and not isinstance(m[2], str) and isinstance(m[1], (list, tuple)):
            raise ValueError("Client.send_many takes (to_addrs, msg[, from_addr]) tuples, "
                             "not SMTP.send_many's (from_addr, to_addrs, msg)")
        batch.append(sc.SendResult(c._sender(m[2] if len(m) > 2 else None), m[0], m[1], (),
                                   (), options))
    return batch


def send_mail(c, to_addrs, subject, body, *, from_addr=None, **compose):
    """NetX Duo's nx_smtp_mail_send(recipient, priority, subject, body): compose the mail
    with smtp_message while it is sent (smtp_message.Message's keywords: priority,
    attachments, html, cc, bcc, reply_to, inline, headers, date, eightbit)."""
    import smtp_message

    msg = smtp_message.Message(c._sender(from_addr), to_addrs, subject, body, **compose)
    try:
        return c.send(msg.recipients, msg, from_addr=msg.sender)
    finally:
        msg.close()


# ----- DSN (RFC 3461) and REQUIRETLS (RFC 8689)

_NOTIFY = (b"SUCCESS", b"FAILURE", b"DELAY")


def check_options(options):
    """Check the keywords and their syntax before anything is sent: a space, "=" or
    non-ASCII byte would add ESMTP parameters of the caller's choosing."""
    for key, value in options.items():
        if key not in ("notify", "ret", "envid", "requiretls", "progress"):
            raise TypeError("unknown option %s" % key)
        if value is None or key in ("requiretls", "progress"):
            continue
        v = sc._b(sc._check_text(value, key)).upper()
        if key == "notify":
            # RFC 3461 4.1: NEVER, or a comma list of SUCCESS, FAILURE, DELAY.
            words = v.replace(b" ", b"").split(b",")
            if words != [b"NEVER"] and not all(w in _NOTIFY for w in words):
                raise ValueError("notify must be NEVER or of SUCCESS,FAILURE,DELAY")
        elif key == "ret" and v not in (b"FULL", b"HDRS"):
            raise ValueError("ret must be FULL or HDRS")  # RFC 3461 4.3
        elif key == "envid" and (len(v) > 100 or not all(32 <= c < 127 for c in v)):
            raise ValueError("envid must be printable ASCII, at most 100 characters")


def params(mail, s):
    """Add the DSN and REQUIRETLS parameters the server's EHLO allows (smtp_client.SendResult)."""
    opts = mail.options
    caps = s.caps
    notify, ret, envid = opts.get("notify"), opts.get("ret"), opts.get("envid")
    if notify or ret or envid:
        if not caps & _DSN:
            raise SMTPNotSupportedError("DSN options and no DSN at the server")
        if ret:
            mail.mopts.append(b"RET=" + sc._b(ret).upper())  # RFC 3461 4.3
        if envid:
            mail.mopts.append(b"ENVID=" + xtext(sc._b(envid)))  # RFC 3461 4.4
        if notify:
            # RFC 3461 4.1-4.2: NOTIFY per recipient, with ORCPT naming the address.
            n = b"NOTIFY=" + sc._b(notify).upper().replace(b" ", b"")
            mail.rcpt_extra = [list(mail.ropts) + [n, orcpt(sc._b(a))] for a in mail.to_addrs]
    if opts.get("requiretls"):
        # RFC 8689 4: only over TLS, and only to a server that offers it.
        if not (s._tls and caps & _REQUIRETLS):
            raise SMTPNotSupportedError("REQUIRETLS needs TLS and the server's REQUIRETLS")
        mail.mopts.append(b"REQUIRETLS")


def orcpt(addr):
    """RFC 3461 4.2's ORCPT for an address: "rfc822;" and xtext, or for a UTF-8 address
    (SMTPUTF8 is in use then) RFC 6533 3's "utf-8;" and utf-8-addr-unitext: UTF-8 as it
    is, "+", "=", "\\", controls and space as \\x{HEX}."""
    if sc._ascii(addr):
        return b"ORCPT=rfc822;" + xtext(addr)
    out = b"ORCPT=utf-8;"
    for ch in addr.decode():
        c = ord(ch)
        out += b"\\x{%X}" % c if c <= 32 or c in (43, 61, 92, 127) else ch.encode()
    return out


def xtext(data):
    # RFC 3461 4: "+" and "=" and bytes outside "!".."~" become "+HH".
    out = b""
    for c in data:
        out += bytes((c,)) if 33 <= c <= 126 and c != 43 and c != 61 else b"+%02X" % c
    return out


# ----- AUTH mechanisms beyond PLAIN and LOGIN


def authobject(mechanism, user, password):
    """The SASL response function of CRAM-MD5, XOAUTH2 or OAUTHBEARER (user, password:
    bytes; for the last two the password is the OAuth 2.0 access token)."""
    if mechanism == "CRAM-MD5":
        return lambda challenge: None if challenge is None else cram_md5(user, password, challenge)
    if mechanism == "XOAUTH2":
        # Google's and Microsoft's XOAUTH2: user=U ^A auth=Bearer T ^A ^A. An error challenge
        # (JSON) is answered empty, and the server then sends its 535.
        first, error = b"user=" + user, b""
    elif mechanism == "OAUTHBEARER":
        # RFC 7628 3.1: the GS2 header "n,a=U," (RFC 5801 4: "," and "=" in U as =2C, =3D),
        # then ^A auth=Bearer T ^A ^A. An error challenge is answered with ^A (3.2.3).
        first = b"n,a=" + user.replace(b"=", b"=3D").replace(b",", b"=2C") + b","
        error = b"\x01"
    else:
        raise SMTPNotSupportedError("unknown AUTH mechanism %s" % mechanism)
    first += b"\x01auth=Bearer " + password + b"\x01\x01"
    sent = []

    def bearer(challenge):
        if challenge is not None and sent:
            return error
        sent.append(1)
        return first

    return bearer


def cram_md5(user, password, challenge):
    # RFC 2195 2: user SP hex(HMAC-MD5(password, challenge)); RFC 2104 HMAC by hand,
    # MicroPython has no hmac module.
    import binascii
    import hashlib

    key = password
    if len(key) > 64:
        key = hashlib.md5(key).digest()
    key = key + bytes(64 - len(key))
    inner = hashlib.md5(bytes(k ^ 0x36 for k in key))
    inner.update(challenge)
    outer = hashlib.md5(bytes(k ^ 0x5C for k in key))
    outer.update(inner.digest())
    return user + b" " + binascii.hexlify(outer.digest())


# ----- smtplib's esmtp_features


def features(s):
    """{extension: parameters} of the last EHLO (smtplib's esmtp_features)."""
    out = {}
    if s.does_esmtp:
        for line in s.ehlo_resp.split(b"\n")[1:]:
            word = line.split(None, 1)
            if word:
                out[word[0].decode().lower()] = word[1].decode().strip() if len(word) > 1 else ""
    return out


# ----- the redacted protocol trace


def set_debuglevel(s, level, *, trace=None):
    """smtplib's: level 1 prints the protocol trace on stderr, redacted (AUTH arguments and
    334 answers show as [redacted], bodies as [body N bytes]); `trace`: a callable(direction,
    data) that gets those lines instead. Level 0 turns it off."""
    s.debuglevel = level
    s.tracer = Tracer(trace or _print) if level else None


def _print(direction, data):
    # smtplib's debuglevel 1 shape ("send: b'...'", "reply: b'...'"), on stderr.
    print(direction + ":", repr(data), file=sys.stderr)


class Tracer:
    """`fn(direction, data)` gets each command line sent ("send") and each piece of reply
    read ("reply"). AUTH arguments and every line answering a 334 challenge become
    "[redacted]"; a message body shows only as "[body N bytes]"."""

    def __init__(self, fn):
        self.fn = fn
        self.reset()

    def reset(self):
        self.skip = 0  # octets of a BDAT chunk still to come (RFC 3030 2)
        self.data = False  # inside a DATA body (after 354) until "." CRLF
        self.bol = True  # the body bytes so far ended a line
        self.body = 0  # body octets counted and not reported yet
        self.secret = False  # the next line answers a 334 challenge (RFC 4954 4)

    def code(self, code):
        if code == 334:
            self.secret = True
        elif code == 354:
            self.data = True
            self.bol = True

    def received(self, buf, n):
        self.fn("reply", bytes(buf[:n]))

    def sent(self, buf, off, n):
        data = bytes(buf[off : off + n])
        i = 0
        while i < n:
            if self.skip:
                k = min(self.skip, n - i)
                self.skip -= k
                self._count(k, not self.skip)
                i += k
            elif self.data:
                i = self._body(data, i, n)
            else:
                lf = data.find(b"\n", i)
                j = n if lf < 0 else lf + 1
                self._line(data[i:j])
                i = j

    def _body(self, data, i, n):
        # RFC 5321 4.5.2: the body is dot-stuffed, so "." CRLF at a line start ends it.
        if self.bol and data[i : i + 3] == b".\r\n":
            end = i
        else:
            end = data.find(b"\r\n.\r\n", i)
            end = n if end < 0 else end + 2
        if end - i >= 2:
            self.bol = data[end - 2 : end] == b"\r\n"
        self.data = end == n
        self._count(end - i, end < n)
        return end

    def _line(self, line):
        verb = line[:5].upper()
        if self.secret:
            self.secret = False
            line = b"[redacted]\r\n"
        elif verb == b"AUTH ":
            sp = line.find(b" ", 5)
            if sp > 0:
                line = line[:sp] + b" [redacted]\r\n"
        elif verb == b"BDAT ":
            self.skip = int(line[5:].split()[0])
        self.fn("send", line)

    def _count(self, k, done):
        self.body += k
        if done:
            self.fn("send", b"[body %d bytes]" % self.body)
            self.body = 0


_SMTP = {
    "send_many": send_many, "docmd": docmd, "noop": noop, "rset": rset, "helo": helo,
    "has_extn": has_extn, "esmtp_features": features, "auth": auth,
    "send_message": send_message, "set_debuglevel": set_debuglevel,
}
def client_debuglevel(c, level, *, trace=None):
    """Client.set_debuglevel: the trace of SMTP.set_debuglevel for every send."""
    set_debuglevel(c.session, level, trace=trace)


_CLIENT = {"send_many": client_send_many, "send_mail": send_mail,
           "set_debuglevel": client_debuglevel}
