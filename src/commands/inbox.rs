//! `mara inbox [--wait SECS]`: the messages to this instance, its role or
//! everyone since it last read, then the read cursor moves past them.
//!
//! The cursor is kept per clone, in `.git/mara/inbox/<run>/<role>_<n>` (the last
//! seq read), not on the board: an event per read would double the log of a
//! chatty team and make every read a write (in remote mode a push), and an
//! instance lives in one clone, so its clone is where its reading happens. The
//! read costs what is new: the log is walked back from the tip only to the
//! cursor ([`Ledger::event_lines_at`]).

use std::fmt::Write as _;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use clap::Args;
use serde_json::Value;

use super::post::{body, heading};
use crate::board::{Event, EventKind};
use crate::context::Ctx;
use crate::ids::{InstanceId, RunId};
use crate::ledger::Ledger;
use crate::output::{message_width, Report};

#[derive(Args, Debug)]
pub struct InboxArgs {
    /// When there is nothing new, wait up to SECS for a message.
    #[arg(long, value_name = "SECS")]
    pub wait: Option<u64>,
    /// On a terminal, show messages whole (they always are into a pipe or file).
    #[arg(long)]
    pub full: bool,
    /// Show what is new without moving the read cursor.
    #[arg(long)]
    pub peek: bool,
}

/// The cursor file of `who` in run `run`.
fn cursor_path(repo: &git2::Repository, run: &RunId, who: &InstanceId) -> PathBuf {
    crate::ledger::state_path(repo, "inbox", run).join(who.file_stem())
}

/// The last seq `who` read, if it ever read.
fn read_cursor(path: &std::path::Path) -> Option<u64> {
    std::fs::read_to_string(path).ok()?.trim().parse().ok()
}

fn write_cursor(path: &std::path::Path, seq: u64) -> Result<()> {
    let dir = path.parent().expect("the cursor has a folder");
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    // Written aside and renamed: a reader never sees half a number.
    let tmp = dir.join(format!(
        ".{}.{}",
        path.file_name()
            .and_then(|n| n.to_str())
            .unwrap_or("cursor"),
        std::process::id()
    ));
    std::fs::write(&tmp, format!("{seq}\n"))
        .with_context(|| format!("writing {}", tmp.display()))?;
    std::fs::rename(&tmp, path).with_context(|| format!("writing {}", path.display()))
}

/// Whether a message is for `me`: to me, to my role, or to everyone; not my own.
fn is_for(e: &Event, me: &InstanceId) -> bool {
    let EventKind::Message { to, .. } = &e.kind else {
        return false;
    };
    if e.sender == me.to_string() {
        return false;
    }
    match to.as_deref() {
        None => true,
        Some(to) => to == me.to_string() || to == me.role(),
    }
}

/// The messages for `me` after seq `after` up to `tip`, and the last seq read.
fn new_messages(
    ledger: &Ledger,
    me: &InstanceId,
    tip: git2::Oid,
    after: Option<u64>,
) -> Result<(Vec<Event>, Option<u64>)> {
    let since = after.map_or(0, |s| s + 1);
    let mut last = after;
    let mut out = vec![];
    for (oid, line) in ledger.event_lines_at(tip, since)? {
        let e = Event::from_json(&line)
            .with_context(|| format!("reading the event of {oid} on {}", ledger.refname()))?;
        last = Some(e.seq);
        if is_for(&e, me) {
            out.push(e);
        }
    }
    Ok((out, last))
}

/// One message for people: a heading line, then the text (indented).
pub fn show(e: &Event, width: Option<usize>) -> String {
    let EventKind::Message {
        kind,
        text,
        to,
        task,
        reply_to,
    } = &e.kind
    else {
        return String::new();
    };
    let head = heading(kind, &e.sender, to.as_deref(), task.as_ref(), *reply_to);
    let text = body(text, width);
    let mut s = format!(
        "{:>5}  {}  {head}\n",
        e.seq,
        e.ts.format("%Y-%m-%d %H:%M:%S")
    );
    for l in text.lines() {
        let _ = writeln!(s, "       {l}");
    }
    s
}

pub fn run(ctx: &Ctx, args: InboxArgs) -> Result<Report> {
    let ledger = ctx.ledger()?;
    let me = ctx.require_identity(ledger.repo())?;
    let cursor = cursor_path(ledger.repo(), ledger.run(), &me);
    let after = read_cursor(&cursor);
    // In remote mode the news is on the remote: fetch it first.
    if let Some(remote) = ledger.remote_for(&ledger.snapshot()?.config)? {
        ledger.fetch(&remote)?;
    }
    let deadline = args.wait.map(|s| Instant::now() + Duration::from_secs(s));
    let (messages, last) = loop {
        let tip = ledger.tip()?;
        let (messages, last) = new_messages(&ledger, &me, tip, after)?;
        let Some(deadline) = deadline.filter(|_| messages.is_empty()) else {
            break (messages, last);
        };
        if ledger.wait_for_change(tip, deadline)?.is_none() {
            break (messages, last);
        }
    };
    if let Some(last) = last.filter(|l| !args.peek && Some(*l) != after) {
        write_cursor(&cursor, last)?;
    }
    let width = message_width(args.full, 100);
    let mut text = String::new();
    for e in &messages {
        text.push_str(&show(e, width));
    }
    if messages.is_empty() {
        crate::output::progress("no new messages");
    }
    let mut report = Report::new(
        text,
        Value::Array(messages.iter().map(Event::to_json).collect()),
    );
    report.lines = true;
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn message(sender: &str, to: Option<&str>) -> Event {
        Event {
            seq: 1,
            ts: crate::ledger::now(),
            sender: sender.to_owned(),
            kind: EventKind::Message {
                kind: "note".into(),
                text: "hi".into(),
                to: to.map(str::to_owned),
                task: None,
                reply_to: None,
            },
        }
    }

    #[test]
    fn a_message_is_for_me_my_role_or_everyone_but_not_my_own() {
        let me: InstanceId = "implementer#2".parse().expect("an instance");
        assert!(is_for(&message("architect#1", None), &me));
        assert!(is_for(&message("architect#1", Some("implementer#2")), &me));
        assert!(is_for(&message("architect#1", Some("implementer")), &me));
        assert!(!is_for(&message("architect#1", Some("implementer#1")), &me));
        assert!(!is_for(&message("architect#1", Some("reviewer")), &me));
        assert!(!is_for(&message("implementer#2", None), &me));
        let claim = Event {
            kind: EventKind::Heartbeat,
            ..message("architect#1", None)
        };
        assert!(!is_for(&claim, &me));
    }

    #[test]
    fn the_cursor_round_trips_and_a_damaged_one_reads_as_never_read() {
        let dir = tempfile::tempdir().expect("a temporary directory");
        let p = dir.path().join("inbox").join("r").join("implementer_2");
        assert_eq!(read_cursor(&p), None);
        write_cursor(&p, 41).expect("writing the cursor");
        assert_eq!(read_cursor(&p), Some(41));
        std::fs::write(&p, "garbage").expect("damaging it");
        assert_eq!(read_cursor(&p), None);
    }
}
