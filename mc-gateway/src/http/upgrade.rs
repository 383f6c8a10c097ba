//! HTTP/1.1 protocol upgrades (WebSocket and the like) through hyper (stage 4, HTTP): the request
//! goes to the target on a connection of its own, with `Upgrade` and `Connection: upgrade` kept
//! ([`crate::http::headers::keep_upgrade`]); on `101 Switching Protocols` the client's and the
//! target's connections are handed to a task that copies bytes both ways until either side closes.
//!
//! The lean HTTP/1 forwarder hands upgrade requests to hyper, so every upgrade takes this path.
//! The client's connection waits for its tunnels ([`Tunnels`]), so a switched connection
//! keeps its connection slot (`--max-connections`) and its idle timeout, and ends at the
//! latest when the connection does.

use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Mutex;
use std::task::{Context, Poll};

use http::header::{self, HeaderValue};
use http::{Request, Response, StatusCode, Version};
use hyper::body::Incoming;
use hyper::upgrade::OnUpgrade;
use hyper_util::rt::TokioIo;

use crate::backend::Backends;
use crate::http::headers;
use crate::http::upstream::SendError;

/// An upgrade a client asked for: the protocol, and the client's side of the switch.
#[derive(Debug)]
pub(crate) struct Upgrade {
    protocol: HeaderValue,
    client: OnUpgrade,
}

impl Upgrade {
    /// The upgrade `req` asks for: an HTTP/1.1 request whose `Connection` lists `upgrade` and
    /// that names the protocol in `Upgrade`.
    pub(crate) fn requested(req: &mut Request<Incoming>) -> Option<Self> {
        if req.version() != Version::HTTP_11 {
            return None;
        }
        let protocol = headers::upgrade_protocol(req.headers())?;
        Some(Self {
            protocol,
            client: hyper::upgrade::on(req),
        })
    }

    /// Puts the upgrade fields back on the request to the target (after the hop-by-hop
    /// policy removed them).
    pub(crate) fn prepare(&self, req: &mut Request<Incoming>) {
        headers::keep_upgrade(req.headers_mut(), self.protocol.clone());
    }

    /// Sends `req` (origin form) to `addr` on a new connection that can switch protocols.
    pub(crate) async fn send(
        (addr, backends): (SocketAddr, &Backends),
        req: Request<Incoming>,
    ) -> Result<Response<Incoming>, SendError> {
        let stream = backends.connect(addr).await.map_err(SendError::Connect)?;
        let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .map_err(SendError::Http)?;
        tokio::spawn(async move {
            if let Err(e) = conn.with_upgrades().await {
                tracing::debug!(%addr, error = %e, "upgrade connection ended with an error");
            }
        });
        sender.send_request(req).await.map_err(SendError::Http)
    }

    /// When the target switched protocols, starts copying bytes between the two connections
    /// and returns the protocol, whose upgrade fields the response to the client keeps
    /// ([`crate::http::headers::keep_upgrade`]); otherwise the client's upgrade is dropped and the
    /// response is an ordinary one (`None`).
    pub(crate) fn complete(
        self,
        resp: &mut Response<Incoming>,
        tunnels: &Tunnels,
    ) -> Option<HeaderValue> {
        if resp.status() != StatusCode::SWITCHING_PROTOCOLS {
            return None;
        }
        let protocol = resp
            .headers()
            .get(header::UPGRADE)
            .cloned()
            .unwrap_or(self.protocol);
        let target = hyper::upgrade::on(&mut *resp);
        tunnels.add(tokio::spawn(tunnel(self.client, target)));
        Some(protocol)
    }
}

/// Copies bytes both ways between the two switched connections until either side closes.
async fn tunnel(client: OnUpgrade, target: OnUpgrade) {
    let (client, target) = match tokio::try_join!(client, target) {
        Ok(both) => both,
        Err(e) => {
            tracing::debug!(error = %e, "protocol switch failed");
            return;
        }
    };
    let (mut client, mut target) = (TokioIo::new(client), TokioIo::new(target));
    match tokio::io::copy_bidirectional(&mut client, &mut target).await {
        Ok((up, down)) => tracing::debug!(up, down, "upgraded connection closed"),
        Err(e) => tracing::debug!(error = %e, "upgraded connection ended with an error"),
    }
}

/// The tunnels of one client connection. Dropping it aborts those still running.
#[derive(Debug, Default)]
pub(crate) struct Tunnels(Mutex<Vec<Aborting>>);

impl Tunnels {
    fn add(&self, task: tokio::task::JoinHandle<()>) {
        match self.0.lock() {
            Ok(mut t) => t.push(Aborting(task)),
            Err(p) => p.into_inner().push(Aborting(task)),
        }
    }

    /// Waits until every tunnel started so far has ended.
    pub(crate) async fn wait(&self) {
        let tasks = match self.0.lock() {
            Ok(mut t) => std::mem::take(&mut *t),
            Err(p) => std::mem::take(&mut *p.into_inner()),
        };
        futures::future::join_all(tasks).await;
    }
}

/// A task that is aborted when its handle is dropped.
#[derive(Debug)]
struct Aborting(tokio::task::JoinHandle<()>);

impl Future for Aborting {
    type Output = ();

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        Pin::new(&mut self.0).poll(cx).map(|_| ())
    }
}

impl Drop for Aborting {
    fn drop(&mut self) {
        self.0.abort();
    }
}
