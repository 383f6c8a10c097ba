//! HTTP over mTLS routed by Host, on one persistent client connection: the gateway's own
//! upstream connection per client connection (reused, replaced when the backend closes it,
//! re-resolved per request), keep-alive and `Connection: close`, pipelining, and HTTP/2
//! (several streams at once, through the shared clients).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use common::*;
use http_body_util::{BodyExt, Empty};
use hyper_util::rt::{TokioExecutor, TokioIo};
use mc_gateway::Target;
use mc_gateway::resolve::{Resolve, ResolveFuture};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

/// A resolver whose one endpoint the test moves.
#[derive(Debug)]
struct Movable(Mutex<SocketAddr>);

impl Resolve for Movable {
    fn resolve<'a>(&'a self, _target: &'a Target) -> ResolveFuture<'a> {
        let addr = *self.0.lock().unwrap();
        Box::pin(async move { Ok(addr) })
    }
}

/// A raw HTTP/1.1 backend that counts its connections and answers every request with
/// `<tag>/<connection number> <l5d-client-id value>`; with `close_after`, it closes each
/// connection after that many responses (the last one with `Connection: close`). The request
/// heads it received are kept in `heads`.
struct Counting {
    addr: SocketAddr,
    conns: Arc<AtomicUsize>,
    heads: Arc<Mutex<Vec<String>>>,
}

async fn counting(tag: &'static str, close_after: Option<usize>) -> Counting {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    let conns = Arc::new(AtomicUsize::new(0));
    let heads = Arc::new(Mutex::new(Vec::new()));
    let (c, h) = (conns.clone(), heads.clone());
    tokio::spawn(async move {
        loop {
            let (mut s, _) = l.accept().await.unwrap();
            let n = c.fetch_add(1, Ordering::SeqCst) + 1;
            let heads = h.clone();
            tokio::spawn(async move {
                let mut buf = Vec::new();
                let mut served = 0;
                loop {
                    let mut chunk = [0u8; 4096];
                    let k = match s.read(&mut chunk).await {
                        Ok(0) | Err(_) => return,
                        Ok(k) => k,
                    };
                    buf.extend_from_slice(&chunk[..k]);
                    while let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                        let head = String::from_utf8_lossy(&buf[..end]).to_lowercase();
                        buf.drain(..end + 4);
                        let client = head
                            .lines()
                            .find_map(|l| l.strip_prefix("l5d-client-id: "))
                            .unwrap_or("-")
                            .to_owned();
                        heads.lock().unwrap().push(head);
                        served += 1;
                        let last = close_after.is_some_and(|c| served >= c);
                        let body = format!("{tag}/{n} {client}");
                        let close = if last { "connection: close\r\n" } else { "" };
                        let resp = format!(
                            "HTTP/1.1 200 OK\r\n{close}content-length: {}\r\n\r\n{body}",
                            body.len()
                        );
                        if s.write_all(resp.as_bytes()).await.is_err() || last {
                            return;
                        }
                    }
                }
            });
        }
    });
    Counting { addr, conns, heads }
}

async fn gateway(pki: &Pki, resolver: Arc<Movable>) -> Running {
    let mut config = config(pki, &[]);
    config.resolver = resolver;
    start(config).await
}

/// An HTTP/1.1 client over one mTLS connection (ALPN http/1.1).
async fn h1_client(
    pki: &Pki,
    gw: SocketAddr,
) -> hyper::client::conn::http1::SendRequest<Empty<Bytes>> {
    let client = pki.leaf("client", CLIENT_ID);
    let tls = raw_connect(gw, raw_client(pki, Some(&client), &[b"http/1.1"]))
        .await
        .unwrap();
    let (send, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tls))
        .await
        .unwrap();
    tokio::spawn(conn);
    send
}

async fn get(send: &mut hyper::client::conn::http1::SendRequest<Empty<Bytes>>) -> (u16, String) {
    send.ready().await.unwrap();
    let req = hyper::Request::get("/x")
        .header("host", SVC)
        .body(Empty::new())
        .unwrap();
    let resp = send.send_request(req).await.unwrap();
    let status = resp.status().as_u16();
    let body = resp.into_body().collect().await.unwrap().to_bytes();
    (status, String::from_utf8_lossy(&body).into_owned())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_upstream_connection_per_client_connection_follows_re_resolution() {
    let pki = Pki::new();
    let a = counting("a", None).await;
    let b = counting("b", None).await;
    let resolver = Arc::new(Movable(Mutex::new(a.addr)));
    let gw = gateway(&pki, resolver.clone()).await;
    let mut send = h1_client(&pki, gw.addr).await;
    let who = CLIENT_ID.to_lowercase();
    for _ in 0..5 {
        assert_eq!(get(&mut send).await, (200, format!("a/1 {who}")));
    }
    assert_eq!(a.conns.load(Ordering::SeqCst), 1, "one upstream connection");
    // The endpoint changes: the next request goes to the new one, on a new connection.
    *resolver.0.lock().unwrap() = b.addr;
    for _ in 0..3 {
        assert_eq!(get(&mut send).await, (200, format!("b/1 {who}")));
    }
    assert_eq!(b.conns.load(Ordering::SeqCst), 1);
    // And back: the first endpoint's connection is still there.
    *resolver.0.lock().unwrap() = a.addr;
    assert_eq!(get(&mut send).await, (200, format!("a/1 {who}")));
    assert_eq!(a.conns.load(Ordering::SeqCst), 1);
    // Every request carried the gateway's headers, in origin form, with the target as Host.
    let heads = a.heads.lock().unwrap().clone();
    assert_eq!(heads.len(), 6);
    for head in heads {
        assert!(head.starts_with("get /x http/1.1\r\n"), "{head}");
        assert!(head.contains(&format!("\r\nhost: {SVC}:80")), "{head}");
        assert!(
            head.contains(&format!(
                "\r\nforwarded: by={};for={who};",
                GATEWAY_ID.to_lowercase()
            )),
            "{head}"
        );
    }
    // A second client connection gets its own upstream connection.
    let mut other = h1_client(&pki, gw.addr).await;
    assert_eq!(get(&mut other).await, (200, format!("a/2 {who}")));
    let text = gw.metrics.encode();
    assert_eq!(
        metric(
            &text,
            &format!("mc_gateway_http_requests_total{{target=\"{SVC}:80\",status=\"200\"}}")
        ),
        10.0,
        "{text}"
    );
    gw.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backend_closing_its_connection_does_not_close_the_client_connection() {
    let pki = Pki::new();
    let one = counting("a", Some(1)).await;
    let resolver = Arc::new(Movable(Mutex::new(one.addr)));
    let gw = gateway(&pki, resolver.clone()).await;
    let mut send = h1_client(&pki, gw.addr).await;
    let who = CLIENT_ID.to_lowercase();
    for n in 1..=3 {
        assert_eq!(get(&mut send).await, (200, format!("a/{n} {who}")));
    }
    assert_eq!(one.conns.load(Ordering::SeqCst), 3);
    // A backend that closes after every second response.
    let two = counting("b", Some(2)).await;
    *resolver.0.lock().unwrap() = two.addr;
    let mut got = Vec::new();
    for _ in 0..4 {
        got.push(get(&mut send).await.1);
    }
    assert_eq!(got, [1, 1, 2, 2].map(|n| format!("b/{n} {who}")));
    gw.shutdown().await;
}

/// Reads HTTP/1.1 responses with a content-length until `n` are complete or the stream closes;
/// returns them and whether the stream closed.
async fn read_responses<S: tokio::io::AsyncRead + Unpin>(
    s: &mut S,
    n: usize,
) -> (Vec<String>, bool) {
    let mut buf = Vec::new();
    let mut out = Vec::new();
    let mut closed = false;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    loop {
        while let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&buf[..end]).to_lowercase();
            let len: usize = head
                .lines()
                .find_map(|l| l.strip_prefix("content-length: "))
                .map_or(0, |v| v.trim().parse().unwrap());
            if buf.len() < end + 4 + len {
                break;
            }
            let body = String::from_utf8_lossy(&buf[end + 4..end + 4 + len]).into_owned();
            buf.drain(..end + 4 + len);
            out.push(format!("{head}\r\n\r\n{body}"));
        }
        if out.len() >= n && closed {
            break;
        }
        let mut chunk = [0u8; 4096];
        match tokio::time::timeout_at(deadline, s.read(&mut chunk)).await {
            Ok(Ok(0)) | Ok(Err(_)) => {
                closed = true;
                break;
            }
            Ok(Ok(k)) => buf.extend_from_slice(&chunk[..k]),
            Err(_) => break,
        }
    }
    (out, closed)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pipelined_requests_are_answered_in_order_and_connection_close_closes() {
    let pki = Pki::new();
    let backend = counting("a", None).await;
    let resolver = Arc::new(Movable(Mutex::new(backend.addr)));
    let gw = gateway(&pki, resolver).await;
    let client = pki.leaf("client", CLIENT_ID);
    let mut tls = raw_connect(gw.addr, raw_client(&pki, Some(&client), &[b"http/1.1"]))
        .await
        .unwrap();
    // Three requests in one write, the last asking to close.
    let req = |path: &str, extra: &str| {
        format!(
            "GET {path} HTTP/1.1\r\nhost: {SVC}\r\nx-secret: s\r\nconnection: x-secret{extra}\r\n\r\n"
        )
    };
    let all = req("/1", "") + &req("/2", "") + &req("/3", ", close");
    tls.write_all(all.as_bytes()).await.unwrap();
    let (responses, closed) = read_responses(&mut tls, 3).await;
    assert_eq!(responses.len(), 3, "{responses:?}");
    for r in &responses {
        assert!(r.starts_with("http/1.1 200 ok\r\n"), "{r}");
    }
    assert!(
        responses[2].contains("connection: close"),
        "{}",
        responses[2]
    );
    assert!(closed, "the gateway closes after Connection: close");
    // In order, on one upstream connection, without the hop-by-hop headers.
    let heads = backend.heads.lock().unwrap().clone();
    let paths: Vec<&str> = heads.iter().map(|h| h.split(' ').nth(1).unwrap()).collect();
    assert_eq!(paths, ["/1", "/2", "/3"]);
    for h in &heads {
        assert!(!h.contains("x-secret") && !h.contains("connection:"), "{h}");
    }
    assert_eq!(backend.conns.load(Ordering::SeqCst), 1);
    gw.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http2_streams_at_once_on_one_connection_all_reach_the_backend() {
    let pki = Pki::new();
    let backend = http_backend().await;
    let resolver = Arc::new(Movable(Mutex::new(backend)));
    let gw = gateway(&pki, resolver).await;
    let client = pki.leaf("client", CLIENT_ID);
    let tls = raw_connect(gw.addr, raw_client(&pki, Some(&client), &[b"h2"]))
        .await
        .unwrap();
    let (send, conn) =
        hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(tls))
            .await
            .unwrap();
    tokio::spawn(conn);
    let mut tasks = Vec::new();
    for i in 0..8 {
        let mut send = send.clone();
        tasks.push(tokio::spawn(async move {
            let req = hyper::Request::get(format!("https://{SVC}/s{i}"))
                .body(Empty::<Bytes>::new())
                .unwrap();
            let resp = send.send_request(req).await.unwrap();
            let status = resp.status().as_u16();
            let body = resp.into_body().collect().await.unwrap().to_bytes();
            (status, String::from_utf8_lossy(&body).into_owned())
        }));
    }
    for (i, t) in tasks.into_iter().enumerate() {
        let (status, body) = t.await.unwrap();
        assert_eq!(status, 200, "{body}");
        // The target gets HTTP/1.1 (the gateway's default upstream protocol) for the path.
        assert!(body.starts_with(&format!("GET /s{i} HTTP/1.1\n")), "{body}");
        assert!(body.contains(&format!("host: {SVC}:80")), "{body}");
        assert!(
            body.contains(&format!("l5d-client-id: {CLIENT_ID}")),
            "{body}"
        );
    }
    gw.shutdown().await;
}
