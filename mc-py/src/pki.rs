//! `mc.pki`: a trust anchor, issuers and leaf certificates (ECDSA P-256, PEM out).

use std::time::{Duration, SystemTime};

use mc_core::pki;
use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;

use crate::errors::IntoPyResult as _;
use crate::pytime;

/// A certificate and its private key, both PEM (the key is PKCS#8 "PRIVATE KEY").
///
/// Unpacks as `cert_pem, key_pem = certified_key`. The repr never shows the key.
#[pyclass(module = "mc.pki", frozen, eq)]
#[derive(Clone, PartialEq)]
pub(crate) struct CertifiedKey {
    inner: pki::CertifiedKey,
}

#[pymethods]
impl CertifiedKey {
    /// Wraps an existing certificate and key (e.g. read from `ca.crt` and `ca.key`) to sign
    /// with it.
    #[new]
    fn new(cert_pem: String, key_pem: String) -> Self {
        CertifiedKey {
            inner: pki::CertifiedKey { cert_pem, key_pem },
        }
    }

    /// The certificate, one CERTIFICATE block.
    #[getter]
    fn cert_pem(&self) -> &str {
        &self.inner.cert_pem
    }

    /// The private key, one PRIVATE KEY block (PKCS#8).
    #[getter]
    fn key_pem(&self) -> &str {
        &self.inner.key_pem
    }

    /// This certificate followed by `issuer`'s: the chain a server or client presents.
    fn chain_pem(&self, issuer: &CertifiedKey) -> String {
        self.inner.chain_pem(&issuer.inner)
    }

    fn __iter__(&self, py: Python<'_>) -> PyResult<PyObject> {
        let pair = (self.inner.cert_pem.clone(), self.inner.key_pem.clone());
        Ok(pair.into_pyobject(py)?.try_iter()?.into_any().unbind())
    }

    fn __repr__(&self) -> String {
        let first = self.inner.cert_pem.lines().nth(1).unwrap_or_default();
        format!(
            "CertifiedKey(cert_pem=\"{}…\", key_pem=<redacted>)",
            first.get(..16).unwrap_or(first)
        )
    }
}

/// The validity window from the optional `not_before`, `not_after` and `validity` arguments.
struct Window {
    not_before: SystemTime,
    not_after: Option<SystemTime>,
}

impl Window {
    fn from_args(
        not_before: Option<&Bound<'_, PyAny>>,
        not_after: Option<&Bound<'_, PyAny>>,
        validity: Option<&Bound<'_, PyAny>>,
    ) -> PyResult<Window> {
        let not_before = match not_before {
            Some(t) if !t.is_none() => pytime::from_datetime(t, "not_before")?,
            _ => SystemTime::now(),
        };
        let not_after = match (
            not_after.filter(|t| !t.is_none()),
            validity.filter(|v| !v.is_none()),
        ) {
            (Some(_), Some(_)) => {
                return Err(PyValueError::new_err(
                    "pass not_after or validity, not both",
                ));
            }
            (Some(t), None) => Some(pytime::from_datetime(t, "not_after")?),
            (None, Some(v)) => {
                let v: Duration = pytime::from_timedelta(v, "validity")?;
                Some(not_before.checked_add(v).ok_or_else(|| {
                    PyValueError::new_err("validity: not_before + validity is out of range")
                })?)
            }
            (None, None) => None,
        };
        Ok(Window {
            not_before,
            not_after,
        })
    }

    /// Overrides the defaults of a CA's options with the caller's name and end of validity.
    fn apply(&self, common_name: Option<String>, name: &mut String, not_after: &mut SystemTime) {
        if let Some(cn) = common_name {
            *name = cn;
        }
        if let Some(t) = self.not_after {
            *not_after = t;
        }
    }
}

/// Creates a self-signed root CA: the trust anchor shared by the clusters of a mesh.
///
/// Defaults: CN "root.linkerd.cluster.local", valid from now for 10 years. Give `not_after`
/// (aware datetime) or `validity` (timedelta) to change the end. Raises `mc.PkiError`.
#[pyfunction]
#[pyo3(signature = (common_name=None, *, not_before=None, not_after=None, validity=None))]
fn create_trust_anchor(
    py: Python<'_>,
    common_name: Option<String>,
    not_before: Option<&Bound<'_, PyAny>>,
    not_after: Option<&Bound<'_, PyAny>>,
    validity: Option<&Bound<'_, PyAny>>,
) -> PyResult<CertifiedKey> {
    let w = Window::from_args(not_before, not_after, validity)?;
    let mut opts = pki::AnchorOptions::new(w.not_before);
    w.apply(common_name, &mut opts.common_name, &mut opts.not_after);
    py.allow_threads(|| pki::create_trust_anchor(&opts))
        .py_err()
        .map(|inner| CertifiedKey { inner })
}

/// Creates an issuer (intermediate CA, path length 0) signed by `signer` (a trust anchor).
///
/// Defaults: CN "identity.linkerd.cluster.local", valid from now for 8760 hours. Raises
/// `mc.PkiError` (e.g. when the signer's certificate or key cannot be used).
#[pyfunction]
#[pyo3(signature = (signer, common_name=None, *, not_before=None, not_after=None, validity=None))]
fn create_issuer(
    py: Python<'_>,
    signer: &CertifiedKey,
    common_name: Option<String>,
    not_before: Option<&Bound<'_, PyAny>>,
    not_after: Option<&Bound<'_, PyAny>>,
    validity: Option<&Bound<'_, PyAny>>,
) -> PyResult<CertifiedKey> {
    let w = Window::from_args(not_before, not_after, validity)?;
    let mut opts = pki::IssuerOptions::new(w.not_before);
    w.apply(common_name, &mut opts.common_name, &mut opts.not_after);
    let signer = signer.inner.clone();
    py.allow_threads(|| pki::create_issuer(&signer, &opts))
        .py_err()
        .map(|inner| CertifiedKey { inner })
}

/// Issues a workload certificate for a Linkerd identity (its DNS SAN), signed by `issuer`.
///
/// Defaults: valid from now for 24 hours, with the serverAuth and clientAuth extended key
/// usages. Raises `mc.IdentityError` when `identity` is not a DNS name, `mc.PkiError` otherwise.
#[pyfunction]
#[pyo3(signature = (issuer, identity, *, not_before=None, not_after=None, validity=None, server_auth=true, client_auth=true))]
#[allow(clippy::too_many_arguments)]
fn issue_leaf(
    py: Python<'_>,
    issuer: &CertifiedKey,
    identity: &str,
    not_before: Option<&Bound<'_, PyAny>>,
    not_after: Option<&Bound<'_, PyAny>>,
    validity: Option<&Bound<'_, PyAny>>,
    server_auth: bool,
    client_auth: bool,
) -> PyResult<CertifiedKey> {
    let w = Window::from_args(not_before, not_after, validity)?;
    let mut opts = pki::LeafOptions::new(w.not_before);
    if let Some(t) = w.not_after {
        opts.not_after = t;
    }
    opts.server_auth = server_auth;
    opts.client_auth = client_auth;
    let issuer = issuer.inner.clone();
    let identity = identity.to_string();
    py.allow_threads(|| pki::issue_leaf(&issuer, &identity, &opts))
        .py_err()
        .map(|inner| CertifiedKey { inner })
}

/// Fills the native submodule `mc._mc.pki` (re-exported as `mc.pki`).
pub(crate) fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<CertifiedKey>()?;
    m.add_function(wrap_pyfunction!(create_trust_anchor, m)?)?;
    m.add_function(wrap_pyfunction!(create_issuer, m)?)?;
    m.add_function(wrap_pyfunction!(issue_leaf, m)?)?;
    m.add("DEFAULT_ANCHOR_CN", pki::DEFAULT_ANCHOR_CN)?;
    m.add("DEFAULT_ISSUER_CN", pki::DEFAULT_ISSUER_CN)?;
    m.add("DEFAULT_ANCHOR_VALIDITY", pki::DEFAULT_ANCHOR_VALIDITY)?;
    m.add("DEFAULT_ISSUER_VALIDITY", pki::DEFAULT_ISSUER_VALIDITY)?;
    m.add("DEFAULT_LEAF_VALIDITY", pki::DEFAULT_LEAF_VALIDITY)?;
    Ok(())
}
