//! The resolution loop: each conflict the integrator leaves is a task for the
//! resolver role, on `mara/<run>/conflicts/<role>_<n>` (the merge with diff3
//! markers). Whoever resolves it commits on that branch; `integrate --continue`
//! (and every re-run of `integrate`) checks a branch that carries commits of its
//! own (no conflict markers left in any file it changes against the integration
//! branch; it contains both sides of the conflicted merge) and merges it, or says
//! what is left. Such a branch is never moved by the integrator again.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write;
use std::path::Path;

use anyhow::Result;
use git2::{Commit, Oid, Repository};
use serde::Serialize;

use super::{is_binary, FileConflict, Integration};
use crate::board::one_line;
use crate::ids::RunId;
use crate::trailers;

/// The subject that starts the integrator's conflicted merge commits.
pub const CONFLICTED: &str = "conflicted merge of ";

/// Whether `c` is a conflicted merge the integrator made.
fn is_conflicted_merge(c: &Commit) -> bool {
    c.parent_count() == 2 && c.summary().is_some_and(|s| s.starts_with(CONFLICTED))
}

/// The conflicted merge a conflicts branch at `tip` starts from (following first
/// parents), and whether commits of someone else's are on top of it.
fn start_of(repo: &Repository, tip: Oid) -> Result<Option<(Commit<'_>, bool)>> {
    let mut c = repo.find_commit(tip)?;
    for depth in 0..10_000 {
        if is_conflicted_merge(&c) {
            return Ok(Some((c, depth > 0)));
        }
        match c.parent(0) {
            Ok(p) => c = p,
            Err(_) => break,
        }
    }
    Ok(None)
}

/// Whether the conflicts branch at `tip` carries commits of its own (a resolution,
/// maybe unfinished): then the integrator never moves it.
pub fn has_own_commits(repo: &Repository, tip: Oid) -> Result<bool> {
    Ok(match start_of(repo, tip)? {
        Some((_, own)) => own,
        // Not the integrator's at all: someone else's branch.
        None => true,
    })
}

/// The files of `tree` that differ from `against` and hold conflict-marker lines.
pub fn files_with_markers(repo: &Repository, against: Oid, tip: Oid) -> Result<Vec<String>> {
    let old = repo.find_commit(against)?.tree()?;
    let new = repo.find_commit(tip)?.tree()?;
    let diff = repo.diff_tree_to_tree(Some(&old), Some(&new), None)?;
    let mut out = vec![];
    for d in diff.deltas() {
        let f = d.new_file();
        if f.id().is_zero() {
            continue;
        }
        let Ok(blob) = repo.find_blob(f.id()) else {
            continue;
        };
        let data = blob.content();
        if is_binary(data) {
            continue;
        }
        let text = String::from_utf8_lossy(data);
        if text.lines().any(|l| {
            l.starts_with("<<<<<<< ") || l.starts_with(">>>>>>> ") || l.starts_with("||||||| ")
        }) {
            if let Some(p) = f.path() {
                out.push(p.to_string_lossy().into_owned());
            }
        }
    }
    Ok(out)
}

/// The resolve task of a conflicts branch, as the board has it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ResolveTask {
    pub id: String,
    pub done: bool,
    /// Who holds it, when it is claimed.
    pub holder: Option<String>,
    /// The two commits the conflicted merge joined, as the task records them
    /// (format 2): the resolution is checked against these, not against what the
    /// branch says of itself.
    pub sides: Option<[Oid; 2]>,
}

/// The conflicts branch a resolve task is for. In a format 2 run only its
/// `resolves` field, which the board checks, names it; in a format 1 run (made
/// before the field) the branch its body says to switch to.
pub fn branch_of_task<'t>(
    board: &crate::board::Board,
    t: &'t crate::board::Task,
) -> Option<&'t str> {
    if let Some(r) = &t.resolves {
        return Some(&r.branch);
    }
    if board.config.as_ref().is_some_and(|c| c.board_format() >= 2)
        || !t.id.as_str().starts_with("resolve-")
    {
        return None;
    }
    let body = t.body.as_deref()?;
    let rest = &body[body.find("`git switch ")? + "`git switch ".len()..];
    Some(&rest[..rest.find('`')?])
}

/// The resolve task of every conflicts branch on `board`: one not yet done when
/// there is one (the resolution waits for it), else a done one. Cancelled tasks do
/// not count: a branch without a task is checked on its own.
pub fn resolve_tasks(board: &crate::board::Board) -> BTreeMap<String, ResolveTask> {
    use crate::board::TaskStatus;
    let mut out: BTreeMap<String, ResolveTask> = BTreeMap::new();
    for t in board.tasks.values() {
        let Some(cb) = branch_of_task(board, t) else {
            continue;
        };
        if t.status == TaskStatus::Cancelled {
            continue;
        }
        let sides = t
            .resolves
            .as_ref()
            .and_then(|r| Some([Oid::from_str(&r.ours).ok()?, Oid::from_str(&r.theirs).ok()?]));
        let rt = ResolveTask {
            id: t.id.to_string(),
            // A format 1 run puts a done resolve task in review (with a review
            // step): its holder is done; whether unreviewed work may merge is
            // `integrate`'s own check. In format 2 it is done at once.
            done: matches!(t.status, TaskStatus::Done | TaskStatus::Review),
            holder: t.claimed_by.as_ref().map(|i| i.to_string()),
            sides,
        };
        match out.get(cb) {
            Some(old) if !old.done => {}
            _ => {
                out.insert(cb.to_owned(), rt);
            }
        }
    }
    out
}

/// The conflicts branches of `run` with commits of their own whose resolve task is
/// done and that the integration branch `into` does not have yet: what `mara run`'s
/// integrator step merges (nothing when `into` does not exist).
pub fn pending(
    repo: &Repository,
    run: &RunId,
    into: &str,
    tasks: &BTreeMap<String, ResolveTask>,
) -> Result<Vec<String>> {
    let Ok(current) = repo.refname_to_id(&format!("refs/heads/{into}")) else {
        return Ok(vec![]);
    };
    let mut out = vec![];
    for (branch, tip) in conflict_branches(repo, run)? {
        if !tasks.get(&branch).is_some_and(|t| t.done) || !has_own_commits(repo, tip)? {
            continue;
        }
        if tip != current && !repo.graph_descendant_of(current, tip)? {
            out.push(branch);
        }
    }
    Ok(out)
}

/// A conflicts branch with commits of its own, and what became of it.
#[derive(Serialize, Clone, Debug)]
pub struct Resolution {
    pub branch: String,
    pub tip: String,
    /// The merge commit on the integration branch, when it merged.
    pub merged: Option<String>,
    /// Who resolved it (the `Mara-Instance` of its commits, else their author).
    pub by: Option<String>,
    /// The files that were in conflict.
    pub files: Vec<String>,
    /// Why it did not merge, when it did not.
    pub left: Option<String>,
    /// Its resolve task, when the board has one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub task: Option<String>,
    /// Not merged because its resolve task is not done: who holds it (empty when
    /// nobody does).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub waiting_for: Option<String>,
}

/// The conflicts branches of a run: `mara/<run>/conflicts/*`.
pub fn conflict_branches(repo: &Repository, run: &RunId) -> Result<Vec<(String, Oid)>> {
    let prefix = format!("mara/{run}/conflicts/");
    let mut out = vec![];
    for b in repo.branches(Some(git2::BranchType::Local))? {
        let (b, _) = b?;
        if let (Some(name), Some(tip)) = (b.name()?, b.get().target()) {
            if name.starts_with(&prefix) {
                out.push((name.to_owned(), tip));
            }
        }
    }
    out.sort();
    Ok(out)
}

/// Merges every resolved conflicts branch into the integration branch at `current`
/// (committing nothing to a ref); a branch whose resolve task (in `tasks`) is not
/// done waits for it. Returns where the integration branch is then and
/// every branch with commits of its own, merged or with what is left.
pub fn merge_resolutions(
    repo: &Repository,
    run: &RunId,
    into: &str,
    current: Oid,
    sig: &git2::Signature,
    tasks: &BTreeMap<String, ResolveTask>,
) -> Result<(Oid, Vec<Resolution>)> {
    let mut current = current;
    let mut out = vec![];
    for (branch, tip) in conflict_branches(repo, run)? {
        let start = match start_of(repo, tip)? {
            Some((start, true)) => start,
            Some((_, false)) => continue,
            None => {
                out.push(Resolution {
                    branch: branch.clone(),
                    tip: tip.to_string(),
                    merged: None,
                    by: None,
                    files: vec![],
                    left: Some(
                        "it is not built on the integrator's conflicted merge (was it moved?); reset it or delete it".into(),
                    ),
                    task: None,
                    waiting_for: None,
                });
                continue;
            }
        };
        let mut r = Resolution {
            branch: branch.clone(),
            tip: tip.to_string(),
            merged: None,
            by: resolver(repo, start.id(), tip, tasks.get(&branch))?,
            files: files_with_markers(repo, start.parent_id(0)?, start.id())?,
            left: None,
            task: tasks.get(&branch).map(|t| t.id.clone()),
            waiting_for: None,
        };
        if tip == current || repo.graph_descendant_of(current, tip)? {
            // Merged already (an earlier --continue).
            continue;
        }
        let markers = files_with_markers(repo, current, tip)?;
        // The sides the board recorded when there is a task (format 2), else those
        // of the conflicted merge the branch starts from.
        let sides = match tasks.get(&branch).and_then(|t| t.sides) {
            Some(s) => s,
            None => [start.parent_id(0)?, start.parent_id(1)?],
        };
        if let Some(t) = tasks.get(&branch).filter(|t| !t.done) {
            let holder = t.holder.clone().unwrap_or_default();
            r.left = Some(format!(
                "waiting for its resolve task {} ({})",
                one_line(&t.id, 80),
                if holder.is_empty() {
                    "not claimed yet".to_owned()
                } else {
                    format!("held by {}", one_line(&holder, 64))
                }
            ));
            r.waiting_for = Some(holder);
        } else if !markers.is_empty() {
            r.left = Some(format!(
                "conflict markers are left in {}",
                markers
                    .iter()
                    .map(|f| one_line(f, 200))
                    .collect::<Vec<_>>()
                    .join(", ")
            ));
        } else if let Some(s) = sides
            .iter()
            .find(|s| !(tip == **s || repo.graph_descendant_of(tip, **s).unwrap_or(false)))
        {
            r.left = Some(format!("it does not contain {s}, one side of the conflict"));
        } else if let Some(extra) = changes_outside_conflicts(repo, &branch, sides, tip, current)? {
            r.left = Some(extra);
        } else {
            let (ours, theirs) = (repo.find_commit(current)?, repo.find_commit(tip)?);
            let mut index = repo.merge_commits(&ours, &theirs, None)?;
            if index.has_conflicts() {
                let files: Vec<String> = index
                    .conflicts()?
                    .filter_map(|c| c.ok())
                    .filter_map(|c| c.our.or(c.their).or(c.ancestor))
                    .map(|e| String::from_utf8_lossy(&e.path).into_owned())
                    .collect();
                r.left = Some(format!(
                    "it conflicts with {into} again in {}",
                    files.join(", ")
                ));
            } else {
                let tree = repo.find_tree(index.write_tree_to(repo)?)?;
                let mut msg = format!("merge the resolution {branch} into {into}\n\n");
                let _ = writeln!(
                    msg,
                    "Resolves the conflict in {}{}.\n\nMara-Run: {run}",
                    r.files.join(", "),
                    r.by.as_ref()
                        .map(|b| format!(", by {b}"))
                        .unwrap_or_default()
                );
                let c = repo.commit(None, sig, sig, &msg, &tree, &[&ours, &theirs])?;
                current = c;
                r.merged = Some(c.to_string());
            }
        }
        out.push(r);
    }
    Ok((current, out))
}

/// Why the resolution at `tip` of `branch` may not merge unreviewed, if it changes
/// anything besides the files in conflict: the files where it differs from the
/// automatic merge of both `sides` other than those the merge left in conflict
/// (and the second copy `<path>~<stem>` of a binary one). A file the resolution
/// brought to what the integration branch (`into`) has since made of it is no
/// change of its own (it merged the integration branch in).
fn changes_outside_conflicts(
    repo: &Repository,
    branch: &str,
    sides: [Oid; 2],
    tip: Oid,
    into: Oid,
) -> Result<Option<String>> {
    let (ours, theirs) = (repo.find_commit(sides[0])?, repo.find_commit(sides[1])?);
    let mut opts = git2::MergeOptions::new();
    opts.find_renames(true);
    let mut index = repo.merge_commits(&ours, &theirs, Some(&opts))?;
    let mut conflicted = BTreeSet::new();
    for c in index.conflicts()? {
        let c = c?;
        for e in [c.ancestor, c.our, c.their].into_iter().flatten() {
            conflicted.insert(String::from_utf8_lossy(&e.path).into_owned());
        }
    }
    for p in &conflicted {
        index.conflict_remove(Path::new(p))?;
    }
    let auto = repo.find_tree(index.write_tree_to(repo)?)?;
    let (ours_tree, tip_tree) = (ours.tree()?, repo.find_commit(tip)?.tree()?);
    let into_tree = repo.find_commit(into)?.tree()?;
    let at = |t: &git2::Tree, p: &str| t.get_path(Path::new(p)).ok().map(|e| e.id());
    let stem = branch.rsplit('/').next().unwrap_or(branch);
    let diff = repo.diff_tree_to_tree(Some(&auto), Some(&tip_tree), None)?;
    let mut extra = BTreeSet::new();
    for d in diff.deltas() {
        for f in [d.old_file(), d.new_file()] {
            let Some(p) = f.path().map(|p| p.to_string_lossy().into_owned()) else {
                continue;
            };
            let copy = p
                .rsplit_once('~')
                .is_some_and(|(orig, s)| s == stem && conflicted.contains(orig));
            let from_into =
                at(&tip_tree, &p) == at(&into_tree, &p) && at(&into_tree, &p) != at(&ours_tree, &p);
            if !conflicted.contains(&p) && !copy && !from_into {
                extra.insert(p);
            }
        }
    }
    if extra.is_empty() {
        return Ok(None);
    }
    let list = |l: &BTreeSet<String>| {
        l.iter()
            .map(|f| one_line(f, 200))
            .collect::<Vec<_>>()
            .join(", ")
    };
    Ok(Some(format!(
        "it also changes {}, which {} not in conflict: a resolution may change only {} (nobody reviews it but these checks), so undo {}",
        list(&extra),
        if extra.len() == 1 { "is" } else { "are" },
        list(&conflicted),
        if extra.len() == 1 { "that change" } else { "those changes" },
    )))
}

/// Who resolved: the first `Mara-Instance` of the commits after the conflicted
/// merge, else the holder of the resolve task, else the tip's author.
fn resolver(
    repo: &Repository,
    start: Oid,
    tip: Oid,
    task: Option<&ResolveTask>,
) -> Result<Option<String>> {
    let mut walk = repo.revwalk()?;
    walk.push(tip)?;
    walk.hide(start)?;
    for oid in walk {
        let c = repo.find_commit(oid?)?;
        if let Some(i) = trailers::parse(c.message().unwrap_or_default())
            .instances
            .into_iter()
            .next()
        {
            return Ok(Some(i));
        }
    }
    if let Some(h) = task.and_then(|t| t.holder.clone()) {
        return Ok(Some(h));
    }
    Ok(repo
        .find_commit(tip)?
        .author()
        .name()
        .map(|n| one_line(n, 64)))
}

/// Longest body of a resolve task: the board takes 64 KiB.
const MAX_BODY: usize = 48 * 1024;

/// The body of the task that resolves `branch`'s conflicts: what to do, and each
/// file's two sides and hunks.
pub fn task_body(
    i: &Integration,
    branch: &str,
    conflict_branch: &str,
    files: &[FileConflict],
) -> String {
    let mut s = format!(
        "Resolve the conflict of merging `{branch}` into `{}`.\n\n\
         1. `git switch {conflict_branch}` (it holds the merge, with diff3 markers in text files).\n\
         2. Resolve every file below, keeping what both sides meant; remove every marker; change no other file (a resolution that does is refused: nobody reviews it).\n\
         3. Commit on that branch, then `mara done <this task>`.\n\
         4. `mara integrate --continue` merges it (a branch with markers left is refused, naming the files).\n",
        i.into
    );
    for f in files {
        let _ = writeln!(
            s,
            "\n## `{}` ({})\n\n- `{}`: {}\n- `{branch}`: {}\n",
            f.path,
            f.kind.as_str(),
            i.into,
            f.ours_by.describe(),
            f.theirs_by.describe()
        );
        if !f.base.is_empty() {
            let _ = writeln!(s, "- base commit: `{}`", f.base);
        }
        for h in i.hunk_lines(branch, &f.path) {
            let _ = writeln!(s, "{h}");
        }
        let _ = writeln!(
            s,
            "\n```diff\n{}```\n\n```diff\n{}```",
            f.diff_ours, f.diff_theirs
        );
    }
    if s.len() > MAX_BODY {
        let mut cut = MAX_BODY;
        while !s.is_char_boundary(cut) {
            cut -= 1;
        }
        s.truncate(cut);
        s.push_str("\n\n(cut: see integrator.md for the rest)\n");
    }
    s
}
