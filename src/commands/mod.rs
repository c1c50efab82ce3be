//! One file per command: its clap `Args` and a `run(ctx, args) -> Result<Report>`.
//! Commands build events and hand them to the ledger; none of them touches a ref.

pub mod board;
pub mod claim;
pub mod demo;
pub mod done;
pub mod heartbeat;
pub mod init;
pub mod log;
pub mod plan;
pub mod post;
pub mod release;
pub mod status;
pub mod task;
pub mod verify;

use serde_json::json;

use crate::ledger::{Appended, Outcome};
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
