//! Benchmark of the `mc-mirror` binary on the testbed, against the API server's own floor.
//!
//! `scripts/in-netns cargo bench -p mc-mirror --bench mirror_sync -- 100 1000`
//!
//! For each N: N exported Services (+ labelled Endpoints) in east; the floor is a client that
//! creates N Services + N Endpoints in west as fast as the API server accepts them (16 in
//! flight), in a namespace of its own whose Services and Endpoints are deleted again before the
//! sync (so the mirrors meet the same number of allocated ClusterIPs); then the release `mc-mirror` binary is started for a Link to east and timed until all
//! N mirrors (Service + Endpoints with the gateway address) exist. Then single-export latency
//! (one new exported Service at a time, until its mirror Endpoints exist), writes per mirrored
//! service and steady-state writes per minute (from the binary's /metrics), and the binary's
//! peak RSS (VmHWM). Results are printed as Markdown rows for docs/benchmarks.md.
//!
//! The peer: with `PEER_BIN=<upstream Linkerd's controller binary>` each N runs twice in one
//! run, once with `mc-mirror` and once with upstream's `service-mirror` (that binary's
//! subcommand), each on its own exported Services, Link and namespace, cleaned up before the
//! other starts. What both are measured by is outside the controller: sync and export times
//! from the same watch, API writes and source requests from the kube-apiservers' own
//! `apiserver_request_total`, CPU and RSS from `/proc`. Building that binary is not part of
//! this repository (docs/benchmarks.md says how it was obtained).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]

use std::collections::BTreeMap;
use std::os::unix::process::CommandExt as _;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use futures::StreamExt as _;
use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::{
    EndpointAddress, EndpointPort, EndpointSubset, Endpoints, Namespace, Secret, Service,
    ServicePort, ServiceSpec,
};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use kube::Client;
use kube::api::{Api, ObjectMeta, PostParams};
use mc_core::link::{Link, LinkSpec, ProbeSpec};

const IN_FLIGHT: usize = 16;
const LINKS_NS: &str = "mc-bench";

fn meta(ns: Option<&str>, name: &str, labels: &BTreeMap<String, String>) -> ObjectMeta {
    ObjectMeta {
        name: Some(name.into()),
        namespace: ns.map(Into::into),
        labels: (!labels.is_empty()).then(|| labels.clone()),
        ..ObjectMeta::default()
    }
}

fn service(ns: &str, name: &str, labels: &BTreeMap<String, String>) -> Service {
    Service {
        metadata: meta(Some(ns), name, labels),
        spec: Some(ServiceSpec {
            ports: Some(vec![ServicePort {
                name: Some("http".into()),
                port: 8080,
                ..ServicePort::default()
            }]),
            ..ServiceSpec::default()
        }),
        ..Service::default()
    }
}

fn endpoints(ns: &str, name: &str, labels: &BTreeMap<String, String>, ip: &str) -> Endpoints {
    Endpoints {
        metadata: meta(Some(ns), name, labels),
        subsets: Some(vec![EndpointSubset {
            addresses: Some(vec![EndpointAddress {
                ip: ip.into(),
                ..EndpointAddress::default()
            }]),
            ports: Some(vec![EndpointPort {
                name: Some("http".into()),
                port: 8080,
                ..EndpointPort::default()
            }]),
            ..EndpointSubset::default()
        }]),
    }
}

async fn create<K>(api: &Api<K>, obj: &K)
where
    K: kube::Resource + Clone + serde::Serialize + serde::de::DeserializeOwned + std::fmt::Debug,
{
    match api.create(&PostParams::default(), obj).await {
        Ok(_) => {}
        Err(kube::Error::Api(s)) if s.code == 409 => {}
        Err(e) => panic!("create: {e}"),
    }
}

/// Creates `n` Services and Endpoints named `<prefix><i>` in `ns`, 16 in flight; returns the time.
async fn create_pairs(
    client: &Client,
    ns: &str,
    prefix: &str,
    n: usize,
    labels: &BTreeMap<String, String>,
) -> Duration {
    let svcs: Api<Service> = Api::namespaced(client.clone(), ns);
    let eps: Api<Endpoints> = Api::namespaced(client.clone(), ns);
    let start = Instant::now();
    futures::stream::iter(0..n)
        .for_each_concurrent(IN_FLIGHT, |i| {
            let (svcs, eps) = (svcs.clone(), eps.clone());
            async move {
                let name = format!("{prefix}{i}");
                create(&svcs, &service(ns, &name, labels)).await;
                create(&eps, &endpoints(ns, &name, labels, "198.18.9.1")).await;
            }
        })
        .await;
    start.elapsed()
}

/// Deletes every Service and Endpoints in `ns` and waits until they are gone.
async fn delete_all(client: &Client, ns: &str) {
    use kube::api::{DeleteParams, ListParams};
    let svcs: Api<Service> = Api::namespaced(client.clone(), ns);
    let eps: Api<Endpoints> = Api::namespaced(client.clone(), ns);
    let lp = ListParams::default();
    svcs.delete_collection(&DeleteParams::default(), &lp)
        .await
        .unwrap();
    eps.delete_collection(&DeleteParams::default(), &lp)
        .await
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(1800);
    while svcs
        .list_metadata(&lp.clone().limit(1))
        .await
        .unwrap()
        .items
        .len()
        + eps
            .list_metadata(&lp.clone().limit(1))
            .await
            .unwrap()
            .items
            .len()
        > 0
    {
        assert!(
            Instant::now() < deadline,
            "the floor's objects were not deleted"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

async fn namespace(client: &Client, ns: &str) {
    let api: Api<Namespace> = Api::all(client.clone());
    create(
        &api,
        &Namespace {
            metadata: meta(None, ns, &BTreeMap::new()),
            ..Namespace::default()
        },
    )
    .await;
}

fn vm_hwm_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find(|l| l.starts_with("VmHWM:"))
        .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
        .unwrap_or(0)
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// The controller a round runs.
#[derive(Clone, Debug)]
enum Controller {
    /// This repository's release `mc-mirror`.
    Mc,
    /// Upstream Linkerd's `controller` binary, run as `controller service-mirror`.
    Upstream(std::path::PathBuf),
}

impl Controller {
    fn name(&self) -> &'static str {
        match self {
            Controller::Mc => "mc-mirror",
            Controller::Upstream(_) => "upstream",
        }
    }

    /// The process name `pkill -x` matches.
    fn process(&self) -> String {
        match self {
            Controller::Mc => "mc-mirror".into(),
            Controller::Upstream(p) => p
                .file_name()
                .map(|f| f.to_string_lossy().chars().take(15).collect())
                .unwrap_or_default(),
        }
    }
}

/// The write verbs of `apiserver_request_total`.
const WRITE_VERBS: [&str; 6] = [
    "POST",
    "PUT",
    "PATCH",
    "APPLY",
    "DELETE",
    "DELETECOLLECTION",
];

/// Value of label `name` in a Prometheus sample line.
fn label<'a>(line: &'a str, name: &str) -> &'a str {
    let key = format!("{name}=\"");
    line.split_once(&key)
        .and_then(|(_, rest)| rest.split_once('"'))
        .map_or("", |(v, _)| v)
}

/// `apiserver_request_total` of the API server behind `client`, as (write requests to
/// `resources` without a subresource, write requests to Link status, every request to any
/// resource but leases, which the API server renews for itself).
async fn apiserver_counts(client: &Client, resources: &[&str]) -> (u64, u64, u64) {
    let req = http::Request::get("/metrics").body(Vec::new()).unwrap();
    let text = client.request_text(req).await.unwrap();
    let (mut writes, mut status, mut all) = (0, 0, 0);
    for line in text
        .lines()
        .filter(|l| l.starts_with("apiserver_request_total{"))
    {
        let Some(v) = line.rsplit(' ').next().and_then(|v| v.parse::<f64>().ok()) else {
            continue;
        };
        let v = v as u64;
        let (resource, sub, verb) = (
            label(line, "resource"),
            label(line, "subresource"),
            label(line, "verb"),
        );
        if resource != "leases" {
            all += v;
        }
        if !WRITE_VERBS.contains(&verb) {
            continue;
        }
        if resources.contains(&resource) && sub.is_empty() {
            writes += v;
        }
        if resource == "links" && sub == "status" {
            status += v;
        }
    }
    (writes, status, all)
}

struct Mirror(Child, String);

impl Drop for Mirror {
    fn drop(&mut self) {
        // The child leads its own process group: a wrapper (MIRROR_WRAPPER) and the binary it
        // started are stopped together. The binary gets SIGTERM first (only it: a wrapper such
        // as heaptrack then finishes writing its profile), the wrapper up to 60 s to exit, and
        // SIGKILL goes to whatever is left in the group.
        let group = self.0.id().to_string();
        let _ = Command::new("pkill")
            .args(["-TERM", "-g", &group, "-x", &self.1])
            .status();
        let deadline = Instant::now() + Duration::from_secs(60);
        while Instant::now() < deadline && matches!(self.0.try_wait(), Ok(None)) {
            std::thread::sleep(Duration::from_millis(100));
        }
        let _ = Command::new("kill")
            .args(["-KILL", "--", &format!("-{group}")])
            .stderr(Stdio::null())
            .status();
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// When each mirror Endpoints (with addresses) was first seen in `ns`, from a watch: no polling
/// load on the API server that is being measured.
#[derive(Default)]
struct Seen {
    at: std::collections::HashMap<String, Instant>,
}

fn watch_mirrors(
    west: &Client,
    ns: &str,
    cluster: &str,
) -> (
    std::sync::Arc<std::sync::Mutex<Seen>>,
    tokio::sync::watch::Receiver<usize>,
    tokio::task::JoinHandle<()>,
) {
    use kube::runtime::watcher;
    let eps: Api<Endpoints> = Api::namespaced(west.clone(), ns);
    let cfg =
        watcher::Config::default().labels(&format!("mirror.linkerd.io/cluster-name={cluster}"));
    let seen = std::sync::Arc::new(std::sync::Mutex::new(Seen::default()));
    let (tx, rx) = tokio::sync::watch::channel(0usize);
    let s2 = seen.clone();
    let task = tokio::spawn(async move {
        let mut stream = std::pin::pin!(watcher::watcher(eps, cfg));
        while let Some(ev) = stream.next().await {
            let objs = match ev {
                Ok(watcher::Event::Apply(e) | watcher::Event::InitApply(e)) => vec![e],
                _ => continue,
            };
            for e in objs {
                if e.subsets.as_ref().is_some_and(|s| !s.is_empty()) {
                    let mut g = s2.lock().unwrap();
                    let name = e.metadata.name.clone().unwrap_or_default();
                    g.at.entry(name).or_insert_with(Instant::now);
                    let _ = tx.send(g.at.len());
                }
            }
        }
    });
    (seen, rx, task)
}

/// Seconds of CPU (user + system) used by process `pid` so far.
fn cpu_seconds(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // Fields after the command name (which ends with ')'): utime and stime are 14 and 15.
    let rest = stat.rsplit_once(')').map_or("", |(_, r)| r);
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| f.get(i).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
    (ticks(11) + ticks(12)) / 100.0
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

/// A gateway stand-in that answers every probe with 200.
async fn probe_responder() -> u16 {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    // Every address of the sealed network: mc's controller probes the gateway's address,
    // upstream's the name of its probe Service, which the bench points at localhost.
    let l = tokio::net::TcpListener::bind((std::net::Ipv4Addr::UNSPECIFIED, 0))
        .await
        .unwrap();
    let port = l.local_addr().unwrap().port();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = l.accept().await {
            tokio::spawn(async move {
                let mut buf = [0u8; 512];
                let _ = s.read(&mut buf).await;
                let _ = s
                    .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n")
                    .await;
            });
        }
    });
    port
}

/// What one round measured, for the table and the ratios.
struct Figures {
    sync: Duration,
    cpu_sync: f64,
    p50: Duration,
    p99: Duration,
    writes_per_service: f64,
    writes_sync_per_service: f64,
    source_requests_per_service: f64,
    steady_writes: u64,
    steady_status: u64,
    rss_kib: u64,
}

/// Starts the controller of a round for Link `cluster` in `LINKS_NS`.
fn start(bed: &mc_tests::Testbed, ctrl: &Controller, cluster: &str, admin: u16) -> Mirror {
    // MIRROR_WRAPPER runs the binary under a tool, e.g. "heaptrack -o /tmp/mirror.heap".
    let wrapper: Vec<String> = std::env::var("MIRROR_WRAPPER")
        .unwrap_or_default()
        .split_whitespace()
        .map(String::from)
        .collect();
    let bin = match ctrl {
        Controller::Mc => std::path::PathBuf::from(env!("CARGO_BIN_EXE_mc-mirror")),
        Controller::Upstream(p) => p.clone(),
    };
    let mut command = match wrapper.split_first() {
        Some((tool, args)) => {
            let mut c = Command::new(tool);
            c.args(args).arg(&bin);
            c
        }
        None => Command::new(&bin),
    };
    command.process_group(0);
    match ctrl {
        Controller::Mc => {
            command
                .arg(format!("--kubeconfig={}", bed.kubeconfig().display()))
                .arg("--context=west")
                .arg(format!("--namespace={LINKS_NS}"))
                .arg(format!("--link={cluster}"))
                .arg(format!("--admin-addr=127.0.0.1:{admin}"))
                .arg("--identity=bench")
                .arg(format!(
                    "--log-level={}",
                    std::env::var("MIRROR_LOG").unwrap_or_else(|_| "warn".into())
                ))
                // Extra flags for experiments, e.g. MIRROR_ARGS="--concurrency=32".
                .args(
                    std::env::var("MIRROR_ARGS")
                        .unwrap_or_default()
                        .split_whitespace(),
                );
        }
        Controller::Upstream(_) => {
            // As upstream's chart runs it (its defaults: requeue limit 3, endpoint refresh
            // period 1 minute), with a west-only admin kubeconfig and the probe Service
            // named `localhost`, so that its probe (by Service name) reaches the responder.
            let kubeconfig = bed
                .user_kubeconfig("west", "upstream-service-mirror", &["system:masters"])
                .unwrap();
            command
                .env("HOSTNAME", "bench-upstream")
                .arg("service-mirror")
                .arg(format!("-kubeconfig={}", kubeconfig.display()))
                .arg(format!("-namespace={LINKS_NS}"))
                .arg(format!("-metrics-addr=127.0.0.1:{admin}"))
                .arg("-probe-service=localhost")
                .arg(format!(
                    "-log-level={}",
                    std::env::var("PEER_LOG").unwrap_or_else(|_| "warn".into())
                ))
                .arg(cluster);
        }
    }
    let child = command
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    Mirror(child, ctrl.process())
}

/// The Link of a round and its credentials Secret (the testbed's admin kubeconfig: its
/// current context is east).
async fn link(
    bed: &mc_tests::Testbed,
    west: &Client,
    cluster: &str,
    gateway: std::net::IpAddr,
    probe_port: u16,
    labels: &BTreeMap<String, String>,
) {
    let secret = Secret {
        metadata: meta(
            Some(LINKS_NS),
            &format!("cluster-credentials-{cluster}"),
            &BTreeMap::new(),
        ),
        data: Some(BTreeMap::from([(
            "kubeconfig".to_string(),
            ByteString(std::fs::read(bed.kubeconfig()).unwrap()),
        )])),
        ..Secret::default()
    };
    create(&Api::namespaced(west.clone(), LINKS_NS), &secret).await;
    let spec = LinkSpec {
        target_cluster_name: Some(cluster.to_string()),
        cluster_credentials_secret: Some(format!("cluster-credentials-{cluster}")),
        gateway_address: Some(gateway.to_string()),
        gateway_port: Some("4143".into()),
        gateway_identity: Some(
            "linkerd-gateway.linkerd-multicluster.serviceaccount.identity.linkerd.cluster.local"
                .into(),
        ),
        probe_spec: Some(ProbeSpec {
            path: Some("/ready".into()),
            port: Some(probe_port.to_string()),
            period: Some("3s".into()),
            timeout: Some("30s".into()),
            failure_threshold: Some("3".into()),
        }),
        selector: Some(LabelSelector {
            match_labels: Some(labels.clone()),
            ..LabelSelector::default()
        }),
        ..LinkSpec::default()
    };
    create(
        &Api::namespaced(west.clone(), LINKS_NS),
        &Link::new(cluster, LINKS_NS, spec),
    )
    .await;
}

/// Writes to Services and Endpoints that west's API server counts per `MIRROR_STEADY_SECS`
/// with no controller running (its own reconcilers'), subtracted from the steady-state figures.
async fn background_writes(west: &Client) -> u64 {
    let (before, _, _) = apiserver_counts(west, &["services", "endpoints"]).await;
    tokio::time::sleep(Duration::from_secs(steady_secs())).await;
    let (after, _, _) = apiserver_counts(west, &["services", "endpoints"]).await;
    after - before
}

/// The steady-state window: one minute unless `MIRROR_STEADY_SECS` says otherwise (upstream's
/// endpoint refresh period is one minute, so each of its refreshes falls in such a window).
fn steady_secs() -> u64 {
    env_secs("MIRROR_STEADY_SECS", 60)
}

/// Seconds from environment variable `name`, else `default`.
fn env_secs(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(default)
}

async fn round(
    bed: &mc_tests::Testbed,
    n: usize,
    gateway: std::net::IpAddr,
    samples: usize,
    ctrl: &Controller,
    background: u64,
) -> Option<Figures> {
    let probe_port = probe_responder().await;
    let east = bed.client("east").await.unwrap();
    let west = bed.client("west").await.unwrap();
    let cluster = match ctrl {
        Controller::Mc => format!("b{n}"),
        Controller::Upstream(_) => format!("u{n}"),
    };
    let src = format!("src-{cluster}");
    let mut labels = BTreeMap::new();
    labels.insert("mirror.linkerd.io/exported".to_string(), "true".to_string());
    labels.insert("bench".to_string(), cluster.clone());
    namespace(&east, &src).await;
    namespace(&west, &src).await;
    namespace(&west, &format!("floor-{cluster}")).await;

    let t_east = create_pairs(&east, &src, "svc", n, &labels).await;
    let floor_ns = format!("floor-{cluster}");
    let floor = create_pairs(&west, &floor_ns, "svc", n, &labels).await;
    // The API server's ClusterIP allocation slows down as allocated addresses accumulate: the
    // floor's objects are deleted again, so the mirrors are created against the same number of
    // existing Services as the floor was.
    delete_all(&west, &floor_ns).await;
    link(bed, &west, &cluster, gateway, probe_port, &labels).await;

    let (seen, count, watch_task) = watch_mirrors(&west, &src, &cluster);
    // The watch has listed (nothing yet) before the controller starts.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let admin = free_port();
    let (w0, _, _) = apiserver_counts(&west, &["services", "endpoints"]).await;
    let (_, _, e0) = apiserver_counts(&east, &[]).await;
    let start_at = Instant::now();
    let mirror = start(bed, ctrl, &cluster, admin);
    let mut synced = count.clone();
    let limit = env_secs("SYNC_LIMIT_SECS", 1800);
    if tokio::time::timeout(Duration::from_secs(limit), synced.wait_for(|c| *c >= n))
        .await
        .is_err()
    {
        // Not synced within the limit: the row says how far it got, and the round ends.
        let done = *count.borrow();
        let rss = vm_hwm_kib(mirror.0.id());
        println!(
            "| {} | {n} | > {limit} s ({done} of {n} mirrors) | {:.2} s | > {:.2} | {:.2} s | {:.1} s | | | | | | {:.1} MiB |",
            ctrl.name(),
            floor.as_secs_f64(),
            limit as f64 / floor.as_secs_f64(),
            t_east.as_secs_f64(),
            cpu_seconds(mirror.0.id()),
            rss as f64 / 1024.0,
        );
        drop(mirror);
        watch_task.abort();
        delete_all(&west, &src).await;
        delete_all(&east, &src).await;
        return None;
    }
    let sync = start_at.elapsed();
    let cpu_sync = cpu_seconds(mirror.0.id());
    let (w_sync, _, _) = apiserver_counts(&west, &["services", "endpoints"]).await;
    let (_, _, e_sync) = apiserver_counts(&east, &[]).await;
    let rss_sync = vm_hwm_kib(mirror.0.id());

    // Single-export latency while N are mirrored.
    let mut lat = Vec::new();
    let mut missed = 0;
    let svcs: Api<Service> = Api::namespaced(east.clone(), &src);
    let eps: Api<Endpoints> = Api::namespaced(east.clone(), &src);
    for i in 0..samples {
        let name = format!("lat{i}");
        create(&svcs, &service(&src, &name, &labels)).await;
        create(&eps, &endpoints(&src, &name, &labels, "198.18.9.2")).await;
        let t0 = Instant::now();
        let mirror_name = format!("{name}-{cluster}");
        let mut c = count.clone();
        let mirrored = |_: &usize| seen.lock().unwrap().at.contains_key(&mirror_name);
        let limit = Duration::from_secs(env_secs("EXPORT_LIMIT_SECS", 60));
        if tokio::time::timeout(limit, c.wait_for(mirrored))
            .await
            .is_err()
        {
            // Counted at the limit: the percentiles are then lower bounds.
            missed += 1;
            lat.push(limit);
            continue;
        }
        let at = seen.lock().unwrap().at[&mirror_name];
        lat.push(at.saturating_duration_since(t0));
    }
    lat.sort();
    let (w_total, _, _) = apiserver_counts(&west, &["services", "endpoints"]).await;

    // Steady state: a window with nothing changing.
    tokio::time::sleep(Duration::from_secs(5)).await;
    let (before_m, before_s, _) = apiserver_counts(&west, &["services", "endpoints"]).await;
    tokio::time::sleep(Duration::from_secs(steady_secs())).await;
    let (after_m, after_s, _) = apiserver_counts(&west, &["services", "endpoints"]).await;
    let rss = vm_hwm_kib(mirror.0.id());
    drop(mirror);
    watch_task.abort();
    let figures = Figures {
        sync,
        cpu_sync,
        p50: percentile(&lat, 0.5),
        p99: percentile(&lat, 0.99),
        writes_per_service: (w_total - w0) as f64 / (n + samples) as f64,
        writes_sync_per_service: (w_sync - w0) as f64 / n as f64,
        source_requests_per_service: (e_sync - e0) as f64 / n as f64,
        steady_writes: (after_m - before_m).saturating_sub(background),
        steady_status: after_s - before_s,
        rss_kib: rss,
    };
    println!(
        "| {} | {n} | {:.2} s | {:.2} s | {:.2} | {:.2} s | {:.1} s | {} ms | {} ms{} | {:.2} (sync: {:.2}) | {:.2} | {} (+{} status) | {:.1} MiB ({:.1} after sync) |",
        ctrl.name(),
        sync.as_secs_f64(),
        floor.as_secs_f64(),
        sync.as_secs_f64() / floor.as_secs_f64(),
        t_east.as_secs_f64(),
        figures.cpu_sync,
        figures.p50.as_millis(),
        figures.p99.as_millis(),
        if missed > 0 {
            format!(
                " ({missed} of {samples} not mirrored within {} s)",
                env_secs("EXPORT_LIMIT_SECS", 60)
            )
        } else {
            String::new()
        },
        figures.writes_per_service,
        figures.writes_sync_per_service,
        figures.source_requests_per_service,
        figures.steady_writes,
        figures.steady_status,
        rss as f64 / 1024.0,
        rss_sync as f64 / 1024.0,
    );
    // The next round (the peer, or the next N) starts from an empty cluster.
    delete_all(&west, &src).await;
    delete_all(&east, &src).await;
    Some(figures)
}

/// Prints mc's figures over the peer's, metric by metric.
fn ratios(n: usize, mc: &Figures, peer: &Figures) {
    let r = |a: f64, b: f64| {
        if b > 0.0 {
            format!("{:.2}", a / b)
        } else {
            "n/a".into()
        }
    };
    println!(
        "| mc / upstream | {n} | {} | | | | {} | {} | {} | {} | {} | {} vs {} | {} |",
        r(mc.sync.as_secs_f64(), peer.sync.as_secs_f64()),
        r(mc.cpu_sync, peer.cpu_sync),
        r(mc.p50.as_secs_f64(), peer.p50.as_secs_f64()),
        r(mc.p99.as_secs_f64(), peer.p99.as_secs_f64()),
        r(mc.writes_per_service, peer.writes_per_service),
        r(
            mc.source_requests_per_service,
            peer.source_requests_per_service
        ),
        mc.steady_writes,
        peer.steady_writes,
        r(mc.rss_kib as f64, peer.rss_kib as f64),
    );
}

fn main() {
    let sizes: Vec<usize> = std::env::args()
        .skip(1)
        .filter_map(|a| a.parse().ok())
        .collect();
    let sizes = if sizes.is_empty() {
        vec![100, 1000]
    } else {
        sizes
    };
    let peer = std::env::var_os("PEER_BIN").map(|p| Controller::Upstream(p.into()));
    let gateway = mc_tests::test_host(2).expect("run under scripts/in-netns");
    let bed = mc_tests::Testbed::start_api_only(&["east", "west"]).unwrap();
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let west = bed.client("west").await.unwrap();
        let crds: Api<CustomResourceDefinition> = Api::all(west.clone());
        let crd: CustomResourceDefinition =
            serde_json::from_value(serde_json::to_value(mc_core::link::crd()).unwrap()).unwrap();
        create(&crds, &crd).await;
        tokio::time::sleep(Duration::from_secs(2)).await;
        namespace(&west, LINKS_NS).await;
        let background = background_writes(&west).await;
        println!("West's API server's own writes to Services and Endpoints per window, subtracted from the steady-state figures: {background}");
        println!("| controller | N | initial sync | floor (create 2N) | sync / floor | create 2N in east | controller CPU in sync | export p50 | export p99 | API writes per service | source requests per service in sync | steady writes/min | peak RSS |");
        println!("|---|---|---|---|---|---|---|---|---|---|---|---|---|");
        for n in sizes {
            let samples = env_secs("EXPORT_SAMPLES", 50) as usize;
            let mc = round(&bed, n, gateway, samples, &Controller::Mc, background).await;
            if let Some(peer) = &peer {
                let up = round(&bed, n, gateway, samples, peer, background).await;
                if let (Some(mc), Some(up)) = (mc, up) {
                    ratios(n, &mc, &up);
                }
            }
        }
    });
}
