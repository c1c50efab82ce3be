//! The append loop: read the tip, check what is new there, let the command draft
//! its event, check the rule, write, and compare-and-swap the ref (or push it); on
//! a lost race, again after a jittered pause.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, Result};
use git2::{ErrorCode, Oid};

use super::locks::recover_stale_lock;
use super::sync::fetch_ref;
use super::{marks, now, Appended, Draft, Ledger, Outcome, Snapshot, Staging};
use crate::backoff::Backoff;
use crate::board::{self, apply, Change, Event, Ts};
use crate::remote::{self, Push};

/// How many times an append re-reads and retries after losing the race.
const MAX_ATTEMPTS: u32 = 400;
/// The same through a remote, where every attempt is a push and a fetch.
const MAX_REMOTE_ATTEMPTS: u32 = 2000;
/// An append gives up after this long, however many attempts it made.
const MAX_WAIT: Duration = Duration::from_secs(120);
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

    fn append_staged<F>(&self, stage: &Staging<'_>, sender: &str, draft: &mut F) -> Result<Outcome>
    where
        F: FnMut(&Snapshot<'_>, Ts) -> Result<Draft>,
    {
        let mut attempts = 0;
        let mut fresh = false;
        let mut vanished = vanished_backoff();
        let mut pauses: Option<Backoff> = None;
        loop {
            attempts += 1;
            let lock = match self.attempt(stage, sender, draft, &mut fresh) {
                Ok(Attempt::Written(event, commit)) => {
                    return Ok(Outcome::Written(Box::new(Appended {
                        event: *event,
                        commit,
                        attempts,
                    })))
                }
                Ok(Attempt::Noop(msg)) => return Ok(Outcome::Noop(msg)),
                Ok(Attempt::Refetched) => continue,
                Ok(Attempt::Lost) => None,
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
            // The fetch after a rejected push already spaced this attempt out;
            // sleeping longer only hands the next round to whoever won the last
            // one (a writer whose local tip is current pushes without fetching).
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
        stage: &Staging<'_>,
        sender: &str,
        draft: &mut F,
        fresh: &mut bool,
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
        let tree = stage.write_changes(&self.repo, Some(&snap.tree), &changes)?;
        let commit = self.commit_event(stage, &event, tree, Some(snap.tip))?;
        match &remote {
            Some(remote) => self.push(stage, remote, snap.tip, event, commit, fresh),
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
    fn swap(
        &self,
        stage: &Staging<'_>,
        tip: Oid,
        event: Box<Event>,
        commit: Oid,
    ) -> Result<Attempt> {
        if self.repo.refname_to_id(&self.refname).ok() != Some(tip) {
            // Someone moved the ref while this event was drafted: this attempt
            // has lost already. Its objects never reach the disk.
            stage.discard()?;
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

    /// Remote mode: a non-force push is the compare-and-swap.
    fn push(
        &self,
        stage: &Staging<'_>,
        remote: &str,
        tip: Oid,
        event: Box<Event>,
        commit: Oid,
        fresh: &mut bool,
    ) -> Result<Attempt> {
        stage.land(&self.repo)?;
        match remote::push(self.repo.path(), remote, commit, &self.refname)? {
            Push::Accepted => {
                self.mark_synced();
                self.advance_local(tip, commit, &event)?;
                // Built on a checked tip with the rules checked: checked too.
                marks::write(&self.repo, &self.run, commit, Some(commit));
                self.merge_packs();
                Ok(Attempt::Written(event, commit))
            }
            Push::Lost(_) => {
                self.fetch(remote)?;
                *fresh = true;
                Ok(Attempt::Lost)
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
