//! Benchmark: the cost of a `mara claim` process against the floor of a process that
//! moves one ref (`git update-ref`), and a claim on a big board with a long history
//! (10,000 tasks, 100,000 events) against a claim on a board of 10 tasks.
//!
//! Run with `cargo bench --bench claim` (`MARA_BENCH_N=500` for more rounds). All
//! three are timed in the same run, interleaved round by round, each as a whole
//! process, so machine noise hits them alike. Prints medians and the ratios.

mod support;

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Instant;

use support::{append, big_board, git, knob, mara, median, ms, p90, release, repo, tasks, MARA};

use mara::board::EventKind;
use mara::ledger::Ledger;

fn main() {
    mara::ledger::tune_libgit2();
    let rounds = knob("MARA_BENCH_N", 200);
    let events = knob("MARA_BENCH_EVENTS", 100_000);
    // MARA_BENCH_DIR picks the file system (e.g. /dev/shm to leave the disk out).
    let base = std::env::temp_dir();
    let dir = support::knob_path("MARA_BENCH_DIR").unwrap_or(base);
    let mut tmp = tempfile::tempdir_in(dir).expect("tempdir");
    // MARA_BENCH_KEEP=1 leaves the repositories behind, to look into.
    if knob("MARA_BENCH_KEEP", 0) == 1 {
        tmp.disable_cleanup(true);
    }
    eprintln!("building the boards in {}", tmp.path().display());

    let small = repo("small", tmp.path());
    assert!(Command::new(MARA)
        .args(["init", "--run", "bench"])
        .current_dir(&small)
        .stdout(Stdio::null())
        .status()
        .expect("mara init")
        .success());
    {
        let r = git2::Repository::open(&small).expect("open");
        let l = Ledger::open(r, "bench".parse().expect("id")).expect("ledger");
        append(
            &l,
            "planner#1",
            EventKind::Plan {
                tasks: tasks(0..10),
            },
        );
    }
    let big = repo("big", tmp.path());
    big_board(&big, events);
    let a = git(&small, &["rev-parse", "refs/mara/bench"]);
    let b = git(&small, &["rev-parse", "refs/mara/bench~1"]);

    let (mut floor, mut claim_small, mut claim_big) = (vec![], vec![], vec![]);
    for round in 0..rounds + 10 {
        // The floor: one process moving one ref in the same repository.
        let target = if round % 2 == 0 { &a } else { &b };
        let t = Instant::now();
        assert!(Command::new("git")
            .args(["update-ref", "refs/bench/floor", target])
            .current_dir(&small)
            .stdin(Stdio::null())
            .status()
            .expect("git update-ref")
            .success());
        let f = t.elapsed();
        let task = format!("T{}", round % 10);
        let s = mara(&small, &["claim", &task]);
        release(&small, &task);
        let task = format!("T{}", 5000 + round % 1000);
        let g = mara(&big, &["claim", &task]);
        release(&big, &task);
        if round >= 10 {
            // the first ten rounds warm caches up
            floor.push(f);
            claim_small.push(s);
            claim_big.push(g);
        }
    }
    let (f, s, g) = (
        median(&mut floor),
        median(&mut claim_small),
        median(&mut claim_big),
    );
    println!("rounds: {rounds} (medians of whole processes)");
    println!("git update-ref (floor):           {:.2} ms", ms(f));
    println!(
        "mara claim, 10 tasks:             {:.2} ms  = {:.2}x the floor (goal <= 2x)",
        ms(s),
        ms(s) / ms(f)
    );
    println!(
        "mara claim, 10k tasks/{}k events: {:.2} ms  = {:.2}x the small board (goal <= 1.3x)",
        events / 1000,
        ms(g),
        ms(g) / ms(s)
    );
    // Every so often a write also merges the small packs events leave; the median
    // hides that, the 90th percentile shows it.
    println!(
        "90th percentiles: floor {:.2} ms, claim on 10 tasks {:.2} ms, on the big board {:.2} ms",
        ms(p90(&mut floor)),
        ms(p90(&mut claim_small)),
        ms(p90(&mut claim_big))
    );
    let packs = |dir: &Path| {
        std::fs::read_dir(dir.join(".git/objects/pack"))
            .map(|d| {
                d.filter(|e| {
                    e.as_ref()
                        .is_ok_and(|e| e.path().extension().is_some_and(|x| x == "pack"))
                })
                .count()
            })
            .unwrap_or(0)
    };
    println!(
        "packs at the end: {} (10 tasks), {} (big board)",
        packs(&small),
        packs(&big)
    );
}
