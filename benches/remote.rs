//! Benchmark: a `mara claim` through a shared remote (a real `git daemon` on
//! 127.0.0.1) against one bare `git push` of a one-commit fast-forward to the same
//! daemon, interleaved in one run. Goal: the claim at most 2x the push.
//!
//! Run with `cargo bench --bench remote` (`MARA_BENCH_N` rounds, default 60).

mod support;

use std::net::{TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use support::{git, knob, mara, median, ms, plan_file, repo, timed, MARA};

struct Daemon(Child);

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn main() {
    let rounds = knob("MARA_BENCH_N", 60);
    let tmp = tempfile::tempdir().expect("tempdir");
    let srv = tmp.path().join("srv");
    std::fs::create_dir_all(&srv).expect("mkdir");
    git(&srv, &["init", "-q", "--bare", "proj.git"]);
    let port = TcpListener::bind("127.0.0.1:0")
        .expect("free port")
        .local_addr()
        .expect("addr")
        .port();
    let srv_s = srv.to_string_lossy().into_owned();
    // The `git-daemon` program itself: `git daemon` runs it as a child, and killing
    // the wrapper would leave the real daemon listening.
    let exe = std::path::PathBuf::from(git(tmp.path(), &["--exec-path"])).join("git-daemon");
    let _daemon = Daemon(
        Command::new(exe)
            .args([
                "--reuseaddr",
                "--listen=127.0.0.1",
                &format!("--port={port}"),
                &format!("--base-path={srv_s}"),
                "--export-all",
                "--enable=receive-pack",
                &srv_s,
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("git daemon starts"),
    );
    let t = Instant::now();
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(
            t.elapsed() < Duration::from_secs(5),
            "git daemon did not start"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    let url = format!("git://127.0.0.1:{port}/proj.git");

    // The claimer's clone, and a clone for the plain pushes, both of the same daemon.
    let clone = repo("clone", tmp.path());
    git(&clone, &["remote", "add", "origin", &url]);
    let plan = plan_file(tmp.path(), rounds + 10);
    for args in [
        vec!["init", "--run", "bench", "--remote", "origin"],
        vec!["plan", plan.to_str().expect("utf-8 path")],
    ] {
        assert!(Command::new(MARA)
            .args(&args)
            .current_dir(&clone)
            .stdout(Stdio::null())
            .status()
            .expect("mara runs")
            .success());
    }
    let pusher = repo("pusher", tmp.path());
    git(&pusher, &["remote", "add", "origin", &url]);
    git(&pusher, &["commit", "-q", "--allow-empty", "-m", "base"]);
    git(&pusher, &["push", "-q", "origin", "HEAD:refs/heads/bench"]);

    let (mut push, mut claim) = (vec![], vec![]);
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
        if round >= 5 {
            push.push(p);
            claim.push(c);
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
}
