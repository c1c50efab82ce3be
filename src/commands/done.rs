//! `mara done ID [--artifact PATH]`: complete a task.

use std::path::{Component, Path, PathBuf};

use anyhow::{bail, Result};
use clap::Args;

use crate::board::EventKind;
use crate::context::Ctx;
use crate::ids::TaskId;
use crate::ledger::Draft;
use crate::output::Report;

#[derive(Args, Debug)]
pub struct DoneArgs {
    /// The task that is complete.
    pub id: TaskId,
    /// The file this instance delivered for it, inside the worktree.
    #[arg(long, value_name = "PATH")]
    pub artifact: Option<PathBuf>,
    /// What was done, for whoever builds on it (shown with the task and to its
    /// dependents' claimers).
    #[arg(long, value_name = "TEXT")]
    pub note: Option<String>,
    /// Complete a task another instance holds (the log records who forced it;
    /// no commit is recorded, since this worktree is not the holder's).
    #[arg(long)]
    pub force: bool,
}

/// The commit holding this worktree's work: `HEAD`'s commit and its branch
/// (none on a detached `HEAD`); nothing in a bare repository or before the
/// first commit.
fn work_tip(repo: &git2::Repository) -> (Option<String>, Option<String>) {
    if repo.is_bare() {
        return (None, None);
    }
    let Ok(head) = repo.head() else {
        return (None, None);
    };
    let commit = head.peel_to_commit().ok().map(|c| c.id().to_string());
    let branch = head
        .is_branch()
        .then(|| head.shorthand().map(str::to_owned))
        .flatten();
    (commit, branch)
}

/// The files under the task's `paths` globs, and the artifact, that differ from
/// `HEAD` (staged, unstaged or untracked): work `done` would not record.
fn uncommitted(
    repo: &git2::Repository,
    paths: &[String],
    artifact: Option<&str>,
) -> Result<Vec<String>> {
    if repo.is_bare() || (paths.is_empty() && artifact.is_none()) {
        return Ok(vec![]);
    }
    let (globs, _) = crate::glob::Globs::new(paths.iter().map(String::as_str));
    let mut opts = git2::StatusOptions::new();
    opts.include_untracked(true)
        .recurse_untracked_dirs(true)
        .include_ignored(false)
        .exclude_submodules(true);
    let statuses = repo
        .statuses(Some(&mut opts))
        .map_err(|e| anyhow::anyhow!("reading the worktree's status: {}", e.message()))?;
    let mut out = vec![];
    for s in statuses.iter() {
        if s.status().is_empty() || s.status().contains(git2::Status::IGNORED) {
            continue;
        }
        let Some(p) = s.path() else { continue };
        if artifact != Some(p) && globs.first_match(Path::new(p)).is_some() {
            out.push(p.to_owned());
        }
    }
    // The artifact must be committed as it is: tracked and unchanged (an ignored
    // file is not committed either).
    if let Some(a) = artifact {
        let st = repo
            .status_file(Path::new(a))
            .unwrap_or(git2::Status::WT_NEW);
        if !st.is_empty() {
            out.push(a.to_owned());
        }
    }
    Ok(out)
}

/// Normalises an artifact path to a worktree-relative one with `/` separators;
/// refuses paths that leave the worktree or do not exist.
pub fn artifact_path(workdir: Option<&Path>, cwd: &Path, p: &Path) -> Result<String> {
    let Some(root) = workdir else {
        bail!("--artifact needs a worktree; this repository is bare");
    };
    let abs = if p.is_absolute() {
        p.to_path_buf()
    } else {
        cwd.join(p)
    };
    let mut parts: Vec<String> = vec![];
    let root = root.canonicalize().unwrap_or_else(|_| root.to_path_buf());
    let abs_norm = {
        let mut out = PathBuf::new();
        for c in abs.components() {
            match c {
                Component::ParentDir => {
                    out.pop();
                }
                Component::CurDir => {}
                other => out.push(other),
            }
        }
        out
    };
    let abs_real = abs_norm.canonicalize().unwrap_or(abs_norm.clone());
    let Ok(rel) = abs_real.strip_prefix(&root) else {
        bail!(
            "artifact {} is outside the worktree {}; deliver files inside it",
            p.display(),
            root.display()
        );
    };
    for c in rel.components() {
        match c {
            Component::Normal(s) => parts.push(s.to_string_lossy().into_owned()),
            _ => bail!(
                "artifact {} is not a plain path inside the worktree",
                p.display()
            ),
        }
    }
    if parts.is_empty() || parts.first().is_some_and(|f| f == ".git") {
        bail!("artifact {} is not a file of the worktree", p.display());
    }
    if !abs_real.is_file() {
        bail!(
            "artifact {} does not exist; write it first, then run `mara done`",
            p.display()
        );
    }
    Ok(parts.join("/"))
}

pub fn run(ctx: &Ctx, args: DoneArgs) -> Result<Report> {
    let ledger = ctx.ledger()?;
    let me = ctx.require_identity(ledger.repo())?;
    let artifact = match &args.artifact {
        Some(p) => Some(artifact_path(
            ledger.repo().workdir(),
            &std::env::current_dir()?,
            p,
        )?),
        None => None,
    };
    let (commit, branch) = if args.force {
        (None, None)
    } else {
        // Refused before anything is written: the recorded commit must hold the work.
        let paths = ledger
            .read(|snap| snap.task(&args.id))?
            .map(|t| t.paths)
            .unwrap_or_default();
        let dirty = uncommitted(ledger.repo(), &paths, artifact.as_deref())?;
        if !dirty.is_empty() {
            bail!(
                "uncommitted changes in {} ({}'s paths or artifact); commit them first (`git add` and `git commit`), so the commit `done` records holds the work",
                dirty.join(", "),
                args.id
            );
        }
        work_tip(ledger.repo())
    };
    let o = ledger.append(&me.to_string(), |snap, _| {
        let forced = if args.force {
            super::release::forced_holder(snap.task(&args.id)?.as_ref(), &me, &args.id)?
        } else {
            None
        };
        Ok(Draft::Write(EventKind::Done {
            commit: commit.clone(),
            branch: branch.clone(),
            note: args.note.clone(),
            task: args.id.clone(),
            artifact: artifact.clone(),
            forced,
        }))
    })?;
    Ok(super::outcome(o))
}
