//! `mc multicluster link`: read the target cluster, render what the source cluster applies.

use std::collections::{BTreeMap, BTreeSet};
use std::io::Write;

use k8s_openapi::api::authentication::v1::{TokenRequest, TokenRequestSpec};
use k8s_openapi::api::core::v1::{Namespace, Secret, Service, ServiceAccount};
use kube::api::{ListParams, PostParams};
use mc_core::labels;
use mc_core::render::{self, ControllerValues, ImageValues, LinkGateway, LinkValues};
use mc_core::selector::Selector;

use crate::cli::{ImageArgs, ManifestFormat, bool_flag};
use crate::kube::{Cluster, KubeArgs, endpoint, get_opt, linkerd_config, token_kubeconfig};
use crate::{Error, Result, emit};

/// Flags of `mc multicluster link`.
#[derive(Debug, clap::Args)]
pub struct LinkArgs {
    /// Name of the target cluster (the one --context points at): Link name and mirror suffix.
    #[arg(long, required = true, value_name = "NAME")]
    pub cluster_name: String,
    /// How the source cluster serves the mirrors: egress (any Pod, through the source's
    /// egress), gateway (Endpoints at the remote gateway, for Linkerd-meshed clients), or auto
    /// (egress when the source runs the egress and no Linkerd control plane). Set as the Link
    /// annotation mirror.linkerd.io/mc-link-mode; change it later with `kubectl annotate`.
    #[arg(long, value_enum, default_value = "auto")]
    pub mode: LinkModeArg,
    /// Namespace of the extension (remote-access account here, Link and controller there).
    #[arg(long, default_value = render::DEFAULT_NAMESPACE, value_name = "NS")]
    pub namespace: String,
    /// API server address written into the kubeconfig (default: the context's server).
    #[arg(long, value_name = "URL")]
    pub api_server_address: Option<String>,
    /// Remote-access ServiceAccount whose token goes into the kubeconfig.
    #[arg(long, default_value = render::DEFAULT_REMOTE_ACCESS_SA, value_name = "NAME")]
    pub service_account_name: String,
    /// Lifetime of the token requested when the ServiceAccount has no populated token Secret.
    #[arg(long, default_value = "8760h", value_name = "DURATION")]
    pub token_duration: String,
    /// Name of the target's gateway Service.
    #[arg(long, default_value = "linkerd-gateway", value_name = "NAME")]
    pub gateway_name: String,
    /// Namespace of the target's gateway Service.
    #[arg(long, default_value = render::DEFAULT_NAMESPACE, value_name = "NS")]
    pub gateway_namespace: String,
    /// Selector of Services mirrored through the gateway.
    #[arg(short = 'l', long, default_value = labels::DEFAULT_SELECTOR, value_name = "SELECTOR")]
    pub selector: String,
    /// Selector of Services mirrored in remote-discovery mode.
    #[arg(long, default_value = labels::DEFAULT_REMOTE_DISCOVERY_SELECTOR, value_name = "SELECTOR")]
    pub remote_discovery_selector: String,
    /// Selector of federated-service members.
    #[arg(long, default_value = labels::DEFAULT_FEDERATED_SELECTOR, value_name = "SELECTOR")]
    pub federated_service_selector: String,
    /// Gateway IPs or DNS names, comma-separated (default: the gateway Service's load balancer).
    #[arg(long, value_delimiter = ',', value_name = "ADDRS")]
    pub gateway_addresses: Vec<String>,
    /// Gateway port (default: the gateway Service's `mc-gateway` port).
    #[arg(long, value_name = "PORT")]
    pub gateway_port: Option<u16>,
    /// Labels not copied onto mirrors (`prefix/*` allowed; repeatable, comma-separated).
    #[arg(long, value_delimiter = ',', value_name = "KEYS")]
    pub excluded_labels: Vec<String>,
    /// Annotations not copied onto mirrors (`prefix/*` allowed; repeatable, comma-separated).
    #[arg(long, value_delimiter = ',', value_name = "KEYS")]
    pub excluded_annotations: Vec<String>,
    /// Link through the gateway (`--gateway=false`: remote discovery only).
    #[arg(long, action = bool_flag(), num_args = 0..=1, require_equals = true, default_missing_value = "true", default_value = "true", value_name = "BOOL")]
    pub gateway: bool,
    /// Cluster domain of the target, when it has no linkerd-config.
    #[arg(long, default_value = "cluster.local", value_name = "DOMAIN")]
    pub cluster_domain: String,
    /// Image.
    #[command(flatten)]
    pub image: ImageArgs,
    /// Log level of the controller.
    #[arg(long, default_value = "info", value_parser = ["trace", "debug", "info", "warn", "error"])]
    pub log_level: String,
    /// Log format of the controller.
    #[arg(long, default_value = "plain", value_parser = ["plain", "json"])]
    pub log_format: String,
    /// Run 3 controller replicas with anti-affinity and a PodDisruptionBudget.
    #[arg(long)]
    pub ha: bool,
    /// Mirror headless Services as headless mirrors.
    #[arg(long)]
    pub enable_headless_services: bool,
    /// Let the controller create missing namespaces.
    #[arg(long)]
    pub enable_namespace_creation: bool,
    /// Render only the Secrets and the Link, not the controller.
    #[arg(long)]
    pub no_controller: bool,
    /// Render only the controller of a Link that already exists in the source cluster
    /// (--source-context, else --context), e.g. one applied from `link-gen`: read the Link
    /// named --cluster-name in --namespace and render its Deployment, ServiceAccount, RBAC and
    /// probe Service. Reads nothing from the target cluster.
    #[arg(long, conflicts_with_all = ["no_controller", "dry_run"])]
    pub controller_only: bool,
    /// Do not render anything: read both clusters and report what would be mirrored.
    #[arg(long, requires = "source_context")]
    pub dry_run: bool,
    /// Context of the source cluster (for --dry-run).
    #[arg(long, value_name = "NAME")]
    pub source_context: Option<String>,
    /// Output format.
    #[arg(short = 'o', long, value_enum, default_value = "yaml")]
    pub output: ManifestFormat,
}

pub(crate) async fn link(
    args: LinkArgs,
    kube: &KubeArgs,
    linkerd_namespace: &str,
    out: &mut dyn Write,
    err: &mut dyn Write,
) -> Result<()> {
    if args.controller_only {
        return controller_only(&args, kube, out).await;
    }
    if !args.gateway && (!args.gateway_addresses.is_empty() || args.gateway_port.is_some()) {
        return Err(Error::input(
            "--gateway=false",
            "cannot be combined with --gateway-addresses or --gateway-port",
            "drop those flags for a gateway-less link, or drop --gateway=false",
        ));
    }
    if !args.gateway && args.selector != labels::DEFAULT_SELECTOR {
        return Err(Error::input(
            "--selector",
            "only applies to gateway links and --gateway=false was given",
            "use --remote-discovery-selector for a gateway-less link",
        ));
    }
    let token_duration = mc_core::link::parse_duration(&args.token_duration)?;
    // Selectors are checked before anything is read.
    for (flag, s) in [
        ("--selector", &args.selector),
        (
            "--remote-discovery-selector",
            &args.remote_discovery_selector,
        ),
        (
            "--federated-service-selector",
            &args.federated_service_selector,
        ),
    ] {
        s.parse::<Selector>()
            .map_err(|e| Error::input(flag, e.to_string(), "fix the selector syntax"))?;
    }
    let target = kube.connect(None).await?;
    let config = linkerd_config(&target.client, linkerd_namespace, &target.context).await?;
    let (trust_domain, cluster_domain) = match &config {
        Some(c) => (c.trust_domain.clone(), c.cluster_domain.clone()),
        None => {
            let _ = writeln!(
                err,
                "warning: no ConfigMap {linkerd_namespace}/linkerd-config in context {}; using cluster domain {:?} (--cluster-domain)",
                target.context, args.cluster_domain
            );
            (args.cluster_domain.clone(), args.cluster_domain.clone())
        }
    };
    let gateway = if args.gateway {
        Some(read_gateway(&args, &target).await?)
    } else {
        None
    };

    if args.dry_run {
        let source = kube.connect(args.source_context.as_deref()).await?;
        let report = dry_run(&args, &target, &source).await?;
        return emit(out, &report);
    }

    let token = service_account_token(&args, &target, token_duration).await?;
    let mut ep = endpoint(&target.kubeconfig, &target.context)?;
    if let Some(addr) = &args.api_server_address {
        ep.server = addr.clone();
    }
    let kubeconfig = token_kubeconfig(&ep, &args.cluster_name, &args.service_account_name, &token)?;
    let controller = (!args.no_controller).then(|| controller_values(&args));
    let values = LinkValues {
        cluster_name: args.cluster_name.clone(),
        namespace: args.namespace.clone(),
        linkerd_namespace: linkerd_namespace.to_owned(),
        target_linkerd_namespace: linkerd_namespace.to_owned(),
        cluster_domain,
        trust_domain,
        kubeconfig,
        gateway,
        selector: args.selector.clone(),
        remote_discovery_selector: args.remote_discovery_selector.clone(),
        federated_service_selector: args.federated_service_selector.clone(),
        excluded_labels: args.excluded_labels.clone(),
        excluded_annotations: args.excluded_annotations.clone(),
        control_plane_secret: true,
        controller,
        created_by: format!("mc/cli {}", render::VERSION),
        mode: args.mode.into(),
    };
    let objects = render::link(&values)?;
    emit(out, &render::Format::from(args.output).serialize(&objects)?)
}

/// `--mode`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum LinkModeArg {
    /// Decided by the controller from what the source cluster runs.
    Auto,
    /// Through the source cluster's egress.
    Egress,
    /// Straight to the remote gateway.
    Gateway,
}

impl From<LinkModeArg> for mc_core::egress::LinkMode {
    fn from(m: LinkModeArg) -> Self {
        match m {
            LinkModeArg::Auto => Self::Auto,
            LinkModeArg::Egress => Self::Egress,
            LinkModeArg::Gateway => Self::Gateway,
        }
    }
}

/// The controller settings given by the flags.
fn controller_values(args: &LinkArgs) -> ControllerValues {
    let image = ImageValues {
        registry: args
            .image
            .registry
            .clone()
            .unwrap_or_else(|| render::DEFAULT_REGISTRY.to_owned()),
        tag: args
            .image
            .tag
            .clone()
            .unwrap_or_else(|| render::VERSION.to_owned()),
        ..ImageValues::default()
    };
    ControllerValues {
        image,
        replicas: if args.ha { 3 } else { 1 },
        enable_pod_anti_affinity: args.ha,
        log_level: args.log_level.clone(),
        log_format: args.log_format.clone(),
        enable_headless_services: args.enable_headless_services,
        enable_namespace_creation: args.enable_namespace_creation,
        ..ControllerValues::default()
    }
}

/// `--controller-only`: the controller objects of the existing Link `--cluster-name` in
/// `--namespace` of the source cluster.
async fn controller_only(args: &LinkArgs, kube: &KubeArgs, out: &mut dyn Write) -> Result<()> {
    let source = kube.connect(args.source_context.as_deref()).await?;
    let what = format!(
        "Link {}/{} (context {})",
        args.namespace, args.cluster_name, source.context
    );
    let api: kube::Api<mc_core::link::Link> =
        kube::Api::namespaced(source.client.clone(), &args.namespace);
    let existing = get_opt(&api, &args.cluster_name, format!("get {what}"))
        .await?
        .ok_or_else(|| {
            Error::input(
                &what,
                "does not exist, so there is no Link to run a controller for",
                "apply the Link and its credentials Secret first (`linkerd multicluster link-gen` or \
                 `mc multicluster link --no-controller` against the target, applied here), or point at it \
                 with --cluster-name, --namespace and --source-context/--context",
            )
        })?;
    let objects = render::link_controller_for(&existing, &controller_values(args))
        .map_err(|e| Error::input(&what, e.to_string(), "fix the Link's spec and re-apply it"))?;
    emit(out, &render::Format::from(args.output).serialize(&objects)?)
}

async fn read_gateway(args: &LinkArgs, target: &Cluster) -> Result<LinkGateway> {
    let what = format!(
        "gateway Service {}/{} (context {})",
        args.gateway_namespace, args.gateway_name, target.context
    );
    let api: kube::Api<Service> =
        kube::Api::namespaced(target.client.clone(), &args.gateway_namespace);
    let svc = get_opt(&api, &args.gateway_name, format!("get {what}"))
        .await?
        .ok_or_else(|| {
            Error::input(
                &what,
                "does not exist",
                "install the gateway on the target (`mc multicluster install | kubectl apply -f -`), \
                 point at it with --gateway-name/--gateway-namespace, or link without a gateway (--gateway=false)",
            )
        })?;
    let annotations = svc.metadata.annotations.clone().unwrap_or_default();
    let annotation = |key: &str| -> Result<String> {
        annotations
            .get(key)
            .filter(|v| !v.trim().is_empty())
            .cloned()
            .ok_or_else(|| {
                Error::input(
                    &what,
                    format!("has no {key} annotation"),
                    "re-apply the gateway from `mc multicluster install`, which sets it",
                )
            })
    };
    let identity = annotation(labels::GATEWAY_IDENTITY)?;
    let probe_path = annotation(labels::PROBE_PATH)?;
    let probe_period = annotations
        .get(labels::PROBE_PERIOD)
        .cloned()
        .unwrap_or_else(|| "3".to_owned());
    let spec = svc.spec.clone().unwrap_or_default();
    let node_port = spec.type_.as_deref() == Some("NodePort");
    let port_of = |name: &str| -> Result<u16> {
        let port = spec
            .ports
            .iter()
            .flatten()
            .find(|p| p.name.as_deref() == Some(name))
            .ok_or_else(|| {
                Error::input(
                    &what,
                    format!("has no port named {name}"),
                    "re-apply the gateway from `mc multicluster install`",
                )
            })?;
        let n = if node_port {
            port.node_port.unwrap_or(port.port)
        } else {
            port.port
        };
        u16::try_from(n).map_err(|_| {
            Error::input(
                &what,
                format!("port {name} = {n} is out of range"),
                "fix the Service",
            )
        })
    };
    let probe_port = port_of(labels::PROBE_PORT_NAME)?;
    let port = match args.gateway_port {
        Some(p) => p,
        None => port_of(labels::GATEWAY_PORT_NAME)?,
    };
    let addresses = if args.gateway_addresses.is_empty() {
        let ingress: Vec<String> = svc
            .status
            .as_ref()
            .and_then(|s| s.load_balancer.as_ref())
            .and_then(|lb| lb.ingress.as_ref())
            .into_iter()
            .flatten()
            .filter_map(|i| i.ip.clone().or_else(|| i.hostname.clone()))
            .filter(|a| !a.is_empty())
            .collect();
        if ingress.is_empty() {
            return Err(Error::input(
                &what,
                "has no load-balancer address (status.loadBalancer.ingress is empty)",
                "wait for the load balancer, or pass the gateway's reachable addresses with --gateway-addresses IP[,IP…]",
            ));
        }
        ingress
    } else {
        args.gateway_addresses.clone()
    };
    Ok(LinkGateway {
        addresses,
        port,
        identity,
        probe_path,
        probe_port,
        probe_period,
    })
}

/// The remote-access token: from a populated token Secret, else a TokenRequest.
async fn service_account_token(
    args: &LinkArgs,
    target: &Cluster,
    duration: std::time::Duration,
) -> Result<String> {
    let ns = &args.namespace;
    let sa = &args.service_account_name;
    let sas: kube::Api<ServiceAccount> = kube::Api::namespaced(target.client.clone(), ns);
    let what = format!("ServiceAccount {ns}/{sa} (context {})", target.context);
    if get_opt(&sas, sa, format!("get {what}")).await?.is_none() {
        return Err(Error::input(
            &what,
            "does not exist",
            "install the extension on the target (`mc multicluster install | kubectl apply -f -`), \
             add the account with `mc multicluster allow --service-account-name NAME`, or pass --service-account-name",
        ));
    }
    let secrets: kube::Api<Secret> = kube::Api::namespaced(target.client.clone(), ns);
    let list = secrets
        .list(&ListParams::default().fields("type=kubernetes.io/service-account-token"))
        .await
        .map_err(|e| {
            Error::api(
                format!("list token Secrets in {ns} (context {})", target.context),
                e,
            )
        })?;
    for secret in list.items {
        let owner = secret
            .metadata
            .annotations
            .as_ref()
            .and_then(|a| a.get("kubernetes.io/service-account.name"));
        if owner != Some(sa) {
            continue;
        }
        if let Some(token) = secret.data.as_ref().and_then(|d| d.get("token"))
            && !token.0.is_empty()
        {
            return String::from_utf8(token.0.clone()).map_err(|_| {
                Error::input(
                    format!("Secret {ns}/{:?}", secret.metadata.name),
                    "token is not UTF-8",
                    "delete the Secret so it is regenerated",
                )
            });
        }
    }
    let request = TokenRequest {
        spec: TokenRequestSpec {
            audiences: Vec::new(),
            expiration_seconds: Some(i64::try_from(duration.as_secs()).unwrap_or(i64::MAX)),
            ..TokenRequestSpec::default()
        },
        ..TokenRequest::default()
    };
    let response = sas
        .create_token_request(sa, &PostParams::default(), &request)
        .await
        .map_err(|e| Error::api(format!("request a token for {what}"), e))?;
    response
        .status
        .map(|s| s.token)
        .filter(|t| !t.is_empty())
        .ok_or_else(|| {
            Error::input(
                &what,
                "the TokenRequest returned no token",
                "check the API server's token issuer",
            )
        })
}

/// `--dry-run`: which target Services would be mirrored, under which names, and the conflicts.
async fn dry_run(args: &LinkArgs, target: &Cluster, source: &Cluster) -> Result<String> {
    let cluster = &args.cluster_name;
    let mut selectors: Vec<(&str, Selector)> = Vec::new();
    if args.gateway {
        selectors.push(("gateway", args.selector.parse()?));
    }
    selectors.push(("remote-discovery", args.remote_discovery_selector.parse()?));
    let remote: kube::Api<Service> = kube::Api::all(target.client.clone());
    let local: kube::Api<Service> = kube::Api::all(source.client.clone());
    let namespaces: kube::Api<Namespace> = kube::Api::all(source.client.clone());
    let mut exported: BTreeMap<(String, String), (&str, String)> = BTreeMap::new();
    for (mode, selector) in &selectors {
        let list = remote
            .list(&ListParams::default().labels(&selector.to_query()))
            .await
            .map_err(|e| {
                Error::api(
                    format!("list exported Services (context {})", target.context),
                    e,
                )
            })?;
        for svc in list.items {
            let ns = svc.metadata.namespace.clone().unwrap_or_default();
            let name = svc.metadata.name.clone().unwrap_or_default();
            exported
                .entry((ns, name))
                .or_insert((mode, selector.to_query()));
        }
    }
    let local_ns: BTreeSet<String> = namespaces
        .list(&ListParams::default())
        .await
        .map_err(|e| Error::api(format!("list Namespaces (context {})", source.context), e))?
        .items
        .into_iter()
        .filter_map(|n| n.metadata.name)
        .collect();
    let local_svcs: BTreeMap<(String, String), Service> = local
        .list(&ListParams::default())
        .await
        .map_err(|e| Error::api(format!("list Services (context {})", source.context), e))?
        .items
        .into_iter()
        .map(|s| {
            (
                (
                    s.metadata.namespace.clone().unwrap_or_default(),
                    s.metadata.name.clone().unwrap_or_default(),
                ),
                s,
            )
        })
        .collect();
    let mut text = format!(
        "link {cluster}: {} Service(s) of context {} would be mirrored into context {}\n",
        exported.len(),
        target.context,
        source.context
    );
    text.push_str(&format!(
        "{:<20} {:<30} {:<18} {:<40} PROBLEMS\n",
        "NAMESPACE", "SERVICE", "MODE", "MIRROR"
    ));
    let mut conflicts = 0;
    for ((ns, name), (mode, _)) in &exported {
        let mirror = mc_core::naming::mirror_name(name, cluster);
        let mut problems = Vec::new();
        if mirror.shortened {
            problems.push(format!(
                "name shortened ({name}-{cluster} is not a valid Service name)"
            ));
        }
        if !local_ns.contains(ns) {
            problems.push(format!("namespace {ns} is missing in {}", source.context));
        }
        if let Some(existing) = local_svcs.get(&(ns.clone(), mirror.name.clone())) {
            let l = existing.metadata.labels.clone().unwrap_or_default();
            let ours = l.get(labels::MIRRORED_SERVICE).map(String::as_str) == Some("true")
                && l.get(labels::CLUSTER_NAME) == Some(cluster);
            if !ours {
                problems.push(format!(
                    "a foreign Service {ns}/{} already exists",
                    mirror.name
                ));
            }
        }
        conflicts += usize::from(!problems.is_empty());
        text.push_str(&format!(
            "{ns:<20} {name:<30} {mode:<18} {:<40} {}\n",
            mirror.name,
            if problems.is_empty() {
                "-".to_owned()
            } else {
                problems.join("; ")
            }
        ));
    }
    text.push_str(&format!("{conflicts} conflict(s)\n"));
    Ok(text)
}
