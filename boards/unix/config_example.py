# SPDX-License-Identifier: MIT
# Copy to config.py (git-ignored: it holds passwords) and fill in; then, from the repository
# root: MICROPYPATH=lib:boards/unix:.frozen micropython boards/unix/main.py
# Recipes for Gmail, Outlook and a Postfix relay: README.md.
SMTP_HOST = "localhost"
SMTP_PORT = 25  # 465: implicit TLS; 587: STARTTLS; 25: a local relay (Postfix)
SMTP_TLS = "none"  # "implicit" (465), "starttls" (587) or "none" (a relay on this machine)
SMTP_AUTH = "none"  # "auto", "plain", "login", "xoauth2" (password = OAuth2 token), "none"
SMTP_USER = None
SMTP_PASSWORD = None

MAIL_FROM = "me@localhost"
MAIL_TO = ["me@localhost"]
# Roots the server's certificate may chain to (certs/README.md says which is whose).
CA_FILES = ["certs/isrg-root-x1.der"]
