"""Mirror names and desired mirror objects."""

import copy
import threading

import pytest

import mc

CLUSTER = "east"
IDENTITY = "linkerd-gateway.linkerd-multicluster.serviceaccount.identity.linkerd.cluster.local"


@pytest.fixture(scope="module")
def link():
    return mc.Link.from_dict({
        "metadata": {"name": CLUSTER, "namespace": "linkerd-multicluster"},
        "spec": {
            "targetClusterName": CLUSTER,
            "gatewayAddress": "203.0.113.10",
            "gatewayPort": "4143",
            "gatewayIdentity": IDENTITY,
            "probeSpec": {"path": "/ready", "port": "4191", "period": "3s"},
            "selector": {"matchLabels": {"mirror.linkerd.io/exported": "true"}},
            "remoteDiscoverySelector": {"matchLabels": {"mirror.linkerd.io/exported": "remote-discovery"}},
            "excludedLabels": ["team.example/*"],
            "excludedAnnotations": ["note"],
        },
    })


def service(name="web", namespace="shop", export="true", **spec):
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {
            "name": name,
            "namespace": namespace,
            "resourceVersion": "42",
            "labels": {"mirror.linkerd.io/exported": export, "app": name, "team.example/owner": "me"},
            "annotations": {"note": "dropped", "config.linkerd.io/opaque-ports": "5432", "kept": "yes"},
        },
        "spec": {"ports": [{"name": "http", "port": 80, "targetPort": 8080, "protocol": "TCP",
                            "nodePort": 30080}], **spec},
    }


def endpoints(ready=True, name="web", namespace="shop"):
    key = "addresses" if ready else "notReadyAddresses"
    return {
        "apiVersion": "v1",
        "kind": "Endpoints",
        "metadata": {"name": name, "namespace": namespace},
        "subsets": [{key: [{"ip": "10.0.0.1"}], "ports": [{"name": "http", "port": 8080}]}],
    }


# --- names -------------------------------------------------------------------------------------


def test_names():
    assert mc.mirror_name("web", "east") == "web-east"
    assert mc.endpoint_mirror_name("web-0", "east") == "web-0-east"
    assert mc.federated_name("web") == "web-federated"
    assert mc.probe_service_name("east") == "mc-probe-east"


def test_long_names_are_shortened_deterministically():
    long = "a" * 60
    name = mc.mirror_name(long, "east")
    assert len(name) <= 63 and name.startswith("a" * 20)
    assert name == mc.mirror_name(long, "east")
    assert name != mc.mirror_name(long, "west")
    assert name != mc.mirror_name(long + "b", "east")


def test_remote_name_and_ownership(link):
    long = "svc-" + "x" * 55  # a valid Service name whose mirror name needs shortening
    svc, _ = mc.desired_mirror(service(long), endpoints(name=long), link, ["203.0.113.10"], True)
    assert len(svc["metadata"]["name"]) <= 63
    assert mc.remote_name(svc, CLUSTER) == ("shop", long)
    assert mc.remote_name(svc, "west") is None
    assert mc.ownership(svc, CLUSTER) == "ours"
    assert mc.ownership(svc, "west") == "other-cluster"
    assert mc.ownership(service(), CLUSTER) == "foreign"
    # Upstream mirrors have no original-name annotation: the name is derived.
    assert mc.remote_name({"metadata": {"name": "web-east", "namespace": "shop"}}, CLUSTER) == ("shop", "web")
    with pytest.raises(mc.KindError, match="has no metadata"):
        mc.ownership({"name": "x"}, CLUSTER)


# --- desired_mirror ----------------------------------------------------------------------------


def test_gateway_mirror(link):
    svc, eps = mc.desired_mirror(service(), endpoints(), link, ["203.0.113.10"], True)
    assert svc["kind"] == "Service" and svc["apiVersion"] == "v1"
    meta = svc["metadata"]
    assert (meta["name"], meta["namespace"]) == ("web-east", "shop")
    assert meta["labels"] == {
        "app": "web",
        "mirror.linkerd.io/cluster-name": CLUSTER,
        "mirror.linkerd.io/mirrored-service": "true",
    }
    assert meta["annotations"]["config.linkerd.io/opaque-ports"] == "5432"
    assert meta["annotations"]["kept"] == "yes"
    assert "note" not in meta["annotations"]
    assert meta["annotations"]["mirror.linkerd.io/remote-svc-fq-name"] == "web.shop.svc.cluster.local"
    assert meta["annotations"]["mirror.linkerd.io/remote-resource-version"] == "42"
    assert svc["spec"]["ports"] == [{"name": "http", "port": 80, "targetPort": 8080, "protocol": "TCP"}]
    assert "selector" not in svc["spec"]
    assert eps["kind"] == "Endpoints" and eps["metadata"]["name"] == "web-east"
    assert eps["metadata"]["annotations"]["mirror.linkerd.io/remote-gateway-identity"] == IDENTITY
    assert eps["subsets"] == [{"addresses": [{"ip": "203.0.113.10"}], "ports": [{"name": "http", "port": 4143, "protocol": "TCP"}]}]


def test_gateway_dead_and_no_ready_endpoints(link):
    _, dead = mc.desired_mirror(service(), endpoints(), link, ["203.0.113.10", "203.0.113.11"], False)
    subset = dead["subsets"][0]
    assert "addresses" not in subset
    assert subset["notReadyAddresses"] == [{"ip": "203.0.113.10"}, {"ip": "203.0.113.11"}]
    for remote_eps in (None, endpoints(ready=False)):
        _, eps = mc.desired_mirror(service(), remote_eps, link, ["203.0.113.10"], True)
        assert not eps.get("subsets")


def test_endpoint_slices_are_accepted(link):
    slice_ = {
        "apiVersion": "discovery.k8s.io/v1",
        "kind": "EndpointSlice",
        "metadata": {"name": "web-abc", "namespace": "shop"},
        "addressType": "IPv4",
        "endpoints": [{"addresses": ["10.0.0.1"], "conditions": {"ready": True}}],
    }
    _, eps = mc.desired_mirror(service(), [slice_], link, ["203.0.113.10"], True)
    assert eps["subsets"][0]["addresses"] == [{"ip": "203.0.113.10"}]
    _, none = mc.desired_mirror(service(), [], link, ["203.0.113.10"], True)
    assert not none.get("subsets")


def test_remote_discovery_mirror_has_no_endpoints(link):
    svc, eps = mc.desired_mirror(service(export="remote-discovery"), endpoints(), link, ["203.0.113.10"], True)
    assert eps is None
    assert svc["metadata"]["labels"]["multicluster.linkerd.io/remote-discovery"] == CLUSTER
    assert svc["metadata"]["labels"]["multicluster.linkerd.io/remote-service"] == "web"


def test_not_a_service_raises_type_error(link):
    for bad in ({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "x"}}, {"spec": {}}, ["not", "a", "dict"]):
        with pytest.raises(TypeError) as info:
            mc.desired_mirror(bad, None, link, ["203.0.113.10"], True)
        assert isinstance(info.value, mc.Error)
        assert "expected a Service" in str(info.value)
    malformed = service()
    malformed["spec"]["ports"][0]["port"] = "eighty"
    with pytest.raises(mc.KindError, match="Service"):
        mc.desired_mirror(malformed, None, link, ["203.0.113.10"], True)
    with pytest.raises(mc.KindError, match="expected a Endpoints|expected an Endpoints|Endpoints"):
        mc.desired_mirror(service(), service(), link, ["203.0.113.10"], True)


def test_mirror_errors(link):
    with pytest.raises(mc.MirrorError, match="is not exported to east"):
        mc.desired_mirror(service(export="no"), None, link, ["203.0.113.10"], True)
    no_ports = service()
    no_ports["spec"]["ports"] = []
    with pytest.raises(mc.MirrorError) as info:
        mc.desired_mirror(no_ports, None, link, ["203.0.113.10"], True)
    assert info.value.field == "spec.ports"
    gatewayless = mc.Link.from_dict({"spec": {"targetClusterName": "flat",
                                              "selector": {"matchLabels": {"mirror.linkerd.io/exported": "true"}}}})
    with pytest.raises(mc.MirrorError, match="has no gateway"):
        mc.desired_mirror(service(), None, gatewayless, [], True)
    with pytest.raises(ValueError, match=r"gateway_ips\[1\]"):
        mc.desired_mirror(service(), None, link, ["203.0.113.10", "gw.example.com"], True)
    invalid_link = mc.Link.from_dict({"spec": {"targetClusterName": "east", "gatewayAddress": "1.2.3.4"}})
    with pytest.raises(mc.LinkError):
        mc.desired_mirror(service(), None, invalid_link, ["1.2.3.4"], True)


def test_needs_update(link):
    svc, eps = mc.desired_mirror(service(), endpoints(), link, ["203.0.113.10"], True)
    actual = copy.deepcopy(svc)
    actual["spec"].update({"clusterIP": "198.19.0.10", "type": "ClusterIP", "sessionAffinity": "None"})
    actual["metadata"].update({"resourceVersion": "7", "uid": "u-1"})
    assert not mc.needs_update(svc, actual)
    actual["metadata"]["labels"]["app"] = "changed"
    assert mc.needs_update(svc, actual)
    assert not mc.needs_update(eps, copy.deepcopy(eps))
    _, dead = mc.desired_mirror(service(), endpoints(), link, ["203.0.113.10"], False)
    assert mc.needs_update(dead, eps)
    with pytest.raises(mc.KindError, match="neither Service nor Endpoints"):
        mc.needs_update({"kind": "Pod"}, {})


def test_desired_mirrors_batch(link):
    remote = [(service(f"svc-{i}"), endpoints(name=f"svc-{i}")) for i in range(50)]
    out = mc.desired_mirrors(remote, link, ["203.0.113.10"], True)
    assert [s["metadata"]["name"] for s, _ in out] == [f"svc-{i}-east" for i in range(50)]
    assert out[7] == mc.desired_mirror(*remote[7], link, ["203.0.113.10"], True)
    with pytest.raises(mc.KindError, match=r"remote\[1\]"):
        mc.desired_mirrors([remote[0], "nope"], link, ["203.0.113.10"], True)


def test_desired_mirror_is_thread_safe(link):
    results = {}

    def work(i):
        results[i] = mc.desired_mirror(service(f"s{i}"), endpoints(name=f"s{i}"), link, ["203.0.113.10"], True)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(r[0]["metadata"]["name"] for r in results.values()) == sorted(f"s{i}-east" for i in range(8))


def test_probe_objects(link):
    svc, eps = mc.probe_objects(link, ["203.0.113.10"])
    assert svc["metadata"]["name"] == "mc-probe-east"
    assert svc["metadata"]["namespace"] == "linkerd-multicluster"
    assert svc["metadata"]["labels"]["mirror.linkerd.io/mirrored-gateway"] == "true"
    assert mc.ownership(svc, CLUSTER) == "ours"
    assert svc["spec"]["ports"][0]["port"] == 4191
    assert eps["subsets"][0]["addresses"] == [{"ip": "203.0.113.10"}]
    assert eps["subsets"][0]["ports"][0]["port"] == 4191
    assert eps["metadata"]["annotations"]["mirror.linkerd.io/remote-gateway-identity"] == IDENTITY
    svc2, none = mc.probe_objects(link, [], namespace="elsewhere")
    assert svc2["metadata"]["namespace"] == "elsewhere" and none is None
    unprobed = mc.Link.from_dict({"spec": {"targetClusterName": "east", "gatewayAddress": "1.2.3.4",
                                           "gatewayPort": "4143"}})
    assert mc.probe_objects(unprobed, ["1.2.3.4"]) == (None, None)


def test_compute_mirror_gateway_and_remote_discovery(link):
    d = mc.compute_mirror(service(), endpoints(), link, ["203.0.113.10"], True)
    assert (d.name, d.kind, d.shortened) == ("web-east", "gateway", False)
    assert (d.service, d.endpoints) == mc.desired_mirror(service(), endpoints(), link, ["203.0.113.10"], True)
    assert d.endpoint_mirrors == []
    rd = mc.compute_mirror(service(export="remote-discovery"), None, link, [], True)
    assert rd.kind == "remote-discovery" and rd.endpoints is None
    long = mc.compute_mirror(service("s" * 60), None, link, ["203.0.113.10"], True)
    assert long.shortened and long.name == long.service["metadata"]["name"]
    assert "DesiredMirror(name=" in repr(d)


def test_headless_mirrors(link):
    headless_svc = service("db", clusterIP="None")
    eps = endpoints(name="db")
    eps["subsets"][0]["addresses"] = [{"ip": "10.0.0.1", "hostname": "db-0"},
                                      {"ip": "10.0.0.2", "hostname": "db-1"}]
    # Without the flag, a headless remote gets an ordinary gateway mirror.
    assert mc.compute_mirror(headless_svc, eps, link, ["203.0.113.10"], True).kind == "gateway"
    d = mc.compute_mirror(headless_svc, eps, link, ["203.0.113.10"], True, headless=True)
    assert d.kind == "headless" and d.endpoints is None
    assert d.service["spec"]["clusterIP"] == "None"
    names = [s["metadata"]["name"] for s, _ in d.endpoint_mirrors]
    assert names == ["db-0-east", "db-1-east"]
    host_svc, host_eps = d.endpoint_mirrors[0]
    assert host_svc["metadata"]["labels"]["mirror.linkerd.io/headless-mirror-svc-name"] == "db-east"
    assert host_eps["subsets"][0]["addresses"] == [{"ip": "203.0.113.10"}]
    mirror_eps = mc.headless_endpoints(d.service, [("db-1", "198.19.0.12"), ("db-0", "198.19.0.11")])
    assert mirror_eps["metadata"]["name"] == "db-east"
    addresses = mirror_eps["subsets"][0]["addresses"]
    assert [(a["hostname"], a["ip"]) for a in addresses] == [("db-0", "198.19.0.11"), ("db-1", "198.19.0.12")]
    with pytest.raises(ValueError, match=r"hosts\[0\]"):
        mc.headless_endpoints(d.service, [("db-0", "not-an-ip")])
