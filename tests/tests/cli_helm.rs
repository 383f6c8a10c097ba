//! The Helm chart `charts/mc-multicluster` renders, for the same values, exactly the objects
//! `mc multicluster install` renders (mc_core::render::install), and the guide's Helm commands work
//! as written on a real API server. Uses the real helm binary.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod cli_common;
mod nodes_common;

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
    let mut helm = by_ref(parse_stream(&String::from_utf8(out.stdout).unwrap()));
    strip_keep_annotation(&mut helm);

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

/// The one difference from `mc multicluster install`: a Namespace the chart renders carries
/// `helm.sh/resource-policy: keep`, so `helm uninstall` never deletes a namespace that may hold
/// objects Helm does not own. Asserts it is there, then removes it for the comparison.
fn strip_keep_annotation(objects: &mut BTreeMap<ObjectRef, Value>) {
    for (r, object) in objects.iter_mut() {
        if object["kind"] != "Namespace" {
            continue;
        }
        let annotations = object["metadata"]["annotations"].as_object_mut();
        let annotations = annotations.unwrap_or_else(|| panic!("{r} has no annotations"));
        assert_eq!(
            annotations.remove("helm.sh/resource-policy"),
            Some(Value::from("keep")),
            "{r} is kept by helm uninstall"
        );
        if annotations.is_empty() {
            object["metadata"]
                .as_object_mut()
                .unwrap()
                .remove("annotations");
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
        "egress.enabled=false",
        "gateway.backendMtls=off",
    ]);
    // The gateway on cluster DNS: no API access, no ClusterRole.
    compare(&["gateway.resolver=dns"]);
    // The gateway's allow-list: the same policy file in the same ConfigMap.
    compare(&[
        "gateway.policy.rules[0].services[0]=*.billing.svc.cluster.local",
        "gateway.policy.rules[0].services[1]=web.shop.svc.cluster.local",
        "gateway.policy.rules[0].clients[0]=spiffe://cluster.local/ns/shop/*",
        "gateway.policy.rules[0].clients[1]=*.shop.serviceaccount.identity.linkerd.cluster.local",
        "gateway.policy.rules[1].services[0]=db.shop.svc.cluster.local",
        "gateway.policy.rules[1].clients[0]=db.shop.serviceaccount.identity.linkerd.cluster.local",
    ]);
    // Issuer mode: both Pods mount the issuer Secret and mint their own leaves.
    compare(&[
        "identity.issuerSecret=mc-issuer",
        "identity.leafLifetime=2m",
        "egress.replicas=3",
        "egress.adminPort=4192",
        "enablePodAntiAffinity=true",
    ]);
}

/// Install-managed controllers (upstream's `controllers` list): two Links over non-default
/// `controllerDefaults`, one entry overriding some of them, render the same objects.
#[test]
fn chart_renders_the_same_controllers_as_install() {
    compare(&["controllers[0].link.ref.name=east"]);
    // A name --set types as a number.
    compare(&["controllers[0].link.ref.name=123"]);
    compare(&[
        "controllers[0].link.ref.name=east",
        "controllers[1].link.ref.name=north",
        "controllers[1].gateway.enabled=false",
        "controllers[1].logLevel=debug",
        "controllers[1].enableHeadlessServices=true",
        "controllers[1].replicas=1",
        "controllerDefaults.replicas=2",
        "controllerDefaults.logFormat=json",
        "controllerDefaults.gateway.probe.port=4181",
        "controllerDefaults.enablePodAntiAffinity=true",
        "controllerDefaults.UID=3000",
        "controllerDefaults.GID=3001",
        "enableNamespaceCreation=true",
        "commonLabels.team=net",
        "imagePullSecrets={regcred}",
        "image.tag=dev",
        "namespace=mc-system",
    ]);
}

/// Controller values install refuses, the chart refuses too, naming the value and the fix.
#[test]
fn bad_controller_values_are_refused_by_the_chart_as_by_install() {
    for (sets, want) in [
        (
            vec!["controllers[0].logLevel=debug"],
            "controllers[0].link.ref.name is required",
        ),
        (
            vec![
                "controllers[0].link.ref.name=a",
                "controllers[1].link.ref.name=a",
            ],
            "is also the Link of controllers[0]",
        ),
        (
            vec!["controllers[0].link.ref.name=East"],
            "is not a Link name",
        ),
        (
            vec![
                "controllers[0].link.ref.name=a",
                "controllers[0].replicas=0",
            ],
            "controllers[0].replicas",
        ),
        (
            vec![
                "controllers[0].link.ref.name=a",
                "controllers[0].logLevel=loud",
            ],
            "controllers[0].logLevel",
        ),
        (
            vec![
                "controllers[0].link.ref.name=a",
                "controllers[0].retryLimit=3",
            ],
            "controllers[0].retryLimit is a setting of Linkerd",
        ),
        (
            vec!["controllers[0].link.ref.name=a", "controllers[0].replica=2"],
            "controllers[0]",
        ),
    ] {
        let err = helm_refuses(&sets);
        for part in [want, "fix:"] {
            assert!(err.contains(part), "{sets:?}: {part} not in {err}");
        }
        let mc = install_refuses(&sets);
        let index = if sets.len() == 2 && sets[1].starts_with("controllers[1]") {
            "controllers[1]"
        } else {
            "controllers[0]"
        };
        assert!(mc.contains(index), "{sets:?}: {index} not in {mc}");
    }
}

/// `localServiceMirror.excludedLabels`/`excludedAnnotations`: the chart renders the same
/// ConfigMap mc-local-service-mirror (normalized the same way) and the same controller
/// environment as install, for a string with escaped commas and for a list.
#[test]
fn chart_renders_the_same_local_member_exclusions_as_install() {
    compare(&[
        "localServiceMirror.excludedLabels= evil.linkerd/*\\, evil \\,",
        "localServiceMirror.excludedAnnotations={a.io/*,b}",
        "controllers[0].link.ref.name=east",
    ]);
}

/// Local-member exclusions install refuses, the chart refuses too, naming the value and the fix.
#[test]
fn bad_local_member_exclusions_are_refused_by_the_chart_as_by_install() {
    for (sets, want) in [
        (
            vec!["localServiceMirror.excludedLabels=ok\\,not a key"],
            "localServiceMirror.excludedLabels[1]",
        ),
        (
            vec!["localServiceMirror.excludedAnnotations=Bad_Prefix/*"],
            "localServiceMirror.excludedAnnotations[0]",
        ),
        (
            vec!["localServiceMirror.replicas=2"],
            "localServiceMirror.replicas is a setting of Linkerd's local service mirror",
        ),
    ] {
        let err = helm_refuses(&sets);
        for part in [want, "fix:"] {
            assert!(err.contains(part), "{sets:?}: {part} not in {err}");
        }
        let mc = install_refuses(&sets);
        let path = want.split(' ').next().unwrap();
        assert!(mc.contains(path), "{sets:?}: {path} not in {mc}");
    }
}

/// `mc multicluster install`'s values with `sets`, which must be refused; the error.
fn install_refuses(sets: &[&str]) -> String {
    let mut tree = InstallValues::default_tree();
    for s in sets {
        render::set(&mut tree, s, false).unwrap();
    }
    InstallValues::from_tree(&tree)
        .map(|_| ())
        .unwrap_err()
        .to_string()
}

/// `helm template` with `sets`, which must fail; its stderr.
fn helm_refuses(sets: &[&str]) -> String {
    let mut cmd = Command::new(helm());
    cmd.args(["template", "mc"]).arg(chart());
    for s in sets {
        cmd.args(["--set", s]);
    }
    let out = cmd.output().unwrap();
    assert!(!out.status.success(), "{sets:?}: helm accepted it");
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// Runs the guide's commands in a shell on the testbed (helm, kubectl, mc on PATH).
fn sh(bed: &mc_tests::Testbed, work: &Path, script: &str) -> std::process::Output {
    nodes_common::shell(bed, cli_common::mc_bin().parent().unwrap(), work, script)
}

#[test]
fn helm_template_needs_no_kube_version() {
    let out = Command::new(helm())
        .args(["template", "mc"])
        .arg(chart())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "helm template without --kube-version: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Policy rules install refuses, the chart refuses too, naming the value and the fix. (Helm
/// reads `--set x={}` as `[""]`, an empty pattern; `mc` as an empty list.)
#[test]
fn bad_policy_rules_are_refused_by_the_chart_as_by_install() {
    for (sets, want) in [
        (
            vec![
                "gateway.policy.rules[0].services[0]=a.svc.cluster.local",
                "gateway.policy.rules[0].clients={}",
            ],
            "is empty or has a character",
        ),
        (
            vec!["gateway.policy.rules[0].clients[0]=a"],
            "`services` is empty",
        ),
        (
            vec![
                "gateway.policy.rules[0].services[0]=a b",
                "gateway.policy.rules[0].clients[0]=a",
            ],
            "is empty or has a character",
        ),
    ] {
        let err = helm_refuses(&sets);
        for part in ["gateway.policy.rules[0]", want, "fix:"] {
            assert!(err.contains(part), "{sets:?}: {part} not in {err}");
        }
        if sets.iter().any(|s| s.ends_with("={}")) {
            continue;
        }
        let mut tree = InstallValues::default_tree();
        for s in &sets {
            render::set(&mut tree, s, false).unwrap();
        }
        let mc = InstallValues::from_tree(&tree);
        assert!(mc.is_err(), "{sets:?}: install accepted it");
    }
}

#[test]
fn bad_gateway_resolver_values_are_refused_by_the_chart_as_by_install() {
    for set in ["gateway.resolver=coredns", "gateway.backendMtls=istio"] {
        let path = set.split('=').next().unwrap();
        let err = helm_refuses(&[set]);
        assert!(
            err.contains(&format!("value {path}")) && err.contains("fix:"),
            "{set}: {err}"
        );
        let mut tree = InstallValues::default_tree();
        render::set(&mut tree, set, false).unwrap();
        let mc = InstallValues::from_tree(&tree).unwrap_err().to_string();
        assert!(mc.contains(path), "{set}: {mc}");
    }
}

#[test]
fn a_release_namespace_other_than_the_extensions_is_refused_naming_the_fix() {
    let out = Command::new(helm())
        .args(["template", "mc", "-n", "tools"])
        .arg(chart())
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "rendered into the wrong namespace");
    assert!(
        err.contains(r#"release namespace is "tools""#)
            && err.contains("-n linkerd-multicluster --create-namespace")
            && err.contains("namespace=tools"),
        "{err}"
    );
}

/// The guide's install: `helm install -n linkerd-multicluster --create-namespace`, with the
/// escaped-comma list of remote-access accounts; uninstall removes the release and leaves the
/// namespace and what Helm does not own in it. On `east` of this process's own testbed.
#[test]
fn the_guides_helm_install_and_uninstall_work_and_keep_the_namespace() {
    let bed = mc_tests::shared_api_only().expect("the testbed starts");
    let work = tempfile::tempdir().unwrap();
    let run = |script: &str| nodes_common::check(sh(bed, work.path(), script), script);
    let chart = chart();
    run(&format!(
        r"helm --kube-context east install linkerd-multicluster -n linkerd-multicluster --create-namespace {} --set remoteMirrorServiceAccountName={{source1\,source2\,source3}}",
        chart.display()
    ));
    let accounts = run(
        "kubectl --context east -n linkerd-multicluster get sa -l linkerd.io/extension=multicluster -o name | sort",
    );
    assert_eq!(
        accounts.split_whitespace().collect::<Vec<_>>(),
        [
            "serviceaccount/linkerd-gateway",
            "serviceaccount/linkerd-multicluster-egress",
            "serviceaccount/source1",
            "serviceaccount/source2",
            "serviceaccount/source3"
        ]
    );
    run("kubectl --context east get deploy -n linkerd-multicluster linkerd-gateway");
    run(
        "kubectl --context east -n linkerd-multicluster create configmap not-helms --from-literal=a=b",
    );
    run("helm --kube-context east uninstall linkerd-multicluster -n linkerd-multicluster --wait");
    let left =
        run("kubectl --context east -n linkerd-multicluster get deploy,sa,configmap -o name");
    assert!(
        !left.contains("linkerd-gateway") && !left.contains("source1"),
        "{left}"
    );
    assert!(left.contains("configmap/not-helms"), "{left}");
}

/// A release outside the extension's namespace renders the Namespace itself; `helm uninstall`
/// keeps it (`helm.sh/resource-policy: keep`) with what Helm does not own. On `west`.
#[test]
fn a_namespace_the_chart_renders_survives_helm_uninstall() {
    let bed = mc_tests::shared_api_only().expect("the testbed starts");
    let work = tempfile::tempdir().unwrap();
    let run = |script: &str| nodes_common::check(sh(bed, work.path(), script), script);
    run(&format!(
        "helm --kube-context west install mc-multicluster {} --set namespace=mc-helm-kept",
        chart().display()
    ));
    run("kubectl --context west -n mc-helm-kept create configmap not-helms --from-literal=a=b");
    run("helm --kube-context west uninstall mc-multicluster --wait");
    let ns = run("kubectl --context west get ns mc-helm-kept -o jsonpath={.status.phase}");
    assert_eq!(ns, "Active", "the namespace is kept");
    run("kubectl --context west -n mc-helm-kept get configmap not-helms");
    let left = run("kubectl --context west -n mc-helm-kept get deploy,sa -o name");
    assert!(!left.contains("linkerd-gateway"), "{left}");
}
