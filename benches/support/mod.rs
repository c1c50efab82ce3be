//! Shared pieces of the benchmarks: running git and mara, medians, knobs.

#![allow(dead_code)]

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

pub const MARA: &str = env!("CARGO_BIN_EXE_mara");

use mara::board::{EventKind, NewTask};
use mara::ids::{InstanceId, TaskId};
use mara::ledger::{Draft, Ledger};

/// Runs git in `dir`; panics with git's stderr on failure.
pub fn git(dir: &Path, args: &[&str]) -> String {
    let out = Command::new("git")
        .args(args)
        .current_dir(dir)
        .stdin(Stdio::null())
        .output()
        .expect("git runs");
    assert!(
        out.status.success(),
        "git {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

/// Times one whole process.
pub fn timed(cmd: &mut Command) -> Duration {
    let t = Instant::now();
    let st = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .status()
        .expect("process runs");
    let d = t.elapsed();
    assert!(st.success(), "{cmd:?} failed");
    d
}

/// Times one `mara` process acting as implementer#1 in `dir`.
pub fn mara(dir: &Path, args: &[&str]) -> Duration {
    timed(
        Command::new(MARA)
            .args(args)
            .current_dir(dir)
            .env("MARA_INSTANCE", "implementer#1"),
    )
}

/// A fresh repository with a user set.
pub fn repo(name: &str, root: &Path) -> std::path::PathBuf {
    let dir = root.join(name);
    std::fs::create_dir_all(&dir).expect("mkdir");
    git(&dir, &["init", "-q"]);
    git(&dir, &["config", "user.name", "bench"]);
    git(&dir, &["config", "user.email", "bench@mara.invalid"]);
    dir
}

pub fn median(v: &mut [Duration]) -> Duration {
    v.sort();
    v[v.len() / 2]
}

/// The 90th percentile (sorts `v`).
#[allow(dead_code)] // not every benchmark prints it
pub fn p90(v: &mut [Duration]) -> Duration {
    v.sort();
    v[v.len() * 9 / 10]
}

pub fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

/// A benchmark knob from the environment.
#[allow(clippy::disallowed_methods)] // a benchmark reads its own knobs
pub fn knob(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// A plan file with tasks T0..T<n-1>.
pub fn plan_file(dir: &Path, n: usize) -> std::path::PathBuf {
    let tasks: Vec<String> = (0..n)
        .map(|i| format!(r#"{{"id":"T{i}","title":"task number {i}"}}"#))
        .collect();
    let p = dir.join("plan.json");
    std::fs::write(&p, format!("[{}]", tasks.join(","))).expect("write plan");
    p
}

/// A path knob from the environment.
#[allow(clippy::disallowed_methods)] // a benchmark reads its own knobs
pub fn knob_path(name: &str) -> Option<std::path::PathBuf> {
    std::env::var_os(name).map(std::path::PathBuf::from)
}

/// Tasks `T<i>` for `i` in `range`, each reserving its own folder.
pub fn tasks(range: std::ops::Range<usize>) -> Vec<NewTask> {
    range
        .map(|i| NewTask {
            id: format!("T{i}").parse().expect("valid id"),
            title: format!("task number {i}"),
            deps: vec![],
            paths: vec![format!("src/mod{i}/**")],
            body: None,
            role: None,
            priority: 0,
            resolves: None,
            status: None,
            claimed_by: None,
        })
        .collect()
}

/// Appends one event through the real append path; panics if it is refused.
pub fn append(ledger: &Ledger, sender: &str, kind: EventKind) {
    ledger
        .append(sender, |_, _| Ok(Draft::Write(kind.clone())))
        .expect("fixture event appends");
}

/// Builds the big board in-process: 10,000 tasks and 100,000 events, each landing
/// as a pack and the packs merged as mara merges them (no `git gc`): the object
/// database a long run leaves.
pub fn big_board(dir: &Path, events: usize) {
    let started = Instant::now();
    assert!(Command::new(MARA)
        .args(["init", "--run", "bench"])
        .current_dir(dir)
        .stdout(Stdio::null())
        .status()
        .expect("mara init")
        .success());
    let repo = git2::Repository::open(dir).expect("open");
    let ledger = Ledger::open(repo, "bench".parse().expect("run id")).expect("ledger");
    for chunk in 0..10 {
        append(
            &ledger,
            "planner#1",
            EventKind::Plan {
                tasks: tasks(chunk * 1000..(chunk + 1) * 1000),
            },
        );
    }
    let mut n = 10;
    let mut cycle = 0usize;
    while n < events {
        let who: InstanceId = format!("implementer#{}", cycle % 16 + 1)
            .parse()
            .expect("valid");
        let sender = who.to_string();
        // The first 1,000 tasks get done; the rest cycle through claim and release.
        let index = if cycle < 1000 {
            cycle
        } else {
            1000 + (cycle - 1000) % 9000
        };
        let task: TaskId = format!("T{index}").parse().expect("valid");
        append(&ledger, &sender, EventKind::Claim { task: task.clone() });
        append(
            &ledger,
            &sender,
            EventKind::Message {
                to: None,
                task: None,
                reply_to: None,
                kind: "decision".into(),
                text: format!("{who} works on {task}"),
            },
        );
        let last = if cycle < 1000 {
            EventKind::Done {
                commit: None,
                branch: None,
                note: None,
                task,
                artifact: None,
                forced: None,
            }
        } else {
            EventKind::Release {
                task,
                forced: None,
                reason: None,
            }
        };
        append(&ledger, &sender, last);
        append(&ledger, &sender, EventKind::Heartbeat);
        n += 4;
        cycle += 1;
        if n % 10_000 < 4 {
            eprintln!(
                "  fixture: {n} events ({:.0}s)",
                started.elapsed().as_secs_f64()
            );
        }
    }
}

/// A repository `big` below `root` holding the big board of `events` events, its
/// packs merged as a long run leaves them (nothing in the way of the timings).
pub fn big_repo(root: &Path, events: usize) -> std::path::PathBuf {
    eprintln!("building a {events}-event board in {}", root.display());
    let big = repo("big", root);
    big_board(&big, events);
    let _ = Command::new(MARA)
        .args(["gc"])
        .current_dir(&big)
        .stdout(Stdio::null())
        .status();
    big
}

/// A running `git daemon`, killed when dropped.
pub struct Daemon(std::process::Child);

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A bare `proj.git` below `root/srv` served read-write by `git daemon` on a free
/// port of 127.0.0.1; returns the daemon and the repository's URL.
pub fn daemon(root: &Path) -> (Daemon, String) {
    let srv = root.join("srv");
    std::fs::create_dir_all(&srv).expect("mkdir");
    git(&srv, &["init", "-q", "--bare", "proj.git"]);
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .expect("free port")
        .local_addr()
        .expect("addr")
        .port();
    let srv_s = srv.to_string_lossy().into_owned();
    // The `git-daemon` program itself: `git daemon` runs it as a child, and killing
    // the wrapper would leave the real daemon listening.
    let exe = std::path::PathBuf::from(git(root, &["--exec-path"])).join("git-daemon");
    let daemon = Daemon(
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
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(
            t.elapsed() < Duration::from_secs(5),
            "git daemon did not start"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    (daemon, format!("git://127.0.0.1:{port}/proj.git"))
}

/// Releases `task` of run `bench` as implementer#1, through the append path.
pub fn release(dir: &Path, task: &str) {
    let repo = git2::Repository::open(dir).expect("open");
    let ledger = Ledger::open(repo, "bench".parse().expect("run id")).expect("ledger");
    append(
        &ledger,
        "implementer#1",
        EventKind::Release {
            task: task.parse().expect("valid"),
            forced: None,
            reason: None,
        },
    );
}

/// Runs `exe` (a mara binary) with `args` in `dir`; panics unless it exits 0.
pub fn run_ok(exe: &str, dir: &Path, args: &[&str]) {
    assert!(
        Command::new(exe)
            .args(args)
            .current_dir(dir)
            .stdout(Stdio::null())
            .status()
            .expect("mara runs")
            .success(),
        "mara {args:?} failed in {}",
        dir.display()
    );
}

/// A repository `name` below `root` with run `bench` (made current) and tasks
/// T0..T<n-1>.
pub fn planned(root: &Path, name: &str, n: usize) -> std::path::PathBuf {
    let dir = repo(name, root);
    let plan = plan_file(root, n);
    run_ok(MARA, &dir, &["init", "--run", "bench"]);
    run_ok(MARA, &dir, &["plan", plan.to_str().expect("utf-8 path")]);
    dir
}
