//! The `links.multicluster.linkerd.io` CustomResourceDefinition: upstream's group, versions and
//! field names, so Links written by upstream tooling are accepted and vice versa. Additions of
//! mc: `status.gateway`, and format and range checks upstream's schema does not make.

use std::collections::BTreeMap;

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::{
    CustomResourceDefinition, CustomResourceDefinitionNames, CustomResourceDefinitionSpec,
    CustomResourceDefinitionVersion, CustomResourceSubresourceStatus, CustomResourceSubresources,
    CustomResourceValidation, JSON, JSONSchemaProps, JSONSchemaPropsOrArray,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

use super::{CRD_NAME, GROUP, KIND, PLURAL, VERSION, VERSIONS};
use crate::labels;
use crate::selector::Operator;

/// The Link CRD: v1alpha1 (no status subresource), v1alpha2 and v1alpha3 (storage), structural
/// schemas with upstream's field names and defaults (`probeSpec.timeout: 30s`,
/// `probeSpec.failureThreshold: "3"`).
pub fn crd() -> CustomResourceDefinition {
    CustomResourceDefinition {
        metadata: ObjectMeta {
            name: Some(CRD_NAME.to_string()),
            labels: Some(
                [(
                    labels::EXTENSION.to_string(),
                    labels::EXTENSION_VALUE.to_string(),
                )]
                .into(),
            ),
            annotations: Some(
                [(
                    labels::CREATED_BY.to_string(),
                    format!("mc/{}", env!("CARGO_PKG_VERSION")),
                )]
                .into(),
            ),
            ..ObjectMeta::default()
        },
        spec: CustomResourceDefinitionSpec {
            group: GROUP.to_string(),
            names: CustomResourceDefinitionNames {
                kind: KIND.to_string(),
                plural: PLURAL.to_string(),
                singular: Some("link".to_string()),
                ..CustomResourceDefinitionNames::default()
            },
            scope: "Namespaced".to_string(),
            versions: VERSIONS.iter().map(|v| version(v)).collect(),
            ..CustomResourceDefinitionSpec::default()
        },
        status: None,
    }
}

fn version(name: &str) -> CustomResourceDefinitionVersion {
    let level = VERSIONS.iter().position(|v| *v == name).unwrap_or(0);
    let mut root = vec![("spec", spec_schema(level))];
    if level >= 1 {
        root.push(("status", status_schema()));
    }
    CustomResourceDefinitionVersion {
        name: name.to_string(),
        served: true,
        storage: name == VERSION,
        schema: Some(CustomResourceValidation {
            open_api_v3_schema: Some(object("", root, &[])),
        }),
        subresources: (level >= 1).then(|| CustomResourceSubresources {
            status: Some(CustomResourceSubresourceStatus(serde_json::json!({}))),
            scale: None,
        }),
        ..CustomResourceDefinitionVersion::default()
    }
}

/// The spec schema of version index `level` (0 = v1alpha1).
fn spec_schema(level: usize) -> JSONSchemaProps {
    let mut period = string("Interval in between probe requests");
    if level >= 1 {
        period.format = Some("duration".to_string());
    }
    let mut timeout = string("Probe request timeout");
    timeout.format = Some("duration".to_string());
    timeout.default = Some(JSON(serde_json::json!("30s")));
    let mut threshold =
        string("Minimum consecutive failures for the probe to be considered failed");
    threshold.default = Some(JSON(serde_json::json!("3")));
    let probe = object(
        "Spec for gateway health probe",
        vec![
            ("failureThreshold", threshold),
            ("path", string("Path of remote gateway health endpoint")),
            ("period", period),
            ("port", string("Port of remote gateway health endpoint")),
            ("timeout", timeout),
        ],
        &[],
    );
    let mut props = vec![
        (
            "clusterCredentialsSecret",
            string("Kubernetes secret of target cluster"),
        ),
        (
            "gatewayAddress",
            string("Gateway address of target cluster"),
        ),
        ("gatewayIdentity", string("Gateway Identity FQDN")),
        ("gatewayPort", string("Gateway Port")),
        ("probeSpec", probe),
        ("selector", selector("Kubernetes Label Selector")),
        (
            "remoteDiscoverySelector",
            selector("Selector for Services to mirror in remote discovery mode"),
        ),
        (
            "targetClusterName",
            string("Name of target cluster to link to"),
        ),
        (
            "targetClusterDomain",
            string("Domain name of target cluster to link to"),
        ),
        (
            "targetClusterLinkerdNamespace",
            string("Name of namespace Linkerd control plane is installed in on target cluster"),
        ),
    ];
    if level >= 1 {
        props.push((
            "federatedServiceSelector",
            selector("Selector for Services to join federated services"),
        ));
    }
    if level >= 2 {
        props.push((
            "excludedAnnotations",
            array(
                "Annotations not copied to mirrors; an entry ending in /* is a prefix",
                string(""),
            ),
        ));
        props.push((
            "excludedLabels",
            array(
                "Labels not copied to mirrors; an entry ending in /* is a prefix",
                string(""),
            ),
        ));
    }
    object("", props, &[])
}

fn selector(description: &str) -> JSONSchemaProps {
    let mut match_labels = object("", vec![], &[]);
    match_labels.x_kubernetes_preserve_unknown_fields = Some(true);
    let mut operator = string("Evaluation of a label in relation to set");
    operator.enum_ = Some(
        Operator::ALL
            .iter()
            .map(|o| JSON(serde_json::json!(o.as_str())))
            .collect(),
    );
    let requirement = object(
        "A selector item requires a key and an operator",
        vec![
            ("key", string("Label key that selector should apply to")),
            ("operator", operator),
            ("values", array("", string(""))),
        ],
        &["key", "operator"],
    );
    object(
        description,
        vec![
            ("matchLabels", match_labels),
            (
                "matchExpressions",
                array("List of selector requirements", requirement),
            ),
        ],
        &[],
    )
}

fn status_schema() -> JSONSchemaProps {
    let service_status = object(
        "",
        vec![
            (
                "controllerName",
                bounded(
                    "Controller that wrote this entry",
                    1,
                    253,
                    r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*\/[A-Za-z0-9\/\-._~%!$&'()*+,;=:]+$",
                ),
            ),
            ("remoteRef", object_ref("The remote Service")),
            ("conditions", array("", condition())),
        ],
        &["controllerName", "remoteRef"],
    );
    let alive = typed("boolean", "");
    let gateway = object(
        "Gateway liveness as seen by the probe worker (mc)",
        vec![
            ("alive", alive),
            (
                "latencyMs",
                integer("Latency of the last successful probe, ms"),
            ),
            ("p50Ms", integer("Median recent probe latency, ms")),
            ("p99Ms", integer("99th percentile recent probe latency, ms")),
            ("lastProbeTime", date_time("When the last probe finished")),
        ],
        &["alive"],
    );
    object(
        "",
        vec![
            ("mirrorServices", array("", service_status.clone())),
            ("federatedServices", array("", service_status)),
            ("gateway", gateway),
            (
                "conditions",
                array(
                    "Link-level conditions (mc), e.g. TargetReachable",
                    link_condition(),
                ),
            ),
        ],
        &[],
    )
}

fn condition() -> JSONSchemaProps {
    let mut status = string("True, False or Unknown");
    status.enum_ = Some(
        ["True", "False", "Unknown"]
            .iter()
            .map(|s| JSON(serde_json::json!(s)))
            .collect(),
    );
    object(
        "",
        vec![
            ("type", bounded("Condition type", 1, 316, "")),
            ("status", status),
            ("lastTransitionTime", date_time("When status last changed")),
            (
                "reason",
                bounded(
                    "CamelCase reason",
                    1,
                    1024,
                    "^[A-Za-z]([A-Za-z0-9_,:]*[A-Za-z0-9_])?$",
                ),
            ),
            ("message", bounded("Human-readable message", 0, 32768, "")),
            ("localRef", object_ref("The local mirror")),
        ],
        &["lastTransitionTime", "message", "reason", "status", "type"],
    )
}

/// A Link-level condition: a per-service condition without `localRef`.
fn link_condition() -> JSONSchemaProps {
    let mut c = condition();
    if let Some(props) = c.properties.as_mut() {
        props.remove("localRef");
    }
    c
}

fn object_ref(description: &str) -> JSONSchemaProps {
    let mut group = bounded(
        "API group",
        0,
        253,
        r"^$|^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$",
    );
    group.default = Some(JSON(serde_json::json!("core")));
    let mut kind = bounded("Kind", 1, 63, "^[a-zA-Z]([-a-zA-Z0-9]*[a-zA-Z0-9])?$");
    kind.default = Some(JSON(serde_json::json!("Service")));
    object(
        description,
        vec![
            ("group", group),
            ("kind", kind),
            ("name", bounded("Name", 1, 253, "")),
            (
                "namespace",
                bounded("Namespace", 1, 63, "^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"),
            ),
        ],
        &["name", "namespace"],
    )
}

fn typed(type_: &str, description: &str) -> JSONSchemaProps {
    JSONSchemaProps {
        type_: Some(type_.to_string()),
        description: (!description.is_empty()).then(|| description.to_string()),
        ..JSONSchemaProps::default()
    }
}

fn string(description: &str) -> JSONSchemaProps {
    typed("string", description)
}

fn integer(description: &str) -> JSONSchemaProps {
    let mut p = typed("integer", description);
    p.minimum = Some(0.0);
    p
}

fn date_time(description: &str) -> JSONSchemaProps {
    let mut p = string(description);
    p.format = Some("date-time".to_string());
    p
}

fn bounded(description: &str, min: i64, max: i64, pattern: &str) -> JSONSchemaProps {
    let mut p = string(description);
    p.min_length = (min > 0).then_some(min);
    p.max_length = Some(max);
    p.pattern = (!pattern.is_empty()).then(|| pattern.to_string());
    p
}

fn array(description: &str, items: JSONSchemaProps) -> JSONSchemaProps {
    let mut p = typed("array", description);
    p.items = Some(JSONSchemaPropsOrArray::Schema(Box::new(items)));
    p
}

fn object(
    description: &str,
    properties: Vec<(&str, JSONSchemaProps)>,
    required: &[&str],
) -> JSONSchemaProps {
    let mut p = typed("object", description);
    if !properties.is_empty() {
        p.properties = Some(
            properties
                .into_iter()
                .map(|(k, v)| (k.to_string(), v))
                .collect::<BTreeMap<_, _>>(),
        );
    }
    if !required.is_empty() {
        p.required = Some(required.iter().map(|s| s.to_string()).collect());
    }
    p
}

#[cfg(test)]
mod tests {
    use super::*;

    fn yaml() -> serde_yaml::Value {
        let text = serde_yaml::to_string(&crd()).unwrap_or_default();
        serde_yaml::from_str(&text).unwrap_or(serde_yaml::Value::Null)
    }

    #[test]
    fn yaml_parses_and_has_three_versions() {
        let crd = yaml();
        assert_eq!(crd["apiVersion"].as_str(), Some("apiextensions.k8s.io/v1"));
        assert_eq!(crd["kind"].as_str(), Some("CustomResourceDefinition"));
        assert_eq!(crd["metadata"]["name"].as_str(), Some(CRD_NAME));
        assert_eq!(
            crd["metadata"]["labels"]["linkerd.io/extension"].as_str(),
            Some("multicluster")
        );
        assert_eq!(crd["spec"]["scope"].as_str(), Some("Namespaced"));
        let versions = crd["spec"]["versions"]
            .as_sequence()
            .cloned()
            .unwrap_or_default();
        let names: Vec<_> = versions.iter().filter_map(|v| v["name"].as_str()).collect();
        assert_eq!(names, VERSIONS);
        let storage: Vec<_> = versions
            .iter()
            .filter(|v| v["storage"].as_bool() == Some(true))
            .filter_map(|v| v["name"].as_str())
            .collect();
        assert_eq!(storage, ["v1alpha3"]);
        assert!(
            versions[0]["subresources"].is_null(),
            "v1alpha1 has no status subresource"
        );
        assert!(versions[1]["subresources"]["status"].is_mapping());
        assert!(versions[2]["subresources"]["status"].is_mapping());
    }

    #[test]
    fn schema_fields_and_defaults() {
        let crd = yaml();
        let spec = |i: usize| {
            crd["spec"]["versions"][i]["schema"]["openAPIV3Schema"]["properties"]["spec"]["properties"].clone()
        };
        let v3 = spec(2);
        let probe = &v3["probeSpec"]["properties"];
        assert_eq!(probe["timeout"]["default"].as_str(), Some("30s"));
        assert_eq!(probe["failureThreshold"]["default"].as_str(), Some("3"));
        assert_eq!(probe["period"]["format"].as_str(), Some("duration"));
        assert!(spec(0)["probeSpec"]["properties"]["period"]["format"].is_null());
        let sel = &v3["selector"]["properties"];
        assert_eq!(
            sel["matchLabels"]["x-kubernetes-preserve-unknown-fields"].as_bool(),
            Some(true)
        );
        let ops: Vec<_> = sel["matchExpressions"]["items"]["properties"]["operator"]["enum"]
            .as_sequence()
            .cloned()
            .unwrap_or_default();
        assert_eq!(ops.len(), 4);
        for field in [
            "targetClusterName",
            "targetClusterDomain",
            "targetClusterLinkerdNamespace",
            "clusterCredentialsSecret",
            "gatewayAddress",
            "gatewayPort",
            "gatewayIdentity",
            "remoteDiscoverySelector",
            "federatedServiceSelector",
            "excludedAnnotations",
            "excludedLabels",
        ] {
            assert!(!v3[field]["type"].is_null(), "{field}");
        }
        assert!(spec(0)["federatedServiceSelector"].is_null());
        assert!(spec(1)["excludedLabels"].is_null());
        assert!(spec(1)["federatedServiceSelector"].is_mapping());
        let status = &crd["spec"]["versions"][2]["schema"]["openAPIV3Schema"]["properties"]["status"]
            ["properties"];
        assert!(status["gateway"]["properties"]["alive"].is_mapping());
        let cond = &status["mirrorServices"]["items"]["properties"]["conditions"]["items"];
        let required: Vec<_> = cond["required"].as_sequence().cloned().unwrap_or_default();
        assert!(!required.contains(&serde_yaml::Value::from("localRef")));
        let link_cond = &status["conditions"]["items"]["properties"];
        assert!(link_cond["reason"]["pattern"].is_string());
        assert!(link_cond["lastTransitionTime"].is_mapping());
        assert!(link_cond["localRef"].is_null());
    }
}
