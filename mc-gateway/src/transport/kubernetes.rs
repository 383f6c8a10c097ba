//! The Kubernetes resolver (stage 2, routing): reflectors on Services and EndpointSlices of the
//! gateway's own cluster map `<svc>.<ns>.svc.<domain>:<port>` to the ready endpoint addresses of
//! that service port (with the endpoint's port, i.e. the resolved targetPort), balanced round robin
//! or by power of two choices ([`Balance`]). `<host>.<svc>.<ns>.svc.<domain>:<port>` (a StatefulSet
//! Pod behind a headless Service) maps to the ready endpoint whose hostname is `<host>`, at the
//! same targetPort. A Service without any EndpointSlice falls back to its core/v1 Endpoints
//! (clusters or tools that only write Endpoints).

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::core::v1::{Endpoints, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use kube::Api;
use kube::runtime::reflector::{self, ObjectRef, Store};
use kube::runtime::{WatchStreamExt, watcher};

use crate::transport::resolve::{
    Balance, Balancer, InFlight, InFlightGuard, Resolve, ResolveFuture, RoundRobin,
};
use crate::transport::route::Target;
use crate::{Error, Result};

/// The label that ties an EndpointSlice to its Service.
const SERVICE_NAME_LABEL: &str = "kubernetes.io/service-name";

/// Resolves service names from Kubernetes caches.
pub struct KubeResolver {
    suffix: String,
    services: Store<Service>,
    slices: Store<EndpointSlice>,
    endpoints: Store<Endpoints>,
    rr: Mutex<PerTarget>,
    balancer: Balancer,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

/// Round-robin state per target, pruned of targets whose Service is gone.
#[derive(Debug, Default)]
struct PerTarget {
    map: HashMap<Target, Arc<RoundRobin>>,
    /// The map is swept when it grows past this size.
    prune_at: usize,
}

/// The smallest map size that triggers a sweep.
const PRUNE_MIN: usize = 64;

impl std::fmt::Debug for KubeResolver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KubeResolver")
            .field("suffix", &self.suffix)
            .field("services", &self.services.state().len())
            .field("slices", &self.slices.state().len())
            .finish_non_exhaustive()
    }
}

impl Drop for KubeResolver {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
    }
}

impl KubeResolver {
    /// Starts the reflectors (all namespaces) and waits up to `sync_timeout` for the first
    /// full list of each.
    pub async fn start(
        client: kube::Client,
        cluster_domain: &str,
        sync_timeout: Duration,
    ) -> Result<Self> {
        let (services, svc_writer) = reflector::store::<Service>();
        let (slices, slice_writer) = reflector::store::<EndpointSlice>();
        let (endpoints, ep_writer) = reflector::store::<Endpoints>();
        let ep_stream = reflector::reflector(
            ep_writer,
            watcher(
                Api::<Endpoints>::all(client.clone()),
                watcher::Config::default(),
            ),
        )
        .default_backoff()
        .touched_objects();
        let svc_stream = reflector::reflector(
            svc_writer,
            watcher(
                Api::<Service>::all(client.clone()),
                watcher::Config::default(),
            ),
        )
        .default_backoff()
        .touched_objects();
        let slice_stream = reflector::reflector(
            slice_writer,
            watcher(
                Api::<EndpointSlice>::all(client),
                watcher::Config::default().labels(SERVICE_NAME_LABEL),
            ),
        )
        .default_backoff()
        .touched_objects();
        let tasks = vec![
            tokio::spawn(drive(svc_stream, "services")),
            tokio::spawn(drive(slice_stream, "endpointslices")),
            tokio::spawn(drive(ep_stream, "endpoints")),
        ];
        let this = Self {
            suffix: format!(".svc.{}", cluster_domain.trim_matches('.')),
            services,
            slices,
            endpoints,
            rr: Mutex::default(),
            balancer: Balancer::default(),
            tasks,
        };
        let synced = async {
            let _ = this.services.wait_until_ready().await;
            let _ = this.slices.wait_until_ready().await;
            let _ = this.endpoints.wait_until_ready().await;
        };
        tokio::time::timeout(sync_timeout, synced)
            .await
            .map_err(|_| Error::Timeout {
                what: "the first list of Services and EndpointSlices (check RBAC: list/watch services, endpoints and discovery.k8s.io endpointslices)",
                after: sync_timeout,
            })?;
        Ok(this)
    }

    /// Balances with `balance`; with [`Balance::P2c`] the load is what [`Resolve::track`]
    /// counts into `load` (share it with the other resolvers of a chain).
    pub fn with_balance(mut self, balance: Balance, load: Arc<InFlight>) -> Self {
        self.balancer = Balancer::new(balance, load);
        self
    }

    /// Targets with balancing state (bounded: targets whose Service is gone are pruned).
    pub fn tracked_targets(&self) -> usize {
        self.per_target().map.len()
    }

    fn per_target(&self) -> std::sync::MutexGuard<'_, PerTarget> {
        match self.rr.lock() {
            Ok(m) => m,
            Err(p) => p.into_inner(),
        }
    }

    /// The Service a target name under this resolver's suffix names.
    fn service_of<'t>(&self, target: &'t Target) -> Option<ServiceName<'t>> {
        ServiceName::parse(target.name.strip_suffix(&self.suffix)?)
    }

    /// The round-robin state of a target; when the map has grown past its sweep size, first
    /// drops the targets whose Service no longer exists (amortised O(1) per call).
    fn round_robin(&self, target: &Target) -> Arc<RoundRobin> {
        let mut per = self.per_target();
        if let Some(rr) = per.map.get(target) {
            return rr.clone();
        }
        if per.map.len() >= per.prune_at {
            per.map.retain(|t, _| {
                self.service_of(t).is_some_and(|n| {
                    self.services
                        .get(&ObjectRef::new(n.service).within(n.namespace))
                        .is_some()
                })
            });
            per.prune_at = (per.map.len() * 2).max(PRUNE_MIN);
        }
        per.map.entry(target.clone()).or_default().clone()
    }

    /// The ready backend addresses of a target, in a stable order.
    pub fn addresses(&self, target: &Target) -> Result<Vec<SocketAddr>> {
        let unknown = |why: String| Error::UnknownService {
            name: target.name.clone(),
            port: target.port,
            why,
        };
        let name = self.service_of(target).ok_or_else(|| {
            unknown(format!(
                "not a <svc>.<ns>{0} or <host>.<svc>.<ns>{0} name",
                self.suffix
            ))
        })?;
        let (svc, ns) = (name.service, name.namespace);
        let service = self
            .services
            .get(&ObjectRef::new(svc).within(ns))
            .ok_or_else(|| unknown(format!("no Service {ns}/{svc}")))?;
        let spec = service.spec.as_ref();
        let port = spec
            .and_then(|s| s.ports.as_ref())
            .and_then(|ports| ports.iter().find(|p| p.port == i32::from(target.port)))
            .ok_or_else(|| unknown(format!("Service {ns}/{svc} has no port {}", target.port)))?;
        let port_name = port.name.clone().unwrap_or_default();
        let mut out = Vec::new();
        let mut any_slice = false;
        for slice in self.slices.state() {
            let meta = &slice.metadata;
            let owned = meta.namespace.as_deref() == Some(ns)
                && meta
                    .labels
                    .as_ref()
                    .and_then(|l| l.get(SERVICE_NAME_LABEL))
                    .is_some_and(|n| n == svc);
            if !owned {
                continue;
            }
            any_slice = true;
            let Some(number) = slice.ports.as_ref().and_then(|ports| {
                ports
                    .iter()
                    .find(|p| p.name.clone().unwrap_or_default() == port_name)
                    .and_then(|p| p.port)
                    .and_then(|p| u16::try_from(p).ok())
            }) else {
                continue;
            };
            for ep in &slice.endpoints {
                // A nil ready condition means ready (discovery.k8s.io/v1 semantics).
                let ready = ep.conditions.as_ref().and_then(|c| c.ready).unwrap_or(true);
                if !ready || !name.admits(ep.hostname.as_deref()) {
                    continue;
                }
                for a in &ep.addresses {
                    if let Ok(ip) = a.parse::<IpAddr>() {
                        out.push(SocketAddr::new(ip, number));
                    }
                }
            }
        }
        if !any_slice {
            out = self.legacy_endpoints(&name, &port_name);
        }
        out.sort();
        out.dedup();
        Ok(out)
    }

    /// Ready addresses from the core/v1 Endpoints of a Service (`notReadyAddresses` skipped).
    fn legacy_endpoints(&self, name: &ServiceName<'_>, port_name: &str) -> Vec<SocketAddr> {
        let key = ObjectRef::new(name.service).within(name.namespace);
        let Some(eps) = self.endpoints.get(&key) else {
            return Vec::new();
        };
        let mut out = Vec::new();
        for subset in eps.subsets.iter().flatten() {
            let Some(number) = subset
                .ports
                .iter()
                .flatten()
                .find(|p| p.name.as_deref().unwrap_or_default() == port_name)
                .and_then(|p| u16::try_from(p.port).ok())
            else {
                continue;
            };
            for a in subset.addresses.iter().flatten() {
                if !name.admits(a.hostname.as_deref()) {
                    continue;
                }
                if let Ok(ip) = a.ip.parse::<IpAddr>() {
                    out.push(SocketAddr::new(ip, number));
                }
            }
        }
        out
    }
}

/// What a target name names once the cluster suffix is removed: a Service
/// (`<svc>.<ns>`), or one endpoint of it by hostname (`<host>.<svc>.<ns>`, the DNS name
/// Kubernetes gives each Pod of a StatefulSet behind a headless Service).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct ServiceName<'a> {
    /// The endpoint's hostname, for a per-Pod name.
    host: Option<&'a str>,
    service: &'a str,
    namespace: &'a str,
}

impl<'a> ServiceName<'a> {
    /// Parses `<svc>.<ns>` or `<host>.<svc>.<ns>` (each part one non-empty label).
    fn parse(head: &'a str) -> Option<Self> {
        let mut labels = head.rsplit('.');
        let namespace = labels.next()?;
        let service = labels.next()?;
        let host = labels.next();
        let parts = [Some(namespace), Some(service), host];
        if labels.next().is_some() || parts.into_iter().flatten().any(str::is_empty) {
            return None;
        }
        Some(Self {
            host,
            service,
            namespace,
        })
    }

    /// Whether an endpoint with this `hostname` serves the name: any endpoint for a Service
    /// name, only the one of that hostname for a per-Pod name.
    fn admits(&self, hostname: Option<&str>) -> bool {
        self.host.is_none_or(|h| hostname == Some(h))
    }
}

async fn drive<S, T>(stream: S, what: &'static str)
where
    S: futures::Stream<Item = std::result::Result<T, watcher::Error>>,
{
    let mut stream = std::pin::pin!(stream);
    while let Some(item) = stream.next().await {
        if let Err(e) = item {
            tracing::warn!(error = %e, what, "watch error; retrying with backoff");
        }
    }
}

impl Resolve for KubeResolver {
    fn resolve<'a>(&'a self, target: &'a Target) -> ResolveFuture<'a> {
        Box::pin(async move {
            let addrs = match self.addresses(target) {
                Ok(a) => a,
                Err(e) => {
                    // The Service (or its port) is gone: so is its balancing state.
                    self.per_target().map.remove(target);
                    return Err(e);
                }
            };
            let rr = self.round_robin(target);
            self.balancer
                .pick(&addrs, &rr)
                .ok_or_else(|| Error::NoEndpoints {
                    name: target.name.clone(),
                    port: target.port,
                })
        })
    }

    fn track(&self, addr: SocketAddr) -> Option<InFlightGuard> {
        self.balancer.track(addr)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;
    use k8s_openapi::api::core::v1::{ServicePort, ServiceSpec};
    use k8s_openapi::api::discovery::v1::{Endpoint, EndpointConditions, EndpointPort};
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

    fn service(ns: &str, name: &str, ports: &[(&str, i32)]) -> Service {
        Service {
            metadata: ObjectMeta {
                name: Some(name.into()),
                namespace: Some(ns.into()),
                ..Default::default()
            },
            spec: Some(ServiceSpec {
                ports: Some(
                    ports
                        .iter()
                        .map(|(n, p)| ServicePort {
                            name: (!n.is_empty()).then(|| n.to_string()),
                            port: *p,
                            ..Default::default()
                        })
                        .collect(),
                ),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    fn slice(
        ns: &str,
        name: &str,
        svc: &str,
        ports: &[(&str, i32)],
        eps: &[(&str, Option<bool>)],
    ) -> EndpointSlice {
        EndpointSlice {
            metadata: ObjectMeta {
                name: Some(name.into()),
                namespace: Some(ns.into()),
                labels: Some([(SERVICE_NAME_LABEL.to_string(), svc.to_string())].into()),
                ..Default::default()
            },
            address_type: "IPv4".into(),
            ports: Some(
                ports
                    .iter()
                    .map(|(n, p)| EndpointPort {
                        name: (!n.is_empty()).then(|| n.to_string()),
                        port: Some(*p),
                        ..Default::default()
                    })
                    .collect(),
            ),
            endpoints: eps
                .iter()
                .map(|(ip, ready)| Endpoint {
                    addresses: vec![ip.to_string()],
                    conditions: Some(EndpointConditions {
                        ready: *ready,
                        ..Default::default()
                    }),
                    ..Default::default()
                })
                .collect(),
        }
    }

    fn resolver(services: Vec<Service>, slices: Vec<EndpointSlice>) -> KubeResolver {
        resolver_with(services, slices, Vec::new())
    }

    fn resolver_with(
        services: Vec<Service>,
        slices: Vec<EndpointSlice>,
        endpoints: Vec<Endpoints>,
    ) -> KubeResolver {
        let (svc_store, mut svc_writer) = reflector::store::<Service>();
        let (slice_store, mut slice_writer) = reflector::store::<EndpointSlice>();
        let (ep_store, mut ep_writer) = reflector::store::<Endpoints>();
        for e in endpoints {
            ep_writer.apply_watcher_event(&watcher::Event::Apply(e));
        }
        for s in services {
            svc_writer.apply_watcher_event(&watcher::Event::Apply(s));
        }
        for s in slices {
            slice_writer.apply_watcher_event(&watcher::Event::Apply(s));
        }
        KubeResolver {
            suffix: ".svc.cluster.local".into(),
            services: svc_store,
            slices: slice_store,
            endpoints: ep_store,
            rr: Mutex::default(),
            balancer: Balancer::default(),
            tasks: Vec::new(),
        }
    }

    #[tokio::test]
    async fn maps_the_service_port_to_ready_endpoints_and_target_port() {
        let r = resolver(
            vec![
                service("shop", "web", &[("http", 80), ("admin", 9990)]),
                service("shop", "empty", &[("", 80)]),
            ],
            vec![
                slice(
                    "shop",
                    "web-a",
                    "web",
                    &[("http", 8080), ("admin", 9991)],
                    &[
                        ("10.0.0.1", Some(true)),
                        ("10.0.0.2", Some(false)),
                        ("10.0.0.3", None),
                    ],
                ),
                slice(
                    "shop",
                    "web-b",
                    "web",
                    &[("http", 8080)],
                    &[("10.0.0.4", Some(true))],
                ),
                // Same service name, other namespace: ignored.
                slice(
                    "other",
                    "web-x",
                    "web",
                    &[("http", 8080)],
                    &[("10.9.9.9", Some(true))],
                ),
            ],
        );
        let web = Target::new("web.shop.svc.cluster.local", 80);
        let addrs = r.addresses(&web).unwrap();
        let want: Vec<SocketAddr> = ["10.0.0.1:8080", "10.0.0.3:8080", "10.0.0.4:8080"]
            .iter()
            .map(|s| s.parse().unwrap())
            .collect();
        assert_eq!(addrs, want);
        let admin = r
            .addresses(&Target::new("web.shop.svc.cluster.local", 9990))
            .unwrap();
        assert_eq!(admin.len(), 2);
        assert!(admin.iter().all(|a| a.port() == 9991));

        // Round robin over the ready ones.
        let mut seen = std::collections::HashSet::new();
        for _ in 0..3 {
            seen.insert(r.resolve(&web).await.unwrap());
        }
        assert_eq!(seen.len(), 3);

        let r = &r;
        let err = |t: Target| async move { r.resolve(&t).await.unwrap_err().reason() };
        assert_eq!(
            err(Target::new("empty.shop.svc.cluster.local", 80)).await,
            "no_endpoints"
        );
        assert_eq!(
            err(Target::new("nope.shop.svc.cluster.local", 80)).await,
            "unknown_service"
        );
        assert_eq!(
            err(Target::new("web.shop.svc.cluster.local", 81)).await,
            "unknown_service"
        );
        assert_eq!(
            err(Target::new("web.shop.example.com", 80)).await,
            "unknown_service"
        );
    }

    #[tokio::test]
    async fn p2c_sends_new_work_to_the_endpoint_with_less_in_flight() {
        let load = Arc::new(InFlight::default());
        let r = resolver(
            vec![service("shop", "web", &[("http", 80)])],
            vec![slice(
                "shop",
                "web-a",
                "web",
                &[("http", 8080)],
                &[("10.0.0.1", Some(true)), ("10.0.0.2", Some(true))],
            )],
        )
        .with_balance(Balance::P2c, load.clone());
        let web = Target::new("web.shop.svc.cluster.local", 80);
        let first = r.resolve(&web).await.unwrap();
        let held = r.track(first).unwrap();
        assert_eq!(load.get(first), 1);
        for _ in 0..50 {
            assert_ne!(r.resolve(&web).await.unwrap(), first);
        }
        drop(held);
        assert_eq!(load.tracked(), 0);
        // Round robin (the default) does not count.
        let rr = resolver(vec![], vec![]);
        assert!(rr.track(first).is_none());
    }

    #[tokio::test]
    async fn balancing_state_of_deleted_services_is_pruned() {
        let (services, mut svc_writer) = reflector::store::<Service>();
        let (slices, mut slice_writer) = reflector::store::<EndpointSlice>();
        let (endpoints, _ep_writer) = reflector::store::<Endpoints>();
        let add = |i: usize,
                   svc_w: &mut reflector::store::Writer<Service>,
                   sl_w: &mut reflector::store::Writer<EndpointSlice>| {
            let name = format!("s{i}");
            svc_w.apply_watcher_event(&watcher::Event::Apply(service(
                "shop",
                &name,
                &[("http", 80)],
            )));
            sl_w.apply_watcher_event(&watcher::Event::Apply(slice(
                "shop",
                &format!("{name}-a"),
                &name,
                &[("http", 8080)],
                &[("10.0.0.1", Some(true))],
            )));
        };
        let target = |i: usize| Target::new(&format!("s{i}.shop.svc.cluster.local"), 80);
        for i in 0..200 {
            add(i, &mut svc_writer, &mut slice_writer);
        }
        let r = KubeResolver {
            suffix: ".svc.cluster.local".into(),
            services,
            slices,
            endpoints,
            rr: Mutex::default(),
            balancer: Balancer::default(),
            tasks: Vec::new(),
        };
        for i in 0..200 {
            r.resolve(&target(i)).await.unwrap();
        }
        assert_eq!(r.tracked_targets(), 200);
        // Every Service but s0 is deleted.
        for i in 1..200 {
            svc_writer.apply_watcher_event(&watcher::Event::Delete(service(
                "shop",
                &format!("s{i}"),
                &[("http", 80)],
            )));
        }
        // A deleted one asked for again is refused, and its state goes at once.
        assert_eq!(
            r.resolve(&target(1)).await.unwrap_err().reason(),
            "unknown_service"
        );
        assert_eq!(r.tracked_targets(), 199);
        // The others go at the next sweep, when the map has doubled since the last one
        // (200 entries swept at 128 -> next sweep at 256): 60 new Services get there.
        for i in 200..260 {
            add(i, &mut svc_writer, &mut slice_writer);
            r.resolve(&target(i)).await.unwrap();
        }
        assert_eq!(r.tracked_targets(), 61, "s0 and the 60 new ones");
    }

    #[test]
    fn service_names_and_per_pod_names_parse() {
        let name = |host, service, namespace| ServiceName {
            host,
            service,
            namespace,
        };
        assert_eq!(
            ServiceName::parse("web.shop"),
            Some(name(None, "web", "shop"))
        );
        assert_eq!(
            ServiceName::parse("web-0.web.shop"),
            Some(name(Some("web-0"), "web", "shop"))
        );
        for bad in [
            "",
            "shop",
            ".shop",
            "web.",
            "a.b.c.d",
            ".web.shop",
            "a..shop",
        ] {
            assert_eq!(ServiceName::parse(bad), None, "{bad:?}");
        }
        let pod = name(Some("web-0"), "web", "shop");
        assert!(pod.admits(Some("web-0")));
        assert!(!pod.admits(Some("web-1")) && !pod.admits(None));
        assert!(name(None, "web", "shop").admits(Some("web-1")));
    }

    #[test]
    fn a_per_pod_name_maps_to_that_hostname_at_the_target_port() {
        let mut headless = slice(
            "shop",
            "db-a",
            "db",
            &[("sql", 15432)],
            &[
                ("10.0.1.1", Some(true)),
                ("10.0.1.2", Some(true)),
                ("10.0.1.3", Some(false)),
            ],
        );
        for (ep, host) in headless.endpoints.iter_mut().zip(["db-0", "db-1", "db-2"]) {
            ep.hostname = Some(host.into());
        }
        let r = resolver(
            vec![service("shop", "db", &[("sql", 5432)])],
            vec![headless],
        );
        let at = |name: &str, port| r.addresses(&Target::new(name, port));
        let one = |s: &str| vec![s.parse::<SocketAddr>().unwrap()];
        assert_eq!(
            at("db-1.db.shop.svc.cluster.local", 5432).unwrap(),
            one("10.0.1.2:15432")
        );
        assert_eq!(
            at("db-0.db.shop.svc.cluster.local", 5432).unwrap(),
            one("10.0.1.1:15432")
        );
        // The whole Service still balances over every ready endpoint.
        assert_eq!(at("db.shop.svc.cluster.local", 5432).unwrap().len(), 2);
        // A Pod that is not ready, or not there, has no endpoint; a port the Service lacks
        // is unknown, as for the Service itself.
        assert!(
            at("db-2.db.shop.svc.cluster.local", 5432)
                .unwrap()
                .is_empty()
        );
        assert!(
            at("db-9.db.shop.svc.cluster.local", 5432)
                .unwrap()
                .is_empty()
        );
        let err = at("db-0.db.shop.svc.cluster.local", 15432).unwrap_err();
        assert_eq!(err.reason(), "unknown_service");
        let err = at("x.db-0.db.shop.svc.cluster.local", 5432).unwrap_err();
        assert!(
            err.to_string()
                .contains("<host>.<svc>.<ns>.svc.cluster.local"),
            "{err}"
        );
    }

    #[test]
    fn a_per_pod_name_uses_the_endpoints_hostnames_without_slices() {
        let eps: Endpoints = serde_json::from_value(serde_json::json!({
            "metadata": {"name": "db", "namespace": "shop"},
            "subsets": [{
                "addresses": [{"ip": "10.1.0.1", "hostname": "db-0"}, {"ip": "10.1.0.2", "hostname": "db-1"}],
                "ports": [{"name": "sql", "port": 15432}]
            }]
        }))
        .unwrap();
        let r = resolver_with(
            vec![service("shop", "db", &[("sql", 5432)])],
            Vec::new(),
            vec![eps],
        );
        let addrs = r
            .addresses(&Target::new("db-1.db.shop.svc.cluster.local", 5432))
            .unwrap();
        assert_eq!(addrs, vec!["10.1.0.2:15432".parse::<SocketAddr>().unwrap()]);
    }

    #[test]
    fn falls_back_to_endpoints_when_there_is_no_slice() {
        let eps: Endpoints = serde_json::from_value(serde_json::json!({
            "metadata": {"name": "legacy", "namespace": "shop"},
            "subsets": [{
                "addresses": [{"ip": "10.1.0.1"}],
                "notReadyAddresses": [{"ip": "10.1.0.2"}],
                "ports": [{"name": "http", "port": 8080}]
            }]
        }))
        .unwrap();
        let r = resolver_with(
            vec![service("shop", "legacy", &[("http", 80)])],
            Vec::new(),
            vec![eps],
        );
        let addrs = r
            .addresses(&Target::new("legacy.shop.svc.cluster.local", 80))
            .unwrap();
        assert_eq!(addrs, vec!["10.1.0.1:8080".parse::<SocketAddr>().unwrap()]);
    }
}
