use std::sync::Arc;
use std::time::{Duration, Instant};

use super::*;
use crate::bindings::Message;
use crate::commit::{InflightBudget, PartitionTrack};
use crate::shutdown::Shutdown;
use crate::sink::Origin;

fn message(offset: i64) -> Message {
    Message {
        topic: "t".into(),
        partition: 0,
        offset,
        timestamp: None,
        key: None,
        value: b"raw".to_vec(),
        headers: Vec::new(),
    }
}

fn track() -> (Arc<PartitionTrack>, Arc<Shutdown>) {
    let shutdown = Arc::new(Shutdown::default());
    let track = PartitionTrack::new(
        "t".into(),
        0,
        1,
        Arc::clone(&shutdown),
        Arc::new(InflightBudget::new(1 << 20)),
    );
    (track, shutdown)
}

fn save<'a>(
    msg: &'a Message,
    handler: &'a str,
    hint: Option<&'a str>,
    index: usize,
    value: &'a [u8],
) -> Record<'a> {
    Record::Save {
        origin: Origin {
            handler,
            version: "v",
            msg,
        },
        hint,
        index,
        value,
    }
}

fn wait_done(track: &PartitionTrack) {
    assert!(
        track.drain(Instant::now() + Duration::from_secs(10), || false),
        "the saves were not made durable"
    );
}

#[test]
fn default_name_follows_the_gcn_archiver_layout() {
    assert_eq!(
        default_name("gcn.classic.voevent.FERMI_GBM_SUBTHRESH", 0, 42),
        PathBuf::from(
            "gcn.classic.voevent.FERMI_GBM_SUBTHRESH/partition=0/gcn.classic.voevent.FERMI_GBM_SUBTHRESH+0+42.bin"
        )
    );
}

#[test]
fn saves_are_namespaced_per_handler_and_numbered_per_decision() {
    let sink = FileSink::unwritten(Path::new("/out"));
    assert_eq!(
        sink.save_path("save-all", None, 0, "t", 1, 7),
        PathBuf::from("/out/save-all/t/partition=1/t+1+7.bin")
    );
    assert_eq!(
        sink.save_path("save-all", None, 2, "t", 1, 7),
        PathBuf::from("/out/save-all/t/partition=1/t+1+7-2.bin")
    );
    assert_eq!(
        sink.save_path("../other", Some("../../x.xml"), 0, "t", 1, 7),
        PathBuf::from("/out/_other/x.xml")
    );
}

#[test]
fn rejects_save_name_outside_dir() {
    let cases = [
        ("../../x", Some("x")),
        ("/etc/passwd", Some("etc/passwd")),
        ("a/../../b", Some("a/b")),
        ("..", None),
        ("", None),
        ("a\0b", Some("ab")),
        ("C:\\Windows\\x", Some("C_/Windows/x")),
        (".hidden", Some("hidden")),
        ("a b/ü.xml", Some("a_b/_.xml")),
        ("1/2/3/4/5/6", Some("3/4/5/6")),
    ];
    for (hint, want) in cases {
        assert_eq!(
            sanitize_name(hint),
            want.map(PathBuf::from),
            "hint {hint:?}"
        );
    }
    let long = sanitize_name(&"y".repeat(10_000)).unwrap();
    assert_eq!(long.as_os_str().len(), MAX_COMPONENT_BYTES);
}

#[test]
fn every_sanitized_name_stays_inside_the_directory() {
    let dir = tempfile::tempdir().unwrap();
    let sink = FileSink::new(dir.path()).unwrap();
    for hint in [
        "../../x",
        "/abs",
        "..\\..\\y",
        "a/./../.././z",
        "\0",
        "~/.ssh/id",
    ] {
        for path in [
            sink.path_for(Some(hint), "t", 0, 1),
            sink.save_path("h", Some(hint), 0, "t", 0, 1),
            sink.save_path(hint, None, 0, "t", 0, 1),
        ] {
            assert!(
                path.starts_with(dir.path()),
                "{hint:?} -> {}",
                path.display()
            );
            assert!(
                path.components()
                    .all(|c| c != std::path::Component::ParentDir),
                "{hint:?} -> {}",
                path.display()
            );
        }
    }
}

#[test]
fn write_is_complete_and_leaves_no_temp_file() {
    let dir = tempfile::tempdir().unwrap();
    let sink = FileSink::new(dir.path().join("new")).unwrap();
    let path = sink.path_for(None, "topic", 2, 7);
    sink.write(&path, b"first").unwrap();
    sink.write(&path, b"second").unwrap();
    assert_eq!(std::fs::read(&path).unwrap(), b"second");
    let leftovers: Vec<_> = std::fs::read_dir(path.parent().unwrap())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(leftovers, [std::ffi::OsString::from("topic+2+7.bin")]);
}

/// Audit finding #12: the sweep judged a temporary file by whether the pid
/// in its name exists in this host's `/proc`, so on a volume shared by
/// containers or machines it removed other hosts' files mid-write (and kept
/// a dead writer's file whose pid this process reuses, as a container's
/// pid 1 does). A writer holds a lock on its temporary file until it is
/// renamed; only files no live writer holds are removed.
#[test]
fn sweep_removes_only_temp_files_no_live_writer_holds() {
    let dir = tempfile::tempdir().unwrap();
    // Another host writing to the shared volume: its pid means nothing
    // here, and it holds its temporary file locked while it writes.
    let other_host = dir.path().join(".alerthost-999999998-live.tmp");
    std::fs::write(&other_host, b"x").unwrap();
    let held = std::fs::File::open(&other_host).unwrap();
    rustix::fs::flock(&held, rustix::fs::FlockOperation::LockExclusive).unwrap();
    // Left by writers that died: one whose pid is gone, one whose pid is
    // this process's now.
    let dead = dir.path().join(".alerthost-999999999-abc.tmp");
    let reused = dir
        .path()
        .join(format!(".alerthost-{}-def.tmp", std::process::id()));
    let other = dir.path().join("note.txt");
    for path in [&dead, &reused, &other] {
        std::fs::write(path, b"x").unwrap();
    }
    let sink = FileSink::new(dir.path()).unwrap();
    sink.write(&dir.path().join("a.bin"), b"a").unwrap();
    assert!(
        other_host.exists(),
        "a temporary file another host is writing is left alone"
    );
    assert!(!dead.exists(), "a dead writer's temporary file is removed");
    assert!(
        !reused.exists(),
        "a dead writer's temporary file is removed even when its pid is this process's"
    );
    assert!(
        other.exists(),
        "files not named like temporary files are kept"
    );
    drop(held);
}

#[test]
fn write_failure_names_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let sink = FileSink::new(dir.path()).unwrap();
    std::fs::write(dir.path().join("blocker"), b"").unwrap();
    let path = dir.path().join("blocker/inside.bin");
    let err = format!("{:#}", sink.write(&path, b"x").unwrap_err());
    assert!(err.contains("blocker"), "{err}");
}

#[test]
fn two_unnamed_saves_of_one_decision_keep_both_files() {
    let dir = tempfile::tempdir().unwrap();
    let sink = FileSink::start("s", dir.path(), Arc::default()).unwrap();
    let (track, _) = track();
    let msg = message(5);
    let ack = track.begin(5, 0).unwrap();
    sink.deliver(&save(&msg, "h", None, 0, b"A"), ack.clone())
        .unwrap();
    sink.deliver(&save(&msg, "h", None, 1, b"B"), ack.clone())
        .unwrap();
    drop(ack);
    wait_done(&track);
    let base = dir.path().join("h/t/partition=0");
    assert_eq!(std::fs::read(base.join("t+0+5.bin")).unwrap(), b"A");
    assert_eq!(std::fs::read(base.join("t+0+5-1.bin")).unwrap(), b"B");
}

#[test]
fn a_save_never_replaces_another_messages_file() {
    let dir = tempfile::tempdir().unwrap();
    let sink = FileSink::start("s", dir.path(), Arc::default()).unwrap();
    let (track, shutdown) = track();
    let (first, second) = (message(1), message(2));
    sink.deliver(
        &save(&first, "h", Some("ü.xml"), 0, b"first"),
        track.begin(1, 0).unwrap(),
    )
    .unwrap();
    wait_done(&track);
    let refused = sink
        .deliver(
            &save(&second, "h", Some("é.xml"), 0, b"second"),
            track.begin(2, 0).unwrap(),
        )
        .unwrap_err();
    assert!(refused.reason.contains("another message"), "{refused}");
    assert_eq!(std::fs::read(dir.path().join("h/_.xml")).unwrap(), b"first");
    // The same message delivered again overwrites its own file.
    sink.deliver(
        &save(&first, "h", Some("ü.xml"), 0, b"again"),
        track.begin(3, 0).unwrap(),
    )
    .unwrap();
    wait_done(&track);
    assert_eq!(std::fs::read(dir.path().join("h/_.xml")).unwrap(), b"again");
    // Another handler has a namespace of its own.
    sink.deliver(
        &save(&second, "k", Some("é.xml"), 0, b"k"),
        track.begin(4, 0).unwrap(),
    )
    .unwrap();
    wait_done(&track);
    assert_eq!(std::fs::read(dir.path().join("k/_.xml")).unwrap(), b"k");
    assert!(!shutdown.failed());
}

#[test]
fn a_file_in_the_way_of_a_directory_is_refused_both_ways() {
    let dir = tempfile::tempdir().unwrap();
    let sink = FileSink::start("s", dir.path(), Arc::default()).unwrap();
    let (track, _) = track();
    let (a, b, c) = (message(1), message(2), message(3));
    sink.deliver(
        &save(&a, "h", Some("x"), 0, b"x"),
        track.begin(1, 0).unwrap(),
    )
    .unwrap();
    wait_done(&track);
    let under_file = sink
        .deliver(
            &save(&b, "h", Some("x/y"), 0, b"y"),
            track.begin(2, 0).unwrap(),
        )
        .unwrap_err();
    assert!(under_file.reason.contains("is a file"), "{under_file}");
    sink.deliver(
        &save(&b, "h", Some("d/y"), 0, b"y"),
        track.begin(3, 0).unwrap(),
    )
    .unwrap();
    wait_done(&track);
    let over_dir = sink
        .deliver(
            &save(&c, "h", Some("d"), 0, b"d"),
            track.begin(4, 0).unwrap(),
        )
        .unwrap_err();
    assert!(over_dir.reason.contains("directory"), "{over_dir}");
}

#[test]
fn a_save_is_done_only_once_durable_and_new_directories_are_synced() {
    let dir = tempfile::tempdir().unwrap();
    let stats = Arc::new(Stats::default());
    let sink = FileSink::start("s", dir.path().join("root"), Arc::clone(&stats)).unwrap();
    let (track, _) = track();
    let msg = message(9);
    let ack = track.begin(9, 0).unwrap();
    let path = sink.save_path("h", None, 0, "t", 0, 9);
    let staged = sink
        .inner
        .stage(&path, b"v", "t\u{0}0\u{0}9", "t[0]@9".into())
        .ok()
        .unwrap();
    // The file's own directory and every new one above it, up to the root.
    let root = dir.path().join("root");
    assert_eq!(
        staged.dirs,
        [
            root.clone(),
            root.join("h"),
            root.join("h/t"),
            root.join("h/t/partition=0")
        ]
    );
    drop(staged);
    sink.deliver(&save(&msg, "h", None, 0, b"v"), ack).unwrap();
    wait_done(&track);
    assert!(path.is_file());
    assert_eq!(stats.files.get(), 1);
    assert!(stats.fsyncs.get() >= 5, "the file and four directories");
}
