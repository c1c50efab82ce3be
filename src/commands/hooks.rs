//! `mara hooks install|uninstall` and `mara hook <name>`, what the hook scripts call.

use std::path::PathBuf;

use anyhow::{bail, Result};
use clap::{Args, Subcommand};
use serde_json::json;

use crate::context::Ctx;
use crate::hooks;
use crate::ledger::{Draft, Ledger};
use crate::output::Report;

#[derive(Args, Debug)]
pub struct HooksArgs {
    #[command(subcommand)]
    pub cmd: HooksCmd,
}

#[derive(Subcommand, Debug)]
pub enum HooksCmd {
    /// Install commit-msg, pre-commit and post-commit (core.hooksPath or .git/hooks),
    /// keeping hooks you already have.
    Install,
    /// Remove mara's lines from the hooks again.
    Uninstall,
}

#[derive(Args, Debug)]
pub struct HookArgs {
    /// commit-msg, pre-commit or post-commit.
    pub name: String,
    /// What git passed to the hook.
    pub args: Vec<PathBuf>,
}

pub fn run_hooks(ctx: &Ctx, args: HooksArgs) -> Result<Report> {
    let repo = ctx.repo()?;
    let changes = match args.cmd {
        HooksCmd::Install => hooks::install(&repo)?,
        HooksCmd::Uninstall => hooks::uninstall(&repo)?,
    };
    let dir = hooks::hooks_dir(&repo)?;
    let mut text = String::new();
    for c in &changes {
        text.push_str(&format!(
            "{:<12} {} ({})\n",
            c.name,
            c.action,
            c.path.display()
        ));
    }
    if changes.is_empty() {
        text.push_str(&format!("no mara hooks in {}\n", dir.display()));
    }
    Ok(Report::new(
        text.trim_end().to_owned(),
        json!({
            "dir": dir,
            "hooks": changes.iter().map(|c| json!({"name": c.name, "path": c.path, "action": c.action})).collect::<Vec<_>>(),
        }),
    ))
}

/// The run and identity a hook acts for, or `None` outside a mara run: then the
/// hook does nothing and says nothing.
fn in_run(ctx: &Ctx) -> Option<(Ledger, crate::ids::InstanceId)> {
    let repo = ctx.repo().ok()?;
    let me = ctx.identity(&repo).ok()??;
    let run = ctx.run_id(&repo).ok()?;
    let ledger = Ledger::open(repo, run).ok()?;
    Some((ledger, me))
}

pub fn run_hook(ctx: &Ctx, args: HookArgs) -> Result<Report> {
    let quiet = || {
        Ok(Report::new(
            "",
            json!({ "hook": args.name, "acted": false }),
        ))
    };
    if !hooks::HOOKS.iter().any(|(n, _)| *n == args.name) {
        bail!(
            "there is no mara hook {:?}; the hooks are commit-msg, pre-commit and post-commit",
            args.name
        );
    }
    let Some((ledger, me)) = in_run(ctx) else {
        return quiet();
    };
    // The hooks need the claimed tasks (this instance's, and the paths others
    // reserved): the work in progress, not every task.
    let board = ledger.read(|s| s.working_board())?;
    let held = board.held_by(&me);
    match args.name.as_str() {
        "commit-msg" => {
            let Some(file) = args.args.first() else {
                bail!("commit-msg needs the message file git passes to the hook");
            };
            hooks::add_trailers(ledger.repo(), file, &me, &held)?;
        }
        "pre-commit" => {
            if ctx_allows_reserved() {
                return quiet();
            }
            if let Some(r) = hooks::reserved_staged(ledger.repo(), &board, &me)? {
                bail!(
                    "{} is reserved by {} (held by {}, paths {}); leave it to {}, or commit anyway with MARA_ALLOW_RESERVED=1 git commit ...",
                    r.file,
                    r.task,
                    r.holder,
                    r.glob,
                    r.holder
                );
            }
        }
        "post-commit" => {
            let head = ledger.repo().head()?.peel_to_commit()?.id();
            let kind = hooks::progress_event(head, &held);
            ledger.append(&me.to_string(), |_, _| Ok(Draft::Write(kind.clone())))?;
        }
        _ => unreachable!("checked against HOOKS"),
    }
    Ok(Report::new("", json!({ "hook": args.name, "acted": true })))
}

fn ctx_allows_reserved() -> bool {
    crate::context::allow_reserved()
}
