//! `mara plan FILE`: add many tasks in one event (all or none).

use std::path::PathBuf;

use anyhow::{anyhow, Context, Result};
use clap::Args;

use crate::board::{EventKind, NewTask};
use crate::context::Ctx;
use crate::ledger::Draft;
use crate::output::Report;

#[derive(Args, Debug)]
pub struct PlanArgs {
    /// A JSON list of tasks: `[{"id","title","deps":[],"paths":[]}, ...]`.
    pub file: PathBuf,
}

/// Reads a plan file; errors name the file, line and column.
pub fn read_plan(path: &std::path::Path) -> Result<Vec<NewTask>> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("reading plan {}", path.display()))?;
    serde_json::from_str(&text).map_err(|e| {
        anyhow!(
            "plan {}: {e}; a plan is a JSON list of {{\"id\", \"title\", \"deps\", \"paths\"}}",
            path.display()
        )
    })
}

pub fn run(ctx: &Ctx, args: PlanArgs) -> Result<Report> {
    let tasks = read_plan(&args.file)?;
    let ledger = ctx.ledger()?;
    let sender = ctx.operator(ledger.repo())?;
    let o = ledger.append(&sender, |_, _| {
        Ok(Draft::Write(EventKind::Plan {
            tasks: tasks.clone(),
        }))
    })?;
    Ok(super::outcome(o))
}
