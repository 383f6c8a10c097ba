//! The Prometheus metrics of the gateway and of the egress: every stage's counters, in one
//! registry per process, exported by `crate::admin`.

use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

/// Label pairs.
type Labels = Vec<(&'static str, String)>;

fn latency_histogram() -> Histogram {
    // 100 µs .. ~26 s.
    Histogram::new(exponential_buckets(0.0001, 2.0, 18))
}

/// A set of metrics the admin server serves at `/metrics`.
pub(crate) trait Exposition: Send + Sync + std::fmt::Debug {
    /// The Prometheus text exposition of every metric.
    fn encode(&self) -> String;
}

impl Exposition for Metrics {
    fn encode(&self) -> String {
        Metrics::encode(self)
    }
}

/// The leaf certificate's metrics, the same in the gateway and the egress (each under its own
/// prefix): when the leaf in service expires, and how often a new one was put in service.
#[derive(Debug, Clone, Default)]
pub struct CertMetrics {
    /// The notAfter of the leaf certificate in service, Unix seconds.
    pub(crate) expiry: Gauge,
    /// Leaf certificates put in service after the first: renewals in issuer mode, reloads of
    /// changed files in file mode.
    pub(crate) renewals: Counter,
}

impl CertMetrics {
    /// Registers `identity_certificate_expiry_timestamp_seconds` and
    /// `identity_certificate_renewals` (exposed as `_total`) into `registry`.
    fn register(&self, registry: &mut Registry) {
        registry.register(
            "identity_certificate_expiry_timestamp_seconds",
            "The notAfter of the leaf certificate in service, Unix seconds",
            self.expiry.clone(),
        );
        registry.register(
            "identity_certificate_renewals",
            "Leaf certificates put in service after the first (renewals or reloads)",
            self.renewals.clone(),
        );
    }
}

/// The allow-list's metrics ([`crate::policy`]).
///
/// Denials are labelled by `rule` (the first `services` pattern of the policy that governs the
/// target) and `client_id`. Both are bounded: rules come from the operator's policy, not from
/// the client, which could otherwise mint one series per host name it sends under a glob such
/// as `*.shop.svc.cluster.local`; client identities are bounded by the identities the trust
/// anchors issue (as in `client_connections`).
#[derive(Debug, Clone, Default)]
pub(crate) struct PolicyMetrics {
    /// Requests and connections denied, by governing rule and client identity.
    pub(crate) denials: Family<Labels, Counter>,
    /// Policies put in force after the first (changed policy files).
    pub(crate) reloads: Counter,
    /// Changed policy files that could not be read or parsed (the last good policy stays).
    pub(crate) reload_failures: Counter,
    /// Rules of the policy in force.
    pub(crate) rules: Gauge,
    /// When the policy in force was loaded, Unix seconds.
    pub(crate) last_load: Gauge,
}

impl PolicyMetrics {
    /// Registers the `policy_*` metrics into `registry`.
    fn register(&self, registry: &mut Registry) {
        registry.register(
            "policy_denials",
            "Requests and connections the policy denied, by governing rule and client identity",
            self.denials.clone(),
        );
        registry.register(
            "policy_reloads",
            "Policies put in force after the first",
            self.reloads.clone(),
        );
        registry.register(
            "policy_reload_failures",
            "Changed policy files that could not be read or parsed; the last good policy stays",
            self.reload_failures.clone(),
        );
        registry.register(
            "policy_rules",
            "Rules of the policy in force",
            self.rules.clone(),
        );
        registry.register(
            "policy_last_load_timestamp_seconds",
            "When the policy in force was loaded, Unix seconds",
            self.last_load.clone(),
        );
    }

    /// Counts one denial of `client` by the rule for `rule`.
    pub(crate) fn denied(&self, rule: &str, client: &str) {
        self.denials
            .get_or_create(&vec![
                ("rule", rule.to_owned()),
                ("client_id", client.to_owned()),
            ])
            .inc();
    }

    /// Records that a policy of `rules` rules was put in force at `at`.
    pub(crate) fn loaded(&self, rules: usize, at: std::time::SystemTime) {
        self.rules.set(i64::try_from(rules).unwrap_or(i64::MAX));
        let secs = at
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        self.last_load.set(i64::try_from(secs).unwrap_or(i64::MAX));
    }
}

/// Every metric the gateway exports. Cheap to clone handles live inside.
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    /// Connections accepted by the listener (before TLS).
    pub(crate) accepted: Counter,
    /// Connections refused, by reason (`max_connections`, `loop`, `bad_target`, ...).
    pub(crate) refused: Family<Labels, Counter>,
    /// TLS handshake failures, by reason.
    pub(crate) handshake_errors: Family<Labels, Counter>,
    /// Successful handshake latency.
    pub(crate) handshake_seconds: Histogram,
    /// Bytes received from clients.
    pub(crate) bytes_in: Counter,
    /// Bytes sent to clients.
    pub(crate) bytes_out: Counter,
    /// Connections currently open.
    pub(crate) active: Gauge,
    /// Targets that could not be served, by reason (`unknown_service`, `no_endpoints`, ...).
    pub(crate) route_errors: Family<Labels, Counter>,
    /// HTTP requests forwarded, by target and status code.
    pub(crate) http_requests: Family<Labels, Counter>,
    /// HTTP request latency (until response headers), by target.
    pub(crate) http_seconds: Family<Labels, Histogram, fn() -> Histogram>,
    /// Opaque splices (transport connections without a session protocol).
    pub(crate) opaque_splices: Counter,
    /// HTTP connections.
    pub(crate) http_streams: Counter,
    /// Authenticated connections, by client identity (one series per source cluster's egress
    /// and per meshed workload identity: bounded by the identities the trust anchor issues).
    pub(crate) client_connections: Family<Labels, Counter>,
    /// The gateway's leaf certificate: expiry and renewals.
    pub(crate) certificate: CertMetrics,
    /// The allow-list: denials, reloads, rules in force.
    pub(crate) policy: PolicyMetrics,
    /// mTLS handshakes with meshed backends.
    pub(crate) backends: crate::backend::BackendMetrics,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    /// Creates and registers all metrics under the prefix `mc_gateway`.
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("mc_gateway");
        let m = Self {
            accepted: Counter::default(),
            refused: Family::default(),
            handshake_errors: Family::default(),
            handshake_seconds: latency_histogram(),
            bytes_in: Counter::default(),
            bytes_out: Counter::default(),
            active: Gauge::default(),
            route_errors: Family::default(),
            http_requests: Family::default(),
            http_seconds: Family::new_with_constructor(latency_histogram),
            opaque_splices: Counter::default(),
            http_streams: Counter::default(),
            client_connections: Family::default(),
            certificate: CertMetrics::default(),
            policy: PolicyMetrics::default(),
            backends: Default::default(),
            registry: Registry::default(),
        };
        registry.register(
            "connections_accepted",
            "Connections accepted by the listener",
            m.accepted.clone(),
        );
        registry.register(
            "connections_refused",
            "Connections refused, by reason",
            m.refused.clone(),
        );
        registry.register(
            "tls_handshake_errors",
            "TLS handshake failures, by reason",
            m.handshake_errors.clone(),
        );
        registry.register(
            "tls_handshake_seconds",
            "Latency of successful TLS handshakes",
            m.handshake_seconds.clone(),
        );
        registry.register(
            "bytes_in",
            "Bytes received from clients",
            m.bytes_in.clone(),
        );
        registry.register("bytes_out", "Bytes sent to clients", m.bytes_out.clone());
        registry.register(
            "active_connections",
            "Connections currently open",
            m.active.clone(),
        );
        registry.register(
            "route_errors",
            "Targets refused or unresolvable, by reason",
            m.route_errors.clone(),
        );
        registry.register(
            "http_requests",
            "HTTP requests forwarded, by target and status",
            m.http_requests.clone(),
        );
        registry.register(
            "http_request_seconds",
            "HTTP request latency until response headers, by target",
            m.http_seconds.clone(),
        );
        registry.register(
            "opaque_splices",
            "Opaque splices (transport connections without a session protocol)",
            m.opaque_splices.clone(),
        );
        registry.register("http_streams", "HTTP connections", m.http_streams.clone());
        registry.register(
            "client_connections",
            "Authenticated connections, by client identity",
            m.client_connections.clone(),
        );
        m.certificate.register(&mut registry);
        m.policy.register(&mut registry);
        registry.register(
            "backend_mtls_handshakes",
            "mTLS handshakes with meshed backends, by result (ok, failed, timeout)",
            m.backends.mtls.clone(),
        );
        Self { registry, ..m }
    }

    /// Counts an HTTP connection.
    pub(crate) fn http_stream(&self) {
        self.http_streams.inc();
    }

    /// Counts an opaque splice.
    pub(crate) fn opaque_splice(&self) {
        self.opaque_splices.inc();
    }

    /// Counts an authenticated connection of `client`; `true` for its first one.
    pub(crate) fn client_connection(&self, client: &str) -> bool {
        self.client_connections
            .get_or_create(&vec![("client_id", client.to_owned())])
            .inc()
            == 0
    }

    /// Counts a refused connection.
    pub(crate) fn refuse(&self, reason: &str) {
        self.refused
            .get_or_create(&vec![("reason", reason.to_owned())])
            .inc();
    }

    /// Counts a handshake failure.
    pub(crate) fn handshake_error(&self, reason: &str) {
        self.handshake_errors
            .get_or_create(&vec![("reason", reason.to_owned())])
            .inc();
    }

    /// Counts a route failure.
    pub(crate) fn route_error(&self, reason: &str) {
        self.route_errors
            .get_or_create(&vec![("reason", reason.to_owned())])
            .inc();
    }

    /// Records one forwarded HTTP request.
    pub(crate) fn http_request(&self, target: &str, status: u16, seconds: f64) {
        self.http_requests
            .get_or_create(&vec![
                ("target", target.to_owned()),
                ("status", status.to_string()),
            ])
            .inc();
        self.http_seconds
            .get_or_create(&vec![("target", target.to_owned())])
            .observe(seconds);
    }

    /// The per-target HTTP series of `target`, as handles to record into without building
    /// labels again (see [`TargetMetrics`]).
    pub(crate) fn http_target(&self, target: &str) -> TargetMetrics {
        TargetMetrics {
            target: target.to_owned(),
            seconds: self
                .http_seconds
                .get_or_create(&vec![("target", target.to_owned())])
                .clone(),
            ok: None,
        }
    }

    /// The Prometheus text exposition of every metric.
    pub fn encode(&self) -> String {
        exposition(&self.registry)
    }
}

/// The Prometheus text exposition of `registry`.
fn exposition(registry: &Registry) -> String {
    let mut out = String::new();
    // Writing into a String cannot fail.
    let _ = encode(&mut out, registry);
    out
}

/// The metrics of `mc-gateway egress`.
#[cfg(feature = "kubernetes")]
#[derive(Debug)]
pub(crate) struct EgressMetrics {
    registry: Registry,
    /// Routes with a bound listener.
    pub(crate) routes: Gauge,
    /// Client connections accepted, by Link and target.
    pub(crate) connections: Family<Labels, Counter>,
    /// Client connections closed because no gateway address could be reached, by Link and
    /// target.
    pub(crate) connect_failures: Family<Labels, Counter>,
    /// Client connections currently open.
    pub(crate) open: Gauge,
    /// Connections of federated routes, by route target and member (cluster, or `@local`).
    pub(crate) member_connections: Family<Labels, Counter>,
    /// 1 while a federated route's member is healthy (its last connect or probe succeeded).
    pub(crate) member_healthy: Family<Labels, Gauge>,
    /// The egress's leaf certificate: expiry and renewals.
    pub(crate) certificate: CertMetrics,
}

#[cfg(feature = "kubernetes")]
impl Default for EgressMetrics {
    fn default() -> Self {
        Self::new()
    }
}

#[cfg(feature = "kubernetes")]
impl EgressMetrics {
    /// Creates and registers the metrics: `egress_routes`, `egress_connections_total`,
    /// `egress_connect_failures_total`, `egress_open_connections`,
    /// `egress_member_connections_total`, `egress_member_healthy`,
    /// `identity_certificate_expiry_timestamp_seconds` and
    /// `identity_certificate_renewals_total`.
    pub(crate) fn new() -> Self {
        let mut registry = Registry::default();
        let m = Self {
            routes: Gauge::default(),
            connections: Family::default(),
            connect_failures: Family::default(),
            open: Gauge::default(),
            member_connections: Family::default(),
            member_healthy: Family::default(),
            certificate: CertMetrics::default(),
            registry: Registry::default(),
        };
        registry.register(
            "egress_routes",
            "Routes with a bound listener",
            m.routes.clone(),
        );
        registry.register(
            "egress_connections",
            "Client connections accepted, by Link and target",
            m.connections.clone(),
        );
        registry.register(
            "egress_connect_failures",
            "Client connections closed because no gateway address could be reached",
            m.connect_failures.clone(),
        );
        registry.register(
            "egress_open_connections",
            "Client connections currently open",
            m.open.clone(),
        );
        registry.register(
            "egress_member_connections",
            "Connections of federated routes, by route target and member",
            m.member_connections.clone(),
        );
        registry.register(
            "egress_member_healthy",
            "1 while a federated route's member is healthy (last connect or probe succeeded)",
            m.member_healthy.clone(),
        );
        m.certificate.register(&mut registry);
        Self { registry, ..m }
    }

    /// The labels of a route's series.
    pub(crate) fn labels(link: &str, target: &str) -> Labels {
        vec![("link", link.to_owned()), ("target", target.to_owned())]
    }

    /// The labels of a federated route member's series.
    pub(crate) fn member_labels(target: &str, member: &str) -> Labels {
        vec![("target", target.to_owned()), ("member", member.to_owned())]
    }
}

#[cfg(feature = "kubernetes")]
impl Exposition for EgressMetrics {
    fn encode(&self) -> String {
        exposition(&self.registry)
    }
}

/// The HTTP series of one target: the latency histogram and the request counter of the last
/// status seen, kept by a connection so that a request records without formatting or hashing
/// labels (series are never removed from their families, so the handles stay exported).
#[derive(Debug, Clone)]
pub(crate) struct TargetMetrics {
    target: String,
    seconds: Histogram,
    ok: Option<(u16, Counter)>,
}

impl TargetMetrics {
    /// Records one forwarded request, like [`Metrics::http_request`].
    pub(crate) fn record(&mut self, metrics: &Metrics, status: u16, seconds: f64) {
        match &self.ok {
            Some((s, counter)) if *s == status => {
                counter.inc();
            }
            _ => {
                let counter = metrics
                    .http_requests
                    .get_or_create(&vec![
                        ("target", self.target.clone()),
                        ("status", status.to_string()),
                    ])
                    .clone();
                counter.inc();
                self.ok = Some((status, counter));
            }
        }
        self.seconds.observe(seconds);
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;

    #[test]
    fn exposition_names_and_labels() {
        let m = Metrics::new();
        m.accepted.inc();
        m.refuse("max_connections");
        m.handshake_error("no_client_cert");
        m.http_request("web.ns.svc.cluster.local:80", 200, 0.01);
        let text = m.encode();
        assert!(
            text.contains("mc_gateway_connections_accepted_total 1"),
            "{text}"
        );
        assert!(
            text.contains("mc_gateway_connections_refused_total{reason=\"max_connections\"} 1"),
            "{text}"
        );
        assert!(
            text.contains("mc_gateway_tls_handshake_errors_total{reason=\"no_client_cert\"} 1")
        );
        assert!(text.contains(
            "mc_gateway_http_requests_total{target=\"web.ns.svc.cluster.local:80\",status=\"200\"} 1"
        ));
        assert!(text.contains(
            "mc_gateway_http_request_seconds_count{target=\"web.ns.svc.cluster.local:80\"} 1"
        ));
        assert!(text.ends_with("# EOF\n"));
    }

    #[test]
    fn policy_metrics_are_exposed() {
        let m = Metrics::new();
        m.policy.denied("*.shop.svc.cluster.local", "c.id");
        m.policy
            .loaded(3, std::time::UNIX_EPOCH + std::time::Duration::from_secs(7));
        m.policy.reload_failures.inc();
        let text = m.encode();
        for series in [
            "mc_gateway_policy_denials_total{rule=\"*.shop.svc.cluster.local\",client_id=\"c.id\"} 1\n",
            "mc_gateway_policy_reloads_total 0\n",
            "mc_gateway_policy_reload_failures_total 1\n",
            "mc_gateway_policy_rules 3\n",
            "mc_gateway_policy_last_load_timestamp_seconds 7\n",
        ] {
            assert!(text.contains(series), "{series:?} in {text}");
        }
    }

    #[test]
    fn certificate_metrics_follow_each_prefix() {
        let gateway = Metrics::new();
        gateway.certificate.expiry.set(1_800_000_000);
        gateway.certificate.renewals.inc();
        let egress = EgressMetrics::new();
        egress.certificate.renewals.inc();
        let expected = [
            (
                gateway.encode(),
                "\nmc_gateway_identity_certificate_expiry_timestamp_seconds 1800000000\n",
            ),
            (
                gateway.encode(),
                "\nmc_gateway_identity_certificate_renewals_total 1\n",
            ),
            (
                Exposition::encode(&egress),
                "\nidentity_certificate_expiry_timestamp_seconds 0\n",
            ),
            (
                Exposition::encode(&egress),
                "\nidentity_certificate_renewals_total 1\n",
            ),
        ];
        for (text, series) in expected {
            assert!(text.contains(series), "{series:?} in {text}");
        }
    }

    #[test]
    fn target_handles_record_into_the_same_series() {
        let m = Metrics::new();
        let t = "web.ns.svc.cluster.local:80";
        m.http_request(t, 200, 0.01);
        let mut h = m.http_target(t);
        h.record(&m, 200, 0.02);
        h.record(&m, 503, 0.02);
        h.record(&m, 200, 0.02);
        let text = m.encode();
        let series =
            |s: &str| format!("mc_gateway_http_requests_total{{target=\"{t}\",status=\"{s}\"}}");
        assert!(text.contains(&format!("{} 3\n", series("200"))), "{text}");
        assert!(text.contains(&format!("{} 1\n", series("503"))), "{text}");
        assert!(text.contains(&format!(
            "mc_gateway_http_request_seconds_count{{target=\"{t}\"}} 4\n"
        )));
    }
}
