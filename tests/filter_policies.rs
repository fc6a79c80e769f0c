//! Filter policies: which spans are left out, and that a span left out takes
//! its other side with it (Tempo's dropped-side cache), with exact counts.

mod common;
use common::*;
use opentelemetry_proto::tonic::trace::v1::Span;

const TOTAL: &str = "traces_service_graph_request_total";

fn policies(json: &str) -> String {
    format!(r#"{{"filter_policies":{json}}}"#)
}

fn exclude_service(service: &str) -> String {
    policies(&format!(
        r#"[{{"exclude":{{"match_type":"strict","attributes":[{{"key":"resource.service.name","value":"{service}"}}]}}}}]"#
    ))
}

fn client(t: u8, service: &str) -> Vec<u8> {
    batch(vec![resource(Some(service), vec![], vec![span(CLIENT, trace(t), sid(1), None, T0, T0 + 2 * SEC)])])
}

fn server(t: u8, service: &str) -> Vec<u8> {
    batch(vec![resource(Some(service), vec![], vec![span(SERVER, trace(t), sid(2), Some(sid(1)), T0, T0 + SEC)])])
}

/// The request total of every edge, by `client→server`.
fn totals(e: &servicemap::Engine) -> Vec<(String, f64)> {
    scrape(e, T0)
        .into_iter()
        .filter(|(k, _)| k.starts_with(&format!("{TOTAL}{{")))
        .map(|(k, v)| {
            let label =
                |name: &str| k.split(&format!("{name}=\"")).nth(1).unwrap().split('"').next().unwrap().to_string();
            (format!("{}→{}", label("client"), label("server")), v)
        })
        .collect()
}

/// Tempo's `droppedEdgesMetric` cases: with svc-a excluded, a client of
/// svc-a and a server of svc-b pair in either order to one dropped edge,
/// and nothing waits, expires or becomes a virtual node.
#[test]
fn a_filtered_side_drops_its_other_side_in_either_order() {
    for client_first in [true, false] {
        let e = engine(&exclude_service("svc-a"));
        let (first, second) = if client_first {
            (client(1, "svc-a"), server(1, "svc-b"))
        } else {
            (server(1, "svc-b"), client(1, "svc-a"))
        };
        e.consume(&first, T0).unwrap();
        e.consume(&second, T0).unwrap();
        e.expire_all(T0 + 60 * SEC);
        let s = e.stats();
        assert_eq!(
            (s.spans_filtered, s.edges_dropped_by_filter, s.waiting, s.edges_expired, s.edges_virtual, s.edges_new),
            (1, 1, 0, 0, 0, if client_first { 0 } else { 1 }),
            "client_first={client_first}"
        );
        assert_eq!(totals(&e), vec![], "client_first={client_first}");
        let m = scrape(&e, T0);
        assert!(!m.keys().any(|k| k.contains("unpaired")), "no unpaired span counted: {m:?}");
    }
}

/// A root server span waits for no one, so filtering it leaves no marker;
/// a filtered client's marker lasts the store's wait and then goes.
#[test]
fn markers_last_as_long_as_an_edge_waits() {
    let e = engine(&exclude_service("svc-a"));
    e.consume(
        &batch(vec![resource(Some("svc-a"), vec![], vec![span(SERVER, trace(1), sid(2), None, T0, T0 + SEC)])]),
        T0,
    )
    .unwrap();
    assert_eq!((e.stats().spans_filtered, e.stats().dropped_sides), (1, 0));

    e.consume(&client(2, "svc-a"), T0).unwrap();
    assert_eq!(e.stats().dropped_sides, 1);
    e.expire(T0 + 9 * SEC);
    assert_eq!(e.stats().dropped_sides, 1, "the 10 s wait has not passed");
    e.expire(T0 + 10 * SEC);
    assert_eq!(e.stats().dropped_sides, 0);
    // The server that comes after the marker went now waits, and expires unpaired.
    e.consume(&server(2, "svc-b"), T0 + 11 * SEC).unwrap();
    assert_eq!((e.stats().waiting, e.stats().edges_dropped_by_filter), (1, 0));
}

/// Markers are capped at `max_items` and counted past it, and they take no
/// room from the pairing store: a flood of filtered spans never keeps a
/// real request from pairing.
#[test]
fn markers_are_capped_apart_from_the_store() {
    let e = engine(&format!(r#"{{"max_items":2,{}"#, &exclude_service("junk")[1..]));
    for t in 1..=5 {
        e.consume(&client(t, "junk"), T0).unwrap();
    }
    let s = e.stats();
    assert_eq!((s.spans_filtered, s.dropped_sides, s.overflow.dropped_sides), (5, 2, 3));
    e.consume(&client(9, "shop"), T0).unwrap();
    e.consume(&server(9, "payments"), T0).unwrap();
    assert_eq!(totals(&e), vec![("shop→payments".to_string(), 1.0)]);
    assert_eq!(e.stats().spans_dropped, 0);
}

fn named(mut sp: Span, name: &str) -> Span {
    sp.name = name.into();
    sp
}

/// Each kind of condition, on one batch of four requests from `shop`:
/// GET /health, POST /orders (failed on both sides; the client span has
/// http.status_code=500 and retry=true), GET /orders, and a call to `db`.
/// A policy applies to both sides of a request, servers included.
#[test]
fn conditions_on_names_status_kinds_and_typed_attributes() {
    let requests = || {
        let calls = vec![
            named(span(CLIENT, trace(1), sid(1), None, T0, T0 + SEC), "GET /health"),
            with_attrs(
                failed(named(span(CLIENT, trace(2), sid(1), None, T0, T0 + SEC), "POST /orders")),
                vec![i("http.status_code", 500), b("retry", true)],
            ),
            named(span(CLIENT, trace(3), sid(1), None, T0, T0 + SEC), "GET /orders"),
            span(CLIENT, trace(4), sid(1), None, T0, T0 + SEC),
        ];
        let server = |t: u8| span(SERVER, trace(t), sid(2), Some(sid(1)), T0, T0 + SEC);
        let web = vec![server(1), failed(server(2)), server(3)];
        batch(vec![
            resource(Some("shop"), vec![], calls),
            resource(Some("web"), vec![], web),
            resource(Some("db"), vec![], vec![server(4)]),
        ])
    };
    let attr = |key: &str, value: &str| format!(r#"{{"key":"{key}","value":{value}}}"#);
    let one = |part: &str, match_type: &str, attrs: &[String]| {
        policies(&format!(r#"[{{"{part}":{{"match_type":"{match_type}","attributes":[{}]}}}}]"#, attrs.join(",")))
    };
    // (config, shop→web requests left, shop→db requests left)
    let cases = [
        (one("exclude", "strict", &[attr("name", "\"GET /health\"")]), 2.0, 1.0),
        (one("exclude", "regex", &[attr("name", "\"^GET \"")]), 1.0, 1.0),
        (one("include", "strict", &[attr("status", "\"STATUS_CODE_ERROR\"")]), 1.0, 0.0),
        (one("exclude", "regex", &[attr("status", "\"ERROR$\"")]), 2.0, 1.0),
        (one("exclude", "strict", &[attr("span.http.status_code", "500"), attr("span.retry", "true")]), 2.0, 1.0),
        // An integer attribute does not match the string "500", nor true `false`;
        // an exclude needs all of its conditions.
        (one("exclude", "strict", &[attr("span.http.status_code", "\"500\"")]), 3.0, 1.0),
        (one("exclude", "strict", &[attr("span.retry", "false")]), 3.0, 1.0),
        (one("exclude", "strict", &[attr("span.http.status_code", "500"), attr("span.retry", "false")]), 3.0, 1.0),
        // Servers are SPAN_KIND_SERVER: excluding them drops every request.
        (one("exclude", "strict", &[attr("kind", "\"SPAN_KIND_SERVER\"")]), 0.0, 0.0),
        (one("exclude", "regex", &[attr("kind", "\"CLIENT\"")]), 0.0, 0.0),
        // include_any: the error, or the servers of db, or the spans of web.
        (
            one(
                "include_any",
                "strict",
                &[
                    attr("status", "\"STATUS_CODE_ERROR\""),
                    attr("resource.service.name", "\"db\""),
                    attr("resource.service.name", "\"web\""),
                ],
            ),
            1.0,
            0.0,
        ),
    ];
    for (config, web, db) in cases {
        let e = engine(&config);
        e.consume(&requests(), T0).unwrap();
        let got = totals(&e);
        let of = |edge: &str| got.iter().find(|(k, _)| k == edge).map(|(_, v)| *v).unwrap_or(0.0);
        assert_eq!((of("shop→web"), of("shop→db")), (web, db), "{config}");
        e.expire_all(T0 + 60 * SEC);
        let s = e.stats();
        assert_eq!((s.waiting, s.edges_expired, s.edges_virtual), (0, 0, 0), "{config}: nothing left to expire");
    }
}

/// The contrib preset pairs consumers by span link: consumers waiting for a
/// producer that is then filtered out are dropped with it.
#[test]
fn linked_consumers_go_with_their_filtered_producer() {
    let e = engine(&format!(r#"{{"compat":"contrib",{}"#, &exclude_service("orders")[1..]));
    for own in [7u8, 8] {
        let mut sp = span(CONSUMER, trace(own), sid(own), None, T0, T0 + SEC);
        sp.links = vec![opentelemetry_proto::tonic::trace::v1::span::Link {
            trace_id: trace(1),
            span_id: sid(1),
            ..Default::default()
        }];
        e.consume(&batch(vec![resource(Some("shipping"), vec![], vec![sp])]), T0).unwrap();
    }
    assert_eq!(e.stats().waiting, 2);
    e.consume(
        &batch(vec![resource(Some("orders"), vec![], vec![span(PRODUCER, trace(1), sid(1), None, T0, T0 + SEC)])]),
        T0,
    )
    .unwrap();
    e.expire_all(T0 + 60 * SEC);
    let s = e.stats();
    assert_eq!((s.edges_dropped_by_filter, s.waiting, s.edges_expired, s.edges_virtual), (2, 0, 0, 0));
}

/// The keys and names the policies read are asked of the collector's
/// projection, so that it keeps them.
#[test]
fn the_keys_policies_read_are_wanted() {
    let e = engine(&policies(
        r#"[{"include":{"match_type":"strict","attributes":[{"key":"span.http.route","value":"/"},{"key":"resource.team","value":"a"},{"key":"name","value":"x"}]}}]"#,
    ));
    let w = e.wanted_keys();
    assert_eq!(w["span_name"], true);
    for side in ["resource", "span"] {
        let keys: Vec<&str> = w[side].as_array().unwrap().iter().map(|k| k.as_str().unwrap()).collect();
        assert!(keys.contains(&"http.route") && keys.contains(&"team"), "{side}: {keys:?}");
    }
    assert_eq!(engine("{}").wanted_keys()["span_name"], false);
}
