//! The admin HTTP server: `/live`, `/ready` and `/metrics`.
//!
//! A deliberately small HTTP/1.1 responder on plain tokio: it reads one request line, answers and
//! closes the connection. `/ready` answers 200 once the local caches of every running Link worker
//! have synced (and while the process is not leading any Link, since a standby replica is ready to
//! take over); `/live` answers 200 while the process runs.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::{TcpListener, TcpStream};

use crate::metrics::Metrics;
use crate::{Error, Result};

/// Readiness shared between the workers and the admin server.
#[derive(Clone, Debug, Default)]
pub struct Readiness(Arc<AtomicBool>);

impl Readiness {
    /// Sets the readiness.
    pub fn set(&self, ready: bool) {
        self.0.store(ready, Ordering::Relaxed);
    }

    /// `true` once ready.
    pub fn get(&self) -> bool {
        self.0.load(Ordering::Relaxed)
    }
}

/// A bound admin server; call [`AdminServer::serve`] to answer requests.
#[derive(Debug)]
pub struct AdminServer {
    listener: TcpListener,
    metrics: Arc<Metrics>,
    ready: Readiness,
}

impl AdminServer {
    /// Binds `addr` (e.g. `0.0.0.0:9999`; port 0 picks a free port).
    pub async fn bind(addr: &str, metrics: Arc<Metrics>, ready: Readiness) -> Result<AdminServer> {
        let listener = TcpListener::bind(addr)
            .await
            .map_err(|source| Error::AdminBind {
                addr: addr.to_string(),
                source,
            })?;
        Ok(AdminServer {
            listener,
            metrics,
            ready,
        })
    }

    /// The address actually bound.
    pub fn local_addr(&self) -> Option<SocketAddr> {
        self.listener.local_addr().ok()
    }

    /// Answers requests until the task is dropped.
    pub async fn serve(self) {
        loop {
            let Ok((stream, _)) = self.listener.accept().await else {
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            };
            let metrics = self.metrics.clone();
            let ready = self.ready.clone();
            tokio::spawn(async move {
                let _ =
                    tokio::time::timeout(Duration::from_secs(10), answer(stream, &metrics, &ready))
                        .await;
            });
        }
    }
}

async fn answer(
    mut stream: TcpStream,
    metrics: &Metrics,
    ready: &Readiness,
) -> std::io::Result<()> {
    let mut buf = vec![0u8; 4096];
    let mut len = 0;
    while !buf[..len].windows(4).any(|w| w == b"\r\n\r\n") && len < buf.len() {
        let n = stream.read(&mut buf[len..]).await?;
        if n == 0 {
            break;
        }
        len += n;
    }
    let head = String::from_utf8_lossy(&buf[..len]);
    let mut parts = head.split_whitespace();
    let (method, path) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
    let path = path.split('?').next().unwrap_or("");
    let (status, ctype, body) = route(method, path, metrics, ready);
    let response = format!(
        "HTTP/1.1 {status}\r\ncontent-type: {ctype}\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
        body.len()
    );
    stream.write_all(response.as_bytes()).await?;
    stream.shutdown().await
}

fn route(
    method: &str,
    path: &str,
    metrics: &Metrics,
    ready: &Readiness,
) -> (&'static str, &'static str, String) {
    const TEXT: &str = "text/plain; charset=utf-8";
    if method != "GET" {
        return ("405 Method Not Allowed", TEXT, "only GET\n".into());
    }
    match path {
        "/live" | "/ping" => ("200 OK", TEXT, "ok\n".into()),
        "/ready" if ready.get() => ("200 OK", TEXT, "ready\n".into()),
        "/ready" => (
            "503 Service Unavailable",
            TEXT,
            "caches not synced\n".into(),
        ),
        "/metrics" => (
            "200 OK",
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
            metrics.encode(),
        ),
        _ => (
            "404 Not Found",
            TEXT,
            "try /live, /ready or /metrics\n".into(),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn get(addr: SocketAddr, path: &str) -> String {
        let mut s = TcpStream::connect(addr).await.unwrap();
        s.write_all(format!("GET {path} HTTP/1.1\r\nhost: x\r\n\r\n").as_bytes())
            .await
            .unwrap();
        let mut out = String::new();
        s.read_to_string(&mut out).await.unwrap();
        out
    }

    #[tokio::test]
    async fn serves_live_ready_and_metrics() {
        let metrics = Arc::new(Metrics::new());
        metrics.write("east", "create", "services");
        let ready = Readiness::default();
        let server = AdminServer::bind("127.0.0.1:0", metrics, ready.clone())
            .await
            .unwrap();
        let addr = server.local_addr().unwrap();
        let task = tokio::spawn(server.serve());
        assert!(get(addr, "/live").await.starts_with("HTTP/1.1 200"));
        assert!(get(addr, "/ready").await.starts_with("HTTP/1.1 503"));
        ready.set(true);
        assert!(get(addr, "/ready").await.starts_with("HTTP/1.1 200"));
        let m = get(addr, "/metrics").await;
        assert!(m.contains("mirror_api_writes_total{target_cluster_name=\"east\",verb=\"create\",resource=\"services\"} 1"), "{m}");
        assert!(get(addr, "/nope").await.starts_with("HTTP/1.1 404"));
        task.abort();
    }
}
