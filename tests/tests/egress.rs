//! E2E: `mc-gateway egress` with real parts. A real `mc-gateway serve` on loopback in front of
//! an HTTP and an echo backend, and a real `mc-gateway egress` following ConfigMap
//! `mc-egress-routes` through the testbed's API server (west), in a namespace of this test.
//! Plain TCP clients reach the backends through the egress ports; routes are added, removed
//! and failed over while it runs.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod cli_common;
mod mirror_common;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use cli_common::{KillOnDrop, free_port, gateway_bin};
use k8s_openapi::api::core::v1::{ConfigMap, Namespace};
use kube::api::{Api, DeleteParams, Patch, PatchParams};
use mc_core::egress::{
    EGRESS_NAME, FEDERATED_OWNER, LOCAL_MEMBER, Member, PORT_RANGE, ROUTES_CONFIG_MAP, Route,
};
use mc_core::pki::CertifiedKey;
use mc_tests::egress::{GATEWAY_ID, egress_id, identity_flags, write_leaf, write_pki};
use mirror_common::{ensure_namespace, eventually, meta, unique};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

const T: Duration = Duration::from_secs(30);

fn pki(dir: &Path) -> CertifiedKey {
    write_pki(dir).unwrap()
}

/// An HTTP/1.1 backend answering every request with `hello from http` and closing.
async fn http_backend() -> SocketAddr {
    body_backend("hello from http").await
}

/// An HTTP/1.1 backend answering every request with `body` and closing.
async fn body_backend(body: &'static str) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = listener.accept().await {
            tokio::spawn(async move {
                let mut head = Vec::new();
                let mut buf = [0u8; 1024];
                while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                    match s.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => head.extend_from_slice(&buf[..n]),
                    }
                }
                let resp = format!(
                    "HTTP/1.1 200 OK\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                    body.len()
                );
                let _ = s.write_all(resp.as_bytes()).await;
                let _ = s.shutdown().await;
            });
        }
    });
    addr
}

/// A TCP backend that echoes every byte.
async fn echo_backend() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((s, _)) = listener.accept().await {
            tokio::spawn(async move {
                let (mut r, mut w) = s.into_split();
                let _ = tokio::io::copy(&mut r, &mut w).await;
            });
        }
    });
    addr
}

/// `n` ports of the egress range that are free on loopback now.
fn free_route_ports(n: usize) -> Vec<u16> {
    let span = u32::from(PORT_RANGE.end() - PORT_RANGE.start()) + 1;
    let start = std::process::id() % span;
    (0..span)
        .map(|i| PORT_RANGE.start() + u16::try_from((start + i * 7919) % span).unwrap())
        .filter(|p| std::net::TcpListener::bind(("127.0.0.1", *p)).is_ok())
        .take(n)
        .collect()
}

/// One HTTP/1.1 GET through `port`; the whole response, or `None` when the connection fails.
async fn http_get(port: u16) -> Option<String> {
    let mut s = TcpStream::connect(("127.0.0.1", port)).await.ok()?;
    s.write_all(b"GET / HTTP/1.1\r\nhost: http\r\nconnection: close\r\n\r\n")
        .await
        .ok()?;
    let mut out = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), s.read_to_end(&mut out))
        .await
        .ok()?
        .ok()?;
    Some(String::from_utf8_lossy(&out).into_owned())
}

/// Bytes sent opaquely through `port` and echoed back, or `None` when the connection fails.
async fn echo(port: u16, msg: &[u8]) -> Option<Vec<u8>> {
    let mut s = TcpStream::connect(("127.0.0.1", port)).await.ok()?;
    s.write_all(msg).await.ok()?;
    let mut back = vec![0u8; msg.len()];
    tokio::time::timeout(Duration::from_secs(10), s.read_exact(&mut back))
        .await
        .ok()?
        .ok()?;
    Some(back)
}

/// A plain HTTP/1.1 GET of the admin server: status and body.
async fn admin_get(addr: SocketAddr, path: &str) -> Option<(u16, String)> {
    let mut s = TcpStream::connect(addr).await.ok()?;
    let req = format!("GET {path} HTTP/1.1\r\nhost: admin\r\nconnection: close\r\n\r\n");
    s.write_all(req.as_bytes()).await.ok()?;
    let mut out = Vec::new();
    s.read_to_end(&mut out).await.ok()?;
    let text = String::from_utf8_lossy(&out).into_owned();
    let status = text.split(' ').nth(1)?.parse().ok()?;
    let body = text.split_once("\r\n\r\n")?.1.to_owned();
    Some((status, body))
}

/// The value of the first metric line starting with `series`, 0 when absent.
fn metric(text: &str, series: &str) -> f64 {
    text.lines()
        .find(|l| l.starts_with(series))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0.0)
}

fn route(listen: u16, target: &str, gateways: &[String]) -> Route {
    Route {
        listen,
        link: "east".into(),
        target: target.into(),
        gateways: gateways.to_vec(),
        identity: GATEWAY_ID.into(),
        members: Default::default(),
    }
}

/// The ConfigMap data holding `routes` (as the controllers write it: one JSON route a key).
fn data(routes: &[(&str, &Route)]) -> BTreeMap<String, String> {
    routes
        .iter()
        .map(|(k, r)| ((*k).to_owned(), serde_json::to_string(r).unwrap()))
        .collect()
}

async fn set_routes(api: &Api<ConfigMap>, routes: &[(&str, &Route)]) {
    let cm = ConfigMap {
        metadata: meta(None, ROUTES_CONFIG_MAP),
        data: Some(data(routes)),
        ..Default::default()
    };
    api.patch(
        ROUTES_CONFIG_MAP,
        &PatchParams::apply("egress-test").force(),
        &Patch::Apply(&cm),
    )
    .await
    .unwrap();
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_default()
}

/// A real `mc-gateway serve` on loopback in front of an HTTP and an echo backend, logging to
/// `gateway.log` in its directory.
struct Gateway {
    _proc: KillOnDrop,
    /// Its `ip:port`.
    addr: String,
    /// `http.<ns>.svc.cluster.local:80`.
    http_target: String,
    /// `echo.<ns>.svc.cluster.local:7`.
    echo_target: String,
}

impl Gateway {
    /// Starts it with the identity files [`pki`] wrote into `dir`.
    async fn start(dir: &Path, ns: &str) -> Gateway {
        Gateway::start_at(dir, ns, format!("127.0.0.1:{}", free_port())).await
    }

    /// [`Gateway::start`] listening on `addr`.
    async fn start_at(dir: &Path, ns: &str, addr: String) -> Gateway {
        let (http, echo_addr) = (http_backend().await, echo_backend().await);
        let http_target = format!("http.{ns}.svc.cluster.local:80");
        let echo_target = format!("echo.{ns}.svc.cluster.local:7");
        let proc = KillOnDrop(
            Command::new(gateway_bin())
                .env("RUST_LOG", "mc_gateway=debug")
                .args(["serve", "--listen", &addr, "--no-dns"])
                .args(["--admin", &format!("127.0.0.1:{}", free_port())])
                .args(identity_flags(dir, "gw"))
                .args(["--identity", GATEWAY_ID])
                .args(["--static", &format!("{http_target}={http}")])
                .args(["--static", &format!("{echo_target}={echo_addr}")])
                .stderr(std::fs::File::create(dir.join("gateway.log")).unwrap())
                .spawn()
                .unwrap(),
        );
        Gateway {
            _proc: proc,
            addr,
            http_target,
            echo_target,
        }
    }
}

/// A real `mc-gateway egress` on loopback, logging to `egress.log` in its directory.
struct Egress {
    _proc: KillOnDrop,
    admin: SocketAddr,
    log: PathBuf,
}

impl Egress {
    /// Starts it with the identity files [`pki`] wrote into `dir`; `source` adds the flags and
    /// environment of its route source.
    async fn start(dir: &Path, source: impl FnOnce(&mut Command) -> &mut Command) -> Egress {
        let admin: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
        let mut cmd = Command::new(gateway_bin());
        cmd.env("RUST_LOG", "mc_gateway=info")
            .env_remove("POD_NAMESPACE")
            .args(["egress", "--listen-ip", "127.0.0.1"])
            .args(["--admin", &admin.to_string(), "--reload-interval", "1"])
            .args(identity_flags(dir, "egress"))
            .stderr(std::fs::File::create(dir.join("egress.log")).unwrap());
        let egress = Egress {
            _proc: KillOnDrop(source(&mut cmd).spawn().unwrap()),
            admin,
            log: dir.join("egress.log"),
        };
        eventually("egress /ready 200 with no route", T, || async {
            admin_get(admin, "/ready").await.filter(|(s, _)| *s == 200)
        })
        .await;
        egress
    }

    async fn metrics(&self) -> String {
        admin_get(self.admin, "/metrics").await.unwrap().1
    }

    /// Waits until the egress log holds `n` lines containing `text`.
    async fn wait_log(&self, text: &str, n: usize) {
        eventually(&format!("{n}× {text:?} in the egress log"), T, || async {
            (read(&self.log).matches(text).count() >= n).then_some(())
        })
        .await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn egress_serves_routes_from_the_config_map_and_follows_changes() {
    let bed = mc_tests::shared_api_only().unwrap();
    let client = bed.client("west").await.unwrap();
    let ns = unique("egress");
    ensure_namespace(&client, &ns).await;
    let dir = tempfile::tempdir().unwrap();
    let p = |n: &str| dir.path().join(n);
    let issuer = pki(dir.path());
    let gw = Gateway::start(dir.path(), &ns).await;
    let (http_target, echo_target) = (gw.http_target.clone(), gw.echo_target.clone());

    // The egress, as the cluster admin of west, following the namespace of this test. No
    // ConfigMap yet: an empty table, served, so ready.
    let kubeconfig = bed
        .user_kubeconfig("west", &format!("{ns}-egress"), &["system:masters"])
        .unwrap();
    let egress = Egress::start(dir.path(), |c| {
        c.env("KUBECONFIG", &kubeconfig).args(["--namespace", &ns])
    })
    .await;
    let egress_admin = egress.admin;
    let logs = || {
        format!(
            "egress log:\n{}\ngateway log:\n{}",
            read(&p("egress.log")),
            read(&p("gateway.log"))
        )
    };

    assert_eq!(admin_get(egress_admin, "/live").await.unwrap().0, 200);
    assert_eq!(metric(&egress.metrics().await, "egress_routes "), 0.0);

    // One route: a plain TCP client speaks HTTP/1.1 to the backend through the egress.
    let ports = free_route_ports(2);
    let (p_http, p_echo) = (ports[0], ports[1]);
    let gateway = vec![gw.addr.clone()];
    let http_route = route(p_http, &http_target, &gateway);
    let http_key = format!("{ns}.http-east.80");
    let api: Api<ConfigMap> = Api::namespaced(client.clone(), &ns);
    set_routes(&api, &[(&http_key, &http_route)]).await;
    let resp = eventually("HTTP through the egress", T, || async {
        http_get(p_http)
            .await
            .filter(|r| r.contains("hello from http"))
    })
    .await;
    assert!(resp.starts_with("HTTP/1.1 200 OK"), "{resp}\n{}", logs());
    // The gateway saw the egress identity on an opaque splice to the target.
    let id = egress_id();
    eventually("the gateway names the egress identity", T, || async {
        let log = read(&p("gateway.log"));
        log.lines()
            .any(|l| l.contains("opaque splice") && l.contains(&id) && l.contains(&http_target))
            .then_some(())
    })
    .await;

    // A second route while running: reachable without restart, opaque bytes echo.
    let echo_route = route(p_echo, &echo_target, &gateway);
    let echo_key = format!("{ns}.echo-east.7");
    set_routes(&api, &[(&http_key, &http_route), (&echo_key, &echo_route)]).await;
    let msg = b"opaque \x00\x01\x02 bytes\n";
    let back = eventually("echo through the second route", T, || echo(p_echo, msg)).await;
    assert_eq!(back, msg);
    let m = egress.metrics().await;
    assert_eq!(metric(&m, "egress_routes "), 2.0, "{m}");
    let echo_series =
        format!("egress_connections_total{{link=\"east\",target=\"{echo_target}\"}} ");
    assert!(metric(&m, &echo_series) >= 1.0, "{m}");
    eventually("no open connection left", T, || async {
        (metric(&egress.metrics().await, "egress_open_connections ") == 0.0).then_some(())
    })
    .await;

    // The egress certificate renewed on disk: new connections present the new one.
    let renewed = egress_id().replace(EGRESS_NAME, "renewed-egress");
    write_leaf(dir.path(), &issuer, "egress", &renewed).unwrap();
    eventually("the gateway names the renewed identity", T, || async {
        http_get(p_http).await?;
        read(&p("gateway.log"))
            .lines()
            .any(|l| l.contains("opaque splice") && l.contains(&renewed))
            .then_some(())
    })
    .await;

    // The second route removed: its port refuses connections; the first still works.
    set_routes(&api, &[(&http_key, &http_route)]).await;
    eventually("the removed route's port refuses", T, || async {
        TcpStream::connect(("127.0.0.1", p_echo)).await.err()
    })
    .await;
    assert!(http_get(p_http).await.unwrap().contains("hello from http"));
    assert_eq!(metric(&egress.metrics().await, "egress_routes "), 1.0);

    // The gateways changed to [a dead address, the real one]: fails over to the real one.
    let dead = format!("127.0.0.1:{}", free_port());
    let failover = route(p_http, &http_target, &[dead.clone(), gateway[0].clone()]);
    set_routes(&api, &[(&http_key, &failover)]).await;
    egress.wait_log("egress route changed", 1).await;
    let resp = http_get(p_http).await.unwrap_or_default();
    assert!(resp.contains("hello from http"), "{resp}\n{}", logs());
    let failures = read(&egress.log)
        .lines()
        .filter(|l| l.contains("cannot reach the gateway") && l.contains(&dead))
        .count();
    assert!(
        failures >= 1,
        "the dead address was tried first\n{}",
        logs()
    );
    let http_failures =
        format!("egress_connect_failures_total{{link=\"east\",target=\"{http_target}\"}} ");
    assert_eq!(metric(&egress.metrics().await, &http_failures), 0.0);

    // Only the dead address: the client connection is closed, and counted.
    let only_dead = route(p_http, &http_target, std::slice::from_ref(&dead));
    set_routes(&api, &[(&http_key, &only_dead)]).await;
    egress.wait_log("egress route changed", 2).await;
    let resp = http_get(p_http).await.unwrap_or_default();
    assert!(!resp.contains("hello"), "{resp}");
    eventually("a connect failure counted", T, || async {
        (metric(&egress.metrics().await, &http_failures) >= 1.0).then_some(())
    })
    .await;

    // The ConfigMap deleted: an empty table, every port closed, still ready.
    api.delete(ROUTES_CONFIG_MAP, &DeleteParams::default())
        .await
        .unwrap();
    eventually("the last route's port refuses", T, || async {
        TcpStream::connect(("127.0.0.1", p_http)).await.err()
    })
    .await;
    let m = egress.metrics().await;
    assert_eq!(metric(&m, "egress_routes "), 0.0, "{m}");
    assert_eq!(admin_get(egress_admin, "/ready").await.unwrap().0, 200);

    let namespaces: Api<Namespace> = Api::all(client);
    let _ = namespaces.delete(&ns, &DeleteParams::default()).await;
}

/// A directory with a PKI, a gateway for targets in `ns`, the path of a routes file there
/// (not written yet), and a free route port.
async fn file_setup(ns: &str) -> (tempfile::TempDir, Gateway, PathBuf, u16) {
    let dir = tempfile::tempdir().unwrap();
    pki(dir.path());
    let gw = Gateway::start(dir.path(), ns).await;
    let routes = dir.path().join("routes.json");
    (dir, gw, routes, free_route_ports(1)[0])
}

/// A federated route's member.
fn member(target: &str, gateways: &[String], weight: u32) -> Member {
    Member {
        target: target.into(),
        gateways: gateways.to_vec(),
        identity: if gateways.is_empty() {
            String::new()
        } else {
            GATEWAY_ID.into()
        },
        weight,
        ready: true,
    }
}

/// Sends `n` HTTP requests through `port`, one connection each: how many `local` answered and
/// how many the remote (through the gateway); panics on a failed request.
async fn shares(port: u16, n: usize) -> (usize, usize) {
    let (mut local, mut remote) = (0, 0);
    for i in 0..n {
        let resp = http_get(port).await.unwrap_or_default();
        if resp.contains("hello from local") {
            local += 1;
        } else if resp.contains("hello from http") {
            remote += 1;
        } else {
            unreachable!("request {i} through the federated route failed: {resp:?}");
        }
    }
    (local, remote)
}

/// A federated route: connections split by weight between the local member (plain TCP) and a
/// remote one (mTLS through a real gateway); weights 0/100 move everything; with the gateway
/// killed every request is served locally (failover without a failed request) and the member
/// is marked unhealthy; with the gateway back the shares return.
#[tokio::test(flavor = "multi_thread")]
async fn egress_balances_a_federated_route_and_fails_over() {
    let (dir, gw, routes, port) = file_setup("fed").await;
    let local = body_backend("hello from local").await.to_string();
    let egress = Egress::start(dir.path(), |c| c.arg("--routes-file").arg(&routes)).await;
    let write = |local_weight: u32, remote_weight: u32| {
        let r = Route {
            listen: port,
            link: FEDERATED_OWNER.into(),
            target: "http-federated.fed.svc.cluster.local:80".into(),
            gateways: vec![],
            identity: String::new(),
            members: BTreeMap::from([
                (LOCAL_MEMBER.to_owned(), member(&local, &[], local_weight)),
                (
                    "east".to_owned(),
                    member(
                        &gw.http_target,
                        std::slice::from_ref(&gw.addr),
                        remote_weight,
                    ),
                ),
            ]),
        };
        let tmp = dir.path().join("routes.tmp");
        std::fs::write(
            &tmp,
            serde_json::to_string(&data(&[("fed.http-federated.80", &r)])).unwrap(),
        )
        .unwrap();
        std::fs::rename(&tmp, &routes).unwrap();
    };
    write(1, 1);
    eventually("the federated port answers", T, || async {
        http_get(port).await.filter(|r| r.contains("hello"))
    })
    .await;

    // 200 connections: within binomial bounds of 50/50 (p = 0.5: mean 100, 3 sigma ~ 21).
    let (l, r) = shares(port, 200).await;
    assert!(
        (79..=121).contains(&l) && l + r == 200,
        "local {l}, remote {r}"
    );
    let m = egress.metrics().await;
    assert!(
        metric(
            &m,
            "egress_member_connections_total{target=\"http-federated.fed.svc.cluster.local:80\",member=\"east\"}"
        ) >= 79.0,
        "{m}"
    );

    // Weights 0/100 and 100/0 move all traffic.
    write(0, 100);
    eventually("weights 0/100", T, || async {
        (shares(port, 5).await.0 == 0).then_some(())
    })
    .await;
    assert_eq!(shares(port, 50).await, (0, 50));
    write(100, 0);
    eventually("weights 100/0", T, || async {
        (shares(port, 5).await.1 == 0).then_some(())
    })
    .await;
    assert_eq!(shares(port, 50).await, (50, 0));

    // The gateway dies: not one request fails, all are served locally, and the member turns
    // unhealthy by probe within two probe intervals.
    write(1, 1);
    eventually("weights 1/1 again", T, || async {
        (shares(port, 4).await.1 > 0).then_some(())
    })
    .await;
    let addr = gw.addr.clone();
    drop(gw);
    let down = std::time::Instant::now();
    assert_eq!(shares(port, 40).await, (40, 0));
    let healthy = "egress_member_healthy{target=\"http-federated.fed.svc.cluster.local:80\",member=\"east\"} ";
    eventually("east marked unhealthy", T, || async {
        (metric(&egress.metrics().await, healthy) == 0.0
            && egress.metrics().await.contains(healthy))
        .then_some(())
    })
    .await;
    assert!(
        down.elapsed() < Duration::from_secs(10),
        "detected after {:?}",
        down.elapsed()
    );

    // Back up: the probe brings it back and the shares return.
    let _gw = Gateway::start_at(dir.path(), "fed", addr).await;
    eventually("east healthy again", T, || async {
        (metric(&egress.metrics().await, healthy) == 1.0).then_some(())
    })
    .await;
    let (l, r) = shares(port, 40).await;
    assert!(l >= 10 && r >= 10, "local {l}, remote {r}");
}

/// The alternative route source: a file holding the ConfigMap's data, polled.
#[tokio::test(flavor = "multi_thread")]
async fn egress_serves_routes_from_a_file() {
    let (dir, gw, routes, port) = file_setup("file").await;
    let egress = Egress::start(dir.path(), |c| c.arg("--routes-file").arg(&routes)).await;
    let r = route(port, &gw.http_target, std::slice::from_ref(&gw.addr));
    let write = |data: &BTreeMap<String, String>| {
        let tmp = dir.path().join("routes.tmp");
        std::fs::write(&tmp, serde_json::to_string(data).unwrap()).unwrap();
        std::fs::rename(&tmp, &routes).unwrap();
    };
    write(&data(&[("file.http-east.80", &r)]));
    let resp = eventually("HTTP through a route of the file", T, || async {
        http_get(port)
            .await
            .filter(|r| r.contains("hello from http"))
    })
    .await;
    assert!(resp.starts_with("HTTP/1.1 200 OK"), "{resp}");
    assert_eq!(metric(&egress.metrics().await, "egress_routes "), 1.0);
    write(&BTreeMap::new());
    eventually(
        "the port of a route gone from the file refuses",
        T,
        || async { TcpStream::connect(("127.0.0.1", port)).await.err() },
    )
    .await;
}

/// SIGTERM: the ports close and /ready turns 503 at once, an open connection keeps working
/// until it closes, then the process exits cleanly.
#[tokio::test(flavor = "multi_thread")]
async fn egress_drains_open_connections_on_sigterm() {
    let (dir, gw, routes, port) = file_setup("drain").await;
    let r = route(port, &gw.echo_target, std::slice::from_ref(&gw.addr));
    std::fs::write(
        &routes,
        serde_json::to_string(&data(&[("drain.echo-east.7", &r)])).unwrap(),
    )
    .unwrap();
    let mut egress = Egress::start(dir.path(), |c| c.arg("--routes-file").arg(&routes)).await;
    eventually("echo through the route", T, || echo(port, b"up")).await;
    let mut open = TcpStream::connect(("127.0.0.1", port)).await.unwrap();
    assert_eq!(roundtrip(&mut open, b"before").await, b"before");

    let pid = egress._proc.0.id().to_string();
    let sent = Command::new("kill").args(["-TERM", &pid]).status().unwrap();
    assert!(sent.success());
    eventually("the port closes on SIGTERM", T, || async {
        TcpStream::connect(("127.0.0.1", port)).await.err()
    })
    .await;
    let admin = egress.admin;
    eventually("/ready 503 while draining", T, || async {
        admin_get(admin, "/ready").await.filter(|(s, _)| *s == 503)
    })
    .await;
    let msg = b"during the drain";
    assert_eq!(roundtrip(&mut open, msg).await, msg);
    assert!(
        egress._proc.0.try_wait().unwrap().is_none(),
        "still draining"
    );

    drop(open);
    let proc = &mut egress._proc.0;
    let start = std::time::Instant::now();
    let status = loop {
        if let Some(status) = proc.try_wait().unwrap() {
            break status;
        }
        assert!(start.elapsed() < T, "the egress did not exit once drained");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert!(status.success(), "{status:?}\n{}", read(&egress.log));
    assert!(read(&egress.log).contains("draining open connections"));
}

/// Writes `msg` on `s` and reads as many bytes back.
async fn roundtrip(s: &mut TcpStream, msg: &[u8]) -> Vec<u8> {
    s.write_all(msg).await.unwrap();
    let mut back = vec![0u8; msg.len()];
    s.read_exact(&mut back).await.unwrap();
    back
}

/// Bad flags fail at once with a message naming the flag and the fix.
#[test]
fn bad_egress_flags_are_refused_clearly() {
    let dir = tempfile::tempdir().unwrap();
    let p = |n: &str| dir.path().join(n).display().to_string();
    pki(dir.path());
    let run = |key: &str, args: &[&str]| {
        let out = Command::new(gateway_bin())
            .args(["egress", "--cert", &p("egress.crt"), "--key", key])
            .args([
                "--trust-anchors",
                &p("ca.crt"),
                "--routes-file",
                &p("routes.yaml"),
            ])
            .args(args)
            .output()
            .unwrap();
        assert!(!out.status.success(), "{args:?} succeeded");
        String::from_utf8_lossy(&out.stderr).into_owned()
    };
    let key = p("egress.key");
    let err = run(&key, &["--listen-ip", "nope"]);
    assert!(err.contains("--listen-ip"), "{err}");
    let err = run(&key, &["--admin", "nowhere"]);
    assert!(err.contains("--admin") && err.contains("fix"), "{err}");
    let err = run(&key, &["--reload-interval", "0", "--admin", "off"]);
    assert!(
        err.contains("--reload-interval") && err.contains("fix"),
        "{err}"
    );
    let err = run("/nonexistent/key.pem", &["--admin", "off"]);
    assert!(err.contains("--key") && err.contains("fix"), "{err}");
}
