//! Linkerd workload identities:
//! `<serviceaccount>.<namespace>.serviceaccount.identity.<control-plane-namespace>.<trust-domain>`.
//!
//! The identity is the DNS SAN of a proxy's certificate, so it must be a valid DNS name.
//! Proxies whose certificates come from SPIRE carry a SPIFFE ID instead, as a URI SAN
//! (`spiffe://<trust-domain>/<path>`): [`validate_spiffe_id`] checks one, and
//! [`spiffe_id_of_certificate`] reads it from a certificate.

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
/// The scheme and authority separator of a SPIFFE ID.
const SPIFFE_SCHEME: &str = "spiffe://";
/// Longest SPIFFE ID (SPIFFE-ID specification §2.3: URIs up to 2048 bytes).
const MAX_SPIFFE_ID: usize = 2048;
/// Longest SPIFFE trust domain (SPIFFE-ID specification §2.1).
const MAX_TRUST_DOMAIN: usize = 255;

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

/// Checks that `id` is a SPIFFE ID that names a workload (SPIFFE-ID specification §2):
/// `spiffe://`, a trust domain of `a-z`, `0-9`, `.`, `-` and `_` (no port, no user info), and a
/// non-empty path of `/`-separated segments of `a-z`, `A-Z`, `0-9`, `.`, `-` and `_`, none
/// empty, `.` or `..`; no query, fragment or percent-encoding; at most 2048 bytes. An ID
/// without a path names the trust domain itself, not a workload, and is refused.
///
/// ```
/// use mc_core::identity::validate_spiffe_id;
///
/// assert!(validate_spiffe_id("spiffe://cluster.local/ns/shop/sa/web").is_ok());
/// assert!(validate_spiffe_id("spiffe://cluster.local").is_err());
/// assert!(validate_spiffe_id("https://cluster.local/ns/shop").is_err());
/// ```
pub fn validate_spiffe_id(id: &str) -> Result<()> {
    check_spiffe_id(id).map_err(|reason| Error::InvalidSpiffeId {
        input: id.to_string(),
        reason,
    })
}

fn check_spiffe_id(id: &str) -> std::result::Result<(), String> {
    if id.len() > MAX_SPIFFE_ID {
        return Err(format!(
            "it is {} bytes long, the maximum is {MAX_SPIFFE_ID}",
            id.len()
        ));
    }
    let rest = id
        .strip_prefix(SPIFFE_SCHEME)
        .ok_or_else(|| format!("it does not start with {SPIFFE_SCHEME:?}"))?;
    let (domain, path) = match rest.split_once('/') {
        Some((domain, path)) => (domain, Some(path)),
        None => (rest, None),
    };
    if domain.is_empty() {
        return Err("the trust domain is empty".to_string());
    }
    if domain.len() > MAX_TRUST_DOMAIN {
        return Err(format!(
            "the trust domain is {} characters long, the maximum is {MAX_TRUST_DOMAIN}",
            domain.len()
        ));
    }
    if let Some(c) = domain
        .chars()
        .find(|c| !(c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '.' | '-' | '_')))
    {
        return Err(format!(
            "character {c:?} is not allowed in the trust domain"
        ));
    }
    let Some(path) = path else {
        return Err("it has no path, so it names a trust domain, not a workload".to_string());
    };
    for (i, segment) in path.split('/').enumerate() {
        check_spiffe_segment(segment)
            .map_err(|reason| format!("path segment {}: {reason}", i + 1))?;
    }
    Ok(())
}

fn check_spiffe_segment(segment: &str) -> std::result::Result<(), String> {
    if segment.is_empty() {
        return Err("it is empty (two slashes in a row, or a trailing slash)".to_string());
    }
    if segment == "." || segment == ".." {
        return Err(format!("{segment:?} is a relative segment"));
    }
    match segment
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_')))
    {
        Some(c) => Err(format!("character {c:?} is not allowed")),
        None => Ok(()),
    }
}

/// The SPIFFE ID of a DER certificate: its first URI subject alternative name that is a valid
/// SPIFFE workload ID ([`validate_spiffe_id`]), or `None` (no such SAN, or not a certificate).
/// It says nothing of whether the certificate is trusted: verify its chain first.
pub fn spiffe_id_of_certificate(der: &[u8]) -> Option<String> {
    let (_, cert) = x509_parser::parse_x509_certificate(der).ok()?;
    let san = cert.subject_alternative_name().ok()??;
    san.value.general_names.iter().find_map(|name| match name {
        x509_parser::extensions::GeneralName::URI(uri) if check_spiffe_id(uri).is_ok() => {
            Some((*uri).to_string())
        }
        _ => None,
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

    #[test]
    fn spiffe_id_rules() {
        for good in [
            "spiffe://cluster.local/ns/shop/sa/web",
            "spiffe://root.linkerd.cluster.local/a",
            "spiffe://td_1-x/A.b-c_d",
        ] {
            validate_spiffe_id(good).unwrap();
        }
        let cases = [
            ("spiffe://cluster.local", "it has no path"),
            ("spiffe://cluster.local/", "path segment 1: it is empty"),
            (
                "spiffe://cluster.local/ns//x",
                "path segment 2: it is empty",
            ),
            ("spiffe://cluster.local/ns/", "path segment 2: it is empty"),
            (
                "spiffe://cluster.local/ns/..",
                "path segment 2: \"..\" is a relative",
            ),
            (
                "spiffe://cluster.local/a%20b",
                "path segment 1: character '%'",
            ),
            (
                "spiffe://cluster.local/a?q",
                "path segment 1: character '?'",
            ),
            (
                "spiffe://cluster.local/a#f",
                "path segment 1: character '#'",
            ),
            (
                "spiffe://Cluster.local/a",
                "character 'C' is not allowed in the trust domain",
            ),
            (
                "spiffe://cluster.local:8443/a",
                "character ':' is not allowed in the trust domain",
            ),
            (
                "spiffe://u@cluster.local/a",
                "character '@' is not allowed in the trust domain",
            ),
            ("spiffe:///a", "the trust domain is empty"),
            ("SPIFFE://cluster.local/a", "it does not start with"),
            ("https://cluster.local/a", "it does not start with"),
        ];
        for (bad, reason) in cases {
            let err = validate_spiffe_id(bad).unwrap_err();
            assert!(
                matches!(&err, Error::InvalidSpiffeId { input, reason: r } if input == bad && r.starts_with(reason)),
                "{bad:?}: {err:?}"
            );
            assert!(err.to_string().contains("fix: use spiffe://"), "{err}");
        }
        let long = format!("spiffe://td/{}", "a".repeat(MAX_SPIFFE_ID));
        assert!(
            validate_spiffe_id(&long)
                .unwrap_err()
                .to_string()
                .contains("the maximum is 2048")
        );
    }

    fn cert_with_sans(sans: Vec<rcgen::SanType>) -> Vec<u8> {
        let key = rcgen::KeyPair::generate().unwrap();
        let mut params = rcgen::CertificateParams::default();
        params.subject_alt_names = sans;
        params.self_signed(&key).unwrap().der().to_vec()
    }

    #[test]
    fn the_spiffe_id_is_the_first_valid_uri_san() {
        let uri = |s: &str| rcgen::SanType::URI(s.to_string().try_into().unwrap());
        let dns = |s: &str| rcgen::SanType::DnsName(s.to_string().try_into().unwrap());
        let der = cert_with_sans(vec![
            dns("web.shop.serviceaccount.identity.linkerd.cluster.local"),
            uri("https://example.com/x"),
            uri("spiffe://cluster.local"),
            uri("spiffe://cluster.local/ns/shop/sa/web"),
            uri("spiffe://cluster.local/ns/shop/sa/other"),
        ]);
        assert_eq!(
            spiffe_id_of_certificate(&der).as_deref(),
            Some("spiffe://cluster.local/ns/shop/sa/web")
        );
        let none = cert_with_sans(vec![dns("web.example"), uri("spiffe://td")]);
        assert_eq!(spiffe_id_of_certificate(&none), None);
        assert_eq!(spiffe_id_of_certificate(b"not a certificate"), None);
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
