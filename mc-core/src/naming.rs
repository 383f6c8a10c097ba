//! Names of mirror objects, and the way back from a mirror to the remote Service.
//!
//! A mirror is `<svc>-<cluster>`, a headless endpoint mirror `<host>-<cluster>`, a federated
//! Service `<svc>-federated`, and the probe Service `mc-probe-<link>`. Upstream does not check the
//! length, so names over 63 characters are rejected by the API server (linkerd2 #7390). Here a
//! name that would not be a valid Service name (a DNS-1035 label of at most 63 characters) is
//! shortened deterministically: a readable prefix, `-`, and 8 characters of the SHA-256 of the
//! inputs in lowercase base32. The remote name is also recorded in the
//! [`ORIGINAL_NAME`](crate::labels::ORIGINAL_NAME) annotation, so [`remote_name`] never has to
//! parse a shortened name.
//!
//! ```
//! use mc_core::naming::mirror_name;
//!
//! assert_eq!(mirror_name("web", "east").name, "web-east");
//! let long = mirror_name(&"a".repeat(60), "east");
//! assert!(long.shortened && long.name.len() <= 63);
//! ```

use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

use crate::labels;

/// Longest Kubernetes label-style name (Service names, label values, DNS labels).
pub const MAX_NAME_LEN: usize = 63;
/// Characters of hash appended to a shortened name.
pub const HASH_LEN: usize = 8;

/// A computed object name.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct MirrorName {
    /// The name to use: always a valid DNS-1035 label of at most 63 characters.
    pub name: String,
    /// `true` when the natural name was too long (or not a valid name) and was shortened.
    pub shortened: bool,
}

impl std::fmt::Display for MirrorName {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.name)
    }
}

/// The mirror of remote Service `remote` from cluster `cluster`: `<remote>-<cluster>`.
pub fn mirror_name(remote: &str, cluster: &str) -> MirrorName {
    fit(format!("{remote}-{cluster}"), &["svc", remote, cluster])
}

/// The endpoint mirror of host `host` (a pod hostname behind a headless Service) of cluster
/// `cluster`: `<host>-<cluster>`.
pub fn endpoint_mirror_name(host: &str, cluster: &str) -> MirrorName {
    fit(format!("{host}-{cluster}"), &["host", host, cluster])
}

/// The federated Service of `svc`: `<svc>-federated`.
pub fn federated_name(svc: &str) -> MirrorName {
    fit(
        format!("{svc}-{}", labels::FEDERATED_SUFFIX),
        &["federated", svc],
    )
}

/// The probe Service of Link `link` (in the multicluster namespace): `mc-probe-<link>`. Not
/// upstream's `probe-<link>`, which Linkerd's multicluster chart renders for its own controllers.
pub fn probe_service_name(link: &str) -> MirrorName {
    fit(format!("mc-probe-{link}"), &["mc-probe", link])
}

/// The remote `(namespace, name)` that a local mirror Service (or Endpoints) stands for, or
/// `None` when the object is not a mirror of `cluster`.
///
/// The name comes from the [`ORIGINAL_NAME`](labels::ORIGINAL_NAME) annotation. Objects written
/// by upstream Linkerd do not have it; for them the name is derived as upstream does: from the
/// [`HEADLESS_MIRROR_SVC_NAME`](labels::HEADLESS_MIRROR_SVC_NAME) label for endpoint mirrors,
/// otherwise from the object's own name, minus the `-<cluster>` suffix.
pub fn remote_name(local: &ObjectMeta, cluster: &str) -> Option<(String, String)> {
    let namespace = local.namespace.clone()?;
    let label = |k: &str| local.labels.as_ref().and_then(|l| l.get(k));
    if label(labels::CLUSTER_NAME).is_some_and(|c| c != cluster) {
        return None;
    }
    if let Some(original) = local
        .annotations
        .as_ref()
        .and_then(|a| a.get(labels::ORIGINAL_NAME))
        .filter(|n| !n.is_empty())
    {
        return Some((namespace, original.clone()));
    }
    let name = label(labels::HEADLESS_MIRROR_SVC_NAME).or(local.name.as_ref())?;
    let remote = name.strip_suffix(cluster)?.strip_suffix('-')?;
    (!remote.is_empty()).then(|| (namespace, remote.to_string()))
}

/// Keep `natural` when it is a valid Service name, otherwise shorten it deterministically,
/// hashing `key` (the inputs, so that distinct inputs give distinct hashes even when their
/// natural names coincide after truncation).
fn fit(natural: String, key: &[&str]) -> MirrorName {
    if is_dns1035_label(&natural) {
        return MirrorName {
            name: natural,
            shortened: false,
        };
    }
    let hash = short_hash(key);
    let keep = MAX_NAME_LEN - 1 - HASH_LEN;
    let mut prefix: String = natural
        .chars()
        .map(|c| c.to_ascii_lowercase())
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
        .skip_while(|c| !c.is_ascii_lowercase())
        .take(keep)
        .collect();
    while prefix.ends_with('-') {
        prefix.pop();
    }
    if prefix.is_empty() {
        prefix.push('m');
    }
    MirrorName {
        name: format!("{prefix}-{hash}"),
        shortened: true,
    }
}

/// 8 lowercase base32 characters (40 bits) of the SHA-256 of the NUL-joined parts.
fn short_hash(parts: &[&str]) -> String {
    const ALPHABET: &[u8; 32] = b"abcdefghijklmnopqrstuvwxyz234567";
    let mut ctx = ring::digest::Context::new(&ring::digest::SHA256);
    for (i, p) in parts.iter().enumerate() {
        if i > 0 {
            ctx.update(&[0]);
        }
        ctx.update(p.as_bytes());
    }
    let digest = ctx.finish();
    let bits = digest
        .as_ref()
        .iter()
        .take(5)
        .fold(0u64, |acc, b| (acc << 8) | u64::from(*b));
    (0..HASH_LEN)
        .rev()
        .map(|i| char::from(ALPHABET[((bits >> (i * 5)) & 31) as usize]))
        .collect()
}

/// A DNS-1123 label: 1–63 characters of `[a-z0-9-]`, starting and ending with an alphanumeric.
pub fn is_dns1123_label(s: &str) -> bool {
    let ok_end = |c: Option<u8>| c.is_some_and(|c| c.is_ascii_lowercase() || c.is_ascii_digit());
    (1..=MAX_NAME_LEN).contains(&s.len())
        && ok_end(s.bytes().next())
        && ok_end(s.bytes().last())
        && s.bytes()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == b'-')
}

/// A DNS-1035 label (what Service names must be): a DNS-1123 label that starts with a letter.
pub fn is_dns1035_label(s: &str) -> bool {
    is_dns1123_label(s) && s.bytes().next().is_some_and(|c| c.is_ascii_lowercase())
}

/// A DNS-1123 subdomain: at most 253 characters of dot-separated DNS-1123 labels.
pub fn is_dns1123_subdomain(s: &str) -> bool {
    s.len() <= 253 && s.split('.').all(is_dns1123_label)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::collections::BTreeMap;

    #[test]
    fn short_names_are_kept() {
        assert_eq!(
            mirror_name("web", "east"),
            MirrorName {
                name: "web-east".into(),
                shortened: false
            }
        );
        assert_eq!(endpoint_mirror_name("web-0", "east").name, "web-0-east");
        assert_eq!(federated_name("web").name, "web-federated");
        assert_eq!(probe_service_name("east").name, "mc-probe-east");
    }

    #[test]
    fn exactly_63_is_kept_64_is_shortened() {
        let svc = "a".repeat(63 - "-east".len());
        let kept = mirror_name(&svc, "east");
        assert_eq!((kept.name.len(), kept.shortened), (63, false));
        let long = mirror_name(&format!("{svc}b"), "east");
        assert!(long.shortened);
        assert_eq!(long.name.len(), 63);
        assert!(long.name.starts_with(&svc[..54]));
        assert!(is_dns1035_label(&long.name));
    }

    #[test]
    fn shortening_is_deterministic_and_input_sensitive() {
        let svc = "x".repeat(70);
        assert_eq!(mirror_name(&svc, "east"), mirror_name(&svc, "east"));
        assert_ne!(mirror_name(&svc, "east"), mirror_name(&svc, "west"));
        assert_ne!(
            mirror_name(&svc, "east").name,
            endpoint_mirror_name(&svc, "east").name
        );
    }

    #[test]
    fn invalid_inputs_still_give_valid_names() {
        for (svc, cluster) in [("Web", "east"), ("0web", "east"), ("-", "-"), ("", "")] {
            let n = mirror_name(svc, cluster);
            assert!(n.shortened, "{svc:?}");
            assert!(is_dns1035_label(&n.name), "{n:?}");
        }
        assert!(!endpoint_mirror_name("0-web", "").name.starts_with('0'));
    }

    #[test]
    fn dns_checks() {
        assert!(is_dns1123_label("a-0"));
        assert!(is_dns1123_label("0a"));
        assert!(!is_dns1035_label("0a"));
        for bad in ["", "-a", "a-", "A", "a_b", &"a".repeat(64)] {
            assert!(!is_dns1123_label(bad), "{bad:?}");
        }
        assert!(is_dns1123_subdomain("linkerd.io"));
        assert!(!is_dns1123_subdomain("linkerd..io"));
        assert!(!is_dns1123_subdomain(&format!("{}.io", "a.".repeat(126))));
    }

    fn meta(name: &str, labels: &[(&str, &str)], annotations: &[(&str, &str)]) -> ObjectMeta {
        let map = |kv: &[(&str, &str)]| {
            Some(
                kv.iter()
                    .map(|(k, v)| (k.to_string(), v.to_string()))
                    .collect::<BTreeMap<_, _>>(),
            )
        };
        ObjectMeta {
            name: Some(name.into()),
            namespace: Some("ns".into()),
            labels: map(labels),
            annotations: map(annotations),
            ..ObjectMeta::default()
        }
    }

    #[test]
    fn remote_name_prefers_annotation_then_upstream_rules() {
        let ours = meta(
            "whatever-abc",
            &[(labels::CLUSTER_NAME, "east")],
            &[(labels::ORIGINAL_NAME, "web")],
        );
        assert_eq!(
            remote_name(&ours, "east"),
            Some(("ns".into(), "web".into()))
        );
        let upstream = meta("web-east", &[(labels::CLUSTER_NAME, "east")], &[]);
        assert_eq!(
            remote_name(&upstream, "east"),
            Some(("ns".into(), "web".into()))
        );
        let endpoint_mirror = meta(
            "web-0-east",
            &[(labels::HEADLESS_MIRROR_SVC_NAME, "web-east")],
            &[],
        );
        assert_eq!(
            remote_name(&endpoint_mirror, "east"),
            Some(("ns".into(), "web".into()))
        );
        let other = meta("web-east", &[(labels::CLUSTER_NAME, "west")], &[]);
        assert_eq!(remote_name(&other, "east"), None);
        assert_eq!(remote_name(&meta("web", &[], &[]), "east"), None);
        assert_eq!(remote_name(&meta("-east", &[], &[]), "east"), None);
        assert_eq!(remote_name(&meta("webeast", &[], &[]), "east"), None);
    }

    fn svc() -> impl Strategy<Value = String> {
        "[a-z]([a-z0-9-]{0,80}[a-z0-9])?"
    }
    fn cluster() -> impl Strategy<Value = String> {
        "[a-z][a-z0-9]{0,30}"
    }

    proptest! {
        #[test]
        fn names_are_always_valid(s in "\\PC{0,100}", c in "\\PC{0,70}") {
            for n in [mirror_name(&s, &c), endpoint_mirror_name(&s, &c), federated_name(&s), probe_service_name(&c)] {
                prop_assert!(n.name.len() <= MAX_NAME_LEN, "{:?}", n);
                prop_assert!(is_dns1123_label(&n.name) && is_dns1035_label(&n.name), "{:?}", n);
            }
        }

        #[test]
        fn mirror_names_are_injective(a in (svc(), cluster()), b in (svc(), cluster())) {
            prop_assume!(a != b);
            prop_assert_ne!(mirror_name(&a.0, &a.1), mirror_name(&b.0, &b.1));
        }

        #[test]
        fn injective_within_a_cluster(a in svc(), b in svc(), c in "[a-z]([a-z0-9-]{0,40}[a-z0-9])?") {
            prop_assume!(a != b);
            prop_assert_ne!(mirror_name(&a, &c), mirror_name(&b, &c));
        }

        #[test]
        fn remote_name_round_trips(s in svc(), c in cluster()) {
            let n = mirror_name(&s, &c);
            let ours = meta(&n.name, &[(labels::CLUSTER_NAME, &c)], &[(labels::ORIGINAL_NAME, &s)]);
            prop_assert_eq!(remote_name(&ours, &c), Some(("ns".to_string(), s.clone())));
            if !n.shortened {
                let upstream = meta(&n.name, &[(labels::CLUSTER_NAME, &c)], &[]);
                prop_assert_eq!(remote_name(&upstream, &c), Some(("ns".to_string(), s)));
            }
        }
    }
}
