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
    entries(dir)
        .into_iter()
        .filter_map(|n| n.strip_suffix(".pack").map(str::to_owned))
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
    fsck_ok(&r);
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

/// `git fsck --full --strict` accepts the repository (`git` fails the test
/// with git's stderr otherwise).
fn fsck_ok(r: &TestRepo) {
    git(&r.dir, &["fsck", "--full", "--strict", "--no-dangling"]);
}

/// Every file name in the pack directory.
fn entries(dir: &Path) -> Vec<String> {
    std::fs::read_dir(dir)
        .expect("reading objects/pack")
        .map(|e| {
            e.expect("an entry")
                .file_name()
                .to_string_lossy()
                .into_owned()
        })
        .collect()
}

/// Waits until no merge runs or is due (`mara gc --auto` finds nothing to do),
/// then returns the pack names.
fn quiet_packs(r: &TestRepo) -> BTreeSet<String> {
    let lock = r.dir.join(".git").join("mara").join("pack-merge.lock");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while std::time::Instant::now() < deadline {
        if !lock.exists() {
            let o = r.mara(&["gc", "--auto"]);
            o.ok("gc --auto");
            if o.stdout.contains("nothing to merge") && !lock.exists() {
                break;
            }
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    packs(&pack_dir(r))
}

/// `git verify-pack` of every index in the pack directory.
fn verify_every_pack(r: &TestRepo) -> usize {
    let mut n = 0;
    for e in std::fs::read_dir(pack_dir(r)).expect("reading objects/pack") {
        let path = e.expect("an entry").path();
        if path.extension().is_some_and(|x| x == "idx") {
            git(&r.dir, &["verify-pack", &path.to_string_lossy()]);
            n += 1;
        }
    }
    n
}

/// Every object the run's history names, as git reads it: `git cat-file
/// --batch-check` of `git rev-list --objects`.
fn objects_git_reads(r: &TestRepo, run: &str) -> usize {
    let list = git(
        &r.dir,
        &["rev-list", "--objects", &format!("refs/mara/{run}")],
    );
    let ids: String = list
        .lines()
        .map(|l| format!("{}\n", l.split(' ').next().expect("an id")))
        .collect();
    let checked = crate::common::git_input(&r.dir, &["cat-file", "--batch-check"], ids.as_bytes());
    assert!(
        !checked.contains("missing"),
        "git misses objects:\n{checked}"
    );
    checked.lines().count()
}

/// The `garbage` count of `git count-objects -v`: files in the object store
/// git does not understand.
fn garbage(r: &TestRepo) -> u64 {
    git(&r.dir, &["count-objects", "-v"])
        .lines()
        .find_map(|l| l.strip_prefix("garbage: "))
        .expect("count-objects prints garbage")
        .trim()
        .parse()
        .expect("a number")
}

#[test]
fn git_verifies_the_packs_mara_writes_and_reads_every_object_after_gc() {
    let r = TestRepo::with_run("gitpacks");
    plan(&r, 4);
    // Small objects are stored, large ones deflated: a long message makes a
    // commit of several KiB.
    let long = "a long note, ".repeat(250);
    r.mara_as("implementer#1", &["post", "note", &long])
        .ok("post");
    for i in 1..=3 {
        r.mara_as("implementer#1", &["claim", &format!("T{i}")])
            .ok("claim");
    }
    // Six events, no tier crowded: no merge runs, every pack is mara's own.
    let packs = verify_every_pack(&r);
    assert!(packs >= 6, "one pack per event: {packs}");
    fsck_ok(&r);
    let objects = objects_git_reads(&r, "gitpacks");
    assert_eq!(garbage(&r), 0, "no temporary file is left");
    git(&r.dir, &["gc", "--quiet"]);
    fsck_ok(&r);
    assert_eq!(objects_git_reads(&r, "gitpacks"), objects);
    r.verify_ok();
    // And mara writes on after git repacked everything.
    r.mara_as("implementer#1", &["claim", "T4"])
        .ok("claim after gc");
    verify_every_pack(&r);
    r.verify_ok();
}

#[test]
fn writers_killed_at_any_point_leave_no_half_pack() {
    let r = TestRepo::with_run("killpacks");
    plan(&r, 40);
    // Claims killed after 0 to 15 ms: before, while and after they write their
    // pack, its index and the ref.
    let mut rng = 0x9e37_79b9_7f4a_7c15u64;
    for i in 1..=40 {
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        let mut child = r
            .mara_command(
                &["claim", &format!("T{i}")],
                &[("MARA_INSTANCE", "implementer#1")],
                None,
            )
            .spawn()
            .expect("mara claim starts");
        std::thread::sleep(std::time::Duration::from_micros(rng % 15_000));
        let _ = child.kill();
        let _ = child.wait();
    }
    let settled = quiet_packs(&r);
    // What a kill leaves, git ignores: temporary files and a pack without its
    // index. Every pack with an index is whole.
    let dir = pack_dir(&r);
    let names = entries(&dir);
    for n in &names {
        let stem = n.split('.').next().expect("a name");
        let known = n.starts_with("tmp_pack_")
            || n.starts_with("tmp_idx_")
            || (n.starts_with("pack-")
                && (n.ends_with(".pack") || n.ends_with(".idx") || n.ends_with(".rev")));
        assert!(known, "{n} in objects/pack ({names:?})");
        if n.ends_with(".idx") {
            assert!(settled.contains(stem), "{stem} has its pack");
        }
    }
    let landed = git(&r.dir, &["rev-list", "--count", "refs/mara/killpacks"]);
    let landed = landed.trim();
    eprintln!("killed writers: {landed} events landed; left in objects/pack: {names:?}");
    verify_every_pack(&r);
    fsck_ok(&r);
    r.verify_ok();
    // An hour later a merge removes the leftovers; writing goes on.
    let old = std::time::SystemTime::now() - std::time::Duration::from_secs(2 * 3600);
    for n in &names {
        let leftover = n.starts_with("tmp_")
            || (n.ends_with(".pack") && !names.contains(&n.replace(".pack", ".idx")));
        if leftover {
            // Its owner may set its times, read-only as it is.
            let f = std::fs::File::open(dir.join(n)).expect("opening a leftover");
            f.set_modified(old).expect("backdating it");
        }
    }
    r.mara(&["gc"]).ok("mara gc");
    assert_eq!(garbage(&r), 0, "the leftovers are gone");
    r.mara_as("implementer#2", &["claim", "--next"])
        .ok("a claim after the kills");
    r.verify_ok();
}
