//! A node that runs Pods: containerd (with its CRI plugin, runc and the CNI plugins from Debian),
//! kubelet and kube-proxy, built from the pinned Kubernetes sources.
//!
//! Each node has a network namespace and a mount namespace of its own, held by a `sleep` process
//! that `unshare` started. Its only interface is `eth0`, one end of a veth pair whose other end is
//! on the testbed's bridge (see [`crate::network`]). In its private mount namespace, tmpfs covers
//! the host paths that containerd, the CNI plugins and kubelet write regardless of configuration
//! (`/run/netns`, `/run/containerd`, `/var/lib/cni`, `/var/log/containers`), so two nodes never
//! share state and a killed node leaves no mounts behind. Everything else lives in the node's
//! directory. Every process runs in the node's control group ([`crate::cgroup`]).

use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::bins::NodeBinaries;
use crate::certs::{self, Pki};
use crate::cgroup::NodeCgroup;
use crate::kubeconfig;
use crate::network::{self, Plan, run_ok};
use crate::process::{Lifetime, Proc};
use crate::testbed::lock;
use crate::{Error, Result};

/// The sandbox ("pause") image every Pod starts with; `scripts/build-images` builds it.
pub const PAUSE_IMAGE: &str = "registry.k8s.io/pause:3.10";
/// Paths that containerd, the CNI plugins and kubelet use whatever they are configured with;
/// each node covers them with a private tmpfs.
const PRIVATE_PATHS: [&str; 4] = [
    "/run/netns",
    "/run/containerd",
    "/var/lib/cni",
    "/var/log/containers",
];
const READY_TIMEOUT: Duration = Duration::from_secs(60);

/// What a node needs to know about its cluster.
#[derive(Debug, Clone)]
pub(crate) struct NodeSpec<'a> {
    pub(crate) cluster: &'a str,
    pub(crate) index: usize,
    pub(crate) plan: Plan,
    pub(crate) server: &'a str,
    pub(crate) dir: &'a Path,
    pub(crate) node_bins: &'a NodeBinaries,
    pub(crate) lifetime: Lifetime,
}

/// A running node. Dropping it stops every process in it, containers included.
#[derive(Debug)]
pub struct Node {
    /// The node's name, `<cluster>-node`.
    pub name: String,
    /// Its address on the testbed bridge.
    pub ip: Ipv4Addr,
    /// The cluster it belongs to.
    pub cluster: String,
    dir: PathBuf,
    socket: PathBuf,
    holder: Mutex<Option<Proc>>,
    containerd: Mutex<Option<Proc>>,
    kubelet: Mutex<Option<Proc>>,
    proxy: Mutex<Option<Proc>>,
    cgroup: NodeCgroup,
    lifetime: Lifetime,
    containerd_cmd: Vec<String>,
}

impl Node {
    /// Starts the node of `spec.cluster`; returns once containerd holds the images and kubelet
    /// and kube-proxy run (the caller waits for the Node to be Ready).
    pub(crate) fn start(spec: &NodeSpec<'_>, pki: &Pki) -> Result<Node> {
        let name = format!("{}-node", spec.cluster);
        let dir = spec.dir.join(&name);
        std::fs::create_dir_all(&dir).map_err(|e| Error::io("create", dir.display(), e))?;
        let holder = spawn_holder(&dir, spec.lifetime)?;
        let cgroup = NodeCgroup::create(holder.pid(), spec.cluster)?;
        let ip = spec.plan.node(spec.index);
        let socket = dir.join("containerd.sock");
        let mut node = Node {
            name,
            ip,
            cluster: spec.cluster.to_string(),
            dir,
            socket,
            holder: Mutex::new(Some(holder)),
            containerd: Mutex::new(None),
            kubelet: Mutex::new(None),
            proxy: Mutex::new(None),
            cgroup,
            lifetime: spec.lifetime,
            containerd_cmd: Vec::new(),
        };
        node.private_mounts()?;
        node.plumb(spec)?;
        node.containerd_cmd = node.containerd_config(spec)?;
        node.start_containerd()?;
        node.import_images(&spec.node_bins.images)?;
        let kubelet = node.kubelet_config(spec, pki)?;
        *lock(&node.kubelet) = Some(node.spawn("kubelet", &kubelet, "kubelet.log")?);
        node.start_proxy(spec, pki)?;
        Ok(node)
    }

    /// The pid of the process holding the node's namespaces.
    fn holder_pid(&self) -> Result<u32> {
        lock(&self.holder)
            .as_ref()
            .map(Proc::pid)
            .ok_or_else(|| Error::Network {
                what: format!("use node {}", self.name),
                detail: "the node is stopped".into(),
            })
    }

    /// `nsenter` into the node's network and mount namespaces, then `program`.
    fn enter(&self, program: &str) -> Result<Command> {
        let pid = self.holder_pid()?;
        let mut cmd = Command::new("nsenter");
        cmd.arg(format!("--net=/proc/{pid}/ns/net"))
            .arg(format!("--mount=/proc/{pid}/ns/mnt"))
            .arg("--")
            .arg(program);
        Ok(cmd)
    }

    /// Runs a command inside the node's namespaces, failing with its error output.
    pub fn run(&self, program: &str, args: &[&str]) -> Result<String> {
        let mut cmd = self.enter(program)?;
        cmd.args(args);
        let what = format!("{program} {} on {}", args.join(" "), self.name);
        let out = cmd.output().map_err(|e| Error::io("run", &what, e))?;
        if out.status.success() {
            Ok(String::from_utf8_lossy(&out.stdout).into_owned())
        } else {
            Err(Error::Network {
                what,
                detail: String::from_utf8_lossy(&out.stderr).trim().to_string(),
            })
        }
    }

    fn private_mounts(&self) -> Result<()> {
        for path in PRIVATE_PATHS {
            std::fs::create_dir_all(path).map_err(|e| Error::io("create", path, e))?;
            self.run("mount", &["-t", "tmpfs", "-o", "mode=0755", "tmpfs", path])?;
        }
        Ok(())
    }

    fn plumb(&self, spec: &NodeSpec<'_>) -> Result<()> {
        let veth = spec.plan.veth(spec.index);
        let pid = self.holder_pid()?.to_string();
        let _ = network::ip(&["link", "del", &veth]);
        network::ip_ok(&[
            "link", "add", &veth, "type", "veth", "peer", "name", "eth0", "netns", &pid,
        ])?;
        network::ip_ok(&["link", "set", &veth, "master", &spec.plan.bridge(), "up"])?;
        let addr = format!("{}/24", self.ip);
        let host = spec.plan.host().to_string();
        self.run("ip", &["link", "set", "lo", "up"])?;
        self.run("ip", &["addr", "add", &addr, "dev", "eth0"])?;
        self.run("ip", &["link", "set", "eth0", "up"])?;
        self.run("ip", &["route", "add", "default", "via", &host])?;
        self.run(
            "sysctl",
            &[
                "-q",
                "-w",
                "net.ipv4.ip_forward=1",
                "net.bridge.bridge-nf-call-iptables=1",
            ],
        )?;
        Ok(())
    }

    fn containerd_config(&self, spec: &NodeSpec<'_>) -> Result<Vec<String>> {
        let cni = self.dir.join("cni");
        std::fs::create_dir_all(&cni).map_err(|e| Error::io("create", cni.display(), e))?;
        certs::write(
            &cni.join("10-mc.conflist"),
            &cni_config(&spec.plan.pod_cidr(spec.index), &self.dir.join("ipam")),
        )?;
        let path = self.dir.join("containerd.toml");
        certs::write(&path, &containerd_config(&self.dir, &self.socket, &cni))?;
        Ok(vec![
            "containerd".into(),
            "--config".into(),
            path.display().to_string(),
        ])
    }

    fn start_containerd(&self) -> Result<()> {
        let mut proc = self.spawn("containerd", &self.containerd_cmd, "containerd.log")?;
        proc.wait_ready(READY_TIMEOUT, || {
            Command::new("ctr")
                .arg("--address")
                .arg(&self.socket)
                .arg("version")
                .output()
                .is_ok_and(|o| o.status.success())
        })?;
        *lock(&self.containerd) = Some(proc);
        Ok(())
    }

    fn import_images(&self, images: &[PathBuf]) -> Result<()> {
        for image in images {
            run_ok(
                Command::new("ctr")
                    .arg("--address")
                    .arg(&self.socket)
                    .args(["-n", "k8s.io", "images", "import"])
                    .arg(image),
                &format!("import {} into {}'s containerd", image.display(), self.name),
            )?;
        }
        Ok(())
    }

    fn kubelet_config(&self, spec: &NodeSpec<'_>, pki: &Pki) -> Result<Vec<String>> {
        let user = format!("system:node:{}", self.name);
        let kubeconfig = self.kubeconfig(spec, pki, "kubelet", &user, &["system:nodes"])?;
        let config = self.dir.join("kubelet.yaml");
        certs::write(&config, &kubelet_config(self, spec, &pki.ca_path))?;
        Ok(vec![
            spec.node_bins.kubelet.display().to_string(),
            format!("--config={}", config.display()),
            format!("--kubeconfig={}", kubeconfig.display()),
            format!("--root-dir={}", self.dir.join("kubelet").display()),
            format!("--hostname-override={}", self.name),
            format!("--node-ip={}", self.ip),
            "--v=1".into(),
        ])
    }

    fn start_proxy(&self, spec: &NodeSpec<'_>, pki: &Pki) -> Result<()> {
        let kubeconfig = self.kubeconfig(spec, pki, "kube-proxy", "system:kube-proxy", &[])?;
        let config = self.dir.join("kube-proxy.yaml");
        certs::write(
            &config,
            &proxy_config(
                &self.name,
                &spec.plan.pod_cidr(spec.index),
                &kubeconfig,
                self.ip,
            ),
        )?;
        let argv = vec![
            spec.node_bins.kube_proxy.display().to_string(),
            format!("--config={}", config.display()),
        ];
        let proc = self.spawn("kube-proxy", &argv, "kube-proxy.log")?;
        *lock(&self.proxy) = Some(proc);
        Ok(())
    }

    fn kubeconfig(
        &self,
        spec: &NodeSpec<'_>,
        pki: &Pki,
        stem: &str,
        user: &str,
        groups: &[&str],
    ) -> Result<PathBuf> {
        kubeconfig::write_for_identity(
            pki,
            &self.dir,
            stem,
            (spec.cluster, spec.server),
            user,
            groups,
        )
    }

    fn spawn(&self, what: &str, argv: &[String], log: &str) -> Result<Proc> {
        let (program, args) = argv.split_first().ok_or_else(|| Error::Network {
            what: format!("start {what} on {}", self.name),
            detail: "empty command".into(),
        })?;
        let mut cmd = self.enter(program)?;
        cmd.args(args);
        self.cgroup.enter_on_exec(&mut cmd)?;
        Proc::spawn(
            format!("{what} {}", self.name),
            cmd,
            &self.dir.join(log),
            self.lifetime,
        )
    }

    /// Kills containerd with SIGKILL, as a crash would; its containers keep running.
    pub fn kill_containerd(&self) -> Result<()> {
        if let Some(mut p) = lock(&self.containerd).take() {
            if let Ok(pid) = libc::pid_t::try_from(p.pid()) {
                // SAFETY: kill(2) takes plain integers and has no memory effects here.
                #[allow(unsafe_code)]
                unsafe {
                    libc::kill(pid, libc::SIGKILL);
                }
            }
            p.stop(Duration::from_secs(5));
        }
        Ok(())
    }

    /// Starts containerd again after [`Node::kill_containerd`], and waits until it answers.
    pub fn restart_containerd(&self) -> Result<()> {
        self.start_containerd()
    }

    /// Whether containerd is running.
    pub fn containerd_running(&self) -> bool {
        lock(&self.containerd)
            .as_mut()
            .is_some_and(|p| p.exited().is_none())
    }

    /// Takes the node's link to the bridge down (`up = false`) or up again, as a cut cable would.
    pub fn set_link(&self, plan: Plan, index: usize, up: bool) -> Result<()> {
        let state = if up { "up" } else { "down" };
        network::ip_ok(&["link", "set", &plan.veth(index), state])
    }

    /// The node's directory (configuration and logs).
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Every process of the node the testbed started, as (what, pid).
    pub fn pids(&self) -> Vec<(String, u32)> {
        [&self.holder, &self.containerd, &self.kubelet, &self.proxy]
            .iter()
            .filter_map(|m| lock(m).as_ref().map(|p| (p.what().to_string(), p.pid())))
            .collect()
    }

    /// Leaves the node's processes running (for `mc-testbed up`).
    pub(crate) fn detach(self) {
        for m in [&self.kubelet, &self.proxy, &self.containerd, &self.holder] {
            if let Some(p) = lock(m).take() {
                p.release();
            }
        }
        std::mem::forget(self);
    }

    fn stop(&self) {
        for m in [&self.kubelet, &self.proxy, &self.containerd] {
            if let Some(mut p) = lock(m).take() {
                p.stop(Duration::from_secs(5));
            }
        }
        self.cgroup.destroy();
        if let Some(mut p) = lock(&self.holder).take() {
            p.stop(Duration::from_secs(5));
        }
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        self.stop();
    }
}

/// `unshare --net --mount sleep infinity`: the process whose namespaces are the node's.
fn spawn_holder(dir: &Path, lifetime: Lifetime) -> Result<Proc> {
    let mut cmd = Command::new("unshare");
    cmd.args([
        "--net",
        "--mount",
        "--propagation",
        "private",
        "sleep",
        "infinity",
    ]);
    let mut proc = Proc::spawn("node namespaces", cmd, &dir.join("holder.log"), lifetime)?;
    let own = std::fs::read_link("/proc/self/ns/net").ok();
    let pid = proc.pid();
    proc.wait_ready(READY_TIMEOUT, || {
        let theirs = std::fs::read_link(format!("/proc/{pid}/ns/net")).ok();
        theirs.is_some() && theirs != own
    })?;
    Ok(proc)
}

/// Waits until `ready` holds, polling; fails naming `what` and the last `state` seen.
pub(crate) fn wait_for(
    what: &str,
    timeout: Duration,
    mut ready: impl FnMut() -> std::result::Result<(), String>,
) -> Result<()> {
    let start = Instant::now();
    loop {
        match ready() {
            Ok(()) => return Ok(()),
            Err(state) if start.elapsed() > timeout => {
                return Err(Error::Timeout {
                    what: what.to_string(),
                    seconds: timeout.as_secs(),
                    detail: state,
                });
            }
            Err(_) => std::thread::sleep(Duration::from_millis(250)),
        }
    }
}

fn cni_config(pod_cidr: &str, ipam_dir: &Path) -> String {
    serde_json::json!({
        "cniVersion": "0.4.0",
        "name": "mc-testbed",
        "plugins": [
            {
                "type": "bridge",
                "bridge": "cni0",
                "isGateway": true,
                "ipMasq": false,
                "hairpinMode": true,
                "ipam": {
                    "type": "host-local",
                    "dataDir": ipam_dir.display().to_string(),
                    "ranges": [[{"subnet": pod_cidr}]],
                    "routes": [{"dst": "0.0.0.0/0"}]
                }
            },
            {"type": "portmap", "capabilities": {"portMappings": true}},
            {"type": "loopback"}
        ]
    })
    .to_string()
}

fn containerd_config(dir: &Path, socket: &Path, cni: &Path) -> String {
    format!(
        r#"version = 2
root = "{root}"
state = "{state}"
[grpc]
  address = "{socket}"
[plugins."io.containerd.internal.v1.opt"]
  path = "{opt}"
[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "{PAUSE_IMAGE}"
  restrict_oom_score_adj = true
  stream_server_address = "127.0.0.1"
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "/usr/lib/cni"
    conf_dir = "{cni}"
  [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
    runtime_type = "io.containerd.runc.v2"
"#,
        root = dir.join("containerd/root").display(),
        state = dir.join("containerd/state").display(),
        socket = socket.display(),
        opt = dir.join("containerd/opt").display(),
        cni = cni.display(),
    )
}

fn kubelet_config(node: &Node, spec: &NodeSpec<'_>, ca: &Path) -> String {
    let dns = network::cluster_dns(spec.index);
    serde_json::json!({
        "apiVersion": "kubelet.config.k8s.io/v1beta1",
        "kind": "KubeletConfiguration",
        "failCgroupV1": false,
        "cgroupDriver": "cgroupfs",
        "cgroupRoot": node.cgroup.root(),
        "failSwapOn": false,
        "address": node.ip.to_string(),
        "healthzPort": 0,
        "authentication": {
            "anonymous": {"enabled": false},
            "webhook": {"enabled": true},
            "x509": {"clientCAFile": ca.display().to_string()}
        },
        "authorization": {"mode": "Webhook"},
        "clusterDNS": [dns.to_string()],
        "clusterDomain": "cluster.local",
        "resolvConf": "",
        "containerRuntimeEndpoint": format!("unix://{}", node.socket.display()),
        "podLogsDir": node.dir.join("pod-logs").display().to_string(),
        "volumePluginDir": node.dir.join("volume-plugins").display().to_string(),
        "evictionHard": {"memory.available": "1Mi", "nodefs.available": "1%", "imagefs.available": "1%"},
        "imageGCHighThresholdPercent": 100,
        "imageGCLowThresholdPercent": 99,
        "podCIDR": spec.plan.pod_cidr(spec.index),
        "maxPods": 110,
        "syncFrequency": "10s",
        "fileCheckFrequency": "10s",
        "nodeStatusReportFrequency": "10s",
        "serializeImagePulls": false
    })
    .to_string()
}

fn proxy_config(node: &str, pod_cidr: &str, kubeconfig: &Path, ip: Ipv4Addr) -> String {
    serde_json::json!({
        "apiVersion": "kubeproxy.config.k8s.io/v1alpha1",
        "kind": "KubeProxyConfiguration",
        "mode": "iptables",
        "clusterCIDR": pod_cidr,
        "hostnameOverride": node,
        "bindAddress": ip.to_string(),
        "clientConnection": {"kubeconfig": kubeconfig.display().to_string()},
        "conntrack": {"maxPerCore": 0, "tcpEstablishedTimeout": "0s", "tcpCloseWaitTimeout": "0s"},
        "metricsBindAddress": "127.0.0.1:10249",
        "healthzBindAddress": "127.0.0.1:10256"
    })
    .to_string()
}
