//! The testbed's LoadBalancer controller, in the role MetalLB or cloud-provider-kind plays on
//! other local clusters: every `type: LoadBalancer` Service without a `loadBalancerClass` gets the
//! lowest free address of its cluster's pool in `status.loadBalancer.ingress`. The testbed host
//! routes the pool to the cluster's node, where kube-proxy takes the traffic to the endpoints, so
//! the address is reachable from the other clusters' nodes and Pods.
//!
//! The controller is level-triggered: each pass lists the Services and writes only what differs.

use std::collections::BTreeSet;
use std::net::Ipv4Addr;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use k8s_openapi::api::core::v1::Service;
use kube::api::{Api, ListParams, Patch, PatchParams};

use crate::{Error, Result};

/// How often the controller looks at the Services.
const PERIOD: Duration = Duration::from_millis(500);

/// A Service as the controller sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Observed {
    /// `namespace/name`.
    pub(crate) key: String,
    /// `type: LoadBalancer` with no `loadBalancerClass`: this controller's to serve.
    pub(crate) ours: bool,
    /// The IPv4 addresses in `status.loadBalancer.ingress`.
    pub(crate) ingress: Vec<Ipv4Addr>,
}

/// What to write.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Decision {
    /// Give `key` this address.
    Assign { key: String, ip: Ipv4Addr },
    /// `key` is no longer a LoadBalancer: clear its address.
    Release { key: String },
}

/// The decisions for one pass over `services`, with addresses from `pool` (`a.b.c.1` to `.254`).
pub(crate) fn decide(services: &[Observed], pool: [u8; 3]) -> Vec<Decision> {
    let in_pool = |ip: &Ipv4Addr| ip.octets()[..3] == pool;
    let mut used: BTreeSet<Ipv4Addr> = services
        .iter()
        .filter(|s| s.ours)
        .flat_map(|s| s.ingress.iter().copied())
        .collect();
    let mut out = Vec::new();
    for s in services {
        if s.ours && s.ingress.is_empty() {
            let free = (1..=254)
                .map(|n| Ipv4Addr::new(pool[0], pool[1], pool[2], n))
                .find(|ip| !used.contains(ip));
            if let Some(ip) = free {
                used.insert(ip);
                out.push(Decision::Assign {
                    key: s.key.clone(),
                    ip,
                });
            }
        } else if !s.ours && s.ingress.iter().any(in_pool) {
            out.push(Decision::Release { key: s.key.clone() });
        }
    }
    out
}

/// Runs the controller for `context` in `kubeconfig` until `stop` is set.
pub fn run(kubeconfig: &Path, context: &str, pool: Ipv4Addr, stop: &AtomicBool) -> Result<()> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| Error::io("start", "the LoadBalancer controller's runtime", e))?;
    runtime.block_on(async {
        let client = crate::testbed::client_from(kubeconfig, context).await?;
        let api: Api<Service> = Api::all(client.clone());
        let octets = pool.octets();
        while !stop.load(Ordering::Relaxed) {
            if let Ok(list) = api.list(&ListParams::default()).await {
                let observed: Vec<Observed> = list.items.iter().map(observe).collect();
                for d in decide(&observed, [octets[0], octets[1], octets[2]]) {
                    // A failed write is retried on the next pass.
                    let _ = write(&client, &d).await;
                }
            }
            tokio::time::sleep(PERIOD).await;
        }
        Ok(())
    })
}

/// Runs the controller on a thread of its own; it stops when the returned flag is set.
pub(crate) fn spawn(kubeconfig: &Path, context: &str, pool: Ipv4Addr) -> Arc<AtomicBool> {
    let stop = Arc::new(AtomicBool::new(false));
    let (flag, path, ctx) = (stop.clone(), kubeconfig.to_path_buf(), context.to_string());
    let _ = std::thread::Builder::new()
        .name(format!("mc-testbed-lb-{context}"))
        .spawn(move || run(&path, &ctx, pool, &flag));
    stop
}

fn observe(svc: &Service) -> Observed {
    let spec = svc.spec.as_ref();
    let ours = spec.is_some_and(|s| {
        s.type_.as_deref() == Some("LoadBalancer") && s.load_balancer_class.is_none()
    });
    let ingress = svc
        .status
        .as_ref()
        .and_then(|s| s.load_balancer.as_ref())
        .and_then(|lb| lb.ingress.as_ref())
        .map(|ing| {
            ing.iter()
                .filter_map(|i| i.ip.as_deref()?.parse().ok())
                .collect()
        })
        .unwrap_or_default();
    Observed {
        key: format!(
            "{}/{}",
            svc.metadata.namespace.as_deref().unwrap_or_default(),
            svc.metadata.name.as_deref().unwrap_or_default()
        ),
        ours,
        ingress,
    }
}

async fn write(client: &kube::Client, decision: &Decision) -> Result<()> {
    let (key, ingress) = match decision {
        Decision::Assign { key, ip } => (
            key,
            serde_json::json!([{"ip": ip.to_string(), "ipMode": "VIP"}]),
        ),
        Decision::Release { key } => (key, serde_json::json!([])),
    };
    let (ns, name) = key.split_once('/').unwrap_or(("default", key));
    let api: Api<Service> = Api::namespaced(client.clone(), ns);
    let patch = serde_json::json!({"status": {"loadBalancer": {"ingress": ingress}}});
    api.patch_status(name, &PatchParams::default(), &Patch::Merge(&patch))
        .await
        .map(drop)
        .map_err(|e| Error::Client {
            context: key.clone(),
            source: Box::new(e),
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn svc(key: &str, ours: bool, ingress: &[Ipv4Addr]) -> Observed {
        Observed {
            key: key.into(),
            ours,
            ingress: ingress.to_vec(),
        }
    }

    const POOL: [u8; 3] = [198, 18, 16];

    #[test]
    fn a_new_load_balancer_gets_the_lowest_free_address() {
        let taken = Ipv4Addr::new(198, 18, 16, 1);
        let got = decide(
            &[
                svc("a/x", true, &[taken]),
                svc("a/y", true, &[]),
                svc("a/z", true, &[]),
            ],
            POOL,
        );
        assert_eq!(
            got,
            vec![
                Decision::Assign {
                    key: "a/y".into(),
                    ip: Ipv4Addr::new(198, 18, 16, 2)
                },
                Decision::Assign {
                    key: "a/z".into(),
                    ip: Ipv4Addr::new(198, 18, 16, 3)
                },
            ]
        );
    }

    #[test]
    fn a_served_service_is_left_alone_and_one_that_stopped_being_a_load_balancer_is_released() {
        let ip = Ipv4Addr::new(198, 18, 16, 7);
        assert!(decide(&[svc("a/x", true, &[ip])], POOL).is_empty());
        assert_eq!(
            decide(&[svc("a/x", false, &[ip])], POOL),
            vec![Decision::Release { key: "a/x".into() }]
        );
        // An address another controller gave, outside the pool, is not ours to clear.
        let foreign = Ipv4Addr::new(203, 0, 113, 9);
        assert!(decide(&[svc("a/x", false, &[foreign])], POOL).is_empty());
    }

    #[test]
    fn an_exhausted_pool_assigns_nothing() {
        let all: Vec<Observed> = (1..=254)
            .map(|n| svc(&format!("a/{n}"), true, &[Ipv4Addr::new(198, 18, 16, n)]))
            .collect();
        let mut services = all;
        services.push(svc("a/late", true, &[]));
        assert!(decide(&services, POOL).is_empty());
    }
}
