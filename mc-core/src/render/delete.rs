//! Lists of objects to delete: `mc multicluster unlink` and `uninstall`.

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use super::link::{
    controller_binding_name, controller_name, controller_role_name, credentials_secret_name,
    lease_name, old_lease_name,
};

/// A reference to one Kubernetes object.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ObjectRef {
    /// `apiVersion`, e.g. `v1` or `apps/v1`.
    pub api_version: String,
    /// `kind`, e.g. `Service`.
    pub kind: String,
    /// Namespace; `None` for cluster-scoped objects.
    pub namespace: Option<String>,
    /// Name.
    pub name: String,
}

impl ObjectRef {
    /// A reference from its parts.
    pub fn new(api_version: &str, kind: &str, namespace: Option<&str>, name: &str) -> ObjectRef {
        ObjectRef {
            api_version: api_version.to_owned(),
            kind: kind.to_owned(),
            namespace: namespace.map(str::to_owned),
            name: name.to_owned(),
        }
    }

    /// The reference of a rendered or fetched object (`None` if it lacks apiVersion, kind or name).
    pub fn of(object: &Value) -> Option<ObjectRef> {
        Some(ObjectRef {
            api_version: object["apiVersion"].as_str()?.to_owned(),
            kind: object["kind"].as_str()?.to_owned(),
            namespace: object["metadata"]["namespace"].as_str().map(str::to_owned),
            name: object["metadata"]["name"].as_str()?.to_owned(),
        })
    }
}

impl std::fmt::Display for ObjectRef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.namespace {
            Some(ns) => write!(f, "{}/{} {ns}/{}", self.api_version, self.kind, self.name),
            None => write!(f, "{}/{} {}", self.api_version, self.kind, self.name),
        }
    }
}

/// Minimal objects (apiVersion, kind, metadata.name/namespace) for `kubectl delete -f -`, with
/// duplicates removed and namespaced objects before cluster-scoped ones (the reverse of apply
/// order: the namespace and CRD go last).
pub fn delete_list(refs: &[ObjectRef]) -> Vec<Value> {
    let mut seen = std::collections::BTreeSet::new();
    let mut ordered: Vec<&ObjectRef> = refs.iter().filter(|r| seen.insert(*r)).collect();
    ordered.sort_by_key(|r| delete_rank(r));
    ordered
        .into_iter()
        .map(|r| {
            let mut metadata = json!({"name": r.name});
            if let Some(ns) = &r.namespace {
                metadata["namespace"] = json!(ns);
            }
            json!({"apiVersion": r.api_version, "kind": r.kind, "metadata": metadata})
        })
        .collect()
}

fn delete_rank(r: &ObjectRef) -> u8 {
    match (r.kind.as_str(), r.namespace.is_some()) {
        ("Link", _) => 0,
        (_, true) => 1,
        ("CustomResourceDefinition", _) => 3,
        ("Namespace", _) => 4,
        _ => 2,
    }
}

/// What `mc multicluster unlink` deletes for link `cluster` in `namespace`: the controller's
/// objects (Deployment, ServiceAccount, RBAC, probe Service) and, unless `only_controller`, the
/// credentials Secrets (also the copy in `linkerd_namespace`), the Link, the Lease (upstream's
/// name, and the name mc's controller used before, so an upgraded install leaves none behind),
/// and the given mirror Services.
pub fn unlink_refs(
    cluster: &str,
    namespace: &str,
    linkerd_namespace: &str,
    with_probe: bool,
    only_controller: bool,
    mirrors: &[ObjectRef],
) -> Vec<ObjectRef> {
    let ns = Some(namespace);
    let rbac = "rbac.authorization.k8s.io/v1";
    let mut refs = vec![
        ObjectRef::new("apps/v1", "Deployment", ns, &controller_name(cluster)),
        ObjectRef::new("v1", "ServiceAccount", ns, &controller_name(cluster)),
        ObjectRef::new(
            "policy/v1",
            "PodDisruptionBudget",
            ns,
            &controller_name(cluster),
        ),
        ObjectRef::new(rbac, "Role", ns, &controller_role_name(cluster)),
        ObjectRef::new(rbac, "RoleBinding", ns, &controller_role_name(cluster)),
        ObjectRef::new(
            rbac,
            "ClusterRoleBinding",
            None,
            &controller_binding_name(cluster),
        ),
    ];
    if with_probe {
        refs.push(ObjectRef::new(
            "v1",
            "Service",
            ns,
            &crate::naming::probe_service_name(cluster).name,
        ));
    }
    if !only_controller {
        let secret = credentials_secret_name(cluster);
        refs.push(ObjectRef::new(
            "multicluster.linkerd.io/v1alpha3",
            "Link",
            ns,
            cluster,
        ));
        refs.push(ObjectRef::new("v1", "Secret", ns, &secret));
        refs.push(ObjectRef::new(
            "v1",
            "Secret",
            Some(linkerd_namespace),
            &secret,
        ));
        for lease in [lease_name(cluster), old_lease_name(cluster)] {
            refs.push(ObjectRef::new(
                "coordination.k8s.io/v1",
                "Lease",
                ns,
                &lease,
            ));
        }
        refs.extend(mirrors.iter().cloned());
    }
    refs
}
