//! The `Link` custom resource (`links.multicluster.linkerd.io`): wire types for v1alpha1,
//! v1alpha2 and v1alpha3, status, validation into typed values, and the CRD.
//!
//! Every scalar of the spec is a string on the wire, as upstream (ports and thresholds
//! included). [`LinkSpec::validate`] turns it into a [`ValidLink`] with ports as `u16`,
//! durations as [`std::time::Duration`] and selectors as [`Selector`](crate::selector::Selector),
//! or an error naming the field path.
//!
//! ```
//! use mc_core::link::Link;
//!
//! let link: Link = serde_yaml::from_str(r#"
//! apiVersion: multicluster.linkerd.io/v1alpha3
//! kind: Link
//! metadata: {name: east, namespace: linkerd-multicluster}
//! spec:
//!   targetClusterName: east
//!   targetClusterDomain: cluster.local
//!   gatewayAddress: 203.0.113.10
//!   gatewayPort: "4143"
//!   probeSpec: {path: /ready, port: "4191", period: 3s}
//!   selector: {matchLabels: {mirror.linkerd.io/exported: "true"}}
//! "#)?;
//! let valid = link.spec.validate()?;
//! assert_eq!(valid.gateway.as_ref().map(|g| g.port), Some(4143));
//! assert_eq!(valid.probe.as_ref().map(|p| p.failure_threshold), Some(3));
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

mod crd;
mod status;
mod validate;

use std::borrow::Cow;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta};
use serde::{Deserialize, Serialize};

use crate::{Error, Result};

pub use crd::crd;
pub use status::{
    Condition, FailureReason, GATEWAY_STATUS_ANNOTATION, GatewayStatus, LinkStatus, LocalRef,
    MIRROR_STATUS_BUDGET, MIRRORED, MirrorOutcome, ObjectRef, RemoteRef, STATUS_COMPLETE,
    ServiceStatus, TARGET_REACHABLE, TargetFailure, fit_mirror_services, latency_ms,
    merge_condition, mirrored_condition, status_complete_condition, target_condition,
};
pub use validate::{
    DEFAULT_CLUSTER_DOMAIN, DEFAULT_FAILURE_THRESHOLD, DEFAULT_LINKERD_NAMESPACE,
    DEFAULT_PROBE_PERIOD, DEFAULT_PROBE_TIMEOUT, GatewaySpec, Probe, ValidLink, parse_duration,
    parse_port,
};

/// API group of the Link CRD.
pub const GROUP: &str = "multicluster.linkerd.io";
/// Kind of the Link CRD.
pub const KIND: &str = "Link";
/// Plural resource name.
pub const PLURAL: &str = "links";
/// The version mc writes and the CRD stores.
pub const VERSION: &str = "v1alpha3";
/// `apiVersion` of the Links mc writes.
pub const API_VERSION: &str = "multicluster.linkerd.io/v1alpha3";
/// Every served version, oldest first.
pub const VERSIONS: [&str; 3] = ["v1alpha1", "v1alpha2", "v1alpha3"];
/// Name of the CustomResourceDefinition.
pub const CRD_NAME: &str = "links.multicluster.linkerd.io";

/// A Link: how a source cluster mirrors services of one target cluster.
///
/// Serialises with `apiVersion: multicluster.linkerd.io/v1alpha3` and `kind: Link`. Deserialising
/// accepts any of the three versions (the schemas are additive), and rejects another kind.
/// Implements [`kube_core::Resource`], so `kube::Api<Link>` works.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Link {
    /// Object metadata.
    pub metadata: ObjectMeta,
    /// The spec, as on the wire.
    pub spec: LinkSpec,
    /// The status written by the controller (v1alpha2+).
    pub status: Option<LinkStatus>,
}

/// Declares a Link spec struct: the fields of every version, then the version's own fields
/// (moved over by name in the generated `From` impl into the v1alpha3 [`LinkSpec`]).
macro_rules! link_spec {
    (@struct $(#[$meta:meta])* $name:ident { $($(#[$fmeta:meta])* $field:ident: $ty:ty,)* }) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
        #[serde(rename_all = "camelCase")]
        pub struct $name {
            /// `targetClusterName`: suffix of mirror names, value of the cluster-name label.
            #[serde(default, skip_serializing_if = "Option::is_none")]
            pub target_cluster_name: Option<String>,
            /// `targetClusterDomain`: the target's cluster domain (`cluster.local`).
            #[serde(default, skip_serializing_if = "Option::is_none")]
            pub target_cluster_domain: Option<String>,
            /// `targetClusterLinkerdNamespace`: the target's control-plane namespace (`linkerd`).
            #[serde(default, skip_serializing_if = "Option::is_none")]
            pub target_cluster_linkerd_namespace: Option<String>,
            /// `clusterCredentialsSecret`: Secret (in the Link's namespace) with the kubeconfig.
            #[serde(default, skip_serializing_if = "Option::is_none")]
            pub cluster_credentials_secret: Option<String>,
            /// `gatewayAddress`: comma-separated IPs and DNS names; empty for a gateway-less Link.
            #[serde(default, skip_serializing_if = "Option::is_none")]
            pub gateway_address: Option<String>,
            /// `gatewayPort`: the gateway port, a string.
            #[serde(default, skip_serializing_if = "Option::is_none")]
            pub gateway_port: Option<String>,
            /// `gatewayIdentity`: the gateway's TLS identity.
            #[serde(default, skip_serializing_if = "Option::is_none")]
            pub gateway_identity: Option<String>,
            /// `probeSpec`: how to probe the gateway.
            #[serde(default, skip_serializing_if = "Option::is_none")]
            pub probe_spec: Option<ProbeSpec>,
            /// `selector`: Services mirrored in gateway mode.
            #[serde(default, skip_serializing_if = "Option::is_none")]
            pub selector: Option<LabelSelector>,
            /// `remoteDiscoverySelector` (2.14+): Services mirrored in remote-discovery mode.
            #[serde(default, skip_serializing_if = "Option::is_none")]
            pub remote_discovery_selector: Option<LabelSelector>,
            $($(#[$fmeta])* pub $field: $ty,)*
        }
    };
    ($(#[$meta:meta])* $name:ident { $($(#[$fmeta:meta])* $field:ident: $ty:ty,)* }) => {
        link_spec!(@struct $(#[$meta])* $name { $($(#[$fmeta])* $field: $ty,)* });

        impl From<$name> for super::LinkSpec {
            fn from(s: $name) -> Self {
                super::LinkSpec {
                    target_cluster_name: s.target_cluster_name,
                    target_cluster_domain: s.target_cluster_domain,
                    target_cluster_linkerd_namespace: s.target_cluster_linkerd_namespace,
                    cluster_credentials_secret: s.cluster_credentials_secret,
                    gateway_address: s.gateway_address,
                    gateway_port: s.gateway_port,
                    gateway_identity: s.gateway_identity,
                    probe_spec: s.probe_spec,
                    selector: s.selector,
                    remote_discovery_selector: s.remote_discovery_selector,
                    $($field: s.$field,)*
                    ..super::LinkSpec::default()
                }
            }
        }
    };
}

link_spec!(@struct
    /// The v1alpha3 spec, field for field as on the wire. Nothing is required by the schema; see
    /// [`LinkSpec::validate`] for what a usable Link needs.
    LinkSpec {
        /// `federatedServiceSelector` (v1alpha2+): Services that join `<svc>-federated`.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        federated_service_selector: Option<LabelSelector>,
        /// `excludedAnnotations` (v1alpha3): annotation keys not copied; `prefix/*` allowed.
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        excluded_annotations: Vec<String>,
        /// `excludedLabels` (v1alpha3): label keys not copied; `prefix/*` allowed.
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        excluded_labels: Vec<String>,
    }
);

/// `spec.probeSpec`, every field a string as on the wire.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ProbeSpec {
    /// `path`: HTTP path probed; empty means no probe.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
    /// `port`: probe port, a string.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub port: Option<String>,
    /// `period`: interval, a duration (`3s`) or bare seconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub period: Option<String>,
    /// `timeout`: per-probe timeout (CRD default `30s`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout: Option<String>,
    /// `failureThreshold`: consecutive failures before the gateway is dead (CRD default `"3"`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failure_threshold: Option<String>,
}

/// The v1alpha1 spec (2.9–2.16); converts losslessly into [`LinkSpec`].
pub mod v1alpha1 {
    use super::{Deserialize, LabelSelector, ProbeSpec, Serialize};

    link_spec!(
        /// The v1alpha1 spec: no federated selector, no exclusions.
        LinkSpec {}
    );
}

/// The v1alpha2 spec (2.17); converts losslessly into [`LinkSpec`].
pub mod v1alpha2 {
    use super::{Deserialize, LabelSelector, ProbeSpec, Serialize};

    link_spec!(
        /// The v1alpha2 spec: v1alpha1 plus `federatedServiceSelector`.
        LinkSpec {
            /// `federatedServiceSelector`: Services that join `<svc>-federated`.
            #[serde(default, skip_serializing_if = "Option::is_none")]
            federated_service_selector: Option<LabelSelector>,
        }
    );
}

/// The wire shape of a Link, with `apiVersion` and `kind`.
#[derive(Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct LinkWire {
    #[serde(default)]
    api_version: String,
    #[serde(default)]
    kind: String,
    #[serde(default)]
    metadata: ObjectMeta,
    #[serde(default)]
    spec: LinkSpec,
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "lenient_status"
    )]
    status: Option<LinkStatus>,
}

/// A status this version cannot read (written by another controller, or a future version) is
/// read as no status rather than making the whole Link unreadable; the controller owns the
/// status and rewrites it.
fn lenient_status<'de, D: serde::Deserializer<'de>>(
    d: D,
) -> std::result::Result<Option<LinkStatus>, D::Error> {
    let value = Option::<serde_json::Value>::deserialize(d)?;
    Ok(value.and_then(|v| serde_json::from_value(v).ok()))
}

impl Serialize for Link {
    fn serialize<S: serde::Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        LinkWire {
            api_version: API_VERSION.to_string(),
            kind: KIND.to_string(),
            metadata: self.metadata.clone(),
            spec: self.spec.clone(),
            status: self.status.clone(),
        }
        .serialize(s)
    }
}

impl<'de> Deserialize<'de> for Link {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        let wire = LinkWire::deserialize(d)?;
        check_type(&wire.api_version, &wire.kind).map_err(serde::de::Error::custom)?;
        Ok(Link {
            metadata: wire.metadata,
            spec: wire.spec,
            status: wire.status,
        })
    }
}

/// Accept an empty or Link apiVersion/kind of a served version, reject anything else.
fn check_type(api_version: &str, kind: &str) -> Result<()> {
    let version_ok = api_version.is_empty()
        || api_version
            .strip_prefix(GROUP)
            .and_then(|v| v.strip_prefix('/'))
            .is_some_and(|v| VERSIONS.contains(&v));
    if version_ok && (kind.is_empty() || kind == KIND) {
        Ok(())
    } else {
        Err(Error::WrongKind {
            expected: "multicluster.linkerd.io/v1alpha1..v1alpha3 Link",
            api_version: api_version.to_string(),
            kind: kind.to_string(),
        })
    }
}

impl Link {
    /// A Link named `name` in `namespace` with `spec`.
    pub fn new(name: &str, namespace: &str, spec: LinkSpec) -> Link {
        Link {
            metadata: ObjectMeta {
                name: Some(name.to_string()),
                namespace: Some(namespace.to_string()),
                ..ObjectMeta::default()
            },
            spec,
            status: None,
        }
    }

    /// Parse a Link from a JSON value, with a clear error when it is another kind of object.
    pub fn from_json(value: serde_json::Value) -> Result<Link> {
        let (api_version, kind) = crate::mirror::type_meta(&value);
        check_type(&api_version, &kind)?;
        serde_json::from_value(value).map_err(|e| Error::Malformed {
            expected: "Link",
            reason: e.to_string(),
        })
    }

    /// Parse a Link from YAML (or JSON) text.
    pub fn from_yaml(text: &str) -> Result<Link> {
        let value: serde_json::Value =
            serde_yaml::from_str(text).map_err(|e| Error::Malformed {
                expected: "Link",
                reason: e.to_string(),
            })?;
        Link::from_json(value)
    }
}

impl kube_core::Resource for Link {
    type DynamicType = ();
    type Scope = k8s_openapi::NamespaceResourceScope;

    fn kind(_: &()) -> Cow<'_, str> {
        Cow::Borrowed(KIND)
    }
    fn group(_: &()) -> Cow<'_, str> {
        Cow::Borrowed(GROUP)
    }
    fn version(_: &()) -> Cow<'_, str> {
        Cow::Borrowed(VERSION)
    }
    fn api_version(_: &()) -> Cow<'_, str> {
        Cow::Borrowed(API_VERSION)
    }
    fn plural(_: &()) -> Cow<'_, str> {
        Cow::Borrowed(PLURAL)
    }
    fn meta(&self) -> &ObjectMeta {
        &self.metadata
    }
    fn meta_mut(&mut self) -> &mut ObjectMeta {
        &mut self.metadata
    }
}

impl kube_core::object::HasSpec for Link {
    type Spec = LinkSpec;
    fn spec(&self) -> &LinkSpec {
        &self.spec
    }
    fn spec_mut(&mut self) -> &mut LinkSpec {
        &mut self.spec
    }
}

impl kube_core::object::HasStatus for Link {
    type Status = LinkStatus;
    fn status(&self) -> Option<&LinkStatus> {
        self.status.as_ref()
    }
    fn status_mut(&mut self) -> &mut Option<LinkStatus> {
        &mut self.status
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use kube_core::Resource;

    const UPSTREAM: &str = r#"
apiVersion: multicluster.linkerd.io/v1alpha3
kind: Link
metadata:
  name: east
  namespace: linkerd-multicluster
  annotations: {linkerd.io/created-by: "linkerd/cli edge-26.1.1"}
spec:
  targetClusterName: east
  targetClusterDomain: cluster.local
  targetClusterLinkerdNamespace: linkerd
  clusterCredentialsSecret: cluster-credentials-east
  gatewayAddress: 203.0.113.10
  gatewayPort: "4143"
  gatewayIdentity: linkerd-gateway.linkerd-multicluster.serviceaccount.identity.linkerd.cluster.local
  probeSpec: {path: /ready, port: "4191", period: 3s, timeout: 30s, failureThreshold: "3"}
  selector: {matchLabels: {mirror.linkerd.io/exported: "true"}}
  remoteDiscoverySelector: {matchLabels: {mirror.linkerd.io/exported: remote-discovery}}
  federatedServiceSelector: {matchLabels: {mirror.linkerd.io/federated: member}}
  excludedLabels: [argocd.argoproj.io/*]
  someFutureField: ignored
"#;

    #[test]
    fn parses_upstream_yaml_and_round_trips() -> Result<()> {
        let link = Link::from_yaml(UPSTREAM)?;
        assert_eq!(link.spec.gateway_port.as_deref(), Some("4143"));
        assert_eq!(link.spec.excluded_labels, ["argocd.argoproj.io/*"]);
        let json = serde_json::to_value(&link).map_err(|e| Error::Malformed {
            expected: "Link",
            reason: e.to_string(),
        })?;
        assert_eq!(json["apiVersion"], API_VERSION);
        assert_eq!(json["kind"], KIND);
        assert_eq!(json["spec"]["probeSpec"]["failureThreshold"], "3");
        assert!(json["spec"].get("someFutureField").is_none());
        assert!(json.get("status").is_none());
        assert_eq!(Link::from_json(json)?, link);
        Ok(())
    }

    #[test]
    fn older_versions_are_accepted_and_convert() -> Result<()> {
        let v1 = UPSTREAM.replace("v1alpha3", "v1alpha1");
        assert_eq!(
            Link::from_yaml(&v1)?.spec.target_cluster_name.as_deref(),
            Some("east")
        );
        let spec: v1alpha2::LinkSpec = serde_yaml::from_str(
            "targetClusterName: east\nfederatedServiceSelector: {matchLabels: {a: b}}\n",
        )
        .map_err(|e| Error::Malformed {
            expected: "Link",
            reason: e.to_string(),
        })?;
        let spec = LinkSpec::from(spec);
        assert_eq!(spec.target_cluster_name.as_deref(), Some("east"));
        assert!(spec.federated_service_selector.is_some());
        assert!(spec.excluded_labels.is_empty());
        Ok(())
    }

    #[test]
    fn other_kinds_are_rejected_clearly() {
        let svc =
            serde_json::json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "x"}});
        let err = Link::from_json(svc)
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(err.contains("\"Service\"") && err.contains("Link"), "{err}");
        let v9 = UPSTREAM.replace("v1alpha3", "v9");
        assert!(matches!(Link::from_yaml(&v9), Err(Error::WrongKind { .. })));
        let bad = serde_json::json!({"kind": "Link", "spec": {"gatewayPort": 4143}});
        assert!(matches!(Link::from_json(bad), Err(Error::Malformed { .. })));
    }

    #[test]
    fn unreadable_status_does_not_hide_the_link() -> Result<()> {
        let text = format!("{UPSTREAM}status:\n  mirrorServices: [{{remoteRef: 7}}]\n");
        let link = Link::from_yaml(&text)?;
        assert_eq!(link.status, None);
        assert_eq!(link.spec.target_cluster_name.as_deref(), Some("east"));
        let good = format!(
            "{UPSTREAM}status:\n  mirrorServices:\n  - controllerName: linkerd.io/service-mirror\n    remoteRef: {{name: web, namespace: shop}}\n    conditions:\n    - {{type: Mirrored, status: \"True\", reason: Mirrored, message: \"\", lastTransitionTime: \"2025-01-01T00:00:00Z\", localRef: {{name: web-east, namespace: shop}}}}\n"
        );
        let status = Link::from_yaml(&good)?.status.unwrap_or_default();
        assert_eq!(status.mirror_services[0].remote_ref.kind, "Service");
        assert_eq!(status.mirror_services[0].conditions[0].reason, "Mirrored");
        Ok(())
    }

    #[test]
    fn resource_metadata() {
        assert_eq!(Link::api_version(&()), API_VERSION);
        assert_eq!(
            Link::url_path(&(), Some("linkerd-multicluster")),
            "/apis/multicluster.linkerd.io/v1alpha3/namespaces/linkerd-multicluster/links"
        );
    }
}
