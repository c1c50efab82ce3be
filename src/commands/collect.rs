//! `mara collect`: the output collector. Gathers each instance's artifacts from its
//! branch, copies them to `.multi_agent_runs/<run>/outputs/`, and records every one
//! as an Artifact on the board.

use std::collections::BTreeSet;

use anyhow::{Context, Result};
use serde_json::json;

use crate::board::EventKind;
use crate::context::Ctx;
use crate::ids::InstanceId;
use crate::integrate::{branch_instance, instance_branches};
use crate::ledger::Draft;
use crate::orchestrator::{exclude_run_dirs, run_dir};
use crate::output::{self, Report};

pub fn run(ctx: &Ctx) -> Result<Report> {
    let ledger = ctx.ledger()?;
    let repo = ledger.repo();
    let run = ledger.run().clone();
    let snap = ledger.snapshot()?;
    let board = snap.full_board()?;
    let who = ctx.operator(repo)?;
    let main_dir = repo
        .commondir()
        .parent()
        .unwrap_or(repo.commondir())
        .to_path_buf();
    let out_dir = run_dir(&main_dir, &run).join("outputs");
    exclude_run_dirs(repo)?;
    let mut rows = vec![];
    let mut text = String::new();
    for branch in instance_branches(repo, &run)? {
        let id: InstanceId = branch_instance(&run, &branch).expect("listed as an instance branch");
        let tip = repo
            .find_branch(&branch, git2::BranchType::Local)?
            .get()
            .peel_to_tree()
            .with_context(|| format!("reading branch {branch}"))?;
        let recorded: BTreeSet<String> = board
            .artifacts
            .get(&id)
            .map(|v| v.iter().map(|a| a.path.clone()).collect())
            .unwrap_or_default();
        let pattern = snap.config.artifact_name(&id);
        let mut paths = recorded.clone();
        if tip.get_path(std::path::Path::new(&pattern)).is_ok() {
            paths.insert(pattern.clone());
        }
        for path in paths {
            let Ok(entry) = tip.get_path(std::path::Path::new(&path)) else {
                output::warn(&format!(
                    "{id} recorded artifact {path}, but branch {branch} has no such file; commit it there"
                ));
                continue;
            };
            let Ok(blob) = repo.find_blob(entry.id()) else {
                continue; // a folder, not a file
            };
            let dest = if path == pattern {
                out_dir.join(&path)
            } else {
                out_dir.join(id.file_stem()).join(&path)
            };
            if let Some(parent) = dest.parent() {
                std::fs::create_dir_all(parent)
                    .with_context(|| format!("creating {}", parent.display()))?;
            }
            std::fs::write(&dest, blob.content())
                .with_context(|| format!("writing {}", dest.display()))?;
            if !recorded.contains(&path) {
                let kind = EventKind::Artifact {
                    instance: id.clone(),
                    path: path.clone(),
                    branch: Some(branch.clone()),
                };
                ledger.append(&who, |_, _| Ok(Draft::Write(kind.clone())))?;
            }
            text.push_str(&format!(
                "{:<16} {:<32} {:>7} B  -> {}\n",
                id.to_string(),
                path,
                blob.size(),
                dest.display()
            ));
            rows.push(json!({
                "role_id": id.role(), "instance_id": id.number(), "path": path,
                "branch": branch, "size": blob.size(), "copied_to": dest,
            }));
        }
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
