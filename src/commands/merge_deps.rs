//! `mara merge-deps`: brings the work of the done dependencies of the tasks this
//! instance holds into the current branch of its worktree.
//!
//! `mara done` records the commit holding a task's work (the instance's branch
//! tip) and its branch. Here every dependency of every held task, transitively,
//! contributes its commit, each commit once, deepest dependencies first. Each
//! commit is merged with `git merge` itself (so the user's merge settings, hooks
//! and rerere apply): a fast-forward where the branch has nothing of its own,
//! else a merge commit whose message names the tasks. A conflict aborts the merge
//! and resets the branch to where it was, so the worktree is exactly as before;
//! that is why a worktree with uncommitted changes to tracked files is refused
//! first. Only commit ids (checked hex by the board's rule) reach git's command
//! line; branch names from the board are shown, never passed to git.

use std::fmt::Write as _;
use std::path::Path;

use anyhow::{anyhow, bail, Context, Result};
use clap::Args;
use serde::Serialize;
use serde_json::json;

use crate::board::{one_line, Task, TaskStatus};
use crate::context::Ctx;
use crate::gitcmd::{git, git_ok};
use crate::ids::{InstanceId, TaskId};
use crate::ledger::{Ledger, Snapshot};
use crate::output::Report;

#[derive(Args, Debug)]
pub struct MergeDepsArgs {}

/// Where a done dependency's work is.
#[derive(Serialize, Clone, Debug)]
pub struct DepWork {
    pub task: TaskId,
    pub status: TaskStatus,
    /// Who completed it.
    pub by: Option<InstanceId>,
    pub commit: Option<String>,
    pub branch: Option<String>,
    pub note: Option<String>,
    pub artifact: Option<String>,
}

impl DepWork {
    fn of(t: &Task) -> DepWork {
        DepWork {
            task: t.id.clone(),
            status: t.status,
            by: t.claimed_by.clone(),
            commit: t.commit.clone(),
            branch: t.branch.clone(),
            note: t.note.clone(),
            artifact: t.artifact.clone(),
        }
    }

    /// One line for people: `T1 done by implementer#1: commit 1a2b3c4d5e on mara/r/implementer_1`.
    pub fn line(&self) -> String {
        let mut s = format!("{} {}", self.task, self.status);
        if let Some(by) = &self.by {
            let _ = write!(s, " by {by}");
        }
        match (&self.commit, &self.branch) {
            (Some(c), Some(b)) => {
                let _ = write!(s, ": commit {} on {}", short(c), one_line(b, 80));
            }
            (Some(c), None) => {
                let _ = write!(s, ": commit {}", short(c));
            }
            _ => s.push_str(": no commit recorded"),
        }
        if let Some(n) = &self.note {
            let _ = write!(s, " ({})", one_line(n, 200));
        }
        s
    }
}

fn short(c: &str) -> &str {
    &c[..c.len().min(10)]
}

/// The direct dependencies of `task` that are done, with where their work is.
pub fn deps_work(snap: &Snapshot<'_>, task: &TaskId) -> Result<Vec<DepWork>> {
    let Some(t) = snap.task(task)? else {
        return Ok(vec![]);
    };
    let mut out = vec![];
    for d in &t.deps {
        if let Some(dep) = snap.task(d)? {
            if dep.status == TaskStatus::Done {
                out.push(DepWork::of(&dep));
            }
        }
    }
    Ok(out)
}

/// The done dependencies of `tasks`, transitively, each once, deepest first.
fn closure(snap: &Snapshot<'_>, tasks: &[TaskId]) -> Result<Vec<DepWork>> {
    fn visit(
        snap: &Snapshot<'_>,
        id: &TaskId,
        seen: &mut std::collections::BTreeSet<TaskId>,
        out: &mut Vec<DepWork>,
        root: bool,
    ) -> Result<()> {
        if !seen.insert(id.clone()) {
            return Ok(());
        }
        let Some(t) = snap.task(id)? else {
            return Ok(());
        };
        for d in &t.deps {
            visit(snap, d, seen, out, false)?;
        }
        if !root && t.status == TaskStatus::Done {
            out.push(DepWork::of(&t));
        }
        Ok(())
    }
    let mut seen = std::collections::BTreeSet::new();
    let mut out = vec![];
    for t in tasks {
        visit(snap, t, &mut seen, &mut out, true)?;
    }
    // A held task may also be another held task's dependency: not done, so not here.
    Ok(out)
}

/// What happened to one commit.
#[derive(Serialize, Debug)]
pub struct Merged {
    pub commit: String,
    pub tasks: Vec<TaskId>,
    /// `up to date`, `fast-forward` or `merge commit`.
    pub how: &'static str,
}

/// Runs git in the worktree; a failure names the command.
fn git_in(dir: &Path, args: &[&str]) -> Result<String> {
    git_ok(dir, args)
}

fn git_true(dir: &Path, args: &[&str]) -> Result<bool> {
    Ok(git(dir, args)?.status.success())
}

/// Merges the done dependencies' commits of every task `me` holds into the
/// current branch of the worktree. Returns what it did, for the report.
pub fn merge(ledger: &Ledger, me: &InstanceId) -> Result<(String, serde_json::Value)> {
    let Some(dir) = ledger.repo().workdir().map(Path::to_path_buf) else {
        bail!("merge-deps needs a worktree; this repository is bare");
    };
    let (held, work) = ledger.read(|snap| {
        let board = snap.full_board()?;
        let held: Vec<TaskId> = board.held_by(me).into_iter().cloned().collect();
        let work = closure(snap, &held)?;
        Ok((held, work))
    })?;
    if held.is_empty() {
        bail!("{me} holds no task, so there is no dependency to merge; claim one first with `mara claim --next`");
    }
    // Each commit once, in the order its first task came.
    let mut commits: Vec<(String, Vec<TaskId>)> = vec![];
    let mut missing = vec![];
    for w in &work {
        match &w.commit {
            Some(c) => match commits.iter_mut().find(|(k, _)| k == c) {
                Some((_, ts)) => ts.push(w.task.clone()),
                None => commits.push((c.clone(), vec![w.task.clone()])),
            },
            None => missing.push(w.task.to_string()),
        }
    }
    for c in &commits {
        if !git_true(&dir, &["cat-file", "-e", &format!("{}^{{commit}}", c.0)])? {
            let w = work
                .iter()
                .find(|w| w.commit.as_deref() == Some(c.0.as_str()))
                .expect("every commit came from a dependency");
            bail!(
                "{}'s commit {} is not in this repository{}; fetch it first (e.g. `git fetch origin BRANCH`), then run `mara merge-deps` again",
                w.task,
                short(&c.0),
                w.branch
                    .as_deref()
                    .map_or(String::new(), |b| format!(" (it was on branch {})", one_line(b, 80)))
            );
        }
    }
    let dirty = git_in(&dir, &["status", "--porcelain", "--untracked-files=no"])?;
    if !dirty.trim().is_empty() {
        let files: Vec<&str> = dirty.lines().map(|l| l.get(3..).unwrap_or(l)).collect();
        bail!(
            "uncommitted changes in {}; commit or stash them first, so a conflict can leave the worktree as it was",
            files.join(", ")
        );
    }
    let orig = git_in(&dir, &["rev-parse", "--verify", "HEAD"])?
        .trim()
        .to_owned();
    let mut done: Vec<Merged> = vec![];
    if let Err(e) = merge_each(&dir, &commits, &held, &orig, &mut done) {
        // A failure after an earlier commit came in (git refusing to overwrite an
        // untracked file, say) leaves the branch where it was too.
        let now = git_in(&dir, &["rev-parse", "HEAD"]).unwrap_or_default();
        if now.trim() != orig {
            restore(&dir, &orig)?;
        }
        return Err(e);
    }
    let mut text = String::new();
    if done.is_empty() {
        text.push_str("no done dependency to merge\n");
    }
    for m in &done {
        let names: Vec<&str> = m.tasks.iter().map(TaskId::as_str).collect();
        let _ = writeln!(
            text,
            "{}: {} ({})",
            names.join(", "),
            m.how,
            short(&m.commit)
        );
    }
    if !missing.is_empty() {
        let _ = writeln!(
            text,
            "no commit recorded for {}: nothing to merge for them",
            missing.join(", ")
        );
    }
    let head = git_in(&dir, &["rev-parse", "HEAD"])?.trim().to_owned();
    Ok((
        text,
        json!({ "merged": done, "no_commit": missing, "head": head, "tasks": held }),
    ))
}

/// Merges `commits` one by one into the worktree's branch, recording each in
/// `done`; a conflict puts the branch back at `orig` and fails naming the files.
fn merge_each(
    dir: &Path,
    commits: &[(String, Vec<TaskId>)],
    held: &[TaskId],
    orig: &str,
    done: &mut Vec<Merged>,
) -> Result<()> {
    for (commit, tasks) in commits {
        let names: Vec<&str> = tasks.iter().map(TaskId::as_str).collect();
        let how = if git_true(dir, &["merge-base", "--is-ancestor", commit, "HEAD"])? {
            "up to date"
        } else if git_true(dir, &["merge-base", "--is-ancestor", "HEAD", commit])? {
            git_in(dir, &["merge", "--ff-only", "--quiet", commit])?;
            "fast-forward"
        } else {
            let msg = format!(
                "Merge the work of {} for {}\n\nmara merge-deps: commit {commit}",
                names.join(", "),
                held.iter()
                    .map(TaskId::as_str)
                    .collect::<Vec<_>>()
                    .join(", ")
            );
            let out = git(dir, &["merge", "--no-ff", "--no-edit", "-m", &msg, commit])?;
            if !out.status.success() {
                let conflicted =
                    git_in(dir, &["diff", "--name-only", "--diff-filter=U"]).unwrap_or_default();
                let files: Vec<&str> = conflicted.lines().collect();
                restore(dir, orig)?;
                if files.is_empty() {
                    bail!(
                        "merging {}'s commit {} failed; nothing was merged, the worktree is as it was: {}",
                        names.join(", "),
                        short(commit),
                        String::from_utf8_lossy(&out.stderr).trim()
                    );
                }
                bail!(
                    "merging {}'s commit {} conflicts in {}; nothing was merged and the worktree is as it was; merge by hand with `git merge {commit}`, or ask with `mara post question ... --task {}`",
                    names.join(", "),
                    short(commit),
                    files.join(", "),
                    names[0]
                );
            }
            "merge commit"
        };
        done.push(Merged {
            commit: commit.clone(),
            tasks: tasks.clone(),
            how,
        });
    }
    Ok(())
}

/// Puts the worktree back where it was after a failed merge. It was clean
/// (checked before the first merge), so a hard reset restores it exactly;
/// untracked files are left alone by both steps.
fn restore(dir: &Path, orig: &str) -> Result<()> {
    let _ = git(dir, &["merge", "--abort"]);
    git_in(dir, &["reset", "--hard", "--quiet", orig])
        .map(drop)
        .map_err(|e| anyhow!("{e:#}"))
        .context("putting the worktree back after the failed merge")
}

pub fn run(ctx: &Ctx, _args: MergeDepsArgs) -> Result<Report> {
    let ledger = ctx.ledger()?;
    let me = ctx.require_identity(ledger.repo())?;
    let (text, json) = merge(&ledger, &me)?;
    Ok(Report::new(text, json))
}
