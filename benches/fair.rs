//! Benchmark: no clone starves (issue 16). Four clones of one remote (a real `git
//! daemon` on 127.0.0.1), each a tight loop of `mara claim --next` processes with no
//! pause between claims, drain 200 tasks. Prints each clone's share and the longest
//! single claim; goal: every clone at least 10% of the claims, no claim over 10 s.
//! Also the median claim under this contention against one plain `git push` of a
//! one-commit fast-forward to the same daemon, timed in the same run.
//!
//! Run with `cargo bench --bench fair` (`MARA_BENCH_TASKS`, default 200;
//! `MARA_BENCH_CLONES`, default 4).

mod support;

use std::process::{Command, Stdio};
use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};

use support::{git, knob, median, ms, plan_file, repo, run_ok, timed, MARA};

fn main() {
    let tasks = knob("MARA_BENCH_TASKS", 200);
    let clones = knob("MARA_BENCH_CLONES", 4);
    let tmp = tempfile::tempdir().expect("tempdir");
    let (_daemon, url) = support::daemon(tmp.path());

    let dirs: Vec<_> = (0..clones)
        .map(|k| {
            let d = repo(&format!("clone{k}"), tmp.path());
            git(&d, &["remote", "add", "origin", &url]);
            d
        })
        .collect();
    let plan = plan_file(tmp.path(), tasks);
    run_ok(
        MARA,
        &dirs[0],
        &["init", "--run", "bench", "--remote", "origin"],
    );
    run_ok(
        MARA,
        &dirs[0],
        &["plan", plan.to_str().expect("utf-8 path")],
    );
    for d in &dirs[1..] {
        run_ok(MARA, d, &["sync", "--run", "bench"]);
    }

    // The floor: a plain push of a one-commit fast-forward to the same daemon.
    let pusher = repo("pusher", tmp.path());
    git(&pusher, &["remote", "add", "origin", &url]);
    let mut pushes = vec![];
    for round in 0..12 {
        git(
            &pusher,
            &["commit", "-q", "--allow-empty", "-m", &format!("r{round}")],
        );
        let p = timed(
            Command::new("git")
                .args(["push", "-q", "origin", "HEAD:refs/heads/floor"])
                .current_dir(&pusher)
                .stderr(Stdio::null()),
        );
        if round >= 2 {
            pushes.push(p);
        }
    }

    let barrier = Arc::new(Barrier::new(clones + 1));
    let started = Instant::now();
    let handles: Vec<_> = dirs
        .iter()
        .enumerate()
        .map(|(k, dir)| {
            let dir = dir.clone();
            let barrier = Arc::clone(&barrier);
            std::thread::spawn(move || {
                let who = format!("implementer#{}", k + 1);
                let mut waits = vec![];
                barrier.wait();
                loop {
                    let t = Instant::now();
                    let out = Command::new(MARA)
                        .args(["claim", "--next"])
                        .current_dir(&dir)
                        .env("MARA_INSTANCE", &who)
                        .stdin(Stdio::null())
                        .output()
                        .expect("mara runs");
                    let took = t.elapsed();
                    match out.status.code() {
                        Some(0) => waits.push(took),
                        Some(3 | 4) => break,
                        _ => panic!(
                            "{who}: mara claim --next failed: {}",
                            String::from_utf8_lossy(&out.stderr).trim()
                        ),
                    }
                }
                waits
            })
        })
        .collect();
    barrier.wait();
    let per_clone: Vec<Vec<Duration>> = handles
        .into_iter()
        .map(|h| h.join().expect("a claimer thread"))
        .collect();
    let took = started.elapsed();

    let counts: Vec<usize> = per_clone.iter().map(Vec::len).collect();
    let mut all: Vec<Duration> = per_clone.iter().flatten().copied().collect();
    let longest = all.iter().max().copied().unwrap_or_default();
    let fewest = counts.iter().min().copied().unwrap_or(0);
    let push = median(&mut pushes);
    let claim = median(&mut all);
    println!(
        "{clones} clones, tight loops of `mara claim --next` through git daemon: {} claims in {:.1}s ({:.1}/s)",
        counts.iter().sum::<usize>(),
        took.as_secs_f64(),
        counts.iter().sum::<usize>() as f64 / took.as_secs_f64()
    );
    println!(
        "split: {counts:?}; the fewest {:.0}% (goal >= 10%)",
        100.0 * fewest as f64 / tasks.max(1) as f64
    );
    println!(
        "longest single claim: {:.2} s (goal <= 10 s); median claim {:.1} ms = {:.2}x a lone git push ({:.1} ms)",
        longest.as_secs_f64(),
        ms(claim),
        ms(claim) / ms(push),
        ms(push)
    );
    let refs = git(&dirs[0], &["ls-remote", "origin", "refs/mara/*"]);
    let tip = refs
        .split_whitespace()
        .next()
        .unwrap_or_default()
        .to_owned();
    git(
        &dirs[0],
        &["fetch", "-q", "origin", "refs/mara/bench:refs/mara/bench"],
    );
    let claims = git(&dirs[0], &["log", "--format=%s", &tip])
        .lines()
        .filter(|s| s.starts_with("claim "))
        .count();
    assert_eq!(claims, tasks, "one claim per task on the remote");
}
