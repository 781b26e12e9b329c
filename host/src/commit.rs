//! Acknowledgement tokens and the commit tracker.
//!
//! Every message read gets an [`Ack`] from the [`PartitionTrack`] of the
//! assignment it was read under. Each action still pending (a save waiting
//! for its group fsync, a forward waiting for its delivery report) holds a
//! clone; dropping the last clone marks the message done; [`Ack::fail`]
//! halts the host and keeps the message pending for good. Per partition, the
//! position to commit is the first message not done (or one past the last
//! one read), so nothing at or after an unfinished message is ever
//! committed.
//!
//! A track belongs to one assignment (its epoch): a partition revoked and
//! assigned again gets a new track, so tokens left over from the old
//! assignment can only move the old track, which is no longer committed.
//!
//! The track's lock is taken by the worker that owns the partition (per
//! message), by sinks completing actions, and by the source when it commits:
//! no lock is shared by all partitions.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use crate::shutdown::{Fatal, Shutdown};

/// A topic and partition.
pub type TopicPartition = (Arc<str>, i32);

/// What must be durable before a position is committed, beyond the
/// messages' own actions (handler state). The source calls it; it knows
/// nothing of what is behind it.
pub trait Durability: Send + Sync + std::fmt::Debug {
    /// The source is about to commit `positions` (to Kafka when
    /// `kafka_commits`; otherwise they only mark progress): make everything
    /// below them durable first. An error halts the host before the commit.
    fn before_commit(
        &self,
        positions: &[(TopicPartition, i64)],
        kafka_commits: bool,
    ) -> anyhow::Result<()>;

    /// `partitions` were given up: what is still pending for them belongs
    /// to messages that are handled again.
    fn revoked(&self, partitions: &[TopicPartition]);

    /// `partitions` were assigned, and none of their messages is handled
    /// yet. An error halts the host.
    fn assigned(&self, partitions: &[TopicPartition]) -> anyhow::Result<()>;
}

/// A message begun and not done yet.
#[derive(Debug, Clone, Copy)]
struct Slot {
    offset: i64,
    /// Clones of its token still alive.
    pending: u32,
    /// Bytes it holds against the in-flight budget.
    bytes: u64,
    /// A token of it failed or was abandoned: it never becomes done.
    stuck: bool,
}

#[derive(Debug, Default)]
struct TrackState {
    /// Messages not done, in offset order; the front is never done (done
    /// messages at the front are popped at once).
    ring: VecDeque<Slot>,
    /// One past the highest offset begun.
    next: Option<i64>,
    /// The last position committed (or found committed).
    committed: Option<i64>,
}

impl TrackState {
    fn position(&self) -> Option<i64> {
        self.ring.front().map(|s| s.offset).or(self.next)
    }

    fn index_of(&self, offset: i64) -> Option<usize> {
        // Tokens complete mostly in order: look at the front first.
        if self.ring.front().is_some_and(|s| s.offset == offset) {
            return Some(0);
        }
        self.ring.binary_search_by_key(&offset, |s| s.offset).ok()
    }
}

/// Bytes of messages in flight (read and not done), bounded: a worker waits
/// before taking a message that would pass the bound.
#[derive(Debug)]
pub struct InflightBudget {
    used: AtomicU64,
    limit: u64,
}

impl InflightBudget {
    /// A budget of `limit` bytes.
    pub fn new(limit: u64) -> Self {
        InflightBudget {
            used: AtomicU64::new(0),
            limit,
        }
    }

    /// Bytes in flight now.
    pub fn used(&self) -> u64 {
        self.used.load(Ordering::Relaxed)
    }

    /// The bound.
    pub fn limit(&self) -> u64 {
        self.limit
    }

    /// Take `bytes`, waiting while the budget is spent. A message larger than
    /// the whole budget is let through when nothing else is in flight, so it
    /// cannot wait forever. Gives up (returns `false`) when `give_up` says so.
    pub fn acquire(&self, bytes: u64, give_up: impl Fn() -> bool) -> bool {
        let mut backoff = Duration::from_micros(50);
        loop {
            let used = self.used.load(Ordering::Relaxed);
            if (used == 0 || used + bytes <= self.limit)
                && self
                    .used
                    .compare_exchange_weak(used, used + bytes, Ordering::AcqRel, Ordering::Relaxed)
                    .is_ok()
            {
                return true;
            }
            if give_up() {
                return false;
            }
            std::thread::sleep(backoff);
            backoff = (backoff * 2).min(Duration::from_millis(5));
        }
    }

    fn release(&self, bytes: u64) {
        self.used.fetch_sub(bytes, Ordering::AcqRel);
    }
}

/// The commit tracker of one partition under one assignment.
#[derive(Debug)]
pub struct PartitionTrack {
    topic: Arc<str>,
    partition: i32,
    epoch: u64,
    state: Mutex<TrackState>,
    revoked: AtomicBool,
    shutdown: Arc<Shutdown>,
    budget: Arc<InflightBudget>,
}

impl PartitionTrack {
    /// A new track for `topic[partition]` under assignment `epoch`.
    pub fn new(
        topic: Arc<str>,
        partition: i32,
        epoch: u64,
        shutdown: Arc<Shutdown>,
        budget: Arc<InflightBudget>,
    ) -> Arc<Self> {
        Arc::new(PartitionTrack {
            topic,
            partition,
            epoch,
            state: Mutex::default(),
            revoked: AtomicBool::new(false),
            shutdown,
            budget,
        })
    }

    fn lock(&self) -> MutexGuard<'_, TrackState> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The topic.
    pub fn topic(&self) -> &Arc<str> {
        &self.topic
    }

    /// The partition.
    pub fn partition(&self) -> i32 {
        self.partition
    }

    /// The assignment this track belongs to (counted up at each assignment).
    pub fn epoch(&self) -> u64 {
        self.epoch
    }

    /// A message at `offset` was read and holds `bytes` of the in-flight
    /// budget (already acquired): its token, or `None` when the partition
    /// was revoked (the message is then not handled here).
    pub fn begin(self: &Arc<Self>, offset: i64, bytes: u64) -> Option<Ack> {
        let mut state = self.lock();
        if self.revoked.load(Ordering::Acquire) {
            drop(state);
            self.budget.release(bytes);
            return None;
        }
        let slot = Slot {
            offset,
            pending: 1,
            bytes,
            stuck: false,
        };
        match state.ring.back() {
            Some(last) if last.offset >= offset => {
                // Read again below what is pending (a seek back): keep order.
                let at = state.ring.partition_point(|s| s.offset < offset);
                if state.ring.get(at).is_some_and(|s| s.offset == offset) {
                    state.ring[at].pending += 1;
                    state.ring[at].bytes += bytes;
                } else {
                    state.ring.insert(at, slot);
                }
            }
            _ => state.ring.push_back(slot),
        }
        // A reset backwards (log truncated, topic recreated) moves the
        // position back too: it must not stay past the new log end.
        if state.ring.len() == 1 || state.next.is_none_or(|next| offset + 1 > next) {
            state.next = Some(offset + 1);
        }
        Some(Ack {
            track: Arc::clone(self),
            offset,
            armed: true,
        })
    }

    /// Set the position before anything is read (a `--reset` or a time
    /// seek that was committed right away).
    pub fn start_at(&self, position: i64, committed: bool) {
        let mut state = self.lock();
        if state.ring.is_empty() {
            state.next = Some(position);
            if committed {
                state.committed = Some(position);
            }
        }
    }

    fn add(&self, offset: i64) {
        let mut state = self.lock();
        if let Some(index) = state.index_of(offset) {
            state.ring[index].pending += 1;
        }
    }

    /// A token of the message at `offset` failed or was abandoned.
    fn stick(&self, offset: i64) {
        let mut state = self.lock();
        if let Some(index) = state.index_of(offset) {
            state.ring[index].stuck = true;
        }
    }

    fn done(&self, offset: i64) {
        let mut state = self.lock();
        let Some(index) = state.index_of(offset) else {
            return;
        };
        let slot = &mut state.ring[index];
        slot.pending -= 1;
        if slot.pending > 0 {
            return;
        }
        let bytes = slot.bytes;
        slot.bytes = 0;
        while state.ring.front().is_some_and(|s| s.pending == 0) {
            state.ring.pop_front();
        }
        drop(state);
        self.budget.release(bytes);
    }

    /// The position to commit: the first message not done, or one past the
    /// last one read. `None` before anything was read.
    pub fn position(&self) -> Option<i64> {
        self.lock().position()
    }

    /// Messages read and not done.
    pub fn pending(&self) -> usize {
        self.lock().ring.len()
    }

    /// Whether the position can move no further: every message is done, or
    /// the first one not done never will be (a token of it failed or was
    /// abandoned), so what comes after it cannot be committed either.
    pub fn settled(&self) -> bool {
        self.lock().ring.front().is_none_or(|slot| slot.stuck)
    }

    /// The position, if it moved since it was last committed.
    pub fn uncommitted(&self) -> Option<i64> {
        let state = self.lock();
        let position = state.position()?;
        (state.committed != Some(position)).then_some(position)
    }

    /// Record a successful commit of `position`.
    pub fn committed(&self, position: i64) {
        self.lock().committed = Some(position);
    }

    /// The assignment ended: nothing more is begun on this track.
    pub fn revoke(&self) {
        let _state = self.lock();
        self.revoked.store(true, Ordering::Release);
    }

    /// Whether the assignment ended.
    pub fn is_revoked(&self) -> bool {
        self.revoked.load(Ordering::Relaxed)
    }

    /// Wait until the track is [settled](Self::settled), `deadline` passes
    /// or `give_up` says to stop waiting. Returns whether it is settled.
    pub fn drain(&self, deadline: Instant, give_up: impl Fn() -> bool) -> bool {
        loop {
            if self.settled() {
                return true;
            }
            if Instant::now() >= deadline || give_up() {
                return false;
            }
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    /// `topic[partition]@offset`, for messages.
    pub fn describe(&self, offset: i64) -> String {
        format!("{}[{}]@{offset}", self.topic, self.partition)
    }
}

/// The acknowledgement token of one message: while any clone is alive, the
/// message is not done and its offset is not committed. Cloning adds a
/// pending action; dropping completes one.
#[derive(Debug)]
pub struct Ack {
    track: Arc<PartitionTrack>,
    offset: i64,
    armed: bool,
}

impl Ack {
    /// The message's offset.
    pub fn offset(&self) -> i64 {
        self.offset
    }

    /// The track it belongs to.
    pub fn track(&self) -> &Arc<PartitionTrack> {
        &self.track
    }

    /// `topic[partition]@offset`.
    pub fn describe(&self) -> String {
        self.track.describe(self.offset)
    }

    /// Halt the host with `fatal`: this message never becomes done, so
    /// nothing at or after it is committed.
    pub fn fail(mut self, fatal: Fatal) {
        self.armed = false;
        self.track.stick(self.offset);
        self.track.shutdown.fail(fatal);
    }

    /// Leave the message not done without an error (the host is stopping
    /// before the action could complete): it is handled again after a
    /// restart.
    pub fn abandon(mut self) {
        self.armed = false;
        self.track.stick(self.offset);
    }
}

impl Clone for Ack {
    fn clone(&self) -> Self {
        self.track.add(self.offset);
        Ack {
            track: Arc::clone(&self.track),
            offset: self.offset,
            armed: self.armed,
        }
    }
}

impl Drop for Ack {
    fn drop(&mut self) {
        if self.armed {
            self.track.done(self.offset);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn track(epoch: u64) -> Arc<PartitionTrack> {
        PartitionTrack::new(
            "t".into(),
            0,
            epoch,
            Arc::default(),
            Arc::new(InflightBudget::new(1 << 20)),
        )
    }

    #[test]
    fn never_commits_past_unsaved_message() {
        let t = track(1);
        let mut acks: Vec<Option<Ack>> = (10..15).map(|o| t.begin(o, 0)).collect();
        for index in [0, 1, 3, 4] {
            acks[index] = None;
        }
        assert_eq!(t.position(), Some(12), "12 is not done: stop there");
        acks[2] = None;
        assert_eq!(t.position(), Some(15));
    }

    #[test]
    fn a_pending_action_keeps_its_message_pending() {
        let t = track(1);
        let ack = t.begin(0, 0).unwrap();
        let forward = ack.clone();
        drop(ack);
        assert_eq!(t.position(), Some(0));
        assert_eq!(t.pending(), 1);
        drop(forward);
        assert_eq!(t.position(), Some(1));
        assert_eq!(t.pending(), 0);
    }

    #[test]
    fn a_failed_message_is_never_done() {
        let t = track(1);
        let shutdown = Arc::clone(&t.shutdown);
        let first = t.begin(4, 0).unwrap();
        let second = t.begin(5, 0).unwrap();
        first.fail(Fatal::Source("x".into()));
        drop(second);
        assert_eq!(t.position(), Some(4));
        assert!(shutdown.failed() && shutdown.stopping());
    }

    #[test]
    fn a_drain_waits_for_the_messages_before_a_failed_one_and_no_longer() {
        let t = track(1);
        let before = t.begin(4, 0).unwrap();
        let forward = before.clone();
        drop(before);
        let failed = t.begin(5, 0).unwrap();
        let after = t.begin(6, 0).unwrap();
        failed.fail(Fatal::Source("x".into()));
        assert!(!t.settled(), "the forward of 4 is still in flight");
        let waiter = {
            let t = Arc::clone(&t);
            std::thread::spawn(move || t.drain(Instant::now() + Duration::from_secs(60), || false))
        };
        drop(forward);
        assert!(waiter.join().unwrap(), "settled once 4 is done");
        assert_eq!(t.position(), Some(5));
        assert_eq!(t.pending(), 2, "5 never becomes done, 6 is still held");
        drop(after);
        assert!(t.settled());
    }

    #[test]
    fn tokens_of_a_revoked_assignment_cannot_move_the_next_one() {
        // The audit's sequence: begin(5); forget; hold(5); begin(5); release(5).
        let old = track(1);
        let old_ack = old.begin(5, 0).unwrap();
        old.revoke();
        let old_hold = old_ack.clone();
        let new = track(2);
        let new_ack = new.begin(5, 0).unwrap();
        drop(old_ack);
        drop(old_hold);
        assert!(
            new.position().unwrap() <= 5,
            "the new epoch's 5 is not done"
        );
        assert!(
            old.begin(6, 0).is_none(),
            "nothing begins on a revoked track"
        );
        drop(new_ack);
        assert_eq!(new.position(), Some(6));
    }

    #[test]
    fn uncommitted_lists_only_moved_positions() {
        let t = track(1);
        drop(t.begin(3, 0));
        assert_eq!(t.uncommitted(), Some(4));
        t.committed(4);
        assert_eq!(t.uncommitted(), None);
        t.start_at(10, true);
        assert_eq!(t.uncommitted(), None);
        assert_eq!(t.position(), Some(10));
    }

    #[test]
    fn a_reset_backwards_moves_an_idle_position_back() {
        let t = track(1);
        drop(t.begin(100, 0));
        assert_eq!(t.position(), Some(101));
        drop(t.begin(3, 0));
        assert_eq!(t.position(), Some(4), "the log was truncated: follow it");
    }

    #[test]
    fn completions_from_other_threads_are_seen_by_drain() {
        let t = track(1);
        let ack = t.begin(0, 0).unwrap();
        let sink = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(20));
            drop(ack);
        });
        assert!(t.drain(Instant::now() + Duration::from_secs(5), || false));
        sink.join().unwrap();
        let _pending = t.begin(1, 0).unwrap();
        assert!(!t.drain(Instant::now() + Duration::from_millis(10), || false));
    }

    #[test]
    fn in_flight_bytes_are_bounded_and_returned_when_done() {
        let budget = Arc::new(InflightBudget::new(100));
        let t = PartitionTrack::new("t".into(), 0, 1, Arc::default(), Arc::clone(&budget));
        assert!(budget.acquire(60, || false));
        let first = t.begin(0, 60).unwrap();
        assert!(!budget.acquire(60, || true), "60 more would pass 100");
        let save = first.clone();
        drop(first);
        assert_eq!(budget.used(), 60, "a pending save still holds the bytes");
        drop(save);
        assert_eq!(budget.used(), 0);
        assert!(budget.acquire(500, || true), "alone, a big message passes");
    }
}
