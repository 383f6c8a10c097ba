//! The allow-list, stage 3 of a connection: which client identities may reach which target
//! services (checked per transport-header connection and per HTTP request).
//!
//! [`Policy`] is the pure part (parsing, validation, decisions); [`ReloadingPolicy`] holds the
//! policy in force, re-reads its file when the file changes (a ConfigMap update swaps the
//! mounted file) and keeps the last good policy when the new text is invalid, like the
//! certificates in [`crate::tls`].
//!
//! A reload applies to every new connection and to every new HTTP request, also on connections
//! already open; an opaque stream already spliced stays open.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, SystemTime};

use mc_core::policy::{PolicyRule, glob_match};
use serde::Deserialize;

use crate::metrics::PolicyMetrics;
use crate::transport::route::Target;
use crate::{Error, Result};

/// Per-service authorization: which client identities may reach which target services.
///
/// The YAML form:
///
/// ```yaml
/// rules:
///   - services: ["web.shop.svc.cluster.local", "*.billing.svc.cluster.local"]
///     clients: ["*.shop.serviceaccount.identity.linkerd.cluster.local"]
/// ```
///
/// A target that matches no rule's `services` is open to every identity chained to the
/// anchors. A target that matches rules is open only to clients matching one of their
/// `clients` patterns (a rule with `clients: []` closes its services to everyone).
#[derive(Debug, Clone, Default, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct Policy {
    /// The rules, in any order.
    #[serde(default)]
    pub rules: Vec<PolicyRule>,
}

impl Policy {
    /// Parses and validates the YAML form; `path` names the input in errors. An empty document
    /// is an error (a file truncated while written must not open every service): no rules is
    /// `rules: []`.
    pub fn from_yaml(text: &str, path: &Path) -> Result<Self> {
        if text.trim().is_empty() {
            return Err(Error::PolicyEmpty {
                path: path.to_owned(),
            });
        }
        let policy: Self = serde_yaml::from_str(text).map_err(|source| Error::Policy {
            path: path.to_owned(),
            source,
        })?;
        policy.validate(path)?;
        Ok(policy)
    }

    /// Reads the YAML file at `path`.
    pub fn load(path: &Path) -> Result<Self> {
        Self::from_yaml(&read(path)?, path)
    }

    /// Refuses rules that cannot mean what their author wanted (see
    /// [`mc_core::policy::problem`]).
    fn validate(&self, path: &Path) -> Result<()> {
        match mc_core::policy::problem(&self.rules) {
            None => Ok(()),
            Some((rule, why)) => Err(Error::PolicyRule {
                path: path.to_owned(),
                rule,
                why,
            }),
        }
    }

    /// Decides whether `client` may reach `target`. A denial names the first `services`
    /// pattern that governs the target.
    pub fn check(&self, client: &str, target: &Target) -> Result<()> {
        let mut governing: Option<&str> = None;
        for rule in &self.rules {
            let Some(service) = rule.services.iter().find(|s| glob_match(s, &target.name)) else {
                continue;
            };
            if rule.clients.iter().any(|c| glob_match(c, client)) {
                return Ok(());
            }
            governing.get_or_insert(service);
        }
        match governing {
            None => Ok(()),
            Some(rule) => Err(Error::Forbidden {
                client: client.to_owned(),
                target: target.to_string(),
                rule: rule.to_owned(),
            }),
        }
    }
}

/// Reads the policy file at `path`.
fn read(path: &Path) -> Result<String> {
    std::fs::read_to_string(path).map_err(|source| Error::ReadFile {
        what: "policy",
        flag: "--policy",
        path: path.to_owned(),
        source,
    })
}

/// The policy in force: fixed, or read from a file and re-read when it changes.
#[derive(Debug)]
pub(crate) struct ReloadingPolicy {
    current: RwLock<Arc<Policy>>,
    /// Bumped on every change of the policy in force (cached decisions compare it).
    generation: AtomicU64,
    /// The file, and the text last read from it (good or bad).
    file: Option<(PathBuf, Mutex<String>)>,
    metrics: PolicyMetrics,
}

/// Where the gateway's policy comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PolicySource {
    /// A policy given in code, never reloaded.
    Fixed(Policy),
    /// A YAML file (`--policy`), re-read when its content changes.
    File(PathBuf),
}

impl Default for PolicySource {
    fn default() -> Self {
        Self::Fixed(Policy::default())
    }
}

impl From<Policy> for PolicySource {
    fn from(policy: Policy) -> Self {
        Self::Fixed(policy)
    }
}

impl ReloadingPolicy {
    /// Loads the policy from `source`; a file that cannot be read or parsed is an error (the
    /// gateway does not start without its allow-list).
    pub(crate) fn load(source: PolicySource, metrics: PolicyMetrics) -> Result<Arc<Self>> {
        let (policy, file) = match source {
            PolicySource::Fixed(policy) => (policy, None),
            PolicySource::File(path) => {
                let text = read(&path)?;
                let policy = Policy::from_yaml(&text, &path)?;
                (policy, Some((path, Mutex::new(text))))
            }
        };
        metrics.loaded(policy.rules.len(), SystemTime::now());
        if let Some((path, _)) = &file {
            tracing::info!(rules = policy.rules.len(), policy = %path.display(), "policy loaded");
        }
        Ok(Arc::new(Self {
            current: RwLock::new(Arc::new(policy)),
            generation: AtomicU64::new(0),
            file,
            metrics,
        }))
    }

    /// The policy in force.
    pub(crate) fn current(&self) -> Arc<Policy> {
        match self.current.read() {
            Ok(g) => g.clone(),
            Err(p) => p.into_inner().clone(),
        }
    }

    /// A number that changes whenever the policy in force changes.
    pub(crate) fn generation(&self) -> u64 {
        self.generation.load(Ordering::Acquire)
    }

    /// Decides whether `client` may reach `target` by the policy in force; a denial is counted
    /// (by governing pattern and client identity) and logged.
    pub(crate) fn check(&self, client: &str, target: &Target) -> Result<()> {
        let decision = self.current().check(client, target);
        if let Err(Error::Forbidden { rule, .. }) = &decision {
            self.metrics.denied(rule, client);
            tracing::info!(%client, %target, rule = %rule, "denied by the policy");
        }
        decision
    }

    /// Re-reads the file when its content changed. `Ok(true)`: a new policy is in force; on
    /// error the previous one stays (and the same bad text is not reported again).
    pub(crate) fn reload_if_changed(&self) -> Result<bool> {
        let Some((path, last)) = &self.file else {
            return Ok(false);
        };
        let text = read(path)?;
        let mut last = last.lock().unwrap_or_else(|p| p.into_inner());
        if *last == text {
            return Ok(false);
        }
        *last = text;
        let policy = Policy::from_yaml(&last, path)?;
        let rules = policy.rules.len();
        match self.current.write() {
            Ok(mut g) => *g = Arc::new(policy),
            Err(p) => *p.into_inner() = Arc::new(policy),
        }
        self.generation.fetch_add(1, Ordering::AcqRel);
        self.metrics.loaded(rules, SystemTime::now());
        Ok(true)
    }

    /// [`Self::reload_if_changed`], counted and logged.
    fn reload_logged(&self) {
        match self.reload_if_changed() {
            Ok(false) => {}
            Ok(true) => {
                self.metrics.reloads.inc();
                let rules = self.current().rules.len();
                tracing::info!(rules, "policy reloaded");
            }
            Err(e) => {
                self.metrics.reload_failures.inc();
                tracing::warn!(error = %e, "policy reload failed; keeping the last good policy");
            }
        }
    }

    /// Polls the policy file every `every` (nothing to poll for a fixed policy).
    pub(crate) fn spawn_watch(
        self: &Arc<Self>,
        every: Duration,
    ) -> Option<tokio::task::JoinHandle<()>> {
        self.file.as_ref()?;
        let this = self.clone();
        Some(crate::tls::spawn_poll(every, move || this.reload_logged()))
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;

    #[test]
    fn policy_governs_only_matching_services() {
        let p = Policy::from_yaml(
            "rules:\n  - services: ['web.shop.svc.cluster.local']\n    clients: ['*.shop.serviceaccount.identity.linkerd.cluster.local']\n",
            Path::new("p.yaml"),
        )
        .unwrap();
        let web = Target::new("web.shop.svc.cluster.local", 80);
        let other = Target::new("db.shop.svc.cluster.local", 80);
        assert!(
            p.check(
                "fe.shop.serviceaccount.identity.linkerd.cluster.local",
                &web
            )
            .is_ok()
        );
        let err = p
            .check("x.evil.serviceaccount.identity.linkerd.cluster.local", &web)
            .unwrap_err();
        assert!(matches!(err, Error::Forbidden { .. }));
        assert!(p.check("anyone", &other).is_ok());
        assert!(Policy::default().check("anyone", &web).is_ok());
        assert!(Policy::from_yaml("rulez: []", Path::new("p.yaml")).is_err());
    }

    #[test]
    fn a_denial_names_the_client_the_service_and_the_rule_to_add() {
        let p = Policy::from_yaml(
            "rules:\n- services: ['*.billing.svc.cluster.local']\n  clients: []\n- services: ['pay.billing.svc.cluster.local']\n  clients: ['a']\n",
            Path::new("p.yaml"),
        )
        .unwrap();
        let pay = Target::new("pay.billing.svc.cluster.local", 443);
        assert!(p.check("a", &pay).is_ok(), "any matching rule allows");
        let err = p.check("b", &pay).unwrap_err();
        let Error::Forbidden { rule, .. } = &err else {
            panic!("{err}")
        };
        assert_eq!(
            rule, "*.billing.svc.cluster.local",
            "the first governing pattern"
        );
        let msg = err.to_string();
        for part in [
            "\"b\"",
            "pay.billing.svc.cluster.local:443",
            "{services: [\"pay.billing.svc.cluster.local\"], clients: [\"b\"]}",
        ] {
            assert!(msg.contains(part), "{part} not in {msg}");
        }
    }

    #[test]
    fn invalid_policies_name_the_file_the_rule_and_the_fix() {
        let path = Path::new("/etc/mc/policy.yaml");
        for (text, want) in [
            ("rules: [", "/etc/mc/policy.yaml"),
            ("rules:\n- services: ['']\n  clients: ['a']\n", "rule 0"),
            (
                "rules:\n- services: []\n  clients: ['a']\n",
                "governs nothing",
            ),
            (
                "rules:\n- services: ['a']\n  clients: ['a']\n- services: ['b']\n  clients: [' ']\n",
                "rule 1",
            ),
            ("rules:\n- services: ['a']\n", "clients"),
        ] {
            let err = Policy::from_yaml(text, path).unwrap_err().to_string();
            assert!(err.contains(want), "{text:?}: {err}");
            assert!(err.contains("fix:"), "{text:?}: {err}");
        }
        let empty = Policy::from_yaml(" \n", path).unwrap_err().to_string();
        assert!(empty.contains("rules: []"), "{empty}");
        assert_eq!(
            Policy::from_yaml("rules: []", path).unwrap(),
            Policy::default()
        );
    }

    #[test]
    fn a_reload_swaps_the_policy_and_a_bad_file_keeps_the_last_good_one() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("policy.yaml");
        let t = Target::new("web.shop.svc.cluster.local", 80);
        std::fs::write(&path, "rules: []\n").unwrap();
        let p = ReloadingPolicy::load(PolicySource::File(path.clone()), PolicyMetrics::default())
            .unwrap();
        assert!(p.check("x", &t).is_ok());
        assert!(!p.reload_if_changed().unwrap(), "unchanged");
        std::fs::write(
            &path,
            "rules:\n- services: ['web.shop.svc.cluster.local']\n  clients: ['y']\n",
        )
        .unwrap();
        assert!(p.reload_if_changed().unwrap());
        assert_eq!(p.generation(), 1);
        assert!(p.check("x", &t).is_err());
        std::fs::write(&path, "rules: [").unwrap();
        assert!(p.reload_if_changed().is_err());
        assert!(!p.reload_if_changed().unwrap(), "the same bad text once");
        assert!(p.check("x", &t).is_err(), "the last good policy stays");
        assert!(p.check("y", &t).is_ok());
        assert_eq!(p.generation(), 1);
        assert!(
            ReloadingPolicy::load(PolicySource::File(path), PolicyMetrics::default()).is_err(),
            "a bad file at start is an error"
        );
    }
}
