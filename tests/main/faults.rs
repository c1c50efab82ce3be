//! Faults: writers killed with SIGKILL at any point of a claim (locally and through
//! a remote), a soak of 16 processes writing a random mix of events, hostile input
//! that must be refused with nothing written, and a remote that refuses pushes.
//!
//! The kill and soak tests are long and ignored by default; run them with
//! `cargo test --release --test main -- --ignored faults::`. Knobs (environment):
//! `MARA_KILL9_CLAIMS` (1000), `MARA_KILL9_REMOTE_CLAIMS` (300), `MARA_KILL9_GAP_MS`
//! and `MARA_KILL9_REMOTE_GAP_MS` (the mean gap between two kills, 10 ms, and at
//! least 30 ms and two plain pushes to the test's daemon),
//! `MARA_KILL9_GROUP=1` (kill mara's whole process group, its `git` children too),
//! `MARA_SOAK_EVENTS` (5000 per process), `MARA_SOAK_TASKS` (1000) and
//! `MARA_FAULTS_SEED` (the random seed, printed).

use std::collections::{BTreeMap, BTreeSet};

use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::Mutex;
use std::thread;
use std::time::{Duration, Instant, SystemTime};

use serde_json::{json, Value};
use tempfile::TempDir;

use crate::common::{clean_env, git, Origin, Out, TestRepo};

// ---------------------------------------------------------------------------
// Knobs, randomness, processes the killer may pick.
// ---------------------------------------------------------------------------

/// A size of the long tests from the environment, else `default`.
#[allow(clippy::disallowed_methods)] // the tests' own knobs, not mara's environment
fn knob(name: &str, default: u64) -> u64 {
    match std::env::var(name) {
        Ok(v) => v
            .trim()
            .parse()
            .unwrap_or_else(|_| panic!("{name}={v:?} is not a whole number")),
        Err(_) => default,
    }
}

/// The seed of a long test: `MARA_FAULTS_SEED`, else the clock. Printed, so a
/// failing run can be repeated.
fn seed(test: &str) -> u64 {
    let clock = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(1, |d| d.as_nanos() as u64);
    let s = knob("MARA_FAULTS_SEED", clock);
    eprintln!("{test}: MARA_FAULTS_SEED={s}");
    s
}

/// xorshift64*: random enough to spread kills and mix events, and repeatable.
struct Rng(u64);

impl Rng {
    fn new(seed: u64) -> Rng {
        Rng(seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1)
    }

    fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    /// A number in `0..n`.
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
}

/// Blocks until the child `pid` has exited, without reaping it (`WNOWAIT`): until
/// it is reaped its pid cannot be reused, so a kill sent to it meanwhile hits only
/// our own (dead) child.
fn wait_until_exited(pid: u32) {
    let id = libc::id_t::from(pid);
    loop {
        // SAFETY: a zeroed siginfo_t is a valid value; waitid writes only into it.
        let mut info: libc::siginfo_t = unsafe { std::mem::zeroed() };
        // SAFETY: plain syscall on our own child; `info` outlives the call.
        let rc = unsafe { libc::waitid(libc::P_PID, id, &mut info, libc::WEXITED | libc::WNOWAIT) };
        if rc == 0 {
            return;
        }
        let e = std::io::Error::last_os_error();
        assert_eq!(
            e.kind(),
            std::io::ErrorKind::Interrupted,
            "waitid({pid}): {e}"
        );
    }
}

/// How one tracked process ended.
struct Ended {
    out: Out,
    /// The signal that killed it, if one did.
    signal: Option<i32>,
}

/// The `mara` processes the worker threads are running, one slot per thread, for
/// the killer to pick from. A slot is cleared before its process is reaped, so a
/// pid in a slot is always our child, running or a zombie, never a reused pid.
struct Running {
    /// (spawn number, pid) per slot.
    slots: Mutex<Vec<Option<(u64, u32)>>>,
    spawned: AtomicU64,
}

impl Running {
    fn new(n: usize) -> Running {
        Running {
            slots: Mutex::new(vec![None; n]),
            spawned: AtomicU64::new(0),
        }
    }

    /// Runs `cmd` in `slot` (in a process group of its own) until it exits or is
    /// killed.
    fn run(&self, slot: usize, mut cmd: Command) -> Ended {
        cmd.process_group(0);
        let child = cmd.spawn().expect("spawning mara");
        let pid = child.id();
        let n = self.spawned.fetch_add(1, Ordering::Relaxed);
        self.slots.lock().expect("the slots")[slot] = Some((n, pid));
        wait_until_exited(pid);
        self.slots.lock().expect("the slots")[slot] = None;
        let o = child.wait_with_output().expect("reaping mara");
        let signal = o.status.signal();
        Ended {
            out: Out::from_output(o),
            signal,
        }
    }
}

/// How the killer thread should behave.
struct KillPlan {
    /// The mean gap between two kills.
    gap_ms: u64,
    /// Kill the victim's whole process group (its `git` children too).
    group: bool,
    /// Stop everything when no claim exited 0 for this long.
    stall: Duration,
}

/// What the killer thread did.
struct Killed {
    /// Kills sent to a process that had not been reaped yet (it may have exited
    /// just before: a kill that landed shows as the child's signal).
    sent: u64,
    /// Whether it stopped the test because no claim exited 0 for `stall`.
    stalled: bool,
}

/// Every few ms (`gap_ms` on average) picks a running process, waits a random
/// 0-4 ms and sends it SIGKILL, until `stop`; sets `stop` itself when `progress`
/// stays put for `plan.stall`.
fn killer(
    running: &Running,
    stop: &AtomicBool,
    progress: &AtomicUsize,
    mut rng: Rng,
    plan: &KillPlan,
) -> Killed {
    let gap_us = plan.gap_ms.max(1) * 1000;
    let mut sent = 0;
    let mut last = (progress.load(Ordering::Relaxed), Instant::now());
    while !stop.load(Ordering::Relaxed) {
        thread::sleep(Duration::from_micros(gap_us / 2 + rng.below(gap_us + 1)));
        let now = progress.load(Ordering::Relaxed);
        if now != last.0 {
            last = (now, Instant::now());
        } else if last.1.elapsed() > plan.stall {
            stop.store(true, Ordering::Relaxed);
            return Killed {
                sent,
                stalled: true,
            };
        }
        let live: Vec<(usize, (u64, u32))> = running
            .slots
            .lock()
            .expect("the slots")
            .iter()
            .enumerate()
            .filter_map(|(i, s)| s.map(|s| (i, s)))
            .collect();
        if live.is_empty() {
            continue;
        }
        let (slot, victim) = live[rng.below(live.len() as u64) as usize];
        thread::sleep(Duration::from_micros(rng.below(4001)));
        let slots = running.slots.lock().expect("the slots");
        if slots[slot] == Some(victim) {
            let pid = libc::pid_t::try_from(victim.1).expect("a pid fits pid_t");
            let target = if plan.group { -pid } else { pid };
            // SAFETY: kill(2) touches no memory; `pid` is our unreaped child (see
            // `Running`), and the leader of its own process group.
            if unsafe { libc::kill(target, libc::SIGKILL) } == 0 {
                sent += 1;
            }
        }
    }
    Killed {
        sent,
        stalled: false,
    }
}

// ---------------------------------------------------------------------------
// Runs, plans and what the history holds.
// ---------------------------------------------------------------------------

/// `n` tasks `T00000`, `T00001`, ... in one `mara plan`.
fn plan_tasks(r: &TestRepo, n: usize) {
    r.plan_numbered(0..n, |i| format!("T{i:05}"));
}

/// Whether `git args` exits 0 in `dir`.
fn git_succeeds(dir: &Path, args: &[&str]) -> bool {
    let mut cmd = Command::new("git");
    clean_env(&mut cmd, dir);
    cmd.args(args)
        .current_dir(dir)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .expect("git runs")
        .success()
}

/// A claim that exited 0: the task, the instance, the commit it reported.
#[derive(Debug, Clone)]
struct Claimed {
    task: String,
    who: String,
    commit: String,
}

/// Parses the `--json` output of a claim that exited 0.
fn claimed(o: &Out, who: &str) -> Option<Claimed> {
    let v: Value = serde_json::from_str(&o.stdout).ok()?;
    if v["type"] != "claim" || v["sender"] != who {
        return None;
    }
    Some(Claimed {
        task: v["payload"]["task"].as_str()?.to_owned(),
        who: who.to_owned(),
        commit: v["commit"].as_str()?.to_owned(),
    })
}

/// What the claimer threads of a kill test saw.
#[derive(Default)]
struct Tally {
    ok: Vec<Claimed>,
    /// Processes that died of SIGKILL.
    killed: u64,
    /// Surviving processes that removed a stale lock (a kill landed while the ref
    /// lock was held).
    stale_lock_warnings: u64,
    /// Exit 1 "was rewritten" (seen, tip) while nothing rewrote the ref: see
    /// [`parallel_writers_never_get_a_false_rewritten_error`].
    false_rewrites: Vec<(String, String)>,
    /// Anything other than exit 0, a kill, "nothing ready" or a false rewrite.
    failed: Vec<(String, Out)>,
    nothing_ready: bool,
}

/// The claims in the history of `refs/mara/<run>` in the repository at `dir` (a
/// worktree or a bare repository), by commit: (task, instance). Asserts the ref
/// is a commit and holds no reclaim (the lease is never reached).
fn claims_in_history(dir: &Path, run: &str) -> BTreeMap<String, (String, String)> {
    let refname = format!("refs/mara/{run}");
    assert_eq!(
        git(dir, &["cat-file", "-t", &refname]).trim(),
        "commit",
        "{refname} in {} is a commit",
        dir.display()
    );
    let mut claims = BTreeMap::new();
    for line in git(dir, &["log", "--format=%H %s", &refname]).lines() {
        let (commit, subject) = line.split_once(' ').expect("a commit and its subject");
        assert!(
            !subject.starts_with("reclaim "),
            "no lease expired, yet: {line}"
        );
        if let Some(rest) = subject.strip_prefix("claim ") {
            let (task, who) = rest.split_once(" by ").expect("claim <task> by <who>");
            claims.insert(commit.to_owned(), (task.to_owned(), who.to_owned()));
        }
    }
    claims
}

/// Each instance's longest silence on the run's ref in `dir`: the longest gap
/// between two of its claims, or from the first claim of the run to its first
/// and from its last to the run's last, in whole seconds (commit times). A kill
/// test must keep it under the lease (300 s), or a live claimer is reclaimed.
fn longest_silences(dir: &Path, run: &str) -> BTreeMap<String, i64> {
    let refname = format!("refs/mara/{run}");
    let log = git(dir, &["log", "--reverse", "--format=%ct %s", &refname]);
    let mut times: BTreeMap<String, Vec<i64>> = BTreeMap::new();
    let (mut first, mut last) = (None, 0);
    for line in log.lines() {
        let (t, subject) = line.split_once(' ').expect("a time and a subject");
        let t: i64 = t.parse().expect("a commit time");
        if let Some((_, who)) = subject
            .strip_prefix("claim ")
            .and_then(|r| r.split_once(" by "))
        {
            first.get_or_insert(t);
            last = t;
            times.entry(who.to_owned()).or_default().push(t);
        }
    }
    times
        .into_iter()
        .map(|(who, ts)| {
            let mut edges = vec![first.unwrap_or(last)];
            edges.extend(&ts);
            edges.push(last);
            let gap = edges.windows(2).map(|w| w[1] - w[0]).max().unwrap_or(0);
            (who, gap)
        })
        .collect()
}

/// The checks of a kill test on the history in `dir`: every claim that exited 0
/// is an ancestor of the tip, with its task and instance, and no task is claimed
/// twice. Returns the claims that are in the history but exited otherwise (the
/// process was killed after the ref moved, or after the remote took the push).
fn check_history(dir: &Path, run: &str, ok: &[Claimed]) -> usize {
    let refname = format!("refs/mara/{run}");
    let history = claims_in_history(dir, run);
    let mut by_task: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
    for (task, who) in history.values() {
        by_task.entry(task).or_default().push(who);
    }
    let doubled: Vec<_> = by_task.iter().filter(|(_, w)| w.len() > 1).collect();
    assert!(doubled.is_empty(), "tasks claimed twice: {doubled:?}");
    for c in ok {
        assert!(
            git_succeeds(dir, &["merge-base", "--is-ancestor", &c.commit, &refname]),
            "the claim of {} by {} (commit {}) exited 0 but is not in the history of {refname}",
            c.task,
            c.who,
            c.commit
        );
        assert_eq!(
            history.get(&c.commit),
            Some(&(c.task.clone(), c.who.clone())),
            "commit {} is the claim its process reported",
            c.commit
        );
    }
    let reported: BTreeSet<&str> = ok.iter().map(|c| c.commit.as_str()).collect();
    history
        .keys()
        .filter(|c| !reported.contains(c.as_str()))
        .count()
}

/// `mara log --type claim --json` in the repository: (task, instance) per claim.
fn logged_claims(r: &TestRepo) -> Vec<(String, String)> {
    let o = r.mara(&["log", "--type", "claim", "--json"]);
    o.ok("mara log --type claim --json");
    o.stdout
        .lines()
        .map(|l| {
            let v: Value = serde_json::from_str(l).expect("log --json prints JSON lines");
            assert_eq!(v["type"], "claim", "{l}");
            (
                v["payload"]["task"]
                    .as_str()
                    .expect("payload.task")
                    .to_owned(),
                v["sender"].as_str().expect("sender").to_owned(),
            )
        })
        .collect()
}

/// The entries of `<git common dir>/refs/mara/` other than the run's ref.
fn litter_in_refs(git_dir: &Path, run: &str) -> Vec<String> {
    let dir = git_dir.join("refs").join("mara");
    let mut names: Vec<String> = std::fs::read_dir(&dir)
        .map(|d| {
            d.map(|e| {
                e.expect("a directory entry")
                    .file_name()
                    .to_string_lossy()
                    .into_owned()
            })
            .collect()
        })
        .unwrap_or_default();
    names.retain(|n| n != run);
    names.sort();
    names
}

/// Temporary object files that killed writers left in the object store.
fn temp_objects(git_dir: &Path) -> usize {
    let mut n = 0;
    let Ok(dirs) = std::fs::read_dir(git_dir.join("objects")) else {
        return 0;
    };
    for d in dirs.flatten() {
        let Ok(files) = std::fs::read_dir(d.path()) else {
            continue;
        };
        n += files
            .flatten()
            .filter(|f| f.file_name().to_string_lossy().contains("tmp"))
            .count();
    }
    n
}

/// If a kill left `refs/mara/<run>.lock` in `r`, a further `mara claim --next`
/// must succeed anyway within ~10 s (the lock is stale after 5 s) and remove it.
/// Returns the claim if it exited 0, and what went wrong if anything did; then
/// the lock is removed by hand, so the remaining checks can run.
fn recover_a_left_lock(r: &TestRepo, run: &str, who: &str) -> (Option<Claimed>, Option<String>) {
    let lock = r.dir.join(".git/refs/mara").join(format!("{run}.lock"));
    if !lock.exists() {
        return (None, None);
    }
    let age = std::fs::metadata(&lock)
        .and_then(|m| m.modified())
        .ok()
        .and_then(|t| t.elapsed().ok());
    let started = Instant::now();
    let o = r.mara_as(who, &["claim", "--next", "--json"]);
    let took = started.elapsed();
    let what = format!(
        "a kill left {} (age {age:?}); the next claim took {:.1}s: exit {}, {}",
        lock.display(),
        took.as_secs_f64(),
        o.code,
        o.stderr.trim()
    );
    eprintln!("{what}");
    let ok = (o.code == 0).then(|| claimed(&o, who).expect("the claim prints its JSON"));
    let problem = if o.code != 0 || took > Duration::from_secs(12) || lock.exists() {
        let _ = std::fs::remove_file(&lock);
        Some(format!("{what}; lock still there: {}", lock.exists()))
    } else {
        None
    };
    (ok, problem)
}

/// The claimer loop of a kill test: `mara claim --next --json` as `who` in `repo`,
/// in `slot`, until `stop`; stops everyone once `target` claims exited 0.
#[allow(clippy::too_many_arguments)]
fn claim_until_stopped(
    repo: &TestRepo,
    who: &str,
    slot: usize,
    running: &Running,
    stop: &AtomicBool,
    ok_count: &AtomicUsize,
    target: usize,
    tally: &Mutex<Tally>,
) {
    while !stop.load(Ordering::Relaxed) {
        let cmd = repo.mara_command(
            &["claim", "--next", "--json"],
            &[("MARA_INSTANCE", who)],
            None,
        );
        let ended = running.run(slot, cmd);
        let o = ended.out;
        let mut t = tally.lock().expect("the tally");
        if o.stderr.contains("removed a stale lock") {
            t.stale_lock_warnings += 1;
        }
        if ended.signal == Some(libc::SIGKILL) {
            t.killed += 1;
            continue;
        }
        if o.code == 0 {
            match claimed(&o, who) {
                Some(c) => {
                    t.ok.push(c);
                    if ok_count.fetch_add(1, Ordering::Relaxed) + 1 >= target {
                        stop.store(true, Ordering::Relaxed);
                    }
                }
                None => t.failed.push((who.to_owned(), o)),
            }
        } else if o.code == 3 && o.stderr.contains("nothing ready") {
            t.nothing_ready = true;
            stop.store(true, Ordering::Relaxed);
        } else if let Some(ids) = rewritten_ids(&o) {
            t.false_rewrites.push(ids);
        } else {
            t.failed.push((who.to_owned(), o));
            if t.failed.len() >= 20 {
                stop.store(true, Ordering::Relaxed);
            }
        }
    }
}

/// Formats the failures of a tally for an assertion message.
fn failures(t: &Tally) -> String {
    t.failed
        .iter()
        .map(|(who, o)| format!("{who}: exit {}: {}", o.code, o.stderr.trim()))
        .collect::<Vec<_>>()
        .join("\n")
}

/// The (last seen, tip) commits of an exit 1 "was rewritten" error.
fn rewritten_ids(o: &Out) -> Option<(String, String)> {
    if o.code != 1 {
        return None;
    }
    let after = |marker: &str| -> Option<String> {
        let at = o.stderr.find(marker)? + marker.len();
        let id: String = o.stderr[at..].chars().take(40).collect();
        (id.len() == 40 && id.chars().all(|c| c.is_ascii_hexdigit())).then_some(id)
    };
    Some((
        after("this clone last saw ")?,
        after("the ref now points at ")?,
    ))
}

/// Asserts that each "was rewritten" error was false: the tip the process read
/// is an ancestor of the commit it said this clone had seen (it read the ref,
/// then another writer moved it and recorded the new tip as seen). Returns how
/// many there were.
fn stale_reads(dir: &Path, errors: &[(String, String)]) -> usize {
    for (seen, tip) in errors {
        assert!(
            git_succeeds(dir, &["merge-base", "--is-ancestor", tip, seen]),
            "a real rewrite? {tip} does not precede {seen}"
        );
    }
    errors.len()
}

// ---------------------------------------------------------------------------
// 1. kill -9 during claims.
// ---------------------------------------------------------------------------

#[test]
#[ignore = "long: run with cargo test --release --test main -- --ignored faults::"]
fn kill9_claimers_never_lose_or_double_a_claim() {
    const WORKERS: usize = 8;
    const TASKS: usize = 1500;
    let target = knob("MARA_KILL9_CLAIMS", 1000) as usize;
    let plan = KillPlan {
        gap_ms: knob("MARA_KILL9_GAP_MS", 10),
        group: knob("MARA_KILL9_GROUP", 0) == 1,
        stall: Duration::from_secs(60),
    };
    let seed = seed("kill9_claimers_never_lose_or_double_a_claim");
    let run = "kill9";
    let r = TestRepo::with_run(run);
    plan_tasks(&r, TASKS);

    let running = Running::new(WORKERS);
    let stop = AtomicBool::new(false);
    let ok_count = AtomicUsize::new(0);
    let tally = Mutex::new(Tally::default());
    let started = Instant::now();
    let killed = thread::scope(|s| {
        let killer = s.spawn(|| killer(&running, &stop, &ok_count, Rng::new(seed), &plan));
        for k in 1..=WORKERS {
            let (r, running, stop, ok_count, tally) = (&r, &running, &stop, &ok_count, &tally);
            s.spawn(move || {
                let who = format!("implementer#{k}");
                claim_until_stopped(r, &who, k - 1, running, stop, ok_count, target, tally);
            });
        }
        killer.join().expect("the killer thread")
    });
    let took = started.elapsed();
    let mut t = tally.into_inner().expect("the tally");
    let spawned = running.spawned.load(Ordering::Relaxed);
    let tmp_objects = temp_objects(&r.dir.join(".git"));
    let litter = litter_in_refs(&r.dir.join(".git"), run);

    // A lock left by a kill does not block the next writer for long.
    let lock_was_left = r
        .dir
        .join(".git/refs/mara")
        .join(format!("{run}.lock"))
        .exists();
    let (extra, lock_problem) = recover_a_left_lock(&r, run, "implementer#9");
    t.ok.extend(extra);
    let orphans = check_history(&r.dir, run, &t.ok);
    let false_rewrites = stale_reads(&r.dir, &t.false_rewrites);
    eprintln!(
        "kill -9, local: {} claims exited 0 in {:.1}s{}; {spawned} processes, {} kills sent, {} landed \
         (SIGKILL), {orphans} claims written by a process killed before it exited 0, {} stale-lock \
         recoveries, lock left at the end: {lock_was_left}, temporary objects left: {tmp_objects}, \
         other files in refs/mara: {litter:?}, false \"was rewritten\" errors: {false_rewrites}",
        t.ok.len(),
        took.as_secs_f64(),
        if killed.stalled { " (stalled: no claim for 60 s)" } else { "" },
        killed.sent,
        t.killed,
        t.stale_lock_warnings,
    );
    assert!(!killed.stalled, "no claim exited 0 for 60 s");
    assert_eq!(lock_problem, None);
    assert!(
        t.failed.is_empty(),
        "unexpected outcomes:\n{}",
        failures(&t)
    );
    assert!(
        !t.nothing_ready,
        "the tasks ran out before {target} claims exited 0"
    );
    assert!(t.ok.len() >= target);

    // `mara log` agrees with the history.
    let logged = logged_claims(&r);
    let mut tasks = BTreeSet::new();
    for (task, _) in &logged {
        assert!(
            tasks.insert(task.clone()),
            "{task} is claimed twice in the log"
        );
    }
    for c in &t.ok {
        assert!(
            logged.contains(&(c.task.clone(), c.who.clone())),
            "mara log has the claim of {} by {}",
            c.task,
            c.who
        );
    }
    assert_eq!(logged.len(), t.ok.len() + orphans);
    assert!(
        litter.iter().all(|n| n == &format!("{run}.lock")),
        "left in refs/mara: {litter:?}"
    );
    r.verify_ok();
    assert_eq!(
        false_rewrites, 0,
        "claims failed with a false \"was rewritten\" (see parallel_writers_never_get_a_false_rewritten_error)"
    );
}

/// What a writer killed inside libgit2's ref update leaves: libgit2 takes
/// `refs/mara/<run>.lock`, writes the new id into it, appends the reflog entry,
/// and only then renames the lock over the ref. SIGKILL between the reflog and
/// the rename (the kill test above hits it) leaves a reflog entry for a commit the
/// ref never held, and the lock. Built here by hand, byte for byte as libgit2
/// writes them.
#[test]
fn a_writer_killed_between_its_reflog_entry_and_its_ref_update_leaves_a_sound_run() {
    let run = "torn";
    let r = TestRepo::with_run(run);
    r.mara(&["task", "add", "T1", "x"]).ok("task add");
    let tip = r.tip(run);
    // The killed writer's event commit (any commit on top of the tip will do: the
    // ref never points at it).
    let tree = r.git(&["rev-parse", &format!("{tip}^{{tree}}")]);
    let killed = r
        .git(&[
            "commit-tree",
            tree.trim(),
            "-p",
            &tip,
            "-m",
            "claim T1 by implementer#1",
        ])
        .trim()
        .to_owned();
    let git_dir = r.dir.join(".git");
    let mut log = std::fs::OpenOptions::new()
        .append(true)
        .open(git_dir.join("logs/refs/mara").join(run))
        .expect("the run's reflog exists");
    std::io::Write::write_all(
        &mut log,
        format!(
            "{tip} {killed} implementer#1 <mara@localhost> 1700000000 +0000\tmara: claim T1 by implementer#1\n"
        )
        .as_bytes(),
    )
    .expect("appending to the reflog");
    let lock = git_dir.join("refs/mara").join(format!("{run}.lock"));
    let f = std::fs::File::create(&lock).expect("creating the lock");
    std::io::Write::write_all(&mut &f, format!("{killed}\n").as_bytes()).expect("writing the lock");
    f.set_modified(SystemTime::now() - Duration::from_secs(60))
        .expect("backdating the lock");
    drop(f);

    // The next writer removes the stale lock and claims T1.
    r.mara_as("implementer#2", &["claim", "T1"])
        .ok("a claim after the killed writer")
        .stderr_has("removed a stale lock");
    // The ref never held the killed writer's commit: the run is sound.
    r.verify_ok();
}

/// The median time of a plain `git push` of a one-commit fast-forward from `r` to
/// its `origin`, in ms (5 pushes after one to warm up).
fn push_ms(r: &TestRepo) -> u64 {
    let tree = git(&r.dir, &["hash-object", "-t", "tree", "-w", "/dev/null"]);
    let mut parent: Option<String> = None;
    let mut times = vec![];
    for round in 0..6 {
        let mut args = vec!["commit-tree", "-m", "timing", tree.trim()];
        if let Some(p) = &parent {
            args.extend(["-p", p.as_str()]);
        }
        let commit = git(&r.dir, &args).trim().to_owned();
        let started = Instant::now();
        git(
            &r.dir,
            &[
                "push",
                "-q",
                "origin",
                &format!("{commit}:refs/heads/push-timing"),
            ],
        );
        if round > 0 {
            times.push(started.elapsed());
        }
        parent = Some(commit);
    }
    times.sort();
    u64::try_from(times[times.len() / 2].as_millis()).unwrap_or(u64::MAX)
}

#[test]
#[ignore = "long: run with cargo test --release --test main -- --ignored faults::"]
fn kill9_remote_claimers_never_lose_or_double_a_claim_on_the_remote() {
    const CLONES: usize = 2;
    const PER_CLONE: usize = 2;
    let target = knob("MARA_KILL9_REMOTE_CLAIMS", 300) as usize;
    let seed = seed("kill9_remote_claimers_never_lose_or_double_a_claim_on_the_remote");
    let run = "kill9";
    let origin = Origin::daemon();
    let a = origin.clone_repo("a");
    let plan = KillPlan {
        // A claim through a remote lives longer: a push, often a fetch, and its
        // turn when clones contend (about 4.5 push times, `cargo bench --bench
        // fair`). With a fixed gap of 30 ms over 4 processes, 99.5% were killed
        // before they could exit on a busy 2-core machine (the test stalled with
        // its claims landing); so the gap is at least two plain pushes to this
        // daemon, timed here: a process lives about eight push times on average,
        // and kills still fall on every step of a claim.
        gap_ms: knob("MARA_KILL9_REMOTE_GAP_MS", 30).max(2 * push_ms(&a)),
        group: knob("MARA_KILL9_GROUP", 0) == 1,
        stall: Duration::from_secs(60),
    };
    eprintln!(
        "kill -9, remote: a kill every {} ms on average",
        plan.gap_ms
    );
    a.mara(&["init", "--run", run, "--remote", "origin"])
        .ok("mara init --remote origin");
    // A process killed while its `git push` runs still lands its claim: tasks to spare.
    plan_tasks(&a, 4 * target + 200);
    let mut clones = vec![a];
    for k in 1..CLONES {
        let c = origin.clone_repo(&format!("clone{k}"));
        c.mara(&["sync", "--run", run]).ok("mara sync --run");
        clones.push(c);
    }

    let workers = CLONES * PER_CLONE;
    let running = Running::new(workers);
    let stop = AtomicBool::new(false);
    let ok_count = AtomicUsize::new(0);
    let tally = Mutex::new(Tally::default());
    let started = Instant::now();
    let killed = thread::scope(|s| {
        let killer = s.spawn(|| killer(&running, &stop, &ok_count, Rng::new(seed), &plan));
        for k in 1..=workers {
            let clone = &clones[(k - 1) / PER_CLONE];
            let (running, stop, ok_count, tally) = (&running, &stop, &ok_count, &tally);
            s.spawn(move || {
                let who = format!("implementer#{k}");
                claim_until_stopped(clone, &who, k - 1, running, stop, ok_count, target, tally);
            });
        }
        killer.join().expect("the killer thread")
    });
    let took = started.elapsed();
    let t = tally.into_inner().expect("the tally");
    let spawned = running.spawned.load(Ordering::Relaxed);

    // Printed before the checks: a reclaim means an instance was silent for a
    // whole lease while its claimers kept trying.
    eprintln!(
        "longest silence per instance on the remote (s): {:?}",
        longest_silences(&origin.bare, run)
    );
    // The remote: a commit, every claim that exited 0 in its history, none twice,
    // no lock left.
    let orphans = check_history(&origin.bare, run, &t.ok);
    let remote_tip = git(&origin.bare, &["rev-parse", &format!("refs/mara/{run}")])
        .trim()
        .to_owned();
    let remote_litter = litter_in_refs(&origin.bare, run);
    // The stale reads happened in one clone or the other; both fetch every commit.
    let false_rewrites = t
        .false_rewrites
        .iter()
        .filter(|(seen, tip)| {
            !clones
                .iter()
                .any(|c| git_succeeds(&c.dir, &["merge-base", "--is-ancestor", tip, seen]))
        })
        .count();
    assert_eq!(false_rewrites, 0, "a real rewrite? {:?}", t.false_rewrites);

    // Each clone: its ref is never ahead of the remote (it moves only after the
    // remote took the push); a kill between the push and the local update leaves
    // it behind, which `mara sync` repairs.
    let mut behind = 0;
    let mut clone_litter = vec![];
    for (i, c) in clones.iter().enumerate() {
        let local = c.tip(run);
        assert!(
            git_succeeds(
                &origin.bare,
                &["merge-base", "--is-ancestor", &local, &remote_tip]
            ),
            "clone {i}'s {local} is not in the remote's history"
        );
        if local != remote_tip {
            behind += 1;
        }
        clone_litter.push(litter_in_refs(&c.dir.join(".git"), run));
    }
    eprintln!(
        "kill -9, remote: {} claims exited 0 in {:.1}s{}; {spawned} processes, {} kills sent, {} landed \
         (SIGKILL, {}), {orphans} claims on the remote by a process killed before it exited 0, \
         {behind} of {CLONES} clones behind the remote, files left in the remote's refs/mara: \
         {remote_litter:?}, in the clones': {clone_litter:?}, false \"was rewritten\" errors: {}",
        t.ok.len(),
        took.as_secs_f64(),
        if killed.stalled { " (stalled: no claim for 60 s)" } else { "" },
        killed.sent,
        t.killed,
        if plan.group { "process groups" } else { "mara only" },
        t.false_rewrites.len(),
    );
    assert!(
        remote_litter.is_empty(),
        "left in the remote's refs/mara: {remote_litter:?}"
    );
    // A lock a kill left in a clone does not block it for long (checked at the
    // end; the lock is removed by hand so that sync and verify can run).
    let mut lock_problems = vec![];
    for (i, c) in clones.iter().enumerate() {
        let (extra, problem) = recover_a_left_lock(c, run, &format!("implementer#{}", 10 + i));
        if let Some(extra) = extra {
            check_history(&origin.bare, run, &[extra]);
        }
        lock_problems.extend(problem);
    }
    let remote_tip = git(&origin.bare, &["rev-parse", &format!("refs/mara/{run}")])
        .trim()
        .to_owned();
    for c in &clones {
        c.mara(&["sync"]).ok("mara sync after the kills");
        assert_eq!(c.tip(run), remote_tip, "the clone has the remote's tip");
        c.verify_ok();
        let logged = logged_claims(c);
        for x in &t.ok {
            assert!(logged.contains(&(x.task.clone(), x.who.clone())));
        }
    }
    assert!(
        lock_problems.is_empty(),
        "a lock left by a kill blocked a clone:\n{}",
        lock_problems.join("\n")
    );
    assert!(!killed.stalled, "no claim exited 0 for 60 s");
    assert!(
        t.failed.is_empty(),
        "unexpected outcomes:\n{}",
        failures(&t)
    );
    assert!(
        !t.nothing_ready,
        "the tasks ran out before {target} claims exited 0"
    );
    assert!(
        t.false_rewrites.is_empty(),
        "{} claims failed with a false \"was rewritten\" (see parallel_writers_never_get_a_false_rewritten_error)",
        t.false_rewrites.len()
    );
}

/// A process killed while it holds a clone's ref lock (mara between the push and
/// the local update, or its `git fetch`: the kill test with `MARA_KILL9_GROUP=1`
/// leaves one within seconds) leaves `refs/mara/<run>.lock`. In local mode the
/// next writer removes a lock older than 5 s; a clone in remote mode must not be
/// blocked for good either.
#[test]
fn a_stale_ref_lock_in_a_remote_mode_clone_is_removed() {
    let run = "stale";
    let origin = Origin::path();
    let a = origin.clone_repo("a");
    a.mara(&["init", "--run", run, "--remote", "origin"])
        .ok("init");
    a.mara(&["task", "add", "T1", "x"]).ok("task add");
    a.mara(&["task", "add", "T2", "y"]).ok("task add");
    let b = origin.clone_repo("b");
    b.mara(&["sync", "--run", run]).ok("sync b");
    // B moves the remote's ref: A's next write must fetch.
    b.mara_as("implementer#2", &["claim", "T1"])
        .ok("b claims T1");
    // What a `git fetch` killed in A left, a minute ago: an empty lock.
    let lock = a.dir.join(".git/refs/mara").join(format!("{run}.lock"));
    let f = std::fs::File::create(&lock).expect("creating the lock");
    f.set_modified(SystemTime::now() - Duration::from_secs(60))
        .expect("backdating the lock");
    drop(f);

    let started = Instant::now();
    let o = a.mara_as("implementer#1", &["claim", "--next", "--json"]);
    let took = started.elapsed();
    o.ok("a claim in a clone whose ref lock a killed process left");
    assert!(took < Duration::from_secs(12), "the claim took {took:?}");
    assert!(!lock.exists(), "the stale lock is gone");
    let claim = claimed(&o, "implementer#1").expect("the claim prints its JSON");
    assert_eq!(claim.task, "T2");
    a.mara(&["sync"]).ok("sync a");
    let remote_tip = git(&origin.bare, &["rev-parse", &format!("refs/mara/{run}")]);
    assert_eq!(a.tip(run), remote_tip.trim());
    a.verify_ok();
}

// ---------------------------------------------------------------------------
// 2. Soak: 16 processes, a random mix of events.
// ---------------------------------------------------------------------------

/// What one soak thread did: processes that exited 0 per event type, and the rest.
#[derive(Default)]
struct SoakTally {
    ok: BTreeMap<&'static str, u64>,
    /// `claim --next` refused with "nothing ready".
    nothing_ready: u64,
    /// Exit 1 "gave up after N attempts" (documented, but worth counting).
    gave_up: Vec<String>,
    /// Exit 1 "was rewritten" while nothing rewrote the ref: (seen, tip).
    false_rewrites: Vec<(String, String)>,
    failed: Vec<String>,
}

#[test]
#[ignore = "long: run with cargo test --release --test main -- --ignored faults::"]
fn soak_16_processes_5000_events_each() {
    const WORKERS: usize = 16;
    let events = knob("MARA_SOAK_EVENTS", 5000);
    // `claim --next` reads every task: the board's size sets the soak's pace. Tasks
    // are released far more often than done, so they last the whole soak.
    let tasks = knob("MARA_SOAK_TASKS", 1000) as usize;
    let seed = seed("soak_16_processes_5000_events_each");
    let run = "soak";
    let r = TestRepo::new();
    // A week's lease: no claim expires, so only the holder ever releases or completes.
    r.mara(&["init", "--run", run, "--claim-timeout", "604800"])
        .ok("mara init");
    plan_tasks(&r, tasks);

    let started = Instant::now();
    let tallies: Vec<(String, SoakTally)> = thread::scope(|s| {
        let handles: Vec<_> = (1..=WORKERS)
            .map(|k| {
                let r = &r;
                s.spawn(move || {
                    let who = format!("implementer#{k}");
                    let mut rng = Rng::new(seed ^ ((k as u64) << 40));
                    let mut held: Vec<String> = vec![];
                    let mut t = SoakTally::default();
                    for i in 0..events {
                        let roll = rng.below(100);
                        let kind = match (held.is_empty(), roll) {
                            (true, 0..=49) | (false, 0..=34) => "claim",
                            (true, _) | (false, 35..=69) => "note",
                            (false, 70..=98) => "release",
                            (false, _) => "done",
                        };
                        let pick = rng.below(held.len() as u64) as usize;
                        let text = format!("{who} event {i}");
                        let args: Vec<&str> = match kind {
                            "claim" => vec!["claim", "--next", "--json"],
                            "note" => vec!["post", "note", &text],
                            _ => vec![kind, &held[pick]],
                        };
                        let o = r.mara_as(&who, &args);
                        match (kind, o.code) {
                            ("claim", 0) => match claimed(&o, &who) {
                                Some(c) => held.push(c.task),
                                None => t.failed.push(format!("{args:?}: {o:?}")),
                            },
                            ("claim", 3) if o.stderr.contains("nothing ready") => {
                                t.nothing_ready += 1;
                                continue;
                            }
                            ("release" | "done", 0) => {
                                held.swap_remove(pick);
                            }
                            (_, 0) => {}
                            (_, 1) if o.stderr.contains("gave up after") => {
                                t.gave_up.push(o.stderr.trim().to_owned());
                                continue;
                            }
                            (_, 1) if rewritten_ids(&o).is_some() => {
                                t.false_rewrites.extend(rewritten_ids(&o));
                                continue;
                            }
                            _ => {
                                t.failed.push(format!(
                                    "{who} {args:?}: exit {}: {}",
                                    o.code,
                                    o.stderr.trim()
                                ));
                                continue;
                            }
                        }
                        *t.ok.entry(kind).or_default() += 1;
                    }
                    (who, t)
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().expect("a soak thread"))
            .collect()
    });
    let took = started.elapsed();
    let processes = WORKERS as u64 * events;
    let written: u64 = tallies.iter().flat_map(|(_, t)| t.ok.values()).sum();
    let gave_up: usize = tallies.iter().map(|(_, t)| t.gave_up.len()).sum();
    let nothing_ready: u64 = tallies.iter().map(|(_, t)| t.nothing_ready).sum();
    let false_rewrites: Vec<(String, String)> = tallies
        .iter()
        .flat_map(|(_, t)| t.false_rewrites.iter().cloned())
        .collect();
    stale_reads(&r.dir, &false_rewrites);
    let mut per_kind: BTreeMap<&str, u64> = BTreeMap::new();
    for (_, t) in &tallies {
        for (k, n) in &t.ok {
            *per_kind.entry(k).or_default() += n;
        }
    }
    eprintln!(
        "soak: {processes} processes by {WORKERS} instances in {:.1}s: {written} events written \
         ({:.0} events/s, {:.0} processes/s): {per_kind:?}; {nothing_ready} claims found nothing \
         ready, {gave_up} gave up, {} failed with a false \"was rewritten\"",
        took.as_secs_f64(),
        written as f64 / took.as_secs_f64(),
        processes as f64 / took.as_secs_f64(),
        false_rewrites.len(),
    );
    let failed: Vec<&String> = tallies.iter().flat_map(|(_, t)| &t.failed).collect();
    let shown: Vec<&&String> = failed.iter().take(20).collect();
    assert!(
        failed.is_empty(),
        "{} unexpected outcomes, the first ones:\n{shown:#?}",
        failed.len()
    );

    // Replay the log: seq gapless, a claim only of an open task, a release or
    // completion only by the holder, and per instance and type exactly the events
    // whose process exited 0.
    let o = r.mara(&["log", "--json"]);
    o.ok("mara log --json");
    #[derive(Clone, PartialEq, Debug)]
    enum State {
        Open,
        Claimed(String),
        Done,
    }
    let mut state: BTreeMap<String, State> = BTreeMap::new();
    let mut counted: BTreeMap<(String, String), u64> = BTreeMap::new();
    let mut n = 0u64;
    for line in o.stdout.lines() {
        let v: Value = serde_json::from_str(line).expect("log --json prints JSON lines");
        assert_eq!(v["seq"], n, "seq is gapless: {line}");
        n += 1;
        let sender = v["sender"].as_str().expect("a sender").to_owned();
        let kind = v["type"].as_str().expect("a type").to_owned();
        let task = v["payload"]["task"].as_str().map(str::to_owned);
        match kind.as_str() {
            "init" | "note" => {}
            "plan" => {
                for t in v["payload"]["tasks"].as_array().expect("a plan's tasks") {
                    let id = t["id"].as_str().expect("a task id").to_owned();
                    assert!(state.insert(id, State::Open).is_none(), "{line}");
                }
            }
            "claim" => {
                let task = task.expect("a claim names its task");
                let s = state
                    .get_mut(&task)
                    .expect("a claimed task is on the board");
                assert_eq!(*s, State::Open, "a double claim at seq {}: {line}", n - 1);
                *s = State::Claimed(sender.clone());
            }
            "release" | "done" => {
                let task = task.expect("the event names its task");
                let s = state.get_mut(&task).expect("the task is on the board");
                assert_eq!(
                    *s,
                    State::Claimed(sender.clone()),
                    "only the holder releases or completes: {line}"
                );
                assert!(
                    v["payload"].get("forced").is_none_or(Value::is_null),
                    "{line}"
                );
                *s = if kind == "done" {
                    State::Done
                } else {
                    State::Open
                };
            }
            other => panic!("an event the soak does not write: {other}: {line}"),
        }
        *counted.entry((sender, kind)).or_default() += 1;
    }
    for (who, t) in &tallies {
        for kind in ["claim", "note", "release", "done"] {
            assert_eq!(
                counted
                    .get(&(who.clone(), kind.to_owned()))
                    .copied()
                    .unwrap_or(0),
                t.ok.get(kind).copied().unwrap_or(0),
                "{who}'s {kind} events in the log equal its processes that exited 0"
            );
        }
    }
    assert_eq!(n, written + 2, "init, plan and every event written");
    r.verify_ok();
    eprintln!(
        "soak: {n} events replayed, {:.1}s in all",
        started.elapsed().as_secs_f64()
    );
    assert_eq!(
        gave_up,
        0,
        "writers starved: {:?}",
        tallies.iter().flat_map(|(_, t)| &t.gave_up).next()
    );
    assert!(
        false_rewrites.is_empty(),
        "{} events failed with a false \"was rewritten\" (see parallel_writers_never_get_a_false_rewritten_error)",
        false_rewrites.len()
    );
}

/// Writers in parallel on one clone: each reads the ref, then checks it contains
/// the tip this clone last saw. Another writer can move the ref and record its new
/// tip as seen in between, and the first one then fails with "was rewritten" (and
/// a `git update-ref` hint that would roll the run back) though nothing was.
#[test]
fn parallel_writers_never_get_a_false_rewritten_error() {
    const WORKERS: usize = 8;
    const EACH: usize = 60;
    let run = "parallel";
    let r = TestRepo::with_run(run);
    let outs: Vec<Out> = thread::scope(|s| {
        let handles: Vec<_> = (1..=WORKERS)
            .map(|k| {
                let r = &r;
                s.spawn(move || {
                    let who = format!("implementer#{k}");
                    (0..EACH)
                        .map(|i| r.mara_as(&who, &["post", "note", &format!("{who} {i}")]))
                        .collect::<Vec<Out>>()
                })
            })
            .collect();
        handles
            .into_iter()
            .flat_map(|h| h.join().expect("a writer thread"))
            .collect()
    });
    let failed: Vec<&Out> = outs.iter().filter(|o| o.code != 0).collect();
    let stale: Vec<(String, String)> = failed.iter().filter_map(|o| rewritten_ids(o)).collect();
    stale_reads(&r.dir, &stale);
    assert!(
        failed.is_empty(),
        "{} of {} writes failed, {} of them with a false \"was rewritten\"; the first: {}",
        failed.len(),
        outs.len(),
        stale.len(),
        failed[0].stderr.trim()
    );
    r.verify_ok();
}

// ---------------------------------------------------------------------------
// 3. Bad input: exit 1 (or clap's 2), one line naming what is wrong, nothing written.
// ---------------------------------------------------------------------------

/// git config `mara.run` of the repository, if set.
fn current_run(r: &TestRepo) -> Option<String> {
    r.git(&["config", "--list"])
        .lines()
        .find_map(|l| l.strip_prefix("mara.run=").map(str::to_owned))
}

/// Runs `mara args` with `envs` and asserts: exit `code`; stderr starts with an
/// `error:` line that holds every needle, and is that one line when the code is
/// 1; no raw control character reaches the terminal; `refs/mara/*` (names and
/// tips), the branches and `mara.run` are unchanged.
#[track_caller]
fn refused(r: &TestRepo, args: &[&str], envs: &[(&str, &str)], code: i32, needles: &[&str]) -> Out {
    let refs = |r: &TestRepo| r.git(&["for-each-ref", "refs/mara", "refs/heads"]);
    let (refs_before, run_before) = (refs(r), current_run(r));
    let o = r.mara_in(args, envs, None);
    let what = format!("mara {args:?} with {envs:?}");
    o.expect_code(code, &what);
    let first = o.stderr.lines().next().unwrap_or_default();
    assert!(
        first.starts_with("error: "),
        "{what}: stderr:\n{}",
        o.stderr
    );
    if code == 1 {
        assert_eq!(
            o.stderr.lines().count(),
            1,
            "{what}: one line:\n{}",
            o.stderr
        );
    }
    for n in needles {
        assert!(
            first.contains(n),
            "{what}: the error does not name {n:?}:\n{}",
            o.stderr
        );
    }
    assert!(
        !o.stderr
            .chars()
            .any(|c| c.is_control() && c != '\n' && c != '\t'),
        "{what}: a raw control character on stderr: {:?}",
        o.stderr
    );
    assert_eq!(refs(r), refs_before, "{what}: a ref changed");
    assert_eq!(current_run(r), run_before, "{what}: mara.run changed");
    o
}

/// Writes `bytes` to a file outside the repository; its path as a string.
fn outside_file(r: &TestRepo, name: &str, bytes: &[u8]) -> String {
    let p = r.root().join(name);
    std::fs::write(&p, bytes).expect("writing a file outside the repository");
    p.to_str().expect("a UTF-8 path").to_owned()
}

/// `n` bytes of deterministic pseudo-random data.
fn garbage(n: usize, seed: u64) -> Vec<u8> {
    let mut rng = Rng::new(seed);
    (0..n).map(|_| rng.next() as u8).collect()
}

#[test]
fn hostile_config_files_are_refused_and_nothing_is_created() {
    let r = TestRepo::new();
    let role = r#"{"id": "implementer", "file": "roles/implementer.json", "instances": "#;
    let cases: Vec<(&str, Vec<u8>, Vec<&str>)> = vec![
        (
            "huge.json",
            br#"{"coordination": {"claim_timeout_sec": 99999999999999999999}}"#.to_vec(),
            vec!["coordination.claim_timeout_sec"],
        ),
        (
            "u64max.json",
            br#"{"coordination": {"claim_timeout_sec": 18446744073709551615}}"#.to_vec(),
            vec!["claim_timeout_sec is 18446744073709551615", "604800"],
        ),
        (
            "instances1e12.json",
            format!(r#"{{"roles": [{role}1e12}}]}}"#).into_bytes(),
            vec!["roles[0].instances"],
        ),
        (
            "instances_u64.json",
            format!(r#"{{"roles": [{role}1000000000000}}]}}"#).into_bytes(),
            vec!["roles[0].instances"],
        ),
        (
            "negative_timeout.json",
            br#"{"coordination": {"claim_timeout_sec": -300}}"#.to_vec(),
            vec!["coordination.claim_timeout_sec", "-300"],
        ),
        (
            "negative_instances.json",
            format!(r#"{{"roles": [{role}-2}}]}}"#).into_bytes(),
            vec!["roles[0].instances", "-2"],
        ),
        (
            "negative_instance_timeout.json",
            br#"{"coordination": {"instance_timeout_sec": -1}}"#.to_vec(),
            vec!["coordination.instance_timeout_sec"],
        ),
        (
            "truncated.json",
            br#"{"coordination": {"claim_timeout_sec": 30"#.to_vec(),
            vec!["EOF"],
        ),
        ("empty.json", vec![], vec!["EOF"]),
        (
            "bom.json",
            b"\xef\xbb\xbf{\"coordination\": {\"claim_timeout_sec\": 30}}".to_vec(),
            vec!["byte order mark"],
        ),
        ("binary.json", garbage(4096, 7), vec!["UTF-8"]),
        ("nul.json", b"\0\0\0\0".to_vec(), vec![]),
    ];
    for (name, bytes, needles) in &cases {
        let path = outside_file(&r, name, bytes);
        let mut with_path = vec![path.as_str()];
        with_path.extend(needles.iter().copied());
        refused(
            &r,
            &["init", "--run", "x", "--config", &path],
            &[],
            1,
            &with_path,
        );
        // `mara run` reads the same file before it writes anything.
        refused(
            &r,
            &["run", "--run", "x", "--config", &path],
            &[],
            1,
            &with_path,
        );
        assert!(
            !r.dir.join(".multi_agent_runs").exists(),
            "{name}: mara run created .multi_agent_runs"
        );
    }
    let dir = r.root().to_str().expect("a UTF-8 path").to_owned();
    refused(
        &r,
        &["init", "--run", "x", "--config", &dir],
        &[],
        1,
        &[&dir, "directory"],
    );

    // The same numbers as arguments: too large or negative is clap's usage error,
    // out of range is mara's.
    refused(
        &r,
        &[
            "init",
            "--run",
            "x",
            "--claim-timeout",
            "99999999999999999999",
        ],
        &[],
        2,
        &["--claim-timeout", "too large"],
    );
    refused(
        &r,
        &["init", "--run", "x", "--claim-timeout", "-1"],
        &[],
        2,
        &["'-1'"],
    );
    for bad in ["0", "604801", "18446744073709551615"] {
        refused(
            &r,
            &["init", "--run", "x", "--claim-timeout", bad],
            &[],
            1,
            &["--claim-timeout", bad],
        );
    }
    assert_eq!(r.git(&["for-each-ref", "refs/mara"]), "");
    // What was refused above is fine when in range.
    r.mara(&["init", "--run", "x", "--claim-timeout", "604800"])
        .ok("a lease of a week");
}

#[test]
fn hostile_plan_files_are_refused_and_nothing_is_written() {
    let run = "plans";
    let r = TestRepo::with_run(run);
    r.mara(&["task", "add", "T0", "already here"])
        .ok("task add");
    const TEN_MB: usize = 10 << 20;
    let printable: Vec<u8> = garbage(TEN_MB, 11)
        .into_iter()
        .map(|b| b"abc{}[],:\" 0123456789\n"[usize::from(b) % 22])
        .collect();
    let long_title = "x".repeat(10_000);
    let title_4097 = "é".repeat(2048) + "x"; // 4097 bytes, 2049 characters
    let cases: Vec<(&str, Vec<u8>, Vec<&str>)> = vec![
        ("random.json", garbage(TEN_MB, 3), vec!["UTF-8"]),
        ("printable.json", printable, vec!["line "]),
        (
            "nested.json",
            [vec![b'['; TEN_MB / 2], vec![b']'; TEN_MB / 2]].concat(),
            vec!["recursion limit"],
        ),
        (
            "long_title.json",
            json!([{"id": "T1", "title": long_title}])
                .to_string()
                .into_bytes(),
            vec!["title of T1", "4096 bytes"],
        ),
        (
            "title_4097_bytes.json",
            json!([{"id": "T1", "title": title_4097}])
                .to_string()
                .into_bytes(),
            vec!["title of T1", "4096 bytes"],
        ),
        (
            "nul_title.json",
            br#"[{"id": "T1", "title": "before\u0000after"}]"#.to_vec(),
            vec!["title of T1", "NUL"],
        ),
        (
            "nul_second.json",
            br#"[{"id": "T1", "title": "fine"}, {"id": "T2", "title": "a\u0000"}]"#.to_vec(),
            vec!["T2", "NUL"],
        ),
        (
            "deps_string.json",
            br#"[{"id": "T1", "title": "a", "deps": "T0"}]"#.to_vec(),
            vec!["T1", "deps", "expected a sequence"],
        ),
        (
            "paths_string.json",
            br#"[{"id": "T1", "title": "a", "paths": "src/**"}]"#.to_vec(),
            vec!["T1", "paths"],
        ),
        (
            "numeric_id.json",
            br#"[{"id": 7, "title": "a"}]"#.to_vec(),
            vec!["id"],
        ),
        (
            "null_title.json",
            br#"[{"id": "T1", "title": null}]"#.to_vec(),
            vec!["T1", "title"],
        ),
        (
            "nul_path.json",
            br#"[{"id": "T1", "title": "a", "paths": ["src/\u0000"]}]"#.to_vec(),
            vec!["T1", "NUL"],
        ),
    ];
    for (name, bytes, needles) in &cases {
        let path = outside_file(&r, name, bytes);
        let mut with_path = vec![path.as_str()];
        with_path.extend(needles.iter().copied());
        let tip = r.tip(run);
        refused(&r, &["plan", &path], &[], 1, &with_path);
        assert_eq!(r.tip(run), tip);
    }
    // The same title through `task add`, and the limit itself is fine.
    refused(
        &r,
        &["task", "add", "T1", &long_title],
        &[],
        1,
        &["title of T1", "4096 bytes"],
    );
    let path = outside_file(
        &r,
        "title_4096_bytes.json",
        json!([{"id": "T1", "title": "é".repeat(2048)}])
            .to_string()
            .as_bytes(),
    );
    r.mara(&["plan", &path]).ok("a title of exactly 4096 bytes");
    r.verify_ok();
}

#[test]
fn run_ids_that_are_not_plain_names_are_refused() {
    let r = TestRepo::new();
    let ansi = "a\x1b[31mb";
    for bad in [
        "../x", "a b", "a\nb", "x.lock", "x/y", "", ".x", "x..y", "-x", ansi,
    ] {
        let flag = format!("--run={bad}");
        refused(&r, &["init", &flag], &[], 1, &["run id"]);
        refused(
            &r,
            &["init", &flag, "--remote", "origin"],
            &[],
            1,
            &["run id"],
        );
    }
    // Where a run id is read rather than created: --run, MARA_RUN, git config.
    r.mara(&["init", "--run", "good"]).ok("init");
    for bad in ["../good", "good.lock", "a\nb", ansi] {
        refused(&r, &["--run", bad, "board"], &[], 1, &["--run", "run id"]);
        refused(
            &r,
            &["--as", "implementer#1", "post", "note", "hello"],
            &[("MARA_RUN", bad)],
            1,
            &["MARA_RUN", "run id"],
        );
    }
    r.git(&["config", "mara.run", "../good"]);
    refused(
        &r,
        &["--as", "implementer#1", "heartbeat"],
        &[],
        1,
        &["mara.run"],
    );
    r.git(&["config", "mara.run", "good"]);
    r.verify_ok();
}

#[test]
fn identities_with_spaces_or_escapes_are_refused() {
    let run = "who";
    let r = TestRepo::with_run(run);
    r.mara(&["task", "add", "T1", "x"]).ok("task add");
    for bad in [
        "implementer#1 ",
        " implementer#1",
        "impl\x1b[31m#1",
        "implementer#1\x1b[0m",
        "implementer#1\n",
        "implementer#1\r",
        "implementer#\u{0661}",
        "implementer#1#1",
    ] {
        refused(
            &r,
            &["--as", bad, "claim", "T1"],
            &[],
            1,
            &["--as", "<role>#<n>"],
        );
        refused(
            &r,
            &["claim", "T1"],
            &[("MARA_INSTANCE", bad)],
            1,
            &["MARA_INSTANCE"],
        );
        r.git(&["config", "mara.instance", bad]);
        refused(&r, &["post", "note", "hi"], &[], 1, &["mara.instance"]);
        r.git(&["config", "--unset", "mara.instance"]);
    }
    assert_eq!(r.task_state("T1"), ("open".to_owned(), None));
    r.verify_ok();
}

#[test]
fn artifacts_outside_the_worktree_are_refused() {
    let run = "art";
    let r = TestRepo::with_run(run);
    r.mara(&["task", "add", "T1", "x"]).ok("task add");
    r.mara_as("implementer#1", &["claim", "T1"]).ok("claim");
    let outside = r.write_outside("outside.txt", "not the project's\n");
    let outside_s = outside.to_str().expect("a UTF-8 path").to_owned();
    std::os::unix::fs::symlink(&outside, r.dir.join("link.txt")).expect("a symlink to a file");
    std::os::unix::fs::symlink(r.root(), r.dir.join("linkdir")).expect("a symlink to a folder");
    std::fs::create_dir_all(r.dir.join("sub")).expect("a subfolder");
    std::fs::write(r.dir.join("inside.txt"), "delivered\n").expect("an artifact");
    let through = format!("{}/../outside.txt", r.dir.display());
    for bad in [
        "../outside.txt",
        outside_s.as_str(),
        "link.txt",
        "linkdir/outside.txt",
        "sub/../../outside.txt",
        through.as_str(),
    ] {
        refused(
            &r,
            &["done", "T1", "--artifact", bad],
            &[("MARA_INSTANCE", "implementer#1")],
            1,
            &["artifact", bad, "outside the worktree"],
        );
    }
    for bad in [".git/config", ".git/HEAD", "sub/../.git/config"] {
        refused(
            &r,
            &["done", "T1", "--artifact", bad],
            &[("MARA_INSTANCE", "implementer#1")],
            1,
            &["artifact", bad, "not a file of the worktree"],
        );
    }
    assert_eq!(
        r.task_state("T1"),
        ("claimed".to_owned(), Some("implementer#1".to_owned()))
    );
    r.git(&["add", "inside.txt"]);
    r.git(&["commit", "-q", "-m", "the artifact"]);
    r.mara_as("implementer#1", &["done", "T1", "--artifact", "inside.txt"])
        .ok("an artifact inside the worktree");
    r.verify_ok();
}

#[test]
fn empty_or_oversized_messages_are_refused() {
    let run = "msg";
    let r = TestRepo::with_run(run);
    let me = [("MARA_INSTANCE", "implementer#1")];
    refused(&r, &["post", "note", ""], &me, 1, &["message is empty"]);
    refused(
        &r,
        &["post", "note", " \n\t "],
        &me,
        1,
        &["message is empty"],
    );
    let long = "y".repeat(4097);
    refused(&r, &["post", "note", &long], &me, 1, &["4096 bytes"]);
    refused(&r, &["post", "", "hello"], &me, 1, &["message type"]);
    refused(&r, &["post", "Note", "hello"], &me, 1, &["message type"]);
    refused(&r, &["post", "claim", "hello"], &me, 1, &["reserved"]);
    r.mara_as("implementer#1", &["post", "note", &"y".repeat(4096)])
        .ok("a message of exactly 4096 bytes");
    r.verify_ok();
}

// ---------------------------------------------------------------------------
// 4. Authority: the remote decides.
// ---------------------------------------------------------------------------

/// A bare repository whose `pre-receive` hook prints "permission denied" and
/// rejects the push while `deny` holds; returns the temporary directory, the
/// repository and the file whose presence denies.
fn guarded_remote() -> (TempDir, PathBuf, PathBuf) {
    let (tmp, root, bare) = Origin::bare_only();
    let deny = root.join("deny");
    let hook = bare.join("hooks").join("pre-receive");
    std::fs::write(
        &hook,
        format!(
            "#!/bin/sh\nif [ -e '{}' ]; then\n  echo 'permission denied' >&2\n  exit 1\nfi\nexit 0\n",
            deny.display()
        ),
    )
    .expect("writing the hook");
    let mut perms = std::fs::metadata(&hook).expect("the hook").permissions();
    std::os::unix::fs::PermissionsExt::set_mode(&mut perms, 0o755);
    std::fs::set_permissions(&hook, perms).expect("making the hook executable");
    std::fs::write(&deny, "").expect("denying");
    (tmp, bare, deny)
}

#[test]
fn init_against_a_remote_that_rejects_every_push_fails_and_creates_nothing() {
    let (_tmp, bare, _deny) = guarded_remote();
    let bare_s = bare.to_str().expect("a UTF-8 path").to_owned();
    let r = TestRepo::new();
    r.git(&["remote", "add", "origin", &bare_s]);
    r.git(&["remote", "add", "guarded", &bare_s]);
    for remote in ["guarded", "origin"] {
        let o = refused(
            &r,
            &["init", "--run", "x", "--remote", remote],
            &[],
            1,
            &["remote", remote, "refused", "refs/mara/x"],
        );
        assert!(
            o.stderr.contains("declined"),
            "git's reason is passed on: {o:?}"
        );
        assert_eq!(r.git(&["for-each-ref", "refs/mara"]), "", "no local ref");
        assert_eq!(current_run(&r), None, "mara.run is not set");
        assert!(
            !r.dir.join(".git/mara").exists(),
            "no sync or seen marker for a run that does not exist"
        );
    }
    assert_eq!(git(&bare, &["for-each-ref"]), "", "nothing on the remote");
}

#[test]
fn a_refused_push_passes_on_the_hooks_words() {
    let (_tmp, bare, _deny) = guarded_remote();
    let r = TestRepo::new();
    r.git(&[
        "remote",
        "add",
        "guarded",
        bare.to_str().expect("a UTF-8 path"),
    ]);
    let o = r.mara(&["init", "--run", "x", "--remote", "guarded"]);
    o.expect_code(1, "init against a remote that denies")
        .stderr_has("permission denied");
}

#[test]
fn writes_a_remote_starts_refusing_fail_and_change_nothing() {
    let run = "guarded";
    let (_tmp, bare, deny) = guarded_remote();
    std::fs::remove_file(&deny).expect("allowing");
    let r = TestRepo::new();
    r.git(&[
        "remote",
        "add",
        "origin",
        bare.to_str().expect("a UTF-8 path"),
    ]);
    r.mara(&["init", "--run", run, "--remote", "origin"])
        .ok("init while the remote allows");
    r.mara(&["task", "add", "T1", "x"]).ok("task add");
    r.mara(&["task", "add", "T2", "y"]).ok("task add");
    r.mara_as("implementer#1", &["claim", "T2"]).ok("claim T2");
    let remote_tip = git(&bare, &["rev-parse", &format!("refs/mara/{run}")]);

    std::fs::write(&deny, "").expect("denying");
    let me = [("MARA_INSTANCE", "implementer#1")];
    let started = Instant::now();
    for args in [
        &["claim", "T1"][..],
        &["claim", "--next"][..],
        &["post", "note", "hello"][..],
        &["release", "T2"][..],
        &["done", "T2"][..],
        &["heartbeat"][..],
        &["task", "add", "T3", "z"][..],
    ] {
        refused(
            &r,
            args,
            &me,
            1,
            &["remote origin refused", &format!("refs/mara/{run}")],
        );
    }
    assert!(
        started.elapsed() < Duration::from_secs(30),
        "a refusal is not retried as a lost race: {:?}",
        started.elapsed()
    );
    assert_eq!(
        git(&bare, &["rev-parse", &format!("refs/mara/{run}")]),
        remote_tip
    );
    assert_eq!(r.task_state("T1"), ("open".to_owned(), None));

    std::fs::remove_file(&deny).expect("allowing again");
    r.mara_as("implementer#1", &["claim", "T1"])
        .ok("claim once allowed");
    r.mara(&["sync"]).ok("sync");
    r.verify_ok();
}
