//! Writing an event's objects: the trees on the changed paths, staged in memory and
//! landed as one packfile.

use std::cell::RefCell;
use std::collections::BTreeMap;

use anyhow::Result;
use git2::{Mempack, ObjectType, Odb, Oid, Repository, Tree};

use crate::board::Change;

/// A tree edit: blobs to write (or remove) at paths below one directory.
enum Node {
    Blob(Vec<u8>),
    Remove,
    Dir(BTreeMap<String, Node>),
}

/// Writes `changes` on top of `base` and returns the new root tree. Only the trees
/// on the changed paths are rewritten; every other entry keeps its object. Trees
/// are read from `read` and the new objects written to `write` (the same
/// repository, or a [`Staging`] area); their ids are added to `written`.
pub fn write_changes(
    read: &Repository,
    write: &Repository,
    written: &mut Vec<Oid>,
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
    match write_dir(read, write, written, base, root)? {
        Some(oid) => Ok(oid),
        // Only a board without files: never after `init`, which writes the config.
        None => {
            let oid = write.treebuilder(None)?.write()?;
            written.push(oid);
            Ok(oid)
        }
    }
}

fn write_dir(
    read: &Repository,
    write: &Repository,
    written: &mut Vec<Oid>,
    base: Option<&Tree<'_>>,
    edits: BTreeMap<String, Node>,
) -> Result<Option<Oid>> {
    let mut builder = write.treebuilder(base)?;
    for (name, node) in edits {
        match node {
            Node::Blob(bytes) => {
                let oid = write.blob(&bytes)?;
                written.push(oid);
                builder.insert(&name, oid, 0o100644)?;
            }
            Node::Remove => {
                if builder.get(&name)?.is_some() {
                    builder.remove(&name)?;
                }
            }
            Node::Dir(children) => {
                let sub = match base.and_then(|b| b.get_name(&name)) {
                    Some(e) if e.kind() == Some(ObjectType::Tree) => Some(read.find_tree(e.id())?),
                    _ => None,
                };
                match write_dir(read, write, written, sub.as_ref(), children)? {
                    Some(oid) => {
                        builder.insert(&name, oid, 0o040000)?;
                    }
                    // A directory left empty goes: git keeps no empty trees.
                    None if builder.get(&name)?.is_some() => builder.remove(&name)?,
                    None => {}
                }
            }
        }
    }
    if builder.is_empty() {
        return Ok(None);
    }
    let oid = builder.write()?;
    written.push(oid);
    Ok(Some(oid))
}

/// An in-memory object database for the objects of an event. `Staging::land`
/// writes what was staged into the repository as one packfile: two new files per
/// event (the pack and its index) where loose objects would be one file per
/// object, and creating a file is most of an event's cost on some file systems.
pub struct Staging<'a> {
    /// A repository over nothing but `mempack`: new objects go there.
    pub(super) area: &'a Repository,
    mempack: &'a Mempack<'a>,
    /// What was written since the last landing.
    written: RefCell<Vec<Oid>>,
}

impl Staging<'_> {
    /// Runs `f` with a fresh staging area.
    pub fn with<T>(f: impl FnOnce(&Staging<'_>) -> Result<T>) -> Result<T> {
        let area = Repository::from_odb(Odb::new()?)?;
        let odb = area.odb()?;
        let mempack = odb.add_new_mempack_backend(1)?;
        f(&Staging {
            area: &area,
            mempack: &mempack,
            written: RefCell::new(vec![]),
        })
    }

    /// Writes `changes` on top of `base` (read from `read`) into the area.
    pub(super) fn write_changes(
        &self,
        read: &Repository,
        base: Option<&Tree<'_>>,
        changes: &[Change],
    ) -> Result<Oid> {
        let mut written = self.written.borrow_mut();
        write_changes(read, self.area, &mut written, base, changes)
    }

    /// Writes one raw object into the area.
    pub(super) fn write(&self, kind: ObjectType, data: &[u8]) -> Result<Oid> {
        let oid = self.area.odb()?.write(kind, data)?;
        self.written.borrow_mut().push(oid);
        Ok(oid)
    }

    /// Drops the staged objects.
    pub(super) fn discard(&self) -> Result<()> {
        self.written.borrow_mut().clear();
        Ok(self.mempack.reset()?)
    }

    /// Writes the staged objects into `repo` as one packfile and empties the area.
    /// The pack counts once it and then its index are renamed into place, before
    /// the ref moves; a writer killed before that leaves only temporary files,
    /// which a later merge removes ([`crate::packs::write`]).
    pub(super) fn land(&self, repo: &Repository) -> Result<()> {
        let mut written = self.written.borrow_mut();
        let encoded = self.pack(&written)?;
        crate::packs::write(repo, &encoded)?;
        written.clear();
        self.mempack.reset()?;
        Ok(())
    }

    /// The staged objects, each once, as a packfile and its index
    /// ([`crate::packs::encode`]).
    fn pack(&self, oids: &[Oid]) -> Result<crate::packs::Encoded> {
        let odb = self.area.odb()?;
        let mut seen = std::collections::HashSet::new();
        let mut objects = vec![];
        for oid in oids.iter().copied().filter(|o| seen.insert(*o)) {
            objects.push((oid, odb.read(oid)?));
        }
        crate::packs::encode(objects.iter().map(|(id, o)| (*id, o.kind(), o.data())))
    }
}
