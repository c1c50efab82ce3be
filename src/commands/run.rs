//! `mara run`: the orchestrator. Board from subtasks, then N instances per role.

use std::path::PathBuf;

use anyhow::{anyhow, Context, Result};
use clap::Args;
use serde_json::json;

use crate::board::{self, Board, Event, EventKind, LockMode};
use crate::config::SeedConfig;
use crate::context::{live_progress, Ctx};
use crate::error::CommandError;
use crate::ids::RunId;
use crate::ledger::{now, Draft, Ledger};
use crate::orchestrator::{self, RunSpec, Summary};
use crate::output::Report;

#[derive(Args, Debug)]
pub struct RunArgs {
    /// The run's config (the seed's JSON: roles, coordination, outputs).
    #[arg(long, value_name = "FILE", default_value = "mara.json")]
    pub config: PathBuf,
    /// Tasks to put on the board first (a plan file: a JSON list of tasks).
    #[arg(long, value_name = "FILE")]
    pub tasks: Option<PathBuf>,
}

/// Everything `mara run` reads before it writes anything.
pub struct Prepared {
    pub seed: SeedConfig,
    pub spec_roles: Vec<crate::config::Role>,
    pub config_dir: PathBuf,
    pub tasks: Option<Vec<board::NewTask>>,
    pub tasks_path: Option<PathBuf>,
}

/// Reads and checks the config, its role files and the plan: a bad one fails here,
/// before the run's ref exists.
pub fn prepare(config: &std::path::Path, tasks_path: Option<&std::path::Path>) -> Result<Prepared> {
    let seed = SeedConfig::load(config)?;
    let spec_roles = seed.load_roles(config)?;
    let config_dir = config
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .map_or_else(std::env::current_dir, |p| p.canonicalize())
        .with_context(|| format!("finding the folder of {}", config.display()))?;
    let tasks = tasks_path.map(super::plan::read_plan).transpose()?;
    Ok(Prepared {
        seed,
        spec_roles,
        config_dir,
        tasks,
        tasks_path: tasks_path.map(PathBuf::from),
    })
}

/// Runs a prepared run on `ledger`'s repository: init (if new), plan, orchestrate.
pub fn execute(
    repo: git2::Repository,
    run: RunId,
    prep: Prepared,
    sender: String,
) -> Result<(Ledger, Summary)> {
    // Everything a run needs is checked before the first write: where its folder
    // goes (a bare repository has no work tree), its branches, its command lines.
    let work_tree = crate::paths::main_work_tree(&repo, "run")?;
    let exe = std::env::current_exe().context("finding the mara binary")?;
    let spec = RunSpec {
        run: run.clone(),
        seed: prep.seed,
        roles: prep.spec_roles,
        config_dir: prep.config_dir,
        sender: sender.clone(),
        mara_dir: exe
            .parent()
            .map(PathBuf::from)
            .ok_or_else(|| anyhow!("the mara binary has no folder"))?,
        progress: live_progress(),
        work_tree,
    };
    let checked = orchestrator::preflight(&repo, &spec)?;
    let in_plan = |e: anyhow::Error| match (e.downcast::<board::Invalid>(), &prep.tasks_path) {
        (Ok(board::Invalid(msg)), Some(p)) => {
            anyhow::Error::new(board::Invalid(format!("plan {}: {msg}", p.display())))
        }
        (Ok(inv), None) => anyhow::Error::new(inv),
        (Err(e), _) => e,
    };
    let exists = repo.refname_to_id(&run.refname()).is_ok();
    let ledger = if exists {
        Ledger::open(repo, run.clone())?
    } else {
        let config = spec.seed.run_config(
            run.clone(),
            spec.seed.claim_timeout_sec(),
            spec.seed.coordination.lock_mode.unwrap_or(LockMode::Ref),
            spec.seed.coordination.remote.clone(),
        );
        if let Some(tasks) = &prep.tasks {
            // Check the plan on an empty board first, so a bad plan writes nothing.
            let mut b = Board::default();
            let init = Event {
                seq: 0,
                ts: now(),
                sender: sender.clone(),
                kind: EventKind::Init {
                    config: config.clone(),
                },
            };
            b.commit(0, board::apply(&b, &init)?);
            let plan = Event {
                seq: 1,
                kind: EventKind::Plan {
                    tasks: tasks.clone(),
                },
                ..init
            };
            board::apply(&b, &plan).map_err(|e| in_plan(e.into()))?;
        }
        let (ledger, _) = Ledger::init(repo, config, &sender)?;
        crate::context::record_current_run(ledger.repo(), &run);
        ledger
    };
    if let Some(tasks) = prep.tasks {
        ledger
            .append(&sender, |_, _| {
                Ok(Draft::Write(EventKind::Plan {
                    tasks: tasks.clone(),
                }))
            })
            .map_err(in_plan)?;
    }
    let summary = orchestrator::run(&ledger, &spec, checked)?;
    Ok((ledger, summary))
}

/// The run's summary for people.
pub fn summary_text(ledger: &Ledger, s: &Summary) -> Result<String> {
    let mut text = format!(
        "run {} ended in {:.1}s{}\n",
        ledger.run(),
        s.elapsed.as_secs_f64(),
        if s.interrupted { " (interrupted)" } else { "" }
    );
    for e in &s.instances {
        text.push_str(&format!(
            "  {:<16} {:<8} {}{}\n    branch {}  log {}\n",
            e.id.to_string(),
            e.status.to_string(),
            e.reason.clone().unwrap_or_default(),
            if e.released.is_empty() {
                String::new()
            } else {
                format!(" (released {})", e.released.join(", "))
            },
            e.place.branch,
            e.place.log
        ));
    }
    for line in s.stalls.iter().chain(&s.resolutions) {
        text.push_str(&format!("  {line}\n"));
    }
    let board = ledger.read(|s| s.full_board())?;
    text.push('\n');
    text.push_str(&super::board::table(&board));
    Ok(text)
}

pub fn summary_json(ledger: &Ledger, s: &Summary) -> serde_json::Value {
    json!({
        "run": ledger.run().as_str(),
        "interrupted": s.interrupted,
        "stalls": s.stalls,
        "stopped": s.stopped,
        "resolutions": s.resolutions,
        "elapsed_sec": s.elapsed.as_secs_f64(),
        "instances": s.instances.iter().map(|e| json!({
            "id": e.id, "status": e.status, "reason": e.reason,
            "worktree": e.place.worktree, "branch": e.place.branch, "log": e.place.log,
            "released": e.released,
        })).collect::<Vec<_>>(),
    })
}

/// The run's summary; a failure that carries it when an instance failed or the run
/// was interrupted.
pub fn conclude(ledger: &Ledger, s: &Summary) -> Result<Report> {
    let report = Report::new(summary_text(ledger, s)?, summary_json(ledger, s));
    let failed = s.failed();
    let error = if let Some(why) = &s.stopped {
        anyhow!("{why}; every instance was stopped")
    } else if s.interrupted {
        anyhow!(
            "run {} was interrupted; every instance was stopped",
            ledger.run()
        )
    } else if let Some(first) = failed.first() {
        anyhow!(
            "{} instance(s) failed: {} {}; its log: {}",
            failed.len(),
            first.id,
            first.reason.clone().unwrap_or_default(),
            first.place.log
        )
    } else {
        return Ok(report);
    };
    Err(CommandError::new(error).with_report(report).into())
}

pub fn run(ctx: &Ctx, args: RunArgs) -> Result<Report> {
    let prep = prepare(&args.config, args.tasks.as_deref())?;
    let repo = ctx.repo()?;
    let run = ctx.new_run_id("reading --run")?;
    let sender = ctx
        .identity(&repo)?
        .map_or_else(|| "orchestrator#1".to_owned(), |i| i.to_string());
    let (ledger, summary) = execute(repo, run, prep, sender)?;
    conclude(&ledger, &summary)
}
