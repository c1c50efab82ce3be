//! Property tests over every parser of outside input: ids, events, configs, role
//! files and plans never panic, and what they accept is safe to use.
//!
//! Random text is nearly never JSON, so a property over it tests little beyond the
//! lexer's refusal (issue 17). The documents here are JSON of each parser's shape (the keys it knows, values of
//! the right type most of the time) with random values, so the checks behind the
//! lexer run: types, ids, unknown keys, missing fields, and what an accepted value
//! turns into. A test counts the accepted documents, so a generator that drifts
//! from the parsers' shapes fails instead of testing refusals again.

use std::sync::atomic::{AtomicUsize, Ordering};

use proptest::prelude::*;
use proptest::test_runner::{Config, TestRunner};
use serde_json::{json, Map, Value};

use crate::board::{one_line, Event, NewTask};
use crate::config::{from_value, parse_json, RoleFile, SeedConfig};
use crate::ids::{InstanceId, RunId, TaskId};

fn json_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        5 => scalar_of(".{0,12}"),
        1 => prop_oneof![
            Just("roles"),
            Just("id"),
            Just("file"),
            Just("instances"),
            Just("T1"),
            Just("open")
        ]
        .prop_map(|s| Value::String(s.to_owned())),
    ];
    leaf.prop_recursive(4, 48, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            prop::collection::btree_map(
                prop_oneof![
                    Just("roles".to_owned()),
                    Just("coordination".to_owned()),
                    Just("outputs".to_owned()),
                    Just("id".to_owned()),
                    Just("title".to_owned()),
                    Just("deps".to_owned()),
                    Just("paths".to_owned()),
                    Just("file".to_owned()),
                    Just("instances".to_owned()),
                    Just("command".to_owned()),
                    Just("claim_timeout_sec".to_owned()),
                    Just("lock_mode".to_owned()),
                    Just("pattern".to_owned()),
                    ".{0,6}"
                ],
                inner,
                0..6
            )
            .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

/// Any JSON scalar: the wrong type for most fields.
fn scalar() -> BoxedStrategy<Value> {
    scalar_of("\\PC{0,8}")
}

/// Any JSON scalar, its strings matching the regex `string`.
fn scalar_of(string: &'static str) -> BoxedStrategy<Value> {
    prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        any::<f64>()
            .prop_map(|f| serde_json::Number::from_f64(f).map_or(Value::Null, Value::Number)),
        string.prop_map(Value::String),
    ]
    .boxed()
}

/// A string from `pool` (values a parser accepts), or a random one, or sometimes
/// a value of another type.
fn word(pool: &'static [&'static str]) -> BoxedStrategy<Value> {
    prop_oneof![
        6 => prop::sample::select(pool).prop_map(|s| json!(s)),
        2 => "[a-zA-Z0-9#_./<>*-]{0,12}".prop_map(Value::String),
        1 => "\\PC{0,16}".prop_map(Value::String),
        1 => scalar(),
    ]
    .boxed()
}

/// Free text: any string, sometimes another type.
fn text() -> BoxedStrategy<Value> {
    prop_oneof![9 => "\\PC{0,40}".prop_map(Value::String), 1 => scalar()].boxed()
}

/// A count or a number of seconds: mostly small, sometimes out of range or not a
/// number.
fn number() -> BoxedStrategy<Value> {
    prop_oneof![
        6 => (0u64..2000).prop_map(Value::from),
        1 => any::<u64>().prop_map(Value::from),
        1 => any::<i64>().prop_map(Value::from),
        1 => scalar(),
    ]
    .boxed()
}

fn list(of: BoxedStrategy<Value>) -> BoxedStrategy<Value> {
    prop_oneof![
        9 => prop::collection::vec(of, 0..4).prop_map(Value::Array),
        1 => scalar(),
    ]
    .boxed()
}

/// An object with the given keys, each present most of the time, and now and
/// then a key no parser knows.
fn object(fields: Vec<(&'static str, BoxedStrategy<Value>)>) -> BoxedStrategy<Value> {
    let (keys, values): (Vec<_>, Vec<_>) = fields
        .into_iter()
        .map(|(k, v)| (k, prop::option::weighted(0.9, v)))
        .unzip();
    (
        values,
        prop::option::weighted(0.05, ("[a-z_]{1,8}", scalar())),
    )
        .prop_map(move |(values, extra)| {
            let mut m: Map<String, Value> = keys
                .iter()
                .zip(values)
                .filter_map(|(k, v)| Some(((*k).to_owned(), v?)))
                .collect();
            if let Some((k, v)) = extra {
                m.insert(k, v);
            }
            Value::Object(m)
        })
        .boxed()
}

const TASKS: &[&str] = &["T1", "T2", "api-3", "T1.b"];
const INSTANCES: &[&str] = &["implementer#1", "reviewer#2", "architect#1"];
const PATHS: &[&str] = &["src/**", "docs/api.md", "implementer_1.md", "a/*.rs"];

fn task_id() -> BoxedStrategy<Value> {
    word(TASKS)
}

fn instance() -> BoxedStrategy<Value> {
    word(INSTANCES)
}

/// A task of a plan or a `task_add` event (the seed's `Task`).
fn new_task() -> BoxedStrategy<Value> {
    object(vec![
        ("id", task_id()),
        ("title", text()),
        ("deps", list(task_id())),
        ("paths", list(word(PATHS))),
        ("status", word(&["open", "claimed", "done"])),
        (
            "claimed_by",
            prop_oneof![Just(Value::Null), instance()].boxed(),
        ),
    ])
}

fn run_config() -> BoxedStrategy<Value> {
    object(vec![
        ("run", word(&["demo", "sprint-2", "r1"])),
        ("claim_timeout_sec", number()),
        ("lock_mode", word(&["ref", "file_lock", "remote"])),
        ("remote", word(&["origin", "upstream"])),
        (
            "outputs_pattern",
            word(&["<role>_<instance>.md", "out/<role>.md"]),
        ),
        ("max_clock_skew_sec", number()),
    ])
}

/// An event line's payload for each event type, and a channel message.
fn event_body() -> BoxedStrategy<(Value, Value)> {
    let typed = |t: &'static str, payload: BoxedStrategy<Value>| {
        payload.prop_map(move |p| (json!(t), p)).boxed()
    };
    let forced = || prop_oneof![Just(Value::Null), instance()].boxed();
    prop_oneof![
        typed("init", object(vec![("config", run_config())])),
        typed("task_add", object(vec![("task", new_task())])),
        typed("plan", object(vec![("tasks", list(new_task()))])),
        typed("claim", object(vec![("task", task_id())])),
        typed(
            "reclaim",
            object(vec![("task", task_id()), ("previous", instance())])
        ),
        typed(
            "release",
            object(vec![
                ("task", task_id()),
                ("forced", forced()),
                ("reason", text())
            ])
        ),
        typed(
            "done",
            object(vec![
                ("task", task_id()),
                ("artifact", word(PATHS)),
                ("forced", forced())
            ])
        ),
        typed("heartbeat", object(vec![])),
        typed(
            "instance",
            object(vec![
                ("instance", instance()),
                ("status", word(&["starting", "running", "exited", "failed"])),
                ("reason", text()),
                (
                    "place",
                    object(vec![
                        ("worktree", word(PATHS)),
                        ("branch", word(&["mara/demo/implementer_1"])),
                        ("log", word(PATHS)),
                    ])
                ),
            ])
        ),
        typed(
            "artifact",
            object(vec![
                ("instance", instance()),
                ("path", word(PATHS)),
                ("branch", word(&["mara/demo/implementer_1"])),
            ])
        ),
        typed(
            "conflict",
            object(vec![
                ("file", word(PATHS)),
                ("branch", word(&["mara/demo/implementer_2"])),
                ("kind", word(&["content", "delete"])),
                ("instances", list(instance())),
                ("tasks", list(task_id())),
                ("action", text()),
            ])
        ),
        typed(
            "progress",
            object(vec![
                (
                    "commit",
                    word(&["0123456789abcdef0123456789abcdef01234567"])
                ),
                ("task", task_id()),
            ])
        ),
        typed(
            "stall",
            object(vec![
                (
                    "last",
                    object(vec![
                        ("seq", number()),
                        ("kind", word(&["claim", "init", "note"])),
                        ("ts", word(&["2026-01-01T10:00:00.123Z", "yesterday"])),
                    ])
                ),
                (
                    "handoffs",
                    list(object(vec![("task", task_id()), ("handoffs", number())]))
                ),
                ("questions", list(number())),
                (
                    "action",
                    word(&["warn", "stop", "notify reviewer", "notify", "notify a b"])
                ),
            ])
        ),
        (
            word(&["decision", "question", "answer", "note"]),
            object(vec![("note", text())])
        )
            .boxed(),
    ]
    .boxed()
}

/// An event line: the seed's `Message` plus `seq`.
fn event() -> BoxedStrategy<Value> {
    let ts = prop_oneof![
        9 => (0i64..4_102_444_800, 0u32..1_000_000_000).prop_map(|(s, ns)| {
            let t = chrono::DateTime::from_timestamp(s, ns).expect("a time in range");
            json!(t.to_rfc3339())
        }),
        1 => text(),
    ];
    (
        object(vec![
            ("seq", number()),
            ("ts", ts.boxed()),
            ("sender", instance()),
        ]),
        event_body(),
    )
        .prop_map(|(mut head, (kind, payload))| {
            if let Value::Object(m) = &mut head {
                m.insert("type".to_owned(), kind);
                m.insert("payload".to_owned(), payload);
            }
            head
        })
        .boxed()
}

/// A run configuration file as the seed writes it.
fn seed_config() -> BoxedStrategy<Value> {
    object(vec![
        (
            "roles",
            list(object(vec![
                ("id", word(&["implementer", "reviewer", "architect"])),
                (
                    "file",
                    word(&["roles/implementer.json", "roles/reviewer.json"]),
                ),
                ("instances", number()),
            ])),
        ),
        (
            "coordination",
            object(vec![
                ("task_board", word(PATHS)),
                ("channel", word(PATHS)),
                ("lock_mode", word(&["ref", "file_lock", "remote"])),
                ("claim_timeout_sec", number()),
                ("remote", word(&["origin"])),
                ("instance_timeout_sec", number()),
                ("max_clock_skew_sec", number()),
                // Mostly good values here: every bad key refuses the whole config,
                // and the test wants many configs through.
                (
                    "stall_after_sec",
                    prop_oneof![9 => (1u64..2000).prop_map(Value::from), 1 => number()].boxed(),
                ),
                (
                    "on_stall",
                    prop_oneof![
                        9 => prop::sample::select(&["warn", "stop"][..]).prop_map(|s| json!(s)),
                        1 => word(&["notify reviewer", "notify Reviewer#1", "halt"]),
                    ]
                    .boxed(),
                ),
                (
                    "max_handoffs",
                    prop_oneof![9 => (0u64..100).prop_map(Value::from), 1 => number()].boxed(),
                ),
            ]),
        ),
        (
            "outputs",
            object(vec![("pattern", word(&["<role>_<instance>.md"]))]),
        ),
    ])
}

/// A role file (`roles/<role>.json`).
fn role_file() -> BoxedStrategy<Value> {
    object(vec![
        (
            "command",
            list(word(&["sh", "{config_dir}/roles/a.sh", "{prompt}"])),
        ),
        ("prompt", text()),
        (
            "env",
            prop::collection::btree_map("[A-Z_]{1,6}", text(), 0..3)
                .prop_map(|m| Value::Object(m.into_iter().collect()))
                .boxed(),
        ),
        ("after", list(word(&["implementer", "reviewer"]))),
        ("timeout_sec", number()),
    ])
}

/// Which of the shaped documents one case's parsers accepted, counted over a run.
#[derive(Default)]
struct Accepted {
    events: AtomicUsize,
    configs: AtomicUsize,
    role_files: AtomicUsize,
    plans: AtomicUsize,
}

/// Parses one case's documents as text, as they come from files and commits, and
/// checks what was accepted.
fn parse_shaped(
    (ev, cfg, role, plan, pretty): (Value, Value, Value, Value, bool),
    accepted: &Accepted,
) -> Result<(), TestCaseError> {
    let text = |v: &Value| {
        if pretty {
            serde_json::to_string_pretty(v).expect("a Value serialises")
        } else {
            v.to_string()
        }
    };
    if let Ok(e) = Event::from_json(&text(&ev)) {
        accepted.events.fetch_add(1, Ordering::Relaxed);
        // What is accepted is stored as it is read back, and names itself in one
        // printable line.
        let stored = e.to_json();
        let back = Event::from_json(&stored.to_string())
            .map_err(|err| TestCaseError::fail(format!("{stored} does not read back: {err}")))?;
        prop_assert_eq!(back.to_json(), stored);
        let subject = e.subject();
        prop_assert!(!subject.chars().any(char::is_control), "{}", subject);
    }
    if let Ok(c) = parse_json::<SeedConfig>(&text(&cfg), "config") {
        accepted.configs.fetch_add(1, Ordering::Relaxed);
        let _ = c.claim_timeout_sec();
    }
    if parse_json::<RoleFile>(&text(&role), "role file").is_ok() {
        accepted.role_files.fetch_add(1, Ordering::Relaxed);
    }
    if let Ok(tasks) = parse_json::<Vec<NewTask>>(&text(&plan), "plan") {
        accepted.plans.fetch_add(1, Ordering::Relaxed);
        for t in tasks {
            prop_assert!(t.id.to_string().parse::<TaskId>().is_ok());
        }
    }
    Ok(())
}

#[test]
fn shaped_documents_never_panic_and_many_are_accepted() {
    const CASES: u32 = 512;
    let mut runner = TestRunner::new(Config {
        cases: CASES,
        failure_persistence: None,
        ..Config::default()
    });
    let accepted = Accepted::default();
    let docs = (
        event(),
        seed_config(),
        role_file(),
        list(new_task()),
        any::<bool>(),
    );
    if let Err(e) = runner.run(&docs, |case| parse_shaped(case, &accepted)) {
        panic!("{e}");
    }
    // The values are random on purpose, so most documents are refused somewhere;
    // but if (nearly) none gets through, the generator no longer matches the
    // parsers and the test is back to testing refusals.
    for (what, n) in [
        ("events", &accepted.events),
        ("configs", &accepted.configs),
        ("role files", &accepted.role_files),
        ("plans", &accepted.plans),
    ] {
        let n = n.load(Ordering::Relaxed);
        assert!(
            n >= CASES as usize / 20,
            "only {n} of {CASES} shaped {what} were accepted"
        );
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn ids_never_panic_and_accepted_ids_are_safe_names(s in "\\PC{0,80}|[a-z0-9#_./ -]{0,20}") {
        if let Ok(t) = s.parse::<TaskId>() {
            prop_assert_eq!(t.to_string(), s.clone());
            prop_assert!(!s.contains("..") && !s.contains('/') && !s.chars().any(|c| c.is_whitespace() || c.is_control()));
            let path = t.board_path();
            prop_assert!(path.iter().all(|c| !c.contains('/') && c != ".." && !c.is_empty()));
        }
        if let Ok(r) = s.parse::<RunId>() {
            prop_assert!(git2::Reference::is_valid_name(&r.refname()), "{} is not a valid ref", r.refname());
        }
        if let Ok(i) = s.parse::<InstanceId>() {
            prop_assert_eq!(i.to_string(), s.clone());
            prop_assert_eq!(InstanceId::from_file_stem(&i.file_stem()).ok(), Some(i.clone()));
        }
    }

    #[test]
    fn configs_and_plans_never_panic_on_json(v in json_value()) {
        let text = v.to_string();
        let _ = Event::from_json(&text);
        if let Ok(cfg) = from_value::<SeedConfig>(v.clone(), "config") {
            let _ = cfg.claim_timeout_sec();
        }
        let _ = from_value::<RoleFile>(v.clone(), "role file");
        let _ = from_value::<NewTask>(v.clone(), "task");
        let _ = from_value::<Vec<NewTask>>(v, "plan");
    }

    #[test]
    fn one_line_is_one_printable_line(s in "\\PC{0,300}|[\\x00-\\x1f\\x7f a-z]{0,50}", max in 1usize..100) {
        let out = one_line(&s, max);
        prop_assert!(out.chars().count() <= max);
        prop_assert!(!out.chars().any(|c| c.is_control()));
    }
}
