//! Fencing (issue 15): commits made under a claim that was lost never land. A
//! claim's token is the commit of its event; the integrator leaves out commits of a
//! task whose `Mara-Claim` is not a good claim of that task by that instance, records
//! one `fenced` event per group, and the pre-push hook refuses to push them. The
//! attacks forge trailers by hand, as a hostile instance would.

use std::io::Write;
use std::process::Stdio;
use std::time::Duration;

use crate::common::{ref_tip, Out, TestRepo};
use crate::integrate::{events_of_type, files_of, report_json, report_md};

const RUN: &str = "r";
const I1: &str = "mara/r/implementer_1";
const I2: &str = "mara/r/implementer_2";
const I3: &str = "mara/r/implementer_3";
const INTEGRATION: &str = "mara/r/integration";

/// Commits `file` on `branch` with `trailers` (without hooks), back on `main` after.
fn commit(r: &TestRepo, branch: &str, file: &str, trailers: &str) -> String {
    r.git(&["switch", "-q", branch]);
    std::fs::write(r.dir.join(file), format!("{file}\n")).expect("writing a file");
    r.git(&["add", file]);
    r.git(&["commit", "-q", "-m", &format!("add {file}"), "-m", trailers]);
    let c = r.git(&["rev-parse", "HEAD"]).trim().to_owned();
    r.git(&["switch", "-q", "main"]);
    c
}

fn trailers(task: &str, claim: &str, instance: &str) -> String {
    format!("Mara-Task: {task}\nMara-Claim: {claim}\nMara-Instance: {instance}")
}

/// `mara hook pre-push origin URL` with git's input line for pushing `branch`.
fn pre_push(r: &TestRepo, branch: &str) -> Out {
    let tip = r.git(&["rev-parse", branch]).trim().to_owned();
    let zero = "0".repeat(40);
    let mut child = r
        .mara_command(&["hook", "pre-push", "origin", "/nowhere"], &[], None)
        .stdin(Stdio::piped())
        .spawn()
        .expect("mara runs");
    let line = format!("refs/heads/{branch} {tip} refs/heads/{branch} {zero}\n");
    child
        .stdin
        .take()
        .expect("stdin is piped")
        .write_all(line.as_bytes())
        .expect("writing the hook's input");
    Out::from_output(child.wait_with_output().expect("mara ends"))
}

#[test]
fn work_under_a_lost_claim_is_fenced_and_forged_claims_too() {
    let r = TestRepo::new();
    // Another run of the same repository: its claims are no claims of run r.
    r.mara(&["init", "--run", "other"]).ok("init run other");
    r.mara(&["task", "add", "T1", "elsewhere"])
        .ok("add T1 to run other");
    r.mara_as("implementer#3", &["claim", "T1"])
        .ok("claim in run other");
    let other_run_claim = ref_tip(&r.dir, "other");
    r.mara(&["init", "--run", RUN, "--claim-timeout", "1"])
        .ok("init with a 1 s lease");
    r.mara(&["task", "add", "T1", "the api"]).ok("add T1");
    let not_a_claim = ref_tip(&r.dir, RUN);
    r.mara(&["task", "add", "T3", "the ui"]).ok("add T3");
    for b in [I1, I2, I3] {
        r.git(&["branch", b]);
    }

    r.mara_as("implementer#1", &["claim", "T1"]).ok("claim T1");
    let tok1 = ref_tip(&r.dir, RUN);
    let early = commit(&r, I1, "early.txt", &trailers("T1", &tok1, "implementer#1"));
    std::thread::sleep(Duration::from_millis(1300));
    r.mara_as("implementer#2", &["claim", "T1"])
        .ok("implementer#2 reclaims the expired T1");
    let tok2 = ref_tip(&r.dir, RUN);
    // The old holder goes on as if nothing happened.
    let late = commit(&r, I1, "late.txt", &trailers("T1", &tok1, "implementer#1"));
    // Then it takes another task: that work is good and lands.
    r.mara_as("implementer#1", &["claim", "T3"]).ok("claim T3");
    let tok3 = ref_tip(&r.dir, RUN);
    commit(&r, I1, "ui.txt", &trailers("T3", &tok3, "implementer#1"));
    r.mara_as("implementer#1", &["done", "T3"]).ok("done T3");
    // The new holder's work lands.
    commit(&r, I2, "api.txt", &trailers("T1", &tok2, "implementer#2"));
    r.mara_as("implementer#2", &["done", "T1"]).ok("done T1");

    // Forgeries on implementer#3's branch.
    let f_not_claim = commit(
        &r,
        I3,
        "f1.txt",
        &trailers("T1", &not_a_claim, "implementer#3"),
    );
    let f_task = commit(&r, I3, "f2.txt", &trailers("T1", &tok3, "implementer#1"));
    let f_inst = commit(&r, I3, "f3.txt", &trailers("T1", &tok2, "implementer#3"));
    let f_run = commit(
        &r,
        I3,
        "f4.txt",
        &trailers("T1", &other_run_claim, "implementer#3"),
    );
    let f_none = commit(
        &r,
        I3,
        "f5.txt",
        "Mara-Task: T1\nMara-Instance: implementer#3",
    );
    // No trailers at all: unattributed, merged, reported with its paths.
    commit(&r, I3, "plain.txt", "no trailers here");

    // The pre-push hook is installed on request only.
    r.mara(&["hooks", "install", "--pre-push"])
        .ok("install with pre-push");
    let hook = std::fs::read_to_string(r.dir.join(".git/hooks/pre-push")).expect("pre-push");
    assert!(hook.contains("mara hook pre-push \"$@\""), "{hook}");
    r.mara(&["hooks", "uninstall"]).ok("uninstall");
    assert!(!r.dir.join(".git/hooks/pre-push").exists());
    // The pre-push hook refuses to push the old holder's branch.
    let refused = pre_push(&r, I1);
    refused.expect_code(1, "pre-push of fenced commits");
    refused.stderr_has(&late[..10]).stderr_has("reclaimed T1");
    pre_push(&r, I2).ok("pre-push of good work");

    let out = r.mara(&["integrate"]);
    out.ok("integrate");
    let files = files_of(&r, INTEGRATION);
    for f in ["api.txt", "ui.txt", "plain.txt"] {
        assert!(files.contains(&f.to_owned()), "{f} lands: {files:?}");
    }
    for f in [
        "early.txt",
        "late.txt",
        "f1.txt",
        "f2.txt",
        "f3.txt",
        "f4.txt",
        "f5.txt",
    ] {
        assert!(!files.contains(&f.to_owned()), "{f} is fenced: {files:?}");
    }
    // Neither fenced commit is in the integration branch's history.
    let history = r.git(&["rev-list", INTEGRATION]);
    for c in [
        &early,
        &late,
        &f_not_claim,
        &f_task,
        &f_inst,
        &f_run,
        &f_none,
    ] {
        assert!(!history.contains(c.as_str()), "{c} is not merged");
    }
    // The instance branches did not move.
    assert!(r.git(&["rev-list", I1]).contains(&late));

    let j = report_json(&r);
    let fenced = j["fenced"].as_array().expect("fenced list");
    let lost = fenced
        .iter()
        .find(|w| w["claim"] == tok1.as_str())
        .expect("the lost claim's group");
    assert_eq!(lost["task"], "T1");
    assert_eq!(lost["instance"], "implementer#1");
    assert_eq!(lost["commits"], serde_json::json!([early, late]));
    assert!(
        lost["reason"].as_str().unwrap().contains("reclaimed T1"),
        "{lost}"
    );
    let reason_of = |c: &str| {
        fenced
            .iter()
            .find(|w| w["commits"].as_array().unwrap().iter().any(|x| x == c))
            .map(|w| w["reason"].as_str().unwrap().to_owned())
            .unwrap_or_else(|| panic!("{c} is fenced: {fenced:?}"))
    };
    assert!(reason_of(&f_not_claim).contains("is no claim of run r"));
    assert!(reason_of(&f_run).contains("is no claim of run r"));
    assert!(
        reason_of(&f_task).contains("claim of another task"),
        "{}",
        reason_of(&f_task)
    );
    assert!(reason_of(&f_inst).contains("was made by implementer#2, not by implementer#3"));
    assert!(reason_of(&f_none).contains("carries no Mara-Claim"));
    let un = j["unattributed"].as_array().expect("unattributed list");
    assert_eq!(un.len(), 1, "{un:?}");
    assert_eq!(un[0]["paths"], serde_json::json!(["plain.txt"]));
    let md = report_md(&r);
    assert!(md.contains("## Fenced (7)"), "{md}");
    assert!(md.contains("## Unattributed (1)"), "{md}");

    // Every done task is accounted for: its commits, their branches, integrated.
    let t1 = j["tasks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["task"] == "T1")
        .expect("T1's account");
    assert_eq!(t1["integrated"], true, "{t1}");
    let api = t1["commits"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["summary"] == "add api.txt")
        .expect("the new holder's commit");
    assert!(
        api["branches"]
            .as_array()
            .unwrap()
            .iter()
            .any(|b| b == INTEGRATION),
        "{api}"
    );
    assert!(md.contains("## Tasks (2)"), "{md}");
    // One fenced event per group; a re-run records none again.
    let events = events_of_type(&r, "fenced");
    assert_eq!(events.len(), fenced.len(), "{events:?}");
    r.mara(&["integrate"]).ok("re-run");
    assert_eq!(events_of_type(&r, "fenced").len(), fenced.len());
    r.verify_ok();
}

#[test]
fn a_release_and_a_forced_done_fence_the_holders_commits() {
    let r = TestRepo::with_run(RUN);
    r.mara(&["task", "add", "T1", "released"]).ok("add T1");
    r.mara(&["task", "add", "T2", "forced"]).ok("add T2");
    r.git(&["branch", I1]);
    r.mara_as("implementer#1", &["claim", "T1"]).ok("claim T1");
    let tok1 = ref_tip(&r.dir, RUN);
    commit(&r, I1, "t1.txt", &trailers("T1", &tok1, "implementer#1"));
    r.mara_as("implementer#1", &["release", "T1"])
        .ok("release T1");
    r.mara_as("implementer#1", &["claim", "T2"]).ok("claim T2");
    let tok2 = ref_tip(&r.dir, RUN);
    commit(&r, I1, "t2.txt", &trailers("T2", &tok2, "implementer#1"));
    r.mara_as("lead#1", &["done", "T2", "--force"])
        .ok("lead completes T2 by force");
    r.mara(&["integrate"]).ok("integrate");
    let files = files_of(&r, INTEGRATION);
    assert!(!files.contains(&"t1.txt".to_owned()), "{files:?}");
    assert!(!files.contains(&"t2.txt".to_owned()), "{files:?}");
    let j = report_json(&r);
    let reasons: Vec<&str> = j["fenced"]
        .as_array()
        .unwrap()
        .iter()
        .map(|w| w["reason"].as_str().unwrap())
        .collect();
    assert_eq!(reasons.len(), 2, "{reasons:?}");
    assert!(reasons[0].contains("released T1"), "{reasons:?}");
    assert!(reasons[1].contains("by force"), "{reasons:?}");
}
