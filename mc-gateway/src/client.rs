//! Source side: the client of a gateway. It plays the meshed client of a source cluster. It opens
//! mTLS to a gateway with a client identity, checks the gateway's identity, sends the transport
//! header, and splices. [`Forwarder`] listens locally and splits connections across weighted
//! backends.

use std::future::Future;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use mc_core::transport::{SessionProtocol, TransportHeader};
use rustls::pki_types::ServerName;
use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::TlsConnector;
use tokio_rustls::client::TlsStream;

use crate::opaque::splice;
use crate::stream::Activity;
use crate::tls::{
    ReloadingClientConfig, client_config, load_certified_key, load_roots, server_name,
};
use crate::transport::route::Target;
use crate::{Error, Result};

/// Opens authenticated connections to a gateway, trying its addresses in order.
#[derive(Clone)]
pub struct GatewayConnector {
    tls: ClientTls,
    gateways: Vec<String>,
    identity: ServerName<'static>,
    connect_timeout: Duration,
    handshake_timeout: Duration,
}

/// How long a TCP connect to a gateway address may take before the next one is tried (a
/// gateway whose address drops SYNs must not hold a client for the kernel's two minutes).
const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);

/// Where a connector takes its TLS client configuration from.
#[derive(Clone)]
enum ClientTls {
    /// Loaded once.
    Fixed(TlsConnector),
    /// The current configuration of files that renew on disk.
    Reloading(Arc<ReloadingClientConfig>),
}

impl ClientTls {
    fn connector(&self) -> TlsConnector {
        match self {
            ClientTls::Fixed(c) => c.clone(),
            ClientTls::Reloading(r) => TlsConnector::from(r.current()),
        }
    }
}

impl std::fmt::Debug for GatewayConnector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GatewayConnector")
            .field("gateways", &self.gateways)
            .field("identity", &self.identity)
            .finish_non_exhaustive()
    }
}

impl GatewayConnector {
    /// A connector presenting the client certificate `cert`/`key`, trusting `trust_anchors`,
    /// to the gateway at `gateway` (`host:port`), which must present `gateway_identity`.
    pub fn new(
        cert: &Path,
        key: &Path,
        trust_anchors: &Path,
        gateway: impl Into<String>,
        gateway_identity: &str,
    ) -> Result<Self> {
        let certified = load_certified_key(cert, key)?;
        let roots = load_roots(trust_anchors)?;
        let config = client_config(&certified, roots)?;
        Ok(Self {
            tls: ClientTls::Fixed(TlsConnector::from(Arc::new(config))),
            gateways: vec![gateway.into()],
            identity: server_name(gateway_identity)?,
            connect_timeout: CONNECT_TIMEOUT,
            handshake_timeout: Duration::from_secs(10),
        })
    }

    /// A connector using the current configuration of `tls` for each connection, to the
    /// gateway at `gateways` (`ip:port`, tried in order), which must present
    /// `gateway_identity`.
    pub fn reloading(
        tls: Arc<ReloadingClientConfig>,
        gateways: Vec<String>,
        gateway_identity: &str,
    ) -> Result<Self> {
        Ok(Self {
            tls: ClientTls::Reloading(tls),
            gateways,
            identity: server_name(gateway_identity)?,
            connect_timeout: CONNECT_TIMEOUT,
            handshake_timeout: Duration::from_secs(10),
        })
    }

    /// The same connector, giving up on a TCP connect after `timeout` (default 3 s).
    pub fn with_connect_timeout(mut self, timeout: Duration) -> Self {
        self.connect_timeout = timeout;
        self
    }

    /// The gateway addresses, in the order they are tried.
    pub fn gateways(&self) -> &[String] {
        &self.gateways
    }

    /// Connects, completes the handshake (verifying the gateway identity), and sends the
    /// transport header for `target`. The returned stream carries the application bytes.
    ///
    /// Each gateway address is tried in order until one succeeds; every failure is logged
    /// with its address. With one address its error is returned, with more
    /// [`Error::GatewaysUnreachable`].
    pub async fn connect(
        &self,
        target: &Target,
        protocol: Option<SessionProtocol>,
    ) -> Result<TlsStream<TcpStream>> {
        let mut failures = Vec::new();
        for gateway in &self.gateways {
            match self.connect_to(gateway, target, protocol).await {
                Ok(tls) => return Ok(tls),
                Err(e) => {
                    tracing::warn!(%gateway, %target, error = %e, "cannot reach the gateway");
                    failures.push((gateway.clone(), e));
                }
            }
        }
        match failures.len() {
            1 => Err(failures.remove(0).1),
            _ => Err(Error::GatewaysUnreachable {
                target: target.to_string(),
                errors: failures.iter().map(|(g, e)| format!("{g}: {e}")).collect(),
            }),
        }
    }

    /// [`Self::connect`] through the gateway address `gateway`.
    async fn connect_to(
        &self,
        gateway: &str,
        target: &Target,
        protocol: Option<SessionProtocol>,
    ) -> Result<TlsStream<TcpStream>> {
        let tcp = tokio::time::timeout(self.connect_timeout, TcpStream::connect(gateway))
            .await
            .map_err(|_| Error::Timeout {
                what: "the TCP connect to the gateway",
                after: self.connect_timeout,
            })?
            .map_err(|source| Error::Connect {
                addr: gateway.to_owned(),
                what: "gateway",
                source,
            })?;
        let _ = tcp.set_nodelay(true);
        let handshake = self.tls.connector().connect(self.identity.clone(), tcp);
        let mut tls = tokio::time::timeout(self.handshake_timeout, handshake)
            .await
            .map_err(|_| Error::Timeout {
                what: "the TLS handshake with the gateway",
                after: self.handshake_timeout,
            })?
            .map_err(|source| Error::Io {
                what: "TLS handshake with the gateway",
                source,
            })?;
        if tls.get_ref().1.alpn_protocol() != Some(mc_core::transport::ALPN) {
            return Err(Error::Io {
                what: "negotiating ALPN transport.l5d.io/v1 with the gateway",
                source: std::io::Error::other("the gateway did not accept the protocol"),
            });
        }
        let header = TransportHeader {
            port: target.port,
            name: Some(target.name.clone()),
            protocol,
        };
        tls.write_all(&header.encode())
            .await
            .map_err(|source| Error::Io {
                what: "sending the transport header",
                source,
            })?;
        Ok(tls)
    }
}

/// Where the forwarder sends a connection.
#[derive(Debug, Clone)]
pub enum BackendKind {
    /// A plain TCP address (the local service), `ip:port` or `host:port` (resolved per
    /// connection, so a Service name follows its ClusterIP).
    Local(String),
    /// The remote service, through a gateway.
    Gateway(GatewayConnector),
}

/// One weighted backend of a [`Forwarder`].
#[derive(Debug, Clone)]
pub struct Backend {
    /// A name for logs (`local`, `gateway`, ...).
    pub name: String,
    /// Where it goes.
    pub kind: BackendKind,
    /// Its share of connections, relative to the others (0 disables it).
    pub weight: u32,
}

/// A parsed `--backend` flag: `local=<host:port>[,weight=N]` or
/// `gateway=<host:port>[,weight=N]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BackendSpec {
    /// `local` or `gateway`.
    pub kind: String,
    /// The address.
    pub addr: String,
    /// The weight (default 1).
    pub weight: u32,
}

impl BackendSpec {
    /// Parses the flag value.
    pub fn parse(spec: &str) -> Result<Self> {
        let bad = |why: &str| Error::InvalidArg {
            flag: "--backend",
            value: spec.to_owned(),
            why: why.to_owned(),
            fix: "local=127.0.0.1:9000,weight=50 or gateway=10.0.0.1:4143,weight=50",
        };
        let mut parts = spec.split(',');
        let first = parts.next().unwrap_or_default();
        let (kind, addr) = first.split_once('=').ok_or_else(|| bad("no '='"))?;
        if kind != "local" && kind != "gateway" {
            return Err(bad("the kind must be local or gateway"));
        }
        if addr.is_empty() {
            return Err(bad("empty address"));
        }
        let mut weight = 1;
        for part in parts {
            match part.split_once('=') {
                Some(("weight", w)) => {
                    weight = w.parse().map_err(|_| bad("weight is not a number"))?;
                }
                _ => return Err(bad("unknown option; only weight=N")),
            }
        }
        Ok(Self {
            kind: kind.to_owned(),
            addr: addr.to_owned(),
            weight,
        })
    }
}

/// Smooth weighted round robin (as in nginx): deterministic, and spreads picks evenly.
#[derive(Debug)]
pub(crate) struct WeightedPicker {
    weights: Vec<i64>,
    current: Mutex<Vec<i64>>,
}

impl WeightedPicker {
    /// A picker over the given weights.
    pub(crate) fn new(weights: impl IntoIterator<Item = u32>) -> Self {
        let weights: Vec<i64> = weights.into_iter().map(i64::from).collect();
        let current = Mutex::new(vec![0; weights.len()]);
        Self { weights, current }
    }

    /// The index of the next pick; `None` when every weight is zero.
    pub(crate) fn pick(&self) -> Option<usize> {
        let total: i64 = self.weights.iter().sum();
        if total == 0 {
            return None;
        }
        let mut current = match self.current.lock() {
            Ok(g) => g,
            Err(p) => p.into_inner(),
        };
        let mut best = 0;
        for (i, w) in self.weights.iter().enumerate() {
            current[i] += w;
            if current[i] > current[best] {
                best = i;
            }
        }
        current[best] -= total;
        Some(best)
    }
}

/// Listens locally and forwards each connection to one of its backends.
#[derive(Debug)]
pub struct Forwarder {
    listener: TcpListener,
    backends: Vec<Backend>,
    picker: WeightedPicker,
    target: Target,
    protocol: Option<SessionProtocol>,
    idle_timeout: Duration,
}

impl Forwarder {
    /// Binds `listen`. Gateway backends carry `target` (the remote service's
    /// `remote-svc-fq-name` and port) and `protocol` in their transport header.
    pub async fn bind(
        listen: SocketAddr,
        backends: Vec<Backend>,
        target: Target,
        protocol: Option<SessionProtocol>,
    ) -> Result<Self> {
        let listener = TcpListener::bind(listen)
            .await
            .map_err(|source| Error::Bind {
                addr: listen,
                flag: "--listen",
                source,
            })?;
        let picker = WeightedPicker::new(backends.iter().map(|b| b.weight));
        Ok(Self {
            listener,
            backends,
            picker,
            target,
            protocol,
            idle_timeout: Duration::from_secs(300),
        })
    }

    /// The local address.
    pub fn local_addr(&self) -> Result<SocketAddr> {
        self.listener.local_addr().map_err(|source| Error::Io {
            what: "reading the listener address",
            source,
        })
    }

    /// Serves until `shutdown` resolves.
    pub async fn run(self, shutdown: impl Future<Output = ()>) -> Result<()> {
        let this = Arc::new(self);
        tokio::pin!(shutdown);
        loop {
            let (tcp, peer) = tokio::select! {
                () = &mut shutdown => return Ok(()),
                a = this.listener.accept() => match a {
                    Ok(a) => a,
                    Err(e) => {
                        tracing::warn!(error = %e, "accept failed");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                },
            };
            let Some(i) = this.picker.pick() else {
                tracing::warn!(%peer, "no backend with a non-zero weight");
                continue;
            };
            let this = this.clone();
            tokio::spawn(async move {
                let backend = &this.backends[i];
                if let Err(e) = this.forward(tcp, backend).await {
                    tracing::info!(%peer, backend = %backend.name, error = %e, "forwarding failed");
                }
            });
        }
    }

    async fn forward(&self, tcp: TcpStream, backend: &Backend) -> Result<()> {
        let _ = tcp.set_nodelay(true);
        match &backend.kind {
            BackendKind::Local(addr) => {
                let up =
                    TcpStream::connect(addr.as_str())
                        .await
                        .map_err(|source| Error::Connect {
                            addr: addr.clone(),
                            what: "local backend",
                            source,
                        })?;
                let _ = up.set_nodelay(true);
                splice(tcp, up, self.idle_timeout, Activity::new()).await?;
            }
            BackendKind::Gateway(connector) => {
                let up = connector.connect(&self.target, self.protocol).await?;
                splice(tcp, up, self.idle_timeout, Activity::new()).await?;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;

    #[test]
    fn backend_specs() {
        assert_eq!(
            BackendSpec::parse("local=127.0.0.1:9000,weight=50").unwrap(),
            BackendSpec {
                kind: "local".into(),
                addr: "127.0.0.1:9000".into(),
                weight: 50
            }
        );
        assert_eq!(BackendSpec::parse("gateway=gw:4143").unwrap().weight, 1);
        for bad in ["x=1", "local", "local=", "local=a,weight=x", "local=a,w=1"] {
            assert!(BackendSpec::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn weighted_picks_follow_weights_and_interleave() {
        let p = WeightedPicker::new([3, 1]);
        let picks: Vec<usize> = (0..8).filter_map(|_| p.pick()).collect();
        assert_eq!(picks.iter().filter(|i| **i == 0).count(), 6);
        assert_eq!(picks.iter().filter(|i| **i == 1).count(), 2);
        // Smooth: never the minority twice in a row.
        assert!(picks.windows(2).all(|w| !(w[0] == 1 && w[1] == 1)));
        let zero = WeightedPicker::new([0, 2]);
        assert!((0..5).all(|_| zero.pick() == Some(1)));
        assert_eq!(WeightedPicker::new([0]).pick(), None);
    }
}
