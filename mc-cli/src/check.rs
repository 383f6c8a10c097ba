//! `mc multicluster check`: ✓/‼/× lines with hints; exit code 0 when healthy, 1 when not.
//!
//! What this machine cannot see is not a failure: a target API server that does not answer
//! from here (private networks, linkerd2 #11566) and a mirror with no ready endpoints (an
//! empty remote Service) are warnings, and `--skip-remote` skips every call to the targets.
//! Whether the controller itself reaches its target is checked from the Link's status.

use std::io::Write;
use std::time::{Duration, SystemTime};

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::authorization::v1::{
    ResourceAttributes, SelfSubjectAccessReview, SelfSubjectAccessReviewSpec,
};
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{
    ConfigMap, EndpointAddress, Endpoints, Namespace, Secret, Service, ServiceAccount,
};
use k8s_openapi::api::rbac::v1::{ClusterRole, ClusterRoleBinding, Role, RoleBinding};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{ListParams, PostParams};
use mc_core::labels;
use mc_core::lease::{ControllerState, LeaseName, LeaseRecord, controller_lease};
use mc_core::link::Link;
use mc_core::render;
use mc_core::trust::TrustBundle;
use serde_json::json;

use crate::kube::{KubeArgs, get_opt, linkerd_config};
use crate::{Error, Result, emit};

/// Output of `check`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum CheckFormat {
    /// Every check, one line each, with hints for failures.
    Table,
    /// Machine-readable.
    Json,
    /// Only failures and warnings, plus a summary line.
    Short,
}

/// Flags of `mc multicluster check`.
#[derive(Debug, clap::Args)]
pub struct CheckArgs {
    /// Output format.
    #[arg(short = 'o', long, value_enum, default_value = "table")]
    pub output: CheckFormat,
    /// Retry while a check that can still pass on its own (controllers starting, gateways
    /// being probed) fails, up to this long (e.g. 30s, 0s for one round). Failures that need
    /// an operator (anchors, credentials, RBAC) end the wait at once; warnings (mirrors without
    /// ready endpoints, a target unreachable from here) are never waited for.
    #[arg(long, default_value = "5m", value_name = "DURATION")]
    pub wait: String,
    /// Timeout of each call to a remote (target) API server.
    #[arg(long, default_value = "10s", value_name = "DURATION")]
    pub timeout: String,
    /// Skip every check that needs a remote (target) API server (its credentials and trust
    /// anchors), e.g. where this machine cannot reach the targets; the output names each Link
    /// whose target was not contacted.
    #[arg(long)]
    pub skip_remote: bool,
}

/// How a check ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Outcome {
    Success,
    Warning,
    Error,
}

/// One check's result.
#[derive(Debug, Clone)]
struct Check {
    description: String,
    outcome: Outcome,
    /// What went wrong, one line per item.
    details: Vec<String>,
    /// Anchor of the upstream hint page.
    hint: &'static str,
    /// Whether a failure can clear on its own (a controller starting, a probe succeeding), so
    /// `--wait` retries it.
    retryable: bool,
}

impl Check {
    fn new(description: &str, hint: &'static str) -> Check {
        Check {
            description: description.to_owned(),
            outcome: Outcome::Success,
            details: Vec::new(),
            hint,
            retryable: false,
        }
    }
    /// A check whose failure may clear without an operator, retried until `--wait` runs out.
    fn retryable(description: &str, hint: &'static str) -> Check {
        Check {
            retryable: true,
            ..Check::new(description, hint)
        }
    }
    fn fail(&mut self, detail: String) {
        self.outcome = Outcome::Error;
        self.details.push(detail);
    }
    fn warn(&mut self, detail: String) {
        if self.outcome == Outcome::Success {
            self.outcome = Outcome::Warning;
        }
        self.details.push(detail);
    }
    fn info(&mut self, detail: String) {
        self.details.push(detail);
    }
}

pub(crate) async fn check(
    args: CheckArgs,
    kube: &KubeArgs,
    linkerd_namespace: &str,
    out: &mut dyn Write,
) -> Result<()> {
    let wait = mc_core::link::parse_duration(&args.wait)?;
    let timeout = mc_core::link::parse_duration(&args.timeout)?;
    let start = tokio::time::Instant::now();
    let checks = loop {
        let checks = run_checks(kube, linkerd_namespace, timeout, args.skip_remote).await?;
        let waiting_for = pending(&checks);
        if waiting_for.is_empty() || start.elapsed() >= wait {
            break checks;
        }
        // Progress on stderr, so the report on stdout stays parseable.
        eprintln!(
            "waiting for: {} ({}s of {}s; --wait to change)",
            waiting_for.join(", "),
            start.elapsed().as_secs(),
            wait.as_secs()
        );
        tokio::time::sleep(Duration::from_secs(2)).await;
    };
    let failed = checks
        .iter()
        .filter(|c| c.outcome == Outcome::Error)
        .count();
    emit(out, &report(&checks, args.output))?;
    if failed == 0 {
        Ok(())
    } else {
        Err(Error::Unhealthy(failed))
    }
}

/// The descriptions of the failing checks worth waiting for; empty when there is nothing to
/// wait for: everything passed, or some failure needs an operator.
fn pending(checks: &[Check]) -> Vec<&str> {
    let failing: Vec<&Check> = checks
        .iter()
        .filter(|c| c.outcome == Outcome::Error)
        .collect();
    if failing.iter().any(|c| !c.retryable) {
        return Vec::new();
    }
    failing.iter().map(|c| c.description.as_str()).collect()
}

fn hint_url(anchor: &str) -> String {
    format!("https://linkerd.io/checks/#{anchor}")
}

fn report(checks: &[Check], format: CheckFormat) -> String {
    let failed = checks
        .iter()
        .filter(|c| c.outcome == Outcome::Error)
        .count();
    let warned = checks
        .iter()
        .filter(|c| c.outcome == Outcome::Warning)
        .count();
    match format {
        CheckFormat::Json => {
            let items: Vec<_> = checks
                .iter()
                .map(|c| {
                    json!({
                        "description": c.description,
                        "result": match c.outcome { Outcome::Success => "success", Outcome::Warning => "warning", Outcome::Error => "error" },
                        "error": c.details.join("\n"),
                        "hint": if c.outcome == Outcome::Success { String::new() } else { hint_url(c.hint) },
                    })
                })
                .collect();
            let doc = json!({"success": failed == 0, "categories": [{"categoryName": "linkerd-multicluster", "checks": items}]});
            format!(
                "{}\n",
                serde_json::to_string_pretty(&doc).unwrap_or_default()
            )
        }
        CheckFormat::Table | CheckFormat::Short => {
            let short = format == CheckFormat::Short;
            let mut text = String::from("linkerd-multicluster\n--------------------\n");
            for c in checks {
                if short && c.outcome == Outcome::Success {
                    continue;
                }
                let mark = match c.outcome {
                    Outcome::Success => "✓",
                    Outcome::Warning => "‼",
                    Outcome::Error => "×",
                };
                text.push_str(&format!("{mark} {}\n", c.description));
                for d in &c.details {
                    text.push_str(&format!("    {d}\n"));
                }
                if c.outcome != Outcome::Success {
                    text.push_str(&format!("    see {} for hints\n", hint_url(c.hint)));
                }
            }
            text.push_str(&if failed == 0 {
                format!("\nStatus check results are ✓ ({warned} warning(s))\n")
            } else {
                format!("\nStatus check results are × ({failed} failed, {warned} warning(s))\n")
            });
            text
        }
    }
}

/// What a failed call of this machine to a target API server tells.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum RemoteFailure {
    /// The server answered with an error status (401, 403, …): the credentials or RBAC are
    /// wrong, whoever calls.
    Rejected,
    /// No answer (connection refused or timed out, DNS, TLS): maybe only from this machine.
    Unreachable,
}

impl RemoteFailure {
    fn of(e: &kube::Error) -> RemoteFailure {
        match e {
            kube::Error::Api(_) => RemoteFailure::Rejected,
            _ => RemoteFailure::Unreachable,
        }
    }
}

/// Link `link`'s target API server at `server` does not answer this machine (`error`): a
/// warning on the credentials and anchors checks, with the ways out. Not a failure: in a
/// private network only the controller may reach it, and its own view is the
/// `TargetReachable` check.
fn target_unreachable(
    creds: &mut Check,
    anchors: &mut Check,
    link: &str,
    server: &str,
    error: &str,
) {
    creds.warn(format!(
        "Link {link}: the target API server {server} cannot be reached from here: {error}; \
         hint: run check where the target is reachable, or pass --skip-remote (whether the \
         controller reaches it is the TargetReachable check)"
    ));
    anchors.warn(format!(
        "Link {link}: not compared: the target API server {server} cannot be reached from here"
    ));
}

/// The checks `--skip-remote` skipped: one warning line per Link.
fn remote_skipped(skipped: &mut Check, link: &str, server: &str) {
    skipped.warn(format!(
        "Link {link}: the target API server {server} was not contacted (--skip-remote): its \
         credentials and trust anchors are not checked"
    ));
}

/// The target API of one Link, reached with the Link's own credentials, and its server URL.
/// Nothing is sent to the target yet.
async fn remote_client(
    client: &kube::Client,
    link: &Link,
    timeout: Duration,
) -> std::result::Result<(kube::Client, String), String> {
    let ns = link.metadata.namespace.clone().unwrap_or_default();
    let secret_name = link
        .spec
        .cluster_credentials_secret
        .clone()
        .ok_or_else(|| "spec.clusterCredentialsSecret is empty".to_owned())?;
    let secrets: kube::Api<Secret> = kube::Api::namespaced(client.clone(), &ns);
    let secret = secrets
        .get_opt(&secret_name)
        .await
        .map_err(|e| format!("cannot read Secret {ns}/{secret_name}: {e}"))?
        .ok_or_else(|| format!("Secret {ns}/{secret_name} does not exist"))?;
    let bytes = secret
        .data
        .as_ref()
        .and_then(|d| d.get(labels::KUBECONFIG_KEY))
        .ok_or_else(|| {
            format!(
                "Secret {ns}/{secret_name} has no key {}",
                labels::KUBECONFIG_KEY
            )
        })?;
    let text = String::from_utf8(bytes.0.clone())
        .map_err(|_| format!("Secret {ns}/{secret_name}: kubeconfig is not UTF-8"))?;
    let kubeconfig = kube::config::Kubeconfig::from_yaml(&text)
        .map_err(|e| format!("Secret {ns}/{secret_name}: kubeconfig does not parse: {e}"))?;
    let mut config = kube::Config::from_custom_kubeconfig(kubeconfig, &Default::default())
        .await
        .map_err(|e| format!("Secret {ns}/{secret_name}: kubeconfig is unusable: {e}"))?;
    config.connect_timeout = Some(timeout);
    config.read_timeout = Some(timeout);
    let server = config.cluster_url.to_string();
    let client =
        kube::Client::try_from(config).map_err(|e| format!("Secret {ns}/{secret_name}: {e}"))?;
    Ok((client, server))
}

fn describe_api_error(e: &kube::Error) -> String {
    match e {
        kube::Error::Api(s) if s.code == 401 => "the target API server rejects the credentials (401 Unauthorized): the token was revoked or expired; re-run `mc multicluster link` and apply it".to_owned(),
        kube::Error::Api(s) if s.code == 403 => format!("forbidden: {}", s.message),
        other => other.to_string(),
    }
}

async fn run_checks(
    kube: &KubeArgs,
    linkerd_namespace: &str,
    timeout: Duration,
    skip_remote: bool,
) -> Result<Vec<Check>> {
    let cluster = kube.connect(None).await?;
    let client = &cluster.client;
    let mut checks = Vec::new();

    // 0. The extension is installed.
    let mut c = Check::new(
        "linkerd-multicluster extension namespace exists",
        "l5d-multicluster-ns-exists",
    );
    let nss: kube::Api<Namespace> = kube::Api::all(client.clone());
    let selector = format!("{}={}", labels::EXTENSION, labels::EXTENSION_VALUE);
    let found = nss
        .list(&ListParams::default().labels(&selector))
        .await
        .map_err(|e| Error::api(format!("list Namespaces (context {})", cluster.context), e))?;
    if found.items.is_empty() {
        c.fail(format!("no namespace labelled {selector}; install by running `mc multicluster install | kubectl apply -f -`"));
        checks.push(c);
        return Ok(checks);
    }
    checks.push(c);
    let namespaces: Vec<String> = found
        .items
        .iter()
        .filter_map(|n| n.metadata.name.clone())
        .collect();
    checks.push(identity_certificates(client, &namespaces, SystemTime::now()).await);
    checks.push(gateway_policies(client, &namespaces).await);

    // 1. CRD.
    let mut c = Check::new("Link CRD exists", "l5d-multicluster-link-crd-exists");
    let crds: kube::Api<CustomResourceDefinition> = kube::Api::all(client.clone());
    match crds.get_opt(mc_core::link::CRD_NAME).await {
        Ok(Some(crd))
            if crd
                .spec
                .versions
                .iter()
                .any(|v| v.name == mc_core::link::VERSION && v.served) => {}
        Ok(Some(_)) => c.fail(format!(
            "{} does not serve {}; re-apply `mc multicluster install`",
            mc_core::link::CRD_NAME,
            mc_core::link::VERSION
        )),
        Ok(None) => c.fail(format!(
            "{} does not exist; apply `mc multicluster install`",
            mc_core::link::CRD_NAME
        )),
        Err(e) => c.fail(format!("cannot read the CRD: {}", describe_api_error(&e))),
    }
    let fatal = c.outcome == Outcome::Error;
    checks.push(c);
    if fatal {
        return Ok(checks);
    }

    // 2. Links.
    let mut c = Check::new(
        "Link resources are valid",
        "l5d-multicluster-links-are-valid",
    );
    let links_api: kube::Api<Link> = kube::Api::all(client.clone());
    let links = match links_api.list(&ListParams::default()).await {
        Ok(l) => l.items,
        Err(e) => {
            c.fail(format!("cannot list Links: {}", describe_api_error(&e)));
            checks.push(c);
            return Ok(checks);
        }
    };
    let mut valid = Vec::new();
    for link in links {
        let name = link.metadata.name.clone().unwrap_or_default();
        match link.spec.validate() {
            Ok(v) => {
                c.info(format!("* {name}"));
                valid.push((link, v));
            }
            Err(e) => c.fail(format!("Link {name}: {e}")),
        }
    }
    checks.push(c);

    // 3. Links made by this version of mc.
    let mut c = Check::new(
        "Link and CLI versions match",
        "l5d-multicluster-links-version",
    );
    let want = format!("mc/cli {}", render::VERSION);
    for (link, _) in &valid {
        let name = link.metadata.name.clone().unwrap_or_default();
        let made_by = link
            .metadata
            .annotations
            .as_ref()
            .and_then(|a| a.get(labels::CREATED_BY))
            .cloned()
            .unwrap_or_default();
        if made_by != want {
            c.warn(format!(
                "Link {name} was made by {made_by:?}, this is {want:?}; re-run `mc multicluster link --cluster-name {name}` and apply it"
            ));
        }
    }
    checks.push(c);

    let now = SystemTime::now();
    let local_config = linkerd_config(client, linkerd_namespace, &cluster.context).await;
    let mut creds = Check::new(
        "remote cluster access credentials are valid",
        "l5d-smc-target-clusters-access",
    );
    let mut anchors = Check::new(
        "clusters share trust anchors",
        "l5d-multicluster-clusters-share-anchors",
    );
    let mut skipped = Check::new(
        "checks that need the target API servers are skipped (--skip-remote)",
        "l5d-smc-target-clusters-access",
    );
    let mut rbac = Check::new(
        "service mirror controller has required permissions",
        "l5d-multicluster-source-rbac-correct",
    );
    let mut running = Check::retryable(
        "service mirror controllers are running",
        "l5d-multicluster-service-mirror-running",
    );
    let mut reaching = Check::retryable(
        "service mirror controllers reach their target clusters (from Link status)",
        "l5d-smc-target-clusters-access",
    );
    let mut gateways = Check::retryable(
        "gateways are alive (from Link status)",
        "l5d-multicluster-gateways-endpoints",
    );
    for (link, valid) in &valid {
        let name = link.metadata.name.clone().unwrap_or_default();
        let ns = link.metadata.namespace.clone().unwrap_or_default();
        let target = valid.cluster_name.clone();
        // Credentials, then anchors through them.
        match remote_client(client, link, timeout).await {
            Err(e) => {
                creds.fail(format!("{target}: {e}"));
                anchors.fail(format!(
                    "{target}: cannot read the remote anchors: the credentials are unusable"
                ));
            }
            Ok((_, server)) if skip_remote => {
                creds.info(format!("* {target}: the kubeconfig is usable"));
                remote_skipped(&mut skipped, &name, &server);
            }
            Ok((remote, server)) => {
                let ssar = SelfSubjectAccessReview {
                    spec: SelfSubjectAccessReviewSpec {
                        resource_attributes: Some(ResourceAttributes {
                            verb: Some("list".to_owned()),
                            resource: Some("services".to_owned()),
                            ..ResourceAttributes::default()
                        }),
                        ..SelfSubjectAccessReviewSpec::default()
                    },
                    ..SelfSubjectAccessReview::default()
                };
                let reviews: kube::Api<SelfSubjectAccessReview> = kube::Api::all(remote.clone());
                let mut reached = true;
                // `/version` first (does the server answer at all?), then the access review;
                // `true` marks an error from the first call.
                let answer = async {
                    remote.apiserver_version().await.map_err(|e| (e, true))?;
                    reviews
                        .create(&PostParams::default(), &ssar)
                        .await
                        .map_err(|e| (e, false))
                }
                .await;
                let usable = match answer {
                    Err((e, _)) if RemoteFailure::of(&e) == RemoteFailure::Unreachable => {
                        target_unreachable(
                            &mut creds,
                            &mut anchors,
                            &name,
                            &server,
                            &e.to_string(),
                        );
                        reached = false;
                        false
                    }
                    Err((e, true)) => {
                        creds.fail(format!(
                            "{target}: the target API server {server} refuses the call: {}",
                            describe_api_error(&e)
                        ));
                        false
                    }
                    Err((e, false)) => {
                        creds.fail(format!("{target}: {}", describe_api_error(&e)));
                        false
                    }
                    Ok(r) if r.status.as_ref().is_some_and(|s| s.allowed) => {
                        creds.info(format!("* {target}: may list services"));
                        true
                    }
                    Ok(_) => {
                        creds.fail(format!("{target}: the remote-access account may not list services; re-apply the remote-access RBAC (`mc multicluster install` on the target)"));
                        false
                    }
                };
                if usable {
                    let remote_ns = link
                        .spec
                        .target_cluster_linkerd_namespace
                        .clone()
                        .unwrap_or_else(|| "linkerd".to_owned());
                    diagnose_anchors(
                        &mut anchors,
                        &target,
                        &local_config,
                        &remote,
                        &remote_ns,
                        now,
                    )
                    .await;
                } else if reached {
                    anchors.fail(format!(
                        "{target}: cannot read the remote anchors: the credentials are unusable"
                    ));
                }
            }
        }
        // RBAC of the controller.
        let sa: kube::Api<ServiceAccount> = kube::Api::namespaced(client.clone(), &ns);
        let roles: kube::Api<Role> = kube::Api::namespaced(client.clone(), &ns);
        let rbs: kube::Api<RoleBinding> = kube::Api::namespaced(client.clone(), &ns);
        let crs: kube::Api<ClusterRole> = kube::Api::all(client.clone());
        let crbs: kube::Api<ClusterRoleBinding> = kube::Api::all(client.clone());
        let mut missing = Vec::new();
        let ctrl = render::controller_name(&name);
        let role = render::controller_role_name(&name);
        if get_opt(&sa, &ctrl, "get ServiceAccount").await?.is_none() {
            missing.push(format!("ServiceAccount {ns}/{ctrl}"));
        }
        if get_opt(&roles, &role, "get Role").await?.is_none() {
            missing.push(format!("Role {ns}/{role}"));
        }
        if get_opt(&rbs, &role, "get RoleBinding").await?.is_none() {
            missing.push(format!("RoleBinding {ns}/{role}"));
        }
        if get_opt(
            &crs,
            render::controller_cluster_role_name(),
            "get ClusterRole",
        )
        .await?
        .is_none()
        {
            missing.push(format!(
                "ClusterRole {}",
                render::controller_cluster_role_name()
            ));
        }
        if get_opt(
            &crbs,
            &render::controller_binding_name(&name),
            "get ClusterRoleBinding",
        )
        .await?
        .is_none()
        {
            missing.push(format!(
                "ClusterRoleBinding {}",
                render::controller_binding_name(&name)
            ));
        }
        if missing.is_empty() {
            rbac.info(format!("* {name}"));
        } else {
            rbac.fail(format!("{name}: missing {}; re-apply `mc multicluster link --cluster-name {name}` (and `mc multicluster install` for the ClusterRole)", missing.join(", ")));
        }
        // Controller running: its lease (upstream's name, `service-mirror-write-<link>`) is
        // held and fresh; a controller that predates the rename holds `mc-mirror-write-<link>`
        // (mc_core::lease decides which one counts).
        let leases: kube::Api<Lease> = kube::Api::namespaced(client.clone(), &ns);
        let lease_name = render::lease_name(&name);
        let old_name = render::old_lease_name(&name);
        let record = |lease: Option<Lease>| {
            lease.map(|l| {
                let spec = l.spec.unwrap_or_default();
                LeaseRecord {
                    holder: spec.holder_identity.unwrap_or_default(),
                    renewed: spec.renew_time.map(|t| SystemTime::from(t.0)),
                    duration: Duration::from_secs(
                        u64::try_from(spec.lease_duration_seconds.unwrap_or(15)).unwrap_or(15),
                    ),
                }
            })
        };
        let current = record(get_opt(&leases, &lease_name, "get Lease").await?);
        let old = record(get_opt(&leases, &old_name, "get Lease").await?);
        let verdict = controller_lease(current.as_ref(), old.as_ref(), now);
        let (held, upgrade) = match verdict.name {
            LeaseName::Current => (lease_name.as_str(), String::new()),
            LeaseName::Old => (
                old_name.as_str(),
                format!(
                    "; the controller predates the Lease's rename to {lease_name} (upstream's \
                     name, which upstream's `linkerd multicluster check` and `gateways` read), \
                     so it runs an older mc: upgrade it by re-applying `mc multicluster link \
                     --cluster-name {name} --controller-only` (or `mc multicluster install` for \
                     a controller of the install's `controllers`) with this mc"
                ),
            ),
        };
        match verdict.state {
            ControllerState::NeverRan => running.fail(format!("{name}: no controller has ever run (no Lease {ns}/{lease_name}, nor {ns}/{old_name} of an mc before the rename); check `kubectl -n {ns} get deploy {ctrl}`")),
            ControllerState::Leading { holder } if verdict.name == LeaseName::Old => running.warn(format!("{name}: leader {holder} (Lease {ns}/{held}){upgrade}")),
            ControllerState::Leading { holder } => running.info(format!("* {name}: leader {holder}")),
            ControllerState::Expired { holder, renewed, expired_for } => running.fail(format!(
                "{name}: the controller is down: Lease {ns}/{held} (holder {holder:?}) was last renewed at {} and expired {}s ago; check `kubectl -n {ns} get pods -l {}={name}`{upgrade}",
                mc_core::trust::format_time(renewed),
                expired_for.as_secs(),
                labels::CLUSTER_NAME
            )),
            ControllerState::NeverRenewed => running.fail(format!("{name}: Lease {ns}/{held} has never been renewed{upgrade}")),
        }
        // The controller's own view of the target, from the TargetReachable condition.
        let condition = link
            .status
            .as_ref()
            .and_then(|s| s.condition(mc_core::link::TARGET_REACHABLE));
        match condition {
            Some(c) if c.status == "True" => reaching.info(format!("* {name}: {}", c.reason)),
            Some(c) => reaching.fail(format!(
                "{name}: the controller cannot watch {target} ({}, since {}): {}",
                c.reason, c.last_transition_time.0, c.message
            )),
            None => reaching.info(format!(
                "* {name}: not reported yet (the controller writes it once it has tried)"
            )),
        }
        // Gateway alive, from status (or the annotation, under upstream's CRD).
        if valid.gateway.is_some() {
            match mc_core::link::GatewayStatus::of_link(link).as_ref() {
                Some(g) if g.alive => gateways.info(format!("* {name}: alive{}", g.latency_ms.map(|l| format!(", {l}ms")).unwrap_or_default())),
                Some(_) => gateways.fail(format!("{name}: the gateway of {target} is not alive (probe failing); check the gateway pods and the network path to {}", link.spec.gateway_address.clone().unwrap_or_default())),
                None => gateways.fail(format!("{name}: no gateway status yet (is the controller running?)")),
            }
        }
    }
    if skip_remote {
        // The anchors were not compared: the skipped check says so, per Link.
        checks.extend([creds, skipped]);
    } else {
        checks.extend([creds, anchors]);
    }
    checks.extend([rbac, running, reaching, gateways]);

    // Mirrors.
    let services: kube::Api<Service> = kube::Api::all(client.clone());
    let mirror_sel = format!("{}=true", labels::MIRRORED_SERVICE);
    let mirrors = services
        .list(&ListParams::default().labels(&mirror_sel))
        .await
        .map_err(|e| {
            Error::api(
                format!("list mirror Services (context {})", cluster.context),
                e,
            )
        })?
        .items;
    // No ready endpoints is a warning, not waited for: the remote Service may be empty for
    // good (scaled to zero, an external service with no address), and a dead gateway or a
    // stopped controller has checks of its own.
    let mut endpoints_check = Check::new(
        "all mirror services have endpoints",
        "l5d-multicluster-services-endpoints",
    );
    let mut orphans = Check::new(
        "all mirror services are part of a Link",
        "l5d-multicluster-orphaned-services",
    );
    let link_names: Vec<String> = valid.iter().map(|(_, v)| v.cluster_name.clone()).collect();
    for svc in &mirrors {
        let l = svc.metadata.labels.clone().unwrap_or_default();
        let ns = svc.metadata.namespace.clone().unwrap_or_default();
        let name = svc.metadata.name.clone().unwrap_or_default();
        let Some(cluster_name) = l.get(labels::CLUSTER_NAME) else {
            continue; // federated
        };
        if !link_names.contains(cluster_name) {
            orphans.warn(format!("{ns}/{name}: mirror of {cluster_name:?}, which no Link targets; delete it or re-link"));
        }
        if l.contains_key(labels::MIRRORED_GATEWAY) || l.contains_key(labels::REMOTE_DISCOVERY) {
            continue;
        }
        let eps: kube::Api<Endpoints> = kube::Api::namespaced(client.clone(), &ns);
        let found = eps
            .get_opt(&name)
            .await
            .map_err(|e| Error::api(format!("get Endpoints {ns}/{name}"), e))?;
        if let Some(problem) = mirror_endpoints_problem(&ns, &name, found.as_ref()) {
            endpoints_check.warn(problem);
        }
    }
    checks.extend([endpoints_check, orphans]);
    Ok(checks)
}

/// The warning for a mirror whose Endpoints (`endpoints`, `None` when absent) have no ready
/// address, with a hint; `None` when one is ready.
/// How long before its end a certificate is reported as expiring soon.
const EXPIRY_WARNING: Duration = Duration::from_secs(7 * 24 * 3600);

/// The gateway's and the egress's identity certificates (the extension's `kubernetes.io/tls`
/// Secrets) in `namespaces`: an expired one fails, one ending within [`EXPIRY_WARNING`] warns.
async fn identity_certificates(
    client: &kube::Client,
    namespaces: &[String],
    now: SystemTime,
) -> Check {
    let mut c = Check::new(
        "identity certificates are valid and not expiring soon",
        "l5d-multicluster-identity-certs",
    );
    let selector = format!("{}={}", labels::EXTENSION, labels::EXTENSION_VALUE);
    for ns in namespaces {
        let Some(secrets) = list_labelled::<Secret>(client, ns, &selector, "Secrets", &mut c).await
        else {
            continue;
        };
        for secret in secrets
            .iter()
            .filter(|s| s.type_.as_deref() == Some("kubernetes.io/tls"))
        {
            let name = format!(
                "{ns}/{}",
                secret.metadata.name.as_deref().unwrap_or_default()
            );
            let pem = secret
                .data
                .as_ref()
                .and_then(|d| d.get("tls.crt"))
                .map(|b| String::from_utf8_lossy(&b.0).into_owned())
                .unwrap_or_default();
            let cert = mc_core::pki::CertifiedKey {
                cert_pem: pem,
                key_pem: String::new(),
            };
            match mc_core::pki::not_after_of(&cert) {
                Ok(end) => match expiry_problem(&name, end, now) {
                    Some((true, text)) => c.fail(text),
                    Some((false, text)) => c.warn(text),
                    None => c.info(format!(
                        "* {name} valid until {}",
                        mc_core::trust::format_time(end)
                    )),
                },
                Err(e) => c.fail(format!("{name}: tls.crt: {e}")),
            }
        }
    }
    c
}

/// The gateways' allow-lists: every policy ConfigMap of the extension (`<gateway>-policy`,
/// key `policy.yaml`) in `namespaces` parses; each is reported with its number of rules. A
/// gateway keeps its last good policy when the ConfigMap turns invalid, so a failure here
/// means the policy in force is not the one in the ConfigMap.
async fn gateway_policies(client: &kube::Client, namespaces: &[String]) -> Check {
    let mut c = Check::new(
        "gateway policy ConfigMaps parse",
        "l5d-multicluster-gateway-policy",
    );
    let selector = format!(
        "{}={},component=gateway",
        labels::EXTENSION,
        labels::EXTENSION_VALUE
    );
    let (mut found, mut gateways) = (0, 0);
    for ns in namespaces {
        gateways += gateway_deployments_load_a_policy(client, ns, &selector, &mut c).await;
        let Some(maps) =
            list_labelled::<ConfigMap>(client, ns, &selector, "ConfigMaps", &mut c).await
        else {
            continue;
        };
        for map in &maps {
            let name = format!("{ns}/{}", map.metadata.name.as_deref().unwrap_or_default());
            let text = map
                .data
                .as_ref()
                .and_then(|d| d.get(mc_core::policy::POLICY_KEY));
            found += 1;
            match policy_report(&name, text.map(String::as_str)) {
                Ok(line) => c.info(line),
                Err(line) => c.fail(line),
            }
        }
    }
    match (found, gateways) {
        (0, 0) => c.info(
            "no gateway in this cluster (installed with --gateway=false): no policy to check"
                .to_owned(),
        ),
        (0, _) => c.info("no gateway policy ConfigMap: the gateway was installed by an older mc (re-apply `mc multicluster install`)".to_owned()),
        _ => {}
    }
    c
}

/// Reports, for each gateway Deployment of the extension in `ns` (`selector`), which policy
/// ConfigMap it loads; one that runs without `--policy` (installed by an older mc) has no
/// allow-list in force, a warning. Returns how many gateway Deployments it saw.
async fn gateway_deployments_load_a_policy(
    client: &kube::Client,
    ns: &str,
    selector: &str,
    c: &mut Check,
) -> usize {
    let Some(deployments) =
        list_labelled::<Deployment>(client, ns, selector, "Deployments", c).await
    else {
        return 0;
    };
    for d in &deployments {
        let name = format!("{ns}/{}", d.metadata.name.as_deref().unwrap_or_default());
        match policy_config_map_of(d) {
            Some(map) => c.info(format!("* gateway {name} loads ConfigMap {map}")),
            None => c.warn(format!(
                "gateway {name} runs without --policy or without its policy ConfigMap mounted, so no allow-list is in force; re-apply `mc multicluster install` (values gateway.policy.rules)"
            )),
        }
    }
    deployments.len()
}

/// The policy ConfigMap a gateway Deployment loads: its `gateway` container passes `--policy`
/// and its Pod mounts a ConfigMap at [`mc_core::policy::POLICY_DIR`]; `None` otherwise.
fn policy_config_map_of(deployment: &Deployment) -> Option<String> {
    let pod = deployment.spec.as_ref()?.template.spec.as_ref()?;
    let container = pod.containers.iter().find(|c| c.name == "gateway")?;
    let flag = format!("--policy={}/", mc_core::policy::POLICY_DIR);
    container
        .args
        .as_ref()?
        .iter()
        .find(|a| a.starts_with(&flag))?;
    let mount = container
        .volume_mounts
        .as_ref()?
        .iter()
        .find(|m| m.mount_path == mc_core::policy::POLICY_DIR)?;
    pod.volumes
        .as_ref()?
        .iter()
        .find(|v| v.name == mount.name)?
        .config_map
        .as_ref()
        .map(|m| m.name.clone())
}

/// The report line of policy ConfigMap `name` whose `policy.yaml` is `text`: the rules it
/// holds, or what is wrong and the fix.
fn policy_report(name: &str, text: Option<&str>) -> std::result::Result<String, String> {
    let key = mc_core::policy::POLICY_KEY;
    let Some(text) = text else {
        return Err(format!(
            "{name}: no {key} key; re-apply `mc multicluster install` (values gateway.policy.rules)"
        ));
    };
    match mc_core::policy::parse(text) {
        Ok(rules) if rules.is_empty() => Ok(format!(
            "* {name}: no rules (every Service open to every identity the trust anchors vouch for)"
        )),
        Ok(rules) => Ok(format!("* {name}: {} rule(s)", rules.len())),
        Err(problem) => Err(format!(
            "{name}: {key} {problem}; the gateway keeps its last good policy until this is fixed; fix: {}",
            mc_core::policy::FORMAT_FIX
        )),
    }
}

/// The objects of kind `K` (`kinds`, for the warning) in `ns` matching `selector`; `None`, with
/// a warning on `c`, when they cannot be listed.
async fn list_labelled<K>(
    client: &kube::Client,
    ns: &str,
    selector: &str,
    kinds: &str,
    c: &mut Check,
) -> Option<Vec<K>>
where
    K: kube::Resource<Scope = kube::core::NamespaceResourceScope>
        + Clone
        + serde::de::DeserializeOwned
        + std::fmt::Debug,
    K::DynamicType: Default,
{
    let api: kube::Api<K> = kube::Api::namespaced(client.clone(), ns);
    match api.list(&ListParams::default().labels(selector)).await {
        Ok(l) => Some(l.items),
        Err(e) => {
            c.warn(format!(
                "cannot list {kinds} in {ns}: {}",
                describe_api_error(&e)
            ));
            None
        }
    }
}

/// Whether a certificate of Secret `name` ending at `end` is a problem at `now`: `(true, _)`
/// when it has expired, `(false, _)` when it ends within [`EXPIRY_WARNING`].
fn expiry_problem(name: &str, end: SystemTime, now: SystemTime) -> Option<(bool, String)> {
    let when = mc_core::trust::format_time(end);
    let fix = "renew it: `mc multicluster gateway-identity` (or `egress-identity`) … | kubectl apply -f -";
    match end.duration_since(now) {
        Err(_) => Some((
            true,
            format!("{name}: the certificate expired at {when}; {fix}"),
        )),
        Ok(left) if left < EXPIRY_WARNING => Some((
            false,
            format!(
                "{name}: the certificate expires at {when}, in {}h; {fix}",
                left.as_secs() / 3600
            ),
        )),
        Ok(_) => None,
    }
}

fn mirror_endpoints_problem(ns: &str, name: &str, endpoints: Option<&Endpoints>) -> Option<String> {
    let subsets = endpoints
        .and_then(|e| e.subsets.as_deref())
        .unwrap_or_default();
    let any = |a: &Option<Vec<EndpointAddress>>| a.as_ref().is_some_and(|a| !a.is_empty());
    if subsets.iter().any(|s| any(&s.addresses)) {
        return None;
    }
    let why = if subsets.iter().any(|s| any(&s.not_ready_addresses)) {
        "only not-ready addresses: the gateway is not alive (see the gateways check)"
    } else if endpoints.is_none() {
        "no Endpoints object: the controller has not written it (is it running?)"
    } else {
        "the remote service has no ready endpoints"
    };
    Some(format!(
        "{ns}/{name} has no ready endpoints ({why}); hint: check the exported Service's \
         endpoints in the target cluster: traffic to the mirror fails until it has some"
    ))
}

async fn diagnose_anchors(
    c: &mut Check,
    target: &str,
    local: &Result<Option<mc_core::trust::LinkerdConfig>>,
    remote: &kube::Client,
    remote_ns: &str,
    now: SystemTime,
) {
    let local = match local {
        Ok(Some(cfg)) => match TrustBundle::from_pem_unchecked_time(&cfg.trust_anchors_pem) {
            Ok(b) => b,
            Err(e) => return c.fail(format!("local linkerd-config: {e}")),
        },
        Ok(None) => return c.fail("the local cluster has no linkerd-config ConfigMap (pass -L with the control-plane namespace)".to_owned()),
        Err(e) => return c.fail(format!("local linkerd-config: {e}")),
    };
    let remote = match linkerd_config(remote, remote_ns, target).await {
        Ok(Some(cfg)) => match TrustBundle::from_pem_unchecked_time(&cfg.trust_anchors_pem) {
            Ok(b) => b,
            Err(e) => return c.fail(format!("{target}: remote linkerd-config: {e}")),
        },
        Ok(None) => {
            return c.fail(format!(
                "{target}: no ConfigMap {remote_ns}/linkerd-config in the target cluster"
            ));
        }
        Err(e) => return c.fail(format!("{target}: {e}")),
    };
    let diff = local.diff(&remote);
    let subjects = |list: &[mc_core::trust::Anchor]| {
        list.iter()
            .map(|a| {
                format!(
                    "{} (SHA256 {})",
                    a.summary().subject,
                    short_fp(&a.summary().sha256_fingerprint)
                )
            })
            .collect::<Vec<_>>()
            .join(", ")
    };
    let expired: Vec<String> = local
        .anchors()
        .iter()
        .chain(remote.anchors())
        .filter(|a| !a.is_valid_at(now))
        .map(|a| a.summary().subject.clone())
        .collect();
    if diff.is_empty() {
        c.info(format!(
            "* {target}: {} shared anchor(s)",
            diff.common.len()
        ));
    } else {
        let mut msg = format!("{target}: the anchors differ:");
        if !diff.removed.is_empty() {
            msg.push_str(&format!(
                " only in this cluster: {};",
                subjects(&diff.removed)
            ));
        }
        if !diff.added.is_empty() {
            msg.push_str(&format!(" only in {target}: {};", subjects(&diff.added)));
        }
        if diff.common.is_empty() {
            msg.push_str(" the bundles share NO anchor, so neither side can authenticate the other; distribute one bundle (`mc trust-anchor bundle`) to both clusters");
        } else {
            msg.push_str(&format!(
                " they still share {}, so traffic works, but finish the rotation so both hold the same bundle",
                subjects(&diff.common)
            ));
        }
        c.fail(msg);
    }
    if !expired.is_empty() {
        c.fail(format!(
            "{target}: expired or not yet valid anchor(s): {}",
            expired.join(", ")
        ));
    }
}

fn short_fp(fp: &str) -> String {
    fp.chars().take(23).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn failing(description: &str, retryable: bool) -> Check {
        let mut c = if retryable {
            Check::retryable(description, "x")
        } else {
            Check::new(description, "x")
        };
        c.fail("broken".into());
        c
    }

    #[test]
    fn only_failures_that_can_clear_on_their_own_are_waited_for() {
        let ok = Check::retryable("fine", "x");
        assert!(
            pending(std::slice::from_ref(&ok)).is_empty(),
            "healthy: nothing to wait for"
        );
        assert_eq!(
            pending(&[
                ok.clone(),
                failing("controllers", true),
                failing("gateways", true)
            ]),
            ["controllers", "gateways"]
        );
        assert!(
            pending(&[failing("controllers", true), failing("anchors", false)]).is_empty(),
            "a failure that needs an operator ends the wait"
        );
        let mut warned = Check::new("versions", "x");
        warned.warn("old".into());
        assert!(pending(&[warned]).is_empty(), "warnings are not waited for");
    }

    fn pair() -> (Check, Check) {
        (
            Check::new("remote cluster access credentials are valid", "x"),
            Check::new("clusters share trust anchors", "x"),
        )
    }

    #[test]
    fn a_target_unreachable_from_here_is_a_warning_naming_link_server_and_error() {
        let (mut creds, mut anchors) = pair();
        target_unreachable(
            &mut creds,
            &mut anchors,
            "east",
            "https://192.0.2.1:6443/",
            "connect timed out",
        );
        let checks = [creds, anchors];
        for c in &checks {
            assert_eq!(c.outcome, Outcome::Warning, "{c:?}");
            assert!(c.details[0].contains("Link east"), "{c:?}");
            assert!(c.details[0].contains("https://192.0.2.1:6443/"), "{c:?}");
        }
        let line = &checks[0].details[0];
        assert!(line.contains("connect timed out"), "{line}");
        assert!(
            line.contains("--skip-remote") && line.contains("where the target is reachable"),
            "{line}"
        );
        assert!(pending(&checks).is_empty(), "not waited for");
        let text = report(&checks, CheckFormat::Table);
        assert!(
            text.contains("‼ remote cluster access credentials are valid"),
            "{text}"
        );
        assert!(
            text.contains("Status check results are ✓ (2 warning(s))"),
            "{text}"
        );
    }

    #[test]
    fn only_an_answer_without_an_error_status_counts_as_unreachable() {
        let rejected = kube::Error::Api(Box::new(
            kube::core::Status::failure("Unauthorized", "Unauthorized").with_code(401),
        ));
        assert_eq!(RemoteFailure::of(&rejected), RemoteFailure::Rejected);
        let timed_out = kube::Error::Service(Box::new(std::io::Error::new(
            std::io::ErrorKind::TimedOut,
            "connect timed out",
        )));
        assert_eq!(RemoteFailure::of(&timed_out), RemoteFailure::Unreachable);
    }

    #[test]
    fn skip_remote_says_so_once_per_link() {
        let mut skipped = Check::new("skipped", "x");
        remote_skipped(&mut skipped, "east", "https://192.0.2.1:6443/");
        remote_skipped(&mut skipped, "north", "https://203.0.113.5:6443/");
        assert_eq!(skipped.outcome, Outcome::Warning);
        assert_eq!(skipped.details.len(), 2);
        assert!(
            skipped.details[0].contains("Link east")
                && skipped.details[0].contains("https://192.0.2.1:6443/")
                && skipped.details[0].contains("--skip-remote"),
            "{:?}",
            skipped.details
        );
        assert!(skipped.details[1].contains("Link north"));
    }

    fn endpoints(ready: &[&str], not_ready: &[&str]) -> Endpoints {
        let addresses = |ips: &[&str]| {
            (!ips.is_empty()).then(|| {
                ips.iter()
                    .map(|ip| EndpointAddress {
                        ip: (*ip).to_owned(),
                        ..EndpointAddress::default()
                    })
                    .collect()
            })
        };
        Endpoints {
            subsets: Some(vec![k8s_openapi::api::core::v1::EndpointSubset {
                addresses: addresses(ready),
                not_ready_addresses: addresses(not_ready),
                ..Default::default()
            }]),
            ..Endpoints::default()
        }
    }

    #[test]
    fn a_gateway_deployment_loads_the_config_map_it_mounts_and_passes() {
        let objects = render::install(&render::InstallValues::default()).unwrap();
        let rendered = objects
            .into_iter()
            .find(|o| o["kind"] == "Deployment" && o["metadata"]["name"] == "linkerd-gateway")
            .unwrap();
        let mut d: Deployment = serde_json::from_value(rendered).unwrap();
        assert_eq!(
            policy_config_map_of(&d).as_deref(),
            Some("linkerd-gateway-policy")
        );
        // An older install: no --policy.
        let spec = d.spec.as_mut().unwrap().template.spec.as_mut().unwrap();
        spec.containers[0]
            .args
            .as_mut()
            .unwrap()
            .retain(|a| !a.starts_with("--policy="));
        assert_eq!(policy_config_map_of(&d), None);
    }

    #[test]
    fn a_policy_config_map_reports_its_rules_or_what_is_wrong() {
        let name = "linkerd-multicluster/linkerd-gateway-policy";
        assert!(
            policy_report(name, Some(r#"{"rules":[]}"#))
                .unwrap()
                .contains("no rules")
        );
        let two = "rules:\n- {services: [a], clients: [b]}\n- {services: [c], clients: []}\n";
        assert_eq!(
            policy_report(name, Some(two)).unwrap(),
            format!("* {name}: 2 rule(s)")
        );
        for (text, want) in [
            (Some("rules: ["), "not a valid policy"),
            (Some("rules:\n- {services: [''], clients: [a]}\n"), "rule 0"),
            (None, "no policy.yaml key"),
        ] {
            let line = policy_report(name, text).unwrap_err();
            assert!(line.contains(name) && line.contains(want), "{line}");
            assert!(line.contains("fix:") || line.contains("re-apply"), "{line}");
        }
    }

    #[test]
    fn expired_certificates_fail_and_those_ending_within_a_week_warn() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000_000);
        let hour = Duration::from_secs(3600);
        let (fatal, text) = expiry_problem("ns/gw", now - hour, now).unwrap();
        assert!(
            fatal && text.contains("ns/gw") && text.contains("expired"),
            "{text}"
        );
        let (fatal, text) = expiry_problem("ns/gw", now + 30 * hour, now).unwrap();
        assert!(
            !fatal && text.contains("in 30h") && text.contains("renew"),
            "{text}"
        );
        assert!(expiry_problem("ns/gw", now + 8 * 24 * hour, now).is_none());
    }

    #[test]
    fn a_mirror_without_ready_endpoints_is_a_warning_with_a_hint_not_waited_for() {
        assert_eq!(
            mirror_endpoints_problem("shop", "web-east", Some(&endpoints(&["203.0.113.9"], &[]))),
            None
        );
        let cases = [
            (
                Some(Endpoints::default()),
                "the remote service has no ready endpoints",
            ),
            (
                Some(endpoints(&[], &["203.0.113.9"])),
                "the gateway is not alive",
            ),
            (None, "the controller has not written it"),
        ];
        for (eps, why) in cases {
            let problem = mirror_endpoints_problem("shop", "web-east", eps.as_ref()).unwrap();
            assert!(
                problem.contains("shop/web-east has no ready endpoints"),
                "{problem}"
            );
            assert!(
                problem.contains(why) && problem.contains("hint:"),
                "{problem}"
            );
            let mut c = Check::new("all mirror services have endpoints", "x");
            c.warn(problem);
            assert_eq!(c.outcome, Outcome::Warning);
            assert!(pending(&[c]).is_empty());
        }
    }
}
