//! `mc multicluster check` and `gateways` on a private east/west testbed: healthy, then
//! (c) controller down, (a) trust anchors differ, (b) credentials revoked.
//!
//! The testbed runs no pods, so the mirror controller's observable state (its leader Lease and
//! the Link's `status.gateway`) is written here the way the controller writes it; what is under
//! test is how `check` and `gateways` read it.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::process::{Command, Output};
use std::time::{Duration, SystemTime};

use mc_core::pki::{AnchorOptions, create_trust_anchor};
use mc_tests::Testbed;

mod cli_common;
use cli_common::{KillOnDrop, free_port, gateway_bin, mc_bin, mirror_bin, ok, with_stdin};

struct Env {
    bed: Testbed,
}

impl Env {
    fn mc_command(&self, context: &str, args: &[&str]) -> Command {
        let mut cmd = Command::new(mc_bin());
        cmd.arg("--kubeconfig")
            .arg(self.bed.kubeconfig())
            .arg("--context")
            .arg(context)
            .args(args);
        cmd
    }

    fn mc(&self, context: &str, args: &[&str]) -> Output {
        self.mc_command(context, args).output().unwrap()
    }

    fn kubectl(&self, context: &str, args: &[&str]) -> Output {
        self.bed.kubectl(context).args(args).output().unwrap()
    }

    fn apply(&self, context: &str, yaml: &str) {
        ok(&self.bed.apply(context, yaml).unwrap());
    }

    fn linkerd_config(&self, context: &str, anchors_pem: &str) {
        let values = format!(
            "identityTrustAnchorsPEM: |\n{}identityTrustDomain: cluster.local\nclusterDomain: cluster.local\n",
            anchors_pem
                .lines()
                .map(|l| format!("  {l}\n"))
                .collect::<String>()
        );
        let cm = serde_json::json!({
            "apiVersion": "v1", "kind": "ConfigMap",
            "metadata": {"name": "linkerd-config", "namespace": "linkerd"},
            "data": {"values": values},
        });
        self.apply(context, &serde_json::to_string(&cm).unwrap());
    }

    /// The controller's leader Lease, renewed `age` ago.
    fn lease(&self, age: Duration) {
        self.lease_named("service-mirror-write-east", age);
    }

    /// A leader Lease `name` of Link east's controller, renewed `age` ago.
    fn lease_named(&self, name: &str, age: Duration) {
        let secs = SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .unwrap()
            .as_secs()
            - age.as_secs();
        let whole = SystemTime::UNIX_EPOCH + Duration::from_secs(secs);
        let at = mc_core::trust::format_time(whole).replace('Z', ".000000Z");
        let lease = serde_json::json!({
            "apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
            "metadata": {"name": name, "namespace": "linkerd-multicluster"},
            "spec": {"holderIdentity": "controller-east-0", "leaseDurationSeconds": 30, "acquireTime": at, "renewTime": at},
        });
        self.apply("west", &serde_json::to_string(&lease).unwrap());
    }

    /// Merges `status` into the Link east's status (as the controller writes it; a `null`
    /// field is removed).
    fn link_status(&self, status: serde_json::Value) {
        let patch = serde_json::json!({ "status": status }).to_string();
        ok(&self.kubectl(
            "west",
            &[
                "-n",
                "linkerd-multicluster",
                "patch",
                "link",
                "east",
                "--subresource=status",
                "--type=merge",
                "-p",
                &patch,
            ],
        ));
    }

    /// Merges `gateway` (JSON) into the Link east's `status.gateway`.
    fn gateway_status(&self, gateway: &str) {
        let gateway: serde_json::Value = serde_json::from_str(gateway).unwrap();
        self.link_status(serde_json::json!({ "gateway": gateway }));
    }

    /// `check` with `args`; one round (`--wait 0s`) unless `args` set `--wait`.
    fn check(&self, args: &[&str]) -> (Option<i32>, String) {
        let mut all = vec!["multicluster", "check"];
        if !args.contains(&"--wait") {
            all.extend(["--wait", "0s"]);
        }
        all.extend_from_slice(args);
        let out = self.mc("west", &all);
        (
            out.status.code(),
            format!(
                "{}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            ),
        )
    }
}

/// The table rows about cluster `east` that `stdout` prints, as they come.
fn rows_of(stdout: std::process::ChildStdout) -> std::sync::mpsc::Receiver<String> {
    use std::io::BufRead as _;
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in std::io::BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            if line.starts_with("east ") && tx.send(line).is_err() {
                break;
            }
        }
    });
    rx
}

fn anchor(cn: &str) -> String {
    let now = SystemTime::now();
    let opts = AnchorOptions {
        common_name: cn.to_owned(),
        ..AnchorOptions::new(now - Duration::from_secs(60))
    };
    create_trust_anchor(&opts).unwrap().cert_pem
}

#[test]
fn check_passes_on_a_healthy_pair_and_names_each_failure() {
    let env = Env {
        bed: Testbed::start_api_only(&["east", "west"]).unwrap(),
    };
    let shared = anchor("root.shared.test");
    for ctx in ["east", "west"] {
        env.apply(
            ctx,
            "apiVersion: v1\nkind: Namespace\nmetadata: {name: linkerd}\n",
        );
        env.linkerd_config(ctx, &shared);
        let yaml = ok(&env.mc(ctx, &["multicluster", "install"]));
        env.apply(ctx, &yaml);
    }
    ok(&env.kubectl(
        "east",
        &[
            "-n",
            "linkerd-multicluster",
            "patch",
            "service",
            "linkerd-gateway",
            "--subresource=status",
            "--type=merge",
            "-p",
            r#"{"status":{"loadBalancer":{"ingress":[{"ip":"203.0.113.9"}]}}}"#,
        ],
    ));
    // The cluster's anchors, read from linkerd-config.
    let fetched = ok(&env.mc("west", &["trust-anchor", "fetch"]));
    let want = mc_core::trust::TrustBundle::from_pem_unchecked_time(&shared).unwrap();
    assert_eq!(
        mc_core::trust::TrustBundle::from_pem_unchecked_time(&fetched).unwrap(),
        want
    );
    let table = ok(&env.mc("west", &["trust-anchor", "inspect"]));
    assert_eq!(table.lines().count(), 2, "{table}");
    assert!(
        table.contains("CN=root.shared.test") && table.contains("valid"),
        "{table}"
    );
    let missing = env.mc("west", &["-L", "nowhere", "trust-anchor", "fetch"]);
    assert_eq!(missing.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&missing.stderr).contains("nowhere/linkerd-config"));

    let link = ok(&env.mc("east", &["multicluster", "link", "--cluster-name", "east"]));
    env.apply("west", &link);

    // Before the controller ever ran: check fails and says so.
    let (code, text) = env.check(&[]);
    assert_eq!(code, Some(1), "{text}");
    assert!(
        text.contains("× service mirror controllers are running"),
        "{text}"
    );
    assert!(text.contains("no controller has ever run"), "{text}");

    // A controller that predates the Lease's rename holds only `mc-mirror-write-east`: check
    // finds it there, passes with a warning and says to upgrade it; stale, it is down.
    env.lease_named("mc-mirror-write-east", Duration::ZERO);
    env.gateway_status(r#"{"alive":true,"latencyMs":4}"#);
    let (code, text) = env.check(&[]);
    assert_eq!(code, Some(0), "{text}");
    for part in [
        "‼ service mirror controllers are running",
        "east: leader controller-east-0 (Lease linkerd-multicluster/mc-mirror-write-east)",
        "predates the Lease's rename to service-mirror-write-east",
        "upgrade it",
    ] {
        assert!(text.contains(part), "{part} not in {text}");
    }
    assert!(!text.contains("no controller has ever run"), "{text}");
    env.lease_named("mc-mirror-write-east", Duration::from_secs(600));
    let (code, text) = env.check(&[]);
    assert_eq!(code, Some(1), "{text}");
    for part in [
        "the controller is down: Lease linkerd-multicluster/mc-mirror-write-east",
        "predates the Lease's rename",
    ] {
        assert!(text.contains(part), "{part} not in {text}");
    }
    ok(&env.kubectl(
        "west",
        &[
            "-n",
            "linkerd-multicluster",
            "delete",
            "lease",
            "mc-mirror-write-east",
        ],
    ));

    // The controller runs: it holds its lease and reports the gateway alive.
    env.lease(Duration::ZERO);
    env.gateway_status(r#"{"alive":true,"latencyMs":4,"p50Ms":3,"p99Ms":9}"#);
    let (code, text) = env.check(&[]);
    assert_eq!(code, Some(0), "{text}");
    for line in [
        "✓ Link CRD exists",
        "✓ remote cluster access credentials are valid",
        "✓ clusters share trust anchors",
        "✓ service mirror controller has required permissions",
        "✓ service mirror controllers are running",
        "✓ gateways are alive (from Link status)",
    ] {
        assert!(text.contains(line), "missing {line:?}:\n{text}");
    }
    let (code, json) = env.check(&["-o", "json"]);
    assert_eq!(code, Some(0));
    let v: serde_json::Value = serde_json::from_str(&json).unwrap();
    assert_eq!(v["success"], true);

    // The gateway's policy ConfigMap: reported while it parses, a failure naming it and the
    // fix when it does not (the gateway keeps its last good policy meanwhile).
    for line in [
        "✓ gateway policy ConfigMaps parse",
        "* gateway linkerd-multicluster/linkerd-gateway loads ConfigMap linkerd-gateway-policy",
        "* linkerd-multicluster/linkerd-gateway-policy: no rules",
    ] {
        assert!(text.contains(line), "missing {line:?}:\n{text}");
    }
    let set_policy = |text: &str| {
        let patch = serde_json::json!({"data": {"policy.yaml": text}}).to_string();
        ok(&env.kubectl(
            "west",
            &[
                "-n",
                "linkerd-multicluster",
                "patch",
                "configmap",
                "linkerd-gateway-policy",
                "--type=merge",
                "-p",
                &patch,
            ],
        ));
    };
    set_policy("rules: [");
    let (code, broken) = env.check(&[]);
    assert_eq!(code, Some(1), "{broken}");
    for part in [
        "× gateway policy ConfigMaps parse",
        "linkerd-multicluster/linkerd-gateway-policy: policy.yaml is not a valid policy",
        "last good policy",
    ] {
        assert!(broken.contains(part), "{part} not in {broken}");
    }
    set_policy(r#"{"rules":[]}"#);
    let gw = ok(&env.mc("west", &["multicluster", "gateways"]));
    let row: Vec<&str> = gw.lines().nth(1).unwrap().split_whitespace().collect();
    assert_eq!(row, ["east", "True", "0", "4ms", "3ms", "9ms"], "{gw}");

    // `gateways --watch` prints the table again when the gateway's state changes.
    let mut watch = KillOnDrop(
        env.mc_command("west", &["multicluster", "gateways", "--watch"])
            .stdout(std::process::Stdio::piped())
            .spawn()
            .unwrap(),
    );
    let rows = rows_of(watch.0.stdout.take().unwrap());
    let next_east_row = || {
        rows.recv_timeout(Duration::from_secs(30))
            .map(|line| {
                line.split_whitespace()
                    .map(str::to_owned)
                    .collect::<Vec<_>>()
            })
            .unwrap()
    };
    assert_eq!(next_east_row()[..2], ["east", "True"]);
    env.gateway_status(r#"{"alive":false,"latencyMs":null}"#);
    assert_eq!(next_east_row(), ["east", "False", "0", "-", "-", "-"]);
    env.gateway_status(r#"{"alive":true,"latencyMs":4,"p50Ms":3,"p99Ms":9}"#);
    assert_eq!(next_east_row(), ["east", "True", "0", "4ms", "3ms", "9ms"]);
    std::thread::sleep(Duration::from_secs(5));
    assert!(rows.try_recv().is_err(), "nothing changed: nothing printed");
    drop(watch);

    // (c) The controller is down: its lease is stale.
    env.lease(Duration::from_secs(600));
    let (code, text) = env.check(&["-o", "short"]);
    assert_eq!(code, Some(1), "{text}");
    assert!(text.contains("the controller is down"), "{text}");
    assert!(
        !text.contains("✓"),
        "short output lists only problems:\n{text}"
    );
    env.lease(Duration::ZERO);
    assert_eq!(env.check(&[]).0, Some(0));

    // `--wait` retries a check that can clear on its own: the controller comes back meanwhile.
    env.lease(Duration::from_secs(600));
    let waiting = env
        .mc_command("west", &["multicluster", "check", "--wait", "60s"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_secs(3));
    env.lease(Duration::ZERO);
    let out = waiting.wait_with_output().unwrap();
    let progress = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{progress}");
    assert!(
        progress.contains("waiting for: service mirror controllers are running"),
        "progress is shown while waiting:\n{progress}"
    );

    // The controller's own view of the target (the Link's TargetReachable condition).
    let condition = |status: &str, reason: &str, message: &str| {
        env.link_status(serde_json::json!({"conditions": [{
            "type": "TargetReachable", "status": status, "reason": reason, "message": message,
            "lastTransitionTime": "2026-01-02T03:04:05Z",
        }]}));
    };
    condition(
        "False",
        "Forbidden",
        "services is forbidden: User \"nobody\"",
    );
    let (code, text) = env.check(&[]);
    assert_eq!(code, Some(1), "{text}");
    assert!(
        text.contains("east: the controller cannot watch east (Forbidden, since 2026-01-02T03:04:05Z): services is forbidden"),
        "{text}"
    );
    condition(
        "True",
        "Connected",
        "the target cluster's API server answers",
    );
    let (code, text) = env.check(&[]);
    assert_eq!(code, Some(0), "{text}");
    assert!(text.contains("* east: Connected"), "{text}");

    // (a) The anchors differ: first a rotation in progress (still one shared), then none shared.
    let other = anchor("root.other.test");
    env.linkerd_config("west", &format!("{shared}{other}"));
    let (code, text) = env.check(&[]);
    assert_eq!(code, Some(1), "{text}");
    assert!(text.contains("the anchors differ"), "{text}");
    assert!(
        text.contains("only in this cluster: CN=root.other.test"),
        "{text}"
    );
    assert!(
        text.contains("they still share CN=root.shared.test"),
        "{text}"
    );
    env.linkerd_config("west", &other);
    // Without --wait (default 5m): a failure that needs an operator is reported at once.
    let out = env.mc("west", &["multicluster", "check"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        !stderr.contains("waiting for"),
        "differing anchors are not waited for:\n{stderr}"
    );
    let (code, text) = env.check(&[]);
    assert_eq!(code, Some(1), "{text}");
    assert!(text.contains("only in east: CN=root.shared.test"), "{text}");
    assert!(text.contains("share NO anchor"), "{text}");
    env.linkerd_config("west", &shared);
    assert_eq!(env.check(&[]).0, Some(0));

    // A mirror without ready endpoints (an empty remote Service) is a warning with a hint,
    // and `--wait` does not wait for it (issue #19 item 10); a mirror of a cluster no Link
    // targets is a warning.
    env.apply(
        "west",
        "apiVersion: v1\nkind: Namespace\nmetadata: {name: shop}\n",
    );
    env.apply(
        "west",
        "apiVersion: v1\nkind: Service\nmetadata:\n  name: web-east\n  namespace: shop\n  labels: {mirror.linkerd.io/mirrored-service: \"true\", mirror.linkerd.io/cluster-name: east}\nspec: {ports: [{port: 80}]}\n",
    );
    env.apply(
        "west",
        "apiVersion: v1\nkind: Endpoints\nmetadata: {name: web-east, namespace: shop}\n",
    );
    env.lease(Duration::ZERO);
    let started = std::time::Instant::now();
    let (code, text) = env.check(&["--wait", "2m"]);
    let took = started.elapsed();
    assert_eq!(code, Some(0), "{text}");
    assert!(
        took < Duration::from_secs(30),
        "an empty mirror is not waited for ({took:?}):\n{text}"
    );
    assert!(!text.contains("waiting for"), "{text}");
    assert!(
        text.contains("‼ all mirror services have endpoints"),
        "{text}"
    );
    assert!(
        text.contains("shop/web-east has no ready endpoints (the remote service has no ready endpoints); hint:"),
        "{text}"
    );
    env.apply(
        "west",
        "apiVersion: v1\nkind: Endpoints\nmetadata: {name: web-east, namespace: shop}\nsubsets: [{addresses: [{ip: 203.0.113.9}], ports: [{port: 4143}]}]\n",
    );
    env.apply(
        "west",
        "apiVersion: v1\nkind: Service\nmetadata:\n  name: web-ghost\n  namespace: shop\n  labels: {mirror.linkerd.io/mirrored-service: \"true\", mirror.linkerd.io/cluster-name: ghost}\nspec: {ports: [{port: 80}]}\n",
    );
    env.apply(
        "west",
        "apiVersion: v1\nkind: Endpoints\nmetadata: {name: web-ghost, namespace: shop}\nsubsets: [{addresses: [{ip: 203.0.113.9}], ports: [{port: 4143}]}]\n",
    );
    let (code, text) = env.check(&[]);
    assert_eq!(
        code,
        Some(0),
        "a warning alone keeps check healthy:\n{text}"
    );
    assert!(
        text.contains("‼ all mirror services are part of a Link"),
        "{text}"
    );
    assert!(text.contains("shop/web-ghost"), "{text}");
    // A Link made by another version is a warning, not a failure.
    ok(&env.kubectl(
        "west",
        &[
            "-n",
            "linkerd-multicluster",
            "annotate",
            "--overwrite",
            "link",
            "east",
            "linkerd.io/created-by=linkerd/cli edge-26.1.1",
        ],
    ));
    let (code, text) = env.check(&[]);
    assert_eq!(code, Some(0), "{text}");
    assert!(text.contains("‼ Link and CLI versions match"), "{text}");
    assert!(text.contains("\"linkerd/cli edge-26.1.1\""), "{text}");
    let gw = ok(&env.mc("west", &["multicluster", "gateways", "-o", "json"]));
    let v: serde_json::Value = serde_json::from_str(&gw).unwrap();
    assert_eq!(v[0]["numberOfServices"], 1, "{gw}");

    // A target API server that cannot be reached from here (a private network; a TEST-NET
    // address): a warning naming the Link, the server and the error, not a failure, and not
    // waited for (issue #19 item 10).
    let secret_args = [
        "-n",
        "linkerd-multicluster",
        "get",
        "secret",
        "cluster-credentials-east",
    ];
    let original = ok(&env.kubectl(
        "west",
        &[&secret_args[..], &["-o", "jsonpath={.data.kubeconfig}"]].concat(),
    ));
    let set_kubeconfig = |b64: &str| {
        let patch = serde_json::json!({"data": {"kubeconfig": b64}}).to_string();
        ok(&env.kubectl(
            "west",
            &[
                "-n",
                "linkerd-multicluster",
                "patch",
                "secret",
                "cluster-credentials-east",
                "--type=merge",
                "-p",
                &patch,
            ],
        ));
    };
    {
        use base64::Engine as _;
        let b64 = base64::engine::general_purpose::STANDARD;
        let kubeconfig = String::from_utf8(b64.decode(original.trim()).unwrap()).unwrap();
        let unreachable: Vec<String> = kubeconfig
            .lines()
            .map(|l| match l.find("server:") {
                Some(at) => format!("{}server: https://192.0.2.1:6443", &l[..at]),
                None => l.to_owned(),
            })
            .collect();
        let unreachable = unreachable.join("\n");
        assert_ne!(unreachable, kubeconfig.trim_end(), "{kubeconfig}");
        set_kubeconfig(&b64.encode(unreachable));
    }
    env.lease(Duration::ZERO);
    let started = std::time::Instant::now();
    let (code, text) = env.check(&["--wait", "2m", "--timeout", "3s"]);
    let took = started.elapsed();
    assert_eq!(code, Some(0), "a warning, not a failure:\n{text}");
    assert!(
        took < Duration::from_secs(45),
        "not waited for ({took:?}):\n{text}"
    );
    assert!(!text.contains("waiting for"), "{text}");
    assert!(
        text.contains("‼ remote cluster access credentials are valid"),
        "{text}"
    );
    assert!(
        text.contains(
            "Link east: the target API server https://192.0.2.1:6443/ cannot be reached from here: "
        ),
        "{text}"
    );
    assert!(
        text.contains("pass --skip-remote") && text.contains("‼ clusters share trust anchors"),
        "{text}"
    );
    // `--skip-remote`: no call to the target; one line per Link says what was skipped.
    let (code, text) = env.check(&["--skip-remote"]);
    assert_eq!(code, Some(0), "{text}");
    assert!(
        text.contains("‼ checks that need the target API servers are skipped (--skip-remote)"),
        "{text}"
    );
    assert!(
        text.contains("Link east: the target API server https://192.0.2.1:6443/ was not contacted (--skip-remote)"),
        "{text}"
    );
    assert!(!text.contains("cannot be reached"), "{text}");
    assert!(!text.contains("clusters share trust anchors"), "{text}");
    set_kubeconfig(original.trim());
    // A reachable target is skipped the same way.
    let (code, text) = env.check(&["--skip-remote", "-o", "json"]);
    assert_eq!(code, Some(0), "{text}");
    assert!(text.contains("was not contacted (--skip-remote)"), "{text}");
    assert!(!text.contains("may list services"), "{text}");

    // (b) The credentials are revoked: the remote-access account is deleted on east.
    ok(&env.kubectl(
        "east",
        &[
            "-n",
            "linkerd-multicluster",
            "delete",
            "serviceaccount",
            "linkerd-service-mirror-remote-access-default",
        ],
    ));
    // The API server caches successful token authentications for a few seconds.
    let start = std::time::Instant::now();
    let (code, text) = loop {
        let (code, text) = env.check(&[]);
        if code != Some(0) || start.elapsed() > Duration::from_secs(60) {
            break (code, text);
        }
        std::thread::sleep(Duration::from_secs(2));
    };
    assert_eq!(code, Some(1), "{text}");
    assert!(
        text.contains("× remote cluster access credentials are valid"),
        "{text}"
    );
    assert!(text.contains("401 Unauthorized"), "{text}");

    // uninstall refuses while the Link exists.
    let out = env.mc("west", &["multicluster", "uninstall"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(out.stdout.is_empty());
    assert!(String::from_utf8_lossy(&out.stderr).contains("Please unlink the following clusters"));
}

/// The whole healthy pair for real: mc-gateway on loopback with the identity `gateway-identity`
/// renders, mc-mirror as the controller ServiceAccount `link` renders. `check --wait` turns
/// healthy, `gateways` shows the gateway alive; stopping the controller makes check fail.
#[test]
fn check_with_the_real_gateway_and_controller() {
    use base64::Engine as _;
    let env = Env {
        bed: Testbed::start_api_only(&["east", "west"]).unwrap(),
    };
    let dir = tempfile::tempdir().unwrap();
    let p = |n: &str| dir.path().join(n).display().to_string();
    let run = |args: &[&str]| ok(&Command::new(mc_bin()).args(args).output().unwrap());
    run(&[
        "trust-anchor",
        "create",
        "--cert-out",
        &p("ca.crt"),
        "--key-out",
        &p("ca.key"),
    ]);
    run(&[
        "issuer",
        "create",
        "--ca-cert",
        &p("ca.crt"),
        "--ca-key",
        &p("ca.key"),
        "--cert-out",
        &p("i.crt"),
        "--key-out",
        &p("i.key"),
    ]);
    let ca = std::fs::read_to_string(p("ca.crt")).unwrap();
    let (gw_port, probe_port) = (free_port(), free_port());
    for ctx in ["east", "west"] {
        env.apply(
            ctx,
            "apiVersion: v1\nkind: Namespace\nmetadata: {name: linkerd}\n",
        );
        env.linkerd_config(ctx, &ca);
        let yaml = ok(&env.mc(
            ctx,
            &[
                "multicluster",
                "install",
                "--gateway-port",
                &gw_port.to_string(),
                "--gateway-probe-port",
                &probe_port.to_string(),
            ],
        ));
        env.apply(ctx, &yaml);
    }
    // The gateway's identity Secret, written to files for a gateway process on loopback.
    let secret = run(&[
        "multicluster",
        "gateway-identity",
        "--issuer-cert",
        &p("i.crt"),
        "--issuer-key",
        &p("i.key"),
        "--trust-anchors",
        &p("ca.crt"),
        "-o",
        "json",
    ]);
    let secret: serde_json::Value = serde_json::from_str(&secret).unwrap();
    for key in ["tls.crt", "tls.key", "ca.crt"] {
        let data = base64::engine::general_purpose::STANDARD
            .decode(secret["items"][0]["data"][key].as_str().unwrap())
            .unwrap();
        std::fs::write(p(key), data).unwrap();
    }
    let _gateway = KillOnDrop(
        Command::new(gateway_bin())
            .args([
                "serve", "--listen", &format!("127.0.0.1:{gw_port}"), "--admin", &format!("127.0.0.1:{probe_port}"),
                "--cert", &p("tls.crt"), "--key", &p("tls.key"), "--trust-anchors", &p("ca.crt"),
                "--identity", "linkerd-gateway.linkerd-multicluster.serviceaccount.identity.linkerd.cluster.local",
            ])
            .stdout(std::fs::File::create(p("gateway.log")).unwrap())
            .stderr(std::fs::File::create(p("gateway.err")).unwrap())
            .spawn()
            .unwrap(),
    );
    let link = ok(&env.mc(
        "east",
        &[
            "multicluster",
            "link",
            "--cluster-name",
            "east",
            "--gateway-addresses",
            "127.0.0.1",
        ],
    ));
    env.apply("west", &link);
    let token = ok(&env.kubectl(
        "west",
        &[
            "-n",
            "linkerd-multicluster",
            "create",
            "token",
            "controller-east",
        ],
    ));
    let kubeconfig = env
        .bed
        .token_kubeconfig("west", "controller-east", token.trim())
        .unwrap();
    let controller = KillOnDrop(
        Command::new(mirror_bin())
            .arg("--kubeconfig")
            .arg(&kubeconfig)
            .args([
                "--context",
                "west",
                "--link",
                "east",
                "--admin-addr",
                "127.0.0.1:0",
                "--identity",
                "controller-east-0",
                "--lease-duration",
                "4s",
                "--lease-renew-deadline",
                "2s",
                "--lease-retry-period",
                "1s",
            ])
            .stdout(std::fs::File::create(p("mirror.log")).unwrap())
            .stderr(std::fs::File::create(p("mirror.err")).unwrap())
            .spawn()
            .unwrap(),
    );
    let (code, text) = env.check(&["--wait", "90s"]);
    assert_eq!(
        code,
        Some(0),
        "{text}\nmirror log:\n{}\ngateway log:\n{}",
        std::fs::read_to_string(p("mirror.err")).unwrap_or_default(),
        std::fs::read_to_string(p("gateway.err")).unwrap_or_default()
    );
    assert!(text.contains("* east: leader controller-east-0"), "{text}");
    assert!(
        text.contains("✓ gateways are alive (from Link status)"),
        "{text}"
    );
    let gw = ok(&env.mc("west", &["multicluster", "gateways"]));
    let row: Vec<&str> = gw.lines().nth(1).unwrap().split_whitespace().collect();
    assert_eq!(&row[..2], ["east", "True"], "{gw}");
    assert!(row[3].ends_with("ms"), "{gw}");

    // (c) with the real controller: stop it, and its lease runs out.
    drop(controller);
    let start = std::time::Instant::now();
    let text = loop {
        let (code, text) = env.check(&[]);
        if code == Some(1) || start.elapsed() > Duration::from_secs(60) {
            break text;
        }
        std::thread::sleep(Duration::from_secs(1));
    };
    assert!(text.contains("the controller is down"), "{text}");

    // unlink, then uninstall: every object the extension rendered is deleted.
    let del = ok(&env.mc(
        "west",
        &["multicluster", "unlink", "--cluster-name", "east"],
    ));
    let mut cmd = env.bed.kubectl("west");
    cmd.args(["delete", "-f", "-"]);
    ok(&with_stdin(cmd, &del));
    let del = ok(&env.mc("west", &["multicluster", "uninstall"]));
    assert!(del.contains("kind: CustomResourceDefinition"), "{del}");
    assert!(del.contains("kind: Namespace"), "{del}");
    let mut cmd = env.bed.kubectl("west");
    cmd.args(["delete", "--wait=false", "-f", "-"]);
    ok(&with_stdin(cmd, &del));
    // A CRD goes once its finalizer has removed its custom resources: wait for that.
    let start = std::time::Instant::now();
    let left = loop {
        let left = ok(&env.kubectl(
            "west",
            &[
                "get",
                "clusterroles,clusterrolebindings,crd",
                "-l",
                "linkerd.io/extension=multicluster",
                "-o",
                "name",
            ],
        ));
        if left.trim().is_empty() || start.elapsed() > Duration::from_secs(60) {
            break left;
        }
        std::thread::sleep(Duration::from_millis(500));
    };
    assert_eq!(left.trim(), "", "left behind: {left}");
}
