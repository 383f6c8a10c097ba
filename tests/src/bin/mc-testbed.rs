//! `mc-testbed`: starts and stops real local clusters (kube-apiserver over etcd) for mc.
//!
//! ```text
//! mc-testbed up --dir .testbed [--clusters east,west]   # prints the kubeconfig path once ready
//! mc-testbed down --dir .testbed
//! ```

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use mc_tests::{Lifetime, Testbed};

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
    },
    /// Start clusters and keep them in the foreground until this process is stopped; they die with it.
    Run {
        /// Where certificates, logs, etcd data, `kubeconfig` and `pids` go.
        #[arg(long)]
        dir: PathBuf,
        /// The clusters to start, comma-separated; each becomes a kubeconfig context.
        #[arg(long, value_delimiter = ',', default_value = "east,west")]
        clusters: Vec<String>,
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
        Cmd::Up { dir, clusters } => {
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
            let bed = Testbed::start_in(&dir, &names, Lifetime::Detached)?;
            let kubeconfig = std::path::absolute(bed.kubeconfig())
                .map_err(|e| mc_tests::Error::io("resolve", bed.kubeconfig().display(), e))?;
            for c in bed.clusters() {
                eprintln!("mc-testbed: {} ready at {}", c.name, c.server);
            }
            bed.detach();
            println!("{}", kubeconfig.display());
            Ok(())
        }
        Cmd::Run { dir, clusters } => {
            let names: Vec<&str> = clusters.iter().map(String::as_str).collect();
            let bed = Testbed::start_in(&dir, &names, Lifetime::Attached)?;
            println!("{}", bed.kubeconfig().display());
            eprintln!("mc-testbed: {} running; stop with Ctrl-C", names.join(", "));
            loop {
                std::thread::park();
            }
        }
        Cmd::Down { dir } => {
            for (what, pid) in Testbed::stop_dir(&dir)? {
                eprintln!("mc-testbed: stopped {what} (pid {pid})");
            }
            Ok(())
        }
    }
}
