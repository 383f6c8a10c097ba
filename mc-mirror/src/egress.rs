//! Egress mode (see [`mc_core::egress`]): which mode a Link is served in, the ready egress
//! Pods, and the controller's share of the route table ConfigMap.
//!
//! Every Link's controller writes the one ConfigMap [`ROUTES_CONFIG_MAP`] with optimistic
//! concurrency (replace with the resourceVersion read, re-read on conflict), and only ever
//! changes routes whose `link` is its own, so two Links never take the same port and never
//! remove each other's routes.

use std::collections::{BTreeMap, BTreeSet};
use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::sync::Mutex;

use futures::StreamExt as _;
use k8s_openapi::api::core::v1::{ConfigMap, Endpoints, Service};
use kube::api::{ObjectMeta, PostParams};
use kube::runtime::watcher::{self, Event};
use kube::{Api, Client};
use mc_core::egress::{
    EGRESS_NAME, LinkMode, ROUTES_CONFIG_MAP, RouteSpec, RouteTable, route_key, service_ports,
};
use mc_core::link::Link;
use mc_core::mirror::Gateway;
use tokio::sync::watch;

use crate::{Error, Result};

/// The Service of a Linkerd control plane (its destination controller): its presence means
/// meshed clients, so `auto` keeps gateway mode.
const LINKERD_DESTINATION: &str = "linkerd-dst";

/// How many times a route-table write is retried after a conflict before the reconcile fails
/// (and is retried with backoff).
const CONFLICT_RETRIES: usize = 8;

/// What the routes of one mirror are made of.
pub(crate) struct MirrorRoutes<'a> {
    /// The mirror's namespace.
    pub ns: &'a str,
    /// The mirror's name.
    pub name: &'a str,
    /// The mirror Service (its ports).
    pub service: &'a Service,
    /// The remote Service's `<svc>.<ns>.svc.<domain>`.
    pub fq_name: &'a str,
    /// The remote gateway, once resolved.
    pub gateway: Option<&'a Gateway>,
    /// The identity the remote gateway presents.
    pub identity: &'a str,
}

/// The egress side of one Link's worker.
pub(crate) struct EgressState {
    /// The mode this worker serves (never `Auto`).
    pub mode: LinkMode,
    /// The ready egress Pods' IPs (egress mode only; empty otherwise).
    pub pods: watch::Receiver<Vec<IpAddr>>,
    /// The table as last read or written, to skip writes that would change nothing.
    last: Mutex<Option<RouteTable>>,
}

/// The Link's mode annotation, resolved against what this cluster runs (the egress Service in
/// `namespace`, a Linkerd control plane in `linkerd_namespace`). An unreadable annotation
/// keeps gateway mode (today's behaviour) and is logged.
pub(crate) async fn resolve_mode(
    client: &Client,
    link: &Link,
    namespace: &str,
    linkerd_namespace: &str,
) -> LinkMode {
    let value = link
        .metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get(mc_core::labels::LINK_MODE));
    let asked = match LinkMode::parse(value.map(String::as_str)) {
        Ok(m) => m,
        Err(e) => {
            tracing::warn!(error = %e, "serving the Link in gateway mode");
            return LinkMode::Gateway;
        }
    };
    if asked != LinkMode::Auto {
        return asked;
    }
    let egress = service_exists(client, namespace, EGRESS_NAME).await;
    let linkerd = service_exists(client, linkerd_namespace, LINKERD_DESTINATION).await;
    let mode = asked.resolve(egress, linkerd);
    tracing::info!(
        egress_installed = egress,
        linkerd_present = linkerd,
        mode = mode.as_str(),
        "Link mode auto resolved"
    );
    mode
}

async fn service_exists(client: &Client, namespace: &str, name: &str) -> bool {
    let api: Api<Service> = Api::namespaced(client.clone(), namespace);
    match api.get_opt(name).await {
        Ok(found) => found.is_some(),
        Err(e) => {
            tracing::warn!(service = %format!("{namespace}/{name}"), error = %e, "cannot tell whether the Service exists; assuming it does not");
            false
        }
    }
}

impl EgressState {
    /// The state of a worker serving `mode`, and in egress mode the task that follows the
    /// ready egress Pods of `namespace` (the worker runs it with its other tasks, so it stops
    /// with the worker).
    pub(crate) fn start(
        client: &Client,
        namespace: &str,
        mode: LinkMode,
    ) -> (
        EgressState,
        Option<impl Future<Output = ()> + Send + 'static>,
    ) {
        let (tx, rx) = watch::channel(Vec::new());
        let task = (mode == LinkMode::Egress).then(|| {
            let api: Api<Endpoints> = Api::namespaced(client.clone(), namespace);
            watch_pods(api, tx)
        });
        let state = EgressState {
            mode,
            pods: rx,
            last: Mutex::new(None),
        };
        (state, task)
    }

    /// The routes for every port of mirror `m`: set in the table, with stale ports of the
    /// mirror removed. Returns the egress port of each service port.
    pub(crate) async fn ensure(
        &self,
        client: &Client,
        namespace: &str,
        link: &str,
        m: MirrorRoutes<'_>,
    ) -> Result<BTreeMap<u16, u16>> {
        let MirrorRoutes {
            ns,
            name,
            service: svc,
            fq_name,
            gateway,
            identity,
        } = m;
        let gateways = gateway_addresses(gateway);
        let wanted: Vec<(String, u16, RouteSpec)> = service_ports(svc)
            .iter()
            .filter_map(|p| u16::try_from(p.port).ok())
            .map(|port| {
                let spec = RouteSpec {
                    link: link.to_owned(),
                    target: format!("{fq_name}:{port}"),
                    gateways: gateways.clone(),
                    identity: identity.to_owned(),
                };
                (route_key(ns, name, port), port, spec)
            })
            .collect();
        let prefix = format!("{ns}.{name}.");
        let keep: BTreeSet<String> = wanted.iter().map(|(k, _, _)| k.clone()).collect();
        let apply = |table: &mut RouteTable| -> Result<(BTreeMap<u16, u16>, bool)> {
            let mut listen = BTreeMap::new();
            let mut changed = table.remove_stale(link, &prefix, &keep);
            for (key, port, spec) in &wanted {
                let (l, c) = table.upsert(key, spec.clone())?;
                listen.insert(*port, l);
                changed |= c;
            }
            Ok((listen, changed))
        };
        if let Some(mut cached) = self.cached() {
            let (listen, changed) = apply(&mut cached)?;
            if !changed {
                return Ok(listen);
            }
        }
        self.update(client, namespace, apply).await
    }

    /// Removes every route of mirror `ns/mirror` of `link`.
    pub(crate) async fn remove(
        &self,
        client: &Client,
        namespace: &str,
        link: &str,
        ns: &str,
        mirror: &str,
    ) -> Result<()> {
        let prefix = format!("{ns}.{mirror}.");
        let apply = |t: &mut RouteTable| -> Result<((), bool)> {
            Ok(((), t.remove_stale(link, &prefix, &BTreeSet::new())))
        };
        if let Some(mut cached) = self.cached()
            && !apply(&mut cached)?.1
        {
            return Ok(());
        }
        self.update(client, namespace, apply).await
    }

    /// Removes every route of `link` and its members of federated routes (a Link served in
    /// gateway mode keeps none).
    pub(crate) async fn remove_link(
        &self,
        client: &Client,
        namespace: &str,
        link: &str,
    ) -> Result<()> {
        self.update(client, namespace, |t| {
            let none = BTreeSet::new();
            Ok((
                (),
                t.remove_stale(link, "", &none) | t.remove_member(link, "", &none),
            ))
        })
        .await
    }

    /// Forgets the cached table: the next change is checked against a fresh read (after a
    /// relist, in case the ConfigMap was edited or deleted by hand).
    pub(crate) fn invalidate(&self) {
        if let Ok(mut g) = self.last.lock() {
            *g = None;
        }
    }

    /// The table as last read or written, if any.
    pub(crate) fn cached(&self) -> Option<RouteTable> {
        self.last.lock().ok().and_then(|g| g.clone())
    }

    fn remember(&self, table: RouteTable) {
        if let Ok(mut g) = self.last.lock() {
            *g = Some(table);
        }
    }

    /// Reads the ConfigMap, applies `f`, and writes it back if `f` changed the table, retrying
    /// from a fresh read on conflict.
    pub(crate) async fn update<T>(
        &self,
        client: &Client,
        namespace: &str,
        f: impl Fn(&mut RouteTable) -> Result<(T, bool)>,
    ) -> Result<T> {
        let api: Api<ConfigMap> = Api::namespaced(client.clone(), namespace);
        let what = format!("ConfigMap {namespace}/{ROUTES_CONFIG_MAP}");
        let mut attempt = 0;
        loop {
            attempt += 1;
            let current = api
                .get_opt(ROUTES_CONFIG_MAP)
                .await
                .map_err(|e| Error::api(format!("reading the egress routes {what}"), e))?;
            let data = current
                .as_ref()
                .and_then(|c| c.data.clone())
                .unwrap_or_default();
            let (mut table, bad) = RouteTable::from_data(&data);
            for b in &bad {
                tracing::warn!(configmap = %what, key = %b.key, error = %b.error, "egress route left out");
            }
            let (out, changed) = f(&mut table)?;
            if !changed {
                self.remember(table);
                return Ok(out);
            }
            let mut cm = current.unwrap_or_else(|| ConfigMap {
                metadata: ObjectMeta {
                    name: Some(ROUTES_CONFIG_MAP.to_owned()),
                    namespace: Some(namespace.to_owned()),
                    labels: Some(BTreeMap::from([(
                        mc_core::labels::EXTENSION.to_owned(),
                        mc_core::labels::EXTENSION_VALUE.to_owned(),
                    )])),
                    ..ObjectMeta::default()
                },
                ..ConfigMap::default()
            });
            let mut kept = table.to_data()?;
            // Bad entries are someone's hand edit: keep them as they are.
            for b in bad {
                if let Some(v) = data.get(&b.key) {
                    kept.insert(b.key, v.clone());
                }
            }
            cm.data = Some(kept);
            let result = if cm.metadata.resource_version.is_some() {
                api.replace(ROUTES_CONFIG_MAP, &PostParams::default(), &cm)
                    .await
            } else {
                api.create(&PostParams::default(), &cm).await
            };
            match result {
                Ok(_) => {
                    self.remember(table);
                    return Ok(out);
                }
                Err(kube::Error::Api(s)) if (s.code == 409) && attempt < CONFLICT_RETRIES => {
                    tracing::debug!(configmap = %what, attempt, "route table changed meanwhile; retrying");
                }
                Err(e) => return Err(Error::api(format!("writing the egress routes {what}"), e)),
            }
        }
    }
}

/// The addresses (`ip:port`) of `gateway`, none when it is not resolved.
pub(crate) fn gateway_addresses(gateway: Option<&Gateway>) -> Vec<String> {
    gateway
        .map(|g| {
            g.ips
                .iter()
                .map(|ip| SocketAddr::new(*ip, g.port).to_string())
                .collect()
        })
        .unwrap_or_default()
}

/// Follows the egress Service's Endpoints: the ready Pod IPs, sorted.
async fn watch_pods(api: Api<Endpoints>, tx: watch::Sender<Vec<IpAddr>>) {
    let config = watcher::Config::default().fields(&format!("metadata.name={EGRESS_NAME}"));
    let mut stream = std::pin::pin!(watcher::watcher(api, config));
    let mut current: Option<Endpoints> = None;
    while let Some(event) = stream.next().await {
        match event {
            Ok(Event::Apply(ep) | Event::InitApply(ep)) => current = Some(ep),
            Ok(Event::Delete(_)) => current = None,
            Ok(Event::Init) => current = None,
            Ok(Event::InitDone) => {}
            Err(e) => {
                tracing::warn!(error = %e, "watching the egress Endpoints; retrying");
                tokio::time::sleep(std::time::Duration::from_secs(1)).await;
                continue;
            }
        }
        let ips = current.as_ref().map(ready_ips).unwrap_or_default();
        tx.send_if_modified(|old| {
            let changed = *old != ips;
            if changed {
                tracing::info!(pods = ?ips, "ready egress Pods");
                old.clone_from(&ips);
            }
            changed
        });
    }
}

/// The ready addresses of `ep`, sorted and deduplicated.
pub(crate) fn ready_ips(ep: &Endpoints) -> Vec<IpAddr> {
    let mut ips: Vec<IpAddr> = ep
        .subsets
        .iter()
        .flatten()
        .flat_map(|s| s.addresses.iter().flatten())
        .filter_map(|a| a.ip.parse().ok())
        .collect();
    ips.sort();
    ips.dedup();
    ips
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use k8s_openapi::api::core::v1::{EndpointAddress, EndpointSubset};

    #[test]
    fn only_ready_addresses_count_and_come_sorted() {
        let addr = |ip: &str| EndpointAddress {
            ip: ip.into(),
            ..Default::default()
        };
        let ep = Endpoints {
            subsets: Some(vec![
                EndpointSubset {
                    addresses: Some(vec![addr("198.18.0.9"), addr("198.18.0.2"), addr("bad")]),
                    not_ready_addresses: Some(vec![addr("198.18.0.3")]),
                    ports: None,
                },
                EndpointSubset {
                    addresses: Some(vec![addr("198.18.0.2")]),
                    ..Default::default()
                },
            ]),
            ..Default::default()
        };
        let want: Vec<IpAddr> = vec!["198.18.0.2".parse().unwrap(), "198.18.0.9".parse().unwrap()];
        assert_eq!(ready_ips(&ep), want);
    }
}
