# SPDX-License-Identifier: MIT
"""Send a first mail: Wi-Fi, clock, TLS, login, one message. Settings come from config.py.

One file for every Wi-Fi board (ESP32_GENERIC, RPI_PICO_W); what differs per board is in its
profile.py. On the board: lib/smtp_client.mpy, netup.py (boards/common/), profile.py
(boards/BOARD/), config.py, this file and the certificates named in config.CA_FILES
(tools/deploy BOARD copies them all), then reset.
"""

import gc
import sys

import config
import netup
import profile


def main():
    print("Wi-Fi: joining", config.WIFI_SSID)
    wlan = netup.wifi_connect(
        config.WIFI_SSID, config.WIFI_PASSWORD, timeout=profile.WIFI_TIMEOUT,
        retries=profile.WIFI_RETRIES, country=config.WIFI_COUNTRY,
        power_save=profile.WIFI_POWER_SAVE)
    print("Wi-Fi: up,", wlan.ifconfig()[0])
    netup.ntp_sync(profile.NTP_HOST, retries=profile.NTP_RETRIES)  # TLS checks dates

    import smtp_client

    try:
        import smtp_native  # noqa: F401  the native body encoder (tools/deploy --with native)
    except (ImportError, ValueError):  # not deployed, or another architecture's .mpy
        pass
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

    gc.collect()
    if profile.TLS_HEAP and config.SMTP_TLS != "none" and gc.mem_free() < profile.TLS_HEAP:
        raise MemoryError("%d bytes free, TLS needs about %d: import .mpy files, free memory"
                          % (gc.mem_free(), profile.TLS_HEAP))
    subject = "Hello from " + sys.platform
    body = "It works: this board sent its first mail.\n"
    try:
        import smtp_message  # noqa: F401  optional: adds Date, Message-ID, MIME headers
    except ImportError:
        # RFC 5322 3.6: From and Date are required; providers refuse mail without them.
        result = client.send(config.MAIL_TO, (
            "From: %s\r\nTo: %s\r\nDate: %s\r\nSubject: %s\r\n\r\n%s"
            % (config.MAIL_FROM, ", ".join(config.MAIL_TO), netup.mail_date(), subject,
               body)).encode())
    else:
        result = client.send_mail(config.MAIL_TO, subject, body)
    print("sent; refused:", result.refused)  # {}: every recipient took it
    return result


main()
