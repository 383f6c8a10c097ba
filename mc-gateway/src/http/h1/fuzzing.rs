//! The lean path's framing, driven over a whole byte stream without sockets: what the fuzz
//! targets `h1_request` and `h1_response` (fuzz/) and the differential tests run. Only built
//! for tests and with the `fuzzing` feature, which re-exports it as `mc_gateway::fuzzing`
//! (not a stable API).
//!
//! [`requests`] follows a client connection as [`super::serve`] does: head after head, each
//! body by its framing, until the stream ends, a request is refused or handed to hyper, or a
//! request asks to close. [`responses`] follows a target connection as the exchange does:
//! interim responses, then the final one and its body, for each request in turn.

// Exported (`mc_gateway::fuzzing`) only with the `fuzzing` feature; in tests it is crate-local.
#![cfg_attr(not(feature = "fuzzing"), allow(unreachable_pub))]

use std::ops::Range;

use super::{Framing, Parsed, parse_request, parse_response, write_request_head_with};
use crate::http::headers::Added;

/// The `Host` value [`requests`] writes into the rewritten heads.
pub const TARGET_HOST: &[u8] = b"web.shop.svc.cluster.local:8080";
/// The `l5d-client-id` value [`requests`] writes.
pub const CLIENT_ID: &str = "client.ns.serviceaccount.identity.linkerd.cluster.local";
/// The `Forwarded` element [`requests`] appends.
pub const FORWARDED: &str = "by=\"gw\";for=\"client\"";

/// How a body is framed, as the lean path saw it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BodyKind {
    /// No body.
    Empty,
    /// `Content-Length`.
    Length(u64),
    /// Chunked.
    Chunked,
    /// Until the sender closes.
    UntilEof,
}

impl From<Framing> for BodyKind {
    fn from(f: Framing) -> Self {
        match f {
            Framing::Empty => Self::Empty,
            Framing::Length(n) => Self::Length(n),
            Framing::Chunked(_) => Self::Chunked,
            Framing::UntilEof => Self::UntilEof,
        }
    }
}

/// What the lean path made of one message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// A message it forwards.
    Message {
        /// The method (request) or status code (response, as digits).
        start: Vec<u8>,
        /// The request target (empty for a response).
        path: Vec<u8>,
        /// The message's extent in the stream, head included.
        span: Range<usize>,
        /// The body's extent in the stream (as it arrived: chunked framing included).
        body: Range<usize>,
        /// How the body is framed.
        kind: BodyKind,
        /// Whether the whole body arrived (false: the stream ended inside it).
        complete: bool,
        /// What the lean path sends on: the rewritten head and the body as far as it arrived.
        forwarded: Vec<u8>,
    },
    /// A 1xx response relayed before the final one (responses only).
    Interim {
        /// The status code.
        status: u16,
        /// What the lean path relays to the client.
        forwarded: Vec<u8>,
    },
    /// The stream ended inside a head (or before one).
    Partial,
    /// A request the hyper path serves, from here on (requests only).
    Handoff(&'static str),
    /// Refused: a request answered 400, a response turned into a gateway error.
    Reject(&'static str),
    /// The body is malformed: the connection ends.
    BodyError(&'static str),
}

/// Scans the body framed by `framing` at the start of `data`; `split` cuts the scan in two
/// (as two reads would), to show that where reads end does not matter.
fn body(framing: Framing, data: &[u8], split: usize) -> Result<(usize, bool), &'static str> {
    let mut f = framing;
    let cut = split.min(data.len());
    let mut n = f
        .step(data.get(..cut).unwrap_or_default(), "fuzz")
        .map_err(why)?;
    if n == cut && !f.is_done() {
        n += f
            .step(data.get(cut..).unwrap_or_default(), "fuzz")
            .map_err(why)?;
    }
    Ok((n, f.is_done()))
}

fn why(e: crate::Error) -> &'static str {
    match e {
        crate::Error::Http1 { why, .. } => why,
        _ => "other error",
    }
}

/// Follows a client's request stream `stream` with heads of at most `max_head` bytes; each
/// body is scanned in two reads cut `split` bytes into it.
pub fn requests(stream: &[u8], max_head: usize, split: usize) -> Vec<Event> {
    let mut events = Vec::new();
    let mut at = 0;
    while at < stream.len() {
        let buf = stream.get(at..).unwrap_or_default();
        let head = match parse_request(buf, max_head) {
            Parsed::Head(h) => h,
            Parsed::Partial => {
                events.push(Event::Partial);
                break;
            }
            Parsed::Handoff(why) => {
                events.push(Event::Handoff(why));
                break;
            }
            Parsed::Reject(why) => {
                events.push(Event::Reject(why));
                break;
            }
        };
        let rest = buf.get(head.len..).unwrap_or_default();
        let (n, complete) = match body(head.framing, rest, split) {
            Ok(ok) => ok,
            Err(why) => {
                events.push(Event::BodyError(why));
                break;
            }
        };
        let mut forwarded = Vec::new();
        write_request_head_with(
            &mut forwarded,
            buf,
            &head,
            TARGET_HOST,
            &Added::fixed(CLIENT_ID, FORWARDED),
        );
        forwarded.extend_from_slice(rest.get(..n).unwrap_or_default());
        let end = at + head.len + n;
        events.push(Event::Message {
            start: buf.get(head.method.clone()).unwrap_or_default().to_vec(),
            path: buf.get(head.path.clone()).unwrap_or_default().to_vec(),
            span: at..end,
            body: at + head.len..end,
            kind: head.framing.into(),
            complete,
            forwarded,
        });
        if !complete || head.fields.close {
            break;
        }
        at = end;
    }
    events
}

/// Follows a target's response stream `stream` to requests whose methods are HEAD where
/// `head_requests` says so (one entry per request; the stream is read while requests are
/// left), with heads of at most `max_head` bytes; bodies are scanned as by [`requests`].
pub fn responses(
    stream: &[u8],
    head_requests: &[bool],
    max_head: usize,
    split: usize,
) -> Vec<Event> {
    let mut events = Vec::new();
    let mut at = 0;
    let mut requests = head_requests.iter();
    let Some(mut is_head) = requests.next().copied() else {
        return events;
    };
    while at < stream.len() {
        let buf = stream.get(at..).unwrap_or_default();
        let resp = match parse_response(buf, max_head) {
            Ok(Some(r)) => r,
            Ok(None) => {
                events.push(Event::Partial);
                break;
            }
            Err(e) => {
                events.push(Event::Reject(why(e)));
                break;
            }
        };
        if resp.status < 200 && resp.status != 101 {
            let mut forwarded = Vec::new();
            resp.write(&mut forwarded, buf, false);
            events.push(Event::Interim {
                status: resp.status,
                forwarded,
            });
            at += resp.len;
            continue;
        }
        if resp.status == 101 {
            events.push(Event::Reject(
                "101 Switching Protocols to a request without Upgrade",
            ));
            break;
        }
        let framing = resp.framing(is_head);
        let rest = buf.get(resp.len..).unwrap_or_default();
        let (n, complete) = match body(framing, rest, split) {
            Ok((n, _)) if framing == Framing::UntilEof => (n, true),
            Ok(ok) => ok,
            Err(why) => {
                events.push(Event::BodyError(why));
                break;
            }
        };
        let mut forwarded = Vec::new();
        resp.write(&mut forwarded, buf, framing == Framing::UntilEof);
        forwarded.extend_from_slice(rest.get(..n).unwrap_or_default());
        let end = at + resp.len + n;
        events.push(Event::Message {
            start: resp.status.to_string().into_bytes(),
            path: Vec::new(),
            span: at..end,
            body: at + resp.len..end,
            kind: framing.into(),
            complete,
            forwarded,
        });
        if !complete || !resp.reusable(framing) {
            break;
        }
        match requests.next() {
            Some(&h) => is_head = h,
            None => break,
        }
        at = end;
    }
    events
}
