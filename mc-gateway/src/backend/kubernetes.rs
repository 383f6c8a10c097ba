//! Which backends are meshed, from the cluster: a watch on the Pods that the gateway's own
//! Linkerd control plane meshes (label `linkerd.io/control-plane-ns=<ns>`), indexed by Pod IP.
//! Only what the decision needs is kept per Pod, not the Pod object.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::core::v1::Pod;
use kube::Api;
use kube::runtime::{WatchStreamExt, watcher};
use tokio::sync::watch;

use crate::backend::mesh::{
    BackendIdentities, CONTROL_PLANE_NS_LABEL, Mesh, MeshedPod, PodFacts, SKIP_INBOUND_PORTS,
};
use crate::{Error, Result};

/// The meshed Pods of this cluster, by IP.
pub struct KubeIdentities {
    pods: Arc<RwLock<Index>>,
    task: tokio::task::JoinHandle<()>,
}

/// Pod IP to the Pod (namespace/name) and its mesh facts.
type Index = HashMap<IpAddr, (Arc<str>, MeshedPod)>;

impl std::fmt::Debug for KubeIdentities {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KubeIdentities")
            .field("pods", &read(&self.pods).len())
            .finish_non_exhaustive()
    }
}

impl Drop for KubeIdentities {
    fn drop(&mut self) {
        self.task.abort();
    }
}

fn read(pods: &RwLock<Index>) -> std::sync::RwLockReadGuard<'_, Index> {
    match pods.read() {
        Ok(g) => g,
        Err(p) => p.into_inner(),
    }
}

fn write(pods: &RwLock<Index>) -> std::sync::RwLockWriteGuard<'_, Index> {
    match pods.write() {
        Ok(g) => g,
        Err(p) => p.into_inner(),
    }
}

impl KubeIdentities {
    /// Watches the Pods meshed by the control plane in `control_plane_namespace` (trust domain
    /// `trust_domain`) in every namespace, and waits up to `sync_timeout` for the first list.
    pub async fn start(
        client: kube::Client,
        control_plane_namespace: &str,
        trust_domain: &str,
        sync_timeout: Duration,
    ) -> Result<Self> {
        let mesh = Mesh {
            control_plane_namespace: control_plane_namespace.to_owned(),
            trust_domain: trust_domain.to_owned(),
        };
        let config = watcher::Config::default().labels(&format!(
            "{CONTROL_PLANE_NS_LABEL}={control_plane_namespace}"
        ));
        let stream = watcher(Api::<Pod>::all(client), config).default_backoff();
        let pods = Arc::new(RwLock::new(Index::new()));
        let (synced_tx, mut synced) = watch::channel(false);
        let task = tokio::spawn(follow(stream, mesh, pods.clone(), synced_tx));
        tokio::time::timeout(sync_timeout, synced.wait_for(|s| *s))
            .await
            .map_err(|_| Error::Timeout {
                what: "the first list of meshed Pods (check RBAC: list/watch pods)",
                after: sync_timeout,
            })?
            .map_err(|_| Error::Timeout {
                what: "the first list of meshed Pods (the watch ended)",
                after: sync_timeout,
            })?;
        Ok(Self { pods, task })
    }
}

impl BackendIdentities for KubeIdentities {
    fn identity(&self, addr: SocketAddr) -> Option<Arc<str>> {
        read(&self.pods)
            .get(&addr.ip())
            .and_then(|(_, pod)| pod.identity_on(addr.port()))
    }
}

/// Applies the watch events to the index until the stream ends.
async fn follow<S>(stream: S, mesh: Mesh, pods: Arc<RwLock<Index>>, synced: watch::Sender<bool>)
where
    S: futures::Stream<Item = std::result::Result<watcher::Event<Pod>, watcher::Error>>,
{
    let mut stream = std::pin::pin!(stream);
    let mut building = Index::new();
    while let Some(event) = stream.next().await {
        match event {
            Ok(watcher::Event::Init) => building.clear(),
            Ok(watcher::Event::InitApply(pod)) => apply(&mut building, &mesh, &pod),
            Ok(watcher::Event::InitDone) => {
                *write(&pods) = std::mem::take(&mut building);
                synced.send_replace(true);
            }
            Ok(watcher::Event::Apply(pod)) => apply(&mut write(&pods), &mesh, &pod),
            Ok(watcher::Event::Delete(pod)) => remove(&mut write(&pods), &key(&pod)),
            Err(e) => tracing::warn!(error = %e, "meshed Pods: watch error; retrying with backoff"),
        }
    }
}

/// `namespace/name` of a Pod.
fn key(pod: &Pod) -> String {
    format!(
        "{}/{}",
        pod.metadata.namespace.as_deref().unwrap_or_default(),
        pod.metadata.name.as_deref().unwrap_or_default()
    )
}

/// Drops every address of the Pod `key`.
fn remove(index: &mut Index, key: &str) {
    index.retain(|_, (k, _)| &**k != key);
}

/// Records the Pod's addresses, or drops them once it has finished (its IPs may be reused).
fn apply(index: &mut Index, mesh: &Mesh, pod: &Pod) {
    let key = key(pod);
    remove(index, &key);
    let status = pod.status.as_ref();
    let finished = matches!(
        status.and_then(|s| s.phase.as_deref()),
        Some("Succeeded" | "Failed")
    );
    let labels = pod.metadata.labels.as_ref();
    let annotations = pod.metadata.annotations.as_ref();
    let facts = PodFacts {
        namespace: pod.metadata.namespace.as_deref().unwrap_or_default(),
        service_account: pod
            .spec
            .as_ref()
            .and_then(|s| s.service_account_name.as_deref()),
        control_plane: labels
            .and_then(|l| l.get(CONTROL_PLANE_NS_LABEL))
            .map(String::as_str),
        skip_inbound_ports: annotations
            .and_then(|a| a.get(SKIP_INBOUND_PORTS))
            .map(String::as_str),
    };
    let (Some(meshed), false) = (mesh.pod(&facts), finished) else {
        return;
    };
    if pod.spec.as_ref().and_then(|s| s.host_network) == Some(true) {
        return; // the node's address: not this Pod's alone
    }
    let key: Arc<str> = key.into();
    let ips = status
        .and_then(|s| s.pod_ips.as_ref())
        .into_iter()
        .flatten();
    for ip in ips.filter_map(|ip| ip.ip.parse::<IpAddr>().ok()) {
        index.insert(ip, (key.clone(), meshed.clone()));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pod(name: &str, ip: &str, cp: Option<&str>, phase: &str) -> Pod {
        serde_json::from_value(serde_json::json!({
            "metadata": {
                "name": name, "namespace": "shop",
                "labels": cp.map(|cp| serde_json::json!({CONTROL_PLANE_NS_LABEL: cp})),
                "annotations": {SKIP_INBOUND_PORTS: "9090"},
            },
            "spec": {"serviceAccountName": "web", "containers": []},
            "status": {"phase": phase, "podIPs": [{"ip": ip}]},
        }))
        .unwrap()
    }

    fn mesh() -> Mesh {
        Mesh {
            control_plane_namespace: "linkerd".into(),
            trust_domain: "cluster.local".into(),
        }
    }

    #[test]
    fn pods_are_indexed_by_ip_until_they_finish_or_go() {
        let mut index = Index::new();
        apply(
            &mut index,
            &mesh(),
            &pod("a", "198.18.0.5", Some("linkerd"), "Running"),
        );
        let ip: IpAddr = "198.18.0.5".parse().unwrap();
        let (_, meshed) = &index[&ip];
        assert_eq!(
            meshed.identity_on(8080).as_deref(),
            Some("web.shop.serviceaccount.identity.linkerd.cluster.local")
        );
        assert_eq!(meshed.identity_on(9090), None);
        // The IP passes to another Pod; the first one's deletion must not drop it.
        apply(
            &mut index,
            &mesh(),
            &pod("b", "198.18.0.5", Some("linkerd"), "Running"),
        );
        remove(&mut index, "shop/a");
        assert!(index.contains_key(&ip));
        apply(
            &mut index,
            &mesh(),
            &pod("b", "198.18.0.5", Some("linkerd"), "Succeeded"),
        );
        assert!(index.is_empty());
        apply(
            &mut index,
            &mesh(),
            &pod("c", "198.18.0.6", None, "Running"),
        );
        assert!(index.is_empty(), "an unmeshed Pod is not indexed");
    }
}
