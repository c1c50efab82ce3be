//! How events land in the object database: one small packfile per event, no loose
//! objects, and the small packs merged so their number stays bounded, without
//! losing an object and without touching packs git treats specially.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use crate::common::{git, TestRepo};

fn pack_dir(r: &TestRepo) -> PathBuf {
    r.dir.join(".git").join("objects").join("pack")
}

/// The pack names (without extension) in the pack directory.
fn packs(dir: &Path) -> BTreeSet<String> {
    std::fs::read_dir(dir)
        .expect("reading objects/pack")
        .filter_map(|e| {
            let name = e
                .expect("an entry")
                .file_name()
                .to_string_lossy()
                .into_owned();
            name.strip_suffix(".pack").map(str::to_owned)
        })
        .collect()
}

/// Loose objects in the repository (`git count-objects` counts them).
fn loose_objects(r: &TestRepo) -> u64 {
    let out = git(&r.dir, &["count-objects", "-v"]);
    out.lines()
        .find_map(|l| l.strip_prefix("count: "))
        .expect("count-objects prints a count")
        .trim()
        .parse()
        .expect("a number")
}

/// Waits for the background merges writes started, then returns the pack names.
fn settled_packs(r: &TestRepo) -> BTreeSet<String> {
    let lock = r.dir.join(".git").join("mara").join("pack-merge.lock");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    loop {
        let now = packs(&pack_dir(r));
        if (now.len() < 16 && !lock.exists()) || std::time::Instant::now() > deadline {
            return now;
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
}

fn plan(r: &TestRepo, n: usize) {
    r.plan_numbered(1..=n, |i| format!("T{i}"));
}

#[test]
fn events_write_no_loose_objects_and_small_packs_get_merged() {
    let r = TestRepo::with_run("packs");
    let loose_before = loose_objects(&r);
    plan(&r, 60);
    for i in 1..=60 {
        r.mara_as("implementer#1", &["claim", &format!("T{i}")])
            .ok("claim");
        let n = packs(&pack_dir(&r)).len();
        assert!(
            n < 40,
            "after claim {i}, {n} packs: packs are merged once a tier holds 8"
        );
    }
    let n = settled_packs(&r).len();
    assert!(n < 16, "{n} packs once the background merges are done");
    assert_eq!(
        loose_objects(&r),
        loose_before,
        "an event writes a pack, not loose objects"
    );
    // Every object of every event is there, and the board replays.
    let fsck = std::process::Command::new("git")
        .args(["fsck", "--full", "--strict", "--no-dangling"])
        .current_dir(&r.dir)
        .output()
        .expect("git fsck");
    assert!(
        fsck.status.success(),
        "git fsck: {}",
        String::from_utf8_lossy(&fsck.stderr)
    );
    r.verify_ok();
    let out = git(&r.dir, &["log", "--format=%s", "refs/mara/packs"]);
    assert_eq!(out.lines().count(), 62, "init, plan and 60 claims");
}

#[test]
fn kept_packs_are_never_merged_and_a_multi_pack_index_stops_merging() {
    let r = TestRepo::with_run("keep");
    plan(&r, 40);
    // Pack what exists and mark that pack kept, as a user or a server might.
    git(&r.dir, &["repack", "-a", "-d", "-q"]);
    let kept = packs(&pack_dir(&r));
    assert_eq!(kept.len(), 1, "one pack after repack -a -d");
    let kept_name = kept.iter().next().expect("one").clone();
    std::fs::write(pack_dir(&r).join(format!("{kept_name}.keep")), "").expect("keep file");
    for i in 1..=20 {
        r.mara_as("implementer#1", &["claim", &format!("T{i}")])
            .ok("claim");
    }
    let now = settled_packs(&r);
    assert!(now.contains(&kept_name), "the kept pack is still there");
    assert!(now.len() < 16, "the other small packs were merged: {now:?}");

    // With a multi-pack-index, git maintenance owns the packs: mara merges none.
    git(&r.dir, &["multi-pack-index", "write"]);
    let before = settled_packs(&r);
    for i in 21..=40 {
        r.mara_as("implementer#1", &["claim", &format!("T{i}")])
            .ok("claim");
    }
    let after = packs(&pack_dir(&r));
    assert!(
        before.is_subset(&after),
        "no pack was removed while a multi-pack-index exists"
    );
    assert_eq!(after.len(), before.len() + 20, "one new pack per event");
    r.verify_ok();
}

#[test]
fn a_killed_merge_or_pack_write_does_not_stop_merging() {
    let r = TestRepo::with_run("killed");
    plan(&r, 30);
    let dir = pack_dir(&r);
    let backdate = |path: &Path, secs: u64| {
        let f = std::fs::File::create(path).expect("creating a leftover");
        f.set_modified(std::time::SystemTime::now() - std::time::Duration::from_secs(secs))
            .expect("backdating it");
    };
    // What a writer killed mid-pack and a merger killed mid-merge leave behind.
    let temp = dir.join("pack_git2_0123456789ab");
    backdate(&temp, 2 * 3600);
    let fresh_temp = dir.join("pack_git2_ba9876543210");
    backdate(&fresh_temp, 0);
    let lock = r.dir.join(".git").join("mara").join("pack-merge.lock");
    backdate(&lock, 60);
    for i in 1..=30 {
        r.mara_as("implementer#1", &["claim", &format!("T{i}")])
            .ok("claim");
    }
    assert!(!lock.exists(), "the stale merge lock was removed");
    assert!(!temp.exists(), "the hour-old temporary pack was removed");
    assert!(
        fresh_temp.exists(),
        "a temporary pack that may be in use is kept"
    );
    let n = settled_packs(&r).len();
    assert!(n < 16, "merging went on after the stale lock: {n} packs");
    r.verify_ok();
}

#[test]
fn mara_gc_merges_what_can_be_merged_and_says_so() {
    let r = TestRepo::with_run("gc");
    plan(&r, 5);
    for i in 1..=5 {
        r.mara_as("implementer#1", &["claim", &format!("T{i}")])
            .ok("claim");
    }
    let before = packs(&pack_dir(&r)).len();
    assert!(
        before >= 7,
        "one pack per event, no tier crowded: none merged yet"
    );
    let o = r.mara(&["gc", "--auto"]);
    o.ok("gc --auto");
    assert!(o.stdout.contains("nothing to merge"), "{}", o.stdout);
    assert_eq!(packs(&pack_dir(&r)).len(), before);
    let o = r.mara(&["gc"]);
    o.ok("gc");
    assert!(o.stdout.starts_with("merged "), "{}", o.stdout);
    assert!(packs(&pack_dir(&r)).len() < before);
    r.verify_ok();
    let o = r.mara(&["gc", "--json"]);
    o.ok("gc --json");
    let v: serde_json::Value = serde_json::from_str(&o.stdout).expect("json");
    assert_eq!(v["merged_packs"], 0, "all merged already: {v}");
}
