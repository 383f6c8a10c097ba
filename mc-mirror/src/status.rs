//! The Link status: one `Mirrored` condition per remote Service, and the gateway summary.
//!
//! Reconciles record outcomes in a [`StatusBook`]; one writer task per Link turns the book into
//! `status.mirrorServices` and `status.gateway` and sends a JSON merge patch to the `status`
//! subresource only when the result differs from what the server holds. Writes are coalesced
//! (a burst of reconciles produces one patch), `lastTransitionTime` is kept unless the condition's
//! status changes (mc-core's `merge_condition`), and the entries are sorted by namespace and name
//! so the list is stable.

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::time::{Duration, Instant, SystemTime};

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::Api;
use kube::api::{Patch, PatchParams};
use mc_core::link::{
    Condition, FailureReason, GatewayStatus, LinkStatus, LocalRef, MIRROR_STATUS_BUDGET,
    MirrorOutcome, ObjectRef, STATUS_COMPLETE, ServiceStatus, TargetFailure, merge_condition,
    mirrored_condition, status_complete_condition, target_condition,
};
use serde::Serialize;
use serde::de::DeserializeOwned;
use tokio::sync::Notify;

use crate::probe::ProbeSummary;

/// Reason of the condition written when a local object with the mirror's name is not ours.
pub const CONFLICT: &str = FailureReason::Conflict.as_str();

/// What happened to one remote Service.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// Mirrored as `local`.
    Mirrored(LocalRef),
    /// Not mirrored: `reason` is `Error`, `InvalidService`, `MissingNamespace` or `Conflict`.
    Failed {
        /// The condition reason.
        reason: &'static str,
        /// A message naming the cause and the fix.
        message: String,
    },
}

impl Outcome {
    /// A failure of a kind mc-core knows.
    pub fn failed(reason: FailureReason, message: impl Into<String>) -> Outcome {
        Outcome::Failed {
            reason: reason.as_str(),
            message: message.into(),
        }
    }

    /// The condition reason (`Mirrored` on success).
    pub fn reason(&self) -> &'static str {
        match self {
            Outcome::Mirrored(_) => "Mirrored",
            Outcome::Failed { reason, .. } => reason,
        }
    }

    fn condition(&self, now: SystemTime) -> Option<Condition> {
        match self {
            Outcome::Mirrored(local) => mirrored_condition(
                &MirrorOutcome::Mirrored {
                    local: local.clone(),
                },
                now,
            )
            .ok(),
            Outcome::Failed { reason, message } => mirrored_condition(
                &MirrorOutcome::Failed {
                    reason: FailureReason::parse(reason).unwrap_or(FailureReason::Error),
                    message: message.clone(),
                },
                now,
            )
            .ok(),
        }
    }
}

/// An [`Outcome`] as the book keeps it: a mirror Service in the remote Service's namespace (the
/// usual case, 10,000 times on a large Link) is just its name instead of a four-string
/// reference.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Stored {
    /// Mirrored as the Service of this name in the remote Service's namespace.
    MirroredHere(Box<str>),
    /// Anything else, as it is (boxed: rare, and larger than the usual case).
    Other(Box<Outcome>),
}

impl Stored {
    /// `outcome` for a remote Service in `namespace`.
    fn of(namespace: &str, outcome: Outcome) -> Stored {
        match outcome {
            Outcome::Mirrored(local) if local == ObjectRef::service(namespace, &local.name) => {
                Stored::MirroredHere(local.name.into())
            }
            other => Stored::Other(Box::new(other)),
        }
    }

    /// The outcome again, for a remote Service in `namespace`.
    fn outcome(&self, namespace: &str) -> Outcome {
        match self {
            Stored::MirroredHere(name) => Outcome::Mirrored(ObjectRef::service(namespace, name)),
            Stored::Other(o) => (**o).clone(),
        }
    }

    fn reason(&self) -> &'static str {
        match self {
            Stored::MirroredHere(_) => "Mirrored",
            Stored::Other(o) => o.reason(),
        }
    }

    fn is_failure(&self) -> bool {
        matches!(self, Stored::Other(o) if matches!(**o, Outcome::Failed { .. }))
    }
}

#[derive(Debug, Default)]
struct Book {
    entries: BTreeMap<(String, String), Stored>,
    /// Entries found in the Link status at start, not yet confirmed by a reconcile.
    seeded: BTreeMap<(String, String), ServiceStatus>,
    gateway: Option<ProbeSummary>,
    /// The Link-level `TargetReachable` state: `None` until known, `Some(None)` when reachable.
    target: Option<Option<(TargetFailure, String)>>,
    /// The outcome of each federated member of this Link (`None` until the first pass).
    federated: Option<BTreeMap<(String, String), Outcome>>,
}

/// Outcomes of the reconciles of one Link, written to its status by [`StatusBook::writer`].
#[derive(Debug, Default)]
pub struct StatusBook {
    book: Mutex<Book>,
    dirty: Notify,
    /// Bytes of JSON `status.mirrorServices` may take ([`MIRROR_STATUS_BUDGET`]).
    budget: usize,
}

impl StatusBook {
    /// A book seeded with the entries of the Link's current status (so stale entries are
    /// re-examined and removed, and unchanged ones are not rewritten).
    pub fn seeded(status: Option<&LinkStatus>) -> StatusBook {
        let mut book = Book::default();
        for s in status.map(|s| s.mirror_services.as_slice()).unwrap_or(&[]) {
            book.seeded.insert(
                (s.remote_ref.namespace.clone(), s.remote_ref.name.clone()),
                s.clone(),
            );
        }
        StatusBook {
            book: Mutex::new(book),
            dirty: Notify::new(),
            budget: MIRROR_STATUS_BUDGET,
        }
    }

    /// The same book with `budget` bytes for `status.mirrorServices` instead of
    /// [`MIRROR_STATUS_BUDGET`].
    pub fn with_budget(mut self, budget: usize) -> StatusBook {
        self.budget = budget;
        self
    }

    /// Keys present in the seeded status (to be re-examined once the remote view has synced).
    pub fn seeded_keys(&self) -> Vec<(String, String)> {
        self.book
            .lock()
            .map(|b| b.seeded.keys().cloned().collect())
            .unwrap_or_default()
    }

    /// Records `outcome` for the remote Service `namespace/name`. Returns `true` when the reason
    /// changed or the entry is new (a transition worth an Event); an entry seeded from the
    /// status with the same reason is not new.
    pub fn set(&self, namespace: &str, name: &str, outcome: Outcome) -> bool {
        let Ok(mut b) = self.book.lock() else {
            return false;
        };
        let key = (namespace.to_string(), name.to_string());
        let seeded_reason = b
            .seeded
            .remove(&key)
            .and_then(|s| s.conditions.first().map(|c| c.reason.clone()));
        let stored = Stored::of(namespace, outcome.clone());
        let previous = b.entries.insert(key, stored.clone());
        if previous.as_ref() != Some(&stored) {
            self.dirty.notify_one();
        }
        let before = previous.map(|p| p.reason().to_string()).or(seeded_reason);
        before.as_deref() != Some(outcome.reason())
    }

    /// Records the outcome of every remote Service of this Link that joins (or cannot join) a
    /// federated Service, keyed by its `(namespace, name)`: `status.federatedServices`.
    pub fn set_federated(&self, outcomes: BTreeMap<(String, String), Outcome>) {
        let Ok(mut b) = self.book.lock() else {
            return;
        };
        if b.federated.as_ref() != Some(&outcomes) {
            b.federated = Some(outcomes);
            self.dirty.notify_one();
        }
    }

    /// Forgets `namespace/name` (unexported or deleted). Returns `true` if it was known.
    pub fn remove(&self, namespace: &str, name: &str) -> bool {
        let Ok(mut b) = self.book.lock() else {
            return false;
        };
        let key = (namespace.to_string(), name.to_string());
        let had = b.entries.remove(&key).is_some() | b.seeded.remove(&key).is_some();
        if had {
            self.dirty.notify_one();
        }
        had
    }

    /// The current outcome of `namespace/name`.
    pub fn get(&self, namespace: &str, name: &str) -> Option<Outcome> {
        self.book
            .lock()
            .ok()?
            .entries
            .get(&(namespace.to_string(), name.to_string()))
            .map(|s| s.outcome(namespace))
    }

    /// Keys whose last outcome is a failure (re-examined periodically).
    pub fn failed_keys(&self) -> Vec<(String, String)> {
        self.book
            .lock()
            .map(|b| {
                b.entries
                    .iter()
                    .filter(|(_, o)| o.is_failure())
                    .map(|(k, _)| k.clone())
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Records the latest probe summary.
    pub fn set_gateway(&self, summary: ProbeSummary) {
        if let Ok(mut b) = self.book.lock() {
            let alive_changed = b.gateway.as_ref().is_none_or(|g| g.alive != summary.alive);
            b.gateway = Some(summary);
            if alive_changed {
                self.dirty.notify_one();
            }
        }
    }

    /// Records whether the target cluster can be reached with the Link's credentials
    /// (`None`: it can), for the Link-level `TargetReachable` condition. Only a change of the
    /// reason or message marks the book dirty.
    pub fn set_target(&self, failure: Option<(TargetFailure, String)>) {
        if let Ok(mut b) = self.book.lock()
            && b.target.as_ref() != Some(&failure)
        {
            b.target = Some(failure);
            self.dirty.notify_one();
        }
    }

    /// The value of the gateway annotation the Link should carry: the liveness of the latest
    /// probe summary, or `None` before the first one.
    pub fn gateway_annotation(&self) -> Option<String> {
        let b = self.book.lock().ok()?;
        b.gateway
            .as_ref()
            .map(|g| GatewayStatus::annotation_value(g.alive))
    }

    /// Marks the book dirty (e.g. when the gateway summary is due for a refresh).
    pub fn touch(&self) {
        self.dirty.notify_one();
    }

    /// The status the book describes, starting from `base` (the status on the server) so that
    /// unchanged conditions keep their transition times.
    pub fn build(&self, base: &LinkStatus, now: SystemTime, refresh_gateway: bool) -> LinkStatus {
        let Ok(b) = self.book.lock() else {
            return base.clone();
        };
        let mut out = LinkStatus {
            mirror_services: Vec::new(),
            federated_services: base.federated_services.clone(),
            gateway: base.gateway.clone(),
            conditions: base.conditions.clone(),
        };
        if let Some(fed) = &b.federated {
            out.federated_services = federated_entries(fed, &base.federated_services, now);
        }
        if let Some(target) = &b.target {
            let failure = target.as_ref().map(|(f, m)| (*f, m.as_str()));
            if let Ok(c) = target_condition(failure, now) {
                out.set_condition(c);
            }
        }
        let index: std::collections::HashMap<(&str, &str), &ServiceStatus> = base
            .mirror_services
            .iter()
            .map(|s| {
                (
                    (s.remote_ref.namespace.as_str(), s.remote_ref.name.as_str()),
                    s,
                )
            })
            .collect();
        let mut keys: Vec<&(String, String)> = b.entries.keys().chain(b.seeded.keys()).collect();
        keys.sort();
        keys.dedup();
        let entry = |key: &&(String, String)| {
            let old = index.get(&(key.0.as_str(), key.1.as_str())).copied();
            match (b.entries.get(key), b.seeded.get(key)) {
                (Some(stored), _) => {
                    let cond = stored.outcome(&key.0).condition(now)?;
                    let mut conditions = old.map(|o| o.conditions.clone()).unwrap_or_default();
                    merge_condition(&mut conditions, cond);
                    conditions.retain(|c| c.type_ == "Mirrored");
                    Some(ServiceStatus {
                        controller_name: mc_core::labels::CONTROLLER_NAME.to_string(),
                        remote_ref: old.map_or_else(
                            || ObjectRef::service(&key.0, &key.1),
                            |o| o.remote_ref.clone(),
                        ),
                        conditions,
                    })
                }
                (None, Some(seeded)) => Some(old.cloned().unwrap_or_else(|| seeded.clone())),
                (None, None) => None,
            }
        };
        let (kept, total) = fit_entries(&keys, entry, self.budget);
        out.mirror_services = kept;
        self.complete_condition(&mut out, total, now);
        if let Some(g) = &b.gateway {
            let alive_changed = base.gateway.as_ref().is_none_or(|old| old.alive != g.alive);
            if alive_changed || refresh_gateway {
                out.gateway = Some(GatewayStatus {
                    alive: g.alive,
                    latency_ms: g.latency.map(millis),
                    p50_ms: g.p50.map(millis),
                    p99_ms: g.p99.map(millis),
                    last_probe_time: g
                        .last_probe
                        .and_then(|t| jiff::Timestamp::try_from(t).ok())
                        .map(Time),
                });
            }
        }
        out
    }

    /// Records the `StatusComplete` condition for a list of `total` entries of which
    /// `out.mirror_services` were kept (once there are entries to speak of).
    fn complete_condition(&self, out: &mut LinkStatus, total: usize, now: SystemTime) {
        let left_out = total.saturating_sub(out.mirror_services.len());
        let known = out.condition(STATUS_COMPLETE).is_some();
        if (left_out > 0 || known)
            && let Ok(c) = status_complete_condition(left_out, total, now)
        {
            out.set_condition(c);
        }
    }

    /// Writes the status whenever the book changes, at most once per `debounce` (or 2 ms per
    /// entry, when that is longer), refreshing the
    /// gateway summary at most once per `gateway_refresh` (immediately when liveness changes).
    /// Calls `on_write` with the resource (`links/status` or `links`) after each successful
    /// patch. Runs until dropped.
    ///
    /// The gateway's liveness also goes into the Link's
    /// [`GATEWAY_STATUS_ANNOTATION`](mc_core::link::GATEWAY_STATUS_ANNOTATION) (a merge patch
    /// of the Link's metadata), because upstream's CRD prunes `status.gateway`: `annotated` is
    /// the value the Link carries now, and the annotation is patched only when liveness
    /// changes, so a steady gateway costs no writes.
    ///
    /// `api` addresses the Links; the patch response is not read, so a Link type that skips
    /// the status while decoding (as the controller's watch type does) saves decoding the
    /// whole list after every write.
    #[allow(clippy::too_many_arguments)]
    pub async fn writer<K>(
        &self,
        api: Api<K>,
        link: String,
        mut base: LinkStatus,
        debounce: Duration,
        gateway_refresh: Duration,
        mut annotated: Option<String>,
        mut may_write: impl FnMut() -> bool,
        mut on_write: impl FnMut(&str),
    ) where
        K: kube::Resource<DynamicType = ()> + Clone + DeserializeOwned + std::fmt::Debug,
    {
        let mut last_gateway_write = Instant::now();
        loop {
            tokio::select! {
                () = self.dirty.notified() => {}
                () = tokio::time::sleep(gateway_refresh) => {}
            }
            // Each patch carries the whole list: space them by its size (1 000 entries: 2 s), so a
            // burst of reconciles does not turn into a stream of large writes.
            let entries = self
                .book
                .lock()
                .map(|b| b.entries.len() + b.seeded.len())
                .unwrap_or(0);
            let spacing =
                Duration::from_millis(2).saturating_mul(u32::try_from(entries).unwrap_or(u32::MAX));
            tokio::time::sleep(debounce.max(spacing)).await;
            if !may_write() {
                continue;
            }
            let wanted = self.gateway_annotation();
            if let Some(body) = annotation_patch(wanted.as_deref(), annotated.as_deref()) {
                match api
                    .patch(&link, &PatchParams::default(), &Patch::Merge(&body))
                    .await
                {
                    Ok(_) => {
                        on_write("links");
                        annotated = wanted;
                    }
                    Err(e) => {
                        tracing::warn!(link = %link, error = %e, "writing the Link's gateway annotation failed; retrying");
                        tokio::time::sleep(Duration::from_secs(1)).await;
                        self.dirty.notify_one();
                    }
                }
            }
            let refresh = last_gateway_write.elapsed() >= gateway_refresh;
            let next = self.build(&base, SystemTime::now(), refresh);
            if next == base {
                continue;
            }
            let body = StatusPatch::of(&next);
            match api
                .patch_status(&link, &PatchParams::default(), &Patch::Merge(&body))
                .await
            {
                Ok(_) => {
                    on_write("links/status");
                    if next.gateway != base.gateway {
                        last_gateway_write = Instant::now();
                    }
                    base = next;
                }
                Err(e) => {
                    tracing::warn!(link = %link, error = %e, "writing the Link status failed; retrying");
                    tokio::time::sleep(Duration::from_secs(1)).await;
                    self.dirty.notify_one();
                }
            }
        }
    }
}

/// The merge patch that sets the gateway annotation to `wanted`, or `None` when the Link
/// already carries it (`current`) or there is nothing to record yet.
/// `status.federatedServices` from `outcomes`, keeping the conditions (and their transition
/// times) of `old` entries that did not change.
fn federated_entries(
    outcomes: &BTreeMap<(String, String), Outcome>,
    old: &[ServiceStatus],
    now: SystemTime,
) -> Vec<ServiceStatus> {
    outcomes
        .iter()
        .filter_map(|((ns, name), outcome)| {
            let old = old
                .iter()
                .find(|o| &o.remote_ref.namespace == ns && &o.remote_ref.name == name);
            let mut conditions = old.map(|o| o.conditions.clone()).unwrap_or_default();
            merge_condition(&mut conditions, outcome.condition(now)?);
            conditions.retain(|c| c.type_ == "Mirrored");
            Some(ServiceStatus {
                controller_name: mc_core::labels::CONTROLLER_NAME.to_string(),
                remote_ref: old
                    .map_or_else(|| ObjectRef::service(ns, name), |o| o.remote_ref.clone()),
                conditions,
            })
        })
        .collect()
}

fn annotation_patch(wanted: Option<&str>, current: Option<&str>) -> Option<serde_json::Value> {
    let wanted = wanted?;
    (current != Some(wanted)).then(|| {
        serde_json::json!({"metadata": {"annotations": {
            mc_core::link::GATEWAY_STATUS_ANNOTATION: wanted,
        }}})
    })
}

/// The entries of `keys` (by `entry`; `None` skips a key) that fit in `budget` bytes of JSON,
/// chosen exactly as mc-core's [`fit_mirror_services`](mc_core::link::fit_mirror_services) chooses them (every failure first, then
/// healthy entries, each in key order, as long as they fit), and the number of entries. Unlike
/// building the whole list and cutting it, at most the kept entries exist at once: a healthy
/// entry is built a second time instead of being kept while the failures are placed.
fn fit_entries<K>(
    keys: &[K],
    entry: impl Fn(&K) -> Option<ServiceStatus>,
    budget: usize,
) -> (Vec<ServiceStatus>, usize) {
    let healthy = |e: &ServiceStatus| e.conditions.iter().all(|c| c.status == "True");
    let mut kept: Vec<(usize, ServiceStatus)> = Vec::new();
    let mut used = 0usize;
    let mut total = 0usize;
    let mut healthy_keys = Vec::new();
    let mut place = |i: usize, e: ServiceStatus, used: &mut usize| {
        let size = json_size(&e);
        if used.saturating_add(size) <= budget {
            *used += size;
            kept.push((i, e));
        }
    };
    for (i, key) in keys.iter().enumerate() {
        let Some(e) = entry(key) else { continue };
        total += 1;
        if healthy(&e) {
            healthy_keys.push(i);
        } else {
            place(i, e, &mut used);
        }
    }
    for i in healthy_keys {
        if let Some(e) = keys.get(i).and_then(&entry) {
            place(i, e, &mut used);
        }
    }
    kept.sort_by_key(|(i, _)| *i);
    (kept.into_iter().map(|(_, e)| e).collect(), total)
}

/// The bytes of `e` as JSON plus one (its comma in the list), as mc-core's
/// [`fit_mirror_services`](mc_core::link::fit_mirror_services) counts them.
fn json_size(e: &ServiceStatus) -> usize {
    struct Count(usize);
    impl std::io::Write for Count {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0 += buf.len();
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let mut count = Count(0);
    match serde_json::to_writer(&mut count, e) {
        Ok(()) => count.0.saturating_add(1),
        Err(_) => usize::MAX,
    }
}

/// The body of a status merge patch: `mirrorServices`, `federatedServices`, `gateway` (`null` removes it) and
/// `conditions`, serialised straight from the built status (no intermediate JSON tree).
#[derive(Debug, Serialize)]
struct StatusPatch<'a> {
    status: StatusFields<'a>,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct StatusFields<'a> {
    mirror_services: &'a [ServiceStatus],
    federated_services: &'a [ServiceStatus],
    gateway: Option<&'a GatewayStatus>,
    conditions: &'a [Condition],
}

impl<'a> StatusPatch<'a> {
    fn of(status: &'a LinkStatus) -> StatusPatch<'a> {
        StatusPatch {
            status: StatusFields {
                mirror_services: &status.mirror_services,
                federated_services: &status.federated_services,
                gateway: status.gateway.as_ref(),
                conditions: &status.conditions,
            },
        }
    }
}

fn millis(d: Duration) -> u64 {
    mc_core::link::latency_ms(d)
}

#[cfg(test)]
mod tests {

    #[test]
    fn the_gateway_annotation_is_patched_only_when_liveness_changes() {
        assert_eq!(annotation_patch(None, None), None);
        assert_eq!(annotation_patch(None, Some(r#"{"alive":true}"#)), None);
        let alive = GatewayStatus::annotation_value(true);
        let dead = GatewayStatus::annotation_value(false);
        assert_eq!(annotation_patch(Some(&alive), Some(&alive)), None);
        let patch = annotation_patch(Some(&dead), Some(&alive)).unwrap();
        assert_eq!(
            patch["metadata"]["annotations"][mc_core::link::GATEWAY_STATUS_ANNOTATION],
            r#"{"alive":false}"#
        );
        assert!(annotation_patch(Some(&alive), None).is_some());
    }
    use super::*;
    use mc_core::link::fit_mirror_services;

    fn t(secs: u64) -> SystemTime {
        SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_000 + secs)
    }

    #[test]
    fn the_patch_body_carries_list_gateway_and_conditions() {
        let book = StatusBook::seeded(None);
        book.set(
            "shop",
            "web",
            Outcome::Mirrored(ObjectRef::service("shop", "web-east")),
        );
        book.set_target(None);
        book.set_federated(BTreeMap::from([(
            ("shop".to_string(), "db".to_string()),
            Outcome::Mirrored(ObjectRef::service("shop", "db-federated")),
        )]));
        let status = book.build(&LinkStatus::default(), t(0), true);
        assert_eq!(status.federated_services.len(), 1);
        assert_eq!(status.federated_services[0].remote_ref.name, "db");
        // Rebuilt later from the written status: unchanged, transition times kept.
        assert_eq!(
            book.build(&status, t(60), false).federated_services,
            status.federated_services
        );
        assert_eq!(
            serde_json::to_value(StatusPatch::of(&status)).unwrap(),
            serde_json::json!({
                "status": {
                    "mirrorServices": status.mirror_services,
                    "federatedServices": status.federated_services,
                    "gateway": null,
                    "conditions": status.conditions,
                }
            })
        );
        let mut with_gateway = status.clone();
        with_gateway.gateway = Some(GatewayStatus {
            alive: false,
            latency_ms: Some(3),
            p50_ms: None,
            p99_ms: None,
            last_probe_time: None,
        });
        let v = serde_json::to_value(StatusPatch::of(&with_gateway)).unwrap();
        assert_eq!(v["status"]["gateway"]["alive"], false);
        assert_eq!(v["status"]["mirrorServices"][0]["remoteRef"]["name"], "web");
        assert_eq!(v["status"]["conditions"][0]["type"], "TargetReachable");
    }

    #[test]
    fn outcomes_are_stored_compactly_and_read_back_as_they_were() {
        let book = StatusBook::seeded(None);
        let outcomes = [
            Outcome::Mirrored(ObjectRef::service("shop", "web-east")),
            Outcome::Mirrored(ObjectRef::service("elsewhere", "web-east")),
            Outcome::failed(FailureReason::Conflict, "not ours"),
        ];
        for o in &outcomes {
            book.set("shop", "web", o.clone());
            assert_eq!(book.get("shop", "web").as_ref(), Some(o));
        }
        assert!(matches!(
            Stored::of("shop", outcomes[0].clone()),
            Stored::MirroredHere(_)
        ));
        assert!(matches!(
            Stored::of("shop", outcomes[1].clone()),
            Stored::Other(_)
        ));
        assert_eq!(
            book.failed_keys(),
            [("shop".to_string(), "web".to_string())]
        );
    }

    #[test]
    fn transitions_and_stable_times() {
        let book = StatusBook::seeded(None);
        let local = ObjectRef::service("shop", "web-east");
        assert!(book.set("shop", "web", Outcome::Mirrored(local.clone())));
        assert!(!book.set("shop", "web", Outcome::Mirrored(local.clone())));
        let s1 = book.build(&LinkStatus::default(), t(0), false);
        assert_eq!(s1.mirror_services.len(), 1);
        assert_eq!(s1.mirror_services[0].conditions[0].reason, "Mirrored");
        // Rebuilding later from the written status changes nothing (no write).
        let s2 = book.build(&s1, t(100), false);
        assert_eq!(s1, s2);
        // A conflict is a transition, with its own reason and a new time.
        assert!(book.set(
            "shop",
            "web",
            Outcome::Failed {
                reason: CONFLICT,
                message: "not ours".into()
            }
        ));
        let s3 = book.build(&s2, t(200), false);
        let c = &s3.mirror_services[0].conditions[0];
        assert_eq!(
            (c.status.as_str(), c.reason.as_str()),
            ("False", "Conflict")
        );
        assert!(c.local_ref.is_none());
        assert_ne!(
            c.last_transition_time,
            s2.mirror_services[0].conditions[0].last_transition_time
        );
        assert!(book.remove("shop", "web"));
        assert!(book.build(&s3, t(300), false).mirror_services.is_empty());
    }

    #[test]
    fn seeded_entries_survive_until_examined() {
        let book0 = StatusBook::seeded(None);
        book0.set(
            "a",
            "x",
            Outcome::failed(
                FailureReason::MissingNamespace,
                "Namespace a does not exist",
            ),
        );
        let base = book0.build(&LinkStatus::default(), t(0), false);
        let book = StatusBook::seeded(Some(&base));
        assert_eq!(book.seeded_keys(), vec![("a".to_string(), "x".to_string())]);
        assert_eq!(
            book.build(&base, t(50), false),
            base,
            "nothing to write before reconciles"
        );
        // The same outcome again: no transition, no change.
        assert!(!book.set(
            "a",
            "x",
            Outcome::failed(
                FailureReason::MissingNamespace,
                "Namespace a does not exist"
            )
        ));
        assert_eq!(book.build(&base, t(60), false), base);
    }

    #[test]
    fn target_condition_follows_the_link_problem() {
        let book = StatusBook::seeded(None);
        let base = book.build(&LinkStatus::default(), t(0), false);
        assert!(base.conditions.is_empty(), "unknown until the worker says");
        book.set_target(Some((
            TargetFailure::InvalidCredentials,
            "the API server answered 401 Unauthorized".into(),
        )));
        let down = book.build(&base, t(10), false);
        let c = &down.conditions[0];
        assert_eq!(
            (c.type_.as_str(), c.status.as_str(), c.reason.as_str()),
            ("TargetReachable", "False", "InvalidCredentials")
        );
        assert!(c.message.contains("401"));
        assert_eq!(book.build(&down, t(20), false), down, "no change: no write");
        book.set_target(None);
        let up = book.build(&down, t(30), false);
        assert_eq!(
            (
                up.conditions[0].status.as_str(),
                up.conditions[0].reason.as_str()
            ),
            ("True", "Connected")
        );
        assert_ne!(
            up.conditions[0].last_transition_time,
            c.last_transition_time
        );
        assert_eq!(up.conditions.len(), 1);
    }

    #[test]
    fn entries_are_chosen_as_mc_core_cuts_the_whole_list() {
        // Failures and healthy entries of varied sizes, at budgets from nothing to everything.
        let entries: Vec<ServiceStatus> = (0..60)
            .map(|i| {
                let name = format!("svc-{i:02}-{}", "x".repeat(i * 7 % 23));
                let outcome = if i % 7 == 3 {
                    MirrorOutcome::Failed {
                        reason: FailureReason::Conflict,
                        message: "m".repeat(i * 13 % 50),
                    }
                } else {
                    MirrorOutcome::Mirrored {
                        local: ObjectRef::service("shop", &format!("{name}-east")),
                    }
                };
                ServiceStatus {
                    controller_name: mc_core::labels::CONTROLLER_NAME.to_string(),
                    remote_ref: ObjectRef::service("shop", &name),
                    conditions: vec![mirrored_condition(&outcome, t(0)).unwrap()],
                }
            })
            .collect();
        let whole = serde_json::to_vec(&entries).unwrap().len();
        for budget in [0, 150, 1_000, 2_345, 5_000, whole / 2, whole, whole + 100] {
            let expected = fit_mirror_services(entries.clone(), budget);
            let keys: Vec<usize> = (0..entries.len()).collect();
            let (kept, total) = fit_entries(&keys, |i| entries.get(*i).cloned(), budget);
            assert_eq!(
                (kept.clone(), total - kept.len()),
                expected,
                "budget {budget}"
            );
        }
        // Skipped keys count for nothing.
        let keys = [0usize, 1, 2];
        let (kept, total) = fit_entries(&keys, |i| (*i != 1).then(|| entries[*i].clone()), whole);
        assert_eq!((kept.len(), total), (2, 2));
    }

    #[test]
    fn an_oversized_list_is_cut_to_the_budget_and_says_so() {
        let book = StatusBook::seeded(None).with_budget(2_000);
        for i in 0..40 {
            book.set(
                "shop",
                &format!("svc-{i:02}"),
                Outcome::Mirrored(ObjectRef::service("shop", &format!("svc-{i:02}-east"))),
            );
        }
        book.set(
            "shop",
            "svc-39",
            Outcome::failed(FailureReason::Conflict, "not ours"),
        );
        let s = book.build(&LinkStatus::default(), t(0), false);
        assert!(s.mirror_services.len() < 40);
        assert!(serde_json::to_vec(&s.mirror_services).unwrap().len() <= 2_001);
        assert!(
            s.mirror_services
                .iter()
                .any(|e| e.remote_ref.name == "svc-39"),
            "the failure is listed"
        );
        let c = s.condition(STATUS_COMPLETE).unwrap();
        assert_eq!(
            (c.status.as_str(), c.reason.as_str()),
            ("False", "SizeLimit")
        );
        assert_eq!(book.build(&s, t(5), false), s, "stable: no rewrite");
        // Back under the budget: complete again.
        for i in 0..36 {
            book.remove("shop", &format!("svc-{i:02}"));
        }
        let s = book.build(&s, t(10), false);
        assert_eq!(s.mirror_services.len(), 4);
        let c = s.condition(STATUS_COMPLETE).unwrap();
        assert_eq!((c.status.as_str(), c.reason.as_str()), ("True", "Complete"));
        // A small Link never gets the condition at all.
        let small = StatusBook::seeded(None);
        small.set(
            "a",
            "b",
            Outcome::Mirrored(ObjectRef::service("a", "b-east")),
        );
        assert!(
            small
                .build(&LinkStatus::default(), t(0), false)
                .conditions
                .is_empty()
        );
    }

    #[test]
    fn gateway_summary_written_on_liveness_change_only() {
        let book = StatusBook::seeded(None);
        let mut base = LinkStatus::default();
        book.set_gateway(ProbeSummary {
            alive: true,
            latency: Some(Duration::from_millis(3)),
            ..ProbeSummary::default()
        });
        base = book.build(&base, t(0), false);
        assert_eq!(base.gateway.as_ref().map(|g| g.alive), Some(true));
        book.set_gateway(ProbeSummary {
            alive: true,
            latency: Some(Duration::from_millis(9)),
            ..ProbeSummary::default()
        });
        assert_eq!(
            book.build(&base, t(1), false),
            base,
            "latency alone is not written"
        );
        assert_ne!(book.build(&base, t(1), true), base, "but is on refresh");
        book.set_gateway(ProbeSummary {
            alive: false,
            ..ProbeSummary::default()
        });
        assert_eq!(
            book.build(&base, t(2), false).gateway.map(|g| g.alive),
            Some(false)
        );
    }
}
