//! `mara board`: the task board as a table, or the seed's JSON.

use std::fmt::Write;

use anyhow::Result;
use clap::Args;

use crate::board::{one_line, Board};
use crate::context::Ctx;
use crate::output::Report;

#[derive(Args, Debug)]
pub struct BoardArgs {
    /// Fetch the run's ref from its remote first (remote mode).
    #[arg(long)]
    pub fetch: bool,
}

/// Renders the board as an aligned table.
pub fn table(board: &Board) -> String {
    let tasks = board.ordered_tasks();
    let rows: Vec<[String; 5]> = tasks
        .iter()
        .map(|t| {
            [
                t.id.to_string(),
                t.status.to_string(),
                t.claimed_by
                    .as_ref()
                    .map_or("-".to_owned(), ToString::to_string),
                if t.deps.is_empty() {
                    "-".to_owned()
                } else {
                    t.deps
                        .iter()
                        .map(|d| d.as_str())
                        .collect::<Vec<_>>()
                        .join(",")
                },
                one_line(&t.title, 60),
            ]
        })
        .collect();
    let head = ["ID", "STATUS", "HOLDER", "DEPS", "TITLE"];
    let mut w = head.map(|h| h.chars().count());
    for r in &rows {
        for (i, c) in r.iter().enumerate() {
            w[i] = w[i].max(c.chars().count());
        }
    }
    let mut out = String::new();
    let line = |out: &mut String, r: [&str; 5]| {
        let _ = writeln!(
            out,
            "{:<w0$}  {:<w1$}  {:<w2$}  {:<w3$}  {}",
            r[0],
            r[1],
            r[2],
            r[3],
            r[4],
            w0 = w[0],
            w1 = w[1],
            w2 = w[2],
            w3 = w[3]
        );
    };
    line(&mut out, head);
    for r in &rows {
        line(&mut out, [&r[0], &r[1], &r[2], &r[3], &r[4]]);
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
    let board = ledger.read(|s| s.full_board())?;
    let synced_at = note
        .as_ref()
        .and(ledger.last_synced())
        .map(chrono::DateTime::<chrono::Utc>::from);
    if ctx.json {
        // Serialised straight from the tasks, without a JSON tree in between: a
        // 10,000-task board prints in about the time it takes to read it.
        #[derive(serde::Serialize)]
        struct Shown<'a> {
            run: Option<&'a str>,
            version: Option<u64>,
            tasks: Vec<&'a crate::board::Task>,
            #[serde(skip_serializing_if = "Option::is_none")]
            synced_at: Option<chrono::DateTime<chrono::Utc>>,
        }
        let shown = Shown {
            run: board.config.as_ref().map(|c| c.run.as_str()),
            version: board.seq,
            tasks: board.ordered_tasks(),
            synced_at,
        };
        let mut report = Report::new(String::new(), serde_json::Value::Array(vec![]));
        report.lines = true;
        report.raw_lines = vec![serde_json::to_string(&shown)?];
        return Ok(report);
    }
    let mut text = table(&board);
    let mut json = board.to_json();
    if let Some(n) = note {
        text.push_str(&format!("\n{n}"));
        if let Some(t) = synced_at {
            json["synced_at"] = serde_json::json!(t);
        }
    }
    Ok(Report::new(text, json))
}
