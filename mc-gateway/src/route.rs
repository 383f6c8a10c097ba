//! Routing decisions: which targets may be reached (allowed suffixes) and loop protection;
//! by whom is [`crate::policy`].

pub use crate::policy::{Policy, PolicyRule, glob_match};
use crate::{Error, Result};

/// A target service: host name and port.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Target {
    /// The host name, lowercase, without a trailing dot.
    pub name: String,
    /// The port.
    pub port: u16,
}

impl std::fmt::Display for Target {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}:{}", self.name, self.port)
    }
}

impl Target {
    /// Builds a target, normalising the name (lowercase, no trailing dot).
    pub fn new(name: &str, port: u16) -> Self {
        Self {
            name: name.trim_end_matches('.').to_ascii_lowercase(),
            port,
        }
    }

    /// Parses `host:port`; `default_port` applies when the port is absent (HTTP Host headers).
    pub fn parse_authority(authority: &str, default_port: Option<u16>) -> Result<Self> {
        let bad = |why| Error::BadAuthority {
            authority: authority.to_owned(),
            why,
        };
        if authority.is_empty() {
            return Err(bad("empty"));
        }
        if authority.starts_with('[') {
            return Err(bad("IP literals are not service names"));
        }
        let (host, port) = match authority.rsplit_once(':') {
            Some((host, port)) => (
                host,
                port.parse::<u16>()
                    .ok()
                    .filter(|p| *p != 0)
                    .ok_or_else(|| bad("port is not a number in 1..=65535"))?,
            ),
            None => (authority, default_port.ok_or_else(|| bad("no port"))?),
        };
        if host.is_empty() {
            return Err(bad("empty host"));
        }
        if !host
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.' || b == b'_')
        {
            return Err(bad("host has characters outside a DNS name"));
        }
        Ok(Self::new(host, port))
    }
}

/// The allowed target suffixes, e.g. `svc.cluster.local`.
#[derive(Debug, Clone)]
pub struct Suffixes(Vec<String>);

impl Suffixes {
    /// The default: `svc.<cluster_domain>`.
    pub fn for_cluster_domain(cluster_domain: &str) -> Self {
        Self::new([format!("svc.{}", cluster_domain.trim_matches('.'))])
    }

    /// A list of suffixes (with or without leading or trailing dots).
    pub fn new<I: IntoIterator<Item = S>, S: AsRef<str>>(suffixes: I) -> Self {
        Self(
            suffixes
                .into_iter()
                .map(|s| s.as_ref().trim_matches('.').to_ascii_lowercase())
                .collect(),
        )
    }

    /// Checks that the target's name is `<something>.<suffix>` for an allowed suffix.
    pub fn check(&self, target: &Target) -> Result<()> {
        let ok = self.0.iter().any(|suffix| {
            target
                .name
                .strip_suffix(suffix.as_str())
                .is_some_and(|head| head.len() > 1 && head.ends_with('.'))
        });
        if ok {
            Ok(())
        } else {
            Err(Error::SuffixNotAllowed {
                name: target.name.clone(),
                allowed: self.0.clone(),
            })
        }
    }
}

/// Loop protection for HTTP: refuses a request whose `Forwarded` headers already name this
/// gateway (`by=<gateway-id>`), and builds the element this gateway appends.
pub fn check_forwarded<'a>(values: impl Iterator<Item = &'a str>, gateway_id: &str) -> Result<()> {
    for value in values {
        for element in value.split(',') {
            for pair in element.split(';') {
                let Some((k, v)) = pair.trim().split_once('=') else {
                    continue;
                };
                if k.trim().eq_ignore_ascii_case("by") && v.trim().trim_matches('"') == gateway_id {
                    return Err(Error::Loop {
                        why: format!(
                            "the request already passed through {gateway_id} (Forwarded: {value})"
                        ),
                    });
                }
            }
        }
    }
    Ok(())
}

/// The `Forwarded` element this gateway appends (RFC 7239):
/// `by=<gateway-id>;for=<client-id>;host=<target>;proto=https`. An identity that is not a
/// token (a SPIFFE ID's `:` and `/`) is sent as a quoted string; `host` is sent as it always
/// was (`name:port`).
pub fn forwarded_element(gateway_id: &str, client_id: &str, target: &Target) -> String {
    let (by, client) = (forwarded_value(gateway_id), forwarded_value(client_id));
    format!("by={by};for={client};host={target};proto=https")
}

/// `value` as an RFC 7239 value: as it is when it is a token (RFC 9110 §5.6.2), otherwise a
/// quoted string with `"` and `\` escaped.
fn forwarded_value(value: &str) -> std::borrow::Cow<'_, str> {
    let tchar = |b: u8| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b);
    if !value.is_empty() && value.bytes().all(tchar) {
        return value.into();
    }
    let mut quoted = String::with_capacity(value.len() + 2);
    quoted.push('"');
    for c in value.chars() {
        if matches!(c, '"' | '\\') {
            quoted.push('\\');
        }
        quoted.push(c);
    }
    quoted.push('"');
    quoted.into()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;

    #[test]
    fn authority_parsing() {
        assert_eq!(
            Target::parse_authority("Web.Shop.svc.cluster.local.:8080", None).unwrap(),
            Target::new("web.shop.svc.cluster.local", 8080)
        );
        assert_eq!(
            Target::parse_authority("web.shop.svc.cluster.local", Some(443))
                .unwrap()
                .port,
            443
        );
        for bad in ["", ":80", "a:0", "a:99999", "a b:80", "[::1]:80", "a:x"] {
            assert!(Target::parse_authority(bad, Some(80)).is_err(), "{bad}");
        }
        assert!(Target::parse_authority("a", None).is_err());
    }

    #[test]
    fn suffix_rule() {
        let s = Suffixes::for_cluster_domain("cluster.local");
        assert!(
            s.check(&Target::new("web.shop.svc.cluster.local", 80))
                .is_ok()
        );
        for bad in [
            "svc.cluster.local",
            ".svc.cluster.local",
            "web.shop.svc.cluster.local.evil.com",
            "web.shopsvc.cluster.local",
            "example.com",
        ] {
            let err = s.check(&Target::new(bad, 80)).unwrap_err();
            assert!(matches!(err, Error::SuffixNotAllowed { .. }), "{bad}");
        }
        let custom = Suffixes::new([".svc.east.", "example.com"]);
        assert!(custom.check(&Target::new("a.b.svc.east", 1)).is_ok());
        assert!(custom.check(&Target::new("www.example.com", 1)).is_ok());
        assert!(
            custom
                .check(&Target::new("a.b.svc.cluster.local", 1))
                .is_err()
        );
    }

    #[test]
    fn forwarded_loop_detection() {
        let gw = "gw.identity";
        assert!(check_forwarded(["for=a;by=other"].into_iter(), gw).is_ok());
        assert!(check_forwarded(["for=a, by=gw.identity;for=b"].into_iter(), gw).is_err());
        assert!(check_forwarded(["By=\"gw.identity\""].into_iter(), gw).is_err());
        assert_eq!(
            forwarded_element(gw, "c", &Target::new("t.svc.x", 80)),
            "by=gw.identity;for=c;host=t.svc.x:80;proto=https"
        );
        assert_eq!(
            forwarded_element(gw, "spiffe://td/ns/a", &Target::new("t.svc.x", 80)),
            "by=gw.identity;for=\"spiffe://td/ns/a\";host=t.svc.x:80;proto=https"
        );
        assert_eq!(forwarded_value("a\"b\\"), "\"a\\\"b\\\\\"");
        assert_eq!(forwarded_value(""), "\"\"");
        // A quoted SPIFFE gateway identity is still found.
        let spiffe_gw = "spiffe://td/gw";
        let element = forwarded_element(spiffe_gw, "c", &Target::new("t.svc.x", 80));
        assert!(check_forwarded([element.as_str()].into_iter(), spiffe_gw).is_err());
    }
}
