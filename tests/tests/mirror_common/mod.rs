//! Shared fixture of the mirror e2e tests: RBAC-limited identities in both clusters, a
//! ServiceAccount token in the credentials Secret, a Link, a fake gateway on a test host, and the
//! controller running in-process.
#![allow(
    dead_code,
    unreachable_pub,
    missing_docs,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic
)]

use std::collections::BTreeMap;
use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::{
    EndpointAddress, EndpointPort, EndpointSubset, Endpoints, Namespace, Secret, Service,
    ServicePort, ServiceSpec,
};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::Client;
use kube::api::{Api, DeleteParams, ObjectMeta, Patch, PatchParams, PostParams};
use mc_core::link::{Link, LinkSpec, ProbeSpec};
use mc_mirror::metrics::Metrics;
use mc_mirror::{Controller, Options};
use mc_tests::Testbed;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

pub const EXPORTED: &str = "mirror.linkerd.io/exported";
pub const GATEWAY_PORT: u16 = 4143;
/// Label that scopes a remote Service to one test's Link (tests share the target cluster).
pub const SCOPE: &str = "mc-test";

/// A unique short name (DNS label) for this process and call.
pub fn unique(prefix: &str) -> String {
    static N: AtomicU64 = AtomicU64::new(0);
    format!(
        "{prefix}{}x{}",
        std::process::id() % 100_000,
        N.fetch_add(1, Ordering::Relaxed)
    )
}

/// A fake gateway: answers `GET /ready` with 200 while `ok` is set, 503 otherwise.
pub struct FakeGateway {
    pub ip: IpAddr,
    pub port: u16,
    ok: Arc<AtomicBool>,
    pub probes: Arc<AtomicU64>,
    task: tokio::task::JoinHandle<()>,
}

impl FakeGateway {
    pub async fn start(host: u8) -> FakeGateway {
        let ip = mc_tests::test_host(host).expect("run under scripts/in-netns");
        let listener = tokio::net::TcpListener::bind(SocketAddr::new(ip, 0))
            .await
            .unwrap();
        let port = listener.local_addr().unwrap().port();
        let ok = Arc::new(AtomicBool::new(true));
        let probes = Arc::new(AtomicU64::new(0));
        let (ok2, probes2) = (ok.clone(), probes.clone());
        let task = tokio::spawn(async move {
            while let Ok((mut s, _)) = listener.accept().await {
                let ok = ok2.load(Ordering::SeqCst);
                probes2.fetch_add(1, Ordering::SeqCst);
                tokio::spawn(async move {
                    let mut buf = [0u8; 1024];
                    let n = s.read(&mut buf).await.unwrap_or(0);
                    let req = String::from_utf8_lossy(&buf[..n]);
                    let status = if ok && req.starts_with("GET /ready ") {
                        "200 OK"
                    } else {
                        "503 Service Unavailable"
                    };
                    let _ = s
                        .write_all(
                            format!("HTTP/1.1 {status}\r\ncontent-length: 0\r\nconnection: close\r\n\r\n")
                                .as_bytes(),
                        )
                        .await;
                });
            }
        });
        FakeGateway {
            ip,
            port,
            ok,
            probes,
            task,
        }
    }

    pub fn set_ready(&self, ready: bool) {
        self.ok.store(ready, Ordering::SeqCst);
    }
}

impl Drop for FakeGateway {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Polls `f` until it returns `Some`, or fails after `within` with `what`.
pub async fn eventually<T, F, Fut>(what: &str, within: Duration, mut f: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let start = Instant::now();
    loop {
        if let Some(v) = f().await {
            return v;
        }
        assert!(
            start.elapsed() < within,
            "timed out after {within:?} waiting for: {what}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn kubectl_ok(bed: &Testbed, ctx: &str, args: &[&str]) -> String {
    let out = bed.kubectl(ctx).args(args).output().unwrap();
    assert!(
        out.status.success(),
        "kubectl {args:?}: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

async fn create_or_ignore<K>(api: &Api<K>, obj: &K)
where
    K: kube::Resource + Clone + serde::Serialize + serde::de::DeserializeOwned + std::fmt::Debug,
{
    match api.create(&PostParams::default(), obj).await {
        Ok(_) => {}
        Err(kube::Error::Api(s)) if s.code == 409 => {}
        Err(e) => panic!("create {:?}: {e}", obj.meta().name),
    }
}

pub fn meta(ns: Option<&str>, name: &str) -> ObjectMeta {
    ObjectMeta {
        name: Some(name.to_string()),
        namespace: ns.map(str::to_string),
        ..ObjectMeta::default()
    }
}

pub async fn ensure_namespace(client: &Client, ns: &str) {
    let api: Api<Namespace> = Api::all(client.clone());
    create_or_ignore(
        &api,
        &Namespace {
            metadata: meta(None, ns),
            ..Namespace::default()
        },
    )
    .await;
}

/// Installs the Link CRD in `client`'s cluster (once) and waits until it is served.
pub async fn install_crd(client: &Client) {
    let api: Api<CustomResourceDefinition> = Api::all(client.clone());
    let crd: CustomResourceDefinition =
        serde_json::from_value(serde_json::to_value(mc_core::link::crd()).unwrap()).unwrap();
    create_or_ignore(&api, &crd).await;
    eventually(
        "the Link CRD is served",
        Duration::from_secs(30),
        || async {
            let links: Api<Link> = Api::all(client.clone());
            links.list(&Default::default()).await.ok()
        },
    )
    .await;
}

/// Applies YAML with kubectl (admin).
pub fn apply(bed: &Testbed, ctx: &str, yaml: &str) {
    let out = bed.apply(ctx, yaml).unwrap();
    assert!(
        out.status.success(),
        "kubectl apply: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The RBAC of docs/mirror.md for the controller in the source cluster.
pub fn source_rbac(user: &str, links_ns: &str, secret: &str, create_namespaces: bool) -> String {
    let ns_verbs = if create_namespaces {
        r#"["get", "list", "watch", "create"]"#
    } else {
        r#"["get", "list", "watch"]"#
    };
    format!(
        r#"
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRole
metadata: {{name: {user}-local}}
rules:
- apiGroups: [""]
  resources: ["services", "endpoints"]
  verbs: ["get", "list", "watch", "create", "update", "delete"]
- apiGroups: [""]
  resources: ["namespaces"]
  verbs: {ns_verbs}
- apiGroups: ["gateway.networking.k8s.io"]
  resources: ["httproutes"]
  verbs: ["get", "list", "watch"]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRoleBinding
metadata: {{name: {user}-local}}
roleRef: {{apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: {user}-local}}
subjects: [{{kind: User, name: {user}, apiGroup: rbac.authorization.k8s.io}}]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: Role
metadata: {{name: {user}-links, namespace: {links_ns}}}
rules:
- apiGroups: ["multicluster.linkerd.io"]
  resources: ["links"]
  verbs: ["get", "list", "watch", "patch"]
- apiGroups: ["multicluster.linkerd.io"]
  resources: ["links/status"]
  verbs: ["patch"]
- apiGroups: [""]
  resources: ["secrets"]
  resourceNames: ["{secret}"]
  verbs: ["get", "list", "watch"]
- apiGroups: ["coordination.k8s.io"]
  resources: ["leases"]
  verbs: ["get", "create", "update"]
- apiGroups: [""]
  resources: ["configmaps"]
  resourceNames: ["mc-egress-routes"]
  verbs: ["get", "list", "watch", "update"]
- apiGroups: [""]
  resources: ["configmaps"]
  verbs: ["create"]
- apiGroups: ["events.k8s.io"]
  resources: ["events"]
  verbs: ["create", "patch"]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: RoleBinding
metadata: {{name: {user}-links, namespace: {links_ns}}}
roleRef: {{apiGroup: rbac.authorization.k8s.io, kind: Role, name: {user}-links}}
subjects: [{{kind: User, name: {user}, apiGroup: rbac.authorization.k8s.io}}]
"#
    )
}

/// The RBAC of docs/mirror.md for the remote-access identity in the target cluster.
pub fn target_rbac(sa: &str, sa_ns: &str) -> String {
    format!(
        r#"
apiVersion: v1
kind: ServiceAccount
metadata: {{name: {sa}, namespace: {sa_ns}}}
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRole
metadata: {{name: {sa}-remote-access}}
rules:
- apiGroups: [""]
  resources: ["services", "endpoints"]
  verbs: ["list", "watch"]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRoleBinding
metadata: {{name: {sa}-remote-access}}
roleRef: {{apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: {sa}-remote-access}}
subjects: [{{kind: ServiceAccount, name: {sa}, namespace: {sa_ns}}}]
"#
    )
}

/// A running controller.
pub struct Running {
    pub metrics: Arc<Metrics>,
    stop: tokio::sync::oneshot::Sender<()>,
    task: tokio::task::JoinHandle<mc_mirror::Result<()>>,
}

/// One Link between east (target) and west (source), with everything it needs.
pub struct Fixture {
    pub bed: &'static Testbed,
    /// Link name = target cluster name.
    pub cluster: String,
    /// Namespace of the Link, Secret and lease in west.
    pub links_ns: String,
    /// Namespace of the ServiceAccount in east.
    pub sa_ns: String,
    pub sa: String,
    pub east: Client,
    pub west: Client,
    /// The controller's (non-admin) kubeconfig for west.
    pub controller_kubeconfig: PathBuf,
    pub gateway: FakeGateway,
    pub options: Options,
    pub running: Option<Running>,
}

impl Fixture {
    /// Sets everything up (the Link is created, the controller is not started).
    pub async fn new(bed: &'static Testbed, tag: &str, create_namespaces: bool) -> Fixture {
        let cluster = unique(tag);
        let links_ns = format!("mc-{cluster}");
        let sa_ns = format!("sa-{cluster}");
        let sa = format!("remote-{cluster}");
        let east = bed.client("east").await.unwrap();
        let west = bed.client("west").await.unwrap();
        install_crd(&west).await;
        ensure_namespace(&west, &links_ns).await;
        ensure_namespace(&east, &sa_ns).await;
        let user = format!("mirror-{cluster}");
        let secret = format!("cluster-credentials-{cluster}");
        apply(
            bed,
            "west",
            &source_rbac(&user, &links_ns, &secret, create_namespaces),
        );
        apply(bed, "east", &target_rbac(&sa, &sa_ns));
        let controller_kubeconfig = bed.user_kubeconfig("west", &user, &[]).unwrap();
        let gateway = FakeGateway::start(1).await;
        let mut options = Options::new(links_ns.clone(), format!("test-{cluster}"));
        options.links = vec![cluster.clone()];
        options.create_namespaces = create_namespaces;
        options.recheck_period = Duration::from_secs(2);
        options.lease.retry_period = Duration::from_millis(500);
        let f = Fixture {
            bed,
            cluster,
            links_ns,
            sa_ns,
            sa,
            east,
            west,
            controller_kubeconfig,
            gateway,
            options,
            running: None,
        };
        f.write_credentials().await;
        f.create_link(f.link_spec()).await;
        f
    }

    /// A fixture plus an application namespace `ns` in both clusters (or only in east).
    pub async fn with_namespace(
        bed: &'static Testbed,
        tag: &str,
        in_west: bool,
        create_namespaces: bool,
    ) -> (Fixture, String) {
        let f = Fixture::new(bed, tag, create_namespaces).await;
        let ns = unique(&format!("{tag}a"));
        ensure_namespace(&f.east, &ns).await;
        if in_west {
            ensure_namespace(&f.west, &ns).await;
        }
        (f, ns)
    }

    /// Exports `ns/name` with the default label, one port `http: 80` and one ready address.
    pub async fn export(&self, ns: &str, name: &str) {
        self.remote_service(
            ns,
            name,
            &[(EXPORTED, "true")],
            &[("http", 80)],
            &["10.1.0.5"],
        )
        .await;
    }

    pub fn secret_name(&self) -> String {
        format!("cluster-credentials-{}", self.cluster)
    }

    /// Garbage instead of a kubeconfig in the credentials Secret.
    pub async fn break_credentials(&self) {
        self.set_kubeconfig("not: [a kubeconfig").await;
    }

    /// `kubeconfig` as the credentials Secret's kubeconfig.
    pub async fn set_kubeconfig(&self, kubeconfig: &str) {
        let secrets: kube::Api<k8s_openapi::api::core::v1::Secret> =
            kube::Api::namespaced(self.west.clone(), &self.links_ns);
        secrets
            .patch(
                &self.secret_name(),
                &kube::api::PatchParams::default(),
                &kube::api::Patch::Merge(
                    serde_json::json!({"stringData": {"kubeconfig": kubeconfig}}),
                ),
            )
            .await
            .unwrap();
    }

    /// A fresh token of the remote-access ServiceAccount, as a kubeconfig, in the Secret.
    pub async fn write_credentials(&self) {
        let token = kubectl_ok(
            self.bed,
            "east",
            &[
                "create",
                "token",
                &self.sa,
                "-n",
                &self.sa_ns,
                "--duration=1h",
            ],
        );
        let path = self
            .bed
            .token_kubeconfig("east", &unique("tok"), token.trim())
            .unwrap();
        let kubeconfig = std::fs::read(path).unwrap();
        let secret = Secret {
            metadata: meta(Some(&self.links_ns), &self.secret_name()),
            type_: Some("mirror.linkerd.io/remote-kubeconfig".into()),
            data: Some(BTreeMap::from([(
                "kubeconfig".to_string(),
                ByteString(kubeconfig),
            )])),
            ..Secret::default()
        };
        let api: Api<Secret> = Api::namespaced(self.west.clone(), &self.links_ns);
        api.patch(
            &self.secret_name(),
            &PatchParams::apply("mc-tests").force(),
            &Patch::Apply(&secret),
        )
        .await
        .unwrap();
    }

    pub fn link_spec(&self) -> LinkSpec {
        LinkSpec {
            target_cluster_name: Some(self.cluster.clone()),
            target_cluster_domain: Some("cluster.local".into()),
            cluster_credentials_secret: Some(self.secret_name()),
            gateway_address: Some(self.gateway.ip.to_string()),
            gateway_port: Some(GATEWAY_PORT.to_string()),
            gateway_identity: Some(
                "linkerd-gateway.linkerd-multicluster.serviceaccount.identity.linkerd.cluster.local"
                    .into(),
            ),
            probe_spec: Some(ProbeSpec {
                path: Some("/ready".into()),
                port: Some(self.gateway.port.to_string()),
                period: Some("1s".into()),
                timeout: Some("1s".into()),
                failure_threshold: Some("3".into()),
            }),
            selector: Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector {
                match_labels: Some(BTreeMap::from([
                    (EXPORTED.to_string(), "true".to_string()),
                    (SCOPE.to_string(), self.cluster.clone()),
                ])),
                ..Default::default()
            }),
            remote_discovery_selector: Some(
                k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector {
                    match_labels: Some(BTreeMap::from([
                        (EXPORTED.to_string(), "remote-discovery".to_string()),
                        (SCOPE.to_string(), self.cluster.clone()),
                    ])),
                    ..Default::default()
                },
            ),
            ..LinkSpec::default()
        }
    }

    pub fn links(&self) -> Api<Link> {
        Api::namespaced(self.west.clone(), &self.links_ns)
    }

    pub async fn create_link(&self, spec: LinkSpec) {
        let link = Link::new(&self.cluster, &self.links_ns, spec);
        self.links()
            .create(&PostParams::default(), &link)
            .await
            .unwrap();
    }

    pub async fn link(&self) -> Link {
        self.links().get(&self.cluster).await.unwrap()
    }

    /// Starts the controller in-process, as the RBAC-limited identity.
    pub async fn start(&mut self) -> Arc<Metrics> {
        assert!(self.running.is_none());
        let client = self
            .bed
            .client_for(&self.controller_kubeconfig, "west")
            .await
            .unwrap();
        let controller = Controller::new(client, self.options.clone());
        let metrics = controller.metrics();
        let (stop, rx) = tokio::sync::oneshot::channel::<()>();
        let task = tokio::spawn(controller.run(async move {
            let _ = rx.await;
        }));
        self.running = Some(Running {
            metrics: metrics.clone(),
            stop,
            task,
        });
        metrics
    }

    /// Stops the controller (it releases its lease).
    pub async fn stop(&mut self) {
        if let Some(r) = self.running.take() {
            let _ = r.stop.send(());
            tokio::time::timeout(Duration::from_secs(30), r.task)
                .await
                .expect("controller stops within 30 s")
                .unwrap()
                .unwrap();
        }
    }

    pub fn metrics(&self) -> Arc<Metrics> {
        self.running.as_ref().unwrap().metrics.clone()
    }

    /// Mirror writes (services + endpoints + namespaces) counted by the running controller.
    pub fn mirror_writes(&self) -> u64 {
        let m = self.metrics();
        ["services", "endpoints", "namespaces"]
            .iter()
            .map(|r| m.writes(&self.cluster, Some(r)))
            .sum()
    }

    pub fn mirror_name(&self, svc: &str) -> String {
        format!("{svc}-{}", self.cluster)
    }

    pub fn services(&self, client: &Client, ns: &str) -> Api<Service> {
        Api::namespaced(client.clone(), ns)
    }

    pub fn endpoints(&self, client: &Client, ns: &str) -> Api<Endpoints> {
        Api::namespaced(client.clone(), ns)
    }

    /// Creates (or replaces) a remote Service with `labels` and `ports`, and its Endpoints with
    /// the same labels (as the endpoints controller copies them) and `ready` addresses.
    pub async fn remote_service(
        &self,
        ns: &str,
        name: &str,
        labels: &[(&str, &str)],
        ports: &[(&str, i32)],
        ready: &[&str],
    ) {
        let labels = self.remote_service_only(ns, name, labels, ports).await;
        self.remote_endpoints(ns, name, &labels, ports, ready).await;
    }

    /// Creates (or replaces) a selector-less remote Service with `labels` (plus the test's
    /// scope label) and `ports`, and no Endpoints; returns its labels.
    pub async fn remote_service_only(
        &self,
        ns: &str,
        name: &str,
        labels: &[(&str, &str)],
        ports: &[(&str, i32)],
    ) -> BTreeMap<String, String> {
        let mut labels: BTreeMap<String, String> = labels
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        labels.insert(SCOPE.to_string(), self.cluster.clone());
        let svc = Service {
            metadata: ObjectMeta {
                labels: Some(labels.clone()),
                ..meta(Some(ns), name)
            },
            spec: Some(ServiceSpec {
                ports: Some(
                    ports
                        .iter()
                        .map(|(n, p)| ServicePort {
                            name: Some(n.to_string()),
                            port: *p,
                            ..ServicePort::default()
                        })
                        .collect(),
                ),
                ..ServiceSpec::default()
            }),
            ..Service::default()
        };
        let pp = PatchParams::apply("mc-tests").force();
        self.services(&self.east, ns)
            .patch(name, &pp, &Patch::Apply(&svc))
            .await
            .unwrap();
        labels
    }

    pub async fn remote_endpoints(
        &self,
        ns: &str,
        name: &str,
        labels: &BTreeMap<String, String>,
        ports: &[(&str, i32)],
        ready: &[&str],
    ) {
        let ep = Endpoints {
            metadata: ObjectMeta {
                labels: Some(labels.clone()),
                ..meta(Some(ns), name)
            },
            subsets: (!ready.is_empty()).then(|| {
                vec![EndpointSubset {
                    addresses: Some(
                        ready
                            .iter()
                            .map(|ip| EndpointAddress {
                                ip: ip.to_string(),
                                ..EndpointAddress::default()
                            })
                            .collect(),
                    ),
                    ports: Some(
                        ports
                            .iter()
                            .map(|(n, p)| EndpointPort {
                                name: Some(n.to_string()),
                                port: *p,
                                ..EndpointPort::default()
                            })
                            .collect(),
                    ),
                    ..EndpointSubset::default()
                }]
            }),
        };
        let api = self.endpoints(&self.east, ns);
        // Replace wholesale (subsets may go away).
        let _ = api.delete(name, &DeleteParams::default()).await;
        api.create(&PostParams::default(), &ep).await.unwrap();
    }

    /// The mirror Service in west, if present.
    pub async fn mirror(&self, ns: &str, svc: &str) -> Option<Service> {
        self.services(&self.west, ns)
            .get_opt(&self.mirror_name(svc))
            .await
            .unwrap()
    }

    pub async fn mirror_endpoints(&self, ns: &str, svc: &str) -> Option<Endpoints> {
        self.endpoints(&self.west, ns)
            .get_opt(&self.mirror_name(svc))
            .await
            .unwrap()
    }

    /// The `Mirrored` condition of remote `ns/name` in the Link status: (status, reason, message).
    pub async fn condition(&self, ns: &str, name: &str) -> Option<(String, String, String)> {
        let link = self.link().await;
        let status = link.status?;
        let entry = status
            .mirror_services
            .iter()
            .find(|s| s.remote_ref.namespace == ns && s.remote_ref.name == name)?;
        let c = entry.conditions.first()?;
        Some((c.status.clone(), c.reason.clone(), c.message.clone()))
    }

    /// Waits until the condition of remote `ns/name` has `reason`; returns (status, message).
    pub async fn wait_condition(&self, ns: &str, name: &str, reason: &str) -> (String, String) {
        let what = format!("{ns}/{name} condition {reason}");
        eventually(&what, Duration::from_secs(30), || async {
            let (status, r, message) = self.condition(ns, name).await?;
            (r == reason).then_some((status, message))
        })
        .await
    }

    /// Waits for the mirror's Endpoints to have exactly `ready` and `not_ready` gateway IPs.
    pub async fn wait_endpoints(
        &self,
        ns: &str,
        svc: &str,
        ready: bool,
        within: Duration,
    ) -> Endpoints {
        let gw = self.gateway.ip.to_string();
        eventually(
            &format!("mirror endpoints of {ns}/{svc} ready={ready}"),
            within,
            || async {
                let ep = self.mirror_endpoints(ns, svc).await?;
                let subset = ep.subsets.as_ref()?.first()?.clone();
                let (a, n) = (
                    subset.addresses.unwrap_or_default(),
                    subset.not_ready_addresses.unwrap_or_default(),
                );
                let want = |v: &Vec<EndpointAddress>| v.len() == 1 && v[0].ip == gw;
                let ok = if ready {
                    want(&a) && n.is_empty()
                } else {
                    want(&n) && a.is_empty()
                };
                ok.then_some(ep)
            },
        )
        .await
    }
}

impl Drop for Fixture {
    fn drop(&mut self) {
        if let Some(r) = self.running.take() {
            r.task.abort();
        }
    }
}

/// Installs Gateway API's real HTTPRoute CRD (fetched by `make setup`) into the cluster of
/// `client` with server-side apply (idempotent across tests) and waits until it is served.
pub async fn install_httproute_crd(client: &Client) {
    let path = mc_tests::httproute_crd().unwrap();
    let crd: CustomResourceDefinition =
        serde_yaml::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    let name = crd.metadata.name.clone().unwrap();
    let api: Api<CustomResourceDefinition> = Api::all(client.clone());
    api.patch(
        &name,
        &PatchParams::apply("mc-test").force(),
        &Patch::Apply(&crd),
    )
    .await
    .unwrap();
    eventually(
        "the HTTPRoute CRD is established",
        Duration::from_secs(60),
        || async {
            let c = api.get_opt(&name).await.ok()??;
            c.status?
                .conditions?
                .iter()
                .any(|c| c.type_ == "Established" && c.status == "True")
                .then_some(())
        },
    )
    .await;
}
