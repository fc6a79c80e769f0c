//! Half-built edges and the rules that complete or expire them.
//!
//! Each span writes its own side of an edge; the edge is complete when both
//! a client and a server service are known. Scalars that both sides write
//! (connection type, multiplier, span kind, peer) keep the value of the span
//! processed last, as in both peers. What an edge becomes when it expires
//! (a virtual-node edge, or an unmatched count) depends on the preset.

use crate::config::{Compat, Config};
use crate::series::intern::EMPTY;
use crate::series::{ConnType, Virtual};
use crate::wire::SpanKind;

/// A half-edge being built. Interned ids (0 = absent) keep it small;
/// dimension values live beside the store, per slot, in [`crate::engine`];
/// in the store it waits as a [`Waiting`].
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct HalfEdge {
    pub client: u32,
    pub server: u32,
    pub peer: u32,
    pub client_dur_ns: u64,
    pub server_dur_ns: u64,
    pub client_end_ns: u64,
    pub server_start_ns: u64,
    pub multiplier: f64,
    pub conn: ConnType,
    pub last_kind: SpanKind,
    pub failed: bool,
    /// The server/consumer span itself reported the failure.
    pub server_failed: bool,
    /// A server/consumer span with no parent made this edge.
    pub root: bool,
    pub seen_client: bool,
    pub seen_server: bool,
    /// The server side was written last (decides unprefixed dimensions).
    pub server_last: bool,
    /// A producer that already served a linked consumer.
    pub matched: bool,
    /// The protocol (rpc.system, messaging.system, db.system or "http"), from
    /// the first span that told it.
    pub protocol: u32,
}

impl Default for HalfEdge {
    fn default() -> Self {
        HalfEdge {
            client: EMPTY,
            server: EMPTY,
            peer: EMPTY,
            client_dur_ns: 0,
            server_dur_ns: 0,
            client_end_ns: 0,
            server_start_ns: 0,
            multiplier: 1.0,
            conn: ConnType::Plain,
            last_kind: SpanKind::Unspecified,
            failed: false,
            server_failed: false,
            root: false,
            seen_client: false,
            seen_server: false,
            server_last: false,
            matched: false,
            protocol: EMPTY,
        }
    }
}

/// A half-edge as the store keeps it: 20 bytes against [`HalfEdge`]'s 72.
/// A waiting edge has seen one side (when both have come it completes and
/// leaves), so only that side's service and duration are kept; its time,
/// which only the messaging-latency histogram reads, waits beside the store
/// when that histogram is on (see [`super::shard::Shard`]). An edge that
/// holds both sides in the store, as a database call does for the moment its
/// linked consumers are served, does not fit, nor does a duration past 40
/// bits (about 18 minutes): [`Waiting::one_side`] refuses it and the shard
/// keeps it whole, apart.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Waiting {
    service: u32,
    peer: u32,
    protocol: u32,
    /// The duration's low 32 bits, in nanoseconds; `dur_high` holds the next 8.
    dur_low: u32,
    dur_high: u8,
    kind: SpanKind,
    /// The flags below, and the connection type in the top two bits.
    flags: u8,
    /// The span multiplier, by its index in the shard's [`Multipliers`].
    multiplier: u8,
}

impl Default for Waiting {
    fn default() -> Self {
        Waiting::from_parts(&HalfEdge::default(), 0, Multipliers::ONE)
    }
}

impl Waiting {
    /// The seen side is the client's.
    const CLIENT: u8 = 1;
    const FAILED: u8 = 2;
    const SERVER_FAILED: u8 = 4;
    const ROOT: u8 = 8;
    const MATCHED: u8 = 16;
    /// The edge did not fit one side and is kept whole beside the store.
    const WHOLE: u8 = 32;
    /// Where the connection type sits in `flags`.
    const CONN_SHIFT: u32 = 6;
    /// The longest duration kept in a side, in nanoseconds.
    const MAX_DUR_NS: u64 = (1 << 40) - 1;

    fn from_parts(e: &HalfEdge, side: u8, multiplier: u8) -> Waiting {
        let client = side & Self::CLIENT != 0;
        let flag = |on: bool, f: u8| if on { f } else { 0 };
        let dur = if client { e.client_dur_ns } else { e.server_dur_ns };
        Waiting {
            service: if client { e.client } else { e.server },
            peer: e.peer,
            protocol: e.protocol,
            dur_low: dur as u32,
            dur_high: (dur >> 32) as u8,
            kind: e.last_kind,
            flags: side
                | flag(e.failed, Self::FAILED)
                | flag(e.server_failed, Self::SERVER_FAILED)
                | flag(e.root, Self::ROOT)
                | flag(e.matched, Self::MATCHED)
                | (e.conn as u8) << Self::CONN_SHIFT,
            multiplier,
        }
    }

    /// `e` as one side, if that is all it holds, its duration fits and its
    /// multiplier has an index in `m` (which it then holds until
    /// [`Multipliers::release`]): [`Waiting::edge`] gives it back exactly but
    /// for the side's time, which the caller keeps if it needs it.
    #[inline]
    pub fn one_side(e: &HalfEdge, m: &mut Multipliers) -> Option<Waiting> {
        let client_only = e.seen_client
            && !e.seen_server
            && !e.server_last
            && e.server == EMPTY
            && e.server_dur_ns == 0
            && e.server_start_ns == 0
            && !e.root
            && !e.server_failed
            && e.client_dur_ns <= Self::MAX_DUR_NS;
        let server_only = e.seen_server
            && !e.seen_client
            && e.server_last
            && e.client == EMPTY
            && e.client_dur_ns == 0
            && e.client_end_ns == 0
            && e.server_dur_ns <= Self::MAX_DUR_NS;
        let side = if client_only {
            Self::CLIENT
        } else if server_only {
            0
        } else {
            return None;
        };
        let w = Waiting::from_parts(e, side, m.acquire(e.multiplier)?);
        debug_assert_eq!(w.edge(m), HalfEdge { client_end_ns: 0, server_start_ns: 0, ..*e });
        Some(w)
    }

    /// A marker for an edge kept whole elsewhere.
    pub fn whole() -> Waiting {
        Waiting { flags: Self::WHOLE, ..Waiting::default() }
    }

    pub fn is_whole(&self) -> bool {
        self.flags & Self::WHOLE != 0
    }

    /// The multiplier's index, to release when the side leaves the store.
    pub fn multiplier(&self) -> u8 {
        self.multiplier
    }

    /// The half-edge this side stands for, with the side's time 0.
    #[inline]
    pub fn edge(&self, m: &Multipliers) -> HalfEdge {
        let f = |bit: u8| self.flags & bit != 0;
        let conn = match self.flags >> Self::CONN_SHIFT {
            0 => ConnType::Plain,
            1 => ConnType::MessagingSystem,
            2 => ConnType::Database,
            _ => ConnType::VirtualNode,
        };
        let dur = u64::from(self.dur_high) << 32 | u64::from(self.dur_low);
        let mut e = HalfEdge {
            peer: self.peer,
            protocol: self.protocol,
            last_kind: self.kind,
            conn,
            multiplier: m.get(self.multiplier),
            failed: f(Self::FAILED),
            server_failed: f(Self::SERVER_FAILED),
            root: f(Self::ROOT),
            matched: f(Self::MATCHED),
            ..HalfEdge::default()
        };
        if f(Self::CLIENT) {
            (e.client, e.client_dur_ns, e.seen_client) = (self.service, dur, true);
        } else {
            (e.server, e.server_dur_ns, e.seen_server) = (self.service, dur, true);
            e.server_last = true;
        }
        e
    }

    /// The interned ids it holds, for the interner's compaction.
    pub fn ids_mut(&mut self) -> [&mut u32; 3] {
        [&mut self.service, &mut self.peer, &mut self.protocol]
    }
}

/// The span multipliers other than 1 that a shard's waiting sides hold, each
/// by a one-byte index (0 is 1): multipliers come from sampling ratios, which
/// take few distinct values, so a waiting side needs a byte for its
/// multiplier rather than eight. An index is counted by the sides holding it
/// and reused once none does; when all 255 are held, a side with yet another
/// multiplier is kept whole instead (see [`Waiting::one_side`]).
#[derive(Debug, Default)]
pub struct Multipliers {
    /// Index − 1 → the multiplier's bits and how many sides hold it.
    held: Vec<(u64, u32)>,
}

impl Multipliers {
    pub(crate) const ONE: u8 = 0;

    /// The index of `m`, counted as held once more; `None` when all are taken.
    #[inline]
    pub fn acquire(&mut self, m: f64) -> Option<u8> {
        let bits = m.to_bits();
        if bits == 1f64.to_bits() {
            return Some(Self::ONE);
        }
        let at = match self.held.iter().position(|&(b, n)| n > 0 && b == bits) {
            Some(at) => at,
            None => match self.held.iter().position(|&(_, n)| n == 0) {
                Some(free) => {
                    self.held[free].0 = bits;
                    free
                }
                None if self.held.len() < u8::MAX as usize => {
                    self.held.push((bits, 0));
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
        if i != Self::ONE {
            self.held[i as usize - 1].1 -= 1;
        }
    }

    #[inline]
    pub fn get(&self, i: u8) -> f64 {
        if i == Self::ONE { 1.0 } else { f64::from_bits(self.held[i as usize - 1].0) }
    }

    /// Indexes held, for the tests.
    pub fn in_use(&self) -> usize {
        self.held.iter().filter(|&&(_, n)| n > 0).count()
    }
}

/// What one span contributes to its side, resolved to interned ids.
#[derive(Debug, Clone, Copy)]
pub struct SideWrite {
    pub kind: SpanKind,
    pub service: u32,
    pub start_ns: u64,
    pub end_ns: u64,
    pub error: bool,
    pub multiplier: f64,
    /// The first peer attribute on the span, if the preset reads it on this side.
    pub peer: u32,
    /// For a client/producer database call: the database node's name.
    pub database: Option<u32>,
    pub root: bool,
    pub protocol: u32,
}

impl SideWrite {
    pub fn duration_ns(&self) -> u64 {
        // A span that ends before it starts has duration 0 (Tempo clamps; contrib underflows).
        self.end_ns.saturating_sub(self.start_ns)
    }

    pub fn is_client_side(&self) -> bool {
        matches!(self.kind, SpanKind::Client | SpanKind::Producer)
    }
}

impl HalfEdge {
    /// Applies one span's side. Last writer wins for shared scalars.
    pub fn write(&mut self, w: &SideWrite) {
        self.last_kind = w.kind;
        self.failed |= w.error;
        self.multiplier = w.multiplier;
        if w.peer != EMPTY {
            self.peer = w.peer;
        }
        if self.protocol == EMPTY {
            self.protocol = w.protocol;
        }
        self.conn = if matches!(w.kind, SpanKind::Producer | SpanKind::Consumer) {
            ConnType::MessagingSystem
        } else {
            ConnType::Plain
        };
        if w.is_client_side() {
            self.seen_client = true;
            self.server_last = false;
            self.client = w.service;
            self.client_dur_ns = w.duration_ns();
            self.client_end_ns = w.end_ns;
            if let Some(db) = w.database {
                self.conn = ConnType::Database;
                self.server = db;
                self.server_dur_ns = w.duration_ns();
            }
        } else {
            self.seen_server = true;
            self.server_last = true;
            self.server_failed |= w.error;
            self.root |= w.root;
            self.server = w.service;
            self.server_dur_ns = w.duration_ns();
            self.server_start_ns = w.start_ns;
        }
    }

    /// Copies a producer's client side into a linked consumer's edge.
    pub fn take_client_from(&mut self, producer: &HalfEdge) {
        self.client = producer.client;
        self.client_dur_ns = producer.client_dur_ns;
        self.client_end_ns = producer.client_end_ns;
        self.failed |= producer.failed;
        self.seen_client = true;
        if producer.protocol != EMPTY {
            self.protocol = producer.protocol;
        }
        self.conn = ConnType::MessagingSystem;
    }

    pub fn is_complete(&self) -> bool {
        self.client != EMPTY && self.server != EMPTY
    }
}

/// What an expired edge becomes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Expiry {
    /// Written as a virtual-node edge with these names. `counted` says whether
    /// it also counts as expired (contrib counts every expiry).
    Virtual { client: u32, server: u32, side: Virtual, counted: bool },
    /// Nothing is written; it counts as expired (unpaired), unless `counted` is false.
    Unmatched { counted: bool },
}

/// Preset-dependent rules for expiry, resolved once from the config.
#[derive(Debug, Clone)]
pub struct ExpiryRules {
    pub virtual_nodes: bool,
    pub client_from_peer: bool,
    pub server_fallback: u32,
    pub includes_virtual: bool,
    pub messaging_never_virtual: bool,
}

impl ExpiryRules {
    /// `fallback` is the interned id of `config.virtual_server_fallback` (0 if none).
    pub fn new(config: &Config, fallback: u32) -> ExpiryRules {
        // contrib turns virtual nodes off when its peer attribute list is empty.
        let virtual_nodes = !(config.compat == Compat::Contrib && config.peer_attributes.is_empty());
        ExpiryRules {
            virtual_nodes,
            client_from_peer: config.virtual_client_from_peer,
            server_fallback: fallback,
            includes_virtual: config.expired_includes_virtual,
            messaging_never_virtual: config.messaging_never_virtual,
        }
    }

    /// Decides what `e` becomes at expiry. `user` is the interned id of "user".
    pub fn decide(&self, e: &HalfEdge, user: u32) -> Expiry {
        if e.matched {
            return Expiry::Unmatched { counted: false };
        }
        let unmatched = Expiry::Unmatched { counted: true };
        if !self.virtual_nodes || (self.messaging_never_virtual && e.conn == ConnType::MessagingSystem) {
            return unmatched;
        }
        let counted = self.includes_virtual;
        if e.client == EMPTY {
            if !e.root {
                return unmatched;
            }
            let client = if self.client_from_peer && e.peer != EMPTY { e.peer } else { user };
            return Expiry::Virtual { client, server: e.server, side: Virtual::Client, counted };
        }
        if e.server == EMPTY {
            let server = if e.peer != EMPTY { e.peer } else { self.server_fallback };
            if server != EMPTY {
                return Expiry::Virtual { client: e.client, server, side: Virtual::Server, counted };
            }
        }
        unmatched
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn client(service: u32, peer: u32) -> SideWrite {
        SideWrite {
            kind: SpanKind::Client,
            service,
            start_ns: 10,
            end_ns: 40,
            error: false,
            multiplier: 1.0,
            peer,
            database: None,
            root: false,
            protocol: EMPTY,
        }
    }

    fn server(service: u32, root: bool) -> SideWrite {
        SideWrite { kind: SpanKind::Server, root, start_ns: 15, end_ns: 35, ..client(service, EMPTY) }
    }

    fn rules(c: Compat) -> ExpiryRules {
        let cfg = Config::preset(c);
        let fallback = if c == Compat::Contrib { 99 } else { EMPTY };
        ExpiryRules::new(&cfg, fallback)
    }

    #[test]
    fn both_sides_complete_with_own_durations() {
        let mut e = HalfEdge::default();
        e.write(&client(5, EMPTY));
        assert!(!e.is_complete());
        e.write(&server(6, false));
        assert!(e.is_complete());
        assert_eq!((e.client_dur_ns, e.server_dur_ns), (30, 20));
        assert_eq!(e.conn, ConnType::Plain);
    }

    #[test]
    fn database_completes_at_once_with_client_duration_on_both_sides() {
        let mut e = HalfEdge::default();
        e.write(&SideWrite { database: Some(7), ..client(5, EMPTY) });
        assert!(e.is_complete());
        assert_eq!(e.conn, ConnType::Database);
        assert_eq!(e.server_dur_ns, 30);
    }

    #[test]
    fn negative_duration_is_zero() {
        let w = SideWrite { start_ns: 50, end_ns: 40, ..client(5, EMPTY) };
        assert_eq!(w.duration_ns(), 0);
    }

    #[test]
    fn expiry_rules_per_preset() {
        let user = 1;
        // Root server, no peer: user (both presets).
        let mut root = HalfEdge::default();
        root.write(&server(6, true));
        for c in [Compat::Tempo, Compat::Contrib] {
            assert!(matches!(rules(c).decide(&root, user), Expiry::Virtual { client: 1, side: Virtual::Client, .. }));
        }
        // Root server with a peer: Tempo names the client after it, contrib says user.
        root.peer = 8;
        assert!(matches!(rules(Compat::Tempo).decide(&root, user), Expiry::Virtual { client: 8, .. }));
        assert!(matches!(rules(Compat::Contrib).decide(&root, user), Expiry::Virtual { client: 1, .. }));
        // Lone client without peer: Tempo counts it, contrib writes `unknown`.
        let mut lone = HalfEdge::default();
        lone.write(&client(5, EMPTY));
        assert_eq!(rules(Compat::Tempo).decide(&lone, user), Expiry::Unmatched { counted: true });
        assert_eq!(
            rules(Compat::Contrib).decide(&lone, user),
            Expiry::Virtual { client: 5, server: 99, side: Virtual::Server, counted: true }
        );
        // Non-root server without client: nothing in either.
        let mut orphan = HalfEdge::default();
        orphan.write(&server(6, false));
        for c in [Compat::Tempo, Compat::Contrib] {
            assert_eq!(rules(c).decide(&orphan, user), Expiry::Unmatched { counted: true });
        }
        // Lone producer: contrib never makes messaging edges virtual.
        let mut producer = HalfEdge::default();
        producer.write(&SideWrite { kind: SpanKind::Producer, ..client(5, 8) });
        assert_eq!(rules(Compat::Contrib).decide(&producer, user), Expiry::Unmatched { counted: true });
        assert!(matches!(
            rules(Compat::Tempo).decide(&producer, user),
            Expiry::Virtual { server: 8, counted: false, .. }
        ));
    }

    #[test]
    fn a_waiting_side_gives_back_its_edge_exactly_but_its_time() {
        let mut m = Multipliers::default();
        // The longest durations a side keeps (the client starts at 10, the server at 15).
        let (longest_client, longest_server) = (10 + Waiting::MAX_DUR_NS, 15 + Waiting::MAX_DUR_NS);
        let sides = [
            client(5, 8),
            SideWrite { error: true, multiplier: 2.5, protocol: 3, ..client(5, EMPTY) },
            SideWrite { kind: SpanKind::Producer, ..client(5, 8) },
            server(6, true),
            SideWrite { error: true, kind: SpanKind::Consumer, ..server(6, false) },
            SideWrite { end_ns: longest_client, ..client(5, 8) },
            SideWrite { end_ns: longest_server, ..server(6, false) },
        ];
        for w in sides {
            let mut e = HalfEdge::default();
            e.write(&w);
            e.write(&w);
            let timeless = |e: HalfEdge| HalfEdge { client_end_ns: 0, server_start_ns: 0, ..e };
            let kept = Waiting::one_side(&e, &mut m).expect("one side");
            assert_eq!(kept.edge(&m), timeless(e), "{w:?}");
            e.matched = true;
            assert_eq!(Waiting::one_side(&e, &mut m).unwrap().edge(&m), timeless(e));
        }
        // A nanosecond past 40 bits of duration: kept whole elsewhere.
        for w in [
            SideWrite { end_ns: longest_client + 1, ..client(5, 8) },
            SideWrite { end_ns: longest_server + 1, ..server(6, false) },
        ] {
            let mut e = HalfEdge::default();
            e.write(&w);
            assert_eq!(Waiting::one_side(&e, &mut m), None);
        }
        // Both sides seen, one without a service: kept whole elsewhere.
        let mut e = HalfEdge::default();
        e.write(&client(EMPTY, EMPTY));
        e.write(&server(6, false));
        assert!(!e.is_complete());
        assert_eq!(Waiting::one_side(&e, &mut m), None);
        // A complete database call does not fit one side either.
        let mut db = HalfEdge::default();
        db.write(&SideWrite { database: Some(7), ..client(5, EMPTY) });
        assert_eq!(Waiting::one_side(&db, &mut m), None);
        assert_eq!(std::mem::size_of::<Waiting>(), 20);
    }

    #[test]
    fn multipliers_are_held_by_index_counted_and_reused() {
        let mut m = Multipliers::default();
        assert_eq!(m.acquire(1.0), Some(Multipliers::ONE));
        let ten = m.acquire(10.0).unwrap();
        assert_eq!(m.acquire(10.0), Some(ten), "the same value, the same index");
        let third = m.acquire(1.0 / 3.0).unwrap();
        assert_ne!(third, ten);
        assert_eq!((m.get(ten), m.get(third), m.get(Multipliers::ONE)), (10.0, 1.0 / 3.0, 1.0));
        assert_eq!(m.in_use(), 2);
        m.release(ten);
        assert_eq!(m.in_use(), 2, "still held once");
        m.release(ten);
        assert_eq!(m.in_use(), 1);
        assert_eq!(m.acquire(4.0), Some(ten), "a free index is reused");
        // -0 and 0, and NaN, are kept by their bits.
        let (zero, neg) = (m.acquire(0.0).unwrap(), m.acquire(-0.0).unwrap());
        assert_ne!(zero, neg);
        let nan = m.acquire(f64::NAN).unwrap();
        assert!(m.get(nan).is_nan());
        // All 255 indexes taken: a new value has none, a held one still does.
        let mut full = Multipliers::default();
        for i in 0..255 {
            assert_eq!(full.acquire(2.0 + i as f64), Some(i as u8 + 1));
        }
        assert_eq!(full.acquire(1000.0), None);
        assert_eq!(full.acquire(2.0), Some(1));
        assert_eq!(full.acquire(1.0), Some(Multipliers::ONE));
        full.release(7);
        assert_eq!(full.acquire(1000.0), Some(7));
    }
}
