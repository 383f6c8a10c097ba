//! Helpers shared by the e2e tests on the testbed's real clusters (`nodes`, `pod_faults`).
#![allow(dead_code, clippy::panic)]

use std::process::Output;
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
