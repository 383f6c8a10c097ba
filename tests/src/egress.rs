//! Identities for runs of a real `mc-gateway serve` and `mc-gateway egress` on loopback: one
//! trust anchor and issuer, a leaf for the gateway and one for the egress, written as files the
//! `--cert`, `--key` and `--trust-anchors` flags read. Shared by the egress end-to-end test and
//! the egress benchmark (`mc-bench-egress`).

use std::ffi::OsString;
use std::path::Path;
use std::time::SystemTime;

use mc_core::egress::EGRESS_NAME;
use mc_core::pki::{
    AnchorOptions, CertifiedKey, IssuerOptions, LeafOptions, create_issuer, create_trust_anchor,
    issue_leaf,
};

use crate::{Error, Result};

/// The identity of the gateway (as a Linkerd gateway's ServiceAccount).
pub const GATEWAY_ID: &str =
    "linkerd-gateway.linkerd-multicluster.serviceaccount.identity.linkerd.cluster.local";

/// The identity of the egress (as its ServiceAccount).
pub fn egress_id() -> String {
    format!("{EGRESS_NAME}.linkerd-multicluster.serviceaccount.identity.linkerd.cluster.local")
}

fn pki_error(e: mc_core::Error) -> Error {
    Error::Format {
        what: "test certificates".to_owned(),
        detail: e.to_string(),
    }
}

/// Writes a trust anchor (`ca.crt`), and leaves for the gateway (`gw`) and the egress
/// (`egress`), into `dir`; returns the issuer.
pub fn write_pki(dir: &Path) -> Result<CertifiedKey> {
    let now = SystemTime::now();
    let root = create_trust_anchor(&AnchorOptions::new(now)).map_err(pki_error)?;
    let issuer = create_issuer(&root, &IssuerOptions::new(now)).map_err(pki_error)?;
    let ca = dir.join("ca.crt");
    std::fs::write(&ca, &root.cert_pem).map_err(|e| Error::io("write", ca.display(), e))?;
    write_leaf(dir, &issuer, "gw", GATEWAY_ID)?;
    write_leaf(dir, &issuer, "egress", &egress_id())?;
    Ok(issuer)
}

/// Issues a leaf for `id` and writes `<stem>.crt` (chain) and `<stem>.key` into `dir`.
pub fn write_leaf(dir: &Path, issuer: &CertifiedKey, stem: &str, id: &str) -> Result<()> {
    let leaf = issue_leaf(issuer, id, &LeafOptions::new(SystemTime::now())).map_err(pki_error)?;
    let (crt, key) = (
        dir.join(format!("{stem}.crt")),
        dir.join(format!("{stem}.key")),
    );
    std::fs::write(&crt, leaf.chain_pem(issuer))
        .map_err(|e| Error::io("write", crt.display(), e))?;
    std::fs::write(&key, &leaf.key_pem).map_err(|e| Error::io("write", key.display(), e))
}

/// `--cert`, `--key` and `--trust-anchors` of the identity `stem` written by [`write_pki`].
pub fn identity_flags(dir: &Path, stem: &str) -> Vec<OsString> {
    let file = |name: String| dir.join(name).into_os_string();
    vec![
        "--cert".into(),
        file(format!("{stem}.crt")),
        "--key".into(),
        file(format!("{stem}.key")),
        "--trust-anchors".into(),
        file("ca.crt".to_owned()),
    ]
}
