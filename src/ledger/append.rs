//! The append loop: read the tip, check what is new there, let the command draft
//! its event, check the rule, write, and compare-and-swap the ref (or push it); on
//! a lost race, again after a jittered pause. Through a remote, a writer that lost
//! says so on the run's turn ref and one that did not lets it go first
//! ([`remote::Turn`]), so no clone starves.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime};

use anyhow::{Context, Result};
use git2::{ErrorCode, Oid};

use super::locks::{queue_for_write, recover_stale_lock};
use super::sync::fetch_ref;
use super::{alive, marks, now, Appended, Draft, Ledger, Outcome, Snapshot, Staging};
use crate::backoff::Backoff;
use crate::board::{self, apply, Change, Event, Ts};
use crate::remote::{self, Push, Turn};

/// How many times an append re-reads and retries after losing the race.
const MAX_ATTEMPTS: u32 = 400;
/// The same through a remote, where every attempt is a push and a fetch.
const MAX_REMOTE_ATTEMPTS: u32 = 2000;
/// An append gives up after this long, however many attempts it made.
const MAX_WAIT: Duration = Duration::from_secs(120);
/// How long an append lets waiting writers go first in all (polling the remote's
/// turn ref about every [`YIELD_PAUSE`]) before it pushes as a waiting writer
/// itself: a waiting writer's turn (pause, fetch, push) takes a few push times, up
/// to a second on a loaded machine, and ends as soon as it lands (the run's ref
/// moves, so this writer has lost and waits in turn).
const MAX_YIELD_WAIT: Duration = Duration::from_secs(3);
/// The pause between two looks at the turn ref of a writer that lets a waiting
/// one go first (each a quarter to all of it). A look is one `git ls-remote`,
/// which costs the remote one ref advertisement.
const YIELD_PAUSE: Duration = Duration::from_millis(60);
/// An intent that stayed the same for this long is taken to be from a writer that
/// is gone (killed, or stopped between its push and taking its intent back): a
/// live waiting writer replaces its intent with every push it loses, and lands
/// within a few push times.
const PATIENCE: Duration = Duration::from_millis(1500);
/// Waiting writers that do not hold the turn queue by how many pushes they lost:
/// one that lost `n` pauses `QUEUE - n` push times (at most [`QUEUE_STEP`] each)
/// before it fetches and tries again, so the one that waited longest comes back
/// first and a newcomer last. The holder of the turn does not pause.
const QUEUE: u32 = 4;
/// The longest step of that queue.
const QUEUE_STEP: Duration = Duration::from_millis(100);
/// The pauses before a read is retried after an object vanished under it: 1, 2,
/// ... 8 ms.
pub(super) fn vanished_backoff() -> Backoff {
    Backoff::linear(Duration::from_millis(1)).attempts(9)
}

/// An object named by the run's ref that this process could not find: another
/// process merged the pack holding it (mara after a write, or `git gc`) while
/// this one listed the pack directory. A fresh listing finds it.
pub(super) fn is_vanished(e: &anyhow::Error) -> bool {
    e.chain().any(|c| {
        c.downcast_ref::<git2::Error>()
            .is_some_and(|g| g.code() == ErrorCode::NotFound && g.class() == git2::ErrorClass::Odb)
    })
}

/// Whether the board said no (a refusal or an invalid event), as opposed to a
/// failure of git.
fn is_rule_outcome(e: &anyhow::Error) -> bool {
    e.downcast_ref::<board::Refusal>().is_some() || e.downcast_ref::<board::Invalid>().is_some()
}

/// What the command's draft and the rule made of one snapshot.
enum Judged {
    Write(Box<Event>, Vec<Change>),
    Noop(String),
}

/// How one attempt ended.
enum Attempt {
    /// The event is on the ref.
    Written(Box<Event>, Oid),
    /// Nothing to write; the command succeeds with this message.
    Noop(String),
    /// Another writer moved the ref first (or the remote took another push).
    Lost,
    /// The ref's lock file was there (a live writer's, or a stale one that was
    /// just removed).
    Locked(PathBuf),
    /// Try again at once: the judgement was made on the last fetched tip, and the
    /// tip is now fetched afresh.
    Refetched,
    /// Another clone waits for its turn: try again after this pause.
    Yielded(Duration),
}

/// Where one append stands in the turn-taking of clones ([`remote::Turn`]).
#[derive(Default)]
struct Turns {
    /// How many push races it lost: from the first on it is a waiting writer.
    lost: u32,
    /// The intent on the turn ref this writer holds (its own, or one a killed
    /// writer of this clone left): it pushes [`Turn::Hand`], and takes it back if
    /// it ends without writing.
    intent: Option<Oid>,
    /// Since when it lets waiting writers go first.
    yielding: Option<Instant>,
    /// It let waiting writers go first for [`MAX_YIELD_WAIT`]: it pushes as a
    /// waiting writer now.
    yielded_enough: bool,
    /// The turn ref's "nobody waits" value ([`remote::free_turn`]), once written.
    free: Option<Oid>,
}

impl Turns {
    /// The turn ref's "nobody waits" value, written into the clone's objects
    /// on first use.
    fn free(&mut self, repo: &git2::Repository) -> Result<Oid> {
        match self.free {
            Some(free) => Ok(free),
            None => Ok(*self.free.insert(remote::free_turn(repo)?)),
        }
    }

    fn turn(&self, free: Oid) -> Turn {
        match self.intent {
            Some(intent) => Turn::Hand { intent, free },
            None if self.lost == 0 && !self.yielded_enough => Turn::Take { free },
            None => Turn::Alone,
        }
    }

    /// The pause of a writer that just lost a push race, before it fetches and
    /// tries again: none for the holder of the turn; for the others, the longer
    /// they have waited (the more races they lost), the shorter, so waiting
    /// writers take their turns about in the order they came (see [`QUEUE`]);
    /// plus a few ms of jitter to break ties.
    fn queue_pause(&self, push: Duration) -> Duration {
        // A step of at most QUEUE_STEP: on a loaded machine a push takes a second,
        // and three of them would outlast a yielding writer's patience.
        let ahead = if self.intent.is_some() {
            0
        } else {
            QUEUE.saturating_sub(self.lost)
        };
        push.min(QUEUE_STEP).saturating_mul(ahead)
            + Backoff::fixed(Duration::from_millis(5))
                .full_jitter()
                .next()
                .unwrap_or_default()
    }
}

/// The file that says since when the writers of a clone have seen the same
/// intent on the turn ref (see [`unchanged_for`]).
fn yield_marker(repo: &git2::Repository, run: &crate::ids::RunId) -> PathBuf {
    super::state_path(repo, "yielding", run)
}

/// How long the writers of this clone have seen `intent` on the turn ref: the
/// marker holds the intent and its mtime when it was first seen. Kept per clone,
/// not per process: a process killed while it yields must not restart the count
/// for the next one (the long kill test kills a process every ~120 ms).
fn unchanged_for(marker: &Path, intent: Oid) -> Duration {
    let seen = std::fs::read_to_string(marker).ok();
    if seen.as_deref().map(str::trim) == Some(intent.to_string().as_str()) {
        let now = SystemTime::now();
        return std::fs::metadata(marker)
            .and_then(|m| m.modified())
            .ok()
            .and_then(|t| now.duration_since(t).ok())
            .unwrap_or_default();
    }
    // Best effort: without the marker each process counts on its own. Ids are
    // of one width, so writing over the old one leaves no trace of it.
    marks::write_in_place(marker, intent.to_string().as_bytes());
    Duration::ZERO
}

impl Ledger {
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

    fn append_staged<F>(&self, stage: &Staging, sender: &str, draft: &mut F) -> Result<Outcome>
    where
        F: FnMut(&Snapshot<'_>, Ts) -> Result<Draft>,
    {
        let _queue = queue_for_write(&self.repo, &self.run);
        let mut turns = Turns::default();
        let outcome = self.attempts(stage, sender, draft, &mut turns);
        if !matches!(outcome, Ok(Outcome::Written(_))) {
            self.leave_turn(&turns);
        }
        outcome
    }

    /// A writer that ends without writing (the board said no after it lost, or
    /// it gave up) takes back the intent it left on the turn ref, so the next
    /// writer does not let a writer that is gone go first.
    fn leave_turn(&self, turns: &Turns) {
        if let (Some(intent), Some(free), Some(Some(remote))) =
            (turns.intent, turns.free, self.remote.get())
        {
            remote::hand_back(self.repo.path(), remote, &self.refname, Some(intent), free);
        }
    }

    fn attempts<F>(
        &self,
        stage: &Staging,
        sender: &str,
        draft: &mut F,
        turns: &mut Turns,
    ) -> Result<Outcome>
    where
        F: FnMut(&Snapshot<'_>, Ts) -> Result<Draft>,
    {
        let mut attempts = 0;
        let mut fresh = false;
        let mut vanished = vanished_backoff();
        let mut pauses: Option<Backoff> = None;
        loop {
            attempts += 1;
            let lock = match self.attempt(stage, sender, draft, &mut fresh, turns) {
                Ok(Attempt::Written(event, commit)) => {
                    return Ok(Outcome::Written(Box::new(Appended {
                        event: *event,
                        commit,
                        attempts,
                    })))
                }
                Ok(Attempt::Noop(msg)) => return Ok(Outcome::Noop(msg)),
                Ok(Attempt::Refetched) => continue,
                Ok(Attempt::Yielded(pause)) => {
                    // The attempt's pack landed (see `Lost`).
                    self.merge_packs();
                    // For at most MAX_YIELD_WAIT per append: no budget to spend.
                    std::thread::sleep(pause);
                    continue;
                }
                Ok(Attempt::Lost) => {
                    // An attempt that lost through a remote landed its pack:
                    // merges must not wait for a write that succeeds, or a clone
                    // that keeps losing piles up packs (2,700 in one clone of the
                    // remote kill test, issue 16), every read of its processes
                    // slows down, and it loses more. Locally, the writer that won
                    // looked already, in the same object store.
                    if matches!(self.remote.get(), Some(Some(_))) {
                        self.merge_packs();
                    }
                    None
                }
                Ok(Attempt::Locked(path)) => Some(path),
                Err(e) if is_vanished(&e) => {
                    let Some(pause) = vanished.next() else {
                        return Err(e);
                    };
                    std::thread::sleep(pause);
                    self.repo.odb()?.refresh()?;
                    continue;
                }
                Err(e) => return Err(e),
            };
            let pauses = pauses.get_or_insert_with(|| self.race_backoff());
            let Some(pause) = pauses.next() else {
                return Err(self.gave_up(attempts, pauses.elapsed(), lock));
            };
            std::thread::sleep(pause);
        }
    }

    /// The pauses between attempts that lost a race.
    fn race_backoff(&self) -> Backoff {
        if matches!(self.remote.get(), Some(Some(_))) {
            // The fetch after a rejected push already spaced this attempt out, and
            // a writer that did not lose lets this one go first (`remote::Turn`);
            // sleeping longer would only give up that turn.
            Backoff::fixed(Duration::from_millis(5))
                .full_jitter()
                .attempts(MAX_REMOTE_ATTEMPTS)
                .within(MAX_WAIT)
        } else {
            Backoff::exponential(Duration::from_millis(1), Duration::from_millis(64))
                .attempts(MAX_ATTEMPTS)
                .within(MAX_WAIT)
        }
    }

    fn gave_up(&self, attempts: u32, elapsed: Duration, lock: Option<PathBuf>) -> anyhow::Error {
        match lock {
            Some(lock) => anyhow::anyhow!(
                "{} stayed locked for {}s: {} exists; if no mara or git process is still running, remove it: rm '{}'",
                self.refname,
                elapsed.as_secs(),
                lock.display(),
                lock.display()
            ),
            None => anyhow::anyhow!(
                "gave up after {attempts} attempts in {:.1}s: other writers kept moving {} first; nothing was written, try again",
                elapsed.as_secs_f64(),
                self.refname
            ),
        }
    }

    /// One attempt: snapshot, check, judge, write, swap or push.
    fn attempt<F>(
        &self,
        stage: &Staging,
        sender: &str,
        draft: &mut F,
        fresh: &mut bool,
        turns: &mut Turns,
    ) -> Result<Attempt>
    where
        F: FnMut(&Snapshot<'_>, Ts) -> Result<Draft>,
    {
        let snap = self.snapshot()?;
        self.check_new_events(stage, &snap)?;
        let remote = self.remote_for(&snap.config)?;
        let judged = self.judge(&snap, sender, draft);
        let (event, changes) = match (judged, &remote) {
            (Ok(Judged::Write(event, changes)), _) => (event, changes),
            // Judged on the last fetched tip: make it true on the remote.
            (Ok(Judged::Noop(_)), Some(remote)) if !*fresh => return self.refetch(remote, fresh),
            (Err(e), Some(remote)) if !*fresh && is_rule_outcome(&e) => {
                return self.refetch(remote, fresh)
            }
            (Ok(Judged::Noop(msg)), _) => return Ok(Attempt::Noop(msg)),
            (Err(e), _) => return Err(e),
        };
        // This instance is trying to write: it counts as alive for reclaim even
        // if this attempt lands nothing (`alive`).
        alive::touch(&self.repo, &self.run, sender);
        let tree = stage.write_changes(&self.repo, Some(&snap.tree), &changes)?;
        let commit = self.commit_event(stage, &event, tree, Some(snap.tip))?;
        match &remote {
            Some(remote) => {
                let beat = self.heartbeat_due(&snap, sender)?;
                std::thread::scope(|s| {
                    if let Some(blob) = beat {
                        let (git_dir, run) = (self.repo.path(), &self.run);
                        s.spawn(move || alive::push_beat(git_dir, remote, run, sender, blob));
                    }
                    self.push(stage, remote, snap.tip, event, commit, fresh, turns)
                })
            }
            None => self.swap(stage, snap.tip, event, commit),
        }
    }

    fn refetch(&self, remote: &str, fresh: &mut bool) -> Result<Attempt> {
        self.fetch(remote)?;
        *fresh = true;
        Ok(Attempt::Refetched)
    }

    /// Lets the command draft its event on `snap` and checks the rule.
    fn judge<F>(&self, snap: &Snapshot<'_>, sender: &str, draft: &mut F) -> Result<Judged>
    where
        F: FnMut(&Snapshot<'_>, Ts) -> Result<Draft>,
    {
        let ts = now();
        let kind = match draft(snap, ts)? {
            Draft::Write(kind) => kind,
            Draft::Noop(msg) => return Ok(Judged::Noop(msg)),
        };
        let board = snap.board_for(&kind, sender)?;
        let event = Event {
            seq: snap.seq + 1,
            ts,
            sender: sender.to_owned(),
            kind,
        };
        let changes = apply(&board, &event)?;
        Ok(Judged::Write(Box::new(event), changes))
    }

    /// Local mode: the compare-and-swap of the ref under git's lock file.
    fn swap(&self, stage: &Staging, tip: Oid, event: Box<Event>, commit: Oid) -> Result<Attempt> {
        if self.repo.refname_to_id(&self.refname).ok() != Some(tip) {
            // Someone moved the ref while this event was drafted: this attempt
            // has lost already. Its objects never reach the disk.
            stage.discard();
            return Ok(Attempt::Lost);
        }
        stage.land(&self.repo)?;
        let msg = format!("mara: {}", event.subject());
        match self
            .repo
            .reference_matching(&self.refname, commit, true, tip, &msg)
        {
            Ok(_) => {
                // Built on a checked tip with the rules checked: checked too.
                marks::write(&self.repo, &self.run, commit, Some(commit));
                self.merge_packs();
                Ok(Attempt::Written(event, commit))
            }
            Err(e) if e.code() == ErrorCode::Modified => Ok(Attempt::Lost),
            Err(e) if e.code() == ErrorCode::Locked => {
                let path = self.lock_path();
                recover_stale_lock(&path)?;
                Ok(Attempt::Locked(path))
            }
            Err(e) => Err(e).with_context(|| format!("updating {}", self.refname)),
        }
    }

    /// Remote mode: a non-force push is the compare-and-swap; the run's turn ref
    /// goes along ([`remote::Turn`]).
    #[allow(clippy::too_many_arguments)]
    fn push(
        &self,
        stage: &Staging,
        remote: &str,
        tip: Oid,
        event: Box<Event>,
        commit: Oid,
        fresh: &mut bool,
        turns: &mut Turns,
    ) -> Result<Attempt> {
        stage.land(&self.repo)?;
        let free = turns.free(&self.repo)?;
        let started = Instant::now();
        let pushed = remote::push(
            self.repo.path(),
            remote,
            commit,
            &self.refname,
            turns.turn(free),
        )?;
        let took = started.elapsed();
        match pushed {
            Push::Accepted => {
                self.mark_synced();
                self.advance_local(tip, commit, &event)?;
                // Built on a checked tip with the rules checked: checked too.
                marks::write(&self.repo, &self.run, commit, Some(commit));
                self.merge_packs();
                Ok(Attempt::Written(event, commit))
            }
            Push::Lost(_) => self.lost_race(remote, commit, took, fresh, turns),
            // The holder's intent is gone (handed back by a writer that took this
            // one for gone): a waiting writer without the turn now.
            Push::Yield if turns.intent.is_some() => {
                turns.intent = None;
                Ok(Attempt::Yielded(Duration::ZERO))
            }
            Push::Yield => self.let_go_first(remote, tip, commit, took, fresh, turns),
        }
    }

    /// After a push that lost: pause by its place in the queue, then post this
    /// writer's intent on the turn ref (over nobody's or its own) and fetch.
    fn lost_race(
        &self,
        remote: &str,
        commit: Oid,
        took: Duration,
        fresh: &mut bool,
        turns: &mut Turns,
    ) -> Result<Attempt> {
        let expect = match turns.intent {
            Some(intent) => intent,
            None => turns.free(&self.repo)?,
        };
        let pause = turns.queue_pause(took);
        turns.lost += 1;
        let (git_dir, refname) = (self.repo.path(), self.refname.as_str());
        // The post after the pause: the writer that lost most comes first, so it
        // is the one that finds the turn free.
        std::thread::sleep(pause);
        let (posted, fetched) = std::thread::scope(|s| {
            let post =
                s.spawn(move || remote::post_intent(git_dir, remote, refname, commit, expect));
            let fetched = self.fetch(remote);
            (post.join().unwrap_or(false), fetched)
        });
        fetched?;
        if posted {
            turns.intent = Some(commit);
        }
        *fresh = true;
        Ok(Attempt::Lost)
    }

    /// A writer that has not lost found a waiting writer's intent on the turn
    /// ref: it looks again about every [`YIELD_PAUSE`] until the waiting writer
    /// lands (the run's ref moved: this one lost and waits in turn) or the turn
    /// is free, for at most [`MAX_YIELD_WAIT`]. An intent whose commit is in this
    /// clone's objects was left by a writer of this clone that is gone: this one
    /// takes it over. An intent that stays the same for [`PATIENCE`] is from a
    /// writer that is gone: handed back.
    fn let_go_first(
        &self,
        remote: &str,
        tip: Oid,
        commit: Oid,
        took: Duration,
        fresh: &mut bool,
        turns: &mut Turns,
    ) -> Result<Attempt> {
        let free = turns.free(&self.repo)?;
        let since = *turns.yielding.get_or_insert_with(Instant::now);
        let git_dir = self.repo.path();
        let mut pauses = Backoff::fixed(YIELD_PAUSE).spread_jitter();
        loop {
            if since.elapsed() >= MAX_YIELD_WAIT {
                turns.yielded_enough = true;
                return Ok(Attempt::Yielded(Duration::ZERO));
            }
            let (run, at) = remote::read_turn(git_dir, remote, &self.refname)?;
            if run != Some(tip) {
                return self.lost_race(remote, commit, took, fresh, turns);
            }
            match at {
                Some(at) if at == free => return Ok(Attempt::Yielded(Duration::ZERO)),
                Some(at) if self.repo.odb()?.exists(at) => {
                    turns.intent = Some(at);
                    return Ok(Attempt::Yielded(Duration::ZERO));
                }
                Some(at) if unchanged_for(&yield_marker(&self.repo, &self.run), at) < PATIENCE => {
                    std::thread::sleep(pauses.next().unwrap_or(YIELD_PAUSE));
                }
                // Gone (or no turn ref at all: a run started before it existed).
                at => {
                    remote::hand_back(git_dir, remote, &self.refname, at, free);
                    return Ok(Attempt::Yielded(Duration::ZERO));
                }
            }
        }
    }

    /// Fetches the run's ref from `remote` (fast-forward only).
    pub fn fetch(&self, remote: &str) -> Result<()> {
        fetch_ref(&self.repo, remote, &self.refname)?;
        Ok(())
    }

    /// After the remote accepted `commit`, moves the local ref to it, unless a
    /// concurrent fetch already moved the local ref past it.
    fn advance_local(&self, old: Oid, commit: Oid, event: &Event) -> Result<()> {
        let mut pauses = Backoff::fixed(Duration::from_millis(2)).attempts(100);
        loop {
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
                    match pauses.next() {
                        Some(p) => std::thread::sleep(p),
                        // The remote has the event; the next fetch brings the local
                        // ref along.
                        None => return Ok(()),
                    }
                }
                Err(e) => return Err(e).with_context(|| format!("updating {}", self.refname)),
            }
        }
    }
}
