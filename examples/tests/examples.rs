//! Runs every example and checks what it prints.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::process::Command;
use std::time::{Duration, SystemTime};

use mc_core::pki::{AnchorOptions, create_trust_anchor};
use mc_core::trust::TrustBundle;

#[test]
fn bundle_trust_anchors_dedupes_and_keeps_order() {
    let out = Command::new(env!("CARGO_BIN_EXE_bundle-trust-anchors"))
        .output()
        .unwrap();
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
    let out = Command::new(env!("CARGO_BIN_EXE_bundle-trust-anchors"))
        .arg(&path)
        .output()
        .unwrap();
    assert!(out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("warning: "),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    let key = dir.path().join("key.pem");
    std::fs::write(&key, &soon.key_pem).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_bundle-trust-anchors"))
        .arg(&key)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("key.pem"), "the error names the file: {err}");
    assert!(out.stdout.is_empty(), "nothing half-written");
}
