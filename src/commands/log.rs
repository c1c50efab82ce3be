//! `mara log`: the coordination channel, oldest first.

use std::fmt::Write;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use clap::Args;
use serde_json::Value;

use crate::board::{one_line, Event, EventKind};
use crate::context::Ctx;
use crate::ids::TaskId;
use crate::output::Report;

#[derive(Args, Debug)]
pub struct LogArgs {
    /// Only events of this type (claim, done, decision, ...).
    #[arg(long = "type", value_name = "T")]
    pub kind: Option<String>,
    /// Only events about this task.
    #[arg(long, value_name = "ID")]
    pub task: Option<TaskId>,
    /// Fetch the run's ref from its remote first (remote mode).
    #[arg(long)]
    pub fetch: bool,
    /// Only events from this seq on (`mara log --since 120`): reads just those.
    #[arg(long, value_name = "SEQ")]
    pub since: Option<u64>,
    /// Keep printing new events as they come (until interrupted, or --wait).
    #[arg(long)]
    pub follow: bool,
    /// With --follow: stop after SECS.
    #[arg(long, value_name = "SECS", requires = "follow")]
    pub wait: Option<u64>,
    /// On a terminal, show messages whole (they always are into a pipe or file).
    #[arg(long)]
    pub full: bool,
    /// With --task: leave out the code commits that name the task.
    #[arg(long = "no-commits", requires = "task")]
    pub quiet_commits: bool,
}

/// A code commit whose `Mara-Task` trailer names a task.
#[derive(serde::Serialize, Clone, Debug, PartialEq, Eq)]
pub struct NamedCommit {
    pub commit: String,
    pub summary: String,
    /// Its `Mara-Instance` trailers: who made it.
    pub instances: Vec<String>,
    /// Every local branch that contains it.
    pub branches: Vec<String>,
}

/// Commits on local branches whose `Mara-Task` trailer names `task`, newest first:
/// the code side of a task, next to its events. Each commit is read once (one walk
/// from every branch tip), then matched against each branch, so a commit merged
/// into several branches names all of them.
pub fn commits_naming(repo: &git2::Repository, task: &TaskId) -> anyhow::Result<Vec<NamedCommit>> {
    let want = std::collections::BTreeSet::from([task.to_string()]);
    let mut all = commits_naming_tasks(repo, &local_tips(repo)?, &want)?;
    Ok(all.remove(task.as_str()).unwrap_or_default())
}

/// Every local branch and its tip.
pub fn local_tips(repo: &git2::Repository) -> anyhow::Result<Vec<(String, git2::Oid)>> {
    let mut tips = vec![];
    for branch in repo.branches(Some(git2::BranchType::Local))? {
        let (branch, _) = branch?;
        let name = branch.name()?.unwrap_or_default().to_owned();
        if let Some(tip) = branch.get().target() {
            tips.push((name, tip));
        }
    }
    Ok(tips)
}

/// [`commits_naming`] for several tasks at once, over the branches `tips`: one walk.
pub fn commits_naming_tasks(
    repo: &git2::Repository,
    tips: &[(String, git2::Oid)],
    tasks: &std::collections::BTreeSet<String>,
) -> anyhow::Result<std::collections::BTreeMap<String, Vec<NamedCommit>>> {
    let mut walk = repo.revwalk()?;
    walk.set_sorting(git2::Sort::TOPOLOGICAL | git2::Sort::TIME)?;
    for (_, tip) in tips {
        walk.push(*tip)?;
    }
    let mut out: std::collections::BTreeMap<String, Vec<NamedCommit>> = Default::default();
    for oid in walk {
        let oid = oid?;
        let commit = repo.find_commit(oid)?;
        let msg = commit.message().unwrap_or_default();
        if !msg.contains("Mara-Task:") {
            continue;
        }
        let named = crate::trailers::parse(msg);
        let hits: Vec<&String> = named.tasks.iter().filter(|t| tasks.contains(*t)).collect();
        if hits.is_empty() {
            continue;
        }
        let mut branches = vec![];
        for (name, tip) in tips {
            if *tip == oid || repo.graph_descendant_of(*tip, oid)? {
                branches.push(name.clone());
            }
        }
        let c = NamedCommit {
            commit: oid.to_string(),
            summary: commit.summary().unwrap_or_default().to_owned(),
            instances: named.instances.clone(),
            branches,
        };
        for t in hits {
            out.entry(t.clone()).or_default().push(c.clone());
        }
    }
    Ok(out)
}

/// The commits naming a task as text lines (`mara log --task`, `mara show`).
pub fn commit_lines(commits: &[NamedCommit]) -> String {
    let mut text = String::new();
    for c in commits {
        let who = if c.instances.is_empty() {
            "-".to_owned()
        } else {
            c.instances.join(", ")
        };
        let _ = writeln!(
            text,
            "  {}  {:<16} {}  on {}",
            &c.commit[..10],
            who,
            // Whole: an agent reading the list may need the end of the line.
            one_line(&c.summary, usize::MAX),
            c.branches.join(", ")
        );
    }
    text
}

/// One event as a log line for people; a message's text is cut to `width`
/// characters, or shown whole (flattened to the line) with `None`.
pub fn line(e: &Event, width: Option<usize>) -> String {
    let detail = match &e.kind {
        EventKind::Init { config } => {
            format!("run {} (lease {}s)", config.run, config.claim_timeout_sec)
        }
        EventKind::TaskAdd { task } => format!("{}: {}", task.id, one_line(&task.title, 60)),
        EventKind::Plan { tasks } => format!("{} tasks", tasks.len()),
        EventKind::Progress { commit, task } => {
            let short: String = commit.chars().take(10).collect();
            match task {
                Some(t) => format!("{t} commit {short}"),
                // Said, not left as an empty column: the commit is on no task.
                None => format!("commit {short} (its instance held no task)"),
            }
        }
        // What the subject says after `stall by <who>: `.
        EventKind::Stall { .. } => e
            .subject()
            .split_once(": ")
            .map_or(String::new(), |(_, rest)| rest.to_owned()),
        EventKind::Review { task, verdict, .. } => match verdict {
            crate::board::Verdict::Approve => format!("{task} approved"),
            crate::board::Verdict::Changes => format!("{task} changes requested"),
        },
        EventKind::Message {
            text,
            to,
            task,
            reply_to,
            ..
        } => {
            let mut d = String::new();
            if let Some(to) = to {
                let _ = write!(d, "to {}: ", one_line(to, 64));
            }
            if let Some(t) = task {
                let _ = write!(d, "[{t}] ");
            }
            if let Some(r) = reply_to {
                let _ = write!(d, "(re {r}) ");
            }
            d + &one_line(text, width.unwrap_or(usize::MAX))
        }
        _ => {
            let s = e.subject();
            s.split_once(" by ").map_or(s.clone(), |(a, _)| {
                a.split_once(' ')
                    .map_or(String::new(), |(_, b)| b.to_owned())
            })
        }
    };
    format!(
        "{:>5}  {}  {:<16} {:<10} {}",
        e.seq,
        e.ts.format("%Y-%m-%d %H:%M:%S"),
        one_line(&e.sender, 32),
        e.kind.type_name(),
        detail
    )
}

pub fn run(ctx: &Ctx, args: LogArgs) -> Result<Report> {
    let (ledger, note) = super::reader(ctx, args.fetch)?;
    if let Some(n) = note {
        crate::output::progress(&n);
    }
    if args.follow {
        return follow(ctx, &ledger, &args);
    }
    let tip = ledger.tip()?;
    events(ctx, &ledger, &args, tip, args.since.unwrap_or(0))
}

/// `--follow`: prints what is there, then each batch of new events as the run's
/// ref moves, until `--wait` runs out (or forever).
fn follow(ctx: &Ctx, ledger: &crate::ledger::Ledger, args: &LogArgs) -> Result<Report> {
    let deadline = args.wait.map_or_else(
        || Instant::now() + Duration::from_secs(100 * 365 * 24 * 3600),
        |s| Instant::now() + Duration::from_secs(s),
    );
    let mut tip = ledger.tip()?;
    let mut since = args.since.unwrap_or(0);
    loop {
        let report = events(ctx, ledger, args, tip, since)?;
        match crate::output::print(&report, ctx.json) {
            Ok(()) => {}
            // `mara log --follow | head`: the reader is gone, and so is the job.
            Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => break,
            Err(e) => return Err(e).context("writing the output"),
        }
        since = ledger
            .snapshot_at(tip)
            .map(|s| s.seq + 1)
            .with_context(|| format!("reading {tip}"))?;
        match ledger.wait_for_change(tip, deadline)? {
            Some(t) => tip = t,
            None => break,
        }
    }
    Ok(Report::new("", Value::Null))
}

/// The events from `since` up to `tip`, filtered, as a report.
fn events(
    ctx: &Ctx,
    ledger: &crate::ledger::Ledger,
    args: &LogArgs,
    tip: git2::Oid,
    since: u64,
) -> Result<Report> {
    let width = crate::output::message_width(args.full, 100);
    let mut text = String::new();
    // In JSON the stored lines are printed as they are (they are the events as
    // mara writes them), so a read costs about what `git log` costs.
    let mut raw = vec![];
    let mut json: Vec<Value> = vec![];
    let filtered = args.kind.is_some() || args.task.is_some();
    for (oid, stored) in ledger.event_lines_at(tip, since)? {
        if ctx.json && !filtered {
            // Checked to be JSON, not parsed: the line is the event as stored.
            serde_json::from_str::<serde::de::IgnoredAny>(&stored)
                .with_context(|| format!("the event of {oid} is not JSON"))?;
            raw.push(stored);
            continue;
        }
        let e = Event::from_json(&stored)
            .with_context(|| format!("reading the event of {oid} on {}", ledger.refname()))?;
        if args
            .kind
            .as_deref()
            .is_some_and(|k| k != e.kind.type_name())
        {
            continue;
        }
        if let Some(t) = &args.task {
            if !e.kind.tasks().contains(&t) {
                continue;
            }
        }
        if ctx.json {
            raw.push(stored);
        } else {
            // Callers that take the value (the MCP server) get the events too.
            let _ = writeln!(text, "{}", line(&e, width));
            json.push(e.to_json());
        }
    }
    if let Some(t) = args
        .task
        .as_ref()
        .filter(|_| !ctx.json && !args.quiet_commits && !args.follow)
    {
        let commits = commits_naming(ledger.repo(), t)?;
        if !commits.is_empty() {
            let _ = writeln!(
                text,
                "\ncommits naming {t} (Mara-Task trailer, local branches):"
            );
            text.push_str(&commit_lines(&commits));
        }
    }
    let mut report = Report::new(text, Value::Array(json));
    report.lines = true;
    report.raw_lines = raw;
    Ok(report)
}
