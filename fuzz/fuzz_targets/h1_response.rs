//! Fuzzes the lean HTTP/1 path's response framing (mc-gateway/src/http/h1/) over a whole
//! target stream: 1xx interim responses, HEAD / 204 / 304 (no body), Content-Length,
//! chunked, until the end, a reused connection's next response. It must never panic, and:
//! - where reads end does not change a verdict;
//! - responses follow each other without gap or overlap, bodies match their framing;
//! - what the gateway relays to the client (the rewritten head and the body) parses back to
//!   the same status with the same body, so the client frames it as the gateway did.

#![no_main]

use libfuzzer_sys::fuzz_target;
use mc_gateway::fuzzing::{BodyKind, Event, responses};

fuzz_target!(|data: &[u8]| {
    // Leading bytes: which of eight requests are HEAD, where the second read of a body
    // starts, and the head limit.
    let [heads, split, limit, stream @ ..] = data else {
        return;
    };
    let head_requests: Vec<bool> = (0..8).map(|i| heads & (1 << i) != 0).collect();
    let max_head = 64 + usize::from(*limit) * 32;
    let events = responses(stream, &head_requests, max_head, usize::from(*split));
    assert_eq!(
        events,
        responses(stream, &head_requests, max_head, usize::MAX),
        "reads changed a verdict"
    );
    let mut at = 0;
    let mut request = 0;
    for event in &events {
        match event {
            Event::Interim { status, forwarded } => {
                assert!((100..200).contains(status) && *status != 101);
                match responses(forwarded, &[false], 1 << 20, usize::MAX).as_slice() {
                    [Event::Interim { status: s, .. }] => assert_eq!(s, status),
                    other => panic!("relayed interim parsed as {other:?}"),
                }
            }
            Event::Message {
                span,
                body,
                kind,
                complete,
                forwarded,
                start,
                ..
            } => {
                let status: u16 = std::str::from_utf8(start).unwrap().parse().unwrap();
                assert!((200..1000).contains(&status), "{status}");
                assert!(span.start >= at && body.end == span.end && span.end <= stream.len());
                let is_head = head_requests[request];
                let wire = &stream[body.clone()];
                match (kind, complete) {
                    (BodyKind::Empty, _) => assert!(wire.is_empty() && *complete),
                    (BodyKind::Length(n), true) => assert_eq!(wire.len() as u64, *n),
                    (BodyKind::Length(n), false) => {
                        assert!((wire.len() as u64) < *n && span.end == stream.len());
                    }
                    (BodyKind::Chunked, _) | (BodyKind::UntilEof, _) => {}
                }
                if is_head || status == 204 || status == 304 {
                    assert_eq!(*kind, BodyKind::Empty);
                }
                match responses(forwarded, &[is_head], 1 << 20, usize::MAX).as_slice() {
                    [
                        Event::Message {
                            start: s,
                            kind: k,
                            body: b,
                            complete: c,
                            span: sp,
                            ..
                        },
                    ] => {
                        assert_eq!((s, k, c), (start, kind, complete));
                        assert_eq!(&forwarded[b.clone()], wire);
                        assert_eq!(sp.end, forwarded.len());
                    }
                    // `connection: close` may take the head past the 100 fields the lean
                    // path parses: httparse with room reads the same head and framing.
                    other => assert!(
                        same_head_beyond_100_fields(&stream[span.start..], forwarded, wire.len()),
                        "relayed {:?} parsed as {other:?}",
                        String::from_utf8_lossy(forwarded)
                    ),
                }
                at = span.end;
                request += 1;
            }
            Event::Handoff(_) => panic!("responses are never handed off"),
            Event::Partial | Event::Reject(_) | Event::BodyError(_) => {}
        }
    }
});

/// Whether `relayed` (a head, then `body` bytes) has more than 100 fields and the same
/// framing fields as the head at the start of `original`.
fn same_head_beyond_100_fields(original: &[u8], relayed: &[u8], body: usize) -> bool {
    let framing = |buf: &[u8]| {
        let mut headers = [httparse::EMPTY_HEADER; 128];
        let mut resp = httparse::Response::new(&mut headers);
        let Ok(httparse::Status::Complete(len)) = resp.parse(buf) else {
            return None;
        };
        let fields: Vec<(String, Vec<u8>)> = resp
            .headers
            .iter()
            .filter(|h| {
                h.name.eq_ignore_ascii_case("content-length")
                    || h.name.eq_ignore_ascii_case("transfer-encoding")
            })
            .map(|h| (h.name.to_ascii_lowercase(), h.value.to_vec()))
            .collect();
        Some((len, resp.headers.len(), fields))
    };
    match (framing(original), framing(relayed)) {
        (Some((_, _, before)), Some((len, count, after))) => {
            count > 100 && len + body == relayed.len() && before == after
        }
        _ => false,
    }
}
