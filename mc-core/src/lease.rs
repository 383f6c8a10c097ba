//! Which mirror controller leads a Link, from its leader Lease: what `mc multicluster check`
//! reports ("service mirror controllers are running").
//!
//! The controller's Lease is upstream's `service-mirror-write-<link>`
//! ([`lease_name`](crate::render::lease_name)); mc's controllers before the rename held
//! `mc-mirror-write-<link>` ([`old_lease_name`](crate::render::old_lease_name)). A controller
//! that still runs the old version renews only the old Lease, so check reads both: the Lease
//! under the current name decides unless only the old one is held, and a controller found under
//! the old name is reported as one to upgrade.
//!
//! ```
//! use std::time::{Duration, SystemTime};
//! use mc_core::lease::{ControllerState, LeaseName, LeaseRecord, controller_lease};
//!
//! let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_000);
//! let old = LeaseRecord { holder: "controller-east-0".into(), renewed: Some(now), duration: Duration::from_secs(30) };
//! let verdict = controller_lease(None, Some(&old), now);
//! assert_eq!(verdict.name, LeaseName::Old);
//! assert_eq!(verdict.state, ControllerState::Leading { holder: "controller-east-0".into() });
//! ```

use std::time::{Duration, SystemTime};

/// What the verdict needs of a Lease.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LeaseRecord {
    /// `spec.holderIdentity` (empty when unset).
    pub holder: String,
    /// `spec.renewTime`, if ever renewed.
    pub renewed: Option<SystemTime>,
    /// `spec.leaseDurationSeconds`.
    pub duration: Duration,
}

/// Which of the two Lease names the verdict is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LeaseName {
    /// Upstream's `service-mirror-write-<link>`, held by current controllers.
    Current,
    /// `mc-mirror-write-<link>`, held by controllers that predate the rename: upgrade them.
    Old,
}

/// The state of the Link's controller.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ControllerState {
    /// No Lease under either name: no controller has ever run.
    NeverRan,
    /// `holder` holds the Lease and renewed it within its duration.
    Leading {
        /// The leading Pod.
        holder: String,
    },
    /// The Lease expired: the controller is down.
    Expired {
        /// The last holder (may be empty).
        holder: String,
        /// When it was last renewed.
        renewed: SystemTime,
        /// How long ago it expired.
        expired_for: Duration,
    },
    /// The Lease exists but was never renewed.
    NeverRenewed,
}

/// The verdict: the state, and the name of the Lease it was read from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LeaseVerdict {
    /// Which Lease the state was read from.
    pub name: LeaseName,
    /// The controller's state.
    pub state: ControllerState,
}

/// The state of one Lease at `now`.
pub fn lease_state(lease: &LeaseRecord, now: SystemTime) -> ControllerState {
    match lease.renewed {
        Some(at) if !lease.holder.is_empty() && at + lease.duration >= now => {
            ControllerState::Leading {
                holder: lease.holder.clone(),
            }
        }
        Some(at) => ControllerState::Expired {
            holder: lease.holder.clone(),
            renewed: at,
            expired_for: now.duration_since(at + lease.duration).unwrap_or_default(),
        },
        None => ControllerState::NeverRenewed,
    }
}

/// The Link's controller from its Lease under the current name (`current`) and under the old
/// one (`old`): a held Lease wins, the current name first; otherwise the current Lease if it
/// exists, else the old one; neither is [`ControllerState::NeverRan`].
pub fn controller_lease(
    current: Option<&LeaseRecord>,
    old: Option<&LeaseRecord>,
    now: SystemTime,
) -> LeaseVerdict {
    let current = current.map(|l| lease_state(l, now));
    let old = old.map(|l| lease_state(l, now));
    let leading = |s: &Option<ControllerState>| matches!(s, Some(ControllerState::Leading { .. }));
    let pick = |name, state: Option<ControllerState>| LeaseVerdict {
        name,
        state: state.unwrap_or(ControllerState::NeverRan),
    };
    if leading(&current) || (current.is_some() && !leading(&old)) {
        pick(LeaseName::Current, current)
    } else if old.is_some() {
        pick(LeaseName::Old, old)
    } else {
        pick(LeaseName::Current, None)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: u64 = 1_000_000;

    fn at(secs_ago: u64) -> LeaseRecord {
        LeaseRecord {
            holder: "pod".into(),
            renewed: Some(SystemTime::UNIX_EPOCH + Duration::from_secs(NOW - secs_ago)),
            duration: Duration::from_secs(30),
        }
    }

    fn verdict(current: Option<LeaseRecord>, old: Option<LeaseRecord>) -> LeaseVerdict {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(NOW);
        controller_lease(current.as_ref(), old.as_ref(), now)
    }

    fn leading() -> ControllerState {
        ControllerState::Leading {
            holder: "pod".into(),
        }
    }

    #[test]
    fn the_current_name_decides_when_present() {
        let v = verdict(Some(at(1)), None);
        assert_eq!((v.name, v.state), (LeaseName::Current, leading()));
        // An old Lease left behind by an upgraded controller does not matter.
        let v = verdict(Some(at(1)), Some(at(600)));
        assert_eq!((v.name, v.state), (LeaseName::Current, leading()));
        let v = verdict(Some(at(600)), Some(at(900)));
        assert_eq!(v.name, LeaseName::Current);
        assert_eq!(
            v.state,
            ControllerState::Expired {
                holder: "pod".into(),
                renewed: SystemTime::UNIX_EPOCH + Duration::from_secs(NOW - 600),
                expired_for: Duration::from_secs(570),
            }
        );
    }

    #[test]
    fn a_controller_that_predates_the_rename_is_found_under_the_old_name() {
        let v = verdict(None, Some(at(1)));
        assert_eq!((v.name, v.state), (LeaseName::Old, leading()));
        // Downgraded: the current Lease expired, the old one is held.
        let v = verdict(Some(at(600)), Some(at(1)));
        assert_eq!((v.name, v.state), (LeaseName::Old, leading()));
        let v = verdict(None, Some(at(600)));
        assert_eq!(v.name, LeaseName::Old);
        assert!(matches!(v.state, ControllerState::Expired { .. }));
    }

    #[test]
    fn no_lease_at_all_means_no_controller_ever_ran() {
        let v = verdict(None, None);
        assert_eq!(
            (v.name, v.state),
            (LeaseName::Current, ControllerState::NeverRan)
        );
        let mut never = at(0);
        never.renewed = None;
        assert_eq!(
            verdict(Some(never), None).state,
            ControllerState::NeverRenewed
        );
        let mut no_holder = at(0);
        no_holder.holder.clear();
        assert!(matches!(
            verdict(Some(no_holder), None).state,
            ControllerState::Expired { .. }
        ));
    }
}
