//! The file sink: every save is atomic (temp file, fsync, rename, fsync of the
//! directory), so a reader never sees a partial file and a crash leaves either
//! the old file or the new one.

use std::collections::HashSet;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};

use anyhow::Context as _;

/// Most path components a guest's name hint keeps (the last ones).
const MAX_COMPONENTS: usize = 4;
/// Most bytes in one path component.
const MAX_COMPONENT_BYTES: usize = 100;

/// Writes files under one directory.
#[derive(Debug, Clone)]
pub struct FileSink {
    dir: PathBuf,
    /// Directories already cleared of temporary files left by dead
    /// processes.
    swept: Arc<Mutex<HashSet<PathBuf>>>,
}

impl FileSink {
    /// A sink writing under `dir`, which is created if missing.
    pub fn new(dir: impl Into<PathBuf>) -> anyhow::Result<Self> {
        let dir = dir.into();
        std::fs::create_dir_all(&dir)
            .with_context(|| format!("cannot create the save directory {}", dir.display()))?;
        Ok(FileSink {
            dir,
            swept: Arc::default(),
        })
    }

    /// A sink that only names files under `dir`, for reporting where saves
    /// would go; nothing is created.
    pub fn unwritten(dir: &Path) -> Self {
        FileSink {
            dir: dir.to_owned(),
            swept: Arc::default(),
        }
    }

    /// The directory files go to.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Where a save lands: the sanitized hint, or the default name from
    /// topic, partition and offset. Always inside [`FileSink::dir`].
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
        self.dir.join(relative)
    }

    /// Write `bytes` to `path` (from [`FileSink::path_for`]) atomically and
    /// durably. When this returns `Ok`, the file is complete on disk.
    pub fn write(&self, path: &Path, bytes: &[u8]) -> anyhow::Result<()> {
        debug_assert!(path.starts_with(&self.dir));
        let parent = path.parent().unwrap_or(&self.dir);
        std::fs::create_dir_all(parent)
            .with_context(|| format!("cannot create directory {}", parent.display()))?;
        self.sweep(parent);
        let prefix = format!("{TEMP_PREFIX}{}-", std::process::id());
        let mut tmp = tempfile::Builder::new()
            .prefix(&prefix)
            .suffix(".tmp")
            .tempfile_in(parent)
            .with_context(|| format!("cannot create a temporary file in {}", parent.display()))?;
        tmp.write_all(bytes)
            .and_then(|()| tmp.as_file().sync_all())
            .with_context(|| format!("cannot write {}", path.display()))?;
        tmp.persist(path).with_context(|| {
            format!(
                "cannot move the saved file into place at {}",
                path.display()
            )
        })?;
        std::fs::File::open(parent)
            .and_then(|dir| dir.sync_all())
            .with_context(|| format!("cannot sync directory {}", parent.display()))?;
        Ok(())
    }
}

impl FileSink {
    /// Once per directory, remove temporary files whose writer died (a
    /// `kill -9` mid-write): their names carry the writer's pid, so files of
    /// other live hosts sharing the directory are left alone.
    fn sweep(&self, dir: &Path) {
        let mut swept = self.swept.lock().unwrap_or_else(PoisonError::into_inner);
        if !swept.insert(dir.to_owned()) {
            return;
        }
        for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
            let name = entry.file_name();
            let Some(pid) = name
                .to_str()
                .and_then(|n| n.strip_prefix(TEMP_PREFIX))
                .and_then(|rest| rest.split('-').next())
                .and_then(|pid| pid.parse::<u32>().ok())
            else {
                continue;
            };
            if pid != std::process::id() && !Path::new(&format!("/proc/{pid}")).exists() {
                let path = entry.path();
                match std::fs::remove_file(&path) {
                    Ok(()) => {
                        tracing::info!(path = %path.display(), "removed a temporary file left by a process that died mid-write")
                    }
                    Err(error) => {
                        tracing::warn!(path = %path.display(), %error, "cannot remove a stale temporary file")
                    }
                }
            }
        }
    }
}

/// Start of every temporary file name, followed by the writer's pid.
const TEMP_PREFIX: &str = ".alerthost-";

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
mod tests {
    use super::*;

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
            let path = sink.path_for(Some(hint), "t", 0, 1);
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

    #[test]
    fn temp_files_of_dead_writers_are_swept_and_live_ones_kept() {
        let dir = tempfile::tempdir().unwrap();
        let dead = dir.path().join(".alerthost-999999999-abc.tmp");
        let alive = dir
            .path()
            .join(format!(".alerthost-{}-def.tmp", std::process::id()));
        let other = dir.path().join("note.txt");
        for path in [&dead, &alive, &other] {
            std::fs::write(path, b"x").unwrap();
        }
        let sink = FileSink::new(dir.path()).unwrap();
        sink.write(&dir.path().join("a.bin"), b"a").unwrap();
        assert!(!dead.exists(), "a dead writer's temp file is removed");
        assert!(alive.exists() && other.exists());
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
}
