"""mc.pki: trust anchors, issuers and leaf certificates."""

import shutil
import subprocess
from datetime import timedelta

import pytest

import mc

from conftest import days

IDENTITY = "web.shop.serviceaccount.identity.linkerd.cluster.local"


def test_trust_anchor_defaults(root):
    assert root.cert_pem.startswith("-----BEGIN CERTIFICATE-----")
    assert root.key_pem.startswith("-----BEGIN PRIVATE KEY-----")
    cert, key = root
    assert (cert, key) == (root.cert_pem, root.key_pem)
    anchor = mc.TrustBundle.from_pem(root.cert_pem).anchors[0]
    assert anchor.subject == "CN=" + mc.pki.DEFAULT_ANCHOR_CN
    assert anchor.not_after - anchor.not_before == mc.pki.DEFAULT_ANCHOR_VALIDITY
    assert "redacted" in repr(root) and "PRIVATE" not in repr(root)


def test_every_anchor_is_new(root):
    again = mc.pki.create_trust_anchor()
    assert again != root
    assert not mc.TrustBundle.from_pem(again.cert_pem).shares_anchor(mc.TrustBundle.from_pem(root.cert_pem))


def test_issuer_and_leaf_chain(root, issuer, tmp_path):
    leaf = mc.pki.issue_leaf(issuer, IDENTITY, validity=timedelta(hours=2))
    chain = leaf.chain_pem(issuer)
    assert chain.count("BEGIN CERTIFICATE") == 2
    assert chain.startswith(leaf.cert_pem)
    openssl = shutil.which("openssl")
    if openssl is None:
        pytest.fail("openssl is required to verify the chain")
    (tmp_path / "root.pem").write_text(root.cert_pem)
    (tmp_path / "issuer.pem").write_text(issuer.cert_pem)
    (tmp_path / "leaf.pem").write_text(leaf.cert_pem)
    out = subprocess.run(
        [openssl, "verify", "-CAfile", tmp_path / "root.pem", "-untrusted", tmp_path / "issuer.pem",
         tmp_path / "leaf.pem"],
        capture_output=True, text=True,
    )
    assert out.returncode == 0, out.stderr
    text = subprocess.run(
        [openssl, "x509", "-noout", "-text", "-in", tmp_path / "leaf.pem"],
        capture_output=True, text=True, check=True,
    ).stdout
    assert f"DNS:{IDENTITY}" in text
    assert "TLS Web Server Authentication, TLS Web Client Authentication" in text
    issuer_text = subprocess.run(
        [openssl, "x509", "-noout", "-text", "-in", tmp_path / "issuer.pem"],
        capture_output=True, text=True, check=True,
    ).stdout
    assert "CA:TRUE, pathlen:0" in issuer_text
    assert "CN=" + mc.pki.DEFAULT_ISSUER_CN in issuer_text.replace("CN = ", "CN=")


def test_leaf_usages_and_window(issuer, now):
    leaf = mc.pki.issue_leaf(issuer, IDENTITY, not_before=now, not_after=now + days(1), client_auth=False)
    assert leaf.cert_pem != mc.pki.issue_leaf(issuer, IDENTITY).cert_pem
    with pytest.raises(mc.PkiError, match="both are false") as info:
        mc.pki.issue_leaf(issuer, IDENTITY, server_auth=False, client_auth=False)
    assert info.value.field == "LeafOptions.server_auth/client_auth"


def test_issuer_custom_name_and_validity(root, now):
    issuer = mc.pki.create_issuer(root, "issuer.east", not_before=now, validity=days(7))
    # An issuer is a CA, so it parses as a bundle (the summary is the same code).
    anchor = mc.TrustBundle.from_pem(issuer.cert_pem).anchors[0]
    assert anchor.subject == "CN=issuer.east"
    assert anchor.not_after == now + days(7)


def test_leaf_rejects_an_invalid_identity(issuer):
    with pytest.raises(mc.IdentityError, match="is not a valid DNS name"):
        mc.pki.issue_leaf(issuer, "Not A DNS Name!")


def test_window_errors(root, now):
    with pytest.raises(mc.PkiError) as info:
        mc.pki.create_trust_anchor(not_before=now, not_after=now - days(1))
    assert str(info.value).startswith("certificate options: AnchorOptions")
    with pytest.raises(ValueError, match="not both"):
        mc.pki.create_issuer(root, not_after=now + days(1), validity=days(1))


def test_unusable_signer_is_a_pki_error(root, other_root):
    with pytest.raises(mc.PkiError, match="signer"):
        mc.pki.create_issuer(mc.pki.CertifiedKey("not a certificate", root.key_pem))
    with pytest.raises(mc.PkiError):
        mc.pki.create_issuer(mc.pki.CertifiedKey(root.cert_pem, "garbage"))
