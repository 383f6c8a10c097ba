//! The one error type of `mc-mirror`.

use mc_core::link::TargetFailure;

/// Everything that can go wrong in the service mirror. Each variant says what failed, why, and how
/// to fix it.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The local (source-cluster) kubeconfig or in-cluster configuration cannot be loaded.
    #[error(
        "local cluster configuration ({source_name}): {reason}; fix: pass --kubeconfig <file> \
         (or set KUBECONFIG), or run inside a pod with a ServiceAccount"
    )]
    LocalConfig {
        /// Where the configuration came from, e.g. `--kubeconfig /etc/kube.yaml`.
        source_name: String,
        /// What the loader reported.
        reason: String,
    },
    /// The credentials Secret of a Link is missing or does not hold a usable kubeconfig.
    #[error("Link {link}: credentials Secret {namespace}/{secret}: {reason}; fix: {fix}")]
    Credentials {
        /// The Link name.
        link: String,
        /// The Secret's namespace (the Links' namespace).
        namespace: String,
        /// The Secret named by `spec.clusterCredentialsSecret`.
        secret: String,
        /// What is wrong.
        reason: String,
        /// What to do.
        fix: &'static str,
    },
    /// The target cluster's API server cannot be reached or refuses the credentials.
    #[error(
        "Link {link}: target cluster API server {server}: {reason}; fix: check that the address \
         in the credentials Secret is reachable from this controller and that its token is valid \
         (regenerate it with `mc multicluster link` if it was revoked)"
    )]
    TargetUnreachable {
        /// The Link name.
        link: String,
        /// The server URL of the remote kubeconfig.
        server: String,
        /// What the client reported.
        reason: String,
    },
    /// A Kubernetes API call failed.
    #[error("{action}: {source}; fix: {fix}")]
    Api {
        /// What was being done, e.g. `create Service shop/web-east in the source cluster`.
        action: String,
        /// The client error.
        source: kube::Error,
        /// What to do (RBAC, connectivity, …).
        fix: &'static str,
    },
    /// The admin server cannot listen on its address.
    #[error("--admin-addr {addr}: cannot listen: {source}; fix: choose a free address:port")]
    AdminBind {
        /// The address asked for.
        addr: String,
        /// The socket error.
        source: std::io::Error,
    },
    /// A command-line flag has an unusable value.
    #[error("{flag} {value:?}: {problem}; fix: {fix}")]
    Flag {
        /// The flag, e.g. `--identity`.
        flag: &'static str,
        /// The value given.
        value: String,
        /// What is wrong.
        problem: String,
        /// What to do.
        fix: &'static str,
    },
    /// The model (mc-core) rejected an input.
    #[error(transparent)]
    Core(#[from] mc_core::Error),
}

impl Error {
    /// Wraps a client error of `action`, with advice chosen from the error itself.
    pub fn api(action: impl Into<String>, source: kube::Error) -> Error {
        let fix = match &source {
            kube::Error::Api(s) if s.code == 403 => {
                "grant the controller's identity the permissions listed in docs/mirror.md (RBAC)"
            }
            kube::Error::Api(s) if s.code == 401 => {
                "the credentials were rejected: renew the token or certificate"
            }
            kube::Error::Api(s) if s.code == 409 => {
                "the object changed meanwhile; it is retried from the fresh state"
            }
            kube::Error::Api(_) => "see the API server's message",
            _ => "check that the API server is reachable; the call is retried with backoff",
        };
        Error::Api {
            action: action.into(),
            source,
            fix,
        }
    }

    /// The reason of the Link's `TargetReachable=False` condition for this error, which kept
    /// the worker from watching the target cluster.
    pub fn target_failure(&self) -> TargetFailure {
        match self {
            Error::Credentials { reason, .. } if reason == crate::remote::MISSING => {
                TargetFailure::MissingCredentials
            }
            Error::Credentials { .. } => TargetFailure::InvalidCredentials,
            Error::Api { source, .. } if is_status(source, 401) => {
                TargetFailure::InvalidCredentials
            }
            Error::Api { source, .. } if is_status(source, 403) => TargetFailure::Forbidden,
            _ => TargetFailure::TargetUnreachable,
        }
    }

    /// A short, stable reason for the `mirror_errors_total{reason}` metric.
    pub fn reason(&self) -> &'static str {
        match self {
            Error::LocalConfig { .. } => "local_config",
            Error::Credentials { .. } => "credentials",
            Error::TargetUnreachable { .. } => "target_unreachable",
            Error::Api { source, .. } => match source {
                kube::Error::Api(s) if s.code == 409 => "conflict",
                kube::Error::Api(s) if s.code == 403 => "forbidden",
                kube::Error::Api(s) if s.code == 401 => "unauthorized",
                kube::Error::Api(s) if s.code == 404 => "not_found",
                kube::Error::Api(s) if s.code == 422 => "invalid",
                kube::Error::Api(_) => "api",
                _ => "connection",
            },
            Error::AdminBind { .. } => "admin_bind",
            Error::Flag { .. } => "flag",
            Error::Core(_) => "model",
        }
    }
}

/// `true` when `e` is an API error with HTTP status `code`.
pub(crate) fn is_status(e: &kube::Error, code: u16) -> bool {
    matches!(e, kube::Error::Api(s) if s.code == code)
}
