//! Span kinds, as OTLP numbers them and as the peers name them.

/// Span kinds as numbered in OTLP.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum SpanKind {
    Unspecified = 0,
    Internal = 1,
    Server = 2,
    Client = 3,
    Producer = 4,
    Consumer = 5,
}

impl SpanKind {
    pub(super) fn from_wire(v: u64) -> SpanKind {
        match v {
            1 => SpanKind::Internal,
            2 => SpanKind::Server,
            3 => SpanKind::Client,
            4 => SpanKind::Producer,
            5 => SpanKind::Consumer,
            _ => SpanKind::Unspecified,
        }
    }

    /// Whether spans of this kind take part in pairing (INTERNAL and
    /// UNSPECIFIED do not).
    #[inline]
    pub fn pairs(self) -> bool {
        !matches!(self, SpanKind::Internal | SpanKind::Unspecified)
    }

    /// The OTLP name, as the peers write it in the `unmatched_span_kind` label.
    pub fn otel_name(self) -> &'static str {
        crate::config::filter::KIND_NAMES[self as usize]
    }
}
