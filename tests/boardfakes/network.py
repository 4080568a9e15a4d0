# SPDX-License-Identifier: MIT
"""A scripted stand-in for a board's `network` module (tests/test_boards.py), MicroPython code.

After each connect(), status() walks through `script` (the last entry repeats); isconnected()
is True once the current status is STAT_GOT_IP. Every call is appended to `log`.
The STAT_* names and numbers are those of the port that BOARDFAKE_PORT names (esp32 or rp2;
copied from the ports' stubs, tests/test_boards.py checks them): each port has only some of
the names, and esp32's CONNECT_FAIL and ASSOC_FAIL share a number, as on the real boards.
"""

import os

STA_IF = 0
if os.getenv("BOARDFAKE_PORT") == "esp32":  # ESP-IDF reason codes
    STAT_IDLE = 1000
    STAT_CONNECTING = 1001
    STAT_GOT_IP = 1010
    STAT_BEACON_TIMEOUT = 200
    STAT_NO_AP_FOUND = 201
    STAT_WRONG_PASSWORD = 202
    STAT_ASSOC_FAIL = 203
    STAT_CONNECT_FAIL = 203
    STAT_HANDSHAKE_TIMEOUT = 204
else:  # rp2: cyw43 link states
    STAT_IDLE = 0
    STAT_CONNECTING = 1
    STAT_GOT_IP = 3
    STAT_CONNECT_FAIL = -1
    STAT_NO_AP_FOUND = -2
    STAT_WRONG_PASSWORD = -3

script = [STAT_CONNECTING, STAT_CONNECTING, STAT_GOT_IP]
log = []


def hostname(name=None):
    log.append(("hostname", name))


def country(code=None):
    log.append(("country", code))


class WLAN:
    PM_NONE = 16
    _i = 0

    def __init__(self, interface):
        self._up = False

    def active(self, on=None):
        if on is not None:
            self._up = on
            log.append(("active", on))
        return self._up

    def config(self, **kw):
        log.append(("config", kw))

    def connect(self, ssid, password):
        log.append(("connect", ssid))
        WLAN._i = 0

    def _now(self):
        return script[min(WLAN._i, len(script) - 1)]

    def status(self):
        s = self._now()
        WLAN._i += 1
        return s

    def isconnected(self):
        return self._now() == STAT_GOT_IP

    def disconnect(self):
        log.append(("disconnect",))

    def ifconfig(self):
        return ("127.0.0.1", "255.0.0.0", "127.0.0.1", "127.0.0.1")
