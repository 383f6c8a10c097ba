"""mc.Identity and mc.validate_dns_name."""

import pytest

import mc


def test_parse_format_and_parts():
    text = "web.shop.serviceaccount.identity.linkerd.cluster.local"
    identity = mc.Identity.parse(text)
    assert str(identity) == text
    assert (identity.service_account, identity.namespace) == ("web", "shop")
    assert (identity.control_plane_namespace, identity.trust_domain) == ("linkerd", "cluster.local")
    assert identity == mc.Identity("web", "shop")
    assert hash(identity) == hash(mc.Identity("web", "shop", "linkerd", "cluster.local"))
    assert repr(identity) == f"Identity.parse('{text}')"
    assert str(mc.Identity("a", "b", "cp", "example.org")) == "a.b.serviceaccount.identity.cp.example.org"


def test_well_known_identities():
    assert str(mc.Identity.gateway()) == (
        "linkerd-gateway.linkerd-multicluster.serviceaccount.identity.linkerd.cluster.local"
    )
    assert str(mc.Identity.gateway("example.org")).endswith(".linkerd.example.org")
    assert str(mc.Identity.controller("east")).startswith("controller-east.linkerd-multicluster.")


def test_errors():
    with pytest.raises(mc.IdentityError, match="is not a Linkerd identity"):
        mc.Identity.parse("web.shop.svc.cluster.local")
    with pytest.raises(mc.IdentityError):
        mc.Identity("web", "shop", "linkerd", "cluster..local")
    with pytest.raises(mc.IdentityError, match="is not a valid DNS name"):
        mc.validate_dns_name("-bad-.example")
    mc.validate_dns_name("web.shop.svc.cluster.local")


def test_leaf_for_an_identity_object(issuer):
    identity = mc.Identity("web", "shop")
    leaf = mc.pki.issue_leaf(issuer, str(identity))
    assert leaf.cert_pem.startswith("-----BEGIN CERTIFICATE-----")
