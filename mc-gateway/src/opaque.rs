//! The opaque splice on records the gateway protects itself ([`crate::record`]).
//!
//! Client → backend: each read from the client takes as many records as the socket has (up
//! to 128 KiB), they are decrypted in place, and their plaintext goes to the backend in one
//! `writev`. Backend → client: each read from the backend fills up to four record-sized slots
//! in one `readv`; each slot is sealed in place, and the records, contiguous, go to the client
//! in one write. Neither direction copies plaintext in user space, and neither holds a buffer
//! while its connection is idle.

use std::io::IoSliceMut;
use std::ops::Range;
use std::pin::Pin;
use std::task::{Context, Poll, ready};
use std::time::Duration;

use tokio::io::AsyncWrite;
use tokio::net::TcpStream;

use crate::io::{Activity, Linger, Tracked};
use crate::record::{
    self, HEADER, Keys, MAX_PLAINTEXT, MAX_RECORD, Opened, Opener, SEALED_FULL, Sealer,
};
use crate::{Error, Result};

/// The client→backend buffer while the client sends little: one record.
const UP_SMALL: usize = MAX_RECORD;
/// The client→backend buffer once a read filled the small one (bulk data).
const UP_BIG: usize = 128 * 1024;
/// Record slots of the backend→client buffer in bulk.
const DOWN_SLOTS: usize = 4;
/// Plaintext ranges written to the backend in one `writev`.
const MAX_IOV: usize = 16;

/// Copies both directions between the client (records protected with `keys`, starting with
/// `unread`, what was read from it but not yet opened) and the backend until both are done or the connection has been idle for `idle`. Returns the plaintext
/// bytes copied (client→backend, backend→client).
pub async fn splice(
    mut client: Tracked<TcpStream>,
    mut backend: TcpStream,
    mut keys: Box<Keys>,
    unread: Vec<u8>,
    idle: Duration,
    activity: Activity,
) -> Result<(u64, u64)> {
    let mut up = Up::starting_with(unread);
    let mut down = Down::default();
    let both = std::future::poll_fn(|cx| {
        let k = &mut *keys;
        let up_ready = match up.poll(cx, &client, &mut backend, &mut k.opener, &activity) {
            Poll::Ready(Err(e)) => {
                down.alert(&client, &mut k.sealer, &e);
                return Poll::Ready(Err(e));
            }
            other => other,
        };
        up.poll_linger(cx);
        let down_ready = down.poll(
            cx,
            &mut backend,
            &mut client,
            &mut k.sealer,
            &mut up.key_update_requested,
            &activity,
        )?;
        down.poll_linger(cx);
        if up_ready.is_ready() && down_ready.is_ready() {
            Poll::Ready(Ok((up.total, down.total)))
        } else {
            Poll::Pending
        }
    });
    activity.until_idle(both, idle).await
}

fn io_error(source: std::io::Error) -> Error {
    Error::Io {
        what: "splicing",
        source,
    }
}

/// Client → backend.
#[derive(Debug, Default)]
struct Up {
    buf: Vec<u8>,
    /// The first byte not yet opened.
    start: usize,
    /// The end of what was read.
    end: usize,
    /// Bytes the last read returned (small reads let the buffer go when idle).
    last_read: usize,
    /// Opened plaintext not yet written to the backend, and the first one still to write.
    ready: Vec<Range<usize>>,
    next: usize,
    /// The client's close_notify was read; the backend is being shut down.
    eof: bool,
    done: bool,
    total: u64,
    /// The client asked for a key update in the other direction.
    key_update_requested: bool,
    /// Lets the bulk buffer go once the client has paused for [`crate::io::BULK_LINGER`].
    linger: Linger,
}

impl Up {
    /// Starts with records already read from the socket.
    fn starting_with(mut unread: Vec<u8>) -> Self {
        let end = unread.len();
        if end > 0 {
            unread.resize(end.max(UP_SMALL), 0);
        }
        Self {
            buf: unread,
            end,
            ..Self::default()
        }
    }

    fn poll(
        &mut self,
        cx: &mut Context<'_>,
        client: &Tracked<TcpStream>,
        backend: &mut TcpStream,
        opener: &mut Opener,
        activity: &Activity,
    ) -> Poll<Result<()>> {
        while !self.done {
            if self.next < self.ready.len() {
                ready!(self.write(cx, backend))?;
                activity.touch();
            } else if self.eof {
                ready!(Pin::new(&mut *backend).poll_shutdown(cx)).map_err(io_error)?;
                self.done = true;
            } else if !self.open(opener)? {
                ready!(self.read(cx, client))?;
            }
        }
        Poll::Ready(Ok(()))
    }

    /// Writes opened plaintext to the backend (one `writev`).
    fn write(&mut self, cx: &mut Context<'_>, backend: &mut TcpStream) -> Poll<Result<()>> {
        let mut iov = [std::io::IoSlice::new(&[]); MAX_IOV];
        let mut k = 0;
        for (slot, r) in iov.iter_mut().zip(&self.ready[self.next..]) {
            *slot = std::io::IoSlice::new(&self.buf[r.clone()]);
            k += 1;
        }
        let mut n =
            ready!(Pin::new(&mut *backend).poll_write_vectored(cx, &iov[..k])).map_err(io_error)?;
        if n == 0 {
            return Poll::Ready(Err(io_error(std::io::ErrorKind::WriteZero.into())));
        }
        self.total += n as u64;
        while n > 0 {
            let r = &mut self.ready[self.next];
            let take = n.min(r.len());
            r.start += take;
            n -= take;
            if r.start == r.end {
                self.next += 1;
            }
        }
        Poll::Ready(Ok(()))
    }

    /// Opens the whole records read; true when it made progress (plaintext to write, a
    /// control record handled, or the end of the stream).
    fn open(&mut self, opener: &mut Opener) -> Result<bool> {
        self.ready.clear();
        self.next = 0;
        let first = self.start;
        while let Some(len) = record::record_len(&self.buf[self.start..self.end])? {
            if self.start + len > self.end {
                break;
            }
            let at = self.start;
            self.start += len;
            match opener.open(&mut self.buf[at..at + len])? {
                Opened::Data(r) if !r.is_empty() => self.ready.push(at + r.start..at + r.end),
                Opened::Data(_) => {}
                Opened::CloseNotify => {
                    self.eof = true;
                    break;
                }
                Opened::KeyUpdate { update_requested } => {
                    self.key_update_requested |= update_requested;
                }
            }
        }
        Ok(self.start > first)
    }

    /// Reads what the client sent, keeping room for a whole record.
    fn read(&mut self, cx: &mut Context<'_>, client: &Tracked<TcpStream>) -> Poll<Result<()>> {
        ready!(client.poll_read_ready(cx)).map_err(io_error)?;
        self.make_room();
        match client.try_read(&mut self.buf[self.end..]) {
            Ok(0) if self.start == self.end => Poll::Ready(Err(record::error(
                record::DECODE_ERROR,
                "the client closed the connection without close_notify (truncated stream)",
            ))),
            Ok(0) => Poll::Ready(Err(record::error(
                record::DECODE_ERROR,
                "the client closed the connection inside a record",
            ))),
            Ok(n) => {
                self.end += n;
                self.last_read = n;
                self.linger.resume();
                if self.end == self.buf.len() && self.buf.len() < UP_BIG {
                    self.buf.resize(UP_BIG, 0);
                }
                Poll::Ready(Ok(()))
            }
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                if self.start == self.end && self.last_read < UP_SMALL {
                    // Idle: hold no buffer.
                    self.release();
                } else if self.start == self.end {
                    self.linger.pause();
                }
                Poll::Ready(Ok(()))
            }
            Err(e) => Poll::Ready(Err(io_error(e))),
        }
    }

    /// Lets the read buffer go (nothing in it is still to be opened or written).
    fn release(&mut self) {
        self.buf = Vec::new();
        self.ready = Vec::new();
        self.start = 0;
        self.end = 0;
        self.last_read = 0;
        self.linger = Linger::default();
    }

    /// Releases the bulk buffer once the client has paused for [`crate::io::BULK_LINGER`].
    fn poll_linger(&mut self, cx: &mut Context<'_>) {
        let quiet = self.start == self.end && self.next >= self.ready.len();
        if quiet && self.linger.expired(cx) {
            self.release();
        }
    }

    fn make_room(&mut self) {
        if self.start == self.end {
            self.start = 0;
            self.end = 0;
        }
        if self.buf.is_empty() {
            self.buf = vec![0; UP_SMALL];
        } else if self.buf.len() - self.end < MAX_RECORD && self.start > 0 {
            self.buf.copy_within(self.start..self.end, 0);
            self.end -= self.start;
            self.start = 0;
        }
        if self.end == self.buf.len() {
            // Never read into an empty slice (that reads as EOF).
            self.buf.resize(self.buf.len() + MAX_RECORD, 0);
        }
    }
}

/// Backend → client.
#[derive(Debug, Default)]
struct Down {
    buf: Vec<u8>,
    /// Sealed bytes `buf[pos..len]` not yet written to the client.
    pos: usize,
    len: usize,
    /// The backend reached EOF: close_notify, then the client is shut down.
    eof: bool,
    notified: bool,
    done: bool,
    total: u64,
    /// Lets the slots go once the backend has paused for [`crate::io::BULK_LINGER`].
    linger: Linger,
}

impl Down {
    #[allow(clippy::too_many_arguments)]
    fn poll(
        &mut self,
        cx: &mut Context<'_>,
        backend: &mut TcpStream,
        client: &mut Tracked<TcpStream>,
        sealer: &mut Sealer,
        key_update_requested: &mut bool,
        activity: &Activity,
    ) -> Poll<Result<()>> {
        while !self.done {
            if self.pos < self.len {
                let n =
                    ready!(Pin::new(&mut *client).poll_write(cx, &self.buf[self.pos..self.len]))
                        .map_err(io_error)?;
                if n == 0 {
                    return Poll::Ready(Err(io_error(std::io::ErrorKind::WriteZero.into())));
                }
                self.pos += n;
                continue;
            }
            self.pos = 0;
            self.len = 0;
            if *key_update_requested || sealer.wants_key_update() {
                *key_update_requested = false;
                self.control(|buf| sealer.seal_key_update(buf))?;
            } else if self.eof && !self.notified {
                self.notified = true;
                self.control(|buf| sealer.seal_close_notify(buf))?;
            } else if self.eof {
                ready!(Pin::new(&mut *client).poll_shutdown(cx)).map_err(io_error)?;
                self.done = true;
            } else {
                ready!(self.read(cx, backend, sealer))?;
                activity.touch();
            }
        }
        Poll::Ready(Ok(()))
    }

    /// Seals one control record into the buffer.
    fn control(&mut self, seal: impl FnOnce(&mut [u8]) -> Result<usize>) -> Result<()> {
        if self.buf.len() < 64 {
            self.buf.resize(64, 0);
        }
        self.len = seal(&mut self.buf)?;
        Ok(())
    }

    /// Reads what the backend has into record slots (one `readv`) and seals them.
    fn read(
        &mut self,
        cx: &mut Context<'_>,
        backend: &mut TcpStream,
        sealer: &mut Sealer,
    ) -> Poll<Result<()>> {
        ready!(backend.poll_read_ready(cx)).map_err(io_error)?;
        if self.buf.len() < SEALED_FULL {
            self.buf.resize(SEALED_FULL, 0);
        }
        let slots = self.buf.len() / SEALED_FULL;
        let mut slots_iter = self
            .buf
            .chunks_mut(SEALED_FULL)
            .map(|slot| IoSliceMut::new(&mut slot[HEADER..HEADER + MAX_PLAINTEXT]));
        let mut iov: [IoSliceMut<'_>; DOWN_SLOTS] = std::array::from_fn(|_| {
            slots_iter
                .next()
                .unwrap_or_else(|| IoSliceMut::new(&mut []))
        });
        match backend.try_read_vectored(&mut iov[..slots]) {
            Ok(0) => {
                self.eof = true;
                Poll::Ready(Ok(()))
            }
            Ok(n) => {
                self.linger.resume();
                self.seal(n, sealer)?;
                self.total += n as u64;
                if n == slots * MAX_PLAINTEXT && slots < DOWN_SLOTS {
                    self.buf.resize(DOWN_SLOTS * SEALED_FULL, 0);
                }
                Poll::Ready(Ok(()))
            }
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                if slots == 1 {
                    self.release();
                } else {
                    self.linger.pause();
                }
                Poll::Ready(Ok(()))
            }
            Err(e) => Poll::Ready(Err(io_error(e))),
        }
    }

    /// Lets the slots go (everything sealed was written).
    fn release(&mut self) {
        self.buf = Vec::new();
        self.linger = Linger::default();
    }

    /// Releases the bulk slots once the backend has paused for [`crate::io::BULK_LINGER`].
    fn poll_linger(&mut self, cx: &mut Context<'_>) {
        if self.pos >= self.len && !self.eof && self.linger.expired(cx) {
            self.release();
        }
    }

    /// Seals the `n` bytes read into the slots; every slot but the last is full, so the
    /// records lie end to end.
    fn seal(&mut self, n: usize, sealer: &mut Sealer) -> Result<()> {
        let mut left = n;
        for slot in self.buf.chunks_mut(SEALED_FULL) {
            if left == 0 {
                break;
            }
            let take = left.min(MAX_PLAINTEXT);
            self.len += sealer.seal_data(slot, take)?;
            left -= take;
        }
        Ok(())
    }

    /// Best effort: tells the client why the connection ends, when no record is half sent.
    fn alert(&mut self, client: &Tracked<TcpStream>, sealer: &mut Sealer, e: &Error) {
        if self.pos < self.len || self.notified || !matches!(e, Error::Record { .. }) {
            return;
        }
        let Error::Record { alert, .. } = e else {
            return;
        };
        crate::takeover::send_fatal_alert(client, sealer, *alert);
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

    use super::*;
    use crate::record::TAG;
    use prometheus_client::metrics::counter::Counter;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::time::Instant;

    const BULK: usize = 256 * 1024;

    async fn tcp_pair() -> (TcpStream, TcpStream) {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let a = TcpStream::connect(listener.local_addr().unwrap())
            .await
            .unwrap();
        let (b, _) = listener.accept().await.unwrap();
        (a, b)
    }

    fn tracked(tcp: TcpStream) -> Tracked<TcpStream> {
        Tracked::new(tcp, Activity::new(), Counter::default(), Counter::default())
    }

    /// `len` bytes of plaintext in full records, sealed by the client.
    fn records(sealer: &mut Sealer, len: usize) -> Vec<u8> {
        let mut out = Vec::new();
        for chunk in vec![7u8; len].chunks(MAX_PLAINTEXT) {
            let mut rec = vec![0u8; HEADER + chunk.len() + 1 + TAG];
            rec[HEADER..HEADER + chunk.len()].copy_from_slice(chunk);
            let n = sealer.seal_data(&mut rec, chunk.len()).unwrap();
            out.extend_from_slice(&rec[..n]);
        }
        out
    }

    /// Reads and drops everything from `tcp` until it closes.
    fn drain(mut tcp: TcpStream) -> tokio::task::JoinHandle<()> {
        tokio::spawn(async move {
            let mut buf = vec![0u8; 64 * 1024];
            while tcp.read(&mut buf).await.is_ok_and(|n| n > 0) {}
        })
    }

    /// Polls `step` until it returns true; false if `limit` passes first.
    async fn drive(limit: Duration, mut step: impl FnMut(&mut Context<'_>) -> bool) -> bool {
        let until = std::future::poll_fn(|cx| {
            if step(cx) {
                Poll::Ready(())
            } else {
                Poll::Pending
            }
        });
        tokio::time::timeout(limit, until).await.is_ok()
    }

    /// Polls `released` (which steps the direction) and asserts that the `what` stays over a
    /// 50 ms pause and goes within 5 s, not before the linger counted from `paused`.
    async fn assert_let_go_after_the_linger(
        paused: Instant,
        what: &str,
        mut released: impl FnMut(&mut Context<'_>) -> bool,
    ) {
        let early = drive(Duration::from_millis(50), &mut released).await;
        assert!(!early, "a short pause kept the {what}");
        let late = drive(Duration::from_secs(5), &mut released).await;
        assert!(late, "a long pause let the {what} go");
        assert!(
            paused.elapsed() >= crate::io::BULK_LINGER,
            "not before the linger"
        );
    }

    #[tokio::test]
    async fn the_client_bulk_buffer_outlives_a_short_pause_and_goes_after_a_long_one() {
        let (mut client_end, gateway_end) = tcp_pair().await;
        let (mut backend, backend_end) = tcp_pair().await;
        let _sink = drain(backend_end);
        let client = tracked(gateway_end);
        let (mut keys, mut sealer, _) = Keys::test_pair();
        let activity = Activity::new();
        let mut up = Up::default();
        let mut step = |up: &mut Up, cx: &mut Context<'_>| {
            if let Poll::Ready(Err(e)) =
                up.poll(cx, &client, &mut backend, &mut keys.opener, &activity)
            {
                panic!("{e}");
            }
            up.poll_linger(cx);
        };

        // Three full records: the first read fills the small buffer, the second (big) takes
        // the other two, so the pause comes after a big read.
        let bulk = 3 * MAX_PLAINTEXT;
        client_end
            .write_all(&records(&mut sealer, bulk))
            .await
            .unwrap();
        let moved = drive(Duration::from_secs(5), |cx| {
            step(&mut up, cx);
            up.total == bulk as u64
        })
        .await;
        assert!(moved, "the bulk never reached the backend");
        let paused = Instant::now();
        assert_eq!(up.buf.len(), UP_BIG, "bulk grew the buffer");

        assert_let_go_after_the_linger(paused, "buffer", |cx| {
            step(&mut up, cx);
            up.buf.is_empty()
        })
        .await;

        // The next burst starts small again and still arrives.
        client_end
            .write_all(&records(&mut sealer, 100))
            .await
            .unwrap();
        let moved = drive(Duration::from_secs(5), |cx| {
            step(&mut up, cx);
            up.total == bulk as u64 + 100
        })
        .await;
        assert!(moved, "data after the release never arrived");
        assert!(up.buf.len() <= UP_SMALL, "{}", up.buf.len());
    }

    #[tokio::test]
    async fn the_backend_bulk_slots_outlive_a_short_pause_and_go_after_a_long_one() {
        let (client_end, gateway_end) = tcp_pair().await;
        let _sink = drain(client_end);
        let (mut backend, mut backend_end) = tcp_pair().await;
        let mut client = tracked(gateway_end);
        let (mut keys, _, _) = Keys::test_pair();
        let activity = Activity::new();
        let mut down = Down::default();
        let mut asked = false;
        let mut step = |down: &mut Down, cx: &mut Context<'_>| {
            if let Poll::Ready(Err(e)) = down.poll(
                cx,
                &mut backend,
                &mut client,
                &mut keys.sealer,
                &mut asked,
                &activity,
            ) {
                panic!("{e}");
            }
            down.poll_linger(cx);
        };

        backend_end.write_all(&vec![9u8; BULK]).await.unwrap();
        let moved = drive(Duration::from_secs(5), |cx| {
            step(&mut down, cx);
            down.total == BULK as u64 && down.pos >= down.len
        })
        .await;
        assert!(moved, "the bulk never reached the client");
        let paused = Instant::now();
        assert_eq!(
            down.buf.len(),
            DOWN_SLOTS * SEALED_FULL,
            "bulk grew the slots"
        );

        assert_let_go_after_the_linger(paused, "slots", |cx| {
            step(&mut down, cx);
            down.buf.is_empty()
        })
        .await;
    }
}
