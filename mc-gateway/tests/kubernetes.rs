//! Target resolution from real Services and EndpointSlices on the testbed API server, and the
//! meshed Pods (backends dialled with mTLS) from real Pod objects there.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use common::*;
use http_body_util::{BodyExt, Full};
use hyper_util::rt::TokioIo;
use k8s_openapi::api::core::v1::{Namespace, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use kube::Api;
use kube::api::{Patch, PatchParams, PostParams};
use mc_core::transport::SessionProtocol;
use mc_gateway::Target;
use mc_gateway::client::GatewayConnector;
use mc_gateway::resolve::KubeResolver;

async fn get(c: &GatewayConnector, target: &Target) -> (u16, String) {
    let stream = c
        .connect(target, Some(SessionProtocol::Http1))
        .await
        .unwrap();
    let (mut send, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .unwrap();
    tokio::spawn(conn);
    let req = hyper::Request::get("/k8s")
        .body(Full::new(Bytes::new()))
        .unwrap();
    let resp = send.send_request(req).await.unwrap();
    let status = resp.status().as_u16();
    let body = resp.into_body().collect().await.unwrap().to_bytes();
    (status, String::from_utf8_lossy(&body).into_owned())
}

fn slice_json(addr: std::net::SocketAddr, ready: bool) -> serde_json::Value {
    serde_json::json!({
        "apiVersion": "discovery.k8s.io/v1",
        "kind": "EndpointSlice",
        "metadata": {"name": "web-1", "labels": {"kubernetes.io/service-name": "web"}},
        "addressType": "IPv4",
        "ports": [{"name": "http", "port": addr.port(), "protocol": "TCP"}],
        "endpoints": [{"addresses": [addr.ip().to_string()], "conditions": {"ready": ready}}]
    })
}

/// A headless Service `db` (port 5432) whose Pods `db-0` and `db-1` are endpoints with
/// hostnames at the backend's port: `db-1.db.<ns>.svc.cluster.local:5432` always reaches
/// `db-1` (the backend) at the targetPort, `db-0` (nothing listens there) never answers.
async fn per_pod_names_reach_their_pod(
    client: &kube::Client,
    ns: &str,
    c: &GatewayConnector,
    backend: std::net::SocketAddr,
) {
    let pp = PostParams::default();
    let nobody = mc_tests::test_host(21)
        .unwrap_or_else(|e| panic!("run this test under scripts/in-netns: {e}"));
    Api::<Service>::namespaced(client.clone(), ns)
        .create(
            &pp,
            &serde_json::from_value(serde_json::json!({
                "metadata": {"name": "db"},
                "spec": {"clusterIP": "None", "ports": [{"name": "sql", "port": 5432, "targetPort": backend.port()}]}
            }))
            .unwrap(),
        )
        .await
        .unwrap();
    let endpoint = |ip: std::net::IpAddr, host: &str| serde_json::json!({"addresses": [ip.to_string()], "hostname": host, "conditions": {"ready": true}});
    let slice = serde_json::json!({
        "metadata": {"name": "db-1", "labels": {"kubernetes.io/service-name": "db"}},
        "addressType": "IPv4",
        "ports": [{"name": "sql", "port": backend.port(), "protocol": "TCP"}],
        "endpoints": [endpoint(nobody, "db-0"), endpoint(backend.ip(), "db-1")]
    });
    Api::<EndpointSlice>::namespaced(client.clone(), ns)
        .create(&pp, &serde_json::from_value(slice).unwrap())
        .await
        .unwrap();
    let pod = |host: &str| Target::new(&format!("{host}.db.{ns}.svc.cluster.local"), 5432);
    let deadline = Instant::now() + Duration::from_secs(20);
    while get(c, &pod("db-1")).await.0 != 200 {
        assert!(Instant::now() < deadline, "db-1 never answered");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    for _ in 0..6 {
        let (status, body) = get(c, &pod("db-1")).await;
        assert_eq!(status, 200, "{body}");
        assert!(
            body.contains(&format!("host: db-1.db.{ns}.svc.cluster.local:5432")),
            "{body}"
        );
        let (status, body) = get(c, &pod("db-0")).await;
        assert_eq!(status, 502, "{body}");
    }
}

/// The testbed's API server `gw`, a client of it, and a new namespace `<prefix>-<pid>`.
async fn testbed_namespace(prefix: &str) -> (mc_tests::Testbed, kube::Client, String) {
    let bed = tokio::task::spawn_blocking(|| mc_tests::Testbed::start_api_only(&["gw"]))
        .await
        .unwrap()
        .unwrap_or_else(|e| panic!("the testbed must start for this test: {e}"));
    let client = bed.client("gw").await.unwrap();
    let ns = format!("{prefix}-{}", std::process::id());
    Api::<Namespace>::all(client.clone())
        .create(
            &PostParams::default(),
            &serde_json::from_value(serde_json::json!({"metadata": {"name": ns}})).unwrap(),
        )
        .await
        .unwrap();
    (bed, client, ns)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resolves_services_and_endpointslices_from_the_api_server() {
    let (bed, client, ns) = testbed_namespace("gw").await;
    let pp = PostParams::default();
    let services = Api::<Service>::namespaced(client.clone(), &ns);
    services
        .create(
            &pp,
            &serde_json::from_value(serde_json::json!({
                "metadata": {"name": "web"},
                "spec": {"ports": [{"name": "http", "port": 80, "targetPort": 8080}]}
            }))
            .unwrap(),
        )
        .await
        .unwrap();
    // Kubernetes rejects loopback endpoint addresses: listen on a test-host address of
    // scripts/in-netns (run the tests through it, as `make test` does).
    let ip = mc_tests::test_host(20)
        .unwrap_or_else(|e| panic!("run this test under scripts/in-netns: {e}"));
    let backend = http_backend_on(ip).await;
    let slices = Api::<EndpointSlice>::namespaced(client.clone(), &ns);
    slices
        .create(
            &pp,
            &serde_json::from_value(slice_json(backend, true)).unwrap(),
        )
        .await
        .unwrap();

    // A Service with only core/v1 Endpoints (no EndpointSlice): the fallback.
    services
        .create(
            &pp,
            &serde_json::from_value(serde_json::json!({
                "metadata": {"name": "legacy"},
                "spec": {"ports": [{"name": "http", "port": 80}]}
            }))
            .unwrap(),
        )
        .await
        .unwrap();
    Api::<k8s_openapi::api::core::v1::Endpoints>::namespaced(client.clone(), &ns)
        .create(
            &pp,
            &serde_json::from_value(serde_json::json!({
                "metadata": {"name": "legacy"},
                "subsets": [{
                    "addresses": [{"ip": backend.ip().to_string()}],
                    "ports": [{"name": "http", "port": backend.port()}]
                }]
            }))
            .unwrap(),
        )
        .await
        .unwrap();

    let pki = Pki::new();
    let mut cfg = config(&pki, &[]);
    let resolver = KubeResolver::start(client.clone(), "cluster.local", Duration::from_secs(30))
        .await
        .unwrap();
    cfg.resolver = Arc::new(resolver);
    let gw = start(cfg).await;
    let c_files = pki.leaf("client", CLIENT_ID);
    let c = GatewayConnector::new(
        &c_files.cert,
        &c_files.key,
        &pki.anchors(),
        gw.addr.to_string(),
        GATEWAY_ID,
    )
    .unwrap();
    let web = Target::new(&format!("web.{ns}.svc.cluster.local"), 80);

    // The reflectors may lag the create by a moment.
    let until = |want: u16| {
        let c = c.clone();
        let web = web.clone();
        async move {
            let deadline = Instant::now() + Duration::from_secs(20);
            loop {
                let (status, body) = get(&c, &web).await;
                if status == want {
                    return body;
                }
                assert!(
                    Instant::now() < deadline,
                    "still {status} ({body}), want {want}"
                );
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    };
    let body = until(200).await;
    assert!(body.starts_with("GET /k8s"), "{body}");
    assert!(
        body.contains(&format!("l5d-client-id: {CLIENT_ID}")),
        "{body}"
    );

    let legacy = Target::new(&format!("legacy.{ns}.svc.cluster.local"), 80);
    let (status, body) = get(&c, &legacy).await;
    assert_eq!(status, 200, "Endpoints fallback: {body}");

    // The endpoint turns not ready: 503 with a message.
    slices
        .patch(
            "web-1",
            &PatchParams::default(),
            &Patch::Merge(slice_json(backend, false)),
        )
        .await
        .unwrap();
    let body = until(503).await;
    assert!(body.contains("no ready endpoints"), "{body}");

    // Unknown service and unknown port: 502.
    let (status, body) = get(
        &c,
        &Target::new(&format!("nope.{ns}.svc.cluster.local"), 80),
    )
    .await;
    assert_eq!(status, 502, "{body}");
    assert!(body.contains("no Service"), "{body}");
    let (status, _) = get(&c, &Target::new(&format!("web.{ns}.svc.cluster.local"), 81)).await;
    assert_eq!(status, 502);

    per_pod_names_reach_their_pod(&client, &ns, &c, backend).await;
    gw.shutdown().await;
    drop(bed);
}

/// Waits until `ids` answers `want` for `addr`.
async fn wait_identity(
    ids: &mc_gateway::mesh::KubeIdentities,
    addr: std::net::SocketAddr,
    want: Option<&str>,
) {
    use mc_gateway::mesh::BackendIdentities;
    let deadline = Instant::now() + Duration::from_secs(20);
    while ids.identity(addr).as_deref() != want {
        assert!(
            Instant::now() < deadline,
            "{addr}: never {want:?}, still {:?}",
            ids.identity(addr)
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pods_meshed_by_the_gateways_control_plane_get_their_identity() {
    use k8s_openapi::api::core::v1::Pod;
    let (_bed, client, ns) = testbed_namespace("mesh").await;
    let pp = PostParams::default();
    let ids = mc_gateway::mesh::KubeIdentities::start(
        client.clone(),
        "linkerd",
        "cluster.local",
        Duration::from_secs(30),
    )
    .await
    .unwrap();
    Api::<k8s_openapi::api::core::v1::ServiceAccount>::namespaced(client.clone(), &ns)
        .create(
            &pp,
            &serde_json::from_value(serde_json::json!({"metadata": {"name": "api"}})).unwrap(),
        )
        .await
        .unwrap();
    let pods = Api::<Pod>::namespaced(client.clone(), &ns);
    // (name, control plane, test-host ip): meshed by ours, by another, by none.
    for (name, cp, host) in [
        ("api", Some("linkerd"), 30),
        ("other", Some("linkerd-b"), 31),
        ("plain", None, 32),
    ] {
        let labels = cp.map(|cp| serde_json::json!({"linkerd.io/control-plane-ns": cp}));
        let pod = serde_json::json!({
            "metadata": {"name": name, "labels": labels,
                         "annotations": {"config.linkerd.io/skip-inbound-ports": "9090"}},
            "spec": {"serviceAccountName": "api", "containers": [{"name": "c", "image": "x"}]}
        });
        pods.create(&pp, &serde_json::from_value(pod).unwrap())
            .await
            .unwrap();
        let ip = format!("198.18.7.{host}");
        let status = serde_json::json!({"status": {"phase": "Running", "podIP": ip, "podIPs": [{"ip": ip}]}});
        pods.patch_status(name, &PatchParams::default(), &Patch::Merge(&status))
            .await
            .unwrap();
    }
    let addr = |host: u8, port: u16| std::net::SocketAddr::from(([198, 18, 7, host], port));
    let want = format!("api.{ns}.serviceaccount.identity.linkerd.cluster.local");
    wait_identity(&ids, addr(30, 8080), Some(&want)).await;
    // A skipped inbound port, and Pods of another control plane or of none: plaintext.
    wait_identity(&ids, addr(30, 9090), None).await;
    wait_identity(&ids, addr(31, 8080), None).await;
    wait_identity(&ids, addr(32, 8080), None).await;
    // A deleted Pod's address is no longer meshed (it may be reused).
    pods.delete("api", &Default::default()).await.unwrap();
    pods.delete("api", &Default::default()).await.ok();
    wait_identity(&ids, addr(30, 8080), None).await;
    Api::<Namespace>::all(client)
        .delete(&ns, &Default::default())
        .await
        .unwrap();
}
