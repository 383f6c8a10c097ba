//! Linkerd proxies as clients of the gateway, emulated with mc's own fixtures: what a meshed
//! client's proxy sends on the wire (see docs/interop.md, "Linkerd proxies as clients").
//!
//! - A meshed service-mirror controller's probe of the admin port (mTLS with a client
//!   certificate from the shared trust anchor, SNI the gateway identity, HTTP/2 with
//!   `l5d-orig-proto: HTTP/1.1`) is answered; plaintext probes still are.
//! - An application's HTTP/1.1 request that the client proxy upgraded to HTTP/2
//!   (`l5d-orig-proto: HTTP/1.1`, session protocol http2 in the transport header) reaches an
//!   HTTP/1-only backend as HTTP/1.1.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use bytes::Bytes;
use common::*;
use http_body_util::{BodyExt, Full};
use hyper_util::rt::{TokioExecutor, TokioIo};
use mc_core::transport::SessionProtocol;
use mc_gateway::Target;

const H1_SVC: &str = "legacy.shop.svc.cluster.local";

/// A backend that speaks HTTP/1 only (hyper's HTTP/1 server: the HTTP/2 preface is an error
/// to it) and answers `<version>\nhost: ..\nl5d-orig-proto: ..\n\n<body>`.
async fn http1_only_backend() -> std::net::SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let (tcp, _) = listener.accept().await.unwrap();
            tokio::spawn(async move {
                let service = hyper::service::service_fn(
                    |req: hyper::Request<hyper::body::Incoming>| async move {
                        let (parts, body) = req.into_parts();
                        let body = body.collect().await.unwrap().to_bytes();
                        let field = |n: &str| {
                            parts
                                .headers
                                .get(n)
                                .map(|v| v.to_str().unwrap().to_owned())
                                .unwrap_or_else(|| "<none>".into())
                        };
                        let text = format!(
                            "{:?}\nhost: {}\nl5d-orig-proto: {}\n\n{}",
                            parts.version,
                            field("host"),
                            field("l5d-orig-proto"),
                            String::from_utf8_lossy(&body)
                        );
                        Ok::<_, std::convert::Infallible>(hyper::Response::new(Full::new(
                            Bytes::from(text),
                        )))
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

/// Sends one POST with `fields` over HTTP/2 on `stream`: (status, response fields, body).
async fn h2_post<S>(stream: S, fields: &[(&str, &str)]) -> (u16, http::HeaderMap, String)
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let (mut send, conn) =
        hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(stream))
            .await
            .unwrap();
    tokio::spawn(conn);
    let mut req = hyper::Request::post("http://ignored.example/path");
    for (k, v) in fields {
        req = req.header(*k, *v);
    }
    let req = req.body(Full::new(Bytes::from_static(b"payload"))).unwrap();
    let resp = send.send_request(req).await.unwrap();
    let status = resp.status().as_u16();
    let headers = resp.headers().clone();
    let body = resp.into_body().collect().await.unwrap().to_bytes();
    (status, headers, String::from_utf8_lossy(&body).into_owned())
}

/// What a client proxy does with an application's HTTP/1.1 request to a mirrored service: mTLS
/// with ALPN `transport.l5d.io/v1`, a transport header naming the target with session protocol
/// http2, the request as HTTP/2 with `l5d-orig-proto: HTTP/1.1`. The HTTP/1-only backend gets
/// HTTP/1.1 without the field and with `Host` set to the target; the response comes back over
/// HTTP/2 with `l5d-orig-proto: HTTP/1.1`, as linkerd2-proxy's inbound downgrade answers. A
/// request without the field still goes to its target as HTTP/2.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_upgraded_http1_request_reaches_an_http1_only_backend_as_http1() {
    let pki = Pki::new();
    let legacy = http1_only_backend().await;
    let h2c = http_backend().await;
    let gw = start(config(&pki, &[(H1_SVC, 8080, legacy), (SVC, 8080, h2c)])).await;
    let c = client_connector(&pki, &gw);

    for value in ["HTTP/1.1", "HTTP/1.1; absolute-form"] {
        let stream = c
            .connect(&Target::new(H1_SVC, 8080), Some(SessionProtocol::Http2))
            .await
            .unwrap();
        let (status, fields, body) = h2_post(stream, &[("l5d-orig-proto", value)]).await;
        assert_eq!(status, 200, "{value}: {body}");
        assert_eq!(
            body,
            format!("HTTP/1.1\nhost: {H1_SVC}:8080\nl5d-orig-proto: <none>\n\npayload"),
            "{value}"
        );
        assert_eq!(fields["l5d-orig-proto"], "HTTP/1.1", "{value}");
    }

    // Without the field, the session protocol decides: HTTP/2 to the target.
    let stream = c
        .connect(&Target::new(SVC, 8080), Some(SessionProtocol::Http2))
        .await
        .unwrap();
    let (status, fields, body) = h2_post(stream, &[]).await;
    assert_eq!(status, 200, "{body}");
    assert!(body.starts_with("POST /path HTTP/2.0"), "{body}");
    assert!(fields.get("l5d-orig-proto").is_none(), "{fields:?}");
    gw.shutdown().await;
}

/// GET `path` over HTTP/2 on `stream` with `l5d-orig-proto: HTTP/1.1`, as a client proxy
/// sends an application's HTTP/1.1 probe; `None` when the exchange fails.
async fn h2_probe<S>(stream: S, path: &str) -> Option<(u16, String)>
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let (mut send, conn) =
        hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(stream))
            .await
            .ok()?;
    tokio::spawn(conn);
    let req = hyper::Request::get(format!("http://probe-east.linkerd-multicluster:4191{path}"))
        .header("l5d-orig-proto", "HTTP/1.1")
        .body(Full::new(Bytes::new()))
        .unwrap();
    let resp = send.send_request(req).await.ok()?;
    let status = resp.status().as_u16();
    let body = resp.into_body().collect().await.ok()?.to_bytes();
    Some((status, String::from_utf8_lossy(&body).into_owned()))
}

/// The probe of a meshed service-mirror controller, as its proxy sends it to the gateway's
/// admin port: mTLS with a client certificate from the shared trust anchor and SNI the
/// gateway identity, no ALPN (or `h2`), HTTP/2 with `l5d-orig-proto: HTTP/1.1`. It gets 200
/// from `/ready`; `/metrics` is not served over mTLS. TLS clients without a certificate, or
/// with one from another trust anchor, are refused. Plain HTTP/1 keeps working.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_meshed_controllers_mtls_http2_probe_of_the_admin_port_is_answered() {
    let pki = Pki::new();
    let gw = start(config(&pki, &[])).await;
    // The gateway turns ready just after it starts serving.
    for _ in 0..100 {
        if admin_get(gw.admin, "/ready").await.0 == 200 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    let controller = pki.leaf(
        "controller",
        "controller-east.linkerd-multicluster.serviceaccount.identity.linkerd.cluster.local",
    );
    for alpn in [&[][..], &[&b"h2"[..]][..]] {
        let tls = raw_connect(gw.admin, raw_client(&pki, Some(&controller), alpn))
            .await
            .unwrap();
        let got = h2_probe(tls, "/ready").await;
        assert_eq!(got, Some((200, "ready\n".to_owned())), "ALPN {alpn:?}");
    }
    let tls = raw_connect(gw.admin, raw_client(&pki, Some(&controller), &[]))
        .await
        .unwrap();
    assert_eq!(h2_probe(tls, "/metrics").await.map(|r| r.0), Some(404));

    // No client certificate, or one from another trust anchor: no answer.
    let other = Pki::new();
    let stranger = other.leaf("stranger", CLIENT_ID);
    // The stranger trusts the gateway: the handshake gets as far as the gateway's verdict on
    // the client certificate.
    let foreign = raw_client(&pki, Some(&stranger), &[]);
    for client in [raw_client(&pki, None, &[]), foreign] {
        if let Ok(tls) = raw_connect(gw.admin, client).await {
            assert_eq!(h2_probe(tls, "/ready").await, None);
        }
    }

    // Plaintext HTTP/1, as the kubelet or an unmeshed controller probes.
    assert_eq!(
        admin_get(gw.admin, "/ready").await,
        (200, "ready\n".to_owned())
    );
    assert_eq!(admin_get(gw.admin, "/metrics").await.0, 200);
    gw.shutdown().await;
}
