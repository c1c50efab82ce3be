//! `mara sync`: fetch the run's ref from its remote and push what the remote lacks.

use anyhow::Result;
use clap::Args;
use serde_json::json;

use crate::context::Ctx;
use crate::ledger::{self, Ledger, Synced};
use crate::output::Report;

#[derive(Args, Debug)]
pub struct SyncArgs {
    /// The remote, a name from `git remote -v`, recorded as this clone's choice for
    /// the run (default: the recorded choice, else the run's own remote name if
    /// this clone has it, else git config mara.remote, else origin).
    #[arg(long, value_name = "NAME")]
    pub remote: Option<String>,
}

pub fn run(ctx: &Ctx, args: SyncArgs) -> Result<Report> {
    let repo = ctx.repo()?;
    let run = ctx.run_id(&repo)?;
    let remote = match args.remote {
        Some(r) => r,
        None => run_remote(&repo, &run)?,
    };
    crate::remote::check_named(&repo, &remote)?;
    let result = ledger::sync(&repo, &run, &remote)?;
    crate::remote::record_choice(&repo, &run, &remote);
    // A clone that joins a run makes it its current one, as `init` does.
    if repo.config()?.get_string("mara.run").is_err() {
        crate::context::record_current_run(&repo, &run);
    }
    let ledger = Ledger::open(repo, run.clone())?;
    let seq = ledger.snapshot()?.seq;
    let (text, what) = match result {
        Synced::UpToDate(_) => (
            format!("run {run} is up to date with {remote}"),
            "up_to_date",
        ),
        Synced::Fetched { from, to } => (
            format!(
                "fetched run {run} from {remote}: {} -> {}",
                from.map_or("(new)".to_owned(), |f| short(&f.to_string())),
                short(&to.to_string())
            ),
            "fetched",
        ),
        Synced::Pushed { from, to } => (
            format!(
                "pushed run {run} to {remote}: {} -> {}",
                short(&from.to_string()),
                short(&to.to_string())
            ),
            "pushed",
        ),
    };
    Ok(Report::new(
        format!("{text} (version {seq})"),
        json!({ "run": run.as_str(), "remote": remote, "result": what, "version": seq }),
    ))
}

fn short(s: &str) -> String {
    s.chars().take(10).collect()
}

/// The remote to sync a run with when none is named: this clone's choice, else
/// the run's own remote name (when this clone has a remote of that name), else git
/// config `mara.remote`, else origin.
pub fn run_remote(repo: &git2::Repository, run: &crate::ids::RunId) -> Result<String> {
    let board = if repo.refname_to_id(&run.refname()).is_ok() {
        let ledger = Ledger::open(git2::Repository::open(repo.path())?, run.clone())?;
        let config = ledger.snapshot()?.config;
        config
            .remote
            .filter(|r| crate::remote::is_configured(repo, r))
    } else {
        None
    };
    if let Some(r) = crate::remote::choose(repo, run, board.as_deref())? {
        return Ok(r);
    }
    Ok(repo
        .config()?
        .get_string("mara.remote")
        .unwrap_or_else(|_| "origin".to_owned()))
}
