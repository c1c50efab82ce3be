//! `mara task add|edit|cancel`: put a task on the board, correct it while it is
//! open, take it off the plan.

use std::io::Read;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
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
    /// Change an open task (any field), or add paths to the task you hold.
    Edit(EditArgs),
    /// Take a task off the plan (logged with who and why).
    Cancel(CancelArgs),
}

/// A task's body: given inline or read from a file (`-` for stdin).
#[derive(Args, Debug)]
pub struct BodyArgs {
    /// What to do and how to tell it is done (markdown), read from FILE; `-` reads
    /// stdin.
    #[arg(long = "body-file", value_name = "FILE", conflicts_with = "body")]
    pub body_file: Option<PathBuf>,
    /// The body as text.
    #[arg(long, value_name = "TEXT")]
    pub body: Option<String>,
}

impl BodyArgs {
    /// The body given, if any.
    fn read(&self) -> Result<Option<String>> {
        if let Some(b) = &self.body {
            return Ok(Some(b.clone()));
        }
        let Some(path) = &self.body_file else {
            return Ok(None);
        };
        if path == Path::new("-") {
            let mut s = String::new();
            std::io::stdin()
                .read_to_string(&mut s)
                .context("reading the body from stdin")?;
            return Ok(Some(s));
        }
        std::fs::read_to_string(path)
            .with_context(|| format!("reading the body from {}", path.display()))
            .map(Some)
    }
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
    #[command(flatten)]
    pub body: BodyArgs,
    #[command(flatten)]
    pub who: WhoArgs,
}

/// Who may take a task, and how soon: the same flags for `add` and `edit`.
#[derive(Args, Debug)]
pub struct WhoArgs {
    /// Only instances of this role may claim it (e.g. implementer).
    #[arg(long, value_name = "ROLE")]
    pub role: Option<String>,
    /// Higher is taken first by `claim --next` (default 0; may be negative).
    #[arg(long, value_name = "N", allow_negative_numbers = true)]
    pub priority: Option<i64>,
}

#[derive(Args, Debug)]
pub struct EditArgs {
    /// The task to change.
    pub id: TaskId,
    /// A new title.
    #[arg(long, value_name = "TEXT")]
    pub title: Option<String>,
    #[command(flatten)]
    pub body: BodyArgs,
    /// Replace the task's path globs; repeat for more.
    #[arg(long = "paths", value_name = "GLOB")]
    pub paths: Vec<String>,
    /// Add a path glob (the only change the holder of a claimed task may make).
    #[arg(long = "add-path", value_name = "GLOB")]
    pub add_paths: Vec<String>,
    /// Replace the task's deps.
    #[arg(
        long,
        value_delimiter = ',',
        value_name = "A,B",
        conflicts_with = "no_deps"
    )]
    pub deps: Option<Vec<TaskId>>,
    /// Remove every dep.
    #[arg(long = "no-deps")]
    pub no_deps: bool,
    #[command(flatten)]
    pub who: WhoArgs,
}

#[derive(Args, Debug)]
pub struct CancelArgs {
    /// The task to take off the plan.
    pub id: TaskId,
    /// Why, for the log and `mara show`.
    #[arg(long, value_name = "TEXT")]
    pub reason: Option<String>,
    /// Also take it out of its dependents' deps (otherwise they refuse the cancel).
    #[arg(long = "drop-deps")]
    pub drop_deps: bool,
}

pub fn run(ctx: &Ctx, args: TaskArgs) -> Result<Report> {
    match args.cmd {
        TaskCmd::Add(a) => add(ctx, a),
        TaskCmd::Edit(a) => edit(ctx, a),
        TaskCmd::Cancel(a) => cancel(ctx, a),
    }
}

/// Writes one event as the operator (the instance if one is set: the holder's
/// `--add-path` must come from the holder).
fn write(ctx: &Ctx, kind: EventKind) -> Result<Report> {
    let ledger = ctx.ledger()?;
    let sender = ctx.operator(ledger.repo())?;
    let o = ledger.append(&sender, |_, _| Ok(Draft::Write(kind.clone())))?;
    Ok(super::outcome(o))
}

fn add(ctx: &Ctx, a: AddArgs) -> Result<Report> {
    let task = NewTask {
        body: a.body.read()?,
        role: a.who.role,
        priority: a.who.priority.unwrap_or(0),
        id: a.id,
        title: a.title,
        deps: a.deps,
        paths: a.paths,
        resolves: None,
        status: None,
        claimed_by: None,
    };
    write(ctx, EventKind::TaskAdd { task })
}

fn edit(ctx: &Ctx, a: EditArgs) -> Result<Report> {
    let deps = if a.no_deps { Some(vec![]) } else { a.deps };
    write(
        ctx,
        EventKind::TaskEdit {
            task: a.id,
            title: a.title,
            body: a.body.read()?,
            paths: (!a.paths.is_empty()).then_some(a.paths),
            add_paths: a.add_paths,
            deps,
            role: a.who.role,
            priority: a.who.priority,
            resolves: None,
        },
    )
}

fn cancel(ctx: &Ctx, a: CancelArgs) -> Result<Report> {
    write(
        ctx,
        EventKind::TaskCancel {
            task: a.id,
            reason: a.reason,
            drop_deps: a.drop_deps,
        },
    )
}
