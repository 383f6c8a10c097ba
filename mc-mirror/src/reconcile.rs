//! Reconciling one remote Service (or the probe Service): desired objects from mc-core against
//! the local caches, with writes only where mc-core's diff says so.
//!
//! Rules:
//! - a local object is updated or deleted only when mc-core's `ownership` says it is ours;
//!   otherwise the remote Service gets a `Conflict` condition and an Event, and the object is
//!   left alone;
//! - updates carry the cached `resourceVersion` (a concurrent change makes them fail and retry
//!   from fresh state), deletes carry `uid` + `resourceVersion` preconditions, creates fail on an
//!   existing object: nothing is ever blindly overwritten;
//! - a missing namespace gives `MissingNamespace` (or is created with `--create-namespaces`).

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::sync::Arc;

use k8s_openapi::api::core::v1::{Endpoints, Namespace, Service};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::api::{DeleteParams, PostParams, Preconditions};
use kube::{Api, Resource, ResourceExt as _};
use mc_core::egress::{LinkMode, egress_endpoints};
use mc_core::labels;
use mc_core::link::{FailureReason, ObjectRef as StatusRef};
use mc_core::mirror::{
    DesiredMirror, Gateway, MirrorContext, MirrorKind, Ownership, desired_mirror,
    endpoints_needs_update, headless_endpoints, ownership, probe_endpoints, probe_service,
    service_needs_recreate, service_needs_update,
};
use mc_core::naming::{mirror_name, probe_service_name, remote_name};
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::compact::LocalService;
use crate::egress::MirrorRoutes;
use crate::error::is_status;
use crate::status::{CONFLICT, Outcome};
use crate::worker::{Ctx, Key};
use crate::{Error, Result};

/// The key a local object (mirror, endpoint mirror, their Endpoints, the probe) belongs to.
pub(crate) fn key_of_local(ctx: &Ctx, meta: &ObjectMeta) -> Option<Key> {
    let is_probe = meta
        .labels
        .as_ref()
        .and_then(|l| l.get(labels::MIRRORED_GATEWAY))
        .is_some_and(|v| v == "true");
    if is_probe {
        return Some(Key::Probe);
    }
    remote_name(meta, ctx.cluster()).map(|(ns, name)| Key::Service(ns, name))
}

/// Every key worth examining: exported remote Services, local mirrors (orphans included), the
/// entries of the status, and the probe.
pub(crate) fn all_keys(ctx: &Ctx) -> Vec<Key> {
    let mut keys = std::collections::BTreeSet::new();
    if let Some(view) = ctx.remote() {
        for store in [&view.gateway_services, &view.discovery_services]
            .into_iter()
            .flatten()
        {
            keys.extend(store.filter_map(|ns, n, _| Some(Key::Service(ns.into(), n.into()))));
        }
    }
    keys.extend(
        ctx.local
            .services
            .filter_map(|ns, n, s| key_of_local(ctx, &s.meta.to_meta(ns, n))),
    );
    keys.extend(
        ctx.local
            .endpoints
            .filter_map(|ns, n, e| key_of_local(ctx, &e.meta.to_meta(ns, n))),
    );
    for (ns, n) in ctx.book.seeded_keys() {
        keys.insert(Key::Service(ns, n));
    }
    keys.insert(Key::Probe);
    keys.into_iter().collect()
}

/// Keys of remote Services in namespace `ns` (when it appears locally).
pub(crate) fn remote_keys_in(ctx: &Ctx, ns: &str) -> Vec<Key> {
    let mut keys = Vec::new();
    if let Some(view) = ctx.remote() {
        for store in [&view.gateway_services, &view.discovery_services]
            .into_iter()
            .flatten()
        {
            keys.extend(store.filter_map_in(ns, |n, _| Some(Key::Service(ns.into(), n.into()))));
        }
    }
    keys
}

/// Reconciles one key.
pub(crate) async fn reconcile(ctx: &Arc<Ctx>, key: &Key) -> Result<()> {
    match key {
        Key::Probe => reconcile_probe(ctx).await,
        Key::Service(ns, name) => reconcile_service(ctx, ns, name).await,
    }
}

/// The identity the Link's gateway presents (empty when the Link names none).
pub(crate) fn gateway_identity(ctx: &Ctx) -> String {
    ctx.link
        .gateway
        .as_ref()
        .and_then(|g| g.identity.clone())
        .unwrap_or_default()
}

/// The Link's gateway, once resolved, and whether the probe says it is alive.
pub(crate) fn gateway(ctx: &Ctx) -> (Option<Gateway>, bool) {
    let view = ctx.gateway.borrow().clone();
    let gw = ctx.link.gateway.as_ref().and_then(|spec| {
        (view.resolved && !view.addresses.is_empty())
            .then(|| Gateway::from_spec(spec, view.addresses.iter().copied()))
    });
    (gw, view.alive)
}

async fn reconcile_service(ctx: &Arc<Ctx>, ns: &str, name: &str) -> Result<()> {
    let Some(view) = ctx.remote() else {
        return Ok(()); // not synced yet: the sync re-queues everything
    };
    let remote = [&view.discovery_services, &view.gateway_services]
        .into_iter()
        .flatten()
        .find_map(|s| s.get(ns, name, |r| r.to_service(ns, name)));
    if !view.gateway_exported(ns, name)
        && let Some(endpoints) = &view.endpoints
    {
        // Unexported (or never exported): its Endpoints are no longer followed.
        endpoints.remove(ns, name);
    }
    let Some(remote) = remote else {
        return remove_mirror(ctx, ns, name).await;
    };
    let endpoints = view.endpoints_of(ns, name).await?;
    let (gw, alive) = gateway(ctx);
    let mctx = MirrorContext {
        link: &ctx.link,
        gateway: gw.as_ref(),
        alive,
        headless_enabled: ctx.env.options.enable_headless_services,
    };
    let mut desired = match desired_mirror(&remote, &endpoints, &mctx) {
        Ok(d) => d,
        Err(mc_core::Error::NotExported { .. }) => return remove_mirror(ctx, ns, name).await,
        Err(e) => {
            let outcome = Outcome::failed(FailureReason::InvalidService, e.to_string());
            record(ctx, ns, name, outcome).await;
            return Ok(());
        }
    };
    if !namespace_ready(ctx, ns, name).await? {
        return Ok(());
    }
    if let Err(e) = through_egress(ctx, ns, &mut desired, gw.as_ref()).await {
        if let Error::Core(core) = &e {
            let outcome = Outcome::failed(FailureReason::InvalidService, core.to_string());
            record(ctx, ns, name, outcome).await;
            return Ok(());
        }
        return Err(e);
    }
    let outcome = apply_mirror(ctx, ns, name, &desired).await?;
    record(ctx, ns, name, outcome).await;
    Ok(())
}

/// Egress mode: the mirror's routes are set in the egress route table and its Endpoints point
/// at the egress Pods on the ports the table gives (see [`mc_core::egress`]); a headless
/// mirror's endpoint mirrors (`<host>-<cluster>`, what `<host>.<svc>-<cluster>` resolves to) are
/// served the same way, each with its own routes. Other modes and remote-discovery mirrors are
/// left as they are.
async fn through_egress(
    ctx: &Ctx,
    ns: &str,
    desired: &mut DesiredMirror,
    gw: Option<&Gateway>,
) -> Result<()> {
    if ctx.egress.mode != LinkMode::Egress {
        return Ok(());
    }
    match desired.kind {
        MirrorKind::Gateway => {
            if let Some(ep) = &desired.endpoints {
                desired.endpoints = Some(egress_for(ctx, ns, &desired.service, ep, gw).await?);
            }
        }
        MirrorKind::Headless => {
            for (svc, ep) in &mut desired.endpoint_mirrors {
                *ep = egress_for(ctx, ns, svc, ep, gw).await?;
            }
        }
        MirrorKind::RemoteDiscovery => {}
    }
    Ok(())
}

/// The routes of the (endpoint) mirror `svc` set in the table, and its gateway-mode Endpoints
/// `ep` rewritten to lead to the egress Pods.
async fn egress_for(
    ctx: &Ctx,
    ns: &str,
    svc: &Service,
    ep: &Endpoints,
    gw: Option<&Gateway>,
) -> Result<Endpoints> {
    let fq_name = svc
        .metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get(mc_core::labels::REMOTE_SVC_FQ_NAME))
        .cloned()
        .unwrap_or_default();
    let identity = gateway_identity(ctx);
    let name = svc.name_any();
    let listen = ctx
        .egress
        .ensure(
            &ctx.env.client,
            &ctx.env.options.namespace,
            ctx.cluster(),
            MirrorRoutes {
                ns,
                name: &name,
                service: svc,
                fq_name: &fq_name,
                gateway: gw,
                identity: &identity,
            },
        )
        .await?;
    let pods = ctx.egress.pods.borrow().clone();
    Ok(egress_endpoints(ep, svc, &pods, &listen))
}

/// Records an outcome; failures that are new get an Event and a metric.
async fn record(ctx: &Ctx, ns: &str, name: &str, outcome: Outcome) {
    let transition = ctx.book.set(ns, name, outcome.clone());
    if let Outcome::Failed { reason, message } = &outcome
        && transition
    {
        ctx.env.metrics.error(ctx.cluster(), reason);
        tracing::warn!(link = %ctx.link_name, service = %format!("{ns}/{name}"), reason, message = %message, "service not mirrored");
        ctx.event(true, reason, format!("{ns}/{name}: {message}"))
            .await;
    }
}

/// `true` when the namespace exists (or was created).
async fn namespace_ready(ctx: &Ctx, ns: &str, name: &str) -> Result<bool> {
    if ctx.local.namespaces.contains("", ns) {
        return Ok(true);
    }
    if !ctx.env.options.create_namespaces {
        let outcome = Outcome::failed(
            FailureReason::MissingNamespace,
            format!(
                "Namespace {ns} does not exist in the source cluster; fix: create it (the mirror \
                 appears then), or run the controller with --create-namespaces"
            ),
        );
        record(ctx, ns, name, outcome).await;
        return Ok(false);
    }
    let namespace = Namespace {
        metadata: ObjectMeta {
            name: Some(ns.to_string()),
            labels: Some(BTreeMap::from([
                (labels::MIRRORED_SERVICE.to_string(), "true".to_string()),
                (labels::CLUSTER_NAME.to_string(), ctx.cluster().to_string()),
            ])),
            ..ObjectMeta::default()
        },
        ..Namespace::default()
    };
    let api: Api<Namespace> = Api::all(ctx.env.client.clone());
    match api.create(&PostParams::default(), &namespace).await {
        Ok(_) => {
            ctx.wrote("create", "namespaces");
            tracing::info!(namespace = ns, "created a missing namespace");
            Ok(true)
        }
        Err(e) if is_status(&e, 409) => Ok(true),
        Err(e) => Err(Error::api(format!("create Namespace {ns}"), e)),
    }
}

/// What a single-object apply did.
enum Applied<K> {
    /// The object exists and is as desired (maybe after a write).
    Ok(K),
    /// A local object with that name is not ours.
    Conflict(String),
}

/// Makes the local object `desired` exist: creates it, updates it when mc-core's diff says so,
/// or reports a conflict when the existing object is not ours.
#[allow(clippy::too_many_arguments)]
async fn apply_one<K>(
    ctx: &Ctx,
    resource: &str,
    cached: Option<K>,
    desired: K,
    needs_update: fn(&K, &K) -> bool,
    needs_recreate: fn(&K, &K) -> bool,
    carry: fn(&K, &mut K),
) -> Result<Applied<K>>
where
    K: Resource<Scope = k8s_openapi::NamespaceResourceScope, DynamicType = ()>
        + Clone
        + Serialize
        + DeserializeOwned
        + std::fmt::Debug,
{
    let ns = desired.meta().namespace.clone().unwrap_or_default();
    let name = desired.meta().name.clone().unwrap_or_default();
    let api: Api<K> = Api::namespaced(ctx.env.client.clone(), &ns);
    let what = |verb: &str| format!("{verb} {resource} {ns}/{name} in the source cluster");
    let mut existing = cached;
    // At most: create (exists) → look → update (stale cache) → look → update.
    for _ in 0..4 {
        let Some(actual) = existing.take() else {
            match api.create(&PostParams::default(), &desired).await {
                Ok(created) => {
                    ctx.wrote("create", resource);
                    return Ok(Applied::Ok(created));
                }
                Err(e) if is_status(&e, 409) => {
                    // Exists but not in our cache: maybe not ours. Look before touching it.
                    existing = api
                        .get_opt(&name)
                        .await
                        .map_err(|e| Error::api(what("get"), e))?;
                    continue;
                }
                Err(e) => return Err(Error::api(what("create"), e)),
            }
        };
        match ownership(actual.meta(), ctx.cluster()) {
            Ownership::Ours => {}
            Ownership::OtherCluster(c) => {
                return Ok(Applied::Conflict(format!(
                    "{resource} {ns}/{name} already exists and mirrors cluster {c:?}; it is left \
                     untouched; fix: rename one of the exported services or use distinct cluster names"
                )));
            }
            Ownership::Foreign => {
                return Ok(Applied::Conflict(format!(
                    "{resource} {ns}/{name} already exists and was not created by the service \
                     mirror (no mirror.linkerd.io/mirrored-service and cluster-name={} labels); \
                     it is left untouched; fix: delete or rename it, and the mirror is created",
                    ctx.cluster()
                )));
            }
        }
        if needs_recreate(&desired, &actual) {
            delete_exact(ctx, &api, resource, &actual).await?;
            existing = None;
            continue;
        }
        if !needs_update(&desired, &actual) {
            return Ok(Applied::Ok(actual));
        }
        let mut update = desired.clone();
        carry(&actual, &mut update);
        {
            let m = update.meta_mut();
            let a = actual.meta();
            m.resource_version = a.resource_version.clone();
            m.uid = a.uid.clone();
            m.finalizers = a.finalizers.clone();
            m.owner_references = a.owner_references.clone();
        }
        match api.replace(&name, &PostParams::default(), &update).await {
            Ok(written) => {
                ctx.wrote("update", resource);
                return Ok(Applied::Ok(written));
            }
            Err(e) if is_status(&e, 409) => {
                // Our cache lags behind (often our own previous write): read the object as it
                // is now and decide again, ownership included.
                existing = api
                    .get_opt(&name)
                    .await
                    .map_err(|e| Error::api(what("get"), e))?;
            }
            Err(e) => return Err(Error::api(what("update"), e)),
        }
    }
    Err(Error::api(
        what("create"),
        kube::Error::Api(Box::new(
            kube::core::Status::failure(
                "the object kept changing while it was being written",
                "Conflict",
            )
            .with_code(409),
        )),
    ))
}

/// Deletes exactly this version of an object we own (uid + resourceVersion preconditions).
pub(crate) async fn delete_exact<K>(ctx: &Ctx, api: &Api<K>, resource: &str, obj: &K) -> Result<()>
where
    K: Resource + Clone + DeserializeOwned + std::fmt::Debug,
{
    let name = obj.meta().name.clone().unwrap_or_default();
    let dp = DeleteParams {
        preconditions: Some(Preconditions {
            uid: obj.meta().uid.clone(),
            resource_version: obj.meta().resource_version.clone(),
        }),
        ..DeleteParams::default()
    };
    match api.delete(&name, &dp).await {
        Ok(_) => {
            ctx.wrote("delete", resource);
            Ok(())
        }
        Err(e) if is_status(&e, 404) => Ok(()),
        Err(e) => Err(Error::api(
            format!(
                "delete {resource} {}/{name} in the source cluster",
                obj.meta().namespace.clone().unwrap_or_default()
            ),
            e,
        )),
    }
}

fn carry_service(actual: &Service, update: &mut Service) {
    // Fields the API server allocated stay as they are.
    if let (Some(a), Some(u)) = (actual.spec.as_ref(), update.spec.as_mut()) {
        if u.cluster_ip.is_none() {
            u.cluster_ip = a.cluster_ip.clone();
            u.cluster_ips = a.cluster_ips.clone();
        }
        u.ip_families = a.ip_families.clone();
        u.ip_family_policy = a.ip_family_policy.clone();
    }
}

fn carry_nothing<K>(_: &K, _: &mut K) {}

fn never<K>(_: &K, _: &K) -> bool {
    false
}

/// The cached local Service `ns/name`, as a Service (with the fields the cache keeps).
fn cached_service(ctx: &Ctx, ns: &str, name: &str) -> Option<Service> {
    ctx.local.services.get(ns, name, |s| s.to_service(ns, name))
}

/// The cached local Endpoints `ns/name`, as Endpoints (with the fields the cache keeps).
fn cached_endpoints(ctx: &Ctx, ns: &str, name: &str) -> Option<Endpoints> {
    ctx.local
        .endpoints
        .get(ns, name, |e| e.to_endpoints(ns, name))
}

async fn apply_service(
    ctx: &Ctx,
    known_conflict: bool,
    desired: Service,
) -> Result<Applied<Service>> {
    let ns = desired.namespace().unwrap_or_default();
    let name = desired.name_any();
    // A known conflict is not in our cache (it lacks our labels): look it up instead of
    // sending a create that is bound to fail.
    let cached = match cached_service(ctx, &ns, &name) {
        Some(c) => Some(c),
        None if known_conflict => {
            let api: Api<Service> = Api::namespaced(ctx.env.client.clone(), &ns);
            api.get_opt(&name)
                .await
                .map_err(|e| Error::api(format!("get Service {ns}/{name}"), e))?
        }
        None => None,
    };
    apply_one(
        ctx,
        "services",
        cached,
        desired,
        service_needs_update,
        service_needs_recreate,
        carry_service,
    )
    .await
}

async fn apply_endpoints(ctx: &Ctx, desired: Endpoints) -> Result<Applied<Endpoints>> {
    let ns = desired.namespace().unwrap_or_default();
    let cached = cached_endpoints(ctx, &ns, &desired.name_any());
    apply_one(
        ctx,
        "endpoints",
        cached,
        desired,
        endpoints_needs_update,
        never,
        carry_nothing,
    )
    .await
}

async fn apply_mirror(ctx: &Ctx, ns: &str, name: &str, desired: &DesiredMirror) -> Result<Outcome> {
    let known_conflict = matches!(
        ctx.book.get(ns, name),
        Some(Outcome::Failed { reason, .. }) if reason == CONFLICT
    );
    // Endpoint mirrors exist only next to a headless mirror: look for leftovers only then.
    let was_headless = ctx
        .local
        .services
        .get(ns, &desired.name.name, LocalService::is_headless)
        .unwrap_or(false);
    let mirror = match apply_service(ctx, known_conflict, desired.service.clone()).await? {
        Applied::Ok(s) => s,
        Applied::Conflict(message) => {
            return Ok(Outcome::Failed {
                reason: CONFLICT,
                message,
            });
        }
    };
    let local = StatusRef::service(ns, &desired.name.name);
    match desired.kind {
        MirrorKind::Gateway => {
            if let Some(ep) = &desired.endpoints
                && let Applied::Conflict(message) = apply_endpoints(ctx, ep.clone()).await?
            {
                return Ok(Outcome::Failed {
                    reason: CONFLICT,
                    message,
                });
            }
            if was_headless {
                delete_endpoint_mirrors(ctx, ns, &desired.name.name, &[]).await?;
            }
        }
        MirrorKind::RemoteDiscovery => {
            if let Some(ep) = cached_endpoints(ctx, ns, &desired.name.name)
                && ownership(&ep.metadata, ctx.cluster()) == Ownership::Ours
            {
                let api: Api<Endpoints> = Api::namespaced(ctx.env.client.clone(), ns);
                delete_exact(ctx, &api, "endpoints", &ep).await?;
            }
            if was_headless {
                delete_endpoint_mirrors(ctx, ns, &desired.name.name, &[]).await?;
            }
        }
        MirrorKind::Headless => {
            let mut hosts: Vec<(String, IpAddr)> = Vec::new();
            let mut keep = Vec::new();
            for (svc, ep) in &desired.endpoint_mirrors {
                keep.push(svc.name_any());
                let host_svc = match apply_service(ctx, false, svc.clone()).await? {
                    Applied::Ok(s) => s,
                    Applied::Conflict(message) => {
                        return Ok(Outcome::Failed {
                            reason: CONFLICT,
                            message,
                        });
                    }
                };
                if let Applied::Conflict(message) = apply_endpoints(ctx, ep.clone()).await? {
                    return Ok(Outcome::Failed {
                        reason: CONFLICT,
                        message,
                    });
                }
                let host = hostname_of(svc);
                let ip = host_svc
                    .spec
                    .as_ref()
                    .and_then(|s| s.cluster_ip.as_deref())
                    .and_then(|ip| ip.parse::<IpAddr>().ok());
                if let (Some(h), Some(ip)) = (host, ip) {
                    hosts.push((h, ip));
                }
            }
            delete_endpoint_mirrors(ctx, ns, &desired.name.name, &keep).await?;
            let ep = headless_endpoints(&mirror, &hosts);
            if let Applied::Conflict(message) = apply_endpoints(ctx, ep).await? {
                return Ok(Outcome::Failed {
                    reason: CONFLICT,
                    message,
                });
            }
        }
    }
    Ok(Outcome::Mirrored(local))
}

/// The remote hostname an endpoint mirror stands for, from its fq-name annotation
/// (`<host>.<svc>.<ns>.svc.<domain>`).
fn hostname_of(svc: &Service) -> Option<String> {
    svc.annotations()
        .get(labels::REMOTE_SVC_FQ_NAME)
        .and_then(|fq| fq.split('.').next())
        .map(str::to_string)
}

/// Deletes our endpoint mirrors of headless mirror `mirror` (and their Endpoints) except `keep`.
async fn delete_endpoint_mirrors(ctx: &Ctx, ns: &str, mirror: &str, keep: &[String]) -> Result<()> {
    let doomed: Vec<Service> = ctx.local.services.filter_map_in(ns, |name, s| {
        let svc = (s.meta.labels.get(labels::HEADLESS_MIRROR_SVC_NAME) == Some(mirror)
            && !keep.iter().any(|k| k == name))
        .then(|| s.to_service(ns, name))?;
        (ownership(&svc.metadata, ctx.cluster()) == Ownership::Ours).then_some(svc)
    });
    let services: Api<Service> = Api::namespaced(ctx.env.client.clone(), ns);
    let endpoints: Api<Endpoints> = Api::namespaced(ctx.env.client.clone(), ns);
    for s in doomed {
        if ctx.egress.mode == LinkMode::Egress {
            let home = &ctx.env.options.namespace;
            (ctx.egress
                .remove(&ctx.env.client, home, ctx.cluster(), ns, &s.name_any()))
            .await?;
        }
        if let Some(ep) = cached_endpoints(ctx, ns, &s.name_any())
            && ownership(&ep.metadata, ctx.cluster()) == Ownership::Ours
        {
            delete_exact(ctx, &endpoints, "endpoints", &ep).await?;
        }
        delete_exact(ctx, &services, "services", &s).await?;
    }
    Ok(())
}

/// The remote Service is gone or unexported: delete our mirror, its Endpoints and endpoint
/// mirrors (never anything that is not ours) and forget its status entry.
async fn remove_mirror(ctx: &Ctx, ns: &str, name: &str) -> Result<()> {
    let mirror = mirror_name(name, ctx.cluster()).name;
    if ctx.egress.mode == LinkMode::Egress {
        let home = &ctx.env.options.namespace;
        (ctx.egress
            .remove(&ctx.env.client, home, ctx.cluster(), ns, &mirror))
        .await?;
    }
    delete_endpoint_mirrors(ctx, ns, &mirror, &[]).await?;
    if let Some(ep) = cached_endpoints(ctx, ns, &mirror)
        && ownership(&ep.metadata, ctx.cluster()) == Ownership::Ours
        && remote_name(&ep.metadata, ctx.cluster()).is_some_and(|(_, n)| n == name)
    {
        let api: Api<Endpoints> = Api::namespaced(ctx.env.client.clone(), ns);
        delete_exact(ctx, &api, "endpoints", &ep).await?;
    }
    if let Some(svc) = cached_service(ctx, ns, &mirror)
        && ownership(&svc.metadata, ctx.cluster()) == Ownership::Ours
        && remote_name(&svc.metadata, ctx.cluster()).is_some_and(|(_, n)| n == name)
    {
        let api: Api<Service> = Api::namespaced(ctx.env.client.clone(), ns);
        delete_exact(ctx, &api, "services", &svc).await?;
        tracing::info!(link = %ctx.link_name, mirror = %format!("{ns}/{mirror}"), "deleted the mirror of an unexported or deleted service");
    }
    ctx.book.remove(ns, name);
    Ok(())
}

/// The probe Service `mc-probe-<link>` and its Endpoints in the Links' namespace.
async fn reconcile_probe(ctx: &Arc<Ctx>) -> Result<()> {
    let ns = ctx.env.options.namespace.clone();
    let Some(svc) = probe_service(&ctx.link, &ns) else {
        return Ok(());
    };
    let name = probe_service_name(ctx.cluster()).name;
    if let Applied::Conflict(message) = apply_service(ctx, false, svc).await? {
        tracing::warn!(link = %ctx.link_name, %message, "probe Service not maintained");
        return Ok(());
    }
    let (Some(gw), _) = gateway(ctx) else {
        return Ok(());
    };
    if let Some(ep) = probe_endpoints(&ctx.link, &ns, &gw)
        && let Applied::Conflict(message) = apply_endpoints(ctx, ep).await?
    {
        tracing::warn!(link = %ctx.link_name, probe = %name, %message, "probe Endpoints not maintained");
    }
    Ok(())
}
