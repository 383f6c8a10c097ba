//! Stream plumbing: activity and byte accounting, idle detection, the transport-header read,
//! and the opaque splice.

use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use mc_core::transport::{self, Decoded, TransportHeader};
use prometheus_client::metrics::counter::Counter;
use tokio::io::{AsyncBufRead, AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};

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
pub struct Activity {
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
    pub fn new() -> Self {
        Self {
            start: Instant::now(),
            last_ms: Arc::new(AtomicU64::new(0)),
        }
    }

    /// Records activity now.
    pub fn touch(&self) {
        let ms = self.start.elapsed().as_millis() as u64;
        self.last_ms.store(ms, Ordering::Relaxed);
    }

    /// How long since the last activity.
    pub fn idle_for(&self) -> Duration {
        let last = Duration::from_millis(self.last_ms.load(Ordering::Relaxed));
        self.start.elapsed().saturating_sub(last)
    }

    /// Runs `work` until it ends or the connection has been idle for `limit` (a timeout error).
    pub async fn until_idle<T>(
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
    pub async fn idle_timeout(&self, limit: Duration) {
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
pub struct Tracked<S> {
    inner: S,
    activity: Activity,
    read: Counter,
    written: Counter,
}

impl<S> Tracked<S> {
    /// Wraps `inner`; bytes read go to `read`, bytes written to `written`.
    pub fn new(inner: S, activity: Activity, read: Counter, written: Counter) -> Self {
        Self {
            inner,
            activity,
            read,
            written,
        }
    }

    /// The wrapped stream.
    pub fn get_ref(&self) -> &S {
        &self.inner
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

/// A stream that first yields buffered bytes, then reads from the inner stream: the bytes read
/// past the transport header belong to the application.
#[derive(Debug)]
pub struct Prefixed<S> {
    prefix: Vec<u8>,
    pos: usize,
    inner: S,
}

impl<S> Prefixed<S> {
    /// Yields `prefix` before `inner`'s bytes.
    pub fn new(prefix: Vec<u8>, inner: S) -> Self {
        Self {
            prefix,
            pos: 0,
            inner,
        }
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Prefixed<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        if self.pos < self.prefix.len() {
            let n = (self.prefix.len() - self.pos).min(buf.remaining());
            let start = self.pos;
            buf.put_slice(&self.prefix[start..start + n]);
            self.pos += n;
            if self.pos == self.prefix.len() {
                self.prefix = Vec::new();
                self.pos = 0;
            }
            return Poll::Ready(Ok(()));
        }
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Prefixed<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
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
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
}

/// Reads a transport header from `stream` within `timeout`, never buffering more than the
/// header needs plus one read. Returns the header and the application bytes read past it.
pub async fn read_header<S: AsyncRead + Unpin>(
    stream: &mut S,
    timeout: Duration,
) -> Result<(TransportHeader, Vec<u8>)> {
    let read = async {
        let mut buf: Vec<u8> = Vec::with_capacity(512);
        loop {
            match transport::decode(&buf)? {
                Decoded::Complete { header, consumed } => {
                    let rest = buf.split_off(consumed);
                    return Ok((header, rest));
                }
                Decoded::Incomplete { needed } => {
                    let start = buf.len();
                    // Read at least what is needed, at most 4 KiB beyond the header start.
                    let want = needed.clamp(1, 16 * 1024);
                    buf.resize(start + want, 0);
                    let n = stream
                        .read(&mut buf[start..])
                        .await
                        .map_err(|source| Error::Io {
                            what: "reading the transport header",
                            source,
                        })?;
                    buf.truncate(start + n);
                    if n == 0 {
                        return Err(Error::Io {
                            what: "reading the transport header",
                            source: std::io::ErrorKind::UnexpectedEof.into(),
                        });
                    }
                }
            }
        }
    };
    tokio::time::timeout(timeout, read)
        .await
        .map_err(|_| Error::Timeout {
            what: "the transport header",
            after: timeout,
        })?
}

/// Copies both directions between `a` and `b` until both are done or the connection has been
/// idle (no byte either way) for `idle`. Returns bytes copied (a→b, b→a).
pub async fn splice<A, B>(a: A, b: B, idle: Duration, activity: Activity) -> Result<(u64, u64)>
where
    A: AsyncRead + AsyncWrite + Unpin,
    B: AsyncRead + AsyncWrite + Unpin,
{
    let (mut ar, mut aw) = tokio::io::split(a);
    let (mut br, mut bw) = tokio::io::split(b);
    let up = copy_half(&mut ar, &mut bw, &activity);
    let down = copy_half(&mut br, &mut aw, &activity);
    let both = async { tokio::try_join!(up, down) };
    let both = async {
        both.await.map_err(|source| Error::Io {
            what: "splicing",
            source,
        })
    };
    activity.until_idle(both, idle).await
}

/// Largest copy buffer of a splice direction: four TLS records of plaintext, so that a bulk
/// transfer costs one write per four records read.
const COPY_MAX: usize = 64 * 1024;

async fn copy_half<R, W>(r: &mut R, w: &mut W, activity: &Activity) -> std::io::Result<u64>
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    // Start small so that thousands of idle streams stay cheap; grow as soon as a read fills
    // the buffer (bulk data is flowing).
    let mut buf = vec![0u8; 2 * 1024];
    let mut total = 0u64;
    loop {
        let mut n = r.read(&mut buf).await?;
        if n == 0 {
            w.shutdown().await?;
            return Ok(total);
        }
        if n == buf.len() && buf.len() < COPY_MAX {
            buf.resize(COPY_MAX, 0);
        }
        // Gather what is already readable (more TLS records), without waiting, so that one
        // write carries it all.
        let mut eof = false;
        while n < buf.len() {
            match futures::FutureExt::now_or_never(r.read(&mut buf[n..])) {
                Some(Ok(0)) => {
                    eof = true;
                    break;
                }
                Some(Ok(m)) => n += m,
                Some(Err(e)) => return Err(e),
                None => break,
            }
        }
        activity.touch();
        w.write_all(&buf[..n]).await?;
        total += n as u64;
        if eof {
            w.shutdown().await?;
            return Ok(total);
        }
    }
}

/// Copies both directions between a buffered stream `a` (the TLS side) and a TCP stream `b`
/// until both are done or the connection has been idle for `idle`. Returns bytes copied
/// (a→b, b→a).
///
/// Unlike [`splice`], it holds no copy buffer while the connection is idle: a→b writes
/// straight from `a`'s own buffer (for TLS, the decrypted record), and b→a allocates a buffer
/// only when `b` is readable, dropping it once `b` has nothing more to read.
pub async fn splice_tcp<A>(
    mut a: A,
    mut b: tokio::net::TcpStream,
    idle: Duration,
    activity: Activity,
) -> Result<(u64, u64)>
where
    A: AsyncBufRead + AsyncWrite + Unpin,
{
    let mut up = Direction::default();
    let mut down = Direction::default();
    let mut buf = DownBuf::default();
    let both = std::future::poll_fn(|cx| {
        let up_ready = up.poll_up(cx, &mut a, &mut b, &activity)?;
        let down_ready = down.poll_down(cx, &mut b, &mut a, &mut buf, &activity)?;
        if up_ready.is_ready() && down_ready.is_ready() {
            Poll::Ready(Ok::<_, std::io::Error>((up.total, down.total)))
        } else {
            Poll::Pending
        }
    });
    let both = async {
        both.await.map_err(|source| Error::Io {
            what: "splicing",
            source,
        })
    };
    activity.until_idle(both, idle).await
}

/// One direction of [`splice_tcp`].
#[derive(Debug, Default)]
struct Direction {
    total: u64,
    /// The reader reached EOF; the writer is being shut down.
    eof: bool,
    done: bool,
}

/// The b→a buffer of [`splice_tcp`]: `data[pos..len]` is read and not yet written.
#[derive(Debug, Default)]
struct DownBuf {
    data: Vec<u8>,
    pos: usize,
    len: usize,
}

impl Direction {
    /// a→b: write each chunk of `a`'s buffer to `b`, then consume it.
    fn poll_up<A: AsyncBufRead + Unpin>(
        &mut self,
        cx: &mut Context<'_>,
        a: &mut A,
        b: &mut tokio::net::TcpStream,
        activity: &Activity,
    ) -> Poll<std::io::Result<()>> {
        while !self.done {
            if self.eof {
                std::task::ready!(Pin::new(&mut *b).poll_shutdown(cx))?;
                self.done = true;
                break;
            }
            let chunk = std::task::ready!(Pin::new(&mut *a).poll_fill_buf(cx))?;
            if chunk.is_empty() {
                self.eof = true;
                continue;
            }
            let n = std::task::ready!(Pin::new(&mut *b).poll_write(cx, chunk))?;
            if n == 0 {
                return Poll::Ready(Err(std::io::ErrorKind::WriteZero.into()));
            }
            Pin::new(&mut *a).consume(n);
            self.total += n as u64;
            activity.touch();
        }
        Poll::Ready(Ok(()))
    }

    /// b→a: when `b` is readable, read into a buffer (allocated then), write it all to `a`
    /// and flush; drop the buffer when `b` has nothing more.
    fn poll_down<A: AsyncWrite + Unpin>(
        &mut self,
        cx: &mut Context<'_>,
        b: &mut tokio::net::TcpStream,
        a: &mut A,
        buf: &mut DownBuf,
        activity: &Activity,
    ) -> Poll<std::io::Result<()>> {
        while !self.done {
            if buf.pos < buf.len {
                let n = std::task::ready!(
                    Pin::new(&mut *a).poll_write(cx, &buf.data[buf.pos..buf.len])
                )?;
                if n == 0 {
                    return Poll::Ready(Err(std::io::ErrorKind::WriteZero.into()));
                }
                buf.pos += n;
                self.total += n as u64;
                activity.touch();
                continue;
            }
            if buf.len > 0 {
                std::task::ready!(Pin::new(&mut *a).poll_flush(cx))?;
                buf.pos = 0;
                buf.len = 0;
            }
            if self.eof {
                std::task::ready!(Pin::new(&mut *a).poll_shutdown(cx))?;
                self.done = true;
                break;
            }
            std::task::ready!(b.poll_read_ready(cx))?;
            if buf.data.is_empty() {
                buf.data = vec![0u8; 2 * 1024];
            }
            match b.try_read(&mut buf.data) {
                Ok(0) => self.eof = true,
                Ok(n) => {
                    if n == buf.data.len() && buf.data.len() < COPY_MAX {
                        // Bulk data: larger reads from now on.
                        buf.data.resize(COPY_MAX, 0);
                    }
                    buf.len = n;
                }
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                    // Nothing more for now: an idle connection holds no buffer.
                    buf.data = Vec::new();
                }
                Err(e) => return Poll::Ready(Err(e)),
            }
        }
        Poll::Ready(Ok(()))
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;
    use mc_core::transport::SessionProtocol;

    fn header() -> TransportHeader {
        TransportHeader {
            port: 80,
            name: Some("web.ns.svc.cluster.local".into()),
            protocol: Some(SessionProtocol::Http1),
        }
    }

    #[tokio::test]
    async fn reads_a_header_sent_byte_by_byte_and_keeps_the_rest() {
        let (mut client, mut server) = tokio::io::duplex(64);
        let mut bytes = header().encode();
        bytes.extend_from_slice(b"hello");
        let writer = tokio::spawn(async move {
            for b in bytes {
                client.write_all(&[b]).await.unwrap();
            }
            client
        });
        let (h, rest) = read_header(&mut server, Duration::from_secs(5))
            .await
            .unwrap();
        assert_eq!(h, header());
        let mut tail = rest;
        let _client = writer.await.unwrap();
        while tail.len() < 5 {
            let mut b = [0u8; 8];
            let n = server.read(&mut b).await.unwrap();
            tail.extend_from_slice(&b[..n]);
        }
        assert_eq!(tail, b"hello");
    }

    #[tokio::test]
    async fn header_errors() {
        let (mut client, mut server) = tokio::io::duplex(1024);
        client.write_all(b"GET / HTTP/1.1\r\n\r\n").await.unwrap();
        let err = read_header(&mut server, Duration::from_secs(5))
            .await
            .unwrap_err();
        assert_eq!(err.reason(), "bad_header");

        let (mut client, mut server) = tokio::io::duplex(1024);
        client.write_all(&header().encode()[..30]).await.unwrap();
        drop(client);
        let err = read_header(&mut server, Duration::from_secs(5))
            .await
            .unwrap_err();
        assert!(matches!(err, Error::Io { .. }), "{err}");

        let (_client, mut server) = tokio::io::duplex(1024);
        let err = read_header(&mut server, Duration::from_millis(50))
            .await
            .unwrap_err();
        assert_eq!(err.reason(), "timeout");
    }

    #[tokio::test]
    async fn prefixed_yields_the_prefix_first() {
        let (mut client, server) = tokio::io::duplex(64);
        client.write_all(b" world").await.unwrap();
        drop(client);
        let mut p = Prefixed::new(b"hello".to_vec(), server);
        let mut out = String::new();
        p.read_to_string(&mut out).await.unwrap();
        assert_eq!(out, "hello world");
    }

    #[tokio::test]
    async fn splice_copies_both_ways_and_stops_when_idle() {
        let (mut c1, s1) = tokio::io::duplex(1024);
        let (s2, mut c2) = tokio::io::duplex(1024);
        let task = tokio::spawn(splice(s1, s2, Duration::from_millis(200), Activity::new()));
        c1.write_all(b"ping").await.unwrap();
        let mut b = [0u8; 4];
        c2.read_exact(&mut b).await.unwrap();
        assert_eq!(&b, b"ping");
        c2.write_all(b"pong").await.unwrap();
        c1.read_exact(&mut b).await.unwrap();
        assert_eq!(&b, b"pong");
        // Nothing more: the idle timeout ends the splice.
        let err = task.await.unwrap().unwrap_err();
        assert_eq!(err.reason(), "timeout");
    }

    /// A connected TCP pair on loopback.
    async fn tcp_pair() -> (tokio::net::TcpStream, tokio::net::TcpStream) {
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let c = tokio::net::TcpStream::connect(l.local_addr().unwrap())
            .await
            .unwrap();
        let (s, _) = l.accept().await.unwrap();
        (c, s)
    }

    #[tokio::test]
    async fn splice_tcp_copies_bulk_both_ways_and_half_closes() {
        let (mut c1, s1) = tokio::io::duplex(64 * 1024);
        let (s2, mut c2) = tcp_pair().await;
        let a = tokio::io::BufReader::new(s1);
        let task = tokio::spawn(splice_tcp(a, s2, Duration::from_secs(10), Activity::new()));
        let up = pattern(1, 3 << 20);
        let down = pattern(2, 5 << 20);
        let (u, d) = (up.clone(), down.clone());
        let writer = tokio::spawn(async move {
            c1.write_all(&u).await.unwrap();
            c1.shutdown().await.unwrap();
            let mut got = Vec::new();
            c1.read_to_end(&mut got).await.unwrap();
            got
        });
        let reader = tokio::spawn(async move {
            c2.write_all(&d).await.unwrap();
            c2.shutdown().await.unwrap();
            let mut got = Vec::new();
            c2.read_to_end(&mut got).await.unwrap();
            got
        });
        assert!(reader.await.unwrap() == up, "a→b differs");
        assert!(writer.await.unwrap() == down, "b→a differs");
        let (n_up, n_down) = task.await.unwrap().unwrap();
        assert_eq!((n_up, n_down), (up.len() as u64, down.len() as u64));
    }

    #[tokio::test]
    async fn splice_tcp_stops_when_idle_and_holds_no_buffer_between_bursts() {
        let (mut c1, s1) = tokio::io::duplex(1024);
        let (s2, mut c2) = tcp_pair().await;
        let task = tokio::spawn(splice_tcp(
            tokio::io::BufReader::new(s1),
            s2,
            Duration::from_millis(300),
            Activity::new(),
        ));
        for _ in 0..3 {
            c2.write_all(b"pong").await.unwrap();
            let mut b = [0u8; 4];
            c1.read_exact(&mut b).await.unwrap();
            assert_eq!(&b, b"pong");
            c1.write_all(b"ping").await.unwrap();
            c2.read_exact(&mut b).await.unwrap();
            assert_eq!(&b, b"ping");
        }
        let err = task.await.unwrap().unwrap_err();
        assert_eq!(err.reason(), "timeout");
    }

    /// `len` bytes that differ per `seed` and do not repeat with any short period.
    fn pattern(seed: u8, len: usize) -> Vec<u8> {
        (0..len)
            .map(|i| (i as u8) ^ ((i >> 8) as u8).wrapping_mul(seed) ^ ((i >> 16) as u8))
            .collect()
    }

    #[tokio::test]
    async fn splice_ends_when_both_sides_close() {
        let (mut c1, s1) = tokio::io::duplex(1024);
        let (s2, mut c2) = tokio::io::duplex(1024);
        let task = tokio::spawn(splice(s1, s2, Duration::from_secs(10), Activity::new()));
        c1.write_all(b"abc").await.unwrap();
        c1.shutdown().await.unwrap();
        let mut got = Vec::new();
        c2.read_to_end(&mut got).await.unwrap();
        assert_eq!(got, b"abc");
        c2.shutdown().await.unwrap();
        assert_eq!(task.await.unwrap().unwrap(), (3, 0));
    }
}
