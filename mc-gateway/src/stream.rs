//! Plumbing every stage of a connection shares: opening a TCP connection, and the activity
//! and byte accounting ([`Tracked`]) the idle timeouts and metrics read.

use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use prometheus_client::metrics::counter::Counter;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

use crate::{Error, Result};

/// Opens a TCP connection to `addr` (`what` names it in the error), Nagle off.
pub(crate) async fn connect_tcp(
    addr: std::net::SocketAddr,
    what: &'static str,
) -> Result<tokio::net::TcpStream> {
    let stream = tokio::net::TcpStream::connect(addr)
        .await
        .map_err(|source| Error::Connect {
            addr: addr.to_string(),
            what,
            source,
        })?;
    let _ = stream.set_nodelay(true);
    Ok(stream)
}

/// The last time any byte moved on a connection, shared between the stream and its watchdog.
#[derive(Debug, Clone)]
pub(crate) struct Activity {
    start: Instant,
    last_ms: Arc<AtomicU64>,
}

impl Default for Activity {
    fn default() -> Self {
        Self::new()
    }
}

impl Activity {
    /// Starts the clock now.
    pub(crate) fn new() -> Self {
        Self {
            start: Instant::now(),
            last_ms: Arc::new(AtomicU64::new(0)),
        }
    }

    /// Records activity now.
    pub(crate) fn touch(&self) {
        let ms = self.start.elapsed().as_millis() as u64;
        self.last_ms.store(ms, Ordering::Relaxed);
    }

    /// How long since the last activity.
    pub(crate) fn idle_for(&self) -> Duration {
        let last = Duration::from_millis(self.last_ms.load(Ordering::Relaxed));
        self.start.elapsed().saturating_sub(last)
    }

    /// Runs `work` until it ends or the connection has been idle for `limit` (a timeout error).
    pub(crate) async fn until_idle<T>(
        &self,
        work: impl std::future::Future<Output = Result<T>>,
        limit: Duration,
    ) -> Result<T> {
        tokio::select! {
            r = work => r,
            () = self.idle_timeout(limit) => Err(Error::Timeout { what: "any byte on an idle connection", after: limit }),
        }
    }

    /// Resolves once the connection has been idle for `limit`.
    pub(crate) async fn idle_timeout(&self, limit: Duration) {
        loop {
            let idle = self.idle_for();
            if idle >= limit {
                return;
            }
            tokio::time::sleep(limit - idle).await;
        }
    }
}

/// A stream wrapper that counts bytes into two counters and records activity.
#[derive(Debug)]
pub(crate) struct Tracked<S> {
    inner: S,
    activity: Activity,
    read: Counter,
    written: Counter,
}

impl<S> Tracked<S> {
    /// Wraps `inner`; bytes read go to `read`, bytes written to `written`.
    pub(crate) fn new(inner: S, activity: Activity, read: Counter, written: Counter) -> Self {
        Self {
            inner,
            activity,
            read,
            written,
        }
    }

    fn count_read(&self, n: usize) {
        if n > 0 {
            self.read.inc_by(n as u64);
            self.activity.touch();
        }
    }

    fn count_written(&self, n: usize) {
        if n > 0 {
            self.written.inc_by(n as u64);
            self.activity.touch();
        }
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Tracked<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let this = &mut *self;
        let before = buf.filled().len();
        let res = Pin::new(&mut this.inner).poll_read(cx, buf);
        this.count_read(buf.filled().len() - before);
        res
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Tracked<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        let res = Pin::new(&mut self.inner).poll_write(cx, buf);
        if let Poll::Ready(Ok(n)) = &res {
            self.count_written(*n);
        }
        res
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        let res = Pin::new(&mut self.inner).poll_write_vectored(cx, bufs);
        if let Poll::Ready(Ok(n)) = &res {
            self.count_written(*n);
        }
        res
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
}
