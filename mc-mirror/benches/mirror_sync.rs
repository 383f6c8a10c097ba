//! Benchmark of the `mc-mirror` binary on the testbed, against the API server's own floor.
//!
//! `scripts/in-netns cargo bench -p mc-mirror --bench mirror_sync -- 100 1000`
//!
//! For each N: N exported Services (+ labelled Endpoints) in east; the floor is a client that
//! creates N Services + N Endpoints in west as fast as the API server accepts them (16 in
//! flight); then the release `mc-mirror` binary is started for a Link to east and timed until all
//! N mirrors (Service + Endpoints with the gateway address) exist. Then single-export latency
//! (one new exported Service at a time, until its mirror Endpoints exist), writes per mirrored
//! service and steady-state writes per minute (from the binary's /metrics), and the binary's
//! peak RSS (VmHWM). Results are printed as Markdown rows for docs/benchmarks.md.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]

use std::collections::BTreeMap;
use std::io::{Read as _, Write as _};
use std::net::TcpStream;
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
use kube::api::{Api, ListParams, ObjectMeta, PostParams};
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
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

async fn count_mirrors(west: &Client, ns: &str, cluster: &str) -> usize {
    let eps: Api<Endpoints> = Api::namespaced(west.clone(), ns);
    let lp = ListParams::default().labels(&format!("mirror.linkerd.io/cluster-name={cluster}"));
    eps.list_metadata(&lp)
        .await
        .map(|l| l.items.len())
        .unwrap_or(0)
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
    let floor = create_pairs(&west, &format!("floor-{cluster}"), "svc", n, &labels).await;

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

    let admin = free_port();
    let start = Instant::now();
    let child = Command::new(env!("CARGO_BIN_EXE_mc-mirror"))
        .arg(format!("--kubeconfig={}", bed.kubeconfig().display()))
        .arg("--context=west")
        .arg(format!("--namespace={LINKS_NS}"))
        .arg(format!("--link={cluster}"))
        .arg(format!("--admin-addr=127.0.0.1:{admin}"))
        .arg("--identity=bench")
        .arg("--log-level=warn")
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let mirror = Mirror(child);
    while count_mirrors(&west, &src, &cluster).await < n {
        assert!(
            start.elapsed() < Duration::from_secs(1800),
            "initial sync did not finish"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let sync = start.elapsed();
    let writes_sync = writes(&scrape(admin), &["services", "endpoints"]);

    // Single-export latency while N are mirrored.
    let west_eps: Api<Endpoints> = Api::namespaced(west.clone(), &src);
    let mut lat = Vec::new();
    for i in 0..samples {
        let name = format!("lat{i}");
        let svcs: Api<Service> = Api::namespaced(east.clone(), &src);
        let eps: Api<Endpoints> = Api::namespaced(east.clone(), &src);
        create(&svcs, &service(&src, &name, &labels)).await;
        create(&eps, &endpoints(&src, &name, &labels, "10.9.0.2")).await;
        let t0 = Instant::now();
        let mirror_name = format!("{name}-{cluster}");
        loop {
            if let Ok(Some(e)) = west_eps.get_opt(&mirror_name).await
                && e.subsets.is_some_and(|s| !s.is_empty())
            {
                break;
            }
            assert!(
                t0.elapsed() < Duration::from_secs(60),
                "single export not mirrored"
            );
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        lat.push(t0.elapsed());
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
    tokio::time::sleep(Duration::from_secs(60)).await;
    let text = scrape(admin);
    let steady_m = writes(&text, &["services", "endpoints"]) - before_m;
    let steady_s = writes(&text, &["links/status"]) - before_s;
    let rss = vm_hwm_kib(mirror.0.id());
    drop(mirror);
    println!(
        "| {n} | {:.2} s | {:.2} s | {:.2} | {:.2} s | {} ms | {} ms | {:.2} (sync: {:.2}) | {steady_m} (+{steady_s} status) | {:.1} MiB |",
        sync.as_secs_f64(),
        floor.as_secs_f64(),
        sync.as_secs_f64() / floor.as_secs_f64(),
        t_east.as_secs_f64(),
        percentile(&lat, 0.5).as_millis(),
        percentile(&lat, 0.99).as_millis(),
        per_service,
        writes_sync as f64 / n as f64,
        rss as f64 / 1024.0,
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
    let bed = mc_tests::Testbed::start(&["east", "west"]).unwrap();
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let west = bed.client("west").await.unwrap();
        let crds: Api<CustomResourceDefinition> = Api::all(west.clone());
        let crd: CustomResourceDefinition =
            serde_json::from_value(serde_json::to_value(mc_core::link::crd()).unwrap()).unwrap();
        create(&crds, &crd).await;
        tokio::time::sleep(Duration::from_secs(2)).await;
        namespace(&west, LINKS_NS).await;
        println!("| N | initial sync | floor (create 2N) | sync / floor | create 2N in east | export p50 | export p99 | writes per service | steady writes/min | peak RSS |");
        println!("|---|---|---|---|---|---|---|---|---|---|");
        for n in sizes {
            round(&bed, n, gateway, 50).await;
        }
    });
}
