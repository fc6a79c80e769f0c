//! Filter policies applied to spans as read: the configuration's conditions
//! with their attribute keys resolved to the wire reader's slots once, so a
//! span is judged without a string comparison of keys.

use crate::config::filter::{Condition, FilterPolicy, Matcher, PolicyMatch, Target};
use crate::wire::attributes::AttrValue;
use crate::wire::{Batch, KeySet, SpanRec};

/// The compiled policies; empty when none are configured.
#[derive(Debug, Default)]
pub(super) struct SpanFilter {
    policies: Vec<Compiled>,
}

#[derive(Debug)]
struct Compiled {
    include: Option<Vec<Check>>,
    include_any: Option<Vec<Check>>,
    exclude: Option<Vec<Check>>,
}

#[derive(Debug)]
struct Check {
    on: On,
    value: Matcher,
}

#[derive(Debug, Clone, Copy)]
enum On {
    Resource(usize),
    Span(usize),
    Name,
    Status,
    Kind,
}

impl SpanFilter {
    /// Resolves each condition's key to its slot in `keys`, which holds
    /// every key the policies name (see [`KeySet::new`]).
    pub(super) fn new(policies: &[FilterPolicy], keys: &KeySet) -> SpanFilter {
        let checks = |m: &Option<PolicyMatch>| {
            m.as_ref().map(|m| m.conditions.iter().map(|c| Check::new(c, keys)).collect::<Vec<_>>())
        };
        SpanFilter {
            policies: policies
                .iter()
                .map(|p| Compiled {
                    include: checks(&p.include),
                    include_any: checks(&p.include_any),
                    exclude: checks(&p.exclude),
                })
                .collect(),
        }
    }

    pub(super) fn is_empty(&self) -> bool {
        self.policies.is_empty()
    }

    /// Whether `span` takes part: it passes every policy. An `include`
    /// needs all its conditions to hold, an `include_any` one of them, and
    /// an `exclude` rejects the span when all of its conditions hold (an
    /// empty list holds for every span, as in Tempo).
    pub(super) fn keeps(&self, batch: &Batch<'_>, span: &SpanRec) -> bool {
        self.policies.iter().all(|p| {
            p.include.as_ref().is_none_or(|c| c.iter().all(|c| c.holds(batch, span)))
                && p.include_any.as_ref().is_none_or(|c| c.is_empty() || c.iter().any(|c| c.holds(batch, span)))
                && !p.exclude.as_ref().is_some_and(|c| c.iter().all(|c| c.holds(batch, span)))
        })
    }
}

impl Check {
    fn new(c: &Condition, keys: &KeySet) -> Check {
        let slot = |k: &str| keys.find(k.as_bytes()).expect("the key set holds every key a policy names");
        let on = match &c.target {
            Target::Resource(k) => On::Resource(slot(k)),
            Target::Span(k) => On::Span(slot(k)),
            Target::Name => On::Name,
            Target::Status => On::Status,
            Target::Kind => On::Kind,
        };
        Check { on, value: c.value.clone() }
    }

    fn holds(&self, batch: &Batch<'_>, span: &SpanRec) -> bool {
        let attribute = match self.on {
            On::Resource(k) => batch.resource_value(span.resource, k),
            On::Span(k) => batch.span_value(span, k),
            On::Name => return text_matches(&self.value, batch.span_name(span)),
            On::Status => return code_matches(&self.value, span.status, &crate::config::filter::STATUS_NAMES),
            On::Kind => return code_matches(&self.value, span.kind as u8, &crate::config::filter::KIND_NAMES),
        };
        // An attribute the span does not carry matches nothing. One it
        // carries is compared as Tempo reads an OTLP value: as the filter's
        // type, a value of another type reading as that type's zero.
        let Some(v) = attribute else { return false };
        match &self.value {
            Matcher::Str(_) | Matcher::Regex(_) => {
                let s = if let AttrValue::Str(b) = v { b } else { &[][..] };
                text_matches(&self.value, s)
            }
            Matcher::Int(i) => *i == if let AttrValue::Int(x) = v { x } else { 0 },
            Matcher::Double(d) => *d == if let AttrValue::Double(x) = v { x } else { 0.0 },
            Matcher::Bool(b) => *b == matches!(v, AttrValue::Bool(true)),
            Matcher::Code(_) => false,
        }
    }
}

fn text_matches(m: &Matcher, s: &[u8]) -> bool {
    match m {
        Matcher::Str(want) => want.as_bytes() == s,
        Matcher::Regex(p) => p.0.is_match(&String::from_utf8_lossy(s)),
        _ => false,
    }
}

/// A kind or status: strict by number, a regex against its OTLP name.
fn code_matches(m: &Matcher, code: u8, names: &[&str]) -> bool {
    match m {
        Matcher::Code(want) => *want == code,
        Matcher::Regex(p) => match names.get(code as usize) {
            Some(name) => p.0.is_match(name),
            None => p.0.is_match(&code.to_string()),
        },
        _ => false,
    }
}
