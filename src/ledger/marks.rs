//! What this clone knows of a run, kept beside the repository in `.git/mara/seen/<run>`:
//! the newest tip it saw (written or fetched), which every later tip must contain,
//! and the newest tip whose events it checked by replay, so a writer checks only
//! the events that arrived since (issue 13, items 3 and 10).
//!
//! The file is two fixed-width lines, `<seen>\n<checked>\n` (a zero id for "not
//! checked"), rewritten in place: a new file per event would cost a claim an inode,
//! and one `write` of 82 bytes at offset 0 never leaves a mix of two writers'
//! lines. Concurrent writers may leave an older pair, whose tips are still
//! ancestors of the ref: that only means checking a few events again. A reader
//! that catches a write halfway reads again; a marker that stays missing or
//! unreadable while the ref's reflog shows this clone used the run is re-learned
//! from that reflog, with a warning, and every event is checked again.

use std::io::Write as _;
use std::path::PathBuf;
use std::time::Duration;

use git2::{Oid, Repository};

use crate::backoff::Backoff;
use crate::ids::RunId;
use crate::output;

/// The pair a marker holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Marks {
    /// The newest tip this clone saw; `None` before it saw the run.
    pub seen: Option<Oid>,
    /// The newest tip whose events (and all before) this clone checked.
    pub checked: Option<Oid>,
}

/// The marker file of a run.
pub fn path(repo: &Repository, run: &RunId) -> PathBuf {
    super::state_path(repo, "seen", run)
}

/// Whether this clone has a marker for `run`: it wrote to or fetched the run before.
pub fn exists(repo: &Repository, run: &RunId) -> bool {
    path(repo, run).exists()
}

enum Raw {
    Missing,
    Damaged(String),
    Read(Marks),
}

fn parse_line(repo: &Repository, line: Option<&str>) -> Result<Option<Oid>, String> {
    let line = line.ok_or("it is cut short")?;
    let oid = Oid::from_str(line.trim()).map_err(|_| format!("{line:?} is not a commit id"))?;
    if oid.is_zero() {
        return Ok(None);
    }
    repo.find_commit(oid)
        .map_err(|_| format!("it names {oid}, which is not a commit here"))?;
    Ok(Some(oid))
}

fn read_raw(repo: &Repository, run: &RunId) -> Raw {
    let text = match std::fs::read_to_string(path(repo, run)) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Raw::Missing,
        Err(e) => return Raw::Damaged(e.to_string()),
    };
    let mut lines = text.lines();
    let seen = match parse_line(repo, lines.next()) {
        Ok(Some(s)) => s,
        Ok(None) => return Raw::Damaged("it names no tip".into()),
        Err(e) => return Raw::Damaged(e),
    };
    // Markers from before the checked line read as "nothing checked".
    let checked = match lines.next() {
        None => None,
        line => match parse_line(repo, line) {
            Ok(c) => c,
            Err(e) => return Raw::Damaged(e),
        },
    };
    Raw::Read(Marks {
        seen: Some(seen),
        checked,
    })
}

/// Reads the marks of `run`. A missing marker of a run this clone never used is
/// no news; a missing or damaged one of a run it did use (its reflog has entries)
/// is re-learned from the reflog and written back, with a warning.
pub fn load(repo: &Repository, run: &RunId) -> Marks {
    let mut why = None;
    for pause in
        Backoff::exponential(Duration::from_millis(2), Duration::from_millis(8)).attempts(4)
    {
        match read_raw(repo, run) {
            Raw::Read(m) => return m,
            Raw::Missing => {
                why = None;
                break;
            }
            Raw::Damaged(w) => {
                why = Some(w);
                // Perhaps another writer's rewrite was caught halfway.
                std::thread::sleep(pause);
            }
        }
    }
    let refname = run.refname();
    let used = repo
        .reflog(&refname)
        .map(|r| !r.is_empty())
        .unwrap_or(false);
    if why.is_none() && !used {
        return Marks {
            seen: None,
            checked: None,
        };
    }
    let file = path(repo, run);
    let learned = relearn(repo, &refname);
    output::warn(&format!(
        "{} {}; re-learned what this clone saw of run {run} from the reflog of {refname} ({}), and every event will be checked again",
        file.display(),
        why.map_or("is missing".to_owned(), |w| format!("is damaged ({w})")),
        learned.map_or("nothing".to_owned(), |o| o.to_string()),
    ));
    let marks = Marks {
        seen: learned,
        checked: None,
    };
    if let Some(seen) = learned {
        write(repo, run, seen, None);
    }
    marks
}

/// The newest state of `refname` that its reflog says was reached by a
/// fast-forward (mara's writes and fetches are); a rewrite after it does not count.
fn relearn(repo: &Repository, refname: &str) -> Option<Oid> {
    let tip = repo.refname_to_id(refname).ok();
    reached_states(repo, refname, tip).into_iter().next()
}

/// The states the ref reached by a fast-forward, newest first, from its reflog.
///
/// libgit2 appends the reflog entry before it renames the lock over the ref: a
/// writer killed in between leaves an entry for a state the ref never reached. A
/// state was reached when the next entry starts from it, or (the newest entry)
/// when the ref holds it.
pub fn reached_states(repo: &Repository, refname: &str, tip: Option<Oid>) -> Vec<Oid> {
    let Ok(reflog) = repo.reflog(refname) else {
        return vec![];
    };
    let entries: Vec<_> = reflog.iter().collect();
    let mut out = vec![];
    // git2 lists the newest entry first.
    for (i, entry) in entries.iter().enumerate() {
        let (old, new) = (entry.id_old(), entry.id_new());
        let reached = match i.checked_sub(1).map(|n| &entries[n]) {
            Some(next) => next.id_old() == new,
            None => Some(new) == tip,
        };
        let by_ff =
            old.is_zero() || old == new || repo.graph_descendant_of(new, old).unwrap_or(false);
        // Only what mara wrote or fetched was relied on: a state set by hand
        // (`git update-ref`, say to a forged event that writers then refused) and
        // undone again is not history this clone built on.
        let by_mara = entry
            .message()
            .is_some_and(|m| m.starts_with("mara:") || m.starts_with("fetch"));
        if reached && by_ff && by_mara && !new.is_zero() {
            out.push(new);
        }
    }
    out
}

/// Records `seen` (and `checked`, when the events up to it were checked).
pub fn write(repo: &Repository, run: &RunId, seen: Oid, checked: Option<Oid>) {
    let line = format!("{seen}\n{}\n", checked.unwrap_or(Oid::zero()));
    // One write of a fixed-width record: see the module's docs. A shorter
    // file from before the checked line grows to the new width.
    write_in_place(&path(repo, run), line.as_bytes());
}

/// Writes `bytes` at the start of the file at `path` with one `write`, creating
/// it (and its directory) if need be, without truncating it: a reader never
/// sees an empty file or a mix of two records of one width. Best effort.
pub(super) fn write_in_place(path: &std::path::Path, bytes: &[u8]) {
    let open = || {
        std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(false)
            .open(path)
    };
    let file = open().or_else(|_| {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)?;
        }
        open()
    });
    if let Ok(mut f) = file {
        let _ = f.write_all(bytes);
    }
}

/// Forgets what this clone saw of `run` (a deliberate `init --force`).
pub fn forget(repo: &Repository, run: &RunId) {
    let _ = std::fs::remove_file(path(repo, run));
}
