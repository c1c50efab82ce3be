//! The stall guard (issue 16): a run whose instances only talk, hand a task back
//! and forth, or leave a question unanswered is flagged by `status`, `board` and
//! the orchestrator, which records a `stall` event and warns, notifies a role or
//! stops the run. Real repositories, real `mara run` with scripted instances, and
//! forged events and configs built with git plumbing.

use std::time::Duration;

use serde_json::{json, Value};

use crate::common::{blob, count_commits_with_subject, git, mktree, output_within, TestRepo};
use crate::orchestrate::{
    config, instance, log_json, mara_run_command, script_role, status, verify_ok,
};
use crate::trust::{forge, next_seq, now_ts};

/// An instance that only talks: posts a note every 100 ms until it is stopped, or
/// for `$1` rounds.
const TALKER: &str = r#"
n=0
while [ "$n" -lt "${1:-100000}" ]; do
  mara post note "still thinking ($n)" >/dev/null || exit 1
  n=$((n + 1))
  sleep 0.1
done
"#;

/// `mara init --run <run> --config <file>` with `coordination` set.
fn init_with(r: &TestRepo, run: &str, coordination: Value) {
    let cfg = r.write_outside(
        &format!("{run}.json"),
        &json!({ "coordination": coordination }).to_string(),
    );
    r.mara(&[
        "init",
        "--run",
        run,
        "--config",
        cfg.to_str().expect("UTF-8"),
    ])
    .ok("mara init --config");
}

/// Makes run `run` by hand, as an older mara (or an attacker) would: its `init`
/// commit, with the config's keys after `run` and `claim_timeout_sec` given in the
/// order mara writes them (`rest`), and its tree.
fn hand_made_init(r: &TestRepo, run: &str, rest: &str) {
    let config = format!(r#"{{"run":"{run}","claim_timeout_sec":300,{rest}}}"#);
    let value: Value = serde_json::from_str(&config).expect("JSON");
    let pretty = format!("{}\n", serde_json::to_string_pretty(&value).expect("JSON"));
    let blob = blob(&r.dir, pretty.as_bytes());
    let tree = mktree(&r.dir, &[("100644", "blob", blob.trim(), "config.json")]);
    let event = format!(
        r#"{{"seq":0,"ts":"{}","sender":"operator","type":"init","payload":{{"config":{config}}}}}"#,
        now_ts()
    );
    let message = format!("init {run} by operator\n\n{event}\n\nMara-Run: {run}\nMara-Seq: 0\n");
    let file = r.write_outside("init-message.txt", &message);
    let commit = git(
        &r.dir,
        &["commit-tree", &tree, "-F", file.to_str().expect("UTF-8")],
    )
    .trim()
    .to_owned();
    git(
        &r.dir,
        &["update-ref", &format!("refs/mara/{run}"), &commit],
    );
}

/// `mara report --html` of the run, read back.
fn report_html(r: &TestRepo, run: &str) -> String {
    let page = r.root().join("report.html");
    let path = page.to_str().expect("UTF-8");
    r.mara(&["--run", run, "report", "--html", path])
        .ok("report");
    std::fs::read_to_string(&page).expect("the report")
}

/// `status --json`'s `stall` object.
#[track_caller]
fn stall_of(r: &TestRepo, run: &str) -> Value {
    status(r, run)["stall"].clone()
}

/// The `stall` events of the run, as `log --json` prints them.
fn stall_events(r: &TestRepo, run: &str) -> Vec<Value> {
    log_json(r, run)
        .into_iter()
        .filter(|e| e["type"] == "stall")
        .collect()
}

#[test]
fn instances_that_only_talk_stall_the_run_and_on_stall_stop_ends_it() {
    let r = TestRepo::new();
    let run = "talk";
    script_role(&r, "talker", TALKER, &[], json!({}));
    let cfg = config(
        &r,
        "mara.json",
        &[("talker", 2)],
        json!({"stall_after_sec": 1, "on_stall": "stop"}),
    );
    let (out, took) = output_within(
        mara_run_command(&r, run, &cfg, None),
        Duration::from_secs(60),
        "a run of talkers",
    );
    out.expect_code(1, "a stalled run with on_stall stop")
        .stderr_has("stalled: no claim, done, review or integration for")
        .stderr_has("last progress seq 0 (init by")
        .stderr_has("on_stall stop");
    assert!(took < Duration::from_secs(30), "stopped soon: {took:?}");
    // The talkers did talk: a stall is not silence.
    let notes = count_commits_with_subject(&r.dir, run, "note by talker#");
    assert!(notes >= 2, "the talkers posted {notes} notes");
    // One stall event for the stalled period, naming the last progress.
    let stalls = stall_events(&r, run);
    assert_eq!(stalls.len(), 1, "{stalls:?}");
    let p = &stalls[0]["payload"];
    assert_eq!(p["last"]["seq"], 0, "{p}");
    assert_eq!(p["last"]["kind"], "init", "{p}");
    assert_eq!(p["action"], "stop", "{p}");
    let listed = r.mara(&["--run", run, "log", "--type", "stall"]);
    assert!(
        listed.stdout.contains("stall      no progress for ")
            && listed.stdout.contains(" since seq 0 (init); stop"),
        "{}",
        listed.stdout
    );
    // Every instance was stopped, and says why.
    let st = status(&r, run);
    for i in ["talker#1", "talker#2"] {
        let inst = instance(&st, i);
        assert_eq!(inst["status"], "failed", "{inst}");
        assert!(
            inst["reason"]
                .as_str()
                .unwrap_or_default()
                .contains("stalled"),
            "{inst}"
        );
    }
    // The report lists it.
    let html = report_html(&r, run);
    let section = &html[html.find(r#"<div id="stall">"#).expect("a stall section")..];
    assert!(
        section.contains(&format!(r#"<li data-seq="{}">"#, stalls[0]["seq"]))
            && section.contains("stall by "),
        "{section}"
    );
    // Recorded: the board knows the stall was reported (once per period).
    assert_eq!(
        st["stall"]["last_progress"]["stall_seq"], stalls[0]["seq"],
        "{st}"
    );
    verify_ok(&r, run);
}

#[test]
fn a_run_is_flagged_stalled_after_the_configured_time_and_progress_ends_it() {
    let r = TestRepo::new();
    let run = "flag";
    init_with(&r, run, json!({"stall_after_sec": 2}));
    r.mara(&["--run", run, "task", "add", "T1", "one"])
        .ok("task add");
    // No live instance: nothing is stalled, however long.
    std::thread::sleep(Duration::from_millis(2100));
    let s = stall_of(&r, run);
    assert_eq!(s["stalled"], false, "no live instance: {s}");
    // Two instances talk, and nothing progresses.
    for i in ["implementer#1", "implementer#2"] {
        r.mara_as(i, &["--run", run, "post", "note", "thinking"])
            .ok("post");
    }
    let s = stall_of(&r, run);
    assert_eq!(s["stalled"], true, "{s}");
    assert_eq!(s["last_progress"]["kind"], "init", "{s}");
    assert_eq!(s["since"], s["last_progress"]["ts"], "{s}");
    assert_eq!(s["live"].as_array().map(Vec::len), Some(2), "{s}");
    assert!(s["idle_sec"].as_u64().expect("idle_sec") >= 2, "{s}");
    let text = r.mara(&["--run", run, "status"]);
    text.ok("status");
    assert!(
        text.stdout
            .contains("stalled: no claim, done, review or integration for")
            && text.stdout.contains("last progress seq 0 (init by"),
        "{}",
        text.stdout
    );
    let html = report_html(&r, run);
    assert!(
        html.contains(r#"<li class="flag">stalled: no claim, done, review or integration"#),
        "{html}"
    );
    let board = r.mara(&["--run", run, "board"]);
    board.ok("board");
    assert!(board.stdout.contains("stalled: "), "{}", board.stdout);
    let json_board: Value =
        serde_json::from_str(&r.mara(&["--run", run, "board", "--json"]).stdout)
            .expect("board --json");
    assert_eq!(json_board["stall"]["stalled"], true, "{json_board}");
    // A claim is progress: the stall is over.
    r.mara_as("implementer#1", &["--run", run, "claim", "T1"])
        .ok("claim");
    let s = stall_of(&r, run);
    assert_eq!(s["stalled"], false, "{s}");
    assert_eq!(s["last_progress"]["kind"], "claim", "{s}");
    assert_eq!(s["last_progress"]["task"], "T1", "{s}");
    let json_board: Value =
        serde_json::from_str(&r.mara(&["--run", run, "board", "--json"]).stdout)
            .expect("board --json");
    assert!(json_board.get("stall").is_none(), "{json_board}");
    r.verify_ok();
}

#[test]
fn on_stall_notify_posts_an_alert_to_that_role_once() {
    let r = TestRepo::new();
    let run = "notify";
    // Talks for about 3 s, then stops; the reviewer just waits for its inbox.
    script_role(&r, "talker", TALKER, &["25"], json!({}));
    script_role(
        &r,
        "reviewer",
        r#"
f="$MARA_WORKTREE/../inbox-$MARA_INSTANCE.txt"
i=0
while [ "$i" -lt 100 ] && ! grep -q alert "$f" 2>/dev/null; do
  mara inbox --wait 20 >> "$f" || exit 1
  i=$((i + 1))
done
"#,
        &[],
        json!({}),
    );
    let cfg = config(
        &r,
        "mara.json",
        &[("talker", 1), ("reviewer", 1)],
        json!({"stall_after_sec": 1, "on_stall": "notify reviewer"}),
    );
    let (out, _) = output_within(
        mara_run_command(&r, run, &cfg, None),
        Duration::from_secs(60),
        "a run that notifies",
    );
    out.ok("a stall with notify does not fail the run")
        .stderr_has("told the reviewer role");
    let events = log_json(&r, run);
    let stalls: Vec<&Value> = events.iter().filter(|e| e["type"] == "stall").collect();
    assert_eq!(stalls.len(), 1, "once per stalled period: {stalls:?}");
    assert_eq!(stalls[0]["payload"]["action"], "notify reviewer");
    let alerts: Vec<&Value> = events.iter().filter(|e| e["type"] == "alert").collect();
    assert_eq!(alerts.len(), 1, "{alerts:?}");
    assert_eq!(alerts[0]["payload"]["to"], "reviewer", "{}", alerts[0]);
    let text = alerts[0]["payload"]["note"].as_str().expect("a note");
    assert!(text.contains("stalled"), "{text}");
    // The reviewer's inbox got it.
    let inbox = std::fs::read_to_string(
        r.dir
            .join(".multi_agent_runs")
            .join(run)
            .join("worktrees")
            .join("inbox-reviewer#1.txt"),
    )
    .expect("the reviewer wrote its inbox");
    assert!(inbox.contains("alert"), "{inbox}");
    verify_ok(&r, run);
}

#[test]
fn a_task_handed_back_and_forth_is_flagged_until_it_is_done() {
    let r = TestRepo::new();
    let run = "churn";
    init_with(&r, run, json!({"max_handoffs": 2}));
    r.mara(&["--run", run, "task", "add", "T1", "one"])
        .ok("task add");
    for round in 0..3 {
        let who = if round % 2 == 0 {
            "implementer#1"
        } else {
            "implementer#2"
        };
        r.mara_as(who, &["--run", run, "claim", "T1"]).ok("claim");
        r.mara_as(who, &["--run", run, "release", "T1"])
            .ok("release");
        let s = stall_of(&r, run);
        let flagged = s["handoffs"].as_array().expect("handoffs").clone();
        if round < 2 {
            assert!(flagged.is_empty(), "{} hand-offs: {s}", round + 1);
        } else {
            assert_eq!(flagged, vec![json!({"task": "T1", "handoffs": 3})], "{s}");
        }
    }
    assert_eq!(r.task("T1")["handoffs"], 3);
    let text = r.mara(&["--run", run, "status"]);
    assert!(
        text.stdout
            .contains("handed off more than 2 times: T1 (3 times)"),
        "{}",
        text.stdout
    );
    // A claim of a task handed off that often is the livelock, not progress.
    let before = stall_of(&r, run)["last_progress"]["seq"].clone();
    r.mara_as("implementer#1", &["--run", run, "claim", "T1"])
        .ok("claim");
    assert_eq!(stall_of(&r, run)["last_progress"]["seq"], before);
    // Done, it is no longer flagged, and the flag's file is gone.
    r.mara_as("implementer#1", &["--run", run, "done", "T1"])
        .ok("done");
    let s = stall_of(&r, run);
    assert_eq!(s["handoffs"], json!([]), "{s}");
    assert_eq!(s["last_progress"]["kind"], "done", "{s}");
    let files = git(&r.dir, &["ls-tree", "-r", "--name-only", &r.tip(run)]);
    assert!(!files.contains("stall/handoffs/"), "{files}");
    r.verify_ok();
}

#[test]
fn an_unanswered_question_is_flagged_until_someone_answers_it() {
    let r = TestRepo::new();
    let run = "ask";
    init_with(&r, run, json!({"stall_after_sec": 1}));
    let asked = r.mara_as(
        "implementer#1",
        &[
            "--run",
            run,
            "post",
            "question",
            "is /v2 in scope?",
            "--to",
            "architect",
        ],
    );
    asked.ok("post question");
    let seq: u64 = asked
        .stdout
        .split_whitespace()
        .next()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("post prints the seq first: {}", asked.stdout));
    let files = git(&r.dir, &["ls-tree", "-r", "--name-only", &r.tip(run)]);
    assert!(
        files.contains(&format!("stall/questions/{seq}.json")),
        "{files}"
    );
    std::thread::sleep(Duration::from_millis(1100));
    let s = stall_of(&r, run);
    let qs = s["questions"].as_array().expect("questions").clone();
    assert_eq!(qs.len(), 1, "{s}");
    assert_eq!(qs[0]["seq"], seq);
    assert_eq!(qs[0]["from"], "implementer#1");
    assert_eq!(qs[0]["to"], "architect");
    let text = r.mara(&["--run", run, "status"]);
    assert!(
        text.stdout
            .contains(&format!("question seq {seq} by implementer#1 to architect")),
        "{}",
        text.stdout
    );
    // The asker's own follow-up does not answer it.
    let again = seq.to_string();
    r.mara_as(
        "implementer#1",
        &[
            "--run",
            run,
            "post",
            "note",
            "anyone?",
            "--reply-to",
            &again,
        ],
    )
    .ok("follow-up");
    assert_eq!(
        stall_of(&r, run)["questions"].as_array().map(Vec::len),
        Some(1)
    );
    r.mara_as(
        "architect#1",
        &[
            "--run",
            run,
            "post",
            "answer",
            "no, only /v1",
            "--reply-to",
            &again,
        ],
    )
    .ok("answer");
    let s = stall_of(&r, run);
    assert_eq!(s["questions"], json!([]), "{s}");
    let files = git(&r.dir, &["ls-tree", "-r", "--name-only", &r.tip(run)]);
    assert!(!files.contains("stall/questions/"), "{files}");
    r.verify_ok();
}

#[test]
fn forged_stall_events_and_absurd_stall_configs_are_refused() {
    let run = "forged-stall";
    let r = TestRepo::new();
    init_with(&r, run, json!({"stall_after_sec": 60}));
    r.mara(&["--run", run, "task", "add", "T1", "one"])
        .ok("task add");
    r.mara_as("implementer#1", &["--run", run, "claim", "T1"])
        .ok("claim");
    let progress: Value = serde_json::from_str(&git(
        &r.dir,
        &[
            "cat-file",
            "-p",
            &format!("refs/mara/{run}:stall/progress.json"),
        ],
    ))
    .expect("stall/progress.json");
    let base = r.tip(run);
    let at = |t: chrono::DateTime<chrono::Utc>| t.format("%Y-%m-%dT%H:%M:%S%.3fZ").to_string();
    let last: chrono::DateTime<chrono::Utc> = progress["ts"]
        .as_str()
        .and_then(|t| t.parse().ok())
        .expect("a progress time");
    let now = chrono::Utc::now();
    let long_ago = now - chrono::Duration::hours(3);
    // A stall a second after the last progress (the run stalls after 60 s), one
    // naming another progress, and one with an absurd seq.
    let cases = [
        (
            progress["seq"].clone(),
            last,
            last + chrono::Duration::seconds(1),
            "1s",
            "no stall: the last progress",
        ),
        (json!(1), long_ago, now, "3h", "but the board's is seq"),
        (
            json!(u64::MAX),
            long_ago,
            now,
            "3h",
            "which is not before it",
        ),
    ];
    for (seq, last_ts, ts, idle, why) in cases {
        git(&r.dir, &["update-ref", &format!("refs/mara/{run}"), &base]);
        let event = json!({"seq": next_seq(&r), "ts": at(ts), "sender": "orchestrator#1",
            "type": "stall", "payload": {"last": {"seq": seq, "kind": "claim", "ts": at(last_ts)}, "action": "warn"}});
        let subject = format!(
            "stall by orchestrator#1: no progress for {idle} since seq {seq} (claim); warn"
        );
        let c = forge(&r, run, &subject, &event, None);
        let o = r.mara(&["--run", run, "verify"]);
        o.expect_code(1, "verify of a forged stall")
            .stderr_has(&c)
            .stderr_has(why);
        let w = r.mara_as("implementer#2", &["--run", run, "post", "note", "hi"]);
        w.expect_code(1, "a write on a forged stall")
            .stderr_has("refusing to build on")
            .stderr_has(why);
        assert_eq!(r.tip(run), c, "nothing was written");
    }
    // A config with an absurd stall_after_sec, written as a run's first commit.
    let bad = "forged-config";
    hand_made_init(
        &r,
        bad,
        r#""lock_mode":"ref","format":2,"stall_after_sec":0"#,
    );
    r.mara(&["--run", bad, "verify"])
        .expect_code(1, "verify of an absurd config")
        .stderr_has("stall_after_sec is 0");
    r.mara(&["--run", bad, "task", "add", "T1", "one"])
        .expect_code(1, "a write on an absurd config")
        .stderr_has("refusing to build on")
        .stderr_has("stall_after_sec is 0");
    // And the config file is refused before anything is written.
    let roles = json!([{"id": "implementer", "file": "roles/implementer.json", "instances": 1}]);
    for (coordination, why) in [
        (json!({"stall_after_sec": 0}), "coordination.stall_after_sec is 0"),
        (
            json!({"max_handoffs": 1_000_000}),
            "coordination.max_handoffs is 1000000",
        ),
        (
            json!({"on_stall": "explode"}),
            "use \"warn\", \"stop\" or \"notify <role>\"",
        ),
        (
            json!({"on_stall": "notify reviewer"}),
            "coordination.on_stall notifies \"reviewer\", which is none of the config's roles (implementer)",
        ),
    ] {
        let cfg = r.write_outside(
            "bad.json",
            &json!({ "roles": roles, "coordination": coordination }).to_string(),
        );
        r.mara(&["init", "--run", "never", "--config", cfg.to_str().expect("UTF-8")])
            .expect_code(1, "a bad stall setting")
            .stderr_has(why);
    }
    assert!(git(&r.dir, &["for-each-ref", "refs/mara/never"])
        .trim()
        .is_empty());
}

#[test]
fn a_format_1_run_keeps_its_trees_and_the_guard_replays_its_log() {
    let r = TestRepo::new();
    let run = "old";
    // A run made before board formats: no `format` in its config.
    hand_made_init(
        &r,
        run,
        r#""lock_mode":"ref","stall_after_sec":1,"max_handoffs":1"#,
    );
    r.mara(&["--run", run, "task", "add", "T1", "one"])
        .ok("task add");
    for who in ["implementer#1", "implementer#2"] {
        r.mara_as(who, &["--run", run, "claim", "T1"]).ok("claim");
        r.mara_as(who, &["--run", run, "release", "T1"])
            .ok("release");
    }
    r.mara_as("implementer#1", &["--run", run, "post", "question", "why?"])
        .ok("question");
    // Its trees are what they always were.
    let files = git(&r.dir, &["ls-tree", "-r", "--name-only", &r.tip(run)]);
    assert!(!files.contains("stall/"), "{files}");
    let task = git(
        &r.dir,
        &[
            "cat-file",
            "-p",
            &format!(
                "{}:{}",
                r.tip(run),
                files.lines().find(|l| l.ends_with("/T1.json")).expect("T1")
            ),
        ],
    );
    assert!(!task.contains("handoffs"), "{task}");
    // The guard reads the log instead, and flags the same.
    std::thread::sleep(Duration::from_millis(1100));
    let s = stall_of(&r, run);
    assert_eq!(s["stalled"], true, "{s}");
    assert_eq!(s["last_progress"]["kind"], "claim", "{s}");
    assert_eq!(s["last_progress"]["by"], "implementer#2", "{s}");
    assert_eq!(s["handoffs"], json!([{"task": "T1", "handoffs": 2}]), "{s}");
    assert_eq!(s["questions"].as_array().map(Vec::len), Some(1), "{s}");
    verify_ok(&r, run);
}
