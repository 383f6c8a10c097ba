"""mc.Link: from and to dicts and YAML, validation with field paths, typed properties."""

import copy
from datetime import timedelta

import pytest
import yaml

import mc

LINK_YAML = """
apiVersion: multicluster.linkerd.io/v1alpha3
kind: Link
metadata:
  name: east
  namespace: linkerd-multicluster
spec:
  targetClusterName: east
  targetClusterDomain: cluster.local
  targetClusterLinkerdNamespace: linkerd
  clusterCredentialsSecret: cluster-credentials-east
  gatewayAddress: 203.0.113.10,gw.example.com
  gatewayPort: "4143"
  gatewayIdentity: linkerd-gateway.linkerd-multicluster.serviceaccount.identity.linkerd.cluster.local
  probeSpec:
    path: /ready
    port: "4191"
    period: 1m30s
    timeout: "10"
    failureThreshold: "5"
  selector:
    matchLabels:
      mirror.linkerd.io/exported: "true"
  remoteDiscoverySelector:
    matchLabels:
      mirror.linkerd.io/exported: remote-discovery
  federatedServiceSelector:
    matchLabels:
      mirror.linkerd.io/federated: member
  excludedLabels: ["team.example/*"]
  excludedAnnotations: ["secret.example/key"]
"""


@pytest.fixture()
def link_dict():
    return yaml.safe_load(LINK_YAML)


def test_from_yaml_typed_properties():
    link = mc.Link.from_yaml(LINK_YAML)
    link.validate()
    assert (link.name, link.namespace) == ("east", "linkerd-multicluster")
    assert link.cluster_name == "east"
    assert link.cluster_domain == "cluster.local"
    assert link.linkerd_namespace == "linkerd"
    assert link.credentials_secret == "cluster-credentials-east"
    assert link.gateway_addresses == ["203.0.113.10", "gw.example.com"]
    assert link.gateway_port == 4143 and isinstance(link.gateway_port, int)
    assert link.gateway_identity.startswith("linkerd-gateway.")
    assert link.probe_path == "/ready"
    assert link.probe_port == 4191
    assert link.probe_period == timedelta(minutes=1, seconds=30)
    assert link.probe_timeout == timedelta(seconds=10)
    assert link.probe_failure_threshold == 5
    assert link.selector == mc.Selector("mirror.linkerd.io/exported=true")
    assert link.remote_discovery_selector.matches({"mirror.linkerd.io/exported": "remote-discovery"})
    assert str(link.federated_selector) == "mirror.linkerd.io/federated=member"
    assert link.excluded_labels == ["team.example/*"]
    assert link.excluded_annotations == ["secret.example/key"]
    assert link.status is None
    assert repr(link) == "Link(name='east', cluster='east')"


def test_dict_and_yaml_round_trip(link_dict):
    link = mc.Link.from_dict(link_dict)
    assert link == mc.Link.from_yaml(LINK_YAML)
    out = link.to_dict()
    assert out["apiVersion"] == "multicluster.linkerd.io/v1alpha3" and out["kind"] == "Link"
    assert out["spec"] == link_dict["spec"]
    assert link.spec == link_dict["spec"]
    assert mc.Link.from_dict(out) == link
    assert mc.Link.from_yaml(link.to_yaml()) == link
    assert yaml.safe_load(link.to_yaml()) == out


def test_defaults_and_older_versions(link_dict):
    minimal = {
        "apiVersion": "multicluster.linkerd.io/v1alpha1",
        "kind": "Link",
        "metadata": {"name": "west"},
        "spec": {"targetClusterName": "west", "gatewayAddress": "198.51.100.7", "gatewayPort": "4143",
                 "probeSpec": {"path": "/ready", "port": "4191"}},
    }
    link = mc.Link.from_dict(minimal)
    assert link.cluster_domain == "cluster.local"
    assert link.credentials_secret == "cluster-credentials-west"
    assert link.probe_period == timedelta(seconds=3)
    assert link.probe_timeout == timedelta(seconds=30)
    assert link.probe_failure_threshold == 3
    assert link.selector.is_empty()
    # apiVersion and kind may be left out.
    assert mc.Link.from_dict({"spec": minimal["spec"]}).gateway_port == 4143


def test_gateway_less_link():
    link = mc.Link.from_dict({"spec": {"targetClusterName": "flat",
                                       "remoteDiscoverySelector": {"matchLabels": {"a": "b"}}}})
    assert link.gateway_port is None and link.gateway_addresses == [] and link.gateway_identity is None
    assert link.probe_period is None and link.probe_path is None


@pytest.mark.parametrize(
    "path,value,field,message",
    [
        (("spec", "gatewayPort"), "70000", "spec.gatewayPort", "is not a port"),
        (("spec", "targetClusterName"), "East_1", "spec.targetClusterName", "DNS-1123 label"),
        (("spec", "gatewayAddress"), "1.2.3.4,,x", "spec.gatewayAddress", "empty entry"),
        (("spec", "probeSpec", "period"), "soon", "spec.probeSpec.period", "soon"),
        (("spec", "probeSpec", "path"), "ready", "spec.probeSpec.path", "does not start with '/'"),
        (("spec", "probeSpec", "failureThreshold"), "0", "spec.probeSpec.failureThreshold", "at least 1"),
        (("spec", "gatewayIdentity"), "not an identity!", "spec.gatewayIdentity", "not a DNS name"),
    ],
)
def test_validate_names_the_field(link_dict, path, value, field, message):
    d = copy.deepcopy(link_dict)
    target = d
    for key in path[:-1]:
        target = target[key]
    target[path[-1]] = value
    link = mc.Link.from_dict(d)  # reading does not validate
    with pytest.raises(mc.LinkError) as info:
        link.validate()
    assert info.value.field == field
    assert message in str(info.value)
    assert str(info.value).startswith(field)
    # Typed properties validate too.
    with pytest.raises(mc.LinkError):
        link.gateway_port


def test_missing_fields(link_dict):
    del link_dict["spec"]["gatewayPort"]
    with pytest.raises(mc.LinkError, match="spec.gatewayPort is missing") as info:
        mc.Link.from_dict(link_dict).validate()
    assert info.value.field == "spec.gatewayPort"
    with pytest.raises(mc.LinkError) as info:
        mc.Link.from_dict({"spec": {}}).cluster_name
    assert info.value.field == "spec.targetClusterName"


def test_bad_selector_in_link_names_its_path(link_dict):
    link_dict["spec"]["selector"] = {"matchExpressions": [{"key": "a", "operator": "Maybe"}]}
    with pytest.raises(mc.SelectorError) as info:
        mc.Link.from_dict(link_dict).validate()
    assert info.value.field == "spec.selector.matchExpressions[0].operator"


def test_wrong_kind_and_malformed(link_dict):
    with pytest.raises(mc.KindError, match='kind "Service"') as info:
        mc.Link.from_dict({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "x"}})
    assert isinstance(info.value, TypeError) and isinstance(info.value, mc.Error)
    link_dict["spec"]["gatewayPort"] = 4143  # a number where the wire has a string
    with pytest.raises(mc.KindError, match="Link"):
        mc.Link.from_dict(link_dict)
    with pytest.raises(mc.KindError):
        mc.Link.from_yaml("a: [")
    with pytest.raises(TypeError, match="cannot be converted to JSON"):
        mc.Link.from_dict({"spec": {"targetClusterName": object()}})
    with pytest.raises(TypeError, match="key 1 is not a string"):
        mc.Link.from_dict({1: "x"})


def test_crd():
    crd = mc.Link.crd()
    assert crd["kind"] == "CustomResourceDefinition"
    assert crd["metadata"]["name"] == "links.multicluster.linkerd.io"
    assert [v["name"] for v in crd["spec"]["versions"]] == ["v1alpha1", "v1alpha2", "v1alpha3"]
