//! The incidents of `tests/fixtures/incidents/` and their expected answers
//! (`expected.json`), read the same way by every Rust test of a surface.
#![allow(dead_code)]

use serde_json::Value;
use std::path::{Path, PathBuf};

pub fn dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/incidents")
}

/// One question and its answer: the impact JSON, and the text of
/// `servicemap impact SERVICE --format text`, a line each.
pub struct Answer {
    pub service: String,
    pub impact: Value,
    pub text: String,
}

pub struct Case {
    pub name: String,
    pub file: PathBuf,
    pub answers: Vec<Answer>,
}

pub fn cases() -> Vec<Case> {
    let table: Value = serde_json::from_slice(&std::fs::read(dir().join("expected.json")).unwrap()).unwrap();
    table["incidents"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| {
            let name = i["name"].as_str().unwrap().to_string();
            let answers = i["answers"]
                .as_array()
                .unwrap()
                .iter()
                .map(|a| Answer {
                    service: a["service"].as_str().unwrap().to_string(),
                    impact: a["impact"].clone(),
                    text: a["text"].as_array().unwrap().iter().map(|l| format!("{}\n", l.as_str().unwrap())).collect(),
                })
                .collect();
            Case { file: dir().join(format!("{name}.jsonl")), name, answers }
        })
        .collect()
}

/// The batches of an incident file as OTLP protobuf, each with the time it
/// is fed at: the latest span end time read so far.
pub fn batches(file: &Path) -> Vec<(u64, Vec<u8>)> {
    use prost::Message;
    let data = std::fs::read(file).unwrap();
    let mut now = 0;
    servicemap::wire::json::batches(&data, servicemap::wire::json::Layout::Lines)
        .map(|b| {
            let b = b.unwrap();
            for rs in &b.resource_spans {
                for ss in &rs.scope_spans {
                    for s in &ss.spans {
                        now = now.max(s.end_time_unix_nano);
                    }
                }
            }
            (now, b.encode_to_vec())
        })
        .collect()
}
