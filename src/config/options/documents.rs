//! The documents generated from the schema: the README's options table and
//! the Go shim's `schema.json`, both with the two presets' defaults.

use super::{Kind, OPTIONS};
use crate::config::{Compat, Config};
use serde_json::{Value, json};

/// The schema as JSON, for the Go shim's check: key, aliases, kind, choices,
/// both presets' defaults and the meaning of every option.
pub fn schema_json() -> Value {
    let (tempo, contrib) = (Config::preset(Compat::Tempo), Config::preset(Compat::Contrib));
    let options: Vec<Value> = OPTIONS
        .iter()
        .map(|s| {
            let mut o = json!({
                "key": s.key,
                "aliases": s.aliases,
                "kind": s.kind.name(),
                "tempo": s.get(&tempo),
                "contrib": s.get(&contrib),
                "meaning": s.meaning,
            });
            if let Kind::Choice(names) = s.kind {
                o["choices"] = json!(names);
            }
            o
        })
        .collect();
    json!({ "schema": "servicemap.options/v1", "options": options })
}

/// The README's options table, in Markdown.
pub fn markdown_table() -> String {
    let (tempo, contrib) = (Config::preset(Compat::Tempo), Config::preset(Compat::Contrib));
    let mut out = String::from("| key | tempo | contrib | meaning |\n|---|---|---|---|\n");
    for s in OPTIONS {
        let mut key = format!("`{}`", s.key);
        for a in s.aliases {
            key.push_str(&format!(" (alias `{a}`)"));
        }
        let (t, c) = (for_people(s.kind, &s.get(&tempo)), for_people(s.kind, &s.get(&contrib)));
        out.push_str(&format!("| {key} | {t} | {c} | {} |\n", s.meaning));
    }
    out
}

/// A default as the README shows it.
fn for_people(kind: Kind, v: &Value) -> String {
    match (kind, v) {
        (_, Value::Null) => "none".to_string(),
        (Kind::Preset | Kind::Choice(_) | Kind::OptionalString | Kind::String, Value::String(s)) => format!("`{s}`"),
        (Kind::Duration, Value::Number(n)) => duration_for_people(n.as_f64().unwrap_or(0.0)),
        (Kind::Bytes, Value::Number(n)) => match n.as_u64() {
            Some(b) if b >= 1 << 20 && b % (1 << 20) == 0 => format!("{} MiB", b >> 20),
            _ => n.to_string(),
        },
        (Kind::StringList | Kind::FilterPolicies, Value::Array(items)) if items.is_empty() => "`[]`".to_string(),
        (Kind::StringList, Value::Array(items)) => {
            items.iter().map(|i| i.as_str().unwrap_or_default()).collect::<Vec<_>>().join(", ")
        }
        (Kind::Buckets, Value::Array(items)) => {
            let first = items.first().map(|v| v.to_string()).unwrap_or_default();
            let last = items.last().map(|v| v.to_string()).unwrap_or_default();
            format!("{first} … {last} s ({})", items.len())
        }
        (_, v) => v.to_string(),
    }
}

fn duration_for_people(s: f64) -> String {
    match s {
        0.0 => "0".to_string(),
        s if s >= 3600.0 && s % 3600.0 == 0.0 => format!("{}h", s / 3600.0),
        s if s >= 60.0 && s % 60.0 == 0.0 => format!("{}m", s / 60.0),
        s if s.fract() == 0.0 => format!("{s}s"),
        s => format!("{}ms", s * 1000.0),
    }
}
