//! Gateway liveness: resolving `spec.gatewayAddress` and probing the gateway.
//!
//! Every entry of `gatewayAddress` (comma-separated IPs and DNS names) is resolved to all of its
//! A/AAAA records; the result is sorted and deduplicated, and re-resolved every resolve period, so a
//! load balancer whose IPs change is followed (linkerd2 #10635). The prober sends
//! `GET http://<ip>:<probePort><probePath>` to every resolved address each period, plus a random
//! jitter of up to 10 %, with the Link's timeout. The gateway is alive while at least one address
//! answers 200. It starts alive (a restart must not fail traffic fast, linkerd2 #8590) and is
//! declared dead only after `failureThreshold` consecutive failed rounds. Only a *change* of state
//! or of the address set is published, so the mirrors are rewritten only then.

use std::net::IpAddr;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpStream;
use tokio::sync::watch;

use crate::metrics::{Metrics, ProbeLabels};

/// What the mirrors need to know about the gateway: where it is and whether it is alive.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GatewayView {
    /// Resolved addresses, sorted and deduplicated.
    pub addresses: Vec<IpAddr>,
    /// `false` once `failureThreshold` consecutive probe rounds failed.
    pub alive: bool,
    /// `true` once at least one resolution succeeded.
    pub resolved: bool,
}

/// The probe summary written to the Link status (not used to rewrite mirrors).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct ProbeSummary {
    /// Gateway alive.
    pub alive: bool,
    /// Latency of the last successful probe.
    pub latency: Option<Duration>,
    /// Median latency of the recent successful probes (see [`LatencyWindow`]).
    pub p50: Option<Duration>,
    /// 99th-percentile latency of the recent successful probes.
    pub p99: Option<Duration>,
    /// Time of the last probe round.
    pub last_probe: Option<SystemTime>,
    /// Consecutive failed rounds.
    pub consecutive_failures: u32,
    /// Why the last round failed, if it did.
    pub last_error: Option<String>,
}

/// The latencies of the last [`LatencyWindow::CAPACITY`] successful probes, for percentiles.
#[derive(Clone, Debug, Default)]
pub struct LatencyWindow {
    samples: std::collections::VecDeque<Duration>,
}

impl LatencyWindow {
    /// How many recent samples are kept (at the default 3 s period: the last 5 minutes).
    pub const CAPACITY: usize = 100;

    /// Records one successful probe's latency, forgetting the oldest beyond the capacity.
    pub fn record(&mut self, latency: Duration) {
        if self.samples.len() == Self::CAPACITY {
            self.samples.pop_front();
        }
        self.samples.push_back(latency);
    }

    /// The `q`-quantile (0.0 to 1.0, nearest rank) of the recorded samples; `None` when empty.
    ///
    /// ```
    /// use std::time::Duration;
    /// use mc_mirror::probe::LatencyWindow;
    /// let mut w = LatencyWindow::default();
    /// for ms in 1..=100 {
    ///     w.record(Duration::from_millis(ms));
    /// }
    /// assert_eq!(w.quantile(0.5), Some(Duration::from_millis(50)));
    /// assert_eq!(w.quantile(0.99), Some(Duration::from_millis(99)));
    /// ```
    pub fn quantile(&self, q: f64) -> Option<Duration> {
        let mut sorted: Vec<Duration> = self.samples.iter().copied().collect();
        sorted.sort_unstable();
        let n = sorted.len();
        if n == 0 {
            return None;
        }
        // Nearest rank: the smallest sample with at least q·n samples at or below it.
        let rank = (q.clamp(0.0, 1.0) * n as f64).ceil().max(1.0);
        #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
        let index = (rank as usize).min(n) - 1;
        sorted.get(index).copied()
    }
}

/// How to probe.
#[derive(Clone, Debug)]
pub struct ProbeConfig {
    /// The Link's target cluster name (metrics label).
    pub cluster: String,
    /// Probe port.
    pub port: u16,
    /// Probe path, e.g. `/ready`.
    pub path: String,
    /// Probe period.
    pub period: Duration,
    /// Timeout of one probe.
    pub timeout: Duration,
    /// Consecutive failed rounds before the gateway is declared dead.
    pub failure_threshold: u32,
}

/// Splits `gatewayAddress` into its entries.
pub fn address_entries(gateway_address: &str) -> Vec<String> {
    gateway_address
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_string)
        .collect()
}

/// Resolves every entry to all of its addresses; sorted, deduplicated. Entries that fail to
/// resolve are reported in the error list; the call fails only when nothing resolved.
pub async fn resolve(entries: &[String]) -> (Vec<IpAddr>, Vec<String>) {
    let mut ips = Vec::new();
    let mut errors = Vec::new();
    for entry in entries {
        if let Ok(ip) = entry.parse::<IpAddr>() {
            ips.push(ip);
            continue;
        }
        match tokio::net::lookup_host((entry.as_str(), 0)).await {
            Ok(found) => {
                let before = ips.len();
                ips.extend(found.map(|a| a.ip()));
                if ips.len() == before {
                    errors.push(format!("{entry}: no A/AAAA records"));
                }
            }
            Err(e) => errors.push(format!("{entry}: {e}")),
        }
    }
    ips.sort_by_key(|ip| ip.to_string());
    ips.dedup();
    (ips, errors)
}

/// One probe: `GET http://ip:port/path`; `Ok(latency)` on HTTP 200, otherwise why not.
pub async fn probe_once(
    ip: IpAddr,
    port: u16,
    path: &str,
    timeout: Duration,
) -> Result<Duration, String> {
    let start = Instant::now();
    let work = async {
        let mut stream = TcpStream::connect((ip, port))
            .await
            .map_err(|e| format!("connect {ip}:{port}: {e}"))?;
        let host = match ip {
            IpAddr::V4(v4) => format!("{v4}:{port}"),
            IpAddr::V6(v6) => format!("[{v6}]:{port}"),
        };
        let request = format!(
            "GET {path} HTTP/1.1\r\nhost: {host}\r\nuser-agent: mc-mirror\r\nconnection: close\r\n\r\n"
        );
        stream
            .write_all(request.as_bytes())
            .await
            .map_err(|e| format!("send to {ip}:{port}: {e}"))?;
        let mut head = [0u8; 64];
        let mut len = 0;
        while len < 12 {
            let n = stream
                .read(&mut head[len..])
                .await
                .map_err(|e| format!("read from {ip}:{port}: {e}"))?;
            if n == 0 {
                break;
            }
            len += n;
        }
        let line = String::from_utf8_lossy(&head[..len]);
        let code = line.split_whitespace().nth(1).unwrap_or("");
        if line.starts_with("HTTP/1.") && code == "200" {
            Ok(start.elapsed())
        } else {
            Err(format!(
                "GET http://{host}{path} answered {:?}, want HTTP 200",
                line.lines().next().unwrap_or("")
            ))
        }
    };
    match tokio::time::timeout(timeout, work).await {
        Ok(r) => r,
        Err(_) => Err(format!(
            "GET http://{ip}:{port}{path}: no answer within {timeout:?}"
        )),
    }
}

/// A jittered period: `period` plus up to 10 %.
pub fn jittered(period: Duration) -> Duration {
    let nanos = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    // A cheap mix of the clock's low bits; good enough to spread probes.
    let mixed = u64::from(nanos).wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 40;
    let frac = (mixed % 1000) as f64 / 10_000.0; // 0.0 ..< 0.1
    period + period.mul_f64(frac)
}

/// The gateway tracker of one Link: resolves periodically and probes each period.
#[derive(Debug)]
pub struct Gateway {
    /// Changes of addresses or liveness.
    pub view: watch::Receiver<GatewayView>,
    /// The probe summary after each round.
    pub summary: watch::Receiver<ProbeSummary>,
}

/// Starts resolving `entries` every `resolve_period` and, with `probe`, probing. Without a probe
/// (empty probe path) the gateway counts as always alive. The tasks stop when the returned
/// receivers are all dropped.
pub fn start(
    entries: Vec<String>,
    resolve_period: Duration,
    probe: Option<ProbeConfig>,
    metrics: Arc<Metrics>,
) -> Gateway {
    let (view_tx, view) = watch::channel(GatewayView {
        addresses: Vec::new(),
        alive: true,
        resolved: false,
    });
    let (summary_tx, summary) = watch::channel(ProbeSummary {
        alive: true,
        ..ProbeSummary::default()
    });
    let view_tx = Arc::new(view_tx);
    tokio::spawn(resolve_loop(entries, resolve_period, view_tx.clone()));
    if let Some(cfg) = probe {
        tokio::spawn(probe_loop(cfg, view_tx, summary_tx, metrics));
    }
    Gateway { view, summary }
}

async fn resolve_loop(entries: Vec<String>, period: Duration, tx: Arc<watch::Sender<GatewayView>>) {
    let mut retry = Duration::from_millis(500);
    loop {
        let (ips, errors) = resolve(&entries).await;
        for e in &errors {
            tracing::warn!(error = %e, "gateway address does not resolve");
        }
        let ok = !ips.is_empty();
        if ok {
            tx.send_if_modified(|v| {
                let changed = v.addresses != ips || !v.resolved;
                v.addresses = ips.clone();
                v.resolved = true;
                changed
            });
        }
        let wait = if ok {
            retry = Duration::from_millis(500);
            period
        } else {
            retry = (retry * 2).min(period);
            retry
        };
        tokio::select! {
            () = tokio::time::sleep(wait) => {}
            () = tx.closed() => return,
        }
    }
}

async fn probe_loop(
    cfg: ProbeConfig,
    view_tx: Arc<watch::Sender<GatewayView>>,
    summary_tx: watch::Sender<ProbeSummary>,
    metrics: Arc<Metrics>,
) {
    let labels = Metrics::cluster(&cfg.cluster);
    metrics.gateway_enabled.get_or_create(&labels).set(1);
    metrics.gateway_alive.get_or_create(&labels).set(1);
    let mut failures = 0u32;
    let mut alive = true;
    let mut window = LatencyWindow::default();
    loop {
        tokio::select! {
            () = tokio::time::sleep(jittered(cfg.period)) => {}
            () = view_tx.closed() => return,
        }
        let addresses = view_tx.borrow().addresses.clone();
        let round = probe_round(&addresses, &cfg).await;
        let now = SystemTime::now();
        let ok = round.is_ok();
        metrics
            .gateway_probes
            .get_or_create(&ProbeLabels {
                target_cluster_name: cfg.cluster.clone(),
                probe_successful: ok.to_string(),
            })
            .inc();
        let mut last_error = None;
        match round {
            Ok(latency) => {
                failures = 0;
                alive = true;
                metrics.probe_latency(&labels, latency);
                window.record(latency);
                let (p50, p99) = (window.quantile(0.5), window.quantile(0.99));
                summary_tx.send_modify(|s| {
                    s.latency = Some(latency);
                    s.p50 = p50;
                    s.p99 = p99;
                });
            }
            Err(e) => {
                failures = failures.saturating_add(1);
                tracing::debug!(cluster = %cfg.cluster, failures, error = %e, "gateway probe failed");
                if failures >= cfg.failure_threshold.max(1) {
                    alive = false;
                }
                last_error = Some(e);
            }
        }
        metrics
            .gateway_alive
            .get_or_create(&labels)
            .set(i64::from(alive));
        summary_tx.send_modify(|s| {
            s.alive = alive;
            s.last_probe = Some(now);
            s.consecutive_failures = failures;
            s.last_error = last_error;
        });
        let changed = view_tx.send_if_modified(|v| {
            let changed = v.alive != alive;
            if changed {
                tracing::info!(cluster = %cfg.cluster, alive, "gateway liveness changed");
            }
            v.alive = alive;
            changed
        });
        if changed {
            metrics
                .probe_event_enqueues
                .get_or_create(&crate::metrics::EventLabels {
                    event_type: liveness_event(alive).into(),
                })
                .inc();
        }
    }
}

/// The event type of a change of the liveness verdict to `alive`.
pub(crate) fn liveness_event(alive: bool) -> &'static str {
    if alive { "GatewayAlive" } else { "GatewayDown" }
}

/// Probes every address concurrently; `Ok(fastest latency)` when at least one answers 200.
async fn probe_round(addresses: &[IpAddr], cfg: &ProbeConfig) -> Result<Duration, String> {
    if addresses.is_empty() {
        return Err("the gateway address has not resolved to any IP".into());
    }
    let results = futures::future::join_all(
        addresses
            .iter()
            .map(|ip| probe_once(*ip, cfg.port, &cfg.path, cfg.timeout)),
    )
    .await;
    let mut best: Option<Duration> = None;
    let mut errors = Vec::new();
    for r in results {
        match r {
            Ok(d) => best = Some(best.map_or(d, |b| b.min(d))),
            Err(e) => errors.push(e),
        }
    }
    best.ok_or_else(|| errors.join("; "))
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::net::TcpListener;

    #[tokio::test]
    async fn resolves_ips_and_names_sorted_and_deduplicated() {
        let entries = address_entries(" 10.0.0.2, localhost ,10.0.0.2,,10.0.0.10");
        assert_eq!(entries.len(), 4);
        let (ips, errors) = resolve(&entries).await;
        assert!(errors.is_empty(), "{errors:?}");
        assert!(ips.contains(&"10.0.0.2".parse().unwrap()));
        assert!(ips.iter().any(|ip| ip.is_loopback()));
        assert_eq!(
            ips.iter().filter(|ip| ip.to_string() == "10.0.0.2").count(),
            1
        );
        let strings: Vec<String> = ips.iter().map(|i| i.to_string()).collect();
        let mut sorted = strings.clone();
        sorted.sort();
        assert_eq!(strings, sorted);
    }

    #[tokio::test]
    async fn an_unresolvable_name_is_reported() {
        let (ips, errors) = resolve(&["no-such-host.invalid".to_string()]).await;
        assert!(ips.is_empty());
        assert_eq!(errors.len(), 1);
    }

    async fn responder(status: &'static str) -> u16 {
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = l.local_addr().unwrap().port();
        tokio::spawn(async move {
            while let Ok((mut s, _)) = l.accept().await {
                let mut buf = [0u8; 512];
                let _ = s.read(&mut buf).await;
                let _ = s
                    .write_all(format!("HTTP/1.1 {status}\r\ncontent-length: 0\r\n\r\n").as_bytes())
                    .await;
            }
        });
        port
    }

    #[tokio::test]
    async fn probe_accepts_only_200() {
        let ip: IpAddr = "127.0.0.1".parse().unwrap();
        let ok = responder("200 OK").await;
        let bad = responder("503 Service Unavailable").await;
        let t = Duration::from_secs(2);
        assert!(probe_once(ip, ok, "/ready", t).await.is_ok());
        let e = probe_once(ip, bad, "/ready", t).await.unwrap_err();
        assert!(e.contains("503"), "{e}");
    }

    #[tokio::test]
    async fn probe_times_out() {
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = l.local_addr().unwrap().port();
        let _keep = tokio::spawn(async move {
            let mut held = Vec::new();
            while let Ok((s, _)) = l.accept().await {
                held.push(s);
            }
        });
        let e = probe_once(
            "127.0.0.1".parse().unwrap(),
            port,
            "/ready",
            Duration::from_millis(200),
        )
        .await
        .unwrap_err();
        assert!(e.contains("no answer"), "{e}");
    }

    #[test]
    fn latency_window_percentiles_and_capacity() {
        let mut w = LatencyWindow::default();
        assert_eq!(w.quantile(0.5), None);
        w.record(Duration::from_millis(7));
        assert_eq!(w.quantile(0.5), Some(Duration::from_millis(7)));
        assert_eq!(w.quantile(0.99), Some(Duration::from_millis(7)));
        // 200 samples: only the last 100 (101..=200 ms) count.
        for ms in 1..=200 {
            w.record(Duration::from_millis(ms));
        }
        assert_eq!(w.quantile(0.0), Some(Duration::from_millis(101)));
        assert_eq!(w.quantile(0.5), Some(Duration::from_millis(150)));
        assert_eq!(w.quantile(0.99), Some(Duration::from_millis(199)));
        assert_eq!(w.quantile(1.0), Some(Duration::from_millis(200)));
        // One slow outlier among fast probes shows in p99, not in p50.
        let mut w = LatencyWindow::default();
        for _ in 0..99 {
            w.record(Duration::from_millis(2));
        }
        w.record(Duration::from_millis(900));
        assert_eq!(w.quantile(0.5), Some(Duration::from_millis(2)));
        assert_eq!(w.quantile(0.99), Some(Duration::from_millis(2)));
        assert_eq!(w.quantile(1.0), Some(Duration::from_millis(900)));
    }

    #[test]
    fn jitter_stays_within_ten_percent() {
        for _ in 0..100 {
            let j = jittered(Duration::from_secs(10));
            assert!(
                j >= Duration::from_secs(10) && j < Duration::from_secs(11),
                "{j:?}"
            );
        }
    }

    #[tokio::test]
    async fn goes_dead_after_threshold_and_recovers() {
        // A responder whose answer is switched by the test.
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = l.local_addr().unwrap().port();
        let (ok_tx, ok_rx) = watch::channel(true);
        tokio::spawn(async move {
            while let Ok((mut s, _)) = l.accept().await {
                let ok = *ok_rx.borrow();
                let mut buf = [0u8; 512];
                let _ = s.read(&mut buf).await;
                let status = if ok { "200 OK" } else { "503 No" };
                let _ = s
                    .write_all(format!("HTTP/1.1 {status}\r\n\r\n").as_bytes())
                    .await;
            }
        });
        let metrics = Arc::new(Metrics::new());
        let cfg = ProbeConfig {
            cluster: "east".into(),
            port,
            path: "/ready".into(),
            period: Duration::from_millis(50),
            timeout: Duration::from_secs(1),
            failure_threshold: 3,
        };
        let mut gw = start(
            vec!["127.0.0.1".into()],
            Duration::from_secs(60),
            Some(cfg),
            metrics.clone(),
        );
        assert!(gw.view.borrow().alive, "starts alive");
        ok_tx.send(false).unwrap();
        let t0 = Instant::now();
        while gw.view.borrow().alive {
            tokio::time::timeout(Duration::from_secs(5), gw.view.changed())
                .await
                .unwrap()
                .unwrap();
        }
        // Three failures at 50-55 ms each, never sooner than three periods.
        assert!(
            t0.elapsed() >= Duration::from_millis(100),
            "{:?}",
            t0.elapsed()
        );
        assert!(
            metrics
                .encode()
                .contains("gateway_alive{target_cluster_name=\"east\"} 0")
        );
        ok_tx.send(true).unwrap();
        while !gw.view.borrow().alive {
            tokio::time::timeout(Duration::from_secs(5), gw.view.changed())
                .await
                .unwrap()
                .unwrap();
        }
        assert!(gw.summary.borrow().latency.is_some());
    }
}
