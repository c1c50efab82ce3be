//! mara opens the repository as git does: from subdirectories, linked worktrees,
//! git hooks and explicit `GIT_DIR` / `GIT_WORK_TREE`.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use crate::common::{
    copy_seed, git, git_env, newest_subject, ref_tip, scratch, Origin, TestRepo, MARA,
};

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
    r.git(&["add", "src/deep/notes.md"]);
    r.git(&["commit", "-q", "-m", "T1: notes"]);
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
    git(&wt, &["add", "t2.md"]);
    git(&wt, &["commit", "-q", "-m", "T2: t2.md"]);
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

// --- repositories of other shapes (issue 13, part 6) -----------------------------

/// The instances of the seed's config, as file stems.
const SEED_STEMS: [&str; 5] = [
    "architect_1",
    "implementer_1",
    "implementer_2",
    "reviewer_1",
    "integrator_1",
];

/// A `TestRepo` for a repository of another shape: `dir` is where the tests run
/// mara, `home` is made below `root`.
fn shaped(tmp: tempfile::TempDir, root: &Path, dir: std::path::PathBuf) -> TestRepo {
    let home = root.join("home");
    std::fs::create_dir_all(&home).expect("creating HOME");
    TestRepo { tmp, dir, home }
}

/// Every file and folder below `dir` (links not followed), relative and sorted.
fn tree_of(dir: &Path) -> Vec<String> {
    let mut out = vec![];
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).expect("reading a folder") {
            let e = e.expect("a folder entry");
            out.push(
                e.path()
                    .strip_prefix(dir)
                    .expect("below")
                    .display()
                    .to_string(),
            );
            if e.file_type().expect("a file type").is_dir() {
                stack.push(e.path());
            }
        }
    }
    out.sort();
    out
}

/// Runs `mara export` and the seed's roles (`mara run` with the seed's config and a
/// two-task plan) as run `run`, with `envs` in `cwd`; asserts that the run's folder
/// is in `work_tree` with every instance's worktree, log, the outputs and the
/// integrator's report, and that the board verifies.
#[track_caller]
fn run_seed_in(r: &TestRepo, run: &str, envs: &[(&str, &str)], cwd: &Path, work_tree: &Path) {
    let config = copy_seed(r);
    let plan = r.write_outside(
        "plan.json",
        r#"[{"id": "T1", "title": "first"}, {"id": "T2", "title": "second", "deps": ["T1"]}]"#,
    );
    let out = r.mara_in(
        &[
            "--run",
            run,
            "run",
            "--config",
            path_str(&config),
            "--tasks",
            path_str(&plan),
        ],
        envs,
        Some(cwd),
    );
    out.ok(&format!("mara run {run}"));
    let dir = work_tree.join(".multi_agent_runs").join(run);
    for stem in SEED_STEMS {
        assert!(
            dir.join("worktrees").join(stem).is_dir(),
            "worktree {stem} in {}",
            dir.display()
        );
        assert!(
            dir.join("logs").join(format!("{stem}.log")).is_file(),
            "log {stem}"
        );
    }
    assert!(
        dir.join("integrator.md").is_file(),
        "the integrator's report"
    );
    let outputs = tree_of(&dir.join("outputs"));
    assert!(
        outputs.iter().any(|f| f == "reviewer_1.md"),
        "collected outputs: {outputs:?}"
    );
    r.mara_in(&["--run", run, "export"], envs, Some(cwd))
        .ok("mara export");
    assert!(dir.join("task_board.json").is_file());
    assert!(dir.join("coordination.log").is_file());
    r.mara_in(&["--run", run, "verify"], envs, Some(cwd))
        .ok("mara verify");
}

/// A bare repository: the board commands work; run, export, collect and integrate
/// refuse with exit 1 before writing anything (no ref, branch or file).
#[test]
fn a_bare_repository_keeps_the_board_and_refuses_what_needs_a_work_tree() {
    let (tmp, root, bare) = Origin::bare_only();
    let r = shaped(tmp, &root, bare.clone());
    // One commit on main, pushed from a scratch clone.
    let src = root.join("src");
    git(&root, &["init", "-q", "-b", "main", path_str(&src)]);
    std::fs::write(src.join("README.md"), "# bare\n").expect("writing README.md");
    git(&src, &["add", "README.md"]);
    git(&src, &["commit", "-q", "-m", "initial commit"]);
    git(&src, &["push", "-q", path_str(&bare), "main"]);
    r.mara(&["init", "--run", "b"])
        .ok("init in a bare repository");
    r.mara(&["task", "add", "T1", "first"]).ok("task add");
    r.mara_as("implementer#1", &["claim", "T1"]).ok("claim");
    let board = r.board();
    assert_eq!(board["tasks"][0]["claimed_by"], "implementer#1", "{board}");
    r.verify_ok();
    r.git(&["branch", "mara/b/implementer_1", "main"]);
    let config = copy_seed(&r);

    for args in [
        vec!["run", "--config", path_str(&config)],
        vec!["--run", "b2", "run", "--config", path_str(&config)],
        vec!["export"],
        vec!["collect"],
        vec!["integrate"],
    ] {
        let refs = r.git(&["for-each-ref", "--format=%(refname) %(objectname)"]);
        let files = tree_of(&root);
        let o = r.mara(&args);
        let cmd = args
            .iter()
            .find(|a| ["run", "export", "collect", "integrate"].contains(a))
            .expect("a command");
        o.expect_code(1, &format!("mara {args:?} in a bare repository"))
            .stderr_has("this repository has no work tree (bare)")
            .stderr_has(&format!("`mara {cmd}` needs one"));
        assert_eq!(
            o.stderr
                .lines()
                .filter(|l| l.starts_with("error: "))
                .count(),
            1,
            "{}",
            o.stderr
        );
        assert_eq!(
            r.git(&["for-each-ref", "--format=%(refname) %(objectname)"]),
            refs,
            "{args:?} wrote a ref"
        );
        assert_eq!(tree_of(&root), files, "{args:?} wrote a file");
    }
}

/// `git init --separate-git-dir`: the run's folder is in the work tree, not next to
/// the git directory; a linked worktree that is not one of mara's cannot tell where
/// the main work tree is, and says so.
#[test]
fn a_separate_git_dir_keeps_the_run_in_its_work_tree() {
    let (tmp, root) = scratch("mara-it-sep-");
    let wt = root.join("wt");
    let gd = root.join("gd");
    git(
        &root,
        &[
            "init",
            "-q",
            "-b",
            "main",
            "--separate-git-dir",
            path_str(&gd),
            path_str(&wt),
        ],
    );
    std::fs::write(wt.join("README.md"), "# separate\n").expect("writing README.md");
    git(&wt, &["add", "README.md"]);
    git(&wt, &["commit", "-q", "-m", "initial commit"]);
    let r = shaped(tmp, &root, wt.clone());
    r.mara(&["init", "--run", "s"]).ok("init");
    run_seed_in(&r, "s2", &[], &wt, &wt);
    assert!(
        !root.join(".multi_agent_runs").exists(),
        "wrote next to the git directory"
    );

    git(&wt, &["worktree", "add", "-q", "../linked", "-b", "linked"]);
    let o = r.mara_in(&["--run", "s", "export"], &[], Some(&root.join("linked")));
    o.expect_code(1, "export from a linked worktree of a separate git dir")
        .stderr_has("cannot find the main work tree")
        .stderr_has("run `mara export` in the main work tree");
    assert!(!root.join(".multi_agent_runs").exists());
}

/// Inside a submodule: the run is the submodule's; the superproject gets no ref,
/// branch, worktree or file.
#[test]
fn a_submodule_runs_in_its_own_work_tree_and_leaves_the_superproject_alone() {
    let (tmp, root) = scratch("mara-it-sub-");
    let lib = root.join("lib");
    let sup = root.join("super");
    for (dir, name) in [(&lib, "lib"), (&sup, "super")] {
        git(&root, &["init", "-q", "-b", "main", path_str(dir)]);
        std::fs::write(dir.join("README.md"), format!("# {name}\n")).expect("writing README.md");
        git(dir, &["add", "README.md"]);
        git(dir, &["commit", "-q", "-m", "initial commit"]);
    }
    git(
        &sup,
        &[
            "-c",
            "protocol.file.allow=always",
            "submodule",
            "add",
            "-q",
            "../lib",
            "sub",
        ],
    );
    git(&sup, &["commit", "-q", "-m", "add the submodule"]);
    let sub = sup.join("sub");
    // The test's files (config, plan) go next to the superproject, not into it.
    let r = shaped(tmp, &root, sup.clone());
    let refs = git(&sup, &["for-each-ref", "--format=%(refname) %(objectname)"]);
    let worktrees = git(&sup, &["worktree", "list", "--porcelain"]);
    let super_git = tree_of(&sup.join(".git"))
        .into_iter()
        .filter(|p| !p.starts_with("modules"))
        .collect::<Vec<_>>();

    r.mara_in(&["init", "--run", "m"], &[], Some(&sub))
        .ok("init in the submodule");
    run_seed_in(&r, "m2", &[], &sub, &sub);

    assert_eq!(
        git(&sup, &["for-each-ref", "--format=%(refname) %(objectname)"]),
        refs,
        "refs of the superproject"
    );
    assert_eq!(
        git(&sup, &["worktree", "list", "--porcelain"]),
        worktrees,
        "worktrees of the superproject"
    );
    let after = tree_of(&sup.join(".git"))
        .into_iter()
        .filter(|p| !p.starts_with("modules"))
        .collect::<Vec<_>>();
    assert_eq!(after, super_git, "the superproject's git directory");
    assert!(!sup.join(".multi_agent_runs").exists());
    assert!(!sup
        .join(".git")
        .join("modules")
        .join(".multi_agent_runs")
        .exists());
    assert_eq!(
        git(&sup, &["status", "--porcelain", "--ignore-submodules=none"]),
        "",
        "the superproject sees no change"
    );
}

/// `GIT_DIR` and `GIT_WORK_TREE` from a folder outside both: the run is in the
/// given work tree (which has no `.git` of its own), for a git directory made by
/// `git init` with them and for a bare one used with them.
#[test]
fn git_dir_and_git_work_tree_put_the_run_in_the_given_work_tree() {
    let (tmp, root) = scratch("mara-it-env-");
    let elsewhere = root.join("elsewhere");
    std::fs::create_dir_all(&elsewhere).expect("mkdir");
    let r = shaped(tmp, &root, elsewhere.clone());
    for (store, tree, bare) in [("store", "tree", false), ("store2.git", "tree2", true)] {
        let store = root.join(store);
        let tree = root.join(tree);
        std::fs::create_dir_all(&tree).expect("mkdir the work tree");
        let env = [
            ("GIT_DIR", path_str(&store)),
            ("GIT_WORK_TREE", path_str(&tree)),
        ];
        if bare {
            git(
                &root,
                &["init", "-q", "--bare", "-b", "main", path_str(&store)],
            );
        } else {
            git_env(&root, &["init", "-q", "-b", "main"], &env);
        }
        std::fs::write(tree.join("README.md"), "# env\n").expect("writing README.md");
        git_env(&elsewhere, &["add", "README.md"], &env);
        git_env(&elsewhere, &["commit", "-q", "-m", "initial commit"], &env);
        r.mara_in(&["init", "--run", "e"], &env, Some(&elsewhere))
            .ok("init");
        run_seed_in(&r, "e2", &env, &elsewhere, &tree);
        assert!(!tree.join(".git").exists());
        assert!(
            !root.join(".multi_agent_runs").exists(),
            "wrote next to the git directory"
        );
        assert!(
            !elsewhere.join(".multi_agent_runs").exists(),
            "wrote in the current folder"
        );
    }
}
