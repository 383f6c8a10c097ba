//! HTTP, stage 4 of a connection: requests from an authenticated client to the target
//! service, with loop protection, `Forwarded` and `l5d-client-id`.
//!
//! - [`serve`]: serves a client stream, through the lean HTTP/1 forwarder ([`h1`]) or hyper;
//! - this module: [`HttpContext`], one connection's routing, allow-list checks and forwarding
//!   of each request on the hyper path;
//! - [`headers`]: the one hop-by-hop and forwarded-header policy of both paths (where to add
//!   a header the gateway sets or forwards);
//! - [`upgrade`]: HTTP/1.1 upgrades (WebSocket);
//! - [`upstream`]: the connections to target backends.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::Mutex;
use std::time::Instant;

use bytes::Bytes;
use http::header::{self, HeaderValue};
use http::uri::{PathAndQuery, Scheme};
use http::{Request, Response, StatusCode, Uri, Version};
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;

use crate::http::headers::Message;
use crate::http::headers::{Added, check_forwarded};
use crate::http::upgrade::{Tunnels, Upgrade};
use crate::http::upstream::{Dedicated, SendError, Upstreams};
use crate::metrics::{Metrics, TargetMetrics};
use crate::policy::ReloadingPolicy;
use crate::transport::resolve::SharedResolver;
use crate::transport::route::{Suffixes, Target};
use crate::{Error, Result};

pub(crate) mod h1;
pub(crate) mod headers;
pub(crate) mod serve;
pub(crate) mod upgrade;
pub(crate) mod upstream;

/// The response body type of the gateway's HTTP service.
pub(crate) type Body = BoxBody<Bytes, hyper::Error>;

/// Everything one HTTP-serving connection needs.
#[derive(Debug)]
pub(crate) struct HttpContext {
    /// The gateway's own identity.
    pub(crate) gateway_id: Arc<str>,
    /// The authenticated client identity.
    pub(crate) client_id: Arc<str>,
    /// The target fixed by the transport header, or `None` to route each request by its
    /// authority.
    pub(crate) fixed_target: Option<Target>,
    /// Speak HTTP/2 (prior knowledge) to the target instead of HTTP/1.1.
    pub(crate) upstream_h2: bool,
    /// Port assumed when a Host header has none.
    pub(crate) default_port: u16,
    /// Allowed target suffixes.
    pub(crate) suffixes: Arc<Suffixes>,
    /// Per-service policy (the allow-list in force).
    pub(crate) policy: Arc<ReloadingPolicy>,
    /// Upstream clients shared by every connection (HTTP/2, and HTTP/1 beyond the dedicated
    /// connections).
    pub(crate) upstreams: Upstreams,
    /// This connection's own upstream HTTP/1 connections.
    pub(crate) dedicated: Dedicated,
    /// Metrics.
    pub(crate) metrics: Arc<Metrics>,
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
    /// The fields the gateway sets on each request (`l5d-client-id`, `Forwarded`).
    pub(crate) added: Added,
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
pub(crate) fn error_response(status: StatusCode, message: String) -> Response<Body> {
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
pub(crate) fn status_for(e: &Error) -> StatusCode {
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
    pub(crate) fn new(
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
        let added = Added::new(&self.gateway_id, &self.client_id, &target)
            .map_err(|_| bad("not a valid header value"))?;
        Ok(TargetEntry {
            key: key.map(str::to_owned),
            generation,
            authority: authority
                .parse()
                .map_err(|_| bad("cannot form a request URI"))?,
            host: value(&authority)?,
            added,
            metrics: self.metrics.http_target(&authority),
            target,
        })
    }

    /// The request as the target gets it, sent in `version` (see [`headers::exchange`]).
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
        headers::strip(&mut parts.headers, Message::Request);
        parts.uri = absolute(&parts.uri, entry)?;
        parts.version = version;
        if version == Version::HTTP_2 {
            parts.headers.remove(header::HOST);
        } else {
            parts.headers.insert(header::HOST, entry.host.clone());
        }
        entry.added.set(&mut parts.headers);
        Ok(Request::from_parts(parts, body))
    }

    /// Forwards one request and returns the target's response, or an error response.
    pub(crate) async fn forward(&self, mut req: Request<Incoming>) -> Response<Body> {
        let start = Instant::now();
        let exchange = headers::exchange(
            req.version(),
            req.headers().get(headers::ORIG_PROTO_HEADER),
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
        (exchange, dedicated): (headers::Exchange, bool),
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
            Upgrade::send((addr, &self.upstreams.backends), origin_form(req))
                .await
                .map_err(Failure::from)
        } else if dedicated {
            match self
                .dedicated
                .send((addr, &self.upstreams.backends), origin_form(req))
                .await
            {
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
                headers::strip(&mut parts.headers, Message::Response);
                if let Some(protocol) = switched {
                    headers::keep_upgrade(&mut parts.headers, protocol);
                }
                // A downgraded request's response names the version the target answered in,
                // as linkerd2-proxy's inbound side does; the client proxy restores it.
                if let Some(v) = exchange
                    .downgraded
                    .then(|| headers::orig_proto_of(parts.version))
                    .flatten()
                {
                    parts.headers.insert(headers::ORIG_PROTO_HEADER, v);
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
