//! Pushing and fetching the run's ref with the `git` command itself.
//!
//! mara shells out to `git` for remotes (as jj and other git tools do) so that the
//! user's own setup applies unchanged: ssh config and agent, credential helpers,
//! `url.*.insteadOf`, proxies. Only the run's ref is ever fetched or pushed.

use std::path::Path;

use anyhow::{anyhow, bail, Result};
use git2::{Oid, Repository};

use crate::ids::RunId;

use crate::gitcmd::git_at as git;

/// What the remote said to a push of an event commit.
pub enum Push {
    /// The remote's ref now points at the commit.
    Accepted,
    /// Another writer moved the remote's ref first (non-fast-forward, or the
    /// remote's own compare-and-swap failed): fetch, re-check, retry.
    Lost(String),
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

/// Pushes `oid` to `refname` on `remote`, without force: the remote accepts only a
/// fast-forward, which is what makes the push a compare-and-swap.
pub fn push(git_dir: &Path, remote: &str, oid: Oid, refname: &str) -> Result<Push> {
    let spec = format!("{oid}:{refname}");
    // --no-verify: the run's ref is mara's bookkeeping, not the user's code, so the
    // user's pre-push checks do not apply (and a hook calling mara cannot recurse).
    let args = ["push", "--porcelain", "--no-verify", remote, &spec];
    let out = git(git_dir, &args)?;
    let stdout = String::from_utf8_lossy(&out.stdout);
    for line in stdout.lines() {
        let mut parts = line.split('\t');
        let (Some(flag), Some(refs), summary) = (parts.next(), parts.next(), parts.next()) else {
            continue;
        };
        if !refs.ends_with(&format!(":{refname}")) {
            continue;
        }
        let summary = summary.unwrap_or_default().to_owned();
        return match flag {
            " " | "*" | "=" | "+" => Ok(Push::Accepted),
            "!" if summary.starts_with("[rejected]") => Ok(Push::Lost(summary)),
            // The server's own ref update lost a race with another push.
            "!" if summary.contains("lock") || summary.contains("failed to update ref") => {
                Ok(Push::Lost(summary))
            }
            "!" => {
                // What the server's hooks said comes on stderr as `remote: ...`.
                let said: Vec<String> = String::from_utf8_lossy(&out.stderr)
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
        };
    }
    bail!(
        "cannot push to remote {remote}: {}",
        if out.stderr.is_empty() {
            "git printed no result".to_owned()
        } else {
            last_line(&out.stderr)
        }
    )
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
