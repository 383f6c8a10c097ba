//! Building the desired objects.

use std::collections::BTreeMap;
use std::net::IpAddr;

use k8s_openapi::api::core::v1::{
    EndpointAddress, EndpointPort, EndpointSubset, Endpoints, Service, ServicePort, ServiceSpec,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

use super::meta::{copy_annotations, copy_labels};
use super::remote::{ExportMode, RemoteService, export_mode};
use super::{DesiredMirror, Gateway, MirrorContext, MirrorKind, RemoteEndpoints};
use crate::labels;
use crate::link::ValidLink;
use crate::naming::{endpoint_mirror_name, mirror_name, probe_service_name};
use crate::{Error, Result};

type Map = BTreeMap<String, String>;

/// Compute the local objects for remote Service `remote`.
///
/// Errors: the remote Service cannot be mirrored ([`Error::InvalidRemoteService`]: no name, no
/// namespace, no ports, bad port); it matches neither export selector ([`Error::NotExported`]);
/// it is selected for gateway mode on a gateway-less Link ([`Error::NoGateway`]).
///
/// A headless remote (`clusterIP: None`) with headless mirroring enabled gets a headless mirror
/// unless its ready addresses have no hostname (a Deployment behind a headless Service cannot be
/// addressed per pod, so it gets a gateway mirror instead).
pub fn desired_mirror(
    remote: &Service,
    endpoints: &RemoteEndpoints,
    ctx: &MirrorContext<'_>,
) -> Result<DesiredMirror> {
    let svc = RemoteService::check(remote)?;
    let link = ctx.link;
    let cluster = link.cluster_name.as_str();
    let remote_labels = remote.metadata.labels.clone().unwrap_or_default();
    let mode = export_mode(link, &remote_labels).ok_or_else(|| Error::NotExported {
        service: format!("{}/{}", svc.namespace, svc.name),
        cluster: cluster.to_string(),
        export_hint: labels::DEFAULT_SELECTOR,
    })?;
    let name = mirror_name(svc.name, cluster);
    let mut mirror_labels = copy_labels(remote.metadata.labels.as_ref(), &link.excluded_labels);
    insert(&mut mirror_labels, labels::MIRRORED_SERVICE, "true");
    insert(&mut mirror_labels, labels::CLUSTER_NAME, cluster);
    let fq_name = format!("{}.{}.svc.{}", svc.name, svc.namespace, link.cluster_domain);
    let version = remote
        .metadata
        .resource_version
        .as_deref()
        .unwrap_or_default();
    let mut annotations = copy_annotations(
        remote.metadata.annotations.as_ref(),
        &link.excluded_annotations,
    );
    insert(&mut annotations, labels::REMOTE_SVC_FQ_NAME, &fq_name);
    insert(&mut annotations, labels::REMOTE_RESOURCE_VERSION, version);
    insert(&mut annotations, labels::ORIGINAL_NAME, svc.name);
    let ports: Vec<ServicePort> = svc.ports.iter().map(mirror_port).collect();

    if mode == ExportMode::RemoteDiscovery {
        insert(&mut mirror_labels, labels::REMOTE_DISCOVERY, cluster);
        insert(&mut mirror_labels, labels::REMOTE_SERVICE, svc.name);
        return Ok(DesiredMirror {
            service: service(
                &name.name,
                svc.namespace,
                mirror_labels,
                annotations,
                ports,
                false,
            ),
            name,
            endpoints: None,
            endpoint_mirrors: Vec::new(),
            kind: MirrorKind::RemoteDiscovery,
        });
    }
    if link.gateway.is_none() {
        return Err(Error::NoGateway {
            service: format!("{}/{}", svc.namespace, svc.name),
            cluster: cluster.to_string(),
        });
    }
    let gateway = GatewayView::new(ctx);
    let headless = ctx.headless_enabled
        && svc.headless
        && !matches!(endpoints, RemoteEndpoints::Ready { hostnames } if hostnames.is_empty());
    if headless {
        let hostnames = match endpoints {
            RemoteEndpoints::Ready { hostnames } => hostnames.as_slice(),
            _ => &[],
        };
        let endpoint_mirrors = hostnames
            .iter()
            .map(|host| {
                let host_name = endpoint_mirror_name(host, cluster);
                let mut l = mirror_labels.clone();
                insert(&mut l, labels::HEADLESS_MIRROR_SVC_NAME, &name.name);
                // The Endpoints do not carry the resource version, so a change of the remote
                // Service that leaves them as they are does not rewrite them.
                let mut ep_annotations = Map::new();
                insert(
                    &mut ep_annotations,
                    labels::REMOTE_SVC_FQ_NAME,
                    &format!("{host}.{fq_name}"),
                );
                insert(&mut ep_annotations, labels::ORIGINAL_NAME, svc.name);
                let mut a = ep_annotations.clone();
                insert(&mut a, labels::REMOTE_RESOURCE_VERSION, version);
                let s = service(
                    &host_name.name,
                    svc.namespace,
                    l.clone(),
                    a,
                    ports.clone(),
                    false,
                );
                let e = gateway.endpoints(
                    &host_name.name,
                    svc.namespace,
                    l,
                    ep_annotations,
                    &ports,
                    true,
                );
                (s, e)
            })
            .collect();
        return Ok(DesiredMirror {
            service: service(
                &name.name,
                svc.namespace,
                mirror_labels,
                annotations,
                ports,
                true,
            ),
            name,
            endpoints: None,
            endpoint_mirrors,
            kind: MirrorKind::Headless,
        });
    }
    let mut ep_annotations = Map::new();
    insert(&mut ep_annotations, labels::REMOTE_SVC_FQ_NAME, &fq_name);
    insert(&mut ep_annotations, labels::ORIGINAL_NAME, svc.name);
    let ep = gateway.endpoints(
        &name.name,
        svc.namespace,
        mirror_labels.clone(),
        ep_annotations,
        &ports,
        endpoints.is_ready(),
    );
    Ok(DesiredMirror {
        service: service(
            &name.name,
            svc.namespace,
            mirror_labels,
            annotations,
            ports,
            false,
        ),
        name,
        endpoints: Some(ep),
        endpoint_mirrors: Vec::new(),
        kind: MirrorKind::Gateway,
    })
}

/// The Endpoints of a headless mirror: for each `(hostname, ClusterIP of its endpoint mirror)`
/// an address with that hostname, so `<host>.<mirror>.<ns>.svc` resolves to the endpoint mirror.
/// Ports are the mirror's service ports (the ports the endpoint mirror's ClusterIP serves).
/// Hosts are sorted by hostname; name, namespace and labels come from `mirror`.
pub fn headless_endpoints(mirror: &Service, hosts: &[(String, IpAddr)]) -> Endpoints {
    let mut hosts = hosts.to_vec();
    hosts.sort();
    hosts.dedup();
    let ports = mirror
        .spec
        .as_ref()
        .and_then(|s| s.ports.as_ref())
        .map(|ps| {
            ps.iter()
                .map(|p| EndpointPort {
                    name: p.name.clone(),
                    protocol: p.protocol.clone(),
                    port: p.port,
                    ..EndpointPort::default()
                })
                .collect::<Vec<_>>()
        })
        .unwrap_or_default();
    let annotations: Map = mirror
        .metadata
        .annotations
        .iter()
        .flatten()
        .filter(|(k, _)| *k == labels::REMOTE_SVC_FQ_NAME || *k == labels::ORIGINAL_NAME)
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    let addresses: Vec<EndpointAddress> = hosts
        .iter()
        .map(|(host, ip)| EndpointAddress {
            hostname: Some(host.clone()),
            ip: ip.to_string(),
            ..EndpointAddress::default()
        })
        .collect();
    Endpoints {
        metadata: ObjectMeta {
            name: mirror.metadata.name.clone(),
            namespace: mirror.metadata.namespace.clone(),
            labels: mirror.metadata.labels.clone(),
            annotations: Some(annotations),
            ..ObjectMeta::default()
        },
        subsets: subsets(addresses, ports, true),
    }
}

/// The probe Service `mc-probe-<cluster>` in `namespace` (the multicluster namespace): labels
/// `mirrored-gateway: "true"` and `cluster-name`, no selector, one TCP port `mc-probe`.
/// `None` when the Link has no probe.
pub fn probe_service(link: &ValidLink, namespace: &str) -> Option<Service> {
    let probe = link.probe.as_ref()?;
    let port = ServicePort {
        name: Some(labels::PROBE_PORT_NAME.to_string()),
        protocol: Some("TCP".to_string()),
        port: i32::from(probe.port),
        ..ServicePort::default()
    };
    Some(service(
        &probe_service_name(&link.cluster_name).name,
        namespace,
        probe_labels(link),
        Map::new(),
        vec![port],
        false,
    ))
}

/// The Endpoints of the probe Service: the gateway IPs on port `mc-probe` = `probeSpec.port`,
/// with the gateway identity annotation; never marked not-ready. `None` without a probe.
pub fn probe_endpoints(link: &ValidLink, namespace: &str, gateway: &Gateway) -> Option<Endpoints> {
    let probe = link.probe.as_ref()?;
    let mut annotations = Map::new();
    if let Some(id) = &gateway.identity {
        insert(&mut annotations, labels::REMOTE_GATEWAY_IDENTITY, id);
    }
    let port = EndpointPort {
        name: Some(labels::PROBE_PORT_NAME.to_string()),
        protocol: Some("TCP".to_string()),
        port: i32::from(probe.port),
        ..EndpointPort::default()
    };
    Some(Endpoints {
        metadata: meta(
            &probe_service_name(&link.cluster_name).name,
            namespace,
            probe_labels(link),
            annotations,
        ),
        subsets: subsets(addresses(&gateway.ips), vec![port], true),
    })
}

fn probe_labels(link: &ValidLink) -> Map {
    let mut l = Map::new();
    insert(&mut l, labels::MIRRORED_GATEWAY, "true");
    insert(&mut l, labels::CLUSTER_NAME, &link.cluster_name);
    l
}

/// The gateway as mirror Endpoints see it.
struct GatewayView<'a> {
    ips: &'a [IpAddr],
    port: u16,
    identity: Option<&'a str>,
    alive: bool,
}

impl<'a> GatewayView<'a> {
    fn new(ctx: &MirrorContext<'a>) -> Self {
        let spec = ctx.link.gateway.as_ref();
        GatewayView {
            ips: ctx.gateway.map(|g| g.ips.as_slice()).unwrap_or_default(),
            port: ctx
                .gateway
                .map(|g| g.port)
                .or(spec.map(|s| s.port))
                .unwrap_or(labels::DEFAULT_GATEWAY_PORT),
            identity: ctx
                .gateway
                .and_then(|g| g.identity.as_deref())
                .or(spec.and_then(|s| s.identity.as_deref())),
            alive: ctx.alive,
        }
    }

    /// Endpoints pointing at the gateway; no subsets when `remote_ready` is false or there is
    /// no gateway IP; addresses not ready while the gateway is dead.
    fn endpoints(
        &self,
        name: &str,
        namespace: &str,
        labels: Map,
        mut annotations: Map,
        ports: &[ServicePort],
        remote_ready: bool,
    ) -> Endpoints {
        if let Some(id) = self.identity.filter(|id| !id.is_empty()) {
            insert(&mut annotations, labels::REMOTE_GATEWAY_IDENTITY, id);
        }
        let ports = ports
            .iter()
            .map(|p| EndpointPort {
                name: p.name.clone(),
                protocol: p.protocol.clone(),
                port: i32::from(self.port),
                ..EndpointPort::default()
            })
            .collect();
        let addresses = if remote_ready {
            addresses(self.ips)
        } else {
            Vec::new()
        };
        Endpoints {
            metadata: meta(name, namespace, labels, annotations),
            subsets: subsets(addresses, ports, self.alive),
        }
    }
}

/// One subset with `addresses` (ready, or not ready) and `ports`; none without addresses.
fn subsets(
    addresses: Vec<EndpointAddress>,
    ports: Vec<EndpointPort>,
    ready: bool,
) -> Option<Vec<EndpointSubset>> {
    if addresses.is_empty() {
        return None;
    }
    let (ready, not_ready) = if ready {
        (Some(addresses), None)
    } else {
        (None, Some(addresses))
    };
    Some(vec![EndpointSubset {
        addresses: ready,
        not_ready_addresses: not_ready,
        ports: Some(ports),
    }])
}

fn addresses(ips: &[IpAddr]) -> Vec<EndpointAddress> {
    ips.iter()
        .map(|ip| EndpointAddress {
            ip: ip.to_string(),
            ..EndpointAddress::default()
        })
        .collect()
}

/// A mirror port: name, protocol, port and targetPort; nodePort and appProtocol dropped.
pub(super) fn mirror_port(p: &ServicePort) -> ServicePort {
    ServicePort {
        name: p.name.clone(),
        protocol: p.protocol.clone(),
        port: p.port,
        target_port: p.target_port.clone(),
        ..ServicePort::default()
    }
}

fn service(
    name: &str,
    namespace: &str,
    labels: Map,
    annotations: Map,
    ports: Vec<ServicePort>,
    headless: bool,
) -> Service {
    Service {
        metadata: meta(name, namespace, labels, annotations),
        spec: Some(ServiceSpec {
            ports: Some(ports),
            cluster_ip: headless.then(|| "None".to_string()),
            ..ServiceSpec::default()
        }),
        status: None,
    }
}

fn meta(name: &str, namespace: &str, labels: Map, annotations: Map) -> ObjectMeta {
    ObjectMeta {
        name: Some(name.to_string()),
        namespace: Some(namespace.to_string()),
        labels: Some(labels),
        annotations: Some(annotations),
        ..ObjectMeta::default()
    }
}

fn insert(map: &mut Map, key: &str, value: &str) {
    map.insert(key.to_string(), value.to_string());
}

#[cfg(test)]
mod tests {
    use super::super::fixtures::*;
    use super::*;
    use crate::mirror::{Ownership, ownership};
    use crate::naming::remote_name;
    use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

    fn desired(remote: &Service, eps: &RemoteEndpoints, ctx: &MirrorContext<'_>) -> DesiredMirror {
        match desired_mirror(remote, eps, ctx) {
            Ok(d) => d,
            Err(e) => panic!("desired_mirror failed: {e}"),
        }
    }

    fn labels_of(meta: &ObjectMeta) -> Map {
        meta.labels.clone().unwrap_or_default()
    }

    fn annotations_of(meta: &ObjectMeta) -> Map {
        meta.annotations.clone().unwrap_or_default()
    }

    fn ips(e: &Endpoints, ready: bool) -> Vec<String> {
        e.subsets
            .iter()
            .flatten()
            .flat_map(|s| {
                if ready {
                    s.addresses.iter().flatten()
                } else {
                    s.not_ready_addresses.iter().flatten()
                }
            })
            .map(|a| a.ip.clone())
            .collect()
    }

    #[test]
    fn gateway_mirror_service() {
        let (link, gw) = (link(), gateway());
        let d = desired(&remote("web", "true"), &ready(), &ctx(&link, &gw));
        assert_eq!(d.kind, MirrorKind::Gateway);
        assert_eq!(d.name.name, "web-east");
        let m = &d.service.metadata;
        assert_eq!(m.name.as_deref(), Some("web-east"));
        assert_eq!(m.namespace.as_deref(), Some("shop"));
        let l = labels_of(m);
        assert_eq!(
            l.keys().map(String::as_str).collect::<Vec<_>>(),
            ["app", labels::CLUSTER_NAME, labels::MIRRORED_SERVICE],
            "export label (mirror.linkerd.io/*) and excluded argocd label dropped"
        );
        assert_eq!(l[labels::MIRRORED_SERVICE], "true");
        assert_eq!(l[labels::CLUSTER_NAME], "east");
        let a = annotations_of(m);
        assert_eq!(a[labels::REMOTE_SVC_FQ_NAME], "web.shop.svc.cluster.east");
        assert_eq!(a[labels::REMOTE_RESOURCE_VERSION], "4711");
        assert_eq!(a[labels::ORIGINAL_NAME], "web");
        assert_eq!(a[labels::OPAQUE_PORTS], "5432");
        assert_eq!(a["team"], "payments");
        assert!(!a.contains_key(labels::TOPOLOGY_MODE));
        assert!(
            !a.contains_key("prometheus.io/scrape"),
            "excludedAnnotations"
        );
        let spec = d.service.spec.clone().unwrap_or_default();
        assert_eq!(spec.selector, None, "mirrors are selector-less");
        assert_eq!(spec.type_, None);
        assert_eq!(spec.cluster_ip, None, "the API server allocates one");
        let ports = spec.ports.unwrap_or_default();
        assert_eq!(ports.len(), 2);
        assert_eq!(ports[0].name.as_deref(), Some("http"));
        assert_eq!(ports[0].port, 80);
        assert_eq!(ports[0].target_port, Some(IntOrString::Int(8080)));
        assert_eq!(ports[0].protocol.as_deref(), Some("TCP"));
        assert_eq!(
            (ports[0].node_port, ports[0].app_protocol.clone()),
            (None, None)
        );
        assert_eq!(
            ports[1].target_port,
            Some(IntOrString::String("postgres".into()))
        );
        assert!(d.endpoint_mirrors.is_empty());
        assert_eq!(ownership(m, "east"), Ownership::Ours);
        assert_eq!(remote_name(m, "east"), Some(("shop".into(), "web".into())));
    }

    #[test]
    fn gateway_mirror_endpoints() {
        let (link, gw) = (link(), gateway());
        let d = desired(&remote("web", "true"), &ready(), &ctx(&link, &gw));
        let e = d.endpoints.unwrap_or_default();
        assert_eq!(e.metadata.name.as_deref(), Some("web-east"));
        assert_eq!(labels_of(&e.metadata), labels_of(&d.service.metadata));
        let a = annotations_of(&e.metadata);
        assert_eq!(a[labels::REMOTE_SVC_FQ_NAME], "web.shop.svc.cluster.east");
        assert_eq!(a[labels::REMOTE_GATEWAY_IDENTITY], IDENTITY);
        assert!(!a.contains_key(labels::OPAQUE_PORTS));
        assert_eq!(ips(&e, true), ["203.0.113.10", "203.0.113.20"]);
        assert!(ips(&e, false).is_empty());
        let subsets = e.subsets.unwrap_or_default();
        assert_eq!(subsets.len(), 1);
        let ports: Vec<_> = subsets[0]
            .ports
            .iter()
            .flatten()
            .map(|p| {
                (
                    p.name.clone().unwrap_or_default(),
                    p.port,
                    p.protocol.clone(),
                )
            })
            .collect();
        assert_eq!(
            ports,
            [
                ("http".to_string(), 4143, Some("TCP".to_string())),
                ("db".to_string(), 4143, Some("TCP".to_string()))
            ],
            "every service port lands on the gateway port"
        );
    }

    #[test]
    fn empty_remote_gives_no_subsets() {
        let (link, gw) = (link(), gateway());
        for eps in [RemoteEndpoints::Missing, RemoteEndpoints::Empty] {
            let d = desired(&remote("web", "true"), &eps, &ctx(&link, &gw));
            let e = d.endpoints.unwrap_or_default();
            assert_eq!(e.subsets, None, "{eps:?}");
            assert_eq!(
                annotations_of(&e.metadata)[labels::REMOTE_GATEWAY_IDENTITY],
                IDENTITY
            );
        }
    }

    #[test]
    fn dead_gateway_moves_addresses_to_not_ready() {
        let (link, gw) = (link(), gateway());
        let c = MirrorContext {
            alive: false,
            ..ctx(&link, &gw)
        };
        let e = desired(&remote("web", "true"), &ready(), &c)
            .endpoints
            .unwrap_or_default();
        assert!(ips(&e, true).is_empty());
        assert_eq!(ips(&e, false), ["203.0.113.10", "203.0.113.20"]);
    }

    #[test]
    fn unresolved_gateway_gives_no_subsets() {
        let link = link();
        let c = MirrorContext {
            link: &link,
            gateway: None,
            alive: true,
            headless_enabled: false,
        };
        let e = desired(&remote("web", "true"), &ready(), &c)
            .endpoints
            .unwrap_or_default();
        assert_eq!(e.subsets, None);
        assert_eq!(
            annotations_of(&e.metadata)[labels::REMOTE_GATEWAY_IDENTITY],
            IDENTITY,
            "identity falls back to the Link's"
        );
    }

    #[test]
    fn no_identity_no_annotation() {
        let link = link();
        let gw = Gateway::new(gateway().ips, 4143, None);
        let mut l = link.clone();
        if let Some(g) = l.gateway.as_mut() {
            g.identity = None;
        }
        let e = desired(&remote("web", "true"), &ready(), &ctx(&l, &gw))
            .endpoints
            .unwrap_or_default();
        assert!(!annotations_of(&e.metadata).contains_key(labels::REMOTE_GATEWAY_IDENTITY));
    }

    #[test]
    fn remote_discovery_mirror() {
        let (link, gw) = (link(), gateway());
        let d = desired(
            &remote("web", labels::EXPORTED_REMOTE_DISCOVERY_VALUE),
            &ready(),
            &ctx(&link, &gw),
        );
        assert_eq!(d.kind, MirrorKind::RemoteDiscovery);
        assert_eq!(d.endpoints, None);
        let l = labels_of(&d.service.metadata);
        assert_eq!(l[labels::REMOTE_DISCOVERY], "east");
        assert_eq!(l[labels::REMOTE_SERVICE], "web");
        assert_eq!(l[labels::MIRRORED_SERVICE], "true");
    }

    #[test]
    fn remote_discovery_works_without_gateway() {
        let mut spec_link = link();
        spec_link.gateway = None;
        let c = MirrorContext {
            link: &spec_link,
            gateway: None,
            alive: true,
            headless_enabled: false,
        };
        let rd = desired_mirror(&remote("web", "remote-discovery"), &ready(), &c);
        assert!(rd.is_ok_and(|d| d.kind == MirrorKind::RemoteDiscovery));
        let gw = desired_mirror(&remote("web", "true"), &ready(), &c);
        assert!(matches!(gw, Err(Error::NoGateway { .. })), "{gw:?}");
    }

    #[test]
    fn unexported_and_invalid_remotes() {
        let (link, gw) = (link(), gateway());
        let c = ctx(&link, &gw);
        let r = desired_mirror(&remote("web", "false"), &ready(), &c);
        assert!(matches!(r, Err(Error::NotExported { .. })), "{r:?}");

        let mut no_ports = remote("web", "true");
        if let Some(s) = no_ports.spec.as_mut() {
            s.ports = None;
        }
        let msg = desired_mirror(&no_ports, &ready(), &c)
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(
            msg.contains("shop/web") && msg.contains("spec.ports"),
            "{msg}"
        );

        let mut no_ns = remote("web", "true");
        no_ns.metadata.namespace = None;
        let r = desired_mirror(&no_ns, &ready(), &c);
        assert!(
            matches!(r, Err(Error::InvalidRemoteService { ref field, .. }) if field == "metadata.namespace")
        );

        let mut bad_port = remote("web", "true");
        if let Some(p) = bad_port.spec.as_mut().and_then(|s| s.ports.as_mut()) {
            p[1].port = 70000;
        }
        let r = desired_mirror(&bad_port, &ready(), &c);
        assert!(
            matches!(r, Err(Error::InvalidRemoteService { ref field, .. }) if field == "spec.ports[1].port")
        );
        assert!(desired_mirror(&Service::default(), &ready(), &c).is_err());
    }

    fn headless_remote() -> Service {
        let mut s = remote("db", "true");
        if let Some(spec) = s.spec.as_mut() {
            spec.cluster_ip = Some("None".into());
            spec.type_ = Some("ClusterIP".into());
        }
        s
    }

    #[test]
    fn headless_mirror_with_endpoint_mirrors() {
        let (link, gw) = (link(), gateway());
        let eps = RemoteEndpoints::Ready {
            hostnames: vec!["db-0".into(), "db-1".into()],
        };
        let d = desired(&headless_remote(), &eps, &ctx(&link, &gw));
        assert_eq!(d.kind, MirrorKind::Headless);
        let spec = d.service.spec.clone().unwrap_or_default();
        assert_eq!(spec.cluster_ip.as_deref(), Some("None"));
        assert_eq!(
            d.endpoints, None,
            "computed once endpoint mirrors have ClusterIPs"
        );
        let names: Vec<_> = d
            .endpoint_mirrors
            .iter()
            .filter_map(|(s, _)| s.metadata.name.clone())
            .collect();
        assert_eq!(names, ["db-0-east", "db-1-east"]);
        let (svc, ep) = &d.endpoint_mirrors[0];
        let l = labels_of(&svc.metadata);
        assert_eq!(l[labels::HEADLESS_MIRROR_SVC_NAME], "db-east");
        assert_eq!(l[labels::CLUSTER_NAME], "east");
        let a = annotations_of(&svc.metadata);
        assert_eq!(
            a[labels::REMOTE_SVC_FQ_NAME],
            "db-0.db.shop.svc.cluster.east"
        );
        assert_eq!(a[labels::REMOTE_RESOURCE_VERSION], "4711");
        assert_eq!(svc.spec.as_ref().and_then(|s| s.cluster_ip.clone()), None);
        assert_eq!(ips(ep, true), ["203.0.113.10", "203.0.113.20"]);
        let ea = annotations_of(&ep.metadata);
        assert_eq!(
            ea[labels::REMOTE_SVC_FQ_NAME],
            "db-0.db.shop.svc.cluster.east"
        );
        assert_eq!(ea[labels::REMOTE_GATEWAY_IDENTITY], IDENTITY);
        assert!(!ea.contains_key(labels::REMOTE_RESOURCE_VERSION));
        assert_eq!(
            remote_name(&svc.metadata, "east"),
            Some(("shop".into(), "db".into()))
        );
    }

    #[test]
    fn headless_without_hostnames_or_disabled_is_a_gateway_mirror() {
        let (link, gw) = (link(), gateway());
        let d = desired(&headless_remote(), &ready(), &ctx(&link, &gw));
        assert_eq!(
            d.kind,
            MirrorKind::Gateway,
            "no hostnames: not addressable per pod"
        );
        let off = MirrorContext {
            headless_enabled: false,
            ..ctx(&link, &gw)
        };
        let eps = RemoteEndpoints::Ready {
            hostnames: vec!["db-0".into()],
        };
        let d = desired(&headless_remote(), &eps, &off);
        assert_eq!(d.kind, MirrorKind::Gateway);
        assert_eq!(d.service.spec.and_then(|s| s.cluster_ip), None);
        let waiting = desired(
            &headless_remote(),
            &RemoteEndpoints::Empty,
            &ctx(&link, &gw),
        );
        assert_eq!(waiting.kind, MirrorKind::Headless);
        assert!(waiting.endpoint_mirrors.is_empty());
    }

    #[test]
    fn headless_endpoints_point_hostnames_at_endpoint_mirrors() {
        let (link, gw) = (link(), gateway());
        let eps = RemoteEndpoints::Ready {
            hostnames: vec!["db-0".into()],
        };
        let d = desired(&headless_remote(), &eps, &ctx(&link, &gw));
        let hosts: Vec<(String, IpAddr)> = [("db-1", "10.96.1.2"), ("db-0", "10.96.1.1")]
            .iter()
            .filter_map(|(h, ip)| Some((h.to_string(), ip.parse().ok()?)))
            .collect();
        let e = headless_endpoints(&d.service, &hosts);
        assert_eq!(e.metadata.name.as_deref(), Some("db-east"));
        assert_eq!(labels_of(&e.metadata), labels_of(&d.service.metadata));
        let subset = e.subsets.unwrap_or_default().pop().unwrap_or_default();
        let addrs: Vec<_> = subset
            .addresses
            .iter()
            .flatten()
            .map(|a| (a.hostname.clone().unwrap_or_default(), a.ip.clone()))
            .collect();
        assert_eq!(
            addrs,
            [
                ("db-0".to_string(), "10.96.1.1".to_string()),
                ("db-1".to_string(), "10.96.1.2".to_string())
            ]
        );
        let ports: Vec<_> = subset.ports.iter().flatten().map(|p| p.port).collect();
        assert_eq!(ports, [80, 5432], "the endpoint mirrors' service ports");
        assert_eq!(headless_endpoints(&d.service, &[]).subsets, None);
    }

    #[test]
    fn long_names_are_shortened_and_map_back() {
        let (link, gw) = (link(), gateway());
        let long = format!("a{}", "b".repeat(60));
        let d = desired(&remote(&long, "true"), &ready(), &ctx(&link, &gw));
        assert!(d.name.shortened);
        let name = d.service.metadata.name.clone().unwrap_or_default();
        assert!(name.len() <= 63, "{name}");
        assert_eq!(d.endpoints.and_then(|e| e.metadata.name), Some(name));
        assert_eq!(
            remote_name(&d.service.metadata, "east"),
            Some(("shop".into(), long))
        );
    }

    #[test]
    fn probe_objects() {
        let (link, gw) = (link(), gateway());
        let svc = probe_service(&link, "linkerd-multicluster").unwrap_or_default();
        assert_eq!(svc.metadata.name.as_deref(), Some("mc-probe-east"));
        let l = labels_of(&svc.metadata);
        assert_eq!(l[labels::MIRRORED_GATEWAY], "true");
        assert_eq!(l[labels::CLUSTER_NAME], "east");
        let spec = svc.spec.clone().unwrap_or_default();
        assert_eq!(spec.selector, None);
        let port = spec.ports.unwrap_or_default().pop().unwrap_or_default();
        assert_eq!((port.name.as_deref(), port.port), (Some("mc-probe"), 4191));
        let e = probe_endpoints(&link, "linkerd-multicluster", &gw).unwrap_or_default();
        assert_eq!(ips(&e, true), ["203.0.113.10", "203.0.113.20"]);
        assert_eq!(
            annotations_of(&e.metadata)[labels::REMOTE_GATEWAY_IDENTITY],
            IDENTITY
        );
        assert_eq!(ownership(&e.metadata, "east"), Ownership::Ours);
        let mut no_probe = link.clone();
        no_probe.probe = None;
        assert_eq!(probe_service(&no_probe, "x"), None);
        assert_eq!(probe_endpoints(&no_probe, "x", &gw), None);
    }

    mod properties {
        use super::*;
        use crate::mirror::{endpoints_needs_update, service_needs_update};
        use k8s_openapi::api::core::v1::ServiceSpec;
        use proptest::prelude::*;

        fn key() -> impl Strategy<Value = String> {
            prop_oneof![
                "[a-z]{1,8}",
                "[a-z]{1,6}\\.(io|com)/[a-z]{1,6}",
                Just(labels::EXPORTED.to_string()),
                Just(labels::CLUSTER_NAME.to_string()),
                Just(labels::ORIGINAL_NAME.to_string()),
                Just(labels::OPAQUE_PORTS.to_string()),
                Just(labels::TOPOLOGY_HINTS.to_string()),
                Just("prometheus.io/scrape".to_string()),
                Just("argocd.argoproj.io/instance".to_string()),
            ]
        }

        fn service() -> impl Strategy<Value = Service> {
            (
                "[a-z]([a-z0-9-]{0,61}[a-z0-9])?",
                proptest::collection::btree_map(key(), "[a-z0-9]{0,5}", 0..6),
                proptest::collection::btree_map(key(), "[ -~]{0,10}", 0..6),
                proptest::collection::btree_map("[a-z]{1,6}", 1..65536i32, 1..4),
                prop_oneof![Just("true"), Just("remote-discovery")],
            )
                .prop_map(|(name, mut l, a, ports, export)| {
                    l.insert(labels::EXPORTED.to_string(), export.to_string());
                    Service {
                        metadata: ObjectMeta {
                            name: Some(name),
                            namespace: Some("ns".into()),
                            resource_version: Some("1".into()),
                            labels: Some(l),
                            annotations: Some(a),
                            ..ObjectMeta::default()
                        },
                        spec: Some(ServiceSpec {
                            ports: Some(
                                ports
                                    .into_iter()
                                    .map(|(n, p)| ServicePort {
                                        name: Some(n),
                                        port: p,
                                        node_port: Some(30000),
                                        ..ServicePort::default()
                                    })
                                    .collect(),
                            ),
                            ..ServiceSpec::default()
                        }),
                        status: None,
                    }
                })
        }

        proptest! {
            #[test]
            fn desired_mirrors_keep_their_invariants(remote in service(), alive: bool) {
                let (link, gw) = (link(), gateway());
                let c = MirrorContext { alive, ..ctx(&link, &gw) };
                let d = desired_mirror(&remote, &ready(), &c)?;
                let m = &d.service.metadata;
                let name = m.name.clone().unwrap_or_default();
                prop_assert!(crate::naming::is_dns1035_label(&name), "{}", name);
                let l = labels_of(m);
                prop_assert_eq!(l.get(labels::CLUSTER_NAME).map(String::as_str), Some("east"));
                prop_assert_eq!(l.get(labels::MIRRORED_SERVICE).map(String::as_str), Some("true"));
                prop_assert!(!l.contains_key(labels::EXPORTED));
                prop_assert!(!l.contains_key("argocd.argoproj.io/instance"));
                let a = annotations_of(m);
                prop_assert!(!a.contains_key(labels::TOPOLOGY_HINTS));
                prop_assert!(!a.contains_key("prometheus.io/scrape"));
                let remote_ann = annotations_of(&remote.metadata);
                prop_assert_eq!(a.get(labels::OPAQUE_PORTS), remote_ann.get(labels::OPAQUE_PORTS));
                prop_assert_eq!(
                    crate::naming::remote_name(m, "east"),
                    Some(("ns".to_string(), remote.metadata.name.clone().unwrap_or_default()))
                );
                let ports = d.service.spec.as_ref().and_then(|s| s.ports.clone()).unwrap_or_default();
                prop_assert!(ports.iter().all(|p| p.node_port.is_none()));
                prop_assert!(!service_needs_update(&d.service, &d.service.clone()));
                match (&d.kind, &d.endpoints) {
                    (MirrorKind::RemoteDiscovery, None) => {}
                    (MirrorKind::Gateway, Some(e)) => {
                        prop_assert!(!endpoints_needs_update(e, &e.clone()));
                        let subset = e.subsets.clone().unwrap_or_default();
                        let ep_ports = subset[0].ports.clone().unwrap_or_default();
                        prop_assert_eq!(ep_ports.len(), ports.len());
                        prop_assert!(ep_ports.iter().all(|p| p.port == 4143));
                        prop_assert_eq!(ips(e, alive).len(), 2);
                        prop_assert_eq!(ips(e, !alive).len(), 0);
                    }
                    other => prop_assert!(false, "unexpected {:?}", other),
                }
            }
        }
    }
}
