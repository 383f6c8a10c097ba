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

use crate::io::{Activity, Tracked};
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
        let down_ready = down.poll(
            cx,
            &mut backend,
            &mut client,
            &mut k.sealer,
            &mut up.key_update_requested,
            &activity,
        )?;
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
                if self.end == self.buf.len() && self.buf.len() < UP_BIG {
                    self.buf.resize(UP_BIG, 0);
                }
                Poll::Ready(Ok(()))
            }
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                if self.start == self.end && self.last_read < UP_SMALL {
                    // Idle: hold no buffer.
                    self.buf = Vec::new();
                    self.ready = Vec::new();
                    self.start = 0;
                    self.end = 0;
                }
                Poll::Ready(Ok(()))
            }
            Err(e) => Poll::Ready(Err(io_error(e))),
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
                self.seal(n, sealer)?;
                self.total += n as u64;
                if n == slots * MAX_PLAINTEXT && slots < DOWN_SLOTS {
                    self.buf.resize(DOWN_SLOTS * SEALED_FULL, 0);
                }
                Poll::Ready(Ok(()))
            }
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                if slots == 1 {
                    self.buf = Vec::new();
                }
                Poll::Ready(Ok(()))
            }
            Err(e) => Poll::Ready(Err(io_error(e))),
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
