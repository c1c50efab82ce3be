//! `mara plan FILE`: add many tasks in one event (all or none).

use std::path::PathBuf;

use anyhow::{anyhow, Context, Result};
use clap::Args;

use crate::board::{EventKind, Invalid, NewTask};
use crate::context::Ctx;
use crate::ledger::Draft;
use crate::output::Report;

#[derive(Args, Debug)]
pub struct PlanArgs {
    /// A JSON list of tasks: `[{"id","title","deps":[],"paths":[]}, ...]`.
    pub file: PathBuf,
}

/// Reads a plan file; errors name the file and the task (or the line and column
/// when the JSON itself is broken).
pub fn read_plan(path: &std::path::Path) -> Result<Vec<NewTask>> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("reading plan {}", path.display()))?;
    let shape = "a plan is a JSON list of {\"id\", \"title\", \"deps\", \"paths\"}";
    let items: Vec<serde_json::Value> = serde_json::from_str(&text)
        .map_err(|e| anyhow!("plan {}: {e}; {shape}", path.display()))?;
    if items.is_empty() {
        anyhow::bail!("plan {}: the plan has no tasks; {shape}", path.display());
    }
    items
        .into_iter()
        .enumerate()
        .map(|(i, item)| {
            let name = item
                .get("id")
                .and_then(|v| v.as_str())
                .map_or(format!("task #{}", i + 1), |id| {
                    format!("task #{} ({})", i + 1, crate::board::one_line(id, 64))
                });
            crate::config::from_value(item, &format!("plan {}: {name}", path.display()))
        })
        .collect()
}

pub fn run(ctx: &Ctx, args: PlanArgs) -> Result<Report> {
    let tasks = read_plan(&args.file)?;
    let ledger = ctx.ledger()?;
    let sender = ctx.operator(ledger.repo())?;
    let o = ledger
        .append(&sender, |_, _| {
            Ok(Draft::Write(EventKind::Plan {
                tasks: tasks.clone(),
            }))
        })
        .map_err(|e| match e.downcast::<Invalid>() {
            Ok(Invalid(msg)) => {
                anyhow::Error::new(Invalid(format!("plan {}: {msg}", args.file.display())))
            }
            Err(e) => e,
        })?;
    Ok(super::outcome(o))
}
