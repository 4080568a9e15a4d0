# SPDX-License-Identifier: MIT
"""A stand-in for micropython-lib's ntptime (tests/test_boards.py): `failures` calls of
settime() raise OSError(ETIMEDOUT) before one succeeds (the unix port's clock is right)."""

host = "pool.ntp.org"
timeout = 1
failures = 0
calls = []


def settime():
    global failures
    calls.append(host)
    if failures:
        failures -= 1
        raise OSError(110)
