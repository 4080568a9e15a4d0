# SPDX-License-Identifier: MIT
"""Type-check the library against each MicroPython port's stubs, and against CPython.

    python tools/typecheck.py [TARGET ...]     # all targets when none is named

Targets (what is checked, against which stubs):
    esp32   lib/*.py, boards/ESP32_GENERIC/*.py, boards/common/*.py   micropython-esp32-stubs
    rp2     lib/*.py, boards/RPI_PICO_W/*.py, boards/common/*.py      micropython-rp2-stubs
    unix    lib/*.py and boards/unix/*.py            micropython-unix-stubs
    cpython lib/*.py                                 mypy's own typeshed (+ cpython/ shim)

The ports leave out the CPython/CircuitPython-only modules (package_check.CPYTHON_ONLY:
smtp_cpython): MicroPython never loads them, so the ports' stubs say nothing about them. The
cpython target checks them.

The stubs of one port replace mypy's typeshed (--custom-typeshed-dir) and are on MYPYPATH, so
`time.ticks_ms`, `select.poll().ipoll`, `network.WLAN` ... are checked against what that
port really has. `make venv` installs each port's stubs into .venv/stubs/PORT (pins in
requirements-stubs.txt; they cannot share a folder: each defines `machine`, `socket`, ...).

`_MPY` (sys.implementation.name == "micropython") is declared always true for the ports and
always false for CPython, so each run checks the branches that runtime executes. The library
has no annotations; pyproject.toml's [tool.mypy] turns on check_untyped_defs and turns off
the error codes that only complain about inferred types of unannotated code (Optional class
defaults, heterogeneous lists). What stays on is what this check is for: a module, function
or attribute that the port does not have (attr-defined, name-defined, import-not-found), and
calls with the wrong arguments (call-arg). A line that is reached on one runtime only says
so in a `# type: ignore[code]` comment.
"""

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tools"))
import package_check  # noqa: E402

STUBS = ROOT / ".venv" / "stubs"
LIB = sorted(str(p.relative_to(ROOT)) for p in (ROOT / "lib").glob("*.py"))
# What a MicroPython port runs: lib/ without the CPython/CircuitPython-only modules.
PORT_LIB = [f for f in LIB if Path(f).stem not in package_check.CPYTHON_ONLY]
BOARDS = {"esp32": "ESP32_GENERIC", "rp2": "RPI_PICO_W", "unix": "unix"}
TARGETS = ("esp32", "rp2", "unix", "cpython")


def command(target):
    """argv and environment for one target's mypy run."""
    cache = ROOT / "build" / "mypy-cache" / target
    argv = [sys.executable, "-m", "mypy", "--config-file", str(ROOT / "pyproject.toml"),
            "--cache-dir", str(cache)]
    env = dict(os.environ)
    if target == "cpython":
        env["MYPYPATH"] = str(ROOT / "cpython")  # the `micropython` shim the pip package ships
        return argv + ["--always-false", "_MPY"] + LIB, env
    stubs = STUBS / target
    if not (stubs / "stdlib" / "VERSIONS").exists():
        raise FileNotFoundError(f"no stubs in {stubs}: run `make venv`")
    board = ROOT / "boards" / BOARDS[target]
    # main.py imports config, the user's git-ignored copy of config_example.py: check it
    # against the example (the names the example defines are the ones main.py may use).
    shadow = ROOT / "build" / "typecheck" / target
    shadow.mkdir(parents=True, exist_ok=True)
    (shadow / "config.py").write_text((board / "config_example.py").read_text())
    env["MYPYPATH"] = os.pathsep.join([str(stubs), str(shadow)])
    # The board's own files, and the shared Wi-Fi boards' ones it does not override.
    own = [p for p in board.glob("*.py")
           if p.name not in ("config.py", "config_example.py", "manifest.py")]
    if target != "unix":
        names = {p.name for p in own}
        own += [p for p in (ROOT / "boards" / "common").glob("*.py") if p.name not in names]
    files = PORT_LIB + sorted(str(p.relative_to(ROOT)) for p in own)
    return argv + ["--custom-typeshed-dir", str(stubs), "--always-true", "_MPY"] + files, env


def check(target):
    """Run one target; return (ok, output)."""
    argv, env = command(target)
    p = subprocess.run(argv, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    return p.returncode == 0, (p.stdout + p.stderr).strip()


def main(targets):
    failed = 0
    for t in targets or TARGETS:
        ok, out = check(t)
        print(f"== {t}: {'ok' if ok else 'FAILED'}")
        if not ok or "--verbose" in sys.argv:
            print(out)
        failed += not ok
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main([a for a in sys.argv[1:] if not a.startswith("-")]))
