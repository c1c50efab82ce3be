//! The board's indexes (board format 2): what frequent reads need, kept by
//! [`apply`](super::apply) beside the tasks, so that `claim --next` and `status`
//! read a handful of objects at any board size (DESIGN.md, "Reads cost what they
//! return"). Being part of the tree, they are checked by every replay, `verify`'s
//! and each writer's.
//!
//! Layout below `index/`:
//!
//! * `counts.json`: the tasks by role and status (`{"implementer": {"open": 3, ...}}`;
//!   tasks without a role count under `_any`).
//! * `ready/<role>/<key>`: open tasks whose dependencies are all done.
//! * `held/<role>/<key>`: claimed tasks.
//! * `review/<key>`: tasks awaiting review that no reviewer holds;
//!   `reviewing/<key>` those a reviewer holds.
//! * `sent-back/<key>`: open or claimed tasks a reviewer sent back.
//! * `waiting/<bucket>/<id>.json`: the unfinished tasks waiting for task `id`, which
//!   is not done (the reverse of their `deps`), so that a `done` finds the tasks it
//!   makes ready without reading the board.
//!
//! `<role>` is the task's role, or `_any` (not a role name: roles start with a
//! letter). `<key>` is three names deep and sorts as `claim --next` picks:
//! priority (higher first), then board order; its last part ends in the task id.
//! The entries are empty files: the name is the record. A key is fanned out so no
//! tree holds more than 256 entries of one plan, and an event rewrites only the
//! small trees on its paths, as with the tasks.

use std::collections::{BTreeMap, BTreeSet};

use super::{Board, Change, Counts, Task, TaskStatus};
use crate::ids::TaskId;

/// The `<role>` of tasks without a role.
pub const ANY_ROLE: &str = "_any";

/// What the rule needs of the indexes: the counts, and the waiting lists (on a
/// partial board only those the event touches; every one on a full board).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct IndexState {
    pub counts: BTreeMap<String, Counts>,
    pub waiting: BTreeMap<TaskId, BTreeSet<TaskId>>,
}

/// A task's `<role>` in the index.
pub fn role_key(t: &Task) -> &str {
    t.role.as_deref().unwrap_or(ANY_ROLE)
}

/// The three names of an entry's path, which order tasks as `claim --next` does:
/// priority (higher first), then the seq of the event that added the task, then
/// its position in that plan, each fixed-width hex so names sort as numbers do.
/// Cut so that no tree grows past a few hundred entries: the first name holds the
/// priority and the seq's high bits (few distinct values), the second the seq's
/// low byte and the position's high bits, the last the position's low byte and
/// the task id.
pub fn key(t: &Task) -> [String; 3] {
    // i64 to u64 keeping the order, then reversed: the highest priority sorts first.
    let p = u64::MAX - ((t.priority as u64) ^ (1 << 63));
    [
        format!("{p:016x}{:014x}", t.added_seq >> 8),
        format!("{:02x}{:06x}", t.added_seq & 0xff, t.position >> 8),
        format!("{:02x}-{}", t.position & 0xff, t.id),
    ]
}

/// The task id at the end of a key's last part.
pub fn id_of_leaf(leaf: &str) -> Option<&str> {
    leaf.split_once('-').map(|(_, id)| id)
}

/// The path of a list (`["index", "ready", "implementer"]`, ...).
pub fn list_dir(parts: &[&str]) -> Vec<String> {
    std::iter::once("index")
        .chain(parts.iter().copied())
        .map(str::to_owned)
        .collect()
}

/// The lists a task in this state is on, as the paths of its entries.
fn entries(t: &Task, deps_done: bool) -> Vec<Vec<String>> {
    let rk = role_key(t);
    let mut dirs: Vec<Vec<String>> = vec![];
    match t.status {
        TaskStatus::Open if deps_done => dirs.push(list_dir(&["ready", rk])),
        TaskStatus::Claimed => dirs.push(list_dir(&["held", rk])),
        TaskStatus::Review if t.reviewer.is_none() => dirs.push(list_dir(&["review"])),
        TaskStatus::Review => dirs.push(list_dir(&["reviewing"])),
        _ => {}
    }
    if t.sent_back > 0 && matches!(t.status, TaskStatus::Open | TaskStatus::Claimed) {
        dirs.push(list_dir(&["sent-back"]));
    }
    for d in &mut dirs {
        d.extend(key(t));
    }
    dirs
}

/// The deps of an unfinished task that are not done: the waiting lists it is on.
fn waits_on(t: &Task, done: impl Fn(&TaskId) -> bool) -> BTreeSet<TaskId> {
    if t.status.is_final() {
        return BTreeSet::new();
    }
    t.deps.iter().filter(|d| !done(d)).cloned().collect()
}

fn count(counts: &mut BTreeMap<String, Counts>, t: &Task, up: bool) {
    let c = counts.entry(role_key(t).to_owned()).or_default();
    let n = match t.status {
        TaskStatus::Open => &mut c.open,
        TaskStatus::Claimed => &mut c.claimed,
        TaskStatus::Review => &mut c.review,
        TaskStatus::Done => &mut c.done,
        TaskStatus::Cancelled => &mut c.cancelled,
    };
    *n = if up { *n + 1 } else { n.saturating_sub(1) };
}

/// The index state of a whole board, derived from its tasks.
pub fn derive(tasks: &BTreeMap<TaskId, Task>) -> IndexState {
    let mut state = IndexState::default();
    let done = |id: &TaskId| tasks.get(id).map(|t| t.status) == Some(TaskStatus::Done);
    for t in tasks.values() {
        count(&mut state.counts, t, true);
        for d in waits_on(t, done) {
            state.waiting.entry(d).or_default().insert(t.id.clone());
        }
    }
    state
}

/// Every list entry of a whole board (for tests and checks).
pub fn derive_entries(tasks: &BTreeMap<TaskId, Task>) -> BTreeSet<Vec<String>> {
    let done = |id: &TaskId| tasks.get(id).map(|t| t.status) == Some(TaskStatus::Done);
    tasks
        .values()
        .flat_map(|t| entries(t, t.deps.iter().all(done)))
        .collect()
}

/// What the task changes of one event (`changes`, on `board`) change in the
/// indexes. Needs on `board`: the changed tasks as they were, their deps, the
/// counts, the waiting lists of their deps and of themselves, and, for a task that
/// becomes done, the tasks on its waiting list and their deps.
pub fn changes(board: &Board, changes: &[Change]) -> Vec<Change> {
    let changed: BTreeMap<&TaskId, &Task> = changes
        .iter()
        .filter_map(|c| match c {
            Change::Task(t) => Some((&t.id, t)),
            _ => None,
        })
        .collect();
    if changed.is_empty() {
        return vec![];
    }
    let before = |id: &TaskId| board.tasks.get(id);
    let after = |id: &TaskId| changed.get(id).copied().or_else(|| board.tasks.get(id));
    let done_before = |id: &TaskId| before(id).map(|t| t.status) == Some(TaskStatus::Done);
    let done_after = |id: &TaskId| after(id).map(|t| t.status) == Some(TaskStatus::Done);
    let state = &board.index;

    // Tasks whose lists may change: the changed ones, and the dependents of those
    // that become done (a dependent may become ready).
    let newly_done: Vec<&TaskId> = changed
        .keys()
        .copied()
        .filter(|id| done_after(id) && !done_before(id))
        .collect();
    let mut affected: BTreeSet<&TaskId> = changed.keys().copied().collect();
    for id in &newly_done {
        affected.extend(state.waiting.get(*id).into_iter().flatten());
    }

    let mut out = vec![];
    let mut counts = state.counts.clone();
    let mut lists: BTreeMap<TaskId, BTreeSet<TaskId>> = BTreeMap::new();
    for id in affected {
        let old = before(id);
        let Some(new) = after(id) else { continue };
        let old_entries: BTreeSet<Vec<String>> = old
            .map(|t| entries(t, t.deps.iter().all(done_before)))
            .unwrap_or_default()
            .into_iter()
            .collect();
        let new_entries: BTreeSet<Vec<String>> = entries(new, new.deps.iter().all(done_after))
            .into_iter()
            .collect();
        for gone in old_entries.difference(&new_entries) {
            out.push(Change::Entry(gone.clone(), false));
        }
        for added in new_entries.difference(&old_entries) {
            out.push(Change::Entry(added.clone(), true));
        }
        if !changed.contains_key(id) {
            continue;
        }
        if let Some(old) = old {
            count(&mut counts, old, false);
        }
        count(&mut counts, new, true);
        let old_waits = old.map(|t| waits_on(t, done_before)).unwrap_or_default();
        let new_waits = waits_on(new, done_after);
        for dep in old_waits.symmetric_difference(&new_waits) {
            let list = lists
                .entry(dep.clone())
                .or_insert_with(|| state.waiting.get(dep).cloned().unwrap_or_default());
            if new_waits.contains(dep) {
                list.insert(id.clone());
            } else {
                list.remove(id);
            }
        }
    }
    // A done task is waited for no more.
    for id in newly_done {
        lists.insert(id.clone(), BTreeSet::new());
    }
    counts.retain(|_, c| *c != Counts::default());
    if counts != state.counts {
        out.push(Change::Counts(counts));
    }
    for (dep, list) in lists {
        if state.waiting.get(&dep).cloned().unwrap_or_default() != list {
            out.push(Change::Waiting(dep, list));
        }
    }
    out
}
