//! `mc.Link`: the Link resource, from and to dicts and YAML, validated into typed properties.

use std::time::Duration;

use mc_core::link::{self, ValidLink};
use pyo3::prelude::*;

use crate::convert;
use crate::errors::IntoPyResult as _;
use crate::selector::Selector;

/// A Link (`multicluster.linkerd.io`, v1alpha1 to v1alpha3): how this cluster mirrors the
/// services of one target cluster.
///
/// The spec keeps every scalar a string, as on the wire; the typed properties (`gateway_port`
/// as int, `probe_period` as timedelta, selectors as `Selector`, …) validate the spec and raise
/// `mc.LinkError` naming the field path (e.g. `spec.gatewayPort`) when it is invalid.
///
/// >>> link = Link.from_yaml(open("link.yaml").read())
/// >>> link.gateway_port, link.probe_period
/// (4143, datetime.timedelta(seconds=3))
#[pyclass(module = "mc", frozen, eq)]
#[derive(Clone, PartialEq)]
pub(crate) struct Link {
    pub(crate) inner: link::Link,
}

impl Link {
    /// The validated spec.
    pub(crate) fn valid(&self) -> PyResult<ValidLink> {
        self.inner.spec.validate().py_err()
    }

    fn probe<T>(&self, f: impl FnOnce(&link::Probe) -> T) -> PyResult<Option<T>> {
        Ok(self.valid()?.probe.as_ref().map(f))
    }
}

#[pymethods]
impl Link {
    /// Reads a Link from a dict (as `kubectl get link -o json` gives it, or as written in
    /// YAML). apiVersion and kind may be left out; another kind raises `mc.KindError`, a field
    /// of the wrong type `mc.KindError` naming it. The spec is not validated here: call
    /// `validate()`.
    #[staticmethod]
    fn from_dict(value: &Bound<'_, PyAny>) -> PyResult<Link> {
        let json = convert::to_json(value, "link")?;
        link::Link::from_json(json)
            .py_err()
            .map(|inner| Link { inner })
    }

    /// Reads a Link from YAML (or JSON) text, like `from_dict`.
    #[staticmethod]
    fn from_yaml(text: &str) -> PyResult<Link> {
        link::Link::from_yaml(text)
            .py_err()
            .map(|inner| Link { inner })
    }

    /// The Link as a dict with apiVersion `multicluster.linkerd.io/v1alpha3` and kind `Link`.
    fn to_dict<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        convert::serde_to_py(py, &self.inner)
    }

    /// The Link as YAML text.
    fn to_yaml(&self) -> PyResult<String> {
        serde_yaml::to_string(&self.inner).map_err(|e| {
            crate::errors::Error::new_err(format!("cannot write the Link as YAML: {e}"))
        })
    }

    /// Checks every field; raises `mc.LinkError` with the field path of the first problem
    /// (`field` attribute), e.g. `spec.gatewayPort: "70000" is not a port (1-65535)`.
    fn validate(&self) -> PyResult<()> {
        self.valid().map(drop)
    }

    /// `metadata.name`.
    #[getter]
    fn name(&self) -> Option<&str> {
        self.inner.metadata.name.as_deref()
    }

    /// `metadata.namespace`.
    #[getter]
    fn namespace(&self) -> Option<&str> {
        self.inner.metadata.namespace.as_deref()
    }

    /// The spec as a dict, every scalar a string as on the wire.
    #[getter]
    fn spec<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        convert::serde_to_py(py, &self.inner.spec)
    }

    /// The status written by the controller, or None.
    #[getter]
    fn status<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        convert::serde_to_py(py, &self.inner.status)
    }

    /// `spec.targetClusterName`, validated (a DNS-1123 label).
    #[getter]
    fn cluster_name(&self) -> PyResult<String> {
        Ok(self.valid()?.cluster_name)
    }

    /// `spec.targetClusterDomain`, default "cluster.local".
    #[getter]
    fn cluster_domain(&self) -> PyResult<String> {
        Ok(self.valid()?.cluster_domain)
    }

    /// `spec.targetClusterLinkerdNamespace`, default "linkerd".
    #[getter]
    fn linkerd_namespace(&self) -> PyResult<String> {
        Ok(self.valid()?.linkerd_namespace)
    }

    /// `spec.clusterCredentialsSecret`, default "cluster-credentials-<cluster>".
    #[getter]
    fn credentials_secret(&self) -> PyResult<String> {
        Ok(self.valid()?.credentials_secret)
    }

    /// `spec.gatewayAddress` split at commas (IPs and DNS names); [] for a gateway-less Link.
    #[getter]
    fn gateway_addresses(&self) -> PyResult<Vec<String>> {
        Ok(self
            .valid()?
            .gateway
            .map(|g| g.addresses)
            .unwrap_or_default())
    }

    /// `spec.gatewayPort` as an int, or None for a gateway-less Link.
    #[getter]
    fn gateway_port(&self) -> PyResult<Option<u16>> {
        Ok(self.valid()?.gateway.map(|g| g.port))
    }

    /// `spec.gatewayIdentity`, or None.
    #[getter]
    fn gateway_identity(&self) -> PyResult<Option<String>> {
        Ok(self.valid()?.gateway.and_then(|g| g.identity))
    }

    /// `spec.probeSpec.path`, or None when the gateway is not probed.
    #[getter]
    fn probe_path(&self) -> PyResult<Option<String>> {
        self.probe(|p| p.path.clone())
    }

    /// `spec.probeSpec.port` as an int, or None.
    #[getter]
    fn probe_port(&self) -> PyResult<Option<u16>> {
        self.probe(|p| p.port)
    }

    /// `spec.probeSpec.period` as a timedelta (default 3 s), or None when not probed.
    #[getter]
    fn probe_period(&self) -> PyResult<Option<Duration>> {
        self.probe(|p| p.period)
    }

    /// `spec.probeSpec.timeout` as a timedelta (default 30 s), or None when not probed.
    #[getter]
    fn probe_timeout(&self) -> PyResult<Option<Duration>> {
        self.probe(|p| p.timeout)
    }

    /// `spec.probeSpec.failureThreshold` as an int (default 3), or None when not probed.
    #[getter]
    fn probe_failure_threshold(&self) -> PyResult<Option<u32>> {
        self.probe(|p| p.failure_threshold)
    }

    /// `spec.selector` (gateway mode) as a `Selector`; empty (matches nothing) when unset.
    #[getter]
    fn selector(&self) -> PyResult<Selector> {
        Ok(Selector {
            inner: self.valid()?.selector,
        })
    }

    /// `spec.remoteDiscoverySelector` as a `Selector`.
    #[getter]
    fn remote_discovery_selector(&self) -> PyResult<Selector> {
        Ok(Selector {
            inner: self.valid()?.remote_discovery_selector,
        })
    }

    /// `spec.federatedServiceSelector` as a `Selector`.
    #[getter]
    fn federated_selector(&self) -> PyResult<Selector> {
        Ok(Selector {
            inner: self.valid()?.federated_selector,
        })
    }

    /// `spec.excludedLabels` (label keys not copied to mirrors; `prefix/*` allowed).
    #[getter]
    fn excluded_labels(&self) -> PyResult<Vec<String>> {
        Ok(self.valid()?.excluded_labels)
    }

    /// `spec.excludedAnnotations` (annotation keys not copied; `prefix/*` allowed).
    #[getter]
    fn excluded_annotations(&self) -> PyResult<Vec<String>> {
        Ok(self.valid()?.excluded_annotations)
    }

    /// The CustomResourceDefinition of Links (upstream's group, versions and field names).
    #[staticmethod]
    fn crd<'py>(py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        convert::serde_to_py(py, &link::crd())
    }

    fn __repr__(&self, py: Python<'_>) -> PyResult<String> {
        let show = |s: Option<&str>| match s {
            Some(s) => convert::repr_str(py, s),
            None => Ok("None".to_string()),
        };
        Ok(format!(
            "Link(name={}, cluster={})",
            show(self.inner.metadata.name.as_deref())?,
            show(self.inner.spec.target_cluster_name.as_deref())?
        ))
    }
}
