//! `mc-bench-paths`: the latency and CPU that mc's egress and gateway add to a request from a
//! plain Pod, against a peer built by hand from HAProxy, on the testbed's real clusters (issue
//! #18, "Performance").
//!
//! Set-up, all on real Pods: a private testbed with nodes (`east`, `west`); mc installed from its
//! own rendered manifests as `tests/tests/pod_faults.rs` installs it (east with the gateway, west
//! with the egress, west's egress minting its leaf from west's issuer), the Link in `egress`
//! mode; podinfo in namespace `bench` of both clusters, east's exported; a client Pod (curl, no
//! sidecar, no certificate) in west. The peer is HAProxy (the machine's, `apt-get install
//! haproxy`, as the image `scripts/build-images haproxy` writes): a Deployment in west as the
//! egress (TCP listener, originates TLS 1.3 with a client certificate, verifies the gateway's
//! name and chain) and one in east as the gateway (terminates TLS 1.3, requires a client
//! certificate chained to the same trust anchor, forwards to podinfo's Service), reached through
//! a LoadBalancer Service as east's mc gateway is. Both sides of the peer do a full handshake per
//! connection, as mc does (mc's gateway sends no session tickets): `no-tls-tickets` on the
//! gateway, `no-ssl-reuse` on the egress.
//!
//! Measured, from the client Pod, with one `curl` process per block (`-K -`, `Connection:
//! close`, every request on a new connection, checked with `%{num_connects}`), sequentially:
//! 1. `mc`: west Pod → podinfo-east (mirror, egress mode) → egress → east gateway → podinfo;
//! 2. `direct`: west Pod → west podinfo;
//! 3. `peer`: west Pod → HAProxy egress → HAProxy gateway (mTLS) → east podinfo.
//!
//! The paths are measured in blocks of `--block` requests, the order rotating every round, so
//! that a burst of load on the shared machine meets all three alike. Latency is curl's
//! `time_total` per request (connect included); CPU is the CPU time of the Pods' control groups
//! (cgroup v1 `cpuacct.usage`: the egress Pods and the gateway Pod for mc, the two HAProxy Pods
//! for the peer) over that path's blocks, divided by its requests. The report gives p50/p99 per
//! path, the latency each two-hop path adds over `direct`, and mc's figures as ratios to the
//! peer's. Any failed request or a reused connection ends the run with a non-zero status. Run
//! it with `make bench-paths` (release build, inside `scripts/in-netns`, root needed for nodes).

use std::collections::BTreeMap;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode, Output, Stdio};
use std::time::{Duration, Instant, SystemTime};

use clap::Parser;
use mc_core::pki::{
    AnchorOptions, CertifiedKey, IssuerOptions, LeafOptions, create_issuer, create_trust_anchor,
    issue_leaf,
};
use mc_tests::Testbed;
use serde_json::{Value, json};

/// Compares mc's egress + gateway with an HAProxy peer on real Pods (see the crate docs).
#[derive(Debug, Parser)]
struct Args {
    /// Requests per path.
    #[arg(long, default_value_t = 10_000)]
    requests: usize,
    /// Requests per block: each round measures one block of every path.
    #[arg(long, default_value_t = 1_000)]
    block: usize,
    /// Untimed requests per path before the first round.
    #[arg(long, default_value_t = 200)]
    warm: usize,
    /// The `mc` binary (default: the one next to this executable).
    #[arg(long)]
    mc_bin: Option<PathBuf>,
    /// The HAProxy image archive (default: `$MC_CACHE/images/haproxy.tar`).
    #[arg(long)]
    haproxy_image: Option<PathBuf>,
    /// Where certificates and manifests go (default: a new directory under the temp dir).
    #[arg(long)]
    dir: Option<PathBuf>,
}

type Fallible<T> = Result<T, String>;

const NS: &str = "bench";
const MC_NS: &str = "linkerd-multicluster";
const PODINFO_PORT: u16 = 9898;
const PEER_EGRESS_PORT: u16 = 8080;
const PEER_GATEWAY_PORT: u16 = 4143;
const PEER_GATEWAY_ID: &str = "haproxy-gateway.bench.peer.test";
const PEER_EGRESS_ID: &str = "haproxy-egress.bench.peer.test";

fn main() -> ExitCode {
    let args = Args::parse();
    let dir = args.dir.clone().unwrap_or_else(|| {
        std::env::temp_dir().join(format!("mc-bench-paths-{}", std::process::id()))
    });
    match run(&args, &dir) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!(
                "bench-paths: FAILED: {e}\n(work files in {})",
                dir.display()
            );
            ExitCode::FAILURE
        }
    }
}

/// The testbed and what the bench runs against it.
struct Bench<'a> {
    bed: &'a Testbed,
    work: &'a Path,
    path_env: std::ffi::OsString,
}

impl Bench<'_> {
    /// Runs `script` in bash (pipefail) in the work directory with `mc` and kubectl on PATH and
    /// the testbed's kubeconfig; its stdout, or an error with both streams.
    fn sh(&self, script: &str) -> Fallible<String> {
        let out = Command::new("bash")
            .args(["-o", "pipefail", "-c", script])
            .env("PATH", &self.path_env)
            .env("KUBECONFIG", self.bed.kubeconfig())
            .current_dir(self.work)
            .output()
            .map_err(|e| format!("run bash for `{script}`: {e}"))?;
        ok_stdout(out, script)
    }

    fn kubectl(&self, ctx: &str, args: &[&str]) -> Fallible<String> {
        let out = self
            .bed
            .kubectl(ctx)
            .args(args)
            .output()
            .map_err(|e| format!("run kubectl {}: {e}", args.join(" ")))?;
        ok_stdout(out, &format!("kubectl --context {ctx} {}", args.join(" ")))
    }

    fn json(&self, ctx: &str, args: &[&str]) -> Fallible<Value> {
        let mut all = args.to_vec();
        all.extend(["-o", "json"]);
        let text = self.kubectl(ctx, &all)?;
        serde_json::from_str(&text).map_err(|e| format!("kubectl {}: {e}", args.join(" ")))
    }

    fn apply(&self, ctx: &str, what: &str, objects: &Value) -> Fallible<()> {
        let out = self
            .bed
            .apply(ctx, &objects.to_string())
            .map_err(|e| format!("apply {what} to {ctx}: {e}"))?;
        ok_stdout(out, &format!("apply {what} to {ctx}")).map(|_| ())
    }

    fn rollout(&self, ctx: &str, ns: &str, what: &str) -> Fallible<()> {
        self.bed
            .wait_rollout(ctx, ns, what)
            .map_err(|e| format!("{what} in {ctx}/{ns}: {e}"))
    }

    /// The field at `jsonpath` of Service `name` in `ns` of `ctx`; an error if it is empty.
    fn svc_field(&self, ctx: &str, ns: &str, name: &str, jsonpath: &str) -> Fallible<String> {
        let query = format!("jsonpath={jsonpath}");
        let value = self.kubectl(ctx, &["get", "svc", "-n", ns, name, "-o", &query])?;
        let value = value.trim().to_owned();
        if value.is_empty() {
            Err(format!("Service {ctx}/{ns}/{name} has no {jsonpath}"))
        } else {
            Ok(value)
        }
    }

    /// The ClusterIP of Service `name` in `ns` of `ctx`.
    fn cluster_ip(&self, ctx: &str, ns: &str, name: &str) -> Fallible<String> {
        self.svc_field(ctx, ns, name, "{.spec.clusterIP}")
    }

    /// The LoadBalancer address of Service `name` in `ns` of `ctx`, once it has one.
    fn lb_ip(&self, ctx: &str, ns: &str, name: &str) -> Fallible<String> {
        poll(
            &format!("a LoadBalancer address for {ctx}/{ns}/{name}"),
            Duration::from_secs(60),
            || self.svc_field(ctx, ns, name, "{.status.loadBalancer.ingress[0].ip}"),
        )
    }

    /// The UIDs of the Pods matching `selector` in `ns` of `ctx`.
    fn pod_uids(&self, ctx: &str, ns: &str, selector: &str) -> Fallible<Vec<String>> {
        let pods = self.json(ctx, &["get", "pods", "-n", ns, "-l", selector])?;
        let uids: Vec<String> = pods["items"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|p| p["metadata"]["uid"].as_str().map(str::to_owned))
            .collect();
        if uids.is_empty() {
            Err(format!("no Pod matches {selector} in {ctx}/{ns}"))
        } else {
            Ok(uids)
        }
    }

    /// `curl` from the client Pod: `n` sequential GETs of `url`, each on a new connection;
    /// per request (connections opened, HTTP status, seconds).
    fn requests(&self, url: &str, n: usize) -> Fallible<Vec<(u32, u32, f64)>> {
        let config: String = (0..n)
            .map(|_| format!("url = \"{url}\"\noutput = \"/dev/null\"\n"))
            .collect();
        let mut child = self
            .bed
            .kubectl("west")
            .args(["exec", "-i", "-n", NS, "deploy/client", "--"])
            .args(["curl", "-sS", "-m", "10", "-K", "-"])
            .args(["-H", "Connection: close"])
            .args(["-w", "%{num_connects} %{http_code} %{time_total}\\n"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| format!("run kubectl exec curl: {e}"))?;
        let mut stdin = child.stdin.take().ok_or("kubectl exec: no stdin")?;
        let writer = std::thread::spawn(move || stdin.write_all(config.as_bytes()));
        let out = child
            .wait_with_output()
            .map_err(|e| format!("kubectl exec curl: {e}"))?;
        writer
            .join()
            .map_err(|_| "the stdin writer panicked".to_owned())?
            .map_err(|e| format!("write curl's config: {e}"))?;
        let stderr = String::from_utf8_lossy(&out.stderr);
        let text = String::from_utf8_lossy(&out.stdout);
        let rows: Vec<(u32, u32, f64)> = text
            .lines()
            .filter_map(|l| {
                let mut f = l.split_whitespace();
                Some((
                    f.next()?.parse().ok()?,
                    f.next()?.parse().ok()?,
                    f.next()?.parse().ok()?,
                ))
            })
            .collect();
        if rows.len() != n {
            return Err(format!(
                "{url}: {} of {n} requests reported (exit {}); curl said: {}",
                rows.len(),
                out.status,
                stderr.lines().take(5).collect::<Vec<_>>().join(" | ")
            ));
        }
        let bad: Vec<String> = rows
            .iter()
            .filter(|(c, code, _)| *c != 1 || *code != 200)
            .take(5)
            .map(|(c, code, t)| format!("connects={c} status={code} time={t}"))
            .collect();
        if !bad.is_empty() {
            return Err(format!(
                "{url}: requests failed or reused a connection: {bad:?}; curl said: {}",
                stderr.lines().take(5).collect::<Vec<_>>().join(" | ")
            ));
        }
        Ok(rows)
    }
}

fn ok_stdout(out: Output, what: &str) -> Fallible<String> {
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    } else {
        Err(format!(
            "{what} failed ({}):\n{}\n{}",
            out.status,
            String::from_utf8_lossy(&out.stdout).trim(),
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

/// Calls `f` every 500 ms until it returns Ok, for at most `within`; fails with its last error.
fn poll<T>(what: &str, within: Duration, mut f: impl FnMut() -> Fallible<T>) -> Fallible<T> {
    let start = Instant::now();
    loop {
        match f() {
            Ok(v) => return Ok(v),
            Err(last) if start.elapsed() > within => {
                return Err(format!("{what}: not within {within:?}; last: {last}"));
            }
            Err(_) => std::thread::sleep(Duration::from_millis(500)),
        }
    }
}

/// The first RepoTag of a docker-archive.
fn archive_ref(archive: &Path) -> Fallible<String> {
    let out = Command::new("tar")
        .arg("-xOf")
        .arg(archive)
        .arg("manifest.json")
        .output()
        .map_err(|e| format!("run tar: {e}"))?;
    let manifest = ok_stdout(out, &format!("read manifest.json of {}", archive.display()))?;
    let v: Value = serde_json::from_str(&manifest)
        .map_err(|e| format!("manifest.json of {}: {e}", archive.display()))?;
    v[0]["RepoTags"][0]
        .as_str()
        .map(str::to_owned)
        .ok_or_else(|| format!("{}: no RepoTags", archive.display()))
}

/// Imports `archive` into the containerd of every node.
fn import_image(bed: &Testbed, archive: &Path) -> Fallible<()> {
    for c in bed.clusters() {
        let node = c.node().map_err(|e| e.to_string())?;
        let out = Command::new("ctr")
            .arg("--address")
            .arg(node.dir().join("containerd.sock"))
            .args(["-n", "k8s.io", "images", "import"])
            .arg(archive)
            .output()
            .map_err(|e| format!("run ctr: {e}"))?;
        ok_stdout(
            out,
            &format!("import {} into {}", archive.display(), node.name),
        )?;
    }
    Ok(())
}

/// The CPU time (ns) of the Pods whose UIDs are given, from their cgroup v1 `cpuacct` groups
/// under every testbed node's group.
struct PodCpu {
    files: Vec<PathBuf>,
}

impl PodCpu {
    fn find(uids: &[String]) -> Fallible<PodCpu> {
        let root = Path::new("/sys/fs/cgroup/cpuacct");
        let tops: Vec<PathBuf> = std::fs::read_dir(root)
            .map_err(|e| format!("read {}: {e}", root.display()))?
            .flatten()
            .filter(|e| e.file_name().to_string_lossy().starts_with("mc-testbed-"))
            .map(|e| e.path())
            .collect();
        let mut files = Vec::new();
        for uid in uids {
            let name = format!("pod{uid}");
            let found = tops
                .iter()
                .find_map(|t| find_dir(t, &name, 4))
                .ok_or_else(|| format!("no cpuacct group {name} under {}", root.display()))?;
            files.push(found.join("cpuacct.usage"));
        }
        Ok(PodCpu { files })
    }

    fn nanos(&self) -> Fallible<u64> {
        let mut sum = 0;
        for f in &self.files {
            let text =
                std::fs::read_to_string(f).map_err(|e| format!("read {}: {e}", f.display()))?;
            sum += text
                .trim()
                .parse::<u64>()
                .map_err(|e| format!("{}: {e}", f.display()))?;
        }
        Ok(sum)
    }
}

fn find_dir(dir: &Path, name: &str, depth: usize) -> Option<PathBuf> {
    let entries = std::fs::read_dir(dir).ok()?;
    let subdirs: Vec<PathBuf> = entries
        .flatten()
        .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
        .map(|e| e.path())
        .collect();
    if let Some(hit) = subdirs
        .iter()
        .find(|p| p.file_name().is_some_and(|n| n == name))
    {
        return Some(hit.clone());
    }
    if depth == 0 {
        return None;
    }
    subdirs.iter().find_map(|p| find_dir(p, name, depth - 1))
}

fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|l| l.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_default()
}

/// Nearest-rank percentile of sorted `v`.
fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

fn pki_err(e: mc_core::Error) -> String {
    format!("peer certificates: {e}")
}

/// The peer's certificates: one trust anchor and issuer, a leaf for each HAProxy; returns
/// (CA PEM, gateway cert+key PEM, egress cert+key PEM), as HAProxy's `crt` files take them.
fn peer_pki() -> Fallible<(String, String, String)> {
    let now = SystemTime::now();
    let root = create_trust_anchor(&AnchorOptions::new(now)).map_err(pki_err)?;
    let issuer = create_issuer(&root, &IssuerOptions::new(now)).map_err(pki_err)?;
    let leaf = |id: &str| -> Fallible<String> {
        let l: CertifiedKey = issue_leaf(&issuer, id, &LeafOptions::new(now)).map_err(pki_err)?;
        Ok(format!("{}{}", l.chain_pem(&issuer), l.key_pem))
    };
    Ok((
        root.cert_pem.clone(),
        leaf(PEER_GATEWAY_ID)?,
        leaf(PEER_EGRESS_ID)?,
    ))
}

/// A Deployment of one HAProxy Pod `name` in `ns` with `config` and `pem` (its cert+key) and
/// `ca`, and its Service (`service_type`, `port`).
fn haproxy_objects(
    name: &str,
    image: &str,
    config: &str,
    pem: &str,
    ca: &str,
    service_type: &str,
    port: u16,
) -> Value {
    json!({"apiVersion": "v1", "kind": "List", "items": [
        {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name, "namespace": NS},
         "data": {"haproxy.cfg": config}},
        {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": name, "namespace": NS},
         "stringData": {"tls.pem": pem, "ca.crt": ca}},
        {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": name, "namespace": NS},
         "spec": {"replicas": 1, "selector": {"matchLabels": {"app": name}},
          "template": {"metadata": {"labels": {"app": name}},
           "spec": {"containers": [{"name": "haproxy", "image": image, "imagePullPolicy": "Never",
             "args": ["-db", "-f", "/etc/haproxy/haproxy.cfg"],
             "ports": [{"containerPort": port}],
             "readinessProbe": {"tcpSocket": {"port": port}, "periodSeconds": 2},
             "volumeMounts": [
               {"name": "config", "mountPath": "/etc/haproxy", "readOnly": true},
               {"name": "tls", "mountPath": "/etc/peer", "readOnly": true}]}],
            "volumes": [
              {"name": "config", "configMap": {"name": name}},
              {"name": "tls", "secret": {"secretName": name}}]}}}},
        {"apiVersion": "v1", "kind": "Service", "metadata": {"name": name, "namespace": NS},
         "spec": {"type": service_type, "selector": {"app": name},
          "ports": [{"name": "tcp", "port": port, "targetPort": port}]}}
    ]})
}

const HAPROXY_GLOBAL: &str = "global
  maxconn 4096
  ssl-default-bind-options ssl-min-ver TLSv1.3
  ssl-default-server-options ssl-min-ver TLSv1.3
defaults
  mode tcp
  timeout connect 5s
  timeout client 60s
  timeout server 60s
";

/// podinfo in `ns` of `ctx` (Deployment and Service `podinfo`), exported if `exported`.
fn podinfo(ctx: &str, exported: bool) -> Value {
    let labels = if exported {
        json!({"mirror.linkerd.io/exported": "true"})
    } else {
        json!({})
    };
    json!({"apiVersion": "v1", "kind": "List", "items": [
        {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "podinfo", "namespace": NS},
         "spec": {"replicas": 1, "selector": {"matchLabels": {"app": "podinfo"}},
          "template": {"metadata": {"labels": {"app": "podinfo"}},
           "spec": {"containers": [{"name": "podinfo", "image": mc_tests::PODINFO_IMAGE,
             "command": ["./podinfo", "--port=9898", "--level=warn",
                         format!("--ui-message=greetings from {ctx}")],
             "ports": [{"name": "http", "containerPort": PODINFO_PORT}],
             "readinessProbe": {"httpGet": {"path": "/readyz", "port": PODINFO_PORT}, "periodSeconds": 2}}]}}}},
        {"apiVersion": "v1", "kind": "Service",
         "metadata": {"name": "podinfo", "namespace": NS, "labels": labels},
         "spec": {"selector": {"app": "podinfo"}, "ports": [{"name": "http", "port": PODINFO_PORT}]}}
    ]})
}

/// Installs and links mc with the manifests it renders, as `tests/tests/pod_faults.rs` does
/// (west's egress leaves keep the default lifetime, so no renewal falls in the run), the Link
/// in egress mode.
fn install_mc(b: &Bench<'_>) -> Fallible<()> {
    b.sh("mc trust-anchor create --cert-out root.crt --key-out root.key --force")?;
    for c in ["east", "west"] {
        b.sh(&format!(
            "mc issuer create --ca-cert root.crt --ca-key root.key --cert-out {c}-issuer.crt --key-out {c}-issuer.key --force"
        ))?;
    }
    let root = std::fs::read_to_string(b.work.join("root.crt"))
        .map_err(|e| format!("read root.crt: {e}"))?;
    let values = format!(
        "identityTrustAnchorsPEM: |\n{}identityTrustDomain: cluster.local\n",
        root.lines().map(|l| format!("  {l}\n")).collect::<String>()
    );
    let config = json!({"apiVersion": "v1", "kind": "List", "items": [
        {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "linkerd"}},
        {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "linkerd-config", "namespace": "linkerd"},
         "data": {"values": values}}]});
    for ctx in ["east", "west"] {
        b.apply(ctx, "linkerd-config", &config)?;
    }
    b.sh(
        "mc --context east multicluster install --egress=false | kubectl --context east apply -f -",
    )?;
    b.sh("mc --context west multicluster install --gateway=false --issuer-secret linkerd-multicluster-issuer | kubectl --context west apply -f -")?;
    b.sh("mc multicluster issuer-secret --issuer-cert west-issuer.crt --issuer-key west-issuer.key --trust-anchors root.crt | kubectl --context west apply -f -")?;
    b.sh("mc --context east multicluster gateway-identity --issuer-cert east-issuer.crt --issuer-key east-issuer.key --trust-anchors root.crt | kubectl --context east apply -f -")?;
    b.rollout("east", MC_NS, "deployment/linkerd-gateway")?;
    b.lb_ip("east", MC_NS, "linkerd-gateway")?;
    b.sh("mc --context east multicluster link --cluster-name east --mode egress | kubectl --context west apply -f -")?;
    b.rollout("west", MC_NS, "deployment/controller-east")?;
    b.rollout(
        "west",
        MC_NS,
        &format!("deployment/{}", mc_core::egress::EGRESS_NAME),
    )
}

/// One measured path.
struct PathRun {
    name: &'static str,
    what: &'static str,
    url: String,
    cpu: Option<(PodCpu, PodCpu)>,
    latencies: Vec<f64>,
    cpu_ns: [u64; 2],
}

fn run(args: &Args, dir: &Path) -> Fallible<()> {
    if args.block == 0 || args.requests == 0 {
        return Err("--requests and --block must be positive".into());
    }
    let mc_bin = match &args.mc_bin {
        Some(p) => p.clone(),
        None => std::env::current_exe()
            .map_err(|e| format!("cannot locate this executable: {e}"))?
            .with_file_name("mc"),
    };
    if !mc_bin.is_file() {
        return Err(format!("{} is missing (build mc-cli)", mc_bin.display()));
    }
    let haproxy_archive = args
        .haproxy_image
        .clone()
        .unwrap_or_else(|| mc_tests::cache_dir().join("images/haproxy.tar"));
    if !haproxy_archive.is_file() {
        return Err(format!(
            "{} is missing (apt-get install haproxy && scripts/build-images haproxy)",
            haproxy_archive.display()
        ));
    }
    let haproxy_image = archive_ref(&haproxy_archive)?;
    std::fs::create_dir_all(dir).map_err(|e| format!("create {}: {e}", dir.display()))?;

    let t = Instant::now();
    let bed = Testbed::start_with_nodes(&["east", "west"]).map_err(|e| format!("testbed: {e}"))?;
    println!(
        "testbed with nodes (east, west) up in {:.1}s; work files in {}",
        t.elapsed().as_secs_f64(),
        dir.display()
    );
    import_image(&bed, &haproxy_archive)?;
    let mut dirs = vec![
        mc_bin.with_file_name(""),
        bed.binaries().kubectl.with_file_name(""),
    ];
    dirs.extend(std::env::split_paths(
        &std::env::var_os("PATH").unwrap_or_default(),
    ));
    let path_env = std::env::join_paths(dirs).map_err(|e| format!("PATH: {e}"))?;
    let b = Bench {
        bed: &bed,
        work: dir,
        path_env,
    };

    let t = Instant::now();
    install_mc(&b)?;
    println!(
        "mc installed and linked in {:.1}s",
        t.elapsed().as_secs_f64()
    );

    // podinfo in both clusters, east's exported; the client in west.
    let namespace = json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": NS}});
    for ctx in ["east", "west"] {
        b.apply(ctx, "namespace", &namespace)?;
        b.apply(ctx, "podinfo", &podinfo(ctx, ctx == "east"))?;
    }
    let client = json!({"apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": "client", "namespace": NS},
        "spec": {"replicas": 1, "selector": {"matchLabels": {"app": "client"}},
         "template": {"metadata": {"labels": {"app": "client"}},
          "spec": {"containers": [{"name": "client", "image": mc_tests::CLIENT_IMAGE,
                                   "imagePullPolicy": "Never"}]}}}});
    b.apply("west", "the client", &client)?;

    // The peer: HAProxy as the gateway in east (behind a LoadBalancer), as the egress in west.
    let (ca, gw_pem, egress_pem) = peer_pki()?;
    let east_podinfo = b.cluster_ip("east", NS, "podinfo")?;
    let gw_config = format!(
        "{HAPROXY_GLOBAL}frontend gateway
  bind :{PEER_GATEWAY_PORT} ssl crt /etc/peer/tls.pem ca-file /etc/peer/ca.crt verify required no-tls-tickets
  default_backend podinfo
backend podinfo
  server podinfo {east_podinfo}:{PODINFO_PORT}
"
    );
    b.apply(
        "east",
        "the HAProxy gateway",
        &haproxy_objects(
            "haproxy-gateway",
            &haproxy_image,
            &gw_config,
            &gw_pem,
            &ca,
            "LoadBalancer",
            PEER_GATEWAY_PORT,
        ),
    )?;
    let peer_gateway = b.lb_ip("east", NS, "haproxy-gateway")?;
    let egress_config = format!(
        "{HAPROXY_GLOBAL}frontend egress
  bind :{PEER_EGRESS_PORT}
  default_backend east
backend east
  server gateway {peer_gateway}:{PEER_GATEWAY_PORT} ssl crt /etc/peer/tls.pem ca-file /etc/peer/ca.crt verify required verifyhost {PEER_GATEWAY_ID} sni str({PEER_GATEWAY_ID}) no-ssl-reuse
"
    );
    b.apply(
        "west",
        "the HAProxy egress",
        &haproxy_objects(
            "haproxy-egress",
            &haproxy_image,
            &egress_config,
            &egress_pem,
            &ca,
            "ClusterIP",
            PEER_EGRESS_PORT,
        ),
    )?;
    for (ctx, what) in [
        ("east", "deployment/podinfo"),
        ("west", "deployment/podinfo"),
        ("west", "deployment/client"),
        ("east", "deployment/haproxy-gateway"),
        ("west", "deployment/haproxy-egress"),
    ] {
        b.rollout(ctx, NS, what)?;
    }

    let mirror = "podinfo-east";
    let egress_pods = format!("app={}", mc_core::egress::EGRESS_NAME);
    poll(
        "the mirror podinfo-east pointing at ready egress Pods",
        Duration::from_secs(120),
        || {
            let ep = b.json("west", &["get", "endpoints", "-n", NS, mirror])?;
            let port = ep["subsets"][0]["ports"][0]["port"].as_u64().unwrap_or(0);
            let ready = ep["subsets"][0]["addresses"].as_array().map_or(0, Vec::len);
            if ready > 0 && (20000..=32767).contains(&port) {
                Ok(())
            } else {
                Err(format!("{ep}"))
            }
        },
    )?;
    let url = |ip: String, port: u16| format!("http://{ip}:{port}/");
    let mut paths = [
        PathRun {
            name: "mc",
            what: "west Pod → egress → east gateway → podinfo",
            url: url(b.cluster_ip("west", NS, mirror)?, PODINFO_PORT),
            cpu: Some((
                PodCpu::find(&b.pod_uids("west", MC_NS, &egress_pods)?)?,
                PodCpu::find(&b.pod_uids("east", MC_NS, "app=linkerd-gateway")?)?,
            )),
            latencies: Vec::new(),
            cpu_ns: [0; 2],
        },
        PathRun {
            name: "direct",
            what: "west Pod → west podinfo",
            url: url(b.cluster_ip("west", NS, "podinfo")?, PODINFO_PORT),
            cpu: None,
            latencies: Vec::new(),
            cpu_ns: [0; 2],
        },
        PathRun {
            name: "peer",
            what: "west Pod → HAProxy egress → HAProxy gateway (mTLS) → podinfo",
            url: url(
                b.cluster_ip("west", NS, "haproxy-egress")?,
                PEER_EGRESS_PORT,
            ),
            cpu: Some((
                PodCpu::find(&b.pod_uids("west", NS, "app=haproxy-egress")?)?,
                PodCpu::find(&b.pod_uids("east", NS, "app=haproxy-gateway")?)?,
            )),
            latencies: Vec::new(),
            cpu_ns: [0; 2],
        },
    ];
    for p in &paths {
        poll(
            &format!("a first answer on path {}", p.name),
            Duration::from_secs(90),
            || b.requests(&p.url, 1),
        )?;
        if args.warm > 0 {
            b.requests(&p.url, args.warm)?;
        }
    }
    let egress_count = b.pod_uids("west", MC_NS, &egress_pods)?.len();
    println!(
        "paths answer; measuring {} requests per path in blocks of {} (mc egress Pods: {egress_count}, load average {})",
        args.requests,
        args.block,
        load_average()
    );

    let rounds = args.requests.div_ceil(args.block);
    for round in 0..rounds {
        let n = args.block.min(args.requests - round * args.block);
        let mut line = format!("round {}/{rounds}:", round + 1);
        for k in 0..paths.len() {
            let p = &mut paths[(round + k) % 3];
            let before = match &p.cpu {
                Some((a, g)) => [a.nanos()?, g.nanos()?],
                None => [0; 2],
            };
            let t = Instant::now();
            let rows = b.requests(&p.url, n)?;
            let wall = t.elapsed();
            if let Some((a, g)) = &p.cpu {
                p.cpu_ns[0] += a.nanos()?.saturating_sub(before[0]);
                p.cpu_ns[1] += g.nanos()?.saturating_sub(before[1]);
            }
            let mut times: Vec<f64> = rows.iter().map(|r| r.2 * 1e3).collect();
            p.latencies.extend(&times);
            times.sort_by(f64::total_cmp);
            line.push_str(&format!(
                " {} p50 {:.2} p99 {:.2} ms ({:.1}s);",
                p.name,
                percentile(&times, 50.0),
                percentile(&times, 99.0),
                wall.as_secs_f64()
            ));
        }
        eprintln!("{line} load {}", load_average());
    }

    report(&paths, args.requests);
    Ok(())
}

fn report(paths: &[PathRun], requests: usize) {
    let stats: BTreeMap<&str, (f64, f64)> = paths
        .iter()
        .map(|p| {
            let mut v = p.latencies.clone();
            v.sort_by(f64::total_cmp);
            (p.name, (percentile(&v, 50.0), percentile(&v, 99.0)))
        })
        .collect();
    let get = |name: &str| stats.get(name).copied().unwrap_or((f64::NAN, f64::NAN));
    let (d50, d99) = get("direct");
    let per_req = |ns: u64| ns as f64 / 1e3 / requests as f64;
    println!();
    println!("| path | p50 | p99 | added p50 | added p99 | CPU per request (egress + gateway) |");
    println!("|---|---|---|---|---|---|");
    for p in paths {
        let (p50, p99) = get(p.name);
        let added = if p.name == "direct" {
            "—".to_owned()
        } else {
            format!("{:.2} ms", p50 - d50)
        };
        let added99 = if p.name == "direct" {
            "—".to_owned()
        } else {
            format!("{:.2} ms", p99 - d99)
        };
        let cpu = if p.cpu.is_some() {
            format!(
                "{:.0} µs ({:.0} + {:.0})",
                per_req(p.cpu_ns[0] + p.cpu_ns[1]),
                per_req(p.cpu_ns[0]),
                per_req(p.cpu_ns[1])
            )
        } else {
            "—".to_owned()
        };
        println!(
            "| {} ({}) | {p50:.2} ms | {p99:.2} ms | {added} | {added99} | {cpu} |",
            p.name, p.what
        );
    }
    let (m50, m99) = get("mc");
    let (p50, p99) = get("peer");
    let cpu = |name: &str| {
        paths
            .iter()
            .find(|p| p.name == name)
            .map_or(f64::NAN, |p| (p.cpu_ns[0] + p.cpu_ns[1]) as f64)
    };
    println!();
    println!("| ratio mc / peer | value |");
    println!("|---|---|");
    println!("| added p50 | {:.2} |", (m50 - d50) / (p50 - d50));
    println!(
        "| added p99 (goal ≤ 1) | {:.2} |",
        (m99 - d99) / (p99 - d99)
    );
    println!("| CPU per request | {:.2} |", cpu("mc") / cpu("peer"));
}
