//! The test network of a testbed with nodes.
//!
//! Every address comes from 198.18.0.0/15, the range RFC 2544 reserves for benchmarking networks,
//! and every interface lives inside the sealed network namespace `scripts/in-netns` creates, so no
//! packet can leave the machine. One testbed claims one *slot* (a bridge, `mcbr<slot>`) in that
//! namespace; within it:
//!
//! | what | address |
//! |---|---|
//! | the bridge, where API servers and controllers listen (the "host") | `198.18.<32·slot>.1/24` |
//! | node of cluster `i` | `198.18.<32·slot>.<10+i>` |
//! | Pods of cluster `i` | `198.18.<32·slot+8+i>.0/24` |
//! | LoadBalancer addresses of cluster `i` | `198.18.<32·slot+16+i>.0/24` |
//! | Services of cluster `i` (any slot) | `198.19.<64·(i mod 4)>.0/18` |
//!
//! The host routes each cluster's Pod and LoadBalancer ranges to that cluster's node, so the
//! clusters reach each other only through the bridge, as two clusters reach each other through a
//! network; kube-proxy on the node does the rest.

use std::net::Ipv4Addr;
use std::process::Command;

use crate::{Error, Result};

/// How many testbeds with nodes may run at once in one network namespace.
pub const SLOTS: u8 = 8;
/// How many clusters one testbed with nodes may run.
pub const MAX_CLUSTERS: usize = 8;

/// The addresses of one slot.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Plan {
    slot: u8,
}

impl Plan {
    /// The plan of `slot` (0 to [`SLOTS`] − 1).
    pub fn new(slot: u8) -> Plan {
        Plan { slot: slot % SLOTS }
    }

    /// The slot number.
    pub fn slot(&self) -> u8 {
        self.slot
    }

    fn base(&self) -> u8 {
        self.slot * 32
    }

    /// The bridge's interface name.
    pub fn bridge(&self) -> String {
        format!("mcbr{}", self.slot)
    }

    /// The host's address on the bridge: API servers, controllers and tests reach nodes from it.
    pub fn host(&self) -> Ipv4Addr {
        Ipv4Addr::new(198, 18, self.base(), 1)
    }

    /// The node of cluster `index`.
    pub fn node(&self, index: usize) -> Ipv4Addr {
        Ipv4Addr::new(198, 18, self.base(), 10 + cluster_byte(index))
    }

    /// The Pod range of cluster `index`'s node, as a CIDR.
    pub fn pod_cidr(&self, index: usize) -> String {
        format!("198.18.{}.0/24", self.base() + 8 + cluster_byte(index))
    }

    /// The LoadBalancer address range of cluster `index`, as a CIDR.
    pub fn lb_cidr(&self, index: usize) -> String {
        format!("198.18.{}.0/24", self.base() + 16 + cluster_byte(index))
    }

    /// LoadBalancer address `n` (1 to 254) of cluster `index`.
    pub fn lb_address(&self, index: usize, n: u8) -> Ipv4Addr {
        Ipv4Addr::new(198, 18, self.base() + 16 + cluster_byte(index), n)
    }

    /// The host-side name of cluster `index`'s veth pair.
    pub fn veth(&self, index: usize) -> String {
        format!("mc{}n{}", self.slot, cluster_byte(index))
    }
}

fn cluster_byte(index: usize) -> u8 {
    u8::try_from(index % MAX_CLUSTERS).unwrap_or(0)
}

/// The Service range of cluster `index`: a /18, room for the 10,000-Service benchmarks.
pub fn service_cidr(index: usize) -> String {
    format!("198.19.{}.0/18", 64 * (index % 4))
}

/// The ClusterIP of cluster `index`'s DNS Service (`kube-system/kube-dns`).
pub fn cluster_dns(index: usize) -> Ipv4Addr {
    Ipv4Addr::new(198, 19, u8::try_from(64 * (index % 4)).unwrap_or(0), 10)
}

/// The ClusterIP of cluster `index`'s `default/kubernetes` Service.
pub fn kubernetes_service(index: usize) -> Ipv4Addr {
    Ipv4Addr::new(198, 19, u8::try_from(64 * (index % 4)).unwrap_or(0), 1)
}

/// A claimed slot: its bridge exists in this network namespace until the claim is dropped.
#[derive(Debug)]
pub struct Bridge {
    plan: Plan,
}

impl Bridge {
    /// Claims the first free slot by creating its bridge (creation is atomic: a bridge that
    /// exists belongs to another testbed), with the host address on it and forwarding on.
    /// Bridges whose owner process is gone are reclaimed.
    pub fn claim() -> Result<Bridge> {
        require_sealed()?;
        for slot in 0..SLOTS {
            let plan = Plan::new(slot);
            let name = plan.bridge();
            if !ip(&["link", "add", &name, "type", "bridge"])? {
                if owner_alive(&name) {
                    continue;
                }
                let _ = ip(&["link", "del", &name]);
                if !ip(&["link", "add", &name, "type", "bridge"])? {
                    continue;
                }
            }
            let bridge = Bridge { plan };
            let alias = format!("mc-testbed {}", std::process::id());
            ip_ok(&["link", "set", &name, "alias", &alias])?;
            ip_ok(&["addr", "add", &format!("{}/24", plan.host()), "dev", &name])?;
            ip_ok(&["link", "set", &name, "up"])?;
            sysctl("/proc/sys/net/ipv4/ip_forward", "1")?;
            return Ok(bridge);
        }
        Err(Error::Network {
            what: "claim a testbed bridge".into(),
            detail: format!(
                "all {SLOTS} slots (mcbr0..mcbr{}) are in use in this network namespace; stop a testbed",
                SLOTS - 1
            ),
        })
    }

    /// The slot's addresses.
    pub fn plan(&self) -> Plan {
        self.plan
    }

    /// Leaves the bridge in place for a testbed that outlives this process: `owner` (a process of
    /// that testbed) now holds the claim, and once it is gone the slot is free again.
    pub fn hand_over(self, owner: u32) -> Result<()> {
        let alias = format!("mc-testbed {owner}");
        ip_ok(&["link", "set", &self.plan.bridge(), "alias", &alias])?;
        std::mem::forget(self);
        Ok(())
    }

    /// Routes cluster `index`'s Pod and LoadBalancer ranges to its node.
    pub fn route_cluster(&self, index: usize) -> Result<()> {
        let via = self.plan.node(index).to_string();
        for cidr in [self.plan.pod_cidr(index), self.plan.lb_cidr(index)] {
            ip_ok(&["route", "replace", &cidr, "via", &via])?;
        }
        Ok(())
    }
}

impl Drop for Bridge {
    fn drop(&mut self) {
        let _ = ip(&["link", "del", &self.plan.bridge()]);
    }
}

/// Deletes the bridges whose owner is gone.
pub(crate) fn remove_stale_bridges() {
    for slot in 0..SLOTS {
        let name = Plan::new(slot).bridge();
        if std::path::Path::new("/sys/class/net").join(&name).exists() && !owner_alive(&name) {
            let _ = ip(&["link", "del", &name]);
        }
    }
}

/// Node networking needs root inside the sealed namespace of `scripts/in-netns`.
pub(crate) fn require_sealed() -> Result<()> {
    let sealed = std::env::var_os("MC_IN_NETNS").is_some_and(|v| v == "1");
    // SAFETY: geteuid has no preconditions and no memory effects.
    #[allow(unsafe_code)]
    let root = unsafe { libc::geteuid() } == 0;
    if sealed && root {
        Ok(())
    } else {
        Err(Error::Network {
            what: "start a testbed with nodes".into(),
            detail: "nodes need root inside the sealed network namespace: run the command under \
                     `scripts/in-netns` as root (make test and make demo do)"
                .into(),
        })
    }
}

fn owner_alive(bridge: &str) -> bool {
    let path = format!("/sys/class/net/{bridge}/ifalias");
    std::fs::read_to_string(path)
        .ok()
        .and_then(|a| a.trim().strip_prefix("mc-testbed ")?.parse::<u32>().ok())
        .is_some_and(crate::process::pid_alive)
}

/// Runs `ip ARGS`; Ok(false) if it ran and failed.
pub(crate) fn ip(args: &[&str]) -> Result<bool> {
    let out = Command::new("ip")
        .args(args)
        .output()
        .map_err(|e| Error::io("run", "ip (apt-get install iproute2)", e))?;
    Ok(out.status.success())
}

/// Runs `ip ARGS` and fails with its error output if it fails.
pub(crate) fn ip_ok(args: &[&str]) -> Result<()> {
    run_ok(
        Command::new("ip").args(args),
        &format!("ip {}", args.join(" ")),
    )
}

/// Runs `cmd`, failing with its error output if it fails.
pub(crate) fn run_ok(cmd: &mut Command, what: &str) -> Result<()> {
    let out = cmd.output().map_err(|e| Error::io("run", what, e))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(Error::Network {
            what: what.to_string(),
            detail: String::from_utf8_lossy(&out.stderr).trim().to_string(),
        })
    }
}

fn sysctl(path: &str, value: &str) -> Result<()> {
    std::fs::write(path, value).map_err(|e| Error::io("write", path, e))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn in_benchmark_range(addr: Ipv4Addr) -> bool {
        let [a, b, ..] = addr.octets();
        a == 198 && (b == 18 || b == 19)
    }

    fn cidr_base(cidr: &str) -> Ipv4Addr {
        cidr.split('/').next().unwrap().parse().unwrap()
    }

    #[test]
    fn every_address_of_every_slot_is_in_the_benchmarking_range_and_distinct() {
        let mut seen = std::collections::BTreeSet::new();
        for slot in 0..SLOTS {
            let plan = Plan::new(slot);
            assert!(in_benchmark_range(plan.host()));
            assert!(seen.insert(plan.host()), "{slot}");
            for i in 0..MAX_CLUSTERS {
                for addr in [
                    plan.node(i),
                    cidr_base(&plan.pod_cidr(i)),
                    cidr_base(&plan.lb_cidr(i)),
                ] {
                    assert!(in_benchmark_range(addr), "{addr}");
                    assert!(seen.insert(addr), "{addr} used twice");
                }
            }
        }
    }

    #[test]
    fn service_ranges_are_benchmark_addresses_distinct_per_cluster() {
        assert_eq!(service_cidr(0), "198.19.0.0/18");
        assert_eq!(service_cidr(1), "198.19.64.0/18");
        assert_ne!(service_cidr(2), service_cidr(3));
        assert_eq!(cluster_dns(1), Ipv4Addr::new(198, 19, 64, 10));
        assert_eq!(kubernetes_service(0), Ipv4Addr::new(198, 19, 0, 1));
        assert!(in_benchmark_range(cidr_base(&service_cidr(3))));
    }

    #[test]
    fn interface_names_fit_the_kernel_limit() {
        let plan = Plan::new(7);
        assert!(plan.bridge().len() <= 15);
        assert!(plan.veth(7).len() <= 15);
    }
}
