#![cfg_attr(not(feature = "kubernetes"), allow(dead_code))]
//! Which backends are meshed, the pure part: a Pod's facts to the identity its Linkerd proxy
//! presents, as Linkerd's destination controller derives it.
//!
//! A Pod is meshed by a control plane when its label `linkerd.io/control-plane-ns` names that
//! control plane's namespace. Its proxy then terminates mTLS for every inbound port except those
//! in its `config.linkerd.io/skip-inbound-ports` annotation, with the identity
//! `<serviceaccount>.<namespace>.serviceaccount.identity.<control-plane-ns>.<trust-domain>`.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;

/// The label naming the control plane that meshes a Pod.
pub(crate) const CONTROL_PLANE_NS_LABEL: &str = "linkerd.io/control-plane-ns";
/// The annotation listing the inbound ports a Pod's proxy does not intercept.
pub(crate) const SKIP_INBOUND_PORTS: &str = "config.linkerd.io/skip-inbound-ports";

/// Which backends the gateway dials with mTLS (as its own identity, like a meshed client), and
/// the identity each must present. A backend without one is dialled in plaintext.
pub trait BackendIdentities: Send + Sync + std::fmt::Debug + 'static {
    /// The identity the backend at `addr` must present, or `None` to dial it in plaintext.
    fn identity(&self, addr: SocketAddr) -> Option<Arc<str>>;
}

/// A fixed map from backend address to identity.
#[derive(Debug, Default, Clone)]
pub struct StaticIdentities(HashMap<SocketAddr, Arc<str>>);

impl StaticIdentities {
    /// The backends at these addresses present these identities.
    pub fn new(entries: impl IntoIterator<Item = (SocketAddr, String)>) -> Self {
        Self(entries.into_iter().map(|(a, id)| (a, id.into())).collect())
    }
}

impl BackendIdentities for StaticIdentities {
    fn identity(&self, addr: SocketAddr) -> Option<Arc<str>> {
        self.0.get(&addr).cloned()
    }
}

/// The control plane whose meshed Pods the gateway dials with mTLS: the one that issued the
/// gateway's own identity.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Mesh {
    /// Its namespace (`linkerd`).
    pub(crate) control_plane_namespace: String,
    /// Its trust domain (`cluster.local`).
    pub(crate) trust_domain: String,
}

/// What the mesh decision reads from a Pod.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct PodFacts<'a> {
    /// `metadata.namespace`.
    pub(crate) namespace: &'a str,
    /// `spec.serviceAccountName` (`default` when absent).
    pub(crate) service_account: Option<&'a str>,
    /// The value of the `linkerd.io/control-plane-ns` label.
    pub(crate) control_plane: Option<&'a str>,
    /// The value of the `config.linkerd.io/skip-inbound-ports` annotation.
    pub(crate) skip_inbound_ports: Option<&'a str>,
}

/// A meshed Pod: the identity its proxy presents, except on skipped ports.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct MeshedPod {
    identity: Arc<str>,
    skipped: Vec<(u16, u16)>,
}

impl MeshedPod {
    /// The identity presented on `port`, or `None` when the proxy skips that port.
    pub(crate) fn identity_on(&self, port: u16) -> Option<Arc<str>> {
        let skipped = self
            .skipped
            .iter()
            .any(|&(lo, hi)| (lo..=hi).contains(&port));
        (!skipped).then(|| self.identity.clone())
    }
}

impl Mesh {
    /// The Pod as meshed by this control plane, or `None` when another control plane (or none)
    /// meshes it.
    pub(crate) fn pod(&self, pod: &PodFacts<'_>) -> Option<MeshedPod> {
        if pod.control_plane? != self.control_plane_namespace {
            return None;
        }
        let sa = pod
            .service_account
            .filter(|s| !s.is_empty())
            .unwrap_or("default");
        let identity = mc_core::identity::Identity {
            service_account: sa.to_owned(),
            namespace: pod.namespace.to_owned(),
            control_plane_namespace: self.control_plane_namespace.clone(),
            trust_domain: self.trust_domain.clone(),
        };
        Some(MeshedPod {
            identity: identity.to_string().into(),
            skipped: port_ranges(pod.skip_inbound_ports.unwrap_or("")),
        })
    }
}

/// Ports and port ranges as Linkerd's annotations write them (`25,4190-4191`). Entries that do
/// not parse are left out, as Linkerd's injector and destination controller leave them out.
fn port_ranges(list: &str) -> Vec<(u16, u16)> {
    list.split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .filter_map(|item| match item.split_once('-') {
            Some((lo, hi)) => {
                let (lo, hi) = (lo.trim().parse().ok()?, hi.trim().parse().ok()?);
                (lo <= hi).then_some((lo, hi))
            }
            None => item.parse().ok().map(|p| (p, p)),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn linkerd() -> Mesh {
        Mesh {
            control_plane_namespace: "linkerd".into(),
            trust_domain: "cluster.local".into(),
        }
    }

    #[test]
    fn a_pod_of_this_control_plane_has_its_service_accounts_identity() {
        let pod = PodFacts {
            namespace: "shop",
            service_account: Some("web"),
            control_plane: Some("linkerd"),
            skip_inbound_ports: None,
        };
        let meshed = linkerd().pod(&pod).unwrap();
        assert_eq!(
            meshed.identity_on(8080).as_deref(),
            Some("web.shop.serviceaccount.identity.linkerd.cluster.local")
        );
        let default_sa = PodFacts {
            service_account: None,
            ..pod
        };
        assert_eq!(
            linkerd()
                .pod(&default_sa)
                .unwrap()
                .identity_on(80)
                .as_deref(),
            Some("default.shop.serviceaccount.identity.linkerd.cluster.local")
        );
    }

    #[test]
    fn pods_of_no_or_another_control_plane_are_not_meshed() {
        let mut pod = PodFacts {
            namespace: "shop",
            service_account: Some("web"),
            control_plane: None,
            skip_inbound_ports: None,
        };
        assert_eq!(linkerd().pod(&pod), None);
        pod.control_plane = Some("linkerd-other");
        assert_eq!(linkerd().pod(&pod), None);
    }

    #[test]
    fn skipped_inbound_ports_and_ranges_are_dialled_in_plaintext() {
        let pod = PodFacts {
            namespace: "db",
            service_account: Some("pg"),
            control_plane: Some("linkerd"),
            skip_inbound_ports: Some(" 5432, 9000-9002,bogus,7-3,"),
        };
        let meshed = linkerd().pod(&pod).unwrap();
        assert_eq!(meshed.identity_on(5432), None);
        assert_eq!(meshed.identity_on(9000), None);
        assert_eq!(meshed.identity_on(9002), None);
        assert!(meshed.identity_on(9003).is_some());
        assert!(
            meshed.identity_on(5).is_some(),
            "an inverted range skips nothing"
        );
    }

    #[test]
    fn static_identities_are_looked_up_by_address() {
        let addr: SocketAddr = "192.0.2.1:80".parse().unwrap();
        let ids = StaticIdentities::new([(
            addr,
            "a.b.serviceaccount.identity.linkerd.cluster.local".into(),
        )]);
        assert!(ids.identity(addr).is_some());
        assert!(ids.identity("192.0.2.1:81".parse().unwrap()).is_none());
    }
}
