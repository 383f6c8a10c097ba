//! Lease-based leader election (`coordination.k8s.io/v1` Lease), one lease per Link.
//!
//! The lease is upstream Linkerd's `service-mirror-write-<link>`
//! ([`mc_core::render::lease_name`]): `mc multicluster check` and upstream's `linkerd
//! multicluster check` and `gateways` find the holder by it, and mc's controller and an upstream
//! controller for the same Link exclude each other (the protocol is client-go's leaderelection:
//! holderIdentity, leaseDurationSeconds, acquireTime, renewTime, leaseTransitions). Every write
//! is guarded by the lease's `resourceVersion`, so two replicas can never both believe they hold
//! it. Expiry is judged on the local monotonic clock (how long the record has stayed unchanged),
//! not on the holder's timestamps, so clock skew between replicas does not matter.

use std::sync::Mutex;
use std::time::{Duration, Instant};

use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime;
use kube::Api;
use kube::api::{ObjectMeta, PostParams};

use crate::error::is_status;
use crate::{Error, Result};

/// Timing of the election (upstream's defaults: 30 s, 10 s, 2 s).
#[derive(Clone, Copy, Debug)]
pub struct LeaseTiming {
    /// How long a lease stays valid without renewal.
    pub duration: Duration,
    /// How long the holder keeps trying to renew before it gives the leadership up.
    pub renew_deadline: Duration,
    /// Pause between attempts.
    pub retry_period: Duration,
}

impl Default for LeaseTiming {
    fn default() -> Self {
        LeaseTiming {
            duration: Duration::from_secs(30),
            renew_deadline: Duration::from_secs(10),
            retry_period: Duration::from_secs(2),
        }
    }
}

/// The lease name for a Link: `service-mirror-write-<link>`, upstream's.
pub fn lease_name(link: &str) -> String {
    mc_core::render::lease_name(link)
}

/// One participant in the election for one lease.
#[derive(Debug)]
pub struct Elector {
    api: Api<Lease>,
    name: String,
    identity: String,
    timing: LeaseTiming,
    /// The last record seen from another holder: (holder, renewTime, resourceVersion) and when it
    /// was first seen unchanged.
    observed: Mutex<Option<(String, Instant)>>,
}

/// What one attempt found.
#[derive(Debug, PartialEq, Eq)]
pub enum Attempt {
    /// We hold the lease (acquired or renewed).
    Leading,
    /// Someone else holds a valid lease.
    Held(String),
}

impl Elector {
    /// An elector for lease `name` in the namespace of `api`, as `identity`.
    pub fn new(api: Api<Lease>, name: String, identity: String, timing: LeaseTiming) -> Elector {
        Elector {
            api,
            name,
            identity,
            timing,
            observed: Mutex::new(None),
        }
    }

    /// The holder identity used by this elector.
    pub fn identity(&self) -> &str {
        &self.identity
    }

    /// Waits until the lease is ours.
    pub async fn acquire(&self) {
        loop {
            match self.try_acquire_or_renew().await {
                Ok(Attempt::Leading) => return,
                Ok(Attempt::Held(holder)) => {
                    tracing::debug!(lease = %self.name, %holder, "lease held by another replica")
                }
                Err(e) => tracing::warn!(lease = %self.name, error = %e, "lease attempt failed"),
            }
            tokio::time::sleep(self.timing.retry_period).await;
        }
    }

    /// Renews the lease until renewal fails for longer than the renew deadline or another
    /// holder is found; returns then (the leadership is lost).
    pub async fn hold(&self) {
        let mut last_ok = Instant::now();
        loop {
            tokio::time::sleep(self.timing.retry_period).await;
            match self.try_acquire_or_renew().await {
                Ok(Attempt::Leading) => last_ok = Instant::now(),
                Ok(Attempt::Held(holder)) => {
                    tracing::warn!(lease = %self.name, %holder, "lease taken over by another replica");
                    return;
                }
                Err(e) => {
                    tracing::warn!(lease = %self.name, error = %e, "lease renewal failed");
                    if last_ok.elapsed() > self.timing.renew_deadline {
                        return;
                    }
                }
            }
        }
    }

    /// Gives the lease up (holder cleared, duration 1 s) so a standby takes over at once.
    pub async fn release(&self) {
        let Ok(mut lease) = self.api.get(&self.name).await else {
            return;
        };
        let spec = lease.spec.get_or_insert_with(LeaseSpec::default);
        if spec.holder_identity.as_deref() != Some(self.identity.as_str()) {
            return;
        }
        spec.holder_identity = None;
        spec.lease_duration_seconds = Some(1);
        spec.renew_time = Some(MicroTime(jiff::Timestamp::now()));
        if let Err(e) = self
            .api
            .replace(&self.name, &PostParams::default(), &lease)
            .await
        {
            tracing::debug!(lease = %self.name, error = %e, "lease release failed");
        }
    }

    /// One attempt: create the lease, renew it, or take over an expired one.
    pub async fn try_acquire_or_renew(&self) -> Result<Attempt> {
        let now = MicroTime(jiff::Timestamp::now());
        let duration_secs = i32::try_from(self.timing.duration.as_secs()).unwrap_or(30);
        let current = match self.api.get_opt(&self.name).await {
            Ok(c) => c,
            Err(e) => return Err(Error::api(format!("get Lease {}", self.name), e)),
        };
        let Some(mut lease) = current else {
            let lease = Lease {
                metadata: ObjectMeta {
                    name: Some(self.name.clone()),
                    ..ObjectMeta::default()
                },
                spec: Some(LeaseSpec {
                    holder_identity: Some(self.identity.clone()),
                    lease_duration_seconds: Some(duration_secs),
                    acquire_time: Some(now.clone()),
                    renew_time: Some(now),
                    lease_transitions: Some(0),
                    ..LeaseSpec::default()
                }),
            };
            return match self.api.create(&PostParams::default(), &lease).await {
                Ok(_) => Ok(Attempt::Leading),
                Err(e) if is_status(&e, 409) => Ok(Attempt::Held(String::new())),
                Err(e) => Err(Error::api(format!("create Lease {}", self.name), e)),
            };
        };
        let spec = lease.spec.get_or_insert_with(LeaseSpec::default);
        let holder = spec.holder_identity.clone().unwrap_or_default();
        if holder != self.identity && !holder.is_empty() && !self.expired(&lease) {
            return Ok(Attempt::Held(holder));
        }
        let spec = lease.spec.get_or_insert_with(LeaseSpec::default);
        if holder != self.identity {
            spec.acquire_time = Some(now.clone());
            spec.lease_transitions = Some(spec.lease_transitions.unwrap_or(0) + 1);
            spec.holder_identity = Some(self.identity.clone());
        }
        spec.lease_duration_seconds = Some(duration_secs);
        spec.renew_time = Some(now);
        // `replace` sends the resourceVersion we read: a concurrent writer makes it fail with 409.
        match self
            .api
            .replace(&self.name, &PostParams::default(), &lease)
            .await
        {
            Ok(_) => Ok(Attempt::Leading),
            Err(e) if is_status(&e, 409) => Ok(Attempt::Held(holder)),
            Err(e) => Err(Error::api(format!("update Lease {}", self.name), e)),
        }
    }

    /// `true` when another holder's record has not changed for its lease duration (local clock).
    fn expired(&self, lease: &Lease) -> bool {
        let spec = lease.spec.clone().unwrap_or_default();
        let key = format!(
            "{}|{:?}|{}",
            spec.holder_identity.unwrap_or_default(),
            spec.renew_time.map(|t| t.0),
            lease.metadata.resource_version.clone().unwrap_or_default()
        );
        let duration = Duration::from_secs(
            u64::try_from(spec.lease_duration_seconds.unwrap_or(30)).unwrap_or(30),
        );
        let Ok(mut observed) = self.observed.lock() else {
            return false;
        };
        match observed.as_ref() {
            Some((seen, since)) if *seen == key => since.elapsed() > duration,
            _ => {
                *observed = Some((key, Instant::now()));
                false
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lease_name_is_upstreams() {
        assert_eq!(lease_name("east"), "service-mirror-write-east");
    }
}
