//! The real `mc-gateway` binary as a child process: readiness, SIGTERM draining without data
//! loss, the drain deadline, the serving threads' scheduler slice, and `mc-gateway connect`.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::*;
use mc_gateway::Target;
use mc_gateway::client::GatewayConnector;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

async fn serve(pki: &Pki, statics: &[String], drain_secs: f64) -> (Proc, SocketAddr, SocketAddr) {
    serve_with(pki, statics, drain_secs, &[]).await
}

/// [`serve`] with `extra` flags.
async fn serve_with(
    pki: &Pki,
    statics: &[String],
    drain_secs: f64,
    extra: &[&str],
) -> (Proc, SocketAddr, SocketAddr) {
    let gw = pki.leaf("gateway", GATEWAY_ID);
    let mut flags: Vec<String> = vec![
        "--cert".into(),
        gw.cert.display().to_string(),
        "--key".into(),
        gw.key.display().to_string(),
        "--drain-timeout".into(),
        drain_secs.to_string(),
        // Several accept threads, whatever the CPU count: drain must cover all of them.
        "--threads".into(),
        "3".into(),
    ];
    flags.extend(extra.iter().map(|s| s.to_string()));
    spawn_gateway(pki, flags, statics).await
}

/// The scheduler slice (`se.slice`) of each serving thread of process `pid`.
fn serving_thread_slices(pid: u32) -> Vec<(String, Duration)> {
    let mut slices = Vec::new();
    for task in std::fs::read_dir(format!("/proc/{pid}/task")).unwrap() {
        let dir = task.unwrap().path();
        let name = std::fs::read_to_string(dir.join("comm")).unwrap();
        if !name.starts_with("mc-gateway") {
            continue;
        }
        let sched = std::fs::read_to_string(dir.join("sched")).unwrap();
        let line = sched.lines().find(|l| l.starts_with("se.slice")).unwrap();
        let nanos = line.rsplit(':').next().unwrap().trim().parse().unwrap();
        slices.push((name.trim().to_owned(), Duration::from_nanos(nanos)));
    }
    slices
}

#[tokio::test]
async fn every_serving_thread_runs_in_the_slice_asked_for() {
    let pki = Pki::new();
    let default = mc_gateway::current_slice().expect("this kernel reports se.slice");
    // Without the flag the slice stays the kernel's: the short slice is opt-in.
    let cases: [(&[&str], Duration); 3] = [
        (&["--sched-slice-us", "300"], Duration::from_micros(300)),
        (&["--sched-slice-us", "0"], default),
        (&[], default),
    ];
    for (flag, want) in cases {
        let (p, _, _) = serve_with(&pki, &[], 1.0, flag).await;
        // The workers start, and ask for their slice, after the "listening" line.
        let pid = p.child.id().unwrap();
        let deadline = Instant::now() + Duration::from_secs(10);
        let mut slices = serving_thread_slices(pid);
        let settled = |s: &[(String, Duration)]| s.len() == 3 && s.iter().all(|t| t.1 == want);
        while !settled(&slices) && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(20)).await;
            slices = serving_thread_slices(pid);
        }
        assert_eq!(
            slices.len(),
            3,
            "the main thread and two workers: {slices:?}"
        );
        for (thread, slice) in slices {
            assert_eq!(slice, want, "{thread} with {flag:?}");
        }
    }
}

#[test]
fn a_slice_the_kernel_would_not_accept_is_refused_with_the_fix() {
    for bad in ["50", "100001", "-1", "fast"] {
        let out = std::process::Command::new(BIN)
            .args(["serve".to_owned(), format!("--sched-slice-us={bad}")])
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{bad}: {err}");
        assert!(err.contains("--sched-slice-us"), "{bad}: {err}");
        assert!(
            err.contains("fix: a whole number of microseconds from 100 to 100000"),
            "{bad}: {err}"
        );
    }
}

#[test]
fn a_bad_policy_file_at_start_is_refused_naming_the_file_and_the_fix() {
    let pki = Pki::new();
    let gw = pki.leaf("gateway", GATEWAY_ID);
    for (text, want) in [
        ("rules: [", "is not a valid policy"),
        ("rules:\n- {services: [''], clients: [a]}\n", "rule 0"),
        ("", "is empty"),
    ] {
        let policy = pki.dir.path().join("policy.yaml");
        std::fs::write(&policy, text).unwrap();
        let args = serve_command_line(
            &pki,
            vec![
                format!("--cert={}", gw.cert.display()),
                format!("--key={}", gw.key.display()),
                format!("--policy={}", policy.display()),
            ],
        );
        let out = std::process::Command::new(BIN)
            .args(&args)
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{text:?}: started");
        for part in [policy.to_str().unwrap(), want, "fix:"] {
            assert!(err.contains(part), "{text:?}: {part} not in {err}");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_drains_in_flight_transfers_without_loss() {
    let pki = Pki::new();
    let sink = hash_backend().await;
    let (mut proc, addr, admin) = serve(&pki, &[format!("{SVC}:9000={sink}")], 30.0).await;
    // Ready flips to 200 once the accept loop runs (just after the "listening" line).
    let deadline = Instant::now() + Duration::from_secs(10);
    while admin_get(admin, "/ready").await.0 != 200 {
        assert!(Instant::now() < deadline, "never ready: {}", proc.log());
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(admin_get(admin, "/live").await.0, 200);
    assert!(
        admin_get(admin, "/metrics")
            .await
            .1
            .contains("mc_gateway_connections_accepted_total")
    );

    let client = pki.leaf("client", CLIENT_ID);
    let c = GatewayConnector::new(
        &client.cert,
        &client.key,
        &pki.anchors(),
        addr.to_string(),
        GATEWAY_ID,
    )
    .unwrap();
    const STREAMS: usize = 4;
    let started = Arc::new(tokio::sync::Barrier::new(STREAMS + 1));
    let mut tasks = Vec::new();
    for i in 0..STREAMS {
        let c = c.clone();
        let started = started.clone();
        tasks.push(tokio::spawn(async move {
            let data = pattern(i as u64 + 1, 16 * 1024 * 1024);
            let want = ring::digest::digest(&ring::digest::SHA256, &data);
            let mut s = c.connect(&Target::new(SVC, 9000), None).await.unwrap();
            let mut chunks = data.chunks(256 * 1024);
            s.write_all(chunks.next().unwrap()).await.unwrap();
            started.wait().await;
            // The rest, slowly: the transfer is still running when SIGTERM arrives.
            for chunk in chunks {
                s.write_all(chunk).await.unwrap();
                tokio::time::sleep(Duration::from_millis(25)).await;
            }
            s.shutdown().await.unwrap();
            let mut got = Vec::new();
            s.read_to_end(&mut got).await.unwrap();
            assert_eq!(got.as_slice(), want.as_ref(), "stream {i} lost data");
        }));
    }
    started.wait().await;
    let term_at = Instant::now();
    proc.sigterm();
    // New connections are refused once the listener is closed.
    let deadline = Instant::now() + Duration::from_secs(5);
    while tokio::net::TcpStream::connect(addr).await.is_ok() {
        assert!(Instant::now() < deadline, "still accepting after SIGTERM");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    for t in tasks {
        t.await.unwrap();
    }
    let status = tokio::time::timeout(Duration::from_secs(30), proc.child.wait())
        .await
        .expect("did not exit after draining")
        .unwrap();
    assert!(status.success(), "exit {status:?}: {}", proc.log());
    assert!(term_at.elapsed() < Duration::from_secs(30));
    assert!(proc.log().contains("draining"), "{}", proc.log());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_closes_streams_still_open_at_the_drain_deadline() {
    let pki = Pki::new();
    let echo = echo_backend().await;
    let (mut proc, addr, _) = serve(&pki, &[format!("{SVC}:7000={echo}")], 1.0).await;
    let client = pki.leaf("client", CLIENT_ID);
    let c = GatewayConnector::new(
        &client.cert,
        &client.key,
        &pki.anchors(),
        addr.to_string(),
        GATEWAY_ID,
    )
    .unwrap();
    let mut s = c.connect(&Target::new(SVC, 7000), None).await.unwrap();
    s.write_all(b"hi").await.unwrap();
    let mut b = [0u8; 2];
    s.read_exact(&mut b).await.unwrap();
    let t0 = Instant::now();
    proc.sigterm();
    let status = tokio::time::timeout(Duration::from_secs(15), proc.child.wait())
        .await
        .expect("did not exit after the drain deadline")
        .unwrap();
    assert!(status.success(), "{}", proc.log());
    let waited = t0.elapsed();
    assert!(
        waited >= Duration::from_millis(900),
        "exited before the deadline: {waited:?}"
    );
    // The held stream is closed.
    let got = read_until_closed(&mut s, Duration::from_secs(5)).await;
    assert_eq!(got.as_deref(), Some(&b""[..]));
    assert!(
        proc.log().contains("drain deadline reached"),
        "{}",
        proc.log()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connect_subcommand_forwards_through_the_gateway() {
    let pki = Pki::new();
    let echo = echo_backend().await;
    let (_gw, addr, _) = serve(&pki, &[format!("{SVC}:7000={echo}")], 5.0).await;
    let client = pki.leaf("client", CLIENT_ID);
    let args: Vec<String> = vec![
        "--log-format".into(),
        "json".into(),
        "connect".into(),
        "--listen".into(),
        "127.0.0.1:0".into(),
        "--backend".into(),
        format!("gateway={addr},weight=1"),
        "--target".into(),
        format!("{SVC}:7000"),
        "--gateway-identity".into(),
        GATEWAY_ID.into(),
        "--cert".into(),
        client.cert.display().to_string(),
        "--key".into(),
        client.key.display().to_string(),
        "--trust-anchors".into(),
        pki.anchors().display().to_string(),
    ];
    let (_fwd, v) = Proc::spawn(&args, "forwarding", &["listen"]).await;
    let local: SocketAddr = v[0].parse().unwrap();
    let mut s = tokio::net::TcpStream::connect(local).await.unwrap();
    s.write_all(b"through connect").await.unwrap();
    let mut b = [0u8; 15];
    s.read_exact(&mut b).await.unwrap();
    assert_eq!(&b, b"through connect");

    // A wrong gateway identity makes the forwarder drop the connection.
    let mut bad_args = args.clone();
    let i = bad_args.iter().position(|a| a == GATEWAY_ID).unwrap();
    bad_args[i] =
        "someone-else.linkerd-multicluster.serviceaccount.identity.linkerd.cluster.local".into();
    let (bad, v) = Proc::spawn(&bad_args, "forwarding", &["listen"]).await;
    let mut s = tokio::net::TcpStream::connect(v[0].parse::<SocketAddr>().unwrap())
        .await
        .unwrap();
    let _ = s.write_all(b"x").await;
    let got = read_until_closed(&mut s, Duration::from_secs(5)).await;
    assert_eq!(got.as_deref(), Some(&b""[..]));
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert!(
        bad.log().contains("server certificate rejected"),
        "{}",
        bad.log()
    );
}
