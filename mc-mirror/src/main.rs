//! `mc-mirror`: the service-mirror controller binary. See `mc-mirror --help` and docs/mirror.md.

use clap::Parser as _;

#[tokio::main]
async fn main() -> std::process::ExitCode {
    let args = mc_mirror::config::Args::parse();
    mc_mirror::logging::init(args.log_format, &args.log_level);
    let shutdown = async {
        let mut term =
            tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).ok();
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = async { match term.as_mut() { Some(t) => { t.recv().await; } None => std::future::pending::<()>().await } } => {}
        }
        tracing::info!("shutting down");
    };
    match mc_mirror::run(args, shutdown).await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!(error = %e, "mc-mirror failed");
            eprintln!("mc-mirror: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}
