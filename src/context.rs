//! Where a command runs: the repository, the current run and who is acting.
//!
//! This is the one module that reads the environment (`MARA_RUN`, `MARA_INSTANCE`);
//! clippy's `disallowed-methods` keeps it that way.

use anyhow::{anyhow, Context, Result};
use git2::Repository;

use crate::ids::{InstanceId, RunId};
use crate::ledger::Ledger;

/// Global options every command shares.
#[derive(Clone, Debug, Default)]
pub struct Ctx {
    /// `--run`.
    pub run: Option<String>,
    /// `--as`.
    pub as_instance: Option<String>,
    /// `--json`.
    pub json: bool,
}

#[allow(clippy::disallowed_methods)] // the one place that reads the environment
fn env(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.is_empty())
}

/// `PATH` with `dir` in front, for child processes that call `mara` by name.
#[allow(clippy::disallowed_methods)] // the one place that reads the environment
pub fn path_with(dir: &std::path::Path) -> Result<std::ffi::OsString> {
    let old = std::env::var_os("PATH").unwrap_or_default();
    Ok(std::env::join_paths(
        std::iter::once(dir.to_path_buf()).chain(std::env::split_paths(&old)),
    )?)
}

/// A test's crash injection: `MARA_CRASH_AT=<point>` aborts the process at that
/// point (as a `kill -9` would stop it), so tests can show what a crash there leaves.
pub fn crash_point(point: &str) {
    if env("MARA_CRASH_AT").as_deref() == Some(point) {
        std::process::abort();
    }
}

/// `MARA_ALLOW_RESERVED=1`: commit files another instance's task reserves.
pub fn allow_reserved() -> bool {
    env("MARA_ALLOW_RESERVED").is_some_and(|v| v != "0")
}

/// Whether to draw a live progress line: stderr is a terminal that can take it.
pub fn live_progress() -> bool {
    use std::io::IsTerminal;
    std::io::stderr().is_terminal() && env("TERM").is_none_or(|t| t != "dumb")
}

impl Ctx {
    /// Opens the repository the way git would: `GIT_DIR`, `GIT_WORK_TREE` and the
    /// other variables a hook runs with count, then the current directory upwards.
    pub fn repo(&self) -> Result<Repository> {
        let repo = Repository::open_from_env().map_err(|e| {
            anyhow!(
                "not inside a git repository ({}); cd into one, or create one with `git init`",
                e.message()
            )
        })?;
        // git lets `GIT_WORK_TREE` give a bare git directory a work tree; libgit2
        // keeps it bare. Do as git does, so the run's folder goes where the user said.
        if repo.is_bare() {
            if let Some(wt) = env("GIT_WORK_TREE") {
                repo.set_workdir(std::path::Path::new(&wt), false)
                    .with_context(|| format!("using GIT_WORK_TREE {wt}"))?;
            }
        }
        Ok(repo)
    }

    /// The current run: `--run`, else `MARA_RUN`, else git config `mara.run`.
    pub fn run_id(&self, repo: &Repository) -> Result<RunId> {
        let from_config = || {
            repo.config()
                .ok()
                .and_then(|c| c.get_string("mara.run").ok())
        };
        let (raw, source) = if let Some(r) = &self.run {
            (r.clone(), "--run")
        } else if let Some(r) = env("MARA_RUN") {
            (r, "MARA_RUN")
        } else if let Some(r) = from_config() {
            (r, "git config mara.run")
        } else {
            return Err(anyhow!(
                "no current run: pass --run ID, set MARA_RUN, or create one with `mara init --run ID`"
            ));
        };
        raw.parse()
            .with_context(|| format!("reading the run id from {source}"))
    }

    /// The id of a run this command starts: `--run` (an error says it was `reading`
    /// it), else a new one from the clock, `run-YYYYmmdd-HHMMSS`.
    pub fn new_run_id(&self, reading: &'static str) -> Result<RunId> {
        match &self.run {
            Some(r) => r.parse().context(reading),
            None => format!("run-{}", chrono::Utc::now().format("%Y%m%d-%H%M%S")).parse(),
        }
    }

    /// Opens the repository and the current run's ledger.
    pub fn ledger(&self) -> Result<Ledger> {
        let repo = self.repo()?;
        let run = self.run_id(&repo)?;
        Ledger::open(repo, run)
    }

    /// Who is acting: `--as`, else `MARA_INSTANCE`, else git config `mara.instance`
    /// (worktree config first, so each worktree can be its own instance).
    pub fn identity(&self, repo: &Repository) -> Result<Option<InstanceId>> {
        let (raw, source) = if let Some(a) = &self.as_instance {
            (a.clone(), "--as")
        } else if let Some(a) = env("MARA_INSTANCE") {
            (a, "MARA_INSTANCE")
        } else if let Some(a) = repo
            .config()
            .ok()
            .and_then(|c| c.get_string("mara.instance").ok())
        {
            (a, "git config mara.instance")
        } else {
            return Ok(None);
        };
        raw.parse()
            .map(Some)
            .with_context(|| format!("reading the instance from {source}"))
    }

    /// The identity, or an error saying how to set one.
    pub fn require_identity(&self, repo: &Repository) -> Result<InstanceId> {
        self.identity(repo)?.ok_or_else(|| {
            anyhow!(
                "who is acting? pass --as implementer#1, set MARA_INSTANCE=implementer#1, or run `git config mara.instance implementer#1`"
            )
        })
    }

    /// The sender of board set-up events (init, task add, plan): the instance if one
    /// is set, else the git user, else `operator`. Setting up a board needs no role.
    pub fn operator(&self, repo: &Repository) -> Result<String> {
        if let Some(i) = self.identity(repo)? {
            return Ok(i.to_string());
        }
        Ok(repo
            .config()
            .ok()
            .and_then(|c| c.get_string("user.name").ok())
            .filter(|n| !n.trim().is_empty())
            .unwrap_or_else(|| "operator".to_owned()))
    }
}

/// Sets a git config value of the repository, retrying briefly while git's config
/// lock is taken (several processes may set values at once). The error says why.
pub fn set_git_config(repo: &Repository, key: &str, value: &str) -> Result<(), String> {
    // git holds its config lock for a moment; a second is plenty.
    let mut pauses =
        crate::backoff::Backoff::fixed(std::time::Duration::from_millis(10)).attempts(100);
    loop {
        match repo.config().and_then(|mut c| c.set_str(key, value)) {
            Ok(()) => return Ok(()),
            Err(e) if e.code() == git2::ErrorCode::Locked || e.message().contains("lock") => {
                match pauses.next() {
                    Some(p) => std::thread::sleep(p),
                    None => return Err("git config stayed locked".to_owned()),
                }
            }
            Err(e) => return Err(e.message().to_owned()),
        }
    }
}

/// Records `run` as the repository's current run (git config `mara.run`). The run
/// already exists when this is called, so a failure only warns: exiting 1 would
/// claim that nothing was written.
pub fn record_current_run(repo: &Repository, run: &RunId) {
    if let Err(why) = set_git_config(repo, "mara.run", run.as_str()) {
        crate::output::warn(&format!(
            "run {run} exists, but recording it as the current run failed ({why}); use --run {run} or `git config mara.run {run}`"
        ));
    }
}
