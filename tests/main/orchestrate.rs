//! Tests of `mara run` (the orchestrator) and `mara demo`: real repositories, real
//! instance processes (small shell scripts in the test's directory, or the seed's
//! scripted agent), real signals.

use std::collections::BTreeSet;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::common::{
    cfg_dir, copy_seed, count_commits_with_subject, subjects, Out, TestRepo, SEED,
};

/// Writes `<tmp>/cfg/<name>` and returns its path.
pub(crate) fn write_cfg(r: &TestRepo, name: &str, contents: &str) -> PathBuf {
    let p = cfg_dir(r).join(name);
    std::fs::write(&p, contents).expect("writing a config file");
    p
}

/// A role whose instances run `sh <tmp>/cfg/<role>.sh <extra args>`: writes the
/// script and `roles/<role>.json` (with `more` merged into the role file's JSON).
pub(crate) fn script_role(r: &TestRepo, role: &str, script: &str, args: &[&str], more: Value) {
    write_cfg(r, &format!("{role}.sh"), script);
    let mut command = vec!["sh".to_owned(), format!("{{config_dir}}/{role}.sh")];
    command.extend(args.iter().map(|a| (*a).to_owned()));
    let mut spec = serde_json::json!({ "command": command, "prompt": "you are {instance}" });
    if let Value::Object(m) = more {
        for (k, v) in m {
            spec[k] = v;
        }
    }
    write_cfg(r, &format!("roles/{role}.json"), &spec.to_string());
}

/// A role of the seed's kind that runs the seed's scripted agent (copied by
/// [`copy_seed`]).
fn agent_role(r: &TestRepo, role: &str, more: Value) {
    let mut spec = serde_json::json!({
        "command": ["sh", "{config_dir}/roles/scripted-agent.sh"],
        "prompt": "you are {instance}",
    });
    if let Value::Object(m) = more {
        for (k, v) in m {
            spec[k] = v;
        }
    }
    write_cfg(r, &format!("roles/{role}.json"), &spec.to_string());
}

/// `<tmp>/cfg/<name>`: a config listing `roles` (id, instances), with `coordination`.
pub(crate) fn config(
    r: &TestRepo,
    name: &str,
    roles: &[(&str, u32)],
    coordination: Value,
) -> PathBuf {
    let roles: Vec<Value> = roles
        .iter()
        .map(|(id, n)| serde_json::json!({"id": id, "file": format!("roles/{id}.json"), "instances": n}))
        .collect();
    let cfg = serde_json::json!({ "roles": roles, "coordination": coordination });
    write_cfg(r, name, &serde_json::to_string_pretty(&cfg).expect("JSON"))
}

/// `mara --run <run> run --config <config> [--tasks <tasks>]` in the repository.
pub(crate) fn mara_run_command(
    r: &TestRepo,
    run: &str,
    config: &Path,
    tasks: Option<&Path>,
) -> Command {
    let mut args = vec![
        "--run".to_owned(),
        run.to_owned(),
        "run".to_owned(),
        "--config".to_owned(),
        config.display().to_string(),
    ];
    if let Some(t) = tasks {
        args.push("--tasks".to_owned());
        args.push(t.display().to_string());
    }
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    r.mara_command(&args, &[], None)
}

/// Runs `mara run` to its end; returns what it said and how long it took.
pub(crate) fn mara_run(
    r: &TestRepo,
    run: &str,
    config: &Path,
    tasks: Option<&Path>,
) -> (Out, Duration) {
    let t = Instant::now();
    let out = mara_run_command(r, run, config, tasks)
        .output()
        .expect("mara run starts");
    (Out::from_output(out), t.elapsed())
}

/// The run's commit subjects, oldest first.
pub(crate) fn events(r: &TestRepo, run: &str) -> Vec<String> {
    let mut s = subjects(&r.dir, run);
    s.reverse();
    s
}

/// The position of the one event whose subject is `subject` (oldest first).
#[track_caller]
fn position(events: &[String], subject: &str) -> usize {
    let hits: Vec<usize> = events
        .iter()
        .enumerate()
        .filter(|(_, s)| s.as_str() == subject)
        .map(|(i, _)| i)
        .collect();
    assert_eq!(
        hits.len(),
        1,
        "expected exactly one event {subject:?}, found {}; events:\n{}",
        hits.len(),
        events.join("\n")
    );
    hits[0]
}

/// The status subjects of one instance, oldest first: `starting`, `running`, ...
fn statuses_of(events: &[String], instance: &str) -> Vec<String> {
    let prefix = format!("instance {instance} ");
    events
        .iter()
        .filter_map(|s| s.strip_prefix(&prefix))
        .map(|rest| rest.split(' ').next().unwrap_or_default().to_owned())
        .collect()
}

/// `mara --run <run> status --json`, parsed.
#[track_caller]
pub(crate) fn status(r: &TestRepo, run: &str) -> Value {
    let out = r.mara(&["--run", run, "status", "--json"]);
    out.ok("mara status --json");
    serde_json::from_str(&out.stdout).expect("status --json prints one JSON value")
}

/// The instance `id` in `mara status --json`.
#[track_caller]
pub(crate) fn instance(status: &Value, id: &str) -> Value {
    status["instances"]
        .as_array()
        .expect("instances is a list")
        .iter()
        .find(|i| i["id"] == id)
        .unwrap_or_else(|| panic!("instance {id} is not in the status: {status}"))
        .clone()
}

/// `mara --run <run> board --json`'s tasks: id -> (status, holder).
#[track_caller]
fn tasks(r: &TestRepo, run: &str) -> Vec<(String, String, Option<String>)> {
    let out = r.mara(&["--run", run, "board", "--json"]);
    out.ok("mara board --json");
    let board: Value = serde_json::from_str(&out.stdout).expect("board --json is JSON");
    board["tasks"]
        .as_array()
        .expect("tasks is a list")
        .iter()
        .map(|t| {
            (
                t["id"].as_str().expect("id").to_owned(),
                t["status"].as_str().expect("status").to_owned(),
                t["claimed_by"].as_str().map(str::to_owned),
            )
        })
        .collect()
}

/// `mara --run <run> log --json`, one value per event.
#[track_caller]
pub(crate) fn log_json(r: &TestRepo, run: &str) -> Vec<Value> {
    let out = r.mara(&["--run", run, "log", "--json"]);
    out.ok("mara log --json");
    out.stdout
        .lines()
        .map(|l| serde_json::from_str(l).expect("log --json prints JSON lines"))
        .collect()
}

/// `<repo>/.multi_agent_runs/<run>/logs/<stem>.log`.
fn log_path(r: &TestRepo, run: &str, stem: &str) -> PathBuf {
    r.dir
        .join(".multi_agent_runs")
        .join(run)
        .join("logs")
        .join(format!("{stem}.log"))
}

/// Asserts `mara --run <run> verify` exits 0.
#[track_caller]
pub(crate) fn verify_ok(r: &TestRepo, run: &str) {
    r.mara(&["--run", run, "verify"]).ok("mara verify");
}

/// Whether a process is alive: it exists and is not a zombie.
fn alive(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Err(_) => false,
        Ok(stat) => {
            let state = stat
                .rsplit_once(')')
                .and_then(|(_, rest)| rest.trim_start().chars().next());
            !matches!(state, Some('Z') | Some('X') | None)
        }
    }
}

/// Sends `sig` (like "INT", "KILL") to `pid` with kill(1).
fn kill(sig: &str, pid: u32) {
    let _ = Command::new("kill")
        .arg(format!("-{sig}"))
        .arg(pid.to_string())
        .status();
}

/// The PIDs the scripts wrote into `dir` (one file per process).
fn pids_in(dir: &Path) -> Vec<(String, u32)> {
    let mut pids = vec![];
    if let Ok(rd) = std::fs::read_dir(dir) {
        for e in rd.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            if let Some(pid) = std::fs::read_to_string(e.path())
                .ok()
                .and_then(|s| s.trim().parse().ok())
            {
                pids.push((name, pid));
            }
        }
    }
    pids.sort();
    pids
}

/// Kills what a failed test may leave running: the `mara run` child and the
/// processes whose PIDs the scripts wrote.
struct Cleanup {
    child: Option<Child>,
    pid_dir: PathBuf,
}

impl Drop for Cleanup {
    fn drop(&mut self) {
        if let Some(c) = &mut self.child {
            if let Ok(None) = c.try_wait() {
                let _ = c.kill();
                let _ = c.wait();
            }
        }
        for (_, pid) in pids_in(&self.pid_dir) {
            if alive(pid) {
                kill("KILL", pid);
            }
        }
    }
}

/// Asserts that a failed `mara run` wrote nothing: no run ref, no branch, no
/// worktree, no run folder, no current run.
#[track_caller]
fn assert_nothing_written(r: &TestRepo, what: &str) {
    assert_eq!(
        r.git(&["for-each-ref", "refs/mara"]),
        "",
        "{what}: a run ref was written"
    );
    assert_eq!(
        r.git(&["for-each-ref", "refs/heads/mara"]),
        "",
        "{what}: a branch was created"
    );
    assert!(
        !r.dir.join(".multi_agent_runs").exists(),
        "{what}: .multi_agent_runs was created"
    );
    assert_eq!(
        r.git(&["worktree", "list", "--porcelain"])
            .lines()
            .filter(|l| l.starts_with("worktree "))
            .count(),
        1,
        "{what}: a worktree was added"
    );
    let mut cmd = Command::new("git");
    crate::common::clean_env(&mut cmd, &r.home);
    let current = cmd
        .args(["config", "mara.run"])
        .current_dir(&r.dir)
        .output()
        .expect("git runs");
    assert!(
        !current.status.success(),
        "{what}: mara.run was set to {}",
        String::from_utf8_lossy(&current.stdout)
    );
}

const PLAN8: &str = r#"[
  {"id": "T1", "title": "Design the API", "paths": ["docs/api.md"]},
  {"id": "T2", "title": "API endpoints", "deps": ["T1"], "paths": ["src/api/**"]},
  {"id": "T3", "title": "UI screens", "deps": ["T1"], "paths": ["src/ui/**"]},
  {"id": "T4", "title": "Storage layer", "paths": ["src/store/**"]},
  {"id": "T5", "title": "Tests for API and UI", "deps": ["T2", "T3"]},
  {"id": "T6", "title": "Storage migrations", "deps": ["T4"]},
  {"id": "T7", "title": "Command line"},
  {"id": "T8", "title": "Write the docs", "deps": ["T5", "T6", "T7"]}
]"#;

#[test]
fn seed_roles_run_the_plan_end_to_end() {
    let run = "e2e";
    let r = TestRepo::new();
    let config = copy_seed(&r);
    let plan = write_cfg(&r, "tasks.json", PLAN8);
    let (out, took) = mara_run(&r, run, &config, Some(&plan));
    out.ok("mara run with the seed's four roles");
    assert!(took < Duration::from_secs(30), "the run took {took:?}");

    // Every task done (and approved) once, but the one the reviewer sent back,
    // which its implementer did twice.
    let ids: Vec<String> = (1..=8).map(|i| format!("T{i}")).collect();
    let board = tasks(&r, run);
    assert_eq!(board.len(), 8, "{board:?}");
    for (id, st, _) in &board {
        assert_eq!(st, "done", "{id} is not done: {board:?}");
    }
    let sent_back = sent_back_once_and_reworked(&r.dir, run);
    for id in &ids {
        assert_eq!(
            count_commits_with_subject(&r.dir, run, &format!("done {id} by ")),
            if *id == sent_back { 2 } else { 1 },
            "{id} must be done exactly once, the sent-back task twice"
        );
        assert_eq!(
            count_commits_with_subject(
                &r.dir,
                run,
                &format!("review {id} by reviewer#1: approved")
            ),
            1,
            "{id} must be approved once"
        );
    }

    // Lifecycle events of every instance, in order; `after` is respected.
    let ev = events(&r, run);
    let instances = [
        ("architect#1", "architect_1"),
        ("implementer#1", "implementer_1"),
        ("implementer#2", "implementer_2"),
        ("reviewer#1", "reviewer_1"),
        ("integrator#1", "integrator_1"),
    ];
    for (id, _) in instances {
        assert_eq!(
            statuses_of(&ev, id),
            ["starting", "running", "exited"],
            "status events of {id}:\n{}",
            ev.join("\n")
        );
        let starting = position(&ev, &format!("instance {id} starting by orchestrator#1"));
        let running = position(&ev, &format!("instance {id} running by orchestrator#1"));
        let exited = position(&ev, &format!("instance {id} exited by orchestrator#1"));
        assert!(starting < running && running < exited, "{id}: {ev:#?}");
    }
    let at = |id: &str, st: &str| position(&ev, &format!("instance {id} {st} by orchestrator#1"));
    // With a review step the reviewer starts with the workers (it waits for done
    // tasks), and the integrator once every one of them ended.
    let reviewer_starts = at("reviewer#1", "starting");
    for w in ["architect#1", "implementer#1", "implementer#2"] {
        assert!(
            reviewer_starts < at(w, "exited"),
            "reviewer#1 waited for {w}:\n{}",
            ev.join("\n")
        );
    }
    let integrator = at("integrator#1", "starting");
    assert!(
        at("reviewer#1", "exited") < integrator,
        "integrator#1 started before reviewer#1 exited:\n{}",
        ev.join("\n")
    );
    // ... which is once every task is approved.
    let last_approval = ev
        .iter()
        .rposition(|e| e.ends_with(": approved"))
        .expect("approvals");
    assert!(last_approval < integrator, "{}", ev.join("\n"));

    // `mara status` lists the instances with their branch and log.
    let st = status(&r, run);
    for (id, stem) in instances {
        let i = instance(&st, id);
        assert_eq!(i["status"], "exited", "{i}");
        assert_eq!(i["place"]["branch"], format!("mara/{run}/{stem}"), "{i}");
        let log = log_path(&r, run, stem);
        assert_eq!(i["place"]["log"], log.display().to_string(), "{i}");
        assert!(log.is_file(), "{} is missing", log.display());
        assert!(
            r.dir
                .join(".multi_agent_runs")
                .join(run)
                .join("worktrees")
                .join(stem)
                .is_dir(),
            "the worktree of {id} is missing"
        );
    }
    let text = r.mara(&["--run", run, "status"]);
    text.ok("mara status");
    for (id, _) in instances {
        assert!(text.stdout.contains(id), "{}", text.stdout);
    }
    // They said they stopped: status says so, not just when they were last seen.
    assert!(
        text.stdout
            .contains("stopped (exited or failed): architect#1"),
        "{}",
        text.stdout
    );

    // Each instance works on its own branch; every task's work is on its holder's.
    let own_commits = |stem: &str| -> Vec<String> {
        r.git(&[
            "log",
            "--no-merges",
            "--format=%s",
            &format!("main..mara/{run}/{stem}"),
        ])
        .lines()
        .map(str::to_owned)
        .collect()
    };
    let mut holders = BTreeSet::new();
    for (id, _, holder) in &board {
        let holder = holder.clone().expect("a done task names who did it");
        let stem = holder.replace('#', "_");
        assert!(
            own_commits(&stem).contains(&format!("{id}: work by {holder}")),
            "{id}'s work is not on {holder}'s branch"
        );
        let file = r.git(&["show", &format!("mara/{run}/{stem}:work/{id}.txt")]);
        let mut want = format!("{id} was done by {holder}\n");
        if *id == sent_back {
            want.push_str(&format!(
                "{id} was reworked by {holder} after review: tested by hand\n"
            ));
        }
        assert_eq!(file, want);
        holders.insert(holder);
    }
    for (id, stem) in &instances[..3] {
        let commits = own_commits(stem);
        let mine = commits
            .iter()
            .filter(|c| c.ends_with(&format!("work by {id}")))
            .count();
        assert_eq!(
            mine > 0,
            holders.contains(*id),
            "{id}'s branch has its own commits iff it did a task: {commits:?}"
        );
        // The rest came in with `claim --merge-deps`: the work of the tasks its
        // tasks depend on, by whoever did them.
        for c in commits {
            assert!(
                holders.iter().any(|h| c.ends_with(&format!("work by {h}"))),
                "{stem}: {c}"
            );
        }
    }
    assert_eq!(own_commits("reviewer_1"), ["review by reviewer#1"]);
    assert!(own_commits("integrator_1").contains(&format!("integration report of run {run}")));
    // The integrator merged everyone's work.
    let merged: BTreeSet<String> = r
        .git(&[
            "ls-tree",
            "-r",
            "--name-only",
            &format!("mara/{run}/integrator_1"),
        ])
        .lines()
        .map(str::to_owned)
        .collect();
    for id in &ids {
        assert!(merged.contains(&format!("work/{id}.txt")), "{merged:?}");
    }
    for h in &holders {
        assert!(
            merged.contains(&format!("{}.md", h.replace('#', "_"))),
            "{merged:?}"
        );
    }
    assert!(merged.contains("reviewer_1.md") && merged.contains("integrator.md"));
    // The main branch and worktree are untouched.
    assert_eq!(r.git(&["log", "--format=%s", "main"]), "initial commit\n");
    assert_eq!(r.git(&["status", "--porcelain"]), "");

    verify_ok(&r, run);
}

const CRASHER: &str = r#"set -u
mara claim T1 >/dev/null || exit 1
echo "crasher holds T1"
exit 7
"#;

#[test]
fn an_instance_that_fails_mid_task_fails_the_run_and_loses_its_claim() {
    let run = "crash";
    let r = TestRepo::new();
    copy_seed(&r);
    script_role(&r, "crasher", CRASHER, &[], serde_json::json!({}));
    agent_role(&r, "worker", serde_json::json!({ "after": ["crasher"] }));
    let config = config(
        &r,
        "crash.json",
        &[("crasher", 1), ("worker", 1)],
        serde_json::json!({}),
    );
    let plan = write_cfg(
        &r,
        "tasks.json",
        r#"[{"id": "T1", "title": "first"}, {"id": "T2", "title": "second", "deps": ["T1"]}]"#,
    );
    let (out, _) = mara_run(&r, run, &config, Some(&plan));
    out.expect_code(1, "a run with a failed instance");
    let log = log_path(&r, run, "crasher_1");
    out.stderr_has("crasher#1")
        .stderr_has(&log.display().to_string());
    let crash_log = std::fs::read_to_string(&log).expect("the crasher's log exists");
    assert!(crash_log.contains("crasher holds T1"), "{crash_log}");

    // The orchestrator released T1 with a reason; the worker did it afterwards.
    let ev = events(&r, run);
    let released = position(
        &ev,
        "release T1 by orchestrator#1 (forced, held by crasher#1)",
    );
    let failed = position(&ev, "instance crasher#1 failed by orchestrator#1");
    assert!(failed < released, "{ev:#?}");
    assert!(released < position(&ev, "claim T1 by worker#1"), "{ev:#?}");
    assert!(released < position(&ev, "instance worker#1 starting by orchestrator#1"));
    let release = log_json(&r, run)
        .into_iter()
        .find(|e| e["type"] == "release")
        .expect("a release event");
    assert_eq!(release["payload"]["forced"], "crasher#1", "{release}");
    let reason = release["payload"]["reason"].as_str().unwrap_or_default();
    assert!(reason.contains("crasher#1 failed"), "{release}");
    assert!(
        reason.contains('7'),
        "the exit code is in the reason: {release}"
    );
    assert_eq!(
        statuses_of(&ev, "crasher#1"),
        ["starting", "running", "failed"]
    );
    assert_eq!(
        statuses_of(&ev, "worker#1"),
        ["starting", "running", "exited"]
    );

    let st = status(&r, run);
    let crasher = instance(&st, "crasher#1");
    assert_eq!(crasher["status"], "failed", "{crasher}");
    assert!(
        crasher["reason"].as_str().unwrap_or_default().contains('7'),
        "{crasher}"
    );
    assert_eq!(crasher["holds"], serde_json::json!([]), "{crasher}");
    assert_eq!(
        tasks(&r, run),
        [
            (
                "T1".to_owned(),
                "done".to_owned(),
                Some("worker#1".to_owned())
            ),
            (
                "T2".to_owned(),
                "done".to_owned(),
                Some("worker#1".to_owned())
            ),
        ]
    );
    verify_ok(&r, run);
}

/// Issue 13, part 8, inside `mara run`: with one implementer, the integrator's
/// `mara integrate` merges its branch; a run whose only instance integrates its own
/// branch finds it up to date. Neither fails on "at least two commits".
#[test]
fn a_run_with_one_implementer_integrates_its_branch() {
    let r = TestRepo::new();
    copy_seed(&r);
    agent_role(&r, "implementer", serde_json::json!({}));
    agent_role(
        &r,
        "integrator",
        serde_json::json!({ "after": ["implementer"] }),
    );
    let config1 = config(
        &r,
        "one.json",
        &[("implementer", 1), ("integrator", 1)],
        serde_json::json!({}),
    );
    let plan = write_cfg(
        &r,
        "tasks.json",
        r#"[{"id": "T1", "title": "first"}, {"id": "T2", "title": "second", "deps": ["T1"]}]"#,
    );
    mara_run(&r, "one", &config1, Some(&plan))
        .0
        .ok("a run with one implementer and an integrator");
    let files = r.git(&["ls-tree", "-r", "--name-only", "mara/one/integrator_1"]);
    for f in [
        "work/T1.txt",
        "work/T2.txt",
        "implementer_1.md",
        "integrator.md",
    ] {
        assert!(
            files.lines().any(|l| l == f),
            "{f} is not integrated:\n{files}"
        );
    }
    let report = std::fs::read_to_string(r.dir.join(".multi_agent_runs/one/integrator.md"))
        .expect("the integrator's report");
    assert!(
        report.contains("| `mara/one/implementer_1` | implementer#1 | - | merged ("),
        "{report}"
    );
    verify_ok(&r, "one");

    script_role(
        &r,
        "solo",
        "set -e\necho solo > solo.txt\ngit add solo.txt\ngit commit -q -m 'solo work'\nmara integrate\ngit merge -q --ff-only \"mara/$MARA_RUN/integration\"\n",
        &[],
        serde_json::json!({}),
    );
    let config2 = config(&r, "solo.json", &[("solo", 1)], serde_json::json!({}));
    mara_run(&r, "solo", &config2, None)
        .0
        .ok("a run whose only instance integrates");
    assert_eq!(r.git(&["show", "mara/solo/integration:solo.txt"]), "solo\n");
    let report = std::fs::read_to_string(r.dir.join(".multi_agent_runs/solo/integrator.md"))
        .expect("the solo report");
    assert!(
        report.contains("| `mara/solo/solo_1` | solo#1 | - | up to date |"),
        "{report}"
    );
    verify_ok(&r, "solo");
}

/// The integrator resolves the conflict and says it is done, but does not run
/// `mara integrate --continue`: `mara run`'s integrator step merges it.
#[test]
fn the_run_merges_a_resolution_whose_resolve_task_is_done() {
    run_with_a_resolution(false);
}

/// With a review step whose reviewer has ended before the integrator: the resolve
/// task needs no review, and the integrator step merges its resolution.
#[test]
fn a_reviewed_run_merges_a_resolution_without_its_reviewer() {
    run_with_a_resolution(true);
}

/// Two writers change one line; the integrator resolves the conflict on its
/// conflicts branch and says its task is done, without `--continue`: `mara run`'s
/// integrator step merges it.
fn run_with_a_resolution(reviewed: bool) {
    let r = TestRepo::new();
    std::fs::write(r.dir.join("shared.txt"), "base\n").expect("writing");
    r.git(&["add", "shared.txt"]);
    r.git(&["commit", "-q", "-m", "shared"]);
    script_role(
        &r,
        "writer",
        "set -e\nprintf 'by %s\\n' \"$MARA_INSTANCE\" > shared.txt\ngit commit -q -am \"$MARA_INSTANCE writes\"\n",
        &[],
        serde_json::json!({}),
    );
    script_role(
        &r,
        "integrator",
        r#"set -eu
rc=0; mara integrate >/dev/null || rc=$?
[ "$rc" -eq 3 ]
task=$(mara claim --next --json | sed -n 's/.*"payload":{"task":"\([^"]*\)".*/\1/p')
git switch -q "mara/$MARA_RUN/conflicts/${task#resolve-}"
printf 'by both\n' > shared.txt
git commit -q -am "resolve"
mara done "$task" >/dev/null
git switch -q -
"#,
        &[],
        serde_json::json!({ "after": ["writer"] }),
    );
    let mut roles = vec![("writer", 2), ("integrator", 1)];
    let mut coordination = serde_json::json!({});
    if reviewed {
        // A reviewer with nothing to review: it has ended when the integrator starts.
        script_role(&r, "reviewer", "exit 0\n", &[], serde_json::json!({}));
        roles.push(("reviewer", 1));
        coordination = serde_json::json!({ "review_role": "reviewer" });
    }
    let cfg = config(&r, "resolve.json", &roles, coordination);
    let (out, _) = mara_run(&r, "rs", &cfg, None);
    out.ok("the run");
    let status = |id: &str| {
        let o = r.mara(&["--run", "rs", "show", id, "--json"]);
        o.ok("show");
        let j: Value = serde_json::from_str(&o.stdout).expect("JSON");
        j["task"]["status"].clone()
    };
    assert_eq!(
        status("resolve-writer_2"),
        "done",
        "no review for a resolve task"
    );
    assert!(
        out.stdout.contains(
            "integrator step: merged the resolution(s) mara/rs/conflicts/writer_2 into mara/rs/integration"
        ),
        "{}",
        out.stdout
    );
    assert_eq!(
        r.git(&["show", "mara/rs/integration:shared.txt"]),
        "by both\n"
    );
    for b in ["mara/rs/writer_1", "mara/rs/writer_2"] {
        r.git(&["merge-base", "--is-ancestor", b, "mara/rs/integration"]);
    }
    // `mara run --run rs` made rs the current run.
    let resolved = crate::integrate::events_of_type(&r, "resolved");
    assert_eq!(resolved.len(), 1, "{resolved:?}");
    assert_eq!(resolved[0]["payload"]["by"], "integrator#1");
    verify_ok(&r, "rs");
}

/// Claims a task, then waits on a long `sleep` in the background; writes the PIDs
/// of the shell and of the sleep into `$1`. With `$2` = `stubborn` it ignores
/// SIGTERM (and so does its sleep), so only SIGKILL ends it.
const SLEEPER: &str = r#"set -u
dir="$1"
me=$(printf '%s' "$MARA_INSTANCE" | tr '#' '_')
if [ "${2:-}" = stubborn ]; then trap '' TERM; fi
mara claim --next >/dev/null || exit 1
sleep 300 &
echo $! > "$dir/$me.sleep.tmp" && mv "$dir/$me.sleep.tmp" "$dir/$me.sleep"
echo $$ > "$dir/$me.sh.tmp" && mv "$dir/$me.sh.tmp" "$dir/$me.sh"
wait
"#;

#[test]
fn sigint_stops_every_instance_and_leaves_a_consistent_board() {
    let run = "intr";
    let r = TestRepo::new();
    let pid_dir = cfg_dir(&r).join("pids");
    std::fs::create_dir_all(&pid_dir).expect("creating the PID folder");
    let pid_arg = pid_dir.display().to_string();
    script_role(&r, "sleeper", SLEEPER, &[&pid_arg], serde_json::json!({}));
    write_cfg(
        &r,
        "roles/stubborn.json",
        &serde_json::json!({
            "command": ["sh", "{config_dir}/sleeper.sh", pid_arg, "stubborn"],
        })
        .to_string(),
    );
    script_role(
        &r,
        "later",
        "exit 0\n",
        &[],
        serde_json::json!({"after": ["sleeper"]}),
    );
    let config = config(
        &r,
        "intr.json",
        &[("sleeper", 2), ("stubborn", 1), ("later", 1)],
        serde_json::json!({}),
    );
    let plan = write_cfg(
        &r,
        "tasks.json",
        r#"[{"id": "T1", "title": "a"}, {"id": "T2", "title": "b"}, {"id": "T3", "title": "c"}]"#,
    );
    let running = ["sleeper#1", "sleeper#2", "stubborn#1"];
    let child = mara_run_command(&r, run, &config, Some(&plan))
        .spawn()
        .expect("mara run starts");
    let mut guard = Cleanup {
        child: Some(child),
        pid_dir: pid_dir.clone(),
    };
    let mara_pid = guard.child.as_ref().expect("the child").id();

    // Wait until every instance runs and holds its task (and wrote its PIDs).
    let t = Instant::now();
    loop {
        if let Some(code) = guard
            .child
            .as_mut()
            .and_then(|c| c.try_wait().ok().flatten())
        {
            panic!("mara run ended early with {code}");
        }
        let all_pids = pids_in(&pid_dir).len() == 2 * running.len();
        let all_running = !r.git(&["for-each-ref", "refs/mara"]).is_empty() && {
            let st = status(&r, run);
            running.iter().all(|id| {
                st["instances"]
                    .as_array()
                    .is_some_and(|l| l.iter().any(|i| i["id"] == *id && i["status"] == "running"))
            })
        };
        if all_pids && all_running {
            break;
        }
        assert!(
            t.elapsed() < Duration::from_secs(20),
            "the instances did not all start; PIDs: {:?}",
            pids_in(&pid_dir)
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let pids = pids_in(&pid_dir);
    assert!(pids.iter().all(|(_, p)| alive(*p)), "{pids:?}");
    assert_eq!(
        tasks(&r, run)
            .iter()
            .filter(|(_, s, _)| s == "claimed")
            .count(),
        3
    );

    kill("INT", mara_pid);
    let t = Instant::now();
    let mut child = guard.child.take().expect("the child");
    let code = loop {
        if let Some(s) = child.try_wait().expect("waiting for mara") {
            break s.code();
        }
        if t.elapsed() > Duration::from_secs(15) {
            let _ = child.kill();
            panic!("mara run did not end within 15 s of SIGINT");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let took = t.elapsed();
    let mut stderr = String::new();
    child
        .stderr
        .take()
        .expect("stderr is piped")
        .read_to_string(&mut stderr)
        .expect("reading stderr");
    assert_eq!(code, Some(1), "exit after SIGINT; stderr:\n{stderr}");
    assert!(took < Duration::from_secs(10), "stopping took {took:?}");
    assert!(stderr.contains("interrupted"), "{stderr}");

    // No process of any instance is left: not the shells, not their sleeps
    // (the stubborn one's too, which ignored SIGTERM).
    let left: Vec<_> = pids.iter().filter(|(_, p)| alive(*p)).collect();
    assert!(left.is_empty(), "left running: {left:?}");

    let ev = events(&r, run);
    for id in running {
        assert_eq!(
            statuses_of(&ev, id),
            ["starting", "running", "failed"],
            "{id}:\n{}",
            ev.join("\n")
        );
        assert!(
            ev.iter()
                .any(|s| s.starts_with("release T")
                    && s.ends_with(&format!("(forced, held by {id})"))),
            "{id}'s task was not released:\n{}",
            ev.join("\n")
        );
    }
    assert_eq!(
        count_commits_with_subject(&r.dir, run, "release "),
        3,
        "one forced release per held task"
    );
    assert!(
        statuses_of(&ev, "later#1").is_empty(),
        "later#1 waited for the sleepers and must never start:\n{}",
        ev.join("\n")
    );
    let st = status(&r, run);
    for id in running {
        let i = instance(&st, id);
        assert_eq!(i["status"], "failed", "{i}");
        assert!(
            i["reason"]
                .as_str()
                .unwrap_or_default()
                .contains("interrupted"),
            "{i}"
        );
        assert_eq!(i["holds"], serde_json::json!([]), "{i}");
    }
    for (id, s, holder) in tasks(&r, run) {
        assert_eq!((s.as_str(), holder), ("open", None), "{id} stays held");
    }
    let lock = r.dir.join(".git/refs/mara").join(format!("{run}.lock"));
    assert!(!lock.exists(), "{} was left behind", lock.display());
    let leftovers: Vec<_> = std::fs::read_dir(r.dir.join(".git/refs/mara"))
        .map(|rd| {
            rd.flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .filter(|n| n.ends_with(".lock"))
                .collect()
        })
        .unwrap_or_default();
    assert!(leftovers.is_empty(), "{leftovers:?}");
    verify_ok(&r, run);
    drop(guard);
}

const SLOW: &str = r#"set -u
mara claim --next >/dev/null || exit 1
echo "$MARA_INSTANCE sleeps"
sleep 30
"#;

#[test]
fn instances_are_stopped_at_their_time_limit() {
    let run = "slow";
    let r = TestRepo::new();
    // The role's own limit (1 s) wins over the config's (2 s), which applies to
    // the roles without one.
    script_role(&r, "slow", SLOW, &[], serde_json::json!({"timeout_sec": 1}));
    write_cfg(
        &r,
        "roles/slower.json",
        &serde_json::json!({"command": ["sh", "{config_dir}/slow.sh"]}).to_string(),
    );
    let config = config(
        &r,
        "slow.json",
        &[("slow", 1), ("slower", 1)],
        serde_json::json!({"instance_timeout_sec": 2}),
    );
    let plan = write_cfg(
        &r,
        "tasks.json",
        r#"[{"id": "T1", "title": "a"}, {"id": "T2", "title": "b"}]"#,
    );
    let (out, took) = mara_run(&r, run, &config, Some(&plan));
    out.expect_code(1, "a run whose instances hit their time limit");
    out.stderr_has("time limit");
    assert!(
        took < Duration::from_secs(10),
        "the run took {took:?}, the scripts sleep 30 s"
    );
    assert!(took >= Duration::from_secs(2), "the run took {took:?}");

    let st = status(&r, run);
    for (id, limit) in [("slow#1", 1), ("slower#1", 2)] {
        let i = instance(&st, id);
        assert_eq!(i["status"], "failed", "{i}");
        let reason = i["reason"].as_str().unwrap_or_default();
        assert!(
            reason.contains("time limit") && reason.contains(&format!("{limit}s")),
            "{id}: {i}"
        );
        assert_eq!(i["holds"], serde_json::json!([]), "{i}");
        let log = std::fs::read_to_string(log_path(&r, run, &id.replace('#', "_")))
            .expect("the instance's log");
        assert!(log.contains(&format!("{id} sleeps")), "{log}");
    }
    let ev = events(&r, run);
    for id in ["slow#1", "slower#1"] {
        assert_eq!(statuses_of(&ev, id), ["starting", "running", "failed"]);
        assert!(
            ev.iter()
                .any(|s| s.ends_with(&format!("(forced, held by {id})"))),
            "{ev:#?}"
        );
    }
    // slow#1 hit its limit first.
    assert!(
        position(&ev, "instance slow#1 failed by orchestrator#1")
            < position(&ev, "instance slower#1 failed by orchestrator#1")
    );
    for (id, s, _) in tasks(&r, run) {
        assert_eq!(s, "open", "{id}");
    }
    verify_ok(&r, run);
}

/// A config whose roles are the seed's, rewritten by `edit` (on the JSON text).
fn seed_variant(r: &TestRepo, name: &str, edit: impl Fn(&str) -> String) -> PathBuf {
    let seed = std::fs::read_to_string(Path::new(SEED).join("mara.json")).expect("mara.json");
    let text = edit(&seed);
    assert_ne!(text, seed, "{name}: the edit changed nothing");
    write_cfg(r, name, &text)
}

/// Runs `mara run` with a bad config: exit 1, stderr has every needle, nothing
/// written.
#[track_caller]
fn rejected(r: &TestRepo, what: &str, config: &Path, tasks: Option<&Path>, needles: &[&str]) {
    let (out, _) = mara_run(r, "bad", config, tasks);
    out.expect_code(1, what);
    for n in needles {
        assert!(
            out.stderr.contains(n),
            "{what}: stderr does not contain {n:?}:\n{}",
            out.stderr
        );
    }
    assert_eq!(
        out.stderr
            .lines()
            .filter(|l| l.starts_with("error: "))
            .count(),
        1,
        "{what}: one error line:\n{}",
        out.stderr
    );
    assert_nothing_written(r, what);
}

#[test]
fn config_errors_name_the_file_and_write_nothing() {
    let r = TestRepo::new();
    let good = copy_seed(&r);
    let exclude_before = std::fs::read_to_string(r.dir.join(".git/info/exclude")).ok();
    let cfg = cfg_dir(&r);
    let show = |p: &Path| p.display().to_string();

    let missing = cfg.join("nope.json");
    rejected(&r, "a missing config", &missing, None, &[&show(&missing)]);

    let c = seed_variant(&r, "missing-role.json", |s| {
        s.replace("roles/reviewer.json", "roles/nope.json")
    });
    rejected(
        &r,
        "a missing role file",
        &c,
        None,
        &[
            &show(&c),
            "roles[2].file",
            &show(&cfg.join("roles/nope.json")),
        ],
    );

    let c = seed_variant(&r, "zero.json", |s| {
        s.replace(r#""instances": 2"#, r#""instances": 0"#)
    });
    rejected(
        &r,
        "instances 0",
        &c,
        None,
        &[&show(&c), "roles[1].instances is 0"],
    );

    let c = seed_variant(&r, "two.json", |s| {
        s.replace(r#""instances": 2"#, r#""instances": "two""#)
    });
    rejected(
        &r,
        "instances of the wrong type",
        &c,
        None,
        &[&show(&c), "\"two\""],
    );

    let c = seed_variant(&r, "unknown-key.json", |s| {
        s.replace(
            r#""coordination": {"#,
            r#""colour": "blue", "coordination": {"#,
        )
    });
    rejected(
        &r,
        "an unknown key in the config",
        &c,
        None,
        &[&show(&c), "colour"],
    );

    let c = seed_variant(&r, "truncated.json", |s| s[..s.len() / 2].to_owned());
    rejected(&r, "a truncated config", &c, None, &[&show(&c), "EOF"]);

    // Role files: an unknown key, and `after` naming a role that does not exist.
    std::fs::create_dir_all(cfg.join("roles2")).expect("roles2");
    let arch = std::fs::read_to_string(cfg.join("roles/architect.json")).expect("architect.json");
    for name in ["implementer", "reviewer", "integrator"] {
        std::fs::copy(
            cfg.join(format!("roles/{name}.json")),
            cfg.join(format!("roles2/{name}.json")),
        )
        .expect("copying a role file");
    }
    let c = seed_variant(&r, "roles2.json", |s| s.replace("roles/", "roles2/"));
    let role_file = cfg.join("roles2/architect.json");
    std::fs::write(
        &role_file,
        arch.replace(r#""env": {}"#, r#""env": {}, "model": "big""#),
    )
    .expect("writing a role file");
    rejected(
        &r,
        "an unknown key in a role file",
        &c,
        None,
        &[&show(&role_file), "model"],
    );
    std::fs::write(
        &role_file,
        arch.replace(r#""after": []"#, r#""after": ["ghost"]"#),
    )
    .expect("writing a role file");
    rejected(
        &r,
        "after names an unknown role",
        &c,
        None,
        &[&show(&role_file), "ghost"],
    );

    // A good config with a bad plan.
    let plan = write_cfg(
        &r,
        "dup.json",
        r#"[{"id": "T1", "title": "a"}, {"id": "T1", "title": "again"}]"#,
    );
    rejected(
        &r,
        "a plan with a duplicate id",
        &good,
        Some(&plan),
        &["T1", "listed twice"],
    );
    let plan = write_cfg(&r, "cut.json", r#"[{"id": "T1", "title": "a"}"#);
    rejected(&r, "a truncated plan", &good, Some(&plan), &[&show(&plan)]);

    assert_eq!(
        std::fs::read_to_string(r.dir.join(".git/info/exclude")).ok(),
        exclude_before,
        ".git/info/exclude changed"
    );
}

/// Issue 13, part 7: a role command that would not start (not on PATH, not
/// executable, not a file, not in the worktree's checkout of HEAD) or a NUL byte in
/// its argv or env, placeholders filled in, fails before the run writes anything:
/// no run ref, branch, worktree or run folder; fixed, the same run id then runs.
#[test]
fn a_command_that_cannot_start_is_refused_before_anything_is_written() {
    let r = TestRepo::new();
    let cfg = cfg_dir(&r);
    let config = config(&r, "agent.json", &[("agent", 1)], serde_json::json!({}));
    let role_file = cfg.join("roles/agent.json");
    let role_path = role_file.display().to_string();
    write_cfg(&r, "not-exec.sh", "#!/bin/sh\nexit 0\n");
    write_cfg(&r, "no-shebang.sh", "exit 0\n");
    std::fs::set_permissions(
        cfg.join("no-shebang.sh"),
        std::os::unix::fs::PermissionsExt::from_mode(0o755),
    )
    .expect("chmod +x");
    let not_exec = cfg.join("not-exec.sh").display().to_string();
    let cases: Vec<(&str, Value, Vec<&str>)> = vec![
        (
            "a command not on PATH",
            serde_json::json!({"command": ["mara-no-such-agent", "{prompt}"]}),
            vec!["command[0]", "mara-no-such-agent", "not on PATH"],
        ),
        (
            "a command that is not executable",
            serde_json::json!({"command": ["{config_dir}/not-exec.sh"]}),
            vec!["command[0]", &not_exec, "not executable", "chmod +x"],
        ),
        (
            "an executable without a #! line",
            serde_json::json!({"command": ["{config_dir}/no-shebang.sh"]}),
            vec!["command[0]", "no-shebang.sh", "#!"],
        ),
        (
            "a command that is a folder",
            serde_json::json!({"command": ["{config_dir}"]}),
            vec!["command[0]", "not a file"],
        ),
        (
            "a relative command that HEAD does not have",
            serde_json::json!({"command": ["./agent.sh"]}),
            vec!["command[0]", "./agent.sh", "not a file of HEAD"],
        ),
        (
            "a relative command that is not executable in HEAD",
            serde_json::json!({"command": ["./README.md"]}),
            vec!["command[0]", "not executable in HEAD"],
        ),
        (
            "a NUL in an argument",
            serde_json::json!({"command": ["sh", "-c", "exit 0", "a\u{0}b"]}),
            vec!["command[3]", "NUL"],
        ),
        (
            "a NUL brought in by a placeholder",
            serde_json::json!({"command": ["sh", "-c", "exit 0", "{prompt}"], "prompt": "hi\u{0}there"}),
            vec!["command[3]", "NUL"],
        ),
        (
            "a NUL in an env value",
            serde_json::json!({"command": ["sh", "-c", "exit 0"], "env": {"AGENT_MODE": "a\u{0}b"}}),
            vec!["env.AGENT_MODE", "NUL"],
        ),
        (
            "a prompt too long for one argument",
            serde_json::json!({"command": ["sh", "-c", "exit 0", "{prompt}"], "prompt": "x".repeat(200_000)}),
            vec!["command[3]", "bytes long", "{prompt_file}"],
        ),
        (
            "an env key with '='",
            serde_json::json!({"command": ["sh", "-c", "exit 0"], "env": {"A=B": "x"}}),
            vec!["env key", "A=B"],
        ),
        (
            "a PATH in the role's env that lacks the command",
            serde_json::json!({"command": ["sh", "-c", "exit 0"], "env": {"PATH": "{worktree}/bin"}}),
            vec!["command[0]", "\"sh\"", "not on PATH"],
        ),
    ];
    for (what, spec, needles) in cases {
        std::fs::write(&role_file, spec.to_string()).expect("writing the role file");
        let mut all = vec![role_path.as_str()];
        all.extend(needles);
        rejected(&r, what, &config, None, &all);
    }

    // Fixed: the same run id runs.
    write_cfg(&r, "agent.sh", "#!/bin/sh\nexit 0\n");
    std::fs::set_permissions(
        cfg.join("agent.sh"),
        std::os::unix::fs::PermissionsExt::from_mode(0o755),
    )
    .expect("chmod +x");
    std::fs::write(
        &role_file,
        serde_json::json!({"command": ["{config_dir}/agent.sh", "{prompt}"], "env": {"AGENT_MODE": "{instance}"}})
            .to_string(),
    )
    .expect("writing the role file");
    mara_run(&r, "bad", &config, None)
        .0
        .ok("the fixed role file runs under the refused run's id");
    verify_ok(&r, "bad");
}

#[test]
fn a_wrong_type_in_the_config_names_the_key() {
    let r = TestRepo::new();
    copy_seed(&r);
    let c = seed_variant(&r, "two.json", |s| {
        s.replace(r#""instances": 2"#, r#""instances": "two""#)
    });
    rejected(
        &r,
        "instances of the wrong type",
        &c,
        None,
        &[&c.display().to_string(), "instances"],
    );
}

#[test]
fn a_bad_plan_given_to_run_names_the_plan_file() {
    let r = TestRepo::new();
    let good = copy_seed(&r);
    let plan = write_cfg(
        &r,
        "dup.json",
        r#"[{"id": "T1", "title": "a"}, {"id": "T1", "title": "again"}]"#,
    );
    rejected(
        &r,
        "a plan with a duplicate id",
        &good,
        Some(&plan),
        &[&plan.display().to_string(), "T1"],
    );
    let plan = write_cfg(
        &r,
        "dep.json",
        r#"[{"id": "T1", "title": "a", "deps": ["T9"]}]"#,
    );
    rejected(
        &r,
        "a plan with an unknown dep",
        &good,
        Some(&plan),
        &[&plan.display().to_string(), "T9"],
    );
}

#[test]
fn rerunning_a_run_whose_branches_exist_writes_nothing() {
    let run = "again";
    let r = TestRepo::new();
    script_role(&r, "quick", "exit 0\n", &[], serde_json::json!({}));
    let config = config(&r, "quick.json", &[("quick", 1)], serde_json::json!({}));
    let plan = write_cfg(&r, "tasks.json", r#"[{"id": "T1", "title": "a"}]"#);
    mara_run(&r, run, &config, Some(&plan))
        .0
        .ok("the first run");
    let tip = r.tip(run);
    let plan = write_cfg(&r, "more.json", r#"[{"id": "T2", "title": "b"}]"#);
    let (out, _) = mara_run(&r, run, &config, Some(&plan));
    out.expect_code(1, "a second run with the same id")
        .stderr_has("exists already");
    assert_eq!(
        r.tip(run),
        tip,
        "the failed second run wrote to refs/mara/{run}: {:?}",
        &events(&r, run)[events(&r, run).len() - 2..]
    );
}

#[test]
fn demo_runs_the_seed_roles_to_a_verified_board() {
    let r = TestRepo::new();
    let dir = r.root().join("demo");
    let dir_arg = dir.display().to_string();
    let t = Instant::now();
    let out = r.mara_in(&["demo", "--dir", &dir_arg], &[], Some(&r.root()));
    let took = t.elapsed();
    out.ok("mara demo");
    assert!(took < Duration::from_secs(10), "the demo took {took:?}");
    assert!(out.stdout.contains("verify:"), "{}", out.stdout);
    assert!(
        out.stdout.contains("replay to the board at the tip"),
        "{}",
        out.stdout
    );
    let done_rows: Vec<&str> = out
        .stdout
        .lines()
        .filter(|l| {
            let mut w = l.split_whitespace();
            w.next()
                .is_some_and(|id| id.starts_with('T') && id[1..].parse::<u32>().is_ok())
                && w.next() == Some("done")
        })
        .collect();
    assert_eq!(done_rows.len(), 6, "{}", out.stdout);
    // The implementers' one conflict became a resolve task; the integrator resolved
    // it and merged it: a resolve task needs no review (the reviewer had ended),
    // and nothing was integrated unreviewed.
    assert!(
        out.stdout.contains("7 tasks: 0 open, 0 claimed, 7 done ("),
        "{}",
        out.stdout
    );
    assert!(
        !out.stdout.contains("unreviewed"),
        "no --unreviewed: {}",
        out.stdout
    );
    assert!(
        out.stdout
            .contains("conflicts: 1 (src/main.txt merging mara/demo/implementer_")
            && out
                .stdout
                .contains("resolved: 1 (src/main.txt on mara/demo/conflicts/implementer_")
            && out.stdout.contains(" resolved by integrator#1, merged ("),
        "{}",
        out.stdout
    );
    let project = dir.join("project");
    let merged = crate::common::git(&project, &["show", "mara/demo/integration:src/main.txt"]);
    assert_eq!(
        merged, "entry point: wired up by implementer#1\nentry point: wired up by implementer#2\n",
        "both sides kept, no markers"
    );
    let report = crate::common::git(&project, &["show", "mara/demo/integrator_1:integrator.md"]);
    assert!(
        report.contains("resolved by integrator#1 (src/main.txt), merged ("),
        "{report}"
    );
    let refs = crate::common::git(
        &project,
        &["for-each-ref", "--format=%(refname)", "refs/mara"],
    );
    assert_eq!(refs, "refs/mara/demo\n");
    crate::common::git(
        &project,
        &["rev-parse", "--verify", "refs/heads/mara/demo/integrator_1"],
    );
    let sent_back = sent_back_once_and_reworked(&project, "demo");
    for id in ["T1", "T2", "T3", "T4", "T5", "T6"] {
        assert_eq!(
            count_commits_with_subject(&project, "demo", &format!("done {id} by ")),
            if id == sent_back { 2 } else { 1 }
        );
    }
    // One question, to implementer#1, answered by it with a reference.
    let subjects = crate::common::subjects(&project, "demo");
    assert!(
        subjects
            .iter()
            .any(|s| s.starts_with("question by architect#1")),
        "{subjects:#?}"
    );
    let answer = crate::common::git(
        &project,
        &[
            "log",
            "--format=%B",
            "--grep=^answer by implementer#1",
            "refs/mara/demo",
        ],
    );
    assert!(answer.contains("\"reply_to\":"), "{answer}");
}

/// The demo's reviewer sends exactly one task back; the implementer that did it
/// reworks it (both of its dones are by the same instance). Returns its id.
fn sent_back_once_and_reworked(dir: &std::path::Path, run: &str) -> String {
    let subjects = crate::common::subjects(dir, run);
    let back: Vec<&String> = subjects
        .iter()
        .filter(|s| s.ends_with(": changes requested"))
        .collect();
    assert_eq!(back.len(), 1, "one task is sent back: {subjects:#?}");
    let id = back[0]
        .strip_prefix("review ")
        .and_then(|s| s.split(' ').next())
        .expect("review <task> by ...")
        .to_owned();
    let doers: Vec<&str> = subjects
        .iter()
        .filter_map(|s| s.strip_prefix(&format!("done {id} by ")))
        .collect();
    assert_eq!(
        doers.len(),
        2,
        "{id} is done, sent back, done again: {subjects:#?}"
    );
    assert_eq!(doers[0], doers[1], "the same implementer reworks {id}");
    id
}
