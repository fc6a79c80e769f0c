//! `servicemap serve --prometheus URL`: the map page and its `/api/*`, as
//! the collector's processor serves them, over the map a store holds.

use super::remote::{parse_time, unix_ns};
use serde_json::{Value, json};
use servicemap::Error;
use servicemap::map::query::answer;
use servicemap::map::render;
use servicemap::prometheus::Store;
use std::time::SystemTime;
use tiny_http::{Header, Method, Response, Server};

/// The page the collector serves, the same file.
const PAGE: &str = include_str!("../../../go-shim/internal/web/index.html");

/// Serves until the process is stopped. Prints the address it listens on
/// (useful with port 0) to standard error.
pub fn serve(store: &Store, listen: &str) -> Result<(), String> {
    let server = Server::http(listen).map_err(|e| format!("cannot listen on {listen}: {e}"))?;
    let addr = server.server_addr().to_ip().map(|a| a.to_string()).unwrap_or_else(|| listen.to_string());
    eprintln!("servicemap: serving the map from the store on http://{addr}/");
    for request in server.incoming_requests() {
        let (status, content_type, body) = if *request.method() != Method::Get {
            (405, "text/plain; charset=utf-8", b"only GET\n".to_vec())
        } else {
            route(store, request.url(), unix_ns(SystemTime::now()))
        };
        let header = Header::from_bytes("Content-Type", content_type).expect("a valid header");
        // A client that went away is not an error of the server's.
        let _ = request.respond(Response::from_data(body).with_status_code(status).with_header(header));
    }
    Ok(())
}

/// One GET: status, content type, body.
fn route(store: &Store, url: &str, now_ns: u64) -> (u16, &'static str, Vec<u8>) {
    let (path, query) = url.split_once('?').unwrap_or((url, ""));
    let param = |name: &str| -> Option<String> {
        query.split('&').filter_map(|kv| kv.split_once('=')).find(|(k, _)| *k == name).map(|(_, v)| decode(v))
    };
    const JSON: &str = "application/json";
    let ask = |req: Value| match answer(store, &serde_json::to_vec(&req).unwrap_or_default(), now_ns) {
        Ok(v) => (200, JSON, serde_json::to_vec(&v).unwrap_or_default()),
        Err(e) => failure(&e),
    };
    let view = || store.view(now_ns, true);
    match path {
        "/" => (200, "text/html; charset=utf-8", PAGE.as_bytes().to_vec()),
        "/api/graph" => view().map(|v| (200, JSON, render::graph_json(&v))).unwrap_or_else(|e| failure(&e)),
        "/graph.dot" => view()
            .map(|v| (200, "text/vnd.graphviz; charset=utf-8", render::dot(&v).into_bytes()))
            .unwrap_or_else(|e| failure(&e)),
        "/graph.mmd" => view()
            .map(|v| (200, "text/plain; charset=utf-8", render::mermaid(&v).into_bytes()))
            .unwrap_or_else(|e| failure(&e)),
        "/api/impact" => match param("service").filter(|s| !s.is_empty()) {
            Some(service) => ask(json!({"query": "impact", "service": service})),
            None => bad("the service parameter is required, as in /api/impact?service=checkout"),
        },
        "/api/root_causes" => ask(json!({"query": "root_causes"})),
        "/api/recovery_order" => ask(json!({"query": "recovery_order"})),
        "/api/history" => ask(json!({"query": "history"})),
        "/api/diff" => {
            let time = |k: &str| param(k).filter(|v| !v.is_empty()).map(|v| parse_time(&v, now_ns).ok_or(v));
            match (time("from"), time("to")) {
                (None, _) => bad("the from parameter is required, as in /api/diff?from=1h (an hour ago)"),
                (Some(Err(v)), _) | (_, Some(Err(v))) => {
                    bad(&format!("{v:?} is not an RFC 3339 time, Unix seconds or a duration before now"))
                }
                (Some(Ok(from)), to) => ask(json!({"query": "diff", "from": from, "to": to.and_then(Result::ok)})),
            }
        }
        _ => (404, "text/plain; charset=utf-8", b"not found\n".to_vec()),
    }
}

fn bad(message: &str) -> (u16, &'static str, Vec<u8>) {
    (400, "text/plain; charset=utf-8", format!("{message}\n").into_bytes())
}

/// A store that cannot answer is a bad gateway; a bad question is the asker's.
fn failure(e: &Error) -> (u16, &'static str, Vec<u8>) {
    let status = match e {
        Error::Store(_) => 502,
        _ => 400,
    };
    (status, "text/plain; charset=utf-8", format!("{e}\n").into_bytes())
}

/// Percent-decoding of a query parameter (`+` is a space).
fn decode(v: &str) -> String {
    let b = v.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < b.len() && u8::from_str_radix(v.get(i + 1..i + 3).unwrap_or("zz"), 16).is_ok() => {
                out.push(u8::from_str_radix(&v[i + 1..i + 3], 16).unwrap_or(b'?'));
                i += 2;
            }
            c => out.push(c),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::decode;

    #[test]
    fn query_parameters_are_decoded() {
        assert_eq!(decode("pg%2Dmain+db"), "pg-main db");
        assert_eq!(decode("100%"), "100%");
        assert_eq!(decode("a%zzb"), "a%zzb");
    }
}
