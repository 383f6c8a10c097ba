"""mc.render: install, allow and link manifests, as the CLI renders them."""

import base64
import json
import pathlib
import subprocess

import pytest
import yaml

import mc

from conftest import assert_releases_gil

REPO = pathlib.Path(__file__).resolve().parents[2]
GATEWAY = {
    "addresses": ["203.0.113.10"],
    "port": 4143,
    "identity": "linkerd-gateway.linkerd-multicluster.serviceaccount.identity.linkerd.cluster.local",
    "probePath": "/ready",
    "probePort": 4191,
    "probePeriod": "3s",
}
KUBECONFIG = "apiVersion: v1\nkind: Config\nclusters: []\n"


def kinds(objects):
    return [(o["kind"], o["metadata"]["name"]) for o in objects]


def test_install_defaults_render_in_apply_order():
    objects = mc.render.install()
    assert kinds(objects)[:2] == [
        ("Namespace", "linkerd-multicluster"),
        ("CustomResourceDefinition", "links.multicluster.linkerd.io"),
    ]
    gateway = next(o for o in objects if o["kind"] == "Service" and o["metadata"]["name"] == "linkerd-gateway")
    assert gateway["spec"]["type"] == "LoadBalancer"
    assert mc.render.install_defaults()["gateway"]["enabled"] is True
    # The CRD is the one mc.Link knows.
    crd = objects[1]
    assert crd == mc.Link.crd() or crd["spec"]["versions"] == mc.Link.crd()["spec"]["versions"]


def test_install_values_kwargs_snake_case_yaml_and_set():
    no_gateway = mc.render.install(gateway={"enabled": False})
    assert [o["metadata"]["name"] for o in no_gateway if o["kind"] == "Deployment"] == [
        "linkerd-multicluster-egress"
    ]
    no_egress = mc.render.install(egress={"enabled": False})
    assert [o["metadata"]["name"] for o in no_egress if o["kind"] == "Deployment"] == ["linkerd-gateway"]
    ns = mc.render.install(namespace="mc-system", identity_trust_domain="example.org")
    assert ns[0]["metadata"]["name"] == "mc-system"
    assert mc.render.install({"namespace": "mc-system"}) == mc.render.install(namespace="mc-system")
    assert mc.render.install(values_yaml="namespace: from-yaml\n")[0]["metadata"]["name"] == "from-yaml"
    # set wins over values_yaml, which wins over keyword arguments.
    out = mc.render.install(namespace="kw", values_yaml="namespace: file\n", set="namespace=flag")
    assert out[0]["metadata"]["name"] == "flag"
    ha = mc.render.install(ha=True)
    deployment = next(o for o in ha if o["kind"] == "Deployment")
    assert deployment["spec"]["replicas"] == 3
    assert any(o["kind"] == "PodDisruptionBudget" for o in ha)


def test_install_output_forms():
    objects = mc.render.install()
    text = mc.render.install(output="yaml")
    assert text.startswith("---\napiVersion: v1\nkind: Namespace\n")
    assert list(yaml.safe_load_all(text)) == objects
    assert json.loads(mc.render.install(output="json")) == {"apiVersion": "v1", "kind": "List", "items": objects}
    assert mc.render.to_yaml(objects) == text
    assert mc.render.to_json(objects) == mc.render.install(output="json")
    with pytest.raises(ValueError, match="output"):
        mc.render.install(output="toml")


def test_install_is_what_the_cli_prints():
    """The CLI and Python render through the same code: byte-identical output."""
    cli = subprocess.run(
        ["cargo", "run", "-q", "-p", "mc-cli", "--", "multicluster", "install", "--ignore-cluster", "--set", "gateway.replicas=2"],
        cwd=REPO, capture_output=True, text=True, timeout=900,
    )
    assert cli.returncode == 0, cli.stderr
    assert cli.stdout == mc.render.install(set="gateway.replicas=2", output="yaml")


def test_install_errors_name_the_value():
    with pytest.raises(mc.RenderError) as info:
        mc.render.install(gateway={"port": 0})
    assert info.value.field == "gateway.port"
    with pytest.raises(mc.RenderError, match="unknown field `bogus`"):
        mc.render.install(bogus=1)
    with pytest.raises(mc.RenderError, match="--set"):
        mc.render.install(set="no-equals-sign")
    with pytest.raises(mc.RenderError, match="not valid YAML"):
        mc.render.install(values_yaml="a: [")
    with pytest.raises(mc.RenderError, match="mapping"):
        mc.render.install(["not", "a", "mapping"])


def test_allow():
    objects = mc.render.allow(["team-a", "team-b"])
    assert kinds(objects)[0] == ("Namespace", "linkerd-multicluster")
    assert ("ServiceAccount", "team-a") in kinds(objects)
    assert ("ClusterRoleBinding", "team-b") in kinds(objects)
    assert mc.render.allow("team-a,team-b") == objects
    assert mc.render.allow(["x"], install_namespace=False)[0]["kind"] == "ServiceAccount"
    with pytest.raises(mc.RenderError):
        mc.render.allow(["Not_A_Name"])


def test_link_renders_a_link_mc_can_read():
    objects = mc.render.link(cluster_name="east", kubeconfig=KUBECONFIG, gateway=GATEWAY)
    by_kind = {o["kind"]: o for o in objects}
    secret = objects[0]
    assert secret["metadata"]["name"] == "cluster-credentials-east"
    assert base64.b64decode(secret["data"]["kubeconfig"]).decode() == KUBECONFIG
    link = mc.Link.from_dict(by_kind["Link"])
    assert link.cluster_name == "east"
    assert link.gateway_addresses == ["203.0.113.10"]
    assert link.gateway_port == 4143
    assert link.selector == mc.Selector("mirror.linkerd.io/exported=true")
    assert "Deployment" in by_kind
    only_link = mc.render.link({"clusterName": "east", "kubeconfig": KUBECONFIG}, gateway=GATEWAY,
                               controller=None, control_plane_secret=False)
    assert [o["kind"] for o in only_link] == ["Secret", "Link"]
    assert mc.render.link(cluster_name="east", kubeconfig=KUBECONFIG, gateway=None, output="yaml").count("kind: Link") == 1


def test_link_errors():
    with pytest.raises(mc.RenderError) as info:
        mc.render.link(cluster_name="East", kubeconfig=KUBECONFIG)
    assert info.value.field == "--cluster-name"
    with pytest.raises(mc.RenderError, match="kubeconfig"):
        mc.render.link(cluster_name="east")
    with pytest.raises(mc.RenderError, match="unknown field"):
        mc.render.link(cluster_name="east", kubeconfig=KUBECONFIG, gatway=GATEWAY)
    with pytest.raises(mc.Error, match="duration"):
        mc.render.link(cluster_name="east", kubeconfig=KUBECONFIG, gateway={**GATEWAY, "probePeriod": "soon"})


def test_rendering_releases_the_gil():
    """While one thread renders many ServiceAccount sets, other threads run Python code."""
    text = assert_releases_gil(
        lambda scale: lambda: mc.render.allow([f"sa-{i}" for i in range(50 * scale)], output="yaml")
    )
    assert "name: sa-49\n" in text
