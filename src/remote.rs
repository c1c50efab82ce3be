//! Pushing and fetching the run's ref with the `git` command itself.
//!
//! mara shells out to `git` for remotes (as jj and other git tools do) so that the
//! user's own setup applies unchanged: ssh config and agent, credential helpers,
//! `url.*.insteadOf`, proxies. Only the run's ref is ever fetched; writers also
//! read (`git ls-remote`) and set its turn ref (see [`Turn`]).

use std::path::Path;

use anyhow::{anyhow, bail, Result};
use git2::{Oid, Repository};

use crate::ids::RunId;

use crate::gitcmd::git_at as git;

/// What the remote said to a push of an event commit.
#[derive(Debug)]
pub enum Push {
    /// The remote's ref now points at the commit.
    Accepted,
    /// Another writer moved the remote's ref first (non-fast-forward, or the
    /// remote's own compare-and-swap failed): fetch, re-check, retry.
    Lost(String),
    /// The turn ref did not hold what the push leased it on ([`Turn`]): for a
    /// [`Turn::Take`], another writer waits for its turn; for a [`Turn::Hand`],
    /// the writer's intent is gone. Nothing was written.
    Yield,
}

impl Push {
    /// Why the push was not accepted, in the remote's words where it had any.
    pub fn why(&self) -> String {
        match self {
            Push::Accepted => "accepted".to_owned(),
            Push::Lost(why) => why.clone(),
            Push::Yield => "another writer is waiting for its turn".to_owned(),
        }
    }
}

fn last_line(stderr: &[u8]) -> String {
    let s = String::from_utf8_lossy(stderr);
    s.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with("hint:"))
        .map(|l| {
            l.trim_start_matches("fatal: ")
                .trim_start_matches("error: ")
        })
        .collect::<Vec<_>>()
        .join("; ")
}

/// The remote ref that says whether a writer waits for its turn to write the run:
/// `refs/mara-turn/<run>` for `refs/mara/<run>` (outside `refs/mara/`, so `git
/// fetch 'refs/mara/*:...'` does not bring it along; it is only ever read with
/// `git ls-remote`).
pub fn turn_refname(refname: &str) -> String {
    format!(
        "refs/mara-turn/{}",
        refname.strip_prefix("refs/mara/").unwrap_or(refname)
    )
}

/// What the turn ref holds while nobody waits: this blob, the same in every clone
/// (written into the clone's objects by [`free_turn`] before a push names it).
const FREE: &[u8] = b"mara: no writer is waiting for its turn\n";

/// The id of the "nobody waits" value of the turn ref, written into `repo`'s
/// objects (a push can only name an object the clone has).
pub fn free_turn(repo: &Repository) -> Result<Oid> {
    Ok(repo.blob(FREE)?)
}

/// How a push of an event treats the run's turn ref.
///
/// Fairness between clones. A clone that just won a push has the current tip and
/// pushes its next event without fetching (one round trip), while a clone that
/// lost needs a fetch and a push (two): in a tight loop the last winner would win
/// every time (200 of 200 claims between four clones through `git daemon`). So a
/// writer that lost says that it waits, and a writer that has not lost lets it go
/// first. That has to reach the winner without costing it a round trip, and the
/// one thing every push learns for free is the remote's refs: the run's turn ref
/// ([`turn_refname`]) holds [`FREE`] while nobody waits, and a waiting writer's
/// intent (its last event commit that lost) while one does.
///
/// * A writer that has not lost pushes [`Turn::Take`]: atomically with the run's
///   ref and only while the turn ref holds [`FREE`] (`--force-with-lease`, the
///   turn ref pushed to the value it has, which git checks against the remote's
///   refs and then leaves alone): a lone writer pays one ref line and never
///   writes the turn ref. One that finds an intent is refused with nothing
///   written ([`Push::Yield`]) and lets the waiting writer go first.
/// * A writer that lost posts its intent at once ([`post_intent`], only over
///   [`FREE`] or its own earlier intent: the first waiting writer holds the turn,
///   and every loss replaces its intent with a newer one, which shows it is
///   alive). The holder pushes [`Turn::Hand`]: atomic, the turn ref back to
///   [`FREE`] only if it still holds the holder's intent; the other waiting
///   writers push [`Turn::Alone`], the run's ref alone, so an intent is only ever
///   taken back by the writer that left it (or, see below, from a writer that is
///   gone).
/// * A writer that ends without writing takes its intent back ([`hand_back`]). An
///   intent left by a killed writer is taken over by the next writer of the same
///   clone (its commit is in that clone's objects) and handed back by writers of
///   other clones once it stayed unchanged for a while (`append.rs`).
///
/// The turn ref is written only by waiting writers, so its updates do not race
/// every event's push. To a remote that does not support `--atomic` or refuses
/// the turn ref, the run's ref is pushed alone: correct, but without this
/// fairness. What the turn ref holds never decides what is written: a forged
/// value only costs other writers their patience.
#[derive(Clone, Copy, Debug)]
pub enum Turn {
    /// A writer that has not lost: atomic with the run's ref, only while the turn
    /// ref holds `free`.
    Take { free: Oid },
    /// The waiting writer that holds the turn: atomic, the turn ref back to `free`
    /// only while it holds `intent`.
    Hand { intent: Oid, free: Oid },
    /// A waiting writer that does not hold the turn: the run's ref alone.
    Alone,
    /// `init` and `sync`, which start or bring the run's ref and leave nobody's
    /// intent behind: atomic, the turn ref forced to `free`.
    Set { free: Oid },
}

/// Remotes that do not take the turn ref in this process (no `--atomic`, or a
/// server that refuses the ref): pushed to as before fairness, the run's ref alone.
static PLAIN: std::sync::Mutex<Vec<String>> = std::sync::Mutex::new(Vec::new());

fn is_plain(remote: &str) -> bool {
    PLAIN
        .lock()
        .map(|l| l.iter().any(|r| r == remote))
        .unwrap_or(false)
}

fn make_plain(remote: &str) {
    if let Ok(mut l) = PLAIN.lock() {
        l.push(remote.to_owned());
    }
}

/// Pushes `oid` to `refname` on `remote`, without force: the remote accepts only a
/// fast-forward, which is what makes the push a compare-and-swap. The run's turn
/// ref goes along as `turn` says.
pub fn push(git_dir: &Path, remote: &str, oid: Oid, refname: &str, turn: Turn) -> Result<Push> {
    push_tries(git_dir, remote, oid, refname, turn, 3)
}

/// [`push`], trying again up to `tries` times when git could not read an object
/// it had just listed: a pack merge of this clone (see `packs`) moved it into a
/// new pack between git's look and its read (seen in the remote kill test as
/// "Could not read <id>; could not parse commit <id>"). Nothing was sent then.
fn push_tries(
    git_dir: &Path,
    remote: &str,
    oid: Oid,
    refname: &str,
    turn: Turn,
    tries: u32,
) -> Result<Push> {
    let spec = format!("{oid}:{refname}");
    let turn_ref = turn_refname(refname);
    let plain = is_plain(remote);
    // --no-verify: the run's ref is mara's bookkeeping, not the user's code, so the
    // user's pre-push checks do not apply (and a hook calling mara cannot recurse).
    let mut args = vec![
        "push".to_owned(),
        "--porcelain".to_owned(),
        "--no-verify".to_owned(),
    ];
    // (lease on the turn ref, its new value)
    let turn_update = match turn {
        Turn::Take { free } => Some((Some(free), format!("{free}:{turn_ref}"))),
        Turn::Hand { intent, free } => Some((Some(intent), format!("{free}:{turn_ref}"))),
        Turn::Set { free } => Some((None, format!("+{free}:{turn_ref}"))),
        Turn::Alone => None,
    };
    let turn_update = turn_update.filter(|_| !plain);
    if let Some((lease, _)) = &turn_update {
        args.push("--atomic".to_owned());
        if let Some(lease) = lease {
            args.push(format!("--force-with-lease={turn_ref}:{lease}"));
        }
    }
    args.push(remote.to_owned());
    args.push(spec);
    if let Some((_, update)) = turn_update {
        args.push(update);
    }
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let out = git(git_dir, &args)?;
    let stderr = String::from_utf8_lossy(&out.stderr);
    if !plain && stderr.contains("does not support --atomic") {
        make_plain(remote);
        return push_tries(git_dir, remote, oid, refname, turn, tries);
    }
    let stdout = String::from_utf8_lossy(&out.stdout);
    let Some((flag, summary, line)) = ref_line(&stdout, refname) else {
        let vanished = [
            "Could not read ",
            "could not parse commit",
            "unable to read ",
        ]
        .iter()
        .any(|m| stderr.contains(m));
        if vanished && tries > 1 {
            std::thread::sleep(std::time::Duration::from_millis(20));
            return push_tries(git_dir, remote, oid, refname, turn, tries - 1);
        }
        bail!(
            "cannot push to remote {remote}: {}",
            if out.stderr.is_empty() {
                "git printed no result".to_owned()
            } else {
                last_line(&out.stderr)
            }
        )
    };
    // Why the turn ref was refused, if it was.
    let turn_refused = ref_line(&stdout, &turn_ref)
        .filter(|(f, _, _)| *f == "!")
        .map(|(_, s, _)| s);
    // The server's own compare-and-swap failed: another push got in between
    // (with --atomic, every ref of the push then says "atomic transaction failed").
    // Also a transient failure of the server's own: receive-pack could not move
    // the pushed objects out of quarantine (seen from git 2.47's receive-pack
    // under concurrent pushes); nothing was written, so try again.
    let is_race = |s: &str| {
        s.contains("lock")
            || s.contains("failed to update ref")
            || s.contains("atomic")
            || s.contains("unable to migrate objects")
    };
    match (flag, turn_refused) {
        // Accepted, whatever happened to the turn ref.
        (" " | "*" | "=" | "+", _) => Ok(Push::Accepted),
        // The run's ref was fine, the turn ref's lease was not: someone waits (or,
        // for a holder, its intent is no longer there).
        ("!", Some(t)) if summary.contains("atomic") && t.contains("stale info") => Ok(Push::Yield),
        // The server refused the turn ref itself (a hook, a namespace rule): this
        // remote gets the run's ref alone from now on.
        ("!", Some(t)) if summary.contains("atomic") && !is_race(t) => {
            make_plain(remote);
            push_tries(git_dir, remote, oid, refname, turn, tries)
        }
        ("!", _) if summary.starts_with("[rejected]") || is_race(summary) => {
            Ok(Push::Lost(summary.to_owned()))
        }
        ("!", _) => {
            // What the server's hooks said comes on stderr as `remote: ...`.
            let said: Vec<String> = stderr
                .lines()
                .filter_map(|l| l.strip_prefix("remote:"))
                .map(|l| l.trim().to_owned())
                .filter(|l| !l.is_empty())
                .collect();
            bail!(
                "remote {remote} refused the push of {refname}: {summary}{}; check your permissions on the remote",
                if said.is_empty() {
                    String::new()
                } else {
                    format!(" (the remote said: {})", said.join(" / "))
                }
            )
        }
        _ => bail!("`git push` reported {line:?} for {refname}"),
    }
}

/// The (flag, summary, line) of `name`'s line in `git push --porcelain` output:
/// `<flag>\t<src>:<dst>\t<summary>`.
fn ref_line<'a>(stdout: &'a str, name: &str) -> Option<(&'a str, &'a str, &'a str)> {
    stdout.lines().find_map(|line| {
        let mut parts = line.split('\t');
        let (Some(flag), Some(refs)) = (parts.next(), parts.next()) else {
            return None;
        };
        refs.ends_with(&format!(":{name}"))
            .then(|| (flag, parts.next().unwrap_or_default(), line))
    })
}

/// Pushes one ref (`src:dst`) to `remote`, best effort: only if the remote's
/// `dst` holds `lease` when one is given (`Some(None)`: only if it does not
/// exist), forced otherwise. Whether the remote took it. For the run's turn ref
/// and an instance's heartbeat, whose loss costs fairness or one lease check,
/// never an event.
pub fn push_one(
    git_dir: &Path,
    remote: &str,
    src: Oid,
    dst: &str,
    lease: Option<Option<Oid>>,
) -> bool {
    let lease = match lease {
        Some(Some(old)) => format!("--force-with-lease={dst}:{old}"),
        Some(None) => format!("--force-with-lease={dst}:"),
        None => "--force".to_owned(),
    };
    let spec = format!("{src}:{dst}");
    git(
        git_dir,
        &["push", "--porcelain", "--no-verify", &lease, remote, &spec],
    )
    .ok()
    .filter(|o| o.status.success())
    .is_some_and(|o| {
        ref_line(&String::from_utf8_lossy(&o.stdout), dst)
            .is_some_and(|(f, _, _)| matches!(f, " " | "*" | "+" | "="))
    })
}

/// Posts `intent` (an event commit of this writer's that lost) on the run's turn
/// ref, only over `expect` ([`FREE`], or this writer's own earlier intent): the
/// first waiting writer holds the turn. Whether it holds it now.
pub fn post_intent(git_dir: &Path, remote: &str, refname: &str, intent: Oid, expect: Oid) -> bool {
    !is_plain(remote)
        && push_one(
            git_dir,
            remote,
            intent,
            &turn_refname(refname),
            Some(Some(expect)),
        )
}

/// Sets the run's turn ref back to `free`, only if it still holds `value` (this
/// writer's intent, or one whose writer is gone); an intent posted since then
/// stays. Best effort.
pub fn hand_back(git_dir: &Path, remote: &str, refname: &str, value: Option<Oid>, free: Oid) {
    if !is_plain(remote) {
        push_one(git_dir, remote, free, &turn_refname(refname), Some(value));
    }
}

/// The remote's run ref and turn ref (`git ls-remote`: one round trip, no
/// objects): what a writer that lets a waiting one go first polls.
pub fn read_turn(
    git_dir: &Path,
    remote: &str,
    refname: &str,
) -> Result<(Option<Oid>, Option<Oid>)> {
    let turn = turn_refname(refname);
    let out = git(git_dir, &["ls-remote", remote, refname, &turn])?;
    if !out.status.success() {
        bail!(
            "cannot list the refs of remote {remote}: {}",
            last_line(&out.stderr)
        );
    }
    let (mut run, mut at) = (None, None);
    for line in String::from_utf8_lossy(&out.stdout).lines() {
        let mut parts = line.split('\t');
        let (Some(id), Some(name)) = (parts.next(), parts.next()) else {
            continue;
        };
        let id = Oid::from_str(id).ok();
        if name == refname {
            run = id;
        } else if name == turn {
            at = id;
        }
    }
    Ok((run, at))
}

/// How a fetch of the run's ref went wrong.
#[derive(Debug)]
pub enum FetchError {
    /// The remote has no such ref.
    NoRun,
    /// The remote's ref is not a fast-forward of what this clone saw.
    Rewritten,
    /// A local process holds the ref's lock; try again.
    Busy,
    /// Anything else (unreachable, not a repository, ...).
    Other(String),
}

/// Fetches `refname` from `remote` into the same local ref, fast-forward only, so a
/// remote whose history was rewritten is noticed instead of followed.
pub fn fetch(git_dir: &Path, remote: &str, refname: &str) -> Result<Result<(), FetchError>> {
    fetch_into(git_dir, remote, refname, refname, false)
}

/// Fetches `refname` from `remote` into the local ref `into`; `force` takes
/// whatever the remote has (for a scratch ref that is compared afterwards).
pub fn fetch_into(
    git_dir: &Path,
    remote: &str,
    refname: &str,
    into: &str,
    force: bool,
) -> Result<Result<(), FetchError>> {
    let spec = format!("{}{refname}:{into}", if force { "+" } else { "" });
    // Not --quiet: a rejected (non-fast-forward) update is only reported in the
    // ref-update lines that --quiet suppresses.
    let args = [
        "fetch",
        "--no-tags",
        "--no-write-fetch-head",
        // mara merges its own packs; a gc started by this fetch could delete the
        // object directory another writer's fetch is unpacking into.
        "--no-auto-maintenance",
        "--no-recurse-submodules",
        remote,
        &spec,
    ];
    let out = git(git_dir, &args)?;
    if out.status.success() {
        return Ok(Ok(()));
    }
    let err = String::from_utf8_lossy(&out.stderr);
    Ok(Err(if err.contains("couldn't find remote ref") {
        FetchError::NoRun
    } else if err.contains("[rejected]") || err.contains("non-fast-forward") {
        FetchError::Rewritten
    } else if err.contains(".lock") || err.contains("cannot lock ref") {
        FetchError::Busy
    } else {
        FetchError::Other(last_line(&out.stderr))
    }))
}

/// Turns a fetch failure into the error a user reads.
pub fn explain(e: FetchError, remote: &str, refname: &str) -> anyhow::Error {
    match e {
        FetchError::NoRun => anyhow!(
            "remote {remote} has no {refname}; create the run there with `mara init --run ID --remote {remote}`"
        ),
        FetchError::Rewritten => anyhow!(
            "remote {remote} rewrote {refname}: its history is not a fast-forward of what this clone saw; nothing was changed here, inspect it with `git fetch {remote} {refname}:refs/mara-rewritten/{}` and `git log`",
            refname.trim_start_matches("refs/mara/")
        ),
        FetchError::Busy => anyhow!("{refname} stayed locked by another process; try again"),
        FetchError::Other(msg) => anyhow!("cannot fetch {refname} from remote {remote}: {msg}"),
    }
}

/// The git config key where a clone records the remote it shares `run` through.
fn choice_key(run: &RunId) -> String {
    format!("mara.{run}.remote")
}

/// Whether `name` is a remote of this clone's own git config (`remote.<name>.url`).
/// A URL or a path is not: mara talks only to remotes the user configured.
pub fn is_configured(repo: &Repository, name: &str) -> bool {
    !name.is_empty()
        && !name.starts_with('-')
        && !name.chars().any(char::is_control)
        && repo.find_remote(name).is_ok()
}

/// Checks a remote the user names on the command line (`init --remote`,
/// `sync --remote`): it must be a configured remote of this clone.
pub fn check_named(repo: &Repository, name: &str) -> Result<()> {
    if is_configured(repo, name) {
        return Ok(());
    }
    bail!(
        "remote {} is not a remote of this clone; mara pushes and fetches only through remotes of your git config: add it with `git remote add NAME URL` (see `git remote -v`) and pass --remote NAME",
        crate::text::quote(name, 80)
    )
}

/// The remote this clone shares `run` through, when the run is shared (its board
/// names `board`): the clone's own choice (git config `mara.<run>.remote`, set by
/// `init --remote` and `sync --remote`), else the board's name if this clone has
/// a remote of that name. Never a URL read from the board: a board that names a
/// remote this clone lacks is an error saying what to add.
pub fn choose(repo: &Repository, run: &RunId, board: Option<&str>) -> Result<Option<String>> {
    let chosen = repo
        .config()
        .ok()
        .and_then(|c| c.get_string(&choice_key(run)).ok());
    if let Some(name) = chosen {
        if !is_configured(repo, &name) {
            bail!(
                "git config {} names remote {}, which this clone does not have; see `git remote -v`, then `mara sync --run {run} --remote NAME`",
                choice_key(run),
                crate::text::quote(&name, 80)
            );
        }
        return Ok(Some(name));
    }
    let Some(name) = board else {
        return Ok(None);
    };
    if is_configured(repo, name) {
        return Ok(Some(name.to_owned()));
    }
    bail!(
        "run {run} is shared through remote {}, which is not a remote of this clone (mara never pushes to a URL or path read from the board); add the shared remote with `git remote add NAME URL` and choose it with `mara sync --run {run} --remote NAME`",
        crate::text::quote(name, 80)
    )
}

/// Records `name` as the remote this clone shares `run` through. The run is
/// already written when this is called, so a failure only warns.
pub fn record_choice(repo: &Repository, run: &RunId, name: &str) {
    let key = choice_key(run);
    if let Err(why) = crate::context::set_git_config(repo, &key, name) {
        crate::output::warn(&format!(
            "could not record remote {name} for run {run} ({why}); set it with `git config {key} {name}`"
        ));
    }
}
