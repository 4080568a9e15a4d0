# SPDX-License-Identifier: MIT
"""Self-test of the scripted fake server (tests/scripted.py), driven by plain CPython sockets."""

import socket
import ssl
import time

import pytest

from scripted import ScriptedServer


def _connect(srv, host="127.0.0.1"):
    s = socket.create_connection((host, srv.port), timeout=5)
    s.settimeout(5)
    return s


def _recv_exactly(s, n):
    out = b""
    while len(out) < n:
        chunk = s.recv(n - len(out))
        assert chunk, f"EOF after {out!r}"
        out += chunk
    return out


def test_conversation_split_and_data():
    greeting = b"220 hi\r\n"
    ehlo_reply = b"250-x\r\n250 PIPELINING\r\n"
    with ScriptedServer([
        ("send", greeting),
        ("expect", b"EHLO"),
        ("send", ehlo_reply, {"split": 1}),
        ("expect", b"mail from:"),  # case-insensitive prefix
        ("expect_data",),
        ("recv", 4),
        ("send", b"221 bye\r\n"),
        ("wait_close",),
    ]) as srv:
        s = _connect(srv)
        assert _recv_exactly(s, len(greeting)) == greeting
        s.sendall(b"EHLO me\r\n")
        # One byte per segment: it takes many reads to get the whole reply.
        got, reads = b"", 0
        while len(got) < len(ehlo_reply):
            got += s.recv(100)
            reads += 1
        assert got == ehlo_reply and reads > 1
        # Pipelined: command, body and 4 more bytes arrive in one write.
        s.sendall(b"MAIL FROM:<a@b>\r\nhello\r\n..dot\r\n.\r\nQUIT")
        assert _recv_exactly(s, 9) == b"221 bye\r\n"
        s.close()
        assert srv.join(5)
    srv.check()
    assert srv.lines == [[b"EHLO me", b"MAIL FROM:<a@b>"]]
    assert srv.data == [[b"hello\r\n..dot\r\n.\r\n", b"QUIT"]]
    assert bytes(srv.received[0]) == b"EHLO me\r\nMAIL FROM:<a@b>\r\nhello\r\n..dot\r\n.\r\nQUIT"
    assert srv.client_closed == [True]


def test_expect_mismatch_is_recorded_not_raised():
    with ScriptedServer([("expect", b"EHLO"), ("send", b"never\r\n")]) as srv:
        s = _connect(srv)
        s.sendall(b"HELO me\r\n")
        assert s.recv(100) == b""  # the failed step ended the conversation
        s.close()
        assert srv.join(5)
    assert srv.lines == [[b"HELO me"]]
    with pytest.raises(AssertionError, match="expected b'EHLO'"):
        srv.check()


def test_bare_lf_is_not_a_line():
    # expect wants CRLF: a client sending only LF times out (bounded), and that is recorded.
    with ScriptedServer([("expect", b"EHLO")], timeout=0.5) as srv:
        s = _connect(srv)
        s.sendall(b"EHLO me\n")
        assert srv.join(5)
        s.close()
    assert "timeout waiting for CRLF-terminated line" in srv.errors[0]


def test_close_and_client_not_closed():
    with ScriptedServer([("send", b"421 bye\r\n"), ("close",)]) as srv:
        s = _connect(srv)
        assert _recv_exactly(s, 9) == b"421 bye\r\n"
        assert s.recv(10) == b""  # server closed
        assert srv.join(5)
        s.close()
    srv.check()
    assert srv.client_closed == [False]


def test_wait_close_bounded_when_client_stays():
    with ScriptedServer([("wait_close",)], timeout=0.3) as srv:
        s = _connect(srv)
        t = time.monotonic()
        assert srv.join(5)
        assert time.monotonic() - t < 3
        s.close()
    srv.check()
    assert srv.client_closed == [False]


def test_reset():
    with ScriptedServer([("reset",)]) as srv:
        try:
            s = _connect(srv)
        except ConnectionResetError:
            s = None  # on a loaded machine the RST can come back before connect() returns
        assert srv.join(5)
        if s is not None:
            with pytest.raises(ConnectionResetError):
                s.recv(10)
            s.close()
    srv.check()


def test_several_connections_own_scripts():
    with ScriptedServer([[("send", b"one\r\n")], [("send", b"two\r\n")]]) as srv:
        got = []
        for _ in range(2):
            s = _connect(srv)
            got.append(_recv_exactly(s, 5))
            s.close()
        assert srv.join(5)
    srv.check()
    assert got == [b"one\r\n", b"two\r\n"]


def test_missing_connection_is_an_error():
    with ScriptedServer([("send", b"x\r\n")], accept=2) as srv:
        s = _connect(srv)
        _recv_exactly(s, 3)
        s.close()
    with pytest.raises(AssertionError, match="conn 1: the client never connected"):
        srv.check()


def test_ipv6():
    try:
        srv = ScriptedServer([("send", b"220 v6\r\n")], host="::1")
    except OSError:
        pytest.skip("no IPv6 loopback")
    with srv:
        s = _connect(srv, "::1")
        assert _recv_exactly(s, 8) == b"220 v6\r\n"
        s.close()
    srv.check()


def test_starttls(certs):
    server_ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server_ctx.load_cert_chain(certs["server.pem"], certs["server.key"])
    client_ctx = ssl.create_default_context(cafile=str(certs["ca.pem"]))
    with ScriptedServer([
        ("expect", b"STARTTLS"),
        ("send", b"220 go\r\n"),
        ("starttls", server_ctx),
        ("expect", b"EHLO"),
        ("send", b"250 ok\r\n", {"split": 3}),
        ("wait_close",),
    ]) as srv:
        s = _connect(srv)
        s.sendall(b"STARTTLS\r\n")
        assert _recv_exactly(s, 8) == b"220 go\r\n"
        t = client_ctx.wrap_socket(s, server_hostname="localhost")
        t.sendall(b"EHLO me\r\n")
        assert _recv_exactly(t, 8) == b"250 ok\r\n"
        t.close()
        assert srv.join(5)
    srv.check()
    assert srv.lines == [[b"STARTTLS", b"EHLO me"]]
    assert srv.client_closed == [True]


def test_bytes_before_handshake_are_an_error(certs):
    server_ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server_ctx.load_cert_chain(certs["server.pem"], certs["server.key"])
    with ScriptedServer([("expect", b"STARTTLS"), ("starttls", server_ctx)]) as srv:
        s = _connect(srv)
        s.sendall(b"STARTTLS\r\nEHLO early\r\n")  # RFC 3207: must wait for the 220
        assert srv.join(5)
        s.close()
    assert "before the TLS handshake" in srv.errors[0]


def _until(cond, timeout=5):
    """Poll a condition (bounded): a synchronisation point, not a sleep."""
    deadline = time.monotonic() + timeout
    while not cond():
        assert time.monotonic() < deadline, "condition never became true"
        time.sleep(0.001)


def test_expect_group_one_read_and_joined():
    script = [("expect_data",), ("expect_group", [b"MAIL", b"RCPT"], {"joined": True}),
              ("expect_group", [b"DATA"]), ("send", b"354 go\r\n")]
    with ScriptedServer(script) as srv:
        s = _connect(srv)
        s.sendall(b"x\r\n.\r\nMAIL FROM:<a@b>\r\nRCPT TO:<c@d>\r\n")
        _until(lambda: len(srv.reads[0]) == 1)
        s.sendall(b"DATA\r\n")  # a later read starting the group: fine without "joined"
        assert _recv_exactly(s, 8) == b"354 go\r\n"
        s.close()
        assert srv.join(5)
    srv.check()
    assert srv.lines == [[b"MAIL FROM:<a@b>", b"RCPT TO:<c@d>", b"DATA"]]
    assert srv.reads == [[b"x\r\n.\r\nMAIL FROM:<a@b>\r\nRCPT TO:<c@d>\r\n", b"DATA\r\n"]]


@pytest.mark.parametrize("joined,first,cut", [
    (False, b"MAIL FROM:<a@b>\r\nRC", 19),  # the second read ends inside the group: split
    (True, b"x\r\n.\r\n", 0),  # the group starts a read of its own: not joined to the data
])
def test_expect_group_split_is_an_error(joined, first, cut):
    rest = b"x\r\n.\r\nMAIL FROM:<a@b>\r\nRCPT TO:<c@d>\r\n"[len(first):] if joined else \
        b"PT TO:<c@d>\r\n"
    script = ([("expect_data",)] if joined else []) + \
        [("expect_group", [b"MAIL", b"RCPT"], {"joined": joined})]
    with ScriptedServer(script) as srv:
        s = _connect(srv)
        s.sendall(first)
        _until(lambda: len(srv.reads[0]) == 1)
        s.sendall(rest)
        assert srv.join(5)
        s.close()
    assert len(srv.errors) == 1 and f"came in several reads (cut at [{cut}" in srv.errors[0], \
        srv.errors


def test_expect_alone():
    script = [("expect", b"MAIL", {"alone": True}), ("send", b"250 ok\r\n"),
              ("expect", b"RCPT", {"alone": True})]
    with ScriptedServer(script) as srv:
        s = _connect(srv)
        s.sendall(b"MAIL FROM:<a@b>\r\n")
        assert _recv_exactly(s, 8) == b"250 ok\r\n"
        s.sendall(b"RCPT TO:<c@d>\r\nDATA\r\n")  # pipelined: RCPT is not alone
        assert srv.join(5)
        s.close()
    assert len(srv.errors) == 1 and b"came with it" in srv.errors[0].encode(), srv.errors
    assert srv.lines == [[b"MAIL FROM:<a@b>", b"RCPT TO:<c@d>"]]


def test_expect_bdat():
    script = [("expect_bdat",), ("expect_bdat", {"until_last": True, "reply": b"250 c\r\n"}),
              ("send", b"250 last\r\n"), ("expect_bdat",), ("expect_bdat",)]
    with ScriptedServer(script) as srv:
        s = _connect(srv)
        s.sendall(b"BDAT 3\r\n.\r\nBDAT 2\r\nab")
        assert _recv_exactly(s, 7) == b"250 c\r\n"
        s.sendall(b"BDAT 0 LAST\r\n")
        assert _recv_exactly(s, 10) == b"250 last\r\n"
        s.sendall(b"BDAT 2 LAST\r\nx\r\nBDAT 1\r\n")  # a wrong count: the rest is no BDAT
        assert srv.join(5)
        s.close()
    assert srv.data == [[b".\r\n", b"ab", b"", b"x\r"]]
    assert len(srv.errors) == 1 and "expected BDAT <n> [LAST], got b'\\nBDAT 1'" in \
        srv.errors[0], srv.errors
