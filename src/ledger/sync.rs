//! Sharing a run with a remote: fetching its ref, `mara sync`, and when this clone
//! last synced. Transport is `git` itself ([`crate::remote`]).

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use git2::{Oid, Repository};

use super::locks::{recover_stale_lock, ref_lock};
use super::{marks, now, Ledger};
use crate::backoff::Backoff;
use crate::ids::RunId;
use crate::remote::{self, Push, Turn};

/// The file whose mtime says when this clone last synced a run with its remote.
pub(super) fn sync_marker(repo: &Repository, run: &RunId) -> PathBuf {
    super::state_path(repo, "synced", run)
}

pub(super) fn mark_synced(repo: &Repository, run: &RunId) {
    let p = sync_marker(repo, run);
    if let Some(dir) = p.parent() {
        let _ = std::fs::create_dir_all(dir);
    }
    // Best effort: the marker only feeds "last synced N ago".
    let _ = std::fs::write(&p, now().to_rfc3339());
}

/// Fetches `refname` from `remote` into the local ref of the same name,
/// fast-forward only, retrying while a local writer holds the ref's lock.
pub fn fetch_ref(repo: &Repository, remote: &str, refname: &str) -> Result<()> {
    // A local writer holds the lock for microseconds; a second is plenty.
    let mut pauses = Backoff::fixed(Duration::from_millis(20)).attempts(50);
    loop {
        match remote::fetch(repo.path(), remote, refname)? {
            Ok(()) => {
                if let Some(run) = refname
                    .strip_prefix("refs/mara/")
                    .and_then(|r| r.parse().ok())
                {
                    mark_synced(repo, &run);
                }
                return Ok(());
            }
            Err(remote::FetchError::Busy) => {
                // A lock left by a killed writer must not wedge a remote-mode clone.
                recover_stale_lock(&ref_lock(repo, refname))?;
                match pauses.next() {
                    Some(p) => std::thread::sleep(p),
                    None => return Err(remote::explain(remote::FetchError::Busy, remote, refname)),
                }
            }
            Err(e) => return Err(remote::explain(e, remote, refname)),
        }
    }
}

impl Ledger {
    pub(super) fn mark_synced(&self) {
        mark_synced(&self.repo, &self.run);
    }

    /// When this clone last fetched or pushed the run, if ever.
    pub fn last_synced(&self) -> Option<std::time::SystemTime> {
        std::fs::metadata(sync_marker(&self.repo, &self.run))
            .and_then(|m| m.modified())
            .ok()
    }
}

/// What `mara sync` did.
pub enum Synced {
    UpToDate(Oid),
    Fetched { from: Option<Oid>, to: Oid },
    Pushed { from: Oid, to: Oid },
}

/// Brings the run's local ref and the remote's together: creates or fast-forwards
/// the local ref from the remote, or pushes local events the remote lacks. Refuses
/// when the two have diverged or the remote rewrote what this clone saw.
pub fn sync(repo: &Repository, run: &RunId, remote: &str) -> Result<Synced> {
    let refname = run.refname();
    let scratch = format!("refs/mara-sync/{run}");
    let local = repo.refname_to_id(&refname).ok();
    // Into a scratch ref, forced: whether the remote's tip may be taken is
    // decided below, against the local one.
    let theirs = match remote::fetch_into(repo.path(), remote, &refname, &scratch, true)? {
        Ok(()) => {
            let id = repo.refname_to_id(&scratch)?;
            if let Ok(mut r) = repo.find_reference(&scratch) {
                let _ = r.delete();
            }
            Some(id)
        }
        Err(remote::FetchError::NoRun) => None,
        Err(e) => return Err(remote::explain(e, remote, &refname)),
    };
    let msg = format!("mara: sync with {remote}");
    let result = match (local, theirs) {
        (None, None) => bail!(
            "there is no run {run} here or on remote {remote}; create it with `mara init --run {run} --remote {remote}`"
        ),
        (None, Some(t)) => {
            repo.reference_ensure_log(&refname)?;
            repo.reference(&refname, t, false, &msg)
                .with_context(|| format!("creating {refname}"))?;
            Synced::Fetched { from: None, to: t }
        }
        (Some(l), Some(t)) if l == t => Synced::UpToDate(l),
        (Some(l), Some(t)) if repo.graph_descendant_of(t, l)? => {
            repo.reference_matching(&refname, t, true, l, &msg)
                .with_context(|| format!("moving {refname}"))?;
            Synced::Fetched { from: Some(l), to: t }
        }
        (Some(l), theirs) => {
            if let Some(t) = theirs {
                if !repo.graph_descendant_of(l, t)? {
                    bail!(
                        "{refname} here and on remote {remote} have diverged (or the remote rewrote it); nothing was changed; compare them with `git log {refname}` and `git fetch {remote} {refname}:refs/mara-theirs/{run}`"
                    );
                }
            }
            // Never spread events this clone has not checked.
            Ledger::new(Repository::open(repo.path())?, run.clone()).check_tip()?;
            match remote::push(
                repo.path(),
                remote,
                l,
                &refname,
                Turn::Set {
                    free: remote::free_turn(repo)?,
                },
            )? {
                Push::Accepted => Synced::Pushed {
                    from: theirs.unwrap_or(l),
                    to: l,
                },
                lost => bail!(
                    "remote {remote} moved {refname} while syncing ({}); run `mara sync` again",
                    lost.why()
                ),
            }
        }
    };
    mark_synced(repo, run);
    if let Ok(tip) = repo.refname_to_id(&refname) {
        // Fetched events are seen, not yet checked: the next write checks them.
        // A clone's first contact has no marker yet: nothing checked, and nothing
        // to re-learn (loading a missing marker warns that it was lost).
        let checked = if marks::exists(repo, run) {
            marks::load(repo, run).checked
        } else {
            None
        };
        marks::write(repo, run, tip, checked);
    }
    Ok(result)
}
