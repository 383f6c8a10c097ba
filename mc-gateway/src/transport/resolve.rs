//! Target resolution (stage 2, routing): from a service name and port to one backend socket
//! address.

use std::collections::HashMap;
use std::collections::hash_map::Entry;
use std::future::Future;
use std::hash::{BuildHasher, RandomState};
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use crate::transport::route::Target;
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

    /// Counts one connection or request in flight to `addr` (picked by this resolver) until
    /// the guard drops, for resolvers that balance by load ([`Balance::P2c`]). The default
    /// counts nothing.
    fn track(&self, addr: SocketAddr) -> Option<InFlightGuard> {
        let _ = addr;
        None
    }
}

/// How a resolver chooses among the ready endpoints of a target (the `--balance` flag).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Balance {
    /// Each endpoint in turn.
    #[default]
    RoundRobin,
    /// Power of two choices: two distinct endpoints at random, the one with fewer
    /// connections and requests in flight through this gateway.
    P2c,
}

impl std::str::FromStr for Balance {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self> {
        match s {
            "round-robin" => Ok(Self::RoundRobin),
            "p2c" => Ok(Self::P2c),
            other => Err(Error::InvalidArg {
                flag: "--balance",
                value: other.to_owned(),
                why: "unknown balancing mode".into(),
                fix: "round-robin or p2c",
            }),
        }
    }
}

/// Connections and requests in flight per backend address.
///
/// An address has an entry only while something is in flight to it, so the map is bounded by
/// the work in flight (itself bounded by the connection limit), whatever the endpoint churn.
#[derive(Debug, Default)]
pub struct InFlight {
    map: Mutex<HashMap<SocketAddr, usize>>,
}

impl InFlight {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<SocketAddr, usize>> {
        match self.map.lock() {
            Ok(m) => m,
            Err(p) => p.into_inner(),
        }
    }

    /// Counts one unit of work on `addr` until the returned guard drops.
    pub fn start(self: &Arc<Self>, addr: SocketAddr) -> InFlightGuard {
        *self.lock().entry(addr).or_insert(0) += 1;
        InFlightGuard {
            owner: self.clone(),
            addr,
        }
    }

    /// Work in flight to `addr`.
    pub fn get(&self, addr: SocketAddr) -> usize {
        self.lock().get(&addr).copied().unwrap_or(0)
    }

    /// Addresses with work in flight (the size of the map).
    pub fn tracked(&self) -> usize {
        self.lock().len()
    }
}

/// One unit of work in flight (see [`InFlight::start`]); dropping it ends the work.
#[derive(Debug)]
pub struct InFlightGuard {
    owner: Arc<InFlight>,
    addr: SocketAddr,
}

impl Drop for InFlightGuard {
    fn drop(&mut self) {
        if let Entry::Occupied(mut e) = self.owner.lock().entry(self.addr) {
            if *e.get() <= 1 {
                e.remove();
            } else {
                *e.get_mut() -= 1;
            }
        }
    }
}

/// Chooses endpoints by a [`Balance`]: round robin per target, or power of two choices over
/// a shared [`InFlight`].
#[derive(Debug)]
pub struct Balancer {
    balance: Balance,
    load: Arc<InFlight>,
    rng: AtomicU64,
}

impl Default for Balancer {
    fn default() -> Self {
        Self::new(Balance::RoundRobin, Arc::default())
    }
}

impl Balancer {
    /// A balancer; with [`Balance::P2c`], `load` is what [`Resolve::track`] counts into.
    pub fn new(balance: Balance, load: Arc<InFlight>) -> Self {
        Self {
            balance,
            load,
            rng: AtomicU64::new(RandomState::new().hash_one(0x6d63_6777_u64)),
        }
    }

    /// The balancing mode.
    pub fn balance(&self) -> Balance {
        self.balance
    }

    /// A pseudo-random number (splitmix64 over an atomic counter).
    fn next_random(&self) -> u64 {
        let mut z = self
            .rng
            .fetch_add(0x9e37_79b9_7f4a_7c15, Ordering::Relaxed)
            .wrapping_add(0x9e37_79b9_7f4a_7c15);
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Picks one of `addrs` (`None` when empty); `rr` is the target's round-robin state.
    pub(crate) fn pick(&self, addrs: &[SocketAddr], rr: &RoundRobin) -> Option<SocketAddr> {
        match (self.balance, addrs.len()) {
            (_, 0) => None,
            (Balance::RoundRobin, _) | (Balance::P2c, 1) => rr.pick(addrs),
            (Balance::P2c, n) => {
                let r = self.next_random();
                // Two distinct indices: i uniform, j uniform over the others.
                let i = (r % n as u64) as usize;
                let mut j = ((r >> 32) % (n as u64 - 1)) as usize;
                if j >= i {
                    j += 1;
                }
                let (a, b) = (*addrs.get(i)?, *addrs.get(j)?);
                Some(if self.load.get(b) < self.load.get(a) {
                    b
                } else {
                    a
                })
            }
        }
    }

    /// [`Resolve::track`] for resolvers built on this balancer.
    pub fn track(&self, addr: SocketAddr) -> Option<InFlightGuard> {
        (self.balance == Balance::P2c).then(|| self.load.start(addr))
    }
}

/// A shared resolver.
pub type SharedResolver = Arc<dyn Resolve>;

/// Round-robin choice over a list.
#[derive(Debug, Default)]
pub(crate) struct RoundRobin(AtomicUsize);

impl RoundRobin {
    /// Picks the next element, `None` when the list is empty.
    pub(crate) fn pick<T: Copy>(&self, items: &[T]) -> Option<T> {
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
    balancer: Balancer,
}

impl StaticResolver {
    /// An empty map.
    pub fn new() -> Self {
        Self::default()
    }

    /// Balances repeated targets with `balancer` instead of round robin.
    pub fn with_balancer(mut self, balancer: Balancer) -> Self {
        self.balancer = balancer;
        self
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
            self.balancer
                .pick(addrs, rr)
                .ok_or_else(|| Error::NoEndpoints {
                    name: target.name.clone(),
                    port: target.port,
                })
        })
    }

    fn track(&self, addr: SocketAddr) -> Option<InFlightGuard> {
        self.balancer.track(addr)
    }
}

/// The system resolver (`getaddrinfo` through tokio), for in-cluster deployment where
/// `<svc>.<ns>.svc.<domain>` resolves to the ClusterIP.
///
/// It dials the requested port. For a per-Pod name (`<host>.<svc>.<ns>.svc.<domain>`, which
/// resolves to the Pod's address, not a ClusterIP) that is the Service port, right only when it
/// equals the targetPort: DNS cannot map one to the other, the Kubernetes resolver does.
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
            let mut last = None;
            for r in &self.0 {
                match r.resolve(target).await {
                    Ok(addr) => return Ok(addr),
                    Err(e @ Error::UnknownService { .. }) => last = Some(e),
                    Err(e) => return Err(e),
                }
            }
            Err(last.unwrap_or_else(|| Error::UnknownService {
                name: target.name.clone(),
                port: target.port,
                why: "no resolver configured".into(),
            }))
        })
    }

    fn track(&self, addr: SocketAddr) -> Option<InFlightGuard> {
        self.0.iter().find_map(|r| r.track(addr))
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

    fn addrs(n: u16) -> Vec<SocketAddr> {
        (1..=n)
            .map(|p| SocketAddr::from(([127, 0, 0, 1], p)))
            .collect()
    }

    #[test]
    fn p2c_with_two_endpoints_always_takes_the_less_loaded() {
        let load = Arc::new(InFlight::default());
        let b = Balancer::new(Balance::P2c, load.clone());
        let rr = RoundRobin::default();
        let a = addrs(2);
        let busy = b.track(a[0]).unwrap();
        for _ in 0..100 {
            assert_eq!(b.pick(&a, &rr), Some(a[1]));
        }
        // Load moves: now the other one is busier.
        let _g1 = b.track(a[1]).unwrap();
        let _g2 = b.track(a[1]).unwrap();
        for _ in 0..100 {
            assert_eq!(b.pick(&a, &rr), Some(a[0]));
        }
        drop(busy);
        assert_eq!(load.get(a[0]), 0);
        assert_eq!(load.get(a[1]), 2);
    }

    #[test]
    fn p2c_prefers_idle_endpoints_and_never_picks_the_busiest() {
        let load = Arc::new(InFlight::default());
        let b = Balancer::new(Balance::P2c, load.clone());
        let rr = RoundRobin::default();
        let a = addrs(4);
        // a[0] is the busiest; a[1], a[2] carry some work; a[3] is idle.
        let mut guards = Vec::new();
        for (addr, n) in [(a[0], 9), (a[1], 3), (a[2], 3)] {
            for _ in 0..n {
                guards.push(load.start(addr));
            }
        }
        let mut counts = HashMap::new();
        for _ in 0..3000 {
            *counts.entry(b.pick(&a, &rr).unwrap()).or_insert(0) += 1;
        }
        // The busiest only wins against nobody: never picked. The idle one wins every pair it
        // is drawn in: half of all pairs (3 of 6), so about 1,500 of 3,000.
        assert_eq!(counts.get(&a[0]), None, "{counts:?}");
        let idle = counts[&a[3]];
        assert!((1200..=1800).contains(&idle), "{counts:?}");
        // Round robin, for contrast, ignores the load.
        let plain = Balancer::new(Balance::RoundRobin, load.clone());
        assert!(plain.track(a[0]).is_none());
        let picks: Vec<_> = (0..4).map(|_| plain.pick(&a, &rr).unwrap()).collect();
        assert!(picks.contains(&a[0]));
    }

    #[test]
    fn in_flight_entries_exist_only_while_work_is_in_flight() {
        let load = Arc::new(InFlight::default());
        let guards: Vec<_> = addrs(1000).into_iter().map(|a| load.start(a)).collect();
        assert_eq!(load.tracked(), 1000);
        drop(guards);
        assert_eq!(load.tracked(), 0);
    }

    #[test]
    fn balance_parses_the_flag_values() {
        assert_eq!("p2c".parse::<Balance>().unwrap(), Balance::P2c);
        assert_eq!(
            "round-robin".parse::<Balance>().unwrap(),
            Balance::RoundRobin
        );
        let err = "random".parse::<Balance>().unwrap_err().to_string();
        assert!(err.contains("--balance") && err.contains("p2c"), "{err}");
    }

    #[tokio::test]
    async fn static_map_balances_by_load_with_p2c_through_a_chain() {
        let load = Arc::new(InFlight::default());
        let mut s = StaticResolver::new().with_balancer(Balancer::new(Balance::P2c, load));
        s.add_spec("web.ns.svc.cluster.local:80=127.0.0.1:8080")
            .unwrap();
        s.add_spec("web.ns.svc.cluster.local:80=127.0.0.1:8081")
            .unwrap();
        let chain = Chain(vec![Arc::new(s)]);
        let t = Target::new("web.ns.svc.cluster.local", 80);
        let first = chain.resolve(&t).await.unwrap();
        let _held = chain.track(first).unwrap();
        for _ in 0..20 {
            assert_ne!(chain.resolve(&t).await.unwrap(), first);
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
