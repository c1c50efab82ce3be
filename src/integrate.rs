//! The integrator: three-way-merges the instance branches of a run into one
//! integration branch, and reports every conflict instead of resolving it silently.
//!
//! A clean merge becomes a merge commit on the integration branch whose message
//! names the instance and its tasks. A branch that conflicts is left out of the
//! integration branch; the same merge, with conflict markers in text files and both
//! versions kept for binary and delete-vs-modify conflicts, is committed on
//! `mara/<run>/conflicts/<role>_<n>` so nothing is lost. Every conflicted file is
//! reported with the base, ours and theirs as unified diffs (rendered with
//! `similar`), the instances and tasks that touched it, and what was done.
//!
//! Everything is computed first; branches move only at the end, each with a
//! compare-and-swap, so an error changes no branch.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write;

use anyhow::{anyhow, bail, Context, Result};
use git2::{IndexEntry, Oid, Repository};
use serde::Serialize;
use similar::TextDiff;

use crate::board::one_line;
use crate::ids::{InstanceId, RunId};
use crate::trailers;

pub mod fence;
pub mod matrix;
pub mod resolve;

use fence::{Claims, FencedWork, HeldBack, Rewriter, Unattributed};

/// One conflicted file of one branch's merge.
#[derive(Serialize, Clone, Debug)]
pub struct FileConflict {
    pub path: String,
    pub kind: ConflictKind,
    /// Who touched the file on the integration side and on the merged branch.
    pub ours_by: Touch,
    pub theirs_by: Touch,
    /// base -> ours and base -> theirs as unified diffs (empty for binary files).
    pub diff_ours: String,
    pub diff_theirs: String,
    /// What the integrator did with it.
    pub action: String,
    /// The base commit of the conflict (the merge base of both sides).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub base: String,
}

/// Instances and tasks (from branch names and commit trailers) that changed a file.
#[derive(Serialize, Clone, Debug, Default)]
pub struct Touch {
    pub instances: Vec<String>,
    pub tasks: Vec<String>,
}

impl Touch {
    fn describe(&self) -> String {
        if self.instances.is_empty() && self.tasks.is_empty() {
            return "nobody recorded".into();
        }
        let who = if self.instances.is_empty() {
            "an unnamed instance".to_owned()
        } else {
            self.instances.join(", ")
        };
        if self.tasks.is_empty() {
            who
        } else {
            format!("{who} ({})", self.tasks.join(", "))
        }
    }
}

/// What kind of conflict a file is in; stored as the strings of `integrator.json`
/// and conflict events.
#[derive(Serialize, Clone, Copy, Debug, PartialEq, Eq)]
pub enum ConflictKind {
    /// Both sides changed the same lines of a text file.
    #[serde(rename = "content")]
    Content,
    /// Both sides changed a binary file.
    #[serde(rename = "binary")]
    Binary,
    /// One side deleted the file, the other changed it.
    #[serde(rename = "delete/modify")]
    DeleteModify,
    /// Both sides added a text file of the same name.
    #[serde(rename = "add/add")]
    AddAdd,
}

impl ConflictKind {
    /// Which conflict `c` is; `binary` when any side of it is a binary file.
    fn of(c: &git2::IndexConflict, binary: bool) -> ConflictKind {
        match (&c.ancestor, &c.our, &c.their) {
            (_, None, Some(_)) | (_, Some(_), None) => ConflictKind::DeleteModify,
            (None, Some(_), Some(_)) if !binary => ConflictKind::AddAdd,
            _ if binary => ConflictKind::Binary,
            _ => ConflictKind::Content,
        }
    }

    /// The name `integrator.json` and the report use.
    pub fn as_str(self) -> &'static str {
        match self {
            ConflictKind::Content => "content",
            ConflictKind::Binary => "binary",
            ConflictKind::DeleteModify => "delete/modify",
            ConflictKind::AddAdd => "add/add",
        }
    }
}

/// How merging one branch ended; stored as the strings of `integrator.json`.
#[derive(Serialize, Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// A merge commit on the integration branch.
    #[serde(rename = "merged")]
    Merged,
    /// The integration branch has the branch already.
    #[serde(rename = "up to date")]
    UpToDate,
    /// Left out; the merge with conflict markers is on the conflicts branch.
    #[serde(rename = "conflicts")]
    Conflicts,
}

impl Outcome {
    /// The name `integrator.json` and the report use.
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Merged => "merged",
            Outcome::UpToDate => "up to date",
            Outcome::Conflicts => "conflicts",
        }
    }
}

/// What happened to one branch.
#[derive(Serialize, Clone, Debug)]
pub struct BranchResult {
    pub branch: String,
    pub instance: Option<String>,
    pub tasks: Vec<String>,
    pub result: Outcome,
    pub commit: Option<String>,
    /// The branch holding the merge with conflict markers.
    pub conflict_branch: Option<String>,
    pub conflicts: Vec<FileConflict>,
    /// When it conflicts: the commits the merge joined (the integration branch's,
    /// the branch's).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sides: Option<[String; 2]>,
}

/// The whole integration.
#[derive(Serialize, Clone, Debug)]
pub struct Integration {
    pub run: String,
    pub into: String,
    pub base: String,
    pub tip: String,
    pub branches: Vec<BranchResult>,
    /// Commits made under lost claims, left out.
    #[serde(default)]
    pub fenced: Vec<FencedWork>,
    /// Good commits left out because they build on fenced ones.
    #[serde(default)]
    pub held_back: Vec<HeldBack>,
    /// Merged commits that name no task and no claim.
    #[serde(default)]
    pub unattributed: Vec<Unattributed>,
    /// Every branch against the target and each other, before any merge; the order.
    pub matrix: matrix::Matrix,
    /// Conflicts branches with commits of their own: merged, or what is left.
    #[serde(default)]
    pub resolutions: Vec<resolve::Resolution>,
    /// Every done task: its commits (by trailer), the branches holding them, and
    /// whether the integration branch has them all.
    #[serde(default)]
    pub tasks: Vec<TaskAccount>,
}

/// One done task's work (`integrated`: every commit of it that is not fenced is in
/// the integration branch).
#[derive(Serialize, Clone, Debug)]
pub struct TaskAccount {
    pub task: String,
    pub commits: Vec<crate::commands::log::NamedCommit>,
    pub integrated: bool,
}

/// The accounts of `done` tasks once the integration branch is at `tip`.
pub fn task_accounts(
    repo: &Repository,
    into: &str,
    tip: Oid,
    done: &BTreeSet<String>,
    fenced: &[FencedWork],
) -> Result<Vec<TaskAccount>> {
    let fenced: BTreeSet<&str> = fenced
        .iter()
        .flat_map(|w| w.commits.iter().map(String::as_str))
        .collect();
    let mut tips: Vec<(String, Oid)> = crate::commands::log::local_tips(repo)?
        .into_iter()
        .filter(|(n, _)| n != into)
        .collect();
    tips.push((into.to_owned(), tip));
    let mut named = crate::commands::log::commits_naming_tasks(repo, &tips, done)?;
    Ok(done
        .iter()
        .map(|t| {
            let commits = named.remove(t).unwrap_or_default();
            let good: Vec<_> = commits
                .iter()
                .filter(|c| !fenced.contains(c.commit.as_str()))
                .collect();
            let integrated =
                !good.is_empty() && good.iter().all(|c| c.branches.iter().any(|b| b == into));
            TaskAccount {
                task: t.clone(),
                commits,
                integrated,
            }
        })
        .collect())
}

impl Integration {
    /// The clashing hunks of `path` merging `branch`, from the matrix (the first pair
    /// with `branch` that clashes in `path`), one line each.
    pub fn hunk_lines(&self, branch: &str, path: &str) -> Vec<String> {
        self.matrix
            .clashes
            .iter()
            .filter(|c| c.b == branch || c.a == branch)
            .find_map(|c| c.files.iter().find(|x| x.path == path))
            .map(|f| {
                f.hunks
                    .iter()
                    .map(|h| {
                        format!(
                            "- hunk: base lines {}+{}, one side {}+{}, the other {}+{}",
                            h.base.start, h.base.len, h.a.start, h.a.len, h.b.start, h.b.len
                        )
                    })
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Files still in conflict.
    pub fn conflict_count(&self) -> usize {
        self.branches.iter().map(|b| b.conflicts.len()).sum()
    }
}

/// The instance a branch `mara/<run>/<role>_<n>` belongs to.
pub fn branch_instance(run: &RunId, branch: &str) -> Option<InstanceId> {
    let stem = branch.strip_prefix(&format!("mara/{run}/"))?;
    InstanceId::from_file_stem(stem).ok()
}

/// The instance branches of a run: `mara/<run>/<role>_<n>`, sorted.
pub fn instance_branches(repo: &Repository, run: &RunId) -> Result<Vec<String>> {
    let mut out = vec![];
    for b in repo.branches(Some(git2::BranchType::Local))? {
        let (b, _) = b?;
        if let Some(name) = b.name()? {
            if branch_instance(run, name).is_some() {
                out.push(name.to_owned());
            }
        }
    }
    out.sort();
    Ok(out)
}

fn is_binary(data: &[u8]) -> bool {
    data.iter().take(8000).any(|b| *b == 0)
}

fn blob_bytes(repo: &Repository, e: &Option<IndexEntry>) -> Result<Option<Vec<u8>>> {
    match e {
        Some(e) => Ok(Some(repo.find_blob(e.id)?.content().to_vec())),
        None => Ok(None),
    }
}

/// A conflicted entry of a merge, read: its path, the three versions, its kind.
struct Sides {
    path: String,
    base: Option<Vec<u8>>,
    ours: Option<Vec<u8>>,
    theirs: Option<Vec<u8>>,
    binary: bool,
    kind: ConflictKind,
}

impl Sides {
    fn of(repo: &Repository, c: &git2::IndexConflict) -> Result<Sides> {
        let entry = c
            .our
            .as_ref()
            .or(c.their.as_ref())
            .or(c.ancestor.as_ref())
            .expect("a conflict has at least one side");
        let path = String::from_utf8_lossy(&entry.path).into_owned();
        let base = blob_bytes(repo, &c.ancestor)?;
        let ours = blob_bytes(repo, &c.our)?;
        let theirs = blob_bytes(repo, &c.their)?;
        let binary = [&base, &ours, &theirs]
            .iter()
            .any(|x| x.as_deref().is_some_and(is_binary));
        let kind = ConflictKind::of(c, binary);
        Ok(Sides {
            path,
            base,
            ours,
            theirs,
            binary,
            kind,
        })
    }
}

/// A unified diff with line numbers, as people read them in review.
fn unified(from: &[u8], to: &[u8], from_name: &str, to_name: &str) -> String {
    let a = String::from_utf8_lossy(from);
    let b = String::from_utf8_lossy(to);
    TextDiff::from_lines(&a, &b)
        .unified_diff()
        .context_radius(3)
        .header(from_name, to_name)
        .to_string()
}

/// Who changed `path` in the commits of `tip` not reachable from `base`.
fn touched(
    repo: &Repository,
    run: &RunId,
    base: Oid,
    tip: Oid,
    path: &str,
    side: Option<&str>,
) -> Result<Touch> {
    let mut instances = BTreeSet::new();
    let mut tasks = BTreeSet::new();
    if let Some(b) = side.and_then(|b| branch_instance(run, b)) {
        instances.insert(b.to_string());
    }
    let mut walk = repo.revwalk()?;
    walk.push(tip)?;
    walk.hide(base)?;
    for oid in walk {
        let c = repo.find_commit(oid?)?;
        if c.parent_count() == 0 {
            continue;
        }
        // A merge counts when it brought the change in (its first parent, the
        // integration branch before it, differs): its trailers name the instance.
        let parent_tree = c.parent(0)?.tree()?;
        let tree = c.tree()?;
        let before = parent_tree
            .get_path(std::path::Path::new(path))
            .ok()
            .map(|e| e.id());
        let after = tree
            .get_path(std::path::Path::new(path))
            .ok()
            .map(|e| e.id());
        if before == after {
            continue;
        }
        let named = trailers::parse(c.message().unwrap_or_default());
        tasks.extend(named.tasks);
        instances.extend(named.instances);
    }
    Ok(Touch {
        instances: instances.into_iter().collect(),
        tasks: tasks.into_iter().collect(),
    })
}

/// Tasks named by `Mara-Task` trailers in `base..tip`.
fn branch_tasks(repo: &Repository, base: Oid, tip: Oid) -> Result<Vec<String>> {
    let mut tasks = BTreeSet::new();
    let mut walk = repo.revwalk()?;
    walk.push(tip)?;
    walk.hide(base)?;
    for oid in walk {
        let c = repo.find_commit(oid?)?;
        tasks.extend(trailers::parse(c.message().unwrap_or_default()).tasks);
    }
    Ok(tasks.into_iter().collect())
}

fn entry_at(template: &IndexEntry, path: &str, id: Oid) -> IndexEntry {
    IndexEntry {
        id,
        path: path.as_bytes().to_vec(),
        // Stage 0: a resolved entry.
        flags: 0,
        flags_extended: 0,
        ..clone_entry(template)
    }
}

fn clone_entry(e: &IndexEntry) -> IndexEntry {
    IndexEntry {
        ctime: e.ctime,
        mtime: e.mtime,
        dev: e.dev,
        ino: e.ino,
        mode: e.mode,
        uid: e.uid,
        gid: e.gid,
        file_size: e.file_size,
        id: e.id,
        flags: e.flags,
        flags_extended: e.flags_extended,
        path: e.path.clone(),
    }
}

struct Sig {
    name: String,
    email: String,
}

fn signature(s: &Sig) -> Result<git2::Signature<'static>> {
    Ok(git2::Signature::now(&s.name, &s.email)?)
}

/// A branch to move: its ref, the value it must still hold (`None`: must not
/// exist), and its new value.
pub type RefUpdate = (String, Option<Oid>, Oid);

/// Merges `branches` into `into` (created at their merge base when new), leaving
/// out the commits `claims` fences. Returns the result and the ref updates to make;
/// [`apply_updates`] makes them. `plan_only`: the matrix, the order and the fences,
/// no merge (`integrate --plan`).
pub fn integrate(
    repo: &Repository,
    run: &RunId,
    branches: &[String],
    (into, who): (&str, &str),
    claims: &Claims,
    plan_only: bool,
    resolve_tasks: &BTreeMap<String, resolve::ResolveTask>,
) -> Result<(Integration, Vec<RefUpdate>)> {
    if branches.is_empty() {
        bail!("there are no instance branches of run {run} to integrate (mara/{run}/<role>_<n>); name them with --branches");
    }
    let tips = branch_tips(repo, run, branches, into)?;
    let into_ref = format!("refs/heads/{into}");
    git2::Reference::is_valid_name(&into_ref)
        .then_some(())
        .ok_or_else(|| anyhow!("--into {into:?} is not a valid branch name"))?;
    let old_into = repo.refname_to_id(&into_ref).ok();
    let mut base = starting_point(repo, old_into, &tips)?;
    let merger = Merger::new(repo, run, into, who);
    // Resolved conflicts first: they bring both sides of an earlier conflict.
    let mut resolutions = vec![];
    if old_into.is_some() && !plan_only {
        let s = signature(&merger.sig)?;
        (base, resolutions) = resolve::merge_resolutions(repo, run, into, base, &s, resolve_tasks)?;
    }
    let mut rewriter = Rewriter::new(repo, claims);
    let mut effective = vec![];
    for (b, tip) in branches.iter().zip(tips) {
        // The branch without its fenced commits (itself when it has none).
        effective.push((b.clone(), rewriter.rewrite(b, tip, base)?));
    }
    let matrix = matrix::compute(repo, run, (into, base), &effective)?;
    let mut current = base;
    let mut results = vec![];
    let mut updates = vec![];
    let order = if plan_only {
        &[][..]
    } else {
        &matrix.order[..]
    };
    for b in order {
        let tip = effective
            .iter()
            .find(|(n, _)| n == b)
            .map(|(_, t)| *t)
            .expect("the order lists the branches");
        let step = merger.merge_branch(current, base, b, tip)?;
        current = step.into_tip;
        updates.extend(step.update);
        results.push(step.result);
    }
    if Some(current) != old_into {
        updates.insert(0, (into_ref, old_into, current));
    }
    Ok((
        Integration {
            run: run.to_string(),
            into: into.to_owned(),
            base: base.to_string(),
            tip: current.to_string(),
            branches: results,
            fenced: rewriter.fenced(),
            held_back: rewriter.held_back,
            unattributed: rewriter.unattributed,
            matrix,
            resolutions,
            tasks: vec![],
        },
        updates,
    ))
}

/// The tip of every branch to merge; none may be `into` itself.
fn branch_tips(
    repo: &Repository,
    run: &RunId,
    branches: &[String],
    into: &str,
) -> Result<Vec<Oid>> {
    let mut tips = vec![];
    for b in branches {
        if b == into {
            bail!("--into {into} is also listed as a branch to merge; pick another --into");
        }
        let r = repo
            .find_branch(b, git2::BranchType::Local)
            .map_err(|_| anyhow!("there is no branch {b}; list the run's branches with `git branch --list 'mara/{run}/*'`"))?;
        let tip = r
            .get()
            .target()
            .ok_or_else(|| anyhow!("branch {b} points at no commit"))?;
        tips.push(tip);
    }
    Ok(tips)
}

/// Where the integration branch starts: where it is now, else the branches' merge base.
fn starting_point(repo: &Repository, old_into: Option<Oid>, tips: &[Oid]) -> Result<Oid> {
    Ok(match (old_into, tips) {
        (Some(t), _) => t,
        // One branch has no common base with others (libgit2 wants two commits:
        // issue 13, part 8). Start where it forked from HEAD, as a run's branches
        // fork from HEAD, so its work still arrives as a merge commit; from its own
        // tip (nothing to merge) when HEAD contains it or shares no history with it.
        (None, [tip]) => repo
            .head()
            .ok()
            .and_then(|h| h.target())
            .and_then(|head| repo.merge_base(head, *tip).ok())
            .unwrap_or(*tip),
        (None, _) => repo
            .merge_base_many(tips)
            .context("the branches share no history to merge from")?,
    })
}

/// What merging one branch did: its result, where the integration branch is now,
/// and the conflicts branch to move, if any.
struct Step {
    result: BranchResult,
    into_tip: Oid,
    update: Option<RefUpdate>,
}

/// One branch being merged: its name and tip, and the integration side it meets.
struct Merging<'b> {
    branch: &'b str,
    tip: Oid,
    /// The integration branch before this merge.
    ours: Oid,
    /// Where the two sides forked (the integration's base when they share none).
    fork: Oid,
    /// The branch's last path component: `<role>_<n>` for an instance branch.
    stem: &'b str,
    /// Where the merge with conflict markers is kept.
    conflict_branch: String,
}

/// Merges branch after branch into the integration branch; commits nothing to a ref.
struct Merger<'r> {
    repo: &'r Repository,
    run: &'r RunId,
    into: &'r str,
    sig: Sig,
    opts: git2::MergeOptions,
}

impl<'r> Merger<'r> {
    fn new(repo: &'r Repository, run: &'r RunId, into: &'r str, who: &str) -> Self {
        let sig = Sig {
            name: crate::board::one_line(who, 64).replace(['<', '>'], ""),
            email: repo
                .config()
                .ok()
                .and_then(|c| c.get_string("user.email").ok())
                .unwrap_or_else(|| "mara@localhost".into()),
        };
        let mut opts = git2::MergeOptions::new();
        opts.find_renames(true);
        Merger {
            repo,
            run,
            into,
            sig,
            opts,
        }
    }

    /// Merges branch `b` at `tip` into the integration branch at `current`: a merge
    /// commit when clean, a commit with conflict markers for the conflicts branch
    /// when not, nothing when `current` has it already.
    fn merge_branch(&self, current: Oid, base: Oid, b: &str, tip: Oid) -> Result<Step> {
        let (repo, run, into) = (self.repo, self.run, self.into);
        let instance = branch_instance(run, b).map(|i| i.to_string());
        let merge_base = repo.merge_base(current, tip).ok();
        let tasks = match merge_base {
            Some(mb) => branch_tasks(repo, mb, tip)?,
            None => vec![],
        };
        let mut result = BranchResult {
            branch: b.to_owned(),
            instance: instance.clone(),
            tasks: tasks.clone(),
            result: Outcome::UpToDate,
            commit: None,
            conflict_branch: None,
            conflicts: vec![],
            sides: None,
        };
        if current == tip || repo.graph_descendant_of(current, tip)? {
            return Ok(Step {
                result,
                into_tip: current,
                update: None,
            });
        }
        let ours_c = repo.find_commit(current)?;
        let theirs_c = repo.find_commit(tip)?;
        let mut index = repo.merge_commits(&ours_c, &theirs_c, Some(&self.opts))?;
        if !index.has_conflicts() {
            let msg = merge_message(run, b, into, instance.as_deref(), &tasks);
            let tree = repo.find_tree(index.write_tree_to(repo)?)?;
            let s = signature(&self.sig)?;
            let c = repo.commit(None, &s, &s, &msg, &tree, &[&ours_c, &theirs_c])?;
            result.result = Outcome::Merged;
            result.commit = Some(c.to_string());
            return Ok(Step {
                result,
                into_tip: c,
                update: None,
            });
        }
        // Conflicts: report each file, and keep the merge with markers on a branch of
        // its own so neither side is lost.
        let stem = b.rsplit('/').next().unwrap_or(b);
        let m = Merging {
            branch: b,
            tip,
            ours: current,
            fork: merge_base.unwrap_or(base),
            stem,
            conflict_branch: format!("mara/{run}/conflicts/{stem}"),
        };
        let conflicts: Vec<git2::IndexConflict> = index.conflicts()?.collect::<Result<_, _>>()?;
        let mut files = vec![];
        for c in &conflicts {
            files.push(self.conflict_file(&m, &mut index, c)?);
        }
        let tree = repo.find_tree(index.write_tree_to(repo)?)?;
        let s = signature(&self.sig)?;
        let cmsg = format!(
            "conflicted merge of {b} into {into}\n\n{} file(s) in conflict; markers left in text files.\n\nMara-Run: {run}\n",
            files.len()
        );
        let cc = repo.commit(None, &s, &s, &cmsg, &tree, &[&ours_c, &theirs_c])?;
        let cref = format!("refs/heads/{}", m.conflict_branch);
        let old = repo.refname_to_id(&cref).ok();
        // A conflicts branch with commits of its own (a resolution) never moves.
        let kept = match old {
            Some(o) => resolve::has_own_commits(repo, o)?,
            None => false,
        };
        let update = (!kept).then(|| (cref.clone(), old, cc));
        if kept {
            for f in &mut files {
                f.action = format!(
                    "left out of {into}; {} has commits of its own (a resolution) and was not moved: finish it and run `mara integrate --continue`",
                    m.conflict_branch
                );
            }
        }
        result.result = Outcome::Conflicts;
        result.commit = Some(cc.to_string());
        result.conflict_branch = Some(m.conflict_branch);
        result.sides = Some([current.to_string(), tip.to_string()]);
        result.conflicts = files;
        Ok(Step {
            result,
            // A conflicted branch is left out of the integration branch.
            into_tip: current,
            update,
        })
    }

    /// Reports one conflicted file and resolves it in `index` so that nothing is
    /// lost: markers in a text file, both versions of a binary, the modified file
    /// of a delete/modify.
    fn conflict_file(
        &self,
        m: &Merging,
        index: &mut git2::Index,
        c: &git2::IndexConflict,
    ) -> Result<FileConflict> {
        let repo = self.repo;
        let Sides {
            path,
            base: base_b,
            ours: ours_b,
            theirs: theirs_b,
            binary,
            kind,
        } = Sides::of(repo, c)?;
        index.conflict_remove(std::path::Path::new(&path))?;
        let action = self.keep_both(m, index, c, &path, binary)?;
        let (diff_ours, diff_theirs) = if binary {
            (String::new(), String::new())
        } else {
            let empty = Vec::new();
            let base_b = base_b.as_ref().unwrap_or(&empty);
            (
                unified(
                    base_b,
                    ours_b.as_ref().unwrap_or(&empty),
                    &format!("base/{path}"),
                    &format!("{}/{path}", self.into),
                ),
                unified(
                    base_b,
                    theirs_b.as_ref().unwrap_or(&empty),
                    &format!("base/{path}"),
                    &format!("{}/{path}", m.branch),
                ),
            )
        };
        let ours_by = touched(repo, self.run, m.fork, m.ours, &path, None)?;
        let theirs_by = touched(repo, self.run, m.fork, m.tip, &path, Some(m.branch))?;
        Ok(FileConflict {
            path,
            kind,
            ours_by,
            theirs_by,
            diff_ours,
            diff_theirs,
            action,
            base: m.fork.to_string(),
        })
    }

    /// Puts what both sides have of a conflicted file into `index` (stage 0) and says
    /// what it did.
    fn keep_both(
        &self,
        m: &Merging,
        index: &mut git2::Index,
        c: &git2::IndexConflict,
        path: &str,
        binary: bool,
    ) -> Result<String> {
        let (into, conflict_branch) = (self.into, &m.conflict_branch);
        Ok(match (&c.our, &c.their) {
            (Some(o), Some(t)) if !binary => {
                let mut fo = git2::MergeFileOptions::new();
                fo.ancestor_label("base")
                    .our_label(into)
                    .their_label(m.branch)
                    .style_diff3(true);
                let merged = self.repo.merge_file_from_index(
                    c.ancestor.as_ref().unwrap_or(o),
                    o,
                    t,
                    Some(&mut fo),
                )?;
                let id = self.repo.blob(merged.content())?;
                index.add(&entry_at(o, path, id))?;
                format!("left out of {into}; on {conflict_branch} with conflict markers (both sides and the base)")
            }
            (Some(o), Some(t)) => {
                index.add(&entry_at(o, path, o.id))?;
                let other = format!("{path}~{}", m.stem);
                index.add(&entry_at(t, &other, t.id))?;
                format!("left out of {into}; on {conflict_branch} ours is {path}, theirs {other}")
            }
            (Some(kept), None) | (None, Some(kept)) => {
                index.add(&entry_at(kept, path, kept.id))?;
                format!("left out of {into}; on {conflict_branch} the modified file is kept (deleting it would lose its changes)")
            }
            (None, None) => "nothing to keep".to_owned(),
        })
    }
}

/// The message of the merge commit of branch `b`: who and which tasks it brings, as
/// prose and as trailers.
fn merge_message(
    run: &RunId,
    b: &str,
    into: &str,
    instance: Option<&str>,
    tasks: &[String],
) -> String {
    let label = instance.unwrap_or(b);
    let mut msg = format!("merge {b} into {into}\n\n");
    let _ = writeln!(
        msg,
        "Merges the work of {label}{}.\n",
        if tasks.is_empty() {
            String::new()
        } else {
            format!(" on {}", tasks.join(", "))
        }
    );
    let _ = writeln!(msg, "Mara-Run: {run}");
    if let Some(i) = instance {
        let _ = writeln!(msg, "{}: {i}", trailers::INSTANCE);
    }
    for t in tasks {
        let _ = writeln!(msg, "{}: {t}", trailers::TASK);
    }
    msg
}

/// Refuses to move a branch that a worktree has checked out: its files would no
/// longer match its branch.
pub fn check_not_checked_out(repo: &Repository, refname: &str) -> Result<()> {
    let mut heads = vec![];
    if let Ok(h) = repo.find_reference("HEAD") {
        heads.push((
            repo.workdir()
                .map(|p| p.display().to_string())
                .unwrap_or_default(),
            h.symbolic_target().map(str::to_owned),
        ));
    }
    for name in repo.worktrees()?.iter().flatten() {
        if let Ok(wt) = repo.find_worktree(name) {
            if let Ok(r) = Repository::open_from_worktree(&wt) {
                if let Ok(h) = r.find_reference("HEAD") {
                    heads.push((
                        wt.path().display().to_string(),
                        h.symbolic_target().map(str::to_owned),
                    ));
                }
            }
        }
    }
    for (path, target) in heads {
        if target.as_deref() == Some(refname) {
            let name = refname.trim_start_matches("refs/heads/");
            let fix = if name.contains("/conflicts/") {
                "commit your resolution there and run `mara integrate --continue` (a branch with commits of its own is never moved), or switch that worktree to another branch"
            } else {
                "integrate into another branch with --into, or switch that worktree to another branch"
            };
            bail!("{name} is checked out in {path}, and integrating would move it; {fix}");
        }
    }
    Ok(())
}

/// Moves the branches, each only if it still holds what integration started from.
#[allow(clippy::disallowed_methods)] // integration branches, never the run's ref
pub fn apply_updates(
    repo: &Repository,
    updates: &[(String, Option<Oid>, Oid)],
    msg: &str,
) -> Result<()> {
    for (name, _, _) in updates {
        check_not_checked_out(repo, name)?;
    }
    for (name, old, new) in updates {
        let res = match old {
            Some(o) => repo.reference_matching(name, *new, true, *o, msg),
            None => repo.reference_matching(name, *new, true, Oid::zero(), msg),
        };
        crate::context::crash_point("integrate-between-refs");
        res.map_err(|e| match e.code() {
            git2::ErrorCode::Modified => {
                anyhow!("{name} moved while integrating (nothing after it was moved); run `mara integrate` again")
            }
            _ => anyhow!(e).context(format!("updating {name}")),
        })?;
    }
    Ok(())
}

/// The report for people (`integrator.md`).
pub fn report_markdown(i: &Integration) -> String {
    let mut s = String::new();
    let _ = writeln!(s, "# Integration of run {}\n", i.run);
    let _ = writeln!(
        s,
        "Into `{}`: {} -> {}.\n",
        i.into,
        &i.base[..10.min(i.base.len())],
        &i.tip[..10.min(i.tip.len())]
    );
    let _ = writeln!(
        s,
        "| branch | instance | tasks | result |\n| --- | --- | --- | --- |"
    );
    for b in &i.branches {
        let result = match (b.result, &b.commit, &b.conflict_branch) {
            (Outcome::Merged, Some(c), _) => format!("merged ({})", &c[..10]),
            (Outcome::Conflicts, _, Some(cb)) => {
                format!("{} conflict(s), kept on `{cb}`", b.conflicts.len())
            }
            (r, _, _) => r.as_str().to_owned(),
        };
        let _ = writeln!(
            s,
            "| `{}` | {} | {} | {} |",
            b.branch,
            b.instance.clone().unwrap_or_else(|| "-".into()),
            if b.tasks.is_empty() {
                "-".into()
            } else {
                b.tasks.join(", ")
            },
            result
        );
    }
    let _ = writeln!(
        s,
        "\n## Merge order\n\n{}\n\nHow: {}.\n\n```text\n{}```",
        i.matrix.order.join(", "),
        i.matrix.heuristic,
        i.matrix.text()
    );
    if !i.tasks.is_empty() {
        let _ = writeln!(
            s,
            "\n## Tasks ({})\n\n| task | commits | branches | in `{}` |\n| --- | --- | --- | --- |",
            i.tasks.len(),
            i.into
        );
        for t in &i.tasks {
            let commits: Vec<String> = t
                .commits
                .iter()
                .map(|c| c.commit[..10].to_owned())
                .collect();
            let branches: BTreeSet<&str> = t
                .commits
                .iter()
                .flat_map(|c| c.branches.iter().map(String::as_str))
                .collect();
            let _ = writeln!(
                s,
                "| {} | {} | {} | {} |",
                one_line(&t.task, 40),
                if commits.is_empty() {
                    "none by trailer".into()
                } else {
                    commits.join(", ")
                },
                branches.into_iter().collect::<Vec<_>>().join(", "),
                if t.integrated { "yes" } else { "no" }
            );
        }
    }
    fence_sections(&mut s, i);
    if !i.resolutions.is_empty() {
        let _ = writeln!(s, "\n## Resolutions ({})\n", i.resolutions.len());
        for r in &i.resolutions {
            let by =
                r.by.as_deref()
                    .map(|b| one_line(b, 64))
                    .unwrap_or_else(|| "someone".into());
            match (&r.merged, &r.left) {
                (Some(c), _) => {
                    let _ = writeln!(
                        s,
                        "- `{}`: resolved by {by} ({}), merged ({})",
                        r.branch,
                        r.files.join(", "),
                        &c[..10]
                    );
                }
                (None, Some(why)) => {
                    let _ = writeln!(s, "- `{}`: not merged: {why}", r.branch);
                }
                (None, None) => {}
            }
        }
    }
    let n = i.conflict_count();
    if n == 0 {
        let _ = writeln!(s, "\nEvery branch merged cleanly.");
        return s;
    }
    let _ = writeln!(s, "\n## Conflicts ({n})");
    for b in &i.branches {
        for c in &b.conflicts {
            let _ = writeln!(
                s,
                "\n### `{}` ({} conflict) merging `{}`\n",
                c.path,
                c.kind.as_str(),
                b.branch
            );
            let _ = writeln!(s, "- on `{}`: changed by {}", i.into, c.ours_by.describe());
            let _ = writeln!(
                s,
                "- on `{}`: changed by {}",
                b.branch,
                c.theirs_by.describe()
            );
            let _ = writeln!(s, "- what mara did: {}", c.action);
            if !c.base.is_empty() {
                let _ = writeln!(s, "- base commit: `{}`", &c.base[..10.min(c.base.len())]);
            }
            for h in i.hunk_lines(&b.branch, &c.path) {
                let _ = writeln!(s, "{h}");
            }
            if c.kind == ConflictKind::Binary {
                let _ = writeln!(s, "\nBinary file: no text diff; both versions are kept.");
            } else {
                let _ = writeln!(s, "\nbase -> `{}`:\n\n```diff\n{}```", i.into, c.diff_ours);
                let _ = writeln!(
                    s,
                    "\nbase -> `{}`:\n\n```diff\n{}```",
                    b.branch, c.diff_theirs
                );
            }
        }
    }
    s
}

/// The fenced, held-back and unattributed commits of the report.
fn fence_sections(s: &mut String, i: &Integration) {
    let short = |c: &str| c.chars().take(10).collect::<String>();
    if !i.fenced.is_empty() {
        let _ = writeln!(
            s,
            "\n## Fenced ({})\n\nCommits made under a claim that was lost, left out of `{}`:\n",
            i.fenced.iter().map(|w| w.commits.len()).sum::<usize>(),
            i.into
        );
        for w in &i.fenced {
            let commits: Vec<String> = w.commits.iter().map(|c| short(c)).collect();
            let _ = writeln!(
                s,
                "- {} by {} (claim {}, on {}): {}; commits {}",
                one_line(&w.task, 40),
                one_line(&w.instance, 40),
                one_line(&short(&w.claim), 10),
                w.branches.join(", "),
                one_line(&w.reason, 200),
                commits.join(", ")
            );
        }
    }
    if !i.held_back.is_empty() {
        let _ = writeln!(
            s,
            "\n## Held back ({})\n\nCommits that build on fenced work and no longer apply without it:\n",
            i.held_back.len()
        );
        for h in &i.held_back {
            let _ = writeln!(
                s,
                "- {} on {}: {}",
                short(&h.commit),
                h.branch,
                one_line(&h.subject, 72)
            );
        }
    }
    if !i.unattributed.is_empty() {
        let _ = writeln!(
            s,
            "\n## Unattributed ({})\n\nCommits that name no task and no claim (made outside mara's hooks); they are not fenced:\n",
            i.unattributed.len()
        );
        for u in &i.unattributed {
            let _ = writeln!(
                s,
                "- {} on {}: {} ({})",
                short(&u.commit),
                u.branch,
                one_line(&u.subject, 72),
                one_line(&u.paths.join(", "), 200)
            );
        }
    }
}
