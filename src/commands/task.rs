//! `mara task add`: put one task on the board.

use anyhow::Result;
use clap::{Args, Subcommand};

use crate::board::{EventKind, NewTask};
use crate::context::Ctx;
use crate::ids::TaskId;
use crate::ledger::Draft;
use crate::output::Report;

#[derive(Args, Debug)]
pub struct TaskArgs {
    #[command(subcommand)]
    pub cmd: TaskCmd,
}

#[derive(Subcommand, Debug)]
pub enum TaskCmd {
    /// Add a task.
    Add(AddArgs),
}

#[derive(Args, Debug)]
pub struct AddArgs {
    /// Task id: letters, digits, '.', '_' and '-'.
    pub id: TaskId,
    /// What the task is about.
    pub title: String,
    /// Tasks that must be done before this one can be claimed.
    #[arg(long, value_delimiter = ',', value_name = "A,B")]
    pub deps: Vec<TaskId>,
    /// Files the task reserves (glob); repeat for more.
    #[arg(long = "paths", value_name = "GLOB")]
    pub paths: Vec<String>,
}

pub fn run(ctx: &Ctx, args: TaskArgs) -> Result<Report> {
    let TaskCmd::Add(a) = args.cmd;
    let ledger = ctx.ledger()?;
    let sender = ctx.operator(ledger.repo())?;
    let task = NewTask {
        body: None,
        role: None,
        priority: 0,
        id: a.id,
        title: a.title,
        deps: a.deps,
        paths: a.paths,
        status: None,
        claimed_by: None,
    };
    let o = ledger.append(&sender, |_, _| {
        Ok(Draft::Write(EventKind::TaskAdd { task: task.clone() }))
    })?;
    Ok(super::outcome(o))
}
