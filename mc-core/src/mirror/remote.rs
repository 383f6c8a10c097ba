//! What we read from the target cluster: export decisions, the remote endpoints summary, and
//! checks on the remote Service.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{Endpoints, Service, ServicePort};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use serde::de::DeserializeOwned;

use crate::link::ValidLink;
use crate::naming::is_dns1035_label;
use crate::{Error, Result};

/// How a remote Service is exported by a Link's selectors.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ExportMode {
    /// Matches `spec.selector`: mirrored through the gateway.
    Gateway,
    /// Matches `spec.remoteDiscoverySelector`: mirrored for pod-to-pod discovery.
    RemoteDiscovery,
}

/// How the Link exports a remote Service with these labels, or `None` when it does not.
/// `remoteDiscoverySelector` wins when both selectors match. Empty selectors match nothing.
pub fn export_mode(link: &ValidLink, labels: &BTreeMap<String, String>) -> Option<ExportMode> {
    if link.remote_discovery_selector.matches(labels) {
        Some(ExportMode::RemoteDiscovery)
    } else if link.selector.matches(labels) {
        Some(ExportMode::Gateway)
    } else {
        None
    }
}

/// Whether a remote Service with these labels joins `<svc>-federated`.
pub fn is_federated_member(link: &ValidLink, labels: &BTreeMap<String, String>) -> bool {
    link.federated_selector.matches(labels)
}

/// What the remote endpoints of an exported Service look like.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RemoteEndpoints {
    /// No Endpoints object (or no EndpointSlice) exists.
    Missing,
    /// It exists but has no ready address.
    Empty,
    /// At least one ready address.
    Ready {
        /// Hostnames of the ready addresses (headless/StatefulSet pods), sorted, unique.
        hostnames: Vec<String>,
    },
}

impl RemoteEndpoints {
    /// Summarise a remote Endpoints object.
    pub fn from_endpoints(endpoints: &Endpoints) -> RemoteEndpoints {
        let ready: Vec<_> = endpoints
            .subsets
            .iter()
            .flatten()
            .flat_map(|s| s.addresses.iter().flatten())
            .collect();
        if ready.is_empty() {
            return RemoteEndpoints::Empty;
        }
        RemoteEndpoints::ready(ready.into_iter().filter_map(|a| a.hostname.clone()))
    }

    /// Summarise the EndpointSlices of a remote Service (an endpoint with no `ready` condition
    /// counts as ready, as Kubernetes specifies). No slice at all is [`RemoteEndpoints::Missing`].
    pub fn from_slices(slices: &[EndpointSlice]) -> RemoteEndpoints {
        if slices.is_empty() {
            return RemoteEndpoints::Missing;
        }
        let ready: Vec<_> = slices
            .iter()
            .flat_map(|s| s.endpoints.iter())
            .filter(|e| !e.addresses.is_empty())
            .filter(|e| e.conditions.as_ref().and_then(|c| c.ready) != Some(false))
            .collect();
        if ready.is_empty() {
            return RemoteEndpoints::Empty;
        }
        RemoteEndpoints::ready(ready.into_iter().filter_map(|e| e.hostname.clone()))
    }

    fn ready(hostnames: impl Iterator<Item = String>) -> RemoteEndpoints {
        let mut hostnames: Vec<String> = hostnames.filter(|h| !h.is_empty()).collect();
        hostnames.sort();
        hostnames.dedup();
        RemoteEndpoints::Ready { hostnames }
    }

    /// `true` when there is at least one ready address.
    pub fn is_ready(&self) -> bool {
        matches!(self, RemoteEndpoints::Ready { .. })
    }
}

/// Parse a Kubernetes object of type `K` from JSON (e.g. a Python dict or a YAML file), with a
/// clear error when `apiVersion`/`kind` name another type or a field is malformed.
pub fn parse_object<K>(value: serde_json::Value) -> Result<K>
where
    K: k8s_openapi::Resource + DeserializeOwned,
{
    let (api_version, kind) = type_meta(&value);
    if !value.is_object() || api_version != K::API_VERSION || kind != K::KIND {
        let shown = |s: String| {
            if value.is_object() {
                s
            } else {
                format!("(not an object: {value})")
            }
        };
        return Err(Error::WrongKind {
            expected: K::KIND,
            api_version: shown(api_version),
            kind,
        });
    }
    serde_json::from_value(value).map_err(|e| Error::Malformed {
        expected: K::KIND,
        reason: e.to_string(),
    })
}

/// The `apiVersion` and `kind` of a JSON object (empty strings when absent).
pub(crate) fn type_meta(value: &serde_json::Value) -> (String, String) {
    let field = |k: &str| {
        value
            .get(k)
            .and_then(|v| v.as_str())
            .unwrap_or_default()
            .to_string()
    };
    (field("apiVersion"), field("kind"))
}

/// The parts of a remote Service that mirroring needs, checked.
pub(crate) struct RemoteService<'a> {
    pub(crate) namespace: &'a str,
    pub(crate) name: &'a str,
    pub(crate) ports: &'a [ServicePort],
    pub(crate) headless: bool,
}

impl<'a> RemoteService<'a> {
    /// Check that `svc` can be mirrored: a name that is a Service name, a namespace, at least
    /// one port, ports in range and a known protocol.
    pub(crate) fn check(svc: &'a Service) -> Result<RemoteService<'a>> {
        let namespace = svc.metadata.namespace.as_deref().unwrap_or_default();
        let name = svc.metadata.name.as_deref().unwrap_or_default();
        let id = format!("{namespace}/{name}");
        let fail = |field: &str, problem: String, fix: &str| Error::InvalidRemoteService {
            service: id.clone(),
            field: field.to_string(),
            problem,
            fix: fix.to_string(),
        };
        if !is_dns1035_label(name) {
            return Err(fail(
                "metadata.name",
                format!("{name:?} is not a Service name (DNS-1035 label)"),
                "pass a Service read from the API server",
            ));
        }
        if namespace.is_empty() {
            return Err(fail(
                "metadata.namespace",
                "is missing".into(),
                "pass a Service read from the API server (it always has a namespace)",
            ));
        }
        let spec = svc.spec.as_ref();
        let ports = spec.and_then(|s| s.ports.as_deref()).unwrap_or_default();
        if ports.is_empty() {
            return Err(fail(
                "spec.ports",
                "is empty: the Service exposes no port, so a mirror cannot be created".into(),
                "add a port to the remote Service, or stop exporting it",
            ));
        }
        for (i, p) in ports.iter().enumerate() {
            if !(1..=65535).contains(&p.port) {
                return Err(fail(
                    &format!("spec.ports[{i}].port"),
                    format!("{} is not a port (1-65535)", p.port),
                    "correct the remote Service",
                ));
            }
            let proto = p.protocol.as_deref();
            if let Some(proto) = proto.filter(|p| !matches!(*p, "TCP" | "UDP" | "SCTP")) {
                return Err(fail(
                    &format!("spec.ports[{i}].protocol"),
                    format!("{proto:?} is not TCP, UDP or SCTP"),
                    "correct the remote Service",
                ));
            }
        }
        Ok(RemoteService {
            namespace,
            name,
            ports,
            headless: spec.and_then(|s| s.cluster_ip.as_deref()) == Some("None"),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::{EndpointAddress, EndpointSubset};
    use k8s_openapi::api::discovery::v1::{Endpoint, EndpointConditions};

    fn addr(ip: &str, host: Option<&str>) -> EndpointAddress {
        EndpointAddress {
            ip: ip.into(),
            hostname: host.map(String::from),
            ..EndpointAddress::default()
        }
    }

    #[test]
    fn endpoints_summary() {
        let mut ep = Endpoints::default();
        assert_eq!(RemoteEndpoints::from_endpoints(&ep), RemoteEndpoints::Empty);
        ep.subsets = Some(vec![EndpointSubset {
            not_ready_addresses: Some(vec![addr("10.0.0.1", Some("web-0"))]),
            ..EndpointSubset::default()
        }]);
        assert_eq!(RemoteEndpoints::from_endpoints(&ep), RemoteEndpoints::Empty);
        ep.subsets = Some(vec![
            EndpointSubset {
                addresses: Some(vec![
                    addr("10.0.0.2", Some("web-1")),
                    addr("10.0.0.3", None),
                ]),
                ..EndpointSubset::default()
            },
            EndpointSubset {
                addresses: Some(vec![
                    addr("10.0.0.4", Some("web-0")),
                    addr("10.0.0.2", Some("web-1")),
                ]),
                ..EndpointSubset::default()
            },
        ]);
        assert_eq!(
            RemoteEndpoints::from_endpoints(&ep),
            RemoteEndpoints::Ready {
                hostnames: vec!["web-0".into(), "web-1".into()]
            }
        );
    }

    #[test]
    fn slices_summary() {
        assert_eq!(RemoteEndpoints::from_slices(&[]), RemoteEndpoints::Missing);
        let endpoint = |ready: Option<bool>, host: &str| Endpoint {
            addresses: vec!["10.0.0.1".into()],
            conditions: Some(EndpointConditions {
                ready,
                ..EndpointConditions::default()
            }),
            hostname: Some(host.into()),
            ..Endpoint::default()
        };
        let slice = |eps: Vec<Endpoint>| EndpointSlice {
            endpoints: eps,
            ..EndpointSlice::default()
        };
        let not_ready = slice(vec![endpoint(Some(false), "a")]);
        assert_eq!(
            RemoteEndpoints::from_slices(std::slice::from_ref(&not_ready)),
            RemoteEndpoints::Empty
        );
        let ready = slice(vec![endpoint(None, "b"), endpoint(Some(true), "c")]);
        assert_eq!(
            RemoteEndpoints::from_slices(&[not_ready, ready]),
            RemoteEndpoints::Ready {
                hostnames: vec!["b".into(), "c".into()]
            }
        );
    }

    #[test]
    fn parse_object_names_the_problem() {
        let svc =
            serde_json::json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "web"}});
        assert!(parse_object::<Service>(svc).is_ok());
        let cm = serde_json::json!({"apiVersion": "v1", "kind": "ConfigMap", "data": {}});
        let msg = parse_object::<Service>(cm)
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(
            msg.contains("expected a Service") && msg.contains("ConfigMap"),
            "{msg}"
        );
        let not_obj = serde_json::json!([1, 2]);
        let msg = parse_object::<Service>(not_obj)
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(msg.contains("not an object"), "{msg}");
        let bad = serde_json::json!({"apiVersion": "v1", "kind": "Service", "spec": {"ports": [{"port": "x"}]}});
        assert!(matches!(
            parse_object::<Service>(bad),
            Err(Error::Malformed { .. })
        ));
    }
}
