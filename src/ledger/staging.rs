//! Writing an event's objects: the trees on the changed paths, staged in memory and
//! landed as one packfile.

use std::cell::RefCell;
use std::collections::BTreeMap;

use anyhow::Result;
use git2::{ObjectType, Oid, Repository, Tree};

use crate::board::Change;

/// A tree edit: blobs to write (or remove) at paths below one directory.
enum Node {
    Blob(Vec<u8>),
    Remove,
    Dir(BTreeMap<String, Node>),
}

/// Where [`write_changes`] puts the objects it makes: a repository's object
/// database, or a [`Staging`] area.
pub trait Objects {
    /// Stores one object and returns its id.
    fn put(&self, kind: ObjectType, data: Vec<u8>) -> Result<Oid>;
}

impl Objects for Repository {
    fn put(&self, kind: ObjectType, data: Vec<u8>) -> Result<Oid> {
        Ok(self.odb()?.write(kind, &data)?)
    }
}

/// Writes `changes` on top of `base` and returns the new root tree. Only the trees
/// on the changed paths are rewritten; every other entry keeps its object. Trees
/// are read from `read` and the new objects put into `write` (the same
/// repository, or a [`Staging`] area).
pub fn write_changes(
    read: &Repository,
    write: &dyn Objects,
    base: Option<&Tree<'_>>,
    changes: &[Change],
) -> Result<Oid> {
    let mut root = BTreeMap::new();
    for c in changes {
        let path = c.path();
        let (file, dirs) = path.split_last().expect("board paths are never empty");
        let mut node = &mut root;
        for d in dirs {
            let next = node
                .entry(d.clone())
                .or_insert_with(|| Node::Dir(BTreeMap::new()));
            node = match next {
                Node::Dir(m) => m,
                Node::Blob(_) | Node::Remove => {
                    unreachable!("board paths never put a file where a directory is")
                }
            };
        }
        let leaf = c.contents().map_or(Node::Remove, Node::Blob);
        node.insert(file.clone(), leaf);
    }
    match write_dir(read, write, base, root)? {
        Some(oid) => Ok(oid),
        // Only a board without files: never after `init`, which writes the config.
        None => write.put(ObjectType::Tree, vec![]),
    }
}

/// A tree's entry as git stores it: mode, name, object.
struct Entry<'n> {
    mode: i32,
    name: &'n [u8],
    id: Oid,
}

const MODE_TREE: i32 = 0o040000;
const MODE_BLOB: i32 = 0o100644;

/// git's order of tree entries: by name, a tree's name compared as if it ended
/// in `/` (so `a.b` comes before the tree `a`, which comes before `a0`), as
/// git's `base_name_compare` and libgit2's tree builder sort them.
fn git_order(a: &Entry<'_>, b: &Entry<'_>) -> std::cmp::Ordering {
    let len = a.name.len().min(b.name.len());
    let after = |e: &Entry<'_>| match e.name.get(len) {
        Some(&c) => c,
        None if e.mode & 0o170000 == MODE_TREE => b'/',
        None => 0,
    };
    a.name[..len]
        .cmp(&b.name[..len])
        .then_with(|| after(a).cmp(&after(b)))
}

/// The tree of `base` with `edits` applied, written by hand rather than with
/// libgit2's tree builder: the builder copies every entry of the base into a
/// hash map, sorts them all again and hashes with SHA-1DC, a tenth of a claim
/// on a 400-task board (issue 16). Here the base's entries, already in git's
/// order, are merged with the few edited ones in one pass. The bytes are the
/// builder's (`mode name NUL id`, the mode in octal without a leading zero,
/// each base entry's mode kept as stored), so a replay gets the same ids.
fn write_dir(
    read: &Repository,
    write: &dyn Objects,
    base: Option<&Tree<'_>>,
    edits: BTreeMap<String, Node>,
) -> Result<Option<Oid>> {
    // The edited entries, written first (a sub-tree's id is needed here).
    let mut edited: Vec<(String, Option<(i32, Oid)>)> = Vec::with_capacity(edits.len());
    for (name, node) in edits {
        let entry = match node {
            Node::Blob(bytes) => Some((MODE_BLOB, write.put(ObjectType::Blob, bytes)?)),
            Node::Remove => None,
            Node::Dir(children) => {
                let sub = match base.and_then(|b| b.get_name(&name)) {
                    Some(e) if e.kind() == Some(ObjectType::Tree) => Some(read.find_tree(e.id())?),
                    _ => None,
                };
                // A directory left empty goes: git keeps no empty trees.
                write_dir(read, write, sub.as_ref(), children)?.map(|id| (MODE_TREE, id))
            }
        };
        edited.push((name, entry));
    }
    let mut added: Vec<Entry<'_>> = edited
        .iter()
        .filter_map(|(name, e)| {
            e.map(|(mode, id)| Entry {
                mode,
                name: name.as_bytes(),
                id,
            })
        })
        .collect();
    added.sort_by(git_order);
    let replaced = |name: &[u8]| edited.iter().any(|(n, _)| n.as_bytes() == name);
    let kept = base.into_iter().flat_map(|t| t.iter());
    let mut out = Vec::with_capacity(base.map_or(0, |t| t.len() * 40) + added.len() * 40);
    let mut added = added.into_iter().peekable();
    for e in kept {
        if replaced(e.name_bytes()) {
            continue;
        }
        let e = Entry {
            mode: e.filemode_raw(),
            name: e.name_bytes(),
            id: e.id(),
        };
        while let Some(a) = added.next_if(|a| git_order(a, &e).is_lt()) {
            push_entry(&mut out, &a);
        }
        push_entry(&mut out, &e);
    }
    for a in added {
        push_entry(&mut out, &a);
    }
    if out.is_empty() {
        return Ok(None);
    }
    Ok(Some(write.put(ObjectType::Tree, out)?))
}

fn push_entry(out: &mut Vec<u8>, e: &Entry<'_>) {
    use std::io::Write as _;
    let _ = write!(out, "{:o} ", e.mode);
    out.extend_from_slice(e.name);
    out.push(0);
    out.extend_from_slice(e.id.as_bytes());
}

/// The objects of an event, kept in memory until `Staging::land` writes them
/// into the repository as one packfile: two new files per event (the pack and
/// its index) where loose objects would be one file per object, and creating a
/// file is most of an event's cost on some file systems.
#[derive(Default)]
pub struct Staging {
    /// What was staged since the last landing, in order, each with its id.
    objects: RefCell<Vec<(Oid, ObjectType, Vec<u8>)>>,
}

impl Objects for Staging {
    /// Stores `data` and returns its id: the SHA-1 of git's object header and
    /// the data, as git names objects. Plain SHA-1 (not libgit2's SHA-1DC, which
    /// detects collision attacks in what it reads): these are mara's own
    /// objects, and their ids are checked by whoever reads them.
    fn put(&self, kind: ObjectType, data: Vec<u8>) -> Result<Oid> {
        let mut sha = sha1_smol::Sha1::new();
        sha.update(format!("{} {}\0", kind.str(), data.len()).as_bytes());
        sha.update(&data);
        let oid = Oid::from_bytes(&sha.digest().bytes())?;
        self.objects.borrow_mut().push((oid, kind, data));
        Ok(oid)
    }
}

impl Staging {
    /// Runs `f` with a fresh staging area.
    pub fn with<T>(f: impl FnOnce(&Staging) -> Result<T>) -> Result<T> {
        f(&Staging::default())
    }

    /// Writes `changes` on top of `base` (read from `read`) into the area.
    pub(super) fn write_changes(
        &self,
        read: &Repository,
        base: Option<&Tree<'_>>,
        changes: &[Change],
    ) -> Result<Oid> {
        write_changes(read, self, base, changes)
    }

    /// Drops the staged objects.
    pub(super) fn discard(&self) {
        self.objects.borrow_mut().clear();
    }

    /// Writes the staged objects into `repo` as one packfile and empties the area.
    /// The pack counts once it and then its index are renamed into place, before
    /// the ref moves; a writer killed before that leaves only temporary files,
    /// which a later merge removes ([`crate::packs::write`]).
    pub(super) fn land(&self, repo: &Repository) -> Result<()> {
        let mut objects = self.objects.borrow_mut();
        let mut seen = std::collections::HashSet::new();
        objects.retain(|(id, _, _)| seen.insert(*id));
        let encoded = crate::packs::encode(
            objects
                .iter()
                .map(|(id, kind, data)| (*id, *kind, &data[..])),
        )?;
        crate::packs::write(repo, &encoded)?;
        objects.clear();
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::{write_dir, Node, Staging};
    use git2::{ObjectType, Oid, Repository, Tree};
    use proptest::prelude::*;
    use std::collections::BTreeMap;

    /// Names whose order differs between plain string order and git's (a tree
    /// named `a` sorts as `a/`, after `a.b` and `a-`, before `a0`).
    const NAMES: &[&str] = &["a", "a.b", "a-", "a0", "a_b", "ab", "b", "z"];

    /// The old way, libgit2's tree builder, as the reference.
    fn reference(
        repo: &Repository,
        base: Option<&Tree<'_>>,
        edits: &BTreeMap<String, Edit>,
    ) -> Option<Oid> {
        let mut b = repo.treebuilder(base).expect("builder");
        for (name, edit) in edits {
            match edit {
                Edit::Blob(bytes) => {
                    let id = repo.blob(bytes).expect("blob");
                    b.insert(name, id, 0o100644).expect("insert");
                }
                Edit::Remove => {
                    if b.get(name).expect("get").is_some() {
                        b.remove(name).expect("remove");
                    }
                }
                Edit::Dir(children) => {
                    let sub = base
                        .and_then(|t| t.get_name(name))
                        .filter(|e| e.kind() == Some(ObjectType::Tree))
                        .map(|e| repo.find_tree(e.id()).expect("sub-tree"));
                    match reference(repo, sub.as_ref(), children) {
                        Some(id) => {
                            b.insert(name, id, 0o040000).expect("insert");
                        }
                        None if b.get(name).expect("get").is_some() => {
                            b.remove(name).expect("remove")
                        }
                        None => {}
                    }
                }
            }
        }
        (!b.is_empty()).then(|| b.write().expect("write"))
    }

    #[derive(Clone, Debug)]
    enum Edit {
        Blob(Vec<u8>),
        Remove,
        Dir(BTreeMap<String, Edit>),
    }

    fn node(e: &Edit) -> Node {
        match e {
            Edit::Blob(b) => Node::Blob(b.clone()),
            Edit::Remove => Node::Remove,
            Edit::Dir(m) => Node::Dir(m.iter().map(|(k, v)| (k.clone(), node(v))).collect()),
        }
    }

    fn edit() -> impl Strategy<Value = Edit> {
        let leaf = prop_oneof![
            prop::collection::vec(any::<u8>(), 0..8).prop_map(Edit::Blob),
            Just(Edit::Remove),
        ];
        leaf.prop_recursive(2, 8, 4, |inner| {
            prop::collection::btree_map(
                prop::sample::select(NAMES).prop_map(str::to_owned),
                inner,
                0..4,
            )
            .prop_map(Edit::Dir)
        })
    }

    fn edits() -> impl Strategy<Value = BTreeMap<String, Edit>> {
        prop::collection::btree_map(
            prop::sample::select(NAMES).prop_map(str::to_owned),
            edit(),
            0..6,
        )
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(200))]
        /// Written by hand, a tree is byte for byte what libgit2's builder
        /// writes, whatever the base and the edits (files and trees of the same
        /// name, emptied trees, a tree where the base has a file).
        #[test]
        fn hand_written_trees_are_the_builders(base in edits(), change in edits()) {
            let dir = tempfile::tempdir().expect("tempdir");
            let repo = Repository::init(dir.path()).expect("init");
            let base = reference(&repo, None, &base).map(|id| repo.find_tree(id).expect("base"));
            let expected = reference(&repo, base.as_ref(), &change);
            let stage = Staging::default();
            let got = write_dir(&repo, &stage, base.as_ref(), match node(&Edit::Dir(change)) {
                Node::Dir(m) => m,
                _ => unreachable!(),
            }).expect("write_dir");
            prop_assert_eq!(got, expected);
            // And each tree's bytes are what its id names.
            for (id, kind, data) in stage.objects.borrow().iter() {
                prop_assert_eq!(*id, Oid::hash_object(*kind, data).expect("hash"));
            }
        }
    }
}
