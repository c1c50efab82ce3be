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

/// How long a writer waits for its place in the clone's queue of writers before it
/// writes without it (the compare-and-swap of the ref keeps that correct).
const QUEUE_WAIT: Duration = Duration::from_secs(5);

/// A writer's place at the head of its clone's queue of writers: held for one
/// append, released when dropped (and by the kernel if the process dies).
pub(super) struct WriterQueue(Option<std::fs::File>);

impl Drop for WriterQueue {
    fn drop(&mut self) {
        if let Some(f) = &self.0 {
            let _ = f.unlock();
        }
    }
}

/// Waits until no other process of this clone is writing `run`, for at most
/// [`QUEUE_WAIT`].
///
/// The ref's compare-and-swap is what makes a claim safe, but as a queue it is
/// poor: eight processes draining a board with `claim --next` each read the tip,
/// pick the same first ready task, write the same kind of event, and seven throw
/// their work away and start again, on two cores, so eight together claimed a
/// third as fast as one alone. Processes of one clone share a file lock
/// (`flock`, which the kernel drops with its holder, so a killed writer never
/// wedges the others) and write one after the other instead; other clones and
/// tools that write with plain git still only meet the compare-and-swap. A writer
/// waits for at most [`QUEUE_WAIT`] (a git hook that writes while its parent holds the place, a
/// push that hangs): then it writes without its place, as before.
pub(super) fn queue_for_write(repo: &Repository, run: &crate::ids::RunId) -> WriterQueue {
    let path = super::state_path(repo, "writers", run);
    let file = path
        .parent()
        .map_or(Ok(()), std::fs::create_dir_all)
        .and_then(|()| {
            std::fs::OpenOptions::new()
                .create(true)
                .truncate(false)
                .write(true)
                .open(&path)
        });
    let Ok(file) = file else {
        return WriterQueue(None);
    };
    match file.try_lock() {
        Ok(()) => return WriterQueue(Some(file)),
        Err(std::fs::TryLockError::WouldBlock) => {}
        Err(std::fs::TryLockError::Error(_)) => return WriterQueue(None),
    }
    // Waited on in a thread, so that the wait has a bound (std's blocking `lock`
    // has none) without polling: eight polling processes on two cores took CPU
    // from the writer they waited for. The lock belongs to the open file, which
    // both handles share.
    let Ok(waiter) = file.try_clone() else {
        return WriterQueue(None);
    };
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let got = waiter.lock().is_ok();
        // This process gave up waiting and writes without its place: give it
        // back at once.
        if tx.send(got).is_err() && got {
            let _ = waiter.unlock();
        }
    });
    match rx.recv_timeout(QUEUE_WAIT) {
        Ok(true) => WriterQueue(Some(file)),
        _ => WriterQueue(None),
    }
}
