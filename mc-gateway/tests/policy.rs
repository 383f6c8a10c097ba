//! The allow-list end to end, with real rustls clients: a denied HTTP request gets `403` with
//! the reason and the rule to add (the lean HTTP/1 forwarder, hyper's HTTP/2, with and without
//! the transport header), a denied opaque stream a TLS alert (`close_notify`) and a close; the
//! policy file is reloaded while the gateway runs, and an invalid file keeps the last good
//! policy and is counted.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::path::Path;
use std::time::{Duration, Instant};

use bytes::Bytes;
use common::*;
use http_body_util::{BodyExt, Full};
use hyper_util::rt::TokioIo;
use mc_core::transport::SessionProtocol;
use mc_gateway::PolicySource;
use mc_gateway::Target;
use mc_gateway::client::GatewayConnector;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const STRANGER: &str = "x.other.serviceaccount.identity.linkerd.cluster.local";

/// A policy that lets only `clients` reach `SVC`.
fn policy_for(clients: &[&str]) -> String {
    let clients: Vec<String> = clients.iter().map(|c| format!("'{c}'")).collect();
    format!(
        "rules:\n  - services: ['{SVC}']\n    clients: [{}]\n",
        clients.join(", ")
    )
}

/// Replaces `path` atomically, as a ConfigMap volume update does.
fn write_atomic(path: &Path, text: &str) {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, text).unwrap();
    std::fs::rename(&tmp, path).unwrap();
}

fn connector(pki: &Pki, client: &Files, gw: std::net::SocketAddr) -> GatewayConnector {
    GatewayConnector::new(
        &client.cert,
        &client.key,
        &pki.anchors(),
        gw.to_string(),
        GATEWAY_ID,
    )
    .unwrap()
}

/// One HTTP request on `io` (HTTP/2 when `h2`): status and body.
async fn get<S>(io: S, h2: bool) -> (u16, String)
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let req = hyper::Request::get(format!("http://{SVC}/"))
        .header("host", SVC)
        .body(Full::new(Bytes::new()))
        .unwrap();
    send_once(io, h2, req).await
}

/// One HTTP/1.1 request as `client` on a new mTLS connection (no transport header).
async fn get_direct(pki: &Pki, gw: &Running, client: &Files) -> (u16, String) {
    let tls = raw_client(pki, Some(client), &[b"http/1.1"]);
    get(raw_connect(gw.addr, tls).await.unwrap(), false).await
}

/// Reads what the gateway sends on a refused opaque stream: `Ok(bytes)` when the stream ended
/// with `close_notify` (rustls reports a close without it as an error).
async fn opaque_answer(c: &GatewayConnector) -> std::io::Result<Vec<u8>> {
    let mut s = c.connect(&Target::new(SVC, 7000), None).await.unwrap();
    let mut out = Vec::new();
    tokio::time::timeout(Duration::from_secs(5), s.read_to_end(&mut out))
        .await
        .expect("the gateway closes a denied stream")?;
    Ok(out)
}

async fn metrics(gw: &Running) -> String {
    admin_get(gw.admin, "/metrics").await.1
}

/// Polls the metrics until `series` reaches `value`.
async fn wait_metric(gw: &Running, series: &str, value: f64) {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let m = metrics(gw).await;
        if metric(&m, series) == value {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{series} never reached {value}: {m}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn denied_http_gets_403_with_the_reason_and_denied_opaque_an_alert_and_a_close() {
    let pki = Pki::new();
    let (http, echo) = (http_backend().await, echo_backend().await);
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("policy.yaml");
    write_atomic(&file, &policy_for(&[CLIENT_ID]));
    let mut cfg = config(&pki, &[(SVC, 80, http), (SVC, 7000, echo)]);
    cfg.policy = PolicySource::File(file);
    let gw = start(cfg).await;
    let (shop, stranger) = (pki.leaf("shop", CLIENT_ID), pki.leaf("stranger", STRANGER));

    // HTTP/1.1 without a transport header (the lean forwarder).
    assert_eq!(get_direct(&pki, &gw, &shop).await.0, 200);
    let (status, body) = get_direct(&pki, &gw, &stranger).await;
    assert_eq!(status, 403, "{body}");
    let rule = format!("{{services: [\"{SVC}\"], clients: [\"{STRANGER}\"]}}");
    for part in [STRANGER, &format!("{SVC}:80"), &rule, "fix:"] {
        assert!(body.contains(part), "{part} not in {body}");
    }

    // HTTP/2 through the transport header (hyper): decided per request, also a 403.
    let target = Target::new(SVC, 80);
    let c = connector(&pki, &stranger, gw.addr);
    let s = c
        .connect(&target, Some(SessionProtocol::Http2))
        .await
        .unwrap();
    let (status, body) = get(s, true).await;
    assert_eq!(status, 403, "{body}");
    assert!(body.contains(&rule), "{body}");
    let s = connector(&pki, &shop, gw.addr)
        .connect(&target, Some(SessionProtocol::Http2))
        .await
        .unwrap();
    assert_eq!(get(s, true).await.0, 200);

    // Opaque: the allowed client is spliced; the denied one gets close_notify, then the
    // close, and not a byte from the target.
    let mut s = connector(&pki, &shop, gw.addr)
        .connect(&Target::new(SVC, 7000), None)
        .await
        .unwrap();
    s.write_all(b"ping").await.unwrap();
    let mut pong = [0u8; 4];
    s.read_exact(&mut pong).await.unwrap();
    assert_eq!(&pong, b"ping");
    let answer = opaque_answer(&c).await;
    assert_eq!(answer.unwrap(), b"", "a clean TLS close, nothing else");

    let m = metrics(&gw).await;
    let denials =
        format!("mc_gateway_policy_denials_total{{rule=\"{SVC}\",client_id=\"{STRANGER}\"}}");
    assert_eq!(metric(&m, &denials), 3.0, "{m}");
    assert_eq!(
        metric(
            &m,
            "mc_gateway_connections_refused_total{reason=\"forbidden\"}"
        ),
        1.0,
        "{m}"
    );
    assert_eq!(metric(&m, "mc_gateway_policy_rules "), 1.0, "{m}");
    assert!(metric(&m, "mc_gateway_policy_last_load_timestamp_seconds ") > 1.7e9);
    assert_eq!(metric(&m, &denials.replace(STRANGER, CLIENT_ID)), 0.0);
    gw.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rewritten_policy_applies_without_restart_and_an_invalid_one_keeps_the_last_good() {
    let pki = Pki::new();
    let http = http_backend().await;
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("policy.yaml");
    write_atomic(&file, &policy_for(&[CLIENT_ID]));
    let mut cfg = config(&pki, &[(SVC, 80, http)]);
    cfg.policy = PolicySource::File(file.clone());
    let gw = start(cfg).await;
    let stranger = pki.leaf("stranger", STRANGER);
    assert_eq!(get_direct(&pki, &gw, &stranger).await.0, 403);

    // Let the stranger in: the next connection is served.
    write_atomic(&file, &policy_for(&[CLIENT_ID, STRANGER]));
    wait_metric(&gw, "mc_gateway_policy_reloads_total", 1.0).await;
    assert_eq!(get_direct(&pki, &gw, &stranger).await.0, 200);
    assert_eq!(metric(&metrics(&gw).await, "mc_gateway_policy_rules "), 1.0);

    // A keep-alive connection the stranger holds open across the next changes.
    let tls = raw_client(&pki, Some(&stranger), &[b"http/1.1"]);
    let io = TokioIo::new(raw_connect(gw.addr, tls).await.unwrap());
    let (mut send, conn) = hyper::client::conn::http1::handshake(io).await.unwrap();
    tokio::spawn(conn);
    let mut status = async || {
        let req = hyper::Request::get("/")
            .header("host", SVC)
            .body(Full::new(Bytes::new()))
            .unwrap();
        let resp = send.send_request(req).await.unwrap();
        let status = resp.status().as_u16();
        resp.into_body().collect().await.unwrap();
        status
    };
    assert_eq!(status().await, 200);

    // Invalid rewrites (not YAML; an empty pattern): counted, the last good policy stays.
    write_atomic(&file, "rules: [");
    wait_metric(&gw, "mc_gateway_policy_reload_failures_total", 1.0).await;
    write_atomic(&file, "rules:\n  - services: ['']\n    clients: ['*']\n");
    wait_metric(&gw, "mc_gateway_policy_reload_failures_total", 2.0).await;
    assert_eq!(status().await, 200);
    assert_eq!(get_direct(&pki, &gw, &stranger).await.0, 200);
    let m = metrics(&gw).await;
    assert_eq!(metric(&m, "mc_gateway_policy_reloads_total"), 1.0, "{m}");
    assert_eq!(metric(&m, "mc_gateway_policy_rules "), 1.0, "{m}");

    // Out again: the same open connection is denied from its next request on.
    write_atomic(&file, &policy_for(&[CLIENT_ID]));
    wait_metric(&gw, "mc_gateway_policy_reloads_total", 2.0).await;
    assert_eq!(status().await, 403);
    gw.shutdown().await;
}
