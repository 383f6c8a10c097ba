//! Prometheus metrics of the service mirror, served as `/metrics` by the admin server.
//!
//! The gateway metrics keep upstream Linkerd's names, types and labels (`gateway_alive`,
//! `gateway_enabled`, `gateway_latency`, `gateway_probe_latency_ms`, the counters
//! `gateway_probes{probe_successful}` and `service_mirror_endpoint_repairs`, all with
//! `target_cluster_name`, and `probe_manager_event_{enqueues,dequeues}{event_type}`), so
//! dashboards and `mc multicluster gateways` read either controller. The exposition is
//! OpenMetrics, where a counter family `gateway_probes` has the sample `gateway_probes_total`:
//! what Prometheus stores when it scrapes upstream's controller in OpenMetrics too. The `mirror_*`
//! metrics are ours.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

/// Buckets of `gateway_probe_latency_ms`, upstream's.
const PROBE_BUCKETS: [f64; 25] = [
    1.0, 2.0, 3.0, 4.0, 5.0, 10.0, 20.0, 30.0, 40.0, 50.0, 100.0, 200.0, 300.0, 400.0, 500.0,
    1000.0, 2000.0, 3000.0, 4000.0, 5000.0, 10000.0, 20000.0, 30000.0, 40000.0, 50000.0,
];

/// Label set `{target_cluster_name}`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ClusterLabels {
    /// The Link's `targetClusterName`.
    pub target_cluster_name: String,
}

/// Label set of `gateway_probes`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ProbeLabels {
    /// The Link's `targetClusterName`.
    pub target_cluster_name: String,
    /// `"true"` or `"false"`.
    pub probe_successful: String,
}

/// Label set of `probe_manager_event_{enqueues,dequeues}`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct EventLabels {
    /// `GatewayDown` or `GatewayAlive`: a change of the gateway's liveness verdict.
    pub event_type: String,
}

/// Label set of `mirror_api_writes_total`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct WriteLabels {
    /// The Link's `targetClusterName`.
    pub target_cluster_name: String,
    /// `create`, `update`, `patch` or `delete`.
    pub verb: String,
    /// `services`, `endpoints`, `namespaces`, `links/status`, `links`, `leases`, `events`.
    pub resource: String,
}

/// Label set of `mirror_api_requests_total`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RequestLabels {
    /// `source` (the cluster holding the mirrors) or `target` (a linked cluster).
    pub api: String,
    /// The Link's `targetClusterName` for `target`; empty for `source` (shared by all Links).
    pub target_cluster_name: String,
    /// `read` (get or list), `watch`, `create`, `update`, `patch` or `delete`.
    pub verb: String,
}

/// Label set of `mirror_errors_total`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ErrorLabels {
    /// The Link's `targetClusterName`.
    pub target_cluster_name: String,
    /// A stable reason, see [`crate::Error::reason`] and the condition reasons.
    pub reason: String,
}

fn probe_histogram() -> Histogram {
    Histogram::new(PROBE_BUCKETS)
}

fn duration_histogram() -> Histogram {
    Histogram::new(prometheus_client::metrics::histogram::exponential_buckets(
        0.000_5, 2.0, 16,
    ))
}

/// Every metric of the process, shared by all Link workers.
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    /// `gateway_alive{target_cluster_name}`: 1 when the gateway answers its probe.
    pub gateway_alive: Family<ClusterLabels, Gauge>,
    /// `gateway_enabled{target_cluster_name}`: 1 while a probe worker runs for the Link.
    pub gateway_enabled: Family<ClusterLabels, Gauge>,
    /// `gateway_latency{target_cluster_name}`: latency of the last successful probe, in whole
    /// milliseconds (truncated), as upstream's probe worker sets it and as upstream's
    /// `linkerd multicluster gateways` reads it (the gauge's value as an unsigned integer, its
    /// LATENCY column). Set with [`Metrics::probe_latency`].
    pub gateway_latency: Family<ClusterLabels, Gauge>,
    /// `gateway_probe_latency_ms{target_cluster_name}`: histogram of successful probe latencies,
    /// observed in whole milliseconds as upstream's (its buckets, 1 ms to 50 s).
    pub gateway_probe_latency_ms: Family<ClusterLabels, Histogram, fn() -> Histogram>,
    /// `gateway_probes{target_cluster_name, probe_successful}`: probes sent, by outcome.
    pub gateway_probes: Family<ProbeLabels, Counter>,
    /// `service_mirror_endpoint_repairs{target_cluster_name}`: passes that re-examine every
    /// mirror's Endpoints (after a change of gateway addresses or liveness, a relist, and the
    /// periodic anti-entropy pass; reads only, a write only where an Endpoints differs).
    pub endpoint_repairs: Family<ClusterLabels, Counter>,
    /// `probe_manager_event_enqueues{event_type}`: liveness changes the probe worker published.
    pub probe_event_enqueues: Family<EventLabels, Counter>,
    /// `probe_manager_event_dequeues{event_type}`: liveness changes the Link worker handled.
    pub probe_event_dequeues: Family<EventLabels, Counter>,
    /// `mirror_services{target_cluster_name}`: mirror Services currently owned for the Link.
    pub mirror_services: Family<ClusterLabels, Gauge>,
    /// `mirror_exported_services{target_cluster_name}`: exported remote Services seen.
    pub exported_services: Family<ClusterLabels, Gauge>,
    /// `mirror_reconcile_duration_seconds{target_cluster_name}`: time of one service reconcile.
    pub reconcile_duration: Family<ClusterLabels, Histogram, fn() -> Histogram>,
    /// `mirror_api_writes_total{target_cluster_name, verb, resource}`: write calls sent.
    pub api_writes: Family<WriteLabels, Counter>,
    /// `mirror_api_requests_total{api, target_cluster_name, verb}`: every HTTP request sent
    /// through a client built by [`Metrics::counted_client`] (reads, watches and writes, failed
    /// ones included).
    pub api_requests: Family<RequestLabels, Counter>,
    /// `mirror_errors_total{target_cluster_name, reason}`: failures, by reason.
    pub errors: Family<ErrorLabels, Counter>,
    /// `mirror_link_workers`: Link workers currently leading and running.
    pub workers: Gauge,
    /// `mirror_target_reachable{target_cluster_name}`: 1 while the target cluster answers with
    /// the Link's credentials, 0 while they are invalid or it is unreachable.
    pub target_reachable: Family<ClusterLabels, Gauge>,
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new()
    }
}

impl Metrics {
    /// Creates and registers every metric.
    pub fn new() -> Metrics {
        let mut registry = Registry::default();
        let m = Metrics {
            registry: Registry::default(),
            gateway_alive: Family::default(),
            gateway_enabled: Family::default(),
            gateway_latency: Family::default(),
            gateway_probe_latency_ms: Family::new_with_constructor(probe_histogram),
            gateway_probes: Family::default(),
            endpoint_repairs: Family::default(),
            probe_event_enqueues: Family::default(),
            probe_event_dequeues: Family::default(),
            mirror_services: Family::default(),
            exported_services: Family::default(),
            reconcile_duration: Family::new_with_constructor(duration_histogram),
            api_writes: Family::default(),
            api_requests: Family::default(),
            errors: Family::default(),
            workers: Gauge::default(),
            target_reachable: Family::default(),
        };
        registry.register(
            "gateway_alive",
            "1 when the Link's gateway answers its probe",
            m.gateway_alive.clone(),
        );
        registry.register(
            "gateway_enabled",
            "1 while a gateway probe worker runs for the Link",
            m.gateway_enabled.clone(),
        );
        registry.register(
            "gateway_latency",
            "Latency of the last successful gateway probe, in milliseconds",
            m.gateway_latency.clone(),
        );
        registry.register(
            "gateway_probe_latency_ms",
            "Latency of successful gateway probes, in milliseconds",
            m.gateway_probe_latency_ms.clone(),
        );
        registry.register(
            "gateway_probes",
            "Gateway probes sent, by outcome",
            m.gateway_probes.clone(),
        );
        registry.register(
            "service_mirror_endpoint_repairs",
            "Passes that re-examined every mirror's Endpoints",
            m.endpoint_repairs.clone(),
        );
        registry.register(
            "probe_manager_event_enqueues",
            "Gateway liveness changes published by the probe worker",
            m.probe_event_enqueues.clone(),
        );
        registry.register(
            "probe_manager_event_dequeues",
            "Gateway liveness changes handled by the Link worker",
            m.probe_event_dequeues.clone(),
        );
        registry.register(
            "mirror_services",
            "Mirror Services owned by the controller for the Link",
            m.mirror_services.clone(),
        );
        registry.register(
            "mirror_exported_services",
            "Exported Services seen in the target cluster",
            m.exported_services.clone(),
        );
        registry.register(
            "mirror_reconcile_duration_seconds",
            "Duration of one service reconcile",
            m.reconcile_duration.clone(),
        );
        registry.register(
            "mirror_api_writes",
            "Write calls sent to the source cluster's API server, by verb and resource",
            m.api_writes.clone(),
        );
        registry.register(
            "mirror_api_requests",
            "HTTP requests sent to the API servers (reads, watches, writes; failed ones included)",
            m.api_requests.clone(),
        );
        registry.register("mirror_errors", "Failures, by reason", m.errors.clone());
        registry.register(
            "mirror_link_workers",
            "Link workers currently leading and running",
            m.workers.clone(),
        );
        registry.register(
            "mirror_target_reachable",
            "1 while the target cluster answers with the Link's credentials",
            m.target_reachable.clone(),
        );
        Metrics { registry, ..m }
    }

    /// The metrics in the Prometheus/OpenMetrics text format.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        // Writing to a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }

    /// Records one successful probe of `labels`' gateway: `gateway_latency` and an observation
    /// of `gateway_probe_latency_ms`, both in whole milliseconds
    /// ([`mc_core::link::latency_ms`], the figure of the Link's `status.gateway.latencyMs`).
    pub fn probe_latency(&self, labels: &ClusterLabels, latency: std::time::Duration) {
        let ms = mc_core::link::latency_ms(latency);
        self.gateway_latency
            .get_or_create(labels)
            .set(i64::try_from(ms).unwrap_or(i64::MAX));
        // Whole milliseconds far below 2^53: exact as f64.
        #[allow(clippy::cast_precision_loss)]
        self.gateway_probe_latency_ms
            .get_or_create(labels)
            .observe(ms as f64);
    }

    /// Counts one write call.
    pub fn write(&self, cluster: &str, verb: &str, resource: &str) {
        self.api_writes
            .get_or_create(&WriteLabels {
                target_cluster_name: cluster.to_string(),
                verb: verb.to_string(),
                resource: resource.to_string(),
            })
            .inc();
    }

    /// Counts one failure.
    pub fn error(&self, cluster: &str, reason: &str) {
        self.errors
            .get_or_create(&ErrorLabels {
                target_cluster_name: cluster.to_string(),
                reason: reason.to_string(),
            })
            .inc();
    }

    /// Total write calls for `cluster` on `resource` (every verb); `None` for every resource.
    pub fn writes(&self, cluster: &str, resource: Option<&str>) -> u64 {
        let verbs = ["create", "update", "patch", "delete"];
        let resources = [
            "services",
            "endpoints",
            "namespaces",
            "links/status",
            "links",
            "leases",
            "events",
        ];
        let mut total = 0;
        for verb in verbs {
            for r in resources {
                if resource.is_some_and(|want| want != r) {
                    continue;
                }
                let labels = WriteLabels {
                    target_cluster_name: cluster.to_string(),
                    verb: verb.to_string(),
                    resource: r.to_string(),
                };
                // Reading an absent series must not create it.
                total += self.api_writes.get(&labels).map_or(0, |c| c.get());
            }
        }
        total
    }

    /// A client for `config` whose requests are counted in `mirror_api_requests_total` with
    /// `api` (`source` or `target`) and `target_cluster_name`.
    pub fn counted_client(
        &self,
        config: kube::Config,
        api: &str,
        target_cluster_name: &str,
    ) -> Result<kube::Client, kube::Error> {
        let layer = CountRequests {
            family: self.api_requests.clone(),
            api: api.to_string(),
            target_cluster_name: target_cluster_name.to_string(),
        };
        Ok(kube::client::ClientBuilder::try_from(config)?
            .with_layer(&layer)
            .build())
    }

    /// Total requests counted for `api` and `target_cluster_name` with `verb` (every verb when
    /// `None`).
    pub fn requests(&self, api: &str, target_cluster_name: &str, verb: Option<&str>) -> u64 {
        [
            "read", "watch", "create", "update", "patch", "delete", "other",
        ]
        .into_iter()
        .filter(|v| verb.is_none_or(|want| want == *v))
        .map(|v| {
            let labels = RequestLabels {
                api: api.to_string(),
                target_cluster_name: target_cluster_name.to_string(),
                verb: v.to_string(),
            };
            self.api_requests.get(&labels).map_or(0, |c| c.get())
        })
        .sum()
    }

    /// The cluster label set.
    pub fn cluster(cluster: &str) -> ClusterLabels {
        ClusterLabels {
            target_cluster_name: cluster.to_string(),
        }
    }

    /// Removes the per-Link gateway series when the Link's worker stops.
    pub fn forget_gateway(&self, cluster: &str) {
        let labels = Metrics::cluster(cluster);
        self.gateway_alive.remove(&labels);
        self.gateway_enabled.remove(&labels);
        self.gateway_latency.remove(&labels);
        self.gateway_probe_latency_ms.remove(&labels);
        self.target_reachable.remove(&labels);
        self.mirror_services.remove(&labels);
        self.exported_services.remove(&labels);
        self.endpoint_repairs.remove(&labels);
        for ok in ["true", "false"] {
            self.gateway_probes.remove(&ProbeLabels {
                target_cluster_name: cluster.to_string(),
                probe_successful: ok.to_string(),
            });
        }
    }
}

/// The verb of a Kubernetes API request, from its method and query.
fn verb_of<B>(req: &http::Request<B>) -> &'static str {
    let watch = req
        .uri()
        .query()
        .is_some_and(|q| q.split('&').any(|kv| kv == "watch=true" || kv == "watch=1"));
    match *req.method() {
        http::Method::GET if watch => "watch",
        http::Method::GET | http::Method::HEAD => "read",
        http::Method::POST => "create",
        http::Method::PUT => "update",
        http::Method::PATCH => "patch",
        http::Method::DELETE => "delete",
        _ => "other",
    }
}

/// A client layer that counts each request in `mirror_api_requests_total`.
#[derive(Clone)]
struct CountRequests {
    family: Family<RequestLabels, Counter>,
    api: String,
    target_cluster_name: String,
}

impl<S> tower_layer::Layer<S> for CountRequests {
    type Service = Counted<S>;

    fn layer(&self, inner: S) -> Counted<S> {
        Counted {
            inner,
            counter: self.clone(),
        }
    }
}

/// The service [`CountRequests`] wraps around the client's stack.
#[derive(Clone)]
struct Counted<S> {
    inner: S,
    counter: CountRequests,
}

impl<S, B> tower_service::Service<http::Request<B>> for Counted<S>
where
    S: tower_service::Service<http::Request<B>>,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = S::Future;

    fn poll_ready(
        &mut self,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: http::Request<B>) -> Self::Future {
        let c = &self.counter;
        c.family
            .get_or_create(&RequestLabels {
                api: c.api.clone(),
                target_cluster_name: c.target_cluster_name.clone(),
                verb: verb_of(&req).to_string(),
            })
            .inc();
        self.inner.call(req)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Upstream's `linkerd multicluster gateways` takes `gateway_latency` (a gauge labelled
    /// `target_cluster_name`) as a whole number of milliseconds; upstream's probe worker sets it
    /// and observes `gateway_probe_latency_ms` in whole milliseconds. A 4.9 ms probe is 4, as
    /// upstream and as the Link status; the text is what upstream's controller exports.
    #[test]
    fn probe_latency_is_exported_in_whole_milliseconds_as_upstream() {
        let m = Metrics::new();
        let east = Metrics::cluster("east");
        m.probe_latency(&east, std::time::Duration::from_micros(4_900));
        let text = m.encode();
        assert!(text.contains("# TYPE gateway_latency gauge\n"), "{text}");
        assert!(
            text.contains("\ngateway_latency{target_cluster_name=\"east\"} 4\n"),
            "{text}"
        );
        assert!(
            text.contains("# TYPE gateway_probe_latency_ms histogram\n"),
            "{text}"
        );
        for line in [
            "gateway_probe_latency_ms_sum{target_cluster_name=\"east\"} 4.0",
            "gateway_probe_latency_ms_count{target_cluster_name=\"east\"} 1",
            "gateway_probe_latency_ms_bucket{le=\"4.0\",target_cluster_name=\"east\"} 1",
            "gateway_probe_latency_ms_bucket{le=\"3.0\",target_cluster_name=\"east\"} 0",
        ] {
            assert!(text.contains(line), "{line} not in {text}");
        }
        // The last probe sets the gauge; a sub-millisecond probe is 0 ms, as upstream.
        m.probe_latency(&east, std::time::Duration::from_micros(12_300));
        assert!(
            m.encode()
                .contains("\ngateway_latency{target_cluster_name=\"east\"} 12\n")
        );
        m.probe_latency(&east, std::time::Duration::from_micros(700));
        assert!(
            m.encode()
                .contains("\ngateway_latency{target_cluster_name=\"east\"} 0\n")
        );
    }

    #[test]
    fn upstream_names_are_kept() {
        let m = Metrics::new();
        let c = "east";
        m.gateway_alive.get_or_create(&Metrics::cluster(c)).set(1);
        m.gateway_probes
            .get_or_create(&ProbeLabels {
                target_cluster_name: c.into(),
                probe_successful: "true".into(),
            })
            .inc();
        m.gateway_probe_latency_ms
            .get_or_create(&Metrics::cluster(c))
            .observe(3.0);
        let text = m.encode();
        assert!(
            text.contains("gateway_alive{target_cluster_name=\"east\"} 1"),
            "{text}"
        );
        assert!(text.contains("# TYPE gateway_probes counter"), "{text}");
        assert!(
            text.contains(
                "gateway_probes_total{target_cluster_name=\"east\",probe_successful=\"true\"} 1"
            ),
            "{text}"
        );
        m.endpoint_repairs.get_or_create(&Metrics::cluster(c)).inc();
        m.probe_event_enqueues
            .get_or_create(&EventLabels {
                event_type: "GatewayDown".into(),
            })
            .inc();
        let text = m.encode();
        assert!(
            text.contains("# TYPE service_mirror_endpoint_repairs counter"),
            "{text}"
        );
        assert!(
            text.contains("service_mirror_endpoint_repairs_total{target_cluster_name=\"east\"} 1"),
            "{text}"
        );
        assert!(
            text.contains("probe_manager_event_enqueues_total{event_type=\"GatewayDown\"} 1"),
            "{text}"
        );
        assert!(text.contains("gateway_probe_latency_ms_bucket"), "{text}");
    }

    #[test]
    fn request_verbs_come_from_method_and_query() {
        let req = |m: &str, uri: &str| {
            http::Request::builder()
                .method(m)
                .uri(uri)
                .body(())
                .unwrap()
        };
        assert_eq!(
            verb_of(&req("GET", "/api/v1/services?labelSelector=a")),
            "read"
        );
        assert_eq!(
            verb_of(&req("GET", "/api/v1/services?watch=true&resourceVersion=1")),
            "watch"
        );
        assert_eq!(
            verb_of(&req("POST", "/api/v1/namespaces/a/services")),
            "create"
        );
        assert_eq!(
            verb_of(&req("PUT", "/api/v1/namespaces/a/services/b")),
            "update"
        );
        assert_eq!(verb_of(&req("PATCH", "/apis/x/v1/links/l/status")), "patch");
        assert_eq!(
            verb_of(&req("DELETE", "/api/v1/namespaces/a/services/b")),
            "delete"
        );
    }

    #[tokio::test]
    async fn a_counted_client_counts_each_request() {
        use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        tokio::spawn(async move {
            while let Ok((mut s, _)) = listener.accept().await {
                tokio::spawn(async move {
                    let mut buf = vec![0u8; 4096];
                    let _ = s.read(&mut buf).await;
                    let body = r#"{"major":"1","minor":"35","gitVersion":"v1.35.4","gitCommit":"","gitTreeState":"","buildDate":"","goVersion":"","compiler":"","platform":""}"#;
                    let head = format!(
                        "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n",
                        body.len()
                    );
                    let _ = s.write_all(head.as_bytes()).await;
                    let _ = s.write_all(body.as_bytes()).await;
                });
            }
        });
        let m = Metrics::new();
        let config = kube::Config::new(format!("http://127.0.0.1:{port}").parse().unwrap());
        let client = m.counted_client(config, "target", "east").unwrap();
        client.apiserver_version().await.unwrap();
        client.apiserver_version().await.unwrap();
        assert_eq!(m.requests("target", "east", Some("read")), 2);
        assert_eq!(m.requests("target", "east", None), 2);
        assert_eq!(m.requests("source", "", None), 0);
        assert!(
            m.encode().contains(
                "mirror_api_requests_total{api=\"target\",target_cluster_name=\"east\",verb=\"read\"} 2"
            ),
            "{}",
            m.encode()
        );
    }

    #[test]
    fn writes_are_counted_per_resource() {
        let m = Metrics::new();
        m.write("east", "create", "services");
        m.write("east", "update", "endpoints");
        m.write("west", "create", "services");
        assert_eq!(m.writes("east", None), 2);
        assert_eq!(m.writes("east", Some("services")), 1);
        assert_eq!(m.writes("nowhere", None), 0);
        assert!(m.encode().contains("mirror_api_writes_total{"));
    }
}
