//! Federated Services (`<svc>-federated`): one Service per namespace that joins same-named
//! Services of the local cluster and of every linked cluster (flat network only).
//!
//! Members are listed in annotations: [`REMOTE_DISCOVERY`](labels::REMOTE_DISCOVERY) holds
//! `svc@cluster,svc@cluster` and [`LOCAL_DISCOVERY`](labels::LOCAL_DISCOVERY) holds `svc` when the
//! local cluster is a member. Labels (copied with the usual exclusions, plus
//! `mirrored-service: "true"` and no cluster-name), annotations and ports come from one member,
//! the *metadata source* (upstream: the member whose Link is oldest, the local cluster first);
//! the caller decides which member that is. Member lists survive every rewrite. A headless
//! Service cannot join.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{Service, ServiceSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

use super::build::mirror_port;
use super::meta::{copy_annotations, copy_labels};
use super::remote::RemoteService;
use crate::labels;
use crate::link::ValidLink;
use crate::naming::federated_name;
use crate::{Error, Result};

/// ConfigMap (in the extension's namespace) holding the install's exclusions for the local
/// member (`localServiceMirror.excludedLabels` / `excludedAnnotations`), which every mirror
/// controller Deployment reads into its environment (optional: absent means none).
pub const LOCAL_MIRROR_CONFIG_MAP: &str = "mc-local-service-mirror";
/// Key of [`LOCAL_MIRROR_CONFIG_MAP`] with the comma-separated label exclusions.
pub const LOCAL_EXCLUDED_LABELS_KEY: &str = "excludedLabels";
/// Key of [`LOCAL_MIRROR_CONFIG_MAP`] with the comma-separated annotation exclusions.
pub const LOCAL_EXCLUDED_ANNOTATIONS_KEY: &str = "excludedAnnotations";
/// Environment variable of `mc-mirror` (`--local-excluded-labels`) fed from
/// [`LOCAL_EXCLUDED_LABELS_KEY`].
pub const LOCAL_EXCLUDED_LABELS_ENV: &str = "MC_LOCAL_EXCLUDED_LABELS";
/// Environment variable of `mc-mirror` (`--local-excluded-annotations`) fed from
/// [`LOCAL_EXCLUDED_ANNOTATIONS_KEY`].
pub const LOCAL_EXCLUDED_ANNOTATIONS_ENV: &str = "MC_LOCAL_EXCLUDED_ANNOTATIONS";

/// Where a federated member comes from.
#[derive(Debug, Clone, Copy)]
pub struct FederatedSource<'a> {
    /// The linked cluster, or `None` for the local cluster.
    pub cluster: Option<&'a str>,
    /// Label keys not copied (`prefix/*` allowed).
    pub excluded_labels: &'a [String],
    /// Annotation keys not copied (`prefix/*` allowed).
    pub excluded_annotations: &'a [String],
    /// Whether this member supplies the federated Service's labels, annotations and ports.
    pub metadata_source: bool,
}

impl<'a> FederatedSource<'a> {
    /// A member from the cluster of `link`.
    pub fn link(link: &'a ValidLink, metadata_source: bool) -> Self {
        FederatedSource {
            cluster: Some(&link.cluster_name),
            excluded_labels: &link.excluded_labels,
            excluded_annotations: &link.excluded_annotations,
            metadata_source,
        }
    }

    /// The local cluster as a member (it always counts as the oldest, so it is the metadata
    /// source), with the install's exclusions for the local member (upstream's
    /// `localServiceMirror.excludedLabels` and `excludedAnnotations`, which its local service
    /// mirror applies; `prefix/*` allowed). No Link's exclusions apply to the local member.
    pub fn local(excluded_labels: &'a [String], excluded_annotations: &'a [String]) -> Self {
        FederatedSource {
            cluster: None,
            excluded_labels,
            excluded_annotations,
            metadata_source: true,
        }
    }
}

/// The members of a federated Service, from its annotations.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Members {
    /// `(service, cluster)` of each remote member, in annotation order.
    pub remote: Vec<(String, String)>,
    /// The local member's service name, when the local cluster is a member.
    pub local: Option<String>,
}

impl Members {
    /// Read the member annotations. Entries that are not `svc@cluster` are ignored, as upstream.
    pub fn from_meta(meta: &ObjectMeta) -> Members {
        let get = |k: &str| meta.annotations.as_ref().and_then(|a| a.get(k));
        Members {
            remote: get(labels::REMOTE_DISCOVERY)
                .map(|s| parse_members(s))
                .unwrap_or_default(),
            local: get(labels::LOCAL_DISCOVERY)
                .filter(|s| !s.is_empty())
                .cloned(),
        }
    }

    /// `true` when nothing is left: the federated Service should be deleted.
    pub fn is_empty(&self) -> bool {
        self.remote.is_empty() && self.local.is_none()
    }

    fn add(&mut self, svc: &str, cluster: Option<&str>) {
        match cluster {
            None => self.local = Some(svc.to_string()),
            Some(c) => {
                let entry = (svc.to_string(), c.to_string());
                if !self.remote.contains(&entry) {
                    self.remote.push(entry);
                }
            }
        }
    }

    fn remove(&mut self, svc: &str, cluster: Option<&str>) {
        match cluster {
            None => self.local = None,
            Some(c) => self.remote.retain(|(s, cl)| !(s == svc && cl == c)),
        }
    }

    fn write(&self, annotations: &mut BTreeMap<String, String>) {
        annotations.remove(labels::REMOTE_DISCOVERY);
        annotations.remove(labels::LOCAL_DISCOVERY);
        if !self.remote.is_empty() {
            annotations.insert(
                labels::REMOTE_DISCOVERY.to_string(),
                format_members(&self.remote),
            );
        }
        if let Some(local) = &self.local {
            annotations.insert(labels::LOCAL_DISCOVERY.to_string(), local.clone());
        }
    }
}

/// Parse `svc@cluster,svc@cluster`, skipping entries that do not have both parts.
pub fn parse_members(s: &str) -> Vec<(String, String)> {
    s.split(',')
        .filter_map(|entry| {
            let (svc, cluster) = entry.trim().split_once('@')?;
            (!svc.is_empty() && !cluster.is_empty() && !cluster.contains('@'))
                .then(|| (svc.to_string(), cluster.to_string()))
        })
        .collect()
}

/// Format members as `svc@cluster,svc@cluster`.
pub fn format_members(members: &[(String, String)]) -> String {
    members
        .iter()
        .map(|(s, c)| format!("{s}@{c}"))
        .collect::<Vec<_>>()
        .join(",")
}

/// The federated Service after `remote` joins it (`existing` is the current one, if any).
///
/// Errors: the remote Service cannot be mirrored, or it is headless
/// ([`Error::InvalidRemoteService`], "headless service cannot join a federated service").
pub fn federated_join(
    remote: &Service,
    source: &FederatedSource<'_>,
    existing: Option<&Service>,
) -> Result<Service> {
    let svc = RemoteService::check(remote)?;
    if svc.headless {
        return Err(Error::InvalidRemoteService {
            service: format!("{}/{}", svc.namespace, svc.name),
            field: "spec.clusterIP".into(),
            problem: "is None: a headless service cannot join a federated service".into(),
            fix: "federate a ClusterIP Service, or remove the federated label".into(),
        });
    }
    let mut members = existing
        .map(|e| Members::from_meta(&e.metadata))
        .unwrap_or_default();
    members.add(svc.name, source.cluster);
    let mut out = match existing {
        Some(e) if !source.metadata_source => e.clone(),
        _ => fresh(remote, &svc, source),
    };
    members.write(out.metadata.annotations.get_or_insert_with(BTreeMap::new));
    Ok(out)
}

/// The federated Service after member `svc` of `cluster` (`None`: the local cluster) leaves,
/// or `None` when no member is left and the Service should be deleted.
pub fn federated_leave(existing: &Service, svc: &str, cluster: Option<&str>) -> Option<Service> {
    let mut members = Members::from_meta(&existing.metadata);
    members.remove(svc, cluster);
    if members.is_empty() {
        return None;
    }
    let mut out = existing.clone();
    members.write(out.metadata.annotations.get_or_insert_with(BTreeMap::new));
    Some(out)
}

/// Whether a local `<svc>-federated` is mc's: it carries `mirrored-service: "true"` and no
/// cluster-name label (a mirror of one cluster, or anything else, is never touched).
pub fn federated_ownership(meta: &ObjectMeta) -> super::Ownership {
    let label = |k: &str| {
        meta.labels
            .as_ref()
            .and_then(|l| l.get(k))
            .map(String::as_str)
    };
    match (label(labels::MIRRORED_SERVICE), label(labels::CLUSTER_NAME)) {
        (Some("true"), None) => super::Ownership::Ours,
        (Some("true"), Some(c)) => super::Ownership::OtherCluster(c.to_string()),
        _ => super::Ownership::Foreign,
    }
}

/// Whether the member of `cluster` is the metadata source of a federated Service with
/// `members`: no local member, and its Link is the oldest among the remote members' Links.
/// `created` gives a cluster's Link creation time (RFC 3339 or any totally ordered key); a
/// member without a known Link counts as newest. Ties go to the smaller cluster name.
pub fn is_metadata_source<K: Ord>(
    members: &Members,
    cluster: &str,
    created: impl Fn(&str) -> Option<K>,
) -> bool {
    if members.local.is_some() {
        return false;
    }
    let oldest = members
        .remote
        .iter()
        .map(|(_, c)| (created(c).map_or(1, |_| 0), created(c), c.as_str()))
        .min();
    oldest.is_some_and(|(_, _, c)| c == cluster)
}

/// `actual` with the labels, annotations and ports of `desired`, when they differ (the update
/// to write with `actual`'s resourceVersion), or `None` when nothing is to be written.
pub fn federated_update(desired: &Service, actual: &Service) -> Option<Service> {
    if !super::service_needs_update(desired, actual) {
        return None;
    }
    let mut out = actual.clone();
    out.metadata.labels = desired.metadata.labels.clone();
    out.metadata.annotations = desired.metadata.annotations.clone();
    let ports = desired.spec.as_ref().and_then(|s| s.ports.clone());
    out.spec.get_or_insert_with(ServiceSpec::default).ports = ports;
    Some(out)
}

fn fresh(remote: &Service, svc: &RemoteService<'_>, source: &FederatedSource<'_>) -> Service {
    let mut labels_out = copy_labels(remote.metadata.labels.as_ref(), source.excluded_labels);
    labels_out.insert(labels::MIRRORED_SERVICE.to_string(), "true".to_string());
    let annotations = copy_annotations(
        remote.metadata.annotations.as_ref(),
        source.excluded_annotations,
    );
    let ports = svc.ports.iter().map(mirror_port).collect();
    Service {
        metadata: ObjectMeta {
            name: Some(federated_name(svc.name).name),
            namespace: Some(svc.namespace.to_string()),
            labels: Some(labels_out),
            annotations: Some(annotations),
            ..ObjectMeta::default()
        },
        spec: Some(ServiceSpec {
            ports: Some(ports),
            ..ServiceSpec::default()
        }),
        status: None,
    }
}

#[cfg(test)]
mod tests {
    use super::super::fixtures::*;
    use super::*;

    fn annotation<'a>(s: &'a Service, k: &str) -> Option<&'a str> {
        s.metadata
            .annotations
            .as_ref()
            .and_then(|a| a.get(k))
            .map(String::as_str)
    }

    #[test]
    fn members_parse_and_format() {
        let m = parse_members("web@east, web@west,bad,@x,y@,a@b@c");
        assert_eq!(
            m,
            [
                ("web".to_string(), "east".to_string()),
                ("web".to_string(), "west".to_string())
            ]
        );
        assert_eq!(format_members(&m), "web@east,web@west");
    }

    #[test]
    fn join_creates_then_accumulates_members() -> Result<()> {
        let link = link();
        let mut west = link.clone();
        west.cluster_name = "west".into();
        let remote = remote("web", "true");
        let first = federated_join(&remote, &FederatedSource::link(&link, true), None)?;
        assert_eq!(first.metadata.name.as_deref(), Some("web-federated"));
        assert_eq!(
            annotation(&first, labels::REMOTE_DISCOVERY),
            Some("web@east")
        );
        assert_eq!(annotation(&first, labels::OPAQUE_PORTS), Some("5432"));
        let l = first.metadata.labels.clone().unwrap_or_default();
        assert_eq!(
            l.get(labels::MIRRORED_SERVICE).map(String::as_str),
            Some("true")
        );
        assert!(!l.contains_key(labels::CLUSTER_NAME));
        assert!(!l.contains_key("argocd.argoproj.io/instance"));
        assert_eq!(first.spec.as_ref().and_then(|s| s.selector.clone()), None);

        let mut other = remote.clone();
        other.metadata.labels.iter_mut().for_each(|l| {
            l.insert("app".into(), "from-west".into());
        });
        let second = federated_join(&other, &FederatedSource::link(&west, false), Some(&first))?;
        assert_eq!(
            annotation(&second, labels::REMOTE_DISCOVERY),
            Some("web@east,web@west")
        );
        assert_eq!(
            second
                .metadata
                .labels
                .as_ref()
                .and_then(|l| l.get("app"))
                .map(String::as_str),
            Some("web"),
            "metadata comes from the metadata source only"
        );
        let local = federated_join(&other, &FederatedSource::local(&[], &[]), Some(&second))?;
        assert_eq!(annotation(&local, labels::LOCAL_DISCOVERY), Some("web"));
        assert_eq!(
            annotation(&local, labels::REMOTE_DISCOVERY),
            Some("web@east,web@west"),
            "members survive a metadata rewrite"
        );
        assert_eq!(
            local
                .metadata
                .labels
                .as_ref()
                .and_then(|l| l.get("app"))
                .map(String::as_str),
            Some("from-west")
        );
        let again = federated_join(&remote, &FederatedSource::link(&link, false), Some(&local))?;
        assert_eq!(
            Members::from_meta(&again.metadata).remote.len(),
            2,
            "idempotent"
        );
        Ok(())
    }

    /// The local member's metadata goes through the install's exclusions for the local member
    /// (upstream's `localServiceMirror.excluded*`), not through any Link's, and wins over the
    /// oldest Link's member.
    #[test]
    fn the_local_member_takes_the_local_exclusions() -> Result<()> {
        let link = link();
        let remote = remote("web", "true");
        let joined = federated_join(&remote, &FederatedSource::link(&link, true), None)?;
        let mut local = remote.clone();
        for (k, v) in [
            ("evil", "yes"),
            ("evilish", "kept"),
            ("evil.linkerd/label", "x"),
            ("evil.linkerd.io/label", "x"),
            ("argocd.argoproj.io/instance", "local"),
        ] {
            local
                .metadata
                .labels
                .get_or_insert_default()
                .insert(k.into(), v.into());
            local
                .metadata
                .annotations
                .get_or_insert_default()
                .insert(k.into(), v.into());
        }
        let excluded = ["evil.linkerd/*".to_string(), "evil".to_string()];
        let source = FederatedSource::local(&excluded, &excluded);
        let out = federated_join(&local, &source, Some(&joined))?;
        let keys = |m: &Option<BTreeMap<String, String>>| -> Vec<String> {
            m.iter().flatten().map(|(k, _)| k.clone()).collect()
        };
        let l = keys(&out.metadata.labels);
        let a = keys(&out.metadata.annotations);
        for gone in ["evil", "evil.linkerd/label", "evil.linkerd.io/label"] {
            assert!(!l.contains(&gone.to_string()), "label {gone}: {l:?}");
            assert!(!a.contains(&gone.to_string()), "annotation {gone}: {a:?}");
        }
        // `evil` is an exact key; the Link's exclusions (argocd…/*, prometheus.io/scrape) do
        // not apply to the local member.
        for kept in ["evilish", "argocd.argoproj.io/instance", "app"] {
            assert!(l.contains(&kept.to_string()), "label {kept}: {l:?}");
        }
        for kept in ["evilish", "prometheus.io/scrape", labels::OPAQUE_PORTS] {
            assert!(a.contains(&kept.to_string()), "annotation {kept}: {a:?}");
        }
        assert_eq!(annotation(&out, labels::LOCAL_DISCOVERY), Some("web"));
        assert_eq!(annotation(&out, labels::REMOTE_DISCOVERY), Some("web@east"));
        // Without exclusions everything but mirror keys reaches the federated Service.
        let plain = federated_join(&local, &FederatedSource::local(&[], &[]), Some(&joined))?;
        assert!(keys(&plain.metadata.labels).contains(&"evil.linkerd.io/label".to_string()));
        Ok(())
    }

    #[test]
    fn leave_and_delete_when_empty() -> Result<()> {
        let link = link();
        let remote = remote("web", "true");
        let joined = federated_join(&remote, &FederatedSource::link(&link, true), None)?;
        let with_local = federated_join(&remote, &FederatedSource::local(&[], &[]), Some(&joined))?;
        let left = federated_leave(&with_local, "web", Some("east"));
        let left = left.unwrap_or_default();
        assert_eq!(annotation(&left, labels::REMOTE_DISCOVERY), None);
        assert_eq!(annotation(&left, labels::LOCAL_DISCOVERY), Some("web"));
        assert_eq!(federated_leave(&left, "web", None), None);
        Ok(())
    }

    #[test]
    fn headless_cannot_join() {
        let link = link();
        let mut headless = remote("db", "true");
        headless
            .spec
            .iter_mut()
            .for_each(|s| s.cluster_ip = Some("None".into()));
        let msg = federated_join(&headless, &FederatedSource::link(&link, true), None)
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(msg.contains("headless service cannot join"), "{msg}");
    }

    #[test]
    fn ownership_of_federated_services() {
        let mut m = ObjectMeta::default();
        assert_eq!(federated_ownership(&m), crate::mirror::Ownership::Foreign);
        m.labels = Some(BTreeMap::from([(
            labels::MIRRORED_SERVICE.into(),
            "true".into(),
        )]));
        assert_eq!(federated_ownership(&m), crate::mirror::Ownership::Ours);
        m.labels.iter_mut().for_each(|l| {
            l.insert(labels::CLUSTER_NAME.into(), "east".into());
        });
        assert_eq!(
            federated_ownership(&m),
            crate::mirror::Ownership::OtherCluster("east".into())
        );
    }

    #[test]
    fn metadata_source_is_local_else_oldest_link() {
        let mut members = Members {
            remote: vec![("web".into(), "east".into()), ("web".into(), "west".into())],
            local: None,
        };
        let created = |c: &str| match c {
            "east" => Some("2026-01-02T00:00:00Z"),
            "west" => Some("2026-01-01T00:00:00Z"),
            _ => None,
        };
        assert!(is_metadata_source(&members, "west", created));
        assert!(!is_metadata_source(&members, "east", created));
        // A member without a known Link counts as newest.
        let only_east = |c: &str| (c == "east").then_some(1);
        assert!(is_metadata_source(&members, "east", only_east));
        members.local = Some("web".into());
        assert!(!is_metadata_source(&members, "west", created));
    }

    #[test]
    fn update_only_when_owned_parts_differ() -> Result<()> {
        let link = link();
        let desired = federated_join(
            &remote("web", "true"),
            &FederatedSource::link(&link, true),
            None,
        )?;
        let mut actual = desired.clone();
        actual.metadata.resource_version = Some("7".into());
        assert_eq!(federated_update(&desired, &actual), None);
        actual.metadata.labels = None;
        let up = federated_update(&desired, &actual).expect("an update");
        assert_eq!(up.metadata.resource_version.as_deref(), Some("7"));
        assert_eq!(up.metadata.labels, desired.metadata.labels);
        Ok(())
    }
}
