//! Benchmark: a claim on a small board with its background pack merges included
//! (issue 16: at most 1.5x `git update-ref`). Every event lands as a small pack and
//! every eighth write starts `mara gc --auto` in the background; a median of claim
//! processes leaves that work out, so this times whole blocks instead: a block of
//! claims back to back, then the wait until no merge is due or running, against a
//! block of as many `git update-ref` processes in the same repository. Blocks
//! alternate, so machine noise hits both alike. Also prints the medians.
//!
//! Run with `cargo bench --bench merges` (`MARA_BENCH_TASKS`, the board, default
//! 400; `MARA_BENCH_N`, claims per block, default 100; `MARA_BENCH_BLOCKS`, 4).

mod support;

use std::process::Command;
use std::time::{Duration, Instant};

use support::{git, knob, mara, median, ms, planned, timed};

fn main() {
    let tasks = knob("MARA_BENCH_TASKS", 400);
    let per_block = knob("MARA_BENCH_N", 100).min(tasks / 2).max(1);
    let blocks = knob("MARA_BENCH_BLOCKS", 4).min(tasks / per_block).max(1);
    let base = support::knob_path("MARA_BENCH_DIR").unwrap_or_else(std::env::temp_dir);
    let tmp = tempfile::tempdir_in(base).expect("tempdir");
    let dir = planned(tmp.path(), "small", tasks);
    let a = git(&dir, &["rev-parse", "refs/mara/bench"]);
    let b = git(&dir, &["rev-parse", "refs/mara/bench~1"]);
    let repo_handle = git2::Repository::open(&dir).expect("open");
    let lock = mara::packs::merge_lock(&repo_handle);

    let (mut floor_total, mut claim_total) = (Duration::ZERO, Duration::ZERO);
    let (mut floors, mut claims) = (vec![], vec![]);
    let mut next = 0;
    for _ in 0..blocks {
        let started = Instant::now();
        for round in 0..per_block {
            let target = if round % 2 == 0 { &a } else { &b };
            floors.push(timed(
                Command::new("git")
                    .args(["update-ref", "refs/bench/floor", target])
                    .current_dir(&dir),
            ));
        }
        floor_total += started.elapsed();

        let started = Instant::now();
        for _ in 0..per_block {
            claims.push(mara(&dir, &["claim", &format!("T{next}")]));
            next += 1;
        }
        // The merges these claims started are part of their cost.
        while lock.exists() || mara::packs::due(&repo_handle) {
            std::thread::sleep(Duration::from_millis(1));
        }
        claim_total += started.elapsed();
    }
    let n = (per_block * blocks) as f64;
    let (f, c) = (
        floor_total.as_secs_f64() * 1000.0 / n,
        claim_total.as_secs_f64() * 1000.0 / n,
    );
    let packs = std::fs::read_dir(dir.join(".git/objects/pack"))
        .map(|d| {
            d.filter(|e| {
                e.as_ref()
                    .is_ok_and(|e| e.path().extension().is_some_and(|x| x == "pack"))
            })
            .count()
        })
        .unwrap_or(0);
    println!(
        "{tasks}-task board, {blocks} blocks of {per_block} (whole processes, blocks alternating)"
    );
    println!(
        "git update-ref, per process:             {f:.2} ms (median {:.2})",
        ms(median(&mut floors))
    );
    println!(
        "mara claim, merges included, per claim:  {c:.2} ms (median {:.2}) = {:.2}x git update-ref (goal <= 1.5x)",
        ms(median(&mut claims)),
        c / f
    );
    println!("packs at the end: {packs}");
}
