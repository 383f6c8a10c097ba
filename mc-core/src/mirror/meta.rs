//! Which remote labels and annotations are copied onto mirrors.
//!
//! Labels: every remote label except keys starting with `mirror.linkerd.io` and the Link's
//! `excludedLabels`. Annotations: every remote annotation except `mirror.linkerd.io…` keys, the
//! two topology annotations and `excludedAnnotations`; `config.linkerd.io/opaque-ports` is kept
//! even when excluded. An exclusion ending in `/*` excludes every key starting with what comes
//! before the `/*` (upstream's rule).

use std::collections::BTreeMap;

use crate::labels;

/// Whether `key` is excluded by one of `patterns` (exact keys, or `prefix/*`).
pub fn is_excluded(patterns: &[String], key: &str) -> bool {
    patterns.iter().any(|p| match p.strip_suffix("/*") {
        Some(prefix) => key.starts_with(prefix),
        None => key == p,
    })
}

/// The remote labels to copy onto a mirror.
pub fn copy_labels(
    remote: Option<&BTreeMap<String, String>>,
    excluded: &[String],
) -> BTreeMap<String, String> {
    copy(remote, |k| {
        !labels::is_mirror_key(k) && !is_excluded(excluded, k)
    })
}

/// The remote annotations to copy onto a mirror.
pub fn copy_annotations(
    remote: Option<&BTreeMap<String, String>>,
    excluded: &[String],
) -> BTreeMap<String, String> {
    copy(remote, |k| {
        k == labels::OPAQUE_PORTS
            || !(labels::is_mirror_key(k)
                || k == labels::TOPOLOGY_HINTS
                || k == labels::TOPOLOGY_MODE
                || is_excluded(excluded, k))
    })
}

fn copy(
    remote: Option<&BTreeMap<String, String>>,
    keep: impl Fn(&str) -> bool,
) -> BTreeMap<String, String> {
    remote
        .into_iter()
        .flatten()
        .filter(|(k, _)| keep(k))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn map(pairs: &[&str]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|k| (k.to_string(), "v".to_string()))
            .collect()
    }

    fn keys(m: &BTreeMap<String, String>) -> Vec<&str> {
        m.keys().map(String::as_str).collect()
    }

    #[test]
    fn label_exclusions() {
        let remote = map(&[
            "app",
            "mirror.linkerd.io/exported",
            "mirror.linkerd.io.other/x",
            "argocd.argoproj.io/instance",
            "argocd.argoproj.io.extra/y",
            "team",
            "tier",
        ]);
        let excluded = vec!["argocd.argoproj.io/*".to_string(), "team".to_string()];
        let copied = copy_labels(Some(&remote), &excluded);
        // "argocd.argoproj.io/*" is a prefix match on "argocd.argoproj.io", as upstream.
        assert_eq!(keys(&copied), ["app", "tier"]);
        assert_eq!(copy_labels(None, &excluded), BTreeMap::new());
    }

    #[test]
    fn annotation_exclusions_keep_opaque_ports() {
        let remote = map(&[
            labels::OPAQUE_PORTS,
            labels::TOPOLOGY_HINTS,
            labels::TOPOLOGY_MODE,
            labels::REMOTE_SVC_FQ_NAME,
            labels::ORIGINAL_NAME,
            "config.linkerd.io/proxy-cpu",
            "prometheus.io/scrape",
            "keep/me",
        ]);
        let excluded = vec![
            "config.linkerd.io/*".to_string(),
            "prometheus.io/scrape".to_string(),
        ];
        let copied = copy_annotations(Some(&remote), &excluded);
        assert_eq!(keys(&copied), [labels::OPAQUE_PORTS, "keep/me"]);
    }

    #[test]
    fn exact_patterns_are_not_prefixes() {
        let pats = vec!["app".to_string()];
        assert!(is_excluded(&pats, "app"));
        assert!(!is_excluded(&pats, "application"));
        assert!(is_excluded(&["a.io/*".to_string()], "a.io/x"));
        assert!(!is_excluded(&["a.io/*".to_string()], "b.io/x"));
    }
}
