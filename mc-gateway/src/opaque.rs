//! Opaque splice, stage 5 of a connection without a session protocol: bytes copied both ways
//! between the client and the target until both are done or the connection goes idle.

use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncBufRead, AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

use crate::stream::Activity;
use crate::{Error, Result};

/// Copies both directions between `a` and `b` until both are done or the connection has been
/// idle (no byte either way) for `idle`. Returns bytes copied (a→b, b→a).
pub(crate) async fn splice<A, B>(
    a: A,
    b: B,
    idle: Duration,
    activity: Activity,
) -> Result<(u64, u64)>
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
pub(crate) async fn splice_tcp<A>(
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
