//! The testbed's PKI: one CA that signs the API servers' serving certificates and every client
//! certificate, plus a ServiceAccount signing key per cluster (so a token from one cluster is
//! rejected by the other, as between real clusters).

use std::net::{IpAddr, Ipv4Addr};
use std::path::{Path, PathBuf};

use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DistinguishedName, DnType,
    ExtendedKeyUsagePurpose, IsCa, KeyPair, KeyUsagePurpose, SanType,
};

use crate::{Error, Result};

/// A certificate and key written to disk, also kept as PEM.
#[derive(Debug, Clone)]
pub(crate) struct PemPair {
    pub(crate) cert_pem: String,
    pub(crate) key_pem: String,
    pub(crate) cert_path: PathBuf,
    pub(crate) key_path: PathBuf,
}

/// The testbed CA, able to sign more client certificates later.
pub(crate) struct Pki {
    ca: CertifiedIssuer<'static, KeyPair>,
    pub(crate) ca_path: PathBuf,
}

impl std::fmt::Debug for Pki {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pki")
            .field("ca_path", &self.ca_path)
            .finish_non_exhaustive()
    }
}

impl Pki {
    /// Creates the CA in `dir/ca.crt`.
    pub(crate) fn create(dir: &Path) -> Result<Pki> {
        let mut params = CertificateParams::new(Vec::<String>::new())?;
        params.distinguished_name = name("mc-testbed-ca", &[]);
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        let ca = CertifiedIssuer::self_signed(params, KeyPair::generate()?)?;
        let ca_path = dir.join("ca.crt");
        write(&ca_path, &ca.pem())?;
        Ok(Pki { ca, ca_path })
    }

    /// The CA certificate, PEM.
    pub(crate) fn ca_pem(&self) -> String {
        self.ca.pem()
    }

    /// A serving certificate for 127.0.0.1, localhost, `extra_ips` (the bridge address and the
    /// `kubernetes` Service's ClusterIPs, which Pods dial) and the in-cluster names.
    pub(crate) fn serving(&self, dir: &Path, stem: &str, extra_ips: &[IpAddr]) -> Result<PemPair> {
        let mut params = CertificateParams::new(Vec::<String>::new())?;
        params.distinguished_name = name("kube-apiserver", &[]);
        params.subject_alt_names = vec![SanType::IpAddress(IpAddr::V4(Ipv4Addr::LOCALHOST))];
        params
            .subject_alt_names
            .extend(extra_ips.iter().copied().map(SanType::IpAddress));
        for dns in [
            "localhost",
            "kubernetes",
            "kubernetes.default",
            "kubernetes.default.svc",
            "kubernetes.default.svc.cluster.local",
        ] {
            params
                .subject_alt_names
                .push(SanType::DnsName(dns.try_into()?));
        }
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        self.sign(params, dir, stem)
    }

    /// A client certificate for `user` in `groups` (O= entries), as Kubernetes reads them.
    pub(crate) fn client(
        &self,
        dir: &Path,
        stem: &str,
        user: &str,
        groups: &[&str],
    ) -> Result<PemPair> {
        let mut params = CertificateParams::new(Vec::<String>::new())?;
        params.distinguished_name = name(user, groups);
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        self.sign(params, dir, stem)
    }

    fn sign(&self, mut params: CertificateParams, dir: &Path, stem: &str) -> Result<PemPair> {
        params.key_usages = vec![
            KeyUsagePurpose::DigitalSignature,
            KeyUsagePurpose::KeyEncipherment,
        ];
        let key = KeyPair::generate()?;
        let cert = params.signed_by(&key, &self.ca)?;
        let pair = PemPair {
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
            cert_path: dir.join(format!("{stem}.crt")),
            key_path: dir.join(format!("{stem}.key")),
        };
        write(&pair.cert_path, &pair.cert_pem)?;
        write(&pair.key_path, &pair.key_pem)?;
        Ok(pair)
    }
}

/// A fresh ServiceAccount token signing key (ECDSA P-256): the PKCS#8 private key at
/// `dir/sa.key`, the public key (which the API server verifies tokens with) at `dir/sa.pub`.
pub(crate) fn service_account_key(dir: &Path) -> Result<()> {
    let key = KeyPair::generate()?;
    write(&dir.join("sa.key"), &key.serialize_pem())?;
    write(&dir.join("sa.pub"), &key.public_key_pem())
}

fn name(common_name: &str, organizations: &[&str]) -> DistinguishedName {
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, common_name);
    for org in organizations {
        dn.push(DnType::OrganizationName, *org);
    }
    dn
}

pub(crate) fn write(path: &Path, contents: &str) -> Result<()> {
    std::fs::write(path, contents).map_err(|e| Error::io("write", path.display(), e))
}
