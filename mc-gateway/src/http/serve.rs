//! Serving HTTP on an authenticated client stream, stage 4 of a connection: HTTP/1 to an
//! HTTP/1 target through the lean forwarder ([`h1`]), everything else (HTTP/2, upgrades, what
//! the lean forwarder hands over) through hyper, each request forwarded by [`HttpContext`].

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use mc_core::transport::SessionProtocol;
use tokio::sync::watch;

use crate::http::h1::{self, End, H1Limits};
use crate::http::{Body, HttpContext};
use crate::transport::header::Prefixed;

/// The limits of the HTTP stage (from the gateway's `Limits`).
#[derive(Debug, Clone, Copy)]
pub(crate) struct Limits {
    /// Time allowed for a request head.
    pub(crate) header_timeout: Duration,
    /// The largest request head (at least 8 KiB is allowed).
    pub(crate) max_head: usize,
}

/// Serves HTTP on an authenticated stream until it closes or shutdown asks it to finish.
///
/// HTTP/1 to an HTTP/1 target goes through the lean forwarder ([`h1`]); what it does
/// not serve is handed, with the bytes it read, to hyper for the rest of the connection.
pub(crate) async fn serve<S>(
    io: S,
    ctx: HttpContext,
    protocol: Option<SessionProtocol>,
    limits: Limits,
    stop: watch::Receiver<bool>,
) where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    if protocol == Some(SessionProtocol::Http2) || ctx.upstream_h2 {
        return serve_hyper(io, ctx, protocol, limits, stop).await;
    }
    let h1_limits = H1Limits {
        header_timeout: limits.header_timeout,
        max_head: limits.max_head.max(8192),
    };
    match h1::serve(io, &ctx, h1_limits, stop.clone()).await {
        End::Closed => {}
        End::Handoff { io, rest, why } => {
            tracing::debug!(client = %ctx.client_id, why, "HTTP connection handed to hyper");
            let io = Prefixed::new(rest, io);
            serve_hyper(io, ctx, protocol, limits, stop).await;
        }
    }
}

/// Serves HTTP on an authenticated stream with hyper (HTTP/2, or HTTP/1 the lean forwarder
/// handed over).
async fn serve_hyper<S>(
    io: S,
    ctx: HttpContext,
    protocol: Option<SessionProtocol>,
    limits: Limits,
    stop: watch::Receiver<bool>,
) where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let ctx = Arc::new(ctx);
    let forwarding = ctx.clone();
    let service = service_fn(move |req| {
        let ctx = forwarding.clone();
        async move { Ok::<_, std::convert::Infallible>(ctx.forward(req).await) }
    });
    let tunnels_stop = stop.clone();
    serve_hyper_conn(io, service, protocol, limits, stop).await;
    // Switched (upgraded) connections live on past hyper's connection: the client's connection
    // (its slot and its idle timeout) lasts until they end, or until shutdown.
    let stopped = async move {
        let mut stop = tunnels_stop;
        let _ = stop.wait_for(|s| *s).await;
    };
    tokio::select! {
        () = ctx.tunnels.wait() => {}
        () = stopped => {}
    }
}

/// Serves one HTTP connection with hyper until it ends (or shutdown drains it).
async fn serve_hyper_conn<S, F>(
    io: S,
    service: F,
    protocol: Option<SessionProtocol>,
    limits: Limits,
    stop: watch::Receiver<bool>,
) where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
    F: hyper::service::Service<
            hyper::Request<hyper::body::Incoming>,
            Response = hyper::Response<Body>,
            Error = std::convert::Infallible,
        > + Clone
        + Send
        + 'static,
    F::Future: Send + 'static,
{
    if protocol == Some(SessionProtocol::Http1) {
        // Known HTTP/1: hyper's HTTP/1 server itself, without version detection.
        let mut builder = hyper::server::conn::http1::Builder::new();
        builder
            .timer(TokioTimer::new())
            .header_read_timeout(limits.header_timeout)
            .max_buf_size(limits.max_head.max(8192));
        let conn = builder
            .serve_connection(TokioIo::new(io), service)
            .with_upgrades();
        tokio::pin!(conn);
        return until_stopped(conn, stop, |c| c.graceful_shutdown()).await;
    }
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_timeout)
        .max_buf_size(limits.max_head.max(8192));
    builder
        .http2()
        .timer(TokioTimer::new())
        .max_header_list_size(u32::try_from(limits.max_head).unwrap_or(u32::MAX));
    let builder = match protocol {
        Some(SessionProtocol::Http2) => builder.http2_only(),
        _ => builder,
    };
    let conn = builder.serve_connection_with_upgrades(TokioIo::new(io), service);
    tokio::pin!(conn);
    until_stopped(conn, stop, |c| c.graceful_shutdown()).await;
}

/// Drives an HTTP connection until it ends, or until `stop`: then shuts it down gracefully
/// (in-flight requests finish) and drives it to its end.
async fn until_stopped<C, E>(
    mut conn: std::pin::Pin<&mut C>,
    mut stop: watch::Receiver<bool>,
    graceful_shutdown: impl FnOnce(std::pin::Pin<&mut C>),
) where
    C: Future<Output = std::result::Result<(), E>>,
    E: std::fmt::Display,
{
    tokio::select! {
        r = conn.as_mut() => {
            if let Err(e) = r {
                tracing::debug!(error = %e, "HTTP connection error");
            }
        }
        () = async { let _ = stop.wait_for(|s| *s).await; } => {
            graceful_shutdown(conn.as_mut());
            if let Err(e) = conn.await {
                tracing::debug!(error = %e, "HTTP connection error while draining");
            }
        }
    }
}
