//! Real clients against the gateway: curl with client certificates, routed by Host, and the
//! handshake refusals; openssl s_client showing TLS 1.2 is refused.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::path::Path;
use std::process::Output;
use std::time::{Duration, SystemTime};

use common::*;
use mc_core::pki::LeafOptions;

const CURL: &str = "/usr/bin/curl";
const OPENSSL: &str = "/usr/bin/openssl";

fn require(tool: &str) {
    assert!(
        Path::new(tool).exists(),
        "{tool} is required for this test and is missing: install it (apt-get install curl openssl)"
    );
}

/// `openssl s_client` to the gateway with `client`'s certificate, verifying the gateway against
/// the anchors (`-brief`); `extra` goes after `s_client`.
fn s_client(
    gw: std::net::SocketAddr,
    pki: &Pki,
    client: &Files,
    extra: &[&str],
) -> tokio::process::Command {
    let mut cmd = tokio::process::Command::new(OPENSSL);
    cmd.arg("s_client")
        .args(extra)
        .arg("-connect")
        .arg(gw.to_string())
        .arg("-CAfile")
        .arg(pki.anchors())
        .arg("-cert")
        .arg(&client.cert)
        .arg("-key")
        .arg(&client.key)
        .args(["-verify_return_error", "-brief"]);
    cmd
}

/// Runs curl against the gateway for `https://<host>/path`, connecting to the gateway.
async fn curl(
    gw: std::net::SocketAddr,
    pki: &Pki,
    client: Option<&Files>,
    host_port: &str,
    extra: &[&str],
) -> Output {
    require(CURL);
    let url = format!("https://{host_port}/hello");
    let connect_to = format!("{host_port}:127.0.0.1:{}", gw.port());
    let mut cmd = tokio::process::Command::new(CURL);
    cmd.args(["-sS", "--max-time", "10", "--connect-to", &connect_to])
        .arg("--cacert")
        .arg(pki.anchors())
        .args(extra);
    if let Some(f) = client {
        cmd.arg("--cert").arg(&f.cert).arg("--key").arg(&f.key);
    }
    cmd.arg(url);
    cmd.output().await.unwrap()
}

/// curl verifies the server name against the URL host; the gateway certificate carries the
/// gateway identity. So the URL host is the gateway identity, and the target goes in Host.
async fn curl_target(
    gw: std::net::SocketAddr,
    pki: &Pki,
    client: Option<&Files>,
    target_host: &str,
    extra: &[&str],
) -> Output {
    let mut args = vec!["-H".to_owned(), format!("Host: {target_host}")];
    args.extend(extra.iter().map(|s| s.to_string()));
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    curl(gw, pki, client, &format!("{GATEWAY_ID}:4143"), &args).await
}

fn text(o: &Output) -> String {
    format!(
        "status {:?}\nstdout: {}\nstderr: {}",
        o.status,
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn curl_with_client_cert_reaches_the_backend_by_host() {
    let pki = Pki::new();
    let backend = http_backend().await;
    let gw = start(config(&pki, &[(SVC, 80, backend)])).await;
    let client = pki.leaf("client", CLIENT_ID);

    for http in ["--http1.1", "--http2"] {
        let out = curl_target(gw.addr, &pki, Some(&client), &format!("{SVC}:80"), &[http]).await;
        assert!(out.status.success(), "{http}: {}", text(&out));
        let body = String::from_utf8_lossy(&out.stdout);
        assert!(body.starts_with("GET /hello HTTP/1.1"), "{body}");
        assert!(body.contains(&format!("host: {SVC}:80")), "{body}");
        assert!(
            body.contains(&format!("l5d-client-id: {CLIENT_ID}")),
            "{body}"
        );
        assert!(
            body.contains(&format!(
                "forwarded: by={GATEWAY_ID};for={CLIENT_ID};host={SVC}:80;proto=https"
            )),
            "{body}"
        );
    }
    // A Host without a port means the default HTTP port (80).
    let out = curl_target(gw.addr, &pki, Some(&client), SVC, &["--http1.1"]).await;
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("GET /hello"),
        "{}",
        text(&out)
    );

    // A client-supplied l5d-client-id is overwritten with the authenticated identity.
    let out = curl_target(
        gw.addr,
        &pki,
        Some(&client),
        &format!("{SVC}:80"),
        &["-H", "l5d-client-id: admin.forged"],
    )
    .await;
    let body = String::from_utf8_lossy(&out.stdout);
    assert!(
        body.contains(&format!("l5d-client-id: {CLIENT_ID}\n")),
        "{body}"
    );
    assert!(!body.contains("forged"), "{body}");

    let (_, metrics) = admin_get(gw.admin, "/metrics").await;
    assert!(
        metric(
            &metrics,
            &format!("mc_gateway_http_requests_total{{target=\"{SVC}:80\",status=\"200\"}}")
        ) >= 4.0,
        "{metrics}"
    );
    gw.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn curl_gets_clear_http_errors_for_bad_targets() {
    let pki = Pki::new();
    let backend = http_backend().await;
    let locked = "locked.shop.svc.cluster.local";
    let mut cfg = config(&pki, &[(SVC, 80, backend), (locked, 80, backend)]);
    cfg.policy = mc_gateway::Policy::from_yaml(
        &format!("rules: [{{services: ['{locked}'], clients: ['other.*']}}]"),
        std::path::Path::new("policy.yaml"),
    )
    .unwrap()
    .into();
    let gw = start(cfg).await;
    let client = pki.leaf("client", CLIENT_ID);
    // The allow-list's denial names the rule to add.
    let rule = format!("{{services: [\"{locked}\"], clients: [\"{CLIENT_ID}\"]}}");
    let cases = [
        (
            "missing.shop.svc.cluster.local:80",
            "502",
            "unknown service",
        ),
        ("example.com:80", "400", "not under an allowed suffix"),
        ("locked.shop.svc.cluster.local:80", "403", rule.as_str()),
    ];
    for (host, code, msg) in cases {
        let out = curl_target(
            gw.addr,
            &pki,
            Some(&client),
            host,
            &["-w", "\n%{http_code}"],
        )
        .await;
        let body = String::from_utf8_lossy(&out.stdout);
        assert!(body.trim_end().ends_with(code), "{host}: {}", text(&out));
        assert!(body.contains(msg), "{host}: {body}");
    }
    // A request that already passed through this gateway is a loop.
    let out = curl_target(
        gw.addr,
        &pki,
        Some(&client),
        &format!("{SVC}:80"),
        &[
            "-H",
            &format!("Forwarded: by={GATEWAY_ID};for=x"),
            "-w",
            "\n%{http_code}",
        ],
    )
    .await;
    assert!(
        String::from_utf8_lossy(&out.stdout)
            .trim_end()
            .ends_with("508"),
        "{}",
        text(&out)
    );
    let (_, metrics) = admin_get(gw.admin, "/metrics").await;
    assert_eq!(
        metric(
            &metrics,
            "mc_gateway_route_errors_total{reason=\"unknown_service\"}"
        ),
        1.0,
        "{metrics}"
    );
    assert_eq!(
        metric(&metrics, "mc_gateway_route_errors_total{reason=\"loop\"}"),
        1.0
    );
    gw.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn curl_is_refused_at_the_handshake_without_a_valid_client_cert() {
    let pki = Pki::new();
    let backend = http_backend().await;
    let gw = start(config(&pki, &[(SVC, 80, backend)])).await;
    let now = SystemTime::now();
    let day = Duration::from_secs(86_400);

    let other = Pki::new();
    let foreign = other.leaf("foreign", CLIENT_ID);
    let expired = pki.leaf_with(
        "expired",
        CLIENT_ID,
        &LeafOptions {
            not_before: now - 2 * day,
            not_after: now - day,
            ..LeafOptions::new(now)
        },
    );
    let server_only = pki.leaf_with(
        "server-only",
        CLIENT_ID,
        &LeafOptions {
            server_auth: true,
            client_auth: false,
            ..LeafOptions::new(now)
        },
    );
    let cases: [(&str, Option<&Files>, &str); 4] = [
        ("no client certificate", None, "no_client_cert"),
        (
            "certificate from another CA",
            Some(&foreign),
            "unknown_issuer",
        ),
        ("expired certificate", Some(&expired), "expired"),
        (
            "certificate without clientAuth",
            Some(&server_only),
            "bad_purpose",
        ),
    ];
    for (what, client, reason) in cases {
        let out = curl_target(gw.addr, &pki, client, &format!("{SVC}:80"), &[]).await;
        assert!(!out.status.success(), "{what} was accepted: {}", text(&out));
        assert!(
            !String::from_utf8_lossy(&out.stdout).contains("GET /hello"),
            "{what} reached the backend: {}",
            text(&out)
        );
        // The refusal happened at the handshake: counted with its reason.
        let (_, metrics) = admin_get(gw.admin, "/metrics").await;
        assert!(
            metric(
                &metrics,
                &format!("mc_gateway_tls_handshake_errors_total{{reason=\"{reason}\"}}")
            ) >= 1.0,
            "{what}: no handshake error {reason}: {}\n{metrics}",
            text(&out)
        );
    }
    let (_, metrics) = admin_get(gw.admin, "/metrics").await;
    assert!(
        !metrics.contains("mc_gateway_http_requests_total{"),
        "a refused client made a request: {metrics}"
    );
    gw.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn openssl_shows_tls12_is_refused_and_tls13_accepted() {
    require(OPENSSL);
    let pki = Pki::new();
    let gw = start(config(&pki, &[])).await;
    let client = pki.leaf("client", CLIENT_ID);
    let run = |version: &'static str| {
        let mut cmd = s_client(gw.addr, &pki, &client, &[version]);
        cmd.stdin(std::process::Stdio::null());
        cmd
    };
    let out = tokio::time::timeout(Duration::from_secs(10), run("-tls1_2").output())
        .await
        .unwrap()
        .unwrap();
    let all = text(&out);
    assert!(!out.status.success(), "TLS 1.2 accepted: {all}");
    assert!(all.contains("alert") || all.contains("version"), "{all}");

    let out = tokio::time::timeout(Duration::from_secs(10), run("-tls1_3").output())
        .await
        .unwrap()
        .unwrap();
    let all = text(&out);
    assert!(all.contains("TLSv1.3"), "TLS 1.3 not negotiated: {all}");
    let (_, metrics) = admin_get(gw.admin, "/metrics").await;
    assert!(
        metric(
            &metrics,
            "mc_gateway_tls_handshake_errors_total{reason=\"protocol_version\"}"
        ) + metric(
            &metrics,
            "mc_gateway_tls_handshake_errors_total{reason=\"incompatible\"}"
        ) >= 1.0,
        "{metrics}"
    );
    gw.shutdown().await;
}

/// Runs openssl s_client against the gateway with ALPN `alpn`: sends `before`, then a key
/// update that asks for one back (the `K` command), then `after`. Returns (stdout, stderr).
async fn s_client_key_update(
    gw: std::net::SocketAddr,
    pki: &Pki,
    alpn: &str,
    before: &[u8],
    after: &[u8],
) -> (String, String) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    require(OPENSSL);
    let client = pki.leaf("client", CLIENT_ID);
    let mut child = s_client(gw, pki, &client, &["-tls1_3", "-msg", "-alpn", alpn])
        .arg("-cert_chain")
        .arg(&client.cert)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    // s_client takes a command only at the start of what one read from stdin returns.
    let pause = || tokio::time::sleep(Duration::from_millis(400));
    stdin.write_all(before).await.unwrap();
    pause().await;
    let _ = stdin.write_all(b"K\n").await;
    pause().await;
    let _ = stdin.write_all(after).await;
    pause().await;
    drop(stdin);
    let mut stdout = String::new();
    let mut out = child.stdout.take().unwrap();
    tokio::time::timeout(Duration::from_secs(10), async {
        out.read_to_string(&mut stdout).await.unwrap();
        child.wait().await.unwrap()
    })
    .await
    .unwrap();
    let mut stderr = String::new();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut stderr)
        .await
        .unwrap();
    assert!(stderr.contains("KEYUPDATE"), "no key update sent: {stderr}");
    // -msg prints each TLS message: the gateway answered with a key update of its own.
    assert!(
        stdout.contains("<<< TLS 1.3, Handshake [length 0005], KeyUpdate"),
        "no key update came back: {stdout}"
    );
    (stdout, stderr)
}

/// openssl s_client on the opaque transport path, where the gateway takes the records over
/// from rustls after the header: data, a key update from OpenSSL that asks for one back (the
/// `K` command), and data after it all reach the echo backend and come back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn openssl_key_update_on_an_opaque_stream() {
    let pki = Pki::new();
    let echo = echo_backend().await;
    let gw = start(config(&pki, &[(SVC, 7000, echo)])).await;
    let header = mc_core::transport::TransportHeader {
        port: 7000,
        name: Some(SVC.to_owned()),
        protocol: None,
    }
    .encode();
    let before = [header.as_slice(), b"before-update\n"].concat();
    let (stdout, stderr) = s_client_key_update(
        gw.addr,
        &pki,
        "transport.l5d.io/v1",
        &before,
        b"after-update\n",
    )
    .await;
    assert!(
        stdout.contains("before-update") && stdout.contains("after-update"),
        "echo missing: {stdout} / {stderr}"
    );
    let (_, m) = admin_get(gw.admin, "/metrics").await;
    assert_eq!(metric(&m, "mc_gateway_opaque_splices_total"), 1.0, "{m}");
    gw.shutdown().await;
}

/// The same on HTTP/1.1 over mTLS: a request
/// before OpenSSL's key update and one after it are both answered.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn openssl_key_update_on_an_http_connection() {
    let pki = Pki::new();
    let backend = http_backend().await;
    let gw = start(config(&pki, &[(SVC, 80, backend)])).await;
    let get = |path: &str| format!("GET /{path} HTTP/1.1\r\nhost: {SVC}:80\r\n\r\n").into_bytes();
    let (stdout, stderr) =
        s_client_key_update(gw.addr, &pki, "http/1.1", &get("before"), &get("after")).await;
    assert!(
        stdout.contains("GET /before HTTP/1.1") && stdout.contains("GET /after HTTP/1.1"),
        "a response is missing: {stdout} / {stderr}"
    );
    let (_, m) = admin_get(gw.admin, "/metrics").await;
    assert_eq!(metric(&m, "mc_gateway_http_streams_total"), 1.0, "{m}");
    gw.shutdown().await;
}
