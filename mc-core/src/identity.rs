//! Linkerd workload identities:
//! `<serviceaccount>.<namespace>.serviceaccount.identity.<control-plane-namespace>.<trust-domain>`.
//!
//! The identity is the DNS SAN of a proxy's certificate, so it must be a valid DNS name.

use std::fmt;
use std::str::FromStr;

use crate::{Error, Result};

/// The literal labels between the namespace and the control-plane namespace.
const INFIX: &str = "serviceaccount.identity";
/// Default Linkerd control-plane namespace.
const DEFAULT_CONTROL_PLANE_NAMESPACE: &str = "linkerd";
/// Default gateway service account (`gateway.name` in the multicluster chart).
const GATEWAY_SERVICE_ACCOUNT: &str = "linkerd-gateway";
/// Default multicluster namespace.
const MULTICLUSTER_NAMESPACE: &str = "linkerd-multicluster";
/// Longest DNS name (without a trailing dot).
const MAX_NAME: usize = 253;
/// Longest DNS label.
const MAX_LABEL: usize = 63;

/// A Linkerd workload identity.
///
/// ```
/// use mc_core::identity::Identity;
///
/// let id: Identity = "web.shop.serviceaccount.identity.linkerd.cluster.local".parse()?;
/// assert_eq!(id.service_account, "web");
/// assert_eq!(id.namespace, "shop");
/// assert_eq!(id.control_plane_namespace, "linkerd");
/// assert_eq!(id.trust_domain, "cluster.local");
/// assert_eq!(id.to_string(), "web.shop.serviceaccount.identity.linkerd.cluster.local");
/// # Ok::<(), mc_core::Error>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Identity {
    /// The workload's ServiceAccount name (a DNS label).
    pub service_account: String,
    /// The workload's namespace (a DNS label).
    pub namespace: String,
    /// The namespace of the Linkerd control plane that issued the certificate (a DNS label).
    pub control_plane_namespace: String,
    /// The trust domain (a DNS name), e.g. `cluster.local`.
    pub trust_domain: String,
}

impl Identity {
    /// The default identity of the multicluster gateway in a cluster with this trust domain:
    /// `linkerd-gateway.linkerd-multicluster.serviceaccount.identity.linkerd.<trust_domain>`.
    ///
    /// ```
    /// use mc_core::identity::Identity;
    ///
    /// assert_eq!(
    ///     Identity::gateway("cluster.local").to_string(),
    ///     "linkerd-gateway.linkerd-multicluster.serviceaccount.identity.linkerd.cluster.local"
    /// );
    /// ```
    pub fn gateway(trust_domain: &str) -> Identity {
        Identity {
            service_account: GATEWAY_SERVICE_ACCOUNT.to_string(),
            namespace: MULTICLUSTER_NAMESPACE.to_string(),
            control_plane_namespace: DEFAULT_CONTROL_PLANE_NAMESPACE.to_string(),
            trust_domain: trust_domain.to_string(),
        }
    }

    /// A validated identity from its parts.
    ///
    /// ```
    /// use mc_core::identity::Identity;
    ///
    /// let id = Identity::new("web", "shop", "linkerd", "cluster.local")?;
    /// assert_eq!(id.to_string(), "web.shop.serviceaccount.identity.linkerd.cluster.local");
    /// assert!(Identity::new("web", "shop", "linkerd", "cluster..local").is_err());
    /// # Ok::<(), mc_core::Error>(())
    /// ```
    pub fn new(
        service_account: &str,
        namespace: &str,
        control_plane_namespace: &str,
        trust_domain: &str,
    ) -> Result<Identity> {
        let identity = Identity {
            service_account: service_account.to_string(),
            namespace: namespace.to_string(),
            control_plane_namespace: control_plane_namespace.to_string(),
            trust_domain: trust_domain.to_string(),
        };
        identity.validate()?;
        Ok(identity)
    }

    /// The identity of the service-mirror controller of Link `link` (chart-managed, 2.18+):
    /// `controller-<link>.linkerd-multicluster.serviceaccount.identity.linkerd.<trust_domain>`.
    pub fn controller(link: &str, trust_domain: &str) -> Identity {
        Identity {
            service_account: format!("controller-{link}"),
            namespace: MULTICLUSTER_NAMESPACE.to_string(),
            control_plane_namespace: DEFAULT_CONTROL_PLANE_NAMESPACE.to_string(),
            trust_domain: trust_domain.to_string(),
        }
    }

    /// Checks that every part is well formed and that the whole is a valid DNS name.
    pub fn validate(&self) -> Result<()> {
        let input = self.to_string();
        let parts = [
            ("service account", &self.service_account),
            ("namespace", &self.namespace),
            ("control-plane namespace", &self.control_plane_namespace),
        ];
        for (what, value) in parts {
            if let Err(reason) = check_label(value) {
                return Err(Error::InvalidIdentity {
                    input,
                    reason: format!("the {what} {value:?} is not a DNS label: {reason}"),
                });
            }
        }
        if let Err(reason) = check_name(&self.trust_domain) {
            return Err(Error::InvalidIdentity {
                input,
                reason: format!(
                    "the trust domain {:?} is not a DNS name: {reason}",
                    self.trust_domain
                ),
            });
        }
        check_name(&input).map_err(|reason| Error::InvalidIdentity { input, reason })
    }
}

impl fmt::Display for Identity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}.{}.{INFIX}.{}.{}",
            self.service_account, self.namespace, self.control_plane_namespace, self.trust_domain
        )
    }
}

impl FromStr for Identity {
    type Err = Error;

    fn from_str(s: &str) -> Result<Identity> {
        let invalid = |reason: String| Error::InvalidIdentity {
            input: s.to_string(),
            reason,
        };
        let mut labels = s.splitn(6, '.');
        let mut next = |what: &str| {
            labels
                .next()
                .ok_or_else(|| invalid(format!("it ends before the {what}")))
        };
        let service_account = next("service account")?;
        let namespace = next("namespace")?;
        let literal = [
            next("literal \"serviceaccount\"")?,
            next("literal \"identity\"")?,
        ];
        let control_plane_namespace = next("control-plane namespace")?;
        let trust_domain = next("trust domain")?;
        if literal != ["serviceaccount", "identity"] {
            return Err(invalid(format!(
                "labels 3 and 4 are \"{}.{}\", expected \"{INFIX}\"",
                literal[0], literal[1]
            )));
        }
        Identity::new(
            service_account,
            namespace,
            control_plane_namespace,
            trust_domain,
        )
    }
}

/// Checks that `name` is a valid DNS name for a certificate SAN: dot-separated labels of 1 to 63
/// characters from `a-z`, `A-Z`, `0-9` and `-`, not starting or ending with `-`, at most 253
/// characters, no trailing dot, and not all-numeric in the last label (that would read as an IP
/// address).
///
/// ```
/// use mc_core::identity::validate_dns_name;
///
/// assert!(validate_dns_name("web.shop.svc.cluster.local").is_ok());
/// assert!(validate_dns_name("web..local").is_err());
/// ```
pub fn validate_dns_name(name: &str) -> Result<()> {
    check_name(name).map_err(|reason| Error::InvalidDnsName {
        name: name.to_string(),
        reason,
    })
}

fn check_name(name: &str) -> std::result::Result<(), String> {
    if name.is_empty() {
        return Err("it is empty".to_string());
    }
    if name.len() > MAX_NAME {
        return Err(format!(
            "it is {} characters long, the maximum is {MAX_NAME}",
            name.len()
        ));
    }
    let labels: Vec<&str> = name.split('.').collect();
    for (i, label) in labels.iter().enumerate() {
        check_label(label).map_err(|reason| format!("label {} {label:?}: {reason}", i + 1))?;
    }
    if labels
        .last()
        .is_some_and(|l| l.bytes().all(|b| b.is_ascii_digit()))
    {
        return Err("the last label is all digits, which reads as an IP address".to_string());
    }
    Ok(())
}

fn check_label(label: &str) -> std::result::Result<(), String> {
    if label.is_empty() {
        return Err("it is empty (two dots in a row, or a leading or trailing dot)".to_string());
    }
    if label.len() > MAX_LABEL {
        return Err(format!(
            "it is {} characters long, the maximum is {MAX_LABEL}",
            label.len()
        ));
    }
    if let Some(c) = label
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || *c == '-'))
    {
        return Err(format!("character {c:?} is not allowed"));
    }
    if label.starts_with('-') || label.ends_with('-') {
        return Err("it starts or ends with '-'".to_string());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn parses_and_formats_a_custom_trust_domain() {
        let s = "controller-east.linkerd-multicluster.serviceaccount.identity.l5d.east.example.com";
        let id: Identity = s.parse().unwrap();
        assert_eq!(id.service_account, "controller-east");
        assert_eq!(id.namespace, "linkerd-multicluster");
        assert_eq!(id.control_plane_namespace, "l5d");
        assert_eq!(id.trust_domain, "east.example.com");
        assert_eq!(id.to_string(), s);
    }

    #[test]
    fn gateway_default_matches_the_chart() {
        let id = Identity::gateway("example.org");
        assert_eq!(
            id.to_string(),
            "linkerd-gateway.linkerd-multicluster.serviceaccount.identity.linkerd.example.org"
        );
        assert_eq!(id.to_string().parse::<Identity>().unwrap(), id);
    }

    #[test]
    fn controller_identity_and_validated_constructor() {
        assert_eq!(
            Identity::controller("east", "cluster.local").to_string(),
            "controller-east.linkerd-multicluster.serviceaccount.identity.linkerd.cluster.local"
        );
        assert!(
            Identity::controller("east", "cluster.local")
                .validate()
                .is_ok()
        );
        assert!(
            Identity::controller("x".repeat(60).as_str(), "cluster.local")
                .validate()
                .is_err()
        );
        let err = Identity::new("web", "Shop_1", "linkerd", "cluster.local").unwrap_err();
        assert!(
            err.to_string()
                .contains("the namespace \"Shop_1\" is not a DNS label"),
            "{err}"
        );
    }

    #[test]
    fn rejects_wrong_infix() {
        let err = "web.shop.sa.identity.linkerd.cluster.local"
            .parse::<Identity>()
            .unwrap_err();
        assert!(
            err.to_string().contains(
                "labels 3 and 4 are \"sa.identity\", expected \"serviceaccount.identity\""
            ),
            "{err}"
        );
    }

    #[test]
    fn rejects_too_few_labels() {
        let err = "web.shop.serviceaccount.identity.linkerd"
            .parse::<Identity>()
            .unwrap_err();
        assert!(
            err.to_string().contains("it ends before the trust domain"),
            "{err}"
        );
        assert!(
            err.to_string().contains("fix: use <serviceaccount>"),
            "{err}"
        );
    }

    #[test]
    fn rejects_bad_parts() {
        let err = "web_1.shop.serviceaccount.identity.linkerd.cluster.local"
            .parse::<Identity>()
            .unwrap_err();
        assert!(
            err.to_string().contains(
                "the service account \"web_1\" is not a DNS label: character '_' is not allowed"
            ),
            "{err}"
        );
        let err = "web.shop.serviceaccount.identity.linkerd.cluster..local"
            .parse::<Identity>()
            .unwrap_err();
        assert!(err.to_string().contains("the trust domain"), "{err}");
        let long = format!(
            "web.shop.serviceaccount.identity.linkerd.{}",
            vec!["a".repeat(63); 4].join(".")
        );
        let err = long.parse::<Identity>().unwrap_err();
        assert!(err.to_string().contains("the maximum is 253"), "{err}");
    }

    #[test]
    fn dns_name_rules() {
        for good in ["a", "a-b.c", "A1.example", "x.1a", &"a".repeat(63)] {
            validate_dns_name(good).unwrap();
        }
        let cases = [
            ("", "it is empty"),
            ("a..b", "label 2 \"\": it is empty"),
            ("a.", "label 2 \"\": it is empty"),
            (".a", "label 1 \"\": it is empty"),
            ("-a.b", "label 1 \"-a\": it starts or ends with '-'"),
            ("a.b-", "label 2 \"b-\": it starts or ends with '-'"),
            ("a b", "label 1 \"a b\": character ' ' is not allowed"),
            ("a.é", "label 2 \"é\": character 'é' is not allowed"),
            ("10.0.0.1", "the last label is all digits"),
        ];
        for (bad, reason) in cases {
            let err = validate_dns_name(bad).unwrap_err();
            assert!(
                matches!(&err, Error::InvalidDnsName { name, reason: r } if name == bad && r.starts_with(reason)),
                "{bad:?}: {err:?}"
            );
        }
        let label64 = "a".repeat(64);
        assert!(
            validate_dns_name(&label64)
                .unwrap_err()
                .to_string()
                .contains("the maximum is 63")
        );
    }

    proptest! {
        /// Every name we accept is also accepted by rustls as a server name.
        #[test]
        fn accepted_names_are_rustls_dns_names(name in "[a-z0-9-]{1,10}(\\.[a-z0-9-]{1,10}){0,4}") {
            if validate_dns_name(&name).is_ok() {
                prop_assert!(rustls_pki_types::DnsName::try_from(name.as_str()).is_ok(), "{}", name);
            }
        }

        /// Parse and format round-trip for valid identities.
        #[test]
        fn identity_round_trips(
            sa in "[a-z]([a-z0-9-]{0,20}[a-z0-9])?",
            ns in "[a-z]([a-z0-9-]{0,20}[a-z0-9])?",
            cp in "[a-z]([a-z0-9-]{0,10}[a-z0-9])?",
            td in "[a-z]{1,10}(\\.[a-z]{1,10}){0,3}",
        ) {
            let id = Identity { service_account: sa, namespace: ns, control_plane_namespace: cp, trust_domain: td };
            let parsed: Identity = id.to_string().parse().unwrap();
            prop_assert_eq!(parsed, id);
        }
    }
}
