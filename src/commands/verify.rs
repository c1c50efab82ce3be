//! `mara verify`: replay the log and check it reproduces the board.

use anyhow::{bail, Result};
use serde_json::json;

use crate::context::Ctx;
use crate::output::{self, Report};

pub fn run(ctx: &Ctx) -> Result<Report> {
    let ledger = ctx.ledger()?;
    let (problems, events) = ledger.verify()?;
    if !problems.is_empty() {
        if ctx.json {
            // Scripts get the problems as data too; the exit code stays 1.
            let _ = output::print(
                &Report::new(
                    "",
                    json!({ "ok": false, "events": events, "problems": problems }),
                ),
                true,
            );
        }
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
