//! The source-side egress: how unmeshed Pods reach mirrored Services.
//!
//! In `egress` mode a mirror's Endpoints point at the local egress Pods instead of the remote
//! gateway. Each mirrored service port gets a port of its own on the egress (from
//! [`PORT_RANGE`]), so mirrors never collide however many share a port number. The mirror
//! controllers record those ports, with where each one leads, in one ConfigMap
//! ([`ROUTES_CONFIG_MAP`]) that the egress watches: the [`RouteTable`]. Every controller
//! writes the table with optimistic concurrency, so two Links never take the same port.
//!
//! Everything here is pure: parsing and rendering the table, allocating ports, rewriting
//! gateway-mode Endpoints into egress-mode ones, and choosing a Link's mode.

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;
use std::ops::RangeInclusive;

use k8s_openapi::api::core::v1::{
    EndpointAddress, EndpointPort, EndpointSubset, Endpoints, Service, ServicePort,
};
use serde::{Deserialize, Serialize};

use crate::labels;
use crate::{Error, Result};

mod federated;

pub use federated::{FEDERATED_OWNER, LOCAL_MEMBER, Member, federated_endpoints};

/// Name of the egress's ServiceAccount, Deployment and Service (in the multicluster namespace).
/// Its identity is `<this>.<namespace>.serviceaccount.identity.<linkerd ns>.<trust domain>`.
pub const EGRESS_NAME: &str = "linkerd-multicluster-egress";
/// Name of the ConfigMap (in the multicluster namespace) holding the [`RouteTable`].
pub const ROUTES_CONFIG_MAP: &str = "mc-egress-routes";
/// The ports the egress listens on, one per mirrored service port.
pub const PORT_RANGE: RangeInclusive<u16> = 20000..=32767;

/// Where one egress port leads: a service port of a remote cluster, through its gateway.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Route {
    /// The egress port (from [`PORT_RANGE`]).
    pub listen: u16,
    /// The Link (target cluster name) the route belongs to; only its controller changes it.
    pub link: String,
    /// The authority sent in the transport header: `<svc>.<ns>.svc.<domain>:<port>`.
    pub target: String,
    /// The remote gateway's addresses, `ip:port`, in the order to try them.
    pub gateways: Vec<String>,
    /// The identity the remote gateway must present.
    pub identity: String,
    /// Federated routes only ([`Route::is_federated`]): the members the egress balances new
    /// connections over, by cluster name ([`LOCAL_MEMBER`] for this cluster). `target`,
    /// `gateways` and `identity` above then only name the route in logs.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub members: BTreeMap<String, Member>,
}

impl Route {
    /// Whether this is the route of a federated Service (`<svc>-federated`), written member by
    /// member by every Link's controller (its `link` is [`FEDERATED_OWNER`]).
    pub fn is_federated(&self) -> bool {
        self.link == FEDERATED_OWNER
    }
}

/// What a controller wants for one mirrored service port; the table adds the port.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RouteSpec {
    /// The Link (target cluster name).
    pub link: String,
    /// `<svc>.<ns>.svc.<domain>:<port>`.
    pub target: String,
    /// The remote gateway's addresses, `ip:port`.
    pub gateways: Vec<String>,
    /// The remote gateway's identity.
    pub identity: String,
}

/// The key of a mirrored service port in the table: `<namespace>.<mirror>.<port>` (valid as a
/// ConfigMap key: namespaces and Service names are DNS labels).
pub fn route_key(namespace: &str, mirror: &str, port: u16) -> String {
    format!("{namespace}.{mirror}.{port}")
}

/// The egress routes: one entry per mirrored service port, keyed by [`route_key`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RouteTable {
    routes: BTreeMap<String, Route>,
}

/// An entry of the ConfigMap that is not a route, reported and left out of the table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BadEntry {
    /// The ConfigMap key.
    pub key: String,
    /// Why it was left out.
    pub error: String,
}

impl RouteTable {
    /// The table held by the ConfigMap's `data`. Entries that are not routes, or that take a
    /// port outside [`PORT_RANGE`] or one already taken, are left out and returned as
    /// [`BadEntry`]s (a hand edit must not stop every other route).
    pub fn from_data(data: &BTreeMap<String, String>) -> (RouteTable, Vec<BadEntry>) {
        let mut table = RouteTable::default();
        let mut bad = Vec::new();
        let mut taken = BTreeSet::new();
        for (key, value) in data {
            let route = match serde_json::from_str::<Route>(value) {
                Ok(r) => r,
                Err(e) => {
                    bad.push(BadEntry {
                        key: key.clone(),
                        error: format!(
                            "not a route: {e}; fix: delete the key, its controller writes it again"
                        ),
                    });
                    continue;
                }
            };
            if !PORT_RANGE.contains(&route.listen) || !taken.insert(route.listen) {
                bad.push(BadEntry {
                    key: key.clone(),
                    error: format!(
                        "port {} is outside {}-{} or taken by another key; fix: delete the key, \
                         its controller allocates a free port",
                        route.listen,
                        PORT_RANGE.start(),
                        PORT_RANGE.end()
                    ),
                });
                continue;
            }
            table.routes.insert(key.clone(), route);
        }
        (table, bad)
    }

    /// The ConfigMap `data` holding this table.
    pub fn to_data(&self) -> Result<BTreeMap<String, String>> {
        self.routes
            .iter()
            .map(|(k, r)| {
                serde_json::to_string(r)
                    .map(|v| (k.clone(), v))
                    .map_err(|e| Error::RenderSerialize {
                        format: "JSON",
                        reason: format!("egress route {k}: {e}"),
                    })
            })
            .collect()
    }

    /// The route of `key`.
    pub fn get(&self, key: &str) -> Option<&Route> {
        self.routes.get(key)
    }

    /// Every route, by key.
    pub fn routes(&self) -> impl Iterator<Item = (&String, &Route)> {
        self.routes.iter()
    }

    /// How many routes there are.
    pub fn len(&self) -> usize {
        self.routes.len()
    }

    /// Whether there is no route.
    pub fn is_empty(&self) -> bool {
        self.routes.is_empty()
    }

    /// Sets the route of `key` to `spec`, keeping its port when it has one, otherwise taking
    /// the lowest free port. Returns the port and whether the table changed.
    ///
    /// Errors: every port of [`PORT_RANGE`] is taken ([`Error::EgressPortsExhausted`]); the key
    /// belongs to another Link ([`Error::EgressRouteConflict`]).
    pub fn upsert(&mut self, key: &str, spec: RouteSpec) -> Result<(u16, bool)> {
        if let Some(existing) = self.routes.get_mut(key) {
            if existing.link != spec.link {
                return Err(Error::EgressRouteConflict {
                    key: key.to_owned(),
                    owner: existing.link.clone(),
                    link: spec.link,
                });
            }
            let updated = Route {
                listen: existing.listen,
                link: spec.link,
                target: spec.target,
                gateways: spec.gateways,
                identity: spec.identity,
                members: BTreeMap::new(),
            };
            let changed = *existing != updated;
            *existing = updated;
            return Ok((existing.listen, changed));
        }
        let listen = self.free_port(key)?;
        self.routes.insert(
            key.to_owned(),
            Route {
                listen,
                link: spec.link,
                target: spec.target,
                gateways: spec.gateways,
                identity: spec.identity,
                members: BTreeMap::new(),
            },
        );
        Ok((listen, true))
    }

    /// The lowest port of [`PORT_RANGE`] no route takes.
    fn free_port(&self, key: &str) -> Result<u16> {
        let taken: BTreeSet<u16> = self.routes.values().map(|r| r.listen).collect();
        PORT_RANGE
            .clone()
            .find(|p| !taken.contains(p))
            .ok_or(Error::EgressPortsExhausted {
                key: key.to_owned(),
                count: self.routes.len(),
            })
    }

    /// Removes the routes of Link `link` whose keys start with `prefix` (e.g.
    /// `<ns>.<mirror>.`) and are not in `keep`. Returns whether the table changed. Routes of
    /// other Links are never touched.
    pub fn remove_stale(&mut self, link: &str, prefix: &str, keep: &BTreeSet<String>) -> bool {
        let before = self.routes.len();
        self.routes
            .retain(|k, r| r.link != link || !k.starts_with(prefix) || keep.contains(k));
        before != self.routes.len()
    }
}

/// Rewrites the gateway-mode Endpoints of a mirror into egress mode: the addresses become the
/// egress Pods' `egress` IPs, each port of the mirror Service `mirror` becomes its egress port
/// `listen[service port]` (name and protocol kept), and the remote gateway's identity
/// annotation is dropped (a meshed client must not expect the gateway's identity from the
/// egress). Ports without an egress port are left out. Readiness follows gateway mode: no
/// subsets when the remote has no ready endpoints, not-ready addresses when the gateway is
/// dead, ready ones otherwise.
pub fn egress_endpoints(
    gateway_mode: &Endpoints,
    mirror: &Service,
    egress: &[IpAddr],
    listen: &BTreeMap<u16, u16>,
) -> Endpoints {
    let mut out = gateway_mode.clone();
    if let Some(a) = out.metadata.annotations.as_mut() {
        a.remove(labels::REMOTE_GATEWAY_IDENTITY);
    }
    let subsets = gateway_mode.subsets.as_deref().unwrap_or_default();
    let has = |f: fn(&EndpointSubset) -> &Option<Vec<EndpointAddress>>| {
        subsets
            .iter()
            .any(|s| f(s).as_ref().is_some_and(|a| !a.is_empty()))
    };
    let (ready, not_ready) = (has(|s| &s.addresses), has(|s| &s.not_ready_addresses));
    out.subsets = if ready || not_ready {
        egress_subsets(mirror, egress, listen, ready)
    } else {
        None
    };
    out
}

/// The one subset of Endpoints that lead Service `svc` to the egress Pods `egress`: each
/// service port becomes its egress port `listen[service port]` (name and protocol kept; ports
/// without one are left out), the addresses ready or not as `ready` says. `None` when there is
/// no port or no address.
fn egress_subsets(
    svc: &Service,
    egress: &[IpAddr],
    listen: &BTreeMap<u16, u16>,
    ready: bool,
) -> Option<Vec<EndpointSubset>> {
    let ports: Vec<EndpointPort> = service_ports(svc)
        .iter()
        .filter_map(|p| {
            let l = listen.get(&u16::try_from(p.port).ok()?)?;
            Some(EndpointPort {
                name: p.name.clone(),
                protocol: p.protocol.clone(),
                app_protocol: p.app_protocol.clone(),
                port: i32::from(*l),
            })
        })
        .collect();
    let mut ips = egress.to_vec();
    ips.sort_by_key(|ip| ip.to_string());
    ips.dedup();
    let addresses: Vec<EndpointAddress> = ips
        .iter()
        .map(|ip| EndpointAddress {
            ip: ip.to_string(),
            ..Default::default()
        })
        .collect();
    (!ports.is_empty() && !addresses.is_empty()).then(|| {
        vec![EndpointSubset {
            addresses: ready.then(|| addresses.clone()),
            not_ready_addresses: (!ready).then_some(addresses),
            ports: Some(ports),
        }]
    })
}

/// The ports of Service `svc` (none when it has no spec).
pub fn service_ports(svc: &Service) -> &[ServicePort] {
    svc.spec
        .as_ref()
        .and_then(|s| s.ports.as_deref())
        .unwrap_or_default()
}

/// How a Link's mirrors are served, from the Link annotation [`labels::LINK_MODE`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LinkMode {
    /// Endpoints go straight to the remote gateway: for Linkerd-meshed clients.
    Gateway,
    /// Endpoints go to the local egress: any Pod, meshed or not, can connect.
    Egress,
    /// [`LinkMode::Egress`] when this cluster runs an egress and no Linkerd control plane,
    /// otherwise [`LinkMode::Gateway`] (see [`LinkMode::resolve`]).
    Auto,
}

impl LinkMode {
    /// The mode named by the annotation value (absent means [`LinkMode::Auto`]).
    pub fn parse(value: Option<&str>) -> Result<LinkMode> {
        match value.map(str::trim) {
            None | Some("" | "auto") => Ok(LinkMode::Auto),
            Some("gateway") => Ok(LinkMode::Gateway),
            Some("egress") => Ok(LinkMode::Egress),
            Some(other) => Err(Error::InvalidLinkMode {
                value: other.to_owned(),
            }),
        }
    }

    /// The mode to serve: `Auto` becomes `Egress` when the egress is installed here and no
    /// Linkerd control plane is (its meshed clients would otherwise gain a hop they do not
    /// need), and `Gateway` otherwise; an explicit `Egress` without an egress installed still
    /// means egress (mirrors then have no addresses until the egress runs).
    pub fn resolve(self, egress_installed: bool, linkerd_present: bool) -> LinkMode {
        match self {
            LinkMode::Auto if egress_installed && !linkerd_present => LinkMode::Egress,
            LinkMode::Auto => LinkMode::Gateway,
            m => m,
        }
    }

    /// The annotation value naming this mode.
    pub fn as_str(self) -> &'static str {
        match self {
            LinkMode::Gateway => "gateway",
            LinkMode::Egress => "egress",
            LinkMode::Auto => "auto",
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use k8s_openapi::api::core::v1::ServiceSpec;

    fn spec(link: &str, target: &str) -> RouteSpec {
        RouteSpec {
            link: link.into(),
            target: target.into(),
            gateways: vec!["198.18.0.5:4143".into()],
            identity: "gw.id".into(),
        }
    }

    #[test]
    fn ports_are_allocated_lowest_first_and_kept_across_updates() {
        let mut t = RouteTable::default();
        assert_eq!(
            t.upsert("a.x-east.80", spec("east", "x:80")).unwrap(),
            (20000, true)
        );
        assert_eq!(
            t.upsert("a.y-east.80", spec("east", "y:80")).unwrap(),
            (20001, true)
        );
        // Same spec: unchanged; new gateway: changed, same port.
        assert_eq!(
            t.upsert("a.x-east.80", spec("east", "x:80")).unwrap(),
            (20000, false)
        );
        let mut moved = spec("east", "x:80");
        moved.gateways = vec!["198.18.0.6:4143".into()];
        assert_eq!(t.upsert("a.x-east.80", moved).unwrap(), (20000, true));
        // A freed port is reused.
        assert!(t.remove_stale("east", "a.x-east.", &BTreeSet::new()));
        assert_eq!(
            t.upsert("b.z-west.80", spec("west", "z:80")).unwrap(),
            (20000, true)
        );
    }

    #[test]
    fn a_key_of_another_link_is_refused_and_never_removed() {
        let mut t = RouteTable::default();
        t.upsert("a.x-east.80", spec("east", "x:80")).unwrap();
        let err = t.upsert("a.x-east.80", spec("west", "x:80")).unwrap_err();
        assert!(err.to_string().contains("east"), "{err}");
        assert!(!t.remove_stale("west", "a.", &BTreeSet::new()));
        assert_eq!(t.len(), 1);
    }

    #[test]
    fn the_range_runs_out_with_a_clear_error() {
        let full: BTreeMap<String, String> = PORT_RANGE
            .map(|p| {
                let r = format!(
                    r#"{{"listen":{p},"link":"east","target":"t:80","gateways":[],"identity":"i"}}"#
                );
                (format!("n.s{p}.80"), r)
            })
            .collect();
        let (mut t, bad) = RouteTable::from_data(&full);
        assert!(bad.is_empty());
        let err = t.upsert("n.last.80", spec("east", "t:80")).unwrap_err();
        assert!(matches!(err, Error::EgressPortsExhausted { .. }), "{err}");
        t.remove_stale("east", "n.s20005.", &BTreeSet::new());
        assert_eq!(
            t.upsert("n.last.80", spec("east", "t:80")).unwrap(),
            (20005, true)
        );
    }

    #[test]
    fn the_table_round_trips_and_bad_entries_are_reported_not_fatal() {
        let mut t = RouteTable::default();
        t.upsert("a.x-east.80", spec("east", "x.a.svc.cluster.local:80"))
            .unwrap();
        let mut data = t.to_data().unwrap();
        let (back, bad) = RouteTable::from_data(&data);
        assert_eq!(back, t);
        assert!(bad.is_empty());
        data.insert("junk".into(), "{".into());
        data.insert(
            "dup".into(),
            r#"{"listen":20000,"link":"west","target":"t:1","gateways":[],"identity":"i"}"#.into(),
        );
        data.insert(
            "low".into(),
            r#"{"listen":80,"link":"west","target":"t:1","gateways":[],"identity":"i"}"#.into(),
        );
        let (back, bad) = RouteTable::from_data(&data);
        assert_eq!(back.len(), 1);
        let keys: Vec<&str> = bad.iter().map(|b| b.key.as_str()).collect();
        assert_eq!(keys.len(), 3, "{bad:?}");
        assert!(bad.iter().all(|b| b.error.contains("fix:")));
    }

    /// Gateway-mode Endpoints: ready (`Some(true)`), not ready (`Some(false)`), or none.
    fn gateway_endpoints(ready: Option<bool>) -> Endpoints {
        let addresses = Some(vec![EndpointAddress {
            ip: "198.18.0.5".into(),
            ..Default::default()
        }]);
        let subsets = ready.map(|ready| {
            vec![EndpointSubset {
                addresses: if ready { addresses.clone() } else { None },
                not_ready_addresses: if ready { None } else { addresses },
                ports: Some(vec![EndpointPort {
                    name: Some("http".into()),
                    port: 4143,
                    ..Default::default()
                }]),
            }]
        });
        let mut ep = Endpoints {
            subsets,
            ..Default::default()
        };
        ep.metadata.annotations = Some(BTreeMap::from([
            (labels::REMOTE_GATEWAY_IDENTITY.to_owned(), "gw".to_owned()),
            (labels::REMOTE_SVC_FQ_NAME.to_owned(), "x".to_owned()),
        ]));
        ep
    }

    fn mirror() -> Service {
        Service {
            spec: Some(ServiceSpec {
                ports: Some(vec![ServicePort {
                    name: Some("http".into()),
                    port: 9898,
                    protocol: Some("TCP".into()),
                    ..Default::default()
                }]),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    #[test]
    fn egress_endpoints_point_at_the_egress_ports_and_keep_readiness() {
        let ips: Vec<IpAddr> = vec!["198.18.1.2".parse().unwrap(), "198.18.1.1".parse().unwrap()];
        let listen = BTreeMap::from([(9898, 20007)]);
        let ep = egress_endpoints(&gateway_endpoints(Some(true)), &mirror(), &ips, &listen);
        let s = &ep.subsets.as_ref().unwrap()[0];
        let got: Vec<&str> = s
            .addresses
            .as_ref()
            .unwrap()
            .iter()
            .map(|a| a.ip.as_str())
            .collect();
        assert_eq!(got, ["198.18.1.1", "198.18.1.2"]);
        assert!(s.not_ready_addresses.is_none());
        assert_eq!(s.ports.as_ref().unwrap()[0].port, 20007);
        assert_eq!(s.ports.as_ref().unwrap()[0].name.as_deref(), Some("http"));
        let a = ep.metadata.annotations.as_ref().unwrap();
        assert!(!a.contains_key(labels::REMOTE_GATEWAY_IDENTITY));
        assert!(a.contains_key(labels::REMOTE_SVC_FQ_NAME));

        // A dead gateway: not ready; a remote with no ready endpoints: no subsets.
        let ep = egress_endpoints(&gateway_endpoints(Some(false)), &mirror(), &ips, &listen);
        let s = &ep.subsets.as_ref().unwrap()[0];
        assert!(s.addresses.is_none());
        assert_eq!(s.not_ready_addresses.as_ref().unwrap().len(), 2);
        let ep = egress_endpoints(&gateway_endpoints(None), &mirror(), &ips, &listen);
        assert!(ep.subsets.is_none());

        // No egress Pod, or no egress port: nothing to connect to.
        let ep = egress_endpoints(&gateway_endpoints(Some(true)), &mirror(), &[], &listen);
        assert!(ep.subsets.is_none());
        let none = BTreeMap::new();
        let ep = egress_endpoints(&gateway_endpoints(Some(true)), &mirror(), &ips, &none);
        assert!(ep.subsets.is_none());
    }

    #[test]
    fn link_modes_parse_and_auto_resolves_by_what_is_installed() {
        assert_eq!(LinkMode::parse(None).unwrap(), LinkMode::Auto);
        assert_eq!(LinkMode::parse(Some("egress")).unwrap(), LinkMode::Egress);
        assert_eq!(LinkMode::parse(Some("gateway")).unwrap(), LinkMode::Gateway);
        let err = LinkMode::parse(Some("mesh")).unwrap_err().to_string();
        assert!(err.contains("mesh") && err.contains("fix"), "{err}");
        assert_eq!(LinkMode::Auto.resolve(true, false), LinkMode::Egress);
        assert_eq!(LinkMode::Auto.resolve(true, true), LinkMode::Gateway);
        assert_eq!(LinkMode::Auto.resolve(false, false), LinkMode::Gateway);
        assert_eq!(LinkMode::Egress.resolve(false, true), LinkMode::Egress);
        assert_eq!(LinkMode::Gateway.resolve(true, false), LinkMode::Gateway);
    }
}
