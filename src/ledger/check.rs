//! The check of one event commit against the one before it: what `mara verify` runs
//! on every commit of the log, and what every writer runs on the commits it has not
//! checked before building on them (issue 13, items 3 and 4). One function, so a
//! writer never builds on what `verify` would name.

use chrono::TimeDelta;
use git2::{Commit, Repository, Tree};

use crate::board::{apply, Board, Change, Event, Ts};
use crate::ids::RunId;

use super::{event_of_message, message_of_event, write_changes};

/// What a check needs besides the commit.
pub struct Checker<'a> {
    /// Where the commit and its parent's trees are read.
    pub read: &'a Repository,
    /// Where the replayed trees are written (memory, never the repository's disk).
    pub write: &'a Repository,
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
        match write_changes(self.read, self.write, &mut vec![], base, &changes) {
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
        if event.ts - self.now > self.skew {
            return Some(format!(
                "commit {oid} (seq {}, {}) is stamped {}, more than {skew}s ahead of this clock ({}); a clock that runs ahead (or a forged time) would pin leases. Set the clocks right (NTP), or raise coordination.max_clock_skew_sec",
                event.seq,
                event.subject(),
                event.ts.to_rfc3339(),
                self.now.to_rfc3339()
            ));
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
