//! Remote mode: clones of one project share a run through a git remote. Every write
//! is a non-force push of the event commit (the push is the compare-and-swap); the
//! remote is a real `git daemon` on 127.0.0.1 or a bare repository reached by path.

use std::collections::BTreeSet;

use std::path::{Path, PathBuf};
use std::process::Child;
use std::sync::{Arc, Barrier};
use std::thread;
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::common::{
    assert_ref_unchanged, count_commits_with_subject, free_port, git, git_input, held_by, ref_tip,
    subjects, Origin, Out, TestRepo,
};

/// The local refs under `refs/mara/` of a repository.
fn mara_refs(dir: &Path) -> Vec<String> {
    git(dir, &["for-each-ref", "--format=%(refname)", "refs/mara/"])
        .lines()
        .map(str::to_owned)
        .collect()
}

/// Whether git config `key` is set in the repository.
fn config_has(dir: &Path, key: &str) -> bool {
    git(dir, &["config", "--list"])
        .lines()
        .any(|l| l.starts_with(&format!("{key}=")))
}

/// A plan file of `n` tasks `T000`, `T001`, ... next to the clone.
fn plan_file(r: &TestRepo, n: usize) -> PathBuf {
    let plan: Vec<Value> = (0..n)
        .map(|i| serde_json::json!({"id": format!("T{i:03}"), "title": format!("task {i}")}))
        .collect();
    r.write_outside(
        "plan.json",
        &serde_json::to_string(&plan).expect("the plan serialises"),
    )
}

/// Clone A creates the run in remote mode and plans `tasks` tasks; the other
/// `clones - 1` clones join it with `mara sync --run`.
fn shared_run(origin: &Origin, run: &str, clones: usize, tasks: usize) -> Vec<TestRepo> {
    let a = origin.clone_repo("a");
    a.mara(&["init", "--run", run, "--remote", "origin"])
        .ok("mara init --remote origin");
    if tasks > 0 {
        let plan = plan_file(&a, tasks);
        a.mara(&["plan", plan.to_str().expect("UTF-8 path")])
            .ok("mara plan");
    }
    let mut all = vec![a];
    for k in 1..clones {
        let c = origin.clone_repo(&format!("clone{k}"));
        c.mara(&["sync", "--run", run]).ok("mara sync --run");
        assert_eq!(c.tip(run), origin.tip(run), "the joining clone has the run");
        all.push(c);
    }
    all
}

/// What one clone's claimer did in a race.
struct Claimer {
    clone: TestRepo,
    /// The task ids it claimed, in order.
    got: Vec<String>,
    /// Its longest single `claim --next` command.
    longest: Duration,
    /// The command that ended its loop other than with "nothing ready", if any.
    failed: Option<Out>,
}

/// What a race of claimers did: the task ids each claimed, the longest single
/// claim command of each, and how long the whole race took.
struct Race {
    got: Vec<Vec<String>>,
    longest: Vec<Duration>,
    took: Duration,
}

/// One thread per clone, `implementer#k` in clone k, each looping
/// `mara claim --next --json` with no pause until it exits 3. A claimer whose
/// command fails stops and reports it; the others go on, so the remote stays up
/// until all have finished.
fn drain(clones: Vec<TestRepo>) -> (Vec<TestRepo>, Race) {
    let n = clones.len();
    let barrier = Arc::new(Barrier::new(n + 1));
    let handles: Vec<_> = clones
        .into_iter()
        .enumerate()
        .map(|(i, clone)| {
            let barrier = Arc::clone(&barrier);
            thread::spawn(move || {
                let who = format!("implementer#{}", i + 1);
                let mut got = vec![];
                let mut longest = Duration::ZERO;
                barrier.wait();
                let failed = loop {
                    let started = Instant::now();
                    let o = clone.mara_in(
                        &["claim", "--next", "--json"],
                        &[("MARA_INSTANCE", &who)],
                        None,
                    );
                    longest = longest.max(started.elapsed());
                    if o.code == 3 && o.stderr.contains("nothing ready") {
                        break None;
                    }
                    if o.code != 0 {
                        break Some(o);
                    }
                    let task = serde_json::from_str::<Value>(&o.stdout)
                        .ok()
                        .filter(|v| v["type"] == "claim" && v["sender"] == who.as_str())
                        .and_then(|v| v["payload"]["task"].as_str().map(str::to_owned));
                    match task {
                        Some(t) => got.push(t),
                        None => break Some(o),
                    }
                };
                Claimer {
                    clone,
                    got,
                    longest,
                    failed,
                }
            })
        })
        .collect();
    barrier.wait();
    let started = Instant::now();
    let claimers: Vec<Claimer> = handles
        .into_iter()
        .map(|h| h.join().expect("a claimer thread"))
        .collect();
    let took = started.elapsed();
    let counts: Vec<usize> = claimers.iter().map(|c| c.got.len()).collect();
    let failures: Vec<String> = claimers
        .iter()
        .enumerate()
        .filter_map(|(i, c)| {
            c.failed.as_ref().map(|o| {
                format!(
                    "implementer#{} after {} claims: exit {}\nstdout: {}\nstderr: {}",
                    i + 1,
                    c.got.len(),
                    o.code,
                    o.stdout.trim(),
                    o.stderr.trim()
                )
            })
        })
        .collect();
    assert!(
        failures.is_empty(),
        "claim --next failed after {:.1}s (claims per clone: {counts:?}):\n{}",
        took.as_secs_f64(),
        failures.join("\n")
    );
    let longest = claimers.iter().map(|c| c.longest).collect();
    let (clones, got) = claimers.into_iter().map(|c| (c.clone, c.got)).unzip();
    (clones, Race { got, longest, took })
}

/// The checks after a race: every task claimed exactly once, the remote holds one
/// claim commit per task, and every clone syncs to the remote's tip and verifies.
fn check_drained(
    origin: &Origin,
    run: &str,
    tasks: usize,
    clones: &[TestRepo],
    got: &[Vec<String>],
) {
    let all: Vec<&String> = got.iter().flatten().collect();
    let unique: BTreeSet<&String> = all.iter().copied().collect();
    assert_eq!(
        unique.len(),
        all.len(),
        "no task was claimed twice: {got:?}"
    );
    let expected: BTreeSet<String> = (0..tasks).map(|i| format!("T{i:03}")).collect();
    assert_eq!(
        unique.into_iter().cloned().collect::<BTreeSet<String>>(),
        expected,
        "every task was claimed"
    );
    assert_eq!(origin.count(run, "claim "), tasks, "claims on the remote");
    assert_eq!(
        origin.subjects(run).len(),
        tasks + 2,
        "init, plan and the claims on the remote"
    );
    let remote_tip = origin.tip(run);
    for (i, c) in clones.iter().enumerate() {
        c.mara(&["sync"]).ok("mara sync after the race");
        c.verify_ok();
        assert_eq!(
            c.tip(run),
            remote_tip,
            "clone {} has the remote's tip",
            i + 1
        );
    }
}

/// Issue 16, no starvation: four clones in tight loops (no pause between claims)
/// through a real `git daemon`. Before the turn ref, the clone that won last kept
/// winning (200/0/0/0 over 200 tasks, 184/16/0/0 with a short pause); now every
/// clone gets its turn: at least 10% each and no claim over 10 s (the issue's
/// bounds, over 100 tasks here and 200 in `cargo bench --bench fair`). Splits
/// seen beside a benchmark on two cores: 32/25/25/18 and 29/25/23/23, the
/// longest claim 3.5-5.6 s.
#[test]
fn four_clones_in_tight_loops_each_get_their_turn_through_git_daemon() {
    const CLONES: usize = 4;
    const TASKS: usize = 100;
    let run = "sprint";
    let origin = Origin::daemon();
    let clones = shared_run(&origin, run, CLONES, TASKS);
    let (clones, race) = drain(clones);
    let counts: Vec<usize> = race.got.iter().map(Vec::len).collect();
    let longest = race.longest.iter().max().copied().unwrap_or_default();
    eprintln!(
        "remote race: {TASKS} claims by {CLONES} clones through git daemon took {:.1}s; per clone: {counts:?}; longest claim {:.2}s",
        race.took.as_secs_f64(),
        longest.as_secs_f64()
    );
    check_drained(&origin, run, TASKS, &clones, &race.got);
    for (i, n) in counts.iter().enumerate() {
        assert!(
            *n * 10 >= TASKS,
            "clone {} got {n} of {TASKS} claims, under 10% (split {counts:?})",
            i + 1
        );
    }
    assert!(
        longest <= Duration::from_secs(10),
        "a claim waited {:.1}s (longest per clone: {:?})",
        longest.as_secs_f64(),
        race.longest
    );
}

#[test]
fn two_clones_race_for_30_tasks_through_a_bare_repository_path() {
    const TASKS: usize = 30;
    let run = "sprint";
    let origin = Origin::path();
    let clones = shared_run(&origin, run, 2, TASKS);
    let (clones, race) = drain(clones);
    eprintln!(
        "remote race by path: {TASKS} claims by 2 clones took {:.1}s; per clone: {:?}",
        race.took.as_secs_f64(),
        race.got.iter().map(Vec::len).collect::<Vec<_>>()
    );
    check_drained(&origin, run, TASKS, &clones, &race.got);
}

#[test]
fn two_clones_claiming_one_task_at_once_have_one_winner() {
    let run = "sprint";
    let origin = Origin::daemon();
    let a = origin.clone_repo("a");
    a.mara(&["init", "--run", run, "--remote", "origin"])
        .ok("init");
    a.mara(&["task", "add", "T1", "contested"]).ok("task add");
    let b = origin.clone_repo("b");
    b.mara(&["sync", "--run", run]).ok("sync");

    let clones = [&a, &b];
    let children: Vec<Child> = clones
        .iter()
        .enumerate()
        .map(|(i, c)| {
            let who = format!("implementer#{}", i + 1);
            c.mara_command(&["claim", "T1"], &[("MARA_INSTANCE", &who)], None)
                .spawn()
                .expect("spawning mara claim")
        })
        .collect();
    let outs: Vec<Out> = children
        .into_iter()
        .map(|c| Out::from_output(c.wait_with_output().expect("waiting for mara claim")))
        .collect();

    let winners: Vec<usize> = (0..2).filter(|&i| outs[i].code == 0).collect();
    assert_eq!(winners.len(), 1, "exactly one winner: {outs:#?}");
    let winner = format!("implementer#{}", winners[0] + 1);
    let loser = &outs[1 - winners[0]];
    loser.expect_code(3, "the loser of the race");
    assert_eq!(
        held_by(&loser.stderr, "T1").as_deref(),
        Some(winner.as_str()),
        "the refusal names the winner: {loser:?}"
    );
    assert_eq!(origin.count(run, "claim T1 by"), 1);
    assert_eq!(origin.count(run, &format!("claim T1 by {winner}")), 1);
    for c in clones {
        // The loser fetched to judge its refusal: both have the remote's tip.
        assert_eq!(c.tip(run), origin.tip(run));
        c.verify_ok();
        assert_eq!(
            c.task_state("T1"),
            ("claimed".to_owned(), Some(winner.clone()))
        );
    }
}

#[test]
fn a_stale_clone_fetches_and_retries_and_rechecks_refusals_on_the_remote() {
    let run = "sprint";
    let origin = Origin::daemon();
    let a = origin.clone_repo("a");
    a.mara(&["init", "--run", run, "--remote", "origin"])
        .ok("init");
    for t in ["T1", "T2", "T3"] {
        a.mara(&["task", "add", t, "work"]).ok("task add");
    }
    let b = origin.clone_repo("b");
    b.mara(&["sync", "--run", run]).ok("sync b");
    let c = origin.clone_repo("c");
    c.mara(&["sync", "--run", run]).ok("sync c");

    // B claims T1: A and C are now behind the remote.
    b.mara_as("implementer#2", &["claim", "T1"])
        .ok("b claims T1");
    let b_claim = origin.tip(run);
    let a_before = a.tip(run);
    assert_ne!(a_before, b_claim, "A is stale");

    // A claims T2 on its stale tip: the push is rejected, A fetches and retries.
    a.mara_as("implementer#1", &["claim", "T2"])
        .ok("stale a claims T2");
    let remote_tip = origin.tip(run);
    assert_eq!(a.tip(run), remote_tip, "A's ref equals the remote's");
    assert_eq!(origin.subjects(run)[0], "claim T2 by implementer#1");
    assert_eq!(
        origin.git(&["rev-parse", &format!("{remote_tip}^")]).trim(),
        b_claim,
        "the claim was rebuilt on B's claim, the tip A fetched"
    );
    // A's reflog: the fetch that brought B's claim, then A's own pushed claim.
    let reflog = a.git(&[
        "reflog",
        "show",
        "--format=%gs",
        &format!("refs/mara/{run}"),
    ]);
    let reflog: Vec<&str> = reflog.lines().collect();
    assert!(
        reflog[0].contains("claim T2 by implementer#1"),
        "newest reflog entry is A's claim: {reflog:?}"
    );
    assert!(
        reflog[1].starts_with("fetch"),
        "A fetched before its retry: {reflog:?}"
    );
    a.verify_ok();

    // C has not fetched since: T1 is open there. Its claim is refused after its
    // push loses and the fresh fetch shows B's claim.
    assert_eq!(c.task_state("T1"), ("open".to_owned(), None));
    let o = c.mara_as("implementer#3", &["claim", "T1"]);
    o.expect_code(3, "stale c claims T1 held on the remote");
    assert_eq!(held_by(&o.stderr, "T1").as_deref(), Some("implementer#2"));
    assert_eq!(c.tip(run), origin.tip(run), "C fetched to judge");
    assert_eq!(origin.count(run, "claim T1 by"), 1);

    // B releases T1 on the remote; A still sees it held by B, so A's claim is
    // refused locally, then re-checked on a fresh fetch, and succeeds.
    b.mara_as("implementer#2", &["release", "T1"])
        .ok("b releases T1");
    assert_eq!(
        a.task_state("T1"),
        ("claimed".to_owned(), Some("implementer#2".to_owned())),
        "A has not seen the release"
    );
    let o = a.mara_as("implementer#1", &["claim", "T1", "--json"]);
    o.ok("a claims T1, refused locally but open on the remote");
    let v: Value = serde_json::from_str(&o.stdout).expect("claim --json prints JSON");
    assert_eq!(v["payload"]["task"], "T1");
    assert_eq!(a.tip(run), origin.tip(run));
    assert_eq!(origin.subjects(run)[0], "claim T1 by implementer#1");
    assert_eq!(
        a.task_state("T1"),
        ("claimed".to_owned(), Some("implementer#1".to_owned()))
    );
    for r in [&a, &b, &c] {
        r.mara(&["sync"]).ok("sync");
        assert_eq!(r.tip(run), origin.tip(run));
        r.verify_ok();
    }
}

#[test]
fn init_with_an_unknown_remote_fails_and_writes_nothing() {
    let origin = Origin::path();
    let a = origin.clone_repo("a");
    let o = a.mara(&["init", "--run", "x", "--remote", "nosuchremote"]);
    o.expect_code(1, "init --remote nosuchremote")
        .stderr_has("nosuchremote");
    assert!(mara_refs(&a.dir).is_empty(), "no local ref");
    assert!(!config_has(&a.dir, "mara.run"), "mara.run not set");
    assert!(
        origin
            .git(&["for-each-ref", "refs/mara/"])
            .trim()
            .is_empty(),
        "nothing on the remote"
    );
}

#[test]
fn an_unreachable_remote_fails_a_claim_and_leaves_the_local_ref() {
    let run = "sprint";
    let mut origin = Origin::daemon();
    let a = origin.clone_repo("a");
    a.mara(&["init", "--run", run, "--remote", "origin"])
        .ok("init");
    a.mara(&["task", "add", "T1", "work"]).ok("task add T1");
    a.mara(&["task", "add", "T2", "work"]).ok("task add T2");
    let b = origin.clone_repo("b");
    b.mara(&["sync", "--run", run]).ok("sync b");
    let remote_before = origin.tip(run);

    // The daemon is gone.
    origin.kill_daemon();
    let o = assert_ref_unchanged(&a, run, || a.mara_as("implementer#1", &["claim", "T1"]));
    o.expect_code(1, "claim with the daemon killed")
        .stderr_has("remote origin");
    assert_eq!(a.task_state("T1"), ("open".to_owned(), None));
    let o = assert_ref_unchanged(&a, run, || a.mara(&["sync"]));
    o.expect_code(1, "sync with the daemon killed")
        .stderr_has("remote origin");
    let o = assert_ref_unchanged(&a, run, || a.mara(&["board", "--fetch"]));
    o.expect_code(1, "board --fetch with the daemon killed")
        .stderr_has("remote origin");

    // A URL on a port nobody listens on.
    let port = free_port();
    b.git(&[
        "remote",
        "set-url",
        "origin",
        &format!("git://127.0.0.1:{port}/x.git"),
    ]);
    let o = assert_ref_unchanged(&b, run, || b.mara_as("implementer#2", &["claim", "--next"]));
    o.expect_code(1, "claim --next with a closed port")
        .stderr_has("remote origin");
    assert_eq!(b.task_state("T1"), ("open".to_owned(), None));
    assert_eq!(origin.tip(run), remote_before, "nothing reached the remote");
}

#[test]
fn sync_of_a_run_the_remote_lacks_fails() {
    let origin = Origin::daemon();
    let a = origin.clone_repo("a");
    a.mara(&["init", "--run", "sprint", "--remote", "origin"])
        .ok("init");
    let b = origin.clone_repo("b");
    let o = b.mara(&["sync", "--run", "missing"]);
    o.expect_code(1, "sync --run missing")
        .stderr_has("no run missing")
        .stderr_has("remote origin");
    assert!(mara_refs(&b.dir).is_empty(), "no local ref");
    assert!(!config_has(&b.dir, "mara.run"), "mara.run not set");
}

#[test]
fn init_of_a_run_that_exists_on_the_remote_points_to_sync() {
    let run = "sprint";
    let origin = Origin::daemon();
    let a = origin.clone_repo("a");
    a.mara(&["init", "--run", run, "--remote", "origin"])
        .ok("init in A");
    let remote_before = origin.tip(run);
    let b = origin.clone_repo("b");
    let o = b.mara(&["init", "--run", run, "--remote", "origin"]);
    o.expect_code(1, "init of an existing remote run")
        .stderr_has("mara sync");
    assert!(mara_refs(&b.dir).is_empty(), "no local ref in B");
    assert!(!config_has(&b.dir, "mara.run"), "mara.run not set in B");
    assert_eq!(origin.tip(run), remote_before, "the remote's run untouched");
    // What the message says works.
    b.mara(&["sync", "--run", run]).ok("sync in B");
    assert_eq!(b.tip(run), remote_before);
}

/// A clone in remote mode of run `run`, whose remote ref was then force-pushed
/// by a third repository to an unrelated commit; returns the clone and the
/// remote's new tip.
fn rewritten_remote(origin: &Origin, run: &str) -> (TestRepo, String) {
    let a = origin.clone_repo("a");
    a.mara(&["init", "--run", run, "--remote", "origin"])
        .ok("init");
    a.mara(&["task", "add", "T1", "work"]).ok("task add");
    let rogue = origin.clone_repo("rogue");
    std::fs::write(rogue.dir.join("other.txt"), "other history\n").expect("writing a file");
    rogue.git(&["add", "other.txt"]);
    rogue.git(&["commit", "-q", "-m", "unrelated"]);
    rogue.git(&[
        "push",
        "-q",
        "--force",
        "origin",
        &format!("HEAD:refs/mara/{run}"),
    ]);
    let rewritten = origin.tip(run);
    assert_ne!(rewritten, a.tip(run));
    (a, rewritten)
}

/// Whether a message says the remote's ref was rewritten or has diverged.
fn says_rewritten(stderr: &str) -> bool {
    stderr.contains("rewr") || stderr.contains("diverged")
}

#[test]
fn a_rewritten_remote_ref_is_refused_and_not_followed() {
    let run = "sprint";
    let origin = Origin::daemon();
    let (a, rewritten) = rewritten_remote(&origin, run);

    let o = assert_ref_unchanged(&a, run, || a.mara_as("implementer#1", &["claim", "--next"]));
    o.expect_code(1, "claim --next against a rewritten remote")
        .stderr_has("refs/mara/sprint")
        .stderr_has("remote origin");
    let o = assert_ref_unchanged(&a, run, || a.mara(&["sync"]));
    o.expect_code(1, "sync against a rewritten remote");
    assert!(says_rewritten(&o.stderr), "sync says so: {o:?}");
    let o = assert_ref_unchanged(&a, run, || a.mara(&["board", "--fetch"]));
    o.expect_code(1, "board --fetch against a rewritten remote");
    assert_eq!(
        origin.tip(run),
        rewritten,
        "mara did not overwrite the remote"
    );
    a.verify_ok();
}

#[test]
fn a_write_against_a_rewritten_remote_says_it_was_rewritten() {
    let run = "sprint";
    let origin = Origin::daemon();
    let (a, _) = rewritten_remote(&origin, run);
    let o = assert_ref_unchanged(&a, run, || a.mara_as("implementer#1", &["claim", "--next"]));
    o.expect_code(1, "claim --next against a rewritten remote");
    assert!(says_rewritten(&o.stderr), "claim says so: {o:?}");
    let o = assert_ref_unchanged(&a, run, || a.mara(&["board", "--fetch"]));
    o.expect_code(1, "board --fetch against a rewritten remote");
    assert!(says_rewritten(&o.stderr), "board --fetch says so: {o:?}");
}

#[test]
fn plain_git_fetches_the_run_from_the_remote() {
    let run = "sprint";
    let origin = Origin::daemon();
    let clones = shared_run(&origin, run, 2, 3);
    clones[0]
        .mara_as("implementer#1", &["claim", "T000"])
        .ok("claim in A");
    clones[1]
        .mara_as("implementer#2", &["claim", "T001"])
        .ok("claim in B");

    // Someone without mara.
    let p = origin.clone_repo("person");
    p.git(&["fetch", "-q", "origin", "refs/mara/*:refs/mara/*"]);
    let subj = subjects(&p.dir, run);
    assert!(
        subj.contains(&"claim T000 by implementer#1".to_owned()),
        "{subj:?}"
    );
    assert!(
        subj.contains(&"claim T001 by implementer#2".to_owned()),
        "{subj:?}"
    );
    assert_eq!(count_commits_with_subject(&p.dir, run, "claim "), 2);
    assert_eq!(ref_tip(&p.dir, run), origin.tip(run));
}

#[test]
fn board_says_when_it_last_synced_and_fetch_shows_other_clones_claims() {
    let run = "sprint";
    let origin = Origin::daemon();
    let a = origin.clone_repo("a");
    a.mara(&["init", "--run", run, "--remote", "origin"])
        .ok("init");
    a.mara(&["task", "add", "T1", "work"]).ok("task add");
    let b = origin.clone_repo("b");
    b.mara(&["sync", "--run", run]).ok("sync b");

    let o = a.mara(&["board"]);
    o.ok("board in A");
    assert!(o.stdout.contains("last synced with origin"), "{o:?}");

    b.mara_as("implementer#2", &["claim", "T1"])
        .ok("b claims T1");
    let row = |out: &Out| {
        out.stdout
            .lines()
            .find(|l| l.starts_with("T1 "))
            .unwrap_or_else(|| panic!("no T1 row: {out:?}"))
            .to_owned()
    };
    // Without --fetch, A shows what it last fetched.
    let o = a.mara(&["board"]);
    o.ok("board in A");
    assert!(row(&o).contains("open"), "{o:?}");

    let o = a.mara(&["board", "--fetch"]);
    o.ok("board --fetch in A");
    let t1 = row(&o);
    assert!(
        t1.contains("claimed") && t1.contains("implementer#2"),
        "board --fetch shows B's claim: {o:?}"
    );
    assert!(o.stdout.contains("last synced with origin"), "{o:?}");
    assert_eq!(a.tip(run), origin.tip(run));
    let j = a.mara(&["board", "--json"]);
    j.ok("board --json");
    let v: Value = serde_json::from_str(&j.stdout).expect("board --json is JSON");
    assert!(v["synced_at"].is_string(), "{v}");
}

/// What the run's turn ref holds while nobody waits (`remote::free_turn`).
const FREE_TURN: &str = "mara: no writer is waiting for its turn";

/// Issue 16: the turn ref holds a fixed blob while nobody waits, and a waiting
/// writer's intent (a commit that lost) while one does. A lone writer never
/// writes it. An intent whose writer is gone (killed, or a forged value) holds the
/// next writer up only briefly: it is handed back and the claim lands.
#[test]
fn an_intent_left_on_the_turn_ref_delays_the_next_writer_only_briefly() {
    let run = "sprint";
    let origin = Origin::daemon();
    let clones = shared_run(&origin, run, 1, 6);
    let a = &clones[0];
    let turn = format!("refs/mara-turn/{run}");
    let turn_at = || origin.git(&["rev-parse", &turn]).trim().to_owned();
    let free = turn_at();
    assert_eq!(
        origin.git(&["cat-file", "-p", &free]).trim(),
        FREE_TURN,
        "init sets the turn ref free"
    );
    a.mara_as("implementer#1", &["claim", "T000"]).ok("claim");
    assert_eq!(turn_at(), free, "a lone writer leaves the turn ref alone");

    // Intents of writers that are gone, built with plumbing on the remote: a
    // commit of another clone (not in this clone's objects), a blob, an old tip
    // of the run (in this clone's objects: taken over), and no turn ref at all.
    let tree = origin.git(&["rev-parse", &format!("refs/mara/{run}^{{tree}}")]);
    let foreign = origin.git(&[
        "commit-tree",
        "-m",
        "an intent of a killed writer",
        tree.trim(),
    ]);
    let bare = origin.bare.to_str().expect("UTF-8 path");
    let blob = git_input(
        &origin.bare,
        &["--git-dir", bare, "hash-object", "-w", "--stdin"],
        b"forged\n",
    );
    let old_tip = origin.git(&["rev-parse", &format!("refs/mara/{run}~1")]);
    let values: [Option<&str>; 4] = [
        Some(foreign.trim()),
        Some(blob.trim()),
        Some(old_tip.trim()),
        None,
    ];
    for (k, value) in values.into_iter().enumerate() {
        match value {
            Some(v) => origin.git(&["update-ref", &turn, v]),
            None => origin.git(&["update-ref", "-d", &turn]),
        };
        let task = format!("T00{}", k + 1);
        let started = Instant::now();
        a.mara_as("implementer#1", &["claim", &task])
            .ok("claim past a dead intent");
        let took = started.elapsed();
        assert_eq!(
            turn_at(),
            free,
            "the claim handed the turn back ({value:?})"
        );
        assert!(
            took < Duration::from_secs(10),
            "a dead intent {value:?} held the claim up for {took:?}"
        );
        assert_eq!(
            origin.count(run, &format!("claim {task} by implementer#1")),
            1
        );
    }
    a.verify_ok();
}
