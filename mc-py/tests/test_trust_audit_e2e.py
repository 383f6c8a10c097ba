"""End to end: examples/python/trust_audit.py against the real testbed (kube-apiserver + etcd).

The clusters east and west get a `linkerd` namespace and a `linkerd-config` ConfigMap whose
values carry anchors made with mc.pki; the example is run as a user would run it, with the real
kubectl, and its output and exit status are checked.
"""

import os
import pathlib
import subprocess
import sys
import tempfile
from datetime import timedelta

import pytest

import mc

REPO = pathlib.Path(__file__).resolve().parents[2]
EXAMPLE = REPO / "examples" / "python" / "trust_audit.py"


def kubectl_path():
    """The testbed's real kubectl; fails (never skips) when it is absent."""
    versions = (REPO / "tests" / "testbed" / "go" / "versions.env").read_text()
    version = next(line.split("=", 1)[1].strip() for line in versions.splitlines()
                   if line.startswith("KUBE_VERSION="))
    cache = pathlib.Path(os.environ.get("MC_CACHE", pathlib.Path.home() / ".cache" / "mc"))
    path = cache / "bin" / f"kubectl-{version}" / "kubectl"
    if not path.is_file():
        pytest.fail(f"kubectl not found at {path}: run `make setup` (scripts/build-kube-bins) first")
    return str(path)


@pytest.fixture(scope="module")
def testbed():
    """east and west, started with the mc-testbed binary and stopped afterwards."""
    kubectl = kubectl_path()
    with tempfile.TemporaryDirectory(prefix="mc-py-testbed-") as tmp:
        bed = pathlib.Path(tmp)
        testbed_cmd = ["cargo", "run", "-q", "-p", "mc-tests", "--bin", "mc-testbed", "--"]
        up = subprocess.run(testbed_cmd + ["up", "--dir", str(bed)], cwd=REPO,
                            capture_output=True, text=True, timeout=1200)
        assert up.returncode == 0, f"mc-testbed up failed:\n{up.stderr}"
        kubeconfig = up.stdout.strip().splitlines()[-1]
        assert pathlib.Path(kubeconfig).is_file(), up.stdout
        try:
            yield {"kubectl": kubectl, "kubeconfig": kubeconfig}
        finally:
            down = subprocess.run(testbed_cmd + ["down", "--dir", str(bed)], cwd=REPO,
                                  capture_output=True, text=True, timeout=300)
            assert down.returncode == 0, down.stderr


def kubectl(bed, context, *args, stdin=None):
    out = subprocess.run([bed["kubectl"], "--kubeconfig", bed["kubeconfig"], "--context", context, *args],
                         input=stdin, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    return out.stdout


def put_linkerd_config(bed, context, values_yaml):
    """Creates (or replaces) linkerd/linkerd-config with this `values` key."""
    manifest = kubectl(bed, context, "create", "configmap", "linkerd-config", "--namespace", "linkerd",
                       f"--from-literal=values={values_yaml}", "--dry-run=client", "--output=yaml")
    kubectl(bed, context, "apply", "--filename", "-", stdin=manifest)


def values(*anchors, trust_domain="cluster.local", legacy=False):
    """linkerd-config values holding these anchors, in the current or the legacy layout."""
    pem = "".join(a.cert_pem for a in anchors)
    body = "identityTrustAnchorsPEM: |\n" + "".join(f"  {line}\n" for line in pem.splitlines())
    body += f"identityTrustDomain: {trust_domain}\n"
    if legacy:
        body = "global:\n" + "".join(f"  {line}\n" for line in body.splitlines())
    return body


def run_example(bed, *extra):
    return subprocess.run(
        [sys.executable, str(EXAMPLE), "east", "west", "--kubeconfig", bed["kubeconfig"],
         "--kubectl", bed["kubectl"], *extra],
        capture_output=True, text=True, timeout=120,
    )


@pytest.fixture(scope="module")
def anchors():
    return {
        "shared": mc.pki.create_trust_anchor("root.shared.example"),
        "east": mc.pki.create_trust_anchor("root.east.example", validity=timedelta(days=30)),
        "west": mc.pki.create_trust_anchor("root.west.example"),
    }


def test_trust_audit_on_the_testbed(testbed, anchors):
    for context in ("east", "west"):
        kubectl(testbed, context, "create", "namespace", "linkerd")

    # 1. A shared root, plus a root of each cluster; east's own root expires in 30 days.
    put_linkerd_config(testbed, "east", values(anchors["shared"], anchors["east"]))
    put_linkerd_config(testbed, "west", values(anchors["west"], anchors["shared"], legacy=True,
                                               trust_domain="west.example"))
    out = run_example(testbed)
    assert out.returncode == 1, out.stderr  # something expires within 90 days
    lines = out.stdout.splitlines()
    assert "east: 2 trust anchor(s), trust domain cluster.local" in lines
    assert "west: 2 trust anchor(s), trust domain west.example" in lines
    assert "SHARED: east and west share 1 trust anchor(s): CN=root.shared.example" in lines
    assert "Expiring within 90 days: 1" in lines
    expiring = lines[lines.index("Expiring within 90 days: 1") + 1]
    assert expiring.startswith("  east: CN=root.east.example")
    assert "(in 29 day(s))" in expiring or "(in 30 day(s))" in expiring
    shared_fp = mc.TrustBundle.from_pem(anchors["shared"].cert_pem).anchors[0].fingerprint
    assert f"sha256 {shared_fp[:23]}…" in out.stdout

    # A narrower window: nothing expires, and the clusters share a root: healthy.
    out = run_example(testbed, "--days", "7")
    assert out.returncode == 0, out.stdout + out.stderr
    assert "Expiring within 7 days: 0" in out.stdout.splitlines()

    # 2. West rotates to its own root only: nothing is shared any more.
    put_linkerd_config(testbed, "west", values(anchors["west"]))
    out = run_example(testbed, "--days", "7")
    assert out.returncode == 1
    assert ("NOT SHARED: east and west share no trust anchor; mTLS between them will fail "
            "(distribute a bundle holding both roots)") in out.stdout.splitlines()

    # 3. A broken ConfigMap is reported with mc's message, exit status 2.
    put_linkerd_config(testbed, "west", "identityTrustAnchorsPEM: not a certificate\n")
    out = run_example(testbed)
    assert out.returncode == 2
    assert out.stderr.startswith("trust_audit: west: PEM: no certificate found")

    # 4. A cluster without linkerd-config: kubectl's error, exit status 2.
    kubectl(testbed, "west", "delete", "configmap", "linkerd-config", "--namespace", "linkerd")
    out = run_example(testbed)
    assert out.returncode == 2
    assert "trust_audit: west: kubectl failed:" in out.stderr and "not found" in out.stderr
