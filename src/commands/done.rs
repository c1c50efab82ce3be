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
    /// Complete a task another instance holds (the log records who forced it).
    #[arg(long)]
    pub force: bool,
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
    let o = ledger.append(&me.to_string(), |snap, _| {
        let forced = if args.force {
            super::release::forced_holder(snap.task(&args.id)?.as_ref(), &me, &args.id)?
        } else {
            None
        };
        Ok(Draft::Write(EventKind::Done {
            commit: None,
            branch: None,
            note: None,
            task: args.id.clone(),
            artifact: artifact.clone(),
            forced,
        }))
    })?;
    Ok(super::outcome(o))
}
