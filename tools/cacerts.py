# SPDX-License-Identifier: MIT
"""Make certs/: the root CAs of common mail providers in DER, from Debian's ca-certificates.

    python tools/cacerts.py            write certs/*.der and certs/README.md
    python tools/cacerts.py --check    exit 1 if certs/ is not what this would write
    python tools/cacerts.py --list     every root in the store (to find one to add)

MicroPython's tls.SSLContext.load_verify_locations() takes DER (a PEM CA is rejected), one
certificate per call; smtp_client.create_context(cadata=[...]) makes one call per root.
The source is Debian's Mozilla-derived store, /usr/share/ca-certificates/mozilla/*.crt
(package ca-certificates; CA_DIR=... to read another folder of PEM files).

To add a root: find its file with --list, add a line to ROOTS below (output name, store file,
who chains to it), run this tool, commit certs/. Needs `cryptography` (in requirements-dev.txt).
"""

import hashlib
import os
import sys
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding

ROOT = Path(__file__).resolve().parent.parent
CERTS = ROOT / "certs"
CA_DIR = Path(os.environ.get("CA_DIR", "/usr/share/ca-certificates/mozilla"))

# output file -> (file in Debian's store, who uses it). Which root a provider's chain ends at
# changes every few years: keep the current and the previous one, and pass both.
ROOTS = {
    "isrg-root-x1.der": ("ISRG_Root_X1.crt",
                         "Let's Encrypt (RSA chains): most self-hosted mail servers"),
    "isrg-root-x2.der": ("ISRG_Root_X2.crt", "Let's Encrypt (ECDSA chains)"),
    "gts-root-r1.der": ("GTS_Root_R1.crt", "Google: smtp.gmail.com (RSA chains)"),
    "gts-root-r2.der": ("GTS_Root_R2.crt", "Google (RSA, spare root)"),
    "gts-root-r4.der": ("GTS_Root_R4.crt", "Google: smtp.gmail.com (ECDSA chains)"),
    "globalsign-root-ca.der": ("GlobalSign_Root_CA.crt", "Google (GTS Root R1 cross-signed by it)"),
    "digicert-global-root-g2.der": ("DigiCert_Global_Root_G2.crt",
                                    "Microsoft: smtp.office365.com, smtp-mail.outlook.com"),
    "digicert-global-root-ca.der": ("DigiCert_Global_Root_CA.crt",
                                    "Microsoft (older chains, before the move to G2)"),
}


def load(store_file):
    return x509.load_pem_x509_certificate((CA_DIR / store_file).read_bytes())


def _cn(cert):
    names = cert.subject.get_attributes_for_oid(x509.NameOID.COMMON_NAME)
    return names[0].value if names else cert.subject.rfc4514_string()


def build():
    """{file name: bytes} of everything certs/ should hold."""
    out = {}
    rows = []
    for name, (store_file, used_by) in ROOTS.items():
        cert = load(store_file)
        der = cert.public_bytes(Encoding.DER)
        out[name] = der
        rows.append(
            f"| `{name}` | {_cn(cert)} | {used_by} | {len(der)} | "
            f"{cert.not_valid_after_utc:%Y-%m-%d} | `{hashlib.sha256(der).hexdigest()[:16]}` |"
        )
    out["README.md"] = README.format(rows="\n".join(rows)).encode()
    return out


README = """\
# Root CA certificates (DER)

Made by `python tools/cacerts.py` from Debian's `ca-certificates` (Mozilla's list); do not
edit by hand. `tests/test_certs.py` checks that they parse, are self-signed CAs that have
not expired, load into MicroPython's `tls`, and match the store (`--check`).

| file | certificate | used by | bytes | valid until | SHA-256 (first 16) |
|---|---|---|---:|---|---|
{rows}

Pass the roots your server may chain to; each costs about its size in RAM while the context
lives:

```python
ctx = smtp_client.create_context(cadata=[open("certs/gts-root-r1.der", "rb").read(),
                                         open("certs/gts-root-r4.der", "rb").read()])
```

To find which root a server uses (on a computer):
`openssl s_client -connect smtp.gmail.com:465 -showcerts </dev/null | grep -E "^ *[si]:"`
(port 587: add `-starttls smtp`). The last `i:` line names the root.

To add one: `python tools/cacerts.py --list | grep -i NAME`, add a line to `ROOTS` in
`tools/cacerts.py`, run `python tools/cacerts.py`, commit `certs/`. A root that is not in
the store: `openssl x509 -in root.pem -outform DER -out certs/NAME.der` (and say where it
came from in your commit).
"""


def main(argv):
    if "--list" in argv:
        for f in sorted(CA_DIR.glob("*.crt")):
            print(f.name)
        return 0
    want = build()
    if "--check" in argv:
        bad = [n for n, data in want.items()
               if not (CERTS / n).exists() or (CERTS / n).read_bytes() != data]
        extra = [p.name for p in CERTS.glob("*.der") if p.name not in want]
        for n in bad:
            print(f"certs/{n}: differs from {CA_DIR} (run python tools/cacerts.py)")
        for n in extra:
            print(f"certs/{n}: not in ROOTS")
        return 1 if bad or extra else 0
    CERTS.mkdir(exist_ok=True)
    for n, data in want.items():
        (CERTS / n).write_bytes(data)
        print(f"{len(data):6d} bytes  certs/{n}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
