//! mara opens the repository as git does: from subdirectories, linked worktrees,
//! git hooks and explicit `GIT_DIR` / `GIT_WORK_TREE`.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use crate::common::{git, newest_subject, ref_tip, TestRepo, MARA};

fn add_tasks(r: &TestRepo, ids: &[&str]) {
    for id in ids {
        r.mara(&["task", "add", id, &format!("task {id}")])
            .ok("task add");
    }
}

fn path_str(p: &Path) -> &str {
    p.to_str().expect("a UTF-8 path")
}

#[test]
fn works_from_a_subdirectory_and_a_linked_worktree() {
    let run = "trees";
    let r = TestRepo::with_run(run);
    add_tasks(&r, &["T1", "T2", "T3"]);

    let sub = r.dir.join("src").join("deep");
    std::fs::create_dir_all(&sub).expect("creating a subdirectory");
    r.mara_in(
        &["claim", "T1"],
        &[("MARA_INSTANCE", "implementer#1")],
        Some(&sub),
    )
    .ok("claim from a subdirectory");
    let o = r.mara_in(&["board", "--json"], &[], Some(&sub));
    o.ok("board from a subdirectory");
    assert!(o.stdout.contains("implementer#1"), "{}", o.stdout);
    // An artifact path is relative to the current directory, stored relative to the
    // worktree's root.
    std::fs::write(sub.join("notes.md"), "notes\n").expect("writing the artifact");
    r.mara_in(
        &["done", "T1", "--artifact", "notes.md"],
        &[("MARA_INSTANCE", "implementer#1")],
        Some(&sub),
    )
    .ok("done from a subdirectory");
    let board = r.board();
    assert_eq!(board["tasks"][0]["artifact"], "src/deep/notes.md");

    git(&r.dir, &["worktree", "add", "-q", "../wt", "-b", "other"]);
    let wt = r.root().join("wt");
    let before = r.tip(run);
    r.mara_in(
        &["claim", "T2"],
        &[("MARA_INSTANCE", "implementer#2")],
        Some(&wt),
    )
    .ok("claim in the linked worktree");
    let after = r.tip(run);
    assert_ne!(before, after, "the claim moved the shared ref");
    assert_eq!(ref_tip(&wt, run), after, "worktrees share refs/mara/*");
    assert_eq!(newest_subject(&r.dir, run), "claim T2 by implementer#2");
    assert_eq!(
        r.task_state("T2"),
        ("claimed".to_owned(), Some("implementer#2".to_owned()))
    );
    let table = r.mara(&["board"]);
    table.ok("board (table) in the main worktree");
    let row = table
        .stdout
        .lines()
        .find(|l| l.starts_with("T2 "))
        .expect("a row for T2");
    assert!(
        row.contains("claimed") && row.contains("implementer#2"),
        "{row}"
    );

    // The worktree sees the refusal for a task the main worktree holds.
    r.mara_as("implementer#1", &["claim", "T3"])
        .ok("claim T3 in main");
    let o = r.mara_in(
        &["claim", "T3"],
        &[("MARA_INSTANCE", "implementer#2")],
        Some(&wt),
    );
    o.expect_code(3, "claim of a held task from the worktree")
        .stderr_has("T3 is held by implementer#1");
    r.verify_ok();
}

/// The README: `git config --worktree mara.instance implementer#2` gives each
/// worktree its own instance.
#[test]
fn each_worktree_can_be_its_own_instance_through_worktree_config() {
    let run = "wtconfig";
    let r = TestRepo::with_run(run);
    add_tasks(&r, &["T1", "T2"]);
    git(&r.dir, &["worktree", "add", "-q", "../wt", "-b", "other"]);
    let wt = r.root().join("wt");
    git(&r.dir, &["config", "extensions.worktreeConfig", "true"]);
    git(
        &wt,
        &["config", "--worktree", "mara.instance", "implementer#7"],
    );

    r.mara_in(&["claim", "T1"], &[], Some(&wt))
        .ok("claim with the worktree's own identity");
    assert_eq!(newest_subject(&r.dir, run), "claim T1 by implementer#7");
    // The main worktree has no identity of its own.
    let before = r.tip(run);
    r.mara(&["claim", "T2"])
        .expect_code(1, "claim in the main worktree without identity")
        .stderr_has("MARA_INSTANCE");
    assert_eq!(r.tip(run), before);
    r.verify_ok();
}

#[test]
fn works_inside_git_hooks_and_with_explicit_git_dir() {
    let run = "hooks";
    let r = TestRepo::with_run(run);
    add_tasks(&r, &["T1", "T2", "T3", "T4"]);
    git(&r.dir, &["worktree", "add", "-q", "../wt", "-b", "other"]);
    let wt = r.root().join("wt");
    let logs = r.root().join("hooklogs");
    std::fs::create_dir_all(&logs).expect("creating the hook log directory");

    let hook = format!(
        r#"#!/bin/sh
branch=$(git rev-parse --abbrev-ref HEAD)
case "$branch" in
  main) task=T1; MARA_INSTANCE='implementer#1' ;;
  *) task=T2; MARA_INSTANCE='implementer#2' ;;
esac
export MARA_INSTANCE
echo "${{GIT_DIR:-unset}}" > '{logs}/'"$branch.gitdir"
'{mara}' claim "$task" > '{logs}/'"$branch.out" 2>&1
echo "exit $?" >> '{logs}/'"$branch.out"
"#,
        logs = path_str(&logs),
        mara = MARA,
    );
    let hook_path = r.dir.join(".git").join("hooks").join("post-commit");
    std::fs::create_dir_all(hook_path.parent().expect("hooks dir")).expect("creating hooks/");
    std::fs::write(&hook_path, hook).expect("writing the hook");
    std::fs::set_permissions(&hook_path, std::fs::Permissions::from_mode(0o755))
        .expect("chmod +x the hook");

    let read_log = |name: &str| {
        std::fs::read_to_string(logs.join(name))
            .unwrap_or_else(|e| panic!("the hook wrote no {name}: {e}"))
    };

    // A commit in the main worktree.
    std::fs::write(r.dir.join("a.txt"), "a\n").expect("writing a file");
    git(&r.dir, &["add", "a.txt"]);
    git(&r.dir, &["commit", "-q", "-m", "work in main"]);
    let out = read_log("main.out");
    assert!(out.ends_with("exit 0\n"), "the hook's mara run:\n{out}");
    assert_eq!(
        r.task_state("T1"),
        ("claimed".to_owned(), Some("implementer#1".to_owned()))
    );

    // A commit in the linked worktree: git runs the hook with GIT_DIR set to the
    // worktree's own git directory.
    std::fs::write(wt.join("b.txt"), "b\n").expect("writing a file");
    git(&wt, &["add", "b.txt"]);
    git(&wt, &["commit", "-q", "-m", "work in the worktree"]);
    let out = read_log("other.out");
    assert!(out.ends_with("exit 0\n"), "the hook's mara run:\n{out}");
    let gitdir = read_log("other.gitdir");
    assert!(
        gitdir.trim().ends_with(".git/worktrees/wt"),
        "GIT_DIR in the worktree's hook: {gitdir}"
    );
    assert_eq!(
        r.task_state("T2"),
        ("claimed".to_owned(), Some("implementer#2".to_owned()))
    );
    assert_eq!(newest_subject(&r.dir, run), "claim T2 by implementer#2");

    // GIT_DIR and GIT_WORK_TREE set explicitly, from a directory outside the repo.
    let outside = r.root().join("elsewhere");
    std::fs::create_dir_all(&outside).expect("creating a plain directory");
    let main_git = r.dir.join(".git");
    let env_main = [
        ("GIT_DIR", path_str(&main_git)),
        ("GIT_WORK_TREE", path_str(&r.dir)),
        ("MARA_INSTANCE", "implementer#3"),
    ];
    r.mara_in(&["claim", "T3"], &env_main, Some(&outside))
        .ok("claim with GIT_DIR from outside");
    assert_eq!(newest_subject(&r.dir, run), "claim T3 by implementer#3");
    let o = r.mara_in(&["board", "--json"], &env_main, Some(&outside));
    o.ok("board with GIT_DIR from outside");
    assert!(o.stdout.contains("implementer#3"), "{}", o.stdout);

    // The linked worktree's git directory, with an absolute artifact path.
    let wt_git = r.dir.join(".git").join("worktrees").join("wt");
    let artifact = wt.join("t2.md");
    std::fs::write(&artifact, "done\n").expect("writing the artifact");
    let env_wt = [
        ("GIT_DIR", path_str(&wt_git)),
        ("GIT_WORK_TREE", path_str(&wt)),
        ("MARA_INSTANCE", "implementer#2"),
    ];
    r.mara_in(
        &["done", "T2", "--artifact", path_str(&artifact)],
        &env_wt,
        Some(&outside),
    )
    .ok("done with the worktree's GIT_DIR from outside");
    assert_eq!(newest_subject(&r.dir, run), "done T2 by implementer#2");
    let board = r.board();
    let t2 = board["tasks"]
        .as_array()
        .expect("tasks")
        .iter()
        .find(|t| t["id"] == "T2")
        .expect("T2")
        .clone();
    assert_eq!(t2["artifact"], "t2.md");
    r.verify_ok();
}
