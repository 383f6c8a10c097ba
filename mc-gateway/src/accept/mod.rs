//! Accept, stage 1 of a connection: the gateway ([`Gateway`]), its serving threads and accept
//! loops, limits and graceful shutdown; per connection the TLS handshake, admission of the
//! client identity (what `crate::tls` verified: the anchors, the identity, not the gateway's
//! own), and the dispatch by ALPN:
//!
//! - `transport.l5d.io/v1`: the transport header and route checks (`crate::transport`, stage
//!   2), the allow-list (`crate::policy`, stage 3), then HTTP (`crate::http`, stage 4) with a
//!   session protocol or the opaque splice (`crate::opaque`, stage 5) without one;
//! - `h2`, `http/1.1` or none: HTTP (stage 4), routed per request by `Host`.

use std::future::Future;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use mc_core::transport::SessionProtocol;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Semaphore, watch};
use tokio::task::JoinSet;
use tokio_rustls::TlsAcceptor;

use crate::backend::{BackendIdentities, BackendStream, Backends};
use crate::http::HttpContext;
use crate::http::upstream::Upstreams;
use crate::metrics::Metrics;
use crate::opaque::{splice, splice_tcp};
use crate::policy::{PolicySource, ReloadingPolicy};
use crate::stream::{Activity, Tracked};
use crate::tls::{
    CertSource, ReloadingCert, ReloadingServerConfig, handshake_error_reason, identity_of,
};
use crate::transport::header::read_header;
use crate::transport::resolve::SharedResolver;
use crate::transport::route::{Suffixes, Target};
use crate::{Error, Result};

pub(crate) mod slice;

/// Timeouts and limits of the gateway.
#[derive(Debug, Clone)]
pub struct Limits {
    /// Time allowed for the TLS handshake.
    pub handshake_timeout: Duration,
    /// Time allowed to receive the transport header, or the HTTP request headers. On HTTP/1
    /// connections served by the lean forwarder the first request must arrive within it; later
    /// requests get it from the first byte of their head, so an idle keep-alive connection
    /// lasts the idle timeout (hyper's HTTP/1 server,
    /// which serves HTTP/2 and the requests handed to it, also applies it between requests).
    pub header_timeout: Duration,
    /// A connection with no byte either way for this long is closed.
    pub idle_timeout: Duration,
    /// Largest HTTP header block accepted, in bytes (the transport header is bounded by
    /// [`mc_core::transport::MAX_HEADER_LEN`]).
    pub max_http_header_bytes: usize,
    /// Connections beyond this many are closed at accept.
    pub max_connections: usize,
    /// On shutdown, in-flight connections get this long to finish.
    pub drain_timeout: Duration,
    /// How often the certificate, key, trust-anchor and policy files are checked for changes.
    pub reload_interval: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            handshake_timeout: Duration::from_secs(10),
            header_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(300),
            max_http_header_bytes: 64 * 1024,
            max_connections: 10_000,
            drain_timeout: Duration::from_secs(30),
            reload_interval: Duration::from_secs(5),
        }
    }
}

/// The gateway's configuration.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    /// The mTLS listener address (default `0.0.0.0:4143`).
    pub listen: SocketAddr,
    /// The admin server address (default `0.0.0.0:4191`); `None` disables it.
    pub admin: Option<SocketAddr>,
    /// The gateway's leaf certificate: files, or minted from an issuer and renewed.
    pub certificate: CertSource,
    /// PEM trust-anchor bundle that client certificates must chain to.
    pub trust_anchors: PathBuf,
    /// The gateway's own identity (refused as a client identity: loop protection).
    pub identity: String,
    /// Allowed target suffixes.
    pub suffixes: Suffixes,
    /// Per-service policy (the allow-list): fixed, or a file reloaded when it changes.
    pub policy: PolicySource,
    /// Port assumed when an HTTP Host header carries none.
    pub default_http_port: u16,
    /// Resolves targets to backends.
    pub resolver: SharedResolver,
    /// The backends dialled with mTLS as the gateway's identity (meshed Pods), with the identity
    /// each must present; `None` dials every backend in plaintext.
    pub backend_identities: Option<Arc<dyn BackendIdentities>>,
    /// Timeouts and limits.
    pub limits: Limits,
    /// Accept loops, each on its own thread (1: serve on the caller's runtime only). See
    /// [`Gateway::run`].
    pub threads: usize,
    /// Scheduler slice asked for the worker threads the gateway starts ([`request_slice`]);
    /// `None` leaves the kernel's default. The thread that calls [`Gateway::run`] belongs to
    /// the caller, which decides its own (the `mc-gateway` binary asks for the same).
    pub slice: Option<Duration>,
}

/// State shared by every connection.
struct Shared {
    tls: Arc<ReloadingServerConfig>,
    identity: Arc<str>,
    suffixes: Arc<Suffixes>,
    policy: Arc<ReloadingPolicy>,
    default_port: u16,
    resolver: SharedResolver,
    upstreams: Upstreams,
    metrics: Arc<Metrics>,
    limits: Limits,
}

/// A bound, not yet running gateway.
pub struct Gateway {
    listener: TcpListener,
    admin: Option<TcpListener>,
    shared: Arc<Shared>,
    ready: Arc<AtomicBool>,
    threads: usize,
    slice: Option<Duration>,
}

impl std::fmt::Debug for Gateway {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Gateway")
            .field("listen", &self.listener.local_addr().ok())
            .field("admin", &self.admin_addr())
            .field("identity", &self.shared.identity)
            .finish_non_exhaustive()
    }
}

impl Gateway {
    /// Loads the certificates and binds the sockets.
    pub async fn bind(config: ServerConfig) -> Result<Self> {
        let metrics = Arc::new(Metrics::new());
        let cert = ReloadingCert::new(config.certificate, metrics.certificate.clone())?;
        let tls = ReloadingServerConfig::load(cert, &config.trust_anchors)?;
        let policy = ReloadingPolicy::load(config.policy, metrics.policy.clone())?;
        let listener = TcpListener::bind(config.listen)
            .await
            .map_err(|source| Error::Bind {
                addr: config.listen,
                flag: "--listen",
                source,
            })?;
        let admin = match config.admin {
            Some(addr) => Some(
                TcpListener::bind(addr)
                    .await
                    .map_err(|source| Error::Bind {
                        addr,
                        flag: "--admin",
                        source,
                    })?,
            ),
            None => None,
        };
        let backends = Backends::new(
            config.backend_identities,
            tls.clone(),
            config.limits.handshake_timeout,
            metrics.backends.clone(),
        );
        let shared = Arc::new(Shared {
            tls,
            identity: config.identity.into(),
            suffixes: Arc::new(config.suffixes),
            policy,
            default_port: config.default_http_port,
            upstreams: Upstreams::new(config.resolver.clone(), backends),
            resolver: config.resolver,
            metrics,
            limits: config.limits,
        });
        Ok(Self {
            listener,
            admin,
            shared,
            ready: Arc::new(AtomicBool::new(false)),
            threads: config.threads,
            slice: config.slice,
        })
    }

    /// The address of the mTLS listener.
    pub fn local_addr(&self) -> Result<SocketAddr> {
        self.listener.local_addr().map_err(|source| Error::Io {
            what: "reading the listener address",
            source,
        })
    }

    /// The address of the admin server, if enabled.
    pub fn admin_addr(&self) -> Option<SocketAddr> {
        self.admin.as_ref().and_then(|l| l.local_addr().ok())
    }

    /// The gateway's metrics.
    pub fn metrics(&self) -> Arc<Metrics> {
        self.shared.metrics.clone()
    }

    /// Serves until `shutdown` resolves, then stops accepting and drains in-flight
    /// connections for up to the drain timeout.
    ///
    /// With [`ServerConfig::threads`] above 1, that many accept loops share the listening
    /// socket, each but this one on its own thread with a single-threaded runtime: a
    /// connection, its upstream connections and its HTTP tasks stay on the thread that
    /// accepted it (no work stealing, no cross-thread wake-ups), like the worker processes of
    /// nginx or the threads of HAProxy.
    pub async fn run(self, shutdown: impl Future<Output = ()>) -> Result<()> {
        let Self {
            listener,
            admin,
            shared,
            ready,
            threads,
            slice,
        } = self;
        let watcher = shared.tls.spawn_watch(shared.limits.reload_interval);
        let policy_watcher = shared.policy.spawn_watch(shared.limits.reload_interval);
        let stop_watchers = move || {
            watcher.abort();
            if let Some(w) = &policy_watcher {
                w.abort();
            }
        };
        let admin_task = admin.map(|l| {
            tokio::spawn(crate::admin::serve(
                l,
                crate::admin::Admin {
                    metrics: shared.metrics.clone(),
                    ready: ready.clone(),
                    tls: Some(shared.tls.clone()),
                    handshake_timeout: shared.limits.handshake_timeout,
                },
            ))
        });
        let permits = Arc::new(Semaphore::new(shared.limits.max_connections));
        let (close_tx, close_rx) = watch::channel(false);
        let (listener, workers) =
            match spawn_workers(listener, (threads, slice), &shared, &permits, &close_rx) {
                Ok(started) => started,
                Err(e) => {
                    let _ = close_tx.send(true);
                    stop_watchers();
                    if let Some(t) = admin_task {
                        t.abort();
                    }
                    return Err(e);
                }
            };
        ready.store(true, Ordering::SeqCst);
        tracing::info!(listen = %listener.local_addr().map(|a| a.to_string()).unwrap_or_default(), identity = %shared.identity, threads = workers.len() + 1, "gateway ready");
        let mine = accept_loop(listener, shared.clone(), permits, close_rx);
        tokio::pin!(shutdown, mine);
        tokio::select! {
            () = &mut shutdown => {}
            () = &mut mine => {}
        }
        ready.store(false, Ordering::SeqCst);
        let _ = close_tx.send(true);
        mine.await;
        for worker in workers {
            let joined = tokio::task::spawn_blocking(move || worker.join()).await;
            if !matches!(joined, Ok(Ok(()))) {
                tracing::warn!("a gateway worker thread ended abnormally");
            }
        }
        stop_watchers();
        if let Some(t) = admin_task {
            t.abort();
        }
        tracing::info!("gateway stopped");
        Ok(())
    }
}

/// Starts `threads - 1` worker threads, each with its own single-threaded runtime and an accept
/// loop on a clone of the listening socket, each asking for the scheduler `slice` if one is
/// given. Returns the listener for the caller's loop.
fn spawn_workers(
    listener: TcpListener,
    (threads, slice): (usize, Option<Duration>),
    shared: &Arc<Shared>,
    permits: &Arc<Semaphore>,
    close: &watch::Receiver<bool>,
) -> Result<(TcpListener, Vec<std::thread::JoinHandle<()>>)> {
    if threads <= 1 {
        return Ok((listener, Vec::new()));
    }
    let io = |what: &'static str| move |source| Error::Io { what, source };
    let std_listener = listener
        .into_std()
        .map_err(io("taking the listening socket for the worker threads"))?;
    let mut workers = Vec::new();
    for n in 1..threads {
        let clone = std_listener
            .try_clone()
            .map_err(io("sharing the listening socket with a worker thread"))?;
        let (shared, permits, close) = (shared.clone(), permits.clone(), close.clone());
        let worker = std::thread::Builder::new()
            .name(format!("mc-gateway-{n}"))
            .spawn(move || {
                request_slice(slice);
                worker_thread(clone, shared, permits, close)
            })
            .map_err(io("starting a worker thread"))?;
        workers.push(worker);
    }
    let listener =
        TcpListener::from_std(std_listener).map_err(io("registering the listening socket"))?;
    Ok((listener, workers))
}

/// Asks for the scheduler `slice` for the calling thread (`sched_setattr(2)`, Linux 6.12 or
/// later; docs/architecture.md, "The gateway's serving threads"); a refusal is logged and the
/// thread keeps the kernel's default. `None` asks for nothing.
///
/// ```
/// # use std::time::Duration;
/// // On Linux ≥ 6.12 this thread now runs in slices of 0.1 ms.
/// mc_gateway::request_slice(Some(Duration::from_micros(100)));
/// ```
pub fn request_slice(slice: Option<Duration>) {
    let Some(slice) = slice else { return };
    match crate::accept::slice::request(slice) {
        Ok(()) => tracing::debug!(?slice, "scheduler slice set"),
        Err(e) => tracing::warn!(
            ?slice,
            error = %e,
            "the kernel refused the scheduler slice; this thread keeps its default (fix: allow sched_setattr, or pass --sched-slice-us 0)"
        ),
    }
}

/// One worker thread: a single-threaded runtime running an accept loop until `close`.
fn worker_thread(
    listener: std::net::TcpListener,
    shared: Arc<Shared>,
    permits: Arc<Semaphore>,
    close: watch::Receiver<bool>,
) {
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            tracing::error!(error = %e, "cannot start a worker runtime; this thread serves nothing");
            return;
        }
    };
    rt.block_on(async move {
        match TcpListener::from_std(listener) {
            Ok(l) => accept_loop(l, shared, permits, close).await,
            Err(e) => {
                tracing::error!(error = %e, "cannot register the listening socket in a worker")
            }
        }
    });
}

/// Accepts connections on this thread's runtime until `close` turns true, then stops
/// accepting and drains this loop's connections for up to the drain timeout.
async fn accept_loop(
    listener: TcpListener,
    shared: Arc<Shared>,
    permits: Arc<Semaphore>,
    mut close: watch::Receiver<bool>,
) {
    let (stop_tx, stop_rx) = watch::channel(false);
    let mut conns = JoinSet::new();
    loop {
        tokio::select! {
            () = async { let _ = close.wait_for(|c| *c).await; } => break,
            Some(_) = conns.join_next(), if !conns.is_empty() => {}
            accepted = listener.accept() => {
                let (tcp, peer) = match accepted {
                    Ok(a) => a,
                    Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => continue,
                    Err(e) => {
                        // EMFILE and friends: back off briefly instead of spinning.
                        tracing::warn!(error = %e, "accept failed");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                };
                shared.metrics.accepted.inc();
                let Ok(permit) = permits.clone().try_acquire_owned() else {
                    shared.metrics.refuse("max_connections");
                    tracing::debug!(%peer, "refused: too many connections");
                    drop(tcp);
                    continue;
                };
                let shared = shared.clone();
                let stop = stop_rx.clone();
                conns.spawn(async move {
                    shared.metrics.active.inc();
                    handle(&shared, tcp, peer, stop).await;
                    shared.metrics.active.dec();
                    drop(permit);
                });
            }
        }
    }
    drop(listener);
    tracing::info!(in_flight = conns.len(), drain = ?shared.limits.drain_timeout, "shutting down: draining");
    let _ = stop_tx.send(true);
    let drained = tokio::time::timeout(shared.limits.drain_timeout, async {
        while conns.join_next().await.is_some() {}
    })
    .await;
    if drained.is_err() {
        tracing::warn!(
            aborted = conns.len(),
            "drain deadline reached; closing the rest"
        );
        conns.abort_all();
        while conns.join_next().await.is_some() {}
    }
}

async fn handle(shared: &Shared, tcp: TcpStream, peer: SocketAddr, stop: watch::Receiver<bool>) {
    let _ = tcp.set_nodelay(true);
    let activity = Activity::new();
    let io = Tracked::new(
        tcp,
        activity.clone(),
        shared.metrics.bytes_in.clone(),
        shared.metrics.bytes_out.clone(),
    );
    let idle = shared.limits.idle_timeout;
    tokio::select! {
        r = connection(shared, io, peer, activity.clone(), stop) => {
            if let Err(e) = r {
                tracing::debug!(%peer, error = %e, "connection ended with an error");
            }
        }
        () = activity.idle_timeout(idle) => {
            tracing::debug!(%peer, ?idle, "idle connection closed");
        }
    }
}

async fn connection(
    shared: &Shared,
    io: Tracked<TcpStream>,
    peer: SocketAddr,
    activity: Activity,
    stop: watch::Receiver<bool>,
) -> Result<()> {
    let start = Instant::now();
    let Some(tls) = handshake(shared, io, peer).await else {
        return Ok(());
    };
    shared
        .metrics
        .handshake_seconds
        .observe(start.elapsed().as_secs_f64());
    let (_, conn) = tls.get_ref();
    let client = conn
        .peer_certificates()
        .and_then(|c| c.first())
        .and_then(identity_of);
    let Some(client) = client else {
        shared.metrics.refuse("no_identity");
        tracing::info!(%peer, "refused: client certificate has neither a DNS name nor a SPIFFE ID");
        return Ok(());
    };
    if client == *shared.identity {
        shared.metrics.refuse("loop");
        tracing::info!(%peer, %client, "refused: client identity is the gateway's own (loop)");
        return Ok(());
    }
    if shared.metrics.client_connection(&client) {
        // Once per identity (as bounded as the metric's series): who connects, at info level.
        tracing::info!(%peer, %client, "first connection from this client identity");
    }
    tracing::debug!(%peer, %client, "client authenticated");
    let alpn = conn.alpn_protocol().map(<[u8]>::to_vec);
    let client: Arc<str> = client.into();
    if alpn.as_deref() == Some(mc_core::transport::ALPN) {
        transport(shared, tls, peer, client, activity, stop).await
    } else {
        // The protocol the client chose by ALPN is served without detection; with no ALPN,
        // the first bytes tell (the HTTP/2 preface or not).
        let protocol = match alpn.as_deref() {
            Some(crate::tls::ALPN_HTTP11) => Some(SessionProtocol::Http1),
            Some(crate::tls::ALPN_H2) => Some(SessionProtocol::Http2),
            _ => None,
        };
        let ctx = http_context(shared, client, None, false);
        serve_http_stream(shared, tls, Vec::new(), ctx, protocol, stop).await
    }
}

/// Serves HTTP on the client's stream (rustls protects its records); `early` is plaintext
/// read before (after a transport header).
async fn serve_http_stream(
    shared: &Shared,
    tls: ServerTls,
    early: Vec<u8>,
    ctx: HttpContext,
    protocol: Option<SessionProtocol>,
    stop: watch::Receiver<bool>,
) -> Result<()> {
    shared.metrics.http_stream();
    let io = crate::transport::header::Prefixed::new(early, tls);
    let limits = crate::http::serve::Limits {
        header_timeout: shared.limits.header_timeout,
        max_head: shared.limits.max_http_header_bytes,
    };
    crate::http::serve::serve(io, ctx, protocol, limits, stop).await;
    Ok(())
}

fn http_context(
    shared: &Shared,
    client: Arc<str>,
    fixed_target: Option<Target>,
    upstream_h2: bool,
) -> HttpContext {
    HttpContext::new(
        shared.identity.clone(),
        client,
        fixed_target,
        upstream_h2,
        shared.default_port,
        shared.suffixes.clone(),
        shared.policy.clone(),
        shared.upstreams.clone(),
        shared.metrics.clone(),
    )
}

type ServerTls = tokio_rustls::server::TlsStream<Tracked<TcpStream>>;

/// The TLS handshake, within the handshake timeout; `None` when it failed or timed out (counted
/// and logged). rustls keeps the connection's records for its whole life.
async fn handshake(shared: &Shared, io: Tracked<TcpStream>, peer: SocketAddr) -> Option<ServerTls> {
    let limit = shared.limits.handshake_timeout;
    let accept = TlsAcceptor::from(shared.tls.current()).accept(io);
    match tokio::time::timeout(limit, accept).await {
        Ok(Ok(tls)) => return Some(tls),
        Ok(Err(e)) => {
            let reason = handshake_error_reason(&e);
            shared.metrics.handshake_error(reason);
            tracing::info!(%peer, reason, error = %e, "TLS handshake failed");
        }
        Err(_) => {
            shared.metrics.handshake_error("timeout");
            tracing::info!(%peer, ?limit, "TLS handshake timed out");
        }
    }
    None
}

/// The transport-header path: read the header, check the target, then HTTP or opaque. An HTTP
/// session is checked against the policy per request (a denial is a `403`); an opaque stream
/// here, before any byte reaches the target.
async fn transport(
    shared: &Shared,
    mut tls: ServerTls,
    peer: SocketAddr,
    client: Arc<str>,
    activity: Activity,
    stop: watch::Receiver<bool>,
) -> Result<()> {
    let refuse = |e: &Error| {
        shared.metrics.refuse(e.reason());
        tracing::info!(%peer, %client, reason = e.reason(), error = %e, "transport connection refused");
    };
    let (header, rest) = match read_header(&mut tls, shared.limits.header_timeout).await {
        Ok(h) => h,
        Err(e) => {
            refuse(&e);
            return close(shared, tls).await;
        }
    };
    let checked = (|| {
        let name = header.name.as_deref().ok_or_else(|| Error::BadAuthority {
            authority: format!(":{}", header.port),
            why: "the transport header has no name; a gateway needs <svc>.<ns>.svc.<domain>",
        })?;
        let target = Target::new(name, header.port);
        shared.suffixes.check(&target)?;
        if header.protocol.is_none() {
            shared.policy.check(&client, &target)?;
        }
        Ok::<_, Error>(target)
    })();
    let target = match checked {
        Ok(t) => t,
        Err(e) => {
            refuse(&e);
            return close(shared, tls).await;
        }
    };
    tracing::debug!(%peer, %client, %target, protocol = ?header.protocol, "transport header");
    match header.protocol {
        Some(protocol) => {
            let h2 = protocol == SessionProtocol::Http2;
            let ctx = http_context(shared, client, Some(target), h2);
            serve_http_stream(shared, tls, rest, ctx, Some(protocol), stop).await
        }
        None => {
            let addr = match shared.resolver.resolve(&target).await {
                Ok(a) => a,
                Err(e) => {
                    shared.metrics.route_error(e.reason());
                    refuse(&e);
                    return close(shared, tls).await;
                }
            };
            let mut upstream = match shared.upstreams.backends.connect(addr).await {
                Ok(s) => s,
                Err(e) => {
                    shared.metrics.route_error(e.reason());
                    refuse(&e);
                    return close(shared, tls).await;
                }
            };
            let sent = async {
                tokio::io::AsyncWriteExt::write_all(&mut upstream, &rest).await?;
                tokio::io::AsyncWriteExt::flush(&mut upstream).await
            };
            sent.await.map_err(|source| Error::Io {
                what: "writing to the target",
                source,
            })?;
            let _in_flight = shared.resolver.track(addr);
            shared.metrics.opaque_splice();
            tracing::debug!(%peer, %client, %target, %addr, "opaque splice");
            let idle = shared.limits.idle_timeout;
            let (up, down) = match upstream {
                BackendStream::Plain(tcp) => splice_tcp(tls, tcp, idle, activity).await?,
                meshed => splice(tls, meshed, idle, activity).await?,
            };
            tracing::debug!(%peer, %client, %target, up, down, "opaque splice done");
            Ok(())
        }
    }
}

/// Closes a refused transport connection: the TLS `close_notify` alert (rustls offers no
/// supported way to send another alert once the handshake is done), then the TCP close, within
/// the header timeout. The client reads end of stream without a byte from the target. A
/// failure to close is not the connection's error (it was refused already).
async fn close(shared: &Shared, mut tls: ServerTls) -> Result<()> {
    let limit = shared.limits.header_timeout;
    let _ = tokio::time::timeout(limit, tokio::io::AsyncWriteExt::shutdown(&mut tls)).await;
    Ok(())
}
