//! Pushing and fetching the run's ref with the `git` command itself.
//!
//! mara shells out to `git` for remotes (as jj and other git tools do) so that the
//! user's own setup applies unchanged: ssh config and agent, credential helpers,
//! `url.*.insteadOf`, proxies. Only the run's ref is ever fetched; pushes also set
//! its turn ref (see [`Turn`]).

use std::path::Path;

use anyhow::{anyhow, bail, Result};
use git2::{Oid, Repository};

use crate::ids::RunId;

use crate::gitcmd::git_at as git;

/// What the remote said to a push of an event commit.
#[derive(Debug)]
pub enum Push {
    /// The remote's ref now points at the commit.
    Accepted,
    /// Another writer moved the remote's ref first (non-fast-forward, or the
    /// remote's own compare-and-swap failed): fetch, re-check, retry. The flag
    /// says whether the turn ref took the pushed commit (a [`Turn::Wait`]
    /// writer's intent).
    Lost(String, bool),
    /// The run's ref had not moved, but another writer is waiting for its turn
    /// (the turn ref holds its intent, see [`Turn::Take`]): nothing was written;
    /// let it go first, then try again.
    Yield,
}

impl Push {
    /// Why the push was not accepted, in the remote's words where it had any.
    pub fn why(&self) -> String {
        match self {
            Push::Accepted => "accepted".to_owned(),
            Push::Lost(why, _) => why.clone(),
            Push::Yield => "another writer is waiting for its turn".to_owned(),
        }
    }
}

fn last_line(stderr: &[u8]) -> String {
    let s = String::from_utf8_lossy(stderr);
    s.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with("hint:"))
        .map(|l| {
            l.trim_start_matches("fatal: ")
                .trim_start_matches("error: ")
        })
        .collect::<Vec<_>>()
        .join("; ")
}

/// The remote ref that says whose turn it is to write the run: `refs/mara-turn/<run>`
/// for `refs/mara/<run>` (outside `refs/mara/`, so `git fetch 'refs/mara/*:...'`
/// does not bring it along; no clone ever fetches it).
pub fn turn_refname(refname: &str) -> String {
    format!(
        "refs/mara-turn/{}",
        refname.strip_prefix("refs/mara/").unwrap_or(refname)
    )
}

/// How a push of an event treats the run's turn ref.
///
/// Fairness between clones. A clone that just won a push has the current tip and
/// pushes its next event without fetching (one round trip), while a clone that
/// lost needs a fetch and a push (two): in a tight loop the last winner would win
/// every time (200 of 200 claims between four clones through `git daemon`). So a
/// writer that lost says that it waits, and a writer that has not lost lets it go
/// first. That has to reach the winner without costing it a round trip, and the
/// one thing every push learns for free is the remote's refs. So every push of an
/// event also sets the run's turn ref ([`turn_refname`]), in the same push:
///
/// * a writer that has not lost in this command pushes [`Turn::Take`]: atomically
///   (`--atomic`) with the run's ref, and only if the turn ref still holds the tip
///   it built on (`--force-with-lease`). When nobody waits that is always so
///   (every accepted push sets both refs to the new tip): a lone writer pays one
///   more ref line in its push, nothing else;
/// * a writer that lost a race pushes [`Turn::Wait`]: not atomic, the turn ref
///   forced to its commit. If the run's ref takes it, both point at the new tip;
///   if the run's ref refuses it (lost again), the turn ref keeps that commit,
///   which is no tip: the intent (set again by [`push_intent`] when a concurrent
///   push kept it from landing);
/// * a [`Turn::Take`] that finds an intent is refused with the run's ref
///   untouched: [`Push::Yield`]. It pauses a little and tries again, until the
///   waiting writer lands (the run's ref moves: this writer lost and waits in
///   turn) or for at most a few seconds; then it pushes [`Turn::Wait`] itself.
///   A writer that ends without writing takes its intent back ([`leave_turn`]),
///   so only an intent left by a writer that was killed costs that wait, once.
///
/// To a remote that does not support `--atomic` or refuses the turn ref, the
/// run's ref is pushed alone, as before: correct, but without this fairness.
#[derive(Clone, Copy, Debug)]
pub enum Turn {
    /// Atomic with the run's ref; only if the turn ref holds `expect`.
    Take { expect: Oid },
    /// Not atomic; the turn ref forced to the commit.
    Wait,
    /// Atomic with the run's ref, the turn ref forced: `init` and `sync`, which
    /// start or bring the run's ref and leave nobody's intent behind.
    Set,
}

/// Remotes that do not take the turn ref in this process (no `--atomic`, or a
/// server that refuses the ref): pushed to as before fairness, the run's ref alone.
static PLAIN: std::sync::Mutex<Vec<String>> = std::sync::Mutex::new(Vec::new());

fn is_plain(remote: &str) -> bool {
    PLAIN
        .lock()
        .map(|l| l.iter().any(|r| r == remote))
        .unwrap_or(false)
}

fn make_plain(remote: &str) {
    if let Ok(mut l) = PLAIN.lock() {
        l.push(remote.to_owned());
    }
}

/// Pushes `oid` to `refname` on `remote`, without force: the remote accepts only a
/// fast-forward, which is what makes the push a compare-and-swap. The run's turn
/// ref goes along as `turn` says.
pub fn push(git_dir: &Path, remote: &str, oid: Oid, refname: &str, turn: Turn) -> Result<Push> {
    let spec = format!("{oid}:{refname}");
    let turn_ref = turn_refname(refname);
    let plain = is_plain(remote);
    // --no-verify: the run's ref is mara's bookkeeping, not the user's code, so the
    // user's pre-push checks do not apply (and a hook calling mara cannot recurse).
    let mut args = vec![
        "push".to_owned(),
        "--porcelain".to_owned(),
        "--no-verify".to_owned(),
    ];
    let (atomic, lease, force) = match turn {
        Turn::Take { expect } => (true, Some(expect), ""),
        Turn::Wait => (false, None, "+"),
        Turn::Set => (true, None, "+"),
    };
    if !plain {
        if atomic {
            args.push("--atomic".to_owned());
        }
        if let Some(lease) = lease {
            args.push(format!("--force-with-lease={turn_ref}:{lease}"));
        }
    }
    args.push(remote.to_owned());
    args.push(spec);
    if !plain {
        args.push(format!("{force}{oid}:{turn_ref}"));
    }
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let out = git(git_dir, &args)?;
    let stderr = String::from_utf8_lossy(&out.stderr);
    if !plain && stderr.contains("does not support --atomic") {
        make_plain(remote);
        return push(git_dir, remote, oid, refname, turn);
    }
    let stdout = String::from_utf8_lossy(&out.stdout);
    // (flag, summary, line) of a ref's line: `<flag>\t<src>:<dst>\t<summary>`.
    let line_of = |name: &str| {
        stdout.lines().find_map(|line| {
            let mut parts = line.split('\t');
            let (Some(flag), Some(refs)) = (parts.next(), parts.next()) else {
                return None;
            };
            refs.ends_with(&format!(":{name}"))
                .then(|| (flag, parts.next().unwrap_or_default(), line))
        })
    };
    let Some((flag, summary, line)) = line_of(refname) else {
        bail!(
            "cannot push to remote {remote}: {}",
            if out.stderr.is_empty() {
                "git printed no result".to_owned()
            } else {
                last_line(&out.stderr)
            }
        )
    };
    // Why the turn ref was refused, if it was.
    let turn_line = line_of(&turn_ref);
    let intent = turn_line.is_some_and(|(f, _, _)| f == "+" || f == " ");
    let turn_refused = turn_line.filter(|(f, _, _)| *f == "!").map(|(_, s, _)| s);
    // The server's own compare-and-swap failed: another push got in between
    // (with --atomic, every ref of the push then says "atomic transaction failed").
    // Also a transient failure of the server's own: receive-pack could not move
    // the pushed objects out of quarantine (seen from git 2.47's receive-pack
    // under concurrent pushes); nothing was written, so try again.
    let is_race = |s: &str| {
        s.contains("lock")
            || s.contains("failed to update ref")
            || s.contains("atomic")
            || s.contains("unable to migrate objects")
    };
    match (flag, turn_refused) {
        // Accepted, whatever happened to the turn ref (without --atomic, another
        // push may have moved it between git's look and its update).
        (" " | "*" | "=" | "+", _) => Ok(Push::Accepted),
        // The run's ref was fine, the turn ref's lease was not: someone waits.
        ("!", Some(t)) if summary.contains("atomic") && t.contains("stale info") => Ok(Push::Yield),
        // The server refused the turn ref itself (a hook, a namespace rule): this
        // remote gets the run's ref alone from now on.
        ("!", Some(t)) if summary.contains("atomic") && !is_race(t) => {
            make_plain(remote);
            push(git_dir, remote, oid, refname, turn)
        }
        ("!", _) if summary.starts_with("[rejected]") || is_race(summary) => {
            Ok(Push::Lost(summary.to_owned(), intent))
        }
        ("!", _) => {
            // What the server's hooks said comes on stderr as `remote: ...`.
            let said: Vec<String> = stderr
                .lines()
                .filter_map(|l| l.strip_prefix("remote:"))
                .map(|l| l.trim().to_owned())
                .filter(|l| !l.is_empty())
                .collect();
            bail!(
                "remote {remote} refused the push of {refname}: {summary}{}; check your permissions on the remote",
                if said.is_empty() {
                    String::new()
                } else {
                    format!(" (the remote said: {})", said.join(" / "))
                }
            )
        }
        _ => bail!("`git push` reported {line:?} for {refname}"),
    }
}

/// Forces the run's turn ref on `remote` to `oid` (a commit of this clone that is
/// no tip of the run): a waiting writer's intent, when the push that lost did not
/// land it (another push moved the turn ref between git's look and its update).
/// Best effort: an intent that does not land costs this writer its priority once.
pub fn push_intent(git_dir: &Path, remote: &str, oid: Oid, refname: &str) {
    if is_plain(remote) {
        return;
    }
    let spec = format!("+{oid}:{}", turn_refname(refname));
    let _ = git(
        git_dir,
        &["push", "--porcelain", "--no-verify", remote, &spec],
    );
}

/// Takes back this clone's intent `intent` from the run's turn ref on `remote`:
/// sets it to `tip` (a tip: nobody waits) only if it still holds `intent`
/// (another writer's intent since then stays). Best effort: an intent that stays
/// costs the next writer its yields, once.
pub fn leave_turn(git_dir: &Path, remote: &str, intent: Oid, tip: Oid, refname: &str) {
    if is_plain(remote) {
        return;
    }
    let turn = turn_refname(refname);
    let lease = format!("--force-with-lease={turn}:{intent}");
    let spec = format!("+{tip}:{turn}");
    let _ = git(
        git_dir,
        &["push", "--porcelain", "--no-verify", &lease, remote, &spec],
    );
}

/// How a fetch of the run's ref went wrong.
#[derive(Debug)]
pub enum FetchError {
    /// The remote has no such ref.
    NoRun,
    /// The remote's ref is not a fast-forward of what this clone saw.
    Rewritten,
    /// A local process holds the ref's lock; try again.
    Busy,
    /// Anything else (unreachable, not a repository, ...).
    Other(String),
}

/// Fetches `refname` from `remote` into the same local ref, fast-forward only, so a
/// remote whose history was rewritten is noticed instead of followed.
pub fn fetch(git_dir: &Path, remote: &str, refname: &str) -> Result<Result<(), FetchError>> {
    fetch_into(git_dir, remote, refname, refname, false)
}

/// Fetches `refname` from `remote` into the local ref `into`; `force` takes
/// whatever the remote has (for a scratch ref that is compared afterwards).
pub fn fetch_into(
    git_dir: &Path,
    remote: &str,
    refname: &str,
    into: &str,
    force: bool,
) -> Result<Result<(), FetchError>> {
    let spec = format!("{}{refname}:{into}", if force { "+" } else { "" });
    // Not --quiet: a rejected (non-fast-forward) update is only reported in the
    // ref-update lines that --quiet suppresses.
    let args = [
        "fetch",
        "--no-tags",
        "--no-write-fetch-head",
        // mara merges its own packs; a gc started by this fetch could delete the
        // object directory another writer's fetch is unpacking into.
        "--no-auto-maintenance",
        "--no-recurse-submodules",
        remote,
        &spec,
    ];
    let out = git(git_dir, &args)?;
    if out.status.success() {
        return Ok(Ok(()));
    }
    let err = String::from_utf8_lossy(&out.stderr);
    Ok(Err(if err.contains("couldn't find remote ref") {
        FetchError::NoRun
    } else if err.contains("[rejected]") || err.contains("non-fast-forward") {
        FetchError::Rewritten
    } else if err.contains(".lock") || err.contains("cannot lock ref") {
        FetchError::Busy
    } else {
        FetchError::Other(last_line(&out.stderr))
    }))
}

/// Turns a fetch failure into the error a user reads.
pub fn explain(e: FetchError, remote: &str, refname: &str) -> anyhow::Error {
    match e {
        FetchError::NoRun => anyhow!(
            "remote {remote} has no {refname}; create the run there with `mara init --run ID --remote {remote}`"
        ),
        FetchError::Rewritten => anyhow!(
            "remote {remote} rewrote {refname}: its history is not a fast-forward of what this clone saw; nothing was changed here, inspect it with `git fetch {remote} {refname}:refs/mara-rewritten/{}` and `git log`",
            refname.trim_start_matches("refs/mara/")
        ),
        FetchError::Busy => anyhow!("{refname} stayed locked by another process; try again"),
        FetchError::Other(msg) => anyhow!("cannot fetch {refname} from remote {remote}: {msg}"),
    }
}

/// The git config key where a clone records the remote it shares `run` through.
fn choice_key(run: &RunId) -> String {
    format!("mara.{run}.remote")
}

/// Whether `name` is a remote of this clone's own git config (`remote.<name>.url`).
/// A URL or a path is not: mara talks only to remotes the user configured.
pub fn is_configured(repo: &Repository, name: &str) -> bool {
    !name.is_empty()
        && !name.starts_with('-')
        && !name.chars().any(char::is_control)
        && repo.find_remote(name).is_ok()
}

/// Checks a remote the user names on the command line (`init --remote`,
/// `sync --remote`): it must be a configured remote of this clone.
pub fn check_named(repo: &Repository, name: &str) -> Result<()> {
    if is_configured(repo, name) {
        return Ok(());
    }
    bail!(
        "remote {} is not a remote of this clone; mara pushes and fetches only through remotes of your git config: add it with `git remote add NAME URL` (see `git remote -v`) and pass --remote NAME",
        crate::text::quote(name, 80)
    )
}

/// The remote this clone shares `run` through, when the run is shared (its board
/// names `board`): the clone's own choice (git config `mara.<run>.remote`, set by
/// `init --remote` and `sync --remote`), else the board's name if this clone has
/// a remote of that name. Never a URL read from the board: a board that names a
/// remote this clone lacks is an error saying what to add.
pub fn choose(repo: &Repository, run: &RunId, board: Option<&str>) -> Result<Option<String>> {
    let chosen = repo
        .config()
        .ok()
        .and_then(|c| c.get_string(&choice_key(run)).ok());
    if let Some(name) = chosen {
        if !is_configured(repo, &name) {
            bail!(
                "git config {} names remote {}, which this clone does not have; see `git remote -v`, then `mara sync --run {run} --remote NAME`",
                choice_key(run),
                crate::text::quote(&name, 80)
            );
        }
        return Ok(Some(name));
    }
    let Some(name) = board else {
        return Ok(None);
    };
    if is_configured(repo, name) {
        return Ok(Some(name.to_owned()));
    }
    bail!(
        "run {run} is shared through remote {}, which is not a remote of this clone (mara never pushes to a URL or path read from the board); add the shared remote with `git remote add NAME URL` and choose it with `mara sync --run {run} --remote NAME`",
        crate::text::quote(name, 80)
    )
}

/// Records `name` as the remote this clone shares `run` through. The run is
/// already written when this is called, so a failure only warns.
pub fn record_choice(repo: &Repository, run: &RunId, name: &str) {
    let key = choice_key(run);
    if let Err(why) = crate::context::set_git_config(repo, &key, name) {
        crate::output::warn(&format!(
            "could not record remote {name} for run {run} ({why}); set it with `git config {key} {name}`"
        ));
    }
}
