//! Native tests with the SDK's in-memory state: the decisions on every sample
//! alert in the order of `tests/data/first-notice-expected.tsv` (written by
//! reading the samples), and the rules on made-up notices.

use alerthost_guest::testing;

use super::*;

const REPO: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../..");
/// 2026-01-01T00:00:00Z, the message time of the tests.
const T0: i64 = 1_767_225_600_000;
const DAY: i64 = 86_400_000;

fn handler(params: &[(&str, &str)]) -> FirstNotice {
    FirstNotice::init(&Params::new(params.iter().copied())).unwrap()
}

fn sample(path: &str) -> Vec<u8> {
    let path = format!("{REPO}/tests/data/samples/{path}");
    std::fs::read(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
}

/// The rows of the expected-decisions file: (path, key, decision).
fn expected() -> Vec<(String, String, String)> {
    let text =
        std::fs::read_to_string(format!("{REPO}/tests/data/first-notice-expected.tsv")).unwrap();
    text.lines()
        .filter(|line| !line.starts_with('#') && !line.trim().is_empty())
        .map(|line| {
            let fields: Vec<&str> = line.split('\t').collect();
            (
                fields[0].to_owned(),
                fields[1].to_owned(),
                fields[2].to_owned(),
            )
        })
        .collect()
}

/// Run one payload through the handler as the host would, at `millis`: the
/// decision (from the log-free `decide`) and the actions of `handle` agree.
fn run(h: &mut FirstNotice, bytes: &[u8], millis: i64) -> (Decision, Option<String>) {
    let msg = Message::new("gcn", bytes.to_vec()).with_timestamp(millis);
    let before = testing::with_state(|s| s.clone());
    let actions = testing::handle(h, &msg).unwrap();
    let after = testing::with_state(|s| std::mem::replace(s, before));
    testing::with_state(|s| s.set_now(millis));
    let decided = h.decide(bytes);
    testing::with_state(|s| {
        assert_eq!(*s, after, "handle and decide record the same");
    });
    assert_eq!(actions.is_empty(), !decided.0.passes());
    decided
}

#[test]
fn decides_every_sample_as_the_expected_decisions_file_says() {
    testing::reset_state();
    let mut h = handler(&[]);
    let rows = expected();
    assert_eq!(rows.len(), 52, "every sample, once");
    let mut problems = Vec::new();
    for (i, (path, key, decision)) in rows.iter().enumerate() {
        let (got, got_key) = run(&mut h, &sample(path), T0 + i as i64);
        let got_key = got_key.unwrap_or_else(|| "-".into());
        if (got.as_str(), got_key.as_str()) != (decision.as_str(), key.as_str()) {
            problems.push(format!(
                "{path}: expected {decision} {key}, got {} {got_key}",
                got.as_str()
            ));
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
    // One record per event, the GBM VOEvent set keeping its Final radius.
    testing::with_state(|s| {
        assert_eq!(s.keys().len(), 35, "the distinct keys of the file");
        assert_eq!(s.get("fermi-gbm/792135758"), Some(b"3.29".to_vec()));
        assert_eq!(s.get("swift/1227767"), Some(b"0.0013".to_vec()));
        assert_eq!(s.get("lvk/MS260203s"), Some(Vec::new()));
    });
}

#[test]
fn gbm_json_notices_in_the_order_gcn_sent_them() {
    testing::reset_state();
    let mut h = handler(&[]);
    // record_number 1 to 7.
    // Radii: none, 8.32, 9.23, 7.15, 1.34, 1.08, 1.
    let order = [
        "alert", "flight1", "flight2", "flight3", "ground1", "ground2", "final",
    ];
    let decisions: Vec<&str> = order
        .iter()
        .enumerate()
        .map(|(i, name)| {
            let bytes = sample(&format!("json/fermi_gbm-trigger.{name}.example.json"));
            run(&mut h, &bytes, T0 + i as i64 * 1000).0.as_str()
        })
        .collect();
    assert_eq!(
        decisions,
        [
            "first", "smaller", "repeat", "smaller", "smaller", "smaller", "smaller"
        ]
    );
}

#[test]
fn events_are_forgotten_ttl_days_after_their_last_passing_notice() {
    testing::reset_state();
    let mut h = handler(&[("ttl_days", "2")]);
    let bat = sample("voevent/swift_bat_grb_pos_1118357.xml");
    let quicklook = sample("voevent/swift_bat_quicklook_pos_1118357.xml");
    assert_eq!(run(&mut h, &bat, T0).0, Decision::First);
    assert_eq!(
        run(&mut h, &quicklook, T0 + 2 * DAY - 1).0,
        Decision::Repeat
    );
    // A repeat does not extend the memory: two days after the first.
    assert_eq!(run(&mut h, &quicklook, T0 + 2 * DAY).0, Decision::First);
    assert_eq!(
        testing::with_state(|s| s.expires_at("swift/1118357")),
        Some(T0 + 4 * DAY)
    );
}

#[test]
fn passing_notices_are_saved_or_forwarded_to_the_sink() {
    testing::reset_state();
    let bytes = sample("voevent/swift_bat_grb_pos_1118357.xml");
    let msg = Message::new("gcn", bytes).with_timestamp(T0);
    let mut save = handler(&[]);
    assert_eq!(testing::handle(&mut save, &msg), Ok(vec![Action::save()]));
    assert_eq!(testing::handle(&mut save, &msg), Ok(vec![]));
    testing::reset_state();
    let mut fwd = handler(&[("sink", " firsts ")]);
    assert_eq!(
        testing::handle(&mut fwd, &msg),
        Ok(vec![Action::forward("firsts")])
    );
}

#[test]
fn bad_parameters_are_refused() {
    let with = |pairs: &[(&str, &str)]| FirstNotice::init(&Params::new(pairs.iter().copied()));
    for (pairs, expected) in [
        (
            &[("ttl_days", "0")][..],
            "parameter `ttl_days` = 0 is out of range",
        ),
        (
            &[("ttl_days", "x")][..],
            "parameter `ttl_days` = \"x\" is not valid",
        ),
        (&[("sink", "")][..], "parameter `sink` is empty"),
        (&[("ttl", "1")][..], "unknown parameter `ttl`"),
    ] {
        let err = with(pairs).unwrap_err();
        assert!(err.starts_with(expected), "{err} (wanted {expected})");
    }
}

/// A classic text notice in GCN's layout (no real one is in the test data).
fn text(title: &str, notice_type: &str, trigger: &str, error: Option<&str>) -> Vec<u8> {
    let mut text = format!(
        "TITLE:            GCN/{title} NOTICE\nNOTICE_DATE:      Sat 18 May 24 22:40:12 UT\n\
         NOTICE_TYPE:      {notice_type}\nTRIGGER_NUM:      {trigger}\n"
    );
    if let Some(error) = error {
        text.push_str(&format!("GRB_ERROR:        {error}\n"));
    }
    text.push_str("COMMENTS:         made up for a test\n");
    text.into_bytes()
}

#[test]
fn classic_text_notices_are_keyed_by_title_and_trigger_num() {
    let cases = [
        (
            text(
                "SWIFT",
                "Swift-BAT GRB Position",
                "1227767,   Seg_Num: 0",
                Some("3.00 [arcmin radius, statistical only]"),
            ),
            Some(("swift/1227767", Some(0.05), false)),
        ),
        (
            text(
                "SWIFT",
                "Swift-XRT Position",
                "1227767,   Seg_Num: 0",
                Some("36.0 [arcsec radius, 90% containment]"),
            ),
            Some(("swift/1227767", Some(0.01), false)),
        ),
        (
            text(
                "FERMI",
                "Fermi-GBM Ground Position",
                "737763760",
                Some("7.60 [deg radius, statistical only]"),
            ),
            Some(("fermi-gbm/737763760", Some(7.6), false)),
        ),
        (
            text(
                "FERMI",
                "Fermi-GBM Sub-Threshold",
                "737763760",
                Some("0.00 [deg radius]"),
            ),
            Some(("fermi-gbm-subthreshold/737763760", None, false)),
        ),
        (
            text(
                "FERMI",
                "Fermi-LAT Offline",
                "793795080",
                Some("0.1 [furlong]"),
            ),
            Some(("fermi-lat/793795080", None, false)),
        ),
        (
            text("LVC", "LVC Retraction", "S240511x", None),
            Some(("lvk/S240511x", None, true)),
        ),
        (text("SWIFT", "Swift-BAT GRB Position", "", None), None),
        (b"TITLE: GCN CIRCULAR\nNUMBER: 1\n".to_vec(), None),
    ];
    for (bytes, expected) in cases {
        assert_eq!(payload::detect(&bytes), Format::ClassicText);
        let got = notice(&bytes);
        let got = got
            .as_ref()
            .map(|n| (n.key.as_str(), n.error_radius, n.retraction));
        assert_eq!(got, expected, "{}", String::from_utf8_lossy(&bytes));
    }
}

#[test]
fn a_better_localisation_in_another_format_counts_for_the_same_event() {
    testing::reset_state();
    let mut h = handler(&[]);
    let bat = text(
        "SWIFT",
        "Swift-BAT GRB Position",
        "1227767,   Seg_Num: 0",
        Some("3.00 [arcmin radius]"),
    );
    assert_eq!(
        run(&mut h, &bat, T0),
        (Decision::First, Some("swift/1227767".into()))
    );
    // The binary BAT packet of the same trigger: 0.05 degree again.
    let packet = sample("binary/SWIFT_BAT_GRB_POS_ACK.bin");
    assert_eq!(run(&mut h, &packet, T0 + 1).0, Decision::Repeat);
    assert_eq!(
        run(&mut h, &sample("binary/SWIFT_XRT_POSITION.bin"), T0 + 2).0,
        Decision::Smaller
    );
}

#[test]
fn a_retraction_of_a_seen_event_passes_and_keeps_its_record() {
    testing::reset_state();
    let mut h = handler(&[]);
    let initial = sample("binary/LVC_INITIAL.bin");
    let retraction = sample("binary/LVC_RETRACTION.bin");
    assert_eq!(run(&mut h, &initial, T0).0, Decision::First);
    assert_eq!(run(&mut h, &retraction, T0 + 1).0, Decision::Retraction);
    assert_eq!(run(&mut h, &retraction, T0 + 2).0, Decision::Retraction);
    assert_eq!(run(&mut h, &initial, T0 + 3).0, Decision::Repeat);
}

#[test]
fn missions_of_notice_types() {
    for (packet_type, mission) in [
        (53, "integral"),
        (61, "swift"),
        (97, "swift"),
        (110, "fermi-gbm"),
        (128, "fermi-lat"),
        (131, "fermi-gbm-subthreshold"),
        (150, "lvk"),
        (164, "lvk"),
        (158, "amon"),
        (176, "icecube"),
        (175, "gcn-175"),
        (-1, "gcn--1"),
    ] {
        assert_eq!(mission_of_packet(packet_type), mission, "{packet_type}");
    }
}
