//! The service-map queries (`impact`, `root_causes`, `recovery_order`,
//! `history`, `diff`), answered the same way whatever holds the map: the
//! engine's live graph, or a metrics store the map is read back from.

use super::history::{self, Snapshot};
use super::{Catalog, History, View, impact, render};
use crate::error::Error;
use serde_json::{Value, json};
use std::borrow::Cow;

/// Where a query's map comes from.
pub trait Source {
    /// The map at `at_ns`, with health. `reasons`: whether edges explain
    /// their health (queries do not need it).
    fn view(&self, at_ns: u64, reasons: bool) -> Result<View, Error>;
    /// The snapshots a surge is measured against, up to `at_ns`.
    fn history(&self, at_ns: u64) -> Result<Cow<'_, History>, Error>;
    /// The snapshot of the map at `at_ns`, or None when there is none.
    fn snapshot_at(&self, at_ns: u64) -> Result<Option<Snapshot>, Error>;
    /// The times of the snapshots `diff` can start from.
    fn snapshot_times(&self, at_ns: u64) -> Result<Vec<u64>, Error>;
    fn catalog(&self) -> &Catalog;
}

/// Answers a query given as JSON: `{"query":"impact","service":NAME}`,
/// `{"query":"root_causes"}`, `{"query":"recovery_order"}`,
/// `{"query":"diff","from":UNIX_NANO,"to":UNIX_NANO}` (`to` defaults to
/// now) or `{"query":"history"}`.
pub fn answer(source: &dyn Source, request: &[u8], now_ns: u64) -> Result<Value, Error> {
    let bad = |m: &str| Error::Argument(format!("query: {m}"));
    let req: Value = serde_json::from_slice(request).map_err(|e| bad(&format!("not valid JSON: {e}")))?;
    let time = |k: &str| -> Result<Option<u64>, Error> {
        match req.get(k) {
            None | Some(Value::Null) => Ok(None),
            Some(v) => v.as_u64().map(Some).ok_or_else(|| bad(&format!("`{k}` must be unix nanoseconds"))),
        }
    };
    match req.get("query").and_then(Value::as_str) {
        Some("impact") => {
            let service = req.get("service").and_then(Value::as_str).ok_or_else(|| bad("`service` is required"))?;
            let view = source.view(now_ns, false)?;
            let history = source.history(now_ns)?;
            Ok(render::impact_json(&impact::impact(&view, &history, source.catalog(), service)))
        }
        Some("root_causes") => Ok(json!({"root_causes": impact::root_causes(&source.view(now_ns, false)?)})),
        Some("recovery_order") => {
            let steps = impact::recovery_order(&source.view(now_ns, false)?);
            let flat: Vec<String> = steps.iter().flat_map(|s| s.services.clone()).collect();
            Ok(json!({"recovery_order": flat, "recovery_steps": render::steps_json(&steps)}))
        }
        Some("history") => Ok(json!({"snapshots_unix_nano": source.snapshot_times(now_ns)?})),
        Some("diff") => {
            let from = time("from")?.ok_or_else(|| bad("`from` is required"))?;
            let a = source.snapshot_at(from)?.ok_or_else(|| bad("no snapshot has been taken yet"))?;
            let b = match time("to")? {
                Some(t) if t < now_ns => source.snapshot_at(t)?.unwrap_or_default(),
                _ => Snapshot::of(&source.view(now_ns, false)?),
            };
            Ok(render::diff_json(&history::diff(&a, &b)))
        }
        _ => Err(bad("`query` must be one of impact, root_causes, recovery_order, diff, history")),
    }
}
