//! Every label, annotation and well-known value of the multicluster contract.
//!
//! The keys are upstream Linkerd's (see `pkg/k8s/labels.go` upstream), so mirrors written by mc are
//! read correctly by the Linkerd destination controller, CLI and proxies, and vice versa. The only
//! key of our own is [`ORIGINAL_NAME`]; it sits under the `mirror.linkerd.io/` prefix so that it is
//! never copied from a remote object onto a mirror.

// --- keys that select what is exported -------------------------------------------------------

/// Label on a target-cluster Service that exports it. `"true"` selects gateway mode,
/// `"remote-discovery"` selects remote-discovery (flat) mode with the default Link selectors.
pub const EXPORTED: &str = "mirror.linkerd.io/exported";
/// Value of [`EXPORTED`] that the default `selector` matches (gateway mode).
pub const EXPORTED_GATEWAY_VALUE: &str = "true";
/// Value of [`EXPORTED`] that the default `remoteDiscoverySelector` matches (flat mode).
pub const EXPORTED_REMOTE_DISCOVERY_VALUE: &str = "remote-discovery";
/// Label that puts a target-cluster Service into `<svc>-federated`.
pub const FEDERATED: &str = "mirror.linkerd.io/federated";
/// Value of [`FEDERATED`] that the default `federatedServiceSelector` matches.
pub const FEDERATED_MEMBER_VALUE: &str = "member";
/// Default `selector` of a Link, in the `--selector` string form.
pub const DEFAULT_SELECTOR: &str = "mirror.linkerd.io/exported=true";
/// Default `remoteDiscoverySelector` of a Link, in the `--selector` string form.
pub const DEFAULT_REMOTE_DISCOVERY_SELECTOR: &str = "mirror.linkerd.io/exported=remote-discovery";
/// Default `federatedServiceSelector` of a Link, in the `--selector` string form.
pub const DEFAULT_FEDERATED_SELECTOR: &str = "mirror.linkerd.io/federated=member";

// --- keys written on mirrors -----------------------------------------------------------------

/// Prefix of every key owned by the service mirror. Remote labels and annotations whose key
/// starts with it are never copied onto a mirror (upstream matches the bare string prefix).
pub const MIRROR_PREFIX: &str = "mirror.linkerd.io";
/// Label `"true"` on every mirror Service and Endpoints (and federated Service).
pub const MIRRORED_SERVICE: &str = "mirror.linkerd.io/mirrored-service";
/// Label with the Link's `targetClusterName` on every mirror, probe Service and Endpoints.
pub const CLUSTER_NAME: &str = "mirror.linkerd.io/cluster-name";
/// Annotation `<svc>.<ns>.svc.<targetClusterDomain>` on mirror Services and Endpoints; the
/// destination controller uses it as the authority override.
pub const REMOTE_SVC_FQ_NAME: &str = "mirror.linkerd.io/remote-svc-fq-name";
/// Annotation with the remote Service's `resourceVersion` when it was last mirrored.
pub const REMOTE_RESOURCE_VERSION: &str = "mirror.linkerd.io/remote-resource-version";
/// Annotation with the gateway's TLS identity on mirror Endpoints (from `spec.gatewayIdentity`).
pub const REMOTE_GATEWAY_IDENTITY: &str = "mirror.linkerd.io/remote-gateway-identity";
/// Label `"true"` on the probe Service `mc-probe-<link>`.
pub const MIRRORED_GATEWAY: &str = "mirror.linkerd.io/mirrored-gateway";
/// Label on headless endpoint mirrors (`<host>-<cluster>`) naming their headless mirror.
pub const HEADLESS_MIRROR_SVC_NAME: &str = "mirror.linkerd.io/headless-mirror-svc-name";
/// Ours (not upstream): annotation with the remote Service's original name on every mirror, so
/// the reverse mapping never parses a (possibly shortened) mirror name.
pub const ORIGINAL_NAME: &str = "mirror.linkerd.io/remote-svc-name";

// --- remote discovery and federation ---------------------------------------------------------

/// Label `<cluster>` on remote-discovery mirrors; on a federated Service, the annotation listing
/// members as `svc@cluster,svc@cluster`.
pub const REMOTE_DISCOVERY: &str = "multicluster.linkerd.io/remote-discovery";
/// Label `<remote svc name>` on remote-discovery mirrors.
pub const REMOTE_SERVICE: &str = "multicluster.linkerd.io/remote-service";
/// Annotation `<svc>` on a federated Service when the local cluster is a member.
pub const LOCAL_DISCOVERY: &str = "multicluster.linkerd.io/local-discovery";
/// Suffix of federated Services: `<svc>-federated`.
pub const FEDERATED_SUFFIX: &str = "federated";

// --- the gateway Service on the target cluster -----------------------------------------------

/// Link annotation choosing how its mirrors are served: `egress`, `gateway` or `auto` (see
/// [`crate::egress::LinkMode`]).
pub const LINK_MODE: &str = "mirror.linkerd.io/mc-link-mode";
/// Annotation on the gateway Service with its TLS identity (copied into `spec.gatewayIdentity`).
pub const GATEWAY_IDENTITY: &str = "mirror.linkerd.io/gateway-identity";
/// Annotation on the gateway Service with the probe path (default `/ready`).
pub const PROBE_PATH: &str = "mirror.linkerd.io/probe-path";
/// Annotation on the gateway Service with the probe period (`"3"` = 3 seconds).
pub const PROBE_PERIOD: &str = "mirror.linkerd.io/probe-period";
/// Label `"true"` on the gateway Service.
pub const MULTICLUSTER_GATEWAY: &str = "mirror.linkerd.io/multicluster-gateway";
/// Name of the gateway Service port that carries mirrored traffic.
pub const GATEWAY_PORT_NAME: &str = "mc-gateway";
/// Name of the gateway and probe Service port that answers the probe.
pub const PROBE_PORT_NAME: &str = "mc-probe";
/// Default probe path.
pub const DEFAULT_PROBE_PATH: &str = "/ready";
/// Default probe port (the gateway proxy's admin port).
pub const DEFAULT_PROBE_PORT: u16 = 4191;
/// Default gateway port (the gateway proxy's inbound port).
pub const DEFAULT_GATEWAY_PORT: u16 = 4143;

// --- copied or dropped when mirroring --------------------------------------------------------

/// Annotation that marks ports opaque; always propagated to mirrors, even when excluded.
pub const OPAQUE_PORTS: &str = "config.linkerd.io/opaque-ports";
/// Topology-hints annotation (pre-1.27 name); never copied to mirrors.
pub const TOPOLOGY_HINTS: &str = "service.kubernetes.io/topology-aware-hints";
/// Topology-mode annotation; never copied to mirrors.
pub const TOPOLOGY_MODE: &str = "service.kubernetes.io/topology-mode";

// --- extension bookkeeping -------------------------------------------------------------------

/// Annotation naming the tool that created an object, e.g. `linkerd/cli edge-26.1.1`.
pub const CREATED_BY: &str = "linkerd.io/created-by";
/// Label `multicluster` on the extension's namespace, CRD and resources.
pub const EXTENSION: &str = "linkerd.io/extension";
/// Value of [`EXTENSION`] for the multicluster extension.
pub const EXTENSION_VALUE: &str = "multicluster";
/// `controllerName` written in Link status entries.
pub const CONTROLLER_NAME: &str = "linkerd.io/service-mirror";

// --- credentials Secrets ---------------------------------------------------------------------

/// Type of the Secrets that hold a remote cluster's kubeconfig.
pub const REMOTE_KUBECONFIG_SECRET_TYPE: &str = "mirror.linkerd.io/remote-kubeconfig";
/// Key of the kubeconfig inside such a Secret.
pub const KUBECONFIG_KEY: &str = "kubeconfig";
/// Label with the cluster name on the control-plane-namespace copy of the credentials.
pub const MC_CLUSTER_NAME: &str = "multicluster.linkerd.io/cluster-name";
/// Annotation with the remote trust domain on the control-plane-namespace credentials.
pub const MC_TRUST_DOMAIN: &str = "multicluster.linkerd.io/trust-domain";
/// Annotation with the remote cluster domain on the control-plane-namespace credentials.
pub const MC_CLUSTER_DOMAIN: &str = "multicluster.linkerd.io/cluster-domain";

/// `true` when a remote label or annotation key belongs to the service mirror and must not be
/// copied (`mirror.linkerd.io…` keys).
pub fn is_mirror_key(key: &str) -> bool {
    key.starts_with(MIRROR_PREFIX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn original_name_is_never_copied() {
        assert!(is_mirror_key(ORIGINAL_NAME));
        assert!(is_mirror_key(REMOTE_SVC_FQ_NAME));
        assert!(!is_mirror_key(OPAQUE_PORTS));
        assert!(!is_mirror_key(REMOTE_DISCOVERY));
    }

    #[test]
    fn default_selectors_use_the_export_keys() {
        assert!(DEFAULT_SELECTOR.starts_with(EXPORTED));
        assert!(DEFAULT_REMOTE_DISCOVERY_SELECTOR.ends_with(EXPORTED_REMOTE_DISCOVERY_VALUE));
        assert!(DEFAULT_FEDERATED_SELECTOR.starts_with(FEDERATED));
    }
}
