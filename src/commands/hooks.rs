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
    Install {
        /// Also install pre-push, which refuses to push commits made under a lost
        /// claim (fenced: `mara log --type fenced`).
        #[arg(long)]
        pre_push: bool,
    },
    /// Remove mara's lines from the hooks again.
    Uninstall,
}

#[derive(Args, Debug)]
pub struct HookArgs {
    /// commit-msg, pre-commit, post-commit or pre-push.
    pub name: String,
    /// What git passed to the hook.
    pub args: Vec<PathBuf>,
}

pub fn run_hooks(ctx: &Ctx, args: HooksArgs) -> Result<Report> {
    let repo = ctx.repo()?;
    let changes = match args.cmd {
        HooksCmd::Install { pre_push } => hooks::install(&repo, pre_push)?,
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
    if !hooks::HOOKS.iter().any(|(n, _)| *n == args.name) && args.name != hooks::PRE_PUSH.0 {
        bail!(
            "there is no mara hook {:?}; the hooks are commit-msg, pre-commit, post-commit and pre-push",
            args.name
        );
    }
    if args.name == hooks::PRE_PUSH.0 {
        // Anyone's push is checked, not only an instance's.
        let Some(ledger) = ctx
            .repo()
            .ok()
            .and_then(|repo| ctx.run_id(&repo).ok().map(|run| (repo, run)))
            .and_then(|(repo, run)| Ledger::open(repo, run).ok())
        else {
            return quiet();
        };
        let remote = args.args.first().map(|p| p.to_string_lossy().into_owned());
        let mut input = String::new();
        std::io::Read::read_to_string(&mut std::io::stdin(), &mut input)?;
        hooks::pre_push(&ledger, remote.as_deref(), &input)?;
        return Ok(Report::new("", json!({ "hook": args.name, "acted": true })));
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
            let claims = crate::integrate::fence::claim_tokens(&ledger, &held, &me)?;
            hooks::add_trailers(ledger.repo(), file, &me, &held, &claims)?;
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
