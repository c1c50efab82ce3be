//! Liveness beyond the board (issue 16): an instance that keeps trying to write
//! counts as alive for reclaim, even while it lands no event.
//!
//! The lease on the board is "no event from the holder for `claim_timeout_sec`",
//! and `apply` judges a reclaim by that alone (it must: `verify` replays it, and
//! nothing outside the run's ref is part of the replay). But an instance can be
//! silent on the board while it is very much alive: its writes keep losing the
//! compare-and-swap or the push race, or its processes are killed before they
//! land (the long kill tests reclaimed live claimers that way). So the drafting
//! side adds a policy: before `claim` drafts a reclaim it asks
//! [`Ledger::still_trying`] whether the holder tried to write within the lease,
//! and if so `claim --next` skips the task and `claim T` refuses (exit 3, "still
//! trying to write"). An honest reclaimer follows the policy; the board's rule
//! is unchanged, so old runs and old clients keep working.
//!
//! The signals, read cheapest first:
//!
//! 1. **A per-clone marker**, `.git/mara/alive/<run>/<role>_<n>`: the time (ms)
//!    of the instance's last append attempt in this clone. Every attempt that
//!    drafted an event writes it before it writes or pushes, so a process killed
//!    in the middle of its attempt has left it. Every process and worktree of the
//!    clone sees it (the git common dir), at the cost of one small write per
//!    attempt and no round trip.
//! 2. **In remote mode, a heartbeat ref on the remote**,
//!    `refs/mara-alive/<run>/<role>_<n>` (outside `refs/mara/`, so a fetch of the
//!    runs does not bring it): a blob `mara-alive <instance> <ms>\n`. A writer
//!    whose own last event on the board is older than half the lease pushes it,
//!    beside (in parallel with) its event's push, at most once per quarter lease
//!    per process. A reclaimer reads its local copy first, and fetches it (one
//!    round trip) only when that is no signal: only on the way to a reclaim,
//!    which is rare.
//!
//! Bounded staleness: a signal older than the lease is no signal, and one stamped
//! further ahead than the run's `max_clock_skew_sec` is ignored. So the lease of
//! a holder runs from the later of its last event and its last attempt: one that
//! stops trying (killed, gone) is reclaimed a lease after its last attempt.
//!
//! Trust: the heartbeat blob was written by another instance. It is read only if
//! small, must name the holder, and its time is bounded as above. An instance
//! could keep its tasks by forging heartbeats, but it can do the same with
//! `mara heartbeat` events; the policy gives it no power the board did not.

use std::path::PathBuf;
use std::time::{Duration, Instant, SystemTime};

use anyhow::Result;
use chrono::TimeDelta;
use git2::{ObjectType, Oid, Repository};

use super::{now, Ledger, Snapshot};
use crate::board::{RunConfig, Ts};
use crate::ids::{InstanceId, RunId};
use crate::remote::{self, FetchError};

/// The largest heartbeat blob read: `mara-alive <instance> <ms>\n` is far shorter.
const MAX_BEAT_BYTES: usize = 256;

/// The marker of `who`'s last append attempt in this clone.
fn marker(repo: &Repository, run: &RunId, who: &InstanceId) -> PathBuf {
    super::state_path(repo, "alive", run).join(who.file_stem())
}

/// A marker younger than this is not written again: a reclaim looks at a lease
/// of minutes, and a claim loop need not write a file per attempt (issue 16).
const TOUCH_EVERY: Duration = Duration::from_secs(1);

/// Records that `sender` is trying to write now, unless its marker says so
/// already (younger than [`TOUCH_EVERY`]). Best effort: a marker that cannot be
/// written only costs the signal.
pub(super) fn touch(repo: &Repository, run: &RunId, sender: &str) {
    let Ok(who) = sender.parse::<InstanceId>() else {
        return;
    };
    let p = marker(repo, run, &who);
    let age = std::fs::metadata(&p)
        .and_then(|m| m.modified())
        .ok()
        .and_then(|t| SystemTime::now().duration_since(t).ok());
    if age.is_some_and(|a| a < TOUCH_EVERY) {
        return;
    }
    // Zero-padded to a fixed width and written over the old time in place
    // (not truncated: on ext4 closing a truncated file flushes its data,
    // auto_da_alloc, about 2% of a lone claim).
    let ms = format!("{:020}", now().timestamp_millis());
    super::marks::write_in_place(&p, ms.as_bytes());
}

/// The heartbeat ref of `who` in `run`, on the remote and in each clone.
pub fn heartbeat_refname(run: &RunId, who: &InstanceId) -> String {
    format!("refs/mara-alive/{run}/{}", who.file_stem())
}

fn beat_text(who: &InstanceId, ms: i64) -> String {
    format!("mara-alive {who} {ms}\n")
}

/// The time a heartbeat blob says, if it is one of `who`'s.
fn parse_beat(bytes: &[u8], who: &InstanceId) -> Option<i64> {
    if bytes.len() > MAX_BEAT_BYTES {
        return None;
    }
    let text = std::str::from_utf8(bytes).ok()?;
    let rest = text.strip_suffix('\n')?.strip_prefix("mara-alive ")?;
    let (name, ms) = rest.split_once(' ')?;
    (name == who.to_string()).then_some(())?;
    ms.parse().ok()
}

/// A time in ms as a timestamp, if it is a sane one.
fn at_ms(ms: i64) -> Option<Ts> {
    chrono::DateTime::from_timestamp_millis(ms)
}

/// Whether a signal from `at` still counts at `now`: no older than the lease and
/// no further ahead than the clock skew the run allows.
fn fresh(at: Ts, now: Ts, lease: TimeDelta, skew: TimeDelta) -> bool {
    at <= now + skew && now - at <= lease
}

impl Ledger {
    /// When `holder` last tried to write, if that was within the lease: an
    /// honest reclaimer leaves its tasks alone then (see the module's doc). Reads
    /// this clone's marker, then (remote mode) the local copy of the holder's
    /// heartbeat ref, then fetches that ref.
    pub fn still_trying(
        &self,
        holder: &InstanceId,
        config: &RunConfig,
        now: Ts,
    ) -> Result<Option<Ts>> {
        let lease = lease_of(config);
        let skew = config.max_clock_skew();
        let counts = |at: Option<Ts>| at.filter(|at| fresh(*at, now, lease, skew));
        let local = std::fs::read_to_string(marker(&self.repo, &self.run, holder))
            .ok()
            .and_then(|s| s.trim().parse().ok())
            .and_then(at_ms);
        if let Some(at) = counts(local) {
            return Ok(Some(at));
        }
        let Some(remote) = self.remote_for(config)? else {
            return Ok(None);
        };
        let name = heartbeat_refname(&self.run, holder);
        if let Some(at) = counts(self.read_beat(&name, holder)) {
            return Ok(Some(at));
        }
        match remote::fetch_into(self.repo.path(), &remote, &name, &name, true)? {
            // No heartbeat on the remote, or another process of this clone is
            // fetching it right now (it reads the same answer): no signal.
            Ok(()) | Err(FetchError::NoRun | FetchError::Busy) => {}
            Err(e) => return Err(remote::explain(e, &remote, &name)),
        }
        self.repo.odb()?.refresh()?;
        Ok(counts(self.read_beat(&name, holder)))
    }

    /// The time on this clone's copy of a heartbeat ref, if it is a heartbeat
    /// of `who`'s.
    fn read_beat(&self, refname: &str, who: &InstanceId) -> Option<Ts> {
        let oid = self.repo.refname_to_id(refname).ok()?;
        let odb = self.repo.odb().ok()?;
        let (size, kind) = odb.read_header(oid).ok()?;
        if kind != ObjectType::Blob || size > MAX_BEAT_BYTES {
            return None;
        }
        let blob = self.repo.find_blob(oid).ok()?;
        parse_beat(blob.content(), who).and_then(at_ms)
    }

    /// The heartbeat blob `sender` should push beside its event now, if any: in
    /// remote mode, when its own last event on `snap` is older than half the
    /// lease, and this process pushed none for a quarter lease.
    pub(super) fn heartbeat_due(&self, snap: &Snapshot<'_>, sender: &str) -> Result<Option<Oid>> {
        let Ok(who) = sender.parse::<InstanceId>() else {
            return Ok(None);
        };
        let lease = lease_of(&snap.config);
        let Some(me) = snap.instance(&who)? else {
            // Never wrote: it holds nothing a reclaim could take.
            return Ok(None);
        };
        let now = now();
        if now - me.last_seen <= lease / 2 {
            return Ok(None);
        }
        let quarter = lease.to_std().unwrap_or_default() / 4;
        if self.beat.get().is_some_and(|b| b.elapsed() < quarter) {
            return Ok(None);
        }
        self.beat.set(Some(Instant::now()));
        let blob = self
            .repo
            .blob(beat_text(&who, now.timestamp_millis()).as_bytes())?;
        Ok(Some(blob))
    }
}

/// Pushes the heartbeat `blob` of `sender` to `remote` (forced: a heartbeat
/// replaces the last). Best effort, like the signal: a push that fails only
/// leaves the last heartbeat in place.
pub(super) fn push_beat(
    git_dir: &std::path::Path,
    remote: &str,
    run: &RunId,
    sender: &str,
    blob: Oid,
) {
    let Ok(who) = sender.parse::<InstanceId>() else {
        return;
    };
    crate::remote::push_one(git_dir, remote, blob, &heartbeat_refname(run, &who), None);
}

/// The run's lease as a duration.
fn lease_of(config: &RunConfig) -> TimeDelta {
    i64::try_from(config.claim_timeout_sec)
        .ok()
        .and_then(TimeDelta::try_seconds)
        .unwrap_or(TimeDelta::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_heartbeat_names_its_instance_and_a_time() {
        let who: InstanceId = "implementer#2".parse().expect("an instance");
        let other: InstanceId = "implementer#3".parse().expect("an instance");
        let text = beat_text(&who, 1_700_000_000_123);
        assert_eq!(parse_beat(text.as_bytes(), &who), Some(1_700_000_000_123));
        assert_eq!(parse_beat(text.as_bytes(), &other), None);
        assert_eq!(parse_beat(b"mara-alive implementer#2 x\n", &who), None);
        assert_eq!(parse_beat(b"mara-alive implementer#2 1\n\n", &who), None);
        let long = format!("mara-alive implementer#2 {}\n", "1".repeat(300));
        assert_eq!(parse_beat(long.as_bytes(), &who), None);
    }

    #[test]
    fn a_signal_counts_for_a_lease_and_not_from_the_future() {
        let now = at_ms(1_700_000_000_000).expect("a time");
        let lease = TimeDelta::seconds(300);
        let skew = TimeDelta::seconds(5);
        assert!(fresh(now, now, lease, skew));
        assert!(fresh(now - lease, now, lease, skew));
        assert!(!fresh(
            now - lease - TimeDelta::milliseconds(1),
            now,
            lease,
            skew
        ));
        assert!(fresh(now + skew, now, lease, skew));
        assert!(!fresh(now + skew + TimeDelta::seconds(1), now, lease, skew));
    }
}
