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

use anyhow::Result;
use serde_json::{json, Value};

use crate::board::Refusal;
use crate::commands;
use crate::context::Ctx;
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
                since: None,
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
            if !tools()
                .as_array()
                .expect("tools() is a list")
                .iter()
                .any(|t| t["name"] == name)
            {
                return error(
                    INVALID_PARAMS,
                    format!("there is no tool {name:?}; see tools/list"),
                );
            }
            tool_result(call(ctx, name, &args))
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
