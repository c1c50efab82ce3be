//! The trust boundary (issue 13): events appended by hand with git plumbing, the way
//! a hostile or broken instance would, are named by `mara verify` and never built
//! on; a clone's record of what it saw survives damage; a run this clone saw is not
//! silently re-created.

use serde_json::json;

use crate::common::{git, TestRepo};

/// Appends a commit to `refs/mara/<run>` by hand, as an attacker with write access
/// to the repository would: `subject`, the event line, mara's trailers, on `tree`
/// (default: the tip's tree), parent the current tip. Returns the new commit.
pub(crate) fn forge(
    r: &TestRepo,
    run: &str,
    subject: &str,
    event: &serde_json::Value,
    tree: Option<&str>,
) -> String {
    let refname = format!("refs/mara/{run}");
    let tip = r.tip(run);
    let tree = match tree {
        Some(t) => t.to_owned(),
        None => git(&r.dir, &["rev-parse", &format!("{tip}^{{tree}}")])
            .trim()
            .to_owned(),
    };
    let seq = event["seq"].as_u64().expect("a seq");
    let mut message = format!("{subject}\n\n{event}\n\nMara-Run: {run}\nMara-Seq: {seq}\n");
    let sender = event["sender"].as_str().expect("a sender");
    if sender.contains('#') {
        message.push_str(&format!("Mara-Instance: {sender}\n"));
    }
    let task = &event["payload"]["task"];
    if let Some(t) = task.as_str().or_else(|| task["id"].as_str()) {
        message.push_str(&format!("Mara-Task: {t}\n"));
    }
    let file = r.write_outside("forged-message.txt", &message);
    let commit = git(
        &r.dir,
        &[
            "commit-tree",
            &tree,
            "-p",
            &tip,
            "-F",
            file.to_str().expect("a UTF-8 path"),
        ],
    )
    .trim()
    .to_owned();
    git(&r.dir, &["update-ref", &refname, &commit, &tip]);
    commit
}

/// The seq the next event gets.
pub(crate) fn next_seq(r: &TestRepo) -> u64 {
    r.board()["version"].as_u64().expect("a version") + 1
}

/// Now, as events store it.
pub(crate) fn now_ts() -> String {
    chrono::Utc::now()
        .format("%Y-%m-%dT%H:%M:%S%.3fZ")
        .to_string()
}

/// Every kind of write a command makes refuses with exit 1, naming `commit` and
/// `why`, and leaves the ref where it is.
fn writes_refuse(r: &TestRepo, run: &str, commit: &str, why: &str) {
    let writes: [(&str, &[&str]); 5] = [
        ("implementer#2", &["claim", "--next"]),
        ("implementer#2", &["claim", "T1"]),
        ("implementer#1", &["done", "T1"]),
        ("implementer#2", &["post", "note", "hello"]),
        ("implementer#2", &["heartbeat"]),
    ];
    for (who, args) in writes {
        let o = r.mara_as(who, args);
        o.expect_code(1, &format!("{args:?} on a forged tip"))
            .stderr_has("refusing to build on")
            .stderr_has(commit)
            .stderr_has(why)
            .stderr_has("mara verify");
        assert_eq!(r.tip(run), commit, "{args:?} wrote nothing");
    }
    let o = r.mara(&["verify"]);
    o.expect_code(1, "verify of a forged tip")
        .stderr_has(commit)
        .stderr_has(why);
}

/// A heartbeat of implementer#2 forged on `tree` (a tree that does not match
/// it): every write refuses to build on it. Returns the forged commit.
fn forged_heartbeat_is_refused(r: &TestRepo, run: &str, tree: &str) -> String {
    let event = json!({"seq": next_seq(r), "ts": now_ts(), "sender": "implementer#2", "type": "heartbeat", "payload": {}});
    let c = forge(r, run, "heartbeat by implementer#2", &event, Some(tree));
    writes_refuse(
        r,
        run,
        &c,
        "its tree does not match the replay of its event",
    );
    c
}

fn claimed_run(run: &str) -> TestRepo {
    let r = TestRepo::with_run(run);
    r.mara(&["task", "add", "T1", "one"]).ok("task add T1");
    r.mara(&["task", "add", "T2", "two"]).ok("task add T2");
    r.mara_as("implementer#1", &["claim", "T1"]).ok("claim T1");
    r
}

#[test]
fn a_tree_that_does_not_match_its_event_is_never_built_on() {
    let run = "forged-tree";
    let r = claimed_run(run);
    // A heartbeat of implementer#2 whose tree hands it T1.
    let task_path = git(&r.dir, &["ls-tree", "-r", "--name-only", &r.tip(run)])
        .lines()
        .find(|l| l.ends_with("/T1.json"))
        .expect("T1's file")
        .to_owned();
    let task = git(
        &r.dir,
        &["cat-file", "-p", &format!("{}:{task_path}", r.tip(run))],
    );
    let stolen = task.replace("\"implementer#1\"", "\"implementer#2\"");
    assert_ne!(stolen, task);
    let tree = r.tree_with(&r.tip(run), &task_path, &stolen);
    let c = forged_heartbeat_is_refused(&r, run, &tree);
    // The forged holder never takes effect: the board still reads implementer#1
    // once the ref is restored, and writes go on.
    git(
        &r.dir,
        &[
            "update-ref",
            &format!("refs/mara/{run}"),
            &format!("{c}^"),
            &c,
        ],
    );
    r.mara_as("implementer#1", &["done", "T1"])
        .ok("the real holder completes T1");
    r.verify_ok();
}

#[test]
fn a_repeated_or_skipped_seq_is_never_built_on() {
    for (what, offset) in [("repeat", 0i64), ("gap", 2)] {
        let run = format!("forged-seq-{what}");
        let r = claimed_run(&run);
        let seq = (next_seq(&r) as i64 - 1 + offset) as u64;
        let event = json!({"seq": seq, "ts": now_ts(), "sender": "operator", "type": "note", "payload": {"note": "hi"}});
        let c = forge(&r, &run, "note by operator: hi", &event, None);
        writes_refuse(&r, &run, &c, &format!("has seq {seq} where"));
    }
}

#[test]
fn an_event_the_rules_forbid_is_never_built_on() {
    let run = "forged-rule";
    let r = claimed_run(run);
    // implementer#2 "claims" T1, which implementer#1 holds, tree and all.
    let seq = next_seq(&r);
    let event = json!({"seq": seq, "ts": now_ts(), "sender": "implementer#2", "type": "claim", "payload": {"task": "T1"}});
    let c = forge(&r, run, "claim T1 by implementer#2", &event, None);
    writes_refuse(
        &r,
        run,
        &c,
        "the rules forbid this event: T1 is held by implementer#1",
    );
}

#[test]
fn an_artifact_path_that_escapes_is_named_by_verify_and_never_built_on() {
    for path in [
        "b/../../../../.git/hooks/post-commit",
        "../outside.md",
        "/etc/passwd",
        "docs/.GIT/config",
        "a\\..\\..\\b",
    ] {
        let run = "forged-artifact";
        let r = claimed_run(run);
        let seq = next_seq(&r);
        let event = json!({"seq": seq, "ts": now_ts(), "sender": "operator", "type": "artifact",
            "payload": {"instance": "implementer#1", "path": path}});
        let subject = format!("artifact {path} of implementer#1 by operator");
        let c = forge(&r, run, &subject, &event, None);
        writes_refuse(&r, run, &c, "the rules forbid this event: artifact path");
        // Nothing was written outside the repository or into its hooks.
        assert!(!r.dir.join(".git/hooks/post-commit").exists(), "{path}");
    }
}

#[test]
fn a_hand_made_event_that_replays_is_built_on() {
    let run = "hand-made";
    let r = claimed_run(run);
    let seq = next_seq(&r);
    let event = json!({"seq": seq, "ts": now_ts(), "sender": "operator", "type": "note", "payload": {"note": "made with git commit-tree"}});
    let c = forge(
        &r,
        run,
        "note by operator: made with git commit-tree",
        &event,
        None,
    );
    r.mara_as("implementer#2", &["claim", "T2"])
        .ok("a write on a sound hand-made event");
    let parent = git(&r.dir, &["rev-parse", &format!("refs/mara/{run}^")]);
    assert_eq!(parent.trim(), c, "built on the hand-made event");
    r.verify_ok();
}

#[test]
fn an_event_from_the_future_is_not_built_on_and_time_may_not_run_backwards() {
    let run = "future";
    let r = claimed_run(run);
    let seq = next_seq(&r);
    // implementer#1 "was seen" in 2099: its lease would never run out.
    let event = json!({"seq": seq, "ts": "2099-01-01T00:00:00.123Z", "sender": "implementer#1", "type": "heartbeat", "payload": {}});
    let c = forge(&r, run, "heartbeat by implementer#1", &event, None);
    writes_refuse(
        &r,
        run,
        &c,
        "2099-01-01T00:00:00.123+00:00, more than 300s ahead of this clock",
    );

    let run = "backwards";
    let r = claimed_run(run);
    let seq = next_seq(&r);
    let past = (chrono::Utc::now() - chrono::Duration::hours(2))
        .format("%Y-%m-%dT%H:%M:%S%.3fZ")
        .to_string();
    let event = json!({"seq": seq, "ts": past, "sender": "operator", "type": "note", "payload": {"note": "hi"}});
    let c = forge(&r, run, "note by operator: hi", &event, None);
    writes_refuse(&r, run, &c, "time went backwards");
}

#[test]
fn a_config_may_set_the_clock_skew() {
    let r = TestRepo::new();
    let cfg = r.write_outside(
        "skew.json",
        r#"{"coordination": {"max_clock_skew_sec": 7200}}"#,
    );
    r.mara(&[
        "init",
        "--run",
        "skew",
        "--config",
        cfg.to_str().expect("UTF-8"),
    ])
    .ok("init with a skew");
    r.mara(&["task", "add", "T1", "one"]).ok("task add");
    let seq = next_seq(&r);
    let soon = (chrono::Utc::now() + chrono::Duration::minutes(30))
        .format("%Y-%m-%dT%H:%M:%S%.3fZ")
        .to_string();
    let event = json!({"seq": seq, "ts": soon, "sender": "operator", "type": "note", "payload": {"note": "hi"}});
    forge(&r, "skew", "note by operator: hi", &event, None);
    r.mara_as("implementer#1", &["claim", "T1"])
        .ok("30 minutes ahead is within a 2-hour skew");
    let bad = r.write_outside(
        "bad-skew.json",
        r#"{"coordination": {"max_clock_skew_sec": 0}}"#,
    );
    r.mara(&[
        "init",
        "--run",
        "skew2",
        "--config",
        bad.to_str().expect("UTF-8"),
    ])
    .expect_code(1, "a zero skew")
    .stderr_has("max_clock_skew_sec");
}

#[test]
fn a_deleted_or_damaged_seen_marker_is_relearned_with_a_warning() {
    let run = "marker";
    let refname = format!("refs/mara/{run}");
    for damage in ["delete", "garbage", "unknown commit"] {
        let r = claimed_run(run);
        let good = r.tip(run);
        let marker = r.dir.join(".git/mara/seen").join(run);
        assert!(marker.exists());
        match damage {
            "delete" => std::fs::remove_file(&marker).expect("deleting the marker"),
            "garbage" => std::fs::write(&marker, "not a commit\n").expect("writing"),
            _ => std::fs::write(&marker, format!("{}\n", "1".repeat(40))).expect("writing"),
        }
        // Rewind the run by hand: the rewrite must still be caught.
        let older = git(&r.dir, &["rev-parse", &format!("{good}~1")])
            .trim()
            .to_owned();
        git(&r.dir, &["update-ref", &refname, &older, &good]);
        let o = r.mara_as("implementer#2", &["post", "note", "after the rewind"]);
        o.expect_code(1, &format!("a write after a rewind, marker {damage}"))
            .stderr_has("warning:")
            .stderr_has("re-learned")
            .stderr_has("was rewritten")
            .stderr_has(&good);
        assert_eq!(r.tip(run), older, "nothing written");
        // Restoring the ref makes the run sound again, and the marker is back.
        git(&r.dir, &["update-ref", &refname, &good, &older]);
        r.mara_as("implementer#2", &["post", "note", "restored"])
            .ok("after restoring");
        let text = std::fs::read_to_string(&marker).expect("the marker is back");
        assert!(text.starts_with(&r.tip(run)), "{text}");
        r.verify_ok();
    }
}

#[test]
fn init_of_a_run_this_clone_saw_is_refused_without_force() {
    let run = "again";
    let r = claimed_run(run);
    let old = r.tip(run);
    git(&r.dir, &["update-ref", "-d", &format!("refs/mara/{run}")]);
    let o = r.mara(&["init", "--run", run]);
    o.expect_code(1, "init of a run this clone saw")
        .stderr_has("was here before")
        .stderr_has(&old)
        .stderr_has("--force");
    assert_eq!(
        git(&r.dir, &["for-each-ref", "refs/mara"]),
        "",
        "nothing written"
    );
    r.mara(&["init", "--run", run, "--force"])
        .ok("init --force");
    r.mara(&["task", "add", "T9", "fresh"])
        .ok("a write on the new run");
    r.verify_ok();
}

#[test]
fn long_ids_are_cut_in_messages_and_invisible_characters_are_escaped() {
    let r = TestRepo::with_run("text");
    let long = "T".repeat(10_000);
    // Ids clap parses are usage errors (2); ids inside a plan are bad input (1).
    let plan = r.write_outside(
        "long.json",
        &format!("[{{\"id\": \"{long}\", \"title\": \"x\"}}]"),
    );
    for (code, args) in [
        (2, vec!["claim", long.as_str()]),
        (2, vec!["task", "add", long.as_str(), "x"]),
        (1, vec!["plan", plan.to_str().expect("UTF-8")]),
    ] {
        let o = r.mara_as("implementer#1", &args);
        o.expect_code(code, "a 10,000-character id");
        assert!(o.stderr.len() < 400, "the id is cut: {}", o.stderr.len());
        o.stderr_has("10000 characters");
    }
    let o = r.mara(&["--as", &format!("implementer#{long}"), "heartbeat"]);
    o.expect_code(1, "a 10,000-character instance");
    o.stderr_has("characters");
    assert!(
        o.stderr.len() < 400,
        "the instance is cut: {}",
        o.stderr.len()
    );

    // A title that would read backwards on a terminal, and one with a hidden word.
    let sneaky = "fix \u{202E}gnol\u{202C} bug\u{200B}s";
    r.mara(&["task", "add", "T1", sneaky]).ok("task add");
    let board = r.mara(&["board"]);
    board.ok("board");
    assert!(
        !board.stdout.contains('\u{202E}') && !board.stdout.contains('\u{200B}'),
        "{}",
        board.stdout
    );
    assert!(
        board.stdout.contains("\\u{202e}gnol\\u{202c}"),
        "{}",
        board.stdout
    );
    let subject = git(&r.dir, &["log", "-1", "--format=%s", "refs/mara/text"]);
    assert!(!subject.contains('\u{202E}'), "{subject}");
    assert!(subject.contains("\\u{202e}"), "{subject}");
    // The stored title is the author's, unchanged.
    let json = r.board();
    assert_eq!(json["tasks"][0]["title"], sneaky);
    r.verify_ok();
}

#[test]
fn a_config_with_a_byte_order_mark_is_named() {
    let r = TestRepo::new();
    let cfg = r.write_outside("bom.json", "\u{feff}{\"coordination\": {}}");
    let o = r.mara(&[
        "init",
        "--run",
        "bom",
        "--config",
        cfg.to_str().expect("UTF-8"),
    ]);
    o.expect_code(1, "a config with a BOM")
        .stderr_has("byte order mark")
        .stderr_has("bom.json");
    assert_eq!(
        git(&r.dir, &["for-each-ref", "refs/mara"]),
        "",
        "nothing written"
    );
}

/// A run made by hand whose config sends every clone to `remote` (a URL or path):
/// the init event and its tree, exactly as mara would write them, pushed to the
/// shared `origin`.
fn publish_run_naming(attacker: &TestRepo, run: &str, remote: &str) {
    let config =
        json!({"run": run, "claim_timeout_sec": 300, "lock_mode": "remote", "remote": remote});
    let pretty = format!("{}\n", serde_json::to_string_pretty(&config).expect("JSON"));
    let blob_file = attacker.write_outside("config.json", &pretty);
    let blob = git(
        &attacker.dir,
        &["hash-object", "-w", blob_file.to_str().expect("UTF-8")],
    )
    .trim()
    .to_owned();
    let listing = attacker.write_outside("tree.txt", &format!("100644 blob {blob}\tconfig.json\n"));
    let tree = std::process::Command::new("git")
        .args(["mktree"])
        .current_dir(&attacker.dir)
        .stdin(std::fs::File::open(&listing).expect("the listing"))
        .output()
        .expect("git mktree");
    let tree = String::from_utf8(tree.stdout)
        .expect("UTF-8")
        .trim()
        .to_owned();
    let event = json!({"seq": 0, "ts": now_ts(), "sender": "attacker", "type": "init", "payload": {"config": config}});
    let message = format!("init {run} by attacker\n\n{event}\n\nMara-Run: {run}\nMara-Seq: 0\n");
    let file = attacker.write_outside("init-message.txt", &message);
    let commit = git(
        &attacker.dir,
        &["commit-tree", &tree, "-F", file.to_str().expect("UTF-8")],
    )
    .trim()
    .to_owned();
    git(
        &attacker.dir,
        &["push", "-q", "origin", &format!("{commit}:refs/mara/{run}")],
    );
}

#[test]
fn a_board_never_chooses_where_a_clone_pushes() {
    let origin = crate::common::Origin::path();
    let (_evil_tmp, _, evil) = crate::common::Origin::bare_only();
    let evil_s = evil.to_str().expect("UTF-8").to_owned();
    let attacker = origin.clone_repo("attacker");
    let run = "lure";
    publish_run_naming(&attacker, run, &evil_s);

    // A clone that joins through its own origin keeps talking to origin only.
    let a = origin.clone_repo("a");
    a.mara(&["sync", "--run", run]).ok("sync through origin");
    a.verify_ok();
    a.mara(&["task", "add", "T1", "one"])
        .ok("a write after joining");
    a.mara_as("implementer#1", &["claim", "T1"]).ok("a claim");
    assert_eq!(
        git(&evil, &["for-each-ref"]),
        "",
        "nothing reached the board's URL"
    );
    assert_eq!(origin.count(run, "claim T1"), 1, "the claim went to origin");
    assert_eq!(
        a.git(&["config", &format!("mara.{run}.remote")]).trim(),
        "origin",
        "the clone recorded its own choice"
    );

    // A clone that fetched the run with plain git has chosen nothing: the board's
    // URL is refused, naming it and what to add.
    let b = origin.clone_repo("b");
    b.git(&[
        "fetch",
        "-q",
        "origin",
        &format!("refs/mara/{run}:refs/mara/{run}"),
    ]);
    let o = b.mara(&["--run", run, "task", "add", "T2", "two"]);
    o.expect_code(1, "a write on a board naming a URL")
        .stderr_has(&evil_s)
        .stderr_has("git remote add")
        .stderr_has("not a remote of this clone");
    for read in [vec!["board", "--fetch"], vec!["log", "--fetch"]] {
        let mut args = vec!["--run", run];
        args.extend(read);
        b.mara(&args)
            .expect_code(1, "a fetch from the board's URL")
            .stderr_has("git remote add");
    }
    assert_eq!(
        git(&evil, &["for-each-ref"]),
        "",
        "nothing reached the board's URL"
    );
    // Choosing origin by name fixes it.
    b.mara(&["sync", "--run", run, "--remote", "origin"])
        .ok("sync --remote origin");
    b.mara(&["--run", run, "task", "add", "T2", "two"])
        .ok("a write after choosing");

    // init and sync take only remotes of this clone's git config.
    let c = origin.clone_repo("c");
    for args in [
        vec!["init", "--run", "r2", "--remote", evil_s.as_str()],
        vec!["sync", "--run", run, "--remote", evil_s.as_str()],
        vec!["init", "--run", "r3", "--remote", "file:///tmp/x.git"],
    ] {
        c.mara(&args)
            .expect_code(1, "a URL as --remote")
            .stderr_has("is not a remote of this clone")
            .stderr_has("git remote add");
    }
    assert_eq!(
        git(&c.dir, &["for-each-ref", "refs/mara"]),
        "",
        "nothing written"
    );
    assert_eq!(git(&evil, &["for-each-ref"]), "", "nothing reached the URL");
}

/// Regression: a clone's recorded remote (`sync --remote`) made every write of a
/// local run push; a local run's writes stay local, and `sync` shares them.
#[test]
fn a_local_run_synced_through_a_remote_still_writes_locally() {
    let origin = crate::common::Origin::path();
    let a = origin.clone_repo("a");
    a.mara(&["init", "--run", "loc"]).ok("init a local run");
    a.mara(&["sync", "--run", "loc", "--remote", "origin"])
        .ok("share it once");
    let shared = origin.tip("loc");
    a.mara(&["task", "add", "T1", "one"]).ok("a local write");
    assert_eq!(origin.tip("loc"), shared, "the write was not pushed");
    a.mara(&["sync", "--run", "loc"]).ok("sync pushes it");
    assert_eq!(origin.tip("loc"), a.tip("loc"));
}

/// The indexes are part of the tree a replay rebuilds (issue 16): an entry slipped
/// into a ready list (T1, held by implementer#1, offered to `claim --next`), or
/// counts that lie, are never built on and `verify` names them.
#[test]
fn a_forged_index_is_never_built_on() {
    let run = "forged-index";
    let r = claimed_run(run);
    let tip = r.tip(run);
    let files = git(&r.dir, &["ls-tree", "-r", "--name-only", &tip]);
    let t2 = files
        .lines()
        .find(|l| l.starts_with("index/ready/_any/") && l.ends_with("-T2"))
        .expect("T2 is in the ready list")
        .to_owned();
    assert!(
        !files
            .lines()
            .any(|l| l.starts_with("index/ready/") && l.ends_with("-T1")),
        "T1 is held, not ready:\n{files}"
    );
    let counts = git(
        &r.dir,
        &["cat-file", "-p", &format!("{tip}:index/counts.json")],
    );
    let forged = [
        // T1 listed as ready, first in pick order.
        r.tree_with(&tip, &format!("{}-T1", &t2[..t2.len() - 5]), ""),
        r.tree_with(
            &tip,
            "index/counts.json",
            &counts.replace("\"open\": 1", "\"open\": 0"),
        ),
    ];
    for tree in forged {
        let c = forged_heartbeat_is_refused(&r, run, &tree);
        git(
            &r.dir,
            &["update-ref", &format!("refs/mara/{run}"), &tip, &c],
        );
    }
    let o = r.mara_as("implementer#2", &["claim", "--next"]);
    o.ok("claim --next on the restored ref");
    assert!(o.stdout.contains("T2"), "{}", o.stdout);
    r.verify_ok();
}

/// The raw entries of tree `id` (`mode name`, id), as `git cat-file tree` prints them.
fn raw_entries(r: &TestRepo, id: &str) -> Vec<(Vec<u8>, [u8; 20])> {
    let out = std::process::Command::new("git")
        .args(["cat-file", "tree", id])
        .current_dir(&r.dir)
        .output()
        .expect("git cat-file");
    let mut bytes = &out.stdout[..];
    let mut entries = vec![];
    while let Some(nul) = bytes.iter().position(|&b| b == 0) {
        let head = bytes[..nul].to_vec();
        let id: [u8; 20] = bytes[nul + 1..nul + 21].try_into().expect("20 bytes");
        entries.push((head, id));
        bytes = &bytes[nul + 21..];
    }
    entries
}

/// A tree written from `entries` as they come, unchecked (`hash-object
/// --literally`), as a hostile instance could write one.
fn literal_tree(r: &TestRepo, entries: &[(Vec<u8>, [u8; 20])]) -> String {
    let mut raw = vec![];
    for (head, id) in entries {
        raw.extend_from_slice(head);
        raw.push(0);
        raw.extend_from_slice(id);
    }
    let file = r.root().join("literal-tree");
    std::fs::write(&file, raw).expect("writing the tree");
    git(
        &r.dir,
        &[
            "hash-object",
            "--literally",
            "-t",
            "tree",
            "-w",
            file.to_str().expect("UTF-8"),
        ],
    )
    .trim()
    .to_owned()
}

/// Trees are written by hand, merging a base tree's entries (taken to be in git's
/// order) with an event's: an event whose tree holds exactly what its replay
/// holds, but out of git's order or with an entry twice, is never built on (every
/// write refuses, naming the commit and `mara verify`; verify names the tree), so
/// no writer ever merges into such a tree.
#[test]
fn a_tree_out_of_git_order_or_with_an_entry_twice_is_never_built_on() {
    let run = "disorder";
    let r = claimed_run(run);
    // A real heartbeat, taken back: its message and the entries of its tree.
    r.mara_as("implementer#2", &["heartbeat"]).ok("heartbeat");
    let real = r.tip(run);
    let raw = git(&r.dir, &["cat-file", "commit", &real]);
    let message = raw.split_once("\n\n").expect("a message").1.to_owned();
    let tree = git(&r.dir, &["rev-parse", &format!("{real}^{{tree}}")])
        .trim()
        .to_owned();
    let entries = raw_entries(&r, &tree);
    assert!(
        entries.len() >= 3,
        "config, index, instances, tasks: {entries:?}"
    );
    let mut reversed = entries.clone();
    reversed.reverse();
    let mut twice = entries.clone();
    twice.insert(1, entries[0].clone());
    for (what, forged) in [("out of order", reversed), ("an entry twice", twice)] {
        git(
            &r.dir,
            &[
                "update-ref",
                &format!("refs/mara/{run}"),
                &format!("{real}^"),
            ],
        );
        let bad = literal_tree(&r, &forged);
        assert_ne!(bad, tree, "{what}: a different tree");
        let file = r.write_outside("forged-message.txt", &message);
        let commit = git(
            &r.dir,
            &[
                "commit-tree",
                &bad,
                "-p",
                &format!("{real}^"),
                "-F",
                file.to_str().expect("UTF-8"),
            ],
        )
        .trim()
        .to_owned();
        git(
            &r.dir,
            &["update-ref", &format!("refs/mara/{run}"), &commit],
        );
        for (who, args) in [
            ("implementer#2", &["claim", "T2"][..]),
            ("implementer#1", &["done", "T1"][..]),
            ("implementer#2", &["post", "note", "hello"][..]),
        ] {
            r.mara_as(who, args)
                .expect_code(1, &format!("{what}: {args:?}"))
                .stderr_has(&commit)
                .stderr_has("mara verify");
            assert_eq!(r.tip(run), commit, "{what}: {args:?} wrote nothing");
        }
        r.mara(&["verify"])
            .expect_code(1, &format!("{what}: verify"))
            .stderr_has(&commit)
            .stderr_has("its tree does not match the replay of its event");
    }
    // Restored to the real heartbeat, the run goes on.
    git(&r.dir, &["update-ref", &format!("refs/mara/{run}"), &real]);
    r.mara_as("implementer#1", &["done", "T1"])
        .ok("done after the restore");
    r.verify_ok();
}
