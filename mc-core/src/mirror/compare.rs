//! Deciding whether an existing object needs a write. Only what we own is compared; fields the
//! API server fills in (clusterIP, clusterIPs, ipFamilies, sessionAffinity, type `ClusterIP`,
//! protocol `TCP`, targetPort = port, resourceVersion, uid, managedFields, …) and the order in
//! which it returns ports and endpoint addresses are ignored, so a steady state makes no write.

use std::collections::{BTreeMap, BTreeSet};

use k8s_openapi::api::core::v1::{EndpointAddress, Endpoints, Service, ServicePort};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

/// Annotations that tools or the API server may add to a mirror and that we never set; they are
/// ignored when present on the actual object only.
const FOREIGN_ANNOTATIONS: [&str; 2] = [
    "kubectl.kubernetes.io/last-applied-configuration",
    "endpoints.kubernetes.io/last-change-trigger-time",
];

/// Whether `actual` differs from `desired` in what the mirror owns: labels, annotations, ports
/// (name, protocol, port, targetPort, appProtocol), the absence of a selector, the Service type
/// and headlessness.
pub fn service_needs_update(desired: &Service, actual: &Service) -> bool {
    if meta_differs(&desired.metadata, &actual.metadata) {
        return true;
    }
    let (d, a) = (
        desired.spec.clone().unwrap_or_default(),
        actual.spec.clone().unwrap_or_default(),
    );
    ports(d.ports.as_deref()) != ports(a.ports.as_deref())
        || d.selector.unwrap_or_default() != a.selector.unwrap_or_default()
        || service_type(d.type_.as_deref()) != service_type(a.type_.as_deref())
        || service_needs_recreate(desired, actual)
}

/// Whether the change from `actual` to `desired` cannot be made by an update: headless
/// (`clusterIP: None`) and ClusterIP Services cannot be turned into each other, so the object
/// must be deleted and created again.
pub fn service_needs_recreate(desired: &Service, actual: &Service) -> bool {
    is_headless(desired) != is_headless(actual)
}

/// Whether `actual` Endpoints differ from `desired` in labels, annotations or addresses × ports
/// (with readiness and hostname). Subsets are compared as sets, since the API server repacks
/// and sorts them; a missing protocol counts as `TCP`.
pub fn endpoints_needs_update(desired: &Endpoints, actual: &Endpoints) -> bool {
    meta_differs(&desired.metadata, &actual.metadata) || flatten(desired) != flatten(actual)
}

fn meta_differs(desired: &ObjectMeta, actual: &ObjectMeta) -> bool {
    let empty = BTreeMap::new();
    let d_labels = desired.labels.as_ref().unwrap_or(&empty);
    let a_labels = actual.labels.as_ref().unwrap_or(&empty);
    if d_labels != a_labels {
        return true;
    }
    let d_ann = desired.annotations.as_ref().unwrap_or(&empty);
    let a_ann = actual.annotations.as_ref().unwrap_or(&empty);
    let a_owned = a_ann
        .iter()
        .filter(|(k, _)| d_ann.contains_key(*k) || !FOREIGN_ANNOTATIONS.contains(&k.as_str()));
    !d_ann.iter().eq(a_owned)
}

fn is_headless(s: &Service) -> bool {
    s.spec.as_ref().and_then(|s| s.cluster_ip.as_deref()) == Some("None")
}

fn service_type(t: Option<&str>) -> &str {
    t.unwrap_or("ClusterIP")
}

fn protocol(p: Option<&str>) -> &str {
    p.unwrap_or("TCP")
}

/// (name, protocol, port, targetPort as number or name, appProtocol).
type PortKey<'a> = (
    Option<&'a str>,
    &'a str,
    i32,
    Result<i32, &'a str>,
    Option<&'a str>,
);

fn ports(ports: Option<&[ServicePort]>) -> BTreeSet<PortKey<'_>> {
    ports
        .unwrap_or_default()
        .iter()
        .map(|p| {
            (
                p.name.as_deref().filter(|n| !n.is_empty()),
                protocol(p.protocol.as_deref()),
                p.port,
                match &p.target_port {
                    None => Ok(p.port),
                    Some(IntOrString::Int(n)) => Ok(*n),
                    Some(IntOrString::String(s)) => Err(s.as_str()),
                },
                p.app_protocol.as_deref(),
            )
        })
        .collect()
}

/// One (readiness, ip, hostname, port name, port, protocol) per address × port.
type EndpointKey<'a> = (
    bool,
    &'a str,
    Option<&'a str>,
    Option<(Option<&'a str>, i32, &'a str)>,
);

fn flatten(e: &Endpoints) -> BTreeSet<EndpointKey<'_>> {
    let mut out = BTreeSet::new();
    for subset in e.subsets.iter().flatten() {
        let ports: Vec<_> = subset
            .ports
            .iter()
            .flatten()
            .map(|p| {
                Some((
                    p.name.as_deref().filter(|n| !n.is_empty()),
                    p.port,
                    protocol(p.protocol.as_deref()),
                ))
            })
            .collect();
        let ports = if ports.is_empty() { vec![None] } else { ports };
        let ready = subset.addresses.iter().flatten().map(|a| (true, a));
        let not_ready = subset
            .not_ready_addresses
            .iter()
            .flatten()
            .map(|a| (false, a));
        for (is_ready, a) in ready.chain(not_ready) {
            let a: &EndpointAddress = a;
            for port in &ports {
                out.insert((is_ready, a.ip.as_str(), a.hostname.as_deref(), *port));
            }
        }
    }
    out
}
