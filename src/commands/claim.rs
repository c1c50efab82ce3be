//! `mara claim ID` / `mara claim --next [--wait SECS] [--merge-deps]`: take a task.
//!
//! With `--wait`, a `claim --next` that finds nothing ready waits for the run's
//! ref to move ([`Ledger::wait_to_write`]) and tries again; several waiters
//! race for a new task through the same compare-and-swap as any claim, so one
//! gets it and the others wait on (each woken waiter pauses a random moment
//! first, so they do not all write at once). "Nothing left" (exit 4) ends the wait at once.

use std::cell::Cell;
use std::fmt::Write as _;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use clap::Args;
use serde_json::json;

use super::merge_deps::{self, deps_work};
use crate::board::{self, ClaimKind, EventKind, Refusal};
use crate::context::Ctx;
use crate::ids::TaskId;
use crate::ledger::{Draft, Ledger, Outcome};
use crate::output::Report;

/// While waiting, the board is read again at least this often even if the ref
/// did not move: a lease that ran out, or a sent-back task's first-claim window
/// that closed, makes a task claimable without any new event.
const RECHECK: Duration = Duration::from_secs(10);

#[derive(Args, Debug)]
pub struct ClaimArgs {
    /// The task to claim.
    #[arg(required_unless_present = "next", conflicts_with = "next")]
    pub id: Option<TaskId>,
    /// Claim the ready task of this instance's role with the highest priority
    /// (then board order).
    #[arg(long)]
    pub next: bool,
    /// With --next: when nothing is ready, wait up to SECS for a task to become
    /// ready (exit 3 when the time runs out, 4 as soon as nothing is left).
    #[arg(long, value_name = "SECS", requires = "next")]
    pub wait: Option<u64>,
    /// Then bring the work of the task's done dependencies into this worktree's
    /// branch (as `mara merge-deps`).
    #[arg(long)]
    pub merge_deps: bool,
}

fn is_nothing_ready(e: &anyhow::Error) -> bool {
    matches!(
        e.downcast_ref::<Refusal>(),
        Some(Refusal::NothingReady { .. })
    )
}

/// One claim attempt through the ledger; also returns the tip the rule was
/// judged on, which is what a waiter must see move.
fn claim_once(
    ledger: &Ledger,
    me: &crate::ids::InstanceId,
    id: Option<&TaskId>,
) -> (Result<(Outcome, TaskId)>, Option<git2::Oid>) {
    let sender = me.to_string();
    let judged = Cell::new(None);
    let chosen = std::cell::RefCell::new(None);
    let o = ledger.append(&sender, |snap, now| {
        judged.set(Some(snap.tip));
        // The rule runs on every attempt: after a lost race the task may be gone.
        let (board, id) = match id {
            Some(id) => {
                let board = snap.board_for(&EventKind::Claim { task: id.clone() }, &sender)?;
                (board, id.clone())
            }
            None => {
                // Read through the ready lists of the role, not the whole board.
                let id = snap.next_ready(me, now)??;
                let board = snap.board_for(&EventKind::Claim { task: id.clone() }, &sender)?;
                (board, id)
            }
        };
        *chosen.borrow_mut() = Some(id.clone());
        Ok(match board::check_claim(&board, &id, me, now)? {
            ClaimKind::Fresh => Draft::Write(EventKind::Claim { task: id }),
            ClaimKind::Expired { previous } => {
                Draft::Write(EventKind::Reclaim { task: id, previous })
            }
            ClaimKind::AlreadyMine => Draft::Noop(format!("{id} is already yours ({me})")),
        })
    });
    let result = o.map(|o| {
        let id = chosen
            .into_inner()
            .expect("a successful append ran the draft");
        (o, id)
    });
    (result, judged.get())
}

pub fn run(ctx: &Ctx, args: ClaimArgs) -> Result<Report> {
    let ledger = ctx.ledger()?;
    let me = ctx.require_identity(ledger.repo())?;
    let deadline = args.wait.map(|s| Instant::now() + Duration::from_secs(s));
    let (outcome, id) = loop {
        let (result, judged) = claim_once(&ledger, &me, args.id.as_ref());
        match (result, deadline) {
            (Err(e), Some(deadline)) if is_nothing_ready(&e) && Instant::now() < deadline => {
                let tip = match judged {
                    Some(t) => t,
                    None => ledger.tip()?,
                };
                let until = deadline.min(Instant::now() + RECHECK);
                if ledger.wait_to_write(tip, until)?.is_none() && until >= deadline {
                    return Err(e);
                }
            }
            (result, _) => break result?,
        }
    };
    let mut report = super::outcome(outcome);
    let deps = ledger.read(|snap| deps_work(snap, &id))?;
    report.json["task"] = json!(id);
    if !deps.is_empty() {
        let _ = write!(report.text, "\nits dependencies' work:");
        for d in &deps {
            let _ = write!(report.text, "\n  {}", d.line());
        }
        if !args.merge_deps {
            let _ = write!(
                report.text,
                "\nbring it into this branch with `mara merge-deps`"
            );
        }
    }
    report.json["deps"] = json!(deps);
    if args.merge_deps {
        let (text, merged) = merge_deps::merge(&ledger, &me)
            .with_context(|| format!("{id} is yours ({me}), but merge-deps stopped"))?;
        let _ = write!(report.text, "\nmerge-deps:\n{}", text.trim_end());
        report.json["merge_deps"] = merged;
    }
    Ok(report)
}
