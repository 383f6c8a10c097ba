//! Trust-anchor bundles: parse, validate, merge, diff and summarise PEM bundles of root CAs, and
//! read the trust settings of a Linkerd control plane from its `linkerd-config` values.
//!
//! Multicluster traffic works only when both clusters trust a common root: each side's proxies
//! must validate the other side's certificates. [`TrustBundle::shares_anchor`] answers that, and
//! [`TrustBundle::diff`] explains a mismatch.

pub(crate) mod anchor;
mod linkerd_config;
pub(crate) mod pem;

use std::time::{Duration, SystemTime};

use base64::Engine as _;
use rustls_pki_types::CertificateDer;

pub use anchor::{Anchor, AnchorSummary};
pub use linkerd_config::LinkerdConfig;

use crate::{Error, Result};

/// The PEM label of a certificate block.
const CERTIFICATE: &str = "CERTIFICATE";

/// An ordered, duplicate-free, non-empty set of trust anchors (root CA certificates).
///
/// # Example
///
/// ```
/// use std::time::SystemTime;
/// use mc_core::pki::{create_trust_anchor, AnchorOptions};
/// use mc_core::trust::TrustBundle;
///
/// let now = SystemTime::now();
/// let root = create_trust_anchor(&AnchorOptions::new(now))?;
/// // Text around the blocks and duplicates are fine.
/// let pem = format!("my root\n{}\n{}", root.cert_pem, root.cert_pem);
/// let bundle = TrustBundle::from_pem(&pem, now)?;
/// assert_eq!(bundle.anchors().len(), 1);
/// assert_eq!(bundle.anchors()[0].summary().subject, "CN=root.linkerd.cluster.local");
/// # Ok::<(), mc_core::Error>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TrustBundle {
    anchors: Vec<Anchor>,
}

/// The difference between two bundles, from `self` to `other` in [`TrustBundle::diff`].
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct BundleDiff {
    /// Anchors in `other` but not in `self` (in `other`'s order).
    pub added: Vec<Anchor>,
    /// Anchors in `self` but not in `other` (in `self`'s order).
    pub removed: Vec<Anchor>,
    /// Anchors in both (in `self`'s order).
    pub common: Vec<Anchor>,
}

impl BundleDiff {
    /// Whether the two bundles hold the same anchors (order aside).
    pub fn is_empty(&self) -> bool {
        self.added.is_empty() && self.removed.is_empty()
    }
}

impl TrustBundle {
    /// Parses and validates a PEM bundle of one or more root CA certificates.
    ///
    /// Accepts LF or CRLF, blank lines and any text between blocks (as `openssl x509 -text`
    /// writes it). Every block must be a `CERTIFICATE` holding a CA certificate
    /// (basicConstraints CA:TRUE) that is valid at `now`. Duplicates are dropped, the order of
    /// first appearance is kept. Errors name the block number and line, and say how to fix it.
    ///
    /// ```
    /// use std::time::SystemTime;
    /// use mc_core::trust::TrustBundle;
    ///
    /// let err = TrustBundle::from_pem("-----BEGIN PRIVATE KEY-----\n", SystemTime::now()).unwrap_err();
    /// assert!(err.to_string().contains("it is a private key"));
    /// ```
    pub fn from_pem(pem: impl AsRef<[u8]>, now: SystemTime) -> Result<TrustBundle> {
        Self::parse(pem.as_ref(), Some(now))
    }

    /// Like [`TrustBundle::from_pem`] but without the validity-window check, for tools that
    /// must show expired or future anchors (inspect, diff). Everything else is still checked.
    pub fn from_pem_unchecked_time(pem: impl AsRef<[u8]>) -> Result<TrustBundle> {
        Self::parse(pem.as_ref(), None)
    }

    fn parse(input: &[u8], now: Option<SystemTime>) -> Result<TrustBundle> {
        let blocks = pem::scan(input, |label, block, line| {
            if label == CERTIFICATE {
                Ok(())
            } else {
                Err(Error::PemNotCertificate {
                    block,
                    line,
                    label: label.to_string(),
                    advice: pem::advice_for_label(label),
                })
            }
        })?;
        if blocks.is_empty() {
            return Err(Error::PemNoCertificate {
                lines: pem::line_count(input),
                der_hint: der_hint(input),
            });
        }
        let mut anchors: Vec<Anchor> = Vec::with_capacity(blocks.len());
        for block in blocks {
            let origin = anchor::Origin {
                block: block.number,
                line: block.line,
            };
            let parsed = anchor::parse(block.der, origin)?;
            if let Some(why) = parsed.not_ca {
                return Err(Error::NotCa {
                    block: origin.block,
                    line: origin.line,
                    subject: parsed.anchor.summary().subject.clone(),
                    why,
                });
            }
            if let Some(now) = now {
                anchor::check_validity(&parsed.anchor, origin, now)?;
            }
            if !anchors.contains(&parsed.anchor) {
                anchors.push(parsed.anchor);
            }
        }
        Ok(TrustBundle { anchors })
    }

    /// The anchors, in order of first appearance.
    pub fn anchors(&self) -> &[Anchor] {
        &self.anchors
    }

    /// The bundle as PEM: one `CERTIFICATE` block per anchor, 64-column base64, LF endings.
    pub fn to_pem(&self) -> String {
        let mut out = String::new();
        for anchor in &self.anchors {
            out.push_str("-----BEGIN CERTIFICATE-----\n");
            let b64 = base64::engine::general_purpose::STANDARD.encode(anchor.der());
            for chunk in b64.as_bytes().chunks(64) {
                out.push_str(&String::from_utf8_lossy(chunk));
                out.push('\n');
            }
            out.push_str("-----END CERTIFICATE-----\n");
        }
        out
    }

    /// `self`'s anchors followed by those of `other` not already present: what
    /// `cat a.crt b.crt > bundle.crt` should have produced. Idempotent.
    ///
    /// ```
    /// # use std::time::SystemTime;
    /// # use mc_core::pki::{create_trust_anchor, AnchorOptions};
    /// # use mc_core::trust::TrustBundle;
    /// # let now = SystemTime::now();
    /// let old = TrustBundle::from_pem(create_trust_anchor(&AnchorOptions::new(now))?.cert_pem, now)?;
    /// let new = TrustBundle::from_pem(create_trust_anchor(&AnchorOptions::new(now))?.cert_pem, now)?;
    /// let rotation = old.merge(&new);
    /// assert_eq!(rotation.anchors(), [old.anchors(), new.anchors()].concat());
    /// assert_eq!(rotation.merge(&new), rotation);
    /// # Ok::<(), mc_core::Error>(())
    /// ```
    pub fn merge(&self, other: &TrustBundle) -> TrustBundle {
        let mut anchors = self.anchors.clone();
        for anchor in &other.anchors {
            if !anchors.contains(anchor) {
                anchors.push(anchor.clone());
            }
        }
        TrustBundle { anchors }
    }

    /// What changes from `self` to `other`: anchors added, removed and kept.
    pub fn diff(&self, other: &TrustBundle) -> BundleDiff {
        let (common, removed) = self
            .anchors
            .iter()
            .cloned()
            .partition(|a| other.anchors.contains(a));
        let added = other
            .anchors
            .iter()
            .filter(|a| !self.anchors.contains(a))
            .cloned()
            .collect();
        BundleDiff {
            added,
            removed,
            common,
        }
    }

    /// Whether at least one anchor is in both bundles: the condition for mTLS between two
    /// clusters to work (Linkerd's own check demands equal sets, which fails mid-rotation).
    pub fn shares_anchor(&self, other: &TrustBundle) -> bool {
        self.anchors.iter().any(|a| other.anchors.contains(a))
    }

    /// Whether both bundles hold exactly the same anchors, order aside (Linkerd's `check` rule).
    pub fn same_anchors(&self, other: &TrustBundle) -> bool {
        self.diff(other).is_empty()
    }

    /// The anchors as DER, e.g. for `rustls::RootCertStore::add_parsable_certificates`.
    pub fn der_certs(&self) -> Vec<CertificateDer<'static>> {
        self.anchors
            .iter()
            .map(|a| CertificateDer::from(a.der().to_vec()))
            .collect()
    }

    /// The anchors whose validity ends at or before `now + window`, including those already
    /// expired (possible in bundles from [`TrustBundle::from_pem_unchecked_time`]).
    pub fn expiring_within(&self, now: SystemTime, window: Duration) -> Vec<&Anchor> {
        let horizon = now.checked_add(window);
        self.anchors
            .iter()
            .filter(|a| horizon.is_none_or(|h| a.summary().not_after <= h))
            .collect()
    }
}

/// Advice when the input looks like binary DER rather than PEM.
fn der_hint(input: &[u8]) -> &'static str {
    let looks_binary = input.first() == Some(&0x30) && input.iter().any(|b| !b.is_ascii());
    if looks_binary {
        " (the input looks like binary DER: convert it with `openssl x509 -inform der -in ca.der -out ca.pem`)"
    } else {
        ""
    }
}

/// Formats a time as RFC 3339 UTC, as the error messages of this module do.
pub fn format_time(t: SystemTime) -> String {
    anchor::rfc3339(t)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pki::{
        AnchorOptions, CertifiedKey, IssuerOptions, LeafOptions, create_issuer,
        create_trust_anchor, issue_leaf,
    };
    use proptest::prelude::*;
    use std::sync::OnceLock;
    use std::time::UNIX_EPOCH;

    /// 2026-01-01T00:00:00Z.
    fn now() -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(1_767_225_600)
    }

    fn day(n: u64) -> Duration {
        Duration::from_secs(n * 86_400)
    }

    /// Three distinct roots, made once (key generation is the slow part).
    fn roots() -> &'static [CertifiedKey; 3] {
        static ROOTS: OnceLock<[CertifiedKey; 3]> = OnceLock::new();
        ROOTS.get_or_init(|| {
            let make = |cn: &str, days: u64| {
                create_trust_anchor(&AnchorOptions {
                    common_name: cn.to_string(),
                    not_before: now() - day(1),
                    not_after: now() + day(days),
                })
                .unwrap()
            };
            [
                make("a.example", 365),
                make("b.example", 30),
                make("c.example", 3650),
            ]
        })
    }

    fn bundle(certs: &[&CertifiedKey]) -> TrustBundle {
        let pem: String = certs.iter().map(|c| c.cert_pem.as_str()).collect();
        TrustBundle::from_pem(pem, now()).unwrap()
    }

    #[test]
    fn parses_one_and_many_anchors_in_order() {
        let [a, b, c] = roots();
        let one = bundle(&[a]);
        assert_eq!(one.anchors().len(), 1);
        let many = bundle(&[c, a, b]);
        let subjects: Vec<_> = many
            .anchors()
            .iter()
            .map(|x| x.summary().subject.as_str())
            .collect();
        assert_eq!(subjects, ["CN=c.example", "CN=a.example", "CN=b.example"]);
    }

    #[test]
    fn accepts_crlf_and_openssl_text_output_between_blocks() {
        let [a, b, _] = roots();
        let pem = format!(
            "Certificate:\n    Data:\n        Version: 3 (0x2)\n        Subject: CN=a.example\n{}\nsome trailing comment\n\n{}",
            a.cert_pem,
            b.cert_pem.replace('\n', "\r\n")
        );
        let parsed = TrustBundle::from_pem(&pem, now()).unwrap();
        assert_eq!(parsed, bundle(&[a, b]));
    }

    #[test]
    fn duplicates_are_dropped_keeping_first_position() {
        let [a, b, _] = roots();
        let parsed = bundle(&[b, a, b, a]);
        assert_eq!(parsed, bundle(&[b, a]));
    }

    #[test]
    fn to_pem_round_trips_and_is_64_columns() {
        let [a, b, c] = roots();
        let original = bundle(&[a, b, c]);
        let pem = original.to_pem();
        assert_eq!(TrustBundle::from_pem(&pem, now()).unwrap(), original);
        assert!(pem.lines().all(|l| l.len() <= 64));
        assert_eq!(pem.matches("-----BEGIN CERTIFICATE-----\n").count(), 3);
        // Same text as rcgen writes, modulo line endings.
        assert_eq!(
            bundle(&[a]).to_pem().replace("\r\n", "\n"),
            a.cert_pem.replace("\r\n", "\n")
        );
    }

    #[test]
    fn summary_has_fingerprint_algorithm_and_validity() {
        let [a, _, _] = roots();
        let parsed = bundle(&[a]);
        let anchor = &parsed.anchors()[0];
        let s = anchor.summary();
        assert_eq!(s.key_algorithm, "ECDSA P-256");
        assert_eq!(s.not_before, now() - day(1));
        assert_eq!(s.not_after, now() + day(365));
        assert!(s.sans.is_empty());
        assert_eq!(s.sha256_fingerprint.len(), 32 * 3 - 1);
        assert_eq!(s.sha256_fingerprint, anchor::fingerprint(anchor.der()));
        assert!(
            s.sha256_fingerprint
                .bytes()
                .all(|b| b == b':' || b.is_ascii_digit() || (b'A'..=b'F').contains(&b))
        );
    }

    /// `openssl req -x509 -newkey rsa:2048 -subj "/O=example/CN=rsa root" -addext
    /// "subjectAltName=DNS:root.example,IP:10.0.0.1,URI:spiffe://x"`, then `openssl x509 -text`.
    const OPENSSL_TEXT: &str = include_str!("trust/testdata/rsa-root-openssl-text.pem");

    #[test]
    fn reads_openssl_text_output_and_summarises_rsa_and_sans() {
        let bundle = TrustBundle::from_pem_unchecked_time(OPENSSL_TEXT).unwrap();
        let s = bundle.anchors()[0].summary();
        assert_eq!(s.subject, "O=example, CN=rsa root");
        assert_eq!(
            s.sans,
            ["DNS:root.example", "IP:10.0.0.1", "URI:spiffe://x"]
        );
        assert_eq!(s.key_algorithm, "RSA 2048");
        // From `openssl x509 -noout -fingerprint -sha256`.
        assert_eq!(
            s.sha256_fingerprint,
            "58:FF:A4:4F:43:EC:54:31:75:BD:7C:50:C7:42:17:27:FC:B5:34:DF:05:70:57:73:3C:EE:23:DD:35:66:AD:84"
        );
        assert_eq!(format_time(s.not_before), "2026-11-21T05:09:04Z");
        assert_eq!(format_time(s.not_after), "2046-11-16T05:09:04Z");
        // Line numbers count the text before the block.
        let err = TrustBundle::from_pem(OPENSSL_TEXT, now()).unwrap_err();
        assert!(
            err.to_string().starts_with(
                "PEM block 1 (line 61): certificate \"O=example, CN=rsa root\" is not yet valid"
            ),
            "{err}"
        );
    }

    #[test]
    fn fingerprint_matches_openssl() {
        let [a, _, _] = roots();
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a.pem");
        std::fs::write(&path, &a.cert_pem).unwrap();
        let out = std::process::Command::new("/usr/bin/openssl")
            .args(["x509", "-noout", "-fingerprint", "-sha256", "-in"])
            .arg(&path)
            .output()
            .expect("openssl must be installed at /usr/bin/openssl for this test");
        let text = String::from_utf8(out.stdout).unwrap();
        let expected = text.trim().rsplit('=').next().unwrap();
        assert_eq!(
            bundle(&[a]).anchors()[0].summary().sha256_fingerprint,
            expected
        );
    }

    #[test]
    fn der_certs_are_the_anchor_bytes() {
        let [a, b, _] = roots();
        let bundle = bundle(&[a, b]);
        let ders = bundle.der_certs();
        assert_eq!(ders.len(), 2);
        assert_eq!(ders[0].as_ref(), bundle.anchors()[0].der());
        assert_eq!(ders[1].as_ref(), b.cert_der().unwrap().as_ref());
    }

    #[test]
    fn merge_keeps_order_and_dedupes() {
        let [a, b, c] = roots();
        let ab = bundle(&[a, b]);
        let cb = bundle(&[c, b]);
        assert_eq!(ab.merge(&cb), bundle(&[a, b, c]));
        assert_eq!(cb.merge(&ab), bundle(&[c, b, a]));
        assert_eq!(ab.merge(&ab), ab);
    }

    #[test]
    fn diff_and_shares_anchor() {
        let [a, b, c] = roots();
        let ab = bundle(&[a, b]);
        let bc = bundle(&[b, c]);
        let d = ab.diff(&bc);
        assert_eq!(d.added, bundle(&[c]).anchors());
        assert_eq!(d.removed, bundle(&[a]).anchors());
        assert_eq!(d.common, bundle(&[b]).anchors());
        assert!(!d.is_empty());
        assert!(ab.shares_anchor(&bc));
        assert!(!ab.same_anchors(&bc));
        assert!(!bundle(&[a]).shares_anchor(&bundle(&[c])));
        let ba = bundle(&[b, a]);
        assert!(ab.diff(&ba).is_empty());
        assert!(ab.same_anchors(&ba));
    }

    #[test]
    fn expiring_within_lists_anchors_ending_inside_the_window() {
        let [a, b, c] = roots();
        let all = bundle(&[a, b, c]);
        let soon: Vec<_> = all
            .expiring_within(now(), day(60))
            .iter()
            .map(|x| x.summary().subject.clone())
            .collect();
        assert_eq!(soon, ["CN=b.example"]);
        assert_eq!(all.expiring_within(now(), day(400)).len(), 2);
        assert!(all.expiring_within(now(), day(1)).is_empty());
        assert_eq!(all.expiring_within(now(), Duration::MAX).len(), 3);
    }

    // ---- errors: each names the block and line and carries the fix ----

    #[test]
    fn error_no_certificate() {
        let err = TrustBundle::from_pem("hello\nworld\n", now()).unwrap_err();
        assert_eq!(
            err.to_string(),
            "PEM: no certificate found in 3 line(s) of input; fix: provide one or more blocks from \
             \"-----BEGIN CERTIFICATE-----\" to \"-----END CERTIFICATE-----\", e.g. the output of \
             `openssl x509 -in ca.crt`"
        );
        assert!(matches!(
            TrustBundle::from_pem("", now()),
            Err(Error::PemNoCertificate { lines: 0, .. })
        ));
        let der = roots()[0].cert_der().unwrap();
        let err = TrustBundle::from_pem(der.as_ref(), now()).unwrap_err();
        assert!(err.to_string().contains("looks like binary DER"), "{err}");
    }

    #[test]
    fn error_private_key_block() {
        let [a, _, _] = roots();
        let pem = format!("{}\n{}", a.cert_pem, a.key_pem);
        let line = a.cert_pem.lines().count() + 2;
        let err = TrustBundle::from_pem(&pem, now()).unwrap_err();
        assert_eq!(
            err.to_string(),
            format!(
                "PEM block 2 (line {line}): found a \"PRIVATE KEY\" block where only CERTIFICATE \
                 blocks are allowed; it is a private key; fix: remove it, a trust bundle holds only \
                 public CA certificates (and rotate that key if the file was shared)"
            )
        );
        let err =
            TrustBundle::from_pem("-----BEGIN CERTIFICATE REQUEST-----\n", now()).unwrap_err();
        assert!(
            err.to_string().contains("certificate signing request"),
            "{err}"
        );
    }

    #[test]
    fn error_bad_base64() {
        let [a, _, _] = roots();
        let mut lines: Vec<String> = a.cert_pem.lines().map(str::to_string).collect();
        lines[3].replace_range(10..11, "!");
        let pem = format!("intro\n{}", lines.join("\n"));
        let err = TrustBundle::from_pem(&pem, now()).unwrap_err();
        assert_eq!(
            err.to_string(),
            "PEM block 1 (line 5): invalid base64: character '!' at column 11 is not base64; fix: \
             copy the block again without editing it (only A-Z a-z 0-9 + / = are allowed between \
             BEGIN and END)"
        );
    }

    #[test]
    fn error_bad_der() {
        let [a, _, _] = roots();
        let pem = format!(
            "{}-----BEGIN CERTIFICATE-----\naGVsbG8gd29ybGQ=\n-----END CERTIFICATE-----\n",
            a.cert_pem
        );
        let err = TrustBundle::from_pem(&pem, now()).unwrap_err();
        let line = a.cert_pem.lines().count() + 1;
        assert!(
            matches!(&err, Error::CertificateDer { block: 2, line: l, .. } if *l == line),
            "{err:?}"
        );
        assert!(
            err.to_string().contains("not a valid X.509 certificate"),
            "{err}"
        );
        assert!(
            err.to_string()
                .contains("fix: export the certificate again"),
            "{err}"
        );
        // A valid certificate followed by extra bytes inside the same block.
        let mut der = a.cert_der().unwrap().to_vec();
        der.extend_from_slice(&[0, 0]);
        let pem = TrustBundle {
            anchors: vec![Anchor::for_tests(der)],
        }
        .to_pem();
        let err = TrustBundle::from_pem(&pem, now()).unwrap_err();
        assert!(
            err.to_string()
                .contains("2 unexpected byte(s) after the certificate"),
            "{err}"
        );
    }

    #[test]
    fn error_not_a_ca() {
        let [a, _, _] = roots();
        let issuer = create_issuer(a, &IssuerOptions::new(now())).unwrap();
        let leaf = issue_leaf(
            &issuer,
            "w.n.serviceaccount.identity.linkerd.cluster.local",
            &LeafOptions::new(now()),
        )
        .unwrap();
        let pem = format!("{}{}", a.cert_pem, leaf.cert_pem);
        let err = TrustBundle::from_pem(&pem, now()).unwrap_err();
        let line = a.cert_pem.lines().count() + 1;
        assert_eq!(
            err.to_string(),
            format!(
                "PEM block 2 (line {line}): certificate \"CN=w.n.serviceaccount.identity.linkerd.cluster.local\" \
                 is not a CA (basicConstraints CA:FALSE); fix: a trust bundle holds only root CA \
                 certificates (basicConstraints CA:TRUE): use the trust-anchor certificate, not an \
                 issuer key pair's leaf or a workload certificate"
            )
        );
        // An intermediate is a CA and is accepted (some operators anchor on the issuer).
        assert_eq!(
            TrustBundle::from_pem(&issuer.cert_pem, now())
                .unwrap()
                .anchors()
                .len(),
            1
        );
    }

    #[test]
    fn error_expired_and_not_yet_valid_with_dates() {
        let [_, b, _] = roots();
        let later = now() + day(31);
        let err = TrustBundle::from_pem(&b.cert_pem, later).unwrap_err();
        assert_eq!(
            err.to_string(),
            "PEM block 1 (line 1): certificate \"CN=b.example\" is expired at 2026-02-01T00:00:00Z: \
             valid from 2025-12-31T00:00:00Z to 2026-01-31T00:00:00Z; fix: rotate the trust anchor: \
             create a new one, distribute a bundle holding the old and the new anchor, re-issue the \
             issuers, then remove the expired anchor"
        );
        let earlier = now() - day(2);
        let err = TrustBundle::from_pem(&b.cert_pem, earlier).unwrap_err();
        assert!(
            err.to_string().contains(
                "is not yet valid at 2025-12-30T00:00:00Z: valid from 2025-12-31T00:00:00Z"
            ),
            "{err}"
        );
        // Unchecked time shows them.
        let bundle = TrustBundle::from_pem_unchecked_time(&b.cert_pem).unwrap();
        assert_eq!(bundle.expiring_within(later, Duration::ZERO).len(), 1);
        assert!(!bundle.anchors()[0].is_valid_at(later));
        // Unchecked time still checks everything else.
        assert!(matches!(
            TrustBundle::from_pem_unchecked_time("x"),
            Err(Error::PemNoCertificate { .. })
        ));
    }

    #[test]
    fn validity_bounds_are_inclusive() {
        let [_, b, _] = roots();
        assert!(TrustBundle::from_pem(&b.cert_pem, now() - day(1)).is_ok());
        assert!(TrustBundle::from_pem(&b.cert_pem, now() + day(30)).is_ok());
        assert!(
            TrustBundle::from_pem(&b.cert_pem, now() + day(30) + Duration::from_secs(1)).is_err()
        );
    }

    proptest! {
        #[test]
        fn parse_never_panics_on_arbitrary_bytes(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
            let _ = TrustBundle::from_pem(&bytes, now());
            let _ = TrustBundle::from_pem_unchecked_time(&bytes);
        }

        #[test]
        fn parse_never_panics_on_pem_like_text(
            parts in proptest::collection::vec(
                prop_oneof![
                    Just("-----BEGIN CERTIFICATE-----".to_string()),
                    Just("-----END CERTIFICATE-----".to_string()),
                    Just("-----BEGIN PRIVATE KEY-----".to_string()),
                    "[A-Za-z0-9+/=]{0,80}",
                    "[ -~]{0,20}",
                    Just(String::new()),
                ],
                0..20,
            ),
            crlf in any::<bool>(),
        ) {
            let sep = if crlf { "\r\n" } else { "\n" };
            let _ = TrustBundle::from_pem(parts.join(sep), now());
        }

        #[test]
        fn merge_is_idempotent_and_order_keeping(
            left in proptest::collection::vec(0usize..3, 1..6),
            right in proptest::collection::vec(0usize..3, 1..6),
        ) {
            let pick = |idx: &[usize]| bundle(&idx.iter().map(|i| &roots()[*i]).collect::<Vec<_>>());
            let (l, r) = (pick(&left), pick(&right));
            let merged = l.merge(&r);
            // Idempotent.
            prop_assert_eq!(merged.merge(&r), merged.clone());
            prop_assert_eq!(merged.merge(&merged), merged.clone());
            prop_assert_eq!(l.merge(&l), l.clone());
            // Order-keeping: the left bundle is a prefix, the rest follows right's order.
            prop_assert_eq!(&merged.anchors()[..l.anchors().len()], l.anchors());
            let rest: Vec<_> = r.anchors().iter().filter(|a| !l.anchors().contains(a)).cloned().collect();
            prop_assert_eq!(&merged.anchors()[l.anchors().len()..], rest.as_slice());
            // No duplicates.
            for (i, a) in merged.anchors().iter().enumerate() {
                prop_assert!(!merged.anchors()[i + 1..].contains(a));
            }
        }
    }
}
