//! Benchmark: waiting for work (issue 14).
//!
//! * How soon a waiting `mara claim --next --wait` gets a task that becomes ready:
//!   from the moment the `mara task add` that adds it has exited (its event is on
//!   the ref) to the moment the waiter has exited with the claim written; locally,
//!   and through a `git daemon` with the task added in another clone, after the
//!   waiter has idled long enough for its fetches to be `poll_sec` apart.
//! * `mara inbox` with 10 new messages on a big log, against a `mara claim` of a
//!   named task on the same board (the bound: at most 2x).
//!
//! Run with `cargo bench --bench wait` (`MARA_BENCH_N` rounds, default 20;
//! `MARA_BENCH_EVENTS` the big log's length, default 100,000: about five minutes to
//! build on a 2-core machine, 10,000 for a quick figure).

mod support;

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use support::{git, knob, mara, median, ms, release, repo};

fn run(dir: &Path, who: &str, args: &[&str]) {
    let st = Command::new(support::MARA)
        .args(args)
        .current_dir(dir)
        .env("MARA_INSTANCE", who)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .status()
        .expect("mara runs");
    assert!(st.success(), "mara {args:?} failed");
}

/// Rounds of: a waiter in `waiter_dir` starts, `idle` later a task is added in
/// `adder_dir`; how long from the end of that `task add` to the waiter's exit.
fn wake_latency(
    adder_dir: &Path,
    waiter_dir: &Path,
    rounds: usize,
    idle: Duration,
) -> Vec<Duration> {
    run(
        adder_dir,
        "architect#1",
        &["task", "add", "T0", "held elsewhere"],
    );
    run(adder_dir, "implementer#9", &["claim", "T0"]);
    let mut out = vec![];
    for round in 0..rounds + 2 {
        let mut waiter = Command::new(support::MARA)
            .args(["claim", "--next", "--wait", "60"])
            .current_dir(waiter_dir)
            .env("MARA_INSTANCE", "implementer#1")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .spawn()
            .expect("the waiter starts");
        // Let it find nothing ready and wait (remotely: until its fetches are
        // `poll_sec` apart).
        std::thread::sleep(idle);
        assert!(
            waiter.try_wait().expect("poll").is_none(),
            "the waiter left"
        );
        run(
            adder_dir,
            "architect#1",
            &["task", "add", &format!("T{}", round + 1), "new work"],
        );
        let added = Instant::now();
        let st = waiter.wait().expect("the waiter ends");
        let took = added.elapsed();
        assert!(st.success(), "the waiter did not claim");
        if round >= 2 {
            out.push(took);
        }
    }
    out
}

fn report(what: &str, mut v: Vec<Duration>, bound: &str) {
    let n = v.len();
    let worst = *v.iter().max().expect("rounds");
    let m = median(&mut v);
    println!(
        "{what}: a new task claimed {:.1} ms after it was added (median of {n}; worst {:.1} ms; {bound})",
        ms(m),
        ms(worst)
    );
}

fn main() {
    mara::ledger::tune_libgit2();
    let rounds = knob("MARA_BENCH_N", 20);
    let events = knob("MARA_BENCH_EVENTS", 100_000);
    let dir = support::knob_path("MARA_BENCH_DIR").unwrap_or_else(std::env::temp_dir);
    let tmp = tempfile::tempdir_in(dir).expect("tempdir");

    let local = repo("wake", tmp.path());
    run(&local, "architect#1", &["init", "--run", "wake"]);
    let v = wake_latency(&local, &local, rounds, Duration::from_millis(300));
    report("claim --next --wait, local", v, "bound 250 ms");

    // Remotely: the task is added in another clone of a `git daemon`'s repository.
    let (_daemon, url) = support::daemon(tmp.path());
    let a = repo("a", tmp.path());
    let b = repo("b", tmp.path());
    git(&a, &["remote", "add", "origin", &url]);
    git(&b, &["remote", "add", "origin", &url]);
    run(
        &a,
        "architect#1",
        &["init", "--run", "wake", "--remote", "origin"],
    );
    run(&b, "architect#1", &["sync", "--run", "wake"]);
    let remote_rounds = knob("MARA_BENCH_REMOTE_N", 8);
    let v = wake_latency(&a, &b, remote_rounds, Duration::from_secs(4));
    report(
        "claim --next --wait, remote",
        v,
        "bound poll_sec (2 s) + one push",
    );

    let big = support::big_repo(tmp.path(), events);
    // implementer#1 has read everything so far.
    mara(&big, &["inbox"]);
    let (mut inbox, mut claim) = (vec![], vec![]);
    for round in 0..rounds + 3 {
        for i in 0..10 {
            run(
                &big,
                "reviewer#1",
                &["post", "note", &format!("round {round} message {i}")],
            );
        }
        let i = mara(&big, &["inbox"]);
        let named = format!("T{}", 5000 + round % 1000);
        let c = mara(&big, &["claim", &named]);
        release(&big, &named);
        if round >= 3 {
            inbox.push(i);
            claim.push(c);
        }
    }
    let (i, c) = (median(&mut inbox), median(&mut claim));
    println!(
        "inbox with 10 new messages on {events} events: {:.2} ms; claim of a named task: {:.2} ms; = {:.2}x (bound 2x)",
        ms(i),
        ms(c),
        ms(i) / ms(c)
    );
}
