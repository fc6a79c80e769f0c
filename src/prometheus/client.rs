//! A client of the Prometheus HTTP API (`/api/v1/query`, `/api/v1/query_range`),
//! which Mimir, Thanos, VictoriaMetrics and Cortex serve too. Queries go as
//! POSTed forms, so a long expression never meets a URL length limit.

use crate::error::Error;
use serde_json::Value;
use std::collections::BTreeMap;
use std::time::Duration;

/// One series of an instant query's answer.
#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    pub labels: BTreeMap<String, String>,
    pub value: f64,
}

/// One series of a range query's answer: (unix seconds, value) points.
#[derive(Debug, Clone, PartialEq)]
pub struct Series {
    pub labels: BTreeMap<String, String>,
    pub points: Vec<(f64, f64)>,
}

/// The exemplars of one series (`/api/v1/query_exemplars`): each one's
/// labels and value.
#[derive(Debug, Clone, PartialEq)]
pub struct ExemplarSeries {
    pub labels: BTreeMap<String, String>,
    pub exemplars: Vec<(BTreeMap<String, String>, f64)>,
}

/// Where the store is and how to ask it.
#[derive(Debug, Clone)]
pub struct Client {
    base: String,
    headers: Vec<(String, String)>,
    agent: ureq::Agent,
}

impl Client {
    /// A client of the API under `base` (`http://prometheus:9090`, or with a
    /// path prefix such as `https://mimir/prometheus`). `headers` go with
    /// every request (authorization, `X-Scope-OrgID`); `timeout` bounds each.
    pub fn new(base: &str, headers: Vec<(String, String)>, timeout: Duration) -> Result<Client, Error> {
        if !(base.starts_with("http://") || base.starts_with("https://")) {
            return Err(Error::Store(format!("`{base}` is not an http:// or https:// URL")));
        }
        let agent = ureq::Agent::config_builder()
            .timeout_global(Some(timeout))
            .http_status_as_error(false)
            .user_agent(concat!("servicemap/", env!("CARGO_PKG_VERSION")))
            .build()
            .into();
        Ok(Client { base: base.trim_end_matches('/').to_string(), headers, agent })
    }

    /// Evaluates `expr` at `at_s` (unix seconds): an instant vector.
    pub fn query(&self, expr: &str, at_s: f64) -> Result<Vec<Sample>, Error> {
        let data = self.call("query", expr, &[("time", seconds(at_s))])?;
        let result = data.get("result").and_then(Value::as_array).map(Vec::as_slice).unwrap_or_default();
        match data.get("resultType").and_then(Value::as_str) {
            Some("vector") => {
                result.iter().map(|s| Ok(Sample { labels: labels(s), value: point(s.get("value"), expr)?.1 })).collect()
            }
            other => Err(Error::Store(format!(
                "`{expr}` gave a {} result, not an instant vector",
                other.unwrap_or("missing")
            ))),
        }
    }

    /// Evaluates `expr` from `start_s` to `end_s` every `step_s` seconds.
    pub fn query_range(&self, expr: &str, start_s: f64, end_s: f64, step_s: f64) -> Result<Vec<Series>, Error> {
        let params = [("start", seconds(start_s)), ("end", seconds(end_s)), ("step", seconds(step_s))];
        let data = self.call("query_range", expr, &params)?;
        let result = data.get("result").and_then(Value::as_array).map(Vec::as_slice).unwrap_or_default();
        if data.get("resultType").and_then(Value::as_str) != Some("matrix") {
            return Err(Error::Store(format!("`{expr}` over a range did not give a matrix")));
        }
        result
            .iter()
            .map(|s| {
                let values = s.get("values").and_then(Value::as_array).map(Vec::as_slice).unwrap_or_default();
                let points = values.iter().map(|v| point(Some(v), expr)).collect::<Result<_, _>>()?;
                Ok(Series { labels: labels(s), points })
            })
            .collect()
    }

    /// The exemplars of the series `expr` selects, from `start_s` to `end_s`.
    /// A store without exemplar storage answers with none.
    pub fn exemplars(&self, expr: &str, start_s: f64, end_s: f64) -> Result<Vec<ExemplarSeries>, Error> {
        let data = self.call("query_exemplars", expr, &[("start", seconds(start_s)), ("end", seconds(end_s))])?;
        let strings = |v: Option<&Value>| -> BTreeMap<String, String> {
            let map = v.and_then(Value::as_object);
            map.into_iter().flatten().map(|(k, v)| (k.clone(), v.as_str().unwrap_or_default().to_string())).collect()
        };
        let series = data.as_array().map(Vec::as_slice).unwrap_or_default();
        Ok(series
            .iter()
            .map(|s| {
                let list = s.get("exemplars").and_then(Value::as_array).map(Vec::as_slice).unwrap_or_default();
                let exemplars = list
                    .iter()
                    .filter_map(|x| {
                        let value = x.get("value").and_then(Value::as_str)?.parse().ok()?;
                        Some((strings(x.get("labels")), value))
                    })
                    .collect();
                ExemplarSeries { labels: strings(s.get("seriesLabels")), exemplars }
            })
            .collect())
    }

    /// POSTs one query and returns the answer's `data`, or the store's own
    /// words for why it refused.
    fn call(&self, endpoint: &str, expr: &str, params: &[(&str, String)]) -> Result<Value, Error> {
        let url = format!("{}/api/v1/{endpoint}", self.base);
        let mut request = self.agent.post(&url);
        for (k, v) in &self.headers {
            request = request.header(k, v);
        }
        let mut form: Vec<(&str, &str)> = vec![("query", expr)];
        form.extend(params.iter().map(|(k, v)| (*k, v.as_str())));
        let mut response = request.send_form(form).map_err(|e| Error::Store(format!("cannot reach {url}: {e}")))?;
        let status = response.status().as_u16();
        let body = response
            .body_mut()
            .with_config()
            .limit(256 << 20)
            .read_to_string()
            .map_err(|e| Error::Store(format!("{url}: reading the answer: {e}")))?;
        let answer: Value = serde_json::from_str(&body).map_err(|_| {
            let start: String = body.chars().take(200).collect();
            Error::Store(format!(
                "{url} answered HTTP {status} with something other than the Prometheus API's JSON: {start}"
            ))
        })?;
        if answer.get("status").and_then(Value::as_str) != Some("success") {
            let kind = answer.get("errorType").and_then(Value::as_str).unwrap_or("error");
            let why = answer.get("error").and_then(Value::as_str).unwrap_or("no reason given");
            return Err(Error::Store(format!("{url} refused `{expr}` (HTTP {status}, {kind}): {why}")));
        }
        answer.get("data").cloned().ok_or_else(|| Error::Store(format!("{url}: the answer has no `data`")))
    }
}

fn seconds(s: f64) -> String {
    format!("{s:.3}")
}

fn labels(series: &Value) -> BTreeMap<String, String> {
    let metric = series.get("metric").and_then(Value::as_object);
    metric.into_iter().flatten().map(|(k, v)| (k.clone(), v.as_str().unwrap_or_default().to_string())).collect()
}

/// `[unix_seconds, "value"]`; values are strings so that NaN and ±Inf survive JSON.
fn point(v: Option<&Value>, expr: &str) -> Result<(f64, f64), Error> {
    let bad = || Error::Store(format!("`{expr}`: a sample is not [time, \"value\"]"));
    let pair = v.and_then(Value::as_array).filter(|p| p.len() == 2).ok_or_else(bad)?;
    let t = pair[0].as_f64().ok_or_else(bad)?;
    let value = match pair[1].as_str().ok_or_else(bad)? {
        "NaN" => f64::NAN,
        "+Inf" => f64::INFINITY,
        "-Inf" => f64::NEG_INFINITY,
        s => s.parse().map_err(|_| bad())?,
    };
    Ok((t, value))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn points_keep_nan_and_infinities() {
        let p = |s: &str| point(Some(&serde_json::json!([1700000000.5, s])), "x").unwrap();
        assert_eq!(p("0.25"), (1700000000.5, 0.25));
        assert!(p("NaN").1.is_nan());
        assert_eq!(p("+Inf").1, f64::INFINITY);
        assert_eq!(p("-Inf").1, f64::NEG_INFINITY);
        assert!(point(Some(&serde_json::json!([1, 2])), "x").is_err());
    }

    #[test]
    fn only_http_urls() {
        let e = Client::new("localhost:9090", vec![], Duration::from_secs(1)).unwrap_err();
        assert_eq!(e.to_string(), "metrics store: `localhost:9090` is not an http:// or https:// URL");
    }
}
