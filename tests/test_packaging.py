# SPDX-License-Identifier: MIT
"""Packaging: one version, package.json/manifest.py name files that exist, mip really
installs them, .mpy builds (no assert), deploy's mpremote plan, typing per port, ruff."""

import functools
import http.server
import json
import os
import subprocess
import sys
import threading

import pytest

import package_check
import typecheck
from harness import MICROPYTHON, ROOT, run_ok


def test_versions_are_one():
    assert package_check.check_versions() == []
    v = package_check.module_version("smtp_client")
    assert json.loads((ROOT / "package.json").read_text())["version"] == v
    assert f'version="{v}"' in (ROOT / "manifest.py").read_text().splitlines()[0]


def test_mip_urls_exist():
    assert package_check.check_mip() == []


def test_manifests_resolve():
    assert package_check.check_manifests() == []
    r = package_check.run_manifest(ROOT / "boards" / "RPI_PICO_W" / "manifest.py")
    frozen = {p.name for p in r["modules"]}
    assert {"smtp_client.py", "smtp_message.py", "smtp_outbox.py", "netup.py",
            "profile.py"} <= frozen
    # The board's own manifest comes first, so the firmware keeps ntptime, network, ...
    assert r["external"][0] == "$(PORT_DIR)/boards/RPI_PICO_W/manifest.py"
    core = package_check.run_manifest(ROOT / "manifest.py")
    assert [p.name for p in core["modules"]] == ["smtp_client.py"]  # companions opt-in


def test_package_check_finds_problems(tmp_path, monkeypatch):
    assert package_check.asserts("x = 1\nassert x, 'protocol rule'\n") == [2]
    fake = tmp_path / "lib"
    fake.mkdir()
    for m in ("smtp_message", "smtp_outbox", "smtp_async"):
        (fake / (m + ".py")).write_text((ROOT / "lib" / (m + ".py")).read_text())
    (fake / "smtp_client.py").write_text('__version__ = "9.9.9"\n')
    monkeypatch.setattr(package_check, "LIB", fake)
    errors = package_check.check_versions()
    assert any("package.json" in e and "9.9.9" in e for e in errors)
    assert any(e.startswith("manifest.py: metadata version") for e in errors)


def test_make_mpy_builds_every_module():
    r = subprocess.run(["make", "-s", "mpy"], cwd=ROOT, capture_output=True, text=True,
                       timeout=120)
    assert r.returncode == 0, r.stdout + r.stderr
    for src in (ROOT / "lib").glob("*.py"):
        mpy = ROOT / "build" / "mpy" / (src.stem + ".mpy")
        assert mpy.stat().st_size > 1000, mpy
        assert f"build/mpy/{src.stem}.mpy" in r.stdout
    # The .mpy files are what a board imports: they load on the port, in a small heap.
    out = run_ok(f"""
        import sys
        sys.path[:] = [{str(ROOT / "build" / "mpy")!r}, ".frozen"]
        import smtp_client, smtp_message, smtp_outbox
        print(smtp_client.__file__.endswith(".mpy"), smtp_client.__version__)
    """, heapsize="128k")
    assert out.split() == ["True", package_check.module_version("smtp_client")]


@pytest.fixture
def http_root():
    """The repository served on a loopback port, as raw.githubusercontent.com would."""
    handler = functools.partial(_QuietHandler, directory=str(ROOT))
    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    t = threading.Thread(target=srv.serve_forever, daemon=True)
    t.start()
    yield f"http://127.0.0.1:{srv.server_address[1]}"
    srv.shutdown()
    srv.server_close()


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):
        pass


@pytest.mark.parametrize("pkg, modules", [
    ("package.json", ["smtp_client"]),
    ("smtp_message.json", ["smtp_message", "smtp_client"]),
    ("smtp_outbox.json", ["smtp_outbox", "smtp_client"]),
])
def test_mip_installs_each_package(pkg, modules, http_root, tmp_path):
    # The unix port's own mip installs from the served repository into an empty folder, and
    # the installed modules import from there alone (not from lib/).
    target = tmp_path / "lib"
    out = run_ok(f"""
        import mip, sys
        mip.install({http_root + "/" + pkg!r}, target={str(target)!r})
        sys.path[:] = [{str(target)!r}, ".frozen"]
        for m in {modules!r}:
            mod = __import__(m)
            print(m, mod.__version__, mod.__file__.startswith({str(target)!r}))
    """, timeout=60)
    lines = [x for x in out.splitlines() if not x.startswith(("Installing", "Copying", "Done"))]
    v = package_check.module_version("smtp_client")
    assert lines == [f"{m} {v} True" for m in modules]
    assert sorted(p.name for p in target.iterdir()) == sorted(m + ".py" for m in modules)


def test_deploy_plan(tmp_path):
    # A fake mpremote records the command line; the board plan copies .mpy files into lib/,
    # the helpers, config, certificates, and main.py last.
    log = tmp_path / "argv.json"
    fake = tmp_path / "mpremote"
    fake.write_text(f"#!{sys.executable}\nimport json, sys\n"
                    f"open({str(log)!r}, 'w').write(json.dumps(sys.argv[1:]))\n")
    fake.chmod(0o755)
    env = dict(os.environ, MPREMOTE=str(fake))
    deploy = [sys.executable, str(ROOT / "tools" / "deploy")]
    cfg = tmp_path / "config.py"
    r = subprocess.run(deploy + ["RPI_PICO_W", "--config", str(cfg)], cwd=ROOT, env=env,
                       capture_output=True, text=True, timeout=60)
    assert r.returncode != 0 and "config_example.py to config.py" in r.stderr
    cfg.write_text((ROOT / "boards" / "RPI_PICO_W" / "config_example.py").read_text())
    r = subprocess.run(deploy + ["RPI_PICO_W", "--device", "/dev/ttyACM0", "--with", "message",
                                 "--config", str(cfg)],
                       cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stdout + r.stderr
    argv = json.loads(log.read_text())
    assert argv[:3] == ["connect", "/dev/ttyACM0", "exec"]
    cmds = " ".join(argv).split(" + ")
    dests = [c.split()[-1] for c in cmds if c.startswith("cp ")]
    assert dests[:4] == [":lib/smtp_client.mpy", ":lib/smtp_message.mpy", ":netup.py",
                         ":profile.py"]
    assert dests[-2:] == [":config.py", ":main.py"]
    assert {":certs/" + p.name for p in (ROOT / "certs").glob("*.der")} <= set(dests)
    assert "os.remove('lib/' + m + '.py')" in argv[3]  # a stale .py would shadow the .mpy
    for c in cmds:
        if c.startswith("cp "):
            assert os.path.exists(c.split()[1]), c
    r = subprocess.run(deploy + ["unix"], cwd=ROOT, env=env, capture_output=True, text=True)
    assert r.returncode != 0 and "ESP32_GENERIC, RPI_PICO_W" in r.stderr


def _stubs_or_skip():
    missing = [t for t in ("esp32", "rp2", "unix")
               if not (typecheck.STUBS / t / "stdlib" / "VERSIONS").exists()]
    if missing:
        if os.environ.get("CI") == "true":
            pytest.fail(f"no stubs for {missing}: `make venv` installs them")
        pytest.skip(f"no stubs for {missing}: run `make venv`")


@pytest.mark.parametrize("target", typecheck.TARGETS)
def test_typecheck(target):
    if target != "cpython":
        _stubs_or_skip()
    ok, out = typecheck.check(target)
    assert ok, out


def test_typecheck_catches_what_a_port_lacks(tmp_path):
    # The check is only worth something if it fails: CPython-only APIs on the MicroPython
    # path, and a module the unix port does not have.
    _stubs_or_skip()
    bad = tmp_path / "bad.py"
    bad.write_text("import sys\nimport time\n_MPY = sys.implementation.name == 'micropython'\n"
                   "if _MPY:\n    t = time.monotonic_ns()\n    import network\n")
    argv, env = typecheck.command("unix")
    argv = [a for a in argv if not a.endswith(".py")] + [str(bad)]
    r = subprocess.run(argv, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert r.returncode == 1
    assert 'Module has no attribute "monotonic_ns"' in r.stdout
    assert 'module named "network"' in r.stdout


def test_ruff_clean():
    r = subprocess.run([sys.executable, "-m", "ruff", "check", "."], cwd=ROOT,
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stdout + r.stderr


def test_micropython_found():
    assert MICROPYTHON
