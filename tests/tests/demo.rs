//! The getting-started walkthrough as an end-to-end test: the same scenario as `make demo`.
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
        "greetings from east",
        "every check passes and east's gateway is alive",
        "TLS without a client certificate",
        "from east",
        "moved to notReadyAddresses",
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
