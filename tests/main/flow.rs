//! The README's walk-through, command by command.

use serde_json::Value;

use crate::common::{assert_ref_unchanged, count_commits_with_subject, held_by, TestRepo};

const RUN: &str = "demo";

#[test]
fn readme_flow_claims_refuses_posts_completes_and_logs() {
    let r = TestRepo::new();
    let init = r.mara(&["init", "--run", RUN]);
    init.ok("mara init");
    assert!(
        init.stdout.contains("refs/mara/demo"),
        "init names the ref: {}",
        init.stdout
    );
    assert_eq!(r.git(&["config", "mara.run"]).trim(), RUN);

    r.mara(&[
        "task",
        "add",
        "T1",
        "API endpoints",
        "--paths",
        "src/api/**",
    ])
    .ok("task add T1");
    r.mara(&["task", "add", "T2", "UI", "--deps", "T1"])
        .ok("task add T2");

    let claim = r.mara_as("implementer#1", &["claim", "T1"]);
    claim.ok("implementer#1 claims T1");
    assert_eq!(claim.stdout.trim(), "claim T1 by implementer#1");

    let refused = assert_ref_unchanged(&r, RUN, || r.mara_as("implementer#2", &["claim", "T1"]));
    refused
        .expect_code(3, "implementer#2 claims the held T1")
        .stderr_has("T1 is held by implementer#1");
    assert_eq!(
        held_by(&refused.stderr, "T1").as_deref(),
        Some("implementer#1")
    );

    assert_ref_unchanged(&r, RUN, || r.mara_as("implementer#2", &["claim", "T2"]))
        .expect_code(3, "implementer#2 claims T2 before T1 is done")
        .stderr_has("T2 waits for T1");

    assert_ref_unchanged(&r, RUN, || r.mara_as("implementer#2", &["claim", "--next"]))
        .expect_code(3, "claim --next with nothing ready")
        .stderr_has("nothing ready");

    // A claim of a task you already hold succeeds and writes nothing.
    assert_ref_unchanged(&r, RUN, || r.mara_as("implementer#1", &["claim", "T1"]))
        .ok("implementer#1 claims its own T1 again");

    r.mara_as(
        "implementer#1",
        &[
            "post",
            "decision",
            "implementer#1 takes the API, implementer#2 the UI",
        ],
    )
    .ok("post decision");

    std::fs::write(r.dir.join("implementer_1.md"), "# API\n").expect("writing the artifact");
    // The artifact is committed: `done` records the commit that holds the work.
    r.git(&["add", "implementer_1.md"]);
    r.git(&["commit", "-q", "-m", "T1: the API"]);
    r.mara_as(
        "implementer#1",
        &["done", "T1", "--artifact", "implementer_1.md"],
    )
    .ok("done T1 with an artifact");

    // The board, as the seed's JSON.
    let board = r.board();
    let obj = board.as_object().expect("board --json is an object");
    let mut keys: Vec<&str> = obj.keys().map(String::as_str).collect();
    keys.sort_unstable();
    assert_eq!(keys, ["run", "tasks", "version"], "board keys: {board}");
    assert_eq!(board["run"], RUN);
    // init, add, add, claim, decision, done: seq 0..=5.
    assert_eq!(board["version"], 5, "board: {board}");
    let tasks = board["tasks"].as_array().expect("tasks is a list");
    assert_eq!(tasks.len(), 2);
    assert_eq!(tasks[0]["id"], "T1");
    assert_eq!(tasks[0]["status"], "done");
    assert_eq!(tasks[0]["claimed_by"], "implementer#1");
    assert_eq!(tasks[0]["artifact"], "implementer_1.md");
    assert_eq!(tasks[0]["paths"], serde_json::json!(["src/api/**"]));
    assert_eq!(tasks[1]["id"], "T2");
    assert_eq!(tasks[1]["status"], "open");
    assert_eq!(tasks[1]["claimed_by"], Value::Null);
    assert_eq!(tasks[1]["deps"], serde_json::json!(["T1"]));

    // The log: one JSON object per line, gapless seq from 0.
    let log = r.mara(&["log", "--json"]);
    log.ok("log --json");
    let events: Vec<Value> = log
        .stdout
        .lines()
        .map(|l| serde_json::from_str(l).expect("each log line is one JSON value"))
        .collect();
    assert_eq!(events.len(), 6, "log:\n{}", log.stdout);
    for (i, e) in events.iter().enumerate() {
        let mut keys: Vec<&str> = e
            .as_object()
            .expect("an event is an object")
            .keys()
            .map(String::as_str)
            .collect();
        keys.sort_unstable();
        assert_eq!(
            keys,
            ["payload", "sender", "seq", "ts", "type"],
            "event {e}"
        );
        assert_eq!(e["seq"], i as u64, "seq is gapless from 0: {e}");
        assert!(e["ts"].is_string(), "ts is a timestamp: {e}");
    }
    let types: Vec<&str> = events
        .iter()
        .map(|e| e["type"].as_str().expect("type is a string"))
        .collect();
    assert_eq!(
        types,
        ["init", "task_add", "task_add", "claim", "decision", "done"]
    );
    assert_eq!(events[3]["sender"], "implementer#1");
    assert_eq!(events[3]["payload"]["task"], "T1");
    assert_eq!(events[5]["payload"]["artifact"], "implementer_1.md");

    let filtered = r.mara(&["log", "--type", "claim", "--task", "T1", "--json"]);
    filtered.ok("log --type claim --task T1 --json");
    let lines: Vec<&str> = filtered.stdout.lines().collect();
    assert_eq!(lines.len(), 1, "one claim of T1:\n{}", filtered.stdout);
    let claim_event: Value = serde_json::from_str(lines[0]).expect("a JSON line");
    assert_eq!(claim_event["type"], "claim");
    assert_eq!(claim_event["payload"]["task"], "T1");
    let text = r.mara(&["log", "--type", "claim", "--task", "T1"]);
    text.ok("log --type claim --task T1");
    assert_eq!(text.stdout.lines().count(), 1, "{}", text.stdout);
    assert!(text.stdout.contains("implementer#1"), "{}", text.stdout);

    r.verify_ok();
    assert_eq!(
        count_commits_with_subject(&r.dir, RUN, "claim T1 by implementer#1"),
        1
    );
    let body = r.git(&["log", "-1", "--format=%B", "refs/mara/demo~2"]);
    assert!(body.contains("Mara-Task: T1"), "claim trailers:\n{body}");
    assert!(body.contains("Mara-Instance: implementer#1"), "{body}");
    assert!(body.contains("Mara-Seq: 3"), "{body}");

    // With T1 done, T2 is ready.
    r.mara_as("implementer#2", &["claim", "--next"])
        .ok("implementer#2 takes the next task");
    assert_eq!(
        r.task_state("T2"),
        ("claimed".to_owned(), Some("implementer#2".to_owned()))
    );

    let status = r.mara(&["status", "--json"]);
    status.ok("status --json");
    let status: Value = serde_json::from_str(&status.stdout).expect("status --json is JSON");
    assert_eq!(status["tasks"]["done"], 1);
    assert_eq!(status["tasks"]["claimed"], 1);
    assert_eq!(status["tasks"]["open"], 0);
    r.verify_ok();
}

/// `mara export` writes the seed's files: the board as `mara board --json` prints
/// it, and the channel as `mara log --json` prints it.
#[test]
fn export_writes_the_seeds_board_and_channel_files() {
    let run = "exp";
    let r = TestRepo::with_run(run);
    r.mara(&["task", "add", "T1", "one"]).ok("task add");
    r.mara_as("implementer#1", &["claim", "T1"]).ok("claim");
    r.mara_as("implementer#1", &["post", "decision", "I take T1"])
        .ok("post");
    let before = r.tip(run);
    let o = r.mara(&["export"]);
    assert!(
        o.ok("export").stdout.contains("task_board.json"),
        "{}",
        o.stdout
    );
    let dir = r.dir.join(".multi_agent_runs").join(run);
    let board: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(dir.join("task_board.json")).expect("the board file"),
    )
    .expect("the board file is JSON");
    let printed: serde_json::Value =
        serde_json::from_str(&r.mara(&["board", "--json"]).ok("board").stdout)
            .expect("board --json is JSON");
    assert_eq!(board, printed);
    assert_eq!(board["tasks"][0]["claimed_by"], "implementer#1");
    let channel = std::fs::read_to_string(dir.join("coordination.log")).expect("the log file");
    assert_eq!(channel, r.mara(&["log", "--json"]).ok("log").stdout);
    assert_eq!(channel.lines().count(), 4, "init, add, claim, decision");
    assert_eq!(r.tip(run), before, "export writes no event");
    assert!(
        crate::common::git(&r.dir, &["status", "--porcelain"])
            .trim()
            .is_empty(),
        "the run folder is excluded from git status"
    );
}

#[test]
fn log_json_prints_the_stored_events_and_since_reads_only_the_newest() {
    let r = TestRepo::with_run("since");
    r.mara(&["task", "add", "T1", "one"]).ok("task add");
    for i in 0..5 {
        r.mara_as("implementer#1", &["post", "note", &format!("note {i}")])
            .ok("post");
    }
    // The lines git keeps in the commits, oldest first.
    let stored: Vec<String> = crate::common::git(
        &r.dir,
        &["log", "--reverse", "--format=%b", "refs/mara/since"],
    )
    .lines()
    .filter(|l| l.starts_with('{'))
    .map(str::to_owned)
    .collect();
    assert_eq!(stored.len(), 7, "init, task add, five notes");
    let all = r.mara(&["log", "--json"]);
    all.ok("log --json");
    assert_eq!(all.stdout.lines().collect::<Vec<_>>(), stored);
    let since = r.mara(&["log", "--json", "--since", "4"]);
    since.ok("log --json --since 4");
    assert_eq!(since.stdout.lines().collect::<Vec<_>>(), stored[4..]);
    let text = r.mara(&["log", "--since", "6"]);
    text.ok("log --since 6");
    assert_eq!(text.stdout.lines().count(), 1, "{}", text.stdout);
    assert!(text.stdout.contains("note 4"), "{}", text.stdout);
    let typed = r.mara(&["log", "--json", "--since", "2", "--type", "note"]);
    typed.ok("log --json --since 2 --type note");
    assert_eq!(typed.stdout.lines().count(), 5);
    let none = r.mara(&["log", "--json", "--since", "99"]);
    none.ok("log --since past the tip");
    assert_eq!(none.stdout, "");
}
