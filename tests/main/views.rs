//! Tests of what agents and people look at: `mara mcp` and `mara report --html`.
//!
//! The MCP tests talk to real `mara mcp` processes over stdio pipes, newline-delimited
//! JSON-RPC 2.0 as an agent would, reading every reply with a timeout so a hung
//! server fails the test instead of blocking it. The report tests render real runs
//! and load the page in headless Chromium (`.ci/deps` installs it; a missing
//! Chromium is a failure, not a skip).

use std::collections::BTreeSet;
use std::ffi::OsString;
use std::io::{BufRead, BufReader, Write};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, ExitStatus, Stdio};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError};
use std::sync::{Arc, Barrier, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::common::{clean_env, held_by, newest_subject, TestRepo};

/// How long a reply of `mara mcp` may take before the test calls the server hung.
const REPLY_TIMEOUT: Duration = Duration::from_secs(20);

/// The line limit of `mara mcp` (README, "MCP"): 1 MiB.
const MAX_LINE: usize = 1 << 20;

/// How long one Chromium run may take before it is killed.
const CHROMIUM_TIMEOUT: Duration = Duration::from_secs(60);

/// The tools of `mara mcp`.
const TOOLS: [&str; 14] = [
    "board",
    "claim",
    "claim_next",
    "merge_deps",
    "inbox",
    "release",
    "done",
    "post",
    "log",
    "show",
    "review",
    "task_add",
    "task_edit",
    "task_cancel",
];

// ---------------------------------------------------------------------------
// An MCP client over the stdio of a real `mara mcp` process.
// ---------------------------------------------------------------------------

struct Mcp {
    who: String,
    child: Child,
    stdin: Option<ChildStdin>,
    /// stdout, one line per message, read by a thread.
    lines: Receiver<String>,
    /// Everything the server wrote to stderr so far.
    stderr: Arc<Mutex<String>>,
    next_id: u64,
}

impl Mcp {
    /// Starts `mara mcp` in the repository as `instance`.
    fn start(r: &TestRepo, instance: &str) -> Mcp {
        let mut cmd = r.mara_command(&["mcp"], &[("MARA_INSTANCE", instance)], None);
        cmd.stdin(Stdio::piped());
        let mut child = cmd.spawn().expect("spawning mara mcp");
        let stdout = child.stdout.take().expect("stdout is piped");
        let stderr = child.stderr.take().expect("stderr is piped");
        let (tx, lines) = mpsc::channel();
        thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let err_buf = Arc::new(Mutex::new(String::new()));
        let sink = Arc::clone(&err_buf);
        thread::spawn(move || {
            for line in BufReader::new(stderr).lines() {
                let Ok(line) = line else { break };
                let mut s = sink.lock().expect("stderr buffer");
                s.push_str(&line);
                s.push('\n');
            }
        });
        Mcp {
            who: instance.to_owned(),
            stdin: child.stdin.take(),
            child,
            lines,
            stderr: err_buf,
            next_id: 1,
        }
    }

    fn stderr(&self) -> String {
        self.stderr.lock().expect("stderr buffer").clone()
    }

    /// Writes raw bytes (a line must end with `\n`).
    fn send_bytes(&mut self, bytes: &[u8]) {
        let stdin = self.stdin.as_mut().expect("stdin is still open");
        stdin
            .write_all(bytes)
            .and_then(|()| stdin.flush())
            .unwrap_or_else(|e| {
                panic!(
                    "writing to mara mcp ({}) failed: {e}\nstderr:\n{}",
                    self.who,
                    self.stderr.lock().expect("stderr buffer")
                )
            });
    }

    /// Writes one message as one line.
    fn send(&mut self, msg: &Value) {
        self.send_bytes(format!("{msg}\n").as_bytes());
    }

    /// The next line the server writes, parsed; panics after [`REPLY_TIMEOUT`].
    #[track_caller]
    fn recv(&mut self, what: &str) -> Value {
        match self.lines.recv_timeout(REPLY_TIMEOUT) {
            Ok(line) => {
                let v: Value = serde_json::from_str(&line).unwrap_or_else(|e| {
                    panic!("mara mcp wrote a line that is not JSON ({e}): {line:?}")
                });
                assert_eq!(v["jsonrpc"], "2.0", "reply to {what} is JSON-RPC 2.0: {v}");
                v
            }
            Err(RecvTimeoutError::Timeout) => panic!(
                "mara mcp ({}) did not answer {what} within {REPLY_TIMEOUT:?} (hung?)\nstderr:\n{}",
                self.who,
                self.stderr()
            ),
            Err(RecvTimeoutError::Disconnected) => {
                let status = self.child.wait().ok();
                panic!(
                    "mara mcp ({}) closed stdout instead of answering {what}; exit {status:?}\nstderr:\n{}",
                    self.who,
                    self.stderr()
                )
            }
        }
    }

    /// The request `{"jsonrpc","id","method","params"}` with a fresh id.
    fn request_msg(&mut self, method: &str, params: Value) -> (u64, Value) {
        let id = self.next_id;
        self.next_id += 1;
        let mut msg = json!({"jsonrpc": "2.0", "id": id, "method": method});
        if !params.is_null() {
            msg["params"] = params;
        }
        (id, msg)
    }

    /// Sends a request and returns the whole reply, checking it carries the id.
    #[track_caller]
    fn request(&mut self, method: &str, params: Value) -> Value {
        let (id, msg) = self.request_msg(method, params);
        self.send(&msg);
        let reply = self.recv(method);
        assert_eq!(
            reply["id"], id,
            "the reply to {method} carries its id: {reply}"
        );
        reply
    }

    /// Sends a request and returns its `result`, panicking on a JSON-RPC error.
    #[track_caller]
    fn result(&mut self, method: &str, params: Value) -> Value {
        let reply = self.request(method, params);
        assert!(
            reply.get("error").is_none(),
            "{method} answered with an error: {reply}"
        );
        reply["result"].clone()
    }

    /// `tools/call` of `tool` with `args`; the tool result.
    #[track_caller]
    fn call(&mut self, tool: &str, args: Value) -> Value {
        let res = self.result("tools/call", json!({"name": tool, "arguments": args}));
        assert!(
            res["isError"].is_boolean(),
            "a tool result has isError: {res}"
        );
        assert_eq!(res["content"][0]["type"], "text", "{res}");
        res
    }

    /// `tools/call` that must succeed; its `structuredContent`.
    #[track_caller]
    fn call_ok(&mut self, tool: &str, args: Value) -> Value {
        let res = self.call(tool, args);
        assert_eq!(res["isError"], false, "{tool} failed: {res}");
        res["structuredContent"].clone()
    }

    /// `ping` answers `{}`: the server is alive and in step.
    #[track_caller]
    fn assert_alive(&mut self, after: &str) {
        let reply = self.request("ping", Value::Null);
        assert_eq!(
            reply["result"],
            json!({}),
            "ping after {after} answers {{}}: {reply}"
        );
    }

    /// The MCP handshake: `initialize`, then the `initialized` notification.
    #[track_caller]
    fn handshake(&mut self) -> Value {
        let init = self.result(
            "initialize",
            json!({
                "protocolVersion": "2025-06-18",
                "capabilities": {},
                "clientInfo": {"name": "mara-tests", "version": "0"},
            }),
        );
        self.send(&json!({"jsonrpc": "2.0", "method": "notifications/initialized"}));
        init
    }

    /// Sends `line` and a newline; the reply must be the JSON-RPC error `code` with
    /// `id` and a message containing `needle`, and a ping afterwards still answers.
    #[track_caller]
    fn expect_error(&mut self, line: &[u8], code: i64, id: Value, needle: &str) {
        let what = String::from_utf8_lossy(&line[..line.len().min(80)]).into_owned();
        self.send_bytes(&[line, b"\n"].concat());
        let reply = self.recv(&what);
        assert_eq!(reply["error"]["code"], code, "{what}: {reply}");
        assert_eq!(reply["id"], id, "{what}: {reply}");
        assert!(reply.get("result").is_none(), "{what}: {reply}");
        let message = reply["error"]["message"].as_str().unwrap_or_default();
        assert!(
            message.contains(needle),
            "{what}: {needle:?} not in {reply}"
        );
        self.assert_alive(&what);
    }

    /// The server's peak resident memory (VmHWM), in KiB.
    fn peak_rss_kib(&self) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id()))
            .expect("reading the server's /proc status");
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmHWM:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .unwrap_or_else(|| panic!("no VmHWM in {status}"))
    }

    /// Closes stdin and waits for the server to exit; nothing more may be written.
    #[track_caller]
    fn finish(&mut self) -> ExitStatus {
        drop(self.stdin.take());
        let started = Instant::now();
        let status = loop {
            if let Some(s) = self.child.try_wait().expect("polling mara mcp") {
                break s;
            }
            assert!(
                started.elapsed() < REPLY_TIMEOUT,
                "mara mcp ({}) did not exit within {REPLY_TIMEOUT:?} of stdin closing\nstderr:\n{}",
                self.who,
                self.stderr()
            );
            thread::sleep(Duration::from_millis(10));
        };
        let extra: Vec<String> = self.lines.try_iter().collect();
        assert!(
            extra.is_empty(),
            "mara mcp wrote lines nobody asked for: {extra:?}"
        );
        status
    }
}

impl Drop for Mcp {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// The text of a tool result.
fn text(res: &Value) -> &str {
    res["content"][0]["text"]
        .as_str()
        .unwrap_or_else(|| panic!("a tool result has a text: {res}"))
}

/// A task of a `board` result.
fn task<'a>(board: &'a Value, id: &str) -> &'a Value {
    board["tasks"]
        .as_array()
        .expect("tasks is a list")
        .iter()
        .find(|t| t["id"] == id)
        .unwrap_or_else(|| panic!("{id} is on the board: {board}"))
}

fn repo_with_tasks(run: &str) -> TestRepo {
    let r = TestRepo::with_run(run);
    r.mara(&["task", "add", "T1", "API endpoints"])
        .ok("task add T1");
    r.mara(&["task", "add", "T2", "UI", "--deps", "T1"])
        .ok("task add T2");
    r.mara(&["task", "add", "T3", "Docs"]).ok("task add T3");
    r
}

#[test]
fn mcp_shows_a_task_reviews_and_cancels() {
    let run = "mcp";
    let r = repo_with_tasks(run);
    let mut c = Mcp::start(&r, "implementer#1");
    c.handshake();
    let shown = c.call_ok("show", json!({"task": "T2"}));
    assert_eq!(shown["task"]["id"], "T2", "{shown}");
    assert_eq!(shown["deps"][0]["id"], "T1", "{shown}");
    // Neither verdict, or both: a tool error, nothing written.
    let tip = r.tip(run);
    let res = c.call("review", json!({"task": "T1"}));
    assert_eq!(res["isError"], true, "{res}");
    let res = c.call(
        "review",
        json!({"task": "T1", "approve": true, "changes": "x"}),
    );
    assert_eq!(res["isError"], true, "{res}");
    // A run without a review step says so.
    let res = c.call("review", json!({"task": "T1", "approve": true}));
    assert_eq!(res["isError"], true, "{res}");
    assert!(
        res["content"][0]["text"]
            .as_str()
            .is_some_and(|t| t.contains("no review step")),
        "{res}"
    );
    assert_eq!(r.tip(run), tip);
    c.call_ok(
        "task_add",
        json!({"task": "T9", "title": "Nine", "body": "do it", "role": "implementer",
               "priority": 3, "deps": ["T3"], "paths": ["src/nine/**"]}),
    );
    let t9 = r.task("T9");
    assert_eq!(
        (
            &t9["body"],
            &t9["role"],
            &t9["priority"],
            &t9["deps"],
            &t9["paths"]
        ),
        (
            &json!("do it"),
            &json!("implementer"),
            &json!(3),
            &json!(["T3"]),
            &json!(["src/nine/**"])
        ),
        "{t9}"
    );
    c.call_ok(
        "task_edit",
        json!({"task": "T9", "deps": [], "priority": -1}),
    );
    assert_eq!(r.task("T9")["deps"], json!([]));
    assert_eq!(r.task("T9")["priority"], -1);
    let res = c.call("task_edit", json!({"task": "T9", "priority": "high"}));
    assert_eq!(res["isError"], true, "{res}");
    let res = c.call("task_cancel", json!({"task": "T1"}));
    assert_eq!(res["isError"], true, "T2 depends on T1: {res}");
    c.call_ok(
        "task_cancel",
        json!({"task": "T1", "reason": "not needed", "drop_deps": true}),
    );
    assert!(newest_subject(&r.dir, run).starts_with("cancel T1 by implementer#1"));
}

#[test]
fn mcp_conversation_over_stdio() {
    let run = "mcp";
    let r = repo_with_tasks(run);
    let mut c = Mcp::start(&r, "implementer#1");

    // initialize, then the notification, which gets no reply: the next line the
    // server writes is the answer to the ping after it.
    let init = c.handshake();
    assert_eq!(init["protocolVersion"], "2025-06-18", "{init}");
    assert_eq!(init["serverInfo"]["name"], "mara", "{init}");
    assert!(init["serverInfo"]["version"].is_string(), "{init}");
    assert!(init["capabilities"]["tools"].is_object(), "{init}");
    c.assert_alive("the initialized notification");

    // tools/list: the seven tools, each with an object schema.
    let list = c.result("tools/list", json!({}));
    let tools = list["tools"].as_array().expect("tools is a list");
    let names: BTreeSet<&str> = tools.iter().filter_map(|t| t["name"].as_str()).collect();
    assert_eq!(names, TOOLS.into_iter().collect(), "{list}");
    assert_eq!(tools.len(), TOOLS.len(), "no tool is listed twice: {list}");
    for t in tools {
        assert_eq!(t["inputSchema"]["type"], "object", "{t}");
        assert!(t["inputSchema"]["properties"].is_object(), "{t}");
        assert!(
            t["description"].as_str().is_some_and(|d| !d.is_empty()),
            "{t}"
        );
    }
    let claim = tools.iter().find(|t| t["name"] == "claim").expect("claim");
    assert!(
        claim["inputSchema"]["required"]
            .as_array()
            .is_some_and(|req| req.contains(&json!("task"))),
        "claim requires task: {claim}"
    );
    assert_eq!(claim["inputSchema"]["properties"]["task"]["type"], "string");

    // board: the CLI's `board --json` as structuredContent.
    let board = c.call_ok("board", json!({}));
    assert_eq!(board["run"], run, "{board}");
    assert!(board["version"].is_u64(), "{board}");
    assert_eq!(board["tasks"].as_array().map(Vec::len), Some(3), "{board}");
    assert_eq!(task(&board, "T1")["status"], "open");
    assert_eq!(
        board["version"],
        r.board()["version"],
        "the tool and the CLI agree"
    );

    // claim T1: the board shows the holder, through the tool and the CLI.
    let res = c.call("claim", json!({"task": "T1"}));
    assert_eq!(res["isError"], false, "{res}");
    assert_eq!(text(&res), "claim T1 by implementer#1");
    assert_eq!(res["structuredContent"]["type"], "claim", "{res}");
    let board = c.call_ok("board", json!({}));
    assert_eq!(task(&board, "T1")["status"], "claimed", "{board}");
    assert_eq!(task(&board, "T1")["claimed_by"], "implementer#1", "{board}");
    assert_eq!(
        r.task_state("T1"),
        ("claimed".to_owned(), Some("implementer#1".to_owned()))
    );

    // A claim of a task whose dep is not done is a refusal, as a tool error.
    let res = c.call("claim", json!({"task": "T2"}));
    assert_eq!(res["isError"], true, "{res}");
    assert_eq!(res["structuredContent"]["refused"], true, "{res}");
    assert!(text(&res).contains("T2 waits for T1"), "{res}");

    // post a decision, then the log filtered by type shows only it.
    let posted = c.call_ok(
        "post",
        json!({"type": "decision", "text": "implementer#1 takes the API"}),
    );
    assert_eq!(posted["type"], "decision", "{posted}");
    assert_eq!(posted["sender"], "implementer#1", "{posted}");
    let log = c.call_ok("log", json!({"type": "decision"}));
    let items = log["items"]
        .as_array()
        .expect("the log is a list of events");
    assert_eq!(items.len(), 1, "{log}");
    assert_eq!(items[0]["type"], "decision");
    assert_eq!(items[0]["sender"], "implementer#1");
    assert_eq!(items[0]["payload"]["note"], "implementer#1 takes the API");
    let claims = c.call_ok("log", json!({"type": "claim"}));
    assert_eq!(
        claims["items"].as_array().map(Vec::len),
        Some(1),
        "{claims}"
    );
    assert_eq!(claims["items"][0]["payload"]["task"], "T1");

    // done with an artifact that exists in the worktree.
    std::fs::write(r.dir.join("implementer_1.md"), "# API\n").expect("writing the artifact");
    r.git(&["add", "implementer_1.md"]);
    r.git(&["commit", "-q", "-m", "T1: the API"]);
    let res = c.call(
        "done",
        json!({"task": "T1", "artifact": "implementer_1.md"}),
    );
    assert_eq!(res["isError"], false, "{res}");
    assert_eq!(text(&res), "done T1 by implementer#1");
    let board = c.call_ok("board", json!({}));
    assert_eq!(task(&board, "T1")["status"], "done", "{board}");
    assert_eq!(
        task(&board, "T1")["artifact"],
        "implementer_1.md",
        "{board}"
    );
    assert_eq!(r.task_state("T1").0, "done");
    let version = board["version"].clone();

    // An unknown tool is a JSON-RPC error -32602 (invalid params), as MCP says.
    let reply = c.request(
        "tools/call",
        json!({"name": "delete_everything", "arguments": {}}),
    );
    assert_eq!(reply["error"]["code"], -32602, "{reply}");
    assert!(reply.get("result").is_none(), "{reply}");
    assert!(
        reply["error"]["message"]
            .as_str()
            .is_some_and(|m| m.contains("delete_everything")),
        "{reply}"
    );
    c.assert_alive("an unknown tool");

    // A bad argument type is a tool error that names the argument; nothing written.
    let res = c.call("claim", json!({"task": 3}));
    assert_eq!(res["isError"], true, "{res}");
    assert_eq!(res["structuredContent"]["refused"], false, "{res}");
    assert!(text(&res).contains("task must be a string"), "{res}");
    let res = c.call("claim", json!({"task": "T3", "priority": 1}));
    assert_eq!(res["isError"], true, "{res}");
    assert!(text(&res).contains("priority"), "{res}");
    let res = c.call("post", json!({"type": "decision"}));
    assert_eq!(res["isError"], true, "{res}");
    assert!(text(&res).contains("text is required"), "{res}");
    c.assert_alive("bad arguments");

    // An unknown method: -32601.
    let reply = c.request("resources/list", json!({}));
    assert_eq!(reply["error"]["code"], -32601, "{reply}");
    c.assert_alive("an unknown method");

    // Malformed JSON: -32700 with a null id.
    c.send_bytes(b"{\"jsonrpc\": \"2.0\", \"id\": 99, \"method\": \n");
    let reply = c.recv("malformed JSON");
    assert_eq!(reply["error"]["code"], -32700, "{reply}");
    assert_eq!(reply["id"], Value::Null, "{reply}");
    c.assert_alive("malformed JSON");

    // None of the failures wrote an event.
    let board = c.call_ok("board", json!({}));
    assert_eq!(board["version"], version, "{board}");
    assert_eq!(task(&board, "T3")["status"], "open", "{board}");

    let status = c.finish();
    assert_eq!(
        status.code(),
        Some(0),
        "mara mcp exits 0 when stdin closes\nstderr:\n{}",
        c.stderr()
    );
    r.verify_ok();
}

#[test]
fn mcp_answers_malformed_messages_by_json_rpc_and_keeps_serving() {
    let r = repo_with_tasks("rpc");
    let mut c = Mcp::start(&r, "implementer#1");
    c.handshake();
    let null = Value::Null;

    // Not JSON, or not UTF-8 anywhere in the line (inside a string too): -32700.
    for line in [
        &b"{"[..],
        b"{\"jsonrpc\": \"2.0\", \"id\": 1, \"method\": \"ping\"}}",
        b"\xff\xfe{}",
        b"{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"ping\",\"params\":{\"x\":\"\xff\"}}",
        b"{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"ping\",\"params\":{\"x\":\"\xc3\"}}",
        b"{\"jsonrpc\":\"2.0\",\"id\":\"\xc0\x80\",\"method\":\"ping\"}",
        b"{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"ping\",\"params\":{\"x\":\"\xed\xa0\x80\"}}",
    ] {
        let needle = if std::str::from_utf8(line).is_ok() {
            "parse error"
        } else {
            "not UTF-8"
        };
        c.expect_error(line, -32700, null.clone(), needle);
    }
    let deep = format!("{}{}", "[".repeat(100_000), "]".repeat(100_000));
    c.expect_error(deep.as_bytes(), -32700, null.clone(), "parse error");

    // JSON that is not a request object, and batches (gone from MCP since
    // 2025-06-18): one Invalid Request each, id null, never an array of replies.
    for line in ["[]", "42", "null", "\"x\"", "true", "-1.5", "{}"] {
        c.expect_error(line.as_bytes(), -32600, null.clone(), "");
    }
    for batch in [
        json!([{"jsonrpc": "2.0", "id": 1, "method": "ping"}]),
        json!([{"jsonrpc": "2.0", "id": 1, "method": "ping"}, {"jsonrpc": "2.0", "id": 2, "method": "ping"}]),
        json!([{"jsonrpc": "2.0", "method": "notifications/initialized"}]),
        json!([1, 2]),
    ] {
        c.expect_error(batch.to_string().as_bytes(), -32600, null.clone(), "batch");
    }

    // Malformed requests: -32600, with the id when it is a valid one.
    #[rustfmt::skip]
    let cases = [
        (r#"{"jsonrpc":"1.0","id":7,"method":"ping"}"#, json!(7), "jsonrpc"),
        (r#"{"id":7,"method":"ping"}"#, json!(7), "jsonrpc"),
        (r#"{"jsonrpc":2.0,"id":"a","method":"ping"}"#, json!("a"), "jsonrpc"),
        (r#"{"jsonrpc":"2.0 ","id":7,"method":"ping"}"#, json!(7), "jsonrpc"),
        (r#"{"jsonrpc":"1.0","method":"notifications/initialized"}"#, json!(null), "jsonrpc"),
        (r#"{"jsonrpc":"2.0","id":8}"#, json!(8), "method"),
        (r#"{"jsonrpc":"2.0","id":8,"result":{},"error":{}}"#, json!(8), "method"),
        (r#"{"jsonrpc":"2.0","id":9,"method":5}"#, json!(9), "method"),
        (r#"{"jsonrpc":"2.0","id":9,"method":null}"#, json!(9), "method"),
        (r#"{"jsonrpc":"2.0","method":["ping"]}"#, json!(null), "method"),
        (r#"{"jsonrpc":"2.0","id":null,"method":"ping"}"#, json!(null), "id"),
        (r#"{"jsonrpc":"2.0","id":1.5,"method":"ping"}"#, json!(null), "id"),
        (r#"{"jsonrpc":"2.0","id":1e3,"method":"ping"}"#, json!(null), "id"),
        (r#"{"jsonrpc":"2.0","id":true,"method":"ping"}"#, json!(null), "id"),
        (r#"{"jsonrpc":"2.0","id":[1],"method":"ping"}"#, json!(null), "id"),
        (r#"{"jsonrpc":"2.0","id":{"a":1},"method":"ping"}"#, json!(null), "id"),
        (r#"{"jsonrpc":"2.0","id":10,"method":"ping","params":5}"#, json!(10), "params"),
        (r#"{"jsonrpc":"2.0","id":10,"method":"ping","params":[]}"#, json!(10), "params"),
        (r#"{"jsonrpc":"2.0","id":10,"method":"ping","params":null}"#, json!(10), "params"),
        (r#"{"jsonrpc":"2.0","id":10,"method":"tools/call","params":"board"}"#, json!(10), "params"),
    ];
    for (line, id, needle) in cases {
        c.expect_error(line.as_bytes(), -32600, id, needle);
    }

    // Valid notifications, known or not, and responses get no reply: the next
    // line is the ping's answer.
    for msg in [
        json!({"jsonrpc": "2.0", "method": "notifications/initialized"}),
        json!({"jsonrpc": "2.0", "method": "notifications/cancelled", "params": {"requestId": 3}}),
        json!({"jsonrpc": "2.0", "method": "no/such/notification"}),
        json!({"jsonrpc": "2.0", "id": 11, "result": {}}),
        json!({"jsonrpc": "2.0", "id": "x", "error": {"code": 1, "message": "m"}}),
    ] {
        c.send(&msg);
        c.assert_alive(&msg.to_string());
    }
    // String and negative ids are echoed as sent.
    for id in [json!("req-1"), json!(-3), json!(u64::MAX)] {
        c.send(&json!({"jsonrpc": "2.0", "id": id, "method": "ping"}));
        let reply = c.recv("a ping with an unusual id");
        assert_eq!(reply["id"], id, "{reply}");
        assert_eq!(reply["result"], json!({}), "{reply}");
    }
    assert_eq!(
        r.board()["version"],
        c.call_ok("board", json!({}))["version"]
    );
    let status = c.finish();
    assert_eq!(status.code(), Some(0), "stderr:\n{}", c.stderr());
    r.verify_ok();
}

#[test]
fn mcp_refuses_a_line_over_its_limit_keeps_serving_and_keeps_memory_bounded() {
    let r = repo_with_tasks("limit");
    let mut c = Mcp::start(&r, "implementer#1");
    c.handshake();

    // A ping padded with spaces to exactly the limit is answered; one byte more is
    // refused.
    let ping = json!({"jsonrpc": "2.0", "id": "padded", "method": "ping"}).to_string();
    let at_limit = format!("{ping}{}", " ".repeat(MAX_LINE - ping.len()));
    c.send_bytes(format!("{at_limit}\n").as_bytes());
    let reply = c.recv("a ping of exactly the limit");
    assert_eq!(reply["id"], "padded", "{reply}");
    assert_eq!(reply["result"], json!({}), "{reply}");
    c.expect_error(
        format!("{at_limit} ").as_bytes(),
        -32600,
        Value::Null,
        "longer than 1048576 bytes",
    );

    // 50 MB in one line, written from a thread while the server reads it.
    let mut stdin = c.stdin.take().expect("stdin is open");
    let writer = thread::spawn(move || {
        let chunk = format!(
            "{{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"ping\",\"params\":{{\"x\":\"{}",
            "a".repeat(1 << 20)
        );
        for _ in 0..50 {
            stdin.write_all(chunk.as_bytes()).expect("writing 50 MB");
        }
        stdin.write_all(b"\"}}\n").expect("ending the line");
        stdin.flush().expect("flushing");
        stdin
    });
    let reply = c.recv("a 50 MB line");
    c.stdin = Some(writer.join().expect("the writer thread"));
    assert_eq!(reply["error"]["code"], -32600, "{reply}");
    assert_eq!(reply["id"], Value::Null, "{reply}");
    c.assert_alive("a 50 MB line");
    let peak = c.peak_rss_kib();
    assert!(
        peak < 24 * 1024,
        "mara mcp peaked at {peak} KiB reading a 50 MB line"
    );
    // A line cut off by the end of input is still answered.
    c.send_bytes(format!("{at_limit}  ").as_bytes());
    drop(c.stdin.take());
    let reply = c.recv("an overlong last line without a newline");
    assert_eq!(reply["error"]["code"], -32600, "{reply}");
    let status = c.finish();
    assert_eq!(status.code(), Some(0), "stderr:\n{}", c.stderr());
}

#[test]
fn two_mcp_clients_racing_for_one_task_yield_one_winner() {
    let run = "mcprace";
    let r = TestRepo::with_run(run);
    let tasks = ["T1", "T2", "T3", "T4", "T5"];
    for t in tasks {
        r.mara(&["task", "add", t, "contested"]).ok("task add");
    }
    let mut clients: Vec<Mcp> = (1..=2)
        .map(|k| {
            let mut c = Mcp::start(&r, &format!("implementer#{k}"));
            c.handshake();
            c.assert_alive("initialize");
            c
        })
        .collect();

    // One round per task: both clients write their claim at the same moment.
    for t in tasks {
        let barrier = Arc::new(Barrier::new(clients.len()));
        let handles: Vec<_> = clients
            .drain(..)
            .map(|mut c| {
                let barrier = Arc::clone(&barrier);
                let (id, msg) = c.request_msg(
                    "tools/call",
                    json!({"name": "claim", "arguments": {"task": t}}),
                );
                let line = format!("{msg}\n");
                thread::spawn(move || {
                    barrier.wait();
                    c.send_bytes(line.as_bytes());
                    let reply = c.recv("the racing claim");
                    assert_eq!(reply["id"], id, "{reply}");
                    (c, reply["result"].clone())
                })
            })
            .collect();
        let results: Vec<(Mcp, Value)> = handles
            .into_iter()
            .map(|h| h.join().expect("a racing client"))
            .collect();
        let winners: Vec<&str> = results
            .iter()
            .filter(|(_, res)| res["isError"] == false)
            .map(|(c, _)| c.who.as_str())
            .collect();
        assert_eq!(
            winners.len(),
            1,
            "exactly one winner of {t}: {:?}",
            results.iter().map(|(_, v)| v).collect::<Vec<_>>()
        );
        let winner = winners[0].to_owned();
        for (c, res) in &results {
            if c.who == winner {
                assert_eq!(text(res), format!("claim {t} by {winner}"), "{res}");
                continue;
            }
            assert_eq!(res["isError"], true, "{res}");
            assert_eq!(res["structuredContent"]["refused"], true, "{res}");
            assert_eq!(
                held_by(text(res), t).as_deref(),
                Some(winner.as_str()),
                "the loser's refusal names the winner: {res}"
            );
        }
        assert_eq!(r.task_state(t), ("claimed".to_owned(), Some(winner)));
        clients = results.into_iter().map(|(c, _)| c).collect();
    }

    for c in &mut clients {
        let status = c.finish();
        assert_eq!(status.code(), Some(0), "stderr:\n{}", c.stderr());
    }
    let out = r.mara(&["log", "--type", "claim", "--json"]);
    out.ok("mara log --type claim --json");
    let claims: Vec<Value> = out
        .stdout
        .lines()
        .map(|l| serde_json::from_str(l).expect("one JSON event per line"))
        .collect();
    for t in tasks {
        let of_t = claims.iter().filter(|e| e["payload"]["task"] == t).count();
        assert_eq!(of_t, 1, "exactly one claim of {t}: {claims:#?}");
    }
    assert_eq!(claims.len(), tasks.len(), "{claims:#?}");
    r.verify_ok();
}

// ---------------------------------------------------------------------------
// The HTML report, and headless Chromium.
// ---------------------------------------------------------------------------

/// The test process's own `PATH`.
#[allow(clippy::disallowed_methods)] // the test reads its own environment, not mara's
fn test_path() -> OsString {
    std::env::var_os("PATH").unwrap_or_default()
}

/// Whether `UPDATE_SCREENSHOT=1` asks to refresh docs/report.png.
#[allow(clippy::disallowed_methods)] // the test reads its own environment, not mara's
fn update_screenshot() -> bool {
    std::env::var("UPDATE_SCREENSHOT").is_ok_and(|v| v == "1")
}

/// Chromium on `PATH` (or /usr/bin/chromium); fails the test when it is missing.
#[track_caller]
fn chromium() -> PathBuf {
    std::env::split_paths(&test_path())
        .map(|d| d.join("chromium"))
        .chain([PathBuf::from("/usr/bin/chromium")])
        .find(|p| p.is_file())
        .unwrap_or_else(|| {
            panic!(
                "chromium is missing: the report tests load the page in headless Chromium; \
                 run `.ci/deps` to install it (then `cargo test` again)"
            )
        })
}

/// A `file://` URL of an absolute path.
fn file_url(p: &Path) -> String {
    let mut url = String::from("file://");
    for c in p.to_str().expect("a UTF-8 path").chars() {
        match c {
            ' ' => url.push_str("%20"),
            '#' => url.push_str("%23"),
            '%' => url.push_str("%25"),
            '?' => url.push_str("%3F"),
            c => url.push(c),
        }
    }
    url
}

/// Runs headless Chromium on `page` with `extra` arguments; its stdout. Killed
/// (with its children, its own process group) after [`CHROMIUM_TIMEOUT`]. A
/// Chromium that crashes (dies of a signal, as it can under heavy load) gets one
/// more try; any other failure fails the test.
#[track_caller]
fn run_chromium(r: &TestRepo, page: &Path, extra: &[&str], what: &str) -> String {
    use std::os::unix::process::ExitStatusExt;
    let bin = chromium();
    let root = r.root();
    let profile = root.join("chr");
    let (out_path, err_path) = (
        root.join(format!("chromium-{what}.out")),
        root.join(format!("chromium-{what}.err")),
    );
    for attempt in 1..=2 {
        let mut cmd = Command::new(&bin);
        clean_env(&mut cmd, &r.home);
        cmd.args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
        ])
        .arg(format!("--user-data-dir={}", profile.display()))
        .args(extra)
        .arg(file_url(page))
        .current_dir(&root)
        .stdout(std::fs::File::create(&out_path).expect("creating chromium's stdout file"))
        .stderr(std::fs::File::create(&err_path).expect("creating chromium's stderr file"))
        .process_group(0);
        let mut child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("starting {} failed: {e}", bin.display()));
        let started = Instant::now();
        let status = loop {
            if let Some(s) = child.try_wait().expect("polling chromium") {
                break s;
            }
            if started.elapsed() > CHROMIUM_TIMEOUT {
                // The group is ours: its leader is not reaped yet.
                let pgid = i32::try_from(child.id()).expect("a pid fits i32");
                // SAFETY: kill(2) with a negative pid signals that process group only.
                unsafe {
                    libc::kill(-pgid, libc::SIGKILL);
                }
                let _ = child.wait();
                panic!(
                    "chromium ({what}) did not finish within {CHROMIUM_TIMEOUT:?} and was killed\nstderr:\n{}",
                    std::fs::read_to_string(&err_path).unwrap_or_default()
                );
            }
            thread::sleep(Duration::from_millis(25));
        };
        if status.success() {
            return std::fs::read_to_string(&out_path).expect("reading chromium's stdout");
        }
        let stderr = std::fs::read_to_string(&err_path).unwrap_or_default();
        assert!(
            attempt == 1 && status.signal().is_some(),
            "chromium ({what}) failed: {status}\nstderr:\n{stderr}"
        );
        eprintln!("chromium ({what}) crashed ({status}); one more try\n{stderr}");
    }
    unreachable!("the second attempt returns or panics")
}

/// The DOM Chromium builds from the page, serialized (`--dump-dom`).
#[track_caller]
fn dump_dom(r: &TestRepo, page: &Path) -> String {
    let dom = run_chromium(r, page, &["--dump-dom"], "dom");
    assert!(
        dom.contains("</html>"),
        "chromium printed no DOM for {}:\n{dom}",
        page.display()
    );
    dom
}

/// A 1280x1400 screenshot of the page at `png`.
#[track_caller]
fn screenshot(r: &TestRepo, page: &Path, png: &Path) {
    let arg = format!("--screenshot={}", png.display());
    run_chromium(
        r,
        page,
        &[&arg, "--window-size=1280,1400", "--hide-scrollbars"],
        "shot",
    );
}

/// Runs `mara report --html FILE` in `cwd` and returns the page.
#[track_caller]
fn report(r: &TestRepo, cwd: &Path, file: &Path) -> String {
    let out = r.mara_in(
        &["report", "--html", file.to_str().expect("a UTF-8 path")],
        &[],
        Some(cwd),
    );
    out.ok("mara report --html");
    assert!(out.stdout.contains("wrote "), "{}", out.stdout);
    std::fs::read_to_string(file).expect("the report was written")
}

/// The page needs nothing from outside: no script, no link, no remote resource.
/// Text is escaped, so every `<` in the page opens one of the report's own tags.
#[track_caller]
fn assert_self_contained(page: &str) {
    let lower = page.to_ascii_lowercase();
    for needle in ["http://", "https://", "@import", "url("] {
        assert!(
            !lower.contains(needle),
            "the report is not self-contained: it contains {needle:?}"
        );
    }
    for tag in lower.split('<').skip(1) {
        let tag = &tag[..tag.find('>').unwrap_or(tag.len())];
        let name: String = tag
            .trim_start_matches('/')
            .chars()
            .take_while(char::is_ascii_alphanumeric)
            .collect();
        assert!(
            !matches!(
                name.as_str(),
                "script" | "link" | "iframe" | "object" | "embed" | "img" | "image" | "use"
            ),
            "the report has a <{name}> tag: <{tag}>"
        );
        for attr in [" src=", " href=", " srcset=", " xlink:href="] {
            assert!(!tag.contains(attr), "the report loads something: <{tag}>");
        }
    }
    assert!(lower.starts_with("<!doctype html>"), "{}", &page[..60]);
    assert!(lower.contains("<style>"), "the CSS is inline");
}

/// The `data-ATTR="..."` values of `<tr>` rows in `html`, in order.
fn row_keys(html: &str, attr: &str) -> Vec<String> {
    let marker = format!("<tr data-{attr}=\"");
    html.match_indices(&marker)
        .map(|(i, _)| {
            let rest = &html[i + marker.len()..];
            rest[..rest.find('"').expect("a closed attribute")].to_owned()
        })
        .collect()
}

/// The `<svg>...</svg>` inside `#timeline`.
#[track_caller]
fn timeline_svg(html: &str) -> &str {
    let from = html
        .find("id=\"timeline\"")
        .unwrap_or_else(|| panic!("no #timeline in the DOM"));
    let start = from + html[from..].find("<svg").expect("an <svg> in #timeline");
    let end = start + html[start..].find("</svg>").expect("a closed <svg>");
    &html[start..end]
}

/// The PNG's width and height, from its IHDR chunk.
#[track_caller]
fn png_size(png: &[u8]) -> (u32, u32) {
    assert!(
        png.len() > 24 && png.starts_with(b"\x89PNG\r\n\x1a\n") && &png[12..16] == b"IHDR",
        "not a PNG"
    );
    let be = |b: &[u8]| u32::from_be_bytes([b[0], b[1], b[2], b[3]]);
    (be(&png[16..20]), be(&png[20..24]))
}

/// Runs `mara demo --dir <tmp>/d` and returns its project.
#[track_caller]
fn run_demo(r: &TestRepo) -> PathBuf {
    let dir = r.root().join("d");
    r.mara_in(
        &["demo", "--dir", dir.to_str().expect("a UTF-8 path")],
        &[],
        Some(&r.root()),
    )
    .ok("mara demo");
    dir.join("project")
}

#[test]
fn demo_report_is_self_contained_and_renders_in_chromium() {
    chromium(); // fail first, and say how to get it
    let r = TestRepo::new();
    let project = run_demo(&r);
    let file = r.root().join("run.html");
    let page = report(&r, &project, &file);
    assert_self_contained(&page);

    let dom = dump_dom(&r, &file);
    let tasks = ["T1", "T2", "T3", "T4", "T5", "T6"];
    let keys = row_keys(&dom, "task");
    assert_eq!(keys[..6], tasks, "one row per task, in order");
    assert!(
        keys.len() == 7 && keys[6].starts_with("resolve-implementer_"),
        "then the resolve task of the demo's conflict: {keys:?}"
    );
    for t in tasks {
        let row_at = dom
            .find(&format!("<tr data-task=\"{t}\">"))
            .expect("the row");
        let row = &dom[row_at..row_at + dom[row_at..].find("</tr>").expect("closed")];
        assert!(
            row.contains("badge done"),
            "{t} is done in the report: {row}"
        );
        let holder = ["architect#1", "implementer#1", "implementer#2"]
            .into_iter()
            .find(|h| row.contains(&format!("<td>{h}</td>")))
            .unwrap_or_else(|| panic!("{t} names its holder: {row}"));
        assert!(
            row.contains(&format!("<code>{}.md</code>", holder.replace('#', "_"))),
            "{t} shows its holder's artifact: {row}"
        );
    }
    let instances = [
        "architect#1",
        "implementer#1",
        "implementer#2",
        "reviewer#1",
        "integrator#1",
    ];
    let rows = row_keys(&dom, "instance");
    for i in instances {
        assert_eq!(
            rows.iter().filter(|k| *k == i).count(),
            1,
            "one row for {i}: {rows:?}"
        );
    }
    // The orchestrator writes the instances' status events, so it is on the board too.
    for k in &rows {
        assert!(
            instances.contains(&k.as_str()) || k == "orchestrator#1",
            "unexpected instance row {k}: {rows:?}"
        );
    }
    let svg = timeline_svg(&dom);
    for i in instances {
        assert!(
            svg.contains(&format!(">{i}</text>")),
            "the timeline has a row labelled {i}"
        );
    }
    assert!(
        svg.contains("claimed, then done"),
        "the timeline shows task bars"
    );
    for id in ["board", "instances", "conflicts", "channel"] {
        assert!(dom.contains(&format!("id=\"{id}\"")), "#{id} is in the DOM");
    }
    assert!(
        dom.contains("<td>resolved by integrator#1 (merged "),
        "the demo's one conflict is shown resolved by the integrator"
    );

    let png = r.root().join("report.png");
    screenshot(&r, &file, &png);
    let bytes = std::fs::read(&png).expect("chromium wrote the screenshot");
    assert!(
        bytes.len() > 10 * 1024,
        "the screenshot is {} bytes: blank?",
        bytes.len()
    );
    assert_eq!(png_size(&bytes), (1280, 1400));
    if update_screenshot() {
        let docs = Path::new(env!("CARGO_MANIFEST_DIR")).join("docs");
        std::fs::create_dir_all(&docs).expect("creating docs/");
        std::fs::copy(&png, docs.join("report.png")).expect("copying to docs/report.png");
    }
}

#[test]
fn report_of_fifty_tasks_and_five_instances() {
    chromium();
    let run = "big";
    let r = TestRepo::with_run(run);
    const TASKS: usize = 50;
    const INSTANCES: usize = 5;
    // T01..T50; each task depends on the one five before it (same instance).
    let plan: Vec<Value> = (1..=TASKS)
        .map(|i| {
            let deps: Vec<String> = if i > INSTANCES {
                vec![format!("T{:02}", i - INSTANCES)]
            } else {
                vec![]
            };
            json!({"id": format!("T{i:02}"), "title": format!("task number {i}"), "deps": deps})
        })
        .collect();
    let plan_file = r.write_outside("plan.json", &Value::Array(plan).to_string());
    r.mara(&["plan", plan_file.to_str().expect("a UTF-8 path")])
        .ok("mara plan");

    // The instances take turns, one process per event (a loop rather than threads:
    // parallel writers can hit a false "was rewritten" error, see the report).
    for k in 1..=INSTANCES {
        let who = format!("implementer#{k}");
        r.mara(&[
            "--as",
            &who,
            "post",
            "decision",
            &format!("{who} takes every fifth task"),
        ])
        .ok("post");
    }
    for i in 1..=TASKS {
        let who = format!("implementer#{}", (i - 1) % INSTANCES + 1);
        let id = format!("T{i:02}");
        r.mara(&["--as", &who, "claim", &id]).ok("claim");
        r.mara(&["--as", &who, "done", &id]).ok("done");
    }

    let file = r.root().join("big.html");
    let page = report(&r, &r.dir, &file);
    assert_self_contained(&page);
    assert!(
        page.len() < 300 * 1024,
        "the report of 50 tasks is {} KB",
        page.len() / 1024
    );
    let dom = dump_dom(&r, &file);
    let task_rows = row_keys(&dom, "task");
    let expected: Vec<String> = (1..=TASKS).map(|i| format!("T{i:02}")).collect();
    assert_eq!(task_rows, expected);
    assert_eq!(
        dom.matches("<span class=\"badge done\">done</span>")
            .count(),
        TASKS,
        "every task shows done"
    );
    let inst_rows = row_keys(&dom, "instance");
    let expected: Vec<String> = (1..=INSTANCES)
        .map(|k| format!("implementer#{k}"))
        .collect();
    assert_eq!(inst_rows, expected);
    let svg = timeline_svg(&dom);
    for k in 1..=INSTANCES {
        assert!(svg.contains(&format!(">implementer#{k}</text>")));
    }
    assert_eq!(
        svg.matches("claimed, then done").count(),
        TASKS,
        "one bar per task"
    );
    assert_eq!(
        dom.matches("takes every fifth task").count(),
        2 * INSTANCES,
        "each decision once in the channel and once as a timeline mark"
    );
    r.verify_ok();
}

#[test]
fn report_escapes_titles_and_messages() {
    let run = "esc";
    let r = TestRepo::with_run(run);
    let title = r#"<script>alert(1)</script> "quotes" & 'apostrophes'"#;
    r.mara(&["task", "add", "T1", title]).ok("task add");
    r.mara_as("implementer#1", &["claim", "T1"]).ok("claim");
    r.mara_as(
        "implementer#1",
        &[
            "post",
            "decision",
            r#"<img src=x onerror="alert(2)"> </table>"#,
        ],
    )
    .ok("post");
    let file = r.root().join("esc.html");
    let page = report(&r, &r.dir, &file);
    assert_self_contained(&page);
    let lower = page.to_ascii_lowercase();
    assert!(!lower.contains("<script"), "a raw <script> in the page");
    assert!(!lower.contains("<img"), "a raw <img> in the page");
    assert_eq!(
        page.matches("</table>").count(),
        3,
        "only the report's own three tables (board, instances, channel) are closed"
    );
    let escaped_title =
        "&lt;script&gt;alert(1)&lt;/script&gt; &quot;quotes&quot; &amp; &#39;apostrophes&#39;";
    let row_at = page.find("<tr data-task=\"T1\">").expect("T1's row");
    let row = &page[row_at..row_at + page[row_at..].find("</tr>").expect("closed")];
    assert!(
        row.contains(&format!("<td>{escaped_title}</td>")),
        "the title is escaped in T1's row: {row}"
    );
    assert!(!page.contains("\"quotes\""), "raw quotes in the page");
    let escaped_msg = "&lt;img src=x onerror=&quot;alert(2)&quot;&gt; &lt;/table&gt;";
    assert_eq!(
        page.matches(escaped_msg).count(),
        2,
        "the decision is escaped in the channel and in the timeline's mark"
    );
}

/// Issue 14 over MCP: `claim_next` waits a bounded time, `inbox` reads addressed
/// messages once, `post` checks its references, `merge_deps` needs a held task.
#[test]
fn mcp_claim_next_waits_inbox_reads_once_and_post_addresses() {
    let r = TestRepo::with_run("r");
    r.mara(&["task", "add", "T0", "held"]).ok("task add");
    r.mara_as("implementer#9", &["claim", "T0"]).ok("claim T0");
    r.mara_as(
        "implementer#1",
        &[
            "post",
            "question",
            "is /v2 in scope?",
            "--to",
            "implementer#2",
        ],
    )
    .ok("post");
    let mut c = Mcp::start(&r, "implementer#2");
    c.handshake();
    let inbox = c.call_ok("inbox", json!({}));
    let items = inbox["items"].as_array().expect("inbox items");
    assert_eq!(items.len(), 1, "{inbox}");
    assert_eq!(items[0]["payload"]["note"], "is /v2 in scope?");
    let seq = items[0]["seq"].clone();
    assert_eq!(c.call_ok("inbox", json!({}))["items"], json!([]));
    let res = c.call(
        "post",
        json!({"type": "answer", "text": "no", "reply_to": 9999}),
    );
    assert_eq!(res["isError"], true, "{res}");
    c.call_ok(
        "post",
        json!({"type": "answer", "text": "no, only /v1", "reply_to": seq, "to": "implementer#1"}),
    );
    let started = std::time::Instant::now();
    let res = c.call("claim_next", json!({"wait": 1}));
    assert_eq!(res["isError"], true, "{res}");
    assert!(text(&res).contains("nothing ready"), "{res}");
    assert!(started.elapsed() >= Duration::from_secs(1));
    let res = c.call("claim_next", json!({"wait": 601}));
    assert!(text(&res).contains("0 to 600"), "{res}");
    let res = c.call("merge_deps", json!({}));
    assert!(text(&res).contains("holds no task"), "{res}");
    c.assert_alive("the issue 14 tools");
}
