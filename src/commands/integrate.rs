//! `mara integrate`: merge the run's instance branches into one integration branch
//! and write the conflict report (`integrator.md`, `integrator.json`).

use anyhow::Result;
use clap::Args;

use crate::board::{EventKind, Refusal};
use crate::context::Ctx;
use crate::error::CommandError;
use crate::integrate::{self, Integration};
use crate::ledger::Draft;
use crate::output::Report;
use crate::paths::{exclude_run_dirs, main_work_tree, open_run_dir};

#[derive(Args, Debug, Default)]
pub struct IntegrateArgs {
    /// The branches to merge, in order (default: every `mara/<run>/<role>_<n>`).
    #[arg(long, value_delimiter = ',', value_name = "A,B")]
    pub branches: Vec<String>,
    /// The branch to merge into (default: `mara/<run>/integration`).
    #[arg(long, value_name = "BRANCH")]
    pub into: Option<String>,
    /// With a review step: merge although tasks await review or were sent back
    /// (the log records that this was used, and which tasks).
    #[arg(long)]
    pub unreviewed: bool,
    /// Move nothing, write nothing: print the conflict matrix (every branch against
    /// the target and every pair, merged in memory), the merge order and what would
    /// be fenced.
    #[arg(long)]
    pub plan: bool,
    /// Merge the resolved conflicts branches (`mara/<run>/conflicts/*` with commits
    /// of their own; a resolve task names its branch in its `resolves` field, which
    /// the board checks) whose resolve tasks are done, and go on; one whose task is not
    /// done waits for it (exit 3, naming the task and its holder); a resolution with conflict markers left, one that
    /// lacks a side of its conflict, or one that changes files besides those in
    /// conflict (a resolve task has no review step), is refused naming the branch
    /// and the files
    /// (plain `integrate` merges them too, and only reports what is left).
    #[arg(long = "continue")]
    pub cont: bool,
}

pub fn run(ctx: &Ctx, args: IntegrateArgs) -> Result<Report> {
    let ledger = ctx.ledger()?;
    let who = ctx.operator(ledger.repo())?;
    run_as(&ledger, &who, args)
}

/// `mara integrate` on `ledger`'s run, recorded as `who` (also `mara run`'s
/// integrator step, with `--continue`).
pub fn run_as(ledger: &crate::ledger::Ledger, who: &str, args: IntegrateArgs) -> Result<Report> {
    let who = who.to_owned();
    let repo = ledger.repo();
    let run = ledger.run().clone();
    // The report goes to the main work tree: a bare repository refuses before any
    // branch moves.
    let work_tree = main_work_tree(repo, "integrate")?;
    let into = args
        .into
        .unwrap_or_else(|| format!("mara/{run}/integration"));
    let branches = if args.branches.is_empty() {
        // The integrator's own branch is merged only when named.
        integrate::instance_branches(repo, &run)?
            .into_iter()
            .filter(|b| *b != into)
            .filter(|b| {
                integrate::branch_instance(&run, b)
                    .is_none_or(|i| i.role() != crate::board::INTEGRATOR_ROLE)
            })
            .collect()
    } else {
        args.branches
    };
    let resolve_tasks =
        ledger.read(|s| Ok(integrate::resolve::resolve_tasks(&*s.full_board()?)))?;
    let events = ledger.events()?;
    let claims = integrate::fence::Claims::from_events(run.as_str(), &events);
    let integrate = |plan_only| {
        integrate::integrate(
            repo,
            &run,
            &branches,
            (&into, &who),
            &claims,
            plan_only,
            &resolve_tasks,
        )
    };
    if args.plan {
        return Ok(plan_report(&integrate(true)?.0));
    }
    // With a review step, only approved work is integrated unless the caller says
    // otherwise; checked before any branch moves.
    let unreviewed = ledger.read(|s| Ok(s.full_board()?.unreviewed()))?;
    if let Some(refusal) = &unreviewed {
        if !args.unreviewed {
            return Err(refusal.clone().into());
        }
    }
    let (result, updates) = integrate(false)?;
    check_may_add_resolve_tasks(ledger, &who, &result)?;
    if args.cont {
        let left: Vec<String> = result
            .resolutions
            .iter()
            .filter(|r| r.waiting_for.is_none())
            .filter_map(|r| r.left.as_ref().map(|why| format!("{}: {why}", r.branch)))
            .collect();
        if !left.is_empty() {
            anyhow::bail!(
                "not merging the resolution: {}; finish it on that branch (commit there) and run `mara integrate --continue` again",
                left.join("; ")
            );
        }
        let waiting: Vec<(String, Option<String>)> = result
            .resolutions
            .iter()
            .filter_map(|r| {
                let holder = r.waiting_for.as_ref()?;
                Some((
                    r.task.clone().unwrap_or_else(|| r.branch.clone()),
                    (!holder.is_empty()).then(|| holder.clone()),
                ))
            })
            .collect();
        if !waiting.is_empty() {
            return Err(Refusal::ResolveWaiting { tasks: waiting }.into());
        }
    }
    let mut result = result;
    let done: std::collections::BTreeSet<String> = ledger.read(|s| {
        Ok(s.full_board()?
            .tasks
            .values()
            .filter(|t| t.status == crate::board::TaskStatus::Done)
            .map(|t| t.id.to_string())
            .collect())
    })?;
    let tip = git2::Oid::from_str(&result.tip)?;
    result.tasks = integrate::task_accounts(repo, &into, tip, &done, &result.fenced)?;
    let md = integrate::report_markdown(&result);
    let json = serde_json::to_value(&result).expect("the report serialises");
    let dir = open_run_dir(&work_tree, &run, &[])?;
    exclude_run_dirs(repo)?;
    crate::context::crash_point("integrate-before-refs");
    integrate::apply_updates(repo, &updates, &format!("mara integrate {run}"))?;
    crate::context::crash_point("integrate-after-refs");
    let md_path = dir.write("integrator.md", md.as_bytes())?;
    let json_path = dir.write("integrator.json", format!("{json:#}\n").as_bytes())?;
    if let Some(crate::board::Refusal::Unreviewed {
        awaiting,
        sent_back,
    }) = &unreviewed
    {
        let ids: Vec<&str> = awaiting
            .iter()
            .chain(sent_back)
            .map(|t| t.as_str())
            .collect();
        let kind = EventKind::Message {
            to: None,
            task: None,
            reply_to: None,
            kind: "decision".into(),
            text: format!(
                "integrated with unreviewed tasks {} (mara integrate --unreviewed)",
                ids.join(", ")
            ),
        };
        ledger.append(&who, |_, _| Ok(Draft::Write(kind.clone())))?;
    }
    record(ledger, &who, &result, &events)?;
    record_resolutions(ledger, &who, &result)?;
    let report = Report::new(
        format!(
            "{md}\nreport: {}\n        {}",
            md_path.display(),
            json_path.display()
        ),
        json,
    );
    let n = result.conflict_count();
    if n > 0 {
        return Err(CommandError::new(Refusal::Conflicts { files: n })
            .with_report(report)
            .into());
    }
    Ok(report)
}

/// Refuses, before anything moves, an integration that would add resolve tasks
/// when `who` is an instance of a role the board takes none from (format 2).
fn check_may_add_resolve_tasks(
    ledger: &crate::ledger::Ledger,
    who: &str,
    r: &Integration,
) -> Result<()> {
    let Ok(me) = who.parse::<crate::ids::InstanceId>() else {
        return Ok(());
    };
    if crate::board::RESOLVE_TASK_ADDERS.contains(&me.role()) {
        return Ok(());
    }
    let board = ledger.read(|s| s.full_board())?;
    if board.config.as_ref().is_none_or(|c| c.board_format() < 2) {
        return Ok(());
    }
    let needed = r
        .branches
        .iter()
        .filter(|b| resolve_task_needed(&board, b).is_some())
        .count();
    if needed > 0 {
        anyhow::bail!(
            "{me} may not add the resolve tasks this integration leaves ({needed} branch(es) in conflict; only the integrator adds them): run `mara integrate` as {}#<n> (--as) or without an instance identity, or see the conflicts with `mara integrate --plan`; nothing was moved",
            crate::board::INTEGRATOR_ROLE
        );
    }
    Ok(())
}

/// What `integrate --plan` prints: the matrix, the order, what would be fenced.
fn plan_report(r: &Integration) -> Report {
    let mut text = r.matrix.text();
    for w in &r.fenced {
        text.push_str(&format!(
            "would fence {} commit(s) of {} by {}: {}\n",
            w.commits.len(),
            crate::board::one_line(&w.task, 40),
            crate::board::one_line(&w.instance, 40),
            crate::board::one_line(&w.reason, 200)
        ));
    }
    Report::new(
        text.trim_end().to_owned(),
        serde_json::json!({
            "matrix": r.matrix,
            "fenced": r.fenced,
            "held_back": r.held_back,
            "unattributed": r.unattributed,
        }),
    )
}

/// Every conflicted file is an event, so `mara log --type conflict` lists them;
/// once per clash (file, branch and both sides' commits): a re-run that meets the
/// same clash records nothing new. Then what merged, and what was fenced.
fn record(
    ledger: &crate::ledger::Ledger,
    who: &str,
    r: &Integration,
    events: &[(git2::Oid, crate::board::Event)],
) -> Result<()> {
    let recorded: std::collections::BTreeSet<_> = events
        .iter()
        .filter_map(|(_, e)| match &e.kind {
            EventKind::Conflict {
                file,
                branch,
                ours: Some(ours),
                theirs: Some(theirs),
                ..
            } => Some((file, branch, ours, theirs)),
            _ => None,
        })
        .collect();
    for b in &r.branches {
        let [ours, theirs] = b.sides.clone().map_or([None, None], |s| s.map(Some));
        for c in &b.conflicts {
            if let (Some(o), Some(t)) = (&ours, &theirs) {
                if recorded.contains(&(&c.path, &b.branch, o, t)) {
                    continue;
                }
            }
            let mut instances = c.ours_by.instances.clone();
            instances.extend(c.theirs_by.instances.iter().cloned());
            instances.sort();
            instances.dedup();
            let mut tasks = c.ours_by.tasks.clone();
            tasks.extend(c.theirs_by.tasks.iter().cloned());
            tasks.sort();
            tasks.dedup();
            let kind = EventKind::Conflict {
                file: c.path.clone(),
                branch: b.branch.clone(),
                kind: c.kind.as_str().to_owned(),
                instances,
                tasks,
                action: c.action.clone(),
                ours: ours.clone(),
                theirs: theirs.clone(),
            };
            ledger.append(who, |_, _| Ok(Draft::Write(kind.clone())))?;
        }
    }
    let merged: Vec<&str> = r
        .branches
        .iter()
        .filter(|b| b.result == integrate::Outcome::Merged)
        .map(|b| b.branch.as_str())
        .collect();
    if !merged.is_empty() {
        let kind = EventKind::Message {
            to: None,
            task: None,
            reply_to: None,
            kind: "integration".into(),
            text: format!("merged {} into {}", merged.join(", "), r.into),
        };
        ledger.append(who, |_, _| Ok(Draft::Write(kind.clone())))?;
    }
    // One `fenced` event per group of fenced commits, unless the log has it
    // already (a re-run finds the same commits again).
    for w in &r.fenced {
        let kind = EventKind::Fenced {
            task: w.task.clone(),
            instance: w.instance.clone(),
            claim: w.claim.clone(),
            commits: w.commits.clone(),
            reason: w.reason.clone(),
        };
        if events.iter().any(|(_, e)| e.kind == kind) {
            continue;
        }
        ledger.append(who, |_, _| Ok(Draft::Write(kind.clone())))?;
    }
    Ok(())
}

/// Whether branch `b`'s integration needs a resolve task on `board`: `None` when
/// it left no new conflicted merge (clean, or its conflicts branch carries a
/// resolution and was not moved) or an unfinished resolve task is for it already;
/// `Some(None)` for a first task; `Some(Some(old))` when the conflicts branch was
/// re-made with other sides than those `old` records (nobody had committed on it):
/// a new task replaces it.
fn resolve_task_needed<'b>(
    board: &'b crate::board::Board,
    b: &integrate::BranchResult,
) -> Option<Option<&'b crate::board::Task>> {
    let cb = b.conflict_branch.as_deref()?;
    if b.conflicts.is_empty() || b.conflicts[0].action.contains("was not moved") {
        return None;
    }
    let open = board
        .tasks
        .values()
        .find(|t| integrate::resolve::branch_of_task(board, t) == Some(cb) && !t.status.is_final());
    let Some(open) = open else {
        return Some(None);
    };
    let sides = b.sides.as_ref().map(|[o, t]| (o.as_str(), t.as_str()));
    match &open.resolves {
        Some(x) if Some((x.ours.as_str(), x.theirs.as_str())) != sides => Some(Some(open)),
        _ => None,
    }
}

/// A `resolved` event per merged resolution, and a resolve task (for the run's
/// resolver role) per branch whose conflicts were just put on a conflicts branch.
fn record_resolutions(ledger: &crate::ledger::Ledger, who: &str, r: &Integration) -> Result<()> {
    let board = ledger.read(|s| s.full_board())?;
    for res in &r.resolutions {
        let Some(commit) = &res.merged else {
            continue;
        };
        let task = board
            .tasks
            .values()
            .filter(|t| {
                t.branch.as_deref() == Some(res.branch.as_str())
                    || integrate::resolve::branch_of_task(&board, t) == Some(res.branch.as_str())
            })
            .map(|t| t.id.clone())
            .next_back();
        let kind = EventKind::Resolved {
            branch: res.branch.clone(),
            commit: commit.clone(),
            files: res.files.clone(),
            by: res.by.clone(),
            task,
        };
        ledger.append(who, |_, _| Ok(Draft::Write(kind.clone())))?;
    }
    let config = board
        .config
        .clone()
        .unwrap_or_else(|| crate::board::RunConfig::new(ledger.run().clone(), 0));
    let role = config.resolver().map(str::to_owned);
    for b in &r.branches {
        let (Some(cb), Some(old)) = (&b.conflict_branch, resolve_task_needed(&board, b)) else {
            continue;
        };
        let sides = b.sides.as_ref().map(|[o, t]| (o.as_str(), t.as_str()));
        let stem = cb.rsplit('/').next().unwrap_or(cb);
        // The first of the ids the board allows for the branch that is free; none
        // left (or a name no task id can hold): the report is all there is.
        let Some(id) = crate::board::resolve_task_ids(stem)
            .into_iter()
            .find(|id| !board.tasks.contains_key(id))
        else {
            continue;
        };
        if let Some(old) = old {
            let kind = EventKind::TaskCancel {
                task: old.id.clone(),
                reason: Some(format!(
                    "the conflict on {cb} changed (a new merge of {}): {id} replaces it",
                    b.branch
                )),
                drop_deps: true,
            };
            ledger.append(who, |_, _| Ok(Draft::Write(kind.clone())))?;
        }
        // What the task resolves is a field the board checks (format 2); a format 1
        // run has only the body to say it.
        let resolves = match (config.board_format(), sides) {
            (2.., Some((ours, theirs))) => Some(crate::board::Resolves {
                branch: cb.clone(),
                ours: ours.to_owned(),
                theirs: theirs.to_owned(),
            }),
            _ => None,
        };
        let task = crate::board::NewTask {
            id,
            title: format!("resolve the conflict of {} on {cb}", b.branch),
            deps: vec![],
            // Reserves the conflicted files (a name that reads as a glob is left out).
            paths: b
                .conflicts
                .iter()
                .map(|c| c.path.clone())
                .filter(|p| !p.contains(['*', '?', '[', ']', '{', '}', '\\']))
                .collect(),
            body: Some(integrate::resolve::task_body(
                r,
                &b.branch,
                cb,
                &b.conflicts,
            )),
            role: role.clone(),
            priority: 0,
            resolves,
            status: None,
            claimed_by: None,
        };
        let kind = EventKind::TaskAdd { task };
        ledger.append(who, |_, _| Ok(Draft::Write(kind.clone())))?;
    }
    Ok(())
}
