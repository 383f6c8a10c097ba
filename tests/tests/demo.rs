//! The getting-started walkthrough as an end-to-end test: the same scenario as `make demo`, on
//! the testbed's real clusters (nodes running Pods from mc's image).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::process::Command;

#[test]
fn the_walkthrough_passes_every_step() {
    let exe = std::path::PathBuf::from(env!("CARGO_BIN_EXE_mc-demo"));
    let work = tempfile_dir();
    let out = Command::new(&exe)
        .env("MC_DEMO_DIR", &work)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "the demo failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    for expected in [
        "the gateway Pod runs mc's image and is Ready",
        "controller-east runs mc-mirror from mc's image",
        "answer: greetings from east",
        "the egress Pods run mc's image with west's egress identity and are Ready",
        "its endpoints are west's egress Pods",
        "east's gateway admitted it as linkerd-multicluster-egress.linkerd-multicluster.serviceaccount.identity.linkerd.cluster.local",
        "every check passes and east's gateway is alive",
        "plain HTTP gets no answer from a service: curl fails",
        "TLS without a client certificate is refused at the handshake: curl fails",
        "200 requests:",
        "moved to notReadyAddresses",
        "the endpoint is ready and podinfo-east answers",
        "nothing of mc is left in either cluster",
        "every process stopped",
        "every step passed",
    ] {
        assert!(
            stdout.contains(expected),
            "missing {expected:?} in:\n{stdout}"
        );
    }
    let _ = std::fs::remove_dir_all(&work);
}

fn tempfile_dir() -> std::path::PathBuf {
    std::env::temp_dir().join(format!("mc-demo-test-{}", std::process::id()))
}
