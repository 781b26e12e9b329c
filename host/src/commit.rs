//! The commit tracker: per partition, the offset up to which every message is
//! fully handled (all its actions durable). Only that offset is ever
//! committed, so a message whose save or forward has not completed is
//! delivered again after a crash.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Condvar, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

/// A topic and partition.
pub type TopicPartition = (String, i32);

#[derive(Debug, Default)]
struct Partition {
    /// Offsets begun and not yet done, with how many holds each still has.
    pending: BTreeMap<i64, u32>,
    /// The highest offset begun.
    high: Option<i64>,
    /// The last position committed (or found committed).
    committed: Option<i64>,
}

impl Partition {
    /// The next offset to consume after everything done: the lowest pending
    /// offset, or one past the highest begun.
    fn position(&self) -> Option<i64> {
        self.pending
            .keys()
            .next()
            .copied()
            .or(self.high.map(|h| h + 1))
    }
}

/// Offsets in flight, per partition. Pure bookkeeping; see [`Commits`] for
/// the shared, waitable form.
#[derive(Debug, Default)]
pub struct Tracker {
    partitions: HashMap<TopicPartition, Partition>,
}

impl Tracker {
    /// A message was read: it is pending with one hold (its handling).
    pub fn begin(&mut self, tp: &TopicPartition, offset: i64) {
        let part = self.partitions.entry(tp.clone()).or_default();
        *part.pending.entry(offset).or_insert(0) += 1;
        part.high = Some(part.high.map_or(offset, |h| h.max(offset)));
    }

    /// One more thing must complete before the message is done (a forward
    /// awaiting its delivery report).
    pub fn hold(&mut self, tp: &TopicPartition, offset: i64) {
        if let Some(count) = self
            .partitions
            .get_mut(tp)
            .and_then(|p| p.pending.get_mut(&offset))
        {
            *count += 1;
        }
    }

    /// One hold is complete; the message is done when none is left.
    pub fn release(&mut self, tp: &TopicPartition, offset: i64) {
        let Some(part) = self.partitions.get_mut(tp) else {
            return;
        };
        if let Some(count) = part.pending.get_mut(&offset) {
            *count -= 1;
            if *count == 0 {
                part.pending.remove(&offset);
            }
        }
    }

    /// Messages of `tp` not done yet.
    pub fn pending(&self, tp: &TopicPartition) -> usize {
        self.partitions.get(tp).map_or(0, |p| p.pending.len())
    }

    /// Messages not done yet, over all partitions.
    pub fn pending_total(&self) -> usize {
        self.partitions.values().map(|p| p.pending.len()).sum()
    }

    /// Positions that moved since they were last committed.
    pub fn uncommitted(&self) -> Vec<(TopicPartition, i64)> {
        self.partitions
            .iter()
            .filter_map(|(tp, part)| {
                let position = part.position()?;
                (part.committed != Some(position)).then(|| (tp.clone(), position))
            })
            .collect()
    }

    /// The position of one partition, if anything was read from it.
    pub fn position(&self, tp: &TopicPartition) -> Option<i64> {
        self.partitions.get(tp).and_then(Partition::position)
    }

    /// Record a successful commit.
    pub fn committed(&mut self, tp: &TopicPartition, position: i64) {
        if let Some(part) = self.partitions.get_mut(tp) {
            part.committed = Some(position);
        }
    }

    /// Forget a partition (revoked).
    pub fn forget(&mut self, tp: &TopicPartition) {
        self.partitions.remove(tp);
    }
}

/// The tracker shared between the consumer, the workers and the producer's
/// delivery callbacks, with a way to wait for partitions to drain.
#[derive(Debug, Default)]
pub struct Commits {
    tracker: Mutex<Tracker>,
    changed: Condvar,
}

impl Commits {
    /// Lock the tracker.
    pub fn lock(&self) -> MutexGuard<'_, Tracker> {
        self.tracker.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Release one hold and wake waiters.
    pub fn release(&self, tp: &TopicPartition, offset: i64) {
        self.lock().release(tp, offset);
        self.changed.notify_all();
    }

    /// Wait until `done` holds for the tracker, or `timeout` passes, or
    /// `give_up` says to stop waiting. Returns whether `done` held.
    pub fn wait_until(
        &self,
        timeout: Duration,
        mut done: impl FnMut(&Tracker) -> bool,
        give_up: impl Fn() -> bool,
    ) -> bool {
        let deadline = std::time::Instant::now() + timeout;
        let mut tracker = self.lock();
        loop {
            if done(&tracker) {
                return true;
            }
            let now = std::time::Instant::now();
            if now >= deadline || give_up() {
                return false;
            }
            // Wake at least every 100 ms to look at `give_up`.
            let wait = (deadline - now).min(Duration::from_millis(100));
            tracker = self
                .changed
                .wait_timeout(tracker, wait)
                .unwrap_or_else(PoisonError::into_inner)
                .0;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tp() -> TopicPartition {
        ("t".to_owned(), 0)
    }

    #[test]
    fn never_commits_past_unsaved_message() {
        let mut t = Tracker::default();
        for offset in 10..15 {
            t.begin(&tp(), offset);
        }
        for offset in [10, 11, 13, 14] {
            t.release(&tp(), offset);
        }
        assert_eq!(t.position(&tp()), Some(12), "12 is not done: stop there");
        t.release(&tp(), 12);
        assert_eq!(t.position(&tp()), Some(15));
    }

    #[test]
    fn a_held_forward_keeps_its_message_pending() {
        let mut t = Tracker::default();
        t.begin(&tp(), 0);
        t.hold(&tp(), 0);
        t.release(&tp(), 0);
        assert_eq!(t.position(&tp()), Some(0));
        assert_eq!(t.pending(&tp()), 1);
        t.release(&tp(), 0);
        assert_eq!(t.position(&tp()), Some(1));
        assert_eq!(t.pending_total(), 0);
    }

    #[test]
    fn uncommitted_lists_only_moved_positions() {
        let mut t = Tracker::default();
        t.begin(&tp(), 3);
        t.release(&tp(), 3);
        assert_eq!(t.uncommitted(), [(tp(), 4)]);
        t.committed(&tp(), 4);
        assert!(t.uncommitted().is_empty());
        t.forget(&tp());
        assert_eq!(t.position(&tp()), None);
    }

    #[test]
    fn wait_until_sees_releases_from_other_threads() {
        let commits = std::sync::Arc::new(Commits::default());
        commits.lock().begin(&tp(), 0);
        let other = commits.clone();
        let releaser = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(20));
            other.release(&tp(), 0);
        });
        assert!(commits.wait_until(Duration::from_secs(5), |t| t.pending_total() == 0, || false));
        releaser.join().unwrap();
        assert!(!commits.wait_until(Duration::from_millis(10), |_| false, || false));
    }
}
