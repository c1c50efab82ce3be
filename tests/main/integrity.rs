//! Recovery from a killed writer's lock file, and `mara verify` catching a ref that
//! was rewritten by hand.

use std::time::{Duration, SystemTime};

use crate::common::{git, newest_subject, subjects, TestRepo};

#[test]
fn a_stale_ref_lock_is_removed_with_a_warning() {
    let run = "stale";
    let r = TestRepo::with_run(run);
    r.mara(&["task", "add", "T1", "x"]).ok("task add");
    let refs_dir = r.dir.join(".git").join("refs").join("mara");
    let lock = refs_dir.join(format!("{run}.lock"));
    let f = std::fs::File::create(&lock).expect("creating the lock file");
    f.set_modified(SystemTime::now() - Duration::from_secs(60))
        .expect("backdating the lock file");
    drop(f);
    let before = r.tip(run);

    let o = r.mara_as("implementer#1", &["claim", "T1"]);
    o.ok("claim with a stale lock in the way")
        .stderr_has("warning: removed a stale lock")
        .stderr_has(&format!("{run}.lock"));
    assert!(!lock.exists(), "the stale lock is gone");
    let leftovers: Vec<String> = std::fs::read_dir(&refs_dir)
        .expect("reading refs/mara")
        .map(|e| {
            e.expect("a directory entry")
                .file_name()
                .to_string_lossy()
                .into_owned()
        })
        .collect();
    assert_eq!(leftovers, [run], "only the ref is left in refs/mara");
    assert_ne!(r.tip(run), before);
    assert_eq!(newest_subject(&r.dir, run), "claim T1 by implementer#1");
    r.verify_ok();
}

/// The raw message of a commit (everything after the header).
fn message_of(dir: &std::path::Path, commit: &str) -> String {
    let raw = git(dir, &["cat-file", "commit", commit]);
    raw.split_once("\n\n")
        .expect("a commit has a header and a message")
        .1
        .to_owned()
}

/// Makes a commit with `tree`, parent `parent` and exactly `message`.
fn commit_tree(r: &TestRepo, tree: &str, parents: &[&str], message: &str) -> String {
    let msg_file = r.write_outside("tampered-message.txt", message);
    let mut args = vec!["commit-tree", tree];
    for p in parents {
        args.extend(["-p", p]);
    }
    let msg_file = msg_file.to_str().expect("a UTF-8 path").to_owned();
    args.extend(["-F", &msg_file]);
    git(&r.dir, &args).trim().to_owned()
}

#[test]
fn verify_detects_a_hand_rewritten_ref() {
    let run = "tamper";
    let refname = format!("refs/mara/{run}");
    let r = TestRepo::with_run(run);
    r.mara(&["task", "add", "T1", "x"]).ok("task add");
    r.mara_as("implementer#1", &["claim", "T1"]).ok("claim");
    r.verify_ok();
    let tip = r.tip(run);
    let parent = git(&r.dir, &["rev-parse", &format!("{tip}^")])
        .trim()
        .to_owned();
    let tree = git(&r.dir, &["rev-parse", &format!("{tip}^{{tree}}")])
        .trim()
        .to_owned();
    let message = message_of(&r.dir, &tip);
    assert!(message.contains("\"seq\":2"), "{message}");

    let tamper = |new: &str, what: &str, expected: &[&str]| {
        git(&r.dir, &["update-ref", &refname, new, &tip]);
        let o = r.mara(&["verify"]);
        o.expect_code(1, what)
            .stderr_has(&format!("{refname} is not sound"))
            .stderr_has(new);
        for e in expected {
            o.stderr_has(e);
        }
        git(&r.dir, &["update-ref", &refname, &tip, new]);
        r.verify_ok();
    };

    // The same event rebuilt by git commit-tree (another author and date) is
    // still a rewrite of what this clone saw: the tip no longer contains it. Writes
    // refuse to build on it; restoring the ref makes the run sound again.
    let same = commit_tree(&r, &tree, &[&parent], &message);
    git(&r.dir, &["update-ref", &refname, &same, &tip]);
    let o = r.mara(&["verify"]);
    o.expect_code(1, "a rebuilt tip")
        .stderr_has("was rewritten")
        .stderr_has(&tip);
    let o = r.mara_as("implementer#2", &["post", "note", "on a rewritten board"]);
    o.expect_code(1, "a write on a rewritten board")
        .stderr_has("was rewritten")
        .stderr_has(&format!("git update-ref {refname} {tip}"));
    assert_eq!(r.tip(run), same, "the refused write wrote nothing");
    git(&r.dir, &["update-ref", &refname, &tip, &same]);
    r.verify_ok();

    // A changed seq: the log has a gap.
    let seq5 = message
        .replace("\"seq\":2", "\"seq\":5")
        .replace("Mara-Seq: 2", "Mara-Seq: 5");
    let c = commit_tree(&r, &tree, &[&parent], &seq5);
    tamper(&c, "a changed seq", &["has seq 5 where 2 belongs"]);

    // A subject that does not match the event.
    let forged = message.replacen("claim T1 by implementer#1", "claim T1 by implementer#2", 1);
    assert_ne!(forged, message);
    let c = commit_tree(&r, &tree, &[&parent], &forged);
    tamper(
        &c,
        "a forged subject",
        &["has subject \"claim T1 by implementer#2\""],
    );

    // A tree with an extra file, built in a temporary index.
    let evil_tree = r.tree_with(&tip, "tasks/zz/EVIL.json", "{\"evil\": true}\n");
    assert_ne!(evil_tree, tree);
    let c = commit_tree(&r, &evil_tree, &[&parent], &message);
    tamper(
        &c,
        "an extra file in the tree",
        &["its tree does not match the replay of its event"],
    );

    // A second parent: an event has exactly one.
    let grandparent = git(&r.dir, &["rev-parse", &format!("{tip}~2")])
        .trim()
        .to_owned();
    let c = commit_tree(&r, &tree, &[&parent, &grandparent], &message);
    tamper(&c, "a merge commit", &["has 2 parents"]);

    // verify wrote nothing along the way.
    assert_eq!(r.tip(run), tip);
    assert_eq!(subjects(&r.dir, run).len(), 3);
}
