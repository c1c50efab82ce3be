//! `mara post TYPE TEXT [--to WHO] [--task ID] [--reply-to SEQ]`: write to the
//! coordination channel.

use anyhow::{anyhow, Result};
use clap::Args;

use crate::board::{check_message_type, one_line, EventKind};
use crate::context::Ctx;
use crate::ids::TaskId;
use crate::ledger::{Draft, Outcome};
use crate::output::{message_width, Report};

#[derive(Args, Debug)]
pub struct PostArgs {
    /// decision, question, answer, note, or another lower-case word.
    #[arg(value_name = "TYPE")]
    pub kind: String,
    /// The message.
    pub text: String,
    /// Who it is for: an instance (implementer#2) or a role (reviewer); everyone
    /// when left out.
    #[arg(long, value_name = "WHO")]
    pub to: Option<String>,
    /// The task it is about (it joins the task's thread).
    #[arg(long, value_name = "ID")]
    pub task: Option<TaskId>,
    /// The seq of the message it answers (see `mara inbox`, `mara log`).
    #[arg(long, value_name = "SEQ")]
    pub reply_to: Option<u64>,
    /// On a terminal, echo the message whole (it always is into a pipe or file).
    #[arg(long)]
    pub full: bool,
}

/// The head of a message for people: `question by implementer#1 to implementer#2
/// on T7 (re 40)`.
pub fn heading(
    kind: &str,
    sender: &str,
    to: Option<&str>,
    task: Option<&TaskId>,
    reply_to: Option<u64>,
) -> String {
    let mut s = format!("{} by {}", one_line(kind, 32), one_line(sender, 64));
    if let Some(to) = to {
        s.push_str(&format!(" to {}", one_line(to, 64)));
    }
    if let Some(t) = task {
        s.push_str(&format!(" on {t}"));
    }
    if let Some(r) = reply_to {
        s.push_str(&format!(" (re {r})"));
    }
    s
}

/// A message's text as shown: whole, or cut to `width` characters on one line.
pub fn body(text: &str, width: Option<usize>) -> String {
    match width {
        Some(w) => one_line(text, w),
        None => text.to_owned(),
    }
}

pub fn run(ctx: &Ctx, args: PostArgs) -> Result<Report> {
    check_message_type(&args.kind).map_err(|e| anyhow!(e))?;
    let ledger = ctx.ledger()?;
    let me = ctx.require_identity(ledger.repo())?;
    let o = ledger.append(&me.to_string(), |_, _| {
        Ok(Draft::Write(EventKind::Message {
            to: args.to.clone(),
            task: args.task.clone(),
            reply_to: args.reply_to,
            kind: args.kind.clone(),
            text: args.text.clone(),
        }))
    })?;
    let Outcome::Written(a) = o else {
        return Ok(super::outcome(o));
    };
    let mut report = super::written(&a);
    let head = heading(
        &args.kind,
        &a.event.sender,
        args.to.as_deref(),
        args.task.as_ref(),
        args.reply_to,
    );
    // The seq first: it is what `--reply-to` takes.
    report.text = format!(
        "{} {head}: {}",
        a.event.seq,
        body(&args.text, message_width(args.full, 72))
    );
    Ok(report)
}
