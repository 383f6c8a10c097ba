//! Certificates for a Linkerd-compatible identity hierarchy: a trust anchor (root CA), an issuer
//! (intermediate CA, path length 0) and leaf workload certificates whose DNS SAN is a Linkerd
//! identity. All keys are ECDSA P-256, all output is PEM.
//!
//! ```
//! use std::time::SystemTime;
//! use mc_core::pki::{create_issuer, create_trust_anchor, issue_leaf, AnchorOptions, IssuerOptions, LeafOptions};
//!
//! let now = SystemTime::now();
//! let root = create_trust_anchor(&AnchorOptions::new(now))?;
//! let issuer = create_issuer(&root, &IssuerOptions::new(now))?;
//! let leaf = issue_leaf(
//!     &issuer,
//!     "web.shop.serviceaccount.identity.linkerd.cluster.local",
//!     &LeafOptions::new(now),
//! )?;
//! // What a server presents: its certificate, then the issuer.
//! assert_eq!(leaf.chain_pem(&issuer).matches("BEGIN CERTIFICATE").count(), 2);
//! # Ok::<(), mc_core::Error>(())
//! ```

use std::time::{Duration, SystemTime};

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose, PKCS_ECDSA_P256_SHA256, SanType, SerialNumber,
};
use ring::rand::SecureRandom as _;
use rustls_pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use time::OffsetDateTime;

use crate::identity::validate_dns_name;
use crate::trust::pem;
use crate::{Error, Result};

/// Default common name of a trust anchor.
pub const DEFAULT_ANCHOR_CN: &str = "root.linkerd.cluster.local";
/// Default common name of an issuer.
pub const DEFAULT_ISSUER_CN: &str = "identity.linkerd.cluster.local";
/// Default validity of a trust anchor: 10 years of 365 days.
pub const DEFAULT_ANCHOR_VALIDITY: Duration = Duration::from_secs(10 * 365 * 24 * 3600);
/// Default validity of an issuer: 8760 hours.
pub const DEFAULT_ISSUER_VALIDITY: Duration = Duration::from_secs(8760 * 3600);
/// Default validity of a leaf: 24 hours.
pub const DEFAULT_LEAF_VALIDITY: Duration = Duration::from_secs(24 * 3600);
/// Longest common name X.509 allows (ub-common-name).
const MAX_CN: usize = 64;

/// A certificate and its private key, both PEM (the key is PKCS#8 `PRIVATE KEY`).
#[derive(Clone, PartialEq, Eq)]
pub struct CertifiedKey {
    /// The certificate, one `CERTIFICATE` block.
    pub cert_pem: String,
    /// The private key, one `PRIVATE KEY` block (PKCS#8).
    pub key_pem: String,
}

impl std::fmt::Debug for CertifiedKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CertifiedKey")
            .field("cert_pem", &self.cert_pem)
            .field("key_pem", &"<redacted>")
            .finish()
    }
}

impl CertifiedKey {
    /// This certificate followed by `issuer`'s: the chain a server or client presents.
    pub fn chain_pem(&self, issuer: &CertifiedKey) -> String {
        let mut out = self.cert_pem.clone();
        if !out.ends_with('\n') {
            out.push('\n');
        }
        out.push_str(&issuer.cert_pem);
        out
    }

    /// The certificate as DER (e.g. for a rustls certificate chain).
    pub fn cert_der(&self) -> Result<CertificateDer<'static>> {
        single_block(&self.cert_pem, "CERTIFICATE", "certificate").map(CertificateDer::from)
    }

    /// The private key as DER (e.g. for a rustls server or client config).
    pub fn key_der(&self) -> Result<PrivateKeyDer<'static>> {
        single_block(&self.key_pem, "PRIVATE KEY", "key")
            .map(|der| PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(der)))
    }
}

/// Options for [`create_trust_anchor`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AnchorOptions {
    /// Subject common name.
    pub common_name: String,
    /// Start of validity.
    pub not_before: SystemTime,
    /// End of validity.
    pub not_after: SystemTime,
}

impl AnchorOptions {
    /// CN `root.linkerd.cluster.local`, valid from `now` for 10 years.
    pub fn new(now: SystemTime) -> AnchorOptions {
        AnchorOptions {
            common_name: DEFAULT_ANCHOR_CN.to_string(),
            not_before: now,
            not_after: later(now, DEFAULT_ANCHOR_VALIDITY),
        }
    }
}

/// Options for [`create_issuer`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IssuerOptions {
    /// Subject common name.
    pub common_name: String,
    /// Start of validity.
    pub not_before: SystemTime,
    /// End of validity.
    pub not_after: SystemTime,
}

impl IssuerOptions {
    /// CN `identity.linkerd.cluster.local`, valid from `now` for 8760 hours.
    pub fn new(now: SystemTime) -> IssuerOptions {
        IssuerOptions {
            common_name: DEFAULT_ISSUER_CN.to_string(),
            not_before: now,
            not_after: later(now, DEFAULT_ISSUER_VALIDITY),
        }
    }
}

/// Options for [`issue_leaf`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LeafOptions {
    /// Start of validity.
    pub not_before: SystemTime,
    /// End of validity.
    pub not_after: SystemTime,
    /// Include the serverAuth extended key usage.
    pub server_auth: bool,
    /// Include the clientAuth extended key usage.
    pub client_auth: bool,
}

impl LeafOptions {
    /// Both extended key usages, valid from `now` for 24 hours.
    pub fn new(now: SystemTime) -> LeafOptions {
        LeafOptions {
            not_before: now,
            not_after: later(now, DEFAULT_LEAF_VALIDITY),
            server_auth: true,
            client_auth: true,
        }
    }
}

/// `now + d`, or `now` when that overflows (creation then fails with a clear error, never a panic).
fn later(now: SystemTime, d: Duration) -> SystemTime {
    now.checked_add(d).unwrap_or(now)
}

/// Creates a self-signed root CA (no path-length limit).
pub fn create_trust_anchor(opts: &AnchorOptions) -> Result<CertifiedKey> {
    let mut params = ca_params(
        Kind::Anchor,
        &opts.common_name,
        opts.not_before,
        opts.not_after,
    )?;
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let key = new_key()?;
    let cert = params
        .self_signed(&key)
        .map_err(generate("self-signing the trust anchor"))?;
    Ok(CertifiedKey {
        cert_pem: cert.pem(),
        key_pem: key.serialize_pem(),
    })
}

/// Creates an intermediate CA with path length 0, signed by `signer` (a root's certificate and
/// key, e.g. from [`create_trust_anchor`] or read from `ca.crt` / `ca.key`).
pub fn create_issuer(signer: &CertifiedKey, opts: &IssuerOptions) -> Result<CertifiedKey> {
    let mut params = ca_params(
        Kind::Issuer,
        &opts.common_name,
        opts.not_before,
        opts.not_after,
    )?;
    params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    sign_new_key(signer, params, "signing the issuer certificate")
}

/// Issues a workload certificate for `identity` (its DNS SAN and, when it fits, its CN), signed
/// by `issuer` (an intermediate CA from [`create_issuer`]).
pub fn issue_leaf(
    issuer: &CertifiedKey,
    identity: &str,
    opts: &LeafOptions,
) -> Result<CertifiedKey> {
    validate_dns_name(identity)?;
    if !opts.server_auth && !opts.client_auth {
        return Err(Error::PkiOptions {
            field: "LeafOptions.server_auth/client_auth",
            reason: "both are false".to_string(),
            fix: "enable at least one (Linkerd proxies need both)",
        });
    }
    let not_after = leaf_not_after(issuer, opts)?;
    let mut params = base_params(Kind::Leaf, opts.not_before, not_after)?;
    if identity.len() <= MAX_CN {
        params.distinguished_name.push(DnType::CommonName, identity);
    }
    let san = identity
        .to_string()
        .try_into()
        .map_err(generate("encoding the identity as a DNS SAN"))?;
    params.subject_alt_names = vec![SanType::DnsName(san)];
    params.is_ca = IsCa::ExplicitNoCa;
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    let ekus = [
        (opts.server_auth, ExtendedKeyUsagePurpose::ServerAuth),
        (opts.client_auth, ExtendedKeyUsagePurpose::ClientAuth),
    ];
    params.extended_key_usages = ekus
        .into_iter()
        .filter_map(|(wanted, eku)| wanted.then_some(eku))
        .collect();
    sign_new_key(issuer, params, "signing the leaf certificate")
}

/// When `issuer` stops being valid (its certificate's notAfter).
pub fn not_after_of(cert: &CertifiedKey) -> Result<SystemTime> {
    let der = cert.cert_der()?;
    let origin = crate::trust::anchor::Origin { block: 1, line: 1 };
    let parsed = crate::trust::anchor::parse(der.to_vec(), origin)?;
    Ok(parsed.anchor.summary().not_after)
}

/// The end of validity a leaf issued by `issuer` with `opts` gets: `opts.not_after`, shortened
/// to the issuer's own end when it would outlive it (a leaf never outlives its issuer; compare
/// with `opts.not_after` to warn). Error: the issuer has expired by `opts.not_before`.
pub fn leaf_not_after(issuer: &CertifiedKey, opts: &LeafOptions) -> Result<SystemTime> {
    let issuer_end = not_after_of(issuer)?;
    if issuer_end <= opts.not_before {
        return Err(Error::PkiOptions {
            field: "issuer certificate notAfter",
            reason: format!(
                "the issuer expired at {}, before the leaf would start",
                crate::trust::anchor::rfc3339(issuer_end)
            ),
            fix: "renew the issuer (mc issuer create) and use the new one",
        });
    }
    Ok(opts.not_after.min(issuer_end))
}

/// Which certificate is being made, to name the options in errors.
#[derive(Debug, Clone, Copy)]
enum Kind {
    Anchor,
    Issuer,
    Leaf,
}

impl Kind {
    fn common_name(self) -> &'static str {
        match self {
            Kind::Anchor => "AnchorOptions.common_name",
            Kind::Issuer => "IssuerOptions.common_name",
            Kind::Leaf => "identity",
        }
    }

    fn not_before(self) -> &'static str {
        match self {
            Kind::Anchor => "AnchorOptions.not_before",
            Kind::Issuer => "IssuerOptions.not_before",
            Kind::Leaf => "LeafOptions.not_before",
        }
    }

    fn not_after(self) -> &'static str {
        match self {
            Kind::Anchor => "AnchorOptions.not_after",
            Kind::Issuer => "IssuerOptions.not_after",
            Kind::Leaf => "LeafOptions.not_after",
        }
    }
}

/// An empty subject, the validity window and a random serial.
fn base_params(
    kind: Kind,
    not_before: SystemTime,
    not_after: SystemTime,
) -> Result<CertificateParams> {
    if not_after <= not_before {
        return Err(Error::PkiOptions {
            field: kind.not_after(),
            reason: format!(
                "{} is not after not_before {}",
                crate::trust::format_time(not_after),
                crate::trust::format_time(not_before)
            ),
            fix: "set not_after later than not_before",
        });
    }
    let mut params = CertificateParams::default();
    params.distinguished_name = DistinguishedName::new();
    params.not_before = offset(kind.not_before(), not_before)?;
    params.not_after = offset(kind.not_after(), not_after)?;
    params.serial_number = Some(random_serial()?);
    Ok(params)
}

/// Parameters shared by both kinds of CA.
fn ca_params(
    kind: Kind,
    common_name: &str,
    not_before: SystemTime,
    not_after: SystemTime,
) -> Result<CertificateParams> {
    if common_name.trim().is_empty() || common_name.len() > MAX_CN {
        return Err(Error::PkiOptions {
            field: kind.common_name(),
            reason: format!("{common_name:?} is empty or longer than {MAX_CN} characters"),
            fix: "use a short DNS-like name, e.g. root.linkerd.cluster.local",
        });
    }
    let mut params = base_params(kind, not_before, not_after)?;
    params
        .distinguished_name
        .push(DnType::CommonName, common_name);
    params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    Ok(params)
}

/// Signs `params` for a fresh P-256 key with `signer`'s key.
fn sign_new_key(
    signer: &CertifiedKey,
    mut params: CertificateParams,
    action: &'static str,
) -> Result<CertifiedKey> {
    params.use_authority_key_identifier_extension = true;
    let key = new_key()?;
    let cert =
        with_signer(signer, |issuer| params.signed_by(&key, issuer))?.map_err(generate(action))?;
    Ok(CertifiedKey {
        cert_pem: cert.pem(),
        key_pem: key.serialize_pem(),
    })
}

/// Runs `sign` with an rcgen issuer built from `signer`, after checking that the signer is a CA
/// and that its key belongs to its certificate.
fn with_signer<T>(
    signer: &CertifiedKey,
    sign: impl FnOnce(&Issuer<'_, KeyPair>) -> std::result::Result<T, rcgen::Error>,
) -> Result<std::result::Result<T, rcgen::Error>> {
    let cert_der = signer.cert_der()?;
    let (_, cert) =
        x509_parser::parse_x509_certificate(&cert_der).map_err(|e| Error::PkiSigner {
            part: "certificate",
            reason: format!("not a valid X.509 certificate: {e}"),
            fix: "pass the CA certificate PEM (ca.crt / issuer.crt)",
        })?;
    if !matches!(cert.basic_constraints(), Ok(Some(bc)) if bc.value.ca) {
        return Err(Error::PkiSigner {
            part: "certificate",
            reason: format!(
                "{} is not a CA (basicConstraints CA:TRUE missing)",
                cert.subject()
            ),
            fix: "sign with a trust anchor or an issuer, not with a leaf certificate",
        });
    }
    let key = signer_key(&signer.key_pem)?;
    if key.public_key_raw() != cert.public_key().subject_public_key.data.as_ref() {
        return Err(Error::PkiSigner {
            part: "key",
            reason: format!(
                "the private key does not belong to the certificate {}",
                cert.subject()
            ),
            fix: "pass the key file that was created together with this certificate",
        });
    }
    let issuer = Issuer::from_ca_cert_der(&cert_der, key).map_err(|e| Error::PkiSigner {
        part: "certificate",
        reason: format!("cannot be used as an issuer: {e}"),
        fix: "pass a CA certificate created by mc or by `step certificate create --profile root-ca`",
    })?;
    Ok(sign(&issuer))
}

/// Reads a signer's private key: PKCS#8 (`PRIVATE KEY`, as mc and openssl 3 write it) or SEC1
/// (`EC PRIVATE KEY`, as `step certificate create` writes it for Linkerd's anchors and issuers).
fn signer_key(key_pem: &str) -> Result<KeyPair> {
    let unreadable = |reason: String| Error::PkiSigner {
        part: "key",
        reason,
        fix: "pass the unencrypted private key PEM created with the certificate; convert \
              others with `openssl pkcs8 -topk8 -nocrypt -in ca.key -out ca-pkcs8.key`",
    };
    let blocks = pem::scan(key_pem.as_bytes(), |_, _, _| Ok(()))?;
    let Some(block) = blocks.iter().find(|b| b.label.ends_with("PRIVATE KEY")) else {
        return Err(unreadable("no \"PRIVATE KEY\" PEM block found".to_string()));
    };
    let pkcs8 = match block.label.as_str() {
        "PRIVATE KEY" => block.der.clone(),
        "EC PRIVATE KEY" => sec1_to_pkcs8(&block.der),
        "ENCRYPTED PRIVATE KEY" => {
            return Err(unreadable(
                "the key is encrypted (decrypt it first: `openssl pkcs8 -in ca.key -out \
                 ca-plain.key`)"
                    .to_string(),
            ));
        }
        other => {
            return Err(unreadable(format!(
                "\"{other}\" keys are not supported, only ECDSA, Ed25519 and RSA keys in PKCS#8"
            )));
        }
    };
    KeyPair::try_from(&PrivatePkcs8KeyDer::from(pkcs8))
        .map_err(|e| unreadable(format!("cannot read the private key: {e}")))
}

/// Wraps a SEC1 `ECPrivateKey` into a PKCS#8 `PrivateKeyInfo` (RFC 5915 section 3).
fn sec1_to_pkcs8(sec1: &[u8]) -> Vec<u8> {
    const EC_PUBLIC_KEY: &[u8] = &[0x06, 0x07, 0x2A, 0x86, 0x48, 0xCE, 0x3D, 0x02, 0x01];
    const P256: &[u8] = &[0x06, 0x08, 0x2A, 0x86, 0x48, 0xCE, 0x3D, 0x03, 0x01, 0x07];
    const P384: &[u8] = &[0x06, 0x05, 0x2B, 0x81, 0x04, 0x00, 0x22];
    // The curve is named in the key's optional parameters; P-256 when absent (Linkerd's choice).
    let curve = if sec1.windows(P384.len()).any(|w| w == P384) {
        P384
    } else {
        P256
    };
    let algorithm = der_tlv(0x30, &[EC_PUBLIC_KEY, curve].concat());
    let body = [&[0x02, 0x01, 0x00][..], &algorithm, &der_tlv(0x04, sec1)].concat();
    der_tlv(0x30, &body)
}

/// One DER tag-length-value.
fn der_tlv(tag: u8, content: &[u8]) -> Vec<u8> {
    let len = content.len();
    let mut out = vec![tag];
    if len < 0x80 {
        out.push(len as u8);
    } else {
        let bytes = len.to_be_bytes();
        let skip = bytes.iter().take_while(|b| **b == 0).count();
        out.push(0x80 | (bytes.len() - skip) as u8);
        out.extend_from_slice(&bytes[skip..]);
    }
    out.extend_from_slice(content);
    out
}

/// The only block of type `label` in `pem`.
fn single_block(pem: &str, label: &str, part: &'static str) -> Result<Vec<u8>> {
    let blocks = pem::scan(pem.as_bytes(), |_, _, _| Ok(()))?;
    blocks
        .into_iter()
        .find(|b| b.label == label)
        .map(|b| b.der)
        .ok_or_else(|| Error::PkiSigner {
            part,
            reason: format!("no \"{label}\" PEM block found"),
            fix: "pass the PEM text exactly as mc or openssl wrote it",
        })
}

fn new_key() -> Result<KeyPair> {
    KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256)
        .map_err(generate("generating an ECDSA P-256 key"))
}

/// A random positive 16-byte serial number.
fn random_serial() -> Result<SerialNumber> {
    let mut bytes = [0u8; 16];
    ring::rand::SystemRandom::new()
        .fill(&mut bytes)
        .map_err(|_| Error::PkiGenerate {
            action: "drawing a random serial number",
            source: rcgen::Error::RingUnspecified,
        })?;
    bytes[0] &= 0x7f;
    bytes[0] |= 0x01;
    Ok(SerialNumber::from_slice(&bytes))
}

/// `t` as an rcgen time, or an error when X.509 cannot encode it.
fn offset(field: &'static str, t: SystemTime) -> Result<OffsetDateTime> {
    let unix = match t.duration_since(SystemTime::UNIX_EPOCH) {
        Ok(d) => i64::try_from(d.as_secs()).ok(),
        Err(e) => i64::try_from(e.duration().as_secs()).ok().map(|s| -s),
    };
    unix.and_then(|s| OffsetDateTime::from_unix_timestamp(s).ok())
        .filter(|t| (1950..=9999).contains(&t.year()))
        .ok_or_else(|| Error::PkiOptions {
            field,
            reason: format!(
                "{} is outside the years 1950 to 9999",
                crate::trust::format_time(t)
            ),
            fix: "choose a time X.509 can encode",
        })
}

fn generate(action: &'static str) -> impl FnOnce(rcgen::Error) -> Error {
    move |source| Error::PkiGenerate { action, source }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::process::Command;
    use std::time::UNIX_EPOCH;

    use rustls_pki_types::{ServerName, UnixTime};
    use webpki::{EndEntityCert, KeyUsage};

    const ID: &str = "web.shop.serviceaccount.identity.linkerd.cluster.local";

    /// 2026-01-01T00:00:00Z: fixed so the tests do not depend on the clock.
    fn now() -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(1_767_225_600)
    }

    struct Chain {
        root: CertifiedKey,
        issuer: CertifiedKey,
        leaf: CertifiedKey,
    }

    fn chain(leaf_opts: &LeafOptions) -> Chain {
        let root = create_trust_anchor(&AnchorOptions::new(now())).unwrap();
        let issuer = create_issuer(&root, &IssuerOptions::new(now())).unwrap();
        let leaf = issue_leaf(&issuer, ID, leaf_opts).unwrap();
        Chain { root, issuer, leaf }
    }

    fn webpki_verify(
        root: &CertifiedKey,
        intermediates: &[&CertifiedKey],
        leaf: &CertifiedKey,
        at: SystemTime,
        usage: KeyUsage,
    ) -> std::result::Result<(), webpki::Error> {
        let root_der = root.cert_der().unwrap();
        let anchors = [webpki::anchor_from_trusted_cert(&root_der).unwrap()];
        let intermediates: Vec<_> = intermediates
            .iter()
            .map(|c| c.cert_der().unwrap())
            .collect();
        let leaf_der = leaf.cert_der().unwrap();
        let ee = EndEntityCert::try_from(&leaf_der).unwrap();
        let time = UnixTime::since_unix_epoch(at.duration_since(UNIX_EPOCH).unwrap());
        ee.verify_for_usage(
            &[webpki::ring::ECDSA_P256_SHA256],
            &anchors,
            &intermediates,
            time,
            usage,
            None,
            None,
        )?;
        ee.verify_is_valid_for_subject_name(&ServerName::try_from(ID).unwrap())
    }

    fn summary(pem: &str) -> crate::trust::AnchorSummary {
        // The anchor parser summarises any certificate; unchecked time, CA or not is irrelevant
        // here because we read the summary through the private parser.
        let der = single_block(pem, "CERTIFICATE", "certificate").unwrap();
        crate::trust::anchor::parse(der, crate::trust::anchor::Origin { block: 1, line: 1 })
            .unwrap()
            .anchor
            .summary()
            .clone()
    }

    #[test]
    fn a_leaf_never_outlives_its_issuer() {
        let root = create_trust_anchor(&AnchorOptions::new(now())).unwrap();
        let issuer_opts = IssuerOptions {
            not_after: now() + Duration::from_secs(48 * 3600),
            ..IssuerOptions::new(now())
        };
        let issuer = create_issuer(&root, &issuer_opts).unwrap();
        let long = LeafOptions {
            not_after: now() + Duration::from_secs(365 * 24 * 3600),
            ..LeafOptions::new(now())
        };
        assert_eq!(
            leaf_not_after(&issuer, &long).unwrap(),
            issuer_opts.not_after
        );
        let leaf = issue_leaf(&issuer, ID, &long).unwrap();
        assert_eq!(summary(&leaf.cert_pem).not_after, issuer_opts.not_after);
        // A shorter leaf keeps its own end.
        let short = LeafOptions::new(now());
        assert_eq!(leaf_not_after(&issuer, &short).unwrap(), short.not_after);
        // An expired issuer signs nothing.
        let late = LeafOptions::new(now() + Duration::from_secs(49 * 3600));
        let err = issue_leaf(&issuer, ID, &late).unwrap_err().to_string();
        assert!(err.contains("expired") && err.contains("fix"), "{err}");
    }

    #[test]
    fn defaults_match_linkerd() {
        let a = AnchorOptions::new(now());
        assert_eq!(a.common_name, "root.linkerd.cluster.local");
        assert_eq!(
            a.not_after.duration_since(a.not_before).unwrap(),
            Duration::from_secs(315_360_000)
        );
        let i = IssuerOptions::new(now());
        assert_eq!(i.common_name, "identity.linkerd.cluster.local");
        assert_eq!(
            i.not_after.duration_since(i.not_before).unwrap(),
            Duration::from_secs(8760 * 3600)
        );
        let l = LeafOptions::new(now());
        assert!(l.server_auth && l.client_auth);
        assert_eq!(
            l.not_after.duration_since(l.not_before).unwrap(),
            Duration::from_secs(24 * 3600)
        );
    }

    #[test]
    fn certificates_carry_the_requested_names_and_dates() {
        let c = chain(&LeafOptions::new(now()));
        let root = summary(&c.root.cert_pem);
        assert_eq!(root.subject, "CN=root.linkerd.cluster.local");
        assert_eq!(root.key_algorithm, "ECDSA P-256");
        assert_eq!(root.not_before, now());
        assert_eq!(root.not_after, now() + DEFAULT_ANCHOR_VALIDITY);
        let issuer = summary(&c.issuer.cert_pem);
        assert_eq!(issuer.subject, "CN=identity.linkerd.cluster.local");
        let leaf = summary(&c.leaf.cert_pem);
        assert_eq!(leaf.subject, format!("CN={ID}"));
        assert_eq!(leaf.sans, vec![format!("DNS:{ID}")]);
        assert_eq!(leaf.not_after, now() + DEFAULT_LEAF_VALIDITY);
        assert!(c.leaf.key_pem.starts_with("-----BEGIN PRIVATE KEY-----"));
        assert!(matches!(c.leaf.key_der().unwrap(), PrivateKeyDer::Pkcs8(_)));
    }

    #[test]
    fn issuer_is_a_path_length_zero_ca_and_leaf_is_not_a_ca() {
        let c = chain(&LeafOptions::new(now()));
        let issuer_der = c.issuer.cert_der().unwrap();
        let (_, issuer) = x509_parser::parse_x509_certificate(&issuer_der).unwrap();
        let bc = issuer.basic_constraints().unwrap().unwrap().value;
        assert!(bc.ca);
        assert_eq!(bc.path_len_constraint, Some(0));
        let root_der = c.root.cert_der().unwrap();
        let (_, root) = x509_parser::parse_x509_certificate(&root_der).unwrap();
        assert_eq!(
            root.basic_constraints()
                .unwrap()
                .unwrap()
                .value
                .path_len_constraint,
            None
        );
        let leaf_der = c.leaf.cert_der().unwrap();
        let (_, leaf) = x509_parser::parse_x509_certificate(&leaf_der).unwrap();
        assert!(!leaf.basic_constraints().unwrap().unwrap().value.ca);
        let eku = leaf.extended_key_usage().unwrap().unwrap().value;
        assert!(eku.server_auth && eku.client_auth);
    }

    #[test]
    fn webpki_accepts_the_chain_for_both_usages() {
        let c = chain(&LeafOptions::new(now()));
        let at = now() + Duration::from_secs(3600);
        webpki_verify(&c.root, &[&c.issuer], &c.leaf, at, KeyUsage::server_auth()).unwrap();
        webpki_verify(&c.root, &[&c.issuer], &c.leaf, at, KeyUsage::client_auth()).unwrap();
    }

    #[test]
    fn webpki_rejects_wrong_root_missing_issuer_expiry_and_missing_usage() {
        let c = chain(&LeafOptions {
            server_auth: false,
            ..LeafOptions::new(now())
        });
        let at = now() + Duration::from_secs(60);
        webpki_verify(&c.root, &[&c.issuer], &c.leaf, at, KeyUsage::client_auth()).unwrap();
        assert!(matches!(
            webpki_verify(&c.root, &[&c.issuer], &c.leaf, at, KeyUsage::server_auth()),
            Err(webpki::Error::RequiredEkuNotFoundContext(_))
        ));
        let other = create_trust_anchor(&AnchorOptions::new(now())).unwrap();
        assert!(webpki_verify(&other, &[&c.issuer], &c.leaf, at, KeyUsage::client_auth()).is_err());
        assert!(webpki_verify(&c.root, &[], &c.leaf, at, KeyUsage::client_auth()).is_err());
        let late = now() + DEFAULT_LEAF_VALIDITY + Duration::from_secs(60);
        assert!(matches!(
            webpki_verify(
                &c.root,
                &[&c.issuer],
                &c.leaf,
                late,
                KeyUsage::client_auth()
            ),
            Err(webpki::Error::CertExpired { .. })
        ));
    }

    #[test]
    fn path_length_zero_stops_a_sub_issuer() {
        let c = chain(&LeafOptions::new(now()));
        // A different CN: a self-issued sub-CA (same subject as its issuer) would not count
        // towards the path length (RFC 5280 6.1.4), and openssl rightly accepts it.
        let sub_opts = IssuerOptions {
            common_name: "sub.linkerd.cluster.local".into(),
            ..IssuerOptions::new(now())
        };
        let sub = create_issuer(&c.issuer, &sub_opts).unwrap();
        let leaf = issue_leaf(&sub, ID, &LeafOptions::new(now())).unwrap();
        let at = now() + Duration::from_secs(60);
        assert!(
            webpki_verify(
                &c.root,
                &[&c.issuer, &sub],
                &leaf,
                at,
                KeyUsage::server_auth()
            )
            .is_err()
        );
        let (ok, out) = openssl_verify(&c.root, &[&c.issuer, &sub], &leaf, at, "sslserver");
        assert!(!ok && out.contains("path length"), "{out}");
        // The same sub-issuer directly under the root is fine.
        let sub = create_issuer(&c.root, &sub_opts).unwrap();
        let leaf = issue_leaf(&sub, ID, &LeafOptions::new(now())).unwrap();
        assert!(openssl_verify(&c.root, &[&sub], &leaf, at, "sslserver").0);
    }

    /// Runs `openssl verify`; returns (accepted, output). Panics when openssl cannot run.
    fn openssl_verify(
        root: &CertifiedKey,
        intermediates: &[&CertifiedKey],
        leaf: &CertifiedKey,
        at: SystemTime,
        purpose: &str,
    ) -> (bool, String) {
        let dir = tempfile::tempdir().unwrap();
        let root_path = dir.path().join("root.pem");
        let untrusted_path = dir.path().join("issuer.pem");
        let leaf_path = dir.path().join("leaf.pem");
        std::fs::write(&root_path, &root.cert_pem).unwrap();
        let untrusted: String = intermediates.iter().map(|c| c.cert_pem.as_str()).collect();
        std::fs::write(&untrusted_path, untrusted).unwrap();
        std::fs::write(&leaf_path, &leaf.cert_pem).unwrap();
        let attime = at.duration_since(UNIX_EPOCH).unwrap().as_secs().to_string();
        let output = Command::new("/usr/bin/openssl")
            .args([
                "verify",
                "-x509_strict",
                "-attime",
                &attime,
                "-purpose",
                purpose,
                "-CAfile",
            ])
            .arg(&root_path)
            .arg("-untrusted")
            .arg(&untrusted_path)
            .arg(&leaf_path)
            .output()
            .expect("openssl must be installed at /usr/bin/openssl for this test");
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
        (output.status.success() && text.contains(": OK"), text)
    }

    #[test]
    fn openssl_verify_accepts_the_chain_for_both_purposes() {
        let c = chain(&LeafOptions::new(now()));
        let at = now() + Duration::from_secs(3600);
        for purpose in ["sslserver", "sslclient"] {
            let (ok, out) = openssl_verify(&c.root, &[&c.issuer], &c.leaf, at, purpose);
            assert!(ok, "openssl verify -purpose {purpose} failed: {out}");
        }
    }

    #[test]
    fn openssl_verify_rejects_wrong_root_and_expired_leaf() {
        let c = chain(&LeafOptions::new(now()));
        let other = create_trust_anchor(&AnchorOptions::new(now())).unwrap();
        let at = now() + Duration::from_secs(3600);
        let (ok, out) = openssl_verify(&other, &[&c.issuer], &c.leaf, at, "sslserver");
        assert!(!ok, "{out}");
        let late = now() + DEFAULT_LEAF_VALIDITY + Duration::from_secs(60);
        let (ok, out) = openssl_verify(&c.root, &[&c.issuer], &c.leaf, late, "sslserver");
        assert!(!ok && out.contains("expired"), "{out}");
    }

    #[test]
    fn chain_pem_is_leaf_then_issuer() {
        let c = chain(&LeafOptions::new(now()));
        let chain = c.leaf.chain_pem(&c.issuer);
        assert_eq!(chain, format!("{}{}", c.leaf.cert_pem, c.issuer.cert_pem));
        let no_newline = CertifiedKey {
            cert_pem: c.leaf.cert_pem.trim_end().to_string(),
            key_pem: String::new(),
        };
        assert_eq!(no_newline.chain_pem(&c.issuer), chain);
    }

    #[test]
    fn debug_output_hides_the_private_key() {
        let c = chain(&LeafOptions::new(now()));
        let debug = format!("{:?}", c.leaf);
        assert!(debug.contains("<redacted>") && !debug.contains("PRIVATE KEY"));
    }

    #[test]
    fn signer_must_be_a_ca_with_its_own_key() {
        let c = chain(&LeafOptions::new(now()));
        let err = issue_leaf(&c.leaf, ID, &LeafOptions::new(now())).unwrap_err();
        assert!(
            matches!(&err, Error::PkiSigner { part: "certificate", reason, .. } if reason.contains("is not a CA")),
            "{err:?}"
        );
        let mixed = CertifiedKey {
            cert_pem: c.issuer.cert_pem.clone(),
            key_pem: c.root.key_pem.clone(),
        };
        let err = issue_leaf(&mixed, ID, &LeafOptions::new(now())).unwrap_err();
        assert!(
            matches!(&err, Error::PkiSigner { part: "key", reason, .. } if reason.contains("does not belong")),
            "{err:?}"
        );
        let garbage = CertifiedKey {
            cert_pem: c.issuer.cert_pem.clone(),
            key_pem: "nope".into(),
        };
        let err = issue_leaf(&garbage, ID, &LeafOptions::new(now())).unwrap_err();
        assert!(
            matches!(&err, Error::PkiSigner { part: "key", .. }),
            "{err:?}"
        );
        let no_cert = CertifiedKey {
            cert_pem: String::new(),
            key_pem: c.issuer.key_pem.clone(),
        };
        let err = issue_leaf(&no_cert, ID, &LeafOptions::new(now())).unwrap_err();
        assert_eq!(
            err.to_string(),
            "signer certificate: no \"CERTIFICATE\" PEM block found; fix: pass the PEM text exactly as mc or openssl wrote it"
        );
    }

    #[test]
    fn options_are_validated() {
        let c = chain(&LeafOptions::new(now()));
        let err = issue_leaf(&c.issuer, "not a name", &LeafOptions::new(now())).unwrap_err();
        assert!(matches!(err, Error::InvalidDnsName { .. }), "{err:?}");
        let err = issue_leaf(
            &c.issuer,
            ID,
            &LeafOptions {
                server_auth: false,
                client_auth: false,
                ..LeafOptions::new(now())
            },
        )
        .unwrap_err();
        assert!(err.to_string().contains("enable at least one"), "{err}");
        let err = create_issuer(
            &c.root,
            &IssuerOptions {
                not_after: now(),
                ..IssuerOptions::new(now())
            },
        )
        .unwrap_err();
        assert_eq!(
            err.to_string(),
            "certificate options: IssuerOptions.not_after: 2026-01-01T00:00:00Z is not after \
             not_before 2026-01-01T00:00:00Z; fix: set not_after later than not_before"
        );
        let err = create_trust_anchor(&AnchorOptions {
            common_name: " ".into(),
            ..AnchorOptions::new(now())
        })
        .unwrap_err();
        assert!(
            matches!(
                err,
                Error::PkiOptions {
                    field: "AnchorOptions.common_name",
                    ..
                }
            ),
            "{err:?}"
        );
        let err = create_trust_anchor(&AnchorOptions {
            not_before: UNIX_EPOCH - Duration::from_secs(40 * 365 * 86400),
            ..AnchorOptions::new(now())
        })
        .unwrap_err();
        assert!(
            matches!(
                err,
                Error::PkiOptions {
                    field: "AnchorOptions.not_before",
                    ..
                }
            ),
            "{err:?}"
        );
    }

    /// Converts a PKCS#8 key PEM to SEC1 (`EC PRIVATE KEY`) with openssl, as step writes it.
    fn to_sec1(key_pem: &str) -> String {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("k.pem");
        std::fs::write(&path, key_pem).unwrap();
        let out = Command::new("/usr/bin/openssl")
            .args(["ec", "-in"])
            .arg(&path)
            .output()
            .expect("openssl must be installed at /usr/bin/openssl for this test");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    }

    #[test]
    fn signer_key_may_be_sec1_as_step_writes_it() {
        let c = chain(&LeafOptions::new(now()));
        let sec1 = to_sec1(&c.issuer.key_pem);
        assert!(sec1.starts_with("-----BEGIN EC PRIVATE KEY-----"), "{sec1}");
        let signer = CertifiedKey {
            cert_pem: c.issuer.cert_pem.clone(),
            key_pem: sec1,
        };
        let leaf = issue_leaf(&signer, ID, &LeafOptions::new(now())).unwrap();
        let at = now() + Duration::from_secs(60);
        webpki_verify(&c.root, &[&c.issuer], &leaf, at, KeyUsage::server_auth()).unwrap();
        let encrypted = CertifiedKey {
            cert_pem: c.issuer.cert_pem.clone(),
            key_pem:
                "-----BEGIN ENCRYPTED PRIVATE KEY-----\nAAAA\n-----END ENCRYPTED PRIVATE KEY-----\n"
                    .into(),
        };
        let err = issue_leaf(&encrypted, ID, &LeafOptions::new(now())).unwrap_err();
        assert!(err.to_string().contains("the key is encrypted"), "{err}");
    }

    #[test]
    fn der_lengths_use_the_long_form_above_127() {
        assert_eq!(der_tlv(0x04, &[7; 3]), vec![0x04, 3, 7, 7, 7]);
        let long = der_tlv(0x04, &[0; 200]);
        assert_eq!(&long[..3], &[0x04, 0x81, 200]);
        let longer = der_tlv(0x04, &[0; 300]);
        assert_eq!(&longer[..4], &[0x04, 0x82, 0x01, 0x2C]);
    }

    #[test]
    fn long_identities_get_a_san_but_no_common_name() {
        let c = chain(&LeafOptions::new(now()));
        let long = format!(
            "{}.shop.serviceaccount.identity.linkerd.cluster.local",
            "a".repeat(40)
        );
        let leaf = issue_leaf(&c.issuer, &long, &LeafOptions::new(now())).unwrap();
        let s = summary(&leaf.cert_pem);
        assert_eq!(s.subject, "");
        assert_eq!(s.sans, vec![format!("DNS:{long}")]);
    }
}
