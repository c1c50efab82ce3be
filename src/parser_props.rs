//! Property tests over every parser of outside input: ids, events, configs, role
//! files and plans never panic, and what they accept is safe to use.

use proptest::prelude::*;
use serde_json::Value;

use crate::board::{one_line, Event, NewTask};
use crate::config::{from_value, parse_json, RoleFile, SeedConfig};
use crate::ids::{InstanceId, RunId, TaskId};

fn json_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        any::<f64>()
            .prop_map(|f| serde_json::Number::from_f64(f).map_or(Value::Null, Value::Number)),
        ".{0,12}".prop_map(Value::String),
        prop_oneof![
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
    fn events_configs_and_plans_never_panic_on_text(s in "\\PC{0,200}") {
        let _ = Event::from_json(&s);
        let _ = parse_json::<SeedConfig>(&s, "config");
        let _ = parse_json::<RoleFile>(&s, "role file");
        let _ = parse_json::<Vec<NewTask>>(&s, "plan");
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
