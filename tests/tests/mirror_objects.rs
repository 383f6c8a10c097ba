//! The objects `mc_core::mirror` computes, created on a real kube-apiserver and read back: the
//! server accepts every one of them (names, ports, headless, Endpoints) and, with everything it
//! fills in and reorders, `service_needs_update` / `endpoints_needs_update` still say "no write".
//! That is the zero-writes-in-steady-state property, checked against the real defaulting.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::net::IpAddr;

use k8s_openapi::api::core::v1::{Endpoints, Namespace, Service};
use kube::api::{Api, PostParams};
use mc_core::link::{Link, ValidLink};
use mc_core::mirror::{
    Gateway, MirrorContext, MirrorKind, Ownership, RemoteEndpoints, desired_mirror,
    endpoints_needs_update, headless_endpoints, ownership, parse_object, probe_endpoints,
    probe_service, service_needs_recreate, service_needs_update,
};
use mc_tests::shared_api_only;

const LINK: &str = r#"
kind: Link
spec:
  targetClusterName: east
  targetClusterDomain: cluster.local
  gatewayAddress: 203.0.113.20,203.0.113.10
  gatewayPort: "4143"
  gatewayIdentity: linkerd-gateway.linkerd-multicluster.serviceaccount.identity.linkerd.cluster.local
  probeSpec: {path: /ready, port: "4191", period: 3s}
  selector: {matchLabels: {mirror.linkerd.io/exported: "true"}}
  remoteDiscoverySelector: {matchLabels: {mirror.linkerd.io/exported: remote-discovery}}
  excludedAnnotations: [prometheus.io/*]
"#;

fn remote(name: &str, export: &str, headless: bool) -> Service {
    let cluster_ip = if headless { "None" } else { "198.19.0.10" };
    parse_object(serde_json::json!({
        "apiVersion": "v1", "kind": "Service",
        "metadata": {
            "name": name, "namespace": "shop", "resourceVersion": "4711",
            "labels": {"app": name, "mirror.linkerd.io/exported": export},
            "annotations": {"config.linkerd.io/opaque-ports": "5432", "prometheus.io/scrape": "true"}
        },
        "spec": {
            "clusterIP": cluster_ip, "type": "ClusterIP", "selector": {"app": name},
            "ports": [
                {"name": "http", "port": 80, "targetPort": 8080, "protocol": "TCP", "appProtocol": "http"},
                {"name": "db", "port": 5432, "targetPort": "postgres"},
                {"name": "dns", "port": 53, "protocol": "UDP"}
            ]
        }
    }))
    .unwrap()
}

struct Local {
    services: Api<Service>,
    endpoints: Api<Endpoints>,
}

/// Creates `desired`, then reads it back: the object as create returned it and as get does.
async fn store<K>(api: &Api<K>, desired: &K) -> [K; 2]
where
    K: kube::Resource + Clone + std::fmt::Debug + serde::Serialize + serde::de::DeserializeOwned,
{
    let name = desired.meta().name.clone().unwrap();
    let created = api
        .create(&PostParams::default(), desired)
        .await
        .map_err(|e| format!("server rejects {name}: {e}"))
        .unwrap();
    [created, api.get(&name).await.unwrap()]
}

impl Local {
    /// Stores `desired` and checks that what the server returns needs no write.
    async fn service(&self, desired: &Service) -> Service {
        let [created, got] = store(&self.services, desired).await;
        for actual in [&created, &got] {
            assert!(
                !service_needs_update(desired, actual),
                "steady state must need no write:\ndesired {desired:#?}\nactual {actual:#?}"
            );
            assert!(!service_needs_recreate(desired, actual));
            assert_eq!(ownership(&actual.metadata, "east"), Ownership::Ours);
        }
        got
    }

    /// Stores `desired` and checks that what the server returns (repacked) needs no write.
    async fn endpoints(&self, desired: &Endpoints) {
        for actual in store(&self.endpoints, desired).await {
            assert!(
                !endpoints_needs_update(desired, &actual),
                "steady state must need no write:\ndesired {desired:#?}\nactual {actual:#?}"
            );
        }
    }
}

async fn local(tag: &str) -> Local {
    let client = shared_api_only().unwrap().client("west").await.unwrap();
    let ns = format!("mirror-objects-{tag}-{}", std::process::id());
    let namespaces: Api<Namespace> = Api::all(client.clone());
    let mut n = Namespace::default();
    n.metadata.name = Some(ns.clone());
    namespaces.create(&PostParams::default(), &n).await.unwrap();
    Local {
        services: Api::namespaced(client.clone(), &ns),
        endpoints: Api::namespaced(client, &ns),
    }
}

fn link() -> ValidLink {
    Link::from_yaml(LINK).unwrap().spec.validate().unwrap()
}

fn gateway(link: &ValidLink) -> Gateway {
    let spec = link.gateway.as_ref().unwrap();
    Gateway::from_spec(spec, spec.addresses.iter().map(|a| a.parse().unwrap()))
}

fn context<'a>(link: &'a ValidLink, gateway: &'a Gateway, alive: bool) -> MirrorContext<'a> {
    MirrorContext {
        link,
        gateway: Some(gateway),
        alive,
        headless_enabled: true,
    }
}

/// Moves the computed objects into the test namespace.
fn into_ns<T: kube::Resource>(mut obj: T, ns: &str) -> T {
    obj.meta_mut().namespace = Some(ns.to_string());
    obj
}

#[tokio::test(flavor = "multi_thread")]
async fn gateway_mirrors_alive_dead_and_empty_need_no_write_once_stored() {
    let local = local("gateway").await;
    let ns = local.services.namespace().unwrap().to_string();
    let (link, gw) = (link(), gateway(&link()));
    let long = format!("checkout-{}", "x".repeat(52)); // 61 characters: its mirror is shortened
    let cases = [
        ("web", true, RemoteEndpoints::Ready { hostnames: vec![] }),
        ("dead", false, RemoteEndpoints::Ready { hostnames: vec![] }),
        ("empty", true, RemoteEndpoints::Empty),
        (
            long.as_str(),
            true,
            RemoteEndpoints::Ready { hostnames: vec![] },
        ),
    ];
    for (name, alive, eps) in cases {
        let ctx = context(&link, &gw, alive);
        let d = desired_mirror(&remote(name, "true", false), &eps, &ctx).unwrap();
        assert_eq!(d.kind, MirrorKind::Gateway);
        local.service(&into_ns(d.service, &ns)).await;
        local.endpoints(&into_ns(d.endpoints.unwrap(), &ns)).await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn remote_discovery_and_probe_objects_need_no_write_once_stored() {
    let local = local("discovery").await;
    let ns = local.services.namespace().unwrap().to_string();
    let (link, gw) = (link(), gateway(&link()));
    let ctx = context(&link, &gw, true);
    let eps = RemoteEndpoints::Ready { hostnames: vec![] };
    let d = desired_mirror(&remote("api", "remote-discovery", false), &eps, &ctx).unwrap();
    assert_eq!(
        (d.kind, d.endpoints.is_none()),
        (MirrorKind::RemoteDiscovery, true)
    );
    local.service(&into_ns(d.service, &ns)).await;
    local.service(&probe_service(&link, &ns).unwrap()).await;
    local
        .endpoints(&probe_endpoints(&link, &ns, &gw).unwrap())
        .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn headless_mirror_and_endpoint_mirrors_need_no_write_once_stored() {
    let local = local("headless").await;
    let ns = local.services.namespace().unwrap().to_string();
    let (link, gw) = (link(), gateway(&link()));
    let ctx = context(&link, &gw, true);
    let eps = RemoteEndpoints::Ready {
        hostnames: vec!["db-0".into(), "db-1".into()],
    };
    let d = desired_mirror(&remote("db", "true", true), &eps, &ctx).unwrap();
    assert_eq!(d.kind, MirrorKind::Headless);
    let mirror = into_ns(d.service, &ns);
    local.service(&mirror).await;
    let mut hosts: Vec<(String, IpAddr)> = Vec::new();
    for (svc, ep) in d.endpoint_mirrors {
        let stored = local.service(&into_ns(svc, &ns)).await;
        local.endpoints(&into_ns(ep, &ns)).await;
        let ip = stored.spec.unwrap().cluster_ip.unwrap().parse().unwrap();
        let host = stored
            .metadata
            .name
            .unwrap()
            .trim_end_matches("-east")
            .to_string();
        hosts.push((host, ip));
    }
    local.endpoints(&headless_endpoints(&mirror, &hosts)).await;
}
