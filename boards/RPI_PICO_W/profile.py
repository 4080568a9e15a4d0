# SPDX-License-Identifier: MIT
# RPI_PICO_W (RP2040, 264 KB SRAM): about 165 KB of MicroPython heap after boot, less once
# Wi-Fi is up. Unlike ESP32, mbedTLS takes its memory from the MicroPython heap: about 21 KB
# of record buffers (16.7 KB in, 4.4 KB out; measured on the unix port, which has the same
# mbedTLS configuration) plus handshake state, per TLS session, in large contiguous blocks.
#
# BUFSIZE: bytes of each of the 3 preallocated buffers (rx, tx, file chunk). 512 is the
#   smallest RFC 5321 allows (a reply line may be 512 octets) and leaves the heap to TLS.
# TIMEOUT: seconds one network wait may take.
# TLS_HEAP: free heap main.py wants after gc.collect() before it connects: 21 KB of records
#   plus ~8 KB of handshake and certificate parsing, with room for fragmentation. Below it
#   the handshake fails half-way with a MemoryError or an mbedTLS allocation error (-0x7F00).
# WIFI_*: one attempt waits WIFI_TIMEOUT seconds; WIFI_RETRIES attempts in all.
# WIFI_POWER_SAVE: the CYW43's default power saving delays replies by up to hundreds of ms
#   and stalls TLS handshakes: False sets network.WLAN.PM_NONE (power management off).
# NTP_*: the clock must be right before TLS (certificate validity) and for the Date header.
BUFSIZE = 512
TIMEOUT = 30
TLS_HEAP = 32 * 1024
WIFI_TIMEOUT = 20
WIFI_RETRIES = 3
WIFI_POWER_SAVE = False
NTP_HOST = "pool.ntp.org"
NTP_RETRIES = 3
