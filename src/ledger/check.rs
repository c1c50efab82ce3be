//! The check of one event commit against the one before it: what `mara verify` runs
//! on every commit of the log, and what every writer runs on the commits it has not
//! checked before building on them (issue 13, items 3 and 4). One function, so a
//! writer never builds on what `verify` would name.

use chrono::TimeDelta;
use git2::{Commit, Repository, Tree};

use crate::board::{apply, Board, Change, Event, Ts};
use crate::ids::RunId;

use anyhow::{anyhow, bail, Result};
use git2::Oid;

use super::{
    event_of_message, marks, message_of_event, now, write_changes, Ledger, Objects, Snapshot,
    Staging,
};
use crate::board::EventKind;
use crate::output;

/// What a check needs besides the commit.
pub struct Checker<'a> {
    /// Where the commit and its parent's trees are read.
    pub read: &'a Repository,
    /// Where the replayed trees are written (memory, never the repository's disk).
    pub write: &'a dyn Objects,
    pub run: &'a RunId,
    /// The checker's clock.
    pub now: Ts,
    /// How far an event may run ahead of `now`, or behind its predecessor.
    pub skew: TimeDelta,
}

/// An event that replays, with what it changes.
pub struct Replayed {
    pub event: Event,
    pub changes: Vec<Change>,
}

/// Why an event stamped `ts` may not be built on by a writer whose clock says
/// `now`: it is more than `skew` ahead, which would pin leases (a holder "seen"
/// in the future never expires). `what` names the event.
fn ahead_of_clock(
    what: impl FnOnce() -> String,
    ts: Ts,
    now: Ts,
    skew: TimeDelta,
) -> Option<String> {
    (ts - now > skew).then(|| {
        format!(
            "{} is stamped {}, more than {}s ahead of this clock ({}); a clock that runs ahead (or a forged time) would pin leases. Set the clocks right (NTP), or raise coordination.max_clock_skew_sec",
            what(),
            ts.to_rfc3339(),
            skew.num_seconds(),
            now.to_rfc3339()
        )
    })
}

impl Checker<'_> {
    /// Checks `commit`, whose predecessor on the log is `parent` (`None` for the
    /// first event): one parent, the next seq, the subject and message mara writes,
    /// a time within the skew, an event [`apply`] allows on `board_for(event)`
    /// (the board at the predecessor, or the part of it the event needs), and a tree
    /// equal to the replay of the event on `base` (the predecessor's tree).
    ///
    /// Returns the problems found, and the replayed event unless a problem stops
    /// the replay there.
    pub fn check<B: std::borrow::Borrow<Board>>(
        &self,
        commit: &Commit<'_>,
        parent: Option<&Event>,
        base: Option<&Tree<'_>>,
        board_for: impl FnOnce(&Event) -> anyhow::Result<B>,
    ) -> (Option<Replayed>, Vec<String>) {
        let oid = commit.id();
        let mut problems = vec![];
        let expected_parents = usize::from(parent.is_some());
        if commit.parent_count() != expected_parents {
            problems.push(format!(
                "commit {oid} has {} parents; an event has {expected_parents}",
                commit.parent_count()
            ));
        }
        let event = match event_of_message(commit.message().unwrap_or_default()) {
            Ok(e) => e,
            Err(e) => {
                problems.push(format!("commit {oid}: {e:#}"));
                return (None, problems);
            }
        };
        let seq = parent.map_or(0, |p| p.seq + 1);
        if event.seq != seq {
            problems.push(format!(
                "commit {oid} has seq {} where {seq} belongs: the log has a gap or a repeat",
                event.seq
            ));
            return (None, problems);
        }
        if commit.summary() != Some(event.subject().as_str()) {
            problems.push(format!(
                "commit {oid} (seq {}) has subject {:?}, but its event reads {:?}",
                event.seq,
                commit.summary().unwrap_or_default(),
                event.subject()
            ));
        }
        if commit.message() != Some(message_of_event(self.run, &event).as_str()) {
            problems.push(format!(
                "commit {oid} (seq {}) has a message that mara did not write (trailers or body changed)",
                event.seq
            ));
        }
        problems.extend(self.time_problem(oid, &event, parent));
        let board = match board_for(&event) {
            Ok(b) => b,
            Err(e) => {
                problems.push(format!(
                    "commit {oid} (seq {}): the board before it cannot be read: {e:#}",
                    event.seq
                ));
                return (None, problems);
            }
        };
        let changes = match apply(board.borrow(), &event) {
            Ok(c) => c,
            Err(e) => {
                problems.push(format!(
                    "commit {oid} (seq {}, {}): the rules forbid this event: {e}",
                    event.seq,
                    event.subject()
                ));
                return (None, problems);
            }
        };
        match write_changes(self.read, self.write, base, &changes) {
            Ok(tree) if tree == commit.tree_id() => {}
            Ok(_) => problems.push(format!(
                "commit {oid} (seq {}, {}): its tree does not match the replay of its event",
                event.seq,
                event.subject()
            )),
            Err(e) => problems.push(format!(
                "commit {oid} (seq {}): replaying its event failed: {e:#}",
                event.seq
            )),
        }
        (Some(Replayed { event, changes }), problems)
    }

    /// An event stamped further ahead of this clock than the skew would pin leases
    /// (a holder "seen" in the future never expires); one stamped further behind
    /// its predecessor rewinds them.
    fn time_problem(
        &self,
        oid: git2::Oid,
        event: &Event,
        parent: Option<&Event>,
    ) -> Option<String> {
        let skew = self.skew.num_seconds();
        let what = || format!("commit {oid} (seq {}, {})", event.seq, event.subject());
        if let Some(p) = ahead_of_clock(what, event.ts, self.now, self.skew) {
            return Some(p);
        }
        let prev = parent?;
        if prev.ts - event.ts > self.skew {
            return Some(format!(
                "commit {oid} (seq {}, {}) is stamped {}, more than {skew}s before the event ahead of it ({}): time went backwards",
                event.seq,
                event.subject(),
                event.ts.to_rfc3339(),
                prev.ts.to_rfc3339()
            ));
        }
        None
    }
}

impl Ledger {
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
    pub(super) fn check_new_events(&self, stage: &Staging, snap: &Snapshot<'_>) -> Result<()> {
        let marks = marks::load(&self.repo, &self.run);
        let contains_seen = self.check_not_rewritten(snap.tip, marks.seen)?;
        let refuse = |problem: &str| {
            anyhow!(
                "refusing to build on {}: {problem}; nothing was written. `mara verify` lists every problem",
                self.refname
            )
        };
        if marks.checked == Some(snap.tip) {
            let what = || format!("its tip {} (seq {})", snap.tip, snap.seq);
            return match ahead_of_clock(what, snap.ts, now(), snap.config.max_clock_skew()) {
                Some(p) => Err(refuse(&p)),
                None => Ok(()),
            };
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
            write: stage,
            run: &self.run,
            now: now(),
            skew: parent.as_ref().map_or(
                chrono::TimeDelta::seconds(crate::board::DEFAULT_MAX_CLOCK_SKEW_SEC as i64),
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
            stage.discard();
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
}
