//! The conflict matrix: before anything merges, every branch against the target and
//! every pair of branches against each other, as tree-level three-way merges in
//! memory (libgit2's `merge_commits` into an in-memory index: no worktree, no index
//! file, nothing written but the merged blobs git would write too), and from it the
//! merge order.
//!
//! Order heuristic: a branch that clashes with nothing (neither the target nor any
//! other branch) goes first. The others are taken greedily by fewest clashes (a
//! minimum-degree independent set of the clash graph): the branch with the fewest
//! clashes among those left is merged, and every branch it clashes with is put
//! back to the end; ties keep the given order. Merging a set of branches that do not
//! clash pairwise leaves as few clashes as that set allows, and each branch put back
//! becomes one conflict to resolve.

use std::collections::BTreeSet;

use anyhow::Result;
use git2::{Oid, Repository};
use serde::Serialize;
use similar::{DiffOp, TextDiff};

use super::{touched, ConflictKind, Sides, Touch};
use crate::ids::RunId;

/// Lines `start..=end` (1-based) of one side of a clashing file; `len` 0 is an
/// insertion before `start`.
#[derive(Serialize, Clone, Copy, Debug, PartialEq, Eq)]
pub struct Lines {
    pub start: usize,
    pub len: usize,
}

/// One region both sides changed: where it is in the base and on each side.
#[derive(Serialize, Clone, Debug, PartialEq, Eq)]
pub struct Hunk {
    pub base: Lines,
    pub a: Lines,
    pub b: Lines,
}

/// One file two sides both changed in ways that do not merge.
#[derive(Serialize, Clone, Debug)]
pub struct FileClash {
    pub path: String,
    pub kind: ConflictKind,
    pub hunks: Vec<Hunk>,
}

/// A pair that clashes (`a` is the target when the branch clashes with it).
#[derive(Serialize, Clone, Debug)]
pub struct Clash {
    pub a: String,
    pub b: String,
    /// Where the two sides forked.
    pub base: String,
    pub files: Vec<FileClash>,
    pub a_by: Touch,
    pub b_by: Touch,
}

/// The matrix and the order chosen from it.
#[derive(Serialize, Clone, Debug, Default)]
pub struct Matrix {
    pub target: String,
    pub branches: Vec<String>,
    /// Every clashing pair; a pair not listed merges cleanly.
    pub clashes: Vec<Clash>,
    /// The merge order.
    pub order: Vec<String>,
    /// How the order was chosen, for people.
    pub heuristic: String,
}

pub const HEURISTIC: &str = "branches that clash with nothing first; then, greedily, the branch with the fewest clashes among those left, putting back every branch it clashes with; ties keep the given order";

impl Matrix {
    /// Whether `a` and `b` clash.
    pub fn clash(&self, a: &str, b: &str) -> bool {
        self.clashes
            .iter()
            .any(|c| (c.a == a && c.b == b) || (c.a == b && c.b == a))
    }

    /// The matrix as text: one line per clashing pair, its files and hunks.
    pub fn text(&self) -> String {
        use std::fmt::Write;
        let mut s = String::new();
        let _ = writeln!(
            s,
            "conflict matrix: {} branches against {} and each other, {} merges in memory",
            self.branches.len(),
            self.target,
            self.branches.len() * (self.branches.len() + 1) / 2
        );
        if self.clashes.is_empty() {
            let _ = writeln!(s, "no clashes: every pair merges cleanly");
        }
        for c in &self.clashes {
            let _ = writeln!(
                s,
                "{} x {} (base {}): {} file(s)",
                c.a,
                c.b,
                &c.base[..10.min(c.base.len())],
                c.files.len()
            );
            let _ = writeln!(s, "  {}: {}", c.a, c.a_by.describe());
            let _ = writeln!(s, "  {}: {}", c.b, c.b_by.describe());
            for f in &c.files {
                let hunks: Vec<String> = f
                    .hunks
                    .iter()
                    .map(|h| format!("base {} / {} / {}", range(h.base), range(h.a), range(h.b)))
                    .collect();
                let _ = writeln!(
                    s,
                    "  {} ({}){}{}",
                    crate::board::one_line(&f.path, 200),
                    f.kind.as_str(),
                    if hunks.is_empty() { "" } else { ": lines " },
                    hunks.join("; ")
                );
            }
        }
        let _ = writeln!(s, "order: {}", self.order.join(", "));
        let _ = writeln!(s, "  ({})", self.heuristic);
        s
    }
}

fn range(l: Lines) -> String {
    if l.len == 0 {
        format!("+{}", l.start)
    } else {
        format!("{}-{}", l.start, l.start + l.len - 1)
    }
}

/// Computes the matrix of `branches` (name, tip) against `target` (name, tip).
pub fn compute(
    repo: &Repository,
    run: &RunId,
    target: (&str, Oid),
    branches: &[(String, Oid)],
) -> Result<Matrix> {
    // A handle of its own whose writes (the blobs a content merge makes) stay in
    // memory: the matrix leaves nothing behind, and writes no loose objects.
    let own = Repository::open(repo.path())?;
    own.odb()?.add_new_mempack_backend(1000)?;
    let repo = &own;
    let mut opts = git2::MergeOptions::new();
    opts.find_renames(true);
    let mut m = Matrix {
        target: target.0.to_owned(),
        branches: branches.iter().map(|(b, _)| b.clone()).collect(),
        heuristic: HEURISTIC.to_owned(),
        ..Matrix::default()
    };
    let sides: Vec<(&str, Oid)> = std::iter::once(target)
        .chain(branches.iter().map(|(b, t)| (b.as_str(), *t)))
        .collect();
    for i in 0..sides.len() {
        for j in i + 1..sides.len() {
            if let Some(c) = clash(repo, run, sides[i], sides[j], i == 0, &opts)? {
                m.clashes.push(c);
            }
        }
    }
    m.order = order(&m);
    Ok(m)
}

/// Merges `a` and `b` in memory; the clash when they do not merge cleanly.
fn clash(
    repo: &Repository,
    run: &RunId,
    a: (&str, Oid),
    b: (&str, Oid),
    a_is_target: bool,
    opts: &git2::MergeOptions,
) -> Result<Option<Clash>> {
    if a.1 == b.1 || repo.graph_descendant_of(a.1, b.1)? || repo.graph_descendant_of(b.1, a.1)? {
        return Ok(None);
    }
    let (ca, cb) = (repo.find_commit(a.1)?, repo.find_commit(b.1)?);
    let index = repo.merge_commits(&ca, &cb, Some(opts))?;
    if !index.has_conflicts() {
        return Ok(None);
    }
    let fork = repo.merge_base(a.1, b.1).unwrap_or(a.1);
    let mut files = vec![];
    let mut paths = vec![];
    for c in index.conflicts()? {
        let c = c?;
        let sides = Sides::of(repo, &c)?;
        let hunks = match (sides.binary, &sides.ours, &sides.theirs) {
            (false, Some(x), Some(y)) => {
                clash_hunks(sides.base.as_deref().unwrap_or_default(), x, y)
            }
            _ => vec![],
        };
        let (path, kind) = (sides.path, sides.kind);
        paths.push(path.clone());
        files.push(FileClash { path, kind, hunks });
    }
    let by = |side: (&str, Oid), named: bool| -> Result<Touch> {
        let mut t = Touch::default();
        let mut inst = BTreeSet::new();
        let mut tasks = BTreeSet::new();
        for p in &paths {
            let one = touched(repo, run, fork, side.1, p, named.then_some(side.0))?;
            inst.extend(one.instances);
            tasks.extend(one.tasks);
        }
        t.instances = inst.into_iter().collect();
        t.tasks = tasks.into_iter().collect();
        Ok(t)
    };
    Ok(Some(Clash {
        a: a.0.to_owned(),
        b: b.0.to_owned(),
        base: fork.to_string(),
        a_by: by(a, !a_is_target)?,
        b_by: by(b, true)?,
        files,
    }))
}

/// The regions of `base` that both `a` and `b` change (overlapping or touching, as
/// a three-way merge refuses them), with where each is on either side.
pub fn clash_hunks(base: &[u8], a: &[u8], b: &[u8]) -> Vec<Hunk> {
    let base = String::from_utf8_lossy(base);
    let (a, b) = (String::from_utf8_lossy(a), String::from_utf8_lossy(b));
    let ca = changes(&base, &a);
    let cb = changes(&base, &b);
    let mut out: Vec<Hunk> = vec![];
    for x in &ca {
        for y in &cb {
            let (xs, xe) = (x.0.start, x.0.start + x.0.len);
            let (ys, ye) = (y.0.start, y.0.start + y.0.len);
            // Overlapping, or touching (an insertion at the other's edge).
            if xs <= ye && ys <= xe {
                let start = xs.min(ys);
                let end = xe.max(ye);
                out.push(Hunk {
                    base: Lines {
                        start,
                        len: end - start,
                    },
                    a: x.1,
                    b: y.1,
                });
            }
        }
    }
    out
}

/// The changed regions of `to` against `from`: (lines of `from`, lines of `to`),
/// 1-based.
fn changes(from: &str, to: &str) -> Vec<(Lines, Lines)> {
    let diff = TextDiff::from_lines(from, to);
    diff.ops()
        .iter()
        .filter(|op| !matches!(op, DiffOp::Equal { .. }))
        .map(|op| {
            let (o, n) = (op.old_range(), op.new_range());
            (
                Lines {
                    start: o.start + 1,
                    len: o.len(),
                },
                Lines {
                    start: n.start + 1,
                    len: n.len(),
                },
            )
        })
        .collect()
}

/// The merge order of the matrix's branches (see the module's heuristic).
fn order(m: &Matrix) -> Vec<String> {
    let target = m.target.as_str();
    let degree = |b: &str, among: &[String]| {
        among.iter().filter(|o| *o != b && m.clash(b, o)).count() + usize::from(m.clash(target, b))
    };
    let mut out = vec![];
    let mut left: Vec<String> = vec![];
    for b in &m.branches {
        if degree(b, &m.branches) == 0 {
            out.push(b.clone());
        } else {
            left.push(b.clone());
        }
    }
    let mut put_back = vec![];
    while !left.is_empty() {
        let (i, _) = left
            .iter()
            .enumerate()
            .min_by_key(|(i, b)| (degree(b, &left), *i))
            .expect("left is not empty");
        let b = left.remove(i);
        let (clashing, rest): (Vec<String>, Vec<String>) =
            left.into_iter().partition(|o| m.clash(&b, o));
        out.push(b);
        put_back.extend(clashing);
        left = rest;
    }
    out.extend(put_back);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hunks_are_the_regions_both_sides_change() {
        let base = "1\n2\n3\n4\n5\n6\n7\n8\n";
        let a = "1\n2\nA3\n4\n5\n6\n7\nA8\n";
        let b = "1\n2\nB3\n4\n5\n6\n7\n8\n";
        let h = clash_hunks(base.as_bytes(), a.as_bytes(), b.as_bytes());
        assert_eq!(
            h,
            [Hunk {
                base: Lines { start: 3, len: 1 },
                a: Lines { start: 3, len: 1 },
                b: Lines { start: 3, len: 1 },
            }]
        );
    }

    #[test]
    fn the_order_merges_a_clash_free_set_first() {
        let c = |a: &str, b: &str| Clash {
            a: a.into(),
            b: b.into(),
            base: String::new(),
            files: vec![],
            a_by: Touch::default(),
            b_by: Touch::default(),
        };
        let m = Matrix {
            target: "t".into(),
            branches: vec!["b1".into(), "b2".into(), "b3".into(), "b4".into()],
            clashes: vec![c("b1", "b2"), c("b2", "b3")],
            ..Matrix::default()
        };
        assert_eq!(order(&m), ["b4", "b1", "b3", "b2"]);
    }
}
