//! Helpers shared by the e2e tests on the testbed's real clusters (`nodes`, `pod_faults`).
#![allow(dead_code, clippy::panic)]

use std::path::Path;
use std::process::{Command, Output};
use std::time::{Duration, Instant};

/// The stdout of a successful process; panics naming `what` with both streams otherwise.
pub(crate) fn check(out: Output, what: &str) -> String {
    assert!(
        out.status.success(),
        "{what} failed:\n{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Retries `f` until it returns Ok, for up to `secs` seconds; panics with its last error.
pub(crate) fn eventually<T>(secs: u64, what: &str, mut f: impl FnMut() -> Result<T, String>) -> T {
    let start = Instant::now();
    loop {
        match f() {
            Ok(v) => return v,
            Err(last) if start.elapsed() > Duration::from_secs(secs) => {
                panic!("{what} not within {secs}s; last: {last}")
            }
            Err(_) => std::thread::sleep(Duration::from_millis(250)),
        }
    }
}

/// Runs `script` in bash (pipefail) in `work`, with `mc` (from `mc_dir`), kubectl and helm on
/// PATH and the testbed's kubeconfig: exactly what a user types.
pub(crate) fn shell(bed: &mc_tests::Testbed, mc_dir: &Path, work: &Path, script: &str) -> Output {
    let kubectl = &bed.binaries().kubectl;
    let helm_dir = mc_tests::cache_dir().join("bin/helm-v3.22.0");
    let path = std::env::join_paths(
        [
            mc_dir,
            kubectl.parent().unwrap_or(Path::new("/")),
            &helm_dir,
        ]
        .into_iter()
        .map(Path::to_path_buf)
        .chain(std::env::split_paths(
            &std::env::var_os("PATH").unwrap_or_default(),
        )),
    )
    .unwrap_or_default();
    Command::new("bash")
        .args(["-o", "pipefail", "-c", script])
        .env("PATH", path)
        .env("KUBECONFIG", bed.kubeconfig())
        .current_dir(work)
        .output()
        .unwrap_or_else(|e| panic!("cannot run bash for {script:?}: {e}"))
}

/// A client Deployment `client` (curl, no sidecar, no certificate) of `replicas` Pods in `ns`
/// of cluster `ctx`, rolled out.
pub(crate) fn client_deployment(bed: &mc_tests::Testbed, ctx: &str, ns: &str, replicas: u32) {
    let manifest = format!(
        r#"{{"apiVersion":"apps/v1","kind":"Deployment","metadata":{{"name":"client","namespace":"{ns}"}},
   "spec":{{"replicas":{replicas},"selector":{{"matchLabels":{{"app":"client"}}}},
     "template":{{"metadata":{{"labels":{{"app":"client"}}}},
       "spec":{{"containers":[{{"name":"client","image":"{image}","imagePullPolicy":"Never"}}]}}}}}}}}"#,
        image = mc_tests::CLIENT_IMAGE
    );
    check(bed.apply(ctx, &manifest).unwrap(), "apply the client");
    bed.wait_rollout(ctx, ns, "deployment/client").unwrap();
}

/// `curl -sS -m 5 <url>` in the client Deployment of `ns` in cluster `ctx`: its stdout, or
/// its stderr as the error.
pub(crate) fn curl(
    bed: &mc_tests::Testbed,
    ctx: &str,
    ns: &str,
    url: &str,
) -> Result<String, String> {
    kubectl(
        bed,
        ctx,
        &[
            "exec",
            "-n",
            ns,
            "deploy/client",
            "--",
            "curl",
            "-sS",
            "-m",
            "5",
            url,
        ],
    )
}

/// A trust anchor (`root.crt`/`root.key`) and an issuer per cluster (`<ctx>-issuer.crt`/`.key`)
/// made with `mc` in `work`, and the stand-in for Linkerd's configuration (namespace `linkerd`,
/// ConfigMap `linkerd-config` carrying the root) applied in east and west.
pub(crate) fn trust_and_linkerd_config(bed: &mc_tests::Testbed, mc_dir: &Path, work: &Path) {
    let sh = |script: &str| check(shell(bed, mc_dir, work, script), script);
    sh("mc trust-anchor create --cert-out root.crt --key-out root.key --force");
    for c in ["east", "west"] {
        sh(&format!(
            "mc issuer create --ca-cert root.crt --ca-key root.key --cert-out {c}-issuer.crt --key-out {c}-issuer.key --force"
        ));
    }
    let root = std::fs::read_to_string(work.join("root.crt")).unwrap_or_default();
    assert!(!root.is_empty(), "the trust anchor was written");
    let values = format!(
        "identityTrustAnchorsPEM: |\n{}identityTrustDomain: cluster.local\n",
        root.lines().map(|l| format!("  {l}\n")).collect::<String>()
    );
    let config = serde_json::json!({"apiVersion":"v1","kind":"List","items":[
        {"apiVersion":"v1","kind":"Namespace","metadata":{"name":"linkerd"}},
        {"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"linkerd-config","namespace":"linkerd"},
         "data":{"values": values}}]});
    for ctx in ["east", "west"] {
        let out = bed
            .apply(ctx, &config.to_string())
            .unwrap_or_else(|e| panic!("apply linkerd-config in {ctx}: {e}"));
        check(out, "apply linkerd-config");
    }
}

/// The IPs of an Endpoints object's `field` (`addresses` or `notReadyAddresses`), sorted.
pub(crate) fn ips(endpoints: &serde_json::Value, field: &str) -> Vec<String> {
    let mut ips: Vec<String> = endpoints["subsets"]
        .as_array()
        .into_iter()
        .flatten()
        .flat_map(|s| s[field].as_array().cloned().unwrap_or_default())
        .filter_map(|a| a["ip"].as_str().map(str::to_owned))
        .collect();
    ips.sort();
    ips.dedup();
    ips
}

/// `kubectl --context <ctx> <args>`: its stdout, or its stderr as the error.
pub(crate) fn kubectl(bed: &mc_tests::Testbed, ctx: &str, args: &[&str]) -> Result<String, String> {
    let out = bed
        .kubectl(ctx)
        .args(args)
        .output()
        .map_err(|e| e.to_string())?;
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    } else {
        Err(String::from_utf8_lossy(&out.stderr).into_owned())
    }
}

/// `kubectl --context <ctx> <args> -o json`, parsed.
pub(crate) fn kubectl_json(
    bed: &mc_tests::Testbed,
    ctx: &str,
    args: &[&str],
) -> Result<serde_json::Value, String> {
    let mut all = args.to_vec();
    all.extend(["-o", "json"]);
    serde_json::from_str(&kubectl(bed, ctx, &all)?).map_err(|e| e.to_string())
}

/// `sh -c <script>` in the client Deployment of `ns` in cluster `ctx`: stdout then stderr,
/// whatever the exit status.
pub(crate) fn client_sh(bed: &mc_tests::Testbed, ctx: &str, ns: &str, script: &str) -> String {
    let out = bed
        .kubectl(ctx)
        .args(["exec", "-n", ns, "deploy/client", "--", "sh", "-c", script])
        .output()
        .unwrap_or_else(|e| panic!("kubectl exec in {ctx}/{ns}: {e}"));
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}
