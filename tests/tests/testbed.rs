//! Proves the testbed is real: real watches, RBAC, CRD validation, TokenRequest, separate
//! clusters, and no process left behind however a test ends.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use futures::StreamExt as _;
use k8s_openapi::api::core::v1::{Namespace, Service};
use kube::api::{Api, ListParams, WatchEvent, WatchParams};
use mc_tests::{Testbed, pid_alive, shared_api_only};

fn unique(prefix: &str) -> String {
    use std::sync::atomic::{AtomicU32, Ordering};
    static N: AtomicU32 = AtomicU32::new(0);
    format!(
        "{prefix}-{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    )
}

fn run_ok(mut cmd: Command) -> String {
    let out = cmd.output().expect("run kubectl");
    assert!(
        out.status.success(),
        "{cmd:?} failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn apply(bed: &Testbed, context: &str, yaml: &str) -> std::process::Output {
    bed.apply(context, yaml).unwrap()
}

fn wait_gone(pids: &[(String, u32)], within: Duration) {
    let start = Instant::now();
    while pids.iter().any(|(_, p)| pid_alive(*p)) {
        assert!(
            start.elapsed() < within,
            "still running after {within:?}: {pids:?}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_watch_sees_what_kubectl_creates_and_clusters_are_separate() {
    let bed = shared_api_only().unwrap();
    let ns = unique("watch");
    run_ok({
        let mut c = bed.kubectl("east");
        c.args(["create", "namespace", &ns]);
        c
    });
    let services: Api<Service> = Api::namespaced(bed.client("east").await.unwrap(), &ns);
    let mut events = services
        .watch(&WatchParams::default(), "0")
        .await
        .unwrap()
        .boxed();

    let out = apply(
        bed,
        "east",
        &format!(
            "apiVersion: v1\nkind: Service\nmetadata: {{name: web, namespace: {ns}}}\nspec: {{ports: [{{port: 80}}]}}\n"
        ),
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    let added = tokio::time::timeout(Duration::from_secs(30), async {
        while let Some(event) = events.next().await {
            if let WatchEvent::Added(svc) = event.unwrap() {
                return svc;
            }
        }
        panic!("watch ended without an Added event");
    })
    .await
    .expect("no watch event within 30s");
    assert_eq!(added.metadata.name.as_deref(), Some("web"));
    let cluster_ip = added.spec.unwrap().cluster_ip.unwrap();
    assert!(
        cluster_ip.starts_with("198.19."),
        "east allocates from its own CIDR, got {cluster_ip}"
    );

    let west: Api<Namespace> = Api::all(bed.client("west").await.unwrap());
    assert!(
        west.get_opt(&ns).await.unwrap().is_none(),
        "namespace {ns} leaked into west"
    );
    let west_services: Api<Service> = Api::all(bed.client("west").await.unwrap());
    let names: Vec<_> = west_services
        .list(&ListParams::default())
        .await
        .unwrap()
        .items;
    assert!(
        names
            .iter()
            .all(|s| s.metadata.namespace.as_deref() != Some(&ns))
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn rbac_denies_a_non_admin_until_a_role_allows_it() {
    let bed = shared_api_only().unwrap();
    let ns = unique("rbac");
    run_ok({
        let mut c = bed.kubectl("east");
        c.args(["create", "namespace", &ns]);
        c
    });
    let alice = bed.user_kubeconfig("east", "alice", &["dev"]).unwrap();
    let client = bed.client_for(&alice, "east").await.unwrap();
    let services: Api<Service> = Api::namespaced(client, &ns);

    let denied = services.list(&ListParams::default()).await.unwrap_err();
    assert!(
        matches!(&denied, kube::Error::Api(s) if s.code == 403),
        "expected 403, got {denied:?}"
    );
    let out = Command::new(&bed.binaries().kubectl)
        .args(["--kubeconfig"])
        .arg(&alice)
        .args([
            "--context",
            "east",
            "auth",
            "can-i",
            "list",
            "services",
            "-n",
            &ns,
        ])
        .output()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "no");

    let rbac = format!(
        "apiVersion: rbac.authorization.k8s.io/v1\nkind: Role\nmetadata: {{name: read-svc, namespace: {ns}}}\n\
         rules: [{{apiGroups: [\"\"], resources: [services], verbs: [list, get, watch]}}]\n---\n\
         apiVersion: rbac.authorization.k8s.io/v1\nkind: RoleBinding\nmetadata: {{name: alice, namespace: {ns}}}\n\
         roleRef: {{apiGroup: rbac.authorization.k8s.io, kind: Role, name: read-svc}}\n\
         subjects: [{{apiGroup: rbac.authorization.k8s.io, kind: User, name: alice}}]\n"
    );
    let out = apply(bed, "east", &rbac);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let listed = services.list(&ListParams::default()).await.unwrap();
    assert!(listed.items.is_empty());
    let secrets: Api<k8s_openapi::api::core::v1::Secret> =
        Api::namespaced(services.into_client(), &ns);
    let denied = secrets.list(&ListParams::default()).await.unwrap_err();
    assert!(
        matches!(&denied, kube::Error::Api(s) if s.code == 403),
        "secrets must stay denied: {denied:?}"
    );
}

#[test]
fn a_crd_schema_rejects_an_invalid_object() {
    let bed = shared_api_only().unwrap();
    let group = format!("{}.mc.test", unique("g"));
    let crd = format!(
        "apiVersion: apiextensions.k8s.io/v1\nkind: CustomResourceDefinition\nmetadata: {{name: widgets.{group}}}\n\
         spec:\n  group: {group}\n  scope: Namespaced\n  names: {{plural: widgets, singular: widget, kind: Widget}}\n\
         \x20 versions:\n  - name: v1\n    served: true\n    storage: true\n    schema:\n      openAPIV3Schema:\n\
         \x20       type: object\n        properties:\n          spec:\n            type: object\n            required: [size]\n\
         \x20           properties:\n              size: {{type: integer, minimum: 1}}\n"
    );
    let out = apply(bed, "east", &crd);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    run_ok({
        let mut c = bed.kubectl("east");
        c.args([
            "wait",
            "--for=condition=Established",
            "--timeout=60s",
            &format!("crd/widgets.{group}"),
        ]);
        c
    });
    let widget = |size: &str| {
        format!(
            "apiVersion: {group}/v1\nkind: Widget\nmetadata: {{name: w{size}, namespace: default}}\nspec: {{size: {size}}}\n"
        )
    };
    let bad = apply(bed, "east", &widget("0"));
    assert!(!bad.status.success());
    let err = String::from_utf8_lossy(&bad.stderr);
    assert!(
        err.contains("spec.size") && err.contains("should be greater than or equal to 1"),
        "{err}"
    );
    let good = apply(bed, "east", &widget("3"));
    assert!(
        good.status.success(),
        "{}",
        String::from_utf8_lossy(&good.stderr)
    );
}

#[test]
fn a_token_request_returns_a_token_that_authenticates_only_where_it_was_issued() {
    let bed = shared_api_only().unwrap();
    let ns = unique("token");
    for args in [
        vec!["create", "namespace", ns.as_str()],
        vec!["create", "serviceaccount", "robot", "-n", ns.as_str()],
    ] {
        run_ok({
            let mut c = bed.kubectl("east");
            c.args(&args);
            c
        });
    }
    let token = run_ok({
        let mut c = bed.kubectl("east");
        c.args(["create", "token", "robot", "-n", &ns, "--duration=10m"]);
        c
    });
    let token = token.trim();
    assert_eq!(token.split('.').count(), 3, "not a JWT: {token}");

    let east = bed.token_kubeconfig("east", "robot-east", token).unwrap();
    let whoami = run_ok({
        let mut c = Command::new(&bed.binaries().kubectl);
        c.arg("--kubeconfig").arg(&east).args([
            "--context",
            "east",
            "auth",
            "whoami",
            "-o",
            "jsonpath={.status.userInfo.username}",
        ]);
        c
    });
    assert_eq!(whoami, format!("system:serviceaccount:{ns}:robot"));

    let west = bed.token_kubeconfig("west", "robot-west", token).unwrap();
    let out = Command::new(&bed.binaries().kubectl)
        .arg("--kubeconfig")
        .arg(&west)
        .args(["--context", "west", "auth", "whoami"])
        .output()
        .unwrap();
    assert!(!out.status.success(), "an east token authenticated to west");
    assert!(String::from_utf8_lossy(&out.stderr).contains("Unauthorized"));
}

#[test]
fn a_panicking_test_leaves_no_process_behind() {
    let mut pids = Vec::new();
    let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        let bed = Testbed::start_api_only(&["solo"]).unwrap();
        pids = bed.pids();
        assert_eq!(pids.len(), 2, "etcd and one kube-apiserver: {pids:?}");
        assert!(pids.iter().all(|(_, p)| pid_alive(*p)));
        panic!("the test fails while the testbed runs");
    }));
    assert!(result.is_err());
    wait_gone(&pids, Duration::from_secs(20));
}

#[test]
fn a_killed_test_process_leaves_no_process_behind() {
    let dir = std::env::temp_dir().join(unique("mc-testbed-kill"));
    let mut holder = Command::new(env!("CARGO_BIN_EXE_mc-testbed"))
        .args(["run", "--clusters", "solo", "--dir"])
        .arg(&dir)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let pids_file = dir.join("pids");
    let start = Instant::now();
    let pids = loop {
        let text = std::fs::read_to_string(&pids_file).unwrap_or_default();
        let pids: Vec<(String, u32)> = text
            .lines()
            .filter_map(|l| {
                l.rsplit_once(' ')
                    .map(|(w, p)| (w.to_string(), p.parse().unwrap()))
            })
            .collect();
        if pids.len() == 2 {
            break pids;
        }
        assert!(
            start.elapsed() < Duration::from_secs(120),
            "mc-testbed run did not start"
        );
        std::thread::sleep(Duration::from_millis(100));
    };
    assert!(pids.iter().all(|(_, p)| pid_alive(*p)));
    holder.kill().unwrap(); // SIGKILL: no destructor runs, as when a test runner times a test out.
    holder.wait().unwrap();
    wait_gone(&pids, Duration::from_secs(20));
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn mc_testbed_up_serves_both_contexts_and_down_stops_everything() {
    let dir = std::env::temp_dir().join(unique("mc-testbed-up"));
    let out = Command::new(env!("CARGO_BIN_EXE_mc-testbed"))
        .args(["up", "--dir"])
        .arg(&dir)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let kubeconfig = String::from_utf8(out.stdout).unwrap().trim().to_string();
    assert_eq!(std::path::Path::new(&kubeconfig), dir.join("kubeconfig"));

    let pids_text = std::fs::read_to_string(dir.join("pids")).unwrap();
    let pids: Vec<(String, u32)> = pids_text
        .lines()
        .map(|l| {
            l.rsplit_once(' ')
                .map(|(w, p)| (w.to_string(), p.parse().unwrap()))
                .unwrap()
        })
        .collect();
    assert_eq!(pids.len(), 3, "{pids_text}");
    let kubectl = mc_tests::Binaries::locate().unwrap().kubectl;
    for context in ["east", "west"] {
        let ns = Command::new(&kubectl)
            .args([
                "--kubeconfig",
                &kubeconfig,
                "--context",
                context,
                "get",
                "ns",
                "kube-system",
                "-o",
                "name",
            ])
            .output()
            .unwrap();
        assert_eq!(
            String::from_utf8_lossy(&ns.stdout).trim(),
            "namespace/kube-system",
            "{context}"
        );
    }

    let down = Command::new(env!("CARGO_BIN_EXE_mc-testbed"))
        .args(["down", "--dir"])
        .arg(&dir)
        .output()
        .unwrap();
    assert!(
        down.status.success(),
        "{}",
        String::from_utf8_lossy(&down.stderr)
    );
    wait_gone(&pids, Duration::from_secs(20));
    let _ = std::fs::remove_dir_all(&dir);
}
