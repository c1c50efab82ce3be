//! Benchmark: eight processes draining one board (issue 16). On a board of 2,000
//! tasks, three drains, each on a fresh copy of the same board: one process
//! claiming with `mara claim --next` until nothing is left; eight such processes at
//! once; one process claiming the tasks by name (`mara claim T<i>`). Prints the
//! claims per second of each and the ratios (goals: eight together at least 0.8x
//! one alone with `--next`, and at least 0.7x one claiming named tasks), and counts
//! the tasks claimed twice in the eight-process history (must be 0).
//!
//! Run with `cargo bench --bench drain` (`MARA_BENCH_TASKS`, default 2,000;
//! `MARA_BENCH_PROCS`, default 8).

mod support;

use std::collections::BTreeMap;
use std::path::Path;
use std::process::{Command, Stdio};
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

/// `procs` processes looping `claim --next` until nothing is left; how long and
/// how many claims exited 0.
fn drain_next(dir: &Path, procs: usize) -> (Duration, usize) {
    let started = Instant::now();
    let claimed: usize = std::thread::scope(|s| {
        let handles: Vec<_> = (1..=procs)
            .map(|k| {
                s.spawn(move || {
                    let who = format!("implementer#{k}");
                    let mut n = 0;
                    loop {
                        match claim(dir, &who, &["--next"]) {
                            0 => n += 1,
                            // Nothing left (4), or nothing ready (3): drained.
                            3 | 4 => return n,
                            code => panic!("{who}: claim --next exited {code}"),
                        }
                    }
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().expect("a claimer"))
            .sum()
    });
    (started.elapsed(), claimed)
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
    let base = support::knob_path("MARA_BENCH_DIR").unwrap_or_else(std::env::temp_dir);
    let tmp = tempfile::tempdir_in(base).expect("tempdir");
    eprintln!("building three boards of {tasks} tasks");
    let alone = planned(tmp.path(), "alone", tasks);
    let many = planned(tmp.path(), "many", tasks);
    let named = planned(tmp.path(), "named", tasks);

    let (t_alone, n_alone) = drain_next(&alone, 1);
    let (t_many, n_many) = drain_next(&many, procs);
    let started = Instant::now();
    for i in 0..tasks {
        let code = claim(&named, "implementer#1", &[&format!("T{i}")]);
        assert_eq!(code, 0, "claim T{i} exited {code}");
    }
    let t_named = started.elapsed();

    let rate = |n: usize, t: Duration| n as f64 / t.as_secs_f64();
    let (r_alone, r_many, r_named) = (
        rate(n_alone, t_alone),
        rate(n_many, t_many),
        rate(tasks, t_named),
    );
    let doubled = doubles(&many);
    println!("{tasks} tasks, each drain on a fresh copy of the board (whole processes)");
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
