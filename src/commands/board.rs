//! `mara board`: the task board as a table, or the seed's JSON.

use std::fmt::Write;

use anyhow::Result;
use clap::Args;

use crate::board::{one_line, Board, TaskStatus};
use crate::context::Ctx;
use crate::output::Report;

#[derive(Args, Debug)]
pub struct BoardArgs {
    /// Fetch the run's ref from its remote first (remote mode).
    #[arg(long)]
    pub fetch: bool,
}

/// Renders the board as an aligned table. ROLE and PRIO columns appear when some
/// task has a role or a priority; a task sent back by a review says how often.
pub fn table(board: &Board) -> String {
    let tasks = board.ordered_tasks();
    let roles = tasks.iter().any(|t| t.role.is_some());
    let prios = tasks.iter().any(|t| t.priority != 0);
    let mut head = vec!["ID", "STATUS", "HOLDER", "DEPS"];
    if roles {
        head.push("ROLE");
    }
    if prios {
        head.push("PRIO");
    }
    head.push("TITLE");
    let rows: Vec<Vec<String>> = tasks
        .iter()
        .map(|t| {
            let mut status = t.status.to_string();
            if t.sent_back > 0 {
                status.push_str(&format!(" (sent back {}x)", t.sent_back));
            }
            let mut holder = t
                .claimed_by
                .as_ref()
                .map_or("-".to_owned(), ToString::to_string);
            if let (TaskStatus::Review, Some(r)) = (t.status, &t.reviewer) {
                holder.push_str(&format!(", review {r}"));
            }
            let mut r = vec![
                t.id.to_string(),
                status,
                holder,
                if t.deps.is_empty() {
                    "-".to_owned()
                } else {
                    t.deps
                        .iter()
                        .map(|d| d.as_str())
                        .collect::<Vec<_>>()
                        .join(",")
                },
            ];
            if roles {
                r.push(t.role.clone().unwrap_or_else(|| "-".to_owned()));
            }
            if prios {
                r.push(t.priority.to_string());
            }
            r.push(one_line(&t.title, 60));
            r
        })
        .collect();
    let mut w: Vec<usize> = head.iter().map(|h| h.chars().count()).collect();
    for r in &rows {
        for (i, c) in r.iter().enumerate() {
            w[i] = w[i].max(c.chars().count());
        }
    }
    let mut out = String::new();
    let line = |out: &mut String, r: &[&str]| {
        let last = r.len() - 1;
        for (i, c) in r.iter().enumerate() {
            if i == last {
                let _ = writeln!(out, "{c}");
            } else {
                let _ = write!(out, "{c:<width$}  ", width = w[i]);
            }
        }
    };
    line(&mut out, &head);
    for r in &rows {
        let cells: Vec<&str> = r.iter().map(String::as_str).collect();
        line(&mut out, &cells);
    }
    let _ = write!(
        out,
        "{} tasks: {} (run {}, version {})",
        tasks.len(),
        board.counts(),
        board.config.as_ref().map_or("?", |c| c.run.as_str()),
        board.seq.unwrap_or(0)
    );
    out
}

pub fn run(ctx: &Ctx, args: BoardArgs) -> Result<Report> {
    let (ledger, note) = super::reader(ctx, args.fetch)?;
    let now = crate::ledger::now();
    let (board, stall) = ledger.read(|s| Ok((s.full_board()?, ledger.stall_flags(s, now)?)))?;
    let mut view = board.view();
    view.stall = stall.any().then_some(&stall);
    view.synced_at = note
        .as_ref()
        .and(ledger.last_synced())
        .map(chrono::DateTime::<chrono::Utc>::from);
    if ctx.json {
        // Serialised straight from the tasks, without a JSON tree in between.
        let mut report = Report::new(String::new(), serde_json::Value::Array(vec![]));
        report.lines = true;
        report.raw_lines = vec![serde_json::to_string(&view)?];
        return Ok(report);
    }
    let mut text = table(&board);
    for line in stall.lines(now) {
        text.push_str(&format!("\n{line}"));
    }
    if let Some(n) = note {
        text.push_str(&format!("\n{n}"));
    }
    Ok(Report::new(text, serde_json::to_value(&view)?))
}
