//! Leases (reclaims after a silent holder's timeout, heartbeats renewing them) and
//! the holder-only rule of release and done.

use std::time::{Duration, Instant};

use crate::common::{assert_ref_unchanged, held_by, newest_subject, TestRepo};

#[test]
fn an_expired_lease_is_reclaimed_and_a_heartbeat_keeps_it() {
    let run = "lease";
    let r = TestRepo::new();
    r.mara(&["init", "--run", run, "--claim-timeout", "1"])
        .ok("init with a 1 s lease");
    r.mara(&["task", "add", "T1", "abandoned"]).ok("add T1");
    r.mara(&["task", "add", "T2", "kept alive"]).ok("add T2");

    r.mara_as("implementer#1", &["claim", "T1"])
        .ok("implementer#1 claims T1");
    r.mara_as("implementer#3", &["claim", "T2"])
        .ok("implementer#3 claims T2");
    let refused = assert_ref_unchanged(&r, run, || r.mara_as("implementer#2", &["claim", "T1"]));
    refused.expect_code(3, "T1 is held within its lease");
    assert_eq!(
        held_by(&refused.stderr, "T1").as_deref(),
        Some("implementer#1")
    );

    // implementer#1 stays silent; implementer#3 heartbeats through the wait.
    let started = Instant::now();
    let mut beats = 0;
    while started.elapsed() < Duration::from_millis(2200) {
        std::thread::sleep(Duration::from_millis(300));
        r.mara_as("implementer#3", &["heartbeat"]).ok("heartbeat");
        beats += 1;
    }
    assert!(beats >= 3, "{beats} heartbeats");

    // T2's holder wrote an event well within the lease: its claim stands. (Checked
    // first, right after the last heartbeat, so a slow machine cannot let that
    // heartbeat expire too.)
    let refused = r.mara_as("implementer#2", &["claim", "T2"]);
    refused.expect_code(3, "T2's holder heartbeated");
    assert_eq!(
        held_by(&refused.stderr, "T2").as_deref(),
        Some("implementer#3")
    );
    assert_eq!(newest_subject(&r.dir, run), "heartbeat by implementer#3");
    assert!(
        started.elapsed() > Duration::from_millis(2000),
        "T1's holder has been silent for longer than the lease"
    );

    r.mara_as("implementer#2", &["claim", "T1"])
        .ok("implementer#2 reclaims the expired T1");
    assert_eq!(
        newest_subject(&r.dir, run),
        "reclaim T1 by implementer#2 from implementer#1"
    );
    assert_eq!(
        r.task_state("T1"),
        ("claimed".to_owned(), Some("implementer#2".to_owned()))
    );

    // The log records the reclaim with the previous holder.
    let log = r.mara(&["log", "--type", "reclaim", "--json"]);
    log.ok("log --type reclaim");
    let e: serde_json::Value = serde_json::from_str(log.stdout.trim()).expect("one JSON line");
    assert_eq!(e["payload"]["task"], "T1");
    assert_eq!(e["payload"]["previous"], "implementer#1");
    r.verify_ok();
}

#[test]
fn only_the_holder_releases_or_completes_unless_forced() {
    let run = "holder";
    let r = TestRepo::with_run(run);
    for (id, title) in [("T1", "one"), ("T2", "two"), ("T3", "three")] {
        r.mara(&["task", "add", id, title]).ok("task add");
    }
    r.mara_as("implementer#1", &["claim", "T1"]).ok("claim T1");

    assert_ref_unchanged(&r, run, || r.mara_as("implementer#2", &["release", "T1"]))
        .expect_code(3, "release by a non-holder")
        .stderr_has("T1 is held by implementer#1, not by implementer#2");
    assert_ref_unchanged(&r, run, || r.mara_as("implementer#2", &["done", "T1"]))
        .expect_code(3, "done by a non-holder")
        .stderr_has("T1 is held by implementer#1, not by implementer#2");
    assert_eq!(
        r.task_state("T1"),
        ("claimed".to_owned(), Some("implementer#1".to_owned()))
    );

    r.mara_as("implementer#2", &["release", "T1", "--force"])
        .ok("forced release");
    let subject = newest_subject(&r.dir, run);
    assert_eq!(
        subject,
        "release T1 by implementer#2 (forced, held by implementer#1)"
    );
    assert!(subject.contains("(forced, held by implementer#1)"));
    assert_eq!(r.task_state("T1"), ("open".to_owned(), None));

    r.mara_as("implementer#1", &["claim", "T1"])
        .ok("claim T1 again");
    r.mara_as("implementer#2", &["done", "T1", "--force"])
        .ok("forced done");
    assert_eq!(
        newest_subject(&r.dir, run),
        "done T1 by implementer#2 (forced, held by implementer#1)"
    );
    assert_eq!(
        r.task_state("T1"),
        ("done".to_owned(), Some("implementer#1".to_owned()))
    );

    // A done task cannot be completed again, forced or not, nor released.
    for (who, args) in [
        ("implementer#1", &["done", "T1"][..]),
        ("implementer#2", &["done", "T1", "--force"][..]),
        ("implementer#1", &["release", "T1"][..]),
    ] {
        assert_ref_unchanged(&r, run, || r.mara_as(who, args))
            .expect_code(3, &format!("{who} {args:?} on a done task"))
            .stderr_has("T1 is already done");
    }

    // The holder's own done, twice.
    r.mara_as("implementer#1", &["claim", "T2"]).ok("claim T2");
    r.mara_as("implementer#1", &["done", "T2"]).ok("done T2");
    assert_eq!(newest_subject(&r.dir, run), "done T2 by implementer#1");
    assert_ref_unchanged(&r, run, || r.mara_as("implementer#1", &["done", "T2"]))
        .expect_code(3, "done twice")
        .stderr_has("T2 is already done");

    // Releasing an open task: nobody holds it.
    assert_ref_unchanged(&r, run, || r.mara_as("implementer#1", &["release", "T3"]))
        .expect_code(3, "release of an open task")
        .stderr_has("T3 is not claimed by anyone");

    // The holder releases its own task, with a reason.
    r.mara_as("implementer#1", &["claim", "T3"]).ok("claim T3");
    r.mara_as("implementer#1", &["release", "T3", "--reason", "blocked"])
        .ok("release T3");
    assert_eq!(newest_subject(&r.dir, run), "release T3 by implementer#1");
    r.verify_ok();
}

/// Keeps `lock` (the run's ref lock file) fresh until `stop`, so no writer may
/// take it and none removes it as stale: every write of the run waits.
fn hold_lock(lock: &std::path::Path, stop: &std::sync::atomic::AtomicBool) {
    std::fs::write(lock, "held by the test\n").expect("taking the ref lock");
    while !stop.load(std::sync::atomic::Ordering::Relaxed) {
        std::fs::File::options()
            .write(true)
            .open(lock)
            .and_then(|f| f.set_modified(std::time::SystemTime::now()))
            .expect("keeping the lock fresh");
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// Issue 16: a holder whose writes cannot land (here the run's ref stays locked
/// while its `heartbeat` retries) is silent on the board for longer than the
/// lease, but it is trying to write: another instance neither reclaims its task
/// by name nor takes it with `--next`. Once it stops trying for a lease, the task
/// is reclaimed as before.
#[test]
fn a_holder_that_keeps_trying_to_write_is_not_reclaimed_until_it_stops() {
    use std::sync::atomic::{AtomicBool, Ordering};
    let run = "trying";
    let lease = Duration::from_secs(2);
    let r = TestRepo::new();
    r.mara(&["init", "--run", run, "--claim-timeout", "2"])
        .ok("init with a 2 s lease");
    r.mara(&["task", "add", "T1", "held"]).ok("add T1");
    r.mara(&["task", "add", "T2", "free"]).ok("add T2");
    r.mara_as("implementer#1", &["claim", "T1"]).ok("claim T1");
    let claimed = Instant::now();

    let lock = r.dir.join(".git/refs/mara").join(format!("{run}.lock"));
    let stop = AtomicBool::new(false);
    std::thread::scope(|s| {
        s.spawn(|| hold_lock(&lock, &stop));
        // The holder tries to write: its heartbeat waits for the lock.
        let mut holder = r
            .mara_command(&["heartbeat"], &[("MARA_INSTANCE", "implementer#1")], None)
            .spawn()
            .expect("starting the holder's heartbeat");
        std::thread::sleep((lease + Duration::from_millis(700)).saturating_sub(claimed.elapsed()));
        assert!(
            holder.try_wait().expect("polling").is_none(),
            "the holder's heartbeat is still trying"
        );
        let o = assert_ref_unchanged(&r, run, || r.mara_as("implementer#2", &["claim", "T1"]));
        o.expect_code(3, "the holder is still trying to write")
            .stderr_has(
                "T1 is held by implementer#1, whose lease ran out but who is still trying to write",
            );
        // The holder is gone now; its last try is a moment ago.
        holder.kill().expect("killing the holder");
        holder.wait().expect("reaping the holder");
        stop.store(true, Ordering::Relaxed);
    });
    let stopped = Instant::now();
    std::fs::remove_file(&lock).expect("releasing the lock");
    let o = r.mara_as("implementer#2", &["claim", "--next", "--json"]);
    o.ok("claim --next passes T1 over");
    let v: serde_json::Value = serde_json::from_str(&o.stdout).expect("JSON");
    assert_eq!(v["payload"]["task"], "T2", "{}", o.stdout);
    assert_eq!(v["passed_over"][0]["task"], "T1", "{}", o.stdout);
    assert_eq!(
        v["passed_over"][0]["holder"], "implementer#1",
        "{}",
        o.stdout
    );
    assert!(
        stopped.elapsed() < lease,
        "the checks ran within the lease of the last try: {:?}",
        stopped.elapsed()
    );

    // A lease after its last try, the holder that stopped trying is reclaimed.
    std::thread::sleep(lease + Duration::from_millis(300));
    r.mara_as("implementer#2", &["claim", "T1"])
        .ok("the holder stopped trying: reclaim");
    assert_eq!(
        newest_subject(&r.dir, run),
        "reclaim T1 by implementer#2 from implementer#1"
    );
    r.verify_ok();
}

/// The same through a `git daemon` remote, from another clone: the remote's
/// pre-receive hook refuses every event of the holder, which keeps trying (an
/// agent retrying `mara heartbeat`); its heartbeat ref still lands, and the other
/// clone fetches it before it would reclaim.
#[test]
fn a_holder_whose_pushes_the_remote_refuses_is_not_reclaimed_while_it_keeps_trying() {
    use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
    let run = "trying";
    let lease = Duration::from_secs(2);
    let origin = crate::common::Origin::daemon();
    let a = origin.clone_repo("a");
    a.mara(&[
        "init",
        "--run",
        run,
        "--remote",
        "origin",
        "--claim-timeout",
        "2",
    ])
    .ok("init --remote with a 2 s lease");
    a.mara(&["task", "add", "T1", "held"]).ok("add T1");
    a.mara(&["task", "add", "T2", "free"]).ok("add T2");
    a.mara_as("implementer#1", &["claim", "T1"]).ok("claim T1");
    let claimed = Instant::now();
    let b = origin.clone_repo("b");
    b.mara(&["sync", "--run", run]).ok("sync b");

    // From now on the remote refuses the run's ref to implementer#1's events.
    let hook = origin.bare.join("hooks").join("pre-receive");
    std::fs::write(
        &hook,
        format!(
            "#!/bin/sh\nwhile read old new ref; do\n  if [ \"$ref\" = refs/mara/{run} ] && git log -1 --format=%s \"$new\" | grep -q 'by implementer#1'; then\n    echo 'implementer#1 is muted' >&2\n    exit 1\n  fi\ndone\nexit 0\n"
        ),
    )
    .expect("writing the hook");
    let mut perms = std::fs::metadata(&hook).expect("the hook").permissions();
    std::os::unix::fs::PermissionsExt::set_mode(&mut perms, 0o755);
    std::fs::set_permissions(&hook, perms).expect("making the hook executable");

    let stop = AtomicBool::new(false);
    let tries = AtomicU32::new(0);
    let last_try = std::sync::Mutex::new(Instant::now());
    std::thread::scope(|s| {
        s.spawn(|| {
            while !stop.load(Ordering::Relaxed) {
                let o = a.mara_as("implementer#1", &["heartbeat"]);
                o.expect_code(1, "the remote refuses the holder's events")
                    .stderr_has("implementer#1 is muted");
                tries.fetch_add(1, Ordering::Relaxed);
                *last_try.lock().expect("the time") = Instant::now();
                std::thread::sleep(Duration::from_millis(150));
            }
        });
        std::thread::sleep((lease + Duration::from_millis(700)).saturating_sub(claimed.elapsed()));
        let o = assert_ref_unchanged(&b, run, || b.mara_as("implementer#2", &["claim", "T1"]));
        o.expect_code(3, "the holder is still trying to write")
            .stderr_has(
                "T1 is held by implementer#1, whose lease ran out but who is still trying to write",
            );
        let o = b.mara_as("implementer#2", &["claim", "--next", "--json"]);
        o.ok("claim --next passes T1 over");
        let v: serde_json::Value = serde_json::from_str(&o.stdout).expect("JSON");
        assert_eq!(v["payload"]["task"], "T2", "{}", o.stdout);
        assert_eq!(v["passed_over"][0]["task"], "T1", "{}", o.stdout);
        stop.store(true, Ordering::Relaxed);
    });
    assert!(tries.load(Ordering::Relaxed) >= 3, "the holder kept trying");
    assert!(
        origin
            .git(&["for-each-ref", "--format=%(refname)", "refs/mara-alive/"])
            .contains(&format!("refs/mara-alive/{run}/implementer_1")),
        "the holder's heartbeat ref is on the remote"
    );

    // A lease after its last try, the holder that stopped trying is reclaimed.
    let since = last_try.lock().expect("the time").elapsed();
    std::thread::sleep((lease + Duration::from_millis(500)).saturating_sub(since));
    b.mara_as("implementer#2", &["claim", "T1"])
        .ok("the holder stopped trying: reclaim");
    assert_eq!(
        origin.subjects(run).first().map(String::as_str),
        Some("reclaim T1 by implementer#2 from implementer#1")
    );
    b.verify_ok();
}
