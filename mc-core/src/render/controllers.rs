//! Install-managed mirror controllers: upstream's `controllers` list and `controllerDefaults`.
//!
//! Each `controllers` entry names a Link (`link.ref.name`) that need not exist yet (a Link
//! applied later by GitOps, e.g. from `linkerd multicluster link-gen`) and may override any
//! `controllerDefaults` key for its controller; the entry is merged over the defaults key by key
//! (maps deeply), as upstream's chart reads each key with `dig`. Each entry renders exactly the
//! objects `mc multicluster link --controller-only` renders for a Link of that name whose
//! credentials Secret is `cluster-credentials-<name>` (what `link-gen` and `link` write) and
//! whose probe port is `gateway.probe.port`.
//!
//! ```
//! use mc_core::render::{self, InstallValues};
//!
//! let mut tree = InstallValues::default_tree();
//! render::set(&mut tree, "controllers[0].link.ref.name=east,controllers[0].logLevel=debug", false)?;
//! let values = InstallValues::from_tree(&tree)?;
//! let controllers = values.controllers()?;
//! assert_eq!(controllers[0].link, "east");
//! assert_eq!(controllers[0].settings.log_level, "debug");
//! assert_eq!(controllers[0].settings.replicas, 1);
//! # Ok::<(), mc_core::Error>(())
//! ```

use serde_json::{Map, Value};

use super::link::{
    ControllerTarget, ControllerValues, check_log_settings, controller_objects,
    credentials_secret_name,
};
use super::values::{ControllerDefaults, InstallValues, bad, merge};
use crate::{Error, Result};

/// One resolved `controllers` entry: the Link it serves and its settings (the entry merged over
/// `controllerDefaults`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InstallController {
    /// Name of the Link (`link.ref.name`), in the install's namespace.
    pub link: String,
    /// The controller's settings.
    pub settings: ControllerDefaults,
}

/// Settings of Linkerd's controller that mc's controller has not, with the fix for each.
const UPSTREAM_ONLY: &[(&str, &str)] = &[
    (
        "image",
        "remove it: mc's controllers run the install's image (image.registry, image.tag)",
    ),
    (
        "retryLimit",
        "remove it: mc's controller retries with backoff, without a limit",
    ),
    (
        "enablePprof",
        "remove it: mc's controller has no pprof endpoint",
    ),
    (
        "enableTrustRootsMirroring",
        "remove it: mc's controller does not mirror trust roots",
    ),
    (
        "resources",
        "remove it: mc does not render controller resources yet",
    ),
    (
        "nodeSelector",
        "remove it: mc does not render controller node selectors yet",
    ),
    (
        "tolerations",
        "remove it: mc does not render controller tolerations yet",
    ),
    (
        "nodeAffinity",
        "remove it: mc does not render controller node affinity yet",
    ),
];

/// Refuses, naming `path.<key>` and the fix, a key of Linkerd's controller settings that mc's
/// controller has not.
pub(crate) fn refuse_upstream_only(path: &str, settings: &Value) -> Result<()> {
    let Some(map) = settings.as_object() else {
        return Ok(());
    };
    for (key, fix) in UPSTREAM_ONLY {
        if let Some(value) = map.get(*key) {
            return Err(bad(
                &format!("{path}.{key}"),
                &value.to_string(),
                "is a setting of Linkerd's service-mirror controller that mc's controller does not have",
                fix,
            ));
        }
    }
    Ok(())
}

const KEYS_FIX: &str = "use only the keys of controllerDefaults: replicas, gateway.enabled, \
                        gateway.probe.port, logLevel, logFormat, enableHeadlessServices, \
                        enablePodAntiAffinity, UID, GID";

const ENTRY_FIX: &str = "name the Link, e.g. controllers: [{link: {ref: {name: east}}}] \
                         or --set controllers[0].link.ref.name=east";

fn check_settings(path: &str, s: &ControllerDefaults) -> Result<()> {
    if s.replicas == 0 {
        return Err(bad(
            &format!("{path}.replicas"),
            "0",
            "leaves the controller without pods",
            "use at least 1, or remove the entry from controllers",
        ));
    }
    check_log_settings(
        (&format!("{path}.logLevel"), &s.log_level),
        (&format!("{path}.logFormat"), &s.log_format),
    )?;
    if s.gateway.enabled && s.gateway.probe.port == 0 {
        return Err(bad(
            &format!("{path}.gateway.probe.port"),
            "0",
            "is not a port",
            "use the Link's spec.probeSpec.port, e.g. 4191",
        ));
    }
    Ok(())
}

fn entry_name(i: usize, entry: &Value) -> Result<String> {
    let path = format!("controllers[{i}].link.ref.name");
    if !entry.is_object() {
        return Err(bad(
            &format!("controllers[{i}]"),
            &entry.to_string(),
            "is not a map",
            ENTRY_FIX,
        ));
    }
    let name = &entry["link"]["ref"]["name"];
    match name {
        Value::Null => Err(Error::RenderValue {
            path,
            problem: "is required (the Link this controller serves)".to_owned(),
            fix: ENTRY_FIX.to_owned(),
        }),
        Value::String(name) if crate::naming::is_dns1123_label(name) => Ok(name.clone()),
        // `--set …name=123` types the name as a number, which Helm's chart takes as the name.
        Value::Number(n) if crate::naming::is_dns1123_label(&n.to_string()) => Ok(n.to_string()),
        other => Err(bad(
            &path,
            other.as_str().unwrap_or(&other.to_string()),
            "is not a Link name",
            "use the Link's name: 1-63 characters of a-z, 0-9 and '-'",
        )),
    }
}

impl InstallValues {
    /// The `controllers` entries merged over `controllerDefaults`, checked: every entry names a
    /// Link (`link.ref.name`, a DNS label), no two name the same Link, only keys of
    /// `controllerDefaults` are overridden, and replicas, log level and format and the probe
    /// port are usable. Errors name the value's path (`controllers[1].logLevel`) and the fix.
    pub fn controllers(&self) -> Result<Vec<InstallController>> {
        check_settings("controllerDefaults", &self.controller_defaults)?;
        let defaults = serde_json::to_value(&self.controller_defaults).map_err(|e| {
            Error::RenderSerialize {
                format: "JSON",
                reason: format!("controllerDefaults: {e}"),
            }
        })?;
        let mut out: Vec<InstallController> = Vec::new();
        for (i, entry) in self.controllers.iter().enumerate() {
            let path = format!("controllers[{i}]");
            let link = entry_name(i, entry)?;
            if let Some(j) = out.iter().position(|c| c.link == link) {
                return Err(bad(
                    &format!("{path}.link.ref.name"),
                    &link,
                    &format!("is also the Link of controllers[{j}]"),
                    "give each Link one entry; two controllers of one Link would fight over its mirrors",
                ));
            }
            refuse_upstream_only(&path, entry)?;
            let mut overrides: Map<String, Value> = entry.as_object().cloned().unwrap_or_default();
            overrides.remove("link");
            let mut merged = defaults.clone();
            merge(&mut merged, Value::Object(overrides));
            let settings: ControllerDefaults =
                serde_json::from_value(merged).map_err(|e| Error::RenderValue {
                    path: path.clone(),
                    problem: e.to_string(),
                    fix: KEYS_FIX.to_owned(),
                })?;
            check_settings(&path, &settings)?;
            out.push(InstallController { link, settings });
        }
        Ok(out)
    }
}

/// The objects of every install-managed controller, in `controllers` order: for each, what
/// `link --controller-only` renders for its Link (see the module docs), with the install's
/// image, pull Secrets, `enableNamespaceCreation` and common labels.
pub(crate) fn install_controllers(
    values: &InstallValues,
    labels: &Map<String, Value>,
) -> Result<Vec<Value>> {
    let mut out = Vec::new();
    for c in values.controllers()? {
        let s = &c.settings;
        let target = ControllerTarget {
            link: &c.link,
            namespace: &values.namespace,
            credentials_secret: credentials_secret_name(&c.link),
            probe_port: s.gateway.enabled.then_some(s.gateway.probe.port),
        };
        let controller = ControllerValues {
            image: values.image.clone(),
            image_pull_secrets: values.image_pull_secrets.clone(),
            replicas: s.replicas,
            log_level: s.log_level.clone(),
            log_format: s.log_format.clone(),
            enable_headless_services: s.enable_headless_services,
            enable_namespace_creation: values.enable_namespace_creation,
            enable_pod_anti_affinity: s.enable_pod_anti_affinity,
            uid: s.uid,
            gid: s.gid,
            ..ControllerValues::default()
        };
        out.extend(controller_objects(&target, &controller, labels)?);
    }
    Ok(out)
}
