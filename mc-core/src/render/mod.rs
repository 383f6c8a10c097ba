//! Manifest rendering for `mc multicluster install | link | allow | unlink | uninstall`.
//!
//! Pure: every function takes value structs and returns Kubernetes objects as
//! [`serde_json::Value`]s, in apply order (namespaces and CRDs first). [`to_yaml`] and
//! [`to_json`] serialise a list for `kubectl apply -f -` (a `---`-separated YAML stream, or a
//! `v1/List`). The CLI, the Python module, the Helm-chart test and the e2e tests all render
//! through here, so they cannot drift apart.
//!
//! ```
//! use mc_core::render::{self, InstallValues};
//!
//! let objects = render::install(&InstallValues::default())?;
//! let service = objects
//!     .iter()
//!     .find(|o| o["kind"] == "Service" && o["metadata"]["name"] == "linkerd-gateway")
//!     .unwrap();
//! assert_eq!(service["spec"]["type"], "LoadBalancer");
//! assert!(render::to_yaml(&objects)?.starts_with("---\napiVersion: v1\nkind: Namespace\n"));
//! # Ok::<(), mc_core::Error>(())
//! ```

mod controllers;
mod delete;
mod egress;
mod install;
mod link;
mod values;

pub use controllers::InstallController;
pub use delete::{ObjectRef, delete_list, unlink_refs};
pub use egress::{ADMIN_PORT_NAME, egress_args, egress_identity_of};
pub use install::{
    IDENTITY_DIR, allow, controller_cluster_role_name, egress_identity_secret, gateway_args,
    gateway_identity_of, gateway_identity_secret, install, issuer_secret, remote_access_objects,
};
pub use link::{
    ControllerValues, LinkGateway, LinkValues, controller_args, controller_binding_name,
    controller_name, controller_role_name, credentials_secret_name, lease_name, link,
    link_controller, link_controller_for, old_lease_name,
};
pub use values::{
    ControllerDefaults, ControllerGatewayValues, ControllerProbeValues, DEFAULT_LINKERD_NAMESPACE,
    DEFAULT_NAMESPACE, DEFAULT_REGISTRY, DEFAULT_REMOTE_ACCESS_SA, EgressValues,
    GatewayPolicyValues, GatewayValues, IMAGE_NAME, IdentityValues, ImageValues, InstallValues,
    LocalServiceMirrorValues, ProbeValues, VERSION, merge, parse_values_yaml, set, split_names,
};

use std::collections::BTreeMap;

use serde_json::{Map, Value, json};

use crate::{Error, Result, labels};

/// Serialises objects as a YAML stream, each document starting with `---`.
pub fn to_yaml(objects: &[Value]) -> Result<String> {
    let mut out = String::new();
    for object in objects {
        let doc = serde_yaml::to_string(object).map_err(|e| Error::RenderSerialize {
            format: "YAML",
            reason: e.to_string(),
        })?;
        out.push_str("---\n");
        out.push_str(&doc);
    }
    Ok(out)
}

/// Serialises objects as one pretty-printed `v1/List`, which `kubectl apply -f -` accepts.
pub fn to_json(objects: &[Value]) -> Result<String> {
    let list = json!({"apiVersion": "v1", "kind": "List", "items": objects});
    let mut text = serde_json::to_string_pretty(&list).map_err(|e| Error::RenderSerialize {
        format: "JSON",
        reason: e.to_string(),
    })?;
    text.push('\n');
    Ok(text)
}

/// Output format of rendered manifests (`-o yaml|json`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Format {
    /// A `---`-separated YAML stream.
    #[default]
    Yaml,
    /// A JSON `v1/List`.
    Json,
}

impl Format {
    /// Serialises `objects` in this format.
    pub fn serialize(self, objects: &[Value]) -> Result<String> {
        match self {
            Format::Yaml => to_yaml(objects),
            Format::Json => to_json(objects),
        }
    }
}

/// Labels on everything the extension renders: `linkerd.io/extension: multicluster` plus the
/// common labels.
pub(crate) fn base_labels(common: &BTreeMap<String, String>) -> Map<String, Value> {
    let mut labels: Map<String, Value> = common
        .iter()
        .map(|(k, v)| (k.clone(), Value::String(v.clone())))
        .collect();
    labels.insert(
        labels::EXTENSION.to_owned(),
        Value::String(labels::EXTENSION_VALUE.to_owned()),
    );
    labels
}

/// `labels` plus `extra` (extra wins).
pub(crate) fn with(labels: &Map<String, Value>, extra: &[(&str, &str)]) -> Value {
    let mut out = labels.clone();
    for (k, v) in extra {
        out.insert((*k).to_owned(), Value::String((*v).to_owned()));
    }
    Value::Object(out)
}

/// Object metadata: name, optional namespace, labels.
pub(crate) fn meta(name: &str, namespace: Option<&str>, labels: Value) -> Value {
    let mut meta = json!({"name": name, "labels": labels});
    if let Some(ns) = namespace {
        meta["namespace"] = Value::String(ns.to_owned());
    }
    meta
}

/// Container security context shared by every mc container.
pub(crate) fn container_security() -> Value {
    json!({
        "allowPrivilegeEscalation": false,
        "readOnlyRootFilesystem": true,
        "capabilities": {"drop": ["ALL"]},
    })
}

/// Pod security context for the given UID/GID.
pub(crate) fn pod_security(uid: u32, gid: u32) -> Value {
    json!({
        "runAsNonRoot": true,
        "runAsUser": uid,
        "runAsGroup": gid,
        "seccompProfile": {"type": "RuntimeDefault"},
    })
}

/// `imagePullSecrets` entries.
pub(crate) fn pull_secrets(names: &[String]) -> Value {
    Value::Array(names.iter().map(|n| json!({"name": n})).collect())
}

/// Preferred pod anti-affinity on the node for pods labelled `key=value`.
pub(crate) fn anti_affinity(key: &str, value: &str) -> Value {
    json!({"podAntiAffinity": {"preferredDuringSchedulingIgnoredDuringExecution": [{
        "weight": 100,
        "podAffinityTerm": {
            "labelSelector": {"matchLabels": {key: value}},
            "topologyKey": "kubernetes.io/hostname",
        },
    }]}})
}

#[cfg(test)]
mod tests;
