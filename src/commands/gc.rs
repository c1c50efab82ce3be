//! `mara gc`: merge the small packfiles events leave (what a write starts in the
//! background once 8 packs share a size tier; see `packs`).

use anyhow::Result;
use clap::Args;
use serde_json::json;

use crate::context::Ctx;
use crate::output::Report;
use crate::packs;

#[derive(Debug, Args)]
pub struct GcArgs {
    /// Merge only if 8 packs share a size tier (what writes start in the background).
    #[arg(long)]
    pub auto: bool,
}

pub fn run(ctx: &Ctx, args: GcArgs) -> Result<Report> {
    let repo = ctx.repo()?;
    Ok(match packs::merge_if_due(&repo, !args.auto)? {
        Some(m) => Report::new(
            format!("merged {} packs ({} objects) into one", m.packs, m.objects),
            json!({ "merged_packs": m.packs, "objects": m.objects }),
        ),
        None => Report::new(
            "nothing to merge",
            json!({ "merged_packs": 0, "objects": 0 }),
        ),
    })
}
