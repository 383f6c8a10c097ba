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
    let out = bed
        .kubectl(ctx)
        .args([
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
        ])
        .output()
        .map_err(|e| e.to_string())?;
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    } else {
        Err(String::from_utf8_lossy(&out.stderr).into_owned())
    }
}
