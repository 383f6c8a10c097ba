//! HTTP-aware forwarding: requests from an authenticated client to the target service, with
//! loop protection, `Forwarded` and `l5d-client-id`.

use std::collections::HashMap;
use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::Mutex;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::header::{self, HeaderValue};
use http::uri::{PathAndQuery, Scheme};
use http::{Request, Response, StatusCode, Uri, Version};
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioIo};

use crate::hop::{self, Message};
use crate::metrics::{Metrics, TargetMetrics};
use crate::policy::ReloadingPolicy;
use crate::resolve::SharedResolver;
use crate::route::{Suffixes, Target, check_forwarded, forwarded_element};
use crate::upgrade::{Tunnels, Upgrade};
use crate::upstream::{Dedicated, SendError};
use crate::{Error, Result};

/// The header that carries the authenticated client identity to the target.
pub const CLIENT_ID_HEADER: &str = crate::hop::CLIENT_ID_HEADER;

/// The response body type of the gateway's HTTP service.
pub type Body = BoxBody<Bytes, hyper::Error>;

/// Connects to one fixed backend address, whatever the request URI says (the URI keeps the
/// target authority, so `Host` and `:authority` stay the service name).
#[derive(Debug, Clone, Copy)]
pub struct EndpointConnector {
    addr: SocketAddr,
}

impl tower_service::Service<Uri> for EndpointConnector {
    type Response = TokioIo<tokio::net::TcpStream>;
    type Error = Error;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response>> + Send>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, _uri: Uri) -> Self::Future {
        let addr = self.addr;
        Box::pin(async move { Ok(TokioIo::new(connect_backend(addr).await?)) })
    }
}

/// Opens a TCP connection to a target backend, Nagle off.
pub(crate) async fn connect_backend(addr: SocketAddr) -> Result<tokio::net::TcpStream> {
    crate::io::connect_tcp(addr, "target backend").await
}

type UpstreamClient = Client<EndpointConnector, Incoming>;

/// How long an idle pooled upstream connection is kept; a client unused for this long holds
/// no connection and is dropped from the map at the next sweep.
const POOL_IDLE: Duration = Duration::from_secs(30);

/// The smallest client map that triggers a sweep by size.
const SWEEP_MIN: usize = 64;

/// Upstream HTTP clients, one pool per (endpoint address, protocol). Each request is
/// resolved first, so a connection to an endpoint that left the ready set is never reused.
///
/// Endpoints come and go (pods are replaced), so the map is swept of clients unused for
/// `POOL_IDLE` whenever it has doubled since the last sweep or a sweep is that old: it
/// stays bounded by the endpoints actually in use.
#[derive(Debug, Clone)]
pub struct Upstreams {
    resolver: SharedResolver,
    clients: Arc<Mutex<Clients>>,
}

#[derive(Debug)]
struct Clients {
    map: HashMap<(SocketAddr, bool), (UpstreamClient, Instant)>,
    sweep_at: usize,
    last_sweep: Instant,
}

impl Upstreams {
    /// Clients whose targets resolve through `resolver`.
    pub fn new(resolver: SharedResolver) -> Self {
        Self {
            resolver,
            clients: Arc::new(Mutex::new(Clients {
                map: HashMap::new(),
                sweep_at: SWEEP_MIN,
                last_sweep: Instant::now(),
            })),
        }
    }

    /// The pooled client for one endpoint, HTTP/2 (prior knowledge) or HTTP/1.1.
    fn client(&self, addr: SocketAddr, h2: bool) -> UpstreamClient {
        self.client_at(addr, h2, Instant::now())
    }

    /// [`Self::client`] at time `now` (the sweep clock).
    fn client_at(&self, addr: SocketAddr, h2: bool, now: Instant) -> UpstreamClient {
        let mut clients = match self.clients.lock() {
            Ok(m) => m,
            Err(p) => p.into_inner(),
        };
        if let Some((client, used)) = clients.map.get_mut(&(addr, h2)) {
            *used = now;
            return client.clone();
        }
        let stale = now.saturating_duration_since(clients.last_sweep) >= POOL_IDLE;
        if clients.map.len() >= clients.sweep_at || stale {
            clients
                .map
                .retain(|_, (_, used)| now.saturating_duration_since(*used) < POOL_IDLE);
            clients.sweep_at = (clients.map.len() * 2).max(SWEEP_MIN);
            clients.last_sweep = now;
        }
        let client = Client::builder(TokioExecutor::new())
            .http2_only(h2)
            .pool_idle_timeout(POOL_IDLE)
            .build(EndpointConnector { addr });
        clients.map.insert((addr, h2), (client.clone(), now));
        client
    }

    /// Endpoints with a client in the map.
    pub fn len(&self) -> usize {
        match self.clients.lock() {
            Ok(m) => m.map.len(),
            Err(p) => p.into_inner().map.len(),
        }
    }

    /// Whether no endpoint has a client.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Everything one HTTP-serving connection needs.
#[derive(Debug)]
pub struct HttpContext {
    /// The gateway's own identity.
    pub gateway_id: Arc<str>,
    /// The authenticated client identity.
    pub client_id: Arc<str>,
    /// The target fixed by the transport header, or `None` to route each request by its
    /// authority.
    pub fixed_target: Option<Target>,
    /// Speak HTTP/2 (prior knowledge) to the target instead of HTTP/1.1.
    pub upstream_h2: bool,
    /// Port assumed when a Host header has none.
    pub default_port: u16,
    /// Allowed target suffixes.
    pub suffixes: Arc<Suffixes>,
    /// Per-service policy (the allow-list in force).
    pub policy: Arc<ReloadingPolicy>,
    /// Upstream clients shared by every connection (HTTP/2, and HTTP/1 beyond the dedicated
    /// connections).
    pub upstreams: Upstreams,
    /// This connection's own upstream HTTP/1 connections.
    pub dedicated: Dedicated,
    /// Metrics.
    pub metrics: Arc<Metrics>,
    /// What the last target of this connection needs per request, built once.
    last: Mutex<Option<TargetEntry>>,
    /// The connection's switched (upgraded) connections, which it outlives.
    pub(crate) tunnels: Tunnels,
}

/// A connection's per-target values: the checked target, the header values the gateway adds
/// and the metric handles, built once per target instead of once per request.
#[derive(Debug)]
pub(crate) struct TargetEntry {
    /// The authority as the request gave it (`None` for a fixed target).
    key: Option<String>,
    /// The policy generation the entry was checked against.
    generation: u64,
    /// The checked target.
    pub(crate) target: Target,
    authority: http::uri::Authority,
    /// The `Host` value sent to the target.
    pub(crate) host: HeaderValue,
    /// The `l5d-client-id` value.
    pub(crate) client: HeaderValue,
    /// The `Forwarded` element this gateway appends.
    pub(crate) forwarded: HeaderValue,
    /// The target's metric handles.
    pub(crate) metrics: TargetMetrics,
}

/// Why an upstream exchange failed.
#[derive(Debug)]
enum Failure {
    /// The gateway's own error (e.g. the endpoint refused the connection).
    Gateway(Error),
    /// The HTTP client's error, possibly wrapping one of the gateway's.
    Upstream(Box<dyn std::error::Error + Send + Sync>),
}

impl From<SendError> for Failure {
    fn from(e: SendError) -> Self {
        match e {
            SendError::Connect(e) => Failure::Gateway(e),
            SendError::Http(e) => Failure::Upstream(Box::new(e)),
        }
    }
}

/// The request URI in origin form (`/path?query`), as an HTTP/1 connection of its own sends it.
fn origin_form(req: Request<Incoming>) -> Request<Incoming> {
    let (mut parts, body) = req.into_parts();
    let path = parts
        .uri
        .path_and_query()
        .cloned()
        .unwrap_or_else(|| PathAndQuery::from_static("/"));
    parts.uri = Uri::from(path);
    Request::from_parts(parts, body)
}

/// `uri`'s path and query on the target's authority (`http://<target><path>`), the form the
/// shared clients need.
fn absolute(uri: &Uri, entry: &TargetEntry) -> Result<Uri> {
    let path = uri
        .path_and_query()
        .cloned()
        .unwrap_or_else(|| PathAndQuery::from_static("/"));
    Uri::builder()
        .scheme(Scheme::HTTP)
        .authority(entry.authority.clone())
        .path_and_query(path)
        .build()
        .map_err(|_| Error::BadAuthority {
            authority: entry.authority.to_string(),
            why: "cannot form a request URI",
        })
}

/// A plain-text error response.
pub fn error_response(status: StatusCode, message: String) -> Response<Body> {
    let mut resp = Response::new(
        Full::new(Bytes::from(message + "\n"))
            .map_err(|never: Infallible| match never {})
            .boxed(),
    );
    *resp.status_mut() = status;
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    resp
}

/// The status code for a routing error.
pub fn status_for(e: &Error) -> StatusCode {
    match e {
        Error::SuffixNotAllowed { .. } | Error::BadAuthority { .. } => StatusCode::BAD_REQUEST,
        Error::Forbidden { .. } => StatusCode::FORBIDDEN,
        Error::Loop { .. } => StatusCode::LOOP_DETECTED,
        Error::NoEndpoints { .. } => StatusCode::SERVICE_UNAVAILABLE,
        Error::Timeout { .. } => StatusCode::GATEWAY_TIMEOUT,
        _ => StatusCode::BAD_GATEWAY,
    }
}

/// Finds the gateway error inside an upstream client error, if any.
fn find_gateway_error<'a>(mut e: &'a (dyn std::error::Error + 'static)) -> Option<&'a Error> {
    loop {
        if let Some(ours) = e.downcast_ref::<Error>() {
            return Some(ours);
        }
        e = e.source()?;
    }
}

impl HttpContext {
    /// The context of one connection from `client_id`; `fixed_target` is the transport
    /// header's target, if any.
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        gateway_id: Arc<str>,
        client_id: Arc<str>,
        fixed_target: Option<Target>,
        upstream_h2: bool,
        default_port: u16,
        suffixes: Arc<Suffixes>,
        policy: Arc<ReloadingPolicy>,
        upstreams: Upstreams,
        metrics: Arc<Metrics>,
    ) -> Self {
        Self {
            gateway_id,
            client_id,
            fixed_target,
            upstream_h2,
            default_port,
            suffixes,
            policy,
            upstreams,
            dedicated: Dedicated::new(),
            metrics,
            last: Mutex::new(None),
            tunnels: Tunnels::default(),
        }
    }

    /// The request's authority: the URI's, else the Host header's.
    fn authority_of(req: &Request<Incoming>) -> &str {
        match req.uri().authority() {
            Some(a) => a.as_str(),
            None => req
                .headers()
                .get(header::HOST)
                .and_then(|h| h.to_str().ok())
                .unwrap_or_default(),
        }
    }

    /// The checked target of `req` and its per-target values: the connection's last entry when
    /// the authority is the same (same client, same target: same checks), else a new one.
    fn entry_for(
        &self,
        req: &Request<Incoming>,
    ) -> std::result::Result<TargetEntry, (Option<Target>, Error)> {
        let key = match &self.fixed_target {
            Some(_) => None,
            None => Some(Self::authority_of(req)),
        };
        self.entry_for_key(key)
    }

    /// [`Self::entry_for`] by the request's authority (`None` with a fixed target).
    pub(crate) fn entry_for_key(
        &self,
        key: Option<&str>,
    ) -> std::result::Result<TargetEntry, (Option<Target>, Error)> {
        let last = match self.last.lock() {
            Ok(mut g) => g.take(),
            Err(p) => p.into_inner().take(),
        };
        // A reloaded policy decides again.
        let generation = self.policy.generation();
        if let Some(e) = last.filter(|e| e.key.as_deref() == key && e.generation == generation) {
            return Ok(e);
        }
        let target = match &self.fixed_target {
            Some(t) => t.clone(),
            None => {
                let t = Target::parse_authority(key.unwrap_or_default(), Some(self.default_port))
                    .map_err(|e| (None, e))?;
                self.suffixes.check(&t).map_err(|e| (None, e))?;
                t
            }
        };
        self.policy
            .check(&self.client_id, &target)
            .map_err(|e| (None, e))?;
        let authority = target.to_string();
        let bad = |why| {
            (
                Some(target.clone()),
                Error::BadAuthority {
                    authority: authority.clone(),
                    why,
                },
            )
        };
        let value = |v: &str| HeaderValue::from_str(v).map_err(|_| bad("not a valid header value"));
        let fwd = forwarded_element(&self.gateway_id, &self.client_id, &target);
        Ok(TargetEntry {
            key: key.map(str::to_owned),
            generation,
            authority: authority
                .parse()
                .map_err(|_| bad("cannot form a request URI"))?,
            host: value(&authority)?,
            client: value(&self.client_id)?,
            forwarded: value(&fwd)?,
            metrics: self.metrics.http_target(&authority),
            target,
        })
    }

    /// The request as the target gets it, sent in `version` (see [`hop::exchange`]).
    fn rewrite(
        &self,
        req: Request<Incoming>,
        entry: &TargetEntry,
        version: Version,
    ) -> Result<Request<Incoming>> {
        let (mut parts, body) = req.into_parts();
        check_forwarded(
            parts
                .headers
                .get_all(header::FORWARDED)
                .iter()
                .filter_map(|v| v.to_str().ok()),
            &self.gateway_id,
        )?;
        hop::strip(&mut parts.headers, Message::Request);
        parts.uri = absolute(&parts.uri, entry)?;
        parts.version = version;
        if version == Version::HTTP_2 {
            parts.headers.remove(header::HOST);
        } else {
            parts.headers.insert(header::HOST, entry.host.clone());
        }
        parts.headers.insert(CLIENT_ID_HEADER, entry.client.clone());
        parts
            .headers
            .append(header::FORWARDED, entry.forwarded.clone());
        Ok(Request::from_parts(parts, body))
    }

    /// Forwards one request and returns the target's response, or an error response.
    pub async fn forward(&self, mut req: Request<Incoming>) -> Response<Body> {
        let start = Instant::now();
        let exchange = hop::exchange(
            req.version(),
            req.headers().get(hop::ORIG_PROTO_HEADER),
            self.upstream_h2,
        );
        // An HTTP/1 request (one at a time on its connection) to an HTTP/1 target goes over a
        // connection of this downstream connection's own; HTTP/2, and HTTP/2 requests
        // downgraded to HTTP/1 (several at a time on their connection), use the shared clients.
        let dedicated = !self.upstream_h2 && req.version() <= Version::HTTP_11;
        let mut entry = match self.entry_for(&req) {
            Ok(e) => e,
            Err((target, e)) => return self.refuse(target.as_ref(), e, start),
        };
        // An HTTP/1.1 upgrade to an HTTP/1 target switches protocols on a connection of its
        // own.
        let upgrade = (!self.upstream_h2)
            .then(|| Upgrade::requested(&mut req))
            .flatten();
        let resp = self
            .forward_to(&mut entry, req, (exchange, dedicated), upgrade, start)
            .await;
        self.keep_entry(entry);
        resp
    }

    /// Keeps `entry` as the connection's last target entry, for the next request.
    pub(crate) fn keep_entry(&self, entry: TargetEntry) {
        if let Ok(mut g) = self.last.lock() {
            *g = Some(entry);
        }
    }

    /// The resolver of this connection's targets.
    pub(crate) fn resolver(&self) -> &SharedResolver {
        &self.upstreams.resolver
    }

    async fn forward_to(
        &self,
        entry: &mut TargetEntry,
        req: Request<Incoming>,
        (exchange, dedicated): (hop::Exchange, bool),
        upgrade: Option<Upgrade>,
        start: Instant,
    ) -> Response<Body> {
        let target = &entry.target;
        let mut req = match self.rewrite(req, entry, exchange.version) {
            Ok(r) => r,
            Err(e) => return self.refuse(Some(target), e, start),
        };
        if let Some(u) = &upgrade {
            u.prepare(&mut req);
        }
        let addr = match self.upstreams.resolver.resolve(target).await {
            Ok(a) => a,
            // Not a known service: no per-target metric series (names are client-chosen,
            // series would be unbounded).
            Err(e @ Error::UnknownService { .. }) => return self.refuse(None, e, start),
            Err(e) => return self.refuse(Some(target), e, start),
        };
        let in_flight = self.upstreams.resolver.track(addr);
        let result = if upgrade.is_some() {
            Upgrade::send(addr, origin_form(req))
                .await
                .map_err(Failure::from)
        } else if dedicated {
            match self.dedicated.send(addr, origin_form(req)).await {
                Ok(result) => result.map_err(Failure::from),
                // Every dedicated slot is in use: the shared pool.
                Err(req) => match absolute(req.uri(), entry) {
                    Ok(uri) => {
                        let (mut parts, body) = req.into_parts();
                        parts.uri = uri;
                        self.pooled(addr, Request::from_parts(parts, body), false)
                            .await
                    }
                    Err(e) => return self.refuse(Some(target), e, start),
                },
            }
        } else {
            self.pooled(addr, req, exchange.version == Version::HTTP_2)
                .await
        };
        drop(in_flight);
        match result {
            Ok(mut resp) => {
                let switched = upgrade.and_then(|u| u.complete(&mut resp, &self.tunnels));
                let (mut parts, body) = resp.into_parts();
                hop::strip(&mut parts.headers, Message::Response);
                if let Some(protocol) = switched {
                    hop::keep_upgrade(&mut parts.headers, protocol);
                }
                // A downgraded request's response names the version the target answered in,
                // as linkerd2-proxy's inbound side does; the client proxy restores it.
                if let Some(v) = exchange
                    .downgraded
                    .then(|| hop::orig_proto_of(parts.version))
                    .flatten()
                {
                    parts.headers.insert(hop::ORIG_PROTO_HEADER, v);
                }
                entry.metrics.record(
                    &self.metrics,
                    parts.status.as_u16(),
                    start.elapsed().as_secs_f64(),
                );
                Response::from_parts(parts, body.boxed())
            }
            Err(Failure::Gateway(ours)) => {
                self.metrics.route_error(ours.reason());
                self.finish_error(Some(target), status_for(&ours), ours.to_string(), start)
            }
            Err(Failure::Upstream(e)) => match find_gateway_error(&*e) {
                Some(ours) => {
                    let status = status_for(ours);
                    self.metrics.route_error(ours.reason());
                    let msg = ours.to_string();
                    self.finish_error(Some(target), status, msg, start)
                }
                None => {
                    let msg = format!("upstream {target} failed: {e}");
                    self.metrics.route_error("upstream");
                    self.finish_error(Some(target), StatusCode::BAD_GATEWAY, msg, start)
                }
            },
        }
    }

    /// Sends `req` through the shared client of `addr`, HTTP/2 (`h2`) or HTTP/1.
    async fn pooled(
        &self,
        addr: SocketAddr,
        req: Request<Incoming>,
        h2: bool,
    ) -> std::result::Result<Response<Incoming>, Failure> {
        let client = self.upstreams.client(addr, h2);
        client
            .request(req)
            .await
            .map_err(|e| Failure::Upstream(Box::new(e)))
    }

    fn refuse(&self, target: Option<&Target>, e: Error, start: Instant) -> Response<Body> {
        let (status, msg) = self.refused(target, &e, start);
        error_response(status, msg)
    }

    /// Counts and logs a request refused for `e`; returns the status and message to answer.
    pub(crate) fn refused(
        &self,
        target: Option<&Target>,
        e: &Error,
        start: Instant,
    ) -> (StatusCode, String) {
        self.metrics.route_error(e.reason());
        let (status, msg) = (status_for(e), e.to_string());
        self.note_error(target, status, &msg, start);
        (status, msg)
    }

    fn finish_error(
        &self,
        target: Option<&Target>,
        status: StatusCode,
        msg: String,
        start: Instant,
    ) -> Response<Body> {
        self.note_error(target, status, &msg, start);
        error_response(status, msg)
    }

    /// Logs a refused or failed request and counts it in the per-target request metrics.
    pub(crate) fn note_error(
        &self,
        target: Option<&Target>,
        status: StatusCode,
        msg: &str,
        start: Instant,
    ) {
        let label = target.map_or_else(|| "unknown".to_owned(), Target::to_string);
        tracing::info!(client = %self.client_id, target = %label, %status, reason = %msg, "request refused");
        self.metrics
            .http_request(&label, status.as_u16(), start.elapsed().as_secs_f64());
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;

    #[tokio::test]
    async fn upstream_clients_of_endpoints_gone_for_the_idle_time_are_swept() {
        let up = Upstreams::new(Arc::new(crate::resolve::StaticResolver::new()));
        let t0 = Instant::now();
        let addr = |p: u16| SocketAddr::from(([10, 0, 0, 1], p));
        // 1,000 endpoints used once (pods replaced over and over) ...
        for p in 1..=1000 {
            up.client_at(addr(p), false, t0);
        }
        // ... sweeps by size keep only what was used within the idle time: all of them here.
        assert_eq!(up.len(), 1000);
        // One endpoint keeps being used; the others are gone.
        let later = t0 + Duration::from_secs(20);
        up.client_at(addr(1), false, later);
        let much_later = t0 + POOL_IDLE + Duration::from_secs(1);
        up.client_at(addr(1), false, much_later);
        // The next new endpoint triggers a sweep by age: only the live ones remain.
        up.client_at(addr(2000), true, much_later);
        assert_eq!(up.len(), 2);
        // The same (address, protocol) reuses its client: no growth.
        for _ in 0..10 {
            up.client_at(addr(2000), true, much_later);
        }
        assert_eq!(up.len(), 2);
    }

    #[test]
    fn statuses() {
        let t = |e: Error| status_for(&e).as_u16();
        assert_eq!(
            t(Error::UnknownService {
                name: "a".into(),
                port: 1,
                why: String::new()
            }),
            502
        );
        assert_eq!(
            t(Error::NoEndpoints {
                name: "a".into(),
                port: 1
            }),
            503
        );
        assert_eq!(t(Error::Loop { why: String::new() }), 508);
        assert_eq!(
            t(Error::Forbidden {
                client: "c".into(),
                target: "t:1".into(),
                rule: "*".into(),
            }),
            403
        );
    }
}
