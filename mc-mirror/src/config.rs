//! Command-line flags and environment of the `mc-mirror` binary, and the options of the library.

use std::time::Duration;

use crate::lease::LeaseTiming;
use crate::{Error, Result};

/// Log output format.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    /// Human-readable lines.
    Plain,
    /// One JSON object per line.
    Json,
}

/// The flags of `mc-mirror`.
#[derive(Clone, Debug, clap::Parser)]
#[command(
    name = "mc-mirror",
    version,
    about = "Mirrors the exported Services of linked clusters into this cluster (Linkerd multicluster compatible)"
)]
pub struct Args {
    /// Kubeconfig of the source (local) cluster; without it, KUBECONFIG, ~/.kube/config or the
    /// in-cluster ServiceAccount is used.
    #[arg(long, env = "MC_KUBECONFIG")]
    pub kubeconfig: Option<std::path::PathBuf>,
    /// Context of --kubeconfig to use (default: its current context).
    #[arg(long, env = "MC_CONTEXT")]
    pub context: Option<String>,
    /// Namespace that holds the Links, their credentials Secrets and the leases.
    #[arg(long, env = "MC_NAMESPACE", default_value = "linkerd-multicluster")]
    pub namespace: String,
    /// A Link to serve (repeatable). Without it, every Link in --namespace is served.
    #[arg(
        long = "link",
        value_name = "NAME",
        env = "MC_LINKS",
        value_delimiter = ','
    )]
    pub links: Vec<String>,
    /// Address of the admin server (/live, /ready, /metrics).
    #[arg(long, env = "MC_ADMIN_ADDR", default_value = "0.0.0.0:9999")]
    pub admin_addr: String,
    /// Log format.
    #[arg(long, env = "MC_LOG_FORMAT", value_enum, default_value = "plain")]
    pub log_format: LogFormat,
    /// Log filter (tracing env-filter syntax), e.g. `info` or `mc_mirror=debug`.
    #[arg(long, env = "MC_LOG_LEVEL", default_value = "info")]
    pub log_level: String,
    /// Mirror headless remote Services as headless mirrors with one Service per host.
    #[arg(long, env = "MC_ENABLE_HEADLESS_SERVICES")]
    pub enable_headless_services: bool,
    /// Create a missing namespace instead of reporting MissingNamespace.
    #[arg(long, env = "MC_CREATE_NAMESPACES")]
    pub create_namespaces: bool,
    /// Holder identity in the leases (default: $HOSTNAME, the pod name).
    #[arg(long, env = "HOSTNAME")]
    pub identity: Option<String>,
    /// How often DNS names in gatewayAddress are resolved again.
    #[arg(long, default_value = "30s", value_parser = parse_duration)]
    pub gateway_resolve_period: Duration,
    /// How long a leader lease is valid without renewal.
    #[arg(long, default_value = "30s", value_parser = parse_duration)]
    pub lease_duration: Duration,
    /// How long the leader keeps retrying a renewal before it stops working.
    #[arg(long, default_value = "10s", value_parser = parse_duration)]
    pub lease_renew_deadline: Duration,
    /// Pause between lease attempts.
    #[arg(long, default_value = "2s", value_parser = parse_duration)]
    pub lease_retry_period: Duration,
    /// How often failed keys (conflicts, missing namespaces, errors) are re-examined; every
    /// tenth period re-examines every mirror (the endpoint repair pass, reads only).
    #[arg(long, env = "MC_RECHECK_PERIOD", default_value = "30s", value_parser = parse_duration)]
    pub recheck_period: Duration,
    /// How many remote Services of one Link are reconciled at once (requests in flight).
    #[arg(long, env = "MC_CONCURRENCY", default_value_t = 16, value_parser = clap::value_parser!(u16).range(1..=1024))]
    pub concurrency: u16,
    /// Label keys of a local member of a federated Service (a local Service labelled
    /// mirror.linkerd.io/federated=member) not copied onto `<svc>-federated`: comma-separated,
    /// each a key or `prefix/*` (upstream's `-excluded-labels` of its local service mirror; the
    /// install's `localServiceMirror.excludedLabels`, through ConfigMap mc-local-service-mirror).
    #[arg(long, env = "MC_LOCAL_EXCLUDED_LABELS", default_value = "")]
    pub local_excluded_labels: String,
    /// Annotation keys of a local member not copied onto `<svc>-federated`, as
    /// --local-excluded-labels (`localServiceMirror.excludedAnnotations`).
    #[arg(long, env = "MC_LOCAL_EXCLUDED_ANNOTATIONS", default_value = "")]
    pub local_excluded_annotations: String,
}

fn parse_duration(s: &str) -> std::result::Result<Duration, String> {
    mc_core::link::parse_duration(s).map_err(|e| e.to_string())
}

/// What the controller needs, independent of how it was started.
#[derive(Clone, Debug)]
pub struct Options {
    /// Namespace of the Links, Secrets and leases.
    pub namespace: String,
    /// Links to serve; empty means all.
    pub links: Vec<String>,
    /// Holder identity in the leases.
    pub identity: String,
    /// Mirror headless services as headless.
    pub enable_headless_services: bool,
    /// Create missing namespaces.
    pub create_namespaces: bool,
    /// DNS re-resolution period of the gateway address.
    pub gateway_resolve_period: Duration,
    /// Leader-election timing.
    pub lease: LeaseTiming,
    /// How often keys in Conflict or MissingNamespace are re-examined, and the slowest
    /// anti-entropy pass over everything.
    pub recheck_period: Duration,
    /// How many services are reconciled at once per Link.
    pub concurrency: usize,
    /// Label keys (or `prefix/*`) of a local federated member not copied onto `<svc>-federated`.
    pub local_excluded_labels: Vec<String>,
    /// Annotation keys (or `prefix/*`) of a local federated member not copied onto
    /// `<svc>-federated`.
    pub local_excluded_annotations: Vec<String>,
}

impl Options {
    /// Options with defaults for `namespace`, serving every Link, as `identity`.
    pub fn new(namespace: impl Into<String>, identity: impl Into<String>) -> Options {
        Options {
            namespace: namespace.into(),
            links: Vec::new(),
            identity: identity.into(),
            enable_headless_services: false,
            create_namespaces: false,
            gateway_resolve_period: Duration::from_secs(30),
            lease: LeaseTiming::default(),
            recheck_period: Duration::from_secs(30),
            concurrency: 16,
            local_excluded_labels: Vec::new(),
            local_excluded_annotations: Vec::new(),
        }
    }
}

impl Args {
    /// The library options these flags select.
    pub fn options(&self) -> Result<Options> {
        let identity = match self.identity.as_deref().map(str::trim) {
            Some(id) if !id.is_empty() => id.to_string(),
            _ => {
                return Err(Error::Flag {
                    flag: "--identity",
                    value: String::new(),
                    problem: "no holder identity: neither --identity nor $HOSTNAME is set".into(),
                    fix: "pass --identity <pod name> or set HOSTNAME",
                });
            }
        };
        if self.lease_renew_deadline >= self.lease_duration {
            return Err(Error::Flag {
                flag: "--lease-renew-deadline",
                value: format!("{:?}", self.lease_renew_deadline),
                problem: format!(
                    "must be shorter than --lease-duration ({:?})",
                    self.lease_duration
                ),
                fix: "use e.g. --lease-duration 30s --lease-renew-deadline 10s",
            });
        }
        if self.recheck_period.is_zero() {
            return Err(Error::Flag {
                flag: "--recheck-period",
                value: "0s".into(),
                problem: "must be longer than zero".into(),
                fix: "use e.g. --recheck-period 30s (the default)",
            });
        }
        let mut options = Options::new(self.namespace.clone(), identity);
        options.links = self.links.clone();
        options.enable_headless_services = self.enable_headless_services;
        options.create_namespaces = self.create_namespaces;
        options.gateway_resolve_period = self.gateway_resolve_period;
        options.recheck_period = self.recheck_period;
        options.concurrency = usize::from(self.concurrency);
        options.local_excluded_labels =
            exclusions("--local-excluded-labels", &self.local_excluded_labels)?;
        options.local_excluded_annotations = exclusions(
            "--local-excluded-annotations",
            &self.local_excluded_annotations,
        )?;
        options.lease = LeaseTiming {
            duration: self.lease_duration,
            renew_deadline: self.lease_renew_deadline,
            retry_period: self.lease_retry_period,
        };
        Ok(options)
    }
}

/// The exclusions of a comma-separated flag value, checked by mc-core; a bad entry is an error
/// naming the flag (and its environment variable).
fn exclusions(flag: &'static str, list: &str) -> Result<Vec<String>> {
    mc_core::mirror::parse_exclusions(list, flag).map_err(|e| Error::Flag {
        flag,
        value: list.to_string(),
        problem: match e {
            mc_core::Error::InvalidField {
                field,
                value,
                problem,
                ..
            } => format!("entry {field} {value:?} {problem}"),
            other => other.to_string(),
        },
        fix: "write comma-separated keys or prefix/* patterns, e.g. evil.linkerd/*,evil \
              (from the install: localServiceMirror.excludedLabels/excludedAnnotations in \
              ConfigMap mc-local-service-mirror)",
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser as _;

    #[test]
    fn flags_select_links_and_identity() {
        let args = Args::try_parse_from([
            "mc-mirror",
            "--namespace",
            "mc",
            "--link",
            "east",
            "--link",
            "north",
            "--identity",
            "pod-1",
            "--create-namespaces",
            "--log-format",
            "json",
        ])
        .unwrap();
        let o = args.options().unwrap();
        assert_eq!(o.links, ["east", "north"]);
        assert_eq!(o.identity, "pod-1");
        assert!(o.create_namespaces && !o.enable_headless_services);
        assert_eq!(args.log_format, LogFormat::Json);
    }

    #[test]
    fn a_missing_identity_is_an_error_naming_the_flag() {
        let mut args = Args::try_parse_from(["mc-mirror"]).unwrap();
        args.identity = None;
        let e = args.options().unwrap_err().to_string();
        assert!(e.contains("--identity") && e.contains("HOSTNAME"), "{e}");
    }

    #[test]
    fn the_recheck_period_is_a_flag_and_must_not_be_zero() {
        let args = Args::try_parse_from(["mc-mirror", "--identity", "x", "--recheck-period", "2s"])
            .unwrap();
        assert_eq!(
            args.options().unwrap().recheck_period,
            Duration::from_secs(2)
        );
        let default = Args::try_parse_from(["mc-mirror", "--identity", "x"]).unwrap();
        assert_eq!(
            default.options().unwrap().recheck_period,
            Duration::from_secs(30)
        );
        let zero = Args::try_parse_from(["mc-mirror", "--identity", "x", "--recheck-period", "0s"])
            .unwrap();
        assert!(zero.options().is_err());
    }

    #[test]
    fn local_exclusions_are_comma_separated_and_checked() {
        let args = Args::try_parse_from([
            "mc-mirror",
            "--identity",
            "x",
            "--local-excluded-labels",
            "evil.linkerd/*, evil,",
            "--local-excluded-annotations",
            "a.io/b",
        ])
        .unwrap();
        let o = args.options().unwrap();
        assert_eq!(o.local_excluded_labels, ["evil.linkerd/*", "evil"]);
        assert_eq!(o.local_excluded_annotations, ["a.io/b"]);
        let none = Args::try_parse_from(["mc-mirror", "--identity", "x"]).unwrap();
        assert!(none.options().unwrap().local_excluded_labels.is_empty());
        let bad = Args::try_parse_from([
            "mc-mirror",
            "--identity",
            "x",
            "--local-excluded-annotations",
            "ok,not a key",
        ])
        .unwrap();
        let e = bad.options().unwrap_err().to_string();
        assert!(
            e.contains("--local-excluded-annotations") && e.contains("[1]"),
            "{e}"
        );
    }

    #[test]
    fn renew_deadline_must_be_shorter_than_the_lease() {
        let mut args = Args::try_parse_from(["mc-mirror", "--identity", "x"]).unwrap();
        args.lease_renew_deadline = Duration::from_secs(40);
        assert!(args.options().is_err());
    }
}
