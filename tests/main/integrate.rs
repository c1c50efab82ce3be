//! `mara integrate` and `mara collect` on real repositories: clean merges, every
//! kind of conflict (content, delete/modify, binary), rename detection, re-runs,
//! `--branches`/`--into`, refusals that move nothing, and the output collector.

use std::path::{Path, PathBuf};

use serde_json::Value;

use crate::common::{blob, copy_seed, git, mktree, TestRepo};

const RUN: &str = "r";
const I1: &str = "mara/r/implementer_1";
const I2: &str = "mara/r/implementer_2";
const INTEGRATION: &str = "mara/r/integration";

/// A repository whose `main` holds `files` (besides the README), a run `r`, and the
/// branches `mara/r/implementer_1` and `mara/r/implementer_2` made from `main`.
fn setup(files: &[(&str, &[u8])]) -> TestRepo {
    let r = TestRepo::new();
    if !files.is_empty() {
        for (path, data) in files {
            write(&r.dir, path, data);
        }
        r.git(&["add", "-A"]);
        r.git(&["commit", "-q", "-m", "base files"]);
    }
    r.mara(&["init", "--run", RUN]).ok("mara init");
    r.git(&["branch", I1]);
    r.git(&["branch", I2]);
    r
}

fn write(dir: &Path, path: &str, data: &[u8]) {
    let p = dir.join(path);
    if let Some(parent) = p.parent() {
        std::fs::create_dir_all(parent).expect("creating a parent folder");
    }
    std::fs::write(&p, data).expect("writing a file");
}

/// The trailers an instance's commit carries.
fn trailers(task: &str, instance: &str) -> String {
    format!("Mara-Task: {task}\nMara-Instance: {instance}")
}

/// Switches the main worktree to `branch`, lets `change` edit it, commits everything
/// with `subject` and `trailers`, and switches back to `main`.
fn commit_on(r: &TestRepo, branch: &str, subject: &str, trailers: &str, change: impl FnOnce()) {
    r.git(&["switch", "-q", branch]);
    change();
    r.git(&["add", "-A"]);
    r.git(&["commit", "-q", "-m", subject, "-m", trailers]);
    r.git(&["switch", "-q", "main"]);
}

/// `git show REV:PATH`.
pub(crate) fn show(r: &TestRepo, rev: &str, path: &str) -> String {
    r.git(&["show", &format!("{rev}:{path}")])
}

/// The files of a commit's tree.
pub(crate) fn files_of(r: &TestRepo, rev: &str) -> Vec<String> {
    r.git(&["ls-tree", "-r", "--name-only", rev])
        .lines()
        .map(str::to_owned)
        .collect()
}

pub(crate) fn rev(r: &TestRepo, name: &str) -> String {
    r.git(&["rev-parse", name]).trim().to_owned()
}

fn branch_exists(r: &TestRepo, name: &str) -> bool {
    !r.git(&["branch", "--list", name]).trim().is_empty()
}

/// The merge commits of `range`, newest first.
fn merges(r: &TestRepo, range: &str) -> Vec<String> {
    r.git(&["rev-list", "--merges", range])
        .lines()
        .map(str::to_owned)
        .collect()
}

/// Every ref and what it points at.
pub(crate) fn all_refs(r: &TestRepo) -> String {
    r.git(&["for-each-ref", "--format=%(refname) %(objectname)"])
}

fn run_dir(r: &TestRepo) -> PathBuf {
    r.dir.join(".multi_agent_runs").join(RUN)
}

pub(crate) fn report_md(r: &TestRepo) -> String {
    std::fs::read_to_string(run_dir(r).join("integrator.md")).expect("integrator.md is written")
}

pub(crate) fn report_json(r: &TestRepo) -> Value {
    let text = std::fs::read_to_string(run_dir(r).join("integrator.json"))
        .expect("integrator.json is written");
    serde_json::from_str(&text).expect("integrator.json is one JSON value")
}

/// The events of `mara log --type T --json`.
pub(crate) fn events_of_type(r: &TestRepo, kind: &str) -> Vec<Value> {
    let o = r.mara(&["log", "--type", kind, "--json"]);
    o.ok("mara log --type --json");
    o.stdout
        .lines()
        .map(|l| serde_json::from_str(l).expect("each log line is one JSON value"))
        .collect()
}

/// The line `- on `BRANCH`: changed by ...` of the report.
fn changed_by_line(branch: &str, who: &str) -> String {
    format!("- on `{branch}`: changed by {who}\n")
}

/// Ten numbered lines; the conflict tests edit line 6.
pub(crate) fn ten_lines() -> String {
    (1..=10).map(|i| format!("line {i}\n")).collect()
}

fn ten_lines_with_6(new: &str) -> String {
    ten_lines().replace("line 6\n", &format!("{new}\n"))
}

// --- snapshots -------------------------------------------------------------------

#[allow(clippy::disallowed_methods)] // the test reads its own environment, not mara's
fn update_snapshots() -> bool {
    std::env::var_os("UPDATE_SNAPSHOTS").is_some_and(|v| v == "1")
}

/// Replaces every commit id of the repository (full, or abbreviated to 7 or more
/// hex digits) by `[OID]` and the temporary directory by `[ROOT]`.
fn normalise(r: &TestRepo, text: &str) -> String {
    let oids: Vec<String> = r
        .git(&["rev-list", "--all"])
        .lines()
        .map(str::to_owned)
        .collect();
    let text = text.replace(r.root().to_str().expect("a UTF-8 path"), "[ROOT]");
    let mut out = String::with_capacity(text.len());
    let mut word = String::new();
    let flush = |word: &mut String, out: &mut String| {
        let is_oid = (7..=40).contains(&word.len())
            && word.chars().all(|c| c.is_ascii_hexdigit())
            && oids.iter().any(|o| o.starts_with(word.as_str()));
        out.push_str(if is_oid { "[OID]" } else { word.as_str() });
        word.clear();
    };
    for c in text.chars() {
        if c.is_ascii_alphanumeric() {
            word.push(c);
        } else {
            flush(&mut word, &mut out);
            out.push(c);
        }
    }
    flush(&mut word, &mut out);
    out
}

/// Compares `actual` with `tests/snapshots/<name>`; writes the file instead when
/// `UPDATE_SNAPSHOTS=1` is set.
fn assert_snapshot(name: &str, actual: &str) {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests")
        .join("snapshots")
        .join(name);
    check_snapshot(&path, actual, update_snapshots());
}

/// Compares `actual` with the file at `path`, or writes it with `update`. A missing
/// file fails (issue 17): a check that writes its own expectation passes whatever
/// mara printed.
fn check_snapshot(path: &Path, actual: &str, update: bool) {
    if update {
        std::fs::create_dir_all(path.parent().expect("the snapshot has a folder"))
            .expect("creating tests/snapshots");
        std::fs::write(path, actual).expect("writing the snapshot");
        return;
    }
    let expected = match std::fs::read_to_string(path) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => panic!(
            "{} is missing; rerun with UPDATE_SNAPSHOTS=1 to write it, and review it\n--- actual\n{actual}",
            path.display()
        ),
        Err(e) => panic!("reading {}: {e}", path.display()),
    };
    assert!(
        expected == actual,
        "{} differs; rerun with UPDATE_SNAPSHOTS=1 if the change is intended\n--- expected\n{expected}\n--- actual\n{actual}",
        path.display()
    );
}

#[test]
fn a_missing_snapshot_fails_and_is_not_written() {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let path = dir.path().join("missing.md");
    let outcome = std::panic::catch_unwind(|| check_snapshot(&path, "text\n", false));
    let message = outcome.expect_err("a missing snapshot fails");
    let message = message
        .downcast_ref::<String>()
        .expect("the panic has a formatted message");
    assert!(message.contains("UPDATE_SNAPSHOTS=1"), "{message}");
    assert!(!path.exists(), "the check wrote its own expectation");
    check_snapshot(&path, "text\n", true);
    check_snapshot(&path, "text\n", false);
}

// --- integrate ------------------------------------------------------------------

#[test]
fn disjoint_changes_merge_cleanly_into_the_integration_branch() {
    let r = setup(&[]);
    commit_on(&r, I1, "api", &trailers("T1", "implementer#1"), || {
        write(&r.dir, "src/api.rs", b"fn api() {}\n")
    });
    commit_on(&r, I2, "ui", &trailers("T2", "implementer#2"), || {
        write(&r.dir, "src/ui.rs", b"fn ui() {}\n")
    });
    let main_before = rev(&r, "main");

    let o = r.mara(&["integrate"]);
    o.ok("integrate disjoint branches");
    assert!(
        o.stdout.contains("Every branch merged cleanly."),
        "{}",
        o.stdout
    );

    assert!(branch_exists(&r, INTEGRATION), "the integration branch");
    assert_eq!(show(&r, INTEGRATION, "src/api.rs"), "fn api() {}\n");
    assert_eq!(show(&r, INTEGRATION, "src/ui.rs"), "fn ui() {}\n");
    let ms = merges(&r, INTEGRATION);
    assert_eq!(ms.len(), 2, "one merge commit per branch");
    // Newest first: implementer_2's merge, then implementer_1's.
    for (m, (branch, instance, task)) in ms
        .iter()
        .zip([(I2, "implementer#2", "T2"), (I1, "implementer#1", "T1")])
    {
        let msg = r.git(&["log", "-1", "--format=%B", m]);
        assert!(
            msg.starts_with(&format!("merge {branch} into {INTEGRATION}\n")),
            "{msg}"
        );
        assert!(
            msg.contains(&format!("Merges the work of {instance} on {task}.")),
            "{msg}"
        );
        let t = r.git(&["log", "-1", "--format=%(trailers:only,unfold)", m]);
        assert_eq!(
            t.trim_end(),
            format!("Mara-Run: {RUN}\nMara-Instance: {instance}\nMara-Task: {task}"),
            "trailers of {msg}"
        );
        assert_eq!(rev(&r, &format!("{m}^2")), rev(&r, branch), "{msg}");
    }
    assert_eq!(
        rev(&r, &format!("{}^1", ms[1])),
        main_before,
        "starts at the base"
    );

    let md = report_md(&r);
    assert!(md.contains("Every branch merged cleanly."), "{md}");
    assert!(!md.contains("## Conflicts"), "{md}");
    for (b, i, t) in [(I1, "implementer#1", "T1"), (I2, "implementer#2", "T2")] {
        assert!(
            md.contains(&format!("| `{b}` | {i} | {t} | merged (")),
            "{md}"
        );
    }
    let json = report_json(&r);
    assert_eq!(json["run"], RUN);
    assert_eq!(json["into"], INTEGRATION);
    assert_eq!(json["tip"], rev(&r, INTEGRATION));
    let branches = json["branches"].as_array().expect("branches is a list");
    assert_eq!(branches.len(), 2, "{json}");
    for b in branches {
        assert_eq!(b["result"], "merged", "{json}");
        assert_eq!(b["conflicts"], serde_json::json!([]), "{json}");
    }
    assert_eq!(branches[0]["branch"], I1);
    assert_eq!(branches[0]["tasks"], serde_json::json!(["T1"]));
    assert_eq!(branches[1]["commit"], rev(&r, INTEGRATION));

    assert_eq!(rev(&r, "main"), main_before, "main is unchanged");
    assert_eq!(
        r.git(&["status", "--porcelain"]),
        "",
        "the report folder is ignored"
    );
    assert!(events_of_type(&r, "conflict").is_empty());
    let integration = events_of_type(&r, "integration");
    assert_eq!(integration.len(), 1, "{integration:?}");
    r.verify_ok();
}

#[test]
fn the_same_lines_edited_on_both_branches_are_reported_and_nothing_is_lost() {
    let r = setup(&[("notes.txt", ten_lines().as_bytes())]);
    commit_on(
        &r,
        I1,
        "six by one",
        &trailers("T1", "implementer#1"),
        || {
            write(
                &r.dir,
                "notes.txt",
                ten_lines_with_6("line 6 by implementer_1").as_bytes(),
            )
        },
    );
    commit_on(
        &r,
        I2,
        "six by two",
        &trailers("T2", "implementer#2"),
        || {
            write(
                &r.dir,
                "notes.txt",
                ten_lines_with_6("line 6 by implementer_2").as_bytes(),
            )
        },
    );
    let i2_tip = rev(&r, I2);
    let main_before = rev(&r, "main");

    let o = r.mara(&["integrate"]);
    o.expect_code(3, "integrate with a conflict")
        .stderr_has("1 file(s) in conflict; nothing was resolved silently");
    let md = report_md(&r);
    assert!(
        o.stdout.contains(&md),
        "stdout shows the report\nstdout:\n{}\nreport:\n{md}",
        o.stdout
    );

    // The report: the file, both diffs with line numbers, who touched it, what mara did.
    for needle in [
        "| `mara/r/implementer_1` | implementer#1 | T1 | merged (",
        "| `mara/r/implementer_2` | implementer#2 | T2 | 1 conflict(s), kept on `mara/r/conflicts/implementer_2` |",
        "## Conflicts (1)",
        "### `notes.txt` (content conflict) merging `mara/r/implementer_2`",
        &changed_by_line(INTEGRATION, "implementer#1 (T1)"),
        &changed_by_line(I2, "implementer#2 (T2)"),
        "- what mara did: left out of mara/r/integration; on mara/r/conflicts/implementer_2 with conflict markers",
        "--- base/notes.txt\n+++ mara/r/integration/notes.txt\n@@ -3,7 +3,7 @@\n",
        "--- base/notes.txt\n+++ mara/r/implementer_2/notes.txt\n@@ -3,7 +3,7 @@\n",
        "-line 6\n+line 6 by implementer_1\n",
        "-line 6\n+line 6 by implementer_2\n",
    ] {
        assert!(md.contains(needle), "the report lacks {needle:?}:\n{md}");
    }

    // The integration branch has implementer_1's change only.
    assert_eq!(
        show(&r, INTEGRATION, "notes.txt"),
        ten_lines_with_6("line 6 by implementer_1")
    );
    assert!(!r
        .git(&["log", "--format=%H", INTEGRATION])
        .contains(&i2_tip));

    // The conflicts branch: the same merge with diff3 markers, both sides and the base.
    let cb = "mara/r/conflicts/implementer_2";
    assert!(branch_exists(&r, cb));
    assert_eq!(rev(&r, &format!("{cb}^1")), rev(&r, INTEGRATION));
    assert_eq!(rev(&r, &format!("{cb}^2")), i2_tip);
    let marked = show(&r, cb, "notes.txt");
    let expected = ten_lines().replace(
        "line 6\n",
        "<<<<<<< mara/r/integration\nline 6 by implementer_1\n||||||| base\nline 6\n=======\nline 6 by implementer_2\n>>>>>>> mara/r/implementer_2\n",
    );
    assert_eq!(marked, expected, "the conflicted file on {cb}");

    let json = report_json(&r);
    let b2 = &json["branches"][1];
    assert_eq!(b2["branch"], I2);
    assert_eq!(b2["result"], "conflicts");
    assert_eq!(b2["conflict_branch"], cb);
    assert_eq!(b2["commit"], rev(&r, cb));
    let c = &b2["conflicts"][0];
    assert_eq!(c["path"], "notes.txt");
    assert_eq!(c["kind"], "content");
    assert_eq!(
        c["ours_by"]["instances"],
        serde_json::json!(["implementer#1"])
    );
    assert_eq!(c["theirs_by"]["tasks"], serde_json::json!(["T2"]));
    assert!(c["diff_theirs"]
        .as_str()
        .expect("a diff")
        .contains("+line 6 by implementer_2"));

    let events = events_of_type(&r, "conflict");
    assert_eq!(events.len(), 1, "{events:?}");
    let p = &events[0]["payload"];
    assert_eq!(p["file"], "notes.txt");
    assert_eq!(p["branch"], I2);
    assert_eq!(p["kind"], "content");
    assert_eq!(
        p["instances"],
        serde_json::json!(["implementer#1", "implementer#2"])
    );
    assert_eq!(p["tasks"], serde_json::json!(["T1", "T2"]));

    assert_eq!(rev(&r, "main"), main_before, "main is unchanged");
    r.verify_ok();
    assert_snapshot("integrate_conflict.md", &normalise(&r, &md));
}

/// Issue 13, part 8: a run with one instance branch. libgit2's merge base of one
/// commit failed ("at least two commits are required"); the branch is merged with a
/// merge commit from where it forked, as each of several branches is, and a branch
/// already contained is up to date.
#[test]
fn a_single_branch_is_merged_or_up_to_date() {
    let r = setup(&[]);
    r.git(&["branch", "-D", I2]);
    let main_before = rev(&r, "main");

    // A branch with nothing of its own: up to date, exit 0.
    let o = r.mara(&["integrate"]);
    o.ok("integrate one branch without commits");
    assert!(
        o.stdout
            .contains(&format!("| `{I1}` | implementer#1 | - | up to date |")),
        "{}",
        o.stdout
    );
    assert_eq!(rev(&r, INTEGRATION), main_before);
    r.git(&["branch", "-D", INTEGRATION]);

    // One branch ahead of main: merged, as one of several would be.
    commit_on(&r, I1, "api", &trailers("T1", "implementer#1"), || {
        write(&r.dir, "src/api.rs", b"fn api() {}\n")
    });
    let o = r.mara(&["integrate"]);
    o.ok("integrate one branch ahead");
    assert!(
        o.stdout.contains("Every branch merged cleanly."),
        "{}",
        o.stdout
    );
    let ms = merges(&r, INTEGRATION);
    assert_eq!(ms.len(), 1, "one merge commit");
    assert_eq!(
        rev(&r, &format!("{}^1", ms[0])),
        main_before,
        "starts at the fork"
    );
    assert_eq!(rev(&r, &format!("{}^2", ms[0])), rev(&r, I1));
    assert_eq!(show(&r, INTEGRATION, "src/api.rs"), "fn api() {}\n");
    assert_eq!(report_json(&r)["branches"][0]["result"], "merged");

    // Again: the branch is contained now.
    let tip = rev(&r, INTEGRATION);
    let o = r.mara(&["integrate"]);
    o.ok("integrate a contained branch");
    assert!(o.stdout.contains("up to date"), "{}", o.stdout);
    assert_eq!(rev(&r, INTEGRATION), tip, "nothing moved");

    // Into an existing branch that lacks it, named with --branches and --into.
    r.git(&["branch", "candidate", "main"]);
    r.mara(&["integrate", "--branches", I1, "--into", "candidate"])
        .ok("integrate one branch into an existing one");
    assert_eq!(merges(&r, "candidate").len(), 1);
    assert_eq!(show(&r, "candidate", "src/api.rs"), "fn api() {}\n");
    r.verify_ok();
}

#[test]
fn edit_versus_delete_keeps_the_modified_file_on_the_conflicts_branch() {
    let base = "keep me\nor not\n";
    let r = setup(&[("doc.txt", base.as_bytes())]);
    commit_on(&r, I1, "edit doc", &trailers("T1", "implementer#1"), || {
        write(&r.dir, "doc.txt", b"keep me\nedited by implementer_1\n")
    });
    commit_on(&r, I2, "drop doc", &trailers("T2", "implementer#2"), || {
        r.git(&["rm", "-q", "doc.txt"]);
    });

    let o = r.mara(&["integrate"]);
    o.expect_code(3, "edit vs delete")
        .stderr_has("1 file(s) in conflict");
    let md = report_md(&r);
    for needle in [
        "### `doc.txt` (delete/modify conflict) merging `mara/r/implementer_2`",
        "the modified file is kept",
        "+edited by implementer_1\n",
        "+++ mara/r/implementer_2/doc.txt\n@@ -1,2 +0,0 @@\n-keep me\n-or not\n",
        &changed_by_line(I2, "implementer#2 (T2)"),
    ] {
        assert!(md.contains(needle), "the report lacks {needle:?}:\n{md}");
    }
    let cb = "mara/r/conflicts/implementer_2";
    assert_eq!(
        show(&r, cb, "doc.txt"),
        "keep me\nedited by implementer_1\n"
    );
    assert_eq!(
        show(&r, INTEGRATION, "doc.txt"),
        "keep me\nedited by implementer_1\n"
    );
    let c = &report_json(&r)["branches"][1]["conflicts"][0];
    assert_eq!(c["kind"], "delete/modify");
    let events = events_of_type(&r, "conflict");
    assert_eq!(events.len(), 1, "{events:?}");
    assert_eq!(events[0]["payload"]["kind"], "delete/modify");
    r.verify_ok();
}

#[test]
fn delete_versus_edit_keeps_the_modified_file_too() {
    // The other order: the integration side deleted, the merged branch edited.
    let r = setup(&[("doc.txt", b"keep me\nor not\n")]);
    commit_on(&r, I1, "drop doc", &trailers("T1", "implementer#1"), || {
        r.git(&["rm", "-q", "doc.txt"]);
    });
    commit_on(&r, I2, "edit doc", &trailers("T2", "implementer#2"), || {
        write(&r.dir, "doc.txt", b"keep me\nedited by implementer_2\n")
    });

    r.mara(&["integrate"]).expect_code(3, "delete vs edit");
    let cb = "mara/r/conflicts/implementer_2";
    assert_eq!(
        show(&r, cb, "doc.txt"),
        "keep me\nedited by implementer_2\n"
    );
    assert!(!files_of(&r, INTEGRATION).contains(&"doc.txt".to_owned()));
    assert_eq!(
        report_json(&r)["branches"][1]["conflicts"][0]["kind"],
        "delete/modify"
    );
}

#[test]
fn a_binary_file_changed_on_both_sides_keeps_both_versions() {
    let r = setup(&[("logo.bin", b"PNG\0base\0bytes")]);
    commit_on(&r, I1, "logo one", &trailers("T1", "implementer#1"), || {
        write(&r.dir, "logo.bin", b"PNG\0one\0bytes")
    });
    commit_on(&r, I2, "logo two", &trailers("T2", "implementer#2"), || {
        write(&r.dir, "logo.bin", b"PNG\0two\0bytes")
    });

    let o = r.mara(&["integrate"]);
    o.expect_code(3, "binary conflict")
        .stderr_has("1 file(s) in conflict");
    let md = report_md(&r);
    for needle in [
        "### `logo.bin` (binary conflict) merging `mara/r/implementer_2`",
        "Binary file: no text diff; both versions are kept.",
        "ours is logo.bin, theirs logo.bin~implementer_2",
    ] {
        assert!(md.contains(needle), "the report lacks {needle:?}:\n{md}");
    }
    assert!(
        !md.contains("```diff"),
        "no text diff for binary files:\n{md}"
    );
    let c = &report_json(&r)["branches"][1]["conflicts"][0];
    assert_eq!(c["kind"], "binary");
    assert_eq!(c["diff_ours"], "");
    assert_eq!(c["diff_theirs"], "");

    let cb = "mara/r/conflicts/implementer_2";
    assert_eq!(show(&r, cb, "logo.bin"), "PNG\0one\0bytes");
    assert_eq!(show(&r, cb, "logo.bin~implementer_2"), "PNG\0two\0bytes");
    assert_eq!(show(&r, INTEGRATION, "logo.bin"), "PNG\0one\0bytes");
    let events = events_of_type(&r, "conflict");
    assert_eq!(events.len(), 1, "{events:?}");
    assert_eq!(events[0]["payload"]["kind"], "binary");
    assert_eq!(events[0]["payload"]["file"], "logo.bin");
}

#[test]
fn a_rename_on_one_side_and_an_edit_on_the_other_merge() {
    let base: String = (1..=12).map(|i| format!("row {i}\n")).collect();
    let edited = base.replace("row 4\n", "row four, edited\n");
    let r = setup(&[("a.txt", base.as_bytes())]);
    commit_on(&r, I1, "rename", &trailers("T1", "implementer#1"), || {
        r.git(&["mv", "a.txt", "b.txt"]);
    });
    commit_on(&r, I2, "edit", &trailers("T2", "implementer#2"), || {
        write(&r.dir, "a.txt", edited.as_bytes())
    });

    r.mara(&["integrate"]).ok("rename + edit");
    let files = files_of(&r, INTEGRATION);
    assert!(files.contains(&"b.txt".to_owned()), "{files:?}");
    assert!(!files.contains(&"a.txt".to_owned()), "{files:?}");
    assert_eq!(show(&r, INTEGRATION, "b.txt"), edited);
    assert_eq!(merges(&r, INTEGRATION).len(), 2);
    assert!(events_of_type(&r, "conflict").is_empty());
}

#[test]
fn a_rerun_merges_only_the_new_commits() {
    let r = setup(&[]);
    commit_on(&r, I1, "one", &trailers("T1", "implementer#1"), || {
        write(&r.dir, "one.txt", b"one\n")
    });
    commit_on(&r, I2, "two", &trailers("T2", "implementer#2"), || {
        write(&r.dir, "two.txt", b"two\n")
    });
    r.mara(&["integrate"]).ok("first integration");
    let first = rev(&r, INTEGRATION);

    commit_on(&r, I1, "one more", &trailers("T3", "implementer#1"), || {
        write(&r.dir, "one-more.txt", b"more\n")
    });
    let o = r.mara(&["integrate"]);
    o.ok("second integration");
    let second = rev(&r, INTEGRATION);
    assert_ne!(first, second);
    let new_merges = merges(&r, &format!("{first}..{second}"));
    assert_eq!(new_merges.len(), 1, "exactly one new merge commit");
    assert_eq!(new_merges[0], second);
    assert_eq!(rev(&r, &format!("{second}^1")), first);
    assert_eq!(rev(&r, &format!("{second}^2")), rev(&r, I1));
    let msg = r.git(&["log", "-1", "--format=%B", &second]);
    assert!(
        msg.starts_with(&format!("merge {I1} into {INTEGRATION}\n")),
        "{msg}"
    );
    assert!(msg.contains("Mara-Task: T3"), "only the new task: {msg}");
    assert!(!msg.contains("Mara-Task: T1"), "only the new task: {msg}");
    assert_eq!(show(&r, INTEGRATION, "one-more.txt"), "more\n");
    assert_eq!(show(&r, INTEGRATION, "two.txt"), "two\n");

    let md = report_md(&r);
    assert!(
        md.contains(&format!("| `{I2}` | implementer#2 | - | up to date |")),
        "{md}"
    );
    assert!(o.stdout.contains("up to date"), "{}", o.stdout);
    let json = report_json(&r);
    assert_eq!(json["base"], first);
    assert_eq!(json["branches"][0]["result"], "merged");
    assert_eq!(json["branches"][1]["result"], "up to date");

    // A third run with nothing new moves nothing.
    let refs = all_refs(&r);
    r.mara(&["integrate"]).ok("third integration");
    assert_eq!(all_refs(&r), refs);
    r.verify_ok();
}

#[test]
fn branches_and_into_merge_exactly_those_and_errors_move_nothing() {
    let r = setup(&[]);
    commit_on(&r, I1, "one", &trailers("T1", "implementer#1"), || {
        write(&r.dir, "one.txt", b"one\n")
    });
    r.git(&["branch", "feature-a", "main"]);
    r.git(&["branch", "feature-b", "main"]);
    commit_on(&r, "feature-a", "a", "Mara-Task: TA", || {
        write(&r.dir, "a.txt", b"a\n")
    });
    commit_on(&r, "feature-b", "b", "Mara-Task: TB", || {
        write(&r.dir, "b.txt", b"b\n")
    });

    r.mara(&[
        "integrate",
        "--branches",
        "feature-a,feature-b",
        "--into",
        "main-candidate",
    ])
    .ok("integrate --branches --into");
    let files = files_of(&r, "main-candidate");
    assert_eq!(
        files,
        ["README.md", "a.txt", "b.txt"],
        "exactly those branches"
    );
    let ms = merges(&r, "main-candidate");
    assert_eq!(ms.len(), 2);
    assert_eq!(rev(&r, &format!("{}^2", ms[0])), rev(&r, "feature-b"));
    assert_eq!(rev(&r, &format!("{}^2", ms[1])), rev(&r, "feature-a"));
    let msg = r.git(&["log", "-1", "--format=%B", &ms[1]]);
    assert!(
        msg.starts_with("merge feature-a into main-candidate\n"),
        "{msg}"
    );
    assert!(
        !branch_exists(&r, INTEGRATION),
        "the default branch is not made"
    );
    let json = report_json(&r);
    assert_eq!(json["into"], "main-candidate");

    // A branch that does not exist: an error, and no branch is created or moved.
    let refs = all_refs(&r);
    r.mara(&[
        "integrate",
        "--branches",
        &format!("{I1},no-such-branch"),
        "--into",
        "other-candidate",
    ])
    .expect_code(1, "a missing branch")
    .stderr_has("there is no branch no-such-branch");
    assert_eq!(all_refs(&r), refs, "nothing moved after a missing branch");

    // Into a branch another worktree has checked out: refused, nothing moved.
    let wt = r.root().join("busy-wt");
    git(
        &r.dir,
        &[
            "worktree",
            "add",
            "-q",
            wt.to_str().expect("a UTF-8 path"),
            "-b",
            "busy",
        ],
    );
    let refs = all_refs(&r);
    r.mara(&["integrate", "--into", "busy"])
        .expect_code(1, "into a checked-out branch")
        .stderr_has("busy is checked out in");
    assert_eq!(all_refs(&r), refs, "nothing moved for a checked-out --into");
    assert!(!branch_exists(&r, INTEGRATION));
    assert_eq!(git(&wt, &["status", "--porcelain"]), "");
    r.verify_ok();
}

#[test]
fn the_report_names_who_changed_a_file_without_instance_trailers() {
    let r = setup(&[("notes.txt", ten_lines().as_bytes())]);
    commit_on(&r, I1, "six by one", "Mara-Task: T1", || {
        write(&r.dir, "notes.txt", ten_lines_with_6("one").as_bytes())
    });
    commit_on(&r, I2, "six by two", "Mara-Task: T2", || {
        write(&r.dir, "notes.txt", ten_lines_with_6("two").as_bytes())
    });
    r.mara(&["integrate"])
        .expect_code(3, "integrate with a conflict");
    let md = report_md(&r);
    assert!(
        !md.contains("changed by  ("),
        "an empty instance list:\n{md}"
    );
}

// --- collect --------------------------------------------------------------------

#[test]
fn collect_copies_recorded_and_pattern_artifacts_and_records_them_once() {
    let r = setup(&[]);
    r.mara(&["task", "add", "T1", "the API"]).ok("task add T1");

    // implementer#1 works in a worktree of its branch and records its artifact.
    let wt = r.root().join("wt1");
    git(
        &r.dir,
        &[
            "worktree",
            "add",
            "-q",
            wt.to_str().expect("a UTF-8 path"),
            I1,
        ],
    );
    let as_i1 = [("MARA_INSTANCE", "implementer#1")];
    r.mara_in(&["claim", "T1"], &as_i1, Some(&wt))
        .ok("implementer#1 claims T1");
    write(&wt, "implementer_1.md", b"# API\n\ndone by implementer#1\n");
    git(&wt, &["add", "implementer_1.md"]);
    git(
        &wt,
        &[
            "commit",
            "-q",
            "-m",
            "report",
            "-m",
            &trailers("T1", "implementer#1"),
        ],
    );
    r.mara_in(
        &["done", "T1", "--artifact", "implementer_1.md"],
        &as_i1,
        Some(&wt),
    )
    .ok("done T1 with an artifact");

    // implementer#2 only commits the file the pattern names; nothing is recorded.
    commit_on(&r, I2, "report", "Mara-Instance: implementer#2", || {
        write(&r.dir, "implementer_2.md", b"# UI\n")
    });
    let artifacts_before = events_of_type(&r, "artifact").len();

    let o = r.mara(&["collect"]);
    o.ok("collect");
    assert!(o.stdout.contains("2 artifact(s) in "), "{}", o.stdout);
    let outputs = run_dir(&r).join("outputs");
    assert_eq!(
        std::fs::read_to_string(outputs.join("implementer_1.md")).expect("copied"),
        "# API\n\ndone by implementer#1\n"
    );
    assert_eq!(
        std::fs::read_to_string(outputs.join("implementer_2.md")).expect("copied"),
        "# UI\n"
    );

    let recorded: Value = serde_json::from_str(&r.git(&[
        "show",
        &format!("refs/mara/{RUN}:artifacts/implementer_2.json"),
    ]))
    .expect("the artifacts file is JSON");
    let list = recorded.as_array().expect("a list of artifacts");
    assert_eq!(list.len(), 1, "{recorded}");
    assert_eq!(list[0]["path"], "implementer_2.md");
    assert_eq!(list[0]["role_id"], "implementer");
    assert_eq!(list[0]["instance_id"], 2);
    let recorded1: Value = serde_json::from_str(&r.git(&[
        "show",
        &format!("refs/mara/{RUN}:artifacts/implementer_1.json"),
    ]))
    .expect("the artifacts file is JSON");
    assert_eq!(
        recorded1.as_array().expect("a list").len(),
        1,
        "implementer_1.md is not recorded twice: {recorded1}"
    );
    let artifacts = events_of_type(&r, "artifact");
    assert_eq!(
        artifacts.len(),
        artifacts_before + 1,
        "one new event: {artifacts:?}"
    );

    // A second collect copies again and records nothing new.
    let tip = r.tip(RUN);
    r.mara(&["collect"]).ok("second collect");
    assert_eq!(r.tip(RUN), tip, "no new event");
    assert_eq!(events_of_type(&r, "artifact").len(), artifacts_before + 1);
    assert_eq!(
        r.git(&["status", "--porcelain"]),
        "",
        "the outputs folder is ignored"
    );
    r.verify_ok();
}

/// The entries of a tree (`mode`, `type`, `id`, `name`), as `git ls-tree` lists them.
fn entries_of(r: &TestRepo, tree: &str) -> Vec<(String, String, String, String)> {
    r.git(&["ls-tree", tree])
        .lines()
        .map(|l| {
            let (meta, name) = l.split_once('\t').expect("mode type id\tname");
            let mut m = meta.split(' ');
            let mut next = || m.next().expect("a field").to_owned();
            (next(), next(), next(), name.to_owned())
        })
        .collect()
}

/// A commit on `branch` (made from `main`) whose tree is `main`'s plus `entries`,
/// written with git plumbing as a hostile instance would.
fn plumb_branch(r: &TestRepo, branch: &str, entries: &[(&str, &str, &str, &str)]) {
    let mut all = entries_of(r, "main");
    all.extend(
        entries
            .iter()
            .map(|(a, b, c, d)| ((*a).into(), (*b).into(), (*c).into(), (*d).into())),
    );
    let tree = mktree(&r.dir, &all);
    let commit = r
        .git(&["commit-tree", &tree, "-p", "main", "-m", "hostile tree"])
        .trim()
        .to_owned();
    r.git(&["update-ref", &format!("refs/heads/{branch}"), &commit]);
}

/// Every file below `dir`, relative, sorted (links listed, not followed).
fn files_below(dir: &Path) -> Vec<String> {
    let mut out = vec![];
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(rd) = std::fs::read_dir(&d) else {
            continue;
        };
        for e in rd {
            let e = e.expect("a directory entry");
            let ft = e.file_type().expect("a file type");
            if ft.is_dir() {
                stack.push(e.path());
            } else {
                out.push(
                    e.path()
                        .strip_prefix(dir)
                        .expect("below dir")
                        .display()
                        .to_string(),
                );
            }
        }
    }
    out.sort();
    out
}

/// Issue 13, part 1: on a branch, the file the pattern names as a symbolic link or
/// a submodule, and a folder chain through `..` entries (which `git mktree` takes),
/// are skipped with a warning naming branch and path; nothing is written outside
/// `outputs/`, and the repository's hooks stay as they were.
#[test]
fn collect_skips_links_submodules_and_escaping_tree_entries() {
    let r = setup(&[]);
    let hooks_before = files_below(&r.dir.join(".git").join("hooks"));
    let head = rev(&r, "main");
    let target = blob(&r.dir, b"../../../../.git/hooks/post-commit");
    plumb_branch(&r, I1, &[("120000", "blob", &target, "implementer_1.md")]);
    plumb_branch(&r, I2, &[("160000", "commit", &head, "implementer_2.md")]);

    let o = r.mara(&["collect"]);
    o.ok("collect with hostile branches");
    o.stderr_has(&format!("branch {I1}: implementer_1.md is a symbolic link"))
        .stderr_has(&format!("branch {I2}: implementer_2.md is a submodule"));
    assert!(o.stdout.contains("no artifacts found"), "{}", o.stdout);
    assert!(files_below(&run_dir(&r).join("outputs")).is_empty());
    assert_eq!(files_below(&r.dir.join(".git").join("hooks")), hooks_before);
    assert!(events_of_type(&r, "artifact").is_empty());

    // A recorded artifact whose path climbs out through `..` entries of the
    // branch's tree, on a board forged with plumbing: refused by its path, before
    // any lookup in the tree.
    let payload = blob(&r.dir, b"#!/bin/sh\necho pwned > \"$HOME/pwned\"\n");
    let mut inner = mktree(&r.dir, &[("100755", "blob", &payload, "post-commit")]);
    inner = mktree(&r.dir, &[("040000", "tree", &inner, "hooks")]);
    inner = mktree(&r.dir, &[("040000", "tree", &inner, ".git")]);
    for _ in 0..4 {
        inner = mktree(&r.dir, &[("040000", "tree", &inner, "..")]);
    }
    plumb_branch(&r, I1, &[("040000", "tree", &inner, "b")]);
    let evil = "b/../../../../.git/hooks/post-commit";
    let tip = r.tip(RUN);
    let board_tree = r.git(&["rev-parse", &format!("{tip}^{{tree}}")]);
    let record = blob(
        &r.dir,
        serde_json::json!([{"role_id": "implementer", "instance_id": 1, "path": evil}])
            .to_string()
            .as_bytes(),
    );
    let artifacts = mktree(&r.dir, &[("100644", "blob", &record, "implementer_1.json")]);
    let mut entries: Vec<_> = entries_of(&r, board_tree.trim())
        .into_iter()
        .filter(|e| e.3 != "artifacts")
        .collect();
    entries.push((
        "040000".into(),
        "tree".into(),
        artifacts,
        "artifacts".into(),
    ));
    let forged_tree = mktree(&r.dir, &entries);
    let event = serde_json::json!({
        "seq": 1, "ts": "2026-01-01T00:00:00Z", "sender": "implementer#1", "type": "artifact",
        "payload": {"instance": "implementer#1", "path": evil},
    });
    let msg = format!(
        "artifact by implementer#1\n\n{event}\n\nMara-Run: {RUN}\nMara-Seq: 1\nMara-Instance: implementer#1\n"
    );
    let forged = r
        .git(&["commit-tree", &forged_tree, "-p", &tip, "-m", &msg])
        .trim()
        .to_owned();
    r.git(&["update-ref", &format!("refs/mara/{RUN}"), &forged, &tip]);

    let o = r.mara(&["collect"]);
    // Whether the board's reader refuses the forged event (exit 1) or collect
    // skips the path (exit 0), nothing may be written outside outputs/.
    if o.code == 0 {
        o.stderr_has(evil).stderr_has("'..'");
    } else {
        o.expect_code(1, "collect on a forged board");
    }
    assert_eq!(files_below(&r.dir.join(".git").join("hooks")), hooks_before);
    assert!(files_below(&run_dir(&r).join("outputs")).is_empty());
    assert!(!r.home.join("pwned").exists());
    assert_eq!(
        r.git(&["status", "--porcelain"]),
        "",
        "wrote into the work tree"
    );
}

/// Issue 13, part 1: a symbolic link planted anywhere on the way to `outputs/`
/// refuses the collect before anything is written; a link where a copied file goes
/// is replaced, never followed. `export`, `integrate` and `run` refuse the same way.
#[test]
fn collect_export_integrate_and_run_never_write_through_a_planted_link() {
    let r = setup(&[]);
    r.mara(&["task", "add", "T1", "notes"]).ok("task add");
    commit_on(&r, I1, "report", "Mara-Instance: implementer#1", || {
        write(&r.dir, "implementer_1.md", b"# one\n")
    });
    commit_on(&r, I2, "notes", "Mara-Instance: implementer#2", || {
        write(&r.dir, "docs/notes.md", b"notes\n")
    });
    write(&r.dir, "docs/notes.md", b"notes\n");
    // `done` wants its artifact committed; the commit is taken back afterwards.
    r.git(&["add", "docs/notes.md"]);
    r.git(&["commit", "-q", "-m", "notes"]);
    r.mara_as("implementer#2", &["claim", "T1"]).ok("claim");
    r.mara_as(
        "implementer#2",
        &["done", "T1", "--artifact", "docs/notes.md"],
    )
    .ok("done with an artifact");
    r.git(&["reset", "-q", "--hard", "HEAD~1"]);
    let _ = std::fs::remove_dir_all(r.dir.join("docs"));
    let outside = r.root().join("outside");
    std::fs::create_dir_all(&outside).expect("mkdir outside");
    let runs = r.dir.join(".multi_agent_runs");
    let outputs = run_dir(&r).join("outputs");

    let planted: [(&str, PathBuf); 4] = [
        ("outputs/implementer_2", outputs.join("implementer_2")),
        ("outputs", outputs.clone()),
        (".multi_agent_runs/<run>", run_dir(&r)),
        (".multi_agent_runs", runs.clone()),
    ];
    for (what, link) in &planted {
        let _ = std::fs::remove_dir_all(&runs).or_else(|_| std::fs::remove_file(&runs));
        std::fs::create_dir_all(link.parent().expect("a parent")).expect("mkdir");
        std::os::unix::fs::symlink(&outside, link).expect("planting a link");
        let tip = r.tip(RUN);
        let o = r.mara(&["collect"]);
        o.expect_code(1, &format!("collect through a link at {what}"))
            .stderr_has("is a symbolic link")
            .stderr_has(&link.display().to_string());
        assert!(files_below(&outside).is_empty(), "{what}: wrote outside");
        assert_eq!(r.tip(RUN), tip, "{what}: recorded an artifact");
        assert!(
            !outputs.join("implementer_1.md").exists() || *what == "outputs/implementer_2",
            "{what}"
        );
        if *what == ".multi_agent_runs" {
            let refs = all_refs(&r);
            let config = copy_seed(&r);
            r.mara(&[
                "--run",
                "r2",
                "run",
                "--config",
                config.to_str().expect("UTF-8"),
            ])
            .expect_code(1, "run through a link at .multi_agent_runs")
            .stderr_has("is a symbolic link");
            assert!(files_below(&outside).is_empty(), "run wrote outside");
            assert_eq!(all_refs(&r), refs, "run wrote a ref");
        }
        // export and integrate write into the run's folder, not outputs/.
        if what.starts_with(".multi_agent_runs") {
            for args in [&["export"][..], &["integrate"][..]] {
                let refs = all_refs(&r);
                r.mara(args)
                    .expect_code(1, &format!("{args:?} through a link at {what}"))
                    .stderr_has("is a symbolic link");
                assert!(
                    files_below(&outside).is_empty(),
                    "{what}: {args:?} wrote outside"
                );
                assert_eq!(all_refs(&r), refs, "{what}: {args:?} moved a ref");
            }
        }
    }
    // With outputs/implementer_2 a link, nothing at all was copied.
    std::fs::remove_file(&runs).expect("removing the planted link");

    // A link where a copy goes is replaced by the file; its target is untouched.
    std::fs::create_dir_all(&outputs).expect("mkdir outputs");
    let victim = outside.join("victim");
    std::os::unix::fs::symlink(&victim, outputs.join("implementer_1.md")).expect("ln");
    r.mara(&["collect"])
        .ok("collect over a link at a destination");
    assert!(!victim.exists(), "the link was followed");
    let meta = std::fs::symlink_metadata(outputs.join("implementer_1.md")).expect("stat");
    assert!(meta.file_type().is_file());
    assert_eq!(
        std::fs::read_to_string(outputs.join("implementer_1.md")).expect("read"),
        "# one\n"
    );
    assert_eq!(
        std::fs::read_to_string(outputs.join("implementer_2/docs/notes.md")).expect("read"),
        "notes\n"
    );

    // A folder where a copy goes: refused before anything is written.
    std::fs::remove_dir_all(&outputs).expect("clearing outputs");
    std::fs::create_dir_all(outputs.join("implementer_1.md").join("x")).expect("mkdir");
    let tip = r.tip(RUN);
    r.mara(&["collect"])
        .expect_code(1, "collect onto a folder")
        .stderr_has("is a folder where implementer#1's artifact implementer_1.md goes");
    assert!(
        !outputs.join("implementer_2").exists(),
        "copied before refusing"
    );
    assert_eq!(r.tip(RUN), tip);
    r.verify_ok();
}

const I3: &str = "mara/r/implementer_3";

/// Branches 1..3 where pairs (1,2) and (2,3) clash and (1,3) do not: 1 and 2 edit line
/// 3 of `x.txt`, 2 and 3 line 7 of `y.txt`.
pub(crate) fn three_branches() -> TestRepo {
    let r = setup(&[
        ("x.txt", ten_lines().as_bytes()),
        ("y.txt", ten_lines().as_bytes()),
    ]);
    r.git(&["branch", I3]);
    let edit = |line: usize, by: &str| {
        ten_lines()
            .lines()
            .enumerate()
            .map(|(i, l)| {
                if i + 1 == line {
                    format!("{l} by {by}\n")
                } else {
                    format!("{l}\n")
                }
            })
            .collect::<String>()
    };
    let d = r.dir.clone();
    commit_on(&r, I1, "x by one", "", || {
        write(&d, "x.txt", edit(3, "one").as_bytes())
    });
    commit_on(&r, I2, "x and y by two", "", || {
        write(&d, "x.txt", edit(3, "two").as_bytes());
        write(&d, "y.txt", edit(7, "two").as_bytes());
    });
    commit_on(&r, I3, "y by three", "", || {
        write(&d, "y.txt", edit(7, "three").as_bytes())
    });
    r
}

#[test]
fn the_matrix_names_exactly_the_clashing_pairs_and_the_order_merges_around_them() {
    let r = three_branches();
    let before = all_refs(&r);
    let plan = r.mara(&["integrate", "--plan", "--json"]);
    plan.ok("integrate --plan");
    assert_eq!(all_refs(&r), before, "--plan moves nothing");
    assert!(
        !run_dir(&r).join("integrator.json").exists(),
        "--plan writes nothing"
    );
    let j: Value = serde_json::from_str(&plan.stdout).expect("--plan --json is JSON");
    let pairs: Vec<(String, String)> = j["matrix"]["clashes"]
        .as_array()
        .expect("clashes")
        .iter()
        .map(|c| {
            (
                c["a"].as_str().unwrap().to_owned(),
                c["b"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    assert_eq!(
        pairs,
        [
            (I1.to_owned(), I2.to_owned()),
            (I2.to_owned(), I3.to_owned())
        ],
        "exactly (1,2) and (2,3) clash"
    );
    let c12 = &j["matrix"]["clashes"][0];
    assert_eq!(c12["files"][0]["path"], "x.txt");
    assert_eq!(c12["files"][0]["kind"], "content");
    assert_eq!(c12["files"][0]["hunks"][0]["base"]["start"], 3);
    assert_eq!(
        c12["a_by"]["instances"],
        serde_json::json!(["implementer#1"])
    );
    assert_eq!(
        c12["b_by"]["instances"],
        serde_json::json!(["implementer#2"])
    );
    assert_eq!(c12["base"], rev(&r, "main"));
    assert_eq!(j["matrix"]["order"], serde_json::json!([I1, I3, I2]));
    let text = r.mara(&["integrate", "--plan"]);
    assert!(
        text.stdout.contains(&format!("{I1} x {I2}")),
        "{}",
        text.stdout
    );
    assert!(
        text.stdout
            .contains("x.txt (content): lines base 3-3 / 3-3 / 3-3"),
        "{}",
        text.stdout
    );

    // The chosen order merges 1 and 3 and leaves 2 in conflict.
    let out = r.mara(&["integrate"]);
    out.expect_code(3, "one branch in conflict");
    let j = report_json(&r);
    let results: Vec<(String, String)> = j["branches"]
        .as_array()
        .unwrap()
        .iter()
        .map(|b| {
            (
                b["branch"].as_str().unwrap().to_owned(),
                b["result"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    assert_eq!(
        results,
        [
            (I1.to_owned(), "merged".to_owned()),
            (I3.to_owned(), "merged".to_owned()),
            (I2.to_owned(), "conflicts".to_owned())
        ]
    );
    assert_eq!(j["matrix"]["order"], serde_json::json!([I1, I3, I2]));
    let md = report_md(&r);
    assert!(md.contains("## Merge order"), "{md}");
    assert!(md.contains("clash with nothing first"), "{md}");
}

/// Switches to `branch`, writes `files`, commits as `who`, switches back.
pub(crate) fn resolve_on(
    r: &TestRepo,
    branch: &str,
    files: &[(&str, String)],
    who: &str,
) -> String {
    r.git(&["switch", "-q", branch]);
    for (f, text) in files {
        write(&r.dir, f, text.as_bytes());
    }
    r.git(&["add", "-A"]);
    r.git(&[
        "commit",
        "-q",
        "-m",
        "resolve",
        "-m",
        &format!("Mara-Instance: {who}"),
    ]);
    let c = rev(r, "HEAD");
    r.git(&["switch", "-q", "main"]);
    c
}

#[test]
fn a_conflict_becomes_a_resolve_task_and_its_resolution_merges_on_continue() {
    let r = three_branches();
    r.mara(&["integrate"]).expect_code(3, "branch 2 conflicts");
    let cb = "mara/r/conflicts/implementer_2";
    // One resolve task for the integrator role, with both sides and the hunks.
    let t = r.task("resolve-implementer_2");
    assert_eq!(t["role"], "integrator", "{t}");
    let body = t["body"].as_str().expect("a body");
    assert!(body.contains(&format!("git switch {cb}")), "{body}");
    assert!(body.contains("x.txt") && body.contains("y.txt"), "{body}");
    assert!(
        body.contains("line 3 by one") && body.contains("line 3 by two"),
        "{body}"
    );
    assert!(body.contains("- hunk: base lines"), "{body}");
    // integrator.md names each conflict's base commit next to its hunks.
    let mb = r.git(&["merge-base", I2, INTEGRATION]);
    let md = report_md(&r);
    let base_line = format!("- base commit: `{}`\n- hunk: base lines ", &mb[..10]);
    assert_eq!(md.matches(&base_line).count(), 2, "x.txt and y.txt: {md}");
    assert!(
        body.contains(&format!("- base commit: `{}`", mb.trim())),
        "{body}"
    );
    // The conflicts branch has diff3 markers (with the base).
    let x = show(&r, cb, "x.txt");
    assert!(x.contains("<<<<<<< ") && x.contains("||||||| base"), "{x}");
    // A re-run adds no second task.
    r.mara(&["integrate"]).expect_code(3, "still in conflict");
    assert!(r.board()["tasks"]
        .as_array()
        .map(|ts| ts
            .iter()
            .filter(|t| t["id"].as_str().unwrap().starts_with("resolve-"))
            .count()
            == 1)
        .unwrap_or(true));

    // Half a resolution: x.txt fixed, markers left in y.txt.
    let fixed_x = ten_lines().replace("line 3\n", "line 3 by one and two\n");
    let half = resolve_on(&r, cb, &[("x.txt", fixed_x.clone())], "integrator#1");
    // The resolve task is not done: the resolution waits for it, naming it and
    // who holds it (nobody, then the integrator), and moves nothing.
    let waits = |holder: &str| {
        let before = all_refs(&r);
        let waiting = r.mara(&["integrate", "--continue"]);
        waiting.expect_code(3, "its resolve task is not done");
        waiting
            .stderr_has("resolve-implementer_2")
            .stderr_has(holder);
        assert_eq!(all_refs(&r), before, "waiting moves nothing");
    };
    waits("not claimed yet");
    r.mara_as("integrator#1", &["claim", "resolve-implementer_2"])
        .ok("the integrator claims it");
    waits("held by integrator#1");
    r.mara_as("integrator#1", &["done", "resolve-implementer_2"])
        .ok("the integrator says it is done");
    let before = all_refs(&r);
    // Done, but markers are left: refused, naming the files.
    let refused = r.mara(&["integrate", "--continue"]);
    refused.expect_code(1, "markers left");
    refused.stderr_has(cb).stderr_has("y.txt");
    assert!(!refused.stderr.contains("x.txt"), "{}", refused.stderr);
    assert_eq!(all_refs(&r), before, "a refusal moves nothing");
    // A plain re-run does not move the resolution either, and says what is left.
    r.mara(&["integrate"]);
    assert_eq!(rev(&r, cb), half, "the resolution branch is never moved");
    assert!(report_md(&r).contains("conflict markers are left in y.txt"));

    // The rest of the resolution: it merges on --continue.
    let fixed_y = ten_lines().replace("line 7\n", "line 7 by two and three\n");
    resolve_on(&r, cb, &[("y.txt", fixed_y.clone())], "integrator#1");
    r.mara(&["integrate", "--continue"])
        .ok("the resolution merges");
    assert_eq!(show(&r, INTEGRATION, "x.txt"), fixed_x);
    assert_eq!(show(&r, INTEGRATION, "y.txt"), fixed_y);
    for b in [I1, I2, I3] {
        assert!(
            r.git(&["merge-base", "--is-ancestor", b, INTEGRATION])
                .is_empty(),
            "{b} is in the integration branch"
        );
    }
    let resolved = events_of_type(&r, "resolved");
    assert_eq!(resolved.len(), 1, "{resolved:?}");
    assert_eq!(resolved[0]["payload"]["branch"], cb);
    assert_eq!(resolved[0]["payload"]["by"], "integrator#1");
    let md = report_md(&r);
    assert!(
        md.contains(&format!("`{cb}`: resolved by integrator#1")),
        "{md}"
    );
    let j = report_json(&r);
    assert_eq!(j["resolutions"][0]["by"], "integrator#1");
    // The HTML report lists each conflicted file once, resolved, and by whom.
    let page = r.root().join("report.html");
    r.mara(&["report", "--html", page.to_str().unwrap()])
        .ok("report --html");
    let html = std::fs::read_to_string(&page).expect("the page");
    assert_eq!(
        html.matches("<td><code>x.txt</code></td>").count(),
        1,
        "x.txt once"
    );
    assert!(
        html.contains("resolved by integrator#1"),
        "resolved in the page"
    );
    assert!(!html.contains("<td>open</td>"), "no conflict left open");
    // Done: a further run is up to date and changes nothing.
    let tip = rev(&r, INTEGRATION);
    r.mara(&["integrate", "--continue"]).ok("nothing left");
    assert_eq!(rev(&r, INTEGRATION), tip);
    assert_eq!(events_of_type(&r, "resolved").len(), 1);

    // Someone force-moves the conflicts branch: it is reported, never merged.
    r.git(&["branch", "-f", cb, "main"]);
    let out = r.mara(&["integrate", "--continue"]);
    out.expect_code(1, "a moved conflicts branch");
    out.stderr_has("not built on the integrator's conflicted merge");
    assert_eq!(rev(&r, INTEGRATION), tip);
    r.verify_ok();
}

#[test]
fn a_crash_between_computing_and_moving_refs_leaves_the_old_tip_and_a_rerun_continues() {
    let r = three_branches();
    let before = all_refs(&r);
    let crashed = r.mara_in(
        &["integrate"],
        &[("MARA_CRASH_AT", "integrate-before-refs")],
        None,
    );
    assert_ne!(crashed.code, 0, "the injected crash stops it");
    assert_eq!(all_refs(&r), before, "no branch moved");
    assert!(
        events_of_type(&r, "conflict").is_empty(),
        "nothing recorded"
    );
    assert_eq!(
        r.git(&["status", "--porcelain"]),
        "",
        "no worktree or index touched"
    );
    // Crashed after the integration branch moved, before the conflicts branch.
    let crashed = r.mara_in(
        &["integrate"],
        &[("MARA_CRASH_AT", "integrate-between-refs")],
        None,
    );
    assert_ne!(crashed.code, 0);
    let tip = rev(&r, INTEGRATION);
    assert!(!branch_exists(&r, "mara/r/conflicts/implementer_2"));
    // The re-run continues: the integration branch is where it was, the conflict is
    // kept and becomes a task.
    r.mara(&["integrate"])
        .expect_code(3, "the conflict is left");
    assert_eq!(rev(&r, INTEGRATION), tip);
    assert!(branch_exists(&r, "mara/r/conflicts/implementer_2"));
    assert_eq!(r.task("resolve-implementer_2")["status"], "open");
    assert_eq!(r.git(&["status", "--porcelain"]), "");
    r.verify_ok();
}

#[test]
fn the_integrators_own_branch_is_merged_only_when_named() {
    let r = setup(&[]);
    r.git(&["branch", "mara/r/integrator_1"]);
    let d = r.dir.clone();
    commit_on(&r, "mara/r/integrator_1", "report", "", || {
        write(&d, "integrator.md", b"x\n")
    });
    commit_on(&r, I1, "work", "", || write(&d, "a.txt", b"a\n"));
    r.mara(&["integrate"]).ok("integrate");
    assert!(!files_of(&r, INTEGRATION).contains(&"integrator.md".to_owned()));
    r.mara(&["integrate", "--branches", "mara/r/integrator_1"])
        .ok("named");
    assert!(files_of(&r, INTEGRATION).contains(&"integrator.md".to_owned()));
}

#[test]
fn plan_check_lists_overlapping_paths_of_unordered_tasks_and_strict_refuses() {
    let r = TestRepo::with_run(RUN);
    let plan = r.write_outside(
        "plan.json",
        r#"[
  {"id": "A", "title": "api", "paths": ["src/api/**"]},
  {"id": "B", "title": "users", "paths": ["src/api/users.rs"]},
  {"id": "C", "title": "after A", "deps": ["A"], "paths": ["src/api/**"]},
  {"id": "D", "title": "ui", "paths": ["src/ui/"]}
]"#,
    );
    let p = plan.to_str().unwrap();
    let before = r.tip(RUN);
    let check = r.mara(&["plan", p, "--check", "--json"]);
    check.ok("plan --check");
    let j: Value = serde_json::from_str(&check.stdout).expect("JSON");
    let pairs: Vec<(String, String)> = j["overlaps"]
        .as_array()
        .unwrap()
        .iter()
        .map(|o| {
            (
                o["a"].as_str().unwrap().to_owned(),
                o["b"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    // A and C are ordered (C depends on A); D touches nothing of theirs.
    assert_eq!(
        pairs,
        [
            ("A".to_owned(), "B".to_owned()),
            ("B".to_owned(), "C".to_owned())
        ]
    );
    assert_eq!(r.tip(RUN), before, "--check adds nothing");
    let strict = r.mara(&["plan", p, "--strict"]);
    strict.expect_code(3, "--strict refuses overlaps");
    assert!(
        strict.stdout.contains("overlap: A and B"),
        "{}",
        strict.stdout
    );
    assert_eq!(r.tip(RUN), before, "a refusal adds nothing");
    let added = r.mara(&["plan", p]);
    added.ok("plan without --strict adds it");
    assert!(
        added.stderr.contains("overlap: A and B"),
        "{}",
        added.stderr
    );
    assert_eq!(r.task("A")["status"], "open");
}
