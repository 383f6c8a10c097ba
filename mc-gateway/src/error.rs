//! The one error type of `mc-gateway`, shared by every stage of a connection.

use std::path::PathBuf;

/// Everything that can go wrong in the gateway and its client. Each variant says what failed,
/// why, and how to fix it.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A file named on the command line could not be read.
    #[error("cannot read {what} file {}: {source}; fix: check the path given to {flag} and its permissions", path.display())]
    ReadFile {
        /// What the file holds ("certificate", "private key", ...).
        what: &'static str,
        /// The flag that named it.
        flag: &'static str,
        /// The path.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// A PEM file holds no usable item of the expected kind.
    #[error("{what} file {}: {why}; fix: {fix}", path.display())]
    Pem {
        /// What the file should hold.
        what: &'static str,
        /// The path.
        path: PathBuf,
        /// What is wrong.
        why: String,
        /// How to fix it.
        fix: &'static str,
    },
    /// The issuer (intermediate CA) of issuer mode could not be read, or could not sign a leaf
    /// certificate (e.g. it has expired, or its key does not belong to it).
    #[error("issuer {} (key {}): {source}", cert.display(), key.display())]
    Issuer {
        /// The issuer certificate file (`--issuer-cert`).
        cert: PathBuf,
        /// The issuer key file (`--issuer-key`).
        key: PathBuf,
        /// The mc-core error, which says what is wrong and how to fix it.
        #[source]
        source: Box<mc_core::Error>,
    },
    /// The trust-anchor bundle is invalid.
    #[error("trust anchors file {}: {source}", path.display())]
    TrustBundle {
        /// The path.
        path: PathBuf,
        /// The mc-core error, which says what is wrong and how to fix it.
        #[source]
        source: Box<mc_core::Error>,
    },
    /// The TLS configuration could not be built.
    #[error(
        "TLS configuration: {0}; fix: use an ECDSA P-256 key and certificate chained to the trust anchors"
    )]
    Tls(#[from] rustls::Error),
    /// The client verifier could not be built from the anchors.
    #[error(
        "client certificate verifier: {0}; fix: the trust anchors file must hold CA certificates"
    )]
    Verifier(#[from] rustls::server::VerifierBuilderError),
    /// A socket could not be bound.
    #[error("cannot listen on {addr}: {source}; fix: choose a free address for {flag}")]
    Bind {
        /// The address.
        addr: std::net::SocketAddr,
        /// The flag that set it.
        flag: &'static str,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// A command-line or configuration value is invalid.
    #[error("invalid {flag} value {value:?}: {why}; fix: {fix}")]
    InvalidArg {
        /// The flag or config field.
        flag: &'static str,
        /// The rejected value.
        value: String,
        /// What is wrong.
        why: String,
        /// The expected form.
        fix: &'static str,
    },
    /// A TLS record on an opaque stream the gateway protects itself was invalid, or keys for
    /// it could not be set up.
    #[error(
        "TLS record on the opaque stream: {why}; the connection is closed (fix: the client must send valid TLS 1.3 records; reconnect)"
    )]
    Record {
        /// The TLS alert description sent to the client (0: none beyond close_notify).
        alert: u8,
        /// What is wrong.
        why: String,
    },
    /// The policy file could not be parsed.
    #[error("policy file {} is not a valid policy: {source}; fix: write YAML of the form `rules: [{{services: [<glob>], clients: [<glob>]}}]` (values `gateway.policy.rules`)", path.display())]
    Policy {
        /// The path.
        path: PathBuf,
        /// The YAML error.
        #[source]
        source: serde_yaml::Error,
    },
    /// The policy file is empty.
    #[error("policy file {} is empty; fix: write `rules: []` for a policy without rules, or the rules (values `gateway.policy.rules`)", path.display())]
    PolicyEmpty {
        /// The path.
        path: PathBuf,
    },
    /// A policy rule cannot mean what its author wanted.
    #[error("policy file {}: rule {rule} (counting from 0): {why}; fix: give every rule at least one service pattern, and write every pattern as a host name or identity glob (`*` matches everything)", path.display())]
    PolicyRule {
        /// The path.
        path: PathBuf,
        /// The rule's index.
        rule: usize,
        /// What is wrong.
        why: &'static str,
    },
    /// The egress routes file is not a ConfigMap `data` map.
    #[error("routes file {}: {source}; fix: write the ConfigMap's data as a YAML or JSON map of string keys to route JSON strings", path.display())]
    RoutesFile {
        /// The path.
        path: PathBuf,
        /// The YAML error.
        #[source]
        source: serde_yaml::Error,
    },
    /// The target name is not under an allowed suffix.
    #[error(
        "target {name:?} is not under an allowed suffix {allowed:?}; fix: address a service as <svc>.<ns>.svc.<cluster-domain>, or add the suffix with --allow-suffix"
    )]
    SuffixNotAllowed {
        /// The target host name.
        name: String,
        /// The allowed suffixes.
        allowed: Vec<String>,
    },
    /// The target authority is missing or malformed.
    #[error(
        "target authority {authority:?} is invalid: {why}; fix: send host:port, e.g. web.shop.svc.cluster.local:80"
    )]
    BadAuthority {
        /// The authority found.
        authority: String,
        /// What is wrong.
        why: &'static str,
    },
    /// No resolver knows the target service.
    #[error(
        "unknown service {name}:{port}: {why}; fix: check that the Service exists in the gateway's cluster (or pass --static {name}:{port}=ip:port)"
    )]
    UnknownService {
        /// The target host name.
        name: String,
        /// The target port.
        port: u16,
        /// What the resolver found.
        why: String,
    },
    /// The target service has no ready endpoints.
    #[error(
        "service {name}:{port} has no ready endpoints; fix: check the Service's pods are ready"
    )]
    NoEndpoints {
        /// The target host name.
        name: String,
        /// The target port.
        port: u16,
    },
    /// Policy refuses the client identity for the target.
    #[error(
        "client {client:?} is not allowed to reach {target}: the gateway policy's rules for services {rule:?} do not list it; fix: add the rule {{services: [{service:?}], clients: [{client:?}]}} to the policy (values `gateway.policy.rules`), or the client to an existing rule's clients",
        service = host_of(.target)
    )]
    Forbidden {
        /// The client identity.
        client: String,
        /// The target (`name:port`).
        target: String,
        /// The first `services` pattern that governs the target.
        rule: String,
    },
    /// The request already passed through this gateway.
    #[error("gateway loop: {why}; fix: a client must not reach a gateway through the same gateway")]
    Loop {
        /// Why it is a loop.
        why: String,
    },
    /// The transport header was invalid.
    #[error("transport header: {0}")]
    Header(#[source] Box<mc_core::Error>),
    /// A peer did not complete a step in time.
    #[error("timed out after {after:?} waiting for {what}; fix: the peer is too slow or idle")]
    Timeout {
        /// What was awaited.
        what: &'static str,
        /// The limit.
        after: std::time::Duration,
    },
    /// mTLS to a meshed backend failed: its proxy did not complete the handshake, or its
    /// certificate does not chain to the trust anchors or does not name the expected identity.
    #[error(
        "mTLS to the meshed backend {addr} (identity {identity}) failed: {source}; fix: the gateway and the backend's mesh must share the trust anchors (--trust-anchors), and the backend's proxy must present that identity; or start the gateway with --backend-mtls=off"
    )]
    BackendTls {
        /// The backend address.
        addr: std::net::SocketAddr,
        /// The identity it had to present.
        identity: String,
        /// The handshake error.
        #[source]
        source: std::io::Error,
    },
    /// The peer's certificate has no DNS name to use as identity.
    #[error(
        "peer certificate has no DNS subject alternative name; fix: issue the certificate with the identity as a SAN DNS name"
    )]
    NoPeerIdentity,
    /// The gateway presented an identity other than the expected one.
    #[error(
        "gateway presented identity {found:?}, expected {expected:?}; fix: pass the gateway's identity (remote-gateway-identity) to --gateway-identity"
    )]
    WrongGatewayIdentity {
        /// The expected identity.
        expected: String,
        /// What was presented.
        found: String,
    },
    /// Connecting to an upstream failed.
    #[error("cannot connect to {addr} ({what}): {source}; fix: check the address is reachable")]
    Connect {
        /// The address.
        addr: String,
        /// What it is.
        what: &'static str,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// No address of a gateway could be connected to (egress and client side).
    #[error(
        "cannot reach {target} through any gateway address ({}); fix: check that the remote gateway is up and reachable, and that the Link lists its current addresses",
        if errors.is_empty() { "none given".to_owned() } else { errors.join("; ") }
    )]
    GatewaysUnreachable {
        /// The target authority.
        target: String,
        /// Each address tried, with its error.
        errors: Vec<String>,
    },
    /// The Kubernetes API could not be used.
    #[error("Kubernetes API: {what}: {source}; fix: {fix}")]
    Kube {
        /// What was being done.
        what: &'static str,
        /// The kube-rs error.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
        /// How to fix it.
        fix: &'static str,
    },
    /// An HTTP/1 message could not be framed by the lean HTTP/1 forwarder.
    #[error(
        "malformed HTTP/1 {what} from the {peer}: {why}; fix: the {peer} must send HTTP/1.1 as RFC 9112 frames it"
    )]
    Http1 {
        /// Who sent it ("client" or "target").
        peer: &'static str,
        /// What was being read ("response head", "chunked body", ...).
        what: &'static str,
        /// What is wrong.
        why: &'static str,
    },
    /// Another I/O failure.
    #[error("{what}: {source}")]
    Io {
        /// What was being done.
        what: &'static str,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
}

/// The host name of a `name:port` target.
fn host_of(target: &str) -> &str {
    target.rsplit_once(':').map_or(target, |(host, _)| host)
}

impl From<mc_core::Error> for Error {
    fn from(e: mc_core::Error) -> Self {
        Error::Header(Box::new(e))
    }
}

impl Error {
    /// The short, stable reason label used in metrics for this error.
    pub fn reason(&self) -> &'static str {
        match self {
            Error::SuffixNotAllowed { .. } | Error::BadAuthority { .. } => "bad_target",
            Error::UnknownService { .. } => "unknown_service",
            Error::NoEndpoints { .. } => "no_endpoints",
            Error::Forbidden { .. } => "forbidden",
            Error::Loop { .. } => "loop",
            Error::Header(_) => "bad_header",
            Error::Timeout { .. } => "timeout",
            Error::NoPeerIdentity => "no_identity",
            Error::Connect { .. } | Error::GatewaysUnreachable { .. } => "connect",
            Error::BackendTls { .. } => "backend_tls",
            Error::Record { .. } => "tls_record",
            Error::Io {
                what: "reading the transport header",
                ..
            } => "truncated_header",
            _ => "other",
        }
    }
}
