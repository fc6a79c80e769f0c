mod common;
use common::*;
use servicemap::{Config, Engine, Format};

#[test]
fn smoke() {
    let e = Engine::new(Config::from_json(br#"{"initial_zero":false}"#).unwrap());
    let b = batch(vec![
        resource(Some("a"), vec![], vec![span(CLIENT, trace(1), sid(1), None, T0, T0 + 2 * SEC)]),
        resource(Some("b"), vec![], vec![span(SERVER, trace(1), sid(2), Some(sid(1)), T0, T0 + SEC)]),
    ]);
    e.consume(&b, T0).unwrap();
    println!("{}", String::from_utf8(e.render(Format::Prometheus, T0)).unwrap());
    println!("{}", String::from_utf8(e.render(Format::StatsJson, T0)).unwrap());
}
