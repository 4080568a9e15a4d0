# SPDX-License-Identifier: MIT
"""Send one mail with STARTTLS + AUTH, verifying the server's certificate.

On a computer (what `make demo` does, against a local test server):
    MICROPYPATH=lib micropython examples/demo.py HOST PORT USER PASSWORD CA.der
On a board: copy lib/smtp_client.py (or its .mpy) and your CA certificate in DER form (e.g.
`openssl x509 -in ca.pem -outform DER -out ca.der`) to the board, join Wi-Fi first, then put
your values in ARGS below instead of reading sys.argv.
"""

import sys
import time

import smtp_client

ARGS = sys.argv[1:]  # on a board: ARGS = ["smtp.example.com", "587", "user", "pw", "ca.der"]
if len(ARGS) != 5:
    print("usage: MICROPYPATH=lib micropython examples/demo.py HOST PORT USER PASSWORD CA.der")
    sys.exit(2)
host, port, user, password, ca_path = ARGS[0], int(ARGS[1]), ARGS[2], ARGS[3], ARGS[4]

# MicroPython's TLS takes the trusted CA as DER bytes, not PEM.
with open(ca_path, "rb") as f:
    ca_der = f.read()

# Certificate verification is on by default; the name checked is `host`.
ctx = smtp_client.create_context(cadata=ca_der)
client = smtp_client.Client(host, port, username=user, password=password,
                            from_addr="device@example.com", tls="starttls", context=ctx)
# The message is plain bytes: headers, a blank line, the body, CRLF line ends. RFC 5322 3.6:
# From and Date are required (providers refuse mail without them); the date in UTC.
t = time.gmtime()
date = "%d %s %d %02d:%02d:%02d +0000" % (
    t[2], "JanFebMarAprMayJunJulAugSepOctNovDec"[3 * t[1] - 3 : 3 * t[1]], t[0], t[3], t[4], t[5])
result = client.send(["alice@example.com"], (
    "From: device@example.com\r\nTo: alice@example.com\r\nDate: " + date
    + "\r\nSubject: Hello from MicroPython\r\n\r\nSensor 3 reports 21.5 C.\r\n").encode())
print("sent; refused:", result.refused)  # recipients the server turned down (empty: none)
