//! Placeholder.
use crate::config::Config;
use crate::error::Error;
pub enum Format { Prometheus, OpenMetrics, OtlpMetrics, StatsJson }
pub struct Engine { _c: Config }
impl Engine {
    pub fn new(c: Config) -> Engine { Engine { _c: c } }
    pub fn consume(&self, _b: &[u8], _now: u64) -> Result<(), Error> { Ok(()) }
    pub fn expire(&self, _now: u64) {}
    pub fn expire_all(&self, _now: u64) {}
    pub fn render(&self, _f: Format, _now: u64) -> Vec<u8> { vec![] }
}
