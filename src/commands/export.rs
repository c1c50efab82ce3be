//! `mara export`: the board and the channel as files, at the seed's paths, for
//! tools that want files rather than git.

use std::path::PathBuf;

use anyhow::{Context, Result};
use clap::Args;
use serde_json::json;

use crate::context::Ctx;
use crate::output::Report;
use crate::paths::{exclude_run_dirs, main_work_tree, open_run_dir, SafeDir};

#[derive(Args, Debug)]
pub struct ExportArgs {
    /// Where to write (default: .multi_agent_runs/<run>/ in the main worktree).
    #[arg(long, value_name = "DIR")]
    pub dir: Option<PathBuf>,
}

pub fn run(ctx: &Ctx, args: ExportArgs) -> Result<Report> {
    let ledger = ctx.ledger()?;
    let repo = ledger.repo();
    let board = ledger.read(|s| s.full_board())?;
    let mut lines = String::new();
    let events = ledger.events()?;
    for (_, e) in &events {
        lines.push_str(&e.to_json().to_string());
        lines.push('\n');
    }
    // Found before anything is written: a bare repository has no run folder.
    let dir = match args.dir {
        Some(d) => {
            std::fs::create_dir_all(&d).with_context(|| format!("creating {}", d.display()))?;
            SafeDir::open(&d)?
        }
        None => {
            let work_tree = main_work_tree(repo, "export")?;
            exclude_run_dirs(repo)?;
            open_run_dir(&work_tree, ledger.run(), &[])?
        }
    };
    let board_path = dir.write(
        "task_board.json",
        format!("{:#}\n", board.to_json()).as_bytes(),
    )?;
    let log_path = dir.write("coordination.log", lines.as_bytes())?;
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
