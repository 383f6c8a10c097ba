//! `mc-core`: the pure model of mc, multicluster service mirroring for Kubernetes.
//!
//! Everything here is computation on data: no I/O, no async runtime, no API client, no clock
//! reads (callers pass `now`). The service-mirror controller, the gateway, the CLI and the Python
//! module all call into this crate, so they agree on every name, label and byte on the wire.

pub mod egress;
mod error;
pub mod httproute;
pub mod identity;
pub mod labels;
pub mod lease;
pub mod link;
pub mod mirror;
pub mod naming;
pub mod pki;
pub mod policy;
/// Manifest rendering for the `mc` CLI, the Helm-chart test and Python.
pub mod render;
pub mod selector;
pub mod transport;
pub mod trust;

pub use error::Error;

/// The crate's result type.
pub type Result<T, E = Error> = std::result::Result<T, E>;
