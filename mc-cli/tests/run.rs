//! The `mc` library entry point, in process: flags and values precedence, output formats,
//! exit codes for bad input, version and completion. (Cluster-facing commands are tested on
//! the testbed in tests/tests/cli_*.rs.)
#![allow(clippy::unwrap_used, clippy::expect_used)]

use serde_json::Value;

fn run(args: &[&str]) -> (i32, String, String) {
    let mut out = Vec::new();
    let mut err = Vec::new();
    let mut all = vec!["mc"];
    all.extend_from_slice(args);
    let code = mc_cli::run(all, &mut out, &mut err);
    (
        code,
        String::from_utf8(out).unwrap(),
        String::from_utf8(err).unwrap(),
    )
}

fn install_json(args: &[&str]) -> Vec<Value> {
    let mut all = vec!["multicluster", "install", "--ignore-cluster", "-o", "json"];
    all.extend_from_slice(args);
    let (code, out, err) = run(&all);
    assert_eq!(code, 0, "{err}");
    let list: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(list["kind"], "List");
    list["items"].as_array().unwrap().clone()
}

fn find<'a>(items: &'a [Value], kind: &str, name: &str) -> Option<&'a Value> {
    items
        .iter()
        .find(|o| o["kind"] == kind && o["metadata"]["name"] == name)
}

#[test]
fn flags_files_and_set_apply_in_helm_order() {
    let gw_port = |items: &[Value]| {
        find(items, "Service", "linkerd-gateway").unwrap()["spec"]["ports"][0]["port"].clone()
    };
    assert_eq!(gw_port(&install_json(&["--gateway-port", "5000"])), 5000);
    assert_eq!(
        gw_port(&install_json(&[
            "--gateway-port",
            "5000",
            "--set",
            "gateway.port=6000"
        ])),
        6000
    );
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("v.yaml");
    std::fs::write(&file, "gateway:\n  port: 7000\n  replicas: 2\n").unwrap();
    let f = file.to_str().unwrap();
    let items = install_json(&["--gateway-port", "5000", "-f", f, "--ha"]);
    assert_eq!(gw_port(&items), 7000);
    let deploy = find(&items, "Deployment", "linkerd-gateway").unwrap();
    assert_eq!(deploy["spec"]["replicas"], 2, "-f overrides --ha");
    assert!(find(&items, "PodDisruptionBudget", "linkerd-gateway").is_some());
    // --set-string keeps strings.
    let items = install_json(&["--set-string", "gateway.serviceAnnotations.n=5"]);
    let svc = find(&items, "Service", "linkerd-gateway").unwrap();
    assert_eq!(svc["metadata"]["annotations"]["n"], "5");
}

#[test]
fn registry_tag_and_gateway_flags_reach_the_manifests() {
    let items = install_json(&[
        "--registry",
        "reg.example/x/",
        "--tag",
        "t1",
        "--gateway-service-type",
        "NodePort",
    ]);
    let deploy = find(&items, "Deployment", "linkerd-gateway").unwrap();
    assert_eq!(
        deploy["spec"]["template"]["spec"]["containers"][0]["image"],
        "reg.example/x/mc:t1"
    );
    assert_eq!(
        find(&items, "Service", "linkerd-gateway").unwrap()["spec"]["type"],
        "NodePort"
    );
    let items = install_json(&[
        "--gateway=false",
        "--remote-mirror-service-account-name",
        "a,b",
        "--remote-mirror-service-account-name",
        "c",
    ]);
    assert!(find(&items, "Deployment", "linkerd-gateway").is_none());
    for sa in ["a", "b", "c"] {
        assert!(find(&items, "ServiceAccount", sa).is_some(), "{sa}");
    }
}

#[test]
fn bad_input_exits_2_and_prints_no_manifest() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("nope.yaml");
    let list = dir.path().join("list.yaml");
    std::fs::write(&list, "- a\n").unwrap();
    for (args, want) in [
        (
            vec!["multicluster", "install", "--gateway-service-type", "Foo"],
            "possible values",
        ),
        (
            vec!["multicluster", "install", "--gateway=maybe"],
            "--gateway",
        ),
        (
            vec!["multicluster", "install", "--set", "gateway.replicas=0"],
            "gateway.replicas",
        ),
        (
            vec!["multicluster", "install", "--set", "nokey"],
            "has no '='",
        ),
        (
            vec!["multicluster", "install", "-f", missing.to_str().unwrap()],
            "nope.yaml",
        ),
        (
            vec!["multicluster", "install", "-f", list.to_str().unwrap()],
            "not a map",
        ),
        (
            vec![
                "multicluster",
                "install",
                "--set",
                "gateway.probe.path=ready",
            ],
            "absolute path",
        ),
        (
            vec![
                "--kubeconfig",
                "/nonexistent",
                "multicluster",
                "link",
                "--cluster-name",
                "e",
                "--gateway=false",
                "--gateway-port",
                "1",
            ],
            "--gateway=false",
        ),
        (
            vec![
                "--kubeconfig",
                "/nonexistent",
                "multicluster",
                "link",
                "--cluster-name",
                "e",
                "-l",
                "a in (",
            ],
            "--selector",
        ),
        (
            vec!["trust-anchor", "bundle", missing.to_str().unwrap()],
            "nope.yaml",
        ),
    ] {
        let (code, out, err) = run(&args);
        assert_eq!(code, 2, "{args:?}: {err}");
        assert!(out.is_empty(), "{args:?} printed {out}");
        assert!(err.contains(want), "{args:?}: {err}");
    }
}

#[test]
fn version_and_completion() {
    let (code, out, _) = run(&["version"]);
    assert_eq!(code, 0);
    assert_eq!(out.trim(), format!("mc {}", env!("CARGO_PKG_VERSION")));
    let (code, out, _) = run(&["completion", "bash"]);
    assert_eq!(code, 0);
    assert!(
        out.contains("multicluster") && out.contains("trust-anchor"),
        "{}",
        &out[..200.min(out.len())]
    );
    let (code, _, _) = run(&["completion", "tcsh"]);
    assert_eq!(code, 2);
}

#[test]
fn install_with_the_trust_domain_in_values_does_not_read_the_cluster() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("values.yaml");
    std::fs::write(&file, "identityTrustDomain: from-file.example\n").unwrap();
    let file = file.to_str().unwrap();
    for (args, want) in [
        (
            vec!["--set", "identityTrustDomain=from-set.example"],
            "from-set.example",
        ),
        (
            vec!["--set-string", "identityTrustDomain=s.example"],
            "s.example",
        ),
        (vec!["-f", file], "from-file.example"),
    ] {
        let mut all = vec!["--kubeconfig", "/nonexistent", "multicluster", "install"];
        all.extend_from_slice(&args);
        let (code, out, err) = run(&all);
        assert_eq!(code, 0, "{args:?}: {err}");
        assert!(
            out.contains(want),
            "{args:?}: trust domain {want} not rendered"
        );
        assert!(
            !err.contains("linkerd-config"),
            "{args:?} read the cluster: {err}"
        );
    }
    // Without it, the unusable kubeconfig is still an input error.
    let (code, _, err) = run(&["--kubeconfig", "/nonexistent", "multicluster", "install"]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("--ignore-cluster"), "{err}");
}

#[test]
fn gateway_policy_file_becomes_the_policy_config_map_and_bad_files_name_the_fix() {
    let dir = tempfile::tempdir().unwrap();
    let good = dir.path().join("policy.yaml");
    std::fs::write(
        &good,
        "rules:\n- services: ['*.billing.svc.cluster.local']\n  clients: ['*.shop.serviceaccount.identity.linkerd.cluster.local']\n",
    )
    .unwrap();
    let items = install_json(&["--gateway-policy", good.to_str().unwrap()]);
    let cm = find(&items, "ConfigMap", "linkerd-gateway-policy").unwrap();
    assert_eq!(
        cm["data"]["policy.yaml"],
        r#"{"rules":[{"clients":["*.shop.serviceaccount.identity.linkerd.cluster.local"],"services":["*.billing.svc.cluster.local"]}]}"#
    );
    // The same as the value, as Helm would take it.
    let by_value = install_json(&[
        "--set",
        "gateway.policy.rules[0].services[0]=*.billing.svc.cluster.local",
        "--set",
        "gateway.policy.rules[0].clients[0]=*.shop.serviceaccount.identity.linkerd.cluster.local",
    ]);
    assert_eq!(
        find(&by_value, "ConfigMap", "linkerd-gateway-policy"),
        Some(cm)
    );

    for (text, want) in [
        ("rules: [", "not a valid policy"),
        (
            "rules:\n- services: ['']\n  clients: ['a']\n",
            "pattern is empty",
        ),
        ("", "empty"),
    ] {
        let bad = dir.path().join("bad.yaml");
        std::fs::write(&bad, text).unwrap();
        let (code, out, err) = run(&[
            "multicluster",
            "install",
            "--ignore-cluster",
            "--gateway-policy",
            bad.to_str().unwrap(),
        ]);
        assert_eq!(code, 2, "{err}");
        assert!(out.is_empty(), "{out}");
        for part in [
            "--gateway-policy",
            "bad.yaml",
            want,
            "fix:",
            "rules: [{services",
        ] {
            assert!(err.contains(part), "{text:?}: {part} not in {err}");
        }
    }
}
