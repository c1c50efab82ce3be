//! Reads through the board's indexes (issue 16, "reads cost what they return"):
//! random runs written through the ledger, where every event loads only the part
//! of the board it needs, read back through the indexes and compared with the
//! same read of the whole board; and `verify` (the full replay, indexes included)
//! passes at the end.

use std::path::Path;

use mara::board::{self, EventKind, NewTask, RunConfig, TaskStatus, Verdict, BOARD_FORMAT};
use mara::ids::{InstanceId, TaskId};
use mara::ledger::{now, Draft, Ledger};
use proptest::prelude::*;
use proptest::strategy::ValueTree;

use crate::common::{git, TestRepo};

const N: usize = 10;
const ROLES: [Option<&str>; 3] = [None, Some("implementer"), Some("tester")];
const WHO: [&str; 5] = [
    "implementer#1",
    "implementer#2",
    "tester#1",
    "reviewer#1",
    "reviewer#2",
];

#[derive(Clone, Debug)]
enum Op {
    Claim(usize, usize),
    Next(usize),
    Release(usize, usize),
    Done(usize, usize),
    Verdict(usize, usize, bool),
    Cancel(usize, bool),
    Priority(usize, i64),
    Add(usize),
}

fn op() -> impl Strategy<Value = Op> {
    let who = 0..WHO.len();
    let task = 0..N + 3;
    prop_oneof![
        3 => (who.clone(), task.clone()).prop_map(|(w, t)| Op::Claim(w, t)),
        4 => who.clone().prop_map(Op::Next),
        1 => (who.clone(), task.clone()).prop_map(|(w, t)| Op::Release(w, t)),
        3 => (who.clone(), task.clone()).prop_map(|(w, t)| Op::Done(w, t)),
        2 => (who, task.clone(), any::<bool>()).prop_map(|(w, t, a)| Op::Verdict(w, t, a)),
        1 => (task.clone(), any::<bool>()).prop_map(|(t, d)| Op::Cancel(t, d)),
        1 => (task.clone(), -2i64..3).prop_map(|(t, p)| Op::Priority(t, p)),
        1 => (0..3usize).prop_map(Op::Add),
    ]
}

fn tid(i: usize) -> TaskId {
    format!("T{i}").parse().expect("task id")
}

fn iid(w: usize) -> InstanceId {
    WHO[w].parse().expect("instance id")
}

fn new_task(i: usize, role: usize, deps: &[usize], priority: i64) -> NewTask {
    NewTask {
        id: tid(i),
        title: format!("task {i}"),
        deps: deps.iter().map(|d| tid(*d)).collect(),
        paths: vec![],
        body: None,
        role: ROLES[role % ROLES.len()].map(str::to_owned),
        priority,
        resolves: None,
        status: None,
        claimed_by: None,
    }
}

/// Appends `kind` as `sender`; the board may refuse it (that is part of the run).
fn write(ledger: &Ledger, sender: &str, kind: EventKind) {
    let r = ledger.append(sender, |_, _| Ok(Draft::Write(kind.clone())));
    if let Err(e) = r {
        assert!(
            e.downcast_ref::<board::Refusal>().is_some()
                || e.downcast_ref::<board::Invalid>().is_some(),
            "{sender} {kind:?}: {e:#}"
        );
    }
}

/// Every read through the indexes equals the same read of the whole board.
fn reads_agree(ledger: &Ledger) {
    let snap = ledger.snapshot().expect("snapshot");
    let full = snap.full_board().expect("full board");
    let lease = full.lease();
    let t = now();
    for when in [t, t + lease + chrono::TimeDelta::seconds(1)] {
        for w in 0..WHO.len() {
            let me = iid(w);
            let indexed = snap.next_ready(&me, when).expect("indexed read");
            assert_eq!(
                indexed,
                board::next_ready(&full, &me, when),
                "claim --next of {me} at seq {}",
                snap.seq
            );
        }
    }
    assert_eq!(snap.task_counts().expect("counts"), full.counts());
    let status = snap.working_board().expect("status board");
    assert_eq!(status.instances, full.instances);
    for w in 0..WHO.len() {
        assert_eq!(status.held_by(&iid(w)), full.held_by(&iid(w)));
    }
    assert_eq!(status.unreviewed(), full.unreviewed());
    let reviewing = |b: &board::Board| -> Vec<(TaskId, Option<InstanceId>)> {
        b.ordered_tasks()
            .into_iter()
            .filter(|t| t.status == TaskStatus::Review)
            .map(|t| (t.id.clone(), t.reviewer.clone()))
            .collect()
    };
    assert_eq!(reviewing(&status), reviewing(&full));
}

fn run_case(review: bool, roles: Vec<usize>, deps: Vec<Vec<bool>>, ops: Vec<Op>) {
    let plan: Vec<NewTask> = (0..N)
        .map(|i| {
            let d: Vec<usize> = (0..i).filter(|&j| deps[i][j]).collect();
            new_task(i, roles[i], &d, (i % 3) as i64 - 1)
        })
        .collect();
    run_plan(review, plan, ops, 1);
}

/// Writes `plan` then `ops` through the ledger, comparing the reads every
/// `every` events, and verifies the log.
fn run_plan(review: bool, plan: Vec<NewTask>, ops: Vec<Op>, every: usize) {
    let n = plan.len();
    let r = TestRepo::new();
    let repo = git2::Repository::open(&r.dir).expect("open");
    let mut config = RunConfig::new("r".parse().expect("run"), 300);
    assert_eq!(config.format, Some(BOARD_FORMAT));
    if review {
        config.review_role = Some("reviewer".into());
    }
    let (ledger, _) = Ledger::init(repo, config, "planner").expect("init");
    write(&ledger, "planner", EventKind::Plan { tasks: plan });
    reads_agree(&ledger);
    let mut added = n;
    for (k, op) in ops.into_iter().enumerate() {
        match op {
            Op::Claim(w, t) => write(&ledger, WHO[w], EventKind::Claim { task: tid(t) }),
            Op::Next(w) => {
                let me = iid(w);
                let next = ledger.read(|s| s.next_ready(&me, now())).expect("read");
                if let Ok(task) = next {
                    write(&ledger, WHO[w], EventKind::Claim { task });
                }
            }
            Op::Release(w, t) => write(
                &ledger,
                WHO[w],
                EventKind::Release {
                    task: tid(t),
                    forced: None,
                    reason: None,
                },
            ),
            Op::Done(w, t) => write(
                &ledger,
                WHO[w],
                EventKind::Done {
                    task: tid(t),
                    artifact: None,
                    forced: None,
                    commit: None,
                    branch: None,
                    note: None,
                },
            ),
            Op::Verdict(w, t, approve) => write(
                &ledger,
                WHO[w],
                EventKind::Review {
                    task: tid(t),
                    verdict: if approve {
                        Verdict::Approve
                    } else {
                        Verdict::Changes
                    },
                    note: (!approve).then(|| "again".to_owned()),
                },
            ),
            Op::Cancel(t, drop_deps) => write(
                &ledger,
                "planner",
                EventKind::TaskCancel {
                    task: tid(t),
                    reason: None,
                    drop_deps,
                },
            ),
            Op::Priority(t, p) => write(
                &ledger,
                "planner",
                EventKind::TaskEdit {
                    task: tid(t),
                    title: None,
                    body: None,
                    paths: None,
                    add_paths: vec![],
                    deps: None,
                    role: None,
                    priority: Some(p),
                    resolves: None,
                },
            ),
            Op::Add(role) => {
                // A task waiting for the first open ones.
                let deps: Vec<usize> = (0..2).map(|k| (added + k) % n).collect();
                write(
                    &ledger,
                    "planner",
                    EventKind::TaskAdd {
                        task: new_task(added, role, &deps, 0),
                    },
                );
                added += 1;
            }
        }
        if k % every == 0 {
            reads_agree(&ledger);
        }
    }
    reads_agree(&ledger);
    let (problems, _) = ledger.verify().expect("verify runs");
    assert!(problems.is_empty(), "{problems:#?}");
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: 12,
        failure_persistence: None,
        ..ProptestConfig::default()
    })]

    /// Claims, releases, completions, reviews, cancels and edits written as the
    /// commands write them: the indexed reads agree with the whole board after
    /// every event, and the log verifies.
    #[test]
    fn indexed_reads_agree_with_the_whole_board(
        review in any::<bool>(),
        roles in prop::collection::vec(0..ROLES.len(), N),
        deps in prop::collection::vec(prop::collection::vec(prop::bool::weighted(0.25), N), N),
        ops in prop::collection::vec(op(), 1..60),
    ) {
        run_case(review, roles, deps, ops);
    }
}

/// The same on a 10,000-task board (one plan; each task waits for up to two
/// earlier ones, priorities from -2 to 2), with `claim --next` across the board
/// and the other ops on its first tasks: reads compared every 60 events.
#[test]
fn indexed_reads_agree_on_a_10000_task_board() {
    const BIG: usize = 10_000;
    let mut rng = fastrand::Rng::with_seed(16);
    let plan: Vec<NewTask> = (0..BIG)
        .map(|i| {
            let mut deps = std::collections::BTreeSet::new();
            for _ in 0..2 {
                if i > 0 && rng.f32() < 0.3 {
                    deps.insert(rng.usize(0..i));
                }
            }
            let deps: Vec<usize> = deps.into_iter().collect();
            new_task(i, i % 7, &deps, (i % 5) as i64 - 2)
        })
        .collect();
    let mut runner = proptest::test_runner::TestRunner::deterministic();
    let ops: Vec<Op> = (0..240)
        .map(|_| op().new_tree(&mut runner).expect("an op").current())
        .collect();
    run_plan(true, plan, ops, 60);
}

/// A format-1 run (made before the indexes) still claims, reads and verifies: its
/// trees gain no index.
#[test]
fn a_run_without_indexes_reads_the_whole_board() {
    let r = TestRepo::new();
    let dir = r.dir.clone();
    let repo = git2::Repository::open(&dir).expect("open");
    let mut config = RunConfig::new("old".parse().expect("run"), 300);
    config.format = None;
    let (ledger, _) = Ledger::init(repo, config, "planner").expect("init");
    write(
        &ledger,
        "planner",
        EventKind::Plan {
            tasks: vec![new_task(0, 0, &[], 0), new_task(1, 0, &[0], 0)],
        },
    );
    reads_agree(&ledger);
    r.mara_as("implementer#1", &["claim", "--next", "--run", "old"])
        .ok("claim --next on a format-1 run");
    reads_agree(&ledger);
    assert!(!has_index(&dir, "old"), "a format-1 run gained an index");
    let (problems, _) = ledger.verify().expect("verify");
    assert!(problems.is_empty(), "{problems:#?}");
}

fn has_index(dir: &Path, run: &str) -> bool {
    git(
        dir,
        &["ls-tree", "--name-only", &format!("refs/mara/{run}")],
    )
    .lines()
    .any(|l| l == "index")
}
