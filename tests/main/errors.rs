//! Errors: exit 1 (or clap's 2) and nothing written.

use std::path::Path;

use crate::common::{assert_ref_unchanged, newest_subject, TestRepo};

fn add_tasks(r: &TestRepo, ids: &[&str]) {
    for id in ids {
        r.mara(&["task", "add", id, &format!("task {id}")])
            .ok("task add");
    }
}

#[test]
fn writing_commands_without_an_identity_fail_and_write_nothing() {
    let run = "who";
    let r = TestRepo::with_run(run);
    add_tasks(&r, &["T1", "T2", "T3"]);
    r.mara_as("implementer#1", &["claim", "T3"]).ok("claim T3");

    for args in [
        &["claim", "T1"][..],
        &["claim", "--next"][..],
        &["post", "decision", "who am I"][..],
        &["heartbeat"][..],
        &["done", "T3"][..],
        &["release", "T3"][..],
    ] {
        assert_ref_unchanged(&r, run, || r.mara(args))
            .expect_code(1, &format!("{args:?} without an identity"))
            .stderr_has("MARA_INSTANCE");
    }

    // git config mara.instance.
    r.git(&["config", "mara.instance", "implementer#3"]);
    r.mara(&["claim", "T1"])
        .ok("claim as git config's instance");
    assert_eq!(newest_subject(&r.dir, run), "claim T1 by implementer#3");

    // MARA_INSTANCE beats git config, and --as beats both.
    r.mara_as("implementer#5", &["post", "note", "from the env"])
        .ok("post with MARA_INSTANCE");
    assert_eq!(
        newest_subject(&r.dir, run),
        "note by implementer#5: from the env"
    );
    r.mara_in(
        &["--as", "implementer#4", "claim", "T2"],
        &[("MARA_INSTANCE", "implementer#5")],
        None,
    )
    .ok("claim with --as");
    assert_eq!(newest_subject(&r.dir, run), "claim T2 by implementer#4");
    r.mara(&["heartbeat", "--as", "reviewer#1"])
        .ok("--as after the subcommand");
    assert_eq!(newest_subject(&r.dir, run), "heartbeat by reviewer#1");

    // Identities that are not <role>#<n>.
    for bad in [
        "implementer",
        "implementer#0",
        "Implementer#1",
        "implementer#x",
    ] {
        assert_ref_unchanged(&r, run, || r.mara(&["--as", bad, "heartbeat"]))
            .expect_code(1, &format!("--as {bad}"))
            .stderr_has("--as")
            .stderr_has("<role>#<n>");
        assert_ref_unchanged(&r, run, || r.mara_as(bad, &["heartbeat"]))
            .expect_code(1, &format!("MARA_INSTANCE={bad}"))
            .stderr_has("MARA_INSTANCE");
    }
    r.git(&["config", "mara.instance", "implementer"]);
    assert_ref_unchanged(&r, run, || r.mara(&["heartbeat"]))
        .expect_code(1, "git config mara.instance implementer")
        .stderr_has("git config mara.instance");
    r.verify_ok();
}

#[test]
fn unknown_task_ids_exit_1_and_invalid_ones_are_usage_errors() {
    let run = "ids";
    let r = TestRepo::with_run(run);
    add_tasks(&r, &["T1"]);
    r.mara_as("implementer#1", &["claim", "T1"]).ok("claim T1");

    for args in [
        &["claim", "T99"][..],
        &["release", "T99"][..],
        &["release", "T99", "--force"][..],
        &["done", "T99"][..],
        &["done", "T99", "--force"][..],
    ] {
        assert_ref_unchanged(&r, run, || r.mara_as("implementer#1", args))
            .expect_code(1, &format!("{args:?}"))
            .stderr_has("no task T99");
    }
    assert_ref_unchanged(&r, run, || {
        r.mara(&["task", "add", "T2", "x", "--deps", "T99"])
    })
    .expect_code(1, "a dep on an unknown task")
    .stderr_has("T99");

    // Ids that can never be task ids are refused by the argument parser: exit 2.
    for bad in ["a b", "../x", "x/y", "-x", "T1.lock", ""] {
        // `--` makes an id that starts with '-' a value, not an option.
        let task_opt = format!("--task={bad}");
        for args in [
            vec!["claim", "--", bad],
            vec!["release", "--", bad],
            vec!["done", "--", bad],
            vec!["task", "add", "--", bad, "title"],
            vec!["log", task_opt.as_str()],
        ] {
            let o = assert_ref_unchanged(&r, run, || r.mara_as("implementer#1", &args));
            o.expect_code(2, &format!("{args:?}"));
            assert!(
                o.stderr.contains("task id") && o.stderr.contains("invalid value"),
                "{args:?}: {}",
                o.stderr
            );
        }
    }
    r.verify_ok();
}

/// Writes a plan file outside the repository and runs `mara plan` on it.
fn plan(r: &TestRepo, name: &str, contents: &str) -> (crate::common::Out, String) {
    let path = r.write_outside(name, contents);
    let path = path.to_str().expect("a UTF-8 path").to_owned();
    (r.mara(&["plan", &path]), path)
}

#[test]
fn bad_plan_files_fail_naming_the_file_or_the_task_and_write_nothing() {
    let run = "plans";
    let r = TestRepo::with_run(run);
    add_tasks(&r, &["T0"]);

    // Not a plan at all: the error names the file.
    for (name, contents, also) in [
        ("malformed.json", r#"[{"id": "T1", "title": "#, "EOF"),
        (
            "unknown_key.json",
            r#"[{"id": "T1", "title": "x", "owner": "me"}]"#,
            "owner",
        ),
        ("not_a_list.json", r#"{"id": "T1", "title": "x"}"#, ""),
        ("bad_id.json", r#"[{"id": "a b", "title": "x"}]"#, "a b"),
    ] {
        let (o, path) = assert_ref_unchanged(&r, run, || plan(&r, name, contents));
        o.expect_code(1, name).stderr_has(&path).stderr_has(also);
    }
    let missing = r.root().join("missing.json");
    let missing = missing.to_str().expect("a UTF-8 path");
    assert_ref_unchanged(&r, run, || r.mara(&["plan", missing]))
        .expect_code(1, "a missing plan file")
        .stderr_has(missing);

    // A list whose tasks break the rules: the error names the task.
    for (name, contents, needle) in [
        (
            "duplicate.json",
            r#"[{"id": "T1", "title": "a"}, {"id": "T1", "title": "b"}]"#,
            "task T1 is listed twice",
        ),
        (
            "on_board.json",
            r#"[{"id": "T0", "title": "again"}]"#,
            "task T0 is already on the board",
        ),
        (
            "cycle.json",
            r#"[{"id": "T1", "title": "a", "deps": ["T2"]},
                {"id": "T2", "title": "b", "deps": ["T1"]}]"#,
            "dependency cycle: T1 -> T2 -> T1",
        ),
        (
            "self.json",
            r#"[{"id": "T1", "title": "a", "deps": ["T1"]}]"#,
            "T1 depends on itself",
        ),
        (
            "unknown_dep.json",
            r#"[{"id": "T1", "title": "a", "deps": ["T9"]}]"#,
            "T1 depends on T9, which is not a task",
        ),
        (
            "status_done.json",
            r#"[{"id": "T1", "title": "a", "status": "done"}]"#,
            "T1 has status done",
        ),
        (
            "claimed.json",
            r#"[{"id": "T1", "title": "a", "claimed_by": "implementer#1"}]"#,
            "T1 has claimed_by set",
        ),
        (
            "empty_title.json",
            r#"[{"id": "T1", "title": "  "}]"#,
            "title of T1 is empty",
        ),
    ] {
        let (o, _) = assert_ref_unchanged(&r, run, || plan(&r, name, contents));
        o.expect_code(1, name).stderr_has(needle);
    }

    // An empty list: nothing to add.
    let (o, _) = assert_ref_unchanged(&r, run, || plan(&r, "empty.json", "[]"));
    o.expect_code(1, "an empty plan").stderr_has("no tasks");

    // A plan fed back from a board (open, unclaimed) is fine.
    let (o, _) = plan(
        &r,
        "good.json",
        r#"[{"id": "T1", "title": "a", "status": "open", "claimed_by": null},
            {"id": "T2", "title": "b", "deps": ["T1", "T0"], "paths": ["src/**"]}]"#,
    );
    o.ok("a good plan");
    assert_eq!(newest_subject(&r.dir, run), "plan 2 tasks by operator");
    r.verify_ok();
}

/// The README: "Unknown keys, duplicate ids, deps on unknown tasks and dependency
/// cycles are errors that name the file and the task".
#[test]
fn plan_errors_name_the_file_and_the_task() {
    let run = "planfile";
    let r = TestRepo::with_run(run);
    for (name, contents, task) in [
        (
            "unknown_key.json",
            r#"[{"id": "T0", "title": "fine"}, {"id": "T1", "title": "x", "owner": "me"}]"#,
            Some("T1"),
        ),
        (
            "duplicate.json",
            r#"[{"id": "T1", "title": "a"}, {"id": "T1", "title": "b"}]"#,
            Some("T1"),
        ),
        (
            "cycle.json",
            r#"[{"id": "T1", "title": "a", "deps": ["T2"]},
                {"id": "T2", "title": "b", "deps": ["T1"]}]"#,
            Some("T1"),
        ),
        (
            "unknown_dep.json",
            r#"[{"id": "T1", "title": "a", "deps": ["T9"]}]"#,
            Some("T1"),
        ),
        ("empty.json", "[]", None),
    ] {
        let (o, path) = assert_ref_unchanged(&r, run, || plan(&r, name, contents));
        o.expect_code(1, name).stderr_has(&path);
        if let Some(task) = task {
            o.stderr_has(task);
        }
    }
}

#[test]
fn init_twice_no_current_run_and_no_repository_exit_1() {
    let r = TestRepo::new();
    let root = r.root();

    // No run yet.
    for args in [
        &["board"][..],
        &["log"][..],
        &["status"][..],
        &["verify"][..],
        &["task", "add", "T1", "x"][..],
        &["--as", "implementer#1", "claim", "T1"][..],
    ] {
        r.mara(args)
            .expect_code(1, &format!("{args:?} with no run"))
            .stderr_has("mara init");
    }
    let o = r.mara(&["--run", "nosuch", "board"]);
    o.expect_code(1, "--run of a run that does not exist")
        .stderr_has("refs/mara/nosuch")
        .stderr_has("mara init --run nosuch");
    assert_eq!(
        r.git(&["for-each-ref", "refs/mara/"]),
        "",
        "nothing written"
    );

    r.mara(&["init", "--run", "twice"]).ok("first init");
    let tip = r.tip("twice");
    r.mara(&["init", "--run", "twice"])
        .expect_code(1, "second init")
        .stderr_has("run twice already exists");
    assert_eq!(r.tip("twice"), tip);
    r.mara(&["init", "--run", "bad run"])
        .expect_code(1, "an invalid run id")
        .stderr_has("run id");

    // MARA_RUN selects a run; --run beats it.
    r.mara(&["init", "--run", "second"]).ok("second run");
    assert_eq!(r.git(&["config", "mara.run"]).trim(), "second");
    let o = r.mara_in(&["status", "--json"], &[("MARA_RUN", "twice")], None);
    o.ok("status with MARA_RUN");
    let v: serde_json::Value = serde_json::from_str(&o.stdout).expect("status JSON");
    assert_eq!(v["run"], "twice");
    let o = r.mara_in(
        &["--run", "second", "status", "--json"],
        &[("MARA_RUN", "twice")],
        None,
    );
    let v: serde_json::Value = serde_json::from_str(&o.stdout).expect("status JSON");
    assert_eq!(v["run"], "second");

    // Outside any repository.
    let outside = root.join("not-a-repo");
    std::fs::create_dir_all(&outside).expect("creating a plain directory");
    let ceiling = root.to_str().expect("a UTF-8 path");
    for args in [&["init", "--run", "x"][..], &["board"][..]] {
        r.mara_in(
            args,
            &[("GIT_CEILING_DIRECTORIES", ceiling)],
            Some(&outside),
        )
        .expect_code(1, &format!("{args:?} outside a repository"))
        .stderr_has("not inside a git repository");
    }
    assert!(
        !Path::new(&outside).join(".git").exists(),
        "init outside a repository creates nothing"
    );
}
