//! Traffic weights from Gateway API HTTPRoutes (GAMMA: an HTTPRoute whose parentRef is a
//! Service), as the egress honours them for federated Services.
//!
//! An HTTPRoute with `parentRefs: [{group: "", kind: Service, name: <svc>-federated}]` and
//! `backendRefs` naming members sets how the egress splits new connections: the local member is
//! named by its own Service name (`<svc>`), a remote one by its mirror name (`<svc>-<cluster>`).
//! Members the route does not name get no traffic, as in Gateway API. The egress forwards
//! opaque bytes, so it splits connections, not requests, and honours only a rule that matches
//! every request (no `matches`, or only the path prefix `/`); anything else is reported.
//!
//! When several HTTPRoutes claim the same Service, the oldest wins (then the first by name), as
//! Gateway API resolves conflicts.

use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use serde::Deserialize;

use crate::naming::mirror_name;

/// The API group and version of HTTPRoute read here.
pub const API_VERSION: &str = "gateway.networking.k8s.io/v1";

/// The parts of an HTTPRoute that set weights; every other field is ignored.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct HttpRoute {
    /// Name, namespace and creation time.
    #[serde(default)]
    pub metadata: ObjectMeta,
    /// The spec.
    #[serde(default)]
    pub spec: HttpRouteSpec,
}

/// `spec` of an [`HttpRoute`].
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct HttpRouteSpec {
    /// What the route attaches to.
    #[serde(default)]
    pub parent_refs: Vec<ObjectRef>,
    /// The rules.
    #[serde(default)]
    pub rules: Vec<Rule>,
}

/// A `parentRef` or `backendRef`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ObjectRef {
    /// API group (`""` is the core group).
    pub group: Option<String>,
    /// Kind.
    pub kind: Option<String>,
    /// Name.
    #[serde(default)]
    pub name: String,
    /// Namespace (default: the route's).
    pub namespace: Option<String>,
    /// Port.
    pub port: Option<i32>,
    /// Weight (backendRefs; default 1).
    pub weight: Option<i32>,
}

impl ObjectRef {
    /// Whether this names the core-group Service `name` in `namespace` (the route's being
    /// `route_ns`), on any port or on `port`. `default_kind` is the kind an absent `kind`
    /// means (Gateway for parentRefs, Service for backendRefs).
    fn is_service(&self, route_ns: &str, namespace: &str, name: &str, default_kind: &str) -> bool {
        let group = self
            .group
            .as_deref()
            .unwrap_or(if default_kind == "Service" {
                ""
            } else {
                "gateway.networking.k8s.io"
            });
        (group.is_empty() || group == "core")
            && self.kind.as_deref().unwrap_or(default_kind) == "Service"
            && self.name == name
            && self.namespace.as_deref().unwrap_or(route_ns) == namespace
    }
}

/// A rule of an [`HttpRoute`].
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Rule {
    /// The request matches (absent: every request).
    #[serde(default)]
    pub matches: Vec<serde_json::Value>,
    /// Where matching requests go.
    #[serde(default)]
    pub backend_refs: Vec<ObjectRef>,
}

impl Rule {
    /// Whether the rule matches every request: no matches, or a single `/` path prefix.
    fn matches_all(&self) -> bool {
        self.matches.is_empty()
            || self.matches.iter().any(|m| {
                let only_path = m.as_object().is_some_and(|o| o.keys().all(|k| k == "path"));
                let path = &m["path"];
                only_path
                    && path["type"].as_str().unwrap_or("PathPrefix") == "PathPrefix"
                    && path["value"].as_str().unwrap_or("/") == "/"
            })
    }
}

/// The weights an HTTPRoute sets for one Service port, by backend Service name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Split {
    /// `<namespace>/<name>` of the HTTPRoute that set them.
    pub route: String,
    /// Weight by backend Service name (same namespace).
    pub weights: BTreeMap<String, u32>,
    /// What was left out, with why (backendRefs to other namespaces or kinds, rules that match
    /// only some requests, other HTTPRoutes that lost the conflict).
    pub ignored: Vec<String>,
}

/// The split for port `port` of Service `<namespace>/<service>`, from `routes` (any namespace;
/// only routes in the Service's namespace count); `None` when no HTTPRoute attaches to it.
pub fn split_for(routes: &[HttpRoute], namespace: &str, service: &str, port: u16) -> Option<Split> {
    let route_ns = |r: &HttpRoute| r.metadata.namespace.clone().unwrap_or_default();
    let mut attached: Vec<&HttpRoute> = routes
        .iter()
        .filter(|r| route_ns(r) == namespace)
        .filter(|r| {
            r.spec.parent_refs.iter().any(|p| {
                p.is_service(namespace, namespace, service, "Gateway")
                    && p.port.is_none_or(|pp| pp == i32::from(port))
            })
        })
        .collect();
    attached.sort_by(|a, b| {
        let ts = |r: &HttpRoute| r.metadata.creation_timestamp.as_ref().map(|t| t.0);
        ts(a)
            .cmp(&ts(b))
            .then_with(|| a.metadata.name.cmp(&b.metadata.name))
    });
    let (winner, losers) = attached.split_first()?;
    let name = |r: &HttpRoute| {
        format!(
            "{namespace}/{}",
            r.metadata.name.clone().unwrap_or_default()
        )
    };
    let mut ignored: Vec<String> = losers
        .iter()
        .map(|r| format!("HTTPRoute {}: {} is older and wins", name(r), name(winner)))
        .collect();
    let mut weights = BTreeMap::new();
    let mut rules = winner.spec.rules.iter();
    let rule = rules.by_ref().find(|r| r.matches_all());
    if winner.spec.rules.iter().any(|r| !r.matches_all()) {
        ignored.push(format!(
            "HTTPRoute {}: rules with matches are not honoured (the egress splits connections, \
             not requests); fix: use one rule without matches",
            name(winner)
        ));
    }
    for b in rule.map(|r| r.backend_refs.as_slice()).unwrap_or_default() {
        if !b.is_service(namespace, namespace, &b.name, "Service") {
            ignored.push(format!(
                "HTTPRoute {}: backendRef {} is not a Service of namespace {namespace}",
                name(winner),
                b.name
            ));
            continue;
        }
        let w = u32::try_from(b.weight.unwrap_or(1)).unwrap_or(0);
        *weights.entry(b.name.clone()).or_insert(0) += w;
    }
    Some(Split {
        route: name(winner),
        weights,
        ignored,
    })
}

/// The weight of each member of federated Service `<svc>-federated`: the local member
/// (`local`, its Service name) under `local_key`, each remote member `(svc, cluster)` under
/// its cluster name. Without a split every member weighs 1; with one, a member weighs what the
/// split gives its Service name (local) or mirror name (`<svc>-<cluster>`), else 0.
pub fn member_weights(
    split: Option<&Split>,
    local: Option<(&str, &str)>,
    remote: &[(String, String)],
) -> BTreeMap<String, u32> {
    let weight = |svc: &str| split.map_or(1, |s| s.weights.get(svc).copied().unwrap_or(0));
    let mut out: BTreeMap<String, u32> = remote
        .iter()
        .map(|(svc, cluster)| (cluster.clone(), weight(&mirror_name(svc, cluster).name)))
        .collect();
    if let Some((svc, key)) = local {
        out.insert(key.to_owned(), weight(svc));
    }
    out
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn route(yaml: &str) -> HttpRoute {
        serde_yaml::from_str(yaml).unwrap()
    }

    const GUIDE: &str = r#"
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: podinfo-split, namespace: test, creationTimestamp: "2026-12-01T00:00:00Z"}
spec:
  parentRefs: [{group: "", kind: Service, name: podinfo-federated, port: 9898}]
  rules:
  - backendRefs:
    - {name: podinfo, port: 9898, weight: 50}
    - {name: podinfo-east, port: 9898, weight: 50}
"#;

    #[test]
    fn the_guides_split_gives_each_member_its_weight() {
        let s = split_for(&[route(GUIDE)], "test", "podinfo-federated", 9898).unwrap();
        assert_eq!(s.route, "test/podinfo-split");
        assert!(s.ignored.is_empty(), "{:?}", s.ignored);
        let remote = vec![
            ("podinfo".to_owned(), "east".to_owned()),
            ("podinfo".to_owned(), "north".to_owned()),
        ];
        let w = member_weights(Some(&s), Some(("podinfo", "@local")), &remote);
        assert_eq!(
            w,
            BTreeMap::from([
                ("@local".into(), 50),
                ("east".into(), 50),
                ("north".into(), 0)
            ])
        );
        // Without a route every member weighs 1.
        let w = member_weights(None, Some(("podinfo", "@local")), &remote);
        assert!(w.values().all(|v| *v == 1) && w.len() == 3);
        // Another port, namespace or Service: no split.
        assert!(split_for(&[route(GUIDE)], "test", "podinfo-federated", 80).is_none());
        assert!(split_for(&[route(GUIDE)], "prod", "podinfo-federated", 9898).is_none());
        assert!(split_for(&[route(GUIDE)], "test", "podinfo", 9898).is_none());
    }

    #[test]
    fn a_gateway_parent_is_not_a_service_and_the_oldest_route_wins() {
        let gw = route(
            "metadata: {name: a, namespace: test}\nspec:\n  parentRefs: [{name: podinfo-federated}]\n  rules: [{backendRefs: [{name: podinfo}]}]\n",
        );
        assert!(split_for(&[gw], "test", "podinfo-federated", 9898).is_none());
        let newer = route(
            r#"
metadata: {name: a-newer, namespace: test, creationTimestamp: "2026-12-02T00:00:00Z"}
spec:
  parentRefs: [{group: "", kind: Service, name: podinfo-federated}]
  rules: [{backendRefs: [{name: podinfo-east, weight: 100}]}]
"#,
        );
        let s = split_for(&[newer, route(GUIDE)], "test", "podinfo-federated", 9898).unwrap();
        assert_eq!(s.route, "test/podinfo-split");
        assert_eq!(s.ignored.len(), 1, "{:?}", s.ignored);
        assert!(s.ignored[0].contains("a-newer"));
    }

    #[test]
    fn only_a_rule_matching_every_request_counts_and_odd_refs_are_reported() {
        let r = route(
            r#"
metadata: {name: r, namespace: test}
spec:
  parentRefs: [{group: "", kind: Service, name: web-federated}]
  rules:
  - matches: [{path: {type: PathPrefix, value: /api}}]
    backendRefs: [{name: web-east, weight: 1}]
  - matches: [{path: {type: PathPrefix, value: /}}]
    backendRefs:
    - {name: web, weight: 0}
    - {name: web-east, weight: 100}
    - {name: web-other, namespace: prod, weight: 5}
    - {name: bucket, group: example.com, kind: Bucket}
"#,
        );
        let s = split_for(&[r], "test", "web-federated", 80).unwrap();
        assert_eq!(
            s.weights,
            BTreeMap::from([("web".into(), 0), ("web-east".into(), 100)])
        );
        assert_eq!(s.ignored.len(), 3, "{:?}", s.ignored);
        assert!(s.ignored[0].contains("fix:"));
        let w = member_weights(
            Some(&s),
            Some(("web", "@local")),
            &[("web".into(), "east".into())],
        );
        assert_eq!(
            w,
            BTreeMap::from([("@local".into(), 0), ("east".into(), 100)])
        );
    }
}
