//! The getting-started walkthrough on the testbed's real clusters (`make demo`, and the `demo`
//! e2e test).
//!
//! Every step prints the commands a user types and runs exactly those commands (real pipes into
//! the real kubectl) against two clusters whose nodes run Pods: mc's gateway and mirror
//! controller run as Pods from mc's image, started by the manifests `install` and `link` render;
//! podinfo runs as Deployments; the call across is `kubectl exec` into a plain west Pod (no
//! sidecar, no certificate), through west's egress. The one stand-in is Linkerd itself: its
//! `linkerd-config` ConfigMap, which mc reads. The 50/50 split is podinfo federated in both
//! clusters, weighted by a Gateway API HTTPRoute (the real CRD) and called from the same plain
//! Pod. See docs/walkthrough.md.

mod shell;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::Testbed;
use shell::{Failed, Shell};

/// The demo's result: the first check that failed, with what it saw.
pub type DemoResult<T = ()> = Result<T, Box<dyn std::error::Error>>;

const NS: &str = "linkerd-multicluster";
const SPLIT_REQUESTS: usize = 200;
/// podinfo-federated, by the name any west Pod uses.
const FEDERATED_URL: &str = "http://podinfo-federated.test.svc.cluster.local:9898/";
/// The Gateway API HTTPRoute CRD, as the demo writes it into its directory.
const HTTPROUTE_CRD: &str = "gateway-api-httproutes.yaml";
/// podinfo-east, by the name any west Pod uses.
const MIRROR_URL: &str = "http://podinfo-east.test.svc.cluster.local:9898/";
/// The egress's Deployment and Service.
const EGRESS: &str = mc_core::egress::EGRESS_NAME;

/// The manifests the demo applies, shipped in `examples/demo/`.
const EXAMPLES: [(&str, &str); 3] = [
    (
        "podinfo.yaml",
        include_str!("../../../examples/demo/podinfo.yaml"),
    ),
    (
        "client.yaml",
        include_str!("../../../examples/demo/client.yaml"),
    ),
    (
        "podinfo-split.yaml",
        include_str!("../../../examples/federated/podinfo-split.yaml"),
    ),
];

/// Runs the whole walkthrough in `work` (certificates, logs), with the mc CLI from `bin_dir`.
pub fn run(bin_dir: &Path, work: &Path) -> DemoResult {
    if !bin_dir.join("mc").is_file() {
        return Err(format!(
            "{} is missing: build it with `cargo build -p mc-cli`",
            bin_dir.join("mc").display()
        )
        .into());
    }
    std::fs::create_dir_all(work)?;
    for (name, text) in EXAMPLES {
        std::fs::write(work.join(name), text)?;
    }
    std::fs::copy(crate::httproute_crd()?, work.join(HTTPROUTE_CRD))?;
    let mut demo = Demo::start(bin_dir, work)?;
    let result = demo.walk();
    if result.is_err() {
        demo.dump_state();
    }
    let pids = demo.bed.pids();
    demo.bed.stop();
    let stopped = all_stopped(&pids);
    result?;
    stopped?;
    ok(&format!(
        "every process stopped ({} processes: API servers, etcd, controllers, kubelets, containerds, kube-proxies) and every container with its node",
        pids.len()
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
    work: PathBuf,
    gateway_ip: String,
    step: u32,
}

impl Demo {
    fn start(bin_dir: &Path, work: &Path) -> DemoResult<Demo> {
        let mut step = 0;
        announce(
            &mut step,
            "Clusters: east and west, each a kube-apiserver over etcd with a node (kubelet, containerd, kube-proxy), kube-controller-manager, kube-scheduler, CoreDNS and a LoadBalancer controller",
            &[],
        );
        let bed = Testbed::start_with_nodes(&["east", "west"])?;
        for c in bed.clusters() {
            ok(&format!(
                "{} is ready at {}, node {}-node Ready",
                c.name, c.server, c.name
            ));
        }
        let sh = Shell::new(&bed, bin_dir, work);
        Ok(Demo {
            bed,
            sh,
            work: work.to_path_buf(),
            gateway_ip: String::new(),
            step,
        })
    }

    fn walk(&mut self) -> DemoResult {
        self.trust()?;
        self.install()?;
        self.gateway()?;
        self.test_services()?;
        self.link()?;
        self.health()?;
        self.export()?;
        self.client()?;
        self.call_across()?;
        self.refusal()?;
        self.split()?;
        self.gateway_down()?;
        self.hold()?;
        self.cleanup()
    }

    /// With `MC_DEMO_HOLD=<file>`, before cleaning up: writes the kubeconfig's path into
    /// `<file>` and waits until that file is removed, so that the linked clusters can be used by
    /// hand (from the same network namespace: `nsenter --net --target <demo pid>`).
    fn hold(&mut self) -> DemoResult {
        let Some(file) = std::env::var_os("MC_DEMO_HOLD").map(PathBuf::from) else {
            return Ok(());
        };
        std::fs::write(&file, format!("{}\n", self.bed.kubeconfig().display()))?;
        println!(
            "demo: holding the clusters (kubeconfig {}, pid {}) until {} is removed",
            self.bed.kubeconfig().display(),
            std::process::id(),
            file.display()
        );
        while file.exists() {
            std::thread::sleep(Duration::from_secs(1));
        }
        Ok(())
    }

    /// Prints a step and its commands.
    fn announce(&mut self, title: &str, commands: &[&str]) {
        announce(&mut self.step, title, commands);
    }

    /// Prints a step, then runs each of its commands as printed; returns their outputs.
    fn step(&mut self, title: &str, commands: &[&str]) -> DemoResult<Vec<String>> {
        self.announce(title, commands);
        let mut outputs = Vec::new();
        for c in commands {
            outputs.push(self.sh.run(c)?);
        }
        Ok(outputs)
    }

    /// Step: one trust anchor, an issuer per cluster.
    fn trust(&mut self) -> DemoResult {
        let out = self.step(
            "Trust: one root shared by both clusters, one issuer each",
            &[
                "mc trust-anchor create --cert-out root.crt --key-out root.key",
                "mc issuer create --ca-cert root.crt --ca-key root.key --cert-out east-issuer.crt --key-out east-issuer.key",
                "mc issuer create --ca-cert root.crt --ca-key root.key --cert-out west-issuer.crt --key-out west-issuer.key",
                "mc trust-anchor inspect root.crt",
            ],
        )?;
        expect(
            out[3].contains("root.linkerd.cluster.local"),
            "`mc trust-anchor inspect root.crt` names the root",
            &out[3],
        )?;
        ok("root.crt and two issuers made; the root inspects as root.linkerd.cluster.local");
        Ok(())
    }

    /// Steps: Linkerd's config (stand-in), `mc multicluster install` on both.
    fn install(&mut self) -> DemoResult {
        let root_pem = std::fs::read_to_string(self.work.join("root.crt"))?;
        std::fs::write(
            self.work.join("linkerd-config.yaml"),
            linkerd_config(&root_pem),
        )?;
        self.step(
            "Linkerd's configuration (stand-in for `linkerd install`: only the linkerd-config ConfigMap mc reads, carrying the shared root)",
            &[
                "kubectl --context east apply -f linkerd-config.yaml",
                "kubectl --context west apply -f linkerd-config.yaml",
            ],
        )?;
        ok("linkerd-config holds the shared trust anchor in both clusters");
        self.step(
            "Install mc multicluster: east (a target) with its gateway, west (a source) with its egress",
            &[
                "mc --context east multicluster install --egress=false | kubectl --context east apply -f -",
                "mc --context west multicluster install --gateway=false | kubectl --context west apply -f -",
            ],
        )?;
        ok("installed in both clusters");
        self.step(
            "West's egress: its identity from west's issuer; the Deployment rolls out",
            &[
                "mc --context west multicluster egress-identity --issuer-cert west-issuer.crt --issuer-key west-issuer.key --trust-anchors root.crt | kubectl --context west apply -f -",
                "kubectl --context west -n linkerd-multicluster rollout status deploy/linkerd-multicluster-egress --timeout=180s",
            ],
        )?;
        ok("the egress Pods run mc's image with west's egress identity and are Ready");
        Ok(())
    }

    /// Step: the gateway's identity Secret; the gateway Pod rolls out and gets an address.
    fn gateway(&mut self) -> DemoResult {
        self.step(
            "East's gateway: its identity from east's issuer; the Deployment rolls out; the LoadBalancer gives it an address",
            &[
                "mc --context east multicluster gateway-identity --issuer-cert east-issuer.crt --issuer-key east-issuer.key --trust-anchors root.crt | kubectl --context east apply -f -",
                "kubectl --context east -n linkerd-multicluster rollout status deploy/linkerd-gateway --timeout=180s",
            ],
        )?;
        let ip = self.wait_value("the gateway Service's load-balancer address", |d| {
            d.kubectl(
                "east",
                &[
                    "get",
                    "svc",
                    "-n",
                    NS,
                    "linkerd-gateway",
                    "-o",
                    "jsonpath={.status.loadBalancer.ingress[0].ip}",
                ],
            )
        })?;
        print_indented(&self.sh.run(
            "kubectl --context east -n linkerd-multicluster get pods,svc -l component=gateway -o wide",
        )?);
        ok(&format!(
            "the gateway Pod runs mc's image and is Ready; LoadBalancer address {ip}"
        ));
        self.gateway_ip = ip;
        Ok(())
    }

    /// Step: podinfo in both clusters, each with its own greeting.
    fn test_services(&mut self) -> DemoResult {
        let mut commands = Vec::new();
        for c in ["east", "west"] {
            commands.push(format!("kubectl --context {c} apply -f podinfo.yaml"));
            commands.push(format!(
                "kubectl --context {c} -n test set env deploy/podinfo PODINFO_UI_MESSAGE=\"greetings from {c}\""
            ));
            commands.push(format!(
                "kubectl --context {c} -n test rollout status deploy/podinfo --timeout=180s"
            ));
        }
        let refs: Vec<&str> = commands.iter().map(String::as_str).collect();
        self.step(
            "Test services: podinfo in namespace test of each cluster (examples/demo/podinfo.yaml)",
            &refs,
        )?;
        ok("podinfo Deployments are Ready in east and west, behind Service test/podinfo");
        Ok(())
    }

    /// Step: `mc multicluster link` against east, applied to west; west's controller rolls out.
    fn link(&mut self) -> DemoResult {
        self.step(
            "Link west to east; west's mirror controller for east rolls out",
            &[
                "mc --context east multicluster link --cluster-name east | kubectl --context west apply -f -",
                "kubectl --context west -n linkerd-multicluster rollout status deploy/controller-east --timeout=180s",
            ],
        )?;
        let address = self.kubectl(
            "west",
            &[
                "get",
                "links.multicluster.linkerd.io",
                "-n",
                NS,
                "east",
                "-o",
                "jsonpath={.spec.gatewayAddress}",
            ],
        )?;
        expect(
            address == self.gateway_ip,
            "the Link carries the gateway's load-balancer address",
            &address,
        )?;
        ok(&format!(
            "Link east (gatewayAddress {address}); controller-east runs mc-mirror from mc's image with its ServiceAccount's token"
        ));
        Ok(())
    }

    /// Step: `mc multicluster check` and `gateways` on west.
    fn health(&mut self) -> DemoResult {
        self.announce(
            "Health",
            &[
                "mc --context west multicluster check --wait 120s",
                "mc --context west multicluster gateways",
            ],
        );
        self.wait(
            "east's gateway alive in `mc multicluster gateways`",
            Duration::from_secs(120),
            |d| d.gateway_alive().map(|a| a == Some(true)),
        )?;
        let check = self
            .sh
            .output("mc --context west multicluster check --wait 120s")?;
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

    /// Step: export podinfo from east; podinfo-east appears in west.
    fn export(&mut self) -> DemoResult {
        self.step(
            "Export podinfo from east",
            &["kubectl --context east -n test label svc podinfo mirror.linkerd.io/exported=true"],
        )?;
        let egress = self.egress_ips()?;
        let mirrored = self.wait(
            "podinfo-east in west with west's egress Pods as its endpoints",
            Duration::from_secs(90),
            |d| {
                let ep = d.kubectl_json_opt(
                    "west",
                    &["get", "endpoints", "-n", "test", "podinfo-east"],
                )?;
                Ok(ep.is_some_and(|ep| ready_ips(&ep) == egress))
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
        print_indented(&self.sh.run(
            "kubectl --context west -n test get svc,endpoints,endpointslices -l mirror.linkerd.io/mirrored-service=true",
        )?);
        ok(&format!(
            "podinfo-east mirrors east's podinfo; its endpoints are west's egress Pods {} (Link mode auto: an egress and no Linkerd control plane), which forward to east's gateway {}:4143; the EndpointSlice controller followed",
            egress.join(", "),
            self.gateway_ip
        ));
        Ok(())
    }

    /// Step: a plain client in west: curl, no sidecar, no certificate.
    fn client(&mut self) -> DemoResult {
        self.step(
            "A plain client in west: curl, no sidecar, no certificate (examples/demo/client.yaml)",
            &[
                "kubectl --context west apply -f client.yaml",
                "kubectl --context west -n test rollout status deploy/client --timeout=180s",
            ],
        )?;
        ok("deploy/client is Ready in west");
        Ok(())
    }

    /// Step: GET podinfo-east from the plain Pod, through west's egress and east's gateway.
    fn call_across(&mut self) -> DemoResult {
        let command = format!(
            "kubectl --context west -n test exec deploy/client -- curl -sS --max-time 10 {MIRROR_URL}"
        );
        self.announce(
            "Call across: from a plain west Pod to podinfo-east, through kube-proxy, west's egress (mTLS out), east's gateway and east's podinfo",
            &[&command],
        );
        let response = self.retry(&command, Duration::from_secs(30))?;
        expect(
            response.contains("greetings from east"),
            "the answer comes from east",
            &response,
        )?;
        let egress_identity =
            format!("{EGRESS}.{NS}.serviceaccount.identity.linkerd.cluster.local");
        let metrics_command = format!(
            "kubectl --context west -n test exec deploy/client -- curl -sS --max-time 10 http://{}:4191/metrics",
            self.gateway_ip
        );
        println!("    $ {metrics_command} | grep client_connections");
        let metrics = self.sh.run(&metrics_command)?;
        let series =
            format!("mc_gateway_client_connections_total{{client_id=\"{egress_identity}\"}}");
        expect(
            metrics.contains(&series),
            "east's gateway counts the connection under west's egress identity",
            &metrics,
        )?;
        let logs_command =
            "kubectl --context east -n linkerd-multicluster logs deploy/linkerd-gateway";
        println!("    $ {logs_command} | grep 'first connection'");
        let logs = self.sh.run(logs_command)?;
        expect(
            logs.lines()
                .any(|l| l.contains("first connection") && l.contains(&egress_identity)),
            "east's gateway logs west's egress identity",
            &logs,
        )?;
        ok(&format!(
            "answer: {}; east's gateway admitted it as {egress_identity} (mc_gateway_client_connections_total, and its log)",
            message_of(&response)
        ));
        Ok(())
    }

    /// Step: a client without a mesh identity is refused by the gateway.
    fn refusal(&mut self) -> DemoResult {
        let ip = self.gateway_ip.clone();
        let plain = format!(
            "kubectl --context west -n test exec deploy/client -- curl -sS --max-time 10 http://{ip}:4143/"
        );
        let tls = format!(
            "kubectl --context west -n test exec deploy/client -- curl -sS --max-time 10 --insecure https://{ip}:4143/"
        );
        self.announce(
            "A Pod that goes to east's gateway directly, without the egress, is refused",
            &[&plain, &tls],
        );
        for (command, what) in [
            (&plain, "plain HTTP gets no answer from a service"),
            (
                &tls,
                "TLS without a client certificate is refused at the handshake",
            ),
        ] {
            let out = self.sh.output(command)?;
            let text = format!(
                "{}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
            expect(
                !out.status.success() && !text.contains("greetings"),
                what,
                &text,
            )?;
            ok(&format!(
                "{what}: curl fails ({})",
                text.lines().next().unwrap_or_default().trim()
            ));
        }
        Ok(())
    }

    /// Step: podinfo federated in both clusters, split 50/50 by an HTTPRoute, called from the
    /// plain Pod.
    fn split(&mut self) -> DemoResult {
        self.step(
            "Federate podinfo: a member in east and in west; west serves podinfo-federated through its egress",
            &[
                "kubectl --context east -n test label svc podinfo mirror.linkerd.io/federated=member",
                "kubectl --context west -n test label svc podinfo mirror.linkerd.io/federated=member",
            ],
        )?;
        let egress = self.egress_ips()?;
        self.wait(
            "podinfo-federated in west with west's egress Pods as its endpoints",
            Duration::from_secs(90),
            |d| {
                let ep = d.kubectl_json_opt(
                    "west",
                    &["get", "endpoints", "-n", "test", "podinfo-federated"],
                )?;
                Ok(ep.is_some_and(|ep| ready_ips(&ep) == egress))
            },
        )?;
        ok("podinfo-federated exists in west, its endpoints are west's egress Pods");
        self.step(
            "Traffic split: podinfo 50 / podinfo-east 50 as a Gateway API HTTPRoute (examples/federated/podinfo-split.yaml)",
            &[
                &format!("kubectl --context west apply --server-side -f {HTTPROUTE_CRD}"),
                // A new CRD's kind is served only once the CRD is Established.
                "kubectl --context west wait --for condition=established --timeout=60s crd/httproutes.gateway.networking.k8s.io",
                "kubectl --context west apply -f podinfo-split.yaml",
            ],
        )?;
        self.wait(
            "the split to serve both clusters",
            Duration::from_secs(60),
            |d| {
                let (e, w) = d.federated_shares(10, false)?;
                Ok(e > 0 && w > 0)
            },
        )?;
        let (east, west) = self.federated_shares(SPLIT_REQUESTS, true)?;
        // Binomial(200, 0.5): mean 100, sd 7.07; 4 sd either side is a 1-in-15,000 false alarm.
        let (low, high) = binomial_bounds(SPLIT_REQUESTS, 0.5, 4.0);
        expect(
            (low..=high).contains(&east) && east + west == SPLIT_REQUESTS,
            &format!("east's share of {SPLIT_REQUESTS} is within [{low}, {high}]"),
            &format!("east {east}, west {west}"),
        )?;
        ok(&format!(
            "{SPLIT_REQUESTS} requests: {east} from east, {west} from west (bounds [{low}, {high}])"
        ));
        Ok(())
    }

    /// `n` requests from the plain client Pod to podinfo-federated, one connection each: how
    /// many east answered and how many west. Prints the command if `print`.
    fn federated_shares(&self, n: usize, print: bool) -> DemoResult<(usize, usize)> {
        let urls = vec![FEDERATED_URL; n].join(" ");
        let command = format!(
            "kubectl --context west -n test exec deploy/client -- curl -sS --max-time 60 -H 'Connection: close' {urls}"
        );
        if print {
            println!(
                "    $ kubectl --context west -n test exec deploy/client -- curl -sS --max-time 60 -H 'Connection: close' {FEDERATED_URL} … ({n} times)"
            );
        }
        let out = self.sh.run(&command)?;
        Ok((
            out.matches("greetings from east").count(),
            out.matches("greetings from west").count(),
        ))
    }

    /// Step: the gateway scaled to 0, the mirror notices; back to 1, everything recovers.
    fn gateway_down(&mut self) -> DemoResult {
        self.step(
            "Gateway down: scale east's gateway to 0",
            &["kubectl --context east -n linkerd-multicluster scale deploy/linkerd-gateway --replicas=0"],
        )?;
        self.wait("east's gateway not alive", Duration::from_secs(90), |d| {
            d.gateway_alive().map(|a| a == Some(false))
        })?;
        let egress = self.egress_ips()?;
        self.wait(
            "podinfo-east's endpoints not ready",
            Duration::from_secs(30),
            |d| {
                let ep =
                    d.kubectl_json("west", &["get", "endpoints", "-n", "test", "podinfo-east"])?;
                Ok(ready_ips(&ep).is_empty() && not_ready_ips(&ep) == egress)
            },
        )?;
        print_indented(&self.sh.run("mc --context west multicluster gateways")?);
        ok("east is not alive; podinfo-east's egress addresses moved to notReadyAddresses");
        let (east, west) = self.federated_shares(20, true)?;
        expect(
            (east, west) == (0, 20),
            "podinfo-federated: all 20 requests answered by west",
            &format!("east {east}, west {west}"),
        )?;
        ok("podinfo-federated fails over: 20 of 20 requests answered by west's podinfo");

        self.step(
            "Gateway back: scale it to 1",
            &[
                "kubectl --context east -n linkerd-multicluster scale deploy/linkerd-gateway --replicas=1",
                "kubectl --context east -n linkerd-multicluster rollout status deploy/linkerd-gateway --timeout=180s",
            ],
        )?;
        self.wait("east's gateway alive again", Duration::from_secs(90), |d| {
            d.gateway_alive().map(|a| a == Some(true))
        })?;
        self.wait(
            "podinfo-east's endpoints ready again",
            Duration::from_secs(30),
            |d| {
                let ep =
                    d.kubectl_json("west", &["get", "endpoints", "-n", "test", "podinfo-east"])?;
                Ok(ready_ips(&ep) == egress)
            },
        )?;
        let command = format!(
            "kubectl --context west -n test exec deploy/client -- curl -sS --max-time 10 {MIRROR_URL}"
        );
        println!("    $ {command}");
        let response = self.retry(&command, Duration::from_secs(30))?;
        expect(
            response.contains("greetings from east"),
            "podinfo-east answers again",
            &response,
        )?;
        ok("alive again; the endpoint is ready and podinfo-east answers");
        Ok(())
    }

    /// Step: unlink, uninstall, delete the workloads; nothing is left.
    fn cleanup(&mut self) -> DemoResult {
        self.step(
            "Cleanup",
            &[
                "mc --context west multicluster unlink --cluster-name east | kubectl --context west delete -f -",
                "kubectl --context west delete ns test",
                "kubectl --context east delete ns test",
                "mc --context west multicluster uninstall | kubectl --context west delete -f -",
                "mc --context east multicluster uninstall | kubectl --context east delete -f -",
                "kubectl --context west delete -f linkerd-config.yaml",
                "kubectl --context east delete -f linkerd-config.yaml",
            ],
        )?;
        for c in ["west", "east"] {
            self.wait(
                &format!("nothing of mc left in {c}"),
                Duration::from_secs(60),
                |d| Ok(d.mc_leftovers(c)?.is_empty()),
            )
            .map_err(|e| format!("{e}: {:?}", self.mc_leftovers(c)))?;
        }
        ok(
            "nothing of mc is left in either cluster: the namespace and garbage collectors removed the rest",
        );
        Ok(())
    }

    /// Everything of mc still in `cluster`: extension objects, mirrors, Links, the CRD, the
    /// namespaces, and any Pod of the demo.
    fn mc_leftovers(&self, cluster: &str) -> DemoResult<Vec<String>> {
        let mut left = Vec::new();
        for (kinds, selector) in [
            (
                "all,serviceaccounts,secrets,configmaps,roles,rolebindings,endpoints,endpointslices,leases",
                "linkerd.io/extension=multicluster",
            ),
            (
                "clusterroles,clusterrolebindings,customresourcedefinitions",
                "linkerd.io/extension=multicluster",
            ),
            (
                "services,endpoints,endpointslices",
                "mirror.linkerd.io/mirrored-service=true",
            ),
        ] {
            let out = self.kubectl(cluster, &["get", kinds, "-A", "-l", selector, "-o", "name"])?;
            left.extend(out.lines().filter(|l| !l.is_empty()).map(str::to_string));
        }
        for (kind, name) in [
            ("customresourcedefinition", "links.multicluster.linkerd.io"),
            ("namespace", NS),
            ("namespace", "test"),
            ("namespace", "linkerd"),
        ] {
            let out = self.kubectl(
                cluster,
                &["get", kind, name, "--ignore-not-found", "-o", "name"],
            )?;
            left.extend(out.lines().filter(|l| !l.is_empty()).map(str::to_string));
        }
        Ok(left)
    }

    /// The ready egress Pods' IPs in west, sorted.
    fn egress_ips(&self) -> DemoResult<Vec<String>> {
        let ep = self.kubectl_json("west", &["get", "endpoints", "-n", NS, EGRESS])?;
        let ips = ready_ips(&ep);
        if ips.is_empty() {
            return Err("west's egress has no ready Pod".into());
        }
        Ok(ips)
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

    /// Runs `command` until it succeeds (a Pod's first connection may race kube-proxy).
    fn retry(&self, command: &str, within: Duration) -> DemoResult<String> {
        let start = Instant::now();
        loop {
            match self.sh.run(command) {
                Ok(out) => return Ok(out),
                Err(e) if start.elapsed() > within => return Err(e.into()),
                Err(_) => std::thread::sleep(Duration::from_millis(500)),
            }
        }
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

    /// Waits for `get` to return a non-empty value.
    fn wait_value(
        &self,
        what: &str,
        mut get: impl FnMut(&Demo) -> Result<String, Failed>,
    ) -> DemoResult<String> {
        let mut value = String::new();
        self.wait(what, Duration::from_secs(60), |d| {
            value = get(d)?.trim().to_owned();
            Ok(!value.is_empty())
        })?;
        Ok(value)
    }

    /// On failure: what ran, for the log.
    fn dump_state(&self) {
        for c in ["east", "west"] {
            if let Ok(out) = self.kubectl(c, &["get", "pods,svc,endpoints", "-A", "-o", "wide"]) {
                eprintln!("--- {c}:\n{out}");
            }
            if let Ok(out) = self.kubectl(c, &["get", "events", "-A", "--sort-by=.lastTimestamp"]) {
                eprintln!("--- {c} events:\n{out}");
            }
        }
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
}

/// podinfo's `message` field, or the whole response.
fn message_of(response: &str) -> String {
    serde_json::from_str::<Value>(response)
        .ok()
        .and_then(|v| v.get("message").and_then(Value::as_str).map(str::to_owned))
        .unwrap_or_else(|| response.trim().to_owned())
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
