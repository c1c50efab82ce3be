//! `mara init`: create the run's ref and make it the current run.

use std::path::PathBuf;

use anyhow::{Context, Result};
use clap::Args;
use serde_json::json;

use crate::board::{LockMode, RunConfig};
use crate::config::SeedConfig;
use crate::context::Ctx;
use crate::ids::RunId;
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
}

pub fn run(ctx: &Ctx, args: InitArgs) -> Result<Report> {
    let repo = ctx.repo()?;
    let seed = match &args.config {
        Some(p) => SeedConfig::load(p)?,
        None => SeedConfig::default(),
    };
    let raw = ctx
        .run
        .clone()
        .unwrap_or_else(|| format!("run-{}", chrono::Utc::now().format("%Y%m%d-%H%M%S")));
    let run: RunId = raw.parse().context("choosing the run id")?;
    let claim_timeout_sec = args.claim_timeout.unwrap_or(seed.claim_timeout_sec());
    if claim_timeout_sec == 0 {
        anyhow::bail!("--claim-timeout must be at least 1 second");
    }
    let lock_mode = seed.coordination.lock_mode.unwrap_or_default();
    if lock_mode == LockMode::Remote {
        anyhow::bail!(
            "lock_mode \"remote\" is not supported by this build yet; use \"ref\" (local compare-and-swap)"
        );
    }
    let config = RunConfig {
        run: run.clone(),
        claim_timeout_sec,
        lock_mode,
        remote: None,
    };
    let sender = ctx.operator(&repo)?;
    let (ledger, appended) = Ledger::init(repo, config, &sender)?;
    ledger
        .repo()
        .config()
        .and_then(|mut c| c.set_str("mara.run", run.as_str()))
        .context("recording the current run in git config mara.run")?;
    let mut report = super::written(&appended);
    report.text = format!(
        "created run {run} ({}); it is now the current run\nreview it with: git log {}",
        ledger.refname(),
        ledger.refname()
    );
    report.json = json!({
        "run": run.as_str(),
        "ref": ledger.refname(),
        "commit": appended.commit.to_string(),
        "claim_timeout_sec": claim_timeout_sec,
    });
    Ok(report)
}
