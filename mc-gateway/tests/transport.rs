//! The transport-header path with the crate's own client: HTTP/1, HTTP/2, opaque TCP
//! (including 100 MiB checked by SHA-256), identity checks, policy, loops and the weighted
//! forwarder.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::time::Duration;

use bytes::Bytes;
use common::*;
use http_body_util::Full;
use hyper_util::rt::TokioIo;
use mc_core::transport::SessionProtocol;
use mc_gateway::client::{Backend, BackendKind, Forwarder, GatewayConnector};
use mc_gateway::{Policy, Target};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

fn connector(
    pki: &Pki,
    client: &Files,
    gw: std::net::SocketAddr,
    identity: &str,
) -> GatewayConnector {
    GatewayConnector::new(
        &client.cert,
        &client.key,
        &pki.anchors(),
        gw.to_string(),
        identity,
    )
    .unwrap()
}

async fn http_get(
    stream: tokio_rustls::client::TlsStream<tokio::net::TcpStream>,
    h2: bool,
    extra: Option<(&str, &str)>,
) -> (u16, String) {
    let mut req = hyper::Request::get("http://ignored.example/path?q=1");
    if let Some((k, v)) = extra {
        req = req.header(k, v);
    }
    let req = req.body(Full::new(Bytes::from_static(b"payload"))).unwrap();
    send_once(stream, h2, req).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http1_and_http2_through_the_transport_header() {
    let pki = Pki::new();
    let backend = http_backend().await;
    let gw = start(config(&pki, &[(SVC, 8080, backend)])).await;
    let client = pki.leaf("client", CLIENT_ID);
    let c = connector(&pki, &client, gw.addr, GATEWAY_ID);
    let target = Target::new(SVC, 8080);
    for (protocol, h2, version) in [
        (SessionProtocol::Http1, false, "HTTP/1.1"),
        (SessionProtocol::Http2, true, "HTTP/2.0"),
    ] {
        let stream = c.connect(&target, Some(protocol)).await.unwrap();
        let (status, body) = http_get(stream, h2, None).await;
        assert_eq!(status, 200, "{body}");
        // The upstream protocol follows the session protocol.
        assert!(body.starts_with(&format!("GET /path {version}")), "{body}");
        assert!(body.contains(&format!("host: {SVC}:8080")), "{body}");
        assert!(
            body.contains(&format!("l5d-client-id: {CLIENT_ID}")),
            "{body}"
        );
        assert!(
            body.contains(&format!(
                "forwarded: by={GATEWAY_ID};for={CLIENT_ID};host={SVC}:8080;proto=https"
            )),
            "{body}"
        );
        assert!(body.ends_with("payload"), "{body}");
        // Loop: a request that already passed through this gateway.
        let stream = c.connect(&target, Some(protocol)).await.unwrap();
        let (status, body) = http_get(
            stream,
            h2,
            Some(("forwarded", &format!("for=a;by={GATEWAY_ID}"))),
        )
        .await;
        assert_eq!(status, 508, "{body}");
    }
    gw.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn opaque_tcp_echo_and_unknown_target_closes() {
    let pki = Pki::new();
    let echo = echo_backend().await;
    let gw = start(config(&pki, &[(SVC, 7000, echo)])).await;
    let client = pki.leaf("client", CLIENT_ID);
    let c = connector(&pki, &client, gw.addr, GATEWAY_ID);

    let mut s = c.connect(&Target::new(SVC, 7000), None).await.unwrap();
    s.write_all(b"hello through the gateway").await.unwrap();
    let mut buf = [0u8; 25];
    s.read_exact(&mut buf).await.unwrap();
    assert_eq!(&buf, b"hello through the gateway");
    drop(s);

    // Unknown service, and a name outside the allowed suffix: the gateway closes.
    for target in [
        Target::new("nope.shop.svc.cluster.local", 7000),
        Target::new("evil.example.com", 7000),
    ] {
        let mut s = c.connect(&target, None).await.unwrap();
        let _ = s.write_all(b"x").await;
        let got = read_until_closed(&mut s, Duration::from_secs(5)).await;
        assert_eq!(
            got.as_deref(),
            Some(&b""[..]),
            "{target}: not closed without data"
        );
    }
    let (_, m) = admin_get(gw.admin, "/metrics").await;
    assert_eq!(
        metric(
            &m,
            "mc_gateway_connections_refused_total{reason=\"unknown_service\"}"
        ),
        1.0,
        "{m}"
    );
    assert_eq!(
        metric(
            &m,
            "mc_gateway_connections_refused_total{reason=\"bad_target\"}"
        ),
        1.0,
        "{m}"
    );
    assert_eq!(
        metric(
            &m,
            "mc_gateway_route_errors_total{reason=\"unknown_service\"}"
        ),
        1.0,
        "{m}"
    );
    assert!(metric(&m, "mc_gateway_bytes_in_total") > 25.0, "{m}");
    assert!(
        metric(&m, "mc_gateway_tls_handshake_seconds_count") >= 3.0,
        "{m}"
    );
    gw.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn opaque_100_mib_transfer_keeps_every_byte() {
    let pki = Pki::new();
    let sink = hash_backend().await;
    let gw = start(config(&pki, &[(SVC, 9000, sink)])).await;
    let client = pki.leaf("client", CLIENT_ID);
    let c = connector(&pki, &client, gw.addr, GATEWAY_ID);
    let data = pattern(42, 100 * 1024 * 1024);
    let want = ring::digest::digest(&ring::digest::SHA256, &data);

    let mut s = c.connect(&Target::new(SVC, 9000), None).await.unwrap();
    for chunk in data.chunks(1024 * 1024) {
        s.write_all(chunk).await.unwrap();
    }
    s.shutdown().await.unwrap();
    let mut got = Vec::new();
    s.read_to_end(&mut got).await.unwrap();
    assert_eq!(
        got.as_slice(),
        want.as_ref(),
        "SHA-256 differs after 100 MiB"
    );
    gw.shutdown().await;
}

/// An opaque stream after the header: bulk data both ways, key updates the client starts
/// (asking for one back), and close_notify at the end all work with a rustls client.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn opaque_streams_follow_key_updates_both_ways() {
    let pki = Pki::new();
    let echo = echo_backend().await;
    let client = pki.leaf("client", CLIENT_ID);
    let data = pattern(7, 4 * 1024 * 1024);
    let gw = start(config(&pki, &[(SVC, 7000, echo)])).await;
    let c = connector(&pki, &client, gw.addr, GATEWAY_ID);
    let mut s = c.connect(&Target::new(SVC, 7000), None).await.unwrap();
    for (i, chunk) in data.chunks(256 * 1024).enumerate() {
        if i % 4 == 1 {
            // A key update asking the gateway to update its sending key too.
            s.get_mut().1.refresh_traffic_keys().unwrap();
        }
        s.write_all(chunk).await.unwrap();
        let mut back = vec![0u8; chunk.len()];
        s.read_exact(&mut back).await.unwrap();
        assert!(back == chunk, "chunk {i} came back different");
    }
    close_both_ways(s).await;
    let (_, m) = admin_get(gw.admin, "/metrics").await;
    assert_eq!(metric(&m, "mc_gateway_opaque_splices_total"), 1.0, "{m}");
    assert!(
        metric(&m, "mc_gateway_bytes_in_total") > data.len() as f64,
        "{m}"
    );
    // The metrics name the client: how a target cluster sees which source's egress connects.
    let by_client = format!("mc_gateway_client_connections_total{{client_id=\"{CLIENT_ID}\"}}");
    assert_eq!(metric(&m, &by_client), 1.0, "{m}");
    gw.shutdown().await;
}

/// HTTP after a transport header: a 1 MiB request body in many records with a key update in
/// the middle, its 1 MiB echo back, a second request on the same connection, and close_notify
/// at the end.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_after_a_header_follows_key_updates_and_large_bodies() {
    let pki = Pki::new();
    let backend = http_backend().await;
    let client = pki.leaf("client", CLIENT_ID);
    let body: Vec<u8> = (0..1024 * 1024).map(|i| b'a' + (i % 26) as u8).collect();
    let gw = start(config(&pki, &[(SVC, 80, backend)])).await;
    let c = connector(&pki, &client, gw.addr, GATEWAY_ID);
    let mut s = c
        .connect(&Target::new(SVC, 80), Some(SessionProtocol::Http1))
        .await
        .unwrap();
    let head = format!(
        "POST /upload HTTP/1.1\r\nhost: {SVC}\r\ncontent-length: {}\r\n\r\n",
        body.len()
    );
    s.write_all(head.as_bytes()).await.unwrap();
    for (i, chunk) in body.chunks(100_000).enumerate() {
        if i == 5 {
            // A key update asking the gateway to update its sending key too.
            s.get_mut().1.refresh_traffic_keys().unwrap();
        }
        s.write_all(chunk).await.unwrap();
    }
    let (status, text) = read_response(&mut s).await;
    assert_eq!(status, 200);
    assert!(
        text.starts_with("POST /upload HTTP/1.1\n"),
        "{}",
        &text[..80]
    );
    assert!(
        text.ends_with(std::str::from_utf8(&body).unwrap()),
        "the echoed body differs"
    );
    s.write_all(format!("GET /again HTTP/1.1\r\nhost: {SVC}\r\n\r\n").as_bytes())
        .await
        .unwrap();
    let (status, text) = read_response(&mut s).await;
    assert_eq!(status, 200);
    assert!(text.starts_with("GET /again HTTP/1.1\n"), "{text}");
    close_both_ways(s).await;
    let (_, m) = admin_get(gw.admin, "/metrics").await;
    assert_eq!(metric(&m, "mc_gateway_http_streams_total"), 1.0, "{m}");
    gw.shutdown().await;
}

/// Sends close_notify and reads to the end: rustls errors on an EOF without close_notify, so
/// this also checks that the gateway sends one, and nothing after it.
async fn close_both_ways<S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin>(mut s: S) {
    s.shutdown().await.unwrap();
    let mut rest = Vec::new();
    s.read_to_end(&mut rest).await.unwrap();
    assert!(rest.is_empty());
}

/// Reads one HTTP/1.1 response with a content-length: (status, body as text).
async fn read_response<S: tokio::io::AsyncRead + Unpin>(s: &mut S) -> (u16, String) {
    let (head, body) = read_message(s).await;
    (head[9..12].parse().unwrap(), body)
}

/// Reads a response head, byte by byte (nothing after it), lowercased.
async fn read_head<S: tokio::io::AsyncRead + Unpin>(s: &mut S) -> String {
    let mut buf = Vec::new();
    let mut byte = [0u8; 1];
    while !buf.ends_with(b"\r\n\r\n") {
        s.read_exact(&mut byte).await.unwrap();
        buf.push(byte[0]);
    }
    String::from_utf8(buf).unwrap().to_ascii_lowercase()
}

/// Reads one response framed by Content-Length: its head (lowercased) and its body.
async fn read_message<S: tokio::io::AsyncRead + Unpin>(s: &mut S) -> (String, String) {
    let head = read_head(s).await;
    let len: usize = head
        .lines()
        .find_map(|l| l.strip_prefix("content-length:"))
        .map(|v| v.trim().parse().unwrap())
        .unwrap();
    let mut body = vec![0u8; len];
    s.read_exact(&mut body).await.unwrap();
    (head, String::from_utf8(body).unwrap())
}

/// An HTTP/1 backend that answers with every request field it received (`name: value`
/// lines), and sends `x-resp-hop` (named in its `Connection`) and `x-resp-end` back.
async fn fields_backend() -> std::net::SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let (tcp, _) = listener.accept().await.unwrap();
            tokio::spawn(async move {
                let service = hyper::service::service_fn(
                    |req: hyper::Request<hyper::body::Incoming>| async move {
                        let fields: String = req
                            .headers()
                            .iter()
                            .map(|(k, v)| {
                                format!("{k}: {}\n", String::from_utf8_lossy(v.as_bytes()))
                            })
                            .collect();
                        let resp = hyper::Response::builder()
                            .header("connection", "x-resp-hop")
                            .header("x-resp-hop", "1")
                            .header("x-resp-end", "1")
                            .body(Full::new(Bytes::from(fields)))
                            .unwrap();
                        Ok::<_, std::convert::Infallible>(resp)
                    },
                );
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(tcp), service)
                    .await;
            });
        }
    });
    addr
}

/// The hop-by-hop policy holds on both HTTP paths: an HTTP/1.1 request goes through the lean
/// forwarder (answered `HTTP/1.1`), an HTTP/1.0 one is handed to hyper (answered `HTTP/1.0`).
/// On each, the fields a `Connection` names and the hop-by-hop fields are removed both ways,
/// a client's `l5d-client-id` is replaced, and end-to-end fields arrive.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fields_named_in_connection_are_dropped_and_end_to_end_fields_kept_on_both_http_paths() {
    let pki = Pki::new();
    let backend = fields_backend().await;
    let gw = start(config(&pki, &[(SVC, 8080, backend)])).await;
    let client = pki.leaf("client", CLIENT_ID);
    let c = connector(&pki, &client, gw.addr, GATEWAY_ID);
    for version in ["HTTP/1.1", "HTTP/1.0"] {
        let mut s = c
            .connect(&Target::new(SVC, 8080), Some(SessionProtocol::Http1))
            .await
            .unwrap();
        // The second Connection line holds a byte outside ASCII (obs-text): the names it
        // lists are still connection-only.
        let mut request = format!(
            "GET /fields {version}\r\nhost: {SVC}:8080\r\nconnection: x-hop, keep-alive\r\n\
             connection: x-hop2, caf"
        )
        .into_bytes();
        request.push(0xe9);
        request.extend_from_slice(
            b"\r\nx-hop: secret\r\nx-hop2: secret\r\nkeep-alive: timeout=5\r\n\
              proxy-authorization: basic x\r\nl5d-client-id: forged\r\nx-end: kept\r\n\r\n",
        );
        s.write_all(&request).await.unwrap();
        let (head, body) = read_message(&mut s).await;
        assert!(
            head.starts_with(&version.to_ascii_lowercase()),
            "{version}: {head}"
        );
        assert!(body.contains("x-end: kept\n"), "{version}: {body}");
        assert!(
            body.contains(&format!("l5d-client-id: {CLIENT_ID}\n")),
            "{version}: {body}"
        );
        for gone in [
            "x-hop",
            "keep-alive",
            "proxy-authorization",
            "forged",
            "caf",
        ] {
            assert!(
                !body.contains(gone),
                "{version}: {gone} reached the target: {body}"
            );
        }
        assert!(head.contains("x-resp-end: 1"), "{version}: {head}");
        assert!(!head.contains("x-resp-hop"), "{version}: {head}");
    }
    gw.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_verifies_the_gateway_identity() {
    let pki = Pki::new();
    let gw = start(config(&pki, &[])).await;
    let client = pki.leaf("client", CLIENT_ID);
    let c = connector(
        &pki,
        &client,
        gw.addr,
        "other-gateway.linkerd-multicluster.serviceaccount.identity.linkerd.cluster.local",
    );
    let err = c.connect(&Target::new(SVC, 80), None).await.unwrap_err();
    assert!(err.to_string().contains("handshake"), "{err}");

    // A gateway from another trust root is refused too, even with the right name.
    let other = Pki::new();
    let other_client = other.leaf("client", CLIENT_ID);
    let c = GatewayConnector::new(
        &other_client.cert,
        &other_client.key,
        &other.anchors(),
        gw.addr.to_string(),
        GATEWAY_ID,
    )
    .unwrap();
    assert!(c.connect(&Target::new(SVC, 80), None).await.is_err());
    gw.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gateway_refuses_its_own_identity_and_applies_policy() {
    let pki = Pki::new();
    let echo = echo_backend().await;
    let mut cfg = config(
        &pki,
        &[
            (SVC, 7000, echo),
            ("open.shop.svc.cluster.local", 7000, echo),
        ],
    );
    cfg.policy = Policy::from_yaml(
        &format!("rules:\n  - services: ['{SVC}']\n    clients: ['*.shop.serviceaccount.identity.linkerd.cluster.local']\n"),
        std::path::Path::new("test"),
    )
    .unwrap()
    .into();
    let gw = start(cfg).await;

    // Loop: the client presents the gateway's own identity.
    let me = pki.leaf("me", GATEWAY_ID);
    let got = echo_once(
        connector(&pki, &me, gw.addr, GATEWAY_ID),
        Target::new(SVC, 7000),
    )
    .await;
    assert!(
        got.is_empty(),
        "a client with the gateway identity was served"
    );

    // Policy: shop clients may reach SVC, others may not, but may reach ungoverned services.
    let shop = pki.leaf("shop", CLIENT_ID);
    let stranger = pki.leaf(
        "stranger",
        "x.other.serviceaccount.identity.linkerd.cluster.local",
    );
    assert_eq!(
        echo_once(
            connector(&pki, &shop, gw.addr, GATEWAY_ID),
            Target::new(SVC, 7000)
        )
        .await,
        b"ping"
    );
    assert!(
        echo_once(
            connector(&pki, &stranger, gw.addr, GATEWAY_ID),
            Target::new(SVC, 7000)
        )
        .await
        .is_empty()
    );
    assert_eq!(
        echo_once(
            connector(&pki, &stranger, gw.addr, GATEWAY_ID),
            Target::new("open.shop.svc.cluster.local", 7000)
        )
        .await,
        b"ping"
    );
    let (_, m) = admin_get(gw.admin, "/metrics").await;
    assert_eq!(
        metric(&m, "mc_gateway_connections_refused_total{reason=\"loop\"}"),
        1.0,
        "{m}"
    );
    assert_eq!(
        metric(
            &m,
            "mc_gateway_connections_refused_total{reason=\"forbidden\"}"
        ),
        1.0,
        "{m}"
    );
    gw.shutdown().await;
}

/// An HTTP/1.1 backend that accepts any upgrade: it answers `101` with the request's
/// `Upgrade` and its `sec-websocket-key` back (so a test sees that end-to-end fields arrived),
/// then sends `hello\n` on the switched connection and echoes what it receives.
async fn upgrade_backend() -> std::net::SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let (tcp, _) = listener.accept().await.unwrap();
            let service = hyper::service::service_fn(
                |mut req: hyper::Request<hyper::body::Incoming>| async move {
                    let field = |name: &str| req.headers().get(name).cloned();
                    let (protocol, key) = (field("upgrade"), field("sec-websocket-key"));
                    let listed = field("connection").is_some_and(|c| c == "upgrade");
                    let mut resp = hyper::Response::new(Full::new(Bytes::new()));
                    let (Some(protocol), Some(key), true) = (protocol, key, listed) else {
                        *resp.status_mut() = hyper::StatusCode::BAD_REQUEST;
                        return Ok::<_, std::convert::Infallible>(resp);
                    };
                    let on = hyper::upgrade::on(&mut req);
                    tokio::spawn(async move {
                        let mut io = TokioIo::new(on.await.unwrap());
                        io.write_all(b"hello\n").await.unwrap();
                        let mut buf = [0u8; 1024];
                        loop {
                            match io.read(&mut buf).await {
                                Ok(0) | Err(_) => return,
                                Ok(n) => io.write_all(&buf[..n]).await.unwrap(),
                            }
                        }
                    });
                    *resp.status_mut() = hyper::StatusCode::SWITCHING_PROTOCOLS;
                    resp.headers_mut().insert("upgrade", protocol);
                    resp.headers_mut()
                        .insert("connection", "upgrade".parse().unwrap());
                    resp.headers_mut().insert("x-key", key);
                    Ok(resp)
                },
            );
            tokio::spawn(
                hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(tcp), service)
                    .with_upgrades(),
            );
        }
    });
    addr
}

/// A WebSocket-style upgrade through the gateway gets `101` with `Upgrade` and `Connection:
/// upgrade` kept both ways, and then bytes flow both ways on the switched connection until the
/// idle timeout closes it; without `Connection: upgrade` the target sees no upgrade.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_websocket_upgrade_gets_101_and_bytes_flow_both_ways() {
    let pki = Pki::new();
    let backend = upgrade_backend().await;
    let mut cfg = config(&pki, &[(SVC, 8080, backend)]);
    cfg.limits.idle_timeout = Duration::from_secs(2);
    let gw = start(cfg).await;
    let client = pki.leaf("client", CLIENT_ID);
    let c = connector(&pki, &client, gw.addr, GATEWAY_ID);
    let mut s = c
        .connect(&Target::new(SVC, 8080), Some(SessionProtocol::Http1))
        .await
        .unwrap();
    let request = format!(
        "GET /ws HTTP/1.1\r\nhost: {SVC}:8080\r\nconnection: keep-alive, Upgrade\r\n\
         upgrade: websocket\r\nsec-websocket-key: dGhlIHNhbXBsZSBub25jZQ==\r\n\
         sec-websocket-version: 13\r\n\r\n"
    );
    s.write_all(request.as_bytes()).await.unwrap();
    let head = read_head(&mut s).await;
    assert!(head.starts_with("http/1.1 101"), "{head}");
    assert!(head.contains("upgrade: websocket\r\n"), "{head}");
    assert!(head.contains("connection: upgrade\r\n"), "{head}");
    assert!(
        head.contains("x-key: dghlihnhbxbszsbub25jzq==\r\n"),
        "{head}"
    );
    let mut hello = [0u8; 6];
    s.read_exact(&mut hello).await.unwrap();
    assert_eq!(&hello, b"hello\n");
    for round in 0..3u8 {
        let frame = vec![round; 3000];
        s.write_all(&frame).await.unwrap();
        let mut back = vec![0u8; frame.len()];
        s.read_exact(&mut back).await.unwrap();
        assert_eq!(back, frame, "round {round}");
    }
    // A switched connection keeps the connection's idle timeout: idle, it is closed.
    let closed = read_until_closed(&mut s, Duration::from_secs(10)).await;
    assert_eq!(
        closed.as_deref(),
        Some(&b""[..]),
        "an idle tunnel stayed open"
    );
    drop(s);
    // Without `Connection: upgrade`, `Upgrade` is a hop-by-hop field like any other: the
    // target sees a plain request (and this backend refuses it).
    let mut s = c
        .connect(&Target::new(SVC, 8080), Some(SessionProtocol::Http1))
        .await
        .unwrap();
    let request = format!(
        "GET /ws HTTP/1.1\r\nhost: {SVC}:8080\r\nupgrade: websocket\r\n\
         sec-websocket-key: a2V5\r\ncontent-length: 0\r\n\r\n"
    );
    s.write_all(request.as_bytes()).await.unwrap();
    let (status, _) = read_response(&mut s).await;
    assert_eq!(status, 400);
    gw.shutdown().await;
}

/// Sends `ping` on an opaque stream to `target` and returns what comes back before the close
/// (empty when the gateway refused the client).
async fn echo_once(c: GatewayConnector, target: Target) -> Vec<u8> {
    // A refused client may see the close as early as its own writes.
    let Ok(mut s) = c.connect(&target, None).await else {
        return Vec::new();
    };
    if s.write_all(b"ping").await.is_err() {
        return Vec::new();
    }
    read_until_closed_or(&mut s, 4).await
}

/// Writes a leaf whose only identity is the URI SAN `uri` (as SPIRE issues them), signed by
/// the test issuer, as `<file>.crt` (chain) and `<file>.key`.
fn uri_leaf(pki: &Pki, file: &str, uri: &str) -> Files {
    let issuer_key = rcgen::KeyPair::from_pem(&pki.issuer.key_pem).unwrap();
    let issuer = rcgen::Issuer::from_ca_cert_pem(&pki.issuer.cert_pem, issuer_key).unwrap();
    let key = rcgen::KeyPair::generate().unwrap();
    let mut params = rcgen::CertificateParams::default();
    params.subject_alt_names = vec![rcgen::SanType::URI(uri.to_string().try_into().unwrap())];
    params.is_ca = rcgen::IsCa::ExplicitNoCa;
    params.key_usages = vec![rcgen::KeyUsagePurpose::DigitalSignature];
    params.extended_key_usages = vec![
        rcgen::ExtendedKeyUsagePurpose::ServerAuth,
        rcgen::ExtendedKeyUsagePurpose::ClientAuth,
    ];
    let cert = params.signed_by(&key, &issuer).unwrap();
    let files = Files {
        cert: pki.dir.path().join(format!("{file}.crt")),
        key: pki.dir.path().join(format!("{file}.key")),
    };
    std::fs::write(
        &files.cert,
        format!("{}{}", cert.pem(), pki.issuer.cert_pem),
    )
    .unwrap();
    std::fs::write(&files.key, key.serialize_pem()).unwrap();
    files
}

/// A client whose certificate carries a SPIFFE ID (URI SAN) instead of a DNS name is admitted;
/// its ID reaches the target in `l5d-client-id` and `Forwarded` on both HTTP paths (the lean
/// HTTP/1 forwarder and hyper's HTTP/2), and the policy matches it. A URI SAN that is not a
/// SPIFFE ID is still no identity.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_spiffe_client_identity_is_admitted_forwarded_and_matched_by_policy() {
    const SHOP: &str = "spiffe://cluster.local/ns/shop/sa/web";
    let pki = Pki::new();
    let backend = http_backend().await;
    let echo = echo_backend().await;
    let mut cfg = config(&pki, &[(SVC, 8080, backend), (SVC, 7000, echo)]);
    cfg.policy = Policy::from_yaml(
        &format!(
            "rules:\n  - services: ['{SVC}']\n    clients: ['spiffe://cluster.local/ns/shop/*']\n"
        ),
        std::path::Path::new("test"),
    )
    .unwrap()
    .into();
    let gw = start(cfg).await;
    let shop = uri_leaf(&pki, "spiffe-shop", SHOP);
    let c = connector(&pki, &shop, gw.addr, GATEWAY_ID);
    for (protocol, h2) in [
        (SessionProtocol::Http1, false),
        (SessionProtocol::Http2, true),
    ] {
        let stream = c
            .connect(&Target::new(SVC, 8080), Some(protocol))
            .await
            .unwrap();
        let (status, body) = http_get(stream, h2, Some(("l5d-client-id", "forged"))).await;
        assert_eq!(status, 200, "{body}");
        assert!(body.contains(&format!("l5d-client-id: {SHOP}\n")), "{body}");
        assert!(
            body.contains(&format!(
                "forwarded: by={GATEWAY_ID};for=\"{SHOP}\";host={SVC}:8080;proto=https"
            )),
            "{body}"
        );
    }
    assert_eq!(echo_once(c, Target::new(SVC, 7000)).await, b"ping");
    // Another namespace's SPIFFE ID is admitted but not allowed to SVC.
    let other = uri_leaf(
        &pki,
        "spiffe-other",
        "spiffe://cluster.local/ns/other/sa/web",
    );
    let c = connector(&pki, &other, gw.addr, GATEWAY_ID);
    assert!(echo_once(c, Target::new(SVC, 7000)).await.is_empty());
    // A URI that is not a SPIFFE workload ID names nobody.
    let web = uri_leaf(&pki, "https-uri", "https://cluster.local/ns/shop/sa/web");
    let c = connector(&pki, &web, gw.addr, GATEWAY_ID);
    assert!(echo_once(c, Target::new(SVC, 7000)).await.is_empty());
    let (_, m) = admin_get(gw.admin, "/metrics").await;
    for (reason, want) in [("forbidden", 1.0), ("no_identity", 1.0)] {
        let series = format!("mc_gateway_connections_refused_total{{reason=\"{reason}\"}}");
        assert_eq!(metric(&m, &series), want, "{reason}: {m}");
    }
    gw.shutdown().await;
}

/// Reads up to `n` bytes, stopping early at close.
async fn read_until_closed_or<S: tokio::io::AsyncRead + Unpin>(s: &mut S, n: usize) -> Vec<u8> {
    let mut out = Vec::new();
    let mut buf = [0u8; 64];
    while out.len() < n {
        match tokio::time::timeout(Duration::from_secs(5), s.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) => break,
            Ok(Ok(k)) => out.extend_from_slice(&buf[..k]),
            Err(_) => panic!("neither data nor close within 5 s"),
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forwarder_splits_by_weight_between_local_and_gateway() {
    let pki = Pki::new();
    // The "remote" service answers "remote", the local one "local".
    let remote = tagged_backend("remote").await;
    let local = tagged_backend("local").await;
    let gw = start(config(&pki, &[(SVC, 80, remote)])).await;
    let client = pki.leaf("client", CLIENT_ID);
    let backends = vec![
        Backend {
            name: "local".into(),
            kind: BackendKind::Local(local.to_string()),
            weight: 1,
        },
        Backend {
            name: "gateway".into(),
            kind: BackendKind::Gateway(connector(&pki, &client, gw.addr, GATEWAY_ID)),
            weight: 3,
        },
    ];
    let fwd = Forwarder::bind(
        "127.0.0.1:0".parse().unwrap(),
        backends,
        Target::new(SVC, 80),
        None,
    )
    .await
    .unwrap();
    let addr = fwd.local_addr().unwrap();
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(fwd.run(async move {
        let _ = rx.await;
    }));
    let mut counts = std::collections::HashMap::new();
    for _ in 0..8 {
        let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
        let mut got = String::new();
        s.read_to_string(&mut got).await.unwrap();
        *counts.entry(got).or_insert(0) += 1;
    }
    assert_eq!(counts.get("remote"), Some(&6), "{counts:?}");
    assert_eq!(counts.get("local"), Some(&2), "{counts:?}");
    let _ = tx.send(());
    task.await.unwrap().unwrap();
    gw.shutdown().await;
}

/// A TCP backend that writes `tag` and closes.
async fn tagged_backend(tag: &'static str) -> std::net::SocketAddr {
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let (mut s, _) = l.accept().await.unwrap();
            tokio::spawn(async move {
                let _ = s.write_all(tag.as_bytes()).await;
                let _ = s.shutdown().await;
            });
        }
    });
    addr
}
