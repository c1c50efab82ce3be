//! The board at one commit of the run, read lazily: an append loads only the
//! files its event needs.

use std::cell::RefCell;
use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;

use anyhow::{anyhow, Context, Result};
use git2::{ErrorCode, ObjectType, Oid, Repository, Tree};
use serde::de::DeserializeOwned;

use super::{event_of_message, Ledger};
use crate::board::{self, Artifact, Board, Counts, EventKind, RoleInstance, RunConfig, Task, Ts};
use crate::ids::{InstanceId, TaskId};

/// The board at one commit of the run; reads its files lazily.
pub struct Snapshot<'l> {
    pub(super) repo: &'l Repository,
    pub tip: Oid,
    pub seq: u64,
    /// The time of the event at the tip.
    pub ts: Ts,
    pub config: RunConfig,
    pub(super) tree: Tree<'l>,
    full: RefCell<Option<std::rc::Rc<Board>>>,
    /// Tasks read so far: the command's draft and the rule check read the same ones.
    tasks: RefCell<BTreeMap<TaskId, Option<Task>>>,
    /// Instance records read so far, for the same reason.
    instances: RefCell<BTreeMap<InstanceId, Option<RoleInstance>>>,
}

impl<'l> Snapshot<'l> {
    fn read_json<T: DeserializeOwned>(&self, path: &[String]) -> Result<Option<T>> {
        let p: PathBuf = path.iter().collect();
        let entry = match self.tree.get_path(&p) {
            Ok(e) => e,
            Err(e) if e.code() == ErrorCode::NotFound => return Ok(None),
            Err(e) => return Err(e).with_context(|| format!("reading {}", p.display())),
        };
        let blob = self
            .repo
            .find_blob(entry.id())
            .with_context(|| format!("reading {} at {}", p.display(), self.tip))?;
        let v = serde_json::from_slice(blob.content())
            .with_context(|| format!("board file {} at {} is damaged", p.display(), self.tip))?;
        Ok(Some(v))
    }

    /// One task, if it is on the board.
    pub fn task(&self, id: &TaskId) -> Result<Option<Task>> {
        if let Some(t) = self.tasks.borrow().get(id) {
            return Ok(t.clone());
        }
        let t: Option<Task> = self.read_json(&id.board_path())?;
        self.tasks.borrow_mut().insert(id.clone(), t.clone());
        Ok(t)
    }

    /// One instance record, if the instance ever wrote an event.
    pub fn instance(&self, id: &InstanceId) -> Result<Option<RoleInstance>> {
        if let Some(i) = self.instances.borrow().get(id) {
            return Ok(i.clone());
        }
        let i: Option<RoleInstance> = self.read_json(&id.record_path())?;
        self.instances.borrow_mut().insert(id.clone(), i.clone());
        Ok(i)
    }

    fn artifacts(&self, id: &InstanceId) -> Result<Option<Vec<Artifact>>> {
        self.read_json(&id.artifacts_path())
    }

    pub(super) fn empty_board(&self) -> Board {
        Board {
            config: Some(self.config.clone()),
            seq: Some(self.seq),
            ..Board::default()
        }
    }

    /// The whole board: every task, instance and artifact record. Kept for the
    /// snapshot's other reads and shared, not copied: a copy of a 10,000-task
    /// board (and dropping it) was a tenth of a `mara board --json` (issue 16).
    pub fn full_board(&self) -> Result<std::rc::Rc<Board>> {
        if let Some(b) = self.full.borrow().as_ref() {
            return Ok(b.clone());
        }
        let mut board = self.empty_board();
        board.tasks = self
            .records_under::<Task>("tasks")?
            .into_iter()
            .map(|t| (t.id.clone(), t))
            .collect();
        self.load_instances(&mut board)?;
        self.load_stall(&mut board)?;
        for (name, bytes) in self.blobs_under("artifacts")? {
            let a: Vec<Artifact> = serde_json::from_slice(&bytes)
                .with_context(|| format!("board file {name} at {} is damaged", self.tip))?;
            let stem = name
                .rsplit('/')
                .next()
                .and_then(|n| n.strip_suffix(".json"))
                .unwrap_or_default();
            board.artifacts.insert(InstanceId::from_file_stem(stem)?, a);
        }
        let board = std::rc::Rc::new(board);
        *self.full.borrow_mut() = Some(board.clone());
        Ok(board)
    }

    /// The whole board with the index state the rule keeps, derived from every
    /// task (a read of the whole board does not need it).
    fn full_board_for_rule(&self) -> Result<Board> {
        let mut board = Board::clone(&*self.full_board()?);
        if self.config.board_format() >= 2 {
            board.index = board::index::derive(&board.tasks);
        }
        Ok(board)
    }

    /// The stall guard's files (format 2): the last progress, the tasks handed off
    /// too often, the open questions. A handful of small files.
    fn load_stall(&self, board: &mut Board) -> Result<()> {
        board.progress = self.read_json(&board::Progress::path())?;
        for h in self.records_under::<board::Handoffs>("stall/handoffs")? {
            board.flagged.insert(h.task, h.handoffs);
        }
        for q in self.records_under::<board::Question>("stall/questions")? {
            board.questions.insert(q.seq, q);
        }
        Ok(())
    }

    pub(super) fn load_instances(&self, board: &mut Board) -> Result<()> {
        for i in self.records_under::<RoleInstance>("instances")? {
            board.instances.insert(i.id.clone(), i);
        }
        Ok(())
    }

    /// What the stall guard reads of a format-2 board: the config, every instance
    /// record and the guard's files; no task.
    pub fn stall_board(&self) -> Result<Board> {
        let mut board = self.empty_board();
        self.load_instances(&mut board)?;
        self.load_stall(&mut board)?;
        Ok(board)
    }

    /// Every file below a directory, read as a `T`.
    fn records_under<T: DeserializeOwned>(&self, dir: &str) -> Result<Vec<T>> {
        self.blobs_under(dir)?
            .into_iter()
            .map(|(name, bytes)| {
                serde_json::from_slice(&bytes)
                    .with_context(|| format!("board file {name} at {} is damaged", self.tip))
            })
            .collect()
    }

    /// Every blob below a directory (`tasks`, `stall/questions`), with its path.
    ///
    /// The trees are walked first and the blobs read after, in the order of their
    /// file names: a record's blob lies in the pack of the last event that wrote
    /// it, and records are mostly written in the order of their names (tasks
    /// claimed and done in plan order, questions by number), so the next blob is
    /// mostly in the pack libgit2 found the last one in, which it searches
    /// first. In the order of the fanned-out trees (a hash of the name) each
    /// lookup searched half of a big board's packs: a tenth of a `mara board`
    /// on 10,000 tasks and 100,000 events (issue 16).
    fn blobs_under(&self, dir: &str) -> Result<Vec<(String, Vec<u8>)>> {
        let entry = match self.tree.get_path(std::path::Path::new(dir)) {
            Ok(e) => e,
            Err(e) if e.code() == ErrorCode::NotFound => return Ok(vec![]),
            Err(e) => return Err(e).with_context(|| format!("reading {dir} at {}", self.tip)),
        };
        let tree = self.repo.find_tree(entry.id())?;
        let mut found: Vec<(String, String, Oid)> = vec![];
        tree.walk(git2::TreeWalkMode::PreOrder, |root, e| {
            if e.kind() == Some(ObjectType::Blob) {
                found.push((e.name().unwrap_or("?").to_owned(), root.to_owned(), e.id()));
            }
            git2::TreeWalkResult::Ok
        })?;
        // Stable: names that tie keep the walk's order.
        found.sort_by_cached_key(|(name, _, _)| {
            let (stem, number) = natural(name);
            (stem.to_owned(), number)
        });
        found
            .into_iter()
            .map(|(name, root, id)| {
                let blob = self.repo.find_blob(id)?;
                Ok((format!("{dir}/{root}{name}"), blob.content().to_vec()))
            })
            .collect()
    }

    /// The part of the board `event` needs for [`apply`](crate::board::apply) to judge it.
    pub fn board_for(&self, event: &EventKind, sender: &str) -> Result<Board> {
        // An edit checks its deps for cycles and a cancel finds the task's
        // dependents: both need every task (they are rare, a plan's corrections).
        if matches!(
            event,
            EventKind::TaskEdit { .. } | EventKind::TaskCancel { .. }
        ) {
            return self.full_board_for_rule();
        }
        if self.full.borrow().is_some() {
            return self.full_board_for_rule();
        }
        let mut board = self.empty_board();
        if self.config.board_format() >= 2 {
            // What the stall guard's rules read: the last progress a stall names,
            // the questions it flags, the question a reply answers.
            match event {
                EventKind::Stall { questions, .. } => {
                    board.progress = self.read_json(&board::Progress::path())?;
                    for q in questions {
                        self.load_question(&mut board, *q)?;
                    }
                }
                EventKind::Message {
                    reply_to: Some(q), ..
                } => self.load_question(&mut board, *q)?,
                _ => {}
            }
        }
        let (tasks, mut instances) = board::needs(event);
        self.load(&mut board, &tasks)?;
        let (more_tasks, more_instances) = board::needs_after(event, &board);
        self.load(&mut board, &more_tasks)?;
        instances.extend(more_instances);
        if self.config.board_format() >= 2 {
            self.load_index(&mut board, event)?;
        }
        if let EventKind::Artifact { instance, .. } = event {
            if let Some(a) = self.artifacts(instance)? {
                board.artifacts.insert(instance.clone(), a);
            }
        }
        if let Ok(me) = sender.parse::<InstanceId>() {
            // Only a completion with an artifact appends to the sender's list.
            if matches!(
                event,
                EventKind::Done {
                    artifact: Some(_),
                    ..
                }
            ) {
                if let Some(a) = self.artifacts(&me)? {
                    board.artifacts.insert(me.clone(), a);
                }
            }
            instances.push(me);
        }
        for id in instances {
            if let Some(i) = self.instance(&id)? {
                board.instances.insert(id, i);
            }
        }
        Ok(board)
    }

    /// What [`board::index::changes`] needs of the indexes for `event`: the counts;
    /// for new tasks, the waiting lists of their deps (loaded by `needs`); for a
    /// task that may become done, its list, the tasks on it and their deps. Other
    /// events change no task's waits (a claimed or reopened task's deps are done;
    /// edits and cancels read the whole board), so a claim reads no list.
    fn load_index(&self, board: &mut Board, event: &EventKind) -> Result<()> {
        board.index.counts = self.counts()?;
        let lists: Vec<TaskId> = match event {
            EventKind::Plan { .. } | EventKind::TaskAdd { .. } => {
                board.tasks.keys().cloned().collect()
            }
            EventKind::Done { .. } | EventKind::Review { .. } => {
                event.tasks().into_iter().cloned().collect()
            }
            _ => vec![],
        };
        for id in &lists {
            if let Some(list) = self.waiting_list(id)? {
                board.index.waiting.insert(id.clone(), list);
            }
        }
        if matches!(event, EventKind::Done { .. } | EventKind::Review { .. }) {
            for id in event.tasks() {
                let dependents: Vec<TaskId> = board
                    .index
                    .waiting
                    .get(id)
                    .into_iter()
                    .flatten()
                    .cloned()
                    .collect();
                self.load(board, &dependents)?;
                let deps: Vec<TaskId> = dependents
                    .iter()
                    .filter_map(|d| board.tasks.get(d))
                    .flat_map(|t| t.deps.clone())
                    .collect();
                self.load(board, &deps)?;
            }
        }
        Ok(())
    }

    fn load_question(&self, board: &mut Board, seq: u64) -> Result<()> {
        if let Some(q) = self.read_json::<board::Question>(&board::Question::path(seq))? {
            board.questions.insert(seq, q);
        }
        Ok(())
    }

    /// `index/counts.json`: the tasks by role and status (empty before any task).
    pub fn counts(&self) -> Result<BTreeMap<String, Counts>> {
        Ok(self
            .read_json(&board::index::list_dir(&["counts.json"]))?
            .unwrap_or_default())
    }

    /// The tasks waiting for task `id`, if any.
    fn waiting_list(&self, id: &TaskId) -> Result<Option<BTreeSet<TaskId>>> {
        let [_, bucket, file] = id.board_path();
        self.read_json(&board::index::list_dir(&["waiting", &bucket, &file]))
    }

    fn load(&self, board: &mut Board, ids: &[TaskId]) -> Result<()> {
        for id in ids {
            if !board.tasks.contains_key(id) {
                if let Some(t) = self.task(id)? {
                    board.tasks.insert(id.clone(), t);
                }
            }
        }
        Ok(())
    }
}

impl Ledger {
    /// The board at the current tip.
    pub fn snapshot(&self) -> Result<Snapshot<'_>> {
        let tip = self
            .repo
            .refname_to_id(&self.refname)
            .with_context(|| format!("reading {}", self.refname))?;
        self.snapshot_at(tip)
    }

    /// The board at one commit of the run.
    pub fn snapshot_at(&self, tip: Oid) -> Result<Snapshot<'_>> {
        let commit = self
            .repo
            .find_commit(tip)
            .with_context(|| format!("{} points at {tip}, which is not a commit", self.refname))?;
        let event = event_of_message(commit.message().unwrap_or_default())
            .with_context(|| format!("reading the event of {tip} on {}", self.refname))?;
        let tree = commit.tree()?;
        let snap = Snapshot {
            repo: &self.repo,
            tip,
            seq: event.seq,
            ts: event.ts,
            // Read from the tree below; a placeholder until then.
            config: RunConfig::new(self.run.clone(), 0),
            tree,
            full: RefCell::new(None),
            tasks: RefCell::new(BTreeMap::new()),
            instances: RefCell::new(BTreeMap::new()),
        };
        let config: RunConfig = snap
            .read_json(&["config.json".to_owned()])?
            .ok_or_else(|| {
                anyhow!(
                    "{tip} on {} has no config.json that git can find (not a board mara wrote); `mara verify` names what is wrong with it",
                    self.refname
                )
            })?;
        Ok(Snapshot { config, ..snap })
    }
}

impl Ledger {
    /// The board the stall guard reads at `snap`: of a format-2 run its few files
    /// ([`Snapshot::stall_board`]); a format-1 run kept none, so its log is replayed
    /// ([`board::replay`]), a read of every event.
    pub fn stall_board(&self, snap: &Snapshot<'_>) -> Result<Board> {
        if snap.config.board_format() >= 2 {
            return snap.stall_board();
        }
        let events = self.events_at(snap.tip)?;
        Ok(board::replay(events.into_iter().map(|(_, e)| e)))
    }

    /// What the stall guard flags at `snap`, at `now` (see [`Board::stall_flags`]).
    pub fn stall_flags(&self, snap: &Snapshot<'_>, now: Ts) -> Result<board::Flags> {
        Ok(self.stall_board(snap)?.stall_flags(now))
    }
}

/// A file name as a sort key in which its first run of digits counts as a
/// number (`T9` before `T10`): the order records are mostly written in.
fn natural(name: &str) -> (&str, u64) {
    let start = name
        .find(|c: char| c.is_ascii_digit())
        .unwrap_or(name.len());
    let (stem, rest) = name.split_at(start);
    let end = rest
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(rest.len());
    (stem, rest[..end].parse().unwrap_or(0))
}
