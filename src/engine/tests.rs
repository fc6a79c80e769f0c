use super::snapshot::packed_keys;
use super::*;
use servicemap_testkit::Rng;

#[test]
fn packed_keys_sort_as_the_keys_do() {
    let mut rng = Rng::new(7);
    let mut next = |n: u32| rng.below(n as usize) as u32;
    for (stride, distinct) in [(4, 1), (4, 3), (4, 1000), (4, 70_000), (6, 300), (7, 40)] {
        let ranks: Vec<u32> = (0..500 * stride)
            .map(|i| match i % stride {
                2 => next(4),
                3 => next(2),
                _ => next(distinct),
            })
            .collect();
        let (packed, index_bits) = packed_keys(&ranks, stride, distinct as usize).unwrap();
        let key = |i: usize| &ranks[i * stride..(i + 1) * stride];
        for (i, &p) in packed.iter().enumerate() {
            assert_eq!(p & ((1 << index_bits) - 1), i as u64);
        }
        // Equal keys order by index, as a stable sort leaves them.
        for a in 0..500 {
            for b in (0..500).step_by(7) {
                assert_eq!(packed[a].cmp(&packed[b]), key(a).cmp(key(b)).then(a.cmp(&b)), "{stride} {distinct}");
            }
        }
    }
    // Four ranks of 16 bits, the flags and an index do not fit; the caller compares slices then.
    assert!(packed_keys(&[0; 6 * 100], 6, 40_000).is_none());
}

#[test]
fn edge_cache_finds_every_edge_it_was_given() {
    let mut c = EdgeCache::new();
    assert_eq!(c.get(EdgeCache::key(1, 2)), None);
    // More pairs than recent slots, so many share one and fall back to the map.
    let pairs: Vec<(u32, u32)> = (0..3000u32).map(|i| (i % 97, i)).collect();
    for (i, &(a, b)) in pairs.iter().enumerate() {
        c.insert(EdgeCache::key(a, b), i);
    }
    for _ in 0..2 {
        for (i, &(a, b)) in pairs.iter().enumerate().rev() {
            assert_eq!(c.get(EdgeCache::key(a, b)), Some(i));
        }
    }
    assert_eq!(c.get(EdgeCache::key(2, 1)), None);
    c.clear();
    assert_eq!(c.get(EdgeCache::key(pairs[5].0, pairs[5].1)), None);
}

#[test]
fn wanted_keys_are_the_wire_readers_keys() {
    let mut c = Config::preset(crate::config::Compat::Tempo);
    c.dimensions = vec!["http.route".into(), "service.name".into()];
    c.span_multiplier_key = Some("sample.ratio".into());
    let keys =
        |e: &Engine, side: &str| -> Vec<String> { serde_json::from_value(e.wanted_keys()[side].clone()).unwrap() };
    let e = Engine::new(c.clone());
    let span = keys(&e, "span");
    assert_eq!(span, e.keys.keys().collect::<Vec<_>>(), "service.name is a dimension, so wanted on spans");
    assert!(span.iter().any(|k| k == "sample.ratio") && span.iter().any(|k| k == "rpc.system"));
    let resource = keys(&e, "resource");
    assert_eq!(resource[0], "service.name", "first, and only once");
    assert_eq!(resource[1..], span.iter().filter(|k| *k != "service.name").cloned().collect::<Vec<_>>()[..]);
    c.dimensions.pop();
    c.graph = false;
    let e = Engine::new(c);
    let span = keys(&e, "span");
    assert!(!span.iter().any(|k| k == "rpc.system" || k == "service.name"));
    assert_eq!(keys(&e, "resource")[0], "service.name");
    assert_eq!(keys(&e, "resource")[1..], span[..]);
}

#[test]
fn every_trace_id_byte_chooses_the_shard() {
    // Trace IDs that differ only in their last byte still spread over the shards.
    let mut seen = [0u32; 16];
    for b in 0..=255u8 {
        let mut trace_id = [0x5a; 16];
        trace_id[15] = b;
        seen[shard_index(&Key { trace_id, span_id: [0; 8] }, 16)] += 1;
    }
    assert!(seen.iter().all(|&c| c >= 4), "uneven spread: {seen:?}");
}

/// One resource per span, each a client span of the named service (version
/// 1) with its span ID; `db` makes it a database call.
fn client_spans(spans: &[(&str, u8, bool)]) -> Vec<u8> {
    use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
    use opentelemetry_proto::tonic::common::v1::{AnyValue, KeyValue, any_value};
    use opentelemetry_proto::tonic::resource::v1::Resource;
    use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans, Span, span};
    use prost::Message;
    let kv = |k: &str, v: &str| KeyValue {
        key: k.into(),
        value: Some(AnyValue { value: Some(any_value::Value::StringValue(v.into())) }),
        ..Default::default()
    };
    let resource_spans = spans
        .iter()
        .map(|&(service, id, db)| ResourceSpans {
            resource: Some(Resource {
                attributes: vec![kv("service.name", service), kv("service.version", "1")],
                ..Default::default()
            }),
            scope_spans: vec![ScopeSpans {
                spans: vec![Span {
                    trace_id: vec![id; 16],
                    span_id: vec![id; 8],
                    kind: span::SpanKind::Client as i32,
                    start_time_unix_nano: 1,
                    end_time_unix_nano: 2,
                    attributes: if db { vec![kv("db.system", "postgresql"), kv("db.name", "orders")] } else { vec![] },
                    ..Default::default()
                }],
                ..Default::default()
            }],
            ..Default::default()
        })
        .collect();
    ExportTraceServiceRequest { resource_spans }.encode_to_vec()
}

fn one_span_per_service(services: &[&str]) -> Vec<u8> {
    let spans: Vec<(&str, u8, bool)> = services.iter().enumerate().map(|(i, &s)| (s, i as u8 + 1, false)).collect();
    client_spans(&spans)
}

#[test]
fn a_full_map_keeps_the_facts_of_the_services_it_knows() {
    // The facts last seen per service are kept so that a known service's
    // unchanged facts cost a comparison of bytes; the cache is bounded by
    // the node cap. A batch of known services at the cap must not clear it,
    // or every service's facts are converted and reported again each batch.
    let mut c = Config::preset(crate::config::Compat::Tempo);
    c.max_graph_nodes = 4;
    let e = Engine::new(c);
    let known = |e: &Engine| lock(e.graph.as_ref().unwrap()).facts.len();
    e.consume(&one_span_per_service(&["a", "b", "c", "d"]), 10).unwrap();
    assert_eq!(known(&e), 4);
    e.consume(&one_span_per_service(&["b"]), 20).unwrap();
    assert_eq!(known(&e), 4, "a known service leaves the cache as it was");
    // A fifth service makes the map remove nodes, which moves the rest:
    // the cache is forgotten with them.
    e.consume(&one_span_per_service(&["e"]), 30).unwrap();
    assert_eq!(known(&e), 0);
    e.consume(&one_span_per_service(&["e"]), 40).unwrap();
    assert_eq!(known(&e), 1);
}

#[test]
fn a_service_whose_node_made_room_reports_its_facts_again() {
    // The map at its node cap makes room for a database node when a's
    // database call expires, removing a, the least recently seen service;
    // the call brings a back as the edge's client, without facts. The next
    // span of a's must report them again, though they have not changed.
    let mut c = Config::preset(crate::config::Compat::Tempo);
    c.max_graph_nodes = 4;
    let wait = c.wait.as_nanos() as u64;
    let e = Engine::new(c);
    e.consume(&client_spans(&[("a", 1, false)]), 10).unwrap();
    e.consume(&client_spans(&[("b", 2, false), ("c", 3, false), ("d", 4, false)]), 20).unwrap();
    e.consume(&client_spans(&[("a", 5, true)]), 30).unwrap();
    let later = 30 + wait + 1;
    e.expire(later);
    let version = |e: &Engine| {
        let view = e.graph_view(later).unwrap();
        view.nodes.iter().find(|n| n.name == "a").map(|n| n.facts.version.clone())
    };
    assert_eq!(version(&e), Some(String::new()), "a came back with the database edge, without facts");
    e.consume(&client_spans(&[("a", 6, false)]), later).unwrap();
    assert_eq!(version(&e), Some("1".to_string()));
}

#[test]
fn permute_puts_each_item_where_the_order_says() {
    let mut rng = Rng::new(11);
    for n in [0, 1, 2, 3, 10, 257] {
        let mut order: Vec<usize> = (0..n).collect();
        for i in (1..n).rev() {
            order.swap(i, rng.below(i + 1));
        }
        let mut items: Vec<String> = (0..n).map(|i| format!("item {i}")).collect();
        super::snapshot::permute(&mut items, &order);
        let want: Vec<String> = order.iter().map(|i| format!("item {i}")).collect();
        assert_eq!(items, want, "{n}");
    }
}

#[test]
fn permute_refuses_an_order_that_is_not_a_permutation_before_moving_anything() {
    for order in [vec![1, 1, 0], vec![0, 3, 1], vec![2, 0]] {
        let mut items: Vec<String> = (0..3).map(|i| format!("item {i}")).collect();
        let moved = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            super::snapshot::permute(&mut items, &order);
        }));
        assert!(moved.is_err(), "{order:?}");
        assert_eq!(items, ["item 0", "item 1", "item 2"], "{order:?}");
    }
}

#[test]
fn a_render_after_the_buffers_were_kept_is_the_render_of_a_fresh_engine() {
    // The first engine renders as its table grows and shrinks, reusing the
    // buffers the render before kept; each rendering must be what an engine
    // given the same calls, that never rendered, writes.
    let mut c = Config::preset(crate::config::Compat::Tempo);
    c.exemplars = true;
    // No series held at zero, so that every format carries exemplars.
    c.initial_zero = false;
    c.series_idle_timeout = std::time::Duration::from_nanos(500);
    let kept = Engine::new(c.clone());
    let services: Vec<String> = (0..40).map(|i| format!("svc-{i:02}")).collect();
    let batch = |from: usize, to: usize| {
        let spans: Vec<(&str, u8, bool)> =
            services[from..to].iter().enumerate().map(|(i, s)| (s.as_str(), (from + i) as u8 + 1, true)).collect();
        client_spans(&spans)
    };
    // (time, services called, expire after), and the edges left.
    let steps = [(10, (0, 3), false, 3), (20, (3, 40), false, 40), (1000, (0, 1), true, 1)];
    let mut calls = Vec::new();
    for (now, (from, to), expire, edges) in steps {
        calls.push((batch(from, to), now, expire));
        let (b, _, _) = calls.last().unwrap();
        kept.consume(b, now).unwrap();
        if expire {
            kept.expire(now);
        }
        let fresh = Engine::new(c.clone());
        for (b, t, expire) in &calls {
            fresh.consume(b, *t).unwrap();
            if *expire {
                fresh.expire(*t);
            }
        }
        for format in [Format::OtlpMetrics, Format::OpenMetrics, Format::Prometheus, Format::PrometheusProtobuf] {
            let got = kept.render(format, now + 5);
            assert_eq!(got, fresh.render(format, now + 5), "{format:?} at {now}");
        }
        let open_metrics = String::from_utf8(kept.render(Format::OpenMetrics, now + 5)).unwrap();
        assert_eq!(open_metrics.matches("traces_service_graph_request_total{").count(), edges, "at {now}");
        assert!(open_metrics.contains(" # {traceID=\""), "exemplars rendered at {now}");
        // The edges' buffer holds what the last render needed, and after the
        // table shrank, no more than that; the exemplars' list, emptied each
        // time, about two a series.
        let (spare_edges, spare_exemplars) = super::snapshot::spare_capacity(&kept);
        assert_eq!(spare_edges, edges, "at {now}");
        assert!(spare_exemplars >= edges && spare_exemplars <= 4 * edges.max(16), "{spare_exemplars} at {now}");
    }
}
