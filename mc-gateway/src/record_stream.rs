//! A byte stream over TLS records the gateway protects itself ([`crate::record`]), for the
//! HTTP paths once rustls has done the handshake.
//!
//! [`RecordStream`] is an [`AsyncRead`] + [`AsyncWrite`] like rustls' stream, so the lean
//! HTTP/1 forwarder and hyper run on it unchanged; what it saves is rustls' record machinery
//! per message (its deframer, its plaintext and sending buffers, its state machine). Reads
//! take whatever records the socket has in one system call and open them in place; each write
//! seals its bytes into records in one buffer and sends them in one system call. Key updates
//! are followed both ways and `close_notify` is sent on shutdown. While the connection is
//! idle, the stream holds no buffer.

use std::ops::Range;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;

use crate::Error;
use crate::io::{Linger, Tracked};
use crate::record::{self, HEADER, Keys, MAX_PLAINTEXT, MAX_RECORD, Opened, TAG};

/// The read buffer while the client sends little (it grows for a larger record).
const READ_SMALL: usize = 4 * 1024;
/// The read buffer once a read filled the small one (a request body in bulk).
const READ_BIG: usize = 64 * 1024;
/// The most plaintext one write seals (four full records).
const WRITE_MAX: usize = 4 * MAX_PLAINTEXT;
/// Room for a control record (alert, key update).
const CONTROL: usize = 64;

/// A client connection whose TLS records the gateway protects: see the module docs.
#[derive(Debug)]
pub struct RecordStream {
    io: Tracked<TcpStream>,
    keys: Box<Keys>,
    read: ReadSide,
    write: WriteSide,
}

/// Records read from the client and the plaintext opened from them.
#[derive(Debug, Default)]
struct ReadSide {
    buf: Vec<u8>,
    /// Opened plaintext not yet returned.
    plain: Range<usize>,
    /// Bytes read and not yet opened: `buf[start..end]`.
    start: usize,
    end: usize,
    /// Bytes the last read returned (a small read lets the buffer go when idle).
    last_read: usize,
    /// The client's close_notify was read: reads return end of stream.
    closed: bool,
    /// A record error ended the stream (reported once, then every read fails).
    failed: bool,
    /// Lets a big buffer go once the client has paused for [`crate::io::BULK_LINGER`].
    linger: Linger,
}

/// Sealed records not yet written to the client.
#[derive(Debug, Default)]
struct WriteSide {
    buf: Vec<u8>,
    /// `buf[pos..len]` is still to be written.
    pos: usize,
    len: usize,
    /// close_notify is sealed: nothing more may be written.
    closed: bool,
}

impl RecordStream {
    /// Takes over a connection rustls did the handshake of. `plaintext` is what rustls had
    /// already decrypted (returned first); `unread` the records read but not given to rustls.
    pub fn new(io: Tracked<TcpStream>, keys: Box<Keys>, plaintext: Vec<u8>, unread: &[u8]) -> Self {
        let mut buf = plaintext;
        let plain = 0..buf.len();
        let start = plain.end;
        buf.extend_from_slice(unread);
        let end = buf.len();
        Self {
            io,
            keys,
            read: ReadSide {
                buf,
                plain,
                start,
                end,
                ..ReadSide::default()
            },
            write: WriteSide::default(),
        }
    }

    /// Opens the next whole record read; true when one was opened.
    fn open_one(&mut self) -> crate::Result<bool> {
        let r = &mut self.read;
        let Some(len) = record::record_len(&r.buf[r.start..r.end])? else {
            return Ok(false);
        };
        if r.start + len > r.end {
            return Ok(false);
        }
        let at = r.start;
        r.start += len;
        match self.keys.opener.open(&mut r.buf[at..at + len])? {
            Opened::Data(d) => r.plain = at + d.start..at + d.end,
            Opened::CloseNotify => r.closed = true,
            Opened::KeyUpdate { update_requested } => {
                if update_requested {
                    self.write.key_update(&mut self.keys.sealer)?;
                }
            }
        }
        Ok(true)
    }

    /// Reads what the client sent, keeping room for a whole record.
    fn fill(&mut self, cx: &mut Context<'_>) -> Poll<crate::Result<()>> {
        loop {
            self.read.release_after_pause(cx);
            ready!(self.io.poll_read_ready(cx)).map_err(io_error("reading from the client"))?;
            let r = &mut self.read;
            r.make_room();
            match self.io.try_read(&mut r.buf[r.end..]) {
                Ok(0) => {
                    let why = if r.start == r.end {
                        "the client closed the connection without close_notify (truncated stream)"
                    } else {
                        "the client closed the connection inside a record"
                    };
                    return Poll::Ready(Err(record::error(record::DECODE_ERROR, why)));
                }
                Ok(n) => {
                    r.end += n;
                    r.last_read = n;
                    r.linger.resume();
                    if r.end == r.buf.len() && r.buf.len() < READ_BIG {
                        r.buf.resize(READ_BIG, 0);
                    }
                    return Poll::Ready(Ok(()));
                }
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => r.release_if_idle(cx),
                Err(e) => return Poll::Ready(Err(io_error("reading from the client")(e))),
            }
        }
    }

    /// Best effort: tells the client why the stream ends, when no record is half sent.
    fn alert(&mut self, e: &Error) {
        let Error::Record { alert, .. } = e else {
            return;
        };
        if self.write.pos < self.write.len || self.write.closed {
            return;
        }
        self.write.closed = true;
        crate::takeover::send_fatal_alert(&self.io, &mut self.keys.sealer, *alert);
    }

    /// Writes the sealed records still buffered.
    fn poll_send(&mut self, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        let w = &mut self.write;
        while w.pos < w.len {
            let n = ready!(Pin::new(&mut self.io).poll_write(cx, &w.buf[w.pos..w.len]))?;
            if n == 0 {
                return Poll::Ready(Err(std::io::ErrorKind::WriteZero.into()));
            }
            w.pos += n;
        }
        w.sent();
        Poll::Ready(Ok(()))
    }
}

impl ReadSide {
    fn make_room(&mut self) {
        if self.start == self.end && self.plain.is_empty() {
            self.start = 0;
            self.end = 0;
            self.plain = 0..0;
        }
        if self.buf.is_empty() {
            self.buf = vec![0; READ_SMALL];
        } else if self.buf.len() - self.end < MAX_RECORD && self.plain.is_empty() && self.start > 0
        {
            self.buf.copy_within(self.start..self.end, 0);
            self.end -= self.start;
            self.start = 0;
        }
        if self.end == self.buf.len() {
            // Never read into an empty slice (that reads as end of stream).
            self.buf.resize(self.buf.len() + MAX_RECORD, 0);
        }
    }

    /// Nothing read is still to be opened or returned.
    fn is_quiet(&self) -> bool {
        self.start == self.end && self.plain.is_empty()
    }

    /// The client has nothing more for now: the buffer goes at once after small reads, and
    /// after bulk once the pause has lasted [`crate::io::BULK_LINGER`].
    fn release_if_idle(&mut self, cx: &mut Context<'_>) {
        if !self.is_quiet() {
            return;
        }
        if self.last_read < READ_SMALL {
            self.release();
            return;
        }
        self.linger.pause();
        self.release_after_pause(cx);
    }

    /// Lets a bulk buffer go once the client's pause has lasted [`crate::io::BULK_LINGER`];
    /// until then `cx` is woken when it has.
    fn release_after_pause(&mut self, cx: &mut Context<'_>) {
        if self.is_quiet() && self.linger.expired(cx) {
            self.release();
        }
    }

    fn release(&mut self) {
        *self = Self {
            closed: self.closed,
            failed: self.failed,
            ..Self::default()
        };
    }
}

impl WriteSide {
    /// Seals `data` (at most [`WRITE_MAX`] bytes) into records after what is buffered.
    fn seal(&mut self, data: &[u8], sealer: &mut record::Sealer) -> crate::Result<()> {
        for chunk in data.chunks(MAX_PLAINTEXT) {
            if sealer.wants_key_update() {
                self.key_update(sealer)?;
            }
            let need = self.len + HEADER + chunk.len() + 1 + TAG;
            if self.buf.len() < need {
                self.buf.resize(need, 0);
            }
            self.buf[self.len + HEADER..self.len + HEADER + chunk.len()].copy_from_slice(chunk);
            self.len += sealer.seal_data(&mut self.buf[self.len..], chunk.len())?;
        }
        Ok(())
    }

    /// Seals a key update (the sending key moves on after it).
    fn key_update(&mut self, sealer: &mut record::Sealer) -> crate::Result<()> {
        self.control(|buf| sealer.seal_key_update(buf))
    }

    fn control(
        &mut self,
        seal: impl FnOnce(&mut [u8]) -> crate::Result<usize>,
    ) -> crate::Result<()> {
        if self.buf.len() < self.len + CONTROL {
            self.buf.resize(self.len + CONTROL, 0);
        }
        self.len += seal(&mut self.buf[self.len..])?;
        Ok(())
    }

    /// Everything buffered was written: the buffer goes.
    fn sent(&mut self) {
        self.pos = 0;
        self.len = 0;
        self.buf = Vec::new();
    }
}

fn io_error(what: &'static str) -> impl Fn(std::io::Error) -> Error {
    move |source| Error::Io { what, source }
}

/// The error a reader or writer of the stream sees.
fn to_io(e: Error) -> std::io::Error {
    match e {
        Error::Io { source, .. } => source,
        other => std::io::Error::new(std::io::ErrorKind::InvalidData, other),
    }
}

impl AsyncRead for RecordStream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        out: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let this = self.get_mut();
        loop {
            let r = &mut this.read;
            if !r.plain.is_empty() {
                let n = r.plain.len().min(out.remaining());
                out.put_slice(&r.buf[r.plain.start..r.plain.start + n]);
                r.plain.start += n;
                return Poll::Ready(Ok(()));
            }
            if r.failed {
                return Poll::Ready(Err(std::io::Error::other(
                    "the TLS stream ended with an error",
                )));
            }
            if r.closed || out.remaining() == 0 {
                return Poll::Ready(Ok(()));
            }
            let step = match this.open_one() {
                Ok(true) => Poll::Ready(Ok(())),
                Ok(false) => this.fill(cx),
                Err(e) => Poll::Ready(Err(e)),
            };
            if this.write.len > this.write.pos {
                // A key update the client asked for goes out without waiting for a write.
                let _ = this.poll_send(cx);
            }
            if let Err(e) = ready!(step) {
                this.read.failed = true;
                this.alert(&e);
                return Poll::Ready(Err(to_io(e)));
            }
        }
    }
}

impl AsyncWrite for RecordStream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        let this = self.get_mut();
        if data.is_empty() {
            return Poll::Ready(Ok(0));
        }
        ready!(this.poll_send(cx))?;
        if this.write.closed {
            return Poll::Ready(Err(std::io::ErrorKind::BrokenPipe.into()));
        }
        let data = &data[..data.len().min(WRITE_MAX)];
        this.write
            .seal(data, &mut this.keys.sealer)
            .map_err(to_io)?;
        // The records are buffered: they count as written; sending them may wait.
        if let Poll::Ready(Err(e)) = this.poll_send(cx) {
            return Poll::Ready(Err(e));
        }
        Poll::Ready(Ok(data.len()))
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        let this = self.get_mut();
        ready!(this.poll_send(cx))?;
        Pin::new(&mut this.io).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        let this = self.get_mut();
        ready!(this.poll_send(cx))?;
        if !this.write.closed {
            this.write.closed = true;
            let sealer = &mut this.keys.sealer;
            this.write
                .control(|buf| sealer.seal_close_notify(buf))
                .map_err(to_io)?;
            ready!(this.poll_send(cx))?;
        }
        Pin::new(&mut this.io).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

    use super::*;
    use crate::record::{Opener, Sealer};
    use prometheus_client::metrics::counter::Counter;
    use std::time::Duration;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    /// A RecordStream on one end of a loopback connection, and the client's raw end with its
    /// sealer and opener.
    async fn pair(plaintext: &[u8], unread: &[u8]) -> (RecordStream, TcpStream, Sealer, Opener) {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let client = TcpStream::connect(listener.local_addr().unwrap())
            .await
            .unwrap();
        let (server, _) = listener.accept().await.unwrap();
        let io = Tracked::new(
            server,
            crate::io::Activity::new(),
            Counter::default(),
            Counter::default(),
        );
        let (keys, sealer, opener) = Keys::test_pair();
        let stream = RecordStream::new(io, Box::new(keys), plaintext.to_vec(), unread);
        (stream, client, sealer, opener)
    }

    fn seal(sealer: &mut Sealer, data: &[u8]) -> Vec<u8> {
        let mut buf = vec![0u8; HEADER + data.len() + 1 + TAG];
        buf[HEADER..HEADER + data.len()].copy_from_slice(data);
        let n = sealer.seal_data(&mut buf, data.len()).unwrap();
        buf.truncate(n);
        buf
    }

    fn control(seal: impl FnOnce(&mut [u8]) -> crate::Result<usize>) -> Vec<u8> {
        let mut buf = vec![0u8; CONTROL];
        let n = seal(&mut buf).unwrap();
        buf.truncate(n);
        buf
    }

    /// What the client reads until the gateway closes: plaintext, key updates, close_notify.
    async fn read_all(client: &mut TcpStream, opener: &mut Opener) -> (Vec<u8>, usize, bool) {
        let mut raw = Vec::new();
        client.read_to_end(&mut raw).await.unwrap();
        let (mut got, mut updates, mut closed) = (Vec::new(), 0, false);
        while let Some(len) = record::record_len(&raw).unwrap() {
            let mut rec: Vec<u8> = raw.drain(..len).collect();
            match opener.open(&mut rec).unwrap() {
                Opened::Data(r) => got.extend_from_slice(&rec[r]),
                Opened::KeyUpdate { .. } => updates += 1,
                Opened::CloseNotify => closed = true,
            }
        }
        assert!(raw.is_empty(), "a partial record at the end");
        (got, updates, closed)
    }

    #[tokio::test]
    async fn plaintext_rustls_held_comes_first_then_records_however_split() {
        let (_, mut sealer, _) = Keys::test_pair();
        let first = seal(&mut sealer, b"unread-");
        // The first record was read ahead of rustls, cut in the middle; its rest is on the
        // socket; the second comes a byte at a time.
        let (mut stream, mut client, _, _) = pair(b"early-", &first[..7]).await;
        client.write_all(&first[7..]).await.unwrap();
        let second = seal(&mut sealer, b"byte-by-byte");
        let writer = tokio::spawn(async move {
            for b in second {
                client.write_all(&[b]).await.unwrap();
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
            client
        });
        let mut got = vec![0u8; 6 + 7 + 12];
        stream.read_exact(&mut got).await.unwrap();
        assert_eq!(got, b"early-unread-byte-by-byte");
        drop(writer.await.unwrap());
    }

    #[tokio::test]
    async fn writes_become_records_and_shutdown_sends_close_notify() {
        let (mut stream, mut client, _, mut opener) = pair(b"", b"").await;
        let big: Vec<u8> = (0..200_000u32).map(|i| (i % 251) as u8).collect();
        stream.write_all(&big).await.unwrap();
        stream.write_all(b"tail").await.unwrap();
        stream.shutdown().await.unwrap();
        let (got, updates, closed) = read_all(&mut client, &mut opener).await;
        assert!(
            got.len() == big.len() + 4 && got[..big.len()] == big[..] && got.ends_with(b"tail")
        );
        assert_eq!((updates, closed), (0, true));
        assert!(
            stream.write_all(b"late").await.is_err(),
            "written after close_notify"
        );
    }

    #[tokio::test]
    async fn a_key_update_is_answered_only_when_asked_for() {
        for asked in [false, true] {
            let (mut stream, mut client, mut sealer, mut opener) = pair(b"", b"").await;
            let update = if asked {
                control(|b| sealer.seal_key_update_request(b))
            } else {
                control(|b| sealer.seal_key_update(b))
            };
            client.write_all(&update).await.unwrap();
            client.write_all(&seal(&mut sealer, b"ping")).await.unwrap();
            let mut buf = [0u8; 4];
            stream.read_exact(&mut buf).await.unwrap();
            assert_eq!(&buf, b"ping");
            stream.write_all(b"pong").await.unwrap();
            stream.shutdown().await.unwrap();
            // The client's opener moves on at the gateway's key update; without one, "pong"
            // would not open under the updated key.
            let (got, updates, closed) = read_all(&mut client, &mut opener).await;
            assert_eq!(
                (got.as_slice(), updates, closed),
                (&b"pong"[..], usize::from(asked), true)
            );
        }
    }

    #[tokio::test]
    async fn close_notify_reads_as_the_end_and_a_bare_close_as_truncation() {
        let (mut stream, mut client, mut sealer, _) = pair(b"", b"").await;
        client.write_all(&seal(&mut sealer, b"last")).await.unwrap();
        client
            .write_all(&control(|b| sealer.seal_close_notify(b)))
            .await
            .unwrap();
        let mut got = Vec::new();
        stream.read_to_end(&mut got).await.unwrap();
        assert_eq!(got, b"last");

        let (mut stream, client, _, _) = pair(b"", b"").await;
        drop(client);
        let e = stream.read_to_end(&mut Vec::new()).await.unwrap_err();
        assert!(e.to_string().contains("without close_notify"), "{e}");

        let (mut stream, mut client, mut sealer, _) = pair(b"", b"").await;
        let rec = seal(&mut sealer, b"cut short");
        client.write_all(&rec[..10]).await.unwrap();
        drop(client);
        let e = stream.read_to_end(&mut Vec::new()).await.unwrap_err();
        assert!(e.to_string().contains("inside a record"), "{e}");
    }

    #[tokio::test]
    async fn a_forged_record_fails_the_stream_with_an_alert_to_the_client() {
        let (mut stream, mut client, mut sealer, mut opener) = pair(b"", b"").await;
        let mut rec = seal(&mut sealer, b"tampered");
        rec[HEADER + 2] ^= 1;
        client.write_all(&rec).await.unwrap();
        let e = stream.read(&mut [0u8; 16]).await.unwrap_err();
        assert!(e.to_string().contains("bad_record_mac"), "{e}");
        // Reads keep failing; the client got a fatal bad_record_mac alert (20).
        assert!(stream.read(&mut [0u8; 16]).await.is_err());
        drop(stream);
        let mut raw = Vec::new();
        client.read_to_end(&mut raw).await.unwrap();
        let e = opener.open(&mut raw).unwrap_err();
        assert!(e.to_string().contains("alert 20"), "{e}");
    }

    #[tokio::test]
    async fn an_idle_stream_holds_no_buffer() {
        let (mut stream, mut client, mut sealer, _) = pair(b"", b"").await;
        client
            .write_all(&seal(&mut sealer, b"request"))
            .await
            .unwrap();
        let mut buf = [0u8; 7];
        stream.read_exact(&mut buf).await.unwrap();
        stream.write_all(b"response").await.unwrap();
        stream.flush().await.unwrap();
        // Waiting for the next request: both buffers are gone.
        let wait = tokio::time::timeout(Duration::from_millis(20), stream.read(&mut buf)).await;
        assert!(wait.is_err(), "nothing was sent");
        assert_eq!(
            (stream.read.buf.capacity(), stream.write.buf.capacity()),
            (0, 0)
        );
    }

    #[tokio::test]
    async fn a_stream_paused_after_a_large_body_keeps_its_buffer_only_for_the_linger() {
        let (mut stream, mut client, mut sealer, _) = pair(b"", b"").await;
        let chunk = vec![5u8; MAX_PLAINTEXT];
        let mut body = Vec::new();
        for _ in 0..3 {
            body.extend_from_slice(&seal(&mut sealer, &chunk));
        }
        client.write_all(&body).await.unwrap();
        let mut got = vec![0u8; 3 * MAX_PLAINTEXT];
        stream.read_exact(&mut got).await.unwrap();
        assert!(got.iter().all(|&b| b == 5));
        let paused = tokio::time::Instant::now();
        let mut buf = [0u8; 8];

        let wait = tokio::time::timeout(Duration::from_millis(50), stream.read(&mut buf)).await;
        assert!(wait.is_err(), "nothing was sent");
        assert!(
            stream.read.buf.capacity() >= READ_BIG,
            "a short pause keeps the bulk buffer"
        );

        let wait = tokio::time::timeout(Duration::from_secs(1), stream.read(&mut buf)).await;
        assert!(wait.is_err(), "nothing was sent");
        assert_eq!(stream.read.buf.capacity(), 0, "a long pause lets it go");
        assert!(paused.elapsed() >= crate::io::BULK_LINGER);

        // The next request still arrives.
        client.write_all(&seal(&mut sealer, b"next")).await.unwrap();
        let mut next = [0u8; 4];
        stream.read_exact(&mut next).await.unwrap();
        assert_eq!(&next, b"next");
    }
}
