//! Benchmark: `mara integrate` of 8 instance branches, each changing 200 files of a
//! 2,000-file repository (neighbouring branches overlap on 25 files, changing
//! different lines), against sequential `git merge` of the same branches in a clone,
//! in one run. Goal: at most 1.5x.
//!
//! Then the conflict matrix (issue 15): `mara integrate --plan` (8 branches against
//! the target and the 28 pairs: 36 merges in memory, one process) against 36
//! `git merge-tree --write-tree` processes on the same branches. Goal: at most 0.5x.
//!
//! Run with `cargo bench --bench integrate` (`MARA_BENCH_N` rounds, default 5).

mod support;

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use support::{git, knob, median, ms, repo, timed, MARA};

const FILES: usize = 2000;
const LINES: usize = 40;
const BRANCHES: usize = 8;

fn content(file: usize, changed: &[(usize, usize)]) -> String {
    (0..LINES)
        .map(|l| match changed.iter().find(|(line, _)| *line == l) {
            Some((_, k)) => format!("file {file} line {l} changed by branch {k}\n"),
            None => format!("file {file} line {l}\n"),
        })
        .collect()
}

fn write_files(dir: &Path, files: impl Iterator<Item = (usize, String)>) {
    for (f, text) in files {
        let p = dir.join(format!("src/m{}/f{f}.txt", f % 50));
        std::fs::create_dir_all(p.parent().expect("has a folder")).expect("mkdir");
        std::fs::write(p, text).expect("write");
    }
}

fn main() {
    let rounds = knob("MARA_BENCH_N", 5);
    let tmp = tempfile::tempdir().expect("tempdir");
    let src = repo("src", tmp.path());
    write_files(&src, (0..FILES).map(|f| (f, content(f, &[]))));
    git(&src, &["add", "-A"]);
    git(&src, &["commit", "-q", "-m", "base"]);
    git(&src, &["branch", "-M", "main"]);
    let branches: Vec<String> = (1..=BRANCHES)
        .map(|k| format!("mara/bench/implementer_{k}"))
        .collect();
    for (i, b) in branches.iter().enumerate() {
        git(&src, &["checkout", "-q", "-b", b, "main"]);
        let start = i * 175;
        // Each branch changes its own line, 5 lines apart: overlapping files merge
        // cleanly, but only through a real three-way content merge.
        write_files(
            &src,
            (start..start + 200).map(|f| (f % FILES, content(f % FILES, &[(i * 5 + 1, i + 1)]))),
        );
        git(
            &src,
            &[
                "commit",
                "-q",
                "-am",
                &format!("work of implementer#{}", i + 1),
            ],
        );
    }
    git(&src, &["checkout", "-q", "main"]);
    assert!(Command::new(MARA)
        .args(["init", "--run", "bench"])
        .current_dir(&src)
        .stdout(std::process::Stdio::null())
        .status()
        .expect("mara init")
        .success());
    let clone = tmp.path().join("clone");
    git(
        tmp.path(),
        &["clone", "-q", src.to_str().expect("utf-8"), "clone"],
    );
    git(&clone, &["config", "user.name", "bench"]);
    git(&clone, &["config", "user.email", "bench@mara.invalid"]);
    for b in &branches {
        git(&clone, &["branch", "-q", b, &format!("origin/{b}")]);
    }

    let (mut m, mut g) = (vec![], vec![]);
    for _ in 0..rounds + 1 {
        let _ = Command::new("git")
            .args(["branch", "-q", "-D", "mara/bench/integration"])
            .current_dir(&src)
            .output();
        let t = timed(Command::new(MARA).args(["integrate"]).current_dir(&src));
        git(&clone, &["checkout", "-q", "-B", "integ", "origin/main"]);
        let mut total = Duration::ZERO;
        for b in &branches {
            total += timed(
                Command::new("git")
                    .args(["merge", "-q", "--no-edit", b])
                    .current_dir(&clone),
            );
        }
        m.push(t);
        g.push(total);
    }
    // The integration branch holds every branch's change.
    let tree = git(
        &src,
        &["ls-tree", "-r", "mara/bench/integration", "--name-only"],
    );
    assert_eq!(tree.lines().count(), FILES);
    let overlap = git(&src, &["show", "mara/bench/integration:src/m30/f180.txt"]);
    assert!(
        overlap.contains("changed by branch 1") && overlap.contains("changed by branch 2"),
        "a file both branch 1 and 2 changed holds both changes"
    );
    let merged = git(&clone, &["show", "integ:src/m30/f180.txt"]);
    assert_eq!(overlap, merged, "mara and git merge agree");
    let (p, t) = matrix_rounds(&src, &branches, rounds);
    let (m, g) = (median(&mut m[1..].to_vec()), median(&mut g[1..].to_vec()));
    println!("rounds: {rounds}; {BRANCHES} branches x 200 changed files of {FILES}");
    println!("git merge, sequential in a clone: {:.0} ms", ms(g));
    println!(
        "mara integrate:                   {:.0} ms  = {:.2}x (goal <= 1.5x)",
        ms(m),
        ms(m) / ms(g)
    );
    println!("36 git merge-tree --write-tree:   {:.0} ms", ms(t));
    println!(
        "mara integrate --plan (matrix):   {:.0} ms  = {:.2}x (goal <= 0.5x)",
        ms(p),
        ms(p) / ms(t)
    );
}

/// Medians of `mara integrate --plan` and of the 36 `git merge-tree` processes it
/// replaces, the integration branch absent (the target is the branches' base).
fn matrix_rounds(src: &Path, branches: &[String], rounds: usize) -> (Duration, Duration) {
    let _ = Command::new("git")
        .args(["branch", "-q", "-D", "mara/bench/integration"])
        .current_dir(src)
        .output();
    let (mut p, mut t) = (vec![], vec![]);
    for _ in 0..rounds + 1 {
        p.push(timed(
            Command::new(MARA)
                .args(["integrate", "--plan"])
                .current_dir(src),
        ));
        let mut total = Duration::ZERO;
        let sides: Vec<&str> = std::iter::once("main")
            .chain(branches.iter().map(String::as_str))
            .collect();
        for i in 0..sides.len() {
            for j in i + 1..sides.len() {
                total += timed(
                    Command::new("git")
                        .args(["merge-tree", "--write-tree", sides[i], sides[j]])
                        .current_dir(src),
                );
            }
        }
        t.push(total);
    }
    (median(&mut p[1..].to_vec()), median(&mut t[1..].to_vec()))
}
