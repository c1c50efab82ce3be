//! The `mara` binary: parse, dispatch, print, and map the outcome to an exit code.
//!
//! Exit codes: 0 done; 1 error (nothing written); 2 usage (clap's); 3 refused by the
//! board. A closed stdout pipe exits 0 quietly.

use std::process::ExitCode;

use clap::Parser;
use mara::board::Refusal;
use mara::cli::{dispatch, Cli};
use mara::output;

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(c) => c,
        Err(e) => {
            // clap prints help and version to stdout with exit 0, usage errors with 2.
            if !e.use_stderr() {
                let _ = e.print();
                return ExitCode::SUCCESS;
            }
            output::usage_error(&e.render().to_string());
            return ExitCode::from(2);
        }
    };
    mara::ledger::tune_libgit2();
    if let Ok(exe) = std::env::current_exe() {
        mara::packs::merge_in_background_with(exe);
    }
    let json = cli.json;
    match dispatch(cli) {
        Ok(report) => match output::print(&report, json) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => ExitCode::SUCCESS,
            Err(e) => {
                output::error(&format!("writing the output: {e}"), None);
                ExitCode::from(1)
            }
        },
        Err(e) => {
            if let Some(r) = e.downcast_ref::<Refusal>() {
                output::error(&r.to_string(), r.hint().as_deref());
                return ExitCode::from(3);
            }
            output::error(&format!("{e:#}"), None);
            ExitCode::from(1)
        }
    }
}
