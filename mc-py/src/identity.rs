//! `mc.Identity`: Linkerd workload identities
//! (`<sa>.<ns>.serviceaccount.identity.<control-plane-ns>.<trust-domain>`).

use mc_core::identity;
use pyo3::prelude::*;

use crate::convert;
use crate::errors::IntoPyResult as _;

/// A Linkerd workload identity: the DNS SAN of a proxy's certificate.
///
/// >>> str(Identity("web", "shop"))
/// 'web.shop.serviceaccount.identity.linkerd.cluster.local'
#[pyclass(module = "mc", frozen, eq, hash)]
#[derive(Clone, PartialEq, Eq, Hash)]
pub(crate) struct Identity {
    inner: identity::Identity,
}

#[pymethods]
impl Identity {
    /// A validated identity from its parts; raises `mc.IdentityError`.
    #[new]
    #[pyo3(signature = (service_account, namespace, control_plane_namespace="linkerd", trust_domain="cluster.local"))]
    fn new(
        service_account: &str,
        namespace: &str,
        control_plane_namespace: &str,
        trust_domain: &str,
    ) -> PyResult<Identity> {
        identity::Identity::new(
            service_account,
            namespace,
            control_plane_namespace,
            trust_domain,
        )
        .py_err()
        .map(|inner| Identity { inner })
    }

    /// Parses `<sa>.<ns>.serviceaccount.identity.<control-plane-ns>.<trust-domain>`; raises
    /// `mc.IdentityError` saying what is wrong.
    #[staticmethod]
    fn parse(text: &str) -> PyResult<Identity> {
        text.parse::<identity::Identity>()
            .py_err()
            .map(|inner| Identity { inner })
    }

    /// The default identity of the multicluster gateway for this trust domain.
    #[staticmethod]
    #[pyo3(signature = (trust_domain="cluster.local"))]
    fn gateway(trust_domain: &str) -> Identity {
        Identity {
            inner: identity::Identity::gateway(trust_domain),
        }
    }

    /// The identity of the mirror controller of Link `link`.
    #[staticmethod]
    #[pyo3(signature = (link, trust_domain="cluster.local"))]
    fn controller(link: &str, trust_domain: &str) -> Identity {
        Identity {
            inner: identity::Identity::controller(link, trust_domain),
        }
    }

    /// The workload's ServiceAccount.
    #[getter]
    fn service_account(&self) -> &str {
        &self.inner.service_account
    }

    /// The workload's namespace.
    #[getter]
    fn namespace(&self) -> &str {
        &self.inner.namespace
    }

    /// The namespace of the control plane that issued the certificate.
    #[getter]
    fn control_plane_namespace(&self) -> &str {
        &self.inner.control_plane_namespace
    }

    /// The trust domain, e.g. "cluster.local".
    #[getter]
    fn trust_domain(&self) -> &str {
        &self.inner.trust_domain
    }

    fn __str__(&self) -> String {
        self.inner.to_string()
    }

    fn __repr__(&self, py: Python<'_>) -> PyResult<String> {
        Ok(format!(
            "Identity.parse({})",
            convert::repr_str(py, &self.inner.to_string())?
        ))
    }
}

/// Checks that `name` is a valid DNS name (as a certificate SAN must be); raises
/// `mc.IdentityError` saying why not.
#[pyfunction]
fn validate_dns_name(name: &str) -> PyResult<()> {
    identity::validate_dns_name(name).py_err()
}

/// Registers the class and function.
pub(crate) fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<Identity>()?;
    m.add_function(wrap_pyfunction!(validate_dns_name, m)?)?;
    Ok(())
}
