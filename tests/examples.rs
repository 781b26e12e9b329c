//! The example handlers, run through the host's runtime on every sample
//! alert, make the decisions their documentation promises.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use alerthost::bindings::{Action, Message};
use alerthost::runtime::{Limits, LiveHandler, Runtime, RuntimeOptions};
use alerthost_tests::example;

fn repo() -> &'static Path {
    Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/.."))
}

fn samples() -> Vec<PathBuf> {
    let mut files = Vec::new();
    for dir in ["voevent", "json", "binary"] {
        let dir = repo().join("tests/data/samples").join(dir);
        for entry in std::fs::read_dir(&dir).unwrap() {
            files.push(entry.unwrap().path());
        }
    }
    files.sort();
    assert_eq!(files.len(), 52, "the sample corpus changed");
    files
}

/// Decision per sample file name: the actions, or the error kind.
fn run(name: &str, params: &[(&str, &str)]) -> BTreeMap<String, Result<Vec<Action>, String>> {
    let runtime = Runtime::new(&RuntimeOptions::default()).unwrap();
    let code = runtime
        .load_file(&example(name), &Limits::default())
        .unwrap();
    let params = params
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    let (mut handler, _) = LiveHandler::new(Arc::new(code), params, None).unwrap();
    samples()
        .into_iter()
        .enumerate()
        .map(|(offset, file)| {
            let msg = Message {
                topic: "gcn.test".into(),
                partition: 0,
                offset: offset as i64,
                timestamp: None,
                key: None,
                value: std::fs::read(&file).unwrap(),
                headers: Vec::new(),
            };
            let outcome = handler
                .handle(&msg)
                .outcome
                .map_err(|f| f.kind.as_str().to_owned());
            (
                file.file_name().unwrap().to_string_lossy().into_owned(),
                outcome,
            )
        })
        .collect()
}

#[test]
fn save_all_saves_every_sample_under_the_default_name() {
    let decisions = run("save_all", &[]);
    for (file, outcome) in &decisions {
        let actions = outcome.as_ref().unwrap_or_else(|e| panic!("{file}: {e}"));
        assert!(
            matches!(actions.as_slice(), [Action::Save(save)] if save.name.is_none() && save.value.is_none()),
            "{file}: {actions:?}"
        );
    }
}

#[test]
fn gbm_subthreshold_saves_only_subthreshold_notices_above_the_threshold() {
    let saved = |params: &[(&str, &str)]| -> Vec<String> {
        run("gbm_subthreshold", params)
            .into_iter()
            .filter(|(file, outcome)| {
                let actions = outcome.as_ref().unwrap_or_else(|e| panic!("{file}: {e}"));
                !actions.is_empty()
            })
            .map(|(file, _)| file)
            .collect()
    };
    assert_eq!(
        saved(&[("min_reliability", "2")]),
        ["fermi_gbm_subthresh_546126856.xml"]
    );
    assert!(
        saved(&[("min_reliability", "3")]).is_empty(),
        "reliability 2 < 3"
    );
}

#[test]
fn sky_region_forwards_summaries_of_alerts_inside_the_cone() {
    let decisions = run(
        "sky_region",
        &[
            ("ra", "225"),
            ("dec", "-69.5"),
            ("radius", "1"),
            ("sink", "near"),
        ],
    );
    let mut forwarded = Vec::new();
    for (file, outcome) in &decisions {
        let actions = outcome.as_ref().unwrap_or_else(|e| panic!("{file}: {e}"));
        for action in actions {
            let Action::Forward(forward) = action else {
                panic!("{file}: sky-region only forwards")
            };
            assert_eq!(forward.sink, "near");
            let summary: serde_json::Value =
                serde_json::from_slice(forward.value.as_deref().unwrap()).unwrap();
            let ra = summary["ra"].as_f64().unwrap();
            let dec = summary["dec"].as_f64().unwrap();
            assert!(
                (ra - 225.0).abs() < 2.0 && (dec + 69.5).abs() < 1.0,
                "{summary}"
            );
            forwarded.push(file.clone());
        }
    }
    assert_eq!(
        forwarded,
        [
            "swift_bat_grb_pos_1118357.xml",
            "swift_bat_quicklook_pos_1118357.xml"
        ]
    );
}
