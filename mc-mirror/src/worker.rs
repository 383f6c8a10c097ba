//! One Link: leader election, local caches, the credentials Secret, the remote session, the
//! gateway tracker, the reconcile workers and the status writer.
//!
//! Failure domains are separate: losing the target cluster (bad credentials, API server down)
//! stops updates for this Link only, never deletes a mirror, and is reported in metrics, Events
//! and the log, with retries and backoff. A credential rotation replaces the remote session
//! without a restart; the previous remote view keeps serving reads until the new one has synced,
//! so a rotation never looks like "everything was unexported".

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use futures::{Stream, StreamExt as _};
use k8s_openapi::api::core::v1::{Endpoints, Namespace, ObjectReference, Secret, Service};
use kube::runtime::WatchStreamExt as _;
use kube::runtime::events::{Event as KubeEvent, EventType, Recorder, Reporter};
use kube::runtime::watcher::{self, Event};
use kube::{Api, Client, Resource as _, ResourceExt as _};
use mc_core::egress::LinkMode;
use mc_core::link::{Link, ValidLink};
use mc_core::mirror::RemoteEndpoints;
use tokio::sync::watch;
use tokio::task::JoinSet;

use crate::cache::{self, Cache};
use crate::compact::{LocalEndpoints, LocalService, RemoteService};
use crate::config::Options;
use crate::controller::{LinkHead, ReadyBoard};
use crate::egress::EgressState;
use crate::lease::{Elector, lease_name};
use crate::metrics::Metrics;
use crate::probe::{self, GatewayView, ProbeConfig};
use crate::queue::Queue;
use crate::remote::SecretRef;
use crate::status::StatusBook;
use crate::{Error, reconcile};

/// What every worker shares with the controller.
#[derive(Clone)]
pub(crate) struct Env {
    pub client: Client,
    pub options: Arc<Options>,
    pub metrics: Arc<Metrics>,
    pub board: ReadyBoard,
}

/// A unit of reconcile work.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub(crate) enum Key {
    /// The remote Service `namespace/name` and everything mirrored from it.
    Service(String, String),
    /// The probe Service `mc-probe-<link>` and its Endpoints.
    Probe,
}

/// The remote caches of one session (one set of credentials), in compact form (see
/// [`crate::compact`]).
pub(crate) struct RemoteView {
    /// Services matching `spec.selector` (gateway mode); `None` when the selector is empty.
    pub gateway_services: Option<Cache<RemoteService>>,
    /// Services matching `spec.remoteDiscoverySelector`; `None` when empty.
    pub discovery_services: Option<Cache<RemoteService>>,
    /// The Endpoints of the Services in `gateway_services`, summarised; `None` when the
    /// selector is empty.
    ///
    /// They are watched without a label selector and joined to the exported Services by
    /// namespace and name, as upstream reads them by name: the endpoints controller copies a
    /// Service's labels onto its Endpoints only for Services with a selector, so the Endpoints
    /// a user writes by hand for a selector-less Service (an external database) carry none.
    /// Only the Endpoints of exported Services are kept (see [`cache::watch_joined`]); those
    /// whose last event came before their Service was exported are listed by name when the
    /// Service is reconciled (see [`RemoteView::endpoints_of`]). A deleted one is kept as
    /// [`RemoteEndpoints::Missing`] while its Service stays exported.
    pub endpoints: Option<Cache<RemoteEndpoints>>,
    /// The target cluster's client (for [`RemoteView::endpoints_of`]).
    pub client: Client,
}

impl RemoteView {
    /// Whether `ns/name` is exported in gateway mode (the Endpoints watch keeps only those).
    pub(crate) fn gateway_exported(&self, ns: &str, name: &str) -> bool {
        self.gateway_services
            .as_ref()
            .is_some_and(|s| s.contains(ns, name))
    }

    /// The summarised Endpoints of the remote Service `ns/name`: from the cache, else (the
    /// Endpoints have not changed since the Service was exported) listed by name (`list`
    /// with a field selector: the same RBAC as the watch) and cached unless a watch event was
    /// cached meanwhile. Services not exported in gateway mode need none ([`RemoteEndpoints::Missing`]).
    pub(crate) async fn endpoints_of(
        &self,
        ns: &str,
        name: &str,
    ) -> crate::Result<RemoteEndpoints> {
        let Some(cache) = &self.endpoints else {
            return Ok(RemoteEndpoints::Missing);
        };
        if let Some(e) = cache.get(ns, name, Clone::clone) {
            return Ok(e);
        }
        if !self.gateway_exported(ns, name) {
            return Ok(RemoteEndpoints::Missing);
        }
        let api: Api<Endpoints> = Api::namespaced(self.client.clone(), ns);
        let params = kube::api::ListParams::default().fields(&format!("metadata.name={name}"));
        let listed = api.list(&params).await.map_err(|e| {
            Error::api(
                format!("listing the Endpoints {ns}/{name} in the target cluster"),
                e,
            )
        })?;
        let read = listed
            .items
            .first()
            .map_or(RemoteEndpoints::Missing, RemoteEndpoints::from_endpoints);
        cache.insert_if_vacant(ns, name, read.clone());
        Ok(cache.get(ns, name, Clone::clone).unwrap_or(read))
    }
}

/// The local caches, in compact form (see [`crate::compact`]).
pub(crate) struct LocalView {
    /// Services labelled `cluster-name=<cluster>` (mirrors, endpoint mirrors, probe Service).
    pub services: Cache<LocalService>,
    /// Endpoints labelled `cluster-name=<cluster>`.
    pub endpoints: Cache<LocalEndpoints>,
    /// Every namespace (by name, under namespace `""`).
    pub namespaces: Cache<()>,
}

/// Everything a reconcile of one Link needs.
pub(crate) struct Ctx {
    pub env: Env,
    pub link_name: String,
    pub link: ValidLink,
    pub local: LocalView,
    pub remote: RwLock<Option<Arc<RemoteView>>>,
    pub gateway: watch::Receiver<GatewayView>,
    /// Egress mode: the mode served, the ready egress Pods, the route table.
    pub egress: EgressState,
    pub book: Arc<StatusBook>,
    pub queue: Queue<Key>,
    recorder: Recorder,
    link_ref: ObjectReference,
    retries: Mutex<HashMap<Key, u32>>,
    /// When the first remote view was installed and the keys queued then that have not been
    /// reconciled yet: status patches wait for the initial sync, so they do not compete with the
    /// mirror writes.
    initial_sync: Mutex<Option<(Instant, HashSet<Key>)>>,
    /// `true` once the initial sync is over (or took longer than [`INITIAL_SYNC_STATUS_HOLD`]).
    initial_sync_done: AtomicBool,
    /// Last problem reported for the Link itself (credentials, reachability), to emit Events
    /// only on a change.
    link_problem: Mutex<Option<String>>,
}

impl Ctx {
    /// The Link's target cluster name.
    pub(crate) fn cluster(&self) -> &str {
        &self.link.cluster_name
    }

    /// The current remote view, once one has synced.
    pub(crate) fn remote(&self) -> Option<Arc<RemoteView>> {
        self.remote.read().ok().and_then(|g| g.clone())
    }

    /// Counts a write.
    pub(crate) fn wrote(&self, verb: &str, resource: &str) {
        self.env.metrics.write(self.cluster(), verb, resource);
    }

    /// Publishes an Event about the Link in the source cluster (best effort).
    pub(crate) async fn event(&self, warning: bool, reason: &str, note: String) {
        let ev = KubeEvent {
            type_: if warning {
                EventType::Warning
            } else {
                EventType::Normal
            },
            reason: reason.to_string(),
            note: Some(note.chars().take(1000).collect()),
            action: "Mirror".to_string(),
            secondary: None,
        };
        match self.recorder.publish(&ev, &self.link_ref).await {
            Ok(()) => self.wrote("create", "events"),
            Err(e) => tracing::debug!(error = %e, "publishing an Event failed"),
        }
    }

    /// Reports a problem of the Link as a whole (metric, log, `TargetReachable=False` status
    /// condition; Event on change).
    async fn link_problem(&self, e: &Error) {
        self.env.metrics.error(self.cluster(), e.reason());
        self.env
            .metrics
            .target_reachable
            .get_or_create(&Metrics::cluster(self.cluster()))
            .set(0);
        tracing::warn!(link = %self.link_name, error = %e, "Link cannot mirror");
        let text = e.to_string();
        let failure = e.target_failure();
        self.book.set_target(Some((failure, text.clone())));
        let changed = self
            .link_problem
            .lock()
            .map(|mut g| {
                let changed = g.as_deref() != Some(text.as_str());
                *g = Some(text.clone());
                changed
            })
            .unwrap_or(false);
        if changed {
            self.event(true, failure.as_str(), text).await;
        }
    }

    async fn link_ok(&self) {
        self.env
            .metrics
            .target_reachable
            .get_or_create(&Metrics::cluster(self.cluster()))
            .set(1);
        self.book.set_target(None);
        let was = self.link_problem.lock().ok().and_then(|mut g| g.take());
        if was.is_some() {
            self.event(
                false,
                "TargetReachable",
                "the target cluster answers again".into(),
            )
            .await;
        }
    }

    /// Queues every key: each exported remote Service, each local mirror, each status entry and
    /// the probe (used after a (re)list: this is also the orphan GC pass).
    pub(crate) fn enqueue_all(&self) {
        self.env
            .metrics
            .endpoint_repairs
            .get_or_create(&Metrics::cluster(self.cluster()))
            .inc();
        self.egress.invalidate();
        for key in reconcile::all_keys(self) {
            self.queue.push(key);
        }
    }

    fn retry_later(self: &Arc<Self>, key: Key) {
        let attempt = self
            .retries
            .lock()
            .map(|mut r| {
                let n = r.entry(key.clone()).or_insert(0);
                *n = n.saturating_add(1);
                *n
            })
            .unwrap_or(1);
        let delay = Duration::from_millis(100)
            .saturating_mul(1u32 << attempt.min(10))
            .min(Duration::from_secs(30));
        let ctx = Arc::downgrade(self);
        tokio::spawn(async move {
            tokio::time::sleep(delay).await;
            if let Some(ctx) = ctx.upgrade() {
                ctx.queue.push(key);
            }
        });
    }

    /// Status patches carry the whole list: during the initial sync they would compete with
    /// the mirror writes for the API server, so they wait until every key queued when the
    /// remote caches first synced has been reconciled once (at most
    /// [`INITIAL_SYNC_STATUS_HOLD`]).
    fn status_may_be_written(&self) -> bool {
        if self.initial_sync_done.load(Ordering::Relaxed) {
            return true;
        }
        let started_at = self
            .initial_sync
            .lock()
            .ok()
            .and_then(|g| g.as_ref().map(|(t, _)| *t));
        match started_at {
            // No remote view yet: there are no mirror entries to hold back, only the Link-level
            // conditions (a target unreachable from the start must still be reported).
            None => true,
            Some(t) if t.elapsed() >= INITIAL_SYNC_STATUS_HOLD => {
                self.finish_initial_sync();
                true
            }
            Some(_) => false,
        }
    }

    /// Starts the initial sync (once per worker): `keys` are about to be queued.
    fn start_initial_sync(&self, keys: &[Key]) {
        if let Ok(mut g) = self.initial_sync.lock()
            && g.is_none()
            && !self.initial_sync_done.load(Ordering::Relaxed)
        {
            *g = Some((Instant::now(), keys.iter().cloned().collect()));
        }
    }

    /// Called after each reconcile of `key`: when the last key of the initial sync is done,
    /// the status writer is woken.
    fn reconciled(&self, key: &Key) {
        if self.initial_sync_done.load(Ordering::Relaxed) {
            return;
        }
        let last = self
            .initial_sync
            .lock()
            .is_ok_and(|mut g| match g.as_mut() {
                Some((_, pending)) => pending.remove(key) && pending.is_empty(),
                None => false,
            });
        if last {
            self.finish_initial_sync();
        }
    }

    fn finish_initial_sync(&self) {
        if !self.initial_sync_done.swap(true, Ordering::Relaxed) {
            let took = self
                .initial_sync
                .lock()
                .ok()
                .and_then(|mut g| g.take())
                .map(|(t, _)| t.elapsed());
            tracing::info!(link = %self.link_name, ?took, "initial sync done");
            self.book.touch();
        }
    }

    fn succeeded(&self, key: &Key) {
        if let Ok(mut r) = self.retries.lock() {
            r.remove(key);
        }
    }
}

/// The longest the Link status waits for the initial sync to finish.
const INITIAL_SYNC_STATUS_HOLD: Duration = Duration::from_secs(300);

/// Runs Link `link` until `stop` turns true: waits for the lease, works while leading, goes
/// back to waiting when the lease is lost, releases it on stop. Mirrors are never deleted here.
pub(crate) async fn run_link(env: Env, link: Link, mut stop: watch::Receiver<bool>) {
    let name = link.name_any();
    let valid = match link.spec.validate() {
        Ok(v) => v,
        Err(e) => {
            tracing::error!(link = %name, error = %e, "invalid Link spec; waiting for a change");
            env.metrics.error(
                link.spec.target_cluster_name.as_deref().unwrap_or(&name),
                "invalid_link",
            );
            publish_once(&env, &link, &format!("invalid Link spec: {e}")).await;
            env.board.set_link(&name, true);
            let _ = stop.wait_for(|s| *s).await;
            return;
        }
    };
    // Upstream's Lease, keyed by the Link's name as upstream's controller keys it (its check
    // looks it up by `spec.targetClusterName`, normally the same): an upstream controller for this
    // Link and this worker exclude each other.
    let leases = Api::namespaced(env.client.clone(), &env.options.namespace);
    let elector = Elector::new(
        leases,
        lease_name(&name),
        env.options.identity.clone(),
        env.options.lease,
    );
    loop {
        // A standby replica is ready: it has nothing to sync.
        env.board.set_link(&name, true);
        tokio::select! {
            () = elector.acquire() => {}
            _ = stop.wait_for(|s| *s) => return,
        }
        tracing::info!(link = %name, identity = %elector.identity(), "leading");
        env.board.set_link(&name, false);
        env.metrics.workers.inc();
        let stopped = tokio::select! {
            () = work(env.clone(), link.clone(), valid.clone()) => false,
            () = elector.hold() => {
                tracing::warn!(link = %name, "lost the lease: stopping work (mirrors are kept)");
                false
            }
            _ = stop.wait_for(|s| *s) => true,
        };
        env.metrics.workers.dec();
        env.metrics.forget_gateway(&valid.cluster_name);
        if stopped {
            elector.release().await;
            return;
        }
    }
}

async fn publish_once(env: &Env, link: &Link, note: &str) {
    let recorder = Recorder::new(env.client.clone(), reporter(env));
    let ev = KubeEvent {
        type_: EventType::Warning,
        reason: "InvalidLink".into(),
        note: Some(note.chars().take(1000).collect()),
        action: "Validate".into(),
        secondary: None,
    };
    let _ = recorder.publish(&ev, &link.object_ref(&())).await;
}

fn reporter(env: &Env) -> Reporter {
    Reporter {
        controller: "mc-mirror".into(),
        instance: Some(env.options.identity.clone()),
    }
}

/// The work of a leader for one Link; returns only if every task ended (it should not).
async fn work(env: Env, link: Link, valid: ValidLink) {
    let cluster = valid.cluster_name.clone();
    let name = link.name_any();
    let selector = format!("{}={}", mc_core::labels::CLUSTER_NAME, cluster);
    let local_cfg = watcher::Config::default().labels(&selector);
    let (services, svc_stream) = cache::watch(
        Api::<Service>::all(env.client.clone()),
        local_cfg.clone(),
        LocalService::of,
    );
    let (endpoints, ep_stream) = cache::watch(
        Api::<Endpoints>::all(env.client.clone()),
        local_cfg,
        LocalEndpoints::of,
    );
    let (namespaces, ns_stream) = cache::watch(
        Api::<Namespace>::all(env.client.clone()),
        watcher::Config::default(),
        |_| (),
    );

    // The status as it is now, so unchanged entries are not rewritten after a restart.
    let links: Api<Link> = Api::namespaced(env.client.clone(), &env.options.namespace);
    let current = match links.get_opt(&name).await {
        Ok(Some(l)) => l,
        _ => link.clone(),
    };
    let base_status = current.status.clone().unwrap_or_default();
    let annotated = current
        .metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get(mc_core::link::GATEWAY_STATUS_ANNOTATION))
        .cloned();
    let book = Arc::new(StatusBook::seeded(current.status.as_ref()));

    let (gateway_view, gateway_summary) = match &valid.gateway {
        Some(gw) => {
            let probe = valid.probe.as_ref().map(|p| ProbeConfig {
                cluster: cluster.clone(),
                port: p.port,
                path: p.path.clone(),
                period: p.period,
                timeout: p.timeout,
                failure_threshold: p.failure_threshold,
            });
            if probe.is_none() {
                env.metrics
                    .gateway_enabled
                    .get_or_create(&Metrics::cluster(&cluster))
                    .set(0);
            }
            let g = probe::start(
                gw.addresses.clone(),
                env.options.gateway_resolve_period,
                probe,
                env.metrics.clone(),
            );
            (g.view, Some(g.summary))
        }
        None => {
            let (tx, rx) = watch::channel(GatewayView {
                addresses: Vec::new(),
                alive: true,
                resolved: true,
            });
            // Keep the sender alive for as long as the receiver: a closed channel is fine too.
            drop(tx);
            (rx, None)
        }
    };

    let mode = crate::egress::resolve_mode(
        &env.client,
        &current,
        &env.options.namespace,
        &valid.linkerd_namespace,
    )
    .await;
    tracing::info!(link = %name, mode = mode.as_str(), "serving mirrors");
    let (egress, egress_pods) = EgressState::start(&env.client, &env.options.namespace, mode);

    let ctx = Arc::new(Ctx {
        egress,
        recorder: Recorder::new(env.client.clone(), reporter(&env)),
        link_ref: current.object_ref(&()),
        env: env.clone(),
        link_name: name.clone(),
        link: valid.clone(),
        local: LocalView {
            services,
            endpoints,
            namespaces,
        },
        remote: RwLock::new(None),
        gateway: gateway_view,
        book: book.clone(),
        queue: Queue::new(),
        retries: Mutex::new(HashMap::new()),
        initial_sync: Mutex::new(None),
        initial_sync_done: AtomicBool::new(false),
        link_problem: Mutex::new(None),
    });

    let mut tasks = JoinSet::new();
    let local_synced = Arc::new(LocalSync::default());
    tasks.spawn(local_services(
        ctx.clone(),
        svc_stream,
        local_synced.clone(),
    ));
    tasks.spawn(local_endpoints(
        ctx.clone(),
        ep_stream,
        local_synced.clone(),
    ));
    tasks.spawn(local_namespaces(
        ctx.clone(),
        ns_stream,
        local_synced.clone(),
    ));
    tasks.spawn(credentials(ctx.clone()));
    for _ in 0..env.options.concurrency.max(1) {
        tasks.spawn(reconcile_loop(ctx.clone()));
    }
    tasks.spawn(recheck(ctx.clone()));
    tasks.spawn(gauges(ctx.clone()));
    tasks.spawn(gateway_changes(ctx.clone()));
    tasks.spawn(egress_changes(ctx.clone()));
    tasks.spawn(crate::federated::run(ctx.clone()));
    if let Some(task) = egress_pods {
        tasks.spawn(task);
        tasks.spawn(crate::federated_egress::run(ctx.clone()));
    }
    if let Some(summary) = gateway_summary {
        tasks.spawn(gateway_summaries(ctx.clone(), summary));
    }
    {
        let ctx = ctx.clone();
        let writer_ctx = ctx.clone();
        tasks.spawn(async move {
            let may = {
                let ctx = ctx.clone();
                move || ctx.status_may_be_written()
            };
            let wrote = move |resource: &str| writer_ctx.wrote("patch", resource);
            // The patch response is decoded without the status it carries.
            let links: Api<LinkHead> =
                Api::namespaced(ctx.env.client.clone(), &ctx.env.options.namespace);
            ctx.book
                .writer(
                    links,
                    ctx.link_name.clone(),
                    base_status,
                    Duration::from_millis(200),
                    Duration::from_secs(60),
                    annotated,
                    may,
                    wrote,
                )
                .await;
        });
    }
    while let Some(r) = tasks.join_next().await {
        if let Err(e) = r {
            tracing::error!(link = %name, error = %e, "a worker task ended");
        }
    }
}

/// Tracks the first sync of the three local caches.
#[derive(Default)]
struct LocalSync {
    services: AtomicBool,
    endpoints: AtomicBool,
    namespaces: AtomicBool,
}

impl LocalSync {
    fn all(&self) -> bool {
        self.services.load(Ordering::Relaxed)
            && self.endpoints.load(Ordering::Relaxed)
            && self.namespaces.load(Ordering::Relaxed)
    }
}

fn synced(ctx: &Ctx, sync: &LocalSync, flag: &AtomicBool) {
    flag.store(true, Ordering::Relaxed);
    if sync.all() {
        ctx.env.board.set_link(&ctx.link_name, true);
        // A (re)list of a local cache: re-examine everything (orphans included).
        if ctx.remote().is_some() {
            ctx.enqueue_all();
        }
    }
}

async fn local_services(
    ctx: Arc<Ctx>,
    stream: impl Stream<Item = watcher::Result<Event<Service>>>,
    sync: Arc<LocalSync>,
) {
    let mut stream = std::pin::pin!(stream);
    while let Some(ev) = stream.next().await {
        match ev {
            Ok(Event::Apply(s) | Event::Delete(s)) => {
                if let Some(key) = reconcile::key_of_local(&ctx, &s.metadata) {
                    ctx.queue.push(key);
                }
            }
            Ok(Event::InitDone) => synced(&ctx, &sync, &sync.services),
            Ok(_) => {}
            Err(e) => watch_error(&ctx, "local Services", &e),
        }
    }
}

async fn local_endpoints(
    ctx: Arc<Ctx>,
    stream: impl Stream<Item = watcher::Result<Event<Endpoints>>>,
    sync: Arc<LocalSync>,
) {
    let mut stream = std::pin::pin!(stream);
    while let Some(ev) = stream.next().await {
        match ev {
            Ok(Event::Apply(e) | Event::Delete(e)) => {
                if let Some(key) = reconcile::key_of_local(&ctx, &e.metadata) {
                    ctx.queue.push(key);
                }
            }
            Ok(Event::InitDone) => synced(&ctx, &sync, &sync.endpoints),
            Ok(_) => {}
            Err(e) => watch_error(&ctx, "local Endpoints", &e),
        }
    }
}

async fn local_namespaces(
    ctx: Arc<Ctx>,
    stream: impl Stream<Item = watcher::Result<Event<Namespace>>>,
    sync: Arc<LocalSync>,
) {
    let mut stream = std::pin::pin!(stream);
    while let Some(ev) = stream.next().await {
        match ev {
            Ok(Event::Apply(ns)) => {
                // A namespace appeared (or changed): mirror what waits for it.
                for key in reconcile::remote_keys_in(&ctx, &ns.name_any()) {
                    ctx.queue.push(key);
                }
            }
            Ok(Event::InitDone) => synced(&ctx, &sync, &sync.namespaces),
            Ok(_) => {}
            Err(e) => watch_error(&ctx, "local Namespaces", &e),
        }
    }
}

fn watch_error(ctx: &Ctx, what: &str, e: &watcher::Error) {
    tracing::warn!(link = %ctx.link_name, error = %e, "watching {what} failed; retrying with backoff");
    ctx.env.metrics.error(ctx.cluster(), "watch");
}

/// Watches the credentials Secret; each new kubeconfig starts a new remote session.
async fn credentials(ctx: Arc<Ctx>) {
    let sref = SecretRef {
        link: ctx.link_name.clone(),
        namespace: ctx.env.options.namespace.clone(),
        name: ctx.link.credentials_secret.clone(),
    };
    let api: Api<Secret> = Api::namespaced(ctx.env.client.clone(), &sref.namespace);
    let cfg = watcher::Config::default().fields(&format!("metadata.name={}", sref.name));
    let mut stream = std::pin::pin!(watcher::watcher(api, cfg).default_backoff());
    let mut current: Option<Vec<u8>> = None;
    let mut session: Option<tokio::task::JoinHandle<()>> = None;
    let mut seen = false;
    while let Some(ev) = stream.next().await {
        let secret = match ev {
            Ok(Event::Apply(s) | Event::InitApply(s)) => s,
            Ok(Event::Init) => {
                seen = false;
                continue;
            }
            Ok(Event::InitDone) => {
                if !seen && current.is_none() {
                    ctx.link_problem(&sref.missing()).await;
                }
                continue;
            }
            Ok(Event::Delete(_)) => {
                // The running session keeps its credentials; nothing is deleted.
                ctx.link_problem(&sref.missing()).await;
                continue;
            }
            Err(e) => {
                watch_error(&ctx, "the credentials Secret", &e);
                continue;
            }
        };
        seen = true;
        let bytes = match sref.kubeconfig_of(&secret) {
            Ok(b) => b,
            Err(e) => {
                ctx.link_problem(&e).await;
                continue;
            }
        };
        if current.as_ref() == Some(&bytes) {
            continue;
        }
        tracing::info!(link = %ctx.link_name, "credentials loaded; (re)starting the remote session");
        current = Some(bytes.clone());
        if let Some(old) = session.take() {
            old.abort();
        }
        session = Some(tokio::spawn(remote_session(
            ctx.clone(),
            sref.clone(),
            bytes,
        )));
    }
    if let Some(old) = session {
        old.abort();
    }
}

/// One remote session: connect (with backoff), then watch the exported Services and their
/// Endpoints until aborted.
async fn remote_session(ctx: Arc<Ctx>, sref: SecretRef, kubeconfig: Vec<u8>) {
    let mut backoff = Duration::from_millis(500);
    let client = loop {
        let attempt = async {
            let (config, server) = sref.config(&kubeconfig).await?;
            let client = sref.client_of(config, |c| {
                ctx.env.metrics.counted_client(c, "target", ctx.cluster())
            })?;
            sref.check(&client, &server).await?;
            Ok::<_, Error>(client)
        };
        match attempt.await {
            Ok(c) => break c,
            Err(e) => {
                ctx.link_problem(&e).await;
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(30));
            }
        }
    };
    ctx.link_ok().await;
    let link = &ctx.link;
    let gateway_mode = link.gateway.is_some() && !link.selector.is_empty();
    let discovery_mode = !link.remote_discovery_selector.is_empty();
    let services = Api::<Service>::all(client.clone());
    let mut streams = futures::stream::SelectAll::new();
    let mut view = RemoteView {
        gateway_services: None,
        discovery_services: None,
        endpoints: None,
        client: client.clone(),
    };
    // The Endpoints watch starts once the exported Services are listed, so that its list is
    // joined against them.
    let mut endpoints_stream = None;
    let mut pending = 0usize;
    let excluded = link.excluded_annotations.clone();
    let remote_service = move |s: &Service| RemoteService::of(s, &excluded);
    if gateway_mode {
        let q = link.selector.to_query();
        let (store, s) = cache::watch(
            services.clone(),
            watcher::Config::default().labels(&q),
            remote_service.clone(),
        );
        let exported = store.clone();
        view.gateway_services = Some(store);
        streams.push(
            s.map(|e| e.map(|ev| RemoteEvent::from_service(ev).gateway_services()))
                .boxed(),
        );
        let keep = exported.clone();
        let (store, s) = cache::watch_joined(
            Api::<Endpoints>::all(client.clone()),
            watcher::Config::default(),
            RemoteEndpoints::from_endpoints,
            move |ns, name| keep.contains(ns, name),
            || RemoteEndpoints::Missing,
        );
        view.endpoints = Some(store);
        // Events of Endpoints whose Service is not exported are not worth a reconcile.
        endpoints_stream = Some(
            s.map(move |e| {
                e.map(|ev| match RemoteEvent::from_endpoints(ev) {
                    RemoteEvent::Key(ns, name) if !exported.contains(&ns, &name) => {
                        RemoteEvent::Other
                    }
                    other => other,
                })
            })
            .boxed(),
        );
        pending += 2;
    }
    if discovery_mode {
        let q = link.remote_discovery_selector.to_query();
        let (store, s) = cache::watch(
            services,
            watcher::Config::default().labels(&q),
            remote_service,
        );
        view.discovery_services = Some(store);
        streams.push(s.map(|e| e.map(RemoteEvent::from_service)).boxed());
        pending += 1;
    }
    let view = Arc::new(view);
    if pending == 0 {
        install(&ctx, view.clone());
    }
    let mut healthy_since: Option<Instant> = None;
    while let Some(ev) = streams.next().await {
        match ev {
            Ok(RemoteEvent::Key(ns, name)) => {
                if ctx.remote().is_some_and(|v| Arc::ptr_eq(&v, &view)) {
                    ctx.queue.push(Key::Service(ns, name));
                }
                if healthy_since.is_none() {
                    healthy_since = Some(Instant::now());
                    ctx.link_ok().await;
                }
            }
            Ok(event @ (RemoteEvent::Relisted | RemoteEvent::GatewayServicesListed)) => {
                if matches!(event, RemoteEvent::GatewayServicesListed)
                    && let Some(s) = endpoints_stream.take()
                {
                    streams.push(s);
                }
                if pending > 0 {
                    pending -= 1;
                    if pending == 0 {
                        install(&ctx, view.clone());
                    }
                } else if ctx.remote().is_some_and(|v| Arc::ptr_eq(&v, &view)) {
                    // A relist (410 Gone, reconnect): re-examine everything, GC included.
                    ctx.enqueue_all();
                }
                healthy_since = Some(Instant::now());
                ctx.link_ok().await;
            }
            Ok(RemoteEvent::Other) => {}
            Err(e) => {
                healthy_since = None;
                let err = Error::TargetUnreachable {
                    link: ctx.link_name.clone(),
                    server: String::new(),
                    reason: format!("watch failed: {e}"),
                };
                ctx.link_problem(&err).await;
            }
        }
    }
}

fn install(ctx: &Arc<Ctx>, view: Arc<RemoteView>) {
    if let Ok(mut g) = ctx.remote.write() {
        *g = Some(view);
    }
    tracing::info!(link = %ctx.link_name, "remote caches synced");
    let keys = reconcile::all_keys(ctx);
    ctx.start_initial_sync(&keys);
    for key in keys {
        ctx.queue.push(key);
    }
}

enum RemoteEvent {
    Key(String, String),
    Relisted,
    /// A (re)list of the gateway-mode Services is done.
    GatewayServicesListed,
    Other,
}

impl RemoteEvent {
    /// Marks the end of a list of the gateway-mode Services.
    fn gateway_services(self) -> RemoteEvent {
        match self {
            RemoteEvent::Relisted => RemoteEvent::GatewayServicesListed,
            other => other,
        }
    }

    fn from_service(e: Event<Service>) -> RemoteEvent {
        RemoteEvent::from_event(e)
    }

    fn from_endpoints(e: Event<Endpoints>) -> RemoteEvent {
        RemoteEvent::from_event(e)
    }

    fn from_event<K: kube::Resource>(e: Event<K>) -> RemoteEvent {
        match e {
            Event::Apply(o) | Event::Delete(o) => {
                let m = o.meta();
                match (&m.namespace, &m.name) {
                    (Some(ns), Some(n)) => RemoteEvent::Key(ns.clone(), n.clone()),
                    _ => RemoteEvent::Other,
                }
            }
            Event::InitDone => RemoteEvent::Relisted,
            Event::Init | Event::InitApply(_) => RemoteEvent::Other,
        }
    }
}

async fn reconcile_loop(ctx: Arc<Ctx>) {
    loop {
        let key = ctx.queue.pop().await;
        let start = Instant::now();
        let result = reconcile::reconcile(&ctx, &key).await;
        ctx.env
            .metrics
            .reconcile_duration
            .get_or_create(&Metrics::cluster(ctx.cluster()))
            .observe(start.elapsed().as_secs_f64());
        match result {
            Ok(()) => ctx.succeeded(&key),
            Err(e) => {
                ctx.env.metrics.error(ctx.cluster(), e.reason());
                tracing::warn!(link = %ctx.link_name, ?key, error = %e, "reconcile failed; retrying with backoff");
                ctx.retry_later(key.clone());
            }
        }
        ctx.queue.done(&key);
        ctx.reconciled(&key);
    }
}

/// Re-examines failed keys (conflicts, missing namespaces, errors) periodically, and everything
/// at a slower pace (anti-entropy; reads only, writes only on a difference).
async fn recheck(ctx: Arc<Ctx>) {
    let period = ctx.env.options.recheck_period;
    let mut rounds = 0u32;
    loop {
        tokio::time::sleep(period).await;
        if ctx.remote().is_none() {
            continue;
        }
        rounds = rounds.wrapping_add(1);
        if rounds.is_multiple_of(10) {
            ctx.enqueue_all();
        } else {
            for (ns, name) in ctx.book.failed_keys() {
                ctx.queue.push(Key::Service(ns, name));
            }
        }
    }
}

/// Updates the mirror and export count gauges every few seconds.
async fn gauges(ctx: Arc<Ctx>) {
    let labels = Metrics::cluster(ctx.cluster());
    loop {
        let mirrors = ctx
            .local
            .services
            .count(|s| s.meta.labels.get(mc_core::labels::MIRRORED_SERVICE) == Some("true"));
        let exported = ctx.remote().map_or(0, |v| {
            [&v.gateway_services, &v.discovery_services]
                .into_iter()
                .flatten()
                .map(Cache::len)
                .sum::<usize>()
        });
        let m = &ctx.env.metrics;
        m.mirror_services
            .get_or_create(&labels)
            .set(i64::try_from(mirrors).unwrap_or(i64::MAX));
        m.exported_services
            .get_or_create(&labels)
            .set(i64::try_from(exported).unwrap_or(i64::MAX));
        tokio::time::sleep(Duration::from_secs(5)).await;
    }
}

/// On a change of gateway addresses or liveness, re-examine every gateway-mode mirror (only
/// Endpoints that differ are written).
async fn gateway_changes(ctx: Arc<Ctx>) {
    let mut rx = ctx.gateway.clone();
    while rx.changed().await.is_ok() {
        if ctx.remote().is_some() {
            ctx.enqueue_all();
        }
    }
    std::future::pending::<()>().await;
}

/// Egress mode: every mirror follows the ready egress Pods. Gateway mode: the Link's routes
/// left from an earlier egress mode are removed once (retried until it works).
async fn egress_changes(ctx: Arc<Ctx>) {
    if ctx.egress.mode != LinkMode::Egress {
        let mut delay = Duration::from_secs(1);
        loop {
            let ns = &ctx.env.options.namespace;
            match ctx
                .egress
                .remove_link(&ctx.env.client, ns, ctx.cluster())
                .await
            {
                Ok(()) => break,
                Err(e) => {
                    tracing::warn!(link = %ctx.link_name, error = %e, "removing the Link's egress routes; retrying");
                    tokio::time::sleep(delay).await;
                    delay = (delay * 2).min(Duration::from_secs(60));
                }
            }
        }
        return std::future::pending::<()>().await;
    }
    let mut rx = ctx.egress.pods.clone();
    while rx.changed().await.is_ok() {
        if ctx.remote().is_some() {
            ctx.enqueue_all();
        }
    }
    std::future::pending::<()>().await;
}

async fn gateway_summaries(ctx: Arc<Ctx>, mut rx: watch::Receiver<probe::ProbeSummary>) {
    let mut was_alive = true;
    while rx.changed().await.is_ok() {
        let s = rx.borrow_and_update().clone();
        if s.alive != was_alive {
            was_alive = s.alive;
            ctx.env
                .metrics
                .probe_event_dequeues
                .get_or_create(&crate::metrics::EventLabels {
                    event_type: probe::liveness_event(s.alive).into(),
                })
                .inc();
            let note = if s.alive {
                "gateway is alive again: mirror endpoints are ready".to_string()
            } else {
                format!(
                    "gateway failed {} consecutive probes ({}): mirror endpoints moved to notReadyAddresses",
                    s.consecutive_failures,
                    s.last_error.clone().unwrap_or_default()
                )
            };
            ctx.event(!s.alive, probe::liveness_event(s.alive), note)
                .await;
        }
        ctx.book.set_gateway(s);
    }
    std::future::pending::<()>().await;
}
