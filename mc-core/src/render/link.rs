//! `mc multicluster link`: the credentials Secrets, the Link, and the Link's mirror controller.

use std::collections::BTreeMap;

use base64::Engine as _;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};

use super::install::controller_cluster_role_name;
use super::values::{DEFAULT_LINKERD_NAMESPACE, DEFAULT_NAMESPACE, ImageValues, VERSION};
use super::{
    anti_affinity, base_labels, container_security, meta, pod_security, pull_secrets, with,
};
use crate::selector::Selector;
use crate::{Error, Result, labels};

/// The target cluster's gateway, as read from its gateway Service (or given by flags).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct LinkGateway {
    /// IPs and/or DNS names of the gateway (`spec.gatewayAddress`, joined with `,`).
    pub addresses: Vec<String>,
    /// Port of the gateway's mTLS listener (`spec.gatewayPort`).
    pub port: u16,
    /// The gateway's TLS identity (`spec.gatewayIdentity`).
    pub identity: String,
    /// Probe path (`spec.probeSpec.path`).
    pub probe_path: String,
    /// Probe port (`spec.probeSpec.port`).
    pub probe_port: u16,
    /// Probe period: a bare number of seconds (`"3"`) or a duration (`"3s"`).
    pub probe_period: String,
}

/// The per-link mirror controller (`controller-<link>`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub struct ControllerValues {
    /// The mc image (runs `mc-mirror`).
    pub image: ImageValues,
    /// Image pull Secrets.
    pub image_pull_secrets: Vec<String>,
    /// Replicas; only the Lease holder works.
    pub replicas: u32,
    /// Log level (`info`).
    pub log_level: String,
    /// Log format: `plain` or `json`.
    pub log_format: String,
    /// Mirror headless Services as headless mirrors.
    pub enable_headless_services: bool,
    /// Create namespaces that are missing in the source cluster.
    pub enable_namespace_creation: bool,
    /// Spread replicas over nodes.
    pub enable_pod_anti_affinity: bool,
    /// Port of the admin server (`/ready`, `/live`, `/metrics`), named `ctrl-admin`.
    pub admin_port: u16,
    /// UID the controller runs as.
    #[serde(rename = "UID")]
    pub uid: u32,
    /// GID the controller runs as.
    #[serde(rename = "GID")]
    pub gid: u32,
}

impl Default for ControllerValues {
    fn default() -> ControllerValues {
        ControllerValues {
            image: ImageValues::default(),
            image_pull_secrets: Vec::new(),
            replicas: 1,
            log_level: "info".to_owned(),
            log_format: "plain".to_owned(),
            enable_headless_services: false,
            enable_namespace_creation: false,
            enable_pod_anti_affinity: false,
            admin_port: 9999,
            uid: 2103,
            gid: 2103,
        }
    }
}

/// Everything `mc multicluster link` renders from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub struct LinkValues {
    /// Name of the target cluster: Link name, mirror suffix, `cluster-credentials-<name>`.
    pub cluster_name: String,
    /// Namespace of the Link, the credentials Secret and the controller (source cluster).
    pub namespace: String,
    /// Control-plane namespace of the source cluster, where the remote-discovery copy of the
    /// credentials goes (`-L`).
    pub linkerd_namespace: String,
    /// Control-plane namespace of the target (`spec.targetClusterLinkerdNamespace`).
    pub target_linkerd_namespace: String,
    /// Cluster domain of the target (`spec.targetClusterDomain`).
    pub cluster_domain: String,
    /// Trust domain of the target (annotation on the remote-discovery credentials).
    pub trust_domain: String,
    /// The kubeconfig (YAML) that reaches the target API server as the remote-access account.
    pub kubeconfig: String,
    /// The gateway; `None` for a gateway-less (remote-discovery only) link.
    pub gateway: Option<LinkGateway>,
    /// Label selector of gateway-mode exports (only used with a gateway).
    pub selector: String,
    /// Label selector of remote-discovery exports.
    pub remote_discovery_selector: String,
    /// Label selector of federated-service members.
    pub federated_service_selector: String,
    /// Labels not copied onto mirrors (`prefix/*` allowed).
    pub excluded_labels: Vec<String>,
    /// Annotations not copied onto mirrors (`prefix/*` allowed).
    pub excluded_annotations: Vec<String>,
    /// Render the remote-discovery copy of the credentials in `linkerdNamespace`.
    pub control_plane_secret: bool,
    /// The mirror controller; `None` renders only the Secret(s) and the Link.
    pub controller: Option<ControllerValues>,
    /// Value of the `linkerd.io/created-by` annotation on the Link.
    pub created_by: String,
    /// How the Link's mirrors are served (annotation `mirror.linkerd.io/mc-link-mode`);
    /// `Auto` renders no annotation.
    pub mode: crate::egress::LinkMode,
}

impl Default for LinkValues {
    fn default() -> LinkValues {
        LinkValues {
            cluster_name: String::new(),
            namespace: DEFAULT_NAMESPACE.to_owned(),
            linkerd_namespace: DEFAULT_LINKERD_NAMESPACE.to_owned(),
            target_linkerd_namespace: DEFAULT_LINKERD_NAMESPACE.to_owned(),
            cluster_domain: "cluster.local".to_owned(),
            trust_domain: "cluster.local".to_owned(),
            kubeconfig: String::new(),
            gateway: None,
            selector: labels::DEFAULT_SELECTOR.to_owned(),
            remote_discovery_selector: labels::DEFAULT_REMOTE_DISCOVERY_SELECTOR.to_owned(),
            federated_service_selector: labels::DEFAULT_FEDERATED_SELECTOR.to_owned(),
            excluded_labels: Vec::new(),
            excluded_annotations: Vec::new(),
            control_plane_secret: true,
            controller: Some(ControllerValues::default()),
            created_by: format!("mc/cli {VERSION}"),
            mode: crate::egress::LinkMode::Auto,
        }
    }
}

/// Name of the credentials Secret of a link: `cluster-credentials-<name>`.
pub fn credentials_secret_name(cluster: &str) -> String {
    format!("cluster-credentials-{cluster}")
}

/// Name of the controller's Deployment and ServiceAccount: `controller-<name>`.
pub fn controller_name(cluster: &str) -> String {
    format!("controller-{cluster}")
}

/// Name of the controller's Role and RoleBinding: `controller-read-remote-creds-<name>`.
pub fn controller_role_name(cluster: &str) -> String {
    format!("controller-read-remote-creds-{cluster}")
}

/// Name of the controller's ClusterRoleBinding to the shared ClusterRole.
pub fn controller_binding_name(cluster: &str) -> String {
    format!("{}-{cluster}", controller_cluster_role_name())
}

/// Name of the controller's leader-election Lease: `service-mirror-write-<name>`, upstream
/// Linkerd's. Upstream's `linkerd multicluster check` reads the Lease of that exact name to find
/// the leading controller Pod (keyed there by the Link's `spec.targetClusterName`; the
/// controller keys it by the Link's name, normally equal), and `linkerd multicluster gateways`
/// reads metrics only from Pods holding a Lease whose name contains `service-mirror-write`.
/// Sharing the name also makes mc's controller and an upstream controller for the same Link
/// exclude each other (same Lease protocol), so the two never write the same mirrors.
pub fn lease_name(cluster: &str) -> String {
    format!("service-mirror-write-{cluster}")
}

/// Name of the Lease mc's controller held before it took upstream's name:
/// `mc-mirror-write-<name>`. mc created it and owns it; `unlink` deletes it too, so an upgraded
/// install leaves nothing behind.
pub fn old_lease_name(cluster: &str) -> String {
    format!("mc-mirror-write-{cluster}")
}

fn invalid(field: &str, value: &str, problem: &str, fix: &str) -> Error {
    Error::RenderValue {
        path: field.to_owned(),
        problem: format!("{value:?} {problem}"),
        fix: fix.to_owned(),
    }
}

/// A probe period in Go duration syntax: a bare integer is seconds (`"3"` → `"3s"`); anything
/// else must parse as a duration.
fn go_duration(period: &str) -> Result<String> {
    let period = period.trim();
    crate::link::parse_duration(period)?;
    if period.bytes().all(|b| b.is_ascii_digit()) {
        Ok(format!("{period}s"))
    } else {
        Ok(period.to_owned())
    }
}

impl LinkValues {
    /// Checks names, selectors, gateway fields and the kubeconfig.
    pub fn validate(&self) -> Result<()> {
        if !crate::naming::is_dns1123_label(&self.cluster_name) {
            return Err(invalid(
                "--cluster-name",
                &self.cluster_name,
                "is not a DNS label",
                "use 1-63 characters of a-z, 0-9 and '-', e.g. east",
            ));
        }
        for (field, ns) in [
            ("--namespace", &self.namespace),
            ("--linkerd-namespace", &self.linkerd_namespace),
        ] {
            if !crate::naming::is_dns1123_label(ns) {
                return Err(invalid(
                    field,
                    ns,
                    "is not a namespace name",
                    "use a DNS label",
                ));
            }
        }
        if self.kubeconfig.trim().is_empty() {
            return Err(invalid(
                "kubeconfig",
                "",
                "is empty",
                "pass the kubeconfig that reaches the target API server",
            ));
        }
        if let Some(gw) = &self.gateway {
            if gw.addresses.is_empty() || gw.addresses.iter().any(|a| a.trim().is_empty()) {
                return Err(invalid(
                    "--gateway-addresses",
                    &gw.addresses.join(","),
                    "holds no address",
                    "give the gateway's IPs or DNS names, comma-separated",
                ));
            }
            if gw.port == 0 || gw.probe_port == 0 {
                return Err(invalid(
                    "--gateway-port",
                    "0",
                    "is not a port",
                    "use a port in 1-65535",
                ));
            }
            crate::identity::validate_dns_name(&gw.identity)?;
            go_duration(&gw.probe_period)?;
        }
        Ok(())
    }
}

/// Renders the Secret(s) and the Link of `mc multicluster link`, followed by the controller
/// objects of [`link_controller`] when `values.controller` is set.
pub fn link(values: &LinkValues) -> Result<Vec<Value>> {
    values.validate()?;
    let labels = base_labels(&Default::default());
    let cluster = values.cluster_name.as_str();
    let secret_name = credentials_secret_name(cluster);
    let kubeconfig = base64::engine::general_purpose::STANDARD.encode(&values.kubeconfig);
    let mut out = vec![json!({
        "apiVersion": "v1",
        "kind": "Secret",
        "type": labels::REMOTE_KUBECONFIG_SECRET_TYPE,
        "metadata": meta(&secret_name, Some(&values.namespace), with(&labels, &[
            (labels::CLUSTER_NAME, cluster),
        ])),
        "data": {labels::KUBECONFIG_KEY: kubeconfig},
    })];
    if values.control_plane_secret {
        let mut metadata = meta(
            &secret_name,
            Some(&values.linkerd_namespace),
            with(&labels, &[(labels::MC_CLUSTER_NAME, cluster)]),
        );
        metadata["annotations"] = json!({
            labels::MC_TRUST_DOMAIN: values.trust_domain,
            "multicluster.linkerd.io/cluster-domain": values.cluster_domain,
        });
        out.push(json!({
            "apiVersion": "v1",
            "kind": "Secret",
            "type": labels::REMOTE_KUBECONFIG_SECRET_TYPE,
            "metadata": metadata,
            "data": {labels::KUBECONFIG_KEY: kubeconfig},
        }));
    }
    out.push(link_object(values, &labels)?);
    if let Some(controller) = &values.controller {
        out.extend(link_controller(values, controller)?);
    }
    Ok(out)
}

fn link_object(values: &LinkValues, labels: &Map<String, Value>) -> Result<Value> {
    use crate::link::{Link, LinkSpec, ProbeSpec};
    let cluster = values.cluster_name.as_str();
    let label_selector = |field: &str, query: &str| -> Result<_> {
        let parsed: Selector = query.parse()?;
        if parsed.is_empty() {
            return Err(invalid(
                field,
                query,
                "is empty and would export nothing",
                "give a selector such as mirror.linkerd.io/exported=true",
            ));
        }
        Ok(Some(parsed.to_label_selector()))
    };
    let mut spec = LinkSpec {
        target_cluster_name: Some(cluster.to_owned()),
        target_cluster_domain: Some(values.cluster_domain.clone()),
        target_cluster_linkerd_namespace: Some(values.target_linkerd_namespace.clone()),
        cluster_credentials_secret: Some(credentials_secret_name(cluster)),
        remote_discovery_selector: label_selector(
            "--remote-discovery-selector",
            &values.remote_discovery_selector,
        )?,
        federated_service_selector: label_selector(
            "--federated-service-selector",
            &values.federated_service_selector,
        )?,
        excluded_labels: values.excluded_labels.clone(),
        excluded_annotations: values.excluded_annotations.clone(),
        ..LinkSpec::default()
    };
    if let Some(gw) = &values.gateway {
        spec.gateway_address = Some(gw.addresses.join(","));
        spec.gateway_port = Some(gw.port.to_string());
        spec.gateway_identity = Some(gw.identity.clone());
        spec.probe_spec = Some(ProbeSpec {
            path: Some(gw.probe_path.clone()),
            port: Some(gw.probe_port.to_string()),
            period: Some(go_duration(&gw.probe_period)?),
            ..ProbeSpec::default()
        });
        spec.selector = label_selector("--selector", &values.selector)?;
    }
    // The model's own validation: what the controller will accept.
    spec.validate()?;
    let mut object = Link::new(cluster, &values.namespace, spec);
    object.metadata.labels = Some(
        labels
            .iter()
            .filter_map(|(k, v)| Some((k.clone(), v.as_str()?.to_owned())))
            .chain([(labels::CLUSTER_NAME.to_owned(), cluster.to_owned())])
            .collect(),
    );
    let mut annotations: BTreeMap<String, String> =
        [(labels::CREATED_BY.to_owned(), values.created_by.clone())].into();
    if values.mode != crate::egress::LinkMode::Auto {
        annotations.insert(
            labels::LINK_MODE.to_owned(),
            values.mode.as_str().to_owned(),
        );
    }
    object.metadata.annotations = Some(annotations);
    serde_json::to_value(&object).map_err(|e| Error::RenderSerialize {
        format: "JSON",
        reason: format!("the Link: {e}"),
    })
}

/// The arguments of `mc-mirror` in the controller pod of `values.cluster_name`.
pub fn controller_args(values: &LinkValues, controller: &ControllerValues) -> Vec<String> {
    args_for(&values.cluster_name, &values.namespace, controller)
}

fn args_for(link: &str, namespace: &str, controller: &ControllerValues) -> Vec<String> {
    let mut args = vec![
        format!("--namespace={namespace}"),
        format!("--link={link}"),
        format!("--admin-addr=0.0.0.0:{}", controller.admin_port),
        format!("--log-level={}", controller.log_level),
        format!("--log-format={}", controller.log_format),
    ];
    if controller.enable_headless_services {
        args.push("--enable-headless-services".to_owned());
    }
    if controller.enable_namespace_creation {
        args.push("--create-namespaces".to_owned());
    }
    args
}

/// What the controller objects of one Link are rendered from: the Link's name and namespace,
/// its credentials Secret, and the probe port when it has a gateway.
pub(crate) struct ControllerTarget<'a> {
    pub(crate) link: &'a str,
    pub(crate) namespace: &'a str,
    pub(crate) credentials_secret: String,
    pub(crate) probe_port: Option<u16>,
}

/// The mirror controller of a link: ServiceAccount, ClusterRoleBinding to the shared
/// ClusterRole, Role + RoleBinding for its credentials, Link and Lease, the Deployment running
/// `mc-mirror`, and the probe Service `mc-probe-<name>` when the link has a gateway.
pub fn link_controller(values: &LinkValues, controller: &ControllerValues) -> Result<Vec<Value>> {
    values.validate()?;
    let target = ControllerTarget {
        link: &values.cluster_name,
        namespace: &values.namespace,
        credentials_secret: credentials_secret_name(&values.cluster_name),
        probe_port: values.gateway.as_ref().map(|g| g.probe_port),
    };
    controller_objects(&target, controller, &base_labels(&Default::default()))
}

/// The controller objects of [`link_controller`] for a Link that already exists (applied from
/// `link-gen` or `mc multicluster link --no-controller`): named after the Link, in its
/// namespace, reading its `spec.clusterCredentialsSecret`, with the probe Service when the
/// Link has a gateway (port `spec.probeSpec.port`). Needs nothing from the target cluster.
pub fn link_controller_for(
    link: &crate::link::Link,
    controller: &ControllerValues,
) -> Result<Vec<Value>> {
    let name = link.metadata.name.as_deref().unwrap_or_default();
    if !crate::naming::is_dns1123_label(name) {
        return Err(invalid(
            "metadata.name",
            name,
            "is not a DNS label, so no controller can be named after it",
            "rename the Link to 1-63 characters of a-z, 0-9 and '-'",
        ));
    }
    let namespace = link.metadata.namespace.as_deref().unwrap_or_default();
    if !crate::naming::is_dns1123_label(namespace) {
        return Err(invalid(
            "metadata.namespace",
            namespace,
            "is not a namespace name",
            "read the Link from the cluster, which sets its namespace",
        ));
    }
    let valid = link.spec.validate()?;
    let probe_port = valid.gateway.as_ref().map(|_| {
        valid
            .probe
            .as_ref()
            .map_or(labels::DEFAULT_PROBE_PORT, |p| p.port)
    });
    let target = ControllerTarget {
        link: name,
        namespace,
        credentials_secret: valid.credentials_secret,
        probe_port,
    };
    controller_objects(&target, controller, &base_labels(&Default::default()))
}

/// Checks a controller's log level and format; each comes with the path or flag errors name.
pub(crate) fn check_log_settings(
    (level_path, level): (&str, &str),
    (format_path, format): (&str, &str),
) -> Result<()> {
    if !matches!(level, "trace" | "debug" | "info" | "warn" | "error") {
        return Err(invalid(
            level_path,
            level,
            "is not a log level",
            "use trace, debug, info, warn or error",
        ));
    }
    if !matches!(format, "plain" | "json") {
        return Err(invalid(
            format_path,
            format,
            "is not a log format",
            "use plain or json",
        ));
    }
    Ok(())
}

/// The controller objects of `target`, every one labelled `labels` (the extension label and, from
/// an install, its common labels) plus its own.
pub(crate) fn controller_objects(
    target: &ControllerTarget<'_>,
    controller: &ControllerValues,
    labels: &Map<String, Value>,
) -> Result<Vec<Value>> {
    check_log_settings(
        ("--log-level", &controller.log_level),
        ("--log-format", &controller.log_format),
    )?;
    let cluster = target.link;
    let ns = target.namespace;
    let name = controller_name(cluster);
    let role = controller_role_name(cluster);
    let ctrl_labels = with(
        labels,
        &[("component", "controller"), (labels::CLUSTER_NAME, cluster)],
    );
    let subject = json!([{"kind": "ServiceAccount", "name": name, "namespace": ns}]);
    let mut out = vec![
        json!({
            "apiVersion": "v1",
            "kind": "ServiceAccount",
            "metadata": meta(&name, Some(ns), ctrl_labels.clone()),
        }),
        json!({
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "ClusterRoleBinding",
            "metadata": meta(&controller_binding_name(cluster), None, ctrl_labels.clone()),
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": controller_cluster_role_name()},
            "subjects": subject,
        }),
        json!({
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "Role",
            "metadata": meta(&role, Some(ns), ctrl_labels.clone()),
            "rules": [
                {"apiGroups": [""], "resources": ["secrets"], "resourceNames": [target.credentials_secret], "verbs": ["list", "get", "watch"]},
                {"apiGroups": ["multicluster.linkerd.io"], "resources": ["links"], "verbs": ["list", "get", "watch", "patch"]},
                {"apiGroups": ["multicluster.linkerd.io"], "resources": ["links/status"], "verbs": ["update", "patch"]},
                {"apiGroups": ["coordination.k8s.io"], "resources": ["leases"], "verbs": ["create", "get", "update", "patch"]},
                {"apiGroups": [""], "resources": ["configmaps"], "resourceNames": [crate::egress::ROUTES_CONFIG_MAP], "verbs": ["get", "list", "watch", "update"]},
                {"apiGroups": [""], "resources": ["configmaps"], "verbs": ["create"]},
            ],
        }),
        json!({
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "RoleBinding",
            "metadata": meta(&role, Some(ns), ctrl_labels.clone()),
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": role},
            "subjects": subject,
        }),
        controller_deployment(target, controller, &name, &ctrl_labels),
    ];
    if let Some(port) = target.probe_port {
        out.push(probe_service(target, port, labels));
    }
    if controller.enable_pod_anti_affinity {
        out.push(json!({
            "apiVersion": "policy/v1",
            "kind": "PodDisruptionBudget",
            "metadata": meta(&name, Some(ns), ctrl_labels),
            "spec": {"maxUnavailable": 1, "selector": {"matchLabels": {"component": "controller", labels::CLUSTER_NAME: cluster}}},
        }));
    }
    Ok(out)
}

fn controller_deployment(
    target: &ControllerTarget<'_>,
    controller: &ControllerValues,
    name: &str,
    ctrl_labels: &Value,
) -> Value {
    let cluster = target.link;
    let mut pod_spec = json!({
        "serviceAccountName": name,
        "securityContext": pod_security(controller.uid, controller.gid),
        "containers": [{
            "name": "controller",
            "image": controller.image.reference(),
            "imagePullPolicy": controller.image.pull_policy,
            "command": ["mc-mirror"],
            "args": args_for(target.link, target.namespace, controller),
            "env": controller_env(),
            "ports": [{"name": "ctrl-admin", "containerPort": controller.admin_port, "protocol": "TCP"}],
            "readinessProbe": {"httpGet": {"path": "/ready", "port": "ctrl-admin"}},
            "livenessProbe": {"httpGet": {"path": "/live", "port": "ctrl-admin"}},
            "securityContext": container_security(),
        }],
    });
    if !controller.image_pull_secrets.is_empty() {
        pod_spec["imagePullSecrets"] = pull_secrets(&controller.image_pull_secrets);
    }
    if controller.enable_pod_anti_affinity {
        pod_spec["affinity"] = anti_affinity(labels::CLUSTER_NAME, cluster);
    }
    json!({
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": meta(name, Some(target.namespace), ctrl_labels.clone()),
        "spec": {
            "replicas": controller.replicas,
            "selector": {"matchLabels": {"component": "controller", labels::CLUSTER_NAME: cluster}},
            "template": {"metadata": {"labels": ctrl_labels}, "spec": pod_spec},
        },
    })
}

/// The controller's environment: `HOSTNAME` (the Lease holder identity) and the install's
/// exclusions for the local member of federated Services, from the ConfigMap
/// [`LOCAL_MIRROR_CONFIG_MAP`](crate::mirror::LOCAL_MIRROR_CONFIG_MAP) in the controller's
/// namespace (optional: without an install there, no exclusions).
fn controller_env() -> Value {
    use crate::mirror::{
        LOCAL_EXCLUDED_ANNOTATIONS_ENV, LOCAL_EXCLUDED_ANNOTATIONS_KEY, LOCAL_EXCLUDED_LABELS_ENV,
        LOCAL_EXCLUDED_LABELS_KEY, LOCAL_MIRROR_CONFIG_MAP,
    };
    let from_config_map = |env: &str, key: &str| {
        json!({"name": env, "valueFrom": {"configMapKeyRef": {
            "name": LOCAL_MIRROR_CONFIG_MAP, "key": key, "optional": true,
        }}})
    };
    json!([
        {"name": "HOSTNAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
        from_config_map(LOCAL_EXCLUDED_LABELS_ENV, LOCAL_EXCLUDED_LABELS_KEY),
        from_config_map(LOCAL_EXCLUDED_ANNOTATIONS_ENV, LOCAL_EXCLUDED_ANNOTATIONS_KEY),
    ])
}

fn probe_service(target: &ControllerTarget<'_>, port: u16, labels: &Map<String, Value>) -> Value {
    let cluster = target.link;
    json!({
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": meta(
            &crate::naming::probe_service_name(cluster).name,
            Some(target.namespace),
            with(labels, &[(labels::MIRRORED_GATEWAY, "true"), (labels::CLUSTER_NAME, cluster)]),
        ),
        "spec": {"ports": [{"name": labels::PROBE_PORT_NAME, "port": port, "protocol": "TCP"}]},
    })
}
