//! `mara demo`: a whole run with scripted agents in a scratch repository.
//!
//! No network and no LLM: a small project, a plan with dependencies, and the seed's
//! four roles (architect x1, implementer x2, reviewer x1, integrator x1) started by
//! the orchestrator, each instance a shell script that calls `mara` itself in its
//! own worktree and branch.

use std::path::PathBuf;
use std::time::Instant;

use anyhow::{bail, Context, Result};
use clap::Args;
use serde_json::json;

use crate::context::Ctx;
use crate::gitcmd::git_ok;
use crate::ids::RunId;
use crate::output::{self, Report};

/// The files of the demo's config: the seed's config and four role files, and the
/// scripted agent they all run.
const FILES: &[(&str, &str)] = &[
    ("mara.json", include_str!("../../mara.json")),
    (
        "roles/architect.json",
        include_str!("../../roles/architect.json"),
    ),
    (
        "roles/implementer.json",
        include_str!("../../roles/implementer.json"),
    ),
    (
        "roles/reviewer.json",
        include_str!("../../roles/reviewer.json"),
    ),
    (
        "roles/integrator.json",
        include_str!("../../roles/integrator.json"),
    ),
    (
        "roles/scripted-agent.sh",
        include_str!("../../roles/scripted-agent.sh"),
    ),
];

const PLAN: &str = r#"[
  {"id": "T1", "title": "Design the API", "paths": ["docs/api.md"]},
  {"id": "T2", "title": "API endpoints", "deps": ["T1"], "paths": ["src/api/**"]},
  {"id": "T3", "title": "UI screens", "deps": ["T1"], "paths": ["src/ui/**"]},
  {"id": "T4", "title": "Storage layer", "paths": ["src/store/**"]},
  {"id": "T5", "title": "Tests for API and UI", "deps": ["T2", "T3"]},
  {"id": "T6", "title": "Write the docs", "deps": ["T4"]}
]"#;

#[derive(Args, Debug)]
pub struct DemoArgs {
    /// Where to create the scratch repository (default: a new temporary directory,
    /// kept so you can look at it).
    #[arg(long, value_name = "DIR")]
    pub dir: Option<PathBuf>,
}

pub fn run(_ctx: &Ctx, args: DemoArgs) -> Result<Report> {
    let started = Instant::now();
    let dir = match args.dir {
        Some(d) => {
            if d.exists() && d.read_dir().map(|mut r| r.next().is_some()).unwrap_or(true) {
                bail!("{} exists and is not empty; pick a new --dir", d.display());
            }
            std::fs::create_dir_all(&d).with_context(|| format!("creating {}", d.display()))?;
            d.canonicalize()?
        }
        None => tempfile::Builder::new()
            .prefix("mara-demo-")
            .tempdir()?
            .keep(),
    };
    let repo_dir = dir.join("project");
    std::fs::create_dir_all(repo_dir.join("src"))?;
    output::progress(&format!(
        "mara demo: scratch project in {}",
        repo_dir.display()
    ));
    git_ok(&repo_dir, &["init", "-q", "-b", "main"])?;
    for (k, v) in [
        ("user.name", "mara demo"),
        ("user.email", "demo@mara.invalid"),
    ] {
        git_ok(&repo_dir, &["config", k, v])?;
    }
    std::fs::write(repo_dir.join("README.md"), "# A small project\n")?;
    std::fs::write(repo_dir.join("src/main.txt"), "entry point\n")?;
    git_ok(&repo_dir, &["add", "."])?;
    git_ok(&repo_dir, &["commit", "-q", "-m", "initial project"])?;
    std::fs::create_dir_all(dir.join("roles"))?;
    for (name, text) in FILES {
        std::fs::write(dir.join(name), text)?;
    }
    std::fs::write(dir.join("tasks.json"), PLAN)?;

    let run: RunId = "demo".parse()?;
    let prep = super::run::prepare(&dir.join("mara.json"), Some(&dir.join("tasks.json")))?;
    output::progress(
        "mara demo: 6 tasks; starting architect#1, implementer#1, implementer#2, then reviewer#1, then integrator#1",
    );
    let repo = git2::Repository::open(&repo_dir)?;
    let (ledger, summary) = super::run::execute(repo, run.clone(), prep, "orchestrator#1".into())?;
    let (problems, events) = ledger.verify()?;
    let mut text = super::run::summary_text(&ledger, &summary)?;
    let log = ledger.events()?;
    text.push_str(&conflicts_line(&log));
    text.push_str("\n\nthe coordination log (git log refs/mara/demo):\n");
    for (_, e) in &log {
        text.push_str(&super::log::line(
            e,
            crate::output::message_width(false, 100),
        ));
        text.push('\n');
    }
    text.push_str(&format!(
        "\nverify: {}\n",
        if problems.is_empty() {
            format!("{events} events replay to the board at the tip")
        } else {
            problems.join("; ")
        }
    ));
    text.push_str(&format!(
        "\nwhere to look (cd {}):\n  git log --format='%h %s' refs/mara/{run}     # every claim and decision\n  git log --oneline --graph mara/{run}/integration   # the merged result\n  cat .multi_agent_runs/{run}/integrator.md          # the integrator's report\n  ls .multi_agent_runs/{run}/outputs/                # the collected artifacts\n  mara --run {run} status                        # instances, logs\n  ls .multi_agent_runs/{run}/worktrees/*/         # each instance's worktree and artifact\ndone in {:.1}s",
        repo_dir.display(),
        started.elapsed().as_secs_f64()
    ));
    if !problems.is_empty() {
        bail!("the demo's board does not verify: {}", problems.join("; "));
    }
    let mut report = super::run::conclude(&ledger, &summary)?;
    report.text = text;
    report.json = json!({
        "dir": dir, "repo": repo_dir, "run": run.as_str(), "events": events,
        "summary": report.json,
    });
    Ok(report)
}

/// The demo's conflicts, one line: each conflicted file, and who resolved it.
fn conflicts_line(events: &[(git2::Oid, crate::board::Event)]) -> String {
    use crate::board::EventKind;
    let conflicts: Vec<String> = events
        .iter()
        .filter_map(|(_, e)| match &e.kind {
            EventKind::Conflict { file, branch, .. } => Some(format!("{file} merging {branch}")),
            _ => None,
        })
        .collect();
    let resolved: Vec<String> = events
        .iter()
        .filter_map(|(_, e)| match &e.kind {
            EventKind::Resolved {
                branch,
                commit,
                files,
                by,
                ..
            } => Some(format!(
                "{} on {branch} resolved by {}, merged ({})",
                files.join(", "),
                by.as_deref().unwrap_or("someone"),
                &commit[..10.min(commit.len())]
            )),
            _ => None,
        })
        .collect();
    format!(
        "\nconflicts: {} ({}); resolved: {} ({})\n",
        conflicts.len(),
        conflicts.join("; "),
        resolved.len(),
        resolved.join("; ")
    )
}
