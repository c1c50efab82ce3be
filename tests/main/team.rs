//! A team's day (issue 14): task bodies, roles and priorities; editing and
//! cancelling a plan; `show`; reviews that send work back to its implementer;
//! `status` and `integrate` with a review step.

use std::io::Write;
use std::process::Stdio;
use std::time::Duration;

use serde_json::Value;

use crate::common::{assert_ref_unchanged, newest_subject, subjects, Out, TestRepo};
use crate::hooks;

const RUN: &str = "team";

/// `mara init --run RUN --config FILE` with `config` as the file.
fn init_with(r: &TestRepo, config: &Value) -> Out {
    let cfg = r.write_outside("mara.json", &config.to_string());
    r.mara(&[
        "init",
        "--run",
        RUN,
        "--config",
        cfg.to_str().expect("UTF-8"),
    ])
}

/// A run whose config has a review step (`coordination.review_role`).
fn reviewed_run(lease: u64) -> TestRepo {
    let r = TestRepo::new();
    init_with(
        &r,
        &serde_json::json!({
            "roles": [
                {"id": "implementer", "file": "roles/implementer.json", "instances": 2},
                {"id": "reviewer", "file": "roles/reviewer.json", "instances": 1}
            ],
            "coordination": {
                "task_board": "x", "channel": "y", "lock_mode": "ref",
                "claim_timeout_sec": lease, "review_role": "reviewer"
            }
        }),
    )
    .ok("init with a review step");
    r
}

/// `mara show ID --json`, parsed.
#[track_caller]
fn show_json(r: &TestRepo, id: &str) -> Value {
    let out = r.mara(&["show", id, "--json"]);
    out.ok("mara show --json");
    serde_json::from_str(&out.stdout).expect("show --json prints one JSON value")
}

/// Runs `mara args` with `input` on stdin.
fn mara_stdin(r: &TestRepo, args: &[&str], input: &str) -> Out {
    let mut child = r
        .mara_command(args, &[], None)
        .stdin(Stdio::piped())
        .spawn()
        .expect("mara runs");
    child
        .stdin
        .take()
        .expect("stdin is piped")
        .write_all(input.as_bytes())
        .expect("writing mara's stdin");
    Out::from_output(child.wait_with_output().expect("mara runs"))
}

#[test]
fn task_add_with_body_role_and_priority_then_show_in_text_and_json() {
    let r = TestRepo::with_run(RUN);
    r.mara(&["task", "add", "T2", "Base"]).ok("add T2");
    // A long last line: show prints it whole even though stdout is a pipe.
    let tail = format!("done when: {}burst limit tested", "x".repeat(300));
    let body = format!("# Rate limiting\n\nA token bucket per client.\n\n{tail}\n");
    let file = r.write_outside("t7.md", &body);
    r.mara(&[
        "task",
        "add",
        "T7",
        "Rate limiting",
        "--body-file",
        file.to_str().expect("UTF-8"),
        "--role",
        "implementer",
        "--priority",
        "2",
        "--paths",
        "src/api/limit.rs",
        "--deps",
        "T2",
    ])
    .ok("task add with body, role and priority");
    mara_stdin(
        &r,
        &[
            "task",
            "add",
            "T8",
            "From stdin",
            "--body-file",
            "-",
            "--priority",
            "-1",
        ],
        "read from stdin\n",
    )
    .ok("task add --body-file -");
    assert_eq!(r.task("T8")["body"], "read from stdin\n");
    assert_eq!(r.task("T8")["priority"], -1);

    // Bad input: one line, exit 1 (or clap's 2), nothing written.
    assert_ref_unchanged(&r, RUN, || {
        r.mara(&["task", "add", "T9", "x", "--role", "Not A Role"])
    })
    .expect_code(1, "a role that is not a role name")
    .stderr_has("is not a role name");
    assert_ref_unchanged(&r, RUN, || {
        r.mara(&["task", "add", "T9", "x", "--priority", "high"])
    })
    .expect_code(2, "a priority that is not a number");
    assert_ref_unchanged(&r, RUN, || {
        r.mara(&["task", "add", "T9", "x", "--body-file", "/no/such/file"])
    })
    .expect_code(1, "a body file that does not exist")
    .stderr_has("/no/such/file");

    let out = r.mara(&["show", "T7"]);
    out.ok("show T7");
    let text = &out.stdout;
    for want in [
        "T7  Rate limiting",
        "status: open",
        "role: implementer   priority: 2",
        "paths: src/api/limit.rs",
        "T2  open",
        "A token bucket per client.",
        &tail,
        "added by",
    ] {
        assert!(text.contains(want), "show lacks {want:?}:\n{text}");
    }
    assert!(!text.contains('…'), "show cut something:\n{text}");

    let j = show_json(&r, "T7");
    assert_eq!(j["task"]["body"], body);
    assert_eq!(j["task"]["role"], "implementer");
    assert_eq!(j["task"]["priority"], 2);
    assert_eq!(j["deps"][0]["id"], "T2");
    assert_eq!(j["deps"][0]["status"], "open");
    assert_eq!(j["thread"][0]["type"], "task_add");
    assert_eq!(show_json(&r, "T2")["needed_by"], serde_json::json!(["T7"]));

    // The holder and its lease; the dep's work once it is done.
    r.mara_as("implementer#1", &["claim", "T2"]).ok("claim T2");
    let held = r.mara(&["show", "T2"]);
    held.ok("show T2");
    assert!(
        held.stdout.contains("held by implementer#1, last seen")
            && held.stdout.contains("lease runs out in"),
        "{}",
        held.stdout
    );
    assert_eq!(show_json(&r, "T2")["holder"]["id"], "implementer#1");
    assert_eq!(show_json(&r, "T2")["holder"]["expired"], false);
    std::fs::write(r.dir.join("implementer_1.md"), "# base\n").expect("artifact");
    // `done` wants its artifact committed (it records the commit holding it).
    r.git(&["add", "implementer_1.md"]);
    r.git(&["commit", "-q", "-m", "T2: base"]);
    r.mara_as(
        "implementer#1",
        &["done", "T2", "--artifact", "implementer_1.md"],
    )
    .ok("done T2");
    let out = r.mara(&["show", "T7"]);
    assert!(
        out.stdout.contains("T2  done") && out.stdout.contains("artifact implementer_1.md"),
        "{}",
        out.stdout
    );
    assert_eq!(
        show_json(&r, "T7")["deps"][0]["artifact"],
        "implementer_1.md"
    );

    r.mara(&["show", "T404"])
        .expect_code(1, "show of an unknown task")
        .stderr_has("no task T404");
    r.verify_ok();
}

#[test]
fn edits_change_open_tasks_and_only_the_holder_adds_paths_which_the_hook_enforces() {
    let r = hooks::run_with_hooks();
    let run = hooks::RUN;
    r.mara(&["task", "add", "T3", "Docs"]).ok("add T3");
    let body = r.write_outside("t3.md", "write the docs\n");
    r.mara(&[
        "task",
        "edit",
        "T3",
        "--title",
        "Docs v2",
        "--body-file",
        body.to_str().expect("UTF-8"),
        "--paths",
        "docs/api.md",
        "--deps",
        "T1",
        "--role",
        "implementer",
        "--priority",
        "5",
    ])
    .ok("edit an open task");
    assert!(
        newest_subject(&r.dir, run).starts_with("edit T3 by "),
        "{}",
        newest_subject(&r.dir, run)
    );
    let t3 = r.task("T3");
    assert_eq!(t3["title"], "Docs v2");
    assert_eq!(t3["body"], "write the docs\n");
    assert_eq!(t3["paths"], serde_json::json!(["docs/api.md"]));
    assert_eq!(t3["deps"], serde_json::json!(["T1"]));
    assert_eq!(t3["role"], "implementer");
    assert_eq!(t3["priority"], 5);
    // The board table shows role and priority once a task has them.
    let table = r.mara(&["board"]);
    assert!(
        table.stdout.contains("ROLE") && table.stdout.contains("PRIO"),
        "{}",
        table.stdout
    );

    assert_ref_unchanged(&r, run, || r.mara(&["task", "edit", "T1", "--deps", "T3"]))
        .expect_code(1, "a cycle")
        .stderr_has("dependency cycle");
    assert_ref_unchanged(&r, run, || r.mara(&["task", "edit", "T3"]))
        .expect_code(1, "an edit that changes nothing");
    r.mara(&["task", "edit", "T3", "--no-deps"]).ok("--no-deps");
    assert_eq!(r.task("T3")["deps"], serde_json::json!([]));

    let wt1 = hooks::worktree(&r, "wt1", "implementer#1");
    let wt2 = hooks::worktree(&r, "wt2", "implementer#2");
    r.mara_in(&["claim", "T1"], &[], Some(&wt1))
        .ok("implementer#1 claims T1");
    assert_ref_unchanged(&r, run, || {
        r.mara_in(&["task", "edit", "T1", "--title", "x"], &[], Some(&wt1))
    })
    .expect_code(3, "a claimed task's title")
    .stderr_has("only an open task can be edited")
    .stderr_has("--add-path");
    assert_ref_unchanged(&r, run, || {
        r.mara_in(
            &["task", "edit", "T1", "--add-path", "docs/**"],
            &[],
            Some(&wt2),
        )
    })
    .expect_code(3, "add-path by someone who does not hold it")
    .stderr_has("T1 is held by implementer#1");
    r.mara_in(
        &["task", "edit", "T1", "--add-path", "docs/**"],
        &[],
        Some(&wt1),
    )
    .ok("the holder adds a path");
    assert_eq!(
        r.task("T1")["paths"],
        serde_json::json!(["src/api/**", "docs/**"])
    );

    // The pre-commit hook now keeps others out of the added path.
    hooks::stage(&r, &wt2, "docs/guide.md", "# guide\n");
    let before = hooks::head(&r, &wt2);
    let refused = hooks::commit(&r, &wt2, &["-q", "-m", "docs"], &[]);
    assert_ne!(refused.code, 0, "the commit must fail: {refused:?}");
    refused.stderr_has("docs/guide.md").stderr_has("T1");
    assert_eq!(hooks::head(&r, &wt2), before);
    r.verify_ok();
}

#[test]
fn cancel_with_and_without_dependents() {
    let r = TestRepo::with_run(RUN);
    r.mara(&["task", "add", "A", "first"]).ok("add A");
    r.mara(&["task", "add", "B", "needs A", "--deps", "A"])
        .ok("add B");
    r.mara(&["task", "add", "C", "duplicate"]).ok("add C");

    r.mara(&["task", "cancel", "C", "--reason", "duplicate of A"])
        .ok("cancel C");
    assert!(newest_subject(&r.dir, RUN).starts_with("cancel C by "));
    assert_eq!(r.task("C")["status"], "cancelled");
    assert_ref_unchanged(&r, RUN, || r.mara_as("implementer#1", &["claim", "C"]))
        .expect_code(3, "claim of a cancelled task")
        .stderr_has("C is cancelled");
    let shown = r.mara(&["show", "C"]);
    assert!(shown.stdout.contains("duplicate of A"), "{}", shown.stdout);

    let refused = assert_ref_unchanged(&r, RUN, || r.mara(&["task", "cancel", "A"]));
    refused
        .expect_code(3, "cancel of a task with dependents")
        .stderr_has("B depend(s) on A")
        .stderr_has("--drop-deps");
    r.mara(&[
        "task",
        "cancel",
        "A",
        "--drop-deps",
        "--reason",
        "not needed",
    ])
    .ok("cancel A dropping it from B");
    assert_eq!(r.task("B")["deps"], serde_json::json!([]));
    r.mara_as("implementer#1", &["claim", "B"])
        .ok("B no longer waits for A");
    assert_ref_unchanged(&r, RUN, || r.mara(&["task", "cancel", "A"]))
        .expect_code(3, "cancel twice")
        .stderr_has("A is cancelled");
    let counts = r.mara(&["status"]);
    assert!(counts.stdout.contains("2 cancelled"), "{}", counts.stdout);
    r.verify_ok();
}

#[test]
fn a_reviewer_sends_a_task_back_and_the_same_implementer_reworks_it() {
    let r = reviewed_run(300);
    r.mara(&[
        "task",
        "add",
        "T1",
        "Rate limiting",
        "--role",
        "implementer",
    ])
    .ok("add T1");
    r.mara(&["task", "add", "T2", "Docs", "--deps", "T1"])
        .ok("add T2");
    r.mara_as("implementer#1", &["claim", "T1"]).ok("claim T1");
    assert_ref_unchanged(&r, RUN, || {
        r.mara_as("reviewer#1", &["review", "T1", "--approve"])
    })
    .expect_code(3, "review of a task that is not done")
    .stderr_has("not done and awaiting review");
    r.mara_as("implementer#1", &["done", "T1"]).ok("done T1");
    assert_eq!(r.task("T1")["status"], "review");

    // A release of the done task: the hint does not send anyone to claim --next.
    let released = assert_ref_unchanged(&r, RUN, || r.mara_as("reviewer#1", &["release", "T1"]));
    released.expect_code(3, "release of a done task");
    assert!(
        !released.stderr.contains("claim --next"),
        "{}",
        released.stderr
    );

    assert_ref_unchanged(&r, RUN, || {
        r.mara_as("implementer#2", &["review", "T1", "--approve"])
    })
    .expect_code(3, "review by an implementer")
    .stderr_has("for the reviewer role");
    assert_ref_unchanged(&r, RUN, || r.mara_as("implementer#2", &["claim", "T2"]))
        .expect_code(3, "a dependent before its dep is approved")
        .stderr_has("T2 waits for T1");
    assert_ref_unchanged(&r, RUN, || {
        r.mara_as("reviewer#1", &["review", "T404", "--approve"])
    })
    .expect_code(1, "review of an unknown task");

    r.mara_as(
        "reviewer#1",
        &["review", "T1", "--changes", "no test for the burst limit"],
    )
    .ok("send T1 back");
    assert_eq!(
        newest_subject(&r.dir, RUN),
        "review T1 by reviewer#1: changes requested"
    );
    let t1 = r.task("T1");
    assert_eq!(t1["status"], "open");
    assert_eq!(t1["sent_back"], 1);
    let table = r.mara(&["board"]);
    assert!(table.stdout.contains("sent back 1x"), "{}", table.stdout);

    // Its previous holder has the first claim on it.
    assert_ref_unchanged(&r, RUN, || r.mara_as("implementer#2", &["claim", "T1"]))
        .expect_code(3, "another implementer during the reservation")
        .stderr_has("T1 was sent back to implementer#1");
    assert_ref_unchanged(&r, RUN, || r.mara_as("implementer#2", &["claim", "--next"]))
        .expect_code(3, "claim --next of another implementer");
    let next = r.mara_as("implementer#1", &["claim", "--next"]);
    next.ok("the previous holder's claim --next");
    assert_eq!(next.stdout.trim(), "claim T1 by implementer#1");
    let shown = r.mara(&["show", "T1"]);
    assert!(
        shown.stdout.contains("no test for the burst limit")
            && shown.stdout.contains("sent back: 1 time(s)"),
        "{}",
        shown.stdout
    );

    r.mara_as("implementer#1", &["done", "T1"]).ok("done again");
    assert_ref_unchanged(&r, RUN, || r.mara_as("implementer#2", &["claim", "T2"]))
        .expect_code(3, "still waiting for the approval");
    r.mara_as(
        "reviewer#1",
        &["review", "T1", "--approve", "--note", "tests added"],
    )
    .ok("approve T1");
    assert_eq!(
        newest_subject(&r.dir, RUN),
        "review T1 by reviewer#1: approved"
    );
    assert_eq!(r.task("T1")["status"], "done");
    r.mara_as("implementer#2", &["claim", "T2"])
        .ok("T2 after T1's approval");
    let j = show_json(&r, "T1");
    assert_eq!(j["review"]["sent_back"], 1);
    assert_eq!(j["review"]["last_verdict"], "approve");
    let verdicts: Vec<&Value> = j["thread"]
        .as_array()
        .expect("a list")
        .iter()
        .filter(|e| e["type"] == "verdict")
        .collect();
    assert_eq!(verdicts.len(), 2, "{j}");

    // Review events carry the task's trailer.
    let log = r.git(&[
        "log",
        &format!("refs/mara/{RUN}"),
        "--format=%s",
        "--grep",
        "^Mara-Task: T1$",
    ]);
    assert!(
        log.contains("review T1 by reviewer#1: changes requested"),
        "{log}"
    );
    r.verify_ok();
}

#[test]
fn a_sent_back_task_is_free_for_anyone_of_its_role_after_the_lease() {
    let r = reviewed_run(1);
    r.mara(&["task", "add", "T1", "one", "--role", "implementer"])
        .ok("add T1");
    r.mara_as("implementer#1", &["claim", "T1"]).ok("claim");
    r.mara_as("implementer#1", &["done", "T1"]).ok("done");
    r.mara_as("reviewer#1", &["review", "T1", "--changes", "again"])
        .ok("changes");
    r.mara_as("implementer#2", &["claim", "T1"])
        .expect_code(3, "within the reservation")
        .stderr_has("sent back to implementer#1");
    std::thread::sleep(Duration::from_millis(1300));
    r.mara_as("implementer#2", &["claim", "T1"])
        .ok("after the reservation");
    // The silent implementer#1's lease ran out, and status says so.
    let status = r.mara(&["status"]);
    assert!(
        status.stdout.contains("leases run out: implementer#1")
            || status
                .stdout
                .contains("leases run out: implementer#1, reviewer#1"),
        "{}",
        status.stdout
    );
    r.verify_ok();
}

#[test]
fn review_without_a_review_step_is_an_error() {
    let r = TestRepo::with_run(RUN);
    r.mara(&["task", "add", "T1", "one"]).ok("add");
    r.mara_as("implementer#1", &["claim", "T1"]).ok("claim");
    r.mara_as("implementer#1", &["done", "T1"]).ok("done");
    assert_ref_unchanged(&r, RUN, || {
        r.mara_as("reviewer#1", &["review", "T1", "--approve"])
    })
    .expect_code(1, "no review step")
    .stderr_has("no review step");
    r.mara_as("reviewer#1", &["review", "T1"])
        .expect_code(2, "a review needs a verdict");
}

#[test]
fn integrate_refuses_unreviewed_tasks_unless_told_and_logs_it() {
    let r = reviewed_run(300);
    r.mara(&["task", "add", "T1", "one"]).ok("add T1");
    r.mara(&["task", "add", "T2", "two"]).ok("add T2");
    let branch = format!("mara/{RUN}/implementer_1");
    r.git(&["checkout", "-q", "-b", &branch]);
    std::fs::write(r.dir.join("one.txt"), "1\n").expect("a file");
    r.git(&["add", "one.txt"]);
    r.git(&["commit", "-q", "-m", "one"]);
    r.git(&["checkout", "-q", "main"]);
    for t in ["T1", "T2"] {
        r.mara_as("implementer#1", &["claim", t]).ok("claim");
        r.mara_as("implementer#1", &["done", t]).ok("done");
    }
    r.mara_as("reviewer#1", &["review", "T2", "--changes", "redo"])
        .ok("T2 sent back");

    let refused = assert_ref_unchanged(&r, RUN, || r.mara(&["integrate"]));
    refused
        .expect_code(3, "integrate with unreviewed tasks")
        .stderr_has("T1 await(s) review")
        .stderr_has("T2 sent back for changes")
        .stderr_has("--unreviewed");
    let integration = format!("refs/heads/mara/{RUN}/integration");
    assert!(
        r.git(&["for-each-ref", &integration]).is_empty(),
        "a refused integrate moved a branch"
    );
    let status = r.mara(&["status"]);
    assert!(
        status.stdout.contains("1 awaiting review") && status.stdout.contains("not approved yet"),
        "{}",
        status.stdout
    );

    r.mara(&["integrate", "--unreviewed"])
        .ok("integrate --unreviewed");
    let decisions = r.mara(&["log", "--type", "decision"]);
    assert!(
        decisions
            .stdout
            .contains("integrated with unreviewed tasks T1, T2"),
        "{}",
        decisions.stdout
    );
    assert!(!r.git(&["for-each-ref", &integration]).is_empty());
    assert!(subjects(&r.dir, RUN)
        .iter()
        .any(|s| s.starts_with("decision by ") && s.contains("unreviewed")));
    r.verify_ok();
}

#[test]
fn show_and_log_task_name_every_branch_holding_a_commit_of_the_task() {
    let r = TestRepo::with_run(RUN);
    r.mara(&["task", "add", "T1", "one"]).ok("add T1");
    r.git(&["checkout", "-q", "-b", "impl-1"]);
    std::fs::write(r.dir.join("one.txt"), "1\n").expect("a file");
    r.git(&["add", "one.txt"]);
    r.git(&[
        "commit",
        "-q",
        "-m",
        "t1 work\n\nMara-Task: T1\nMara-Instance: implementer#1",
    ]);
    let c = r.git(&["rev-parse", "HEAD"]).trim().to_owned();
    // Merged on: a second branch holds it too.
    r.git(&["checkout", "-q", "-b", "integration"]);
    r.git(&["commit", "-q", "--allow-empty", "-m", "later"]);
    r.git(&["checkout", "-q", "main"]);

    let j = show_json(&r, "T1");
    assert_eq!(j["commits"].as_array().map(Vec::len), Some(1), "{j}");
    assert_eq!(j["commits"][0]["commit"], c);
    assert_eq!(
        j["commits"][0]["instances"],
        serde_json::json!(["implementer#1"])
    );
    assert_eq!(
        j["commits"][0]["branches"],
        serde_json::json!(["impl-1", "integration"])
    );
    for args in [&["show", "T1"][..], &["log", "--task", "T1"][..]] {
        let out = r.mara(args);
        out.ok("show / log --task");
        let line = out
            .stdout
            .lines()
            .find(|l| l.contains(&c[..10]))
            .unwrap_or_else(|| panic!("no line for the commit:\n{}", out.stdout));
        assert!(
            line.contains("implementer#1") && line.contains("on impl-1, integration"),
            "{line}"
        );
    }
}

#[test]
fn a_review_role_the_config_does_not_have_is_an_error() {
    let r = TestRepo::new();
    init_with(
        &r,
        &serde_json::json!({
            "roles": [{"id": "implementer", "file": "roles/implementer.json", "instances": 1}],
            "coordination": {"review_role": "auditor"}
        }),
    )
    .expect_code(1, "a review role that is no role of the config")
    .stderr_has(
        "coordination.review_role is \"auditor\", which is none of the config's roles (implementer)",
    );
    assert!(r.git(&["for-each-ref", "refs/mara"]).is_empty());
}

#[test]
fn a_commit_by_an_instance_holding_no_task_says_so_in_the_log() {
    let r = hooks::run_with_hooks();
    let wt = hooks::worktree(&r, "wt1", "implementer#1");
    hooks::stage(&r, &wt, "free.txt", "x\n");
    hooks::commit(&r, &wt, &["-q", "-m", "no task"], &[]).ok("commit without a task");
    let out = r.mara(&["log", "--type", "progress"]);
    out.ok("log --type progress");
    assert!(
        out.stdout.contains("(its instance held no task)"),
        "{}",
        out.stdout
    );
}

#[test]
fn a_role_the_run_does_not_have_is_refused() {
    let r = TestRepo::new();
    let cfg = r.write_outside(
        "roles.json",
        r#"{"roles": [{"id": "implementer", "file": "roles/implementer.json", "instances": 2},
                      {"id": "reviewer", "file": "roles/reviewer.json", "instances": 1}],
            "coordination": {"review_role": "reviewer"}}"#,
    );
    r.mara(&[
        "init",
        "--run",
        "roles",
        "--config",
        cfg.to_str().expect("UTF-8"),
    ])
    .ok("init with roles");
    let before = r.tip("roles");
    let o = r.mara(&["task", "add", "T1", "x", "--role", "tester"]);
    o.expect_code(1, "a role the run lacks")
        .stderr_has("role tester is not one of the run's roles (implementer, reviewer)");
    r.mara_as(
        "implementer#1",
        &["post", "question", "?", "--to", "tester"],
    )
    .expect_code(1, "a message to a role the run lacks");
    assert_eq!(r.tip("roles"), before, "nothing written");
    r.mara(&["task", "add", "T1", "x", "--role", "implementer"])
        .ok("a role the run has");
}
