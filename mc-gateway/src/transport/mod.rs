//! Transport header and routing, stage 2 of a connection: after the TLS handshake, what the
//! client asks for and where it goes.
//!
//! - [`header`]: the `transport.l5d.io/v1` header a client sends first (read within a time
//!   limit; the bytes read past it go to the next stage);
//! - [`route`]: the target it names (or that HTTP's `Host` names) and the allowed suffixes;
//! - [`resolve`]: a target to a backend address (static, DNS, chained, balanced), and
//!   [`kubernetes`] the resolver that reads Services and EndpointSlices.
//!
//! Which client may reach the target is the next stage, `crate::policy`.

pub(crate) mod header;
#[cfg(feature = "kubernetes")]
pub(crate) mod kubernetes;
pub(crate) mod resolve;
pub(crate) mod route;
