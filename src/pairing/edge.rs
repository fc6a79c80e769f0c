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
/// in the store it waits as a [`super::Waiting`].
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
pub(crate) mod tests {
    use super::*;

    pub(crate) fn client(service: u32, peer: u32) -> SideWrite {
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

    pub(crate) fn server(service: u32, root: bool) -> SideWrite {
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
}
