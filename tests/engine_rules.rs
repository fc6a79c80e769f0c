//! Pairing rules, one test each, with exact expected series values.

mod common;
use common::*;
use servicemap::Format;

const TOTAL: &str = "traces_service_graph_request_total";

fn stats(e: &servicemap::Engine) -> servicemap::Stats {
    e.stats()
}

fn pair(t: u8, client: &str, server: &str) -> Vec<u8> {
    batch(vec![
        resource(Some(client), vec![], vec![span(CLIENT, trace(t), sid(1), None, T0, T0 + 2 * SEC)]),
        resource(Some(server), vec![], vec![span(SERVER, trace(t), sid(2), Some(sid(1)), T0, T0 + SEC)]),
    ])
}

#[test]
fn server_first_then_client_in_another_batch() {
    let e = engine("{}");
    let server =
        batch(vec![resource(Some("b"), vec![], vec![span(SERVER, trace(1), sid(2), Some(sid(1)), T0, T0 + SEC)])]);
    let client = batch(vec![resource(Some("a"), vec![], vec![span(CLIENT, trace(1), sid(1), None, T0, T0 + 2 * SEC)])]);
    e.consume(&server, T0).unwrap();
    assert_eq!(stats(&e).waiting, 1);
    e.consume(&client, T0).unwrap();
    let m = scrape(&e, T0);
    assert_eq!(m[&format!("{TOTAL}{{client=\"a\",server=\"b\"}}")], 1.0);
    assert_eq!(m["traces_service_graph_request_server_seconds_sum{client=\"a\",server=\"b\"}"], 1.0);
    assert_eq!(m["traces_service_graph_request_client_seconds_sum{client=\"a\",server=\"b\"}"], 2.0);
    let s = stats(&e);
    assert_eq!((s.waiting, s.edges_new, s.edges_completed), (0, 1, 1));
}

#[test]
fn internal_spans_and_unnamed_resources_are_skipped() {
    let e = engine("{}");
    let b = batch(vec![
        resource(Some("a"), vec![], vec![span(INTERNAL, trace(1), sid(1), None, T0, T0 + SEC)]),
        resource(None, vec![], vec![span(CLIENT, trace(1), sid(3), None, T0, T0 + SEC)]),
    ]);
    e.consume(&b, T0).unwrap();
    let s = stats(&e);
    assert_eq!((s.spans_received, s.spans_ignored, s.spans_unnamed, s.waiting), (2, 1, 1, 0));
}

#[test]
fn producer_consumer_is_a_messaging_edge_with_queue_latency() {
    let e = engine(r#"{"enable_messaging_system_latency_histogram":true,"histogram_buckets":[0.04]}"#);
    let b = batch(vec![
        resource(Some("orders"), vec![], vec![span(PRODUCER, trace(1), sid(1), None, T0, T0 + 10_000_000)]),
        resource(
            Some("shipping"),
            vec![],
            vec![span(CONSUMER, trace(1), sid(2), Some(sid(1)), T0 + 35_000_000, T0 + 40_000_000)],
        ),
    ]);
    e.consume(&b, T0).unwrap();
    let m = scrape(&e, T0);
    let l = "client=\"orders\",connection_type=\"messaging_system\",server=\"shipping\"";
    assert_eq!(m[&format!("{TOTAL}{{{l}}}")], 1.0);
    assert_eq!(m[&format!("traces_service_graph_request_messaging_system_seconds_sum{{{l}}}")], 0.025);
    let bucket = "client=\"orders\",connection_type=\"messaging_system\",le=\"0.04\",server=\"shipping\"";
    assert_eq!(m[&format!("traces_service_graph_request_messaging_system_seconds_bucket{{{bucket}}}")], 1.0);
}

#[test]
fn linked_consumers_pair_with_their_producer_in_either_order() {
    // contrib preset pairs by span link; one edge per link.
    let producer =
        |t| batch(vec![resource(Some("orders"), vec![], vec![span(PRODUCER, trace(t), sid(1), None, T0, T0 + SEC)])]);
    let consumer = |t: u8, own: u8, id: u8| {
        let mut sp = span(CONSUMER, trace(own), sid(id), None, T0, T0 + SEC);
        sp.links = vec![opentelemetry_proto::tonic::trace::v1::span::Link {
            trace_id: trace(t),
            span_id: sid(1),
            ..Default::default()
        }];
        batch(vec![resource(Some("shipping"), vec![], vec![sp])])
    };
    for producer_first in [true, false] {
        let e = engine(r#"{"compat":"contrib"}"#);
        if producer_first {
            e.consume(&producer(1), T0).unwrap();
        }
        e.consume(&consumer(1, 50, 7), T0).unwrap();
        e.consume(&consumer(1, 51, 8), T0).unwrap();
        if !producer_first {
            e.consume(&producer(1), T0).unwrap();
        }
        let m = scrape(&e, T0);
        let key = format!(
            "{TOTAL}{{client=\"orders\",connection_type=\"messaging_system\",failed=\"false\",server=\"shipping\"}}"
        );
        assert_eq!(m.get(&key), Some(&2.0), "producer_first={producer_first}: {m:?}");
        // The producer stays to serve later consumers, then leaves without a count.
        e.expire_all(T0 + 10 * SEC);
        let s = stats(&e);
        assert_eq!((s.waiting, s.edges_expired, s.edges_completed), (0, 0, 2), "producer_first={producer_first}");
    }
}

#[test]
fn unprefixed_dimensions_take_the_last_written_side() {
    let e = engine(r#"{"dimensions":["tier"]}"#);
    let b = batch(vec![
        resource(Some("a"), vec![s("tier", "front")], vec![span(CLIENT, trace(1), sid(1), None, T0, T0 + SEC)]),
        resource(
            Some("b"),
            vec![],
            vec![with_attrs(span(SERVER, trace(1), sid(2), Some(sid(1)), T0, T0 + SEC), vec![s("tier", "back")])],
        ),
        // Second pair: the server side lacks the dimension, so the client's value stays.
        resource(Some("c"), vec![s("tier", "front")], vec![span(CLIENT, trace(2), sid(1), None, T0, T0 + SEC)]),
        resource(Some("d"), vec![], vec![span(SERVER, trace(2), sid(2), Some(sid(1)), T0, T0 + SEC)]),
    ]);
    e.consume(&b, T0).unwrap();
    let m = scrape(&e, T0);
    assert_eq!(m[&format!("{TOTAL}{{client=\"a\",server=\"b\",tier=\"back\"}}")], 1.0);
    assert_eq!(m[&format!("{TOTAL}{{client=\"c\",server=\"d\",tier=\"front\"}}")], 1.0);
}

#[test]
fn a_dimension_on_the_resource_wins_for_every_span_of_it() {
    // Resources are resolved once per batch and dimension: a resource that
    // holds one dimension leaves the other to each span, a resource without
    // it leaves it to each span, and a value that is not a string is written
    // as its label. The second batch has other resources at the same places.
    let e = engine(r#"{"dimensions":["tier","zone"]}"#);
    let client = |t: u8, attrs: &[(&str, &str)]| {
        with_attrs(span(CLIENT, trace(t), sid(1), None, T0, T0 + SEC), attrs.iter().map(|(k, v)| s(k, v)).collect())
    };
    let server = |t: u8| span(SERVER, trace(t), sid(2), Some(sid(1)), T0, T0 + SEC);
    let first = batch(vec![
        resource(
            Some("a"),
            vec![s("tier", "front")],
            vec![client(1, &[("tier", "ignored"), ("zone", "z1")]), client(2, &[("zone", "z2")]), client(3, &[])],
        ),
        resource(Some("g"), vec![s("tier", "gt"), s("zone", "gz")], vec![client(11, &[("zone", "ignored")])]),
        resource(Some("h"), vec![s("tier", "ht")], vec![client(12, &[])]),
        resource(Some("c"), vec![], vec![client(4, &[("tier", "one")]), client(5, &[]), client(6, &[("tier", "two")])]),
        resource(Some("e"), vec![i("tier", 7)], vec![client(7, &[("tier", "ignored")]), client(8, &[])]),
        resource(Some("b"), vec![], [1, 2, 3, 4, 5, 6, 7, 8, 11, 12].map(server).to_vec()),
    ]);
    let second = batch(vec![
        resource(Some("a"), vec![s("tier", "back"), s("zone", "z9")], vec![client(10, &[("zone", "z3")])]),
        resource(Some("c"), vec![], vec![client(9, &[("tier", "three")])]),
        resource(Some("b"), vec![], (9..=10).map(server).collect()),
    ]);
    e.consume(&first, T0).unwrap();
    e.consume(&second, T0).unwrap();
    let m = scrape(&e, T0);
    let got: Vec<(&str, f64)> =
        m.iter().filter(|(k, _)| k.starts_with(&format!("{TOTAL}{{"))).map(|(k, v)| (&k[TOTAL.len()..], *v)).collect();
    assert_eq!(
        got,
        [
            (r#"{client="a",server="b",tier="back",zone="z9"}"#, 1.0),
            (r#"{client="a",server="b",tier="front",zone="z1"}"#, 1.0),
            (r#"{client="a",server="b",tier="front",zone="z2"}"#, 1.0),
            (r#"{client="a",server="b",tier="front"}"#, 1.0),
            (r#"{client="c",server="b",tier="one"}"#, 1.0),
            (r#"{client="c",server="b",tier="three"}"#, 1.0),
            (r#"{client="c",server="b",tier="two"}"#, 1.0),
            (r#"{client="c",server="b"}"#, 1.0),
            (r#"{client="e",server="b",tier="7"}"#, 2.0),
            (r#"{client="g",server="b",tier="gt",zone="gz"}"#, 1.0),
            (r#"{client="h",server="b",tier="ht"}"#, 1.0),
        ]
    );
}

#[test]
fn prefixed_dimensions_keep_both_sides_and_sanitize_names() {
    let e = engine(r#"{"dimensions":["k8s.namespace"],"enable_client_server_prefix":true}"#);
    let b = batch(vec![
        resource(Some("a"), vec![s("k8s.namespace", "shop")], vec![span(CLIENT, trace(1), sid(1), None, T0, T0 + SEC)]),
        resource(
            Some("b"),
            vec![s("k8s.namespace", "pay")],
            vec![span(SERVER, trace(1), sid(2), Some(sid(1)), T0, T0 + SEC)],
        ),
    ]);
    e.consume(&b, T0).unwrap();
    let m = scrape(&e, T0);
    let k = format!("{TOTAL}{{client=\"a\",client_k8s_namespace=\"shop\",server=\"b\",server_k8s_namespace=\"pay\"}}");
    assert_eq!(m[&k], 1.0, "{m:?}");
}

#[test]
fn expiry_makes_virtual_nodes_and_counts_the_rest() {
    let e = engine(r#"{"enable_virtual_node_label":true}"#);
    let b = batch(vec![
        // Root server without a client: client "user".
        resource(Some("web"), vec![], vec![span(SERVER, trace(1), sid(1), None, T0, T0 + SEC)]),
        // Client to an uninstrumented peer.
        resource(
            Some("web"),
            vec![],
            vec![with_attrs(span(CLIENT, trace(2), sid(1), None, T0, T0 + SEC), vec![s("peer.service", "stripe")])],
        ),
        // Client with no peer attribute: counted as expired (Tempo).
        resource(Some("web"), vec![], vec![span(CLIENT, trace(3), sid(1), None, T0, T0 + SEC)]),
    ]);
    e.consume(&b, T0).unwrap();
    e.expire(T0 + 9 * SEC);
    assert_eq!(stats(&e).waiting, 3, "nothing expires before the 10s wait");
    e.expire(T0 + 10 * SEC);
    let m = scrape(&e, T0 + 10 * SEC);
    assert_eq!(
        m[&format!(
            "{TOTAL}{{client=\"user\",connection_type=\"virtual_node\",server=\"web\",virtual_node=\"client\"}}"
        )],
        1.0
    );
    assert_eq!(
        m[&format!(
            "{TOTAL}{{client=\"web\",connection_type=\"virtual_node\",server=\"stripe\",virtual_node=\"server\"}}"
        )],
        1.0
    );
    // The missing side is observed as 0.
    assert_eq!(
        m["traces_service_graph_request_client_seconds_sum{client=\"user\",connection_type=\"virtual_node\",server=\"web\",virtual_node=\"client\"}"],
        0.0
    );
    assert_eq!(m["traces_service_graph_unpaired_spans_total{client=\"web\"}"], 1.0);
    let s = stats(&e);
    assert_eq!((s.waiting, s.edges_virtual, s.edges_expired), (0, 2, 1));
    assert_eq!(s.expired_by_kind.iter().find(|(k, _)| *k == "SPAN_KIND_CLIENT").unwrap().1, 1);
}

#[test]
fn contrib_preset_names_unknown_servers_and_counts_every_expiry() {
    let e = engine(r#"{"compat":"contrib"}"#);
    let b = batch(vec![resource(Some("web"), vec![], vec![span(CLIENT, trace(3), sid(1), None, T0, T0 + SEC)])]);
    e.consume(&b, T0).unwrap();
    e.expire(T0 + 2 * SEC);
    let m = scrape(&e, T0);
    assert_eq!(
        m[&format!("{TOTAL}{{client=\"web\",connection_type=\"virtual_node\",failed=\"false\",server=\"unknown\"}}")],
        1.0
    );
    assert_eq!(stats(&e).edges_expired, 1);
}

#[test]
fn full_store_drops_new_spans_and_counts_them() {
    let e = engine(r#"{"max_items":1,"shards":1}"#);
    let b = batch(vec![resource(
        Some("a"),
        vec![],
        vec![span(CLIENT, trace(1), sid(1), None, T0, T0 + SEC), span(CLIENT, trace(2), sid(1), None, T0, T0 + SEC)],
    )]);
    let summary = e.consume(&b, T0).unwrap();
    assert_eq!(summary.dropped, 1);
    assert_eq!(stats(&e).spans_dropped, 1);
    assert_eq!(scrape(&e, T0)["traces_service_graph_dropped_spans_total{client=\"a\"}"], 1.0);
    // The waiting span can still be completed while the store is full.
    let server =
        batch(vec![resource(Some("b"), vec![], vec![span(SERVER, trace(1), sid(2), Some(sid(1)), T0, T0 + SEC)])]);
    e.consume(&server, T0).unwrap();
    assert_eq!(scrape(&e, T0)[&format!("{TOTAL}{{client=\"a\",server=\"b\"}}")], 1.0);
}

#[test]
fn a_full_store_makes_room_by_expiring_a_due_head() {
    let e = engine(r#"{"max_items":1,"shards":1}"#);
    let one = |t| batch(vec![resource(Some("a"), vec![], vec![span(CLIENT, trace(t), sid(1), None, T0, T0 + SEC)])]);
    e.consume(&one(1), T0).unwrap();
    e.consume(&one(2), T0 + 11 * SEC).unwrap();
    let s = stats(&e);
    assert_eq!((s.spans_dropped, s.edges_expired, s.waiting), (0, 1, 1));
}

#[test]
fn series_cap_refuses_new_label_sets() {
    let e = engine(r#"{"max_series":1}"#);
    e.consume(&pair(1, "a", "b"), T0).unwrap();
    e.consume(&pair(2, "c", "d"), T0).unwrap();
    e.consume(&pair(3, "a", "b"), T0).unwrap();
    let m = scrape(&e, T0);
    assert_eq!(m[&format!("{TOTAL}{{client=\"a\",server=\"b\"}}")], 2.0);
    assert!(!m.contains_key(&format!("{TOTAL}{{client=\"c\",server=\"d\"}}")));
    let s = stats(&e);
    assert_eq!((s.active_series, s.series_refused), (1, 1));
}

#[test]
fn idle_series_are_removed_after_the_timeout() {
    let e = engine(r#"{"series_idle_timeout":"1m"}"#);
    e.consume(&pair(1, "a", "b"), T0).unwrap();
    e.consume(&pair(2, "c", "d"), T0 + 30 * SEC).unwrap();
    e.expire(T0 + 60 * SEC);
    assert_eq!(stats(&e).active_series, 2);
    e.expire(T0 + 61 * SEC);
    let m = scrape(&e, T0 + 61 * SEC);
    assert!(!m.contains_key(&format!("{TOTAL}{{client=\"a\",server=\"b\"}}")));
    assert_eq!(m[&format!("{TOTAL}{{client=\"c\",server=\"d\"}}")], 1.0);
}

#[test]
fn a_new_series_reads_as_zero_for_the_hold_for_every_scraper() {
    let e = servicemap::Engine::new(servicemap::Config::from_json(br#"{"initial_zero_hold":"30s"}"#).unwrap());
    let key = format!("{TOTAL}{{client=\"a\",server=\"b\"}}");
    let failed_key = "traces_service_graph_request_failed_total{client=\"a\",server=\"b\"}";
    e.consume(&pair(1, "a", "b"), T0).unwrap();
    // However many scrapers read, and in whatever order: zero for the hold.
    for _ in 0..3 {
        assert_eq!(scrape(&e, T0)[&key], 0.0);
        assert_eq!(scrape(&e, T0 + 29 * SEC)[&key], 0.0);
    }
    assert_eq!(scrape(&e, T0 + 30 * SEC)[&key], 1.0);
    assert_eq!(scrape(&e, T0 + 10 * SEC)[&key], 0.0);
    // A failure counter that appears later is held from its own first failure.
    let failed_pair = batch(vec![
        resource(Some("a"), vec![], vec![failed(span(CLIENT, trace(2), sid(1), None, T0, T0 + SEC))]),
        resource(Some("b"), vec![], vec![span(SERVER, trace(2), sid(2), Some(sid(1)), T0, T0 + SEC)]),
    ]);
    e.consume(&failed_pair, T0 + 40 * SEC).unwrap();
    let m = scrape(&e, T0 + 40 * SEC);
    assert_eq!((m[&key], m[failed_key]), (2.0, 0.0));
    assert_eq!(scrape(&e, T0 + 70 * SEC)[failed_key], 1.0);
    // The OpenMetrics text says when each series began.
    let om = String::from_utf8(e.render(servicemap::Format::OpenMetrics, T0 + 70 * SEC)).unwrap();
    let created = |name: &str| {
        om.lines()
            .find_map(|l| l.strip_prefix(&format!("{name}_created{{client=\"a\",server=\"b\"}} ")))
            .map(str::to_string)
    };
    assert_eq!(created("traces_service_graph_request").as_deref(), Some("1767225600"));
    assert_eq!(created("traces_service_graph_request_failed").as_deref(), Some("1767225640"));
    assert_eq!(created("traces_service_graph_request_server_seconds").as_deref(), Some("1767225600"));
}

#[test]
fn span_multiplier_weights_counts() {
    let e = engine(r#"{"span_multiplier_key":"sampler.param"}"#);
    let b = batch(vec![
        resource(
            Some("a"),
            vec![],
            vec![with_attrs(span(CLIENT, trace(1), sid(1), None, T0, T0 + SEC), vec![d("sampler.param", 0.25)])],
        ),
        resource(
            Some("b"),
            vec![],
            vec![with_attrs(
                span(SERVER, trace(1), sid(2), Some(sid(1)), T0, T0 + SEC),
                vec![d("sampler.param", 0.25)],
            )],
        ),
    ]);
    e.consume(&b, T0).unwrap();
    let m = scrape(&e, T0);
    assert_eq!(m[&format!("{TOTAL}{{client=\"a\",server=\"b\"}}")], 4.0);
    assert_eq!(m["traces_service_graph_request_server_seconds_count{client=\"a\",server=\"b\"}"], 4.0);
}

#[test]
fn many_threads_count_exactly() {
    let e = engine(r#"{"shards":4}"#);
    std::thread::scope(|s| {
        for t in 0..4u8 {
            let e = &e;
            s.spawn(move || {
                for i in 0..50u8 {
                    e.consume(&pair(t * 50 + i, "a", "b"), T0).unwrap();
                }
            });
        }
    });
    assert_eq!(scrape(&e, T0)[&format!("{TOTAL}{{client=\"a\",server=\"b\"}}")], 200.0);
}

#[test]
fn threads_sending_either_side_of_many_traces_pair_every_one() {
    // Batches of 16 traces cover most of the 8 shards, so calls running at
    // once meet at busy shards and a busy series table, and take them later.
    let e = engine(r#"{"shards":8}"#);
    let id = |n: u16, last: u8| -> Vec<u8> {
        let mut v = vec![0x5a; 16];
        v[..2].copy_from_slice(&n.to_be_bytes());
        v[15] = last;
        v
    };
    let batch_of = |k: u16, server: bool| -> Vec<u8> {
        let spans = (k * 16..k * 16 + 16)
            .map(|n| {
                let client_id = id(n, 1)[8..].to_vec();
                if server {
                    span(2, id(n, 0), id(n, 2)[8..].to_vec(), Some(client_id), T0, T0 + 1_000_000)
                } else {
                    span(3, id(n, 0), client_id, None, T0, T0 + 2_000_000)
                }
            })
            .collect();
        batch(vec![resource(Some(if server { "b" } else { "a" }), vec![], spans)])
    };
    std::thread::scope(|s| {
        for t in 0..4u16 {
            let (e, batch_of) = (&e, &batch_of);
            s.spawn(move || {
                // Threads 0 and 1 send the clients, 2 and 3 the servers, in opposite orders.
                for j in 0..32u16 {
                    let k = if t < 2 { 2 * j + t } else { 63 - (2 * j + t - 2) };
                    e.consume(&batch_of(k, t >= 2), T0).unwrap();
                }
            });
        }
    });
    assert_eq!(scrape(&e, T0)[&format!("{TOTAL}{{client=\"a\",server=\"b\"}}")], 1024.0);
    assert_eq!(stats(&e).waiting, 0);
    let view = e.graph_view(T0).unwrap();
    let edge = view.edges.iter().find(|x| x.client == "a" && x.server == "b").unwrap();
    assert_eq!((edge.rate * view.window_s).round(), 1024.0);
}

#[test]
fn openmetrics_output_names_units_and_ends_with_eof() {
    let e = engine("{}");
    e.consume(&pair(1, "a", "b"), T0).unwrap();
    let text = String::from_utf8(e.render(Format::OpenMetrics, T0)).unwrap();
    assert!(text.contains("# TYPE traces_service_graph_request counter\n"), "{text}");
    assert!(text.contains("# UNIT traces_service_graph_request_server_seconds seconds\n"), "{text}");
    assert!(text.ends_with("# EOF\n"));
    let m = samples(&text);
    assert_eq!(m[&format!("{TOTAL}{{client=\"a\",server=\"b\"}}")], 1.0);
}

#[test]
fn otlp_metrics_follow_contrib_shape() {
    use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
    use opentelemetry_proto::tonic::metrics::v1::{metric::Data, number_data_point::Value};
    use prost::Message;
    let e = engine(r#"{"compat":"contrib"}"#);
    e.consume(&pair(1, "a", "b"), T0).unwrap();
    let req = ExportMetricsServiceRequest::decode(&e.render(Format::OtlpMetrics, T0 + SEC)[..]).unwrap();
    let scope = &req.resource_metrics[0].scope_metrics[0];
    assert_eq!(scope.scope.as_ref().unwrap().name, "traces_service_graph");
    let names: Vec<&str> = scope.metrics.iter().map(|m| m.name.as_str()).collect();
    assert_eq!(
        names,
        [
            "traces_service_graph_request_total",
            "traces_service_graph_request_server",
            "traces_service_graph_request_client"
        ]
    );
    let Some(Data::Sum(sum)) = &scope.metrics[0].data else { panic!("not a sum") };
    let p = &sum.data_points[0];
    assert_eq!(p.value, Some(Value::AsInt(1)));
    assert_eq!((p.start_time_unix_nano, p.time_unix_nano), (T0, T0 + SEC));
    let attrs: Vec<String> =
        p.attributes.iter().map(|kv| format!("{}={:?}", kv.key, kv.value.as_ref().unwrap().value)).collect();
    assert_eq!(attrs.len(), 4, "{attrs:?}");
    let Some(Data::Histogram(h)) = &scope.metrics[1].data else { panic!("not a histogram") };
    assert_eq!(scope.metrics[1].unit, "s");
    let hp = &h.data_points[0];
    assert_eq!((hp.count, hp.sum), (1, Some(1.0)));
    // 1 s with contrib's default bounds lands in bucket index 10.
    assert_eq!(hp.bucket_counts.iter().position(|&c| c == 1), Some(10));
}

#[test]
fn a_flood_of_distinct_label_values_does_not_grow_memory_without_bound() {
    let e = engine(r#"{"wait":"1s","dimensions":["tier"],"max_items":100000}"#);
    e.consume(&pair(1, "a", "b"), T0).unwrap();
    // A client that waits through the flood and completes after it.
    let waiting = batch(vec![resource(
        Some("c"),
        vec![s("tier", "gold")],
        vec![span(CLIENT, trace(2), sid(1), None, T0, T0 + SEC)],
    )]);
    let mut now = T0;
    for round in 0..30u32 {
        e.consume(&waiting, now).unwrap_or_default();
        let spans = (0..1000u32)
            .map(|n| {
                let mut t = trace(3);
                t[..4].copy_from_slice(&round.to_be_bytes());
                t[4..8].copy_from_slice(&n.to_be_bytes());
                with_attrs(span(CLIENT, t, sid(1), None, now, now + SEC), vec![s("tier", &format!("tier-{round}-{n}"))])
            })
            .collect();
        e.consume(&batch(vec![resource(Some("flood"), vec![], spans)]), now).unwrap();
        now += 2 * SEC;
        e.expire(now);
    }
    let s = e.stats();
    assert_eq!(s.edges_expired, 30 * 1000 + 30);
    assert!(s.interned_strings < 12_000, "interned strings: {}", s.interned_strings);
    // Ids survived compaction: old series and a waiting edge keep their names.
    e.consume(&waiting, now).unwrap();
    let server =
        batch(vec![resource(Some("d"), vec![], vec![span(SERVER, trace(2), sid(2), Some(sid(1)), now, now + SEC)])]);
    e.consume(&server, now).unwrap();
    let m = scrape(&e, now);
    assert_eq!(m[&format!("{TOTAL}{{client=\"a\",server=\"b\"}}")], 1.0);
    assert_eq!(m[&format!("{TOTAL}{{client=\"c\",server=\"d\",tier=\"gold\"}}")], 1.0);
}

/// A waiting side keeps its protocol by an index into its shard's table of
/// protocols; the interner's compaction renames the ids in that table too.
#[test]
fn a_waiting_sides_protocol_keeps_its_name_through_compaction() {
    let e = engine(r#"{"wait":"1h","dimensions":["tier"],"max_items":100}"#);
    let client = batch(vec![resource(
        Some("c"),
        vec![],
        vec![with_attrs(span(CLIENT, trace(2), sid(1), None, T0, T0 + SEC), vec![s("rpc.system", "grpc")])],
    )]);
    e.consume(&client, T0).unwrap();
    // 5,000 distinct values, 99 of them waiting in every shard: the
    // interner is compacted at the end of the call, the client still waiting.
    let flood = (0..5000u32)
        .map(|n| {
            let mut t = trace(3);
            t[..4].copy_from_slice(&n.to_be_bytes());
            with_attrs(span(CLIENT, t, sid(1), None, T0, T0 + SEC), vec![s("tier", &format!("t-{n}"))])
        })
        .collect();
    e.consume(&batch(vec![resource(Some("flood"), vec![], flood)]), T0).unwrap();
    let st = e.stats();
    assert_eq!((st.waiting, st.interned_strings < 1000), (100, true), "{st:?}");
    let server =
        batch(vec![resource(Some("d"), vec![], vec![span(SERVER, trace(2), sid(2), Some(sid(1)), T0, T0 + SEC)])]);
    e.consume(&server, T0).unwrap();
    let g: serde_json::Value = serde_json::from_slice(&e.render(Format::GraphJson, T0 + SEC)).unwrap();
    let edge = g["edges"].as_array().unwrap().iter().find(|x| x["client"] == "c" && x["server"] == "d").unwrap();
    assert_eq!(edge["protocol"], "grpc");
}

#[test]
fn calls_running_while_the_interner_is_compacted_keep_their_names() {
    // One thread floods distinct label values and expires them, so the
    // interner is compacted (and its ids renumbered) again and again; another
    // consumes complete pairs meanwhile. Every pair must count under its names.
    let e = engine(r#"{"wait":"1s","dimensions":["tier"],"max_items":100000}"#);
    let steady = |k: u32| {
        let mut t = vec![0x77; 16];
        t[..4].copy_from_slice(&k.to_be_bytes());
        batch(vec![
            resource(Some("x"), vec![s("tier", "steady")], vec![span(CLIENT, t.clone(), sid(1), None, T0, T0 + SEC)]),
            resource(Some("y"), vec![], vec![span(SERVER, t, sid(2), Some(sid(1)), T0, T0 + SEC)]),
        ])
    };
    use std::sync::atomic::{AtomicBool, Ordering::Relaxed};
    // The flood starts once a pair has been counted, and the pairs go on
    // until the flood is over: the two always overlap, however the threads
    // are scheduled.
    let (started, done) = (AtomicBool::new(false), AtomicBool::new(false));
    let sent = std::thread::scope(|scope| {
        scope.spawn(|| {
            while !started.load(Relaxed) {
                std::thread::yield_now();
            }
            let mut now = T0;
            for round in 0..20u32 {
                let spans = (0..1000u32)
                    .map(|n| {
                        let mut t = trace(3);
                        t[..4].copy_from_slice(&round.to_be_bytes());
                        t[4..8].copy_from_slice(&n.to_be_bytes());
                        with_attrs(
                            span(CLIENT, t, sid(1), None, now, now + SEC),
                            vec![s("tier", &format!("t-{round}-{n}"))],
                        )
                    })
                    .collect();
                e.consume(&batch(vec![resource(Some("flood"), vec![], spans)]), now).unwrap();
                now += 2 * SEC;
                e.expire(now);
            }
            done.store(true, Relaxed);
        });
        let pairs = scope.spawn(|| {
            let mut k = 0u32;
            loop {
                e.consume(&steady(k), T0).unwrap();
                k += 1;
                started.store(true, Relaxed);
                if done.load(Relaxed) {
                    return k;
                }
            }
        });
        pairs.join().unwrap()
    });
    let m = scrape(&e, T0);
    assert_eq!(m[&format!("{TOTAL}{{client=\"x\",server=\"y\",tier=\"steady\"}}")], sent as f64);
    let view = e.graph_view(T0).unwrap();
    let edge = view.edges.iter().find(|x| x.client == "x" && x.server == "y").unwrap();
    assert_eq!((edge.rate * view.window_s).round(), sent as f64);
    assert!(e.stats().interned_strings < 12_000, "compacted: {}", e.stats().interned_strings);
}

#[test]
fn max_items_bounds_all_shards_together() {
    let e = engine(r#"{"max_items":4}"#);
    let spans = (1..=8u8).map(|t| span(CLIENT, trace(t), sid(1), None, T0, T0 + SEC)).collect();
    let summary = e.consume(&batch(vec![resource(Some("a"), vec![], spans)]), T0).unwrap();
    let s = e.stats();
    assert_eq!((summary.dropped, s.waiting, s.spans_dropped), (4, 4, 4));
}

#[test]
fn a_side_written_twice_keeps_dimensions_from_either_write() {
    let e = engine(r#"{"dimensions":["tier","zone"],"enable_client_server_prefix":true}"#);
    let b = batch(vec![
        resource(
            Some("b"),
            vec![],
            vec![with_attrs(span(SERVER, trace(1), sid(2), Some(sid(1)), T0, T0 + SEC), vec![s("tier", "gold")])],
        ),
        resource(
            Some("b"),
            vec![],
            vec![with_attrs(span(SERVER, trace(1), sid(3), Some(sid(1)), T0, T0 + SEC), vec![s("zone", "eu")])],
        ),
        resource(Some("a"), vec![], vec![span(CLIENT, trace(1), sid(1), None, T0, T0 + SEC)]),
    ]);
    e.consume(&b, T0).unwrap();
    let m = scrape(&e, T0);
    assert_eq!(
        m[&format!("{TOTAL}{{client=\"a\",server=\"b\",server_tier=\"gold\",server_zone=\"eu\"}}")],
        1.0,
        "{m:?}"
    );
}

#[test]
fn series_are_rendered_in_label_value_order() {
    // Dimensions after the first only add empty values.
    for extra in [0, 30] {
        let dims: Vec<String> = std::iter::once("k".to_string()).chain((0..extra).map(|i| format!("d{i}"))).collect();
        rendered_in_label_value_order(&serde_json::json!({"dimensions": dims, "failed_label": true}).to_string());
    }
}

fn rendered_in_label_value_order(config: &str) {
    // Names interned in an order unlike their string order, a dimension whose
    // values decide between otherwise equal series, and the failed label.
    let e = engine(config);
    let names = ["zeta", "Mid", "alpha", "émile", "beta", "alpha2", "", "a"];
    let mut t = 0u8;
    for (n, client) in names.iter().enumerate() {
        for server in names.iter().rev().take(4) {
            for k in ["y", "x", ""] {
                t += 1;
                let attrs = if k.is_empty() { vec![] } else { vec![s("k", k)] };
                let mut c = with_attrs(span(CLIENT, trace(t), sid(1), None, T0, T0 + 2 * SEC), attrs.clone());
                if (n + t as usize) % 3 == 0 {
                    c = failed(c);
                }
                let sv = with_attrs(span(SERVER, trace(t), sid(2), Some(sid(1)), T0, T0 + SEC), attrs);
                let b = batch(vec![
                    resource(Some(*client).filter(|c| !c.is_empty()), vec![], vec![c]),
                    resource(Some(*server).filter(|s| !s.is_empty()), vec![], vec![sv]),
                ]);
                e.consume(&b, T0).unwrap();
            }
        }
    }
    let text = String::from_utf8(e.render(Format::Prometheus, T0)).unwrap();
    let lines: Vec<&str> = text.lines().filter(|l| l.starts_with(&format!("{TOTAL}{{"))).collect();
    assert!(lines.len() > 20, "{text}");
    let label = |l: &str, name: &str| {
        let at = l.find(&format!("{name}=\"")).map(|i| i + name.len() + 2);
        at.map(|i| l[i..i + l[i..].find('"').unwrap()].to_string()).unwrap_or_default()
    };
    let keys: Vec<_> =
        lines.iter().map(|l| (label(l, "client"), label(l, "server"), label(l, "failed"), label(l, "k"))).collect();
    let mut sorted = keys.clone();
    sorted.sort();
    assert_eq!(keys, sorted);
}
