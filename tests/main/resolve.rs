//! The resolve task's conflict is a field the board checks (issue 15): forged
//! resolve tasks and edits are named by `verify` and never built on; a resolution
//! merges without review, but only with changes to the files in conflict; a re-run
//! records a clash once.

use serde_json::json;

use crate::common::TestRepo;
use crate::integrate::{
    all_refs, events_of_type, resolve_on, rev, show, ten_lines, three_branches,
};
use crate::trust::{forge, next_seq, now_ts};

const RUN: &str = "r";
const CB: &str = "mara/r/conflicts/implementer_2";
const INTEGRATION: &str = "mara/r/integration";

/// A `task_add` of `id` carrying `resolves` for `branch`, as `sender` would forge it.
fn forged_resolve_task(r: &TestRepo, sender: &str, id: &str, branch: &str) -> String {
    let event = json!({"seq": next_seq(r), "ts": now_ts(), "sender": sender, "type": "task_add",
        "payload": {"task": {"id": id, "title": "resolve", "deps": [], "paths": [], "role": "integrator",
            "resolves": {"branch": branch, "ours": "a".repeat(40), "theirs": "b".repeat(40)}}}});
    forge(
        r,
        RUN,
        &format!("add {id} by {sender}: resolve"),
        &event,
        None,
    )
}

/// `verify` names `commit` and `why`, and no writer builds on it.
fn named_and_never_built_on(r: &TestRepo, commit: &str, why: &str) {
    r.mara(&["verify"])
        .expect_code(1, "verify of a forged resolve task")
        .stderr_has(commit)
        .stderr_has(why);
    r.mara_as("implementer#2", &["heartbeat"])
        .expect_code(1, "a write on a forged resolve task")
        .stderr_has("refusing to build on")
        .stderr_has(commit)
        .stderr_has(why);
    assert_eq!(r.tip(RUN), commit, "nothing was built on it");
}

#[test]
fn a_resolve_task_forged_by_another_role_or_for_another_branch_is_never_built_on() {
    let cases = [
        (
            "implementer#1",
            CB,
            "implementer#1 may not add the resolve task",
        ),
        (
            "integrator#1",
            "main",
            "names the branch \"main\", which is not a conflicts branch of run r",
        ),
        (
            "integrator#1",
            "mara/other/conflicts/implementer_2",
            "which is not a conflicts branch of run r (mara/r/conflicts/<role>_<n>)",
        ),
    ];
    for (sender, branch, why) in cases {
        let r = TestRepo::with_run(RUN);
        let c = forged_resolve_task(&r, sender, "resolve-implementer_2", branch);
        named_and_never_built_on(&r, &c, why);
    }
    // An edit that makes an ordinary task a resolve task.
    let r = TestRepo::with_run(RUN);
    r.mara(&["task", "add", "T1", "one"]).ok("task add");
    let event = json!({"seq": next_seq(&r), "ts": now_ts(), "sender": "integrator#1", "type": "task_edit",
        "payload": {"task": "T1", "resolves": {"branch": CB, "ours": "a".repeat(40), "theirs": "b".repeat(40)}}});
    let c = forge(&r, RUN, "edit T1 by integrator#1", &event, None);
    named_and_never_built_on(&r, &c, "an edit cannot set what T1 resolves");
}

#[test]
fn the_integrator_records_the_conflict_on_the_task_and_a_second_task_for_it_is_refused() {
    let r = three_branches();
    r.mara(&["integrate"]).expect_code(3, "branch 2 conflicts");
    let t = r.task("resolve-implementer_2");
    // The sides the conflicted merge joined: the integration branch then, branch 2.
    assert_eq!(
        t["resolves"],
        json!({"branch": CB, "ours": rev(&r, INTEGRATION), "theirs": rev(&r, "mara/r/implementer_2")})
    );
    assert_eq!(rev(&r, &format!("{CB}^1")), rev(&r, INTEGRATION));
    let shown = r.mara(&["show", "resolve-implementer_2"]);
    assert!(
        shown.stdout.contains(&format!(
            "resolves: the conflict on {CB} (merging {} into {})",
            rev(&r, "mara/r/implementer_2"),
            rev(&r, INTEGRATION)
        )),
        "{}",
        shown.stdout
    );
    // A second unfinished task naming the same branch.
    let c = forged_resolve_task(&r, "integrator#1", "resolve-implementer_2-2", CB);
    named_and_never_built_on(
        &r,
        &c,
        "resolve-implementer_2 already resolves mara/r/conflicts/implementer_2 and is open",
    );
}

/// Claims and resolves the conflict of `three_branches` on its conflicts branch
/// (both files, plus `extra` files), says it is done; returns the fixed x.txt.
fn resolve_all(r: &TestRepo, extra: &[(&str, String)]) -> String {
    r.mara(&["integrate"]).expect_code(3, "branch 2 conflicts");
    let fixed_x = ten_lines().replace("line 3\n", "line 3 by one and two\n");
    let fixed_y = ten_lines().replace("line 7\n", "line 7 by two and three\n");
    let mut files = vec![("x.txt", fixed_x.clone()), ("y.txt", fixed_y)];
    files.extend(extra.iter().cloned());
    resolve_on(r, CB, &files, "integrator#1");
    r.mara_as("integrator#1", &["claim", "resolve-implementer_2"])
        .ok("claim");
    r.mara_as("integrator#1", &["done", "resolve-implementer_2"])
        .ok("done");
    fixed_x
}

#[test]
fn a_resolution_that_changes_a_file_outside_the_conflict_is_refused_naming_it() {
    let r = three_branches();
    resolve_all(&r, &[("README.md", "# smuggled\n".to_owned())]);
    let before = all_refs(&r);
    let out = r.mara(&["integrate", "--continue"]);
    out.expect_code(1, "a change outside the conflict")
        .stderr_has(CB)
        .stderr_has("it also changes README.md, which is not in conflict: a resolution may change only x.txt, y.txt")
        .stderr_has("so undo that change; finish it on that branch");
    assert_eq!(out.stderr.trim().lines().count(), 1, "{}", out.stderr);
    assert_eq!(all_refs(&r), before, "a refusal moves nothing");
    // Undone on the branch: it merges.
    let readme = show(&r, "main", "README.md");
    resolve_on(&r, CB, &[("README.md", readme.clone())], "integrator#1");
    r.mara(&["integrate", "--continue"])
        .ok("the resolution merges");
    assert_eq!(show(&r, INTEGRATION, "README.md"), readme);
    assert_eq!(events_of_type(&r, "resolved").len(), 1);
    r.verify_ok();
}

#[test]
fn a_resolution_may_bring_in_what_the_integration_branch_gained_since() {
    let r = three_branches();
    r.mara(&["integrate"]).expect_code(3, "branch 2 conflicts");
    // Half a resolution: the branch is the resolver's now.
    let fixed_x = ten_lines().replace("line 3\n", "line 3 by one and two\n");
    resolve_on(&r, CB, &[("x.txt", fixed_x)], "integrator#1");
    // Branch 1 goes on; the integration branch gains z.txt.
    r.git(&["switch", "-q", "mara/r/implementer_1"]);
    std::fs::write(r.dir.join("z.txt"), "z\n").expect("writing z.txt");
    r.git(&["add", "z.txt"]);
    r.git(&["commit", "-q", "-m", "z by one"]);
    r.git(&["switch", "-q", "main"]);
    r.mara(&["integrate"])
        .expect_code(3, "branch 2 still conflicts");
    assert_eq!(show(&r, INTEGRATION, "z.txt"), "z\n");
    // The resolver merges the integration branch in, and finishes.
    r.git(&["switch", "-q", CB]);
    r.git(&["merge", "-q", "--no-edit", INTEGRATION]);
    r.git(&["switch", "-q", "main"]);
    let fixed_y = ten_lines().replace("line 7\n", "line 7 by two and three\n");
    resolve_on(&r, CB, &[("y.txt", fixed_y)], "integrator#1");
    r.mara_as("integrator#1", &["claim", "resolve-implementer_2"])
        .ok("claim");
    r.mara_as("integrator#1", &["done", "resolve-implementer_2"])
        .ok("done");
    r.mara(&["integrate", "--continue"])
        .ok("z.txt is the integration branch's, not the resolution's");
    assert_eq!(show(&r, INTEGRATION, "z.txt"), "z\n");
    r.verify_ok();
}

#[test]
fn a_rerun_records_a_clash_once_and_a_new_clash_again() {
    let r = three_branches();
    r.mara(&["integrate"]).expect_code(3, "branch 2 conflicts");
    let first = events_of_type(&r, "conflict");
    assert_eq!(first.len(), 2, "x.txt and y.txt: {first:?}");
    r.mara(&["integrate"]).expect_code(3, "the same clash");
    assert_eq!(events_of_type(&r, "conflict").len(), 2, "nothing new");
    // Branch 2 changes x.txt again: a new clash, recorded.
    r.git(&["switch", "-q", "mara/r/implementer_2"]);
    std::fs::write(
        r.dir.join("x.txt"),
        ten_lines().replace("line 3\n", "line 3 by two, again\n"),
    )
    .expect("writing x.txt");
    r.git(&["commit", "-q", "-am", "x again"]);
    r.git(&["switch", "-q", "main"]);
    r.mara(&["integrate"]).expect_code(3, "a new clash");
    let all = events_of_type(&r, "conflict");
    assert_eq!(all.len(), 4, "both files clash with the new tip: {all:?}");
    let theirs = rev(&r, "mara/r/implementer_2");
    assert!(
        all[2..].iter().all(|e| e["payload"]["theirs"] == theirs),
        "{all:?}"
    );
    // The resolve task of the old clash is replaced by one for the new.
    assert_eq!(r.task("resolve-implementer_2")["status"], "cancelled");
    let t = r.task("resolve-implementer_2-2");
    assert_eq!(t["status"], "open");
    assert_eq!(t["resolves"]["theirs"], theirs);
    r.mara(&["integrate"]).expect_code(3, "the same new clash");
    assert_eq!(events_of_type(&r, "conflict").len(), 4);
    r.verify_ok();
}

#[test]
fn an_implementer_running_integrate_into_conflicts_is_refused_before_anything_moves() {
    let r = three_branches();
    let before = all_refs(&r);
    r.mara_as("implementer#1", &["integrate"])
        .expect_code(1, "an implementer leaves conflicts")
        .stderr_has("implementer#1 may not add the resolve tasks this integration leaves (1 branch(es) in conflict")
        .stderr_has("nothing was moved");
    assert_eq!(all_refs(&r), before);
    assert!(events_of_type(&r, "conflict").is_empty());
    r.mara_as("integrator#1", &["integrate"])
        .expect_code(3, "the integrator may");
    assert_eq!(r.task("resolve-implementer_2")["status"], "open");
    // With the task on the board, anyone may re-run it: it adds none.
    r.mara_as("implementer#1", &["integrate"])
        .expect_code(3, "the same clash, its task exists");
}
