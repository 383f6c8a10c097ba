//! `mc trust-anchor …` and `mc issuer …`: certificates without step or openssl.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use clap::Subcommand;
use mc_core::pki::{self, AnchorOptions, CertifiedKey, IssuerOptions};
use mc_core::trust::{Anchor, TrustBundle, format_time};

use crate::cli::read_text;
use crate::kube::{KubeArgs, linkerd_config};
use crate::{Error, Result, emit};

/// `mc trust-anchor …`
#[derive(Debug, Subcommand)]
pub enum TrustAnchorCommand {
    /// Create a root CA (trust anchor): writes the certificate and the private key.
    Create {
        /// Certificate output file.
        #[arg(long, default_value = "ca.crt")]
        cert_out: PathBuf,
        /// Private key output file (mode 0600).
        #[arg(long, default_value = "ca.key")]
        key_out: PathBuf,
        /// Subject common name.
        #[arg(long, default_value = "root.linkerd.cluster.local")]
        common_name: String,
        /// End of validity: a duration from now (`87600h`) or an RFC 3339 time.
        #[arg(long, default_value = "87600h")]
        not_after: String,
        /// Overwrite existing files.
        #[arg(long)]
        force: bool,
    },
    /// Validate, dedupe and concatenate anchor files into one bundle on stdout.
    Bundle {
        /// PEM files, each with one or more CA certificates.
        #[arg(required = true)]
        files: Vec<PathBuf>,
        /// Warn about anchors that expire within this duration.
        #[arg(long, default_value = "720h")]
        warn_within: String,
    },
    /// Print a table of the anchors in a file, or of the cluster (--context) when no file is given.
    Inspect {
        /// PEM file; without it, the anchors of linkerd-config in the cluster.
        file: Option<PathBuf>,
    },
    /// Print the anchors of the cluster's linkerd-config as PEM.
    Fetch,
    /// Compare two bundles: anchors only in A, only in B, and shared.
    Diff {
        /// First bundle.
        a: PathBuf,
        /// Second bundle.
        b: PathBuf,
    },
}

/// `mc issuer …`
#[derive(Debug, Subcommand)]
pub enum IssuerCommand {
    /// Create an issuer (intermediate CA) signed by a trust anchor.
    Create {
        /// The trust anchor's certificate.
        #[arg(long, required = true)]
        ca_cert: PathBuf,
        /// The trust anchor's private key.
        #[arg(long, required = true)]
        ca_key: PathBuf,
        /// Certificate output file.
        #[arg(long, default_value = "issuer.crt")]
        cert_out: PathBuf,
        /// Private key output file (mode 0600).
        #[arg(long, default_value = "issuer.key")]
        key_out: PathBuf,
        /// Subject common name.
        #[arg(long, default_value = "identity.linkerd.cluster.local")]
        common_name: String,
        /// End of validity: a duration from now (`8760h`) or an RFC 3339 time.
        #[arg(long, default_value = "8760h")]
        not_after: String,
        /// Overwrite existing files.
        #[arg(long)]
        force: bool,
    },
}

/// `--not-after`: a duration from `now`, or an RFC 3339 time.
fn not_after(value: &str, now: SystemTime) -> Result<SystemTime> {
    if let Ok(d) = mc_core::link::parse_duration(value) {
        return Ok(now + d);
    }
    let ts: jiff::Timestamp = value.parse().map_err(|e| {
        Error::input(
            "--not-after",
            format!("{value:?} is neither a duration nor an RFC 3339 time ({e})"),
            "write e.g. 8760h or 2030-01-01T00:00:00Z",
        )
    })?;
    Ok(SystemTime::from(ts))
}

/// Writes both files or neither: temporary files first, then renames.
fn write_pair(cert: &Path, cert_pem: &str, key: &Path, key_pem: &str, force: bool) -> Result<()> {
    for path in [cert, key] {
        if path.exists() && !force {
            return Err(Error::input(
                path.display().to_string(),
                "already exists",
                "choose another --cert-out/--key-out, or pass --force to overwrite",
            ));
        }
    }
    let write = |path: &Path, text: &str, private: bool| -> Result<PathBuf> {
        let mut tmp_name = path.as_os_str().to_owned();
        tmp_name.push(".mc-tmp");
        let tmp = PathBuf::from(tmp_name);
        let werr = |source| Error::Write {
            path: tmp.display().to_string(),
            source,
        };
        let mut opts = std::fs::OpenOptions::new();
        opts.write(true).create(true).truncate(true);
        #[cfg(unix)]
        if private {
            use std::os::unix::fs::OpenOptionsExt as _;
            opts.mode(0o600);
        }
        #[cfg(not(unix))]
        let _ = private;
        let mut f = opts.open(&tmp).map_err(werr)?;
        f.write_all(text.as_bytes())
            .and_then(|()| f.sync_all())
            .map_err(werr)?;
        Ok(tmp)
    };
    let tmp_cert = write(cert, cert_pem, false)?;
    let tmp_key = match write(key, key_pem, true) {
        Ok(t) => t,
        Err(e) => {
            let _ = std::fs::remove_file(&tmp_cert);
            return Err(e);
        }
    };
    for (tmp, path) in [(&tmp_key, key), (&tmp_cert, cert)] {
        std::fs::rename(tmp, path).map_err(|source| Error::Write {
            path: path.display().to_string(),
            source,
        })?;
    }
    Ok(())
}

fn read_bundle(path: &Path, now: Option<SystemTime>) -> Result<TrustBundle> {
    let text = read_text(&path.to_path_buf())?;
    let parsed = match now {
        Some(now) => TrustBundle::from_pem(&text, now),
        None => TrustBundle::from_pem_unchecked_time(&text),
    };
    parsed.map_err(|e| {
        Error::input(
            path.display().to_string(),
            e.to_string(),
            "fix or replace the file",
        )
    })
}

/// A table of anchors.
pub fn anchor_table(anchors: &[Anchor], now: SystemTime) -> String {
    let mut text = format!(
        "{:<3} {:<40} {:<21} {:<21} {:<12} {:<12} SHA256\n",
        "#", "SUBJECT", "NOT BEFORE", "NOT AFTER", "STATUS", "KEY"
    );
    for (i, a) in anchors.iter().enumerate() {
        let s = a.summary();
        let status = if now < s.not_before {
            "not yet valid"
        } else if now > s.not_after {
            "EXPIRED"
        } else {
            "valid"
        };
        text.push_str(&format!(
            "{:<3} {:<40} {:<21} {:<21} {:<12} {:<12} {}\n",
            i + 1,
            s.subject,
            format_time(s.not_before),
            format_time(s.not_after),
            status,
            s.key_algorithm,
            s.sha256_fingerprint
        ));
    }
    text
}

pub(crate) async fn trust_anchor(
    cmd: TrustAnchorCommand,
    kube: &KubeArgs,
    linkerd_namespace: &str,
    out: &mut dyn Write,
    err: &mut dyn Write,
) -> Result<()> {
    let now = SystemTime::now();
    match cmd {
        TrustAnchorCommand::Create {
            cert_out,
            key_out,
            common_name,
            not_after: na,
            force,
        } => {
            let opts = AnchorOptions {
                common_name,
                not_after: not_after(&na, now)?,
                ..AnchorOptions::new(now)
            };
            let ck = pki::create_trust_anchor(&opts)?;
            write_pair(&cert_out, &ck.cert_pem, &key_out, &ck.key_pem, force)?;
            let _ = writeln!(
                err,
                "wrote {} and {}",
                cert_out.display(),
                key_out.display()
            );
            Ok(())
        }
        TrustAnchorCommand::Bundle { files, warn_within } => {
            let window = mc_core::link::parse_duration(&warn_within)?;
            let mut bundle: Option<TrustBundle> = None;
            for f in &files {
                let b = read_bundle(f, Some(now))?;
                bundle = Some(match bundle {
                    Some(acc) => acc.merge(&b),
                    None => b,
                });
            }
            let bundle = bundle
                .ok_or_else(|| Error::input("FILES", "none given", "pass at least one file"))?;
            for a in bundle.expiring_within(now, window) {
                let _ = writeln!(
                    err,
                    "warning: anchor {:?} expires at {} (within {warn_within}); plan its rotation",
                    a.summary().subject,
                    format_time(a.summary().not_after)
                );
            }
            emit(out, &bundle.to_pem())
        }
        TrustAnchorCommand::Inspect { file } => {
            let bundle = match file {
                Some(f) => read_bundle(&f, None)?,
                None => cluster_bundle(kube, linkerd_namespace).await?,
            };
            emit(out, &anchor_table(bundle.anchors(), now))
        }
        TrustAnchorCommand::Fetch => {
            let bundle = cluster_bundle(kube, linkerd_namespace).await?;
            emit(out, &bundle.to_pem())
        }
        TrustAnchorCommand::Diff { a, b } => {
            let ba = read_bundle(&a, None)?;
            let bb = read_bundle(&b, None)?;
            let diff = ba.diff(&bb);
            let mut text = String::new();
            for (label, list) in [
                (format!("only in {}", a.display()), &diff.removed),
                (format!("only in {}", b.display()), &diff.added),
                ("in both".to_owned(), &diff.common),
            ] {
                text.push_str(&format!("{label}: {}\n", list.len()));
                for anchor in list.iter() {
                    let s = anchor.summary();
                    text.push_str(&format!(
                        "  {} (SHA256 {}, expires {})\n",
                        s.subject,
                        s.sha256_fingerprint,
                        format_time(s.not_after)
                    ));
                }
            }
            text.push_str(if diff.is_empty() {
                "the bundles hold the same anchors\n"
            } else if diff.common.is_empty() {
                "the bundles share NO anchor: clusters using them cannot authenticate each other\n"
            } else {
                "the bundles differ but share at least one anchor\n"
            });
            emit(out, &text)?;
            if diff.is_empty() {
                Ok(())
            } else {
                Err(Error::Unhealthy(1))
            }
        }
    }
}

async fn cluster_bundle(kube: &KubeArgs, linkerd_namespace: &str) -> Result<TrustBundle> {
    let cluster = kube.connect(None).await?;
    let config = linkerd_config(&cluster.client, linkerd_namespace, &cluster.context)
        .await?
        .ok_or_else(|| {
            Error::input(
                format!(
                    "ConfigMap {linkerd_namespace}/linkerd-config (context {})",
                    cluster.context
                ),
                "does not exist",
                "install Linkerd, or pass -L with the control-plane namespace",
            )
        })?;
    Ok(TrustBundle::from_pem_unchecked_time(
        &config.trust_anchors_pem,
    )?)
}

pub(crate) fn issuer(cmd: IssuerCommand, _out: &mut dyn Write, err: &mut dyn Write) -> Result<()> {
    let now = SystemTime::now();
    match cmd {
        IssuerCommand::Create {
            ca_cert,
            ca_key,
            cert_out,
            key_out,
            common_name,
            not_after: na,
            force,
        } => {
            let signer = CertifiedKey {
                cert_pem: read_text(&ca_cert)?,
                key_pem: read_text(&ca_key)?,
            };
            let opts = IssuerOptions {
                common_name,
                not_after: not_after(&na, now)?,
                ..IssuerOptions::new(now)
            };
            let ck = pki::create_issuer(&signer, &opts)?;
            write_pair(&cert_out, &ck.cert_pem, &key_out, &ck.key_pem, force)?;
            let _ = writeln!(
                err,
                "wrote {} and {}",
                cert_out.display(),
                key_out.display()
            );
            Ok(())
        }
    }
}

/// The issuer, trust anchors and namespace flags shared by `gateway-identity`,
/// `egress-identity` and `issuer-secret`.
#[derive(Debug, clap::Args)]
pub struct IssuerArgs {
    /// The issuer's certificate (from `mc issuer create`).
    #[arg(long, required = true)]
    pub issuer_cert: PathBuf,
    /// The issuer's private key.
    #[arg(long, required = true)]
    pub issuer_key: PathBuf,
    /// The trust-anchor bundle client certificates must chain to.
    #[arg(long, required = true)]
    pub trust_anchors: PathBuf,
    /// Namespace of the extension.
    #[arg(long, default_value = mc_core::render::DEFAULT_NAMESPACE)]
    pub namespace: String,
}

impl IssuerArgs {
    /// The trust anchors (valid at `now`) and the issuer, read from their files; errors name
    /// the file.
    fn load(&self, now: SystemTime) -> Result<(TrustBundle, CertifiedKey)> {
        let anchors_pem = read_text(&self.trust_anchors)?;
        let anchors = TrustBundle::from_pem(&anchors_pem, now).map_err(|e| {
            Error::input(
                self.trust_anchors.display().to_string(),
                e.to_string(),
                "pass the trust-anchor bundle (PEM) of the clusters",
            )
        })?;
        let issuer = CertifiedKey {
            cert_pem: read_text(&self.issuer_cert)?,
            key_pem: read_text(&self.issuer_key)?,
        };
        Ok((anchors, issuer))
    }
}

/// Flags of `mc multicluster gateway-identity` and `mc multicluster egress-identity`.
#[derive(Debug, clap::Args)]
pub struct GatewayIdentityArgs {
    /// The issuer, the anchors and the namespace.
    #[command(flatten)]
    pub issuer: IssuerArgs,
    /// Name of the gateway (its ServiceAccount, part of the identity); not used by the egress.
    #[arg(long, default_value = "linkerd-gateway")]
    pub gateway_name: String,
    /// Trust domain of the identity.
    #[arg(long, default_value = "cluster.local")]
    pub identity_trust_domain: String,
    /// Validity of the certificate (mc-gateway reloads it when the Secret changes).
    #[arg(long, default_value = "8760h")]
    pub validity: String,
    /// Output format.
    #[arg(short = 'o', long, value_enum, default_value = "yaml")]
    pub output: crate::cli::ManifestFormat,
}

/// Flags of `mc multicluster issuer-secret`.
#[derive(Debug, clap::Args)]
pub struct IssuerSecretArgs {
    /// The issuer (an intermediate CA of the trust anchors, used only by mc, not Linkerd's
    /// identity issuer), the anchors and the namespace.
    #[command(flatten)]
    pub issuer: IssuerArgs,
    /// Name of the Secret (what `install --issuer-secret` names).
    #[arg(long, default_value = "linkerd-multicluster-issuer")]
    pub name: String,
    /// Output format.
    #[arg(short = 'o', long, value_enum, default_value = "yaml")]
    pub output: crate::cli::ManifestFormat,
}

/// `mc multicluster issuer-secret`: checks that the issuer's pair signs and is valid now, then
/// renders its Secret.
pub(crate) fn issuer_secret(args: IssuerSecretArgs, out: &mut dyn Write) -> Result<()> {
    let now = SystemTime::now();
    let (anchors, issuer) = args.issuer.load(now)?;
    // Issuing a throw-away leaf proves the pair parses, signs, and is valid now.
    pki::issue_leaf(&issuer, "probe.mc.invalid", &pki::LeafOptions::new(now)).map_err(|e| {
        Error::input(
            args.issuer.issuer_cert.display().to_string(),
            e.to_string(),
            "pass an issuer certificate and its key from `mc issuer create`",
        )
    })?;
    let mut values = mc_core::render::InstallValues {
        namespace: args.issuer.namespace.clone(),
        ..Default::default()
    };
    values.identity.issuer_secret = args.name.clone();
    let secret = mc_core::render::issuer_secret(
        &values,
        &issuer.cert_pem,
        &issuer.key_pem,
        &anchors.to_pem(),
    )?;
    emit(
        out,
        &mc_core::render::Format::from(args.output).serialize(&[secret])?,
    )
}

/// Whose identity Secret to render.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Component {
    Gateway,
    Egress,
}

pub(crate) fn identity_secret(
    args: GatewayIdentityArgs,
    component: Component,
    linkerd_namespace: &str,
    out: &mut dyn Write,
    err: &mut dyn Write,
) -> Result<()> {
    let now = SystemTime::now();
    let mut values = mc_core::render::InstallValues {
        namespace: args.issuer.namespace.clone(),
        linkerd_namespace: linkerd_namespace.to_owned(),
        identity_trust_domain: args.identity_trust_domain.clone(),
        ..Default::default()
    };
    values.gateway.name = args.gateway_name.clone();
    let identity = match component {
        Component::Gateway => mc_core::render::gateway_identity_of(&values)?,
        Component::Egress => mc_core::render::egress_identity_of(&values)?,
    };
    let (anchors, issuer) = args.issuer.load(now)?;
    let validity = mc_core::link::parse_duration(&args.validity)?;
    let opts = pki::LeafOptions {
        not_after: now + validity,
        ..pki::LeafOptions::new(now)
    };
    let end = pki::leaf_not_after(&issuer, &opts)?;
    if end < opts.not_after {
        emit(
            err,
            &format!(
                "warning: --validity {} would outlive the issuer {}: the certificate for {identity} \
                 ends with the issuer, at {}; renew the issuer before then\n",
                args.validity,
                args.issuer.issuer_cert.display(),
                mc_core::trust::format_time(end),
            ),
        )?;
    }
    let leaf = pki::issue_leaf(&issuer, &identity, &opts)?;
    let render = match component {
        Component::Gateway => mc_core::render::gateway_identity_secret,
        Component::Egress => mc_core::render::egress_identity_secret,
    };
    let secret = render(
        &values,
        &leaf.chain_pem(&issuer),
        &leaf.key_pem,
        &anchors.to_pem(),
    )?;
    emit(
        out,
        &mc_core::render::Format::from(args.output).serialize(&[secret])?,
    )
}
