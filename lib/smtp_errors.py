# SPDX-License-Identifier: MIT
"""smtp_errors: the text of smtp_client's own error messages. smtp_client imports it while it
makes a message and lets it go again (unless the application imported it too): held from
import on, each text would cost RAM on every board that never sees it (a str object: ~50
bytes plus its text; all of them ~4 KB). smtp_client names each by its index here (`_E_...`
constants); tests/test_packaging.py checks that the two agree."""

TEXT = (
    "bufsize must be at least 512",  # 0 _E_BUFSIZE
    "pool in use by another session",  # 1 _E_POOL
    "reply line longer than the buffer",  # 2 _E_LONG_LINE
    "connection closed by server",  # 3 _E_CLOSED
    "malformed reply",  # 4 _E_MALFORMED
    "multi-line reply changed its code",  # 5 _E_CODE_CHANGED
    "reply longer than 64 lines",  # 6 _E_LONG_REPLY
    "data after 220 to STARTTLS (injection)",  # 7 _E_INJECTION
    "unsolicited reply",  # 8 _E_UNSOLICITED
    "command longer than the buffer",  # 9 _E_LONG_COMMAND
    "EHLO reply is not ASCII",  # 10 _E_EHLO_ASCII
    "STARTTLS extension not supported by server.",  # 11 _E_NO_STARTTLS
    "TLS is already active",  # 12 _E_TLS_ACTIVE
    "credentials need TLS first (a Client: tls='starttls' or 'implicit'); "
    "allow_plaintext_auth=True sends them readable",  # 13 _E_PLAIN_AUTH
    "334 challenge is not base64",  # 14 _E_CHALLENGE
    "SMTP AUTH extension not supported by server.",  # 15 _E_NO_AUTH
    "No suitable authentication method found.",  # 16 _E_NO_MECHANISM
    "at most 8191 mails per batch",  # 17 _E_BATCH
    "message chunks must be bytes",  # 18 _E_CHUNK_TYPE
    "server does not offer STARTTLS (tls='starttls')",  # 19 _E_NOT_OFFERED
    "progress must be callable(sent_bytes, total)",  # 20 _E_PROGRESS
    "address too long for a command line",  # 21 _E_LONG_ADDR
    "non-ASCII address: server has no SMTPUTF8",  # 22 _E_SMTPUTF8
    "8-bit message: server has no 8BITMIME",  # 23 _E_8BIT
    "message of %d bytes exceeds the server's SIZE %d",  # 24 _E_SIZE
    "%s must be str or bytes",  # 25 _E_TYPE
    "CR, LF or NUL in %s",  # 26 _E_CRLF
    "<, >, space or tab in %s",  # 27 _E_BRACKETS
    "empty %s",  # 28 _E_EMPTY
    "no recipients",  # 29 _E_NO_RCPT
    "a str message must be ASCII: give bytes",  # 30 _E_STR_ASCII
    "msg: bytes, str, a file or an iterable of bytes",  # 31 _E_MSG_TYPE
    "TLS handshake failed: %r",  # 32 _E_HANDSHAKE
    "connection lost: %r",  # 33 _E_LOST
    "cadata: the certificate's DER bytes, not a path (open(path, 'rb').read())",  # 34 _E_CADATA
    "socket_pool is for CircuitPython",  # 35 _E_SOCKET_POOL
    "no greeting: a TLS port? (tls='implicit', SMTP_SSL)",  # 36 _E_NO_GREETING
    "TLS handshake with %s failed: %r",  # 37 _E_HANDSHAKE_HOST
    "not connected",  # 38 _E_NOT_CONNECTED
    "write failed: %r",  # 39 _E_WRITE
    "read failed: %r",  # 40 _E_READ
    # 41 _E_CP_STARTTLS
    "CircuitPython cannot wrap a connected socket: use SMTP_SSL (tls='implicit')",
    "port 465 is implicit TLS: tls='implicit' (or leave tls out)",  # 42 _E_PORT_465
    "tls must be 'starttls', 'implicit' or 'none'",  # 43 _E_TLS_ARG
    "auth: auto, plain, login, cram-md5, xoauth2, oauthbearer or none",  # 44 _E_AUTH_ARG
    "give both username and password",  # 45 _E_CREDENTIALS
    "socket_pool needs tls='implicit' or 'none' (CircuitPython)",  # 46 _E_CP_TLS
    "no from_addr",  # 47 _E_NO_FROM
)
