//! An event's commit: its message (subject, the event as one JSON line,
//! trailers) and the commit object itself.

use anyhow::{anyhow, Context, Result};
use git2::{ObjectType, Oid};

use super::{Ledger, Objects, Staging};
use crate::board::{self, Event};
use crate::ids::{InstanceId, RunId};

/// The event stored in a commit message: the first line of the body that is JSON.
pub fn event_of_message(message: &str) -> Result<Event> {
    let line = message
        .lines()
        .skip(1)
        .find(|l| l.starts_with('{'))
        .ok_or_else(|| anyhow!("the commit message holds no event"))?;
    Event::from_json(line).context("the commit's event does not parse")
}

/// The full commit message of an event.
pub fn message_of_event(run: &RunId, event: &Event) -> String {
    let mut msg = format!(
        "{}\n\n{}\n\nMara-Run: {run}\nMara-Seq: {}\n",
        event.subject(),
        event.to_json(),
        event.seq
    );
    if let Ok(i) = event.sender.parse::<InstanceId>() {
        msg.push_str(&format!("Mara-Instance: {i}\n"));
    }
    let tasks = event.kind.tasks();
    // A plan names many tasks; its trailers would drown the message.
    if tasks.len() == 1 {
        msg.push_str(&format!("Mara-Task: {}\n", tasks[0]));
    }
    msg
}

/// A raw commit object of the run: its first parent and its event's line, read
/// without building a commit object (a log read touches every commit once).
pub(super) fn parse_raw_commit(data: &[u8]) -> Result<(Option<Oid>, &str)> {
    let text = std::str::from_utf8(data).map_err(|_| anyhow!("the commit is not UTF-8"))?;
    let (header, message) = text
        .split_once("\n\n")
        .ok_or_else(|| anyhow!("the commit has no message"))?;
    let parent = header
        .lines()
        .find_map(|l| l.strip_prefix("parent "))
        .map(Oid::from_str)
        .transpose()?;
    let line = message
        .lines()
        .skip(1)
        .find(|l| l.starts_with('{'))
        .ok_or_else(|| anyhow!("the commit message holds no event"))?;
    Ok((parent, line))
}

/// The seq of a stored event line, which starts `{"seq":N,` (the event's first
/// field), without parsing the rest.
pub(super) fn seq_of_line(line: &str) -> Result<u64> {
    line.strip_prefix("{\"seq\":")
        .and_then(|rest| rest.split(',').next())
        .and_then(|n| n.parse().ok())
        .ok_or_else(|| anyhow!("the event line does not start with its seq"))
}

impl Ledger {
    /// Writes the commit object of an event. The object is formatted here rather
    /// than through `git_commit_create`, which would read the tree and the parent
    /// back from disk only to take their ids.
    pub(super) fn commit_event(
        &self,
        stage: &Staging,
        event: &Event,
        tree: Oid,
        parent: Option<Oid>,
    ) -> Result<Oid> {
        let clean = |s: &str| board::one_line(s, 64).replace(['<', '>'], "");
        let ident = format!(
            "{} <{}> {} +0000",
            clean(&event.sender),
            clean(&self.email),
            event.ts.timestamp()
        );
        let mut raw = format!("tree {tree}\n");
        if let Some(p) = parent {
            raw.push_str(&format!("parent {p}\n"));
        }
        raw.push_str(&format!(
            "author {ident}\ncommitter {ident}\n\n{}",
            message_of_event(&self.run, event)
        ));
        stage.put(ObjectType::Commit, raw.into_bytes())
    }
}
