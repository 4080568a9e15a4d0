# SPDX-License-Identifier: MIT
"""Test certificates for the local mail servers (CPython, needs `cryptography`).

make_certs(directory) writes, and returns the paths of (keys of the dict are the file names,
plus "dir"):

    ca.pem, ca.der              the test CA (self-signed, CA:TRUE); DER because MicroPython's
                                tls.SSLContext.load_verify_locations(cadata=...) only takes DER
    server.pem, server.key      signed by the CA, SAN localhost, 127.0.0.1, ::1
    untrusted.pem/.key          same names, signed by a different CA that nobody trusts
    wrongname.pem/.key          signed by the good CA, SAN only wrong.example

Files already present are reused, so a session of tests (or `make demo`) generates them once.
Keys are EC P-256: fast to generate, small to verify on a board, supported by mbedTLS.

    python tools/certs.py DIR
"""

import datetime
import ipaddress
import sys
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

FILES = (
    "ca.pem", "ca.der", "server.pem", "server.key",
    "untrusted.pem", "untrusted.key", "wrongname.pem", "wrongname.key",
)
GOOD_NAMES = ("localhost", "127.0.0.1", "::1")


def _name(cn):
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])


def _san(names):
    out = []
    for n in names:
        try:
            out.append(x509.IPAddress(ipaddress.ip_address(n)))
        except ValueError:
            out.append(x509.DNSName(n))
    return x509.SubjectAlternativeName(out)


def _builder(subject, issuer, pub):
    # Valid from yesterday: a board whose clock lags a little still accepts the certificate.
    now = datetime.datetime.now(datetime.timezone.utc)
    return (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer)
        .public_key(pub)
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=3650))
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(pub), critical=False)
    )


def _make_ca(cn):
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (
        _builder(_name(cn), _name(cn), key.public_key())
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=False, content_commitment=False, key_encipherment=False,
                data_encipherment=False, key_agreement=False, key_cert_sign=True,
                crl_sign=True, encipher_only=False, decipher_only=False,
            ),
            critical=True,
        )
        .sign(key, hashes.SHA256())
    )
    return cert, key


def _make_leaf(ca_cert, ca_key, names):
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (
        _builder(_name(names[0]), ca_cert.subject, key.public_key())
        # Python 3.13+ verifies with VERIFY_X509_STRICT, which wants these extensions.
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(_san(names), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    return cert, key


def _pem(cert):
    return cert.public_bytes(serialization.Encoding.PEM)


def _key(key):
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def make_certs(directory):
    """Create (or reuse) the test certificates in `directory`; return {file name: Path}."""
    d = Path(directory)
    paths = {name: d / name for name in FILES}
    paths["dir"] = d
    if all(paths[name].exists() for name in FILES):
        return paths
    d.mkdir(parents=True, exist_ok=True)
    ca, ca_key = _make_ca("smtp_client test CA")
    other_ca, other_key = _make_ca("smtp_client untrusted CA")
    server, server_key = _make_leaf(ca, ca_key, GOOD_NAMES)
    untrusted, untrusted_key = _make_leaf(other_ca, other_key, GOOD_NAMES)
    wrong, wrong_key = _make_leaf(ca, ca_key, ("wrong.example",))
    data = {
        "ca.pem": _pem(ca),
        "ca.der": ca.public_bytes(serialization.Encoding.DER),
        "server.pem": _pem(server),
        "server.key": _key(server_key),
        "untrusted.pem": _pem(untrusted),
        "untrusted.key": _key(untrusted_key),
        "wrongname.pem": _pem(wrong),
        "wrongname.key": _key(wrong_key),
    }
    # All files come from one run: a half-written set is regenerated as a whole.
    for name, blob in data.items():
        paths[name].write_bytes(blob)
    return paths


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit("usage: python tools/certs.py DIR")
    for name, path in make_certs(sys.argv[1]).items():
        print(f"{name:14} {path}")
