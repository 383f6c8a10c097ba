//! E2E: federated Services (`<svc>-federated`) on the testbed (east = target, west = source),
//! the controller running in-process as a non-admin identity. Run under `scripts/in-netns`.
//!
//! Every Link here selects remote federated members with `mirror.linkerd.io/federated=member`
//! plus the test's scope label, so concurrent tests never see each other's remote Services.
//! Local members are selected by `mirror.linkerd.io/federated=member` alone (as upstream's local
//! mirror): every controller agrees on them, but may write those of another test.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod mirror_common;

use std::collections::BTreeMap;
use std::time::Duration;

use k8s_openapi::api::core::v1::{Service, ServicePort, ServiceSpec};
use k8s_openapi::api::events::v1::Event;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use kube::Api;
use kube::api::{ObjectMeta, PostParams};
use mc_core::link::{Link, LinkSpec};
use mirror_common::{Fixture, SCOPE, eventually, meta};

const T: Duration = Duration::from_secs(40);
const FEDERATED: &str = "mirror.linkerd.io/federated";
const REMOTE_DISCOVERY: &str = "multicluster.linkerd.io/remote-discovery";
const LOCAL_DISCOVERY: &str = "multicluster.linkerd.io/local-discovery";

fn labels(s: &Service) -> BTreeMap<String, String> {
    s.metadata.labels.clone().unwrap_or_default()
}

fn ann(s: &Service, k: &str) -> Option<String> {
    s.metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get(k))
        .cloned()
}

/// The fixture's Link spec, federating only this test's Services, with `excluded_labels`.
fn fed_spec(f: &Fixture, cluster: &str, excluded_labels: &[&str]) -> LinkSpec {
    let mut spec = f.link_spec();
    spec.target_cluster_name = Some(cluster.to_string());
    spec.federated_service_selector = Some(LabelSelector {
        match_labels: Some(BTreeMap::from([
            (FEDERATED.to_string(), "member".to_string()),
            (SCOPE.to_string(), f.cluster.clone()),
        ])),
        ..LabelSelector::default()
    });
    spec.excluded_labels = excluded_labels.iter().map(|s| s.to_string()).collect();
    spec
}

/// A fixture whose Link federates this test's Services (set before the controller starts).
async fn fixture(tag: &str, excluded_labels: &[&str]) -> (Fixture, String) {
    let bed = mc_tests::shared_api_only().unwrap();
    let (f, ns) = Fixture::with_namespace(bed, tag, true, false).await;
    let mut link = f.link().await;
    link.spec = fed_spec(&f, &f.cluster, excluded_labels);
    f.links()
        .replace(&f.cluster, &PostParams::default(), &link)
        .await
        .unwrap();
    (f, ns)
}

/// Creates or replaces a federated member in east with extra `labels`.
async fn remote_member(f: &Fixture, ns: &str, name: &str, extra: &[(&str, &str)]) {
    let mut l = vec![(FEDERATED, "member")];
    l.extend_from_slice(extra);
    f.remote_service_only(ns, name, &l, &[("http", 8080)]).await;
}

/// Creates a local Service in west (a ClusterIP one, or headless).
async fn local_service(
    f: &Fixture,
    ns: &str,
    name: &str,
    labels: &[(&str, &str)],
    headless: bool,
    client: &kube::Client,
) {
    let svc = Service {
        metadata: ObjectMeta {
            labels: Some(
                labels
                    .iter()
                    .map(|(k, v)| (k.to_string(), v.to_string()))
                    .collect(),
            ),
            ..meta(Some(ns), name)
        },
        spec: Some(ServiceSpec {
            cluster_ip: headless.then(|| "None".to_string()),
            ports: Some(vec![ServicePort {
                name: Some("web".into()),
                port: 9090,
                ..ServicePort::default()
            }]),
            ..ServiceSpec::default()
        }),
        ..Service::default()
    };
    f.services(client, ns)
        .create(&PostParams::default(), &svc)
        .await
        .unwrap();
}

async fn federated(f: &Fixture, ns: &str, svc: &str) -> Option<Service> {
    f.services(&f.west, ns)
        .get_opt(&format!("{svc}-federated"))
        .await
        .unwrap()
}

/// Waits until `<svc>-federated` satisfies `ok`.
async fn wait_federated(
    f: &Fixture,
    ns: &str,
    svc: &str,
    what: &str,
    ok: impl Fn(&Service) -> bool,
) -> Service {
    eventually(what, T, || async {
        federated(f, ns, svc).await.filter(|s| ok(s))
    })
    .await
}

async fn wait_gone(f: &Fixture, ns: &str, svc: &str) {
    eventually("federated Service deleted", T, || async {
        federated(f, ns, svc).await.is_none().then_some(())
    })
    .await;
}

async fn event_reasons(f: &Fixture) -> Vec<(String, String)> {
    let events: Api<Event> = Api::namespaced(f.west.clone(), &f.links_ns);
    events
        .list(&Default::default())
        .await
        .unwrap()
        .items
        .into_iter()
        .map(|e| (e.reason.unwrap_or_default(), e.note.unwrap_or_default()))
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn remote_and_local_members_join_and_leave() {
    let (mut f, ns) = fixture("fedjl", &[]).await;
    f.start().await;
    let member = format!("web@{}", f.cluster);

    // A remote member joins: created with its labels and ports, no cluster-name label.
    remote_member(&f, &ns, "web", &[("app", "remote")]).await;
    let s = wait_federated(
        &f,
        &ns,
        "web",
        "web-federated with the remote member",
        |s| ann(s, REMOTE_DISCOVERY).as_deref() == Some(member.as_str()),
    )
    .await;
    let l = labels(&s);
    assert_eq!(
        l.get("mirror.linkerd.io/mirrored-service")
            .map(String::as_str),
        Some("true")
    );
    assert!(!l.contains_key("mirror.linkerd.io/cluster-name"));
    assert_eq!(l.get("app").map(String::as_str), Some("remote"));
    assert_eq!(ann(&s, LOCAL_DISCOVERY), None);
    let ports = s.spec.unwrap().ports.unwrap();
    assert_eq!(
        (ports[0].name.as_deref(), ports[0].port),
        (Some("http"), 8080)
    );

    // The local member joins and becomes the metadata source.
    let scope = f.cluster.clone();
    local_service(
        &f,
        &ns,
        "web",
        &[(FEDERATED, "member"), (SCOPE, &scope), ("app", "local")],
        false,
        &f.west,
    )
    .await;
    let s = wait_federated(&f, &ns, "web", "local member joins", |s| {
        ann(s, LOCAL_DISCOVERY).as_deref() == Some("web")
            && ann(s, REMOTE_DISCOVERY).as_deref() == Some(member.as_str())
            && labels(s).get("app").map(String::as_str) == Some("local")
    })
    .await;
    let ports = s.spec.unwrap().ports.unwrap();
    assert_eq!(
        (ports[0].name.as_deref(), ports[0].port),
        (Some("web"), 9090)
    );

    // The remote member no longer matches: it leaves, the local member stays.
    f.remote_service_only(&ns, "web", &[("app", "remote")], &[("http", 8080)])
        .await;
    wait_federated(&f, &ns, "web", "remote member leaves", |s| {
        ann(s, REMOTE_DISCOVERY).is_none() && ann(s, LOCAL_DISCOVERY).as_deref() == Some("web")
    })
    .await;
    // The local member leaves too: no member left, the Service is deleted.
    f.services(&f.west, &ns)
        .delete("web", &Default::default())
        .await
        .unwrap();
    wait_gone(&f, &ns, "web").await;

    // A remote member that is deleted leaves (last member: deleted).
    remote_member(&f, &ns, "api", &[]).await;
    wait_federated(&f, &ns, "api", "api-federated", |s| {
        ann(s, REMOTE_DISCOVERY).is_some()
    })
    .await;
    f.services(&f.east, &ns)
        .delete("api", &Default::default())
        .await
        .unwrap();
    wait_gone(&f, &ns, "api").await;
    f.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn metadata_from_the_oldest_link_with_its_exclusions() {
    // The oldest Link excludes `drop-old`, the newer one excludes `drop-new`.
    let (mut f, ns) = fixture("fedold", &["drop-old"]).await;
    let newer = format!("{}-b", f.cluster);
    tokio::time::sleep(Duration::from_millis(1100)).await; // creationTimestamp has 1 s steps
    let link = Link::new(&newer, &f.links_ns, fed_spec(&f, &newer, &["drop-new"]));
    f.links()
        .create(&PostParams::default(), &link)
        .await
        .unwrap();
    f.options.links.push(newer.clone());
    f.start().await;

    remote_member(&f, &ns, "web", &[("drop-old", "x"), ("drop-new", "y")]).await;
    let both = |s: &Service| {
        let m = ann(s, REMOTE_DISCOVERY).unwrap_or_default();
        m.contains(&format!("web@{},", f.cluster)) || m.ends_with(&format!("web@{}", f.cluster))
    };
    let s = wait_federated(&f, &ns, "web", "both Links are members", |s| {
        both(s)
            && ann(s, REMOTE_DISCOVERY)
                .unwrap_or_default()
                .contains(&format!("web@{newer}"))
    })
    .await;
    // Stable: metadata of the oldest Link (its exclusion applied, not the newer one's).
    tokio::time::sleep(Duration::from_secs(5)).await;
    let s2 = federated(&f, &ns, "web").await.unwrap();
    for s in [&s, &s2] {
        let l = labels(s);
        assert!(
            !l.contains_key("drop-old"),
            "the oldest Link's exclusion: {l:?}"
        );
        assert_eq!(l.get("drop-new").map(String::as_str), Some("y"), "{l:?}");
    }
    let members = ann(&s2, REMOTE_DISCOVERY).unwrap();
    assert_eq!(members.split(',').count(), 2, "no member lost: {members}");
    f.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn headless_refused_and_foreign_untouched() {
    let (mut f, ns) = fixture("fedbad", &[]).await;
    // A Service named db-federated that mc does not own.
    local_service(
        &f,
        &ns,
        "db-federated",
        &[("owner", "someone")],
        false,
        &f.west,
    )
    .await;
    let foreign = federated(&f, &ns, "db").await.unwrap();
    f.start().await;

    // A headless remote member is refused and reported.
    let scope = f.cluster.clone();
    local_service(
        &f,
        &ns,
        "hl",
        &[(FEDERATED, "member"), (SCOPE, &scope)],
        true,
        &f.east,
    )
    .await;
    remote_member(&f, &ns, "db", &[]).await;
    eventually(
        "Events for the headless and the foreign Service",
        T,
        || async {
            let ev = event_reasons(&f).await;
            let headless = ev
                .iter()
                .any(|(r, n)| r == "InvalidService" && n.contains(&format!("{ns}/hl")));
            let conflict = ev.iter().any(|(r, n)| {
                r == "FederatedServiceConflict" && n.contains(&format!("{ns}/db-federated"))
            });
            (headless && conflict).then_some(())
        },
    )
    .await;
    tokio::time::sleep(Duration::from_secs(4)).await;
    assert!(federated(&f, &ns, "hl").await.is_none(), "headless joined");
    let now = federated(&f, &ns, "db").await.unwrap();
    assert_eq!(
        now.metadata.resource_version,
        foreign.metadata.resource_version
    );
    assert_eq!(ann(&now, REMOTE_DISCOVERY), None);
    f.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn restart_makes_no_writes() {
    let (mut f, ns) = fixture("fedrst", &[]).await;
    f.start().await;
    let scope = f.cluster.clone();
    remote_member(&f, &ns, "web", &[("app", "web")]).await;
    local_service(
        &f,
        &ns,
        "web",
        &[(FEDERATED, "member"), (SCOPE, &scope)],
        false,
        &f.west,
    )
    .await;
    let before = wait_federated(&f, &ns, "web", "both members", |s| {
        ann(s, LOCAL_DISCOVERY).is_some() && ann(s, REMOTE_DISCOVERY).is_some()
    })
    .await;
    tokio::time::sleep(Duration::from_secs(4)).await;
    let before = federated(&f, &ns, "web").await.map_or(before, |s| s);
    f.stop().await;

    // Every controller of this binary keeps the local members of every test: the write count
    // can only be compared while the other tests are quiet, so this asserts the object itself.
    f.start().await;
    tokio::time::sleep(Duration::from_secs(10)).await;
    let after = federated(&f, &ns, "web").await.unwrap();
    assert_eq!(
        after.metadata.resource_version,
        before.metadata.resource_version
    );
    f.stop().await;
}
