//! Which remote labels and annotations are copied onto mirrors.
//!
//! Labels: every remote label except keys starting with `mirror.linkerd.io` and the Link's
//! `excludedLabels`. Annotations: every remote annotation except `mirror.linkerd.io…` keys, the
//! two topology annotations and `excludedAnnotations`; `config.linkerd.io/opaque-ports` is kept
//! even when excluded. An exclusion ending in `/*` excludes every key starting with what comes
//! before the `/*` (upstream's rule).

use std::collections::BTreeMap;

use crate::{Error, Result, labels};

/// What to write instead of an exclusion that is neither a key nor a `prefix/*` pattern.
pub const EXCLUSION_FIX: &str =
    "write a key such as app.kubernetes.io/name, or a prefix such as argocd.argoproj.io/*";

/// Whether `entry` can be an exclusion: a label/annotation key (`app`, `example.com/team`), or
/// `prefix/*` whose prefix is a DNS subdomain (`argocd.argoproj.io/*`).
pub fn is_valid_exclusion(entry: &str) -> bool {
    match entry.strip_suffix("/*") {
        Some(prefix) => crate::naming::is_dns1123_subdomain(prefix),
        None => crate::selector::check_key(entry).is_ok(),
    }
}

/// The exclusions of a comma-separated list, as upstream's service mirror takes them from its
/// `-excluded-labels` / `-excluded-annotations` flags (the chart's
/// `localServiceMirror.excludedLabels` / `excludedAnnotations`): split at commas, each entry
/// trimmed, empty entries dropped. An entry that is neither a key nor a `prefix/*` pattern is
/// an [`Error::InvalidField`] naming `path[index]` (the index among the non-empty entries).
///
/// ```
/// let list = mc_core::mirror::parse_exclusions(" evil.linkerd/*, evil ,", "excludedLabels")?;
/// assert_eq!(list, ["evil.linkerd/*", "evil"]);
/// assert!(mc_core::mirror::parse_exclusions("ok,not a key", "excludedLabels").is_err());
/// # Ok::<(), mc_core::Error>(())
/// ```
pub fn parse_exclusions(list: &str, path: &str) -> Result<Vec<String>> {
    let entries: Vec<String> = list
        .split(',')
        .map(str::trim)
        .filter(|e| !e.is_empty())
        .map(str::to_owned)
        .collect();
    check_exclusions(&entries, path)?;
    Ok(entries)
}

/// Checks every entry of `entries` with [`is_valid_exclusion`]; the first bad one is an
/// [`Error::InvalidField`] naming `path[index]`.
pub fn check_exclusions(entries: &[String], path: &str) -> Result<()> {
    match entries
        .iter()
        .enumerate()
        .find(|(_, e)| !is_valid_exclusion(e))
    {
        None => Ok(()),
        Some((i, e)) => Err(Error::InvalidField {
            field: format!("{path}[{i}]"),
            value: e.clone(),
            problem: "is neither a label/annotation key nor a `prefix/*` pattern".to_owned(),
            fix: EXCLUSION_FIX.to_owned(),
        }),
    }
}

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
    fn exclusion_lists_are_split_trimmed_and_checked() {
        assert_eq!(parse_exclusions("", "x").unwrap(), Vec::<String>::new());
        assert_eq!(parse_exclusions(" , ,", "x").unwrap(), Vec::<String>::new());
        assert_eq!(
            parse_exclusions("evil.linkerd/*,evil, a.io/b ", "x").unwrap(),
            ["evil.linkerd/*", "evil", "a.io/b"]
        );
        for (list, index, value) in [
            ("ok,bad key", 1, "bad key"),
            ("/*", 0, "/*"),
            ("Not_A_Domain/*", 0, "Not_A_Domain/*"),
            ("a/b/c", 0, "a/b/c"),
            ("a,,*", 1, "*"),
        ] {
            match parse_exclusions(list, "localServiceMirror.excludedLabels") {
                Err(Error::InvalidField {
                    field,
                    value: v,
                    fix,
                    ..
                }) => {
                    assert_eq!(field, format!("localServiceMirror.excludedLabels[{index}]"));
                    assert_eq!(v, value);
                    assert!(fix.contains("prefix"), "{fix}");
                }
                other => panic!("{list}: {other:?}"),
            }
        }
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
