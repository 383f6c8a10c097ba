//! The trust settings of a Linkerd control plane, read from the `values` key of its
//! `linkerd-config` ConfigMap.

use std::time::SystemTime;

use serde_yaml::Value;

use super::TrustBundle;
use crate::{Error, Result};

/// The default cluster domain when `clusterDomain` is absent or empty.
const DEFAULT_CLUSTER_DOMAIN: &str = "cluster.local";

/// Trust settings of a Linkerd control plane.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LinkerdConfig {
    /// `identityTrustAnchorsPEM`: the PEM bundle of trust anchors (not yet validated; see
    /// [`LinkerdConfig::trust_bundle`]).
    pub trust_anchors_pem: String,
    /// `identityTrustDomain`, or `clusterDomain` when that is empty or absent.
    pub trust_domain: String,
    /// `clusterDomain`, `cluster.local` when empty or absent.
    pub cluster_domain: String,
}

impl LinkerdConfig {
    /// Reads the `values` YAML of a `linkerd-config` ConfigMap, with or without the legacy
    /// `global:` wrapper (top-level keys win over `global` ones).
    ///
    /// ```
    /// use mc_core::trust::LinkerdConfig;
    ///
    /// let values = "global:\n  identityTrustAnchorsPEM: |\n    -----BEGIN CERTIFICATE-----\n  clusterDomain: example.org\n";
    /// let config = LinkerdConfig::from_values_yaml(values)?;
    /// assert_eq!(config.trust_domain, "example.org");
    /// assert_eq!(config.cluster_domain, "example.org");
    /// assert!(config.trust_anchors_pem.starts_with("-----BEGIN CERTIFICATE-----"));
    /// # Ok::<(), mc_core::Error>(())
    /// ```
    pub fn from_values_yaml(values: &str) -> Result<LinkerdConfig> {
        let root: Value = serde_yaml::from_str(values).map_err(|e| Error::LinkerdConfig {
            field: "values".to_string(),
            reason: format!("not valid YAML: {e}"),
            fix: "pass the `values` key of the linkerd-config ConfigMap unchanged \
                  (kubectl -n linkerd get cm linkerd-config -o jsonpath='{.data.values}')",
        })?;
        if !root.is_mapping() {
            return Err(Error::LinkerdConfig {
                field: "values".to_string(),
                reason: "is not a YAML mapping".to_string(),
                fix: "pass the `values` key of the linkerd-config ConfigMap, a mapping of chart values",
            });
        }
        let anchors = string_field(&root, "identityTrustAnchorsPEM")?.ok_or_else(|| {
            Error::LinkerdConfig {
                field: "values.identityTrustAnchorsPEM".to_string(),
                reason: "is missing or empty".to_string(),
                fix: "install Linkerd with --identity-trust-anchors-file (or set \
                      identityTrustAnchorsPEM in the chart values)",
            }
        })?;
        let cluster_domain = string_field(&root, "clusterDomain")?
            .unwrap_or_else(|| DEFAULT_CLUSTER_DOMAIN.to_string());
        let trust_domain =
            string_field(&root, "identityTrustDomain")?.unwrap_or_else(|| cluster_domain.clone());
        Ok(LinkerdConfig {
            trust_anchors_pem: anchors,
            trust_domain,
            cluster_domain,
        })
    }

    /// Parses and validates [`LinkerdConfig::trust_anchors_pem`] at `now`.
    pub fn trust_bundle(&self, now: SystemTime) -> Result<TrustBundle> {
        TrustBundle::from_pem(&self.trust_anchors_pem, now)
    }
}

/// A non-empty string at `key`, looked up at the top level, then under `global`.
fn string_field(root: &Value, key: &str) -> Result<Option<String>> {
    let candidates = [
        (root.get(key), format!("values.{key}")),
        (
            root.get("global").and_then(|g| g.get(key)),
            format!("values.global.{key}"),
        ),
    ];
    for (value, path) in candidates {
        match value {
            None | Some(Value::Null) => {}
            Some(Value::String(s)) if s.trim().is_empty() => {}
            Some(Value::String(s)) => return Ok(Some(s.clone())),
            Some(other) => {
                return Err(Error::LinkerdConfig {
                    field: path,
                    reason: format!("is a {}, not a string", kind(other)),
                    fix: "set it to a string in the Linkerd control-plane chart values",
                });
            }
        }
    }
    Ok(None)
}

fn kind(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Sequence(_) => "list",
        Value::Mapping(_) => "mapping",
        Value::Tagged(_) => "tagged value",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_top_level_values() {
        let yaml = "identityTrustAnchorsPEM: |\n  -----BEGIN CERTIFICATE-----\n  abc\nidentityTrustDomain: td.example\nclusterDomain: cd.example\nother: 1\n";
        let c = LinkerdConfig::from_values_yaml(yaml).unwrap();
        assert_eq!(c.trust_anchors_pem, "-----BEGIN CERTIFICATE-----\nabc\n");
        assert_eq!(c.trust_domain, "td.example");
        assert_eq!(c.cluster_domain, "cd.example");
    }

    #[test]
    fn reads_legacy_global_wrapper() {
        let yaml = "global:\n  identityTrustAnchorsPEM: PEM\n  identityTrustDomain: td.example\n  clusterDomain: cd.example\n";
        let c = LinkerdConfig::from_values_yaml(yaml).unwrap();
        assert_eq!(
            (
                c.trust_anchors_pem.as_str(),
                c.trust_domain.as_str(),
                c.cluster_domain.as_str()
            ),
            ("PEM", "td.example", "cd.example")
        );
    }

    #[test]
    fn top_level_wins_over_global() {
        let yaml = "identityTrustAnchorsPEM: TOP\nglobal:\n  identityTrustAnchorsPEM: GLOBAL\n  clusterDomain: g.example\n";
        let c = LinkerdConfig::from_values_yaml(yaml).unwrap();
        assert_eq!(c.trust_anchors_pem, "TOP");
        assert_eq!(c.cluster_domain, "g.example");
    }

    #[test]
    fn trust_domain_falls_back_to_cluster_domain_which_defaults() {
        let c = LinkerdConfig::from_values_yaml(
            "identityTrustAnchorsPEM: P\nidentityTrustDomain: \"\"\nclusterDomain: c.example\n",
        )
        .unwrap();
        assert_eq!(c.trust_domain, "c.example");
        let c =
            LinkerdConfig::from_values_yaml("identityTrustAnchorsPEM: P\nclusterDomain: null\n")
                .unwrap();
        assert_eq!(
            (c.trust_domain.as_str(), c.cluster_domain.as_str()),
            ("cluster.local", "cluster.local")
        );
    }

    #[test]
    fn missing_anchors_is_an_error_naming_the_field() {
        let err = LinkerdConfig::from_values_yaml("clusterDomain: x\n").unwrap_err();
        assert!(
            err.to_string().starts_with(
                "linkerd-config values: values.identityTrustAnchorsPEM: is missing or empty; fix:"
            ),
            "{err}"
        );
        let err = LinkerdConfig::from_values_yaml("identityTrustAnchorsPEM: \"  \"\n").unwrap_err();
        assert!(
            matches!(err, Error::LinkerdConfig { ref field, .. } if field == "values.identityTrustAnchorsPEM")
        );
    }

    #[test]
    fn wrong_types_and_bad_yaml_are_errors() {
        let err = LinkerdConfig::from_values_yaml(
            "identityTrustAnchorsPEM: P\nglobal:\n  clusterDomain: [a]\n",
        )
        .unwrap_err();
        assert_eq!(
            err.to_string(),
            "linkerd-config values: values.global.clusterDomain: is a list, not a string; fix: set it to a string in the Linkerd control-plane chart values"
        );
        let err = LinkerdConfig::from_values_yaml("a: [\n").unwrap_err();
        assert!(err.to_string().contains("not valid YAML"), "{err}");
        let err = LinkerdConfig::from_values_yaml("- a\n").unwrap_err();
        assert!(err.to_string().contains("is not a YAML mapping"), "{err}");
    }
}
