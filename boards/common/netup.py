# SPDX-License-Identifier: MIT
"""Wi-Fi and clock for the Wi-Fi boards (ESP32_GENERIC, RPI_PICO_W): bounded retries, errors
that say what to fix. One file for every port; what differs per board is in its profile.py.

    import netup
    wlan = netup.wifi_connect("my-wifi", "password", timeout=20, retries=3,
                              power_save=profile.WIFI_POWER_SAVE)
    netup.ntp_sync()          # UTC; TLS checks certificate dates, mail needs a Date

Both raise OSError subclasses with a message for a person; neither waits forever.
"""

import time

import network

MIN_YEAR = 2025  # a clock before this is unset (the RTC starts at 2000 after power-up)


class WifiError(OSError):
    """Wi-Fi did not come up: the message says why (wrong password, no such network, ...)."""


class NtpError(OSError):
    """The clock could not be set from NTP."""


# Link states that another attempt cannot fix, and what to tell the person. network.STAT_*
# are the port's own names and numbers, and each port has only some of them: a name the port
# lacks is skipped, so this one table serves every port.
#   esp32 (ESP-IDF reason codes): WRONG_PASSWORD, NO_AP_FOUND, HANDSHAKE_TIMEOUT, ASSOC_FAIL,
#     BEACON_TIMEOUT; its CONNECT_FAIL is ASSOC_FAIL's number (203), which matches first.
#   rp2 (negative cyw43 link states): WRONG_PASSWORD, NO_AP_FOUND, CONNECT_FAIL.
_FATAL = (
    ("STAT_WRONG_PASSWORD", "wrong password for Wi-Fi %r"),
    ("STAT_NO_AP_FOUND", "no Wi-Fi network named %r in range (2.4 GHz only)"),
    ("STAT_HANDSHAKE_TIMEOUT", "Wi-Fi %r: handshake timed out (usually a wrong password)"),
    ("STAT_ASSOC_FAIL", "Wi-Fi %r refused the association or went away (signal?)"),
    ("STAT_BEACON_TIMEOUT", "Wi-Fi %r refused the association or went away (signal?)"),
    ("STAT_CONNECT_FAIL", "Wi-Fi %r refused the connection (signal? MAC filter?)"),
)


def _why(status, ssid):
    for name, why in _FATAL:
        if status == getattr(network, name, None):
            return why % ssid
    return None


def wifi_connect(ssid, password, *, timeout=20, retries=3, hostname=None, country=None,
                 power_save=True):
    """Join `ssid`; return the WLAN once it has an address. Up to `retries` attempts of
    `timeout` seconds each; a wrong password or a missing network fails at once.
    power_save=False turns the radio's power management off (network.WLAN.PM_NONE)."""
    if hostname:
        network.hostname(hostname)  # DHCP name: shows in the router's client list
    if country:
        network.country(country)  # channels 12-13 need the right country
    wlan = network.WLAN(network.STA_IF)
    wlan.active(True)
    if not power_save:
        # A radio that sleeps between beacons (the CYW43 of a Pico W does by default) delivers
        # replies up to hundreds of ms late and stalls TLS handshakes. PM_NONE trades power
        # for that; profile.WIFI_POWER_SAVE says per board.
        wlan.config(pm=network.WLAN.PM_NONE)
    if wlan.isconnected():
        return wlan
    last = "timed out"
    for attempt in range(1, retries + 1):
        wlan.connect(ssid, password)
        t0 = time.ticks_ms()
        while time.ticks_diff(time.ticks_ms(), t0) < timeout * 1000:
            if wlan.isconnected():
                return wlan
            why = _why(wlan.status(), ssid)
            if why:
                wlan.disconnect()
                raise WifiError(why)
            time.sleep_ms(200)
        last = "no address after %s s (attempt %d of %d)" % (timeout, attempt, retries)
        wlan.disconnect()
        time.sleep_ms(500)
    wlan.active(False)
    raise WifiError("Wi-Fi %r: %s" % (ssid, last))


def ntp_sync(host="pool.ntp.org", *, retries=3, timeout=2):
    """Set the RTC to UTC from NTP; raise NtpError after `retries` failed tries."""
    import ntptime

    ntptime.host = host
    ntptime.timeout = timeout
    err = None
    for _ in range(retries):
        try:
            ntptime.settime()
        except (OSError, OverflowError) as e:  # no answer (ETIMEDOUT), DNS failure, ...
            err = e
            time.sleep_ms(500)
            continue
        if time.gmtime()[0] >= MIN_YEAR:
            return
        err = "clock still reads %d" % time.gmtime()[0]
    raise NtpError("NTP via %s failed after %d tries: %r (UDP port 123 blocked?)"
                   % (host, retries, err))


def mail_date():
    """Now (the RTC in UTC, as ntp_sync sets it) as an RFC 5322 3.3 date-time for a Date:
    header, e.g. "3 Dec 2026 21:04:00 +0000" (the weekday is optional there)."""
    y, mo, d, h, mi, s = time.gmtime()[:6]
    return "%d %s %d %02d:%02d:%02d +0000" % (
        d, "JanFebMarAprMayJunJulAugSepOctNovDec"[3 * mo - 3 : 3 * mo], y, h, mi, s)
