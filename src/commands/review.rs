//! `mara review ID --approve | --changes TEXT`: a reviewer's verdict on a done task.

use anyhow::Result;
use clap::Args;

use crate::board::{EventKind, Verdict};
use crate::context::Ctx;
use crate::ids::TaskId;
use crate::ledger::Draft;
use crate::output::Report;

#[derive(Args, Debug)]
#[command(group(clap::ArgGroup::new("verdict").required(true).args(["approve", "changes"])))]
pub struct ReviewArgs {
    /// The task awaiting review.
    pub id: TaskId,
    /// Approve it: the task is done, and its dependents may be claimed.
    #[arg(long)]
    pub approve: bool,
    /// Send it back with what to change: it reopens, first for its previous holder.
    #[arg(long, value_name = "TEXT")]
    pub changes: Option<String>,
    /// A note with an approval (for the task's thread).
    #[arg(long, value_name = "TEXT", conflicts_with = "changes")]
    pub note: Option<String>,
}

pub fn run(ctx: &Ctx, args: ReviewArgs) -> Result<Report> {
    let ledger = ctx.ledger()?;
    let me = ctx.require_identity(ledger.repo())?;
    let (verdict, note) = match args.changes {
        Some(what) => (Verdict::Changes, Some(what)),
        None => (Verdict::Approve, args.note),
    };
    let kind = EventKind::Review {
        task: args.id,
        verdict,
        note,
    };
    let o = ledger.append(&me.to_string(), |_, _| Ok(Draft::Write(kind.clone())))?;
    Ok(super::outcome(o))
}
