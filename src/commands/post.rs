//! `mara post TYPE TEXT`: write to the coordination channel.

use anyhow::{anyhow, Result};
use clap::Args;

use crate::board::{check_message_type, EventKind};
use crate::context::Ctx;
use crate::ledger::Draft;
use crate::output::Report;

#[derive(Args, Debug)]
pub struct PostArgs {
    /// decision, question, answer, note, or another lower-case word.
    #[arg(value_name = "TYPE")]
    pub kind: String,
    /// The message.
    pub text: String,
}

pub fn run(ctx: &Ctx, args: PostArgs) -> Result<Report> {
    check_message_type(&args.kind).map_err(|e| anyhow!(e))?;
    let ledger = ctx.ledger()?;
    let me = ctx.require_identity(ledger.repo())?;
    let o = ledger.append(&me.to_string(), |_, _| {
        Ok(Draft::Write(EventKind::Message {
            to: None,
            task: None,
            reply_to: None,
            kind: args.kind.clone(),
            text: args.text.clone(),
        }))
    })?;
    Ok(super::outcome(o))
}
