//! Egress mode for federated Services: unmeshed Pods reach `<svc>-federated` through the
//! egress, which balances each connection over the members (see
//! [`mc_core::egress::Member`] and `docs/egress.md`).
//!
//! Each worker of a Link in egress mode follows the federated Services of this cluster (mc's
//! `<svc>-federated`, whose members the federated-service controller lists in annotations) and
//! the HTTPRoutes that set their weights. For each federated Service that lists the Link's
//! cluster as a member it keeps in the route table:
//! - its own cluster's member, when that cluster is listed: the remote Service's target, the
//!   Link's gateway and identity, the weight, and whether the remote Service has ready
//!   endpoints;
//! - the local member, when this cluster is listed: the local Service's ClusterIP and port, the
//!   weight, and whether it has ready endpoints (every worker writes the same value);
//! - the Endpoints of `<svc>-federated`, pointing at the egress Pods on the route's ports.
//!
//! Everything is recomputed on a change of a federated Service, an HTTPRoute, the egress Pods or
//! the gateway, and every [`RESYNC`] (readiness of members is read then, not watched).

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::StreamExt as _;
use k8s_openapi::api::core::v1::{Endpoints, Service};
use kube::api::{ApiResource, DynamicObject, GroupVersionKind, ListParams, PostParams};
use kube::runtime::watcher::{self, Event};
use kube::{Api, Client, ResourceExt as _};
use mc_core::egress::{
    LOCAL_MEMBER, Member, RouteTable, federated_endpoints, route_key, service_ports,
};
use mc_core::httproute::{self, HttpRoute};
use mc_core::mirror::{Members, Ownership, federated_ownership};
use tokio::sync::Notify;

use crate::worker::Ctx;
use crate::{Error, Result};

/// How often everything is recomputed without an event (member readiness is read then).
pub(crate) const RESYNC: Duration = Duration::from_secs(10);

/// What the watches have seen, shared with the reconcile loop.
#[derive(Default)]
struct Seen {
    federated: Mutex<BTreeMap<(String, String), Service>>,
    routes: Mutex<Vec<HttpRoute>>,
    changed: Notify,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    match m.lock() {
        Ok(g) => g,
        Err(p) => p.into_inner(),
    }
}

/// Runs the egress side of federated Services for one Link's worker (egress mode only).
pub(crate) async fn run(ctx: Arc<Ctx>) {
    let seen = Arc::new(Seen::default());
    // Dropped (and the watches aborted) when the worker stops.
    let mut watches = tokio::task::JoinSet::new();
    watches.spawn(watch_federated(ctx.env.client.clone(), seen.clone()));
    watches.spawn(watch_routes(ctx.env.client.clone(), seen.clone()));
    let mut pods = ctx.egress.pods.clone();
    let mut gateway = ctx.gateway.clone();
    loop {
        if let Err(e) = reconcile_all(&ctx, &seen).await {
            tracing::warn!(link = %ctx.link_name, error = %e, "federated Services through the egress; retrying");
        }
        tokio::select! {
            () = seen.changed.notified() => {}
            _ = pods.changed() => {}
            _ = gateway.changed() => {}
            () = tokio::time::sleep(RESYNC) => {}
        }
        // Let a burst of events settle into one pass.
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Follows mc's federated Services in every namespace.
async fn watch_federated(client: Client, seen: Arc<Seen>) {
    let api: Api<Service> = Api::all(client);
    let config = watcher::Config::default().labels(crate::federated::FEDERATED_SELECTOR);
    let mut stream = std::pin::pin!(watcher::watcher(api, config));
    let mut relist = BTreeMap::new();
    while let Some(ev) = stream.next().await {
        let key = |s: &Service| (s.namespace().unwrap_or_default(), s.name_any());
        match ev {
            Ok(Event::Init) => relist.clear(),
            Ok(Event::InitApply(s)) => {
                relist.insert(key(&s), s);
            }
            Ok(Event::InitDone) => *lock(&seen.federated) = std::mem::take(&mut relist),
            Ok(Event::Apply(s)) => {
                lock(&seen.federated).insert(key(&s), s);
            }
            Ok(Event::Delete(s)) => {
                lock(&seen.federated).remove(&key(&s));
            }
            Err(e) => {
                tracing::warn!(error = %e, "watching federated Services; retrying");
                tokio::time::sleep(Duration::from_secs(1)).await;
                continue;
            }
        }
        seen.changed.notify_one();
    }
}

/// Follows Gateway API HTTPRoutes (`gateway.networking.k8s.io/v1`). Without the CRD there are
/// none: every member weighs 1, and the CRD is looked for again every 10 seconds.
async fn watch_routes(client: Client, seen: Arc<Seen>) {
    let gvk = GroupVersionKind::gvk("gateway.networking.k8s.io", "v1", "HTTPRoute");
    let api: Api<DynamicObject> = Api::all_with(client, &ApiResource::from_gvk(&gvk));
    let mut told = false;
    loop {
        match api.list(&ListParams::default().limit(1)).await {
            Ok(_) => break,
            Err(kube::Error::Api(s)) if s.code == 404 => {
                if !std::mem::replace(&mut told, true) {
                    tracing::info!(
                        "the HTTPRoute CRD (gateway.networking.k8s.io/v1) is not installed: federated members weigh 1 each"
                    );
                }
            }
            Err(e) => {
                tracing::warn!(error = %e, "cannot list HTTPRoutes; federated members weigh 1 each until it can")
            }
        }
        tokio::time::sleep(Duration::from_secs(10)).await;
    }
    let mut stream = std::pin::pin!(watcher::watcher(api, watcher::Config::default()));
    let mut store: BTreeMap<(String, String), HttpRoute> = BTreeMap::new();
    let mut relist = BTreeMap::new();
    while let Some(ev) = stream.next().await {
        let parse = |o: DynamicObject| -> Option<((String, String), HttpRoute)> {
            let key = (o.namespace().unwrap_or_default(), o.name_any());
            let value = serde_json::to_value(&o).ok()?;
            match serde_json::from_value::<HttpRoute>(value) {
                Ok(r) => Some((key, r)),
                Err(e) => {
                    tracing::warn!(route = %format!("{}/{}", key.0, key.1), error = %e, "HTTPRoute left out");
                    None
                }
            }
        };
        match ev {
            Ok(Event::Init) => relist.clear(),
            Ok(Event::InitApply(o)) => relist.extend(parse(o)),
            Ok(Event::InitDone) => store = std::mem::take(&mut relist),
            Ok(Event::Apply(o)) => store.extend(parse(o)),
            Ok(Event::Delete(o)) => {
                store.remove(&(o.namespace().unwrap_or_default(), o.name_any()));
            }
            Err(e) => {
                tracing::warn!(error = %e, "watching HTTPRoutes; retrying");
                tokio::time::sleep(Duration::from_secs(1)).await;
                continue;
            }
        }
        *lock(&seen.routes) = store.values().cloned().collect();
        seen.changed.notify_one();
    }
}

/// One member of one port of a federated Service, as this worker wants it.
struct Want {
    key: String,
    member: String,
    value: Member,
}

/// Brings every federated Service's routes and Endpoints up to date, and removes this worker's
/// members from the routes of federated Services that are gone.
async fn reconcile_all(ctx: &Ctx, seen: &Seen) -> Result<()> {
    let federated: Vec<Service> = lock(&seen.federated).values().cloned().collect();
    let routes = lock(&seen.routes).clone();
    // Keys of every federated Service (the local member leaves only routes of gone ones) and
    // of those listing this Link's cluster (the only ones this worker serves).
    let (mut all_keys, mut own_keys) = (BTreeSet::new(), BTreeSet::new());
    for fed in federated.iter().filter(|f| is_ours(&f.metadata)) {
        all_keys.extend(port_keys(fed));
        let members = Members::from_meta(&fed.metadata);
        if !members.remote.iter().any(|(_, c)| c == ctx.cluster()) {
            continue;
        }
        own_keys.extend(port_keys(fed));
        if let Err(e) = reconcile_one(ctx, fed, &routes).await {
            tracing::warn!(link = %ctx.link_name, service = %format!("{}/{}", fed.namespace().unwrap_or_default(), fed.name_any()), error = %e, "federated Service through the egress; retrying");
        }
    }
    let cluster = ctx.cluster().to_owned();
    let stale = |t: &mut RouteTable| {
        let own = t.remove_member(&cluster, "", &own_keys);
        own | t.remove_member(LOCAL_MEMBER, "", &all_keys)
    };
    if ctx.egress.cached().is_none_or(|mut t| stale(&mut t)) {
        let home = &ctx.env.options.namespace;
        ctx.egress
            .update(&ctx.env.client, home, |t| Ok(((), stale(t))))
            .await?;
    }
    Ok(())
}

/// The routes and Endpoints of one federated Service.
async fn reconcile_one(ctx: &Ctx, fed: &Service, routes: &[HttpRoute]) -> Result<()> {
    let wants = wants(ctx, fed, routes).await?;
    let table = apply(ctx, fed, wants).await?;
    write_endpoints(ctx, fed, &table).await
}

/// Whether an object carries mc's mark of a federated Service (or of its Endpoints).
fn is_ours(meta: &kube::api::ObjectMeta) -> bool {
    federated_ownership(meta) == Ownership::Ours
}

/// The route keys of every port of federated Service `fed`.
fn port_keys(fed: &Service) -> Vec<String> {
    let (ns, name) = (fed.namespace().unwrap_or_default(), fed.name_any());
    service_ports(fed)
        .iter()
        .filter_map(|p| u16::try_from(p.port).ok())
        .map(|p| route_key(&ns, &name, p))
        .collect()
}

/// The members this worker wants in the routes of `fed`: its own cluster's and the local one.
async fn wants(ctx: &Ctx, fed: &Service, routes: &[HttpRoute]) -> Result<Vec<Want>> {
    let (ns, name) = (fed.namespace().unwrap_or_default(), fed.name_any());
    let members = Members::from_meta(&fed.metadata);
    let own = members
        .remote
        .iter()
        .find(|(_, c)| c == ctx.cluster())
        .map(|(svc, _)| svc.clone());
    let remote = match &own {
        Some(svc) => Some((svc.clone(), remote_ready(ctx, &ns, svc).await?)),
        None => None,
    };
    let local = match &members.local {
        Some(svc) => local_member(ctx, &ns, svc).await?.map(|l| (svc.clone(), l)),
        None => None,
    };
    let (gateways, identity) = gateway(ctx);
    let mut out = Vec::new();
    for port in service_ports(fed)
        .iter()
        .filter_map(|p| u16::try_from(p.port).ok())
    {
        let key = route_key(&ns, &name, port);
        let split = httproute::split_for(routes, &ns, &name, port);
        let weights = httproute::member_weights(
            split.as_ref(),
            members.local.as_deref().map(|l| (l, LOCAL_MEMBER)),
            &members.remote,
        );
        if let Some((svc, ready)) = &remote {
            out.push(Want {
                key: key.clone(),
                member: ctx.cluster().to_owned(),
                value: Member {
                    target: format!("{svc}.{ns}.svc.{}:{port}", ctx.link.cluster_domain),
                    gateways: gateways.clone(),
                    identity: identity.clone(),
                    weight: weights.get(ctx.cluster()).copied().unwrap_or(0),
                    ready: *ready && !gateways.is_empty(),
                },
            });
        }
        if let Some((_, (ip, ports, ready))) = &local
            && ports.contains(&port)
        {
            out.push(Want {
                key: key.clone(),
                member: LOCAL_MEMBER.to_owned(),
                value: Member {
                    target: SocketAddr::new(*ip, port).to_string(),
                    gateways: Vec::new(),
                    identity: String::new(),
                    weight: weights.get(LOCAL_MEMBER).copied().unwrap_or(0),
                    ready: *ready,
                },
            });
        }
    }
    Ok(out)
}

/// The Link's gateway addresses (`ip:port`, once resolved) and identity.
fn gateway(ctx: &Ctx) -> (Vec<String>, String) {
    let (gw, _) = crate::reconcile::gateway(ctx);
    (
        crate::egress::gateway_addresses(gw.as_ref()),
        crate::reconcile::gateway_identity(ctx),
    )
}

/// Whether the remote Service `ns/svc` has ready endpoints (read by name in the target).
async fn remote_ready(ctx: &Ctx, ns: &str, svc: &str) -> Result<bool> {
    let Some(view) = ctx.remote() else {
        return Ok(false);
    };
    // Listed by name: the target's RBAC grants list and watch, not get.
    let api: Api<Endpoints> = Api::namespaced(view.client.clone(), ns);
    let params = ListParams::default().fields(&format!("metadata.name={svc}"));
    let listed = api.list(&params).await.map_err(|e| {
        Error::api(
            format!("listing the Endpoints {ns}/{svc} in the target cluster"),
            e,
        )
    })?;
    Ok(listed.items.iter().any(has_ready))
}

/// The local member `ns/svc`: its ClusterIP, ports and whether it has ready endpoints; `None`
/// when it is gone or has no ClusterIP (headless Services cannot be federated).
async fn local_member(
    ctx: &Ctx,
    ns: &str,
    svc: &str,
) -> Result<Option<(std::net::IpAddr, BTreeSet<u16>, bool)>> {
    let services: Api<Service> = Api::namespaced(ctx.env.client.clone(), ns);
    let Some(s) = services
        .get_opt(svc)
        .await
        .map_err(|e| Error::api(format!("reading the local Service {ns}/{svc}"), e))?
    else {
        return Ok(None);
    };
    let Some(ip) = s
        .spec
        .as_ref()
        .and_then(|sp| sp.cluster_ip.as_deref())
        .and_then(|ip| ip.parse().ok())
    else {
        return Ok(None);
    };
    let ports = service_ports(&s)
        .iter()
        .filter_map(|p| u16::try_from(p.port).ok())
        .collect();
    let endpoints: Api<Endpoints> = Api::namespaced(ctx.env.client.clone(), ns);
    let ep = endpoints
        .get_opt(svc)
        .await
        .map_err(|e| Error::api(format!("reading the local Endpoints {ns}/{svc}"), e))?;
    Ok(Some((ip, ports, ep.as_ref().is_some_and(has_ready))))
}

fn has_ready(ep: &Endpoints) -> bool {
    !crate::egress::ready_ips(ep).is_empty()
}

/// Sets this worker's members of `fed`'s routes to `wants` (removing the ones it no longer
/// wants) and returns the table as written.
async fn apply(ctx: &Ctx, fed: &Service, wants: Vec<Want>) -> Result<RouteTable> {
    let (ns, name) = (fed.namespace().unwrap_or_default(), fed.name_any());
    let prefix = format!("{ns}.{name}.");
    let cluster = ctx.cluster().to_owned();
    let keep = |member: &str| -> BTreeSet<String> {
        wants
            .iter()
            .filter(|w| w.member == member)
            .map(|w| w.key.clone())
            .collect()
    };
    let (keep_own, keep_local) = (keep(&cluster), keep(LOCAL_MEMBER));
    let f = |t: &mut RouteTable| -> Result<(RouteTable, bool)> {
        let mut changed = t.remove_member(&cluster, &prefix, &keep_own);
        changed |= t.remove_member(LOCAL_MEMBER, &prefix, &keep_local);
        for w in &wants {
            let authority = format!("{name}.{ns}.svc:{}", &w.key[prefix.len()..]);
            changed |= t
                .upsert_member(&w.key, &authority, &w.member, w.value.clone())?
                .1;
        }
        Ok((t.clone(), changed))
    };
    if let Some(mut cached) = ctx.egress.cached() {
        let (table, changed) = f(&mut cached)?;
        if !changed {
            return Ok(table);
        }
    }
    let home = &ctx.env.options.namespace;
    ctx.egress.update(&ctx.env.client, home, f).await
}

/// Points `fed`'s Endpoints at the egress Pods on its route ports; never touches Endpoints
/// that are not mc's.
async fn write_endpoints(ctx: &Ctx, fed: &Service, table: &RouteTable) -> Result<()> {
    let (ns, name) = (fed.namespace().unwrap_or_default(), fed.name_any());
    let listen = table.federated_ports(&ns, &name);
    let ready = port_keys(fed).iter().any(|k| {
        table
            .get(k)
            .is_some_and(|r| r.members.values().any(|m| m.ready && m.weight > 0))
    });
    let pods = ctx.egress.pods.borrow().clone();
    let desired = federated_endpoints(fed, &pods, &listen, ready);
    let api: Api<Endpoints> = Api::namespaced(ctx.env.client.clone(), &ns);
    let current = api
        .get_opt(&name)
        .await
        .map_err(|e| Error::api(format!("reading the Endpoints {ns}/{name}"), e))?;
    match current {
        Some(cur) if !is_ours(&cur.metadata) => {
            tracing::warn!(endpoints = %format!("{ns}/{name}"), "Endpoints of the federated Service are not mc's; left alone");
            Ok(())
        }
        Some(cur) if cur.subsets == desired.subsets => Ok(()),
        Some(mut cur) => {
            cur.subsets = desired.subsets;
            api.replace(&name, &PostParams::default(), &cur)
                .await
                .map_err(|e| Error::api(format!("updating the Endpoints {ns}/{name}"), e))?;
            ctx.wrote("update", "endpoints");
            Ok(())
        }
        None => {
            api.create(&PostParams::default(), &desired)
                .await
                .map_err(|e| Error::api(format!("creating the Endpoints {ns}/{name}"), e))?;
            ctx.wrote("create", "endpoints");
            Ok(())
        }
    }
}
