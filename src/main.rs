//! The `mara` binary: parse, dispatch, print, and map the outcome to an exit code.
//!
//! Exit codes: 0 done; 1 error (nothing written); 2 usage (clap's); 3 refused by the
//! board ("not now"); 4 nothing left for the instance's role ("stop"). A closed
//! stdout pipe exits 0 quietly.

use std::process::ExitCode;

use clap::Parser;
use mara::cli::{dispatch, Cli};
use mara::error::{CommandError, ExitKind};
use mara::output;

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(c) => c,
        Err(e) => {
            // clap prints help and version to stdout with exit 0, usage errors with 2.
            if !e.use_stderr() {
                let _ = e.print();
                return exit(ExitKind::Done);
            }
            output::usage_error(&e.render().to_string());
            return exit(ExitKind::Usage);
        }
    };
    mara::ledger::tune_libgit2();
    if !cli.cmd.long_lived() {
        mara::ledger::free_nothing_before_exit();
    }
    if let Ok(exe) = std::env::current_exe() {
        mara::packs::merge_in_background_with(exe);
    }
    let json = cli.json;
    match dispatch(cli) {
        Ok(report) => match output::print(&report, json) {
            Ok(()) => exit(ExitKind::Done),
            Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => exit(ExitKind::Done),
            Err(e) => {
                output::error(&format!("writing the output: {e}"), None);
                exit(ExitKind::Error)
            }
        },
        Err(e) => {
            let e = CommandError::from(e);
            // The report of a failed command (verify's problems, integrate's
            // conflicts, run's summary) goes to stdout as on success; a closed pipe
            // does not change the exit code.
            if let Some(report) = e.report() {
                let _ = output::print(report, json);
            }
            output::error(&e.message(), e.hint().as_deref());
            exit(e.kind())
        }
    }
}

fn exit(kind: ExitKind) -> ExitCode {
    ExitCode::from(kind.code())
}
