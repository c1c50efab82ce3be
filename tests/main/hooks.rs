//! Tests of the git hooks: `mara hooks install`, trailers, reserved paths, progress,
//! and the README's plain-git recipes for reading a run.
//!
//! The hook scripts call plain `mara`, so every `git commit` here runs with the
//! directory of the binary under test first on `PATH` (or, for the "mara is not
//! installed" case, with every directory holding a `mara` left out).

use std::ffi::OsString;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use serde_json::Value;

use crate::common::{
    assert_ref_unchanged, clean_env, git_env, output_within, ref_tip, subjects, Out, TestRepo, MARA,
};

pub(crate) const RUN: &str = "hk";
const HOOK_NAMES: [&str; 3] = ["commit-msg", "pre-commit", "post-commit"];
const BEGIN: &str = "# >>> mara >>>";

// ---------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------

/// The folder of the binary under test.
fn bin_dir() -> PathBuf {
    Path::new(MARA)
        .parent()
        .expect("the binary has a folder")
        .to_path_buf()
}

/// The test process's `PATH` without any folder that holds a `mara`.
#[allow(clippy::disallowed_methods)] // tests read their own environment, not mara's
fn path_without_mara() -> OsString {
    let parent =
        std::env::var_os("PATH").unwrap_or_else(|| OsString::from("/usr/local/bin:/usr/bin:/bin"));
    let dirs: Vec<PathBuf> = std::env::split_paths(&parent)
        .filter(|d| !d.join("mara").exists() && *d != bin_dir())
        .collect();
    std::env::join_paths(dirs).expect("PATH entries join")
}

/// `PATH` with the binary under test first.
fn path_with_mara() -> OsString {
    std::env::join_paths(
        std::iter::once(bin_dir()).chain(std::env::split_paths(&path_without_mara())),
    )
    .expect("PATH entries join")
}

/// Runs `git args` in `dir` with the tests' clean environment, `PATH` set to
/// `path` and `envs` on top; never panics.
fn git_out(home: &Path, dir: &Path, args: &[&str], envs: &[(&str, &str)], path: &OsString) -> Out {
    let mut cmd = Command::new("git");
    clean_env(&mut cmd, home);
    let out = cmd
        .env("PATH", path)
        .args(args)
        .envs(envs.iter().copied())
        .current_dir(dir)
        .output()
        .expect("git runs");
    Out::from_output(out)
}

/// `git args` in `dir` with mara on `PATH`; stdout, or a panic with stderr.
#[track_caller]
pub(crate) fn g(r: &TestRepo, dir: &Path, args: &[&str]) -> String {
    let out = git_out(&r.home, dir, args, &[], &path_with_mara());
    out.ok(&format!("git {}", args.join(" ")));
    out.stdout
}

/// `git commit args` in `dir` with mara on `PATH` and `envs` on top.
pub(crate) fn commit(r: &TestRepo, dir: &Path, args: &[&str], envs: &[(&str, &str)]) -> Out {
    let mut full = vec!["commit"];
    full.extend_from_slice(args);
    git_out(&r.home, dir, &full, envs, &path_with_mara())
}

/// Writes `rel` (creating its folders) in `dir` and stages it.
#[track_caller]
pub(crate) fn stage(r: &TestRepo, dir: &Path, rel: &str, contents: &str) {
    let p = dir.join(rel);
    std::fs::create_dir_all(p.parent().expect("a file has a folder")).expect("mkdir -p");
    std::fs::write(&p, contents).expect("writing a file to commit");
    g(r, dir, &["add", "--", rel]);
}

/// `git rev-parse HEAD` in `dir`.
#[track_caller]
pub(crate) fn head(r: &TestRepo, dir: &Path) -> String {
    g(r, dir, &["rev-parse", "HEAD"]).trim().to_owned()
}

/// The full message of HEAD in `dir`, exactly as stored.
#[track_caller]
fn head_message(r: &TestRepo, dir: &Path) -> String {
    let raw = g(r, dir, &["cat-file", "commit", "HEAD"]);
    raw.split_once("\n\n")
        .expect("a commit object has headers and a message")
        .1
        .to_owned()
}

/// `git log -1 --format=<fmt>` of HEAD in `dir`.
#[track_caller]
fn head_format(r: &TestRepo, dir: &Path, fmt: &str) -> String {
    g(r, dir, &["log", "-1", &format!("--format={fmt}")])
}

/// A linked worktree `<root>/<name>` on a new branch `<name>`, whose own git config
/// (`extensions.worktreeConfig`) says it is `instance`.
#[track_caller]
pub(crate) fn worktree(r: &TestRepo, name: &str, instance: &str) -> PathBuf {
    let wt = r.root().join(name);
    let wt_s = wt.to_str().expect("UTF-8 temp path");
    g(r, &r.dir, &["worktree", "add", "-q", wt_s, "-b", name]);
    g(r, &r.dir, &["config", "extensions.worktreeConfig", "true"]);
    g(r, &wt, &["config", "--worktree", "mara.instance", instance]);
    wt
}

/// `mara log --type progress --json`, parsed, oldest first.
#[track_caller]
fn progress_events(r: &TestRepo) -> Vec<Value> {
    let out = r.mara(&["log", "--type", "progress", "--json"]);
    out.ok("mara log --type progress --json");
    out.stdout
        .lines()
        .map(|l| serde_json::from_str(l).expect("log --json prints JSON lines"))
        .collect()
}

/// The hooks folder of a plain repository.
fn git_hooks(r: &TestRepo) -> PathBuf {
    r.dir.join(".git").join("hooks")
}

/// Contents and mode of one hook file; `None` when it is absent.
type HookFile = Option<(Vec<u8>, u32)>;

/// Name, contents and mode of each of the three hook files in `dir`.
fn hook_files(dir: &Path) -> Vec<(String, HookFile)> {
    HOOK_NAMES
        .iter()
        .map(|n| {
            let p = dir.join(n);
            let state = std::fs::read(&p).ok().map(|bytes| {
                let mode = std::fs::metadata(&p).expect("stat").permissions().mode();
                (bytes, mode)
            });
            (n.to_string(), state)
        })
        .collect()
}

#[track_caller]
fn assert_executable(p: &Path) {
    let mode = std::fs::metadata(p)
        .unwrap_or_else(|e| panic!("{} is missing: {e}", p.display()))
        .permissions()
        .mode();
    assert_eq!(
        mode & 0o111,
        0o111,
        "{} is not executable ({mode:o})",
        p.display()
    );
}

/// A run with T1 reserving `src/api/**` and the hooks installed.
pub(crate) fn run_with_hooks() -> TestRepo {
    let r = TestRepo::with_run(RUN);
    r.mara(&[
        "task",
        "add",
        "T1",
        "API endpoints",
        "--paths",
        "src/api/**",
    ])
    .ok("task add T1");
    r.mara(&["task", "add", "T2", "UI", "--paths", "src/ui/"])
        .ok("task add T2");
    r.mara(&["hooks", "install"]).ok("mara hooks install");
    r
}

// ---------------------------------------------------------------------------
// 1. install / uninstall
// ---------------------------------------------------------------------------

#[test]
fn install_writes_three_executable_hooks_is_idempotent_and_uninstall_removes_them() {
    let r = TestRepo::new();
    let hooks = git_hooks(&r);

    let out = r.mara(&["hooks", "install"]);
    out.ok("mara hooks install");
    let lines: Vec<&str> = out.stdout.lines().collect();
    assert_eq!(lines.len(), 3, "one line per hook:\n{}", out.stdout);
    for (line, name) in lines.iter().zip(HOOK_NAMES) {
        assert!(line.starts_with(name), "line names {name}: {line}");
        assert!(line.contains(" installed ("), "says what it did: {line}");
        let path = hooks.join(name);
        assert!(
            line.contains(path.to_str().unwrap()),
            "line names the file {}: {line}",
            path.display()
        );
        assert_executable(&path);
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(text.starts_with("#!/bin/sh\n"), "{name}: {text}");
        assert!(
            text.contains(&format!("mara hook {name} \"$@\"")),
            "{name}: {text}"
        );
    }
    let first = hook_files(&hooks);

    // Twice: nothing changes, every hook says so.
    let again = r.mara(&["hooks", "install"]);
    again.ok("mara hooks install, again");
    assert_eq!(again.stdout.lines().count(), 3, "{}", again.stdout);
    for (line, name) in again.stdout.lines().zip(HOOK_NAMES) {
        assert!(line.starts_with(name), "{line}");
        assert!(line.contains("already installed"), "{line}");
    }
    assert_eq!(
        hook_files(&hooks),
        first,
        "a second install changed the hooks"
    );
    for name in HOOK_NAMES {
        let text = std::fs::read_to_string(hooks.join(name)).unwrap();
        assert_eq!(text.matches(BEGIN).count(), 1, "{name}: {text}");
    }

    // JSON says the same.
    let json = r.mara(&["hooks", "install", "--json"]);
    json.ok("mara hooks install --json");
    let v: Value = serde_json::from_str(&json.stdout).expect("one JSON value");
    assert_eq!(v["dir"].as_str(), Some(hooks.to_str().unwrap()), "{v}");
    assert_eq!(v["hooks"].as_array().map(Vec::len), Some(3), "{v}");

    let un = r.mara(&["hooks", "uninstall"]);
    un.ok("mara hooks uninstall");
    assert_eq!(un.stdout.lines().count(), 3, "{}", un.stdout);
    for (line, name) in un.stdout.lines().zip(HOOK_NAMES) {
        assert!(line.starts_with(name) && line.contains("removed"), "{line}");
        assert!(!hooks.join(name).exists(), "{name} is still there");
    }
    // The samples git put there are untouched.
    assert!(hooks.join("pre-commit.sample").exists());

    let none = r.mara(&["hooks", "uninstall"]);
    none.ok("mara hooks uninstall with nothing installed");
    assert!(none.stdout.contains("no mara hooks in"), "{}", none.stdout);
}

// ---------------------------------------------------------------------------
// 2. commit-msg trailers and the post-commit progress event
// ---------------------------------------------------------------------------

#[test]
fn commit_in_an_instances_worktree_gets_trailers_and_records_progress() {
    let r = run_with_hooks();
    let wt = worktree(&r, "wt1", "implementer#1");
    // The worktree's own config is the identity: no MARA_INSTANCE anywhere.
    r.mara_in(&["claim", "T1"], &[], Some(&wt))
        .ok("implementer#1 claims T1 from its worktree");
    // The claim's token: the commit of its event, the run's tip now.
    let token = ref_tip(&r.dir, RUN);
    assert_eq!(
        r.task_state("T1"),
        ("claimed".to_owned(), Some("implementer#1".to_owned()))
    );

    stage(&r, &wt, "src/api/users.rs", "fn users() {}\n");
    commit(&r, &wt, &["-q", "-m", "add users endpoint"], &[]).ok("commit in wt1");
    assert_eq!(
        head_message(&r, &wt),
        format!("add users endpoint\n\nMara-Task: T1\nMara-Claim: {token}\nMara-Instance: implementer#1\n")
    );
    assert_eq!(
        head_format(&r, &wt, "%(trailers:key=Mara-Task,valueonly)"),
        "T1\n\n"
    );
    assert_eq!(
        head_format(&r, &wt, "%(trailers:key=Mara-Instance,valueonly)"),
        "implementer#1\n\n"
    );
    // git interpret-trailers --parse reads them too.
    let msg_file = r.write_outside("msg.txt", &head_message(&r, &wt));
    let parsed = g(
        &r,
        &wt,
        &["interpret-trailers", "--parse", msg_file.to_str().unwrap()],
    );
    assert_eq!(
        parsed,
        format!("Mara-Task: T1\nMara-Claim: {token}\nMara-Instance: implementer#1\n")
    );

    let c1 = head(&r, &wt);
    let ev = progress_events(&r);
    assert_eq!(ev.len(), 1, "one progress event: {ev:?}");
    assert_eq!(ev[0]["payload"]["commit"].as_str(), Some(c1.as_str()));
    assert_eq!(ev[0]["payload"]["task"].as_str(), Some("T1"));
    assert_eq!(ev[0]["sender"].as_str(), Some("implementer#1"));

    // A message that ends with its own trailer keeps it; ours join the same block.
    stage(&r, &wt, "src/api/orders.rs", "fn orders() {}\n");
    commit(
        &r,
        &wt,
        &[
            "-q",
            "-m",
            "add orders endpoint\n\nSigned-off-by: X <x@example.invalid>",
        ],
        &[],
    )
    .ok("commit with a Signed-off-by");
    assert_eq!(
        head_message(&r, &wt),
        format!("add orders endpoint\n\nSigned-off-by: X <x@example.invalid>\nMara-Task: T1\nMara-Claim: {token}\nMara-Instance: implementer#1\n")
    );
    // git parses only the last paragraph: all three are in it.
    assert_eq!(
        head_format(&r, &wt, "%(trailers:only,unfold)"),
        format!("Signed-off-by: X <x@example.invalid>\nMara-Task: T1\nMara-Claim: {token}\nMara-Instance: implementer#1\n\n")
    );
    let c2 = head(&r, &wt);
    let ev = progress_events(&r);
    assert_eq!(ev.len(), 2, "{ev:?}");
    assert_eq!(ev[1]["payload"]["commit"].as_str(), Some(c2.as_str()));
    assert_eq!(ev[1]["payload"]["task"].as_str(), Some("T1"));

    // Amending does not add the trailers twice.
    commit(&r, &wt, &["-q", "--amend", "--no-edit"], &[]).ok("amend");
    assert_eq!(
        head_format(&r, &wt, "%(trailers:key=Mara-Task,valueonly)"),
        "T1\n\n"
    );
    assert_eq!(
        head_format(&r, &wt, "%(trailers:key=Mara-Instance,valueonly)"),
        "implementer#1\n\n"
    );

    // Holding two tasks: both are named, each with its own claim.
    r.mara_in(&["claim", "T2"], &[], Some(&wt))
        .ok("implementer#1 claims T2");
    let token2 = ref_tip(&r.dir, RUN);
    stage(&r, &wt, "src/ui/app.rs", "fn app() {}\n");
    commit(&r, &wt, &["-q", "-m", "wire ui to api"], &[]).ok("commit holding two tasks");
    assert_eq!(
        head_format(&r, &wt, "%(trailers:key=Mara-Task,valueonly)"),
        "T1\nT2\n\n"
    );
    assert_eq!(
        head_format(&r, &wt, "%(trailers:key=Mara-Claim,valueonly)"),
        format!("{token}\n{token2}\n\n")
    );
    r.verify_ok();
}

// ---------------------------------------------------------------------------
// 3. pre-commit: reserved paths
// ---------------------------------------------------------------------------

#[test]
fn pre_commit_refuses_files_reserved_by_another_instances_task() {
    let r = run_with_hooks();
    let wt1 = worktree(&r, "wt1", "implementer#1");
    let wt2 = worktree(&r, "wt2", "implementer#2");
    r.mara_in(&["claim", "T1"], &[], Some(&wt1))
        .ok("implementer#1 claims T1");

    let before = head(&r, &wt2);
    let tip_before = r.tip(RUN);
    stage(&r, &wt2, "src/api/sneaky.rs", "fn sneaky() {}\n");
    let refused = commit(&r, &wt2, &["-q", "-m", "touch the api"], &[]);
    assert_ne!(refused.code, 0, "the commit must fail: {refused:?}");
    refused
        .stderr_has("src/api/sneaky.rs")
        .stderr_has("T1")
        .stderr_has("implementer#1")
        .stderr_has("MARA_ALLOW_RESERVED");
    assert_eq!(head(&r, &wt2), before, "the branch moved");
    assert_eq!(r.tip(RUN), tip_before, "a refused commit wrote an event");
    assert_eq!(
        g(&r, &wt2, &["diff", "--cached", "--name-only"]),
        "src/api/sneaky.rs\n",
        "the file is still staged"
    );
    // MARA_ALLOW_RESERVED=0 is not an override.
    let zero = commit(
        &r,
        &wt2,
        &["-q", "-m", "touch the api"],
        &[("MARA_ALLOW_RESERVED", "0")],
    );
    assert_ne!(zero.code, 0, "MARA_ALLOW_RESERVED=0 let it through");
    assert_eq!(head(&r, &wt2), before);

    // Outside the reserved paths: fine (the reserved file is set aside first).
    g(&r, &wt2, &["reset", "-q", "--", "src/api/sneaky.rs"]);
    stage(&r, &wt2, "src/apis.rs", "// not under src/api/\n");
    commit(&r, &wt2, &["-q", "-m", "unrelated"], &[]).ok("a file outside the reserved paths");
    assert_ne!(head(&r, &wt2), before);

    // With the override, the reserved file commits.
    g(&r, &wt2, &["add", "--", "src/api/sneaky.rs"]);
    commit(
        &r,
        &wt2,
        &["-q", "-m", "touch the api anyway"],
        &[("MARA_ALLOW_RESERVED", "1")],
    )
    .ok("MARA_ALLOW_RESERVED=1");
    assert_eq!(head_format(&r, &wt2, "%s"), "touch the api anyway\n");

    // The holder itself commits there freely.
    stage(&r, &wt1, "src/api/own.rs", "fn own() {}\n");
    commit(&r, &wt1, &["-q", "-m", "own work"], &[]).ok("the holder commits in its paths");

    // Released: no override needed.
    stage(&r, &wt2, "src/api/after_release.rs", "\n");
    let before = head(&r, &wt2);
    assert_ne!(commit(&r, &wt2, &["-q", "-m", "x"], &[]).code, 0);
    assert_eq!(head(&r, &wt2), before);
    r.mara_in(&["release", "T1"], &[], Some(&wt1))
        .ok("implementer#1 releases T1");
    commit(&r, &wt2, &["-q", "-m", "after release"], &[]).ok("commit after the release");

    // Claimed again, then done: no override needed.
    r.mara_in(&["claim", "T1"], &[], Some(&wt1))
        .ok("implementer#1 claims T1 again");
    stage(&r, &wt2, "src/api/after_done.rs", "\n");
    let before = head(&r, &wt2);
    assert_ne!(commit(&r, &wt2, &["-q", "-m", "y"], &[]).code, 0);
    assert_eq!(head(&r, &wt2), before);
    r.mara_in(&["done", "T1"], &[], Some(&wt1))
        .ok("implementer#1 completes T1");
    commit(&r, &wt2, &["-q", "-m", "after done"], &[]).ok("commit after done");
    r.verify_ok();
}

#[test]
fn pre_commit_checks_the_index_git_commits_not_just_the_staged_one() {
    // `git commit -a`, `git commit <path>` and a rename out of the reserved folder
    // build their own index; the hook must see it.
    let r = TestRepo::with_run(RUN);
    std::fs::create_dir_all(r.dir.join("src/api")).unwrap();
    std::fs::write(r.dir.join("src/api/a.rs"), "a\n").unwrap();
    r.git(&["add", "src/api/a.rs"]);
    r.git(&["commit", "-q", "-m", "api file"]);
    r.mara(&["task", "add", "T1", "API", "--paths", "src/api/**"])
        .ok("task add");
    r.mara(&["hooks", "install"]).ok("install");
    r.mara_as("implementer#1", &["claim", "T1"]).ok("claim");
    let me = [("MARA_INSTANCE", "implementer#2")];
    let before = head(&r, &r.dir);

    std::fs::write(r.dir.join("src/api/a.rs"), "a\nb\n").unwrap();
    commit(&r, &r.dir, &["-q", "-a", "-m", "all"], &me)
        .expect_code(1, "git commit -a")
        .stderr_has("src/api/a.rs");
    commit(&r, &r.dir, &["-q", "-m", "only", "src/api/a.rs"], &me)
        .expect_code(1, "git commit <path>")
        .stderr_has("src/api/a.rs");
    assert_eq!(head(&r, &r.dir), before);

    g(&r, &r.dir, &["checkout", "-q", "--", "src/api/a.rs"]);
    g(&r, &r.dir, &["mv", "src/api/a.rs", "moved.rs"]);
    commit(&r, &r.dir, &["-q", "-m", "move it out"], &me)
        .expect_code(1, "a rename out of the reserved paths")
        .stderr_has("src/api/a.rs");
    assert_eq!(head(&r, &r.dir), before);
}

/// Globs that made the old backtracking matcher take exponential time on names
/// that almost match: `*a` fourteen times then `*b` (9 s on a 30-character name),
/// and variants with `?`, `**` folders and alternates.
fn pathological_globs() -> Vec<String> {
    vec![
        format!("{}*b", "*a".repeat(14)),
        format!("{}b", "?*".repeat(16)),
        format!("{}*b", "*?a".repeat(12)),
        format!("{}b", "**/a**/".repeat(10)),
        format!("{}b", "**/a/".repeat(14)),
        format!("{}*b", "{*a,a*}".repeat(12)),
    ]
}

/// `mara hook pre-commit` run directly as `instance`, killed after 20 s; what it
/// printed and how long it took.
fn timed_pre_commit(r: &TestRepo, instance: &str) -> (Out, Duration) {
    let cmd = r.mara_command(
        &["hook", "pre-commit"],
        &[("MARA_INSTANCE", instance)],
        None,
    );
    output_within(cmd, Duration::from_secs(20), "mara hook pre-commit")
}

#[test]
fn pathological_path_globs_match_in_linear_time_in_the_pre_commit_hook() {
    let r = TestRepo::with_run(RUN);
    let globs = pathological_globs();
    let mut args = vec!["task", "add", "T1", "hostile globs"];
    for g in &globs {
        args.extend(["--paths", g.as_str()]);
    }
    r.mara(&args).ok("task add with pathological globs");
    r.mara(&["task", "add", "T2", "API", "--paths", "src/api/**"])
        .ok("task add T2");
    r.mara_as("implementer#1", &["claim", "T1"]).ok("claim T1");
    r.mara_as("implementer#1", &["claim", "T2"]).ok("claim T2");

    // Names that almost match every glob: all a's, no b; flat and as folders.
    let flat40 = "a".repeat(40);
    let flat200 = "a".repeat(200);
    let deep = vec!["a"; 100].join("/");
    for f in [&flat40, &flat200, &deep] {
        stage(&r, &r.dir, f, "x\n");
    }
    // The baseline: the same hook with the same board and nothing staged.
    g(&r, &r.dir, &["stash", "-q"]);
    let (base, base_took) = timed_pre_commit(&r, "implementer#2");
    base.ok("pre-commit with nothing staged");
    g(&r, &r.dir, &["stash", "pop", "-q", "--index"]);
    let (out, took) = timed_pre_commit(&r, "implementer#2");
    out.ok("pre-commit with long almost-matching names");
    assert_eq!(out.stderr, "", "{out:?}");
    // The matching itself is well under 100 ms; the bound is generous for a debug
    // build on a busy machine, and the backtracking matcher took minutes here.
    assert!(
        took < base_took + Duration::from_secs(2),
        "the hook took {took:?} (with nothing staged: {base_took:?})"
    );

    // The globs still reserve what they match.
    let hit = format!("{}b", "a".repeat(14));
    stage(&r, &r.dir, &hit, "x\n");
    let (out, took) = timed_pre_commit(&r, "implementer#2");
    out.expect_code(1, "a file a hostile glob matches")
        .stderr_has(&format!("{hit} is reserved by T1"));
    assert!(took < base_took + Duration::from_secs(2), "{took:?}");
    g(&r, &r.dir, &["reset", "-q", "--", &hit]);
    stage(&r, &r.dir, "src/api/users.rs", "x\n");
    timed_pre_commit(&r, "implementer#2")
        .0
        .expect_code(1, "a file under src/api/")
        .stderr_has("src/api/users.rs is reserved by T2");
    timed_pre_commit(&r, "implementer#1")
        .0
        .ok("the holder commits in its own paths");
}

#[test]
fn an_invalid_glob_is_refused_when_tasks_are_added_and_nothing_is_written() {
    let r = TestRepo::with_run(RUN);
    for bad in ["src/[api", "src/{a,b", "src/a}", "src/[z-a].rs"] {
        let out = assert_ref_unchanged(&r, RUN, || {
            r.mara(&["task", "add", "T1", "x", "--paths", "docs/", "--paths", bad])
        });
        out.expect_code(1, &format!("task add --paths {bad}"))
            .stderr_has(&format!("path glob of T1 {bad:?} is invalid"));
        assert_eq!(out.stderr.lines().count(), 1, "one line: {}", out.stderr);

        let plan = serde_json::json!([
            {"id": "T1", "title": "fine", "paths": ["src/**"]},
            {"id": "T2", "title": "bad", "paths": [bad]},
        ]);
        let p = r.write_outside("plan.json", &plan.to_string());
        assert_ref_unchanged(&r, RUN, || {
            r.mara(&["plan", p.to_str().expect("a UTF-8 path")])
        })
        .expect_code(1, &format!("plan with {bad}"))
        .stderr_has(&format!("path glob of T2 {bad:?} is invalid"));
    }
    // In classes, the same characters are a valid glob (a backslash is not: it is
    // a separator on Windows, so board paths never carry one).
    r.mara(&["task", "add", "T1", "x", "--paths", "src/[[]id[]].rs"])
        .ok("a [ in a class");
    r.mara(&["task", "add", "T2", "x", "--paths", "src/a\\"])
        .expect_code(1, "a backslash")
        .stderr_has("contains a backslash");
    r.verify_ok();
}

#[test]
fn an_invalid_glob_forged_onto_the_board_is_skipped_with_a_warning() {
    let r = TestRepo::with_run(RUN);
    r.mara(&["task", "add", "T1", "API", "--paths", "src/api/**"])
        .ok("task add T1");
    r.mara_as("implementer#1", &["claim", "T1"]).ok("claim T1");

    // A hostile instance rewrites T1's file with git plumbing: an invalid glob
    // before the valid one.
    let tip = r.tip(RUN);
    let file = r
        .git(&["ls-tree", "-r", "--name-only", &tip])
        .lines()
        .find(|l| l.ends_with("/T1.json"))
        .expect("T1 has a file on the board")
        .to_owned();
    let mut task: Value =
        serde_json::from_str(&r.git(&["show", &format!("{tip}:{file}")])).expect("a task file");
    task["paths"] = serde_json::json!(["src/[api", "src/api/**"]);
    let forged = r.write_outside("T1.json", &task.to_string());
    let blob = r
        .git(&["hash-object", "-w", forged.to_str().expect("a UTF-8 path")])
        .trim()
        .to_owned();
    let index = r.root().join("forge-index");
    let env = [("GIT_INDEX_FILE", index.to_str().expect("a UTF-8 path"))];
    git_env(&r.dir, &["read-tree", &tip], &env);
    git_env(
        &r.dir,
        &[
            "update-index",
            "--cacheinfo",
            &format!("100644,{blob},{file}"),
        ],
        &env,
    );
    let tree = git_env(&r.dir, &["write-tree"], &env).trim().to_owned();
    // Its message is the tip's event again, so readers take it for an event.
    let message = r.write_outside("message.txt", &r.git(&["log", "-1", "--format=%B", &tip]));
    let message = message.to_str().expect("a UTF-8 path");
    let commit = r
        .git(&["commit-tree", &tree, "-p", &tip, "-F", message])
        .trim()
        .to_owned();
    r.git(&["update-ref", &format!("refs/mara/{RUN}"), &commit, &tip]);

    let warning = "warning: T1's path glob \"src/[api\" is invalid";
    stage(&r, &r.dir, "docs/notes.md", "x\n");
    let (out, _) = timed_pre_commit(&r, "implementer#2");
    out.ok("a file outside T1's valid glob").stderr_has(warning);
    stage(&r, &r.dir, "src/api/users.rs", "x\n");
    let (out, _) = timed_pre_commit(&r, "implementer#2");
    out.expect_code(1, "the valid glob still reserves")
        .stderr_has(warning)
        .stderr_has("src/api/users.rs is reserved by T1");
}

// ---------------------------------------------------------------------------
// 4. the user's own hooks
// ---------------------------------------------------------------------------

#[test]
fn existing_user_hooks_keep_working_and_survive_uninstall_byte_for_byte() {
    let r = TestRepo::with_run(RUN);
    r.mara(&["task", "add", "T1", "API", "--paths", "src/api/**"])
        .ok("task add");
    let hooks = git_hooks(&r);
    let log = r.root().join("user-hooks.log");
    let log_s = log.to_str().unwrap();
    let user_pre =
        format!("#!/bin/sh\n# the team's checks\necho pre-commit ran >> '{log_s}'\nexit 0\n");
    let user_post = format!("#!/bin/sh\necho post-commit ran >> '{log_s}'\n");
    std::fs::write(hooks.join("pre-commit"), &user_pre).unwrap();
    std::fs::write(hooks.join("post-commit"), &user_post).unwrap();
    std::fs::set_permissions(
        hooks.join("pre-commit"),
        std::fs::Permissions::from_mode(0o755),
    )
    .unwrap();
    std::fs::set_permissions(
        hooks.join("post-commit"),
        std::fs::Permissions::from_mode(0o700),
    )
    .unwrap();

    let out = r.mara(&["hooks", "install"]);
    out.ok("install next to the user's hooks");
    let said: Vec<&str> = out.stdout.lines().collect();
    assert!(
        said[0].starts_with("commit-msg") && said[0].contains(" installed ("),
        "{}",
        out.stdout
    );
    assert!(
        said[1].starts_with("pre-commit") && said[1].contains("added to your hook"),
        "{}",
        out.stdout
    );
    assert!(
        said[2].starts_with("post-commit") && said[2].contains("added to your hook"),
        "{}",
        out.stdout
    );
    let pre = std::fs::read_to_string(hooks.join("pre-commit")).unwrap();
    assert!(pre.starts_with(&format!("#!/bin/sh\n{BEGIN}\n")), "{pre}");
    assert!(
        pre.ends_with(&user_pre["#!/bin/sh\n".len()..]),
        "the user's lines follow: {pre}"
    );
    for n in HOOK_NAMES {
        assert_executable(&hooks.join(n));
    }

    r.mara_as("implementer#1", &["claim", "T1"]).ok("claim");
    stage(&r, &r.dir, "src/api/x.rs", "x\n");
    commit(
        &r,
        &r.dir,
        &["-q", "-m", "with both hooks"],
        &[("MARA_INSTANCE", "implementer#1")],
    )
    .ok("commit through mara's and the user's hooks");
    assert_eq!(
        std::fs::read_to_string(&log).expect("the user's hooks ran"),
        "pre-commit ran\npost-commit ran\n"
    );
    assert_eq!(
        head_format(&r, &r.dir, "%(trailers:key=Mara-Task,valueonly)"),
        "T1\n\n"
    );
    let ev = progress_events(&r);
    assert_eq!(ev.len(), 1, "{ev:?}");
    assert_eq!(
        ev[0]["payload"]["commit"].as_str(),
        Some(head(&r, &r.dir).as_str())
    );

    let un = r.mara(&["hooks", "uninstall"]);
    un.ok("uninstall");
    assert!(
        !hooks.join("commit-msg").exists(),
        "mara's own hook is removed"
    );
    assert_eq!(
        std::fs::read(hooks.join("pre-commit")).unwrap(),
        user_pre.as_bytes()
    );
    assert_eq!(
        std::fs::read(hooks.join("post-commit")).unwrap(),
        user_post.as_bytes()
    );
    assert!(
        un.stdout.contains("removed mara's lines from your hook"),
        "{}",
        un.stdout
    );

    // A user hook that says no still says no with mara in it.
    let no = "#!/bin/sh\necho 'user hook says no' >&2\nexit 1\n";
    std::fs::write(hooks.join("pre-commit"), no).unwrap();
    r.mara(&["hooks", "install"]).ok("install again");
    let before = head(&r, &r.dir);
    let tip = r.tip(RUN);
    stage(&r, &r.dir, "src/api/y.rs", "y\n");
    commit(
        &r,
        &r.dir,
        &["-q", "-m", "blocked"],
        &[("MARA_INSTANCE", "implementer#1")],
    )
    .expect_code(1, "the user's pre-commit exits 1")
    .stderr_has("user hook says no");
    assert_eq!(head(&r, &r.dir), before, "the branch moved");
    assert_eq!(r.tip(RUN), tip, "a blocked commit wrote an event");
}

#[test]
fn install_refuses_a_non_shell_hook_and_changes_nothing() {
    let r = TestRepo::new();
    let hooks = git_hooks(&r);
    std::fs::write(hooks.join("pre-commit"), "#!/bin/sh\nexit 0\n").unwrap();
    let py = "#!/usr/bin/env python3\nimport sys\nsys.exit(0)\n";
    std::fs::write(hooks.join("post-commit"), py).unwrap();
    std::fs::set_permissions(
        hooks.join("post-commit"),
        std::fs::Permissions::from_mode(0o755),
    )
    .unwrap();
    let before = hook_files(&hooks);

    let out = r.mara(&["hooks", "install"]);
    out.expect_code(1, "install with a python hook")
        .stderr_has(hooks.join("post-commit").to_str().unwrap())
        .stderr_has("mara hook post-commit");
    assert_eq!(
        hook_files(&hooks),
        before,
        "a refused install changed the hooks"
    );
    assert!(!hooks.join("commit-msg").exists());
}

#[test]
fn uninstall_keeps_a_users_comment_only_hook() {
    let r = TestRepo::new();
    let hooks = git_hooks(&r);
    let placeholder = "#!/bin/sh\n# placeholder: the team's checks go here\n";
    std::fs::write(hooks.join("pre-commit"), placeholder).unwrap();
    r.mara(&["hooks", "install"]).ok("install");
    r.mara(&["hooks", "uninstall"]).ok("uninstall");
    assert_eq!(
        std::fs::read_to_string(hooks.join("pre-commit"))
            .ok()
            .as_deref(),
        Some(placeholder),
        "uninstall must remove exactly mara's lines, not the user's file"
    );
}

#[test]
fn install_refuses_a_python_hook_whose_interpreter_path_contains_sh() {
    let r = TestRepo::new();
    let hooks = git_hooks(&r);
    let py = "#!/home/shreya/venv/bin/python3\nimport sys\nsys.exit(0)\n";
    std::fs::write(hooks.join("post-commit"), py).unwrap();
    let before = hook_files(&hooks);
    let out = r.mara(&["hooks", "install"]);
    assert_eq!(
        hook_files(&hooks),
        before,
        "install rewrote a Python hook:\n{}",
        std::fs::read_to_string(hooks.join("post-commit")).unwrap()
    );
    out.expect_code(1, "install next to a Python hook")
        .stderr_has("post-commit");
}

// ---------------------------------------------------------------------------
// 5. core.hooksPath
// ---------------------------------------------------------------------------

#[test]
fn install_follows_a_relative_core_hooks_path() {
    let r = TestRepo::with_run(RUN);
    r.mara(&["task", "add", "T1", "API"]).ok("task add");
    r.git(&["config", "core.hooksPath", ".githooks"]);
    // From a subfolder: the path is relative to the worktree's top, as git reads it.
    let sub = r.dir.join("docs");
    std::fs::create_dir_all(&sub).unwrap();
    let out = r.mara_in(&["hooks", "install"], &[], Some(&sub));
    out.ok("install with core.hooksPath");
    let dir = r.dir.join(".githooks");
    assert!(
        out.stdout
            .contains(dir.join("commit-msg").to_str().unwrap()),
        "{}",
        out.stdout
    );
    for n in HOOK_NAMES {
        assert_executable(&dir.join(n));
        assert!(
            !git_hooks(&r).join(n).exists(),
            "{n} was written to .git/hooks"
        );
    }
    assert!(!sub.join(".githooks").exists());

    r.mara_as("implementer#1", &["claim", "T1"]).ok("claim");
    stage(&r, &r.dir, "lib.rs", "\n");
    commit(
        &r,
        &r.dir,
        &["-q", "-m", "via hooksPath"],
        &[("MARA_INSTANCE", "implementer#1")],
    )
    .ok("commit");
    assert_eq!(
        head_format(&r, &r.dir, "%(trailers:key=Mara-Task,valueonly)"),
        "T1\n\n"
    );
    assert_eq!(progress_events(&r).len(), 1);

    r.mara(&["hooks", "uninstall"]).ok("uninstall");
    for n in HOOK_NAMES {
        assert!(!dir.join(n).exists(), "{n} is still in .githooks");
    }
}

// ---------------------------------------------------------------------------
// 6. silent outside a run
// ---------------------------------------------------------------------------

#[track_caller]
fn assert_plain_commit(out: &Out, r: &TestRepo, what: &str) {
    out.ok(what);
    assert_eq!(out.stderr, "", "{what}: the hooks said something");
    assert_eq!(out.stdout, "", "{what}: the hooks said something");
    let msg = head_message(r, &r.dir);
    assert!(!msg.contains("Mara-"), "{what}: trailers were added: {msg}");
}

#[test]
fn hooks_are_silent_without_a_run_without_an_identity_and_without_mara() {
    // Hooks installed, an identity, but no run at all.
    let r = TestRepo::new();
    r.mara(&["hooks", "install"]).ok("install");
    stage(&r, &r.dir, "a.txt", "a\n");
    let out = commit(
        &r,
        &r.dir,
        &["-q", "-m", "no run"],
        &[("MARA_INSTANCE", "implementer#1")],
    );
    assert_plain_commit(&out, &r, "no run");
    assert_eq!(
        r.git(&["for-each-ref", "refs/mara"]),
        "",
        "an event was written"
    );

    // A current run this clone does not have.
    r.git(&["config", "mara.run", "elsewhere"]);
    stage(&r, &r.dir, "b.txt", "b\n");
    let out = commit(
        &r,
        &r.dir,
        &["-q", "-m", "unknown run"],
        &[("MARA_INSTANCE", "implementer#1")],
    );
    assert_plain_commit(&out, &r, "a run the clone lacks");
    assert_eq!(r.git(&["for-each-ref", "refs/mara"]), "");

    // A run, reserved paths, but no identity.
    let r = run_with_hooks();
    r.mara_as("implementer#1", &["claim", "T1"]).ok("claim");
    let tip = r.tip(RUN);
    stage(&r, &r.dir, "src/api/nobody.rs", "\n");
    let out = commit(&r, &r.dir, &["-q", "-m", "no identity"], &[]);
    assert_plain_commit(&out, &r, "no identity");
    assert_eq!(r.tip(RUN), tip, "an event was written");

    // An identity and a run, but no mara on PATH: plain git.
    let no_mara = path_without_mara();
    let probe = Command::new("sh")
        .args(["-c", "command -v mara"])
        .env_clear()
        .env("PATH", &no_mara)
        .output()
        .expect("sh runs");
    assert!(!probe.status.success(), "mara is still on the reduced PATH");
    stage(&r, &r.dir, "src/api/offline.rs", "\n");
    let out = git_out(
        &r.home,
        &r.dir,
        &["commit", "-q", "-m", "no mara installed"],
        &[("MARA_INSTANCE", "implementer#2")],
        &no_mara,
    );
    assert_plain_commit(&out, &r, "mara not on PATH");
    assert_eq!(r.tip(RUN), tip, "an event was written");
}

// ---------------------------------------------------------------------------
// 7. mara log --task and plain git find the code commits
// ---------------------------------------------------------------------------

#[test]
fn log_task_lists_events_then_the_commits_naming_the_task() {
    let r = run_with_hooks();
    r.mara(&["task", "add", "T10", "Ten"]).ok("task add T10");
    let wt1 = worktree(&r, "wt1", "implementer#1");
    let wt2 = worktree(&r, "wt2", "implementer#2");
    r.mara_in(&["claim", "T1"], &[], Some(&wt1)).ok("claim T1");
    r.mara_in(&["claim", "T10"], &[], Some(&wt2))
        .ok("claim T10");
    stage(&r, &wt1, "src/api/a.rs", "a\n");
    commit(&r, &wt1, &["-q", "-m", "t1 work"], &[]).ok("commit for T1");
    let c1 = head(&r, &wt1);
    let short1 = g(&r, &wt1, &["rev-parse", "--short", "HEAD"])
        .trim()
        .to_owned();
    stage(&r, &wt2, "ten.rs", "10\n");
    commit(&r, &wt2, &["-q", "-m", "t10 work"], &[]).ok("commit for T10");
    let c10 = head(&r, &wt2);
    // A commit whose body mentions T1 outside a trailer block is not T1's.
    stage(&r, &r.dir, "notes.txt", "n\n");
    commit(
        &r,
        &r.dir,
        &[
            "-q",
            "-m",
            "notes\n\nMara-Task: T1 is mentioned here\n\nmore text",
        ],
        &[],
    )
    .ok("commit that mentions T1 in prose");

    let out = r.mara(&["log", "--task", "T1"]);
    out.ok("mara log --task T1");
    let text = &out.stdout;
    let header = text
        .find("commits naming T1")
        .unwrap_or_else(|| panic!("no commit section:\n{text}"));
    let (events, commits) = text.split_at(header);
    let ev_lines: Vec<&str> = events.lines().filter(|l| !l.trim().is_empty()).collect();
    let kinds: Vec<&str> = ev_lines
        .iter()
        .map(|l| l.split_whitespace().nth(4).unwrap_or_default())
        .collect();
    assert_eq!(
        kinds,
        ["task_add", "claim", "progress"],
        "events of T1:\n{text}"
    );
    assert!(!events.contains("T10"), "{text}");
    let commit_lines: Vec<&str> = commits.lines().skip(1).collect();
    assert_eq!(commit_lines.len(), 1, "exactly T1's commit:\n{text}");
    assert!(commit_lines[0].contains(&short1), "{text}");
    assert!(commit_lines[0].contains(&c1[..10]), "{text}");
    assert!(
        commit_lines[0].contains("wt1") && commit_lines[0].contains("t1 work"),
        "{text}"
    );
    assert!(
        !text.contains(&c10[..10]),
        "T10's commit listed under T1:\n{text}"
    );

    let quiet = r.mara(&["log", "--task", "T1", "--no-commits"]);
    quiet.ok("--no-commits");
    assert!(!quiet.stdout.contains("commits naming"), "{}", quiet.stdout);

    // Plain git finds it too. `--all` includes refs/mara/*, so the run's events
    // for T1 are listed next to the code commit; `--branches` is code only.
    let all = r.git(&["log", "--all", "--format=%h", "--grep", "Mara-Task: T1$"]);
    assert!(all.lines().any(|l| l == short1), "{all}");
    assert!(!all.contains(&c10[..7]), "{all}");
    let branches = r.git(&[
        "log",
        "--branches",
        "--format=%H",
        "--grep",
        "^Mara-Task: T1$",
    ]);
    assert_eq!(branches, format!("{c1}\n"));
}

// ---------------------------------------------------------------------------
// 8. the README's plain-git recipes
// ---------------------------------------------------------------------------

/// A small run: T1, T10, T11, T2 added; claims by two instances; a note whose
/// subject starts with a claim-like text; T1 done.
fn small_run() -> TestRepo {
    let r = TestRepo::with_run(RUN);
    for (id, title) in [
        ("T1", "one"),
        ("T10", "ten"),
        ("T11", "eleven"),
        ("T2", "two"),
    ] {
        r.mara(&["task", "add", id, title]).ok("task add");
    }
    r.mara_as("implementer#1", &["claim", "T1"]).ok("claim T1");
    r.mara_as("implementer#2", &["claim", "T10"])
        .ok("claim T10");
    r.mara_as(
        "implementer#2",
        &["post", "note", "claim T2 next, after T10"],
    )
    .ok("note");
    r.mara_as("implementer#1", &["done", "T1"]).ok("done T1");
    r.mara_as("implementer#2", &["claim", "T11"])
        .ok("claim T11");
    r.mara_as("implementer#1", &["post", "decision", "T1 is in"])
        .ok("decision");
    r
}

fn lines(s: &str) -> Vec<&str> {
    s.lines().collect()
}

#[test]
fn readme_plain_git_recipes_read_the_run() {
    let r = small_run();
    let reference = format!("refs/mara/{RUN}");
    let rf = reference.as_str();

    let claims = r.git(&["log", rf, "--grep", "^claim", "--format=%h %s"]);
    let claim_subjects: Vec<&str> = claims
        .lines()
        .map(|l| l.split_once(' ').expect("%h %s").1)
        .collect();
    assert_eq!(
        claim_subjects,
        [
            "claim T11 by implementer#2",
            "claim T10 by implementer#2",
            "claim T1 by implementer#1"
        ]
    );

    let t1 = r.git(&["log", rf, "--format=%s", "--grep", "Mara-Task: T1$"]);
    assert_eq!(
        lines(&t1),
        [
            "done T1 by implementer#1",
            "claim T1 by implementer#1",
            "add T1 by operator: one"
        ]
    );

    let by2 = r.git(&["log", rf, "--author", "implementer#2", "--format=%s"]);
    assert_eq!(
        lines(&by2),
        [
            "claim T11 by implementer#2",
            "note by implementer#2: claim T2 next, after T10",
            "claim T10 by implementer#2"
        ]
    );

    let decisions = r.git(&["log", rf, "--grep", "^decision", "--format=%s"]);
    assert_eq!(lines(&decisions), ["decision by implementer#1: T1 is in"]);

    let body = r.git(&["log", rf, "-1", "--format=%B"]);
    let json_line = body.lines().nth(2).expect("subject, blank, JSON");
    let ev: Value = serde_json::from_str(json_line).expect("the body's JSON line");
    assert_eq!(ev["type"], "decision", "{body}");

    // `git show <ref>:tasks/` lists the shard folders; the files are one level down.
    let files = r.git(&["show", &format!("{rf}:tasks/")]);
    assert!(files.lines().any(|l| l.ends_with('/')), "{files}");
    let tree = r.git(&["ls-tree", "-r", "--name-only", rf, "tasks/"]);
    let mut names: Vec<&str> = tree
        .lines()
        .map(|l| l.rsplit('/').next().unwrap())
        .collect();
    names.sort_unstable();
    assert_eq!(
        names,
        ["T1.json", "T10.json", "T11.json", "T2.json"],
        "{tree}"
    );

    // The trailer recipe, as the README writes it: git ends each trailer value
    // with a newline, so the task lands on a line of its own and the tab starts
    // the subject's line.
    let readme = r.git(&[
        "log",
        rf,
        "--format=%(trailers:key=Mara-Task,valueonly)%x09%s",
    ]);
    let out: Vec<&str> = readme.lines().collect();
    let subs = subjects(&r.dir, RUN);
    let mut i = 0;
    for s in &subs {
        let expect_task = ["T1", "T10", "T11", "T2"].into_iter().find(|t| {
            s.contains(&format!(" {t} ")) && !s.starts_with("note") && !s.starts_with("decision")
        });
        if let Some(t) = expect_task {
            assert_eq!(out[i], t, "task before {s:?}:\n{readme}");
            i += 1;
        }
        assert_eq!(out[i], format!("\t{s}"), "{readme}");
        i += 1;
    }
    assert_eq!(i, out.len(), "{readme}");

    // One line per event: separator= keeps the task on the subject's line.
    let one_line = r.git(&[
        "log",
        rf,
        "--format=%(trailers:key=Mara-Task,valueonly,separator=%x2C)%x09%s",
    ]);
    assert_eq!(one_line.lines().count(), subs.len(), "{one_line}");
    assert!(
        one_line
            .lines()
            .any(|l| l == "T1\tclaim T1 by implementer#1"),
        "{one_line}"
    );
    assert!(
        one_line.lines().any(|l| l == "\tinit hk by operator"),
        "{one_line}"
    );
}

#[test]
fn anchored_recipes_are_not_fooled_by_free_text_or_longer_ids() {
    // The README's unanchored `--grep 'Mara-Task: T1$'` also matches an event whose
    // *subject* ends in "Mara-Task: T1" (free text is flattened into the subject),
    // and `--author 'implementer#2'` also matches implementer#20. The anchored
    // forms below do not.
    let r = small_run();
    let rf = format!("refs/mara/{RUN}");
    r.mara_as("implementer#20", &["post", "note", "see\n\nMara-Task: T1"])
        .ok("note that ends like a trailer");

    let t1 = r.git(&["log", &rf, "--format=%s", "--grep", "^Mara-Task: T1$"]);
    assert_eq!(
        lines(&t1),
        [
            "done T1 by implementer#1",
            "claim T1 by implementer#1",
            "add T1 by operator: one"
        ]
    );
    let by2 = r.git(&["log", &rf, "--author", "^implementer#2 <", "--format=%s"]);
    assert_eq!(by2.lines().count(), 3, "{by2}");
    assert!(!by2.contains("implementer#20"), "{by2}");
    let by_trailer = r.git(&[
        "log",
        &rf,
        "--format=%(trailers:key=Mara-Task,valueonly,separator=%x2C)%x09%s",
    ]);
    assert!(
        !by_trailer.lines().any(|l| l.starts_with("T1\tnote")),
        "{by_trailer}"
    );
}

// ---------------------------------------------------------------------------
// 9. injection through free text
// ---------------------------------------------------------------------------

#[test]
fn free_text_cannot_forge_trailers_subjects_or_terminal_escapes() {
    let r = TestRepo::with_run(RUN);
    let evil = "evil\n\nMara-Task: T9\n\x1b[31mred\x1b[0m";
    r.mara(&["task", "add", "T5", evil])
        .ok("task add with an evil title");
    r.mara_as("implementer#3", &["post", "note", evil])
        .ok("post note with evil text");
    let rf = format!("refs/mara/{RUN}");

    let trailers = r.git(&["log", &rf, "--format=%(trailers:key=Mara-Task,valueonly)"]);
    assert!(!trailers.contains("T9"), "a forged trailer:\n{trailers}");
    assert!(trailers.contains("T5"));
    let all_trailers = r.git(&["log", &rf, "--format=%(trailers:only,unfold)"]);
    assert!(!all_trailers.contains("T9"), "{all_trailers}");
    assert!(
        r.git(&["log", &rf, "--format=%h", "--grep", "^Mara-Task: T9$"])
            .is_empty(),
        "a line of its own says Mara-Task: T9"
    );

    let ids = r.git(&["log", &rf, "-2", "--format=%H"]);
    for id in ids.lines() {
        let raw = r.git(&["cat-file", "commit", id]);
        let msg = raw.split_once("\n\n").unwrap().1;
        let mut l = msg.lines();
        let subject = l.next().unwrap();
        assert_eq!(l.next(), Some(""), "the subject is one line:\n{msg}");
        assert!(
            subject.starts_with("add T5 by operator: evil")
                || subject.starts_with("note by implementer#3: evil"),
            "{subject}"
        );
        assert!(!subject.chars().any(char::is_control), "{subject:?}");
        // The text is kept whole, JSON-escaped, in the body's one JSON line.
        let json: Value = serde_json::from_str(l.next().unwrap()).expect("JSON line");
        let kept = json["payload"]["task"]["title"]
            .as_str()
            .or(json["payload"]["note"].as_str());
        assert_eq!(kept, Some(evil), "{json}");
        assert!(!msg.contains('\x1b'), "a raw ESC in the commit message");
    }

    let log = r.mara(&["log"]);
    log.ok("mara log");
    assert!(
        !log.stdout.contains('\x1b'),
        "ESC in mara log: {:?}",
        log.stdout
    );
    assert!(
        !log.stdout.lines().any(|l| l.starts_with("Mara-Task")),
        "{}",
        log.stdout
    );
    let board = r.mara(&["board"]);
    board.ok("mara board");
    assert!(
        !board.stdout.contains('\x1b'),
        "ESC in mara board: {:?}",
        board.stdout
    );
    r.verify_ok();
}
