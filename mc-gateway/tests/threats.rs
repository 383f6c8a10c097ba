//! The rest of the threat model's matrix (docs/security.md): a flood of half-open handshakes
//! while a real client is served, a renegotiation-like ClientHello sent in the clear after the
//! handshake, and client certificate chains with many certificates, within and beyond rustls'
//! handshake message limit.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use common::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// Sum of `mc_gateway_tls_handshake_errors_total` over every reason.
async fn handshake_errors(gw: &Running) -> f64 {
    let (_, m) = admin_get(gw.admin, "/metrics").await;
    m.lines()
        .filter(|l| l.starts_with("mc_gateway_tls_handshake_errors_total{"))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

/// A client config presenting `leaf`'s chain followed by `extra` copies of the issuer.
fn padded_client(pki: &Pki, leaf: &Files, extra: usize) -> Arc<rustls::ClientConfig> {
    use rustls::pki_types::PrivateKeyDer;
    use rustls::pki_types::pem::PemObject;
    let base = raw_client(pki, Some(leaf), &[b"http/1.1"]);
    let key = mc_gateway::load_certified_key(&leaf.cert, &leaf.key).unwrap();
    let mut chain = key.cert.clone();
    let issuer = chain.last().unwrap().clone();
    chain.extend(std::iter::repeat_n(issuer, extra));
    let mut roots = rustls::RootCertStore::empty();
    for d in mc_core::trust::TrustBundle::from_pem(&pki.root.cert_pem, std::time::SystemTime::now())
        .unwrap()
        .der_certs()
    {
        roots.add(d).unwrap();
    }
    let mut config = rustls::ClientConfig::builder_with_provider(base.crypto_provider().clone())
        .with_protocol_versions(&[&rustls::version::TLS13])
        .unwrap()
        .with_root_certificates(roots)
        .with_client_auth_cert(chain, PrivateKeyDer::from_pem_file(&leaf.key).unwrap())
        .unwrap();
    config.alpn_protocols = base.alpn_protocols.clone();
    Arc::new(config)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flood_of_half_open_handshakes_times_out_while_a_real_client_is_served() {
    const FLOOD: usize = 200;
    let pki = Pki::new();
    let mut cfg = config(&pki, &[]);
    cfg.limits.handshake_timeout = Duration::from_secs(2);
    let gw = start(cfg).await;
    let client = pki.leaf("client", CLIENT_ID);
    let tls = raw_client(&pki, Some(&client), &[b"http/1.1"]);

    // Each flooder sends a ClientHello, then nothing.
    let mut flood = Vec::new();
    for _ in 0..FLOOD {
        let (_, hello) = client_hello(&tls);
        let mut tcp = tokio::net::TcpStream::connect(gw.addr).await.unwrap();
        tcp.write_all(&hello).await.unwrap();
        flood.push(tcp);
    }
    // Meanwhile a real client is served, well before the flood's handshakes time out.
    let start_real = Instant::now();
    finish_one_handshake(&gw, tls.clone()).await;
    assert!(
        start_real.elapsed() < Duration::from_secs(2),
        "a real client waited {:?} behind the flood",
        start_real.elapsed()
    );
    // Every flooder is closed once the handshake timeout has passed.
    for tcp in &mut flood {
        let got = read_until_closed(tcp, Duration::from_secs(10)).await;
        assert!(got.is_some(), "a half-open handshake was never closed");
    }
    let (_, m) = admin_get(gw.admin, "/metrics").await;
    let timeouts = metric(
        &m,
        "mc_gateway_tls_handshake_errors_total{reason=\"timeout\"}",
    );
    assert_eq!(timeouts, FLOOD as f64, "{m}");
    finish_one_handshake(&gw, tls).await;
    gw.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cleartext_client_hello_after_the_handshake_gets_an_alert_and_a_close() {
    let pki = Pki::new();
    let gw = start(config(&pki, &[])).await;
    let client = pki.leaf("client", CLIENT_ID);
    let tls = raw_client(&pki, Some(&client), &[b"http/1.1"]);

    // A whole handshake, driven by hand so the raw socket stays ours.
    let (mut conn, hello) = client_hello(&tls);
    let mut tcp = tokio::net::TcpStream::connect(gw.addr).await.unwrap();
    tcp.write_all(&hello).await.unwrap();
    let mut buf = vec![0u8; 16 * 1024];
    while conn.is_handshaking() {
        if conn.wants_write() {
            let mut out = Vec::new();
            conn.write_tls(&mut out).unwrap();
            tcp.write_all(&out).await.unwrap();
            continue;
        }
        let n = tcp.read(&mut buf).await.unwrap();
        assert!(n > 0, "the gateway closed during the handshake");
        conn.read_tls(&mut &buf[..n]).unwrap();
        conn.process_new_packets().unwrap();
    }
    let mut out = Vec::new();
    while conn.wants_write() {
        conn.write_tls(&mut out).unwrap();
    }
    tcp.write_all(&out).await.unwrap();

    // Renegotiation-like: a fresh ClientHello record, in the clear, on the protected connection.
    let (_, again) = client_hello(&tls);
    tcp.write_all(&again).await.unwrap();
    let got = read_until_closed(&mut tcp, Duration::from_secs(10))
        .await
        .expect("the gateway closes the connection");
    conn.read_tls(&mut &got[..]).unwrap();
    match conn.process_new_packets() {
        Err(rustls::Error::AlertReceived(alert)) => assert!(
            matches!(
                alert,
                rustls::AlertDescription::BadRecordMac
                    | rustls::AlertDescription::UnexpectedMessage
                    | rustls::AlertDescription::DecodeError
            ),
            "alert {alert:?}"
        ),
        other => panic!("expected a fatal alert from the gateway, got {other:?} ({got:?})"),
    }
    // The gateway still serves.
    finish_one_handshake(&gw, tls).await;
    gw.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_client_certificates_are_verified_within_the_limit_and_refused_beyond_it() {
    let pki = Pki::new();
    let gw = start(config(&pki, &[])).await;
    let client = pki.leaf("client", CLIENT_ID);

    // 40 extra copies of the issuer: path building still finds the chain, quickly.
    finish_one_handshake(&gw, padded_client(&pki, &client, 40)).await;
    assert_eq!(handshake_errors(&gw).await, 0.0);

    // A Certificate message beyond rustls' 64 KiB handshake message limit is refused in the
    // handshake, and counted.
    let huge = padded_client(&pki, &client, 400);
    let refused = async {
        let mut s = raw_connect(gw.addr, huge).await?;
        s.write_all(b"GET / HTTP/1.1\r\nhost: x\r\n\r\n").await?;
        let mut b = [0u8; 64];
        match s.read(&mut b).await? {
            0 => Err(std::io::Error::other("closed")),
            n => Ok(n),
        }
    }
    .await;
    assert!(refused.is_err(), "an oversized chain was admitted");
    let deadline = Instant::now() + Duration::from_secs(5);
    while handshake_errors(&gw).await < 1.0 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(handshake_errors(&gw).await, 1.0);

    // The gateway still serves.
    finish_one_handshake(&gw, raw_client(&pki, Some(&client), &[b"http/1.1"])).await;
    gw.shutdown().await;
}
