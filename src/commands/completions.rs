//! `mara completions SHELL`: a completion script for the shell, written by clap's
//! own generator from the definitions the parser uses (issue 17).

use anyhow::{Context, Result};
use clap::Args;
use clap_complete::Shell;
use serde_json::json;

use crate::output::Report;

#[derive(Args, Debug)]
pub struct CompletionsArgs {
    /// The shell to complete for.
    #[arg(value_enum)]
    pub shell: Shell,
}

/// The script completing `cmd`, mara's whole command line.
pub fn run(mut cmd: clap::Command, args: CompletionsArgs) -> Result<Report> {
    let mut script = Vec::new();
    clap_complete::generate(args.shell, &mut cmd, "mara", &mut script);
    let script = String::from_utf8(script).context("the completion script is not UTF-8")?;
    Ok(Report::new(
        script.clone(),
        json!({"shell": args.shell.to_string(), "script": script}),
    ))
}
