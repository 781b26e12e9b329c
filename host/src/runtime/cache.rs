//! Compiled-artifact cache: a component compiled once is kept on disk under
//! its content hash and the engine's compatibility hash, so a restart (or a
//! second host on the same machine) deserializes it in a fraction of a
//! millisecond instead of compiling it again.

use std::hash::{Hash, Hasher};
use std::path::{Path, PathBuf};

use anyhow::Context as _;
use wasmtime::Engine;
use wasmtime::component::Component;

/// Compiled components on disk.
#[derive(Debug, Clone)]
pub struct ArtifactCache {
    dir: PathBuf,
    engine_key: String,
}

impl ArtifactCache {
    /// A cache in `dir` for components compiled by `engine`. The directory is
    /// created private to the user: a cached artifact is native code.
    pub fn open(dir: &Path, engine: &Engine) -> anyhow::Result<Self> {
        std::fs::create_dir_all(dir)
            .with_context(|| format!("cannot create the component cache {}", dir.display()))?;
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700)).with_context(
                || format!("cannot make the component cache {} private", dir.display()),
            )?;
        }
        // DefaultHasher::new() has fixed keys, so the key is stable across runs
        // of the same build; the wasmtime version guards against other builds.
        let mut hasher = std::collections::hash_map::DefaultHasher::new();
        engine.precompile_compatibility_hash().hash(&mut hasher);
        let engine_key = format!("{:016x}", hasher.finish());
        Ok(ArtifactCache {
            dir: dir.to_owned(),
            engine_key,
        })
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

    fn path(&self, content_hash: &str) -> PathBuf {
        self.dir.join(format!(
            "{content_hash}-wasmtime{}-{}.cwasm",
            wasmtime_version(),
            self.engine_key
        ))
    }

    /// The cached compilation of the component with this content hash, if any.
    /// A damaged entry is removed and reported as absent.
    pub fn get(&self, engine: &Engine, content_hash: &str) -> Option<Component> {
        let path = self.path(content_hash);
        if !path.exists() {
            return None;
        }
        // SAFETY: the cache directory is private to this user (mode 0700) and
        // only this code writes into it, atomically, from `Component::serialize`
        // of the same engine configuration (the file name carries its hash).
        #[allow(unsafe_code)]
        let loaded = unsafe { Component::deserialize_file(engine, &path) };
        match loaded {
            Ok(component) => Some(component),
            Err(error) => {
                tracing::warn!(path = %path.display(), %error, "discarding unreadable cached component");
                let _ = std::fs::remove_file(&path);
                None
            }
        }
    }

    /// Keep a compiled component. Failing to write the cache only costs time
    /// at the next start, so it is logged, not returned.
    pub fn put(&self, content_hash: &str, component: &Component) {
        let path = self.path(content_hash);
        let result = component
            .serialize()
            .map_err(|e| anyhow::anyhow!("{e}"))
            .and_then(|bytes| {
                let mut tmp = tempfile::NamedTempFile::new_in(&self.dir)?;
                std::io::Write::write_all(&mut tmp, &bytes)?;
                tmp.persist(&path)?;
                Ok(())
            });
        if let Err(error) = result {
            tracing::warn!(path = %path.display(), %error, "cannot write the component cache");
        }
    }
}

fn wasmtime_version() -> &'static str {
    // Kept in step with the pinned `wasmtime` dependency by a unit test.
    "48.0.8"
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
