//! mara inside git's commit flow: installing the hook scripts of `hooks/`, and what
//! each hook does (`mara hook <name>`).
//!
//! The hooks are clients of the ledger like any command. Outside a mara run (no
//! instance identity, no current run, or a run this clone does not have) they do
//! nothing and say nothing, so a repository with the hooks installed behaves like
//! plain git for everyone else.

use std::path::{Path, PathBuf};

use anyhow::{anyhow, bail, Context, Result};
use git2::Repository;

use crate::board::{Board, EventKind, Task, TaskStatus};
use crate::glob::Globs;
use crate::ids::{InstanceId, TaskId};
use crate::output;

/// The hooks mara ships, with the scripts of `hooks/`.
pub const HOOKS: &[(&str, &str)] = &[
    ("commit-msg", include_str!("../hooks/commit-msg")),
    ("pre-commit", include_str!("../hooks/pre-commit")),
    ("post-commit", include_str!("../hooks/post-commit")),
];

/// The hook installed only on request (`mara hooks install --pre-push`): it
/// refuses to push fenced commits.
pub const PRE_PUSH: (&str, &str) = ("pre-push", include_str!("../hooks/pre-push"));

/// The hooks `install` writes: [`HOOKS`], and [`PRE_PUSH`] when asked.
fn chosen(pre_push: bool) -> Vec<(&'static str, &'static str)> {
    let mut v = HOOKS.to_vec();
    if pre_push {
        v.push(PRE_PUSH);
    }
    v
}

const BEGIN: &str = "# >>> mara >>>";
const END: &str = "# <<< mara <<<";

/// The lines between the markers of a shipped hook script, markers included.
fn block(script: &str) -> String {
    let start = script
        .find(BEGIN)
        .expect("hook scripts carry the begin marker");
    let end = script.find(END).expect("hook scripts carry the end marker") + END.len();
    format!("{}\n", &script[start..end])
}

/// Where git looks for hooks: `core.hooksPath` (relative to the worktree's top, as
/// git reads it) or the common hooks folder shared by every worktree.
pub fn hooks_dir(repo: &Repository) -> Result<PathBuf> {
    let cfg = repo.config()?;
    match cfg.get_path("core.hooksPath") {
        Ok(p) if p.is_absolute() => Ok(p),
        Ok(p) => Ok(repo.workdir().unwrap_or(repo.commondir()).join(p)),
        Err(_) => Ok(repo.commondir().join("hooks")),
    }
}

/// What `install` or `uninstall` did to one hook file.
pub struct HookChange {
    pub name: String,
    pub path: PathBuf,
    pub action: &'static str,
}

/// Whether a hook's `#!` line names a POSIX shell (by the interpreter's file name,
/// or the program `env` is asked to run).
fn is_shell_script(text: &str) -> bool {
    let Some(line) = text.lines().next().and_then(|l| l.strip_prefix("#!")) else {
        return false;
    };
    let mut words = line.split_whitespace();
    let base = |w: &str| w.rsplit('/').next().unwrap_or(w).to_owned();
    let mut interp = words.next().map(base).unwrap_or_default();
    if interp == "env" {
        interp = words
            .find(|w| !w.starts_with('-'))
            .map(base)
            .unwrap_or_default();
    }
    matches!(interp.as_str(), "sh" | "bash" | "dash" | "zsh" | "ksh")
}

/// Installs mara's hooks. A hook the user already has keeps working: mara's lines go
/// between markers right after its `#!` line. A hook that is not a shell script is
/// left alone, and the error says which line to add to it. `pre_push` adds the
/// pre-push hook.
pub fn install(repo: &Repository, pre_push: bool) -> Result<Vec<HookChange>> {
    let hooks = chosen(pre_push);
    let dir = hooks_dir(repo)?;
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    // Check every hook first, so a refusal changes nothing.
    for (name, _) in &hooks {
        let path = dir.join(name);
        if let Ok(text) = std::fs::read_to_string(&path) {
            if !text.contains(BEGIN) && !is_shell_script(&text) {
                bail!(
                    "{} is not a shell script, so mara cannot add itself to it; call `mara hook {name} \"$@\"` from it yourself",
                    path.display()
                );
            }
        } else if path.exists() {
            bail!(
                "{} is not a readable text file; call `mara hook {name} \"$@\"` from it yourself",
                path.display()
            );
        }
    }
    let mut changes = vec![];
    for (name, script) in hooks {
        let path = dir.join(name);
        let action = match std::fs::read_to_string(&path) {
            Ok(text) if text.contains(BEGIN) => "already installed",
            Ok(text) => {
                let (first, rest) = text.split_once('\n').unwrap_or((&text, ""));
                let new = format!("{first}\n{}{rest}", block(script));
                std::fs::write(&path, new)
                    .with_context(|| format!("writing {}", path.display()))?;
                "added to your hook"
            }
            Err(_) => {
                std::fs::write(&path, script)
                    .with_context(|| format!("writing {}", path.display()))?;
                "installed"
            }
        };
        make_executable(&path)?;
        changes.push(HookChange {
            name: name.to_string(),
            path,
            action,
        });
    }
    Ok(changes)
}

fn make_executable(path: &Path) -> Result<()> {
    use std::os::unix::fs::PermissionsExt;
    let mut perm = std::fs::metadata(path)?.permissions();
    perm.set_mode(perm.mode() | 0o755);
    std::fs::set_permissions(path, perm)
        .with_context(|| format!("making {} executable", path.display()))
}

/// Removes mara's lines from the hooks; a hook that held nothing else is deleted.
pub fn uninstall(repo: &Repository) -> Result<Vec<HookChange>> {
    let dir = hooks_dir(repo)?;
    let mut changes = vec![];
    for (name, script) in chosen(true) {
        let path = dir.join(name);
        let Ok(text) = std::fs::read_to_string(&path) else {
            continue;
        };
        let (Some(start), Some(end)) = (text.find(BEGIN), text.find(END)) else {
            continue;
        };
        let end = end + END.len() + usize::from(text[end + END.len()..].starts_with('\n'));
        let rest = format!("{}{}", &text[..start], &text[end..]);
        // Only a file mara wrote itself, unchanged, is deleted; anything else keeps
        // all of its own lines.
        let ours = text == *script;
        let action = if ours {
            std::fs::remove_file(&path).with_context(|| format!("removing {}", path.display()))?;
            "removed"
        } else {
            std::fs::write(&path, rest).with_context(|| format!("writing {}", path.display()))?;
            "removed mara's lines from your hook"
        };
        changes.push(HookChange {
            name: name.to_string(),
            path,
            action,
        });
    }
    Ok(changes)
}

/// A staged file that another instance's task reserves.
pub struct Reserved {
    pub file: String,
    pub task: TaskId,
    pub holder: InstanceId,
    pub glob: String,
}

/// The first staged file (index against HEAD) that matches a `paths` glob of a task
/// claimed by someone other than `me`.
pub fn reserved_staged(
    repo: &Repository,
    board: &Board,
    me: &InstanceId,
) -> Result<Option<Reserved>> {
    let others: Vec<_> = board
        .ordered_tasks()
        .into_iter()
        .filter(|t| {
            t.status == TaskStatus::Claimed && t.claimed_by.as_ref().is_some_and(|h| h != me)
        })
        .filter(|t| !t.paths.is_empty())
        .collect();
    if others.is_empty() {
        return Ok(None);
    }
    // Every glob of those tasks compiled once, into one set: each staged file is
    // then matched in time linear in its path, whatever the globs.
    let owners: Vec<(&Task, &str)> = others
        .iter()
        .flat_map(|t| t.paths.iter().map(move |g| (*t, g.as_str())))
        .collect();
    let (globs, invalid) = Globs::new(owners.iter().map(|(_, g)| *g));
    for (i, why) in invalid {
        // Written past the rules (a hostile instance, git plumbing): this glob
        // reserves nothing, and the commit goes on.
        let (t, g) = owners[i];
        output::warn(&format!(
            "{}'s path glob {g:?} is invalid ({why}); it reserves nothing",
            t.id
        ));
    }
    // The index the running commit is building: GIT_INDEX_FILE counts.
    let index = repo.index()?;
    let head = repo.head().ok().and_then(|h| h.peel_to_tree().ok());
    let diff = repo.diff_tree_to_index(head.as_ref(), Some(&index), None)?;
    for delta in diff.deltas() {
        for file in [delta.new_file().path(), delta.old_file().path()]
            .into_iter()
            .flatten()
        {
            if let Some(i) = globs.first_match(file) {
                let (t, glob) = owners[i];
                return Ok(Some(Reserved {
                    file: file.to_string_lossy().into_owned(),
                    task: t.id.clone(),
                    holder: t.claimed_by.clone().expect("filtered on claimed_by"),
                    glob: glob.to_owned(),
                }));
            }
        }
    }
    Ok(None)
}

/// Adds `Mara-Instance`, `Mara-Task` and `Mara-Claim` trailers (`claims`: the
/// tokens under which `me` holds `tasks`) to a commit message file with
/// `git interpret-trailers`, so they land exactly where git's trailer parser looks
/// for them, and never twice.
pub fn add_trailers(
    repo: &Repository,
    msg_file: &Path,
    me: &InstanceId,
    tasks: &[&TaskId],
    claims: &[git2::Oid],
) -> Result<()> {
    let mut args: Vec<String> = vec![
        "interpret-trailers".into(),
        "--in-place".into(),
        "--if-exists".into(),
        "addIfDifferent".into(),
    ];
    for t in tasks {
        args.push("--trailer".into());
        args.push(format!("Mara-Task: {t}"));
    }
    for c in claims {
        args.push("--trailer".into());
        args.push(format!("{}: {c}", crate::trailers::CLAIM));
    }
    args.push("--trailer".into());
    args.push(format!("Mara-Instance: {me}"));
    args.push(msg_file.to_string_lossy().into_owned());
    let argv: Vec<&str> = args.iter().map(String::as_str).collect();
    let dir = repo.workdir().unwrap_or(repo.path());
    let out = crate::gitcmd::git(dir, &argv)?;
    if !out.status.success() {
        return Err(anyhow!(
            "`git interpret-trailers` failed: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        ));
    }
    Ok(())
}

/// The pre-push hook: refuses a push (`input`: the lines git hands the hook,
/// `<local ref> <local sha> <remote ref> <remote sha>`) that carries a fenced
/// commit, naming each with its task, instance and why.
pub fn pre_push(ledger: &crate::ledger::Ledger, remote: Option<&str>, input: &str) -> Result<()> {
    use crate::integrate::fence::{Claims, Judgement};
    let repo = ledger.repo();
    let claims = Claims::from_events(ledger.run().as_str(), &ledger.events()?);
    let mut bad = vec![];
    for line in input.lines() {
        let f: Vec<&str> = line.split_whitespace().collect();
        let [local_ref, local, _, remote_sha] = f[..] else {
            continue;
        };
        let Ok(local) = git2::Oid::from_str(local) else {
            continue;
        };
        if local.is_zero() {
            continue; // a delete pushes no commits
        }
        let mut walk = repo.revwalk()?;
        walk.push(local)?;
        match git2::Oid::from_str(remote_sha) {
            Ok(o) if !o.is_zero() && repo.find_commit(o).is_ok() => walk.hide(o)?,
            // A new branch: what the remote has already is not this push's.
            _ => {
                if let Some(r) = remote {
                    let _ = walk.hide_glob(&format!("refs/remotes/{r}/*"));
                }
            }
        }
        for oid in walk {
            let c = repo.find_commit(oid?)?;
            if c.parent_count() > 1 {
                continue;
            }
            if let Judgement::Fenced(hit) = claims.judge(c.message_raw().unwrap_or_default()) {
                bad.push(format!(
                    "{} ({} by {}): {}",
                    &c.id().to_string()[..10],
                    crate::board::one_line(&hit.task, 40),
                    crate::board::one_line(&hit.instance, 40),
                    crate::board::one_line(&hit.reason, 200)
                ));
            }
        }
        if !bad.is_empty() {
            bail!(
                "{local_ref} carries {} fenced commit(s), made under a claim that was lost: {}; drop them (git rebase -i) or push with --no-verify",
                bad.len(),
                bad.join("; ")
            );
        }
    }
    Ok(())
}

/// The event the post-commit hook records.
pub fn progress_event(commit: git2::Oid, tasks: &[&TaskId]) -> EventKind {
    EventKind::Progress {
        commit: commit.to_string(),
        task: tasks.first().map(|t| (*t).clone()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shell_hooks_are_told_by_their_interpreter() {
        assert!(is_shell_script("#!/bin/sh\n"));
        assert!(is_shell_script("#!/usr/bin/env bash\n"));
        assert!(is_shell_script("#! /bin/dash -e\n"));
        assert!(!is_shell_script("#!/home/shreya/venv/bin/python3\n"));
        assert!(!is_shell_script("#!/usr/bin/env python3\n"));
        assert!(!is_shell_script("#!/opt/sh/bin/node\n"));
        assert!(!is_shell_script("echo no shebang\n"));
    }

    #[test]
    fn shipped_scripts_carry_one_block() {
        for (name, script) in chosen(true) {
            let b = block(script);
            assert!(
                b.starts_with(BEGIN) && b.trim_end().ends_with(END),
                "{name}"
            );
            assert!(b.contains(&format!("mara hook {name} \"$@\"")), "{name}");
            assert!(is_shell_script(script), "{name}");
        }
    }
}
