//! TLS admission, stage 1 of a connection (and the source side's client TLS).
//!
//! TLS for both ends: TLS 1.3 only, ECDSA P-256, ring; client certificates required and
//! verified against the trust-anchor bundle (reloaded on change); the peer identity is the first
//! SAN DNS name of its certificate or, without one, its SPIFFE ID (URI SAN).
//!
//! The process's own leaf certificate ([`ReloadingCert`], used on both the server and the
//! client side) comes from a [`CertSource`]:
//!
//! - file mode: a chain and key from PEM files, re-read when their modification time changes;
//! - issuer mode: a leaf minted in memory for the process's identity, signed by an issuer
//!   (intermediate CA) read from PEM files, valid for the leaf lifetime (never beyond the
//!   issuer's own end), and renewed when [`renewal`] says so: after 2/3 of its lifetime, or at
//!   once when the issuer files change to another issuer.
//!
//! One poll loop per process ([`ReloadingServerConfig::spawn_watch`],
//! [`ReloadingClientConfig::spawn_watch`]) checks the leaf and the anchors, every reload
//! interval or, for short leaves, every sixth of their lifetime ([`poll_interval`]). New
//! handshakes use the new leaf or anchors; open connections keep theirs. The leaf's notAfter
//! and every replacement are recorded in [`crate::metrics::CertMetrics`].

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, SystemTime};

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::server::{ClientHello, ResolvesServerCert, WebPkiClientVerifier};
use rustls::sign::CertifiedKey;
use rustls::{
    ClientConfig, DigitallySignedStruct, DistinguishedName, RootCertStore, ServerConfig,
    SignatureScheme,
};

use crate::metrics::CertMetrics;
use crate::{Error, Result};

/// ALPN protocol for HTTP/2.
pub(crate) const ALPN_H2: &[u8] = b"h2";
/// ALPN protocol for HTTP/1.1.
pub(crate) const ALPN_HTTP11: &[u8] = b"http/1.1";

/// The ring crypto provider, the only one in mc.
pub(crate) fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

fn read(path: &Path, what: &'static str, flag: &'static str) -> Result<Vec<u8>> {
    std::fs::read(path).map_err(|source| Error::ReadFile {
        what,
        flag,
        path: path.to_owned(),
        source,
    })
}

/// Loads a certificate chain and an ECDSA P-256 private key from PEM files.
///
/// `cert` holds the leaf first, then any intermediates; `key` holds one PKCS#8, SEC1 or PKCS#1
/// private key.
pub fn load_certified_key(cert: &Path, key: &Path) -> Result<CertifiedKey> {
    let cert_pem = read(cert, "certificate", "--cert")?;
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(&cert_pem)
        .collect::<std::result::Result<_, _>>()
        .map_err(|e| Error::Pem {
            what: "certificate",
            path: cert.to_owned(),
            why: e.to_string(),
            fix: "provide PEM CERTIFICATE blocks, leaf first",
        })?;
    if chain.is_empty() {
        return Err(Error::Pem {
            what: "certificate",
            path: cert.to_owned(),
            why: "no CERTIFICATE block".into(),
            fix: "provide PEM CERTIFICATE blocks, leaf first",
        });
    }
    let key_pem = read(key, "private key", "--key")?;
    let key_der = PrivateKeyDer::from_pem_slice(&key_pem).map_err(|e| Error::Pem {
        what: "private key",
        path: key.to_owned(),
        why: e.to_string(),
        fix: "provide one PEM PRIVATE KEY (PKCS#8) or EC PRIVATE KEY block",
    })?;
    let signing = rustls::crypto::ring::sign::any_ecdsa_type(&key_der).map_err(|e| Error::Pem {
        what: "private key",
        path: key.to_owned(),
        why: format!("not an ECDSA key: {e}"),
        fix: "use an ECDSA P-256 key, e.g. `openssl ecparam -name prime256v1 -genkey`",
    })?;
    if signing
        .choose_scheme(&[SignatureScheme::ECDSA_NISTP256_SHA256])
        .is_none()
    {
        return Err(Error::Pem {
            what: "private key",
            path: key.to_owned(),
            why: "the ECDSA key is not on curve P-256".into(),
            fix: "use an ECDSA P-256 (prime256v1) key",
        });
    }
    let certified = CertifiedKey::new(chain, signing);
    certified.keys_match().map_err(|e| Error::Pem {
        what: "private key",
        path: key.to_owned(),
        why: format!("does not match the certificate {}: {e}", cert.display()),
        fix: "pass the key that belongs to the certificate",
    })?;
    Ok(certified)
}

/// Loads the trust-anchor bundle and turns it into a root store.
pub(crate) fn load_roots(path: &Path) -> Result<RootCertStore> {
    let pem = read(path, "trust anchors", "--trust-anchors")?;
    roots_from_pem(path, &pem)
}

/// Parses a trust-anchor bundle read from `path` into a root store.
fn roots_from_pem(path: &Path, pem: &[u8]) -> Result<RootCertStore> {
    let bundle =
        mc_core::trust::TrustBundle::from_pem(pem, SystemTime::now()).map_err(|source| {
            Error::TrustBundle {
                path: path.to_owned(),
                source: Box::new(source),
            }
        })?;
    let mut roots = RootCertStore::empty();
    for der in bundle.der_certs() {
        roots.add(der)?;
    }
    Ok(roots)
}

/// The identity of a DER certificate's holder: its first SAN DNS name (a Linkerd identity)
/// or, when it has none, its SPIFFE ID (`spiffe://<trust-domain>/<path>` as a URI SAN, what
/// proxies with SPIRE-issued certificates present).
pub fn identity_of(cert: &CertificateDer<'_>) -> Option<String> {
    let ee = webpki::EndEntityCert::try_from(cert).ok()?;
    ee.valid_dns_names()
        .next()
        .map(str::to_owned)
        .or_else(|| mc_core::identity::spiffe_id_of_certificate(cert))
}

/// Runs `poll` every `every` (missed ticks are not caught up) until the task is aborted.
pub(crate) fn spawn_poll(
    every: Duration,
    poll: impl Fn() + Send + 'static,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(every);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            poll();
        }
    })
}

/// Where the leaf certificate comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CertSource {
    /// File mode: a certificate chain (leaf first) and its key, renewed on disk by someone
    /// else (`mc` once a year, cert-manager, ...) and re-read when they change.
    Files {
        /// The PEM certificate chain (`--cert`).
        cert: PathBuf,
        /// The PEM ECDSA P-256 key (`--key`).
        key: PathBuf,
    },
    /// Issuer mode: the process mints its own short-lived leaf in memory, signed by an issuer
    /// (intermediate CA) read from files, and renews it before it expires.
    Issuer(IssuerSource),
}

/// The issuer and the leaf to mint in issuer mode ([`CertSource::Issuer`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IssuerSource {
    /// The PEM issuer certificate (`--issuer-cert`), re-read when it changes.
    pub cert: PathBuf,
    /// The PEM issuer private key (`--issuer-key`), re-read when it changes.
    pub key: PathBuf,
    /// The identity the leaf is minted for (its SAN DNS name).
    pub identity: String,
    /// How long a leaf is valid from its issuance (`--leaf-lifetime`); shortened to the
    /// issuer's own end when the issuer expires sooner.
    pub lifetime: Duration,
}

/// How far back a minted leaf's notBefore is set, at most, so that a peer whose clock is a
/// little behind already accepts it: a quarter of the lifetime, capped at this.
pub(crate) const CLOCK_SKEW_ALLOWANCE: Duration = Duration::from_secs(10);

/// What to do with the leaf in service, from [`renewal`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Renewal {
    /// Mint a new leaf now.
    Now,
    /// Keep the leaf; renew it at this time (or earlier, when the issuer changes).
    At(SystemTime),
    /// Keep the leaf: it already ends when its issuer does, so a new one from the same issuer
    /// would end at the same time. Renew when the issuer files change.
    AwaitIssuer,
}

/// When to renew a leaf valid from `not_before` to `not_after`, signed by an issuer valid
/// until `issuer_not_after`: at once when the issuer changed; otherwise once 2/3 of the
/// leaf's lifetime (notBefore to notAfter) has passed, unless the leaf already ends with its
/// issuer; at once, too, when its validity is empty.
pub(crate) fn renewal(
    now: SystemTime,
    not_before: SystemTime,
    not_after: SystemTime,
    issuer_not_after: SystemTime,
    issuer_changed: bool,
) -> Renewal {
    if issuer_changed {
        return Renewal::Now;
    }
    if not_after <= not_before {
        return Renewal::Now;
    }
    if not_after >= issuer_not_after {
        return Renewal::AwaitIssuer;
    }
    let lifetime = not_after.duration_since(not_before).unwrap_or_default();
    let at = not_before + lifetime * 2 / 3;
    if now >= at {
        Renewal::Now
    } else {
        Renewal::At(at)
    }
}

/// How often to poll the files and the leaf: every `reload_interval`, or every sixth of
/// `leaf_lifetime` when a third of it (the renewal margin) is shorter than that, so that a
/// renewal is never missed by more than half the margin.
pub(crate) fn poll_interval(
    reload_interval: Duration,
    leaf_lifetime: Option<Duration>,
) -> Duration {
    match leaf_lifetime {
        Some(lifetime) if lifetime / 3 < reload_interval => {
            (lifetime / 6).max(Duration::from_millis(10))
        }
        _ => reload_interval,
    }
}

/// The validity of a DER certificate: (notBefore, notAfter).
fn validity_of(der: &[u8]) -> Option<(SystemTime, SystemTime)> {
    let (_, cert) = x509_parser::parse_x509_certificate(der).ok()?;
    let at = |t: x509_parser::time::ASN1Time| {
        let secs = t.timestamp();
        let unsigned = Duration::from_secs(secs.unsigned_abs());
        if secs >= 0 {
            SystemTime::UNIX_EPOCH.checked_add(unsigned)
        } else {
            SystemTime::UNIX_EPOCH.checked_sub(unsigned)
        }
    };
    Some((
        at(cert.validity().not_before)?,
        at(cert.validity().not_after)?,
    ))
}

/// The serial number of a DER certificate, hex with colons.
fn serial_of(der: &[u8]) -> String {
    x509_parser::parse_x509_certificate(der)
        .map(|(_, c)| c.raw_serial_as_string())
        .unwrap_or_default()
}

/// Unix seconds of `t` (0 before the epoch), for the expiry gauge.
fn unix_seconds(t: SystemTime) -> i64 {
    t.duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
}

/// An issuer read from its files.
#[derive(Debug, Clone)]
struct Issuer {
    key: mc_core::pki::CertifiedKey,
    not_after: SystemTime,
}

impl Issuer {
    fn read(source: &IssuerSource) -> Result<Self> {
        let text = |path: &Path, what, flag| {
            read(path, what, flag).map(|b| String::from_utf8_lossy(&b).into_owned())
        };
        let key = mc_core::pki::CertifiedKey {
            cert_pem: text(&source.cert, "issuer certificate", "--issuer-cert")?,
            key_pem: text(&source.key, "issuer private key", "--issuer-key")?,
        };
        let not_after = mc_core::pki::not_after_of(&key).map_err(|e| issuer_error(source, e))?;
        Ok(Self { key, not_after })
    }
}

fn issuer_error(source: &IssuerSource, e: mc_core::Error) -> Error {
    Error::Issuer {
        cert: source.cert.clone(),
        key: source.key.clone(),
        source: Box::new(e),
    }
}

/// A leaf in service and what it was made from.
#[derive(Debug, Clone)]
struct Leaf {
    not_before: SystemTime,
    not_after: SystemTime,
    /// Issuer mode: the issuer that signed it.
    issuer: Option<Issuer>,
}

/// A leaf minted from `issuer` for `source.identity`, valid from a little before `now` (see
/// [`CLOCK_SKEW_ALLOWANCE`]) for `source.lifetime`, or until the issuer ends if sooner (logged
/// as a warning). The chain is the leaf, then the issuer.
fn mint(source: &IssuerSource, issuer: &Issuer, now: SystemTime) -> Result<(CertifiedKey, Leaf)> {
    let mut opts = mc_core::pki::LeafOptions::new(now);
    opts.not_after = now.checked_add(source.lifetime).unwrap_or(now);
    let fail = |e| issuer_error(source, e);
    // Checked from `now`, not from the backdated start: an expired issuer signs nothing.
    let not_after = mc_core::pki::leaf_not_after(&issuer.key, &opts).map_err(fail)?;
    let backdate = (source.lifetime / 4).min(CLOCK_SKEW_ALLOWANCE);
    opts.not_before = now.checked_sub(backdate).unwrap_or(now);
    if not_after < opts.not_after {
        tracing::warn!(
            identity = %source.identity,
            requested_not_after = %mc_core::trust::format_time(opts.not_after),
            issuer_not_after = %mc_core::trust::format_time(not_after),
            "the issuer expires before the leaf would: the leaf ends with it; renew the issuer"
        );
    }
    let leaf = mc_core::pki::issue_leaf(&issuer.key, &source.identity, &opts).map_err(fail)?;
    let chain_pem = leaf.chain_pem(&issuer.key);
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(chain_pem.as_bytes())
        .collect::<std::result::Result<_, _>>()
        .map_err(|e| Error::Pem {
            what: "issuer certificate",
            path: source.cert.clone(),
            why: e.to_string(),
            fix: "provide the issuer as PEM CERTIFICATE blocks, e.g. from `mc issuer create`",
        })?;
    let key_der = leaf.key_der().map_err(fail)?;
    let signing = rustls::crypto::ring::sign::any_ecdsa_type(&key_der)?;
    let validity = Leaf {
        not_before: opts.not_before,
        not_after,
        issuer: Some(issuer.clone()),
    };
    Ok((CertifiedKey::new(chain, signing), validity))
}

/// The mutable part of a [`ReloadingCert`].
#[derive(Debug)]
struct State {
    /// Modification times of the source's two files when last read.
    stamp: (Option<SystemTime>, Option<SystemTime>),
    leaf: Leaf,
}

/// A certificate resolver (server and client side) whose leaf is replaced when it must be:
/// in file mode when the files change, in issuer mode when the leaf is due for renewal
/// ([`renewal`]) or the issuer files change.
///
/// New handshakes use the new certificate; established connections are not touched. The
/// leaf's notAfter and each replacement are recorded in [`CertMetrics`].
#[derive(Debug)]
pub struct ReloadingCert {
    source: CertSource,
    current: RwLock<Arc<CertifiedKey>>,
    state: Mutex<State>,
    metrics: CertMetrics,
}

fn mtime(path: &Path) -> Option<SystemTime> {
    std::fs::metadata(path).and_then(|m| m.modified()).ok()
}

impl ReloadingCert {
    /// File mode: loads the certificate and key once; fails when they are invalid. Its
    /// metrics are not registered anywhere (see [`Self::new`]).
    pub fn load(cert_path: &Path, key_path: &Path) -> Result<Arc<Self>> {
        let source = CertSource::Files {
            cert: cert_path.to_owned(),
            key: key_path.to_owned(),
        };
        Self::new(source, CertMetrics::default())
    }

    /// Loads the leaf from `source` (file mode) or mints the first one (issuer mode); fails
    /// when the files are invalid or the issuer cannot sign. `metrics` get the leaf's expiry
    /// and count its replacements.
    pub fn new(source: CertSource, metrics: CertMetrics) -> Result<Arc<Self>> {
        let (paths, now) = (Self::paths(&source), SystemTime::now());
        let stamp = (mtime(paths.0), mtime(paths.1));
        let (key, leaf) = match &source {
            CertSource::Files { cert, key } => Self::read_files(cert, key)?,
            CertSource::Issuer(issuer) => {
                let (key, leaf) = mint(issuer, &Issuer::read(issuer)?, now)?;
                Self::log_minted("leaf certificate issued", issuer, &key, &leaf);
                (key, leaf)
            }
        };
        metrics.expiry.set(unix_seconds(leaf.not_after));
        Ok(Arc::new(Self {
            source,
            current: RwLock::new(Arc::new(key)),
            state: Mutex::new(State { stamp, leaf }),
            metrics,
        }))
    }

    /// The two files the source is read from.
    fn paths(source: &CertSource) -> (&Path, &Path) {
        match source {
            CertSource::Files { cert, key } => (cert, key),
            CertSource::Issuer(issuer) => (&issuer.cert, &issuer.key),
        }
    }

    fn read_files(cert: &Path, key: &Path) -> Result<(CertifiedKey, Leaf)> {
        let certified = load_certified_key(cert, key)?;
        let (not_before, not_after) =
            validity_of(&certified.cert[0]).ok_or_else(|| Error::Pem {
                what: "certificate",
                path: cert.to_owned(),
                why: "the leaf certificate cannot be parsed for its validity".into(),
                fix: "provide a valid X.509 leaf certificate first",
            })?;
        let leaf = Leaf {
            not_before,
            not_after,
            issuer: None,
        };
        Ok((certified, leaf))
    }

    fn log_minted(message: &str, source: &IssuerSource, key: &CertifiedKey, leaf: &Leaf) {
        tracing::info!(
            identity = %source.identity,
            serial = %key.cert.first().map(|c| serial_of(c)).unwrap_or_default(),
            not_after = %mc_core::trust::format_time(leaf.not_after),
            "{message}"
        );
    }

    /// The certificate served now.
    pub fn current(&self) -> Arc<CertifiedKey> {
        match self.current.read() {
            Ok(guard) => guard.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }

    /// The notAfter of the leaf in service.
    pub fn not_after(&self) -> SystemTime {
        self.lock().leaf.not_after
    }

    /// The poll interval for `reload_interval`: shorter in issuer mode when the leaves are
    /// short-lived (see [`poll_interval`]).
    pub fn poll_interval(&self, reload_interval: Duration) -> Duration {
        let lifetime = match &self.source {
            CertSource::Files { .. } => None,
            CertSource::Issuer(issuer) => Some(issuer.lifetime),
        };
        poll_interval(reload_interval, lifetime)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Replaces the leaf when it must be (see the type's documentation), as of now. Returns
    /// `Ok(true)` when a new certificate is now served; on error the previous one stays.
    pub fn reload_if_changed(&self) -> Result<bool> {
        self.poll_at(SystemTime::now())
    }

    /// [`Self::reload_if_changed`] as of `now`.
    pub fn poll_at(&self, now: SystemTime) -> Result<bool> {
        let mut state = self.lock();
        let (a, b) = Self::paths(&self.source);
        let stamp = (mtime(a), mtime(b));
        let touched = stamp != state.stamp;
        let (key, leaf) = match &self.source {
            CertSource::Files { cert, key } => {
                if !touched {
                    return Ok(false);
                }
                Self::read_files(cert, key)?
            }
            CertSource::Issuer(source) => {
                let mut issuer = state.leaf.issuer.clone();
                let mut changed = false;
                if touched || issuer.is_none() {
                    let read = Issuer::read(source)?;
                    changed = issuer.as_ref().is_none_or(|old| old.key != read.key);
                    issuer = Some(read);
                }
                let Some(issuer) = issuer else {
                    return Ok(false);
                };
                let leaf = &state.leaf;
                match renewal(
                    now,
                    leaf.not_before,
                    leaf.not_after,
                    issuer.not_after,
                    changed,
                ) {
                    Renewal::Now => {}
                    Renewal::At(_) | Renewal::AwaitIssuer => {
                        state.stamp = stamp;
                        return Ok(false);
                    }
                }
                let (key, leaf) = mint(source, &issuer, now)?;
                let why = if changed {
                    "leaf certificate renewed: new issuer"
                } else {
                    "leaf certificate renewed"
                };
                Self::log_minted(why, source, &key, &leaf);
                (key, leaf)
            }
        };
        if let Ok(mut cur) = self.current.write() {
            *cur = Arc::new(key);
        }
        self.metrics.expiry.set(unix_seconds(leaf.not_after));
        self.metrics.renewals.inc();
        *state = State { stamp, leaf };
        Ok(true)
    }

    /// Polls every `every` (see [`Self::poll_interval`]) until the returned task is aborted.
    pub fn spawn_watch(self: &Arc<Self>, every: Duration) -> tokio::task::JoinHandle<()> {
        let this = Arc::clone(self);
        spawn_poll(self.poll_interval(every), move || this.reload_logged())
    }

    /// [`Self::reload_if_changed`], logging the outcome.
    fn reload_logged(&self) {
        match self.reload_if_changed() {
            Ok(true) => {
                if let CertSource::Files { cert, .. } = &self.source {
                    tracing::info!(cert = %cert.display(), "certificate reloaded")
                }
            }
            Ok(false) => {}
            Err(e) => {
                tracing::warn!(error = %e, "certificate renewal failed; keeping the previous one")
            }
        }
    }
}

impl ResolvesServerCert for ReloadingCert {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.current())
    }
}

/// The gateway's server TLS configuration, rebuilt when the trust-anchor bundle changes.
///
/// The certificate is a [`ReloadingCert`] (swapped inside the configuration); the anchors are
/// compared by content on every poll, and a changed, valid bundle yields a new configuration.
/// New handshakes use the configuration current at accept time; established connections keep
/// the one they were accepted with. An invalid bundle keeps the previous configuration.
///
/// It holds the admin port's configuration too ([`Self::current_admin`]), built from the same
/// certificate and anchors and reloaded with them.
#[derive(Debug)]
pub(crate) struct ReloadingServerConfig(Reloading<Configs>);

/// TLS configurations built from a [`ReloadingCert`] and a trust-anchor bundle file, rebuilt
/// when the bundle's content changes (the certificate is swapped inside them).
#[derive(Debug)]
struct Reloading<C> {
    cert: Arc<ReloadingCert>,
    anchors_path: PathBuf,
    anchors_pem: RwLock<Vec<u8>>,
    current: RwLock<C>,
    build: fn(&Arc<ReloadingCert>, RootCertStore) -> Result<C>,
}

impl<C: Clone> Reloading<C> {
    /// Reads the bundle at `anchors` and builds the configuration around `cert`.
    fn load(
        cert: Arc<ReloadingCert>,
        anchors: &Path,
        build: fn(&Arc<ReloadingCert>, RootCertStore) -> Result<C>,
    ) -> Result<Self> {
        let pem = read(anchors, "trust anchors", "--trust-anchors")?;
        let config = build(&cert, roots_from_pem(anchors, &pem)?)?;
        Ok(Self {
            cert,
            anchors_path: anchors.to_owned(),
            anchors_pem: RwLock::new(pem),
            current: RwLock::new(config),
            build,
        })
    }

    fn current(&self) -> C {
        match self.current.read() {
            Ok(guard) => guard.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }

    /// Rebuilds the configuration when the bundle's content changed. Returns `Ok(true)` when
    /// it was rebuilt; on error the previous one stays.
    fn reload_anchors_if_changed(&self) -> Result<bool> {
        let pem = read(&self.anchors_path, "trust anchors", "--trust-anchors")?;
        let same = match self.anchors_pem.read() {
            Ok(old) => *old == pem,
            Err(poisoned) => *poisoned.into_inner() == pem,
        };
        if same {
            return Ok(false);
        }
        let config = (self.build)(&self.cert, roots_from_pem(&self.anchors_path, &pem)?)?;
        if let Ok(mut cur) = self.current.write() {
            *cur = config;
        }
        if let Ok(mut old) = self.anchors_pem.write() {
            *old = pem;
        }
        Ok(true)
    }

    /// One poll: the certificate and key, then the anchors, each logged.
    fn poll(&self) {
        self.cert.reload_logged();
        match self.reload_anchors_if_changed() {
            Ok(true) => {
                tracing::info!(anchors = %self.anchors_path.display(), "trust anchors reloaded")
            }
            Ok(false) => {}
            Err(e) => {
                tracing::warn!(error = %e, "trust-anchor reload failed; keeping the previous bundle")
            }
        }
    }
}

/// The data port's and the admin port's configurations, and the client configuration of
/// meshed backends, built together from one certificate and one anchor bundle.
#[derive(Debug, Clone)]
struct Configs {
    data: Arc<ServerConfig>,
    admin: Arc<ServerConfig>,
    backend: Arc<ClientConfig>,
}

impl Configs {
    fn new(data: ServerConfig, backend: ClientConfig) -> Self {
        let admin = Arc::new(admin_config(&data));
        Self {
            data: Arc::new(data),
            admin,
            backend: Arc::new(backend),
        }
    }
}

/// The admin port's configuration: the data port's (certificate, client verification,
/// TLS 1.3) with ALPN `h2` and `http/1.1` only, since no transport header is read there.
fn admin_config(data: &ServerConfig) -> ServerConfig {
    let mut admin = data.clone();
    admin.alpn_protocols = vec![ALPN_H2.to_vec(), ALPN_HTTP11.to_vec()];
    admin
}

impl ReloadingServerConfig {
    /// Loads the trust-anchor bundle at `anchors` and builds the configuration around `cert`.
    pub(crate) fn load(cert: Arc<ReloadingCert>, anchors: &Path) -> Result<Arc<Self>> {
        let build = |cert: &Arc<ReloadingCert>, roots: RootCertStore| {
            let backend = backend_client_config(cert.clone(), roots.clone())?;
            Ok(Configs::new(server_config(cert.clone(), roots)?, backend))
        };
        Ok(Arc::new(Self(Reloading::load(cert, anchors, build)?)))
    }

    /// The configuration for a new handshake.
    pub(crate) fn current(&self) -> Arc<ServerConfig> {
        self.0.current().data
    }

    /// The configuration for a new handshake on the admin port: the same certificate and
    /// client verification, ALPN `h2` and `http/1.1`.
    pub(crate) fn current_admin(&self) -> Arc<ServerConfig> {
        self.0.current().admin
    }

    /// The client configuration for a new connection to a meshed backend: the gateway's own
    /// certificate, the backend verified against the same anchors.
    pub(crate) fn current_backend(&self) -> Arc<ClientConfig> {
        self.0.current().backend
    }

    /// Rebuilds the configuration when the bundle's content changed. Returns `Ok(true)` when
    /// new handshakes now verify against the new bundle; on error the previous one stays.
    #[cfg(test)]
    fn reload_anchors_if_changed(&self) -> Result<bool> {
        self.0.reload_anchors_if_changed()
    }

    /// Polls the certificate (see [`ReloadingCert::poll_interval`]) and the anchor file every
    /// `every` until the returned task is aborted.
    pub(crate) fn spawn_watch(self: &Arc<Self>, every: Duration) -> tokio::task::JoinHandle<()> {
        let this = Arc::clone(self);
        spawn_poll(self.0.cert.poll_interval(every), move || this.0.poll())
    }
}

/// The client configuration of the egress, whose certificate and trust anchors renew on disk.
///
/// The certificate is a [`ReloadingCert`] (swapped inside the configuration); a changed, valid
/// anchor bundle yields a new configuration. New connections use the configuration current
/// when they start; an invalid file keeps the previous one.
#[derive(Debug)]
pub struct ReloadingClientConfig(Reloading<Arc<ClientConfig>>);

impl ReloadingClientConfig {
    /// Loads the certificate, key and trust-anchor files once; fails when they are invalid.
    pub fn load(cert: &Path, key: &Path, anchors: &Path) -> Result<Arc<Self>> {
        Self::with_cert(ReloadingCert::load(cert, key)?, anchors)
    }

    /// Loads the trust-anchor file and builds the configuration around `cert`, which it
    /// offers as client certificate (file or issuer mode).
    pub fn with_cert(cert: Arc<ReloadingCert>, anchors: &Path) -> Result<Arc<Self>> {
        let build = |cert: &Arc<ReloadingCert>, roots| {
            Ok(Arc::new(client_config_with(
                ClientCert::Reloading(cert.clone()),
                roots,
            )?))
        };
        Ok(Arc::new(Self(Reloading::load(cert, anchors, build)?)))
    }

    /// The client certificate offered.
    pub fn cert(&self) -> &Arc<ReloadingCert> {
        &self.0.cert
    }

    /// The configuration for a new connection.
    pub fn current(&self) -> Arc<ClientConfig> {
        self.0.current()
    }

    /// Polls the certificate (see [`ReloadingCert::poll_interval`]) and the anchor file every
    /// `every` until the returned task is aborted.
    pub fn spawn_watch(self: &Arc<Self>, every: Duration) -> tokio::task::JoinHandle<()> {
        let this = Arc::clone(self);
        spawn_poll(self.0.cert.poll_interval(every), move || this.0.poll())
    }
}

/// A client verifier that chains to the anchors (webpki) and also requires the certificate to
/// name the clientAuth extended key usage explicitly (webpki accepts a certificate without any
/// EKU extension).
#[derive(Debug)]
struct StrictClientVerifier {
    inner: Arc<dyn ClientCertVerifier>,
}

/// Whether the certificate carries an extendedKeyUsage extension listing clientAuth.
fn has_client_auth_eku(cert: &[u8]) -> bool {
    let Ok((_, parsed)) = x509_parser::parse_x509_certificate(cert) else {
        return false;
    };
    matches!(parsed.extended_key_usage(), Ok(Some(eku)) if eku.value.client_auth)
}

impl ClientCertVerifier for StrictClientVerifier {
    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        self.inner.root_hint_subjects()
    }

    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        now: UnixTime,
    ) -> std::result::Result<ClientCertVerified, rustls::Error> {
        let ok = self
            .inner
            .verify_client_cert(end_entity, intermediates, now)?;
        if !has_client_auth_eku(end_entity) {
            return Err(rustls::Error::InvalidCertificate(
                rustls::CertificateError::InvalidPurpose,
            ));
        }
        Ok(ok)
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> std::result::Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> std::result::Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.inner.supported_verify_schemes()
    }
}

/// Builds the gateway's server configuration: TLS 1.3 only, client certificates required and
/// verified against `roots` (clientAuth EKU required), ALPN `transport.l5d.io/v1`, `h2`,
/// `http/1.1`.
pub(crate) fn server_config(
    cert: Arc<dyn ResolvesServerCert>,
    roots: RootCertStore,
) -> Result<ServerConfig> {
    let provider = provider();
    let inner =
        WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider.clone()).build()?;
    let verifier = Arc::new(StrictClientVerifier { inner });
    let mut config = ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13])?
        .with_client_cert_verifier(verifier)
        .with_cert_resolver(cert);
    config.alpn_protocols = vec![
        mc_core::transport::ALPN.to_vec(),
        ALPN_H2.to_vec(),
        ALPN_HTTP11.to_vec(),
    ];
    // The gateway terminates short-lived and long-lived connections alike; resumption is not
    // needed for correctness, and tickets would be another key to manage.
    config.send_tls13_tickets = 0;
    Ok(config)
}

/// Builds the client configuration used to reach a gateway: TLS 1.3, the given client
/// certificate, the gateway verified against `roots` under the server name passed at connect
/// time (the expected gateway identity), ALPN `transport.l5d.io/v1`.
pub(crate) fn client_config(cert: &CertifiedKey, roots: RootCertStore) -> Result<ClientConfig> {
    client_config_with(ClientCert::Fixed(Arc::new(cert.clone())), roots)
}

/// [`client_config`] with the client certificate chosen by `resolver` at each handshake.
fn client_config_with(cert: ClientCert, roots: RootCertStore) -> Result<ClientConfig> {
    let resolver = Arc::new(cert);
    let provider = provider();
    let verifier = rustls::client::WebPkiServerVerifier::builder_with_provider(
        Arc::new(roots),
        provider.clone(),
    )
    .build()?;
    let mut config = ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13])?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(LoggingServerVerifier { inner: verifier }))
        .with_client_cert_resolver(resolver);
    config.alpn_protocols = vec![mc_core::transport::ALPN.to_vec()];
    Ok(config)
}

/// The client configuration of meshed backends (`crate::backend`): TLS 1.3, the gateway's own
/// certificate as client certificate (the backend's proxy sees the gateway's identity), the
/// backend verified against `roots` under its identity, and no ALPN (a meshed client offers
/// none to an ordinary inbound port).
fn backend_client_config(cert: Arc<ReloadingCert>, roots: RootCertStore) -> Result<ClientConfig> {
    let mut config = client_config_with(ClientCert::Reloading(cert), roots)?;
    config.alpn_protocols.clear();
    Ok(config)
}

/// The server name to verify a gateway under: its identity.
pub(crate) fn server_name(identity: &str) -> Result<ServerName<'static>> {
    ServerName::try_from(identity.to_owned()).map_err(|e| Error::InvalidArg {
        flag: "--gateway-identity",
        value: identity.to_owned(),
        why: e.to_string(),
        fix: "a DNS-like identity, e.g. linkerd-gateway.linkerd-multicluster.serviceaccount.identity.linkerd.cluster.local",
    })
}

/// The client certificate offered at each handshake.
#[derive(Debug)]
enum ClientCert {
    /// Always the same one.
    Fixed(Arc<CertifiedKey>),
    /// The current one of certificate files that renew on disk.
    Reloading(Arc<ReloadingCert>),
}

impl rustls::client::ResolvesClientCert for ClientCert {
    fn resolve(
        &self,
        _root_hint_subjects: &[&[u8]],
        _sigschemes: &[SignatureScheme],
    ) -> Option<Arc<CertifiedKey>> {
        Some(match self {
            ClientCert::Fixed(key) => key.clone(),
            ClientCert::Reloading(cert) => cert.current(),
        })
    }

    fn has_certs(&self) -> bool {
        true
    }
}

/// The standard webpki server verifier, with a log line that names the identity presented
/// when it is not the expected one.
#[derive(Debug)]
struct LoggingServerVerifier {
    inner: Arc<rustls::client::WebPkiServerVerifier>,
}

impl ServerCertVerifier for LoggingServerVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> std::result::Result<ServerCertVerified, rustls::Error> {
        let result = self.inner.verify_server_cert(
            end_entity,
            intermediates,
            server_name,
            ocsp_response,
            now,
        );
        if let Err(e) = &result {
            tracing::warn!(
                expected = %server_name.to_str(),
                presented = identity_of(end_entity).as_deref().unwrap_or("<none>"),
                error = %e,
                "server certificate rejected"
            );
        }
        result
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> std::result::Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> std::result::Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.inner.supported_verify_schemes()
    }
}

/// A stable label for a handshake error, for metrics.
pub(crate) fn handshake_error_reason(e: &std::io::Error) -> &'static str {
    let Some(tls) = e.get_ref().and_then(|i| i.downcast_ref::<rustls::Error>()) else {
        return match e.kind() {
            std::io::ErrorKind::UnexpectedEof => "eof",
            std::io::ErrorKind::ConnectionReset => "reset",
            _ => "io",
        };
    };
    use rustls::{CertificateError as C, Error as E, PeerIncompatible as P};
    match tls {
        E::NoCertificatesPresented => "no_client_cert",
        E::InvalidCertificate(C::UnknownIssuer) => "unknown_issuer",
        // Another CA with the same subject name as ours (two default Linkerd installs).
        E::InvalidCertificate(C::BadSignature) => "unknown_issuer",
        E::InvalidCertificate(C::Expired | C::ExpiredContext { .. }) => "expired",
        E::InvalidCertificate(C::NotValidYet | C::NotValidYetContext { .. }) => "not_yet_valid",
        E::InvalidCertificate(C::InvalidPurpose | C::InvalidPurposeContext { .. }) => "bad_purpose",
        E::InvalidCertificate(_) => "bad_cert",
        E::PeerIncompatible(P::Tls13RequiredForQuic | P::SupportedVersionsExtensionRequired) => {
            "protocol_version"
        }
        E::PeerIncompatible(_) => "incompatible",
        E::InappropriateHandshakeMessage { .. } | E::InappropriateMessage { .. } => "protocol",
        E::InvalidMessage(_) => "bad_message",
        E::AlertReceived(_) => "alert",
        _ => "other",
    }
}

#[cfg(test)]
pub(crate) mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;

    #[test]
    fn eku_scan_finds_client_auth_only_when_present() {
        let mut params = rcgen::CertificateParams::new(vec!["a.example".into()]).unwrap();
        let key = rcgen::KeyPair::generate().unwrap();
        params.extended_key_usages = vec![rcgen::ExtendedKeyUsagePurpose::ServerAuth];
        let server_only = params.self_signed(&key).unwrap();
        assert!(!has_client_auth_eku(server_only.der()));
        params.extended_key_usages = vec![
            rcgen::ExtendedKeyUsagePurpose::ServerAuth,
            rcgen::ExtendedKeyUsagePurpose::ClientAuth,
        ];
        let both = params.self_signed(&key).unwrap();
        assert!(has_client_auth_eku(both.der()));
        params.extended_key_usages = vec![];
        let none = params.self_signed(&key).unwrap();
        assert!(!has_client_auth_eku(none.der()));
    }

    #[test]
    fn identity_is_the_first_san_dns_name() {
        let params =
            rcgen::CertificateParams::new(vec!["first.example".into(), "second.example".into()])
                .unwrap();
        let key = rcgen::KeyPair::generate().unwrap();
        let cert = params.self_signed(&key).unwrap();
        assert_eq!(identity_of(cert.der()).as_deref(), Some("first.example"));
    }

    #[test]
    fn without_a_dns_name_the_identity_is_the_spiffe_id() {
        let key = rcgen::KeyPair::generate().unwrap();
        let uri = |s: &str| rcgen::SanType::URI(s.to_string().try_into().unwrap());
        let mut params = rcgen::CertificateParams::default();
        params.subject_alt_names = vec![uri("spiffe://cluster.local/ns/shop/sa/web")];
        let spiffe = params.self_signed(&key).unwrap();
        assert_eq!(
            identity_of(spiffe.der()).as_deref(),
            Some("spiffe://cluster.local/ns/shop/sa/web")
        );
        // A DNS name, where there is one, stays the identity.
        params.subject_alt_names.push(rcgen::SanType::DnsName(
            "web.example".to_string().try_into().unwrap(),
        ));
        let both = params.self_signed(&key).unwrap();
        assert_eq!(identity_of(both.der()).as_deref(), Some("web.example"));
        // A URI that is not a SPIFFE workload ID is no identity.
        params.subject_alt_names = vec![uri("spiffe://cluster.local"), uri("https://a.example/x")];
        let neither = params.self_signed(&key).unwrap();
        assert_eq!(identity_of(neither.der()), None);
    }

    /// A self-signed certificate for `name` and its key, both PEM; a CA's when `ca`.
    pub(crate) fn self_signed_as(name: &str, ca: bool) -> (String, String) {
        let key = rcgen::KeyPair::generate().unwrap();
        let mut params = rcgen::CertificateParams::new(vec![name.into()]).unwrap();
        if ca {
            params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        }
        let cert = params.self_signed(&key).unwrap();
        (cert.pem(), key.serialize_pem())
    }

    /// Sets the modification time of `path` to `at` (a different mtime even on coarse file
    /// systems).
    fn touch(path: &Path, at: SystemTime) {
        std::fs::File::options()
            .write(true)
            .open(path)
            .unwrap()
            .set_modified(at)
            .unwrap();
    }

    fn self_signed(name: &str) -> (String, String) {
        self_signed_as(name, false)
    }

    #[test]
    fn reload_swaps_the_certificate_when_files_change() {
        let dir = tempfile::tempdir().unwrap();
        let write = |name: &str| {
            let (cert, key) = self_signed(name);
            std::fs::write(dir.path().join("c.pem"), cert).unwrap();
            std::fs::write(dir.path().join("k.pem"), key).unwrap();
        };
        write("one.example");
        let (c, k) = (dir.path().join("c.pem"), dir.path().join("k.pem"));
        let r = ReloadingCert::load(&c, &k).unwrap();
        assert_eq!(identity_of(&r.current().cert[0]).unwrap(), "one.example");
        assert!(!r.reload_if_changed().unwrap());
        std::thread::sleep(Duration::from_millis(20));
        write("two.example");
        // Force a different mtime even on coarse file systems.
        let later = SystemTime::now() + Duration::from_secs(5);
        touch(&c, later);
        assert!(r.reload_if_changed().unwrap());
        assert_eq!(identity_of(&r.current().cert[0]).unwrap(), "two.example");
        // A broken file keeps the old certificate.
        std::fs::write(&c, "garbage").unwrap();
        touch(&c, later + Duration::from_secs(5));
        assert!(r.reload_if_changed().is_err());
        assert_eq!(identity_of(&r.current().cert[0]).unwrap(), "two.example");
    }

    /// rustls keeps every record: no configuration the gateway builds, before or after an
    /// anchor reload, lets a connection's secrets be extracted.
    #[test]
    fn the_server_configuration_never_enables_secret_extraction() {
        let dir = tempfile::tempdir().unwrap();
        let (cert, key) = self_signed("gw.example");
        let (anchor, _) = self_signed_as("ca.example", true);
        let (c, k, a) = (
            dir.path().join("c.pem"),
            dir.path().join("k.pem"),
            dir.path().join("a.pem"),
        );
        std::fs::write(&c, &cert).unwrap();
        std::fs::write(&k, key).unwrap();
        std::fs::write(&a, &anchor).unwrap();
        let config = ReloadingServerConfig::load(ReloadingCert::load(&c, &k).unwrap(), &a).unwrap();
        assert!(!config.current().enable_secret_extraction);
        std::fs::write(
            &a,
            [anchor, self_signed_as("other.example", true).0].concat(),
        )
        .unwrap();
        assert!(config.reload_anchors_if_changed().unwrap());
        assert!(!config.current().enable_secret_extraction);
        assert!(!config.current_admin().enable_secret_extraction);
    }

    /// The admin port's configuration follows the data port's through anchor reloads, with
    /// no `transport.l5d.io/v1` ALPN (nothing reads a transport header there).
    #[test]
    fn the_admin_configuration_is_rebuilt_with_the_anchors_and_offers_no_transport_alpn() {
        let dir = tempfile::tempdir().unwrap();
        let (cert, key) = self_signed("gw.example");
        let (c, k, a) = (
            dir.path().join("c.pem"),
            dir.path().join("k.pem"),
            dir.path().join("a.pem"),
        );
        std::fs::write(&c, &cert).unwrap();
        std::fs::write(&k, key).unwrap();
        std::fs::write(&a, self_signed_as("ca.example", true).0).unwrap();
        let config = ReloadingServerConfig::load(ReloadingCert::load(&c, &k).unwrap(), &a).unwrap();
        let before = config.current_admin();
        assert_eq!(
            before.alpn_protocols,
            [ALPN_H2.to_vec(), ALPN_HTTP11.to_vec()]
        );
        assert!(config.current().alpn_protocols[0] == mc_core::transport::ALPN);
        std::fs::write(&a, self_signed_as("other.example", true).0).unwrap();
        assert!(config.reload_anchors_if_changed().unwrap());
        assert!(!Arc::ptr_eq(&before, &config.current_admin()));
        assert_eq!(config.current_admin().alpn_protocols.len(), 2);
    }

    /// The egress's client configuration offers the renewed certificate at the next handshake
    /// and is rebuilt when the anchors change (not when they are only rewritten the same).
    #[test]
    fn the_client_configuration_follows_renewed_files() {
        let dir = tempfile::tempdir().unwrap();
        let (c, k, a) = (
            dir.path().join("c.pem"),
            dir.path().join("k.pem"),
            dir.path().join("a.pem"),
        );
        let write_leaf = |name: &str| {
            let (cert, key) = self_signed(name);
            std::fs::write(&c, cert).unwrap();
            std::fs::write(&k, key).unwrap();
        };
        write_leaf("one.example");
        let anchor = self_signed_as("ca.example", true).0;
        std::fs::write(&a, &anchor).unwrap();
        let config = ReloadingClientConfig::load(&c, &k, &a).unwrap();
        let offered = |config: &ReloadingClientConfig| {
            let key = config
                .current()
                .client_auth_cert_resolver
                .resolve(&[], &[SignatureScheme::ECDSA_NISTP256_SHA256])
                .unwrap();
            identity_of(&key.cert[0]).unwrap()
        };
        assert_eq!(offered(&config), "one.example");
        let before = config.current();
        assert_eq!(config.current().alpn_protocols, [mc_core::transport::ALPN]);

        write_leaf("two.example");
        let later = SystemTime::now() + Duration::from_secs(5);
        touch(&c, later);
        std::fs::write(&a, &anchor).unwrap();
        config.0.poll();
        assert_eq!(offered(&config), "two.example");
        assert!(Arc::ptr_eq(&before, &config.current()), "same anchors");

        std::fs::write(
            &a,
            [anchor, self_signed_as("other.example", true).0].concat(),
        )
        .unwrap();
        config.0.poll();
        assert!(!Arc::ptr_eq(&before, &config.current()));
        assert_eq!(offered(&config), "two.example");
        // A broken bundle keeps the last configuration.
        let current = config.current();
        std::fs::write(&a, "garbage").unwrap();
        assert!(config.0.reload_anchors_if_changed().is_err());
        assert!(Arc::ptr_eq(&current, &config.current()));
    }

    const T0: u64 = 1_800_000_000;

    fn at(secs: u64) -> SystemTime {
        SystemTime::UNIX_EPOCH + Duration::from_secs(T0 + secs)
    }

    #[test]
    fn a_leaf_is_renewed_after_two_thirds_of_its_lifetime() {
        // A 24 h leaf from an issuer valid for a year.
        let (nb, na, issuer_end) = (at(0), at(24 * 3600), at(365 * 86400));
        assert_eq!(
            renewal(at(0), nb, na, issuer_end, false),
            Renewal::At(at(16 * 3600))
        );
        assert_eq!(
            renewal(at(16 * 3600 - 1), nb, na, issuer_end, false),
            Renewal::At(at(16 * 3600))
        );
        assert_eq!(
            renewal(at(16 * 3600), nb, na, issuer_end, false),
            Renewal::Now
        );
        // Expired already (the process was suspended): at once.
        assert_eq!(
            renewal(at(30 * 3600), nb, na, issuer_end, false),
            Renewal::Now
        );
        // A 6 s leaf: after 4 s.
        assert_eq!(
            renewal(at(1), at(0), at(6), issuer_end, false),
            Renewal::At(at(4))
        );
    }

    #[test]
    fn a_new_issuer_renews_at_once_and_a_leaf_ending_with_its_issuer_waits_for_one() {
        let (nb, na) = (at(0), at(24 * 3600));
        assert_eq!(renewal(at(1), nb, na, at(365 * 86400), true), Renewal::Now);
        // Shortened to the issuer's end: renewing from the same issuer gains nothing.
        assert_eq!(
            renewal(at(23 * 3600), nb, na, na, false),
            Renewal::AwaitIssuer
        );
        assert_eq!(renewal(at(23 * 3600), nb, na, na, true), Renewal::Now);
        // A degenerate validity (notAfter before notBefore) is renewed.
        assert_eq!(renewal(at(5), at(10), at(0), at(100), false), Renewal::Now);
    }

    #[test]
    fn short_leaves_are_polled_at_a_sixth_of_their_lifetime() {
        let five = Duration::from_secs(5);
        assert_eq!(poll_interval(five, None), five);
        assert_eq!(poll_interval(five, Some(Duration::from_secs(86_400))), five);
        assert_eq!(poll_interval(five, Some(Duration::from_secs(15))), five);
        assert_eq!(
            poll_interval(five, Some(Duration::from_secs(120))),
            five,
            "a third of 2 minutes is above 5 s"
        );
        assert_eq!(
            poll_interval(Duration::from_secs(60), Some(Duration::from_secs(120))),
            Duration::from_secs(20)
        );
        assert_eq!(
            poll_interval(five, Some(Duration::from_secs(6))),
            Duration::from_secs(1)
        );
    }

    /// An issuer written as `issuer.crt` / `issuer.key` into `dir`, valid until `not_after`.
    fn write_issuer(dir: &Path, not_after: SystemTime) -> mc_core::pki::CertifiedKey {
        let now = SystemTime::now() - Duration::from_secs(60);
        let root =
            mc_core::pki::create_trust_anchor(&mc_core::pki::AnchorOptions::new(now)).unwrap();
        let opts = mc_core::pki::IssuerOptions {
            not_after,
            ..mc_core::pki::IssuerOptions::new(now)
        };
        let issuer = mc_core::pki::create_issuer(&root, &opts).unwrap();
        std::fs::write(dir.join("issuer.crt"), &issuer.cert_pem).unwrap();
        std::fs::write(dir.join("issuer.key"), &issuer.key_pem).unwrap();
        issuer
    }

    fn issuer_source(dir: &Path, lifetime: Duration) -> CertSource {
        CertSource::Issuer(IssuerSource {
            cert: dir.join("issuer.crt"),
            key: dir.join("issuer.key"),
            identity: "gw.example".into(),
            lifetime,
        })
    }

    #[test]
    fn issuer_mode_mints_renews_and_follows_a_new_issuer() {
        let dir = tempfile::tempdir().unwrap();
        let now = SystemTime::now();
        let issuer = write_issuer(dir.path(), now + Duration::from_secs(86_400));
        let metrics = CertMetrics::default();
        let lifetime = Duration::from_secs(600);
        let r = ReloadingCert::new(issuer_source(dir.path(), lifetime), metrics.clone()).unwrap();
        let first = r.current();
        assert_eq!(identity_of(&first.cert[0]).unwrap(), "gw.example");
        assert_eq!(first.cert.len(), 2, "leaf, then issuer");
        assert_eq!(first.cert[1].as_ref(), issuer.cert_der().unwrap().as_ref());
        let (nb, na) = validity_of(&first.cert[0]).unwrap();
        assert!(nb < now && na > now + lifetime - Duration::from_secs(2));
        assert_eq!(metrics.expiry.get(), unix_seconds(na));
        assert_eq!(
            r.poll_interval(Duration::from_secs(5)),
            Duration::from_secs(5)
        );

        // Before 2/3 of the lifetime: kept.
        assert!(!r.poll_at(now + Duration::from_secs(60)).unwrap());
        assert!(Arc::ptr_eq(&first, &r.current()));
        // After: a new leaf, a later expiry, one renewal.
        let later = now + Duration::from_secs(500);
        assert!(r.poll_at(later).unwrap());
        let second = r.current();
        assert_ne!(second.cert[0], first.cert[0]);
        assert_eq!(metrics.renewals.get(), 1);
        assert!(metrics.expiry.get() > unix_seconds(na));
        assert!(!r.poll_at(later).unwrap());

        // The issuer files are rewritten with the same content: nothing to do.
        touch(&dir.path().join("issuer.crt"), now + Duration::from_secs(5));
        assert!(!r.poll_at(later).unwrap());
        // A new issuer: a new leaf at once, chained to it.
        let new_issuer = write_issuer(dir.path(), now + Duration::from_secs(86_400));
        touch(
            &dir.path().join("issuer.crt"),
            now + Duration::from_secs(10),
        );
        assert!(r.poll_at(later).unwrap());
        assert_eq!(
            r.current().cert[1].as_ref(),
            new_issuer.cert_der().unwrap().as_ref()
        );
        assert_eq!(metrics.renewals.get(), 2);
        // A broken issuer keeps the leaf, and is retried.
        std::fs::write(dir.path().join("issuer.key"), "garbage").unwrap();
        touch(
            &dir.path().join("issuer.key"),
            now + Duration::from_secs(15),
        );
        let kept = r.current();
        assert!(r.poll_at(later).is_err());
        assert!(Arc::ptr_eq(&kept, &r.current()));
        assert!(r.poll_at(later).is_err());
    }

    #[test]
    fn a_minted_leaf_ends_with_its_issuer_and_is_not_renewed_from_it() {
        let dir = tempfile::tempdir().unwrap();
        let now = SystemTime::now();
        let issuer = write_issuer(dir.path(), now + Duration::from_secs(30));
        let r = ReloadingCert::new(
            issuer_source(dir.path(), Duration::from_secs(86_400)),
            CertMetrics::default(),
        )
        .unwrap();
        let (_, na) = validity_of(&r.current().cert[0]).unwrap();
        assert_eq!(na, mc_core::pki::not_after_of(&issuer).unwrap());
        assert_eq!(r.not_after(), na);
        assert!(!r.poll_at(now + Duration::from_secs(25)).unwrap());
        // An expired issuer signs nothing: the error says so.
        let dir = tempfile::tempdir().unwrap();
        write_issuer(dir.path(), now - Duration::from_secs(1));
        let err = ReloadingCert::new(
            issuer_source(dir.path(), Duration::from_secs(60)),
            CertMetrics::default(),
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("expired") && err.contains("fix"), "{err}");
    }

    #[test]
    fn file_mode_reports_the_expiry_and_counts_reloads() {
        let dir = tempfile::tempdir().unwrap();
        let (c, k) = (dir.path().join("c.pem"), dir.path().join("k.pem"));
        let (cert, key) = self_signed("one.example");
        std::fs::write(&c, cert).unwrap();
        std::fs::write(&k, key).unwrap();
        let metrics = CertMetrics::default();
        let source = CertSource::Files {
            cert: c.clone(),
            key: k.clone(),
        };
        let r = ReloadingCert::new(source, metrics.clone()).unwrap();
        let (_, na) = validity_of(&r.current().cert[0]).unwrap();
        assert_eq!(metrics.expiry.get(), unix_seconds(na));
        assert_eq!(
            r.poll_interval(Duration::from_secs(5)),
            Duration::from_secs(5)
        );
        let (cert, key) = self_signed("two.example");
        std::fs::write(&c, cert).unwrap();
        std::fs::write(&k, key).unwrap();
        touch(&c, SystemTime::now() + Duration::from_secs(5));
        assert!(r.reload_if_changed().unwrap());
        assert_eq!(metrics.renewals.get(), 1);
    }

    #[test]
    fn rejects_a_p384_key() {
        let dir = tempfile::tempdir().unwrap();
        let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P384_SHA384).unwrap();
        let cert = rcgen::CertificateParams::new(vec!["a.example".into()])
            .unwrap()
            .self_signed(&key)
            .unwrap();
        std::fs::write(dir.path().join("c.pem"), cert.pem()).unwrap();
        std::fs::write(dir.path().join("k.pem"), key.serialize_pem()).unwrap();
        let err =
            load_certified_key(&dir.path().join("c.pem"), &dir.path().join("k.pem")).unwrap_err();
        assert!(err.to_string().contains("P-256"), "{err}");
    }
}
