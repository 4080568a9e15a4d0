# SPDX-License-Identifier: MIT
"""Send a first mail from the unix port (or CPython): settings come from config.py.

    MICROPYPATH=lib:boards/unix:.frozen micropython boards/unix/main.py
The host's network and clock are up already: no Wi-Fi, no NTP.
"""

import time

import config
import profile
import smtp_client
import smtp_message  # (for its format_date: the unix port has the whole library)


def main():
    cas = []
    for path in config.CA_FILES:
        with open(path, "rb") as f:
            cas.append(f.read())
    ctx = smtp_client.create_context(cadata=cas)  # verifies the server: keep it that way
    client = smtp_client.Client(
        config.SMTP_HOST, config.SMTP_PORT, tls=config.SMTP_TLS, auth=config.SMTP_AUTH,
        username=config.SMTP_USER, password=config.SMTP_PASSWORD,
        from_addr=config.MAIL_FROM, context=ctx, timeout=profile.TIMEOUT,
        bufsize=profile.BUFSIZE)
    # RFC 5322 3.6: From and Date are required; providers refuse mail without them.
    msg = ("From: %s\r\nTo: %s\r\nDate: %s\r\nSubject: Hello from the unix port\r\n\r\n"
           "It works.\r\n" % (config.MAIL_FROM, ", ".join(config.MAIL_TO),
                                 smtp_message.format_date(time.gmtime())))
    result = client.send(config.MAIL_TO, msg.encode())
    print("sent; refused:", result.refused)  # {}: every recipient took it
    return result


main()
