//! Running the `git` command itself: for work libgit2 does not do (worktrees,
//! pushes and fetches through the user's own transport and credential setup).

use std::ffi::OsStr;
use std::path::Path;
use std::process::{Command, Output, Stdio};

use anyhow::{bail, Context, Result};

/// A `git` invocation in `dir`: stdin closed, messages in English so they can be
/// parsed, and the exact command line in any error.
pub fn git(dir: &Path, args: &[&str]) -> Result<Output> {
    git_env(dir, args, &[])
}

/// Like [`git`], with `envs` set for git (`GIT_DIR`, `GIT_WORK_TREE`, ...).
pub fn git_env(dir: &Path, args: &[&str], envs: &[(&str, &OsStr)]) -> Result<Output> {
    let line = format!("git {}", args.join(" "));
    let out = Command::new("git")
        .args(args)
        .current_dir(dir)
        .envs(envs.iter().copied())
        .env("LC_ALL", "C")
        .env("LC_MESSAGES", "C")
        .stdin(Stdio::null())
        .output()
        .with_context(|| format!("running `{line}` in {}", dir.display()))?;
    Ok(out)
}

/// Like [`git`], but a non-zero exit is an error carrying git's stderr.
pub fn git_ok(dir: &Path, args: &[&str]) -> Result<String> {
    git_ok_env(dir, args, &[])
}

/// Like [`git_ok`], with `envs` set for git.
pub fn git_ok_env(dir: &Path, args: &[&str], envs: &[(&str, &OsStr)]) -> Result<String> {
    let out = git_env(dir, args, envs)?;
    if !out.status.success() {
        bail!(
            "`git {}` failed in {}: {}",
            args.join(" "),
            dir.display(),
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Runs `git` on the repository at `git_dir` (its `.git` directory), whatever
/// `GIT_DIR`, `GIT_WORK_TREE` or `GIT_INDEX_FILE` a surrounding hook has set.
pub fn git_at(git_dir: &Path, args: &[&str]) -> Result<Output> {
    git_at_with_input(git_dir, args, &[])
}

/// Like [`git_at`], with `input` on git's stdin.
pub fn git_at_with_input(git_dir: &Path, args: &[&str], input: &[u8]) -> Result<Output> {
    let line = format!("git {}", args.join(" "));
    let run = || -> std::io::Result<Output> {
        let mut child = Command::new("git")
            .args(args)
            .current_dir(git_dir)
            .env("GIT_DIR", git_dir)
            .env_remove("GIT_WORK_TREE")
            .env_remove("GIT_INDEX_FILE")
            .env("LC_ALL", "C")
            .env("LC_MESSAGES", "C")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()?;
        let mut stdin = child.stdin.take().expect("stdin is piped");
        // git reads all of its input before it writes much: no deadlock here.
        let wrote = std::io::Write::write_all(&mut stdin, input);
        drop(stdin);
        let out = child.wait_with_output()?;
        wrote.or_else(|e| {
            if e.kind() == std::io::ErrorKind::BrokenPipe {
                Ok(())
            } else {
                Err(e)
            }
        })?;
        Ok(out)
    };
    run().with_context(|| format!("running `{line}` in {}", git_dir.display()))
}
