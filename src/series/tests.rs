use super::hist::{Buckets, INLINE_BUCKETS};
use super::*;

fn ev(client: u32, server: u32, failed: bool, s: f64) -> EdgeEvent {
    EdgeEvent {
        client,
        server,
        conn: ConnType::Plain,
        failed,
        client_only_failure: false,
        virtual_side: Virtual::None,
        inferred: Virtual::None,
        protocol: 0,
        dims_at: 0,
        multiplier: 1.0,
        client_s: s,
        server_s: s / 2.0,
        messaging_s: None,
        trace_id: [client as u8; 16],
        span_id: [server as u8; 8],
    }
}

#[test]
fn buckets_are_upper_inclusive() {
    let bounds = [0.1, 1.0];
    let mut h = Hist::new(2);
    h.observe(&bounds, 0.1, 1.0);
    h.observe(&bounds, 0.10001, 1.0);
    h.observe(&bounds, 5.0, 2.0);
    assert_eq!(&*h.buckets, &[1.0, 1.0, 2.0]);
    assert_eq!(h.count, 4.0);
    assert_eq!(h.sum, 0.1 + 0.10001 + 10.0);
}

#[test]
fn buckets_in_place_and_on_the_heap_count_alike() {
    for n in [0, 8, 16, 17, 40] {
        let bounds: Vec<f64> = (1..=n).map(|i| i as f64).collect();
        let mut h = Hist::new(n);
        assert_eq!(matches!(h.buckets, Buckets::Inline { .. }), n < INLINE_BUCKETS, "{n} bounds");
        for v in 0..=n + 1 {
            h.observe(&bounds, v as f64, 1.0);
        }
        // 0 and 1 land in the first bucket, n + 1 in +Inf, each other value in its own.
        let mut want = vec![1.0; n + 1];
        want[0] += 1.0;
        assert_eq!(&*h.buckets, &want[..], "{n} bounds");
        let copy = h.clone();
        assert_eq!(copy, h);
    }
}

#[test]
fn failed_label_splits_series_and_cap_refuses() {
    let mut t = SeriesTable::new(&[1.0], false, 2, 10);
    let events = Events {
        edges: vec![ev(1, 2, false, 0.5), ev(1, 2, true, 0.5), ev(1, 2, false, 2.0), ev(3, 4, false, 1.0)],
        ..Default::default()
    };
    t.apply(&events, 0, true, 100);
    assert_eq!(t.edge_series(), 2);
    assert_eq!(t.refused, 1);
    let snap: Vec<Entry> = t.snapshot(None, None).into_iter().map(|(x, _)| x).collect();
    let ok = snap.iter().find(|x| !x.key.failed).unwrap();
    assert_eq!(ok.values.request, 2.0);
    assert_eq!(&*ok.values.client.buckets, &[1.0, 1.0]);
    let bad = snap.iter().find(|x| x.key.failed).unwrap();
    assert_eq!((bad.values.request, bad.values.failed), (1.0, 1.0));
}

#[test]
fn a_snapshot_copies_the_set_exemplars_of_the_histograms_not_held() {
    let mut t = SeriesTable::new(&[0.1, 1.0], true, 10, 10).with_exemplars(true);
    let mut a = ev(1, 2, false, 0.5);
    a.messaging_s = Some(0.05);
    t.apply(&Events { edges: vec![a, ev(1, 2, false, 0.05)], ..Default::default() }, 0, false, 100);
    t.apply(&Events { edges: vec![ev(5, 6, false, 0.05)], ..Default::default() }, 0, false, 100);
    let mut m = ev(5, 6, false, 0.05);
    m.messaging_s = Some(0.05);
    t.apply(&Events { edges: vec![ev(3, 4, false, 5.0), m], ..Default::default() }, 0, false, 150);
    let x = |bucket, value, client: u8, server: u8, at_ns| Kept {
        bucket,
        exemplar: Exemplar { value, at_ns, trace_id: [client; 16], span_id: [server; 8] },
    };
    // Edge 1 → 2: server 0.25 s then 0.025 s, client 0.5 then 0.05, messaging 0.05.
    let first = [x(0, 0.025, 1, 2, 100), x(1, 0.25, 1, 2, 100), x(0, 0.05, 1, 2, 100), x(1, 0.5, 1, 2, 100)];
    let want_a = [&first[..], &[x(0, 0.05, 1, 2, 100)]].concat();
    // Edge 3 → 4: +Inf for both (2.5 s and 5 s).
    let want_b = [x(2, 2.5, 3, 4, 150), x(2, 5.0, 3, 4, 150)];
    // Edge 5 → 6: its messaging histogram began at 150, after the edge.
    let want_c = [x(0, 0.025, 5, 6, 150), x(0, 0.05, 5, 6, 150), x(0, 0.05, 5, 6, 150)];
    let read = |hold| {
        let mut kept = Vec::new();
        let snap = t.snapshot(hold, Some(&mut kept));
        let rows = |client| {
            let (_, rows) = snap.iter().find(|(e, _)| e.key.client == client).unwrap();
            [Family::Server, Family::Client, Family::Messaging].map(|f| rows.of(&kept, f).0.to_vec()).concat()
        };
        (rows(1), rows(3), rows(5))
    };
    assert_eq!(read(None), (want_a.clone(), want_b.to_vec(), want_c.to_vec()));
    // At 170 with a hold of 60, edge 3 → 4 (created at 150) reads as zero:
    // none of its exemplars is copied; edge 5 → 6 keeps those of its server
    // and client histograms, not its messaging one's.
    assert_eq!(read(Some((170, 60))), (want_a, vec![], want_c[..2].to_vec()));
    // Without a list, no exemplar is copied and the copies carry none.
    assert!(t.snapshot(None, None).iter().all(|(e, rows)| e.values.exemplars.is_none() && *rows == Rows::default()));
}

#[test]
fn without_failed_label_one_series_counts_failures() {
    let mut t = SeriesTable::new(&[1.0], false, 10, 10);
    let events = Events { edges: vec![ev(1, 2, false, 0.5), ev(1, 2, true, 0.5)], ..Default::default() };
    t.apply(&events, 0, false, 100);
    let snap = t.snapshot(None, None);
    assert_eq!(snap.len(), 1);
    assert_eq!((snap[0].0.values.request, snap[0].0.values.failed), (2.0, 1.0));
}

#[test]
fn idle_series_are_removed() {
    let mut t = SeriesTable::new(&[1.0], false, 10, 10);
    let mut events = Events { edges: vec![ev(1, 2, false, 0.5)], ..Default::default() };
    t.apply(&events, 0, false, 100);
    events.edges = vec![ev(3, 4, false, 0.5)];
    t.apply(&events, 0, false, 200);
    assert_eq!(t.remove_idle(200, 100), 0);
    assert_eq!(t.remove_idle(201, 100), 1);
    assert_eq!(t.edge_series(), 1);
}

#[test]
fn unpaired_and_dropped_counters_have_their_own_budget_then_overflow() {
    let side = |client: u32| SideKey { client, server: 0, conn: ConnType::Plain };
    let mut t = SeriesTable::new(&[1.0], false, 2, 3);
    // Five distinct unpaired sides and two dropped: three fit, four overflow.
    let events = Events {
        unpaired: vec![side(1), side(2), side(1), side(3), side(4), side(5)],
        dropped: vec![side(6), side(2)],
        ..Default::default()
    };
    t.apply(&events, 0, false, 100);
    assert_eq!(t.sides.unpaired.len(), 3);
    assert_eq!(t.sides.unpaired[&side(1)].value, 2.0);
    assert!(t.sides.dropped.is_empty());
    assert_eq!(t.sides.unpaired_overflow.value, 2.0);
    assert_eq!(t.sides.dropped_overflow.value, 2.0);
    assert_eq!(t.sides.overflowed, 4);
    // The request series keep their whole budget.
    let edges = Events { edges: vec![ev(1, 2, false, 0.5), ev(3, 4, false, 0.5)], ..Default::default() };
    t.apply(&edges, 0, false, 100);
    assert_eq!((t.edge_series(), t.refused), (2, 0));
    // Idle counters go, making room again; the overflow counters stay.
    t.apply(&Events { unpaired: vec![side(1)], ..Default::default() }, 0, false, 300);
    assert_eq!(t.remove_idle(301, 100), 4);
    assert_eq!(t.sides.unpaired.len(), 1);
    t.apply(&Events { dropped: vec![side(7)], ..Default::default() }, 0, false, 302);
    assert_eq!(t.sides.dropped[&side(7)].value, 1.0);
    assert_eq!(t.sides.overflowed, 4);
}

#[test]
fn edges_with_an_inferred_side_take_at_most_half_the_series() {
    let mut t = SeriesTable::new(&[1.0], false, 4, 10);
    let inferred = |client| EdgeEvent { inferred: Virtual::Server, ..ev(client, 99, false, 0.5) };
    let flood = Events { edges: (10..20).map(inferred).collect(), ..Default::default() };
    t.apply(&flood, 0, false, 100);
    assert_eq!((t.edge_series(), t.refused), (2, 8));
    // Edges both sides reported still find room.
    let real = Events { edges: vec![ev(1, 2, false, 0.5), ev(3, 4, false, 0.5)], ..Default::default() };
    t.apply(&real, 0, false, 150);
    assert_eq!((t.edge_series(), t.refused), (4, 8));
    // Once the inferred series are idle and gone, inferred edges count again.
    assert_eq!(t.remove_idle(201, 100), 2);
    t.apply(&Events { edges: vec![inferred(30)], ..Default::default() }, 0, false, 202);
    assert_eq!((t.edge_series(), t.refused), (3, 8));
}

#[test]
fn a_new_series_reads_as_zero_for_the_hold_whoever_reads_it() {
    let mut t = SeriesTable::new(&[1.0], false, 10, 10);
    t.apply(&Events { edges: vec![ev(1, 2, false, 0.5)], ..Default::default() }, 0, false, 100);
    t.apply(&Events { edges: vec![ev(1, 2, true, 0.5)], ..Default::default() }, 0, false, 150);
    let read = |t: &SeriesTable, now| {
        let s = t.snapshot(Some((now, 60)), None);
        (s[0].0.values.request, s[0].0.values.failed, s[0].0.values.client.count)
    };
    // Reads change nothing: the same answer however often, in any order.
    for _ in 0..3 {
        assert_eq!(read(&t, 159), (0.0, 0.0, 0.0));
    }
    // From created + hold on, the values; the failure counter is held
    // from its own first failure.
    assert_eq!(read(&t, 160), (2.0, 0.0, 2.0));
    assert_eq!(read(&t, 210), (2.0, 1.0, 2.0));
    assert_eq!(read(&t, 159), (0.0, 0.0, 0.0));
    assert!(t.snapshot(Some((159, 60)), None)[0].0.values.has_failed());
    assert_eq!(t.snapshot(None, None)[0].0.values.request, 2.0);
}
