//! `mara init`: create the run's ref and make it the current run.

use std::path::PathBuf;

use anyhow::Result;
use clap::Args;
use serde_json::json;

use crate::board::LockMode;
use crate::config::SeedConfig;
use crate::context::Ctx;
use crate::ledger::Ledger;
use crate::output::Report;

#[derive(Args, Debug)]
pub struct InitArgs {
    /// A seed config (JSON) whose `coordination` block sets the lease and lock mode.
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Lease length: an instance silent for longer loses its claims (default 300).
    #[arg(long, value_name = "SEC")]
    pub claim_timeout: Option<u64>,
    /// Share the run through this git remote: every write is a push to it, and a
    /// rejected push is a lost race (lock_mode "remote").
    #[arg(long, value_name = "NAME")]
    pub remote: Option<String>,
    /// Start a run this clone has seen before anew, after its ref was deleted
    /// (its old history is no longer required).
    #[arg(long)]
    pub force: bool,
}

pub fn run(ctx: &Ctx, args: InitArgs) -> Result<Report> {
    let repo = ctx.repo()?;
    let seed = match &args.config {
        Some(p) => SeedConfig::load(p)?,
        None => SeedConfig::default(),
    };
    let run = ctx.new_run_id("choosing the run id")?;
    let claim_timeout_sec = args.claim_timeout.unwrap_or(seed.claim_timeout_sec());
    if !crate::config::seconds_in_range(claim_timeout_sec) {
        anyhow::bail!(
            "--claim-timeout {claim_timeout_sec} is out of range; use 1 to {} seconds",
            crate::config::MAX_CLAIM_TIMEOUT_SEC
        );
    }
    let remote = args.remote.or(seed.coordination.remote.clone());
    let lock_mode = match (&remote, seed.coordination.lock_mode) {
        (Some(_), None) => LockMode::Remote,
        (_, Some(m)) => m,
        (None, None) => LockMode::Ref,
    };
    if let Some(r) = &remote {
        crate::remote::check_named(&repo, r)?;
    }
    let config = seed.run_config(run.clone(), claim_timeout_sec, lock_mode, remote);
    let config_remote = config.board_remote().map(str::to_owned);
    let sender = ctx.operator(&repo)?;
    if args.force && repo.refname_to_id(&run.refname()).is_err() {
        crate::ledger::marks::forget(&repo, &run);
    }
    let (ledger, appended) = Ledger::init(repo, config, &sender)?;
    crate::context::record_current_run(ledger.repo(), &run);
    let mut report = super::written(&appended);
    report.text = format!(
        "created run {run} ({}){}; it is now the current run\nreview it with: git log {}",
        ledger.refname(),
        config_remote
            .as_ref()
            .map_or(String::new(), |r| format!(" and pushed it to {r}")),
        ledger.refname()
    );
    report.json = json!({
        "run": run.as_str(),
        "ref": ledger.refname(),
        "commit": appended.commit.to_string(),
        "claim_timeout_sec": claim_timeout_sec,
        "remote": config_remote,
    });
    Ok(report)
}
