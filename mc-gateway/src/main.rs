//! The `mc-gateway` binary: `serve` (the gateway), `connect` (the client side) and `egress`
//! (the source-side egress for unmeshed Pods).

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use clap::{ArgGroup, Parser, Subcommand, ValueEnum};
use mc_core::transport::SessionProtocol;
use mc_gateway::PolicySource;
use mc_gateway::client::{Backend, BackendKind, BackendSpec, Forwarder, GatewayConnector};
use mc_gateway::mesh::{BackendIdentities, KubeIdentities};
use mc_gateway::resolve::KubeResolver;
use mc_gateway::resolve::{
    Balance, Balancer, Chain, DnsResolver, InFlight, SharedResolver, StaticResolver,
};
use mc_gateway::{CertSource, IssuerSource};
use mc_gateway::{Error, Result};
use mc_gateway::{Gateway, Limits, ServerConfig};
use mc_gateway::{Suffixes, Target};

/// The mc gateway: the mTLS door into a target cluster, and the client side that reaches it.
#[derive(Debug, Parser)]
#[command(name = "mc-gateway", version)]
struct Cli {
    /// Log format.
    #[arg(long, value_enum, default_value_t = LogFormat::Plain, global = true)]
    log_format: LogFormat,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum LogFormat {
    Plain,
    Json,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the gateway.
    Serve(Serve),
    /// Listen locally and forward to a gateway (and optionally a local backend, weighted).
    Connect(Connect),
    /// Run the source-side egress: one port per route of ConfigMap mc-egress-routes, each
    /// leading over mTLS to a remote gateway.
    Egress(EgressArgs),
}

/// Flags of `mc-gateway egress`.
#[derive(Debug, Parser)]
struct EgressArgs {
    /// The egress identity (its client certificate) and the anchors gateways must chain to.
    #[command(flatten)]
    files: IdentityFiles,
    /// The egress's own identity, e.g.
    /// mc-egress.linkerd-multicluster.serviceaccount.identity.linkerd.cluster.local: required
    /// in issuer mode (the leaf is minted for it); in file mode, checked against --cert.
    #[arg(long)]
    identity: Option<String>,
    /// Namespace of the route ConfigMap mc-egress-routes.
    #[arg(long, env = "POD_NAMESPACE", default_value = "linkerd-multicluster")]
    namespace: String,
    /// Address the route ports listen on.
    #[arg(long, default_value = "0.0.0.0")]
    listen_ip: IpAddr,
    /// Admin server address (/ready, /live, /metrics); "off" disables it.
    #[arg(long, default_value = "0.0.0.0:4191")]
    admin: String,
    /// Certificate, key (or issuer) and trust-anchor file poll interval (and the retry
    /// interval of ports that could not be bound), seconds. In issuer mode the leaf is checked
    /// for renewal as often, or every sixth of --leaf-lifetime when a third of it is shorter.
    #[arg(long, default_value_t = 5.0)]
    reload_interval: f64,
    /// Idle connection timeout, seconds.
    #[arg(long, default_value_t = 300.0)]
    idle_timeout: f64,
    /// On SIGTERM the ports close at once; open connections get this long to finish, seconds.
    #[arg(long, default_value_t = 30.0)]
    drain_timeout: f64,
    /// Read the routes from this YAML or JSON file (the ConfigMap's data map; polled every
    /// --reload-interval) instead of the Kubernetes API.
    #[arg(long)]
    routes_file: Option<PathBuf>,
}

/// The identity of `serve` and `egress`: a leaf certificate from files (file mode), or an
/// issuer to mint short-lived leaves from (issuer mode); and the trust anchors.
#[derive(Debug, clap::Args)]
#[command(group(
    ArgGroup::new("leaf_files")
        .args(["cert", "key"])
        .multiple(true)
        .conflicts_with("issuer_files")
))]
#[command(group(ArgGroup::new("issuer_files").args(["issuer_cert", "issuer_key"]).multiple(true)))]
#[command(group(
    ArgGroup::new("certificate")
        .args(["cert", "key", "issuer_cert", "issuer_key"])
        .multiple(true)
        .required(true)
))]
struct IdentityFiles {
    /// File mode: PEM certificate chain, leaf first (the identity as SAN DNS name), reloaded
    /// on change. With --key; not with --issuer-cert/--issuer-key.
    #[arg(long, requires = "key")]
    cert: Option<PathBuf>,
    /// File mode: PEM ECDSA P-256 private key of --cert, reloaded on change.
    #[arg(long, requires = "cert")]
    key: Option<PathBuf>,
    /// Issuer mode: PEM certificate of the issuer (an intermediate CA, e.g. from `mc issuer
    /// create`; use one dedicated to mc, not Linkerd's identity issuer). The process mints its
    /// own leaf for --identity in memory and renews it after 2/3 of its lifetime, and at once
    /// when the issuer files change. With --issuer-key; not with --cert/--key.
    #[arg(long, requires = "issuer_key")]
    issuer_cert: Option<PathBuf>,
    /// Issuer mode: PEM private key of --issuer-cert, re-read on change.
    #[arg(long, requires = "issuer_cert")]
    issuer_key: Option<PathBuf>,
    /// Issuer mode: validity of each minted leaf, a Go-style duration (e.g. 24h, 90m, 30s; at
    /// least 5s) [default: 24h]. A leaf never outlives its issuer: it is shortened to the
    /// issuer's end, with a warning.
    #[arg(long, value_parser = parse_leaf_lifetime)]
    leaf_lifetime: Option<Duration>,
    /// PEM bundle of trust anchors that peer certificates must chain to, reloaded on change
    /// (new handshakes use the new bundle; open connections stay).
    #[arg(long)]
    trust_anchors: PathBuf,
}

/// The default `--leaf-lifetime`.
const DEFAULT_LEAF_LIFETIME: Duration = mc_core::pki::DEFAULT_LEAF_VALIDITY;
/// The shortest `--leaf-lifetime`: certificate times have a resolution of one second.
const MIN_LEAF_LIFETIME: Duration = Duration::from_secs(5);

fn parse_leaf_lifetime(s: &str) -> std::result::Result<Duration, String> {
    let fix = "fix: a Go-style duration of at least 5s, e.g. 24h, 90m or 30s";
    match mc_core::link::parse_duration(s) {
        Ok(d) if d >= MIN_LEAF_LIFETIME => Ok(d),
        Ok(_) => Err(format!("{s:?} is shorter than 5s; {fix}")),
        Err(e) => Err(format!("{e}; {fix}")),
    }
}

impl IdentityFiles {
    /// The certificate source these flags name, for `identity` (`--identity`, required in
    /// issuer mode). clap has checked that exactly one pair of files is given.
    fn source(&self, identity: Option<&str>) -> Result<CertSource> {
        let lifetime_only_with_issuer = |_| Error::InvalidArg {
            flag: "--leaf-lifetime",
            value: self
                .leaf_lifetime
                .map(|d| format!("{d:?}"))
                .unwrap_or_default(),
            why: "applies to issuer mode only; with --cert/--key the leaf's own validity holds"
                .into(),
            fix: "drop --leaf-lifetime, or pass --issuer-cert/--issuer-key instead of --cert/--key",
        };
        match (&self.cert, &self.key, &self.issuer_cert, &self.issuer_key) {
            (Some(cert), Some(key), None, None) => match self.leaf_lifetime {
                Some(d) => Err(lifetime_only_with_issuer(d)),
                None => Ok(CertSource::Files {
                    cert: cert.clone(),
                    key: key.clone(),
                }),
            },
            (None, None, Some(cert), Some(key)) => {
                let identity = identity.ok_or_else(|| Error::InvalidArg {
                    flag: "--identity",
                    value: String::new(),
                    why: "required with --issuer-cert/--issuer-key: it names the leaf to mint"
                        .into(),
                    fix: "pass the identity, e.g. --identity mc-egress.linkerd-multicluster.serviceaccount.identity.linkerd.cluster.local",
                })?;
                validate_identity(identity)?;
                Ok(CertSource::Issuer(IssuerSource {
                    cert: cert.clone(),
                    key: key.clone(),
                    identity: identity.to_owned(),
                    lifetime: self.leaf_lifetime.unwrap_or(DEFAULT_LEAF_LIFETIME),
                }))
            }
            _ => Err(Error::InvalidArg {
                flag: "--cert/--key/--issuer-cert/--issuer-key",
                value: String::new(),
                why: "exactly one pair is required".into(),
                fix: CERTIFICATE_FLAGS_FIX,
            }),
        }
    }
}

/// How to give the certificate flags, for errors.
const CERTIFICATE_FLAGS_FIX: &str = "pass either --cert and --key (a leaf from files) or --issuer-cert and --issuer-key (an issuer to mint renewed leaves from), not both";

/// Checks an `--identity`: a DNS name, as the leaf's SAN requires.
fn validate_identity(identity: &str) -> Result<()> {
    mc_core::identity::validate_dns_name(identity).map_err(|e| Error::InvalidArg {
        flag: "--identity",
        value: identity.to_owned(),
        why: e.to_string(),
        fix: "a DNS-like identity, e.g. linkerd-gateway.linkerd-multicluster.serviceaccount.identity.linkerd.cluster.local",
    })
}

/// Adds the certificate flags' fix to a clap error about them.
fn with_certificate_tip(mut e: clap::Error) -> clap::Error {
    use clap::error::{ContextKind, ContextValue, ErrorKind};
    let names = |kind| match e.get(kind) {
        Some(ContextValue::String(s)) => s.clone(),
        Some(ContextValue::Strings(v)) => v.join(" "),
        _ => String::new(),
    };
    let args = [names(ContextKind::InvalidArg), names(ContextKind::PriorArg)].join(" ");
    let about_certificate = ["--cert", "--key", "--issuer-"]
        .iter()
        .any(|flag| args.contains(flag));
    if about_certificate
        && matches!(
            e.kind(),
            ErrorKind::MissingRequiredArgument | ErrorKind::ArgumentConflict
        )
    {
        e.insert(
            ContextKind::Suggested,
            ContextValue::StyledStrs(vec![CERTIFICATE_FLAGS_FIX.into()]),
        );
    }
    e
}

/// Flags of `mc-gateway serve`.
#[derive(Debug, Parser)]
struct Serve {
    /// mTLS listener address.
    #[arg(long, default_value = "0.0.0.0:4143")]
    listen: SocketAddr,
    /// Admin server address (/ready, /live, /metrics); "off" disables it.
    #[arg(long, default_value = "0.0.0.0:4191")]
    admin: String,
    /// The gateway's identity and the anchors client certificates must chain to.
    #[command(flatten)]
    files: IdentityFiles,
    /// The gateway's own identity, e.g.
    /// linkerd-gateway.linkerd-multicluster.serviceaccount.identity.linkerd.cluster.local; in
    /// issuer mode the leaf is minted for it.
    #[arg(long)]
    identity: String,
    /// Cluster domain; the default allowed suffix is svc.<cluster-domain>.
    #[arg(long, default_value = "cluster.local")]
    cluster_domain: String,
    /// Allowed target suffix (repeatable); replaces the default svc.<cluster-domain>.
    #[arg(long = "allow-suffix")]
    allow_suffix: Vec<String>,
    /// Static target: name:port=ip:port (repeatable); consulted before DNS.
    #[arg(long = "static")]
    statics: Vec<String>,
    /// Do not fall back to the system DNS resolver.
    #[arg(long)]
    no_dns: bool,
    /// mTLS to meshed backends: `linkerd` (with --kubernetes) dials the Pods that the Linkerd
    /// control plane of --identity meshes (label linkerd.io/control-plane-ns) with mTLS as
    /// --identity, as upstream's gateway does, so that backends refusing unauthenticated
    /// clients admit the gateway; `off` dials every backend in plaintext.
    #[arg(long, default_value = "linkerd", value_parser = ["linkerd", "off"])]
    backend_mtls: String,
    /// Resolve targets from the Services and EndpointSlices of this cluster (in-cluster
    /// config or KUBECONFIG), after --static and before DNS.
    #[arg(long)]
    kubernetes: bool,
    /// YAML policy file (the allow-list): `rules: [{services: [glob], clients: [glob]}]`.
    /// Re-read every --reload-interval when its content changes; an invalid new file keeps
    /// the last good policy (logged, counted in mc_gateway_policy_reload_failures_total).
    #[arg(long)]
    policy: Option<PathBuf>,
    /// Port assumed when an HTTP Host header has none.
    #[arg(long, default_value_t = 80)]
    default_http_port: u16,
    /// TLS handshake timeout, seconds.
    #[arg(long, default_value_t = 10.0)]
    handshake_timeout: f64,
    /// Transport-header and HTTP-header read timeout, seconds. The first request of an HTTP/1
    /// connection must arrive within it; between keep-alive requests it runs from the first
    /// byte of each request head, and the wait for that byte is governed by --idle-timeout.
    #[arg(long, default_value_t = 10.0)]
    header_timeout: f64,
    /// Idle connection timeout, seconds.
    #[arg(long, default_value_t = 300.0)]
    idle_timeout: f64,
    /// Maximum HTTP header block, bytes.
    #[arg(long, default_value_t = 64 * 1024)]
    max_header_bytes: usize,
    /// Maximum concurrent connections; more are closed at accept.
    #[arg(long, default_value_t = 10_000)]
    max_connections: usize,
    /// Drain deadline on SIGTERM, seconds.
    #[arg(long, default_value_t = 30.0)]
    drain_timeout: f64,
    /// How to choose among a service's ready endpoints (Kubernetes and static resolvers):
    /// round-robin, or p2c (power of two choices: the less loaded of two random endpoints,
    /// by connections and requests in flight through this gateway).
    #[arg(long, default_value = "round-robin", value_parser = parse_balance)]
    balance: Balance,
    /// Serving threads, each with its own accept loop and single-threaded runtime (a
    /// connection stays on the thread that accepted it); 0 means one per CPU.
    #[arg(long, default_value_t = 0)]
    threads: usize,
    /// Certificate, key (or issuer), trust-anchor and --policy file poll interval, seconds. In
    /// issuer mode the leaf is checked for renewal as often, or every sixth of --leaf-lifetime when a
    /// third of it is shorter.
    #[arg(long, default_value_t = 5.0)]
    reload_interval: f64,
    /// Scheduler time slice asked for each serving thread, microseconds (Linux 6.12 or later;
    /// the kernel accepts 100 to 100000). A short slice lets a woken serving thread run at
    /// once instead of waiting for the running task's slice to end; it gives no more CPU
    /// time, but it changes how the kernel shares a CPU with the threads of co-located Pods,
    /// which is not measured: off unless asked for. 0 (the default) keeps the kernel's default.
    #[arg(long, default_value = "0", value_parser = parse_sched_slice)]
    sched_slice_us: SchedSlice,
}

/// `--sched-slice-us`: `None` for 0 (the kernel's default).
#[derive(Debug, Clone, Copy)]
struct SchedSlice(Option<Duration>);

fn parse_sched_slice(s: &str) -> std::result::Result<SchedSlice, String> {
    match s.parse::<u64>() {
        Ok(0) => Ok(SchedSlice(None)),
        Ok(us @ 100..=100_000) => Ok(SchedSlice(Some(Duration::from_micros(us)))),
        _ => Err(format!(
            "{s:?} is not a slice the kernel accepts; fix: a whole number of microseconds from 100 to 100000, or 0 for the kernel's default"
        )),
    }
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum Protocol {
    Opaque,
    Http1,
    Http2,
}

/// Flags of `mc-gateway connect`.
#[derive(Debug, Parser)]
struct Connect {
    /// Local listen address.
    #[arg(long, default_value = "127.0.0.1:4140")]
    listen: SocketAddr,
    /// Backend: local=<ip:port>[,weight=N] or gateway=<host:port>[,weight=N] (repeatable).
    #[arg(long = "backend", required = true)]
    backends: Vec<String>,
    /// Target authority sent to the gateway: remote-svc-fq-name:port.
    #[arg(long)]
    target: String,
    /// Expected gateway identity (remote-gateway-identity).
    #[arg(long)]
    gateway_identity: Option<String>,
    /// Session protocol announced in the transport header.
    #[arg(long, value_enum, default_value_t = Protocol::Opaque)]
    protocol: Protocol,
    /// PEM client certificate (the client identity as SAN DNS name).
    #[arg(long)]
    cert: Option<PathBuf>,
    /// PEM ECDSA P-256 client key.
    #[arg(long)]
    key: Option<PathBuf>,
    /// PEM trust-anchor bundle the gateway must chain to.
    #[arg(long)]
    trust_anchors: Option<PathBuf>,
}

fn parse_balance(s: &str) -> std::result::Result<Balance, String> {
    s.parse().map_err(|e: Error| e.to_string())
}

fn seconds(flag: &'static str, v: f64) -> Result<Duration> {
    Duration::try_from_secs_f64(v).map_err(|e| Error::InvalidArg {
        flag,
        value: v.to_string(),
        why: e.to_string(),
        fix: "a non-negative number of seconds",
    })
}

fn init_logs(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Plain => builder.init(),
        LogFormat::Json => builder.json().init(),
    }
}

async fn shutdown_signal() {
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(e) => {
                tracing::warn!(error = %e, "cannot watch SIGTERM");
                std::future::pending::<()>().await;
            }
        }
    };
    tokio::select! {
        () = term => tracing::info!("SIGTERM received"),
        r = tokio::signal::ctrl_c() => if r.is_ok() { tracing::info!("SIGINT received") },
    }
}

/// The watch on the Pods meshed by the Linkerd control plane that issued `identity` (the
/// gateway's own, `<sa>.<ns>.serviceaccount.identity.<control-plane-ns>.<trust-domain>`).
async fn meshed_pods(client: kube::Client, identity: &str) -> Result<Arc<dyn BackendIdentities>> {
    let id: mc_core::identity::Identity = identity.parse().map_err(|e| Error::InvalidArg {
        flag: "--backend-mtls",
        value: "linkerd".into(),
        why: format!("--identity {identity} is not a Linkerd identity, so the control plane whose Pods are meshed is unknown: {e}"),
        fix: "give --identity as <sa>.<ns>.serviceaccount.identity.<control-plane-ns>.<trust-domain>, or pass --backend-mtls=off",
    })?;
    let pods = KubeIdentities::start(
        client,
        &id.control_plane_namespace,
        &id.trust_domain,
        Duration::from_secs(60),
    )
    .await?;
    tracing::info!(control_plane = %id.control_plane_namespace, trust_domain = %id.trust_domain, "meshed backends get mTLS as the gateway's identity");
    Ok(Arc::new(pods))
}

async fn serve(args: Serve) -> Result<()> {
    let load = Arc::new(InFlight::default());
    let mut statics =
        StaticResolver::new().with_balancer(Balancer::new(args.balance, load.clone()));
    for spec in &args.statics {
        statics.add_spec(spec)?;
    }
    let mut chain: Vec<SharedResolver> = vec![Arc::new(statics)];
    let mut backend_identities: Option<Arc<dyn BackendIdentities>> = None;
    if args.kubernetes {
        let client = kube::Client::try_default()
            .await
            .map_err(|e| Error::InvalidArg {
                flag: "--kubernetes",
                value: "true".into(),
                why: format!("no Kubernetes client configuration: {e}"),
                fix: "run in a pod with a service account, or set KUBECONFIG",
            })?;
        let kube = KubeResolver::start(
            client.clone(),
            &args.cluster_domain,
            Duration::from_secs(60),
        )
        .await?
        .with_balance(args.balance, load);
        chain.push(Arc::new(kube));
        if args.backend_mtls == "linkerd" {
            backend_identities = Some(meshed_pods(client, &args.identity).await?);
        }
    }
    if !args.no_dns {
        chain.push(Arc::new(DnsResolver::default()));
    }
    let suffixes = if args.allow_suffix.is_empty() {
        Suffixes::for_cluster_domain(&args.cluster_domain)
    } else {
        Suffixes::new(&args.allow_suffix)
    };
    let policy = match &args.policy {
        Some(p) => PolicySource::File(p.clone()),
        None => PolicySource::default(),
    };
    let admin = admin_addr(&args.admin)?;
    let config = ServerConfig {
        listen: args.listen,
        admin,
        certificate: args.files.source(Some(&args.identity))?,
        trust_anchors: args.files.trust_anchors,
        identity: args.identity,
        suffixes,
        policy,
        default_http_port: args.default_http_port,
        resolver: Arc::new(Chain(chain)),
        backend_identities,
        slice: args.sched_slice_us.0,
        threads: match args.threads {
            0 => std::thread::available_parallelism().map_or(1, usize::from),
            n => n,
        },
        limits: Limits {
            handshake_timeout: seconds("--handshake-timeout", args.handshake_timeout)?,
            header_timeout: seconds("--header-timeout", args.header_timeout)?,
            idle_timeout: seconds("--idle-timeout", args.idle_timeout)?,
            max_http_header_bytes: args.max_header_bytes,
            max_connections: args.max_connections,
            drain_timeout: seconds("--drain-timeout", args.drain_timeout)?,
            reload_interval: seconds("--reload-interval", args.reload_interval)?,
        },
    };
    // This thread serves too (it runs the first accept loop).
    mc_gateway::request_slice(config.slice);
    let gateway = Gateway::bind(config).await?;
    tracing::info!(
        listen = %gateway.local_addr()?,
        admin = ?gateway.admin_addr(),
        "listening"
    );
    gateway.run(shutdown_signal()).await
}

/// The `--admin` address; `None` for "off".
fn admin_addr(value: &str) -> Result<Option<SocketAddr>> {
    match value {
        "off" | "" => Ok(None),
        a => a
            .parse()
            .map(Some)
            .map_err(|e: std::net::AddrParseError| Error::InvalidArg {
                flag: "--admin",
                value: a.to_owned(),
                why: e.to_string(),
                fix: "ip:port, e.g. 0.0.0.0:4191, or off",
            }),
    }
}

async fn egress(args: EgressArgs) -> Result<()> {
    let reload_interval = seconds("--reload-interval", args.reload_interval)?;
    if reload_interval.is_zero() {
        return Err(Error::InvalidArg {
            flag: "--reload-interval",
            value: args.reload_interval.to_string(),
            why: "must be more than zero".into(),
            fix: "a positive number of seconds, e.g. 5",
        });
    }
    let config = mc_gateway::egress::EgressConfig {
        listen_ip: args.listen_ip,
        admin: admin_addr(&args.admin)?,
        certificate: egress_certificate(&args)?,
        trust_anchors: args.files.trust_anchors.clone(),
        reload_interval,
        idle_timeout: seconds("--idle-timeout", args.idle_timeout)?,
        drain_timeout: seconds("--drain-timeout", args.drain_timeout)?,
    };
    let (tx, rx) = tokio::sync::watch::channel(None);
    let source = match args.routes_file {
        Some(path) => {
            tracing::info!(file = %path.display(), "egress routes from a file");
            tokio::spawn(mc_gateway::egress::poll_routes_file(
                path,
                reload_interval,
                tx,
            ))
        }
        None => {
            if args.namespace.is_empty() {
                return Err(Error::InvalidArg {
                    flag: "--namespace",
                    value: String::new(),
                    why: "empty (POD_NAMESPACE is set but empty?)".into(),
                    fix: "the multicluster namespace, e.g. linkerd-multicluster",
                });
            }
            let client = kube::Client::try_default().await.map_err(|e| Error::Kube {
                what: "no client configuration",
                source: Box::new(e),
                fix: "run in a Pod with a ServiceAccount, set KUBECONFIG, or pass --routes-file",
            })?;
            tracing::info!(namespace = %args.namespace, configmap = mc_core::egress::ROUTES_CONFIG_MAP, "egress routes from the Kubernetes API");
            tokio::spawn(async move {
                mc_gateway::egress::watch_config_map(client, &args.namespace, tx).await;
            })
        }
    };
    let result = mc_gateway::egress::run(config, rx, shutdown_signal()).await;
    source.abort();
    result
}

/// The egress's certificate source; in file mode with --identity, a certificate for another
/// identity is refused.
fn egress_certificate(args: &EgressArgs) -> Result<CertSource> {
    let source = args.files.source(args.identity.as_deref())?;
    if let (CertSource::Files { cert, key }, Some(identity)) = (&source, &args.identity) {
        validate_identity(identity)?;
        let loaded = mc_gateway::load_certified_key(cert, key)?;
        let found = loaded.cert.first().and_then(mc_gateway::identity_of);
        if found.as_deref() != Some(identity.as_str()) {
            return Err(Error::InvalidArg {
                flag: "--identity",
                value: identity.clone(),
                why: format!(
                    "the certificate {} is for {}",
                    cert.display(),
                    found.as_deref().unwrap_or("no identity")
                ),
                fix: "pass the identity the certificate was issued for, or the certificate of this identity",
            });
        }
    }
    Ok(source)
}

fn required<'a, T>(v: &'a Option<T>, flag: &'static str) -> Result<&'a T> {
    v.as_ref().ok_or(Error::InvalidArg {
        flag,
        value: String::new(),
        why: "required with a gateway backend".into(),
        fix: "pass the flag",
    })
}

async fn connect(args: Connect) -> Result<()> {
    let target = Target::parse_authority(&args.target, None)?;
    let mut backends = Vec::new();
    for spec in &args.backends {
        let spec = BackendSpec::parse(spec)?;
        let kind = if spec.kind == "local" {
            BackendKind::Local(spec.addr.clone())
        } else {
            BackendKind::Gateway(GatewayConnector::new(
                required(&args.cert, "--cert")?,
                required(&args.key, "--key")?,
                required(&args.trust_anchors, "--trust-anchors")?,
                spec.addr.clone(),
                required(&args.gateway_identity, "--gateway-identity")?,
            )?)
        };
        backends.push(Backend {
            name: spec.kind.clone(),
            kind,
            weight: spec.weight,
        });
    }
    let protocol = match args.protocol {
        Protocol::Opaque => None,
        Protocol::Http1 => Some(SessionProtocol::Http1),
        Protocol::Http2 => Some(SessionProtocol::Http2),
    };
    let fwd = Forwarder::bind(args.listen, backends, target, protocol).await?;
    tracing::info!(listen = %fwd.local_addr()?, "forwarding");
    fwd.run(shutdown_signal()).await
}

fn main() -> ExitCode {
    let cli = Cli::try_parse().unwrap_or_else(|e| with_certificate_tip(e).exit());
    init_logs(cli.log_format);
    // The gateway runs its own serving threads (see --threads) around a single-threaded
    // runtime; the client side uses the work-stealing one.
    let mut builder = match cli.command {
        Command::Serve(_) => tokio::runtime::Builder::new_current_thread(),
        Command::Connect(_) | Command::Egress(_) => tokio::runtime::Builder::new_multi_thread(),
    };
    let rt = match builder.enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("mc-gateway: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = rt.block_on(async {
        match cli.command {
            Command::Serve(args) => serve(args).await,
            Command::Connect(args) => connect(args).await,
            Command::Egress(args) => egress(args).await,
        }
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!(error = %e, "mc-gateway failed");
            eprintln!("mc-gateway: {e}");
            ExitCode::FAILURE
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

    use super::*;

    const ID: &str = "mc-egress.linkerd-multicluster.serviceaccount.identity.linkerd.cluster.local";

    fn parse(args: &[&str]) -> std::result::Result<Cli, clap::Error> {
        let argv = ["mc-gateway"].iter().chain(args).copied();
        Cli::try_parse_from(argv).map_err(with_certificate_tip)
    }

    fn egress_args(args: &[&str]) -> EgressArgs {
        let mut all = vec!["egress", "--trust-anchors", "ca.crt"];
        all.extend_from_slice(args);
        match parse(&all).unwrap().command {
            Command::Egress(a) => a,
            other => panic!("{other:?}"),
        }
    }

    fn refused(args: &[&str]) -> String {
        let mut all = vec!["egress", "--trust-anchors", "ca.crt"];
        all.extend_from_slice(args);
        parse(&all).unwrap_err().render().to_string()
    }

    #[test]
    fn issuer_mode_takes_the_issuer_the_identity_and_a_lifetime() {
        let a = egress_args(&[
            "--issuer-cert",
            "i.crt",
            "--issuer-key",
            "i.key",
            "--identity",
            ID,
            "--leaf-lifetime",
            "2m",
        ]);
        let CertSource::Issuer(issuer) = a.files.source(a.identity.as_deref()).unwrap() else {
            panic!("not issuer mode");
        };
        assert_eq!(issuer.cert, PathBuf::from("i.crt"));
        assert_eq!(issuer.key, PathBuf::from("i.key"));
        assert_eq!(issuer.identity, ID);
        assert_eq!(issuer.lifetime, Duration::from_secs(120));
        // The default lifetime is 24 h.
        let a = egress_args(&["--issuer-cert", "i", "--issuer-key", "k", "--identity", ID]);
        let CertSource::Issuer(issuer) = a.files.source(Some(ID)).unwrap() else {
            panic!("not issuer mode");
        };
        assert_eq!(issuer.lifetime, Duration::from_secs(86_400));
    }

    #[test]
    fn file_mode_takes_the_cert_and_key() {
        let a = egress_args(&["--cert", "c", "--key", "k"]);
        assert_eq!(
            a.files.source(None).unwrap(),
            CertSource::Files {
                cert: "c".into(),
                key: "k".into()
            }
        );
        let err = egress_args(&["--cert", "c", "--key", "k", "--leaf-lifetime", "1h"])
            .files
            .source(None)
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("--leaf-lifetime") && err.contains("issuer mode only"),
            "{err}"
        );
    }

    #[test]
    fn the_two_pairs_are_exclusive_and_one_is_required() {
        const BOTH: [&str; 8] = [
            "--cert",
            "c",
            "--key",
            "k",
            "--issuer-cert",
            "i",
            "--issuer-key",
            "j",
        ];
        for args in [&BOTH[..], &BOTH[..6], &[][..], &BOTH[..2], &BOTH[6..]] {
            let err = refused(args);
            assert!(
                err.contains("tip: pass either --cert and --key") && err.contains("--"),
                "{args:?}: {err}"
            );
        }
        assert!(refused(&BOTH[..2]).contains("--key"));
        assert!(refused(&BOTH[6..]).contains("--issuer-cert"));
        let both = refused(&BOTH);
        assert!(both.contains("cannot be used with"), "{both}");
    }

    #[test]
    fn issuer_mode_needs_a_valid_identity_and_lifetime() {
        let issuer = ["--issuer-cert", "i", "--issuer-key", "k"];
        let err = egress_args(&issuer)
            .files
            .source(None)
            .unwrap_err()
            .to_string();
        assert!(err.contains("--identity") && err.contains("fix"), "{err}");
        let a = egress_args(&[&issuer[..], &["--identity", "not a name"]].concat());
        let err = a
            .files
            .source(a.identity.as_deref())
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("--identity") && err.contains("not a name"),
            "{err}"
        );
        for bad in ["1s", "soon", "0s"] {
            let err = refused(&[&issuer[..], &["--identity", ID, "--leaf-lifetime", bad]].concat());
            assert!(
                err.contains("--leaf-lifetime") && err.contains("fix"),
                "{bad}: {err}"
            );
        }
    }

    #[test]
    fn serve_takes_the_same_flags() {
        let cli = parse(&[
            "serve",
            "--trust-anchors",
            "ca",
            "--identity",
            ID,
            "--issuer-cert",
            "i",
            "--issuer-key",
            "k",
            "--leaf-lifetime",
            "6s",
        ])
        .unwrap();
        let Command::Serve(a) = cli.command else {
            panic!("not serve");
        };
        assert!(matches!(
            a.files.source(Some(&a.identity)).unwrap(),
            CertSource::Issuer(IssuerSource { lifetime, .. }) if lifetime == Duration::from_secs(6)
        ));
        let err = parse(&["serve", "--trust-anchors", "ca", "--identity", ID])
            .unwrap_err()
            .render()
            .to_string();
        assert!(err.contains("tip: pass either"), "{err}");
    }
}
