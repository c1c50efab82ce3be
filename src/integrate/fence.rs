//! Fencing: work made under a claim that was lost never lands.
//!
//! A claim's token is the commit id of its `claim` or `reclaim` event on the run's
//! ref; the commit-msg hook writes it as `Mara-Claim: <token>` beside `Mara-Task`.
//! A claim is *lost* when its lease expired and someone reclaimed the task, when it
//! was released (by its holder or by force), when someone else completed the task
//! by force, or when the task was cancelled while held. Work under a claim that is
//! still held, or that its holder completed, is good.
//!
//! A commit that names a task of the board (`Mara-Task`) is *fenced* unless it
//! carries a good token of that task, made by the instance it names
//! (`Mara-Instance`): a token that is no claim of this run, a claim of another task
//! or of another instance, a missing token and a lost claim all fence it. A commit
//! that names no task of the board and no token is *unattributed*: it is merged,
//! and reported with the paths it touches. Merge commits are judged by their
//! parents.
//!
//! The integrator leaves fenced commits out by rebuilding a branch in memory
//! without them ([`Rewriter`]): every later commit is cherry-picked onto the
//! rebuilt history; one that no longer applies (it built on fenced work) is held
//! back too. Instance branches themselves never move.

use std::collections::{BTreeSet, HashMap};

use anyhow::{Context, Result};
use git2::{Oid, Repository};
use serde::Serialize;

use crate::board::{Event, EventKind};
use crate::trailers;

/// What became of a claim.
#[derive(Clone, Debug, PartialEq, Eq)]
enum ClaimState {
    Held,
    Completed,
    Lost(String),
}

#[derive(Clone, Debug)]
struct Claim {
    task: String,
    holder: String,
    state: ClaimState,
}

/// Every claim of a run by its token, from the run's log.
#[derive(Default, Debug)]
pub struct Claims {
    run: String,
    by_token: HashMap<Oid, Claim>,
    /// Every task the board ever had (a commit naming another names nothing).
    tasks: BTreeSet<String>,
}

/// Why a commit is left out.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct FenceHit {
    pub task: String,
    pub instance: String,
    pub claim: String,
    pub reason: String,
}

/// How a commit stands.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Judgement {
    /// Made under a good claim of each task it names.
    Good,
    /// Names no task of the board and no claim.
    Unattributed,
    Fenced(FenceHit),
}

impl Claims {
    /// The claims of the run whose events (oldest first, with their commits) these are.
    pub fn from_events(run: &str, events: &[(Oid, Event)]) -> Claims {
        let mut c = Claims {
            run: run.to_owned(),
            ..Claims::default()
        };
        let mut current: HashMap<String, Oid> = HashMap::new();
        // The current claim of `task` ends as `state`.
        let end = |c: &mut Claims, current: &mut HashMap<String, Oid>, task: &str, state| {
            if let Some(cl) = current.remove(task).and_then(|t| c.by_token.get_mut(&t)) {
                cl.state = state;
            }
        };
        for (token, e) in events {
            let by = e.sender.as_str();
            let mut lose = |task: &str, why: String, c: &mut Claims| {
                end(c, &mut current, task, ClaimState::Lost(why));
            };
            match &e.kind {
                EventKind::TaskAdd { task } => {
                    c.tasks.insert(task.id.to_string());
                }
                EventKind::Plan { tasks } => {
                    c.tasks.extend(tasks.iter().map(|t| t.id.to_string()));
                }
                EventKind::Claim { task } | EventKind::Reclaim { task, .. } => {
                    let task = task.to_string();
                    if let EventKind::Reclaim { previous, .. } = &e.kind {
                        let why =
                            format!("the lease of {previous} expired and {by} reclaimed {task}");
                        lose(&task, why, &mut c);
                    }
                    current.insert(task.clone(), *token);
                    c.by_token.insert(
                        *token,
                        Claim {
                            task,
                            holder: by.to_owned(),
                            state: ClaimState::Held,
                        },
                    );
                }
                EventKind::Release { task, forced, .. } => {
                    let why = match forced {
                        Some(h) => format!("{by} released {task} from {h}"),
                        None => format!("{by} released {task}"),
                    };
                    lose(task.as_str(), why, &mut c);
                }
                EventKind::Done { task, forced, .. } => match forced {
                    Some(h) => {
                        let why = format!("{by} completed {task} by force, taking it from {h}");
                        lose(task.as_str(), why, &mut c);
                    }
                    None => end(&mut c, &mut current, task.as_str(), ClaimState::Completed),
                },
                EventKind::TaskCancel { task, .. } => {
                    lose(task.as_str(), format!("{by} cancelled {task}"), &mut c);
                }
                _ => {}
            }
        }
        c
    }

    /// How the commit with message `msg` stands.
    pub fn judge(&self, msg: &str) -> Judgement {
        let named = trailers::parse(msg);
        let instance = named.instances.first().cloned().unwrap_or_default();
        let fenced = |task: &str, claim: &str, reason: String| {
            Judgement::Fenced(FenceHit {
                task: task.to_owned(),
                instance: if instance.is_empty() {
                    "an unnamed instance".into()
                } else {
                    instance.clone()
                },
                claim: if claim.is_empty() {
                    "none".into()
                } else {
                    claim.to_owned()
                },
                reason,
            })
        };
        let tasks: Vec<&String> = named
            .tasks
            .iter()
            .filter(|t| self.tasks.contains(*t))
            .collect();
        if tasks.is_empty() && named.claims.is_empty() {
            return Judgement::Unattributed;
        }
        let mut good = vec![];
        for token in &named.claims {
            let claim = Oid::from_str(token)
                .ok()
                .filter(|_| token.len() == 40)
                .and_then(|o| self.by_token.get(&o));
            let Some(claim) = claim else {
                let task = tasks.first().map_or("?", |t| t.as_str());
                return fenced(
                    task,
                    token,
                    format!("Mara-Claim {token} is no claim of run {}", self.run),
                );
            };
            if named.instances.len() != 1 || claim.holder != instance {
                return fenced(
                    &claim.task,
                    token,
                    format!(
                        "claim {token} of {} was made by {}, not by {}",
                        claim.task,
                        claim.holder,
                        if instance.is_empty() {
                            "an unnamed instance".to_owned()
                        } else {
                            named.instances.join(", ")
                        }
                    ),
                );
            }
            if let ClaimState::Lost(why) = &claim.state {
                return fenced(
                    &claim.task,
                    token,
                    format!("made under a lost claim: {why}"),
                );
            }
            good.push(claim.task.as_str());
        }
        for t in tasks {
            if !good.contains(&t.as_str()) {
                let other = named.claims.first().map(String::as_str).unwrap_or("");
                let reason = if other.is_empty() {
                    format!("names {t} but carries no Mara-Claim for it")
                } else {
                    format!("names {t} but its Mara-Claim is the claim of another task")
                };
                return fenced(t, other, reason);
            }
        }
        Judgement::Good
    }
}

/// The tokens of the claims under which `me` holds each of `tasks` (the newest claim
/// or reclaim event of the task, when `me` made it), read from the run's tip back
/// to the oldest of those claims: a claim made a few events ago costs a few
/// commits.
pub fn claim_tokens(
    ledger: &crate::ledger::Ledger,
    tasks: &[&crate::ids::TaskId],
    me: &crate::ids::InstanceId,
) -> Result<Vec<Oid>> {
    let mut left: Vec<&crate::ids::TaskId> = tasks.to_vec();
    let mut found = vec![None; tasks.len()];
    if left.is_empty() {
        return Ok(vec![]);
    }
    let me = me.to_string();
    ledger.walk_back(ledger.tip()?, |oid, _, line| {
        if !line.contains("claim\"") {
            return Ok(true);
        }
        let e = Event::from_json(line)?;
        if let EventKind::Claim { task } | EventKind::Reclaim { task, .. } = &e.kind {
            if let Some(i) = left.iter().position(|t| *t == task) {
                left.remove(i);
                if e.sender == me {
                    let at = tasks.iter().position(|t| *t == task).expect("one of tasks");
                    found[at] = Some(oid);
                }
            }
        }
        Ok(!left.is_empty())
    })?;
    // In the order of `tasks`, as the Mara-Task trailers are.
    Ok(found.into_iter().flatten().collect())
}

/// Fenced commits of one (task, instance, claim), and where they were found.
#[derive(Serialize, Clone, Debug)]
pub struct FencedWork {
    pub task: String,
    pub instance: String,
    pub claim: String,
    pub reason: String,
    pub commits: Vec<String>,
    pub branches: Vec<String>,
}

/// A commit without mara's trailers that was merged, and the paths it touches.
#[derive(Serialize, Clone, Debug)]
pub struct Unattributed {
    pub commit: String,
    pub branch: String,
    pub subject: String,
    pub paths: Vec<String>,
}

/// A good commit left out because it no longer applies without fenced work.
#[derive(Serialize, Clone, Debug)]
pub struct HeldBack {
    pub commit: String,
    pub branch: String,
    pub subject: String,
}

/// Most paths listed for one unattributed commit.
const MAX_PATHS: usize = 50;

/// Rebuilds branches without their fenced commits, in memory; shares what it
/// rebuilt between branches (a commit reachable from two branches is judged once).
pub struct Rewriter<'r> {
    repo: &'r Repository,
    claims: &'r Claims,
    /// What each commit became: itself, its rebuilt copy, or (left out) what its
    /// first parent became.
    map: HashMap<Oid, Oid>,
    fenced: Vec<(FenceHit, Oid, String)>,
    pub unattributed: Vec<Unattributed>,
    pub held_back: Vec<HeldBack>,
}

impl<'r> Rewriter<'r> {
    pub fn new(repo: &'r Repository, claims: &'r Claims) -> Self {
        Rewriter {
            repo,
            claims,
            map: HashMap::new(),
            fenced: vec![],
            unattributed: vec![],
            held_back: vec![],
        }
    }

    /// The tip of `branch` (at `tip`) without its fenced commits, judging the
    /// commits not reachable from `hide` (already integrated).
    pub fn rewrite(&mut self, branch: &str, tip: Oid, hide: Oid) -> Result<Oid> {
        let repo = self.repo;
        let mut walk = repo.revwalk()?;
        walk.push(tip)?;
        walk.hide(hide)?;
        walk.set_sorting(git2::Sort::TOPOLOGICAL | git2::Sort::REVERSE)?;
        for oid in walk {
            let oid = oid?;
            if self.map.contains_key(&oid) {
                continue;
            }
            let c = repo.find_commit(oid)?;
            let msg = c.message_raw().unwrap_or_default();
            let judged = if c.parent_count() > 1 {
                Judgement::Good
            } else {
                self.claims.judge(msg)
            };
            let parents: Vec<Oid> = c.parent_ids().collect();
            let first = parents.first().map(|p| self.mapped(*p));
            match judged {
                Judgement::Fenced(hit) => {
                    self.fenced.push((hit, oid, branch.to_owned()));
                    // Left out: whatever builds on it builds on its parent.
                    self.map.insert(oid, first.unwrap_or(oid));
                    continue;
                }
                Judgement::Unattributed => self.unattributed.push(Unattributed {
                    commit: oid.to_string(),
                    branch: branch.to_owned(),
                    subject: c.summary().unwrap_or_default().to_owned(),
                    paths: self.paths_of(&c)?,
                }),
                Judgement::Good => {}
            }
            let new_parents: Vec<Oid> = parents.iter().map(|p| self.mapped(*p)).collect();
            if new_parents == parents {
                self.map.insert(oid, oid);
                continue;
            }
            let new = self.replay(&c, &new_parents)?;
            match new {
                Some(n) => self.map.insert(oid, n),
                None => {
                    self.held_back.push(HeldBack {
                        commit: oid.to_string(),
                        branch: branch.to_owned(),
                        subject: c.summary().unwrap_or_default().to_owned(),
                    });
                    self.map.insert(oid, new_parents[0])
                }
            };
        }
        Ok(self.mapped(tip))
    }

    fn mapped(&self, oid: Oid) -> Oid {
        self.map.get(&oid).copied().unwrap_or(oid)
    }

    /// `c`'s change replayed onto `parents` (its first parent rebuilt), or `None`
    /// when it no longer applies.
    fn replay(&self, c: &git2::Commit, parents: &[Oid]) -> Result<Option<Oid>> {
        let repo = self.repo;
        let onto = repo.find_commit(parents[0])?;
        let mainline = u32::from(c.parent_count() > 1);
        let mut index = repo
            .cherrypick_commit(c, &onto, mainline, None)
            .with_context(|| format!("replaying {} without fenced commits", c.id()))?;
        if index.has_conflicts() {
            return Ok(None);
        }
        let tree = repo.find_tree(index.write_tree_to(repo)?)?;
        let mut ps = vec![];
        for p in parents {
            let pc = repo.find_commit(*p)?;
            if !ps.iter().any(|x: &git2::Commit| x.id() == pc.id()) {
                ps.push(pc);
            }
        }
        let refs: Vec<&git2::Commit> = ps.iter().collect();
        let msg = c.message_raw().unwrap_or_default();
        Ok(Some(repo.commit(
            None,
            &c.author(),
            &c.committer(),
            msg,
            &tree,
            &refs,
        )?))
    }

    /// The paths `c` changes against its first parent (all of them for a root).
    fn paths_of(&self, c: &git2::Commit) -> Result<Vec<String>> {
        let tree = c.tree()?;
        let parent = match c.parent(0) {
            Ok(p) => Some(p.tree()?),
            Err(_) => None,
        };
        let diff = self
            .repo
            .diff_tree_to_tree(parent.as_ref(), Some(&tree), None)?;
        let mut out = vec![];
        for d in diff.deltas() {
            if let Some(p) = d.new_file().path().or(d.old_file().path()) {
                out.push(p.to_string_lossy().into_owned());
            }
            if out.len() >= MAX_PATHS {
                break;
            }
        }
        Ok(out)
    }

    /// The fenced commits grouped by (task, instance, claim, reason), in the order
    /// found.
    pub fn fenced(&self) -> Vec<FencedWork> {
        let mut out: Vec<FencedWork> = vec![];
        for (hit, oid, branch) in &self.fenced {
            let idx = out.iter().position(|w| {
                w.task == hit.task
                    && w.instance == hit.instance
                    && w.claim == hit.claim
                    && w.reason == hit.reason
            });
            let w = match idx {
                Some(i) => &mut out[i],
                None => {
                    out.push(FencedWork {
                        task: hit.task.clone(),
                        instance: hit.instance.clone(),
                        claim: hit.claim.clone(),
                        reason: hit.reason.clone(),
                        commits: vec![],
                        branches: vec![],
                    });
                    out.last_mut().expect("just pushed")
                }
            };
            w.commits.push(oid.to_string());
            if !w.branches.contains(branch) {
                w.branches.push(branch.clone());
            }
        }
        out
    }
}
