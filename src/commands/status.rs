//! `mara status`: the run at a glance: tasks by status and every instance.

use std::fmt::Write;

use anyhow::Result;
use serde_json::json;

use crate::board::ago;
use crate::context::Ctx;
use crate::ledger::now;
use crate::output::Report;

pub fn run(ctx: &Ctx) -> Result<Report> {
    let (ledger, note) = super::reader(ctx, false)?;
    let snap = ledger.snapshot()?;
    let board = snap.full_board()?;
    let now = now();
    let counts = board.counts();
    let mut text = format!(
        "run {} at version {} ({}), lease {}s\ntasks: {counts}\n",
        snap.config.run,
        snap.seq,
        ledger.refname(),
        snap.config.claim_timeout_sec,
    );
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
    for i in board.instances.values() {
        let holds: Vec<&str> = board
            .held_by(&i.id)
            .into_iter()
            .map(|t| t.as_str())
            .collect();
        let _ = writeln!(
            text,
            "  {:<16} {:<8} last seen {} ago{}",
            i.id.to_string(),
            i.status.to_string(),
            ago(now - i.last_seen),
            if holds.is_empty() {
                String::new()
            } else {
                format!(", holds {}", holds.join(", "))
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
            "reason": i.reason, "place": i.place,
        }));
    }
    Ok(Report::new(
        text.trim_end().to_owned(),
        json!({
            "run": snap.config.run,
            "version": snap.seq,
            "tasks": counts,
            "instances": instances,
        }),
    ))
}
