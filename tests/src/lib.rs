//! `mc-tests`: a real two-cluster Kubernetes testbed, and the home of mc's cross-crate end-to-end
//! tests.
//!
//! Each cluster is a real `kube-apiserver` (built from the pinned Kubernetes module by
//! `scripts/setup`) over one shared real `etcd`, separated by `--etcd-prefix`. Authentication is
//! by client certificates from a per-testbed CA and by ServiceAccount tokens; authorization is
//! Node and RBAC. With [`Topology::Nodes`] ([`Testbed::start_with_nodes`], [`shared_with_nodes`])
//! each cluster also gets a node that runs Pods (kubelet, containerd, kube-proxy) in a network
//! namespace of its own, kube-controller-manager, kube-scheduler, CoreDNS and a LoadBalancer
//! controller. [`Topology::ApiOnly`] ([`Testbed::start_api_only`], [`shared_api_only`]) is API
//! servers only, for tests of pure API behaviour; those write Endpoints themselves.
//!
//! ```no_run
//! # fn main() -> Result<(), mc_tests::Error> {
//! let bed = mc_tests::Testbed::start_api_only(&["east", "west"])?;
//! let out = bed.kubectl("east").args(["get", "ns"]).output().map_err(|e| mc_tests::Error::io("run", "kubectl", e))?;
//! assert!(out.status.success());
//! # Ok(()) }
//! ```

mod addons;
mod bins;
pub mod capture;
mod certs;
mod cgroup;
pub mod demo;
pub mod egress;
mod error;
mod kubeconfig;
pub mod lb;
mod net;
pub mod network;
mod node;
mod ports;
mod process;
mod testbed;

pub use addons::{CLIENT_IMAGE, COREDNS_IMAGE, PODINFO_IMAGE};
pub use bins::{Binaries, NodeBinaries, cache_dir, httproute_crd, mc_image_archive};
pub use error::Error;
pub use net::{TEST_HOSTS, test_host};
pub use node::{Node, PAUSE_IMAGE};
pub use process::{Lifetime, Proc, pid_alive};
pub use testbed::{Cluster, Testbed, Topology, shared_api_only, shared_with_nodes};

/// The crate's result type.
pub type Result<T, E = Error> = std::result::Result<T, E>;
