# SPDX-License-Identifier: MIT
"""boards/: each board's example sends a first mail, and its Wi-Fi/NTP helpers give up in
bounded time with a message that says what to fix.

The board code runs on the MicroPython unix port with tests/boardfakes/ standing in for the
radio (`network`, with the STAT_* names and numbers of the board's port) and for `ntptime`;
everything else is real: the library, the files tools/deploy copies for the board (its
profile, the shared boards/common/ helpers and main.py), config.py as a user fills it in, TLS
with certificate verification and AUTH against aiosmtpd.
"""

import difflib
import importlib.machinery
import importlib.util
import os
import re
import shutil
import subprocess
import sys
import textwrap

import pytest

import package_check
import typecheck
from harness import LIB, ROOT, TESTS, command

FAKES = TESTS / "boardfakes"
WIFI_BOARDS = ("ESP32_GENERIC", "RPI_PICO_W")
PORTS = {"ESP32_GENERIC": "esp32", "RPI_PICO_W": "rp2"}  # MicroPython port of each board
USERS = {"device": "s3cret"}


def _load_deploy():
    loader = importlib.machinery.SourceFileLoader("deploy", str(ROOT / "tools" / "deploy"))
    spec = importlib.util.spec_from_loader("deploy", loader)
    mod = importlib.util.module_from_spec(spec)
    loader.exec_module(mod)
    return mod


deploy = _load_deploy()


def _board_files(board, config):
    """{name on the board: source} of what tools/deploy copies besides lib/ and certs/."""
    _, args = deploy.plan(board, list(deploy.CORE), False, config)
    cmds = " ".join(args).split(" + ")
    cps = [c.split() for c in cmds if c.startswith("cp ")]
    return {dst[1:]: src for _, src, dst in cps if not dst.startswith((":lib/", ":certs/"))}


def _run_board(board, tmp_path, source=None, config="", heapsize=None, timeout=60):
    """Run the board's main.py (or `source`) from a folder laid out like the board's flash:
    the files tools/deploy copies (the host profile's own files for unix)."""
    (tmp_path / "config.py").write_text(textwrap.dedent(config))
    if board == "unix":
        files = {f.name: f for f in (ROOT / "boards" / board).glob("*.py")
                 if f.name not in ("manifest.py", "config.py", "config_example.py")}
    else:
        files = _board_files(board, tmp_path / "config.py")
    for name, src in files.items():
        if name != "config.py":
            shutil.copy(src, tmp_path / name)
    script = tmp_path / "main.py"
    if source is not None:
        script = tmp_path / "snippet.py"
        script.write_text(textwrap.dedent(source))
    argv, env = command(script, heapsize=heapsize)
    env["MICROPYPATH"] = ":".join([str(tmp_path), str(LIB), str(FAKES), ".frozen"])
    env["BOARDFAKE_PORT"] = PORTS.get(board, "")
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


@pytest.mark.parametrize("board", WIFI_BOARDS)
def test_wifi_gives_up_at_once_only_where_the_port_says_so(board, tmp_path):
    # netup.py is one file for both ports: each port's network module has its own STAT_*
    # names and numbers (the fake has the board's port's). Another port's number for a fatal
    # state is just an unknown state here: retried, never misread.
    fatal = {
        "esp32": [("STAT_HANDSHAKE_TIMEOUT", "Wi-Fi 'lab': handshake timed out (usually a "
                   "wrong password)"),
                  ("STAT_ASSOC_FAIL", "Wi-Fi 'lab' refused the association or went away "
                   "(signal?)"),
                  ("STAT_BEACON_TIMEOUT", "Wi-Fi 'lab' refused the association or went away "
                   "(signal?)"),
                  ("STAT_CONNECT_FAIL", "Wi-Fi 'lab' refused the association or went away "
                   "(signal?)")],
        "rp2": [("STAT_CONNECT_FAIL", "Wi-Fi 'lab' refused the connection (signal? MAC "
                 "filter?)")],
    }[PORTS[board]]
    other = {"esp32": -1, "rp2": 204}[PORTS[board]]  # rp2's CONNECT_FAIL, esp32's HANDSHAKE_...
    p = _run_board(board, tmp_path, source=f"""
        import network, netup
        for status in [getattr(network, n) for n, _ in {fatal!r}] + [{other}]:
            network.script = [status]
            try:
                netup.wifi_connect("lab", "pw", timeout=0.1, retries=2)
            except netup.WifiError as e:
                print("E", e)
        print("connects", sum(1 for x in network.log if x[0] == "connect"))
    """)
    assert p.returncode == 0, p.stdout + p.stderr
    assert p.stdout.splitlines() == [f"E {why}" for _, why in fatal] + [
        "E Wi-Fi 'lab': no address after 0.1 s (attempt 2 of 2)",
        f"connects {len(fatal) + 2}"]


def _stub_states(port):
    """{STAT_* name: number} of the port's network module, from its stubs (make venv)."""
    pyi = typecheck.STUBS / port / "network.pyi"
    if not pyi.is_file():
        if os.environ.get("CI") == "true":
            pytest.fail(f"no {pyi}: `make venv` installs the stubs")
        pytest.skip(f"no {pyi}: run `make venv`")
    return {m[1]: int(m[2]) for m in re.finditer(r"^(STAT_\w+): Final\[int\] = (-?\d+)$",
                                                  pyi.read_text(), re.M)}


@pytest.mark.parametrize("board", WIFI_BOARDS)
def test_fake_network_has_the_ports_states(board, tmp_path):
    # The fake is only worth something if it has no name the real port lacks (netup would
    # pass here and raise AttributeError on the board) and the real numbers.
    real = _stub_states(PORTS[board])
    p = _run_board(board, tmp_path, source="""
        import network
        for n in dir(network):
            if n.startswith("STAT_"):
                print(n, getattr(network, n))
    """)
    assert p.returncode == 0, p.stdout + p.stderr
    fake = {n: int(v) for n, v in (line.split() for line in p.stdout.splitlines())}
    assert fake.items() <= real.items()
    used = set(re.findall(r'"(STAT_\w+)"', (ROOT / "boards" / "common" / "netup.py").read_text()))
    assert used & real.keys() <= fake.keys()
    assert {"STAT_CONNECTING", "STAT_GOT_IP", "STAT_WRONG_PASSWORD"} <= fake.keys()


@pytest.mark.parametrize("board", WIFI_BOARDS)
def test_shared_board_code_typechecks_for_each_port(board):
    # tools/typecheck.py checks boards/BOARD/*.py against the port's stubs; the shared files
    # in boards/common/ run on both ports, so check them against each port's stubs too.
    target = PORTS[board]
    _stub_states(target)  # skips (fails on CI) without the stubs
    argv, env = typecheck.command(target)
    shared = [str(p.relative_to(ROOT)) for p in sorted((ROOT / "boards" / "common").glob("*.py"))]
    assert "boards/common/netup.py" in shared and "boards/common/main.py" in shared
    r = subprocess.run(argv + [f for f in shared if f not in argv], cwd=ROOT, env=env,
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stdout + r.stderr


@pytest.mark.parametrize("board", WIFI_BOARDS + ("unix",))
def test_board_folder_is_complete(board, tmp_path):
    d = ROOT / "boards" / board
    assert {"profile.py", "manifest.py", "config_example.py"} <= {p.name for p in d.iterdir()}
    if board == "unix":
        assert (d / "main.py").is_file()
    else:
        # What goes onto the board: the board's profile, the shared helpers and example.
        (tmp_path / "config.py").write_text("")
        files = _board_files(board, tmp_path / "config.py")
        assert sorted(files) == ["config.py", "main.py", "netup.py", "profile.py"]
        assert files["profile.py"] == str(d / "profile.py")
        for name in ("main.py", "netup.py"):
            assert files[name] == str(ROOT / "boards" / "common" / name)
    # config.py holds passwords: git must ignore it.
    r = subprocess.run(["git", "check-ignore", "-q", f"boards/{board}/config.py"], cwd=ROOT)
    assert r.returncode == 0, f"boards/{board}/config.py is not git-ignored"


def _code(path):
    return [line for line in path.read_text().splitlines()
            if line.strip() and not line.lstrip().startswith("#")]


def test_board_code_is_not_copied_between_boards():
    # One source per piece of board code: what every Wi-Fi board runs is in boards/common/,
    # and what differs per board is in its own folder. 15 identical lines of code in a row in
    # two folders (about a function) is a copy that will drift.
    files = sorted((ROOT / "boards").glob("*/*.py"))
    copies = []
    for i, a in enumerate(files):
        for b in files[i + 1:]:
            if a.parent == b.parent:
                continue
            m = difflib.SequenceMatcher(None, _code(a), _code(b), autojunk=False)
            block = max(x.size for x in m.get_matching_blocks())
            if block >= 15:
                copies.append(f"{a.relative_to(ROOT)} ~ {b.relative_to(ROOT)}: {block} lines")
    assert copies == []


@pytest.mark.parametrize("board", WIFI_BOARDS)
def test_deploy_copies_what_the_manifest_freezes(board, tmp_path):
    # tools/deploy --dry-run lists the board's files; the firmware built from the board's
    # manifest.py freezes the same helpers (main.py and config.py stay on the filesystem).
    cfg = tmp_path / "config.py"
    cfg.write_text((ROOT / "boards" / board / "config_example.py").read_text())
    env = dict(os.environ, MPY_CROSS="mpy-cross", MPREMOTE="mpremote")
    r = subprocess.run([sys.executable, str(ROOT / "tools" / "deploy"), board, "--dry-run",
                        "--config", str(cfg)], cwd=ROOT, env=env, capture_output=True,
                       text=True, timeout=60)
    assert r.returncode == 0, r.stdout + r.stderr
    remote = r.stdout.splitlines()[-1]
    assert remote.startswith("mpremote exec ")
    cps = [c.split() for c in remote.split(" + ") if c.startswith("cp ")]
    copied = {dst: src for _, src, dst in cps if not dst.startswith((":lib/", ":certs/"))}
    common, own = ROOT / "boards" / "common", ROOT / "boards" / board
    assert copied == {":netup.py": str(common / "netup.py"), ":profile.py": str(own / "profile.py"),
                      ":config.py": str(cfg), ":main.py": str(common / "main.py")}
    frozen = package_check.run_manifest(own / "manifest.py")
    helpers = {p for p in frozen["modules"] if p.parent != LIB.resolve()}
    assert helpers == {common / "netup.py", own / "profile.py"}
    assert frozen["missing"] == []
