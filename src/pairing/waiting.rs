//! How a half-edge waits in the store: one side in 16 bytes, with the
//! values few in kind (multipliers, protocols) held by a one-byte index.

use super::edge::HalfEdge;
use crate::series::ConnType;
use crate::series::intern::EMPTY;
use crate::wire::SpanKind;

/// A half-edge as the store keeps it: 16 bytes against [`HalfEdge`]'s 72.
/// A waiting edge has seen one side (when both have come it completes and
/// leaves), so only that side's service and duration are kept; its time,
/// which only the messaging-latency histogram reads, waits beside the store
/// when that histogram is on (see [`super::shard::Shard`]). Its span kind
/// follows from the side and the connection type, and its multiplier and
/// protocol are indexes into the shard's [`Indexes`].
///
/// What does not fit waits whole beside the store, [`Waiting::one_side`]
/// refusing it: an edge that holds both sides in the store (a database call
/// for the moment its linked consumers are served), a duration past 40 bits
/// (about 18 minutes), a kind or connection type that does not follow from
/// its side (none today: internal and unspecified spans are skipped when
/// read, and a database call completes at once), and a multiplier or
/// protocol when all 255 indexes of its table are held by others.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct Waiting {
    service: u32,
    peer: u32,
    /// From the lowest bit: the duration in nanoseconds (40 bits), the
    /// connection type (2), the flags (6), the multiplier's index (8) and
    /// the protocol's (8). Two words rather than a `u64`, so that the store's
    /// node aligns to 4 bytes and holds no padding.
    packed: [u32; 2],
}

impl Waiting {
    /// The seen side is the client's.
    const CLIENT: u64 = 1;
    const FAILED: u64 = 2;
    const SERVER_FAILED: u64 = 4;
    const ROOT: u64 = 8;
    const MATCHED: u64 = 16;
    /// The edge did not fit one side and is kept whole beside the store.
    const WHOLE: u64 = 32;

    const DUR_BITS: u32 = 40;
    /// The longest duration kept in a side, in nanoseconds.
    pub(crate) const MAX_DUR_NS: u64 = (1 << Self::DUR_BITS) - 1;
    const CONN_AT: u32 = 40;
    const FLAGS_AT: u32 = 42;
    const MULTIPLIER_AT: u32 = 48;
    const PROTOCOL_AT: u32 = 56;

    #[inline]
    fn bits(&self) -> u64 {
        u64::from(self.packed[1]) << 32 | u64::from(self.packed[0])
    }

    #[inline]
    fn flag(&self, f: u64) -> bool {
        self.bits() >> Self::FLAGS_AT & f != 0
    }

    /// The kind a one-sided edge's last span had: a span on the client side
    /// is a producer exactly when the edge is a messaging one, and on the
    /// server side a consumer.
    fn kind(client: bool, conn: ConnType) -> SpanKind {
        match (client, conn == ConnType::MessagingSystem) {
            (true, false) => SpanKind::Client,
            (true, true) => SpanKind::Producer,
            (false, false) => SpanKind::Server,
            (false, true) => SpanKind::Consumer,
        }
    }

    /// `e` as one side, if that is all it holds, its duration and kind fit
    /// and its multiplier and protocol have an index in `ix` (which it then
    /// holds until [`Indexes::release`]): [`Waiting::edge`] gives it back
    /// exactly but for the side's time, which the caller keeps if it needs it.
    #[inline]
    pub fn one_side(e: &HalfEdge, ix: &mut Indexes) -> Option<Waiting> {
        let client_only = e.seen_client
            && !e.seen_server
            && !e.server_last
            && e.server == EMPTY
            && e.server_dur_ns == 0
            && e.server_start_ns == 0
            && !e.root
            && !e.server_failed;
        let server_only = e.seen_server
            && !e.seen_client
            && e.server_last
            && e.client == EMPTY
            && e.client_dur_ns == 0
            && e.client_end_ns == 0;
        if !(client_only || server_only) {
            return None;
        }
        let (service, dur) = if client_only { (e.client, e.client_dur_ns) } else { (e.server, e.server_dur_ns) };
        let one_sided_conn = matches!(e.conn, ConnType::Plain | ConnType::MessagingSystem);
        if dur > Self::MAX_DUR_NS || !one_sided_conn || e.last_kind != Self::kind(client_only, e.conn) {
            return None;
        }
        let (multiplier, protocol) = ix.acquire(e)?;
        let flag = |on: bool, f: u64| if on { f } else { 0 };
        let flags = flag(client_only, Self::CLIENT)
            | flag(e.failed, Self::FAILED)
            | flag(e.server_failed, Self::SERVER_FAILED)
            | flag(e.root, Self::ROOT)
            | flag(e.matched, Self::MATCHED);
        let bits = dur
            | (e.conn as u64) << Self::CONN_AT
            | flags << Self::FLAGS_AT
            | u64::from(multiplier) << Self::MULTIPLIER_AT
            | u64::from(protocol) << Self::PROTOCOL_AT;
        let w = Waiting { service, peer: e.peer, packed: [bits as u32, (bits >> 32) as u32] };
        debug_assert_eq!(w.edge(ix), HalfEdge { client_end_ns: 0, server_start_ns: 0, ..*e });
        Some(w)
    }

    /// A marker for an edge kept whole elsewhere.
    pub fn whole() -> Waiting {
        let bits = Self::WHOLE << Self::FLAGS_AT;
        Waiting { packed: [bits as u32, (bits >> 32) as u32], ..Waiting::default() }
    }

    pub fn is_whole(&self) -> bool {
        self.flag(Self::WHOLE)
    }

    /// The multiplier's and the protocol's indexes, to release when the side
    /// leaves the store.
    #[inline]
    fn indexes(&self) -> (u8, u8) {
        let bits = self.bits();
        ((bits >> Self::MULTIPLIER_AT) as u8, (bits >> Self::PROTOCOL_AT) as u8)
    }

    /// The half-edge this side stands for, with the side's time 0.
    #[inline]
    pub fn edge(&self, ix: &Indexes) -> HalfEdge {
        let bits = self.bits();
        let conn = match bits >> Self::CONN_AT & 3 {
            0 => ConnType::Plain,
            1 => ConnType::MessagingSystem,
            2 => ConnType::Database,
            _ => ConnType::VirtualNode,
        };
        let client = self.flag(Self::CLIENT);
        let (multiplier, protocol) = self.indexes();
        let dur = bits & Self::MAX_DUR_NS;
        let mut e = HalfEdge {
            peer: self.peer,
            protocol: ix.protocols.get(protocol) as u32,
            last_kind: Self::kind(client, conn),
            conn,
            multiplier: f64::from_bits(ix.multipliers.get(multiplier)),
            failed: self.flag(Self::FAILED),
            server_failed: self.flag(Self::SERVER_FAILED),
            root: self.flag(Self::ROOT),
            matched: self.flag(Self::MATCHED),
            ..HalfEdge::default()
        };
        if client {
            (e.client, e.client_dur_ns, e.seen_client) = (self.service, dur, true);
        } else {
            (e.server, e.server_dur_ns, e.seen_server) = (self.service, dur, true);
            e.server_last = true;
        }
        e
    }

    /// The interned ids it holds itself, for the interner's compaction (its
    /// protocol's is in [`Indexes::protocols`]).
    pub fn ids_mut(&mut self) -> [&mut u32; 2] {
        [&mut self.service, &mut self.peer]
    }
}

/// Values that take few distinct values across waiting sides, each held by
/// a one-byte index, index 0 standing for the usual value. An index is
/// counted by the sides holding it and reused once none does; when all 255
/// are held, a side with yet another value waits whole instead.
#[derive(Debug)]
pub struct ByteIndex {
    usual: u64,
    /// Index − 1 → the value and how many sides hold it.
    held: Vec<(u64, u32)>,
}

impl ByteIndex {
    const USUAL: u8 = 0;

    pub fn new(usual: u64) -> ByteIndex {
        ByteIndex { usual, held: Vec::new() }
    }

    /// The index of `v`, counted as held once more; `None` when all are taken.
    #[inline]
    pub fn acquire(&mut self, v: u64) -> Option<u8> {
        if v == self.usual {
            return Some(Self::USUAL);
        }
        let at = match self.held.iter().position(|&(b, n)| n > 0 && b == v) {
            Some(at) => at,
            None => match self.held.iter().position(|&(_, n)| n == 0) {
                Some(free) => {
                    self.held[free].0 = v;
                    free
                }
                None if self.held.len() < u8::MAX as usize => {
                    self.held.push((v, 0));
                    self.held.len() - 1
                }
                None => return None,
            },
        };
        self.held[at].1 += 1;
        Some(at as u8 + 1)
    }

    /// One side holding index `i` has left.
    #[inline]
    pub fn release(&mut self, i: u8) {
        if i != Self::USUAL {
            self.held[i as usize - 1].1 -= 1;
        }
    }

    #[inline]
    pub fn get(&self, i: u8) -> u64 {
        if i == Self::USUAL { self.usual } else { self.held[i as usize - 1].0 }
    }

    /// The values held by some side.
    pub fn values_mut(&mut self) -> impl Iterator<Item = &mut u64> {
        self.held.iter_mut().filter(|(_, n)| *n > 0).map(|(v, _)| v)
    }

    /// Indexes held, for the tests.
    pub fn in_use(&self) -> usize {
        self.held.iter().filter(|&&(_, n)| n > 0).count()
    }
}

/// A shard's tables of the values its waiting sides hold by index: span
/// multipliers (from sampling ratios; 1 nearly always) by their bits, and
/// protocols (a handful of names) by their interned ids.
#[derive(Debug)]
pub struct Indexes {
    pub multipliers: ByteIndex,
    pub protocols: ByteIndex,
}

impl Default for Indexes {
    fn default() -> Self {
        Indexes { multipliers: ByteIndex::new(1f64.to_bits()), protocols: ByteIndex::new(u64::from(EMPTY)) }
    }
}

impl Indexes {
    /// Both indexes of `e`, or neither.
    #[inline]
    fn acquire(&mut self, e: &HalfEdge) -> Option<(u8, u8)> {
        let multiplier = self.multipliers.acquire(e.multiplier.to_bits())?;
        match self.protocols.acquire(u64::from(e.protocol)) {
            Some(protocol) => Some((multiplier, protocol)),
            None => {
                self.multipliers.release(multiplier);
                None
            }
        }
    }

    /// `w` has left the store: the indexes it held are free for others.
    #[inline]
    pub fn release(&mut self, w: &Waiting) {
        if !w.is_whole() {
            let (multiplier, protocol) = w.indexes();
            self.multipliers.release(multiplier);
            self.protocols.release(protocol);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pairing::SideWrite;
    use crate::pairing::edge::tests::{client, server};

    #[test]
    fn a_waiting_side_gives_back_its_edge_exactly_but_its_time() {
        let mut ix = Indexes::default();
        // The longest durations a side keeps (the client starts at 10, the server at 15).
        let (longest_client, longest_server) = (10 + Waiting::MAX_DUR_NS, 15 + Waiting::MAX_DUR_NS);
        let sides = [
            client(5, 8),
            SideWrite { error: true, multiplier: 2.5, protocol: 3, ..client(5, EMPTY) },
            SideWrite { kind: SpanKind::Producer, ..client(5, 8) },
            server(6, true),
            SideWrite { error: true, kind: SpanKind::Consumer, protocol: 9, ..server(6, false) },
            SideWrite { end_ns: longest_client, ..client(5, 8) },
            SideWrite { end_ns: longest_server, ..server(6, false) },
        ];
        for w in sides {
            let mut e = HalfEdge::default();
            e.write(&w);
            e.write(&w);
            let timeless = |e: HalfEdge| HalfEdge { client_end_ns: 0, server_start_ns: 0, ..e };
            let kept = Waiting::one_side(&e, &mut ix).expect("one side");
            assert_eq!(kept.edge(&ix), timeless(e), "{w:?}");
            e.matched = true;
            assert_eq!(Waiting::one_side(&e, &mut ix).unwrap().edge(&ix), timeless(e));
        }
        assert_eq!((ix.multipliers.in_use(), ix.protocols.in_use()), (1, 2));
        // A nanosecond past 40 bits of duration: kept whole elsewhere.
        let too_long = [
            SideWrite { end_ns: longest_client + 1, ..client(5, 8) },
            SideWrite { end_ns: longest_server + 1, ..server(6, false) },
        ];
        for w in too_long {
            let mut e = HalfEdge::default();
            e.write(&w);
            assert_eq!(Waiting::one_side(&e, &mut ix), None);
        }
        // Both sides seen, one without a service: kept whole elsewhere.
        let mut e = HalfEdge::default();
        e.write(&client(EMPTY, EMPTY));
        e.write(&server(6, false));
        assert!(!e.is_complete());
        assert_eq!(Waiting::one_side(&e, &mut ix), None);
        // A complete database call does not fit one side either.
        let mut db = HalfEdge::default();
        db.write(&SideWrite { database: Some(7), ..client(5, EMPTY) });
        assert_eq!(Waiting::one_side(&db, &mut ix), None);
        assert_eq!(std::mem::size_of::<Waiting>(), 16);
        assert_eq!(std::mem::align_of::<Waiting>(), 4);
    }

    /// A side refused for its protocol keeps no multiplier index, and one
    /// that leaves frees both.
    #[test]
    fn a_side_holds_both_indexes_or_neither() {
        let mut ix = Indexes::default();
        for p in 0..255 {
            assert!(ix.protocols.acquire(100 + p).is_some());
        }
        let mut e = HalfEdge::default();
        e.write(&SideWrite { multiplier: 4.0, protocol: 99, ..client(5, 8) });
        assert_eq!(Waiting::one_side(&e, &mut ix), None);
        assert_eq!(ix.multipliers.in_use(), 0);
        e.protocol = 100;
        let w = Waiting::one_side(&e, &mut ix).expect("a held protocol");
        assert_eq!((ix.multipliers.in_use(), ix.protocols.get(w.indexes().1)), (1, 100));
        ix.release(&w);
        assert_eq!(ix.multipliers.in_use(), 0);
        ix.release(&Waiting::whole());
        assert_eq!(ix.protocols.in_use(), 255, "a marker holds no index");
    }

    #[test]
    fn values_are_held_by_index_counted_and_reused() {
        let mut m = ByteIndex::new(1f64.to_bits());
        let b = f64::to_bits;
        assert_eq!(m.acquire(b(1.0)), Some(ByteIndex::USUAL));
        let ten = m.acquire(b(10.0)).unwrap();
        assert_eq!(m.acquire(b(10.0)), Some(ten), "the same value, the same index");
        let third = m.acquire(b(1.0 / 3.0)).unwrap();
        assert_ne!(third, ten);
        assert_eq!((m.get(ten), m.get(third), m.get(ByteIndex::USUAL)), (b(10.0), b(1.0 / 3.0), b(1.0)));
        assert_eq!(m.in_use(), 2);
        m.release(ten);
        assert_eq!(m.in_use(), 2, "still held once");
        m.release(ten);
        assert_eq!(m.in_use(), 1);
        assert_eq!(m.values_mut().map(|v| *v).collect::<Vec<_>>(), [b(1.0 / 3.0)]);
        assert_eq!(m.acquire(b(4.0)), Some(ten), "a free index is reused");
        // -0 and 0 are kept by their bits.
        let (zero, neg) = (m.acquire(b(0.0)).unwrap(), m.acquire(b(-0.0)).unwrap());
        assert_ne!(zero, neg);
        // All 255 indexes taken: a new value has none, a held one still does.
        let mut full = ByteIndex::new(0);
        for i in 0..255 {
            assert_eq!(full.acquire(2 + i), Some(i as u8 + 1));
        }
        assert_eq!(full.acquire(1000), None);
        assert_eq!(full.acquire(2), Some(1));
        assert_eq!(full.acquire(0), Some(ByteIndex::USUAL));
        full.release(7);
        assert_eq!(full.acquire(1000), Some(7));
    }
}
