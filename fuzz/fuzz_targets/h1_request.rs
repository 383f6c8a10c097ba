//! Fuzzes the lean HTTP/1 path's request framing (mc-gateway/src/http/h1/) over a whole client
//! stream: heads, Content-Length / Transfer-Encoding shapes, chunked bodies with extensions
//! and trailers, pipelined requests. It must never panic, and:
//! - where reads end does not change a verdict (each body is also scanned in two reads);
//! - messages follow each other without gap or overlap, bodies match their framing;
//! - what the gateway forwards (the rewritten head and the body) parses back to the same
//!   request with the same body, so the target frames it as the gateway did;
//! - every chunk-size line and trailer section it accepts, httparse (hyper's parser) accepts
//!   the same way.

#![no_main]

use libfuzzer_sys::fuzz_target;
use mc_gateway::fuzzing::{BodyKind, Event, requests};

fuzz_target!(|data: &[u8]| {
    // Two leading bytes: where the second read of a body starts, and the head limit.
    let [split, limit, stream @ ..] = data else {
        return;
    };
    let max_head = 64 + usize::from(*limit) * 32;
    let events = requests(stream, max_head, usize::from(*split));
    assert_eq!(
        events,
        requests(stream, max_head, usize::MAX),
        "reads changed a verdict"
    );
    let mut at = 0;
    for event in &events {
        let Event::Message {
            span,
            body,
            kind,
            complete,
            forwarded,
            start,
            path,
        } = event
        else {
            assert!(!matches!(event, Event::Interim { .. }));
            continue;
        };
        assert_eq!(span.start, at);
        assert!(span.start < body.start && body.end == span.end && span.end <= stream.len());
        let wire = &stream[body.clone()];
        match (kind, complete) {
            (BodyKind::Empty, _) => assert!(wire.is_empty() && *complete),
            (BodyKind::Length(n), true) => assert_eq!(wire.len() as u64, *n),
            (BodyKind::Length(n), false) => {
                assert!((wire.len() as u64) < *n && span.end == stream.len());
            }
            (BodyKind::Chunked, true) => check_chunked(wire),
            (BodyKind::Chunked, false) => assert_eq!(span.end, stream.len()),
            (BodyKind::UntilEof, _) => panic!("a request framed until the end"),
        }
        // The forwarded request parses back the same.
        match requests(forwarded, 1 << 20, usize::MAX).as_slice() {
            [
                Event::Message {
                    start: s,
                    path: p,
                    kind: k,
                    body: b,
                    complete: c,
                    span: sp,
                    ..
                },
            ] => {
                assert_eq!((s, p, k, c), (start, path, kind, complete));
                assert_eq!(&forwarded[b.clone()], wire);
                assert_eq!(sp.end, forwarded.len());
            }
            // The gateway adds fields (Host, l5d-client-id, Forwarded): past the 100 the lean
            // path parses, httparse with room for them reads the same head and framing.
            other => assert!(
                same_head_beyond_100_fields(&stream[span.start..], forwarded, wire.len()),
                "forwarded {:?} parsed as {other:?}",
                String::from_utf8_lossy(forwarded)
            ),
        }
        at = span.end;
    }
});

/// Whether `forwarded` (a head, then `body` bytes) has more than 100 fields and the same
/// framing fields as the head at the start of `original`.
fn same_head_beyond_100_fields(original: &[u8], forwarded: &[u8], body: usize) -> bool {
    let framing = |buf: &[u8]| {
        let mut headers = [httparse::EMPTY_HEADER; 128];
        let mut req = httparse::Request::new(&mut headers);
        let Ok(httparse::Status::Complete(len)) = req.parse(buf) else {
            return None;
        };
        let fields: Vec<(String, Vec<u8>)> = req
            .headers
            .iter()
            .filter(|h| {
                h.name.eq_ignore_ascii_case("content-length")
                    || h.name.eq_ignore_ascii_case("transfer-encoding")
            })
            .map(|h| (h.name.to_ascii_lowercase(), h.value.to_vec()))
            .collect();
        Some((len, req.headers.len(), fields))
    };
    match (framing(original), framing(forwarded)) {
        (Some((_, _, before)), Some((len, count, after))) => {
            count > 100 && len + body == forwarded.len() && before == after
        }
        _ => false,
    }
}

/// A chunked body the lean path accepted: httparse reads the same chunk sizes, and its
/// trailer section parses as header fields ending where the body ends.
fn check_chunked(mut wire: &[u8]) {
    loop {
        let (used, size) = match httparse::parse_chunk_size(wire) {
            Ok(httparse::Status::Complete(ok)) => ok,
            other => panic!(
                "httparse: {other:?} for {:?}",
                String::from_utf8_lossy(wire)
            ),
        };
        wire = &wire[used..];
        if size == 0 {
            break;
        }
        let size = usize::try_from(size).expect("a chunk that arrived fits in memory");
        assert_eq!(&wire[size..size + 2], b"\r\n");
        wire = &wire[size + 2..];
    }
    let mut headers = [httparse::EMPTY_HEADER; 128];
    match httparse::parse_headers(wire, &mut headers) {
        Ok(httparse::Status::Complete((used, _))) => assert_eq!(used, wire.len()),
        other => panic!("trailers {:?}: {other:?}", String::from_utf8_lossy(wire)),
    }
}
