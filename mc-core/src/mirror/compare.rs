//! Deciding whether an existing object needs a write. Only what we own is compared; fields the
//! API server fills in (clusterIP, clusterIPs, ipFamilies, sessionAffinity, type `ClusterIP`,
//! protocol `TCP`, targetPort = port, resourceVersion, uid, managedFields, …) and the order in
//! which it returns ports and endpoint addresses are ignored, so a steady state makes no write.

use std::collections::{BTreeMap, BTreeSet};

use k8s_openapi::api::core::v1::{EndpointAddress, Endpoints, Service, ServicePort, ServiceSpec};
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
    let empty = ServiceSpec::default();
    let d = desired.spec.as_ref().unwrap_or(&empty);
    let a = actual.spec.as_ref().unwrap_or(&empty);
    ports(d.ports.as_deref()) != ports(a.ports.as_deref())
        || selector(d) != selector(a)
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

/// The selector, with an empty map counting as none.
fn selector(s: &ServiceSpec) -> Option<&BTreeMap<String, String>> {
    s.selector.as_ref().filter(|m| !m.is_empty())
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

#[cfg(test)]
mod tests {
    use super::super::fixtures::*;
    use super::super::{DesiredMirror, RemoteEndpoints, desired_mirror};
    use super::*;
    use k8s_openapi::api::core::v1::{EndpointPort, EndpointSubset};
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ManagedFieldsEntry, Time};

    fn desired() -> DesiredMirror {
        let (link, gw) = (link(), gateway());
        match desired_mirror(&remote("web", "true"), &ready(), &ctx(&link, &gw)) {
            Ok(d) => d,
            Err(e) => panic!("{e}"),
        }
    }

    fn server_meta(m: &mut ObjectMeta) {
        m.resource_version = Some("99123".into());
        m.uid = Some("6f1c1d9a-0000-4000-8000-00000000abcd".into());
        m.generation = Some(1);
        m.creation_timestamp = Some(Time(jiff::Timestamp::UNIX_EPOCH));
        m.managed_fields = Some(vec![ManagedFieldsEntry {
            manager: Some("mc-mirror".into()),
            operation: Some("Update".into()),
            ..ManagedFieldsEntry::default()
        }]);
    }

    /// What the API server returns after creating `desired`: allocated and defaulted fields,
    /// ports in another order.
    fn as_returned(desired: &Service) -> Service {
        let mut s = desired.clone();
        server_meta(&mut s.metadata);
        if let Some(spec) = s.spec.as_mut() {
            spec.cluster_ip = Some("10.96.4.2".into());
            spec.cluster_ips = Some(vec!["10.96.4.2".into()]);
            spec.type_ = Some("ClusterIP".into());
            spec.session_affinity = Some("None".into());
            spec.ip_families = Some(vec!["IPv4".into()]);
            spec.ip_family_policy = Some("SingleStack".into());
            spec.internal_traffic_policy = Some("Cluster".into());
            for p in spec.ports.iter_mut().flatten() {
                p.protocol.get_or_insert_with(|| "TCP".into());
                p.target_port.get_or_insert(IntOrString::Int(p.port));
            }
            if let Some(ports) = spec.ports.as_mut() {
                ports.reverse();
            }
        }
        s.status = Some(Default::default());
        s
    }

    /// What the API server returns for `desired` Endpoints: repacked into one subset per
    /// address, addresses and ports reordered, protocol defaulted.
    fn endpoints_as_returned(desired: &Endpoints) -> Endpoints {
        let mut e = desired.clone();
        server_meta(&mut e.metadata);
        let mut subsets = Vec::new();
        for s in desired.subsets.iter().flatten() {
            let mut ports: Vec<EndpointPort> = s.ports.clone().unwrap_or_default();
            for p in &mut ports {
                p.protocol.get_or_insert_with(|| "TCP".into());
            }
            ports.reverse();
            for a in s.addresses.iter().flatten().rev() {
                subsets.push(EndpointSubset {
                    addresses: Some(vec![a.clone()]),
                    not_ready_addresses: None,
                    ports: Some(ports.clone()),
                });
            }
        }
        e.subsets = Some(subsets);
        e
    }

    #[test]
    fn steady_state_needs_no_write() {
        let d = desired();
        let actual = as_returned(&d.service);
        assert!(!service_needs_update(&d.service, &actual));
        assert!(!service_needs_recreate(&d.service, &actual));
        let e = d.endpoints.clone().unwrap_or_default();
        assert!(!endpoints_needs_update(&e, &endpoints_as_returned(&e)));
        let mut with_tooling = actual.clone();
        with_tooling
            .metadata
            .annotations
            .get_or_insert_with(Default::default)
            .insert(FOREIGN_ANNOTATIONS[0].into(), "{}".into());
        assert!(!service_needs_update(&d.service, &with_tooling));
    }

    #[test]
    fn defaults_left_out_of_desired_are_equal_to_server_defaults() {
        let mut d = desired().service;
        for p in d.spec.iter_mut().flat_map(|s| s.ports.iter_mut().flatten()) {
            p.protocol = None;
            if p.target_port == Some(IntOrString::Int(8080)) {
                p.target_port = None;
            }
        }
        let mut actual = as_returned(&d);
        for p in actual
            .spec
            .iter_mut()
            .flat_map(|s| s.ports.iter_mut().flatten())
        {
            assert_eq!(p.protocol.as_deref(), Some("TCP"));
        }
        assert!(!service_needs_update(&d, &actual));
        if let Some(p) = actual.spec.as_mut().and_then(|s| s.ports.as_mut()) {
            p[0].protocol = Some("UDP".into());
        }
        assert!(service_needs_update(&d, &actual));
    }

    #[test]
    fn owned_service_changes_need_a_write() {
        let d = desired().service;
        type Edit = fn(&mut Service);
        let edits: Vec<(&str, Edit)> = vec![
            ("label value", |s| {
                s.metadata.labels.iter_mut().for_each(|l| {
                    l.insert("app".into(), "other".into());
                })
            }),
            ("extra label", |s| {
                s.metadata.labels.iter_mut().for_each(|l| {
                    l.insert("x".into(), "y".into());
                })
            }),
            ("annotation removed", |s| {
                s.metadata.annotations.iter_mut().for_each(|a| {
                    a.remove(crate::labels::REMOTE_RESOURCE_VERSION);
                })
            }),
            ("port", |s| {
                s.spec
                    .iter_mut()
                    .flat_map(|s| s.ports.iter_mut().flatten())
                    .for_each(|p| p.port += 1)
            }),
            ("targetPort", |s| {
                s.spec
                    .iter_mut()
                    .flat_map(|s| s.ports.iter_mut().flatten())
                    .for_each(|p| p.target_port = Some(IntOrString::Int(1)))
            }),
            ("appProtocol", |s| {
                s.spec
                    .iter_mut()
                    .flat_map(|s| s.ports.iter_mut().flatten())
                    .for_each(|p| p.app_protocol = Some("http".into()))
            }),
            ("selector", |s| {
                s.spec.iter_mut().for_each(|s| {
                    s.selector = Some([("app".to_string(), "web".to_string())].into())
                })
            }),
            ("type", |s| {
                s.spec
                    .iter_mut()
                    .for_each(|s| s.type_ = Some("NodePort".into()))
            }),
            ("headless", |s| {
                s.spec
                    .iter_mut()
                    .for_each(|s| s.cluster_ip = Some("None".into()))
            }),
        ];
        for (what, edit) in edits {
            let mut actual = as_returned(&d);
            edit(&mut actual);
            assert!(service_needs_update(&d, &actual), "{what}");
        }
        let mut headless = as_returned(&d);
        headless
            .spec
            .iter_mut()
            .for_each(|s| s.cluster_ip = Some("None".into()));
        assert!(service_needs_recreate(&d, &headless));
    }

    #[test]
    fn owned_endpoints_changes_need_a_write() {
        let (link, gw) = (link(), gateway());
        let d = desired().endpoints.unwrap_or_default();
        let base = endpoints_as_returned(&d);
        let mut moved = base.clone();
        moved.subsets.iter_mut().flatten().for_each(|s| {
            s.not_ready_addresses = s.addresses.take();
        });
        assert!(endpoints_needs_update(&d, &moved), "readiness");
        let mut other_ip = base.clone();
        if let Some(a) = other_ip
            .subsets
            .as_mut()
            .and_then(|s| s[0].addresses.as_mut())
        {
            a[0].ip = "192.0.2.1".into();
        }
        assert!(endpoints_needs_update(&d, &other_ip), "address");
        let mut other_port = base.clone();
        other_port
            .subsets
            .iter_mut()
            .flatten()
            .flat_map(|s| s.ports.iter_mut().flatten())
            .for_each(|p| p.port = 4144);
        assert!(endpoints_needs_update(&d, &other_port), "port");
        let mut no_identity = base.clone();
        no_identity.metadata.annotations.iter_mut().for_each(|a| {
            a.remove(crate::labels::REMOTE_GATEWAY_IDENTITY);
        });
        assert!(
            endpoints_needs_update(&d, &no_identity),
            "identity annotation"
        );
        let empty = match desired_mirror(
            &remote("web", "true"),
            &RemoteEndpoints::Empty,
            &ctx(&link, &gw),
        ) {
            Ok(m) => m.endpoints.unwrap_or_default(),
            Err(e) => panic!("{e}"),
        };
        assert!(endpoints_needs_update(&empty, &base), "emptied");
        let mut returned_empty = empty.clone();
        returned_empty.subsets = Some(Vec::new());
        assert!(
            !endpoints_needs_update(&empty, &returned_empty),
            "[] == absent"
        );
    }
}
