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
