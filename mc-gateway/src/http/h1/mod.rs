//! The lean HTTP/1 forwarder (stage 4, HTTP): HTTP/1.1 client connections to HTTP/1 targets,
//! parsing only what routing and framing need and copying everything else verbatim.
//!
//! Per request it reads the head (waiting for its first byte without a timer: the
//! connection's idle timeout applies; the rest of the head within the header timeout), routes
//! it by `Host` with the same checks as the hyper path ([`HttpContext`]), rewrites the head
//! (hop-by-hop headers removed, `Host` set to the target, `l5d-client-id` replaced, a
//! `Forwarded` element appended), and relays the body and the response with their own
//! framing (`Content-Length`, chunked, or until the target closes). Requests are served
//! strictly in order; bytes already read past a request belong to the next one.
//!
//! What it does not handle (`Upgrade`, `Expect`, HTTP/1.0, absolute-form targets, `CONNECT`,
//! the HTTP/2 preface, malformed or oversized heads) is handed back, with every byte already
//! read, to the hyper path for the rest of the connection: see [`End::Handoff`]. That happens
//! at a request boundary before anything was sent upstream, so hyper serves that request as
//! if it had read it itself.

use std::net::SocketAddr;
use std::ops::Range;
use std::time::{Duration, Instant};

use http::StatusCode;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::watch;

use crate::backend::{BackendStream, Backends};
use crate::http::headers::check_forwarded;
use crate::http::headers::{self, Added, Message, elements, trim};
use crate::http::upstream::MAX_DEDICATED;
use crate::http::{HttpContext, TargetEntry};
use crate::{Error, Result};

/// Header fields parsed per head at most (hyper's default too); more is handed to hyper
/// (request) or a target error (response).
const MAX_HEADERS: usize = 100;

/// The largest `Content-Length` accepted (hyper's: it keeps the two largest values as
/// markers).
const MAX_CONTENT_LENGTH: u64 = u64::MAX - 2;

/// Bytes asked for per read.
const READ_CHUNK: usize = 16 * 1024;
/// How much [`Buffered::fill_after_idle`] reads at once (a request head's size).
const IDLE_CHUNK: usize = 4 * 1024;

/// Limits of the lean path.
#[derive(Debug, Clone, Copy)]
pub(crate) struct H1Limits {
    /// Time allowed for the rest of a request head once its first byte arrived.
    pub(crate) header_timeout: Duration,
    /// Largest request or response head, in bytes.
    pub(crate) max_head: usize,
}

/// How a connection left the lean path.
#[derive(Debug)]
pub(crate) enum End<S> {
    /// The connection is done (closed by either side, or after `Connection: close`).
    Closed,
    /// The next request needs the hyper path: serve `io`, replaying `rest` first.
    Handoff {
        /// The client stream.
        io: S,
        /// The bytes already read from it.
        rest: Vec<u8>,
        /// Why (for the debug log).
        why: &'static str,
    },
}

/// Serves HTTP/1.1 requests of `io` to HTTP/1 targets until the connection ends, `stop` turns
/// true (between requests), or a request needs the hyper path.
pub(crate) async fn serve<S>(
    io: S,
    ctx: &HttpContext,
    limits: H1Limits,
    stop: watch::Receiver<bool>,
) -> End<S>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let mut conn = Conn {
        io,
        buf: Buffered::default(),
        out: Vec::with_capacity(1024),
        upstreams: Vec::new(),
        backends: ctx.upstreams.backends.clone(),
        requests: 0,
        limits,
    };
    match conn.serve_requests(ctx, stop).await {
        Some(why) => End::Handoff {
            rest: conn.buf.into_rest(),
            io: conn.io,
            why,
        },
        None => {
            // close_notify, as hyper does when it closes: a peer may treat an unannounced
            // end of TLS as a truncation.
            let _ = conn.io.shutdown().await;
            End::Closed
        }
    }
}

/// hyper's answer to a request it cannot frame.
const BAD_REQUEST: &[u8] =
    b"HTTP/1.1 400 Bad Request\r\ncontent-length: 0\r\nconnection: close\r\n\r\n";

/// A read buffer: bytes read from a stream and not yet used.
#[derive(Debug, Default)]
struct Buffered {
    buf: Vec<u8>,
    start: usize,
}

impl Buffered {
    /// The bytes read and not yet consumed.
    fn pending(&self) -> &[u8] {
        self.buf.get(self.start..).unwrap_or_default()
    }

    /// Marks `n` pending bytes as used.
    fn consume(&mut self, n: usize) {
        self.start = (self.start + n).min(self.buf.len());
        if self.start == self.buf.len() {
            self.buf.clear();
            self.start = 0;
        }
    }

    /// Reads once from `io` into the buffer; returns the bytes read (0: end of stream).
    async fn fill<R: AsyncRead + Unpin>(&mut self, io: &mut R) -> std::io::Result<usize> {
        if self.start > 0 && self.buf.capacity() - self.buf.len() < READ_CHUNK / 2 {
            self.buf.drain(..self.start);
            self.start = 0;
        }
        self.buf.reserve(READ_CHUNK);
        io.read_buf(&mut self.buf).await
    }

    /// Lets the buffer's memory go and reads once from `io` through a stack chunk, so that a
    /// connection waiting for its next message holds no read buffer (the chunk lives only
    /// inside each poll, not in the waiting future). Returns the bytes read (0: end of
    /// stream). Only for an empty buffer; otherwise the same as [`Self::fill`].
    async fn fill_after_idle<R: AsyncRead + Unpin>(
        &mut self,
        io: &mut R,
    ) -> std::io::Result<usize> {
        if !self.pending().is_empty() {
            return self.fill(io).await;
        }
        *self = Self::default();
        std::future::poll_fn(|cx| {
            let mut chunk = [std::mem::MaybeUninit::<u8>::uninit(); IDLE_CHUNK];
            let mut rb = tokio::io::ReadBuf::uninit(&mut chunk);
            std::task::ready!(std::pin::Pin::new(&mut *io).poll_read(cx, &mut rb))?;
            self.buf.extend_from_slice(rb.filled());
            std::task::Poll::Ready(Ok(rb.filled().len()))
        })
        .await
    }

    /// The pending bytes, owned.
    fn into_rest(mut self) -> Vec<u8> {
        self.buf.drain(..self.start);
        self.buf
    }
}

/// How a message body is delimited, and how much of it is left.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Framing {
    /// No body (or nothing left of it).
    Empty,
    /// This many bytes.
    Length(u64),
    /// Chunked transfer coding, scanned as it is copied.
    Chunked(Chunked),
    /// Until the sender closes (responses only).
    UntilEof,
}

impl Framing {
    /// How many leading bytes of `data` belong to the body, advancing the state.
    fn step(&mut self, data: &[u8], peer: &'static str) -> Result<usize> {
        match self {
            Framing::Empty => Ok(0),
            Framing::Length(left) => {
                let n = usize::try_from(*left).unwrap_or(usize::MAX).min(data.len());
                *left -= n as u64;
                if *left == 0 {
                    *self = Framing::Empty;
                }
                Ok(n)
            }
            Framing::Chunked(c) => {
                let n = c.scan(data).map_err(|why| Error::Http1 {
                    peer,
                    what: "chunked body",
                    why,
                })?;
                if c.is_done() {
                    *self = Framing::Empty;
                }
                Ok(n)
            }
            Framing::UntilEof => Ok(data.len()),
        }
    }

    /// Whether the whole body has been seen.
    fn is_done(&self) -> bool {
        *self == Framing::Empty
    }
}

/// Bytes of chunk extensions a body may carry in all (hyper's limit: it rejects a body at
/// this many).
const CHUNK_EXT_LIMIT: u64 = 16 * 1024;
/// Bytes of a trailer section, final CRLF included, at which a body is rejected (hyper's
/// limit).
const TRAILER_LIMIT: usize = 16 * 1024;
/// Trailer fields a body may carry (hyper's limit).
const MAX_TRAILERS: usize = MAX_HEADERS;

/// Where a chunked-body scanner is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ChunkState {
    /// In the chunk-size hex digits (`digits` so far).
    Size { digits: u8 },
    /// In whitespace after the size (only more whitespace, `;` or CR may follow).
    SizeLws,
    /// In chunk extensions after the `;`.
    Ext,
    /// Expecting the LF that ends the size line.
    SizeLf,
    /// In chunk data, this many bytes left.
    Data(u64),
    /// Expecting the CR after chunk data.
    DataCr,
    /// Expecting the LF after chunk data.
    DataLf,
    /// At the start of a trailer line (or the final CRLF).
    TrailerStart,
    /// In a trailer field's name.
    TrailerName,
    /// In a trailer field's value.
    TrailerValue,
    /// Expecting the LF ending a trailer line.
    TrailerLf,
    /// Expecting the LF of the final CRLF.
    EndLf,
    /// The body is complete.
    Done,
}

/// A chunked-body scanner (RFC 9112 §7.1): finds where the body ends without decoding it.
///
/// It is never more lenient than hyper's decoder (the hyper path, and most targets): a
/// body it accepts, hyper accepts and ends at the same byte. It is stricter in that a chunk
/// size has at most 16 hex digits (leading zeros included), trailer lines must be field lines
/// (`token ":" value`) ending in CRLF, and a bare LF is an error anywhere.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Chunked {
    state: ChunkState,
    size: u64,
    /// Chunk-extension bytes seen so far (all chunks).
    ext: u64,
    /// Trailer-section bytes seen so far.
    trailer_bytes: usize,
    /// Trailer fields seen so far.
    trailers: usize,
}

/// Whether `b` may appear in a token (RFC 9110 §5.6.2), such as a field name.
fn is_tchar(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

/// Whether `b` may appear in a field value (RFC 9110 §5.5: VCHAR, obs-text, SP, HTAB).
fn is_field_byte(b: u8) -> bool {
    b == b'\t' || (b' '..=b'~').contains(&b) || b >= 0x80
}

impl Chunked {
    /// At the start of a body.
    fn new() -> Self {
        Self {
            state: ChunkState::Size { digits: 0 },
            size: 0,
            ext: 0,
            trailer_bytes: 0,
            trailers: 0,
        }
    }

    /// Whether the last chunk and the trailers have been seen.
    fn is_done(&self) -> bool {
        self.state == ChunkState::Done
    }

    /// Scans `data`; returns how many bytes belong to the body (all of them unless it ended).
    fn scan(&mut self, data: &[u8]) -> std::result::Result<usize, &'static str> {
        let mut i = 0;
        while i < data.len() && !self.is_done() {
            if let ChunkState::Data(left) = self.state {
                let n = usize::try_from(left)
                    .unwrap_or(usize::MAX)
                    .min(data.len() - i);
                i += n;
                let left = left - n as u64;
                self.state = if left == 0 {
                    ChunkState::DataCr
                } else {
                    ChunkState::Data(left)
                };
                continue;
            }
            self.byte(data[i])?;
            i += 1;
        }
        Ok(i)
    }

    /// One byte outside chunk data.
    fn byte(&mut self, b: u8) -> std::result::Result<(), &'static str> {
        use ChunkState::*;
        let in_trailers = matches!(self.state, TrailerName | TrailerValue | TrailerLf)
            || (matches!(self.state, TrailerStart | EndLf) && self.trailers > 0)
            || (self.state == TrailerStart && b != b'\r');
        if in_trailers {
            self.trailer_bytes += 1;
            if self.trailer_bytes >= TRAILER_LIMIT {
                return Err("trailers too large");
            }
        }
        self.state = match (self.state, b) {
            (Size { digits }, _) if b.is_ascii_hexdigit() => {
                if digits >= 16 {
                    return Err("chunk size too large");
                }
                let d = u64::from((b as char).to_digit(16).unwrap_or(0));
                self.size = (self.size << 4) | d;
                Size { digits: digits + 1 }
            }
            (Size { digits: 0 }, _) => return Err("chunk size missing"),
            (Size { .. } | SizeLws, b' ' | b'\t') => SizeLws,
            (Size { .. } | SizeLws, b';') => Ext,
            (Size { .. } | SizeLws | Ext, b'\r') => SizeLf,
            (Size { .. } | SizeLws, _) => return Err("invalid byte in chunk size line"),
            (Ext, b'\n') => return Err("bare LF in chunk extension"),
            (Ext, _) => {
                self.ext += 1;
                if self.ext >= CHUNK_EXT_LIMIT {
                    return Err("chunk extensions too long");
                }
                Ext
            }
            (SizeLf, b'\n') if self.size == 0 => TrailerStart,
            (SizeLf, b'\n') => Data(std::mem::take(&mut self.size)),
            (DataCr, b'\r') => DataLf,
            (DataLf, b'\n') => Size { digits: 0 },
            (TrailerStart, b'\r') => EndLf,
            (TrailerStart | TrailerName, _) if is_tchar(b) => TrailerName,
            (TrailerName, b':') => TrailerValue,
            (TrailerValue, b'\r') => TrailerLf,
            (TrailerValue, _) if is_field_byte(b) => TrailerValue,
            (TrailerStart | TrailerName | TrailerValue, b'\n') => return Err("bare LF in trailer"),
            (TrailerStart | TrailerName | TrailerValue, _) => {
                return Err("invalid trailer field line");
            }
            (TrailerLf, b'\n') => {
                if self.trailers >= MAX_TRAILERS {
                    return Err("too many trailer fields");
                }
                self.trailers += 1;
                TrailerStart
            }
            (EndLf, b'\n') => Done,
            _ => return Err("missing CRLF"),
        };
        Ok(())
    }
}

/// The offsets of `part` inside `base` (`part` is a sub-slice of `base`).
fn span(base: &[u8], part: &[u8]) -> Range<usize> {
    let start = (part.as_ptr() as usize).saturating_sub(base.as_ptr() as usize);
    start..start + part.len()
}

/// What a head's fields say about the connection and the framing.
#[derive(Debug, Default)]
struct Fields {
    /// The fields forwarded, as (name, value) offsets in the buffer.
    kept: Vec<(Range<usize>, Range<usize>)>,
    content_length: Option<u64>,
    chunked: bool,
    /// A `Transfer-Encoding` other than exactly one `chunked` (requests with one are handed
    /// to hyper; a response is framed by its last coding).
    other_coding: bool,
    /// `Transfer-Encoding` field lines.
    te_lines: usize,
    close: bool,
    keep_alive: bool,
    upgrade: bool,
}

/// Why a head's fields cannot be forwarded as they are.
#[derive(Debug, PartialEq, Eq)]
enum FieldError {
    /// The message cannot be framed safely.
    Invalid(&'static str),
    /// The hyper path must serve it.
    Handoff(&'static str),
}

/// Sorts `headers` into what is forwarded and what it means, by the hop-by-hop policy
/// ([`crate::http::headers`]); a request's `Host` is dropped too (the caller writes the target's).
fn classify(
    base: &[u8],
    headers: &[httparse::Header<'_>],
    message: Message,
) -> std::result::Result<Fields, FieldError> {
    let mut f = Fields::default();
    let mut listed: Vec<&[u8]> = Vec::new();
    for h in headers {
        let name = h.name.as_bytes();
        if name.eq_ignore_ascii_case(b"connection") {
            for token in elements(h.value) {
                if token.eq_ignore_ascii_case(b"close") {
                    f.close = true;
                } else if token.eq_ignore_ascii_case(b"keep-alive") {
                    f.keep_alive = true;
                } else if token.eq_ignore_ascii_case(b"upgrade") {
                    f.upgrade = true;
                } else {
                    listed.push(token);
                }
            }
        } else if name.eq_ignore_ascii_case(b"upgrade") {
            f.upgrade = true;
        } else if name.eq_ignore_ascii_case(b"content-length") {
            let n = std::str::from_utf8(trim(h.value))
                .ok()
                .filter(|s| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()))
                .and_then(|s| s.parse::<u64>().ok())
                .filter(|n| *n <= MAX_CONTENT_LENGTH)
                .ok_or(FieldError::Invalid("invalid content-length"))?;
            if f.content_length.is_some() {
                return Err(FieldError::Handoff("several content-length fields"));
            }
            f.content_length = Some(n);
        } else if name.eq_ignore_ascii_case(b"transfer-encoding") {
            // The body is framed by the last coding: chunked or, for a response, the end of
            // the connection (RFC 9112 §6.3). Other codings (gzip, …) are end to end and stay.
            let codings = elements(h.value).count();
            let last_chunked = elements(h.value)
                .last()
                .is_some_and(|c| c.eq_ignore_ascii_case(b"chunked"));
            if codings != 1 || !last_chunked || f.chunked || f.other_coding {
                f.other_coding = true;
            }
            f.chunked = last_chunked && !f.chunked;
            f.te_lines += 1;
        }
    }
    if f.content_length.is_some() && (f.chunked || f.other_coding) {
        return Err(FieldError::Invalid(
            "both content-length and transfer-encoding",
        ));
    }
    for h in headers {
        let name = h.name.as_bytes();
        // The body is forwarded as it arrived, so the fields that frame it stay.
        let host = message == Message::Request && name.eq_ignore_ascii_case(b"host");
        if !host && !headers::is_dropped(name, message, &listed, true) {
            f.kept.push((span(base, name), span(base, h.value)));
        }
    }
    Ok(f)
}

/// A request head the lean path forwards, as offsets into the connection's buffer.
#[derive(Debug)]
struct RequestHead {
    /// Length of the head in bytes, blank line included.
    len: usize,
    method: Range<usize>,
    path: Range<usize>,
    /// The `Host` value (`None`: absent).
    host: Option<Range<usize>>,
    /// The `Forwarded` values.
    forwarded: Vec<Range<usize>>,
    fields: Fields,
    framing: Framing,
    is_head: bool,
}

/// The outcome of parsing a request head.
#[derive(Debug)]
enum Parsed {
    /// More bytes are needed.
    Partial,
    /// A head the lean path forwards.
    Head(RequestHead),
    /// The hyper path must serve it.
    Handoff(&'static str),
    /// Unsafe to frame: answer 400 and close.
    Reject(&'static str),
}

/// Parses the request head at the start of `buf` (at most `max` bytes of it).
fn parse_request(buf: &[u8], max: usize) -> Parsed {
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut req = httparse::Request::new(&mut headers);
    let len = match req.parse(buf) {
        Ok(httparse::Status::Complete(len)) if len <= max => len,
        Ok(httparse::Status::Complete(_)) => return Parsed::Handoff("head too large"),
        Ok(httparse::Status::Partial) if buf.len() >= max => {
            return Parsed::Handoff("head too large");
        }
        Ok(httparse::Status::Partial) => return Parsed::Partial,
        Err(_) => return Parsed::Handoff("not an HTTP/1.1 head this path parses"),
    };
    let (Some(method), Some(path), Some(1)) = (req.method, req.path, req.version) else {
        return Parsed::Handoff("HTTP/1.0");
    };
    if method.eq_ignore_ascii_case("CONNECT") || !path.starts_with('/') {
        return Parsed::Handoff("CONNECT or a request target not in origin form");
    }
    // hyper parses the target with http::Uri: one it refuses (bytes such as `{` or `"`, or
    // beyond its length limit) it answers 400, and one with a fragment it forwards without
    // it. The lean path leaves both to hyper rather than forward what hyper would not.
    if path.contains('#') || http::Uri::try_from(path).is_err() {
        return Parsed::Handoff("a request target hyper's URI parser refuses or rewrites");
    }
    let headers = &*req.headers;
    let mut host = None;
    let mut forwarded = Vec::new();
    for h in headers {
        let name = h.name.as_bytes();
        if name.eq_ignore_ascii_case(b"expect") {
            return Parsed::Handoff("Expect");
        } else if name.eq_ignore_ascii_case(b"host") {
            if host.is_some() {
                return Parsed::Handoff("several Host fields");
            }
            host = Some(span(buf, h.value));
        } else if name.eq_ignore_ascii_case(b"forwarded") {
            forwarded.push(span(buf, h.value));
        }
    }
    let fields = match classify(buf, headers, Message::Request) {
        Ok(f) => f,
        Err(FieldError::Invalid(why)) => return Parsed::Reject(why),
        Err(FieldError::Handoff(why)) => return Parsed::Handoff(why),
    };
    if fields.upgrade {
        return Parsed::Handoff("Upgrade");
    }
    if fields.other_coding {
        return Parsed::Handoff("a transfer coding other than chunked");
    }
    let framing = match (fields.chunked, fields.content_length) {
        (true, _) => Framing::Chunked(Chunked::new()),
        (false, Some(n)) if n > 0 => Framing::Length(n),
        _ => Framing::Empty,
    };
    Parsed::Head(RequestHead {
        len,
        method: span(buf, method.as_bytes()),
        path: span(buf, path.as_bytes()),
        host,
        forwarded,
        is_head: method == "HEAD",
        fields,
        framing,
    })
}

/// Writes the request head sent to the target into `out`.
fn write_request_head(out: &mut Vec<u8>, buf: &[u8], head: &RequestHead, entry: &TargetEntry) {
    write_request_head_with(out, buf, head, entry.host.as_bytes(), &entry.added);
}

/// [`write_request_head`] with the `Host` value and the added fields given.
fn write_request_head_with(
    out: &mut Vec<u8>,
    buf: &[u8],
    head: &RequestHead,
    host: &[u8],
    added: &Added,
) {
    let at = |r: &Range<usize>| buf.get(r.clone()).unwrap_or_default();
    out.extend_from_slice(at(&head.method));
    out.push(b' ');
    out.extend_from_slice(at(&head.path));
    out.extend_from_slice(b" HTTP/1.1\r\nhost: ");
    out.extend_from_slice(host);
    out.extend_from_slice(b"\r\n");
    write_fields(out, buf, &head.fields.kept);
    added.write(out);
    out.extend_from_slice(b"\r\n");
}

/// Writes `name: value\r\n` for each kept field.
fn write_fields(out: &mut Vec<u8>, buf: &[u8], kept: &[(Range<usize>, Range<usize>)]) {
    for (name, value) in kept {
        out.extend_from_slice(buf.get(name.clone()).unwrap_or_default());
        out.extend_from_slice(b": ");
        out.extend_from_slice(buf.get(value.clone()).unwrap_or_default());
        out.extend_from_slice(b"\r\n");
    }
}

/// A response head from the target.
#[derive(Debug)]
struct ResponseHead {
    /// Length of the head in bytes.
    len: usize,
    status: u16,
    /// HTTP/1.1 (else 1.0).
    http11: bool,
    reason: Range<usize>,
    fields: Fields,
}

/// Parses the response head at the start of `buf`; `Ok(None)`: more bytes are needed.
fn parse_response(buf: &[u8], max: usize) -> Result<Option<ResponseHead>> {
    let bad = |why| Error::Http1 {
        peer: "target",
        what: "response head",
        why,
    };
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut resp = httparse::Response::new(&mut headers);
    let len = match resp.parse(buf) {
        Ok(httparse::Status::Complete(len)) if len <= max => len,
        Ok(httparse::Status::Partial) if buf.len() < max => return Ok(None),
        Ok(_) => return Err(bad("larger than the maximum header size")),
        Err(_) => return Err(bad("not a valid HTTP/1 response head")),
    };
    let status = resp.code.ok_or(bad("no status code"))?;
    if status < 100 {
        return Err(bad("status code below 100"));
    }
    let http11 = resp.version == Some(1);
    let fields = classify(buf, resp.headers, Message::Response).map_err(|e| match e {
        FieldError::Invalid(why) | FieldError::Handoff(why) => bad(why),
    })?;
    // Where peers could disagree on the framing, the response is refused rather than
    // forwarded: several Transfer-Encoding lines (hyper frames by the last one, others by
    // the combined list), or Transfer-Encoding in HTTP/1.0 (RFC 9112 §6.1: faulty framing).
    if fields.te_lines > 1 {
        return Err(bad("several transfer-encoding fields"));
    }
    if fields.te_lines > 0 && !http11 {
        return Err(bad("transfer-encoding in an HTTP/1.0 response"));
    }
    Ok(Some(ResponseHead {
        len,
        status,
        http11,
        reason: span(buf, resp.reason.unwrap_or_default().as_bytes()),
        fields,
    }))
}

impl ResponseHead {
    /// The body framing of this response to a request (`is_head`: to a HEAD request).
    fn framing(&self, is_head: bool) -> Framing {
        match (self.status, self.fields.content_length) {
            _ if is_head || self.status < 200 || self.status == 204 || self.status == 304 => {
                Framing::Empty
            }
            _ if self.fields.chunked => Framing::Chunked(Chunked::new()),
            (_, Some(0)) => Framing::Empty,
            (_, Some(n)) => Framing::Length(n),
            _ => Framing::UntilEof,
        }
    }

    /// Whether the target's connection can carry another request afterwards.
    fn reusable(&self, framing: Framing) -> bool {
        let persistent = if self.http11 {
            !self.fields.close
        } else {
            self.fields.keep_alive
        };
        persistent && framing != Framing::UntilEof
    }

    /// Writes the head sent to the client into `out`.
    fn write(&self, out: &mut Vec<u8>, buf: &[u8], close: bool) {
        out.extend_from_slice(b"HTTP/1.1 ");
        let _ = std::io::Write::write_fmt(out, format_args!("{}", self.status));
        out.push(b' ');
        out.extend_from_slice(buf.get(self.reason.clone()).unwrap_or_default());
        out.extend_from_slice(b"\r\n");
        write_fields(out, buf, &self.fields.kept);
        if close {
            out.extend_from_slice(b"connection: close\r\n");
        }
        out.extend_from_slice(b"\r\n");
    }
}

/// An open connection to a target endpoint, with what was read from it.
#[derive(Debug)]
struct Upstream {
    addr: SocketAddr,
    stream: BackendStream,
    buf: Buffered,
    /// Whether it carried an exchange before (a failure may then be a stale connection).
    reused: bool,
    last_used: u64,
}

impl Upstream {
    /// Opens a connection to `addr`.
    async fn open(addr: SocketAddr, backends: &Backends) -> Result<Self> {
        let stream = backends.connect(addr).await?;
        Ok(Self {
            addr,
            stream,
            buf: Buffered::default(),
            reused: false,
            last_used: 0,
        })
    }
}

/// The next request of a connection.
#[derive(Debug)]
enum Next {
    Request(RequestHead),
    Closed,
    Handoff(&'static str),
    Reject(&'static str),
}

/// Why an exchange failed before the response head reached the client.
#[derive(Debug)]
enum Failure {
    /// The gateway's own error (connect).
    Gateway(Error),
    /// The target failed the exchange.
    Upstream(Error),
    /// The client failed to send its request body: the connection ends.
    Client(Error),
}

/// One client connection on the lean path.
struct Conn<S> {
    io: S,
    buf: Buffered,
    /// The head being written (request to the target, or response to the client).
    out: Vec<u8>,
    /// Open target connections, at most [`MAX_DEDICATED`].
    upstreams: Vec<Upstream>,
    /// Opens them.
    backends: Backends,
    requests: u64,
    limits: H1Limits,
}

impl<S: AsyncRead + AsyncWrite + Unpin> Conn<S> {
    /// Serves requests until the connection is to close (`None`) or a request needs the hyper
    /// path (`Some(why)`, the request still unread in the buffer).
    async fn serve_requests(
        &mut self,
        ctx: &HttpContext,
        mut stop: watch::Receiver<bool>,
    ) -> Option<&'static str> {
        let mut first = true;
        loop {
            let head = match self.next_head(ctx, &mut stop, first).await {
                Next::Request(h) => {
                    first = false;
                    h
                }
                Next::Closed => return None,
                Next::Handoff(why) => return Some(why),
                Next::Reject(why) => {
                    tracing::debug!(client = %ctx.client_id, why, "bad request");
                    let _ = self.io.write_all(BAD_REQUEST).await;
                    let _ = self.io.flush().await;
                    return None;
                }
            };
            match self.exchange(ctx, head).await {
                Ok(true) if !*stop.borrow() => {}
                Ok(_) => return None,
                Err(e) => {
                    tracing::debug!(client = %ctx.client_id, error = %e, "HTTP/1 connection ended");
                    return None;
                }
            }
        }
    }

    /// Reads the next request head. The first request of a connection must arrive whole
    /// within the header timeout (a client that connects and sends nothing is closed then).
    /// Between requests, the first byte of the next one waits without a timer of its own
    /// (the connection's idle timeout applies), and the rest of its head gets the header
    /// timeout.
    async fn next_head(
        &mut self,
        ctx: &HttpContext,
        stop: &mut watch::Receiver<bool>,
        first: bool,
    ) -> Next {
        let started = Instant::now();
        if self.buf.pending().is_empty() {
            let fill = self.buf.fill_after_idle(&mut self.io);
            let bounded = async {
                if first {
                    tokio::time::timeout(self.limits.header_timeout, fill)
                        .await
                        .unwrap_or(Ok(0))
                } else {
                    fill.await
                }
            };
            let read = tokio::select! {
                r = bounded => r,
                Ok(_) = stop.wait_for(|s| *s) => return Next::Closed,
            };
            if !matches!(read, Ok(n) if n > 0) {
                return Next::Closed;
            }
        }
        let max = self.limits.max_head;
        match parse_request(self.buf.pending(), max) {
            Parsed::Partial => {}
            done => return Self::next_of(done),
        }
        let limit = if first {
            self.limits.header_timeout.saturating_sub(started.elapsed())
        } else {
            self.limits.header_timeout
        };
        let rest = async {
            loop {
                match self.buf.fill(&mut self.io).await {
                    Ok(n) if n > 0 => {}
                    _ => return Next::Closed,
                }
                match parse_request(self.buf.pending(), max) {
                    Parsed::Partial => {}
                    done => return Self::next_of(done),
                }
            }
        };
        match tokio::time::timeout(limit, rest).await {
            Ok(next) => next,
            Err(_) => {
                tracing::debug!(client = %ctx.client_id, ?limit, "request head timed out");
                Next::Closed
            }
        }
    }

    fn next_of(parsed: Parsed) -> Next {
        match parsed {
            Parsed::Head(h) => Next::Request(h),
            Parsed::Handoff(why) => Next::Handoff(why),
            Parsed::Reject(why) => Next::Reject(why),
            Parsed::Partial => Next::Closed,
        }
    }

    /// Routes and forwards one request and relays its response. Returns whether the
    /// connection stays open for the next request.
    async fn exchange(&mut self, ctx: &HttpContext, head: RequestHead) -> Result<bool> {
        let start = Instant::now();
        let key = match ctx.fixed_target {
            Some(_) => None,
            None => Some(
                head.host
                    .as_ref()
                    .and_then(|r| self.buf.pending().get(r.clone()))
                    .and_then(|v| std::str::from_utf8(v).ok())
                    .unwrap_or_default(),
            ),
        };
        let mut entry = match ctx.entry_for_key(key) {
            Ok(e) => e,
            Err((target, e)) => {
                let (status, msg) = ctx.refused(target.as_ref(), &e, start);
                return self.answer_error(head, status, &msg).await;
            }
        };
        let result = self.forward(ctx, &mut entry, head, start).await;
        ctx.keep_entry(entry);
        result
    }

    /// [`Self::exchange`] once the target is known.
    async fn forward(
        &mut self,
        ctx: &HttpContext,
        entry: &mut TargetEntry,
        head: RequestHead,
        start: Instant,
    ) -> Result<bool> {
        let target = &entry.target;
        let pending = self.buf.pending();
        let forwarded = head
            .forwarded
            .iter()
            .filter_map(|r| pending.get(r.clone()))
            .filter_map(|v| std::str::from_utf8(v).ok());
        if let Err(e) = check_forwarded(forwarded, &ctx.gateway_id) {
            let (status, msg) = ctx.refused(Some(target), &e, start);
            return self.answer_error(head, status, &msg).await;
        }
        let addr = match ctx.resolver().resolve(target).await {
            Ok(a) => a,
            Err(e) => {
                // An unknown service gets no per-target series (names are client-chosen).
                let known = !matches!(e, Error::UnknownService { .. });
                let (status, msg) = ctx.refused(known.then_some(target), &e, start);
                return self.answer_error(head, status, &msg).await;
            }
        };
        let in_flight = ctx.resolver().track(addr);
        self.out.clear();
        write_request_head(&mut self.out, self.buf.pending(), &head, entry);
        self.buf.consume(head.len);
        let mut body = head.framing;
        let n = body.step(self.buf.pending(), "client")?;
        self.out
            .extend_from_slice(self.buf.pending().get(..n).unwrap_or_default());
        self.buf.consume(n);
        let sent = self.send(addr, &mut body).await;
        drop(in_flight);
        let (up, resp) = match sent {
            Ok(ok) => ok,
            Err(failure) => {
                let (status, msg) = match failure {
                    Failure::Client(e) => return Err(e),
                    Failure::Gateway(e) => ctx.refused(Some(target), &e, start),
                    Failure::Upstream(e) => {
                        ctx.metrics.route_error("upstream");
                        let msg = format!("upstream {target} failed: {e}");
                        ctx.note_error(Some(target), StatusCode::BAD_GATEWAY, &msg, start);
                        (StatusCode::BAD_GATEWAY, msg)
                    }
                };
                let close = !body.is_done() || head.fields.close;
                self.write_error(status, &msg, close).await?;
                return Ok(!close);
            }
        };
        let status = resp.status;
        entry
            .metrics
            .record(&ctx.metrics, status, start.elapsed().as_secs_f64());
        self.relay_response(up, resp, &head).await
    }

    /// Answers a refused request with `status` and `msg`. A request with a body is not read
    /// further: the connection closes after the answer.
    async fn answer_error(
        &mut self,
        head: RequestHead,
        status: StatusCode,
        msg: &str,
    ) -> Result<bool> {
        self.buf.consume(head.len);
        let close = head.fields.close || !head.framing.is_done();
        self.write_error(status, msg, close).await?;
        Ok(!close)
    }

    /// Writes a plain-text error response, like [`crate::http::error_response`].
    async fn write_error(&mut self, status: StatusCode, msg: &str, close: bool) -> Result<()> {
        self.out.clear();
        let text = format!(
            "HTTP/1.1 {} {}\r\ncontent-type: text/plain; charset=utf-8\r\ncontent-length: {}\r\n{}\r\n{msg}\n",
            status.as_u16(),
            status.canonical_reason().unwrap_or(""),
            msg.len() + 1,
            if close { "connection: close\r\n" } else { "" },
        );
        self.out.extend_from_slice(text.as_bytes());
        self.client_write(true).await
    }

    /// Writes `out` to the client, flushing when `flush`.
    async fn client_write(&mut self, flush: bool) -> Result<()> {
        let io_err = |source| Error::Io {
            what: "writing to the HTTP client",
            source,
        };
        self.io.write_all(&self.out).await.map_err(io_err)?;
        if flush {
            self.io.flush().await.map_err(io_err)?;
        }
        Ok(())
    }

    /// Takes this connection's open connection to `addr`, if any.
    fn take_upstream(&mut self, addr: SocketAddr) -> Option<Upstream> {
        let i = self.upstreams.iter().position(|u| u.addr == addr)?;
        Some(self.upstreams.swap_remove(i))
    }

    /// Keeps `up` for the next requests; beyond [`MAX_DEDICATED`] endpoints, the least
    /// recently used connection is closed.
    fn put_upstream(&mut self, mut up: Upstream) {
        if up.buf.pending().is_empty() {
            // Idle until the next request: hold no read buffer for it.
            up.buf = Buffered::default();
        }
        self.requests += 1;
        up.last_used = self.requests;
        up.reused = true;
        let oldest = (0..self.upstreams.len()).min_by_key(|&i| self.upstreams[i].last_used);
        if let Some(i) = oldest.filter(|_| self.upstreams.len() >= MAX_DEDICATED) {
            self.upstreams.swap_remove(i);
        }
        self.upstreams.push(up);
    }

    /// Sends the request in `out` (head and buffered body) and the rest of its body to `addr`,
    /// and reads the response head. A reused connection that fails before any response byte
    /// is replaced once when the whole request was in `out`.
    async fn send(
        &mut self,
        addr: SocketAddr,
        body: &mut Framing,
    ) -> std::result::Result<(Upstream, ResponseHead), Failure> {
        let complete = body.is_done();
        let mut up = match self.take_upstream(addr) {
            Some(up) => up,
            None => Upstream::open(addr, &self.backends)
                .await
                .map_err(Failure::Gateway)?,
        };
        loop {
            match self.try_send(&mut up, body).await {
                Ok(resp) => return Ok((up, resp)),
                Err(Attempt::Stale(e)) if !(up.reused && complete) => {
                    return Err(Failure::Upstream(e));
                }
                Err(Attempt::Stale(e)) => {
                    tracing::debug!(%addr, error = %e, "reused target connection was closed; retrying on a new one");
                    up = Upstream::open(addr, &self.backends)
                        .await
                        .map_err(Failure::Gateway)?;
                }
                Err(Attempt::Failed(e)) => return Err(Failure::Upstream(e)),
                Err(Attempt::Client(e)) => return Err(Failure::Client(e)),
            }
        }
    }

    /// One attempt of [`Self::send`] on `up`.
    async fn try_send(
        &mut self,
        up: &mut Upstream,
        body: &mut Framing,
    ) -> std::result::Result<ResponseHead, Attempt> {
        let io_err = |what| move |source| Error::Io { what, source };
        up.stream
            .write_all(&self.out)
            .await
            .map_err(io_err("writing the request to the target"))
            .map_err(Attempt::Stale)?;
        if !body.is_done() {
            self.copy_request_body(up, body)
                .await
                .map_err(|e| match e {
                    Copy::Read(e) => Attempt::Client(e),
                    Copy::Write(e) => Attempt::Failed(e),
                })?;
        }
        // A TLS backend may still hold the last record (a no-op on plain TCP).
        up.stream
            .flush()
            .await
            .map_err(io_err("writing the request to the target"))
            .map_err(Attempt::Failed)?;
        let max = self.limits.max_head;
        let mut got_any = !up.buf.pending().is_empty();
        loop {
            if let Some(resp) = parse_response(up.buf.pending(), max).map_err(Attempt::Failed)? {
                if resp.status >= 200 || resp.status == 101 {
                    return Ok(resp);
                }
                self.relay_interim(up, &resp)
                    .await
                    .map_err(Attempt::Failed)?;
                continue;
            }
            let n = up
                .buf
                .fill(&mut up.stream)
                .await
                .map_err(io_err("reading the response from the target"));
            match n {
                Ok(0) if !got_any => {
                    return Err(Attempt::Stale(Error::Http1 {
                        peer: "target",
                        what: "response",
                        why: "the connection closed before a response",
                    }));
                }
                Ok(0) => {
                    return Err(Attempt::Failed(Error::Http1 {
                        peer: "target",
                        what: "response head",
                        why: "the connection closed in the middle of it",
                    }));
                }
                Ok(_) => got_any = true,
                Err(e) if !got_any => return Err(Attempt::Stale(e)),
                Err(e) => return Err(Attempt::Failed(e)),
            }
        }
    }

    /// Copies the rest of the request body from the client to the target.
    async fn copy_request_body(
        &mut self,
        up: &mut Upstream,
        body: &mut Framing,
    ) -> std::result::Result<(), Copy> {
        copy_body(&mut self.io, &mut self.buf, &mut up.stream, body, "client").await
    }

    /// Relays a 1xx interim response to the client.
    async fn relay_interim(&mut self, up: &mut Upstream, resp: &ResponseHead) -> Result<()> {
        self.out.clear();
        resp.write(&mut self.out, up.buf.pending(), false);
        up.buf.consume(resp.len);
        self.client_write(true).await
    }

    /// Writes the response head and body to the client; keeps `up` when it can carry another
    /// request. Returns whether the client connection stays open.
    async fn relay_response(
        &mut self,
        mut up: Upstream,
        resp: ResponseHead,
        req: &RequestHead,
    ) -> Result<bool> {
        if resp.status == 101 {
            return Err(Error::Http1 {
                peer: "target",
                what: "response",
                why: "101 Switching Protocols to a request without Upgrade",
            });
        }
        let mut body = resp.framing(req.is_head);
        let close = req.fields.close || body == Framing::UntilEof;
        self.out.clear();
        resp.write(&mut self.out, up.buf.pending(), close);
        up.buf.consume(resp.len);
        let n = body.step(up.buf.pending(), "target")?;
        self.out
            .extend_from_slice(up.buf.pending().get(..n).unwrap_or_default());
        up.buf.consume(n);
        self.client_write(false).await?;
        if !body.is_done() {
            copy_body(
                &mut up.stream,
                &mut up.buf,
                &mut self.io,
                &mut body,
                "target",
            )
            .await
            .map_err(Copy::into_error)?;
        }
        self.io.flush().await.map_err(|source| Error::Io {
            what: "writing to the HTTP client",
            source,
        })?;
        if resp.reusable(resp.framing(req.is_head)) && up.buf.pending().is_empty() {
            self.put_upstream(up);
        }
        Ok(!close)
    }
}

/// Why one attempt at an exchange failed.
#[derive(Debug)]
enum Attempt {
    /// Before any response byte: the connection may have been closed while idle.
    Stale(Error),
    /// Later, or not retryable.
    Failed(Error),
    /// The client's side failed (its request body).
    Client(Error),
}

/// Which side of a body copy failed.
#[derive(Debug)]
enum Copy {
    /// The sender: a read error, an early close, or a malformed body.
    Read(Error),
    /// The receiver: a write error.
    Write(Error),
}

impl Copy {
    fn into_error(self) -> Error {
        match self {
            Copy::Read(e) | Copy::Write(e) => e,
        }
    }
}

/// Copies the body framed by `body` from `src` (after what `buf` holds) to `dst`.
async fn copy_body<R, W>(
    src: &mut R,
    buf: &mut Buffered,
    dst: &mut W,
    body: &mut Framing,
    peer: &'static str,
) -> std::result::Result<(), Copy>
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    let io_err = |what| move |source| Error::Io { what, source };
    while !body.is_done() {
        if buf.pending().is_empty() {
            let n = buf
                .fill(src)
                .await
                .map_err(io_err("reading a message body"))
                .map_err(Copy::Read)?;
            if n == 0 {
                if *body == Framing::UntilEof {
                    return Ok(());
                }
                return Err(Copy::Read(Error::Http1 {
                    peer,
                    what: "body",
                    why: "the connection closed before the end of the body",
                }));
            }
        }
        let n = body.step(buf.pending(), peer).map_err(Copy::Read)?;
        dst.write_all(buf.pending().get(..n).unwrap_or_default())
            .await
            .map_err(io_err("writing a message body"))
            .map_err(Copy::Write)?;
        buf.consume(n);
    }
    Ok(())
}

#[cfg(test)]
mod differential;
#[cfg(any(test, feature = "fuzzing"))]
pub(crate) mod fuzzing;

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

    use super::*;

    fn head(buf: &[u8]) -> RequestHead {
        match parse_request(buf, 64 * 1024) {
            Parsed::Head(h) => h,
            other => panic!("{other:?}"),
        }
    }

    fn kept(buf: &[u8], f: &Fields) -> Vec<String> {
        f.kept
            .iter()
            .map(|(n, v)| {
                format!(
                    "{}: {}",
                    String::from_utf8_lossy(&buf[n.clone()]),
                    String::from_utf8_lossy(&buf[v.clone()])
                )
            })
            .collect()
    }

    #[test]
    fn a_request_head_keeps_end_to_end_fields_and_drops_hop_by_hop_ones() {
        let buf = b"POST /a?b HTTP/1.1\r\nHost: web.shop.svc.cluster.local:8080\r\nConnection: keep-alive, X-Secret\r\nx-secret: 1\r\nKeep-Alive: 5\r\nTE: trailers\r\nl5d-client-id: forged\r\nContent-Length: 3\r\nX-Keep: a, b\r\nforwarded: for=x\r\n\r\nabcGET";
        let h = head(buf);
        assert_eq!(h.len, buf.len() - 6);
        assert_eq!(&buf[h.method.clone()], b"POST");
        assert_eq!(&buf[h.path.clone()], b"/a?b");
        assert_eq!(
            &buf[h.host.clone().unwrap()],
            b"web.shop.svc.cluster.local:8080"
        );
        assert_eq!(h.framing, Framing::Length(3));
        assert!(!h.fields.close);
        assert_eq!(
            kept(buf, &h.fields),
            ["Content-Length: 3", "X-Keep: a, b", "forwarded: for=x"]
        );
        assert_eq!(h.forwarded.len(), 1);
    }

    #[test]
    fn framing_fields_stay_even_when_connection_lists_them() {
        let buf = b"POST / HTTP/1.1\r\nhost: a\r\nconnection: content-length, x-a\r\nx-a: 1\r\ncontent-length: 5\r\n\r\n";
        let h = head(buf);
        assert_eq!(h.framing, Framing::Length(5));
        assert_eq!(kept(buf, &h.fields), ["content-length: 5"]);
        let buf = b"POST / HTTP/1.1\r\nhost: a\r\nconnection: Transfer-Encoding\r\ntransfer-encoding: chunked\r\n\r\n";
        assert_eq!(kept(buf, &head(buf).fields), ["transfer-encoding: chunked"]);
        let (buf, r) = response(
            "HTTP/1.1 200 OK\r\nconnection: transfer-encoding\r\ntransfer-encoding: chunked\r\n\r\n",
        );
        assert_eq!(kept(&buf, &r.fields), ["transfer-encoding: chunked"]);
    }

    #[test]
    fn connection_close_and_chunked_framing_are_seen() {
        let buf =
            b"PUT / HTTP/1.1\r\nhost: a\r\nconnection: close\r\ntransfer-encoding: chunked\r\n\r\n";
        let h = head(buf);
        assert!(h.fields.close);
        assert_eq!(h.framing, Framing::Chunked(Chunked::new()));
        assert_eq!(kept(buf, &h.fields), ["transfer-encoding: chunked"]);
    }

    #[test]
    fn smuggling_shapes_are_rejected_or_handed_to_hyper() {
        let p = |s: &str| parse_request(s.as_bytes(), 64 * 1024);
        let both =
            "POST / HTTP/1.1\r\nhost: a\r\ncontent-length: 3\r\ntransfer-encoding: chunked\r\n\r\n";
        assert!(matches!(p(both), Parsed::Reject(_)));
        assert!(matches!(
            p("POST / HTTP/1.1\r\nhost: a\r\ncontent-length: 3x\r\n\r\n"),
            Parsed::Reject(_)
        ));
        assert!(matches!(
            p("POST / HTTP/1.1\r\nhost: a\r\ncontent-length: -1\r\n\r\n"),
            Parsed::Reject(_)
        ));
        assert!(matches!(
            p("POST / HTTP/1.1\r\nhost: a\r\ncontent-length: 1\r\ncontent-length: 2\r\n\r\n"),
            Parsed::Handoff(_)
        ));
        assert!(matches!(
            p("POST / HTTP/1.1\r\nhost: a\r\ntransfer-encoding: gzip, chunked\r\n\r\n"),
            Parsed::Handoff(_)
        ));
        assert!(matches!(
            p("GET / HTTP/1.1\r\nhost: a\r\nhost: b\r\n\r\n"),
            Parsed::Handoff(_)
        ));
    }

    #[test]
    fn what_the_lean_path_does_not_serve_is_handed_off() {
        let p = |s: &str| parse_request(s.as_bytes(), 64 * 1024);
        for req in [
            "GET / HTTP/1.1\r\nhost: a\r\nconnection: upgrade\r\nupgrade: websocket\r\n\r\n",
            "PUT / HTTP/1.1\r\nhost: a\r\nexpect: 100-continue\r\ncontent-length: 1\r\n\r\n",
            "GET / HTTP/1.0\r\nhost: a\r\n\r\n",
            "GET http://a/ HTTP/1.1\r\nhost: a\r\n\r\n",
            "CONNECT a:80 HTTP/1.1\r\nhost: a\r\n\r\n",
            "GET /a<b> HTTP/1.1\r\nhost: a\r\n\r\n",
            "GET /a#fragment HTTP/1.1\r\nhost: a\r\n\r\n",
            "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n",
            "\x16\x03\x01garbage\r\n\r\n",
        ] {
            assert!(matches!(p(req), Parsed::Handoff(_)), "{req:?}");
        }
    }

    #[test]
    fn a_head_is_partial_until_complete_and_handed_off_beyond_the_limit() {
        let full = b"GET / HTTP/1.1\r\nhost: a\r\nx-big: aaaaaaaaaa\r\n\r\n";
        for cut in 1..full.len() {
            assert!(
                matches!(parse_request(&full[..cut], 1024), Parsed::Partial),
                "{cut}"
            );
        }
        assert!(matches!(parse_request(full, 1024), Parsed::Head(_)));
        // Too large, complete or not.
        assert!(matches!(
            parse_request(full, 20),
            Parsed::Handoff("head too large")
        ));
        assert!(matches!(
            parse_request(&full[..30], 20),
            Parsed::Handoff("head too large")
        ));
    }

    #[tokio::test]
    async fn a_buffer_waiting_for_the_next_message_holds_no_memory() {
        let (mut client, mut server) = tokio::io::duplex(64 * 1024);
        let mut buf = Buffered::default();
        // A large message leaves a large buffer behind.
        client.write_all(&[b'x'; 10_000]).await.unwrap();
        buf.fill(&mut server).await.unwrap();
        buf.consume(buf.pending().len());
        assert!(buf.buf.capacity() >= 10_000);
        // Waiting for the next one, it is gone.
        let wait =
            tokio::time::timeout(Duration::from_millis(20), buf.fill_after_idle(&mut server)).await;
        assert!(wait.is_err());
        assert_eq!(buf.buf.capacity(), 0);
        client.write_all(b"GET / HTTP/1.1\r\n").await.unwrap();
        assert_eq!(buf.fill_after_idle(&mut server).await.unwrap(), 16);
        assert_eq!(buf.pending(), b"GET / HTTP/1.1\r\n");
        // With bytes pending, it reads after them like fill.
        client.write_all(b"host: a\r\n").await.unwrap();
        buf.fill_after_idle(&mut server).await.unwrap();
        assert_eq!(buf.pending(), b"GET / HTTP/1.1\r\nhost: a\r\n");
    }

    #[test]
    fn pipelined_bytes_after_a_head_and_its_body_stay_for_the_next_request() {
        let mut buf = Buffered::default();
        buf.buf.extend_from_slice(b"POST / HTTP/1.1\r\nhost: a\r\ncontent-length: 2\r\n\r\nhiGET /2 HTTP/1.1\r\nhost: a\r\n\r\n");
        let h = head(buf.pending());
        buf.consume(h.len);
        let mut body = h.framing;
        let n = body.step(buf.pending(), "client").unwrap();
        assert_eq!(&buf.pending()[..n], b"hi");
        assert!(body.is_done());
        buf.consume(n);
        let next = head(buf.pending());
        assert_eq!(&buf.pending()[next.path.clone()], b"/2");
        assert_eq!(next.len, buf.pending().len());
    }

    #[test]
    fn chunked_bodies_with_extensions_and_trailers_end_where_they_end() {
        let body = b"4;name=value\r\nWiki\r\n5 \r\npedia\r\nE\r\n in\r\n\r\nchunks.\r\n0;last\r\nx-trailer: 1\r\nx-other: 2\r\n\r\n";
        let mut next = body.to_vec();
        next.extend_from_slice(b"GET / HTTP/1.1\r\n");
        // Whole, and byte by byte.
        let mut c = Chunked::new();
        assert_eq!(c.scan(&next), Ok(body.len()));
        assert!(c.is_done());
        let mut c = Chunked::new();
        for (i, b) in body.iter().enumerate() {
            assert!(!c.is_done(), "{i}");
            assert_eq!(c.scan(std::slice::from_ref(b)), Ok(1));
        }
        assert!(c.is_done());
        // Without trailers.
        let mut c = Chunked::new();
        assert_eq!(c.scan(b"0\r\n\r\nrest"), Ok(5));
        assert!(c.is_done());
    }

    #[test]
    fn truncated_and_malformed_chunked_bodies_are_not_complete_or_errors() {
        let mut c = Chunked::new();
        assert_eq!(c.scan(b"a\r\n0123"), Ok(7));
        assert!(!c.is_done(), "truncated");
        for bad in [
            &b"x\r\n"[..],
            b"\r\n",
            b"4\r\nabcdX",
            b"4\nabcd",
            b"11111111111111111\r\n",
            b"0\r\nx\n",
            b"3 x\r\nabc\r\n",
            b"3 \t;x\n",
            b"0\r\nGET /admin HTTP/1.1\r\n\r\n",
            b"0\r\n x: 1\r\n\r\n",
            b"0\r\nx : 1\r\n\r\n",
            b"0\r\nx: \x01\r\n\r\n",
        ] {
            let mut c = Chunked::new();
            assert!(c.scan(bad).is_err(), "{:?}", String::from_utf8_lossy(bad));
        }
    }

    #[test]
    fn content_length_bodies_take_exactly_their_length() {
        let mut f = Framing::Length(5);
        assert_eq!(f.step(b"abc", "client").unwrap(), 3);
        assert!(!f.is_done());
        assert_eq!(f.step(b"defGET", "client").unwrap(), 2);
        assert!(f.is_done());
        assert_eq!(f.step(b"GET", "client").unwrap(), 0);
    }

    fn response(s: &str) -> (Vec<u8>, ResponseHead) {
        let buf = s.as_bytes().to_vec();
        let r = parse_response(&buf, 64 * 1024).unwrap().unwrap();
        (buf, r)
    }

    #[test]
    fn a_response_with_codings_before_chunked_is_chunked_and_keeps_its_codings() {
        let (buf, r) = response("HTTP/1.1 200 OK\r\ntransfer-encoding: gzip, chunked\r\n\r\n");
        assert_eq!(r.framing(false), Framing::Chunked(Chunked::new()));
        assert!(r.reusable(r.framing(false)));
        assert_eq!(kept(&buf, &r.fields), ["transfer-encoding: gzip, chunked"]);
        // Not ending in chunked: the body ends with the connection, the coding stays.
        let (buf, r) = response("HTTP/1.1 200 OK\r\ntransfer-encoding: gzip\r\n\r\n");
        assert_eq!(r.framing(false), Framing::UntilEof);
        assert!(!r.reusable(r.framing(false)));
        assert_eq!(kept(&buf, &r.fields), ["transfer-encoding: gzip"]);
    }

    #[test]
    fn response_framing_follows_the_status_the_method_and_the_fields() {
        let (_, r) = response("HTTP/1.1 200 OK\r\ncontent-length: 7\r\n\r\n");
        assert_eq!(r.framing(false), Framing::Length(7));
        assert_eq!(r.framing(true), Framing::Empty, "HEAD");
        for s in [
            "204 No Content",
            "304 Not Modified",
            "100 Continue",
            "103 Early Hints",
        ] {
            let (_, r) = response(&format!("HTTP/1.1 {s}\r\ncontent-length: 7\r\n\r\n"));
            assert_eq!(r.framing(false), Framing::Empty, "{s}");
        }
        let (_, r) = response("HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n");
        assert_eq!(r.framing(false), Framing::Chunked(Chunked::new()));
        assert!(r.reusable(r.framing(false)));
        let (_, r) = response("HTTP/1.1 200 OK\r\n\r\n");
        assert_eq!(r.framing(false), Framing::UntilEof);
        assert!(!r.reusable(Framing::UntilEof));
        let (_, r) = response("HTTP/1.0 200 OK\r\ncontent-length: 1\r\n\r\n");
        assert!(!r.reusable(r.framing(false)), "HTTP/1.0 without keep-alive");
        let (_, r) = response("HTTP/1.1 200 OK\r\nconnection: close\r\ncontent-length: 1\r\n\r\n");
        assert!(!r.reusable(r.framing(false)));
    }

    #[test]
    fn responses_peers_could_frame_differently_are_refused() {
        for bad in [
            "HTTP/1.1 099 Low\r\n\r\n",
            "HTTP/1.0 200 OK\r\ntransfer-encoding: chunked\r\n\r\n",
            "HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\ntransfer-encoding: chunked\r\n\r\n",
            "HTTP/1.1 200 OK\r\ncontent-length: 18446744073709551615\r\n\r\n",
        ] {
            assert!(parse_response(bad.as_bytes(), 1024).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn chunk_extensions_and_trailers_are_bounded_as_in_hyper() {
        let mut ext = b"1;".to_vec();
        ext.resize(2 + CHUNK_EXT_LIMIT as usize - 1, b'e');
        ext.extend_from_slice(b"\r\nx\r\n0\r\n\r\n");
        assert_eq!(Chunked::new().scan(&ext), Ok(ext.len()));
        ext.insert(2, b'e');
        assert_eq!(Chunked::new().scan(&ext), Err("chunk extensions too long"));
        let trailers = |n: usize| {
            let mut b = b"0\r\n".to_vec();
            for i in 0..n {
                b.extend_from_slice(format!("x-{i}: v\r\n").as_bytes());
            }
            b.extend_from_slice(b"\r\n");
            b
        };
        let ok = trailers(MAX_TRAILERS);
        assert_eq!(Chunked::new().scan(&ok), Ok(ok.len()));
        assert!(Chunked::new().scan(&trailers(MAX_TRAILERS + 1)).is_err());
    }

    #[test]
    fn a_response_head_is_rewritten_without_hop_by_hop_fields() {
        let (buf, r) = response(
            "HTTP/1.0 200 Fine\r\nConnection: close, x-hop\r\nx-hop: 1\r\nkeep-alive: 1\r\ncontent-length: 2\r\nx-end: 2\r\n\r\nhi",
        );
        let mut out = Vec::new();
        r.write(&mut out, &buf, true);
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "HTTP/1.1 200 Fine\r\ncontent-length: 2\r\nx-end: 2\r\nconnection: close\r\n\r\n"
        );
        assert!(
            parse_response(
                b"HTTP/1.1 200 OK\r\ncontent-length: 1\r\ntransfer-encoding: chunked\r\n\r\n",
                1024
            )
            .is_err()
        );
        assert!(
            parse_response(b"HTTP/1.1 200 OK\r\nx: aaaaaaaaaaaaaaaa", 16).is_err(),
            "too large"
        );
        assert!(
            parse_response(b"HTTP/1.1 200 OK\r\nx: a", 1024)
                .unwrap()
                .is_none(),
            "partial"
        );
    }
}
