//! The Link CRD from `mc_core::link::crd()` against a real kube-apiserver: it is accepted, serves
//! all three versions, applies upstream's defaults, accepts Links shaped as upstream tooling
//! writes them (v1alpha1, v1alpha2, v1alpha3) and our status (including a False condition with
//! no localRef, which upstream's v1alpha2 could not store, #14433), and rejects what the schema
//! forbids.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::{Duration, Instant, SystemTime};

use k8s_openapi::api::core::v1::Namespace;
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{Api, Patch, PatchParams, PostParams};
use mc_core::link::{
    FailureReason, GatewayStatus, Link, LinkStatus, MirrorOutcome, ObjectRef, mirrored_condition,
};
use mc_tests::{Testbed, shared_api_only};

const CONTEXT: &str = "west";

/// Installs the CRD (once per cluster) and creates namespace `link-crd-<tag>-<pid>`.
async fn setup(bed: &Testbed, tag: &str) -> (kube::Client, String) {
    let client = bed.client(CONTEXT).await.unwrap();
    let crds: Api<CustomResourceDefinition> = Api::all(client.clone());
    let created = crds
        .create(&PostParams::default(), &mc_core::link::crd())
        .await;
    let already = |e: &kube::Error| matches!(e, kube::Error::Api(a) if a.code == 409);
    assert!(
        created.as_ref().err().is_none_or(already),
        "the API server rejects the Link CRD: {created:?}"
    );
    let ns = format!("link-crd-{tag}-{}", std::process::id());
    let namespaces: Api<Namespace> = Api::all(client.clone());
    let mut n = Namespace::default();
    n.metadata.name = Some(ns.clone());
    namespaces.create(&PostParams::default(), &n).await.unwrap();
    let links: Api<Link> = Api::namespaced(client.clone(), &ns);
    let start = Instant::now();
    while links.list(&Default::default()).await.is_err() {
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "Link CRD never served"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    (client, ns)
}

/// kubectl apply; returns (success, stdout + stderr).
fn apply(bed: &Testbed, yaml: &str) -> (bool, String) {
    apply_with(bed, yaml, &[])
}

fn apply_with(bed: &Testbed, yaml: &str, extra: &[&str]) -> (bool, String) {
    let file = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(file.path(), yaml).unwrap();
    let out = bed
        .kubectl(CONTEXT)
        .arg("apply")
        .arg("-f")
        .arg(file.path())
        .args(extra)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout) + String::from_utf8_lossy(&out.stderr);
    (out.status.success(), text.into_owned())
}

fn upstream_link(version: &str, name: &str, ns: &str) -> String {
    let federated = if version == "v1alpha1" {
        ""
    } else {
        "  federatedServiceSelector: {matchLabels: {mirror.linkerd.io/federated: member}}\n"
    };
    format!(
        r#"apiVersion: multicluster.linkerd.io/{version}
kind: Link
metadata:
  name: {name}
  namespace: {ns}
  annotations: {{linkerd.io/created-by: "linkerd/cli edge-26.1.1"}}
spec:
  targetClusterName: {name}
  targetClusterDomain: cluster.local
  targetClusterLinkerdNamespace: linkerd
  clusterCredentialsSecret: cluster-credentials-{name}
  gatewayAddress: 203.0.113.10
  gatewayPort: "4143"
  gatewayIdentity: linkerd-gateway.linkerd-multicluster.serviceaccount.identity.linkerd.cluster.local
  probeSpec: {{path: /ready, port: "4191", period: 3s}}
  selector: {{matchLabels: {{mirror.linkerd.io/exported: "true"}}}}
  remoteDiscoverySelector: {{matchLabels: {{mirror.linkerd.io/exported: remote-discovery}}}}
{federated}"#
    )
}

#[tokio::test(flavor = "multi_thread")]
async fn upstream_links_of_every_version_are_accepted_and_defaulted() {
    let bed = shared_api_only().unwrap();
    let (client, ns) = setup(bed, "versions").await;
    let links: Api<Link> = Api::namespaced(client, &ns);
    for (version, name) in [
        ("v1alpha1", "one"),
        ("v1alpha2", "two"),
        ("v1alpha3", "three"),
    ] {
        let (ok, out) = apply(bed, &upstream_link(version, name, &ns));
        assert!(ok, "{version}: {out}");
        let link = links.get(name).await.unwrap();
        let probe = link.spec.probe_spec.clone().unwrap();
        assert_eq!(
            probe.timeout.as_deref(),
            Some("30s"),
            "{version}: CRD default"
        );
        assert_eq!(
            probe.failure_threshold.as_deref(),
            Some("3"),
            "{version}: CRD default"
        );
        let valid = link.spec.validate().unwrap();
        assert_eq!(valid.cluster_name, name);
        assert_eq!(valid.gateway.unwrap().port, 4143);
        assert_eq!(
            valid.federated_selector.is_empty(),
            version == "v1alpha1",
            "{version}"
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn links_written_by_mc_round_trip_with_status() {
    let bed = shared_api_only().unwrap();
    let (client, ns) = setup(bed, "status").await;
    let links: Api<Link> = Api::namespaced(client, &ns);
    let mut link = Link::from_yaml(&upstream_link("v1alpha3", "east", &ns)).unwrap();
    link.spec.excluded_labels = vec!["argocd.argoproj.io/*".into()];
    let created = links.create(&PostParams::default(), &link).await.unwrap();
    assert_eq!(created.spec.excluded_labels, ["argocd.argoproj.io/*"]);

    let now = SystemTime::now();
    let mut status = LinkStatus::default();
    let ok = MirrorOutcome::Mirrored {
        local: ObjectRef::service("shop", "web-east"),
    };
    status.upsert_mirror(
        ObjectRef::service("shop", "web"),
        mirrored_condition(&ok, now).unwrap(),
    );
    let failed = MirrorOutcome::Failed {
        reason: FailureReason::MissingNamespace,
        message: "Namespace does not exist".into(),
    };
    status.upsert_mirror(
        ObjectRef::service("gone", "api"),
        mirrored_condition(&failed, now).unwrap(),
    );
    status.gateway = Some(GatewayStatus {
        alive: true,
        latency_ms: Some(4),
        p50_ms: Some(3),
        p99_ms: Some(9),
        last_probe_time: None,
    });
    let patch = serde_json::json!({ "status": status });
    let patched = links
        .patch_status("east", &PatchParams::default(), &Patch::Merge(&patch))
        .await
        .unwrap();
    let back = patched.status.expect("status stored");
    assert_eq!(
        back.gateway, status.gateway,
        "status.gateway is in the schema"
    );
    assert_eq!(back.mirror_services.len(), 2);
    let stored_failed = &back.mirror_services[1].conditions[0];
    assert_eq!(stored_failed.reason, "MissingNamespace");
    assert_eq!(stored_failed.local_ref, None);
    assert_eq!(
        back.mirror_services[0].conditions[0].local_ref,
        Some(ObjectRef::service("shop", "web-east"))
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn the_schema_rejects_what_upstream_rejects_and_prunes_unknown_fields() {
    let bed = shared_api_only().unwrap();
    let (client, ns) = setup(bed, "schema").await;
    let bad_operator = upstream_link("v1alpha3", "bad", &ns).replace(
        "  selector: {matchLabels: {mirror.linkerd.io/exported: \"true\"}}",
        "  selector: {matchExpressions: [{key: a, operator: Equals}]}",
    );
    let (ok, out) = apply(bed, &bad_operator);
    assert!(!ok, "operator Equals must be rejected: {out}");
    assert!(out.contains("operator"), "{out}");
    let number_port = upstream_link("v1alpha3", "num", &ns).replace("\"4143\"", "4143");
    let (ok, out) = apply(bed, &number_port);
    assert!(!ok, "a numeric gatewayPort is not a string: {out}");

    let extra = upstream_link("v1alpha3", "extra", &ns).replace(
        "  targetClusterDomain: cluster.local\n",
        "  targetClusterDomain: cluster.local\n  notAField: x\n",
    );
    let (ok, out) = apply(bed, &extra);
    assert!(
        !ok,
        "strict field validation names the unknown field: {out}"
    );
    assert!(out.contains("notAField"), "{out}");
    let (ok, out) = apply_with(bed, &extra, &["--validate=false"]);
    assert!(ok, "{out}");
    let raw: Api<kube::api::DynamicObject> =
        Api::namespaced_with(client, &ns, &kube::api::ApiResource::erase::<Link>(&()));
    let stored = raw.get("extra").await.unwrap();
    assert!(stored.data["spec"].get("notAField").is_none(), "pruned");
    assert_eq!(stored.data["spec"]["targetClusterName"], "extra");
}
