//! The service catalog: what traces do not say. Owners, tiers and SLOs per
//! service or per edge, with defaults. Loaded from JSON:
//!
//! ```json
//! {
//!   "defaults": {"availability": 0.99, "latency": {"percentile": 0.99, "threshold": "1s"}, "warn_fraction": 0.8},
//!   "services": {"checkout": {"owner": "team-shop", "tier": "1",
//!                             "slo": {"availability": 0.999, "latency": {"percentile": 0.9, "threshold": "300ms"}}}},
//!   "edges": [{"client": "checkout", "server": "payment", "slo": {"availability": 0.9995}}]
//! }
//! ```
//! An SLO may leave out any field; the default fills it in.

use super::duration;
use crate::error::Error;
use serde_json::{Map, Value};
use std::collections::HashMap;

/// The verdict of an objective on the traffic it judges.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Health {
    /// No traffic in the window.
    Unknown,
    Green,
    Yellow,
    Red,
}

impl Health {
    pub fn as_str(self) -> &'static str {
        match self {
            Health::Unknown => "unknown",
            Health::Green => "green",
            Health::Yellow => "yellow",
            Health::Red => "red",
        }
    }

    pub fn is_unhealthy(self) -> bool {
        matches!(self, Health::Yellow | Health::Red)
    }
}

/// An availability objective and a latency objective at a percentile.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Slo {
    /// Share of requests that must succeed, e.g. 0.999.
    pub availability: f64,
    /// Which latency percentile is held to the threshold, e.g. 0.99.
    pub latency_percentile: f64,
    /// Latency threshold in seconds.
    pub latency_threshold_s: f64,
    /// Yellow from this fraction of the error budget or of the latency threshold.
    pub warn_fraction: f64,
}

impl Default for Slo {
    fn default() -> Self {
        Slo { availability: 0.99, latency_percentile: 0.99, latency_threshold_s: 1.0, warn_fraction: 0.8 }
    }
}

impl Slo {
    /// Health of traffic with this error rate and latency at the percentile,
    /// without the explanation (cheaper: no strings).
    pub fn health(&self, error_rate: f64, latency: Option<f64>) -> Health {
        let budget = (1.0 - self.availability).max(0.0);
        let errors = if error_rate > budget {
            Health::Red
        } else if budget > 0.0 && error_rate > self.warn_fraction * budget {
            Health::Yellow
        } else {
            Health::Green
        };
        let latency = match latency {
            Some(l) if l > self.latency_threshold_s => Health::Red,
            Some(l) if l > self.warn_fraction * self.latency_threshold_s => Health::Yellow,
            _ => Health::Green,
        };
        errors.max(latency)
    }

    /// Health of traffic with this error rate and latency at the percentile,
    /// and why, for people.
    pub fn judge(&self, error_rate: f64, latency: Option<f64>) -> (Health, String) {
        use std::fmt::Write;
        let budget = (1.0 - self.availability).max(0.0);
        let mut health = Health::Green;
        let mut reason = String::new();
        if error_rate > budget {
            health = Health::Red;
            let _ = write!(reason, "error rate {} over the budget {}", Pct(error_rate), Pct(budget));
        } else if budget > 0.0 && error_rate > self.warn_fraction * budget {
            health = Health::Yellow;
            let _ = write!(reason, "error rate {} near the budget {}", Pct(error_rate), Pct(budget));
        }
        if let Some(l) = latency {
            let (p, threshold) = (self.latency_percentile * 100.0, Secs(self.latency_threshold_s));
            let sep = if reason.is_empty() { "" } else { "; " };
            if l > self.latency_threshold_s {
                health = Health::Red;
                let _ = write!(reason, "{sep}p{p} {} over {threshold}", Secs(l));
            } else if l > self.warn_fraction * self.latency_threshold_s {
                health = health.max(Health::Yellow);
                let _ = write!(reason, "{sep}p{p} {} near {threshold}", Secs(l));
            }
        }
        (health, reason)
    }
}

/// A fraction as a percentage with two decimals.
struct Pct(f64);

impl std::fmt::Display for Pct {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:.2}%", self.0 * 100.0)
    }
}

/// Seconds as milliseconds below one second.
struct Secs(f64);

impl std::fmt::Display for Secs {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let v = self.0;
        if v < 1.0 { write!(f, "{:.1}ms", v * 1000.0) } else { write!(f, "{v:.2}s") }
    }
}

/// What the catalog says about one service.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ServiceEntry {
    pub owner: String,
    pub tier: String,
    /// A service-level SLO: the node is judged on all its incoming traffic
    /// instead of on its worst incoming edge.
    pub slo: Option<Slo>,
}

#[derive(Debug, Clone, Default, PartialEq)]
pub struct Catalog {
    pub defaults: Slo,
    services: HashMap<String, ServiceEntry>,
    edges: HashMap<(String, String), Slo>,
}

impl Catalog {
    pub fn service(&self, name: &str) -> Option<&ServiceEntry> {
        self.services.get(name)
    }

    /// The SLO of an edge: its own, else its server's, else the default.
    pub fn edge_slo(&self, client: &str, server: &str) -> Slo {
        if !self.edges.is_empty() {
            if let Some(s) = self.edges.get(&(client.to_string(), server.to_string())) {
                return *s;
            }
        }
        self.services.get(server).and_then(|e| e.slo).unwrap_or(self.defaults)
    }

    pub fn from_json(text: &[u8]) -> Result<Catalog, Error> {
        let v: Value =
            serde_json::from_slice(text).map_err(|e| Error::config("catalog", format!("not valid JSON: {e}")))?;
        let Value::Object(top) = v else { return Err(Error::config("catalog", "expected a JSON object")) };
        let mut c = Catalog::default();
        for (k, v) in &top {
            match k.as_str() {
                "defaults" => c.defaults = slo("catalog.defaults", v, Slo::default())?,
                "services" => {
                    let Value::Object(m) = v else {
                        return Err(Error::config("catalog.services", "expected an object"));
                    };
                    for (name, entry) in m {
                        let key = format!("catalog.services.{name}");
                        c.services.insert(name.clone(), service(&key, entry)?);
                    }
                }
                "edges" => {
                    let Value::Array(list) = v else { return Err(Error::config("catalog.edges", "expected a list")) };
                    for (i, e) in list.iter().enumerate() {
                        let key = format!("catalog.edges[{i}]");
                        let Value::Object(m) = e else { return Err(Error::config(key, "expected an object")) };
                        let name = |f: &str| {
                            m.get(f)
                                .and_then(Value::as_str)
                                .map(str::to_string)
                                .ok_or_else(|| Error::config(format!("{key}.{f}"), "expected a service name"))
                        };
                        let (client, server) = (name("client")?, name("server")?);
                        let s = slo(&format!("{key}.slo"), m.get("slo").unwrap_or(&Value::Null), unset())?;
                        c.edges.insert((client, server), s);
                    }
                }
                other => return Err(Error::config(format!("catalog.{other}"), "unknown key")),
            }
        }
        // Fields an SLO left out come from the defaults.
        let d = c.defaults;
        for e in c.services.values_mut() {
            if let Some(s) = e.slo.as_mut() {
                fill(s, &d);
            }
        }
        for s in c.edges.values_mut() {
            fill(s, &d);
        }
        Ok(c)
    }
}

/// Marks a field "unset" with NaN while parsing; `fill` replaces it.
fn fill(s: &mut Slo, d: &Slo) {
    if s.availability.is_nan() {
        s.availability = d.availability;
    }
    if s.latency_percentile.is_nan() {
        s.latency_percentile = d.latency_percentile;
    }
    if s.latency_threshold_s.is_nan() {
        s.latency_threshold_s = d.latency_threshold_s;
    }
    if s.warn_fraction.is_nan() {
        s.warn_fraction = d.warn_fraction;
    }
}

fn service(key: &str, v: &Value) -> Result<ServiceEntry, Error> {
    let Value::Object(m) = v else { return Err(Error::config(key, "expected an object")) };
    let mut e = ServiceEntry::default();
    for (k, v) in m {
        let key = format!("{key}.{k}");
        match k.as_str() {
            "owner" | "tier" => {
                let s = match v {
                    Value::String(s) => s.clone(),
                    Value::Number(n) => n.to_string(),
                    _ => return Err(Error::config(key, "expected a string")),
                };
                if k == "owner" { e.owner = s } else { e.tier = s }
            }
            "slo" => e.slo = Some(slo(&key, v, unset())?),
            _ => return Err(Error::config(key, "unknown key")),
        }
    }
    Ok(e)
}

fn unset() -> Slo {
    Slo { availability: f64::NAN, latency_percentile: f64::NAN, latency_threshold_s: f64::NAN, warn_fraction: f64::NAN }
}

fn fraction(key: &str, v: &Value) -> Result<f64, Error> {
    match v.as_f64() {
        Some(f) if f > 0.0 && f <= 1.0 => Ok(f),
        _ => Err(Error::config(key, format!("expected a number in (0, 1], got {v}"))),
    }
}

fn slo(key: &str, v: &Value, base: Slo) -> Result<Slo, Error> {
    let mut s = if v.is_null() { unset() } else { base };
    if v.is_null() {
        return Ok(s);
    }
    let Value::Object(m) = v else { return Err(Error::config(key, "expected an object")) };
    let m: &Map<String, Value> = m;
    for (k, v) in m {
        let key = format!("{key}.{k}");
        match k.as_str() {
            "availability" => s.availability = fraction(&key, v)?,
            "warn_fraction" => s.warn_fraction = fraction(&key, v)?,
            "latency" => {
                let Value::Object(l) = v else { return Err(Error::config(key, "expected an object")) };
                for (lk, lv) in l {
                    let lkey = format!("{key}.{lk}");
                    match lk.as_str() {
                        "percentile" => s.latency_percentile = fraction(&lkey, lv)?,
                        "threshold" => s.latency_threshold_s = duration(&lkey, lv)?.as_secs_f64(),
                        _ => return Err(Error::config(lkey, "unknown key")),
                    }
                }
            }
            _ => return Err(Error::config(key, "unknown key")),
        }
    }
    Ok(s)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slo_judgement() {
        let slo = Slo { availability: 0.99, latency_percentile: 0.99, latency_threshold_s: 0.5, warn_fraction: 0.8 };
        assert_eq!(slo.judge(0.0, Some(0.1)).0, Health::Green);
        assert_eq!(slo.judge(0.009, Some(0.1)), (Health::Yellow, "error rate 0.90% near the budget 1.00%".into()));
        assert_eq!(slo.judge(0.02, Some(0.1)).0, Health::Red);
        assert_eq!(slo.judge(0.0, Some(0.45)), (Health::Yellow, "p99 450.0ms near 500.0ms".into()));
        assert_eq!(slo.judge(0.0, Some(0.6)).0, Health::Red);
        for (e, l) in [(0.0, Some(0.1)), (0.009, Some(0.1)), (0.02, None), (0.0, Some(0.45)), (0.009, Some(0.6))] {
            assert_eq!(slo.health(e, l), slo.judge(e, l).0, "{e} {l:?}");
        }
    }

    #[test]
    fn catalog_layers_edge_service_default() {
        let c = Catalog::from_json(
            br#"{"defaults":{"availability":0.9},
                 "services":{"pay":{"owner":"team-pay","tier":1,"slo":{"latency":{"threshold":"200ms"}}}},
                 "edges":[{"client":"a","server":"pay","slo":{"availability":0.999}}]}"#,
        )
        .unwrap();
        assert_eq!(c.edge_slo("a", "pay").availability, 0.999);
        let s = c.edge_slo("b", "pay");
        assert_eq!((s.availability, s.latency_threshold_s), (0.9, 0.2));
        assert_eq!(c.edge_slo("b", "other").availability, 0.9);
        assert_eq!(c.service("pay").unwrap().tier, "1");
    }

    #[test]
    fn catalog_errors_name_the_key() {
        let e = Catalog::from_json(br#"{"services":{"pay":{"slo":{"availability":2}}}}"#).unwrap_err();
        assert!(e.to_string().starts_with("config key `catalog.services.pay.slo.availability`"), "{e}");
        let e = Catalog::from_json(br#"{"edges":[{"client":"a"}]}"#).unwrap_err();
        assert!(e.to_string().starts_with("config key `catalog.edges[0].server`"), "{e}");
    }
}
