//! Benchmark: a `mara claim` through a shared remote (a real `git daemon` on
//! 127.0.0.1) against one bare `git push` of a one-commit fast-forward to the same
//! daemon, interleaved in one run. Goal: the claim at most 2x the push.
//!
//! Run with `cargo bench --bench remote` (`MARA_BENCH_N` rounds, default 60).
//! `MARA_BENCH_BASELINE=/path/to/another/mara` also times that build's claims, in a
//! clone and run of their own, interleaved in the same rounds: a before/after
//! figure under the same machine load.

mod support;

use std::process::{Command, Stdio};

use support::{git, knob, mara, median, ms, plan_file, repo, run_ok, timed, MARA};

fn main() {
    let rounds = knob("MARA_BENCH_N", 60);
    let tmp = tempfile::tempdir().expect("tempdir");
    let (_daemon, url) = support::daemon(tmp.path());

    // The claimer's clone, and a clone for the plain pushes, both of the same daemon.
    let plan = plan_file(tmp.path(), rounds + 10);
    let claimer = |name: &str, exe: &str| {
        let clone = repo(name, tmp.path());
        git(&clone, &["remote", "add", "origin", &url]);
        run_ok(exe, &clone, &["init", "--run", name, "--remote", "origin"]);
        run_ok(exe, &clone, &["plan", plan.to_str().expect("utf-8 path")]);
        clone
    };
    let clone = claimer("bench", MARA);
    let baseline = support::knob_path("MARA_BENCH_BASELINE").map(|exe| {
        let exe = exe.to_string_lossy().into_owned();
        (claimer("base", &exe), exe)
    });
    let pusher = repo("pusher", tmp.path());
    git(&pusher, &["remote", "add", "origin", &url]);
    git(&pusher, &["commit", "-q", "--allow-empty", "-m", "base"]);
    git(&pusher, &["push", "-q", "origin", "HEAD:refs/heads/bench"]);

    let (mut push, mut claim, mut base) = (vec![], vec![], vec![]);
    for round in 0..rounds + 5 {
        let head = git(&pusher, &["rev-parse", "HEAD"]);
        let next = git(
            &pusher,
            &[
                "commit-tree",
                &format!("{head}^{{tree}}"),
                "-p",
                &head,
                "-m",
                &format!("round {round}"),
            ],
        );
        git(&pusher, &["update-ref", "HEAD", &next]);
        let p = timed(
            Command::new("git")
                .args(["push", "-q", "origin", &format!("{next}:refs/heads/bench")])
                .current_dir(&pusher)
                .stderr(Stdio::null()),
        );
        let c = mara(&clone, &["claim", &format!("T{round}")]);
        let b = baseline.as_ref().map(|(dir, exe)| {
            timed(
                Command::new(exe)
                    .args(["claim", &format!("T{round}")])
                    .current_dir(dir)
                    .env("MARA_INSTANCE", "implementer#1"),
            )
        });
        if round >= 5 {
            push.push(p);
            claim.push(c);
            base.extend(b);
        }
    }
    let (p, c) = (median(&mut push), median(&mut claim));
    println!("rounds: {rounds} against git daemon on 127.0.0.1 (medians of whole processes)");
    println!("git push, one-commit fast-forward: {:.1} ms", ms(p));
    println!(
        "mara claim through the remote:     {:.1} ms  = {:.2}x the push (goal <= 2x)",
        ms(c),
        ms(c) / ms(p)
    );
    if !base.is_empty() {
        let b = median(&mut base);
        println!(
            "the baseline build's claim:        {:.1} ms  = {:.2}x the push; this build = {:.2}x the baseline",
            ms(b),
            ms(b) / ms(p),
            ms(c) / ms(b)
        );
    }
}
