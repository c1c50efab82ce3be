//! `mara claim ID` / `mara claim --next [--wait SECS] [--merge-deps]`: take a task.
//!
//! With `--wait`, a `claim --next` that finds nothing ready waits for the run's
//! ref to move ([`Ledger::wait_to_write`]) and tries again; several waiters
//! race for a new task through the same compare-and-swap as any claim, so one
//! gets it and the others wait on (each woken waiter pauses a random moment
//! first, so they do not all write at once). "Nothing left" (exit 4) ends the wait at once.

use std::cell::{Cell, RefCell};
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use clap::Args;
use serde::Serialize;
use serde_json::json;

use super::merge_deps::{self, deps_work, DepWork};
use crate::board::{self, ClaimKind, EventKind, Refusal, Ts};
use crate::context::Ctx;
use crate::ids::{InstanceId, TaskId};
use crate::ledger::{Draft, Ledger, Outcome};
use crate::output::{self, Report};

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
    /// (then board order). A task whose holder's lease ran out is reclaimed,
    /// unless the holder is still trying to write (then it is passed over).
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

/// A task `claim --next` passed over: its holder's lease ran out, but it is
/// still trying to write ([`Ledger::still_trying`]).
#[derive(Clone, Debug, Serialize)]
struct Spared {
    task: TaskId,
    holder: InstanceId,
    tried_at: Ts,
}

/// What a claim did, which task it took, and that task's done dependencies.
type Claimed = (Outcome, TaskId, Vec<DepWork>);

/// One claim attempt through the ledger, with the done dependencies of the
/// task (their work, for the report); also returns the tip the rule was judged
/// on, which is what a waiter must see move, and the tasks it passed over on
/// that tip.
///
/// The dependencies are read on the snapshot the claim was judged on, the
/// parent of the claim's commit, whose tree differs only in the claimed task:
/// reading them again after the write cost a fresh snapshot and a rescan of
/// the pack directory for the new pack, a twentieth of a claim (issue 16).
///
/// A reclaim is drafted only from a holder that is not still trying to write:
/// the board's lease counts events, and an instance whose writes keep losing
/// races (or whose processes are killed) writes none while it is alive
/// (`ledger::alive`). That is this command's policy, not the board's rule.
fn claim_once(
    ledger: &Ledger,
    me: &InstanceId,
    id: Option<&TaskId>,
) -> (Result<Claimed>, Option<git2::Oid>, Vec<Spared>) {
    let sender = me.to_string();
    let judged = Cell::new(None);
    let chosen = RefCell::new(None);
    let deps = RefCell::new(vec![]);
    let spared = RefCell::new(vec![]);
    // Asked once per holder: in remote mode an answer may cost a fetch.
    let trying: RefCell<BTreeMap<InstanceId, Option<Ts>>> = RefCell::default();
    let o = ledger.append(&sender, |snap, now| {
        judged.set(Some(snap.tip));
        spared.borrow_mut().clear();
        let still_trying = |holder: &InstanceId| -> Option<Ts> {
            *trying
                .borrow_mut()
                .entry(holder.clone())
                .or_insert_with(|| {
                    ledger
                        .still_trying(holder, &snap.config, now)
                        .unwrap_or_else(|e| {
                            output::warn(&format!(
                                "cannot tell whether {holder} is still trying to write ({e:#}); its lease ran out, so it counts as gone"
                            ));
                            None
                        })
                })
        };
        // The rule runs on every attempt: after a lost race the task may be gone.
        let (board, id) = match id {
            Some(id) => {
                let board = snap.board_for(&EventKind::Claim { task: id.clone() }, &sender)?;
                (board, id.clone())
            }
            None => {
                // Read through the ready lists of the role, not the whole board.
                let id = snap.next_ready_sparing(me, now, &mut |task, holder| {
                    let Some(tried_at) = still_trying(holder) else {
                        return false;
                    };
                    spared.borrow_mut().push(Spared {
                        task: task.clone(),
                        holder: holder.clone(),
                        tried_at,
                    });
                    true
                })??;
                let board = snap.board_for(&EventKind::Claim { task: id.clone() }, &sender)?;
                (board, id)
            }
        };
        *chosen.borrow_mut() = Some(id.clone());
        *deps.borrow_mut() = deps_work(snap, &id)?;
        Ok(match board::check_claim(&board, &id, me, now)? {
            ClaimKind::Fresh => Draft::Write(EventKind::Claim { task: id }),
            ClaimKind::Expired { previous } => match still_trying(&previous) {
                Some(tried_at) => {
                    return Err(Refusal::StillTrying {
                        task: id,
                        holder: previous,
                        tried_at,
                        now,
                    }
                    .into())
                }
                None => Draft::Write(EventKind::Reclaim { task: id, previous }),
            },
            ClaimKind::AlreadyMine => Draft::Noop(format!("{id} is already yours ({me})")),
        })
    });
    let result = o.map(|o| {
        let id = chosen
            .into_inner()
            .expect("a successful append ran the draft");
        (o, id, deps.into_inner())
    });
    (result, judged.get(), spared.into_inner())
}

pub fn run(ctx: &Ctx, args: ClaimArgs) -> Result<Report> {
    let ledger = ctx.ledger()?;
    let me = ctx.require_identity(ledger.repo())?;
    let deadline = args.wait.map(|s| Instant::now() + Duration::from_secs(s));
    let (outcome, id, deps, spared) = loop {
        let (result, judged, spared) = claim_once(&ledger, &me, args.id.as_ref());
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
            (result, _) => {
                let (outcome, id, deps) = result?;
                break (outcome, id, deps, spared);
            }
        }
    };
    let mut report = super::outcome(outcome);
    for s in &spared {
        let _ = write!(
            report.text,
            "\npassed over {}: held by {}, whose lease ran out but who is still trying to write",
            s.task, s.holder
        );
    }
    if !spared.is_empty() {
        report.json["passed_over"] = json!(spared);
    }
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
