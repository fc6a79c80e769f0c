//! The steady-state workload shared by the benchmarks and the profiling
//! example: a ring of corpus batches replayed with an advancing clock.
//!
//! Each batch holds 1 000 spans and stands for 20 ms of traffic (50 000
//! spans/s). The ring covers 12.8 s of trace time, longer than the 10 s wait
//! plus the 1 s between expiry runs, so by the time a batch comes round again
//! everything its previous copy left in the store has expired: replayed
//! traces never meet themselves, and the store holds what a live stream at
//! that rate would hold.
#![allow(dead_code)]

use servicemap::corpus::Corpus;
use servicemap::{Compat, Config, Engine};

pub const SPANS_PER_BATCH: usize = 1000;
pub const BATCH_INTERVAL_NS: u64 = 20_000_000;
pub const RING: usize = 640;
/// Batches between two `expire` calls (1 s of trace time).
pub const EXPIRE_EVERY: u64 = 50;
/// 2026-01-01T00:00:00Z.
pub const T0: u64 = 1_767_225_600_000_000_000;
pub const SEED: u64 = 2026;

/// The Tempo preset with room for every waiting span at this rate.
pub fn config() -> Config {
    let mut c = Config::preset(Compat::Tempo);
    c.max_items = 1_000_000;
    c
}

pub struct Replay {
    pub ring: Vec<Vec<u8>>,
    pub bytes_per_span: f64,
}

impl Replay {
    pub fn new() -> Replay {
        let mut corpus = Corpus::new(SEED);
        let ring = corpus.batches(RING, SPANS_PER_BATCH);
        Replay { ring, bytes_per_span: corpus.stats().bytes_per_span() }
    }

    pub fn now(k: u64) -> u64 {
        T0 + k * BATCH_INTERVAL_NS
    }

    /// Consumes the `k`-th batch of the endless replay at its time, and
    /// expires on every `EXPIRE_EVERY`-th.
    #[inline]
    pub fn feed(&self, engine: &Engine, k: u64) {
        let now = Self::now(k);
        engine.consume(&self.ring[(k % RING as u64) as usize], now).expect("corpus batches are valid");
        if k % EXPIRE_EVERY == 0 {
            engine.expire(now);
        }
    }

    /// Replays the ring once so that series exist and the store is at its
    /// steady size; returns the next batch number.
    pub fn warm(&self, engine: &Engine) -> u64 {
        let n = RING as u64;
        for k in 0..n {
            self.feed(engine, k);
        }
        n
    }
}
