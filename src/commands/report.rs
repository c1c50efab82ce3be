//! `mara report --html FILE`: a self-contained page of the run.

use std::path::PathBuf;

use anyhow::{Context, Result};
use clap::Args;
use serde_json::json;

use crate::context::Ctx;
use crate::ledger::now;
use crate::output::Report;

#[derive(Args, Debug)]
pub struct ReportArgs {
    /// Where to write the page.
    #[arg(long, value_name = "FILE")]
    pub html: PathBuf,
}

pub fn run(ctx: &Ctx, args: ReportArgs) -> Result<Report> {
    let ledger = ctx.ledger()?;
    let board = ledger.read(|s| s.full_board())?;
    let events: Vec<_> = ledger.events()?.into_iter().map(|(_, e)| e).collect();
    let page = crate::report::html(ledger.run().as_str(), &board, &events, now());
    std::fs::write(&args.html, &page)
        .with_context(|| format!("writing {}", args.html.display()))?;
    Ok(Report::new(
        format!(
            "wrote {} ({} KB): {} tasks, {} instances, {} events",
            args.html.display(),
            page.len() / 1024,
            board.tasks.len(),
            board.instances.len(),
            events.len()
        ),
        json!({"path": args.html, "bytes": page.len(), "tasks": board.tasks.len(), "instances": board.instances.len(), "events": events.len()}),
    ))
}
