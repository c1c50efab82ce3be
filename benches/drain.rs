//! Benchmark: eight processes draining one board (issue 16). On a board of 2,000
//! tasks, three drains, each on a fresh copy of the same board: one process
//! claiming with `mara claim --next` until nothing is left; eight such processes at
//! once; one process claiming the tasks by name (`mara claim T<i>`). Prints the
//! claims per second of each and the ratios (goals: eight together at least 0.8x
//! one alone with `--next`, and at least 0.7x one claiming named tasks), and counts
//! the tasks claimed twice in the eight-process history (must be 0).
//!
//! The three drains take turns, a quarter of the board at a time
//! (`MARA_BENCH_BLOCKS`), so load that changes during the run weighs on each alike.
//!
//! Run with `cargo bench --bench drain` (`MARA_BENCH_TASKS`, default 2,000;
//! `MARA_BENCH_PROCS`, default 8).

mod support;

use std::collections::BTreeMap;
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use support::{git, knob, planned, MARA};

/// One `mara claim` process as `who`; its exit code.
fn claim(dir: &Path, who: &str, args: &[&str]) -> i32 {
    Command::new(MARA)
        .arg("claim")
        .args(args)
        .current_dir(dir)
        .env("MARA_INSTANCE", who)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .expect("mara runs")
        .code()
        .unwrap_or(-1)
}

/// `procs` processes looping `claim --next` until `upto` claims in all exited 0
/// (`claimed` counts them across blocks) or nothing is left; how long it took.
fn drain_next(dir: &Path, procs: usize, claimed: &AtomicUsize, upto: usize) -> Duration {
    let started = Instant::now();
    std::thread::scope(|s| {
        for k in 1..=procs {
            s.spawn(move || {
                let who = format!("implementer#{k}");
                while claimed.load(Ordering::SeqCst) < upto {
                    match claim(dir, &who, &["--next"]) {
                        0 => {
                            claimed.fetch_add(1, Ordering::SeqCst);
                        }
                        // Nothing left (4), or nothing ready (3): drained.
                        3 | 4 => return,
                        code => panic!("{who}: claim --next exited {code}"),
                    }
                }
            });
        }
    });
    started.elapsed()
}

/// Tasks claimed more than once in the run's history.
fn doubles(dir: &Path) -> usize {
    let mut by_task: BTreeMap<String, usize> = BTreeMap::new();
    for s in git(dir, &["log", "--format=%s", "refs/mara/bench"]).lines() {
        if let Some(rest) = s.strip_prefix("claim ").or(s.strip_prefix("reclaim ")) {
            let task = rest.split(" by ").next().unwrap_or_default();
            *by_task.entry(task.to_owned()).or_default() += 1;
        }
    }
    by_task.values().filter(|&&n| n > 1).count()
}

fn main() {
    let tasks = knob("MARA_BENCH_TASKS", 2000);
    let procs = knob("MARA_BENCH_PROCS", 8);
    let blocks = knob("MARA_BENCH_BLOCKS", 4).max(1);
    let base = support::knob_path("MARA_BENCH_DIR").unwrap_or_else(std::env::temp_dir);
    let tmp = tempfile::tempdir_in(base).expect("tempdir");
    eprintln!("building three boards of {tasks} tasks");
    let alone = planned(tmp.path(), "alone", tasks);
    let many = planned(tmp.path(), "many", tasks);
    let named = planned(tmp.path(), "named", tasks);

    // Interleaved: each drain takes its share of the board in turn, block by
    // block (the order rotating), so a machine whose load changes during the run
    // weighs on all three alike.
    let (n_alone, n_many) = (AtomicUsize::new(0), AtomicUsize::new(0));
    let (mut t_alone, mut t_many, mut t_named) = (Duration::ZERO, Duration::ZERO, Duration::ZERO);
    let mut named_next = 0;
    for block in 1..=blocks {
        let upto = if block == blocks {
            usize::MAX
        } else {
            tasks * block / blocks
        };
        for kind in 0..3 {
            match (kind + block) % 3 {
                0 => t_alone += drain_next(&alone, 1, &n_alone, upto),
                1 => t_many += drain_next(&many, procs, &n_many, upto),
                _ => {
                    let started = Instant::now();
                    while named_next < upto.min(tasks) {
                        let code = claim(&named, "implementer#1", &[&format!("T{named_next}")]);
                        assert_eq!(code, 0, "claim T{named_next} exited {code}");
                        named_next += 1;
                    }
                    t_named += started.elapsed();
                }
            }
        }
    }
    let (n_alone, n_many) = (n_alone.into_inner(), n_many.into_inner());
    let rate = |n: usize, t: Duration| n as f64 / t.as_secs_f64();
    let (r_alone, r_many, r_named) = (
        rate(n_alone, t_alone),
        rate(n_many, t_many),
        rate(tasks, t_named),
    );
    let doubled = doubles(&many);
    println!(
        "{tasks} tasks, each drain on a fresh copy of the board, interleaved in {blocks} blocks (whole processes)"
    );
    println!(
        "1 process, claim --next:      {r_alone:.1} claims/s ({n_alone} in {:.1}s)",
        t_alone.as_secs_f64()
    );
    println!(
        "{procs} processes, claim --next: {r_many:.1} claims/s ({n_many} in {:.1}s)",
        t_many.as_secs_f64()
    );
    println!(
        "1 process, named claims:      {r_named:.1} claims/s ({tasks} in {:.1}s)",
        t_named.as_secs_f64()
    );
    println!(
        "{procs} together = {:.2}x one alone with --next (goal >= 0.8x), {:.2}x one claiming named tasks (goal >= 0.7x)",
        r_many / r_alone,
        r_many / r_named
    );
    println!("tasks claimed twice: {doubled} (must be 0)");
    assert_eq!(n_alone, tasks, "one process claimed every task");
    assert_eq!(n_many, tasks, "the {procs} processes claimed every task");
    assert_eq!(doubled, 0, "no task claimed twice");
}
