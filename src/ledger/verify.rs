//! `mara verify`: the one full replay of the log.

use anyhow::Result;
use git2::Oid;

use super::check::{self, Checker};
use super::{marks, now, write_changes, Ledger};
use crate::board::{self, Board, Event, EventKind};

impl Ledger {
    /// Replays the log from its first commit: every commit has one parent, seq is
    /// gapless, each event passes [`apply`](crate::board::apply), each commit's tree is the replay of its
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
            write: &*self.repo,
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
                &*self.repo,
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
