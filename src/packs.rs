//! Keeps the number of small packfiles bounded.
//!
//! Every event lands as one small packfile (see `ledger::Staging`): two new files
//! per event instead of one loose file per object. Left alone, a long run would
//! leave one pack per event, and every object lookup (mara's and git's) walks the
//! pack list. So packs are merged size-tiered, as a log-structured merge tree
//! does it: a pack's tier is how many times [`FANOUT`] goes into its object count,
//! and once [`FANOUT`] packs share the lowest crowded tier, they (and any smaller
//! ones) become one pack of the next tier. That leaves fewer than [`FANOUT`] packs
//! per tier, O(log events) in all, and rewrites each object once per tier.
//!
//! After a write, a look at the pack directory (one listing, no file opened)
//! tells whether a merge is due; if so the writer starts `mara gc --auto` in the
//! background, as git starts a detached `git gc --auto` after a commit: the
//! write's caller does not wait for it, and killing the writer does not stop it.
//! The merge itself is git's own `git pack-objects --window=0`, given the ids
//! the packs' indexes list: no walk of the board, no new delta search; the
//! packs' compressed objects and deltas are copied where their base comes along.
//!
//! Safety against concurrent readers and writers, as git's own repack does it:
//! a pack is deleted only after a new pack holding every object of it (reachable
//! or not, so a writer whose compare-and-swap is still to come keeps its objects)
//! is complete on disk. Packs git treats specially are never touched: `.keep`,
//! `.promisor` and cruft (`.mtimes`) packs, packs over [`MAX_OBJECTS`] objects,
//! and nothing at all while a multi-pack-index exists (`git maintenance` owns the
//! packs then).

use std::collections::BTreeSet;
use std::fs;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{bail, Context, Result};
use git2::{ObjectType, Repository};

use crate::gitcmd;

/// How many packs of one tier are merged into one of the next.
pub const FANOUT: usize = 8;
/// Packs with more objects than this are left to `git gc` / `git maintenance`.
pub const MAX_OBJECTS: u64 = 100_000;
/// A merge rewrites at most this many objects (the smallest packs first).
pub const MAX_MERGE: u64 = 100_000;
/// A merge lock older than this was left by a killed process. A merge takes well
/// under a second, and two merges at once are safe (each deletes only packs whose
/// objects it wrote into its own new pack), so this only saves work.
const STALE_LOCK: Duration = Duration::from_secs(10);
/// A temporary pack file ([`TEMP_PREFIXES`]) older than this was left by a
/// writer killed while writing it, as is a pack without an index; nothing
/// names their objects.
const STALE_TEMP: Duration = Duration::from_secs(3600);

/// A packfile in `objects/pack`, named by its index.
#[derive(Debug, Clone)]
struct Pack {
    idx: PathBuf,
    objects: u64,
}

impl Pack {
    fn with_ext(&self, ext: &str) -> PathBuf {
        self.idx.with_extension(ext)
    }
}

/// An event's objects as a version-2 packfile and its version-2 index, ready to
/// be written ([`write`]).
pub struct Encoded {
    pub pack: Vec<u8>,
    pub index: Vec<u8>,
    /// The pack's SHA-1 trailer, which names it (`pack-<hex>.pack`), as git and
    /// libgit2 name theirs.
    pub checksum: [u8; 20],
}

/// Objects up to this size are stored, not compressed: most of an event's
/// objects are a few hundred bytes (small trees, task records, the commit),
/// where level 1 saves little, and each cost a `deflateReset`, which clears
/// zlib's 64 KiB hash table. Trees are stored whatever their size (see
/// [`stored`]); larger blobs (a long task body, a message) are compressed.
pub const STORE_UP_TO: usize = 1024;

/// Encodes objects, each given with its id, as a version-2 packfile: no deltas
/// (an event's objects share little), each as a zlib stream (stored if small,
/// else deflated at level 1, as git writes loose objects), then the SHA-1
/// trailer; and writes its version-2 index from what the encoder knows (ids,
/// offsets, the CRC32 of each entry), so nothing is inflated or hashed again.
///
/// Written by hand, not with libgit2's packbuilder: the packbuilder deflates at
/// level 6 and searches for deltas, which cost about 0.4 ms of a claim on a
/// 10,000-task board (its 8 KB `tasks/` tree) and pushed the big-board claim
/// over 1.3x the small one; this encoder brought it to 1.23-1.27x (issue 2).
/// The index is written by hand too, not by libgit2's indexer, which wrote
/// temporary files, linked and unlinked them, and re-inflated and re-hashed
/// (SHA-1DC) every object just encoded: a seventh of a claim's instructions
/// (issue 16). No small, maintained crate writes a v2 index from known ids:
/// gix-pack's index writer decodes the pack again and brings most of gitoxide
/// along, and the rest are whole git implementations. The layout is git's
/// `Documentation/gitformat-pack.txt`; `git verify-pack` and `git fsck` check
/// what this writes (tests/main/packs.rs).
pub fn encode<'a>(
    objects: impl ExactSizeIterator<Item = (git2::Oid, ObjectType, &'a [u8])>,
) -> Result<Encoded> {
    let mut pack = Vec::with_capacity(4096);
    pack.extend_from_slice(b"PACK");
    pack.extend_from_slice(&2u32.to_be_bytes());
    pack.extend_from_slice(&u32::try_from(objects.len())?.to_be_bytes());
    let mut entries = Vec::with_capacity(objects.len());
    // One deflate stream for all large objects, reset between them, made only
    // when one comes along: a new one per object allocated (and the C library
    // handed back) zlib's 256 KB state each time, and the page faults of
    // touching it again were a third of a small claim's time.
    let mut z = None;
    for (oid, kind, data) in objects {
        let kind: u8 = match kind {
            ObjectType::Commit => 1,
            ObjectType::Tree => 2,
            ObjectType::Blob => 3,
            ObjectType::Tag => 4,
            other => bail!("cannot pack an object of type {other}"),
        };
        let offset = pack.len();
        push_header(&mut pack, kind, data.len());
        if stored(kind, data) {
            push_stored(&mut pack, data);
        } else {
            let z =
                z.get_or_insert_with(|| flate2::Compress::new(flate2::Compression::fast(), true));
            push_deflated(&mut pack, data, z)?;
        }
        let crc = crc32(&pack[offset..]);
        entries.push((oid, crc, u64::try_from(offset)?));
    }
    let checksum = sha1_smol::Sha1::from(&pack).digest().bytes();
    pack.extend_from_slice(&checksum);
    let index = index(entries, &checksum)?;
    Ok(Encoded {
        pack,
        index,
        checksum,
    })
}

/// Whether an object of pack type `kind` is stored rather than deflated: small
/// objects, and trees of any size. A tree is mostly object ids, which do not
/// compress (level 1 took the 5.5 KB `tasks/` tree of a 400-task board to 4.5
/// KB), and deflating the two or three large trees of an event was a twentieth
/// of a small claim (issue 16).
fn stored(kind: u8, data: &[u8]) -> bool {
    const TREE: u8 = 2;
    kind == TREE || data.len() <= STORE_UP_TO
}

/// The CRC32 (ISO-HDLC, as zlib and git compute it) of `data`.
fn crc32(data: &[u8]) -> u32 {
    let mut crc = 0;
    // zlib's `crc32` takes at most `uInt::MAX` bytes a call.
    for chunk in data.chunks(u32::MAX as usize) {
        // SAFETY: zlib reads exactly `chunk.len()` bytes from `chunk`'s
        // pointer, which is valid for that many, and keeps nothing.
        crc = unsafe { libz_sys::crc32(crc, chunk.as_ptr(), chunk.len() as libz_sys::uInt) };
    }
    u32::try_from(crc).expect("a CRC32 fits 32 bits")
}

/// `data` as one zlib stream deflated with `z` (reset first).
fn push_deflated(pack: &mut Vec<u8>, data: &[u8], z: &mut flate2::Compress) -> Result<()> {
    z.reset();
    loop {
        // Room for the whole stream: zlib's bound for a deflated input.
        pack.reserve(data.len() + data.len() / 1000 + 64);
        let read = usize::try_from(z.total_in())?;
        match z.compress_vec(&data[read..], pack, flate2::FlushCompress::Finish)? {
            flate2::Status::StreamEnd => return Ok(()),
            flate2::Status::Ok | flate2::Status::BufError => {}
        }
    }
}

/// `data` as one zlib stream of stored (uncompressed) deflate blocks (RFC 1950
/// and 1951): the zlib header, blocks of at most 65,535 bytes, each a byte
/// with the final-block bit and type 00, then its length and the length's
/// complement (little-endian), then the Adler-32 of `data`. By hand because
/// zlib's own level 0 still pays the `deflateReset` this avoids.
fn push_stored(pack: &mut Vec<u8>, data: &[u8]) {
    const MAX_BLOCK: usize = 65_535;
    pack.reserve(data.len() + 2 + 5 * (data.len() / MAX_BLOCK + 1) + 4);
    // CMF: deflate with a 32 KiB window; FLG: no dictionary, level "fastest",
    // and the check bits that make CMF*256 + FLG a multiple of 31.
    pack.extend_from_slice(&[0x78, 0x01]);
    let mut blocks = data.chunks(MAX_BLOCK).peekable();
    if blocks.peek().is_none() {
        pack.extend_from_slice(&[0x01, 0x00, 0x00, 0xff, 0xff]);
    }
    while let Some(block) = blocks.next() {
        let last = blocks.peek().is_none();
        let len = u16::try_from(block.len()).expect("blocks of at most 65,535 bytes");
        pack.push(u8::from(last));
        pack.extend_from_slice(&len.to_le_bytes());
        pack.extend_from_slice(&(!len).to_le_bytes());
        pack.extend_from_slice(block);
    }
    let mut adler = adler2::Adler32::new();
    adler.write_slice(data);
    pack.extend_from_slice(&adler.checksum().to_be_bytes());
}

/// The version-2 index of a pack whose entries are `(id, CRC32, offset)`:
/// the magic and version, a fan-out table (how many ids start with each
/// byte or a smaller one), the sorted ids, their CRC32s, their offsets (31
/// bits, or with the high bit set, the position of a 64-bit offset in the
/// table that follows), the pack's checksum and the index's own.
fn index(mut entries: Vec<(git2::Oid, u32, u64)>, pack_checksum: &[u8; 20]) -> Result<Vec<u8>> {
    entries.sort_unstable_by(|a, b| a.0.as_bytes().cmp(b.0.as_bytes()));
    if let Some(w) = entries.windows(2).find(|w| w[0].0 == w[1].0) {
        bail!("object {} is twice in one pack", w[0].0);
    }
    let mut idx = Vec::with_capacity(8 + 1024 + entries.len() * 28 + 40);
    idx.extend_from_slice(&[0xff, b't', b'O', b'c', 0, 0, 0, 2]);
    let mut fanout = [0u32; 256];
    for (oid, _, _) in &entries {
        fanout[usize::from(oid.as_bytes()[0])] += 1;
    }
    let mut total = 0;
    for n in fanout {
        total += n;
        idx.extend_from_slice(&total.to_be_bytes());
    }
    for (oid, _, _) in &entries {
        idx.extend_from_slice(oid.as_bytes());
    }
    for (_, crc, _) in &entries {
        idx.extend_from_slice(&crc.to_be_bytes());
    }
    let mut large = vec![];
    for &(_, _, offset) in &entries {
        let small = match u32::try_from(offset) {
            Ok(o) if o < 0x8000_0000 => o,
            _ => {
                large.push(offset);
                0x8000_0000 | u32::try_from(large.len() - 1)?
            }
        };
        idx.extend_from_slice(&small.to_be_bytes());
    }
    for offset in large {
        idx.extend_from_slice(&offset.to_be_bytes());
    }
    idx.extend_from_slice(pack_checksum);
    let own = sha1_smol::Sha1::from(&idx).digest().bytes();
    idx.extend_from_slice(&own);
    Ok(idx)
}

/// The prefixes of temporary files in `objects/pack`: mara's and git's own
/// (`tmp_pack_*`, `tmp_idx_*`), and libgit2's indexer's (`pack_git2_*`), which
/// wrote mara's packs before. Git and libgit2 ignore them.
const TEMP_PREFIXES: [&str; 3] = ["tmp_pack_", "tmp_idx_", "pack_git2_"];

/// Writes an encoded pack and its index into the pack directory of `repo`, as
/// git does: each to a temporary file there (`tmp_pack_*`, `tmp_idx_*`), then
/// renamed into place, the pack first and the index last, so no reader finds
/// an index without its pack. A writer killed before the renames leaves only
/// temporary files, and one killed between them a pack without an index; git
/// ignores both, and a merge removes them after an hour ([`STALE_TEMP`]).
/// Not synced to disk, as libgit2 did not (mara leaves its fsync option off).
pub fn write(repo: &Repository, encoded: &Encoded) -> Result<()> {
    let dir = packs_dir(repo);
    let name = format!(
        "pack-{}",
        git2::Oid::from_bytes(&encoded.checksum).context("a pack checksum")?
    );
    let put = |prefix: &str, ext: &str, bytes: &[u8]| -> Result<()> {
        let to = dir.join(format!("{name}.{ext}"));
        let temp = || {
            let mut f = tempfile::Builder::new()
                .prefix(prefix)
                .permissions(std::os::unix::fs::PermissionsExt::from_mode(0o444))
                .tempfile_in(&dir)?;
            std::io::Write::write_all(&mut f, bytes)?;
            Ok::<_, std::io::Error>(f)
        };
        let f = match temp() {
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                fs::create_dir_all(&dir)?;
                temp()
            }
            other => other,
        }
        .with_context(|| format!("writing a packfile in {}", dir.display()))?;
        f.persist(&to)
            .map_err(|e| e.error)
            .with_context(|| format!("writing {}", to.display()))?;
        Ok(())
    };
    put("tmp_pack_", "pack", &encoded.pack)?;
    put("tmp_idx_", "idx", &encoded.index)
}

/// An object's header in a pack: 3 bits of type and the low 4 bits of the size,
/// then 7 more bits of size per byte, each byte but the last with its high bit set.
fn push_header(pack: &mut Vec<u8>, kind: u8, size: usize) {
    let mut size = size;
    let mut byte = (kind << 4) | (size & 0x0f) as u8;
    size >>= 4;
    while size > 0 {
        pack.push(byte | 0x80);
        byte = (size & 0x7f) as u8;
        size >>= 7;
    }
    pack.push(byte);
}

fn packs_dir(repo: &Repository) -> PathBuf {
    repo.commondir().join("objects").join("pack")
}

fn older_than(path: &Path, age: Duration) -> bool {
    fs::metadata(path)
        .and_then(|m| m.modified())
        .ok()
        .and_then(|t| t.elapsed().ok())
        .is_some_and(|a| a > age)
}

/// The number of objects a version-2 pack index of `len` bytes lists: a header
/// and fan-out table (1,072 bytes), 28 bytes per object (id, CRC, offset), two
/// checksums (40 bytes). Packs too small for 64-bit offsets have none.
fn objects_in_index(len: u64) -> u64 {
    len.saturating_sub(8 + 1024 + 40) / 28
}

/// The packs that may be merged, from one listing of the pack directory and the
/// size of each index (no file is opened): complete (index and pack), not kept,
/// promisor or cruft, not big. With `tidy`, also removes hour-old temporary
/// files of killed writers.
fn candidates(dir: &Path, tidy: bool) -> Result<Vec<Pack>> {
    let mut names = BTreeSet::new();
    let mut indexes = vec![];
    for entry in fs::read_dir(dir)? {
        let entry = entry?;
        let name = entry.file_name().to_string_lossy().into_owned();
        if TEMP_PREFIXES.iter().any(|p| name.starts_with(p)) {
            if tidy && older_than(&entry.path(), STALE_TEMP) {
                let _ = fs::remove_file(entry.path());
            }
            continue;
        }
        if let Some(stem) = name.strip_suffix(".idx") {
            indexes.push((stem.to_owned(), entry));
        }
        names.insert(name);
    }
    if tidy {
        // A writer killed between its two renames left a pack without an index.
        for stem in names.iter().filter_map(|n| n.strip_suffix(".pack")) {
            let has = |ext: &str| names.contains(&format!("{stem}.{ext}"));
            let path = dir.join(format!("{stem}.pack"));
            if !has("idx") && !has("keep") && older_than(&path, STALE_TEMP) {
                let _ = fs::remove_file(path);
            }
        }
    }
    let mut packs = vec![];
    for (stem, entry) in indexes {
        let has = |ext: &str| names.contains(&format!("{stem}.{ext}"));
        if !has("pack") || has("keep") || has("promisor") || has("mtimes") {
            continue;
        }
        let Ok(meta) = entry.metadata() else { continue };
        let objects = objects_in_index(meta.len());
        if objects == 0 || objects > MAX_OBJECTS {
            continue;
        }
        packs.push(Pack {
            idx: entry.path(),
            objects,
        });
    }
    Ok(packs)
}

/// The object ids a version-2 pack index lists.
fn index_oids(path: &Path) -> Result<Vec<git2::Oid>> {
    let bytes = fs::read(path).with_context(|| format!("reading {}", path.display()))?;
    if bytes.len() < 8 + 1024 || bytes[..8] != [0xff, b't', b'O', b'c', 0, 0, 0, 2] {
        bail!("{} is not a version 2 pack index", path.display());
    }
    let count = u32::from_be_bytes(bytes[8 + 1020..8 + 1024].try_into().expect("4 bytes")) as usize;
    let ids = bytes
        .get(8 + 1024..8 + 1024 + count * 20)
        .with_context(|| format!("{} is truncated", path.display()))?;
    ids.chunks_exact(20)
        .map(|c| git2::Oid::from_bytes(c).map_err(Into::into))
        .collect()
}

/// A pack's tier: how many times [`FANOUT`] goes into its object count.
fn tier(objects: u64) -> u32 {
    objects.max(1).ilog(FANOUT as u64)
}

/// Of packs sorted by object count, how many of the smallest to merge: all up to
/// and including the lowest tier that holds `fanout` packs, as far as `budget`
/// objects go, and only if that takes at least two packs of the crowded tier.
/// With one, the merge would leave the tier as crowded as it was, and the next
/// write would merge its small pack into a big one again: on a 100,000-event
/// board every write rewrote a 45 MB pack (the reads benchmark's fixture slowed
/// from 100 to 4 events a second). A tier whose two smallest packs exceed the
/// budget stays as it is, for `git gc`.
fn tiered_split(sorted: &[u64], fanout: usize, budget: u64) -> usize {
    let (mut start, mut split) = (0, 0);
    let mut i = 0;
    while i < sorted.len() {
        let t = tier(sorted[i]);
        let same = sorted[i..].iter().take_while(|&&n| tier(n) == t).count();
        i += same;
        if same >= fanout {
            (start, split) = (i - same, i);
            break;
        }
    }
    let mut sum = 0;
    let fits = sorted[..split]
        .iter()
        .take_while(|&&n| {
            sum += n;
            sum <= budget
        })
        .count();
    if split > 0 && fits >= start + 2 {
        fits
    } else {
        0
    }
}

/// The packs to merge now: the smallest ones by [`tiered_split`].
fn chosen(mut packs: Vec<Pack>, fanout: usize) -> Vec<Pack> {
    packs.sort_by_key(|p| p.objects);
    let counts: Vec<u64> = packs.iter().map(|p| p.objects).collect();
    packs.truncate(tiered_split(&counts, fanout, MAX_MERGE));
    packs
}

static MERGER: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();

/// Makes writes start merges in the background with `exe gc --auto` (the mara
/// binary calls this with itself). Without it, as in a program that uses mara as
/// a library, the writer merges in the foreground.
pub fn merge_in_background_with(exe: PathBuf) {
    let _ = MERGER.set(exe);
}

/// Whether a merge is due: a tier holds [`FANOUT`] packs, there is no
/// multi-pack-index, and nobody is merging. One directory listing and a stat
/// per index.
pub fn due(repo: &Repository) -> bool {
    let dir = packs_dir(repo);
    let lock = merge_lock(repo);
    !dir.join("multi-pack-index").exists()
        && (!lock.exists() || older_than(&lock, STALE_LOCK))
        && candidates(&dir, false).is_ok_and(|c| !chosen(c, FANOUT).is_empty())
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

/// The lock that keeps two writers from doing the same merge at once.
pub fn merge_lock(repo: &Repository) -> PathBuf {
    repo.commondir().join("mara").join("pack-merge.lock")
}

/// What a merge did.
#[derive(Debug, PartialEq, Eq)]
pub struct Merged {
    pub packs: usize,
    pub objects: u64,
}

/// Merges packs if a tier holds [`FANOUT`] of them (with `all`, merges every pack
/// mara may merge, up to [`MAX_MERGE`] objects). Returns what was merged, `None`
/// when nothing was due or another process is merging.
pub fn merge_if_due(repo: &Repository, all: bool) -> Result<Option<Merged>> {
    let dir = packs_dir(repo);
    if dir.join("multi-pack-index").exists() {
        return Ok(None);
    }
    let fanout = if all { 2 } else { FANOUT };
    let pick = |packs: Vec<Pack>| {
        if all {
            let mut packs = packs;
            packs.sort_by_key(|p| p.objects);
            let mut sum = 0;
            packs.retain(|p| {
                sum += p.objects;
                sum <= MAX_MERGE
            });
            if packs.len() < 2 {
                packs.clear();
            }
            packs
        } else {
            chosen(packs, fanout)
        }
    };
    if pick(candidates(&dir, false)?).is_empty() {
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
    // Listed again under the lock: another merge may have finished meanwhile.
    // And again after each merge: a merge can crowd the next tier (the eighth
    // merge of eight packs makes the eighth pack of the next tier), and a
    // writer that found this merge running started none, so nobody else would
    // merge that tier until the next write (the merges benchmark waited for
    // ever at the end of a block).
    let mut total: Option<Merged> = None;
    let merged = loop {
        match candidates(&dir, true).and_then(|c| merge(repo, &dir, pick(c))) {
            Ok(Some(m)) => {
                let t = total.get_or_insert(Merged {
                    packs: 0,
                    objects: 0,
                });
                t.packs += m.packs;
                t.objects += m.objects;
                if all {
                    break Ok(());
                }
            }
            Ok(None) => break Ok(()),
            Err(e) => break Err(e),
        }
    };
    let _ = fs::remove_file(&lock);
    merged.map(|()| total)
}

fn merge(repo: &Repository, dir: &Path, chosen: Vec<Pack>) -> Result<Option<Merged>> {
    if chosen.is_empty() {
        return Ok(None);
    }
    // git's own pack-objects copies every object of the chosen packs (reachable
    // or not) into one new pack, given their ids: no walk of the board, no new
    // delta search (`--window=0`); compressed data and deltas are reused where
    // their base comes along.
    let mut names = String::new();
    for pack in &chosen {
        for oid in index_oids(&pack.idx)? {
            names.push_str(&format!("{oid}\n"));
        }
    }
    let base = dir.join("pack");
    let out = gitcmd::git_at_with_input(
        repo.commondir(),
        &[
            // No reverse index beside the merged pack: libgit2 does not read one,
            // and it was a third file (and a third fsync) per merge.
            "-c",
            "pack.writeReverseIndex=false",
            "pack-objects",
            "--window=0",
            "--quiet",
            &base.to_string_lossy(),
        ],
        names.as_bytes(),
    )?;
    if !out.status.success() {
        bail!(
            "git pack-objects failed: {}",
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
        objects: chosen.iter().map(|p| p.objects).sum(),
    }))
}

#[cfg(test)]
mod tests {
    use super::{
        encode, index, objects_in_index, push_header, push_stored, tier, tiered_split, write,
        Encoded, STORE_UP_TO,
    };
    use git2::{ObjectType, Repository};

    #[test]
    fn object_headers_carry_the_size_seven_bits_per_byte() {
        let header = |size| {
            let mut v = vec![];
            push_header(&mut v, 3, size);
            v
        };
        assert_eq!(header(0), [0x30]);
        assert_eq!(header(15), [0x3f], "up to 15 B: one byte");
        assert_eq!(header(16), [0xb0, 0x01], "over 15 B: a second byte");
        assert_eq!(header(2047), [0xbf, 0x7f]);
        assert_eq!(header(2048), [0xb0, 0x80, 0x01], "over 2 KiB: a third byte");
        assert_eq!(
            header(1 << 20),
            [0xb0, 0x80, 0x80, 0x04],
            "4 + 7 + 7 + 3 bits"
        );
    }

    /// Blobs of sizes around every boundary: empty, the header's 4 and 11
    /// bits, [`STORE_UP_TO`], one stored block, and large.
    fn sample_blobs() -> Vec<Vec<u8>> {
        [
            0usize,
            15,
            16,
            100,
            STORE_UP_TO,
            STORE_UP_TO + 1,
            2047,
            2048,
            70_000,
        ]
        .iter()
        .map(|n| (0..*n).map(|i| (i * 7 % 251) as u8).collect())
        .collect()
    }

    fn encoded(blobs: &[Vec<u8>]) -> Encoded {
        let objects: Vec<_> = blobs
            .iter()
            .map(|b| {
                let oid = git2::Oid::hash_object(ObjectType::Blob, b).expect("hashing");
                (oid, ObjectType::Blob, b.as_slice())
            })
            .collect();
        encode(objects.into_iter()).expect("encoding")
    }

    #[test]
    fn libgit2_indexes_an_encoded_pack_into_the_same_index() {
        let dir = tempfile::tempdir().expect("a scratch directory");
        let repo = Repository::init_bare(dir.path()).expect("a bare repository");
        let blobs = sample_blobs();
        let ours = encoded(&blobs);
        let odb = repo.odb().expect("the object database");
        let mut writer = odb.packwriter().expect("a pack writer");
        std::io::Write::write_all(&mut writer, &ours.pack).expect("writing the pack");
        writer.commit().expect("libgit2 indexes the pack");
        let name = git2::Oid::from_bytes(&ours.checksum).expect("a checksum");
        let idx = dir.path().join(format!("objects/pack/pack-{name}.idx"));
        let theirs = std::fs::read(&idx).expect("libgit2 names the pack by its checksum");
        assert_eq!(
            theirs, ours.index,
            "the index libgit2 writes is ours, byte for byte"
        );
    }

    #[test]
    fn a_written_pack_reads_back_and_leaves_no_temporary_file() {
        let dir = tempfile::tempdir().expect("a scratch directory");
        let repo = Repository::init_bare(dir.path()).expect("a bare repository");
        let blobs = sample_blobs();
        write(&repo, &encoded(&blobs)).expect("writing");
        let odb = repo.odb().expect("the object database");
        for b in &blobs {
            let oid = git2::Oid::hash_object(ObjectType::Blob, b).expect("hashing");
            let read = odb.read(oid).expect("the blob is in the pack");
            assert_eq!(read.data(), b.as_slice());
        }
        let left: Vec<_> = std::fs::read_dir(dir.path().join("objects/pack"))
            .expect("the pack directory")
            .flatten()
            .map(|e| e.file_name())
            .filter(|n| !n.to_string_lossy().starts_with("pack-"))
            .collect();
        assert!(left.is_empty(), "only the pack and its index: {left:?}");
        // The same pack again (a retry that wrote the same objects) is harmless.
        write(&repo, &encoded(&blobs)).expect("writing again");
    }

    #[test]
    fn stored_streams_inflate_in_blocks_of_at_most_64_kib() {
        for n in [0usize, 1, 65_535, 65_536, 200_000] {
            let data: Vec<u8> = (0..n).map(|i| (i % 253) as u8).collect();
            let mut stream = vec![];
            push_stored(&mut stream, &data);
            let blocks = n.div_ceil(65_535).max(1);
            assert_eq!(stream.len(), 2 + 5 * blocks + n + 4, "{n} bytes");
            let mut z = flate2::Decompress::new(true);
            let mut out = Vec::with_capacity(n + 1);
            let status = z
                .decompress_vec(&stream, &mut out, flate2::FlushDecompress::Finish)
                .expect("zlib reads it");
            assert_eq!(status, flate2::Status::StreamEnd, "{n} bytes");
            assert_eq!(out, data, "{n} bytes");
        }
    }

    #[test]
    fn offsets_past_2_gib_go_to_the_64_bit_table() {
        let a = git2::Oid::from_bytes(&[1; 20]).expect("an id");
        let b = git2::Oid::from_bytes(&[2; 20]).expect("an id");
        let idx = index(vec![(b, 7, 12), (a, 9, 5 << 30)], &[0; 20]).expect("an index");
        let n = 2;
        let offsets = 8 + 1024 + n * 24;
        assert_eq!(idx.len(), offsets + n * 4 + 8 + 40);
        assert_eq!(&idx[8 + 1024..8 + 1044], a.as_bytes(), "sorted by id");
        let word = |at: usize| u32::from_be_bytes(idx[at..at + 4].try_into().expect("4"));
        assert_eq!(word(8 + 4), 1, "fan-out: one id starts with 01 (or less)");
        assert_eq!(word(8 + 4 * 0xff), 2, "fan-out: two in all");
        assert_eq!(word(8 + 1024 + n * 20), 9, "a's CRC first");
        assert_eq!(
            word(offsets),
            0x8000_0000,
            "a's offset is in the large table"
        );
        assert_eq!(word(offsets + 4), 12);
        let large = u64::from_be_bytes(idx[offsets + 8..offsets + 16].try_into().expect("8"));
        assert_eq!(large, 5 << 30);
        assert!(
            index(vec![(a, 1, 12), (a, 1, 40)], &[0; 20]).is_err(),
            "an id twice"
        );
    }

    #[test]
    fn tiers_are_powers_of_the_fanout() {
        assert_eq!(tier(1), 0);
        assert_eq!(tier(7), 0);
        assert_eq!(tier(8), 1);
        assert_eq!(tier(63), 1);
        assert_eq!(tier(64), 2);
        assert_eq!(objects_in_index(8 + 1024 + 40 + 7 * 28), 7);
    }

    #[test]
    fn the_lowest_crowded_tier_and_everything_below_it_merge() {
        let all = u64::MAX;
        // Eight one-event packs: all merge.
        assert_eq!(tiered_split(&[7; 8], 8, all), 8);
        // Seven: not yet.
        assert_eq!(tiered_split(&[7; 7], 8, all), 0);
        // Eight in tier 1, with smaller ones below: those go along.
        assert_eq!(
            tiered_split(&[3, 5, 9, 9, 9, 9, 9, 9, 9, 9, 500], 8, all),
            10
        );
        // Crowded tiers above a calm one: the lowest crowded tier decides.
        let mut packs = vec![7, 7];
        packs.extend([70; 8]);
        assert_eq!(tiered_split(&packs, 8, all), 10);
        assert_eq!(tiered_split(&[], 8, all), 0);
    }

    #[test]
    fn a_merge_stays_within_the_budget() {
        assert_eq!(tiered_split(&[7; 8], 8, 21), 3);
        assert_eq!(tiered_split(&[7; 8], 8, 13), 0);
        // A crowded tier of big packs: merging the small ones into one of them
        // leaves it crowded, so nothing merges; two of them that fit do.
        let mut packs = vec![5];
        packs.extend([70; 8]);
        assert_eq!(tiered_split(&packs, 8, 100), 0);
        assert_eq!(tiered_split(&packs, 8, 145), 3);
        assert_eq!(tiered_split(&[70; 8], 8, 140), 2);
    }
}
