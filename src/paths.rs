//! Where mara writes files: the repository's main work tree, a run's folder in it
//! (`.multi_agent_runs/<run>/`), and writing there without following symbolic links.
//!
//! The main work tree is found once, here, for every command that writes files
//! (`run`, `export`, `collect`, `integrate`), whatever the repository's shape: a linked
//! worktree, `git init --separate-git-dir`, a submodule, `GIT_DIR` with
//! `GIT_WORK_TREE`. The parent of the git directory is none of these in general
//! (issue 13, part 6). A bare repository has none: those commands refuse before they
//! write anything, and the board commands, which need no files, keep working.
//!
//! Below the work tree, folders are opened one component at a time with
//! `O_NOFOLLOW` (`openat`), and files are written to a temporary name in their folder
//! and renamed over the destination: a symbolic link planted anywhere under
//! `.multi_agent_runs/` is refused, never followed (issue 13, part 1).

use std::ffi::CString;
use std::fs::File;
use std::io::Write;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use anyhow::{anyhow, bail, Context, Result};
use git2::Repository;

use crate::ids::RunId;

/// The folder under the main work tree that holds every run's files.
pub const RUNS_DIR: &str = ".multi_agent_runs";

/// The repository's main work tree: where run folders live.
///
/// A linked worktree's main work tree is the one that owns the common git directory;
/// otherwise it is the work tree the repository was opened with (a submodule's own,
/// the one `GIT_WORK_TREE` names, the one a `--separate-git-dir` points from). A bare
/// repository has none, and `command` (`"run"`, `"export"`, ...) is named in the error.
pub fn main_work_tree(repo: &Repository, command: &str) -> Result<PathBuf> {
    let bare = || {
        anyhow!(
            "this repository has no work tree (bare): `mara {command}` needs one; run it in a clone with a work tree"
        )
    };
    if !repo.is_worktree() {
        return repo.workdir().map(Path::to_path_buf).ok_or_else(bare);
    }
    let common = repo.commondir();
    let main = Repository::open(common)
        .with_context(|| format!("opening the main repository at {}", common.display()))?;
    if let Some(dir) = main.workdir().filter(|_| !main.is_bare()) {
        // libgit2 takes the git directory's parent when `core.worktree` is not set.
        // That is right only if the folder's `.git` leads back here: a
        // `--separate-git-dir` records its work tree nowhere but in that work tree's
        // `.git` file.
        let explicit = main
            .config()
            .ok()
            .and_then(|c| c.open_level(git2::ConfigLevel::Local).ok())
            .and_then(|c| c.get_path("core.worktree").ok())
            .is_some();
        if explicit || leads_to(dir, common) {
            return Ok(dir.to_path_buf());
        }
    }
    // An instance's worktree of `mara run` knows its main work tree by where it is:
    // `<main>/.multi_agent_runs/<run>/worktrees/<role>_<n>`. That covers the shapes
    // whose git directory records no work tree (`--separate-git-dir`; a bare git
    // directory used with `GIT_WORK_TREE`).
    if let Some(dir) = repo.workdir().and_then(instance_main_dir) {
        return Ok(dir);
    }
    if main.is_bare() {
        return Err(bare());
    }
    bail!(
        "cannot find the main work tree of this repository from a linked worktree (its git directory {} records none); run `mara {command}` in the main work tree",
        common.display()
    )
}

/// `<main>` when `worktree` is `<main>/.multi_agent_runs/<run>/worktrees/<stem>`.
fn instance_main_dir(worktree: &Path) -> Option<PathBuf> {
    let names: Vec<&std::ffi::OsStr> = worktree
        .components()
        .rev()
        .take(4)
        .map(|c| c.as_os_str())
        .collect();
    let [_, worktrees, _, runs] = names.as_slice() else {
        return None;
    };
    if *worktrees != "worktrees" || *runs != RUNS_DIR {
        return None;
    }
    let main = worktree.ancestors().nth(4)?;
    main.join(RUNS_DIR).is_dir().then(|| main.to_path_buf())
}

/// Whether `<dir>/.git` is, or points at, the git directory `git_dir`.
fn leads_to(dir: &Path, git_dir: &Path) -> bool {
    let Ok(want) = git_dir.canonicalize() else {
        return false;
    };
    let dot_git = dir.join(".git");
    let target = if dot_git.is_dir() {
        dot_git
    } else {
        let Ok(text) = std::fs::read_to_string(&dot_git) else {
            return false;
        };
        let Some(p) = text.trim_end().strip_prefix("gitdir: ") else {
            return false;
        };
        dir.join(p)
    };
    target.canonicalize().is_ok_and(|t| t == want)
}

/// The run's folder in the main work tree: `<work tree>/.multi_agent_runs/<run>`.
pub fn run_dir(work_tree: &Path, run: &RunId) -> PathBuf {
    work_tree.join(RUNS_DIR).join(run.as_str())
}

/// Opens (creating when `create`) the run's folder `<work tree>/.multi_agent_runs/<run>`
/// and `sub` below it, refusing a symbolic link anywhere on the way.
pub fn open_run_dir(work_tree: &Path, run: &RunId, sub: &[&str]) -> Result<SafeDir> {
    let mut rel = vec![RUNS_DIR, run.as_str()];
    rel.extend_from_slice(sub);
    SafeDir::open(work_tree)?
        .descend(&rel, true)?
        .ok_or_else(|| {
            anyhow!(
                "creating {} left no folder",
                run_dir(work_tree, run).display()
            )
        })
}

/// Keeps `.multi_agent_runs/` out of `git status` without touching `.gitignore`.
pub fn exclude_run_dirs(repo: &Repository) -> Result<()> {
    let info = repo.commondir().join("info");
    std::fs::create_dir_all(&info)?;
    let path = info.join("exclude");
    let current = std::fs::read_to_string(&path).unwrap_or_default();
    let line = format!("/{RUNS_DIR}/");
    if !current.lines().any(|l| l.trim() == line) {
        let mut text = current;
        if !text.is_empty() && !text.ends_with('\n') {
            text.push('\n');
        }
        text.push_str(&format!("# mara: run folders (worktrees, logs)\n{line}\n"));
        std::fs::write(&path, text).with_context(|| format!("writing {}", path.display()))?;
    }
    Ok(())
}

/// An open folder, reached without following a symbolic link below its root.
pub struct SafeDir {
    fd: OwnedFd,
    path: PathBuf,
}

fn cstr(name: &str) -> Result<CString> {
    CString::new(name).map_err(|_| anyhow!("the name {name:?} contains a NUL byte"))
}

fn last_error() -> std::io::Error {
    std::io::Error::last_os_error()
}

impl SafeDir {
    /// Opens `root` as given (the user's own path: links in it are theirs).
    pub fn open(root: &Path) -> Result<SafeDir> {
        let c = CString::new(root.as_os_str().as_bytes())
            .map_err(|_| anyhow!("the path {} contains a NUL byte", root.display()))?;
        // SAFETY: a plain open(2) of a NUL-terminated path; the fd is owned below.
        let fd = unsafe {
            libc::open(
                c.as_ptr(),
                libc::O_RDONLY | libc::O_DIRECTORY | libc::O_CLOEXEC,
            )
        };
        if fd < 0 {
            return Err(last_error()).with_context(|| format!("opening {}", root.display()));
        }
        Ok(SafeDir {
            // SAFETY: `fd` is a fresh descriptor nobody else owns.
            fd: unsafe { OwnedFd::from_raw_fd(fd) },
            path: root.to_path_buf(),
        })
    }

    /// The folder's path (for messages and reports).
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Opens the folders `rel` below this one, one component at a time, creating the
    /// missing ones when `create` (else a missing one gives `None`). A symbolic link or
    /// anything but a folder on the way is an error naming it and the fix.
    pub fn descend(&self, rel: &[&str], create: bool) -> Result<Option<SafeDir>> {
        let mut fd = self.fd.as_raw_fd();
        let mut owned: Option<OwnedFd> = None;
        let mut path = self.path.clone();
        for name in rel {
            crate::safepath::check_component(name)
                .map_err(|why| anyhow!("the folder name {name:?} {why}"))?;
            path.push(name);
            let c = cstr(name)?;
            if create {
                // SAFETY: mkdirat(2) relative to an fd we hold open.
                let rc = unsafe { libc::mkdirat(fd, c.as_ptr(), 0o777) };
                if rc < 0 && last_error().kind() != std::io::ErrorKind::AlreadyExists {
                    return Err(last_error())
                        .with_context(|| format!("creating {}", path.display()));
                }
            }
            // SAFETY: openat(2) relative to an fd we hold open; the result is owned.
            let next = unsafe {
                libc::openat(
                    fd,
                    c.as_ptr(),
                    libc::O_RDONLY | libc::O_DIRECTORY | libc::O_NOFOLLOW | libc::O_CLOEXEC,
                )
            };
            if next < 0 {
                let err = last_error();
                let is_link =
                    std::fs::symlink_metadata(&path).is_ok_and(|m| m.file_type().is_symlink());
                match err.raw_os_error() {
                    Some(libc::ENOENT) if !create => return Ok(None),
                    Some(libc::ELOOP | libc::ENOTDIR) if is_link => bail!(
                        "{} is a symbolic link; mara writes nothing through one: remove it (`rm {}`) and try again",
                        path.display(),
                        path.display()
                    ),
                    Some(libc::ENOTDIR) => bail!(
                        "{} is not a folder; move it out of the way and try again",
                        path.display()
                    ),
                    _ => return Err(err).with_context(|| format!("opening {}", path.display())),
                }
            }
            // SAFETY: `next` is a fresh descriptor nobody else owns.
            let next = unsafe { OwnedFd::from_raw_fd(next) };
            fd = next.as_raw_fd();
            owned = Some(next);
        }
        Ok(Some(SafeDir {
            fd: match owned {
                Some(o) => o,
                None => self.fd.try_clone().context("duplicating a folder handle")?,
            },
            path,
        }))
    }

    /// Writes `contents` to the file `name` in this folder: to a temporary file first,
    /// then renamed over `name`. A symbolic link at `name` is replaced, never followed;
    /// a folder there is an error. Returns the file's path.
    pub fn write(&self, name: &str, contents: &[u8]) -> Result<PathBuf> {
        crate::safepath::check_component(name)
            .map_err(|why| anyhow!("the file name {name:?} {why}"))?;
        let dest = self.path.join(name);
        let tmp_name = temp_name();
        let tmp = cstr(&tmp_name)?;
        let mut file = self
            .create_named(&tmp)
            .with_context(|| format!("writing {}", self.path.join(&tmp_name).display()))?;
        let written = file.write_all(contents).and_then(|()| file.flush());
        drop(file);
        let c = cstr(name)?;
        // SAFETY: renameat(2) within one folder we hold open.
        let renamed = written.and_then(|()| {
            let rc = unsafe {
                libc::renameat(
                    self.fd.as_raw_fd(),
                    tmp.as_ptr(),
                    self.fd.as_raw_fd(),
                    c.as_ptr(),
                )
            };
            if rc < 0 {
                Err(last_error())
            } else {
                Ok(())
            }
        });
        if let Err(e) = renamed {
            // SAFETY: unlinkat(2) of the temporary file we created.
            unsafe {
                libc::unlinkat(self.fd.as_raw_fd(), tmp.as_ptr(), 0);
            }
            return Err(e).with_context(|| format!("writing {}", dest.display()));
        }
        Ok(dest)
    }

    /// Creates (or truncates) the file `name` in this folder for writing; a symbolic
    /// link at `name` is an error, not followed.
    pub fn create(&self, name: &str) -> Result<File> {
        crate::safepath::check_component(name)
            .map_err(|why| anyhow!("the file name {name:?} {why}"))?;
        let path = self.path.join(name);
        self.open_file(&cstr(name)?, libc::O_TRUNC)
            .map_err(|err| {
                if err.raw_os_error() == Some(libc::ELOOP) {
                    anyhow!(
                        "{} is a symbolic link; mara writes nothing through one: remove it (`rm {}`) and try again",
                        path.display(),
                        path.display()
                    )
                } else {
                    anyhow!(err).context(format!("creating {}", path.display()))
                }
            })
    }

    fn create_named(&self, name: &CString) -> std::io::Result<File> {
        self.open_file(name, libc::O_EXCL)
    }

    /// openat(2) for writing, creating, never through a link, with `extra` flags.
    fn open_file(&self, name: &CString, extra: libc::c_int) -> std::io::Result<File> {
        // SAFETY: openat(2) relative to an fd we hold open; the result is owned.
        let fd = unsafe {
            libc::openat(
                self.fd.as_raw_fd(),
                name.as_ptr(),
                libc::O_WRONLY | libc::O_CREAT | libc::O_NOFOLLOW | libc::O_CLOEXEC | extra,
                0o666 as libc::c_uint,
            )
        };
        if fd < 0 {
            return Err(last_error());
        }
        // SAFETY: `fd` is a fresh descriptor nobody else owns.
        Ok(File::from(unsafe { OwnedFd::from_raw_fd(fd) }))
    }
}

/// A name for a temporary file no other writer picks: pid, a counter and the time.
fn temp_name() -> String {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    format!(
        ".mara-{}-{}-{nanos}.tmp",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_inside_and_refuses_links_on_the_way() {
        let tmp = tempfile::tempdir().expect("a temporary directory");
        let outside = tmp.path().join("outside");
        std::fs::create_dir_all(&outside).expect("mkdir");
        let root = SafeDir::open(tmp.path()).expect("open root");
        let d = root
            .descend(&["a", "b"], true)
            .expect("descend")
            .expect("created");
        let p = d.write("f.txt", b"hi").expect("write");
        assert_eq!(std::fs::read(&p).expect("read"), b"hi");
        // A link at the destination is replaced, not followed.
        std::os::unix::fs::symlink(outside.join("victim"), d.path().join("g.txt")).expect("ln");
        d.write("g.txt", b"x").expect("write over a link");
        assert!(!outside.join("victim").exists());
        assert!(!std::fs::symlink_metadata(d.path().join("g.txt"))
            .expect("stat")
            .file_type()
            .is_symlink());
        // A link on the way is refused.
        std::os::unix::fs::symlink(&outside, tmp.path().join("a").join("l")).expect("ln");
        let e = root.descend(&["a", "l", "x"], true).err().expect("refused");
        assert!(e.to_string().contains("symbolic link"), "{e}");
        assert!(std::fs::read_dir(&outside).expect("ls").next().is_none());
        assert!(root.descend(&["a", "nope"], false).expect("ok").is_none());
        assert!(root.descend(&["a", ".."], true).is_err());
    }
}
