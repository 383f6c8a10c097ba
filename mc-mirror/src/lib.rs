//! `mc-mirror`: the service-mirror controller.
//!
//! For each Link in its namespace (or the Links named with `--link`), the controller watches the
//! target cluster through the Link's credentials and keeps the source cluster's mirror Services
//! and Endpoints exactly equal to what `mc_core::mirror` computes. See `docs/mirror.md` for the
//! behaviour and the RBAC it needs.
//!
//! In-process use (as the e2e tests do):
//!
//! ```no_run
//! # async fn demo(client: kube::Client) -> mc_mirror::Result<()> {
//! let mut options = mc_mirror::Options::new("linkerd-multicluster", "pod-0");
//! options.links = vec!["east".into()];
//! let controller = mc_mirror::Controller::new(client, options);
//! let metrics = controller.metrics(); // writes are counted in metrics.writes(..)
//! controller.run(std::future::pending()).await
//! # }
//! ```

pub mod admin;
mod cache;
mod compact;
pub mod config;
mod controller;
mod egress;
mod error;
mod federated;
mod federated_egress;
pub mod lease;
pub mod logging;
pub mod metrics;
pub mod probe;
mod queue;
mod reconcile;
pub mod remote;
pub mod status;
mod worker;

use std::future::Future;

pub use config::{Args, Options};
pub use controller::Controller;
pub use error::Error;

/// The crate's result type.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Loads the source cluster's client configuration: `--kubeconfig`/`--context`, else the
/// default chain (KUBECONFIG, ~/.kube/config, in-cluster).
pub async fn local_client(args: &Args) -> Result<kube::Client> {
    let config = local_config(args).await?;
    kube::Client::try_from(config).map_err(|e| Error::LocalConfig {
        source_name: "the client configuration".into(),
        reason: e.to_string(),
    })
}

/// The source cluster's client configuration, as [`local_client`] finds it.
pub async fn local_config(args: &Args) -> Result<kube::Config> {
    let wrap = |source_name: String, e: String| Error::LocalConfig {
        source_name,
        reason: e,
    };
    let config = match &args.kubeconfig {
        Some(path) => {
            let name = format!("--kubeconfig {}", path.display());
            let kc = kube::config::Kubeconfig::read_from(path)
                .map_err(|e| wrap(name.clone(), e.to_string()))?;
            let opts = kube::config::KubeConfigOptions {
                context: args.context.clone(),
                ..Default::default()
            };
            kube::Config::from_custom_kubeconfig(kc, &opts)
                .await
                .map_err(|e| wrap(name, e.to_string()))?
        }
        None => {
            let opts = kube::config::KubeConfigOptions {
                context: args.context.clone(),
                ..Default::default()
            };
            match kube::Config::from_kubeconfig(&opts).await {
                Ok(c) => c,
                Err(kc_err) => kube::Config::incluster().map_err(|e| {
                    wrap(
                        "KUBECONFIG, ~/.kube/config and the in-cluster ServiceAccount".into(),
                        format!("kubeconfig: {kc_err}; in-cluster: {e}"),
                    )
                })?,
            }
        }
    };
    Ok(config)
}

/// The binary's entry point: admin server plus controller, until `shutdown` completes.
pub async fn run(args: Args, shutdown: impl Future<Output = ()>) -> Result<()> {
    let options = args.options()?;
    let metrics = std::sync::Arc::new(metrics::Metrics::new());
    // Requests to the source cluster are counted (mirror_api_requests_total{api="source"}).
    let client = metrics
        .counted_client(local_config(&args).await?, "source", "")
        .map_err(|e| Error::LocalConfig {
            source_name: "the client configuration".into(),
            reason: e.to_string(),
        })?;
    let controller = Controller::with_metrics(client, options, metrics);
    let admin = admin::AdminServer::bind(
        &args.admin_addr,
        controller.metrics(),
        controller.readiness(),
    )
    .await?;
    if let Some(addr) = admin.local_addr() {
        tracing::info!(%addr, "admin server listening");
    }
    let admin = tokio::spawn(admin.serve());
    let result = controller.run(shutdown).await;
    admin.abort();
    result
}
