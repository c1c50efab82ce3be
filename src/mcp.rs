//! `mara mcp`: a Model Context Protocol server on stdio, so coding agents reach the
//! board as tools.
//!
//! A small implementation over serde_json rather than an MCP crate: the stdio
//! transport is newline-delimited JSON-RPC 2.0 and mara needs four methods
//! (`initialize`, `ping`, `tools/list`, `tools/call`), so a crate would add an async
//! runtime and a large dependency tree for a hundred lines of protocol.
//!
//! Every tool runs the same command function as the CLI, so results are the CLI's:
//! the text as `content`, the `--json` value as `structuredContent`. A refusal or
//! an error is a tool result with `isError: true` and the CLI's one-line message
//! (naming the holder of a refused claim), never a protocol error or a crash.
//!
//! Each tool is one entry of [`table`]: name, description, input schema and the
//! handler, which receives its arguments as a struct serde read with
//! `deny_unknown_fields`. The schema is written next to the handler rather than
//! derived (that would take schemars and its derive for seven flat objects); a unit
//! test checks every schema against its struct's fields, so the two cannot drift.
//!
//! Whatever a client sends, the server answers and keeps serving (issue 13, item 9):
//! * a line that is not JSON, or holds bytes that are not UTF-8 anywhere: Parse
//!   error (-32700), id null; nothing is replaced or guessed;
//! * JSON that is not a request object (`[]`, `42`, `null`, `"x"`), a batch (MCP
//!   removed JSON-RPC batching in 2025-06-18), `jsonrpc` other than `"2.0"`, a
//!   missing or non-string `method`, an `id` that is not a string or an integer
//!   (MCP allows no null id), `params` that are not an object: Invalid Request
//!   (-32600), with the id when it is a valid one, else null;
//! * a line longer than [`MAX_LINE`] (1 MiB): Invalid Request, id null. The rest of
//!   the line is read in the input buffer's chunks and dropped, so memory stays
//!   bounded however long the line;
//! * notifications (a valid request without id) and responses (the server sends no
//!   requests, so nothing waits for one) are never answered.

use std::io::{self, BufRead};

use anyhow::{anyhow, bail, Result};
use serde::de::DeserializeOwned;
use serde::Deserialize;
use serde_json::{json, Value};
use serde_path_to_error::Segment;

use crate::commands;
use crate::context::Ctx;
use crate::error::{CommandError, ExitKind};
use crate::output::{self, Report};

/// The protocol revision this server speaks; a client asking for another gets this.
const PROTOCOL: &str = "2025-06-18";

/// The longest line the server reads, in bytes (without the newline). A longer one
/// is refused with Invalid Request and skipped without being held in memory.
pub const MAX_LINE: usize = 1 << 20;

const PARSE_ERROR: i64 = -32700;
const INVALID_REQUEST: i64 = -32600;
const METHOD_NOT_FOUND: i64 = -32601;
const INVALID_PARAMS: i64 = -32602;

/// A JSON-RPC error response.
fn error_reply(id: Value, code: i64, message: impl Into<String>) -> Value {
    json!({"jsonrpc": "2.0", "id": id, "error": {"code": code, "message": message.into()}})
}

/// The type of a tool argument, as its JSON schema names it.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Kind {
    String,
    Boolean,
    Integer,
    /// A list of strings (task ids, path globs).
    Strings,
}

impl Kind {
    fn schema_type(self) -> &'static str {
        match self {
            Kind::String => "string",
            Kind::Boolean => "boolean",
            Kind::Integer => "integer",
            Kind::Strings => "array",
        }
    }

    /// What a value of this type is, for the message naming a wrong one.
    fn expected(self) -> &'static str {
        match self {
            Kind::String => "a string",
            Kind::Boolean => "true or false",
            Kind::Integer => "an integer",
            Kind::Strings => "a list of strings",
        }
    }
}

/// One property of a tool's input schema.
#[derive(Clone, Copy, Debug)]
struct Prop {
    name: &'static str,
    kind: Kind,
    description: Option<&'static str>,
    required: bool,
}

impl Prop {
    /// An optional string argument.
    const fn string(name: &'static str) -> Prop {
        Prop {
            name,
            kind: Kind::String,
            description: None,
            required: false,
        }
    }

    /// An optional boolean argument (absent means false).
    const fn boolean(name: &'static str) -> Prop {
        Prop {
            kind: Kind::Boolean,
            ..Prop::string(name)
        }
    }

    /// An optional integer argument.
    const fn integer(name: &'static str) -> Prop {
        Prop {
            kind: Kind::Integer,
            ..Prop::string(name)
        }
    }

    /// An optional list of strings.
    const fn strings(name: &'static str) -> Prop {
        Prop {
            kind: Kind::Strings,
            ..Prop::string(name)
        }
    }

    const fn about(self, description: &'static str) -> Prop {
        Prop {
            description: Some(description),
            ..self
        }
    }

    const fn required(self) -> Prop {
        Prop {
            required: true,
            ..self
        }
    }
}

/// The task a tool acts on.
const TASK: Prop = Prop::string("task").about("task id, e.g. T1");

/// A tool's handler: reads the arguments into its struct and runs the command.
type Handler = Box<dyn Fn(&Ctx, &Value) -> Result<Report>>;

/// One tool: what `tools/list` shows of it and what `tools/call` runs, together,
/// so that a tool is added in one place (issue 17).
struct Tool {
    name: &'static str,
    description: &'static str,
    /// The input schema's properties, in the order `tools/list` shows them. A
    /// unit test checks them against the argument struct's fields.
    props: Vec<Prop>,
    /// Reads the arguments into the tool's struct and runs the command it mirrors.
    call: Handler,
    /// Only reads the arguments (for the tests of the schema against the struct).
    #[cfg(test)]
    check: tests::Check,
    /// The argument struct's fields, as serde knows them.
    #[cfg(test)]
    fields: &'static [&'static str],
}

impl Tool {
    /// A tool whose arguments are read into `A` and handed to `run`.
    fn new<A: DeserializeOwned>(
        name: &'static str,
        description: &'static str,
        props: Vec<Prop>,
        run: impl Fn(&Ctx, A) -> Result<Report> + 'static,
    ) -> Tool {
        let schema = props.clone();
        #[cfg(test)]
        let check_schema = props.clone();
        Tool {
            name,
            description,
            props,
            call: Box::new(move |ctx, args| run(ctx, read_args(name, &schema, args)?)),
            #[cfg(test)]
            check: Box::new(move |args| read_args::<A>(name, &check_schema, args).map(drop)),
            #[cfg(test)]
            fields: tests::fields_of::<A>(),
        }
    }

    /// The tool as `tools/list` shows it, with the JSON schema of its input.
    fn listing(&self) -> Value {
        let properties: serde_json::Map<String, Value> = self
            .props
            .iter()
            .map(|p| {
                let mut prop = json!({"type": p.kind.schema_type()});
                if p.kind == Kind::Strings {
                    prop["items"] = json!({"type": "string"});
                }
                if let Some(d) = p.description {
                    prop["description"] = json!(d);
                }
                (p.name.to_owned(), prop)
            })
            .collect();
        let required: Vec<&str> = self
            .props
            .iter()
            .filter(|p| p.required)
            .map(|p| p.name)
            .collect();
        json!({
            "name": self.name,
            "description": self.description,
            "inputSchema": {
                "type": "object",
                "properties": properties,
                "required": required,
                "additionalProperties": false,
            },
        })
    }
}

// The arguments of each tool. Fields are strings where the command parses them
// (a task id), so its message is the CLI's; `null` counts as absent, as it did.

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct NoArgs {}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct TaskArgs {
    task: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ReleaseArgs {
    task: String,
    reason: Option<String>,
    force: Option<bool>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct DoneArgs {
    task: String,
    artifact: Option<String>,
    note: Option<String>,
    force: Option<bool>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PostArgs {
    #[serde(rename = "type")]
    kind: String,
    text: String,
    to: Option<String>,
    task: Option<String>,
    reply_to: Option<i64>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ClaimNextArgs {
    wait: Option<i64>,
    merge_deps: Option<bool>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct InboxArgs {
    wait: Option<i64>,
    peek: Option<bool>,
}

/// The longest a tool call may wait (`claim_next`, `inbox`): the server answers one
/// call at a time, so a wait holds up the agent's other calls.
const MAX_TOOL_WAIT_SEC: i64 = 600;

/// A tool's `wait` in seconds, checked against [`MAX_TOOL_WAIT_SEC`].
fn wait_seconds(wait: Option<i64>) -> Result<Option<u64>> {
    match wait {
        None => Ok(None),
        Some(w) if (0..=MAX_TOOL_WAIT_SEC).contains(&w) => Ok(Some(w.unsigned_abs())),
        Some(w) => bail!("wait is {w}; give 0 to {MAX_TOOL_WAIT_SEC} seconds"),
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct LogArgs {
    #[serde(rename = "type")]
    kind: Option<String>,
    task: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ReviewArgs {
    task: String,
    approve: Option<bool>,
    changes: Option<String>,
    note: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct AddArgs {
    task: String,
    title: String,
    body: Option<String>,
    role: Option<String>,
    priority: Option<i64>,
    deps: Option<Vec<String>>,
    paths: Option<Vec<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct EditArgs {
    task: String,
    title: Option<String>,
    body: Option<String>,
    role: Option<String>,
    priority: Option<i64>,
    deps: Option<Vec<String>>,
    paths: Option<Vec<String>>,
    add_paths: Option<Vec<String>>,
}

/// Task ids as the CLI parses them.
fn task_ids(ids: Option<Vec<String>>) -> Result<Option<Vec<crate::ids::TaskId>>> {
    ids.map(|v| v.iter().map(|t| t.parse()).collect())
        .transpose()
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CancelArgs {
    task: String,
    reason: Option<String>,
    drop_deps: Option<bool>,
}

/// The tools, each running the command it mirrors.
fn table() -> Vec<Tool> {
    use commands::{board, claim, done, inbox, log, merge_deps, post, release, review, show, task};
    vec![
        Tool::new(
            "board",
            "The task board: every task with status, holder and deps ({run, version, tasks}; stall when the stall guard flags the run, a task handed off too often or an unanswered question).",
            vec![],
            |ctx, NoArgs {}| board::run(ctx, board::BoardArgs { fetch: false }),
        ),
        Tool::new(
            "claim",
            "Claim one task. Refused (isError) when another instance holds it (also when its lease ran out but it is still trying to write) or its deps are not done; the message names the holder.",
            vec![TASK.required()],
            |ctx, a: TaskArgs| {
                let args = claim::ClaimArgs {
                    id: Some(a.task.parse()?),
                    next: false,
                    wait: None,
                    merge_deps: false,
                };
                claim::run(ctx, args)
            },
        ),
        Tool::new(
            "claim_next",
            "Claim the ready task of your role with the highest priority; the result says where each dependency's work is (commit, branch), and passed_over lists tasks whose holder's lease ran out but who is still trying to write. Refused (isError) when nothing is ready; with wait, waits up to that many seconds for a task first. \"nothing left\" means stop: no task can become ready for your role any more.",
            vec![
                Prop::integer("wait").about("seconds to wait for a task when none is ready (at most 600)"),
                Prop::boolean("merge_deps").about("then merge the dependencies' work into your branch"),
            ],
            |ctx, a: ClaimNextArgs| {
                let args = claim::ClaimArgs {
                    id: None,
                    next: true,
                    wait: wait_seconds(a.wait)?,
                    merge_deps: a.merge_deps.unwrap_or(false),
                };
                claim::run(ctx, args)
            },
        ),
        Tool::new(
            "merge_deps",
            "Merge the work (recorded commits) of the done dependencies of the tasks you hold into your worktree's branch: a fast-forward, or a merge commit; a conflict leaves the worktree as it was and names the files.",
            vec![],
            |ctx, NoArgs {}| merge_deps::run(ctx, merge_deps::MergeDepsArgs {}),
        ),
        Tool::new(
            "inbox",
            "Messages to you, your role or everyone since you last read (then marked read); with wait, waits up to that many seconds for one.",
            vec![
                Prop::integer("wait").about("seconds to wait for a message when none is new (at most 600)"),
                Prop::boolean("peek").about("leave the messages unread"),
            ],
            |ctx, a: InboxArgs| {
                let args = inbox::InboxArgs {
                    wait: wait_seconds(a.wait)?,
                    full: true,
                    peek: a.peek.unwrap_or(false),
                };
                inbox::run(ctx, args)
            },
        ),
        Tool::new(
            "release",
            "Give a task you hold back to the board.",
            vec![
                TASK.required(),
                Prop::string("reason").about("why, for the log"),
                Prop::boolean("force").about("release another instance's task (logged)"),
            ],
            |ctx, a: ReleaseArgs| {
                let args = release::ReleaseArgs {
                    id: a.task.parse()?,
                    force: a.force.unwrap_or(false),
                    reason: a.reason,
                };
                release::run(ctx, args)
            },
        ),
        Tool::new(
            "done",
            "Complete a task you hold, optionally naming the artifact file you delivered (a path inside your worktree).",
            vec![
                TASK.required(),
                Prop::string("artifact")
                    .about("path of the delivered file, e.g. implementer_1.md (committed)"),
                Prop::string("note").about("what was done, for whoever builds on it"),
                Prop::boolean("force").about("complete another instance's task (logged)"),
            ],
            |ctx, a: DoneArgs| {
                let args = done::DoneArgs {
                    id: a.task.parse()?,
                    artifact: a.artifact.map(Into::into),
                    note: a.note,
                    force: a.force.unwrap_or(false),
                };
                done::run(ctx, args)
            },
        ),
        Tool::new(
            "post",
            "Write to the coordination channel: a decision, question, answer or note.",
            vec![
                Prop::string("type")
                    .about("decision, question, answer, note, or another lower-case word")
                    .required(),
                Prop::string("text").required(),
                Prop::string("to").about("an instance (implementer#2) or a role (reviewer); everyone if left out"),
                Prop::string("task").about("the task it is about, e.g. T7"),
                Prop::integer("reply_to").about("the seq of the message it answers"),
            ],
            |ctx, a: PostArgs| {
                let reply_to = a
                    .reply_to
                    .map(|r| u64::try_from(r).map_err(|_| anyhow::anyhow!("reply_to is {r}; give a seq")))
                    .transpose()?;
                let args = post::PostArgs {
                    kind: a.kind,
                    text: a.text,
                    to: a.to,
                    task: a.task.map(|t| t.parse()).transpose()?,
                    reply_to,
                    full: true,
                };
                post::run(ctx, args)
            },
        ),
        Tool::new(
            "log",
            "The coordination log, oldest first, optionally only one type or one task.",
            vec![
                Prop::string("type")
                    .about("only events of this type (claim, done, decision, ...)"),
                TASK,
            ],
            |ctx, a: LogArgs| {
                let args = log::LogArgs {
                    kind: a.kind,
                    task: a.task.map(|t| t.parse()).transpose()?,
                    fetch: false,
                    quiet_commits: true,
                    since: None,
                    follow: false,
                    wait: None,
                    full: true,
                };
                log::run(ctx, args)
            },
        ),
        Tool::new(
            "show",
            "Everything about one task before you work on it: body, role, paths, holder and lease, deps with their commits, branches and notes, reviews, its thread and the commits naming it.",
            vec![TASK.required()],
            |ctx, a: TaskArgs| {
                let args = show::ShowArgs {
                    id: a.task.parse()?,
                    fetch: false,
                };
                show::run(ctx, args)
            },
        ),
        Tool::new(
            "review",
            "A reviewer's verdict on a done task: approve it, or send it back with what to change (it reopens for its implementer).",
            vec![
                TASK.required(),
                Prop::boolean("approve").about("approve the task"),
                Prop::string("changes").about("what to change; sends the task back"),
                Prop::string("note").about("a note with an approval"),
            ],
            |ctx, a: ReviewArgs| {
                if a.approve.unwrap_or(false) == a.changes.is_some() {
                    bail!("give either approve: true or changes");
                }
                let args = review::ReviewArgs {
                    id: a.task.parse()?,
                    approve: a.approve.unwrap_or(false),
                    changes: a.changes,
                    note: a.note,
                };
                review::run(ctx, args)
            },
        ),
        Tool::new(
            "task_add",
            "Add a task: its title, and optionally a body (what to do, how to tell it is done), the role that may claim it, a priority, deps and the paths it reserves.",
            vec![
                TASK.required(),
                Prop::string("title").required(),
                Prop::string("body").about("markdown: what to do and how to tell it is done"),
                Prop::string("role").about("only instances of this role may claim it"),
                Prop::integer("priority").about("higher is taken first by claim_next"),
                Prop::strings("deps").about("tasks that must be done first"),
                Prop::strings("paths").about("path globs the task reserves"),
            ],
            |ctx, a: AddArgs| {
                let args = task::AddArgs {
                    id: a.task.parse()?,
                    title: a.title,
                    deps: task_ids(a.deps)?.unwrap_or_default(),
                    paths: a.paths.unwrap_or_default(),
                    body: task::BodyArgs {
                        body_file: None,
                        body: a.body,
                    },
                    who: task::WhoArgs {
                        role: a.role,
                        priority: a.priority,
                    },
                };
                task::run(ctx, task::TaskArgs { cmd: task::TaskCmd::Add(args) })
            },
        ),
        Tool::new(
            "task_edit",
            "Change an open task (any field; deps and paths are replaced), or add paths to the task you hold (add_paths, the only change allowed on a claimed task).",
            vec![
                TASK.required(),
                Prop::string("title"),
                Prop::string("body"),
                Prop::string("role"),
                Prop::integer("priority"),
                Prop::strings("deps").about("the new deps ([] removes them all)"),
                Prop::strings("paths").about("the new path globs"),
                Prop::strings("add_paths").about("path globs to add"),
            ],
            |ctx, a: EditArgs| {
                let deps = task_ids(a.deps)?;
                let args = task::EditArgs {
                    id: a.task.parse()?,
                    title: a.title,
                    body: task::BodyArgs {
                        body_file: None,
                        body: a.body,
                    },
                    paths: a.paths.unwrap_or_default(),
                    add_paths: a.add_paths.unwrap_or_default(),
                    no_deps: deps.as_ref().is_some_and(Vec::is_empty),
                    deps: deps.filter(|d| !d.is_empty()),
                    who: task::WhoArgs {
                        role: a.role,
                        priority: a.priority,
                    },
                };
                task::run(ctx, task::TaskArgs { cmd: task::TaskCmd::Edit(args) })
            },
        ),
        Tool::new(
            "task_cancel",
            "Take a task off the plan. Refused while other tasks depend on it, unless drop_deps removes it from their deps (logged).",
            vec![
                TASK.required(),
                Prop::string("reason").about("why, for the log"),
                Prop::boolean("drop_deps").about("also take it out of its dependents' deps"),
            ],
            |ctx, a: CancelArgs| {
                let args = task::TaskArgs {
                    cmd: task::TaskCmd::Cancel(task::CancelArgs {
                        id: a.task.parse()?,
                        reason: a.reason,
                        drop_deps: a.drop_deps.unwrap_or(false),
                    }),
                };
                task::run(ctx, args)
            },
        ),
    ]
}

/// The tools, with JSON schemas for their input.
pub fn tools() -> Value {
    table().iter().map(Tool::listing).collect()
}

/// Reads the arguments of tool `name` into its struct `A`. serde checks them
/// (`deny_unknown_fields`, types, required fields); the message names the
/// argument as a client reads it, with the type from the tool's schema.
fn read_args<A: DeserializeOwned>(name: &str, props: &[Prop], args: &Value) -> Result<A> {
    let none = json!({});
    let args = match args {
        Value::Null => &none,
        Value::Object(_) => args,
        _ => bail!("the arguments of {name} must be an object"),
    };
    serde_path_to_error::deserialize(args).map_err(|e| {
        let at = match e.path().iter().next() {
            Some(Segment::Map { key }) => Some(key.as_str()),
            _ => None,
        };
        let prop = |k: &str| props.iter().find(|p| p.name == k);
        match at {
            // A key that is no field of `A`.
            Some(k) if prop(k).is_none() => anyhow!("tool {name} has no argument {k:?}"),
            // Optional fields take null as absent, so a null here is a required one.
            Some(k) if args[k].is_null() => anyhow!("argument {k} is required"),
            Some(k) => anyhow!(
                "argument {k} must be {}",
                prop(k).expect("matched above").kind.expected()
            ),
            // At the top: a required field is missing.
            None => match props
                .iter()
                .find(|p| p.required && args.get(p.name).is_none())
            {
                Some(p) => anyhow!("argument {} is required", p.name),
                None => anyhow!("the arguments of {name}: {}", e.inner()),
            },
        }
    })
}

/// The `tools/call` result: the CLI's output, or its error as a tool error.
fn tool_result(outcome: Result<Report>) -> Value {
    match outcome {
        Ok(r) => json!({
            "content": [{"type": "text", "text": output::scrub(&r.text)}],
            "structuredContent": if r.json.is_object() { r.json } else { json!({"items": r.json}) },
            "isError": false,
        }),
        Err(e) => {
            // The same words and kind as the CLI's error and hint lines.
            let e = CommandError::from(e);
            let text = match e.hint() {
                Some(h) => format!("{}\nhint: {h}", e.message()),
                None => e.message(),
            };
            let refused = matches!(e.kind(), ExitKind::Refused | ExitKind::NothingLeft);
            json!({
                "content": [{"type": "text", "text": output::scrub(&text)}],
                "structuredContent": {"error": output::scrub(&text), "refused": refused},
                "isError": true,
            })
        }
    }
}

/// Answers one JSON-RPC message; `None` for notifications and responses.
pub fn handle(ctx: &Ctx, msg: &Value) -> Option<Value> {
    let Some(obj) = msg.as_object() else {
        let what = if msg.is_array() {
            "a batch (a JSON array) is not supported: MCP removed JSON-RPC batching in 2025-06-18; send one request per line"
        } else {
            "a request is a JSON object"
        };
        return Some(error_reply(Value::Null, INVALID_REQUEST, what));
    };
    let id = obj.get("id");
    // Errors carry the id only when it is one MCP allows: a string or an integer.
    let valid_id = id.filter(|v| v.is_string() || v.is_i64() || v.is_u64());
    let invalid = |why: &str| {
        Some(error_reply(
            valid_id.cloned().unwrap_or(Value::Null),
            INVALID_REQUEST,
            format!("invalid request: {why}"),
        ))
    };
    if obj.get("jsonrpc").and_then(Value::as_str) != Some("2.0") {
        return invalid("\"jsonrpc\" must be \"2.0\"");
    }
    let Some(method) = obj.get("method") else {
        // A response: this server sends no requests, so nothing waits for it, and a
        // response is never answered.
        if valid_id.is_some() && (obj.contains_key("result") != obj.contains_key("error")) {
            return None;
        }
        return invalid("no \"method\"");
    };
    let Some(method) = method.as_str() else {
        return invalid("\"method\" must be a string");
    };
    if id.is_some() && valid_id.is_none() {
        return invalid("\"id\" must be a string or an integer (MCP allows no null id)");
    }
    let params = match obj.get("params") {
        None => Value::Null,
        Some(p @ Value::Object(_)) => p.clone(),
        Some(_) => return invalid("\"params\" must be an object"),
    };
    // Notifications (no id) get no answer.
    let id = valid_id?.clone();
    let error = |code: i64, message: String| Some(error_reply(id.clone(), code, message));
    let result = match method {
        "initialize" => json!({
            "protocolVersion": PROTOCOL,
            "capabilities": {"tools": {"listChanged": false}},
            "serverInfo": {"name": "mara", "version": env!("CARGO_PKG_VERSION")},
            "instructions": "Tools of the mara task board of this git repository. Claim a task before working on it (claim or claim_next), post decisions, and mark it done with your artifact. Your identity is MARA_INSTANCE.",
        }),
        "ping" => json!({}),
        "tools/list" => json!({"tools": tools()}),
        "tools/call" => {
            let Some(name) = params.get("name").and_then(Value::as_str) else {
                return error(INVALID_PARAMS, "tools/call needs params.name".into());
            };
            let args = params.get("arguments").cloned().unwrap_or(Value::Null);
            let tools = table();
            let Some(tool) = tools.iter().find(|t| t.name == name) else {
                return error(
                    INVALID_PARAMS,
                    format!("there is no tool {name:?}; see tools/list"),
                );
            };
            tool_result((tool.call)(ctx, &args))
        }
        other => {
            return error(
                METHOD_NOT_FOUND,
                format!("method {other:?} is not supported"),
            )
        }
    };
    Some(json!({"jsonrpc": "2.0", "id": id, "result": result}))
}

/// The answer to one line of input (without its newline); `None` when nothing is
/// to be answered.
fn answer(ctx: &Ctx, line: &[u8]) -> Option<Value> {
    // Checked over the whole line, not left to lossy replacement: a request is
    // taken as sent or not at all.
    let line = match std::str::from_utf8(line) {
        Ok(l) => l,
        Err(e) => {
            return Some(error_reply(
                Value::Null,
                PARSE_ERROR,
                format!(
                    "parse error: the line is not UTF-8 (invalid byte at offset {})",
                    e.valid_up_to()
                ),
            ))
        }
    };
    if line.trim().is_empty() {
        return None;
    }
    match serde_json::from_str::<Value>(line) {
        Ok(msg) => handle(ctx, &msg),
        Err(e) => Some(error_reply(
            Value::Null,
            PARSE_ERROR,
            format!("parse error: {e}"),
        )),
    }
}

/// What [`read_line`] read.
#[derive(Debug, PartialEq)]
enum Line {
    /// A line of at most `max` bytes, in the buffer.
    Read,
    /// A longer line, read to its end and dropped; the buffer holds nothing of it.
    TooLong,
}

/// Reads one line, without its newline, into `buf`; `None` at the end of input. A
/// line longer than `max` bytes is consumed chunk by chunk as the reader fills its
/// buffer, and never held: memory stays within `max` plus the reader's buffer.
fn read_line(input: &mut impl BufRead, buf: &mut Vec<u8>, max: usize) -> io::Result<Option<Line>> {
    buf.clear();
    let mut too_long = false;
    let mut started = false;
    loop {
        let chunk = match input.fill_buf() {
            Ok(c) => c,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        if chunk.is_empty() {
            // The end of input; a last line without a newline still counts.
            return Ok(started.then_some(if too_long { Line::TooLong } else { Line::Read }));
        }
        started = true;
        let newline = chunk.iter().position(|&b| b == b'\n');
        let end = newline.unwrap_or(chunk.len());
        if !too_long {
            if buf.len() + end > max {
                too_long = true;
                buf.clear();
            } else {
                buf.extend_from_slice(&chunk[..end]);
            }
        }
        input.consume(end + usize::from(newline.is_some()));
        if newline.is_some() {
            return Ok(Some(if too_long { Line::TooLong } else { Line::Read }));
        }
    }
}

/// Serves requests from stdin until it closes.
pub fn serve(ctx: &Ctx) -> Result<()> {
    let stdin = std::io::stdin();
    let mut input = stdin.lock();
    let mut buf = Vec::new();
    while let Some(line) = read_line(&mut input, &mut buf, MAX_LINE)? {
        let reply = match line {
            Line::Read => answer(ctx, &buf),
            Line::TooLong => Some(error_reply(
                Value::Null,
                INVALID_REQUEST,
                format!("invalid request: the line is longer than {MAX_LINE} bytes, the limit of mara mcp; it was skipped"),
            )),
        };
        if let Some(r) = reply {
            if output::json_line(&r).is_err() {
                break; // the client went away
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Reads a tool's arguments without running it.
    pub(super) type Check = Box<dyn Fn(&Value) -> Result<()>>;

    /// The fields of struct `A`, as serde's derive lists them: a deserializer that
    /// only records what `deserialize_struct` is given.
    pub(super) fn fields_of<A: DeserializeOwned>() -> &'static [&'static str] {
        use serde::de::{self, Visitor};
        use serde::forward_to_deserialize_any;

        struct Fields<'a>(&'a mut &'static [&'static str]);
        impl<'de> de::Deserializer<'de> for Fields<'_> {
            type Error = de::value::Error;
            fn deserialize_struct<V: Visitor<'de>>(
                self,
                _name: &'static str,
                fields: &'static [&'static str],
                _visitor: V,
            ) -> Result<V::Value, Self::Error> {
                *self.0 = fields;
                Err(de::Error::custom("only the fields were asked for"))
            }
            fn deserialize_any<V: Visitor<'de>>(self, _: V) -> Result<V::Value, Self::Error> {
                Err(de::Error::custom("not a struct"))
            }
            forward_to_deserialize_any! {
                bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string
                bytes byte_buf option unit unit_struct newtype_struct seq tuple
                tuple_struct map enum identifier ignored_any
            }
        }
        let mut fields: &'static [&'static str] = &[];
        let _ = A::deserialize(Fields(&mut fields));
        fields
    }

    /// A value of the schema type `kind`, and one of another type.
    fn sample(kind: Kind) -> (Value, Value) {
        match kind {
            Kind::String => (json!("T1"), json!(7)),
            Kind::Boolean => (json!(true), json!("yes")),
            Kind::Integer => (json!(2), json!("2")),
            Kind::Strings => (json!(["T1"]), json!("T1")),
        }
    }

    /// Every tool's schema says what its argument struct reads: the same
    /// properties, the same required ones, the same types, so the hand-written
    /// schemas cannot drift from the structs (issue 17).
    #[test]
    fn every_schema_matches_its_argument_struct() {
        let tools = table();
        for t in &tools {
            let props: Vec<&str> = t.props.iter().map(|p| p.name).collect();
            assert_eq!(props, t.fields, "the properties of {}", t.name);
            let all: serde_json::Map<String, Value> = t
                .props
                .iter()
                .map(|p| (p.name.to_owned(), sample(p.kind).0))
                .collect();
            (t.check)(&Value::Object(all.clone()))
                .unwrap_or_else(|e| panic!("{} with every argument: {e:#}", t.name));
            let required: serde_json::Map<String, Value> = all
                .iter()
                .filter(|(k, _)| t.props.iter().any(|p| p.name == *k && p.required))
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect();
            (t.check)(&Value::Object(required.clone()))
                .unwrap_or_else(|e| panic!("{} with the required arguments: {e:#}", t.name));
            for p in &t.props {
                let mut args = all.clone();
                args.remove(p.name);
                let without = (t.check)(&Value::Object(args.clone()));
                if p.required {
                    let e = without.expect_err(p.name).to_string();
                    assert_eq!(e, format!("argument {} is required", p.name));
                    args.insert(p.name.to_owned(), Value::Null);
                    let e = (t.check)(&Value::Object(args)).expect_err(p.name);
                    assert_eq!(e.to_string(), format!("argument {} is required", p.name));
                } else {
                    without.unwrap_or_else(|e| panic!("{} without {}: {e:#}", t.name, p.name));
                    args.insert(p.name.to_owned(), Value::Null);
                    (t.check)(&Value::Object(args))
                        .unwrap_or_else(|e| panic!("{} with {} null: {e:#}", t.name, p.name));
                }
                let mut args = all.clone();
                args.insert(p.name.to_owned(), sample(p.kind).1);
                let e = (t.check)(&Value::Object(args)).expect_err(p.name);
                assert_eq!(
                    e.to_string(),
                    format!("argument {} must be {}", p.name, p.kind.expected())
                );
            }
            let mut args = all.clone();
            // (Not `priority`, which task_add and task_edit now take.)
            args.insert("urgency".to_owned(), Value::Null);
            let e = (t.check)(&Value::Object(args)).expect_err("an unknown argument");
            assert_eq!(
                e.to_string(),
                format!("tool {} has no argument \"urgency\"", t.name)
            );
            for not_object in [json!([]), json!("T1"), json!(1)] {
                let e = (t.check)(&not_object).expect_err("arguments not an object");
                assert_eq!(
                    e.to_string(),
                    format!("the arguments of {} must be an object", t.name)
                );
            }
            if required.is_empty() {
                (t.check)(&Value::Null).expect("no arguments at all");
            }
        }
    }

    /// Every line of `input`, read with a limit of `max` and a reader buffer of
    /// `cap` bytes.
    fn lines(input: &[u8], max: usize, cap: usize) -> Vec<(Line, Vec<u8>)> {
        let mut r = io::BufReader::with_capacity(cap, input);
        let mut buf = vec![];
        let mut out = vec![];
        while let Some(l) = read_line(&mut r, &mut buf, max).expect("reading a slice") {
            assert!(buf.capacity() <= max.max(cap) * 2, "{}", buf.capacity());
            out.push((l, buf.clone()));
        }
        out
    }

    #[test]
    fn lines_past_the_limit_are_skipped_whatever_the_chunking() {
        for cap in [1, 2, 3, 5, 8, 64] {
            let got = lines(b"abcd\nabcde\n\nxyz", 4, cap);
            assert_eq!(
                got,
                [
                    (Line::Read, b"abcd".to_vec()),
                    (Line::TooLong, vec![]),
                    (Line::Read, vec![]),
                    (Line::Read, b"xyz".to_vec()),
                ],
                "buffer of {cap}"
            );
            assert_eq!(lines(b"abcdefgh", 4, cap), [(Line::TooLong, vec![])]);
            assert!(lines(b"", 4, cap).is_empty());
        }
    }
}
