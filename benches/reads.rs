//! Benchmark: what reads cost on a big board (issue 16, "reads cost what they
//! return"), each against the plain `git` doing the same work, in the same run,
//! interleaved round by round, as whole processes:
//!
//! * `mara log --json` against `git log --format=%B` of the run's ref;
//! * `mara board --json` against `git ls-tree -r` piped to `git cat-file --batch`;
//! * `mara status` and `mara claim --next` against a `mara claim` of a named task.
//!
//! Run with `cargo bench --bench reads` (`MARA_BENCH_EVENTS`, default 100,000, sets
//! the history of the 10,000-task board; `MARA_BENCH_N` the rounds).

mod support;

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use support::{knob, mara, median, ms, release, timed};

fn git_timed(dir: &Path, args: &[&str]) -> Duration {
    timed(Command::new("git").args(args).current_dir(dir))
}

fn sh_timed(dir: &Path, script: &str) -> Duration {
    timed(Command::new("sh").args(["-c", script]).current_dir(dir))
}

fn main() {
    mara::ledger::tune_libgit2();
    let rounds = knob("MARA_BENCH_N", 30);
    let events = knob("MARA_BENCH_EVENTS", 100_000);
    let dir = support::knob_path("MARA_BENCH_DIR").unwrap_or_else(std::env::temp_dir);
    let mut tmp = tempfile::tempdir_in(dir).expect("tempdir");
    // MARA_BENCH_KEEP=1 leaves the repository behind, to look into.
    if knob("MARA_BENCH_KEEP", 0) == 1 {
        tmp.disable_cleanup(true);
    }
    let big = support::big_repo(tmp.path(), events);

    let mut rows: Vec<(&str, Vec<Duration>, Vec<Duration>, &str)> = vec![
        ("log --json", vec![], vec![], "git log --format=%B"),
        (
            "board --json",
            vec![],
            vec![],
            "git ls-tree -r | git cat-file --batch",
        ),
        ("status", vec![], vec![], "mara claim T<n>"),
        ("claim --next", vec![], vec![], "mara claim T<n>"),
    ];
    for round in 0..rounds + 3 {
        let warm = round < 3;
        let named = format!("T{}", 5000 + round % 1000);
        let samples = [
            (
                mara(&big, &["log", "--json"]),
                git_timed(&big, &["log", "--format=%B", "refs/mara/bench"]),
            ),
            (
                mara(&big, &["board", "--json"]),
                sh_timed(
                    &big,
                    "git ls-tree -r --object-only refs/mara/bench | git cat-file --batch",
                ),
            ),
            (mara(&big, &["status"]), {
                let d = mara(&big, &["claim", &named]);
                release(&big, &named);
                d
            }),
            (
                {
                    let d = mara(&big, &["claim", "--next"]);
                    let next = support::git(
                        &big,
                        &[
                            "log",
                            "-1",
                            "--format=%(trailers:key=Mara-Task,valueonly)",
                            "refs/mara/bench",
                        ],
                    );
                    release(&big, next.trim());
                    d
                },
                {
                    let d = mara(&big, &["claim", &named]);
                    release(&big, &named);
                    d
                },
            ),
        ];
        if !warm {
            for (row, (m, g)) in rows.iter_mut().zip(samples) {
                row.1.push(m);
                row.2.push(g);
            }
        }
    }
    println!("10,000 tasks, {events} events, {rounds} rounds (medians of whole processes)");
    for (what, mut m, mut g, against) in rows {
        let (m, g) = (median(&mut m), median(&mut g));
        println!(
            "mara {what:<14} {:>8.2} ms   {against:<40} {:>8.2} ms   = {:.2}x",
            ms(m),
            ms(g),
            ms(m) / ms(g)
        );
    }
}
