//! `mara collect`: the output collector. Gathers each instance's artifacts from its
//! branch, copies them to `.multi_agent_runs/<run>/outputs/`, and records every one
//! as an Artifact on the board.
//!
//! Artifact paths come from the board, file names from the run's config on the ref,
//! and the files from branches other instances wrote: all untrusted (DESIGN, "Trust";
//! issue 13, part 1). So every path passes [`check_relative`] before it is looked up,
//! only regular files are copied (a symbolic link, a submodule or a folder on a branch
//! is skipped with a warning naming the branch and the path), and the copies are
//! written through [`SafeDir`]: no symbolic link under the work tree's
//! `.multi_agent_runs/` is followed. Every destination is checked before the first
//! file is written, so a planted link refuses the whole collect with nothing written.

use std::collections::BTreeSet;

use anyhow::{bail, Context, Result};
use serde_json::json;

use crate::board::EventKind;
use crate::context::Ctx;
use crate::ids::{InstanceId, RunId};
use crate::integrate::{branch_instance, instance_branches};
use crate::ledger::Draft;
use crate::output::{self, Report};
use crate::paths::{exclude_run_dirs, main_work_tree, open_run_dir, SafeDir, RUNS_DIR};
use crate::safepath::check_relative;

/// One file to copy: where it comes from and where it goes below `outputs/`.
struct Copy {
    id: InstanceId,
    branch: String,
    path: String,
    /// Components of the destination below `outputs/`.
    dest: Vec<String>,
    blob: git2::Oid,
    size: usize,
    /// Not on the board yet: record it.
    new: bool,
}

pub fn run(ctx: &Ctx) -> Result<Report> {
    let ledger = ctx.ledger()?;
    let repo = ledger.repo();
    let run = ledger.run().clone();
    let work_tree = main_work_tree(repo, "collect")?;
    let snap = ledger.snapshot()?;
    let board = snap.full_board()?;
    let who = ctx.operator(repo)?;
    // Nothing is written until every copy is planned and every destination checked.
    let mut copies = vec![];
    for branch in instance_branches(repo, &run)? {
        copies.extend(plan_branch(repo, &snap.config, &board, &run, &branch)?);
    }
    check_destinations(&work_tree, &run, &copies)?;
    write_copies(&ledger, &who, &work_tree, &copies)
}

/// Step 1: what to copy from one instance branch: its recorded artifacts and the file
/// `outputs.pattern` names, each a checked relative path to a regular file.
fn plan_branch(
    repo: &git2::Repository,
    config: &crate::board::RunConfig,
    board: &crate::board::Board,
    run: &RunId,
    branch: &str,
) -> Result<Vec<Copy>> {
    let id: InstanceId = branch_instance(run, branch).expect("listed as an instance branch");
    let tip = repo
        .find_branch(branch, git2::BranchType::Local)?
        .get()
        .peel_to_tree()
        .with_context(|| format!("reading branch {branch}"))?;
    let recorded: BTreeSet<String> = board
        .artifacts
        .get(&id)
        .map(|v| v.iter().map(|a| a.path.clone()).collect())
        .unwrap_or_default();
    let pattern = config.artifact_name(&id);
    let mut paths = recorded.clone();
    if check_relative(&pattern).is_ok() && tip.get_path(std::path::Path::new(&pattern)).is_ok() {
        paths.insert(pattern.clone());
    } else if let Err(why) = check_relative(&pattern) {
        output::warn(&format!(
            "the run's outputs.pattern gives {id} the file name {pattern:?}, which {why}; not collected"
        ));
    }
    let mut copies = vec![];
    for path in paths {
        let parts = match check_relative(&path) {
            Ok(p) => p,
            Err(why) => {
                output::warn(&format!(
                    "{id} recorded artifact {path:?}, which {why}; skipped"
                ));
                continue;
            }
        };
        let Ok(entry) = tip.get_path(std::path::Path::new(&path)) else {
            output::warn(&format!(
                "{id} recorded artifact {path}, but branch {branch} has no such file; commit it there"
            ));
            continue;
        };
        let skip = match (entry.kind(), entry.filemode()) {
            (Some(git2::ObjectType::Blob), 0o120000) => Some("a symbolic link"),
            (Some(git2::ObjectType::Blob), _) => None,
            (Some(git2::ObjectType::Commit), _) => Some("a submodule"),
            (Some(git2::ObjectType::Tree), _) => Some("a folder"),
            _ => Some("not a file"),
        };
        if let Some(what) = skip {
            output::warn(&format!(
                "branch {branch}: {path} is {what}, not a file; collect copies regular files only, skipped"
            ));
            continue;
        }
        let blob = repo
            .find_blob(entry.id())
            .with_context(|| format!("reading {path} on branch {branch}"))?;
        let mut dest: Vec<String> = vec![];
        if path != pattern {
            dest.push(id.file_stem());
        }
        dest.extend(parts.iter().map(|p| (*p).to_owned()));
        copies.push(Copy {
            new: !recorded.contains(&path),
            id: id.clone(),
            branch: branch.to_owned(),
            path,
            dest,
            blob: blob.id(),
            size: blob.size(),
        });
    }
    Ok(copies)
}

/// Step 2: every destination's folders, as far as they exist: a symbolic link or a
/// file on the way, a folder where a file goes, or one copy's file where another
/// needs a folder refuses the collect before anything is written.
fn check_destinations(work_tree: &std::path::Path, run: &RunId, copies: &[Copy]) -> Result<()> {
    let files: BTreeSet<&[String]> = copies.iter().map(|c| c.dest.as_slice()).collect();
    for c in copies {
        if let Some(depth) = (1..c.dest.len()).find(|d| files.contains(&c.dest[..*d])) {
            bail!(
                "outputs/{} would be a file (an artifact) and a folder (for {} of {}); rename one of them",
                c.dest[..depth].join("/"),
                c.path,
                c.id
            );
        }
    }
    let root = SafeDir::open(work_tree)?;
    let outputs_rel = [RUNS_DIR, run.as_str(), "outputs"];
    if let Some(outputs) = root.descend(&outputs_rel, false)? {
        for c in copies {
            let (name, folders) = c.dest.split_last().expect("a path has a component");
            let folders: Vec<&str> = folders.iter().map(String::as_str).collect();
            if let Some(dir) = outputs.descend(&folders, false)? {
                let dest = dir.path().join(name);
                if std::fs::symlink_metadata(&dest).is_ok_and(|m| m.is_dir()) {
                    bail!(
                        "{} is a folder where {}'s artifact {} goes; move it out of the way",
                        dest.display(),
                        c.id,
                        c.path
                    );
                }
            }
        }
    }
    Ok(())
}

/// Step 3: writes the copies, then records the artifacts the board does not have yet.
fn write_copies(
    ledger: &crate::ledger::Ledger,
    who: &str,
    work_tree: &std::path::Path,
    copies: &[Copy],
) -> Result<Report> {
    let repo = ledger.repo();
    let run = ledger.run();
    exclude_run_dirs(repo)?;
    let outputs = open_run_dir(work_tree, run, &["outputs"])?;
    let out_dir = outputs.path().to_path_buf();
    let mut rows = vec![];
    let mut text = String::new();
    for c in copies {
        let (name, folders) = c.dest.split_last().expect("a path has a component");
        let folders: Vec<&str> = folders.iter().map(String::as_str).collect();
        let dir = outputs
            .descend(&folders, true)?
            .expect("descend creates the folders");
        let blob = repo.find_blob(c.blob)?;
        let dest = dir.write(name, blob.content())?;
        if c.new {
            let kind = EventKind::Artifact {
                instance: c.id.clone(),
                path: c.path.clone(),
                branch: Some(c.branch.clone()),
            };
            ledger.append(who, |_, _| Ok(Draft::Write(kind.clone())))?;
        }
        text.push_str(&format!(
            "{:<16} {:<32} {:>7} B  -> {}\n",
            c.id.to_string(),
            c.path,
            c.size,
            dest.display()
        ));
        rows.push(json!({
            "role_id": c.id.role(), "instance_id": c.id.number(), "path": c.path,
            "branch": c.branch, "size": c.size, "copied_to": dest,
        }));
    }
    if rows.is_empty() {
        text.push_str(&format!(
            "no artifacts found on the instance branches of run {run} (mara/{run}/<role>_<n>)\n"
        ));
    } else {
        text.push_str(&format!(
            "{} artifact(s) in {}\n",
            rows.len(),
            out_dir.display()
        ));
    }
    Ok(Report::new(
        text.trim_end().to_owned(),
        json!({ "run": run.as_str(), "outputs": out_dir, "artifacts": rows }),
    ))
}
