//! Source side: `mc-gateway egress`, the source-side egress, through which unmeshed Pods reach
//! mirrored Services.
//!
//! The mirror controllers write the route table ([`mc_core::egress::RouteTable`]) into the
//! ConfigMap [`ROUTES_CONFIG_MAP`]; each route is one egress port leading to a target service
//! behind a remote gateway. The egress listens on every route's port and, for each accepted
//! connection, opens mTLS to the route's gateway (its addresses tried in order) as the egress
//! identity, sends the transport header with the target and no session protocol, and splices
//! bytes both ways: TCP, HTTP/1.1, h2c and WebSocket alike.
//!
//! Routes come and go while it runs: a new route binds its port, a removed one stops
//! accepting (open connections finish), a changed one serves new connections with its new
//! gateways, identity and target. The decision of what to open, close and change is pure
//! (`plan`, unit-tested); the listeners carry it out.

use std::collections::BTreeMap;
use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::core::v1::ConfigMap;
use kube::Api;
use kube::runtime::{WatchStreamExt, watcher};
use mc_core::egress::{ROUTES_CONFIG_MAP, Route, RouteTable};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

use crate::client::GatewayConnector;
use crate::egress::balance::{Federated, PROBE_INTERVAL, Upstream};
use crate::metrics::EgressMetrics;
use crate::opaque::splice;
use crate::stream::Activity;
use crate::tls::{CertSource, ReloadingCert, ReloadingClientConfig};
use crate::transport::route::Target;
use crate::{Error, Result};

mod balance;

/// The ConfigMap `data` of the route table; `None` until the source first read it.
pub type RouteData = Option<BTreeMap<String, String>>;

/// What the listeners must do to serve a new table, by port.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
struct Plan {
    /// Ports of new routes: bind them.
    open: Vec<u16>,
    /// Ports whose route is gone: stop accepting.
    close: Vec<u16>,
    /// Ports whose route changed (Link, target, gateways or identity): new connections use
    /// the new route.
    changed: Vec<u16>,
}

/// What to do to go from the routes served now (`current`) to `next`, both by port.
fn plan(current: &BTreeMap<u16, Route>, next: &BTreeMap<u16, Route>) -> Plan {
    let mut p = Plan::default();
    for (port, route) in next {
        match current.get(port) {
            None => p.open.push(*port),
            Some(old) if old != route => p.changed.push(*port),
            Some(_) => {}
        }
    }
    p.close = current
        .keys()
        .filter(|port| !next.contains_key(port))
        .copied()
        .collect();
    p
}

/// The route table of ConfigMap `data`; entries that are not routes are logged and left out.
fn table_of(data: &BTreeMap<String, String>) -> RouteTable {
    let (table, bad) = RouteTable::from_data(data);
    for b in bad {
        tracing::warn!(key = %b.key, error = %b.error, "egress route left out");
    }
    table
}

/// A route as served: a mirror's (one target through its gateway) or a federated Service's
/// (balanced over its members).
#[derive(Debug)]
struct Active {
    route: Route,
    serve: Serve,
}

/// How an [`Active`] route connects.
#[derive(Debug)]
enum Serve {
    /// A mirror: the target, through the remote gateway.
    Mirror {
        target: Target,
        connector: GatewayConnector,
    },
    /// A federated Service: one of its members.
    Federated(Federated),
}

impl Active {
    fn new(route: &Route, tls: &Arc<ReloadingClientConfig>) -> Result<Self> {
        let serve = if route.is_federated() {
            Serve::Federated(Federated::new(route, tls))
        } else {
            Serve::Mirror {
                target: Target::parse_authority(&route.target, None)?,
                connector: GatewayConnector::reloading(
                    tls.clone(),
                    route.gateways.clone(),
                    &route.identity,
                )?,
            }
        };
        Ok(Self {
            route: route.clone(),
            serve,
        })
    }

    /// A connection to where the route leads, and the member it went to (federated routes).
    async fn connect(&self) -> Result<(Option<String>, Box<dyn Upstream>)> {
        match &self.serve {
            Serve::Mirror { target, connector } => {
                Ok((None, Box::new(connector.connect(target, None).await?)))
            }
            Serve::Federated(f) => {
                let (member, up) = f.connect().await?;
                Ok((Some(member), up))
            }
        }
    }
}

/// One bound route port.
#[derive(Debug)]
struct Listener {
    current: Arc<RwLock<Arc<Active>>>,
    task: tokio::task::JoinHandle<()>,
    /// Probes the members of a federated route (idles for a mirror's).
    probe: tokio::task::JoinHandle<()>,
}

impl Listener {
    fn active(&self) -> Arc<Active> {
        read(&self.current)
    }
}

fn read(current: &RwLock<Arc<Active>>) -> Arc<Active> {
    match current.read() {
        Ok(g) => g.clone(),
        Err(poisoned) => poisoned.into_inner().clone(),
    }
}

/// The egress's listeners, one per route.
#[derive(Debug)]
struct Listeners {
    listen_ip: IpAddr,
    tls: Arc<ReloadingClientConfig>,
    shared: Arc<Shared>,
    ports: BTreeMap<u16, Listener>,
}

/// What every connection of every route shares.
#[derive(Debug)]
struct Shared {
    metrics: Arc<EgressMetrics>,
    /// How many client connections are open (what a drain waits on).
    open: watch::Sender<usize>,
    idle_timeout: Duration,
}

impl Listeners {
    /// No listener yet; routes will listen on `listen_ip`, connect with `tls`, count into
    /// `metrics`, and close connections idle for `idle_timeout`.
    fn new(
        listen_ip: IpAddr,
        tls: Arc<ReloadingClientConfig>,
        metrics: Arc<EgressMetrics>,
        idle_timeout: Duration,
    ) -> Self {
        Self {
            listen_ip,
            tls,
            shared: Arc::new(Shared {
                metrics,
                open: watch::Sender::new(0),
                idle_timeout,
            }),
            ports: BTreeMap::new(),
        }
    }

    /// Serves `table`: binds new routes, stops removed ones, and switches changed ones.
    /// Routes that cannot be served (a target that is not `name:port`, an identity that is
    /// not a DNS name) are logged and left out. Returns whether every other route is now
    /// listening (`false` when a port could not be bound; apply the table again later).
    async fn apply(&mut self, table: &RouteTable) -> bool {
        let mut wanted = BTreeMap::new();
        for (key, route) in table.routes() {
            match Active::new(route, &self.tls) {
                Ok(a) => {
                    wanted.insert(route.listen, Arc::new(a));
                }
                Err(e) => tracing::warn!(%key, error = %e, "egress route left out"),
            }
        }
        let current = self
            .ports
            .iter()
            .map(|(p, l)| (*p, l.active().route.clone()))
            .collect();
        let next = wanted.iter().map(|(p, a)| (*p, a.route.clone())).collect();
        let plan = plan(&current, &next);
        for port in plan.close {
            if let Some(l) = self.ports.remove(&port) {
                let target = l.active().route.target.clone();
                l.probe.abort();
                l.task.abort();
                // Wait until the listening socket is closed.
                let _ = l.task.await;
                tracing::info!(port, %target, "egress route removed");
            }
        }
        let mut complete = true;
        for (port, active) in wanted {
            if plan.changed.contains(&port) {
                if let Some(l) = self.ports.get(&port)
                    && let Ok(mut cur) = l.current.write()
                {
                    let route = active.route.clone();
                    *cur = active;
                    drop(cur);
                    tracing::info!(port, target = %route.target, gateways = ?route.gateways, identity = %route.identity, "egress route changed");
                }
            } else if plan.open.contains(&port) {
                complete &= self.open(port, active).await;
            }
        }
        self.shared
            .metrics
            .routes
            .set(i64::try_from(self.ports.len()).unwrap_or(i64::MAX));
        complete
    }

    /// Binds `port` for `active`; logs and returns `false` when it cannot.
    async fn open(&mut self, port: u16, active: Arc<Active>) -> bool {
        let addr = SocketAddr::new(self.listen_ip, port);
        let listener = match TcpListener::bind(addr).await {
            Ok(l) => l,
            Err(source) => {
                let e = Error::Bind {
                    addr,
                    flag: "--listen-ip",
                    source,
                };
                tracing::warn!(port, target = %active.route.target, error = %e, "egress route not listening; retrying");
                return false;
            }
        };
        tracing::info!(port, target = %active.route.target, link = %active.route.link, "egress route added");
        let current = Arc::new(RwLock::new(active));
        let task = tokio::spawn(accept_loop(listener, current.clone(), self.shared.clone()));
        let probe = tokio::spawn(probe_loop(current.clone(), self.shared.clone()));
        self.ports.insert(
            port,
            Listener {
                current,
                task,
                probe,
            },
        );
        true
    }

    /// Stops every listener (open connections finish on their own).
    fn close_all(&mut self) {
        for (_, l) in std::mem::take(&mut self.ports) {
            l.probe.abort();
            l.task.abort();
        }
        self.shared.metrics.routes.set(0);
    }

    /// Waits up to `within` until no client connection is open; returns how many still are.
    async fn drain(&self, within: Duration) -> usize {
        let mut open = self.shared.open.subscribe();
        let _ = tokio::time::timeout(within, open.wait_for(|n| *n == 0)).await;
        *self.shared.open.borrow()
    }
}

async fn accept_loop(
    listener: TcpListener,
    current: Arc<RwLock<Arc<Active>>>,
    shared: Arc<Shared>,
) {
    loop {
        let (tcp, peer) = match listener.accept().await {
            Ok(a) => a,
            Err(e) => {
                tracing::warn!(error = %e, "accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let active = read(&current);
        tokio::spawn(connection(tcp, peer, active, shared.clone()));
    }
}

/// Probes the members of the route in `current` every [`PROBE_INTERVAL`] while it is a
/// federated one, and exports their health.
async fn probe_loop(current: Arc<RwLock<Arc<Active>>>, shared: Arc<Shared>) {
    let mut tick = tokio::time::interval(PROBE_INTERVAL);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let active = read(&current);
        if let Serve::Federated(f) = &active.serve {
            f.probe().await;
            for (member, healthy) in f.health() {
                shared
                    .metrics
                    .member_healthy
                    .get_or_create(&EgressMetrics::member_labels(&active.route.target, &member))
                    .set(i64::from(healthy));
            }
        }
    }
}

/// Serves one client connection of `active`'s route.
async fn connection(tcp: TcpStream, peer: SocketAddr, active: Arc<Active>, shared: Arc<Shared>) {
    let metrics = &shared.metrics;
    let labels = EgressMetrics::labels(&active.route.link, &active.route.target);
    metrics.connections.get_or_create(&labels).inc();
    metrics.open.inc();
    shared.open.send_modify(|n| *n += 1);
    let _ = tcp.set_nodelay(true);
    match active.connect().await {
        Ok((member, up)) => {
            if let Some(member) = member {
                metrics
                    .member_connections
                    .get_or_create(&EgressMetrics::member_labels(&active.route.target, &member))
                    .inc();
            }
            if let Err(e) = splice(tcp, up, shared.idle_timeout, Activity::new()).await {
                tracing::debug!(%peer, target = %active.route.target, error = %e, "connection ended");
            }
        }
        Err(e) => {
            metrics.connect_failures.get_or_create(&labels).inc();
            tracing::warn!(%peer, port = active.route.listen, target = %active.route.target, error = %e, "no gateway reachable; client connection closed");
        }
    }
    metrics.open.dec();
    shared.open.send_modify(|n| *n = n.saturating_sub(1));
}

/// Follows the watch events of the route ConfigMap: the table's data after each change.
#[derive(Debug, Default)]
struct ConfigMapEvents {
    relist: Option<BTreeMap<String, String>>,
}

impl ConfigMapEvents {
    /// The data to serve after `event`, when it settles one (a missing ConfigMap is empty).
    fn on(&mut self, event: watcher::Event<ConfigMap>) -> Option<BTreeMap<String, String>> {
        match event {
            watcher::Event::Init => {
                self.relist = None;
                None
            }
            watcher::Event::InitApply(cm) => {
                self.relist = Some(cm.data.unwrap_or_default());
                None
            }
            watcher::Event::InitDone => Some(self.relist.take().unwrap_or_default()),
            watcher::Event::Apply(cm) => Some(cm.data.unwrap_or_default()),
            watcher::Event::Delete(_) => Some(BTreeMap::new()),
        }
    }
}

/// Watches ConfigMap [`ROUTES_CONFIG_MAP`] in `namespace` and publishes its data into `tx`
/// after every change, until `tx` has no receiver. Watch errors are logged and retried with
/// backoff.
pub async fn watch_config_map(client: kube::Client, namespace: &str, tx: watch::Sender<RouteData>) {
    let api = Api::<ConfigMap>::namespaced(client, namespace);
    let config = watcher::Config::default().fields(&format!("metadata.name={ROUTES_CONFIG_MAP}"));
    let mut stream = std::pin::pin!(watcher(api, config).default_backoff());
    let mut events = ConfigMapEvents::default();
    while let Some(item) = stream.next().await {
        match item {
            Ok(event) => {
                if let Some(data) = events.on(event)
                    && tx.send(Some(data)).is_err()
                {
                    return;
                }
            }
            Err(e) => {
                tracing::warn!(error = %e, %namespace, configmap = ROUTES_CONFIG_MAP, "watch error; retrying with backoff")
            }
        }
    }
}

/// The ConfigMap `data` map held by the YAML or JSON file `path` (a missing file is empty).
fn read_routes_file(path: &Path) -> Result<BTreeMap<String, String>> {
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(BTreeMap::new()),
        Err(source) => {
            return Err(Error::ReadFile {
                what: "routes",
                flag: "--routes-file",
                path: path.to_owned(),
                source,
            });
        }
    };
    if text.trim().is_empty() {
        return Ok(BTreeMap::new());
    }
    serde_yaml::from_str(&text).map_err(|source| Error::RoutesFile {
        path: path.to_owned(),
        source,
    })
}

/// Reads `path` every `every` and publishes its data into `tx` when it changed, until `tx`
/// has no receiver. An unreadable file is logged and the previous table kept.
pub async fn poll_routes_file(path: PathBuf, every: Duration, tx: watch::Sender<RouteData>) {
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        match read_routes_file(&path) {
            Ok(data) => {
                tx.send_if_modified(|cur| {
                    let changed = cur.as_ref() != Some(&data);
                    if changed {
                        *cur = Some(data);
                    }
                    changed
                });
                if tx.is_closed() {
                    return;
                }
            }
            Err(e) => {
                tracing::warn!(error = %e, "routes file unreadable; keeping the previous table")
            }
        }
    }
}

/// How the egress runs.
#[derive(Debug, Clone)]
pub struct EgressConfig {
    /// The address the route ports listen on.
    pub listen_ip: IpAddr,
    /// The admin server (/live, /ready, /metrics), if any.
    pub admin: Option<SocketAddr>,
    /// The egress identity's leaf certificate: files, or minted from an issuer and renewed.
    pub certificate: CertSource,
    /// The trust anchors the gateways must chain to (PEM).
    pub trust_anchors: PathBuf,
    /// How often the certificate, key and anchor files are checked for changes.
    pub reload_interval: Duration,
    /// Idle connection timeout.
    pub idle_timeout: Duration,
    /// On shutdown, how long open connections may take to finish after the ports close.
    pub drain_timeout: Duration,
}

/// Runs the egress: serves the route tables published into `routes` until `shutdown`
/// resolves, then closes every port and waits up to the drain timeout for open connections
/// to finish. `/ready` answers 200 once the first table is served with every port bound, and
/// 503 from shutdown on.
pub async fn run(
    config: EgressConfig,
    mut routes: watch::Receiver<RouteData>,
    shutdown: impl Future<Output = ()>,
) -> Result<()> {
    let metrics = Arc::new(EgressMetrics::new());
    let cert = ReloadingCert::new(config.certificate, metrics.certificate.clone())?;
    let tls = ReloadingClientConfig::with_cert(cert, &config.trust_anchors)?;
    let ready = Arc::new(AtomicBool::new(false));
    let admin = match config.admin {
        Some(addr) => {
            let listener = TcpListener::bind(addr)
                .await
                .map_err(|source| Error::Bind {
                    addr,
                    flag: "--admin",
                    source,
                })?;
            tracing::info!(admin = %listener.local_addr().unwrap_or(addr), "admin server listening");
            Some(tokio::spawn(crate::admin::serve(
                listener,
                crate::admin::Admin {
                    metrics: metrics.clone(),
                    ready: ready.clone(),
                    tls: None,
                    handshake_timeout: Duration::from_secs(10),
                },
            )))
        }
        None => None,
    };
    let reloader = tls.spawn_watch(config.reload_interval);
    let mut listeners = Listeners::new(config.listen_ip, tls, metrics, config.idle_timeout);
    let mut retry = tokio::time::interval(config.reload_interval);
    retry.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut last: Option<RouteTable> = None;
    let mut complete = true;
    tokio::pin!(shutdown);
    let result = loop {
        tokio::select! {
            () = &mut shutdown => break Ok(()),
            changed = routes.changed() => {
                if changed.is_err() {
                    break Err(Error::Io {
                        what: "following the route table",
                        source: std::io::Error::other("the route source stopped"),
                    });
                }
                let data = routes.borrow_and_update().clone();
                if let Some(data) = data {
                    let table = table_of(&data);
                    complete = listeners.apply(&table).await;
                    tracing::info!(routes = table.len(), complete, "egress route table applied");
                    ready.store(complete, Ordering::SeqCst);
                    last = Some(table);
                }
            }
            _ = retry.tick(), if !complete => {
                if let Some(table) = &last {
                    complete = listeners.apply(table).await;
                    ready.store(complete, Ordering::SeqCst);
                }
            }
        }
    };
    ready.store(false, Ordering::SeqCst);
    listeners.close_all();
    let open = *listeners.shared.open.borrow();
    if open > 0 {
        tracing::info!(open, drain = ?config.drain_timeout, "ports closed; draining open connections");
        let left = listeners.drain(config.drain_timeout).await;
        if left > 0 {
            tracing::warn!(left, "drain timeout; closing the connections still open");
        }
    }
    reloader.abort();
    if let Some(t) = admin {
        t.abort();
    }
    tracing::info!("egress stopped");
    result
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;

    fn route(listen: u16, target: &str, gateways: &[&str]) -> Route {
        Route {
            listen,
            link: "east".into(),
            target: target.into(),
            gateways: gateways.iter().map(|g| (*g).to_owned()).collect(),
            identity: "gw.id".into(),
            members: BTreeMap::new(),
        }
    }

    fn by_port(routes: &[Route]) -> BTreeMap<u16, Route> {
        routes.iter().map(|r| (r.listen, r.clone())).collect()
    }

    #[test]
    fn the_plan_opens_new_ports_closes_removed_ones_and_switches_changed_ones() {
        let a = route(20000, "a.ns.svc.cluster.local:80", &["198.18.0.5:4143"]);
        let b = route(20001, "b.ns.svc.cluster.local:80", &["198.18.0.5:4143"]);
        let c = route(20002, "c.ns.svc.cluster.local:80", &["198.18.0.5:4143"]);
        let current = by_port(&[a.clone(), b.clone()]);
        let mut b2 = b.clone();
        b2.gateways.insert(0, "198.18.0.6:4143".into());
        let next = by_port(&[b2, c]);
        assert_eq!(
            plan(&current, &next),
            Plan {
                open: vec![20002],
                close: vec![20000],
                changed: vec![20001],
            }
        );
        // Nothing to do for the same routes; everything to close for none.
        assert_eq!(plan(&current, &current), Plan::default());
        let none = BTreeMap::new();
        assert_eq!(plan(&current, &none).close, vec![20000, 20001]);
        assert_eq!(plan(&none, &current).open, vec![20000, 20001]);
        // A new identity or target on the same port is a change, not a reopen.
        let mut a2 = a.clone();
        a2.identity = "other.id".into();
        assert_eq!(
            plan(&by_port(std::slice::from_ref(&a)), &by_port(&[a2])).changed,
            vec![20000]
        );
        let mut a3 = a.clone();
        a3.target = "z.ns.svc.cluster.local:81".into();
        assert_eq!(plan(&by_port(&[a]), &by_port(&[a3])).changed, vec![20000]);
    }

    /// Two ports of the route range that are free on loopback now.
    fn free_ports() -> (u16, u16) {
        let mut free = mc_core::egress::PORT_RANGE
            .rev()
            .step_by(13)
            .filter(|p| std::net::TcpListener::bind(("127.0.0.1", *p)).is_ok());
        (free.next().unwrap(), free.next().unwrap())
    }

    async fn accepts(port: u16) -> bool {
        TcpStream::connect(("127.0.0.1", port)).await.is_ok()
    }

    #[tokio::test]
    async fn listeners_bind_new_routes_close_removed_ones_and_retry_a_busy_port() {
        let dir = tempfile::tempdir().unwrap();
        let (c, k, a) = (
            dir.path().join("c.pem"),
            dir.path().join("k.pem"),
            dir.path().join("a.pem"),
        );
        let (cert, key) = crate::tls::tests::self_signed_as("egress.example", false);
        std::fs::write(&c, cert).unwrap();
        std::fs::write(&k, key).unwrap();
        std::fs::write(&a, crate::tls::tests::self_signed_as("ca.example", true).0).unwrap();
        let tls = ReloadingClientConfig::load(&c, &k, &a).unwrap();
        let metrics = Arc::new(EgressMetrics::new());
        let mut listeners = Listeners::new(
            "127.0.0.1".parse().unwrap(),
            tls,
            metrics.clone(),
            Duration::from_secs(1),
        );
        let (p1, p2) = free_ports();
        let json = |r: &Route| serde_json::to_string(r).unwrap();
        let r1 = route(p1, "a.ns.svc.cluster.local:80", &["127.0.0.1:9"]);
        let r2 = route(p2, "b.ns.svc.cluster.local:80", &["127.0.0.1:9"]);
        let both = RouteTable::from_data(&BTreeMap::from([
            ("a".to_owned(), json(&r1)),
            ("b".to_owned(), json(&r2)),
        ]))
        .0;

        // A busy port: the others listen, and the table is not complete until it is free.
        let busy = std::net::TcpListener::bind(("127.0.0.1", p1)).unwrap();
        assert!(!listeners.apply(&both).await);
        assert!(accepts(p2).await);
        assert_eq!(metrics.routes.get(), 1);
        drop(busy);
        assert!(listeners.apply(&both).await);
        assert!(accepts(p1).await);
        assert_eq!(metrics.routes.get(), 2);

        // A route whose target is not name:port is left out, not fatal.
        let bad = route(p1, "no-port", &["127.0.0.1:9"]);
        let table = RouteTable::from_data(&BTreeMap::from([
            ("a".to_owned(), json(&bad)),
            ("b".to_owned(), json(&r2)),
        ]))
        .0;
        assert!(listeners.apply(&table).await);
        assert!(!accepts(p1).await);
        assert!(accepts(p2).await);

        // An empty table closes every port.
        assert!(listeners.apply(&RouteTable::default()).await);
        assert!(!accepts(p2).await);
        assert_eq!(metrics.routes.get(), 0);
    }

    fn config_map(data: &[(&str, &str)]) -> ConfigMap {
        ConfigMap {
            data: Some(
                data.iter()
                    .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                    .collect(),
            ),
            ..Default::default()
        }
    }

    #[test]
    fn watch_events_settle_on_the_config_map_data_and_a_missing_one_is_empty() {
        let mut ev = ConfigMapEvents::default();
        // A relist that finds nothing: the empty table.
        assert_eq!(ev.on(watcher::Event::Init), None);
        assert_eq!(ev.on(watcher::Event::InitDone), Some(BTreeMap::new()));
        // A relist that finds the ConfigMap: its data, once the relist is done.
        assert_eq!(ev.on(watcher::Event::Init), None);
        assert_eq!(
            ev.on(watcher::Event::InitApply(config_map(&[("k", "v")]))),
            None
        );
        let got = ev.on(watcher::Event::InitDone).unwrap();
        assert_eq!(got.get("k").map(String::as_str), Some("v"));
        // Changes and deletion.
        let got = ev
            .on(watcher::Event::Apply(config_map(&[("k2", "v2")])))
            .unwrap();
        assert_eq!(got.len(), 1);
        assert!(got.contains_key("k2"));
        assert_eq!(
            ev.on(watcher::Event::Delete(config_map(&[]))),
            Some(BTreeMap::new())
        );
        // A ConfigMap without data is an empty table.
        assert_eq!(
            ev.on(watcher::Event::Apply(ConfigMap::default())),
            Some(BTreeMap::new())
        );
    }

    #[test]
    fn the_routes_file_is_a_data_map_and_a_missing_one_is_empty() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("routes.yaml");
        assert!(read_routes_file(&path).unwrap().is_empty());
        std::fs::write(&path, "a.x.80: '{\"listen\":20000}'\n").unwrap();
        let data = read_routes_file(&path).unwrap();
        assert_eq!(
            data.get("a.x.80").map(String::as_str),
            Some("{\"listen\":20000}")
        );
        std::fs::write(&path, "[1, 2]").unwrap();
        let err = read_routes_file(&path).unwrap_err().to_string();
        assert!(err.contains("routes.yaml"), "{err}");
    }
}
