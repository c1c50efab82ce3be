//! The ledger: the git-backed store of a run, and the only code that moves
//! `refs/mara/<run>`.
//!
//! Invariants this module keeps:
//!
//! * Every commit on the run's ref is one event. Its subject is
//!   [`Event::subject`], its body the event as one JSON line, then trailers
//!   (`Mara-Run`, `Mara-Seq`, `Mara-Instance`, `Mara-Task`). Its tree is the board
//!   after the event; its only parent is the previous event.
//! * The ref only fast-forwards: an append builds on the tip it read and moves the
//!   ref with a compare-and-swap (`git_reference_create_matching`: git's lock file
//!   plus a compare of the old value). Losing the race re-reads the tip and runs
//!   the rule again, with jittered backoff.
//! * An append reads only the objects its event needs and rewrites only the trees
//!   on the paths it changes (tasks fan out into 256 buckets), so its cost does not
//!   grow with the board or the log.
//! * An append's objects are staged in memory and land as one packfile, complete
//!   before the ref moves; small packs are merged after the write (`packs`).

// This module is the sole writer of the run's ref (clippy.toml forbids the ref
// writers everywhere else).
#![allow(clippy::disallowed_methods)]

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime};

use anyhow::{anyhow, bail, Context, Result};
use chrono::Utc;
use git2::{ErrorCode, Mempack, ObjectType, Odb, Oid, Repository, Tree};
use serde::de::DeserializeOwned;

use crate::board::{
    self, apply, Artifact, Board, Change, Event, EventKind, RoleInstance, RunConfig, Task, Ts,
};
use crate::ids::{InstanceId, RunId, TaskId};
use crate::output;
use crate::remote::{self, Push};

mod check;
pub mod marks;

use check::Checker;

/// How many times an append re-reads and retries after losing the race.
const MAX_ATTEMPTS: u32 = 400;
/// The same through a remote, where every attempt is a push and a fetch.
const MAX_REMOTE_ATTEMPTS: u32 = 2000;
/// An append gives up after this long, however many attempts it made.
const MAX_WAIT: Duration = Duration::from_secs(120);
/// A ref lock file older than this was left by a killed process: libgit2 holds it
/// for the microseconds between creating it and renaming it over the ref.
const STALE_LOCK: Duration = Duration::from_secs(5);

/// Sets libgit2's process-wide options for mara's access pattern. Call once, early.
pub fn tune_libgit2() {
    // The ledger writes a tree right after the blobs it names and a commit right
    // after its tree: checking that they exist would re-read each object.
    git2::opts::strict_object_creation(false);
    // Task buckets and the tasks/ tree outgrow libgit2's default 4 KiB cache limit
    // for trees; an append reads them more than once.
    // SAFETY: called before any repository is opened, from one thread.
    unsafe {
        let _ = git2::opts::set_cache_object_limit(ObjectType::Tree, 1 << 20);
        let _ = git2::opts::set_cache_object_limit(ObjectType::Blob, 64 << 10);
    }
}

/// Carries a no-op draft through the judging step (it is not an error).
#[derive(Debug)]
struct NoopSignal(String);

impl std::fmt::Display for NoopSignal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for NoopSignal {}

/// Whether an append stopped because of the board (a refusal, an invalid event or a
/// no-op), as opposed to a failure of git.
/// An object named by the run's ref that this process could not find: another
/// process merged the pack holding it (mara after a write, or `git gc`) while
/// this one listed the pack directory. A fresh listing finds it.
fn is_vanished(e: &anyhow::Error) -> bool {
    e.chain().any(|c| {
        c.downcast_ref::<git2::Error>()
            .is_some_and(|g| g.code() == ErrorCode::NotFound && g.class() == git2::ErrorClass::Odb)
    })
}

/// How often a read is retried after an object vanished under it.
const VANISHED_RETRIES: u32 = 8;

fn is_rule_outcome(e: &anyhow::Error) -> bool {
    e.downcast_ref::<board::Refusal>().is_some()
        || e.downcast_ref::<board::Invalid>().is_some()
        || e.downcast_ref::<NoopSignal>().is_some()
}

/// The file whose mtime says when this clone last synced a run with its remote.
fn sync_marker(repo: &Repository, run: &RunId) -> PathBuf {
    repo.commondir()
        .join("mara")
        .join("synced")
        .join(run.as_str())
}

fn mark_synced(repo: &Repository, run: &RunId) {
    let p = sync_marker(repo, run);
    if let Some(dir) = p.parent() {
        let _ = std::fs::create_dir_all(dir);
    }
    // Best effort: the marker only feeds "last synced N ago".
    let _ = std::fs::write(&p, now().to_rfc3339());
}

/// Removes the ref's lock file if a killed process left it behind.
///
/// The lock is renamed away before it is deleted, so of several processes that
/// find the same stale lock only one removes it, and a fresh lock taken in
/// between is never deleted by mistake (its age is checked after the rename).
fn recover_stale_lock(lock: &Path) -> Result<()> {
    let age = |p: &Path| {
        std::fs::metadata(p)
            .and_then(|m| m.modified())
            .ok()
            .and_then(|t| t.elapsed().ok())
    };
    let Some(a) = age(lock) else {
        return Ok(()); // already gone: the holder finished
    };
    if a < STALE_LOCK {
        return Ok(());
    }
    // Aside means outside refs/: a name there would read as a ref to git if this
    // process died before removing it.
    let Some(common) = lock
        .ancestors()
        .find(|p| p.file_name().is_some_and(|n| n == "refs"))
        .and_then(Path::parent)
    else {
        return Ok(());
    };
    let dir = common.join("mara");
    let _ = std::fs::create_dir_all(&dir);
    let aside = dir.join(format!(
        "stale-lock-{}-{}",
        std::process::id(),
        SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos())
    ));
    if std::fs::rename(lock, &aside).is_err() {
        return Ok(()); // someone else moved it first
    }
    if age(&aside).is_some_and(|a| a < STALE_LOCK) {
        // We moved a lock that was taken just now: put it back.
        let _ = std::fs::rename(&aside, lock);
        return Ok(());
    }
    std::fs::remove_file(&aside)
        .with_context(|| format!("removing stale lock {}", aside.display()))?;
    output::warn(&format!(
        "removed a stale lock {} ({}s old, left by a killed process)",
        lock.display(),
        a.as_secs()
    ));
    Ok(())
}

/// The lock file git and libgit2 take to update `refname`.
fn ref_lock(repo: &Repository, refname: &str) -> PathBuf {
    repo.commondir().join(format!("{refname}.lock"))
}

/// Fetches `refname` from `remote` into the local ref of the same name,
/// fast-forward only, retrying while a local writer holds the ref's lock.
pub fn fetch_ref(repo: &Repository, remote: &str, refname: &str) -> Result<()> {
    for _ in 0..50 {
        match remote::fetch(repo.path(), remote, refname)? {
            Ok(()) => {
                if let Some(run) = refname
                    .strip_prefix("refs/mara/")
                    .and_then(|r| r.parse().ok())
                {
                    mark_synced(repo, &run);
                }
                return Ok(());
            }
            Err(remote::FetchError::Busy) => {
                // A lock left by a killed writer must not wedge a remote-mode clone.
                recover_stale_lock(&ref_lock(repo, refname))?;
                std::thread::sleep(Duration::from_millis(20));
            }
            Err(e) => return Err(remote::explain(e, remote, refname)),
        }
    }
    Err(remote::explain(remote::FetchError::Busy, remote, refname))
}

/// A run's store in one repository.
pub struct Ledger {
    repo: Repository,
    run: RunId,
    refname: String,
    /// The e-mail of event commits: the user's, so a run across machines shows
    /// who ran each instance.
    email: String,
    /// Appends and reads since the object database was last opened afresh.
    uses: std::cell::Cell<u32>,
    /// The remote this clone shares the run through, once resolved.
    remote: std::cell::OnceCell<Option<String>>,
}

/// A long-lived process (the orchestrator, the MCP server) reopens its object
/// database after this many appends and reads: libgit2 adds the packs it finds
/// on a refresh but never drops the ones merged away since, so its pack list
/// would only grow, and every lookup walks it.
const REOPEN_ODB_EVERY: u32 = 64;

/// What a command decided on one snapshot of the board.
pub enum Draft {
    /// Write this event.
    Write(EventKind),
    /// Nothing to write; the command succeeds with this message.
    Noop(String),
}

/// The result of an append.
pub enum Outcome {
    Written(Box<Appended>),
    Noop(String),
}

/// An event that is now on the run's ref.
pub struct Appended {
    pub event: Event,
    pub commit: Oid,
    pub attempts: u32,
}

/// The board at one commit of the run; reads its files lazily.
pub struct Snapshot<'l> {
    repo: &'l Repository,
    pub tip: Oid,
    pub seq: u64,
    /// The time of the event at the tip.
    pub ts: Ts,
    pub config: RunConfig,
    tree: Tree<'l>,
    full: RefCell<Option<Board>>,
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
        let i: Option<RoleInstance> =
            self.read_json(&["instances".to_owned(), format!("{}.json", id.file_stem())])?;
        self.instances.borrow_mut().insert(id.clone(), i.clone());
        Ok(i)
    }

    fn artifacts(&self, id: &InstanceId) -> Result<Option<Vec<Artifact>>> {
        self.read_json(&["artifacts".to_owned(), format!("{}.json", id.file_stem())])
    }

    fn empty_board(&self) -> Board {
        Board {
            config: Some(self.config.clone()),
            seq: Some(self.seq),
            ..Board::default()
        }
    }

    /// The whole board: every task, instance and artifact record.
    pub fn full_board(&self) -> Result<Board> {
        if let Some(b) = self.full.borrow().as_ref() {
            return Ok(b.clone());
        }
        let mut board = self.empty_board();
        for blob in self.blobs_under("tasks")? {
            let t: Task = serde_json::from_slice(&blob.1)
                .with_context(|| format!("board file {} at {} is damaged", blob.0, self.tip))?;
            board.tasks.insert(t.id.clone(), t);
        }
        for blob in self.blobs_under("instances")? {
            let i: RoleInstance = serde_json::from_slice(&blob.1)
                .with_context(|| format!("board file {} at {} is damaged", blob.0, self.tip))?;
            board.instances.insert(i.id.clone(), i);
        }
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
        *self.full.borrow_mut() = Some(board.clone());
        Ok(board)
    }

    /// Every blob below a top-level directory, with its path.
    fn blobs_under(&self, dir: &str) -> Result<Vec<(String, Vec<u8>)>> {
        let Some(entry) = self.tree.get_name(dir) else {
            return Ok(vec![]);
        };
        let tree = self.repo.find_tree(entry.id())?;
        let mut out = vec![];
        let mut err = None;
        tree.walk(git2::TreeWalkMode::PreOrder, |root, e| {
            if e.kind() == Some(ObjectType::Blob) {
                match self.repo.find_blob(e.id()) {
                    Ok(b) => out.push((
                        format!("{dir}/{root}{}", e.name().unwrap_or("?")),
                        b.content().to_vec(),
                    )),
                    Err(e) => {
                        err = Some(e);
                        return git2::TreeWalkResult::Abort;
                    }
                }
            }
            git2::TreeWalkResult::Ok
        })?;
        if let Some(e) = err {
            return Err(e.into());
        }
        Ok(out)
    }

    /// The part of the board `event` needs for [`apply`] to judge it.
    pub fn board_for(&self, event: &EventKind, sender: &str) -> Result<Board> {
        if let Some(full) = self.full.borrow().as_ref() {
            return Ok(full.clone());
        }
        let mut board = self.empty_board();
        let (tasks, mut instances) = board::needs(event);
        self.load(&mut board, &tasks)?;
        let (more_tasks, more_instances) = board::needs_after(event, &board);
        self.load(&mut board, &more_tasks)?;
        instances.extend(more_instances);
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

/// The event stored in a commit message: the first line of the body that is JSON.
pub fn event_of_message(message: &str) -> Result<Event> {
    let line = message
        .lines()
        .skip(1)
        .find(|l| l.starts_with('{'))
        .ok_or_else(|| anyhow!("the commit message holds no event"))?;
    Event::from_json(line).context("the commit's event does not parse")
}

/// The full commit message of an event.
pub fn message_of_event(run: &RunId, event: &Event) -> String {
    let mut msg = format!(
        "{}\n\n{}\n\nMara-Run: {run}\nMara-Seq: {}\n",
        event.subject(),
        event.to_json(),
        event.seq
    );
    if let Ok(i) = event.sender.parse::<InstanceId>() {
        msg.push_str(&format!("Mara-Instance: {i}\n"));
    }
    let tasks = event.kind.tasks();
    // A plan names many tasks; its trailers would drown the message.
    if tasks.len() == 1 {
        msg.push_str(&format!("Mara-Task: {}\n", tasks[0]));
    }
    msg
}

/// A tree edit: blobs to write at paths below one directory.
enum Node {
    Blob(Vec<u8>),
    Dir(BTreeMap<String, Node>),
}

/// Writes `changes` on top of `base` and returns the new root tree. Only the trees
/// on the changed paths are rewritten; every other entry keeps its object. Trees
/// are read from `read` and the new objects written to `write` (the same
/// repository, or a [`Staging`] area); their ids are added to `written`.
pub fn write_changes(
    read: &Repository,
    write: &Repository,
    written: &mut Vec<Oid>,
    base: Option<&Tree<'_>>,
    changes: &[Change],
) -> Result<Oid> {
    let mut root = BTreeMap::new();
    for c in changes {
        let path = c.path();
        let (file, dirs) = path.split_last().expect("board paths are never empty");
        let mut node = &mut root;
        for d in dirs {
            let next = node
                .entry(d.clone())
                .or_insert_with(|| Node::Dir(BTreeMap::new()));
            node = match next {
                Node::Dir(m) => m,
                Node::Blob(_) => unreachable!("board paths never put a file where a directory is"),
            };
        }
        node.insert(file.clone(), Node::Blob(c.contents()));
    }
    write_dir(read, write, written, base, root)
}

fn write_dir(
    read: &Repository,
    write: &Repository,
    written: &mut Vec<Oid>,
    base: Option<&Tree<'_>>,
    edits: BTreeMap<String, Node>,
) -> Result<Oid> {
    let mut builder = write.treebuilder(base)?;
    for (name, node) in edits {
        match node {
            Node::Blob(bytes) => {
                let oid = write.blob(&bytes)?;
                written.push(oid);
                builder.insert(&name, oid, 0o100644)?;
            }
            Node::Dir(children) => {
                let sub = match base.and_then(|b| b.get_name(&name)) {
                    Some(e) if e.kind() == Some(ObjectType::Tree) => Some(read.find_tree(e.id())?),
                    _ => None,
                };
                let oid = write_dir(read, write, written, sub.as_ref(), children)?;
                builder.insert(&name, oid, 0o040000)?;
            }
        }
    }
    let oid = builder.write()?;
    written.push(oid);
    Ok(oid)
}

/// An in-memory object database for the objects of an event. [`Staging::land`]
/// writes what was staged into the repository as one packfile: two new files per
/// event (the pack and its index) where loose objects would be one file per
/// object, and creating a file is most of an event's cost on some file systems.
pub struct Staging<'a> {
    /// A repository over nothing but `mempack`: new objects go there.
    area: &'a Repository,
    mempack: &'a Mempack<'a>,
    /// What was written since the last landing.
    written: RefCell<Vec<Oid>>,
}

impl Staging<'_> {
    /// Runs `f` with a fresh staging area.
    pub fn with<T>(f: impl FnOnce(&Staging<'_>) -> Result<T>) -> Result<T> {
        let area = Repository::from_odb(Odb::new()?)?;
        let odb = area.odb()?;
        let mempack = odb.add_new_mempack_backend(1)?;
        f(&Staging {
            area: &area,
            mempack: &mempack,
            written: RefCell::new(vec![]),
        })
    }

    /// Writes `changes` on top of `base` (read from `read`) into the area.
    fn write_changes(
        &self,
        read: &Repository,
        base: Option<&Tree<'_>>,
        changes: &[Change],
    ) -> Result<Oid> {
        let mut written = self.written.borrow_mut();
        write_changes(read, self.area, &mut written, base, changes)
    }

    /// Writes one raw object into the area.
    fn write(&self, kind: ObjectType, data: &[u8]) -> Result<Oid> {
        let oid = self.area.odb()?.write(kind, data)?;
        self.written.borrow_mut().push(oid);
        Ok(oid)
    }

    /// Drops the staged objects.
    fn discard(&self) -> Result<()> {
        self.written.borrow_mut().clear();
        Ok(self.mempack.reset()?)
    }

    /// Writes the staged objects into `repo` as one packfile and empties the area.
    /// The pack counts once the index and then the pack are renamed into place,
    /// before the ref moves; a writer killed before that leaves only temporary
    /// files, which a later merge removes.
    fn land(&self, repo: &Repository) -> Result<()> {
        let mut written = self.written.borrow_mut();
        let pack = self.pack(&written)?;
        let odb = repo.odb()?;
        let mut writer = odb.packwriter()?;
        std::io::Write::write_all(&mut writer, &pack).context("writing a packfile")?;
        writer.commit().context("writing a packfile")?;
        written.clear();
        self.mempack.reset()?;
        Ok(())
    }

    /// The staged objects as a version-2 packfile: no deltas (an event's objects
    /// share little), each zlib-compressed at level 1 as git writes loose
    /// objects, then the SHA-1 trailer. libgit2's indexer checks it all and
    /// writes the index.
    fn pack(&self, oids: &[Oid]) -> Result<Vec<u8>> {
        let odb = self.area.odb()?;
        let mut seen = std::collections::HashSet::new();
        let oids: Vec<Oid> = oids.iter().copied().filter(|o| seen.insert(*o)).collect();
        let mut pack = Vec::with_capacity(4096);
        pack.extend_from_slice(b"PACK");
        pack.extend_from_slice(&2u32.to_be_bytes());
        pack.extend_from_slice(&u32::try_from(oids.len())?.to_be_bytes());
        for oid in oids {
            let object = odb.read(oid)?;
            let kind: u8 = match object.kind() {
                ObjectType::Commit => 1,
                ObjectType::Tree => 2,
                ObjectType::Blob => 3,
                ObjectType::Tag => 4,
                other => bail!("cannot pack object {oid} of type {other}"),
            };
            let data = object.data();
            // Type and size: 3 bits of type and 4 of size, then 7 bits per byte.
            let mut size = data.len();
            let mut byte = (kind << 4) | (size & 0x0f) as u8;
            size >>= 4;
            while size > 0 {
                pack.push(byte | 0x80);
                byte = (size & 0x7f) as u8;
                size >>= 7;
            }
            pack.push(byte);
            let mut z = flate2::write::ZlibEncoder::new(&mut pack, flate2::Compression::fast());
            std::io::Write::write_all(&mut z, data)?;
            z.finish()?;
        }
        let trailer = sha1_smol::Sha1::from(&pack).digest().bytes();
        pack.extend_from_slice(&trailer);
        Ok(pack)
    }
}

/// Jittered exponential backoff: sleeps of up to 1, 2, 4 ... 64 ms, each a random
/// fraction of its cap so racing writers spread out.
struct Backoff {
    attempt: u32,
    state: u64,
}

impl Backoff {
    fn new() -> Self {
        let nanos = SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as u64);
        Self {
            attempt: 0,
            state: nanos ^ (u64::from(std::process::id()) << 32) | 1,
        }
    }

    fn random(&mut self) -> u64 {
        // xorshift64: good enough to decorrelate processes, no dependency needed.
        self.state ^= self.state << 13;
        self.state ^= self.state >> 7;
        self.state ^= self.state << 17;
        self.state
    }

    /// A random sleep of up to `max`.
    fn jitter(&mut self, max: Duration) -> Duration {
        Duration::from_micros(self.random() % (max.as_micros() as u64 + 1))
    }

    fn next_delay(&mut self) -> Duration {
        self.random();
        let cap_us = 1000u64 << self.attempt.min(6);
        self.attempt += 1;
        Duration::from_micros(cap_us / 4 + self.state % (cap_us * 3 / 4 + 1))
    }
}

/// Now, to the millisecond: the precision events store.
pub fn now() -> Ts {
    let t = Utc::now();
    t - chrono::Duration::nanoseconds(i64::from(t.timestamp_subsec_nanos() % 1_000_000))
}

impl Ledger {
    /// Opens an existing run.
    pub fn open(repo: Repository, run: RunId) -> Result<Ledger> {
        let refname = run.refname();
        match repo.refname_to_id(&refname) {
            Ok(_) => {}
            Err(e) if e.code() == ErrorCode::NotFound => bail!(
                "there is no run {run} in this repository (no {refname}); create it with `mara init --run {run}`"
            ),
            Err(e) => return Err(e).with_context(|| format!("reading {refname}")),
        }
        Ok(Ledger::new(repo, run))
    }

    fn new(repo: Repository, run: RunId) -> Ledger {
        let email = repo
            .config()
            .ok()
            .and_then(|c| c.get_string("user.email").ok())
            .filter(|e| !e.trim().is_empty())
            .unwrap_or_else(|| "mara@localhost".to_owned());
        let refname = run.refname();
        Ledger {
            repo,
            run,
            refname,
            email,
            uses: std::cell::Cell::new(0),
            remote: std::cell::OnceCell::new(),
        }
    }

    /// Creates the run's ref with its `init` event. Fails if the run exists.
    pub fn init(repo: Repository, config: RunConfig, sender: &str) -> Result<(Ledger, Appended)> {
        let run = config.run.clone();
        let refname = run.refname();
        if repo.refname_to_id(&refname).is_ok() {
            bail!(
                "run {run} already exists ({refname}); pick another id with `mara init --run ID`"
            );
        }
        if marks::exists(&repo, &run) {
            let seen = marks::load(&repo, &run).seen;
            let restore = seen.map_or(String::new(), |s| {
                format!("restore it with `git update-ref {refname} {s}`, or ")
            });
            bail!(
                "run {run} was here before (this clone saw it{}), but {refname} is gone; nothing was written. {restore}start it anew with `mara init --run {run} --force`",
                seen.map_or(String::new(), |s| format!(" up to {s}"))
            );
        }
        // The run is shared through the remote the user named, and only if this
        // clone has a remote of that name.
        let shared = config.board_remote().map(str::to_owned);
        if let Some(name) = &shared {
            remote::check_named(&repo, name)?;
        }
        let event = Event {
            seq: 0,
            ts: now(),
            sender: sender.to_owned(),
            kind: EventKind::Init { config },
        };
        let changes = apply(&Board::default(), &event)?;
        let ledger = Ledger::new(repo, run);
        let commit = Staging::with(|stage| {
            let tree = stage.write_changes(&ledger.repo, None, &changes)?;
            let commit = ledger.commit_event(stage, &event, tree, None)?;
            stage.land(&ledger.repo)?;
            Ok(commit)
        })?;
        if let Some(remote) = &shared {
            match remote::push(ledger.repo.path(), remote, commit, &ledger.refname)? {
                Push::Accepted => ledger.mark_synced(),
                Push::Lost(why) => bail!(
                    "remote {remote} already has run {} ({why}); join it with `mara sync --run {} --remote {remote}`, or pick another id",
                    ledger.run,
                    ledger.run
                ),
            }
        }
        // Keep a reflog for the run's ref: git writes one for refs/mara/* only when it
        // already exists, and it is this clone's record of what it saw.
        ledger.repo.reference_ensure_log(&ledger.refname)?;
        // A zero old id means "must not exist", checked under git's ref lock: of
        // several processes creating the same run, exactly one wins.
        let msg = format!("mara: {}", event.subject());
        let exists = || {
            anyhow!(
                "run {} was created by someone else just now; pick another id with `mara init --run ID`",
                ledger.run
            )
        };
        let mut tries = 0;
        loop {
            tries += 1;
            match ledger
                .repo
                .reference_matching(&ledger.refname, commit, true, Oid::zero(), &msg)
            {
                Ok(_) => break,
                Err(e) if e.code() == ErrorCode::Modified || e.code() == ErrorCode::Exists => {
                    return Err(exists())
                }
                Err(e) if e.code() == ErrorCode::Locked && tries < 200 => {
                    std::thread::sleep(Duration::from_millis(5));
                }
                Err(e) if e.code() == ErrorCode::Locked => return Err(exists()),
                Err(e) => return Err(anyhow!(e).context(format!("creating {}", ledger.refname))),
            }
        }
        marks::write(&ledger.repo, &ledger.run, commit, Some(commit));
        if let Some(name) = &shared {
            remote::record_choice(&ledger.repo, &ledger.run, name);
        }
        Ok((
            ledger,
            Appended {
                event,
                commit,
                attempts: 1,
            },
        ))
    }

    /// The run's id.
    pub fn run(&self) -> &RunId {
        &self.run
    }

    /// The repository the run lives in.
    pub fn repo(&self) -> &Repository {
        &self.repo
    }

    /// The run's ref name.
    pub fn refname(&self) -> &str {
        &self.refname
    }

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
            config: RunConfig {
                run: self.run.clone(),
                claim_timeout_sec: 0,
                lock_mode: Default::default(),
                remote: None,
                outputs_pattern: None,
                max_clock_skew_sec: None,
            },
            tree,
            full: RefCell::new(None),
            tasks: RefCell::new(BTreeMap::new()),
            instances: RefCell::new(BTreeMap::new()),
        };
        let config: RunConfig = snap
            .read_json(&["config.json".to_owned()])?
            .ok_or_else(|| anyhow!("{tip} on {} has no config.json", self.refname))?;
        Ok(Snapshot { config, ..snap })
    }

    /// Writes the commit object of an event. The object is formatted here rather
    /// than through `git_commit_create`, which would read the tree and the parent
    /// back from disk only to take their ids.
    fn commit_event(
        &self,
        stage: &Staging<'_>,
        event: &Event,
        tree: Oid,
        parent: Option<Oid>,
    ) -> Result<Oid> {
        let clean = |s: &str| board::one_line(s, 64).replace(['<', '>'], "");
        let ident = format!(
            "{} <{}> {} +0000",
            clean(&event.sender),
            clean(&self.email),
            event.ts.timestamp()
        );
        let mut raw = format!("tree {tree}\n");
        if let Some(p) = parent {
            raw.push_str(&format!("parent {p}\n"));
        }
        raw.push_str(&format!(
            "author {ident}\ncommitter {ident}\n\n{}",
            message_of_event(&self.run, event)
        ));
        stage.write(ObjectType::Commit, raw.as_bytes())
    }

    fn lock_path(&self) -> PathBuf {
        ref_lock(&self.repo, &self.refname)
    }

    /// Appends one event: read the tip, let `draft` decide on it, check the rule,
    /// write the commit and compare-and-swap the ref; on a lost race, again.
    ///
    /// In remote mode the compare-and-swap is a non-force push of the commit to the
    /// remote's ref; the local ref moves only after the remote accepted it. A rule
    /// failure on a tip that was not fetched by this command is re-checked on a
    /// fresh fetch first, so a refusal is true on the remote.
    pub fn append<F>(&self, sender: &str, mut draft: F) -> Result<Outcome>
    where
        F: FnMut(&Snapshot<'_>, Ts) -> Result<Draft>,
    {
        self.count_use()?;
        Staging::with(|stage| self.append_staged(stage, sender, &mut draft))
    }

    fn append_staged<F>(&self, stage: &Staging<'_>, sender: &str, draft: &mut F) -> Result<Outcome>
    where
        F: FnMut(&Snapshot<'_>, Ts) -> Result<Draft>,
    {
        let started = Instant::now();
        let mut backoff = Backoff::new();
        let mut attempts = 0;
        let mut fresh = false;
        let mut vanished = 0;
        loop {
            attempts += 1;
            let snap = match self.snapshot() {
                Err(e) if is_vanished(&e) && vanished < VANISHED_RETRIES => {
                    vanished += 1;
                    self.refresh_objects(vanished)?;
                    continue;
                }
                snap => snap?,
            };
            self.check_new_events(stage, &snap)?;
            let remote = self.remote_for(&snap.config)?;
            let ts = now();
            let judged = draft(&snap, ts).and_then(|d| match d {
                Draft::Write(kind) => {
                    let board = snap.board_for(&kind, sender)?;
                    let event = Event {
                        seq: snap.seq + 1,
                        ts,
                        sender: sender.to_owned(),
                        kind,
                    };
                    let changes = apply(&board, &event)?;
                    Ok((event, changes))
                }
                Draft::Noop(msg) => Err(anyhow::Error::new(NoopSignal(msg))),
            });
            let (event, changes) = match judged {
                Ok(x) => x,
                Err(e) if is_vanished(&e) && vanished < VANISHED_RETRIES => {
                    vanished += 1;
                    self.refresh_objects(vanished)?;
                    continue;
                }
                Err(e) if remote.is_some() && !fresh && is_rule_outcome(&e) => {
                    // Judged on the last fetched tip: make it true on the remote.
                    self.fetch(remote.as_deref().expect("checked is_some"))?;
                    fresh = true;
                    continue;
                }
                Err(e) => {
                    return match e.downcast::<NoopSignal>() {
                        Ok(NoopSignal(msg)) => Ok(Outcome::Noop(msg)),
                        Err(e) => Err(e),
                    }
                }
            };
            let tree = stage.write_changes(&self.repo, Some(&snap.tree), &changes)?;
            let commit = self.commit_event(stage, &event, tree, Some(snap.tip))?;
            let written = |attempts| {
                Ok(Outcome::Written(Box::new(Appended {
                    event: event.clone(),
                    commit,
                    attempts,
                })))
            };
            let mut lock = None;
            if let Some(remote) = &remote {
                stage.land(&self.repo)?;
                match remote::push(self.repo.path(), remote, commit, &self.refname)? {
                    Push::Accepted => {
                        self.mark_synced();
                        self.advance_local(snap.tip, commit, &event)?;
                        // Built on a checked tip with the rules checked: checked too.
                        marks::write(&self.repo, &self.run, commit, Some(commit));
                        self.merge_packs();
                        return written(attempts);
                    }
                    Push::Lost(_) => {
                        self.fetch(remote)?;
                        fresh = true;
                    }
                }
            } else if self.repo.refname_to_id(&self.refname).ok() != Some(snap.tip) {
                // Someone moved the ref while this event was drafted: this attempt
                // has lost already. Its objects never reach the disk.
                stage.discard()?;
            } else {
                stage.land(&self.repo)?;
                match self.repo.reference_matching(
                    &self.refname,
                    commit,
                    true,
                    snap.tip,
                    &format!("mara: {}", event.subject()),
                ) {
                    Ok(_) => {
                        // Built on a checked tip with the rules checked: checked too.
                        marks::write(&self.repo, &self.run, commit, Some(commit));
                        self.merge_packs();
                        return written(attempts);
                    }
                    Err(e) if e.code() == ErrorCode::Modified => {}
                    Err(e) if e.code() == ErrorCode::Locked => {
                        let path = self.lock_path();
                        recover_stale_lock(&path)?;
                        lock = Some(path);
                    }
                    Err(e) => return Err(e).with_context(|| format!("updating {}", self.refname)),
                }
            }
            let max = if remote.is_some() {
                MAX_REMOTE_ATTEMPTS
            } else {
                MAX_ATTEMPTS
            };
            if attempts >= max || started.elapsed() >= MAX_WAIT {
                if let Some(lock) = lock {
                    bail!(
                        "{} stayed locked for {}s: {} exists; if no mara or git process is still running, remove it: rm '{}'",
                        self.refname,
                        started.elapsed().as_secs(),
                        lock.display(),
                        lock.display()
                    );
                }
                bail!(
                    "gave up after {attempts} attempts in {:.1}s: other writers kept moving {} first; nothing was written, try again",
                    started.elapsed().as_secs_f64(),
                    self.refname
                );
            }
            if remote.is_some() {
                // The fetch after a rejected push already spaced this attempt out;
                // sleeping longer only hands the next round to whoever won the last
                // one (a writer whose local tip is current pushes without fetching).
                std::thread::sleep(backoff.jitter(Duration::from_millis(5)));
            } else {
                std::thread::sleep(backoff.next_delay());
            }
        }
    }

    /// Re-lists the object database after an object vanished under a read, after
    /// a short pause that grows with each try.
    fn refresh_objects(&self, tries: u32) -> Result<()> {
        std::thread::sleep(Duration::from_millis(u64::from(tries)));
        Ok(self.repo.odb()?.refresh()?)
    }

    /// Runs a read of the board at the current tip, again on a fresh tip if an
    /// object vanished under it (see [`is_vanished`]).
    pub fn read<T>(&self, mut f: impl FnMut(&Snapshot<'_>) -> Result<T>) -> Result<T> {
        self.count_use()?;
        self.settled(|| f(&self.snapshot()?))
    }

    /// Counts an append or a read; every [`REOPEN_ODB_EVERY`] uses the object
    /// database is opened afresh.
    fn count_use(&self) -> Result<()> {
        let n = self.uses.get() + 1;
        if n < REOPEN_ODB_EVERY {
            self.uses.set(n);
            return Ok(());
        }
        self.uses.set(0);
        let fresh = Repository::open(self.repo.path())?;
        self.repo.set_odb(&fresh.odb()?)?;
        Ok(())
    }

    /// Runs `f` again when an object vanished under it (see [`is_vanished`]).
    fn settled<T>(&self, mut f: impl FnMut() -> Result<T>) -> Result<T> {
        let mut tries = 0;
        loop {
            match f() {
                Err(e) if is_vanished(&e) && tries < VANISHED_RETRIES => {
                    tries += 1;
                    self.refresh_objects(tries)?;
                }
                other => return other,
            }
        }
    }

    /// After a write: starts merging the small packs events leave once enough
    /// piled up, in the background. The event is written whatever happens here.
    fn merge_packs(&self) {
        if let Err(e) = crate::packs::after_write(&self.repo) {
            output::warn(&format!("could not merge small packfiles: {e:#}"));
        }
    }

    /// The remote this clone shares the run through, if it is shared: see
    /// [`remote::choose`]. Resolved once per ledger.
    pub fn remote_for(&self, config: &RunConfig) -> Result<Option<String>> {
        if let Some(r) = self.remote.get() {
            return Ok(r.clone());
        }
        let r = remote::choose(&self.repo, &self.run, config.board_remote())?;
        Ok(self.remote.get_or_init(|| r).clone())
    }

    /// Refuses to build on a tip that does not contain what this clone saw before:
    /// the run's history was rewritten (a reset, a forced update, a restore from an
    /// old backup), and appending would bury that. Returns whether `tip` contains
    /// what was seen (false: the snapshot is merely stale).
    fn check_not_rewritten(&self, tip: Oid, seen: Option<Oid>) -> Result<bool> {
        let Some(seen) = seen else {
            return Ok(true);
        };
        if seen == tip || self.repo.graph_descendant_of(tip, seen)? {
            return Ok(true);
        }
        // Another writer may have moved the ref (and recorded it as seen) after
        // this snapshot was read: then the snapshot is merely stale, and the
        // compare-and-swap will fail and retry on the new tip.
        if self.repo.refname_to_id(&self.refname)? != tip {
            return Ok(false);
        }
        bail!(
            "{} was rewritten: this clone last saw {seen}, and the ref now points at {tip}, which does not contain it; nothing was written. See `mara verify`; restore with `git update-ref {} {seen}`, or if the rewrite is intended, `rm {}`",
            self.refname,
            self.refname,
            marks::path(&self.repo, &self.run).display()
        )
    }

    /// Checks, before anything is built on `snap`, every event this clone has not
    /// checked before: those after the last tip it checked, a few in the common
    /// case, all of them on first contact. Each must replay exactly as `mara
    /// verify` replays it ([`Checker::check`]); the first that does not stops the
    /// write, naming the commit. The tip's time is checked against this clock
    /// every time.
    fn check_new_events(&self, stage: &Staging<'_>, snap: &Snapshot<'_>) -> Result<()> {
        let marks = marks::load(&self.repo, &self.run);
        let contains_seen = self.check_not_rewritten(snap.tip, marks.seen)?;
        let refuse = |problem: &str| {
            anyhow!(
                "refusing to build on {}: {problem}; nothing was written. `mara verify` lists every problem",
                self.refname
            )
        };
        if marks.checked == Some(snap.tip) {
            let skew = snap.config.max_clock_skew();
            if snap.ts - now() > skew {
                return Err(refuse(&format!(
                    "its tip {} (seq {}) is stamped {}, more than {}s ahead of this clock; set the clocks right (NTP), or raise coordination.max_clock_skew_sec",
                    snap.tip,
                    snap.seq,
                    snap.ts.to_rfc3339(),
                    skew.num_seconds()
                )));
            }
            return Ok(());
        }
        let mut todo = vec![];
        let mut cur = snap.tip;
        let base = loop {
            if Some(cur) == marks.checked {
                break Some(cur);
            }
            todo.push(cur);
            let commit = self.repo.find_commit(cur)?;
            match commit.parent_count() {
                0 => break None,
                1 => cur = commit.parent_id(0)?,
                n => {
                    return Err(refuse(&format!(
                        "commit {cur} has {n} parents; an event has one"
                    )))
                }
            }
        };
        if todo.len() >= 1000 {
            output::warn(&format!(
                "checking {} events of run {} that this clone has not checked before",
                todo.len(),
                self.run
            ));
        }
        let mut parent: Option<(Snapshot<'_>, Event)> = match base {
            Some(b) => {
                let s = self.snapshot_at(b)?;
                let e = event_of_message(self.repo.find_commit(b)?.message().unwrap_or_default())?;
                Some((s, e))
            }
            None => None,
        };
        let mut checker = Checker {
            read: &self.repo,
            write: stage.area,
            run: &self.run,
            now: now(),
            skew: parent.as_ref().map_or(
                chrono::TimeDelta::seconds(board::DEFAULT_MAX_CLOCK_SKEW_SEC as i64),
                |(s, _)| s.config.max_clock_skew(),
            ),
        };
        for oid in todo.into_iter().rev() {
            let commit = self.repo.find_commit(oid)?;
            let (replayed, problems) = checker.check(
                &commit,
                parent.as_ref().map(|(_, e)| e),
                parent.as_ref().map(|(s, _)| &s.tree),
                |e| match &parent {
                    Some((s, _)) => s.board_for(&e.kind, &e.sender),
                    None => Ok(Board::default()),
                },
            );
            stage.discard()?;
            if let Some(p) = problems.first() {
                return Err(refuse(p));
            }
            let event = replayed.expect("a check without problems replays").event;
            if let EventKind::Init { config } = &event.kind {
                checker.skew = config.max_clock_skew();
            }
            parent = Some((self.snapshot_at(oid)?, event));
        }
        let seen = if contains_seen {
            snap.tip
        } else {
            marks.seen.unwrap_or(snap.tip)
        };
        marks::write(&self.repo, &self.run, seen, Some(snap.tip));
        Ok(())
    }

    /// Checks the events at the tip this clone has not checked before (see
    /// `check_new_events`), as a write would before building on them.
    pub fn check_tip(&self) -> Result<()> {
        Staging::with(|stage| self.check_new_events(stage, &self.snapshot()?))
    }

    /// Fetches the run's ref from `remote` (fast-forward only).
    pub fn fetch(&self, remote: &str) -> Result<()> {
        fetch_ref(&self.repo, remote, &self.refname)?;
        Ok(())
    }

    /// After the remote accepted `commit`, moves the local ref to it, unless a
    /// concurrent fetch already moved the local ref past it.
    fn advance_local(&self, old: Oid, commit: Oid, event: &Event) -> Result<()> {
        for _ in 0..100 {
            let cur = self.repo.refname_to_id(&self.refname)?;
            if cur == commit || (cur != old && !self.repo.graph_descendant_of(commit, cur)?) {
                return Ok(());
            }
            match self.repo.reference_matching(
                &self.refname,
                commit,
                true,
                cur,
                &format!("mara: {} (pushed)", event.subject()),
            ) {
                Ok(_) => return Ok(()),
                Err(e) if matches!(e.code(), ErrorCode::Modified | ErrorCode::Locked) => {
                    if e.code() == ErrorCode::Locked {
                        recover_stale_lock(&self.lock_path())?;
                    }
                    std::thread::sleep(Duration::from_millis(2));
                }
                Err(e) => return Err(e).with_context(|| format!("updating {}", self.refname)),
            }
        }
        // The remote has the event; the next fetch brings the local ref along.
        Ok(())
    }

    fn mark_synced(&self) {
        mark_synced(&self.repo, &self.run);
    }

    /// When this clone last fetched or pushed the run, if ever.
    pub fn last_synced(&self) -> Option<std::time::SystemTime> {
        std::fs::metadata(sync_marker(&self.repo, &self.run))
            .and_then(|m| m.modified())
            .ok()
    }

    /// Every event of the run, oldest first, with its commit.
    pub fn events(&self) -> Result<Vec<(Oid, Event)>> {
        self.settled(|| {
            let mut out = vec![];
            for c in self.chain()? {
                let commit = self.repo.find_commit(c)?;
                let event = event_of_message(commit.message().unwrap_or_default())
                    .with_context(|| format!("reading the event of {c} on {}", self.refname))?;
                out.push((c, event));
            }
            Ok(out)
        })
    }

    /// The commits of the run's ref, oldest first, following first parents.
    pub fn chain(&self) -> Result<Vec<Oid>> {
        let mut walk = self.repo.revwalk()?;
        walk.push_ref(&self.refname)?;
        walk.simplify_first_parent()?;
        walk.set_sorting(git2::Sort::TOPOLOGICAL | git2::Sort::REVERSE)?;
        Ok(walk.collect::<Result<Vec<_>, _>>()?)
    }

    /// Replays the log from its first commit: every commit has one parent, seq is
    /// gapless, each event passes [`apply`], each commit's tree is the replay of its
    /// event on its parent, and the replay reproduces the tip's tree. Returns the
    /// problems found (empty when the run is sound) and the number of events.
    pub fn verify(&self) -> Result<(Vec<String>, u64)> {
        // Replayed trees go to memory, not disk: verifying writes nothing.
        let odb = self.repo.odb()?;
        let _mempack = odb.add_new_mempack_backend(1000)?;
        let mut problems = vec![];
        let mut board = Board::default();
        let mut replayed: Option<Oid> = None;
        let mut prev: Option<(Oid, Event)> = None;
        let mut count = 0u64;
        let tip = self.repo.refname_to_id(&self.refname)?;
        let chain = self.chain()?;
        let mut checker = Checker {
            read: &self.repo,
            write: &self.repo,
            run: &self.run,
            now: now(),
            skew: chrono::TimeDelta::seconds(board::DEFAULT_MAX_CLOCK_SKEW_SEC as i64),
        };
        for oid in chain.iter().copied() {
            count += 1;
            let commit = self.repo.find_commit(oid)?;
            let prev_tree = prev
                .as_ref()
                .map(|(t, _)| self.repo.find_tree(*t))
                .transpose()?;
            let (done, found) = checker.check(
                &commit,
                prev.as_ref().map(|(_, e)| e),
                prev_tree.as_ref(),
                |_| Ok(&board),
            );
            problems.extend(found);
            let Some(check::Replayed { event, changes }) = done else {
                break;
            };
            if let EventKind::Init { config } = &event.kind {
                checker.skew = config.max_clock_skew();
            }
            let replay_base = replayed.map(|t| self.repo.find_tree(t)).transpose()?;
            replayed = Some(write_changes(
                &self.repo,
                &self.repo,
                &mut vec![],
                replay_base.as_ref(),
                &changes,
            )?);
            prev = Some((commit.tree_id(), event.clone()));
            board.commit(event.seq, changes);
        }
        // What this clone saw: every state the ref reached by a fast-forward (mara's
        // own writes, fetches) must still be in the history. A state reached by a
        // rewrite is not required, so restoring the ref makes the run sound again.
        let history: std::collections::HashSet<Oid> = chain.iter().copied().collect();
        if let Some(lost) = marks::reached_states(&self.repo, &self.refname, Some(tip))
            .into_iter()
            .find(|s| !history.contains(s))
        {
            let reflog = self.repo.reflog(&self.refname)?;
            let entry = reflog.iter().find(|e| e.id_new() == lost);
            problems.push(format!(
                "{} was rewritten: it held {lost} at {} ({}), and its history no longer contains that",
                self.refname,
                entry.as_ref().map_or("?".to_owned(), |e| chrono::DateTime::from_timestamp(
                    e.committer().when().seconds(),
                    0
                )
                .map_or("?".to_owned(), |t| t.format("%Y-%m-%d %H:%M:%S UTC").to_string())),
                one_line_msg(entry.as_ref().and_then(|e| e.message()))
            ));
        }
        if let Some(seen) = marks::load(&self.repo, &self.run).seen {
            if seen != tip && !self.repo.graph_descendant_of(tip, seen)? {
                problems.push(format!(
                    "{} was rewritten: this clone last saw {seen}, which the tip {tip} does not contain",
                    self.refname
                ));
            }
        }
        if problems.is_empty() {
            let tip_tree = self.repo.find_commit(tip)?.tree_id();
            if replayed != Some(tip_tree) {
                problems.push(format!(
                    "replaying the log does not reproduce the board at the tip {tip}"
                ));
            }
        }
        Ok((problems, count))
    }
}

fn one_line_msg(m: Option<&str>) -> String {
    board::one_line(m.unwrap_or("no message"), 80)
}

/// What `mara sync` did.
pub enum Synced {
    UpToDate(Oid),
    Fetched { from: Option<Oid>, to: Oid },
    Pushed { from: Oid, to: Oid },
}

/// Brings the run's local ref and the remote's together: creates or fast-forwards
/// the local ref from the remote, or pushes local events the remote lacks. Refuses
/// when the two have diverged or the remote rewrote what this clone saw.
pub fn sync(repo: &Repository, run: &RunId, remote: &str) -> Result<Synced> {
    let refname = run.refname();
    let scratch = format!("refs/mara-sync/{run}");
    let local = repo.refname_to_id(&refname).ok();
    let spec = format!("+{refname}:{scratch}");
    let out = crate::gitcmd::git_at(
        repo.path(),
        &[
            "fetch",
            "--quiet",
            "--no-tags",
            "--no-auto-maintenance",
            "--no-write-fetch-head",
            "--no-recurse-submodules",
            remote,
            &spec,
        ],
    )?;
    let theirs = if out.status.success() {
        let id = repo.refname_to_id(&scratch)?;
        if let Ok(mut r) = repo.find_reference(&scratch) {
            let _ = r.delete();
        }
        Some(id)
    } else {
        let err = String::from_utf8_lossy(&out.stderr);
        if !err.contains("couldn't find remote ref") {
            let msg: Vec<&str> = err
                .lines()
                .map(str::trim)
                .filter(|l| !l.is_empty() && !l.starts_with("hint:"))
                .collect();
            bail!(
                "cannot fetch {refname} from remote {remote}: {}",
                msg.join("; ")
            );
        }
        None
    };
    let msg = format!("mara: sync with {remote}");
    let result = match (local, theirs) {
        (None, None) => bail!(
            "there is no run {run} here or on remote {remote}; create it with `mara init --run {run} --remote {remote}`"
        ),
        (None, Some(t)) => {
            repo.reference_ensure_log(&refname)?;
            repo.reference(&refname, t, false, &msg)
                .with_context(|| format!("creating {refname}"))?;
            Synced::Fetched { from: None, to: t }
        }
        (Some(l), Some(t)) if l == t => Synced::UpToDate(l),
        (Some(l), Some(t)) if repo.graph_descendant_of(t, l)? => {
            repo.reference_matching(&refname, t, true, l, &msg)
                .with_context(|| format!("moving {refname}"))?;
            Synced::Fetched { from: Some(l), to: t }
        }
        (Some(l), theirs) => {
            if let Some(t) = theirs {
                if !repo.graph_descendant_of(l, t)? {
                    bail!(
                        "{refname} here and on remote {remote} have diverged (or the remote rewrote it); nothing was changed; compare them with `git log {refname}` and `git fetch {remote} {refname}:refs/mara-theirs/{run}`"
                    );
                }
            }
            // Never spread events this clone has not checked.
            Ledger::new(Repository::open(repo.path())?, run.clone()).check_tip()?;
            match remote::push(repo.path(), remote, l, &refname)? {
                Push::Accepted => Synced::Pushed {
                    from: theirs.unwrap_or(l),
                    to: l,
                },
                Push::Lost(why) => bail!(
                    "remote {remote} moved {refname} while syncing ({why}); run `mara sync` again"
                ),
            }
        }
    };
    mark_synced(repo, run);
    if let Ok(tip) = repo.refname_to_id(&refname) {
        // Fetched events are seen, not yet checked: the next write checks them.
        let checked = marks::load(repo, run).checked;
        marks::write(repo, run, tip, checked);
    }
    Ok(result)
}
