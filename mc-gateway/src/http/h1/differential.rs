//! Differential tests: the same bytes through the lean path's framing ([`super::fuzzing`])
//! and through hyper 1.x itself (a real hyper server or client on an in-memory stream), and
//! their verdicts compared.
//!
//! The rule: where the lean path forwards a message, hyper accepts it too, with the same
//! method, target and body; where it refuses one, so does hyper, unless the case documents
//! why the lean path is stricter on purpose. A request the lean path hands to hyper is hyper's
//! to judge (it serves the rest of the connection), so it agrees by construction. The lean
//! path accepting what hyper refuses, on a framing question, is a smuggling bug.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::convert::Infallible;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Empty, Full};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::fuzzing::{self, BodyKind, Event};

/// What hyper made of one request of a stream.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Hyper {
    /// Served: method, target, decoded body length.
    Ok(String, String, usize),
    /// The service could not read the body (malformed or cut short).
    BodyError,
    /// hyper answered this status itself (400, 413, 414, …).
    Refused(u16),
}

/// Runs a hyper HTTP/1 server over `stream` (then end of stream) and lists its answers.
async fn hyper_server(stream: &[u8]) -> Vec<Hyper> {
    let (mut client, server) = tokio::io::duplex(1 << 20);
    let service = service_fn(|req: Request<Incoming>| async move {
        let method = req.method().to_string();
        let uri = req.uri().to_string();
        let resp = match req.into_body().collect().await {
            Ok(body) => {
                // In a field: a response to HEAD has no body.
                let seen = format!("{method} {uri} {}", body.to_bytes().len());
                let mut r = Response::new(Full::new(Bytes::new()));
                r.headers_mut().insert("x-seen", seen.parse().unwrap());
                r
            }
            Err(_) => {
                let mut r = Response::new(Full::new(Bytes::from_static(b"body-error")));
                *r.status_mut() = StatusCode::from_u16(599).unwrap();
                r
            }
        };
        Ok::<_, Infallible>(resp)
    });
    let conn = tokio::spawn(async move {
        let _ = hyper::server::conn::http1::Builder::new()
            .half_close(true)
            .serve_connection(TokioIo::new(server), service)
            .await;
    });
    client.write_all(stream).await.unwrap();
    client.shutdown().await.unwrap();
    let mut out = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), client.read_to_end(&mut out))
        .await
        .expect("hyper server did not finish")
        .unwrap();
    conn.abort();
    let mut answers = Vec::new();
    let mut at = 0;
    while at < out.len() {
        let mut headers = [httparse::EMPTY_HEADER; 16];
        let mut resp = httparse::Response::new(&mut headers);
        let httparse::Status::Complete(len) = resp.parse(&out[at..]).unwrap() else {
            panic!(
                "partial response from hyper: {:?}",
                String::from_utf8_lossy(&out)
            );
        };
        let code = resp.code.unwrap();
        let seen = resp
            .headers
            .iter()
            .find(|h| h.name == "x-seen")
            .map(|h| String::from_utf8_lossy(h.value).into_owned());
        let body_len: usize = resp
            .headers
            .iter()
            .find(|h| h.name.eq_ignore_ascii_case("content-length"))
            .map(|h| std::str::from_utf8(h.value).unwrap().parse().unwrap())
            .unwrap_or(0);
        assert!(at + len + body_len <= out.len(), "cut response from hyper");
        at += len + body_len;
        answers.push(match code {
            200 => {
                let seen = seen.unwrap();
                let mut parts = seen.rsplitn(3, ' ');
                let n = parts.next().unwrap().parse().unwrap();
                let uri = parts.next().unwrap().to_owned();
                let method = parts.next().unwrap().to_owned();
                Hyper::Ok(method, uri, n)
            }
            599 => Hyper::BodyError,
            other => Hyper::Refused(other),
        });
    }
    answers
}

/// Decodes the length of a chunked body the lean path accepted.
fn chunked_len(mut body: &[u8]) -> usize {
    let mut total = 0;
    loop {
        let line_end = body.windows(2).position(|w| w == b"\r\n").unwrap();
        let digits: Vec<u8> = body[..line_end]
            .iter()
            .copied()
            .take_while(u8::is_ascii_hexdigit)
            .collect();
        let size = usize::from_str_radix(std::str::from_utf8(&digits).unwrap(), 16).unwrap();
        body = &body[line_end + 2..];
        if size == 0 {
            return total;
        }
        total += size;
        body = &body[size + 2..];
    }
}

/// The decoded length of the body of `event` (a complete message of `stream`).
fn body_len(stream: &[u8], body: &std::ops::Range<usize>, kind: BodyKind) -> usize {
    match kind {
        BodyKind::Chunked => chunked_len(&stream[body.clone()]),
        _ => body.len(),
    }
}

/// Whether a verdict of the lean path is a refusal.
fn refuses(e: &Event) -> bool {
    matches!(e, Event::Reject(_) | Event::BodyError(_))
}

/// Compares the lean path and hyper on a request stream. `stricter`: why the lean path
/// refuses something hyper accepts in this case (`None`: they must agree).
async fn check_requests(name: &str, stream: &[u8], stricter: Option<&str>) {
    let lean = fuzzing::requests(stream, 64 * 1024, usize::MAX);
    let hyper = hyper_server(stream).await;
    let mut answers = hyper.iter();
    let mut differs = None;
    for event in &lean {
        let answer = answers.next();
        match event {
            Event::Message {
                start,
                path,
                body,
                kind,
                complete: true,
                ..
            } => {
                let want = Hyper::Ok(
                    String::from_utf8(start.clone()).unwrap(),
                    String::from_utf8(path.clone()).unwrap(),
                    body_len(stream, body, *kind),
                );
                assert_eq!(
                    answer,
                    Some(&want),
                    "{name}: the lean path forwards {event:?}, hyper: {hyper:?}"
                );
            }
            Event::Message {
                complete: false, ..
            } => assert!(
                matches!(answer, None | Some(Hyper::BodyError)),
                "{name}: the body is cut short, hyper: {hyper:?}"
            ),
            Event::Partial => assert!(
                matches!(answer, None | Some(Hyper::Refused(_))),
                "{name}: the head is cut short, hyper: {hyper:?}"
            ),
            // hyper serves the rest of the connection: agreement by construction.
            Event::Handoff(_) => return assert!(stricter.is_none(), "{name}: handed off"),
            Event::Reject(_) | Event::BodyError(_) => {
                if !matches!(answer, None | Some(Hyper::Refused(_) | Hyper::BodyError)) {
                    differs = Some(format!("lean: {event:?}, hyper: {answer:?}"));
                }
            }
            Event::Interim { .. } => unreachable!(),
        }
    }
    if !lean.last().is_some_and(refuses) {
        assert!(
            answers.next().is_none(),
            "{name}: hyper served more: {hyper:?}, lean: {lean:?}"
        );
    }
    match (stricter, differs) {
        (None, None) => {}
        (Some(why), Some(_)) => {
            // Documented: the lean path refuses, hyper accepts.
            assert!(!why.is_empty());
        }
        (None, Some(d)) => panic!("{name}: the lean path refuses what hyper accepts: {d}"),
        (Some(why), None) => panic!("{name}: documented as stricter ({why}) but they agree"),
    }
}

/// One request case: name, bytes, and why the lean path is stricter (if it is).
type Case = (&'static str, &'static [u8], Option<&'static str>);

const REQUESTS: &[Case] = &[
    ("simple GET", b"GET /a HTTP/1.1\r\nhost: a\r\n\r\n", None),
    (
        "content-length body",
        b"POST /p HTTP/1.1\r\nhost: a\r\ncontent-length: 5\r\n\r\nhello",
        None,
    ),
    (
        "content-length with leading zeros and spaces",
        b"POST /p HTTP/1.1\r\nhost: a\r\ncontent-length:  005 \r\n\r\nhello",
        None,
    ),
    (
        "duplicate content-length, same value (handed to hyper)",
        b"POST /p HTTP/1.1\r\nhost: a\r\ncontent-length: 3\r\ncontent-length: 3\r\n\r\nabc",
        None,
    ),
    (
        "duplicate content-length, different values (handed to hyper)",
        b"POST /p HTTP/1.1\r\nhost: a\r\ncontent-length: 3\r\ncontent-length: 4\r\n\r\nabcd",
        None,
    ),
    (
        "content-length list",
        b"POST /p HTTP/1.1\r\nhost: a\r\ncontent-length: 3, 3\r\n\r\nabc",
        None,
    ),
    (
        "signed content-length",
        b"POST /p HTTP/1.1\r\nhost: a\r\ncontent-length: +3\r\n\r\nabc",
        None,
    ),
    (
        "content-length overflow",
        b"POST /p HTTP/1.1\r\nhost: a\r\ncontent-length: 18446744073709551616\r\n\r\n",
        None,
    ),
    (
        "content-length at u64::MAX",
        b"POST /p HTTP/1.1\r\nhost: a\r\ncontent-length: 18446744073709551615\r\n\r\n",
        None,
    ),
    (
        "content-length and transfer-encoding",
        b"POST /p HTTP/1.1\r\nhost: a\r\ncontent-length: 3\r\ntransfer-encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n",
        Some(
            "RFC 9112 §6.3 lets a server reject it; hyper frames by chunked and closes after. \
             The lean path answers 400: a target might frame by content-length",
        ),
    ),
    (
        "transfer-encoding then content-length",
        b"POST /p HTTP/1.1\r\nhost: a\r\ntransfer-encoding: chunked\r\ncontent-length: 3\r\n\r\n3\r\nabc\r\n0\r\n\r\n",
        Some("as above, in the other order"),
    ),
    (
        "transfer-encoding: chunked, identity (handed to hyper)",
        b"POST /p HTTP/1.1\r\nhost: a\r\ntransfer-encoding: chunked, identity\r\n\r\n3\r\nabc\r\n0\r\n\r\n",
        None,
    ),
    (
        "transfer-encoding: identity (handed to hyper)",
        b"POST /p HTTP/1.1\r\nhost: a\r\ntransfer-encoding: identity\r\n\r\nabc",
        None,
    ),
    (
        "two transfer-encoding lines (handed to hyper)",
        b"POST /p HTTP/1.1\r\nhost: a\r\ntransfer-encoding: chunked\r\ntransfer-encoding: chunked\r\n\r\n0\r\n\r\n",
        None,
    ),
    (
        "transfer-encoding with odd case and spaces",
        b"POST /p HTTP/1.1\r\nhost: a\r\ntransfer-encoding:  ChUnKeD \r\n\r\n3\r\nabc\r\n0\r\n\r\n",
        None,
    ),
    (
        "space before the colon (handed to hyper)",
        b"POST /p HTTP/1.1\r\nhost: a\r\ntransfer-encoding : chunked\r\n\r\n0\r\n\r\n",
        None,
    ),
    (
        "obs-fold (handed to hyper)",
        b"POST /p HTTP/1.1\r\nhost: a\r\ntransfer-encoding:\r\n chunked\r\n\r\n0\r\n\r\n",
        None,
    ),
    (
        "bare LF line ends in the head",
        b"POST /p HTTP/1.1\nhost: a\ncontent-length: 2\n\nhi",
        None,
    ),
    (
        "NUL in a field value (handed to hyper)",
        b"GET / HTTP/1.1\r\nhost: a\r\nx: a\0b\r\n\r\n",
        None,
    ),
    (
        "chunked with extensions and trailers",
        b"POST /c HTTP/1.1\r\nhost: a\r\ntransfer-encoding: chunked\r\n\r\n4;name=value\r\nWiki\r\n5 ;x=\"y z\"\r\npedia\r\n0;last\r\nx-trailer: 1\r\nx-other:\t2 \r\n\r\n",
        None,
    ),
    (
        "chunk size then whitespace then garbage",
        b"POST /c HTTP/1.1\r\nhost: a\r\ntransfer-encoding: chunked\r\n\r\n3 x\r\nabc\r\n0\r\n\r\n",
        None,
    ),
    (
        "chunk size with 0x",
        b"POST /c HTTP/1.1\r\nhost: a\r\ntransfer-encoding: chunked\r\n\r\n0x3\r\nabc\r\n0\r\n\r\n",
        None,
    ),
    (
        "chunk size overflow",
        b"POST /c HTTP/1.1\r\nhost: a\r\ntransfer-encoding: chunked\r\n\r\n10000000000000003\r\nabc\r\n0\r\n\r\n",
        None,
    ),
    (
        "chunk size of 17 digits with a leading zero",
        b"POST /c HTTP/1.1\r\nhost: a\r\ntransfer-encoding: chunked\r\n\r\n00000000000000003\r\nabc\r\n0\r\n\r\n",
        Some(
            "the lean path takes at most 16 hex digits; hyper takes leading zeros \
             without limit, and a target reading a fixed width could misread the size",
        ),
    ),
    (
        "huge chunk, cut short",
        b"POST /c HTTP/1.1\r\nhost: a\r\ntransfer-encoding: chunked\r\n\r\nffffffffffffffff\r\nabc",
        None,
    ),
    (
        "bare LF after the chunk size",
        b"POST /c HTTP/1.1\r\nhost: a\r\ntransfer-encoding: chunked\r\n\r\n3\nabc\r\n0\r\n\r\n",
        None,
    ),
    (
        "bare LF in a chunk extension",
        b"POST /c HTTP/1.1\r\nhost: a\r\ntransfer-encoding: chunked\r\n\r\n3;x\nabc\r\n0\r\n\r\n",
        None,
    ),
    (
        "bare LF after chunk data",
        b"POST /c HTTP/1.1\r\nhost: a\r\ntransfer-encoding: chunked\r\n\r\n3\r\nabc\n0\r\n\r\n",
        None,
    ),
    (
        "chunk data longer than its size",
        b"POST /c HTTP/1.1\r\nhost: a\r\ntransfer-encoding: chunked\r\n\r\n3\r\nabcd\r\n0\r\n\r\n",
        None,
    ),
    (
        "a request line as a trailer",
        b"POST /c HTTP/1.1\r\nhost: a\r\ntransfer-encoding: chunked\r\n\r\n0\r\nGET /admin HTTP/1.1\r\n\r\n",
        None,
    ),
    (
        "bare LF between trailers",
        b"POST /c HTTP/1.1\r\nhost: a\r\ntransfer-encoding: chunked\r\n\r\n0\r\nx: 1\ny: 2\r\n\r\n",
        None,
    ),
    (
        "bare LF ending the trailers",
        b"POST /c HTTP/1.1\r\nhost: a\r\ntransfer-encoding: chunked\r\n\r\n0\r\nx: 1\r\n\n",
        None,
    ),
    (
        "pipelined requests",
        b"GET /1 HTTP/1.1\r\nhost: a\r\n\r\nPOST /2 HTTP/1.1\r\nhost: a\r\ncontent-length: 3\r\n\r\nabcPOST /3 HTTP/1.1\r\nhost: a\r\ntransfer-encoding: chunked\r\n\r\n2\r\nhi\r\n0\r\n\r\nHEAD /4 HTTP/1.1\r\nhost: a\r\n\r\n",
        None,
    ),
    (
        "a smuggled request inside a body",
        b"POST /1 HTTP/1.1\r\nhost: a\r\ncontent-length: 33\r\n\r\nGET /admin HTTP/1.1\r\nhost: a\r\n\r\nGET /2 HTTP/1.1\r\nhost: a\r\n\r\n",
        None,
    ),
    (
        "nothing after connection: close",
        b"GET /1 HTTP/1.1\r\nhost: a\r\nconnection: close\r\n\r\nGET /2 HTTP/1.1\r\nhost: a\r\n\r\n",
        None,
    ),
    (
        "HEAD and GET with bodies",
        b"HEAD /1 HTTP/1.1\r\nhost: a\r\ncontent-length: 2\r\n\r\nhiGET /2 HTTP/1.1\r\nhost: a\r\ncontent-length: 1\r\n\r\nx",
        None,
    ),
    (
        "head cut short",
        b"GET /1 HTTP/1.1\r\nhost: a\r\n",
        None,
    ),
    (
        "body cut short",
        b"POST /1 HTTP/1.1\r\nhost: a\r\ncontent-length: 10\r\n\r\nabc",
        None,
    ),
    (
        "chunked body cut short",
        b"POST /1 HTTP/1.1\r\nhost: a\r\ntransfer-encoding: chunked\r\n\r\n3\r\nabc\r\n",
        None,
    ),
    (
        "connection lists content-length",
        b"POST /1 HTTP/1.1\r\nhost: a\r\nconnection: content-length\r\ncontent-length: 30\r\n\r\nGET /admin HTTP/1.1\r\nhost: a\r\n\r\n",
        None,
    ),
    (
        "connection lists transfer-encoding",
        b"POST /1 HTTP/1.1\r\nhost: a\r\nconnection: transfer-encoding\r\ntransfer-encoding: chunked\r\n\r\n1e\r\nGET /admin HTTP/1.1\r\nhost: a\r\n\r\n\r\n0\r\n\r\n",
        None,
    ),
    (
        "unusual bytes in the target",
        b"GET /a{b}|c\"d<e>^`\\ HTTP/1.1\r\nhost: a\r\n\r\n",
        None,
    ),
    (
        "obs-text in the target",
        b"GET /\xff\x80 HTTP/1.1\r\nhost: a\r\n\r\n",
        None,
    ),
    (
        "a fragment in the target",
        b"GET /a#frag HTTP/1.1\r\nhost: a\r\n\r\n",
        None,
    ),
    (
        "expect: 100-continue (handed to hyper)",
        b"POST /1 HTTP/1.1\r\nhost: a\r\nexpect: 100-continue\r\ncontent-length: 1\r\n\r\nx",
        None,
    ),
    (
        "HTTP/1.0 with transfer-encoding (handed to hyper)",
        b"POST /1 HTTP/1.0\r\nhost: a\r\ntransfer-encoding: chunked\r\n\r\n0\r\n\r\n",
        None,
    ),
];

#[tokio::test]
async fn the_lean_path_frames_requests_as_hyper_does_or_stricter() {
    for (name, stream, stricter) in REQUESTS {
        check_requests(name, stream, *stricter).await;
    }
}

#[tokio::test]
async fn long_chunk_extensions_and_many_trailers_hit_hyper_s_limits() {
    let head = b"POST /c HTTP/1.1\r\nhost: a\r\ntransfer-encoding: chunked\r\n\r\n".to_vec();
    for ext in [16 * 1024 - 2, 16 * 1024 - 1, 16 * 1024] {
        let mut s = head.clone();
        s.extend_from_slice(b"1;");
        s.resize(s.len() + ext, b'e');
        s.extend_from_slice(b"\r\nx\r\n0\r\n\r\n");
        check_requests(&format!("{ext} extension bytes"), &s, None).await;
    }
    for n in [99, 100, 101] {
        let mut s = head.clone();
        s.extend_from_slice(b"0\r\n");
        for i in 0..n {
            s.extend_from_slice(format!("x-{i}: v\r\n").as_bytes());
        }
        s.extend_from_slice(b"\r\n");
        check_requests(&format!("{n} trailers"), &s, None).await;
    }
    for size in [
        16 * 1024 - 40,
        16 * 1024 - 7,
        16 * 1024 - 6,
        16 * 1024 - 5,
        16 * 1024,
    ] {
        let mut s = head.clone();
        s.extend_from_slice(b"0\r\nx: ");
        s.resize(s.len() + size, b'v');
        s.extend_from_slice(b"\r\n\r\n");
        check_requests(&format!("a trailer value of {size} bytes"), &s, None).await;
    }
}

/// What a hyper client made of a response.
#[derive(Debug, Clone, PartialEq, Eq)]
enum HyperResponse {
    /// Status and body.
    Ok(u16, Vec<u8>),
    /// The response or its body failed.
    Error,
}

/// Sends one request (HEAD when `head`) through a hyper client to a peer that answers
/// `response` and closes.
async fn hyper_client(response: &'static [u8], head: bool) -> HyperResponse {
    let (client, mut server) = tokio::io::duplex(1 << 20);
    let peer = tokio::spawn(async move {
        let mut got = Vec::new();
        let mut buf = [0u8; 1024];
        while !got.windows(4).any(|w| w == b"\r\n\r\n") {
            let n = server.read(&mut buf).await.unwrap();
            if n == 0 {
                return;
            }
            got.extend_from_slice(&buf[..n]);
        }
        server.write_all(response).await.unwrap();
        server.shutdown().await.unwrap();
        // Keep the read side open until the client is done.
        let _ = server.read_to_end(&mut got).await;
    });
    let run = async {
        let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(client))
            .await
            .unwrap();
        tokio::spawn(conn);
        let req = Request::builder()
            .method(if head { "HEAD" } else { "GET" })
            .uri("/")
            .header("host", "a")
            .body(Empty::<Bytes>::new())
            .unwrap();
        let Ok(resp) = sender.send_request(req).await else {
            return HyperResponse::Error;
        };
        let status = resp.status().as_u16();
        match resp.into_body().collect().await {
            Ok(b) => HyperResponse::Ok(status, b.to_bytes().to_vec()),
            Err(_) => HyperResponse::Error,
        }
    };
    let got = tokio::time::timeout(Duration::from_secs(10), run)
        .await
        .expect("hyper client did not finish");
    peer.abort();
    got
}

/// One response case: name, bytes, whether the request is HEAD, and why the lean path is
/// stricter (if it is).
type ResponseCase = (&'static str, &'static [u8], bool, Option<&'static str>);

const RESPONSES: &[ResponseCase] = &[
    ("content-length", b"HTTP/1.1 200 OK\r\ncontent-length: 5\r\n\r\nhello", false, None),
    (
        "chunked with extensions and trailers",
        b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n5;a=b\r\nhello\r\n1 \r\n!\r\n0\r\nx-t: 1\r\n\r\n",
        false,
        None,
    ),
    ("until the end", b"HTTP/1.1 200 OK\r\n\r\nhello world", false, None),
    (
        "HTTP/1.0 until the end",
        b"HTTP/1.0 200 OK\r\n\r\nhello world",
        false,
        None,
    ),
    (
        "204 with content-length and bytes after",
        b"HTTP/1.1 204 No Content\r\ncontent-length: 5\r\n\r\n",
        false,
        None,
    ),
    (
        "304 with content-length",
        b"HTTP/1.1 304 Not Modified\r\ncontent-length: 5\r\n\r\n",
        false,
        None,
    ),
    (
        "HEAD with content-length",
        b"HTTP/1.1 200 OK\r\ncontent-length: 5\r\n\r\n",
        true,
        None,
    ),
    (
        "HEAD with chunked",
        b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n",
        true,
        None,
    ),
    (
        "100 then 200",
        b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nhi",
        false,
        None,
    ),
    (
        "103 with fields and a content-length, then 200",
        b"HTTP/1.1 103 Early Hints\r\nlink: </s.css>\r\ncontent-length: 9\r\n\r\nHTTP/1.1 102 Processing\r\n\r\nHTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nhi",
        false,
        None,
    ),
    (
        "101 to a request without Upgrade",
        b"HTTP/1.1 101 Switching Protocols\r\nupgrade: x\r\n\r\n",
        false,
        Some("hyper hands the connection over; the lean path never asked for an upgrade"),
    ),
    (
        "content-length and transfer-encoding",
        b"HTTP/1.1 200 OK\r\ncontent-length: 3\r\ntransfer-encoding: chunked\r\n\r\n2\r\nhi\r\n0\r\n\r\n",
        false,
        Some("hyper frames by chunked; the lean path refuses the ambiguous response (502)"),
    ),
    (
        "two transfer-encoding lines",
        b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\ntransfer-encoding: chunked\r\n\r\n2\r\nhi\r\n0\r\n\r\n",
        false,
        Some(
            "hyper frames by the last line, a client may by the combined list \
             (chunked twice): the lean path refuses it",
        ),
    ),
    (
        "transfer-encoding in HTTP/1.0",
        b"HTTP/1.0 200 OK\r\ntransfer-encoding: chunked\r\n\r\n2\r\nhi\r\n0\r\n\r\n",
        false,
        None,
    ),
    (
        "transfer-encoding: gzip",
        b"HTTP/1.1 200 OK\r\ntransfer-encoding: gzip\r\n\r\nabc",
        false,
        None,
    ),
    (
        "transfer-encoding: chunked, gzip",
        b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked, gzip\r\n\r\n2\r\nhi\r\n0\r\n\r\n",
        false,
        None,
    ),
    (
        "transfer-encoding: gzip, chunked",
        b"HTTP/1.1 200 OK\r\ntransfer-encoding: gzip, chunked\r\n\r\n2\r\nhi\r\n0\r\n\r\n",
        false,
        None,
    ),
    (
        "duplicate content-length, same value",
        b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\ncontent-length: 2\r\n\r\nhi",
        false,
        Some("hyper accepts equal duplicates; the lean path wants one content-length"),
    ),
    (
        "content-length list",
        b"HTTP/1.1 200 OK\r\ncontent-length: 2, 2\r\n\r\nhi",
        false,
        Some("hyper accepts a list of equal values; the lean path wants one number"),
    ),
    (
        "duplicate content-length, different values",
        b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\ncontent-length: 3\r\n\r\nhi!",
        false,
        None,
    ),
    ("status 099", b"HTTP/1.1 099 Low\r\n\r\n", false, None),
    ("status 999", b"HTTP/1.1 999 High\r\ncontent-length: 1\r\n\r\nx", false, None),
    (
        "obs-fold",
        b"HTTP/1.1 200 OK\r\nx: a\r\n b\r\ncontent-length: 1\r\n\r\nx",
        false,
        None,
    ),
    (
        "bare LF line ends",
        b"HTTP/1.1 200 OK\ncontent-length: 2\n\nhi",
        false,
        None,
    ),
    (
        "bare LF in a chunked body",
        b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n2\nhi\r\n0\r\n\r\n",
        false,
        None,
    ),
    (
        "chunked body cut short",
        b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n5\r\nhi",
        false,
        None,
    ),
    (
        "content-length body cut short",
        b"HTTP/1.1 200 OK\r\ncontent-length: 5\r\n\r\nhi",
        false,
        None,
    ),
];

#[tokio::test]
async fn the_lean_path_frames_responses_as_hyper_does_or_stricter() {
    for (name, stream, head, stricter) in RESPONSES {
        let lean = fuzzing::responses(stream, &[*head], 64 * 1024, usize::MAX);
        let hyper = hyper_client(stream, *head).await;
        let last = lean.last().unwrap();
        let lean_final = match last {
            Event::Message {
                start,
                body,
                kind,
                complete: true,
                ..
            } => HyperResponse::Ok(
                std::str::from_utf8(start).unwrap().parse().unwrap(),
                match kind {
                    BodyKind::Chunked => {
                        // The decoded body, to compare with hyper's.
                        let mut out = Vec::new();
                        let mut b = &stream[body.clone()];
                        loop {
                            let line = b.windows(2).position(|w| w == b"\r\n").unwrap();
                            let digits: String = String::from_utf8_lossy(&b[..line])
                                .chars()
                                .take_while(char::is_ascii_hexdigit)
                                .collect();
                            let size = usize::from_str_radix(&digits, 16).unwrap();
                            b = &b[line + 2..];
                            if size == 0 {
                                break;
                            }
                            out.extend_from_slice(&b[..size]);
                            b = &b[size + 2..];
                        }
                        out
                    }
                    _ => stream[body.clone()].to_vec(),
                },
            ),
            _ => HyperResponse::Error,
        };
        match stricter {
            None => assert_eq!(lean_final, hyper, "{name}: lean {lean:?}"),
            Some(why) => {
                assert!(!why.is_empty());
                assert_eq!(
                    lean_final,
                    HyperResponse::Error,
                    "{name}: documented as stricter"
                );
                assert_ne!(hyper, HyperResponse::Error, "{name}: documented, but agree");
            }
        }
    }
}

#[test]
fn what_the_lean_path_forwards_frames_the_same() {
    // The rewritten request heads carry the same framing, so the target reads the same
    // messages (checked for every case of the table, and by the fuzz target h1_request).
    for (name, stream, _) in REQUESTS {
        for event in fuzzing::requests(stream, 64 * 1024, 7) {
            let Event::Message {
                start,
                path,
                body,
                kind,
                complete: true,
                forwarded,
                ..
            } = event
            else {
                continue;
            };
            let again = fuzzing::requests(&forwarded, 64 * 1024, usize::MAX);
            match again.as_slice() {
                [
                    Event::Message {
                        start: s,
                        path: p,
                        body: b,
                        kind: k,
                        complete: true,
                        span,
                        ..
                    },
                ] => {
                    assert_eq!((s, p, k), (&start, &path, &kind), "{name}");
                    assert_eq!(forwarded[b.clone()], stream[body], "{name}");
                    assert_eq!(span.end, forwarded.len(), "{name}");
                }
                other => panic!("{name}: {other:?}"),
            }
        }
    }
}
