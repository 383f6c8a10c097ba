//! The getting-started walkthrough on the local testbed (`make demo`, and the `demo` e2e test).
//!
//! Every step prints the command a user types on real clusters, runs the same command here (real
//! pipes into the real kubectl), and checks its effect. The testbed has no kubelet, so the gateway,
//! the mirror controller and the podinfo servers run as local processes with the identities and
//! credentials their manifests describe; see docs/walkthrough.md for the mapping.

mod http;
mod podinfo;
mod shell;

use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant, SystemTime};

use mc_core::identity::Identity;
use mc_core::pki::{CertifiedKey, LeafOptions, issue_leaf};
use serde_json::Value;

use crate::ports::free_port;
use crate::{Lifetime, Proc, Testbed, test_host};
use podinfo::Podinfo;
use shell::{Failed, Shell};

/// The demo's result: the first check that failed, with what it saw.
pub type DemoResult<T = ()> = Result<T, Box<dyn std::error::Error>>;

const NS: &str = "linkerd-multicluster";
const PODINFO_PORT: u16 = 9898;
const CLIENT_IDENTITY: &str = "web.test.serviceaccount.identity.linkerd.cluster.local";
const SPLIT_REQUESTS: usize = 200;

/// Runs the whole walkthrough in `work` (certificates, logs), with the mc binaries from `bin_dir`.
pub fn run(bin_dir: &Path, work: &Path) -> DemoResult {
    for bin in ["mc", "mc-gateway", "mc-mirror"] {
        if !bin_dir.join(bin).is_file() {
            return Err(format!(
                "{} is missing: build it with `cargo build -p mc-cli -p mc-gateway -p mc-mirror`",
                bin_dir.join(bin).display()
            )
            .into());
        }
    }
    std::fs::create_dir_all(work)?;
    let mut demo = Demo::start(bin_dir, work)?;
    let result = demo.walk();
    let pids = demo.pids();
    demo.stop_processes();
    drop(demo); // stops etcd and the API servers
    let stopped = all_stopped(&pids);
    result?;
    stopped?;
    ok(&format!(
        "every process stopped: {}",
        pids.iter()
            .map(|(what, _)| what.as_str())
            .collect::<Vec<_>>()
            .join(", ")
    ));
    Ok(())
}

/// Waits until none of `pids` runs any more, failing after 20 seconds.
fn all_stopped(pids: &[(String, u32)]) -> DemoResult {
    let start = Instant::now();
    while let Some((what, pid)) = pids.iter().find(|(_, pid)| crate::pid_alive(*pid)) {
        if start.elapsed() > Duration::from_secs(20) {
            return Err(format!("{what} (pid {pid}) still runs after cleanup").into());
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    Ok(())
}

struct Demo {
    bed: Testbed,
    sh: Shell,
    bin_dir: PathBuf,
    work: PathBuf,
    gateway_ip: IpAddr,
    gateway_identity: String,
    gateway: Option<Proc>,
    mirror: Option<Proc>,
    connects: Vec<Proc>,
    podinfos: Vec<Podinfo>,
    step: u32,
}

impl Demo {
    fn start(bin_dir: &Path, work: &Path) -> DemoResult<Demo> {
        let gateway_ip = test_host(1)?;
        let mut demo_step = 0;
        announce(
            &mut demo_step,
            "Clusters: east and west, each a real kube-apiserver over etcd",
            &["k3d cluster create east", "k3d cluster create west"],
        );
        let bed = Testbed::start(&["east", "west"])?;
        for c in bed.clusters() {
            ok(&format!("{} is ready at {}", c.name, c.server));
        }
        let sh = Shell::new(&bed, bin_dir, work);
        Ok(Demo {
            bed,
            sh,
            bin_dir: bin_dir.to_path_buf(),
            work: work.to_path_buf(),
            gateway_ip,
            gateway_identity: Identity::gateway("cluster.local").to_string(),
            gateway: None,
            mirror: None,
            connects: Vec::new(),
            podinfos: Vec::new(),
            step: demo_step,
        })
    }

    fn walk(&mut self) -> DemoResult {
        let (root, issuers) = self.trust()?;
        self.install(&root, &issuers)?;
        self.link()?;
        self.health()?;
        self.test_services()?;
        self.export()?;
        let client = self.client_identity(&issuers[1])?;
        self.call_across(&client)?;
        self.refusal(&root)?;
        self.split(&client)?;
        self.gateway_down(&issuers[0])?;
        self.cleanup()
    }

    fn announce(&mut self, title: &str, commands: &[&str]) {
        announce(&mut self.step, title, commands);
    }

    /// Step: one trust anchor, an issuer per cluster.
    fn trust(&mut self) -> DemoResult<(PathBuf, [CertifiedKey; 2])> {
        self.announce(
            "Trust: one root shared by both clusters, one issuer each",
            &[
                "mc trust-anchor create --cert-out root.crt --key-out root.key",
                "mc issuer create --ca-cert root.crt --ca-key root.key --cert-out east-issuer.crt --key-out east-issuer.key",
                "mc issuer create --ca-cert root.crt --ca-key root.key --cert-out west-issuer.crt --key-out west-issuer.key",
            ],
        );
        self.sh
            .run("mc trust-anchor create --cert-out root.crt --key-out root.key --force")?;
        for c in ["east", "west"] {
            self.sh.run(&format!("mc issuer create --ca-cert root.crt --ca-key root.key --cert-out {c}-issuer.crt --key-out {c}-issuer.key --force"))?;
        }
        let inspect = self.sh.run("mc trust-anchor inspect root.crt")?;
        expect(
            inspect.contains("root.linkerd.cluster.local"),
            "`mc trust-anchor inspect root.crt` names the root",
            &inspect,
        )?;
        let issuers = [self.read_key("east-issuer")?, self.read_key("west-issuer")?];
        ok("root.crt and two issuers made; the root inspects as root.linkerd.cluster.local");
        Ok((self.work.join("root.crt"), issuers))
    }

    /// Steps: Linkerd's config (stand-in), `mc multicluster install` on both, east's gateway.
    fn install(&mut self, root: &Path, issuers: &[CertifiedKey; 2]) -> DemoResult {
        self.announce(
            "Linkerd on both clusters (stand-in: its linkerd-config, carrying the shared root)",
            &["linkerd install --identity-trust-anchors-file root.crt --identity-issuer-certificate-file east-issuer.crt ... | kubectl --context east apply -f -"],
        );
        let root_pem = std::fs::read_to_string(root)?;
        for c in ["east", "west"] {
            self.apply(c, &linkerd_config(&root_pem))?;
        }
        ok("linkerd-config holds the shared trust anchor in both clusters");

        self.announce(
            "Install mc multicluster on both clusters",
            &[
                "mc --context east multicluster install | kubectl --context east apply -f -",
                "mc --context west multicluster install | kubectl --context west apply -f -",
            ],
        );
        for c in ["east", "west"] {
            self.sh.run(&format!(
                "mc --context {c} multicluster install | kubectl --context {c} apply -f -"
            ))?;
        }
        let svc = self.kubectl_json("east", &["get", "svc", "-n", NS, "linkerd-gateway"])?;
        let identity = svc
            .pointer("/metadata/annotations/mirror.linkerd.io~1gateway-identity")
            .and_then(Value::as_str)
            .unwrap_or_default();
        expect(
            identity == self.gateway_identity,
            "the gateway Service publishes the gateway identity",
            identity,
        )?;
        ok(&format!("installed; east's gateway identity is {identity}"));

        self.announce(
            "East's gateway (stand-in for the gateway pod: mc-gateway with a certificate from east's issuer), and its load balancer",
            &["kubectl --context east -n linkerd-multicluster rollout status deploy/linkerd-gateway"],
        );
        let leaf = issue_leaf(
            &issuers[0],
            &self.gateway_identity,
            &LeafOptions::new(SystemTime::now()),
        )?;
        std::fs::write(self.work.join("gateway.crt"), leaf.chain_pem(&issuers[0]))?;
        std::fs::write(self.work.join("gateway.key"), &leaf.key_pem)?;
        self.start_gateway()?;
        let lb = format!(
            "{{\"status\":{{\"loadBalancer\":{{\"ingress\":[{{\"ip\":\"{}\"}}]}}}}}}",
            self.gateway_ip
        );
        self.kubectl(
            "east",
            &[
                "patch",
                "svc",
                "-n",
                NS,
                "linkerd-gateway",
                "--subresource=status",
                "--type=merge",
                "-p",
                &lb,
            ],
        )?;
        ok(&format!(
            "gateway ready on {}:4143 (probe {}:4191); LoadBalancer ingress {} published",
            self.gateway_ip, self.gateway_ip, self.gateway_ip
        ));
        Ok(())
    }

    fn start_gateway(&mut self) -> DemoResult {
        let mut cmd = Command::new(self.bin_dir.join("mc-gateway"));
        let ip = self.gateway_ip;
        let podinfo_east = SocketAddr::new(test_host(3)?, PODINFO_PORT);
        cmd.arg("serve")
            .arg(format!("--listen={ip}:4143"))
            .arg(format!("--admin={ip}:4191"))
            .arg(format!(
                "--cert={}",
                self.work.join("gateway.crt").display()
            ))
            .arg(format!("--key={}", self.work.join("gateway.key").display()))
            .arg(format!(
                "--trust-anchors={}",
                self.work.join("root.crt").display()
            ))
            .arg(format!("--identity={}", self.gateway_identity))
            .arg(format!(
                "--static=podinfo.test.svc.cluster.local:{PODINFO_PORT}={podinfo_east}"
            ))
            .arg("--no-dns")
            .arg("--drain-timeout=2");
        let mut proc = Proc::spawn(
            "mc-gateway (east)",
            cmd,
            &self.work.join("gateway.log"),
            Lifetime::Attached,
        )?;
        let ready = SocketAddr::new(ip, 4191);
        proc.wait_ready(Duration::from_secs(30), || {
            http::get_path(ready, "gateway", "/ready").is_ok_and(|r| r.starts_with("HTTP/1.1 200"))
        })?;
        self.gateway = Some(proc);
        Ok(())
    }

    /// Step: `mc multicluster link` against east, applied to west; west's controller starts.
    fn link(&mut self) -> DemoResult {
        self.announce(
            "Link west to east",
            &["mc --context east multicluster link --cluster-name east | kubectl --context west apply -f -"],
        );
        self.sh.run("mc --context east multicluster link --cluster-name east | kubectl --context west apply -f -")?;
        let link = self.kubectl_json(
            "west",
            &["get", "links.multicluster.linkerd.io", "-n", NS, "east"],
        )?;
        let address = link
            .pointer("/spec/gatewayAddress")
            .and_then(Value::as_str)
            .unwrap_or_default();
        expect(
            address == self.gateway_ip.to_string(),
            "the Link carries the gateway's load-balancer address",
            address,
        )?;
        ok(&format!(
            "Link east applied in west (gatewayAddress {address}), with its credentials Secret and controller"
        ));

        self.announce(
            "West's mirror controller (stand-in for its pod: mc-mirror with the controller ServiceAccount's own token)",
            &["kubectl --context west -n linkerd-multicluster rollout status deploy/controller-east"],
        );
        let token = self.kubectl(
            "west",
            &[
                "create",
                "token",
                "-n",
                NS,
                "controller-east",
                "--duration=2h",
            ],
        )?;
        let kubeconfig = self
            .bed
            .token_kubeconfig("west", "controller-east", token.trim())?;
        let admin = free_port()?;
        let mut cmd = Command::new(self.bin_dir.join("mc-mirror"));
        cmd.arg(format!("--kubeconfig={}", kubeconfig.display()))
            .arg(format!("--namespace={NS}"))
            .arg("--link=east")
            .arg(format!("--admin-addr=127.0.0.1:{admin}"))
            .arg("--identity=controller-east-demo")
            .env("HOSTNAME", "controller-east-demo");
        let mut proc = Proc::spawn(
            "mc-mirror (west)",
            cmd,
            &self.work.join("mirror.log"),
            Lifetime::Attached,
        )?;
        let ready = SocketAddr::from(([127, 0, 0, 1], admin));
        proc.wait_ready(Duration::from_secs(60), || {
            http::get_path(ready, "mirror", "/ready").is_ok_and(|r| r.starts_with("HTTP/1.1 200"))
        })?;
        self.mirror = Some(proc);
        ok(
            "mc-mirror is ready, running as system:serviceaccount:linkerd-multicluster:controller-east",
        );
        Ok(())
    }

    /// Step: `mc multicluster check` and `gateways` on west.
    fn health(&mut self) -> DemoResult {
        self.announce(
            "Health",
            &[
                "mc --context west multicluster check",
                "mc --context west multicluster gateways",
            ],
        );
        self.wait(
            "east's gateway alive in `mc multicluster gateways`",
            Duration::from_secs(60),
            |d| d.gateway_alive().map(|a| a == Some(true)),
        )?;
        let check = self
            .sh
            .output("mc --context west multicluster check --wait 60s")?;
        let text = String::from_utf8_lossy(&check.stdout);
        print_indented(&text);
        expect(
            check.status.success() && !text.contains('×'),
            "`mc multicluster check` passes with every line ✓",
            &format!("{text}{}", String::from_utf8_lossy(&check.stderr)),
        )?;
        print_indented(&self.sh.run("mc --context west multicluster gateways")?);
        ok("every check passes and east's gateway is alive");
        Ok(())
    }

    /// Step: podinfo in both clusters (servers on test hosts; their Endpoints written by hand).
    fn test_services(&mut self) -> DemoResult {
        self.announce(
            "Test services: podinfo in namespace test of each cluster",
            &["kubectl --context east create ns test && kubectl --context east apply -n test -k github.com/stefanprodan/podinfo/kustomize", "(the same in west)"],
        );
        for (cluster, host) in [("east", 3), ("west", 4)] {
            let addr = SocketAddr::new(test_host(host)?, PODINFO_PORT);
            self.podinfos.push(Podinfo::start(addr, cluster)?);
            self.apply(cluster, &podinfo_objects(addr))?;
            ok(&format!(
                "podinfo of {cluster} serves on {} and is Service test/podinfo there",
                self.podinfos.last().map_or(addr, Podinfo::addr)
            ));
        }
        Ok(())
    }

    /// Step: export podinfo from east; podinfo-east appears in west.
    fn export(&mut self) -> DemoResult {
        self.announce(
            "Export podinfo from east",
            &["kubectl --context east label svc -n test podinfo mirror.linkerd.io/exported=true"],
        );
        self.kubectl(
            "east",
            &[
                "label",
                "svc",
                "-n",
                "test",
                "podinfo",
                "mirror.linkerd.io/exported=true",
            ],
        )?;
        // The endpoints controller copies the label onto the Endpoints; the testbed does it here.
        self.bed.sync_endpoints_labels("east", "test")?;
        let gateway = self.gateway_ip.to_string();
        let mirrored = self.wait(
            "podinfo-east in west with the gateway as its endpoint",
            Duration::from_secs(60),
            |d| {
                let ep = d.kubectl_json_opt(
                    "west",
                    &["get", "endpoints", "-n", "test", "podinfo-east"],
                )?;
                Ok(ep.is_some_and(|ep| ready_ips(&ep) == vec![gateway.clone()]))
            },
        );
        if let Err(e) = mirrored {
            let status = self.kubectl(
                "west",
                &[
                    "get",
                    "links.multicluster.linkerd.io",
                    "-n",
                    NS,
                    "east",
                    "-o",
                    "jsonpath={.status}",
                ],
            );
            return Err(format!(
                "{e}\nLink status: {}",
                status.unwrap_or_else(|f| f.to_string())
            )
            .into());
        }
        print_indented(&self.kubectl(
            "west",
            &["get", "svc,endpoints", "-n", "test", "podinfo-east"],
        )?);
        ok(&format!(
            "podinfo-east mirrors east's podinfo; its endpoint is the gateway {}:4143",
            self.gateway_ip
        ));
        Ok(())
    }

    fn client_identity(&self, west_issuer: &CertifiedKey) -> DemoResult<(PathBuf, PathBuf)> {
        let leaf = issue_leaf(
            west_issuer,
            CLIENT_IDENTITY,
            &LeafOptions::new(SystemTime::now()),
        )?;
        let (cert, key) = (self.work.join("client.crt"), self.work.join("client.key"));
        std::fs::write(&cert, leaf.chain_pem(west_issuer))?;
        std::fs::write(&key, &leaf.key_pem)?;
        Ok((cert, key))
    }

    /// The meshed client's view of podinfo-east: gateway address, identity, target authority.
    fn mirror_target(&self) -> DemoResult<(String, String, String)> {
        let ep = self.kubectl_json("west", &["get", "endpoints", "-n", "test", "podinfo-east"])?;
        let gateway = format!(
            "{}:{}",
            ready_ips(&ep)
                .first()
                .ok_or("podinfo-east has no ready address")?,
            ep.pointer("/subsets/0/ports/0/port")
                .and_then(Value::as_u64)
                .ok_or("podinfo-east has no port")?
        );
        let annotation = |key: &str| {
            ep.pointer(&format!("/metadata/annotations/{}", key.replace('/', "~1")))
                .and_then(Value::as_str)
                .map(str::to_string)
        };
        let identity = annotation("mirror.linkerd.io/remote-gateway-identity")
            .ok_or("podinfo-east lacks remote-gateway-identity")?;
        let fq = annotation("mirror.linkerd.io/remote-svc-fq-name")
            .ok_or("podinfo-east lacks remote-svc-fq-name")?;
        Ok((gateway, identity, format!("{fq}:{PODINFO_PORT}")))
    }

    fn start_connect(
        &mut self,
        name: &str,
        backends: &[String],
        client: &(PathBuf, PathBuf),
    ) -> DemoResult<SocketAddr> {
        let (_, identity, target) = self.mirror_target()?;
        let listen = SocketAddr::from(([127, 0, 0, 1], free_port()?));
        let mut cmd = Command::new(self.bin_dir.join("mc-gateway"));
        cmd.arg("connect")
            .arg(format!("--listen={listen}"))
            .arg(format!("--target={target}"))
            .arg(format!("--gateway-identity={identity}"))
            .arg("--protocol=http1")
            .arg(format!("--cert={}", client.0.display()))
            .arg(format!("--key={}", client.1.display()))
            .arg(format!(
                "--trust-anchors={}",
                self.work.join("root.crt").display()
            ));
        for b in backends {
            cmd.arg(format!("--backend={b}"));
        }
        let mut proc = Proc::spawn(
            format!("mc-gateway connect ({name})"),
            cmd,
            &self.work.join(format!("connect-{name}.log")),
            Lifetime::Attached,
        )?;
        proc.wait_ready(Duration::from_secs(30), || {
            std::net::TcpStream::connect(listen).is_ok()
        })?;
        self.connects.push(proc);
        Ok(listen)
    }

    /// Step: GET podinfo-east from west through the gateway.
    fn call_across(&mut self, client: &(PathBuf, PathBuf)) -> DemoResult {
        self.announce(
            "Call across: from a meshed client in west, GET podinfo-east",
            &["kubectl --context west -n test exec deploy/web -c web -- curl -s http://podinfo-east.test.svc.cluster.local:9898"],
        );
        let (gateway, identity, target) = self.mirror_target()?;
        println!(
            "    (the meshed client: mTLS to {gateway} as {CLIENT_IDENTITY}, expecting {identity}, transport header for {target})"
        );
        let listen = self.start_connect("podinfo-east", &[format!("gateway={gateway}")], client)?;
        let response = http::get(listen, "podinfo-east.test.svc.cluster.local:9898")?;
        expect(
            response.contains("greetings from east"),
            "the answer comes from east",
            &response,
        )?;
        ok(&format!(
            "answer: {}",
            response.lines().last().unwrap_or_default().trim()
        ));
        Ok(())
    }

    /// Step: clients without a mesh identity are refused.
    fn refusal(&mut self, root: &Path) -> DemoResult {
        self.announce(
            "An unmeshed client is refused by the gateway",
            &["kubectl --context west -n test run curl --image=curlimages/curl -- curl -sv http://<gateway>:4143/", "... and curl --cacert root.crt https://<gateway>:4143/ (TLS, no client certificate)"],
        );
        let gateway = SocketAddr::new(self.gateway_ip, 4143);
        let plain = http::get(gateway, "podinfo.test.svc.cluster.local:9898").unwrap_or_default();
        expect(
            !plain.contains("greetings") && !plain.starts_with("HTTP/1.1 200"),
            "plain HTTP gets no answer from a service",
            &plain,
        )?;
        ok("plain HTTP: the connection is closed without any response");
        let script = format!(
            "curl -sS --max-time 10 --cacert {} --resolve {id}:4143:{ip} -H 'Host: podinfo.test.svc.cluster.local:9898' https://{id}:4143/",
            root.display(),
            id = self.gateway_identity,
            ip = self.gateway_ip
        );
        let out = self.sh.output(&script)?;
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        expect(
            !out.status.success() && !text.contains("greetings"),
            "TLS without a client certificate is refused at the handshake",
            &text,
        )?;
        ok(&format!(
            "TLS without a client certificate: curl fails ({})",
            text.lines().next().unwrap_or_default().trim()
        ));
        Ok(())
    }

    /// Step: 50/50 split between west's podinfo and podinfo-east.
    fn split(&mut self, client: &(PathBuf, PathBuf)) -> DemoResult {
        self.announce(
            "Traffic split: 50/50 between podinfo (west) and podinfo-east",
            &["kubectl --context west -n test apply -f podinfo-split.yaml   # HTTPRoute/TrafficSplit: podinfo 50, podinfo-east 50"],
        );
        let (gateway, _, _) = self.mirror_target()?;
        let local = self
            .podinfos
            .get(1)
            .map(Podinfo::addr)
            .ok_or("west's podinfo is not running")?;
        let listen = self.start_connect(
            "split",
            &[
                format!("local={local},weight=50"),
                format!("gateway={gateway},weight=50"),
            ],
            client,
        )?;
        let (mut east, mut west) = (0usize, 0usize);
        for _ in 0..SPLIT_REQUESTS {
            let response = http::get(listen, "podinfo.test.svc.cluster.local:9898")?;
            if response.contains("greetings from east") {
                east += 1;
            } else if response.contains("greetings from west") {
                west += 1;
            } else {
                return Err(format!("a split request got neither greeting: {response}").into());
            }
        }
        // Binomial(200, 0.5): mean 100, sd 7.07; 4 sd either side is a 1-in-15,000 false alarm.
        let (low, high) = binomial_bounds(SPLIT_REQUESTS, 0.5, 4.0);
        expect(
            (low..=high).contains(&east) && east + west == SPLIT_REQUESTS,
            &format!("east's share is within [{low}, {high}]"),
            &format!("east {east}, west {west}"),
        )?;
        ok(&format!(
            "{SPLIT_REQUESTS} requests: {east} from east, {west} from west (bounds [{low}, {high}])"
        ));
        Ok(())
    }

    /// Step: the gateway goes down, the mirror notices; it comes back, everything recovers.
    fn gateway_down(&mut self, east_issuer: &CertifiedKey) -> DemoResult {
        let _ = east_issuer;
        self.announce(
            "Gateway down: stop east's gateway",
            &["kubectl --context east -n linkerd-multicluster scale deploy/linkerd-gateway --replicas=0", "mc --context west multicluster gateways"],
        );
        if let Some(mut gw) = self.gateway.take() {
            gw.stop(Duration::from_secs(5));
        }
        self.wait("east's gateway not alive", Duration::from_secs(90), |d| {
            d.gateway_alive().map(|a| a == Some(false))
        })?;
        let gateway = self.gateway_ip.to_string();
        self.wait(
            "podinfo-east's endpoint not ready",
            Duration::from_secs(30),
            |d| {
                let ep =
                    d.kubectl_json("west", &["get", "endpoints", "-n", "test", "podinfo-east"])?;
                Ok(ready_ips(&ep).is_empty() && not_ready_ips(&ep) == vec![gateway.clone()])
            },
        )?;
        print_indented(&self.sh.run("mc --context west multicluster gateways")?);
        ok("east is not alive; podinfo-east's gateway address moved to notReadyAddresses");

        self.announce("Gateway back", &["kubectl --context east -n linkerd-multicluster scale deploy/linkerd-gateway --replicas=1"]);
        self.start_gateway()?;
        self.wait("east's gateway alive again", Duration::from_secs(90), |d| {
            d.gateway_alive().map(|a| a == Some(true))
        })?;
        self.wait(
            "podinfo-east's endpoint ready again",
            Duration::from_secs(30),
            |d| {
                let ep =
                    d.kubectl_json("west", &["get", "endpoints", "-n", "test", "podinfo-east"])?;
                Ok(ready_ips(&ep) == vec![gateway.clone()])
            },
        )?;
        let listen = self.start_connect(
            "after-recovery",
            &[format!("gateway={}:4143", self.gateway_ip)],
            &(self.work.join("client.crt"), self.work.join("client.key")),
        )?;
        let response = http::get(listen, "podinfo-east.test.svc.cluster.local:9898")?;
        expect(
            response.contains("greetings from east"),
            "podinfo-east answers again",
            &response,
        )?;
        ok("alive again; the endpoint is ready and podinfo-east answers");
        Ok(())
    }

    /// Step: unlink, uninstall, nothing left, every process stopped.
    fn cleanup(&mut self) -> DemoResult {
        self.announce(
            "Cleanup",
            &[
                "mc --context west multicluster unlink --cluster-name east | kubectl --context west delete -f -",
                "mc --context west multicluster uninstall | kubectl --context west delete -f -",
                "mc --context east multicluster uninstall | kubectl --context east delete -f -",
            ],
        );
        // `--wait=false`: nothing finalizes a deleted Namespace on the testbed until
        // collect_garbage below does the namespace controller's work.
        // Unlink first prints what to delete (it reads the Link), then the controller goes with its Deployment.
        let unlink = self
            .sh
            .run("mc --context west multicluster unlink --cluster-name east")?;
        if let Some(mut m) = self.mirror.take() {
            m.stop(Duration::from_secs(5));
        }
        self.sh.run(&format!(
            "cat <<'EOF' | kubectl --context west delete --ignore-not-found --wait=false -f -\n{unlink}\nEOF"
        ))?;
        for c in ["west", "east"] {
            self.sh.run(&format!("mc --context {c} multicluster uninstall | kubectl --context {c} delete --ignore-not-found --wait=false -f -"))?;
        }
        for c in ["west", "east"] {
            self.bed.collect_garbage(c)?;
            let left = self.mc_leftovers(c)?;
            expect(
                left.is_empty(),
                &format!("nothing of mc is left in {c}"),
                &left.join("\n"),
            )?;
        }
        ok("nothing of mc is left in either cluster");
        Ok(())
    }

    /// Everything of mc still in `cluster`: extension objects, mirrors, Links, the CRD, the namespace.
    fn mc_leftovers(&self, cluster: &str) -> DemoResult<Vec<String>> {
        let mut left = Vec::new();
        for (kinds, selector) in [
            (
                "all,serviceaccounts,secrets,configmaps,roles,rolebindings,endpoints,leases",
                "linkerd.io/extension=multicluster",
            ),
            (
                "clusterroles,clusterrolebindings,customresourcedefinitions",
                "linkerd.io/extension=multicluster",
            ),
            (
                "services,endpoints",
                "mirror.linkerd.io/mirrored-service=true",
            ),
        ] {
            let out = self.kubectl(cluster, &["get", kinds, "-A", "-l", selector, "-o", "name"])?;
            left.extend(out.lines().filter(|l| !l.is_empty()).map(str::to_string));
        }
        for (kind, name) in [
            ("customresourcedefinition", "links.multicluster.linkerd.io"),
            ("namespace", NS),
        ] {
            let out = self.kubectl(
                cluster,
                &["get", kind, name, "--ignore-not-found", "-o", "name"],
            )?;
            left.extend(out.lines().filter(|l| !l.is_empty()).map(str::to_string));
        }
        Ok(left)
    }

    fn gateway_alive(&self) -> DemoResult<Option<bool>> {
        let out = self
            .sh
            .run("mc --context west multicluster gateways -o json")?;
        let v: Value = serde_json::from_str(&out)?;
        let rows = v
            .as_array()
            .cloned()
            .or_else(|| v.get("gateways").and_then(Value::as_array).cloned())
            .unwrap_or_default();
        Ok(rows
            .iter()
            .find(|r| r.get("clusterName").and_then(Value::as_str) == Some("east"))
            .and_then(|r| r.get("alive").and_then(Value::as_bool)))
    }

    fn wait(
        &self,
        what: &str,
        within: Duration,
        mut done: impl FnMut(&Demo) -> DemoResult<bool>,
    ) -> DemoResult {
        let start = Instant::now();
        let mut last = String::new();
        loop {
            match done(self) {
                Ok(true) => {
                    println!(
                        "    waited {:.1}s for {what}",
                        start.elapsed().as_secs_f64()
                    );
                    return Ok(());
                }
                Ok(false) => {}
                Err(e) => last = e.to_string(),
            }
            if start.elapsed() > within {
                return Err(format!("timed out after {within:?} waiting for {what} {last}").into());
            }
            std::thread::sleep(Duration::from_millis(250));
        }
    }

    fn read_key(&self, stem: &str) -> DemoResult<CertifiedKey> {
        Ok(CertifiedKey {
            cert_pem: std::fs::read_to_string(self.work.join(format!("{stem}.crt")))?,
            key_pem: std::fs::read_to_string(self.work.join(format!("{stem}.key")))?,
        })
    }

    fn kubectl(&self, context: &str, args: &[&str]) -> Result<String, Failed> {
        let out = self
            .bed
            .kubectl(context)
            .args(args)
            .output()
            .map_err(|e| Failed(format!("kubectl {args:?}: {e}")))?;
        if out.status.success() {
            Ok(String::from_utf8_lossy(&out.stdout).into_owned())
        } else {
            Err(Failed(format!(
                "kubectl --context {context} {} failed: {}",
                args.join(" "),
                String::from_utf8_lossy(&out.stderr)
            )))
        }
    }

    fn kubectl_json(&self, context: &str, args: &[&str]) -> DemoResult<Value> {
        let mut all = args.to_vec();
        all.extend(["-o", "json"]);
        Ok(serde_json::from_str(&self.kubectl(context, &all)?)?)
    }

    fn kubectl_json_opt(&self, context: &str, args: &[&str]) -> DemoResult<Option<Value>> {
        let mut all = args.to_vec();
        all.extend(["--ignore-not-found", "-o", "json"]);
        let out = self.kubectl(context, &all)?;
        if out.trim().is_empty() {
            Ok(None)
        } else {
            Ok(Some(serde_json::from_str(&out)?))
        }
    }

    fn apply(&self, context: &str, yaml: &str) -> Result<String, Failed> {
        self.sh.run(&format!(
            "cat <<'EOF' | kubectl --context {context} apply -f -\n{yaml}\nEOF"
        ))
    }

    /// Every process the demo started, testbed included.
    fn pids(&self) -> Vec<(String, u32)> {
        let mut pids = self.bed.pids();
        for p in self
            .connects
            .iter()
            .chain(self.mirror.as_ref())
            .chain(self.gateway.as_ref())
        {
            pids.push((p.what().to_string(), p.pid()));
        }
        pids
    }

    fn stop_processes(&mut self) {
        for mut p in self
            .connects
            .drain(..)
            .chain(self.mirror.take())
            .chain(self.gateway.take())
        {
            p.stop(Duration::from_secs(5));
        }
        self.podinfos.clear();
    }
}

fn announce(step: &mut u32, title: &str, commands: &[&str]) {
    *step += 1;
    println!("\n[{}] {title}", step);
    for c in commands {
        println!("    $ {c}");
    }
}

fn ok(what: &str) {
    println!("    ✓ {what}");
}

fn print_indented(text: &str) {
    for line in text.lines() {
        println!("      {line}");
    }
}

fn expect(cond: bool, what: &str, saw: &str) -> DemoResult {
    if cond {
        Ok(())
    } else {
        Err(format!("check failed: {what}; saw:\n{saw}").into())
    }
}

fn ready_ips(endpoints: &Value) -> Vec<String> {
    ips(endpoints, "addresses")
}

fn not_ready_ips(endpoints: &Value) -> Vec<String> {
    ips(endpoints, "notReadyAddresses")
}

fn ips(endpoints: &Value, field: &str) -> Vec<String> {
    let mut ips: Vec<String> = endpoints
        .get("subsets")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .flat_map(|s| {
            s.get(field)
                .and_then(Value::as_array)
                .cloned()
                .unwrap_or_default()
        })
        .filter_map(|a| a.get("ip").and_then(Value::as_str).map(str::to_string))
        .collect();
    ips.sort();
    ips.dedup();
    ips
}

/// The `sds`-standard-deviation interval of a Binomial(n, p) count, rounded outward.
fn binomial_bounds(n: usize, p: f64, sds: f64) -> (usize, usize) {
    let n_f = n as f64;
    let mean = n_f * p;
    let sd = (n_f * p * (1.0 - p)).sqrt();
    let low = (mean - sds * sd).floor().max(0.0) as usize;
    let high = ((mean + sds * sd).ceil() as usize).min(n);
    (low, high)
}

fn linkerd_config(root_pem: &str) -> String {
    let values = format!(
        "identityTrustAnchorsPEM: |\n{}identityTrustDomain: cluster.local\nclusterDomain: cluster.local\n",
        root_pem
            .lines()
            .map(|l| format!("  {l}\n"))
            .collect::<String>()
    );
    let values_json = serde_json::to_string(&values).unwrap_or_default();
    format!(
        "apiVersion: v1\nkind: Namespace\nmetadata: {{name: linkerd}}\n---\napiVersion: v1\nkind: ConfigMap\n\
         metadata: {{name: linkerd-config, namespace: linkerd}}\ndata:\n  values: {values_json}\n"
    )
}

fn podinfo_objects(addr: SocketAddr) -> String {
    format!(
        "apiVersion: v1\nkind: Namespace\nmetadata: {{name: test}}\n---\n\
         apiVersion: v1\nkind: Service\nmetadata: {{name: podinfo, namespace: test, labels: {{app: podinfo}}}}\n\
         spec: {{ports: [{{name: http, port: {port}, targetPort: {port}}}]}}\n---\n\
         apiVersion: v1\nkind: Endpoints\nmetadata: {{name: podinfo, namespace: test, labels: {{app: podinfo}}}}\n\
         subsets: [{{addresses: [{{ip: \"{ip}\"}}], ports: [{{name: http, port: {port}}}]}}]\n",
        ip = addr.ip(),
        port = addr.port()
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn binomial_bounds_are_four_sds_around_the_mean() {
        assert_eq!(binomial_bounds(200, 0.5, 4.0), (71, 129));
        assert_eq!(binomial_bounds(10, 0.5, 100.0), (0, 10));
    }

    #[test]
    fn endpoint_ips_are_read_per_field() {
        let ep = serde_json::json!({"subsets": [{"addresses": [{"ip": "198.51.100.1"}], "notReadyAddresses": [{"ip": "198.51.100.2"}]}]});
        assert_eq!(ready_ips(&ep), vec!["198.51.100.1"]);
        assert_eq!(not_ready_ips(&ep), vec!["198.51.100.2"]);
        assert!(ready_ips(&serde_json::json!({})).is_empty());
    }

    #[test]
    fn linkerd_config_values_carry_the_anchor() {
        let yaml = linkerd_config("-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n");
        let docs: Vec<Value> = yaml
            .split("---\n")
            .map(|d| serde_yaml::from_str(d).unwrap())
            .collect();
        let values = docs[1]
            .pointer("/data/values")
            .and_then(Value::as_str)
            .unwrap();
        let cfg = mc_core::trust::LinkerdConfig::from_values_yaml(values).unwrap();
        assert!(cfg.trust_anchors_pem.contains("AAAA"));
        assert_eq!(cfg.trust_domain, "cluster.local");
    }
}
