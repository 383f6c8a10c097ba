//! `mc-demo`: the getting-started walkthrough on the local testbed, step by step.
//!
//! Each step prints the command a user would type on real clusters, runs its local
//! equivalent, and checks the result; the demo exits non-zero at the first failed check.

use std::process::ExitCode;
use std::time::Instant;

use mc_tests::Testbed;

fn main() -> ExitCode {
    let start = Instant::now();
    match run() {
        Ok(()) => {
            println!(
                "demo: every step passed in {:.1}s",
                start.elapsed().as_secs_f64()
            );
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("demo: FAILED: {e}");
            ExitCode::FAILURE
        }
    }
}

fn step(n: u32, title: &str, user_command: &str) {
    println!("\n[{n}] {title}\n    $ {user_command}");
}

fn run() -> Result<(), Box<dyn std::error::Error>> {
    step(
        1,
        "Clusters: start east and west (real kube-apiserver over etcd)",
        "kind create cluster --name east; kind create cluster --name west",
    );
    let bed = Testbed::start(&["east", "west"])?;
    for cluster in bed.clusters() {
        let out = bed
            .kubectl(&cluster.name)
            .args(["get", "ns", "default", "-o", "name"])
            .output()?;
        if !out.status.success() {
            return Err(format!(
                "{} does not answer: {}",
                cluster.name,
                String::from_utf8_lossy(&out.stderr)
            )
            .into());
        }
        println!("    ok: {} answers at {}", cluster.name, cluster.server);
    }
    step(
        2,
        "Cleanup: stop every process",
        "kind delete cluster --name east; kind delete cluster --name west",
    );
    let pids = bed.pids();
    bed.stop();
    if let Some((what, pid)) = pids.iter().find(|(_, pid)| mc_tests::pid_alive(*pid)) {
        return Err(format!("{what} (pid {pid}) is still running").into());
    }
    println!("    ok: {} processes stopped", pids.len());
    Ok(())
}
