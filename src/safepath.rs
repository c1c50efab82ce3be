//! Relative paths taken from untrusted input (the board, a branch's tree, the run's
//! config on the ref), checked before any of them is joined to a directory.
//!
//! Pure: no I/O. The board's rules and `mara collect` call the same function, so a
//! path the rules accept is a path collect can write (issue 13, part 1). The checks
//! follow git's own `verify_path`: besides `..` and absolute paths, a component that
//! some filesystem reads as `.git` (any case; with trailing dots or spaces or an
//! alternate data stream on NTFS; its 8.3 short name `git~1`; with the code points HFS+
//! ignores) is refused, since writing below it would write into a repository.

/// Longest path we accept, in bytes (Linux's `PATH_MAX`).
pub const MAX_PATH_BYTES: usize = 4096;
/// Longest component we accept, in bytes (`NAME_MAX` of common filesystems).
pub const MAX_COMPONENT_BYTES: usize = 255;

/// Checks that `path` is a plain relative path of `/`-separated components that
/// stays inside whatever directory it is joined to, and returns its components.
///
/// Refused, with the reason as text: an empty path, an absolute one, an empty,
/// `.` or `..` component, a component that names `.git` on some filesystem, a
/// backslash, NUL or any other control character, and over-long paths or components.
pub fn check_relative(path: &str) -> Result<Vec<&str>, String> {
    if path.is_empty() {
        return Err("is empty".into());
    }
    if path.len() > MAX_PATH_BYTES {
        return Err(format!("is longer than {MAX_PATH_BYTES} bytes"));
    }
    if path.starts_with('/') {
        return Err("is absolute; give a path relative to the worktree".into());
    }
    if let Some(c) = path.chars().find(|c| *c == '\\' || c.is_control()) {
        return Err(match c {
            '\\' => "contains a backslash; separate folders with '/'".into(),
            '\0' => "contains a NUL byte".into(),
            c => format!("contains the control character {c:?}"),
        });
    }
    let parts: Vec<&str> = path.split('/').collect();
    for part in &parts {
        check_component(part)?;
    }
    Ok(parts)
}

/// Checks one component of a path (a file or folder name): see [`check_relative`].
pub fn check_component(name: &str) -> Result<(), String> {
    match name {
        "" => Err("has an empty component ('//' or a trailing '/')".into()),
        "." => Err("has a '.' component".into()),
        ".." => Err("has a '..' component, which leads out of its folder".into()),
        _ if name.len() > MAX_COMPONENT_BYTES => Err(format!(
            "has a component longer than {MAX_COMPONENT_BYTES} bytes"
        )),
        _ if name.contains(['/', '\\']) || name.chars().any(char::is_control) => {
            Err(format!("has a component {name:?} that is not a plain name"))
        }
        _ if names_dot_git(name) => Err(format!(
            "has a component {name:?} that names a git directory (.git)"
        )),
        _ => Ok(()),
    }
}

/// Whether some filesystem git runs on reads `name` as `.git`.
fn names_dot_git(name: &str) -> bool {
    // HFS+ ignores these code points in names (git's `is_hfs_dotgit`).
    let folded: String = name
        .chars()
        .filter(|c| !is_hfs_ignorable(*c))
        .collect::<String>()
        .to_ascii_lowercase();
    // NTFS: `name:stream` is the file `name`, and trailing dots and spaces are dropped
    // (git's `is_ntfs_dotgit`); `git~1` is the 8.3 short name of `.git`.
    let base = folded.split(':').next().unwrap_or_default();
    let base = base.trim_end_matches(['.', ' ']);
    base == ".git" || base == "git~1"
}

/// The code points HFS+ leaves out when it compares names (as listed in git's
/// `utf8.c`, `next_hfs_char`).
fn is_hfs_ignorable(c: char) -> bool {
    matches!(
        c,
        '\u{200c}'..='\u{200f}' | '\u{202a}'..='\u{202e}' | '\u{206a}'..='\u{206f}' | '\u{feff}'
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_relative_paths_pass() {
        for p in [
            "implementer_1.md",
            "docs/api.md",
            "a/b/c.txt",
            ".gitignore",
            ".github/workflows/ci.yml",
            "git",
            "...x",
            "my.git",
            ".gitx",
        ] {
            assert!(check_relative(p).is_ok(), "{p}: {:?}", check_relative(p));
        }
        assert_eq!(check_relative("a/b").expect("plain"), vec!["a", "b"]);
    }

    #[test]
    fn escapes_and_git_directories_are_refused() {
        for p in [
            "",
            "/etc/passwd",
            "..",
            "../x",
            "b/../../../../.git/hooks/post-commit",
            "a/./b",
            ".",
            "a//b",
            "a/",
            ".git",
            ".git/hooks/post-commit",
            "sub/.git/config",
            ".GIT/hooks/x",
            ".Git",
            ".git.",
            ".git ",
            ".git. . ",
            ".git::$INDEX_ALLOCATION/hooks/x",
            "GIT~1/hooks/x",
            "git~1",
            ".g\u{200c}it/hooks/x",
            "\u{feff}.git",
            ".gi\u{206f}t",
            "a\\..\\b",
            "a\0b",
            "a\nb",
            "a\u{1b}[31m",
        ] {
            assert!(check_relative(p).is_err(), "{p:?} was accepted");
        }
        assert!(check_relative(&"a".repeat(256)).is_err());
        assert!(check_relative(&"a/".repeat(2100)).is_err());
    }
}
