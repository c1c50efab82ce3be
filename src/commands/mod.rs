//! One file per command: its clap `Args` and a `run(ctx, args) -> Result<Report>`.
//! Commands build events and hand them to the ledger; none of them touches a ref.

pub mod board;
pub mod claim;
pub mod collect;
pub mod completions;
pub mod demo;
pub mod done;
pub mod export;
pub mod gc;
pub mod heartbeat;
pub mod hooks;
pub mod inbox;
pub mod init;
pub mod integrate;
pub mod log;
pub mod man;
pub mod merge_deps;
pub mod plan;
pub mod post;
pub mod release;
pub mod report;
pub mod review;
pub mod run;
pub mod show;
pub mod status;
pub mod sync;
pub mod task;
pub mod verify;

use anyhow::Result;
use serde_json::json;

use crate::context::Ctx;
use crate::ledger::{Appended, Ledger, Outcome};
use crate::output::Report;

/// The report of a written event: its subject for people, the event and its commit
/// for scripts.
pub fn written(a: &Appended) -> Report {
    let mut j = a.event.to_json();
    j["commit"] = json!(a.commit.to_string());
    Report::new(a.event.subject(), j)
}

/// The report of an append, written or not.
pub fn outcome(o: Outcome) -> Report {
    match o {
        Outcome::Written(a) => written(&a),
        Outcome::Noop(msg) => Report::new(msg.clone(), json!({ "noop": msg })),
    }
}

/// Opens the run for reading. In remote mode reads show the last fetched state:
/// `fetch` refreshes it first, and the note says how old it is.
pub fn reader(ctx: &Ctx, fetch: bool) -> Result<(Ledger, Option<String>)> {
    let ledger = ctx.ledger()?;
    let remote = ledger.remote_for(&ledger.snapshot()?.config)?;
    let Some(remote) = remote else {
        return Ok((ledger, None));
    };
    if fetch {
        ledger.fetch(&remote)?;
    }
    let note = match ledger.last_synced().and_then(|t| t.elapsed().ok()) {
        Some(age) => format!(
            "last synced with {remote} {} ago (--fetch refreshes)",
            crate::board::ago(chrono::TimeDelta::seconds(age.as_secs() as i64))
        ),
        None => format!("never synced with {remote} (--fetch refreshes)"),
    };
    Ok((ledger, Some(note)))
}
