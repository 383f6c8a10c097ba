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
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]

use std::collections::BTreeMap;
use std::io::{Read as _, Write as _};
use std::net::TcpStream;
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
                create(&eps, &endpoints(ns, &name, labels, "10.9.0.1")).await;
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

fn scrape(port: u16) -> String {
    let Ok(mut s) = TcpStream::connect(("127.0.0.1", port)) else {
        return String::new();
    };
    let _ = s.write_all(b"GET /metrics HTTP/1.1\r\nhost: x\r\n\r\n");
    let mut out = String::new();
    let _ = s.read_to_string(&mut out);
    out
}

/// Sum of `mirror_api_writes_total` samples whose resource is in `resources`.
fn writes(text: &str, resources: &[&str]) -> u64 {
    text.lines()
        .filter(|l| l.starts_with("mirror_api_writes_total{"))
        .filter(|l| {
            resources
                .iter()
                .any(|r| l.contains(&format!("resource=\"{r}\"")))
        })
        .filter_map(|l| l.rsplit(' ').next()?.parse::<u64>().ok())
        .sum()
}

/// Sum of `mirror_api_requests_total` samples of `api` (`source` or `target`).
fn requests(text: &str, api: &str) -> u64 {
    text.lines()
        .filter(|l| l.starts_with("mirror_api_requests_total{"))
        .filter(|l| l.contains(&format!("api=\"{api}\"")))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<u64>().ok())
        .sum()
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

struct Mirror(Child);

impl Drop for Mirror {
    fn drop(&mut self) {
        // The child leads its own process group: a wrapper (MIRROR_WRAPPER) and the binary it
        // started are stopped together. The binary gets SIGTERM first (only it: a wrapper such
        // as heaptrack then finishes writing its profile), the wrapper up to 60 s to exit, and
        // SIGKILL goes to whatever is left in the group.
        let group = self.0.id().to_string();
        let _ = Command::new("pkill")
            .args(["-TERM", "-g", &group, "-x", "mc-mirror"])
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
async fn probe_responder(ip: std::net::IpAddr) -> u16 {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    let l = tokio::net::TcpListener::bind((ip, 0)).await.unwrap();
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

async fn round(bed: &mc_tests::Testbed, n: usize, gateway: std::net::IpAddr, samples: usize) {
    let probe_port = probe_responder(gateway).await;
    let east = bed.client("east").await.unwrap();
    let west = bed.client("west").await.unwrap();
    let cluster = format!("b{n}");
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

    // Link + Secret (the testbed's admin kubeconfig: its current context is east).
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
        target_cluster_name: Some(cluster.clone()),
        cluster_credentials_secret: Some(format!("cluster-credentials-{cluster}")),
        gateway_address: Some(gateway.to_string()),
        gateway_port: Some("4143".into()),
        probe_spec: Some(ProbeSpec {
            path: Some("/ready".into()),
            port: Some(probe_port.to_string()),
            period: Some("3s".into()),
            ..ProbeSpec::default()
        }),
        selector: Some(LabelSelector {
            match_labels: Some(labels.clone()),
            ..LabelSelector::default()
        }),
        ..LinkSpec::default()
    };
    create(
        &Api::namespaced(west.clone(), LINKS_NS),
        &Link::new(&cluster, LINKS_NS, spec),
    )
    .await;

    let (seen, count, watch_task) = watch_mirrors(&west, &src, &cluster);
    // The watch has listed (nothing yet) before the controller starts.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let admin = free_port();
    let start = Instant::now();
    // MIRROR_WRAPPER runs the binary under a tool, e.g. "heaptrack -o /tmp/mirror.heap".
    let wrapper: Vec<String> = std::env::var("MIRROR_WRAPPER")
        .unwrap_or_default()
        .split_whitespace()
        .map(String::from)
        .collect();
    let mut command = match wrapper.split_first() {
        Some((tool, args)) => {
            let mut c = Command::new(tool);
            c.args(args).arg(env!("CARGO_BIN_EXE_mc-mirror"));
            c
        }
        None => Command::new(env!("CARGO_BIN_EXE_mc-mirror")),
    };
    let child = command
        .process_group(0)
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
        )
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let mirror = Mirror(child);
    let mut synced = count.clone();
    tokio::time::timeout(Duration::from_secs(1800), synced.wait_for(|c| *c >= n))
        .await
        .expect("initial sync did not finish")
        .unwrap();
    let sync = start.elapsed();
    let cpu_sync = cpu_seconds(mirror.0.id());
    let text = scrape(admin);
    let writes_sync = writes(&text, &["services", "endpoints"]);
    let requests_sync = requests(&text, "source");
    let rss_sync = vm_hwm_kib(mirror.0.id());

    // Single-export latency while N are mirrored.
    let mut lat = Vec::new();
    let svcs: Api<Service> = Api::namespaced(east.clone(), &src);
    let eps: Api<Endpoints> = Api::namespaced(east.clone(), &src);
    for i in 0..samples {
        let name = format!("lat{i}");
        create(&svcs, &service(&src, &name, &labels)).await;
        create(&eps, &endpoints(&src, &name, &labels, "10.9.0.2")).await;
        let t0 = Instant::now();
        let mirror_name = format!("{name}-{cluster}");
        let mut c = count.clone();
        let want = n + i + 1;
        tokio::time::timeout(Duration::from_secs(60), c.wait_for(|c| *c >= want))
            .await
            .expect("single export not mirrored")
            .unwrap();
        let at = seen.lock().unwrap().at[&mirror_name];
        lat.push(at.saturating_duration_since(t0));
    }
    lat.sort();
    let total = writes(
        &scrape(admin),
        &["services", "endpoints", "links/status", "namespaces"],
    );
    let per_service = total as f64 / (n + samples) as f64;

    // Steady state: one minute with nothing changing.
    tokio::time::sleep(Duration::from_secs(5)).await;
    let before_m = writes(&scrape(admin), &["services", "endpoints"]);
    let before_s = writes(&scrape(admin), &["links/status"]);
    let steady_secs = std::env::var("MIRROR_STEADY_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(60);
    tokio::time::sleep(Duration::from_secs(steady_secs)).await;
    let text = scrape(admin);
    let steady_m = writes(&text, &["services", "endpoints"]) - before_m;
    let steady_s = writes(&text, &["links/status"]) - before_s;
    let rss = vm_hwm_kib(mirror.0.id());
    drop(mirror);
    watch_task.abort();
    println!(
        "| {n} | {:.2} s | {:.2} s | {:.2} | {:.2} s | {:.1} s | {} ms | {} ms | {:.2} (sync: {:.2}) | {:.2} | {steady_m} (+{steady_s} status) | {:.1} MiB ({:.1} after sync) |",
        sync.as_secs_f64(),
        floor.as_secs_f64(),
        sync.as_secs_f64() / floor.as_secs_f64(),
        t_east.as_secs_f64(),
        cpu_sync,
        percentile(&lat, 0.5).as_millis(),
        percentile(&lat, 0.99).as_millis(),
        per_service,
        writes_sync as f64 / n as f64,
        requests_sync as f64 / n as f64,
        rss as f64 / 1024.0,
        rss_sync as f64 / 1024.0,
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
        println!("| N | initial sync | floor (create 2N) | sync / floor | create 2N in east | controller CPU in sync | export p50 | export p99 | writes per service | source requests per service in sync | steady writes/min | peak RSS |");
        println!("|---|---|---|---|---|---|---|---|---|---|---|---|");
        for n in sizes {
            round(&bed, n, gateway, 50).await;
        }
    });
}
