//! `mc-demo`: the getting-started walkthrough on the testbed's real clusters, step by step.
//!
//! Each step prints the commands a user types, runs exactly those commands and checks the
//! result; the demo exits non-zero at the first failed check. Run it with `make demo` (inside
//! `scripts/in-netns`, the sealed network namespace the testbed's nodes live in).

use std::process::ExitCode;
use std::time::Instant;

fn main() -> ExitCode {
    let start = Instant::now();
    let bin_dir = match std::env::current_exe() {
        Ok(exe) => exe
            .parent()
            .map(std::path::Path::to_path_buf)
            .unwrap_or_default(),
        Err(e) => {
            eprintln!("demo: cannot locate this executable: {e}");
            return ExitCode::FAILURE;
        }
    };
    let work = std::env::var_os("MC_DEMO_DIR").map_or_else(
        || std::env::temp_dir().join(format!("mc-demo-{}", std::process::id())),
        Into::into,
    );
    println!(
        "mc demo: two clusters with nodes on this machine; work files in {}",
        work.display()
    );
    match mc_tests::demo::run(&bin_dir, &work) {
        Ok(()) => {
            println!(
                "\ndemo: every step passed in {:.1}s",
                start.elapsed().as_secs_f64()
            );
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!(
                "\ndemo: FAILED after {:.1}s: {e}\n(logs in {})",
                start.elapsed().as_secs_f64(),
                work.display()
            );
            ExitCode::FAILURE
        }
    }
}
