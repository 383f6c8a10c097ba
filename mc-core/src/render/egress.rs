//! The egress objects of `mc multicluster install` (see [`crate::egress`]).

use serde_json::{Map, Value, json};

use super::install::{IDENTITY_DIR, identity_args, identity_volume};
use super::values::InstallValues;
use super::{anti_affinity, container_security, meta, pod_security, pull_secrets, with};
use crate::egress::{EGRESS_NAME, ROUTES_CONFIG_MAP};
use crate::identity::Identity;
use crate::{Result, labels};

/// Name of the egress Service's (and container's) admin port.
pub const ADMIN_PORT_NAME: &str = "mc-admin";

/// The egress's identity:
/// `linkerd-multicluster-egress.<namespace>.serviceaccount.identity.<linkerd ns>.<trust domain>`.
pub fn egress_identity_of(values: &InstallValues) -> Result<String> {
    let id = Identity {
        service_account: EGRESS_NAME.to_owned(),
        namespace: values.namespace.clone(),
        control_plane_namespace: values.linkerd_namespace.clone(),
        trust_domain: values.identity_trust_domain.clone(),
    };
    id.validate()?;
    Ok(id.to_string())
}

/// The egress: ServiceAccount, a Role to read its route ConfigMap, Deployment, headless
/// Service (whose Endpoints tell the mirror controllers the ready egress Pods), and a
/// PodDisruptionBudget under HA.
pub(super) fn egress(values: &InstallValues, labels: &Map<String, Value>) -> Result<Vec<Value>> {
    let ns = values.namespace.as_str();
    let own = with(labels, &[("component", "egress")]);
    let pod_labels = with(
        labels,
        &[
            ("app", EGRESS_NAME),
            ("component", "egress"),
            ("app.kubernetes.io/name", "egress"),
        ],
    );
    let mut out = vec![
        json!({
            "apiVersion": "v1",
            "kind": "ServiceAccount",
            "metadata": meta(EGRESS_NAME, Some(ns), own.clone()),
        }),
        json!({
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "Role",
            "metadata": meta(EGRESS_NAME, Some(ns), own.clone()),
            "rules": [
                {"apiGroups": [""], "resources": ["configmaps"], "resourceNames": [ROUTES_CONFIG_MAP], "verbs": ["get", "list", "watch"]},
            ],
        }),
        json!({
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "RoleBinding",
            "metadata": meta(EGRESS_NAME, Some(ns), own.clone()),
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": EGRESS_NAME},
            "subjects": [{"kind": "ServiceAccount", "name": EGRESS_NAME, "namespace": ns}],
        }),
        deployment(values, &pod_labels)?,
        json!({
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": meta(EGRESS_NAME, Some(ns), own),
            "spec": {
                "clusterIP": "None",
                "selector": {"app": EGRESS_NAME},
                "ports": [{"name": ADMIN_PORT_NAME, "port": values.egress.admin_port, "targetPort": ADMIN_PORT_NAME, "protocol": "TCP"}],
            },
        }),
    ];
    if values.enable_pod_anti_affinity {
        out.push(json!({
            "apiVersion": "policy/v1",
            "kind": "PodDisruptionBudget",
            "metadata": meta(EGRESS_NAME, Some(ns), pod_labels),
            "spec": {"maxUnavailable": 1, "selector": {"matchLabels": {"app": EGRESS_NAME}}},
        }));
    }
    Ok(out)
}

/// The arguments of `mc-gateway egress` in the egress Pod.
pub fn egress_args(values: &InstallValues) -> Result<Vec<String>> {
    let mut args = vec![
        "egress".to_owned(),
        format!("--admin=0.0.0.0:{}", values.egress.admin_port),
    ];
    args.extend(identity_args(values));
    if !values.identity.issuer_secret.is_empty() {
        args.push(format!("--identity={}", egress_identity_of(values)?));
    }
    args.push(format!("--namespace={}", values.namespace));
    Ok(args)
}

fn deployment(values: &InstallValues, pod_labels: &Value) -> Result<Value> {
    let eg = &values.egress;
    let mut pod_spec = json!({
        "serviceAccountName": EGRESS_NAME,
        "securityContext": pod_security(eg.uid, eg.gid),
        "containers": [{
            "name": "egress",
            "image": values.image.reference(),
            "imagePullPolicy": values.image.pull_policy,
            "command": ["mc-gateway"],
            "args": egress_args(values)?,
            "ports": [
                {"name": ADMIN_PORT_NAME, "containerPort": eg.admin_port, "protocol": "TCP"},
            ],
            "readinessProbe": {"httpGet": {"path": labels::DEFAULT_PROBE_PATH, "port": ADMIN_PORT_NAME}},
            "livenessProbe": {"httpGet": {"path": "/live", "port": ADMIN_PORT_NAME}},
            "securityContext": container_security(),
            "volumeMounts": [{"name": "identity", "mountPath": IDENTITY_DIR, "readOnly": true}],
        }],
        "volumes": [{"name": "identity", "secret": {"secretName": identity_volume(values, &eg.identity_secret)}}],
    });
    if !values.image_pull_secrets.is_empty() {
        pod_spec["imagePullSecrets"] = pull_secrets(&values.image_pull_secrets);
    }
    if values.enable_pod_anti_affinity {
        pod_spec["affinity"] = anti_affinity("app", EGRESS_NAME);
    }
    Ok(json!({
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": meta(EGRESS_NAME, Some(&values.namespace), pod_labels.clone()),
        "spec": {
            "replicas": eg.replicas,
            "selector": {"matchLabels": {"app": EGRESS_NAME}},
            "template": {
                "metadata": {"labels": pod_labels},
                "spec": pod_spec,
            },
        },
    }))
}
