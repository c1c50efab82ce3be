//! `mara demo`: a whole run with scripted agents in a scratch repository.
//!
//! No network and no LLM: a small project, a plan with dependencies, and three
//! instances (two implementers and a reviewer) racing for tasks in their own
//! worktrees and branches, each one a shell script that calls `mara` itself.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Instant;

use anyhow::{bail, Context, Result};
use clap::Args;
use serde_json::json;

use crate::context::Ctx;
use crate::gitcmd::git_ok;
use crate::ids::{InstanceId, RunId};
use crate::ledger::Ledger;
use crate::output::{self, Report};

/// The scripted agent every demo instance runs.
const AGENT: &str = include_str!("../../roles/scripted-agent.sh");

const PLAN: &str = r#"[
  {"id": "T1", "title": "Design the API", "paths": ["docs/api.md"]},
  {"id": "T2", "title": "API endpoints", "deps": ["T1"], "paths": ["src/api/**"]},
  {"id": "T3", "title": "UI screens", "deps": ["T1"], "paths": ["src/ui/**"]},
  {"id": "T4", "title": "Storage layer", "paths": ["src/store/**"]},
  {"id": "T5", "title": "Tests for API and UI", "deps": ["T2", "T3"]},
  {"id": "T6", "title": "Review everything", "deps": ["T4", "T5"]}
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
    std::fs::write(dir.join("tasks.json"), PLAN)?;
    std::fs::write(dir.join("scripted-agent.sh"), AGENT)?;
    git_ok(&repo_dir, &["add", "."])?;
    git_ok(&repo_dir, &["commit", "-q", "-m", "initial project"])?;

    let exe = std::env::current_exe().context("finding the mara binary")?;
    let mara = |args: &[&str], envs: &[(&str, &str)], cwd: &Path| -> Result<String> {
        let out = Command::new(&exe)
            .args(args)
            .envs(envs.iter().copied())
            .current_dir(cwd)
            .stdin(Stdio::null())
            .output()?;
        if !out.status.success() {
            bail!(
                "`mara {}` failed: {}",
                args.join(" "),
                String::from_utf8_lossy(&out.stderr).trim()
            );
        }
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    };
    let run: RunId = "demo".parse()?;
    let plan = dir.join("tasks.json");
    mara(&["init", "--run", run.as_str()], &[], &repo_dir)?;
    mara(&["plan", &plan.to_string_lossy()], &[], &repo_dir)?;
    output::progress("mara demo: board planned with 6 tasks; starting 3 scripted instances");

    let bin_dir = exe.parent().expect("an executable lives in a directory");
    let path = crate::context::path_with(bin_dir)?;
    let instances: Vec<InstanceId> = ["implementer#1", "implementer#2", "reviewer#1"]
        .iter()
        .map(|s| s.parse())
        .collect::<Result<_>>()?;
    let mut children = vec![];
    for id in &instances {
        let stem = id.file_stem();
        let wt = dir.join(&stem);
        let branch = format!("mara/{run}/{stem}");
        git_ok(
            &repo_dir,
            &[
                "worktree",
                "add",
                "-q",
                "-b",
                &branch,
                &wt.to_string_lossy(),
                "main",
            ],
        )?;
        let log = std::fs::File::create(dir.join(format!("{stem}.log")))?;
        let child = Command::new("sh")
            .arg(dir.join("scripted-agent.sh"))
            .current_dir(&wt)
            .env("PATH", &path)
            .env("MARA_RUN", run.as_str())
            .env("MARA_INSTANCE", id.to_string())
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()
            .context("starting a scripted agent")?;
        children.push((id.clone(), branch, child));
    }
    let mut failed = vec![];
    for (id, _, child) in &mut children {
        let status = child.wait()?;
        if !status.success() {
            failed.push(format!("{id} ({status})"));
        }
    }
    let repo = git2::Repository::open(&repo_dir)?;
    let ledger = Ledger::open(repo, run.clone())?;
    let board = ledger.snapshot()?.full_board()?;
    let (problems, events) = ledger.verify()?;
    let mut text = String::new();
    text.push_str(&super::board::table(&board));
    text.push_str("\n\nthe coordination log (git log refs/mara/demo):\n");
    for (_, e) in ledger.events()? {
        text.push_str(&super::log::line(&e));
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
        "\nwhere to look (in {}):\n  git log --format='%h %s' refs/mara/{run}\n",
        repo_dir.display()
    ));
    for (_, branch, _) in &children {
        text.push_str(&format!("  git log --oneline main..{branch}\n"));
    }
    text.push_str(&format!(
        "  artifacts and agent logs: {}/<role>_<n>/<role>_<n>.md, {}/<role>_<n>.log\n  done in {:.1}s",
        dir.display(),
        dir.display(),
        started.elapsed().as_secs_f64()
    ));
    if !failed.is_empty() || !problems.is_empty() {
        output::progress(&text);
        bail!(
            "the demo run failed: {}; see the logs in {}",
            if failed.is_empty() {
                problems.join("; ")
            } else {
                failed.join(", ")
            },
            dir.display()
        );
    }
    Ok(Report::new(
        text,
        json!({
            "dir": dir, "repo": repo_dir, "run": run.as_str(), "events": events,
            "board": board.to_json(),
        }),
    ))
}
