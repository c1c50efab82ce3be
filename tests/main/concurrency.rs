//! Many processes racing for the same ref: the compare-and-swap must let exactly
//! one writer win each task.

use std::collections::BTreeSet;
use std::sync::{Arc, Barrier};
use std::thread;
use std::time::Instant;

use serde_json::Value;

use crate::common::{count_commits_with_subject, held_by, newest_subject, subjects, Out, TestRepo};

#[test]
fn sixteen_processes_claiming_one_task_yield_exactly_one_winner() {
    const N: usize = 16;
    let run = "race";
    let r = Arc::new(TestRepo::with_run(run));
    r.mara(&["task", "add", "T1", "contested"])
        .ok("task add T1");

    let barrier = Arc::new(Barrier::new(N));
    let handles: Vec<_> = (1..=N)
        .map(|k| {
            let r = Arc::clone(&r);
            let barrier = Arc::clone(&barrier);
            thread::spawn(move || {
                let who = format!("implementer#{k}");
                let mut cmd = r.mara_command(&["claim", "T1"], &[("MARA_INSTANCE", &who)], None);
                barrier.wait();
                let child = cmd.spawn().expect("spawning mara claim");
                let out = child.wait_with_output().expect("waiting for mara claim");
                (k, Out::from_output(out))
            })
        })
        .collect();
    let results: Vec<(usize, Out)> = handles
        .into_iter()
        .map(|h| h.join().expect("a claimer thread"))
        .collect();

    let winners: Vec<usize> = results
        .iter()
        .filter(|(_, o)| o.code == 0)
        .map(|(k, _)| *k)
        .collect();
    assert_eq!(winners.len(), 1, "exactly one winner: {results:#?}");
    let winner = format!("implementer#{}", winners[0]);
    for (k, o) in &results {
        if o.code == 0 {
            continue;
        }
        assert_eq!(o.code, 3, "implementer#{k} lost with exit 3: {o:?}");
        assert_eq!(
            held_by(&o.stderr, "T1").as_deref(),
            Some(winner.as_str()),
            "implementer#{k}'s refusal names the winner: {o:?}"
        );
    }
    assert_eq!(count_commits_with_subject(&r.dir, run, "claim T1 by"), 1);
    assert_eq!(
        count_commits_with_subject(&r.dir, run, &format!("claim T1 by {winner}")),
        1
    );
    // init, task add, one claim.
    assert_eq!(subjects(&r.dir, run).len(), 3);
    assert_eq!(r.task_state("T1"), ("claimed".to_owned(), Some(winner)));
    r.verify_ok();
}

#[test]
fn eight_processes_draining_500_tasks_claim_each_exactly_once() {
    const WORKERS: usize = 8;
    const TASKS: usize = 500;
    let run = "drain";
    let r = Arc::new(TestRepo::with_run(run));
    let plan: Vec<Value> = (0..TASKS)
        .map(|i| serde_json::json!({"id": format!("T{i:03}"), "title": format!("task {i}")}))
        .collect();
    let plan_file = r.write_outside(
        "plan.json",
        &serde_json::to_string(&plan).expect("the plan serialises"),
    );
    r.mara(&["plan", plan_file.to_str().expect("a UTF-8 path")])
        .ok("mara plan with 500 tasks");

    let started = Instant::now();
    let barrier = Arc::new(Barrier::new(WORKERS));
    let handles: Vec<_> = (1..=WORKERS)
        .map(|k| {
            let r = Arc::clone(&r);
            let barrier = Arc::clone(&barrier);
            thread::spawn(move || {
                let who = format!("implementer#{k}");
                let mut got = vec![];
                barrier.wait();
                loop {
                    let o = r.mara_in(
                        &["claim", "--next", "--json"],
                        &[("MARA_INSTANCE", &who)],
                        None,
                    );
                    match o.code {
                        0 => {
                            let v: Value = serde_json::from_str(&o.stdout)
                                .expect("claim --json prints one JSON value");
                            assert_eq!(v["type"], "claim", "{who}: {v}");
                            assert_eq!(v["sender"], who.as_str());
                            let task = v["payload"]["task"]
                                .as_str()
                                .expect("payload.task is a string")
                                .to_owned();
                            got.push(task);
                        }
                        3 => {
                            assert!(o.stderr.contains("nothing ready"), "{who}: {o:?}");
                            break;
                        }
                        _ => panic!("{who}: claim --next failed: {o:?}"),
                    }
                }
                got
            })
        })
        .collect();
    let per_worker: Vec<Vec<String>> = handles
        .into_iter()
        .map(|h| h.join().expect("a worker thread"))
        .collect();
    let elapsed = started.elapsed();
    eprintln!(
        "500 claims by {WORKERS} processes took {:.1}s; per worker: {:?}",
        elapsed.as_secs_f64(),
        per_worker.iter().map(Vec::len).collect::<Vec<_>>()
    );

    let all: Vec<&String> = per_worker.iter().flatten().collect();
    let unique: BTreeSet<&String> = all.iter().copied().collect();
    assert_eq!(all.len(), TASKS, "every claim returned one task");
    assert_eq!(unique.len(), TASKS, "no task was claimed twice");
    let expected: BTreeSet<String> = (0..TASKS).map(|i| format!("T{i:03}")).collect();
    assert_eq!(
        unique.into_iter().cloned().collect::<BTreeSet<String>>(),
        expected
    );
    assert_eq!(count_commits_with_subject(&r.dir, run, "claim "), TASKS);
    assert_eq!(subjects(&r.dir, run).len(), TASKS + 2, "init, plan, claims");
    r.verify_ok();
}

/// One process of a race: its extra environment and its arguments.
type Job = (Vec<(String, String)>, Vec<String>);

/// Starts `mara args` once per job at the same moment; returns each one's output
/// in order.
fn race(r: &Arc<TestRepo>, runs: Vec<Job>) -> Vec<Out> {
    let barrier = Arc::new(Barrier::new(runs.len()));
    let handles: Vec<_> = runs
        .into_iter()
        .map(|(envs, args)| {
            let r = Arc::clone(r);
            let barrier = Arc::clone(&barrier);
            thread::spawn(move || {
                let envs: Vec<(&str, &str)> =
                    envs.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
                let args: Vec<&str> = args.iter().map(String::as_str).collect();
                let mut cmd = r.mara_command(&args, &envs, None);
                barrier.wait();
                let child = cmd.spawn().expect("spawning mara");
                Out::from_output(child.wait_with_output().expect("waiting for mara"))
            })
        })
        .collect();
    handles
        .into_iter()
        .map(|h| h.join().expect("a racing thread"))
        .collect()
}

/// `mara init --run X` by 8 processes at once; returns their outputs.
fn race_inits(r: &Arc<TestRepo>, run: &str) -> Vec<Out> {
    race(
        r,
        (0..8)
            .map(|_| {
                (
                    vec![],
                    vec!["init".into(), "--run".into(), run.into(), "--json".into()],
                )
            })
            .collect(),
    )
}

/// The commits the successful inits report having created.
fn init_commits(outs: &[Out]) -> Vec<String> {
    outs.iter()
        .filter(|o| o.code == 0)
        .map(|o| {
            let v: Value = serde_json::from_str(&o.stdout).expect("init --json prints JSON");
            v["commit"]
                .as_str()
                .expect("init reports its commit")
                .to_owned()
        })
        .collect()
}

#[test]
fn concurrent_inits_of_one_run_leave_one_init_commit() {
    let r = Arc::new(TestRepo::new());
    let outs = race_inits(&r, "once");
    let winners = init_commits(&outs);
    assert!(!winners.is_empty(), "someone creates the run: {outs:#?}");
    assert!(
        winners.contains(&r.tip("once")),
        "the ref holds a winner's commit: {outs:#?}"
    );
    for o in outs.iter().filter(|o| o.code != 0) {
        assert_eq!(o.code, 1, "{o:?}");
        // "run once already exists", "run once was created by someone else just
        // now", or (losing on git's lock file) "creating refs/mara/once: ...".
        // (Losing the .git/config lock after writing the ref is the bug of
        // `concurrent_inits_of_different_runs_succeed_or_write_nothing`.)
        assert!(
            o.stderr.contains("run once ")
                || o.stderr.contains("refs/mara/once")
                || o.stderr.contains("git config mara.run"),
            "{o:?}"
        );
    }
    assert_eq!(subjects(&r.dir, "once").len(), 1);
    r.verify_ok();
}

/// Creating a run is a compare-and-swap from "absent": exactly one of several
/// concurrent inits may succeed, and its commit is the one the ref keeps.
#[test]
fn concurrent_inits_of_one_run_have_exactly_one_winner() {
    let r = Arc::new(TestRepo::new());
    for round in 0..20 {
        let run = format!("once{round}");
        let outs = race_inits(&r, &run);
        let winners = init_commits(&outs);
        assert_eq!(winners.len(), 1, "round {round}: {outs:#?}");
        assert_eq!(winners[0], r.tip(&run), "round {round}");
        let reflog = r.git(&["reflog", "show", "--format=%H", &format!("refs/mara/{run}")]);
        assert_eq!(
            reflog.lines().count(),
            1,
            "round {round}: the ref moved twice"
        );
    }
}

/// Exit 1 means nothing was written: a run whose `init` failed must not exist.
#[test]
fn concurrent_inits_of_different_runs_succeed_or_write_nothing() {
    const N: usize = 16;
    let r = Arc::new(TestRepo::new());
    let outs = race(
        &r,
        (1..=N)
            .map(|k| (vec![], vec!["init".into(), "--run".into(), format!("r{k}")]))
            .collect(),
    );
    let refs = r.git(&["for-each-ref", "--format=%(refname)", "refs/mara/"]);
    for (k, o) in (1..=N).zip(&outs) {
        let exists = refs.lines().any(|l| l == format!("refs/mara/r{k}"));
        assert!(
            o.code == 0 || !exists,
            "init --run r{k} exited {} but created refs/mara/r{k}: {}",
            o.code,
            o.stderr
        );
    }
    for o in &outs {
        o.ok("concurrent init of its own run");
    }
}

#[test]
fn concurrent_reclaims_of_an_expired_task_have_one_winner() {
    let run = "reclaim";
    let r = Arc::new(TestRepo::new());
    r.mara(&["init", "--run", run, "--claim-timeout", "1"])
        .ok("init with a 1 s lease");
    r.mara(&["task", "add", "T1", "abandoned"]).ok("task add");
    r.mara_as("implementer#1", &["claim", "T1"]).ok("claim");
    std::thread::sleep(std::time::Duration::from_millis(1300));

    let outs = race(
        &r,
        (2..=9)
            .map(|k| {
                (
                    vec![("MARA_INSTANCE".to_owned(), format!("implementer#{k}"))],
                    vec!["claim".to_owned(), "T1".to_owned()],
                )
            })
            .collect(),
    );
    let winners: Vec<usize> = outs
        .iter()
        .enumerate()
        .filter(|(_, o)| o.code == 0)
        .map(|(i, _)| i + 2)
        .collect();
    assert_eq!(winners.len(), 1, "{outs:#?}");
    let winner = format!("implementer#{}", winners[0]);
    for o in outs.iter().filter(|o| o.code != 0) {
        assert_eq!(o.code, 3, "{o:?}");
        assert_eq!(held_by(&o.stderr, "T1").as_deref(), Some(winner.as_str()));
    }
    assert_eq!(count_commits_with_subject(&r.dir, run, "reclaim T1 by"), 1);
    assert_eq!(
        count_commits_with_subject(
            &r.dir,
            run,
            &format!("reclaim T1 by {winner} from implementer#1")
        ),
        1
    );
    r.verify_ok();
}

/// Regression: a writer that read the tip just before another writer moved the
/// ref (and recorded it as seen) must retry, not call the run rewritten.
#[test]
fn parallel_writers_never_see_a_false_rewrite() {
    let run = "race";
    let r = TestRepo::with_run(run);
    let failures: Vec<String> = std::thread::scope(|s| {
        let handles: Vec<_> = (1..=5)
            .map(|k| {
                let r = &r;
                s.spawn(move || {
                    let who = format!("implementer#{k}");
                    (0..40)
                        .map(|n| r.mara_as(&who, &["post", "note", &format!("{who} note {n}")]))
                        .filter(|o| o.code != 0)
                        .map(|o| o.stderr)
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        handles
            .into_iter()
            .flat_map(|h| h.join().expect("a writer thread"))
            .collect()
    });
    assert!(failures.is_empty(), "writes failed: {failures:#?}");
    assert_eq!(
        crate::common::count_commits_with_subject(&r.dir, run, "note by"),
        200
    );
    r.verify_ok();
}

/// The clone's queue of writers (`.git/mara/writers/<run>`, a `flock`) orders the
/// processes of one clone but never wedges them: a holder that does not let go
/// delays a writer by the queue's patience (5 s) and no more, and a holder that is
/// killed lets the next writer in at once (the kernel drops its lock).
#[test]
fn a_held_writer_queue_delays_a_claim_briefly_and_a_killed_holder_not_at_all() {
    let run = "queue";
    let r = TestRepo::with_run(run);
    r.plan_numbered(0..3, |i| format!("T{i}"));
    let queue = r.dir.join(".git/mara/writers").join(run);
    assert!(queue.exists(), "the plan's append made the queue's file");
    // A process of its own holds the queue, as a stuck writer would.
    // `-o`: the lock stays with `flock` itself, not its `sleep`, so killing
    // `flock` kills the holder.
    let mut holder = std::process::Command::new("flock")
        .arg("-o")
        .arg(&queue)
        .args(["sleep", "60"])
        .spawn()
        .expect("flock runs");
    std::thread::sleep(std::time::Duration::from_millis(300));
    let started = Instant::now();
    r.mara_as("implementer#1", &["claim", "T0"])
        .ok("a claim while the queue is held");
    let waited = started.elapsed();
    assert!(
        waited >= std::time::Duration::from_millis(4500),
        "the claim waited its turn first ({waited:?})"
    );
    assert!(
        waited < std::time::Duration::from_secs(15),
        "and then wrote without it ({waited:?})"
    );
    assert_eq!(
        newest_subject(&r.dir, run),
        "claim T0 by implementer#1",
        "the claim landed"
    );
    holder.kill().expect("kill the holder");
    holder.wait().expect("reap the holder");
    let started = Instant::now();
    r.mara_as("implementer#2", &["claim", "T1"])
        .ok("a claim after the holder died");
    assert!(
        started.elapsed() < std::time::Duration::from_secs(3),
        "a killed holder's lock is gone ({:?})",
        started.elapsed()
    );
    r.verify_ok();
}
