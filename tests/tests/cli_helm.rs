//! The Helm chart `charts/mc-multicluster` renders, for the same values, exactly the objects
//! `mc multicluster install` renders (mc_core::render::install). Uses the real helm binary.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use mc_core::render::{self, InstallValues, ObjectRef};
use serde::Deserialize as _;
use serde_json::Value;

fn helm() -> PathBuf {
    let path = mc_tests::cache_dir().join("bin/helm-v3.22.0/helm");
    assert!(
        path.exists(),
        "helm is missing at {}: run scripts/setup (it builds helm from the Go module proxy)",
        path.display()
    );
    path
}

fn chart() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .join("charts/mc-multicluster")
}

fn parse_stream(text: &str) -> Vec<Value> {
    serde_yaml::Deserializer::from_str(text)
        .map(|d| Value::deserialize(d).unwrap())
        .filter(|v| !v.is_null())
        .collect()
}

fn by_ref(objects: Vec<Value>) -> BTreeMap<ObjectRef, Value> {
    objects
        .into_iter()
        .map(|o| (ObjectRef::of(&o).unwrap(), o))
        .collect()
}

/// Renders with helm and with mc for the same `--set` assignments and compares.
fn compare(sets: &[&str]) {
    let mut cmd = Command::new(helm());
    cmd.args(["template", "mc", "--kube-version", "1.35.4"])
        .arg(chart());
    for s in sets {
        cmd.args(["--set", s]);
    }
    let out = cmd.output().unwrap();
    assert!(
        out.status.success(),
        "helm template {sets:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let helm = by_ref(parse_stream(&String::from_utf8(out.stdout).unwrap()));

    let mut tree = InstallValues::default_tree();
    for s in sets {
        render::set(&mut tree, s, false).unwrap();
    }
    let mc = by_ref(render::install(&InstallValues::from_tree(&tree).unwrap()).unwrap());

    let helm_keys: Vec<_> = helm.keys().map(ToString::to_string).collect();
    let mc_keys: Vec<_> = mc.keys().map(ToString::to_string).collect();
    assert_eq!(helm_keys, mc_keys, "{sets:?}: different objects");
    for (r, want) in &mc {
        if &helm[r] != want {
            // Print both as YAML: far easier to read than a Debug dump of a CRD.
            panic!(
                "{sets:?}: {r} differs\n--- helm:\n{}\n--- mc:\n{}",
                serde_yaml::to_string(&helm[r]).unwrap(),
                serde_yaml::to_string(want).unwrap()
            );
        }
    }
}

#[test]
fn chart_values_yaml_equals_the_install_defaults() {
    let text = std::fs::read_to_string(chart().join("values.yaml")).unwrap();
    let tree: Value = serde_yaml::from_str(&text).unwrap();
    assert_eq!(
        InstallValues::from_tree(&tree).unwrap(),
        InstallValues::default()
    );
    assert_eq!(tree, InstallValues::default_tree());
}

#[test]
fn chart_renders_the_same_objects_as_install_by_default() {
    compare(&[]);
}

#[test]
fn chart_renders_the_same_objects_as_install_with_values() {
    compare(&[
        "gateway.enabled=false",
        "remoteMirrorServiceAccountName={a,b}",
    ]);
    compare(&[
        "gateway.replicas=3",
        "enablePodAntiAffinity=true",
        "gateway.serviceType=NodePort",
        "gateway.nodePort=30143",
        "gateway.probe.seconds=7",
        "gateway.port=5143",
        "identityTrustDomain=example.org",
        "image.registry=registry.local/mc",
        "image.tag=dev",
        "enableNamespaceCreation=true",
        "commonLabels.team=net",
        "gateway.serviceAnnotations.a\\.example/x=y",
    ]);
    compare(&[
        "remoteMirrorServiceAccount=false",
        "installNamespace=false",
        "namespace=mc-system",
    ]);
}
