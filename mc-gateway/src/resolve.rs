//! Target resolution: from a service name and port to one backend socket address.

use std::collections::HashMap;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use crate::route::Target;
use crate::{Error, Result};

/// A boxed future returned by [`Resolve::resolve`].
pub type ResolveFuture<'a> = Pin<Box<dyn Future<Output = Result<SocketAddr>> + Send + 'a>>;

/// Resolves a target service to one backend address, balancing across the ready ones.
///
/// Errors are [`Error::UnknownService`] (no such service or port) and [`Error::NoEndpoints`]
/// (the service exists but nothing is ready).
pub trait Resolve: Send + Sync + std::fmt::Debug + 'static {
    /// Picks a backend for `target`.
    fn resolve<'a>(&'a self, target: &'a Target) -> ResolveFuture<'a>;
}

/// A shared resolver.
pub type SharedResolver = Arc<dyn Resolve>;

/// Round-robin choice over a list.
#[derive(Debug, Default)]
pub struct RoundRobin(AtomicUsize);

impl RoundRobin {
    /// Picks the next element, `None` when the list is empty.
    pub fn pick<T: Copy>(&self, items: &[T]) -> Option<T> {
        if items.is_empty() {
            return None;
        }
        let i = self.0.fetch_add(1, Ordering::Relaxed) % items.len();
        items.get(i).copied()
    }
}

/// A fixed map from `name:port` to backend addresses, for development and tests.
#[derive(Debug, Default)]
pub struct StaticResolver {
    map: HashMap<Target, (Vec<SocketAddr>, RoundRobin)>,
}

impl StaticResolver {
    /// An empty map.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a backend for a target; repeated targets balance round robin.
    pub fn insert(&mut self, target: Target, addr: SocketAddr) {
        self.map.entry(target).or_default().0.push(addr);
    }

    /// Parses `name:port=ip:port` (the `--static` flag) and adds it.
    pub fn add_spec(&mut self, spec: &str) -> Result<()> {
        let bad = |why: String| Error::InvalidArg {
            flag: "--static",
            value: spec.to_owned(),
            why,
            fix: "name:port=ip:port, e.g. web.shop.svc.cluster.local:80=127.0.0.1:8080",
        };
        let (target, addr) = spec.split_once('=').ok_or_else(|| bad("no '='".into()))?;
        let target = Target::parse_authority(target, None).map_err(|e| bad(e.to_string()))?;
        let addr: SocketAddr = addr
            .parse()
            .map_err(|e: std::net::AddrParseError| bad(e.to_string()))?;
        self.insert(target, addr);
        Ok(())
    }
}

impl Resolve for StaticResolver {
    fn resolve<'a>(&'a self, target: &'a Target) -> ResolveFuture<'a> {
        Box::pin(async move {
            let (addrs, rr) = self.map.get(target).ok_or_else(|| Error::UnknownService {
                name: target.name.clone(),
                port: target.port,
                why: "not in the static map".into(),
            })?;
            rr.pick(addrs).ok_or_else(|| Error::NoEndpoints {
                name: target.name.clone(),
                port: target.port,
            })
        })
    }
}

/// The system resolver (`getaddrinfo` through tokio), for in-cluster deployment where
/// `<svc>.<ns>.svc.<domain>` resolves to the ClusterIP.
#[derive(Debug, Default)]
pub struct DnsResolver {
    rr: RoundRobin,
}

impl Resolve for DnsResolver {
    fn resolve<'a>(&'a self, target: &'a Target) -> ResolveFuture<'a> {
        Box::pin(async move {
            let addrs: Vec<SocketAddr> =
                tokio::net::lookup_host((target.name.as_str(), target.port))
                    .await
                    .map_err(|e| Error::UnknownService {
                        name: target.name.clone(),
                        port: target.port,
                        why: format!("DNS lookup failed: {e}"),
                    })?
                    .collect();
            self.rr.pick(&addrs).ok_or_else(|| Error::NoEndpoints {
                name: target.name.clone(),
                port: target.port,
            })
        })
    }
}

/// Tries resolvers in order: the first that knows the service answers.
#[derive(Debug)]
pub struct Chain(pub Vec<SharedResolver>);

impl Resolve for Chain {
    fn resolve<'a>(&'a self, target: &'a Target) -> ResolveFuture<'a> {
        Box::pin(async move {
            let mut last = Error::UnknownService {
                name: target.name.clone(),
                port: target.port,
                why: "no resolver configured".into(),
            };
            for r in &self.0 {
                match r.resolve(target).await {
                    Ok(addr) => return Ok(addr),
                    Err(e @ Error::UnknownService { .. }) => last = e,
                    Err(e) => return Err(e),
                }
            }
            Err(last)
        })
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;

    #[tokio::test]
    async fn static_map_round_robins_and_reports_unknown() {
        let mut s = StaticResolver::new();
        s.add_spec("web.ns.svc.cluster.local:80=127.0.0.1:8080")
            .unwrap();
        s.add_spec("web.ns.svc.cluster.local:80=127.0.0.1:8081")
            .unwrap();
        let t = Target::new("web.ns.svc.cluster.local", 80);
        let a = s.resolve(&t).await.unwrap();
        let b = s.resolve(&t).await.unwrap();
        let c = s.resolve(&t).await.unwrap();
        assert_ne!(a, b);
        assert_eq!(a, c);
        let err = s
            .resolve(&Target::new("web.ns.svc.cluster.local", 81))
            .await
            .unwrap_err();
        assert_eq!(err.reason(), "unknown_service");
        for bad in ["x", "a:80=notanaddr", "a=1.2.3.4:5", "a:80:1.2.3.4:5"] {
            assert!(s.add_spec(bad).is_err(), "{bad}");
        }
    }

    #[tokio::test]
    async fn dns_resolves_localhost_and_fails_on_unknown() {
        let d = DnsResolver::default();
        let addr = d.resolve(&Target::new("localhost", 8080)).await.unwrap();
        assert!(addr.ip().is_loopback());
        assert_eq!(addr.port(), 8080);
        let err = d
            .resolve(&Target::new("no-such-host.invalid", 80))
            .await
            .unwrap_err();
        assert_eq!(err.reason(), "unknown_service");
    }

    #[tokio::test]
    async fn chain_falls_through_unknown_only() {
        let mut a = StaticResolver::new();
        a.add_spec("a.svc.x:1=127.0.0.1:1").unwrap();
        let mut b = StaticResolver::new();
        b.add_spec("b.svc.x:1=127.0.0.1:2").unwrap();
        let chain = Chain(vec![Arc::new(a), Arc::new(b)]);
        assert_eq!(
            chain
                .resolve(&Target::new("b.svc.x", 1))
                .await
                .unwrap()
                .port(),
            2
        );
        assert!(chain.resolve(&Target::new("c.svc.x", 1)).await.is_err());
    }
}
