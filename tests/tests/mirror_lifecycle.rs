//! E2E: the service mirror on the testbed (east = target, west = source), running in-process as
//! a non-admin identity with exactly the RBAC of docs/mirror.md. Run under `scripts/in-netns`.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod mirror_common;

use std::collections::BTreeMap;
use std::time::Duration;

use mc_core::link::TARGET_REACHABLE;
use mirror_common::{EXPORTED, Fixture, GATEWAY_PORT, ensure_namespace, eventually, unique};

const T: Duration = Duration::from_secs(30);

fn labels(s: &k8s_openapi::api::core::v1::Service) -> BTreeMap<String, String> {
    s.metadata.labels.clone().unwrap_or_default()
}

fn ann(s: &k8s_openapi::api::core::v1::Service) -> BTreeMap<String, String> {
    s.metadata.annotations.clone().unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread")]
async fn export_update_unexport_and_delete() {
    let bed = mc_tests::shared_api_only().unwrap();
    let (mut f, ns) = Fixture::with_namespace(bed, "life", true, false).await;
    f.start().await;

    // Export by label: the mirror Service and its Endpoints (gateway IP:port) appear.
    f.remote_service(
        &ns,
        "web",
        &[(EXPORTED, "true"), ("app", "web")],
        &[("http", 8080)],
        &["10.1.0.5"],
    )
    .await;
    let mirror = eventually("mirror of web", T, || f.mirror(&ns, "web")).await;
    let l = labels(&mirror);
    assert_eq!(
        l.get("mirror.linkerd.io/mirrored-service")
            .map(String::as_str),
        Some("true")
    );
    assert_eq!(l.get("mirror.linkerd.io/cluster-name"), Some(&f.cluster));
    assert_eq!(l.get("app").map(String::as_str), Some("web"));
    assert!(
        !l.contains_key(EXPORTED),
        "mirror.linkerd.io keys are not copied"
    );
    assert_eq!(
        ann(&mirror)
            .get("mirror.linkerd.io/remote-svc-fq-name")
            .map(String::as_str),
        Some(format!("web.{ns}.svc.cluster.local").as_str())
    );
    let spec = mirror.spec.clone().unwrap();
    assert!(spec.selector.is_none_or(|s| s.is_empty()), "selector-less");
    let ports = spec.ports.unwrap();
    assert_eq!(ports.len(), 1);
    assert_eq!(
        (ports[0].name.as_deref(), ports[0].port),
        (Some("http"), 8080)
    );
    let ep = f.wait_endpoints(&ns, "web", true, T).await;
    let subset = &ep.subsets.unwrap()[0];
    let p = &subset.ports.as_ref().unwrap()[0];
    assert_eq!(
        (p.name.as_deref(), p.port),
        (Some("http"), i32::from(GATEWAY_PORT))
    );
    assert_eq!(
        ep.metadata
            .annotations
            .unwrap()
            .get("mirror.linkerd.io/remote-gateway-identity")
            .map(String::as_str),
        Some("linkerd-gateway.linkerd-multicluster.serviceaccount.identity.linkerd.cluster.local")
    );
    // Status: Mirrored True with a localRef.
    let cond = f.wait_condition(&ns, "web", "Mirrored").await;
    assert_eq!(cond.0, "True");
    let link = f.link().await;
    let status = link.status.unwrap();
    let entry = status
        .mirror_services
        .iter()
        .find(|s| s.remote_ref.name == "web" && s.remote_ref.namespace == ns)
        .unwrap();
    assert_eq!(entry.controller_name, "linkerd.io/service-mirror");
    assert_eq!(
        entry.conditions[0]
            .local_ref
            .as_ref()
            .map(|r| r.name.clone()),
        Some(f.mirror_name("web"))
    );

    // A remote change (ports, labels) updates the mirror.
    f.remote_service(
        &ns,
        "web",
        &[(EXPORTED, "true"), ("app", "web"), ("tier", "front")],
        &[("http", 8080), ("grpc", 9090)],
        &["10.1.0.5"],
    )
    .await;
    let mirror = eventually("updated mirror", T, || async {
        let m = f.mirror(&ns, "web").await?;
        (m.spec.as_ref()?.ports.as_ref()?.len() == 2 && labels(&m).contains_key("tier"))
            .then_some(m)
    })
    .await;
    let names: Vec<_> = mirror
        .spec
        .unwrap()
        .ports
        .unwrap()
        .into_iter()
        .map(|p| p.name.unwrap())
        .collect();
    assert!(names.contains(&"grpc".to_string()));
    eventually("endpoints carry both ports", T, || async {
        let ep = f.mirror_endpoints(&ns, "web").await?;
        (ep.subsets?.first()?.ports.as_ref()?.len() == 2).then_some(())
    })
    .await;

    // Unexport: the mirror and its Endpoints go, and the status entry too.
    f.remote_service(
        &ns,
        "web",
        &[("app", "web")],
        &[("http", 8080)],
        &["10.1.0.5"],
    )
    .await;
    eventually("mirror removed on unexport", T, || async {
        (f.mirror(&ns, "web").await.is_none() && f.mirror_endpoints(&ns, "web").await.is_none())
            .then_some(())
    })
    .await;
    eventually("status entry removed", T, || async {
        f.condition(&ns, "web").await.is_none().then_some(())
    })
    .await;

    // Export again, then delete the remote Service: the mirror goes.
    f.remote_service(
        &ns,
        "web",
        &[(EXPORTED, "true")],
        &[("http", 8080)],
        &["10.1.0.5"],
    )
    .await;
    eventually("mirror back", T, || f.mirror(&ns, "web")).await;
    f.services(&f.east, &ns)
        .delete("web", &Default::default())
        .await
        .unwrap();
    eventually("mirror removed on delete", T, || async {
        f.mirror(&ns, "web").await.is_none().then_some(())
    })
    .await;
    f.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn custom_selector_long_names_and_empty_endpoints() {
    let bed = mc_tests::shared_api_only().unwrap();
    let mut f = Fixture::new(bed, "sel", false).await;
    // A Link whose selector is a custom label expression.
    let mut spec = f.link_spec();
    spec.selector = Some(
        k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector {
            match_expressions: Some(vec![
                k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelectorRequirement {
                    key: "team".into(),
                    operator: "In".into(),
                    values: Some(vec!["blue".into(), "green".into()]),
                },
            ]),
            match_labels: Some(BTreeMap::from([(
                mirror_common::SCOPE.to_string(),
                f.cluster.clone(),
            )])),
        },
    );
    let api = f.links();
    let mut link = f.link().await;
    link.spec = spec;
    api.replace(&f.cluster, &Default::default(), &link)
        .await
        .unwrap();
    let ns = unique("sel");
    ensure_namespace(&f.east, &ns).await;
    ensure_namespace(&f.west, &ns).await;
    f.start().await;

    f.remote_service(
        &ns,
        "blue",
        &[("team", "blue")],
        &[("http", 80)],
        &["10.1.0.7"],
    )
    .await;
    f.remote_service(
        &ns,
        "red",
        &[("team", "red")],
        &[("http", 80)],
        &["10.1.0.8"],
    )
    .await;
    f.export(&ns, "default").await;
    eventually("blue mirrored", T, || f.mirror(&ns, "blue")).await;
    // Empty remote endpoints → mirror Endpoints without subsets.
    f.remote_service(&ns, "empty", &[("team", "green")], &[("http", 80)], &[])
        .await;
    let ep = eventually("empty mirror endpoints", T, || {
        f.mirror_endpoints(&ns, "empty")
    })
    .await;
    assert!(
        ep.subsets.unwrap_or_default().is_empty(),
        "no subsets for an empty remote"
    );
    // A name that exceeds 63 characters once suffixed.
    let long = format!("a{}", "b".repeat(61));
    f.remote_service(
        &ns,
        &long,
        &[("team", "blue")],
        &[("http", 80)],
        &["10.1.0.7"],
    )
    .await;
    let mirrors = eventually("shortened mirror", T, || async {
        let list = f
            .services(&f.west, &ns)
            .list(&Default::default())
            .await
            .ok()?;
        let found: Vec<_> = list
            .items
            .into_iter()
            .filter(|s| ann(s).get("mirror.linkerd.io/remote-svc-name") == Some(&long))
            .collect();
        (!found.is_empty()).then_some(found)
    })
    .await;
    let name = mirrors[0].metadata.name.clone().unwrap();
    assert!(
        name.len() <= 63 && name != format!("{long}-{}", f.cluster),
        "{name}"
    );
    let ip = eventually("endpoints of the shortened mirror", T, || async {
        let ep = f
            .endpoints(&f.west, &ns)
            .get_opt(&name)
            .await
            .ok()
            .flatten()?;
        Some(ep.subsets?.first()?.addresses.as_ref()?.first()?.ip.clone())
    })
    .await;
    assert_eq!(ip, f.gateway.ip.to_string());
    // Not selected: never mirrored (give the controller time to be wrong).
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert!(f.mirror(&ns, "red").await.is_none());
    assert!(
        f.mirror(&ns, "default").await.is_none(),
        "the default label is not the custom selector"
    );
    f.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn foreign_service_with_the_mirror_name_is_untouched_and_reported() {
    let bed = mc_tests::shared_api_only().unwrap();
    let (mut f, ns) = Fixture::with_namespace(bed, "cfl", true, false).await;
    // A local Service that happens to have the mirror's name.
    let foreign = k8s_openapi::api::core::v1::Service {
        metadata: kube::api::ObjectMeta {
            labels: Some(BTreeMap::from([(
                "owner".to_string(),
                "someone-else".to_string(),
            )])),
            ..mirror_common::meta(Some(&ns), &f.mirror_name("db"))
        },
        spec: Some(k8s_openapi::api::core::v1::ServiceSpec {
            ports: Some(vec![k8s_openapi::api::core::v1::ServicePort {
                port: 5432,
                ..Default::default()
            }]),
            ..Default::default()
        }),
        ..Default::default()
    };
    let created = f
        .services(&f.west, &ns)
        .create(&Default::default(), &foreign)
        .await
        .unwrap();
    f.start().await;
    f.remote_service(
        &ns,
        "db",
        &[(EXPORTED, "true")],
        &[("pg", 5432)],
        &["10.1.0.9"],
    )
    .await;
    let cond = f.wait_condition(&ns, "db", "Conflict").await;
    assert_eq!(cond.0, "False");
    assert!(
        cond.1.contains("not created by the service mirror"),
        "{}",
        cond.1
    );
    // Untouched: same resourceVersion, labels and ports; no Endpoints written.
    let now = f
        .services(&f.west, &ns)
        .get(&f.mirror_name("db"))
        .await
        .unwrap();
    assert_eq!(
        now.metadata.resource_version,
        created.metadata.resource_version
    );
    assert!(f.mirror_endpoints(&ns, "db").await.is_none());
    // Unexporting must not delete it either.
    f.remote_service(&ns, "db", &[], &[("pg", 5432)], &["10.1.0.9"])
        .await;
    eventually("status entry removed", T, || async {
        f.condition(&ns, "db").await.is_none().then_some(())
    })
    .await;
    let now = f
        .services(&f.west, &ns)
        .get(&f.mirror_name("db"))
        .await
        .unwrap();
    assert_eq!(
        now.metadata.resource_version,
        created.metadata.resource_version
    );
    // An Event says so.
    let events: kube::Api<k8s_openapi::api::events::v1::Event> =
        kube::Api::namespaced(f.west.clone(), &f.links_ns);
    let list = events.list(&Default::default()).await.unwrap();
    assert!(
        list.items
            .iter()
            .any(|e| e.reason.as_deref() == Some("Conflict")),
        "a Conflict event: {:?}",
        list.items
            .iter()
            .map(|e| e.reason.clone())
            .collect::<Vec<_>>()
    );
    // Once the foreign object goes, the mirror is created.
    f.remote_service(
        &ns,
        "db",
        &[(EXPORTED, "true")],
        &[("pg", 5432)],
        &["10.1.0.9"],
    )
    .await;
    f.services(&f.west, &ns)
        .delete(&f.mirror_name("db"), &Default::default())
        .await
        .unwrap();
    let m = eventually("mirror created after the foreign Service left", T, || {
        f.mirror(&ns, "db")
    })
    .await;
    assert_eq!(
        labels(&m).get("mirror.linkerd.io/cluster-name"),
        Some(&f.cluster)
    );
    f.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn missing_namespace_is_reported_then_mirrored() {
    let bed = mc_tests::shared_api_only().unwrap();
    let (mut f, ns) = Fixture::with_namespace(bed, "mns", false, false).await;
    f.start().await;
    f.export(&ns, "api").await;
    let cond = f.wait_condition(&ns, "api", "MissingNamespace").await;
    assert_eq!(cond.0, "False");
    let link = f.link().await;
    let t0 = link.status.unwrap().mirror_services[0].conditions[0]
        .last_transition_time
        .clone();
    // Stays put (same transition time) while nothing changes.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let link = f.link().await;
    assert_eq!(
        link.status.unwrap().mirror_services[0].conditions[0].last_transition_time,
        t0
    );
    ensure_namespace(&f.west, &ns).await;
    eventually("mirrored once the namespace exists", T, || {
        f.mirror(&ns, "api")
    })
    .await;
    f.wait_condition(&ns, "api", "Mirrored").await;
    f.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn create_namespaces_flag_creates_them() {
    let bed = mc_tests::shared_api_only().unwrap();
    let (mut f, ns) = Fixture::with_namespace(bed, "cns", false, true).await;
    f.start().await;
    f.export(&ns, "api").await;
    eventually("mirror in a created namespace", T, || f.mirror(&ns, "api")).await;
    let nsobj: kube::Api<k8s_openapi::api::core::v1::Namespace> = kube::Api::all(f.west.clone());
    let created = nsobj.get(&ns).await.unwrap();
    assert_eq!(
        created
            .metadata
            .labels
            .unwrap()
            .get("mirror.linkerd.io/cluster-name"),
        Some(&f.cluster)
    );
    f.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn gateway_probe_failures_mark_endpoints_not_ready_and_recover() {
    let bed = mc_tests::shared_api_only().unwrap();
    let (mut f, ns) = Fixture::with_namespace(bed, "gw", true, false).await;
    let metrics = f.start().await;
    f.export(&ns, "web").await;
    f.wait_endpoints(&ns, "web", true, T).await;
    // Probe Service and Endpoints.
    let probe = eventually("probe Service", T, || async {
        f.services(&f.west, &f.links_ns)
            .get_opt(&format!("mc-probe-{}", f.cluster))
            .await
            .ok()
            .flatten()
    })
    .await;
    assert_eq!(
        labels(&probe)
            .get("mirror.linkerd.io/mirrored-gateway")
            .map(String::as_str),
        Some("true")
    );
    eventually("probe Endpoints", T, || async {
        let ep = f
            .endpoints(&f.west, &f.links_ns)
            .get_opt(&format!("mc-probe-{}", f.cluster))
            .await
            .ok()??;
        let s = ep.subsets?.first()?.clone();
        (s.addresses?.first()?.ip == f.gateway.ip.to_string()
            && s.ports?.first()?.port == i32::from(f.gateway.port))
        .then_some(())
    })
    .await;

    // period 1 s (+10 % jitter), threshold 3: notReady within ~3.3 s (allow scheduling slack).
    f.gateway.set_ready(false);
    let start = std::time::Instant::now();
    f.wait_endpoints(&ns, "web", false, Duration::from_secs(8))
        .await;
    let took = start.elapsed();
    assert!(
        took >= Duration::from_secs(2),
        "dead only after the threshold: {took:?}"
    );
    let text = metrics.encode();
    assert!(
        text.contains(&format!(
            "gateway_alive{{target_cluster_name=\"{}\"}} 0",
            f.cluster
        )),
        "{text}"
    );
    assert!(
        text.contains(&format!(
            "gateway_probes_total{{target_cluster_name=\"{}\",probe_successful=\"false\"}}",
            f.cluster
        )),
        "{text}"
    );
    assert!(
        text.contains("probe_manager_event_enqueues_total{event_type=\"GatewayDown\"} 1"),
        "{text}"
    );
    assert!(
        text.contains(&format!(
            "service_mirror_endpoint_repairs_total{{target_cluster_name=\"{}\"}}",
            f.cluster
        )),
        "{text}"
    );
    f.gateway.set_ready(true);
    f.wait_endpoints(&ns, "web", true, Duration::from_secs(8))
        .await;
    let status = eventually("gateway status alive", T, || async {
        f.link().await.status?.gateway.filter(|g| g.alive)
    })
    .await;
    assert!(status.alive);
    f.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn restart_makes_no_writes_and_collects_orphans() {
    let bed = mc_tests::shared_api_only().unwrap();
    let (mut f, ns) = Fixture::with_namespace(bed, "rst", true, false).await;
    f.start().await;
    for name in ["a", "b", "c"] {
        f.export(&ns, name).await;
    }
    for name in ["a", "b", "c"] {
        f.wait_endpoints(&ns, name, true, T).await;
        f.wait_condition(&ns, name, "Mirrored").await;
    }
    let gauge = format!("mirror_services{{target_cluster_name=\"{}\"}} 3", f.cluster);
    let m = f.metrics();
    eventually("mirror_services gauge", T, || async {
        m.encode().contains(&gauge).then_some(())
    })
    .await;
    // Steady state: no writes at all for a while.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let before = f.mirror_writes();
    tokio::time::sleep(Duration::from_secs(5)).await;
    assert_eq!(f.mirror_writes(), before, "writes in steady state");
    let status_before = f.link().await.status;
    f.stop().await;

    // A restart with nothing changed makes zero writes (mirrors and status).
    let metrics = f.start().await;
    eventually("controller synced", T, || async {
        (metrics
            .encode()
            .contains("mirror_reconcile_duration_seconds_count"))
        .then_some(())
    })
    .await;
    tokio::time::sleep(Duration::from_secs(6)).await;
    assert_eq!(f.mirror_writes(), 0, "a restart wrote mirrors");
    assert_eq!(
        metrics.writes(&f.cluster, Some("links/status")),
        0,
        "a restart wrote the status"
    );
    assert_eq!(
        metrics.writes(&f.cluster, Some("links")),
        0,
        "a restart rewrote the gateway annotation"
    );
    let status_after = f.link().await.status;
    assert_eq!(
        status_before.map(|s| s.mirror_services),
        status_after.map(|s| s.mirror_services)
    );
    f.stop().await;

    // While the controller is down, a remote Service is deleted: its mirror is an orphan.
    f.services(&f.east, &ns)
        .delete("b", &Default::default())
        .await
        .unwrap();
    f.start().await;
    eventually("orphan collected", T, || async {
        (f.mirror(&ns, "b").await.is_none() && f.mirror_endpoints(&ns, "b").await.is_none())
            .then_some(())
    })
    .await;
    assert!(f.mirror(&ns, "a").await.is_some() && f.mirror(&ns, "c").await.is_some());
    f.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn link_deleted_keeps_mirrors_and_recreated_link_adopts_them() {
    let bed = mc_tests::shared_api_only().unwrap();
    let (mut f, ns) = Fixture::with_namespace(bed, "lnk", true, false).await;
    f.start().await;
    f.export(&ns, "web").await;
    f.wait_endpoints(&ns, "web", true, T).await;
    let uid = f.mirror(&ns, "web").await.unwrap().metadata.uid;
    f.links()
        .delete(&f.cluster, &Default::default())
        .await
        .unwrap();
    // The worker stops: a new export is not mirrored, the old mirror stays.
    f.export(&ns, "late").await;
    tokio::time::sleep(Duration::from_secs(4)).await;
    assert!(
        f.mirror(&ns, "late").await.is_none(),
        "worker still running after Link deletion"
    );
    assert_eq!(
        f.mirror(&ns, "web").await.unwrap().metadata.uid,
        uid,
        "mirror kept"
    );
    // Re-created: the existing mirror is adopted (same object), the new export mirrored.
    f.create_link(f.link_spec()).await;
    eventually("late mirrored", T, || f.mirror(&ns, "late")).await;
    assert_eq!(
        f.mirror(&ns, "web").await.unwrap().metadata.uid,
        uid,
        "mirror adopted, not recreated"
    );
    f.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn rotated_credentials_take_effect_without_restart() {
    let bed = mc_tests::shared_api_only().unwrap();
    let (mut f, ns) = Fixture::with_namespace(bed, "rot", true, false).await;
    f.start().await;
    f.export(&ns, "one").await;
    eventually("one mirrored", T, || f.mirror(&ns, "one")).await;
    // Revoke: delete and re-create the ServiceAccount (old tokens die with it), then rotate.
    bed.kubectl("east")
        .args(["delete", "serviceaccount", &f.sa, "-n", &f.sa_ns])
        .output()
        .unwrap();
    mirror_common::apply(bed, "east", &mirror_common::target_rbac(&f.sa, &f.sa_ns));
    f.write_credentials().await;
    f.export(&ns, "two").await;
    eventually(
        "two mirrored with the new credentials",
        Duration::from_secs(60),
        || f.mirror(&ns, "two"),
    )
    .await;
    assert!(
        f.mirror(&ns, "one").await.is_some(),
        "existing mirrors kept"
    );
    f.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn headless_statefulset_service_gets_per_host_mirrors() {
    let bed = mc_tests::shared_api_only().unwrap();
    let mut f = Fixture::new(bed, "hdl", false).await;
    f.options.enable_headless_services = true;
    let ns = unique("hdl");
    ensure_namespace(&f.east, &ns).await;
    ensure_namespace(&f.west, &ns).await;
    f.start().await;
    // A headless Service whose Endpoints carry hostnames (a StatefulSet).
    let svc = k8s_openapi::api::core::v1::Service {
        metadata: kube::api::ObjectMeta {
            labels: Some(BTreeMap::from([
                (EXPORTED.to_string(), "true".to_string()),
                (mirror_common::SCOPE.to_string(), f.cluster.clone()),
            ])),
            ..mirror_common::meta(Some(&ns), "db")
        },
        spec: Some(k8s_openapi::api::core::v1::ServiceSpec {
            cluster_ip: Some("None".into()),
            ports: Some(vec![k8s_openapi::api::core::v1::ServicePort {
                name: Some("pg".into()),
                port: 5432,
                ..Default::default()
            }]),
            ..Default::default()
        }),
        ..Default::default()
    };
    f.services(&f.east, &ns)
        .create(&Default::default(), &svc)
        .await
        .unwrap();
    let ep = k8s_openapi::api::core::v1::Endpoints {
        metadata: kube::api::ObjectMeta {
            labels: Some(BTreeMap::from([
                (EXPORTED.to_string(), "true".to_string()),
                (mirror_common::SCOPE.to_string(), f.cluster.clone()),
            ])),
            ..mirror_common::meta(Some(&ns), "db")
        },
        subsets: Some(vec![k8s_openapi::api::core::v1::EndpointSubset {
            addresses: Some(
                [("db-0", "10.2.0.10"), ("db-1", "10.2.0.11")]
                    .iter()
                    .map(|(h, ip)| k8s_openapi::api::core::v1::EndpointAddress {
                        hostname: Some(h.to_string()),
                        ip: ip.to_string(),
                        ..Default::default()
                    })
                    .collect(),
            ),
            ports: Some(vec![k8s_openapi::api::core::v1::EndpointPort {
                name: Some("pg".into()),
                port: 5432,
                ..Default::default()
            }]),
            ..Default::default()
        }]),
    };
    f.endpoints(&f.east, &ns)
        .create(&Default::default(), &ep)
        .await
        .unwrap();
    let mirror = eventually("headless mirror", T, || f.mirror(&ns, "db")).await;
    assert_eq!(mirror.spec.unwrap().cluster_ip.as_deref(), Some("None"));
    let mut host_ips = Vec::new();
    for host in ["db-0", "db-1"] {
        let s = eventually("endpoint mirror", T, || f.mirror(&ns, host)).await;
        assert_eq!(
            labels(&s).get("mirror.linkerd.io/headless-mirror-svc-name"),
            Some(&f.mirror_name("db"))
        );
        host_ips.push((host.to_string(), s.spec.unwrap().cluster_ip.unwrap()));
        f.wait_endpoints(&ns, host, true, T).await;
    }
    let ep = eventually("headless mirror endpoints", T, || async {
        let ep = f.mirror_endpoints(&ns, "db").await?;
        (ep.subsets.as_ref()?.first()?.addresses.as_ref()?.len() == 2).then_some(ep)
    })
    .await;
    let mut got: Vec<(String, String)> = ep.subsets.unwrap()[0]
        .addresses
        .clone()
        .unwrap()
        .into_iter()
        .map(|a| (a.hostname.unwrap(), a.ip))
        .collect();
    got.sort();
    host_ips.sort();
    assert_eq!(
        got, host_ips,
        "hostnames resolve to the endpoint mirrors' ClusterIPs"
    );
    // Unexport removes the headless mirror and every endpoint mirror.
    let mut unexported = svc.clone();
    unexported.metadata.labels = Some(BTreeMap::new());
    f.services(&f.east, &ns)
        .patch(
            "db",
            &kube::api::PatchParams::default(),
            &kube::api::Patch::Merge(serde_json::json!({"metadata": {"labels": {EXPORTED: null}}})),
        )
        .await
        .unwrap();
    eventually("headless mirrors removed", T, || async {
        (f.mirror(&ns, "db").await.is_none()
            && f.mirror(&ns, "db-0").await.is_none()
            && f.mirror(&ns, "db-1").await.is_none())
        .then_some(())
    })
    .await;
    f.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn invalid_credentials_are_reported_and_mirrors_kept() {
    let bed = mc_tests::shared_api_only().unwrap();
    let (mut f, ns) = Fixture::with_namespace(bed, "bad", true, false).await;
    let metrics = f.start().await;
    f.export(&ns, "web").await;
    f.wait_endpoints(&ns, "web", true, T).await;
    let uid = f.mirror(&ns, "web").await.unwrap().metadata.uid;
    // The Link-level condition, as the API server stores it: (status, reason, message).
    let target_condition = || async {
        let link = f.link().await;
        let c = link.status?.condition(TARGET_REACHABLE)?.clone();
        Some((c.status, c.reason, c.message))
    };
    let connected = eventually("TargetReachable=True", T, || async {
        target_condition().await.filter(|c| c.0 == "True")
    })
    .await;
    assert_eq!(connected.1, "Connected");
    let reachable = |v: u8| {
        format!(
            "mirror_target_reachable{{target_cluster_name=\"{}\"}} {v}",
            f.cluster
        )
    };
    assert!(metrics.encode().contains(&reachable(1)));

    // A Secret whose kubeconfig is garbage: Event + metric, mirrors stay.
    f.break_credentials().await;
    eventually("target marked unreachable", T, || async {
        metrics.encode().contains(&reachable(0)).then_some(())
    })
    .await;
    assert!(metrics.encode().contains("reason=\"credentials\""));
    let events: kube::Api<k8s_openapi::api::events::v1::Event> =
        kube::Api::namespaced(f.west.clone(), &f.links_ns);
    eventually("InvalidCredentials event", T, || async {
        let list = events.list(&Default::default()).await.ok()?;
        list.items
            .iter()
            .find(|e| e.reason.as_deref() == Some("InvalidCredentials"))
            .and_then(|e| e.note.clone())
    })
    .await;
    let (_, reason, message) = eventually("TargetReachable=False", T, || async {
        target_condition().await.filter(|c| c.0 == "False")
    })
    .await;
    assert_eq!(reason, "InvalidCredentials");
    assert!(
        message.contains(&f.secret_name()) && message.contains("not a valid kubeconfig"),
        "the condition names the Secret and the problem: {message}"
    );
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(
        f.mirror(&ns, "web").await.unwrap().metadata.uid,
        uid,
        "mirror kept"
    );
    f.wait_endpoints(&ns, "web", true, T).await;

    // A valid token of an identity without the remote-access permissions: Forbidden.
    let nobody = unique("nobody");
    let out = bed
        .kubectl("east")
        .args(["create", "serviceaccount", &nobody, "-n", "default"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    let out = bed
        .kubectl("east")
        .args(["create", "token", &nobody, "-n", "default", "--duration=1h"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    let token = String::from_utf8(out.stdout).unwrap();
    let kubeconfig =
        std::fs::read(bed.token_kubeconfig("east", &nobody, token.trim()).unwrap()).unwrap();
    f.set_kubeconfig(&String::from_utf8(kubeconfig).unwrap())
        .await;
    let (_, _, message) = eventually("TargetReachable=False/Forbidden", T, || async {
        target_condition()
            .await
            .filter(|c| c.0 == "False" && c.1 == "Forbidden")
    })
    .await;
    assert!(
        message.contains("listing Services") && message.contains(&nobody),
        "the condition says which call was denied to whom: {message}"
    );
    assert_eq!(
        f.mirror(&ns, "web").await.unwrap().metadata.uid,
        uid,
        "mirror kept"
    );

    // Fixed credentials: mirroring continues without a restart.
    f.write_credentials().await;
    f.export(&ns, "api").await;
    eventually("api mirrored after the fix", T, || f.mirror(&ns, "api")).await;
    assert!(metrics.encode().contains(&reachable(1)));
    let (_, reason, _) = eventually("TargetReachable=True again", T, || async {
        target_condition().await.filter(|c| c.0 == "True")
    })
    .await;
    assert_eq!(reason, "Connected");
    f.stop().await;
}

/// The Lease is upstream's `service-mirror-write-<link>`: while a foreign holder (as an upstream
/// controller for the same Link) renews it, mc's controller does not mirror; once it stops
/// renewing, mc's takes over. Then two mc replicas: one leads, the standby takes over when the
/// leader stops.
#[tokio::test(flavor = "multi_thread")]
async fn two_replicas_one_leader_and_failover() {
    use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime;
    let bed = mc_tests::shared_api_only().unwrap();
    let (mut f, ns) = Fixture::with_namespace(bed, "ha", true, false).await;
    let leases: kube::Api<Lease> = kube::Api::namespaced(f.west.clone(), &f.links_ns);
    let lease_name = format!("service-mirror-write-{}", f.cluster);

    // A foreign holder takes the Lease first and renews it every 500 ms (2 s duration).
    let now = || MicroTime(k8s_openapi::jiff::Timestamp::now());
    let foreign = Lease {
        metadata: mirror_common::meta(Some(&f.links_ns), &lease_name),
        spec: Some(LeaseSpec {
            holder_identity: Some("linkerd-service-mirror-0".to_owned()),
            lease_duration_seconds: Some(2),
            acquire_time: Some(now()),
            renew_time: Some(now()),
            lease_transitions: Some(0),
            ..LeaseSpec::default()
        }),
    };
    leases.create(&Default::default(), &foreign).await.unwrap();
    let (renew_stop, mut renew_rx) = tokio::sync::oneshot::channel::<()>();
    let renewer = tokio::spawn({
        let leases = leases.clone();
        let lease_name = lease_name.clone();
        async move {
            loop {
                tokio::select! {
                    _ = &mut renew_rx => return,
                    () = tokio::time::sleep(Duration::from_millis(500)) => {}
                }
                let patch = serde_json::json!({"spec": {"renewTime": now()}});
                let _ = leases
                    .patch(
                        &lease_name,
                        &kube::api::PatchParams::default(),
                        &kube::api::Patch::Merge(patch),
                    )
                    .await;
            }
        }
    });
    let first = f.start().await;
    f.export(&ns, "a").await;
    tokio::time::sleep(Duration::from_secs(5)).await;
    assert!(
        f.mirror(&ns, "a").await.is_none(),
        "mirrored under a held Lease"
    );
    assert!(first.encode().contains("mirror_link_workers 0"));
    assert_eq!(
        first.writes(&f.cluster, None),
        0,
        "wrote under a held Lease"
    );
    let _ = renew_stop.send(());
    renewer.await.unwrap();
    f.wait_endpoints(&ns, "a", true, T).await;
    let spec = leases.get(&lease_name).await.unwrap().spec.unwrap();
    assert_eq!(spec.lease_transitions, Some(1), "taken over");
    // A standby replica with another identity.
    let client = bed
        .client_for(&f.controller_kubeconfig, "west")
        .await
        .unwrap();
    let mut options = f.options.clone();
    options.identity = format!("standby-{}", f.cluster);
    let standby = mc_mirror::Controller::new(client, options.clone());
    let standby_metrics = standby.metrics();
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(standby.run(async move {
        let _ = stop_rx.await;
    }));
    let holder = leases
        .get(&lease_name)
        .await
        .unwrap()
        .spec
        .unwrap()
        .holder_identity;
    assert_eq!(holder, Some(f.options.identity.clone()));
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert!(first.encode().contains("mirror_link_workers 1"));
    assert!(
        standby_metrics.encode().contains("mirror_link_workers 0"),
        "standby works"
    );
    assert_eq!(standby_metrics.writes(&f.cluster, None), 0, "standby wrote");

    // The leader stops (releasing the lease): the standby takes over and mirrors.
    f.stop().await;
    eventually("standby leads", T, || async {
        let h = leases.get(&lease_name).await.ok()?.spec?.holder_identity;
        (h.as_deref() == Some(options.identity.as_str())).then_some(())
    })
    .await;
    f.export(&ns, "b").await;
    f.wait_endpoints(&ns, "b", true, T).await;
    assert!(standby_metrics.writes(&f.cluster, Some("services")) >= 1);
    let _ = stop_tx.send(());
    task.await.unwrap().unwrap();
}

/// Issue #19 item 9: the Endpoints a user writes by hand for a selector-less Service (an
/// external database) carry no labels; they are joined to the exported Service by name, whether
/// they were written before or after the export, and their changes propagate.
#[tokio::test(flavor = "multi_thread")]
async fn unlabelled_endpoints_of_selector_less_services_are_mirrored() {
    let bed = mc_tests::shared_api_only().unwrap();
    let (mut f, ns) = Fixture::with_namespace(bed, "nolab", true, false).await;
    let none = BTreeMap::new();
    let ports = [("pg", 5432)];
    // Written before the Service exists (and before the controller starts).
    f.remote_endpoints(&ns, "early", &none, &ports, &["10.1.0.10"])
        .await;
    f.start().await;
    // The reference: labelled Endpoints, as the endpoints controller writes them. Once it is
    // mirrored, the Endpoints of "early" have been listed (and passed over: not exported).
    f.remote_service(
        &ns,
        "labelled",
        &[(EXPORTED, "true")],
        &ports,
        &["10.1.0.11"],
    )
    .await;
    let reference = f.wait_endpoints(&ns, "labelled", true, T).await;
    f.remote_service_only(&ns, "early", &[(EXPORTED, "true")], &ports)
        .await;
    let early = f.wait_endpoints(&ns, "early", true, T).await;
    assert_eq!(early.subsets, reference.subsets, "as if they were labelled");

    // Exported first, Endpoints written later.
    f.remote_service_only(&ns, "late", &[(EXPORTED, "true")], &ports)
        .await;
    let empty = eventually("mirror endpoints of late", T, || {
        f.mirror_endpoints(&ns, "late")
    })
    .await;
    assert!(empty.subsets.unwrap_or_default().is_empty());
    f.remote_endpoints(&ns, "late", &none, &ports, &["10.1.0.12"])
        .await;
    let late = f.wait_endpoints(&ns, "late", true, T).await;
    assert_eq!(late.subsets, reference.subsets);

    // Updates propagate: no address left, then deleted, then back.
    for (svc, ready) in [("late", &[][..]), ("early", &[][..])] {
        f.remote_endpoints(&ns, svc, &none, &ports, ready).await;
        eventually(&format!("{svc}: no addresses"), T, || async {
            let ep = f.mirror_endpoints(&ns, svc).await?;
            ep.subsets.unwrap_or_default().is_empty().then_some(())
        })
        .await;
    }
    f.remote_endpoints(&ns, "early", &none, &ports, &["10.1.0.13"])
        .await;
    f.wait_endpoints(&ns, "early", true, T).await;
    f.endpoints(&f.east, &ns)
        .delete("early", &Default::default())
        .await
        .unwrap();
    eventually("early: Endpoints deleted", T, || async {
        let ep = f.mirror_endpoints(&ns, "early").await?;
        ep.subsets.unwrap_or_default().is_empty().then_some(())
    })
    .await;
    f.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn remote_discovery_mirrors_have_no_endpoints_and_switch_modes() {
    let bed = mc_tests::shared_api_only().unwrap();
    let (mut f, ns) = Fixture::with_namespace(bed, "rdisc", true, false).await;
    f.start().await;

    // Exported for remote discovery: a mirror Service, labelled for the destination's cluster
    // store, and no Endpoints (the proxy resolves the remote service itself).
    f.remote_service(
        &ns,
        "api",
        &[(EXPORTED, "remote-discovery")],
        &[("grpc", 9090)],
        &["10.1.0.7"],
    )
    .await;
    let mirror = eventually("remote-discovery mirror", T, || f.mirror(&ns, "api")).await;
    let l = labels(&mirror);
    assert_eq!(
        l.get("multicluster.linkerd.io/remote-discovery"),
        Some(&f.cluster)
    );
    assert_eq!(
        l.get("multicluster.linkerd.io/remote-service")
            .map(String::as_str),
        Some("api")
    );
    assert_eq!(
        l.get("mirror.linkerd.io/mirrored-service")
            .map(String::as_str),
        Some("true")
    );
    assert_eq!(
        ann(&mirror)
            .get("mirror.linkerd.io/remote-svc-fq-name")
            .map(String::as_str),
        Some(format!("api.{ns}.svc.cluster.local").as_str())
    );
    let ports = mirror.spec.unwrap().ports.unwrap();
    assert_eq!(
        (ports[0].name.as_deref(), ports[0].port),
        (Some("grpc"), 9090)
    );
    let (status, _) = f.wait_condition(&ns, "api", "Mirrored").await;
    assert_eq!(status, "True");
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert!(
        f.mirror_endpoints(&ns, "api").await.is_none(),
        "no Endpoints for a remote-discovery mirror"
    );

    // Switched to gateway mode: the same mirror gets gateway Endpoints and loses the
    // remote-discovery labels.
    f.remote_service(
        &ns,
        "api",
        &[(EXPORTED, "true")],
        &[("grpc", 9090)],
        &["10.1.0.7"],
    )
    .await;
    f.wait_endpoints(&ns, "api", true, T).await;
    let mirror = eventually("gateway-mode mirror", T, || async {
        let m = f.mirror(&ns, "api").await?;
        (!labels(&m).contains_key("multicluster.linkerd.io/remote-discovery")).then_some(m)
    })
    .await;
    assert_eq!(
        labels(&mirror)
            .get("mirror.linkerd.io/mirrored-service")
            .map(String::as_str),
        Some("true")
    );

    // And back: the gateway Endpoints go away again.
    f.remote_service(
        &ns,
        "api",
        &[(EXPORTED, "remote-discovery")],
        &[("grpc", 9090)],
        &["10.1.0.7"],
    )
    .await;
    eventually("gateway Endpoints removed", T, || async {
        f.mirror_endpoints(&ns, "api").await.is_none().then_some(())
    })
    .await;
    f.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_target_unreachable_from_the_start_is_reported_in_the_link_status() {
    let bed = mc_tests::shared_api_only().unwrap();
    let (mut f, _ns) = Fixture::with_namespace(bed, "badstart", true, false).await;
    f.break_credentials().await;
    // The worker never gets a remote view, and still writes the Link-level condition.
    f.start().await;
    let condition = || async {
        let c = f.link().await.status?.condition(TARGET_REACHABLE)?.clone();
        Some((c.status, c.reason))
    };
    let down = eventually("TargetReachable=False", T, || async {
        condition().await.filter(|c| c.0 == "False")
    })
    .await;
    assert_eq!(down.1, "InvalidCredentials");
    f.write_credentials().await;
    eventually("TargetReachable=True", T, || async {
        condition().await.filter(|c| c.0 == "True")
    })
    .await;
    f.stop().await;
}

/// The egress's Service and Endpoints in the Links' namespace, as install renders them and the
/// endpoints controller fills them (here written by hand: no Pods on this testbed).
async fn fake_egress(f: &Fixture, ips: &[&str]) {
    use k8s_openapi::api::core::v1::{
        EndpointAddress, EndpointPort, EndpointSubset, Endpoints, Service, ServicePort, ServiceSpec,
    };
    use kube::api::{ObjectMeta, Patch, PatchParams};
    let name = mc_core::egress::EGRESS_NAME;
    let meta = ObjectMeta {
        name: Some(name.into()),
        namespace: Some(f.links_ns.clone()),
        ..ObjectMeta::default()
    };
    let svc = Service {
        metadata: meta.clone(),
        spec: Some(ServiceSpec {
            cluster_ip: Some("None".into()),
            ports: Some(vec![ServicePort {
                name: Some("mc-admin".into()),
                port: 4191,
                ..ServicePort::default()
            }]),
            ..ServiceSpec::default()
        }),
        ..Service::default()
    };
    let ep = Endpoints {
        metadata: meta,
        subsets: Some(vec![EndpointSubset {
            addresses: Some(
                ips.iter()
                    .map(|ip| EndpointAddress {
                        ip: (*ip).into(),
                        ..EndpointAddress::default()
                    })
                    .collect(),
            ),
            ports: Some(vec![EndpointPort {
                name: Some("mc-admin".into()),
                port: 4191,
                ..EndpointPort::default()
            }]),
            ..EndpointSubset::default()
        }]),
    };
    let pp = PatchParams::apply("mc-test").force();
    f.services(&f.west, &f.links_ns)
        .patch(name, &pp, &Patch::Apply(&svc))
        .await
        .unwrap();
    f.endpoints(&f.west, &f.links_ns)
        .patch(name, &pp, &Patch::Apply(&ep))
        .await
        .unwrap();
}

/// The egress route table in the Links' namespace.
async fn routes(f: &Fixture) -> Option<mc_core::egress::RouteTable> {
    use k8s_openapi::api::core::v1::ConfigMap;
    let api: kube::Api<ConfigMap> = kube::Api::namespaced(f.west.clone(), &f.links_ns);
    let cm = api
        .get_opt(mc_core::egress::ROUTES_CONFIG_MAP)
        .await
        .unwrap()?;
    let (table, bad) = mc_core::egress::RouteTable::from_data(&cm.data.unwrap_or_default());
    assert!(bad.is_empty(), "{bad:?}");
    Some(table)
}

/// Issue #18: with the egress installed (and no Linkerd control plane) a Link's mirrors are
/// served in egress mode: each service port gets its own egress port in the route table, the
/// Endpoints point at the ready egress Pods and follow them, an unexported Service's routes go,
/// and switching the Link to gateway mode rewrites the same objects back.
#[tokio::test(flavor = "multi_thread")]
async fn egress_mode_allocates_ports_and_points_mirrors_at_the_egress() {
    use kube::api::{Patch, PatchParams};
    let bed = mc_tests::shared_api_only().unwrap();
    let (mut f, ns) = Fixture::with_namespace(bed, "egr", true, false).await;
    fake_egress(&f, &["198.18.7.1"]).await;
    f.start().await;
    // Two Services on the same port number, one with two ports.
    f.remote_service(
        &ns,
        "a",
        &[(EXPORTED, "true")],
        &[("http", 80)],
        &["10.1.0.5"],
    )
    .await;
    f.remote_service(
        &ns,
        "b",
        &[(EXPORTED, "true")],
        &[("http", 80), ("grpc", 9090)],
        &["10.1.0.6"],
    )
    .await;
    let ports_of = |ep: &k8s_openapi::api::core::v1::Endpoints| -> BTreeMap<String, i32> {
        ep.subsets
            .iter()
            .flatten()
            .flat_map(|s| s.ports.iter().flatten())
            .map(|p| (p.name.clone().unwrap_or_default(), p.port))
            .collect()
    };
    let addresses_of = |ep: &k8s_openapi::api::core::v1::Endpoints| -> Vec<String> {
        ep.subsets
            .iter()
            .flatten()
            .flat_map(|s| s.addresses.iter().flatten())
            .map(|a| a.ip.clone())
            .collect()
    };
    let wait_egress = |svc: &'static str, ips: Vec<&'static str>| {
        let f = &f;
        let ns = ns.clone();
        async move {
            eventually(
                &format!("{svc} served by the egress {ips:?}"),
                T,
                || async {
                    let ep = f.mirror_endpoints(&ns, svc).await?;
                    (addresses_of(&ep) == ips).then_some(ep)
                },
            )
            .await
        }
    };
    let a = wait_egress("a", vec!["198.18.7.1"]).await;
    let b = wait_egress("b", vec!["198.18.7.1"]).await;
    let (pa, pb) = (ports_of(&a), ports_of(&b));
    let mut all: Vec<i32> = pa.values().chain(pb.values()).copied().collect();
    all.sort_unstable();
    all.dedup();
    assert_eq!(
        all.len(),
        3,
        "every service port gets its own egress port: {pa:?} {pb:?}"
    );
    assert!(all.iter().all(|p| (20000..=32767).contains(p)), "{all:?}");
    let ann = a.metadata.annotations.clone().unwrap_or_default();
    assert!(
        !ann.contains_key(mc_core::labels::REMOTE_GATEWAY_IDENTITY),
        "{ann:?}"
    );

    let table = routes(&f).await.expect("the route table exists");
    let mirror_b = f.mirror_name("b");
    let grpc = table
        .get(&mc_core::egress::route_key(&ns, &mirror_b, 9090))
        .expect("b's grpc route");
    assert_eq!(grpc.target, format!("b.{ns}.svc.cluster.local:9090"));
    assert_eq!(
        grpc.gateways,
        vec![format!("{}:{GATEWAY_PORT}", f.gateway.ip)]
    );
    assert_eq!(grpc.link, f.cluster);
    assert_eq!(i32::from(grpc.listen), pb["grpc"]);
    let uid = f.mirror(&ns, "a").await.unwrap().metadata.uid;

    // The egress scales: the mirrors follow its ready Pods.
    fake_egress(&f, &["198.18.7.1", "198.18.7.2"]).await;
    wait_egress("a", vec!["198.18.7.1", "198.18.7.2"]).await;

    // Unexported: the mirror and its routes go; a's port stays as it was.
    f.services(&f.east, &ns)
        .delete("b", &Default::default())
        .await
        .unwrap();
    eventually("b's routes removed", T, || async {
        let t = routes(&f).await?;
        (!t.routes()
            .any(|(k, _)| k.starts_with(&format!("{ns}.{mirror_b}."))))
        .then_some(())
    })
    .await;
    let a_now = f.mirror_endpoints(&ns, "a").await.unwrap();
    assert_eq!(ports_of(&a_now), pa, "a keeps its egress port");

    // Gateway mode: the same mirror object, Endpoints at the gateway, the Link's routes gone.
    let patch =
        serde_json::json!({"metadata": {"annotations": {mc_core::labels::LINK_MODE: "gateway"}}});
    f.links()
        .patch(&f.cluster, &PatchParams::default(), &Patch::Merge(&patch))
        .await
        .unwrap();
    f.wait_endpoints(&ns, "a", true, T).await;
    eventually("the Link's routes removed", T, || async {
        let t = routes(&f).await?;
        t.routes().all(|(_, r)| r.link != f.cluster).then_some(())
    })
    .await;
    assert_eq!(
        f.mirror(&ns, "a").await.unwrap().metadata.uid,
        uid,
        "not recreated"
    );
    f.stop().await;
}

/// Issue #18: a Service federated in the target and in the local cluster, served in egress
/// mode: one route per port with both members (the remote target through the Link's
/// gateway, the local Service's ClusterIP), the federated Service's Endpoints at the egress,
/// weights from a real Gateway API HTTPRoute, readiness from the members' Endpoints, and the
/// member gone when the cluster leaves the federated Service.
#[tokio::test(flavor = "multi_thread")]
async fn federated_services_in_egress_mode_route_to_every_member() {
    use k8s_openapi::api::core::v1::{
        EndpointAddress, EndpointPort, EndpointSubset, Endpoints, Service, ServicePort, ServiceSpec,
    };
    use kube::api::{ApiResource, DynamicObject, GroupVersionKind, Patch, PatchParams};
    use mc_core::egress::LOCAL_MEMBER;
    let bed = mc_tests::shared_api_only().unwrap();
    let (mut f, ns) = Fixture::with_namespace(bed, "fed", true, false).await;
    mirror_common::install_httproute_crd(&f.west).await;
    fake_egress(&f, &["198.18.7.3"]).await;
    // The Link federates this test's remote members only (the scope label).
    let mut link = f.link().await;
    link.spec.federated_service_selector = Some(
        k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector {
            match_labels: Some(BTreeMap::from([
                (
                    "mirror.linkerd.io/federated".to_owned(),
                    "member".to_owned(),
                ),
                (mirror_common::SCOPE.to_owned(), f.cluster.clone()),
            ])),
            ..Default::default()
        },
    );
    f.links()
        .replace(&f.cluster, &Default::default(), &link)
        .await
        .unwrap();
    f.start().await;
    let member = [("mirror.linkerd.io/federated", "member")];
    f.remote_service(&ns, "web", &member, &[("http", 80)], &["10.1.0.9"])
        .await;

    // The local member and its ready Endpoints (no endpoints controller on this testbed).
    let pp = PatchParams::apply("mc-test").force();
    let local = Service {
        metadata: kube::api::ObjectMeta {
            labels: Some(BTreeMap::from([(
                member[0].0.to_owned(),
                member[0].1.to_owned(),
            )])),
            ..mirror_common::meta(Some(&ns), "web")
        },
        spec: Some(ServiceSpec {
            ports: Some(vec![ServicePort {
                name: Some("http".into()),
                port: 80,
                ..ServicePort::default()
            }]),
            ..ServiceSpec::default()
        }),
        ..Service::default()
    };
    let local = f
        .services(&f.west, &ns)
        .patch("web", &pp, &Patch::Apply(&local))
        .await
        .unwrap();
    let cluster_ip = local.spec.unwrap().cluster_ip.unwrap();
    let ready_endpoints = |ip: Option<&str>| Endpoints {
        metadata: mirror_common::meta(Some(&ns), "web"),
        subsets: ip.map(|ip| {
            vec![EndpointSubset {
                addresses: Some(vec![EndpointAddress {
                    ip: ip.into(),
                    ..EndpointAddress::default()
                }]),
                ports: Some(vec![EndpointPort {
                    name: Some("http".into()),
                    port: 80,
                    ..EndpointPort::default()
                }]),
                ..EndpointSubset::default()
            }]
        }),
    };
    f.endpoints(&f.west, &ns)
        .patch(
            "web",
            &pp,
            &Patch::Apply(&ready_endpoints(Some("198.18.8.1"))),
        )
        .await
        .unwrap();

    // The controller federates both members into web-federated.
    eventually("web-federated with both members", T, || async {
        let s = f
            .services(&f.west, &ns)
            .get_opt("web-federated")
            .await
            .ok()??;
        let a = s.metadata.annotations.unwrap_or_default();
        let remote = a.get("multicluster.linkerd.io/remote-discovery")?;
        (remote.contains(&format!("web@{}", f.cluster))
            && a.get("multicluster.linkerd.io/local-discovery")
                .map(String::as_str)
                == Some("web"))
        .then_some(())
    })
    .await;

    let key = mc_core::egress::route_key(&ns, "web-federated", 80);
    let route_with = |want: fn(&mc_core::egress::Route, &str) -> bool| {
        let (f, key) = (&f, key.clone());
        async move {
            eventually(&format!("route {key}"), T, || async {
                let t = routes(f).await?;
                let r = t.get(&key)?.clone();
                want(&r, &f.cluster).then_some(r)
            })
            .await
        }
    };
    let r = route_with(|r, c| r.members.len() == 2 && r.members.contains_key(c)).await;
    let remote = &r.members[&f.cluster];
    assert_eq!(remote.target, format!("web.{ns}.svc.cluster.local:80"));
    assert_eq!(
        remote.gateways,
        vec![format!("{}:{GATEWAY_PORT}", f.gateway.ip)]
    );
    assert_eq!((remote.weight, remote.ready), (1, true));
    let l = &r.members[LOCAL_MEMBER];
    assert_eq!(l.target, format!("{cluster_ip}:80"));
    assert!(l.gateways.is_empty());
    assert_eq!((l.weight, l.ready), (1, true));

    // The federated Service's Endpoints: the egress Pod, on the route's port.
    let ep = eventually("web-federated's Endpoints at the egress", T, || async {
        let ep = f
            .endpoints(&f.west, &ns)
            .get_opt("web-federated")
            .await
            .ok()??;
        let s = ep.subsets.clone()?.first()?.clone();
        let ip = s.addresses?.first()?.ip.clone();
        (ip == "198.18.7.3").then_some(s.ports?)
    })
    .await;
    assert_eq!(ep[0].port, i32::from(r.listen));

    // A real HTTPRoute (GAMMA) sets the weights: all to the remote member.
    let gvk = GroupVersionKind::gvk("gateway.networking.k8s.io", "v1", "HTTPRoute");
    let routes_api: kube::Api<DynamicObject> =
        kube::Api::namespaced_with(f.west.clone(), &ns, &ApiResource::from_gvk(&gvk));
    let mirror = f.mirror_name("web");
    let split: DynamicObject = serde_json::from_value(serde_json::json!({
        "apiVersion": "gateway.networking.k8s.io/v1", "kind": "HTTPRoute",
        "metadata": {"name": "web-split", "namespace": ns},
        "spec": {
            "parentRefs": [{"group": "", "kind": "Service", "name": "web-federated", "port": 80}],
            "rules": [{"backendRefs": [
                {"name": "web", "port": 80, "weight": 0},
                {"name": mirror, "port": 80, "weight": 100}
            ]}]
        }
    }))
    .unwrap();
    routes_api
        .patch("web-split", &pp, &Patch::Apply(&split))
        .await
        .unwrap();
    route_with(|r, c| {
        r.members[LOCAL_MEMBER].weight == 0 && r.members.get(c).is_some_and(|m| m.weight == 100)
    })
    .await;

    // The local Service loses its ready endpoints: its member turns not ready (next resync).
    f.endpoints(&f.west, &ns)
        .patch("web", &pp, &Patch::Apply(&ready_endpoints(None)))
        .await
        .unwrap();
    route_with(|r, _| !r.members[LOCAL_MEMBER].ready).await;

    // The remote Service leaves the federation: its member goes, the local one stays.
    f.remote_service(&ns, "web", &[], &[("http", 80)], &["10.1.0.9"])
        .await;
    route_with(|r, c| !r.members.contains_key(c) && r.members.contains_key(LOCAL_MEMBER)).await;
}
