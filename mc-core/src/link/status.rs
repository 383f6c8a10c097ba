//! `Link.status`: one entry per mirrored (or federated) remote Service, each with a single
//! `Mirrored` condition, plus mc's gateway summary.
//!
//! Unlike upstream, which resets `lastTransitionTime` on every write, [`merge_condition`] keeps it
//! unless the condition's status changes, and reports whether anything changed at all, so the
//! controller can skip the write.

use std::time::SystemTime;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use serde::{Deserialize, Serialize};

use crate::labels::CONTROLLER_NAME;
use crate::{Error, Result};

/// The condition type the controller writes for each remote Service.
pub const MIRRORED: &str = "Mirrored";

/// The Link-level condition type (mc): whether the target cluster's API server can be reached
/// with the Link's credentials. `True` with reason `Connected`, or `False` with a
/// [`TargetFailure`] reason.
pub const TARGET_REACHABLE: &str = "TargetReachable";

/// The Link-level condition type (mc) that says whether `status.mirrorServices` lists every
/// remote Service: `False` with reason `SizeLimit` when [`fit_mirror_services`] left entries out.
pub const STATUS_COMPLETE: &str = "StatusComplete";

/// How many bytes of JSON `status.mirrorServices` may take. A Link is one object, stored in one
/// etcd value (1.5 MiB by default, for the whole object with its spec and history): about
/// 2,000 entries fit in this budget, while 10,000 entries (2.3 MB) would make every status
/// write fail.
pub const MIRROR_STATUS_BUDGET: usize = 512 * 1024;

/// `status` of a Link.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct LinkStatus {
    /// `mirrorServices`: one entry per remote Service mirrored through this Link.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub mirror_services: Vec<ServiceStatus>,
    /// `federatedServices`: one entry per remote Service joined to a federated Service.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub federated_services: Vec<ServiceStatus>,
    /// `gateway` (mc only): the probe worker's view of the gateway.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gateway: Option<GatewayStatus>,
    /// `conditions` (mc only): Link-level conditions, e.g. [`TARGET_REACHABLE`].
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,
}

/// One remote Service's entry in the status.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ServiceStatus {
    /// `controllerName`: always `linkerd.io/service-mirror`.
    pub controller_name: String,
    /// `remoteRef`: the remote Service.
    pub remote_ref: RemoteRef,
    /// `conditions`: a single `Mirrored` condition in practice.
    #[serde(default)]
    pub conditions: Vec<Condition>,
}

/// A reference to an object (`remoteRef` or `localRef`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ObjectRef {
    /// API group; `core` for Services (schema default).
    #[serde(default = "core_group")]
    pub group: String,
    /// Kind; `Service` (schema default).
    #[serde(default = "service_kind")]
    pub kind: String,
    /// Name.
    pub name: String,
    /// Namespace.
    pub namespace: String,
}

/// The remote Service of a status entry.
pub type RemoteRef = ObjectRef;
/// The local mirror Service of a condition.
pub type LocalRef = ObjectRef;

fn core_group() -> String {
    "core".to_string()
}

fn service_kind() -> String {
    "Service".to_string()
}

impl ObjectRef {
    /// A reference to Service `namespace/name`.
    pub fn service(namespace: &str, name: &str) -> ObjectRef {
        ObjectRef {
            group: core_group(),
            kind: service_kind(),
            name: name.to_string(),
            namespace: namespace.to_string(),
        }
    }
}

/// A status condition.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Condition {
    /// `type`: `Mirrored`.
    #[serde(rename = "type")]
    pub type_: String,
    /// `status`: `True`, `False` or `Unknown`.
    pub status: String,
    /// `lastTransitionTime`: when `status` last changed.
    pub last_transition_time: Time,
    /// `reason`: CamelCase, e.g. `Mirrored`, `Error`, `InvalidService`, `MissingNamespace`.
    pub reason: String,
    /// `message`: for humans.
    #[serde(default)]
    pub message: String,
    /// `localRef`: the mirror, when there is one (left out otherwise, as v1alpha3).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub local_ref: Option<LocalRef>,
}

/// A probe latency in whole milliseconds, truncated: what upstream's probe worker records
/// (Go's `Duration.Milliseconds()`) in `gateway_latency` and `gateway_probe_latency_ms`, and
/// what `status.gateway.latencyMs` holds, so `linkerd multicluster gateways` (which reads the
/// gauge and prints it as a whole number) and `mc multicluster check`/`gateways` (which read
/// the status) show the same figure.
///
/// ```
/// use std::time::Duration;
/// assert_eq!(mc_core::link::latency_ms(Duration::from_micros(4_900)), 4);
/// assert_eq!(mc_core::link::latency_ms(Duration::from_micros(700)), 0);
/// ```
pub fn latency_ms(latency: std::time::Duration) -> u64 {
    u64::try_from(latency.as_millis()).unwrap_or(u64::MAX)
}

/// `status.gateway` (mc only): the gateway as the probe worker sees it.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct GatewayStatus {
    /// Whether the gateway is considered alive.
    pub alive: bool,
    /// Latency of the last successful probe, in milliseconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub latency_ms: Option<u64>,
    /// Median probe latency over the recent window, in milliseconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub p50_ms: Option<u64>,
    /// 99th-percentile probe latency over the recent window, in milliseconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub p99_ms: Option<u64>,
    /// When the last probe finished.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_probe_time: Option<Time>,
}

/// Annotation on the Link where the controller also records the gateway's liveness, for
/// clusters whose Link CRD is upstream Linkerd's: its schema has no `status.gateway`, so the
/// API server prunes that field. The value is compact JSON, `{"alive":true}`. Only liveness is
/// recorded: latencies and the last probe time change with every probe and would make the
/// controller write the Link all the time, so the annotation changes only when the gateway
/// dies or comes back.
pub const GATEWAY_STATUS_ANNOTATION: &str = "mirror.linkerd.io/mc-gateway-status";

impl GatewayStatus {
    /// The value of [`GATEWAY_STATUS_ANNOTATION`] for a gateway that is `alive` or not.
    pub fn annotation_value(alive: bool) -> String {
        if alive {
            r#"{"alive":true}"#.to_owned()
        } else {
            r#"{"alive":false}"#.to_owned()
        }
    }

    /// Reads a [`GATEWAY_STATUS_ANNOTATION`] value: the liveness, with no latencies or probe
    /// time. `None` when it is not such JSON.
    pub fn from_annotation(value: &str) -> Option<GatewayStatus> {
        #[derive(Deserialize)]
        struct Annotated {
            alive: bool,
        }
        let a: Annotated = serde_json::from_str(value).ok()?;
        Some(GatewayStatus {
            alive: a.alive,
            ..GatewayStatus::default()
        })
    }

    /// The gateway state of a Link: `status.gateway` when the server kept it (mc's CRD), else
    /// the [`GATEWAY_STATUS_ANNOTATION`] (upstream's CRD prunes `status.gateway`).
    pub fn of_link(link: &super::Link) -> Option<GatewayStatus> {
        link.status
            .as_ref()
            .and_then(|s| s.gateway.clone())
            .or_else(|| {
                link.metadata
                    .annotations
                    .as_ref()
                    .and_then(|a| a.get(GATEWAY_STATUS_ANNOTATION))
                    .and_then(|v| GatewayStatus::from_annotation(v))
            })
    }
}

/// Why mirroring a Service failed, as a condition reason.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FailureReason {
    /// `Error`: an API call failed; the message names the step.
    Error,
    /// `InvalidService`: the Service cannot be mirrored as it is (e.g. headless into federated).
    InvalidService,
    /// `MissingNamespace`: the namespace does not exist locally.
    MissingNamespace,
    /// `Conflict`: a local object with the mirror's name exists and is not ours; it is left
    /// untouched.
    Conflict,
}

impl FailureReason {
    /// Every reason, in declaration order.
    pub const ALL: [FailureReason; 4] = [
        FailureReason::Error,
        FailureReason::InvalidService,
        FailureReason::MissingNamespace,
        FailureReason::Conflict,
    ];

    /// The reason string.
    pub const fn as_str(self) -> &'static str {
        match self {
            FailureReason::Error => "Error",
            FailureReason::InvalidService => "InvalidService",
            FailureReason::MissingNamespace => "MissingNamespace",
            FailureReason::Conflict => "Conflict",
        }
    }

    /// The reason named `reason`, if it is one of these.
    ///
    /// ```
    /// use mc_core::link::FailureReason;
    /// assert_eq!(FailureReason::parse("Conflict"), Some(FailureReason::Conflict));
    /// assert_eq!(FailureReason::parse("Mirrored"), None);
    /// ```
    pub fn parse(reason: &str) -> Option<FailureReason> {
        FailureReason::ALL
            .into_iter()
            .find(|r| r.as_str() == reason)
    }
}

/// Why the target cluster cannot be watched, as the reason of the `TargetReachable` condition.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TargetFailure {
    /// `MissingCredentials`: the credentials Secret, or its `kubeconfig` key, does not exist.
    MissingCredentials,
    /// `InvalidCredentials`: the kubeconfig cannot be parsed or used, or the API server rejects
    /// it (401).
    InvalidCredentials,
    /// `Forbidden`: the API server accepts the credentials but denies a needed permission (403).
    Forbidden,
    /// `TargetUnreachable`: the API server does not answer (connection, TLS, timeout, watch).
    TargetUnreachable,
}

impl TargetFailure {
    /// The reason string.
    pub const fn as_str(self) -> &'static str {
        match self {
            TargetFailure::MissingCredentials => "MissingCredentials",
            TargetFailure::InvalidCredentials => "InvalidCredentials",
            TargetFailure::Forbidden => "Forbidden",
            TargetFailure::TargetUnreachable => "TargetUnreachable",
        }
    }
}

/// The `TargetReachable` condition at `now`: `True`/`Connected` when `failure` is `None`,
/// otherwise `False` with the failure's reason and `message`.
///
/// ```
/// use std::time::SystemTime;
/// use mc_core::link::{TargetFailure, target_condition};
/// let c = target_condition(Some((TargetFailure::Forbidden, "cannot list services")), SystemTime::UNIX_EPOCH)?;
/// assert_eq!((c.status.as_str(), c.reason.as_str()), ("False", "Forbidden"));
/// # Ok::<(), mc_core::Error>(())
/// ```
pub fn target_condition(
    failure: Option<(TargetFailure, &str)>,
    now: SystemTime,
) -> Result<Condition> {
    let time = jiff::Timestamp::try_from(now).map_err(|_| Error::TimeOutOfRange { time: now })?;
    let (status, reason, message) = match failure {
        None => (
            "True",
            "Connected",
            "the target cluster's API server answers".to_string(),
        ),
        Some((f, message)) => ("False", f.as_str(), message.to_string()),
    };
    Ok(Condition {
        type_: TARGET_REACHABLE.to_string(),
        status: status.to_string(),
        last_transition_time: Time(time),
        reason: reason.to_string(),
        message,
        local_ref: None,
    })
}

/// The outcome of mirroring one remote Service.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MirrorOutcome {
    /// Mirrored into the local Service `local`.
    Mirrored {
        /// The local mirror.
        local: LocalRef,
    },
    /// Not mirrored.
    Failed {
        /// Why.
        reason: FailureReason,
        /// For humans, e.g. "Namespace does not exist".
        message: String,
    },
}

/// The `Mirrored` condition for `outcome` at `now`.
pub fn mirrored_condition(outcome: &MirrorOutcome, now: SystemTime) -> Result<Condition> {
    let time = jiff::Timestamp::try_from(now).map_err(|_| Error::TimeOutOfRange { time: now })?;
    let (status, reason, message, local_ref) = match outcome {
        MirrorOutcome::Mirrored { local } => ("True", MIRRORED, String::new(), Some(local.clone())),
        MirrorOutcome::Failed { reason, message } => {
            ("False", reason.as_str(), message.clone(), None)
        }
    };
    Ok(Condition {
        type_: MIRRORED.to_string(),
        status: status.to_string(),
        last_transition_time: Time(time),
        reason: reason.to_string(),
        message,
        local_ref,
    })
}

/// Put `new` into `conditions`, replacing the condition of the same type. The old
/// `lastTransitionTime` is kept when the status did not change. Returns `true` when anything
/// other than the time changed (so a write is needed).
pub fn merge_condition(conditions: &mut Vec<Condition>, mut new: Condition) -> bool {
    match conditions.iter_mut().find(|c| c.type_ == new.type_) {
        Some(old) => {
            if old.status == new.status {
                new.last_transition_time = old.last_transition_time.clone();
            }
            let changed = *old != new;
            *old = new;
            changed
        }
        None => {
            conditions.push(new);
            true
        }
    }
}

/// Keeps `entries` (sorted) within `budget` bytes of JSON: every entry whose condition is not
/// `True` (what an operator must see) first, then `True` entries in order, as many as fit.
/// Returns the kept entries, still in their order, and how many were left out.
///
/// ```
/// use mc_core::link::{ObjectRef, ServiceStatus, fit_mirror_services};
/// let entry = |name: &str| ServiceStatus {
///     controller_name: "linkerd.io/service-mirror".into(),
///     remote_ref: ObjectRef::service("shop", name),
///     conditions: Vec::new(),
/// };
/// let (kept, left_out) = fit_mirror_services(vec![entry("a"), entry("b")], 1_000_000);
/// assert_eq!((kept.len(), left_out), (2, 0));
/// let (kept, left_out) = fit_mirror_services(vec![entry("a"), entry("b")], 10);
/// assert_eq!((kept.len(), left_out), (0, 2));
/// ```
pub fn fit_mirror_services(
    entries: Vec<ServiceStatus>,
    budget: usize,
) -> (Vec<ServiceStatus>, usize) {
    let sizes: Vec<usize> = entries
        .iter()
        .map(|e| serde_json::to_vec(e).map_or(usize::MAX, |v| v.len().saturating_add(1)))
        .collect();
    if sizes.iter().fold(0usize, |a, s| a.saturating_add(*s)) <= budget {
        return (entries, 0);
    }
    let healthy = |e: &ServiceStatus| e.conditions.iter().all(|c| c.status == "True");
    let mut keep = vec![false; entries.len()];
    let mut used = 0usize;
    // Failures first, then healthy entries, each in list order.
    for pass_healthy in [false, true] {
        for (i, e) in entries.iter().enumerate() {
            if healthy(e) == pass_healthy && used.saturating_add(sizes[i]) <= budget {
                used += sizes[i];
                keep[i] = true;
            }
        }
    }
    let total = entries.len();
    let kept: Vec<ServiceStatus> = entries
        .into_iter()
        .zip(keep)
        .filter_map(|(e, k)| k.then_some(e))
        .collect();
    let left_out = total - kept.len();
    (kept, left_out)
}

/// The `StatusComplete` condition at `now`: `True`/`Complete` when `left_out` is 0, otherwise
/// `False`/`SizeLimit` saying how many of `total` entries are not listed.
pub fn status_complete_condition(
    left_out: usize,
    total: usize,
    now: SystemTime,
) -> Result<Condition> {
    let time = jiff::Timestamp::try_from(now).map_err(|_| Error::TimeOutOfRange { time: now })?;
    let (status, reason, message) = if left_out == 0 {
        (
            "True",
            "Complete",
            format!("status.mirrorServices lists all {total} remote Services"),
        )
    } else {
        (
            "False",
            "SizeLimit",
            format!(
                "status.mirrorServices lists {} of {total} remote Services: the rest would make \
                 the Link too large to store; every failure is listed, and the mirrors \
                 themselves are labelled mirror.linkerd.io/cluster-name",
                total - left_out
            ),
        )
    };
    Ok(Condition {
        type_: STATUS_COMPLETE.to_string(),
        status: status.to_string(),
        last_transition_time: Time(time),
        reason: reason.to_string(),
        message,
        local_ref: None,
    })
}

impl LinkStatus {
    /// Record the Link-level `condition` (keeping its transition time unless its status changes).
    /// Returns `true` when the status changed.
    pub fn set_condition(&mut self, condition: Condition) -> bool {
        merge_condition(&mut self.conditions, condition)
    }

    /// The Link-level condition of type `type_`, if any.
    pub fn condition(&self, type_: &str) -> Option<&Condition> {
        self.conditions.iter().find(|c| c.type_ == type_)
    }

    /// Record `condition` for the mirror of `remote`. Returns `true` when the status changed.
    pub fn upsert_mirror(&mut self, remote: RemoteRef, condition: Condition) -> bool {
        upsert(&mut self.mirror_services, remote, condition)
    }

    /// Record `condition` for the federated membership of `remote`. Returns `true` on change.
    pub fn upsert_federated(&mut self, remote: RemoteRef, condition: Condition) -> bool {
        upsert(&mut self.federated_services, remote, condition)
    }

    /// Drop the mirror entry of remote Service `namespace/name`. Returns `true` when one existed.
    pub fn remove_mirror(&mut self, namespace: &str, name: &str) -> bool {
        remove(&mut self.mirror_services, namespace, name)
    }

    /// Drop the federated entry of remote Service `namespace/name`. Returns `true` on change.
    pub fn remove_federated(&mut self, namespace: &str, name: &str) -> bool {
        remove(&mut self.federated_services, namespace, name)
    }
}

fn upsert(list: &mut Vec<ServiceStatus>, remote: RemoteRef, condition: Condition) -> bool {
    let found = list
        .iter_mut()
        .find(|s| s.remote_ref.name == remote.name && s.remote_ref.namespace == remote.namespace);
    match found {
        Some(entry) => {
            let ref_changed =
                entry.remote_ref != remote || entry.controller_name != CONTROLLER_NAME;
            entry.remote_ref = remote;
            entry.controller_name = CONTROLLER_NAME.to_string();
            merge_condition(&mut entry.conditions, condition) || ref_changed
        }
        None => {
            list.push(ServiceStatus {
                controller_name: CONTROLLER_NAME.to_string(),
                remote_ref: remote,
                conditions: vec![condition],
            });
            true
        }
    }
}

fn remove(list: &mut Vec<ServiceStatus>, namespace: &str, name: &str) -> bool {
    let before = list.len();
    list.retain(|s| !(s.remote_ref.name == name && s.remote_ref.namespace == namespace));
    list.len() != before
}

#[cfg(test)]
mod tests {

    #[test]
    fn gateway_state_comes_from_the_status_else_the_annotation() {
        let mut link = super::super::Link::new("east", "mc", Default::default());
        assert_eq!(GatewayStatus::of_link(&link), None);
        link.metadata.annotations = Some(
            [(
                GATEWAY_STATUS_ANNOTATION.to_owned(),
                GatewayStatus::annotation_value(false),
            )]
            .into(),
        );
        assert_eq!(GatewayStatus::of_link(&link).map(|g| g.alive), Some(false));
        link.status = Some(LinkStatus {
            gateway: Some(GatewayStatus {
                alive: true,
                latency_ms: Some(4),
                ..GatewayStatus::default()
            }),
            ..LinkStatus::default()
        });
        assert_eq!(
            GatewayStatus::of_link(&link).and_then(|g| g.latency_ms),
            Some(4)
        );
        assert_eq!(
            GatewayStatus::from_annotation(&GatewayStatus::annotation_value(true)).map(|g| g.alive),
            Some(true)
        );
        assert_eq!(GatewayStatus::from_annotation("not json"), None);
    }
    use super::*;
    use std::time::Duration;

    fn at(secs: u64) -> SystemTime {
        SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000 + secs)
    }

    fn ok(secs: u64) -> Result<Condition> {
        let local = ObjectRef::service("ns", "web-east");
        mirrored_condition(&MirrorOutcome::Mirrored { local }, at(secs))
    }

    fn failed(secs: u64, message: &str) -> Result<Condition> {
        let outcome = MirrorOutcome::Failed {
            reason: FailureReason::MissingNamespace,
            message: message.into(),
        };
        mirrored_condition(&outcome, at(secs))
    }

    #[test]
    fn transition_time_kept_unless_status_changes() -> Result<()> {
        let mut status = LinkStatus::default();
        let web = ObjectRef::service("ns", "web");
        assert!(status.upsert_mirror(web.clone(), ok(0)?));
        assert!(
            !status.upsert_mirror(web.clone(), ok(60)?),
            "same condition: no write"
        );
        let t = |s: &LinkStatus| {
            s.mirror_services[0].conditions[0]
                .last_transition_time
                .clone()
        };
        assert_eq!(
            t(&status),
            Time(
                jiff::Timestamp::try_from(at(0))
                    .map_err(|_| Error::TimeOutOfRange { time: at(0) })?
            )
        );
        assert!(status.upsert_mirror(web.clone(), failed(120, "Namespace does not exist")?));
        assert_eq!(t(&status).0.as_second(), 1_700_000_120);
        assert!(status.upsert_mirror(web.clone(), failed(180, "other message")?));
        assert_eq!(
            t(&status).0.as_second(),
            1_700_000_120,
            "message change keeps the time"
        );
        assert_eq!(status.mirror_services.len(), 1);
        assert!(status.remove_mirror("ns", "web"));
        assert!(!status.remove_mirror("ns", "web"));
        Ok(())
    }

    fn entry(name: &str, ok: bool) -> Result<ServiceStatus> {
        let c = if ok {
            mirrored_condition(
                &MirrorOutcome::Mirrored {
                    local: ObjectRef::service("ns", &format!("{name}-east")),
                },
                at(0),
            )?
        } else {
            failed(0, "Namespace ns does not exist")?
        };
        Ok(ServiceStatus {
            controller_name: CONTROLLER_NAME.to_string(),
            remote_ref: ObjectRef::service("ns", name),
            conditions: vec![c],
        })
    }

    #[test]
    fn oversized_lists_keep_every_failure_then_as_many_as_fit() -> Result<()> {
        let mut list = Vec::new();
        for i in 0..100 {
            list.push(entry(&format!("svc-{i:03}"), i % 10 != 7)?);
        }
        let one = serde_json::to_vec(&list[0]).map_or(0, |v| v.len()) + 1;
        let (all, left_out) = fit_mirror_services(list.clone(), one * 200);
        assert_eq!((all.len(), left_out), (100, 0), "fits: unchanged");
        assert_eq!(all, list);
        // Room for about 30 entries: the 10 failures, then the first healthy ones.
        let (kept, left_out) = fit_mirror_services(list.clone(), one * 30);
        assert_eq!(kept.len() + left_out, 100);
        assert!((25..=35).contains(&kept.len()), "{}", kept.len());
        let failures = kept
            .iter()
            .filter(|e| e.conditions[0].status == "False")
            .count();
        assert_eq!(failures, 10, "every failure is kept");
        assert_eq!(kept[0].remote_ref.name, "svc-000");
        let names: Vec<&str> = kept.iter().map(|e| e.remote_ref.name.as_str()).collect();
        let mut sorted = names.clone();
        sorted.sort_unstable();
        assert_eq!(names, sorted, "still in order");
        assert!(names.contains(&"svc-097"), "a late failure is kept");
        let bytes = serde_json::to_vec(&kept).map_or(usize::MAX, |v| v.len());
        assert!(bytes <= one * 30 + 1, "{bytes} within the budget");

        let c = status_complete_condition(left_out, 100, at(0))?;
        assert_eq!(
            (c.status.as_str(), c.reason.as_str()),
            ("False", "SizeLimit")
        );
        assert!(c.message.contains(&format!("lists {} of 100", kept.len())));
        let c = status_complete_condition(0, 100, at(0))?;
        assert_eq!((c.status.as_str(), c.reason.as_str()), ("True", "Complete"));
        Ok(())
    }

    #[test]
    fn failure_reasons_round_trip() {
        for r in FailureReason::ALL {
            assert_eq!(FailureReason::parse(r.as_str()), Some(r));
        }
        assert_eq!(
            FailureReason::parse("conflict"),
            None,
            "reasons are case-sensitive"
        );
        assert_eq!(FailureReason::parse(MIRRORED), None);
    }

    #[test]
    fn target_condition_transitions() -> Result<()> {
        let mut status = LinkStatus::default();
        assert!(status.set_condition(target_condition(None, at(0))?));
        assert!(
            !status.set_condition(target_condition(None, at(60))?),
            "unchanged: no write"
        );
        let down = (TargetFailure::InvalidCredentials, "401 Unauthorized");
        assert!(status.set_condition(target_condition(Some(down), at(120))?));
        let c = status.condition(TARGET_REACHABLE).cloned();
        let c = c.ok_or(Error::Malformed {
            expected: "a TargetReachable condition",
            reason: "missing".into(),
        })?;
        assert_eq!(
            (c.status.as_str(), c.reason.as_str(), c.message.as_str()),
            ("False", "InvalidCredentials", "401 Unauthorized")
        );
        assert_eq!(c.last_transition_time.0.as_second(), 1_700_000_120);
        let later = (TargetFailure::TargetUnreachable, "connection refused");
        assert!(status.set_condition(target_condition(Some(later), at(180))?));
        assert_eq!(
            status.conditions[0].last_transition_time.0.as_second(),
            1_700_000_120,
            "False to False keeps the transition time"
        );
        assert_eq!(status.conditions.len(), 1);
        let json = serde_json::to_value(&status).map_err(|e| Error::Malformed {
            expected: "LinkStatus",
            reason: e.to_string(),
        })?;
        assert_eq!(json["conditions"][0]["type"], "TargetReachable");
        assert_eq!(json["conditions"][0]["reason"], "TargetUnreachable");
        assert!(json.get("mirrorServices").is_none());
        Ok(())
    }

    #[test]
    fn wire_shape() -> Result<()> {
        let mut status = LinkStatus::default();
        status.upsert_mirror(
            ObjectRef::service("ns", "web"),
            failed(0, "Namespace does not exist")?,
        );
        status.upsert_federated(ObjectRef::service("ns", "api"), ok(0)?);
        status.gateway = Some(GatewayStatus {
            alive: true,
            latency_ms: Some(3),
            ..GatewayStatus::default()
        });
        let json = serde_json::to_value(&status).map_err(|e| Error::Malformed {
            expected: "LinkStatus",
            reason: e.to_string(),
        })?;
        let cond = &json["mirrorServices"][0]["conditions"][0];
        assert_eq!(json["mirrorServices"][0]["controllerName"], CONTROLLER_NAME);
        assert_eq!(json["mirrorServices"][0]["remoteRef"]["group"], "core");
        assert_eq!(cond["type"], "Mirrored");
        assert_eq!(cond["status"], "False");
        assert_eq!(cond["reason"], "MissingNamespace");
        assert_eq!(cond["lastTransitionTime"], "2023-11-14T22:13:20Z");
        assert!(
            cond.get("localRef").is_none(),
            "v1alpha3 leaves localRef out"
        );
        assert_eq!(
            json["federatedServices"][0]["conditions"][0]["localRef"]["name"],
            "web-east"
        );
        assert_eq!(json["gateway"]["latencyMs"], 3);
        let back: LinkStatus = serde_json::from_value(json).map_err(|e| Error::Malformed {
            expected: "LinkStatus",
            reason: e.to_string(),
        })?;
        assert_eq!(back, status);
        Ok(())
    }
}
