"""Issue 12: the traps a new user falls into in the first ten minutes, each one closed.

Port 465 with the default `tls` (implicit TLS, as RFC 8314 3.3 has it), errors that name the
keyword that fixes them, and the Client trace. Every snippet runs on the unix port and CPython.
"""


from harness import results


def test_port_465_means_implicit_tls(runtime):
    # The Gmail habit: Client(host, 465) without tls=. Before, it spoke STARTTLS to a port
    # that waits for a ClientHello: 30 s, then a bare timeout, retried forever by an outbox.
    (default, starttls, submission) = results(runtime, """
        c = sc.Client("smtp.example.com", 465, from_addr="a@example.com")
        report(lambda: (c.tls, c.port, c.session._implicit))
        report(lambda: sc.Client("smtp.example.com", 465, tls="starttls"))
        c = sc.Client("smtp.example.com", from_addr="a@example.com")
        report(lambda: (c.tls, c.port, c.session._implicit))
    """)
    assert default == ("implicit", 465, True)
    # Explicit STARTTLS on 465 is a configuration error, raised before any connection, and
    # it names the keyword that fixes it.
    assert starttls[0] == "ValueError" and "tls='implicit'" in starttls[1], starttls
    assert submission == ("starttls", 587, False)


def test_errors_point_to_the_fix(runtime, mailserver):
    srv = mailserver(tls="none", auth={"device": "s3cret"}, auth_require_tls=False)
    (creds, path, order) = results(runtime, """
        c = sc.Client({host!r}, {port}, tls="none", username="device", password="s3cret",
                      from_addr="a@example.com", timeout=10)
        report(lambda: c.send("b@example.com", b"x"))
        report(lambda: sc.create_context("certs/ca.der"))
        report(lambda: c.send_many([("a@example.com", ["b@example.com"], b"x")]))
    """, host=srv.host, port=srv.port)
    # A Client has no starttls() to call: the message names its own keywords.
    assert creds[0] == "SMTPNotSupportedError", creds
    assert "tls=" in creds[1] and "allow_plaintext_auth" in creds[1], creds
    assert "starttls()" not in creds[1] and "SMTP_SSL" not in creds[1], creds
    assert path[0] == "TypeError" and "path" in path[1], path
    # SMTP.send_many's (from, to, msg) order given to Client.send_many: said so, instead of
    # "CR, LF or NUL in from_addr" about the body.
    assert order[0] == "ValueError" and "(to_addrs, msg" in order[1], order
    assert srv.messages == [] and srv.mail_log == []


def test_client_trace_is_redacted(runtime, mailserver):
    srv = mailserver(tls="none", auth={"device": "s3cret"}, auth_require_tls=False)
    (sent, lines) = results(runtime, """
        lines = []
        c = sc.Client({host!r}, {port}, tls="none", username="device", password="s3cret",
                      from_addr="a@example.com", allow_plaintext_auth=True, timeout=10)
        c.set_debuglevel(1, trace=lambda kind, data: lines.append((kind, bytes(data))))
        report(lambda: c.send("b@example.com", b"Subject: t\\r\\n\\r\\nsecret body").sent)
        report(lambda: lines)
    """, host=srv.host, port=srv.port)
    assert sent is True and len(srv.messages) == 1
    blob = b"".join(d for _, d in lines)
    assert b"MAIL FROM:<a@example.com>" in blob and b"QUIT" in blob
    assert b"s3cret" not in blob and b"c2VjcmV0" not in blob and b"secret body" not in blob
    assert b"[redacted]" in blob


def test_starttls_to_an_implicit_tls_port_names_the_fix(runtime, mailserver):
    # A port that waits for a ClientHello (implicit TLS, RFC 8314 3.3) sends no greeting:
    # the timeout says what is likely wrong instead of a bare "timed out".
    srv = mailserver(tls="implicit")
    (err,) = results(runtime, """
        c = sc.Client({host!r}, {port}, tls="starttls", from_addr="a@example.com", timeout=1)
        report(lambda: c.send("b@example.com", b"x"))
    """, host=srv.host, port=srv.port)
    assert err[0] == "SMTPTimeoutError" and "tls='implicit'" in err[1], err
