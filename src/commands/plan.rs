//! `mara plan FILE`: add many tasks in one event (all or none).

use std::path::PathBuf;

use anyhow::{anyhow, Context, Result};
use clap::Args;

use crate::board::{EventKind, Invalid, NewTask};
use crate::context::Ctx;
use crate::ledger::Draft;
use crate::output::Report;

#[derive(Args, Debug)]
pub struct PlanArgs {
    /// A JSON list of tasks: `[{"id","title","deps":[],"paths":[]}, ...]`.
    pub file: PathBuf,
    /// Add nothing: list the tasks that may run at the same time (neither depends
    /// on the other) and whose `paths` overlap.
    #[arg(long)]
    pub check: bool,
    /// Refuse (exit 3, nothing added) a plan with such overlaps.
    #[arg(long)]
    pub strict: bool,
}

/// Two tasks that may run at once and reserve overlapping paths.
#[derive(serde::Serialize, Debug, Clone)]
pub struct Overlap {
    pub a: String,
    pub b: String,
    pub paths: Vec<(String, String)>,
}

/// The pairs of `tasks` not ordered by dependencies (through `known`: each task's
/// deps, of the plan and of the board) whose path globs may overlap.
pub fn overlaps(
    tasks: &[NewTask],
    known: &std::collections::BTreeMap<String, Vec<String>>,
) -> Vec<Overlap> {
    let reaches = |from: &str, to: &str| {
        let mut seen = std::collections::BTreeSet::new();
        let mut todo = vec![from.to_owned()];
        while let Some(t) = todo.pop() {
            for d in known.get(&t).into_iter().flatten() {
                if d == to {
                    return true;
                }
                if seen.insert(d.clone()) {
                    todo.push(d.clone());
                }
            }
        }
        false
    };
    let mut out = vec![];
    for (i, a) in tasks.iter().enumerate() {
        for b in &tasks[i + 1..] {
            let (ia, ib) = (a.id.to_string(), b.id.to_string());
            if reaches(&ia, &ib) || reaches(&ib, &ia) {
                continue;
            }
            let paths: Vec<(String, String)> = a
                .paths
                .iter()
                .flat_map(|x| b.paths.iter().map(move |y| (x.clone(), y.clone())))
                .filter(|(x, y)| crate::glob::may_overlap(x, y))
                .collect();
            if !paths.is_empty() {
                out.push(Overlap {
                    a: ia,
                    b: ib,
                    paths,
                });
            }
        }
    }
    out
}

fn overlap_text(o: &[Overlap]) -> String {
    let mut s = String::new();
    for x in o {
        let globs: Vec<String> = x.paths.iter().map(|(p, q)| format!("{p} ~ {q}")).collect();
        s.push_str(&format!(
            "overlap: {} and {} may run at once and both touch {}\n",
            x.a,
            x.b,
            globs.join(", ")
        ));
    }
    s
}

/// Reads a plan file; errors name the file and the task (or the line and column
/// when the JSON itself is broken).
pub fn read_plan(path: &std::path::Path) -> Result<Vec<NewTask>> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("reading plan {}", path.display()))?;
    let shape = "a plan is a JSON list of {\"id\", \"title\", \"deps\", \"paths\"}";
    let items: Vec<serde_json::Value> = serde_json::from_str(&text)
        .map_err(|e| anyhow!("plan {}: {e}; {shape}", path.display()))?;
    if items.is_empty() {
        anyhow::bail!("plan {}: the plan has no tasks; {shape}", path.display());
    }
    items
        .into_iter()
        .enumerate()
        .map(|(i, item)| {
            let name = item
                .get("id")
                .and_then(|v| v.as_str())
                .map_or(format!("task #{}", i + 1), |id| {
                    format!("task #{} ({})", i + 1, crate::board::one_line(id, 64))
                });
            crate::config::from_value(item, &format!("plan {}: {name}", path.display()))
        })
        .collect()
}

pub fn run(ctx: &Ctx, args: PlanArgs) -> Result<Report> {
    let tasks = read_plan(&args.file)?;
    let ledger = ctx.ledger()?;
    let board = ledger.read(|s| s.full_board())?;
    let mut known: std::collections::BTreeMap<String, Vec<String>> = board
        .tasks
        .values()
        .map(|t| {
            (
                t.id.to_string(),
                t.deps.iter().map(|d| d.to_string()).collect(),
            )
        })
        .collect();
    for t in &tasks {
        known.insert(
            t.id.to_string(),
            t.deps.iter().map(|d| d.to_string()).collect(),
        );
    }
    let found = overlaps(&tasks, &known);
    let text = overlap_text(&found);
    if args.check {
        return Ok(Report::new(
            if found.is_empty() {
                "no overlapping paths between tasks that may run at once".to_owned()
            } else {
                text.trim_end().to_owned()
            },
            serde_json::json!({ "overlaps": found }),
        ));
    }
    if args.strict && !found.is_empty() {
        return Err(
            crate::error::CommandError::new(crate::board::Refusal::Overlaps { pairs: found.len() })
                .with_report(Report::new(
                    text.trim_end().to_owned(),
                    serde_json::json!({ "overlaps": found }),
                ))
                .into(),
        );
    }
    let sender = ctx.operator(ledger.repo())?;
    let o = ledger
        .append(&sender, |_, _| {
            Ok(Draft::Write(EventKind::Plan {
                tasks: tasks.clone(),
            }))
        })
        .map_err(|e| match e.downcast::<Invalid>() {
            Ok(Invalid(msg)) => {
                anyhow::Error::new(Invalid(format!("plan {}: {msg}", args.file.display())))
            }
            Err(e) => e,
        })?;
    let report = super::outcome(o);
    if found.is_empty() {
        return Ok(report);
    }
    crate::output::warn(text.trim_end());
    Ok(report)
}
