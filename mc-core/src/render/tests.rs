//! Golden and behaviour tests of the renderer. Golden files live in `render/golden/`; they are
//! compared as parsed YAML, object by object. Regenerate them with
//! `MC_UPDATE_GOLDEN=1 cargo test -p mc-core render::` and review the diff.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use super::*;
use serde_json::json;

fn golden(name: &str, objects: &[Value]) {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("src/render/golden")
        .join(name);
    let yaml = to_yaml(objects).unwrap();
    if std::env::var_os("MC_UPDATE_GOLDEN").is_some() {
        std::fs::write(&path, &yaml).unwrap();
    }
    let want = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("{}: {e}; run with MC_UPDATE_GOLDEN=1", path.display()));
    let want: Vec<Value> = parse_stream(&want);
    assert_eq!(want.len(), objects.len(), "object count of {name}");
    for (want, got) in want.iter().zip(objects) {
        assert_eq!(
            want,
            got,
            "{name}: {} differs",
            ObjectRef::of(want)
                .map(|r| r.to_string())
                .unwrap_or_default()
        );
    }
}

fn parse_stream(text: &str) -> Vec<Value> {
    use serde::Deserialize as _;
    serde_yaml::Deserializer::from_str(text)
        .map(|doc| Value::deserialize(doc).unwrap())
        .filter(|v| !v.is_null())
        .collect()
}

fn find<'a>(objects: &'a [Value], kind: &str, name: &str) -> &'a Value {
    objects
        .iter()
        .find(|o| o["kind"] == kind && o["metadata"]["name"] == name)
        .unwrap_or_else(|| panic!("no {kind} {name}"))
}

fn kinds(objects: &[Value]) -> Vec<String> {
    objects
        .iter()
        .map(|o| {
            format!(
                "{}/{}",
                o["kind"].as_str().unwrap(),
                o["metadata"]["name"].as_str().unwrap()
            )
        })
        .collect()
}

fn values_with(sets: &str) -> InstallValues {
    let mut tree = InstallValues::default_tree();
    set(&mut tree, sets, false).unwrap();
    InstallValues::from_tree(&tree).unwrap()
}

fn link_values() -> LinkValues {
    LinkValues {
        cluster_name: "east".to_owned(),
        kubeconfig: "apiVersion: v1\nkind: Config\n".to_owned(),
        gateway: Some(LinkGateway {
            addresses: vec!["203.0.113.10".to_owned(), "gw.example.com".to_owned()],
            port: 4143,
            identity:
                "linkerd-gateway.linkerd-multicluster.serviceaccount.identity.linkerd.cluster.local"
                    .to_owned(),
            probe_path: "/ready".to_owned(),
            probe_port: 4191,
            probe_period: "3".to_owned(),
        }),
        created_by: "mc/cli test".to_owned(),
        mode: crate::egress::LinkMode::Auto,
        ..LinkValues::default()
    }
}

#[test]
fn install_default_matches_golden() {
    golden(
        "install-default.yaml",
        &install(&InstallValues::default()).unwrap(),
    );
}

#[test]
fn install_ha_two_accounts_matches_golden() {
    let mut tree = InstallValues::default_tree();
    merge(&mut tree, InstallValues::ha_tree());
    set(
        &mut tree,
        "remoteMirrorServiceAccountName=west\\,north,gateway.serviceType=NodePort,gateway.nodePort=30143",
        false,
    )
    .unwrap();
    golden(
        "install-ha.yaml",
        &install(&InstallValues::from_tree(&tree).unwrap()).unwrap(),
    );
}

#[test]
fn link_matches_golden() {
    golden("link-east.yaml", &link(&link_values()).unwrap());
}

#[test]
fn gateway_service_publishes_the_contract() {
    let objects = install(&values_with(
        "identityTrustDomain=example.org,gateway.probe.seconds=7",
    ))
    .unwrap();
    let svc = find(&objects, "Service", "linkerd-gateway");
    let ann = &svc["metadata"]["annotations"];
    assert_eq!(
        ann[labels::GATEWAY_IDENTITY],
        "linkerd-gateway.linkerd-multicluster.serviceaccount.identity.linkerd.example.org"
    );
    assert_eq!(ann[labels::PROBE_PATH], "/ready");
    assert_eq!(ann[labels::PROBE_PERIOD], "7");
    assert_eq!(ann[labels::MULTICLUSTER_GATEWAY], "true");
    assert_eq!(svc["spec"]["type"], "LoadBalancer");
    assert_eq!(
        svc["spec"]["ports"],
        json!([
            {"name": "mc-gateway", "port": 4143, "targetPort": "mc-gateway", "protocol": "TCP"},
            {"name": "mc-probe", "port": 4191, "targetPort": "mc-probe", "protocol": "TCP"},
        ])
    );
    let deploy = find(&objects, "Deployment", "linkerd-gateway");
    let args = &deploy["spec"]["template"]["spec"]["containers"][0]["args"];
    assert!(
        args.as_array().unwrap().contains(&json!(
            "--identity=linkerd-gateway.linkerd-multicluster.serviceaccount.identity.linkerd.example.org"
        )),
        "{args}"
    );
}

#[test]
fn every_installed_object_carries_the_extension_label() {
    for objects in [
        install(&InstallValues::default()).unwrap(),
        allow(&InstallValues::default(), &["a,b".to_owned()]).unwrap(),
        link(&link_values()).unwrap(),
    ] {
        for o in &objects {
            assert_eq!(
                o["metadata"]["labels"][labels::EXTENSION],
                labels::EXTENSION_VALUE,
                "{}",
                ObjectRef::of(o).unwrap()
            );
        }
    }
}

#[test]
fn gateway_false_renders_no_gateway_objects() {
    let objects = install(&values_with("gateway.enabled=false")).unwrap();
    assert!(
        !objects
            .iter()
            .any(|o| o["metadata"]["labels"]["component"] == "gateway"),
        "{:?}",
        kinds(&objects)
    );
    assert!(
        kinds(&objects)
            .contains(&"ServiceAccount/linkerd-service-mirror-remote-access-default".to_owned())
    );
}

#[test]
fn issuer_mode_mounts_the_issuer_and_mints_leaves_in_both_pods() {
    let values = values_with("identity.issuerSecret=mc-issuer,identity.leafLifetime=2m");
    let objects = install(&values).unwrap();
    for (name, identity) in [
        (
            "linkerd-gateway",
            "linkerd-gateway.linkerd-multicluster.serviceaccount.identity.linkerd.cluster.local",
        ),
        (
            "linkerd-multicluster-egress",
            "linkerd-multicluster-egress.linkerd-multicluster.serviceaccount.identity.linkerd.cluster.local",
        ),
    ] {
        let pod = &find(&objects, "Deployment", name)["spec"]["template"]["spec"];
        assert_eq!(
            pod["volumes"][0]["secret"]["secretName"], "mc-issuer",
            "{name}"
        );
        let args: Vec<&str> = pod["containers"][0]["args"]
            .as_array()
            .unwrap()
            .iter()
            .map(|a| a.as_str().unwrap())
            .collect();
        for want in [
            "--issuer-cert=/var/run/mc/identity/tls.crt",
            "--issuer-key=/var/run/mc/identity/tls.key",
            "--trust-anchors=/var/run/mc/identity/ca.crt",
            "--leaf-lifetime=2m",
            &format!("--identity={identity}"),
        ] {
            assert!(args.contains(&want), "{name}: {want} not in {args:?}");
        }
        assert!(!args.iter().any(|a| a.starts_with("--cert=")), "{args:?}");
    }
    let secret = issuer_secret(&values, "CERT", "KEY", "ANCHORS").unwrap();
    assert_eq!(secret["metadata"]["name"], "mc-issuer");
    assert_eq!(secret["type"], "kubernetes.io/tls");
    // Without an issuer Secret there is nothing to render, and a bad lifetime is refused.
    let err = issuer_secret(&InstallValues::default(), "C", "K", "A").unwrap_err();
    assert!(err.to_string().contains("identity.issuerSecret"), "{err}");
    let mut tree = InstallValues::default_tree();
    set(&mut tree, "identity.leafLifetime=soon", false).unwrap();
    let err = InstallValues::from_tree(&tree).unwrap_err().to_string();
    assert!(err.contains("identity.leafLifetime"), "{err}");
}

#[test]
fn remote_access_is_least_privilege() {
    let objects = allow(&InstallValues::default(), &["west".to_owned()]).unwrap();
    assert_eq!(
        kinds(&objects),
        [
            "Namespace/linkerd-multicluster",
            "ServiceAccount/west",
            "Secret/west-token",
            "ClusterRole/west",
            "ClusterRoleBinding/west"
        ]
    );
    let role = find(&objects, "ClusterRole", "west");
    for rule in role["rules"].as_array().unwrap() {
        let resources = rule["resources"].as_array().unwrap();
        assert!(!resources.contains(&json!("secrets")), "{rule}");
        for verb in rule["verbs"].as_array().unwrap() {
            let writes = ["create", "patch"].contains(&verb.as_str().unwrap());
            assert!(!writes || resources == &[json!("events")], "{rule}");
        }
        if resources.contains(&json!("configmaps")) {
            assert_eq!(rule["resourceNames"], json!(["linkerd-config"]));
        }
    }
    let secret = find(&objects, "Secret", "west-token");
    assert_eq!(secret["type"], "kubernetes.io/service-account-token");
    assert_eq!(
        secret["metadata"]["annotations"]["kubernetes.io/service-account.name"],
        "west"
    );
}

#[test]
fn invalid_values_are_rejected_before_rendering() {
    let mut tree = InstallValues::default_tree();
    set(&mut tree, "gateway.name=Not_A_Name", false).unwrap();
    let err = InstallValues::from_tree(&tree).unwrap_err().to_string();
    assert!(err.contains("gateway.name"), "{err}");
}

#[test]
fn gateway_less_link_has_no_selector_probe_or_probe_service() {
    let mut v = link_values();
    v.gateway = None;
    let objects = link(&v).unwrap();
    let link = find(&objects, "Link", "east");
    assert!(link["spec"].get("selector").is_none());
    assert!(link["spec"].get("gatewayAddress").is_none());
    assert!(link["spec"].get("probeSpec").is_none());
    assert!(!kinds(&objects).contains(&"Service/mc-probe-east".to_owned()));
}

#[test]
fn link_secret_holds_the_kubeconfig() {
    use base64::Engine as _;
    let objects = link(&link_values()).unwrap();
    let secrets: Vec<&Value> = objects.iter().filter(|o| o["kind"] == "Secret").collect();
    assert_eq!(secrets.len(), 2);
    for s in secrets {
        assert_eq!(s["type"], labels::REMOTE_KUBECONFIG_SECRET_TYPE);
        let data = base64::engine::general_purpose::STANDARD
            .decode(s["data"]["kubeconfig"].as_str().unwrap())
            .unwrap();
        assert_eq!(data, b"apiVersion: v1\nkind: Config\n");
    }
    let link = find(&objects, "Link", "east");
    assert_eq!(
        link["spec"]["gatewayAddress"],
        "203.0.113.10,gw.example.com"
    );
    assert_eq!(link["spec"]["probeSpec"]["period"], "3s");
    assert_eq!(
        link["spec"]["selector"],
        json!({"matchLabels": {"mirror.linkerd.io/exported": "true"}})
    );
}

#[test]
fn link_rejects_bad_input_with_the_flag_name() {
    let mut v = link_values();
    v.cluster_name = "East!".to_owned();
    assert!(link(&v).unwrap_err().to_string().contains("--cluster-name"));
    let mut v = link_values();
    v.selector = "a in (".to_owned();
    assert!(matches!(
        link(&v).unwrap_err(),
        Error::InvalidSelector { .. }
    ));
    let mut v = link_values();
    v.gateway.as_mut().unwrap().addresses.clear();
    assert!(
        link(&v)
            .unwrap_err()
            .to_string()
            .contains("--gateway-addresses")
    );
    let mut v = link_values();
    v.controller.as_mut().unwrap().log_format = "xml".to_owned();
    assert!(link(&v).unwrap_err().to_string().contains("--log-format"));
}

#[test]
fn unlink_lists_what_link_created() {
    let rendered = link(&link_values()).unwrap();
    let mirror = ObjectRef::new("v1", "Service", Some("shop"), "web-east");
    let refs = unlink_refs(
        "east",
        "linkerd-multicluster",
        "linkerd",
        true,
        false,
        std::slice::from_ref(&mirror),
    );
    for object in &rendered {
        let r = ObjectRef::of(object).unwrap();
        assert!(refs.contains(&r), "unlink misses {r}");
    }
    assert!(refs.contains(&mirror));
    // Upstream's Lease name, and the one mc's controller held before (an upgrade leaves none).
    for lease in ["service-mirror-write-east", "mc-mirror-write-east"] {
        let r = ObjectRef::new(
            "coordination.k8s.io/v1",
            "Lease",
            Some("linkerd-multicluster"),
            lease,
        );
        assert!(refs.contains(&r), "unlink misses {r}");
    }
    let only = unlink_refs(
        "east",
        "linkerd-multicluster",
        "linkerd",
        true,
        true,
        std::slice::from_ref(&mirror),
    );
    assert!(!only.contains(&mirror));
    assert!(!only.iter().any(|r| r.kind == "Link" || r.kind == "Secret"));
    let list = delete_list(&refs);
    assert_eq!(list[0]["kind"], "Link", "the Link goes first");
    assert_eq!(list.len(), refs.len());
}

#[test]
fn json_output_is_a_list() {
    let objects = allow(&InstallValues::default(), &["x".to_owned()]).unwrap();
    let text = to_json(&objects).unwrap();
    let v: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(v["kind"], "List");
    assert_eq!(v["items"].as_array().unwrap().len(), objects.len());
    assert_eq!(parse_stream(&to_yaml(&objects).unwrap()), objects);
}

#[test]
fn gateway_identity_secret_is_what_the_deployment_mounts() {
    use base64::Engine as _;
    let values = InstallValues::default();
    let secret = gateway_identity_secret(&values, "CHAIN", "KEY", "CA").unwrap();
    let objects = install(&values).unwrap();
    let deploy = find(&objects, "Deployment", "linkerd-gateway");
    let pod = &deploy["spec"]["template"]["spec"];
    assert_eq!(
        pod["volumes"][0]["secret"]["secretName"],
        secret["metadata"]["name"]
    );
    assert_eq!(secret["metadata"]["namespace"], "linkerd-multicluster");
    assert_eq!(secret["type"], "kubernetes.io/tls");
    let args = pod["containers"][0]["args"].as_array().unwrap();
    for (key, want) in [("tls.crt", "CHAIN"), ("tls.key", "KEY"), ("ca.crt", "CA")] {
        let data = base64::engine::general_purpose::STANDARD
            .decode(secret["data"][key].as_str().unwrap())
            .unwrap();
        assert_eq!(data, want.as_bytes());
        assert!(
            args.iter().any(|a| a
                .as_str()
                .unwrap()
                .ends_with(&format!("{IDENTITY_DIR}/{key}"))),
            "{key} is not passed to mc-gateway: {args:?}"
        );
    }
    assert_eq!(
        gateway_identity_of(&values).unwrap(),
        "linkerd-gateway.linkerd-multicluster.serviceaccount.identity.linkerd.cluster.local"
    );
}

/// `link_controller_for` on the Link that `link` renders gives exactly the controller objects
/// `link` renders after it, for a gateway link and a gateway-less one.
#[test]
fn controller_for_an_existing_link_matches_what_link_renders() {
    for gateway in [true, false] {
        let mut values = link_values();
        if !gateway {
            values.gateway = None;
        }
        let controller = ControllerValues::default();
        let objects = link(&values).unwrap();
        let link_object = objects.iter().find(|o| o["kind"] == "Link").unwrap();
        let existing = crate::link::Link::from_json(link_object.clone()).unwrap();
        let rendered = crate::render::link_controller_for(&existing, &controller).unwrap();
        assert_eq!(rendered, link_controller(&values, &controller).unwrap());
        assert_eq!(
            rendered.iter().any(|o| o["kind"] == "Service"),
            gateway,
            "probe Service only with a gateway"
        );
    }
}

/// The Role reads the Link's own credentials Secret, and the controller is named after the Link.
#[test]
fn controller_for_an_existing_link_uses_its_name_namespace_and_secret() {
    let link = crate::link::Link::from_yaml(
        "metadata: {name: north, namespace: mc-ops}\nspec: {targetClusterName: north, clusterCredentialsSecret: creds-n, gatewayAddress: 203.0.113.1, gatewayPort: \"4143\", probeSpec: {path: /ready, port: \"4181\"}}\n",
    )
    .unwrap();
    let objects = crate::render::link_controller_for(&link, &ControllerValues::default()).unwrap();
    let role = objects.iter().find(|o| o["kind"] == "Role").unwrap();
    assert_eq!(role["metadata"]["namespace"], "mc-ops");
    assert_eq!(role["rules"][0]["resourceNames"][0], "creds-n");
    let deploy = objects.iter().find(|o| o["kind"] == "Deployment").unwrap();
    assert_eq!(deploy["metadata"]["name"], "controller-north");
    let args = &deploy["spec"]["template"]["spec"]["containers"][0]["args"];
    assert!(
        args.as_array().unwrap().iter().any(|a| a == "--link=north"),
        "{args}"
    );
    let probe = objects.iter().find(|o| o["kind"] == "Service").unwrap();
    assert_eq!(probe["spec"]["ports"][0]["port"], 4181);

    let mut unnamed = link.clone();
    unnamed.metadata.name = None;
    let err = crate::render::link_controller_for(&unnamed, &ControllerValues::default())
        .unwrap_err()
        .to_string();
    assert!(err.contains("metadata.name"), "{err}");
}

#[test]
fn the_gateway_policy_is_a_mounted_config_map_passed_with_policy() {
    let values = values_with(
        "gateway.policy.rules[0].services[0]=*.billing.svc.cluster.local,\
         gateway.policy.rules[0].clients[0]=spiffe://cluster.local/ns/shop/*",
    );
    let objects = install(&values).unwrap();
    let cm = find(&objects, "ConfigMap", "linkerd-gateway-policy");
    assert_eq!(
        cm["data"]["policy.yaml"],
        r#"{"rules":[{"clients":["spiffe://cluster.local/ns/shop/*"],"services":["*.billing.svc.cluster.local"]}]}"#
    );
    let pod = &find(&objects, "Deployment", "linkerd-gateway")["spec"]["template"]["spec"];
    assert!(
        pod["containers"][0]["args"]
            .as_array()
            .unwrap()
            .contains(&"--policy=/var/run/mc/policy/policy.yaml".into())
    );
    assert_eq!(
        pod["volumes"][1],
        serde_json::json!({"name": "policy", "configMap": {"name": "linkerd-gateway-policy"}})
    );
    // The default: no rules, still a ConfigMap to edit later.
    let objects = install(&InstallValues::default()).unwrap();
    let cm = find(&objects, "ConfigMap", "linkerd-gateway-policy");
    assert_eq!(cm["data"]["policy.yaml"], r#"{"rules":[]}"#);
}

#[test]
fn bad_gateway_policy_values_name_the_rule_and_the_fix() {
    for (sets, want) in [
        (
            "gateway.policy.rules[0].services[0]=,gateway.policy.rules[0].clients[0]=a",
            "empty",
        ),
        ("gateway.policy.rules[0].clients[0]=a", "services"),
        ("gateway.policy.rules[0].services[0]=a", "clients"),
        (
            "gateway.policy.rules[0].services[0]=a,gateway.policy.rules[0].clients[0]=a<b",
            "character",
        ),
        (
            "gateway.policy.rules[0].services[0]=a,gateway.policy.rules[0].clientz[0]=a",
            "clientz",
        ),
    ] {
        let mut tree = InstallValues::default_tree();
        set(&mut tree, sets, false).unwrap();
        let err = InstallValues::from_tree(&tree).unwrap_err().to_string();
        assert!(err.contains(want), "{sets}: {err}");
        assert!(err.contains("fix:"), "{sets}: {err}");
    }
}

/// Two install-managed controllers over non-default `controllerDefaults`, one with overrides.
fn controllers_tree() -> Value {
    let mut tree = InstallValues::default_tree();
    set(
        &mut tree,
        "controllers[0].link.ref.name=east,\
         controllers[1].link.ref.name=north,controllers[1].gateway.enabled=false,\
         controllers[1].logLevel=debug,controllers[1].enableHeadlessServices=true,\
         controllerDefaults.replicas=2,controllerDefaults.logFormat=json,\
         controllerDefaults.gateway.probe.port=4181,controllerDefaults.enablePodAntiAffinity=true,\
         controllerDefaults.UID=3000",
        false,
    )
    .unwrap();
    tree
}

#[test]
fn install_with_controllers_matches_golden() {
    let values = InstallValues::from_tree(&controllers_tree()).unwrap();
    golden("install-controllers.yaml", &install(&values).unwrap());
}

/// An entry overrides only the keys it names (deeply: `gateway.enabled` keeps
/// `gateway.probe.port` from the defaults), as upstream's chart reads each key with `dig`.
#[test]
fn controller_entries_merge_over_the_defaults_key_by_key() {
    let values = InstallValues::from_tree(&controllers_tree()).unwrap();
    let c = values.controllers().unwrap();
    assert_eq!(c.len(), 2);
    assert_eq!((c[0].link.as_str(), c[1].link.as_str()), ("east", "north"));
    assert_eq!(c[0].settings.log_level, "info");
    assert_eq!(c[1].settings.log_level, "debug");
    for s in [&c[0].settings, &c[1].settings] {
        assert_eq!(s.replicas, 2);
        assert_eq!(s.log_format, "json");
        assert_eq!(s.uid, 3000);
        assert_eq!(s.gateway.probe.port, 4181);
    }
    assert!(c[0].settings.gateway.enabled && !c[1].settings.gateway.enabled);
    assert!(!c[0].settings.enable_headless_services && c[1].settings.enable_headless_services);
    let objects = install(&values).unwrap();
    let probe = find(&objects, "Service", "mc-probe-east");
    assert_eq!(probe["spec"]["ports"][0]["port"], 4181);
    assert!(
        !objects
            .iter()
            .any(|o| o["metadata"]["name"] == "mc-probe-north"),
        "no probe Service without a gateway"
    );
    let deploy = find(&objects, "Deployment", "controller-north");
    assert_eq!(deploy["spec"]["replicas"], 2);
    let args = &deploy["spec"]["template"]["spec"]["containers"][0]["args"];
    for want in [
        "--link=north",
        "--log-level=debug",
        "--log-format=json",
        "--enable-headless-services",
    ] {
        assert!(args.as_array().unwrap().iter().any(|a| a == want), "{args}");
    }
    find(&objects, "PodDisruptionBudget", "controller-east");
}

/// With the default controller settings, an install-managed controller is exactly what
/// `link --controller-only` renders for the Link `link` renders (gateway and gateway-less).
#[test]
fn an_installed_controller_equals_the_controller_of_its_link() {
    for gateway in [true, false] {
        let mut values = link_values();
        if !gateway {
            values.gateway = None;
        }
        let objects = link(&values).unwrap();
        let link_object = objects.iter().find(|o| o["kind"] == "Link").unwrap();
        let existing = crate::link::Link::from_json(link_object.clone()).unwrap();
        let want = link_controller_for(&existing, &ControllerValues::default()).unwrap();
        let sets = if gateway {
            "controllers[0].link.ref.name=east".to_owned()
        } else {
            "controllers[0].link.ref.name=east,controllers[0].gateway.enabled=false".to_owned()
        };
        let installed = install(&values_with(&sets)).unwrap();
        let base = install(&InstallValues::default()).unwrap();
        assert_eq!(installed[..base.len()], base[..], "the rest is unchanged");
        assert_eq!(installed[base.len()..], want[..], "gateway {gateway}");
    }
}

/// Common labels reach the controllers' objects, as every other object of the install.
#[test]
fn installed_controllers_carry_the_common_labels() {
    let objects = install(&values_with(
        "controllers[0].link.ref.name=east,commonLabels.team=net",
    ))
    .unwrap();
    for o in objects
        .iter()
        .filter(|o| o["metadata"]["labels"]["mirror.linkerd.io/cluster-name"] == "east")
    {
        assert_eq!(o["metadata"]["labels"]["team"], "net", "{o}");
    }
}

#[test]
fn the_ha_profile_raises_the_controllers_too() {
    let mut tree = InstallValues::default_tree();
    merge(&mut tree, InstallValues::ha_tree());
    set(&mut tree, "controllers[0].link.ref.name=east", false).unwrap();
    let c = InstallValues::from_tree(&tree)
        .unwrap()
        .controllers()
        .unwrap();
    assert_eq!(c[0].settings.replicas, 3);
    assert!(c[0].settings.enable_pod_anti_affinity);
}

/// Every bad `controllers` or `controllerDefaults` value is refused naming its path and a fix.
#[test]
fn bad_controller_values_name_the_field_and_the_fix() {
    let cases: &[(&str, &str, &str)] = &[
        (
            "controllers[0].logLevel=debug",
            "controllers[0].link.ref.name",
            "is required",
        ),
        (
            "controllers[0].link.ref.name=East_1",
            "controllers[0].link.ref.name",
            "is not a Link name",
        ),
        (
            "controllers[0].link.ref.name=east,controllers[1].link.ref.name=east",
            "controllers[1].link.ref.name",
            "is also the Link of controllers[0]",
        ),
        (
            "controllers[0].link.ref.name=east,controllers[0].replicas=0",
            "controllers[0].replicas",
            "leaves the controller without pods",
        ),
        (
            "controllers[0].link.ref.name=east,controllers[0].logLevel=loud",
            "controllers[0].logLevel",
            "is not a log level",
        ),
        (
            "controllers[0].link.ref.name=east,controllerDefaults.logFormat=xml",
            "controllerDefaults.logFormat",
            "is not a log format",
        ),
        (
            "controllers[0].link.ref.name=east,controllers[0].replica=2",
            "controllers[0]",
            "unknown field `replica`",
        ),
        (
            "controllers[0].link.ref.name=east,controllers[0].replicas=many",
            "controllers[0]",
            "invalid type",
        ),
        (
            "controllers[0].link.ref.name=east,controllers[0].retryLimit=3",
            "controllers[0].retryLimit",
            "does not have",
        ),
        (
            "controllerDefaults.image.name=cr.l5d.io/linkerd/controller",
            "controllerDefaults.image",
            "does not have",
        ),
        ("controllers[0]=east", "controllers[0]", "is not a map"),
        (
            "controllers[0].link.ref.name=east,controllers[0].gateway.probe.port=0",
            "controllers[0].gateway.probe.port",
            "is not a port",
        ),
    ];
    for (sets, path, problem) in cases {
        let mut tree = InstallValues::default_tree();
        set(&mut tree, sets, false).unwrap();
        let err = InstallValues::from_tree(&tree).unwrap_err();
        let Error::RenderValue {
            path: got,
            problem: why,
            fix,
        } = &err
        else {
            panic!("{sets}: {err}");
        };
        assert_eq!(got, path, "{sets}: {err}");
        assert!(why.contains(problem), "{sets}: {err}");
        assert!(!fix.is_empty(), "{sets}: {err}");
    }
}

/// An upstream-style values file (`-f`): the list and the defaults in upstream's layout.
#[test]
fn controllers_from_an_upstream_style_values_file() {
    let file = "controllers:\n- link:\n    ref:\n      name: east\n- link:\n    ref:\n      name: west\n  gateway:\n    enabled: false\ncontrollerDefaults:\n  logLevel: warn\n";
    let mut tree = InstallValues::default_tree();
    merge(&mut tree, parse_values_yaml("values.yaml", file).unwrap());
    let c = InstallValues::from_tree(&tree)
        .unwrap()
        .controllers()
        .unwrap();
    let got: Vec<_> = c
        .iter()
        .map(|c| {
            (
                c.link.as_str(),
                c.settings.gateway.enabled,
                c.settings.log_level.as_str(),
            )
        })
        .collect();
    assert_eq!(got, [("east", true, "warn"), ("west", false, "warn")]);
}

/// `localServiceMirror.excludedLabels`/`excludedAnnotations` (upstream's local service mirror
/// values): a comma-separated string or a list, normalized into ConfigMap
/// mc-local-service-mirror, which every controller Deployment reads into its environment.
#[test]
fn local_member_exclusions_reach_every_controller_through_a_config_map() {
    let objects = install(&values_with("")).unwrap();
    let cm = find(
        &objects,
        "ConfigMap",
        crate::mirror::LOCAL_MIRROR_CONFIG_MAP,
    );
    assert_eq!(cm["metadata"]["namespace"], "linkerd-multicluster");
    assert_eq!(
        cm["data"],
        json!({"excludedLabels": "", "excludedAnnotations": ""})
    );

    let values = values_with(
        "localServiceMirror.excludedLabels= evil.linkerd/*\\, evil \\,,\
         localServiceMirror.excludedAnnotations={a.io/*,b}",
    );
    let objects = install(&values).unwrap();
    let cm = find(
        &objects,
        "ConfigMap",
        crate::mirror::LOCAL_MIRROR_CONFIG_MAP,
    );
    assert_eq!(
        cm["data"],
        json!({"excludedLabels": "evil.linkerd/*,evil", "excludedAnnotations": "a.io/*,b"})
    );

    // Every controller, from `link` or from the install's `controllers`, reads the ConfigMap.
    let mut tree = controllers_tree();
    set(&mut tree, "localServiceMirror.excludedLabels=x", false).unwrap();
    let objects = install(&InstallValues::from_tree(&tree).unwrap()).unwrap();
    let linked = link(&link_values()).unwrap();
    for deployment in objects.iter().chain(&linked).filter(|o| {
        o["kind"] == "Deployment" && o["metadata"]["labels"]["component"] == "controller"
    }) {
        let env = &deployment["spec"]["template"]["spec"]["containers"][0]["env"];
        for (name, key) in [
            ("MC_LOCAL_EXCLUDED_LABELS", "excludedLabels"),
            ("MC_LOCAL_EXCLUDED_ANNOTATIONS", "excludedAnnotations"),
        ] {
            let var = env
                .as_array()
                .unwrap()
                .iter()
                .find(|v| v["name"] == name)
                .unwrap_or_else(|| panic!("{name} in {env}"));
            assert_eq!(
                var["valueFrom"]["configMapKeyRef"],
                json!({"name": "mc-local-service-mirror", "key": key, "optional": true})
            );
        }
    }
}

#[test]
fn bad_local_member_exclusions_name_the_value_and_the_fix() {
    for (sets, path, part) in [
        (
            "localServiceMirror.excludedLabels=ok\\,not a key",
            "localServiceMirror.excludedLabels[1]",
            "prefix/*",
        ),
        (
            "localServiceMirror.excludedAnnotations={/*}",
            "localServiceMirror.excludedAnnotations[0]",
            "prefix/*",
        ),
        (
            "localServiceMirror.replicas=2",
            "localServiceMirror.replicas",
            "local service mirror Deployment",
        ),
        (
            "localServiceMirror.federatedServiceSelector=a=b",
            "localServiceMirror.federatedServiceSelector",
            "only excludedLabels and excludedAnnotations",
        ),
        (
            "localServiceMirror.excludedLabels.x=1",
            "install values",
            "",
        ),
    ] {
        let mut tree = InstallValues::default_tree();
        set(&mut tree, sets, false).unwrap();
        let e = InstallValues::from_tree(&tree).unwrap_err().to_string();
        for want in [path, part, "fix:"] {
            assert!(e.contains(want), "{sets}: {want} not in {e}");
        }
    }
}
