//! The stall guard's part of the board: what counts as progress, the hand-offs of a
//! task, the questions nobody answered, and the `stall` event.
//!
//! A run is *stalled* when it has live instances (running or starting, lease not
//! run out) and no progress for `coordination.stall_after_sec`. Progress is a
//! claim, a reclaim, a `done`, a review verdict, or an integration (a `conflict`
//! event, or the `integration` message `mara integrate` posts when it merged).
//! Messages, heartbeats, instance statuses and progress commits are not progress:
//! an instance that only talks is not progressing. Nor is a claim of a task that
//! was already handed off (released or reclaimed) more than
//! `coordination.max_handoffs` times: handing a task back and forth is the livelock
//! the guard looks for.
//!
//! Format-2 runs keep in the tree what the guard needs, so that a reader opens a
//! few small files, never every task or event ([`derive`], called by `apply`):
//!
//! * `stall/progress.json`: the last progress (seq, time, kind, who; `init` until
//!   something progressed), and the seq of the `stall` event recorded since, if any;
//! * `stall/handoffs/<task>.json`: an unfinished task handed off more than
//!   `max_handoffs` times (each task counts its hand-offs in `handoffs`);
//! * `stall/questions/<seq>.json`: a `question` message nobody else answered yet
//!   (a message whose `reply_to` is its seq answers it; the file goes).
//!
//! Format-1 runs wrote none of this, and their trees must stay as they were: their
//! readers replay the log with the same rules ([`replay`]), which costs a read of
//! every event.

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use super::{
    ago, apply, check_role, check_run_role, invalid, sender_instance, Board, Change, Event,
    EventKind, InstanceStatus, RuleError, RunConfig, Ts, MAX_SECONDS,
};
use crate::ids::TaskId;

/// Default of `coordination.stall_after_sec`: ten minutes without progress.
pub const DEFAULT_STALL_AFTER_SEC: u64 = 600;

/// Default of `coordination.max_handoffs`.
pub const DEFAULT_MAX_HANDOFFS: u32 = 5;

/// Largest `coordination.max_handoffs` a run may set.
pub const MAX_HANDOFFS: u32 = 10_000;

/// Most tasks, or questions, one `stall` event names.
pub const MAX_FLAGGED: usize = 1000;

/// The event kinds that are progress (see the module's doc); `init` starts the
/// clock of a run where nothing progressed yet.
pub const PROGRESS_KINDS: &[&str] = &[
    "init",
    "claim",
    "reclaim",
    "done",
    "verdict",
    "conflict",
    "resolved",
    "integration",
];

/// What the orchestrator does when the run stalls (`coordination.on_stall`):
/// `"warn"`, `"notify <role>"` or `"stop"`.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub enum OnStall {
    /// Say so on stderr and in the run's summary.
    #[default]
    Warn,
    /// Post an `alert` message to this role's instances.
    Notify(String),
    /// Stop every instance and end the run with exit 1.
    Stop,
}

impl FromStr for OnStall {
    type Err = String;

    fn from_str(s: &str) -> Result<OnStall, String> {
        let words: Vec<&str> = s.split_whitespace().collect();
        match words.as_slice() {
            ["warn"] => Ok(OnStall::Warn),
            ["stop"] => Ok(OnStall::Stop),
            ["notify", role] => {
                check_role(role).map_err(|e| e.to_string())?;
                Ok(OnStall::Notify((*role).to_owned()))
            }
            _ => Err(format!(
                "on_stall is {}; use \"warn\", \"stop\" or \"notify <role>\"",
                crate::text::quote(s, 40)
            )),
        }
    }
}

impl fmt::Display for OnStall {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            OnStall::Warn => f.write_str("warn"),
            OnStall::Notify(role) => write!(f, "notify {role}"),
            OnStall::Stop => f.write_str("stop"),
        }
    }
}

impl Serialize for OnStall {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for OnStall {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<OnStall, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// The last progress of a run: `stall/progress.json`.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct Progress {
    pub seq: u64,
    pub ts: Ts,
    /// The event's type (one of [`PROGRESS_KINDS`]).
    pub kind: String,
    pub by: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub task: Option<TaskId>,
    /// The `stall` event recorded since this progress: one per stalled period.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stall_seq: Option<u64>,
}

impl Progress {
    /// "seq 17 (claim T3 by implementer#1)".
    pub fn describe(&self) -> String {
        let task = self
            .task
            .as_ref()
            .map_or(String::new(), |t| format!(" {t}"));
        format!(
            "seq {} ({}{task} by {})",
            self.seq,
            self.kind,
            super::one_line(&self.by, 64)
        )
    }
}

/// A question nobody answered yet: `stall/questions/<seq>.json`.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct Question {
    pub seq: u64,
    pub ts: Ts,
    pub from: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub to: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub task: Option<TaskId>,
}

/// A task and how often it was handed off (`stall/handoffs/<task>.json`, and in a
/// `stall` event).
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct Handoffs {
    pub task: TaskId,
    pub handoffs: u32,
}

/// The last progress a `stall` event names.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct LastProgress {
    pub seq: u64,
    pub kind: String,
    pub ts: Ts,
}

impl Progress {
    /// Its board path: `stall/progress.json`.
    pub fn path() -> Vec<String> {
        vec!["stall".to_owned(), "progress.json".to_owned()]
    }
}

impl Question {
    /// The board path of the open question `seq`: `stall/questions/<seq>.json`.
    pub fn path(seq: u64) -> Vec<String> {
        vec![
            "stall".to_owned(),
            "questions".to_owned(),
            format!("{seq}.json"),
        ]
    }
}

impl Handoffs {
    /// The board path of a task's flag: `stall/handoffs/<task>.json`.
    pub fn path(task: &TaskId) -> Vec<String> {
        vec![
            "stall".to_owned(),
            "handoffs".to_owned(),
            format!("{task}.json"),
        ]
    }
}

impl RunConfig {
    /// Seconds without progress that make a stall.
    pub fn stall_after_sec(&self) -> u64 {
        self.stall_after_sec.unwrap_or(DEFAULT_STALL_AFTER_SEC)
    }

    /// [`RunConfig::stall_after_sec`] as a duration.
    pub fn stall_after(&self) -> chrono::TimeDelta {
        i64::try_from(self.stall_after_sec())
            .ok()
            .and_then(chrono::TimeDelta::try_seconds)
            .unwrap_or(chrono::TimeDelta::MAX)
    }

    /// How often a task may be handed off before it is flagged.
    pub fn max_handoffs(&self) -> u32 {
        self.max_handoffs.unwrap_or(DEFAULT_MAX_HANDOFFS)
    }

    /// What the orchestrator does on a stall.
    pub fn on_stall(&self) -> OnStall {
        self.on_stall.clone().unwrap_or_default()
    }
}

/// The guard's settings in a run's config: bounds, and a role the run has.
pub(super) fn check_config(c: &RunConfig) -> Result<(), RuleError> {
    if let Some(s) = c.stall_after_sec.filter(|s| !super::seconds_in_range(*s)) {
        return invalid(format!(
            "stall_after_sec is {s}; use 1 to {MAX_SECONDS} seconds"
        ));
    }
    if let Some(m) = c.max_handoffs.filter(|m| *m > MAX_HANDOFFS) {
        return invalid(format!("max_handoffs is {m}; use 0 to {MAX_HANDOFFS}"));
    }
    if let Some(OnStall::Notify(role)) = &c.on_stall {
        check_role(role)?;
        if c.roles.as_ref().is_some_and(|all| !all.contains(role)) {
            return invalid(format!(
                "on_stall notifies {role}, which is not one of the run's roles"
            ));
        }
    }
    Ok(())
}

/// Whether `event` is progress on `board` (before the event), and the task it is
/// about. See the module's doc.
fn progress_of<'e>(board: &Board, event: &'e Event, max: u32) -> Option<Option<&'e TaskId>> {
    match &event.kind {
        EventKind::Init { .. } | EventKind::Conflict { .. } | EventKind::Resolved { .. } => {
            Some(None)
        }
        EventKind::Claim { task } | EventKind::Reclaim { task, .. } => {
            let churned = board.tasks.get(task).is_some_and(|t| t.handoffs > max);
            (!churned).then_some(Some(task))
        }
        EventKind::Done { task, .. } | EventKind::Review { task, .. } => Some(Some(task)),
        EventKind::Message { kind, .. } if kind == "integration" => Some(None),
        _ => None,
    }
}

/// Adds to an event's `changes` what the guard keeps in a format-2 tree: the
/// hand-off count of a released or reclaimed task, the flag of a task handed off
/// too often (gone once it is done or cancelled), the last progress, and the open
/// questions. A format-1 run's trees do not change.
pub(super) fn derive(board: &Board, event: &Event, changes: &mut Vec<Change>) {
    let config = match (&event.kind, &board.config) {
        (EventKind::Init { config }, _) | (_, Some(config)) => config,
        _ => return,
    };
    if config.board_format() < 2 {
        return;
    }
    let max = config.max_handoffs();
    if let EventKind::Release { task, .. } | EventKind::Reclaim { task, .. } = &event.kind {
        for c in changes.iter_mut() {
            if let Change::Task(t) = c {
                if &t.id == task {
                    t.handoffs = t.handoffs.saturating_add(1);
                }
            }
        }
    }
    let mut more = vec![];
    for c in changes.iter() {
        if let Change::Task(t) = c {
            if t.handoffs > max {
                more.push(if t.status.is_final() {
                    Change::Settled(t.id.clone())
                } else {
                    Change::Handoffs(Handoffs {
                        task: t.id.clone(),
                        handoffs: t.handoffs,
                    })
                });
            }
        }
    }
    if let Some(task) = progress_of(board, event, max) {
        more.push(Change::Progress(Progress {
            seq: event.seq,
            ts: event.ts,
            kind: event.kind.type_name().to_owned(),
            by: event.sender.clone(),
            task: task.cloned(),
            stall_seq: None,
        }));
    }
    if let EventKind::Message {
        kind,
        to,
        task,
        reply_to,
        ..
    } = &event.kind
    {
        if kind == "question" {
            more.push(Change::Question(Question {
                seq: event.seq,
                ts: event.ts,
                from: event.sender.clone(),
                to: to.clone(),
                task: task.clone(),
            }));
        }
        // Only someone else answers a question.
        if let Some(r) = reply_to {
            if board
                .questions
                .get(r)
                .is_some_and(|q| q.from != event.sender)
            {
                more.push(Change::Answered(*r));
            }
        }
    }
    changes.extend(more);
}

/// `stall`: the orchestrator saw no progress for `stall_after_sec`. It must name
/// the board's last progress (checked against `stall/progress.json` in format 2),
/// come at least `stall_after_sec` after it, once per stalled period, with the
/// run's `on_stall`; the tasks and questions it flags must be flagged.
pub(super) fn apply_stall(
    board: &Board,
    event: &Event,
    last: &LastProgress,
    handoffs: &[Handoffs],
    questions: &[u64],
    action: &OnStall,
) -> Result<Vec<Change>, RuleError> {
    sender_instance(event)?;
    let config = board
        .config
        .as_ref()
        .expect("apply refuses events before init");
    if last.seq >= event.seq || last.ts > event.ts {
        return invalid(format!(
            "the stall names seq {} at {} as its last progress, which is not before it (seq {})",
            last.seq,
            last.ts.to_rfc3339(),
            event.seq
        ));
    }
    if !PROGRESS_KINDS.contains(&last.kind.as_str()) {
        return invalid(format!(
            "the stall names a {} as its last progress, which is no progress ({})",
            crate::text::quote(&last.kind, 32),
            PROGRESS_KINDS.join(", ")
        ));
    }
    let after = config.stall_after();
    if event.ts - last.ts < after {
        return invalid(format!(
            "no stall: the last progress (seq {}) was {} before it, and the run stalls after {}s",
            last.seq,
            ago(event.ts - last.ts),
            config.stall_after_sec()
        ));
    }
    if *action != config.on_stall() {
        return invalid(format!(
            "the stall says on_stall is {action}, but the run's is {}",
            config.on_stall()
        ));
    }
    if let OnStall::Notify(role) = action {
        check_run_role(board, role)?;
    }
    if handoffs.len() > MAX_FLAGGED || questions.len() > MAX_FLAGGED {
        return invalid(format!(
            "the stall flags more than {MAX_FLAGGED} tasks or questions"
        ));
    }
    let max = config.max_handoffs();
    for (i, h) in handoffs.iter().enumerate() {
        if h.handoffs <= max || handoffs[..i].iter().any(|o| o.task == h.task) {
            return invalid(format!(
                "the stall flags {} as handed off {} times; it flags each task once, handed off more than {max} times",
                h.task, h.handoffs
            ));
        }
    }
    for (i, q) in questions.iter().enumerate() {
        if *q >= event.seq || questions[..i].contains(q) {
            return invalid(format!(
                "the stall flags question seq {q}, which is not an earlier message, or twice"
            ));
        }
    }
    if config.board_format() < 2 {
        // The tree keeps nothing to check the rest against: readers replay the log.
        return Ok(vec![]);
    }
    let Some(p) = &board.progress else {
        return invalid("the board has no record of its last progress (stall/progress.json)");
    };
    if (p.seq, p.kind.as_str(), p.ts) != (last.seq, last.kind.as_str(), last.ts) {
        return invalid(format!(
            "the stall names seq {} ({}) as the last progress, but the board's is {}",
            last.seq,
            crate::text::quote(&last.kind, 32),
            p.describe()
        ));
    }
    if let Some(s) = p.stall_seq {
        return invalid(format!(
            "a stall since {} is recorded already (seq {s}); the next progress ends it",
            p.describe()
        ));
    }
    for h in handoffs {
        let t = super::existing(board, &h.task)?;
        if t.handoffs != h.handoffs || t.status.is_final() {
            return invalid(format!(
                "the stall flags {} as handed off {} times, but it was {} times and is {}",
                h.task, h.handoffs, t.handoffs, t.status
            ));
        }
    }
    for q in questions {
        match board.questions.get(q) {
            Some(open) if event.ts - open.ts >= after => {}
            _ => {
                return invalid(format!(
                    "the stall flags question seq {q}, which is not a question unanswered for {}s",
                    config.stall_after_sec()
                ))
            }
        }
    }
    Ok(vec![Change::Progress(Progress {
        stall_seq: Some(event.seq),
        ..p.clone()
    })])
}

/// What the guard sees at one moment: whether the run is stalled, and what else
/// it flags. `status --json` and `board --json` print it as `stall`.
#[derive(Serialize, Clone, Debug, PartialEq)]
pub struct Flags {
    /// Live instances and no progress for `stall_after_sec`.
    pub stalled: bool,
    /// Since when nothing progressed (the last progress's time).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub since: Option<Ts>,
    /// Seconds since the last progress.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub idle_sec: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_progress: Option<Progress>,
    /// Instances running or starting whose lease has not run out.
    pub live: Vec<String>,
    /// Unfinished tasks handed off more than `max_handoffs` times.
    pub handoffs: Vec<Handoffs>,
    /// Questions unanswered for `stall_after_sec` or longer.
    pub questions: Vec<Question>,
    pub stall_after_sec: u64,
    pub max_handoffs: u32,
    pub on_stall: OnStall,
}

impl Flags {
    /// Whether anything is flagged.
    pub fn any(&self) -> bool {
        self.stalled || !self.handoffs.is_empty() || !self.questions.is_empty()
    }

    /// One line per flag, for people; `now` ages the questions.
    pub fn lines(&self, now: Ts) -> Vec<String> {
        let mut out = vec![];
        if let (true, Some(p), Some(since)) = (self.stalled, &self.last_progress, self.since) {
            let recorded = p
                .stall_seq
                .map_or(String::new(), |s| format!("; recorded at seq {s}"));
            out.push(format!(
                "stalled: no claim, done, review or integration for {} (since {}, last progress {}); {} live instance(s); on_stall {}{recorded}",
                ago(now - since),
                since.format("%Y-%m-%d %H:%M:%S UTC"),
                p.describe(),
                self.live.len(),
                self.on_stall
            ));
        }
        if !self.handoffs.is_empty() {
            let tasks: Vec<String> = self
                .handoffs
                .iter()
                .map(|h| format!("{} ({} times)", h.task, h.handoffs))
                .collect();
            out.push(format!(
                "handed off more than {} times: {}",
                self.max_handoffs,
                tasks.join(", ")
            ));
        }
        for q in &self.questions {
            let to = q.to.as_ref().map_or(String::new(), |t| format!(" to {t}"));
            let task = q
                .task
                .as_ref()
                .map_or(String::new(), |t| format!(" about {t}"));
            out.push(format!(
                "unanswered for {}: question seq {} by {}{to}{task}",
                ago(now - q.ts),
                q.seq,
                super::one_line(&q.from, 64)
            ));
        }
        out
    }
}

impl Board {
    /// What the stall guard flags at `now`. Needs the board's config, instances
    /// and the guard's files (`stall/`); of a format-1 run, a [`replay`].
    pub fn stall_flags(&self, now: Ts) -> Flags {
        let default = RunConfig::new("run".parse().expect("a valid run id"), 0);
        let config = self.config.as_ref().unwrap_or(&default);
        let lease = self.lease();
        let live: Vec<String> = self
            .instances
            .values()
            .filter(|i| {
                matches!(i.status, InstanceStatus::Running | InstanceStatus::Starting)
                    && now - i.last_seen <= lease
            })
            .map(|i| i.id.to_string())
            .collect();
        let after = config.stall_after();
        let idle = self.progress.as_ref().map(|p| now - p.ts);
        let stalled = !live.is_empty() && idle.is_some_and(|d| d >= after);
        let max = config.max_handoffs();
        let handoffs = self
            .flagged
            .iter()
            .filter(|(_, n)| **n > max)
            .map(|(task, n)| Handoffs {
                task: task.clone(),
                handoffs: *n,
            })
            .collect();
        let questions = self
            .questions
            .values()
            .filter(|q| now - q.ts >= after)
            .cloned()
            .collect();
        Flags {
            stalled,
            since: self.progress.as_ref().map(|p| p.ts),
            idle_sec: idle.map(|d| u64::try_from(d.num_seconds()).unwrap_or(0)),
            last_progress: self.progress.clone(),
            live,
            handoffs,
            questions,
            stall_after_sec: config.stall_after_sec(),
            max_handoffs: max,
            on_stall: config.on_stall(),
        }
    }
}

/// The board of a format-1 run as a format-2 run would have kept it: the log
/// replayed with the guard's files derived. Events the format-2 rules refuse (a
/// stall event they would not accept) change nothing but the seq. For reads only.
pub fn replay(events: impl IntoIterator<Item = Event>) -> Board {
    let mut board = Board::default();
    for mut e in events {
        if let EventKind::Init { config } = &mut e.kind {
            config.format = Some(super::BOARD_FORMAT);
        }
        let changes = apply(&board, &e).unwrap_or_default();
        board.commit(e.seq, changes);
    }
    board
}

/// The `stall` event the guard's `flags` call for, naming the last progress.
pub fn stall_event(flags: &Flags) -> Option<EventKind> {
    let p = flags.last_progress.as_ref().filter(|_| flags.stalled)?;
    Some(EventKind::Stall {
        last: LastProgress {
            seq: p.seq,
            kind: p.kind.clone(),
            ts: p.ts,
        },
        handoffs: flags.handoffs.iter().take(MAX_FLAGGED).cloned().collect(),
        questions: flags
            .questions
            .iter()
            .take(MAX_FLAGGED)
            .map(|q| q.seq)
            .collect(),
        action: flags.on_stall.clone(),
    })
}

/// The flagged tasks in a map, for [`Board`].
pub type Flagged = BTreeMap<TaskId, u32>;
