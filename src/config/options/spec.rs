//! What an option is: its kind (how its value is written) and its
//! entry in the schema (names, meaning, and how it is read and written).

use crate::config::Config;
use crate::error::Error;
use serde_json::Value;

/// How an option's value is written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// `"tempo"` or `"contrib"`: picks the preset the other options override.
    Preset,
    Bool,
    /// A whole number.
    Count,
    /// A number.
    Number,
    /// A whole number of bytes.
    Bytes,
    /// A duration: `"10s"`, `"1m30s"`, or a number of seconds.
    Duration,
    String,
    /// A string, or null or `""` for none.
    OptionalString,
    StringList,
    /// Histogram bounds: seconds or durations, ascending.
    Buckets,
    /// One of the names given.
    Choice(&'static [&'static str]),
    /// The service catalog, inline (the collector takes a file path).
    Catalog,
    /// A list of filter policies in Tempo's format.
    FilterPolicies,
}

impl Kind {
    /// The name `schema.json` gives the kind.
    pub fn name(self) -> &'static str {
        match self {
            Kind::Preset => "preset",
            Kind::Bool => "bool",
            Kind::Count => "count",
            Kind::Number => "number",
            Kind::Bytes => "bytes",
            Kind::Duration => "duration",
            Kind::String => "string",
            Kind::OptionalString => "optional_string",
            Kind::StringList => "string_list",
            Kind::Buckets => "buckets",
            Kind::Choice(_) => "choice",
            Kind::Catalog => "catalog",
            Kind::FilterPolicies => "filter_policies",
        }
    }
}

/// One option.
pub struct Spec {
    pub key: &'static str,
    /// Other names for the same option (the peers' spellings).
    pub aliases: &'static [&'static str],
    pub kind: Kind,
    /// One line for the README's table.
    pub meaning: &'static str,
    pub(super) set: fn(&mut Config, &str, &Value) -> Result<(), Error>,
    pub(super) get: fn(&Config) -> Value,
}

impl Spec {
    /// Sets the option from its JSON value; `key` is the name it was given
    /// under, for the error.
    pub fn set(&self, config: &mut Config, key: &str, value: &Value) -> Result<(), Error> {
        (self.set)(config, key, value)
    }

    /// The option's value in `config`, as JSON the parser accepts back
    /// (durations in seconds; the catalog as null when empty).
    pub fn get(&self, config: &Config) -> Value {
        (self.get)(config)
    }

    pub(super) fn names(&self) -> impl Iterator<Item = &'static str> {
        std::iter::once(self.key).chain(self.aliases.iter().copied())
    }
}
