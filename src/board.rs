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
}

impl RunConfig {
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
    Done,
}

impl fmt::Display for TaskStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            TaskStatus::Open => "open",
            TaskStatus::Claimed => "claimed",
            TaskStatus::Done => "done",
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
    /// Accepted so a seed board can be fed back as a plan; must be `open`.
    #[serde(default, skip_serializing)]
    pub status: Option<TaskStatus>,
    /// Accepted so a seed board can be fed back as a plan; must be null.
    #[serde(default, skip_serializing)]
    pub claimed_by: Option<Value>,
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
    /// Complete a task. `forced` names the holder when someone else completed it.
    Done {
        task: TaskId,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        artifact: Option<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        forced: Option<InstanceId>,
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
    },
    /// A commit made by an instance (recorded by the post-commit hook).
    Progress {
        commit: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        task: Option<TaskId>,
    },
    /// A channel message: `decision`, `question`, `answer`, `note`, or any other type
    /// that is not one of [`reserved_types`]. Not serde's: its tag is its `kind`.
    #[serde(skip)]
    Message {
        kind: String,
        text: String,
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
            EventKind::Heartbeat => "heartbeat",
            EventKind::Status { .. } => "instance",
            EventKind::Progress { .. } => "progress",
            EventKind::Artifact { .. } => "artifact",
            EventKind::Conflict { .. } => "conflict",
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
            | EventKind::Done { task, .. } => vec![task],
            EventKind::Progress {
                task: Some(task), ..
            } => vec![task],
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
        payload: Note<&'a str>,
    },
}

/// A message's payload.
#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Note<T> {
    note: T,
}

impl Event {
    /// The event as the seed's JSON-lines channel shows it.
    pub fn to_json(&self) -> Value {
        let kind = match &self.kind {
            EventKind::Message { kind, text } => StoredKind::Message {
                kind,
                payload: Note { note: text },
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
            EventKind::Message {
                text: Note::<String>::deserialize(raw.payload)?.note,
                kind: raw.kind,
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
            EventKind::Progress { commit, task } => {
                let short: String = commit.chars().take(10).collect();
                match task {
                    Some(t) => format!("progress {t} by {by}: commit {}", one_line(&short, 10)),
                    None => format!("progress by {by}: commit {}", one_line(&short, 10)),
                }
            }
            EventKind::Message { kind, text } => {
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
}

/// One file of the board tree written by an event.
#[derive(Clone, Debug, PartialEq)]
pub enum Change {
    Config(RunConfig),
    Task(Task),
    Instance(RoleInstance),
    Artifacts(InstanceId, Vec<Artifact>),
}

impl Change {
    /// The file's path in the board tree.
    pub fn path(&self) -> Vec<String> {
        match self {
            Change::Config(_) => vec!["config.json".to_owned()],
            Change::Task(t) => t.id.board_path().to_vec(),
            Change::Instance(i) => i.id.record_path().to_vec(),
            Change::Artifacts(id, _) => id.artifacts_path().to_vec(),
        }
    }

    /// The file's bytes: pretty JSON, so `git show` reads well.
    pub fn contents(&self) -> Vec<u8> {
        let mut v = match self {
            Change::Config(c) => serde_json::to_vec_pretty(c),
            Change::Task(t) => serde_json::to_vec_pretty(t),
            Change::Instance(i) => serde_json::to_vec_pretty(i),
            Change::Artifacts(_, a) => serde_json::to_vec_pretty(a),
        }
        .expect("board records always serialise: plain structs of strings and numbers");
        v.push(b'\n');
        v
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

    /// How many tasks are open, claimed and done. Needs a full board.
    pub fn counts(&self) -> Counts {
        let mut c = Counts::default();
        for t in self.tasks.values() {
            match t.status {
                TaskStatus::Open => c.open += 1,
                TaskStatus::Claimed => c.claimed += 1,
                TaskStatus::Done => c.done += 1,
            }
        }
        c
    }

    /// The seed's task board JSON: `{"run","version","tasks":[...]}`.
    pub fn to_json(&self) -> Value {
        json!({
            "run": self.config.as_ref().map(|c| c.run.as_str()),
            "version": self.seq,
            "tasks": self.ordered_tasks(),
        })
    }

    fn timeout(&self) -> chrono::TimeDelta {
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

/// The tasks of a board by status; shown as `2 open, 1 claimed, 3 done`, and in
/// JSON as `{"open","claimed","done"}`.
#[derive(Serialize, Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Counts {
    pub open: usize,
    pub claimed: usize,
    pub done: usize,
}

impl fmt::Display for Counts {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} open, {} claimed, {} done",
            self.open, self.claimed, self.done
        )
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
            Refusal::NothingReady { waiting, held } => {
                write!(
                    f,
                    "nothing ready: {waiting} task(s) wait for deps, {held} held by others"
                )
            }
        }
    }
}

impl std::error::Error for Refusal {}

impl Refusal {
    /// The next command to try, when there is one.
    pub fn hint(&self) -> Option<String> {
        match self {
            Refusal::Held { .. } | Refusal::Waiting { .. } | Refusal::AlreadyDone { .. } => {
                Some("take another with `mara claim --next`".into())
            }
            Refusal::NotClaimed { task } => Some(format!("claim it first: `mara claim {task}`")),
            Refusal::NotHolder { .. } => Some(
                "only the holder may do this; `--force` overrides and the log records who forced it"
                    .into(),
            ),
            Refusal::NothingReady { .. } => Some("see `mara board`".into()),
            Refusal::Conflicts { .. } => Some(
                "read the report (integrator.md), resolve on the conflicts branch, and run `mara integrate` again".into(),
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

/// The claim rule: exists, not done, not held by a live instance, deps all done.
pub fn check_claim(
    board: &Board,
    task: &TaskId,
    claimer: &InstanceId,
    now: Ts,
) -> Result<ClaimKind, RuleError> {
    let Some(t) = board.tasks.get(task) else {
        return invalid(format!("no task {task} on this board"));
    };
    match t.status {
        TaskStatus::Done => return Err(Refusal::AlreadyDone { task: task.clone() }.into()),
        TaskStatus::Claimed => {
            let holder = t
                .claimed_by
                .clone()
                .ok_or_else(|| Invalid(format!("{task} is claimed by nobody")))?;
            if &holder == claimer {
                return Ok(ClaimKind::AlreadyMine);
            }
            let expired = board
                .instances
                .get(&holder)
                .is_some_and(|h| now - h.last_seen > board.timeout());
            if !expired {
                return Err(Refusal::Held {
                    task: task.clone(),
                    holder,
                    claimed_at: t.claimed_at,
                    now,
                }
                .into());
            }
            return Ok(ClaimKind::Expired { previous: holder });
        }
        TaskStatus::Open => {}
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

/// The first task in board order that `claimer` could claim now. Needs a full board.
pub fn next_ready(board: &Board, claimer: &InstanceId, now: Ts) -> Result<TaskId, Refusal> {
    let (mut waiting, mut held) = (0, 0);
    for t in board.ordered_tasks() {
        match check_claim(board, &t.id, claimer, now) {
            Ok(ClaimKind::Fresh | ClaimKind::Expired { .. }) => return Ok(t.id.clone()),
            Err(RuleError::Refused(Refusal::Held { .. })) => held += 1,
            Err(RuleError::Refused(Refusal::Waiting { .. })) => waiting += 1,
            _ => {}
        }
    }
    Err(Refusal::NothingReady { waiting, held })
}

/// The ids an event needs loaded before [`apply`] can judge it: its tasks (and, once
/// those are loaded, their deps and holders; see [`needs_after`]).
pub fn needs(event: &EventKind) -> (Vec<TaskId>, Vec<InstanceId>) {
    let mut tasks: Vec<TaskId> = event.tasks().into_iter().cloned().collect();
    let mut instances = vec![];
    match event {
        EventKind::TaskAdd { task } => tasks.extend(task.deps.iter().cloned()),
        EventKind::Plan { tasks: ts } => {
            tasks.extend(ts.iter().flat_map(|t| t.deps.iter().cloned()));
        }
        EventKind::Reclaim { previous, .. } => instances.push(previous.clone()),
        EventKind::Status { instance, .. } => instances.push(instance.clone()),
        _ => {}
    }
    (tasks, instances)
}

/// The second round of loading: deps and holders of the tasks already loaded.
pub fn needs_after(event: &EventKind, board: &Board) -> (Vec<TaskId>, Vec<InstanceId>) {
    let mut tasks = vec![];
    let mut instances = vec![];
    for id in event.tasks() {
        if let Some(t) = board.tasks.get(id) {
            if matches!(event, EventKind::Claim { .. } | EventKind::Reclaim { .. }) {
                tasks.extend(t.deps.iter().cloned());
            }
            instances.extend(t.claimed_by.iter().cloned());
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
    Ok(())
}

fn check_new_task(t: &NewTask) -> Result<(), RuleError> {
    check_text(&format!("title of {}", t.id), &t.title)?;
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
        } => apply_done(board, event, task, artifact.as_deref(), forced)?,
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
            ..
        } => apply_conflict(file, branch, kind, action)?,
        EventKind::Progress { commit, task } => {
            apply_progress(board, event, commit, task.as_ref())?
        }
        EventKind::Message { kind, text } => apply_message(kind, text)?,
    };
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
    tasks
        .iter()
        .enumerate()
        .map(|(i, t)| {
            let pos = u32::try_from(i).map_err(|_| Invalid("plan too big".into()))?;
            Ok(Change::Task(new_task(t, event.seq, pos, event.ts)))
        })
        .collect()
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
    t.status = TaskStatus::Claimed;
    t.claimed_by = Some(me);
    t.claimed_at = Some(event.ts);
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
        TaskStatus::Done => return Err(Refusal::AlreadyDone { task: task.clone() }.into()),
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
) -> Result<Vec<Change>, RuleError> {
    let t = existing(board, task)?;
    if t.status == TaskStatus::Done {
        return Err(Refusal::AlreadyDone { task: task.clone() }.into());
    }
    let holder = check_holder(t, event, forced)?;
    let mut t = t.clone();
    t.status = TaskStatus::Done;
    t.done_at = Some(event.ts);
    t.claimed_by = holder;
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
    file: &str,
    branch: &str,
    kind: &str,
    action: &str,
) -> Result<Vec<Change>, RuleError> {
    check_text("conflicted file", file)?;
    check_text("branch", branch)?;
    check_text("conflict kind", kind)?;
    check_text("conflict action", action)?;
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
    if commit.len() < 4 || commit.len() > 64 || !commit.chars().all(|c| c.is_ascii_hexdigit()) {
        return invalid(format!(
            "progress names {commit:?}, which is not a commit id"
        ));
    }
    if let Some(t) = task {
        existing(board, t)?;
    }
    Ok(vec![])
}

/// A channel message: a free type that is not mara's own, and real text.
fn apply_message(kind: &str, text: &str) -> Result<Vec<Change>, RuleError> {
    check_message_type(kind).map_err(Invalid)?;
    check_text("message", text)?;
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
