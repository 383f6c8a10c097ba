//! Leaf certificates that renew themselves: the real `mc-gateway serve` and `mc-gateway
//! egress` in issuer mode with leaves of a few seconds, traffic flowing through every
//! rotation; and a leaf that never outlives its issuer.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::time::{Duration, Instant, SystemTime};

use common::*;
use mc_core::egress::{PORT_RANGE, Route};
use mc_core::pki::{IssuerOptions, create_issuer, not_after_of};
use mc_gateway::Target;
use mc_gateway::client::GatewayConnector;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const EGRESS_ID: &str =
    "mc-egress.linkerd-multicluster.serviceaccount.identity.linkerd.cluster.local";

/// Runs `check` every 100 ms until it returns `Some`, or panics after `limit` naming `what`.
async fn eventually<T, F: Future<Output = Option<T>>>(
    what: &str,
    limit: Duration,
    mut check: impl FnMut() -> F,
) -> T {
    let deadline = Instant::now() + limit;
    let mut tick = tokio::time::interval(Duration::from_millis(100));
    loop {
        tick.tick().await;
        if let Some(v) = check().await {
            return v;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
    }
}

/// The `--issuer-cert`, `--issuer-key` and `--leaf-lifetime` flags.
fn issuer_flags(issuer: &Files, lifetime: &str) -> Vec<String> {
    let (cert, key) = (issuer.cert.display(), issuer.key.display());
    strings(&[
        "--issuer-cert",
        &cert.to_string(),
        "--issuer-key",
        &key.to_string(),
        "--leaf-lifetime",
        lifetime,
    ])
}

/// Starts `mc-gateway serve` in issuer mode, with `statics`; returns it, its data and admin
/// addresses.
async fn serve(
    pki: &Pki,
    issuer: &Files,
    lifetime: &str,
    statics: &[String],
) -> (Proc, SocketAddr, SocketAddr) {
    let mut flags = issuer_flags(issuer, lifetime);
    flags.extend(["--threads".into(), "1".into()]);
    spawn_gateway(pki, flags, statics).await
}

/// A client with a file leaf of `CLIENT_ID`, straight to the gateway at `addr`.
fn client(pki: &Pki, addr: SocketAddr) -> GatewayConnector {
    let client = pki.leaf("client", CLIENT_ID);
    GatewayConnector::new(
        &client.cert,
        &client.key,
        &pki.anchors(),
        addr.to_string(),
        GATEWAY_ID,
    )
    .unwrap()
}

/// A port of the egress range free on loopback now.
fn free_route_port() -> u16 {
    let offset = u16::try_from(std::process::id() % 500).unwrap();
    (PORT_RANGE.start() + offset..=*PORT_RANGE.end())
        .find(|p| std::net::TcpListener::bind(("127.0.0.1", *p)).is_ok())
        .expect("a free port in the egress range")
}

/// The admin server's `/metrics`.
async fn metrics(admin: SocketAddr) -> String {
    let (status, body) = admin_get(admin, "/metrics").await;
    assert_eq!(status, 200, "{body}");
    body
}

/// Writes `msg` on `s`, closes the write side, and checks that the same bytes come back.
async fn echo_exchange<S>(s: &mut S, msg: &[u8]) -> Result<(), String>
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    s.write_all(msg).await.map_err(|e| format!("write: {e}"))?;
    s.shutdown().await.map_err(|e| format!("shutdown: {e}"))?;
    let mut back = Vec::new();
    s.read_to_end(&mut back)
        .await
        .map_err(|e| format!("read: {e}"))?;
    (back == msg)
        .then_some(())
        .ok_or_else(|| format!("echo {back:?} for {msg:?}"))
}

/// One opaque exchange through the egress port on a new connection.
async fn through_egress(port: u16, msg: &[u8]) -> Result<(), String> {
    let mut s = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .map_err(|e| format!("connect: {e}"))?;
    echo_exchange(&mut s, msg).await
}

/// One exchange straight to the gateway on a new connection: the leaf the gateway presented
/// (DER), or why it failed.
async fn direct(connector: &GatewayConnector, msg: &[u8]) -> Result<Vec<u8>, String> {
    let target = Target::parse_authority(&format!("{SVC}:7000"), None).unwrap();
    let mut s = connector
        .connect(&target, None)
        .await
        .map_err(|e| format!("connect: {e}"))?;
    let leaf = s
        .get_ref()
        .1
        .peer_certificates()
        .and_then(|c| c.first())
        .map(|c| c.to_vec())
        .ok_or("no peer certificate")?;
    echo_exchange(&mut s, msg).await.map(|()| leaf)
}

/// The notAfter of a DER certificate, Unix seconds.
fn not_after_secs(der: &[u8]) -> i64 {
    let (_, cert) = x509_parser::parse_x509_certificate(der).unwrap();
    cert.validity().not_after.timestamp()
}

/// The serial number of a DER certificate.
fn serial(der: &[u8]) -> String {
    let (_, cert) = x509_parser::parse_x509_certificate(der).unwrap();
    cert.raw_serial_as_string()
}

/// The expiry gauge and renewal counter in `text`, under `prefix`.
fn cert_metrics(text: &str, prefix: &str) -> (f64, f64) {
    (
        metric(
            text,
            &format!("{prefix}identity_certificate_expiry_timestamp_seconds "),
        ),
        metric(
            text,
            &format!("{prefix}identity_certificate_renewals_total "),
        ),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gateway_and_egress_renew_their_leaves_without_failing_a_request() {
    let pki = Pki::new();
    let issuer = pki.issuer_files();
    let echo = echo_backend().await;
    let (gw, gw_addr, gw_admin) = serve(&pki, &issuer, "6s", &[format!("{SVC}:7000={echo}")]).await;

    let port = free_route_port();
    let route = Route {
        listen: port,
        link: "east".into(),
        target: format!("{SVC}:7000"),
        gateways: vec![gw_addr.to_string()],
        identity: GATEWAY_ID.into(),
        members: Default::default(),
    };
    let routes: BTreeMap<&str, String> =
        BTreeMap::from([("shop.echo.7000", serde_json::to_string(&route).unwrap())]);
    let routes_file = pki.dir.path().join("routes.json");
    std::fs::write(&routes_file, serde_json::to_string(&routes).unwrap()).unwrap();
    let mut args = command_line(&pki, "egress");
    args.extend(strings(&[
        "--listen-ip",
        "127.0.0.1",
        "--identity",
        EGRESS_ID,
        "--routes-file",
        &routes_file.display().to_string(),
    ]));
    args.extend(issuer_flags(&issuer, "6s"));
    let (egress, v) = Proc::spawn(&args, "admin server listening", &["admin"]).await;
    let egress_admin: SocketAddr = v[0].parse().unwrap();
    eventually("the egress ready", Duration::from_secs(30), || async {
        (admin_get(egress_admin, "/ready").await.0 == 200).then_some(())
    })
    .await;

    let (gw_expiry0, _) = cert_metrics(&metrics(gw_admin).await, "mc_gateway_");
    let (egress_expiry0, _) = cert_metrics(&metrics(egress_admin).await, "");
    assert!(gw_expiry0 > 0.0 && egress_expiry0 > 0.0);

    let connector = client(&pki, gw_addr);

    // Requests flow, each on a new connection, until both sides renewed twice and clients
    // saw three gateway leaves (~10 s with 6 s leaves), for at most a minute.
    let (mut failures, mut requests) = (Vec::new(), 0u32);
    let mut gateway_leaves = BTreeMap::new();
    let mut egress_renewals = 0.0;
    let mut gateway_renewals = 0.0;
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut pace = tokio::time::interval(Duration::from_millis(50));
    while Instant::now() < deadline {
        pace.tick().await;
        requests += 1;
        let msg = format!("request {requests}");
        if let Err(e) = through_egress(port, msg.as_bytes()).await {
            failures.push(format!("egress #{requests}: {e}"));
        }
        match direct(&connector, msg.as_bytes()).await {
            Ok(leaf) => {
                gateway_leaves.insert(serial(&leaf), not_after_secs(&leaf));
            }
            Err(e) => failures.push(format!("direct #{requests}: {e}")),
        }
        if requests % 20 == 0 {
            gateway_renewals = cert_metrics(&metrics(gw_admin).await, "mc_gateway_").1;
            egress_renewals = cert_metrics(&metrics(egress_admin).await, "").1;
            if gateway_renewals >= 2.0 && egress_renewals >= 2.0 && gateway_leaves.len() >= 3 {
                break;
            }
        }
    }

    assert!(
        failures.is_empty(),
        "{} of {requests} requests failed: {failures:#?}\ngateway: {}\negress: {}",
        failures.len(),
        gw.log(),
        egress.log()
    );
    assert!(
        gateway_leaves.len() >= 3,
        "clients saw {} gateway leaves: {gateway_leaves:?}",
        gateway_leaves.len()
    );
    let not_afters: BTreeSet<_> = gateway_leaves.values().collect();
    assert!(not_afters.len() >= 2, "{gateway_leaves:?}");
    let (gw_expiry, gw_renewals) = cert_metrics(&metrics(gw_admin).await, "mc_gateway_");
    let (egress_expiry, egress_renewals_now) = cert_metrics(&metrics(egress_admin).await, "");
    assert!(
        gw_renewals >= 2.0 && egress_renewals_now >= 2.0,
        "renewals: gateway {gw_renewals} (last seen {gateway_renewals}), egress \
         {egress_renewals_now} (last seen {egress_renewals})"
    );
    assert!(gw_expiry > gw_expiry0, "{gw_expiry} > {gw_expiry0}");
    assert!(
        egress_expiry > egress_expiry0,
        "{egress_expiry} > {egress_expiry0}"
    );
    // The gateway saw the egress's renewed leaves too, and no handshake failed.
    let gw_metrics = metrics(gw_admin).await;
    assert!(
        !gw_metrics.contains("mc_gateway_tls_handshake_errors_total{"),
        "{gw_metrics}"
    );
    for log in [gw.log(), egress.log()] {
        assert!(
            log.matches("leaf certificate renewed").count() >= 2,
            "{log}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_leaf_never_outlives_its_issuer() {
    let pki = Pki::new();
    let now = SystemTime::now();
    let short = create_issuer(
        &pki.root,
        &IssuerOptions {
            not_after: now + Duration::from_secs(30),
            ..IssuerOptions::new(now)
        },
    )
    .unwrap();
    let issuer_end = not_after_of(&short).unwrap();
    let issuer = pki.write_issuer("short-issuer", &short);
    let echo = echo_backend().await;
    let (gw, gw_addr, gw_admin) =
        serve(&pki, &issuer, "24h", &[format!("{SVC}:7000={echo}")]).await;
    let connector = client(&pki, gw_addr);
    let leaf = direct(&connector, b"hello").await.unwrap();
    let issuer_secs = issuer_end
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    assert_eq!(not_after_secs(&leaf), i64::try_from(issuer_secs).unwrap());
    let (expiry, _) = cert_metrics(&metrics(gw_admin).await, "mc_gateway_");
    assert_eq!(expiry, issuer_secs as f64);
    let log = gw.log();
    let warning = log
        .lines()
        .find(|l| l.contains("the issuer expires before the leaf would"))
        .unwrap_or_else(|| panic!("no warning in {log}"));
    assert!(warning.contains("\"level\":\"WARN\""), "{warning}");
    assert!(
        warning.contains("requested_not_after") && warning.contains("issuer_not_after"),
        "{warning}"
    );
}

/// The binary refuses bad certificate flags at once, naming the flags and the fix.
#[test]
fn bad_certificate_flags_are_refused_clearly() {
    let pki = Pki::new();
    let issuer = pki.issuer_files();
    let leaf = pki.leaf("egress", EGRESS_ID);
    let run = |args: &[String]| {
        let out = std::process::Command::new(BIN)
            .args(command_line(&pki, "egress"))
            .args(["--routes-file", "/nonexistent/routes.yaml"])
            .args(args)
            .output()
            .unwrap();
        assert!(!out.status.success(), "{args:?} succeeded");
        String::from_utf8_lossy(&out.stderr).into_owned()
    };
    let leaf_flags = strings(&[
        "--cert",
        &leaf.cert.display().to_string(),
        "--key",
        &leaf.key.display().to_string(),
    ]);
    let both = [leaf_flags.clone(), issuer_flags(&issuer, "1h")].concat();
    let err = run(&both);
    assert!(
        err.contains("--issuer-cert") && err.contains("tip: pass either --cert and --key"),
        "{err}"
    );
    let err = run(&issuer_flags(&issuer, "1h"));
    assert!(err.contains("--identity") && err.contains("fix"), "{err}");
    let mut missing = issuer_flags(&issuer, "1h");
    missing[1] = "/nonexistent/issuer.crt".into();
    missing.extend(strings(&["--identity", EGRESS_ID]));
    let err = run(&missing);
    assert!(
        err.contains("--issuer-cert") && err.contains("fix"),
        "{err}"
    );
    let err = run(&[leaf_flags, strings(&["--identity", GATEWAY_ID])].concat());
    assert!(
        err.contains("--identity") && err.contains(EGRESS_ID),
        "{err}"
    );
}
