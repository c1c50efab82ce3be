//! Path globs of tasks (`paths`): checking them and matching repository paths.
//!
//! `**` spans folders, `*` and `?` stay within one folder, a trailing `/` means
//! everything below (`src/ui/` matches `src/ui/a/b.rs`), and globset's `[abc]` and
//! `{a,b}` work as in ripgrep (a `\` escape would too, but the board's path rule
//! refuses backslashes: one is a separator on Windows). Matching is globset's: the globs
//! compile into one automaton, so a match costs time linear in the path, whatever
//! the glob. The hand-written backtracking matcher this replaces took seconds on a
//! 30-character file name against `*a*a*a*a*a*a*a*a*a*a*a*a*a*a*b`, and minutes on
//! 40 (issue 13, item 5), in the pre-commit hook of every instance.
//!
//! Pure (no I/O), so the board's rules call [`check`] when a task is added.

use std::path::Path;

use globset::{Glob, GlobBuilder, GlobSet, GlobSetBuilder};

/// The glob as globset reads it: empty folder names dropped (`src//a` is `src/a`,
/// a leading `/` is ignored, as the hand-written matcher did), and a trailing `/`
/// spelled out as `/**`.
fn normalize(glob: &str) -> String {
    let mut parts: Vec<&str> = glob.split('/').filter(|s| !s.is_empty()).collect();
    if glob.ends_with('/') {
        parts.push("**");
    }
    parts.join("/")
}

fn parse(glob: &str) -> Result<Glob, globset::Error> {
    GlobBuilder::new(&normalize(glob))
        // `*` and `?` stay within one folder; only `**` crosses a `/`.
        .literal_separator(true)
        .backslash_escape(true)
        .build()
}

/// Parses and compiles one glob; the error says what is wrong with it (an
/// unclosed `[` or `{`, a dangling `\`, a reversed range).
fn compile(glob: &str) -> Result<Glob, String> {
    let parsed = parse(glob).map_err(|e| e.kind().to_string())?;
    GlobSet::new([parsed.clone()]).map_err(|e| e.kind().to_string())?;
    Ok(parsed)
}

/// Checks a glob; the error reads `{what} "{glob}" is invalid: {reason}`.
pub fn check(what: &str, glob: &str) -> Result<(), String> {
    compile(glob)
        .map(drop)
        .map_err(|why| format!("{what} {glob:?} is invalid: {why}"))
}

/// A list of globs compiled once into one set, so each path is matched against
/// all of them in one pass.
pub struct Globs {
    set: GlobSet,
    /// For each glob of the set, its index in the list it was built from.
    index: Vec<usize>,
}

impl Globs {
    /// Compiles `globs`. Invalid ones are left out and returned with their index
    /// and what is wrong: a glob on the board may come from a hostile or older
    /// writer, and one bad glob must not stop the others from being checked.
    pub fn new<'a>(globs: impl IntoIterator<Item = &'a str>) -> (Globs, Vec<(usize, String)>) {
        let mut parsed = vec![];
        let mut invalid = vec![];
        for (i, g) in globs.into_iter().enumerate() {
            match parse(g) {
                Ok(p) => parsed.push((i, p)),
                Err(e) => invalid.push((i, e.kind().to_string())),
            }
        }
        let build = |parsed: &[(usize, Glob)]| {
            let mut b = GlobSetBuilder::new();
            for (_, p) in parsed {
                b.add(p.clone());
            }
            b.build()
        };
        // One compile for the whole list; only when that fails (a glob over the
        // automaton's size limit) is each glob compiled alone to find the culprit.
        let set = match build(&parsed) {
            Ok(set) => set,
            Err(_) => {
                parsed.retain(|(i, p)| match GlobSet::new([p.clone()]) {
                    Ok(_) => true,
                    Err(e) => {
                        invalid.push((*i, e.kind().to_string()));
                        false
                    }
                });
                build(&parsed).unwrap_or_else(|e| {
                    // Each compiles alone but not all together: match none rather
                    // than fail the commit, and say so.
                    invalid.extend(parsed.drain(..).map(|(i, _)| (i, e.kind().to_string())));
                    GlobSet::empty()
                })
            }
        };
        invalid.sort_by_key(|(i, _)| *i);
        let index = parsed.into_iter().map(|(i, _)| i).collect();
        (Globs { set, index }, invalid)
    }

    /// The index (in the list given to [`Globs::new`]) of the first glob that
    /// matches `path`, a path relative to the repository's top with `/` separators.
    pub fn first_match(&self, path: &Path) -> Option<usize> {
        self.set
            .matches(path)
            .into_iter()
            .map(|m| self.index[m])
            .min()
    }
}

/// Whether some path may match both `a` and `b` (a heuristic, erring towards
/// "yes"): a glob without wildcards is a path, matched by the other; two globs
/// overlap when the folder before the first wildcard of one holds the other's,
/// unless both end in different literal extensions (`src/*.rs`, `src/*.md`).
/// Written by hand: globset matches paths, it does not intersect globs.
pub fn may_overlap(a: &str, b: &str) -> bool {
    const WILD: [char; 5] = ['*', '?', '[', '{', '\\'];
    let literal = |g: &str| !g.contains(WILD);
    let as_path = |g: &str| g.trim_end_matches('/').to_owned();
    match (literal(a), literal(b)) {
        (true, true) => {
            let (a, b) = (as_path(a), as_path(b));
            a == b || b.starts_with(&format!("{a}/")) || a.starts_with(&format!("{b}/"))
        }
        (true, false) => matches(b, &as_path(a)) || may_overlap_prefix(a, b),
        (false, true) => matches(a, &as_path(b)) || may_overlap_prefix(b, a),
        (false, false) => {
            let prefix = |g: &str| {
                let cut = g.find(WILD).unwrap_or(g.len());
                g[..cut].rsplit_once('/').map_or("", |(d, _)| d).to_owned()
            };
            let (pa, pb) = (prefix(a), prefix(b));
            let nested = pa.is_empty()
                || pb.is_empty()
                || pa == pb
                || pa.starts_with(&format!("{pb}/"))
                || pb.starts_with(&format!("{pa}/"));
            let ext = |g: &str| {
                g.rsplit_once('.')
                    .map(|(_, e)| e.to_owned())
                    .filter(|e| !e.contains(WILD) && !e.contains('/'))
            };
            nested && !matches!((ext(a), ext(b)), (Some(x), Some(y)) if x != y)
        }
    }
}

/// A literal folder `dir` (`src/api/`) overlaps a glob below it.
fn may_overlap_prefix(dir: &str, glob: &str) -> bool {
    let d = dir.trim_end_matches('/');
    glob.starts_with(&format!("{d}/"))
}

/// Whether `glob` matches `path`; an invalid glob matches nothing.
pub fn matches(glob: &str, path: &str) -> bool {
    Globs::new([glob]).0.first_match(Path::new(path)).is_some()
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, Instant};

    use proptest::prelude::*;

    use super::*;

    #[test]
    fn overlaps_are_found_between_globs_and_paths() {
        assert!(may_overlap("src/api/**", "src/api/users.rs"));
        assert!(may_overlap("src/api/", "src/api/users.rs"));
        assert!(may_overlap("src/**", "src/api/*.rs"));
        assert!(may_overlap("src/api/", "src/api/**/*.rs"));
        assert!(may_overlap("docs/x.md", "docs/x.md"));
        assert!(!may_overlap("src/api/**", "src/ui/**"));
        assert!(!may_overlap("src/*.rs", "src/*.md"));
        assert!(!may_overlap("docs/x.md", "docs/y.md"));
        assert!(!may_overlap("src/ui/", "src/api/users.rs"));
    }

    #[test]
    fn globs_follow_folders() {
        assert!(matches("src/api/**", "src/api/x.rs"));
        assert!(matches("src/api/**", "src/api/v1/x.rs"));
        assert!(!matches("src/api/**", "src/apis/x.rs"));
        assert!(matches("src/api/", "src/api/v1/x.rs"));
        assert!(matches("src/ui/", "src/ui/a/b.rs"));
        assert!(!matches("src/ui/", "src/uix/a.rs"));
        assert!(matches("src/*.rs", "src/main.rs"));
        assert!(!matches("src/*.rs", "src/api/main.rs"));
        assert!(matches("**/*.md", "docs/a/b.md"));
        assert!(matches("**/*.md", "b.md"));
        assert!(matches("src/**/mod.rs", "src/mod.rs"));
        assert!(matches("src/**/mod.rs", "src/a/b/mod.rs"));
        assert!(matches("docs/api.md", "docs/api.md"));
        assert!(!matches("docs/api.md", "docs/api.mdx"));
        assert!(matches("a?c", "abc"));
        assert!(!matches("a?c", "a/c"));
        assert!(matches("/src//api/*.rs", "src/api/x.rs"));
        assert!(matches("src/a**.rs", "src/abc.rs"), "** inside a name is *");
        assert!(!matches("src/a**.rs", "src/a/b.rs"));
        assert!(matches("src/{api,ui}/**", "src/ui/x.rs"));
        assert!(matches("src/[ab].rs", "src/b.rs"));
        assert!(matches(r"src/\[id\].rs", "src/[id].rs"));
    }

    #[test]
    fn invalid_globs_name_the_glob_and_the_reason() {
        for (g, why) in [
            ("src/[ab", "unclosed character class"),
            ("src/{a,b", "unclosed alternate"),
            ("src/a}", "unopened alternate"),
            ("src/a\\", "dangling"),
            ("src/[z-a]", "invalid range"),
        ] {
            let e = check("path glob of T1", g).expect_err(g);
            assert!(
                e.starts_with(&format!("path glob of T1 {g:?} is invalid: ")) && e.contains(why),
                "{g}: {e}"
            );
            assert!(!matches(g, "src/a"), "{g}");
        }
        check("glob", "src/api/**").expect("a plain glob is valid");
        let (globs, invalid) = Globs::new(["src/[", "src/**", "docs/{"]);
        assert_eq!(invalid.iter().map(|(i, _)| *i).collect::<Vec<_>>(), [0, 2]);
        assert_eq!(globs.first_match(Path::new("src/x")), Some(1));
    }

    #[test]
    fn the_first_matching_glob_in_list_order_is_reported() {
        let (globs, invalid) = Globs::new(["docs/**", "src/*.rs", "src/**"]);
        assert!(invalid.is_empty());
        assert_eq!(globs.first_match(Path::new("src/a.rs")), Some(1));
        assert_eq!(globs.first_match(Path::new("src/a/b.rs")), Some(2));
        assert_eq!(globs.first_match(Path::new("README.md")), None);
    }

    /// Globs that made the backtracking matcher take exponential time, with paths
    /// that almost match them. Backtracking takes years on these (14 stars against
    /// 200 characters is C(200,14) tries); linear time takes milliseconds, so a
    /// bound of 2 s tells them apart with room for a loaded 2-core CI machine (a
    /// debug build there took 110 ms on the longest).
    #[test]
    fn pathological_globs_match_in_linear_time() {
        let mut globs = vec![
            format!("{}*b", "*a".repeat(14)),
            format!("{}*b", "*a".repeat(200)),
            format!("{}b", "?*".repeat(30)),
            format!("{}*b", "*?a".repeat(20)),
            format!("{}b", "**/a**/".repeat(14)),
            format!("{}b", "**/a/".repeat(14)),
            format!("{}*b", "{*a,?a}".repeat(14)),
        ];
        globs.push(globs.join("/"));
        for len in [40, 200, 4000] {
            let flat = "a".repeat(len);
            let deep = vec!["a"; len / 2].join("/");
            for g in &globs {
                let (set, invalid) = Globs::new([g.as_str()]);
                assert!(invalid.is_empty(), "{g}: {invalid:?}");
                for path in [&flat, &deep] {
                    let t = Instant::now();
                    assert_eq!(set.first_match(Path::new(path)), None, "{g} {path}");
                    let took = t.elapsed();
                    assert!(
                        took < Duration::from_secs(2),
                        "{g} against {len} characters took {took:?}"
                    );
                }
            }
        }
    }

    /// The backtracking matcher this module replaced: the reference for the
    /// documented semantics, on inputs small enough for it.
    fn reference(pattern: &str, path: &str) -> bool {
        fn segments(pat: &[&str], segs: &[&str]) -> bool {
            match pat.split_first() {
                None => segs.is_empty(),
                Some((&"**", rest)) => (0..=segs.len()).any(|i| segments(rest, &segs[i..])),
                Some((p, rest)) => {
                    !segs.is_empty()
                        && one(p.as_bytes(), segs[0].as_bytes())
                        && segments(rest, &segs[1..])
                }
            }
        }
        fn one(p: &[u8], s: &[u8]) -> bool {
            match p.split_first() {
                None => s.is_empty(),
                Some((b'*', rest)) => (0..=s.len()).any(|i| one(rest, &s[i..])),
                Some((b'?', rest)) => !s.is_empty() && one(rest, &s[1..]),
                Some((c, rest)) => s.first() == Some(c) && one(rest, &s[1..]),
            }
        }
        let pattern = match pattern.strip_suffix('/') {
            Some(p) => format!("{p}/**"),
            None => pattern.to_owned(),
        };
        let pat: Vec<&str> = pattern.split('/').filter(|s| !s.is_empty()).collect();
        let segs: Vec<&str> = path.split('/').collect();
        segments(&pat, &segs)
    }

    proptest! {
        /// Any text is checked without a panic, and what `check` accepts is what
        /// the hook compiles and matches.
        #[test]
        fn any_text_is_checked_and_matched_without_panic(
            glob in "(\\PC|[*?/{},!a\\[\\]\\\\-]){0,24}",
            path in "\\PC{0,24}",
        ) {
            let (globs, invalid) = Globs::new([glob.as_str()]);
            prop_assert_eq!(check("glob", &glob).is_ok(), invalid.is_empty());
            let _ = globs.first_match(Path::new(&path));
        }

        /// On globs of `*`, `?`, `**`, `/` and letters, and paths of letters and
        /// folders, the new matcher says what the old one said, except that
        /// `dir/**` no longer matches a file named `dir` itself.
        #[test]
        fn same_answers_as_the_backtracking_matcher(
            glob in "(a|b|\\*|\\?|\\*\\*|/){1,10}",
            path in "[ab]{1,3}(/[ab]{1,3}){0,3}",
        ) {
            let old = reference(&glob, &path);
            let new = matches(&glob, &path);
            let normalized = normalize(&glob);
            let dir_itself = normalized
                .strip_suffix("/**")
                .is_some_and(|dir| reference(dir, &path));
            if old != new {
                prop_assert!(old && dir_itself, "{glob:?} {path:?}: old {old}, new {new}");
            }
        }
    }
}
