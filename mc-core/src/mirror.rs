//! Desired mirror objects: given a remote Service, a summary of its endpoints, the Link and the
//! gateway, compute exactly the local Service and Endpoints that must exist, and say whether an
//! existing object differs in what we own (so a steady state makes no writes).
//!
//! Rules (upstream's; details on [`copy_labels`], [`copy_annotations`] and [`desired_mirror`]):
//! - mirror `<svc>-<cluster>` in the same namespace, selector-less, ports `{name, protocol, port,
//!   targetPort}` (nodePort and appProtocol dropped);
//! - labels and annotations copied with upstream's exclusions, then ours added;
//! - gateway mode: Endpoints = gateway IPs × gateway port under each port name; no subsets when
//!   the remote has no ready endpoints; `notReadyAddresses` while the gateway is dead;
//! - remote-discovery mode: extra labels, no Endpoints;
//! - headless (when enabled): a `clusterIP: None` mirror plus one endpoint mirror per hostname.
//!
//! ```
//! use mc_core::link::Link;
//! use mc_core::mirror::{
//!     Gateway, MirrorContext, MirrorKind, RemoteEndpoints, desired_mirror, parse_object,
//!     service_needs_update,
//! };
//! use k8s_openapi::api::core::v1::Service;
//!
//! let link = Link::from_yaml(
//!     "kind: Link\nspec: {targetClusterName: east, gatewayAddress: 203.0.113.10, \
//!      gatewayPort: \"4143\", selector: {matchLabels: {mirror.linkerd.io/exported: \"true\"}}}",
//! )?
//! .spec
//! .validate()?;
//! let gateway = Gateway::new(["203.0.113.10".parse()?], 4143, None);
//! let ctx = MirrorContext { link: &link, gateway: Some(&gateway), alive: true, headless_enabled: false };
//! let remote: Service = parse_object(serde_json::json!({
//!     "apiVersion": "v1", "kind": "Service",
//!     "metadata": {"name": "web", "namespace": "shop", "resourceVersion": "7",
//!                  "labels": {"mirror.linkerd.io/exported": "true"}},
//!     "spec": {"ports": [{"name": "http", "port": 80}]}
//! }))?;
//! let ready = RemoteEndpoints::Ready { hostnames: vec![] };
//! let mirror = desired_mirror(&remote, &ready, &ctx)?;
//! assert_eq!(mirror.kind, MirrorKind::Gateway);
//! assert_eq!(mirror.service.metadata.name.as_deref(), Some("web-east"));
//! assert!(!service_needs_update(&mirror.service, &mirror.service));
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

mod build;
mod compare;
mod federated;
mod meta;
mod remote;

use std::net::IpAddr;

use k8s_openapi::api::core::v1::{Endpoints, Service};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

use crate::labels;
use crate::link::{GatewaySpec, ValidLink};
use crate::naming::MirrorName;

pub use build::{desired_mirror, headless_endpoints, probe_endpoints, probe_service};
pub use compare::{endpoints_needs_update, service_needs_recreate, service_needs_update};
pub use federated::{
    FederatedSource, LOCAL_EXCLUDED_ANNOTATIONS_ENV, LOCAL_EXCLUDED_ANNOTATIONS_KEY,
    LOCAL_EXCLUDED_LABELS_ENV, LOCAL_EXCLUDED_LABELS_KEY, LOCAL_MIRROR_CONFIG_MAP, Members,
    federated_join, federated_leave, federated_ownership, federated_update, format_members,
    is_metadata_source, parse_members,
};
pub use meta::{
    EXCLUSION_FIX, check_exclusions, copy_annotations, copy_labels, is_excluded,
    is_valid_exclusion, parse_exclusions,
};
pub(crate) use remote::type_meta;
pub use remote::{ExportMode, RemoteEndpoints, export_mode, is_federated_member, parse_object};

/// The target cluster's gateway, with its addresses already resolved.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Gateway {
    /// The gateway IPs, sorted as strings and without duplicates (as upstream orders them).
    pub ips: Vec<IpAddr>,
    /// The gateway port every mirror endpoint uses.
    pub port: u16,
    /// The gateway's TLS identity (`mirror.linkerd.io/remote-gateway-identity`).
    pub identity: Option<String>,
}

impl Gateway {
    /// A gateway; `ips` are sorted as strings and deduplicated so the output is stable.
    pub fn new(ips: impl IntoIterator<Item = IpAddr>, port: u16, identity: Option<String>) -> Self {
        let mut ips: Vec<IpAddr> = ips.into_iter().collect();
        ips.sort_by_key(|ip| ip.to_string());
        ips.dedup();
        Gateway {
            ips,
            port,
            identity,
        }
    }

    /// The gateway of a Link whose addresses resolved to `ips`.
    pub fn from_spec(spec: &GatewaySpec, ips: impl IntoIterator<Item = IpAddr>) -> Self {
        Gateway::new(ips, spec.port, spec.identity.clone())
    }
}

/// Everything [`desired_mirror`] needs besides the remote objects.
#[derive(Debug, Clone, Copy)]
pub struct MirrorContext<'a> {
    /// The validated Link.
    pub link: &'a ValidLink,
    /// The resolved gateway; `None` when resolution gave nothing (mirrors then get no subsets).
    pub gateway: Option<&'a Gateway>,
    /// Whether the probe says the gateway is alive (start with `true`, as upstream since #8725).
    pub alive: bool,
    /// Whether headless remote Services get headless mirrors (`-enable-headless-services`).
    pub headless_enabled: bool,
}

/// How a remote Service is mirrored.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum MirrorKind {
    /// ClusterIP mirror whose Endpoints point at the gateway.
    Gateway,
    /// Mirror with remote-discovery labels and no Endpoints (flat network).
    RemoteDiscovery,
    /// Headless mirror with one endpoint mirror per remote hostname.
    Headless,
}

/// The local objects that must exist for one remote Service.
#[derive(Debug, Clone, PartialEq)]
pub struct DesiredMirror {
    /// The mirror's name (also `service.metadata.name`).
    pub name: MirrorName,
    /// The mirror Service.
    pub service: Service,
    /// Its Endpoints: `Some` in gateway mode; `None` in remote-discovery mode (delete any) and
    /// for headless mirrors (computed by [`headless_endpoints`] once the endpoint mirrors have
    /// ClusterIPs).
    pub endpoints: Option<Endpoints>,
    /// Headless only: one `(Service, Endpoints)` per ready remote hostname.
    pub endpoint_mirrors: Vec<(Service, Endpoints)>,
    /// How it is mirrored.
    pub kind: MirrorKind,
}

/// Who owns a local object, from our point of view as the mirror of one cluster.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Ownership {
    /// A mirror (or probe object) of this cluster: ours to update and delete.
    Ours,
    /// A mirror of another linked cluster: never touch it.
    OtherCluster(String),
    /// Not written by a service mirror (or a federated Service): never touch it.
    Foreign,
}

/// Whether a local object is ours: it carries `mirror.linkerd.io/mirrored-service: "true"` (or
/// `mirrored-gateway: "true"`) and `mirror.linkerd.io/cluster-name: <cluster>`.
pub fn ownership(meta: &ObjectMeta, cluster: &str) -> Ownership {
    let label = |k: &str| {
        meta.labels
            .as_ref()
            .and_then(|l| l.get(k))
            .map(String::as_str)
    };
    let mirrored = label(labels::MIRRORED_SERVICE) == Some("true")
        || label(labels::MIRRORED_GATEWAY) == Some("true");
    match label(labels::CLUSTER_NAME) {
        Some(c) if mirrored && c == cluster => Ownership::Ours,
        Some(c) if mirrored => Ownership::OtherCluster(c.to_string()),
        _ => Ownership::Foreign,
    }
}

/// Whether `actual` (an object we own, by [`ownership`]) mirrors the same remote object as
/// `desired`: the same remote Service (by [`remote_name`](crate::naming::remote_name)) and the same
/// headless parent. `false` means two remote objects map to one local name, e.g. the endpoint
/// mirror of host `web-0` of Service `web` and the mirror of a Service named `web-0` (both
/// `web-0-<cluster>`, as upstream names them); the controller should then report a conflict rather
/// than let the two overwrite each other.
pub fn same_origin(desired: &ObjectMeta, actual: &ObjectMeta, cluster: &str) -> bool {
    let parent = |m: &ObjectMeta| {
        m.labels
            .as_ref()
            .and_then(|l| l.get(labels::HEADLESS_MIRROR_SVC_NAME))
            .cloned()
    };
    let origin = crate::naming::remote_name;
    origin(desired, cluster) == origin(actual, cluster) && parent(desired) == parent(actual)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn meta(pairs: &[(&str, &str)]) -> ObjectMeta {
        ObjectMeta {
            labels: Some(
                pairs
                    .iter()
                    .map(|(k, v)| (k.to_string(), v.to_string()))
                    .collect(),
            ),
            ..ObjectMeta::default()
        }
    }

    #[test]
    fn ownership_rules() {
        use labels::*;
        let ours = meta(&[(MIRRORED_SERVICE, "true"), (CLUSTER_NAME, "east")]);
        assert_eq!(ownership(&ours, "east"), Ownership::Ours);
        assert_eq!(
            ownership(&ours, "west"),
            Ownership::OtherCluster("east".into())
        );
        let probe = meta(&[(MIRRORED_GATEWAY, "true"), (CLUSTER_NAME, "east")]);
        assert_eq!(ownership(&probe, "east"), Ownership::Ours);
        let federated = meta(&[(MIRRORED_SERVICE, "true")]);
        assert_eq!(ownership(&federated, "east"), Ownership::Foreign);
        let impostor = meta(&[(CLUSTER_NAME, "east")]);
        assert_eq!(ownership(&impostor, "east"), Ownership::Foreign);
        let not_true = meta(&[(MIRRORED_SERVICE, "false"), (CLUSTER_NAME, "east")]);
        assert_eq!(ownership(&not_true, "east"), Ownership::Foreign);
        assert_eq!(
            ownership(&ObjectMeta::default(), "east"),
            Ownership::Foreign
        );
    }

    #[test]
    fn same_origin_detects_name_collisions() {
        use fixtures::*;
        let (link, gw) = (link(), gateway());
        let c = ctx(&link, &gw);
        let ready = |h: &[&str]| RemoteEndpoints::Ready {
            hostnames: h.iter().map(|s| s.to_string()).collect(),
        };
        let mut headless = remote("web", "true");
        headless
            .spec
            .iter_mut()
            .for_each(|s| s.cluster_ip = Some("None".into()));
        let (Ok(parent), Ok(plain)) = (
            desired_mirror(&headless, &ready(&["web-0"]), &c),
            desired_mirror(&remote("web-0", "true"), &ready(&[]), &c),
        ) else {
            panic!("both mirror");
        };
        let host = &parent.endpoint_mirrors[0].0.metadata;
        assert_eq!(
            host.name, plain.service.metadata.name,
            "the upstream naming collides"
        );
        assert!(!same_origin(&plain.service.metadata, host, "east"));
        assert!(!same_origin(host, &plain.service.metadata, "east"));
        assert!(same_origin(host, host, "east"));
        let mut upstream_written = plain.service.metadata.clone();
        upstream_written
            .annotations
            .iter_mut()
            .for_each(|a| drop(a.remove(labels::ORIGINAL_NAME)));
        assert!(same_origin(
            &plain.service.metadata,
            &upstream_written,
            "east"
        ));
    }

    #[test]
    fn gateway_ips_sorted_as_strings() {
        let ips = ["10.0.0.9", "10.0.0.10", "10.0.0.9", "::1"]
            .iter()
            .filter_map(|s| s.parse().ok());
        let gw = Gateway::new(ips, 4143, None);
        let shown: Vec<String> = gw.ips.iter().map(|i| i.to_string()).collect();
        assert_eq!(shown, ["10.0.0.10", "10.0.0.9", "::1"]);
    }
}

/// Shared test inputs: a Link, a gateway and remote Services shaped like an API server's.
#[cfg(test)]
pub(crate) mod fixtures {
    use k8s_openapi::api::core::v1::{ServicePort, ServiceSpec};
    use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

    use super::*;
    use crate::link::{LinkSpec, ProbeSpec};
    use crate::selector::Selector;

    pub(crate) const IDENTITY: &str =
        "linkerd-gateway.linkerd-multicluster.serviceaccount.identity.linkerd.cluster.local";

    pub(crate) fn link() -> ValidLink {
        let sel = |s: &str| s.parse::<Selector>().ok().map(|s| s.to_label_selector());
        let spec = LinkSpec {
            target_cluster_name: Some("east".into()),
            target_cluster_domain: Some("cluster.east".into()),
            gateway_address: Some("gw.example.com".into()),
            gateway_port: Some("4143".into()),
            gateway_identity: Some(IDENTITY.into()),
            probe_spec: Some(ProbeSpec {
                path: Some("/ready".into()),
                port: Some("4191".into()),
                period: Some("3s".into()),
                ..ProbeSpec::default()
            }),
            selector: sel(labels::DEFAULT_SELECTOR),
            remote_discovery_selector: sel(labels::DEFAULT_REMOTE_DISCOVERY_SELECTOR),
            federated_service_selector: sel(labels::DEFAULT_FEDERATED_SELECTOR),
            excluded_labels: vec!["argocd.argoproj.io/*".into()],
            excluded_annotations: vec!["prometheus.io/scrape".into()],
            ..LinkSpec::default()
        };
        match spec.validate() {
            Ok(v) => v,
            Err(e) => panic!("fixture link is valid: {e}"),
        }
    }

    pub(crate) fn gateway() -> Gateway {
        let ips = ["203.0.113.20", "203.0.113.10"]
            .iter()
            .filter_map(|s| s.parse().ok());
        Gateway::new(ips, 4143, Some(IDENTITY.into()))
    }

    pub(crate) fn ctx<'a>(link: &'a ValidLink, gateway: &'a Gateway) -> MirrorContext<'a> {
        MirrorContext {
            link,
            gateway: Some(gateway),
            alive: true,
            headless_enabled: true,
        }
    }

    /// A remote Service as the target's API server returns it.
    pub(crate) fn remote(name: &str, export: &str) -> Service {
        let map = |kv: &[(&str, &str)]| {
            Some(
                kv.iter()
                    .map(|(k, v)| (k.to_string(), v.to_string()))
                    .collect(),
            )
        };
        Service {
            metadata: ObjectMeta {
                name: Some(name.into()),
                namespace: Some("shop".into()),
                resource_version: Some("4711".into()),
                uid: Some("0b0e2d1c-0000-4000-8000-000000000001".into()),
                labels: map(&[
                    ("app", name),
                    (labels::EXPORTED, export),
                    ("argocd.argoproj.io/instance", "shop"),
                ]),
                annotations: map(&[
                    (labels::OPAQUE_PORTS, "5432"),
                    (labels::TOPOLOGY_MODE, "Auto"),
                    ("prometheus.io/scrape", "true"),
                    ("team", "payments"),
                ]),
                ..ObjectMeta::default()
            },
            spec: Some(ServiceSpec {
                type_: Some("NodePort".into()),
                cluster_ip: Some("10.96.0.17".into()),
                selector: map(&[("app", name)]),
                ports: Some(vec![
                    ServicePort {
                        name: Some("http".into()),
                        protocol: Some("TCP".into()),
                        port: 80,
                        target_port: Some(IntOrString::Int(8080)),
                        node_port: Some(30080),
                        app_protocol: Some("http".into()),
                    },
                    ServicePort {
                        name: Some("db".into()),
                        protocol: Some("TCP".into()),
                        port: 5432,
                        target_port: Some(IntOrString::String("postgres".into())),
                        node_port: Some(30432),
                        app_protocol: None,
                    },
                ]),
                ..ServiceSpec::default()
            }),
            status: None,
        }
    }

    pub(crate) fn ready() -> RemoteEndpoints {
        RemoteEndpoints::Ready {
            hostnames: Vec::new(),
        }
    }
}
