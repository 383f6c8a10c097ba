//! The lean HTTP/1 forwarder end to end: chunked bodies both ways copied verbatim, responses
//! without a body (HEAD, 204, 304), a response delimited by the target closing, an `Upgrade`
//! request handed to hyper, and keep-alive governed by the idle timeout, not the header one.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

type Tls = tokio_rustls::client::TlsStream<tokio::net::TcpStream>;

/// The raw requests a backend received, one string per request (head and body).
type Seen = Arc<Mutex<Vec<String>>>;

/// Where the request starting `buf` ends: its head, plus a chunked body up to its final blank
/// line (the test bodies have no blank line inside) or `content-length` bytes.
fn request_end(buf: &[u8]) -> Option<usize> {
    let head_end = buf.windows(4).position(|w| w == b"\r\n\r\n")? + 4;
    let head = String::from_utf8_lossy(&buf[..head_end]).to_lowercase();
    if head.contains("transfer-encoding: chunked") {
        let body = &buf[head_end..];
        return Some(head_end + body.windows(4).position(|w| w == b"\r\n\r\n")? + 4);
    }
    let len: usize = head
        .lines()
        .find_map(|l| l.strip_prefix("content-length: "))
        .map_or(0, |v| v.trim().parse().unwrap());
    (buf.len() >= head_end + len).then_some(head_end + len)
}

/// A raw HTTP/1.1 backend: each request is recorded and answered with `answer(request)`,
/// the raw response bytes and whether to close the connection after them.
async fn raw_backend(answer: fn(&str) -> (String, bool)) -> (SocketAddr, Seen) {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    let seen: Seen = Arc::default();
    let s2 = seen.clone();
    tokio::spawn(async move {
        loop {
            let (mut s, _) = l.accept().await.unwrap();
            let seen = s2.clone();
            tokio::spawn(async move {
                let mut buf = Vec::new();
                loop {
                    while let Some(end) = request_end(&buf) {
                        let req = String::from_utf8_lossy(&buf[..end]).into_owned();
                        buf.drain(..end);
                        seen.lock().unwrap().push(req.clone());
                        let (resp, close) = answer(&req);
                        if s.write_all(resp.as_bytes()).await.is_err() || close {
                            return;
                        }
                    }
                    let mut chunk = [0u8; 4096];
                    match s.read(&mut chunk).await {
                        Ok(0) | Err(_) => return,
                        Ok(k) => buf.extend_from_slice(&chunk[..k]),
                    }
                }
            });
        }
    });
    (addr, seen)
}

/// The answers of the tests' backend, by request path.
fn answers(req: &str) -> (String, bool) {
    let path = req.split(' ').nth(1).unwrap_or_default();
    let ok = |body: &str| {
        format!(
            "HTTP/1.1 200 OK\r\ncontent-length: {}\r\n\r\n{body}",
            body.len()
        )
    };
    match path {
        "/chunked" => (
            "HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n5;e=1\r\nhello\r\n0\r\nx-r: 2\r\n\r\n".into(),
            false,
        ),
        "/head" => ("HTTP/1.1 200 OK\r\ncontent-length: 5\r\n\r\n".into(), false),
        "/204" => ("HTTP/1.1 204 No Content\r\nx-a: 1\r\n\r\n".into(), false),
        "/304" => (
            "HTTP/1.1 304 Not Modified\r\netag: \"x\"\r\ncontent-length: 9\r\n\r\n".into(),
            false,
        ),
        "/eof" => ("HTTP/1.1 200 OK\r\nx-a: 1\r\n\r\nuntil the end".into(), true),
        "/continue" => (
            "HTTP/1.1 103 Early Hints\r\nlink: </s>\r\n\r\n".to_owned() + &ok("after hints"),
            false,
        ),
        _ => (ok(path), false),
    }
}

/// Reads from `s` until `done(bytes so far)` or the stream closes or 5 s pass; returns the
/// bytes and whether it closed.
async fn read_until(s: &mut Tls, done: impl Fn(&[u8]) -> bool) -> (Vec<u8>, bool) {
    let mut out = Vec::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    while !done(&out) {
        let mut chunk = [0u8; 4096];
        match tokio::time::timeout_at(deadline, s.read(&mut chunk)).await {
            Ok(Ok(0)) | Ok(Err(_)) => return (out, true),
            Ok(Ok(k)) => out.extend_from_slice(&chunk[..k]),
            Err(_) => break,
        }
    }
    (out, false)
}

fn ends_with(suffix: &'static str) -> impl Fn(&[u8]) -> bool {
    move |b| b.ends_with(suffix.as_bytes())
}

async fn setup(limits: Option<(u64, u64)>) -> (Pki, Running, Seen, Files) {
    let pki = Pki::new();
    let (backend, seen) = raw_backend(answers).await;
    let mut config = config(&pki, &[(SVC, 80, backend)]);
    if let Some((header, idle)) = limits {
        config.limits.header_timeout = Duration::from_millis(header);
        config.limits.idle_timeout = Duration::from_millis(idle);
    }
    let gw = start(config).await;
    let client = pki.leaf("client", CLIENT_ID);
    (pki, gw, seen, client)
}

async fn connect(pki: &Pki, gw: &Running, client: &Files) -> Tls {
    raw_connect(gw.addr, raw_client(pki, Some(client), &[b"http/1.1"]))
        .await
        .unwrap()
}

fn get(path: &str) -> String {
    format!("GET {path} HTTP/1.1\r\nhost: {SVC}\r\n\r\n")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chunked_request_and_response_bodies_are_copied_verbatim() {
    let (pki, gw, seen, client) = setup(None).await;
    let mut s = connect(&pki, &gw, &client).await;
    // The body arrives in two parts, the second after the head was forwarded.
    let head = format!(
        "POST /chunked HTTP/1.1\r\nhost: {SVC}\r\ntransfer-encoding: chunked\r\n\r\n4;ext=1\r\nWi"
    );
    s.write_all(head.as_bytes()).await.unwrap();
    tokio::time::sleep(Duration::from_millis(100)).await;
    s.write_all(b"ki\r\n0\r\nx-t: 1\r\n\r\n").await.unwrap();
    let (got, closed) = read_until(&mut s, ends_with("0\r\nx-r: 2\r\n\r\n")).await;
    let text = String::from_utf8_lossy(&got);
    assert!(!closed, "{text}");
    assert!(text.starts_with("HTTP/1.1 200 OK\r\n"), "{text}");
    assert!(
        text.contains("\r\ntransfer-encoding: chunked\r\n"),
        "{text}"
    );
    assert!(
        text.ends_with("\r\n\r\n5;e=1\r\nhello\r\n0\r\nx-r: 2\r\n\r\n"),
        "{text}"
    );
    // The next request on the same connection is framed right after the trailers.
    s.write_all(get("/after").as_bytes()).await.unwrap();
    let (got, _) = read_until(&mut s, ends_with("/after")).await;
    assert!(got.ends_with(b"content-length: 6\r\n\r\n/after"));
    let seen = seen.lock().unwrap().clone();
    assert_eq!(seen.len(), 2, "{seen:?}");
    assert!(
        seen[0].starts_with("POST /chunked HTTP/1.1\r\n"),
        "{}",
        seen[0]
    );
    assert!(seen[0].contains("\r\ntransfer-encoding: chunked\r\n"));
    assert!(
        seen[0].ends_with("\r\n\r\n4;ext=1\r\nWiki\r\n0\r\nx-t: 1\r\n\r\n"),
        "{}",
        seen[0]
    );
    assert!(seen[0].contains(&format!("\r\nl5d-client-id: {CLIENT_ID}\r\n")));
    gw.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn head_204_and_304_responses_have_no_body_and_1xx_are_relayed() {
    let (pki, gw, _, client) = setup(None).await;
    let mut s = connect(&pki, &gw, &client).await;
    let head = format!("HEAD /head HTTP/1.1\r\nhost: {SVC}\r\n\r\n");
    let all = head + &get("/204") + &get("/304") + &get("/continue") + &get("/ok");
    s.write_all(all.as_bytes()).await.unwrap();
    let (got, closed) = read_until(&mut s, ends_with("\r\n\r\n/ok")).await;
    let text = String::from_utf8_lossy(&got);
    assert!(!closed, "{text}");
    let parts: Vec<&str> = text.split("\r\n\r\n").collect();
    assert_eq!(parts.len(), 7, "{text}");
    assert!(parts[0].starts_with("HTTP/1.1 200 OK\r\n") && parts[0].contains("content-length: 5"));
    assert!(
        parts[1].starts_with("HTTP/1.1 204 No Content\r\n"),
        "{text}"
    );
    assert!(
        parts[2].starts_with("HTTP/1.1 304 Not Modified\r\n"),
        "{text}"
    );
    assert!(
        parts[3].starts_with("HTTP/1.1 103 Early Hints\r\n"),
        "{text}"
    );
    assert!(parts[4].starts_with("HTTP/1.1 200 OK\r\n"), "{text}");
    assert!(
        parts[5].starts_with("after hintsHTTP/1.1 200 OK\r\n"),
        "{text}"
    );
    assert_eq!(parts[6], "/ok");
    gw.shutdown().await;
}

/// Reads `s` to its end within 5 s; the error is the TLS one when the peer closed without
/// close_notify (a truncation to the client).
async fn read_to_end(s: &mut Tls) -> (Vec<u8>, std::io::Result<usize>) {
    let mut out = Vec::new();
    let res = tokio::time::timeout(Duration::from_secs(5), s.read_to_end(&mut out)).await;
    (
        out,
        res.unwrap_or_else(|_| Err(std::io::ErrorKind::TimedOut.into())),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_response_without_length_ends_with_the_connection() {
    let (pki, gw, _, client) = setup(None).await;
    let mut s = connect(&pki, &gw, &client).await;
    s.write_all(get("/eof").as_bytes()).await.unwrap();
    let (got, end) = read_to_end(&mut s).await;
    let text = String::from_utf8_lossy(&got);
    assert!(
        end.is_ok(),
        "the gateway closes cleanly (close_notify) after a body delimited by the close: {end:?} {text}"
    );
    assert!(text.starts_with("HTTP/1.1 200 OK\r\n"), "{text}");
    assert!(text.contains("\r\nconnection: close\r\n"), "{text}");
    assert!(text.ends_with("\r\n\r\nuntil the end"), "{text}");
    // A client's Connection: close ends the connection cleanly too.
    let mut s = connect(&pki, &gw, &client).await;
    let req = format!("GET /bye HTTP/1.1\r\nhost: {SVC}\r\nconnection: close\r\n\r\n");
    s.write_all(req.as_bytes()).await.unwrap();
    let (got, end) = read_to_end(&mut s).await;
    let text = String::from_utf8_lossy(&got);
    assert!(end.is_ok(), "{end:?} {text}");
    assert!(
        text.contains("\r\nconnection: close\r\n") && text.ends_with("/bye"),
        "{text}"
    );
    gw.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_upgrade_request_is_handed_to_hyper_for_the_rest_of_the_connection() {
    let (pki, gw, seen, client) = setup(None).await;
    // The lean path copies the backend's head, which has no Date field ...
    let mut s = connect(&pki, &gw, &client).await;
    s.write_all(get("/lean").as_bytes()).await.unwrap();
    let (got, _) = read_until(&mut s, ends_with("/lean")).await;
    let text = String::from_utf8_lossy(&got).to_lowercase();
    assert!(!text.contains("\r\ndate:"), "{text}");
    // ... hyper's server adds one: an Upgrade request and the ones after it are hyper's.
    // (docs/security.md: an upgrade keeps `Upgrade` and `Connection: upgrade`.)
    let up = format!(
        "GET /up HTTP/1.1\r\nhost: {SVC}\r\nconnection: upgrade\r\nupgrade: websocket\r\n\r\n"
    );
    s.write_all(up.as_bytes()).await.unwrap();
    let (got, _) = read_until(&mut s, ends_with("/up")).await;
    let text = String::from_utf8_lossy(&got).to_lowercase();
    assert!(text.starts_with("http/1.1 200 ok\r\n"), "{text}");
    assert!(text.contains("\r\ndate:"), "{text}");
    s.write_all(get("/next").as_bytes()).await.unwrap();
    let (got, _) = read_until(&mut s, ends_with("/next")).await;
    let text = String::from_utf8_lossy(&got).to_lowercase();
    assert!(text.contains("\r\ndate:"), "{text}");
    let seen = seen.lock().unwrap().clone();
    assert_eq!(seen.len(), 3, "{seen:?}");
    // The upgrade reaches the target with its two fields; this one does not switch
    // protocols, so its 200 is an ordinary response and the connection goes on.
    let asked = seen[1].to_lowercase();
    assert!(
        asked.contains("\r\nupgrade: websocket\r\n")
            && asked.contains("\r\nconnection: upgrade\r\n"),
        "{asked}"
    );
    gw.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idle_keep_alive_connection_outlives_the_header_timeout_not_the_idle_timeout() {
    // Header timeout 500 ms, idle timeout 2.5 s.
    let (pki, gw, _, client) = setup(Some((500, 2500))).await;
    let mut s = connect(&pki, &gw, &client).await;
    s.write_all(get("/1").as_bytes()).await.unwrap();
    let (got, _) = read_until(&mut s, ends_with("/1")).await;
    assert!(got.ends_with(b"\r\n\r\n/1"));
    // Idle for three header timeouts: still open.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    s.write_all(get("/2").as_bytes()).await.unwrap();
    let (got, closed) = read_until(&mut s, ends_with("/2")).await;
    assert!(!closed && got.ends_with(b"\r\n\r\n/2"), "{got:?}");
    // Idle beyond the idle timeout: closed.
    let start = tokio::time::Instant::now();
    let (got, closed) = read_until(&mut s, |_| false).await;
    assert!(closed && got.is_empty(), "{got:?}");
    let waited = start.elapsed();
    assert!(
        waited >= Duration::from_millis(2000) && waited < Duration::from_millis(4500),
        "{waited:?}"
    );
    gw.shutdown().await;
}

#[tokio::test]
async fn a_connection_that_sends_no_request_is_closed_after_the_header_timeout() {
    // Header timeout 500 ms, idle timeout 2.5 s: the first request is bounded by the former.
    let (pki, gw, _, client) = setup(Some((500, 2500))).await;
    let mut s = connect(&pki, &gw, &client).await;
    let start = tokio::time::Instant::now();
    let (got, closed) = read_until(&mut s, |_| false).await;
    assert!(closed && got.is_empty(), "{got:?}");
    let waited = start.elapsed();
    assert!(waited < Duration::from_millis(2000), "{waited:?}");
    // A head trickled in slower than the header timeout is cut off too.
    let mut s = connect(&pki, &gw, &client).await;
    let start = tokio::time::Instant::now();
    s.write_all(b"GET /slow HTTP/1.1\r\n").await.unwrap();
    let (got, closed) = read_until(&mut s, |_| false).await;
    assert!(closed && got.is_empty(), "{got:?}");
    assert!(start.elapsed() < Duration::from_millis(2000));
    gw.shutdown().await;
}
