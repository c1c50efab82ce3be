//! `mara verify`: replay the log and check it reproduces the board.

use anyhow::{bail, Result};
use serde_json::json;

use crate::context::Ctx;
use crate::output::Report;

pub fn run(ctx: &Ctx) -> Result<Report> {
    let ledger = ctx.ledger()?;
    let (problems, events) = ledger.verify()?;
    if !problems.is_empty() {
        bail!(
            "{} is not sound ({} problem(s)):\n  {}",
            ledger.refname(),
            problems.len(),
            problems.join("\n  ")
        );
    }
    Ok(Report::new(
        format!(
            "{} is sound: {events} events replay to the board at its tip",
            ledger.refname()
        ),
        json!({ "ok": true, "events": events, "problems": problems }),
    ))
}
