//! The top of the controller: watches the Links of one namespace and runs one worker per selected
//! Link, restarting it when the spec changes and stopping it when the Link goes away.
//!
//! Status-only updates of a Link (including the controller's own status patches) never restart a
//! worker: only a change of `spec`, or of the mode annotation `mirror.linkerd.io/mc-link-mode`,
//! does (a restart rewrites Endpoints in place: mirrors are never deleted for a mode switch). When a Link is deleted its worker stops and the mirrors
//! are left in place (see docs/mirror.md); a re-created Link adopts them.

use std::collections::{HashMap, HashSet};
use std::future::Future;
use std::sync::{Arc, Mutex};

use futures::StreamExt as _;
use kube::runtime::WatchStreamExt as _;
use kube::runtime::watcher::{self, Event};
use kube::{Api, Client, ResourceExt as _};
use mc_core::link::{Link, LinkSpec};
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::Result;
use crate::admin::Readiness;
use crate::config::Options;
use crate::metrics::Metrics;
use crate::worker;

/// Readiness of the process: the Link list has synced and every running worker's local caches
/// have synced.
#[derive(Clone, Debug, Default)]
pub(crate) struct ReadyBoard {
    inner: Arc<Mutex<(bool, HashMap<String, bool>)>>,
    out: Readiness,
}

impl ReadyBoard {
    fn new(out: Readiness) -> ReadyBoard {
        ReadyBoard {
            inner: Arc::default(),
            out,
        }
    }

    fn update(&self, f: impl FnOnce(&mut (bool, HashMap<String, bool>))) {
        if let Ok(mut g) = self.inner.lock() {
            f(&mut g);
            let ready = g.0 && g.1.values().all(|v| *v);
            self.out.set(ready);
        }
    }

    /// Records whether Link `name`'s worker has synced its local caches.
    pub(crate) fn set_link(&self, name: &str, synced: bool) {
        self.update(|g| {
            g.1.insert(name.to_string(), synced);
        });
    }

    fn remove_link(&self, name: &str) {
        self.update(|g| {
            g.1.remove(name);
        });
    }

    fn set_links_synced(&self) {
        self.update(|g| g.0 = true);
    }
}

/// A Link as the controller watches it: metadata and spec only. The status, which the workers
/// write and which holds one entry per mirrored service, is skipped while decoding (no
/// allocation), so each status patch does not cost the controller a decode of the whole list.
#[derive(Clone, Debug, serde::Deserialize)]
pub(crate) struct LinkHead {
    metadata: kube::api::ObjectMeta,
    spec: LinkSpec,
}

impl kube::Resource for LinkHead {
    type DynamicType = ();
    type Scope = k8s_openapi::NamespaceResourceScope;

    fn kind(dt: &()) -> std::borrow::Cow<'_, str> {
        Link::kind(dt)
    }
    fn group(dt: &()) -> std::borrow::Cow<'_, str> {
        Link::group(dt)
    }
    fn version(dt: &()) -> std::borrow::Cow<'_, str> {
        Link::version(dt)
    }
    fn api_version(dt: &()) -> std::borrow::Cow<'_, str> {
        Link::api_version(dt)
    }
    fn plural(dt: &()) -> std::borrow::Cow<'_, str> {
        Link::plural(dt)
    }
    fn meta(&self) -> &kube::api::ObjectMeta {
        &self.metadata
    }
    fn meta_mut(&mut self) -> &mut kube::api::ObjectMeta {
        &mut self.metadata
    }
}

impl From<LinkHead> for Link {
    fn from(h: LinkHead) -> Link {
        Link {
            metadata: h.metadata,
            spec: h.spec,
            status: None,
        }
    }
}

struct Running {
    spec: LinkSpec,
    mode: Option<String>,
    stop: watch::Sender<bool>,
    task: JoinHandle<()>,
}

/// The service-mirror controller for one namespace of Links.
#[derive(Clone)]
pub struct Controller {
    client: Client,
    options: Arc<Options>,
    metrics: Arc<Metrics>,
    ready: Readiness,
}

impl std::fmt::Debug for Controller {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Controller")
            .field("options", &self.options)
            .finish_non_exhaustive()
    }
}

impl Controller {
    /// A controller that talks to the source cluster through `client`.
    pub fn new(client: Client, options: Options) -> Controller {
        Controller::with_metrics(client, options, Arc::new(Metrics::new()))
    }

    /// A controller that records into `metrics` (e.g. the ones that count `client`'s requests,
    /// see [`Metrics::counted_client`]).
    pub fn with_metrics(client: Client, options: Options, metrics: Arc<Metrics>) -> Controller {
        Controller {
            client,
            options: Arc::new(options),
            metrics,
            ready: Readiness::default(),
        }
    }

    /// The metrics (shared with the admin server).
    pub fn metrics(&self) -> Arc<Metrics> {
        self.metrics.clone()
    }

    /// The readiness flag (shared with the admin server).
    pub fn readiness(&self) -> Readiness {
        self.ready.clone()
    }

    fn selected(&self, name: &str) -> bool {
        self.options.links.is_empty() || self.options.links.iter().any(|l| l == name)
    }

    /// Runs until `shutdown` completes; then stops every worker, releasing its lease. Mirrors are
    /// left in place.
    pub async fn run(self, shutdown: impl Future<Output = ()>) -> Result<()> {
        let board = ReadyBoard::new(self.ready.clone());
        let api: Api<LinkHead> = Api::namespaced(self.client.clone(), &self.options.namespace);
        let mut links = watcher::watcher(api, watcher::Config::default())
            .default_backoff()
            .boxed();
        let mut running: HashMap<String, Running> = HashMap::new();
        let mut relisted: HashSet<String> = HashSet::new();
        tokio::pin!(shutdown);
        tracing::info!(namespace = %self.options.namespace, links = ?self.options.links, "watching Links");
        loop {
            let event = tokio::select! {
                () = &mut shutdown => break,
                e = links.next() => e,
            };
            match event {
                Some(Ok(Event::Apply(link))) => {
                    self.ensure(link.into(), &mut running, &board).await;
                }
                Some(Ok(Event::InitApply(link))) => {
                    relisted.insert(link.name_any());
                    self.ensure(link.into(), &mut running, &board).await;
                }
                Some(Ok(Event::Delete(link))) => {
                    let name = link.name_any();
                    if let Some(r) = running.remove(&name) {
                        tracing::info!(link = %name, "Link deleted: stopping its worker, mirrors are kept");
                        stop(r).await;
                        board.remove_link(&name);
                    }
                }
                Some(Ok(Event::Init)) => relisted.clear(),
                Some(Ok(Event::InitDone)) => {
                    let gone: Vec<String> = running
                        .keys()
                        .filter(|n| !relisted.contains(*n))
                        .cloned()
                        .collect();
                    for name in gone {
                        if let Some(r) = running.remove(&name) {
                            tracing::info!(link = %name, "Link gone after a relist: stopping its worker");
                            stop(r).await;
                            board.remove_link(&name);
                        }
                    }
                    board.set_links_synced();
                }
                Some(Err(e)) => {
                    tracing::warn!(error = %e, "watching Links failed; retrying");
                    self.metrics.error("", "link_watch");
                }
                None => break,
            }
        }
        for (_, r) in running.drain() {
            stop(r).await;
        }
        Ok(())
    }

    async fn ensure(&self, link: Link, running: &mut HashMap<String, Running>, board: &ReadyBoard) {
        let name = link.name_any();
        if !self.selected(&name) {
            return;
        }
        let mode = link_mode(&link);
        if running
            .get(&name)
            .is_some_and(|r| r.spec == link.spec && r.mode == mode)
        {
            return; // status-only or metadata-only change
        }
        if let Some(old) = running.remove(&name) {
            tracing::info!(link = %name, "Link spec or mode changed: restarting its worker");
            stop(old).await;
        }
        let (stop_tx, stop_rx) = watch::channel(false);
        board.set_link(&name, false);
        let spec = link.spec.clone();
        let task = tokio::spawn(worker::run_link(
            worker::Env {
                client: self.client.clone(),
                options: self.options.clone(),
                metrics: self.metrics.clone(),
                board: board.clone(),
            },
            link,
            stop_rx,
        ));
        running.insert(
            name,
            Running {
                spec,
                mode,
                stop: stop_tx,
                task,
            },
        );
    }
}

/// The Link's mode annotation, as written.
fn link_mode(link: &Link) -> Option<String> {
    link.metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get(mc_core::labels::LINK_MODE))
        .cloned()
}

async fn stop(r: Running) {
    let _ = r.stop.send(true);
    let mut task = r.task;
    if tokio::time::timeout(std::time::Duration::from_secs(15), &mut task)
        .await
        .is_err()
    {
        task.abort();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_link_head_keeps_metadata_and_spec_and_skips_the_status() {
        let json = serde_json::json!({
            "apiVersion": "multicluster.linkerd.io/v1alpha2",
            "kind": "Link",
            "metadata": {"name": "east", "namespace": "mc", "resourceVersion": "7"},
            "spec": {"targetClusterName": "east", "gatewayPort": "4143"},
            "status": {"mirrorServices": [{"controllerName": "x", "conditions": "not a list"}]}
        });
        let head: LinkHead = serde_json::from_value(json).unwrap();
        let link: Link = head.into();
        assert_eq!(link.metadata.name.as_deref(), Some("east"));
        assert_eq!(link.metadata.resource_version.as_deref(), Some("7"));
        assert_eq!(link.spec.target_cluster_name.as_deref(), Some("east"));
        assert_eq!(link.spec.gateway_port.as_deref(), Some("4143"));
        assert!(link.status.is_none(), "the status is never decoded");
        assert_eq!(
            <LinkHead as kube::Resource>::plural(&()),
            <Link as kube::Resource>::plural(&())
        );
    }
}
