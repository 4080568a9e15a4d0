# SPDX-License-Identifier: MIT
"""boards/: each board's example sends a first mail, and its Wi-Fi/NTP helpers give up in
bounded time with a message that says what to fix.

The board code runs on the MicroPython unix port with tests/boardfakes/ standing in for the
radio (`network`) and for `ntptime`; everything else is real: the library, the board's
profile, config.py as a user fills it in, TLS with certificate verification and AUTH against
aiosmtpd.
"""

import shutil
import subprocess
import textwrap

import pytest

from harness import LIB, ROOT, TESTS, command

FAKES = TESTS / "boardfakes"
WIFI_BOARDS = ("ESP32_GENERIC", "RPI_PICO_W")
USERS = {"device": "s3cret"}


def _run_board(board, tmp_path, source=None, config="", heapsize=None, timeout=60):
    """Run boards/BOARD/main.py (or `source`) from a folder laid out like the board's flash."""
    for f in (ROOT / "boards" / board).glob("*.py"):
        if f.name not in ("manifest.py", "config.py"):
            shutil.copy(f, tmp_path / f.name)
    (tmp_path / "config.py").write_text(textwrap.dedent(config))
    script = tmp_path / "main.py"
    if source is not None:
        script = tmp_path / "snippet.py"
        script.write_text(textwrap.dedent(source))
    argv, env = command(script, heapsize=heapsize)
    env["MICROPYPATH"] = ":".join([str(tmp_path), str(LIB), str(FAKES), ".frozen"])
    return subprocess.run(argv, cwd=tmp_path, env=env, capture_output=True, text=True,
                          timeout=timeout)


def _config(srv, certs, tls="implicit", **extra):
    c = f"""
        WIFI_SSID = "lab"
        WIFI_PASSWORD = "wifi-pw"
        WIFI_COUNTRY = "DE"
        SMTP_HOST = {srv.host!r}
        SMTP_PORT = {srv.port}
        SMTP_TLS = {tls!r}
        SMTP_AUTH = "auto"
        SMTP_USER = "device"
        SMTP_PASSWORD = "s3cret"
        MAIL_FROM = "device@example.com"
        MAIL_TO = ["me@example.com", "ops@example.com"]
        CA_FILES = [{str(ROOT / "certs" / "isrg-root-x1.der")!r}, {str(certs["ca.der"])!r}]
    """
    return c + "".join(f"{k} = {v!r}\n" for k, v in extra.items())


@pytest.mark.parametrize("board", WIFI_BOARDS)
@pytest.mark.parametrize("tls", ["implicit", "starttls"])
def test_board_main_sends_a_first_mail(board, tls, tmp_path, mailserver, certs):
    srv = mailserver(tls=tls, auth=USERS)
    p = _run_board(board, tmp_path, config=_config(srv, certs, tls))
    out = p.stdout + p.stderr
    assert p.returncode == 0, out
    assert "Wi-Fi: up, 127.0.0.1" in out and "sent; refused: {}" in out
    (mail,) = srv.messages
    assert (mail.tls, mail.login) == (True, "device")
    assert mail.rcpt_tos == ["me@example.com", "ops@example.com"]
    head = mail.content.split(b"\r\n\r\n")[0]
    # smtp_message is in lib/: main.py used it, so Date and Message-ID are there.
    for h in (b"From: device@example.com", b"Subject: Hello from linux", b"Date: ",
              b"Message-ID: "):
        assert h in head, head


def test_unix_main_sends_with_the_core_only(tmp_path, mailserver, certs):
    srv = mailserver(tls="starttls", auth=USERS)
    p = _run_board("unix", tmp_path, config=_config(srv, certs, "starttls"))
    assert p.returncode == 0, p.stdout + p.stderr
    (mail,) = srv.messages
    assert mail.tls and b"Subject: Hello from the unix port" in mail.content


def test_board_main_refuses_an_untrusted_server(tmp_path, mailserver, certs):
    # Only the real roots in CA_FILES: the test server's certificate is not trusted.
    srv = mailserver(tls="implicit", auth=USERS)
    cfg = _config(srv, certs).replace(repr(str(certs["ca.der"])), repr(
        str(ROOT / "certs" / "gts-root-r1.der")))
    p = _run_board("RPI_PICO_W", tmp_path, config=cfg)
    assert p.returncode != 0 and "SMTPTLSError" in p.stdout + p.stderr
    assert srv.messages == [] and srv.auth_log == []


def test_pico_w_checks_free_heap_before_tls(tmp_path, mailserver, certs):
    srv = mailserver(tls="implicit", auth=USERS)
    (tmp_path / "x").mkdir()
    p = _run_board("RPI_PICO_W", tmp_path / "x", config=_config(srv, certs), source="""
        import profile
        profile.TLS_HEAP = 1 << 30  # more than any heap: main.py must stop before connecting
        import main
    """)
    assert p.returncode != 0
    assert "MemoryError" in p.stdout and "TLS needs about" in p.stdout
    assert srv.ehlo_log == []


@pytest.mark.parametrize("board", WIFI_BOARDS)
def test_wifi_fails_fast_with_the_reason(board, tmp_path):
    p = _run_board(board, tmp_path, source="""
        import network, netup
        for status, _ in ((network.STAT_WRONG_PASSWORD, 0), (network.STAT_NO_AP_FOUND, 0)):
            network.script = [network.STAT_CONNECTING, status]
            try:
                netup.wifi_connect("lab", "pw", timeout=5, retries=3)
            except netup.WifiError as e:
                print("E", e)
        print("connects", sum(1 for x in network.log if x[0] == "connect"))
    """)
    out = p.stdout.splitlines()
    assert p.returncode == 0, p.stdout + p.stderr
    assert out[0] == "E wrong password for Wi-Fi 'lab'"
    assert out[1] == "E no Wi-Fi network named 'lab' in range (2.4 GHz only)"
    assert out[2] == "connects 2"  # no retry: another try cannot fix either


@pytest.mark.parametrize("board", WIFI_BOARDS)
def test_wifi_retries_are_bounded(board, tmp_path):
    p = _run_board(board, tmp_path, source="""
        import time, network, netup
        network.script = [network.STAT_CONNECTING]  # never comes up
        t0 = time.ticks_ms()
        try:
            netup.wifi_connect("lab", "pw", timeout=0.3, retries=3, power_save=False)
        except netup.WifiError as e:
            print("E", e)
        print("ms", time.ticks_diff(time.ticks_ms(), t0))
        print("connects", sum(1 for x in network.log if x[0] == "connect"))
        print("pm", [x for x in network.log if x[0] == "config"])
    """)
    out = p.stdout.splitlines()
    assert p.returncode == 0, p.stdout + p.stderr
    assert out[0] == "E Wi-Fi 'lab': no address after 0.3 s (attempt 3 of 3)"
    assert int(out[1].split()[1]) < 5000
    assert out[2] == "connects 3"
    assert out[3] == "pm [('config', {'pm': 16})]"


@pytest.mark.parametrize("board", WIFI_BOARDS)
def test_ntp_retries_then_fails_clearly(board, tmp_path):
    p = _run_board(board, tmp_path, source="""
        import ntptime, netup
        ntptime.failures = 2
        netup.ntp_sync("time.example", retries=3)
        print("ok after", len(ntptime.calls))
        ntptime.failures = 5
        try:
            netup.ntp_sync("time.example", retries=3)
        except netup.NtpError as e:
            print("E", e)
    """)
    out = p.stdout.splitlines()
    assert p.returncode == 0, p.stdout + p.stderr
    assert out[0] == "ok after 3"
    assert out[1].startswith("E NTP via time.example failed after 3 tries")


@pytest.mark.parametrize("board", WIFI_BOARDS + ("unix",))
def test_board_folder_is_complete(board):
    d = ROOT / "boards" / board
    need = {"profile.py", "main.py", "manifest.py", "config_example.py"}
    if board != "unix":
        need.add("netup.py")
    assert need <= {p.name for p in d.iterdir()}
    # config.py holds passwords: git must ignore it.
    r = subprocess.run(["git", "check-ignore", "-q", f"boards/{board}/config.py"], cwd=ROOT)
    assert r.returncode == 0, f"boards/{board}/config.py is not git-ignored"
