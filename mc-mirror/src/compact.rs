//! Compact forms of the watched objects: only the fields the reconciler reads, in few
//! allocations, converted back to k8s-openapi objects for the one key being reconciled.
//!
//! What each form keeps, and why:
//! - [`RemoteService`] (a remote exported Service): labels (export selectors, copied labels),
//!   the annotations mc-core copies onto the mirror for this Link (the others: the Link's
//!   `excludedAnnotations`, `mirror.linkerd.io` keys, topology annotations, are dropped, as
//!   `copy_annotations` would drop them anyway), the
//!   resourceVersion (written into the mirror's annotation), the ports (name, protocol, port,
//!   targetPort, appProtocol) and headlessness (`clusterIP: None`). Status, uid, timestamps,
//!   selector, nodePorts and every other spec field are dropped.
//! - remote Endpoints are kept as mc-core's [`RemoteEndpoints`] summary (ready or not, and the
//!   hostnames of ready addresses): that is all `desired_mirror` reads.
//! - [`LocalService`] and [`LocalEndpoints`] (our mirrors, in the source cluster): everything
//!   mc-core's comparison reads (all labels and annotations, ports, selector, type, clusterIP;
//!   Endpoints subsets with ip, hostname, readiness and ports), everything a key or ownership
//!   decision reads (labels, annotations), and everything an update or a delete carries
//!   (resourceVersion, uid, finalizers, ownerReferences, clusterIP(s), ipFamilies,
//!   ipFamilyPolicy).
//!
//! Strings that take a few well-known values (protocols, types, IP families) are not
//! allocated; labels and annotations are one string plus an offset table per map instead of a
//! B-tree of separately allocated strings.

use std::borrow::Cow;
use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{
    EndpointAddress, EndpointPort, EndpointSubset, Endpoints, Service, ServicePort, ServiceSpec,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use mc_core::labels;
use mc_core::mirror::copy_annotations;

/// A string that is usually one of a few well-known values (kept without an allocation).
type Text = Cow<'static, str>;

/// Values that need no allocation in a [`Text`] and take two bytes in [`Strings`]: the values
/// of enumerated fields, and the label and annotation keys every mirror carries.
const KNOWN: [&str; 32] = [
    "TCP",
    "UDP",
    "SCTP",
    "IPv4",
    "IPv6",
    "SingleStack",
    "PreferDualStack",
    "RequireDualStack",
    "ClusterIP",
    "NodePort",
    "LoadBalancer",
    "ExternalName",
    "None",
    "http",
    "kubernetes.io/h2c",
    "true",
    labels::EXPORTED,
    labels::EXPORTED_REMOTE_DISCOVERY_VALUE,
    labels::FEDERATED,
    labels::MIRRORED_SERVICE,
    labels::CLUSTER_NAME,
    labels::REMOTE_SVC_FQ_NAME,
    labels::REMOTE_RESOURCE_VERSION,
    labels::REMOTE_GATEWAY_IDENTITY,
    labels::MIRRORED_GATEWAY,
    labels::HEADLESS_MIRROR_SVC_NAME,
    labels::ORIGINAL_NAME,
    labels::REMOTE_DISCOVERY,
    labels::REMOTE_SERVICE,
    labels::OPAQUE_PORTS,
    labels::GATEWAY_PORT_NAME,
    labels::PROBE_PORT_NAME,
];

/// The characters that stand for [`KNOWN`] strings in [`Strings`], by index.
const KNOWN_CODES: &str = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdef";

fn text(s: &str) -> Text {
    match KNOWN.iter().find(|k| **k == s) {
        Some(k) => Cow::Borrowed(k),
        None => Cow::Owned(s.to_owned()),
    }
}

fn boxed(s: Option<&String>) -> Option<Box<str>> {
    s.map(|s| s.as_str().into())
}

fn string(s: Option<&str>) -> Option<String> {
    s.map(str::to_owned)
}

/// A sequence of optional strings in one allocation: each is written as `<length>:<text>`
/// (length in bytes, decimal), a [`KNOWN`] one as `#` and its code, a missing one as `-`. The
/// lengths and codes are ASCII, so the whole stays valid UTF-8 and every slice falls on the
/// boundaries of the original strings.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct Strings(Box<str>);

impl Strings {
    /// The sequence of `items`.
    pub(crate) fn new<'a>(items: impl IntoIterator<Item = Option<&'a str>>) -> Strings {
        let mut text = String::new();
        for item in items {
            let known = item.and_then(|s| KNOWN.iter().position(|k| *k == s));
            let code = known.and_then(|i| KNOWN_CODES.get(i..=i));
            match (item, code) {
                (None, _) => text.push('-'),
                (Some(_), Some(code)) => {
                    text.push('#');
                    text.push_str(code);
                }
                (Some(s), None) => {
                    text.push_str(&s.len().to_string());
                    text.push(':');
                    text.push_str(s);
                }
            }
        }
        Strings(text.into_boxed_str())
    }

    /// The strings in order.
    pub(crate) fn iter(&self) -> impl Iterator<Item = Option<&str>> {
        let text: &str = &self.0;
        let mut rest = text;
        std::iter::from_fn(move || {
            if rest.is_empty() {
                return None;
            }
            if let Some(after) = rest.strip_prefix('-') {
                rest = after;
                return Some(None);
            }
            if let Some(after) = rest.strip_prefix('#') {
                let code = after.get(..1)?;
                let known = KNOWN.get(KNOWN_CODES.find(code)?)?;
                rest = after.get(1..).unwrap_or_default();
                return Some(Some(*known));
            }
            // Written by `new`: digits, ':', then that many bytes. Anything else ends the
            // sequence rather than panicking.
            let (len, after) = rest.split_once(':')?;
            let len: usize = len.parse().ok()?;
            let item = after.get(..len)?;
            rest = after.get(len..).unwrap_or_default();
            Some(Some(item))
        })
    }

    /// The `i`-th string.
    pub(crate) fn get(&self, i: usize) -> Option<&str> {
        self.iter().nth(i).flatten()
    }
}

/// Labels or annotations: the pairs of a map in key order, in one allocation ([`Strings`]).
/// An empty map and no map are the same (mc-core's comparison treats them alike).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct Pairs(Strings);

impl Pairs {
    /// The pairs of `map` for which `keep(key)` holds.
    pub(crate) fn filtered(
        map: Option<&BTreeMap<String, String>>,
        keep: impl Fn(&str) -> bool,
    ) -> Pairs {
        let pairs = map.into_iter().flatten().filter(|(k, _)| keep(k));
        Pairs(Strings::new(
            pairs.flat_map(|(k, v)| [Some(k.as_str()), Some(v.as_str())]),
        ))
    }

    /// All pairs of `map`.
    pub(crate) fn of(map: Option<&BTreeMap<String, String>>) -> Pairs {
        Pairs::filtered(map, |_| true)
    }

    /// The pairs in key order.
    pub(crate) fn iter(&self) -> impl Iterator<Item = (&str, &str)> {
        let mut items = self.0.iter().map(Option::unwrap_or_default);
        std::iter::from_fn(move || Some((items.next()?, items.next()?)))
    }

    /// The value of `key`.
    pub(crate) fn get(&self, key: &str) -> Option<&str> {
        self.iter().find(|(k, _)| *k == key).map(|(_, v)| v)
    }

    /// The map again; `None` when empty.
    pub(crate) fn to_map(&self) -> Option<BTreeMap<String, String>> {
        let map: BTreeMap<String, String> = self
            .iter()
            .map(|(k, v)| (k.to_owned(), v.to_owned()))
            .collect();
        (!map.is_empty()).then_some(map)
    }
}

/// A Service port's `targetPort` (a name is kept in [`Ports::texts`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum TargetPort {
    Absent,
    Number(i32),
    Name,
}

/// Service ports: what mirroring and comparison read (nodePort is dropped). Per port, its
/// number and targetPort in `numbers`, and name, protocol, appProtocol and targetPort name in
/// `texts` (four strings per port): two allocations for any number of ports.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Ports {
    numbers: Box<[(i32, TargetPort)]>,
    texts: Strings,
}

impl Ports {
    fn of(ports: &[ServicePort]) -> Ports {
        let numbers = ports
            .iter()
            .map(|p| {
                let target = match &p.target_port {
                    None => TargetPort::Absent,
                    Some(IntOrString::Int(n)) => TargetPort::Number(*n),
                    Some(IntOrString::String(_)) => TargetPort::Name,
                };
                (p.port, target)
            })
            .collect();
        let texts = Strings::new(ports.iter().flat_map(|p| {
            let target = match &p.target_port {
                Some(IntOrString::String(s)) => Some(s.as_str()),
                _ => None,
            };
            [
                p.name.as_deref(),
                p.protocol.as_deref(),
                p.app_protocol.as_deref(),
                target,
            ]
        }));
        Ports { numbers, texts }
    }

    fn to_ports(&self) -> Vec<ServicePort> {
        let mut texts = self.texts.iter();
        let mut next = || string(texts.next().flatten());
        self.numbers
            .iter()
            .map(|(port, target)| {
                let (name, protocol, app_protocol, target_name) = (next(), next(), next(), next());
                ServicePort {
                    name,
                    protocol,
                    app_protocol,
                    port: *port,
                    target_port: match target {
                        TargetPort::Absent => None,
                        TargetPort::Number(n) => Some(IntOrString::Int(*n)),
                        TargetPort::Name => {
                            Some(IntOrString::String(target_name.unwrap_or_default()))
                        }
                    },
                    ..ServicePort::default()
                }
            })
            .collect()
    }
}

fn ports_of(spec: Option<&ServiceSpec>) -> Option<Ports> {
    spec.and_then(|s| s.ports.as_deref()).map(Ports::of)
}

fn to_ports(ports: Option<&Ports>) -> Option<Vec<ServicePort>> {
    ports.map(Ports::to_ports)
}

/// A remote exported Service, reduced to what `desired_mirror` reads for one Link.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct RemoteService {
    resource_version: Option<Box<str>>,
    labels: Pairs,
    /// Only the annotations the Link copies onto mirrors.
    annotations: Pairs,
    ports: Option<Ports>,
    headless: bool,
}

impl RemoteService {
    /// The compact form of `svc` for a Link that excludes `excluded_annotations`.
    pub(crate) fn of(svc: &Service, excluded_annotations: &[String]) -> RemoteService {
        let copied = copy_annotations(svc.metadata.annotations.as_ref(), excluded_annotations);
        let spec = svc.spec.as_ref();
        RemoteService {
            resource_version: boxed(svc.metadata.resource_version.as_ref()),
            labels: Pairs::of(svc.metadata.labels.as_ref()),
            annotations: Pairs::of(Some(&copied)),
            ports: ports_of(spec),
            headless: spec.and_then(|s| s.cluster_ip.as_deref()) == Some("None"),
        }
    }

    /// A Service with the fields `desired_mirror` reads, named `namespace/name`.
    pub(crate) fn to_service(&self, namespace: &str, name: &str) -> Service {
        Service {
            metadata: ObjectMeta {
                name: Some(name.to_owned()),
                namespace: Some(namespace.to_owned()),
                resource_version: string(self.resource_version.as_deref()),
                labels: self.labels.to_map(),
                annotations: self.annotations.to_map(),
                ..ObjectMeta::default()
            },
            spec: Some(ServiceSpec {
                ports: to_ports(self.ports.as_ref()),
                cluster_ip: self.headless.then(|| "None".to_owned()),
                ..ServiceSpec::default()
            }),
            status: None,
        }
    }
}

/// The metadata of a local object that keys, ownership, comparison, updates and deletes read.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct Meta {
    /// resourceVersion and uid.
    ids: Strings,
    /// All labels.
    pub(crate) labels: Pairs,
    /// All annotations.
    annotations: Pairs,
    finalizers: Option<Box<[Box<str>]>>,
    owner_references: Option<Box<[OwnerReference]>>,
}

impl Meta {
    fn of(m: &ObjectMeta) -> Meta {
        Meta {
            ids: Strings::new([m.resource_version.as_deref(), m.uid.as_deref()]),
            labels: Pairs::of(m.labels.as_ref()),
            annotations: Pairs::of(m.annotations.as_ref()),
            finalizers: m
                .finalizers
                .as_ref()
                .map(|f| f.iter().map(|s| s.as_str().into()).collect()),
            owner_references: m.owner_references.as_ref().map(|o| o.as_slice().into()),
        }
    }

    /// The metadata of `namespace/name`.
    pub(crate) fn to_meta(&self, namespace: &str, name: &str) -> ObjectMeta {
        ObjectMeta {
            name: Some(name.to_owned()),
            namespace: Some(namespace.to_owned()),
            resource_version: string(self.ids.get(0)),
            uid: string(self.ids.get(1)),
            labels: self.labels.to_map(),
            annotations: self.annotations.to_map(),
            finalizers: self
                .finalizers
                .as_ref()
                .map(|f| f.iter().map(|s| s.to_string()).collect()),
            owner_references: self.owner_references.as_ref().map(|o| o.to_vec()),
            ..ObjectMeta::default()
        }
    }
}

/// `spec.clusterIPs`, which is nearly always `[spec.clusterIP]`.
#[derive(Clone, Debug, PartialEq, Eq)]
enum ClusterIps {
    Absent,
    SameAsClusterIp,
    Other(Box<[Box<str>]>),
}

/// A local Service (mirror, endpoint mirror or probe Service).
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct LocalService {
    /// Its metadata.
    pub(crate) meta: Meta,
    ports: Option<Ports>,
    selector: Pairs,
    type_: Option<Text>,
    cluster_ip: Option<Text>,
    cluster_ips: ClusterIps,
    ip_families: Option<Box<[Text]>>,
    ip_family_policy: Option<Text>,
}

impl LocalService {
    /// The compact form of `svc`.
    pub(crate) fn of(svc: &Service) -> LocalService {
        let spec = svc.spec.as_ref();
        let cluster_ip = spec.and_then(|s| s.cluster_ip.as_deref());
        let cluster_ips = match spec.and_then(|s| s.cluster_ips.as_deref()) {
            None => ClusterIps::Absent,
            Some([one]) if Some(one.as_str()) == cluster_ip => ClusterIps::SameAsClusterIp,
            Some(ips) => ClusterIps::Other(ips.iter().map(|s| s.as_str().into()).collect()),
        };
        LocalService {
            meta: Meta::of(&svc.metadata),
            ports: ports_of(spec),
            selector: Pairs::of(spec.and_then(|s| s.selector.as_ref())),
            type_: spec.and_then(|s| s.type_.as_deref()).map(text),
            cluster_ip: cluster_ip.map(text),
            cluster_ips,
            ip_families: spec
                .and_then(|s| s.ip_families.as_ref())
                .map(|f| f.iter().map(|s| text(s)).collect()),
            ip_family_policy: spec.and_then(|s| s.ip_family_policy.as_deref()).map(text),
        }
    }

    /// Whether it is headless (`clusterIP: None`).
    pub(crate) fn is_headless(&self) -> bool {
        self.cluster_ip.as_deref() == Some("None")
    }

    /// The Service again, named `namespace/name`, with every field kept.
    pub(crate) fn to_service(&self, namespace: &str, name: &str) -> Service {
        let cluster_ip = string(self.cluster_ip.as_deref());
        let cluster_ips = match &self.cluster_ips {
            ClusterIps::Absent => None,
            ClusterIps::SameAsClusterIp => cluster_ip.clone().map(|ip| vec![ip]),
            ClusterIps::Other(ips) => Some(ips.iter().map(|s| s.to_string()).collect()),
        };
        Service {
            metadata: self.meta.to_meta(namespace, name),
            spec: Some(ServiceSpec {
                ports: to_ports(self.ports.as_ref()),
                selector: self.selector.to_map(),
                type_: string(self.type_.as_deref()),
                cluster_ip,
                cluster_ips,
                ip_families: self
                    .ip_families
                    .as_ref()
                    .map(|f| f.iter().map(|s| s.to_string()).collect()),
                ip_family_policy: string(self.ip_family_policy.as_deref()),
                ..ServiceSpec::default()
            }),
            status: None,
        }
    }
}

/// An Endpoints address: ip and hostname.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Address {
    ip: Box<str>,
    hostname: Option<Box<str>>,
}

/// An Endpoints port: name, port and protocol.
#[derive(Clone, Debug, PartialEq, Eq)]
struct EndpointsPort {
    name: Option<Box<str>>,
    protocol: Option<Text>,
    port: i32,
}

/// An Endpoints subset.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Subset {
    ready: Box<[Address]>,
    not_ready: Box<[Address]>,
    ports: Box<[EndpointsPort]>,
}

fn addresses_of(a: Option<&Vec<EndpointAddress>>) -> Box<[Address]> {
    a.into_iter()
        .flatten()
        .map(|a| Address {
            ip: a.ip.as_str().into(),
            hostname: boxed(a.hostname.as_ref()),
        })
        .collect()
}

fn to_addresses(a: &[Address]) -> Option<Vec<EndpointAddress>> {
    (!a.is_empty()).then(|| {
        a.iter()
            .map(|a| EndpointAddress {
                ip: a.ip.to_string(),
                hostname: string(a.hostname.as_deref()),
                ..EndpointAddress::default()
            })
            .collect()
    })
}

/// Local Endpoints (of a mirror, an endpoint mirror or the probe Service).
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct LocalEndpoints {
    /// Its metadata.
    pub(crate) meta: Meta,
    subsets: Box<[Subset]>,
}

impl LocalEndpoints {
    /// The compact form of `ep`.
    pub(crate) fn of(ep: &Endpoints) -> LocalEndpoints {
        let subsets = ep
            .subsets
            .iter()
            .flatten()
            .map(|s| Subset {
                ready: addresses_of(s.addresses.as_ref()),
                not_ready: addresses_of(s.not_ready_addresses.as_ref()),
                ports: s
                    .ports
                    .iter()
                    .flatten()
                    .map(|p| EndpointsPort {
                        name: boxed(p.name.as_ref()),
                        protocol: p.protocol.as_deref().map(text),
                        port: p.port,
                    })
                    .collect(),
            })
            .collect();
        LocalEndpoints {
            meta: Meta::of(&ep.metadata),
            subsets,
        }
    }

    /// The Endpoints again, named `namespace/name`.
    pub(crate) fn to_endpoints(&self, namespace: &str, name: &str) -> Endpoints {
        let subsets: Vec<EndpointSubset> = self
            .subsets
            .iter()
            .map(|s| EndpointSubset {
                addresses: to_addresses(&s.ready),
                not_ready_addresses: to_addresses(&s.not_ready),
                ports: (!s.ports.is_empty()).then(|| {
                    s.ports
                        .iter()
                        .map(|p| EndpointPort {
                            name: string(p.name.as_deref()),
                            protocol: string(p.protocol.as_deref()),
                            port: p.port,
                            ..EndpointPort::default()
                        })
                        .collect()
                }),
            })
            .collect();
        Endpoints {
            metadata: self.meta.to_meta(namespace, name),
            subsets: (!subsets.is_empty()).then_some(subsets),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use mc_core::mirror::{
        RemoteEndpoints, endpoints_needs_update, ownership, service_needs_recreate,
        service_needs_update,
    };
    use mc_core::naming::remote_name;

    fn map(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn strings_keep_every_string_and_every_absence() {
        let items = [
            Some("a"),
            None,
            Some(""),
            Some("12:3-"),
            Some("é ü"),
            None,
            Some("x".repeat(300).leak() as &str),
        ];
        let s = Strings::new(items);
        assert_eq!(s.iter().collect::<Vec<_>>(), items);
        assert_eq!(s.get(3), Some("12:3-"));
        assert_eq!(s.get(1), None);
        assert_eq!(s.get(7), None);
        assert_eq!(Strings::new([]).iter().count(), 0);
        // Well-known strings take two bytes and read back as they were.
        let known = [
            Some("TCP"),
            Some(labels::CLUSTER_NAME),
            Some("TCPx"),
            Some("#A"),
        ];
        let s = Strings::new(known);
        assert_eq!(s.iter().collect::<Vec<_>>(), known);
        assert!(s.0.starts_with("#A#"), "{}", s.0);
        assert_eq!(KNOWN.len(), KNOWN_CODES.len());
        // Text that `new` did not write ends the sequence instead of panicking.
        let broken = Strings("5:ab".into());
        assert_eq!(broken.iter().count(), 0);
        let broken = Strings("1:a7".into());
        assert_eq!(broken.iter().collect::<Vec<_>>(), [Some("a")]);
    }

    #[test]
    fn pairs_keep_every_entry_in_order() {
        let m = map(&[("b", "2"), ("a", ""), ("", "x"), ("c/d", "é ü")]);
        let p = Pairs::of(Some(&m));
        assert_eq!(p.to_map(), Some(m.clone()));
        assert_eq!(
            p.iter().collect::<Vec<_>>(),
            [("", "x"), ("a", ""), ("b", "2"), ("c/d", "é ü")]
        );
        assert_eq!(p.get("a"), Some(""));
        assert_eq!(p.get("b"), Some("2"));
        assert_eq!(p.get("z"), None);
        assert_eq!(Pairs::of(None).to_map(), None);
        assert_eq!(Pairs::of(Some(&BTreeMap::new())).to_map(), None);
        let f = Pairs::filtered(Some(&m), |k| k != "b");
        assert_eq!(f.get("b"), None);
        assert_eq!(f.iter().count(), 3);
    }

    fn port(name: &str, port: i32, target: Option<IntOrString>) -> ServicePort {
        ServicePort {
            name: Some(name.into()),
            protocol: Some("TCP".into()),
            app_protocol: Some("grpc".into()),
            port,
            target_port: target,
            node_port: Some(30080),
        }
    }

    /// A mirror as the API server returns it.
    fn mirror() -> Service {
        Service {
            metadata: ObjectMeta {
                name: Some("web-east".into()),
                namespace: Some("shop".into()),
                resource_version: Some("4711".into()),
                uid: Some("5d2b8f7a-0000-4000-8000-000000000001".into()),
                generation: Some(1),
                labels: Some(map(&[
                    (mc_core::labels::MIRRORED_SERVICE, "true"),
                    (mc_core::labels::CLUSTER_NAME, "east"),
                    ("app", "web"),
                ])),
                annotations: Some(map(&[
                    (
                        mc_core::labels::REMOTE_SVC_FQ_NAME,
                        "web.shop.svc.cluster.local",
                    ),
                    (mc_core::labels::ORIGINAL_NAME, "web"),
                    (
                        "kubectl.kubernetes.io/last-applied-configuration",
                        "{\"big\":1}",
                    ),
                ])),
                finalizers: Some(vec!["example.com/keep".into()]),
                ..ObjectMeta::default()
            },
            spec: Some(ServiceSpec {
                ports: Some(vec![
                    port("http", 80, Some(IntOrString::Int(8080))),
                    port("admin", 9990, Some(IntOrString::String("admin".into()))),
                    port("raw", 7, None),
                ]),
                type_: Some("ClusterIP".into()),
                cluster_ip: Some("10.96.0.7".into()),
                cluster_ips: Some(vec!["10.96.0.7".into()]),
                ip_families: Some(vec!["IPv4".into()]),
                ip_family_policy: Some("SingleStack".into()),
                session_affinity: Some("None".into()),
                ..ServiceSpec::default()
            }),
            status: Some(Default::default()),
        }
    }

    /// `s` with only the fields the compact form keeps.
    fn kept(mut s: Service) -> Service {
        let m = &mut s.metadata;
        m.generation = None;
        let spec = s.spec.get_or_insert_with(Default::default);
        spec.session_affinity = None;
        for p in spec.ports.iter_mut().flatten() {
            p.node_port = None;
        }
        s.status = None;
        s
    }

    #[test]
    fn local_services_convert_back_to_every_field_kept() {
        let s = mirror();
        let c = LocalService::of(&s);
        assert_eq!(c.to_service("shop", "web-east"), kept(s.clone()));
        assert!(!c.is_headless());
        // clusterIPs that are not just [clusterIP] are kept as they are.
        let mut dual = s.clone();
        if let Some(spec) = dual.spec.as_mut() {
            spec.cluster_ips = Some(vec!["10.96.0.7".into(), "fd00::7".into()]);
            spec.ip_families = Some(vec!["IPv4".into(), "IPv6".into()]);
        }
        assert_eq!(
            LocalService::of(&dual).to_service("shop", "web-east"),
            kept(dual)
        );
        let mut bare = Service::default();
        bare.metadata.name = Some("x".into());
        bare.metadata.namespace = Some("y".into());
        let back = LocalService::of(&bare).to_service("y", "x");
        assert_eq!(back.metadata, bare.metadata);
        assert_eq!(back.spec, Some(ServiceSpec::default()));
    }

    #[test]
    fn comparisons_on_compact_mirrors_match_comparisons_on_full_ones() {
        let actual = mirror();
        let back = LocalService::of(&actual).to_service("shop", "web-east");
        // The desired mirror equal to what exists, then one compared field changed at a time.
        let desired = {
            let mut d = kept(actual.clone());
            d.metadata.annotations.iter_mut().for_each(|a| {
                a.remove("kubectl.kubernetes.io/last-applied-configuration");
            });
            d
        };
        // Each edit changes one field the comparison reads (metadata, spec or the first port).
        type Edit = fn(&mut ObjectMeta, &mut ServiceSpec, &mut ServicePort);
        let edits: [(&str, Edit); 9] = [
            ("nothing", |_, _, _| {}),
            ("label", |m, _, _| set(&mut m.labels, "app", "api")),
            ("annotation", |m, _, _| set(&mut m.annotations, "x", "y")),
            ("port", |_, _, p| p.port += 1),
            ("appProtocol", |_, _, p| p.app_protocol = None),
            ("targetPort", |_, _, p| {
                p.target_port = Some(IntOrString::Int(1))
            }),
            ("selector", |_, s, _| set(&mut s.selector, "app", "web")),
            ("type", |_, s, _| s.type_ = Some("NodePort".into())),
            ("headless", |_, s, _| s.cluster_ip = Some("None".into())),
        ];
        fn set(m: &mut Option<BTreeMap<String, String>>, k: &str, v: &str) {
            m.get_or_insert_with(Default::default)
                .insert(k.into(), v.into());
        }
        let edited = |edit: Edit| {
            let mut d = desired.clone();
            let spec = d.spec.get_or_insert_with(Default::default);
            let mut ports = spec.ports.take().unwrap_or_default();
            edit(&mut d.metadata, spec, &mut ports[0]);
            spec.ports = Some(ports);
            d
        };
        for (what, edit) in edits {
            let d = edited(edit);
            assert_eq!(
                service_needs_update(&d, &back),
                service_needs_update(&d, &actual),
                "{what}"
            );
            assert_eq!(
                service_needs_recreate(&d, &back),
                service_needs_recreate(&d, &actual),
                "{what}"
            );
            assert_eq!(service_needs_update(&d, &back), what != "nothing", "{what}");
        }
        // Keys and ownership read the same labels and annotations.
        assert_eq!(
            remote_name(&back.metadata, "east"),
            Some(("shop".into(), "web".into()))
        );
        assert_eq!(
            ownership(&back.metadata, "east"),
            ownership(&actual.metadata, "east")
        );
        // A change made on the server to a compared field is seen through the cache.
        let mut changed = actual.clone();
        changed.metadata.labels.iter_mut().for_each(|l| l.clear());
        let back = LocalService::of(&changed).to_service("shop", "web-east");
        assert!(service_needs_update(&desired, &back));
        assert_eq!(
            ownership(&back.metadata, "east"),
            mc_core::mirror::Ownership::Foreign
        );
    }

    fn address(ip: &str, host: Option<&str>) -> EndpointAddress {
        EndpointAddress {
            ip: ip.into(),
            hostname: host.map(String::from),
            node_name: Some("node-1".into()),
            ..EndpointAddress::default()
        }
    }

    fn endpoints() -> Endpoints {
        Endpoints {
            metadata: ObjectMeta {
                name: Some("web-east".into()),
                namespace: Some("shop".into()),
                resource_version: Some("4712".into()),
                uid: Some("uid-2".into()),
                labels: Some(map(&[(mc_core::labels::CLUSTER_NAME, "east")])),
                annotations: Some(map(&[(mc_core::labels::REMOTE_GATEWAY_IDENTITY, "gw")])),
                ..ObjectMeta::default()
            },
            subsets: Some(vec![
                EndpointSubset {
                    addresses: Some(vec![address("192.0.2.1", None)]),
                    not_ready_addresses: Some(vec![address("192.0.2.2", Some("web-0"))]),
                    ports: Some(vec![EndpointPort {
                        name: Some("http".into()),
                        port: 4143,
                        protocol: Some("TCP".into()),
                        app_protocol: Some("http".into()),
                    }]),
                },
                EndpointSubset {
                    addresses: Some(vec![address("192.0.2.3", None)]),
                    not_ready_addresses: None,
                    ports: None,
                },
            ]),
        }
    }

    #[test]
    fn local_endpoints_compare_as_the_full_object() {
        let actual = endpoints();
        let back = LocalEndpoints::of(&actual).to_endpoints("shop", "web-east");
        assert_eq!(back.metadata, actual.metadata);
        assert!(!endpoints_needs_update(&actual, &back));
        assert!(!endpoints_needs_update(&back, &actual));
        let mut moved = actual.clone();
        moved.subsets.iter_mut().flatten().for_each(|s| {
            std::mem::swap(&mut s.addresses, &mut s.not_ready_addresses);
        });
        assert!(endpoints_needs_update(&moved, &back), "readiness");
        let mut host = actual.clone();
        if let Some(a) = host.subsets.as_mut().and_then(|s| s[0].addresses.as_mut()) {
            a[0].hostname = Some("web-1".into());
        }
        assert!(endpoints_needs_update(&host, &back), "hostname");
        let mut port = actual.clone();
        if let Some(p) = port.subsets.as_mut().and_then(|s| s[0].ports.as_mut()) {
            p[0].port = 4144;
        }
        assert!(endpoints_needs_update(&port, &back), "port");
        let empty = Endpoints {
            metadata: actual.metadata.clone(),
            subsets: None,
        };
        assert!(endpoints_needs_update(&empty, &back), "emptied");
        let back_empty = LocalEndpoints::of(&empty).to_endpoints("shop", "web-east");
        assert_eq!(back_empty, empty);
    }

    #[test]
    fn remote_services_give_the_same_desired_mirror() {
        use mc_core::link::{LinkSpec, ProbeSpec};
        use mc_core::mirror::{Gateway, MirrorContext, desired_mirror};
        use mc_core::selector::Selector;
        let sel = |s: &str| s.parse::<Selector>().ok().map(|s| s.to_label_selector());
        let spec = LinkSpec {
            target_cluster_name: Some("east".into()),
            target_cluster_domain: Some("cluster.local".into()),
            gateway_address: Some("192.0.2.10".into()),
            gateway_port: Some("4143".into()),
            gateway_identity: Some("gw.east".into()),
            probe_spec: Some(ProbeSpec {
                path: Some("/ready".into()),
                port: Some("4191".into()),
                period: Some("3s".into()),
                ..ProbeSpec::default()
            }),
            selector: sel("mirror.linkerd.io/exported=true"),
            remote_discovery_selector: sel("mirror.linkerd.io/exported=remote-discovery"),
            excluded_annotations: vec!["secret.example.com/*".into()],
            ..LinkSpec::default()
        };
        let link = spec.validate().unwrap();
        let gw = Gateway::new(["192.0.2.10".parse().unwrap()], 4143, None);
        let mctx = MirrorContext {
            link: &link,
            gateway: Some(&gw),
            alive: true,
            headless_enabled: true,
        };
        let mut remote = kept(mirror());
        remote.metadata.name = Some("web".into());
        remote.metadata.labels = Some(map(&[
            ("mirror.linkerd.io/exported", "true"),
            ("app", "web"),
        ]));
        remote.metadata.annotations = Some(map(&[
            ("kubectl.kubernetes.io/last-applied-configuration", "{}"),
            ("secret.example.com/token", "x"),
            ("config.linkerd.io/opaque-ports", "7"),
            ("team", "a"),
        ]));
        for (cluster_ip, export) in [
            ("10.96.0.9", "true"),
            ("None", "true"),
            ("10.96.0.9", "remote-discovery"),
        ] {
            let mut r = remote.clone();
            r.spec.iter_mut().for_each(|s| {
                s.cluster_ip = Some(cluster_ip.into());
            });
            r.metadata.labels.iter_mut().for_each(|l| {
                l.insert("mirror.linkerd.io/exported".into(), export.into());
            });
            let compact = RemoteService::of(&r, &link.excluded_annotations);
            let back = compact.to_service("shop", "web");
            for eps in [
                RemoteEndpoints::Missing,
                RemoteEndpoints::Empty,
                RemoteEndpoints::Ready {
                    hostnames: vec!["web-0".into()],
                },
            ] {
                let full = desired_mirror(&r, &eps, &mctx).unwrap();
                let small = desired_mirror(&back, &eps, &mctx).unwrap();
                assert_eq!(small, full, "{cluster_ip} {export} {eps:?}");
            }
            // Annotations the Link never copies are not kept (kubectl's is copied, as upstream).
            assert_eq!(
                back.metadata
                    .annotations
                    .unwrap_or_default()
                    .keys()
                    .map(String::as_str)
                    .collect::<Vec<_>>(),
                [
                    "config.linkerd.io/opaque-ports",
                    "kubectl.kubernetes.io/last-applied-configuration",
                    "team"
                ]
            );
        }
        // An invalid remote stays invalid.
        let mut no_ports = remote.clone();
        no_ports.spec.iter_mut().for_each(|s| s.ports = None);
        let back = RemoteService::of(&no_ports, &[]).to_service("shop", "web");
        assert!(desired_mirror(&back, &RemoteEndpoints::Empty, &mctx).is_err());
    }
}
