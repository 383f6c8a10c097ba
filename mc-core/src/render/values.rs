//! The values of `mc multicluster install` and of the `charts/mc-multicluster` Helm chart.
//!
//! The value tree has the chart's layout (`gateway.enabled`, `gateway.probe.port`,
//! `remoteMirrorServiceAccountName`, …). [`InstallValues::default`] is exactly the chart's
//! `values.yaml`; Helm-style `--set` / `--set-string` assignments and `-f` files are merged into
//! that tree ([`set`], [`merge`]) and then turned into typed values with
//! [`InstallValues::from_tree`], which rejects unknown keys and wrong types by field path.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::{Error, Result};

/// Default image registry of the mc image (`<registry>/mc:<tag>`).
pub const DEFAULT_REGISTRY: &str = "ghcr.io/mc-project";
/// Name of the one image that holds `mc-gateway` and `mc-mirror`.
pub const IMAGE_NAME: &str = "mc";
/// Default namespace of the extension.
pub const DEFAULT_NAMESPACE: &str = "linkerd-multicluster";
/// Default control-plane namespace.
pub const DEFAULT_LINKERD_NAMESPACE: &str = "linkerd";
/// Default name of the remote-access ServiceAccount.
pub const DEFAULT_REMOTE_ACCESS_SA: &str = "linkerd-service-mirror-remote-access-default";
/// Version of mc; the default image tag.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");

/// The container image of mc: `<registry>/<name>:<tag>`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub struct ImageValues {
    /// Registry and path prefix, e.g. `ghcr.io/mc-project`.
    pub registry: String,
    /// Image name (`mc`).
    pub name: String,
    /// Tag; defaults to the mc version.
    pub tag: String,
    /// `imagePullPolicy` of every container.
    pub pull_policy: String,
}

impl Default for ImageValues {
    fn default() -> ImageValues {
        ImageValues {
            registry: DEFAULT_REGISTRY.to_owned(),
            name: IMAGE_NAME.to_owned(),
            tag: VERSION.to_owned(),
            pull_policy: "IfNotPresent".to_owned(),
        }
    }
}

impl ImageValues {
    /// The full image reference, `registry/name:tag`.
    ///
    /// ```
    /// let image = mc_core::render::ImageValues::default();
    /// assert!(image.reference().starts_with("ghcr.io/mc-project/mc:"));
    /// ```
    pub fn reference(&self) -> String {
        let registry = self.registry.trim_end_matches('/');
        if registry.is_empty() {
            format!("{}:{}", self.name, self.tag)
        } else {
            format!("{registry}/{}:{}", self.name, self.tag)
        }
    }
}

/// The gateway probe (the gateway's admin server).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub struct ProbeValues {
    /// HTTP path probed by the mirror controllers (`/ready`).
    pub path: String,
    /// Port of the admin server and of the `mc-probe` Service port (4191).
    pub port: u16,
    /// Optional nodePort of `mc-probe` (NodePort and LoadBalancer Services).
    pub node_port: Option<u16>,
    /// Probe period in seconds, published as `mirror.linkerd.io/probe-period` (3).
    pub seconds: u32,
}

impl Default for ProbeValues {
    fn default() -> ProbeValues {
        ProbeValues {
            path: crate::labels::DEFAULT_PROBE_PATH.to_owned(),
            port: crate::labels::DEFAULT_PROBE_PORT,
            node_port: None,
            seconds: 3,
        }
    }
}

/// The gateway's allow-list (`gateway.policy`): rendered into the ConfigMap
/// `<gateway.name>-policy`, which the gateway mounts and re-reads when it changes (see
/// [`crate::policy`]).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub struct GatewayPolicyValues {
    /// The rules: `[{services: [glob], clients: [glob]}]`; empty: every service is open to
    /// every identity the trust anchors vouch for.
    pub rules: Vec<crate::policy::PolicyRule>,
}

/// The gateway: Deployment, Service and ServiceAccount.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub struct GatewayValues {
    /// Render the gateway at all (`--gateway=false` turns it off).
    pub enabled: bool,
    /// Name of the Deployment, Service and ServiceAccount (`linkerd-gateway`).
    pub name: String,
    /// Replicas of the Deployment (1; 3 with `--ha`).
    pub replicas: u32,
    /// Port of the mTLS listener and of the `mc-gateway` Service port (4143).
    pub port: u16,
    /// Optional nodePort of `mc-gateway`.
    pub node_port: Option<u16>,
    /// Service type: LoadBalancer (default), NodePort or ClusterIP.
    pub service_type: String,
    /// The probe.
    pub probe: ProbeValues,
    /// Extra annotations on the gateway Service.
    pub service_annotations: BTreeMap<String, String>,
    /// `spec.externalTrafficPolicy` of the Service (empty: not set).
    pub service_external_traffic_policy: String,
    /// `spec.loadBalancerClass` (empty: not set).
    pub load_balancer_class: String,
    /// `spec.loadBalancerIP` (empty: not set).
    #[serde(rename = "loadBalancerIP")]
    pub load_balancer_ip: String,
    /// `spec.loadBalancerSourceRanges`.
    pub load_balancer_source_ranges: Vec<String>,
    /// Secret (type kubernetes.io/tls plus `ca.crt`) holding the gateway's certificate, key and
    /// trust anchors, mounted into the gateway.
    pub identity_secret: String,
    /// Cluster domain: the gateway only forwards to names ending in `svc.<clusterDomain>`.
    pub cluster_domain: String,
    /// UID the gateway runs as.
    #[serde(rename = "UID")]
    pub uid: u32,
    /// GID the gateway runs as.
    #[serde(rename = "GID")]
    pub gid: u32,
    /// The allow-list.
    pub policy: GatewayPolicyValues,
    /// How the gateway finds a target's endpoints: `kubernetes` (watches Services,
    /// EndpointSlices and meshed Pods through the API, with a read-only ClusterRole: StatefulSet
    /// Pods at their targetPort, meshed backends with mTLS) or `dns` (cluster DNS, no API
    /// access, no backend mTLS).
    pub resolver: String,
    /// mTLS to meshed backends with `resolver: kubernetes`: `linkerd` dials the Pods that the
    /// Linkerd control plane (`linkerdNamespace`) meshes as the gateway's identity, as upstream's
    /// meshed gateway does; `off` dials every backend in plaintext.
    pub backend_mtls: String,
}

impl Default for GatewayValues {
    fn default() -> GatewayValues {
        GatewayValues {
            enabled: true,
            name: "linkerd-gateway".to_owned(),
            replicas: 1,
            port: crate::labels::DEFAULT_GATEWAY_PORT,
            node_port: None,
            service_type: "LoadBalancer".to_owned(),
            probe: ProbeValues::default(),
            service_annotations: BTreeMap::new(),
            service_external_traffic_policy: String::new(),
            load_balancer_class: String::new(),
            load_balancer_ip: String::new(),
            load_balancer_source_ranges: Vec::new(),
            identity_secret: "linkerd-gateway-identity".to_owned(),
            cluster_domain: "cluster.local".to_owned(),
            uid: 2103,
            gid: 2103,
            policy: GatewayPolicyValues::default(),
            resolver: "kubernetes".to_owned(),
            backend_mtls: "linkerd".to_owned(),
        }
    }
}

/// The source-side egress: the Deployment unmeshed Pods reach mirrored Services through (see
/// [`crate::egress`]).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub struct EgressValues {
    /// Render the egress (`--egress=false` turns it off; Links then use gateway mode).
    pub enabled: bool,
    /// Replicas of the Deployment (2: one may restart while the other serves; 3 with `--ha`).
    pub replicas: u32,
    /// Port of the egress's admin server (/ready, /live, /metrics) and of its Service.
    pub admin_port: u16,
    /// Secret (type kubernetes.io/tls plus `ca.crt`) holding the egress's client certificate,
    /// key and trust anchors (`mc multicluster egress-identity`).
    pub identity_secret: String,
    /// UID the egress runs as.
    #[serde(rename = "UID")]
    pub uid: u32,
    /// GID the egress runs as.
    #[serde(rename = "GID")]
    pub gid: u32,
}

impl Default for EgressValues {
    fn default() -> EgressValues {
        EgressValues {
            enabled: true,
            replicas: 2,
            admin_port: crate::labels::DEFAULT_PROBE_PORT,
            identity_secret: "linkerd-multicluster-egress-identity".to_owned(),
            uid: 2103,
            gid: 2103,
        }
    }
}

/// Where the gateway's and the egress's certificates come from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub struct IdentityValues {
    /// Empty (the default): each Pod mounts its own leaf Secret (`gateway.identitySecret`,
    /// `egress.identitySecret`), renewed by whoever writes it. A Secret name: the Pods mount
    /// this issuer Secret (`tls.crt`, `tls.key`: an intermediate CA; `ca.crt`: the trust
    /// anchors) and mint their own leaves, renewed automatically (see docs/security.md).
    pub issuer_secret: String,
    /// Lifetime of a self-minted leaf (Go duration, e.g. `24h`); renewed at two thirds of it.
    pub leaf_lifetime: String,
}

impl Default for IdentityValues {
    fn default() -> IdentityValues {
        IdentityValues {
            issuer_secret: String::new(),
            leaf_lifetime: "24h".to_owned(),
        }
    }
}

/// Everything `mc multicluster install` (and the Helm chart) renders from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub struct InstallValues {
    /// Namespace of the extension (`linkerd-multicluster`).
    pub namespace: String,
    /// Render the Namespace object itself.
    pub install_namespace: bool,
    /// Value of the namespace label `pod-security.kubernetes.io/enforce`.
    pub pod_security: String,
    /// Control-plane namespace, part of every identity (`linkerd`).
    pub linkerd_namespace: String,
    /// Trust domain, the last part of every identity (`cluster.local`).
    pub identity_trust_domain: String,
    /// The mc image.
    pub image: ImageValues,
    /// Names of image pull Secrets for every pod.
    pub image_pull_secrets: Vec<String>,
    /// The gateway.
    pub gateway: GatewayValues,
    /// The egress.
    pub egress: EgressValues,
    /// Where the gateway's and the egress's certificates come from.
    pub identity: IdentityValues,
    /// Render the remote-access ServiceAccounts and their RBAC.
    pub remote_mirror_service_account: bool,
    /// Names of the remote-access ServiceAccounts: a list, or one string of comma-separated names.
    #[serde(deserialize_with = "names_or_list")]
    pub remote_mirror_service_account_name: Vec<String>,
    /// Grant the mirror controllers `create` on namespaces.
    pub enable_namespace_creation: bool,
    /// Spread replicas (anti-affinity) and protect them with a PodDisruptionBudget.
    pub enable_pod_anti_affinity: bool,
    /// Labels added to every object.
    pub common_labels: BTreeMap<String, String>,
    /// Mirror controllers started by the install, one per entry, for Links applied on their
    /// own (e.g. `linkerd multicluster link-gen` output): upstream's `controllers` list. Each
    /// entry is `{link: {ref: {name: <Link>}}}` plus any `controllerDefaults` key, which
    /// overrides the default for that controller; see [`InstallValues::controllers`].
    pub controllers: Vec<Value>,
    /// Defaults of every `controllers` entry (upstream's `controllerDefaults`).
    pub controller_defaults: ControllerDefaults,
    /// The local member of federated Services (upstream's `localServiceMirror`): what is not
    /// copied from a local Service onto `<svc>-federated`.
    pub local_service_mirror: LocalServiceMirrorValues,
}

/// `localServiceMirror`: upstream's local service mirror, which puts the local cluster's
/// Services labelled `mirror.linkerd.io/federated=member` into `<svc>-federated`. In mc every
/// mirror controller does that, and these are the two settings it takes from the install: the
/// install renders them into the ConfigMap [`LOCAL_MIRROR_CONFIG_MAP`](crate::mirror::LOCAL_MIRROR_CONFIG_MAP),
/// which every controller reads at start (docs/mirror.md, "Federated Services").
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub struct LocalServiceMirrorValues {
    /// Label keys of a local member not copied onto `<svc>-federated`: comma-separated (as
    /// upstream; a list is accepted too), each a key or `prefix/*` (every key starting with
    /// `prefix`). Empty by default.
    #[serde(deserialize_with = "comma_list")]
    pub excluded_labels: String,
    /// Annotation keys of a local member not copied onto `<svc>-federated`, as
    /// `excluded_labels`.
    #[serde(deserialize_with = "comma_list")]
    pub excluded_annotations: String,
}

/// Settings of upstream's local service mirror Deployment, which mc has not, with the fix.
const LOCAL_MIRROR_UPSTREAM_ONLY: &[&str] = &[
    "serviceMirrorRetryLimit",
    "federatedServiceSelector",
    "replicas",
    "image",
    "logLevel",
    "logFormat",
    "enablePprof",
    "UID",
    "GID",
    "resources",
    "additionalEnv",
    "experimentalEnv",
];

impl LocalServiceMirrorValues {
    /// The label exclusions, split and checked ([`crate::mirror::parse_exclusions`]); a bad
    /// entry is an error naming `localServiceMirror.excludedLabels[i]`.
    pub fn labels(&self) -> Result<Vec<String>> {
        exclusion_list("localServiceMirror.excludedLabels", &self.excluded_labels)
    }

    /// The annotation exclusions, as [`LocalServiceMirrorValues::labels`].
    pub fn annotations(&self) -> Result<Vec<String>> {
        exclusion_list(
            "localServiceMirror.excludedAnnotations",
            &self.excluded_annotations,
        )
    }
}

fn exclusion_list(path: &str, list: &str) -> Result<Vec<String>> {
    crate::mirror::parse_exclusions(list, path).map_err(|e| match e {
        Error::InvalidField {
            field,
            value,
            problem,
            fix,
        } => Error::RenderValue {
            path: field,
            problem: format!("{value:?} {problem}"),
            fix,
        },
        other => other,
    })
}

/// A comma-separated list given as one string (upstream's type) or as a list of strings,
/// kept as one comma-separated string.
fn comma_list<'de, D>(de: D) -> std::result::Result<String, D::Error>
where
    D: serde::Deserializer<'de>,
{
    Ok(OneOrMany::deserialize(de)?.into_vec().join(","))
}

/// A value given as one string or as a list of strings.
#[derive(Deserialize)]
#[serde(untagged)]
enum OneOrMany {
    One(String),
    Many(Vec<String>),
}

impl OneOrMany {
    fn into_vec(self) -> Vec<String> {
        match self {
            OneOrMany::One(s) => vec![s],
            OneOrMany::Many(v) => v,
        }
    }
}

/// `controllerDefaults`: the settings of an install-managed mirror controller, each of which a
/// `controllers` entry may override (upstream's keys, those mc's controller has).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub struct ControllerDefaults {
    /// Replicas; only the Lease holder works (1).
    pub replicas: u32,
    /// The Link's gateway: whether to render the probe Service, and its port.
    pub gateway: ControllerGatewayValues,
    /// Log level: trace, debug, info, warn or error (`info`).
    pub log_level: String,
    /// Log format: `plain` or `json`.
    pub log_format: String,
    /// Mirror headless Services as headless mirrors.
    pub enable_headless_services: bool,
    /// Spread replicas over nodes and protect them with a PodDisruptionBudget.
    pub enable_pod_anti_affinity: bool,
    /// UID the controller runs as.
    #[serde(rename = "UID")]
    pub uid: u32,
    /// GID the controller runs as.
    #[serde(rename = "GID")]
    pub gid: u32,
}

impl Default for ControllerDefaults {
    fn default() -> ControllerDefaults {
        ControllerDefaults {
            replicas: 1,
            gateway: ControllerGatewayValues::default(),
            log_level: "info".to_owned(),
            log_format: "plain".to_owned(),
            enable_headless_services: false,
            enable_pod_anti_affinity: false,
            uid: 2103,
            gid: 2103,
        }
    }
}

/// `controllerDefaults.gateway`: the Link's gateway as its controller sees it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub struct ControllerGatewayValues {
    /// The Link has a gateway: render its probe Service (`false` for remote-discovery-only
    /// Links).
    pub enabled: bool,
    /// The probe.
    pub probe: ControllerProbeValues,
}

impl Default for ControllerGatewayValues {
    fn default() -> ControllerGatewayValues {
        ControllerGatewayValues {
            enabled: true,
            probe: ControllerProbeValues::default(),
        }
    }
}

/// `controllerDefaults.gateway.probe`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub struct ControllerProbeValues {
    /// Port of the probe Service (the Link's `spec.probeSpec.port`, 4191).
    pub port: u16,
}

impl Default for ControllerProbeValues {
    fn default() -> ControllerProbeValues {
        ControllerProbeValues {
            port: crate::labels::DEFAULT_PROBE_PORT,
        }
    }
}

impl Default for InstallValues {
    fn default() -> InstallValues {
        InstallValues {
            namespace: DEFAULT_NAMESPACE.to_owned(),
            install_namespace: true,
            pod_security: "restricted".to_owned(),
            linkerd_namespace: DEFAULT_LINKERD_NAMESPACE.to_owned(),
            identity_trust_domain: "cluster.local".to_owned(),
            image: ImageValues::default(),
            image_pull_secrets: Vec::new(),
            gateway: GatewayValues::default(),
            egress: EgressValues::default(),
            identity: IdentityValues::default(),
            remote_mirror_service_account: true,
            remote_mirror_service_account_name: vec![DEFAULT_REMOTE_ACCESS_SA.to_owned()],
            enable_namespace_creation: false,
            enable_pod_anti_affinity: false,
            common_labels: BTreeMap::new(),
            controllers: Vec::new(),
            controller_defaults: ControllerDefaults::default(),
            local_service_mirror: LocalServiceMirrorValues::default(),
        }
    }
}

impl InstallValues {
    /// The default values as a tree, the starting point of [`merge`] and [`set`].
    pub fn default_tree() -> Value {
        serde_json::to_value(InstallValues::default()).unwrap_or(Value::Null)
    }

    /// Typed values from a (merged) value tree; unknown keys and wrong types are errors that name
    /// the field path.
    pub fn from_tree(tree: &Value) -> Result<InstallValues> {
        // Settings of Linkerd's controller that mc's has not: named before serde's generic
        // "unknown field" can be.
        if let Some(defaults) = tree.get("controllerDefaults") {
            super::controllers::refuse_upstream_only("controllerDefaults", defaults)?;
        }
        if let Some(local) = tree.get("localServiceMirror").and_then(Value::as_object)
            && let Some(key) = LOCAL_MIRROR_UPSTREAM_ONLY
                .iter()
                .find(|k| local.contains_key(**k))
        {
            return Err(bad(
                &format!("localServiceMirror.{key}"),
                &local[*key].to_string(),
                "is a setting of Linkerd's local service mirror Deployment, which mc has not: \
                 every mc mirror controller adds the local members (label \
                 mirror.linkerd.io/federated=member) to federated Services",
                "remove it; localServiceMirror takes only excludedLabels and excludedAnnotations",
            ));
        }
        let values: InstallValues =
            serde_json::from_value(tree.clone()).map_err(|e| Error::RenderValue {
                path: "(install values)".to_owned(),
                problem: e.to_string(),
                fix: "remove the key or give it the type of the chart's values.yaml \
                      (see `mc multicluster install --help`)"
                    .to_owned(),
            })?;
        values.validate()?;
        Ok(values)
    }

    /// The HA profile (`--ha`): three gateway, egress and controller replicas spread over
    /// nodes.
    pub fn ha_tree() -> Value {
        serde_json::json!({
            "gateway": {"replicas": 3},
            "egress": {"replicas": 3},
            "enablePodAntiAffinity": true,
            "controllerDefaults": {"replicas": 3, "enablePodAntiAffinity": true},
        })
    }

    /// Checks what serde cannot: names, ports, service type, image.
    pub fn validate(&self) -> Result<()> {
        check_dns_label("namespace", &self.namespace)?;
        check_dns_label("linkerdNamespace", &self.linkerd_namespace)?;
        check_dns_label("gateway.name", &self.gateway.name)?;
        check_subdomain("identityTrustDomain", &self.identity_trust_domain)?;
        if self.remote_mirror_service_account {
            if self.remote_mirror_service_account_name.is_empty() {
                return Err(bad(
                    "remoteMirrorServiceAccountName",
                    "",
                    "is empty",
                    "give at least one ServiceAccount name, or set remoteMirrorServiceAccount=false",
                ));
            }
            for name in &self.remote_mirror_service_account_name {
                check_subdomain("remoteMirrorServiceAccountName", name)?;
            }
        }
        for (path, port) in [
            ("gateway.port", self.gateway.port),
            ("gateway.probe.port", self.gateway.probe.port),
        ] {
            if port == 0 {
                return Err(bad(path, "0", "is not a port", "use a port in 1-65535"));
            }
        }
        if self.gateway.port == self.gateway.probe.port {
            return Err(bad(
                "gateway.probe.port",
                &self.gateway.probe.port.to_string(),
                "equals gateway.port",
                "the mTLS listener and the admin server need different ports",
            ));
        }
        if self.gateway.probe.seconds == 0 {
            return Err(bad(
                "gateway.probe.seconds",
                "0",
                "is not a period",
                "use a number of seconds of at least 1",
            ));
        }
        if !self.gateway.probe.path.starts_with('/') {
            return Err(bad(
                "gateway.probe.path",
                &self.gateway.probe.path,
                "is not an absolute path",
                "start it with '/', e.g. /ready",
            ));
        }
        let gw = &self.gateway;
        one_of(
            ("gateway.serviceType", &gw.service_type),
            &["LoadBalancer", "NodePort", "ClusterIP"],
            "is not a Service type the gateway can use",
            "use LoadBalancer, NodePort or ClusterIP",
        )?;
        one_of(
            ("gateway.resolver", &gw.resolver),
            &["kubernetes", "dns"],
            "is not a resolver the gateway has",
            "use kubernetes (Services and EndpointSlices through the API) or dns",
        )?;
        one_of(
            ("gateway.backendMtls", &gw.backend_mtls),
            &["linkerd", "off"],
            "is not a backend mTLS mode",
            "use linkerd (mTLS to Pods the Linkerd control plane meshes) or off",
        )?;
        if self.gateway.replicas == 0 && self.gateway.enabled {
            return Err(bad(
                "gateway.replicas",
                "0",
                "leaves the gateway without pods",
                "use at least 1, or set gateway.enabled=false",
            ));
        }
        check_subdomain("gateway.clusterDomain", &self.gateway.cluster_domain)?;
        if let Some((n, why)) = crate::policy::problem(&self.gateway.policy.rules) {
            return Err(Error::RenderValue {
                path: format!("gateway.policy.rules[{n}]"),
                problem: why.to_owned(),
                fix: "give every rule at least one service pattern, and write every pattern as a \
                      host name or identity glob, e.g. {services: [\"web.shop.svc.cluster.local\"], \
                      clients: [\"*.shop.serviceaccount.identity.linkerd.cluster.local\"]}"
                    .to_owned(),
            });
        }
        check_dns_label("gateway.identitySecret", &self.gateway.identity_secret).or_else(|_| {
            check_subdomain("gateway.identitySecret", &self.gateway.identity_secret)
        })?;
        if self.egress.enabled {
            if self.egress.replicas == 0 {
                return Err(bad(
                    "egress.replicas",
                    "0",
                    "leaves the egress without pods",
                    "use at least 1, or set egress.enabled=false",
                ));
            }
            if self.egress.admin_port == 0
                || crate::egress::PORT_RANGE.contains(&self.egress.admin_port)
            {
                return Err(bad(
                    "egress.adminPort",
                    &self.egress.admin_port.to_string(),
                    "is not a port or lies in the egress route range 20000-32767",
                    "use a port in 1-19999, e.g. 4191",
                ));
            }
            check_subdomain("egress.identitySecret", &self.egress.identity_secret)?;
        }
        if !self.identity.issuer_secret.is_empty() {
            check_subdomain("identity.issuerSecret", &self.identity.issuer_secret)?;
        }
        match crate::link::parse_duration(&self.identity.leaf_lifetime) {
            Ok(d) if !d.is_zero() => {}
            _ => {
                return Err(bad(
                    "identity.leafLifetime",
                    &self.identity.leaf_lifetime,
                    "is not a positive duration",
                    "use a Go duration such as 24h or 90m",
                ));
            }
        }
        if self.image.name.is_empty() || self.image.tag.is_empty() {
            return Err(bad(
                "image",
                &self.image.reference(),
                "has an empty name or tag",
                "set --registry/--tag or image.name/image.tag",
            ));
        }
        if !matches!(
            self.image.pull_policy.as_str(),
            "Always" | "IfNotPresent" | "Never"
        ) {
            return Err(bad(
                "image.pullPolicy",
                &self.image.pull_policy,
                "is not a pull policy",
                "use Always, IfNotPresent or Never",
            ));
        }
        self.controllers()?;
        self.local_service_mirror.labels()?;
        self.local_service_mirror.annotations()?;
        Ok(())
    }
}

pub(super) fn bad(path: &str, value: &str, problem: &str, fix: &str) -> Error {
    Error::RenderValue {
        path: path.to_owned(),
        problem: format!("{value:?} {problem}"),
        fix: fix.to_owned(),
    }
}

/// `value` (at `path`) must be one of `allowed`; otherwise [`bad`] with `problem` and `fix`.
fn one_of((path, value): (&str, &str), allowed: &[&str], problem: &str, fix: &str) -> Result<()> {
    if allowed.contains(&value) {
        Ok(())
    } else {
        Err(bad(path, value, problem, fix))
    }
}

fn check_dns_label(path: &str, value: &str) -> Result<()> {
    if crate::naming::is_dns1123_label(value) {
        Ok(())
    } else {
        Err(bad(
            path,
            value,
            "is not a DNS label",
            "use 1-63 characters of a-z, 0-9 and '-', starting and ending with a letter or digit",
        ))
    }
}

fn check_subdomain(path: &str, value: &str) -> Result<()> {
    if crate::naming::is_dns1123_subdomain(value) {
        Ok(())
    } else {
        Err(bad(
            path,
            value,
            "is not a DNS name",
            "use lowercase labels of a-z, 0-9 and '-' separated by dots",
        ))
    }
}

fn names_or_list<'de, D>(de: D) -> std::result::Result<Vec<String>, D::Error>
where
    D: serde::Deserializer<'de>,
{
    let names = OneOrMany::deserialize(de)?.into_vec();
    Ok(split_names(&names))
}

/// Splits comma-separated names, trims them, drops empties and duplicates (first one wins).
///
/// ```
/// let names = mc_core::render::split_names(&["a,b".to_owned(), " c ".to_owned(), "a".to_owned()]);
/// assert_eq!(names, ["a", "b", "c"]);
/// ```
pub fn split_names(items: &[String]) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for name in items.iter().flat_map(|s| s.split(',')) {
        let name = name.trim();
        if !name.is_empty() && !out.iter().any(|n| n == name) {
            out.push(name.to_owned());
        }
    }
    out
}

/// Deep-merges `overlay` into `base`: maps merge key by key, anything else is replaced (Helm's
/// rule for `-f` files).
pub fn merge(base: &mut Value, overlay: Value) {
    match (base, overlay) {
        (Value::Object(base), Value::Object(overlay)) => {
            for (key, value) in overlay {
                match base.get_mut(&key) {
                    Some(slot) if slot.is_object() && value.is_object() => merge(slot, value),
                    _ => {
                        base.insert(key, value);
                    }
                }
            }
        }
        (base, overlay) => *base = overlay,
    }
}

/// Applies Helm `--set` assignments (`a.b=1,c={x,y}`) to `tree`. With `as_string` every value
/// is a string (`--set-string`); otherwise `true`/`false`, integers and `null` are typed.
///
/// ```
/// let mut tree = serde_json::json!({});
/// mc_core::render::set(&mut tree, "gateway.port=5000,gateway.enabled=false", false).unwrap();
/// assert_eq!(tree, serde_json::json!({"gateway": {"port": 5000, "enabled": false}}));
/// ```
pub fn set(tree: &mut Value, assignments: &str, as_string: bool) -> Result<()> {
    for assignment in split_top_level(assignments) {
        let assignment = assignment.trim();
        if assignment.is_empty() {
            continue;
        }
        let Some((path, raw)) = assignment.split_once('=') else {
            return Err(Error::RenderSet {
                input: assignment.to_owned(),
                problem: "has no '='".to_owned(),
            });
        };
        let keys = parse_path(path).map_err(|problem| Error::RenderSet {
            input: assignment.to_owned(),
            problem,
        })?;
        let value = if raw.starts_with('{') && raw.ends_with('}') && raw.len() >= 2 {
            let inner = &raw[1..raw.len() - 1];
            Value::Array(
                split_top_level(inner)
                    .into_iter()
                    .filter(|s| !s.is_empty())
                    .map(|s| scalar(&unescape(&s), as_string))
                    .collect(),
            )
        } else {
            scalar(&unescape(raw), as_string)
        };
        insert(tree, &keys, value).map_err(|problem| Error::RenderSet {
            input: assignment.to_owned(),
            problem,
        })?;
    }
    Ok(())
}

/// One step of a `--set` path.
#[derive(Debug, PartialEq)]
enum Key {
    Field(String),
    Index(usize),
}

fn split_top_level(s: &str) -> Vec<String> {
    let mut parts = Vec::new();
    let mut cur = String::new();
    let mut depth = 0usize;
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        match c {
            '\\' => {
                cur.push(c);
                if let Some(next) = chars.next() {
                    cur.push(next);
                }
            }
            '{' => {
                depth += 1;
                cur.push(c);
            }
            '}' => {
                depth = depth.saturating_sub(1);
                cur.push(c);
            }
            ',' if depth == 0 => parts.push(std::mem::take(&mut cur)),
            _ => cur.push(c),
        }
    }
    parts.push(cur);
    parts
}

fn unescape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        if c == '\\' {
            if let Some(next) = chars.next() {
                out.push(next);
            }
        } else {
            out.push(c);
        }
    }
    out
}

fn parse_path(path: &str) -> std::result::Result<Vec<Key>, String> {
    let mut keys = Vec::new();
    let mut cur = String::new();
    let mut chars = path.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\\' => {
                if let Some(next) = chars.next() {
                    cur.push(next);
                }
            }
            '.' => {
                if !cur.is_empty() {
                    keys.push(Key::Field(std::mem::take(&mut cur)));
                } else if !matches!(keys.last(), Some(Key::Index(_))) {
                    return Err(format!("empty key in path {path:?}"));
                }
            }
            '[' => {
                if !cur.is_empty() {
                    keys.push(Key::Field(std::mem::take(&mut cur)));
                }
                let mut digits = String::new();
                for d in chars.by_ref() {
                    if d == ']' {
                        break;
                    }
                    digits.push(d);
                }
                let index = digits
                    .parse::<usize>()
                    .map_err(|_| format!("list index [{digits}] is not a number"))?;
                if index > 1024 {
                    return Err(format!("list index [{index}] is too large (at most 1024)"));
                }
                keys.push(Key::Index(index));
            }
            _ => cur.push(c),
        }
    }
    if !cur.is_empty() {
        keys.push(Key::Field(cur));
    }
    if keys.is_empty() {
        return Err("the key is empty".to_owned());
    }
    Ok(keys)
}

fn scalar(raw: &str, as_string: bool) -> Value {
    if as_string {
        return Value::String(raw.to_owned());
    }
    match raw {
        "true" => Value::Bool(true),
        "false" => Value::Bool(false),
        "null" => Value::Null,
        _ => match raw.parse::<i64>() {
            Ok(n) if !(raw.len() > 1 && raw.starts_with('0')) => Value::from(n),
            _ => Value::String(raw.to_owned()),
        },
    }
}

fn insert(tree: &mut Value, keys: &[Key], value: Value) -> std::result::Result<(), String> {
    let Some((first, rest)) = keys.split_first() else {
        *tree = value;
        return Ok(());
    };
    match first {
        Key::Field(name) => {
            if !tree.is_object() {
                *tree = Value::Object(Map::new());
            }
            let Value::Object(map) = tree else {
                return Err("internal: not a map".to_owned());
            };
            let slot = map.entry(name.clone()).or_insert(Value::Null);
            insert(slot, rest, value)
        }
        Key::Index(index) => {
            if !tree.is_array() {
                *tree = Value::Array(Vec::new());
            }
            let Value::Array(list) = tree else {
                return Err("internal: not a list".to_owned());
            };
            while list.len() <= *index {
                list.push(Value::Null);
            }
            insert(&mut list[*index], rest, value)
        }
    }
}

/// Reads a YAML values document (`-f FILE`) into a tree; `what` names the input in errors.
pub fn parse_values_yaml(what: &str, text: &str) -> Result<Value> {
    let value: Value = serde_yaml::from_str(text).map_err(|e| Error::RenderValue {
        path: what.to_owned(),
        problem: format!("is not valid YAML: {e}"),
        fix: "fix the YAML syntax at the line shown".to_owned(),
    })?;
    match value {
        Value::Null => Ok(Value::Object(Map::new())),
        Value::Object(_) => Ok(value),
        _ => Err(Error::RenderValue {
            path: what.to_owned(),
            problem: "is not a map of values".to_owned(),
            fix: "write a YAML map, e.g. `gateway: {enabled: false}`".to_owned(),
        }),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;
    use serde_json::json;

    #[test]
    fn set_types_scalars_lists_and_indexes() {
        let mut tree = json!({"gateway": {"name": "gw"}});
        set(
            &mut tree,
            "gateway.port=5000,gateway.enabled=false,a.b=x\\,y,l={p,q},m[1].n=007",
            false,
        )
        .unwrap();
        assert_eq!(
            tree,
            json!({
                "gateway": {"name": "gw", "port": 5000, "enabled": false},
                "a": {"b": "x,y"},
                "l": ["p", "q"],
                "m": [null, {"n": "007"}],
            })
        );
        let mut tree = json!({});
        set(&mut tree, "gateway.port=5000", true).unwrap();
        assert_eq!(tree, json!({"gateway": {"port": "5000"}}));
    }

    #[test]
    fn set_rejects_malformed_assignments() {
        let mut tree = json!({});
        for bad in ["novalue", "=1", "a[x]=1", "a..b=1"] {
            let err = set(&mut tree, bad, false).unwrap_err();
            assert!(matches!(err, Error::RenderSet { .. }), "{bad}: {err}");
        }
    }

    #[test]
    fn merge_is_deep_for_maps_and_replaces_lists() {
        let mut base = json!({"a": {"b": 1, "c": [1, 2]}, "d": 1});
        merge(&mut base, json!({"a": {"c": [3]}, "e": 2}));
        assert_eq!(base, json!({"a": {"b": 1, "c": [3]}, "d": 1, "e": 2}));
    }

    #[test]
    fn default_tree_round_trips() {
        let tree = InstallValues::default_tree();
        assert_eq!(
            InstallValues::from_tree(&tree).unwrap(),
            InstallValues::default()
        );
        assert_eq!(tree["gateway"]["probe"]["port"], json!(4191));
        assert_eq!(tree["gateway"]["loadBalancerIP"], json!(""));
        assert_eq!(tree["gateway"]["UID"], json!(2103));
    }

    #[test]
    fn service_account_names_accept_string_comma_list_and_list() {
        let mut tree = InstallValues::default_tree();
        set(&mut tree, "remoteMirrorServiceAccountName=a\\,b", false).unwrap();
        let v = InstallValues::from_tree(&tree).unwrap();
        assert_eq!(v.remote_mirror_service_account_name, ["a", "b"]);
        merge(
            &mut tree,
            json!({"remoteMirrorServiceAccountName": ["c", "d,e", "c"]}),
        );
        let v = InstallValues::from_tree(&tree).unwrap();
        assert_eq!(v.remote_mirror_service_account_name, ["c", "d", "e"]);
    }

    #[test]
    fn unknown_keys_and_bad_values_name_the_field() {
        let mut tree = InstallValues::default_tree();
        set(&mut tree, "gateway.prot=1", false).unwrap();
        let err = InstallValues::from_tree(&tree).unwrap_err().to_string();
        assert!(err.contains("prot"), "{err}");

        let mut tree = InstallValues::default_tree();
        set(&mut tree, "gateway.serviceType=Foo", false).unwrap();
        let err = InstallValues::from_tree(&tree).unwrap_err().to_string();
        assert!(err.contains("gateway.serviceType"), "{err}");
        assert!(err.contains("LoadBalancer, NodePort or ClusterIP"), "{err}");

        for (value, fix) in [
            ("gateway.resolver=coredns", "use kubernetes"),
            ("gateway.backendMtls=istio", "use linkerd"),
        ] {
            let mut tree = InstallValues::default_tree();
            set(&mut tree, value, false).unwrap();
            let err = InstallValues::from_tree(&tree).unwrap_err().to_string();
            let path = value.split('=').next().unwrap();
            assert!(err.contains(path) && err.contains(fix), "{err}");
        }

        let mut tree = InstallValues::default_tree();
        set(&mut tree, "gateway.port=70000", false).unwrap();
        assert!(InstallValues::from_tree(&tree).is_err());

        let mut tree = InstallValues::default_tree();
        set(&mut tree, "gateway.probe.port=4143", false).unwrap();
        let err = InstallValues::from_tree(&tree).unwrap_err().to_string();
        assert!(err.contains("equals gateway.port"), "{err}");
    }

    #[test]
    fn values_yaml_must_be_a_map() {
        assert!(parse_values_yaml("f.yaml", "- a\n- b\n").is_err());
        assert!(parse_values_yaml("f.yaml", "a: [\n").is_err());
        assert_eq!(parse_values_yaml("f.yaml", "").unwrap(), json!({}));
    }
}
