//! Transport header, stage 2 of a connection: reading the `transport.l5d.io/v1` header a
//! client sends first, within a time limit, and handing the bytes read past it to the next
//! stage ([`Prefixed`]).

use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use mc_core::transport::{self, Decoded, TransportHeader};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, ReadBuf};

use crate::{Error, Result};

/// A stream that first yields buffered bytes, then reads from the inner stream: the bytes read
/// past the transport header belong to the application.
#[derive(Debug)]
pub(crate) struct Prefixed<S> {
    prefix: Vec<u8>,
    pos: usize,
    inner: S,
}

impl<S> Prefixed<S> {
    /// Yields `prefix` before `inner`'s bytes.
    pub(crate) fn new(prefix: Vec<u8>, inner: S) -> Self {
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
pub(crate) async fn read_header<S: AsyncRead + Unpin>(
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
#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;
    use mc_core::transport::SessionProtocol;
    use tokio::io::AsyncWriteExt;

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
}
