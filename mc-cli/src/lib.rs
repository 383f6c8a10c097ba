//! `mc-cli`: the library behind the `mc` command.
//!
//! [`run`] parses arguments and runs one command, writing manifests and reports to `out` and
//! diagnostics to `err`, and returns the process exit code: 0 on success, 1 when a command
//! fails or `check` finds problems, 2 for bad input (flags, files, missing or incomplete
//! objects). Manifests are rendered completely before anything is printed, so a failing command
//! never leaves half a manifest on stdout.
//!
//! ```
//! let mut out = Vec::new();
//! let mut err = Vec::new();
//! let args = ["mc", "multicluster", "install", "--ignore-cluster", "--gateway=false"];
//! let code = mc_cli::run(args, &mut out, &mut err);
//! assert_eq!(code, 0);
//! assert!(String::from_utf8(out).unwrap().contains("kind: CustomResourceDefinition"));
//! ```

pub mod check;
pub mod cli;
mod error;
pub mod gateways;
pub mod kube;
pub mod link;
pub mod manifests;
pub mod trust;

use std::ffi::OsString;
use std::io::Write;

pub use cli::Cli;
pub use error::{Error, Result};

/// Runs `mc` with `args` (the first item is the program name). Returns the exit code.
pub fn run<I, T>(args: I, out: &mut dyn Write, err: &mut dyn Write) -> i32
where
    I: IntoIterator<Item = T>,
    T: Into<OsString> + Clone,
{
    let cli = match <Cli as clap::Parser>::try_parse_from(args) {
        Ok(cli) => cli,
        Err(e) => return clap_exit(e, out, err),
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            let _ = writeln!(err, "error: cannot start the async runtime: {e}");
            return 1;
        }
    };
    runtime.block_on(run_cli(cli, out, err))
}

/// Like [`run`], from inside an async runtime.
pub async fn run_async<I, T>(args: I, out: &mut dyn Write, err: &mut dyn Write) -> i32
where
    I: IntoIterator<Item = T>,
    T: Into<OsString> + Clone,
{
    match <Cli as clap::Parser>::try_parse_from(args) {
        Ok(cli) => run_cli(cli, out, err).await,
        Err(e) => clap_exit(e, out, err),
    }
}

fn clap_exit(e: clap::Error, out: &mut dyn Write, err: &mut dyn Write) -> i32 {
    let text = e.render().to_string();
    if e.use_stderr() {
        let _ = write!(err, "{text}");
    } else {
        let _ = write!(out, "{text}");
    }
    e.exit_code()
}

async fn run_cli(cli: Cli, out: &mut dyn Write, err: &mut dyn Write) -> i32 {
    match cli::dispatch(cli, out, err).await {
        Ok(()) => 0,
        Err(Error::Unhealthy(_)) => 1,
        Err(e) => {
            let _ = writeln!(err, "error: {e}");
            e.exit_code()
        }
    }
}

/// Writes `text` to `out` in one call.
pub(crate) fn emit(out: &mut dyn Write, text: &str) -> Result<()> {
    out.write_all(text.as_bytes())
        .and_then(|()| out.flush())
        .map_err(|source| Error::Write {
            path: "stdout".to_owned(),
            source,
        })
}
