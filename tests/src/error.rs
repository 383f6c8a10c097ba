//! The one error type of the testbed.

use std::path::PathBuf;

/// Everything that can go wrong while starting, using or stopping a testbed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A Kubernetes binary the testbed runs (or a file setup fetches) is not where setup puts it.
    #[error(
        "{name} not found at {path}: run `make setup` (scripts/setup builds it into $MC_CACHE), or set {env} to its path"
    )]
    MissingBinary {
        /// The binary, e.g. `kube-apiserver`.
        name: &'static str,
        /// Where it was looked for.
        path: PathBuf,
        /// The environment variable that overrides the path.
        env: &'static str,
    },
    /// No image archive is where `scripts/build-images` writes them.
    #[error(
        "the image archive {0} is missing: run `make setup` (scripts/build-images builds the images nodes run; `scripts/build-images mc` rebuilds mc's own)"
    )]
    MissingImages(PathBuf),
    /// A file-system or process operation failed.
    #[error("could not {action} {what}: {source}")]
    Io {
        /// What was being done, e.g. `write`.
        action: &'static str,
        /// What it was done to, usually a path.
        what: String,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// A process exited while the testbed waited for it to become ready.
    #[error("{what} exited before it was ready ({status}); last lines of {log}:\n{tail}")]
    EarlyExit {
        /// The process, e.g. `kube-apiserver east`.
        what: String,
        /// How it exited.
        status: String,
        /// Its log file.
        log: PathBuf,
        /// The end of its log.
        tail: String,
    },
    /// A process did not become ready in time.
    #[error("{what} was not ready after {seconds}s; last lines of {log}:\n{tail}")]
    NotReady {
        /// The process.
        what: String,
        /// How long the testbed waited.
        seconds: u64,
        /// Its log file.
        log: PathBuf,
        /// The end of its log.
        tail: String,
    },
    /// Certificate generation failed.
    #[error("could not generate testbed certificates: {0}")]
    Cert(#[from] rcgen::Error),
    /// A cluster name was asked for that the testbed does not run.
    #[error("the testbed has no cluster {name:?}; it runs {known}")]
    UnknownCluster {
        /// The name asked for.
        name: String,
        /// The clusters it does run, comma-separated.
        known: String,
    },
    /// A cluster name is not usable as a kubeconfig context and etcd prefix.
    #[error("invalid cluster name {0:?}: use a DNS-1123 label (lowercase letters, digits and '-')")]
    InvalidClusterName(String),
    /// Serialising or reading a kubeconfig or pids file failed.
    #[error("{what}: {detail}")]
    Format {
        /// The file or document.
        what: String,
        /// What is wrong with it.
        detail: String,
    },
    /// Building a Kubernetes client from the testbed's kubeconfig failed.
    #[error("could not build a client for context {context:?}: {source}")]
    Client {
        /// The kubeconfig context.
        context: String,
        /// The underlying error.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// A test-host address is not assigned here: the test runs outside the test network.
    #[error(
        "{addr} is not an address of this network namespace: run the test under scripts/in-netns (`make test` does), which assigns the test-host addresses"
    )]
    NoTestNetwork {
        /// The address that is missing.
        addr: String,
    },
    /// Setting up the test network or a node failed.
    #[error("could not {what}: {detail}")]
    Network {
        /// What was being done, e.g. `ip link add mcbr0 type bridge`.
        what: String,
        /// What went wrong and, where known, the fix.
        detail: String,
    },
    /// A node or cluster add-on did not reach the state a test needs in time.
    #[error("{what} was not ready after {seconds}s: {detail}")]
    Timeout {
        /// What was awaited, e.g. `node east-node`.
        what: String,
        /// How long the testbed waited.
        seconds: u64,
        /// The last state seen.
        detail: String,
    },
    /// The shared testbed of this test process failed to start earlier.
    #[error("the shared testbed failed to start: {0}")]
    Shared(String),
}

impl Error {
    /// An [`Error::Io`] for `action` on `what`.
    pub fn io(action: &'static str, what: impl std::fmt::Display, source: std::io::Error) -> Error {
        Error::Io {
            action,
            what: what.to_string(),
            source,
        }
    }
}
