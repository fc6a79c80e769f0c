//! Snapshots of the series table with their labels resolved, and the
//! renderings of them.

use super::*;

/// A render's two largest scratch buffers (a snapshot's edges, about 500
/// bytes a series, and its exemplars), emptied and kept for the next render.
/// Given back at the end of each render, megabytes at once, they were the
/// free memory at the top of the heap that glibc returned to the kernel
/// whenever it exceeded its trim threshold (twice the largest buffer freed
/// so far): every render then wrote to fresh pages for the kernel to zero,
/// about 3,750 page faults and half the time of an OTLP render of 10,000
/// series. Kept, they hold what the render's peak held anyway. One set is
/// kept: a second scraper at the same time allocates its own, and a set
/// much larger than the last render needed is let go.
#[derive(Debug, Default)]
pub(super) struct Spare(Mutex<(Vec<EdgeSeries>, Vec<Kept>)>);

/// The capacities of the buffers kept for the next render.
#[cfg(test)]
pub(super) fn spare_capacity(e: &Engine) -> (usize, usize) {
    let spare = lock(&e.spare.0);
    (spare.0.capacity(), spare.1.capacity())
}

impl Spare {
    fn take(&self) -> (Vec<EdgeSeries>, Vec<Kept>) {
        std::mem::take(&mut *lock(&self.0))
    }

    fn give(&self, snap: Snapshot) {
        let copied = snap.exemplar_label.is_some();
        let (mut edges, mut kept) = (snap.edges, snap.exemplars);
        // Capacity up to twice what this render used is kept (for the
        // exemplars, at least the two a series that a snapshot reserves). A
        // render that copied no exemplars leaves the list as the last one
        // that did made it, so that scrapers of formats with and without
        // exemplars taking turns do not free and grow it each time.
        let (used, kept_used) = (edges.len().max(16), kept.len().max(2 * edges.len()).max(16));
        if edges.capacity() > 2 * used {
            edges = Vec::new();
        }
        if copied && kept.capacity() > 2 * kept_used {
            kept = Vec::new();
        }
        edges.clear();
        kept.clear();
        let mut spare = lock(&self.0);
        if edges.capacity() >= spare.0.capacity() {
            spare.0 = edges;
        }
        if kept.capacity() >= spare.1.capacity() {
            spare.1 = kept;
        }
    }
}

/// The distinct label values of a snapshot, by interned id.
#[derive(Default)]
pub(super) struct Strings {
    pub(super) slot: HashMap<u32, u32>,
    pub(super) ids: Vec<u32>,
}

impl Strings {
    /// `id`'s index among the distinct values seen so far.
    fn slot(&mut self, id: u32) -> u32 {
        *self.slot.entry(id).or_insert_with(|| {
            self.ids.push(id);
            self.ids.len() as u32 - 1
        })
    }

    /// Each slot's string, shared, and its rank in string order (equal
    /// strings, equal ranks).
    fn resolve(&self, names: &Interner) -> (Vec<Arc<str>>, Vec<u32>) {
        let shared: Vec<Arc<str>> = self.ids.iter().map(|&id| Arc::from(names.get(id))).collect();
        let mut by_string: Vec<u32> = (0..shared.len() as u32).collect();
        by_string.sort_unstable_by(|&a, &b| shared[a as usize].cmp(&shared[b as usize]));
        let mut rank = vec![0; shared.len()];
        let mut r = 0;
        for (n, w) in by_string.iter().enumerate() {
            if n > 0 && shared[*w as usize] != shared[by_string[n - 1] as usize] {
                r += 1;
            }
            rank[*w as usize] = r;
        }
        (shared, rank)
    }
}

/// Each edge's sort key `[client, server, connection type, failed, dims...]`
/// (label values as ranks) packed into one word, most significant first,
/// with the edge's index below it, when all of it fits in 64 bits: sorting
/// words instead of comparing slices takes most of the sorting out of a
/// render, and the index makes equal keys keep their order. Returns the
/// words and the index's width, or None when they do not fit.
pub(super) fn packed_keys(ranks: &[u32], stride: usize, distinct: usize) -> Option<(Vec<u64>, u32)> {
    let width = |n: usize| usize::BITS - n.max(1).leading_zeros();
    // A rank below `distinct`; the connection type and the failed flag in 2 and 1.
    let (bits, index_bits) = (width(distinct), width(ranks.len() / stride));
    if bits as usize * (stride - 2) + 3 + index_bits as usize > 64 {
        return None;
    }
    let field = |f: usize| match f {
        2 => 2,
        3 => 1,
        _ => bits,
    };
    let packed = ranks
        .chunks_exact(stride)
        .enumerate()
        .map(|(i, k)| {
            let key = k.iter().enumerate().fold(0u64, |acc, (f, &v)| acc << field(f) | v as u64);
            key << index_bits | i as u64
        })
        .collect();
    Some((packed, index_bits))
}

impl Engine {
    /// Renders the current state. A read: what it shows depends on the data
    /// and `now_ns` only, never on what was rendered before.
    pub fn render(&self, format: Format, now_ns: u64) -> Vec<u8> {
        let mut out = Vec::new();
        self.render_into(format, now_ns, &mut out);
        out
    }

    /// As [`render`](Engine::render), into `out`, which is cleared first. Its
    /// capacity is kept: a caller that renders every scrape into the same
    /// buffer writes to memory already mapped, not to megabytes of fresh
    /// pages the kernel must zero each time. Still a read: `out` holds the
    /// rendering only, whatever it held before.
    pub fn render_into(&self, format: Format, now_ns: u64, out: &mut Vec<u8>) {
        out.clear();
        match format {
            Format::Prometheus | Format::OpenMetrics => {
                // The text format 0.0.4 has no exemplars: they are not copied for it.
                let open_metrics = format == Format::OpenMetrics;
                let snap = self.snapshot(now_ns, self.config.initial_zero, open_metrics);
                exposition::text::render_into(&snap, open_metrics, out);
                self.spare.give(snap);
            }
            Format::PrometheusProtobuf => {
                let snap = self.snapshot(now_ns, self.config.initial_zero, true);
                exposition::protobuf::render(&snap, out);
                self.spare.give(snap);
            }
            Format::OtlpMetrics => {
                let snap = self.snapshot(now_ns, false, true);
                let start = snap.started_ns;
                let offset = self.config.metrics_timestamp_offset.as_nanos().min(now_ns as u128) as u64;
                exposition::otlp::encode_into(&snap, start, now_ns - offset, out);
                self.spare.give(snap);
            }
            Format::StatsJson => {
                if serde_json::to_writer_pretty(&mut *out, &self.stats().to_json()).is_err() {
                    out.clear();
                }
                out.push(b'\n');
            }
            Format::GraphJson | Format::GraphDot | Format::GraphMermaid => {
                let Some(view) = self.graph_view(now_ns) else { return };
                match format {
                    Format::GraphJson => out.extend_from_slice(&map::render::graph_json(&view)),
                    Format::GraphDot => out.extend_from_slice(map::render::dot(&view).as_bytes()),
                    _ => out.extend_from_slice(map::render::mermaid(&view).as_bytes()),
                }
            }
        }
    }

    /// A copy of every series at `now_ns` with label strings resolved, edges
    /// in the order of their label values. With `hold_new`, series created
    /// less than `initial_zero_hold` before `now_ns` read as zero. With
    /// `exemplars` false, none is copied even when the engine keeps them.
    pub fn snapshot(&self, now_ns: u64, hold_new: bool, exemplars: bool) -> Snapshot {
        let ids = self.ids.read().unwrap_or_else(|p| p.into_inner());
        // Each series is copied once, straight into its place in the
        // snapshot, its label values still ids: `raw` holds each edge's key,
        // [client, server, connection type, failed, dims...]. Only the set
        // exemplars are copied, into one list.
        let stride = 4 + self.dim_labels.raw.len();
        let blank: Arc<str> = Arc::from("");
        let (mut edges, mut kept) = self.spare.take();
        let mut raw: Vec<u32> = Vec::new();
        let (unpaired, dropped, side_overflow, bounds) = {
            let t = lock(&self.series);
            let hold_ns = self.config.initial_zero_hold.as_nanos().min(u64::MAX as u128) as u64;
            edges.reserve_exact(t.len());
            raw.reserve_exact(t.len() * stride);
            t.snapshot_each(
                hold_new.then_some((now_ns, hold_ns)),
                exemplars.then_some(&mut kept),
                |x, values, rows| {
                    let k = &x.key;
                    raw.extend([k.client, k.server, k.conn as u32, u32::from(k.failed)]);
                    raw.extend_from_slice(&k.dims);
                    edges.push(EdgeSeries {
                        client: blank.clone(),
                        server: blank.clone(),
                        conn: k.conn,
                        failed: k.failed,
                        virtual_side: k.virtual_side,
                        dims: Vec::new(),
                        values,
                        exemplars: rows,
                    });
                },
            );
            let sides = &t.sides;
            let unpaired: Vec<_> = sides.unpaired.iter().map(|(k, v)| (*k, *v)).collect();
            let dropped: Vec<_> = sides.dropped.iter().map(|(k, v)| (*k, *v)).collect();
            let overflow = (sides.unpaired_overflow, sides.dropped_overflow);
            (unpaired, dropped, overflow, t.bounds().to_vec())
        };
        let caps = self.overflow();
        // Each distinct label value is resolved once, to one shared copy and
        // its rank in string order, so that sorting compares integers. An
        // edge's key is `raw` with label values as slots in `strings`, then
        // as ranks in `ranks`.
        // A key's fields are [client, server, connection type, failed,
        // dims...]: all but the third and fourth are label values. Mapped
        // key by key (a modulo per field cost about 1 M instructions a
        // render of 10,000 edges).
        let by_key = |from: &[u32], f: &mut dyn FnMut(u32) -> u32| -> Vec<u32> {
            let mut to = Vec::with_capacity(from.len());
            for k in from.chunks_exact(stride) {
                to.extend_from_slice(&[f(k[0]), f(k[1]), k[2], k[3]]);
                to.extend(k[4..].iter().map(|&v| f(v)));
            }
            to
        };
        let mut strings = Strings::default();
        let slots = by_key(&raw, &mut |id| strings.slot(id));
        drop(raw);
        let names = self.interner.read().unwrap_or_else(|p| p.into_inner());
        let (shared, rank) = strings.resolve(&names);
        let side = |(k, v): (SideKey, SideCount)| SideSeries {
            client: names.get(k.client).into(),
            server: names.get(k.server).into(),
            conn: k.conn,
            value: v.value,
            created_ns: v.created_ns,
            overflow: false,
        };
        let mut unpaired: Vec<SideSeries> = unpaired.into_iter().map(side).collect();
        let mut dropped: Vec<SideSeries> = dropped.into_iter().map(side).collect();
        drop(names);
        drop(ids);
        let ranks = by_key(&slots, &mut |s| rank[s as usize]);
        let key = |i: usize| &ranks[i * stride..(i + 1) * stride];
        let order: Vec<usize> = match packed_keys(&ranks, stride, rank.len()) {
            Some((mut packed, index_bits)) => {
                packed.sort_unstable();
                packed.into_iter().map(|k| (k & ((1 << index_bits) - 1)) as usize).collect()
            }
            None => {
                let mut order: Vec<usize> = (0..edges.len()).collect();
                order.sort_by(|&a, &b| key(a).cmp(key(b)));
                order
            }
        };
        permute(&mut edges, &order);
        for (e, &i) in edges.iter_mut().zip(&order) {
            let s = &slots[i * stride..(i + 1) * stride];
            e.client = shared[s[0] as usize].clone();
            e.server = shared[s[1] as usize].clone();
            e.dims = s[4..].iter().map(|&slot| shared[slot as usize].clone()).collect();
        }
        unpaired.sort_by(|a, b| (&a.client, &a.server).cmp(&(&b.client, &b.server)));
        dropped.sort_by(|a, b| (&a.client, &a.server).cmp(&(&b.client, &b.server)));
        for (list, count) in [(&mut unpaired, side_overflow.0), (&mut dropped, side_overflow.1)] {
            if count.value > 0.0 {
                list.push(SideSeries::overflow(count.value, count.created_ns));
            }
        }
        Snapshot {
            compat: self.config.compat,
            failed_label: self.config.failed_label,
            virtual_label: self.config.enable_virtual_node_label,
            connection_info: self.config.enable_connection_info,
            messaging: self.config.enable_messaging_system_latency_histogram,
            weighted: self.config.span_multiplier_key.is_some(),
            bounds,
            histograms: self.config.histograms,
            exemplar_label: (exemplars && self.config.exemplars).then(|| self.config.trace_id_label_name.clone()),
            dim_labels: self.dim_labels.clone(),
            edges,
            exemplars: kept,
            unpaired,
            dropped,
            overflow: caps,
            started_ns: match self.counters.first_now_ns.load(Relaxed) {
                0 => now_ns,
                t => t,
            },
        }
    }
}

/// Puts `items[order[j]]` at `j` for every `j`, in place, each item moved
/// once: each cycle of the permutation is followed with its first item held
/// aside. A snapshot's edges are about 480 bytes each: a second vector of
/// them would be megabytes more to fault in at every render, and swapping
/// along a cycle copies each item three times (3.0 M instructions of a
/// 10,000-edge render, against about 1.4 M moved once).
///
/// Panics, before anything moves, if `order` is not a permutation of the
/// items' positions.
pub(super) fn permute<T>(items: &mut [T], order: &[usize]) {
    let n = items.len();
    assert_eq!(order.len(), n, "an order of {} positions for {n} items", order.len());
    let mut seen = vec![false; n];
    for &k in order {
        assert!(k < n && !std::mem::replace(&mut seen[k], true), "order is not a permutation: {k}");
    }
    let mut done = seen;
    done.fill(false);
    let base = items.as_mut_ptr();
    for start in 0..n {
        if done[start] {
            continue;
        }
        done[start] = true;
        if order[start] == start {
            continue;
        }
        // SAFETY: `order` is a permutation of `0..n` (checked above), so
        // following it from `start` visits each position of the cycle once
        // and comes back to `start`. Each position is read (moved out)
        // before it is written, and the item held aside from `start` is
        // written into the cycle's last position: at the end every position
        // holds exactly one item, none twice. Nothing in the loop can panic
        // (every index is below `n`), so no item is dropped twice on unwind.
        unsafe {
            let held = std::ptr::read(base.add(start));
            let mut j = start;
            loop {
                let k = order[j];
                if k == start {
                    std::ptr::write(base.add(j), held);
                    break;
                }
                std::ptr::copy_nonoverlapping(base.add(k), base.add(j), 1);
                done[k] = true;
                j = k;
            }
        }
    }
}
