# SPDX-License-Identifier: MIT
"""certs/: the provider roots in DER (made by tools/cacerts.py) and loading several of them."""

import datetime

import pytest
from cryptography import x509

import cacerts
from harness import ROOT, run_ok

DERS = sorted((ROOT / "certs").glob("*.der"))


def test_certs_are_the_listed_roots():
    assert sorted(p.name for p in DERS) == sorted(cacerts.ROOTS)
    for p in ("isrg-root-x1.der", "gts-root-r1.der", "digicert-global-root-g2.der"):
        assert (ROOT / "certs" / p).exists()


@pytest.mark.parametrize("path", DERS, ids=lambda p: p.name)
def test_each_is_a_valid_self_signed_ca(path):
    cert = x509.load_der_x509_certificate(path.read_bytes())
    assert cert.issuer == cert.subject
    if cert.signature_hash_algorithm.name != "sha1":  # old roots: trusted as anchors only
        cert.verify_directly_issued_by(cert)  # the self-signature is good
    assert cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    now = datetime.datetime.now(datetime.timezone.utc)
    assert cert.not_valid_before_utc < now < cert.not_valid_after_utc, "expired: replace it"


def test_certs_match_debians_store():
    if not cacerts.CA_DIR.is_dir():
        pytest.skip(f"no {cacerts.CA_DIR} (apt-get install ca-certificates)")
    assert cacerts.main(["--check"]) == 0, "certs/ is stale: run python tools/cacerts.py"


def test_micropython_trusts_a_list_of_ders(mailserver, certs):
    # MicroPython's tls takes one DER per load_verify_locations call; create_context makes one
    # call per item, so the test CA after two real roots is still trusted, and a list of
    # only real roots (with every certs/ file loaded) refuses the test server.
    srv = mailserver(tls="implicit")
    out = run_ok(f"""
        import smtp_client as sc
        names = {[p.name for p in DERS]!r}
        roots = [open("certs/" + n, "rb").read() for n in names]
        test_ca = open({str(certs["ca.der"])!r}, "rb").read()
        s = sc.SMTP_SSL({srv.host!r}, {srv.port}, context=sc.create_context(
            cadata=[roots[0], roots[1], test_ca]), timeout=10)
        print("ok", s.noop()[0])
        s.quit()
        try:
            sc.SMTP_SSL({srv.host!r}, {srv.port}, context=sc.create_context(cadata=roots),
                        timeout=10)
        except sc.SMTPTLSError:
            print("refused", len(roots))
    """)
    assert out.split() == ["ok", "250", "refused", str(len(DERS))]
