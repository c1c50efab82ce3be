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
    if args.auto {
        // A merge a write started runs beside the next claims: it yields the
        // CPU to them (nice 10, inherited by its `git pack-objects`) rather than
        // slowing them, and still runs on whatever core they leave free.
        // SAFETY: `setpriority` only lowers this process's own priority.
        unsafe {
            libc::setpriority(libc::PRIO_PROCESS, 0, 10);
        }
    }
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
