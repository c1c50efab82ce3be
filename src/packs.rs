//! Keeps the number of small packfiles bounded.
//!
//! Every event lands as one small packfile (see `ledger::Staging`): two new files
//! per event instead of one loose file per object. Left alone, a long run would
//! leave one pack per event, and every object lookup (mara's and git's) walks the
//! pack list. So after a write, once [`TRIGGER`] small packs have piled up, the
//! writer starts `mara gc --auto` in the background, as git starts a detached
//! `git gc --auto` after a commit: the write's caller does not wait for it, and
//! killing the writer does not stop it. It merges the packs with git's own
//! `git pack-objects --stdin-packs`, chosen the way `git repack --geometric=2`
//! chooses them: sorted by object
//! count, the smallest packs are rolled into one until every remaining pack holds
//! at least twice the objects of all smaller ones together. That leaves
//! O(log events) packs, and each object is rewritten O(log events) times.
//!
//! Safety against concurrent readers and writers, as git's own repack does it:
//! a pack is deleted only after a new pack holding every object of it (reachable
//! or not, so a writer whose compare-and-swap is still to come keeps its objects)
//! is complete on disk. A pack that cannot be read whole is left alone.
//! Packs git treats specially are never touched: `.keep`, `.promisor` and cruft
//! (`.mtimes`) packs, packs over [`MAX_OBJECTS`] objects, and nothing at all while
//! a multi-pack-index exists (`git maintenance` owns the packs then).

use std::fs;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{bail, Context, Result};
use git2::{PackBuilder, Repository};

use crate::gitcmd;

/// Small packs that trigger a merge.
pub const TRIGGER: usize = 16;
/// Packs with more objects than this are left to `git gc` / `git maintenance`.
pub const MAX_OBJECTS: u32 = 100_000;
/// A merge rewrites at most this many objects (the smallest packs first), so the
/// write that happens to trigger it is not held up for long.
pub const MAX_MERGE: u64 = 100_000;
/// A merge lock older than this was left by a killed process. A merge takes well
/// under a second, and two merges at once are safe (each deletes only packs whose
/// objects it wrote into its own new pack), so this only saves work.
const STALE_LOCK: Duration = Duration::from_secs(10);
/// A temporary pack file (libgit2's `pack_git2_*`) older than this was left by a
/// writer killed while writing it; nothing names its objects.
const STALE_TEMP: Duration = Duration::from_secs(3600);

/// A packfile in `objects/pack`, named by its index.
#[derive(Debug, Clone)]
struct Pack {
    idx: PathBuf,
    objects: u32,
}

impl Pack {
    fn with_ext(&self, ext: &str) -> PathBuf {
        self.idx.with_extension(ext)
    }
}

fn packs_dir(repo: &Repository) -> PathBuf {
    repo.commondir().join("objects").join("pack")
}

/// The number of `.idx` files in `dir`: the cheap check done after every write.
fn count_indexes(dir: &Path) -> usize {
    fs::read_dir(dir)
        .map(|rd| {
            rd.filter_map(|e| e.ok())
                .filter(|e| e.file_name().as_encoded_bytes().ends_with(b".idx"))
                .count()
        })
        .unwrap_or(0)
}

fn older_than(path: &Path, age: Duration) -> bool {
    fs::metadata(path)
        .and_then(|m| m.modified())
        .ok()
        .and_then(|t| t.elapsed().ok())
        .is_some_and(|a| a > age)
}

/// The packs that may be merged: complete, not special, not big.
fn candidates(dir: &Path) -> Result<Vec<Pack>> {
    let mut packs = vec![];
    for entry in fs::read_dir(dir)? {
        let path = entry?.path();
        let name = path.file_name().unwrap_or_default().to_string_lossy();
        if name.starts_with("pack_git2_") {
            if older_than(&path, STALE_TEMP) {
                let _ = fs::remove_file(&path);
            }
            continue;
        }
        if path.extension().and_then(|e| e.to_str()) != Some("idx") {
            continue;
        }
        let pack = Pack {
            idx: path.clone(),
            objects: 0,
        };
        if !pack.with_ext("pack").exists()
            || ["keep", "promisor", "mtimes"]
                .iter()
                .any(|ext| pack.with_ext(ext).exists())
        {
            continue;
        }
        // The header and the fan-out table: its last entry is the object count.
        let mut head = [0u8; 8 + 1024];
        let read = fs::File::open(&path).and_then(|mut f| f.read_exact(&mut head));
        if read.is_err() || head[..4] != [0xff, b't', b'O', b'c'] {
            continue;
        }
        let objects = u32::from_be_bytes(head[8 + 1020..].try_into().expect("4 bytes"));
        if objects > MAX_OBJECTS {
            continue;
        }
        packs.push(Pack { objects, ..pack });
    }
    Ok(packs)
}

/// Of packs sorted by object count, how many of the smallest to merge so that
/// every pack left holds at least twice the objects of all smaller ones together
/// (the merged pack included), as long as they hold no more than `budget`
/// objects together.
fn geometric_split(sorted: &[u32], budget: u64) -> usize {
    let mut sum = 0u64;
    let mut split = 0;
    for (i, &n) in sorted.iter().enumerate() {
        if u64::from(n) < 2 * sum {
            split = i + 1;
        }
        sum += u64::from(n);
    }
    while split > 0 && sorted[..split].iter().map(|&n| u64::from(n)).sum::<u64>() > budget {
        split -= 1;
    }
    split
}

/// What a merge did.
#[derive(Debug, PartialEq, Eq)]
pub struct Merged {
    pub packs: usize,
    pub objects: usize,
}

/// Whether a merge is due: [`TRIGGER`] packs or more, no multi-pack-index, and
/// nobody merging. Cheap: one directory listing and a stat.
pub fn due(repo: &Repository) -> bool {
    let dir = packs_dir(repo);
    count_indexes(&dir) >= TRIGGER
        && !dir.join("multi-pack-index").exists()
        && (!merge_lock(repo).exists() || older_than(&merge_lock(repo), STALE_LOCK))
}

static MERGER: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();

/// Makes writes start merges in the background with `exe gc --auto` (the mara
/// binary calls this with itself). Without it, as in a program that uses mara as
/// a library, the writer merges in the foreground.
pub fn merge_in_background_with(exe: PathBuf) {
    let _ = MERGER.set(exe);
}

/// After a write: merges small packs if due, in the background when a mara
/// executable was set (see [`merge_in_background_with`]), else right here.
pub fn after_write(repo: &Repository) -> Result<()> {
    if !due(repo) {
        return Ok(());
    }
    match MERGER.get() {
        Some(exe) => spawn_merge(exe, repo),
        None => merge_if_due(repo, false).map(|_| ()),
    }
}

/// Starts `exe gc --auto` for `repo` in the background, in a process group of
/// its own, and does not wait for it. A thread reaps it if this process lives on
/// (the orchestrator, the MCP server); otherwise it outlives this process.
fn spawn_merge(exe: &Path, repo: &Repository) -> Result<()> {
    let mut cmd = std::process::Command::new(exe);
    cmd.args(["gc", "--auto"])
        .env("GIT_DIR", repo.commondir())
        .env_remove("GIT_WORK_TREE")
        .env_remove("GIT_INDEX_FILE")
        .env_remove("GIT_COMMON_DIR")
        .current_dir(repo.commondir())
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null());
    std::os::unix::process::CommandExt::process_group(&mut cmd, 0);
    let mut child = cmd.spawn().context("starting mara gc --auto")?;
    std::thread::spawn(move || child.wait());
    Ok(())
}

/// Merges small packs if [`TRIGGER`] of them have piled up (or, with `force`,
/// if two or more can be merged). Returns what was merged, `None` when nothing
/// was due (or another process is merging).
pub fn merge_if_due(repo: &Repository, force: bool) -> Result<Option<Merged>> {
    let dir = packs_dir(repo);
    if dir.join("multi-pack-index").exists() || (!force && count_indexes(&dir) < TRIGGER) {
        return Ok(None);
    }
    let trigger = if force { 2 } else { TRIGGER };
    // Many packs that are not mara's to merge (big or kept ones) must not cost
    // every write a lock file: look before locking.
    if chosen(candidates(&dir)?, trigger).is_empty() {
        return Ok(None);
    }
    let lock = merge_lock(repo);
    if let Some(parent) = lock.parent() {
        fs::create_dir_all(parent).with_context(|| format!("creating {}", parent.display()))?;
    }
    match fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(&lock)
    {
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
            if older_than(&lock, STALE_LOCK) {
                let _ = fs::remove_file(&lock);
            }
            return Ok(None);
        }
        Err(e) => return Err(e).with_context(|| format!("creating {}", lock.display())),
    }
    let merged = merge(repo, &dir, trigger);
    let _ = fs::remove_file(&lock);
    merged
}

/// Writes what `builder` holds into `repo` as one packfile (libgit2's indexer
/// writes the pack and its index and renames them into place).
pub fn write_pack(builder: &mut PackBuilder<'_>, repo: &Repository) -> Result<()> {
    let mut buf = git2::Buf::new();
    builder.write_buf(&mut buf)?;
    let odb = repo.odb()?;
    let mut writer = odb.packwriter()?;
    std::io::Write::write_all(&mut writer, &buf)?;
    writer.commit()?;
    Ok(())
}

/// The lock that keeps two writers from doing the same merge at once.
pub fn merge_lock(repo: &Repository) -> PathBuf {
    repo.commondir().join("mara").join("pack-merge.lock")
}

/// The packs to merge now: none below `trigger` candidates, else the smallest
/// ones by [`geometric_split`] (at least two).
fn chosen(mut packs: Vec<Pack>, trigger: usize) -> Vec<Pack> {
    if packs.len() < trigger {
        return vec![];
    }
    packs.sort_by_key(|p| p.objects);
    let counts: Vec<u32> = packs.iter().map(|p| p.objects).collect();
    let split = geometric_split(&counts, MAX_MERGE);
    if split < 2 {
        return vec![];
    }
    packs.truncate(split);
    packs
}

fn merge(repo: &Repository, dir: &Path, trigger: usize) -> Result<Option<Merged>> {
    let chosen = chosen(candidates(dir)?, trigger);
    if chosen.is_empty() {
        return Ok(None);
    }
    // git's own pack-objects copies the objects of the chosen packs (all of them,
    // reachable or not) into one new pack, reusing their compressed data and
    // deltas as `git repack --geometric` does.
    let names: String = chosen
        .iter()
        .filter_map(|p| {
            p.with_ext("pack")
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
        })
        .map(|n| n + "\n")
        .collect();
    let base = dir.join("pack");
    let out = gitcmd::git_at_with_input(
        repo.commondir(),
        &[
            "pack-objects",
            "--stdin-packs",
            "--quiet",
            &base.to_string_lossy(),
        ],
        names.as_bytes(),
    )?;
    if !out.status.success() {
        bail!(
            "git pack-objects --stdin-packs failed: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    let name = format!("pack-{}", String::from_utf8_lossy(&out.stdout).trim());
    // Only once the merged pack is complete under its name may the packs it
    // holds go.
    if !dir.join(format!("{name}.idx")).exists() || !dir.join(format!("{name}.pack")).exists() {
        bail!("git pack-objects did not leave {name}; the small packs were kept");
    }
    for pack in &chosen {
        if pack.idx.file_stem() == Some(std::ffi::OsStr::new(&name)) {
            continue;
        }
        // The index first, so no new reader finds a pack about to vanish.
        for ext in ["idx", "rev", "bitmap", "pack"] {
            let _ = fs::remove_file(pack.with_ext(ext));
        }
    }
    Ok(Some(Merged {
        packs: chosen.len(),
        objects: chosen.iter().map(|p| p.objects as usize).sum(),
    }))
}

#[cfg(test)]
mod tests {
    use super::geometric_split;

    #[test]
    fn geometric_split_rolls_up_until_each_pack_doubles_the_rest() {
        let all = u64::MAX;
        // Sixteen one-event packs: all merge.
        assert_eq!(geometric_split(&[7; 16], all), 16);
        // A big pack that holds more than twice the rest stays.
        assert_eq!(geometric_split(&[7, 7, 7, 1000], all), 3);
        // Already geometric: nothing to do.
        assert_eq!(geometric_split(&[1, 3, 9, 27], all), 0);
        // A middle pack too small for what is below it is rolled in.
        assert_eq!(geometric_split(&[7, 7, 20, 100], all), 3);
        assert_eq!(geometric_split(&[], all), 0);
    }

    #[test]
    fn geometric_split_stays_within_the_budget() {
        // All four would merge; the budget takes the smallest that fit.
        assert_eq!(geometric_split(&[7, 7, 7, 20], 21), 3);
        assert_eq!(geometric_split(&[7, 7, 7, 20], 14), 2);
        assert_eq!(geometric_split(&[7, 7, 7, 20], 6), 0);
    }
}
