//! Integration tests of the `mara` binary: each test makes a scratch git
//! repository, runs the real binary as separate processes and checks exit codes,
//! messages and what `refs/mara/<run>` holds afterwards.
//!
//! One test binary (`cargo test --test main`); the modules live in `tests/main/`.

mod common;

#[path = "main/concurrency.rs"]
mod concurrency;
#[path = "main/errors.rs"]
mod errors;
#[path = "main/faults.rs"]
mod faults;
#[path = "main/fencing.rs"]
mod fencing;
#[path = "main/flow.rs"]
mod flow;
#[path = "main/hooks.rs"]
mod hooks;
#[path = "main/integrate.rs"]
mod integrate;
#[path = "main/integrity.rs"]
mod integrity;
#[path = "main/leases.rs"]
mod leases;
#[path = "main/orchestrate.rs"]
mod orchestrate;
#[path = "main/packs.rs"]
mod packs;
#[path = "main/reads.rs"]
mod reads;
#[path = "main/remote.rs"]
mod remote;
#[path = "main/repos.rs"]
mod repos;
#[path = "main/resolve.rs"]
mod resolve;
#[path = "main/shell.rs"]
mod shell;
#[path = "main/stall.rs"]
mod stall;
#[path = "main/team.rs"]
mod team;
#[path = "main/trust.rs"]
mod trust;
#[path = "main/views.rs"]
mod views;
#[path = "main/wait.rs"]
mod wait;
