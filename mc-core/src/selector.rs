//! Kubernetes label selectors: `matchLabels` plus `matchExpressions` (In, NotIn, Exists,
//! DoesNotExist), the `--selector` string form, and matching.
//!
//! An **empty selector matches nothing**, as upstream (Linkerd fix #11344): a Link whose selector
//! is unset must not export every Service of the target cluster.
//!
//! ```
//! use std::collections::BTreeMap;
//! use mc_core::selector::Selector;
//!
//! let sel: Selector = "mirror.linkerd.io/exported=true,tier in (web,api),!legacy".parse()?;
//! let labels: BTreeMap<String, String> = [
//!     ("mirror.linkerd.io/exported".to_string(), "true".to_string()),
//!     ("tier".to_string(), "web".to_string()),
//! ]
//! .into();
//! assert!(sel.matches(&labels));
//! // Values print sorted, so the string form is canonical.
//! assert_eq!(sel.to_string(), "mirror.linkerd.io/exported=true,tier in (api,web),!legacy");
//! assert!(!Selector::default().matches(&labels));
//! # Ok::<(), mc_core::Error>(())
//! ```

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::str::FromStr;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, LabelSelectorRequirement};

use crate::naming::is_dns1123_subdomain;
use crate::{Error, Result};

/// The operator of a [`Requirement`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Operator {
    /// The label exists and its value is one of the values.
    In,
    /// The label is absent, or its value is none of the values.
    NotIn,
    /// The label exists, whatever its value.
    Exists,
    /// The label is absent.
    DoesNotExist,
}

impl Operator {
    /// The name used in a LabelSelector (`In`, `NotIn`, `Exists`, `DoesNotExist`).
    pub fn as_str(self) -> &'static str {
        match self {
            Operator::In => "In",
            Operator::NotIn => "NotIn",
            Operator::Exists => "Exists",
            Operator::DoesNotExist => "DoesNotExist",
        }
    }

    /// All operators, in the order of the CRD enum.
    pub const ALL: [Operator; 4] = [
        Operator::In,
        Operator::NotIn,
        Operator::Exists,
        Operator::DoesNotExist,
    ];

    fn takes_values(self) -> bool {
        matches!(self, Operator::In | Operator::NotIn)
    }
}

/// One `matchExpressions` entry, validated.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Requirement {
    key: String,
    operator: Operator,
    values: BTreeSet<String>,
}

impl Requirement {
    /// A validated requirement: the key is a label key, In/NotIn have at least one value, and
    /// Exists/DoesNotExist have none.
    pub fn new(
        key: impl Into<String>,
        operator: Operator,
        values: impl IntoIterator<Item = String>,
    ) -> Result<Requirement> {
        let key = key.into();
        let values: BTreeSet<String> = values.into_iter().collect();
        let shown = || format!("{key} {} {values:?}", operator.as_str());
        check_key(&key).map_err(|p| invalid("", shown(), p))?;
        for v in &values {
            check_value(v).map_err(|p| invalid("", shown(), p))?;
        }
        if operator.takes_values() && values.is_empty() {
            return Err(invalid(
                "",
                shown(),
                "operator In/NotIn needs at least one value",
            ));
        }
        if !operator.takes_values() && !values.is_empty() {
            return Err(invalid(
                "",
                shown(),
                "operator Exists/DoesNotExist takes no values",
            ));
        }
        Ok(Requirement {
            key,
            operator,
            values,
        })
    }

    /// The label key.
    pub fn key(&self) -> &str {
        &self.key
    }

    /// The operator.
    pub fn operator(&self) -> Operator {
        self.operator
    }

    /// The values (empty for Exists and DoesNotExist), sorted.
    pub fn values(&self) -> &BTreeSet<String> {
        &self.values
    }

    /// Whether `labels` satisfy this requirement.
    pub fn matches(&self, labels: &BTreeMap<String, String>) -> bool {
        let value = labels.get(&self.key);
        match self.operator {
            Operator::In => value.is_some_and(|v| self.values.contains(v)),
            Operator::NotIn => value.is_none_or(|v| !self.values.contains(v)),
            Operator::Exists => value.is_some(),
            Operator::DoesNotExist => value.is_none(),
        }
    }
}

impl fmt::Display for Requirement {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let values = || self.values.iter().cloned().collect::<Vec<_>>().join(",");
        match self.operator {
            Operator::In => write!(f, "{} in ({})", self.key, values()),
            Operator::NotIn => write!(f, "{} notin ({})", self.key, values()),
            Operator::Exists => write!(f, "{}", self.key),
            Operator::DoesNotExist => write!(f, "!{}", self.key),
        }
    }
}

/// A validated label selector. [`Default`] is the empty selector, which matches nothing.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Selector {
    match_labels: BTreeMap<String, String>,
    match_expressions: Vec<Requirement>,
}

impl Selector {
    /// A selector from validated parts.
    pub fn from_parts(
        match_labels: BTreeMap<String, String>,
        match_expressions: Vec<Requirement>,
    ) -> Result<Selector> {
        for (k, v) in &match_labels {
            let shown = || format!("{k}={v}");
            check_key(k).map_err(|p| invalid("", shown(), p))?;
            check_value(v).map_err(|p| invalid("", shown(), p))?;
        }
        Ok(Selector {
            match_labels,
            match_expressions,
        })
    }

    /// A selector with one `key=value` requirement.
    pub fn equals(key: &str, value: &str) -> Result<Selector> {
        Selector::from_parts([(key.to_string(), value.to_string())].into(), Vec::new())
    }

    /// The `matchLabels` part.
    pub fn match_labels(&self) -> &BTreeMap<String, String> {
        &self.match_labels
    }

    /// The `matchExpressions` part.
    pub fn match_expressions(&self) -> &[Requirement] {
        &self.match_expressions
    }

    /// `true` when there is no requirement at all; such a selector matches nothing.
    pub fn is_empty(&self) -> bool {
        self.match_labels.is_empty() && self.match_expressions.is_empty()
    }

    /// Whether `labels` satisfy every requirement. The empty selector matches nothing.
    pub fn matches(&self, labels: &BTreeMap<String, String>) -> bool {
        !self.is_empty()
            && self
                .match_labels
                .iter()
                .all(|(k, v)| labels.get(k) == Some(v))
            && self.match_expressions.iter().all(|r| r.matches(labels))
    }

    /// Validate a Kubernetes `LabelSelector`. Errors name the field inside it, e.g.
    /// `matchExpressions[1].operator`.
    pub fn from_label_selector(s: &LabelSelector) -> Result<Selector> {
        Selector::from_label_selector_at(s, "")
    }

    /// As [`Selector::from_label_selector`], with errors prefixed by `path` (e.g. `spec.selector`).
    pub fn from_label_selector_at(s: &LabelSelector, path: &str) -> Result<Selector> {
        let at = |field: &str| {
            if path.is_empty() {
                field.to_string()
            } else {
                format!("{path}.{field}")
            }
        };
        let mut labels = BTreeMap::new();
        for (k, v) in s.match_labels.iter().flatten() {
            let shown = format!("{k}={v}");
            check_key(k).map_err(|p| invalid(&at(&format!("matchLabels[{k:?}]")), &shown, p))?;
            check_value(v).map_err(|p| invalid(&at(&format!("matchLabels[{k:?}]")), &shown, p))?;
            labels.insert(k.clone(), v.clone());
        }
        let mut exprs = Vec::new();
        for (i, e) in s.match_expressions.iter().flatten().enumerate() {
            let field = at(&format!("matchExpressions[{i}]"));
            let operator = Operator::ALL
                .into_iter()
                .find(|o| o.as_str() == e.operator)
                .ok_or_else(|| {
                    invalid(
                        &format!("{field}.operator"),
                        &e.operator,
                        "is not one of In, NotIn, Exists, DoesNotExist",
                    )
                })?;
            let req = Requirement::new(&e.key, operator, e.values.iter().flatten().cloned())
                .map_err(|err| relocate(err, &field))?;
            exprs.push(req);
        }
        Ok(Selector {
            match_labels: labels,
            match_expressions: exprs,
        })
    }

    /// The Kubernetes `LabelSelector` form (empty parts are left out).
    pub fn to_label_selector(&self) -> LabelSelector {
        let exprs = self
            .match_expressions
            .iter()
            .map(|r| LabelSelectorRequirement {
                key: r.key.clone(),
                operator: r.operator.as_str().to_string(),
                values: r
                    .operator
                    .takes_values()
                    .then(|| r.values.iter().cloned().collect()),
            })
            .collect::<Vec<_>>();
        LabelSelector {
            match_labels: (!self.match_labels.is_empty()).then(|| self.match_labels.clone()),
            match_expressions: (!exprs.is_empty()).then_some(exprs),
        }
    }

    /// The `labelSelector=` query for a list or watch. Unlike the API server, which reads an
    /// empty query as "everything", this keeps "empty matches nothing": the empty selector gives
    /// `mirror.linkerd.io/exported,!mirror.linkerd.io/exported`, which no object satisfies.
    pub fn to_query(&self) -> String {
        if self.is_empty() {
            format!("{k},!{k}", k = crate::labels::EXPORTED)
        } else {
            self.to_string()
        }
    }
}

impl fmt::Display for Selector {
    /// The `--selector` string form; parsing it gives back an equal selector.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut first = true;
        let mut sep = |f: &mut fmt::Formatter<'_>| {
            let s = if first { "" } else { "," };
            first = false;
            f.write_str(s)
        };
        for (k, v) in &self.match_labels {
            sep(f)?;
            write!(f, "{k}={v}")?;
        }
        for r in &self.match_expressions {
            sep(f)?;
            write!(f, "{r}")?;
        }
        Ok(())
    }
}

impl FromStr for Selector {
    type Err = Error;

    /// Parse the `--selector` string form: comma-separated `k=v` (or `k==v`), `k!=v`,
    /// `k in (a,b)`, `k notin (a,b)`, `k` (exists) and `!k` (does not exist). The empty string
    /// gives the empty selector (which matches nothing).
    fn from_str(input: &str) -> Result<Selector> {
        let mut labels = BTreeMap::new();
        let mut exprs = Vec::new();
        for part in split_top_level(input)? {
            let part = part.trim();
            if part.is_empty() {
                if input.trim().is_empty() {
                    continue;
                }
                return Err(invalid("", input, "has an empty requirement (stray comma)"));
            }
            match parse_requirement(part).map_err(|e| relocate_input(e, input))? {
                Parsed::Label(k, v) => match labels.get(&k) {
                    Some(old) if old != &v => exprs.push(Requirement::new(k, Operator::In, [v])?),
                    _ => {
                        labels.insert(k, v);
                    }
                },
                Parsed::Expr(r) => exprs.push(r),
            }
        }
        Ok(Selector {
            match_labels: labels,
            match_expressions: exprs,
        })
    }
}

enum Parsed {
    Label(String, String),
    Expr(Requirement),
}

/// Split at commas that are not inside parentheses.
fn split_top_level(input: &str) -> Result<Vec<&str>> {
    let mut parts = Vec::new();
    let (mut depth, mut start) = (0u32, 0usize);
    for (i, c) in input.char_indices() {
        match c {
            '(' if depth == 0 => depth = 1,
            '(' => return Err(invalid("", input, "has nested parentheses")),
            ')' if depth == 1 => depth = 0,
            ')' => return Err(invalid("", input, "has a ')' without '('")),
            ',' if depth == 0 => {
                parts.push(&input[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    if depth != 0 {
        return Err(invalid("", input, "has a '(' that is never closed"));
    }
    parts.push(&input[start..]);
    Ok(parts)
}

fn parse_requirement(part: &str) -> Result<Parsed> {
    if let Some(open) = part.find('(') {
        return parse_set_requirement(part, open);
    }
    if let Some(key) = part.strip_prefix('!') {
        if key.contains(['=', '!']) {
            return Err(invalid(
                "",
                part,
                "mixes '!' with a value; write !key or key!=value",
            ));
        }
        return Requirement::new(key.trim(), Operator::DoesNotExist, []).map(Parsed::Expr);
    }
    if let Some((k, v)) = part.split_once("!=") {
        return Requirement::new(k.trim(), Operator::NotIn, [v.trim().to_string()])
            .map(Parsed::Expr);
    }
    if let Some((k, v)) = part.split_once("==").or_else(|| part.split_once('=')) {
        let (k, v) = (k.trim(), v.trim());
        check_key(k).map_err(|p| invalid("", part, p))?;
        check_value(v).map_err(|p| invalid("", part, p))?;
        return Ok(Parsed::Label(k.to_string(), v.to_string()));
    }
    if part.split_whitespace().count() > 1 {
        return Err(invalid(
            "",
            part,
            "is not a requirement: expected 'in' or 'notin' before '('",
        ));
    }
    Requirement::new(part, Operator::Exists, []).map(Parsed::Expr)
}

fn parse_set_requirement(part: &str, open: usize) -> Result<Parsed> {
    let head: Vec<&str> = part[..open].split_whitespace().collect();
    let operator = match head.as_slice() {
        [_, "in"] => Operator::In,
        [_, "notin"] => Operator::NotIn,
        _ => {
            return Err(invalid(
                "",
                part,
                "expected `key in (…)` or `key notin (…)`",
            ));
        }
    };
    let rest = &part[open + 1..];
    let Some(body) = rest.strip_suffix(')') else {
        return Err(invalid("", part, "has text after the closing ')'"));
    };
    // As the Kubernetes parser: `k in ()` is the set holding the empty value.
    let values: Vec<String> = body.split(',').map(|v| v.trim().to_string()).collect();
    Requirement::new(head[0], operator, values).map(Parsed::Expr)
}

fn invalid(field: &str, input: impl Into<String>, problem: impl Into<String>) -> Error {
    Error::InvalidSelector {
        field: field.to_string(),
        input: input.into(),
        problem: problem.into(),
    }
}

/// Give a requirement-level error the field path it was found at.
fn relocate(err: Error, field: &str) -> Error {
    match err {
        Error::InvalidSelector { input, problem, .. } => invalid(field, input, problem),
        other => other,
    }
}

/// Report a requirement-level error against the whole input, naming the requirement.
fn relocate_input(err: Error, whole: &str) -> Error {
    match err {
        Error::InvalidSelector { input, problem, .. } => {
            invalid("", whole, format!("requirement {input:?} {problem}"))
        }
        other => other,
    }
}

/// Check a label key: `[prefix/]name`, prefix a DNS-1123 subdomain, name at most 63 characters
/// of `[A-Za-z0-9_.-]` starting and ending with an alphanumeric.
pub fn check_key(key: &str) -> std::result::Result<(), String> {
    let (prefix, name) = match key.rsplit_once('/') {
        Some((p, n)) => (Some(p), n),
        None => (None, key),
    };
    if let Some(p) = prefix.filter(|p| !is_dns1123_subdomain(p)) {
        return Err(format!(
            "key {key:?} has prefix {p:?}, which is not a DNS subdomain (lowercase, at most 253 characters)"
        ));
    }
    if name.is_empty() {
        return Err(format!("key {key:?} has an empty name"));
    }
    check_name_chars(name).map_err(|p| format!("key {key:?}: name {p}"))
}

/// Check a label value: empty, or at most 63 characters of `[A-Za-z0-9_.-]` starting and ending
/// with an alphanumeric.
pub fn check_value(value: &str) -> std::result::Result<(), String> {
    if value.is_empty() {
        return Ok(());
    }
    check_name_chars(value).map_err(|p| format!("value {value:?} {p}"))
}

fn check_name_chars(s: &str) -> std::result::Result<(), String> {
    if s.len() > 63 {
        return Err(format!("is {} characters long (at most 63)", s.len()));
    }
    let alnum = |c: Option<char>| c.is_some_and(|c| c.is_ascii_alphanumeric());
    if !alnum(s.chars().next()) || !alnum(s.chars().last()) {
        return Err("must start and end with a letter or digit".to_string());
    }
    if let Some(c) = s
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.')))
    {
        return Err(format!(
            "contains {c:?} (allowed: letters, digits, '-', '_', '.')"
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    fn sel(s: &str) -> Selector {
        match s.parse() {
            Ok(sel) => sel,
            Err(e) => panic!("{s:?} should parse: {e}"),
        }
    }

    #[test]
    fn empty_selector_matches_nothing() {
        let empty = Selector::default();
        assert!(empty.is_empty());
        assert!(!empty.matches(&labels(&[])));
        assert!(!empty.matches(&labels(&[("a", "b")])));
        assert!(sel("").is_empty());
        let from_k8s = Selector::from_label_selector(&LabelSelector::default());
        assert!(from_k8s.is_ok_and(|s| s.is_empty()));
    }

    #[test]
    fn empty_query_never_matches() {
        let q = Selector::default().to_query();
        let parsed = sel(&q);
        assert!(!parsed.matches(&labels(&[])));
        assert!(!parsed.matches(&labels(&[(crate::labels::EXPORTED, "true")])));
        assert_eq!(sel("a=b").to_query(), "a=b");
    }

    #[test]
    fn parses_every_operator() {
        let s = sel("k=v,k2 in (a,b),!k3,k4,k5!=v, k6 notin (x)");
        assert_eq!(s.match_labels(), &labels(&[("k", "v")]));
        let ops: Vec<_> = s.match_expressions().iter().map(|r| r.operator()).collect();
        use Operator::*;
        assert_eq!(ops, [In, DoesNotExist, Exists, NotIn, NotIn]);
        assert_eq!(
            s.to_string(),
            "k=v,k2 in (a,b),!k3,k4,k5 notin (v),k6 notin (x)"
        );
    }

    #[test]
    fn double_equals_is_equality() {
        assert_eq!(sel("a==b"), sel("a=b"));
    }

    #[test]
    fn empty_parentheses_hold_the_empty_value() {
        let s = sel("k in ()");
        assert!(s.matches(&labels(&[("k", "")])));
        assert!(!s.matches(&labels(&[("k", "x")])));
    }

    #[test]
    fn matching_semantics() {
        let s = sel("app=web,tier in (a,b),!legacy,zone,env!=prod");
        let good = labels(&[
            ("app", "web"),
            ("tier", "a"),
            ("zone", "z1"),
            ("env", "dev"),
        ]);
        assert!(s.matches(&good));
        let mut no_env = good.clone();
        no_env.remove("env");
        assert!(s.matches(&no_env), "NotIn matches an absent key");
        for (k, v) in [
            ("app", "api"),
            ("tier", "c"),
            ("legacy", "1"),
            ("env", "prod"),
        ] {
            let mut l = good.clone();
            l.insert(k.to_string(), v.to_string());
            assert!(!s.matches(&l), "{k}={v} must not match");
        }
        let mut no_zone = good.clone();
        no_zone.remove("zone");
        assert!(!s.matches(&no_zone), "Exists needs the key");
        let mut no_tier = good;
        no_tier.remove("tier");
        assert!(!s.matches(&no_tier), "In needs the key");
    }

    #[test]
    fn conflicting_equalities_never_match() {
        let s = sel("a=1,a=2");
        assert!(!s.matches(&labels(&[("a", "1")])));
        assert!(!s.matches(&labels(&[("a", "2")])));
        assert_eq!(sel(&s.to_string()), s);
    }

    #[test]
    fn rejects_malformed_strings() {
        for bad in [
            "a=b,,c",
            "k in (a",
            "k in a)",
            "k foo (a)",
            "k in (a) x",
            "!k=v",
            "Bad Key=v",
            "k=bad value",
            "-k=v",
            "a/b/c=v",
            "UPPER.example/k=v",
            "k in ((a))",
        ] {
            let err = bad.parse::<Selector>();
            assert!(
                matches!(err, Err(Error::InvalidSelector { .. })),
                "{bad:?} should fail, got {err:?}"
            );
        }
        let long = format!("k={}", "v".repeat(64));
        assert!(long.parse::<Selector>().is_err());
    }

    #[test]
    fn label_selector_round_trip_and_field_paths() {
        let s = sel("mirror.linkerd.io/exported=true,tier in (a,b),!x,y");
        let ls = s.to_label_selector();
        assert_eq!(ls.match_expressions.as_ref().map(Vec::len), Some(3));
        assert_eq!(
            ls.match_expressions
                .as_ref()
                .and_then(|e| e[2].values.clone()),
            None
        );
        assert_eq!(Selector::from_label_selector(&ls).ok(), Some(s));

        let bad = LabelSelector {
            match_labels: None,
            match_expressions: Some(vec![
                LabelSelectorRequirement {
                    key: "ok".into(),
                    operator: "Exists".into(),
                    values: None,
                },
                LabelSelectorRequirement {
                    key: "k".into(),
                    operator: "Equals".into(),
                    values: None,
                },
            ]),
        };
        let err = Selector::from_label_selector_at(&bad, "spec.selector").map(|_| ());
        let msg = err.err().map(|e| e.to_string()).unwrap_or_default();
        assert!(
            msg.contains("spec.selector.matchExpressions[1].operator"),
            "{msg}"
        );
        let no_values = LabelSelector {
            match_labels: None,
            match_expressions: Some(vec![LabelSelectorRequirement {
                key: "k".into(),
                operator: "In".into(),
                values: Some(vec![]),
            }]),
        };
        let msg = Selector::from_label_selector_at(&no_values, "spec.selector")
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(msg.contains("spec.selector.matchExpressions[0]"), "{msg}");
        assert!(msg.contains("at least one value"), "{msg}");
    }

    fn key() -> impl Strategy<Value = String> {
        (
            proptest::option::of("[a-z]([a-z0-9-]{0,8}[a-z0-9])?(\\.[a-z]{1,5}){0,2}"),
            "[A-Za-z0-9]([A-Za-z0-9_.-]{0,10}[A-Za-z0-9])?",
        )
            .prop_map(|(p, n)| match p {
                Some(p) => format!("{p}/{n}"),
                None => n,
            })
    }

    fn value() -> impl Strategy<Value = String> {
        "([A-Za-z0-9]([A-Za-z0-9_.-]{0,10}[A-Za-z0-9])?)?"
    }

    fn requirement() -> impl Strategy<Value = Requirement> {
        (
            key(),
            proptest::sample::select(Operator::ALL.to_vec()),
            proptest::collection::btree_set(value(), 1..4),
        )
            .prop_filter_map("valid", |(k, op, vals)| {
                let vals = if op.takes_values() {
                    vals
                } else {
                    BTreeSet::new()
                };
                Requirement::new(k, op, vals).ok()
            })
    }

    proptest! {
        #[test]
        fn string_form_round_trips(
            labels in proptest::collection::btree_map(key(), value(), 0..4),
            exprs in proptest::collection::vec(requirement(), 0..4),
        ) {
            let s = Selector::from_parts(labels, exprs)?;
            let text = s.to_string();
            let back: Selector = text.parse()?;
            prop_assert_eq!(&back, &s, "via {:?}", text);
            let via_k8s = Selector::from_label_selector(&s.to_label_selector())?;
            prop_assert_eq!(via_k8s, s);
        }

        #[test]
        fn parse_never_panics(s in "\\PC{0,40}") {
            let _ = s.parse::<Selector>();
        }
    }
}
