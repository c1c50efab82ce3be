//! `mara claim ID` / `mara claim --next`: take a task.

use anyhow::Result;
use clap::Args;

use crate::board::{self, ClaimKind, EventKind};
use crate::context::Ctx;
use crate::ids::TaskId;
use crate::ledger::Draft;
use crate::output::Report;

#[derive(Args, Debug)]
pub struct ClaimArgs {
    /// The task to claim.
    #[arg(required_unless_present = "next", conflicts_with = "next")]
    pub id: Option<TaskId>,
    /// Claim the first ready task in board order.
    #[arg(long)]
    pub next: bool,
}

pub fn run(ctx: &Ctx, args: ClaimArgs) -> Result<Report> {
    let ledger = ctx.ledger()?;
    let me = ctx.require_identity(ledger.repo())?;
    let sender = me.to_string();
    let o = ledger.append(&sender, |snap, now| {
        // The rule runs on every attempt: after a lost race the task may be gone.
        let (board, id) = match &args.id {
            Some(id) => {
                let board = snap.board_for(&EventKind::Claim { task: id.clone() }, &sender)?;
                (board, id.clone())
            }
            None => {
                let board = snap.full_board()?;
                let id = board::next_ready(&board, &me, now)?;
                (board, id)
            }
        };
        Ok(match board::check_claim(&board, &id, &me, now)? {
            ClaimKind::Fresh => Draft::Write(EventKind::Claim { task: id }),
            ClaimKind::Expired { previous } => {
                Draft::Write(EventKind::Reclaim { task: id, previous })
            }
            ClaimKind::AlreadyMine => Draft::Noop(format!("{id} is already yours ({me})")),
        })
    });
    Ok(super::outcome(o?))
}
