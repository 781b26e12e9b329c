//! Compiled-artifact cache: a component compiled once is kept on disk under
//! its content hash and the engine's compatibility hash, so a restart (or a
//! second host on the same machine) loads it in a fraction of a millisecond
//! instead of compiling it again.
//!
//! A cached artifact is native code that is mapped and run, so it is trusted
//! only when nobody else could have put it there:
//! - the directory must be owned by the user running the host and writable
//!   by nobody else, and so must every parent (a parent owned by root, or a
//!   sticky one such as `/tmp`, is fine); otherwise the cache is not used;
//! - each file must be a regular file owned by the user, and carry an
//!   HMAC-SHA256 of its name and contents under a key kept outside the
//!   directory (`<dir>.key`, mode 0600). The MAC is checked on the bytes in
//!   memory, which are then deserialized, so the file cannot change between
//!   the check and the use. Anything that does not verify is removed with a
//!   warning and the component is compiled again.

use std::hash::{Hash, Hasher};
use std::io::{Read as _, Write as _};
use std::path::{Path, PathBuf};

use anyhow::{Context as _, bail};
use hmac::{Hmac, Mac as _};
use sha2::Sha256;
use wasmtime::Engine;
use wasmtime::component::Component;

/// Bytes of the MAC that starts every cache file.
const MAC_BYTES: usize = 32;
/// Bytes of the MAC key.
const KEY_BYTES: usize = 32;
/// Largest cache file read, and largest artifact a compiler process may
/// hand the host: far above the artifact of the largest component accepted.
pub(crate) const MAX_ARTIFACT_BYTES: u64 = 1 << 30;

/// Compiled components on disk.
#[derive(Clone)]
pub struct ArtifactCache {
    dir: PathBuf,
    engine_key: String,
    key: [u8; KEY_BYTES],
}

impl std::fmt::Debug for ArtifactCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ArtifactCache")
            .field("dir", &self.dir)
            .field("engine_key", &self.engine_key)
            .finish_non_exhaustive()
    }
}

impl ArtifactCache {
    /// A cache in `dir` for components compiled by `engine`. The directory is
    /// created private to the user; an existing one must already be private
    /// (owner and mode checked up to the root), or it is refused.
    pub fn open(dir: &Path, engine: &Engine) -> anyhow::Result<Self> {
        create_private_dir(dir)?;
        check_private_dir(dir)?;
        let key = load_or_create_key(&key_path(dir)?)?;
        // DefaultHasher::new() has fixed keys, so the key is stable across runs
        // of the same build; the wasmtime version guards against other builds.
        let mut hasher = std::collections::hash_map::DefaultHasher::new();
        engine.precompile_compatibility_hash().hash(&mut hasher);
        let engine_key = format!("{:016x}", hasher.finish());
        let cache = ArtifactCache {
            dir: dir.to_owned(),
            engine_key,
            key,
        };
        cache.evict_other_builds();
        Ok(cache)
    }

    /// The default location: `$ALERTHOST_CACHE_DIR`, else
    /// `$XDG_CACHE_HOME/alerthost/components`, else `~/.cache/alerthost/components`.
    pub fn default_dir() -> Option<PathBuf> {
        if let Some(dir) = std::env::var_os("ALERTHOST_CACHE_DIR") {
            return Some(PathBuf::from(dir));
        }
        let base = std::env::var_os("XDG_CACHE_HOME")
            .map(PathBuf::from)
            .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache")))?;
        Some(base.join("alerthost").join("components"))
    }

    fn suffix(&self) -> String {
        format!("-wasmtime{}-{}.cwasm", wasmtime_version(), self.engine_key)
    }

    fn file_name(&self, content_hash: &str) -> String {
        format!("{content_hash}{}", self.suffix())
    }

    fn mac(&self, name: &str, artifact: &[u8]) -> Hmac<Sha256> {
        let mut mac =
            Hmac::<Sha256>::new_from_slice(&self.key).expect("HMAC takes a key of any length");
        mac.update(name.as_bytes());
        mac.update(&[0]);
        mac.update(artifact);
        mac
    }

    /// The cached compilation of the component with this content hash, if
    /// any. An entry that is not ours or does not verify is removed, with a
    /// warning, and reported as absent.
    pub fn get(&self, engine: &Engine, content_hash: &str) -> Option<Component> {
        let name = self.file_name(content_hash);
        let path = self.dir.join(&name);
        let bytes = match read_own_file(&path) {
            Ok(Some(bytes)) => bytes,
            Ok(None) => return None,
            Err(error) => {
                self.discard(&path, &format!("{error:#}"));
                return None;
            }
        };
        let Some((mac, artifact)) = bytes.split_at_checked(MAC_BYTES) else {
            self.discard(&path, "it is too short to carry a MAC");
            return None;
        };
        if self.mac(&name, artifact).verify_slice(mac).is_err() {
            self.discard(
                &path,
                "its MAC does not verify: it was not written by this cache for this component",
            );
            return None;
        }
        // SAFETY: these bytes were written by `put` of this cache for this
        // component (their MAC under a key only this user can read verifies
        // over the name, which carries the content hash and the engine's
        // compatibility hash), and they are checked in memory, so the file
        // cannot be swapped after the check.
        #[allow(unsafe_code)]
        let loaded = unsafe { Component::deserialize(engine, artifact) };
        match loaded {
            Ok(component) => Some(component),
            Err(error) => {
                self.discard(&path, &format!("{error:#}"));
                None
            }
        }
    }

    fn discard(&self, path: &Path, why: &str) {
        tracing::warn!(
            path = %path.display(),
            "discarding a cached component ({why}); compiling it again"
        );
        let _ = std::fs::remove_file(path);
    }

    /// Keep a compiled component: its serialized `artifact`, as the host
    /// accepted it. Failing to write the cache only costs time at the next
    /// start, so it is logged, not returned.
    pub fn put(&self, content_hash: &str, artifact: &[u8]) {
        let name = self.file_name(content_hash);
        let path = self.dir.join(&name);
        let result = (|| -> anyhow::Result<()> {
            let mac = self.mac(&name, artifact).finalize().into_bytes();
            // Created with mode 0600.
            let mut tmp = tempfile::NamedTempFile::new_in(&self.dir)?;
            tmp.write_all(&mac)?;
            tmp.write_all(artifact)?;
            tmp.persist(&path)?;
            Ok(())
        })();
        if let Err(error) = result {
            tracing::warn!(path = %path.display(), %error, "cannot write the component cache");
        }
    }

    /// Remove artifacts of other wasmtime versions or engine settings: this
    /// build can never use them, so they would only pile up.
    fn evict_other_builds(&self) {
        let suffix = self.suffix();
        let Ok(entries) = std::fs::read_dir(&self.dir) else {
            return;
        };
        for entry in entries.flatten() {
            let name = entry.file_name();
            let name = name.to_string_lossy();
            if name.ends_with(".cwasm") && !name.ends_with(&suffix) {
                let _ = std::fs::remove_file(entry.path());
            }
        }
    }
}

fn key_path(dir: &Path) -> anyhow::Result<PathBuf> {
    let name = dir
        .file_name()
        .with_context(|| format!("the component cache {} has no name", dir.display()))?;
    let mut key = name.to_owned();
    key.push(".key");
    Ok(dir.with_file_name(key))
}

#[cfg(unix)]
fn create_private_dir(dir: &Path) -> anyhow::Result<()> {
    use std::os::unix::fs::DirBuilderExt as _;
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .with_context(|| format!("cannot create the component cache {}", dir.display()))
}

#[cfg(not(unix))]
fn create_private_dir(dir: &Path) -> anyhow::Result<()> {
    std::fs::create_dir_all(dir)
        .with_context(|| format!("cannot create the component cache {}", dir.display()))
}

#[cfg(unix)]
fn euid() -> u32 {
    // SAFETY: geteuid has no preconditions and cannot fail.
    #[allow(unsafe_code)]
    unsafe {
        libc::geteuid()
    }
}

/// The cache directory is ours and private, and no parent lets anyone else
/// replace it.
#[cfg(unix)]
fn check_private_dir(dir: &Path) -> anyhow::Result<()> {
    use std::os::unix::fs::{MetadataExt as _, PermissionsExt as _};
    let uid = euid();
    let meta = std::fs::symlink_metadata(dir)
        .with_context(|| format!("cannot inspect the component cache {}", dir.display()))?;
    if !meta.is_dir() {
        bail!(
            "the component cache {} is not a directory (a symlink or a file)",
            dir.display()
        );
    }
    if meta.uid() != uid {
        bail!(
            "the component cache {} belongs to user {}, not to the user running alerthost ({uid}): \
             its compiled code cannot be trusted; remove it or choose another cache directory",
            dir.display(),
            meta.uid()
        );
    }
    if meta.mode() & 0o022 != 0 {
        bail!(
            "the component cache {} is writable by others (mode {:o}): files in it cannot be \
             trusted; remove it (alerthost recreates it private) or choose another cache directory",
            dir.display(),
            meta.mode() & 0o7777
        );
    }
    if meta.mode() & 0o077 != 0 {
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700)).with_context(
            || format!("cannot make the component cache {} private", dir.display()),
        )?;
    }
    let real = dir
        .canonicalize()
        .with_context(|| format!("cannot resolve the component cache {}", dir.display()))?;
    for parent in real.ancestors().skip(1) {
        let meta = std::fs::metadata(parent)
            .with_context(|| format!("cannot inspect {}", parent.display()))?;
        let owner_ok = meta.uid() == uid || meta.uid() == 0;
        let sticky = meta.mode() & 0o1000 != 0;
        let others_write = meta.mode() & 0o022 != 0;
        if !owner_ok || (others_write && !sticky) {
            bail!(
                "{} (a parent of the component cache {}) can be changed by other users \
                 (owner {}, mode {:o}), so they could replace the cache: choose a cache \
                 directory under a private one",
                parent.display(),
                dir.display(),
                meta.uid(),
                meta.mode() & 0o7777
            );
        }
    }
    Ok(())
}

#[cfg(not(unix))]
fn check_private_dir(_dir: &Path) -> anyhow::Result<()> {
    Ok(())
}

/// Open `path` without following a symlink; on unix also check that it is
/// a regular file of ours that nobody else can write.
fn open_own_file(
    path: &Path,
    options: &mut std::fs::OpenOptions,
) -> std::io::Result<std::fs::File> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt as _;
        options.custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK);
    }
    let file = options.open(path)?;
    let meta = file.metadata()?;
    let refuse = |why: String| Err(std::io::Error::other(why));
    if !meta.is_file() {
        return refuse(format!("{} is not a regular file", path.display()));
    }
    #[cfg(unix)]
    {
        use std::os::unix::fs::MetadataExt as _;
        if meta.uid() != euid() {
            return refuse(format!(
                "{} belongs to user {}, not to this user",
                path.display(),
                meta.uid()
            ));
        }
        if meta.mode() & 0o022 != 0 {
            return refuse(format!(
                "{} is writable by others (mode {:o})",
                path.display(),
                meta.mode() & 0o7777
            ));
        }
    }
    Ok(file)
}

/// The bytes of a cache file, `None` if there is none.
fn read_own_file(path: &Path) -> anyhow::Result<Option<Vec<u8>>> {
    let file = match open_own_file(path, std::fs::OpenOptions::new().read(true)) {
        Ok(file) => file,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e.into()),
    };
    let mut bytes = Vec::new();
    file.take(MAX_ARTIFACT_BYTES + 1).read_to_end(&mut bytes)?;
    if bytes.len() as u64 > MAX_ARTIFACT_BYTES {
        bail!("it is larger than {MAX_ARTIFACT_BYTES} bytes");
    }
    Ok(Some(bytes))
}

/// The MAC key: created once with random bytes, private to the user.
fn load_or_create_key(path: &Path) -> anyhow::Result<[u8; KEY_BYTES]> {
    let mut create = std::fs::OpenOptions::new();
    create.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt as _;
        create.mode(0o600);
    }
    match create.open(path) {
        Ok(mut file) => {
            let mut key = [0u8; KEY_BYTES];
            std::fs::File::open("/dev/urandom")
                .and_then(|mut random| random.read_exact(&mut key))
                .context("cannot read random bytes for the component cache key")?;
            file.write_all(&key)
                .and_then(|()| file.sync_all())
                .with_context(|| format!("cannot write the cache key {}", path.display()))?;
            return Ok(key);
        }
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
        Err(e) => {
            return Err(e)
                .with_context(|| format!("cannot create the cache key {}", path.display()));
        }
    }
    let file = open_own_file(path, std::fs::OpenOptions::new().read(true))
        .with_context(|| format!("cannot use the cache key {}", path.display()))?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::MetadataExt as _;
        let mode = file.metadata()?.mode();
        if mode & 0o077 != 0 {
            bail!(
                "the cache key {} is readable by others (mode {:o}): remove it and the cache",
                path.display(),
                mode & 0o7777
            );
        }
    }
    let mut key = [0u8; KEY_BYTES];
    let mut rest = Vec::new();
    let mut file = file;
    file.read_exact(&mut key)
        .and_then(|()| file.read_to_end(&mut rest))
        .with_context(|| format!("cannot read the cache key {}", path.display()))?;
    if !rest.is_empty() {
        bail!(
            "the cache key {} is longer than {KEY_BYTES} bytes: remove it and the cache",
            path.display()
        );
    }
    Ok(key)
}

fn wasmtime_version() -> &'static str {
    // Kept in step with the pinned `wasmtime` dependency by a unit test.
    "50.0.1"
}

#[cfg(test)]
mod tests {
    #[test]
    fn cache_names_carry_the_pinned_wasmtime_version() {
        let manifest = include_str!("../../../Cargo.toml");
        let line = manifest
            .lines()
            .find(|l| l.starts_with("wasmtime = "))
            .expect("wasmtime in the workspace manifest");
        assert!(
            line.contains(&format!("\"={}\"", super::wasmtime_version())),
            "update wasmtime_version() to match: {line}"
        );
    }
}
