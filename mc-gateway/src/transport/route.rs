//! Routing, stage 2 of a connection: the target a connection or request names ([`Target`],
//! from the transport header or `Host`) and which targets may be reached at all (allowed
//! suffixes). Which client may reach which target is the next stage, `crate::policy`.

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
}
