//! `mara heartbeat`: show the instance is alive (renews its lease).

use anyhow::Result;

use crate::board::EventKind;
use crate::context::Ctx;
use crate::ledger::Draft;
use crate::output::Report;

pub fn run(ctx: &Ctx) -> Result<Report> {
    let ledger = ctx.ledger()?;
    let me = ctx.require_identity(ledger.repo())?;
    let o = ledger.append(&me.to_string(), |_, _| {
        Ok(Draft::Write(EventKind::Heartbeat))
    })?;
    Ok(super::outcome(o))
}
