//! `mc.Selector`: Kubernetes label selectors (matchLabels and matchExpressions).

use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use mc_core::selector;
use pyo3::prelude::*;

use crate::convert;
use crate::errors::{IntoPyResult as _, new_kind_error};

/// A validated label selector. The empty selector matches nothing (as upstream, so that
/// nothing is exported by accident).
///
/// >>> s = Selector.parse("app=web,tier in (a,b),!legacy")
/// >>> s.matches({"app": "web", "tier": "a"})
/// True
/// >>> str(s)
/// 'app=web,tier in (a,b),!legacy'
#[pyclass(module = "mc", frozen, eq)]
#[derive(Clone, PartialEq)]
pub(crate) struct Selector {
    pub(crate) inner: selector::Selector,
}

#[pymethods]
impl Selector {
    /// Parses the string form used by `--selector`: comma-separated `k=v`, `k!=v`,
    /// `k in (a,b)`, `k notin (a,b)`, `k` (exists) and `!k` (does not exist). "" is the empty
    /// selector. Raises `mc.SelectorError`.
    #[new]
    #[pyo3(signature = (text=""))]
    fn new(text: &str) -> PyResult<Selector> {
        Selector::parse(text)
    }

    /// Same as `Selector(text)`.
    #[staticmethod]
    fn parse(text: &str) -> PyResult<Selector> {
        text.parse::<selector::Selector>()
            .py_err()
            .map(|inner| Selector { inner })
    }

    /// Validates a Kubernetes LabelSelector dict (`{"matchLabels": …, "matchExpressions":
    /// […]}`). Errors name the field, e.g. `matchExpressions[1].operator`.
    #[staticmethod]
    fn from_label_selector(value: &Bound<'_, PyAny>) -> PyResult<Selector> {
        let json = convert::to_json(value, "label_selector")?;
        let ls: LabelSelector = serde_json::from_value(json).map_err(|e| {
            new_kind_error(format!(
                "LabelSelector: {e}; fix: pass {{\"matchLabels\": {{k: v}}, \
                 \"matchExpressions\": [{{\"key\": k, \"operator\": \"In\", \"values\": [...]}}]}}"
            ))
        })?;
        selector::Selector::from_label_selector(&ls)
            .py_err()
            .map(|inner| Selector { inner })
    }

    /// The Kubernetes LabelSelector dict (empty parts left out).
    fn to_label_selector<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        convert::serde_to_py(py, &self.inner.to_label_selector())
    }

    /// Whether `labels` (a mapping of str to str) satisfy every requirement. The empty
    /// selector matches nothing.
    fn matches(&self, labels: BTreeMap<String, String>) -> bool {
        self.inner.matches(&labels)
    }

    /// Whether the selector has no requirement (and so matches nothing).
    fn is_empty(&self) -> bool {
        self.inner.is_empty()
    }

    /// The `labelSelector=` query for a list or watch; the empty selector gives a query that
    /// no object satisfies (the API server would read "" as everything).
    fn to_query(&self) -> String {
        self.inner.to_query()
    }

    fn __str__(&self) -> String {
        self.inner.to_string()
    }

    fn __repr__(&self, py: Python<'_>) -> PyResult<String> {
        Ok(format!(
            "Selector({})",
            convert::repr_str(py, &self.inner.to_string())?
        ))
    }

    fn __hash__(&self) -> u64 {
        use std::hash::{Hash as _, Hasher as _};
        let mut h = std::collections::hash_map::DefaultHasher::new();
        self.inner.to_string().hash(&mut h);
        h.finish()
    }
}
