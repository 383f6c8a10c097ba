"""mc.TrustBundle, mc.Anchor, mc.BundleDiff and mc.LinkerdConfig."""

import hashlib
from datetime import datetime, timedelta, timezone

import pytest

import mc

from conftest import assert_releases_gil, days


def fingerprint(der):
    return ":".join(f"{b:02X}" for b in hashlib.sha256(der).digest())


# --- parsing -----------------------------------------------------------------------------------


def test_from_pem_accepts_str_bytes_and_bytearray(root):
    for data in (root.cert_pem, root.cert_pem.encode(), bytearray(root.cert_pem.encode())):
        bundle = mc.TrustBundle.from_pem(data)
        assert len(bundle) == 1
        assert bundle.anchors[0].subject == "CN=root.linkerd.cluster.local"


def test_from_pem_rejects_other_types():
    with pytest.raises(TypeError, match="str or bytes"):
        mc.TrustBundle.from_pem(42)


def test_from_pem_accepts_crlf_text_between_blocks_and_drops_duplicates(root, other_root):
    pem = (
        "Certificate:\n    Data: whatever openssl printed\n"
        + root.cert_pem
        + "\nsome text\n\n"
        + other_root.cert_pem
        + root.cert_pem
    ).replace("\n", "\r\n")
    bundle = mc.TrustBundle.from_pem(pem)
    assert [a.subject for a in bundle.anchors] == [
        "CN=root.linkerd.cluster.local",
        "CN=other.root.example",
    ]


def test_anchor_summary(root):
    bundle = mc.TrustBundle.from_pem(root.cert_pem)
    anchor = bundle.anchors[0]
    assert anchor.sans == []
    assert anchor.key_algorithm == "ECDSA P-256"
    assert anchor.fingerprint == fingerprint(anchor.der)
    assert anchor.not_before.tzinfo is not None
    assert anchor.not_after.utcoffset() == timedelta(0)
    # The default validity of a trust anchor is 10 years of 365 days.
    assert anchor.not_after - anchor.not_before == timedelta(days=3650)
    assert anchor.is_valid_at()
    assert not anchor.is_valid_at(anchor.not_after + timedelta(seconds=1))
    assert anchor == mc.TrustBundle.from_pem(root.cert_pem).anchors[0]
    assert hash(anchor) == hash(mc.TrustBundle.from_pem(root.cert_pem).anchors[0])
    assert "CN=root.linkerd.cluster.local" in repr(anchor)


def test_anchor_times_follow_the_requested_window(now):
    ca = mc.pki.create_trust_anchor(not_before=now - days(1), not_after=now + days(30))
    anchor = mc.TrustBundle.from_pem(ca.cert_pem).anchors[0]
    assert anchor.not_before == now - days(1)
    assert anchor.not_after == now + days(30)


def test_to_pem_round_trips(root, other_root):
    bundle = mc.TrustBundle.from_pem(root.cert_pem + other_root.cert_pem)
    text = bundle.to_pem()
    assert text.count("-----BEGIN CERTIFICATE-----") == 2
    assert mc.TrustBundle.from_pem(text) == bundle


# --- merge, diff, shares_anchor ----------------------------------------------------------------


def test_merge_keeps_order_and_is_idempotent(root, other_root):
    a = mc.TrustBundle.from_pem(root.cert_pem)
    b = mc.TrustBundle.from_pem(other_root.cert_pem)
    merged = a.merge(b)
    assert merged.anchors == a.anchors + b.anchors
    assert merged.merge(b) == merged
    assert b.merge(a).anchors == b.anchors + a.anchors


def test_diff_and_shares_anchor(root, other_root):
    third = mc.pki.create_trust_anchor("third.example")
    old = mc.TrustBundle.from_pem(root.cert_pem + other_root.cert_pem)
    new = mc.TrustBundle.from_pem(other_root.cert_pem + third.cert_pem)
    d = old.diff(new)
    assert [a.subject for a in d.added] == ["CN=third.example"]
    assert [a.subject for a in d.removed] == ["CN=root.linkerd.cluster.local"]
    assert [a.subject for a in d.common] == ["CN=other.root.example"]
    assert d and not d.is_empty()
    assert old.shares_anchor(new) and new.shares_anchor(old)
    assert not old.same_anchors(new)
    lone = mc.TrustBundle.from_pem(third.cert_pem)
    assert not mc.TrustBundle.from_pem(root.cert_pem).shares_anchor(lone)
    same = old.diff(mc.TrustBundle.from_pem(other_root.cert_pem + root.cert_pem))
    assert not same and same.is_empty() and len(same.common) == 2


def test_expiring_within(now):
    soon = mc.pki.create_trust_anchor("soon", not_before=now - days(1), validity=days(31))
    later = mc.pki.create_trust_anchor("later", not_before=now - days(1), validity=days(366))
    bundle = mc.TrustBundle.from_pem(soon.cert_pem + later.cert_pem)
    assert [a.subject for a in bundle.expiring_within(days(90))] == ["CN=soon"]
    assert len(bundle.expiring_within(days(400), now=now)) == 2
    assert bundle.expiring_within(days(1), now=now) == []
    with pytest.raises(ValueError, match="non-negative timedelta"):
        bundle.expiring_within(timedelta(days=-1))


# --- errors ------------------------------------------------------------------------------------


def test_no_certificate_is_a_pem_error():
    with pytest.raises(mc.PemError, match="no certificate found in 2 line") as info:
        mc.TrustBundle.from_pem("just some\ntext")
    assert isinstance(info.value, mc.Error)
    assert info.value.block is None


def test_bad_base64_names_block_and_line(root):
    broken = root.cert_pem.replace(root.cert_pem.splitlines()[2], "not*base64", 1)
    with pytest.raises(mc.PemError) as info:
        mc.TrustBundle.from_pem("intro\n" + broken)
    err = info.value
    assert (err.block, err.line) == (1, 4)
    assert "PEM block 1 (line 4): invalid base64" in str(err)
    assert "fix:" in str(err)


def test_private_key_block_is_refused_with_advice(root):
    with pytest.raises(mc.PemError, match="it is a private key") as info:
        mc.TrustBundle.from_pem(root.cert_pem + root.key_pem)
    assert (info.value.block, info.value.line) == (2, root.cert_pem.count("\n") + 1)


def test_truncated_block_is_refused(root):
    with pytest.raises(mc.PemError, match="is not closed"):
        mc.TrustBundle.from_pem(root.cert_pem[:200])


def test_garbage_der_is_refused():
    with pytest.raises(mc.PemError, match="not a valid X.509 certificate"):
        mc.TrustBundle.from_pem("-----BEGIN CERTIFICATE-----\nAQIDBA==\n-----END CERTIFICATE-----\n")


def test_leaf_is_not_a_trust_anchor(issuer):
    leaf = mc.pki.issue_leaf(issuer, "web.shop.serviceaccount.identity.linkerd.cluster.local")
    with pytest.raises(mc.PemError, match="is not a CA"):
        mc.TrustBundle.from_pem(leaf.cert_pem)


def test_expired_and_future_anchors(now):
    old = mc.pki.create_trust_anchor("old", not_before=now - days(30), not_after=now - days(1))
    with pytest.raises(mc.PemError, match='"CN=old" is expired') as info:
        mc.TrustBundle.from_pem(old.cert_pem)
    assert "rotate the trust anchor" in str(info.value)
    # Inspection tools can still read it, and an earlier `now` makes it valid.
    assert len(mc.TrustBundle.from_pem(old.cert_pem, check_validity=False)) == 1
    assert len(mc.TrustBundle.from_pem(old.cert_pem, now=now - days(2))) == 1
    future = mc.pki.create_trust_anchor("future", not_before=now + days(2), validity=days(10))
    with pytest.raises(mc.PemError, match="not yet valid"):
        mc.TrustBundle.from_pem(future.cert_pem)


def test_naive_now_is_refused(root):
    with pytest.raises(ValueError, match="naive"):
        mc.TrustBundle.from_pem(root.cert_pem, now=datetime.now())
    with pytest.raises(TypeError, match="expected a datetime"):
        mc.TrustBundle.from_pem(root.cert_pem, now="2020-01-01")


# --- linkerd-config ----------------------------------------------------------------------------


def indent(text, n):
    return "".join(" " * n + line + "\n" for line in text.splitlines())


def test_from_linkerd_config_top_level_and_global(root, other_root):
    top = "identityTrustAnchorsPEM: |\n" + indent(root.cert_pem + other_root.cert_pem, 2)
    bundle = mc.TrustBundle.from_linkerd_config(top + "identityTrustDomain: example.org\n")
    assert len(bundle) == 2
    legacy = "global:\n  identityTrustAnchorsPEM: |\n" + indent(root.cert_pem, 4)
    assert mc.TrustBundle.from_linkerd_config(legacy).anchors == bundle.anchors[:1]


def test_linkerd_config_fields(root):
    values = (
        "identityTrustAnchorsPEM: |\n"
        + indent(root.cert_pem, 2)
        + "global:\n  clusterDomain: example.org\n"
    )
    config = mc.LinkerdConfig.from_values_yaml(values)
    assert config.trust_domain == "example.org"
    assert config.cluster_domain == "example.org"
    assert config.trust_anchors_pem == root.cert_pem
    assert config.trust_bundle() == mc.TrustBundle.from_pem(root.cert_pem)


def test_linkerd_config_errors_name_the_field(root):
    with pytest.raises(mc.ConfigError) as info:
        mc.TrustBundle.from_linkerd_config("identityTrustDomain: x\n")
    assert info.value.field == "values.identityTrustAnchorsPEM"
    assert "is missing or empty" in str(info.value)
    with pytest.raises(mc.ConfigError, match="not valid YAML"):
        mc.TrustBundle.from_linkerd_config("a: [\n")
    with pytest.raises(mc.ConfigError, match="values.global.clusterDomain: is a list"):
        mc.LinkerdConfig.from_values_yaml("identityTrustAnchorsPEM: P\nglobal:\n  clusterDomain: [a]\n")
    # Anchors that are there but broken are a PEM error.
    with pytest.raises(mc.PemError):
        mc.TrustBundle.from_linkerd_config("identityTrustAnchorsPEM: not a pem\n")


# --- the GIL -----------------------------------------------------------------------------------


def test_parsing_a_large_bundle_releases_the_gil():
    """While one thread parses a large bundle, other threads run Python code."""
    roots = "".join(mc.pki.create_trust_anchor(f"root-{i}").cert_pem for i in range(200))
    bundle = assert_releases_gil(lambda scale: lambda: mc.TrustBundle.from_pem(roots * scale))
    assert len(bundle) == 200


def test_times_before_1970_and_far_future_convert():
    """Datetimes on both sides of the epoch cross the boundary without a panic."""
    old = datetime(1960, 1, 1, tzinfo=timezone.utc)
    far = datetime(2100, 1, 1, tzinfo=timezone.utc)
    ca = mc.pki.create_trust_anchor("ancient", not_before=old, not_after=far)
    anchor = mc.TrustBundle.from_pem(ca.cert_pem).anchors[0]
    assert anchor.not_before == old
    assert anchor.not_after == far
    assert anchor.is_valid_at(datetime(1965, 6, 1, tzinfo=timezone.utc))
    assert not anchor.is_valid_at(datetime(1959, 12, 31, tzinfo=timezone.utc))
