//! Filter policies: which spans take part in the service graph, in Tempo's
//! `filter_policies` format.
//!
//! ```yaml
//! filter_policies:
//!   - include:
//!       match_type: strict
//!       attributes:
//!         - key: resource.service.name
//!           value: checkout
//!   - exclude:
//!       match_type: regex
//!       attributes:
//!         - key: span.http.route
//!           value: "^/health"
//! ```
//!
//! A span is kept when it passes every policy: each `include` must match it
//! (all of its attributes), each `include_any` must match it through at least
//! one attribute, and no `exclude` may match it (all of its attributes).
//! Keys are `resource.<attribute>`, `span.<attribute>` or one of the span's
//! intrinsics `name`, `status` and `kind` (also written `span:name`, ...).
//! Strict values compare by type (a string matches a string attribute, 200
//! an integer attribute); the intrinsics take the OTLP enum names
//! (`SPAN_KIND_SERVER`, `STATUS_CODE_ERROR`). Regex values are RE2 patterns,
//! matched anywhere in the string (a Go `regexp.MatchString`); they match
//! string attributes only.
//!
//! This module parses and checks the policies; the engine applies them to
//! each span as read from the wire (`engine/filter.rs`).

use crate::error::Error;
use serde_json::{Map, Value};

/// One entry of `filter_policies`: at least one of its three parts is set.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct FilterPolicy {
    pub include: Option<PolicyMatch>,
    pub include_any: Option<PolicyMatch>,
    pub exclude: Option<PolicyMatch>,
}

/// The attribute conditions of one part of a policy.
#[derive(Debug, Clone, PartialEq)]
pub struct PolicyMatch {
    pub conditions: Vec<Condition>,
}

/// One `key: value` condition.
#[derive(Debug, Clone, PartialEq)]
pub struct Condition {
    pub target: Target,
    pub value: Matcher,
}

/// What a condition looks at.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    Resource(String),
    Span(String),
    Name,
    Status,
    Kind,
}

/// How a value is compared.
#[derive(Debug, Clone, PartialEq)]
pub enum Matcher {
    Str(String),
    Int(i64),
    Double(f64),
    Bool(bool),
    /// A span kind (0–5) or status code (0–2), as numbered in OTLP.
    Code(u8),
    Regex(Pattern),
}

/// A compiled regular expression; two are equal when their patterns are.
#[derive(Debug, Clone)]
pub struct Pattern(pub regex::Regex);

impl PartialEq for Pattern {
    fn eq(&self, other: &Pattern) -> bool {
        self.0.as_str() == other.0.as_str()
    }
}

/// The OTLP names of span kinds, by number.
pub const KIND_NAMES: [&str; 6] = [
    "SPAN_KIND_UNSPECIFIED",
    "SPAN_KIND_INTERNAL",
    "SPAN_KIND_SERVER",
    "SPAN_KIND_CLIENT",
    "SPAN_KIND_PRODUCER",
    "SPAN_KIND_CONSUMER",
];

/// The OTLP names of status codes, by number.
pub const STATUS_NAMES: [&str; 3] = ["STATUS_CODE_UNSET", "STATUS_CODE_OK", "STATUS_CODE_ERROR"];

/// Parses `filter_policies`: a list of policies, or null for none. Every
/// error names the element it is about (`filter_policies[0].include...`).
pub fn parse(key: &str, v: &Value) -> Result<Vec<FilterPolicy>, Error> {
    let items = match v {
        Value::Null => return Ok(Vec::new()),
        Value::Array(items) => items,
        _ => return Err(Error::config(key, format!("expected a list of policies, got {v}"))),
    };
    items.iter().enumerate().map(|(i, item)| policy(&format!("{key}[{i}]"), item)).collect()
}

fn policy(at: &str, v: &Value) -> Result<FilterPolicy, Error> {
    let Value::Object(map) = v else {
        return Err(Error::config(
            at,
            format!("expected an object with `include`, `include_any` or `exclude`, got {v}"),
        ));
    };
    let mut p = FilterPolicy::default();
    for (k, v) in map {
        let slot = match k.as_str() {
            "include" => &mut p.include,
            "include_any" => &mut p.include_any,
            "exclude" => &mut p.exclude,
            _ => {
                return Err(Error::config(
                    format!("{at}.{k}"),
                    "unknown key (expected `include`, `include_any` or `exclude`)",
                ));
            }
        };
        *slot = if v.is_null() { None } else { Some(policy_match(&format!("{at}.{k}"), v)?) };
    }
    if p.include.is_none() && p.include_any.is_none() && p.exclude.is_none() {
        return Err(Error::config(at, "a policy needs at least one of `include`, `include_any` or `exclude`"));
    }
    Ok(p)
}

fn policy_match(at: &str, v: &Value) -> Result<PolicyMatch, Error> {
    let Value::Object(map) = v else {
        return Err(Error::config(at, format!("expected an object with `match_type` and `attributes`, got {v}")));
    };
    if let Some(k) = map.keys().find(|k| *k != "match_type" && *k != "attributes") {
        return Err(Error::config(format!("{at}.{k}"), "unknown key (expected `match_type` or `attributes`)"));
    }
    let regex = match map.get("match_type") {
        Some(Value::String(s)) if s == "strict" => false,
        Some(Value::String(s)) if s == "regex" => true,
        other => {
            let got = other.map(|v| v.to_string()).unwrap_or_else(|| "nothing".into());
            return Err(Error::config(
                format!("{at}.match_type"),
                format!("expected \"strict\" or \"regex\", got {got}"),
            ));
        }
    };
    let attributes = match map.get("attributes") {
        None | Some(Value::Null) => &Vec::new(),
        Some(Value::Array(a)) => a,
        Some(other) => return Err(Error::config(format!("{at}.attributes"), format!("expected a list, got {other}"))),
    };
    let conditions = attributes
        .iter()
        .enumerate()
        .map(|(i, a)| condition(&format!("{at}.attributes[{i}]"), a, regex))
        .collect::<Result<_, _>>()?;
    Ok(PolicyMatch { conditions })
}

fn condition(at: &str, v: &Value, regex: bool) -> Result<Condition, Error> {
    let Value::Object(map) = v else {
        return Err(Error::config(at, format!("expected an object with `key` and `value`, got {v}")));
    };
    if let Some(k) = map.keys().find(|k| *k != "key" && *k != "value") {
        return Err(Error::config(format!("{at}.{k}"), "unknown key (expected `key` or `value`)"));
    }
    let target = match map.get("key") {
        Some(Value::String(k)) => target(&format!("{at}.key"), k)?,
        other => {
            let got = other.map(|v| v.to_string()).unwrap_or_else(|| "nothing".into());
            return Err(Error::config(format!("{at}.key"), format!("expected a string, got {got}")));
        }
    };
    let value = matcher(&format!("{at}.value"), &target, map, regex)?;
    Ok(Condition { target, value })
}

fn target(at: &str, key: &str) -> Result<Target, Error> {
    let scoped = |prefix: &str| key.strip_prefix(prefix).filter(|rest| !rest.is_empty()).map(str::to_string);
    if let Some(k) = scoped("resource.") {
        return Ok(Target::Resource(k));
    }
    if let Some(k) = scoped("span.") {
        return Ok(Target::Span(k));
    }
    match key.strip_prefix("span:").unwrap_or(key) {
        "name" => Ok(Target::Name),
        "status" => Ok(Target::Status),
        "kind" => Ok(Target::Kind),
        _ => Err(Error::config(
            at,
            format!("`{key}` is not `resource.<attribute>`, `span.<attribute>`, `name`, `status` or `kind`"),
        )),
    }
}

fn matcher(at: &str, target: &Target, map: &Map<String, Value>, regex: bool) -> Result<Matcher, Error> {
    let v = map.get("value").unwrap_or(&Value::Null);
    if regex {
        let Value::String(s) = v else {
            return Err(Error::config(at, format!("a regex must be a string, got {v}")));
        };
        return regex::Regex::new(s)
            .map(|r| Matcher::Regex(Pattern(r)))
            .map_err(|e| Error::config(at, format!("not a valid regular expression: {e}")));
    }
    let named = |names: &[&str]| match v {
        Value::String(s) => names
            .iter()
            .position(|n| n == s)
            .map(|i| Matcher::Code(i as u8))
            .ok_or_else(|| Error::config(at, format!("`{s}` is none of {}", names.join(", ")))),
        _ => Err(Error::config(at, format!("expected one of {}, got {v}", names.join(", ")))),
    };
    match target {
        Target::Kind => named(&KIND_NAMES),
        Target::Status => named(&STATUS_NAMES),
        Target::Name => match v {
            Value::String(s) => Ok(Matcher::Str(s.clone())),
            _ => Err(Error::config(at, format!("a span name is a string, got {v}"))),
        },
        Target::Resource(_) | Target::Span(_) => match v {
            Value::String(s) => Ok(Matcher::Str(s.clone())),
            Value::Bool(b) => Ok(Matcher::Bool(*b)),
            Value::Number(n) => match n.as_i64() {
                Some(i) => Ok(Matcher::Int(i)),
                None => Ok(Matcher::Double(n.as_f64().unwrap_or(f64::NAN))),
            },
            _ => Err(Error::config(at, format!("expected a string, number or boolean, got {v}"))),
        },
    }
}

/// The policies as JSON the parser reads back (strict values as given, the
/// intrinsics by name, regexes by pattern).
pub fn to_json(policies: &[FilterPolicy]) -> Value {
    use serde_json::json;
    let part = |m: &PolicyMatch| {
        let regex = m.conditions.iter().any(|c| matches!(c.value, Matcher::Regex(_)));
        let attributes: Vec<Value> = m
            .conditions
            .iter()
            .map(|c| {
                let key = match &c.target {
                    Target::Resource(k) => format!("resource.{k}"),
                    Target::Span(k) => format!("span.{k}"),
                    Target::Name => "name".into(),
                    Target::Status => "status".into(),
                    Target::Kind => "kind".into(),
                };
                let value = match &c.value {
                    Matcher::Str(s) => json!(s),
                    Matcher::Int(i) => json!(i),
                    Matcher::Double(d) => json!(d),
                    Matcher::Bool(b) => json!(b),
                    Matcher::Code(n) if c.target == Target::Kind => json!(KIND_NAMES[*n as usize]),
                    Matcher::Code(n) => json!(STATUS_NAMES[*n as usize]),
                    Matcher::Regex(p) => json!(p.0.as_str()),
                };
                json!({ "key": key, "value": value })
            })
            .collect();
        json!({ "match_type": if regex { "regex" } else { "strict" }, "attributes": attributes })
    };
    Value::Array(
        policies
            .iter()
            .map(|p| {
                let mut o = Map::new();
                for (name, m) in [("include", &p.include), ("include_any", &p.include_any), ("exclude", &p.exclude)] {
                    if let Some(m) = m {
                        o.insert(name.into(), part(m));
                    }
                }
                Value::Object(o)
            })
            .collect(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn err(v: Value) -> String {
        parse("filter_policies", &v).unwrap_err().to_string()
    }

    #[test]
    fn parses_each_kind_of_condition() {
        let v = json!([
            {"include": {"match_type": "strict", "attributes": [
                {"key": "resource.service.name", "value": "checkout"},
                {"key": "span.http.status_code", "value": 200},
                {"key": "span.ratio", "value": 0.5},
                {"key": "span.cached", "value": true},
                {"key": "kind", "value": "SPAN_KIND_SERVER"},
                {"key": "span:status", "value": "STATUS_CODE_ERROR"},
                {"key": "name", "value": "GET /"}]}},
            {"exclude": {"match_type": "regex", "attributes": [{"key": "span.http.route", "value": "^/health"}]}}
        ]);
        let p = parse("filter_policies", &v).unwrap();
        assert_eq!(p.len(), 2);
        let c = &p[0].include.as_ref().unwrap().conditions;
        assert_eq!(
            c[0],
            Condition { target: Target::Resource("service.name".into()), value: Matcher::Str("checkout".into()) }
        );
        assert_eq!(c[1].value, Matcher::Int(200));
        assert_eq!(c[2].value, Matcher::Double(0.5));
        assert_eq!(c[3].value, Matcher::Bool(true));
        assert_eq!(c[4], Condition { target: Target::Kind, value: Matcher::Code(2) });
        assert_eq!(c[5], Condition { target: Target::Status, value: Matcher::Code(2) });
        assert_eq!(c[6], Condition { target: Target::Name, value: Matcher::Str("GET /".into()) });
        assert!(p[1].include.is_none());
        assert_eq!(p[1].exclude.as_ref().unwrap().conditions[0].target, Target::Span("http.route".into()));
        // Written back, the policies read the same.
        assert_eq!(parse("filter_policies", &to_json(&p)).unwrap(), p);
    }

    #[test]
    fn errors_name_the_element() {
        assert_eq!(
            err(json!([{}])),
            "config key `filter_policies[0]`: a policy needs at least one of `include`, `include_any` or `exclude`"
        );
        assert_eq!(
            err(json!([{"include": {"match_type": "exact", "attributes": []}}])),
            "config key `filter_policies[0].include.match_type`: expected \"strict\" or \"regex\", got \"exact\""
        );
        assert_eq!(
            err(json!([{"exclude": {"match_type": "strict", "attributes": [{"key": "service.name", "value": "a"}]}}])),
            "config key `filter_policies[0].exclude.attributes[0].key`: `service.name` is not `resource.<attribute>`, \
             `span.<attribute>`, `name`, `status` or `kind`"
        );
        assert_eq!(
            err(json!([{"include": {"match_type": "regex", "attributes": [{"key": "name", "value": "("}]}}]))
                .split_once(": not a valid")
                .map(|(a, _)| a.to_string())
                .unwrap(),
            "config key `filter_policies[0].include.attributes[0].value`"
        );
        assert_eq!(
            err(json!([{"include": {"match_type": "strict", "attributes": [{"key": "kind", "value": "SERVER"}]}}])),
            "config key `filter_policies[0].include.attributes[0].value`: `SERVER` is none of SPAN_KIND_UNSPECIFIED, \
             SPAN_KIND_INTERNAL, SPAN_KIND_SERVER, SPAN_KIND_CLIENT, SPAN_KIND_PRODUCER, SPAN_KIND_CONSUMER"
        );
        assert_eq!(
            err(json!([{"include_all": {}}])),
            "config key `filter_policies[0].include_all`: unknown key (expected `include`, `include_any` or `exclude`)"
        );
        assert_eq!(
            err(json!({"include": {}})),
            "config key `filter_policies`: expected a list of policies, got {\"include\":{}}"
        );
    }
}
