//! Validation of a [`LinkSpec`] into typed values, with field paths in every error.

use std::net::IpAddr;
use std::time::Duration;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;

use super::LinkSpec;
use crate::naming::{is_dns1123_label, is_dns1123_subdomain};
use crate::selector::Selector;
use crate::{Error, Result};

/// Cluster domain assumed when `spec.targetClusterDomain` is unset.
pub const DEFAULT_CLUSTER_DOMAIN: &str = "cluster.local";
/// Control-plane namespace assumed when `spec.targetClusterLinkerdNamespace` is unset.
pub const DEFAULT_LINKERD_NAMESPACE: &str = "linkerd";
/// Probe period when `spec.probeSpec.period` is unset.
pub const DEFAULT_PROBE_PERIOD: Duration = Duration::from_secs(3);
/// Probe timeout when `spec.probeSpec.timeout` is unset (the CRD default).
pub const DEFAULT_PROBE_TIMEOUT: Duration = Duration::from_secs(30);
/// Failure threshold when `spec.probeSpec.failureThreshold` is unset (the CRD default).
pub const DEFAULT_FAILURE_THRESHOLD: u32 = 3;

/// A Link spec that passed validation, with typed values and defaults filled in.
#[derive(Debug, Clone, PartialEq)]
pub struct ValidLink {
    /// `targetClusterName`, a DNS-1123 label.
    pub cluster_name: String,
    /// `targetClusterDomain` (default `cluster.local`).
    pub cluster_domain: String,
    /// `targetClusterLinkerdNamespace` (default `linkerd`).
    pub linkerd_namespace: String,
    /// `clusterCredentialsSecret` (default `cluster-credentials-<cluster_name>`).
    pub credentials_secret: String,
    /// The gateway, or `None` for a gateway-less (remote-discovery only) Link.
    pub gateway: Option<GatewaySpec>,
    /// The probe, or `None` when there is no gateway or no probe path.
    pub probe: Option<Probe>,
    /// `selector` (gateway mode); empty (matches nothing) when unset.
    pub selector: Selector,
    /// `remoteDiscoverySelector`; empty when unset.
    pub remote_discovery_selector: Selector,
    /// `federatedServiceSelector`; empty when unset.
    pub federated_selector: Selector,
    /// `excludedLabels`, validated (`prefix/*` entries allowed).
    pub excluded_labels: Vec<String>,
    /// `excludedAnnotations`, validated (`prefix/*` entries allowed).
    pub excluded_annotations: Vec<String>,
}

/// The gateway of a Link.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GatewaySpec {
    /// `gatewayAddress` split at commas: IPs and DNS names, in order, without duplicates.
    pub addresses: Vec<String>,
    /// `gatewayPort`.
    pub port: u16,
    /// `gatewayIdentity`, when set.
    pub identity: Option<String>,
}

/// The gateway probe of a Link.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Probe {
    /// `probeSpec.path`, starting with `/`.
    pub path: String,
    /// `probeSpec.port`.
    pub port: u16,
    /// `probeSpec.period` (default 3 s).
    pub period: Duration,
    /// `probeSpec.timeout` (default 30 s).
    pub timeout: Duration,
    /// `probeSpec.failureThreshold` (default 3, at least 1).
    pub failure_threshold: u32,
}

impl LinkSpec {
    /// Check every field and return typed values, or the first error with its field path,
    /// e.g. `spec.gatewayPort: "70000" is not a port (1-65535)`.
    ///
    /// Rules: the cluster name is required and is a DNS-1123 label; the domain, namespace and
    /// secret are DNS names; when `gatewayAddress` is set it is a comma list of IPs and DNS names
    /// and `gatewayPort` is required; when `probeSpec.path` is set it starts with `/` and
    /// `probeSpec.port` is required; durations parse; selectors and exclusions are valid.
    pub fn validate(&self) -> Result<ValidLink> {
        let cluster_name = required(&self.target_cluster_name, "spec.targetClusterName")?;
        if !is_dns1123_label(cluster_name) {
            return Err(invalid(
                "spec.targetClusterName",
                cluster_name,
                "is not a DNS-1123 label",
                "use at most 63 lowercase letters, digits and '-', starting and ending with a letter or digit",
            ));
        }
        let cluster_domain = dns_name_or(
            &self.target_cluster_domain,
            "spec.targetClusterDomain",
            DEFAULT_CLUSTER_DOMAIN,
        )?;
        let linkerd_namespace = set(&self.target_cluster_linkerd_namespace)
            .unwrap_or(DEFAULT_LINKERD_NAMESPACE)
            .to_string();
        if !is_dns1123_label(&linkerd_namespace) {
            return Err(invalid(
                "spec.targetClusterLinkerdNamespace",
                &linkerd_namespace,
                "is not a namespace name (DNS-1123 label)",
                "use the target's control-plane namespace, usually linkerd",
            ));
        }
        let default_secret = format!("cluster-credentials-{cluster_name}");
        let credentials_secret = dns_name_or(
            &self.cluster_credentials_secret,
            "spec.clusterCredentialsSecret",
            &default_secret,
        )?;
        let gateway = self.gateway()?;
        let probe = match (&gateway, &self.probe_spec) {
            (Some(_), Some(p)) => p.validate()?,
            _ => None,
        };
        Ok(ValidLink {
            cluster_name: cluster_name.to_string(),
            cluster_domain,
            linkerd_namespace,
            credentials_secret,
            gateway,
            probe,
            selector: selector(&self.selector, "spec.selector")?,
            remote_discovery_selector: selector(
                &self.remote_discovery_selector,
                "spec.remoteDiscoverySelector",
            )?,
            federated_selector: selector(
                &self.federated_service_selector,
                "spec.federatedServiceSelector",
            )?,
            excluded_labels: exclusions(&self.excluded_labels, "spec.excludedLabels")?,
            excluded_annotations: exclusions(
                &self.excluded_annotations,
                "spec.excludedAnnotations",
            )?,
        })
    }

    fn gateway(&self) -> Result<Option<GatewaySpec>> {
        let Some(list) = set(&self.gateway_address) else {
            return Ok(None);
        };
        let field = "spec.gatewayAddress";
        let mut addresses: Vec<String> = Vec::new();
        for entry in list.split(',').map(str::trim) {
            if entry.is_empty() {
                return Err(invalid(
                    field,
                    list,
                    "has an empty entry",
                    "separate addresses with single commas, e.g. 203.0.113.10,gw.example.com",
                ));
            }
            let entry = entry.to_ascii_lowercase();
            if entry.parse::<IpAddr>().is_err() && !is_dns1123_subdomain(&entry) {
                return Err(invalid(
                    field,
                    list,
                    &format!("has entry {entry:?}, which is neither an IP address nor a DNS name"),
                    "list the gateway's load-balancer IPs or host names, separated by commas",
                ));
            }
            if !addresses.contains(&entry) {
                addresses.push(entry);
            }
        }
        let port = match set(&self.gateway_port) {
            Some(p) => parse_port(p, "spec.gatewayPort")?,
            None => {
                return Err(Error::MissingField {
                    field: "spec.gatewayPort".into(),
                    fix: "a Link with spec.gatewayAddress needs spec.gatewayPort, the gateway \
                          Service port named mc-gateway (default 4143)"
                        .into(),
                });
            }
        };
        let identity = set(&self.gateway_identity).map(str::to_string);
        if let Some(id) = identity.as_ref().filter(|id| !is_dns1123_subdomain(id)) {
            return Err(invalid(
                "spec.gatewayIdentity",
                id,
                "is not a DNS name",
                "copy the mirror.linkerd.io/gateway-identity annotation of the target's gateway Service",
            ));
        }
        Ok(Some(GatewaySpec {
            addresses,
            port,
            identity,
        }))
    }
}

impl super::ProbeSpec {
    fn validate(&self) -> Result<Option<Probe>> {
        let Some(path) = set(&self.path) else {
            return Ok(None);
        };
        if !path.starts_with('/') {
            return Err(invalid(
                "spec.probeSpec.path",
                path,
                "does not start with '/'",
                "use the gateway's mirror.linkerd.io/probe-path, usually /ready",
            ));
        }
        let port = match set(&self.port) {
            Some(p) => parse_port(p, "spec.probeSpec.port")?,
            None => {
                return Err(Error::MissingField {
                    field: "spec.probeSpec.port".into(),
                    fix: "set it to the gateway Service port named mc-probe (default 4191)".into(),
                });
            }
        };
        let period = duration_or(&self.period, "spec.probeSpec.period", DEFAULT_PROBE_PERIOD)?;
        let timeout = duration_or(
            &self.timeout,
            "spec.probeSpec.timeout",
            DEFAULT_PROBE_TIMEOUT,
        )?;
        let failure_threshold = match set(&self.failure_threshold) {
            None => DEFAULT_FAILURE_THRESHOLD,
            Some(t) => t.parse::<u32>().ok().filter(|n| *n >= 1).ok_or_else(|| {
                invalid(
                    "spec.probeSpec.failureThreshold",
                    t,
                    "is not a whole number of at least 1",
                    "write the number of consecutive failures as a string, e.g. \"3\"",
                )
            })?,
        };
        Ok(Some(Probe {
            path: path.to_string(),
            port,
            period,
            timeout,
            failure_threshold,
        }))
    }
}

/// Parse a port string (`"4143"`) at `field`: 1–65535.
pub fn parse_port(value: &str, field: &str) -> Result<u16> {
    value
        .trim()
        .parse::<u16>()
        .ok()
        .filter(|p| *p != 0)
        .ok_or_else(|| {
            invalid(
                field,
                value,
                "is not a port (1-65535)",
                "write the port number as a string, e.g. \"4143\"",
            )
        })
}

/// Parse a duration as upstream writes them: a Go duration (`"500ms"`, `"3s"`, `"1m30s"`,
/// `"1.5h"`; units ns, us, µs, ms, s, m, h) or a bare number of seconds (`"3"`).
///
/// ```
/// use std::time::Duration;
/// use mc_core::link::parse_duration;
/// assert_eq!(parse_duration("1m30s")?, Duration::from_secs(90));
/// assert_eq!(parse_duration("3")?, Duration::from_secs(3));
/// assert_eq!(parse_duration("500ms")?, Duration::from_millis(500));
/// # Ok::<(), mc_core::Error>(())
/// ```
pub fn parse_duration(s: &str) -> Result<Duration> {
    let err = |problem: &str| Error::InvalidDuration {
        input: s.to_string(),
        problem: problem.to_string(),
    };
    let t = s.trim();
    if t.is_empty() {
        return Err(err("is empty"));
    }
    if t.starts_with('-') {
        return Err(err("is negative"));
    }
    if let Ok(secs) = t.trim_start_matches('+').parse::<u64>() {
        return Ok(Duration::from_secs(secs));
    }
    let mut rest = t.trim_start_matches('+');
    let mut total: u128 = 0;
    while !rest.is_empty() {
        let num_len = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .ok_or_else(|| err("has a number without a unit (ns, us, ms, s, m, h)"))?;
        let (num, after) = rest.split_at(num_len);
        let unit_len = after
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(after.len());
        let (unit, next) = after.split_at(unit_len);
        let scale: u128 = match unit {
            "ns" => 1,
            "us" | "µs" | "μs" => 1_000,
            "ms" => 1_000_000,
            "s" => 1_000_000_000,
            "m" => 60_000_000_000,
            "h" => 3_600_000_000_000,
            "" => return Err(err("has a number without a unit")),
            _ => return Err(err(&format!("has unknown unit {unit:?}"))),
        };
        total = total
            .checked_add(scaled(num, scale).ok_or_else(|| err(&format!("has bad number {num:?}")))?)
            .ok_or_else(|| err("is too large"))?;
        rest = next;
    }
    let secs = u64::try_from(total / 1_000_000_000).map_err(|_| err("is too large"))?;
    // The remainder is below 10^9, so it fits.
    let nanos = u32::try_from(total % 1_000_000_000).map_err(|_| err("is too large"))?;
    Ok(Duration::new(secs, nanos))
}

/// `num` (digits with at most one '.') times `scale` nanoseconds, truncated.
fn scaled(num: &str, scale: u128) -> Option<u128> {
    let (int, frac) = num.split_once('.').unwrap_or((num, ""));
    if (int.is_empty() && frac.is_empty()) || frac.contains('.') {
        return None;
    }
    let int: u128 = if int.is_empty() { 0 } else { int.parse().ok()? };
    let mut value = int.checked_mul(scale)?;
    let mut unit = scale;
    for d in frac.bytes().take(20) {
        unit /= 10;
        value = value.checked_add(u128::from(d - b'0') * unit)?;
    }
    Some(value)
}

fn set(v: &Option<String>) -> Option<&str> {
    v.as_deref().map(str::trim).filter(|s| !s.is_empty())
}

fn required<'a>(v: &'a Option<String>, field: &str) -> Result<&'a str> {
    set(v).ok_or_else(|| Error::MissingField {
        field: field.to_string(),
        fix: "set it to the target cluster's name, e.g. east (link-gen --cluster-name)".into(),
    })
}

fn dns_name_or(v: &Option<String>, field: &str, default: &str) -> Result<String> {
    let value = set(v).unwrap_or(default).trim_end_matches('.');
    if is_dns1123_subdomain(value) {
        Ok(value.to_string())
    } else {
        Err(invalid(
            field,
            value,
            "is not a DNS name",
            "use lowercase letters, digits, '-' and '.', at most 253 characters",
        ))
    }
}

fn duration_or(v: &Option<String>, field: &str, default: Duration) -> Result<Duration> {
    let Some(s) = set(v) else {
        return Ok(default);
    };
    match parse_duration(s) {
        Ok(d) if !d.is_zero() => Ok(d),
        Ok(_) => Err(invalid(
            field,
            s,
            "is zero",
            "use a positive duration, e.g. 3s",
        )),
        Err(Error::InvalidDuration { problem, .. }) => Err(invalid(
            field,
            s,
            &format!("is not a duration: it {problem}"),
            "write e.g. \"3s\", \"1m30s\", \"500ms\" or a number of seconds",
        )),
        Err(other) => Err(other),
    }
}

fn selector(v: &Option<LabelSelector>, field: &str) -> Result<Selector> {
    v.as_ref().map_or(Ok(Selector::default()), |s| {
        Selector::from_label_selector_at(s, field)
    })
}

fn exclusions(entries: &[String], field: &str) -> Result<Vec<String>> {
    crate::mirror::check_exclusions(entries, field)?;
    Ok(entries.to_vec())
}

fn invalid(field: &str, value: &str, problem: &str, fix: &str) -> Error {
    Error::InvalidField {
        field: field.to_string(),
        value: value.to_string(),
        problem: problem.to_string(),
        fix: fix.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::super::ProbeSpec;
    use super::*;
    use proptest::prelude::*;

    fn spec() -> LinkSpec {
        LinkSpec {
            target_cluster_name: Some("east".into()),
            target_cluster_domain: Some("cluster.local".into()),
            gateway_address: Some("203.0.113.10, gw.example.com,203.0.113.10".into()),
            gateway_port: Some("4143".into()),
            gateway_identity: Some(
                "linkerd-gateway.linkerd-multicluster.serviceaccount.identity.linkerd.cluster.local"
                    .into(),
            ),
            probe_spec: Some(ProbeSpec {
                path: Some("/ready".into()),
                port: Some("4191".into()),
                period: Some("3".into()),
                ..ProbeSpec::default()
            }),
            selector: Some(Selector::equals("mirror.linkerd.io/exported", "true").map_or_else(
                |_| LabelSelector::default(),
                |s| s.to_label_selector(),
            )),
            ..LinkSpec::default()
        }
    }

    fn error_text(s: &LinkSpec) -> String {
        s.validate()
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default()
    }

    #[test]
    fn valid_link_with_defaults() -> Result<()> {
        let v = spec().validate()?;
        assert_eq!(v.cluster_name, "east");
        assert_eq!(v.credentials_secret, "cluster-credentials-east");
        assert_eq!(v.linkerd_namespace, "linkerd");
        let gw = v.gateway.as_ref().map(|g| (g.addresses.clone(), g.port));
        assert_eq!(
            gw,
            Some((vec!["203.0.113.10".into(), "gw.example.com".into()], 4143))
        );
        let probe = v.probe.clone();
        assert_eq!(
            probe,
            Some(Probe {
                path: "/ready".into(),
                port: 4191,
                period: Duration::from_secs(3),
                timeout: Duration::from_secs(30),
                failure_threshold: 3,
            })
        );
        assert!(!v.selector.is_empty());
        assert!(v.remote_discovery_selector.is_empty());
        Ok(())
    }

    #[test]
    fn gateway_port_out_of_range_names_the_field() {
        let mut s = spec();
        s.gateway_port = Some("70000".into());
        let msg = error_text(&s);
        assert!(
            msg.starts_with("spec.gatewayPort: \"70000\" is not a port (1-65535)"),
            "{msg}"
        );
        s.gateway_port = Some("0".into());
        assert!(error_text(&s).contains("spec.gatewayPort"));
        s.gateway_port = None;
        assert!(error_text(&s).starts_with("spec.gatewayPort is missing"));
    }

    #[test]
    fn field_errors() {
        type Edit = fn(&mut LinkSpec);
        let cases: Vec<(Edit, &str)> = vec![
            (
                |s| s.target_cluster_name = None,
                "spec.targetClusterName is missing",
            ),
            (
                |s| s.target_cluster_name = Some("East_1".into()),
                "spec.targetClusterName: \"East_1\"",
            ),
            (
                |s| s.target_cluster_domain = Some("bad domain".into()),
                "spec.targetClusterDomain",
            ),
            (
                |s| s.gateway_address = Some("a,,b".into()),
                "has an empty entry",
            ),
            (
                |s| s.gateway_address = Some("not an address".into()),
                "neither an IP",
            ),
            (
                |s| s.gateway_identity = Some("Not/Valid".into()),
                "spec.gatewayIdentity",
            ),
            (
                |s| {
                    s.probe_spec
                        .iter_mut()
                        .for_each(|p| p.path = Some("ready".into()))
                },
                "spec.probeSpec.path",
            ),
            (
                |s| {
                    s.probe_spec
                        .iter_mut()
                        .for_each(|p| p.period = Some("3 parsecs".into()))
                },
                "spec.probeSpec.period: \"3 parsecs\" is not a duration",
            ),
            (
                |s| {
                    s.probe_spec
                        .iter_mut()
                        .for_each(|p| p.timeout = Some("0s".into()))
                },
                "spec.probeSpec.timeout: \"0s\" is zero",
            ),
            (
                |s| {
                    s.probe_spec
                        .iter_mut()
                        .for_each(|p| p.failure_threshold = Some("0".into()))
                },
                "spec.probeSpec.failureThreshold",
            ),
            (
                |s| s.probe_spec.iter_mut().for_each(|p| p.port = None),
                "spec.probeSpec.port is missing",
            ),
            (
                |s| {
                    s.remote_discovery_selector = Some(LabelSelector {
                        match_labels: Some([("bad key!".to_string(), "v".to_string())].into()),
                        match_expressions: None,
                    })
                },
                "at spec.remoteDiscoverySelector.matchLabels",
            ),
            (
                |s| s.excluded_labels = vec!["ok".into(), "a b/*".into()],
                "spec.excludedLabels[1]",
            ),
        ];
        for (edit, expected) in cases {
            let mut s = spec();
            edit(&mut s);
            let msg = error_text(&s);
            assert!(msg.contains(expected), "expected {expected:?} in {msg:?}");
            assert!(msg.contains("fix"), "{msg}");
        }
    }

    #[test]
    fn gateway_less_link_has_no_gateway_or_probe() -> Result<()> {
        let mut s = spec();
        s.gateway_address = Some(" ".into());
        s.gateway_port = None;
        let v = s.validate()?;
        assert_eq!((v.gateway, v.probe), (None, None));
        Ok(())
    }

    #[test]
    fn empty_probe_path_means_no_probe() -> Result<()> {
        let mut s = spec();
        s.probe_spec = Some(ProbeSpec::default());
        assert_eq!(s.validate()?.probe, None);
        Ok(())
    }

    #[test]
    fn durations() -> Result<()> {
        for (text, ms) in [
            ("3s", 3_000),
            ("3", 3_000),
            ("0", 0),
            ("1m30s", 90_000),
            ("500ms", 500),
            ("1h", 3_600_000),
            ("1.5s", 1_500),
            (".5s", 500),
            ("2h45m", 9_900_000),
            ("1000us", 1),
            ("+2s", 2_000),
        ] {
            assert_eq!(parse_duration(text)?, Duration::from_millis(ms), "{text}");
        }
        assert_eq!(parse_duration("10ns")?, Duration::from_nanos(10));
        for bad in [
            "",
            "-3s",
            "3x",
            "s",
            "1.2.3s",
            "3s5",
            "1e3s",
            "99999999999999999999h",
        ] {
            assert!(
                matches!(parse_duration(bad), Err(Error::InvalidDuration { .. })),
                "{bad:?}"
            );
        }
        Ok(())
    }

    proptest! {
        #[test]
        fn duration_never_panics(s in "\\PC{0,24}") {
            let _ = parse_duration(&s);
        }

        #[test]
        fn duration_round_trips_go_form(h in 0u64..100, m in 0u64..60, s in 0u64..60, ms in 0u64..1000) {
            let text = format!("{h}h{m}m{s}s{ms}ms");
            let want = Duration::from_millis(((h * 60 + m) * 60 + s) * 1000 + ms);
            prop_assert_eq!(parse_duration(&text)?, want);
        }
    }
}
