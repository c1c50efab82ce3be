//! The board model and its rules: one pure function, [`apply`].
//!
//! Nothing here touches git, the file system or the clock: time arrives inside the
//! event. The ledger calls [`apply`] before it writes an event, and `mara verify` calls
//! the very same function while it replays the log, so what is written and what is
//! checked cannot drift apart.
//!
//! A [`Board`] may be partial: the ledger loads only the tasks and instances an event
//! needs (see [`needs`]), and an entry missing from a partial board is missing from
//! the run.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fmt;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use crate::ids::{InstanceId, RunId, TaskId};

pub mod index;
pub use index::IndexState;
mod stall;
pub use stall::{
    replay, stall_event, Flags, Handoffs, LastProgress, OnStall, Progress, Question,
    DEFAULT_MAX_HANDOFFS, DEFAULT_STALL_AFTER_SEC, MAX_HANDOFFS, PROGRESS_KINDS,
};

/// A point in time, always UTC.
pub type Ts = DateTime<Utc>;

/// Default lease: an instance that wrote nothing for this long loses its claims.
pub const DEFAULT_CLAIM_TIMEOUT_SEC: u64 = 300;

/// Default of `coordination.max_clock_skew_sec`: an event stamped further ahead of
/// a writer's clock, or further behind the event before it, is not built on.
pub const DEFAULT_MAX_CLOCK_SKEW_SEC: u64 = 300;

/// Longest lease, clock skew or time limit a run may set: a week. Longer is almost
/// surely a typo.
pub const MAX_SECONDS: u64 = 7 * 24 * 3600;

/// Whether a lease, clock skew or instance time limit of `sec` seconds is one we
/// accept: 1 to [`MAX_SECONDS`]. The config file's checks and the rule's use it.
pub fn seconds_in_range(sec: u64) -> bool {
    (1..=MAX_SECONDS).contains(&sec)
}

/// Largest `max_clock_skew_sec` a run may set.
pub const MAX_CLOCK_SKEW_SEC: u64 = MAX_SECONDS;

/// Longest task body we store (a task's description and acceptance criteria).
const MAX_BODY: usize = 64 * 1024;

/// Longest task title, post text or glob we store.
const MAX_TEXT: usize = 4096;

/// How writers serialise: a local compare-and-swap of the ref, or a push to a remote.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Default)]
#[serde(rename_all = "snake_case")]
pub enum LockMode {
    /// Compare-and-swap of the local ref under git's lock file. The seed's
    /// `file_lock` means the same thing and is read as this.
    #[default]
    #[serde(alias = "file_lock")]
    Ref,
    /// A non-force push to `remote` is the compare-and-swap.
    Remote,
}

/// The run's settings, stored as `config.json` in every board commit.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct RunConfig {
    pub run: RunId,
    pub claim_timeout_sec: u64,
    #[serde(default)]
    pub lock_mode: LockMode,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub remote: Option<String>,
    /// The config's `outputs.pattern`: the name of each instance's artifact.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub outputs_pattern: Option<String>,
    /// How far an event's time may run ahead of a writer's clock, or behind the
    /// event before it (default [`DEFAULT_MAX_CLOCK_SKEW_SEC`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_clock_skew_sec: Option<u64>,
    /// The role that reviews done tasks; without it there is no review step.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub review_role: Option<String>,
    /// Longest pause between fetches of a waiting command in remote mode (default 2).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub poll_sec: Option<u64>,
    /// The run's roles, when its config named them: a task's role and a
    /// message's addressee must be one of them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub roles: Option<Vec<String>>,
    /// The layout of the board tree the run's events write: absent in runs made
    /// before there was a choice (1: tasks, instances, artifacts); see
    /// [`BOARD_FORMAT`]. Replaying an event must rebuild the tree it wrote, so a
    /// run keeps the format it was made with.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub format: Option<u32>,
    /// Seconds without progress that make a stall (default
    /// [`DEFAULT_STALL_AFTER_SEC`]); see [`stall`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stall_after_sec: Option<u64>,
    /// What the orchestrator does on a stall (default warn).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub on_stall: Option<OnStall>,
    /// How often a task may be handed off (released or reclaimed) before it is
    /// flagged (default [`DEFAULT_MAX_HANDOFFS`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_handoffs: Option<u32>,
    /// The role whose instances resolve the integrator's conflicts (the config's
    /// `integration.resolver_role`; `integrator` when absent).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resolver_role: Option<String>,
}

/// The board format new runs are made with. 2 adds what reads need without
/// reading every task (indexes) and what the stall guard needs.
pub const BOARD_FORMAT: u32 = 2;

impl RunConfig {
    /// A local run with a lease and nothing else set.
    pub fn new(run: RunId, claim_timeout_sec: u64) -> RunConfig {
        RunConfig {
            run,
            claim_timeout_sec,
            lock_mode: LockMode::Ref,
            remote: None,
            outputs_pattern: None,
            max_clock_skew_sec: None,
            review_role: None,
            poll_sec: None,
            roles: None,
            format: Some(BOARD_FORMAT),
            stall_after_sec: None,
            on_stall: None,
            max_handoffs: None,
            resolver_role: None,
        }
    }

    /// The role resolve tasks are for: `resolver_role`, else `integrator` unless
    /// the run names its roles without it (then nobody's in particular).
    pub fn resolver(&self) -> Option<&str> {
        match &self.resolver_role {
            Some(r) => Some(r),
            None => self
                .roles
                .as_ref()
                .is_none_or(|all| all.iter().any(|r| r == INTEGRATOR_ROLE))
                .then_some(INTEGRATOR_ROLE),
        }
    }

    /// The board format of the run (1 when the config does not say).
    pub fn board_format(&self) -> u32 {
        self.format.unwrap_or(1)
    }

    /// The artifact file name of an instance: `outputs.pattern` with `<role>` and
    /// `<instance>` filled in (default `<role>_<instance>.md`).
    pub fn artifact_name(&self, id: &InstanceId) -> String {
        self.outputs_pattern
            .as_deref()
            .unwrap_or("<role>_<instance>.md")
            .replace("<role>", id.role())
            .replace("<instance>", &id.number().to_string())
    }

    /// How far clocks may disagree: see `max_clock_skew_sec`.
    pub fn max_clock_skew(&self) -> chrono::TimeDelta {
        let sec = self
            .max_clock_skew_sec
            .unwrap_or(DEFAULT_MAX_CLOCK_SKEW_SEC);
        i64::try_from(sec)
            .ok()
            .and_then(chrono::TimeDelta::try_seconds)
            .unwrap_or(chrono::TimeDelta::MAX)
    }

    /// The name of the remote the run is shared through, as the board gives it.
    /// Never used as is: a clone resolves it among its own remotes
    /// (`remote::choose`), so the board cannot send a clone to a URL.
    pub fn board_remote(&self) -> Option<&str> {
        match self.lock_mode {
            LockMode::Remote => self.remote.as_deref(),
            LockMode::Ref => None,
        }
    }
}

/// Where a task stands.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[serde(rename_all = "snake_case")]
pub enum TaskStatus {
    Open,
    Claimed,
    /// Done by its holder, waiting for a reviewer (only with `review_role` set).
    Review,
    Done,
    /// Taken off the plan: neither claimable nor a satisfied dependency.
    Cancelled,
}

impl TaskStatus {
    /// Whether nothing more will happen to the task.
    pub fn is_final(self) -> bool {
        matches!(self, TaskStatus::Done | TaskStatus::Cancelled)
    }
}

impl fmt::Display for TaskStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            TaskStatus::Open => "open",
            TaskStatus::Claimed => "claimed",
            TaskStatus::Review => "review",
            TaskStatus::Done => "done",
            TaskStatus::Cancelled => "cancelled",
        })
    }
}

/// A task on the board (the seed's `Task`, plus when and where).
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct Task {
    pub id: TaskId,
    pub title: String,
    pub status: TaskStatus,
    pub claimed_by: Option<InstanceId>,
    pub deps: Vec<TaskId>,
    #[serde(default)]
    pub paths: Vec<String>,
    /// Seq of the event that added the task; with `position` it orders the board.
    pub added_seq: u64,
    /// Index within the plan that added it (0 for `task add`).
    pub position: u32,
    pub created_at: Ts,
    #[serde(default)]
    pub claimed_at: Option<Ts>,
    #[serde(default)]
    pub done_at: Option<Ts>,
    #[serde(default)]
    pub artifact: Option<String>,
    /// What to do and how to tell it is done (markdown), for whoever claims it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub body: Option<String>,
    /// Only instances of this role may claim it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub role: Option<String>,
    /// Higher first in `claim --next`; then board order.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub priority: i64,
    /// The commit holding the task's work, recorded by `done`, and its branch.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub commit: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub branch: Option<String>,
    /// The holder's note at `done`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
    /// The reviewer who holds the review (status `review`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reviewer: Option<InstanceId>,
    /// How many times a reviewer sent it back.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub sent_back: u32,
    /// After changes were requested: its previous holder, who has the first claim
    /// on it until `claim_timeout_sec` after `reopened_at`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rework_by: Option<InstanceId>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reopened_at: Option<Ts>,
    /// How often it was handed off: released, or reclaimed from a silent holder
    /// (format 2; see [`stall`]).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub handoffs: u32,
    /// A resolve task's conflict (format 2): see [`Resolves`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resolves: Option<Resolves>,
}

fn is_zero<T: Default + PartialEq>(n: &T) -> bool {
    *n == T::default()
}

impl Task {
    /// The order of the board and of `claim --next`: plan order.
    pub fn order(&self) -> (u64, u32) {
        (self.added_seq, self.position)
    }
}

/// A task as `task add` and plan files give it: the seed's `Task` shape.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct NewTask {
    pub id: TaskId,
    pub title: String,
    #[serde(default)]
    pub deps: Vec<TaskId>,
    #[serde(default)]
    pub paths: Vec<String>,
    /// What to do and how to tell it is done (markdown).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub body: Option<String>,
    /// Only instances of this role may claim it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub role: Option<String>,
    /// Higher first in `claim --next`.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub priority: i64,
    /// Set by the integrator on the resolve tasks it adds (format 2).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resolves: Option<Resolves>,
    /// Accepted so a seed board can be fed back as a plan; must be `open`.
    #[serde(default, skip_serializing)]
    pub status: Option<TaskStatus>,
    /// Accepted so a seed board can be fed back as a plan; must be null.
    #[serde(default, skip_serializing)]
    pub claimed_by: Option<Value>,
}

/// What a resolve task resolves (board format 2): the conflicts branch where the
/// integrator left a merge with conflict markers, and the two commits that merge
/// joined. Set only when the integrator adds the task (never by `task edit`, never
/// in a plan); [`apply`] checks the branch is the run's and that no other
/// unfinished task names it, so `integrate --continue` takes the branch from here
/// and nowhere else (not from the task's body).
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct Resolves {
    /// `mara/<run>/conflicts/<stem>` (`<stem>`: the merged branch's last name,
    /// `<role>_<n>` for an instance branch).
    pub branch: String,
    /// The integration branch's commit the conflicted merge was made on.
    pub ours: String,
    /// The tip of the branch it merged.
    pub theirs: String,
}

/// The role that runs `mara integrate`.
pub const INTEGRATOR_ROLE: &str = "integrator";

/// The roles whose instances may add resolve tasks: the integrator, and the
/// orchestrator (`mara run`'s integrator step, which runs `integrate --continue`);
/// besides them only a person (a sender that is no instance id).
pub const RESOLVE_TASK_ADDERS: [&str; 2] = [INTEGRATOR_ROLE, "orchestrator"];

/// How many resolve tasks one conflicts branch may have in a run:
/// `resolve-<stem>`, then `resolve-<stem>-2` up to this.
pub const MAX_RESOLVE_ROUNDS: u32 = 20;

/// The ids a resolve task of the conflicts branch `<...>/<stem>` may have, in order.
pub fn resolve_task_ids(stem: &str) -> Vec<TaskId> {
    (1..=MAX_RESOLVE_ROUNDS)
        .map(|n| match n {
            1 => format!("resolve-{stem}"),
            n => format!("resolve-{stem}-{n}"),
        })
        .filter_map(|id| id.parse().ok())
        .collect()
}

/// Lifecycle of a role instance, as the orchestrator reports it.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum InstanceStatus {
    Starting,
    Running,
    Exited,
    Failed,
}

impl fmt::Display for InstanceStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            InstanceStatus::Starting => "starting",
            InstanceStatus::Running => "running",
            InstanceStatus::Exited => "exited",
            InstanceStatus::Failed => "failed",
        })
    }
}

/// One instance of a role (the seed's `RoleInstance`), with its lease clock.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct RoleInstance {
    pub id: InstanceId,
    pub role_id: String,
    pub instance_id: u32,
    pub status: InstanceStatus,
    /// Time of the instance's last event: every event is a heartbeat.
    pub last_seen: Ts,
    pub last_seq: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub place: Option<Place>,
}

/// Where an orchestrated instance works: its worktree, branch and log file.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct Place {
    pub worktree: String,
    pub branch: String,
    pub log: String,
}

/// A file an instance delivered (the seed's `Artifact`).
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct Artifact {
    pub role_id: String,
    pub instance_id: u32,
    pub path: String,
    #[serde(default)]
    pub task: Option<TaskId>,
}

/// What one event does. The stored line is `{"seq","ts","sender","type","payload"}`:
/// `type` and `payload` are serde's adjacent tag and content of this enum (`Status`
/// is stored as `instance`), so the variants and their fields are the codec. A
/// [`EventKind::Message`] is the exception: its `type` is any free word (see
/// [`check_message_type`]) and its payload `{"note": text}`.
///
/// Optional fields are left out when empty and every payload rejects unknown keys:
/// `tests/fixtures/demo-events.jsonl` pins the bytes.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(
    tag = "type",
    content = "payload",
    rename_all = "snake_case",
    deny_unknown_fields
)]
pub enum EventKind {
    Init {
        config: RunConfig,
    },
    TaskAdd {
        task: NewTask,
    },
    Plan {
        tasks: Vec<NewTask>,
    },
    Claim {
        task: TaskId,
    },
    /// A claim of a task whose holder's lease ran out.
    Reclaim {
        task: TaskId,
        previous: InstanceId,
    },
    /// Give a task back. `forced` names the holder when someone else released it.
    Release {
        task: TaskId,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        forced: Option<InstanceId>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        reason: Option<String>,
    },
    /// Complete a task. `forced` names the holder when someone else completed it;
    /// `commit` (on `branch`) holds the task's work.
    Done {
        task: TaskId,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        artifact: Option<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        forced: Option<InstanceId>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        commit: Option<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        branch: Option<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        note: Option<String>,
    },
    /// Change a task: an open one in any field, a claimed one only by its holder
    /// adding paths.
    #[serde(rename = "task_edit")]
    TaskEdit {
        task: TaskId,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        title: Option<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        body: Option<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        paths: Option<Vec<String>>,
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        add_paths: Vec<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        deps: Option<Vec<TaskId>>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        role: Option<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        priority: Option<i64>,
        /// Never accepted: only the integrator sets it, when it adds the task.
        /// Named here so that an edit carrying it is refused with a reason.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        resolves: Option<Resolves>,
    },
    /// Take a task off the plan; `drop_deps` also removes it from its dependents'
    /// deps.
    #[serde(rename = "task_cancel")]
    TaskCancel {
        task: TaskId,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        reason: Option<String>,
        #[serde(default, skip_serializing_if = "std::ops::Not::not")]
        drop_deps: bool,
    },
    /// A reviewer's verdict on a task awaiting review. Stored as `verdict`: a
    /// `review` was (and stays) a message type that runs before reviews used.
    #[serde(rename = "verdict")]
    Review {
        task: TaskId,
        verdict: Verdict,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        note: Option<String>,
    },
    /// Stored with the payload `{}`, which serde gives a unit variant only this way.
    #[serde(with = "empty_payload")]
    Heartbeat,
    /// An instance's lifecycle status (written by the orchestrator or the instance).
    #[serde(rename = "instance")]
    Status {
        instance: InstanceId,
        status: InstanceStatus,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        reason: Option<String>,
        /// Where the instance works, set when the orchestrator starts it.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        place: Option<Place>,
    },
    /// A file the collector found for an instance (the seed's `Artifact`).
    Artifact {
        instance: InstanceId,
        path: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        branch: Option<String>,
    },
    /// A file the integrator could not merge (one event per file).
    Conflict {
        file: String,
        branch: String,
        /// `content`, `binary`, `delete/modify` or `add/add`.
        kind: String,
        instances: Vec<String>,
        tasks: Vec<String>,
        action: String,
        /// The commits the merge joined (the integration branch's, the branch's):
        /// with `branch` and `file` they name the clash, which a re-run records
        /// once.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        ours: Option<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        theirs: Option<String>,
    },
    /// Commits of `task` made under a claim that is not the one the task holds or
    /// was completed under (`claim`: the `Mara-Claim` token they carry); the
    /// integrator left them out.
    Fenced {
        task: String,
        instance: String,
        claim: String,
        commits: Vec<String>,
        reason: String,
    },
    /// A conflict the integrator reported was resolved: `commit` (on `branch`) merged
    /// into the integration branch; `by` resolved it.
    Resolved {
        branch: String,
        commit: String,
        files: Vec<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        by: Option<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        task: Option<TaskId>,
    },
    /// A commit made by an instance (recorded by the post-commit hook).
    Progress {
        commit: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        task: Option<TaskId>,
    },
    /// The run stalled: no progress since `last` for the run's `stall_after_sec`
    /// (recorded once per stalled period by the orchestrator), with the tasks handed
    /// off too often and the questions left unanswered, and what it did about it.
    Stall {
        last: LastProgress,
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        handoffs: Vec<Handoffs>,
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        questions: Vec<u64>,
        action: OnStall,
    },
    /// A channel message: `decision`, `question`, `answer`, `note`, or any other type
    /// that is not one of [`reserved_types`]. Not serde's: its tag is its `kind`.
    #[serde(skip)]
    Message {
        kind: String,
        text: String,
        /// Who it is for: an instance (`implementer#2`) or a role (`reviewer`);
        /// everyone when absent.
        to: Option<String>,
        /// The task it is about: it joins the task's thread.
        task: Option<TaskId>,
        /// The seq of the message it answers.
        reply_to: Option<u64>,
    },
}

/// The payload `{}` of a heartbeat.
mod empty_payload {
    use serde::{Deserialize, Deserializer, Serialize, Serializer};

    #[derive(Serialize, Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Empty {}

    pub fn serialize<S: Serializer>(s: S) -> Result<S::Ok, S::Error> {
        Empty {}.serialize(s)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<(), D::Error> {
        Empty::deserialize(d).map(|Empty {}| ())
    }
}

/// The event types that have a meaning of their own and cannot be posted as
/// messages: the tags serde gives [`EventKind`]'s variants, read from serde itself,
/// so they cannot drift from the codec.
pub fn reserved_types() -> &'static [&'static str] {
    /// serde names an enum's tags only when it rejects one: it hands the list to the
    /// error type's `unknown_variant`. This error keeps that list.
    #[derive(Debug)]
    struct Tags(Option<&'static [&'static str]>);

    impl fmt::Display for Tags {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("not an unknown event type")
        }
    }

    impl std::error::Error for Tags {}

    impl serde::de::Error for Tags {
        fn custom<T: fmt::Display>(_: T) -> Self {
            Tags(None)
        }

        fn unknown_variant(_: &str, expected: &'static [&'static str]) -> Self {
            Tags(Some(expected))
        }
    }

    static TYPES: std::sync::OnceLock<&'static [&'static str]> = std::sync::OnceLock::new();
    TYPES.get_or_init(|| {
        // No tag is empty, so serde rejects this one and names the others.
        let line = serde::de::value::MapDeserializer::<_, Tags>::new(std::iter::once(("type", "")));
        match EventKind::deserialize(line) {
            Err(Tags(Some(tags))) => tags,
            _ => unreachable!("serde rejects the empty event type as an unknown variant"),
        }
    })
}

/// What a reviewer decided.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum Verdict {
    Approve,
    Changes,
}

impl EventKind {
    /// The stored `type`.
    pub fn type_name(&self) -> &str {
        match self {
            EventKind::Init { .. } => "init",
            EventKind::TaskAdd { .. } => "task_add",
            EventKind::Plan { .. } => "plan",
            EventKind::Claim { .. } => "claim",
            EventKind::Reclaim { .. } => "reclaim",
            EventKind::Release { .. } => "release",
            EventKind::Done { .. } => "done",
            EventKind::TaskEdit { .. } => "task_edit",
            EventKind::TaskCancel { .. } => "task_cancel",
            EventKind::Review { .. } => "verdict",
            EventKind::Heartbeat => "heartbeat",
            EventKind::Status { .. } => "instance",
            EventKind::Progress { .. } => "progress",
            EventKind::Artifact { .. } => "artifact",
            EventKind::Conflict { .. } => "conflict",
            EventKind::Stall { .. } => "stall",
            EventKind::Fenced { .. } => "fenced",
            EventKind::Resolved { .. } => "resolved",
            EventKind::Message { kind, .. } => kind,
        }
    }

    /// The tasks this event is about (for `mara log --task` and trailers).
    pub fn tasks(&self) -> Vec<&TaskId> {
        match self {
            EventKind::TaskAdd { task } => vec![&task.id],
            EventKind::Plan { tasks } => tasks.iter().map(|t| &t.id).collect(),
            EventKind::Claim { task }
            | EventKind::Reclaim { task, .. }
            | EventKind::Release { task, .. }
            | EventKind::Done { task, .. }
            | EventKind::TaskEdit { task, .. }
            | EventKind::TaskCancel { task, .. }
            | EventKind::Review { task, .. } => vec![task],
            EventKind::Progress {
                task: Some(task), ..
            }
            | EventKind::Resolved {
                task: Some(task), ..
            } => vec![task],
            EventKind::Message {
                task: Some(task), ..
            } => vec![task],
            EventKind::Stall { handoffs, .. } => handoffs.iter().map(|h| &h.task).collect(),
            _ => vec![],
        }
    }
}

/// One entry of the coordination log.
#[derive(Clone, Debug, PartialEq)]
pub struct Event {
    pub seq: u64,
    pub ts: Ts,
    pub sender: String,
    pub kind: EventKind,
}

/// The stored shape of an event, as read: the seed's `Message` plus `seq`. serde's
/// `flatten` cannot reject unknown keys, so the payload is read as a value first and
/// then as its kind.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawEvent {
    seq: u64,
    ts: Ts,
    sender: String,
    #[serde(rename = "type")]
    kind: String,
    payload: Value,
}

/// The stored shape of an event, as written: the same keys in the same order.
#[derive(Serialize)]
struct StoredEvent<'a> {
    seq: u64,
    ts: Ts,
    sender: &'a str,
    #[serde(flatten)]
    kind: StoredKind<'a>,
}

/// `type` and `payload`: serde's for mara's own kinds, the free type and
/// `{"note": text}` for a message.
#[derive(Serialize)]
#[serde(untagged)]
enum StoredKind<'a> {
    Own(&'a EventKind),
    Message {
        #[serde(rename = "type")]
        kind: &'a str,
        payload: Note<'a>,
    },
}

/// A message's payload, as written.
#[derive(Serialize)]
struct Note<'a> {
    note: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    to: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    task: Option<&'a TaskId>,
    #[serde(skip_serializing_if = "Option::is_none")]
    reply_to: Option<u64>,
}

/// A message's payload, as read.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ReadNote {
    note: String,
    #[serde(default)]
    to: Option<String>,
    #[serde(default)]
    task: Option<TaskId>,
    #[serde(default)]
    reply_to: Option<u64>,
}

impl Event {
    /// The event as the seed's JSON-lines channel shows it.
    pub fn to_json(&self) -> Value {
        let kind = match &self.kind {
            EventKind::Message {
                kind,
                text,
                to,
                task,
                reply_to,
            } => StoredKind::Message {
                kind,
                payload: Note {
                    note: text,
                    to: to.as_deref(),
                    task: task.as_ref(),
                    reply_to: *reply_to,
                },
            },
            own => StoredKind::Own(own),
        };
        serde_json::to_value(StoredEvent {
            seq: self.seq,
            ts: self.ts,
            sender: &self.sender,
            kind,
        })
        .expect("events always serialise: plain structs of strings and numbers")
    }

    /// Reads an event from its JSON line.
    pub fn from_json(line: &str) -> anyhow::Result<Event> {
        let raw: RawEvent = serde_json::from_str(line)?;
        let kind = if reserved_types().contains(&raw.kind.as_str()) {
            EventKind::deserialize(json!({ "type": raw.kind, "payload": raw.payload }))?
        } else {
            let note = ReadNote::deserialize(raw.payload)?;
            EventKind::Message {
                text: note.note,
                kind: raw.kind,
                to: note.to,
                task: note.task,
                reply_to: note.reply_to,
            }
        };
        Ok(Event {
            seq: raw.seq,
            ts: raw.ts,
            sender: raw.sender,
            kind,
        })
    }

    /// The commit subject: one readable line, for `git log --oneline` and `--grep`.
    /// Free text is flattened (no newlines, no control characters) so a title cannot
    /// forge a second subject line or a trailer.
    pub fn subject(&self) -> String {
        let by = one_line(&self.sender, 64);
        match &self.kind {
            EventKind::Init { config } => format!("init {} by {by}", config.run),
            EventKind::TaskAdd { task } => {
                format!("add {} by {by}: {}", task.id, one_line(&task.title, 72))
            }
            EventKind::Plan { tasks } => format!("plan {} tasks by {by}", tasks.len()),
            EventKind::Claim { task } => format!("claim {task} by {by}"),
            EventKind::Reclaim { task, previous } => {
                format!("reclaim {task} by {by} from {previous}")
            }
            EventKind::Release { task, forced, .. } => match forced {
                Some(h) => format!("release {task} by {by} (forced, held by {h})"),
                None => format!("release {task} by {by}"),
            },
            EventKind::Done { task, forced, .. } => match forced {
                Some(h) => format!("done {task} by {by} (forced, held by {h})"),
                None => format!("done {task} by {by}"),
            },
            EventKind::TaskEdit { task, .. } => format!("edit {task} by {by}"),
            EventKind::TaskCancel { task, .. } => format!("cancel {task} by {by}"),
            EventKind::Review { task, verdict, .. } => match verdict {
                Verdict::Approve => format!("review {task} by {by}: approved"),
                Verdict::Changes => format!("review {task} by {by}: changes requested"),
            },
            EventKind::Heartbeat => format!("heartbeat by {by}"),
            EventKind::Status {
                instance, status, ..
            } => format!("instance {instance} {status} by {by}"),
            EventKind::Artifact { instance, path, .. } => {
                format!("artifact {} of {instance} by {by}", one_line(path, 60))
            }
            EventKind::Conflict { file, branch, .. } => format!(
                "conflict {} merging {} by {by}",
                one_line(file, 60),
                one_line(branch, 60)
            ),
            EventKind::Fenced { task, instance, .. } => format!(
                "fenced {} of {} by {by}",
                one_line(task, 40),
                one_line(instance, 40)
            ),
            EventKind::Resolved { branch, .. } => {
                format!("resolved {} by {by}", one_line(branch, 60))
            }
            EventKind::Progress { commit, task } => {
                let short: String = commit.chars().take(10).collect();
                match task {
                    Some(t) => format!("progress {t} by {by}: commit {}", one_line(&short, 10)),
                    None => format!("progress by {by}: commit {}", one_line(&short, 10)),
                }
            }
            EventKind::Stall {
                last,
                handoffs,
                questions,
                action,
            } => {
                let mut s = format!(
                    "stall by {by}: no progress for {} since seq {} ({})",
                    ago(self.ts - last.ts),
                    last.seq,
                    one_line(&last.kind, 32)
                );
                if !handoffs.is_empty() {
                    s.push_str(&format!(
                        ", {} task(s) handed off too often",
                        handoffs.len()
                    ));
                }
                if !questions.is_empty() {
                    s.push_str(&format!(", {} question(s) unanswered", questions.len()));
                }
                s.push_str(&format!("; {action}"));
                s
            }
            EventKind::Message { kind, text, .. } => {
                format!("{} by {by}: {}", one_line(kind, 32), one_line(text, 72))
            }
        }
    }
}

/// Flattens free text to one printable line of at most `max` characters; a cut is
/// marked with a final '…' (which counts toward `max`).
///
/// Invisible and direction-changing characters are written as escapes
/// ([`crate::text::escape_invisible`]), so a subject reads as what it says.
pub fn one_line(s: &str, max: usize) -> String {
    let words: Vec<String> = s
        .split(|c: char| c.is_whitespace() || c.is_control())
        .filter(|w| !w.is_empty())
        .map(|w| w.chars().filter(|c| !c.is_control()).collect())
        .collect();
    let flat = crate::text::escape_invisible(&words.join(" "));
    if flat.chars().count() <= max {
        return flat;
    }
    let mut out: String = flat.chars().take(max.saturating_sub(1)).collect();
    out.truncate(out.trim_end().len());
    out.push('…');
    out
}

/// The board after some prefix of the log, or the part of it one event needs.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Board {
    pub config: Option<RunConfig>,
    /// Seq of the last event applied; `None` before `init`.
    pub seq: Option<u64>,
    pub tasks: BTreeMap<TaskId, Task>,
    pub instances: BTreeMap<InstanceId, RoleInstance>,
    pub artifacts: BTreeMap<InstanceId, Vec<Artifact>>,
    /// The indexes' counts and waiting lists (format 2; see [`index`]).
    pub index: IndexState,
    /// The last progress (format 2: `stall/progress.json`).
    pub progress: Option<Progress>,
    /// Questions nobody answered yet (format 2: `stall/questions/`).
    pub questions: BTreeMap<u64, Question>,
    /// Unfinished tasks handed off more than `max_handoffs` times, with the count
    /// (format 2: `stall/handoffs/`).
    pub flagged: stall::Flagged,
}

/// One file of the board tree written by an event.
#[derive(Clone, Debug, PartialEq)]
// Changes live for one event, a handful at a time: boxing the task buys nothing.
#[allow(clippy::large_enum_variant)]
pub enum Change {
    Config(RunConfig),
    Task(Task),
    Instance(RoleInstance),
    Artifacts(InstanceId, Vec<Artifact>),
    /// `index/counts.json` (format 2).
    Counts(BTreeMap<String, Counts>),
    /// A waiting list (format 2): the tasks waiting for a task; empty removes it.
    Waiting(TaskId, BTreeSet<TaskId>),
    /// An entry of a list of the index (format 2): added, or removed when false.
    Entry(Vec<String>, bool),
    /// The stall guard's files (format 2): the last progress, a task handed off too
    /// often, its flag gone once it is finished, an open question, and its file
    /// gone once answered.
    Progress(Progress),
    Handoffs(Handoffs),
    Settled(TaskId),
    Question(Question),
    Answered(u64),
}

impl Change {
    /// The file's path in the board tree.
    pub fn path(&self) -> Vec<String> {
        match self {
            Change::Config(_) => vec!["config.json".to_owned()],
            Change::Task(t) => t.id.board_path().to_vec(),
            Change::Instance(i) => i.id.record_path().to_vec(),
            Change::Artifacts(id, _) => id.artifacts_path().to_vec(),
            Change::Counts(_) => index::list_dir(&["counts.json"]),
            Change::Waiting(id, _) => {
                let [_, bucket, file] = id.board_path();
                index::list_dir(&["waiting", &bucket, &file])
            }
            Change::Entry(path, _) => path.clone(),
            Change::Progress(_) => Progress::path(),
            Change::Handoffs(h) => Handoffs::path(&h.task),
            Change::Settled(t) => Handoffs::path(t),
            Change::Question(q) => Question::path(q.seq),
            Change::Answered(seq) => Question::path(*seq),
        }
    }

    /// The file's bytes: pretty JSON, so `git show` reads well; `None` when the
    /// change removes the file (a directory left empty goes too).
    pub fn contents(&self) -> Option<Vec<u8>> {
        let mut v = match self {
            Change::Config(c) => serde_json::to_vec_pretty(c),
            Change::Task(t) => serde_json::to_vec_pretty(t),
            Change::Instance(i) => serde_json::to_vec_pretty(i),
            Change::Artifacts(_, a) => serde_json::to_vec_pretty(a),
            Change::Counts(c) => serde_json::to_vec_pretty(c),
            Change::Waiting(_, list) if list.is_empty() => return None,
            Change::Waiting(_, list) => serde_json::to_vec_pretty(list),
            // The entry's name is the record: an empty file.
            Change::Entry(_, true) => return Some(vec![]),
            Change::Entry(_, false) => return None,
            Change::Progress(p) => serde_json::to_vec_pretty(p),
            Change::Handoffs(h) => serde_json::to_vec_pretty(h),
            Change::Question(q) => serde_json::to_vec_pretty(q),
            Change::Settled(_) | Change::Answered(_) => return None,
        }
        .expect("board records always serialise: plain structs of strings and numbers");
        v.push(b'\n');
        Some(v)
    }
}

impl Board {
    /// Folds the changes of event `seq` into the board.
    pub fn commit(&mut self, seq: u64, changes: Vec<Change>) {
        self.seq = Some(seq);
        for c in changes {
            match c {
                Change::Config(c) => self.config = Some(c),
                Change::Task(t) => {
                    self.tasks.insert(t.id.clone(), t);
                }
                Change::Instance(i) => {
                    self.instances.insert(i.id.clone(), i);
                }
                Change::Artifacts(id, a) => {
                    self.artifacts.insert(id, a);
                }
                Change::Counts(c) => self.index.counts = c,
                Change::Waiting(id, list) if list.is_empty() => {
                    self.index.waiting.remove(&id);
                }
                Change::Waiting(id, list) => {
                    self.index.waiting.insert(id, list);
                }
                Change::Entry(..) => {}
                Change::Progress(p) => self.progress = Some(p),
                Change::Handoffs(h) => {
                    self.flagged.insert(h.task, h.handoffs);
                }
                Change::Settled(t) => {
                    self.flagged.remove(&t);
                }
                Change::Question(q) => {
                    self.questions.insert(q.seq, q);
                }
                Change::Answered(seq) => {
                    self.questions.remove(&seq);
                }
            }
        }
    }

    /// Tasks in board order (plan order).
    pub fn ordered_tasks(&self) -> Vec<&Task> {
        let mut v: Vec<&Task> = self.tasks.values().collect();
        v.sort_by_key(|t| t.order());
        v
    }

    /// The tasks `who` holds, in board order.
    pub fn held_by(&self, who: &InstanceId) -> Vec<&TaskId> {
        self.ordered_tasks()
            .into_iter()
            .filter(|t| t.status == TaskStatus::Claimed && t.claimed_by.as_ref() == Some(who))
            .map(|t| &t.id)
            .collect()
    }

    /// The role that reviews done tasks, when the run has a review step.
    pub fn review_role(&self) -> Option<&str> {
        self.config.as_ref().and_then(|c| c.review_role.as_deref())
    }

    /// Whether `t` is, or may still become, work for `who`: unfinished, and for its
    /// role (a reviewer's work is every unfinished task, which may come to review).
    pub fn may_become_ready(&self, t: &Task, who: &InstanceId) -> bool {
        if t.status.is_final() {
            return false;
        }
        if self.review_role() == Some(who.role()) {
            return true;
        }
        t.role.as_deref().is_none_or(|r| r == who.role())
    }

    /// How many tasks are open, claimed and done. Needs a full board.
    pub fn counts(&self) -> Counts {
        let mut c = Counts::default();
        for t in self.tasks.values() {
            match t.status {
                TaskStatus::Open => c.open += 1,
                TaskStatus::Claimed => c.claimed += 1,
                TaskStatus::Done => c.done += 1,
                TaskStatus::Review => c.review += 1,
                TaskStatus::Cancelled => c.cancelled += 1,
            }
        }
        c
    }

    /// The seed's task board JSON: `{"run","version","tasks":[...]}`.
    pub fn to_json(&self) -> Value {
        serde_json::to_value(self.view()).expect("a board always serialises")
    }

    /// The seed's task board, to serialise straight from the tasks (a 10,000-task
    /// board prints in about the time it takes to read it).
    pub fn view(&self) -> BoardView<'_> {
        BoardView {
            run: self.config.as_ref().map(|c| c.run.as_str()),
            version: self.seq,
            tasks: self.ordered_tasks(),
            synced_at: None,
            stall: None,
        }
    }

    /// With a review step, what integration must wait for: the tasks done and
    /// awaiting review, and those sent back and not done again, in board order.
    /// `None` without a review step or when every finished task is approved.
    /// Needs a full board.
    pub fn unreviewed(&self) -> Option<Refusal> {
        self.review_role()?;
        let (mut awaiting, mut sent_back) = (vec![], vec![]);
        for t in self.ordered_tasks() {
            match t.status {
                TaskStatus::Review => awaiting.push(t.id.clone()),
                TaskStatus::Open | TaskStatus::Claimed if t.sent_back > 0 => {
                    sent_back.push(t.id.clone())
                }
                _ => {}
            }
        }
        if awaiting.is_empty() && sent_back.is_empty() {
            return None;
        }
        Some(Refusal::Unreviewed {
            awaiting,
            sent_back,
        })
    }

    /// How long an instance may stay silent before it loses its claims.
    pub fn lease(&self) -> chrono::TimeDelta {
        self.timeout()
    }

    pub(crate) fn timeout(&self) -> chrono::TimeDelta {
        let sec = self
            .config
            .as_ref()
            .map_or(DEFAULT_CLAIM_TIMEOUT_SEC, |c| c.claim_timeout_sec);
        // Any u64 is a valid stored value; a lease beyond chrono's range never ends.
        i64::try_from(sec)
            .ok()
            .and_then(chrono::TimeDelta::try_seconds)
            .unwrap_or(chrono::TimeDelta::MAX)
    }
}

/// The seed's task board JSON, borrowed from a [`Board`]; `synced_at` says when a
/// remote-mode clone last fetched it.
#[derive(Serialize)]
pub struct BoardView<'a> {
    pub run: Option<&'a str>,
    pub version: Option<u64>,
    pub tasks: Vec<&'a Task>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub synced_at: Option<Ts>,
    /// What the stall guard flags, when it flags anything (see [`Flags`]).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub stall: Option<&'a Flags>,
}

/// The tasks of a board by status; shown as `2 open, 1 claimed, 3 done`, and in
/// JSON as `{"open","claimed","done"}`.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq)]
#[serde(default, deny_unknown_fields)]
pub struct Counts {
    pub open: usize,
    pub claimed: usize,
    pub done: usize,
    /// Done and awaiting review (shown only when there are any).
    #[serde(skip_serializing_if = "is_zero")]
    pub review: usize,
    #[serde(skip_serializing_if = "is_zero")]
    pub cancelled: usize,
}

impl fmt::Display for Counts {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} open, {} claimed, {} done",
            self.open, self.claimed, self.done
        )?;
        if self.review > 0 {
            write!(f, ", {} awaiting review", self.review)?;
        }
        if self.cancelled > 0 {
            write!(f, ", {} cancelled", self.cancelled)?;
        }
        Ok(())
    }
}

/// Why the board refused an event: exit code 3.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Refusal {
    Held {
        task: TaskId,
        holder: InstanceId,
        claimed_at: Option<Ts>,
        now: Ts,
    },
    Waiting {
        task: TaskId,
        deps: Vec<TaskId>,
    },
    AlreadyDone {
        task: TaskId,
    },
    NotClaimed {
        task: TaskId,
    },
    NotHolder {
        task: TaskId,
        holder: InstanceId,
        who: String,
    },
    /// No task is ready: `waiting` open tasks wait for deps, `held` are held by
    /// other live instances.
    NothingReady {
        waiting: usize,
        held: usize,
    },
    /// The integrator left files in conflict.
    Conflicts {
        files: usize,
    },
    /// `plan --strict`: tasks that may run at once reserve overlapping paths.
    Overlaps {
        pairs: usize,
    },
    /// Nothing can become ready for this role any more: exit code 4, "stop".
    NothingLeft {
        role: String,
    },
    /// The task is for another role.
    WrongRole {
        task: TaskId,
        role: String,
        who: InstanceId,
    },
    /// The task was sent back; its previous holder has the first claim on it.
    Reserved {
        task: TaskId,
        holder: InstanceId,
        until: Ts,
        now: Ts,
    },
    Cancelled {
        task: TaskId,
    },
    /// The holder's lease ran out on the board, but it tried to write at
    /// `tried_at`, within the lease: an honest reclaimer leaves the task alone
    /// (a policy of the drafting side, see `ledger::alive`; the rule itself
    /// would take the reclaim).
    StillTrying {
        task: TaskId,
        holder: InstanceId,
        tried_at: Ts,
        now: Ts,
    },
    /// Reviewing needs a task that is done and awaits review.
    NotInReview {
        task: TaskId,
        status: TaskStatus,
    },
    /// Other tasks depend on the task to cancel.
    HasDependents {
        task: TaskId,
        dependents: Vec<TaskId>,
    },
    /// A claimed task changes only by its holder adding paths.
    NotOpen {
        task: TaskId,
        status: TaskStatus,
    },
    /// Resolutions wait for their resolve tasks to be done: (task, holder).
    ResolveWaiting {
        tasks: Vec<(String, Option<String>)>,
    },
    /// With a review step, integration waits for these tasks' approval.
    Unreviewed {
        awaiting: Vec<TaskId>,
        sent_back: Vec<TaskId>,
    },
}

impl fmt::Display for Refusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Refusal::Held {
                task,
                holder,
                claimed_at,
                now,
            } => {
                write!(f, "{task} is held by {holder}")?;
                if let Some(at) = claimed_at {
                    write!(f, " (claimed {} ago)", ago(*now - *at))?;
                }
                Ok(())
            }
            Refusal::Waiting { task, deps } => {
                write!(f, "{task} waits for {}", join(deps))
            }
            Refusal::AlreadyDone { task } => write!(f, "{task} is already done"),
            Refusal::NotClaimed { task } => write!(f, "{task} is not claimed by anyone"),
            Refusal::NotHolder { task, holder, who } => {
                write!(
                    f,
                    "{task} is held by {holder}, not by {}",
                    one_line(who, 64)
                )
            }
            Refusal::Conflicts { files } => {
                write!(
                    f,
                    "{files} file(s) in conflict; nothing was resolved silently"
                )
            }
            Refusal::ResolveWaiting { tasks } => {
                let each: Vec<String> = tasks
                    .iter()
                    .map(|(t, h)| match h {
                        Some(h) => format!("{} (held by {})", one_line(t, 80), one_line(h, 64)),
                        None => format!("{} (not claimed yet)", one_line(t, 80)),
                    })
                    .collect();
                write!(
                    f,
                    "not merging: the resolution waits for its resolve task {}, which is not done",
                    each.join(", ")
                )
            }
            Refusal::Overlaps { pairs } => {
                write!(
                    f,
                    "{pairs} pair(s) of tasks not ordered by their deps reserve overlapping paths; nothing was added"
                )
            }
            Refusal::NothingLeft { role } => {
                write!(f, "nothing left: no task that a {role} may take is open, claimed or awaiting review")
            }
            Refusal::WrongRole { task, role, who } if role.is_empty() => {
                write!(
                    f,
                    "{task} is work for the other roles; {who} reviews it once it is done"
                )
            }
            Refusal::WrongRole { task, role, who } => {
                write!(f, "{task} is for the {role} role, not for {who}")
            }
            Refusal::Reserved {
                task,
                holder,
                until,
                now,
            } => write!(
                f,
                "{task} was sent back to {holder}, who has the first claim on it for another {}",
                ago(*until - *now)
            ),
            Refusal::StillTrying {
                task,
                holder,
                tried_at,
                now,
            } => write!(
                f,
                "{task} is held by {holder}, whose lease ran out but who is still trying to write (last try {} ago)",
                ago(*now - *tried_at)
            ),
            Refusal::Cancelled { task } => write!(f, "{task} is cancelled"),
            Refusal::NotInReview { task, status } => {
                write!(f, "{task} is {status}, not done and awaiting review")
            }
            Refusal::HasDependents { task, dependents } => {
                write!(f, "{} depend(s) on {task}", join(dependents))
            }
            Refusal::NotOpen { task, status } => {
                write!(f, "{task} is {status}; only an open task can be edited")
            }
            Refusal::NothingReady { waiting, held } => {
                write!(
                    f,
                    "nothing ready: {waiting} task(s) wait for deps, {held} held by others"
                )
            }
            Refusal::Unreviewed {
                awaiting,
                sent_back,
            } => {
                f.write_str("not approved yet: ")?;
                let mut parts = vec![];
                if !awaiting.is_empty() {
                    parts.push(format!("{} await(s) review", join(awaiting)));
                }
                if !sent_back.is_empty() {
                    parts.push(format!("{} sent back for changes", join(sent_back)));
                }
                f.write_str(&parts.join("; "))
            }
        }
    }
}

impl std::error::Error for Refusal {}

impl Refusal {
    /// The next command to try, when there is one. A refusal comes from more than
    /// one command (a task already done refuses a claim, a release, a `done` and a
    /// cancel alike), so a hint names what fits each of them: where to look, and
    /// other work only where the refusal is about taking work.
    pub fn hint(&self) -> Option<String> {
        match self {
            // Only claims (and reviews of a review another reviewer holds) meet a
            // live holder or unfinished deps.
            Refusal::Held { .. } => Some("take another with `mara claim --next`".into()),
            Refusal::Waiting { .. } => Some(
                "take a ready task with `mara claim --next`, or wait for one with `mara claim --next --wait 600`".into(),
            ),
            Refusal::AlreadyDone { task } => Some(format!(
                "nothing more to do with it: `mara show {task}` shows who did it and where its work is"
            )),
            Refusal::NotClaimed { task } => Some(format!("claim it first: `mara claim {task}`")),
            Refusal::NotHolder { task, .. } => Some(format!(
                "only its holder may do this (`mara show {task}` names it); `release` and `done` take `--force`, and the log records who forced it"
            )),
            Refusal::NothingReady { .. } => {
                Some("wait for work with `mara claim --next --wait 600`".into())
            }
            Refusal::NothingLeft { .. } => Some("your part of the run is over: stop".into()),
            Refusal::WrongRole { role, who, .. } => Some(format!(
                "this is work for the {role} role; `mara claim --next` takes work for yours ({})",
                who.role()
            )),
            Refusal::Reserved { holder, .. } => Some(format!(
                "{holder} reworks it first; take another with `mara claim --next`"
            )),
            Refusal::Cancelled { task } => Some(format!(
                "it is off the plan: `mara show {task}` says why"
            )),
            Refusal::StillTrying { holder, .. } => Some(format!(
                "take another with `mara claim --next`; it can be reclaimed once {holder} has not tried to write for the lease"
            )),
            Refusal::NotInReview { task, .. } => Some(format!("see where it stands: `mara show {task}`")),
            Refusal::HasDependents { task, .. } => Some(format!(
                "cancel or edit its dependents first, or `mara task cancel {task} --drop-deps` (logged)"
            )),
            Refusal::NotOpen { task, .. } => Some(format!(
                "its holder may add paths with `mara task edit {task} --add-path GLOB`"
            )),
            Refusal::Conflicts { .. } => Some(
                "read the report (integrator.md); each conflict is a resolve task: resolve on its conflicts branch, commit there, and run `mara integrate --continue`".into(),
            ),
            Refusal::ResolveWaiting { .. } => Some(
                "its holder commits the resolution on the conflicts branch and runs `mara done <task>`; then run `mara integrate --continue` again".into(),
            ),
            Refusal::Overlaps { .. } => Some(
                "order them with deps, split their paths, or add the plan without --strict".into(),
            ),
            Refusal::Unreviewed { .. } => Some(
                "wait for the reviews (`mara status`), or merge anyway with `mara integrate --unreviewed` (logged)".into(),
            ),
        }
    }
}

fn join(ids: &[TaskId]) -> String {
    ids.iter()
        .map(TaskId::as_str)
        .collect::<Vec<_>>()
        .join(", ")
}

/// "12s", "3m", "2h": how long ago, for people.
pub fn ago(d: chrono::Duration) -> String {
    let s = d.num_seconds().max(0);
    match s {
        0..=119 => format!("{s}s"),
        120..=7199 => format!("{}m", s / 60),
        _ => format!("{}h", s / 3600),
    }
}

/// Why an event cannot be applied.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RuleError {
    /// The board says no: exit code 3.
    Refused(Refusal),
    /// The event itself is wrong (unknown task, duplicate id, ...): exit code 1.
    Invalid(Invalid),
}

impl From<Refusal> for RuleError {
    fn from(r: Refusal) -> Self {
        RuleError::Refused(r)
    }
}

impl From<Invalid> for RuleError {
    fn from(i: Invalid) -> Self {
        RuleError::Invalid(i)
    }
}

impl fmt::Display for RuleError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RuleError::Refused(r) => r.fmt(f),
            RuleError::Invalid(i) => i.fmt(f),
        }
    }
}

/// An event the rules reject as wrong in itself (exit code 1). Through anyhow it
/// travels as itself, a typed error so a remote writer can tell it from a failure
/// of git and re-check on a fresh tip, as a refusal travels as its [`Refusal`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Invalid(pub String);

impl fmt::Display for Invalid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for Invalid {}

impl From<RuleError> for anyhow::Error {
    fn from(e: RuleError) -> Self {
        match e {
            RuleError::Refused(r) => anyhow::Error::new(r),
            RuleError::Invalid(i) => anyhow::Error::new(i),
        }
    }
}

fn invalid<T>(msg: impl Into<String>) -> Result<T, RuleError> {
    Err(Invalid(msg.into()).into())
}

/// What a claim of a task would be right now.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ClaimKind {
    /// The task is open and ready.
    Fresh,
    /// The holder's lease ran out: a `reclaim` from `previous`.
    Expired { previous: InstanceId },
    /// The claimer already holds it; nothing to write.
    AlreadyMine,
}

/// The claim rule: exists, not done or cancelled, for the claimer's role, not held
/// by a live instance, not reserved for its previous holder after a review sent it
/// back, deps all done. A task awaiting review is the review role's to claim.
pub fn check_claim(
    board: &Board,
    task: &TaskId,
    claimer: &InstanceId,
    now: Ts,
) -> Result<ClaimKind, RuleError> {
    let Some(t) = board.tasks.get(task) else {
        return invalid(format!("no task {task} on this board"));
    };
    let held = |holder: &InstanceId, since: Option<Ts>| -> Result<ClaimKind, RuleError> {
        if holder == claimer {
            return Ok(ClaimKind::AlreadyMine);
        }
        let expired = board
            .instances
            .get(holder)
            .is_some_and(|h| now - h.last_seen > board.timeout());
        if !expired {
            return Err(Refusal::Held {
                task: task.clone(),
                holder: holder.clone(),
                claimed_at: since,
                now,
            }
            .into());
        }
        Ok(ClaimKind::Expired {
            previous: holder.clone(),
        })
    };
    match t.status {
        TaskStatus::Done => return Err(Refusal::AlreadyDone { task: task.clone() }.into()),
        TaskStatus::Cancelled => return Err(Refusal::Cancelled { task: task.clone() }.into()),
        TaskStatus::Review => {
            let role = board.review_role().unwrap_or_default();
            if claimer.role() != role {
                return Err(Refusal::WrongRole {
                    task: task.clone(),
                    role: role.to_owned(),
                    who: claimer.clone(),
                }
                .into());
            }
            return match &t.reviewer {
                None => Ok(ClaimKind::Fresh),
                Some(r) => held(r, t.done_at),
            };
        }
        TaskStatus::Claimed | TaskStatus::Open => {}
    }
    if let Some(role) = t.role.as_deref().filter(|r| *r != claimer.role()) {
        return Err(Refusal::WrongRole {
            task: task.clone(),
            role: role.to_owned(),
            who: claimer.clone(),
        }
        .into());
    }
    // With a review step the review role reviews: a task without a role is the
    // other roles' work, not something a reviewer takes instead of reviewing it.
    if t.role.is_none() && board.review_role() == Some(claimer.role()) {
        return Err(Refusal::WrongRole {
            task: task.clone(),
            // No role: "the other roles" (see Display).
            role: String::new(),
            who: claimer.clone(),
        }
        .into());
    }
    if t.status == TaskStatus::Claimed {
        let holder = t
            .claimed_by
            .clone()
            .ok_or_else(|| Invalid(format!("{task} is claimed by nobody")))?;
        return held(&holder, t.claimed_at);
    }
    if let (Some(first), Some(at)) = (&t.rework_by, t.reopened_at) {
        let until = at + board.timeout();
        if first != claimer && now < until {
            return Err(Refusal::Reserved {
                task: task.clone(),
                holder: first.clone(),
                until,
                now,
            }
            .into());
        }
    }
    let waiting: Vec<TaskId> = t
        .deps
        .iter()
        .filter(|d| board.tasks.get(*d).map(|d| d.status) != Some(TaskStatus::Done))
        .cloned()
        .collect();
    if !waiting.is_empty() {
        return Err(Refusal::Waiting {
            task: task.clone(),
            deps: waiting,
        }
        .into());
    }
    Ok(ClaimKind::Fresh)
}

/// The task `claimer` should take now: of those it could claim, the highest
/// priority, then the first in board order. Needs a full board. When none is
/// ready, says whether one still may become ready for the claimer's role
/// ([`Refusal::NothingReady`], "wait") or not ([`Refusal::NothingLeft`], "stop").
pub fn next_ready(board: &Board, claimer: &InstanceId, now: Ts) -> Result<TaskId, Refusal> {
    next_ready_sparing(board, claimer, now, &mut |_, _| false)
}

/// [`next_ready`], but a task whose holder's lease ran out is passed over (and
/// counted as held) when `spare(task, holder)` says so: the drafting side's
/// policy for holders that are still trying to write (`ledger::alive`).
pub fn next_ready_sparing(
    board: &Board,
    claimer: &InstanceId,
    now: Ts,
    spare: &mut dyn FnMut(&TaskId, &InstanceId) -> bool,
) -> Result<TaskId, Refusal> {
    let (mut waiting, mut held) = (0, 0);
    let mut tasks = board.ordered_tasks();
    // Stable: equal priorities keep board order.
    tasks.sort_by_key(|t| std::cmp::Reverse(t.priority));
    let mut later = false;
    for t in tasks {
        match check_claim(board, &t.id, claimer, now) {
            Ok(ClaimKind::Expired { previous }) if spare(&t.id, &previous) => held += 1,
            Ok(ClaimKind::Fresh | ClaimKind::Expired { .. }) => return Ok(t.id.clone()),
            // A task reserved for another that also waits for its deps is waiting:
            // the count the index gives (open tasks not ready).
            Err(RuleError::Refused(Refusal::Reserved { .. })) if !deps_done(board, t) => {
                waiting += 1
            }
            Err(RuleError::Refused(Refusal::Held { .. } | Refusal::Reserved { .. })) => held += 1,
            Err(RuleError::Refused(Refusal::Waiting { .. })) => waiting += 1,
            _ => {}
        }
        later |= board.may_become_ready(t, claimer);
    }
    if later {
        Err(Refusal::NothingReady { waiting, held })
    } else {
        Err(Refusal::NothingLeft {
            role: claimer.role().to_owned(),
        })
    }
}

/// Whether every dependency of `t` is done.
pub fn deps_done(board: &Board, t: &Task) -> bool {
    t.deps
        .iter()
        .all(|d| board.tasks.get(d).map(|d| d.status) == Some(TaskStatus::Done))
}

/// The ids an event needs loaded before [`apply`] can judge it: its tasks (and, once
/// those are loaded, their deps and holders; see [`needs_after`]).
pub fn needs(event: &EventKind) -> (Vec<TaskId>, Vec<InstanceId>) {
    let mut tasks: Vec<TaskId> = event.tasks().into_iter().cloned().collect();
    let mut instances = vec![];
    match event {
        EventKind::TaskAdd { task } => {
            tasks.extend(task.deps.iter().cloned());
            // Every resolve task the branch may have: one may be unfinished.
            if let Some(r) = &task.resolves {
                tasks.extend(resolve_task_ids(r.branch.rsplit('/').next().unwrap_or("")));
            }
        }
        EventKind::Plan { tasks: ts } => {
            tasks.extend(ts.iter().flat_map(|t| t.deps.iter().cloned()));
        }
        EventKind::Reclaim { previous, .. } => instances.push(previous.clone()),
        EventKind::Status { instance, .. } => instances.push(instance.clone()),
        _ => {}
    }
    (tasks, instances)
}

/// The second round of loading: deps and holders of the tasks already loaded (the
/// deps for a claim's rule, and with indexes for any change of a task: whether it
/// is ready depends on them).
pub fn needs_after(event: &EventKind, board: &Board) -> (Vec<TaskId>, Vec<InstanceId>) {
    let mut tasks = vec![];
    let mut instances = vec![];
    let indexed = board.config.as_ref().is_some_and(|c| c.board_format() >= 2);
    for id in event.tasks() {
        if let Some(t) = board.tasks.get(id) {
            if indexed || matches!(event, EventKind::Claim { .. } | EventKind::Reclaim { .. }) {
                tasks.extend(t.deps.iter().cloned());
            }
            instances.extend(t.claimed_by.iter().cloned());
            instances.extend(t.reviewer.iter().cloned());
        }
    }
    (tasks, instances)
}

fn check_text(what: &str, s: &str) -> Result<(), RuleError> {
    if s.trim().is_empty() {
        return invalid(format!("{what} is empty"));
    }
    if s.len() > MAX_TEXT {
        return invalid(format!("{what} is longer than {MAX_TEXT} bytes"));
    }
    if s.contains('\0') {
        return invalid(format!("{what} contains a NUL byte"));
    }
    Ok(())
}

/// Why `p` is not a plain relative path inside a work tree, if it is not one.
///
/// Board paths (artifacts, task globs) were written by some instance and end up
/// joined to a directory on another machine, so anything that could lead out of
/// that directory or into git's own is refused ([`crate::safepath::check_relative`]:
/// an absolute path, a `..`, `.` or empty component, a backslash, a control
/// character, a `.git` component in any spelling some file system reads as `.git`),
/// and a drive letter. A glob's trailing `/` ("everything below") is fine.
pub fn unsafe_path_reason(p: &str) -> Option<String> {
    if p.len() > 2 && p.as_bytes()[1] == b':' && p.as_bytes()[0].is_ascii_alphabetic() {
        return Some("starts with a drive letter".into());
    }
    let body = p.strip_suffix('/').unwrap_or(p);
    crate::safepath::check_relative(body).err()
}

/// [`check_text`] plus [`unsafe_path_reason`].
fn check_path(what: &str, p: &str) -> Result<(), RuleError> {
    check_text(what, p)?;
    if let Some(why) = unsafe_path_reason(p) {
        return invalid(format!(
            "{what} {:?} {why}; use a relative path inside the work tree, like src/api/",
            one_line(p, 80)
        ));
    }
    Ok(())
}

/// The run's settings are read by every clone: bounds that keep them harmless.
fn check_config(c: &RunConfig) -> Result<(), RuleError> {
    if let Some(s) = c.max_clock_skew_sec {
        if !seconds_in_range(s) {
            return invalid(format!(
                "max_clock_skew_sec is {s}; use 1 to {MAX_CLOCK_SKEW_SEC} seconds"
            ));
        }
    }
    if let Some(r) = &c.remote {
        if r.is_empty() || r.len() > 256 || r.starts_with('-') || r.chars().any(char::is_control) {
            return invalid(format!(
                "remote {} is not a remote name",
                crate::text::quote(r, 80)
            ));
        }
    }
    if let Some(p) = &c.outputs_pattern {
        check_path("outputs.pattern", p)?;
    }
    for r in c.roles.iter().flatten() {
        check_role(r)?;
    }
    if let Some(r) = &c.review_role {
        check_role(r)?;
        if c.roles.as_ref().is_some_and(|all| !all.contains(r)) {
            return invalid(format!("review_role {r} is not one of the run's roles"));
        }
    }
    if let Some(r) = &c.resolver_role {
        check_role(r)?;
        if c.roles.as_ref().is_some_and(|all| !all.contains(r)) {
            return invalid(format!("resolver_role {r} is not one of the run's roles"));
        }
    }
    if let Some(f) = c.format.filter(|f| !(1..=BOARD_FORMAT).contains(f)) {
        return invalid(format!(
            "the run's board format is {f}, which this mara does not know (it knows 1 to {BOARD_FORMAT}); use a newer mara"
        ));
    }
    if let Some(s) = c.poll_sec.filter(|s| !seconds_in_range(*s)) {
        return invalid(format!("poll_sec is {s}; use 1 to {MAX_SECONDS} seconds"));
    }
    stall::check_config(c)?;
    Ok(())
}

fn check_new_task(t: &NewTask) -> Result<(), RuleError> {
    check_text(&format!("title of {}", t.id), &t.title)?;
    // The same bounds an edit checks: a plan item is untrusted input too.
    if let Some(b) = &t.body {
        check_body(&t.id, b)?;
    }
    if let Some(r) = &t.role {
        check_role(r)?;
    }
    for p in &t.paths {
        check_path(&format!("path glob of {}", t.id), p)?;
        crate::glob::check(&format!("path glob of {}", t.id), p).map_err(Invalid)?;
    }
    if t.deps.contains(&t.id) {
        return invalid(format!("{} depends on itself", t.id));
    }
    if t.status.is_some_and(|s| s != TaskStatus::Open) {
        return invalid(format!(
            "{} has status {}; a plan adds open tasks only",
            t.id,
            t.status.expect("checked is_some")
        ));
    }
    if t.claimed_by.as_ref().is_some_and(|c| !c.is_null()) {
        return invalid(format!(
            "{} has claimed_by set; a plan adds unclaimed tasks only",
            t.id
        ));
    }
    Ok(())
}

fn new_task(t: &NewTask, seq: u64, position: u32, ts: Ts) -> Task {
    Task {
        id: t.id.clone(),
        title: t.title.clone(),
        status: TaskStatus::Open,
        claimed_by: None,
        deps: t.deps.clone(),
        paths: t.paths.clone(),
        added_seq: seq,
        position,
        created_at: ts,
        claimed_at: None,
        done_at: None,
        artifact: None,
        body: t.body.clone(),
        role: t.role.clone(),
        priority: t.priority,
        commit: None,
        branch: None,
        note: None,
        reviewer: None,
        sent_back: 0,
        rework_by: None,
        reopened_at: None,
        handoffs: 0,
        resolves: t.resolves.clone(),
    }
}

/// Checks the tasks of a plan (or one `task add`) against the board: unique ids,
/// known deps, no cycles.
fn check_plan(board: &Board, tasks: &[NewTask]) -> Result<(), RuleError> {
    if tasks.is_empty() {
        return invalid("the plan has no tasks");
    }
    let mut ids: HashMap<&TaskId, &NewTask> = HashMap::new();
    for t in tasks {
        check_new_task(t)?;
        if let Some(r) = &t.role {
            check_run_role(board, r)?;
        }
        if board.tasks.contains_key(&t.id) {
            return invalid(format!("task {} is already on the board", t.id));
        }
        if ids.insert(&t.id, t).is_some() {
            return invalid(format!("task {} is listed twice", t.id));
        }
    }
    for t in tasks {
        for d in &t.deps {
            if !ids.contains_key(d) && !board.tasks.contains_key(d) {
                return invalid(format!("{} depends on {d}, which is not a task", t.id));
            }
            check_not_cancelled(board, &t.id, d)?;
        }
    }
    // Board tasks cannot depend on new ones, so a cycle lies within the plan:
    // depth-first search with colours.
    let mut state: HashMap<&TaskId, u8> = HashMap::new(); // 1 = on stack, 2 = finished
    fn visit<'a>(
        id: &'a TaskId,
        ids: &HashMap<&'a TaskId, &'a NewTask>,
        state: &mut HashMap<&'a TaskId, u8>,
        path: &mut Vec<&'a TaskId>,
    ) -> Result<(), RuleError> {
        match state.get(id) {
            Some(2) => return Ok(()),
            Some(_) => {
                let start = path.iter().position(|p| *p == id).unwrap_or(0);
                let mut cyc: Vec<&str> = path[start..].iter().map(|t| t.as_str()).collect();
                cyc.push(id.as_str());
                return invalid(format!("dependency cycle: {}", cyc.join(" -> ")));
            }
            None => {}
        }
        let Some(t) = ids.get(id) else {
            return Ok(()); // a task already on the board
        };
        state.insert(id, 1);
        path.push(id);
        for d in &t.deps {
            visit(d, ids, state, path)?;
        }
        path.pop();
        state.insert(id, 2);
        Ok(())
    }
    for t in tasks {
        visit(&t.id, &ids, &mut state, &mut vec![])?;
    }
    Ok(())
}

fn sender_instance(event: &Event) -> Result<InstanceId, RuleError> {
    event.sender.parse().map_err(|_| {
        Invalid(format!(
            "{} needs an instance identity (<role>#<n>), not {:?}",
            event.kind.type_name(),
            event.sender
        ))
        .into()
    })
}

fn existing<'a>(board: &'a Board, task: &TaskId) -> Result<&'a Task, RuleError> {
    board
        .tasks
        .get(task)
        .ok_or_else(|| Invalid(format!("no task {task} on this board")).into())
}

/// Holder-only rule of `release` and `done`; `forced` must name the actual holder.
fn check_holder(
    t: &Task,
    event: &Event,
    forced: &Option<InstanceId>,
) -> Result<Option<InstanceId>, RuleError> {
    let holder = t.claimed_by.clone();
    match (forced, &holder) {
        (Some(f), Some(h)) if f == h => Ok(holder),
        (Some(f), _) => invalid(format!(
            "the event forces {} from {f}, but its holder is {}",
            t.id,
            holder.map_or("nobody".to_owned(), |h| h.to_string())
        )),
        (None, Some(h)) if h.to_string() == event.sender => Ok(holder),
        (None, Some(h)) => Err(Refusal::NotHolder {
            task: t.id.clone(),
            holder: h.clone(),
            who: event.sender.clone(),
        }
        .into()),
        (None, None) => Err(Refusal::NotClaimed { task: t.id.clone() }.into()),
    }
}

/// The rule function: what `event` changes on `board`, or why it may not happen.
pub fn apply(board: &Board, event: &Event) -> Result<Vec<Change>, RuleError> {
    let expected = board.seq.map_or(0, |s| s + 1);
    if event.seq != expected {
        return invalid(format!(
            "event seq {} does not follow {}",
            event.seq,
            board.seq.map_or("nothing".to_owned(), |s| s.to_string())
        ));
    }
    if board.config.is_none() && !matches!(event.kind, EventKind::Init { .. }) {
        return invalid("the run has no init event");
    }
    check_text("sender", &event.sender)?;
    let mut changes = match &event.kind {
        EventKind::Init { config } => apply_init(board, config)?,
        EventKind::TaskAdd { task } => apply_plan(board, event, std::slice::from_ref(task))?,
        EventKind::Plan { tasks } => apply_plan(board, event, tasks)?,
        EventKind::Claim { task } => apply_claim(board, event, task, None)?,
        EventKind::Reclaim { task, previous } => apply_claim(board, event, task, Some(previous))?,
        EventKind::Release { task, forced, .. } => apply_release(board, event, task, forced)?,
        EventKind::Done {
            task,
            artifact,
            forced,
            commit,
            branch,
            note,
        } => apply_done(
            board,
            event,
            task,
            artifact.as_deref(),
            forced,
            [commit, branch, note],
        )?,
        EventKind::TaskEdit { .. } => apply_edit(board, event)?,
        EventKind::TaskCancel {
            task,
            drop_deps,
            reason,
        } => apply_cancel(board, task, reason.as_deref(), *drop_deps)?,
        EventKind::Review {
            task,
            verdict,
            note,
        } => apply_review(board, event, task, *verdict, note.as_deref())?,
        EventKind::Heartbeat => apply_heartbeat(event)?,
        EventKind::Status {
            instance,
            status,
            reason,
            place,
        } => apply_status(board, event, instance, *status, reason, place),
        EventKind::Artifact { instance, path, .. } => apply_artifact(board, instance, path)?,
        EventKind::Conflict {
            file,
            branch,
            kind,
            action,
            ours,
            theirs,
            ..
        } => apply_conflict([file, branch, kind, action], [ours, theirs])?,
        EventKind::Fenced {
            task,
            instance,
            claim,
            commits,
            reason,
        } => apply_fenced([task, instance, claim, reason], commits)?,
        EventKind::Resolved {
            branch,
            commit,
            files,
            by,
            task,
        } => apply_resolved(board, branch, commit, files, by.as_deref(), task.as_ref())?,
        EventKind::Progress { commit, task } => {
            apply_progress(board, event, commit, task.as_ref())?
        }
        EventKind::Message {
            kind,
            text,
            to,
            task,
            reply_to,
        } => apply_message(
            board,
            event,
            kind,
            text,
            to.as_deref(),
            task.as_ref(),
            *reply_to,
        )?,
        EventKind::Stall {
            last,
            handoffs,
            questions,
            action,
        } => stall::apply_stall(board, event, last, handoffs, questions, action)?,
    };
    stall::derive(board, event, &mut changes);
    if board.config.as_ref().is_some_and(|c| c.board_format() >= 2) {
        let more = index::changes(board, &changes);
        changes.extend(more);
    }
    renew_lease(board, event, &mut changes);
    Ok(changes)
}

/// `init`: the run's settings, once.
fn apply_init(board: &Board, config: &RunConfig) -> Result<Vec<Change>, RuleError> {
    if board.config.is_some() {
        return invalid("the run is already initialised");
    }
    check_config(config)?;
    Ok(vec![Change::Config(config.clone())])
}

/// `plan`, and `task add` as a plan of one: open tasks in plan order.
fn apply_plan(board: &Board, event: &Event, tasks: &[NewTask]) -> Result<Vec<Change>, RuleError> {
    check_plan(board, tasks)?;
    for t in tasks {
        if let Some(r) = &t.resolves {
            check_resolves(board, event, t, r)?;
        }
    }
    tasks
        .iter()
        .enumerate()
        .map(|(i, t)| {
            let pos = u32::try_from(i).map_err(|_| Invalid("plan too big".into()))?;
            Ok(Change::Task(new_task(t, event.seq, pos, event.ts)))
        })
        .collect()
}

/// A task that carries `resolves`: added alone (not in a plan) by the integrator
/// in a format 2 run, for the run's resolver role, on a conflicts branch of this
/// run that no unfinished task resolves, under the id the branch gives it.
fn check_resolves(
    board: &Board,
    event: &Event,
    t: &NewTask,
    r: &Resolves,
) -> Result<(), RuleError> {
    let id = &t.id;
    let config = board
        .config
        .as_ref()
        .expect("apply checks the run has a config");
    if config.board_format() < 2 {
        return invalid(format!(
            "{id} carries resolves, which needs board format 2; this run has format 1"
        ));
    }
    if matches!(event.kind, EventKind::Plan { .. }) {
        return invalid(format!(
            "a plan cannot add the resolve task {id}; `mara integrate` adds each one on its own"
        ));
    }
    if let Ok(me) = event.sender.parse::<InstanceId>() {
        if !RESOLVE_TASK_ADDERS.contains(&me.role()) {
            return invalid(format!(
                "{me} may not add the resolve task {id}: only the integrator does (`mara integrate` as {INTEGRATOR_ROLE}#<n> or as a person, or `mara run`'s integrator step)"
            ));
        }
    }
    let prefix = format!("mara/{}/conflicts/", config.run);
    let stem = r
        .branch
        .strip_prefix(&prefix)
        .filter(|s| s.parse::<TaskId>().is_ok());
    let Some(stem) = stem else {
        return invalid(format!(
            "the resolve task {id} names the branch {}, which is not a conflicts branch of run {} ({prefix}<role>_<n>)",
            crate::text::quote(&r.branch, 120),
            config.run
        ));
    };
    for (what, c) in [("ours", &r.ours), ("theirs", &r.theirs)] {
        if !matches!(c.len(), 40 | 64) || !c.chars().all(|c| c.is_ascii_hexdigit()) {
            return invalid(format!(
                "the resolve task {id} names {}, which is not a full commit id, as {what}",
                crate::text::quote(c, 64)
            ));
        }
    }
    let ids = resolve_task_ids(stem);
    if !ids.contains(id) {
        return invalid(format!(
            "a resolve task of {} is named resolve-{stem} or resolve-{stem}-<2 to {MAX_RESOLVE_ROUNDS}>, not {id}",
            r.branch
        ));
    }
    if t.role.as_deref() != config.resolver() {
        return invalid(format!(
            "the resolve task {id} is for role {}, not the run's resolver role {}",
            t.role.as_deref().unwrap_or("(any)"),
            config.resolver().unwrap_or("(any)")
        ));
    }
    if let Some(open) = ids
        .iter()
        .filter_map(|i| board.tasks.get(i))
        .find(|o| !o.status.is_final() && o.resolves.as_ref().is_some_and(|x| x.branch == r.branch))
    {
        return invalid(format!(
            "{} already resolves {} and is {}: one unfinished resolve task per conflicts branch",
            open.id, r.branch, open.status
        ));
    }
    Ok(())
}

/// `claim`, or `reclaim` (`from` is the holder whose lease ran out).
fn apply_claim(
    board: &Board,
    event: &Event,
    task: &TaskId,
    from: Option<&InstanceId>,
) -> Result<Vec<Change>, RuleError> {
    let me = sender_instance(event)?;
    match (from, check_claim(board, task, &me, event.ts)?) {
        (None, ClaimKind::Fresh) => {}
        (Some(from), ClaimKind::Expired { previous }) if *from == previous => {}
        (_, ClaimKind::AlreadyMine) => {
            return invalid(format!("{me} already holds {task}"));
        }
        (None, ClaimKind::Expired { previous }) => {
            return invalid(format!(
                "{task} must be taken with a reclaim from {previous}, whose lease ran out"
            ));
        }
        _ => return invalid(format!("{task} is not held by an expired instance")),
    }
    let mut t = existing(board, task)?.clone();
    if t.status == TaskStatus::Review {
        // A reviewer takes the review; the task keeps its holder.
        t.reviewer = Some(me);
    } else {
        t.status = TaskStatus::Claimed;
        t.claimed_by = Some(me);
        t.claimed_at = Some(event.ts);
        t.rework_by = None;
        t.reopened_at = None;
    }
    Ok(vec![Change::Task(t)])
}

/// `release`: the holder (or `forced` from it) gives the task back.
fn apply_release(
    board: &Board,
    event: &Event,
    task: &TaskId,
    forced: &Option<InstanceId>,
) -> Result<Vec<Change>, RuleError> {
    let t = existing(board, task)?;
    match t.status {
        TaskStatus::Done | TaskStatus::Review => {
            return Err(Refusal::AlreadyDone { task: task.clone() }.into())
        }
        TaskStatus::Cancelled => return Err(Refusal::Cancelled { task: task.clone() }.into()),
        TaskStatus::Open => return Err(Refusal::NotClaimed { task: task.clone() }.into()),
        TaskStatus::Claimed => {}
    }
    check_holder(t, event, forced)?;
    let mut t = t.clone();
    t.status = TaskStatus::Open;
    t.claimed_by = None;
    t.claimed_at = None;
    Ok(vec![Change::Task(t)])
}

/// `done`: the holder (or `forced` from it) completes the task; an artifact is
/// recorded for the sender.
fn apply_done(
    board: &Board,
    event: &Event,
    task: &TaskId,
    artifact: Option<&str>,
    forced: &Option<InstanceId>,
    [commit, branch, note]: [&Option<String>; 3],
) -> Result<Vec<Change>, RuleError> {
    let t = existing(board, task)?;
    match t.status {
        TaskStatus::Done | TaskStatus::Review => {
            return Err(Refusal::AlreadyDone { task: task.clone() }.into())
        }
        TaskStatus::Cancelled => return Err(Refusal::Cancelled { task: task.clone() }.into()),
        TaskStatus::Open | TaskStatus::Claimed => {}
    }
    let holder = check_holder(t, event, forced)?;
    if let Some(c) = commit {
        check_commit_id("done", c)?;
    }
    if let Some(b) = branch {
        check_text("branch", b)?;
    }
    if let Some(n) = note {
        check_text("note", n)?;
    }
    let mut t = t.clone();
    // With a review step, done means "ready for review"; dependents wait for the
    // approval.
    // A resolve task's review is the integrator's own checks of the resolution
    // (`integrate --continue`): it is done at once.
    t.status = if board.review_role().is_some() && t.resolves.is_none() {
        TaskStatus::Review
    } else {
        TaskStatus::Done
    };
    t.done_at = Some(event.ts);
    t.claimed_by = holder;
    t.reviewer = None;
    t.rework_by = None;
    t.reopened_at = None;
    t.commit.clone_from(commit);
    t.branch.clone_from(branch);
    t.note.clone_from(note);
    let mut changes = vec![];
    if let Some(path) = artifact {
        check_path("artifact path", path)?;
        t.artifact = Some(path.to_owned());
        let me = sender_instance(event)?;
        let mut list = board.artifacts.get(&me).cloned().unwrap_or_default();
        list.push(Artifact {
            role_id: me.role().to_owned(),
            instance_id: me.number(),
            path: path.to_owned(),
            task: Some(task.clone()),
        });
        changes.push(Change::Artifacts(me, list));
    }
    changes.push(Change::Task(t));
    Ok(changes)
}

/// A commit id as git prints it: 4 to 64 hex digits.
fn check_commit_id(what: &str, commit: &str) -> Result<(), RuleError> {
    if commit.len() < 4 || commit.len() > 64 || !commit.chars().all(|c| c.is_ascii_hexdigit()) {
        return invalid(format!(
            "{what} names {}, which is not a commit id",
            crate::text::quote(commit, 64)
        ));
    }
    Ok(())
}

/// `edit`: an open task changes in any field (deps without cycles); a claimed one
/// only by its holder adding paths.
fn apply_edit(board: &Board, event: &Event) -> Result<Vec<Change>, RuleError> {
    let EventKind::TaskEdit {
        task,
        title,
        body,
        paths,
        add_paths,
        deps,
        role,
        priority,
        resolves,
    } = &event.kind
    else {
        unreachable!("apply dispatches edits here");
    };
    let t = existing(board, task)?;
    if resolves.is_some() {
        return invalid(format!(
            "an edit cannot set what {task} resolves; only `mara integrate` does, when it adds a resolve task"
        ));
    }
    if role.is_some() && t.resolves.is_some() {
        return invalid(format!(
            "{task} is a resolve task: its role is the run's resolver role and is not edited"
        ));
    }
    let only_adds = title.is_none()
        && body.is_none()
        && paths.is_none()
        && deps.is_none()
        && role.is_none()
        && priority.is_none();
    if only_adds && add_paths.is_empty() {
        return invalid(format!("the edit of {task} changes nothing"));
    }
    match t.status {
        TaskStatus::Open => {}
        TaskStatus::Claimed if only_adds => {
            if t.claimed_by.as_ref().map(ToString::to_string).as_deref() != Some(&event.sender) {
                return Err(Refusal::NotHolder {
                    task: task.clone(),
                    holder: t.claimed_by.clone().expect("a claimed task has a holder"),
                    who: event.sender.clone(),
                }
                .into());
            }
        }
        status => {
            return Err(Refusal::NotOpen {
                task: task.clone(),
                status,
            }
            .into())
        }
    }
    let mut t = t.clone();
    if let Some(x) = title {
        check_text(&format!("title of {task}"), x)?;
        t.title.clone_from(x);
    }
    if let Some(x) = body {
        check_body(task, x)?;
        t.body = Some(x.clone());
    }
    if let Some(x) = paths {
        t.paths.clone_from(x);
    }
    for p in add_paths {
        if !t.paths.contains(p) {
            t.paths.push(p.clone());
        }
    }
    for p in paths.iter().flatten().chain(add_paths) {
        check_path(&format!("path glob of {task}"), p)?;
        crate::glob::check(&format!("path glob of {task}"), p).map_err(Invalid)?;
    }
    if let Some(x) = role {
        check_run_role(board, x)?;
        t.role = Some(x.clone());
    }
    if let Some(x) = priority {
        t.priority = *x;
    }
    if let Some(new) = deps {
        for d in new {
            if d == task {
                return invalid(format!("{task} depends on itself"));
            }
            if !board.tasks.contains_key(d) {
                return invalid(format!("{task} depends on {d}, which is not a task"));
            }
            check_not_cancelled(board, task, d)?;
        }
        if let Some(cycle) = reaches(board, new, task) {
            return invalid(format!("dependency cycle: {task} -> {cycle} -> {task}"));
        }
        t.deps.clone_from(new);
    }
    Ok(vec![Change::Task(t)])
}

/// A cancelled task is never done: depending on it would wait for ever.
fn check_not_cancelled(board: &Board, task: &TaskId, dep: &TaskId) -> Result<(), RuleError> {
    if board.tasks.get(dep).map(|d| d.status) == Some(TaskStatus::Cancelled) {
        return invalid(format!("{task} cannot depend on {dep}: {dep} is cancelled"));
    }
    Ok(())
}

/// The first of `from` whose deps lead (transitively) to `target`. Needs a full
/// board.
fn reaches<'a>(board: &Board, from: &'a [TaskId], target: &TaskId) -> Option<&'a TaskId> {
    from.iter().find(|start| {
        let mut seen = BTreeSet::new();
        let mut stack = vec![(*start).clone()];
        while let Some(id) = stack.pop() {
            if &id == target {
                return true;
            }
            if seen.insert(id.clone()) {
                if let Some(t) = board.tasks.get(&id) {
                    stack.extend(t.deps.iter().cloned());
                }
            }
        }
        false
    })
}

/// `cancel`: a task leaves the plan. Its unfinished dependents would wait for
/// ever, so they refuse it unless `drop_deps` takes it out of their deps. Needs a
/// full board.
fn apply_cancel(
    board: &Board,
    task: &TaskId,
    reason: Option<&str>,
    drop_deps: bool,
) -> Result<Vec<Change>, RuleError> {
    let t = existing(board, task)?;
    if let Some(r) = reason {
        check_text("reason", r)?;
    }
    if t.status.is_final() {
        return Err(match t.status {
            TaskStatus::Cancelled => Refusal::Cancelled { task: task.clone() },
            _ => Refusal::AlreadyDone { task: task.clone() },
        }
        .into());
    }
    let dependents: Vec<&Task> = board
        .ordered_tasks()
        .into_iter()
        .filter(|d| !d.status.is_final() && d.deps.contains(task))
        .collect();
    if !dependents.is_empty() && !drop_deps {
        return Err(Refusal::HasDependents {
            task: task.clone(),
            dependents: dependents.iter().map(|d| d.id.clone()).collect(),
        }
        .into());
    }
    let mut changes: Vec<Change> = dependents
        .into_iter()
        .map(|d| {
            let mut d = d.clone();
            d.deps.retain(|x| x != task);
            Change::Task(d)
        })
        .collect();
    let mut t = t.clone();
    t.status = TaskStatus::Cancelled;
    t.claimed_by = None;
    t.claimed_at = None;
    t.reviewer = None;
    changes.push(Change::Task(t));
    Ok(changes)
}

/// `review`: the review role's verdict on a task awaiting review. Approval makes
/// it done; changes reopen it, first for its previous holder.
fn apply_review(
    board: &Board,
    event: &Event,
    task: &TaskId,
    verdict: Verdict,
    note: Option<&str>,
) -> Result<Vec<Change>, RuleError> {
    let me = sender_instance(event)?;
    let Some(role) = board.review_role() else {
        return invalid("this run has no review step (coordination.review_role is not set)");
    };
    let t = existing(board, task)?;
    if t.status != TaskStatus::Review {
        return Err(Refusal::NotInReview {
            task: task.clone(),
            status: t.status,
        }
        .into());
    }
    if me.role() != role {
        return Err(Refusal::WrongRole {
            task: task.clone(),
            role: role.to_owned(),
            who: me,
        }
        .into());
    }
    if let Some(r) = t.reviewer.as_ref().filter(|r| **r != me) {
        return Err(Refusal::NotHolder {
            task: task.clone(),
            holder: r.clone(),
            who: me.to_string(),
        }
        .into());
    }
    if let Some(n) = note {
        check_text("review note", n)?;
    }
    if verdict == Verdict::Changes && note.is_none() {
        return invalid(format!(
            "say what to change in {task}: a review that sends it back needs a note"
        ));
    }
    let mut t = t.clone();
    t.reviewer = Some(me);
    match verdict {
        Verdict::Approve => t.status = TaskStatus::Done,
        Verdict::Changes => {
            t.status = TaskStatus::Open;
            t.sent_back += 1;
            t.rework_by = t.claimed_by.take();
            t.reopened_at = Some(event.ts);
            t.claimed_at = None;
            t.done_at = None;
        }
    }
    Ok(vec![Change::Task(t)])
}

fn check_body(task: &TaskId, body: &str) -> Result<(), RuleError> {
    if body.len() > MAX_BODY {
        return invalid(format!(
            "the body of {task} is longer than {MAX_BODY} bytes"
        ));
    }
    if body.contains('\0') {
        return invalid(format!("the body of {task} contains a NUL byte"));
    }
    Ok(())
}

/// A role name that is one of the run's roles, when the run names them.
fn check_run_role(board: &Board, role: &str) -> Result<(), RuleError> {
    check_role(role)?;
    if let Some(all) = board.config.as_ref().and_then(|c| c.roles.as_ref()) {
        if !all.iter().any(|r| r == role) {
            return invalid(format!(
                "role {role} is not one of the run's roles ({}); use one of them",
                all.join(", ")
            ));
        }
    }
    Ok(())
}

/// A role is a short lower-case word, as in instance ids.
fn check_role(role: &str) -> Result<(), RuleError> {
    format!("{role}#1")
        .parse::<InstanceId>()
        .map(|_| ())
        .map_err(|_| {
            Invalid(format!(
                "role {} is not a role name (a lower-case word like implementer)",
                crate::text::quote(role, 32)
            ))
            .into()
        })
}

/// `heartbeat`: nothing but the lease renewal every event of an instance makes.
fn apply_heartbeat(event: &Event) -> Result<Vec<Change>, RuleError> {
    sender_instance(event)?;
    Ok(vec![])
}

/// `instance`: a lifecycle status; only the instance's own event renews its lease.
fn apply_status(
    board: &Board,
    event: &Event,
    instance: &InstanceId,
    status: InstanceStatus,
    reason: &Option<String>,
    place: &Option<Place>,
) -> Vec<Change> {
    let mut i = board
        .instances
        .get(instance)
        .cloned()
        .unwrap_or_else(|| fresh_instance(instance, event));
    i.status = status;
    i.reason = reason.clone();
    if place.is_some() {
        i.place = place.clone();
    }
    if instance.to_string() == event.sender {
        i.last_seen = event.ts;
        i.last_seq = event.seq;
    }
    vec![Change::Instance(i)]
}

/// `artifact`: a file collected for an instance, recorded once.
fn apply_artifact(
    board: &Board,
    instance: &InstanceId,
    path: &str,
) -> Result<Vec<Change>, RuleError> {
    check_path("artifact path", path)?;
    let mut list = board.artifacts.get(instance).cloned().unwrap_or_default();
    if list.iter().any(|a| a.path == path) {
        return Ok(vec![]);
    }
    list.push(Artifact {
        role_id: instance.role().to_owned(),
        instance_id: instance.number(),
        path: path.to_owned(),
        task: None,
    });
    Ok(vec![Change::Artifacts(instance.clone(), list)])
}

/// `conflict`: a file the integrator could not merge; it changes no board file.
fn apply_conflict(
    [file, branch, kind, action]: [&String; 4],
    sides: [&Option<String>; 2],
) -> Result<Vec<Change>, RuleError> {
    check_text("conflicted file", file)?;
    check_text("branch", branch)?;
    check_text("conflict kind", kind)?;
    check_text("conflict action", action)?;
    for c in sides.into_iter().flatten() {
        check_commit_id("conflict", c)?;
    }
    Ok(vec![])
}

/// Most commits one `fenced` or files one `resolved` event lists.
const MAX_LISTED: usize = 1000;

/// `fenced`: commits the integrator left out; it changes no board file.
fn apply_fenced(texts: [&String; 4], commits: &[String]) -> Result<Vec<Change>, RuleError> {
    for (what, t) in [
        "fenced task",
        "fenced instance",
        "fenced claim",
        "fence reason",
    ]
    .iter()
    .zip(texts)
    {
        check_text(what, t)?;
    }
    if commits.is_empty() || commits.len() > MAX_LISTED {
        return invalid(format!(
            "fenced lists {} commits; 1 to {MAX_LISTED}",
            commits.len()
        ));
    }
    for c in commits {
        check_commit_id("fenced", c)?;
    }
    Ok(vec![])
}

/// `resolved`: a conflicts branch merged after its resolution; it changes no board
/// file.
fn apply_resolved(
    board: &Board,
    branch: &str,
    commit: &str,
    files: &[String],
    by: Option<&str>,
    task: Option<&TaskId>,
) -> Result<Vec<Change>, RuleError> {
    check_text("resolved branch", branch)?;
    check_commit_id("resolved", commit)?;
    if files.len() > MAX_LISTED {
        return invalid(format!("resolved lists more than {MAX_LISTED} files"));
    }
    for f in files {
        check_text("resolved file", f)?;
    }
    if let Some(b) = by {
        check_text("resolver", b)?;
    }
    if let Some(t) = task {
        existing(board, t)?;
    }
    Ok(vec![])
}

/// `progress`: an instance's commit, on a task of this board if it names one.
fn apply_progress(
    board: &Board,
    event: &Event,
    commit: &str,
    task: Option<&TaskId>,
) -> Result<Vec<Change>, RuleError> {
    sender_instance(event)?;
    check_commit_id("progress", commit)?;
    if let Some(t) = task {
        existing(board, t)?;
    }
    Ok(vec![])
}

/// A channel message: a free type that is not mara's own, and real text.
fn apply_message(
    board: &Board,
    event: &Event,
    kind: &str,
    text: &str,
    to: Option<&str>,
    task: Option<&TaskId>,
    reply_to: Option<u64>,
) -> Result<Vec<Change>, RuleError> {
    check_message_type(kind).map_err(Invalid)?;
    check_text("message", text)?;
    if let Some(to) = to {
        // An instance (`implementer#2`) or a role (`reviewer`).
        match to.parse::<InstanceId>() {
            Ok(i) => check_run_role(board, i.role())?,
            Err(_) => check_run_role(board, to)?,
        }
    }
    if let Some(t) = task {
        existing(board, t)?;
    }
    if let Some(r) = reply_to {
        // The log is gapless: every seq below this event's exists.
        if r >= event.seq {
            return invalid(format!(
                "--reply-to {r} names no message: the log's last seq is {}",
                event.seq.saturating_sub(1)
            ));
        }
    }
    Ok(vec![])
}

/// Every event of an instance is its heartbeat: it renews the instance's lease,
/// unless the event already wrote the instance's record.
fn renew_lease(board: &Board, event: &Event, changes: &mut Vec<Change>) {
    let Ok(me) = event.sender.parse::<InstanceId>() else {
        return;
    };
    if changes
        .iter()
        .any(|c| matches!(c, Change::Instance(i) if i.id == me))
    {
        return;
    }
    let mut i = board
        .instances
        .get(&me)
        .cloned()
        .unwrap_or_else(|| fresh_instance(&me, event));
    i.last_seen = event.ts;
    i.last_seq = event.seq;
    changes.push(Change::Instance(i));
}

fn fresh_instance(id: &InstanceId, event: &Event) -> RoleInstance {
    RoleInstance {
        id: id.clone(),
        role_id: id.role().to_owned(),
        instance_id: id.number(),
        status: InstanceStatus::Running,
        last_seen: event.ts,
        last_seq: event.seq,
        reason: None,
        place: None,
    }
}

/// A message type must be a short lower-case word and not one of [`reserved_types`].
pub fn check_message_type(kind: &str) -> Result<(), String> {
    let ok = !kind.is_empty()
        && kind.len() <= 32
        && kind.starts_with(|c: char| c.is_ascii_lowercase())
        && kind
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_' || c == '-');
    if !ok {
        return Err(format!(
            "message type {} is not a lower-case word (like decision, question, answer, note)",
            crate::text::quote(kind, 32)
        ));
    }
    if reserved_types().contains(&kind) {
        return Err(format!(
            "message type {kind:?} is reserved for mara's own events; use decision, question, answer or note"
        ));
    }
    Ok(())
}

/// Tasks whose ids were named but are not on the board, for clear errors.
pub fn unknown_tasks<'a>(board: &Board, ids: impl IntoIterator<Item = &'a TaskId>) -> Vec<TaskId> {
    let set: BTreeSet<&TaskId> = ids.into_iter().collect();
    set.into_iter()
        .filter(|id| !board.tasks.contains_key(*id))
        .cloned()
        .collect()
}

#[cfg(test)]
mod tests;
