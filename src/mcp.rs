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

use std::io::BufRead;

use anyhow::Result;
use serde_json::{json, Value};

use crate::board::Refusal;
use crate::commands;
use crate::context::Ctx;
use crate::output::{self, Report};

/// The protocol revision this server speaks; a client asking for another gets this.
const PROTOCOL: &str = "2025-06-18";

fn schema(props: Value, required: &[&str]) -> Value {
    json!({
        "type": "object",
        "properties": props,
        "required": required,
        "additionalProperties": false,
    })
}

/// The tools, with JSON schemas for their input.
pub fn tools() -> Value {
    let task = json!({"type": "string", "description": "task id, e.g. T1"});
    json!([
        {
            "name": "board",
            "description": "The task board: every task with status, holder and deps ({run, version, tasks}).",
            "inputSchema": schema(json!({}), &[]),
        },
        {
            "name": "claim",
            "description": "Claim one task. Refused (isError) when another instance holds it or its deps are not done; the message names the holder.",
            "inputSchema": schema(json!({"task": task}), &["task"]),
        },
        {
            "name": "claim_next",
            "description": "Claim the first ready task in board order. Refused (isError) when nothing is ready.",
            "inputSchema": schema(json!({}), &[]),
        },
        {
            "name": "release",
            "description": "Give a task you hold back to the board.",
            "inputSchema": schema(json!({
                "task": task,
                "reason": {"type": "string", "description": "why, for the log"},
                "force": {"type": "boolean", "description": "release another instance's task (logged)"},
            }), &["task"]),
        },
        {
            "name": "done",
            "description": "Complete a task you hold, optionally naming the artifact file you delivered (a path inside your worktree).",
            "inputSchema": schema(json!({
                "task": task,
                "artifact": {"type": "string", "description": "path of the delivered file, e.g. implementer_1.md"},
                "force": {"type": "boolean", "description": "complete another instance's task (logged)"},
            }), &["task"]),
        },
        {
            "name": "post",
            "description": "Write to the coordination channel: a decision, question, answer or note.",
            "inputSchema": schema(json!({
                "type": {"type": "string", "description": "decision, question, answer, note, or another lower-case word"},
                "text": {"type": "string"},
            }), &["type", "text"]),
        },
        {
            "name": "log",
            "description": "The coordination log, oldest first, optionally only one type or one task.",
            "inputSchema": schema(json!({
                "type": {"type": "string", "description": "only events of this type (claim, done, decision, ...)"},
                "task": task,
            }), &[]),
        },
    ])
}

fn str_arg(args: &Value, key: &str) -> Result<Option<String>> {
    match args.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(_) => anyhow::bail!("argument {key} must be a string"),
    }
}

fn need(args: &Value, key: &str) -> Result<String> {
    str_arg(args, key)?.ok_or_else(|| anyhow::anyhow!("argument {key} is required"))
}

fn bool_arg(args: &Value, key: &str) -> Result<bool> {
    match args.get(key) {
        None | Some(Value::Null) => Ok(false),
        Some(Value::Bool(b)) => Ok(*b),
        Some(_) => anyhow::bail!("argument {key} must be true or false"),
    }
}

/// Runs one tool through the command it mirrors.
fn call(ctx: &Ctx, name: &str, args: &Value) -> Result<Report> {
    let known: &[&str] = match name {
        "board" | "claim_next" => &[],
        "claim" => &["task"],
        "release" => &["task", "reason", "force"],
        "done" => &["task", "artifact", "force"],
        "post" => &["type", "text"],
        "log" => &["type", "task"],
        _ => anyhow::bail!("there is no tool {name:?}; see tools/list"),
    };
    if let Some(obj) = args.as_object() {
        if let Some(k) = obj.keys().find(|k| !known.contains(&k.as_str())) {
            anyhow::bail!("tool {name} has no argument {k:?}");
        }
    } else if !args.is_null() {
        anyhow::bail!("the arguments of {name} must be an object");
    }
    match name {
        "board" => commands::board::run(ctx, commands::board::BoardArgs { fetch: false }),
        "claim" => commands::claim::run(
            ctx,
            commands::claim::ClaimArgs {
                id: Some(need(args, "task")?.parse()?),
                next: false,
            },
        ),
        "claim_next" => commands::claim::run(
            ctx,
            commands::claim::ClaimArgs {
                id: None,
                next: true,
            },
        ),
        "release" => commands::release::run(
            ctx,
            commands::release::ReleaseArgs {
                id: need(args, "task")?.parse()?,
                force: bool_arg(args, "force")?,
                reason: str_arg(args, "reason")?,
            },
        ),
        "done" => commands::done::run(
            ctx,
            commands::done::DoneArgs {
                id: need(args, "task")?.parse()?,
                artifact: str_arg(args, "artifact")?.map(Into::into),
                force: bool_arg(args, "force")?,
            },
        ),
        "post" => commands::post::run(
            ctx,
            commands::post::PostArgs {
                kind: need(args, "type")?,
                text: need(args, "text")?,
            },
        ),
        "log" => commands::log::run(
            ctx,
            commands::log::LogArgs {
                kind: str_arg(args, "type")?,
                task: str_arg(args, "task")?.map(|t| t.parse()).transpose()?,
                fetch: false,
                quiet_commits: true,
            },
        ),
        _ => unreachable!("checked above"),
    }
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
            let (text, refused) = match e.downcast_ref::<Refusal>() {
                Some(r) => (
                    match r.hint() {
                        Some(h) => format!("{r}\nhint: {h}"),
                        None => r.to_string(),
                    },
                    true,
                ),
                None => (format!("{e:#}"), false),
            };
            json!({
                "content": [{"type": "text", "text": output::scrub(&text)}],
                "structuredContent": {"error": output::scrub(&text), "refused": refused},
                "isError": true,
            })
        }
    }
}

/// Answers one JSON-RPC message; `None` for notifications.
pub fn handle(ctx: &Ctx, msg: &Value) -> Option<Value> {
    let id = msg.get("id").cloned();
    let method = msg.get("method").and_then(Value::as_str);
    let error = |code: i64, message: String| {
        Some(
            json!({"jsonrpc": "2.0", "id": id.clone().unwrap_or(Value::Null), "error": {"code": code, "message": message}}),
        )
    };
    let Some(method) = method else {
        // A response from the client, or garbage; answer only what had an id.
        return id
            .as_ref()
            .and_then(|_| error(-32600, "not a request: no method".into()));
    };
    // Notifications (no id) get no answer.
    id.as_ref()?;
    let params = msg.get("params").cloned().unwrap_or(Value::Null);
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
                return error(-32602, "tools/call needs params.name".into());
            };
            let args = params.get("arguments").cloned().unwrap_or(Value::Null);
            if !tools()
                .as_array()
                .expect("tools() is a list")
                .iter()
                .any(|t| t["name"] == name)
            {
                return error(-32602, format!("there is no tool {name:?}; see tools/list"));
            }
            tool_result(call(ctx, name, &args))
        }
        other => return error(-32601, format!("method {other:?} is not supported")),
    };
    Some(json!({"jsonrpc": "2.0", "id": id, "result": result}))
}

/// Serves requests from stdin until it closes.
pub fn serve(ctx: &Ctx) -> Result<()> {
    let stdin = std::io::stdin();
    let mut input = stdin.lock();
    let mut buf = Vec::new();
    loop {
        buf.clear();
        if input.read_until(b'\n', &mut buf)? == 0 {
            break;
        }
        // Bytes that are not UTF-8 fail to parse below: a -32700, not an exit.
        let line = String::from_utf8_lossy(&buf);
        if line.trim().is_empty() {
            continue;
        }
        let reply = match serde_json::from_str::<Value>(&line) {
            Ok(Value::Array(batch)) => {
                let answers: Vec<Value> = batch.iter().filter_map(|m| handle(ctx, m)).collect();
                (!answers.is_empty()).then_some(Value::Array(answers))
            }
            Ok(msg) => handle(ctx, &msg),
            Err(e) => Some(
                json!({"jsonrpc": "2.0", "id": null, "error": {"code": -32700, "message": format!("parse error: {e}")}}),
            ),
        };
        if let Some(r) = reply {
            if output::json_line(&r).is_err() {
                break; // the client went away
            }
        }
    }
    Ok(())
}
