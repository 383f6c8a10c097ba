//! The gateway reaching a meshed backend as a meshed client (docs/interop.md, "Meshed
//! backends"): mTLS with the gateway's own identity, the backend verified under the identity
//! its Linkerd proxy presents.
//!
//! The backend's Linkerd proxy with `default-inbound-policy: all-authenticated` is stood in
//! for by `openssl s_server` (`-Verify 1 -verify_return_error`): a real TLS server, not mc's
//! code, that refuses any client without a certificate chaining to the trust anchors and, with
//! `-www`, answers a GET with the session it saw, including the client certificate.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::net::SocketAddr;
use std::process::Stdio;
use std::sync::Arc;
use std::time::Duration;

use common::*;
use mc_core::transport::SessionProtocol;
use mc_gateway::Target;
use mc_gateway::mesh::StaticIdentities;
use tokio::io::AsyncWriteExt;

const OPENSSL: &str = "/usr/bin/openssl";
const BACKEND_ID: &str = "api.shop.serviceaccount.identity.linkerd.cluster.local";

/// The stand-in for a meshed backend's inbound proxy that refuses unauthenticated clients:
/// `openssl s_server` presenting `BACKEND_ID`, requiring a client certificate chained to the
/// anchors. Killed on drop.
struct StandInProxy {
    addr: SocketAddr,
    _child: tokio::process::Child,
}

async fn stand_in_proxy(pki: &Pki) -> StandInProxy {
    assert!(
        std::path::Path::new(OPENSSL).exists(),
        "openssl is required for this test and is missing: install it (apt-get install openssl)"
    );
    let files = pki.leaf("backend", BACKEND_ID);
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let child = tokio::process::Command::new(OPENSSL)
        .args([
            "s_server",
            "-quiet",
            "-www",
            "-tls1_3",
            "-Verify",
            "1",
            "-verify_return_error",
        ])
        .arg("-accept")
        .arg(format!("127.0.0.1:{port}"))
        .arg("-cert")
        .arg(&files.cert)
        .arg("-cert_chain")
        .arg(&files.cert)
        .arg("-key")
        .arg(&files.key)
        .arg("-CAfile")
        .arg(pki.anchors())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("start openssl s_server");
    let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    for _ in 0..100 {
        if tokio::net::TcpStream::connect(addr).await.is_ok() {
            return StandInProxy {
                addr,
                _child: child,
            };
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("openssl s_server did not listen on {addr}");
}

/// Sends a GET for `SVC:8080` through the gateway (HTTP/1 session, or opaque) and returns what
/// came back.
async fn get_through(gw: &Running, pki: &Pki, protocol: Option<SessionProtocol>) -> String {
    let c = client_connector(pki, gw);
    let mut s = c.connect(&Target::new(SVC, 8080), protocol).await.unwrap();
    let req = format!("GET / HTTP/1.1\r\nhost: {SVC}:8080\r\nconnection: close\r\n\r\n");
    s.write_all(req.as_bytes()).await.unwrap();
    let got = read_until_closed(&mut s, Duration::from_secs(10))
        .await
        .unwrap_or_default();
    String::from_utf8_lossy(&got).into_owned()
}

fn gateway_config(
    pki: &Pki,
    backend: SocketAddr,
    identity: Option<&str>,
) -> mc_gateway::ServerConfig {
    let mut config = config(pki, &[(SVC, 8080, backend)]);
    config.backend_identities = identity.map(|id| {
        Arc::new(StaticIdentities::new([(backend, id.to_owned())]))
            as Arc<dyn mc_gateway::mesh::BackendIdentities>
    });
    config
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backend_refusing_unauthenticated_clients_admits_the_gateway_as_its_identity() {
    let pki = Pki::new();
    let proxy = stand_in_proxy(&pki).await;

    // The stand-in refuses a client without a certificate.
    let mut plain = tokio::net::TcpStream::connect(proxy.addr).await.unwrap();
    plain.write_all(b"GET / HTTP/1.0\r\n\r\n").await.unwrap();
    let refused = read_until_closed(&mut plain, Duration::from_secs(5))
        .await
        .unwrap_or_default();
    assert!(
        !refused.starts_with(b"HTTP/"),
        "{:?}",
        String::from_utf8_lossy(&refused)
    );

    let gw = start(gateway_config(&pki, proxy.addr, Some(BACKEND_ID))).await;
    for protocol in [Some(SessionProtocol::Http1), None] {
        let answer = get_through(&gw, &pki, protocol).await;
        assert!(answer.starts_with("HTTP/1."), "{protocol:?}: {answer}");
        assert!(answer.contains(" 200 "), "{protocol:?}: {answer}");
        // The backend saw the gateway's certificate (its identity as DNS SAN), not the
        // original client's: the gateway is the authenticated client, as upstream's is.
        assert!(
            answer.contains("Client certificate"),
            "{protocol:?}: {answer}"
        );
        assert!(
            answer.contains(&format!("DNS:{GATEWAY_ID}")),
            "{protocol:?}: {answer}"
        );
        assert!(
            !answer.contains(&format!("DNS:{CLIENT_ID}")),
            "{protocol:?}: {answer}"
        );
    }
    let text = gw.metrics.encode();
    assert!(
        metric(
            &text,
            "mc_gateway_backend_mtls_handshakes_total{result=\"ok\"}"
        ) >= 2.0,
        "{text}"
    );
    gw.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_backend_mtls_or_with_the_wrong_identity_the_backend_is_not_reached() {
    let pki = Pki::new();
    let proxy = stand_in_proxy(&pki).await;

    // Plaintext to the backend (as before backend mTLS): it refuses the gateway.
    let gw = start(gateway_config(&pki, proxy.addr, None)).await;
    let answer = get_through(&gw, &pki, Some(SessionProtocol::Http1)).await;
    assert!(answer.starts_with("HTTP/1.1 502"), "{answer}");
    gw.shutdown().await;

    // A backend presenting another identity than its Pod's is refused by the gateway.
    let other = "intruder.shop.serviceaccount.identity.linkerd.cluster.local";
    let gw = start(gateway_config(&pki, proxy.addr, Some(other))).await;
    let answer = get_through(&gw, &pki, Some(SessionProtocol::Http1)).await;
    assert!(answer.starts_with("HTTP/1.1 502"), "{answer}");
    let opaque = get_through(&gw, &pki, None).await;
    assert!(opaque.is_empty(), "{opaque}");
    let text = gw.metrics.encode();
    assert!(
        metric(
            &text,
            "mc_gateway_backend_mtls_handshakes_total{result=\"failed\"}"
        ) >= 2.0,
        "{text}"
    );
    gw.shutdown().await;
}
