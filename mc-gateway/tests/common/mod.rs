//! Shared fixtures of the gateway integration tests: a PKI on disk, backends, an in-process
//! gateway.

#![allow(
    dead_code,
    unreachable_pub,
    missing_docs,
    clippy::unwrap_used,
    clippy::expect_used
)]

use std::convert::Infallible;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use mc_core::pki::{
    AnchorOptions, CertifiedKey, IssuerOptions, LeafOptions, create_issuer, create_trust_anchor,
    issue_leaf,
};
use mc_gateway::resolve::StaticResolver;
use mc_gateway::{Gateway, Limits, ServerConfig};
use mc_gateway::{Suffixes, Target};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpListener;
use tokio::process::{Child, Command};

pub const GATEWAY_ID: &str =
    "linkerd-gateway.linkerd-multicluster.serviceaccount.identity.linkerd.cluster.local";
pub const CLIENT_ID: &str = "web.shop.serviceaccount.identity.linkerd.cluster.local";
pub const SVC: &str = "echo.shop.svc.cluster.local";

/// A root, an issuer, and certificate files in a temporary directory.
pub struct Pki {
    pub dir: tempfile::TempDir,
    pub root: CertifiedKey,
    pub issuer: CertifiedKey,
}

/// Paths of one identity's files.
#[derive(Clone, Debug)]
pub struct Files {
    pub cert: PathBuf,
    pub key: PathBuf,
}

impl Pki {
    pub fn new() -> Self {
        let now = SystemTime::now();
        let root = create_trust_anchor(&AnchorOptions::new(now)).unwrap();
        let issuer = create_issuer(&root, &IssuerOptions::new(now)).unwrap();
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("anchors.pem"), &root.cert_pem).unwrap();
        Self { dir, root, issuer }
    }

    pub fn anchors(&self) -> PathBuf {
        self.dir.path().join("anchors.pem")
    }

    /// Issues a leaf for `identity` and writes `<file>.crt` (chain) and `<file>.key`.
    pub fn leaf_with(&self, file: &str, identity: &str, opts: &LeafOptions) -> Files {
        let leaf = issue_leaf(&self.issuer, identity, opts).unwrap();
        let files = Files {
            cert: self.dir.path().join(format!("{file}.crt")),
            key: self.dir.path().join(format!("{file}.key")),
        };
        std::fs::write(&files.cert, leaf.chain_pem(&self.issuer)).unwrap();
        std::fs::write(&files.key, &leaf.key_pem).unwrap();
        files
    }

    /// Writes the issuer's certificate and key as `issuer.crt` and `issuer.key`, for issuer
    /// mode (`--issuer-cert`, `--issuer-key`).
    pub fn issuer_files(&self) -> Files {
        self.write_issuer("issuer", &self.issuer)
    }

    /// Writes `issuer` (signed by this root) as `<file>.crt` and `<file>.key`.
    pub fn write_issuer(&self, file: &str, issuer: &CertifiedKey) -> Files {
        let files = Files {
            cert: self.dir.path().join(format!("{file}.crt")),
            key: self.dir.path().join(format!("{file}.key")),
        };
        std::fs::write(&files.cert, &issuer.cert_pem).unwrap();
        std::fs::write(&files.key, &issuer.key_pem).unwrap();
        files
    }

    pub fn leaf(&self, file: &str, identity: &str) -> Files {
        self.leaf_with(file, identity, &LeafOptions::new(SystemTime::now()))
    }
}

/// An HTTP backend (HTTP/1 and h2c) that answers with what it received:
/// `method path version\nhost: ..\nl5d-client-id: ..\nforwarded: ..\n\n<body>`.
pub async fn http_backend() -> SocketAddr {
    http_backend_on("127.0.0.1".parse().unwrap()).await
}

/// [`http_backend`] listening on `ip`.
pub async fn http_backend_on(ip: std::net::IpAddr) -> SocketAddr {
    let listener = TcpListener::bind((ip, 0)).await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let (tcp, _) = listener.accept().await.unwrap();
            tokio::spawn(async move {
                let service = service_fn(|req: hyper::Request<Incoming>| async move {
                    let (parts, body) = req.into_parts();
                    let body = body.collect().await.unwrap().to_bytes();
                    let header = |name: &str| {
                        parts
                            .headers
                            .get_all(name)
                            .iter()
                            .map(|v| v.to_str().unwrap().to_owned())
                            .collect::<Vec<_>>()
                            .join(", ")
                    };
                    let host = parts
                        .uri
                        .authority()
                        .map(|a| a.to_string())
                        .unwrap_or_else(|| header("host"));
                    let text = format!(
                        "{} {} {:?}\nhost: {}\nl5d-client-id: {}\nforwarded: {}\n\n{}",
                        parts.method,
                        parts.uri.path(),
                        parts.version,
                        host,
                        header("l5d-client-id"),
                        header("forwarded"),
                        String::from_utf8_lossy(&body)
                    );
                    Ok::<_, Infallible>(hyper::Response::new(Full::new(Bytes::from(text))))
                });
                let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                    .serve_connection(TokioIo::new(tcp), service)
                    .await;
            });
        }
    });
    addr
}

/// A TCP backend that echoes every byte.
pub async fn echo_backend() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let (mut tcp, _) = listener.accept().await.unwrap();
            tokio::spawn(async move {
                let (mut r, mut w) = tcp.split();
                let _ = tokio::io::copy(&mut r, &mut w).await;
                let _ = w.shutdown().await;
            });
        }
    });
    addr
}

/// A TCP backend that reads to EOF, then answers the SHA-256 of what it read (32 bytes).
pub async fn hash_backend() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let (mut tcp, _) = listener.accept().await.unwrap();
            tokio::spawn(async move {
                let mut ctx = ring::digest::Context::new(&ring::digest::SHA256);
                let mut buf = vec![0u8; 256 * 1024];
                loop {
                    let n = tcp.read(&mut buf).await.unwrap();
                    if n == 0 {
                        break;
                    }
                    ctx.update(&buf[..n]);
                }
                let _ = tcp.write_all(ctx.finish().as_ref()).await;
                let _ = tcp.shutdown().await;
            });
        }
    });
    addr
}

/// Deterministic pseudo-random bytes (xorshift), so a transfer is not trivially compressible.
pub fn pattern(seed: u64, len: usize) -> Vec<u8> {
    let mut x = seed | 1;
    let mut out = Vec::with_capacity(len + 8);
    while out.len() < len {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        out.extend_from_slice(&x.to_le_bytes());
    }
    out.truncate(len);
    out
}

/// A running in-process gateway.
pub struct Running {
    pub addr: SocketAddr,
    pub admin: SocketAddr,
    pub metrics: Arc<mc_gateway::Metrics>,
    pub stop: Option<tokio::sync::oneshot::Sender<()>>,
    pub task: tokio::task::JoinHandle<mc_gateway::Result<()>>,
}

impl Running {
    pub async fn shutdown(mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
        self.task.await.unwrap().unwrap();
    }
}

/// The default test configuration: gateway identity `GATEWAY_ID`, a static map.
pub fn config(pki: &Pki, statics: &[(&str, u16, SocketAddr)]) -> ServerConfig {
    let gw = pki.leaf("gateway", GATEWAY_ID);
    let mut resolver = StaticResolver::new();
    for (name, port, addr) in statics {
        resolver.insert(Target::new(name, *port), *addr);
    }
    ServerConfig {
        listen: "127.0.0.1:0".parse().unwrap(),
        admin: Some("127.0.0.1:0".parse().unwrap()),
        certificate: mc_gateway::CertSource::Files {
            cert: gw.cert,
            key: gw.key,
        },
        trust_anchors: pki.anchors(),
        identity: GATEWAY_ID.into(),
        suffixes: Suffixes::for_cluster_domain("cluster.local"),
        policy: Default::default(),
        default_http_port: 80,
        resolver: Arc::new(resolver),
        backend_identities: None,
        threads: 1,
        slice: None,
        limits: Limits {
            handshake_timeout: Duration::from_secs(2),
            header_timeout: Duration::from_secs(1),
            idle_timeout: Duration::from_secs(30),
            drain_timeout: Duration::from_secs(5),
            reload_interval: Duration::from_millis(100),
            ..Limits::default()
        },
    }
}

pub async fn start(config: ServerConfig) -> Running {
    let gw = Gateway::bind(config).await.unwrap();
    let addr = gw.local_addr().unwrap();
    let admin = gw.admin_addr().unwrap();
    let metrics = gw.metrics();
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(gw.run(async move {
        let _ = rx.await;
    }));
    Running {
        addr,
        admin,
        metrics,
        stop: Some(tx),
        task,
    }
}

/// A connector to the running gateway `gw` with a fresh leaf for `CLIENT_ID`, trusting `pki`'s
/// anchors and expecting `GATEWAY_ID`.
pub fn client_connector(pki: &Pki, gw: &Running) -> mc_gateway::client::GatewayConnector {
    let client = pki.leaf("client", CLIENT_ID);
    mc_gateway::client::GatewayConnector::new(
        &client.cert,
        &client.key,
        &pki.anchors(),
        gw.addr.to_string(),
        GATEWAY_ID,
    )
    .unwrap()
}

/// GET over plain HTTP/1 (for the admin server).
pub async fn admin_get(addr: SocketAddr, path: &str) -> (u16, String) {
    let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    let (mut send, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tcp))
        .await
        .unwrap();
    tokio::spawn(conn);
    let req = hyper::Request::get(path)
        .header("host", "admin")
        .body(Full::new(Bytes::new()))
        .unwrap();
    let resp = send.send_request(req).await.unwrap();
    let status = resp.status().as_u16();
    let body = resp.into_body().collect().await.unwrap().to_bytes();
    (status, String::from_utf8_lossy(&body).into_owned())
}

/// Sends `req` on a new HTTP connection over `io` (HTTP/2 when `h2`): status and body.
pub async fn send_once<S>(io: S, h2: bool, req: hyper::Request<Full<Bytes>>) -> (u16, String)
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let resp = if h2 {
        let (mut send, conn) =
            hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(io))
                .await
                .unwrap();
        tokio::spawn(conn);
        send.send_request(req).await.unwrap()
    } else {
        let (mut send, conn) = hyper::client::conn::http1::handshake(TokioIo::new(io))
            .await
            .unwrap();
        tokio::spawn(conn);
        send.send_request(req).await.unwrap()
    };
    let status = resp.status().as_u16();
    let body = resp.into_body().collect().await.unwrap().to_bytes();
    (status, String::from_utf8_lossy(&body).into_owned())
}

/// Reads a metric line's value from the exposition, 0 when absent.
pub fn metric(text: &str, prefix: &str) -> f64 {
    text.lines()
        .find(|l| l.starts_with(prefix))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0.0)
}

/// A rustls client config for hand-made connections to the gateway (ALPN as given).
pub fn raw_client(pki: &Pki, client: Option<&Files>, alpn: &[&[u8]]) -> Arc<rustls::ClientConfig> {
    let mut roots = rustls::RootCertStore::empty();
    let root_der = mc_core::trust::TrustBundle::from_pem(&pki.root.cert_pem, SystemTime::now())
        .unwrap()
        .der_certs();
    for d in root_der {
        roots.add(d).unwrap();
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13])
        .unwrap()
        .with_root_certificates(roots);
    let mut config = match client {
        Some(files) => {
            let k = mc_gateway::load_certified_key(&files.cert, &files.key).unwrap();
            builder
                .with_client_auth_cert(k.cert.clone(), load_key(&files.key))
                .unwrap()
        }
        None => builder.with_no_client_auth(),
    };
    config.alpn_protocols = alpn.iter().map(|a| a.to_vec()).collect();
    Arc::new(config)
}

fn load_key(path: &std::path::Path) -> rustls::pki_types::PrivateKeyDer<'static> {
    use rustls::pki_types::pem::PemObject;
    rustls::pki_types::PrivateKeyDer::from_pem_file(path).unwrap()
}

/// Opens mTLS to the gateway with a hand-made config.
pub async fn raw_connect(
    addr: SocketAddr,
    config: Arc<rustls::ClientConfig>,
) -> std::io::Result<tokio_rustls::client::TlsStream<tokio::net::TcpStream>> {
    let tcp = tokio::net::TcpStream::connect(addr).await?;
    let name = rustls::pki_types::ServerName::try_from(GATEWAY_ID).unwrap();
    tokio_rustls::TlsConnector::from(config)
        .connect(name, tcp)
        .await
}

/// Reads until EOF or error; returns what was read and whether the peer closed cleanly
/// (EOF) or with an error.
pub async fn read_until_closed<S: tokio::io::AsyncRead + Unpin>(
    s: &mut S,
    limit: Duration,
) -> Option<Vec<u8>> {
    let mut out = Vec::new();
    let res = tokio::time::timeout(limit, async {
        let mut buf = [0u8; 4096];
        loop {
            match s.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(n) => out.extend_from_slice(&buf[..n]),
            }
        }
    })
    .await;
    res.ok().map(|()| out)
}

/// A rustls client connection to the gateway and its ClientHello.
pub fn client_hello(tls: &Arc<rustls::ClientConfig>) -> (rustls::ClientConnection, Vec<u8>) {
    let name = rustls::pki_types::ServerName::try_from(GATEWAY_ID).unwrap();
    let mut conn = rustls::ClientConnection::new(tls.clone(), name).unwrap();
    let mut hello = Vec::new();
    conn.write_tls(&mut hello).unwrap();
    (conn, hello)
}

/// One whole request on a new connection: the gateway still serves.
pub async fn finish_one_handshake(gw: &Running, tls: Arc<rustls::ClientConfig>) {
    let mut s = raw_connect(gw.addr, tls).await.unwrap();
    s.write_all(
        b"GET / HTTP/1.1\r\nhost: web.default.svc.cluster.local\r\nconnection: close\r\n\r\n",
    )
    .await
    .unwrap();
    let answer = read_until_closed(&mut s, Duration::from_secs(10))
        .await
        .unwrap();
    assert!(answer.starts_with(b"HTTP/1.1 "), "{answer:?}");
}

/// The `mc-gateway` binary of this build.
pub const BIN: &str = env!("CARGO_BIN_EXE_mc-gateway");

/// A running `mc-gateway` process and its log (JSON lines), read as it is written.
pub struct Proc {
    pub child: Child,
    pub log: Arc<Mutex<String>>,
}

impl Proc {
    /// Spawns the binary and waits for the log line carrying `message`; returns the value of
    /// each requested JSON field of that line.
    pub async fn spawn(args: &[String], message: &str, fields: &[&str]) -> (Self, Vec<String>) {
        let mut child = Command::new(BIN)
            .args(args)
            .env("RUST_LOG", "info")
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .unwrap();
        let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
        let log = Arc::new(Mutex::new(String::new()));
        let needle = format!("\"message\":\"{message}\"");
        let found = tokio::time::timeout(Duration::from_secs(30), async {
            while let Some(line) = lines.next_line().await.unwrap() {
                log.lock().unwrap().push_str(&line);
                log.lock().unwrap().push('\n');
                if line.contains(&needle) {
                    return line;
                }
            }
            panic!(
                "binary exited before logging {message:?}: {}",
                log.lock().unwrap()
            );
        })
        .await
        .unwrap_or_else(|_| panic!("no {message:?} log line: {}", log.lock().unwrap()));
        let values = fields
            .iter()
            .map(|f| {
                let key = format!("\"{f}\":\"");
                let start =
                    found.find(&key).unwrap_or_else(|| panic!("{f} in {found}")) + key.len();
                let rest = &found[start..];
                rest[..rest.find('"').unwrap()].to_owned()
            })
            .collect();
        let sink = log.clone();
        tokio::spawn(async move {
            while let Ok(Some(line)) = lines.next_line().await {
                let mut l = sink.lock().unwrap();
                l.push_str(&line);
                l.push('\n');
            }
        });
        (Self { child, log }, values)
    }

    pub fn sigterm(&self) {
        let pid = self.child.id().unwrap().to_string();
        let ok = std::process::Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .unwrap();
        assert!(ok.success());
    }

    pub fn log(&self) -> String {
        self.log.lock().unwrap().clone()
    }
}

/// The command line of `mc-gateway serve` (JSON logs, listen and admin on free loopback ports,
/// no DNS, identity `GATEWAY_ID`, the PKI's anchors) with `flags`.
pub fn serve_command_line(pki: &Pki, flags: Vec<String>) -> Vec<String> {
    let mut args = command_line(pki, "serve");
    args.extend(strings(&[
        "--listen",
        "127.0.0.1:0",
        "--no-dns",
        "--identity",
        GATEWAY_ID,
    ]));
    args.extend(flags);
    args
}

/// Starts `mc-gateway serve` ([`serve_command_line`]) with `flags` (the certificate's and any
/// other) and `--static` targets; returns it, its data and its admin address.
pub async fn spawn_gateway(
    pki: &Pki,
    flags: Vec<String>,
    statics: &[String],
) -> (Proc, SocketAddr, SocketAddr) {
    let mut args = serve_command_line(pki, flags);
    for s in statics {
        args.extend(["--static".into(), s.clone()]);
    }
    let (p, v) = Proc::spawn(&args, "listening", &["listen", "admin"]).await;
    let admin = v[1]
        .trim_start_matches("Some(")
        .trim_end_matches(')')
        .parse()
        .unwrap();
    (p, v[0].parse().unwrap(), admin)
}

/// Owned copies of `items`, for a command line.
pub fn strings(items: &[&str]) -> Vec<String> {
    items.iter().map(|s| s.to_string()).collect()
}

/// The start of an `mc-gateway` command line: JSON logs, `subcommand`, the admin server on a
/// free loopback port, the trust anchors of `pki`.
pub fn command_line(pki: &Pki, subcommand: &str) -> Vec<String> {
    let anchors = pki.anchors().display().to_string();
    strings(&[
        "--log-format",
        "json",
        subcommand,
        "--admin",
        "127.0.0.1:0",
        "--trust-anchors",
        &anchors,
    ])
}
