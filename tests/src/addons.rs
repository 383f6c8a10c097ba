//! What a cluster with nodes runs beside its API server: kube-controller-manager and
//! kube-scheduler (host processes, as `hack/local-up-cluster.sh` runs them), and cluster DNS
//! (CoreDNS as a Deployment behind `kube-system/kube-dns`, as kubeadm installs it).

use std::net::Ipv4Addr;
use std::path::Path;
use std::process::Command;

use crate::process::{Lifetime, Proc};
use crate::{Error, Result};

/// The CoreDNS image `scripts/build-images` builds from CoreDNS's Go module.
pub const COREDNS_IMAGE: &str = "registry.k8s.io/coredns/coredns:v1.14.7";

/// The client image `scripts/build-images` builds: curl, and a pause process that keeps the
/// Pod up for `kubectl exec … curl`.
pub const CLIENT_IMAGE: &str = "mc.test/client:3";

/// The podinfo image `scripts/build-images` builds from podinfo's Go module.
pub const PODINFO_IMAGE: &str = "ghcr.io/stefanprodan/podinfo:6.9.2";

/// Where the controller manager finds its keys.
#[derive(Debug)]
pub(crate) struct ControllerManagerKeys<'a> {
    pub(crate) kubeconfig: &'a Path,
    pub(crate) service_account_key: &'a Path,
    pub(crate) root_ca: &'a Path,
}

/// Starts kube-controller-manager with every default controller (endpoints, EndpointSlice,
/// EndpointSlice mirroring, ServiceAccount tokens, namespace deletion, garbage collection,
/// Deployments and ReplicaSets, …), each under its own ServiceAccount.
pub(crate) fn controller_manager(
    binary: &Path,
    cluster: &str,
    keys: &ControllerManagerKeys<'_>,
    log: &Path,
    lifetime: Lifetime,
) -> Result<Proc> {
    let mut cmd = Command::new(binary);
    cmd.arg(format!("--kubeconfig={}", keys.kubeconfig.display()))
        .arg(format!(
            "--service-account-private-key-file={}",
            keys.service_account_key.display()
        ))
        .arg(format!("--root-ca-file={}", keys.root_ca.display()))
        .args([
            "--use-service-account-credentials=true",
            "--controllers=*",
            "--leader-elect=false",
            "--secure-port=0",
            "--allocate-node-cidrs=false",
            "--node-monitor-grace-period=20s",
            "--v=1",
        ]);
    Proc::spawn(
        format!("kube-controller-manager {cluster}"),
        cmd,
        log,
        lifetime,
    )
}

/// Starts kube-scheduler.
pub(crate) fn scheduler(
    binary: &Path,
    cluster: &str,
    kubeconfig: &Path,
    log: &Path,
    lifetime: Lifetime,
) -> Result<Proc> {
    let mut cmd = Command::new(binary);
    cmd.arg(format!("--kubeconfig={}", kubeconfig.display()))
        .args(["--leader-elect=false", "--secure-port=0", "--v=1"]);
    Proc::spawn(format!("kube-scheduler {cluster}"), cmd, log, lifetime)
}

/// The objects of cluster DNS: CoreDNS serving `cluster.local` from the API, with no upstream
/// (the test network has no way out), at `dns_ip`.
pub(crate) fn dns_manifest(dns_ip: Ipv4Addr) -> String {
    let corefile = ".:53 {\n    errors\n    health :8080\n    ready :8181\n    \
                    kubernetes cluster.local in-addr.arpa ip6.arpa {\n        pods insecure\n        \
                    fallthrough in-addr.arpa ip6.arpa\n        ttl 5\n    }\n    cache 5\n    \
                    loop\n    reload\n    loadbalance\n}\n";
    let objects = serde_json::json!({
        "apiVersion": "v1",
        "kind": "List",
        "items": [
            {"apiVersion": "v1", "kind": "ServiceAccount",
             "metadata": {"name": "coredns", "namespace": "kube-system"}},
            {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole",
             "metadata": {"name": "system:coredns"},
             "rules": [
                {"apiGroups": [""], "resources": ["endpoints", "services", "pods", "namespaces"],
                 "verbs": ["list", "watch"]},
                {"apiGroups": ["discovery.k8s.io"], "resources": ["endpointslices"],
                 "verbs": ["list", "watch"]}]},
            {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRoleBinding",
             "metadata": {"name": "system:coredns"},
             "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole",
                         "name": "system:coredns"},
             "subjects": [{"kind": "ServiceAccount", "name": "coredns", "namespace": "kube-system"}]},
            {"apiVersion": "v1", "kind": "ConfigMap",
             "metadata": {"name": "coredns", "namespace": "kube-system"},
             "data": {"Corefile": corefile}},
            {"apiVersion": "apps/v1", "kind": "Deployment",
             "metadata": {"name": "coredns", "namespace": "kube-system",
                          "labels": {"k8s-app": "kube-dns"}},
             "spec": {
                "replicas": 1,
                "selector": {"matchLabels": {"k8s-app": "kube-dns"}},
                "template": {
                    "metadata": {"labels": {"k8s-app": "kube-dns"}},
                    "spec": {
                        "serviceAccountName": "coredns",
                        "dnsPolicy": "Default",
                        "securityContext": {
                            "runAsNonRoot": true, "runAsUser": 65532, "runAsGroup": 65532,
                            "sysctls": [{"name": "net.ipv4.ip_unprivileged_port_start", "value": "53"}]
                        },
                        "containers": [{
                            "name": "coredns",
                            "image": COREDNS_IMAGE,
                            "imagePullPolicy": "Never",
                            "args": ["-conf", "/etc/coredns/Corefile"],
                            "ports": [
                                {"name": "dns", "containerPort": 53, "protocol": "UDP"},
                                {"name": "dns-tcp", "containerPort": 53, "protocol": "TCP"}],
                            "securityContext": {
                                "allowPrivilegeEscalation": false,
                                "readOnlyRootFilesystem": true,
                                "capabilities": {"drop": ["ALL"]}},
                            "readinessProbe": {"httpGet": {"path": "/ready", "port": 8181},
                                               "periodSeconds": 2},
                            "livenessProbe": {"httpGet": {"path": "/health", "port": 8080},
                                              "periodSeconds": 10},
                            "volumeMounts": [{"name": "config", "mountPath": "/etc/coredns",
                                              "readOnly": true}]
                        }],
                        "volumes": [{"name": "config", "configMap": {"name": "coredns"}}]
                    }
                }
             }},
            {"apiVersion": "v1", "kind": "Service",
             "metadata": {"name": "kube-dns", "namespace": "kube-system",
                          "labels": {"k8s-app": "kube-dns"}},
             "spec": {"clusterIP": dns_ip.to_string(), "selector": {"k8s-app": "kube-dns"},
                      "ports": [
                        {"name": "dns", "port": 53, "protocol": "UDP", "targetPort": 53},
                        {"name": "dns-tcp", "port": 53, "protocol": "TCP", "targetPort": 53}]}}
        ]
    });
    objects.to_string()
}

/// Fails with `what` and kubectl's error output unless `out` succeeded.
pub(crate) fn check(out: &std::process::Output, what: &str) -> Result<()> {
    if out.status.success() {
        Ok(())
    } else {
        Err(Error::Format {
            what: what.to_string(),
            detail: String::from_utf8_lossy(&out.stderr).trim().to_string(),
        })
    }
}
