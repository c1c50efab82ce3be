//! Reads through the board's indexes (format 2, see [`crate::board::index`]):
//! `claim --next` walks the ready lists of its role in the order it picks from,
//! and `status` reads the counts, the instances and the few tasks held or in
//! review. A format-1 run has no indexes: these reads fall back to the whole board.

use std::iter::Peekable;

use anyhow::Result;
use git2::{ObjectType, Repository, Tree};

use super::Snapshot;
use crate::board::index::{self, ANY_ROLE};
use crate::board::{self, Board, ClaimKind, Counts, EventKind, Refusal, RuleError, Ts};
use crate::ids::{InstanceId, TaskId};

/// The entries of one list of the index in key order, reading each tree of the
/// fan-out only when the walk reaches it: the first entries cost a handful of
/// small trees, whatever the length of the list.
struct ListWalk<'r> {
    repo: &'r Repository,
    /// The trees being walked, each with the index of its next entry and the key
    /// so far.
    stack: Vec<(Tree<'r>, usize, String)>,
}

impl<'r> ListWalk<'r> {
    fn new(repo: &'r Repository, root: Option<Tree<'r>>) -> Self {
        ListWalk {
            repo,
            stack: root.into_iter().map(|t| (t, 0, String::new())).collect(),
        }
    }

    fn step(&mut self) -> Result<Option<(String, TaskId)>> {
        loop {
            let Some((tree, i, key)) = self.stack.last_mut() else {
                return Ok(None);
            };
            let Some((name, kind, oid)) = tree
                .get(*i)
                .map(|e| (e.name().unwrap_or_default().to_owned(), e.kind(), e.id()))
            else {
                self.stack.pop();
                continue;
            };
            *i += 1;
            let key = format!("{key}{name}");
            if kind == Some(ObjectType::Tree) {
                let sub = self.repo.find_tree(oid)?;
                self.stack.push((sub, 0, key));
                continue;
            }
            let name = name.as_str();
            // A leaf names its task; anything else in a list is not mara's (and
            // a replay would have refused the commit that put it there).
            let id = index::id_of_leaf(name)
                .and_then(|id| id.parse::<TaskId>().ok())
                .ok_or_else(|| anyhow::anyhow!("index entry {key} names no task"))?;
            return Ok(Some((key, id)));
        }
    }
}

impl Iterator for ListWalk<'_> {
    type Item = Result<(String, TaskId)>;
    fn next(&mut self) -> Option<Self::Item> {
        self.step().transpose()
    }
}

/// What a list is, for `claim --next`'s tally when nothing is ready.
#[derive(Clone, Copy, PartialEq)]
enum ListKind {
    Ready,
    Other,
}

impl<'l> Snapshot<'l> {
    fn indexed(&self) -> bool {
        self.config.board_format() >= 2
    }

    fn list(&self, parts: &[&str]) -> Result<ListWalk<'l>> {
        let path: std::path::PathBuf = index::list_dir(parts).iter().collect();
        let root = match self.tree.get_path(&path) {
            Ok(e) if e.kind() == Some(ObjectType::Tree) => Some(self.repo.find_tree(e.id())?),
            Ok(_) => None,
            Err(e) if e.code() == git2::ErrorCode::NotFound => None,
            Err(e) => return Err(e.into()),
        };
        Ok(ListWalk::new(self.repo, root))
    }

    /// The task `claimer` should take now, as [`board::next_ready`] on the whole
    /// board picks it, read through the indexes: the ready, held and review lists
    /// of its role merged in pick order, each candidate judged by the claim rule
    /// on the part of the board a claim of it needs. Usually the first candidate
    /// is the one.
    pub fn next_ready(&self, claimer: &InstanceId, now: Ts) -> Result<Result<TaskId, Refusal>> {
        self.next_ready_sparing(claimer, now, &mut |_, _| false)
    }

    /// [`Snapshot::next_ready`], passing over a task whose holder's lease ran
    /// out when `spare(task, holder)` says so (see
    /// [`board::next_ready_sparing`]).
    pub fn next_ready_sparing(
        &self,
        claimer: &InstanceId,
        now: Ts,
        spare: &mut dyn FnMut(&TaskId, &InstanceId) -> bool,
    ) -> Result<Result<TaskId, Refusal>> {
        if !self.indexed() {
            return Ok(board::next_ready_sparing(
                &*self.full_board()?,
                claimer,
                now,
                spare,
            ));
        }
        // A held task is only taken over from a holder whose lease ran out. With
        // none (the usual case) the held lists are not walked while looking for a
        // task: they come first in pick order once tasks are claimed, and
        // checking each read every claimed task, so `claim --next` slowed down as
        // a board drained (8 processes draining 2,000 tasks: 0.29x one claiming
        // named tasks). When nothing is ready they are walked after all, for the
        // refusal's count of tasks held by others.
        let mut instances = self.empty_board();
        self.load_instances(&mut instances)?;
        let timeout = instances.timeout();
        let expired = instances
            .instances
            .values()
            .any(|i| i.id != *claimer && now - i.last_seen > timeout);
        match self.walk_ready(claimer, now, spare, expired)? {
            Err(Refusal::NothingReady { .. }) if !expired => {
                self.walk_ready(claimer, now, spare, true)
            }
            found => Ok(found),
        }
    }

    /// [`Snapshot::next_ready_sparing`] through the index lists, the held ones
    /// only with `held_too`.
    fn walk_ready(
        &self,
        claimer: &InstanceId,
        now: Ts,
        spare: &mut dyn FnMut(&TaskId, &InstanceId) -> bool,
        held_too: bool,
    ) -> Result<Result<TaskId, Refusal>> {
        let role = claimer.role();
        let reviews = self.config.review_role.as_deref() == Some(role);
        // A reviewer takes only tasks of its own role besides reviews; the others
        // take their role's and those without a role.
        let roles: Vec<&str> = if reviews {
            vec![role]
        } else {
            vec![role, ANY_ROLE]
        };
        let mut lists: Vec<(ListKind, Peekable<ListWalk<'l>>)> = vec![];
        for r in &roles {
            lists.push((ListKind::Ready, self.list(&["ready", r])?.peekable()));
            if held_too {
                lists.push((ListKind::Other, self.list(&["held", r])?.peekable()));
            }
        }
        if reviews {
            lists.push((ListKind::Other, self.list(&["review"])?.peekable()));
            if held_too {
                lists.push((ListKind::Other, self.list(&["reviewing"])?.peekable()));
            }
        }
        let (mut ready_seen, mut held) = (0usize, 0usize);
        let sender = claimer.to_string();
        loop {
            // The list whose next entry comes first in pick order.
            let mut best: Option<(usize, String)> = None;
            for (n, (_, walk)) in lists.iter_mut().enumerate() {
                match walk.peek() {
                    Some(Ok((key, _))) if best.as_ref().is_none_or(|(_, k)| key < k) => {
                        best = Some((n, key.clone()));
                    }
                    Some(Ok(_)) => {}
                    Some(Err(_)) => {
                        return Err(walk.next().expect("peeked").expect_err("peeked an error"))
                    }
                    None => {}
                }
            }
            let Some((n, _)) = best else { break };
            let (kind, walk) = &mut lists[n];
            let (_, id) = walk.next().expect("peeked")?;
            if *kind == ListKind::Ready {
                ready_seen += 1;
            }
            let board = self.board_for(&EventKind::Claim { task: id.clone() }, &sender)?;
            match board::check_claim(&board, &id, claimer, now) {
                Ok(ClaimKind::Expired { previous }) if spare(&id, &previous) => held += 1,
                Ok(ClaimKind::Fresh | ClaimKind::Expired { .. }) => return Ok(Ok(id)),
                Err(RuleError::Refused(Refusal::Held { .. } | Refusal::Reserved { .. })) => {
                    held += 1
                }
                _ => {}
            }
        }
        // Nothing to take: the counts tell whether something may still come.
        let counts = self.counts()?;
        let of = |r: &str| counts.get(r).copied().unwrap_or_default();
        let open: usize = roles.iter().map(|r| of(r).open).sum();
        let unfinished = |c: &Counts| c.open + c.claimed + c.review;
        let later = if reviews {
            counts.values().map(unfinished).sum::<usize>() > 0
        } else {
            roles.iter().map(|r| unfinished(&of(r))).sum::<usize>() > 0
        };
        Ok(if later {
            Err(Refusal::NothingReady {
                waiting: open.saturating_sub(ready_seen),
                held,
            })
        } else {
            Err(Refusal::NothingLeft {
                role: role.to_owned(),
            })
        })
    }

    /// The tasks by status: from the counts (format 2) or the whole board.
    pub fn task_counts(&self) -> Result<Counts> {
        if !self.indexed() {
            return Ok(self.full_board()?.counts());
        }
        Ok(self
            .counts()?
            .values()
            .fold(Counts::default(), |a, c| Counts {
                open: a.open + c.open,
                claimed: a.claimed + c.claimed,
                done: a.done + c.done,
                review: a.review + c.review,
                cancelled: a.cancelled + c.cancelled,
            }))
    }

    /// The board of the work in progress, what `status` and the git hooks read:
    /// every instance, and of the tasks those claimed, awaiting review or sent
    /// back (format 2; the whole board otherwise). Its `counts()` is not the
    /// run's: see [`Snapshot::task_counts`].
    pub fn working_board(&self) -> Result<Board> {
        if !self.indexed() {
            return Ok(Board::clone(&*self.full_board()?));
        }
        let mut board = Board {
            config: Some(self.config.clone()),
            seq: Some(self.seq),
            ..Board::default()
        };
        self.load_instances(&mut board)?;
        let roles: Vec<String> = self.counts()?.into_keys().collect();
        let mut lists = vec![
            self.list(&["review"])?,
            self.list(&["reviewing"])?,
            self.list(&["sent-back"])?,
        ];
        for r in &roles {
            lists.push(self.list(&["held", r])?);
        }
        for walk in lists {
            for entry in walk {
                let (_, id) = entry?;
                if let Some(t) = self.task(&id)? {
                    board.tasks.insert(id, t);
                }
            }
        }
        Ok(board)
    }
}
