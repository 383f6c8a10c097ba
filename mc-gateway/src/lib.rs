//! `mc-gateway`: the mTLS gateway of a target cluster, and the client side that reaches it.
//!
//! The gateway ([`Gateway`]) accepts TLS 1.3 connections whose client certificate chains to
//! the trust anchors, takes the client identity from the certificate's first SAN DNS name (or,
//! without one, its SPIFFE ID URI SAN), and routes:
//!
//! - ALPN `transport.l5d.io/v1`: the transport header names the target `name:port`; with a
//!   session protocol the gateway forwards HTTP requests, without one it splices bytes;
//! - ALPN `h2`, `http/1.1` or none: HTTP routed by `Host` / `:authority`.
//!
//! rustls (through tokio-rustls) does all TLS record work for the life of every connection:
//! the handshake, decryption, encryption, key updates, alerts and close_notify. The gateway
//! never sees a traffic secret: its server configuration enables no secret extraction and
//! logs no keys. kTLS is not used.
//!
//! Targets must end in an allowed suffix ([`Suffixes`], `svc.<cluster-domain>`), pass the
//! allow-list ([`Policy`], [`PolicySource`]: reloaded when its file changes; a denied HTTP
//! request gets `403` with the rule to add, a denied opaque stream `close_notify` and a close),
//! and resolve through a [`resolve::Resolve`]. HTTP requests get `Forwarded` and
//! `l5d-client-id`; loops are refused; one hop-by-hop and forwarded-header policy applies to
//! every HTTP path. An HTTP/2 request that a Linkerd proxy upgraded from HTTP/1.x
//! (`l5d-orig-proto`) goes to the target as HTTP/1.x. The admin server answers plain HTTP/1,
//! and mTLS probes (HTTP/1.1 or HTTP/2) from meshed controllers. [`client::GatewayConnector`]
//! and [`client::Forwarder`] are the source-cluster side.
//!
//! The egress (`mc-gateway egress`, [`egress`]) is the source-cluster side for unmeshed Pods:
//! one plain TCP port per route of the route table the mirror controllers write (ConfigMap
//! `mc-egress-routes`, watched through the Kubernetes API), each connection carried opaquely
//! over mTLS, as the egress identity, to the route's remote gateway (its addresses tried in
//! order). Routes are added, removed and changed without restart; certificates and trust
//! anchors are reloaded from disk.
//!
//! Both the gateway and the egress take their own leaf certificate from files (file mode,
//! renewed on disk by someone else) or mint it in memory from an issuer (issuer mode: short
//! leaves, 24 h by default, renewed after 2/3 of their lifetime or when the issuer changes,
//! never outliving the issuer); see [`CertSource`]. Both export the leaf's expiry and renewals.
//!
//! # Layout
//!
//! This file is the crate's whole public API; every module is private. The gateway's modules
//! follow the path of a connection (docs/architecture.md, "mc-gateway's modules"):
//!
//! 1. `accept`: serving threads, the accept loop and per-connection dispatch; `tls`: the
//!    handshake and client admission (certificates, trust anchors, identities);
//! 2. `transport`: the transport header, the target and its allowed suffixes, resolvers;
//! 3. `policy`: the allow-list;
//! 4. `http`: hyper and the lean HTTP/1 forwarder, upgrades, upstream connections, and
//!    `http::headers`, the one hop-by-hop and forwarded-header policy (where to add a header
//!    the gateway forwards);
//! 5. `opaque`: the splice of a stream without a session protocol;
//! 6. `admin`: `/ready`, `/live`, `/metrics`; `metrics`: what they export.
//!
//! The source side is `client` (one connection to a gateway) and `egress` (the egress and its
//! federated balancing); `stream` holds the plumbing every stage shares.

mod accept;
mod admin;
mod backend;
pub mod client;
#[cfg(feature = "kubernetes")]
pub mod egress;
mod error;
mod http;
mod metrics;
mod opaque;
mod policy;
mod stream;
mod tls;
mod transport;

pub use accept::slice::current as current_slice;
pub use accept::{Gateway, Limits, ServerConfig, request_slice};
pub use error::Error;
pub use metrics::{CertMetrics, Metrics};
pub use policy::{Policy, PolicySource};
pub use tls::{
    CertSource, IssuerSource, ReloadingCert, ReloadingClientConfig, identity_of, load_certified_key,
};
pub use transport::route::{Suffixes, Target};

/// The crate's result type.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// How the gateway resolves a target to a backend address: the trait, and the resolvers the
/// `mc-gateway` binary chains and balances.
pub mod resolve {
    #[cfg(feature = "kubernetes")]
    pub use crate::transport::kubernetes::KubeResolver;
    pub use crate::transport::resolve::{
        Balance, Balancer, Chain, DnsResolver, InFlight, InFlightGuard, Resolve, ResolveFuture,
        SharedResolver, StaticResolver,
    };
}

/// Which backends the gateway dials with mTLS as its own identity, like a meshed client
/// ([`ServerConfig::backend_identities`]): the trait, a fixed map, and the watch on the Pods a
/// Linkerd control plane meshes that the `mc-gateway` binary uses with `--kubernetes`.
pub mod mesh {
    #[cfg(feature = "kubernetes")]
    pub use crate::backend::kubernetes::KubeIdentities;
    pub use crate::backend::{BackendIdentities, StaticIdentities};
}

/// The entry points of the fuzz targets in `fuzz/`: the lean HTTP/1 forwarder's framing,
/// driven over a whole byte stream without sockets. Only with the `fuzzing` feature; not a
/// stable API.
#[cfg(feature = "fuzzing")]
pub mod fuzzing {
    pub use crate::http::h1::fuzzing::{
        BodyKind, CLIENT_ID, Event, FORWARDED, TARGET_HOST, requests, responses,
    };
}
