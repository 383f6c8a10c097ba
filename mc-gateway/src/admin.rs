//! Admin, beside the data path: the admin server on its own port, `/ready`, `/live` and `/metrics`
//! over plain HTTP/1, and `/ready` and `/live` over mTLS.
//!
//! A meshed Linkerd service-mirror controller probes the gateway's admin port through its own
//! proxy, which sends the probe as mTLS (its client certificate, SNI the gateway identity) and
//! HTTP/2 with `l5d-orig-proto: HTTP/1.1`. The first byte of a connection tells: a TLS
//! handshake record is terminated by rustls with the data port's certificate and client
//! verification ([`crate::tls::ReloadingServerConfig::current_admin`], reloaded with it), then
//! served as HTTP/1.1 or HTTP/2 (hyper, by the HTTP/2 preface); anything else is plain HTTP/1.
//! Requests are answered by path whatever their version or `l5d-orig-proto`, as
//! linkerd2-proxy's admin server does.
//!
//! Over mTLS only the probe paths are served: `/metrics` stays on plaintext, for the
//! in-cluster scrape; a certificate from the shared trust anchor is not a reason to read it.

use std::convert::Infallible;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response, StatusCode, header};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::TlsAcceptor;

use crate::metrics::Exposition;
use crate::tls::ReloadingServerConfig;

/// The TLS record type of a handshake message (RFC 8446 §5.1): the first byte a TLS client
/// sends. No HTTP/1 request (a method token) or HTTP/2 preface (`PRI`) starts with it.
const TLS_HANDSHAKE_RECORD: u8 = 0x16;

/// How a connection to the admin port is served, from its first byte.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Channel {
    /// Plain HTTP/1.
    Plaintext,
    /// mTLS (a TLS ClientHello came first), then HTTP/1.1 or HTTP/2.
    Mtls,
}

/// The channel a connection whose first byte is `first` is served on.
pub(crate) fn channel_of(first: u8) -> Channel {
    if first == TLS_HANDSHAKE_RECORD {
        Channel::Mtls
    } else {
        Channel::Plaintext
    }
}

/// Answers one admin request for `path` on `channel`.
pub(crate) fn respond_on(
    channel: Channel,
    path: &str,
    metrics: &dyn Exposition,
    ready: bool,
) -> Response<Full<Bytes>> {
    match (channel, path) {
        (Channel::Plaintext, _) | (Channel::Mtls, "/ready" | "/live") => {
            respond(path, metrics, ready)
        }
        (Channel::Mtls, _) => text(
            StatusCode::NOT_FOUND,
            "text/plain",
            "not found; over mTLS try /ready or /live (/metrics is served on plaintext only)\n"
                .to_owned(),
        ),
    }
}

/// Answers one admin request (plaintext).
pub(crate) fn respond(path: &str, metrics: &dyn Exposition, ready: bool) -> Response<Full<Bytes>> {
    let (status, content_type, body) = match path {
        "/live" => (StatusCode::OK, "text/plain", "live\n".to_owned()),
        "/ready" if ready => (StatusCode::OK, "text/plain", "ready\n".to_owned()),
        "/ready" => (
            StatusCode::SERVICE_UNAVAILABLE,
            "text/plain",
            "not ready\n".to_owned(),
        ),
        "/metrics" => (
            StatusCode::OK,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
            metrics.encode(),
        ),
        _ => (
            StatusCode::NOT_FOUND,
            "text/plain",
            "not found; try /ready, /live or /metrics\n".to_owned(),
        ),
    };
    text(status, content_type, body)
}

fn text(status: StatusCode, content_type: &str, body: String) -> Response<Full<Bytes>> {
    let mut resp = Response::new(Full::new(Bytes::from(body)));
    *resp.status_mut() = status;
    if let Ok(v) = header::HeaderValue::from_str(content_type) {
        resp.headers_mut().insert(header::CONTENT_TYPE, v);
    }
    resp
}

/// What the admin server serves from.
#[derive(Debug, Clone)]
pub(crate) struct Admin {
    /// The metrics served at `/metrics`.
    pub(crate) metrics: Arc<dyn Exposition>,
    /// Whether the process is ready.
    pub(crate) ready: Arc<AtomicBool>,
    /// The gateway's TLS configurations (the admin one is used); without them (the egress)
    /// a TLS handshake is not answered.
    pub(crate) tls: Option<Arc<ReloadingServerConfig>>,
    /// Time allowed for the first byte and for the TLS handshake.
    pub(crate) handshake_timeout: Duration,
}

/// Serves the admin endpoints on `listener` forever.
pub(crate) async fn serve(listener: TcpListener, admin: Admin) {
    let admin = Arc::new(admin);
    loop {
        let Ok((tcp, peer)) = listener.accept().await else {
            tokio::time::sleep(Duration::from_millis(50)).await;
            continue;
        };
        let admin = admin.clone();
        tokio::spawn(async move {
            if let Err(why) = connection(tcp, &admin).await {
                tracing::debug!(%peer, why, "admin connection ended");
            }
        });
    }
}

/// Serves one admin connection on the channel its first byte selects.
async fn connection(tcp: TcpStream, admin: &Arc<Admin>) -> Result<(), String> {
    let limit = admin.handshake_timeout;
    let mut first = [0u8; 1];
    let peeked = tokio::time::timeout(limit, tcp.peek(&mut first))
        .await
        .map_err(|_| "no byte within the handshake timeout".to_owned())?
        .map_err(|e| e.to_string())?;
    if peeked == 0 {
        return Ok(());
    }
    let channel = channel_of(first[0]);
    let state = admin.clone();
    let service = service_fn(move |req: Request<Incoming>| {
        let ready = state.ready.load(Ordering::SeqCst);
        let resp = respond_on(channel, req.uri().path(), &*state.metrics, ready);
        async move { Ok::<_, Infallible>(resp) }
    });
    match channel {
        Channel::Plaintext => hyper::server::conn::http1::Builder::new()
            .serve_connection(TokioIo::new(tcp), service)
            .await
            .map_err(|e| e.to_string()),
        Channel::Mtls => {
            let Some(tls) = &admin.tls else {
                return Err("a TLS handshake, but this admin server serves plaintext only".into());
            };
            let accept = TlsAcceptor::from(tls.current_admin()).accept(tcp);
            let tls = tokio::time::timeout(limit, accept)
                .await
                .map_err(|_| "TLS handshake timed out".to_owned())?
                .map_err(|e| format!("TLS handshake failed: {e}"))?;
            auto::Builder::new(TokioExecutor::new())
                .serve_connection(TokioIo::new(tls), service)
                .await
                .map_err(|e| e.to_string())
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;
    use crate::metrics::Metrics;

    #[test]
    fn routes() {
        let m = Metrics::new();
        assert_eq!(respond("/ready", &m, false).status(), 503);
        assert_eq!(respond("/ready", &m, true).status(), 200);
        assert_eq!(respond("/live", &m, false).status(), 200);
        assert_eq!(respond("/metrics", &m, true).status(), 200);
        assert_eq!(respond("/nope", &m, true).status(), 404);
    }

    #[test]
    fn a_tls_handshake_record_selects_mtls_and_anything_else_plaintext() {
        assert_eq!(channel_of(0x16), Channel::Mtls);
        for first in [b'G', b'P', b'H', 0x15, 0x17, 0] {
            assert_eq!(channel_of(first), Channel::Plaintext, "{first:#x}");
        }
    }

    #[test]
    fn over_mtls_only_the_probe_paths_are_served() {
        let m = Metrics::new();
        let on = |path, ready| respond_on(Channel::Mtls, path, &m, ready).status();
        assert_eq!(on("/ready", true), 200);
        assert_eq!(on("/ready", false), 503);
        assert_eq!(on("/live", false), 200);
        assert_eq!(on("/metrics", true), 404);
        assert_eq!(on("/nope", true), 404);
        let plain = respond_on(Channel::Plaintext, "/metrics", &m, true);
        assert_eq!(plain.status(), 200);
    }
}
