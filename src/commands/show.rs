//! `mara show ID`: everything about one task, for whoever is about to work on it.
//!
//! Title and body whole, role, priority, status, paths; the holder and its lease;
//! deps with their status, notes, commits and artifacts; the review state; the
//! task's thread (every event about it, messages whole); and the code commits that
//! name it, with every branch holding them. Nothing is cut: an agent reads this
//! before it starts, and the part that matters may be at the end.

use std::fmt::Write;

use anyhow::{bail, Context, Result};
use clap::Args;
use serde_json::{json, Value};

use crate::board::{ago, one_line, Board, Event, EventKind, Task, TaskStatus, Ts, Verdict};
use crate::context::Ctx;
use crate::ids::{InstanceId, TaskId};
use crate::ledger::now;
use crate::output::Report;

#[derive(Args, Debug)]
pub struct ShowArgs {
    /// The task to show.
    pub id: TaskId,
    /// Fetch the run's ref from its remote first (remote mode).
    #[arg(long)]
    pub fetch: bool,
}

/// One flat line of free text, never cut.
fn flat(s: &str) -> String {
    one_line(s, usize::MAX)
}

/// An instance's lease as of `now`: when it was last seen and when the lease runs
/// out (or ran out).
fn lease(board: &Board, who: &InstanceId, now: Ts) -> (String, Value) {
    let Some(i) = board.instances.get(who) else {
        return (
            format!("{who} (never seen)"),
            json!({ "id": who, "last_seen": null, "lease_until": null, "expired": null }),
        );
    };
    let until = i.last_seen + board.lease();
    let expired = now > until;
    let text = format!(
        "{who}, last seen {} ago, lease {} {}",
        ago(now - i.last_seen),
        if expired { "ran out" } else { "runs out in" },
        if expired {
            format!("{} ago", ago(now - until))
        } else {
            ago(until - now)
        }
    );
    (
        text,
        json!({
            "id": who, "status": i.status, "last_seen": i.last_seen,
            "lease_until": until, "expired": expired,
        }),
    )
}

/// Where a finished task's work is: commit, branch, artifact, note.
fn work_of(t: &Task) -> Vec<String> {
    let mut parts = vec![];
    if let Some(c) = &t.commit {
        let short: String = c.chars().take(10).collect();
        match &t.branch {
            Some(b) => parts.push(format!("commit {short} on {}", flat(b))),
            None => parts.push(format!("commit {short}")),
        }
    } else if let Some(b) = &t.branch {
        parts.push(format!("branch {}", flat(b)));
    }
    if let Some(a) = &t.artifact {
        parts.push(format!("artifact {}", flat(a)));
    }
    if let Some(n) = &t.note {
        parts.push(format!("note: {}", flat(n)));
    }
    parts
}

/// An event of the task's thread: one headline, and its free text whole.
fn thread_entry(e: &Event) -> (String, Option<String>) {
    let by = flat(&e.sender);
    let (head, text) = match &e.kind {
        EventKind::TaskAdd { task } => (format!("added by {by}: {}", flat(&task.title)), None),
        EventKind::Plan { .. } => (format!("planned by {by}"), None),
        EventKind::Release { reason, .. } => (e.subject(), reason.clone()),
        EventKind::Done {
            note,
            commit,
            branch,
            ..
        } => {
            let mut h = e.subject();
            if let Some(c) = commit {
                let short: String = c.chars().take(10).collect();
                let _ = write!(h, ", commit {short}");
            }
            if let Some(b) = branch {
                let _ = write!(h, " on {}", flat(b));
            }
            (h, note.clone())
        }
        EventKind::TaskEdit { .. } => {
            // What changed, from the stored payload: every field but the task (a
            // body is named, and read whole in the task's body above).
            let j = e.to_json();
            let what: Vec<String> = j["payload"]
                .as_object()
                .into_iter()
                .flatten()
                .filter(|(k, _)| *k != "task")
                .map(|(k, v)| match (k.as_str(), v.as_str()) {
                    ("body", _) => "body".to_owned(),
                    (_, Some(text)) => format!("{k} {:?}", flat(text)),
                    _ => format!("{k} {v}"),
                })
                .collect();
            (format!("{}: {}", e.subject(), what.join("; ")), None)
        }
        EventKind::TaskCancel {
            reason, drop_deps, ..
        } => (
            format!(
                "{}{}",
                e.subject(),
                if *drop_deps {
                    " (dropped from its dependents' deps)"
                } else {
                    ""
                }
            ),
            reason.clone(),
        ),
        EventKind::Review { note, .. } => (e.subject(), note.clone()),
        EventKind::Message {
            kind,
            text,
            to,
            reply_to,
            ..
        } => {
            let mut h = format!("{kind} by {by}");
            if let Some(to) = to {
                let _ = write!(h, " to {}", flat(to));
            }
            if let Some(r) = reply_to {
                let _ = write!(h, ", in reply to {r}");
            }
            (h, Some(text.clone()))
        }
        _ => (e.subject(), None),
    };
    (head, text)
}

/// Indents every line of `text` by `pad`.
fn indented(text: &str, pad: &str) -> String {
    let mut out = String::new();
    for l in text.trim_end().lines() {
        let _ = writeln!(out, "{pad}{l}");
    }
    out
}

pub fn run(ctx: &Ctx, args: ShowArgs) -> Result<Report> {
    let (ledger, note) = super::reader(ctx, args.fetch)?;
    if let Some(n) = &note {
        crate::output::progress(n);
    }
    let board = ledger.read(|s| s.full_board())?;
    let Some(t) = board.tasks.get(&args.id) else {
        bail!("no task {} on this board; see `mara board`", args.id);
    };
    let now = now();
    let mut text = String::new();
    let _ = writeln!(text, "{}  {}", t.id, flat(&t.title));

    // Where it stands.
    let mut status = format!("status: {}", t.status);
    let mut holder_json = Value::Null;
    let mut reviewer_json = Value::Null;
    match t.status {
        TaskStatus::Claimed => {
            if let Some(h) = &t.claimed_by {
                let (s, j) = lease(&board, h, now);
                let since = t.claimed_at.map_or(String::new(), |c| {
                    format!(" (claimed {} ago)", ago(now - c))
                });
                let _ = write!(status, ", held by {s}{since}");
                holder_json = j;
            }
        }
        TaskStatus::Review => {
            let by = t
                .claimed_by
                .as_ref()
                .map_or(String::new(), |h| format!(" (done by {h})"));
            let _ = write!(status, ", awaiting review{by}");
            if let Some(r) = &t.reviewer {
                let (s, j) = lease(&board, r, now);
                let _ = write!(status, "; review held by {s}");
                reviewer_json = j;
            }
        }
        TaskStatus::Done => {
            if let Some(h) = &t.claimed_by {
                let _ = write!(status, " by {h}");
            }
            if let Some(at) = t.done_at {
                let _ = write!(status, " at {}", at.format("%Y-%m-%d %H:%M:%S"));
            }
            if let Some(r) = &t.reviewer {
                let _ = write!(status, ", approved by {r}");
            }
        }
        TaskStatus::Open => {
            if let (Some(first), Some(at)) = (&t.rework_by, t.reopened_at) {
                let until = at + board.lease();
                if now < until {
                    let _ = write!(
                        status,
                        ", sent back to {first}, who has the first claim for another {}",
                        ago(until - now)
                    );
                } else {
                    let _ = write!(status, ", sent back (anyone of its role may take it now)");
                }
            }
        }
        TaskStatus::Cancelled => {}
    }
    let _ = writeln!(text, "{status}");
    if t.sent_back > 0 {
        let _ = writeln!(
            text,
            "sent back: {} time(s){}",
            t.sent_back,
            t.reviewer
                .as_ref()
                .map_or(String::new(), |r| format!(", last reviewer {r}"))
        );
    }
    let _ = writeln!(
        text,
        "role: {}   priority: {}",
        t.role.as_deref().unwrap_or("any"),
        t.priority
    );
    if !t.paths.is_empty() {
        let _ = writeln!(text, "paths: {}", t.paths.join("  "));
    }
    if let Some(r) = &t.resolves {
        let _ = writeln!(
            text,
            "resolves: the conflict on {} (merging {} into {})",
            flat(&r.branch),
            flat(&r.theirs),
            flat(&r.ours)
        );
    }
    let work = work_of(t);
    if !work.is_empty() {
        let _ = writeln!(text, "work: {}", work.join("; "));
    }

    // Deps, and what they delivered.
    let mut deps_json = vec![];
    if !t.deps.is_empty() {
        text.push_str("deps:\n");
    }
    for d in &t.deps {
        match board.tasks.get(d) {
            Some(dt) => {
                let work = work_of(dt);
                let _ = writeln!(
                    text,
                    "  {}  {:<9} {}{}",
                    d,
                    dt.status.to_string(),
                    flat(&dt.title),
                    if work.is_empty() {
                        String::new()
                    } else {
                        format!("\n      {}", work.join("; "))
                    }
                );
                deps_json.push(json!({
                    "id": d, "title": dt.title, "status": dt.status,
                    "claimed_by": dt.claimed_by, "commit": dt.commit, "branch": dt.branch,
                    "note": dt.note, "artifact": dt.artifact,
                }));
            }
            None => {
                let _ = writeln!(text, "  {d}  (not on the board)");
                deps_json.push(json!({ "id": d, "status": null }));
            }
        }
    }
    let dependents: Vec<&TaskId> = board
        .ordered_tasks()
        .into_iter()
        .filter(|x| x.deps.contains(&t.id))
        .map(|x| &x.id)
        .collect();
    if !dependents.is_empty() {
        let d: Vec<&str> = dependents.iter().map(|d| d.as_str()).collect();
        let _ = writeln!(text, "needed by: {}", d.join(", "));
    }
    let artifacts: Vec<&crate::board::Artifact> = board
        .artifacts
        .values()
        .flatten()
        .filter(|a| a.task.as_ref() == Some(&t.id))
        .collect();

    match t.body.as_deref().filter(|b| !b.trim().is_empty()) {
        Some(body) => {
            text.push_str("\nbody:\n");
            text.push_str(&indented(body, "  "));
        }
        None => text.push_str("\nbody: (none)\n"),
    }

    // The thread: every event about the task, oldest first.
    let mut thread_json = vec![];
    text.push_str("\nthread:\n");
    // Nothing is about the task before the event that added it: the read starts
    // there, so an old run's early history is not read for a new task.
    for (oid, line) in ledger.event_lines(t.added_seq)? {
        // Most events are not about this task: a cheap look before parsing.
        if !line.contains(t.id.as_str()) {
            continue;
        }
        let e = Event::from_json(&line)
            .with_context(|| format!("reading the event of {oid} on {}", ledger.refname()))?;
        if !e.kind.tasks().contains(&&t.id) {
            continue;
        }
        let (head, body) = thread_entry(&e);
        let _ = writeln!(
            text,
            "  {:>5}  {}  {}",
            e.seq,
            e.ts.format("%Y-%m-%d %H:%M:%S"),
            head
        );
        if let Some(b) = body {
            text.push_str(&indented(&b, "         "));
        }
        thread_json.push(e.to_json());
    }

    let commits = super::log::commits_naming(ledger.repo(), &t.id)?;
    if !commits.is_empty() {
        let _ = writeln!(
            text,
            "\ncommits naming {} (Mara-Task trailer, local branches):",
            t.id
        );
        text.push_str(&super::log::commit_lines(&commits));
    }
    if let Some(n) = &note {
        let _ = write!(text, "\n{n}");
    }

    let reviews: Vec<&Value> = thread_json
        .iter()
        .filter(|e| e["type"] == "verdict")
        .collect();
    let last_verdict = reviews
        .last()
        .and_then(|e| serde_json::from_value::<Verdict>(e["payload"]["verdict"].clone()).ok());
    let json = json!({
        "task": t,
        "holder": holder_json,
        "review": {
            "role": board.review_role(),
            "reviewer": t.reviewer,
            "reviewer_lease": reviewer_json,
            "sent_back": t.sent_back,
            "last_verdict": last_verdict,
            "rework_by": t.rework_by,
        },
        "deps": deps_json,
        "needed_by": dependents,
        "artifacts": artifacts,
        "thread": thread_json,
        "commits": commits,
    });
    Ok(Report::new(text.trim_end().to_owned(), json))
}
