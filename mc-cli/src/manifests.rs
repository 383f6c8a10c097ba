//! `install`, `allow`, `unlink` and `uninstall`: render, or list what to delete.

use std::io::Write;
use std::path::PathBuf;

use clap::ValueEnum;
use k8s_openapi::api::core::v1::ServiceAccount;
use mc_core::render::{self, InstallValues, ObjectRef};
use serde_json::{Value, json};

use crate::cli::{ImageArgs, ManifestFormat, bool_flag, read_text};
use crate::kube::{KubeArgs, list_refs};
use crate::{Error, Result, emit};

/// Service type of the gateway.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ServiceType {
    /// A load balancer (default).
    #[value(name = "LoadBalancer")]
    LoadBalancer,
    /// A port on every node.
    #[value(name = "NodePort")]
    NodePort,
    /// Cluster-internal only.
    #[value(name = "ClusterIP")]
    ClusterIp,
}

impl ServiceType {
    fn as_str(self) -> &'static str {
        match self {
            ServiceType::LoadBalancer => "LoadBalancer",
            ServiceType::NodePort => "NodePort",
            ServiceType::ClusterIp => "ClusterIP",
        }
    }
}

/// Flags of `mc multicluster install`.
#[derive(Debug, clap::Args)]
pub struct InstallArgs {
    /// Render the gateway (`--gateway=false` for remote-discovery-only clusters).
    #[arg(long, action = bool_flag(), num_args = 0..=1, require_equals = true, default_missing_value = "true", value_name = "BOOL")]
    pub gateway: Option<bool>,
    /// Port of the gateway's mTLS listener.
    #[arg(long, value_name = "PORT")]
    pub gateway_port: Option<u16>,
    /// Port of the gateway's probe (admin) server.
    #[arg(long, value_name = "PORT")]
    pub gateway_probe_port: Option<u16>,
    /// Probe period published on the gateway Service, in seconds.
    #[arg(long, value_name = "SECONDS")]
    pub gateway_probe_seconds: Option<u32>,
    /// Service type of the gateway.
    #[arg(long, value_enum, value_name = "TYPE")]
    pub gateway_service_type: Option<ServiceType>,
    /// The gateway's allow-list: a YAML file `rules: [{services: [glob], clients: [glob]}]`
    /// (`gateway.policy.rules`), rendered into the ConfigMap `<gateway>-policy` that the
    /// gateway re-reads when it changes. Without it every Service is open to every identity
    /// the trust anchors vouch for.
    #[arg(long, value_name = "FILE")]
    pub gateway_policy: Option<PathBuf>,
    /// Render the egress, through which unmeshed Pods reach mirrored Services
    /// (`--egress=false` to skip; Links then serve their mirrors in gateway mode).
    #[arg(long, action = bool_flag(), num_args = 0..=1, require_equals = true, default_missing_value = "true", value_name = "BOOL")]
    pub egress: Option<bool>,
    /// Issuer mode: the gateway and the egress mount this Secret (from
    /// `mc multicluster issuer-secret`) and mint their own short-lived leaves, renewed
    /// automatically (`identity.issuerSecret`; see also `identity.leafLifetime`).
    #[arg(long, value_name = "SECRET")]
    pub issuer_secret: Option<String>,
    /// High availability: 3 gateway and egress replicas, anti-affinity and
    /// PodDisruptionBudgets.
    #[arg(long)]
    pub ha: bool,
    /// Render the remote-access ServiceAccounts and RBAC (`=false` to skip).
    #[arg(long, action = bool_flag(), num_args = 0..=1, require_equals = true, default_missing_value = "true", value_name = "BOOL")]
    pub service_mirror_credentials: Option<bool>,
    /// Names of the remote-access ServiceAccounts (repeatable, or comma-separated).
    #[arg(long = "remote-mirror-service-account-name", value_name = "NAMES")]
    pub remote_mirror_service_account_name: Vec<String>,
    /// Namespace of the extension.
    #[arg(long, value_name = "NS")]
    pub namespace: Option<String>,
    /// Trust domain of the cluster's identities (default: `identityTrustDomain` of the
    /// cluster's linkerd-config, else cluster.local).
    #[arg(long, value_name = "DOMAIN")]
    pub identity_trust_domain: Option<String>,
    /// Render offline: do not read the cluster's linkerd-config for the trust domain.
    #[arg(long)]
    pub ignore_cluster: bool,
    /// Image.
    #[command(flatten)]
    pub image: ImageArgs,
    /// Values file(s) in the chart's layout (repeatable; later files win).
    #[arg(short = 'f', long = "values", value_name = "FILE")]
    pub values: Vec<PathBuf>,
    /// Set values (`a.b=c,d=e`), as `helm --set` (repeatable).
    #[arg(long = "set", value_name = "KEY=VALUE")]
    pub set: Vec<String>,
    /// Set string values, as `helm --set-string` (repeatable).
    #[arg(long = "set-string", value_name = "KEY=VALUE")]
    pub set_string: Vec<String>,
    /// Output format.
    #[arg(short = 'o', long, value_enum, default_value = "yaml")]
    pub output: ManifestFormat,
}

impl InstallArgs {
    /// The merged values: defaults, `--ha`, the trust domain read from the cluster (if any),
    /// flags, `-f` files, `--set`, `--set-string`.
    pub fn values(
        &self,
        linkerd_namespace: &str,
        cluster_trust_domain: Option<&str>,
    ) -> Result<InstallValues> {
        let mut tree = InstallValues::default_tree();
        if self.ha {
            render::merge(&mut tree, InstallValues::ha_tree());
        }
        if let Some(domain) = cluster_trust_domain {
            render::merge(&mut tree, json!({"identityTrustDomain": domain}));
        }
        let mut flags = json!({"linkerdNamespace": linkerd_namespace});
        let mut put = |path: &[&str], v: Value| {
            let mut slot = &mut flags;
            for key in path {
                slot = &mut slot[*key];
            }
            *slot = v;
        };
        if let Some(v) = self.gateway {
            put(&["gateway", "enabled"], json!(v));
        }
        if let Some(v) = self.egress {
            put(&["egress", "enabled"], json!(v));
        }
        if let Some(v) = &self.issuer_secret {
            put(&["identity", "issuerSecret"], json!(v));
        }
        if let Some(v) = self.gateway_port {
            put(&["gateway", "port"], json!(v));
        }
        if let Some(v) = self.gateway_probe_port {
            put(&["gateway", "probe", "port"], json!(v));
        }
        if let Some(v) = self.gateway_probe_seconds {
            put(&["gateway", "probe", "seconds"], json!(v));
        }
        if let Some(v) = self.gateway_service_type {
            put(&["gateway", "serviceType"], json!(v.as_str()));
        }
        if let Some(path) = &self.gateway_policy {
            put(&["gateway", "policy", "rules"], json!(policy_rules(path)?));
        }
        if let Some(v) = self.service_mirror_credentials {
            put(&["remoteMirrorServiceAccount"], json!(v));
        }
        if !self.remote_mirror_service_account_name.is_empty() {
            put(
                &["remoteMirrorServiceAccountName"],
                json!(render::split_names(
                    &self.remote_mirror_service_account_name
                )),
            );
        }
        if let Some(v) = &self.namespace {
            put(&["namespace"], json!(v));
        }
        if let Some(v) = &self.identity_trust_domain {
            put(&["identityTrustDomain"], json!(v));
        }
        if let Some(v) = &self.image.registry {
            put(&["image", "registry"], json!(v));
        }
        if let Some(v) = &self.image.tag {
            put(&["image", "tag"], json!(v));
        }
        render::merge(&mut tree, flags);
        self.apply_files_and_sets(&mut tree)?;
        Ok(InstallValues::from_tree(&tree)?)
    }

    /// Merges the `-f` files, then `--set`, then `--set-string` into `tree`, in that order.
    fn apply_files_and_sets(&self, tree: &mut Value) -> Result<()> {
        for path in &self.values {
            let text = read_text(path)?;
            render::merge(
                tree,
                render::parse_values_yaml(&path.display().to_string(), &text)?,
            );
        }
        for s in &self.set {
            render::set(tree, s, false)?;
        }
        for s in &self.set_string {
            render::set(tree, s, true)?;
        }
        Ok(())
    }

    /// `true` when the user chose the trust domain: by flag, in a `-f` file or by `--set`.
    /// The cluster's linkerd-config is then not read, so such a render works offline.
    fn user_sets_trust_domain(&self) -> Result<bool> {
        if self.identity_trust_domain.is_some() {
            return Ok(true);
        }
        let mut tree = json!({});
        self.apply_files_and_sets(&mut tree)?;
        Ok(tree.get("identityTrustDomain").is_some())
    }
}

pub(crate) async fn install(
    args: InstallArgs,
    kube: &KubeArgs,
    linkerd_namespace: &str,
    out: &mut dyn Write,
    err: &mut dyn Write,
) -> Result<()> {
    // Values are checked before the cluster is read: bad input fails fast and offline.
    let offline = args.values(linkerd_namespace, None)?;
    let from_cluster = if args.ignore_cluster || args.user_sets_trust_domain()? {
        None
    } else {
        cluster_trust_domain(kube, linkerd_namespace, err).await?
    };
    let values = match from_cluster {
        Some(domain) => args.values(linkerd_namespace, Some(&domain))?,
        None => offline,
    };
    let objects = render::install(&values)?;
    emit(out, &render::Format::from(args.output).serialize(&objects)?)
}

/// The `identityTrustDomain` of the cluster's linkerd-config; `None` (with a note on stderr)
/// when Linkerd's config is not there, since mc does not need Linkerd itself.
async fn cluster_trust_domain(
    kube: &KubeArgs,
    linkerd_namespace: &str,
    err: &mut dyn Write,
) -> Result<Option<String>> {
    let cluster = kube.connect(None).await.map_err(|e| match e {
        Error::Kubeconfig { context, reason } => Error::input(
            context.map_or_else(
                || "the kubeconfig".to_owned(),
                |c| format!("kubeconfig context {c:?}"),
            ),
            format!("cannot be read for the cluster's trust domain: {reason}"),
            "pass --kubeconfig and --context that exist, or --ignore-cluster (with \
             --identity-trust-domain if not cluster.local) to render offline",
        ),
        other => other,
    })?;
    let config =
        crate::kube::linkerd_config(&cluster.client, linkerd_namespace, &cluster.context).await?;
    match config {
        Some(c) => {
            let note = format!(
                "using trust domain {} from {linkerd_namespace}/linkerd-config (context {})\n",
                c.trust_domain, cluster.context
            );
            emit(err, &note)?;
            Ok(Some(c.trust_domain))
        }
        None => {
            let note = format!(
                "no {linkerd_namespace}/linkerd-config in context {}: using the default trust \
                 domain (pass --identity-trust-domain to choose one)\n",
                cluster.context
            );
            emit(err, &note)?;
            Ok(None)
        }
    }
}

/// Flags of `mc multicluster allow`.
#[derive(Debug, clap::Args)]
pub struct AllowArgs {
    /// Name(s) of the remote-access ServiceAccount(s) to create (repeatable, comma-separated).
    #[arg(long = "service-account-name", required = true, value_name = "NAMES")]
    pub service_account_name: Vec<String>,
    /// Namespace of the extension.
    #[arg(long, default_value = render::DEFAULT_NAMESPACE, value_name = "NS")]
    pub namespace: String,
    /// Do not read the cluster (by default, refuse when a ServiceAccount already exists).
    #[arg(long)]
    pub ignore_cluster: bool,
    /// Output format.
    #[arg(short = 'o', long, value_enum, default_value = "yaml")]
    pub output: ManifestFormat,
}

pub(crate) async fn allow(
    args: AllowArgs,
    kube: &KubeArgs,
    linkerd_namespace: &str,
    out: &mut dyn Write,
) -> Result<()> {
    let values = InstallValues {
        namespace: args.namespace.clone(),
        linkerd_namespace: linkerd_namespace.to_owned(),
        ..InstallValues::default()
    };
    let objects = render::allow(&values, &args.service_account_name)?;
    if !args.ignore_cluster {
        let cluster = kube.connect(None).await?;
        let api: ::kube::Api<ServiceAccount> =
            ::kube::Api::namespaced(cluster.client.clone(), &args.namespace);
        for name in render::split_names(&args.service_account_name) {
            let action = format!(
                "get ServiceAccount {}/{name} (context {})",
                args.namespace, cluster.context
            );
            if crate::kube::get_opt(&api, &name, action).await?.is_some() {
                return Err(Error::input(
                    "--service-account-name",
                    format!(
                        "ServiceAccount {}/{name} already exists in context {}",
                        args.namespace, cluster.context
                    ),
                    "choose another name, or pass --ignore-cluster to render it anyway",
                ));
            }
        }
    }
    emit(out, &render::Format::from(args.output).serialize(&objects)?)
}

/// Flags of `mc multicluster unlink`.
#[derive(Debug, clap::Args)]
pub struct UnlinkArgs {
    /// Name of the linked (target) cluster.
    #[arg(long, required = true, value_name = "NAME")]
    pub cluster_name: String,
    /// Namespace of the Link.
    #[arg(long, default_value = render::DEFAULT_NAMESPACE, value_name = "NS")]
    pub namespace: String,
    /// Only the controller's objects (keep the Link, credentials and mirrors).
    #[arg(long)]
    pub only_controller: bool,
    /// Output format.
    #[arg(short = 'o', long, value_enum, default_value = "yaml")]
    pub output: ManifestFormat,
}

pub(crate) async fn unlink(
    args: UnlinkArgs,
    kube: &KubeArgs,
    linkerd_namespace: &str,
    out: &mut dyn Write,
) -> Result<()> {
    let cluster = kube.connect(None).await?;
    let client = &cluster.client;
    let name = &args.cluster_name;
    let links: ::kube::Api<mc_core::link::Link> =
        ::kube::Api::namespaced(client.clone(), &args.namespace);
    let action = format!(
        "get Link {}/{name} (context {})",
        args.namespace, cluster.context
    );
    let link = crate::kube::get_opt(&links, name, action).await?;
    let with_probe = link.as_ref().is_none_or(|l| {
        l.spec
            .probe_spec
            .as_ref()
            .and_then(|p| p.path.as_ref())
            .is_some()
    });
    let selector = format!(
        "{}=true,{}={name}",
        mc_core::labels::MIRRORED_SERVICE,
        mc_core::labels::CLUSTER_NAME
    );
    let mirrors = list_refs(client, ("", "v1", "Service"), "services", None, &selector).await?;
    let wanted = render::unlink_refs(
        name,
        &args.namespace,
        linkerd_namespace,
        with_probe,
        args.only_controller,
        &mirrors,
    );
    // Print only what exists, so `kubectl delete -f -` succeeds.
    let mut existing = Vec::new();
    for r in wanted {
        if exists(client, &r).await? {
            existing.push(r);
        }
    }
    if existing.is_empty() {
        return Err(Error::input(
            "--cluster-name",
            format!(
                "nothing of link {name:?} exists in namespace {} (context {})",
                args.namespace, cluster.context
            ),
            "check the name with `kubectl get links -A` and the namespace with --namespace",
        ));
    }
    let objects = render::delete_list(&existing);
    emit(out, &render::Format::from(args.output).serialize(&objects)?)
}

/// Whether the object exists (GET through the dynamic API).
async fn exists(client: &::kube::Client, r: &ObjectRef) -> Result<bool> {
    use ::kube::api::{ApiResource, DynamicObject, GroupVersionKind};
    let (group, version) = r
        .api_version
        .split_once('/')
        .unwrap_or(("", r.api_version.as_str()));
    let plural = plural(&r.kind);
    let ar =
        ApiResource::from_gvk_with_plural(&GroupVersionKind::gvk(group, version, &r.kind), &plural);
    let api: ::kube::Api<DynamicObject> = match &r.namespace {
        Some(ns) => ::kube::Api::namespaced_with(client.clone(), ns, &ar),
        None => ::kube::Api::all_with(client.clone(), &ar),
    };
    match api.get_metadata_opt(&r.name).await {
        Ok(v) => Ok(v.is_some()),
        Err(e) if crate::kube::is_not_found(&e) => Ok(false),
        Err(e) => Err(Error::api(format!("get {r}"), e)),
    }
}

fn plural(kind: &str) -> String {
    let lower = kind.to_ascii_lowercase();
    if lower.ends_with('s') {
        format!("{lower}es")
    } else if let Some(stem) = lower.strip_suffix('y') {
        format!("{stem}ies")
    } else {
        format!("{lower}s")
    }
}

/// The rules of the policy file at `path` (`--gateway-policy`).
fn policy_rules(path: &PathBuf) -> Result<Vec<mc_core::policy::PolicyRule>> {
    mc_core::policy::parse(&read_text(path)?).map_err(|problem| Error::Input {
        what: format!("--gateway-policy {}", path.display()),
        problem,
        fix: mc_core::policy::FORMAT_FIX.to_owned(),
    })
}

/// Flags of `mc multicluster uninstall`.
#[derive(Debug, clap::Args)]
pub struct UninstallArgs {
    /// Output format.
    #[arg(short = 'o', long, value_enum, default_value = "yaml")]
    pub output: ManifestFormat,
}

/// The kinds the extension renders: (group, version, kind, plural, namespaced).
const EXTENSION_KINDS: &[(&str, &str, &str, &str, bool)] = &[
    ("multicluster.linkerd.io", "v1alpha3", "Link", "links", true),
    ("apps", "v1", "Deployment", "deployments", true),
    ("", "v1", "Service", "services", true),
    ("", "v1", "Secret", "secrets", true),
    ("", "v1", "ConfigMap", "configmaps", true),
    ("", "v1", "ServiceAccount", "serviceaccounts", true),
    (
        "policy",
        "v1",
        "PodDisruptionBudget",
        "poddisruptionbudgets",
        true,
    ),
    ("rbac.authorization.k8s.io", "v1", "Role", "roles", true),
    (
        "rbac.authorization.k8s.io",
        "v1",
        "RoleBinding",
        "rolebindings",
        true,
    ),
    (
        "rbac.authorization.k8s.io",
        "v1",
        "ClusterRole",
        "clusterroles",
        false,
    ),
    (
        "rbac.authorization.k8s.io",
        "v1",
        "ClusterRoleBinding",
        "clusterrolebindings",
        false,
    ),
    (
        "apiextensions.k8s.io",
        "v1",
        "CustomResourceDefinition",
        "customresourcedefinitions",
        false,
    ),
    ("", "v1", "Namespace", "namespaces", false),
];

pub(crate) async fn uninstall(
    args: UninstallArgs,
    kube: &KubeArgs,
    out: &mut dyn Write,
    err: &mut dyn Write,
) -> Result<()> {
    let cluster = kube.connect(None).await?;
    let client = &cluster.client;
    let links = list_refs(
        client,
        ("multicluster.linkerd.io", "v1alpha3", "Link"),
        "links",
        None,
        "",
    )
    .await?;
    if !links.is_empty() {
        let mut msg = String::from(
            "Please unlink the following clusters before uninstalling multicluster:\n",
        );
        for l in &links {
            msg.push_str(&format!(
                "  * {} (Link {}/{}; `mc multicluster unlink --cluster-name {} | kubectl delete -f -`)\n",
                l.name,
                l.namespace.as_deref().unwrap_or_default(),
                l.name,
                l.name
            ));
        }
        let _ = write!(err, "{msg}");
        return Err(Error::Refused(format!(
            "{} Link(s) still exist",
            links.len()
        )));
    }
    let selector = format!(
        "{}={}",
        mc_core::labels::EXTENSION,
        mc_core::labels::EXTENSION_VALUE
    );
    let mut refs = Vec::new();
    for (group, version, kind, plural, _) in EXTENSION_KINDS {
        refs.extend(list_refs(client, (group, version, kind), plural, None, &selector).await?);
    }
    if refs.is_empty() {
        return Err(Error::input(
            "uninstall",
            format!(
                "no object labelled {selector} in context {}",
                cluster.context
            ),
            "nothing to uninstall; check --context",
        ));
    }
    let objects = render::delete_list(&refs);
    emit(out, &render::Format::from(args.output).serialize(&objects)?)
}
