//! Source side, egress: balancing a federated route's connections over its members, with
//! failover.
//!
//! Each new client connection goes to one member, picked by smooth weighted round robin among
//! the members that are *eligible*: weight above 0, marked ready by the controller (their
//! Service has ready endpoints), and healthy here. A member is unhealthy from a failed connect
//! (passive: the connection moves on to the next member, so the client sees no error) or a
//! failed probe (active: a TCP connect to each member every [`PROBE_INTERVAL`]), until a probe
//! succeeds again. When no member is eligible, the unhealthy ones are tried too: a stale mark
//! must not refuse a client that could be served.
//!
//! The decisions (`order`) are pure and unit-tested; [`Federated`] carries them out.

use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use mc_core::egress::{Member, Route};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;

use crate::client::GatewayConnector;
use crate::tls::ReloadingClientConfig;
use crate::transport::route::Target;
use crate::{Error, Result};

/// How often every member is probed.
pub(crate) const PROBE_INTERVAL: Duration = Duration::from_secs(2);
/// How long a connect (probe or client connection) may take before the member counts as down.
pub(crate) const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);

/// A stream to a member: plain TCP (local) or mTLS through a gateway (remote).
pub(crate) trait Upstream: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Upstream for T {}

/// How a member is reached.
#[derive(Debug)]
enum Way {
    /// Plain TCP to the local Service's `ip:port`.
    Local(String),
    /// The remote service through its gateway.
    Remote {
        target: Target,
        connector: GatewayConnector,
    },
}

/// One member as served.
#[derive(Debug)]
struct Served {
    key: String,
    weight: u32,
    ready: bool,
    healthy: AtomicBool,
    way: Way,
}

/// The members of one federated route and the picker's state.
#[derive(Debug)]
pub(crate) struct Federated {
    members: Vec<Served>,
    /// Smooth weighted round robin: the running score of each member.
    scores: Mutex<Vec<i64>>,
}

/// The order in which to try members for one connection: first the pick of smooth weighted
/// round robin among the eligible (`weights[i] > 0 && usable[i]`), then the other eligible
/// ones by weight, then the members that have weight but are not usable (last resort).
/// Updates `scores`. Members of weight 0 are never tried.
fn order(weights: &[u32], usable: &[bool], scores: &mut [i64]) -> Vec<usize> {
    let eligible: Vec<usize> = (0..weights.len())
        .filter(|&i| weights[i] > 0 && usable[i])
        .collect();
    let total: i64 = eligible.iter().map(|&i| i64::from(weights[i])).sum();
    let mut out = Vec::with_capacity(weights.len());
    if let Some(&first) = eligible.first() {
        let mut best = first;
        for &i in &eligible {
            scores[i] += i64::from(weights[i]);
            if scores[i] > scores[best] {
                best = i;
            }
        }
        scores[best] -= total;
        out.push(best);
        let mut rest: Vec<usize> = eligible.into_iter().filter(|&i| i != best).collect();
        rest.sort_by_key(|&i| std::cmp::Reverse(weights[i]));
        out.extend(rest);
    }
    let mut fallback: Vec<usize> = (0..weights.len())
        .filter(|&i| weights[i] > 0 && !usable[i])
        .collect();
    fallback.sort_by_key(|&i| std::cmp::Reverse(weights[i]));
    out.extend(fallback);
    out
}

impl Federated {
    /// The members of federated `route`, connecting to remote ones with `tls`. Members that
    /// cannot be served (a target that is not `name:port`, an identity that is not a DNS name)
    /// are logged and left out.
    pub(crate) fn new(route: &Route, tls: &std::sync::Arc<ReloadingClientConfig>) -> Self {
        let members = route
            .members
            .iter()
            .filter_map(|(key, m)| match way(m, tls) {
                Ok(way) => Some(Served {
                    key: key.clone(),
                    weight: m.weight,
                    ready: m.ready,
                    healthy: AtomicBool::new(true),
                    way,
                }),
                Err(e) => {
                    tracing::warn!(route = %route.target, member = %key, error = %e, "federated member left out");
                    None
                }
            })
            .collect::<Vec<_>>();
        let scores = Mutex::new(vec![0; members.len()]);
        Self { members, scores }
    }

    /// Connects a new client connection to a member, trying the next one when a connect fails
    /// (and marking it unhealthy). Returns the member's key and the stream.
    pub(crate) async fn connect(&self) -> Result<(String, Box<dyn Upstream>)> {
        let order = {
            let weights: Vec<u32> = self.members.iter().map(|m| m.weight).collect();
            let usable: Vec<bool> = self
                .members
                .iter()
                .map(|m| m.ready && m.healthy.load(Ordering::Relaxed))
                .collect();
            let mut scores = match self.scores.lock() {
                Ok(g) => g,
                Err(p) => p.into_inner(),
            };
            order(&weights, &usable, &mut scores)
        };
        let mut errors = Vec::new();
        for i in order {
            let m = &self.members[i];
            match m.connect().await {
                Ok(up) => {
                    m.healthy.store(true, Ordering::Relaxed);
                    return Ok((m.key.clone(), up));
                }
                Err(e) => {
                    if m.healthy.swap(false, Ordering::Relaxed) {
                        tracing::warn!(member = %m.key, error = %e, "federated member failed; moving on");
                    }
                    errors.push(format!("{}: {e}", m.key));
                }
            }
        }
        Err(Error::GatewaysUnreachable {
            target: "every member of the federated route".into(),
            errors,
        })
    }

    /// Probes every member once (a TCP connect to its address) and records the result.
    pub(crate) async fn probe(&self) {
        for m in &self.members {
            let ok = m.probe().await;
            let was = m.healthy.swap(ok, Ordering::Relaxed);
            if was != ok {
                tracing::info!(member = %m.key, healthy = ok, "federated member health changed");
            }
        }
    }

    /// `(member, healthy)` of every member, for metrics.
    pub(crate) fn health(&self) -> Vec<(String, bool)> {
        self.members
            .iter()
            .map(|m| (m.key.clone(), m.healthy.load(Ordering::Relaxed)))
            .collect()
    }
}

fn way(m: &Member, tls: &std::sync::Arc<ReloadingClientConfig>) -> Result<Way> {
    if m.is_local() {
        return Ok(Way::Local(m.target.clone()));
    }
    Ok(Way::Remote {
        target: Target::parse_authority(&m.target, None)?,
        connector: GatewayConnector::reloading(tls.clone(), m.gateways.clone(), &m.identity)?
            .with_connect_timeout(CONNECT_TIMEOUT),
    })
}

impl Served {
    async fn connect(&self) -> Result<Box<dyn Upstream>> {
        match &self.way {
            Way::Local(addr) => Ok(Box::new(tcp(addr).await?)),
            Way::Remote { target, connector } => {
                // TCP, TLS and the header: a gateway that hangs mid-handshake fails over too.
                let within = 2 * CONNECT_TIMEOUT;
                let tls = tokio::time::timeout(within, connector.connect(target, None))
                    .await
                    .map_err(|_| Error::Timeout {
                        what: "connecting to a federated member through its gateway",
                        after: within,
                    })??;
                Ok(Box::new(tls))
            }
        }
    }

    async fn probe(&self) -> bool {
        match &self.way {
            Way::Local(addr) => tcp(addr).await.is_ok(),
            Way::Remote { connector, .. } => {
                for g in connector.gateways() {
                    if tcp(g).await.is_ok() {
                        return true;
                    }
                }
                false
            }
        }
    }
}

/// A TCP connection to `addr` within [`CONNECT_TIMEOUT`].
async fn tcp(addr: &str) -> Result<TcpStream> {
    let connect = TcpStream::connect(addr);
    let tcp = tokio::time::timeout(CONNECT_TIMEOUT, connect)
        .await
        .map_err(|_| Error::Timeout {
            what: "connecting to a federated member",
            after: CONNECT_TIMEOUT,
        })?
        .map_err(|source| Error::Connect {
            addr: addr.to_owned(),
            what: "federated member",
            source,
        })?;
    let _ = tcp.set_nodelay(true);
    Ok(tcp)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn picks(weights: &[u32], usable: &[bool], n: usize) -> Vec<usize> {
        let mut scores = vec![0; weights.len()];
        (0..n)
            .map(|_| order(weights, usable, &mut scores)[0])
            .collect()
    }

    #[test]
    fn equal_weights_alternate_and_weights_set_the_shares() {
        assert_eq!(picks(&[1, 1], &[true, true], 4), [0, 1, 0, 1]);
        let p = picks(&[50, 50], &[true, true], 200);
        assert_eq!(p.iter().filter(|&&i| i == 0).count(), 100);
        let p = picks(&[1, 3], &[true, true], 400);
        assert_eq!(p.iter().filter(|&&i| i == 1).count(), 300);
        // Weight 0 is never picked, not even as a fallback.
        let p = picks(&[0, 100], &[true, true], 50);
        assert!(p.iter().all(|&i| i == 1));
        let mut scores = vec![0, 0];
        assert_eq!(order(&[0, 100], &[true, false], &mut scores), [1]);
        assert!(order(&[0, 0], &[true, true], &mut scores).is_empty());
    }

    #[test]
    fn unusable_members_get_no_first_pick_but_remain_a_last_resort() {
        let p = picks(&[1, 1, 1], &[true, false, true], 6);
        assert!(p.iter().all(|&i| i != 1), "{p:?}");
        let mut scores = vec![0; 3];
        let o = order(&[1, 5, 2], &[true, false, true], &mut scores);
        assert_eq!(o.len(), 3);
        assert_eq!(o[2], 1, "the unusable member comes last: {o:?}");
        // Nothing usable: everything with weight, heaviest first.
        let o = order(&[1, 5, 2], &[false, false, false], &mut scores);
        assert_eq!(o, [1, 2, 0]);
    }

    fn local_member(addr: &str, weight: u32, ready: bool) -> Member {
        Member {
            target: addr.into(),
            gateways: vec![],
            identity: String::new(),
            weight,
            ready,
        }
    }

    fn tls() -> std::sync::Arc<ReloadingClientConfig> {
        let dir = tempfile::tempdir().unwrap();
        let (c, k, a) = (
            dir.path().join("c"),
            dir.path().join("k"),
            dir.path().join("a"),
        );
        let (cert, key) = crate::tls::tests::self_signed_as("egress.example", false);
        std::fs::write(&c, cert).unwrap();
        std::fs::write(&k, key).unwrap();
        std::fs::write(&a, crate::tls::tests::self_signed_as("ca.example", true).0).unwrap();
        ReloadingClientConfig::load(&c, &k, &a).unwrap()
    }

    fn route(members: &[(&str, Member)]) -> Route {
        Route {
            listen: 20000,
            link: mc_core::egress::FEDERATED_OWNER.into(),
            target: "web-federated.shop.svc.cluster.local:80".into(),
            gateways: vec![],
            identity: String::new(),
            members: members
                .iter()
                .map(|(k, m)| ((*k).to_owned(), m.clone()))
                .collect(),
        }
    }

    /// A port on loopback where nothing listens.
    fn dead_port() -> String {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = l.local_addr().unwrap();
        drop(l);
        addr.to_string()
    }

    #[tokio::test]
    async fn a_dead_member_fails_over_without_a_client_error_and_recovers_by_probe() {
        let live = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let live_addr = live.local_addr().unwrap().to_string();
        tokio::spawn(async move {
            loop {
                let _ = live.accept().await;
            }
        });
        let dead = dead_port();
        let f = Federated::new(
            &route(&[
                ("a", local_member(&dead, 1, true)),
                ("b", local_member(&live_addr, 1, true)),
                ("c", local_member(&live_addr, 1, false)),
            ]),
            &tls(),
        );
        // Every connection lands on b: a fails over to b, c is not ready.
        for _ in 0..4 {
            let (key, _) = f.connect().await.unwrap();
            assert_eq!(key, "b");
        }
        assert_eq!(f.health()[0], ("a".into(), false));
        // A probe keeps a down while it is dead, and brings it back once it listens.
        f.probe().await;
        assert!(!f.health()[0].1);
        let revived =
            std::net::TcpListener::bind(dead.parse::<std::net::SocketAddr>().unwrap()).unwrap();
        f.probe().await;
        assert!(f.health()[0].1);
        let mut keys = Vec::new();
        for _ in 0..4 {
            keys.push(f.connect().await.unwrap().0);
        }
        assert!(
            keys.contains(&"a".to_owned()) && keys.contains(&"b".to_owned()),
            "{keys:?}"
        );
        drop(revived);
    }

    #[tokio::test]
    async fn no_reachable_member_is_an_error_naming_each() {
        let f = Federated::new(
            &route(&[("a", local_member(&dead_port(), 1, true))]),
            &tls(),
        );
        let err = f.connect().await.err().unwrap().to_string();
        assert!(err.contains("a:"), "{err}");
    }
}
