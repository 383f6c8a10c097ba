//! One trust anchor: a CA certificate's DER and a human summary of it.

use std::fmt::Write as _;
use std::time::{Duration, SystemTime};

use x509_parser::certificate::X509Certificate;
use x509_parser::extensions::GeneralName;

use crate::{Error, Result};

/// A trust anchor: the DER of one CA certificate, with its [`AnchorSummary`].
///
/// Two anchors are equal when their DER is byte-for-byte equal.
#[derive(Debug, Clone)]
pub struct Anchor {
    der: Vec<u8>,
    summary: AnchorSummary,
}

/// What a human needs to know about an anchor.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AnchorSummary {
    /// The subject distinguished name, e.g. `CN=root.linkerd.cluster.local`.
    pub subject: String,
    /// Subject alternative names, prefixed by type as openssl prints them (`DNS:…`, `IP:…`,
    /// `URI:…`, `email:…`).
    pub sans: Vec<String>,
    /// Start of validity.
    pub not_before: SystemTime,
    /// End of validity.
    pub not_after: SystemTime,
    /// The public key algorithm, e.g. `ECDSA P-256`, `RSA 2048`, `Ed25519`.
    pub key_algorithm: String,
    /// SHA-256 of the DER, uppercase hex bytes separated by colons, as
    /// `openssl x509 -noout -fingerprint -sha256` prints it.
    pub sha256_fingerprint: String,
}

impl PartialEq for Anchor {
    fn eq(&self, other: &Self) -> bool {
        self.der == other.der
    }
}

impl Eq for Anchor {}

impl Anchor {
    /// The certificate in DER.
    pub fn der(&self) -> &[u8] {
        &self.der
    }

    /// The human summary.
    pub fn summary(&self) -> &AnchorSummary {
        &self.summary
    }

    /// Whether the anchor is valid at `now` (inclusive bounds, as RFC 5280).
    pub fn is_valid_at(&self, now: SystemTime) -> bool {
        self.summary.not_before <= now && now <= self.summary.not_after
    }
}

/// Where a certificate came from, for error messages.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Origin {
    pub(crate) block: usize,
    pub(crate) line: usize,
}

/// A parsed certificate before any CA or time policy is applied.
pub(crate) struct Parsed {
    pub(crate) anchor: Anchor,
    /// `None` when it is a CA, else why not.
    pub(crate) not_ca: Option<&'static str>,
}

/// Parses `der` as one X.509 certificate and summarises it.
pub(crate) fn parse(der: Vec<u8>, origin: Origin) -> Result<Parsed> {
    let der_error = |reason: String| Error::CertificateDer {
        block: origin.block,
        line: origin.line,
        reason,
    };
    let (rest, cert) =
        x509_parser::parse_x509_certificate(&der).map_err(|e| der_error(e.to_string()))?;
    if !rest.is_empty() {
        return Err(der_error(format!(
            "{} unexpected byte(s) after the certificate",
            rest.len()
        )));
    }
    let not_ca = match cert.basic_constraints() {
        Ok(Some(bc)) if bc.value.ca => None,
        Ok(Some(_)) => Some("basicConstraints CA:FALSE"),
        Ok(None) => Some("no basicConstraints extension"),
        Err(e) => return Err(der_error(format!("basicConstraints: {e}"))),
    };
    let validity = cert.validity();
    let not_before = system_time(validity.not_before.timestamp())
        .ok_or_else(|| der_error("notBefore is out of range".into()))?;
    let not_after = system_time(validity.not_after.timestamp())
        .ok_or_else(|| der_error("notAfter is out of range".into()))?;
    let summary = AnchorSummary {
        subject: cert.subject().to_string(),
        sans: sans(&cert).map_err(der_error)?,
        not_before,
        not_after,
        key_algorithm: key_algorithm(&cert),
        sha256_fingerprint: fingerprint(&der),
    };
    Ok(Parsed {
        anchor: Anchor { der, summary },
        not_ca,
    })
}

/// Rejects an anchor outside its validity window at `now`.
pub(crate) fn check_validity(anchor: &Anchor, origin: Origin, now: SystemTime) -> Result<()> {
    if anchor.is_valid_at(now) {
        return Ok(());
    }
    let s = &anchor.summary;
    Err(Error::AnchorValidity {
        block: origin.block,
        line: origin.line,
        subject: s.subject.clone(),
        expired: now > s.not_after,
        now,
        not_before: s.not_before,
        not_after: s.not_after,
    })
}

/// Formats `t` as RFC 3339 in UTC (seconds precision when whole).
pub(crate) fn rfc3339(t: SystemTime) -> String {
    match jiff::Timestamp::try_from(t) {
        Ok(ts) => ts.to_string(),
        Err(_) => format!("{t:?}"),
    }
}

fn system_time(unix: i64) -> Option<SystemTime> {
    let magnitude = Duration::from_secs(unix.unsigned_abs());
    if unix >= 0 {
        SystemTime::UNIX_EPOCH.checked_add(magnitude)
    } else {
        SystemTime::UNIX_EPOCH.checked_sub(magnitude)
    }
}

fn sans(cert: &X509Certificate<'_>) -> std::result::Result<Vec<String>, String> {
    let ext = match cert.subject_alternative_name() {
        Ok(Some(ext)) => ext,
        Ok(None) => return Ok(Vec::new()),
        Err(e) => return Err(format!("subjectAltName: {e}")),
    };
    Ok(ext.value.general_names.iter().map(general_name).collect())
}

fn general_name(name: &GeneralName<'_>) -> String {
    match name {
        GeneralName::DNSName(s) => format!("DNS:{s}"),
        GeneralName::URI(s) => format!("URI:{s}"),
        GeneralName::RFC822Name(s) => format!("email:{s}"),
        GeneralName::IPAddress(bytes) => match <[u8; 4]>::try_from(*bytes) {
            Ok(v4) => format!("IP:{}", std::net::Ipv4Addr::from(v4)),
            Err(_) => match <[u8; 16]>::try_from(*bytes) {
                Ok(v6) => format!("IP:{}", std::net::Ipv6Addr::from(v6)),
                Err(_) => format!("IP:<{} bytes>", bytes.len()),
            },
        },
        GeneralName::DirectoryName(dn) => format!("DirName:{dn}"),
        GeneralName::RegisteredID(oid) => format!("RID:{oid}"),
        GeneralName::OtherName(oid, _) => format!("othername:{oid}"),
        GeneralName::X400Address(_) => "X400Name:<unsupported>".to_string(),
        GeneralName::EDIPartyName(_) => "EdiPartyName:<unsupported>".to_string(),
        GeneralName::Invalid(_, _) => "<invalid>".to_string(),
    }
}

fn key_algorithm(cert: &X509Certificate<'_>) -> String {
    let spki = cert.public_key();
    let oid = spki.algorithm.algorithm.to_id_string();
    match oid.as_str() {
        "1.2.840.10045.2.1" => {
            let curve = spki
                .algorithm
                .parameters
                .as_ref()
                .and_then(|p| p.as_oid().ok())
                .map(|c| c.to_id_string());
            match curve.as_deref() {
                Some("1.2.840.10045.3.1.7") => "ECDSA P-256".to_string(),
                Some("1.3.132.0.34") => "ECDSA P-384".to_string(),
                Some("1.3.132.0.35") => "ECDSA P-521".to_string(),
                Some(other) => format!("ECDSA (curve {other})"),
                None => "ECDSA (unknown curve)".to_string(),
            }
        }
        "1.2.840.113549.1.1.1" => match spki.parsed() {
            Ok(key) => format!("RSA {}", key.key_size()),
            Err(_) => "RSA".to_string(),
        },
        "1.3.101.112" => "Ed25519".to_string(),
        "1.3.101.113" => "Ed448".to_string(),
        _ => format!("unknown ({oid})"),
    }
}

/// SHA-256 of `der` as `AB:CD:…`.
pub(crate) fn fingerprint(der: &[u8]) -> String {
    let digest = ring::digest::digest(&ring::digest::SHA256, der);
    let mut out = String::with_capacity(95);
    for (i, byte) in digest.as_ref().iter().enumerate() {
        if i > 0 {
            out.push(':');
        }
        let _ = write!(out, "{byte:02X}");
    }
    out
}

#[cfg(test)]
impl Anchor {
    /// An anchor holding arbitrary bytes, to build malformed PEM in tests.
    pub(crate) fn for_tests(der: Vec<u8>) -> Anchor {
        Anchor {
            der,
            summary: AnchorSummary {
                subject: String::new(),
                sans: Vec::new(),
                not_before: SystemTime::UNIX_EPOCH,
                not_after: SystemTime::UNIX_EPOCH,
                key_algorithm: String::new(),
                sha256_fingerprint: String::new(),
            },
        }
    }
}
