//! Property tests of the payload helpers: on arbitrary bytes, and on real GCN
//! samples cut, spliced and with bytes flipped, no helper panics and each
//! returns promptly (inputs are bounded, so a run takes seconds). The case
//! counts are fixed so CI time stays flat; set `PROPTEST_CASES` to run more.

use std::path::{Path, PathBuf};

use alerthost_guest::payload::{
    self, ClassicBinary, Format, Json, VoEvent, classic_text_pairs, iso_time_to_unix_millis,
};
use proptest::prelude::*;

/// Every sample file under `tests/data/samples`.
fn samples() -> Vec<Vec<u8>> {
    fn walk(dir: &Path, out: &mut Vec<PathBuf>) {
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                walk(&path, out);
            } else if path.extension().is_none_or(|e| e != "md") {
                out.push(path);
            }
        }
    }
    let mut paths = Vec::new();
    walk(
        &Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/data/samples"),
        &mut paths,
    );
    paths.sort();
    assert!(!paths.is_empty(), "no samples found");
    paths.iter().map(|p| std::fs::read(p).unwrap()).collect()
}

/// Use every helper on `bytes` the way a handler would.
fn exercise(bytes: &[u8]) {
    let format = payload::detect(bytes);
    if let Ok(event) = VoEvent::parse(bytes) {
        let _ = event.param("Packet_Type");
        let _ = event.group_param("Trigger", "Test");
        let _ = event.param_f64("Reliability");
        let _ = event.packet_type();
        let _ = event.time_unix_millis();
        for param in &event.params {
            let _ = event.param_f64(&param.name);
        }
    }
    if let Ok(json) = Json::parse(bytes) {
        let _ = json.str("alert_datetime");
        let _ = json.f64("ra");
        let _ = json.get("a.b.0.c");
        if let Some(text) = json.str("trigger_time") {
            let _ = iso_time_to_unix_millis(text);
        }
    }
    for (key, value) in classic_text_pairs(bytes) {
        let _ = iso_time_to_unix_millis(&value);
        let _ = key;
    }
    match ClassicBinary::parse(bytes) {
        Ok(packet) => {
            let _ = packet.packet_type();
            let _ = packet.trigger_number();
            let _ = packet.burst_tjd();
            let _ = packet.burst_sod();
            let _ = packet.burst_unix_millis();
            for i in 0..45 {
                let _ = packet.word(i);
            }
        }
        Err(error) => assert_eq!(error.format(), Format::ClassicBinary),
    }
}

/// A sample changed the way a broken or hostile producer might.
#[derive(Debug, Clone)]
enum Mutation {
    Truncate(usize),
    Flip(usize, u8),
    Insert(usize, Vec<u8>),
    Splice(usize, usize, usize),
}

fn mutation() -> impl Strategy<Value = Mutation> {
    prop_oneof![
        any::<usize>().prop_map(Mutation::Truncate),
        (any::<usize>(), any::<u8>()).prop_map(|(at, bits)| Mutation::Flip(at, bits)),
        (any::<usize>(), prop::collection::vec(any::<u8>(), 1..64))
            .prop_map(|(at, bytes)| Mutation::Insert(at, bytes)),
        (any::<usize>(), any::<usize>(), any::<usize>())
            .prop_map(|(other, from, to)| Mutation::Splice(other, from, to)),
    ]
}

fn apply(mut bytes: Vec<u8>, mutation: &Mutation, all: &[Vec<u8>]) -> Vec<u8> {
    match mutation {
        Mutation::Truncate(at) => bytes.truncate(at % (bytes.len() + 1)),
        Mutation::Flip(at, bits) => {
            if !bytes.is_empty() {
                let at = at % bytes.len();
                bytes[at] ^= bits;
            }
        }
        Mutation::Insert(at, new) => {
            let at = at % (bytes.len() + 1);
            bytes.splice(at..at, new.iter().copied());
        }
        Mutation::Splice(other, from, to) => {
            let other = &all[other % all.len()];
            let from = from % (other.len() + 1);
            let to = from + to % (other.len() - from + 1);
            let at = to % (bytes.len() + 1);
            bytes.splice(at..at, other[from..to].iter().copied());
        }
    }
    bytes
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: 512,
        failure_persistence: None,
        ..ProptestConfig::default()
    })]

    #[test]
    fn helpers_never_panic_on_arbitrary_bytes(bytes in prop::collection::vec(any::<u8>(), 0..4096)) {
        exercise(&bytes);
    }

    #[test]
    fn helpers_never_panic_on_damaged_samples(
        pick in any::<usize>(),
        mutations in prop::collection::vec(mutation(), 1..6),
    ) {
        let all = samples();
        let mut bytes = all[pick % all.len()].clone();
        for mutation in &mutations {
            bytes = apply(bytes, mutation, &all);
        }
        exercise(&bytes);
    }

    #[test]
    fn iso_times_never_panic(text in "\\PC{0,64}") {
        let _ = iso_time_to_unix_millis(&text);
    }

    #[test]
    fn exact_160_byte_packets_always_parse(bytes in prop::collection::vec(any::<u8>(), 160)) {
        let packet = ClassicBinary::parse(&bytes);
        prop_assert!(packet.is_ok(), "{packet:?}");
        exercise(&bytes);
    }
}
