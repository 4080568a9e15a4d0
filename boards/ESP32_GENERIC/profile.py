# SPDX-License-Identifier: MIT
# ESP32_GENERIC (ESP32-WROOM/WROVER without PSRAM, 520 KB SRAM): about 110 KB of MicroPython
# heap after boot with Wi-Fi up. mbedTLS allocates its ~25 KB per session from the ESP-IDF
# heap, not from the MicroPython heap, so TLS does not compete with the library here.
#
# BUFSIZE: bytes of each of the 3 preallocated buffers (rx, tx, file chunk). 1024: fewer,
#   larger writes of a long body; 3 KB is nothing next to 110 KB.
# TIMEOUT: seconds one network wait may take (RFC 5321 4.5.3.2 allows servers minutes for
#   the end of data; 30 s is what Gmail and Outlook need in practice over Wi-Fi).
# TLS_HEAP: free MicroPython heap to have before a TLS handshake (0: mbedTLS uses the IDF heap).
# WIFI_*: one attempt waits WIFI_TIMEOUT seconds; WIFI_RETRIES attempts in all.
# WIFI_POWER_SAVE: True keeps the port's default power management (ESP32's modem sleep works
#   well with TLS).
# NTP_*: the clock must be right before TLS (certificate validity) and for the Date header.
BUFSIZE = 1024
TIMEOUT = 30
TLS_HEAP = 0
WIFI_TIMEOUT = 20
WIFI_RETRIES = 3
WIFI_POWER_SAVE = True
NTP_HOST = "pool.ntp.org"
NTP_RETRIES = 3
