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
use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::{Request, Response, StatusCode, Uri, Version};
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioIo};

use crate::metrics::Metrics;
use crate::resolve::SharedResolver;
use crate::route::{Policy, Suffixes, Target, check_forwarded, forwarded_element};
use crate::{Error, Result};

/// The header that carries the authenticated client identity to the target.
pub const CLIENT_ID_HEADER: &str = "l5d-client-id";

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
        Box::pin(async move {
            let stream = tokio::net::TcpStream::connect(addr)
                .await
                .map_err(|source| Error::Connect {
                    addr: addr.to_string(),
                    what: "target backend",
                    source,
                })?;
            let _ = stream.set_nodelay(true);
            Ok(TokioIo::new(stream))
        })
    }
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
/// [`POOL_IDLE`] whenever it has doubled since the last sweep or a sweep is that old: it
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
#[derive(Debug, Clone)]
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
    /// Per-service policy.
    pub policy: Arc<Policy>,
    /// Upstream clients.
    pub upstreams: Upstreams,
    /// Metrics.
    pub metrics: Arc<Metrics>,
}

/// Hop-by-hop headers (RFC 9110 §7.6.1) that must not be forwarded.
const HOP_BY_HOP: &[&str] = &[
    "connection",
    "proxy-connection",
    "keep-alive",
    "te",
    "transfer-encoding",
    "upgrade",
    "proxy-authenticate",
    "proxy-authorization",
];

fn strip_hop_by_hop(headers: &mut HeaderMap) {
    let named: Vec<HeaderName> = headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|n| HeaderName::from_bytes(n.trim().as_bytes()).ok())
        .collect();
    for name in named {
        headers.remove(name);
    }
    for name in HOP_BY_HOP {
        headers.remove(*name);
    }
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
    fn target_of(&self, req: &Request<Incoming>) -> Result<Target> {
        if let Some(t) = &self.fixed_target {
            return Ok(t.clone());
        }
        let authority = match req.uri().authority() {
            Some(a) => a.as_str().to_owned(),
            None => req
                .headers()
                .get(header::HOST)
                .and_then(|h| h.to_str().ok())
                .unwrap_or_default()
                .to_owned(),
        };
        let target = Target::parse_authority(&authority, Some(self.default_port))?;
        self.suffixes.check(&target)?;
        self.policy.check(&self.client_id, &target)?;
        Ok(target)
    }

    fn rewrite(&self, req: Request<Incoming>, target: &Target) -> Result<Request<Incoming>> {
        let (mut parts, body) = req.into_parts();
        check_forwarded(
            parts
                .headers
                .get_all(header::FORWARDED)
                .iter()
                .filter_map(|v| v.to_str().ok()),
            &self.gateway_id,
        )?;
        strip_hop_by_hop(&mut parts.headers);
        let authority = target.to_string();
        let path = parts
            .uri
            .path_and_query()
            .map(|p| p.as_str())
            .unwrap_or("/");
        parts.uri =
            format!("http://{authority}{path}")
                .parse()
                .map_err(|_| Error::BadAuthority {
                    authority: authority.clone(),
                    why: "cannot form a request URI",
                })?;
        let bad_value = |_| Error::BadAuthority {
            authority: authority.clone(),
            why: "not a valid header value",
        };
        if self.upstream_h2 {
            parts.version = Version::HTTP_2;
            parts.headers.remove(header::HOST);
        } else {
            parts.version = Version::HTTP_11;
            parts.headers.insert(
                header::HOST,
                HeaderValue::from_str(&authority).map_err(bad_value)?,
            );
        }
        let client = HeaderValue::from_str(&self.client_id).map_err(bad_value)?;
        parts.headers.insert(CLIENT_ID_HEADER, client);
        let fwd = forwarded_element(&self.gateway_id, &self.client_id, target);
        parts.headers.append(
            header::FORWARDED,
            HeaderValue::from_str(&fwd).map_err(bad_value)?,
        );
        Ok(Request::from_parts(parts, body))
    }

    /// Forwards one request and returns the target's response, or an error response.
    pub async fn forward(self, req: Request<Incoming>) -> Response<Body> {
        let start = Instant::now();
        let target = match self.target_of(&req) {
            Ok(t) => t,
            Err(e) => return self.refuse(None, e, start),
        };
        let req = match self.rewrite(req, &target) {
            Ok(r) => r,
            Err(e) => return self.refuse(Some(&target), e, start),
        };
        let addr = match self.upstreams.resolver.resolve(&target).await {
            Ok(a) => a,
            // Not a known service: no per-target metric series (names are client-chosen,
            // series would be unbounded).
            Err(e @ Error::UnknownService { .. }) => return self.refuse(None, e, start),
            Err(e) => return self.refuse(Some(&target), e, start),
        };
        let client = self.upstreams.client(addr, self.upstream_h2);
        let in_flight = self.upstreams.resolver.track(addr);
        let result = client.request(req).await;
        drop(in_flight);
        match result {
            Ok(resp) => {
                let (mut parts, body) = resp.into_parts();
                strip_hop_by_hop(&mut parts.headers);
                self.metrics.http_request(
                    &target.to_string(),
                    parts.status.as_u16(),
                    start.elapsed().as_secs_f64(),
                );
                Response::from_parts(parts, body.boxed())
            }
            Err(e) => match find_gateway_error(&e) {
                Some(ours) => {
                    let status = status_for(ours);
                    self.metrics.route_error(ours.reason());
                    let msg = ours.to_string();
                    self.finish_error(Some(&target), status, msg, start)
                }
                None => {
                    let msg = format!("upstream {target} failed: {e}");
                    self.metrics.route_error("upstream");
                    self.finish_error(Some(&target), StatusCode::BAD_GATEWAY, msg, start)
                }
            },
        }
    }

    fn refuse(&self, target: Option<&Target>, e: Error, start: Instant) -> Response<Body> {
        self.metrics.route_error(e.reason());
        self.finish_error(target, status_for(&e), e.to_string(), start)
    }

    fn finish_error(
        &self,
        target: Option<&Target>,
        status: StatusCode,
        msg: String,
        start: Instant,
    ) -> Response<Body> {
        let label = target.map_or_else(|| "unknown".to_owned(), Target::to_string);
        tracing::info!(client = %self.client_id, target = %label, %status, reason = %msg, "request refused");
        self.metrics
            .http_request(&label, status.as_u16(), start.elapsed().as_secs_f64());
        error_response(status, msg)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;

    #[test]
    fn hop_by_hop_headers_are_removed_including_connection_named_ones() {
        let mut h = HeaderMap::new();
        h.insert("connection", HeaderValue::from_static("close, x-secret"));
        h.insert("x-secret", HeaderValue::from_static("1"));
        h.insert("upgrade", HeaderValue::from_static("websocket"));
        h.insert("x-keep", HeaderValue::from_static("1"));
        strip_hop_by_hop(&mut h);
        assert_eq!(h.len(), 1);
        assert!(h.contains_key("x-keep"));
    }

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
                target: "t".into()
            }),
            403
        );
    }
}
