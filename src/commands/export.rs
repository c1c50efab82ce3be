//! `mara export`: the board and the channel as files, at the seed's paths, for
//! tools that want files rather than git.

use std::path::PathBuf;

use anyhow::{Context, Result};
use clap::Args;
use serde_json::json;

use crate::context::Ctx;
use crate::orchestrator::{exclude_run_dirs, run_dir};
use crate::output::Report;

#[derive(Args, Debug)]
pub struct ExportArgs {
    /// Where to write (default: .multi_agent_runs/<run>/ in the main worktree).
    #[arg(long, value_name = "DIR")]
    pub dir: Option<PathBuf>,
}

pub fn run(ctx: &Ctx, args: ExportArgs) -> Result<Report> {
    let ledger = ctx.ledger()?;
    let repo = ledger.repo();
    let dir = match args.dir {
        Some(d) => d,
        None => {
            exclude_run_dirs(repo)?;
            run_dir(
                repo.commondir().parent().unwrap_or(repo.commondir()),
                ledger.run(),
            )
        }
    };
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    let board = ledger.read(|s| s.full_board())?;
    let board_path = dir.join("task_board.json");
    std::fs::write(&board_path, format!("{:#}\n", board.to_json()))
        .with_context(|| format!("writing {}", board_path.display()))?;
    let log_path = dir.join("coordination.log");
    let mut lines = String::new();
    let events = ledger.events()?;
    for (_, e) in &events {
        lines.push_str(&e.to_json().to_string());
        lines.push('\n');
    }
    std::fs::write(&log_path, lines).with_context(|| format!("writing {}", log_path.display()))?;
    Ok(Report::new(
        format!(
            "wrote {} ({} tasks) and {} ({} events)",
            board_path.display(),
            board.tasks.len(),
            log_path.display(),
            events.len()
        ),
        json!({"task_board": board_path, "channel": log_path, "tasks": board.tasks.len(), "events": events.len()}),
    ))
}
