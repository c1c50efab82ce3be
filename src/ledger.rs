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
//! * No append builds on an event this clone has not checked: the events since
//!   the last tip it checked are replayed first, with the check `verify` runs.
//!
//! This file is the public face (opening and creating a run, reads); the jobs
//! live beside it in `ledger/`: `snapshot` (the board at one commit, read
//! lazily), `staging` (tree writing, the in-memory object area and its landing as
//! a pack), `message` (an event's commit message and object), `append` (the
//! append loop: one attempt at a time), `check` (what a writer checks before
//! building on a tip, shared with `verify`), `verify` (the full replay), `sync`
//! (fetching and `mara sync`), `locks` (stale ref locks), `marks` (what this
//! clone saw and checked) and `wait` (waiting for the ref to move, for
//! `claim --wait`, `inbox --wait` and `log --follow`).

// This module is the sole writer of the run's ref (clippy.toml forbids the ref
// writers everywhere else).
#![allow(clippy::disallowed_methods)]

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{anyhow, bail, Context, Result};
use chrono::Utc;
use git2::{ErrorCode, ObjectType, Oid, Repository};

use crate::backoff::Backoff;
use crate::board::{apply, Board, Event, EventKind, RunConfig, Ts};
use crate::ids::RunId;
use crate::output;
use crate::remote::{self, Push, Turn};

mod alive;
mod append;
mod check;
mod index;
mod locks;
pub mod marks;
mod message;
mod snapshot;
mod staging;
mod sync;
mod verify;
mod wait;

pub use alive::heartbeat_refname;
pub use message::{event_of_message, message_of_event};
pub use snapshot::Snapshot;
pub use staging::{write_changes, Objects, Staging};
pub use sync::{fetch_ref, sync, Synced};
pub use wait::DEFAULT_POLL_SEC;

use append::{is_vanished, vanished_backoff};
use locks::ref_lock;

/// A file of this clone's own state for `run`: `.git/mara/<kind>/<run>`, in the
/// common git directory, so every worktree of the clone shares it. `kind` names
/// what it keeps (`seen`, `alive`, `synced`, `writers`, `yielding`, `inbox`).
pub fn state_path(repo: &Repository, kind: &str, run: &RunId) -> PathBuf {
    repo.commondir().join("mara").join(kind).join(run.as_str())
}

/// Sets libgit2's process-wide options for mara's access pattern. Call once, early.
pub fn tune_libgit2() {
    // The ledger writes a tree right after the blobs it names and a commit right
    // after its tree: checking that they exist would re-read each object.
    git2::opts::strict_object_creation(false);
    // Nor re-hash every object it reads (git does not either): the hash guards
    // against a damaged disk, not against a writer, who can write valid objects;
    // what a writer wrote is checked by replaying its event. SHA-1DC hashing was
    // a fifth of a `mara log`.
    git2::opts::strict_hash_verification(false);
    // Task buckets and the tasks/ tree outgrow libgit2's default 4 KiB cache limit
    // for trees; an append reads them more than once.
    // SAFETY: called before any repository is opened, from one thread.
    unsafe {
        let _ = git2::opts::set_cache_object_limit(ObjectType::Tree, 1 << 20);
        let _ = git2::opts::set_cache_object_limit(ObjectType::Blob, 64 << 10);
        // An event's commit is read once per walk: caching 100,000 of them (and
        // clearing the cache as it fills) was a tenth of a `mara log`.
        let _ = git2::opts::set_cache_object_limit(ObjectType::Commit, 0);
    }
}

/// Whether a dropped [`Ledger`] leaves its repository to the end of the process
/// ([`free_nothing_before_exit`]).
static KEEP_TO_EXIT: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// For a process that runs one command and exits (the `mara` binary, for every
/// command but the long-lived ones): a dropped [`Ledger`] does not free its
/// repository, the process's exit does. Freeing it unmapped each pack index and
/// pack window one `munmap` at a time, a thirtieth of a small claim (issue 16);
/// the kernel drops the whole address space at once. A long-lived process must
/// not call this: each ledger it opens would keep its files open.
pub fn free_nothing_before_exit() {
    KEEP_TO_EXIT.store(true, std::sync::atomic::Ordering::Relaxed);
}

/// A run's store in one repository.
pub struct Ledger {
    /// Dropped by [`Ledger`]'s `Drop`, unless [`free_nothing_before_exit`].
    repo: std::mem::ManuallyDrop<Repository>,
    run: RunId,
    refname: String,
    /// The e-mail of event commits: the user's, so a run across machines shows
    /// who ran each instance.
    email: String,
    /// Appends and reads since the object database was last opened afresh.
    uses: std::cell::Cell<u32>,
    /// The remote this clone shares the run through, once resolved.
    remote: std::cell::OnceCell<Option<String>>,
    /// When this process last pushed a heartbeat ref (see `alive`).
    beat: std::cell::Cell<Option<std::time::Instant>>,
}

impl Drop for Ledger {
    fn drop(&mut self) {
        if !KEEP_TO_EXIT.load(std::sync::atomic::Ordering::Relaxed) {
            // SAFETY: `repo` is dropped here once and never used again.
            unsafe { std::mem::ManuallyDrop::drop(&mut self.repo) }
        }
    }
}

/// A long-lived process (the orchestrator) reopens its object
/// database after this many appends and reads: libgit2 adds the packs it finds
/// on a refresh but never drops the ones merged away since, so its pack list
/// would only grow, and every lookup walks it.
const REOPEN_ODB_EVERY: u32 = 64;

/// What a command decided on one snapshot of the board.
// One draft per append attempt: boxing the event buys nothing.
#[allow(clippy::large_enum_variant)]
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
            repo: std::mem::ManuallyDrop::new(repo),
            run,
            refname,
            email,
            uses: std::cell::Cell::new(0),
            remote: std::cell::OnceCell::new(),
            beat: std::cell::Cell::new(None),
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
            match remote::push(
                ledger.repo.path(),
                remote,
                commit,
                &ledger.refname,
                Turn::Set {
                    free: remote::free_turn(&ledger.repo)?,
                },
            )? {
                Push::Accepted => ledger.mark_synced(),
                lost => bail!(
                    "remote {remote} already has run {} ({}); join it with `mara sync --run {} --remote {remote}`, or pick another id",
                    ledger.run,
                    lost.why(),
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
        // A writer holds the lock for microseconds: wait a second at most.
        let mut pauses = Backoff::fixed(Duration::from_millis(5)).attempts(200);
        loop {
            match ledger
                .repo
                .reference_matching(&ledger.refname, commit, true, Oid::zero(), &msg)
            {
                Ok(_) => break,
                Err(e) if e.code() == ErrorCode::Modified || e.code() == ErrorCode::Exists => {
                    return Err(exists())
                }
                Err(e) if e.code() == ErrorCode::Locked => match pauses.next() {
                    Some(p) => std::thread::sleep(p),
                    None => return Err(exists()),
                },
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

    fn lock_path(&self) -> PathBuf {
        ref_lock(&self.repo, &self.refname)
    }

    /// Runs a read of the board at the current tip, again on a fresh tip if an
    /// object vanished under it (see `is_vanished`).
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
        let mut pauses = vanished_backoff();
        loop {
            match f() {
                Err(e) if is_vanished(&e) => {
                    let Some(pause) = pauses.next() else {
                        return Err(e);
                    };
                    // A pause that grows with each try, then a fresh listing.
                    std::thread::sleep(pause);
                    self.repo.odb()?.refresh()?;
                }
                other => return other,
            }
        }
    }

    /// After a write (or an attempt that lost, whose pack stays): starts merging
    /// the small packs events leave once enough piled up, in the background. The
    /// event is written (or retried) whatever happens here.
    fn merge_packs(&self) {
        if let Err(e) = crate::packs::after_write(&self.repo) {
            output::warn(&format!("could not merge small packfiles: {e:#}"));
        }
    }

    /// The remote this clone shares the run through, if it is shared: see
    /// [`remote::choose`]. Resolved once per ledger.
    pub fn remote_for(&self, config: &RunConfig) -> Result<Option<String>> {
        // A local run writes locally, whatever remote this clone syncs it with;
        // and the claim path reads no git config for it.
        if config.lock_mode != crate::board::LockMode::Remote {
            return Ok(None);
        }
        if let Some(r) = self.remote.get() {
            return Ok(r.clone());
        }
        let r = remote::choose(&self.repo, &self.run, config.board_remote())?;
        Ok(self.remote.get_or_init(|| r).clone())
    }

    /// Every event of the run, oldest first, with its commit.
    pub fn events(&self) -> Result<Vec<(Oid, Event)>> {
        self.events_at(self.tip()?)
    }

    /// Every event of the log up to `tip` (a commit of the run's ref), oldest first.
    pub fn events_at(&self, tip: Oid) -> Result<Vec<(Oid, Event)>> {
        self.event_lines_at(tip, 0)?
            .into_iter()
            .map(|(c, line)| {
                let event = Event::from_json(&line)
                    .with_context(|| format!("reading the event of {c} on {}", self.refname))?;
                Ok((c, event))
            })
            .collect()
    }

    /// The stored lines (the events as JSON, exactly as written) from seq `since`
    /// on, oldest first, with their commits. Reads each commit once, newest first
    /// along first parents, and stops at `since`: a read of the last few events
    /// costs a few commits, whatever the length of the log.
    pub fn event_lines(&self, since: u64) -> Result<Vec<(Oid, String)>> {
        self.event_lines_at(self.tip()?, since)
    }

    /// [`Ledger::event_lines`] of the log up to `tip` (a commit of the run's ref):
    /// a caller that waits for more next knows exactly which tip it read.
    pub fn event_lines_at(&self, tip: Oid, since: u64) -> Result<Vec<(Oid, String)>> {
        let mut out = vec![];
        self.walk_back(tip, |oid, seq, line| {
            if oid == tip {
                // A start (or a start over, after a repack): nothing read yet.
                out.clear();
            }
            if seq < since {
                return Ok(false);
            }
            out.push((oid, line.to_owned()));
            Ok(true)
        })?;
        out.reverse();
        Ok(out)
    }

    /// Hands `visit` the stored lines from `tip` back, newest first (commit, seq,
    /// line), until it returns `false` or the log begins: a reader that stops early
    /// costs the commits it read. When objects vanish under it (a repack) the walk
    /// starts over from `tip`.
    pub fn walk_back(
        &self,
        tip: Oid,
        mut visit: impl FnMut(Oid, u64, &str) -> Result<bool>,
    ) -> Result<()> {
        self.count_use()?;
        self.settled(|| {
            let odb = self.repo.odb()?;
            let mut next = Some(tip);
            while let Some(oid) = next {
                let object = odb.read(oid)?;
                let (parent, line) = message::parse_raw_commit(object.data())
                    .with_context(|| format!("reading the event of {oid} on {}", self.refname))?;
                let seq = message::seq_of_line(line)
                    .with_context(|| format!("reading the event of {oid} on {}", self.refname))?;
                if !visit(oid, seq, line)? {
                    break;
                }
                next = parent;
            }
            Ok(())
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
}
