//! The gateway's allow-list as data: its rules, their validation and glob matching, shared by
//! `mc-gateway` (which decides with them), the install values (`gateway.policy.rules`) and
//! `mc multicluster check`.
//!
//! A rule names target services and the client identities that may reach them, both as globs
//! (`*`: any run of characters, dots included; `?`: one character). A service that matches no
//! rule is open to every identity the trust anchors vouch for.

use serde::{Deserialize, Serialize};

/// Where the gateway Pod mounts its policy ConfigMap.
pub const POLICY_DIR: &str = "/var/run/mc/policy";
/// The key of the policy file in the ConfigMap (and its file name under [`POLICY_DIR`]).
pub const POLICY_KEY: &str = "policy.yaml";

/// The name of the gateway's policy ConfigMap: `<gateway name>-policy`.
pub fn config_map_name(gateway: &str) -> String {
    format!("{gateway}-policy")
}

/// One rule of the allow-list.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PolicyRule {
    /// Glob patterns of target service host names (`web.shop.svc.cluster.local`).
    pub services: Vec<String>,
    /// Glob patterns of the client identities allowed to reach them; empty: nobody.
    pub clients: Vec<String>,
}

/// How to write a valid policy, for error messages.
pub const FORMAT_FIX: &str = "write YAML of the form `rules: [{services: [<glob>], clients: [<glob>]}]`, \
     every pattern a host name or identity glob (`*` matches any run of characters)";

/// The policy file's form: `rules: [...]`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
struct PolicyFile {
    #[serde(default)]
    rules: Vec<PolicyRule>,
}

/// Parses and validates a policy file's text (YAML or JSON); the error says what is wrong
/// (see [`FORMAT_FIX`] for the fix). An empty text is an error: no rules is `rules: []`.
pub fn parse(text: &str) -> Result<Vec<PolicyRule>, String> {
    if text.trim().is_empty() {
        return Err("is empty (a policy without rules is `rules: []`)".to_owned());
    }
    let file: PolicyFile =
        serde_yaml::from_str(text).map_err(|e| format!("is not a valid policy: {e}"))?;
    match problem(&file.rules) {
        None => Ok(file.rules),
        Some((n, why)) => Err(format!("rule {n} (counting from 0): {why}")),
    }
}

/// What is wrong with the rules: the first rule (counting from 0) that cannot mean what its
/// author wanted, and why; `None` when they are valid.
pub fn problem(rules: &[PolicyRule]) -> Option<(usize, &'static str)> {
    rules.iter().enumerate().find_map(|(n, rule)| {
        let why = if rule.services.is_empty() {
            "`services` is empty, so the rule governs nothing"
        } else if rule.services.iter().any(|s| s.trim().is_empty()) {
            "a `services` pattern is empty"
        } else if rule.clients.iter().any(|c| c.trim().is_empty()) {
            "a `clients` pattern is empty"
        } else if !rule
            .services
            .iter()
            .chain(&rule.clients)
            .all(|p| pattern_chars(p))
        {
            "a pattern has a character outside A-Z a-z 0-9 . - _ : / * ?"
        } else {
            return None;
        };
        Some((n, why))
    })
}

/// Whether every character of `pattern` can appear in a host name, an identity (DNS name or
/// SPIFFE ID) or a glob.
fn pattern_chars(pattern: &str) -> bool {
    pattern
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b"-._:/*?".contains(&b))
}

/// Matches `text` against a glob where `*` is any run of characters (dots included) and `?`
/// any one character.
pub fn glob_match(pattern: &str, text: &str) -> bool {
    let (p, t) = (pattern.as_bytes(), text.as_bytes());
    let (mut pi, mut ti) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while ti < t.len() {
        match p.get(pi) {
            Some(b'*') => {
                star = Some((pi, ti));
                pi += 1;
            }
            Some(&c) if c == b'?' || c == t[ti] => {
                pi += 1;
                ti += 1;
            }
            _ => match star {
                Some((sp, st)) => {
                    pi = sp + 1;
                    ti = st + 1;
                    star = Some((sp, st + 1));
                }
                None => return false,
            },
        }
    }
    p[pi..].iter().all(|c| *c == b'*')
}

/// The policy file the install renders for `rules`: compact JSON (which is YAML) with sorted
/// keys, byte for byte what the Helm chart's `toJson` writes.
pub fn file_text(rules: &[PolicyRule]) -> String {
    let rules: Vec<serde_json::Value> = rules
        .iter()
        .map(|r| serde_json::json!({"clients": r.clients, "services": r.services}))
        .collect();
    serde_json::json!({ "rules": rules }).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rule(services: &[&str], clients: &[&str]) -> PolicyRule {
        PolicyRule {
            services: services.iter().map(|s| s.to_string()).collect(),
            clients: clients.iter().map(|s| s.to_string()).collect(),
        }
    }

    #[test]
    fn globs() {
        assert!(glob_match("*", ""));
        assert!(glob_match("*.shop.svc", "a.b.shop.svc"));
        assert!(!glob_match("*.shop.svc", "shop.svc"));
        assert!(glob_match("a?c", "abc"));
        assert!(!glob_match("a?c", "ac"));
        assert!(glob_match("a*b*c", "axxbyyc"));
        assert!(!glob_match("a*b*c", "axxbyy"));
        assert!(glob_match("exact", "exact"));
        assert!(!glob_match("exact", "exactly"));
    }

    #[test]
    fn problems_name_the_rule() {
        let ok = rule(&["*.shop.svc.cluster.local"], &["spiffe://td/ns/shop/*"]);
        assert_eq!(problem(&[ok.clone(), rule(&["a"], &[])]), None);
        for (bad, why) in [
            (rule(&[], &["a"]), "governs nothing"),
            (rule(&[" "], &["a"]), "`services` pattern is empty"),
            (rule(&["a"], &[""]), "`clients` pattern is empty"),
            (rule(&["a b"], &["a"]), "outside"),
            (rule(&["a"], &["<x>"]), "outside"),
        ] {
            let (n, got) = problem(&[ok.clone(), bad]).unwrap();
            assert_eq!(n, 1);
            assert!(got.contains(why), "{got}");
        }
    }

    #[test]
    fn parse_reads_yaml_and_json_and_names_what_is_wrong() {
        let rules = parse("rules:\n- services: ['a']\n  clients: ['b']\n").unwrap();
        assert_eq!(rules, [rule(&["a"], &["b"])]);
        assert_eq!(parse(&file_text(&rules)).unwrap(), rules);
        assert!(parse("rules: []").unwrap().is_empty());
        for (text, want) in [
            ("", "empty"),
            ("rules: [", "not a valid policy"),
            ("rulez: []", "rulez"),
            ("rules:\n- services: []\n  clients: []\n", "rule 0"),
        ] {
            let err = parse(text).unwrap_err();
            assert!(err.contains(want), "{text:?}: {err}");
        }
    }

    #[test]
    fn the_file_is_sorted_compact_json() {
        assert_eq!(file_text(&[]), r#"{"rules":[]}"#);
        assert_eq!(
            file_text(&[rule(&["b.svc"], &["*.a"])]),
            r#"{"rules":[{"clients":["*.a"],"services":["b.svc"]}]}"#
        );
    }
}
