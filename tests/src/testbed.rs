//! Starting, using and stopping a set of clusters.

use std::io::{Read as _, Write as _};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Mutex, MutexGuard, OnceLock};
use std::time::Duration;

use std::net::{IpAddr, Ipv4Addr};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use crate::addons::{self, ControllerManagerKeys};
use crate::bins::{Binaries, NodeBinaries};
use crate::certs::{self, PemPair, Pki};
use crate::kubeconfig::{self, Credential, Entry};
use crate::network::{self, Bridge, Plan};
use crate::node::{Node, NodeSpec, wait_for};
use crate::ports::{free_port, lost_port_race};
use crate::process::{Lifetime, Proc, pid_alive, terminate_pid};
use crate::{Error, Result};

/// How long a process may take to become ready. Two API servers starting at once on a
/// loaded two-core machine need well over the usual ten seconds.
const READY_TIMEOUT: Duration = Duration::from_secs(120);
/// How often a lost race for a port is retried with a new port.
const PORT_ATTEMPTS: usize = 5;

/// How long nodes and cluster add-ons may take to become ready.
const NODE_TIMEOUT: Duration = Duration::from_secs(90);

/// What a testbed runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Topology {
    /// API servers over etcd only: no Pod runs; tests write Endpoints and LoadBalancer status
    /// themselves. Much faster to start, for pure API behaviour.
    ApiOnly,
    /// Real clusters: per cluster one node (containerd, kubelet, kube-proxy) in a network
    /// namespace of its own, kube-controller-manager, kube-scheduler, CoreDNS and a
    /// LoadBalancer controller. Needs root inside `scripts/in-netns`.
    Nodes,
}

/// One cluster: a real kube-apiserver, and with [`Topology::Nodes`] a node and controllers.
#[derive(Debug)]
pub struct Cluster {
    /// The cluster's name, also its kubeconfig context.
    pub name: String,
    /// Its URL, `https://127.0.0.1:<port>` (API only) or `https://<bridge address>:<port>`.
    pub server: String,
    /// Its secure port.
    pub port: u16,
    /// Its service CIDR, distinct from every other cluster's.
    pub service_cidr: String,
    index: usize,
    dir: PathBuf,
    apiserver: Mutex<Option<Proc>>,
    controllers: Mutex<Vec<Proc>>,
    node: Option<Node>,
    lb_stop: Option<Arc<AtomicBool>>,
}

impl Cluster {
    /// The cluster's node, with [`Topology::Nodes`].
    pub fn node(&self) -> Result<&Node> {
        self.node.as_ref().ok_or_else(|| Error::Network {
            what: format!("use the node of cluster {}", self.name),
            detail: "this testbed runs API servers only; start it with Topology::Nodes".into(),
        })
    }
}

/// A running set of clusters over one etcd. Dropping it stops every process it started.
#[derive(Debug)]
pub struct Testbed {
    dir: PathBuf,
    bins: Binaries,
    pki: Pki,
    serving: PemPair,
    admin: PemPair,
    etcd: Mutex<Option<Proc>>,
    etcd_url: String,
    clusters: Vec<Cluster>,
    kubeconfig: PathBuf,
    lifetime: Lifetime,
    remove_dir: bool,
    topology: Topology,
    bridge: Option<Bridge>,
}

impl Testbed {
    /// Starts `names`, API servers only ([`Topology::ApiOnly`]), in a fresh private directory;
    /// every process dies with this process.
    pub fn start_api_only(names: &[&str]) -> Result<Testbed> {
        let dir = fresh_dir()?;
        Testbed::start_in(&dir, names, Lifetime::Attached).map(|mut bed| {
            bed.remove_dir = true;
            bed
        })
    }

    /// Starts `names` as real clusters with nodes ([`Topology::Nodes`]) in a fresh private
    /// directory; every process, containers included, dies with this process.
    pub fn start_with_nodes(names: &[&str]) -> Result<Testbed> {
        let dir = fresh_dir()?;
        Testbed::start_topology(&dir, names, Lifetime::Attached, Topology::Nodes).map(|mut bed| {
            bed.remove_dir = true;
            bed
        })
    }

    /// Starts `names` with their state in `dir`, which is created if needed (API servers only).
    pub fn start_in(dir: &Path, names: &[&str], lifetime: Lifetime) -> Result<Testbed> {
        Testbed::start_topology(dir, names, lifetime, Topology::ApiOnly)
    }

    /// Starts `names` running `topology`, with their state in `dir`.
    pub fn start_topology(
        dir: &Path,
        names: &[&str],
        lifetime: Lifetime,
        topology: Topology,
    ) -> Result<Testbed> {
        for name in names {
            validate_name(name)?;
        }
        std::fs::create_dir_all(dir).map_err(|e| Error::io("create", dir.display(), e))?;
        let bins = Binaries::locate()?;
        let (bridge, node_bins) = match topology {
            Topology::ApiOnly => (None, None),
            Topology::Nodes => {
                if names.len() > network::MAX_CLUSTERS {
                    return Err(Error::Network {
                        what: "plan the test network".into(),
                        detail: format!("at most {} clusters have nodes", network::MAX_CLUSTERS),
                    });
                }
                let node_bins = NodeBinaries::locate()?;
                crate::cgroup::remove_stale();
                (Some(Bridge::claim()?), Some(node_bins))
            }
        };
        let pki = Pki::create(dir)?;
        let extra_ips: Vec<IpAddr> = bridge
            .iter()
            .map(|b| IpAddr::V4(b.plan().host()))
            .chain((0..names.len()).map(|i| IpAddr::V4(network::kubernetes_service(i))))
            .collect();
        let serving = pki.serving(dir, "apiserver-serving", &extra_ips)?;
        let admin = pki.client(dir, "admin", "mc-testbed-admin", &["system:masters"])?;
        let (etcd, etcd_url) = start_etcd(&bins, dir, lifetime)?;
        let mut bed = Testbed {
            dir: dir.to_path_buf(),
            bins,
            pki,
            serving,
            admin,
            etcd: Mutex::new(Some(etcd)),
            etcd_url,
            clusters: Vec::new(),
            kubeconfig: dir.join("kubeconfig"),
            lifetime,
            remove_dir: false,
            topology,
            bridge,
        };
        bed.start_clusters(names)?;
        bed.write_kubeconfig()?;
        if let Some(node_bins) = node_bins {
            bed.start_nodes(&node_bins)?;
        }
        bed.write_pids()?;
        Ok(bed)
    }

    /// What this testbed runs.
    pub fn topology(&self) -> Topology {
        self.topology
    }

    /// The addresses of the test network, with [`Topology::Nodes`].
    pub fn plan(&self) -> Option<Plan> {
        self.bridge.as_ref().map(Bridge::plan)
    }

    /// The host-side interface of the link between `cluster`'s node and the bridge: everything
    /// between that node and the other clusters crosses it (capture it there).
    pub fn node_link_interface(&self, cluster: &str) -> Result<String> {
        let c = self.cluster(cluster)?;
        let plan = self.plan().ok_or_else(|| Error::Network {
            what: "find a node's link".into(),
            detail: "this testbed runs API servers only".into(),
        })?;
        Ok(plan.veth(c.index))
    }

    /// Cuts (`up = false`) or restores the link between `cluster`'s node and the bridge, which
    /// carries everything between the node and the other clusters and their API servers.
    pub fn set_node_link(&self, cluster: &str, up: bool) -> Result<()> {
        let c = self.cluster(cluster)?;
        let plan = self.plan().ok_or_else(|| Error::Network {
            what: "cut a node's link".into(),
            detail: "this testbed runs API servers only".into(),
        })?;
        c.node()?.set_link(plan, c.index, up)
    }

    fn start_nodes(&mut self, node_bins: &NodeBinaries) -> Result<()> {
        let plan = self.plan().ok_or_else(|| Error::Network {
            what: "start nodes".into(),
            detail: "no bridge was claimed".into(),
        })?;
        for c in &self.clusters {
            self.start_controllers(c, node_bins)?;
        }
        let nodes: Vec<Result<Node>> = std::thread::scope(|scope| {
            let handles: Vec<_> = self
                .clusters
                .iter()
                .map(|c| {
                    let spec = NodeSpec {
                        cluster: &c.name,
                        index: c.index,
                        plan,
                        server: &c.server,
                        dir: &c.dir,
                        node_bins,
                        lifetime: self.lifetime,
                    };
                    let pki = &self.pki;
                    scope.spawn(move || Node::start(&spec, pki))
                })
                .collect();
            handles
                .into_iter()
                .map(|h| {
                    h.join().unwrap_or_else(|_| {
                        Err(Error::Network {
                            what: "start a node".into(),
                            detail: "the starting thread panicked".into(),
                        })
                    })
                })
                .collect()
        });
        for (c, node) in self.clusters.iter_mut().zip(nodes) {
            c.node = Some(node?);
        }
        if let Some(bridge) = &self.bridge {
            for c in &self.clusters {
                bridge.route_cluster(c.index)?;
            }
        }
        for c in &mut self.clusters {
            if self.lifetime == Lifetime::Attached {
                let pool = plan.lb_address(c.index, 0);
                c.lb_stop = Some(crate::lb::spawn(&self.kubeconfig, &c.name, pool));
            }
        }
        for c in &self.clusters {
            let out = self.apply(
                &c.name,
                &addons::dns_manifest(network::cluster_dns(c.index)),
            )?;
            addons::check(&out, &format!("apply cluster DNS to {}", c.name))?;
        }
        for c in &self.clusters {
            self.wait_node_ready(&c.name)?;
            self.wait_rollout(&c.name, "kube-system", "deployment/coredns")?;
        }
        Ok(())
    }

    fn start_controllers(&self, c: &Cluster, node_bins: &NodeBinaries) -> Result<()> {
        let kcm =
            self.identity_kubeconfig(c, "controller-manager", "system:kube-controller-manager")?;
        let sched = self.identity_kubeconfig(c, "scheduler", "system:kube-scheduler")?;
        let keys = ControllerManagerKeys {
            kubeconfig: &kcm,
            service_account_key: &c.dir.join("sa.key"),
            root_ca: &self.pki.ca_path,
        };
        let mut procs = lock(&c.controllers);
        procs.push(addons::controller_manager(
            &node_bins.controller_manager,
            &c.name,
            &keys,
            &c.dir.join("controller-manager.log"),
            self.lifetime,
        )?);
        procs.push(addons::scheduler(
            &node_bins.scheduler,
            &c.name,
            &sched,
            &c.dir.join("scheduler.log"),
            self.lifetime,
        )?);
        Ok(())
    }

    fn identity_kubeconfig(&self, c: &Cluster, stem: &str, user: &str) -> Result<PathBuf> {
        kubeconfig::write_for_identity(&self.pki, &c.dir, stem, (&c.name, &c.server), user, &[])
    }

    /// Waits until `cluster`'s node reports Ready.
    pub fn wait_node_ready(&self, cluster: &str) -> Result<()> {
        let node = self.cluster(cluster)?.node()?.name.clone();
        wait_for(&format!("node {node}"), NODE_TIMEOUT, || {
            let out = self.kubectl_ok(
                cluster,
                &[
                    "get",
                    "node",
                    &node,
                    "-o",
                    "jsonpath={.status.conditions[?(@.type==\"Ready\")].status}",
                ],
            );
            match out {
                Ok(s) if s.trim() == "True" => Ok(()),
                Ok(s) => Err(format!("Ready={s}")),
                Err(e) => Err(e.to_string()),
            }
        })
    }

    /// Waits until `what` (e.g. `deployment/coredns`) in `namespace` has rolled out.
    pub fn wait_rollout(&self, cluster: &str, namespace: &str, what: &str) -> Result<()> {
        let timeout = format!("--timeout={}s", NODE_TIMEOUT.as_secs());
        let out = self
            .kubectl(cluster)
            .args(["rollout", "status", "-n", namespace, what, &timeout])
            .output()
            .map_err(|e| Error::io("run", "kubectl rollout status", e))?;
        addons::check(
            &out,
            &format!("{what} in {cluster}/{namespace} to roll out"),
        )
    }

    /// The kubeconfig with one admin context per cluster, named after it.
    pub fn kubeconfig(&self) -> &Path {
        &self.kubeconfig
    }

    /// The directory holding certificates, logs, etcd data and the kubeconfig.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The binaries in use.
    pub fn binaries(&self) -> &Binaries {
        &self.bins
    }

    /// The clusters, in the order they were named.
    pub fn clusters(&self) -> &[Cluster] {
        &self.clusters
    }

    /// The cluster called `name`.
    pub fn cluster(&self, name: &str) -> Result<&Cluster> {
        self.clusters
            .iter()
            .find(|c| c.name == name)
            .ok_or_else(|| Error::UnknownCluster {
                name: name.to_string(),
                known: self
                    .clusters
                    .iter()
                    .map(|c| c.name.as_str())
                    .collect::<Vec<_>>()
                    .join(", "),
            })
    }

    /// The testbed CA certificate (PEM), which signs the serving and client certificates.
    pub fn ca_pem(&self) -> String {
        self.pki.ca_pem()
    }

    /// A real `kubectl` aimed at `context` as the cluster admin.
    pub fn kubectl(&self, context: &str) -> Command {
        let mut cmd = Command::new(&self.bins.kubectl);
        cmd.arg("--kubeconfig")
            .arg(&self.kubeconfig)
            .arg("--context")
            .arg(context);
        cmd
    }

    /// `kubectl apply -f -` of `yaml` on `context` as the cluster admin; returns kubectl's output,
    /// whether it succeeded or not, so a test can assert either.
    pub fn apply(&self, context: &str, yaml: &str) -> Result<std::process::Output> {
        use std::io::Write as _;
        use std::process::Stdio;
        let mut child = self
            .kubectl(context)
            .args(["apply", "-f", "-"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| Error::io("run", "kubectl apply", e))?;
        if let Some(mut stdin) = child.stdin.take() {
            stdin
                .write_all(yaml.as_bytes())
                .map_err(|e| Error::io("write to", "kubectl apply", e))?;
        }
        child
            .wait_with_output()
            .map_err(|e| Error::io("wait for", "kubectl apply", e))
    }

    /// A kube-rs client for `context`, as the cluster admin.
    pub async fn client(&self, context: &str) -> Result<kube::Client> {
        client_from(&self.kubeconfig, context).await
    }

    /// Writes a kubeconfig for a non-admin identity: a client certificate for `user` in
    /// `groups`, signed by the testbed CA. RBAC decides what it may do.
    pub fn user_kubeconfig(&self, cluster: &str, user: &str, groups: &[&str]) -> Result<PathBuf> {
        let cluster = self.cluster(cluster)?;
        let users = self.dir.join("users");
        std::fs::create_dir_all(&users).map_err(|e| Error::io("create", users.display(), e))?;
        let stem = format!("{}-{}", cluster.name, sanitize(user));
        kubeconfig::write_for_identity(
            &self.pki,
            &users,
            &stem,
            (&cluster.name, &cluster.server),
            user,
            groups,
        )
    }

    /// Writes a kubeconfig that authenticates to `cluster` with a bearer `token` only (for
    /// ServiceAccount tokens), under the file name `name`.
    pub fn token_kubeconfig(&self, cluster: &str, name: &str, token: &str) -> Result<PathBuf> {
        let cluster = self.cluster(cluster)?;
        let users = self.dir.join("users");
        std::fs::create_dir_all(&users).map_err(|e| Error::io("create", users.display(), e))?;
        let ca = self.pki.ca_pem();
        let text = kubeconfig::render(&[Entry {
            context: &cluster.name,
            server: &cluster.server,
            ca_pem: &ca,
            user: name,
            credential: Credential::Token(token),
        }])
        .map_err(|e| Error::Format {
            what: "token kubeconfig".into(),
            detail: e.to_string(),
        })?;
        let path = users.join(format!("{}-{}.kubeconfig", cluster.name, sanitize(name)));
        certs::write(&path, &text)?;
        Ok(path)
    }

    /// A kube-rs client from any kubeconfig file, for `context`.
    pub async fn client_for(&self, kubeconfig: &Path, context: &str) -> Result<kube::Client> {
        client_from(kubeconfig, context).await
    }

    fn kubectl_ok(&self, cluster: &str, args: &[&str]) -> Result<String> {
        let out = self
            .kubectl(cluster)
            .args(args)
            .output()
            .map_err(|e| Error::io("run", "kubectl", e))?;
        if out.status.success() {
            Ok(String::from_utf8_lossy(&out.stdout).into_owned())
        } else {
            Err(Error::Format {
                what: format!("kubectl --context {cluster} {}", args.join(" ")),
                detail: String::from_utf8_lossy(&out.stderr).trim().to_string(),
            })
        }
    }

    /// Every process of the testbed, as (what, pid).
    pub fn pids(&self) -> Vec<(String, u32)> {
        let mut pids = Vec::new();
        if let Some(p) = lock(&self.etcd).as_ref() {
            pids.push((p.what().to_string(), p.pid()));
        }
        for c in &self.clusters {
            if let Some(p) = lock(&c.apiserver).as_ref() {
                pids.push((p.what().to_string(), p.pid()));
            }
            for p in lock(&c.controllers).iter() {
                pids.push((p.what().to_string(), p.pid()));
            }
            if let Some(node) = &c.node {
                pids.extend(node.pids());
            }
        }
        pids
    }

    /// Stops `cluster`'s API server (etcd keeps its data).
    pub fn stop_apiserver(&self, cluster: &str) -> Result<()> {
        let cluster = self.cluster(cluster)?;
        if let Some(mut p) = lock(&cluster.apiserver).take() {
            p.stop(Duration::from_secs(10));
        }
        self.write_pids()
    }

    /// Starts `cluster`'s API server again on the same port, and waits until it is ready.
    pub fn start_apiserver(&self, cluster: &str) -> Result<()> {
        let cluster = self.cluster(cluster)?;
        let mut slot = lock(&cluster.apiserver);
        if slot.is_none() {
            let index = self
                .clusters
                .iter()
                .position(|c| c.name == cluster.name)
                .unwrap_or(0);
            let mut proc =
                self.spawn_apiserver(&cluster.name, index, cluster.port, &cluster.dir)?;
            self.wait_apiserver(&mut proc, cluster.port)?;
            *slot = Some(proc);
        }
        drop(slot);
        self.write_pids()
    }

    /// Restarts `cluster`'s API server, as an upgrade or a crash would.
    pub fn restart_apiserver(&self, cluster: &str) -> Result<()> {
        self.stop_apiserver(cluster)?;
        self.start_apiserver(cluster)
    }

    /// Stops every process and waits for each to exit.
    pub fn stop(mut self) {
        self.stop_all();
    }

    /// Leaves the processes running (for `mc-testbed up`); returns their pids.
    pub fn detach(mut self) -> Vec<(String, u32)> {
        let pids = self.pids();
        for c in &mut self.clusters {
            if let Some(p) = lock(&c.apiserver).take() {
                p.release();
            }
            for p in lock(&c.controllers).drain(..) {
                p.release();
            }
            if let Some(node) = c.node.take() {
                node.detach();
            }
        }
        if let Some(bridge) = self.bridge.take() {
            // etcd lives as long as the testbed; a failure leaves the slot to be reclaimed.
            let owner = lock(&self.etcd).as_ref().map_or(0, Proc::pid);
            let _ = bridge.hand_over(owner);
        }
        if let Some(p) = lock(&self.etcd).take() {
            p.release();
        }
        pids
    }

    /// Stops the processes listed in `dir/pids` by an earlier detached testbed.
    pub fn stop_dir(dir: &Path) -> Result<Vec<(String, u32)>> {
        let path = dir.join("pids");
        let text =
            std::fs::read_to_string(&path).map_err(|e| Error::io("read", path.display(), e))?;
        let mut stopped = Vec::new();
        for line in text.lines().filter(|l| !l.trim().is_empty()) {
            let (what, pid) = parse_pid_line(line).ok_or_else(|| Error::Format {
                what: path.display().to_string(),
                detail: format!("line {line:?} is not `<what> <pid>`"),
            })?;
            if pid_alive(pid) && is_testbed_process(pid) {
                terminate_pid(pid, Duration::from_secs(10));
                stopped.push((what, pid));
            }
        }
        std::fs::remove_file(&path).map_err(|e| Error::io("remove", path.display(), e))?;
        crate::cgroup::remove_stale();
        network::remove_stale_bridges();
        Ok(stopped)
    }

    fn start_clusters(&mut self, names: &[&str]) -> Result<()> {
        let mut started = Vec::new();
        for (index, name) in names.iter().enumerate() {
            let dir = self.dir.join(name);
            std::fs::create_dir_all(&dir).map_err(|e| Error::io("create", dir.display(), e))?;
            certs::service_account_key(&dir)?;
            let port = free_port()?;
            let proc = self.spawn_apiserver(name, index, port, &dir)?;
            started.push((name.to_string(), index, port, dir, proc));
        }
        for (name, index, mut port, dir, mut proc) in started {
            let mut attempt = 1;
            loop {
                match self.wait_apiserver(&mut proc, port) {
                    Ok(()) => break,
                    Err(Error::EarlyExit { ref tail, .. })
                        if lost_port_race(tail) && attempt < PORT_ATTEMPTS =>
                    {
                        attempt += 1;
                        port = free_port()?;
                        proc = self.spawn_apiserver(&name, index, port, &dir)?;
                    }
                    Err(e) => return Err(e),
                }
            }
            let host = self.plan().map_or(Ipv4Addr::LOCALHOST, |p| p.host());
            self.clusters.push(Cluster {
                server: format!("https://{host}:{port}"),
                service_cidr: network::service_cidr(index),
                index,
                name,
                port,
                dir,
                apiserver: Mutex::new(Some(proc)),
                controllers: Mutex::new(Vec::new()),
                node: None,
                lb_stop: None,
            });
        }
        Ok(())
    }

    fn spawn_apiserver(&self, name: &str, index: usize, port: u16, dir: &Path) -> Result<Proc> {
        let sa_key = dir.join("sa.key");
        let mut cmd = Command::new(&self.bins.kube_apiserver);
        let (bind, advertise) = match self.plan() {
            Some(plan) => (Ipv4Addr::UNSPECIFIED, plan.host()),
            None => (Ipv4Addr::LOCALHOST, Ipv4Addr::LOCALHOST),
        };
        cmd.arg(format!("--etcd-servers={}", self.etcd_url))
            .arg(format!("--etcd-prefix=/mc-testbed/{name}"))
            .arg(format!("--bind-address={bind}"))
            .arg(format!("--advertise-address={advertise}"))
            .arg(format!("--secure-port={port}"))
            .arg(format!(
                "--tls-cert-file={}",
                self.serving.cert_path.display()
            ))
            .arg(format!(
                "--tls-private-key-file={}",
                self.serving.key_path.display()
            ))
            .arg(format!("--client-ca-file={}", self.pki.ca_path.display()))
            .arg(format!(
                "--service-account-issuer=https://kubernetes.default.svc.{name}"
            ))
            .arg(format!(
                "--service-account-key-file={}",
                dir.join("sa.pub").display()
            ))
            .arg(format!(
                "--service-account-signing-key-file={}",
                sa_key.display()
            ))
            .arg(format!(
                "--service-cluster-ip-range={}",
                network::service_cidr(index)
            ))
            .arg("--authorization-mode=Node,RBAC")
            .arg(format!(
                "--kubelet-client-certificate={}",
                self.admin.cert_path.display()
            ))
            .arg(format!(
                "--kubelet-client-key={}",
                self.admin.key_path.display()
            ))
            .arg("--kubelet-preferred-address-types=InternalIP")
            .arg("--enable-priority-and-fairness=false")
            .arg("--profiling=false")
            .arg(format!("--cert-dir={}", dir.join("certs").display()))
            .arg("--v=1");
        Proc::spawn(
            format!("kube-apiserver {name}"),
            cmd,
            &dir.join("apiserver.log"),
            self.lifetime,
        )
    }

    fn wait_apiserver(&self, proc: &mut Proc, port: u16) -> Result<()> {
        let kubectl = self.bins.kubectl.clone();
        let (ca, cert, key) = (
            self.pki.ca_path.clone(),
            self.admin.cert_path.clone(),
            self.admin.key_path.clone(),
        );
        proc.wait_ready(READY_TIMEOUT, || {
            Command::new(&kubectl)
                .arg(format!("--server=https://127.0.0.1:{port}"))
                .arg(format!("--certificate-authority={}", ca.display()))
                .arg(format!("--client-certificate={}", cert.display()))
                .arg(format!("--client-key={}", key.display()))
                .args([
                    "--kubeconfig=/dev/null",
                    "--request-timeout=5s",
                    "get",
                    "--raw",
                    "/readyz",
                ])
                .output()
                .is_ok_and(|o| o.status.success() && o.stdout.starts_with(b"ok"))
        })
    }

    fn write_kubeconfig(&self) -> Result<()> {
        let ca = self.pki.ca_pem();
        let users: Vec<String> = self
            .clusters
            .iter()
            .map(|c| format!("{}-admin", c.name))
            .collect();
        let entries: Vec<Entry<'_>> = self
            .clusters
            .iter()
            .zip(&users)
            .map(|(c, user)| Entry {
                context: &c.name,
                server: &c.server,
                ca_pem: &ca,
                user,
                credential: Credential::Cert {
                    cert_pem: &self.admin.cert_pem,
                    key_pem: &self.admin.key_pem,
                },
            })
            .collect();
        let text = kubeconfig::render(&entries).map_err(|e| Error::Format {
            what: "testbed kubeconfig".into(),
            detail: e.to_string(),
        })?;
        certs::write(&self.kubeconfig, &text)
    }

    fn write_pids(&self) -> Result<()> {
        let text: String = self
            .pids()
            .iter()
            .map(|(what, pid)| format!("{} {pid}\n", what.replace(' ', "-")))
            .collect();
        certs::write(&self.dir.join("pids"), &text)
    }

    fn stop_all(&mut self) {
        for c in &mut self.clusters {
            if let Some(stop) = c.lb_stop.take() {
                stop.store(true, Ordering::Relaxed);
            }
            drop(c.node.take());
            for mut p in lock(&c.controllers).drain(..) {
                p.stop(Duration::from_secs(5));
            }
        }
        for c in &self.clusters {
            if let Some(mut p) = lock(&c.apiserver).take() {
                p.stop(Duration::from_secs(10));
            }
        }
        drop(self.bridge.take());
        if let Some(mut p) = lock(&self.etcd).take() {
            p.stop(Duration::from_secs(10));
        }
        if self.remove_dir {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}

impl Drop for Testbed {
    fn drop(&mut self) {
        self.stop_all();
    }
}

/// The API-only testbed shared by every test of this test process: `east` and `west`, API
/// servers over one etcd and nothing else (no nodes, no controllers), started on first use; for
/// tests of pure API behaviour, where it is much faster than [`shared_with_nodes`]. Its
/// processes die with the test process (see [`Lifetime::Attached`]). Tests that share it must
/// use their own namespaces.
pub fn shared_api_only() -> Result<&'static Testbed> {
    static SHARED: OnceLock<std::result::Result<Testbed, String>> = OnceLock::new();
    SHARED
        .get_or_init(|| Testbed::start_api_only(&["east", "west"]).map_err(|e| e.to_string()))
        .as_ref()
        .map_err(|e| Error::Shared(e.clone()))
}

/// The testbed with nodes shared by every test of this test process: `east` and `west`, started
/// on first use. Tests that share it must use their own namespaces and cluster-scoped names.
/// A static is never dropped, so the nodes' containers are killed when the process exits
/// (and by the next testbed's start if the process was killed).
pub fn shared_with_nodes() -> Result<&'static Testbed> {
    static SHARED: OnceLock<std::result::Result<Testbed, String>> = OnceLock::new();
    SHARED
        .get_or_init(|| {
            crate::cgroup::destroy_at_exit();
            Testbed::start_with_nodes(&["east", "west"]).map_err(|e| e.to_string())
        })
        .as_ref()
        .map_err(|e| Error::Shared(e.clone()))
}

pub(crate) async fn client_from(path: &Path, context: &str) -> Result<kube::Client> {
    let wrap = |source: Box<dyn std::error::Error + Send + Sync>| Error::Client {
        context: context.to_string(),
        source,
    };
    let kc = kube::config::Kubeconfig::read_from(path).map_err(|e| wrap(Box::new(e)))?;
    let options = kube::config::KubeConfigOptions {
        context: Some(context.to_string()),
        ..Default::default()
    };
    let config = kube::Config::from_custom_kubeconfig(kc, &options)
        .await
        .map_err(|e| wrap(Box::new(e)))?;
    kube::Client::try_from(config).map_err(|e| wrap(Box::new(e)))
}

fn start_etcd(bins: &Binaries, dir: &Path, lifetime: Lifetime) -> Result<(Proc, String)> {
    let mut attempt = 1;
    loop {
        let (client, peer) = (free_port()?, free_port()?);
        let client_url = format!("http://127.0.0.1:{client}");
        let peer_url = format!("http://127.0.0.1:{peer}");
        let mut cmd = Command::new(&bins.etcd);
        cmd.args(["--name", "default"])
            .arg(format!("--data-dir={}", dir.join("etcd").display()))
            .arg(format!("--listen-client-urls={client_url}"))
            .arg(format!("--advertise-client-urls={client_url}"))
            .arg(format!("--listen-peer-urls={peer_url}"))
            .arg(format!("--initial-advertise-peer-urls={peer_url}"))
            .arg(format!("--initial-cluster=default={peer_url}"))
            .args([
                "--unsafe-no-fsync",
                "--log-level=warn",
                "--listen-metrics-urls=",
            ]);
        let mut proc = Proc::spawn("etcd", cmd, &dir.join("etcd.log"), lifetime)?;
        match proc.wait_ready(READY_TIMEOUT, || etcd_healthy(client)) {
            Ok(()) => return Ok((proc, client_url)),
            Err(Error::EarlyExit { ref tail, .. })
                if lost_port_race(tail) && attempt < PORT_ATTEMPTS =>
            {
                attempt += 1
            }
            Err(e) => return Err(e),
        }
    }
}

fn etcd_healthy(port: u16) -> bool {
    let Ok(mut stream) = TcpStream::connect(("127.0.0.1", port)) else {
        return false;
    };
    let _ = stream.set_read_timeout(Some(Duration::from_secs(2)));
    if stream
        .write_all(b"GET /health HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n")
        .is_err()
    {
        return false;
    }
    let mut body = String::new();
    stream.read_to_string(&mut body).is_ok() && body.contains("\"health\":\"true\"")
}

/// A directory under `$MC_TESTBED_ROOT` (default: the temp dir) unique to this process;
/// directories left by processes that no longer exist are removed first.
fn fresh_dir() -> Result<PathBuf> {
    static SEQ: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let root = std::env::var_os("MC_TESTBED_ROOT")
        .map_or_else(|| std::env::temp_dir().join("mc-testbed"), PathBuf::from);
    std::fs::create_dir_all(&root).map_err(|e| Error::io("create", root.display(), e))?;
    remove_stale(&root);
    let seq = SEQ.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let dir = root.join(format!("{}-{seq}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    Ok(dir)
}

fn remove_stale(root: &Path) {
    let Ok(entries) = std::fs::read_dir(root) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name();
        let owner = name
            .to_str()
            .and_then(|n| n.split('-').next())
            .and_then(|p| p.parse::<u32>().ok());
        if owner.is_some_and(|pid| !pid_alive(pid)) {
            let _ = std::fs::remove_dir_all(entry.path());
        }
    }
}

fn validate_name(name: &str) -> Result<()> {
    let ok = !name.is_empty()
        && name.len() <= 63
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !name.starts_with('-')
        && !name.ends_with('-');
    if ok {
        Ok(())
    } else {
        Err(Error::InvalidClusterName(name.to_string()))
    }
}

fn sanitize(user: &str) -> String {
    user.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' {
                c
            } else {
                '_'
            }
        })
        .collect()
}

fn parse_pid_line(line: &str) -> Option<(String, u32)> {
    let (what, pid) = line.trim().rsplit_once(' ')?;
    Some((what.to_string(), pid.parse().ok()?))
}

/// Guards against a recycled pid: only processes of the kinds a testbed starts are signalled.
fn is_testbed_process(pid: u32) -> bool {
    std::fs::read(format!("/proc/{pid}/cmdline")).is_ok_and(|cmd| {
        let argv0 = cmd.split(|b| *b == 0).next().unwrap_or_default();
        let argv0 = String::from_utf8_lossy(argv0);
        let name = argv0.rsplit('/').next().unwrap_or_default();
        [
            "etcd",
            "kube-apiserver",
            "kube-controller-manager",
            "kube-scheduler",
            "nsenter",
            "unshare",
            "sleep",
            "containerd",
            "kubelet",
            "kube-proxy",
            "mc-testbed",
        ]
        .contains(&name)
    })
}

pub(crate) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cluster_names_must_be_dns_labels() {
        assert!(validate_name("east").is_ok());
        assert!(validate_name("us-east-1").is_ok());
        for bad in ["", "East", "-east", "east-", "ea_st", &"x".repeat(64)] {
            assert!(
                matches!(validate_name(bad), Err(Error::InvalidClusterName(_))),
                "{bad:?} accepted"
            );
        }
    }

    #[test]
    fn pid_lines_round_trip() {
        assert_eq!(
            parse_pid_line("kube-apiserver-east 4242"),
            Some(("kube-apiserver-east".into(), 4242))
        );
        assert_eq!(parse_pid_line("garbage"), None);
        assert_eq!(parse_pid_line("etcd notapid"), None);
    }
}
