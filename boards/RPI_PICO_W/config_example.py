# SPDX-License-Identifier: MIT
# Copy to config.py (git-ignored: it holds passwords), fill in, and copy to the board with
# main.py (tools/deploy does both). Recipes for Gmail, Outlook and a Postfix relay: README.md.
WIFI_SSID = "my-wifi"
WIFI_PASSWORD = "wifi-password"
WIFI_COUNTRY = None  # e.g. "DE": two-letter country code for the radio's channels

SMTP_HOST = "smtp.gmail.com"
SMTP_PORT = 465  # 465: implicit TLS; 587: STARTTLS; 25: a local relay
SMTP_TLS = "implicit"  # "implicit" (465), "starttls" (587) or "none" (a relay on your LAN)
SMTP_AUTH = "auto"  # "auto", "plain", "login", "xoauth2" (password = OAuth2 token), "none"
SMTP_USER = "device@gmail.com"
SMTP_PASSWORD = "abcdefghijklmnop"  # Gmail: an app password (type it without its spaces)

MAIL_FROM = "device@gmail.com"
MAIL_TO = ["me@example.com"]
# Roots the server's certificate may chain to (certs/README.md says which is whose).
CA_FILES = ["certs/gts-root-r1.der", "certs/gts-root-r4.der", "certs/globalsign-root-ca.der"]
