//! Federated routes: one egress port per port of a `<svc>-federated` Service, leading to every
//! member (the local Service and the same-named Service of each linked cluster).
//!
//! Several Link controllers share such a route: each adds, updates and removes only its own
//! member (its cluster's gateway, target, weight and readiness); the local member is written by
//! any of them, the same way. The route's port is allocated once, by whichever writes first, and
//! kept while any member is left.

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;

use k8s_openapi::api::core::v1::{Endpoints, Service};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use serde::{Deserialize, Serialize};

use super::{Route, RouteTable, egress_subsets};
use crate::labels;
use crate::{Error, Result};

/// The `link` of every federated route: no single Link owns it.
pub const FEDERATED_OWNER: &str = "@federated";
/// The member key of this cluster's own Service in a federated route (not a DNS label, so no
/// cluster name can take it).
pub const LOCAL_MEMBER: &str = "@local";

/// One member of a federated route: where the egress sends the connections it gives it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Member {
    /// Remote members: the authority sent in the transport header,
    /// `<svc>.<ns>.svc.<domain>:<port>`. The local member: the `ip:port` (ClusterIP and port)
    /// the egress connects to in plaintext, as any Pod of this cluster would.
    pub target: String,
    /// Remote members: the gateway's addresses, `ip:port`, in the order to try them.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub gateways: Vec<String>,
    /// Remote members: the identity the gateway must present.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub identity: String,
    /// Share of new connections relative to the other members; 0 gives it none.
    pub weight: u32,
    /// Whether the member's Service has ready endpoints; a member that has none gets no new
    /// connections.
    pub ready: bool,
}

impl Member {
    /// Whether this is the local member (no gateway: plain TCP to `target`).
    pub fn is_local(&self) -> bool {
        self.gateways.is_empty()
    }
}

impl RouteTable {
    /// Sets member `member` (a cluster name, or [`LOCAL_MEMBER`]) of the federated route `key`
    /// (`<ns>.<svc>-federated.<port>`), creating the route with the lowest free port when it
    /// does not exist. `name` is the federated Service's authority, for logs. Returns the
    /// route's port and whether the table changed.
    ///
    /// Errors: the key is a mirror's route ([`Error::EgressRouteConflict`]); every port is
    /// taken ([`Error::EgressPortsExhausted`]).
    pub fn upsert_member(
        &mut self,
        key: &str,
        name: &str,
        member: &str,
        value: Member,
    ) -> Result<(u16, bool)> {
        if let Some(route) = self.routes.get_mut(key) {
            if !route.is_federated() {
                return Err(Error::EgressRouteConflict {
                    key: key.to_owned(),
                    owner: route.link.clone(),
                    link: FEDERATED_OWNER.to_owned(),
                });
            }
            let changed = route.target != name || route.members.get(member) != Some(&value);
            route.target = name.to_owned();
            route.members.insert(member.to_owned(), value);
            return Ok((route.listen, changed));
        }
        let listen = self.free_port(key)?;
        self.routes.insert(
            key.to_owned(),
            Route {
                listen,
                link: FEDERATED_OWNER.to_owned(),
                target: name.to_owned(),
                gateways: Vec::new(),
                identity: String::new(),
                members: BTreeMap::from([(member.to_owned(), value)]),
            },
        );
        Ok((listen, true))
    }

    /// Removes member `member` from the federated routes whose keys start with `prefix` and
    /// are not in `keep`; a route left without members is removed (its port is freed).
    /// Returns whether the table changed. Mirrors' routes are never touched.
    pub fn remove_member(&mut self, member: &str, prefix: &str, keep: &BTreeSet<String>) -> bool {
        let mut changed = false;
        self.routes.retain(|k, r| {
            if !r.is_federated() || !k.starts_with(prefix) || keep.contains(k) {
                return true;
            }
            changed |= r.members.remove(member).is_some();
            !r.members.is_empty()
        });
        changed
    }

    /// The ports of the federated Service `<ns>/<name>`, by service port, from the table.
    pub fn federated_ports(&self, namespace: &str, name: &str) -> BTreeMap<u16, u16> {
        let prefix = format!("{namespace}.{name}.");
        self.routes
            .iter()
            .filter(|(k, r)| r.is_federated() && k.starts_with(&prefix))
            .filter_map(|(k, r)| Some((k[prefix.len()..].parse().ok()?, r.listen)))
            .collect()
    }
}

/// The Endpoints of federated Service `federated` served by the egress: the egress Pods' IPs,
/// each service port mapped to its egress port in `listen` (ports without one are left out),
/// ready when `ready` (some member can take connections), not ready otherwise. Labelled
/// `mirrored-service: "true"`, the mark of objects mc owns.
pub fn federated_endpoints(
    federated: &Service,
    egress: &[IpAddr],
    listen: &BTreeMap<u16, u16>,
    ready: bool,
) -> Endpoints {
    let subsets = egress_subsets(federated, egress, listen, ready);
    Endpoints {
        metadata: ObjectMeta {
            name: federated.metadata.name.clone(),
            namespace: federated.metadata.namespace.clone(),
            labels: Some(BTreeMap::from([(
                labels::MIRRORED_SERVICE.to_owned(),
                "true".to_owned(),
            )])),
            ..ObjectMeta::default()
        },
        subsets,
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::egress::RouteSpec;
    use k8s_openapi::api::core::v1::{ServicePort, ServiceSpec};

    fn remote(weight: u32, ready: bool) -> Member {
        Member {
            target: "web.shop.svc.cluster.local:80".into(),
            gateways: vec!["198.18.0.5:4143".into()],
            identity: "gw.id".into(),
            weight,
            ready,
        }
    }

    fn local() -> Member {
        Member {
            target: "198.18.9.9:80".into(),
            gateways: vec![],
            identity: String::new(),
            weight: 1,
            ready: true,
        }
    }

    const KEY: &str = "shop.web-federated.80";
    const NAME: &str = "web-federated.shop.svc.cluster.local:80";

    #[test]
    fn members_share_one_port_and_leave_one_by_one() {
        let mut t = RouteTable::default();
        t.upsert(
            "shop.api-east.80",
            RouteSpec {
                link: "east".into(),
                target: "api:80".into(),
                gateways: vec![],
                identity: "i".into(),
            },
        )
        .unwrap();
        assert_eq!(
            t.upsert_member(KEY, NAME, "east", remote(1, true)).unwrap(),
            (20001, true)
        );
        assert_eq!(
            t.upsert_member(KEY, NAME, LOCAL_MEMBER, local()).unwrap(),
            (20001, true)
        );
        assert_eq!(
            t.upsert_member(KEY, NAME, "west", remote(1, true)).unwrap(),
            (20001, true)
        );
        // The same member again: unchanged; a new weight: changed.
        assert_eq!(
            t.upsert_member(KEY, NAME, "east", remote(1, true)).unwrap(),
            (20001, false)
        );
        assert_eq!(
            t.upsert_member(KEY, NAME, "east", remote(0, true)).unwrap(),
            (20001, true)
        );
        let r = t.get(KEY).unwrap();
        assert!(r.is_federated());
        assert_eq!(r.members.len(), 3);
        assert!(r.members[LOCAL_MEMBER].is_local() && !r.members["east"].is_local());
        assert_eq!(
            t.federated_ports("shop", "web-federated"),
            BTreeMap::from([(80, 20001)])
        );

        // Round trip through the ConfigMap.
        let (back, bad) = RouteTable::from_data(&t.to_data().unwrap());
        assert!(bad.is_empty(), "{bad:?}");
        assert_eq!(back, t);

        // Kept keys stay; a member leaves the others; the last one frees the port.
        let keep = BTreeSet::from([KEY.to_owned()]);
        assert!(!t.remove_member("east", "shop.web-federated.", &keep));
        assert!(t.remove_member("east", "shop.web-federated.", &BTreeSet::new()));
        assert!(t.remove_member(LOCAL_MEMBER, "shop.", &BTreeSet::new()));
        assert_eq!(t.get(KEY).unwrap().members.len(), 1);
        assert!(t.remove_member("west", "", &BTreeSet::new()));
        assert!(t.get(KEY).is_none());
        // The mirror's route is never touched.
        assert!(!t.remove_member("east", "", &BTreeSet::new()));
        assert_eq!(t.len(), 1);
    }

    #[test]
    fn a_mirror_route_and_a_federated_route_never_take_each_others_key() {
        let mut t = RouteTable::default();
        let spec = RouteSpec {
            link: "east".into(),
            target: "web:80".into(),
            gateways: vec![],
            identity: "i".into(),
        };
        t.upsert("shop.x.80", spec.clone()).unwrap();
        let err = t
            .upsert_member("shop.x.80", NAME, "east", remote(1, true))
            .unwrap_err();
        assert!(matches!(err, Error::EgressRouteConflict { .. }), "{err}");
        t.upsert_member(KEY, NAME, "east", remote(1, true)).unwrap();
        let err = t.upsert(KEY, spec).unwrap_err();
        assert!(err.to_string().contains(FEDERATED_OWNER), "{err}");
        // remove_stale of a Link leaves federated routes alone.
        assert!(!t.remove_stale("east", "shop.web-federated.", &BTreeSet::new()));
    }

    fn federated_service() -> Service {
        Service {
            metadata: ObjectMeta {
                name: Some("web-federated".into()),
                namespace: Some("shop".into()),
                ..Default::default()
            },
            spec: Some(ServiceSpec {
                ports: Some(vec![
                    ServicePort {
                        name: Some("http".into()),
                        port: 80,
                        ..Default::default()
                    },
                    ServicePort {
                        name: Some("grpc".into()),
                        port: 9090,
                        ..Default::default()
                    },
                ]),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    #[test]
    fn federated_endpoints_point_at_the_egress_and_carry_readiness() {
        let ips: Vec<IpAddr> = vec!["198.18.1.2".parse().unwrap(), "198.18.1.1".parse().unwrap()];
        let listen = BTreeMap::from([(80, 20001)]);
        let ep = federated_endpoints(&federated_service(), &ips, &listen, true);
        assert_eq!(ep.metadata.name.as_deref(), Some("web-federated"));
        assert_eq!(
            ep.metadata
                .labels
                .as_ref()
                .unwrap()
                .get(labels::MIRRORED_SERVICE)
                .map(String::as_str),
            Some("true")
        );
        let s = &ep.subsets.as_ref().unwrap()[0];
        let got: Vec<&str> = s
            .addresses
            .as_ref()
            .unwrap()
            .iter()
            .map(|a| a.ip.as_str())
            .collect();
        assert_eq!(got, ["198.18.1.1", "198.18.1.2"]);
        // The port without an egress port is left out.
        let ports = s.ports.as_ref().unwrap();
        assert_eq!(
            (ports.len(), ports[0].port, ports[0].name.as_deref()),
            (1, 20001, Some("http"))
        );
        // No member ready: not-ready addresses; no egress Pod or no port: no subsets.
        let ep = federated_endpoints(&federated_service(), &ips, &listen, false);
        let s = &ep.subsets.as_ref().unwrap()[0];
        assert!(s.addresses.is_none() && s.not_ready_addresses.as_ref().unwrap().len() == 2);
        assert!(
            federated_endpoints(&federated_service(), &[], &listen, true)
                .subsets
                .is_none()
        );
        let none = BTreeMap::new();
        assert!(
            federated_endpoints(&federated_service(), &ips, &none, true)
                .subsets
                .is_none()
        );
    }
}
