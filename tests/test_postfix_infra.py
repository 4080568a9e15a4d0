# SPDX-License-Identifier: MIT
"""The private Postfix (tools/postfix.py) itself, checked with CPython's smtplib and raw sockets.

Known-good clients only: if these pass, a failing library test against Postfix is the library's
fault, not the harness's.
"""

import base64
import os
import smtplib
import socket
import ssl
import uuid

import pytest

from postfix import (DOMAIN, PASSWORD, USER, Postfix, available, delivered_form,
                     strip_prepended)

EXTENSIONS = ("pipelining", "chunking", "size", "8bitmime", "smtputf8", "dsn",
              "enhancedstatuscodes")


def _message(subject="postfix infra"):
    """A message that exercises what Postfix might change: a unique first header (the marker),
    a folded header, 8-bit UTF-8, lines starting with dots, a 3000-byte line (over Postfix's
    2048-byte record size), an empty line in the body."""
    marker = f"X-Test-Id: {uuid.uuid4()}".encode()
    msg = (
        marker + b"\r\n"
        b"From: Device <" + USER.encode() + b">\r\n"
        b"To: <" + USER.encode() + b">\r\n"
        b"Subject: " + subject.encode() + b"\r\n"
        b"X-Folded: first part\r\n\tsecond part\r\n"
        b"Content-Type: text/plain; charset=utf-8\r\n"
        b"Content-Transfer-Encoding: 8bit\r\n"
        b"\r\n"
        b".leading dot\r\n"
        b"..two dots\r\n"
        b".\r\n"
        b"\r\n"
        + "gr\u00fc\u00dfe, \u65e5\u672c\r\n".encode()
        + b"x" * 3000 + b"\r\n"
        b"last line\r\n"
    )
    return marker, msg


def _assert_delivered_as_sent(raw, marker, sent):
    # Both ways of removing Postfix's prepended headers agree, and leave exactly what was sent
    # (in Postfix's LF form).
    assert strip_prepended(raw, marker=marker) == delivered_form(sent)
    assert strip_prepended(raw) == delivered_form(sent)
    head = raw[: raw.find(marker)]
    assert head.startswith(b"Return-Path: <" + USER.encode() + b">\n")
    assert b"\nDelivered-To: " + USER.encode() + b"\n" in head
    assert b"(Postfix)" in head


def _tls_context(pf):
    return ssl.create_default_context(cafile=str(pf.certs["ca.pem"]))


def test_ehlo_advertises_postfix_extensions(postfix):
    with smtplib.SMTP(postfix.host, postfix.port, timeout=10) as c:
        code, _ = c.ehlo("client.example.test")
        assert code == 250
        for ext in EXTENSIONS:
            assert c.has_extn(ext), f"{ext} not in {c.esmtp_features}"
        assert c.esmtp_features["size"] == str(postfix.message_size_limit)
        # The plain instance offers neither TLS nor AUTH.
        assert not c.has_extn("starttls") and not c.has_extn("auth")


def test_plain_mail_is_delivered_byte_for_byte(postfix):
    postfix.clear()
    marker, msg = _message()
    with smtplib.SMTP(postfix.host, postfix.port, timeout=10) as c:
        refused = c.sendmail(USER, [USER], msg, mail_options=["BODY=8BITMIME"])
    assert refused == {}
    (raw,) = postfix.wait_delivered(1)
    _assert_delivered_as_sent(raw, marker, msg)
    # ESMTP without TLS or AUTH.
    assert b" with ESMTP id " in raw[: raw.find(marker)]


def test_two_recipients_two_mailboxes(postfix):
    postfix.clear()
    other = "other@" + DOMAIN
    marker, msg = _message("two")
    with smtplib.SMTP(postfix.host, postfix.port, timeout=10) as c:
        assert c.sendmail(USER, [USER, other], msg) == {}
    for box in (USER, other):
        (raw,) = postfix.wait_delivered(1, mailbox=box)
        assert strip_prepended(raw, marker=marker) == delivered_form(msg)
        assert b"Delivered-To: " + box.encode() + b"\n" in raw


def test_unknown_user_is_refused_at_rcpt(postfix):
    with smtplib.SMTP(postfix.host, postfix.port, timeout=10) as c:
        c.ehlo()
        assert c.mail(USER)[0] == 250
        code, text = c.rcpt("nobody@" + DOMAIN)
        assert code == 550 and text.startswith(b"5.1.1 "), (code, text)
        # Relaying anywhere else is refused too, so nothing can leave the machine.
        code, text = c.rcpt("someone@elsewhere.example")
        assert code == 554 and text.startswith(b"5.7.1 "), (code, text)
        assert c.rcpt(USER)[0] == 250


def test_smtplib_sendmail_reports_unknown_user(postfix):
    with smtplib.SMTP(postfix.host, postfix.port, timeout=10) as c:
        with pytest.raises(smtplib.SMTPRecipientsRefused) as e:
            c.sendmail(USER, ["nobody@" + DOMAIN], b"Subject: x\r\n\r\nx\r\n")
    code, text = e.value.recipients["nobody@" + DOMAIN]
    assert code == 550 and text.startswith(b"5.1.1 ")


def _bdat_session(pf, frames, expect_replies):
    """Send `frames` (bytes) in ONE write and read until `expect_replies` final replies."""
    with socket.create_connection((pf.host, pf.port), timeout=10) as s:
        f = s.makefile("rb")
        assert f.readline().startswith(b"220 ")
        s.sendall(b"EHLO client.example.test\r\n")
        while not f.readline().startswith(b"250 "):
            pass
        s.sendall(frames)
        replies = [f.readline() for _ in range(expect_replies)]
        s.sendall(b"QUIT\r\n")
        f.readline()
        f.close()
    return replies


def test_pipelined_bdat_is_delivered_byte_for_byte(postfix):
    """RFC 3030 CHUNKING, with MAIL/RCPT/BDAT/BDAT LAST for two mails pipelined in one write
    (RFC 2920): what the library's fast path will send."""
    postfix.clear()
    m1, msg1 = _message("bdat one")
    m2, msg2 = _message("bdat two")
    # Chunk boundaries inside a CRLF and inside a line: Postfix must join them.
    cut = msg1.index(b"\r\n", 100) + 1
    frames = b"MAIL FROM:<%s>\r\nRCPT TO:<%s>\r\n" % (USER.encode(), USER.encode())
    frames += b"BDAT %d\r\n" % cut + msg1[:cut]
    frames += b"BDAT %d LAST\r\n" % (len(msg1) - cut) + msg1[cut:]
    frames += b"MAIL FROM:<%s>\r\nRCPT TO:<%s>\r\n" % (USER.encode(), USER.encode())
    frames += b"BDAT %d LAST\r\n" % len(msg2) + msg2
    replies = _bdat_session(postfix, frames, 7)
    assert [r[:4] for r in replies] == [b"250 "] * 7, replies
    raws = postfix.wait_delivered(2)
    got = {strip_prepended(r, marker=m1 if m1 in r else m2) for r in raws}
    assert got == {delivered_form(msg1), delivered_form(msg2)}


def test_starttls_auth_mail_is_delivered_byte_for_byte(postfix_tls):
    pf = postfix_tls
    pf.clear()
    marker, msg = _message("tls")
    with smtplib.SMTP(pf.host, pf.port, timeout=10) as c:
        c.ehlo()
        assert c.has_extn("starttls")
        # smtpd_tls_auth_only: no AUTH before TLS.
        assert not c.has_extn("auth")
        c.starttls(context=_tls_context(pf))
        c.ehlo()
        assert set(c.esmtp_features["auth"].split()) == {"PLAIN", "LOGIN", "CRAM-MD5"}
        for ext in EXTENSIONS:
            assert c.has_extn(ext)
        c.login(USER, PASSWORD)
        assert c.sendmail(USER, [USER], msg) == {}
    (raw,) = pf.wait_delivered(1)
    _assert_delivered_as_sent(raw, marker, msg)
    assert b" with ESMTPSA id " in raw[: raw.find(marker)]  # S: TLS, A: authenticated


@pytest.mark.parametrize("mechanism", ["PLAIN", "LOGIN", "CRAM-MD5"])
@pytest.mark.parametrize("login", [USER, USER.split("@")[0]])
def test_auth_mechanisms(postfix_tls, mechanism, login):
    """Every advertised mechanism works, with the full address or the bare name as login (the
    bare name gets the realm example.test from smtpd_sasl_local_domain)."""
    with smtplib.SMTP(postfix_tls.host, postfix_tls.port, timeout=10) as c:
        c.starttls(context=_tls_context(postfix_tls))
        c.ehlo()
        c.user, c.password = login, PASSWORD
        method = {"PLAIN": c.auth_plain, "LOGIN": c.auth_login, "CRAM-MD5": c.auth_cram_md5}
        code, _ = c.auth(mechanism, method[mechanism], initial_response_ok=True)
        assert code == 235


def test_wrong_password_is_535(postfix_tls):
    with smtplib.SMTP(postfix_tls.host, postfix_tls.port, timeout=10) as c:
        c.starttls(context=_tls_context(postfix_tls))
        with pytest.raises(smtplib.SMTPAuthenticationError) as e:
            c.login(USER, "wrong")
    assert e.value.smtp_code == 535 and e.value.smtp_error.startswith(b"5.7.8 ")


def test_auth_before_starttls_is_refused(postfix_tls):
    pf = postfix_tls
    token = base64.b64encode(f"\0{USER}\0{PASSWORD}".encode())
    with smtplib.SMTP(pf.host, pf.port, timeout=10) as c:
        c.ehlo()
        code, text = c.docmd("AUTH", "PLAIN " + token.decode())
        assert code == 503, (code, text)  # "5.5.1 Error: authentication not enabled"


def test_options_ipv6_size_limit_and_teardown():
    """A second, short-lived instance: [::1], a small message_size_limit, and a stop() that
    leaves no process and no folder behind."""
    why = available()
    if why:
        if os.environ.get("CI") == "true":
            pytest.fail(why)
        pytest.skip(why)
    with Postfix(ipv6=True, message_size_limit=2000) as pf:
        base, pid = pf.base, pf._master_pid()
        with smtplib.SMTP(pf.host6, pf.port, timeout=10) as c:
            c.ehlo()
            assert c.esmtp_features["size"] == "2000"
            # SIZE= over the limit is refused at MAIL (RFC 1870), with 552 5.3.4.
            code, text = c.mail(USER, ["SIZE=2001"])
            assert code == 552 and text.startswith(b"5.3.4 "), (code, text)
            c.rset()
            # Without SIZE= (smtplib's sendmail would add it), a body over the limit is
            # refused after the data.
            assert c.mail(USER)[0] == 250 and c.rcpt(USER)[0] == 250
            code, text = c.data(b"Subject: big\r\n\r\n" + (b"x" * 76 + b"\r\n") * 40)
            assert code == 552 and text.startswith(b"5.3.4 "), (code, text)
            marker, msg = b"Subject: small", b"Subject: small\r\n\r\nhi\r\n"
            assert c.sendmail(USER, [USER], msg) == {}
        (raw,) = pf.wait_delivered(1)
        assert strip_prepended(raw, marker=marker) == delivered_form(msg)
        assert strip_prepended(raw) == delivered_form(msg)
    assert not base.exists()
    assert pid is not None
    try:
        state = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()[0]
    except OSError:
        state = "gone"
    assert state in ("gone", "Z"), f"master {pid} still running after stop()"


def test_delivered_form_and_strip_prepended_unit():
    sent = b"A: 1\r\n\r\nbody\r\nno final newline"
    assert delivered_form(sent) == b"A: 1\n\nbody\nno final newline\n"
    raw = (b"Return-Path: <a@b>\nX-Original-To: x@example.test\nDelivered-To: x@example.test\n"
           b"Received: from [127.0.0.1] (unknown [127.0.0.1])\n\tby mail.example.test (Postfix)"
           b" with ESMTP id 1\n\tfor <x@example.test>; date\nA: 1\n\nbody\n")
    assert strip_prepended(raw) == b"A: 1\n\nbody\n"
    assert strip_prepended(raw, marker=b"A: 1") == b"A: 1\n\nbody\n"
    with pytest.raises(ValueError):
        strip_prepended(b"A: 1\n\nbody\n")
    with pytest.raises(ValueError):
        strip_prepended(raw, marker=b"B:")
