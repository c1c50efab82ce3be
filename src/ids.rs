//! Validated names: run ids, task ids and instance ids.
//!
//! Every name that ends up in a ref name, a tree path, a file name, a commit subject
//! or a trailer passes through one of these types first, so none of them can carry
//! `..`, `/`, whitespace or control characters into git.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// Longest id we accept; keeps subjects, file names and ref names readable.
const MAX_ID_LEN: usize = 64;

/// Checks the shared rules of run and task ids; returns the reason on failure.
fn check_plain_name(s: &str) -> Result<(), String> {
    if s.is_empty() {
        return Err("is empty".into());
    }
    if s.len() > MAX_ID_LEN {
        return Err(format!("is longer than {MAX_ID_LEN} characters"));
    }
    if let Some(c) = s
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-')))
    {
        return Err(format!(
            "contains {c:?}; use letters, digits, '.', '_' and '-' only"
        ));
    }
    if !s.starts_with(|c: char| c.is_ascii_alphanumeric()) {
        return Err("must start with a letter or digit".into());
    }
    if s.contains("..") {
        return Err("contains '..'".into());
    }
    if s.ends_with('.') || s.ends_with(".lock") {
        return Err("must not end with '.' or '.lock'".into());
    }
    Ok(())
}

macro_rules! plain_id {
    ($(#[$doc:meta])* $name:ident, $what:literal) => {
        $(#[$doc])*
        #[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub struct $name(String);

        impl $name {
            /// The id as written.
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl FromStr for $name {
            type Err = anyhow::Error;
            fn from_str(s: &str) -> anyhow::Result<Self> {
                check_plain_name(s)
                    .map_err(|why| anyhow::anyhow!(concat!($what, " {} {}"), crate::text::quote(s, MAX_ID_LEN), why))?;
                Ok(Self(s.to_owned()))
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl Serialize for $name {
            fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.serialize_str(&self.0)
            }
        }

        impl<'de> Deserialize<'de> for $name {
            fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let s = String::deserialize(d)?;
                s.parse().map_err(serde::de::Error::custom)
            }
        }
    };
}

plain_id!(
    /// A run id: the last component of `refs/mara/<run>`.
    RunId,
    "run id"
);
plain_id!(
    /// A task id: the name of `tasks/<fan>/<id>.json` on the board.
    TaskId,
    "task id"
);

impl RunId {
    /// The ref that holds this run's board and log.
    pub fn refname(&self) -> String {
        format!("refs/mara/{}", self.0)
    }
}

impl TaskId {
    /// The board path of this task's file, fanned out into 256 buckets so that one
    /// event rewrites a small tree, however many tasks the board holds.
    pub fn board_path(&self) -> [String; 3] {
        [
            "tasks".to_owned(),
            format!("{:02x}", fnv1a(self.0.as_bytes()) & 0xff),
            format!("{}.json", self.0),
        ]
    }
}

/// FNV-1a, 32 bit: a stable, dependency-free hash for the task fan-out. Stable across
/// versions matters more than quality here: the bucket is part of the stored layout.
fn fnv1a(bytes: &[u8]) -> u32 {
    let mut h: u32 = 0x811c_9dc5;
    for b in bytes {
        h ^= u32::from(*b);
        h = h.wrapping_mul(0x0100_0193);
    }
    h
}

/// An instance of a role: `implementer#2` when printed, `implementer_2` in file names.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct InstanceId {
    role: String,
    n: u32,
}

impl InstanceId {
    /// Builds an id from a role name and a 1-based instance number.
    pub fn new(role: &str, n: u32) -> anyhow::Result<Self> {
        format!("{role}#{n}").parse()
    }

    /// The role part (`implementer`).
    pub fn role(&self) -> &str {
        &self.role
    }

    /// The instance number (`2`).
    pub fn number(&self) -> u32 {
        self.n
    }

    /// The form used in file and branch names: `implementer_2`.
    pub fn file_stem(&self) -> String {
        format!("{}_{}", self.role, self.n)
    }

    /// The board path of this instance's record: `instances/implementer_2.json`.
    pub fn record_path(&self) -> [String; 2] {
        ["instances".to_owned(), format!("{}.json", self.file_stem())]
    }

    /// The board path of this instance's artifacts: `artifacts/implementer_2.json`.
    pub fn artifacts_path(&self) -> [String; 2] {
        ["artifacts".to_owned(), format!("{}.json", self.file_stem())]
    }

    /// Parses the file-name form `implementer_2`.
    pub fn from_file_stem(stem: &str) -> anyhow::Result<Self> {
        let (role, n) = stem
            .rsplit_once('_')
            .ok_or_else(|| anyhow::anyhow!("instance file name {stem:?} is not <role>_<n>"))?;
        format!("{role}#{n}").parse()
    }
}

impl FromStr for InstanceId {
    type Err = anyhow::Error;
    fn from_str(s: &str) -> anyhow::Result<Self> {
        let bad = |why: &str| {
            anyhow::anyhow!(
                "instance {} {why}; write it as <role>#<n>, for example implementer#2",
                crate::text::quote(s, MAX_ID_LEN)
            )
        };
        let (role, n) = s.split_once('#').ok_or_else(|| bad("has no '#'"))?;
        if role.is_empty() || role.len() > 32 {
            return Err(bad("needs a role of 1 to 32 characters"));
        }
        if !role
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '_')
            || !role.starts_with(|c: char| c.is_ascii_lowercase())
        {
            return Err(bad(
                "has a role that is not lower-case letters, digits, '-' and '_'",
            ));
        }
        if n.is_empty()
            || n.len() > 6
            || !n.chars().all(|c| c.is_ascii_digit())
            || n.starts_with('0')
        {
            return Err(bad("needs a number from 1 after '#'"));
        }
        let n: u32 = n.parse().map_err(|_| bad("has a bad number"))?;
        Ok(Self {
            role: role.to_owned(),
            n,
        })
    }
}

impl fmt::Display for InstanceId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}#{}", self.role, self.n)
    }
}

impl Serialize for InstanceId {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for InstanceId {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn task_ids_reject_path_and_ref_tricks() {
        for bad in [
            "", "..", "a..b", "a/b", "a b", "-x", "x.lock", "x.", "a\nb", "ä",
        ] {
            assert!(bad.parse::<TaskId>().is_err(), "{bad:?} accepted");
        }
        for good in ["T1", "api.v2", "ui_login-form", "1"] {
            assert!(good.parse::<TaskId>().is_ok(), "{good:?} refused");
        }
    }

    #[test]
    fn instance_ids_round_trip_through_file_names() {
        let id: InstanceId = "code_reviewer#12".parse().expect("valid id");
        assert_eq!(id.to_string(), "code_reviewer#12");
        assert_eq!(id.file_stem(), "code_reviewer_12");
        assert_eq!(
            InstanceId::from_file_stem("code_reviewer_12").expect("valid stem"),
            id
        );
        for bad in [
            "impl", "#1", "impl#0", "impl#01", "Impl#1", "impl#x", "a b#1", "i#1#2",
        ] {
            assert!(bad.parse::<InstanceId>().is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn fan_out_is_stable() {
        // The bucket is part of the stored layout: this must never change.
        let t: TaskId = "T1".parse().expect("valid");
        assert_eq!(t.board_path()[1], format!("{:02x}", fnv1a(b"T1") & 0xff));
        assert_eq!(fnv1a(b""), 0x811c_9dc5);
        assert_eq!(fnv1a(b"a"), 0xe40c_292c);
    }
}
