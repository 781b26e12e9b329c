//! The file sink, with group commit.
//!
//! A save is written to a temporary file in its target directory by the
//! worker, then handed to the sink's syncer thread, which takes saves in
//! batches: fsync every temporary file (in parallel, so the journal commits
//! once), rename them into place in the order they came (per partition,
//! offset order), fsync each distinct directory once (and the parent of
//! every directory created for them), and only then drops their tokens. So
//! "committed ⇒ on disk" holds exactly as with one fsync per file, a reader
//! never sees a partial file, and a crash leaves either the old file or the
//! new one.
//!
//! Names: saves of handler `h` live under `<dir>/<h>/`; the default name is
//! NASA's archiver layout `<topic>/partition=<p>/<topic>+<p>+<offset>.bin`
//! (the i-th unnamed save of a decision, i ≥ 1, ends in `-<i>.bin`), a hint
//! is sanitized and taken relative to `<dir>/<h>/`. Each file records the
//! message it was written for (an extended attribute); a save that would
//! replace another message's file, or a file where a directory is needed
//! (or the reverse), is refused. A message delivered again overwrites its
//! own file.
//!
//! Temporary files (`.alerthost-<pid>-*.tmp`) are locked (`flock`) by
//! their writer until renamed; the first save into a directory removes
//! those nobody holds, left by a writer that died. Locks, unlike pids, mean
//! the same to every host sharing the volume (on NFS, Linux maps `flock`
//! to the protocol's locks).

use std::collections::{HashMap, HashSet};
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::sync::mpsc::{Receiver, SyncSender, sync_channel};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Instant;

use anyhow::Context as _;

use super::{Record, Refused, dead_letter_json};
use crate::commit::Ack;
use crate::shutdown::Fatal;
use crate::stats::Stats;

/// Most path components a guest's name hint keeps (the last ones).
const MAX_COMPONENTS: usize = 4;
/// Most bytes in one path component.
const MAX_COMPONENT_BYTES: usize = 100;
/// Most saves the syncer takes in one batch.
const MAX_BATCH: usize = 1024;
/// Saves queued for the syncer before a worker waits.
const SYNC_QUEUE: usize = 4096;
/// Saves in one batch from which the syncer makes the batch durable with one
/// syncfs of the sink's filesystem instead of an fsync per file.
const SYNCFS_FROM: usize = 8;
/// Threads that fsync the files of one batch side by side.
const FSYNC_THREADS: usize = 4;
/// The extended attribute naming the message a file was written for.
const ORIGIN_XATTR: &str = "user.alerthost.origin";
/// Start of every temporary file name, followed by the writer's pid.
const TEMP_PREFIX: &str = ".alerthost-";

/// Writes files under one directory.
#[derive(Debug, Clone)]
pub struct FileSink {
    inner: Arc<Inner>,
    /// Saves waiting for their group fsync; `None` for a sink that writes
    /// each file durably before returning (`alerthost test`).
    syncer: Option<SyncSender<Staged>>,
}

#[derive(Debug)]
struct Inner {
    name: String,
    dir: PathBuf,
    stats: Arc<Stats>,
    /// Paths staged and not yet renamed, with the message each is for.
    staged: Mutex<HashMap<PathBuf, (String, u32)>>,
    /// Directories known to exist with their entries durable.
    durable: Mutex<HashSet<PathBuf>>,
    /// Directories already cleared of temporary files left by dead
    /// processes.
    swept: Mutex<HashSet<PathBuf>>,
    /// The device of the sink's directory, for syncfs.
    device: Option<u64>,
}

/// A save written to a temporary file, waiting for its fsync and rename.
#[derive(Debug)]
struct Staged {
    tmp: tempfile::NamedTempFile,
    path: PathBuf,
    /// Directories to fsync before the save counts: the file's own, and
    /// the parents of directories created (or not yet known durable).
    dirs: Vec<PathBuf>,
    ack: Option<Ack>,
    at: String,
    /// When the save was handed over, for the sink's latency.
    since: Instant,
}

/// Why a save could not be staged.
enum StageError {
    Refused(String),
    Io(anyhow::Error),
}

impl FileSink {
    /// A sink writing under `dir` (created, durably, if missing) that makes
    /// each file durable before [`FileSink::write`] returns.
    pub fn new(dir: impl Into<PathBuf>) -> anyhow::Result<Self> {
        Self::create(String::new(), dir.into(), Arc::default())
    }

    /// Sink `name` writing under `dir` with group commit: saves are made
    /// durable by a syncer thread of its own, which ends when the last
    /// clone of the sink is dropped.
    pub fn start(name: &str, dir: impl Into<PathBuf>, stats: Arc<Stats>) -> anyhow::Result<Self> {
        let mut sink = Self::create(name.to_owned(), dir.into(), stats)?;
        let (tx, rx) = sync_channel(SYNC_QUEUE);
        let inner = Arc::clone(&sink.inner);
        std::thread::Builder::new()
            .name(format!("alerthost-sync-{name}"))
            .spawn(move || syncer(&inner, &rx))
            .with_context(|| format!("cannot start the syncer of sink `{name}`"))?;
        sink.syncer = Some(tx);
        Ok(sink)
    }

    fn create(name: String, dir: PathBuf, stats: Arc<Stats>) -> anyhow::Result<Self> {
        // The root and every directory created for it, durable now.
        let mut missing = Vec::new();
        let mut at = dir.as_path();
        while !at.as_os_str().is_empty() && !at.exists() {
            missing.push(at.to_owned());
            at = at.parent().unwrap_or(Path::new(""));
        }
        std::fs::create_dir_all(&dir)
            .with_context(|| format!("cannot create the save directory {}", dir.display()))?;
        let device = {
            use std::os::unix::fs::MetadataExt as _;
            std::fs::metadata(&dir).ok().map(|meta| meta.dev())
        };
        let inner = Inner {
            name,
            dir: dir.clone(),
            stats,
            staged: Mutex::default(),
            durable: Mutex::default(),
            swept: Mutex::default(),
            device,
        };
        for created in missing.iter().rev() {
            if let Some(parent) = created.parent().filter(|p| !p.as_os_str().is_empty()) {
                inner
                    .sync_dir(parent)
                    .with_context(|| format!("cannot sync directory {}", parent.display()))?;
            }
        }
        inner.durable().insert(dir);
        Ok(FileSink {
            inner: Arc::new(inner),
            syncer: None,
        })
    }

    /// A sink that only names files under `dir`, for reporting where saves
    /// would go; nothing is created.
    pub fn unwritten(dir: &Path) -> Self {
        FileSink {
            inner: Arc::new(Inner {
                name: String::new(),
                dir: dir.to_owned(),
                stats: Arc::default(),
                staged: Mutex::default(),
                durable: Mutex::default(),
                swept: Mutex::default(),
                device: None,
            }),
            syncer: None,
        }
    }

    /// The directory files go to.
    pub fn dir(&self) -> &Path {
        &self.inner.dir
    }

    /// Where a save lands without a handler namespace: the sanitized hint,
    /// or the default name from topic, partition and offset. Always inside
    /// [`FileSink::dir`].
    pub fn path_for(
        &self,
        hint: Option<&str>,
        topic: &str,
        partition: i32,
        offset: i64,
    ) -> PathBuf {
        let relative = hint
            .and_then(sanitize_name)
            .unwrap_or_else(|| default_name(topic, partition, offset));
        self.inner.dir.join(relative)
    }

    /// Where a save of handler `handler` lands: under `<dir>/<handler>/`,
    /// the sanitized hint, or the default name (with `-<index>` for the
    /// decision's later unnamed saves).
    pub fn save_path(
        &self,
        handler: &str,
        hint: Option<&str>,
        index: usize,
        topic: &str,
        partition: i32,
        offset: i64,
    ) -> PathBuf {
        let namespace = sanitize_component(handler).unwrap_or_else(|| "unnamed-handler".into());
        let relative = hint.and_then(sanitize_name).unwrap_or_else(|| {
            let mut name = default_name(topic, partition, offset);
            if index > 0 {
                name.set_extension("");
                let file = format!(
                    "{}-{index}.bin",
                    name.file_name().unwrap_or_default().to_string_lossy()
                );
                name.set_file_name(file);
            }
            name
        });
        self.inner.dir.join(namespace).join(relative)
    }

    /// Write `bytes` to `path` (from [`FileSink::path_for`]) atomically and
    /// durably, directories included. When this returns `Ok`, the file is
    /// complete on disk.
    pub fn write(&self, path: &Path, bytes: &[u8]) -> anyhow::Result<()> {
        let staged = match self.inner.stage(path, bytes, "", String::new()) {
            Ok(staged) => staged,
            Err(StageError::Refused(reason)) => anyhow::bail!("{reason}"),
            Err(StageError::Io(error)) => return Err(error),
        };
        staged
            .tmp
            .as_file()
            .sync_all()
            .with_context(|| format!("cannot write {}", path.display()))?;
        let Staged {
            tmp, path, dirs, ..
        } = staged;
        tmp.persist(&path).with_context(|| {
            format!(
                "cannot move the saved file into place at {}",
                path.display()
            )
        })?;
        self.inner.unstage(&path);
        for dir in &dirs {
            self.inner
                .sync_dir(dir)
                .with_context(|| format!("cannot sync directory {}", dir.display()))?;
        }
        Ok(())
    }

    /// Stage `record` and hand it to the syncer; `ack` is dropped once the
    /// file is durable.
    pub fn deliver(&self, record: &Record<'_>, ack: Ack) -> Result<(), Refused> {
        let origin = record.origin();
        let msg = origin.msg;
        let owner = format!("{}\0{}\0{}", msg.topic, msg.partition, msg.offset);
        let mut files: Vec<(PathBuf, Vec<u8>)> = Vec::with_capacity(2);
        match record {
            Record::Save {
                hint, index, value, ..
            } => files.push((
                self.save_path(
                    origin.handler,
                    *hint,
                    *index,
                    &msg.topic,
                    msg.partition,
                    msg.offset,
                ),
                value.to_vec(),
            )),
            Record::DeadLetter { failure, .. } => {
                // The raw bytes as they came, and the record beside them.
                let path = self.save_path(
                    origin.handler,
                    None,
                    0,
                    &msg.topic,
                    msg.partition,
                    msg.offset,
                );
                let mut record_path = path.clone().into_os_string();
                record_path.push(".error.json");
                files.push((path, msg.value.clone()));
                files.push((
                    record_path.into(),
                    dead_letter_json(origin, failure).to_string().into_bytes(),
                ));
            }
            Record::Forward { .. } => {
                return Err(self.refused("a file sink takes saves, not forwards".into()));
            }
        }
        for (path, bytes) in files {
            match self.inner.stage(&path, &bytes, &owner, origin.at()) {
                Ok(mut staged) => {
                    staged.ack = Some(ack.clone());
                    self.hand_over(staged);
                }
                Err(StageError::Refused(reason)) => return Err(self.refused(reason)),
                Err(StageError::Io(error)) => {
                    ack.fail(Fatal::Sink {
                        sink: self.inner.name.clone(),
                        at: origin.at(),
                        reason: format!("{error:#}"),
                    });
                    return Ok(());
                }
            }
        }
        Ok(())
    }

    fn hand_over(&self, staged: Staged) {
        match &self.syncer {
            Some(syncer) => {
                if let Err(back) = syncer.send(staged) {
                    // The syncer ended (it only does when the sink is
                    // dropped): sync here instead.
                    sync_batch(&self.inner, vec![back.0]);
                }
            }
            None => sync_batch(&self.inner, vec![staged]),
        }
    }

    fn refused(&self, reason: String) -> Refused {
        Refused {
            sink: self.inner.name.clone(),
            reason,
        }
    }
}

impl Inner {
    fn durable(&self) -> std::sync::MutexGuard<'_, HashSet<PathBuf>> {
        self.durable.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn staged(&self) -> std::sync::MutexGuard<'_, HashMap<PathBuf, (String, u32)>> {
        self.staged.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Whether `tmp` is on the filesystem of the sink's directory.
    fn same_fs(&self, tmp: &tempfile::NamedTempFile) -> bool {
        use std::os::unix::fs::MetadataExt as _;
        self.device.is_some_and(|device| {
            tmp.as_file()
                .metadata()
                .is_ok_and(|meta| meta.dev() == device)
        })
    }

    /// syncfs(2) of the sink directory's filesystem: everything written to
    /// it is durable when this returns `Ok` (writeback errors are reported
    /// since Linux 5.8).
    fn sync_fs(&self) -> std::io::Result<()> {
        self.stats.fsyncs.bump();
        let dir = std::fs::File::open(&self.dir)?;
        rustix::fs::syncfs(&dir).map_err(std::io::Error::from)
    }

    fn sync_dir(&self, dir: &Path) -> std::io::Result<()> {
        self.stats.fsyncs.bump();
        std::fs::File::open(dir)?.sync_all()
    }

    /// Check that `path` may be written for `owner`, create its directories
    /// and write `bytes` to a temporary file beside it.
    fn stage(
        &self,
        path: &Path,
        bytes: &[u8],
        owner: &str,
        at: String,
    ) -> Result<Staged, StageError> {
        let relative = path.strip_prefix(&self.dir).map_err(|_| {
            StageError::Io(anyhow::anyhow!(
                "{} is outside the sink's directory {}",
                path.display(),
                self.dir.display()
            ))
        })?;
        let parent = path.parent().unwrap_or(&self.dir);
        let dirs = {
            // One check at a time, so two saves racing for one name cannot
            // both pass; the claim lasts until the syncer renames the file.
            let mut staged = self.staged();
            let dirs = self.ensure_dir(parent, relative, &staged)?;
            match staged.get_mut(path) {
                Some((claimed, _)) if claimed != owner => {
                    return Err(StageError::Refused(format!(
                        "`{}` is being written for another message",
                        relative.display()
                    )));
                }
                Some((_, count)) => *count += 1,
                None => {
                    check_replaceable(path, relative, owner)?;
                    staged.insert(path.to_owned(), (owner.to_owned(), 1));
                }
            }
            dirs
        };
        self.sweep(parent);
        let result = (|| {
            let mut tmp = locked_temp_file(parent)?;
            tmp.write_all(bytes)
                .with_context(|| format!("cannot write {}", path.display()))?;
            if !owner.is_empty() {
                match rustix::fs::fsetxattr(
                    tmp.as_file(),
                    ORIGIN_XATTR,
                    owner.as_bytes(),
                    rustix::fs::XattrFlags::empty(),
                ) {
                    Ok(()) | Err(rustix::io::Errno::NOTSUP) => {}
                    Err(error) => {
                        return Err(anyhow::Error::new(std::io::Error::from(error))
                            .context(format!("cannot record the origin of {}", path.display())));
                    }
                }
            }
            Ok(tmp)
        })();
        match result {
            Ok(tmp) => Ok(Staged {
                tmp,
                path: path.to_owned(),
                dirs,
                ack: None,
                at,
                since: Instant::now(),
            }),
            Err(error) => {
                self.unstage(path);
                Err(StageError::Io(error))
            }
        }
    }

    fn unstage(&self, path: &Path) {
        let mut staged = self.staged();
        if let Some((_, count)) = staged.get_mut(path) {
            *count -= 1;
            if *count == 0 {
                staged.remove(path);
            }
        }
    }

    /// Create `parent` one level at a time. Returns the directories to fsync
    /// before a file in `parent` counts as durable: `parent` itself, and,
    /// until `parent` is known durable, every directory from the sink's root
    /// down to it (the parents of new directories among them).
    /// A directory that is a file staged and not renamed yet is refused
    /// too.
    fn ensure_dir(
        &self,
        parent: &Path,
        relative: &Path,
        staged: &HashMap<PathBuf, (String, u32)>,
    ) -> Result<Vec<PathBuf>, StageError> {
        if self.durable().contains(parent) {
            return Ok(vec![parent.to_owned()]);
        }
        let inside = parent.strip_prefix(&self.dir).unwrap_or(Path::new(""));
        let mut dirs = vec![self.dir.clone()];
        let mut at = self.dir.clone();
        for component in inside.components() {
            at.push(component);
            if staged.contains_key(&at) {
                return Err(StageError::Refused(format!(
                    "cannot save `{}`: `{}` is a file, not a directory",
                    relative.display(),
                    at.strip_prefix(&self.dir).unwrap_or(&at).display()
                )));
            }
            match std::fs::create_dir(&at) {
                Ok(()) => {}
                Err(error) if error.kind() == std::io::ErrorKind::AlreadyExists => {
                    if !at.is_dir() {
                        return Err(StageError::Refused(format!(
                            "cannot save `{}`: `{}` is a file, not a directory",
                            relative.display(),
                            at.strip_prefix(&self.dir).unwrap_or(&at).display()
                        )));
                    }
                }
                Err(error) if error.raw_os_error() == Some(libc::ENOTDIR) => {
                    return Err(StageError::Refused(format!(
                        "cannot save `{}`: a file is in the way of its directory",
                        relative.display()
                    )));
                }
                Err(error) => {
                    return Err(StageError::Io(
                        anyhow::Error::new(error)
                            .context(format!("cannot create directory {}", at.display())),
                    ));
                }
            }
            dirs.push(at.clone());
        }
        Ok(dirs)
    }

    /// Once per directory, remove temporary files whose writer died (a
    /// `kill -9` mid-write). A writer holds a lock on its temporary file
    /// until the file is renamed, and the lock goes with the process, so a
    /// file nobody holds is a leftover. The pid in the name is not asked:
    /// on a volume shared by containers or machines it may belong to another
    /// pid namespace, or be this process's own after a restart.
    fn sweep(&self, dir: &Path) {
        let mut swept = self.swept.lock().unwrap_or_else(PoisonError::into_inner);
        if !swept.insert(dir.to_owned()) {
            return;
        }
        for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
            let name = entry.file_name();
            if !name
                .to_str()
                .is_some_and(|n| n.starts_with(TEMP_PREFIX) && n.ends_with(".tmp"))
            {
                continue;
            }
            let path = entry.path();
            let Ok(file) = std::fs::File::open(&path) else {
                continue;
            };
            // Held by a live writer (of any process, this one included).
            if rustix::fs::flock(&file, rustix::fs::FlockOperation::NonBlockingLockExclusive)
                .is_err()
            {
                continue;
            }
            match std::fs::remove_file(&path) {
                Ok(()) => {
                    tracing::info!(path = %path.display(), "removed a temporary file left by a process that died mid-write")
                }
                Err(error) if error.kind() == std::io::ErrorKind::NotFound => {}
                Err(error) => {
                    tracing::warn!(path = %path.display(), %error, "cannot remove a stale temporary file")
                }
            }
        }
    }
}

/// A new temporary file in `dir`, locked (`flock`) for as long as it is
/// open, so a sweep by any host sharing the directory leaves it alone. A
/// sweep may catch the file between its creation and the lock and remove
/// it: then the lock is on a file without a name, and another is made.
fn locked_temp_file(dir: &Path) -> anyhow::Result<tempfile::NamedTempFile> {
    let prefix = format!("{TEMP_PREFIX}{}-", std::process::id());
    loop {
        let tmp = tempfile::Builder::new()
            .prefix(&prefix)
            .suffix(".tmp")
            .tempfile_in(dir)
            .with_context(|| format!("cannot create a temporary file in {}", dir.display()))?;
        rustix::fs::flock(tmp.as_file(), rustix::fs::FlockOperation::LockExclusive)
            .map_err(std::io::Error::from)
            .with_context(|| format!("cannot lock a temporary file in {}", dir.display()))?;
        let linked = rustix::fs::fstat(tmp.as_file())
            .map_err(std::io::Error::from)
            .with_context(|| format!("cannot look at a temporary file in {}", dir.display()))?
            .st_nlink;
        if linked > 0 {
            return Ok(tmp);
        }
    }
}

/// Whether `path` may be (over)written for `owner`: it does not exist, or it
/// is a file written for the same message.
fn check_replaceable(path: &Path, relative: &Path, owner: &str) -> Result<(), StageError> {
    match std::fs::symlink_metadata(path) {
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(error) if error.raw_os_error() == Some(libc::ENOTDIR) => {
            Err(StageError::Refused(format!(
                "cannot save `{}`: a file is in the way of its directory",
                relative.display()
            )))
        }
        Err(error) => Err(StageError::Io(
            anyhow::Error::new(error).context(format!("cannot look at {}", path.display())),
        )),
        Ok(meta) if meta.is_dir() => Err(StageError::Refused(format!(
            "cannot save `{}`: it is a directory",
            relative.display()
        ))),
        Ok(_) if owner.is_empty() => Ok(()),
        Ok(_) => {
            let mut buf = [0_u8; 512];
            match rustix::fs::lgetxattr(path, ORIGIN_XATTR, &mut buf[..]) {
                Ok(len) if &buf[..len] == owner.as_bytes() => Ok(()),
                // Without extended attributes the default name, which
                // spells out topic, partition and offset, is all there is.
                Err(rustix::io::Errno::NOTSUP) => Ok(()),
                Ok(len) => Err(StageError::Refused(format!(
                    "cannot save `{}`: it holds another message ({})",
                    relative.display(),
                    String::from_utf8_lossy(&buf[..len]).replace('\0', " ")
                ))),
                Err(_) => Err(StageError::Refused(format!(
                    "cannot save `{}`: a file alerthost did not write for this message is there",
                    relative.display()
                ))),
            }
        }
    }
}

/// The syncer thread: batches until the sink is dropped.
fn syncer(inner: &Inner, rx: &Receiver<Staged>) {
    while let Ok(first) = rx.recv() {
        let mut batch = vec![first];
        while batch.len() < MAX_BATCH {
            match rx.try_recv() {
                Ok(next) => batch.push(next),
                Err(_) => break,
            }
        }
        sync_batch(inner, batch);
    }
}

/// A save after its rename: its token, where it is from, the directories
/// to fsync, and whether the fsync and rename worked.
type Renamed = (
    Option<Ack>,
    String,
    Vec<PathBuf>,
    Result<(), String>,
    Instant,
);

/// Make a batch durable: fsync the files, rename them in order, fsync each
/// directory once, then drop the tokens (or fail those that could not be
/// made durable).
fn sync_batch(inner: &Inner, batch: Vec<Staged>) {
    // A large batch on the sink's own filesystem is made durable with one
    // syncfs (every dirty file and directory of that filesystem, one
    // journal commit) instead of one fsync per file.
    let whole_fs = batch.len() >= SYNCFS_FROM && batch.iter().all(|s| inner.same_fs(&s.tmp));
    let synced: Vec<std::io::Result<()>> = if whole_fs {
        let result = inner.sync_fs();
        batch
            .iter()
            .map(|_| match &result {
                Ok(()) => Ok(()),
                Err(e) => Err(std::io::Error::new(e.kind(), e.to_string())),
            })
            .collect()
    } else if batch.len() == 1 {
        inner.stats.fsyncs.bump();
        vec![batch[0].tmp.as_file().sync_all()]
    } else {
        inner.stats.fsyncs.add(batch.len() as u64);
        let chunk = batch.len().div_ceil(FSYNC_THREADS);
        std::thread::scope(|scope| {
            let threads: Vec<_> = batch
                .chunks(chunk)
                .map(|part| {
                    scope.spawn(move || {
                        part.iter()
                            .map(|s| s.tmp.as_file().sync_all())
                            .collect::<Vec<_>>()
                    })
                })
                .collect();
            threads
                .into_iter()
                .flat_map(|t| {
                    t.join().unwrap_or_else(|_| {
                        vec![Err(std::io::Error::other("fsync thread panicked"))]
                    })
                })
                .collect()
        })
    };
    let mut done: Vec<Renamed> = Vec::with_capacity(batch.len());
    for (staged, synced) in batch.into_iter().zip(synced) {
        let Staged {
            tmp,
            path,
            dirs,
            ack,
            at,
            since,
        } = staged;
        let result = synced
            .map_err(|e| format!("cannot write {}: {e}", path.display()))
            .and_then(|()| {
                tmp.persist(&path)
                    .map(drop)
                    .map_err(|e| format!("cannot move {} into place: {}", path.display(), e.error))
            });
        inner.unstage(&path);
        done.push((ack, at, dirs, result, since));
    }
    let mut dir_results: HashMap<PathBuf, Result<(), String>> = HashMap::new();
    let dirs: Vec<&PathBuf> = done
        .iter()
        .filter(|(_, _, _, result, _)| result.is_ok())
        .flat_map(|(_, _, dirs, _, _)| dirs)
        .collect();
    let whole_fs = whole_fs && !dirs.is_empty();
    let fs_synced = whole_fs.then(|| {
        inner
            .sync_fs()
            .map_err(|e| format!("cannot sync the directories: {e}"))
    });
    for dir in dirs {
        if !dir_results.contains_key(dir) {
            let synced = match &fs_synced {
                Some(result) => result.clone(),
                None => inner
                    .sync_dir(dir)
                    .map_err(|e| format!("cannot sync directory {}: {e}", dir.display())),
            };
            dir_results.insert(dir.clone(), synced);
        }
    }
    let mut durable = Vec::new();
    for (ack, at, dirs, result, since) in done {
        let result = result.and_then(|()| {
            dirs.iter()
                .try_for_each(|d| dir_results.get(d).cloned().unwrap_or(Ok(())))
        });
        inner
            .stats
            .metrics
            .sink_write(&inner.name, since.elapsed(), result.is_ok());
        match (result, ack) {
            (Ok(()), ack) => {
                inner.stats.files.bump();
                if let Some(last) = dirs.last() {
                    durable.push(last.clone());
                }
                drop(ack);
            }
            (Err(reason), Some(ack)) => ack.fail(Fatal::Sink {
                sink: inner.name.clone(),
                at,
                reason,
            }),
            (Err(reason), None) => tracing::error!("{reason}"),
        }
    }
    inner.durable().extend(durable);
}

/// The default name of a saved message, as NASA's own archiver lays it out:
/// `<topic>/partition=<p>/<topic>+<p>+<offset>.bin`. A message delivered again
/// lands on its own file.
pub fn default_name(topic: &str, partition: i32, offset: i64) -> PathBuf {
    let topic = sanitize_component(topic).unwrap_or_else(|| "unnamed-topic".to_owned());
    PathBuf::from(&topic)
        .join(format!("partition={partition}"))
        .join(format!("{topic}+{partition}+{offset}.bin"))
}

/// Reduce a guest's name hint to a safe relative path: only letters, digits
/// and `._-+=@,` survive (others become `_`), components that are empty, `.`
/// or `..` are dropped, leading dots are removed (no hidden files), at most
/// the last four components of at most 100 bytes each are kept. `None` when
/// nothing usable is left.
pub fn sanitize_name(hint: &str) -> Option<PathBuf> {
    let components: Vec<String> = hint
        .split(['/', '\\'])
        .filter_map(sanitize_component)
        .collect();
    let keep = &components[components.len().saturating_sub(MAX_COMPONENTS)..];
    if keep.is_empty() {
        return None;
    }
    Some(keep.iter().collect())
}

fn sanitize_component(raw: &str) -> Option<String> {
    let cleaned: String = raw
        .chars()
        .filter(|c| !c.is_control())
        .map(|c| {
            if c.is_ascii_alphanumeric() || "._-+=@,".contains(c) {
                c
            } else {
                '_'
            }
        })
        .collect();
    let trimmed = cleaned.trim_start_matches('.');
    if trimmed.is_empty() {
        return None;
    }
    // Only ASCII is left, so any byte index is a char boundary.
    Some(trimmed[..trimmed.len().min(MAX_COMPONENT_BYTES)].to_owned())
}

#[cfg(test)]
mod tests;
