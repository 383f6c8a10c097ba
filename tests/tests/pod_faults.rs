//! Faults on real Pods: mc installed and linked by its own rendered manifests on the testbed's
//! real clusters (the gateway and the mirror controller are Pods from mc's image), then:
//! the gateway Pod deleted, the link between the clusters' nodes cut, the controller Pod
//! restarted mid-sync, a node's containerd killed. Nothing is played by the test.
//!
//! The faults share one installation, so they run one at a time (`FAULT`); each test exports
//! Services of a namespace of its own.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod cli_common;
mod nodes_common;
use nodes_common::{check, eventually, ips};

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Output;
use std::sync::{Mutex, MutexGuard, OnceLock};
use std::time::Duration;

use mc_tests::Testbed;
use serde_json::Value;

const NS: &str = "linkerd-multicluster";
const EGRESS: &str = mc_core::egress::EGRESS_NAME;

/// mc installed in east (with its gateway) and west (a source), west linked to east. West's
/// egress runs in issuer mode with 2-minute leaves: it mints and renews its own certificate.
struct Installed {
    bed: &'static Testbed,
    work: PathBuf,
    gateway_ip: String,
}

static FAULT: Mutex<()> = Mutex::new(());

fn one_at_a_time() -> MutexGuard<'static, ()> {
    FAULT
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

fn installed() -> &'static Installed {
    static INSTALLED: OnceLock<Installed> = OnceLock::new();
    INSTALLED.get_or_init(install)
}

impl Installed {
    /// Runs `script` in bash with mc and kubectl on PATH and the testbed's kubeconfig.
    fn sh(&self, script: &str) -> String {
        check(self.sh_output(script), script)
    }

    fn sh_output(&self, script: &str) -> Output {
        sh_in(self.bed, &self.work, script)
    }

    fn kubectl(&self, ctx: &str, args: &[&str]) -> Result<String, String> {
        nodes_common::kubectl(self.bed, ctx, args)
    }

    fn json(&self, ctx: &str, args: &[&str]) -> Result<Value, String> {
        nodes_common::kubectl_json(self.bed, ctx, args)
    }

    /// Ready and not-ready addresses of a mirror's Endpoints in west.
    fn mirror_endpoints(&self, ns: &str, name: &str) -> Result<(Vec<String>, Vec<String>), String> {
        let ep = self.json("west", &["get", "endpoints", "-n", ns, name])?;
        Ok((ips(&ep, "addresses"), ips(&ep, "notReadyAddresses")))
    }

    /// Deletes west's controller Pod (its Deployment starts another); waits for the old one to
    /// be gone if `wait`.
    fn restart_controller(&self, wait: bool) {
        let wait = format!("--wait={wait}");
        self.kubectl(
            "west",
            &[
                "delete",
                "pods",
                "-n",
                NS,
                "-l",
                "component=controller",
                &wait,
            ],
        )
        .unwrap();
    }

    /// The names of east's gateway Pods.
    fn gateway_pods(&self) -> String {
        self.kubectl(
            "east",
            &[
                "get",
                "pods",
                "-n",
                NS,
                "-l",
                "app=linkerd-gateway",
                "-o",
                "name",
            ],
        )
        .unwrap()
    }

    /// Waits until the mirror `name` in `ns` has the gateway as its one ready address.
    fn wait_mirror_ready(&self, ns: &str, name: &str, secs: u64) {
        eventually(secs, &format!("{ns}/{name} ready"), || {
            let (ready, _) = self.mirror_endpoints(ns, name)?;
            if ready == vec![self.gateway_ip.clone()] {
                Ok(())
            } else {
                Err(format!("{ready:?}"))
            }
        });
    }

    /// Waits until `mc multicluster gateways` shows east alive (or not).
    fn wait_alive(&self, alive: bool, secs: u64) {
        eventually(secs, &format!("east alive={alive}"), || {
            match self.gateway_alive() {
                Some(a) if a == alive => Ok(()),
                other => Err(format!("{other:?}")),
            }
        });
    }

    /// The west controller's recent log and east's Link status, printed when a liveness wait fails.
    fn controller_diagnostics(&self) -> String {
        let out = self.sh_output(&format!(
            "kubectl --context west -n {NS} logs deployment/controller-east --tail=200; \
             kubectl --context west -n {NS} get link east -o jsonpath='{{.status}}'"
        ));
        format!(
            "controller diagnostics:\n{}\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    }

    fn gateway_alive(&self) -> Option<bool> {
        let out = self.sh_output("mc --context west multicluster gateways -o json");
        let v: Value = serde_json::from_slice(&out.stdout).ok()?;
        let rows = v
            .as_array()
            .cloned()
            .or_else(|| v.get("gateways").and_then(Value::as_array).cloned())?;
        rows.iter()
            .find(|r| r["clusterName"] == "east")
            .and_then(|r| r["alive"].as_bool())
    }

    /// Exports `count` Services `svc-<i>` in a new namespace `ns` of east, selecting the
    /// namespace's echo Pods (podinfo), and waits until every mirror is ready in west.
    fn export(&self, ns: &str, count: usize) {
        self.bed
            .kubectl("west")
            .args(["create", "ns", ns])
            .output()
            .unwrap();
        let mut items = vec![format!(
            r#"{{"apiVersion":"v1","kind":"Namespace","metadata":{{"name":"{ns}"}}}}"#
        )];
        items.push(format!(
            r#"{{"apiVersion":"apps/v1","kind":"Deployment","metadata":{{"name":"podinfo","namespace":"{ns}"}},
 "spec":{{"replicas":1,"selector":{{"matchLabels":{{"app":"podinfo"}}}},
  "template":{{"metadata":{{"labels":{{"app":"podinfo"}}}},
   "spec":{{"containers":[{{"name":"podinfo","image":"{image}","command":["./podinfo","--port=9898"],
     "readinessProbe":{{"httpGet":{{"path":"/readyz","port":9898}},"periodSeconds":2}}}}]}}}}}}}}"#,
            image = mc_tests::PODINFO_IMAGE
        ));
        for i in 0..count {
            items.push(format!(
                r#"{{"apiVersion":"v1","kind":"Service","metadata":{{"name":"svc-{i}","namespace":"{ns}",
 "labels":{{"mirror.linkerd.io/exported":"true"}}}},
 "spec":{{"selector":{{"app":"podinfo"}},"ports":[{{"name":"http","port":9898}}]}}}}"#
            ));
        }
        let list = format!(
            r#"{{"apiVersion":"v1","kind":"List","items":[{}]}}"#,
            items.join(",")
        );
        check(
            self.bed.apply("east", &list).unwrap(),
            "apply the exported Services",
        );
        let gateway = self.gateway_ip.clone();
        eventually(180, &format!("{count} ready mirrors in {ns}"), || {
            for i in 0..count {
                let (ready, _) = self.mirror_endpoints(ns, &format!("svc-{i}-east"))?;
                if ready != vec![gateway.clone()] {
                    return Err(format!("svc-{i}-east: ready {ready:?}"));
                }
            }
            Ok(())
        });
    }

    /// The resourceVersions of every mirror Service and Endpoints in `ns` of west.
    fn mirror_versions(&self, ns: &str) -> BTreeMap<String, String> {
        let v = self
            .json(
                "west",
                &[
                    "get",
                    "services,endpoints",
                    "-n",
                    ns,
                    "-l",
                    "mirror.linkerd.io/mirrored-service=true",
                ],
            )
            .unwrap();
        v["items"]
            .as_array()
            .unwrap()
            .iter()
            .map(|o| {
                (
                    format!("{}/{}", o["kind"], o["metadata"]["name"]),
                    o["metadata"]["resourceVersion"]
                        .as_str()
                        .unwrap()
                        .to_owned(),
                )
            })
            .collect()
    }
}

fn sh_in(bed: &Testbed, work: &Path, script: &str) -> Output {
    nodes_common::shell(bed, cli_common::mc_bin().parent().unwrap(), work, script)
}

/// Installs and links with the manifests mc renders, as a user would.
fn install() -> Installed {
    let bed = mc_tests::shared_with_nodes().expect("the testbed with nodes starts");
    let work = std::env::temp_dir().join(format!("mc-pod-faults-{}", std::process::id()));
    std::fs::create_dir_all(&work).unwrap();
    let sh = |script: &str| check(sh_in(bed, &work, script), script);
    nodes_common::trust_and_linkerd_config(bed, cli_common::mc_bin().parent().unwrap(), &work);
    sh("mc --context east multicluster install --egress=false | kubectl --context east apply -f -");
    sh(
        "mc --context west multicluster install --gateway=false --issuer-secret linkerd-multicluster-issuer --set identity.leafLifetime=2m | kubectl --context west apply -f -",
    );
    sh(
        "mc multicluster issuer-secret --issuer-cert west-issuer.crt --issuer-key west-issuer.key --trust-anchors root.crt | kubectl --context west apply -f -",
    );
    sh(
        "mc --context east multicluster gateway-identity --issuer-cert east-issuer.crt --issuer-key east-issuer.key --trust-anchors root.crt | kubectl --context east apply -f -",
    );
    bed.wait_rollout("east", NS, "deployment/linkerd-gateway")
        .unwrap();
    let gateway_ip = eventually(60, "the gateway's LoadBalancer address", || {
        let out = sh_in(
            bed,
            &work,
            "kubectl --context east -n linkerd-multicluster get svc linkerd-gateway -o jsonpath={.status.loadBalancer.ingress[0].ip}",
        );
        let ip = String::from_utf8_lossy(&out.stdout).trim().to_owned();
        if ip.is_empty() {
            Err("none yet".to_owned())
        } else {
            Ok(ip)
        }
    });
    sh(
        "mc --context east multicluster link --cluster-name east --mode gateway --enable-headless-services | kubectl --context west apply -f -",
    );
    bed.wait_rollout("west", NS, "deployment/controller-east")
        .unwrap();
    bed.wait_rollout("west", NS, &format!("deployment/{EGRESS}"))
        .unwrap();
    let installed = Installed {
        bed,
        work,
        gateway_ip,
    };
    installed.wait_alive(true, 120);
    installed
}

#[test]
fn a_deleted_gateway_pod_comes_back_and_its_mirrors_recover() {
    let _one = one_at_a_time();
    let mc = installed();
    mc.export("fault-gwpod", 1);
    let old = mc.gateway_pods();
    // A replacement that starts at once is Ready before three probes fail (no flapping), so the
    // test holds it back: without its identity Secret the new Pod cannot start.
    let secret = mc
        .kubectl(
            "east",
            &[
                "get",
                "secret",
                "-n",
                NS,
                "linkerd-gateway-identity",
                "-o",
                "json",
            ],
        )
        .unwrap();
    mc.kubectl(
        "east",
        &["delete", "secret", "-n", NS, "linkerd-gateway-identity"],
    )
    .unwrap();
    mc.kubectl(
        "east",
        &[
            "delete",
            "pods",
            "-n",
            NS,
            "-l",
            "app=linkerd-gateway",
            "--wait=true",
        ],
    )
    .unwrap();
    let gateway = mc.gateway_ip.clone();
    let gone = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        eventually(
            60,
            "the mirror not ready while the gateway Pod is gone",
            || {
                let (ready, not_ready) = mc.mirror_endpoints("fault-gwpod", "svc-0-east")?;
                if ready.is_empty() && not_ready == vec![gateway.clone()] {
                    Ok(())
                } else {
                    Err(format!("ready {ready:?}, not ready {not_ready:?}"))
                }
            },
        );
    }));
    let secret: Value = serde_json::from_str(&secret).unwrap();
    let restored = serde_json::json!({
        "apiVersion": "v1", "kind": "Secret", "type": secret["type"],
        "metadata": {"name": "linkerd-gateway-identity", "namespace": NS,
                     "labels": secret["metadata"]["labels"]},
        "data": secret["data"],
    });
    check(
        mc.bed.apply("east", &restored.to_string()).unwrap(),
        "restore the identity Secret",
    );
    if let Err(panic) = gone {
        std::panic::resume_unwind(panic);
    }
    mc.bed
        .wait_rollout("east", NS, "deployment/linkerd-gateway")
        .unwrap();
    let new = mc.gateway_pods();
    assert_ne!(old.trim(), new.trim(), "the Deployment started a new Pod");
    mc.wait_mirror_ready("fault-gwpod", "svc-0-east", 120);
}

#[test]
fn a_cut_link_between_the_nodes_makes_mirrors_not_ready_until_restored() {
    let _one = one_at_a_time();
    let mc = installed();
    mc.export("fault-link", 1);
    mc.bed.set_node_link("east", false).unwrap();
    let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        // No ready address: the probe fails, and east's node controller soon marks the node
        // (and with it podinfo's endpoint) not ready too, which empties the mirror.
        eventually(
            60,
            "the mirror without a ready address, east's node cut off",
            || {
                let (ready, not_ready) = mc.mirror_endpoints("fault-link", "svc-0-east")?;
                if ready.is_empty() {
                    Ok(())
                } else {
                    Err(format!("ready {ready:?}, not ready {not_ready:?}"))
                }
            },
        );
        // Three failed probe rounds (3 s period, 1 s timeout) normally take about 12 s; the
        // bound is generous because the Link status write follows the probe verdict.
        if let Err(panic) =
            std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| mc.wait_alive(false, 120)))
        {
            eprintln!("{}", mc.controller_diagnostics());
            std::panic::resume_unwind(panic);
        }
    }));
    mc.bed.set_node_link("east", true).unwrap();
    if let Err(panic) = result {
        std::panic::resume_unwind(panic);
    }
    mc.wait_mirror_ready("fault-link", "svc-0-east", 120);
    mc.wait_alive(true, 60);
}

#[test]
fn a_controller_pod_restarted_mid_sync_converges_without_spurious_writes() {
    let _one = one_at_a_time();
    let mc = installed();
    const COUNT: usize = 40;
    // Export, and restart the controller while it is mirroring them.
    let ns = "fault-restart";
    mc.bed
        .kubectl("west")
        .args(["create", "ns", ns])
        .output()
        .unwrap();
    std::thread::scope(|scope| {
        let exporter = scope.spawn(|| mc.export(ns, COUNT));
        eventually(60, "the first mirrors", || {
            let n = mc.mirror_versions(ns).len();
            if n > 0 {
                Ok(())
            } else {
                Err("none yet".to_owned())
            }
        });
        mc.restart_controller(false);
        exporter.join().unwrap();
    });
    mc.bed
        .wait_rollout("west", NS, "deployment/controller-east")
        .unwrap();
    assert_eq!(
        mc.mirror_versions(ns).len(),
        2 * COUNT,
        "a Service and Endpoints per export"
    );
    // Converged: a further restart writes nothing.
    let before = mc.mirror_versions(ns);
    mc.restart_controller(true);
    mc.bed
        .wait_rollout("west", NS, "deployment/controller-east")
        .unwrap();
    // Let the new controller finish its initial sync and a probe round.
    mc.wait_alive(true, 60);
    std::thread::sleep(Duration::from_secs(10));
    let after = mc.mirror_versions(ns);
    let changed: Vec<&String> = before
        .iter()
        .filter(|(k, v)| after.get(*k) != Some(v))
        .map(|(k, _)| k)
        .collect();
    assert!(
        changed.is_empty(),
        "a restart rewrote converged mirrors: {changed:?}"
    );
}

#[test]
fn a_killed_containerd_comes_back_and_the_pods_serve_again() {
    let _one = one_at_a_time();
    let mc = installed();
    mc.export("fault-containerd", 1);
    let node = mc.bed.cluster("east").unwrap().node().unwrap();
    node.kill_containerd().unwrap();
    assert!(!node.containerd_running());
    // kubelet sees the runtime gone: the node reports it.
    eventually(60, "kubelet to report the runtime down", || {
        let ready = mc.kubectl(
            "east",
            &[
                "get",
                "node",
                "east-node",
                "-o",
                "jsonpath={.status.conditions[?(@.type==\"Ready\")].message}",
            ],
        )?;
        if ready.contains("container runtime") {
            Ok(())
        } else {
            Err(ready)
        }
    });
    node.restart_containerd().unwrap();
    mc.bed.wait_node_ready("east").unwrap();
    mc.bed
        .wait_rollout("east", NS, "deployment/linkerd-gateway")
        .unwrap();
    mc.wait_mirror_ready("fault-containerd", "svc-0-east", 120);
    // The gateway Pod serves: its admin port answers from the host.
    let out = mc.sh(&format!(
        "curl -sS --max-time 5 http://{}:4191/ready",
        mc.gateway_ip
    ));
    assert!(!out.is_empty(), "the gateway's /ready answered");
}

/// Puts Link east back in gateway mode when dropped, so a failed egress test leaves the other
/// faults the installation they expect.
struct GatewayModeAfter<'a>(&'a Installed);

impl Drop for GatewayModeAfter<'_> {
    fn drop(&mut self) {
        let _ = self.0.set_mode("gateway");
    }
}

impl Installed {
    fn set_mode(&self, mode: &str) -> Result<String, String> {
        self.kubectl(
            "west",
            &[
                "annotate",
                "--overwrite",
                "-n",
                NS,
                "links.multicluster.linkerd.io",
                "east",
                &format!("{}={mode}", mc_core::labels::LINK_MODE),
            ],
        )
    }

    /// The ready egress Pod IPs in west.
    fn egress_ips(&self) -> Vec<String> {
        let ep = self
            .json("west", &["get", "endpoints", "-n", NS, EGRESS])
            .unwrap();
        ips(&ep, "addresses")
    }

    /// `curl` from a plain Pod (no sidecar, no certificate) in `ns` of west.
    fn curl_from_plain_pod(&self, ns: &str, url: &str) -> Result<String, String> {
        nodes_common::curl(self.bed, "west", ns, url)
    }

    /// West's egress route table ConfigMap.
    fn routes(&self) -> Result<Value, String> {
        let cm = mc_core::egress::ROUTES_CONFIG_MAP;
        self.json("west", &["get", "configmap", "-n", NS, cm])
    }
}

/// Issue #18: a plain Pod in west reaches an exported Service of east through west's egress,
/// after Link east is switched from gateway to egress mode; the switch rewrites the mirror's
/// Endpoints in place (same Service object), and switching back restores the gateway.
#[test]
fn a_plain_pod_reaches_east_through_the_egress_and_the_mode_switches_in_place() {
    let _one = one_at_a_time();
    let mc = installed();
    let ns = "egress-plain";
    mc.export(ns, 1);
    nodes_common::client_deployment(mc.bed, "west", ns, 1);
    let uid = |mc: &Installed| {
        mc.json("west", &["get", "svc", "-n", ns, "svc-0-east"])
            .unwrap()["metadata"]["uid"]
            .as_str()
            .unwrap()
            .to_owned()
    };
    let before = uid(mc);
    let url = format!("http://svc-0-east.{ns}.svc.cluster.local:9898/");
    // Gateway mode: the plain Pod's request reaches the gateway without mTLS and fails.
    assert!(
        mc.curl_from_plain_pod(ns, &url)
            .map_or(true, |body| !body.contains("greetings from")),
        "a plain Pod must not get through in gateway mode"
    );

    let _restore = GatewayModeAfter(mc);
    mc.set_mode("egress").unwrap();
    let egress = mc.egress_ips();
    assert!(!egress.is_empty(), "the egress has ready Pods");
    eventually(90, "the mirror's endpoints are the egress Pods", || {
        let ep = mc.json("west", &["get", "endpoints", "-n", ns, "svc-0-east"])?;
        let ready = ips(&ep, "addresses");
        let port = ep["subsets"][0]["ports"][0]["port"].as_u64().unwrap_or(0);
        if ready == egress && (20000..=32767).contains(&port) {
            Ok(())
        } else {
            Err(format!("ready {ready:?} port {port}"))
        }
    });
    let body = eventually(
        60,
        "podinfo answers the plain Pod through the egress",
        || {
            let body = mc.curl_from_plain_pod(ns, &url)?;
            if body.contains("greetings from") {
                Ok(body)
            } else {
                Err(body)
            }
        },
    );
    assert!(body.contains("hostname"), "{body}");
    let routes = mc.routes().unwrap();
    let key = mc_core::egress::route_key(ns, "svc-0-east", 9898);
    let route = routes["data"][&key].as_str().unwrap_or_default();
    assert!(
        route.contains(&format!("svc-0.{ns}.svc.cluster.local:9898")),
        "{routes}"
    );
    assert_eq!(
        uid(mc),
        before,
        "the mode switch must not recreate the mirror"
    );

    mc.set_mode("gateway").unwrap();
    mc.wait_mirror_ready(ns, "svc-0-east", 90);
    eventually(60, "the Link's routes are removed in gateway mode", || {
        let routes = mc.routes()?;
        if routes["data"].get(&key).is_none() {
            Ok(())
        } else {
            Err(routes.to_string())
        }
    });
    assert_eq!(
        uid(mc),
        before,
        "switching back must not recreate the mirror"
    );
}

impl Installed {
    /// `egress_identity_certificate_renewals_total`-style counter `name` summed over west's
    /// ready egress Pods, read from their admin ports by the plain client in `ns`.
    fn egress_metric(&self, ns: &str, name: &str) -> Result<f64, String> {
        let mut sum = 0.0;
        for ip in self.egress_ips() {
            let text = self.curl_from_plain_pod(ns, &format!("http://{ip}:4191/metrics"))?;
            sum += text
                .lines()
                .find_map(|l| l.strip_prefix(name)?.trim().parse::<f64>().ok())
                .ok_or_else(|| format!("{ip}: no {name} in\n{text}"))?;
        }
        Ok(sum)
    }
}

/// Issue #18: west's egress mints 2-minute leaves from west's issuer and renews them; while a
/// plain Pod keeps calling east through it, every egress Pod renews at least twice and not one
/// request fails.
#[test]
fn the_egress_renews_its_leaf_while_a_plain_pod_keeps_calling() {
    let _one = one_at_a_time();
    let mc = installed();
    let ns = "egress-renew";
    mc.export(ns, 1);
    nodes_common::client_deployment(mc.bed, "west", ns, 1);
    let _restore = GatewayModeAfter(mc);
    mc.set_mode("egress").unwrap();
    let url = format!("http://svc-0-east.{ns}.svc.cluster.local:9898/");
    eventually(90, "the first answer through the egress", || {
        let body = mc.curl_from_plain_pod(ns, &url)?;
        body.contains("greetings from").then_some(()).ok_or(body)
    });
    let renewals = "identity_certificate_renewals_total";
    let pods = mc.egress_ips().len() as f64;
    let start = mc.egress_metric(ns, renewals).unwrap();
    let began = std::time::Instant::now();
    let (mut ok, mut failed) = (0, Vec::new());
    loop {
        match mc.curl_from_plain_pod(ns, &url) {
            Ok(body) if body.contains("greetings from") => ok += 1,
            Ok(body) => failed.push(body),
            Err(e) => failed.push(e),
        }
        let now = mc.egress_metric(ns, renewals).unwrap_or(start);
        if now >= start + 2.0 * pods {
            break;
        }
        assert!(
            began.elapsed() < Duration::from_secs(300),
            "fewer than two renewals per egress Pod in 300 s ({start} -> {now})"
        );
    }
    assert!(
        failed.is_empty(),
        "{} of {} requests failed: {failed:?}",
        failed.len(),
        ok + failed.len()
    );
    assert!(ok > 20, "only {ok} requests");
}

/// Ends each answer in [`Installed::shares`]' output.
const END: &str = "<<mc-end>>";

/// Scales east's gateway back to one replica when dropped.
struct GatewayBackAfter<'a>(&'a Installed);

impl Drop for GatewayBackAfter<'_> {
    fn drop(&mut self) {
        let _ = self.0.scale_gateway(1);
    }
}

impl Installed {
    fn scale_gateway(&self, replicas: u32) -> Result<String, String> {
        self.kubectl(
            "east",
            &[
                "scale",
                "-n",
                NS,
                "deployment/linkerd-gateway",
                &format!("--replicas={replicas}"),
            ],
        )
    }

    /// `n` requests from the plain Pod in `ns` of west to `url`, one connection each: how many
    /// east answered, how many west, and the failures.
    fn shares(&self, ns: &str, url: &str, n: usize) -> (usize, usize, Vec<String>) {
        let script = format!(
            "i=0; while [ $i -lt {n} ]; do i=$((i+1)); curl -sS -m 5 -H 'Connection: close' {url} 2>&1; echo '{END}'; done"
        );
        let out = self
            .bed
            .kubectl("west")
            .args(["exec", "-n", ns, "deploy/client", "--", "sh", "-c", &script])
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        let (mut east, mut west, mut failed) = (0, 0, Vec::new());
        for line in text.split(END).take(n) {
            if line.contains("greetings from east") {
                east += 1;
            } else if line.contains("greetings from west") {
                west += 1;
            } else {
                failed.push(line.trim().to_owned());
            }
        }
        let missing = n.saturating_sub(east + west + failed.len());
        failed.extend((0..missing).map(|_| String::from_utf8_lossy(&out.stderr).into_owned()));
        (east, west, failed)
    }

    /// podinfo answering `greetings from <ctx>`, its Service a federated member (the shipped
    /// `examples/federated/podinfo-member.yaml`, in namespace `ns`).
    fn federated_podinfo(&self, ctx: &str, ns: &str) {
        let deployment = serde_json::json!({"apiVersion":"v1","kind":"List","items":[
            {"apiVersion":"v1","kind":"Namespace","metadata":{"name": ns}},
            {"apiVersion":"apps/v1","kind":"Deployment","metadata":{"name":"podinfo","namespace": ns},
             "spec":{"replicas":1,"selector":{"matchLabels":{"app":"podinfo"}},
              "template":{"metadata":{"labels":{"app":"podinfo"}},
               "spec":{"containers":[{"name":"podinfo","image": mc_tests::PODINFO_IMAGE,
                 "command":["./podinfo","--port=9898",&format!("--ui-message=greetings from {ctx}")],
                 "ports":[{"name":"http","containerPort":9898}],
                 "readinessProbe":{"httpGet":{"path":"/readyz","port":9898},"periodSeconds":2}}]}}}}]});
        check(
            self.bed.apply(ctx, &deployment.to_string()).unwrap(),
            "apply podinfo",
        );
        let member = include_str!("../../examples/federated/podinfo-member.yaml")
            .replace("namespace: test", &format!("namespace: {ns}"));
        check(
            self.bed.apply(ctx, &member).unwrap(),
            "apply podinfo-member.yaml",
        );
        self.bed
            .wait_rollout(ctx, ns, "deployment/podinfo")
            .unwrap();
    }
}

impl Installed {
    /// Waits until the ready addresses of Endpoints `ns/name` in west are the egress Pods.
    fn wait_at_egress(&self, ns: &str, name: &str, secs: u64) {
        let egress = self.egress_ips();
        eventually(
            secs,
            &format!("{ns}/{name}'s Endpoints at the egress Pods"),
            || {
                let ep = self.json("west", &["get", "endpoints", "-n", ns, name])?;
                let ready = ips(&ep, "addresses");
                (ready == egress).then_some(()).ok_or(format!("{ready:?}"))
            },
        );
    }

    /// Creates namespace `ns` in west.
    fn west_namespace(&self, ns: &str) {
        let obj =
            format!(r#"{{"apiVersion":"v1","kind":"Namespace","metadata":{{"name":"{ns}"}}}}"#);
        check(
            self.bed.apply("west", &obj).unwrap(),
            "the namespace in west",
        );
    }
}

/// Binomial bounds for `n` fair coin flips: mean ± 3.5 standard deviations.
fn binomial_bounds(n: usize) -> std::ops::RangeInclusive<usize> {
    let sd = (n as f64 * 0.25).sqrt();
    let lo = (n as f64 / 2.0 - 3.5 * sd).floor() as usize;
    let hi = (n as f64 / 2.0 + 3.5 * sd).ceil() as usize;
    lo..=hi
}

/// Issue #18: podinfo is a federated member in east and west; a plain Pod in west calls
/// `podinfo-federated` through west's egress. Split 50/50 by default and by the shipped
/// HTTPRoute (the guide's podinfo 50 / podinfo-east 50), weights 0/100 move everything, east's
/// gateway scaled to 0 sends every request to west without one failing (detection time
/// measured), and scaled back the shares return.
#[test]
fn a_plain_pod_splits_over_a_federated_service_and_fails_over() {
    let _one = one_at_a_time();
    let mc = installed();
    let ns = "egress-fed";
    mc.federated_podinfo("east", ns);
    mc.federated_podinfo("west", ns);
    nodes_common::client_deployment(mc.bed, "west", ns, 1);
    let crd = mc_tests::httproute_crd().unwrap();
    mc.sh(&format!(
        "kubectl --context west apply --server-side --force-conflicts -f {} && kubectl --context west wait --for condition=established --timeout=60s crd/httproutes.gateway.networking.k8s.io",
        crd.display()
    ));
    let _restore = GatewayModeAfter(mc);
    mc.set_mode("egress").unwrap();
    mc.wait_at_egress(ns, "podinfo-federated", 120);
    let url = format!("http://podinfo-federated.{ns}.svc.cluster.local:9898/");
    eventually(90, "both clusters answer through podinfo-federated", || {
        let (e, w, failed) = mc.shares(ns, &url, 10);
        (e > 0 && w > 0)
            .then_some(())
            .ok_or(format!("east {e} west {w} failed {failed:?}"))
    });

    // Every member weighs 1: 200 connections split within binomial bounds.
    let (e, w, failed) = mc.shares(ns, &url, 200);
    assert!(failed.is_empty(), "{failed:?}");
    assert!(binomial_bounds(200).contains(&e), "east {e} west {w}");

    // Weights 0/100 (the shipped split with its weights changed) move all traffic to east.
    let split = include_str!("../../examples/federated/podinfo-split.yaml")
        .replace("namespace: test", &format!("namespace: {ns}"));
    let all_east =
        split
            .replacen("weight: 50", "weight: 0", 1)
            .replacen("weight: 50", "weight: 100", 1);
    check(
        mc.bed.apply("west", &all_east).unwrap(),
        "apply the 0/100 split",
    );
    eventually(60, "weights 0/100 take effect", || {
        let (e, w, f) = mc.shares(ns, &url, 10);
        (w == 0 && e == 10)
            .then_some(())
            .ok_or(format!("east {e} west {w} failed {f:?}"))
    });
    assert_eq!(mc.shares(ns, &url, 50), (50, 0, vec![]));

    // The guide's split as shipped: 50/50.
    check(
        mc.bed.apply("west", &split).unwrap(),
        "apply podinfo-split.yaml",
    );
    eventually(60, "the 50/50 split takes effect", || {
        let (e, w, f) = mc.shares(ns, &url, 20);
        (e > 0 && w > 0)
            .then_some(())
            .ok_or(format!("east {e} west {w} failed {f:?}"))
    });
    let (e, w, failed) = mc.shares(ns, &url, 200);
    assert!(failed.is_empty(), "{failed:?}");
    assert!(binomial_bounds(200).contains(&e), "east {e} west {w}");

    // East's gateway scaled to 0: not one request fails, and once the egress has detected it
    // (by probe; until then a connection to east fails over to west) every request is west's.
    let _back = GatewayBackAfter(mc);
    mc.scale_gateway(0).unwrap();
    mc.sh(&format!(
        "kubectl --context east -n {NS} wait --for=delete pod -l app=linkerd-gateway --timeout=120s"
    ));
    let gone = std::time::Instant::now();
    let healthy = format!(
        "egress_member_healthy{{target=\"podinfo-federated.{ns}.svc:9898\",member=\"east\"}}"
    );
    let mut all_failed = Vec::new();
    let detected = loop {
        let (e, _, failed) = mc.shares(ns, &url, 5);
        all_failed.extend(failed);
        assert_eq!(e, 0, "no answer from east once its gateway is gone");
        if mc.egress_metric(ns, &healthy) == Ok(0.0) {
            break gone.elapsed();
        }
        assert!(
            gone.elapsed() < Duration::from_secs(60),
            "east never marked unhealthy"
        );
    };
    let (e, w, failed) = mc.shares(ns, &url, 50);
    all_failed.extend(failed);
    assert!(all_failed.is_empty(), "{all_failed:?}");
    assert_eq!((e, w), (0, 50));
    eprintln!(
        "federated failover: east marked unhealthy by every egress Pod {detected:?} after its gateway Pods were gone"
    );
    assert!(
        detected <= Duration::from_secs(10),
        "detection took {detected:?}"
    );

    // Back up: the shares return.
    mc.scale_gateway(1).unwrap();
    mc.bed
        .wait_rollout("east", NS, "deployment/linkerd-gateway")
        .unwrap();
    eventually(90, "east answers again", || {
        let (e, w, f) = mc.shares(ns, &url, 20);
        (e > 0 && w > 0 && f.is_empty())
            .then_some(())
            .ok_or(format!("east {e} west {w} failed {f:?}"))
    });
}

/// Issue #18: a capture of the link between west's node and the other clusters while a plain
/// Pod calls east through the egress: every connection opened to east's gateway carries only
/// TLS records, both ways; podinfo's answer never crosses in plaintext; and the only plaintext
/// flows are the controller's probes of the gateway's admin port (`GET /ready`).
#[test]
fn the_link_between_the_clusters_carries_only_tls() {
    let _one = one_at_a_time();
    let mc = installed();
    let ns = "egress-wire";
    mc.export(ns, 1);
    nodes_common::client_deployment(mc.bed, "west", ns, 1);
    let _restore = GatewayModeAfter(mc);
    mc.set_mode("egress").unwrap();
    let url = format!("http://svc-0-east.{ns}.svc.cluster.local:9898/");
    eventually(90, "the first answer through the egress", || {
        let body = mc.curl_from_plain_pod(ns, &url)?;
        body.contains("greetings from").then_some(()).ok_or(body)
    });
    let iface = mc.bed.node_link_interface("west").unwrap();
    let capture = mc_tests::capture::Capture::start(&iface, &mc.work).unwrap();
    for _ in 0..10 {
        let body = mc.curl_from_plain_pod(ns, &url).unwrap();
        assert!(body.contains("greetings from"), "{body}");
    }
    // Long enough for a few probe rounds of the gateway (3 s period).
    std::thread::sleep(Duration::from_secs(7));
    let flows = capture.stop().unwrap();
    let gateway: std::net::Ipv4Addr = mc.gateway_ip.parse().unwrap();
    let mut data = 0;
    let mut probes = 0;
    for (key, flow) in &flows {
        assert!(
            !flow.bytes.windows(14).any(|w| w == b"greetings from"),
            "podinfo's answer in plaintext on {key}"
        );
        let ports = [key.src.1, key.dst.1];
        let to_gateway = key.src.0 == gateway || key.dst.0 == gateway;
        if to_gateway && ports.contains(&4191) {
            // The controller's probe: plaintext GET /ready and its answer, nothing else.
            let text = String::from_utf8_lossy(&flow.bytes);
            assert!(
                text.starts_with("GET /ready ") || text.starts_with("HTTP/1.1 "),
                "{key}: {text}"
            );
            probes += 1;
            continue;
        }
        if !flow.opened {
            continue; // opened before the capture: its first bytes are not in it
        }
        if let Err(e) = mc_tests::capture::tls_records(&flow.bytes) {
            panic!("{key} is not TLS: {e}");
        }
        if to_gateway && ports.contains(&4143) {
            data += 1;
        }
    }
    assert!(
        data >= 20,
        "both directions of the 10 calls' connections to the gateway: {data} flows in {:?}",
        flows.keys().map(ToString::to_string).collect::<Vec<_>>()
    );
    assert!(probes > 0, "the probe flows were captured too");
}

/// Issue #18: through west's egress, a plain Pod reaches east's Services of every kind: an
/// opaque TCP echo (`curl telnet://`), HTTP/2 with prior knowledge (podinfo with `--h2c`), and a
/// WebSocket upgrade (podinfo's `/ws/echo` answers 101 with the key's accept value).
#[test]
fn a_plain_pod_reaches_tcp_http2_and_websocket_services_through_the_egress() {
    let _one = one_at_a_time();
    let mc = installed();
    let ns = "egress-protocols";
    let objects = serde_json::json!({"apiVersion":"v1","kind":"List","items":[
        {"apiVersion":"v1","kind":"Namespace","metadata":{"name": ns}},
        {"apiVersion":"apps/v1","kind":"Deployment","metadata":{"name":"echo","namespace": ns},
         "spec":{"replicas":1,"selector":{"matchLabels":{"app":"echo"}},
          "template":{"metadata":{"labels":{"app":"echo"}},
           "spec":{"containers":[{"name":"echo","image": mc_tests::CLIENT_IMAGE,
             "command":["/echo","7007"],"ports":[{"containerPort":7007}]}]}}}},
        {"apiVersion":"apps/v1","kind":"Deployment","metadata":{"name":"h2","namespace": ns},
         "spec":{"replicas":1,"selector":{"matchLabels":{"app":"h2"}},
          "template":{"metadata":{"labels":{"app":"h2"}},
           "spec":{"containers":[{"name":"podinfo","image": mc_tests::PODINFO_IMAGE,
             "command":["./podinfo","--port=9898","--h2c","--ui-message=greetings from east"],
             "readinessProbe":{"httpGet":{"path":"/readyz","port":9898},"periodSeconds":2}}]}}}},
        {"apiVersion":"v1","kind":"Service","metadata":{"name":"echo","namespace": ns,
          "labels":{"mirror.linkerd.io/exported":"true"}},
         "spec":{"selector":{"app":"echo"},"ports":[{"name":"tcp","port":7007}]}},
        {"apiVersion":"v1","kind":"Service","metadata":{"name":"h2","namespace": ns,
          "labels":{"mirror.linkerd.io/exported":"true"}},
         "spec":{"selector":{"app":"h2"},"ports":[{"name":"http","port":9898}]}}]});
    check(
        mc.bed.apply("east", &objects.to_string()).unwrap(),
        "apply echo and h2",
    );
    for d in ["deployment/echo", "deployment/h2"] {
        mc.bed.wait_rollout("east", ns, d).unwrap();
    }
    mc.west_namespace(ns);
    nodes_common::client_deployment(mc.bed, "west", ns, 1);
    let _restore = GatewayModeAfter(mc);
    mc.set_mode("egress").unwrap();
    let exec = |script: &str| nodes_common::client_sh(mc.bed, "west", ns, script);
    // Opaque TCP: the bytes come back (curl then waits for a close that never comes: -m 3).
    eventually(120, "the TCP echo through the egress", || {
        let out = exec(&format!(
            "echo mc-opaque-hello | curl -sS -m 3 telnet://echo-east.{ns}.svc.cluster.local:7007"
        ));
        out.contains("mc-opaque-hello").then_some(()).ok_or(out)
    });
    // HTTP/2 with prior knowledge, end to end.
    let h2 = format!("http://h2-east.{ns}.svc.cluster.local:9898/");
    let out = eventually(90, "HTTP/2 through the egress", || {
        let out = exec(&format!(
            "curl -sS -m 5 --http2-prior-knowledge -o /dev/null -w '%{{http_version}} %{{http_code}}' {h2}"
        ));
        (out.trim() == "2 200").then_some(out.clone()).ok_or(out)
    });
    assert_eq!(out.trim(), "2 200");
    // A WebSocket upgrade: 101 and the accept value of RFC 6455's sample key.
    let out = exec(&format!(
        "curl -sS -i -m 3 -H 'Connection: Upgrade' -H 'Upgrade: websocket' -H 'Sec-WebSocket-Version: 13' \
         -H 'Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==' {h2}ws/echo"
    ));
    assert!(out.starts_with("HTTP/1.1 101"), "{out}");
    assert!(
        out.contains("s3pPLMBiTxaQ9kYGzzhZRbK+xOo="),
        "the upgrade's accept value came back: {out}"
    );
}

/// Issue #18: a headless (StatefulSet) Service of east, mirrored with its endpoint mirrors, is
/// reached through the egress by a plain Pod at `<pod>.<svc>-east`: the endpoint mirror's
/// Endpoints are the egress Pods, and the gateway resolves `<pod>.<svc>.<ns>.svc.<domain>`.
#[test]
fn a_plain_pod_reaches_a_statefulset_pod_through_the_egress() {
    let _one = one_at_a_time();
    let mc = installed();
    let ns = "egress-headless";
    let objects = serde_json::json!({"apiVersion":"v1","kind":"List","items":[
        {"apiVersion":"v1","kind":"Namespace","metadata":{"name": ns}},
        {"apiVersion":"v1","kind":"Service","metadata":{"name":"web","namespace": ns,
          "labels":{"mirror.linkerd.io/exported":"true"}},
         "spec":{"clusterIP":"None","selector":{"app":"web"},
          "ports":[{"name":"http","port":80,"targetPort":9898}]}},
        {"apiVersion":"apps/v1","kind":"StatefulSet","metadata":{"name":"podinfo","namespace": ns},
         "spec":{"serviceName":"web","replicas":1,"selector":{"matchLabels":{"app":"web"}},
          "template":{"metadata":{"labels":{"app":"web"}},
           "spec":{"containers":[{"name":"podinfo","image": mc_tests::PODINFO_IMAGE,
             "command":["./podinfo","--port=9898","--ui-message=greetings from east"],
             "readinessProbe":{"httpGet":{"path":"/readyz","port":9898},"periodSeconds":2}}]}}}}]});
    check(
        mc.bed.apply("east", &objects.to_string()).unwrap(),
        "apply the StatefulSet",
    );
    mc.bed
        .wait_rollout("east", ns, "statefulset/podinfo")
        .unwrap();
    mc.west_namespace(ns);
    nodes_common::client_deployment(mc.bed, "west", ns, 1);
    let _restore = GatewayModeAfter(mc);
    mc.set_mode("egress").unwrap();
    mc.wait_at_egress(ns, "podinfo-0-east", 120);
    // Service port 80, targetPort 9898: east's gateway must dial the Pod at its targetPort
    // (issue #19 item 4; the DNS resolver would dial podinfo-0's address at 80).
    let url = format!("http://podinfo-0.web-east.{ns}.svc.cluster.local:80/");
    let body = eventually(90, "podinfo-0 answers through the egress", || {
        let body = mc.curl_from_plain_pod(ns, &url)?;
        body.contains("greetings from east")
            .then_some(body.clone())
            .ok_or(body)
    });
    assert!(
        body.contains("podinfo-0"),
        "the StatefulSet's pod answered: {body}"
    );
}
