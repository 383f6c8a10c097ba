//! `mc-bench-egress`: what one `mc-gateway egress` process costs with many routes, on real
//! parts: the testbed's kube-apiserver (cluster `west`, API only), a real `mc-gateway serve` on
//! loopback in front of a TCP echo backend, and a real `mc-gateway egress` following ConfigMap
//! `mc-egress-routes` in a namespace of its own. Every route leads through the gateway to the
//! echo backend.
//!
//! Measured: the egress's RSS with no route and with N routes; the setup time (from the write
//! of the ConfigMap holding N routes until the egress's `egress_routes` metric is N and
//! `/ready` answers 200); and, `--adds` times, the time for one more route to become reachable
//! (from the ConfigMap update adding it until an echo round trip through its port succeeds).
//! Any step that fails or times out ends the run with a non-zero status. Run it with
//! `make bench-egress` (release build, inside `scripts/in-netns`, so that the egress ports are
//! this run's own).

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitCode};
use std::time::{Duration, Instant};

use clap::Parser;
use k8s_openapi::api::core::v1::{ConfigMap, Namespace};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::api::{Api, Patch, PatchParams, PostParams};
use mc_core::egress::{PORT_RANGE, ROUTES_CONFIG_MAP, Route, route_key};
use mc_tests::egress::{GATEWAY_ID, identity_flags, write_pki};

/// Measures one `mc-gateway egress` serving many routes (see the crate docs).
#[derive(Debug, Parser)]
struct Args {
    /// How many routes the table holds (egress ports BASE_PORT..BASE_PORT+ROUTES).
    #[arg(long, default_value_t = 1000)]
    routes: u16,
    /// How many times one more route is added (each on the next port), timed one by one.
    #[arg(long, default_value_t = 20)]
    adds: u16,
    /// The first egress port.
    #[arg(long, default_value_t = 20000)]
    base_port: u16,
    /// How long any one step may take, in seconds.
    #[arg(long, default_value_t = 120)]
    timeout: u64,
    /// The `mc-gateway` binary (default: the one next to this executable).
    #[arg(long)]
    gateway_bin: Option<PathBuf>,
    /// Where logs and certificates go (default: a new directory under the temp dir).
    #[arg(long)]
    dir: Option<PathBuf>,
}

type Fallible<T> = Result<T, String>;

fn main() -> ExitCode {
    let args = Args::parse();
    let dir = args.dir.clone().unwrap_or_else(|| {
        std::env::temp_dir().join(format!("mc-bench-egress-{}", std::process::id()))
    });
    match run(&args, &dir) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!(
                "bench-egress: FAILED: {e}\n(logs in {}: gateway.log, egress.log)",
                dir.display()
            );
            ExitCode::FAILURE
        }
    }
}

/// A child process killed (by its own pid) when dropped.
struct KillOnDrop(Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn free_port() -> Fallible<u16> {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .map_err(|e| format!("no free loopback port: {e}"))
}

/// Calls `f` every `every` until it returns `Some`, for at most `within`.
fn poll<T>(
    what: &str,
    within: Duration,
    every: Duration,
    mut f: impl FnMut() -> Option<T>,
) -> Fallible<T> {
    let start = Instant::now();
    loop {
        if let Some(v) = f() {
            return Ok(v);
        }
        if start.elapsed() > within {
            return Err(format!("timed out after {within:?} waiting for {what}"));
        }
        std::thread::sleep(every);
    }
}

/// A TCP echo backend on loopback, a thread per connection.
fn echo_backend() -> Fallible<SocketAddr> {
    let listener = TcpListener::bind("127.0.0.1:0").map_err(|e| format!("echo backend: {e}"))?;
    let addr = listener
        .local_addr()
        .map_err(|e| format!("echo backend: {e}"))?;
    std::thread::spawn(move || {
        for mut s in listener.incoming().flatten() {
            std::thread::spawn(move || {
                if let Ok(mut w) = s.try_clone() {
                    let _ = std::io::copy(&mut s, &mut w);
                }
            });
        }
    });
    Ok(addr)
}

/// One HTTP/1.1 GET of an admin server: status and body.
fn admin_get(addr: SocketAddr, path: &str) -> Option<(u16, String)> {
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(2)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    write!(
        s,
        "GET {path} HTTP/1.1\r\nhost: admin\r\nconnection: close\r\n\r\n"
    )
    .ok()?;
    let mut text = String::new();
    s.read_to_string(&mut text).ok()?;
    let status = text.split(' ').nth(1)?.parse().ok()?;
    let (_, body) = text.split_once("\r\n\r\n")?;
    Some((status, body.to_owned()))
}

/// The value of the unlabelled metric `name` in a Prometheus text exposition.
fn gauge(metrics: &str, name: &str) -> Option<f64> {
    metrics.lines().find_map(|l| {
        let (series, value) = l.split_once(' ')?;
        (series == name).then(|| value.trim().parse().ok())?
    })
}

/// Whether an echo round trip through loopback `port` succeeds.
fn echo_through(port: u16) -> bool {
    let round_trip = || -> std::io::Result<bool> {
        let mut s = TcpStream::connect(("127.0.0.1", port))?;
        s.set_read_timeout(Some(Duration::from_secs(10)))?;
        let msg = b"mc-bench-egress\n";
        s.write_all(msg)?;
        let mut back = [0u8; 16];
        s.read_exact(&mut back)?;
        Ok(&back == msg)
    };
    round_trip().unwrap_or(false)
}

/// VmRSS and VmHWM of `pid`, in KiB.
fn memory_kib(pid: u32) -> Fallible<(u64, u64)> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))
        .map_err(|e| format!("/proc/{pid}/status: {e}"))?;
    let field = |name: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .ok_or_else(|| format!("no {name} in /proc/{pid}/status"))
    };
    Ok((field("VmRSS:")?, field("VmHWM:")?))
}

/// utime + stime of `pid`, in seconds.
fn cpu_seconds(pid: u32) -> Fallible<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .map_err(|e| format!("/proc/{pid}/stat: {e}"))?;
    // Fields after the command (which may hold spaces): state is field 3, utime 14, stime 15.
    let rest = stat.rsplit_once(')').map(|(_, r)| r).unwrap_or_default();
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| f.get(i).and_then(|v| v.parse::<u64>().ok());
    let (Some(u), Some(s)) = (ticks(11), ticks(12)) else {
        return Err(format!("cannot parse /proc/{pid}/stat"));
    };
    // SAFETY: sysconf only reads a configuration value.
    #[allow(unsafe_code)]
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    let hz = if hz > 0 { hz as f64 } else { 100.0 };
    Ok((u + s) as f64 / hz)
}

fn log_file(dir: &Path, name: &str) -> Fallible<std::fs::File> {
    std::fs::File::create(dir.join(name)).map_err(|e| format!("create {name}: {e}"))
}

/// The ConfigMap data of routes on ports `base..base+n`, all to `target` through `gateway`.
fn table(
    ns: &str,
    base: u16,
    n: u16,
    target: &str,
    gateway: &str,
) -> Fallible<BTreeMap<String, String>> {
    (0..n)
        .map(|i| {
            let listen = base + i;
            let route = Route {
                listen,
                link: "east".into(),
                target: target.into(),
                gateways: vec![gateway.to_owned()],
                identity: GATEWAY_ID.into(),
                members: Default::default(),
            };
            let json = serde_json::to_string(&route).map_err(|e| format!("route to JSON: {e}"))?;
            Ok((route_key(ns, &format!("svc{i}-east"), 7), json))
        })
        .collect()
}

/// Replaces the route table's ConfigMap in `api`'s namespace with `data` (server-side apply,
/// one field manager, so keys left out are removed).
async fn write_routes(api: &Api<ConfigMap>, data: BTreeMap<String, String>) -> Fallible<()> {
    let cm = ConfigMap {
        metadata: ObjectMeta {
            name: Some(ROUTES_CONFIG_MAP.to_owned()),
            ..ObjectMeta::default()
        },
        data: Some(data),
        ..ConfigMap::default()
    };
    api.patch(
        ROUTES_CONFIG_MAP,
        &PatchParams::apply("mc-bench-egress").force(),
        &Patch::Apply(&cm),
    )
    .await
    .map(|_| ())
    .map_err(|e| format!("write ConfigMap {ROUTES_CONFIG_MAP}: {e}"))
}

fn median(sorted: &[f64]) -> f64 {
    match sorted.len() {
        0 => f64::NAN,
        n if n % 2 == 1 => sorted[n / 2],
        n => (sorted[n / 2 - 1] + sorted[n / 2]) / 2.0,
    }
}

fn run(args: &Args, dir: &Path) -> Fallible<()> {
    let (n, adds) = (args.routes, args.adds);
    let step = Duration::from_secs(args.timeout);
    let last = u32::from(args.base_port) + u32::from(n) + u32::from(adds);
    if !PORT_RANGE.contains(&args.base_port) || last > u32::from(*PORT_RANGE.end()) + 1 {
        return Err(format!(
            "ports {}..{last} are not all in the egress range {}..={}",
            args.base_port,
            PORT_RANGE.start(),
            PORT_RANGE.end()
        ));
    }
    let ports = args.base_port..args.base_port + n + adds;
    let busy: Vec<u16> = ports
        .clone()
        .filter(|p| TcpListener::bind(("127.0.0.1", *p)).is_err())
        .collect();
    if !busy.is_empty() {
        return Err(format!(
            "egress ports already in use on 127.0.0.1: {busy:?}"
        ));
    }
    let gateway_bin = match &args.gateway_bin {
        Some(p) => p.clone(),
        None => std::env::current_exe()
            .map_err(|e| format!("cannot locate this executable: {e}"))?
            .with_file_name("mc-gateway"),
    };
    if !gateway_bin.exists() {
        return Err(format!(
            "{} is missing (build mc-gateway)",
            gateway_bin.display()
        ));
    }
    std::fs::create_dir_all(dir).map_err(|e| format!("create {}: {e}", dir.display()))?;
    println!(
        "mc-gateway egress with {n} routes (+{adds} added one by one); {}; work files in {}",
        gateway_bin.display(),
        dir.display()
    );

    let t = Instant::now();
    let bed = mc_tests::Testbed::start_api_only(&["west"]).map_err(|e| format!("testbed: {e}"))?;
    println!(
        "testbed (kube-apiserver west) up in {:.1}s",
        t.elapsed().as_secs_f64()
    );
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("tokio runtime: {e}"))?;
    let ns = "bench-egress";
    let api: Api<ConfigMap> = rt.block_on(async {
        let client = bed
            .client("west")
            .await
            .map_err(|e| format!("client: {e}"))?;
        let namespace = Namespace {
            metadata: ObjectMeta {
                name: Some(ns.to_owned()),
                ..ObjectMeta::default()
            },
            ..Namespace::default()
        };
        Api::<Namespace>::all(client.clone())
            .create(&PostParams::default(), &namespace)
            .await
            .map_err(|e| format!("create namespace {ns}: {e}"))?;
        Ok::<_, String>(Api::namespaced(client, ns))
    })?;
    let kubeconfig = bed
        .user_kubeconfig("west", "bench-egress", &["system:masters"])
        .map_err(|e| format!("kubeconfig: {e}"))?;
    write_pki(dir).map_err(|e| e.to_string())?;

    // The gateway, in front of the echo backend.
    let echo = echo_backend()?;
    let target = format!("echo.{ns}.svc.cluster.local:7");
    let gateway = format!("127.0.0.1:{}", free_port()?);
    let gw_admin: SocketAddr = format!("127.0.0.1:{}", free_port()?)
        .parse()
        .map_err(|e| format!("{e}"))?;
    let _gw = KillOnDrop(
        Command::new(&gateway_bin)
            .env("RUST_LOG", "mc_gateway=warn")
            .args(["serve", "--listen", &gateway, "--no-dns"])
            .args(["--admin", &gw_admin.to_string()])
            .args(identity_flags(dir, "gw"))
            .args(["--identity", GATEWAY_ID])
            .args(["--static", &format!("{target}={echo}")])
            .stderr(log_file(dir, "gateway.log")?)
            .spawn()
            .map_err(|e| format!("start mc-gateway serve: {e}"))?,
    );
    poll(
        "the gateway's /ready 200",
        step,
        Duration::from_millis(50),
        || admin_get(gw_admin, "/ready").filter(|(s, _)| *s == 200),
    )?;

    // The egress, with no ConfigMap yet: an empty table, ready.
    let admin: SocketAddr = format!("127.0.0.1:{}", free_port()?)
        .parse()
        .map_err(|e| format!("{e}"))?;
    let mut egress = KillOnDrop(
        Command::new(&gateway_bin)
            .env("RUST_LOG", "mc_gateway=warn")
            .env("KUBECONFIG", &kubeconfig)
            .env_remove("POD_NAMESPACE")
            .args(["egress", "--listen-ip", "127.0.0.1", "--namespace", ns])
            .args(["--admin", &admin.to_string()])
            .args(identity_flags(dir, "egress"))
            .stderr(log_file(dir, "egress.log")?)
            .spawn()
            .map_err(|e| format!("start mc-gateway egress: {e}"))?,
    );
    let pid = egress.0.id();
    poll(
        "the egress's /ready 200 with no route",
        step,
        Duration::from_millis(50),
        || admin_get(admin, "/ready").filter(|(s, _)| *s == 200),
    )?;
    std::thread::sleep(Duration::from_secs(1));
    let (rss0, _) = memory_kib(pid)?;

    // N routes in one write.
    let data = table(ns, args.base_port, n, &target, &gateway)?;
    let bytes: usize = data.iter().map(|(k, v)| k.len() + v.len()).sum();
    let cpu0 = cpu_seconds(pid)?;
    let t = Instant::now();
    rt.block_on(write_routes(&api, data))?;
    let written = t.elapsed();
    let routes_metric = poll(
        &format!("egress_routes = {n}"),
        step,
        Duration::from_millis(10),
        || {
            let (_, m) = admin_get(admin, "/metrics")?;
            (gauge(&m, "egress_routes")? == f64::from(n)).then_some(())
        },
    );
    let at_metric = t.elapsed();
    routes_metric?;
    poll(
        "the egress's /ready 200",
        step,
        Duration::from_millis(10),
        || admin_get(admin, "/ready").filter(|(s, _)| *s == 200),
    )?;
    let setup = t.elapsed();
    let setup_cpu = cpu_seconds(pid)? - cpu0;
    for port in [
        args.base_port,
        args.base_port + n / 2,
        args.base_port + n - 1,
    ] {
        if n > 0 && !echo_through(port) {
            return Err(format!("no echo through port {port} after setup"));
        }
    }
    let (rss_n, hwm_n) = memory_kib(pid)?;

    // One more route at a time.
    let (mut times, mut writes) = (Vec::new(), Vec::new());
    let cpu1 = cpu_seconds(pid)?;
    for i in 1..=adds {
        let port = args.base_port + n + i - 1;
        let data = table(ns, args.base_port, n + i, &target, &gateway)?;
        let t = Instant::now();
        rt.block_on(write_routes(&api, data))?;
        writes.push(t.elapsed().as_secs_f64() * 1000.0);
        poll(
            &format!("an echo through the added route's port {port}"),
            step,
            Duration::from_millis(2),
            || echo_through(port).then_some(()),
        )?;
        times.push(t.elapsed().as_secs_f64() * 1000.0);
    }
    let add_cpu = cpu_seconds(pid)? - cpu1;
    let (rss_end, hwm_end) = memory_kib(pid)?;
    if let Ok(Some(status)) = egress.0.try_wait() {
        return Err(format!("the egress exited: {status}"));
    }
    times.sort_by(f64::total_cmp);
    writes.sort_by(f64::total_cmp);
    let mib = |kib: u64| kib as f64 / 1024.0;

    println!();
    println!("| measure | value |");
    println!("|---|---|");
    println!(
        "| egress RSS, 0 routes (started, ready) | {:.1} MiB |",
        mib(rss0)
    );
    println!(
        "| egress RSS, {n} routes served | {:.1} MiB (peak {:.1} MiB) |",
        mib(rss_n),
        mib(hwm_n)
    );
    println!(
        "| egress RSS after +{adds} routes and {} echo round trips | {:.1} MiB (peak {:.1} MiB) |",
        adds + 3,
        mib(rss_end),
        mib(hwm_end)
    );
    println!(
        "| ConfigMap with {n} routes | {:.0} KiB of data |",
        bytes as f64 / 1024.0
    );
    println!(
        "| setup: ConfigMap write returned | {:.0} ms |",
        written.as_secs_f64() * 1000.0
    );
    println!(
        "| setup: write → egress_routes = {n} | {:.0} ms |",
        at_metric.as_secs_f64() * 1000.0
    );
    println!(
        "| setup: write → /ready 200 | {:.0} ms |",
        setup.as_secs_f64() * 1000.0
    );
    println!("| setup: egress CPU time | {:.0} ms |", setup_cpu * 1000.0);
    println!(
        "| one added route: write → echo through it, median of {adds} | {:.0} ms |",
        median(&times)
    );
    println!(
        "| one added route: min / max | {:.0} / {:.0} ms |",
        times.first().copied().unwrap_or(f64::NAN),
        times.last().copied().unwrap_or(f64::NAN)
    );
    println!(
        "| one added route: of which the ConfigMap write, median | {:.0} ms |",
        median(&writes)
    );
    println!(
        "| one added route: egress CPU time per add | {:.0} ms |",
        add_cpu * 1000.0 / f64::from(adds.max(1))
    );
    Ok(())
}
