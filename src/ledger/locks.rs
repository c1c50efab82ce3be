//! The ref's lock file: finding it, and recovering one a killed process left.

use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use anyhow::{Context, Result};
use git2::Repository;

use crate::output;

/// A ref lock file older than this was left by a killed process: libgit2 holds it
/// for the microseconds between creating it and renaming it over the ref.
const STALE_LOCK: Duration = Duration::from_secs(5);

/// Removes the ref's lock file if a killed process left it behind.
///
/// The lock is renamed away before it is deleted, so of several processes that
/// find the same stale lock only one removes it, and a fresh lock taken in
/// between is never deleted by mistake (its age is checked after the rename).
pub(super) fn recover_stale_lock(lock: &Path) -> Result<()> {
    let age = |p: &Path| {
        std::fs::metadata(p)
            .and_then(|m| m.modified())
            .ok()
            .and_then(|t| t.elapsed().ok())
    };
    let Some(a) = age(lock) else {
        return Ok(()); // already gone: the holder finished
    };
    if a < STALE_LOCK {
        return Ok(());
    }
    // Aside means outside refs/: a name there would read as a ref to git if this
    // process died before removing it.
    let Some(common) = lock
        .ancestors()
        .find(|p| p.file_name().is_some_and(|n| n == "refs"))
        .and_then(Path::parent)
    else {
        return Ok(());
    };
    let dir = common.join("mara");
    let _ = std::fs::create_dir_all(&dir);
    let aside = dir.join(format!(
        "stale-lock-{}-{}",
        std::process::id(),
        SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos())
    ));
    if std::fs::rename(lock, &aside).is_err() {
        return Ok(()); // someone else moved it first
    }
    if age(&aside).is_some_and(|a| a < STALE_LOCK) {
        // We moved a lock that was taken just now: put it back.
        let _ = std::fs::rename(&aside, lock);
        return Ok(());
    }
    std::fs::remove_file(&aside)
        .with_context(|| format!("removing stale lock {}", aside.display()))?;
    output::warn(&format!(
        "removed a stale lock {} ({}s old, left by a killed process)",
        lock.display(),
        a.as_secs()
    ));
    Ok(())
}

/// The lock file git and libgit2 take to update `refname`.
pub(super) fn ref_lock(repo: &Repository, refname: &str) -> PathBuf {
    repo.commondir().join(format!("{refname}.lock"))
}
