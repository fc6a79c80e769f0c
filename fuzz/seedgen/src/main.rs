//! `seedgen FIXTURES_DIR SEEDS_DIR CORPUS_DIR`: fills CORPUS_DIR/<target>/
//! with seed inputs:
//! - otlp_json: every OTLP/JSON fixture as it is;
//! - otlp_proto: every batch of those fixtures as protobuf, plus a few
//!   batches from the structured writer (nesting, pairs, odd encodings);
//! - every target: the small hand-written seeds in SEEDS_DIR/<target>/.
//! Seeds are named by content, so running it again adds nothing new.

// The hand-written protobuf writer and the generator, shared with the fuzz
// crate without linking libFuzzer into this binary.
#[path = "../../src/pb.rs"]
#[allow(dead_code)]
mod pb;
#[path = "../../src/generate.rs"]
#[allow(dead_code)]
mod generate;

use generate::*;
use prost::Message;
use servicemap::wire::json::{Layout, batches};
use std::path::{Path, PathBuf};

fn put(dir: &Path, data: &[u8]) {
    // FNV-1a: stable names without another dependency.
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in data {
        h = (h ^ *b as u64).wrapping_mul(0x100_0000_01b3);
    }
    std::fs::create_dir_all(dir).unwrap();
    std::fs::write(dir.join(format!("seed-{h:016x}")), data).unwrap();
}

fn files(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(rd) = std::fs::read_dir(dir) else { return };
    for e in rd.flatten() {
        let p = e.path();
        if p.is_dir() {
            files(&p, out);
        } else {
            out.push(p);
        }
    }
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let [_, fixtures, seeds, corpus] = &args[..] else {
        eprintln!("usage: seedgen FIXTURES_DIR SEEDS_DIR CORPUS_DIR");
        std::process::exit(2);
    };
    let corpus = Path::new(corpus);
    let (mut json, mut proto) = (0, 0);
    let mut all = Vec::new();
    files(Path::new(fixtures), &mut all);
    all.sort();
    for f in &all {
        let ext = f.extension().and_then(|e| e.to_str()).unwrap_or("");
        if ext != "json" && ext != "jsonl" {
            continue;
        }
        let data = std::fs::read(f).unwrap();
        for b in batches(&data, Layout::Detect).flatten() {
            put(&corpus.join("otlp_proto"), &b.encode_to_vec());
            proto += 1;
        }
        put(&corpus.join("otlp_json"), &data);
        json += 1;
    }
    // Structured batches as raw seeds: a deep-ish peer.service (under the
    // nesting limit the engine may keep), pairs of each style, odd encodings.
    let keys = Keys { resource: vec!["service.name".into()], span: vec!["peer.service".into(), "db.name".into()] };
    let nest = |depth, pattern| Nest {
        depth: Depth(depth),
        pattern,
        stride: 4,
        siblings: 1,
        leaf: Leaf::Str(Name::Pool(2)),
        pad: 0,
        broken_inside: false,
    };
    let pair = |style, trace| Pair {
        trace,
        client_span: 1,
        server_span: 2,
        client: Name::Pool(0),
        server: Name::Pool(1),
        style,
        client_attrs: vec![Attr { key: Key::Wanted(0), value: Value::Str(Name::Pool(3)), odd: 0 }],
        server_attrs: Vec::new(),
        latency_ms: 12,
        error: style == 1,
        server_first: style == 2,
    };
    let specs = vec![
        vec![Item::Deep { service: Name::Pool(0), key: 0, nest: nest(40, 0x5555), kind: 1 }],
        vec![Item::Deep { service: Name::Invalid(1, 0), key: 1, nest: nest(8, !0), kind: 1 }],
        vec![Item::Pair(pair(0, 1)), Item::Pair(pair(1, 2)), Item::Pair(pair(2, 3))],
        vec![Item::Resource(Resource {
            service: Some(Value::Str(Name::Invalid(2, 3))),
            attrs: vec![Attr { key: Key::Other(Name::Raw(b"service.version".to_vec())), value: Value::Int(3), odd: 3 }],
            scopes: vec![vec![Span {
                trace: 4,
                span: 5,
                parent: Some(6),
                kind: 1,
                start: Time::Rel(0),
                end: Time::Rel(-5),
                error: true,
                name: Some(Name::Raw(b"GET /\xff".to_vec())),
                attrs: vec![Attr { key: Key::Wanted(1), value: Value::Several(Box::new(Value::Int(1)), Box::new(Value::Str(Name::Pool(3)))), odd: 7 }],
                links: vec![Link { trace: 4, span: 9, empty_trace: false }],
                enc: 0x7f,
            }]],
            enc: 0x0f,
        })],
    ];
    for items in specs {
        let w = write_batch(&BatchSpec { items, damage: Vec::new() }, &keys, T0);
        put(&corpus.join("otlp_proto"), &w.bytes);
        proto += 1;
    }
    // Hand-written seeds, per target.
    let mut own = 0;
    if let Ok(rd) = std::fs::read_dir(seeds) {
        for target in rd.flatten().filter(|e| e.path().is_dir()) {
            let mut fs = Vec::new();
            files(&target.path(), &mut fs);
            for f in fs {
                put(&corpus.join(target.file_name()), &std::fs::read(&f).unwrap());
                own += 1;
            }
        }
    }
    println!("seeds: {json} otlp_json, {proto} otlp_proto, {own} hand-written, in {}", corpus.display());
}
