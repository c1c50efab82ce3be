//! `mara status`: the run at a glance: tasks by status and every instance.

use std::fmt::Write;

use anyhow::Result;
use serde_json::json;

use crate::board::{ago, InstanceStatus, TaskStatus};
use crate::context::Ctx;
use crate::ledger::now;
use crate::output::Report;

pub fn run(ctx: &Ctx) -> Result<Report> {
    let (ledger, note) = super::reader(ctx, false)?;
    let snap = ledger.snapshot()?;
    // The counts, the instances and the tasks held or in review: not every task.
    let board = snap.working_board()?;
    let now = now();
    let counts = snap.task_counts()?;
    let mut text = format!(
        "run {} at version {} ({}), lease {}s\ntasks: {counts}\n",
        snap.config.run,
        snap.seq,
        ledger.refname(),
        snap.config.claim_timeout_sec,
    );
    if let Some(role) = board.review_role() {
        let _ = writeln!(text, "review step: done tasks await a {role}'s approval");
    }
    if let Some(n) = &note {
        text.push_str(n);
        text.push('\n');
    }
    let mut instances = vec![];
    if board.instances.is_empty() {
        text.push_str("instances: none yet\n");
    } else {
        text.push_str("instances:\n");
    }
    let lease = board.lease();
    let (mut expired, mut stopped) = (vec![], vec![]);
    for i in board.instances.values() {
        let holds: Vec<&str> = board
            .held_by(&i.id)
            .into_iter()
            .map(|t| t.as_str())
            .collect();
        let reviews: Vec<&str> = board
            .ordered_tasks()
            .into_iter()
            .filter(|t| t.status == TaskStatus::Review && t.reviewer.as_ref() == Some(&i.id))
            .map(|t| t.id.as_str())
            .collect();
        let until = i.last_seen + lease;
        // An instance that said it stopped has no lease to speak of; one that did
        // not, and went silent, lost its claims when the lease ran out.
        let state = match i.status {
            InstanceStatus::Exited | InstanceStatus::Failed => {
                stopped.push(i.id.to_string());
                String::new()
            }
            _ if now > until => {
                expired.push(i.id.to_string());
                format!(", its lease ran out {} ago", ago(now - until))
            }
            _ => format!(", lease runs out in {}", ago(until - now)),
        };
        let _ = writeln!(
            text,
            "  {:<16} {:<8} last seen {} ago{state}{}{}",
            i.id.to_string(),
            i.status.to_string(),
            ago(now - i.last_seen),
            if holds.is_empty() {
                String::new()
            } else {
                format!(", holds {}", holds.join(", "))
            },
            if reviews.is_empty() {
                String::new()
            } else {
                format!(", reviews {}", reviews.join(", "))
            }
        );
        if let Some(r) = &i.reason {
            let _ = writeln!(text, "    {}", crate::board::one_line(r, 100));
        }
        if let Some(p) = &i.place {
            let _ = writeln!(text, "    branch {}  log {}", p.branch, p.log);
        }
        instances.push(json!({
            "id": i.id, "role_id": i.role_id, "instance_id": i.instance_id,
            "status": i.status, "last_seen": i.last_seen, "holds": holds,
            "reviews": reviews, "lease_until": until,
            "lease_expired": now > until && !stopped.contains(&i.id.to_string()),
            "reason": i.reason, "place": i.place,
        }));
    }
    if !expired.is_empty() {
        let _ = writeln!(
            text,
            "leases run out: {} (their tasks may be claimed by others)",
            expired.join(", ")
        );
    }
    if !stopped.is_empty() {
        let _ = writeln!(text, "stopped (exited or failed): {}", stopped.join(", "));
    }
    if let Some(r) = board.unreviewed() {
        let _ = writeln!(text, "{r}");
    }
    let stall = ledger.stall_flags(&snap, now)?;
    for line in stall.lines(now) {
        let _ = writeln!(text, "{line}");
    }
    Ok(Report::new(
        text.trim_end().to_owned(),
        json!({
            "run": snap.config.run,
            "version": snap.seq,
            "tasks": counts,
            "instances": instances,
            "leases_run_out": expired,
            "stopped": stopped,
            "review_role": board.review_role(),
            "stall": stall,
        }),
    ))
}
