//! The one error type of `mc-cli`, with its exit code.

/// Everything that can make an `mc` command fail. Each variant names the input and the fix.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// Bad input: a flag, a file or an object the command needs (exit code 2).
    #[error("{what}: {problem}; fix: {fix}")]
    Input {
        /// The input, e.g. `--cluster-name` or `gateway Service linkerd-multicluster/linkerd-gateway`.
        what: String,
        /// What is wrong.
        problem: String,
        /// What to do.
        fix: String,
    },
    /// The model rejected an input (exit code 2).
    #[error(transparent)]
    Core(#[from] mc_core::Error),
    /// A file could not be read (exit code 2).
    #[error("cannot read {path}: {source}; fix: check the path and its permissions")]
    Read {
        /// The path.
        path: String,
        /// The I/O error.
        source: std::io::Error,
    },
    /// A file or stdout could not be written (exit code 1).
    #[error("cannot write {path}: {source}; fix: check the path, free space and permissions")]
    Write {
        /// The path, or `stdout`.
        path: String,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The kubeconfig or context cannot be used (exit code 2).
    #[error("kubeconfig{context}: {reason}; fix: pass --kubeconfig and --context that exist (see `kubectl config get-contexts`)",
        context = context.as_deref().map(|c| format!(" context {c:?}")).unwrap_or_default())]
    Kubeconfig {
        /// The context asked for, if any.
        context: Option<String>,
        /// What went wrong.
        reason: String,
    },
    /// A Kubernetes API call failed (exit code 1).
    #[error(
        "{action}: {source}; fix: check that the API server is reachable and that you may do this (kubectl auth can-i)"
    )]
    Api {
        /// What was being done, e.g. `list Links in linkerd-multicluster (context west)`.
        action: String,
        /// The client error.
        source: kube::Error,
    },
    /// A command refused to act (exit code 1), e.g. uninstall while Links exist.
    #[error("{0}")]
    Refused(String),
    /// `check` found problems (exit code 1); the report was already printed.
    #[error("{0} check(s) failed")]
    Unhealthy(usize),
}

impl Error {
    /// The process exit code: 2 for bad input, 1 for everything else.
    pub fn exit_code(&self) -> i32 {
        match self {
            Error::Input { .. }
            | Error::Core(_)
            | Error::Read { .. }
            | Error::Kubeconfig { .. } => 2,
            _ => 1,
        }
    }

    /// A bad-input error.
    pub fn input(
        what: impl Into<String>,
        problem: impl Into<String>,
        fix: impl Into<String>,
    ) -> Error {
        Error::Input {
            what: what.into(),
            problem: problem.into(),
            fix: fix.into(),
        }
    }

    /// An API error with what was being done.
    pub fn api(action: impl Into<String>, source: kube::Error) -> Error {
        Error::Api {
            action: action.into(),
            source,
        }
    }
}

/// The crate's result type.
pub type Result<T, E = Error> = std::result::Result<T, E>;
