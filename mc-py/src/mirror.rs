//! Mirror names and desired mirror objects: `mc.mirror_name`, `mc.desired_mirror`, … — the
//! computation the mirror controller runs, on Python dicts.

use std::net::IpAddr;

use k8s_openapi::api::core::v1::{Endpoints, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use mc_core::link::ValidLink;
use mc_core::mirror::{self, Gateway, MirrorContext, MirrorKind, Ownership, RemoteEndpoints};
use mc_core::naming;
use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;
use pyo3::types::{PyList, PyTuple};

use crate::convert;
use crate::errors::{IntoPyResult as _, new_kind_error};
use crate::link::Link;

/// The mirror of remote Service `service` from cluster `cluster`: `<service>-<cluster>`,
/// shortened deterministically (readable prefix + hash) when longer than 63 characters.
#[pyfunction]
fn mirror_name(service: &str, cluster: &str) -> String {
    naming::mirror_name(service, cluster).name
}

/// The endpoint mirror of pod hostname `host` behind a headless Service: `<host>-<cluster>`.
#[pyfunction]
fn endpoint_mirror_name(host: &str, cluster: &str) -> String {
    naming::endpoint_mirror_name(host, cluster).name
}

/// The federated Service of `service`: `<service>-federated`.
#[pyfunction]
fn federated_name(service: &str) -> String {
    naming::federated_name(service).name
}

/// The probe Service of Link `link`: `mc-probe-<link>`.
#[pyfunction]
fn probe_service_name(link: &str) -> String {
    naming::probe_service_name(link).name
}

/// The metadata of an object dict (a Service or Endpoints as the API returns it).
fn metadata(obj: &Bound<'_, PyAny>, what: &str) -> PyResult<ObjectMeta> {
    let json = convert::to_json(obj, what)?;
    let meta = json.get("metadata").cloned().ok_or_else(|| {
        new_kind_error(format!(
            "{what}: has no metadata; fix: pass a Kubernetes object dict (with metadata)"
        ))
    })?;
    serde_json::from_value(meta)
        .map_err(|e| new_kind_error(format!("{what}.metadata: {e}; fix: pass ObjectMeta")))
}

/// The remote `(namespace, name)` a local mirror object (dict) stands for, or None when it is
/// not a mirror of `cluster`. Uses the original-name annotation, so shortened names map back.
#[pyfunction]
fn remote_name(obj: &Bound<'_, PyAny>, cluster: &str) -> PyResult<Option<(String, String)>> {
    Ok(naming::remote_name(&metadata(obj, "obj")?, cluster))
}

/// Who owns a local object (dict), seen as the mirror of `cluster`: "ours", "other-cluster"
/// (a mirror of another linked cluster) or "foreign" (never touch it).
#[pyfunction]
fn ownership(obj: &Bound<'_, PyAny>, cluster: &str) -> PyResult<&'static str> {
    Ok(match mirror::ownership(&metadata(obj, "obj")?, cluster) {
        Ownership::Ours => "ours",
        Ownership::OtherCluster(_) => "other-cluster",
        Ownership::Foreign => "foreign",
    })
}

/// Parses a Kubernetes object dict of type `K` (apiVersion and kind must match).
fn parse<K>(obj: &Bound<'_, PyAny>, what: &str) -> PyResult<K>
where
    K: k8s_openapi::Resource + serde::de::DeserializeOwned,
{
    mirror::parse_object::<K>(convert::to_json(obj, what)?).py_err()
}

/// The remote endpoints summary: None (no Endpoints), an Endpoints dict, or a list of
/// EndpointSlice dicts.
fn remote_endpoints(obj: Option<&Bound<'_, PyAny>>) -> PyResult<RemoteEndpoints> {
    match obj {
        None => Ok(RemoteEndpoints::Missing),
        Some(o) if o.is_none() => Ok(RemoteEndpoints::Missing),
        Some(o) if o.is_instance_of::<PyList>() || o.is_instance_of::<PyTuple>() => {
            let slices = o
                .try_iter()?
                .map(|s| parse::<EndpointSlice>(&s?, "remote_endpoints[]"))
                .collect::<PyResult<Vec<_>>>()?;
            Ok(RemoteEndpoints::from_slices(&slices))
        }
        Some(o) => Ok(RemoteEndpoints::from_endpoints(&parse::<Endpoints>(
            o,
            "remote_endpoints",
        )?)),
    }
}

/// The Link's gateway at the resolved `ips`, or None (gateway-less Link, or nothing resolved).
fn gateway(link: &ValidLink, ips: &[String]) -> PyResult<Option<Gateway>> {
    let ips = ips
        .iter()
        .enumerate()
        .map(|(i, ip)| {
            ip.trim().parse::<IpAddr>().map_err(|_| {
                PyValueError::new_err(format!(
                    "gateway_ips[{i}]: {ip:?} is not an IP address; fix: resolve the Link's \
                     gateway addresses first and pass the IPs"
                ))
            })
        })
        .collect::<PyResult<Vec<_>>>()?;
    Ok(match &link.gateway {
        Some(spec) if !ips.is_empty() => Some(Gateway::from_spec(spec, ips)),
        _ => None,
    })
}

/// One remote Service and its endpoints summary, parsed.
type Input = (Service, RemoteEndpoints);

/// Runs the model for each input, without the GIL.
fn compute(
    py: Python<'_>,
    inputs: Vec<Input>,
    link: &Link,
    gateway_ips: &[String],
    alive: bool,
    headless_enabled: bool,
) -> PyResult<Vec<mirror::DesiredMirror>> {
    let valid = link.valid()?;
    let gateway = gateway(&valid, gateway_ips)?;
    py.allow_threads(|| {
        let ctx = MirrorContext {
            link: &valid,
            gateway: gateway.as_ref(),
            alive,
            headless_enabled,
        };
        inputs
            .iter()
            .map(|(svc, eps)| mirror::desired_mirror(svc, eps, &ctx))
            .collect::<mc_core::Result<Vec<_>>>()
    })
    .py_err()
}

/// Parses one remote Service and its endpoints, and runs the model on them.
fn compute_one(
    py: Python<'_>,
    remote_service: &Bound<'_, PyAny>,
    remote_endpoints: Option<&Bound<'_, PyAny>>,
    link: &Link,
    gateway_ips: &[String],
    alive: bool,
    headless: bool,
) -> PyResult<mirror::DesiredMirror> {
    let svc = parse::<Service>(remote_service, "remote_service")?;
    let eps = self::remote_endpoints(remote_endpoints)?;
    compute(py, vec![(svc, eps)], link, gateway_ips, alive, headless)?
        .pop()
        .ok_or_else(|| crate::errors::Error::new_err("no result was computed"))
}

/// Converts one result to `(service_dict, endpoints_dict_or_None)`.
fn output<'py>(py: Python<'py>, d: &mirror::DesiredMirror) -> PyResult<Bound<'py, PyTuple>> {
    PyTuple::new(
        py,
        [
            convert::serde_to_py(py, &d.service)?,
            convert::serde_to_py(py, &d.endpoints)?,
        ],
    )
}

/// Computes the local mirror of a remote Service: exactly the Service and Endpoints the mirror
/// controller would write, as dicts.
///
/// - `remote_service`: the target cluster's Service dict (apiVersion v1, kind Service);
/// - `remote_endpoints`: its Endpoints dict, a list of its EndpointSlice dicts, or None when it
///   has none (the mirror then gets no addresses);
/// - `link`: the Link (validated here, raising `mc.LinkError`);
/// - `gateway_ips`: the gateway addresses, already resolved to IPs;
/// - `alive`: whether the gateway probe succeeds (addresses become notReadyAddresses if not).
///
/// Returns `(service, endpoints)`; `endpoints` is None for a remote-discovery mirror. Raises
/// `mc.KindError` (a TypeError) for a dict that is not a Service, `mc.MirrorError` when the
/// Service cannot be mirrored under this Link (not exported, no ports, no gateway). The
/// computation releases the GIL.
#[pyfunction]
fn desired_mirror<'py>(
    py: Python<'py>,
    remote_service: &Bound<'py, PyAny>,
    remote_endpoints: Option<&Bound<'py, PyAny>>,
    link: &Link,
    gateway_ips: Vec<String>,
    alive: bool,
) -> PyResult<Bound<'py, PyTuple>> {
    let one = compute_one(
        py,
        remote_service,
        remote_endpoints,
        link,
        &gateway_ips,
        alive,
        false,
    )?;
    output(py, &one)
}

/// `desired_mirror` over many remote Services at once: `remote` is a list of
/// `(service, endpoints)` pairs; returns the list of `(service, endpoints)` results in the same
/// order. The first Service that cannot be mirrored raises. The computation releases the GIL.
#[pyfunction]
fn desired_mirrors<'py>(
    py: Python<'py>,
    remote: &Bound<'py, PyAny>,
    link: &Link,
    gateway_ips: Vec<String>,
    alive: bool,
) -> PyResult<Bound<'py, PyList>> {
    let mut inputs = Vec::new();
    for (i, pair) in remote.try_iter()?.enumerate() {
        let (svc, eps): (Bound<'py, PyAny>, Bound<'py, PyAny>) = pair?.extract().map_err(|_| {
            new_kind_error(format!(
                "remote[{i}]: expected a (service, endpoints) pair; fix: pass a list of \
                 (service_dict, endpoints_dict_or_None) tuples"
            ))
        })?;
        inputs.push((
            parse::<Service>(&svc, &format!("remote[{i}][0]"))?,
            remote_endpoints(Some(&eps))?,
        ));
    }
    let results = compute(py, inputs, link, &gateway_ips, alive, false)?;
    let list = PyList::empty(py);
    for one in &results {
        list.append(output(py, one)?)?;
    }
    Ok(list)
}

/// Everything the controller computes for one remote Service, including headless mirrors.
#[pyclass(module = "mc", frozen, get_all)]
pub(crate) struct DesiredMirror {
    /// The mirror's name (also the Service's `metadata.name`).
    name: String,
    /// Whether the natural name was too long and was shortened.
    shortened: bool,
    /// "gateway", "remote-discovery" or "headless".
    kind: &'static str,
    /// The mirror Service dict.
    service: PyObject,
    /// Its Endpoints dict: set in gateway mode; None in remote-discovery mode, and for headless
    /// mirrors (see `headless_endpoints`, once the endpoint mirrors have ClusterIPs).
    endpoints: PyObject,
    /// Headless only: one `(service, endpoints)` pair of dicts per ready remote hostname.
    endpoint_mirrors: Vec<(PyObject, PyObject)>,
}

#[pymethods]
impl DesiredMirror {
    fn __repr__(&self) -> String {
        format!("DesiredMirror(name={:?}, kind={:?})", self.name, self.kind)
    }
}

/// Like `desired_mirror`, with headless mirroring as the controller's
/// `--enable-headless-services` flag does it, and returning a `DesiredMirror` with every
/// object (including the per-host endpoint mirrors of a headless Service).
#[pyfunction]
#[pyo3(signature = (remote_service, remote_endpoints, link, gateway_ips, alive, *, headless=false))]
fn compute_mirror(
    py: Python<'_>,
    remote_service: &Bound<'_, PyAny>,
    remote_endpoints: Option<&Bound<'_, PyAny>>,
    link: &Link,
    gateway_ips: Vec<String>,
    alive: bool,
    headless: bool,
) -> PyResult<DesiredMirror> {
    let d = compute_one(
        py,
        remote_service,
        remote_endpoints,
        link,
        &gateway_ips,
        alive,
        headless,
    )?;
    let pair = |(s, e): &(Service, Endpoints)| -> PyResult<(PyObject, PyObject)> {
        Ok((
            convert::serde_to_py(py, s)?.unbind(),
            convert::serde_to_py(py, e)?.unbind(),
        ))
    };
    Ok(DesiredMirror {
        name: d.name.name.clone(),
        shortened: d.name.shortened,
        kind: match d.kind {
            MirrorKind::Gateway => "gateway",
            MirrorKind::RemoteDiscovery => "remote-discovery",
            MirrorKind::Headless => "headless",
        },
        service: convert::serde_to_py(py, &d.service)?.unbind(),
        endpoints: convert::serde_to_py(py, &d.endpoints)?.unbind(),
        endpoint_mirrors: d
            .endpoint_mirrors
            .iter()
            .map(pair)
            .collect::<PyResult<_>>()?,
    })
}

/// The Endpoints of a headless mirror (a Service dict): for each `(hostname, cluster_ip)` of
/// its endpoint mirrors, an address with that hostname, so `<host>.<mirror>.<ns>.svc` resolves.
#[pyfunction]
fn headless_endpoints<'py>(
    py: Python<'py>,
    mirror_service: &Bound<'py, PyAny>,
    hosts: Vec<(String, String)>,
) -> PyResult<Bound<'py, PyAny>> {
    let svc = parse::<Service>(mirror_service, "mirror_service")?;
    let hosts = hosts
        .into_iter()
        .enumerate()
        .map(|(i, (host, ip))| {
            ip.parse::<IpAddr>().map(|ip| (host, ip)).map_err(|_| {
                PyValueError::new_err(format!("hosts[{i}]: {ip:?} is not an IP address"))
            })
        })
        .collect::<PyResult<Vec<_>>>()?;
    convert::serde_to_py(py, &mirror::headless_endpoints(&svc, &hosts))
}

/// The probe Service `mc-probe-<cluster>` and its Endpoints (the gateway IPs on the probe port),
/// in `namespace` (the Link's): what the controller writes so the gateway can be probed.
/// Returns `(service, endpoints)`; both are None when the Link has no probe, and `endpoints` is
/// None when no gateway IP is given. Raises `mc.LinkError` for an invalid Link.
#[pyfunction]
#[pyo3(signature = (link, gateway_ips, namespace=None))]
fn probe_objects<'py>(
    py: Python<'py>,
    link: &Link,
    gateway_ips: Vec<String>,
    namespace: Option<&str>,
) -> PyResult<Bound<'py, PyTuple>> {
    let valid = link.valid()?;
    let namespace = namespace
        .or(link.inner.metadata.namespace.as_deref())
        .unwrap_or(mc_core::render::DEFAULT_NAMESPACE);
    let gateway = gateway(&valid, &gateway_ips)?;
    let svc = mirror::probe_service(&valid, namespace);
    let eps = gateway
        .as_ref()
        .and_then(|g| mirror::probe_endpoints(&valid, namespace, g));
    PyTuple::new(
        py,
        [
            convert::serde_to_py(py, &svc)?,
            convert::serde_to_py(py, &eps)?,
        ],
    )
}

/// Whether an existing object (`actual`, as read from the API server) differs from `desired` in
/// what the mirror owns, so a write is needed. Both are dicts of the same kind (Service or
/// Endpoints); fields the API server fills in are ignored.
#[pyfunction]
fn needs_update(desired: &Bound<'_, PyAny>, actual: &Bound<'_, PyAny>) -> PyResult<bool> {
    let kind = convert::to_json(desired, "desired")?
        .get("kind")
        .and_then(|k| k.as_str().map(str::to_string))
        .unwrap_or_default();
    match kind.as_str() {
        "Service" => Ok(mirror::service_needs_update(
            &parse::<Service>(desired, "desired")?,
            &parse::<Service>(actual, "actual")?,
        )),
        "Endpoints" => Ok(mirror::endpoints_needs_update(
            &parse::<Endpoints>(desired, "desired")?,
            &parse::<Endpoints>(actual, "actual")?,
        )),
        other => Err(new_kind_error(format!(
            "desired: kind {other:?} is neither Service nor Endpoints; fix: pass a result of \
             desired_mirror"
        ))),
    }
}

/// Registers the functions.
pub(crate) fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_function(wrap_pyfunction!(mirror_name, m)?)?;
    m.add_function(wrap_pyfunction!(endpoint_mirror_name, m)?)?;
    m.add_function(wrap_pyfunction!(federated_name, m)?)?;
    m.add_function(wrap_pyfunction!(probe_service_name, m)?)?;
    m.add_function(wrap_pyfunction!(remote_name, m)?)?;
    m.add_function(wrap_pyfunction!(ownership, m)?)?;
    m.add_function(wrap_pyfunction!(desired_mirror, m)?)?;
    m.add_function(wrap_pyfunction!(desired_mirrors, m)?)?;
    m.add_function(wrap_pyfunction!(needs_update, m)?)?;
    m.add_function(wrap_pyfunction!(probe_objects, m)?)?;
    m.add_function(wrap_pyfunction!(compute_mirror, m)?)?;
    m.add_function(wrap_pyfunction!(headless_endpoints, m)?)?;
    m.add_class::<DesiredMirror>()?;
    Ok(())
}
