//! Handler state: a small key-value store per handler name, kept by the host.
//!
//! The model, in the order a write travels:
//! - **Per call**: `set`/`delete` during `handle` go to a [`CallState`]
//!   buffer in the instance's store data; `get` looks at the buffer, then at
//!   the handler's view. A call that fails (error, trap, timeout, a limit, a
//!   sink refusing its output) drops the buffer: nothing is visible.
//! - **Applied**: when the message succeeds, its buffer becomes a batch
//!   tagged with the message's (topic, partition, offset) and a global
//!   sequence number, and is applied at once to the handler's in-memory
//!   *pending view* ([`HandlerState::apply`]); later messages, on any worker,
//!   read it.
//! - **Durable before commit**: when the source is about to commit
//!   positions {tp → P} ([`Durability::before_commit`]), every pending
//!   batch of tp below P is written to the local store in one durable redb
//!   transaction, together with the watermark `applied[(handler, tp)] = P`;
//!   only then is Kafka committed. The commit tracker already guarantees
//!   that every action of a message below P is done, so a persisted batch
//!   never precedes its message's saves and forwards. A persist failure
//!   halts the host (nothing is committed).
//! - **Replay**: after a crash between the persist and the Kafka commit, a
//!   message below its partition's watermark is skipped for that handler:
//!   its outputs are durable and its writes are in the store. Messages at or
//!   after the watermark run against the store as persisted, which holds
//!   exactly the effects of the messages below each watermark, so a replay
//!   yields the same state and outputs as an uninterrupted run.
//! - **Order across partitions**: every value carries the sequence number of
//!   the batch that wrote it, and a persist never replaces a value (or a
//!   deletion, kept as a tombstone while older batches are pending) written
//!   by a later batch, so partial persists keep last-writer-wins by handling
//!   order.
//! - **Revoked partitions**: batches still pending for a partition given up
//!   (assignment lost, or drained too late) are withdrawn from the view:
//!   their messages are handled again, here or on another host. Batches a
//!   persist under way is already writing stay: they reach the store with
//!   the partition's watermark, so the view keeps agreeing with the store.
//! - **TTL** by message time: a key set with a TTL expires at the message's
//!   timestamp plus the TTL and reads as absent for a message at or after
//!   that time; expired keys are removed from the store at a persist once a
//!   message at or after their expiry has been handled.
//!
//! One redb database (`state.redb` under `runtime.state_dir`) holds every
//! handler of a host, keyed by (handler, key). redb: pure Rust, ACID, one
//! file, commits made durable with fsync, nothing in the background to tune.

pub mod changelog;
mod config;

use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock, PoisonError};

use anyhow::Context as _;
use redb::{Database, ReadableDatabase as _, ReadableTable as _, TableDefinition};

pub use config::{StateConfig, StateLimits};

use changelog::{Changelog, ChangelogPosition, Restored};

use crate::commit::{Durability, TopicPartition};

/// A handler and one of its keys.
type HandlerKey = (&'static str, &'static str);
/// Sequence number of the batch that wrote a value, its expiry (ms since
/// the epoch, message time) and the value.
type StoredValue = (u64, Option<i64>, &'static [u8]);

/// (handler, key) → (sequence, expires at ms, value).
const VALUES: TableDefinition<HandlerKey, StoredValue> = TableDefinition::new("values");
/// (handler, key) → sequence of a persisted deletion that a pending, older
/// batch must not undo.
const TOMBSTONES: TableDefinition<(&str, &str), u64> = TableDefinition::new("tombstones");
/// (handler, expires at ms, key): the keys with a TTL, by expiry.
const EXPIRY: TableDefinition<(&str, i64, &str), ()> = TableDefinition::new("expiry");
/// (handler, topic, partition) → the first offset whose writes are not in
/// the store.
const WATERMARKS: TableDefinition<(&str, &str, i32), i64> = TableDefinition::new("watermarks");
/// Host-wide counters: `seq` is the next batch sequence number.
const META: TableDefinition<&str, u64> = TableDefinition::new("meta");
/// (handler, changelog partition) → the changelog offset the store has
/// restored up to.
const RESTORED: TableDefinition<(&str, i32), i64> = TableDefinition::new("changelog_restored");

/// The sequence number of a value restored from a changelog: below every
/// batch of this host (they start at 1), so a write of this host that is
/// still pending when another host's value is restored wins, and a later
/// restore replaces it.
const RESTORED_SEQ: u64 = 0;

/// The database file under `runtime.state_dir`.
pub const STATE_FILE: &str = "state.redb";

/// One change, as persisted and as written to a changelog.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Change {
    /// `key` holds `value` (until `expires_ms`, when set).
    Put {
        /// The key.
        key: String,
        /// The value.
        value: Vec<u8>,
        /// Message time (ms since the epoch) from which the key reads as
        /// absent.
        expires_ms: Option<i64>,
        /// Sequence number of the batch that wrote it.
        seq: u64,
    },
    /// `key` was deleted.
    Delete {
        /// The key.
        key: String,
        /// Sequence number of the batch that deleted it.
        seq: u64,
    },
}

impl Change {
    /// The key changed.
    pub fn key(&self) -> &str {
        match self {
            Change::Put { key, .. } | Change::Delete { key, .. } => key,
        }
    }

    /// Sequence number of the batch the change belongs to.
    pub fn seq(&self) -> u64 {
        match self {
            Change::Put { seq, .. } | Change::Delete { seq, .. } => *seq,
        }
    }
}

/// A value as the view holds it.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Stored {
    value: Vec<u8>,
    expires_ms: Option<i64>,
}

impl Stored {
    fn alive_at(&self, now_ms: i64) -> bool {
        self.expires_ms.is_none_or(|at| at > now_ms)
    }
}

/// Bytes a key and its value count against `max_total_mib`.
fn size_of(key: &str, stored: Option<&Stored>) -> (u64, u64) {
    match stored {
        Some(s) => (1, (key.len() + s.value.len()) as u64),
        None => (0, 0),
    }
}

/// The writes of one successful call, not yet applied. They hold their
/// call's share of the limits until they are applied or dropped.
#[derive(Debug, Default)]
pub struct Writes {
    changes: BTreeMap<String, Option<Stored>>,
    now_ms: i64,
    reservation: Reservation,
}

/// Keys and bytes a call's writes add, counted against the handler's limits
/// while they are not applied yet, so that calls under way on other workers
/// (other partitions) see them: two calls cannot both take the last room.
#[derive(Debug, Default)]
struct Reservation {
    handler: Option<Arc<HandlerState>>,
    keys: u64,
    bytes: u64,
}

impl Reservation {
    /// Give the room back, with the handler's state locked.
    fn release(&mut self, inner: &mut Inner) {
        if self.handler.take().is_some() {
            inner.reserved_keys = inner.reserved_keys.saturating_sub(self.keys);
            inner.reserved_bytes = inner.reserved_bytes.saturating_sub(self.bytes);
        }
    }
}

impl Drop for Reservation {
    fn drop(&mut self) {
        if let Some(handler) = self.handler.clone() {
            self.release(&mut lock(&handler.inner));
        }
    }
}

impl Writes {
    /// Whether the call wrote nothing.
    pub fn is_empty(&self) -> bool {
        self.changes.is_empty()
    }
}

/// A message's writes, applied to the view and waiting for a persist.
#[derive(Debug)]
struct Batch {
    offset: i64,
    seq: u64,
    changes: Vec<Change>,
}

#[derive(Debug, Default)]
struct Inner {
    /// Applied, not yet persisted values by key and sequence; every entry is
    /// newer than what the store holds for its key.
    overlay: HashMap<String, BTreeMap<u64, Option<Stored>>>,
    /// Applied batches not yet persisted, per partition, in handling order.
    pending: HashMap<TopicPartition, VecDeque<Batch>>,
    /// Keys and bytes of the view (store and overlay), expired keys that are
    /// not swept yet included.
    keys: u64,
    bytes: u64,
    /// Keys and bytes the writes of calls not applied yet add (see
    /// [`Reservation`]).
    reserved_keys: u64,
    reserved_bytes: u64,
    /// Persisted watermarks.
    applied: HashMap<TopicPartition, i64>,
    /// Partitions this handler has handled messages of.
    seen: HashSet<TopicPartition>,
    /// Batches a persist under way has written into its transaction: a
    /// partition given up meanwhile keeps them (they reach the store, with
    /// the partition's watermark), so the view and its counters stay those
    /// of the store.
    persisting: HashSet<u64>,
    /// The latest message time handled: keys expired by then are swept.
    latest_ms: Option<i64>,
}

/// What one persist wrote for one handler: the batches' sequence numbers,
/// the (key, sequence) of every change, and the (key, bytes) of every key
/// swept.
struct Persisted {
    seqs: HashSet<u64>,
    changed: Vec<(String, u64)>,
    swept: Vec<(String, u64)>,
}

/// What one persist writes to one handler's changelog: the changelog, the
/// handler, its changes and its watermarks (topic, partition, next offset).
type Append<'a> = (&'a Changelog, &'a str, Vec<Change>, Vec<(String, i32, i64)>);

struct Shared {
    db: Database,
    path: PathBuf,
    seq: AtomicU64,
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

/// The local store of every handler of a host, and the handlers' state.
pub struct StateStore {
    shared: Arc<Shared>,
    handlers: Mutex<Vec<Arc<HandlerState>>>,
}

impl std::fmt::Debug for StateStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StateStore")
            .field("path", &self.shared.path)
            .finish_non_exhaustive()
    }
}

fn store_error(path: &Path, error: impl std::fmt::Display) -> anyhow::Error {
    anyhow::anyhow!("state store {}: {error}", path.display())
}

impl StateStore {
    /// Open (or create) the store in `dir`, creating `dir` private (0700)
    /// when missing. Errors name the path and what to do.
    pub fn open(dir: &Path) -> anyhow::Result<Self> {
        if !dir.exists() {
            let mut builder = std::fs::DirBuilder::new();
            builder.recursive(true);
            #[cfg(unix)]
            {
                use std::os::unix::fs::DirBuilderExt as _;
                builder.mode(0o700);
            }
            builder.create(dir).with_context(|| {
                format!(
                    "cannot create the state directory {} (runtime.state_dir): make its parent writable or point runtime.state_dir elsewhere",
                    dir.display()
                )
            })?;
        } else if !dir.is_dir() {
            anyhow::bail!(
                "the state directory {} (runtime.state_dir) is not a directory",
                dir.display()
            );
        }
        let path = dir.join(STATE_FILE);
        let db = Database::create(&path).map_err(|e| {
            let hint = match e {
                redb::DatabaseError::DatabaseAlreadyOpen => {
                    "another alerthost process uses this state directory: give each host its own runtime.state_dir"
                }
                _ => "check that runtime.state_dir is writable and the file is not damaged",
            };
            anyhow::anyhow!(
                "cannot open the state store {}: {e} ({hint})",
                path.display()
            )
        })?;
        let txn = db.begin_write().map_err(|e| store_error(&path, e))?;
        let seq = {
            txn.open_table(VALUES).map_err(|e| store_error(&path, e))?;
            txn.open_table(TOMBSTONES)
                .map_err(|e| store_error(&path, e))?;
            txn.open_table(EXPIRY).map_err(|e| store_error(&path, e))?;
            txn.open_table(WATERMARKS)
                .map_err(|e| store_error(&path, e))?;
            txn.open_table(RESTORED)
                .map_err(|e| store_error(&path, e))?;
            let meta = txn.open_table(META).map_err(|e| store_error(&path, e))?;
            meta.get("seq")
                .map_err(|e| store_error(&path, e))?
                .map_or(1, |v| v.value())
        };
        txn.commit().map_err(|e| store_error(&path, e))?;
        Ok(StateStore {
            shared: Arc::new(Shared {
                db,
                path,
                seq: AtomicU64::new(seq),
            }),
            handlers: Mutex::new(Vec::new()),
        })
    }

    /// The database file.
    pub fn path(&self) -> &Path {
        &self.shared.path
    }

    /// The state of handler `name` (created on first use), with its limits.
    pub fn handler(&self, name: &str, limits: StateLimits) -> anyhow::Result<Arc<HandlerState>> {
        let mut handlers = lock(&self.handlers);
        if let Some(existing) = handlers.iter().find(|h| h.name == name) {
            return Ok(Arc::clone(existing));
        }
        let path = &self.shared.path;
        let txn = self
            .shared
            .db
            .begin_read()
            .map_err(|e| store_error(path, e))?;
        let mut inner = Inner::default();
        let values = txn.open_table(VALUES).map_err(|e| store_error(path, e))?;
        for entry in values
            .range((name, "")..)
            .map_err(|e| store_error(path, e))?
        {
            let (key, value) = entry.map_err(|e| store_error(path, e))?;
            let (handler, key) = key.value();
            if handler != name {
                break;
            }
            inner.keys += 1;
            inner.bytes += (key.len() + value.value().2.len()) as u64;
        }
        let watermarks = txn
            .open_table(WATERMARKS)
            .map_err(|e| store_error(path, e))?;
        for entry in watermarks
            .range((name, "", i32::MIN)..)
            .map_err(|e| store_error(path, e))?
        {
            let (key, next) = entry.map_err(|e| store_error(path, e))?;
            let (handler, topic, partition) = key.value();
            if handler != name {
                break;
            }
            inner
                .applied
                .insert((Arc::from(topic), partition), next.value());
        }
        let state = Arc::new(HandlerState {
            name: name.to_owned(),
            limits,
            shared: Arc::clone(&self.shared),
            inner: Mutex::new(inner),
            changelog: OnceLock::new(),
        });
        handlers.push(Arc::clone(&state));
        Ok(state)
    }

    /// Persist every pending batch below `positions` of every handler, with
    /// the watermarks when `watermarks` (the source commits these positions
    /// to Kafka next), in one durable transaction.
    pub fn persist(
        &self,
        positions: &[(TopicPartition, i64)],
        watermarks: bool,
    ) -> anyhow::Result<()> {
        self.persist_where(
            |tp, offset| {
                positions
                    .iter()
                    .any(|(at, position)| at == tp && offset < *position)
            },
            watermarks.then_some(positions),
        )
    }

    /// Persist every pending batch of every handler, without watermarks
    /// (`alerthost test`, where nothing is committed).
    pub fn persist_all(&self) -> anyhow::Result<()> {
        self.persist_where(|_, _| true, None)
    }

    fn persist_where(
        &self,
        due: impl Fn(&TopicPartition, i64) -> bool,
        watermarks: Option<&[(TopicPartition, i64)]>,
    ) -> anyhow::Result<()> {
        let handlers = lock(&self.handlers).clone();
        // Workers wait while the batches are chosen and written into the
        // transaction, so the view does not move under that; they go on
        // during the changelog append and the fsync. Meanwhile the chosen
        // writes stay in the view (reads see them), batches applied later
        // have higher sequence numbers (the bookkeeping after the commit
        // keeps them), and the store's one writer (taken below, before the
        // locks are let go) keeps persists and restores in turn. Locks are
        // taken view first, then the writer, as in a restore.
        let mut guards: Vec<MutexGuard<'_, Inner>> =
            handlers.iter().map(|h| lock(&h.inner)).collect();
        let path = &self.shared.path;
        let err = |e: &dyn std::fmt::Display| store_error(path, e);
        let txn = self.shared.db.begin_write().map_err(|e| err(&e))?;
        // Per handler: (sequence numbers persisted, changes persisted, keys swept).
        let mut done: Vec<Persisted> = Vec::new();
        // Per handler with a changelog: what to write to it before the store
        // commits, so the store is never ahead of the changelog (a store
        // behind it catches up at the next start or assignment).
        let mut appends: Vec<Append<'_>> = Vec::new();
        {
            let mut tables = Tables {
                values: txn.open_table(VALUES).map_err(|e| err(&e))?,
                tombstones: txn.open_table(TOMBSTONES).map_err(|e| err(&e))?,
                expiry: txn.open_table(EXPIRY).map_err(|e| err(&e))?,
            };
            let mut marks = txn.open_table(WATERMARKS).map_err(|e| err(&e))?;
            for (handler, inner) in handlers.iter().zip(guards.iter()) {
                let name = handler.name.as_str();
                let due = &due;
                let mut batches: Vec<&Batch> = inner
                    .pending
                    .iter()
                    .flat_map(|(tp, queue)| queue.iter().filter(move |b| due(tp, b.offset)))
                    .collect();
                batches.sort_by_key(|b| b.seq);
                let mut seqs = HashSet::new();
                // Per key only the last change counts: a counter set by a
                // thousand messages is written once.
                let mut last: BTreeMap<&str, &Change> = BTreeMap::new();
                for batch in &batches {
                    seqs.insert(batch.seq);
                    for change in &batch.changes {
                        last.insert(change.key(), change);
                    }
                }
                let mut changed = Vec::with_capacity(last.len());
                let mut written = Vec::with_capacity(last.len());
                for change in last.into_values() {
                    tables.write(name, change).map_err(|e| err(&e))?;
                    changed.push((change.key().to_owned(), change.seq()));
                    written.push(change.clone());
                }
                let mut handler_marks = Vec::new();
                if let Some(positions) = watermarks {
                    for ((topic, partition), position) in positions {
                        let tp = (Arc::clone(topic), *partition);
                        if inner.seen.contains(&tp) || inner.applied.contains_key(&tp) {
                            marks
                                .insert((name, &**topic, *partition), *position)
                                .map_err(|e| err(&e))?;
                            handler_marks.push((topic.to_string(), *partition, *position));
                        }
                    }
                }
                // Watermarks alone are not written: without a change they
                // only spare a replay messages that change nothing.
                // The changelog gets what the store gets: each key's last
                // change.
                if let Some(changelog) = handler.changelog.get()
                    && !written.is_empty()
                {
                    appends.push((changelog, name, written, handler_marks));
                }
                let swept = match inner.latest_ms {
                    Some(now) => tables.sweep(name, now).map_err(|e| err(&e))?,
                    None => Vec::new(),
                };
                // Tombstones guard against older batches still pending.
                let oldest_left = inner
                    .pending
                    .values()
                    .flatten()
                    .filter(|b| !seqs.contains(&b.seq))
                    .map(|b| b.seq)
                    .min()
                    .unwrap_or(u64::MAX);
                tables
                    .tombstones
                    .retain_in((name, "")..=(name, "\u{10FFFF}"), |_, seq| {
                        seq > oldest_left
                    })
                    .map_err(|e| err(&e))?;
                done.push(Persisted {
                    seqs,
                    changed,
                    swept,
                });
            }
            let mut meta = txn.open_table(META).map_err(|e| err(&e))?;
            meta.insert("seq", self.shared.seq.load(Ordering::SeqCst))
                .map_err(|e| err(&e))?;
        }
        for (inner, persisted) in guards.iter_mut().zip(&done) {
            inner.persisting.extend(&persisted.seqs);
        }
        drop(guards);
        #[cfg(test)]
        tests::between_choice_and_commit();
        let written = appends
            .into_iter()
            .try_for_each(|(changelog, handler, changes, marks)| {
                changelog
                    .append(&changes, &marks)
                    .with_context(|| format!("handler `{handler}`"))
            })
            .and_then(|()| txn.commit().map_err(|e| err(&e)));
        if let Err(error) = written {
            for (handler, persisted) in handlers.iter().zip(&done) {
                let mut inner = lock(&handler.inner);
                inner.persisting.retain(|seq| !persisted.seqs.contains(seq));
            }
            return Err(error);
        }

        for (
            handler,
            Persisted {
                seqs,
                changed,
                swept,
            },
        ) in handlers.iter().zip(done)
        {
            let mut inner = lock(&handler.inner);
            inner.persisting.retain(|seq| !seqs.contains(seq));
            for queue in inner.pending.values_mut() {
                queue.retain(|b| !seqs.contains(&b.seq));
            }
            inner.pending.retain(|_, queue| !queue.is_empty());
            for (key, seq) in changed {
                if let Some(versions) = inner.overlay.get_mut(&key) {
                    versions.retain(|s, _| *s > seq);
                    if versions.is_empty() {
                        inner.overlay.remove(&key);
                    }
                }
            }
            for (key, bytes) in swept {
                // A key with a newer applied value stays in the view.
                if !inner.overlay.contains_key(&key) {
                    inner.keys = inner.keys.saturating_sub(1);
                    inner.bytes = inner.bytes.saturating_sub(bytes);
                }
            }
            if let Some(positions) = watermarks {
                for (tp, position) in positions {
                    if inner.seen.contains(tp) || inner.applied.contains_key(tp) {
                        inner.applied.insert(tp.clone(), *position);
                    }
                }
            }
        }
        Ok(())
    }

    /// Restore every handler that has a changelog from what was written to
    /// it since (see [`HandlerState::catch_up`]).
    pub fn catch_up(&self) -> anyhow::Result<()> {
        let handlers = lock(&self.handlers).clone();
        for handler in handlers {
            handler.catch_up()?;
        }
        Ok(())
    }

    /// Withdraw the batches still pending for `partitions` from every
    /// handler's view: their messages are handled again.
    pub fn discard(&self, partitions: &[TopicPartition]) {
        for handler in lock(&self.handlers).iter() {
            handler.discard(partitions);
        }
    }
}

impl Durability for StateStore {
    fn before_commit(
        &self,
        positions: &[(TopicPartition, i64)],
        kafka_commits: bool,
    ) -> anyhow::Result<()> {
        self.persist(positions, kafka_commits)
    }

    fn revoked(&self, partitions: &[TopicPartition]) {
        self.discard(partitions);
    }

    /// Partitions another host may have handled: what the other hosts
    /// wrote to the changelogs since is restored before their messages.
    fn assigned(&self, _partitions: &[TopicPartition]) -> anyhow::Result<()> {
        self.catch_up()
    }
}

struct Tables<'txn> {
    values: redb::Table<'txn, HandlerKey, StoredValue>,
    tombstones: redb::Table<'txn, HandlerKey, u64>,
    expiry: redb::Table<'txn, (&'static str, i64, &'static str), ()>,
}

impl Tables<'_> {
    /// Write one change unless the store holds a later one for its key.
    fn write(&mut self, handler: &str, change: &Change) -> Result<(), redb::StorageError> {
        let key = change.key();
        let old = self.values.get((handler, key))?.map(|v| {
            let (seq, expires, _) = v.value();
            (seq, expires)
        });
        let deleted = self.tombstones.get((handler, key))?.map(|v| v.value());
        let newest = old.map(|(seq, _)| seq).max(deleted);
        if newest.is_some_and(|seq| seq >= change.seq()) {
            return Ok(());
        }
        if let Some((_, Some(expires))) = old {
            self.expiry.remove((handler, expires, key))?;
        }
        match change {
            Change::Put {
                value,
                expires_ms,
                seq,
                ..
            } => {
                self.values
                    .insert((handler, key), (*seq, *expires_ms, value.as_slice()))?;
                if let Some(expires) = expires_ms {
                    self.expiry.insert((handler, *expires, key), ())?;
                }
                if deleted.is_some() {
                    self.tombstones.remove((handler, key))?;
                }
            }
            Change::Delete { seq, .. } => {
                if old.is_some() {
                    self.values.remove((handler, key))?;
                }
                self.tombstones.insert((handler, key), *seq)?;
            }
        }
        Ok(())
    }

    /// Write one change restored from a changelog, whatever the store holds
    /// for its key: the changelog's order is the order of the changes.
    fn restore(&mut self, handler: &str, change: &Change) -> Result<(), redb::StorageError> {
        let key = change.key();
        let expires = self.values.get((handler, key))?.and_then(|v| v.value().1);
        if let Some(expires) = expires {
            self.expiry.remove((handler, expires, key))?;
        }
        match change {
            Change::Put {
                value, expires_ms, ..
            } => {
                self.values.insert(
                    (handler, key),
                    (RESTORED_SEQ, *expires_ms, value.as_slice()),
                )?;
                if let Some(expires) = expires_ms {
                    self.expiry.insert((handler, *expires, key), ())?;
                }
            }
            Change::Delete { .. } => {
                self.values.remove((handler, key))?;
            }
        }
        Ok(())
    }

    /// Remove `handler`'s keys expired at `now_ms`: their keys and sizes.
    fn sweep(
        &mut self,
        handler: &str,
        now_ms: i64,
    ) -> Result<Vec<(String, u64)>, redb::StorageError> {
        let expired: Vec<(i64, String)> = self
            .expiry
            .range((handler, i64::MIN, "")..=(handler, now_ms, "\u{10FFFF}"))?
            .map(|entry| {
                entry.map(|(k, _)| {
                    let (_, at, key) = k.value();
                    (at, key.to_owned())
                })
            })
            .collect::<Result<_, _>>()?;
        let mut swept = Vec::with_capacity(expired.len());
        for (at, key) in expired {
            self.expiry.remove((handler, at, key.as_str()))?;
            let removed = self.values.remove((handler, key.as_str()))?.map(|v| {
                let (seq, _, value) = v.value();
                (seq, value.len())
            });
            if let Some((seq, len)) = removed {
                // An older batch still pending must not bring it back.
                self.tombstones.insert((handler, key.as_str()), seq)?;
                swept.push(((key.len() + len) as u64, key));
            }
        }
        Ok(swept.into_iter().map(|(bytes, key)| (key, bytes)).collect())
    }
}

/// The state of one handler (every version, every partition): its limits,
/// its pending view and the watermarks of what the store holds.
pub struct HandlerState {
    name: String,
    limits: StateLimits,
    shared: Arc<Shared>,
    inner: Mutex<Inner>,
    /// The changelog every persisted change is also written to, and
    /// restored from, when `[handler.state] changelog` names one.
    changelog: OnceLock<Changelog>,
}

impl std::fmt::Debug for HandlerState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HandlerState")
            .field("name", &self.name)
            .field("limits", &self.limits)
            .finish_non_exhaustive()
    }
}

impl HandlerState {
    /// The handler's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Its limits.
    pub fn limits(&self) -> &StateLimits {
        &self.limits
    }

    /// Keys and bytes the handler holds now (applied writes included).
    pub fn usage(&self) -> (u64, u64) {
        let inner = lock(&self.inner);
        (inner.keys, inner.bytes)
    }

    /// Write every change from now on to `changelog` too (before the
    /// commit that follows it), after restoring from it what the store
    /// lacks.
    pub fn follow(&self, changelog: Changelog) -> anyhow::Result<()> {
        if self.changelog.set(changelog).is_err() {
            anyhow::bail!("handler `{}` has a changelog already", self.name);
        }
        self.catch_up()
    }

    /// Restore from the changelog what was written to it since the store
    /// last read it (everything, for a new or deleted store): other hosts'
    /// changes, and this host's own changes that reached the changelog but
    /// not the store (a crash between the two). Changes apply in the
    /// changelog's order under this host's pending writes; watermarks move
    /// forward only. Nothing to do without a changelog.
    pub fn catch_up(&self) -> anyhow::Result<()> {
        let Some(changelog) = self.changelog.get() else {
            return Ok(());
        };
        let name = self.name.as_str();
        // Workers wait while the view changes under them, as in a persist.
        let mut inner = lock(&self.inner);
        let path = &self.shared.path;
        let err = |e: &dyn std::fmt::Display| store_error(path, e);
        let since: BTreeMap<i32, i64> = {
            let txn = self.shared.db.begin_read().map_err(|e| err(&e))?;
            let table = txn.open_table(RESTORED).map_err(|e| err(&e))?;
            let mut since = BTreeMap::new();
            for entry in table.range((name, i32::MIN)..).map_err(|e| err(&e))? {
                let (key, next) = entry.map_err(|e| err(&e))?;
                let (handler, partition) = key.value();
                if handler != name {
                    break;
                }
                since.insert(partition, next.value());
            }
            since
        };
        let since = (!since.is_empty()).then(|| ChangelogPosition::from(since));
        let mut restored = Vec::new();
        let position = changelog.restore(since.as_ref(), |r| restored.push(r))?;
        if restored.is_empty() && since.as_ref() == Some(&position) {
            return Ok(());
        }
        let touched: HashSet<&str> = restored
            .iter()
            .filter_map(|r| match r {
                Restored::Change(change) => Some(change.key()),
                Restored::Watermark { .. } => None,
            })
            .collect();
        let mut sizes = HashMap::with_capacity(touched.len());
        for key in &touched {
            let before = self.lookup(&inner, key)?;
            sizes.insert(*key, size_of(key, before.as_ref()));
        }
        let mut marks_moved = Vec::new();
        let txn = self.shared.db.begin_write().map_err(|e| err(&e))?;
        {
            let mut tables = Tables {
                values: txn.open_table(VALUES).map_err(|e| err(&e))?,
                tombstones: txn.open_table(TOMBSTONES).map_err(|e| err(&e))?,
                expiry: txn.open_table(EXPIRY).map_err(|e| err(&e))?,
            };
            let mut marks = txn.open_table(WATERMARKS).map_err(|e| err(&e))?;
            for record in &restored {
                match record {
                    Restored::Change(change) => {
                        tables.restore(name, change).map_err(|e| err(&e))?;
                    }
                    Restored::Watermark {
                        topic,
                        partition,
                        next,
                    } => {
                        let at = (name, topic.as_str(), *partition);
                        let old = marks.get(at).map_err(|e| err(&e))?.map(|v| v.value());
                        if old.is_none_or(|old| old < *next) {
                            marks.insert(at, *next).map_err(|e| err(&e))?;
                            marks_moved.push(((Arc::from(topic.as_str()), *partition), *next));
                        }
                    }
                }
            }
            let mut at = txn.open_table(RESTORED).map_err(|e| err(&e))?;
            for (partition, next) in position.offsets() {
                at.insert((name, *partition), *next).map_err(|e| err(&e))?;
            }
        }
        txn.commit().map_err(|e| err(&e))?;
        for (tp, next) in marks_moved {
            let applied = inner.applied.entry(tp).or_insert(next);
            *applied = (*applied).max(next);
        }
        for (key, (old_keys, old_bytes)) in sizes {
            let after = self.lookup(&inner, key)?;
            let (new_keys, new_bytes) = size_of(key, after.as_ref());
            inner.keys = (inner.keys + new_keys).saturating_sub(old_keys);
            inner.bytes = (inner.bytes + new_bytes).saturating_sub(old_bytes);
        }
        tracing::info!(
            handler = name,
            changelog = changelog.topic(),
            records = restored.len(),
            keys = touched.len(),
            "handler state restored from its changelog"
        );
        if since.is_none() {
            // The first time this store meets this changelog: what the store
            // held before the changelog was configured is written to it too,
            // or another host would never see it.
            self.seed(changelog, &inner)?;
        }
        Ok(())
    }

    /// Write every key the store holds for the handler that did not come
    /// from the changelog, and its watermarks, to `changelog`.
    fn seed(&self, changelog: &Changelog, inner: &Inner) -> anyhow::Result<()> {
        let name = self.name.as_str();
        let path = &self.shared.path;
        let err = |e: &dyn std::fmt::Display| store_error(path, e);
        let txn = self.shared.db.begin_read().map_err(|e| err(&e))?;
        let values = txn.open_table(VALUES).map_err(|e| err(&e))?;
        let mut changes = Vec::new();
        for entry in values.range((name, "")..).map_err(|e| err(&e))? {
            let (key, value) = entry.map_err(|e| err(&e))?;
            let (handler, key) = key.value();
            if handler != name {
                break;
            }
            let (seq, expires_ms, value) = value.value();
            // A value restored from the changelog is there already, and
            // writing it again could hide a newer one another host wrote
            // since.
            if seq == RESTORED_SEQ {
                continue;
            }
            changes.push(Change::Put {
                key: key.to_owned(),
                value: value.to_vec(),
                expires_ms,
                seq,
            });
        }
        if changes.is_empty() {
            return Ok(());
        }
        let marks: Vec<(String, i32, i64)> = inner
            .applied
            .iter()
            .map(|((topic, partition), next)| (topic.to_string(), *partition, *next))
            .collect();
        changelog
            .append(&changes, &marks)
            .with_context(|| format!("handler `{name}`: write its state to a new changelog"))?;
        tracing::info!(
            handler = name,
            changelog = changelog.topic(),
            keys = changes.len(),
            "handler state written to its new changelog"
        );
        Ok(())
    }

    /// Whether the writes of the message at `offset` of `topic[partition]`
    /// are in the store already (a replay after a crash between the persist
    /// and the Kafka commit): the handler skips it.
    pub fn already_applied(&self, topic: &str, partition: i32, offset: i64) -> bool {
        // On the per-message path: a scan of the few watermarks rather
        // than a key built (and allocated) for every message.
        let inner = lock(&self.inner);
        inner
            .applied
            .iter()
            .any(|((t, p), next)| *p == partition && **t == *topic && offset < *next)
    }

    /// The value of `key` in the view, expired or not.
    fn lookup(&self, inner: &Inner, key: &str) -> anyhow::Result<Option<Stored>> {
        if let Some((_, top)) = inner.overlay.get(key).and_then(|v| v.last_key_value()) {
            return Ok(top.clone());
        }
        let path = &self.shared.path;
        let txn = self
            .shared
            .db
            .begin_read()
            .map_err(|e| store_error(path, e))?;
        let values = txn.open_table(VALUES).map_err(|e| store_error(path, e))?;
        let stored = values
            .get((self.name.as_str(), key))
            .map_err(|e| store_error(path, e))?
            .map(|v| {
                let (_, expires_ms, value) = v.value();
                Stored {
                    value: value.to_vec(),
                    expires_ms,
                }
            });
        Ok(stored)
    }

    /// Apply the writes of the message at `offset` of `topic[partition]`,
    /// which the handler completed: later messages read them.
    pub fn apply(&self, topic: &str, partition: i32, offset: i64, mut writes: Writes) {
        let mut inner = lock(&self.inner);
        writes.reservation.release(&mut inner);
        inner.latest_ms = Some(
            inner
                .latest_ms
                .map_or(writes.now_ms, |t| t.max(writes.now_ms)),
        );
        // On the per-message path: the partition's key is found among the
        // few seen (no allocation, no hashing) and made once.
        let tp: TopicPartition = match inner
            .seen
            .iter()
            .find(|(t, p)| *p == partition && **t == *topic)
        {
            Some(tp) => tp.clone(),
            None => {
                let tp: TopicPartition = (Arc::from(topic), partition);
                inner.seen.insert(tp.clone());
                tp
            }
        };
        if writes.changes.is_empty() {
            return;
        }
        let seq = self.shared.seq.fetch_add(1, Ordering::SeqCst);
        let mut changes = Vec::with_capacity(writes.changes.len());
        for (key, new) in std::mem::take(&mut writes.changes) {
            // A read error here leaves the counters as they were; the store
            // error surfaces on the next read or persist.
            if let Ok(old) = self.lookup(&inner, &key) {
                let (old_keys, old_bytes) = size_of(&key, old.as_ref());
                let (new_keys, new_bytes) = size_of(&key, new.as_ref());
                inner.keys = (inner.keys + new_keys).saturating_sub(old_keys);
                inner.bytes = (inner.bytes + new_bytes).saturating_sub(old_bytes);
            }
            changes.push(match &new {
                Some(stored) => Change::Put {
                    key: key.clone(),
                    value: stored.value.clone(),
                    expires_ms: stored.expires_ms,
                    seq,
                },
                None => Change::Delete {
                    key: key.clone(),
                    seq,
                },
            });
            inner.overlay.entry(key).or_default().insert(seq, new);
        }
        inner.pending.entry(tp).or_default().push_back(Batch {
            offset,
            seq,
            changes,
        });
    }

    fn discard(&self, partitions: &[TopicPartition]) {
        let mut inner = lock(&self.inner);
        for tp in partitions {
            let Some(batches) = inner.pending.remove(tp) else {
                continue;
            };
            // What a persist under way is writing stays: it reaches the
            // store with the partition's watermark, so those messages are
            // not handled again here.
            let (kept, withdrawn): (VecDeque<Batch>, VecDeque<Batch>) = batches
                .into_iter()
                .partition(|batch| inner.persisting.contains(&batch.seq));
            if !kept.is_empty() {
                inner.pending.insert(tp.clone(), kept);
            }
            if withdrawn.is_empty() {
                continue;
            }
            tracing::info!(handler = %self.name, topic = %tp.0, partition = tp.1, batches = withdrawn.len(), "state writes of messages not committed are withdrawn; the messages are handled again");
            for batch in withdrawn {
                for change in batch.changes {
                    let key = change.key();
                    let before = self.lookup(&inner, key).ok().flatten();
                    if let Some(versions) = inner.overlay.get_mut(key) {
                        versions.remove(&change.seq());
                        if versions.is_empty() {
                            inner.overlay.remove(key);
                        }
                    }
                    let after = self.lookup(&inner, key).ok().flatten();
                    let (old_keys, old_bytes) = size_of(key, before.as_ref());
                    let (new_keys, new_bytes) = size_of(key, after.as_ref());
                    inner.keys = (inner.keys + new_keys).saturating_sub(old_keys);
                    inner.bytes = (inner.bytes + new_bytes).saturating_sub(old_bytes);
                }
            }
        }
    }
}

/// Why a state call stopped the guest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StateFailure {
    /// A key, value, key count or total over `[handler.state]`.
    Limit(String),
    /// `set` or `delete` in `init`.
    Init(String),
    /// The store could not be read.
    Store(String),
}

impl std::fmt::Display for StateFailure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            StateFailure::Limit(text) | StateFailure::Init(text) | StateFailure::Store(text) => {
                f.write_str(text)
            }
        }
    }
}

/// What the running call is.
#[derive(Debug, Clone, Copy)]
enum Mode {
    Init,
    Handle { now_ms: i64 },
}

/// The state side of one instance: the handler's state and the write
/// buffer of the call under way.
#[derive(Debug)]
pub struct CallState {
    handler: Arc<HandlerState>,
    mode: Mode,
    writes: BTreeMap<String, Option<Stored>>,
    /// Change of the key count and bytes the buffer makes to the view.
    keys_delta: i64,
    bytes_delta: i64,
    /// What of it is reserved in the handler's state (the growth).
    reservation: Reservation,
}

/// A key as error texts show it: quoted, cut to 64 bytes.
fn shown(key: &str) -> String {
    let mut end = key.len().min(64);
    while !key.is_char_boundary(end) {
        end -= 1;
    }
    let cut = if end < key.len() { "…" } else { "" };
    format!("{:?}{cut}", &key[..end])
}

impl CallState {
    /// The state side of a fresh instance of `handler`'s code, in `init`.
    pub fn new(handler: Arc<HandlerState>) -> Self {
        CallState {
            handler,
            mode: Mode::Init,
            writes: BTreeMap::new(),
            keys_delta: 0,
            bytes_delta: 0,
            reservation: Reservation::default(),
        }
    }

    /// A `handle` call begins for a message stamped `now_ms`.
    pub fn begin(&mut self, now_ms: i64) {
        self.mode = Mode::Handle { now_ms };
        self.writes.clear();
        self.keys_delta = 0;
        self.bytes_delta = 0;
        self.reservation = Reservation::default();
    }

    /// The call ended: its writes, to apply when the message succeeds.
    pub fn finish(&mut self) -> Writes {
        let now_ms = match self.mode {
            Mode::Handle { now_ms } => now_ms,
            Mode::Init => 0,
        };
        self.keys_delta = 0;
        self.bytes_delta = 0;
        Writes {
            changes: std::mem::take(&mut self.writes),
            now_ms,
            reservation: std::mem::take(&mut self.reservation),
        }
    }

    /// The handler's state.
    pub fn handler(&self) -> &Arc<HandlerState> {
        &self.handler
    }

    /// `get`: the buffer first, then the view; expired keys read as absent.
    pub fn get(&mut self, key: &str) -> Result<Option<Vec<u8>>, StateFailure> {
        let handler = Arc::clone(&self.handler);
        let inner = lock(&handler.inner);
        // In `init` there is no message: the latest message time handled.
        let now_ms = match self.mode {
            Mode::Handle { now_ms } => Some(now_ms),
            Mode::Init => inner.latest_ms,
        };
        let alive = |s: &Stored| now_ms.is_none_or(|now| s.alive_at(now));
        if let Some(buffered) = self.writes.get(key) {
            return Ok(buffered
                .as_ref()
                .filter(|s| alive(s))
                .map(|s| s.value.clone()));
        }
        match handler.lookup(&inner, key) {
            Ok(stored) => Ok(stored.filter(|s| alive(s)).map(|s| s.value)),
            Err(error) => {
                drop(inner);
                Err(StateFailure::Store(format!(
                    "cannot read state key {}: {error:#}",
                    shown(key)
                )))
            }
        }
    }

    /// `set`, checked against the limits.
    pub fn set(
        &mut self,
        key: String,
        value: Vec<u8>,
        ttl_ms: Option<u64>,
    ) -> Result<(), StateFailure> {
        let Mode::Handle { now_ms } = self.mode else {
            return Err(StateFailure::Init(format!(
                "init may read state but not write it: it called set({})",
                shown(&key)
            )));
        };
        let limits = self.handler.limits;
        if key.len() > limits.max_key_bytes {
            return Err(StateFailure::Limit(format!(
                "state key {} is {} bytes, over [handler.state] max_key_bytes = {}",
                shown(&key),
                key.len(),
                limits.max_key_bytes
            )));
        }
        if value.len() as u64 > limits.max_value_bytes() {
            return Err(StateFailure::Limit(format!(
                "state value for key {} is {} bytes, over [handler.state] max_value_kib = {}",
                shown(&key),
                value.len(),
                limits.max_value_kib
            )));
        }
        let expires_ms =
            ttl_ms.map(|ttl| now_ms.saturating_add(i64::try_from(ttl).unwrap_or(i64::MAX)));
        let new = Stored { value, expires_ms };
        self.write(key, Some(new))
    }

    /// `delete`.
    pub fn delete(&mut self, key: String) -> Result<(), StateFailure> {
        if let Mode::Init = self.mode {
            return Err(StateFailure::Init(format!(
                "init may read state but not write it: it called delete({})",
                shown(&key)
            )));
        }
        if key.len() > self.handler.limits.max_key_bytes {
            // No such key can exist.
            return Ok(());
        }
        self.write(key, None)
    }

    /// Buffer a write after checking the key count and total bytes it
    /// would give the handler.
    fn write(&mut self, key: String, new: Option<Stored>) -> Result<(), StateFailure> {
        let handler = Arc::clone(&self.handler);
        let limits = handler.limits;
        // Checked and reserved under one lock: a call on another worker
        // sees this one's growth before it is applied.
        let mut inner = lock(&handler.inner);
        let old = match self.writes.get(&key) {
            Some(buffered) => buffered.clone(),
            None => handler.lookup(&inner, &key).map_err(|error| {
                StateFailure::Store(format!("cannot read state key {}: {error:#}", shown(&key)))
            })?,
        };
        let (old_keys, old_bytes) = size_of(&key, old.as_ref());
        let (new_keys, new_bytes) = size_of(&key, new.as_ref());
        let keys_delta = self.keys_delta + new_keys as i64 - old_keys as i64;
        let bytes_delta = self.bytes_delta + new_bytes as i64 - old_bytes as i64;
        // The view, what other calls reserved, and this call's change.
        let others_keys = inner.reserved_keys.saturating_sub(self.reservation.keys);
        let others_bytes = inner.reserved_bytes.saturating_sub(self.reservation.bytes);
        let total_keys = ((inner.keys + others_keys) as i64 + keys_delta).max(0) as u64;
        let total_bytes = ((inner.bytes + others_bytes) as i64 + bytes_delta).max(0) as u64;
        if new_keys > old_keys && total_keys > limits.max_keys {
            return Err(StateFailure::Limit(format!(
                "setting state key {} would make {total_keys} keys, over [handler.state] max_keys = {}",
                shown(&key),
                limits.max_keys
            )));
        }
        if new_bytes > old_bytes && total_bytes > limits.max_total_bytes() {
            return Err(StateFailure::Limit(format!(
                "setting state key {} would make {total_bytes} bytes of keys and values, over [handler.state] max_total_mib = {}",
                shown(&key),
                limits.max_total_mib
            )));
        }
        let (keys, bytes) = (keys_delta.max(0) as u64, bytes_delta.max(0) as u64);
        inner.reserved_keys = others_keys + keys;
        inner.reserved_bytes = others_bytes + bytes;
        self.reservation.keys = keys;
        self.reservation.bytes = bytes;
        if self.reservation.handler.is_none() {
            self.reservation.handler = Some(Arc::clone(&handler));
        }
        drop(inner);
        self.keys_delta = keys_delta;
        self.bytes_delta = bytes_delta;
        self.writes.insert(key, new);
        Ok(())
    }
}

#[cfg(test)]
mod tests;
