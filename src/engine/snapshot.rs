//! Snapshots of the series table with their labels resolved, and the
//! renderings of them.

use super::*;

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
            }
            Format::PrometheusProtobuf => {
                let snap = self.snapshot(now_ns, self.config.initial_zero, true);
                exposition::protobuf::render(&snap, out);
            }
            Format::OtlpMetrics => {
                let snap = self.snapshot(now_ns, false, true);
                let start = snap.started_ns;
                let offset = self.config.metrics_timestamp_offset.as_nanos().min(now_ns as u128) as u64;
                exposition::otlp::encode_into(&snap, start, now_ns - offset, out);
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
        let (entries, unpaired, dropped, side_overflow, bounds) = {
            let t = lock(&self.series);
            let hold_ns = self.config.initial_zero_hold.as_nanos().min(u64::MAX as u128) as u64;
            let entries = t.snapshot(hold_new.then_some((now_ns, hold_ns)), exemplars);
            let sides = &t.sides;
            let unpaired: Vec<_> = sides.unpaired.iter().map(|(k, v)| (*k, *v)).collect();
            let dropped: Vec<_> = sides.dropped.iter().map(|(k, v)| (*k, *v)).collect();
            let overflow = (sides.unpaired_overflow, sides.dropped_overflow);
            (entries, unpaired, dropped, overflow, t.bounds().to_vec())
        };
        let caps = self.overflow();
        // Each distinct label value is resolved once, to one shared copy and
        // its rank in string order, so that sorting compares integers. An
        // edge's key is [client, server, connection type, failed, dims...],
        // label values as slots in `strings`, then as ranks in `ranks`.
        let stride = 4 + self.dim_labels.raw.len();
        let mut strings = Strings::default();
        let mut slots = Vec::with_capacity(entries.len() * stride);
        for x in &entries {
            let k = &x.key;
            slots.extend([strings.slot(k.client), strings.slot(k.server), k.conn as u32, u32::from(k.failed)]);
            slots.extend(k.dims.iter().map(|&id| strings.slot(id)));
        }
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
        let is_string = |i: usize| i % stride < 2 || i % stride >= 4;
        let ranks: Vec<u32> =
            slots.iter().enumerate().map(|(i, &s)| if is_string(i) { rank[s as usize] } else { s }).collect();
        let key = |i: usize| &ranks[i * stride..(i + 1) * stride];
        let order: Vec<usize> = match packed_keys(&ranks, stride, rank.len()) {
            Some((mut packed, index_bits)) => {
                packed.sort_unstable();
                packed.into_iter().map(|k| (k & ((1 << index_bits) - 1)) as usize).collect()
            }
            None => {
                let mut order: Vec<usize> = (0..entries.len()).collect();
                order.sort_by(|&a, &b| key(a).cmp(key(b)));
                order
            }
        };
        let mut entries: Vec<Option<Entry>> = entries.into_iter().map(Some).collect();
        let edges = order
            .into_iter()
            .map(|i| {
                let x = entries[i].take().expect("each entry is taken once");
                let s = &slots[i * stride..(i + 1) * stride];
                EdgeSeries {
                    client: shared[s[0] as usize].clone(),
                    server: shared[s[1] as usize].clone(),
                    conn: x.key.conn,
                    failed: x.key.failed,
                    virtual_side: x.key.virtual_side,
                    dims: s[4..].iter().map(|&slot| shared[slot as usize].clone()).collect(),
                    values: x.values,
                }
            })
            .collect();
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
