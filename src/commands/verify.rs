//! `mara verify`: replay the log and check it reproduces the board.

use anyhow::{anyhow, Result};
use serde_json::json;

use crate::context::Ctx;
use crate::error::CommandError;
use crate::output::Report;

pub fn run(ctx: &Ctx) -> Result<Report> {
    let ledger = ctx.ledger()?;
    let (problems, events) = ledger.verify()?;
    if !problems.is_empty() {
        let error = anyhow!(
            "{} is not sound ({} problem(s)):\n  {}",
            ledger.refname(),
            problems.len(),
            problems.join("\n  ")
        );
        // Scripts get the problems as data too (people read them in the error);
        // the exit code stays 1.
        let report = Report::new(
            "",
            json!({ "ok": false, "events": events, "problems": problems }),
        );
        return Err(CommandError::new(error).with_report(report).into());
    }
    Ok(Report::new(
        format!(
            "{} is sound: {events} events replay to the board at its tip",
            ledger.refname()
        ),
        json!({ "ok": true, "events": events, "problems": problems }),
    ))
}
