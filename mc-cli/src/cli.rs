//! The command-line structure of `mc` (clap) and the dispatch to each command.

use std::io::Write;
use std::path::PathBuf;

use clap::{ArgAction, Parser, Subcommand, ValueEnum};

use crate::kube::KubeArgs;
use crate::{Result, check, gateways, link, manifests, trust};

/// mc: multicluster service mirroring for Kubernetes, compatible with Linkerd multicluster.
#[derive(Debug, Parser)]
#[command(name = "mc", version, propagate_version = true)]
pub struct Cli {
    /// Cluster selection, as in kubectl.
    #[command(flatten)]
    pub kube: KubeArgs,
    /// Namespace of the Linkerd control plane (linkerd-config, identities).
    #[arg(
        short = 'L',
        long,
        global = true,
        default_value = "linkerd",
        value_name = "NS"
    )]
    pub linkerd_namespace: String,
    /// The command.
    #[command(subcommand)]
    pub command: Command,
}

/// Top-level commands.
#[derive(Debug, Subcommand)]
#[allow(clippy::large_enum_variant)]
pub enum Command {
    /// Install, link and inspect the multicluster extension.
    #[command(subcommand, visible_alias = "mc")]
    Multicluster(Multicluster),
    /// Trust-anchor tooling: create, bundle, inspect, fetch, diff.
    #[command(subcommand)]
    TrustAnchor(trust::TrustAnchorCommand),
    /// Issuer (intermediate CA) tooling.
    #[command(subcommand)]
    Issuer(trust::IssuerCommand),
    /// Print the version of mc.
    Version,
    /// Print a shell completion script.
    Completion {
        /// The shell.
        shell: clap_complete::Shell,
    },
}

/// `mc multicluster …`
#[derive(Debug, Subcommand)]
#[allow(clippy::large_enum_variant)]
pub enum Multicluster {
    /// Render the extension's manifests (for `kubectl apply -f -`).
    Install(manifests::InstallArgs),
    /// Render the credentials, Link and mirror controller that link the current (target)
    /// cluster to a source cluster (apply the output to the source cluster).
    Link(link::LinkArgs),
    /// Render extra remote-access credentials (one set per source cluster).
    Allow(manifests::AllowArgs),
    /// Print everything `link` created, plus the mirrors, for `kubectl delete -f -`.
    Unlink(manifests::UnlinkArgs),
    /// Print the extension's objects for `kubectl delete -f -`; refuses while Links exist.
    Uninstall(manifests::UninstallArgs),
    /// Check the health of the extension and of every Link.
    Check(check::CheckArgs),
    /// Show the gateways of the linked clusters, from Link status.
    Gateways(gateways::GatewaysArgs),
    /// Render the gateway's identity Secret: a certificate for the gateway identity, issued by
    /// an issuer (see `mc issuer create`), plus the trust anchors.
    GatewayIdentity(trust::GatewayIdentityArgs),
    /// Render the egress's identity Secret: a client certificate for the egress identity
    /// (`linkerd-multicluster-egress.<ns>.serviceaccount.identity.<linkerd ns>.<domain>`),
    /// issued by the source cluster's issuer, plus the trust anchors.
    EgressIdentity(trust::GatewayIdentityArgs),
    /// Render the issuer Secret of issuer mode (`install --issuer-secret`): the issuer's
    /// certificate and key, from which the gateway and the egress mint and renew their own
    /// leaves, plus the trust anchors.
    IssuerSecret(trust::IssuerSecretArgs),
}

/// Manifest output format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, Default)]
pub enum ManifestFormat {
    /// YAML stream.
    #[default]
    Yaml,
    /// JSON v1/List.
    Json,
}

impl From<ManifestFormat> for mc_core::render::Format {
    fn from(f: ManifestFormat) -> Self {
        match f {
            ManifestFormat::Yaml => mc_core::render::Format::Yaml,
            ManifestFormat::Json => mc_core::render::Format::Json,
        }
    }
}

/// Image flags shared by install and link.
#[derive(Debug, Clone, clap::Args)]
pub struct ImageArgs {
    /// Registry of the mc image (`<registry>/mc:<tag>`).
    #[arg(long, env = "MC_DOCKER_REGISTRY", value_name = "REGISTRY")]
    pub registry: Option<String>,
    /// Tag of the mc image (default: this mc's version).
    #[arg(long, value_name = "TAG")]
    pub tag: Option<String>,
}

/// A `--flag` that also accepts `--flag=false`.
pub fn bool_flag() -> ArgAction {
    ArgAction::Set
}

/// Reads a file named by a flag, as text.
pub fn read_text(path: &PathBuf) -> Result<String> {
    std::fs::read_to_string(path).map_err(|source| crate::Error::Read {
        path: path.display().to_string(),
        source,
    })
}

pub(crate) async fn dispatch(cli: Cli, out: &mut dyn Write, err: &mut dyn Write) -> Result<()> {
    let Cli {
        kube,
        linkerd_namespace,
        command,
    } = cli;
    match command {
        Command::Multicluster(mc) => match mc {
            Multicluster::Install(a) => {
                manifests::install(a, &kube, &linkerd_namespace, out, err).await
            }
            Multicluster::Allow(a) => manifests::allow(a, &kube, &linkerd_namespace, out).await,
            Multicluster::Link(a) => link::link(a, &kube, &linkerd_namespace, out, err).await,
            Multicluster::Unlink(a) => manifests::unlink(a, &kube, &linkerd_namespace, out).await,
            Multicluster::Uninstall(a) => manifests::uninstall(a, &kube, out, err).await,
            Multicluster::Check(a) => check::check(a, &kube, &linkerd_namespace, out).await,
            Multicluster::Gateways(a) => gateways::gateways(a, &kube, out).await,
            Multicluster::GatewayIdentity(a) => {
                trust::identity_secret(a, trust::Component::Gateway, &linkerd_namespace, out, err)
            }
            Multicluster::IssuerSecret(a) => trust::issuer_secret(a, out),
            Multicluster::EgressIdentity(a) => {
                trust::identity_secret(a, trust::Component::Egress, &linkerd_namespace, out, err)
            }
        },
        Command::TrustAnchor(c) => {
            trust::trust_anchor(c, &kube, &linkerd_namespace, out, err).await
        }
        Command::Issuer(c) => trust::issuer(c, out, err),
        Command::Version => crate::emit(out, &format!("mc {}\n", env!("CARGO_PKG_VERSION"))),
        Command::Completion { shell } => {
            let mut cmd = <Cli as clap::CommandFactory>::command();
            let mut buf = Vec::new();
            clap_complete::generate(shell, &mut cmd, "mc", &mut buf);
            crate::emit(out, &String::from_utf8_lossy(&buf))
        }
    }
}
