//! Runs every example and checks what it prints.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::process::Command;
use std::time::{Duration, SystemTime};

use mc_core::pki::{AnchorOptions, create_trust_anchor};
use mc_core::trust::TrustBundle;

/// Runs an example binary with `args` and returns what it did.
fn run<S: AsRef<std::ffi::OsStr>>(bin: &str, args: &[S]) -> std::process::Output {
    Command::new(bin).args(args).output().unwrap()
}

#[test]
fn bundle_trust_anchors_dedupes_and_keeps_order() {
    let out = run(env!("CARGO_BIN_EXE_bundle-trust-anchors"), &[] as &[&str]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let bundle = TrustBundle::from_pem(&out.stdout, SystemTime::now()).unwrap();
    let subjects: Vec<_> = bundle
        .anchors()
        .iter()
        .map(|a| a.summary().subject.clone())
        .collect();
    assert_eq!(
        subjects.len(),
        2,
        "three inputs, one duplicate: {subjects:?}"
    );
    assert!(
        subjects[0].contains("root.linkerd.cluster.local"),
        "{subjects:?}"
    );
    assert!(
        subjects[1].contains("root-2026.linkerd.cluster.local"),
        "{subjects:?}"
    );
    assert!(String::from_utf8_lossy(&out.stderr).contains("bundled 2 anchors from 3 certificates"));
}

#[test]
fn bundle_trust_anchors_warns_about_expiry_and_rejects_bad_files() {
    let dir = tempfile::tempdir().unwrap();
    let now = SystemTime::now();
    let mut soon = AnchorOptions::new(now);
    soon.not_after = now + Duration::from_secs(10 * 24 * 3600);
    let soon = create_trust_anchor(&soon).unwrap();
    let path = dir.path().join("soon.crt");
    std::fs::write(&path, &soon.cert_pem).unwrap();
    let out = run(env!("CARGO_BIN_EXE_bundle-trust-anchors"), &[&path]);
    assert!(out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("warning: "),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    let key = dir.path().join("key.pem");
    std::fs::write(&key, &soon.key_pem).unwrap();
    let out = run(env!("CARGO_BIN_EXE_bundle-trust-anchors"), &[&key]);
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("key.pem"), "the error names the file: {err}");
    assert!(out.stdout.is_empty(), "nothing half-written");
}

fn yaml_docs(text: &str) -> Vec<serde_json::Value> {
    text.split("\n---\n")
        .flat_map(|d| d.split("---\n"))
        .filter(|d| !d.trim().is_empty() && !d.trim_start().starts_with('#'))
        .map(|d| serde_yaml::from_str(d).unwrap())
        .collect()
}

#[test]
fn render_link_prints_a_valid_link_with_its_credentials() {
    let out = run(
        env!("CARGO_BIN_EXE_render-link"),
        &["west-2", "198.51.100.9"],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let docs = yaml_docs(&String::from_utf8_lossy(&out.stdout));
    let link = docs.iter().find(|d| d["kind"] == "Link").expect("a Link");
    assert_eq!(link["apiVersion"], "multicluster.linkerd.io/v1alpha3");
    assert_eq!(link["spec"]["targetClusterName"], "west-2");
    assert_eq!(link["spec"]["gatewayAddress"], "198.51.100.9");
    assert_eq!(
        link["spec"]["gatewayPort"], "4143",
        "ports are strings on the wire"
    );
    let secret = docs
        .iter()
        .find(|d| d["kind"] == "Secret" && d["metadata"]["name"] == "cluster-credentials-west-2");
    assert!(secret.is_some(), "the credentials Secret is rendered");
    assert!(String::from_utf8_lossy(&out.stderr).contains("Link west-2 is valid"));
}

#[test]
fn render_link_rejects_a_cluster_name_that_is_not_a_dns_label() {
    let out = run(
        env!("CARGO_BIN_EXE_render-link"),
        &["East_1", "198.51.100.9"],
    );
    assert_eq!(out.status.code(), Some(2));
    assert!(out.stdout.is_empty(), "nothing half-written");
}

#[test]
fn desired_mirrors_moves_the_gateway_to_not_ready_when_it_is_dead() {
    let out = run(env!("CARGO_BIN_EXE_desired-mirrors"), &[] as &[&str]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout);
    let (alive, dead) = text.split_once("# gateway alive: false").unwrap();
    let alive = yaml_docs(alive);
    let dead = yaml_docs(dead);
    let svc = &alive[0];
    assert_eq!(svc["metadata"]["name"], "podinfo-east");
    assert_eq!(
        svc["metadata"]["labels"]["mirror.linkerd.io/mirrored-service"],
        "true"
    );
    assert_eq!(
        svc["metadata"]["labels"]["mirror.linkerd.io/cluster-name"],
        "east"
    );
    assert!(
        svc["metadata"]["labels"]
            .get("mirror.linkerd.io/exported")
            .is_none(),
        "mirror.linkerd.io/* labels are not copied"
    );
    assert_eq!(
        svc["metadata"]["annotations"]["mirror.linkerd.io/remote-svc-fq-name"],
        "podinfo.test.svc.cluster.local"
    );
    assert_eq!(
        svc["metadata"]["annotations"]["config.linkerd.io/opaque-ports"],
        "9999"
    );
    assert!(
        svc["metadata"]["annotations"]
            .get("service.kubernetes.io/topology-mode")
            .is_none()
    );
    let ep = &alive[1];
    assert_eq!(ep["subsets"][0]["addresses"][0]["ip"], "203.0.113.10");
    assert_eq!(
        ep["subsets"][0]["ports"].as_array().unwrap().len(),
        2,
        "one port per service port"
    );
    assert!(
        ep["subsets"][0]["ports"]
            .as_array()
            .unwrap()
            .iter()
            .all(|p| p["port"] == 4143),
        "all on the gateway port"
    );
    assert!(
        dead[1]["subsets"][0]
            .get("addresses")
            .is_none_or(|a| a.as_array().is_none_or(Vec::is_empty))
    );
    assert_eq!(
        dead[1]["subsets"][0]["notReadyAddresses"][0]["ip"],
        "203.0.113.10"
    );
}
