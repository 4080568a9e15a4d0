# SPDX-License-Identifier: MIT
"""CircuitPython: socket_pool and ssl_context (Adafruit style), implicit TLS only.

The library runs in this CPython process over tests/cpadapter.py, which has CircuitPython's
socketpool/ssl semantics: short reads, short sends, OSError(ETIMEDOUT/EAGAIN) instead of
socket.timeout, no select, and a TLS socket that must be wrapped before it connects. Real
servers: aiosmtpd (implicit TLS with AUTH, and plain) and the scripted server for faults.
"""

import sys
import time

import pytest

import cpadapter
from harness import LIB, SHIM
from scripted import ScriptedServer

for p in (str(SHIM), str(LIB)):  # the library as a board has it; `micropython` from the shim
    if p not in sys.path:
        sys.path.insert(0, p)

import smtp_client as sc  # noqa: E402
import smtp_cpython  # noqa: E402

USERS = {"device": "s3cret"}
FROM = "device@example.com"
RCPTS = ["a@example.com", "b@example.com"]
# Dots at line starts (stuffing), a bare LF (normalised), and enough bytes that a 1..5 byte
# send() needs hundreds of calls: every partial write must be continued at the right byte.
BODY = b"Subject: cp\r\n\r\n" + b"".join(
    b".line %d with a leading dot\r\n" % i for i in range(60)) + b"last\nline\r\n"
EXPECTED = BODY.replace(b"last\nline", b"last\r\nline")


def _ctx(certs):
    # What a CircuitPython user writes, via the library's helper: DER from certs/ -> PEM.
    return smtp_cpython.cp_context(cpadapter.ssl, (certs["ca.der"].read_bytes(),), True)


def _short_io_seen(pool):
    recvs = [c for c in pool.calls if c[0] == "recv_into"]
    sends = [c for c in pool.calls if c[0] == "send"]
    assert any(got < asked for _, asked, got in recvs), "no short read happened"
    assert any(done < asked for _, asked, done in sends), "no short send happened"


def test_smtp_ssl_over_socket_pool(mailserver, certs):
    srv = mailserver(tls="implicit", auth=USERS)
    pool = cpadapter.SocketPool(max_recv=7, max_send=5)
    with sc.SMTP_SSL(srv.host, srv.port, socket_pool=pool, ssl_context=_ctx(certs),
                     timeout=10) as s:
        s.login("device", "s3cret")
        assert s.sendmail(FROM, RCPTS, BODY) == {}
        assert s.noop()[0] == 250
    (mail,) = srv.messages
    assert (mail.mail_from, mail.rcpt_tos, mail.tls, mail.login) == (FROM, RCPTS, True, "device")
    assert mail.content == EXPECTED
    _short_io_seen(pool)
    # TCP_NODELAY went to the socket; nothing used sendall, select or makefile (the adapter
    # has none of them, so any use would have raised).
    assert (6, 1, 1) in pool.sockets[0].options


def test_client_implicit_tls_over_socket_pool(mailserver, certs):
    srv = mailserver(tls="implicit", auth=USERS)
    pool = cpadapter.SocketPool(max_recv=3, max_send=2, seed=7)
    client = sc.Client(srv.host, srv.port, tls="implicit", username="device",
                       password="s3cret", from_addr=FROM, socket_pool=pool,
                       ssl_context=_ctx(certs), timeout=10)
    for _ in range(2):  # the same client twice: a fresh pool socket per mail
        assert client.send(RCPTS, BODY).ok
    assert [m.content for m in srv.messages] == [EXPECTED, EXPECTED]
    assert len(pool.sockets) == 2 and all(s.closed for s in pool.sockets)


def test_plain_over_socket_pool(mailserver):
    srv = mailserver(tls="none")
    pool = cpadapter.SocketPool(max_recv=1, max_send=1, seed=3)  # one byte at a time
    r = sc.Client(srv.host, srv.port, tls="none", from_addr=FROM, socket_pool=pool,
                  timeout=10).send(RCPTS, BODY)
    assert r.ok and srv.messages[0].content == EXPECTED


def test_starttls_refused_with_a_clear_message(mailserver):
    # CircuitPython cannot wrap a connected socket: refuse before STARTTLS is sent, and the
    # session stays usable.
    srv = mailserver(tls="starttls", auth=USERS)
    pool = cpadapter.SocketPool()
    with sc.SMTP(srv.host, srv.port, socket_pool=pool, timeout=10) as s:
        s.ehlo()
        with pytest.raises(sc.SMTPNotSupportedError, match="cannot wrap a connected socket"):
            s.starttls()
        assert s.noop()[0] == 250
    assert [tls for _, tls in srv.ehlo_log] == [False]  # no STARTTLS, no second EHLO
    with pytest.raises(ValueError, match="tls='implicit'"):
        sc.Client(srv.host, username="device", password="s3cret", socket_pool=pool)


def test_untrusted_and_wrong_name_are_tls_errors(mailserver, certs):
    pool = cpadapter.SocketPool()
    srv = mailserver(tls="implicit", cert="untrusted")
    with pytest.raises(sc.SMTPTLSError, match="Certificate verification failed"):
        sc.SMTP_SSL(srv.host, srv.port, socket_pool=pool, ssl_context=_ctx(certs), timeout=10)
    srv = mailserver(tls="implicit", cert="wrongname")
    with pytest.raises(sc.SMTPTLSError):
        sc.SMTP_SSL(srv.host, srv.port, socket_pool=pool, ssl_context=_ctx(certs), timeout=10)
    # The firmware's bundle (here: the system's roots) does not know the test CA either.
    with pytest.raises(sc.SMTPTLSError):
        sc.SMTP_SSL(srv.host, srv.port, socket_pool=pool,
                    ssl_context=cpadapter.ssl.create_default_context(), timeout=10)
    assert all(s.closed for s in pool.sockets)


def test_connection_errors_pass_through():
    # A TCP error is not a TLS error, even for SMTP_SSL: it keeps its errno.
    from harness import free_port

    with pytest.raises(OSError) as e:
        sc.SMTP_SSL("127.0.0.1", free_port(), socket_pool=cpadapter.SocketPool(),
                    ssl_context=cpadapter.ssl.create_default_context(), timeout=5)
    assert not isinstance(e.value, sc.SMTPException) and e.value.errno > 0


def test_timeout_is_bounded():
    # The server greets and then never answers EHLO: ETIMEDOUT from recv_into becomes
    # SMTPTimeoutError at the deadline, not a hang and not a generic disconnect.
    with ScriptedServer([("send", b"220 hi\r\n"), ("expect", b"EHLO"), ("sleep", 3)]) as srv:
        s = sc.SMTP("127.0.0.1", srv.port, socket_pool=cpadapter.SocketPool(), timeout=0.5)
        t0 = time.monotonic()
        with pytest.raises(sc.SMTPTimeoutError):
            s.ehlo()
        assert time.monotonic() - t0 < 2


def test_unsolicited_bytes_detected_without_select():
    # A byte that arrives while no reply is expected is seen by the zero-timeout read that
    # stands in for select, before the next command goes out.
    with ScriptedServer([
        ("send", b"220 hi\r\n"), ("expect", b"EHLO"), ("send", b"250 ok\r\n"),
        ("send", b"250 surprise\r\n"), ("sleep", 1),
    ]) as srv:
        s = sc.SMTP("127.0.0.1", srv.port, socket_pool=cpadapter.SocketPool(), timeout=5)
        s.ehlo()
        # Wait (bounded) until the surprise is readable: ready() reads one byte ahead and
        # keeps it, which is exactly what the next command's check looks at.
        deadline = time.monotonic() + 5
        while not s._io.ready():
            assert time.monotonic() < deadline, "the unsolicited reply never arrived"
            time.sleep(0.001)
        with pytest.raises(sc.SMTPProtocolError, match="unsolicited"):
            s.noop()


def test_server_close_seen_by_ready():
    # EOF while idle: ENOTCONN from the zero-timeout read; the next command reports a
    # disconnect instead of writing into a dead socket.
    with ScriptedServer([
        ("send", b"220 hi\r\n"), ("expect", b"EHLO"), ("send", b"250 ok\r\n"), ("close",),
    ]) as srv:
        s = sc.SMTP("127.0.0.1", srv.port, socket_pool=cpadapter.SocketPool(), timeout=5)
        s.ehlo()
        srv.join(5)
        with pytest.raises(sc.SMTPServerDisconnected):
            s.noop()


def test_pem_conversion_is_what_circuitpython_reads(certs):
    pem = smtp_cpython.pem(certs["ca.der"].read_bytes())
    assert pem.startswith("-----BEGIN CERTIFICATE-----\n")
    assert pem.endswith("\n-----END CERTIFICATE-----\n")
    assert all(len(line) <= 64 for line in pem.splitlines())
    assert pem.strip() == certs["ca.pem"].read_text().strip()
    # No verification asked: a bare SSLContext, which verifies nothing on CircuitPython.
    ctx = smtp_cpython.cp_context(cpadapter.ssl, (), False)
    assert ctx._cadata is None and not ctx._bundle
