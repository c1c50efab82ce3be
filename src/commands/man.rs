//! `mara man`: the manual page (roff), made by clap_mangen from the definitions
//! the parser uses, so it says what `--help` says (issue 17).

use std::path::PathBuf;

use anyhow::{Context, Result};
use clap::Args;
use serde_json::json;

use crate::output::Report;
use crate::paths::SafeDir;

#[derive(Args, Debug)]
pub struct ManArgs {
    /// Write mara.1 and a page per subcommand (mara-claim.1, ...) into DIR instead
    /// of printing mara.1.
    #[arg(long, value_name = "DIR")]
    pub dir: Option<PathBuf>,
}

/// The page of `cmd`: its file name (`mara-claim.1`) and roff.
fn page(cmd: clap::Command) -> Result<(String, Vec<u8>)> {
    let man = clap_mangen::Man::new(cmd);
    let mut roff = Vec::new();
    man.render(&mut roff).context("rendering the manual page")?;
    Ok((man.get_filename(), roff))
}

/// `cmd` and every command under it that `--help` shows.
fn with_subcommands(cmd: clap::Command, out: &mut Vec<clap::Command>) {
    for sub in cmd.get_subcommands().filter(|s| !s.is_hide_set()) {
        with_subcommands(sub.clone(), out);
    }
    out.push(cmd);
}

pub fn run(cmd: clap::Command, args: ManArgs) -> Result<Report> {
    // As clap_mangen's own `generate_to`: `help` gets no page and no mention.
    let mut cmd = cmd.disable_help_subcommand(true);
    cmd.build();
    let Some(dir) = args.dir else {
        let (_, roff) = page(cmd)?;
        let roff = String::from_utf8(roff).context("the manual page is not UTF-8")?;
        return Ok(Report::new(roff.clone(), json!({"page": roff})));
    };
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    let safe = SafeDir::open(&dir)?;
    let mut commands = Vec::new();
    with_subcommands(cmd, &mut commands);
    let mut files = Vec::new();
    for cmd in commands.into_iter().rev() {
        let (name, roff) = page(cmd)?;
        files.push(safe.write(&name, &roff)?);
    }
    Ok(Report::new(
        format!("wrote {} manual pages to {}", files.len(), dir.display()),
        json!({"dir": dir, "files": files}),
    ))
}
