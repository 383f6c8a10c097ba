//! Adversarial inputs: garbage, truncated and oversized headers, slowloris clients, 1,000
//! concurrent connections, the connection limit, and certificate reload under load.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::time::{Duration, Instant};

use common::*;
use mc_core::transport::{PREFACE, TransportHeader};
use mc_gateway::Target;
use mc_gateway::client::GatewayConnector;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const TRANSPORT: &[u8] = b"transport.l5d.io/v1";

async fn refused(gw: &Running, reason: &str) -> f64 {
    let (_, m) = admin_get(gw.admin, "/metrics").await;
    metric(
        &m,
        &format!("mc_gateway_connections_refused_total{{reason=\"{reason}\"}}"),
    )
}

/// Asserts that exactly one handshake timed out; returns the metrics text.
async fn assert_one_handshake_timeout(gw: &Running) -> String {
    let (_, m) = admin_get(gw.admin, "/metrics").await;
    let timeouts = metric(
        &m,
        "mc_gateway_tls_handshake_errors_total{reason=\"timeout\"}",
    );
    assert_eq!(timeouts, 1.0, "{m}");
    m
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn garbage_truncated_and_oversized_headers_are_closed() {
    let pki = Pki::new();
    let echo = echo_backend().await;
    let gw = start(config(&pki, &[(SVC, 7000, echo)])).await;
    let client = pki.leaf("client", CLIENT_ID);
    let cfg = raw_client(&pki, Some(&client), &[TRANSPORT]);

    // Garbage instead of a header.
    let mut s = raw_connect(gw.addr, cfg.clone()).await.unwrap();
    let _ = s.write_all(&pattern(7, 4096)).await;
    let got = read_until_closed(&mut s, Duration::from_secs(5)).await;
    assert_eq!(
        got.as_deref(),
        Some(&b""[..]),
        "garbage was answered or not closed"
    );

    // A truncated header, then the client closes its side.
    let header = TransportHeader {
        port: 7000,
        name: Some(SVC.into()),
        protocol: None,
    }
    .encode();
    let mut s = raw_connect(gw.addr, cfg.clone()).await.unwrap();
    s.write_all(&header[..header.len() - 3]).await.unwrap();
    s.shutdown().await.unwrap();
    let got = read_until_closed(&mut s, Duration::from_secs(5)).await;
    assert_eq!(got.as_deref(), Some(&b""[..]));

    // An oversized header: the declared length alone is enough to refuse, the body never
    // needs to arrive.
    let mut s = raw_connect(gw.addr, cfg.clone()).await.unwrap();
    let mut big = PREFACE.to_vec();
    big.extend_from_slice(&(1u32 << 30).to_be_bytes());
    s.write_all(&big).await.unwrap();
    let got = read_until_closed(&mut s, Duration::from_secs(5)).await;
    assert_eq!(got.as_deref(), Some(&b""[..]));

    assert_eq!(refused(&gw, "bad_header").await, 2.0);
    assert_eq!(refused(&gw, "truncated_header").await, 1.0);

    // Oversized HTTP headers get 431 or a close, never a forwarded request.
    let http = raw_client(&pki, Some(&client), &[b"http/1.1"]);
    let mut s = raw_connect(gw.addr, http).await.unwrap();
    let req = format!(
        "GET / HTTP/1.1\r\nhost: {SVC}:7000\r\nx-big: {}\r\n\r\n",
        "a".repeat(200 * 1024)
    );
    let _ = s.write_all(req.as_bytes()).await;
    let got = read_until_closed(&mut s, Duration::from_secs(5))
        .await
        .unwrap();
    let text = String::from_utf8_lossy(&got);
    assert!(got.is_empty() || text.starts_with("HTTP/1.1 431"), "{text}");

    // The gateway still serves a well-behaved client afterwards.
    let c = GatewayConnector::new(
        &client.cert,
        &client.key,
        &pki.anchors(),
        gw.addr.to_string(),
        GATEWAY_ID,
    )
    .unwrap();
    let mut s = c.connect(&Target::new(SVC, 7000), None).await.unwrap();
    s.write_all(b"ok").await.unwrap();
    let mut b = [0u8; 2];
    s.read_exact(&mut b).await.unwrap();
    assert_eq!(&b, b"ok");
    gw.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slowloris_clients_are_closed_after_the_timeouts() {
    let pki = Pki::new();
    let gw = start(config(&pki, &[])).await; // handshake 2 s, header 1 s
    let client = pki.leaf("client", CLIENT_ID);

    // Sends nothing at all: closed after the handshake timeout.
    let start_at = Instant::now();
    let mut tcp = tokio::net::TcpStream::connect(gw.addr).await.unwrap();
    let got = read_until_closed(&mut tcp, Duration::from_secs(10)).await;
    assert_eq!(got.as_deref(), Some(&b""[..]));
    let waited = start_at.elapsed();
    assert!(
        waited >= Duration::from_millis(1500),
        "closed too early: {waited:?}"
    );

    // Handshakes, then sends nothing: closed after the header timeout.
    for alpn in [TRANSPORT, b"http/1.1".as_slice()] {
        let start_at = Instant::now();
        let mut s = raw_connect(gw.addr, raw_client(&pki, Some(&client), &[alpn]))
            .await
            .unwrap();
        if alpn != TRANSPORT {
            // Half a request line, then silence.
            s.write_all(b"GET / HT").await.unwrap();
        }
        let got = read_until_closed(&mut s, Duration::from_secs(10)).await;
        assert!(got.is_some(), "{alpn:?}: not closed within 10 s");
        let got = got.unwrap();
        let text = String::from_utf8_lossy(&got);
        assert!(got.is_empty() || text.starts_with("HTTP/1.1 408"), "{text}");
        let waited = start_at.elapsed();
        assert!(
            waited >= Duration::from_millis(800),
            "{alpn:?}: closed too early: {waited:?}"
        );
    }
    let m = assert_one_handshake_timeout(&gw).await;
    assert_eq!(
        metric(
            &m,
            "mc_gateway_connections_refused_total{reason=\"timeout\"}"
        ),
        1.0,
        "{m}"
    );
    gw.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_handshake_left_unfinished_after_the_servers_flight_times_out() {
    let pki = Pki::new();
    let mut cfg = config(&pki, &[]);
    cfg.limits.handshake_timeout = Duration::from_millis(500);
    let gw = start(cfg).await;
    let client = pki.leaf("client", CLIENT_ID);
    let tls = raw_client(&pki, Some(&client), &[b"http/1.1"]);

    // The ClientHello, then silence once the gateway's whole flight (through its Finished)
    // has arrived.
    let (mut conn, hello) = client_hello(&tls);
    let mut tcp = tokio::net::TcpStream::connect(gw.addr).await.unwrap();
    tcp.write_all(&hello).await.unwrap();
    let mut buf = vec![0u8; 16 * 1024];
    while conn.is_handshaking() && !conn.wants_write() {
        let n = tcp.read(&mut buf).await.unwrap();
        assert!(n > 0, "the gateway closed before its flight");
        conn.read_tls(&mut &buf[..n]).unwrap();
        conn.process_new_packets().unwrap();
    }
    let got = read_until_closed(&mut tcp, Duration::from_secs(10)).await;
    assert!(got.is_some(), "not closed after the handshake timeout");

    // The gateway still serves a handshake that finishes.
    finish_one_handshake(&gw, tls).await;
    assert_one_handshake_timeout(&gw).await;
    gw.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_handshake_that_fails_in_the_read_of_its_hello_is_counted_and_the_gateway_still_serves() {
    let pki = Pki::new();
    let gw = start(config(&pki, &[])).await;
    let client = pki.leaf("client", CLIENT_ID);
    let tls = raw_client(&pki, Some(&client), &[b"http/1.1"]);
    let (_, mut bytes) = client_hello(&tls);
    // In the same segment, a record the gateway cannot open: the handshake answers the
    // ClientHello and fails within the same read.
    bytes.extend_from_slice(&[0x17, 0x03, 0x03, 0x00, 0x20]);
    bytes.extend_from_slice(&[0xAA; 32]);
    let mut tcp = tokio::net::TcpStream::connect(gw.addr).await.unwrap();
    tcp.write_all(&bytes).await.unwrap();
    let got = read_until_closed(&mut tcp, Duration::from_secs(10)).await;
    assert!(got.is_some(), "not closed after a record it cannot open");

    // The gateway still serves.
    finish_one_handshake(&gw, tls).await;
    let (_, m) = admin_get(gw.admin, "/metrics").await;
    let failed: f64 = m
        .lines()
        .filter(|l| l.starts_with("mc_gateway_tls_handshake_errors_total{"))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum();
    assert_eq!(failed, 1.0, "{m}");
    gw.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thousand_concurrent_connections() {
    let pki = Pki::new();
    let echo = echo_backend().await;
    let mut cfg = config(&pki, &[(SVC, 7000, echo)]);
    cfg.limits.handshake_timeout = Duration::from_secs(60);
    // Three accept loops (two worker threads) share the listener and the connection count.
    cfg.threads = 3;
    let gw = start(cfg).await;
    let c = client_connector(&pki, &gw);
    const N: usize = 1000;
    let barrier = std::sync::Arc::new(tokio::sync::Barrier::new(N + 1));
    let mut tasks = Vec::new();
    for i in 0..N {
        let c = c.clone();
        let barrier = barrier.clone();
        tasks.push(tokio::spawn(async move {
            let mut s = c.connect(&Target::new(SVC, 7000), None).await.unwrap();
            let msg = format!("connection {i}");
            s.write_all(msg.as_bytes()).await.unwrap();
            let mut buf = vec![0u8; msg.len()];
            s.read_exact(&mut buf).await.unwrap();
            assert_eq!(buf, msg.as_bytes());
            // Hold every connection open until all are established.
            barrier.wait().await;
            s
        }));
    }
    tokio::time::timeout(Duration::from_secs(300), barrier.wait())
        .await
        .expect("1,000 connections not established within 300 s");
    let (_, m) = admin_get(gw.admin, "/metrics").await;
    assert_eq!(metric(&m, "mc_gateway_active_connections"), N as f64, "{m}");
    for t in tasks {
        drop(t.await.unwrap());
    }
    gw.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_beyond_the_limit_are_refused() {
    let pki = Pki::new();
    let echo = echo_backend().await;
    let mut cfg = config(&pki, &[(SVC, 7000, echo)]);
    cfg.limits.max_connections = 2;
    // The limit holds across accept threads.
    cfg.threads = 2;
    let gw = start(cfg).await;
    let c = client_connector(&pki, &gw);
    let mut held = Vec::new();
    for _ in 0..2 {
        let mut s = c.connect(&Target::new(SVC, 7000), None).await.unwrap();
        s.write_all(b"x").await.unwrap();
        let mut b = [0u8; 1];
        s.read_exact(&mut b).await.unwrap();
        held.push(s);
    }
    assert!(
        c.connect(&Target::new(SVC, 7000), None).await.is_err(),
        "third connection served"
    );
    assert_eq!(refused(&gw, "max_connections").await, 1.0);
    // Closing one frees a slot.
    drop(held.pop());
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        if let Ok(mut s) = c.connect(&Target::new(SVC, 7000), None).await {
            s.write_all(b"y").await.unwrap();
            let mut b = [0u8; 1];
            if s.read_exact(&mut b).await.is_ok() {
                break;
            }
        }
        assert!(Instant::now() < deadline, "slot never freed");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    gw.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn certificate_reload_keeps_open_connections() {
    let pki = Pki::new();
    let echo = echo_backend().await;
    let cfg = config(&pki, &[(SVC, 7000, echo)]);
    let mc_gateway::CertSource::Files {
        cert: cert_path,
        key: key_path,
    } = cfg.certificate.clone()
    else {
        panic!("the test configuration reads its certificate from files");
    };
    let gw = start(cfg).await;
    let client = pki.leaf("client", CLIENT_ID);
    let served_cert = |s: &tokio_rustls::client::TlsStream<tokio::net::TcpStream>| {
        s.get_ref().1.peer_certificates().unwrap()[0].to_vec()
    };
    let c = GatewayConnector::new(
        &client.cert,
        &client.key,
        &pki.anchors(),
        gw.addr.to_string(),
        GATEWAY_ID,
    )
    .unwrap();
    let mut old = c.connect(&Target::new(SVC, 7000), None).await.unwrap();
    let before = served_cert(&old);

    // Rotate: a new leaf for the same identity.
    let fresh = pki.leaf("rotated", GATEWAY_ID);
    std::fs::copy(&fresh.key, &key_path).unwrap();
    std::fs::copy(&fresh.cert, &cert_path).unwrap();
    let later = std::time::SystemTime::now() + Duration::from_secs(2);
    std::fs::File::options()
        .write(true)
        .open(&cert_path)
        .unwrap()
        .set_modified(later)
        .unwrap();

    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let s = c.connect(&Target::new(SVC, 7000), None).await.unwrap();
        if served_cert(&s) != before {
            break;
        }
        assert!(Instant::now() < deadline, "new certificate never served");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // The connection opened before the rotation still works.
    old.write_all(b"still here").await.unwrap();
    let mut b = [0u8; 10];
    old.read_exact(&mut b).await.unwrap();
    assert_eq!(&b, b"still here");
    gw.shutdown().await;
}

/// Opens mTLS with `cfg`, asks for the echo target over the transport header and checks the
/// echo: `true` when admitted end to end, `false` when refused anywhere on the way.
async fn echo_admitted(
    addr: std::net::SocketAddr,
    cfg: std::sync::Arc<rustls::ClientConfig>,
) -> bool {
    let Ok(mut s) = raw_connect(addr, cfg).await else {
        return false;
    };
    let header = TransportHeader {
        port: 7000,
        name: Some(SVC.into()),
        protocol: None,
    };
    if s.write_all(&header.encode()).await.is_err() || s.write_all(b"ping").await.is_err() {
        return false;
    }
    let mut b = [0u8; 4];
    matches!(
        tokio::time::timeout(Duration::from_secs(5), s.read_exact(&mut b)).await,
        Ok(Ok(_))
    ) && &b == b"ping"
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn trust_anchor_reload_switches_new_handshakes_and_keeps_open_connections() {
    let pki = Pki::new();
    let echo = echo_backend().await;
    let cfg = config(&pki, &[(SVC, 7000, echo)]);
    let anchors = cfg.trust_anchors.clone();
    let gw = start(cfg).await;
    // `old` chains to the gateway's anchor; `new` to a second, unrelated anchor. Both verify
    // the gateway against the first root (that is where its certificate comes from).
    let old_files = pki.leaf("client", CLIENT_ID);
    let other = Pki::new();
    let new_files = other.leaf("client", CLIENT_ID);
    let old_cfg = raw_client(&pki, Some(&old_files), &[TRANSPORT]);
    let new_cfg = raw_client(&pki, Some(&new_files), &[TRANSPORT]);

    assert!(echo_admitted(gw.addr, old_cfg.clone()).await);
    assert!(
        !echo_admitted(gw.addr, new_cfg.clone()).await,
        "a client of another anchor must be refused before the reload"
    );

    // A connection established under the old bundle, kept open across the reload.
    let mut open = raw_connect(gw.addr, old_cfg.clone()).await.unwrap();
    let header = TransportHeader {
        port: 7000,
        name: Some(SVC.into()),
        protocol: None,
    };
    open.write_all(&header.encode()).await.unwrap();
    open.write_all(b"before").await.unwrap();
    let mut b = [0u8; 6];
    open.read_exact(&mut b).await.unwrap();
    assert_eq!(&b, b"before");

    // Rewrite the bundle with only the new anchor (same size class, new content).
    std::fs::write(&anchors, &other.root.cert_pem).unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    while !echo_admitted(gw.addr, new_cfg.clone()).await {
        assert!(
            Instant::now() < deadline,
            "the new anchor was never admitted"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // New handshakes verify against the new bundle only: the old anchor is now refused ...
    assert!(
        !echo_admitted(gw.addr, old_cfg.clone()).await,
        "the removed anchor must be refused after the reload"
    );
    // ... while the connection accepted under the old bundle still works.
    open.write_all(b"after!").await.unwrap();
    open.read_exact(&mut b).await.unwrap();
    assert_eq!(&b, b"after!");

    // A broken bundle keeps the last good one.
    std::fs::write(&anchors, "not a certificate").unwrap();
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert!(echo_admitted(gw.addr, new_cfg).await);
    gw.shutdown().await;
}
