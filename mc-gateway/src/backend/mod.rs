//! Connections to target backends (stages 4 and 5 of every path): every one is opened here.
//!
//! A backend that a Linkerd proxy meshes gets mTLS as the gateway's own identity, as upstream's
//! gateway (itself a meshed proxy) reaches it, so that backends whose inbound policy refuses
//! unauthenticated clients (`all-authenticated`, or an AuthorizationPolicy naming the gateway's
//! ServiceAccount) admit the gateway. Which backends are meshed, and the identity each must
//! present, comes from a [`BackendIdentities`]; every other backend gets plain TCP.

#[cfg(feature = "kubernetes")]
pub(crate) mod kubernetes;
pub(crate) mod mesh;

use std::io::IoSlice;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use rustls::pki_types::ServerName;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;
use tokio_rustls::client::TlsStream;

pub use mesh::{BackendIdentities, StaticIdentities};

use crate::tls::ReloadingServerConfig;
use crate::{Error, Result};

/// An open connection to a backend.
#[derive(Debug)]
pub(crate) enum BackendStream {
    /// Plain TCP.
    Plain(TcpStream),
    /// mTLS to a meshed backend's proxy.
    Mesh(Box<TlsStream<TcpStream>>),
}

/// Opens backend connections.
#[derive(Debug, Clone, Default)]
pub(crate) struct Backends {
    mesh: Option<MeshClient>,
    metrics: BackendMetrics,
}

/// The client side towards meshed backends.
#[derive(Debug, Clone)]
struct MeshClient {
    identities: Arc<dyn BackendIdentities>,
    tls: Arc<ReloadingServerConfig>,
    handshake_timeout: Duration,
}

/// Counters of mTLS connections to meshed backends.
#[derive(Debug, Clone, Default)]
pub(crate) struct BackendMetrics {
    /// Handshakes with meshed backends, by `result` (`ok` or the failure reason).
    pub(crate) mtls: Family<Vec<(&'static str, &'static str)>, Counter>,
}

impl Backends {
    /// Plain TCP to every backend.
    #[cfg(test)]
    pub(crate) fn plain() -> Self {
        Self::default()
    }

    /// mTLS to the backends `identities` names (with the gateway's certificate and anchors in
    /// `tls`), plain TCP to the others; without `identities`, plain TCP to all.
    pub(crate) fn new(
        identities: Option<Arc<dyn BackendIdentities>>,
        tls: Arc<ReloadingServerConfig>,
        handshake_timeout: Duration,
        metrics: BackendMetrics,
    ) -> Self {
        Self {
            mesh: identities.map(|identities| MeshClient {
                identities,
                tls,
                handshake_timeout,
            }),
            metrics,
        }
    }

    /// Opens a connection to the backend at `addr`: TCP (Nagle off), then mTLS if it is meshed.
    pub(crate) async fn connect(&self, addr: SocketAddr) -> Result<BackendStream> {
        let tcp = crate::stream::connect_tcp(addr, "target backend").await?;
        let Some(mesh) = &self.mesh else {
            return Ok(BackendStream::Plain(tcp));
        };
        let Some(identity) = mesh.identities.identity(addr) else {
            return Ok(BackendStream::Plain(tcp));
        };
        let result = mesh.handshake(addr, &identity, tcp).await;
        let label = match &result {
            Ok(_) => "ok",
            Err(Error::Timeout { .. }) => "timeout",
            Err(_) => "failed",
        };
        self.metrics
            .mtls
            .get_or_create(&vec![("result", label)])
            .inc();
        if let Err(e) = &result {
            tracing::warn!(%addr, %identity, error = %e, "meshed backend refused or failed the mTLS handshake");
        }
        result
    }
}

impl MeshClient {
    async fn handshake(
        &self,
        addr: SocketAddr,
        identity: &str,
        tcp: TcpStream,
    ) -> Result<BackendStream> {
        let failed = |source| Error::BackendTls {
            addr,
            identity: identity.to_owned(),
            source,
        };
        let name = ServerName::try_from(identity.to_owned())
            .map_err(|e| failed(std::io::Error::other(e)))?;
        let connector = TlsConnector::from(self.tls.current_backend());
        let tls = tokio::time::timeout(self.handshake_timeout, connector.connect(name, tcp))
            .await
            .map_err(|_| Error::Timeout {
                what: "the mTLS handshake with a meshed backend",
                after: self.handshake_timeout,
            })?
            .map_err(failed)?;
        Ok(BackendStream::Mesh(Box::new(tls)))
    }
}

impl AsyncRead for BackendStream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        match self.get_mut() {
            BackendStream::Plain(s) => Pin::new(s).poll_read(cx, buf),
            BackendStream::Mesh(s) => Pin::new(s.as_mut()).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for BackendStream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        match self.get_mut() {
            BackendStream::Plain(s) => Pin::new(s).poll_write(cx, buf),
            BackendStream::Mesh(s) => Pin::new(s.as_mut()).poll_write(cx, buf),
        }
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        match self.get_mut() {
            BackendStream::Plain(s) => Pin::new(s).poll_write_vectored(cx, bufs),
            BackendStream::Mesh(s) => Pin::new(s.as_mut()).poll_write_vectored(cx, bufs),
        }
    }

    fn is_write_vectored(&self) -> bool {
        match self {
            BackendStream::Plain(s) => s.is_write_vectored(),
            BackendStream::Mesh(s) => s.is_write_vectored(),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        match self.get_mut() {
            BackendStream::Plain(s) => Pin::new(s).poll_flush(cx),
            BackendStream::Mesh(s) => Pin::new(s.as_mut()).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        match self.get_mut() {
            BackendStream::Plain(s) => Pin::new(s).poll_shutdown(cx),
            BackendStream::Mesh(s) => Pin::new(s.as_mut()).poll_shutdown(cx),
        }
    }
}

impl hyper_util::client::legacy::connect::Connection for BackendStream {
    fn connected(&self) -> hyper_util::client::legacy::connect::Connected {
        match self {
            BackendStream::Plain(s) => s.connected(),
            BackendStream::Mesh(s) => s.get_ref().0.connected(),
        }
    }
}
