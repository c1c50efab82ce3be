//! Issue 14, a team's day: waiting for work without polling (`claim --next
//! --wait`, `inbox --wait`, `log --follow`), dependencies' work that reaches the
//! claimer (`done` records the commit, `claim` shows it, `merge-deps` brings it
//! in), addressed messages and the inbox, and a channel that is read whole.

use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::common::{git, output_within, subjects, Origin, Out, TestRepo};

/// Spawns `mara args` as `instance` in `cwd` (the repository by default).
fn spawn_as(r: &TestRepo, instance: &str, args: &[&str], cwd: Option<&Path>) -> Child {
    r.mara_command(args, &[("MARA_INSTANCE", instance)], cwd)
        .spawn()
        .expect("mara starts")
}

/// `who` waiting for work: `mara claim --next --wait 30`.
fn waiter(r: &TestRepo, who: &str) -> Child {
    spawn_as(r, who, &["claim", "--next", "--wait", "30"], None)
}

/// Clone `a` creates run `r` in remote mode through a `git daemon`; clone `b`
/// joins it.
fn two_clones(origin: &Origin) -> (TestRepo, TestRepo) {
    let a = origin.clone_repo("a");
    a.mara(&["init", "--run", "r", "--remote", "origin"])
        .ok("init --remote");
    let b = origin.clone_repo("b");
    let joined = b.mara(&["sync", "--run", "r"]);
    joined.ok("sync");
    // Regression: a clone's first sync warned that its marker was lost.
    assert!(!joined.stderr.contains("warning"), "{joined:?}");
    (a, b)
}

/// Waits up to `limit` for `child` to exit; `None` if it is still running.
fn exited_within(child: &mut Child, limit: Duration) -> Option<i32> {
    let started = Instant::now();
    loop {
        if let Some(s) = child.try_wait().expect("polling the child") {
            return Some(s.code().unwrap_or(-1));
        }
        if started.elapsed() > limit {
            return None;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Collects a finished child's output.
fn finish(child: Child) -> Out {
    Out::from_output(child.wait_with_output().expect("collecting the output"))
}

/// A run with `T0` held by `implementer#9`, so a `claim --next` of another
/// implementer finds nothing ready, but something left: it waits.
fn busy_run() -> TestRepo {
    let r = TestRepo::with_run("r");
    r.mara(&["task", "add", "T0", "held elsewhere"])
        .ok("task add");
    r.mara_as("implementer#9", &["claim", "T0"]).ok("claim T0");
    r
}

#[test]
fn three_waiters_and_one_new_task_wake_exactly_one_and_a_drained_board_stops_the_rest() {
    let r = busy_run();
    let mut waiters: Vec<(String, Child)> = (1..=3)
        .map(|k| {
            let who = format!("implementer#{k}");
            let c = waiter(&r, &who);
            (who, c)
        })
        .collect();
    // They are waiting, not refused.
    std::thread::sleep(Duration::from_millis(700));
    for (who, c) in &mut waiters {
        assert!(
            c.try_wait().expect("polling").is_none(),
            "{who} stopped waiting before there was work"
        );
    }
    r.mara(&["task", "add", "T1", "new work"]).ok("task add T1");
    // Exactly one wakes with T1; the others keep waiting.
    let started = Instant::now();
    let mut winner = None;
    while winner.is_none() && started.elapsed() < Duration::from_secs(10) {
        for (i, (_, c)) in waiters.iter_mut().enumerate() {
            if c.try_wait().expect("polling").is_some() {
                winner = Some(i);
                break;
            }
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    let winner = winner.expect("one waiter took the new task");
    let (who, child) = waiters.remove(winner);
    let out = finish(child);
    out.ok("the woken waiter");
    assert!(
        out.stdout.contains(&format!("claim T1 by {who}")),
        "{out:?}"
    );
    std::thread::sleep(Duration::from_millis(500));
    for (other, c) in &mut waiters {
        assert!(
            c.try_wait().expect("polling").is_none(),
            "{other} stopped waiting though {who} took the only task"
        );
    }
    assert_eq!(r.task_state("T1"), ("claimed".into(), Some(who.clone())));
    // Drain the board: nothing is left for an implementer, the waiters stop with 4.
    r.mara_as("implementer#9", &["done", "T0"]).ok("done T0");
    r.mara_as(&who, &["done", "T1"]).ok("done T1");
    for (other, mut c) in waiters {
        let code = exited_within(&mut c, Duration::from_secs(5));
        let out = finish(c);
        assert_eq!(code, Some(4), "{other}: {out:?}");
        out.stderr_has("nothing left");
    }
    // Without --wait the answer is the same at once.
    r.mara_as("implementer#5", &["claim", "--next"])
        .expect_code(4, "claim --next on a drained board");
    assert_eq!(
        subjects(&r.dir, "r")
            .iter()
            .filter(|s| s.starts_with("claim T1"))
            .count(),
        1
    );
    r.verify_ok();
}

#[test]
fn a_wait_that_runs_out_is_exit_3() {
    let r = busy_run();
    let started = Instant::now();
    let out = r.mara_as("implementer#1", &["claim", "--next", "--wait", "1"]);
    out.expect_code(3, "a wait with nothing coming")
        .stderr_has("nothing ready");
    assert!(started.elapsed() >= Duration::from_secs(1));
}

/// User and system CPU time of a live process, from `/proc/<pid>/stat`.
fn cpu_time(pid: u32) -> Duration {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).expect("reading /proc stat");
    // Fields after the command name in parentheses: state is field 3, utime 14, stime 15.
    let rest = &stat[stat.rfind(')').expect("a stat line") + 2..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks: u64 = f[11].parse::<u64>().expect("utime") + f[12].parse::<u64>().expect("stime");
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as u64;
    Duration::from_millis(ticks * 1000 / hz)
}

#[test]
fn a_waiting_process_uses_next_to_no_cpu() {
    let r = busy_run();
    let mut c = waiter(&r, "implementer#1");
    std::thread::sleep(Duration::from_secs(5));
    let used = cpu_time(c.id());
    assert!(
        c.try_wait().expect("polling").is_none(),
        "the waiter stopped"
    );
    let _ = c.kill();
    let _ = c.wait();
    assert!(
        used < Duration::from_millis(100),
        "a waiter used {used:?} of CPU time over 5 s"
    );
}

#[test]
fn wait_in_remote_mode_gets_a_task_another_clone_adds() {
    let origin = Origin::daemon();
    let (a, b) = two_clones(&origin);
    a.mara(&["task", "add", "T0", "held"]).ok("task add");
    a.mara_as("implementer#9", &["claim", "T0"]).ok("claim T0");
    b.mara(&["sync"]).ok("sync");
    let mut c = waiter(&b, "implementer#1");
    std::thread::sleep(Duration::from_millis(800));
    assert!(
        c.try_wait().expect("polling").is_none(),
        "the waiter stopped"
    );
    a.mara(&["task", "add", "T1", "new"]).ok("task add T1");
    let added = Instant::now();
    // poll_sec is 2 by default: a fetch at least every 2 s, plus the push.
    let code = exited_within(&mut c, Duration::from_secs(10));
    let took = added.elapsed();
    let out = finish(c);
    assert_eq!(code, Some(0), "{out:?}");
    assert!(out.stdout.contains("claim T1 by implementer#1"), "{out:?}");
    assert!(took < Duration::from_secs(4), "took {took:?}");
    assert_eq!(
        origin.subjects("r").first().map(String::as_str),
        Some("claim T1 by implementer#1")
    );
}

/// A linked worktree `wt-<name>` on a new branch `<name>` from `main`, acting as
/// `instance`.
fn worktree(r: &TestRepo, name: &str, instance: &str) -> PathBuf {
    let dir = r.root().join(format!("wt-{name}"));
    r.git(&[
        "worktree",
        "add",
        "-q",
        "-b",
        name,
        dir.to_str().expect("UTF-8 path"),
        "main",
    ]);
    r.git(&["config", "extensions.worktreeConfig", "true"]);
    git(&dir, &["config", "--worktree", "mara.instance", instance]);
    dir
}

fn write(dir: &Path, path: &str, text: &str) {
    let p = dir.join(path);
    std::fs::create_dir_all(p.parent().expect("a parent")).expect("mkdir");
    std::fs::write(p, text).expect("writing a file");
}

fn commit_all(dir: &Path, msg: &str) -> String {
    git(dir, &["add", "-A"]);
    git(dir, &["commit", "-q", "-m", msg]);
    git(dir, &["rev-parse", "HEAD"]).trim().to_owned()
}

#[test]
fn done_records_the_commit_and_merge_deps_brings_it_to_the_dependent() {
    let r = TestRepo::with_run("r");
    r.mara(&["task", "add", "T1", "api", "--paths", "src/api/**"])
        .ok("add T1");
    r.mara(&["task", "add", "T2", "ui", "--deps", "T1"])
        .ok("add T2");
    let w1 = worktree(&r, "impl1", "implementer#1");
    let w2 = worktree(&r, "impl2", "implementer#2");
    r.mara_in(&["claim", "T1"], &[], Some(&w1)).ok("claim T1");
    write(&w1, "src/api/limit.rs", "fn limit() {}\n");
    write(&w1, "notes.md", "unrelated\n");
    // Uncommitted work in the task's paths: refused, nothing written.
    let before = r.tip("r");
    r.mara_in(&["done", "T1"], &[], Some(&w1))
        .expect_code(1, "done with uncommitted work")
        .stderr_has("src/api/limit.rs")
        .stderr_has("commit them");
    assert_eq!(r.tip("r"), before);
    git(&w1, &["add", "src/api/limit.rs"]);
    r.mara_in(&["done", "T1"], &[], Some(&w1))
        .expect_code(1, "done with staged work");
    git(&w1, &["commit", "-q", "-m", "T1: the limit"]);
    // An untracked artifact must be committed too; notes.md is not the task's.
    write(&w1, "implementer_1.md", "report\n");
    r.mara_in(
        &["done", "T1", "--artifact", "implementer_1.md"],
        &[],
        Some(&w1),
    )
    .expect_code(1, "done with an untracked artifact")
    .stderr_has("implementer_1.md");
    git(&w1, &["add", "implementer_1.md"]);
    let t1 = commit_all_but(&w1, "T1: report", "notes.md");
    r.mara_in(
        &[
            "done",
            "T1",
            "--artifact",
            "implementer_1.md",
            "--note",
            "token bucket",
        ],
        &[],
        Some(&w1),
    )
    .ok("done T1");
    let board = r.board();
    let task = &board["tasks"][0];
    assert_eq!(task["commit"], t1.as_str());
    assert_eq!(task["branch"], "impl1");
    assert_eq!(task["note"], "token bucket");

    // The claimer of T2 learns where T1's work is.
    let out = r.mara_in(&["claim", "T2", "--json"], &[], Some(&w2));
    out.ok("claim T2");
    let v: Value = serde_json::from_str(&out.stdout).expect("claim --json");
    assert_eq!(v["deps"][0]["task"], "T1");
    assert_eq!(v["deps"][0]["commit"], t1.as_str());
    assert_eq!(v["deps"][0]["branch"], "impl1");
    let text = r.mara_in(&["claim", "T2"], &[], Some(&w2));
    text.ok("claim T2 again");
    assert!(
        text.stdout.contains(&t1[..10]) && text.stdout.contains("impl1"),
        "{text:?}"
    );
    // merge-deps fast-forwards the new branch to T1's commit.
    let out = r.mara_in(&["merge-deps"], &[], Some(&w2));
    out.ok("merge-deps");
    assert!(out.stdout.contains("fast-forward"), "{out:?}");
    assert_eq!(git(&w2, &["rev-parse", "HEAD"]).trim(), t1);
    assert!(w2.join("src/api/limit.rs").is_file());
    // Again: nothing new.
    let out = r.mara_in(&["merge-deps"], &[], Some(&w2));
    out.ok("merge-deps again");
    assert!(out.stdout.contains("up to date"), "{out:?}");
    r.verify_ok();
}

/// Commits everything staged and unstaged except `keep` (left untracked).
fn commit_all_but(dir: &Path, msg: &str, keep: &str) -> String {
    git(dir, &["add", "-A", "--", ".", &format!(":!{keep}")]);
    git(dir, &["commit", "-q", "-m", msg]);
    git(dir, &["rev-parse", "HEAD"]).trim().to_owned()
}

#[test]
fn merge_deps_merges_each_dependency_once_and_a_conflict_leaves_the_worktree_as_it_was() {
    let r = TestRepo::with_run("r");
    for (id, deps) in [("T1", ""), ("T2", ""), ("T3", "T1,T2"), ("T4", "T1")] {
        let mut args = vec!["task", "add", id, "work"];
        if !deps.is_empty() {
            args.extend(["--deps", deps]);
        }
        r.mara(&args).ok("task add");
    }
    let w1 = worktree(&r, "impl1", "implementer#1");
    let w2 = worktree(&r, "impl2", "implementer#2");
    let w3 = worktree(&r, "impl3", "implementer#3");
    r.mara_in(&["claim", "T1"], &[], Some(&w1)).ok("claim T1");
    write(&w1, "README.md", "# one\n");
    commit_all(&w1, "T1");
    r.mara_in(&["done", "T1"], &[], Some(&w1)).ok("done T1");
    r.mara_in(&["claim", "T2"], &[], Some(&w2)).ok("claim T2");
    write(&w2, "README.md", "# two\n");
    commit_all(&w2, "T2");
    r.mara_in(&["done", "T2"], &[], Some(&w2)).ok("done T2");
    // T3 needs both: T1 fast-forwards, T2 conflicts in README.md.
    write(&w3, "scratch.txt", "untracked, kept\n");
    let before = git(&w3, &["rev-parse", "HEAD"]);
    let out = r.mara_in(&["claim", "--next", "--merge-deps"], &[], Some(&w3));
    out.expect_code(1, "a conflicting pair")
        .stderr_has("conflicts in README.md")
        .stderr_has("T3 is yours");
    assert_eq!(git(&w3, &["rev-parse", "HEAD"]), before, "HEAD moved");
    assert_eq!(
        git(&w3, &["status", "--porcelain"]),
        "?? scratch.txt\n",
        "the worktree changed"
    );
    assert_eq!(
        std::fs::read_to_string(w3.join("README.md")).expect("README"),
        "# scratch\n"
    );
    assert_eq!(
        r.task_state("T3"),
        ("claimed".into(), Some("implementer#3".into()))
    );
    // T4 needs T1 only, in a branch with a commit of its own: a merge commit.
    r.mara_in(&["release", "T3"], &[], Some(&w3))
        .ok("release T3");
    write(&w3, "other.txt", "mine\n");
    commit_all(&w3, "own work");
    r.mara_in(&["claim", "T4"], &[], Some(&w3)).ok("claim T4");
    let out = r.mara_in(&["merge-deps", "--json"], &[], Some(&w3));
    out.ok("merge-deps T4");
    let v: Value = serde_json::from_str(&out.stdout).expect("merge-deps --json");
    assert_eq!(v["merged"][0]["how"], "merge commit");
    let msg = git(&w3, &["log", "-1", "--format=%s"]);
    assert!(msg.contains("T1") && msg.contains("T4"), "{msg}");
    assert_eq!(
        std::fs::read_to_string(w3.join("README.md")).expect("README"),
        "# one\n"
    );
}

#[test]
fn inbox_lists_what_is_for_me_once_and_post_checks_its_references() {
    let r = TestRepo::with_run("r");
    r.mara(&["task", "add", "T7", "limits"]).ok("task add");
    let long = format!("is /v2 in scope? {}", "details ".repeat(40));
    let q = r.mara_as(
        "implementer#1",
        &[
            "post",
            "question",
            &long,
            "--to",
            "implementer#2",
            "--task",
            "T7",
        ],
    );
    q.ok("post to implementer#2");
    // The echo is whole into a pipe.
    assert!(q.stdout.contains(long.trim_end()), "{q:?}");
    let seq: u64 = q
        .stdout
        .split_whitespace()
        .next()
        .expect("a seq")
        .parse()
        .expect("seq first");
    r.mara_as(
        "implementer#1",
        &[
            "post",
            "note",
            "for every implementer",
            "--to",
            "implementer",
        ],
    )
    .ok("post to a role");
    r.mara_as("reviewer#1", &["post", "note", "for everyone"])
        .ok("post to all");
    r.mara_as(
        "implementer#1",
        &[
            "post",
            "note",
            "for implementer#3 only",
            "--to",
            "implementer#3",
        ],
    )
    .ok("post to another");
    r.mara_as(
        "implementer#1",
        &["post", "note", "for reviewers", "--to", "reviewer"],
    )
    .ok("post to reviewers");

    let out = r.mara_as("implementer#2", &["inbox"]);
    out.ok("inbox");
    assert!(out.stdout.contains(long.trim_end()), "whole text: {out:?}");
    assert!(out.stdout.contains("for every implementer"));
    assert!(out.stdout.contains("for everyone"));
    assert!(!out.stdout.contains("implementer#3 only"));
    assert!(!out.stdout.contains("for reviewers"));
    // The cursor moved: nothing new now.
    let out = r.mara_as("implementer#2", &["inbox", "--json"]);
    out.ok("inbox again");
    assert_eq!(out.stdout, "");
    // An answer arrives; --json carries it with its thread.
    let before = r.tip("r");
    r.mara_as(
        "implementer#3",
        &["post", "answer", "no", "--reply-to", "9999"],
    )
    .expect_code(1, "reply to a seq that does not exist")
    .stderr_has("9999");
    r.mara_as("implementer#3", &["post", "answer", "no", "--task", "T99"])
        .expect_code(1, "a message about an unknown task");
    r.mara_as(
        "implementer#3",
        &["post", "answer", "no", "--to", "Not A Role"],
    )
    .expect_code(1, "to nobody");
    assert_eq!(r.tip("r"), before, "a refused post wrote something");
    r.mara_as(
        "implementer#3",
        &[
            "post",
            "answer",
            "only /v1",
            "--reply-to",
            &seq.to_string(),
            "--to",
            "implementer#2",
        ],
    )
    .ok("answer");
    let out = r.mara_as("implementer#2", &["inbox", "--json"]);
    out.ok("inbox --json");
    let lines: Vec<Value> = out
        .stdout
        .lines()
        .map(|l| serde_json::from_str(l).expect("a JSON line"))
        .collect();
    assert_eq!(lines.len(), 1, "{out:?}");
    assert_eq!(lines[0]["type"], "answer");
    assert_eq!(lines[0]["payload"]["reply_to"], seq);
    assert_eq!(lines[0]["payload"]["to"], "implementer#2");
    // Cursors are per instance: implementer#3 still has everything for it.
    let out = r.mara_as("implementer#3", &["inbox"]);
    assert!(out.stdout.contains("implementer#3 only"), "{out:?}");
    // The whole log, into a pipe, cuts nothing either.
    let log = r.mara(&["log"]);
    assert!(log.stdout.contains(long.trim_end()), "{log:?}");
    r.verify_ok();
}

#[test]
fn inbox_across_two_clones_and_inbox_wait() {
    let origin = Origin::daemon();
    let (a, b) = two_clones(&origin);
    a.mara_as(
        "implementer#1",
        &[
            "post",
            "question",
            "where is the API?",
            "--to",
            "implementer#2",
        ],
    )
    .ok("post from a");
    let out = b.mara_as("implementer#2", &["inbox"]);
    out.ok("inbox in b");
    assert!(out.stdout.contains("where is the API?"), "{out:?}");
    // inbox --wait returns when the next message comes.
    let c = b.mara_command(
        &["inbox", "--wait", "20"],
        &[("MARA_INSTANCE", "implementer#2")],
        None,
    );
    let poster = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(800));
        a.mara_as(
            "implementer#1",
            &["post", "note", "in src/api", "--to", "implementer#2"],
        )
        .ok("second post");
        a
    });
    let (out, took) = output_within(c, Duration::from_secs(15), "inbox --wait");
    let _a = poster.join().expect("the poster");
    out.ok("inbox --wait");
    assert!(out.stdout.contains("in src/api"), "{out:?}");
    assert!(
        !out.stdout.contains("where is the API?"),
        "read twice: {out:?}"
    );
    assert!(took < Duration::from_secs(6), "took {took:?}");
}

#[test]
fn log_follow_prints_new_events_as_they_come() {
    let r = TestRepo::with_run("r");
    let cmd = r.mara_command(
        &["log", "--since", "1", "--follow", "--wait", "3"],
        &[],
        None,
    );
    let dir = r.dir.clone();
    let home = r.home.clone();
    let poster = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(700));
        let mut c = Command::new(crate::common::MARA);
        crate::common::clean_env(&mut c, &home);
        let out = c
            .args(["post", "note", "hello followers"])
            .env("MARA_INSTANCE", "architect#1")
            .current_dir(&dir)
            .output()
            .expect("mara runs");
        assert!(out.status.success());
    });
    let (out, took) = output_within(cmd, Duration::from_secs(10), "log --follow");
    poster.join().expect("the poster");
    out.ok("log --follow");
    assert!(out.stdout.contains("hello followers"), "{out:?}");
    assert!(
        !out.stdout.contains("init"),
        "--since 1 leaves out the init: {out:?}"
    );
    assert!(took >= Duration::from_secs(3));
}
