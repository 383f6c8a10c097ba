//! `mc-testbed`: starts and stops real local clusters (kube-apiserver over etcd) for mc.
//!
//! ```text
//! mc-testbed up --dir .testbed [--clusters east,west] [--nodes]   # prints the kubeconfig path once ready
//! mc-testbed down --dir .testbed
//! ```
//!
//! `--nodes` starts real clusters (a node per cluster running Pods, controllers, DNS and a
//! LoadBalancer controller); it needs root inside `scripts/in-netns`:
//!
//! ```text
//! scripts/in-netns bash -c 'mc-testbed up --dir .testbed --nodes && exec bash'
//! ```
//!
//! ```text
//! ```

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use mc_tests::{Lifetime, Testbed, Topology};

#[derive(Parser)]
#[command(
    name = "mc-testbed",
    version,
    about = "Real local Kubernetes clusters for mc"
)]
struct Cli {
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Start clusters in the background; print the kubeconfig path once every cluster is ready.
    Up {
        /// Where certificates, logs, etcd data, `kubeconfig` and `pids` go.
        #[arg(long)]
        dir: PathBuf,
        /// The clusters to start, comma-separated; each becomes a kubeconfig context.
        #[arg(long, value_delimiter = ',', default_value = "east,west")]
        clusters: Vec<String>,
        /// Real clusters: a node per cluster that runs Pods (needs root in scripts/in-netns).
        #[arg(long)]
        nodes: bool,
    },
    /// Start clusters and keep them in the foreground until this process is stopped; they die with it.
    Run {
        /// Where certificates, logs, etcd data, `kubeconfig` and `pids` go.
        #[arg(long)]
        dir: PathBuf,
        /// The clusters to start, comma-separated; each becomes a kubeconfig context.
        #[arg(long, value_delimiter = ',', default_value = "east,west")]
        clusters: Vec<String>,
        /// Real clusters: a node per cluster that runs Pods (needs root in scripts/in-netns).
        #[arg(long)]
        nodes: bool,
    },
    /// Run the testbed's LoadBalancer controller for one cluster (`up --nodes` starts one per
    /// cluster in the background).
    Lb {
        /// The kubeconfig.
        #[arg(long)]
        kubeconfig: PathBuf,
        /// The cluster's context.
        #[arg(long)]
        context: String,
        /// Any address of the pool's /24, e.g. 198.18.16.0.
        #[arg(long)]
        pool: std::net::Ipv4Addr,
    },
    /// Stop the clusters started with `up --dir DIR`.
    Down {
        /// The directory given to `up`.
        #[arg(long)]
        dir: PathBuf,
    },
}

fn main() -> ExitCode {
    match run(Cli::parse()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("mc-testbed: {e}");
            ExitCode::FAILURE
        }
    }
}

fn run(cli: Cli) -> Result<(), mc_tests::Error> {
    match cli.command {
        Cmd::Up {
            dir,
            clusters,
            nodes,
        } => {
            if dir.join("pids").exists() {
                eprintln!(
                    "mc-testbed: {} holds a running testbed; stopping it first",
                    dir.display()
                );
                Testbed::stop_dir(&dir)?;
            }
            let names: Vec<&str> = clusters.iter().map(String::as_str).collect();
            eprintln!(
                "mc-testbed: starting {} in {}",
                names.join(", "),
                dir.display()
            );
            let bed = Testbed::start_topology(&dir, &names, Lifetime::Detached, topology(nodes))?;
            if let Some(plan) = bed.plan() {
                start_lb_controllers(&bed, plan, &dir)?;
            }
            let kubeconfig = std::path::absolute(bed.kubeconfig())
                .map_err(|e| mc_tests::Error::io("resolve", bed.kubeconfig().display(), e))?;
            for c in bed.clusters() {
                eprintln!("mc-testbed: {} ready at {}", c.name, c.server);
            }
            bed.detach();
            println!("{}", kubeconfig.display());
            Ok(())
        }
        Cmd::Run {
            dir,
            clusters,
            nodes,
        } => {
            let names: Vec<&str> = clusters.iter().map(String::as_str).collect();
            let bed = Testbed::start_topology(&dir, &names, Lifetime::Attached, topology(nodes))?;
            println!("{}", bed.kubeconfig().display());
            eprintln!("mc-testbed: {} running; stop with Ctrl-C", names.join(", "));
            loop {
                std::thread::park();
            }
        }
        Cmd::Lb {
            kubeconfig,
            context,
            pool,
        } => mc_tests::lb::run(
            &kubeconfig,
            &context,
            pool,
            &std::sync::atomic::AtomicBool::new(false),
        ),
        Cmd::Down { dir } => {
            for (what, pid) in Testbed::stop_dir(&dir)? {
                eprintln!("mc-testbed: stopped {what} (pid {pid})");
            }
            Ok(())
        }
    }
}

fn topology(nodes: bool) -> Topology {
    if nodes {
        Topology::Nodes
    } else {
        Topology::ApiOnly
    }
}

/// A detached testbed outlives this process, so its LoadBalancer controllers run as processes
/// of their own (`mc-testbed lb`), listed in `pids` for `down`.
fn start_lb_controllers(
    bed: &Testbed,
    plan: mc_tests::network::Plan,
    dir: &std::path::Path,
) -> Result<(), mc_tests::Error> {
    use std::io::Write as _;
    let exe = std::env::current_exe().map_err(|e| mc_tests::Error::io("find", "mc-testbed", e))?;
    let pids = dir.join("pids");
    let mut file = std::fs::OpenOptions::new()
        .append(true)
        .open(&pids)
        .map_err(|e| mc_tests::Error::io("open", pids.display(), e))?;
    for (index, c) in bed.clusters().iter().enumerate() {
        let mut cmd = std::process::Command::new(&exe);
        cmd.arg("lb")
            .arg("--kubeconfig")
            .arg(bed.kubeconfig())
            .args(["--context", &c.name])
            .arg("--pool")
            .arg(plan.lb_address(index, 0).to_string());
        let log = dir.join(format!("lb-{}.log", c.name));
        let proc = mc_tests::Proc::spawn(
            format!("mc-testbed lb {}", c.name),
            cmd,
            &log,
            Lifetime::Detached,
        )?;
        writeln!(file, "mc-testbed-lb-{} {}", c.name, proc.release())
            .map_err(|e| mc_tests::Error::io("write", pids.display(), e))?;
    }
    Ok(())
}
