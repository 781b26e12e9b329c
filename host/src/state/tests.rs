//! The store's own guarantees, without a guest: calls go through
//! [`CallState`] exactly as the host functions do.

use super::*;

fn tp(topic: &str, partition: i32) -> TopicPartition {
    (Arc::from(topic), partition)
}

/// One successful "message": the writes `f` makes, applied at `offset`.
fn message(
    state: &Arc<HandlerState>,
    offset: i64,
    now_ms: i64,
    f: impl FnOnce(&mut CallState) -> Result<(), StateFailure>,
) {
    let mut call = CallState::new(Arc::clone(state));
    call.begin(now_ms);
    f(&mut call).unwrap();
    state.apply("t", 0, offset, call.finish());
}

fn read(state: &Arc<HandlerState>, key: &str, now_ms: i64) -> Option<Vec<u8>> {
    let mut call = CallState::new(Arc::clone(state));
    call.begin(now_ms);
    call.get(key).unwrap()
}

#[test]
fn persisted_state_and_watermarks_survive_a_reopen() {
    let dir = tempfile::tempdir().unwrap();
    {
        let store = StateStore::open(dir.path()).unwrap();
        let h = store.handler("h", StateLimits::default()).unwrap();
        message(&h, 0, 0, |c| c.set("a".into(), b"1".to_vec(), None));
        message(&h, 1, 0, |c| c.set("b".into(), b"2".to_vec(), None));
        // Only the message below the position is made durable.
        store.persist(&[(tp("t", 0), 1)], true).unwrap();
    }
    let store = StateStore::open(dir.path()).unwrap();
    let h = store.handler("h", StateLimits::default()).unwrap();
    assert_eq!(read(&h, "a", 0).as_deref(), Some(&b"1"[..]));
    assert_eq!(
        read(&h, "b", 0),
        None,
        "offset 1 was not below the position"
    );
    assert!(h.already_applied("t", 0, 0));
    assert!(!h.already_applied("t", 0, 1));
    assert_eq!(h.usage(), (1, 2));
}

#[test]
fn an_older_batch_persisted_late_never_replaces_a_newer_value() {
    let dir = tempfile::tempdir().unwrap();
    {
        let store = StateStore::open(dir.path()).unwrap();
        let h = store.handler("h", StateLimits::default()).unwrap();
        // Partition 0 writes first, partition 1 later; partition 1 is
        // persisted first.
        let mut call = CallState::new(Arc::clone(&h));
        call.begin(0);
        call.set("k".into(), b"old".to_vec(), None).unwrap();
        h.apply("t", 0, 5, call.finish());
        let mut call = CallState::new(Arc::clone(&h));
        call.begin(0);
        call.delete("k".into()).unwrap();
        h.apply("t", 1, 7, call.finish());
        store.persist(&[(tp("t", 1), 8)], true).unwrap();
        assert_eq!(read(&h, "k", 0), None);
        store.persist(&[(tp("t", 0), 6)], true).unwrap();
        assert_eq!(read(&h, "k", 0), None, "the delete came later");
    }
    let store = StateStore::open(dir.path()).unwrap();
    let h = store.handler("h", StateLimits::default()).unwrap();
    assert_eq!(read(&h, "k", 0), None);
    assert_eq!(h.usage(), (0, 0));
}

#[test]
fn writes_of_a_revoked_partition_are_withdrawn() {
    let dir = tempfile::tempdir().unwrap();
    let store = StateStore::open(dir.path()).unwrap();
    let h = store.handler("h", StateLimits::default()).unwrap();
    message(&h, 0, 0, |c| c.set("a".into(), b"1".to_vec(), None));
    store.persist(&[(tp("t", 0), 1)], true).unwrap();
    message(&h, 1, 0, |c| c.set("a".into(), b"22".to_vec(), None));
    assert_eq!(read(&h, "a", 0).as_deref(), Some(&b"22"[..]));
    store.discard(&[tp("t", 0)]);
    assert_eq!(read(&h, "a", 0).as_deref(), Some(&b"1"[..]));
    assert_eq!(h.usage(), (1, 2));
}

#[test]
fn keys_expire_by_message_time_and_are_swept_at_persist() {
    let dir = tempfile::tempdir().unwrap();
    let store = StateStore::open(dir.path()).unwrap();
    let h = store.handler("h", StateLimits::default()).unwrap();
    message(&h, 0, 1_000, |c| {
        c.set("k".into(), b"v".to_vec(), Some(500))
    });
    assert_eq!(read(&h, "k", 1_499).as_deref(), Some(&b"v"[..]));
    assert_eq!(read(&h, "k", 1_500), None, "expires at 1000 + 500");
    store.persist(&[(tp("t", 0), 1)], true).unwrap();
    assert_eq!(h.usage(), (1, 2), "no message at or after 1500 yet");
    message(&h, 1, 2_000, |_| Ok(()));
    store.persist(&[(tp("t", 0), 2)], true).unwrap();
    assert_eq!(h.usage(), (0, 0));
    // An earlier message time no longer sees it either: it is gone.
    assert_eq!(read(&h, "k", 1_000), None);
}

#[test]
fn limits_refuse_with_the_key_and_the_setting() {
    let dir = tempfile::tempdir().unwrap();
    let store = StateStore::open(dir.path()).unwrap();
    let limits = StateLimits {
        max_key_bytes: 8,
        max_value_kib: 1,
        max_keys: 2,
        max_total_mib: 1,
    };
    let h = store.handler("h", limits).unwrap();
    let mut call = CallState::new(Arc::clone(&h));
    call.begin(0);
    let err = call.set("123456789".into(), Vec::new(), None).unwrap_err();
    assert_eq!(
        err.to_string(),
        "state key \"123456789\" is 9 bytes, over [handler.state] max_key_bytes = 8"
    );
    let err = call.set("x".into(), vec![0; 1025], None).unwrap_err();
    assert_eq!(
        err.to_string(),
        "state value for key \"x\" is 1025 bytes, over [handler.state] max_value_kib = 1"
    );
    call.set("a".into(), Vec::new(), None).unwrap();
    call.set("b".into(), Vec::new(), None).unwrap();
    // Replacing a key adds none.
    call.set("b".into(), b"1".to_vec(), None).unwrap();
    let err = call.set("c".into(), Vec::new(), None).unwrap_err();
    assert!(
        err.to_string()
            .contains("would make 3 keys, over [handler.state] max_keys = 2"),
        "{err}"
    );
}

#[test]
fn init_reads_but_does_not_write() {
    let dir = tempfile::tempdir().unwrap();
    let store = StateStore::open(dir.path()).unwrap();
    let h = store.handler("h", StateLimits::default()).unwrap();
    message(&h, 0, 0, |c| c.set("a".into(), b"1".to_vec(), None));
    let mut call = CallState::new(Arc::clone(&h));
    assert_eq!(call.get("a").unwrap().as_deref(), Some(&b"1"[..]));
    assert!(matches!(
        call.set("a".into(), Vec::new(), None),
        Err(StateFailure::Init(_))
    ));
    assert!(matches!(
        call.delete("a".into()),
        Err(StateFailure::Init(_))
    ));
}

#[test]
fn a_second_host_on_the_same_directory_is_refused_with_what_to_do() {
    let dir = tempfile::tempdir().unwrap();
    let _first = StateStore::open(dir.path()).unwrap();
    let err = StateStore::open(dir.path()).unwrap_err().to_string();
    assert!(err.contains("another alerthost process"), "{err}");
    assert!(err.contains(&dir.path().display().to_string()), "{err}");
}

#[test]
fn a_state_directory_that_cannot_be_made_is_named_with_the_setting() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("a-file");
    std::fs::write(&file, b"").unwrap();
    let wanted = file.join("state");
    let err = format!("{:#}", StateStore::open(&wanted).unwrap_err());
    assert!(err.contains(&wanted.display().to_string()), "{err}");
    assert!(err.contains("runtime.state_dir"), "{err}");
}

thread_local! {
    /// What [`between_choice_and_commit`] runs on this thread, once.
    static BETWEEN: std::cell::RefCell<Option<Box<dyn FnOnce()>>> =
        std::cell::RefCell::new(None);
}

/// Called by a persist between choosing its batches (the view's locks let
/// go) and committing them: runs what a test set for this thread.
pub(super) fn between_choice_and_commit() {
    if let Some(f) = BETWEEN.with(|between| between.borrow_mut().take()) {
        f();
    }
}

/// A partition given up while a persist is writing its batches (the window
/// of a changelog append and an fsync, the view unlocked) keeps them: they
/// reach the store with the watermark, so the view, its key and byte
/// counters and the store agree, and the messages are not handled again
/// here. Withdrawing them made the counters forget keys the store holds.
#[test]
fn a_partition_given_up_during_a_persist_keeps_the_counters_true() {
    let dir = tempfile::tempdir().unwrap();
    {
        let store = StateStore::open(dir.path()).unwrap();
        let h = store.handler("h", StateLimits::default()).unwrap();
        message(&h, 0, 0, |c| c.set("a".into(), b"123".to_vec(), None));
        message(&h, 1, 0, |c| c.set("b".into(), b"45".to_vec(), None));
        let given_up = Arc::clone(&h);
        BETWEEN.with(|between| {
            *between.borrow_mut() = Some(Box::new(move || given_up.discard(&[tp("t", 0)])));
        });
        // Offset 0 is being persisted when the partition is given up;
        // offset 1 is not, and is withdrawn.
        store.persist(&[(tp("t", 0), 1)], true).unwrap();
        assert_eq!(read(&h, "a", 0).as_deref(), Some(&b"123"[..]));
        assert_eq!(read(&h, "b", 0), None, "offset 1 was withdrawn");
        assert!(h.already_applied("t", 0, 0));
        assert!(!h.already_applied("t", 0, 1));
        assert_eq!(h.usage(), (1, 4), "the counters hold what the store holds");
    }
    let store = StateStore::open(dir.path()).unwrap();
    let h = store.handler("h", StateLimits::default()).unwrap();
    assert_eq!(read(&h, "a", 0).as_deref(), Some(&b"123"[..]));
    assert_eq!(h.usage(), (1, 4));
}
