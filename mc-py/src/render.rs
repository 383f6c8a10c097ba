//! `mc.render`: the manifests of `mc multicluster install | allow | link`, as dicts or text.
//!
//! Values use the chart's names (`gateway`, `identityTrustDomain`, …); top-level keyword
//! arguments may also be written in snake_case (`identity_trust_domain`). The value tree is
//! built exactly as the CLI builds it (defaults, `ha`, values, `values_yaml`, `set`,
//! `set_string`), then rendered by `mc_core::render` without the GIL.

use mc_core::render::{self, InstallValues, LinkValues};
use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;
use pyo3::types::{PyDict, PyList, PyString};
use serde_json::Value;

use crate::convert;
use crate::errors::{IntoPyResult as _, RenderError};

/// `identity_trust_domain` → `identityTrustDomain`; names without `_` are kept.
fn camel(key: &str) -> String {
    let mut out = String::with_capacity(key.len());
    for (i, part) in key.split('_').enumerate() {
        let mut chars = part.chars();
        match chars.next() {
            Some(first) if i > 0 => {
                out.push(first.to_ascii_uppercase());
                out.extend(chars);
            }
            Some(first) => {
                out.push(first);
                out.extend(chars);
            }
            None => {}
        }
    }
    out
}

/// The explicit `values` mapping followed by the keyword arguments, as one JSON object.
fn overlay(
    values: Option<&Bound<'_, PyAny>>,
    kwargs: Option<&Bound<'_, PyDict>>,
) -> PyResult<Vec<Value>> {
    let mut layers = Vec::new();
    if let Some(v) = values.filter(|v| !v.is_none()) {
        let tree = convert::to_json(v, "values")?;
        if !tree.is_object() {
            return Err(RenderError::new_err(
                "values must be a mapping of chart values, e.g. {\"gateway\": {\"enabled\": False}}",
            ));
        }
        layers.push(tree);
    }
    if let Some(kwargs) = kwargs {
        let mut map = serde_json::Map::new();
        for (k, v) in kwargs.iter() {
            let key = k.downcast::<PyString>()?.to_cow()?.into_owned();
            let value = convert::to_json(&v, &key)?;
            map.insert(camel(&key), value);
        }
        layers.push(Value::Object(map));
    }
    Ok(layers)
}

/// `set` and `set_string`: one assignment string or a list of them.
fn assignments(value: Option<&Bound<'_, PyAny>>) -> PyResult<Vec<String>> {
    match value {
        None => Ok(Vec::new()),
        Some(v) if v.is_none() => Ok(Vec::new()),
        Some(v) => match v.extract::<String>() {
            Ok(one) => Ok(vec![one]),
            Err(_) => v.extract::<Vec<String>>(),
        },
    }
}

/// The output forms: a list of dicts, YAML text or a JSON `v1/List` (serialised without the
/// GIL).
fn finish<'py>(py: Python<'py>, objects: Vec<Value>, output: &str) -> PyResult<Bound<'py, PyAny>> {
    let format = match output {
        "objects" => {
            let list = PyList::empty(py);
            for o in &objects {
                list.append(convert::to_py(py, o)?)?;
            }
            return Ok(list.into_any());
        }
        "yaml" => render::Format::Yaml,
        "json" => render::Format::Json,
        other => {
            return Err(PyValueError::new_err(format!(
                "output {other:?}: use \"objects\" (a list of dicts), \"yaml\" or \"json\""
            )));
        }
    };
    let text = py.allow_threads(|| format.serialize(&objects)).py_err()?;
    Ok(PyString::new(py, &text).into_any())
}

/// The merged install value tree, as the CLI builds it.
fn install_values(
    ha: bool,
    values: Option<&Bound<'_, PyAny>>,
    values_yaml: Option<&str>,
    set: Option<&Bound<'_, PyAny>>,
    set_string: Option<&Bound<'_, PyAny>>,
    kwargs: Option<&Bound<'_, PyDict>>,
) -> PyResult<InstallValues> {
    let mut tree = InstallValues::default_tree();
    if ha {
        render::merge(&mut tree, InstallValues::ha_tree());
    }
    for layer in overlay(values, kwargs)? {
        render::merge(&mut tree, layer);
    }
    if let Some(text) = values_yaml {
        render::merge(
            &mut tree,
            render::parse_values_yaml("values_yaml", text).py_err()?,
        );
    }
    for s in assignments(set)? {
        render::set(&mut tree, &s, false).py_err()?;
    }
    for s in assignments(set_string)? {
        render::set(&mut tree, &s, true).py_err()?;
    }
    InstallValues::from_tree(&tree).py_err()
}

/// Renders `mc multicluster install`: the namespace, the Link CRD, the gateway, the
/// remote-access ServiceAccounts and the controllers' ClusterRole, in apply order.
///
/// Values are the chart's (`gateway={"enabled": False}`, `identityTrustDomain="example.org"`,
/// or `identity_trust_domain=…`), merged over the defaults in this order: `ha` profile,
/// `values`, keyword arguments, `values_yaml` (a values file's text), `set` and `set_string`
/// (Helm `--set` syntax). `output` is "objects" (a list of dicts), "yaml" or "json". Raises
/// `mc.RenderError` naming the value. Rendering releases the GIL.
#[pyfunction]
#[pyo3(signature = (values=None, *, ha=false, values_yaml=None, set=None, set_string=None, output="objects", **kwargs))]
#[allow(clippy::too_many_arguments)]
fn install<'py>(
    py: Python<'py>,
    values: Option<&Bound<'py, PyAny>>,
    ha: bool,
    values_yaml: Option<&str>,
    set: Option<&Bound<'py, PyAny>>,
    set_string: Option<&Bound<'py, PyAny>>,
    output: &str,
    kwargs: Option<&Bound<'py, PyDict>>,
) -> PyResult<Bound<'py, PyAny>> {
    let values = install_values(ha, values, values_yaml, set, set_string, kwargs)?;
    let objects = py.allow_threads(|| render::install(&values)).py_err()?;
    finish(py, objects, output)
}

/// Renders `mc multicluster allow`: the namespace and one remote-access ServiceAccount set
/// (ServiceAccount, token Secret, least-privilege RBAC) per name in `service_accounts` (a list,
/// or comma-separated names). Other values as for `install`.
#[pyfunction]
#[pyo3(signature = (service_accounts, values=None, *, values_yaml=None, set=None, output="objects", **kwargs))]
fn allow<'py>(
    py: Python<'py>,
    service_accounts: &Bound<'py, PyAny>,
    values: Option<&Bound<'py, PyAny>>,
    values_yaml: Option<&str>,
    set: Option<&Bound<'py, PyAny>>,
    output: &str,
    kwargs: Option<&Bound<'py, PyDict>>,
) -> PyResult<Bound<'py, PyAny>> {
    let names = assignments(Some(service_accounts))?;
    let values = install_values(false, values, values_yaml, set, None, kwargs)?;
    let objects = py
        .allow_threads(|| render::allow(&values, &names))
        .py_err()?;
    finish(py, objects, output)
}

/// Renders `mc multicluster link`: the credentials Secret(s), the Link and the mirror
/// controller, to apply in the source cluster.
///
/// Values (keyword arguments, snake_case or camelCase, or a `values` mapping):
/// `cluster_name` and `kubeconfig` (required); `gateway` = {"addresses": [...], "port": 4143,
/// "identity": ..., "probePath": "/ready", "probePort": 4191, "probePeriod": "3s"} or None for
/// a gateway-less link; `namespace`, `linkerd_namespace`, `target_linkerd_namespace`,
/// `cluster_domain`, `trust_domain`, `selector`, `remote_discovery_selector`,
/// `federated_service_selector`, `excluded_labels`, `excluded_annotations`,
/// `control_plane_secret`, `controller` (a mapping, or None for no controller), `created_by`.
#[pyfunction]
#[pyo3(signature = (values=None, *, output="objects", **kwargs))]
fn link<'py>(
    py: Python<'py>,
    values: Option<&Bound<'py, PyAny>>,
    output: &str,
    kwargs: Option<&Bound<'py, PyDict>>,
) -> PyResult<Bound<'py, PyAny>> {
    let mut tree = serde_json::to_value(LinkValues::default())
        .map_err(|e| RenderError::new_err(format!("default link values: {e}")))?;
    for layer in overlay(values, kwargs)? {
        render::merge(&mut tree, layer);
    }
    let values: LinkValues = serde_json::from_value(tree).map_err(|e| {
        RenderError::new_err(format!(
            "link values: {e}; fix: use the names listed in help(mc.render.link)"
        ))
    })?;
    let objects = py.allow_threads(|| render::link(&values)).py_err()?;
    finish(py, objects, output)
}

/// The default install values (the chart's values.yaml) as a dict.
#[pyfunction]
fn install_defaults(py: Python<'_>) -> PyResult<Bound<'_, PyAny>> {
    convert::to_py(py, &InstallValues::default_tree())
}

/// Serialises a list of object dicts as a `---`-separated YAML stream for `kubectl apply -f -`.
#[pyfunction]
fn to_yaml(objects: &Bound<'_, PyAny>) -> PyResult<String> {
    render::to_yaml(&objects_json(objects)?).py_err()
}

/// Serialises a list of object dicts as one JSON `v1/List`.
#[pyfunction]
fn to_json(objects: &Bound<'_, PyAny>) -> PyResult<String> {
    render::to_json(&objects_json(objects)?).py_err()
}

fn objects_json(objects: &Bound<'_, PyAny>) -> PyResult<Vec<Value>> {
    match convert::to_json(objects, "objects")? {
        Value::Array(items) => Ok(items),
        _ => Err(PyValueError::new_err("objects must be a list of dicts")),
    }
}

/// Fills the native submodule `mc._mc.render` (re-exported as `mc.render`).
pub(crate) fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_function(wrap_pyfunction!(install, m)?)?;
    m.add_function(wrap_pyfunction!(allow, m)?)?;
    m.add_function(wrap_pyfunction!(link, m)?)?;
    m.add_function(wrap_pyfunction!(install_defaults, m)?)?;
    m.add_function(wrap_pyfunction!(to_yaml, m)?)?;
    m.add_function(wrap_pyfunction!(to_json, m)?)?;
    Ok(())
}
