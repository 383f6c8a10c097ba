//! `mc-gateway`: the mTLS gateway of a target cluster, and the client side that reaches it.
//!
//! The gateway ([`server::Gateway`]) accepts TLS 1.3 connections whose client certificate
//! chains to the trust anchors, takes the client identity from the certificate's first SAN DNS
//! name (or, without one, its SPIFFE ID URI SAN), and routes:
//!
//! - ALPN `transport.l5d.io/v1`: the transport header names the target `name:port`; with a
//!   session protocol the gateway forwards HTTP requests, without one it splices bytes
//!   ([`io::splice_tcp`]);
//! - ALPN `h2`, `http/1.1` or none: HTTP routed by `Host` / `:authority`.
//!
//! rustls (through tokio-rustls) does all TLS record work for the life of every connection:
//! the handshake, decryption, encryption, key updates, alerts and close_notify. The gateway
//! never sees a traffic secret: its server configuration enables no secret extraction and
//! logs no keys. kTLS is not used.
//!
//! Targets must end in an allowed suffix (`svc.<cluster-domain>`), pass the allow-list
//! ([`policy`]: reloaded when its file changes; a denied HTTP request gets `403` with the rule
//! to add, a denied opaque stream `close_notify` and a close), and resolve through a [`resolve::Resolve`]. HTTP requests get `Forwarded` and
//! `l5d-client-id`; loops are refused; one hop-by-hop policy (`hop.rs`) applies to every HTTP
//! path. An HTTP/2 request that a Linkerd proxy upgraded from HTTP/1.x (`l5d-orig-proto`) goes
//! to the target as HTTP/1.x. The admin server ([`admin`]) answers plain HTTP/1, and mTLS
//! probes (HTTP/1.1 or HTTP/2) from meshed controllers. [`client::GatewayConnector`] and
//! [`client::Forwarder`] are the source-cluster side.
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
//! never outliving the issuer); see [`tls`]. Both export the leaf's expiry and renewals
//! ([`metrics::CertMetrics`]).

pub mod admin;
mod balance;
pub mod client;
#[cfg(feature = "kubernetes")]
pub mod egress;
mod error;
pub mod h1;
mod hop;
pub mod http;
pub mod io;
#[cfg(feature = "kubernetes")]
pub mod kubernetes;
pub mod metrics;
pub mod policy;
pub mod resolve;
pub mod route;
pub mod server;
pub mod slice;
pub mod tls;
mod upgrade;
pub mod upstream;

pub use error::Error;

/// The crate's result type.
pub type Result<T, E = Error> = std::result::Result<T, E>;
