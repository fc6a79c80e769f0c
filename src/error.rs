//! Error types. Every error says what was wrong and where, so that a message
//! that crosses the C boundary or reaches a collector log is useful on its own.

use std::fmt;

/// Why a call into the engine failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Error {
    /// The configuration is invalid. `key` names the offending key.
    Config { key: String, message: String },
    /// A trace batch could not be decoded. Nothing from it was applied.
    Decode(DecodeError),
    /// An argument outside the protobuf payload was invalid.
    Argument(String),
    /// The metrics store the map is read back from (a Prometheus HTTP API)
    /// could not be reached or refused a query; the message says which.
    Store(String),
}

impl Error {
    pub(crate) fn config(key: impl Into<String>, message: impl Into<String>) -> Error {
        Error::Config { key: key.into(), message: message.into() }
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Config { key, message } => write!(f, "config key `{key}`: {message}"),
            Error::Decode(e) => write!(f, "{e}"),
            Error::Argument(m) => write!(f, "invalid argument: {m}"),
            Error::Store(m) => write!(f, "metrics store: {m}"),
        }
    }
}

impl std::error::Error for Error {}

impl From<DecodeError> for Error {
    fn from(e: DecodeError) -> Error {
        Error::Decode(e)
    }
}

/// A protobuf batch that could not be read, with the byte offset where
/// reading stopped and the message path being read at that point.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DecodeError {
    pub offset: usize,
    pub path: &'static str,
    pub reason: &'static str,
}

impl fmt::Display for DecodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "malformed OTLP traces batch at byte {} in {}: {}", self.offset, self.path, self.reason)
    }
}

impl std::error::Error for DecodeError {}
