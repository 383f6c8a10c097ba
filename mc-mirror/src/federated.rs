//! Federated Services (`<svc>-federated`) for one Link's worker.
//!
//! Every [`RESYNC`] the worker lists the target cluster's Services matching the Link's
//! `federatedServiceSelector`, the local Services labelled `mirror.linkerd.io/federated=member`
//! (the local members: upstream's local mirror uses that selector, not a Link's), the federated Services of the local cluster and the Links (for their age), and for
//! each federated name it is concerned with decides, with the pure functions of
//! [`mc_core::mirror`], what `<svc>-federated` should be:
//! - its cluster's member joins (`svc@<cluster>` in the remote-discovery annotation) or leaves;
//! - the local member joins (local-discovery annotation) or leaves;
//! - labels, annotations and ports come from the local member, else from the member whose Link
//!   is oldest (that Link's worker writes them); the local member's go through the install's
//!   `localServiceMirror.excludedLabels`/`excludedAnnotations` (options
//!   `local_excluded_labels`/`local_excluded_annotations`), a Link member's through its Link's;
//! - with no member left the Service is deleted. A worker handles the federated Services its
//!   cluster joins or is listed in, and those with the local member alone; it does not create a
//!   Service for a local member alone (upstream's local mirror does).
//!
//! Writes are replaces carrying the resourceVersion read; on a conflict the Service is read
//! again and the decision made again, so the members another worker added are kept. A
//! `<svc>-federated` mc does not own is never touched, and a headless member is refused; both
//! are logged and reported as an Event on the Link (once per problem). No Endpoints are written:
//! Linkerd resolves the members from the annotations (egress mode: see `federated_egress`).

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use k8s_openapi::api::core::v1::Service;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::api::{ListParams, PostParams};
use kube::{Api, ResourceExt as _};
use mc_core::labels;
use mc_core::link::{FailureReason, Link, ObjectRef};
use mc_core::mirror::{
    FederatedSource, Members, Ownership, federated_join, federated_leave, federated_ownership,
    federated_update, is_metadata_source,
};
use mc_core::naming::federated_name;

use crate::error::is_status;
use crate::status::Outcome;
use crate::worker::Ctx;
use crate::{Error, Result};

/// How often everything is recomputed.
pub(crate) const RESYNC: Duration = Duration::from_secs(3);

/// How many times one federated Service is read again after a write conflict.
const CONFLICT_RETRIES: usize = 8;

/// Label selector of mc's federated Services: mirrored, but of no single cluster.
pub(crate) const FEDERATED_SELECTOR: &str =
    "mirror.linkerd.io/mirrored-service=true,!mirror.linkerd.io/cluster-name";

/// `(namespace, name)` of a Service.
type Key = (String, String);

/// What one pass read.
struct Snapshot {
    remote: BTreeMap<Key, Service>,
    local: BTreeMap<Key, Service>,
    federated: BTreeMap<Key, Service>,
    /// Link creation time by target cluster name.
    links: BTreeMap<String, Time>,
}

/// Runs the federated Services of one Link's worker until the worker stops.
pub(crate) async fn run(ctx: Arc<Ctx>) {
    let reported = Mutex::new(HashSet::new());
    loop {
        if let Err(e) = reconcile_all(&ctx, &reported).await {
            tracing::warn!(link = %ctx.link_name, error = %e, "federated Services; retrying");
        }
        tokio::time::sleep(RESYNC).await;
    }
}

async fn reconcile_all(ctx: &Ctx, reported: &Mutex<HashSet<String>>) -> Result<()> {
    let Some(snap) = snapshot(ctx).await? else {
        return Ok(());
    };
    // The worker handles the federated Services its cluster joins or is listed in (the local
    // member included) and the local-only ones; it leaves the rest to the other workers.
    let mut keys: BTreeSet<Key> = snap.remote.keys().cloned().collect();
    for fed in snap.federated.values() {
        let members = Members::from_meta(&fed.metadata);
        let ns = fed.namespace().unwrap_or_default();
        for (svc, c) in &members.remote {
            if c == ctx.cluster() {
                keys.insert((ns.clone(), svc.clone()));
            }
        }
        // Local-only federated Services: every worker agrees on the local member.
        if let (true, Some(svc)) = (members.remote.is_empty(), members.local) {
            keys.insert((ns.clone(), svc));
        }
    }
    let mut first_error = None;
    let mut outcomes = BTreeMap::new();
    for key in keys {
        let result = reconcile_one(ctx, &snap, &key, reported).await;
        if let Some(remote) = snap.remote.get(&key) {
            outcomes.insert(key.clone(), outcome(remote, &key, &result));
        }
        if let Err(e) = result {
            tracing::warn!(link = %ctx.link_name, service = %format!("{}/{}", key.0, key.1), error = %e, "federated Service");
            first_error.get_or_insert(e);
        }
    }
    ctx.book.set_federated(outcomes);
    first_error.map_or(Ok(()), Err)
}

/// The status entry of the remote member `key` after its federated Service was reconciled
/// (`Ok(Some(note))`: a foreign Service holds the name).
fn outcome(remote: &Service, key: &Key, result: &Result<Option<String>>) -> Outcome {
    match result {
        _ if headless(remote) => Outcome::failed(
            FailureReason::InvalidService,
            "Headless service cannot join federated service",
        ),
        Ok(None) => Outcome::Mirrored(ObjectRef::service(&key.0, &federated_name(&key.1).name)),
        Ok(Some(note)) => Outcome::failed(FailureReason::Conflict, note.clone()),
        Err(e) => Outcome::failed(
            FailureReason::Error,
            format!("Failed to update federated service: {e}"),
        ),
    }
}

async fn snapshot(ctx: &Ctx) -> Result<Option<Snapshot>> {
    let Some(view) = ctx.remote() else {
        return Ok(None);
    };
    let selector = ctx.link.federated_selector.to_query();
    let by_selector = ListParams::default().labels(&selector);
    let remote = list(Api::all(view.client.clone()), &by_selector, "target").await?;
    // Local members: upstream's local mirror has its own selector (the chart's default), not
    // a Link's; every worker uses it, so they all agree on the local member.
    let by_default = ListParams::default().labels(labels::DEFAULT_FEDERATED_SELECTOR);
    let local = list(Api::all(ctx.env.client.clone()), &by_default, "source").await?;
    let federated = list(
        Api::all(ctx.env.client.clone()),
        &ListParams::default().labels(FEDERATED_SELECTOR),
        "source",
    )
    .await?;
    let links: Api<Link> = Api::namespaced(ctx.env.client.clone(), &ctx.env.options.namespace);
    let links = links
        .list(&ListParams::default())
        .await
        .map_err(|e| Error::api("list Links in the source cluster", e))?
        .items
        .into_iter()
        .filter_map(|l| {
            let created = l.metadata.creation_timestamp.clone()?;
            Some((l.spec.validate().ok()?.cluster_name, created))
        })
        .collect();
    Ok(Some(Snapshot {
        remote,
        local,
        federated,
        links,
    }))
}

async fn list(api: Api<Service>, lp: &ListParams, cluster: &str) -> Result<BTreeMap<Key, Service>> {
    let items = api
        .list(lp)
        .await
        .map_err(|e| {
            Error::api(
                format!("list federated Services in the {cluster} cluster"),
                e,
            )
        })?
        .items;
    Ok(items
        .into_iter()
        .map(|s| ((s.namespace().unwrap_or_default(), s.name_any()), s))
        .collect())
}

/// Brings `<svc>-federated` of `key` up to date, reading it again after each conflict.
/// `Some(note)`: a Service mc does not own holds the name (reported, left untouched).
async fn reconcile_one(
    ctx: &Ctx,
    snap: &Snapshot,
    key: &Key,
    reported: &Mutex<HashSet<String>>,
) -> Result<Option<String>> {
    let (ns, svc) = key;
    let name = federated_name(svc).name;
    let api: Api<Service> = Api::namespaced(ctx.env.client.clone(), ns);
    let mut existing = snap.federated.get(&(ns.clone(), name.clone())).cloned();
    if existing.is_none() {
        existing = get(&api, ns, &name).await?;
    }
    let mut attempt = 0;
    loop {
        if let Some(e) = &existing
            && federated_ownership(&e.metadata) != Ownership::Ours
        {
            let note = format!(
                "Service {ns}/{name} already exists and is not a federated Service of the \
                     service mirror (no mirror.linkerd.io/mirrored-service=true label, or a \
                     cluster-name label); it is left untouched; fix: delete or rename it, and the \
                     federated Service is created"
            );
            report(ctx, reported, "FederatedServiceConflict", note.clone()).await;
            return Ok(Some(note));
        }
        let desired = desired(ctx, snap, key, existing.as_ref(), reported).await?;
        match write(ctx, &api, existing.as_ref(), desired).await {
            Ok(()) => return Ok(None),
            Err(e) if conflict(&e) && attempt < CONFLICT_RETRIES => {
                attempt += 1;
                existing = get(&api, ns, &name).await?;
            }
            Err(e) => return Err(e),
        }
    }
}

fn conflict(e: &Error) -> bool {
    matches!(e, Error::Api { source, .. } if is_status(source, 409))
}

async fn get(api: &Api<Service>, ns: &str, name: &str) -> Result<Option<Service>> {
    api.get_opt(name)
        .await
        .map_err(|e| Error::api(format!("get Service {ns}/{name} in the source cluster"), e))
}

/// What `<svc>-federated` should be (`None`: deleted), from `existing` and the members seen.
async fn desired(
    ctx: &Ctx,
    snap: &Snapshot,
    key: &Key,
    existing: Option<&Service>,
    reported: &Mutex<HashSet<String>>,
) -> Result<Option<Service>> {
    let (ns, svc) = key;
    let cluster = ctx.cluster();
    let local = snap.local.get(key).filter(|s| !headless(s));
    let mut out = existing.cloned();
    match snap.remote.get(key) {
        Some(remote) if headless(remote) => {
            let note = format!(
                "Service {ns}/{svc} of cluster {cluster} is headless: a headless service cannot \
                 join a federated service; fix: federate a ClusterIP Service, or remove the \
                 federated label"
            );
            report(ctx, reported, "InvalidService", note).await;
            out = out.and_then(|e| federated_leave(&e, svc, Some(cluster)));
        }
        Some(remote) => {
            let mut members = out
                .as_ref()
                .map(|e| Members::from_meta(&e.metadata))
                .unwrap_or_default();
            if !members.remote.contains(&(svc.clone(), cluster.to_string())) {
                members.remote.push((svc.clone(), cluster.to_string()));
            }
            members.local = local.map(|_| svc.clone());
            let meta_source = is_metadata_source(&members, cluster, |c| snap.links.get(c).cloned());
            let source = FederatedSource::link(&ctx.link, meta_source);
            out = Some(federated_join(remote, &source, out.as_ref())?);
        }
        None => out = out.and_then(|e| federated_leave(&e, svc, Some(cluster))),
    }
    if let Some(l) = snap.local.get(key).filter(|s| headless(s)) {
        let note = format!(
            "local Service {ns}/{} is headless: a headless service cannot join a federated \
             service; fix: federate a ClusterIP Service, or remove the federated label",
            l.name_any()
        );
        report(ctx, reported, "InvalidService", note).await;
    }
    let options = &ctx.env.options;
    let local_source = FederatedSource::local(
        &options.local_excluded_labels,
        &options.local_excluded_annotations,
    );
    let out = match local {
        Some(l) => Some(federated_join(l, &local_source, out.as_ref())?),
        None => out.and_then(|e| federated_leave(&e, svc, None)),
    };
    // A Service with the local member alone is kept (as upstream), but not created here.
    Ok(out.filter(|s| existing.is_some() || !Members::from_meta(&s.metadata).remote.is_empty()))
}

fn headless(s: &Service) -> bool {
    s.spec.as_ref().and_then(|s| s.cluster_ip.as_deref()) == Some("None")
}

/// Creates, replaces (with `existing`'s resourceVersion) or deletes the federated Service.
async fn write(
    ctx: &Ctx,
    api: &Api<Service>,
    existing: Option<&Service>,
    desired: Option<Service>,
) -> Result<()> {
    let what = |verb: &str, s: &Service| {
        format!(
            "{verb} federated Service {}/{} in the source cluster",
            s.namespace().unwrap_or_default(),
            s.name_any()
        )
    };
    match (existing, desired) {
        (None, None) => Ok(()),
        (Some(e), None) => {
            crate::reconcile::delete_exact(ctx, api, "services", e).await?;
            tracing::info!(link = %ctx.link_name, service = %e.name_any(), "federated Service deleted: no member left");
            Ok(())
        }
        (None, Some(d)) => {
            api.create(&PostParams::default(), &d)
                .await
                .map_err(|e| Error::api(what("create", &d), e))?;
            ctx.wrote("create", "services");
            tracing::info!(link = %ctx.link_name, service = %d.name_any(), "federated Service created");
            Ok(())
        }
        (Some(e), Some(d)) => {
            let Some(update) = federated_update(&d, e) else {
                return Ok(());
            };
            api.replace(&e.name_any(), &PostParams::default(), &update)
                .await
                .map_err(|err| Error::api(what("replace", &update), err))?;
            ctx.wrote("update", "services");
            tracing::info!(link = %ctx.link_name, service = %e.name_any(), "federated Service updated");
            Ok(())
        }
    }
}

/// Logs a problem and records it as a warning Event on the Link, once per distinct problem.
async fn report(ctx: &Ctx, reported: &Mutex<HashSet<String>>, reason: &str, note: String) {
    let new = match reported.lock() {
        Ok(mut g) => g.insert(note.clone()),
        Err(p) => p.into_inner().insert(note.clone()),
    };
    if new {
        tracing::warn!(link = %ctx.link_name, reason, "{note}");
        ctx.event(true, reason, note).await;
    }
}
