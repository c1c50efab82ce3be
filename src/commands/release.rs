//! `mara release ID`: give a task back to the board.

use anyhow::Result;
use clap::Args;

use crate::board::{EventKind, Refusal, TaskStatus};
use crate::context::Ctx;
use crate::ids::TaskId;
use crate::ledger::Draft;
use crate::output::Report;

#[derive(Args, Debug)]
pub struct ReleaseArgs {
    /// The task to give back.
    pub id: TaskId,
    /// Release a task another instance holds (the log records who forced it).
    #[arg(long)]
    pub force: bool,
    /// Why, for the log.
    #[arg(long, value_name = "TEXT")]
    pub reason: Option<String>,
}

pub fn run(ctx: &Ctx, args: ReleaseArgs) -> Result<Report> {
    let ledger = ctx.ledger()?;
    let me = ctx.require_identity(ledger.repo())?;
    let o = ledger.append(&me.to_string(), |snap, _| {
        let forced = if args.force {
            forced_holder(snap.task(&args.id)?.as_ref(), &me, &args.id)?
        } else {
            None
        };
        Ok(Draft::Write(EventKind::Release {
            task: args.id.clone(),
            forced,
            reason: args.reason.clone(),
        }))
    })?;
    Ok(super::outcome(o))
}

/// With `--force`: the holder to name in the event, `None` when it is our own task.
pub fn forced_holder(
    task: Option<&crate::board::Task>,
    me: &crate::ids::InstanceId,
    id: &TaskId,
) -> Result<Option<crate::ids::InstanceId>> {
    let Some(t) = task else {
        anyhow::bail!("no task {id} on this board; see `mara board`");
    };
    if t.status == TaskStatus::Done {
        return Err(Refusal::AlreadyDone { task: id.clone() }.into());
    }
    Ok(t.claimed_by.clone().filter(|h| h != me))
}
