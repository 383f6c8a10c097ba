//! `mc.TrustBundle`, `mc.Anchor`, `mc.BundleDiff` and `mc.LinkerdConfig`: trust-anchor bundles.

use std::time::SystemTime;

use mc_core::trust;
use pyo3::exceptions::PyTypeError;
use pyo3::prelude::*;
use pyo3::types::{PyByteArray, PyBytes, PyString};

use crate::errors::IntoPyResult as _;
use crate::pytime;

/// PEM input: text or bytes, copied out of Python so that parsing can run without the GIL.
fn pem_input(data: &Bound<'_, PyAny>) -> PyResult<Vec<u8>> {
    if let Ok(s) = data.downcast::<PyString>() {
        Ok(s.to_cow()?.as_bytes().to_vec())
    } else if let Ok(b) = data.downcast::<PyBytes>() {
        Ok(b.as_bytes().to_vec())
    } else if let Ok(b) = data.downcast::<PyByteArray>() {
        Ok(b.to_vec())
    } else {
        Err(PyTypeError::new_err(format!(
            "PEM input must be str or bytes, got {}",
            data.get_type().name()?
        )))
    }
}

/// One trust anchor (a root CA certificate) and its human summary. Equal when the DER is equal.
#[pyclass(module = "mc", frozen, eq)]
#[derive(Clone, PartialEq)]
pub(crate) struct Anchor {
    inner: trust::Anchor,
}

#[pymethods]
impl Anchor {
    /// The subject distinguished name, e.g. "CN=root.linkerd.cluster.local".
    #[getter]
    fn subject(&self) -> &str {
        &self.inner.summary().subject
    }

    /// Subject alternative names as openssl prints them ("DNS:…", "IP:…", "URI:…", "email:…").
    #[getter]
    fn sans(&self) -> Vec<String> {
        self.inner.summary().sans.clone()
    }

    /// Start of validity, an aware UTC datetime.
    #[getter]
    fn not_before<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        pytime::to_datetime(py, self.inner.summary().not_before)
    }

    /// End of validity, an aware UTC datetime.
    #[getter]
    fn not_after<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        pytime::to_datetime(py, self.inner.summary().not_after)
    }

    /// The public key algorithm, e.g. "ECDSA P-256".
    #[getter]
    fn key_algorithm(&self) -> &str {
        &self.inner.summary().key_algorithm
    }

    /// SHA-256 of the DER as `openssl x509 -noout -fingerprint -sha256` prints it
    /// ("AB:CD:…", uppercase).
    #[getter]
    fn fingerprint(&self) -> &str {
        &self.inner.summary().sha256_fingerprint
    }

    /// The certificate in DER.
    #[getter]
    fn der<'py>(&self, py: Python<'py>) -> Bound<'py, PyBytes> {
        PyBytes::new(py, self.inner.der())
    }

    /// Whether the anchor is valid at `now` (an aware datetime; default: the current time).
    #[pyo3(signature = (now=None))]
    fn is_valid_at(&self, now: Option<&Bound<'_, PyAny>>) -> PyResult<bool> {
        Ok(self.inner.is_valid_at(pytime::now_or(now)?))
    }

    fn __hash__(&self) -> u64 {
        use std::hash::{Hash as _, Hasher as _};
        let mut h = std::collections::hash_map::DefaultHasher::new();
        self.inner.der().hash(&mut h);
        h.finish()
    }

    fn __repr__(&self) -> String {
        let s = self.inner.summary();
        format!(
            "Anchor(subject={:?}, not_after={:?}, fingerprint={:?})",
            s.subject,
            trust::format_time(s.not_after),
            s.sha256_fingerprint
        )
    }
}

fn anchors(list: &[trust::Anchor]) -> Vec<Anchor> {
    list.iter().map(|a| Anchor { inner: a.clone() }).collect()
}

/// An ordered, duplicate-free, non-empty set of trust anchors.
///
/// >>> bundle = TrustBundle.from_pem(open("ca.crt").read())
/// >>> bundle.shares_anchor(other)
#[pyclass(module = "mc", frozen, eq)]
#[derive(Clone, PartialEq)]
pub(crate) struct TrustBundle {
    inner: trust::TrustBundle,
}

#[pymethods]
impl TrustBundle {
    /// Parses a PEM bundle (str or bytes) of one or more root CA certificates.
    ///
    /// CRLF, blank lines and text between blocks are fine; duplicates are dropped, order kept.
    /// Every block must be a CERTIFICATE of a CA valid at `now` (an aware datetime, default the
    /// current time); pass `check_validity=False` to accept expired or not-yet-valid anchors
    /// (for inspection). Raises `mc.PemError` naming the block and line. Parsing releases the
    /// GIL.
    #[staticmethod]
    #[pyo3(signature = (data, *, now=None, check_validity=true))]
    fn from_pem(
        py: Python<'_>,
        data: &Bound<'_, PyAny>,
        now: Option<&Bound<'_, PyAny>>,
        check_validity: bool,
    ) -> PyResult<TrustBundle> {
        let input = pem_input(data)?;
        let now = pytime::now_or(now)?;
        parse(py, input, check_validity.then_some(now))
    }

    /// Reads `identityTrustAnchorsPEM` from the `values` YAML of a `linkerd-config` ConfigMap
    /// (with or without the legacy `global` wrapper) and parses it like `from_pem`.
    ///
    /// Raises `mc.ConfigError` (with `field`) when the YAML is unusable, `mc.PemError` when the
    /// anchors are.
    #[staticmethod]
    #[pyo3(signature = (values_yaml, *, now=None, check_validity=true))]
    fn from_linkerd_config(
        py: Python<'_>,
        values_yaml: &str,
        now: Option<&Bound<'_, PyAny>>,
        check_validity: bool,
    ) -> PyResult<TrustBundle> {
        let config = trust::LinkerdConfig::from_values_yaml(values_yaml).py_err()?;
        let now = pytime::now_or(now)?;
        parse(
            py,
            config.trust_anchors_pem.into_bytes(),
            check_validity.then_some(now),
        )
    }

    /// The anchors, in order of first appearance.
    #[getter]
    fn anchors(&self) -> Vec<Anchor> {
        anchors(self.inner.anchors())
    }

    /// The bundle as PEM: one CERTIFICATE block per anchor, LF line endings.
    fn to_pem(&self) -> String {
        self.inner.to_pem()
    }

    /// This bundle's anchors followed by those of `other` not already present (a rotation
    /// bundle). Idempotent.
    fn merge(&self, other: &TrustBundle) -> TrustBundle {
        TrustBundle {
            inner: self.inner.merge(&other.inner),
        }
    }

    /// What changes from this bundle to `other`: anchors added, removed and common.
    fn diff(&self, other: &TrustBundle) -> BundleDiff {
        let d = self.inner.diff(&other.inner);
        BundleDiff {
            added: anchors(&d.added),
            removed: anchors(&d.removed),
            common: anchors(&d.common),
        }
    }

    /// Whether at least one anchor is in both bundles: the condition for mTLS between two
    /// clusters.
    fn shares_anchor(&self, other: &TrustBundle) -> bool {
        self.inner.shares_anchor(&other.inner)
    }

    /// Whether both bundles hold exactly the same anchors, order aside.
    fn same_anchors(&self, other: &TrustBundle) -> bool {
        self.inner.same_anchors(&other.inner)
    }

    /// The anchors whose validity ends within `window` (a timedelta) of `now` (default: the
    /// current time), including those already expired.
    #[pyo3(signature = (window, *, now=None))]
    fn expiring_within(
        &self,
        window: &Bound<'_, PyAny>,
        now: Option<&Bound<'_, PyAny>>,
    ) -> PyResult<Vec<Anchor>> {
        let window = pytime::from_timedelta(window, "window")?;
        let now = pytime::now_or(now)?;
        Ok(self
            .inner
            .expiring_within(now, window)
            .into_iter()
            .map(|a| Anchor { inner: a.clone() })
            .collect())
    }

    fn __len__(&self) -> usize {
        self.inner.anchors().len()
    }

    fn __repr__(&self) -> String {
        let subjects: Vec<String> = self
            .inner
            .anchors()
            .iter()
            .map(|a| format!("{:?}", a.summary().subject))
            .collect();
        format!("TrustBundle([{}])", subjects.join(", "))
    }
}

/// Parses PEM without the GIL; `now = None` skips the validity-window check.
fn parse(py: Python<'_>, input: Vec<u8>, now: Option<SystemTime>) -> PyResult<TrustBundle> {
    py.allow_threads(|| match now {
        Some(now) => trust::TrustBundle::from_pem(&input, now),
        None => trust::TrustBundle::from_pem_unchecked_time(&input),
    })
    .py_err()
    .map(|inner| TrustBundle { inner })
}

/// The difference between two bundles (see `TrustBundle.diff`). False when they hold the same
/// anchors.
#[pyclass(module = "mc", frozen, get_all)]
pub(crate) struct BundleDiff {
    /// Anchors only in the other bundle.
    added: Vec<Anchor>,
    /// Anchors only in this bundle.
    removed: Vec<Anchor>,
    /// Anchors in both.
    common: Vec<Anchor>,
}

#[pymethods]
impl BundleDiff {
    /// Whether the bundles hold the same anchors (nothing added or removed).
    fn is_empty(&self) -> bool {
        self.added.is_empty() && self.removed.is_empty()
    }

    /// True when something was added or removed.
    fn __bool__(&self) -> bool {
        !self.is_empty()
    }

    fn __repr__(&self) -> String {
        format!(
            "BundleDiff(added={}, removed={}, common={})",
            self.added.len(),
            self.removed.len(),
            self.common.len()
        )
    }
}

/// The trust settings of a Linkerd control plane, from its `linkerd-config` values.
#[pyclass(module = "mc", frozen, get_all)]
pub(crate) struct LinkerdConfig {
    /// `identityTrustAnchorsPEM`, not yet validated.
    trust_anchors_pem: String,
    /// `identityTrustDomain`, or the cluster domain when absent.
    trust_domain: String,
    /// `clusterDomain`, "cluster.local" when absent.
    cluster_domain: String,
}

#[pymethods]
impl LinkerdConfig {
    /// Reads the `values` YAML of a `linkerd-config` ConfigMap, with or without the legacy
    /// `global` wrapper. Raises `mc.ConfigError` with the field path.
    #[staticmethod]
    fn from_values_yaml(values_yaml: &str) -> PyResult<LinkerdConfig> {
        let c = trust::LinkerdConfig::from_values_yaml(values_yaml).py_err()?;
        Ok(LinkerdConfig {
            trust_anchors_pem: c.trust_anchors_pem,
            trust_domain: c.trust_domain,
            cluster_domain: c.cluster_domain,
        })
    }

    /// Parses `trust_anchors_pem` like `TrustBundle.from_pem`.
    #[pyo3(signature = (*, now=None, check_validity=true))]
    fn trust_bundle(
        &self,
        py: Python<'_>,
        now: Option<&Bound<'_, PyAny>>,
        check_validity: bool,
    ) -> PyResult<TrustBundle> {
        let now = pytime::now_or(now)?;
        parse(
            py,
            self.trust_anchors_pem.clone().into_bytes(),
            check_validity.then_some(now),
        )
    }

    fn __repr__(&self) -> String {
        format!(
            "LinkerdConfig(trust_domain={:?}, cluster_domain={:?})",
            self.trust_domain, self.cluster_domain
        )
    }
}

/// Registers the classes.
pub(crate) fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<TrustBundle>()?;
    m.add_class::<Anchor>()?;
    m.add_class::<BundleDiff>()?;
    m.add_class::<LinkerdConfig>()?;
    Ok(())
}
