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
                let mut a = Map::new();
                insert(&mut a, labels::REMOTE_RESOURCE_VERSION, version);
                insert(
                    &mut a,
                    labels::REMOTE_SVC_FQ_NAME,
                    &format!("{host}.{fq_name}"),
                );
                insert(&mut a, labels::ORIGINAL_NAME, svc.name);
                let s = service(
                    &host_name.name,
                    svc.namespace,
                    l.clone(),
                    a.clone(),
                    ports.clone(),
                    false,
                );
                let e = gateway.endpoints(&host_name.name, svc.namespace, l, a, &ports, true);
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
        subsets: (!addresses.is_empty()).then(|| {
            vec![EndpointSubset {
                addresses: Some(addresses),
                not_ready_addresses: None,
                ports: Some(ports),
            }]
        }),
    }
}

/// The probe Service `probe-<cluster>` in `namespace` (the multicluster namespace): labels
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
    let addresses = addresses(&gateway.ips);
    Some(Endpoints {
        metadata: meta(
            &probe_service_name(&link.cluster_name).name,
            namespace,
            probe_labels(link),
            annotations,
        ),
        subsets: (!addresses.is_empty()).then(|| {
            vec![EndpointSubset {
                addresses: Some(addresses),
                not_ready_addresses: None,
                ports: Some(vec![port]),
            }]
        }),
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
        let subsets = (remote_ready && !self.ips.is_empty()).then(|| {
            let addresses = addresses(self.ips);
            let ports = ports
                .iter()
                .map(|p| EndpointPort {
                    name: p.name.clone(),
                    protocol: p.protocol.clone(),
                    port: i32::from(self.port),
                    ..EndpointPort::default()
                })
                .collect();
            let (ready, not_ready) = if self.alive {
                (Some(addresses), None)
            } else {
                (None, Some(addresses))
            };
            vec![EndpointSubset {
                addresses: ready,
                not_ready_addresses: not_ready,
                ports: Some(ports),
            }]
        });
        Endpoints {
            metadata: meta(name, namespace, labels, annotations),
            subsets,
        }
    }
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
fn mirror_port(p: &ServicePort) -> ServicePort {
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
