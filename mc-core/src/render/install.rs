//! `mc multicluster install` and `mc multicluster allow`.

use serde_json::{Map, Value, json};

use super::values::InstallValues;
use super::{
    anti_affinity, base_labels, container_security, meta, pod_security, pull_secrets, with,
};
use crate::identity::Identity;
use crate::policy::{POLICY_DIR, POLICY_KEY, config_map_name};
use crate::{Result, labels};

/// Directory where the gateway's identity Secret is mounted.
pub const IDENTITY_DIR: &str = "/var/run/mc/identity";

/// Name of the ClusterRole shared by every mirror controller of this install.
pub fn controller_cluster_role_name() -> &'static str {
    "linkerd-multicluster-controller-access-local-resources"
}

/// Renders everything `mc multicluster install` prints, in apply order.
///
/// Objects: the Namespace; the Link CRD; the gateway (ServiceAccount, Deployment, Service,
/// PodDisruptionBudget under HA; with `gateway.resolver: kubernetes`, the default, a read-only
/// ClusterRole and its binding for Services, Endpoints, EndpointSlices and Pods; with `dns` no
/// API access); the egress (see [`crate::egress`]); the remote-access
/// ServiceAccounts with token Secrets and least-privilege RBAC; the mirror controllers'
/// shared ClusterRole and the ConfigMap of the local member's exclusions
/// (`localServiceMirror`); then the objects of every install-managed controller (`controllers`, see
/// [`InstallValues::controllers`]).
pub fn install(values: &InstallValues) -> Result<Vec<Value>> {
    values.validate()?;
    let labels = base_labels(&values.common_labels);
    let mut out = Vec::new();
    if values.install_namespace {
        out.push(namespace(values, &labels));
    }
    out.push(crd(&labels)?);
    if values.gateway.enabled {
        out.extend(gateway(values, &labels)?);
    }
    if values.egress.enabled {
        out.extend(super::egress::egress(values, &labels)?);
    }
    if values.remote_mirror_service_account {
        for name in &values.remote_mirror_service_account_name {
            out.extend(remote_access_objects(&values.namespace, name, &labels));
        }
    }
    out.push(controller_cluster_role(values, &labels));
    out.push(local_mirror_config_map(values, &labels)?);
    out.extend(super::controllers::install_controllers(values, &labels)?);
    Ok(out)
}

/// Renders `mc multicluster allow`: the Namespace and one remote-access set per name.
pub fn allow(values: &InstallValues, names: &[String]) -> Result<Vec<Value>> {
    let mut values = values.clone();
    values.remote_mirror_service_account_name = super::split_names(names);
    values.remote_mirror_service_account = true;
    values.validate()?;
    let labels = base_labels(&values.common_labels);
    let mut out = Vec::new();
    if values.install_namespace {
        out.push(namespace(&values, &labels));
    }
    for name in &values.remote_mirror_service_account_name {
        out.extend(remote_access_objects(&values.namespace, name, &labels));
    }
    Ok(out)
}

fn namespace(values: &InstallValues, labels: &Map<String, Value>) -> Value {
    json!({
        "apiVersion": "v1",
        "kind": "Namespace",
        "metadata": meta(&values.namespace, None, with(labels, &[
            ("pod-security.kubernetes.io/enforce", &values.pod_security),
        ])),
    })
}

fn crd(labels: &Map<String, Value>) -> Result<Value> {
    let mut crd =
        serde_json::to_value(crate::link::crd()).map_err(|e| crate::Error::RenderSerialize {
            format: "JSON",
            reason: format!("the Link CRD: {e}"),
        })?;
    let object_labels = &mut crd["metadata"]["labels"];
    if !object_labels.is_object() {
        *object_labels = json!({});
    }
    if let Value::Object(map) = object_labels {
        for (k, v) in labels {
            map.insert(k.clone(), v.clone());
        }
    }
    Ok(crd)
}

/// The gateway's identity, published on its Service:
/// `<gateway.name>.<namespace>.serviceaccount.identity.<linkerdNamespace>.<trustDomain>`.
pub(crate) fn gateway_identity(values: &InstallValues) -> Result<Identity> {
    let id = Identity {
        service_account: values.gateway.name.clone(),
        namespace: values.namespace.clone(),
        control_plane_namespace: values.linkerd_namespace.clone(),
        trust_domain: values.identity_trust_domain.clone(),
    };
    id.validate()?;
    Ok(id)
}

fn gateway(values: &InstallValues, labels: &Map<String, Value>) -> Result<Vec<Value>> {
    let gw = &values.gateway;
    let ns = values.namespace.as_str();
    let identity = gateway_identity(values)?.to_string();
    let gw_labels = with(
        labels,
        &[
            ("app", &gw.name),
            ("component", "gateway"),
            ("app.kubernetes.io/name", "gateway"),
        ],
    );
    let mut out = vec![
        json!({
            "apiVersion": "v1",
            "kind": "ServiceAccount",
            "metadata": meta(&gw.name, Some(ns), with(labels, &[("component", "gateway")])),
        }),
        gateway_policy(values, labels),
        gateway_deployment(values, &identity, &gw_labels),
        gateway_service(values, &identity, labels),
    ];
    if gw.resolver == "kubernetes" {
        out.extend(gateway_rbac(values, labels));
    }
    if values.enable_pod_anti_affinity {
        out.push(json!({
            "apiVersion": "policy/v1",
            "kind": "PodDisruptionBudget",
            "metadata": meta(&gw.name, Some(ns), gw_labels.clone()),
            "spec": {"maxUnavailable": 1, "selector": {"matchLabels": {"app": gw.name}}},
        }));
    }
    Ok(out)
}

/// Name of the gateway's ClusterRole and ClusterRoleBinding: `<namespace>-<gateway.name>`
/// (cluster-scoped, so the install namespace keeps two installs apart).
pub(crate) fn gateway_cluster_role_name(values: &InstallValues) -> String {
    format!("{}-{}", values.namespace, values.gateway.name)
}

/// The Kubernetes resolver's read access: Services, Endpoints, EndpointSlices (targets and
/// their endpoints) and Pods (which backends are meshed), in every namespace; nothing else.
fn gateway_rbac(values: &InstallValues, labels: &Map<String, Value>) -> Vec<Value> {
    let name = gateway_cluster_role_name(values);
    let labels = with(labels, &[("component", "gateway")]);
    vec![
        json!({
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "ClusterRole",
            "metadata": meta(&name, None, labels.clone()),
            "rules": [
                {"apiGroups": [""], "resources": ["services", "endpoints", "pods"], "verbs": ["list", "get", "watch"]},
                {"apiGroups": ["discovery.k8s.io"], "resources": ["endpointslices"], "verbs": ["list", "get", "watch"]},
            ],
        }),
        json!({
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "ClusterRoleBinding",
            "metadata": meta(&name, None, labels),
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": name},
            "subjects": [{"kind": "ServiceAccount", "name": values.gateway.name, "namespace": values.namespace}],
        }),
    ]
}

/// The arguments of `mc-gateway serve` in the gateway pod.
pub fn gateway_args(values: &InstallValues, identity: &str) -> Vec<String> {
    let gw = &values.gateway;
    let mut args = vec![
        "serve".to_owned(),
        format!("--listen=0.0.0.0:{}", gw.port),
        format!("--admin=0.0.0.0:{}", gw.probe.port),
    ];
    args.extend(identity_args(values));
    args.push(format!("--identity={identity}"));
    args.push(format!("--cluster-domain={}", gw.cluster_domain));
    args.push(format!("--policy={POLICY_DIR}/{POLICY_KEY}"));
    if gw.resolver == "kubernetes" {
        args.push("--kubernetes".to_owned());
        args.push(format!("--backend-mtls={}", gw.backend_mtls));
    }
    args
}

/// The gateway's allow-list ConfigMap (`gateway.policy`), mounted at [`POLICY_DIR`]; an update
/// reaches the running gateway without a restart.
fn gateway_policy(values: &InstallValues, labels: &Map<String, Value>) -> Value {
    let gw = &values.gateway;
    json!({
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": meta(&config_map_name(&gw.name), Some(&values.namespace), with(labels, &[("component", "gateway")])),
        "data": {POLICY_KEY: crate::policy::file_text(&gw.policy.rules)},
    })
}

/// The certificate flags of `mc-gateway serve` and `egress`: the leaf from the mounted Secret,
/// or, with `identity.issuerSecret`, the issuer from which the process mints and renews its own
/// leaf.
pub(super) fn identity_args(values: &InstallValues) -> Vec<String> {
    if values.identity.issuer_secret.is_empty() {
        vec![
            format!("--cert={IDENTITY_DIR}/tls.crt"),
            format!("--key={IDENTITY_DIR}/tls.key"),
            format!("--trust-anchors={IDENTITY_DIR}/ca.crt"),
        ]
    } else {
        vec![
            format!("--issuer-cert={IDENTITY_DIR}/tls.crt"),
            format!("--issuer-key={IDENTITY_DIR}/tls.key"),
            format!("--trust-anchors={IDENTITY_DIR}/ca.crt"),
            format!("--leaf-lifetime={}", values.identity.leaf_lifetime),
        ]
    }
}

/// The Secret mounted at [`IDENTITY_DIR`]: the component's own `leaf_secret`, or the issuer
/// Secret in issuer mode.
pub(super) fn identity_volume<'a>(values: &'a InstallValues, leaf_secret: &'a str) -> &'a str {
    if values.identity.issuer_secret.is_empty() {
        leaf_secret
    } else {
        &values.identity.issuer_secret
    }
}

fn gateway_deployment(values: &InstallValues, identity: &str, gw_labels: &Value) -> Value {
    let gw = &values.gateway;
    let mut pod_spec = json!({
        "serviceAccountName": gw.name,
        "automountServiceAccountToken": gw.resolver == "kubernetes",
        "securityContext": pod_security(gw.uid, gw.gid),
        "containers": [{
            "name": "gateway",
            "image": values.image.reference(),
            "imagePullPolicy": values.image.pull_policy,
            "command": ["mc-gateway"],
            "args": gateway_args(values, identity),
            "ports": [
                {"name": labels::GATEWAY_PORT_NAME, "containerPort": gw.port, "protocol": "TCP"},
                {"name": labels::PROBE_PORT_NAME, "containerPort": gw.probe.port, "protocol": "TCP"},
            ],
            "readinessProbe": {"httpGet": {"path": gw.probe.path, "port": labels::PROBE_PORT_NAME}},
            "livenessProbe": {"httpGet": {"path": "/live", "port": labels::PROBE_PORT_NAME}},
            "securityContext": container_security(),
            "volumeMounts": [
                {"name": "identity", "mountPath": IDENTITY_DIR, "readOnly": true},
                {"name": "policy", "mountPath": POLICY_DIR, "readOnly": true},
            ],
        }],
        "volumes": [
            {"name": "identity", "secret": {"secretName": identity_volume(values, &gw.identity_secret)}},
            {"name": "policy", "configMap": {"name": config_map_name(&gw.name)}},
        ],
    });
    if !values.image_pull_secrets.is_empty() {
        pod_spec["imagePullSecrets"] = pull_secrets(&values.image_pull_secrets);
    }
    if values.enable_pod_anti_affinity {
        pod_spec["affinity"] = anti_affinity("app", &gw.name);
    }
    json!({
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": meta(&gw.name, Some(&values.namespace), gw_labels.clone()),
        "spec": {
            "replicas": gw.replicas,
            "selector": {"matchLabels": {"app": gw.name}},
            "template": {
                "metadata": {"labels": gw_labels},
                "spec": pod_spec,
            },
        },
    })
}

fn gateway_service(values: &InstallValues, identity: &str, labels: &Map<String, Value>) -> Value {
    let gw = &values.gateway;
    let mut annotations: Map<String, Value> = gw
        .service_annotations
        .iter()
        .map(|(k, v)| (k.clone(), Value::String(v.clone())))
        .collect();
    for (k, v) in [
        (labels::GATEWAY_IDENTITY, identity.to_owned()),
        (labels::PROBE_PATH, gw.probe.path.clone()),
        (labels::PROBE_PERIOD, gw.probe.seconds.to_string()),
        (labels::MULTICLUSTER_GATEWAY, "true".to_owned()),
    ] {
        annotations.insert(k.to_owned(), Value::String(v));
    }
    let node_ports = gw.service_type != "ClusterIP";
    let port = |name: &str, port: u16, node_port: Option<u16>| {
        let mut p = json!({"name": name, "port": port, "targetPort": name, "protocol": "TCP"});
        if let (true, Some(n)) = (node_ports, node_port) {
            p["nodePort"] = json!(n);
        }
        p
    };
    let mut spec = json!({
        "type": gw.service_type,
        "selector": {"app": gw.name},
        "ports": [
            port(labels::GATEWAY_PORT_NAME, gw.port, gw.node_port),
            port(labels::PROBE_PORT_NAME, gw.probe.port, gw.probe.node_port),
        ],
    });
    if gw.service_type == "LoadBalancer" {
        if !gw.load_balancer_class.is_empty() {
            spec["loadBalancerClass"] = json!(gw.load_balancer_class);
        }
        if !gw.load_balancer_ip.is_empty() {
            spec["loadBalancerIP"] = json!(gw.load_balancer_ip);
        }
        if !gw.load_balancer_source_ranges.is_empty() {
            spec["loadBalancerSourceRanges"] = json!(gw.load_balancer_source_ranges);
        }
    }
    if node_ports && !gw.service_external_traffic_policy.is_empty() {
        spec["externalTrafficPolicy"] = json!(gw.service_external_traffic_policy);
    }
    let mut metadata = meta(
        &gw.name,
        Some(&values.namespace),
        with(
            labels,
            &[
                ("component", "gateway"),
                (labels::MULTICLUSTER_GATEWAY, "true"),
            ],
        ),
    );
    metadata["annotations"] = Value::Object(annotations);
    json!({"apiVersion": "v1", "kind": "Service", "metadata": metadata, "spec": spec})
}

/// The remote-access set for ServiceAccount `name` in `namespace`: the ServiceAccount, its
/// long-lived token Secret `<name>-token`, and a ClusterRole + ClusterRoleBinding `<name>` that
/// grant only what a mirror controller on another cluster needs here: read Services, Endpoints
/// and EndpointSlices (plus pods, replicasets, jobs and policy Servers for remote discovery),
/// get the `linkerd-config` ConfigMap, and record Events. No Secrets.
pub fn remote_access_objects(
    namespace: &str,
    name: &str,
    labels: &Map<String, Value>,
) -> Vec<Value> {
    let ra_labels = with(labels, &[("component", "remote-access")]);
    vec![
        json!({
            "apiVersion": "v1",
            "kind": "ServiceAccount",
            "metadata": meta(name, Some(namespace), ra_labels.clone()),
        }),
        json!({
            "apiVersion": "v1",
            "kind": "Secret",
            "type": "kubernetes.io/service-account-token",
            "metadata": {
                "name": format!("{name}-token"),
                "namespace": namespace,
                "labels": ra_labels,
                "annotations": {"kubernetes.io/service-account.name": name},
            },
        }),
        json!({
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "ClusterRole",
            "metadata": meta(name, None, ra_labels.clone()),
            "rules": [
                {"apiGroups": [""], "resources": ["pods", "endpoints", "services"], "verbs": ["list", "get", "watch"]},
                {"apiGroups": ["apps"], "resources": ["replicasets"], "verbs": ["list", "get", "watch"]},
                {"apiGroups": ["batch"], "resources": ["jobs"], "verbs": ["list", "get", "watch"]},
                {"apiGroups": ["discovery.k8s.io"], "resources": ["endpointslices"], "verbs": ["list", "get", "watch"]},
                {"apiGroups": ["policy.linkerd.io"], "resources": ["servers"], "verbs": ["list", "get", "watch"]},
                {"apiGroups": [""], "resources": ["configmaps"], "resourceNames": ["linkerd-config"], "verbs": ["get"]},
                {"apiGroups": [""], "resources": ["events"], "verbs": ["create", "patch"]},
            ],
        }),
        json!({
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "ClusterRoleBinding",
            "metadata": meta(name, None, ra_labels),
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": name},
            "subjects": [{"kind": "ServiceAccount", "name": name, "namespace": namespace}],
        }),
    ]
}

fn controller_cluster_role(values: &InstallValues, labels: &Map<String, Value>) -> Value {
    let mut namespace_verbs = vec!["list", "get", "watch"];
    if values.enable_namespace_creation {
        namespace_verbs.push("create");
    }
    json!({
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "ClusterRole",
        "metadata": meta(controller_cluster_role_name(), None, with(labels, &[("component", "controller")])),
        "rules": [
            {"apiGroups": [""], "resources": ["services", "endpoints"], "verbs": ["list", "get", "watch", "create", "delete", "update", "patch"]},
            {"apiGroups": [""], "resources": ["namespaces"], "verbs": namespace_verbs},
            {"apiGroups": ["gateway.networking.k8s.io"], "resources": ["httproutes"], "verbs": ["list", "get", "watch"]},
            {"apiGroups": [""], "resources": ["events"], "verbs": ["create", "patch"]},
            {"apiGroups": ["events.k8s.io"], "resources": ["events"], "verbs": ["create", "patch"]},
        ],
    })
}

/// The ConfigMap [`LOCAL_MIRROR_CONFIG_MAP`](crate::mirror::LOCAL_MIRROR_CONFIG_MAP): the
/// exclusions for the local member of federated Services (`localServiceMirror.*`), normalized
/// (comma-separated, trimmed, no empty entries), which every mirror controller's Deployment
/// takes into its environment. Always rendered, so clearing the values clears the ConfigMap.
fn local_mirror_config_map(values: &InstallValues, labels: &Map<String, Value>) -> Result<Value> {
    use crate::mirror::{
        LOCAL_EXCLUDED_ANNOTATIONS_KEY, LOCAL_EXCLUDED_LABELS_KEY, LOCAL_MIRROR_CONFIG_MAP,
    };
    let local = &values.local_service_mirror;
    Ok(json!({
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": meta(LOCAL_MIRROR_CONFIG_MAP, Some(&values.namespace), with(labels, &[("component", "controller")])),
        "data": {
            LOCAL_EXCLUDED_LABELS_KEY: local.labels()?.join(","),
            LOCAL_EXCLUDED_ANNOTATIONS_KEY: local.annotations()?.join(","),
        },
    }))
}

/// The gateway's identity Secret (`gateway.identitySecret`, type `kubernetes.io/tls`), mounted
/// at [`IDENTITY_DIR`]: `tls.crt` (the leaf followed by its issuer), `tls.key`, and `ca.crt`
/// (the trust anchors client certificates must chain to).
pub fn gateway_identity_secret(
    values: &InstallValues,
    cert_chain_pem: &str,
    key_pem: &str,
    trust_anchors_pem: &str,
) -> Result<Value> {
    let pems = [cert_chain_pem, key_pem, trust_anchors_pem];
    identity_secret(values, &values.gateway.identity_secret, "gateway", pems)
}

/// The issuer Secret of issuer mode (`identity.issuerSecret`), mounted at [`IDENTITY_DIR`] by
/// the gateway and the egress: `tls.crt` (the issuer, an intermediate CA), `tls.key` (its key)
/// and `ca.crt` (the trust anchors).
pub fn issuer_secret(
    values: &InstallValues,
    issuer_cert_pem: &str,
    issuer_key_pem: &str,
    trust_anchors_pem: &str,
) -> Result<Value> {
    let pems = [issuer_cert_pem, issuer_key_pem, trust_anchors_pem];
    if values.identity.issuer_secret.is_empty() {
        return Err(crate::Error::RenderValue {
            path: "identity.issuerSecret".to_owned(),
            problem: "is empty: there is no issuer Secret to render".to_owned(),
            fix: "name it, e.g. --set identity.issuerSecret=linkerd-multicluster-issuer".to_owned(),
        });
    }
    identity_secret(values, &values.identity.issuer_secret, "identity", pems)
}

/// The egress's identity Secret (`egress.identitySecret`), laid out as
/// [`gateway_identity_secret`]'s: the egress presents its certificate to remote gateways.
pub fn egress_identity_secret(
    values: &InstallValues,
    cert_chain_pem: &str,
    key_pem: &str,
    trust_anchors_pem: &str,
) -> Result<Value> {
    let pems = [cert_chain_pem, key_pem, trust_anchors_pem];
    identity_secret(values, &values.egress.identity_secret, "egress", pems)
}

fn identity_secret(
    values: &InstallValues,
    name: &str,
    component: &str,
    [cert_chain_pem, key_pem, trust_anchors_pem]: [&str; 3],
) -> Result<Value> {
    use base64::Engine as _;
    values.validate()?;
    let b64 = |s: &str| base64::engine::general_purpose::STANDARD.encode(s);
    let labels = base_labels(&values.common_labels);
    Ok(json!({
        "apiVersion": "v1",
        "kind": "Secret",
        "type": "kubernetes.io/tls",
        "metadata": meta(name, Some(&values.namespace), with(&labels, &[("component", component)])),
        "data": {
            "tls.crt": b64(cert_chain_pem),
            "tls.key": b64(key_pem),
            "ca.crt": b64(trust_anchors_pem),
        },
    }))
}

/// The identity the gateway of `values` presents (and that `link` copies into the Link).
pub fn gateway_identity_of(values: &InstallValues) -> Result<String> {
    Ok(gateway_identity(values)?.to_string())
}
