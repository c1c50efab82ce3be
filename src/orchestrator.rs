//! The orchestrator: starts N instances of every role, each in its own worktree on
//! its own branch, records their lifecycle on the board, and ends the run cleanly.
//!
//! It is a client of the ledger like any command: instance statuses and the release
//! of a dead instance's claims are ordinary events.
//!
//! Layout of a run in the repository's main worktree (listed in `.git/info/exclude`):
//! `.multi_agent_runs/<run>/worktrees/<role>_<n>` (branch `mara/<run>/<role>_<n>`),
//! `.../logs/<role>_<n>.log` (the instance's stdout and stderr) and
//! `.../prompts/<role>_<n>.md`.

use std::collections::BTreeMap;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};

use crate::board::{stall_event, EventKind, InstanceStatus, OnStall, Place};
use crate::config::{Role, SeedConfig};
use crate::gitcmd::git_ok_env;
use crate::ids::{InstanceId, RunId};
use crate::ledger::{Draft, Ledger};
use crate::output;
use crate::paths::{exclude_run_dirs, open_run_dir, run_dir, SafeDir, RUNS_DIR};

/// Set by SIGINT/SIGTERM; the run loop stops every instance when it sees it.
static INTERRUPTED: AtomicBool = AtomicBool::new(false);

extern "C" fn on_signal(_: libc::c_int) {
    // Only an atomic store: async-signal-safe.
    INTERRUPTED.store(true, Ordering::SeqCst);
}

fn install_signal_handlers() {
    INTERRUPTED.store(false, Ordering::SeqCst);
    let handler = on_signal as extern "C" fn(libc::c_int) as libc::sighandler_t;
    // SAFETY: the handler only stores to an atomic.
    unsafe {
        libc::signal(libc::SIGINT, handler);
        libc::signal(libc::SIGTERM, handler);
    }
}

/// How long an interrupted or timed-out instance gets between SIGTERM and SIGKILL.
const GRACE: Duration = Duration::from_secs(3);

/// How often the run loop asks the stall guard.
const STALL_CHECK: Duration = Duration::from_millis(500);

/// What the orchestrator needs to start a run.
pub struct RunSpec {
    pub run: RunId,
    pub seed: SeedConfig,
    pub roles: Vec<Role>,
    /// The folder of the config file: `{config_dir}` in role commands.
    pub config_dir: PathBuf,
    /// Who writes the orchestrator's events.
    pub sender: String,
    /// Where the `mara` binary lives, put first on the instances' PATH.
    pub mara_dir: PathBuf,
    /// Redraw a progress line on the terminal.
    pub progress: bool,
    /// The repository's main work tree: the run's folder goes there.
    pub work_tree: PathBuf,
}

/// How one instance ended.
#[derive(Clone, Debug)]
pub struct Ended {
    pub id: InstanceId,
    pub status: InstanceStatus,
    pub reason: Option<String>,
    pub place: Place,
    pub released: Vec<String>,
}

/// The outcome of a run.
pub struct Summary {
    pub instances: Vec<Ended>,
    pub interrupted: bool,
    pub elapsed: Duration,
    /// What the stall guard said during the run, one line per stall.
    pub stalls: Vec<String>,
    /// Set when the run stopped on a stall (`on_stall: stop`): why.
    pub stopped: Option<String>,
    /// What the integrator step did with resolutions left to merge, if any.
    pub resolutions: Option<String>,
}

impl Summary {
    /// Instances that failed.
    pub fn failed(&self) -> Vec<&Ended> {
        self.instances
            .iter()
            .filter(|e| e.status == InstanceStatus::Failed)
            .collect()
    }
}

enum State {
    Waiting,
    Running {
        child: Child,
        started: Instant,
        /// Set once SIGTERM was sent: when to send SIGKILL, and why it stops.
        stopping: Option<(Instant, String)>,
    },
    Ended,
}

struct Instance {
    id: InstanceId,
    role: usize,
    place: Place,
    worktree: PathBuf,
    prompt_file: PathBuf,
    state: State,
}

fn expand(template: &str, vars: &BTreeMap<&str, String>) -> String {
    let mut out = template.to_owned();
    for (k, v) in vars {
        out = out.replace(&format!("{{{k}}}"), v);
    }
    out
}

fn status_event(
    ledger: &Ledger,
    sender: &str,
    inst: &Instance,
    status: InstanceStatus,
    reason: Option<String>,
) -> Result<()> {
    let kind = EventKind::Status {
        instance: inst.id.clone(),
        status,
        reason,
        place: Some(inst.place.clone()),
    };
    ledger.append(sender, |_, _| Ok(Draft::Write(kind.clone())))?;
    Ok(())
}

/// Releases every task `id` still holds: nothing stays held by a dead process.
fn release_claims(
    ledger: &Ledger,
    sender: &str,
    id: &InstanceId,
    why: &str,
) -> Result<Vec<String>> {
    let board = ledger.read(|s| s.full_board())?;
    let held: Vec<_> = board.held_by(id).into_iter().cloned().collect();
    let mut released = vec![];
    for task in held {
        let kind = EventKind::Release {
            task: task.clone(),
            forced: Some(id.clone()),
            reason: Some(why.to_owned()),
        };
        match ledger.append(sender, |_, _| Ok(Draft::Write(kind.clone()))) {
            Ok(_) => released.push(task.to_string()),
            // Someone released or completed it meanwhile: nothing left to do.
            Err(e) if e.downcast_ref::<crate::board::Refusal>().is_some() => {}
            Err(e) => return Err(e),
        }
    }
    Ok(released)
}

/// Sends `sig` to the instance's whole process group (its children too).
fn signal_group(child: &Child, sig: libc::c_int) {
    let pid = child.id() as libc::pid_t;
    // SAFETY: plain kill(2) on the group we created for this child.
    unsafe {
        libc::kill(-pid, sig);
    }
}

/// What [`preflight`] found and [`run`] goes on from, so that each check runs once.
pub struct Checked {
    /// The commit at HEAD: every instance branches from it.
    head: git2::Oid,
    /// `PATH` for the instances: the mara binary's folder first.
    path: std::ffi::OsString,
}

/// Checks what would make a run fail before anything is written (issue 13, part 7):
/// a commit at HEAD to branch from, no instance branch or worktree folder of this run
/// yet, no symbolic link on the way to the run's folder, and for every instance the
/// command line it will get: no NUL byte in its argv or env (placeholders filled in
/// with the values the run will use), and a program that exists and is executable.
pub fn preflight(repo: &git2::Repository, spec: &RunSpec) -> Result<Checked> {
    let head = repo
        .head()
        .ok()
        .and_then(|h| h.peel_to_commit().ok())
        .ok_or_else(|| {
            anyhow::anyhow!(
                "the repository has no commit yet; commit something first: instances branch from HEAD"
            )
        })?;
    let head_tree = head.tree()?;
    let run = &spec.run;
    let dir = run_dir(&spec.work_tree, run);
    let worktrees =
        SafeDir::open(&spec.work_tree)?.descend(&[RUNS_DIR, run.as_str(), "worktrees"], false)?;
    for sub in ["logs", "prompts"] {
        SafeDir::open(&spec.work_tree)?.descend(&[RUNS_DIR, run.as_str(), sub], false)?;
    }
    let default_path = crate::context::path_with(&spec.mara_dir)?;
    for inst in plan_instances(spec) {
        let branch = &inst.place.branch;
        if repo.find_branch(branch, git2::BranchType::Local).is_ok() {
            bail!("branch {branch} exists already: run {run} ran here before; pick another --run");
        }
        if worktrees.is_some() && std::fs::symlink_metadata(&inst.worktree).is_ok() {
            bail!(
                "{} exists already: run {run} ran here before; pick another --run, or remove {}",
                inst.worktree.display(),
                dir.display()
            );
        }
        check_command_line(&inst, spec, repo, &head_tree, &default_path)?;
    }
    Ok(Checked {
        head: head.id(),
        path: default_path,
    })
}

/// Checks the command line `inst` will get: no NUL byte and no oversized argument in
/// its argv or env, placeholders filled in, and a program that will start.
fn check_command_line(
    inst: &Instance,
    spec: &RunSpec,
    repo: &git2::Repository,
    head_tree: &git2::Tree,
    default_path: &std::ffi::OsStr,
) -> Result<()> {
    let role = &spec.roles[inst.role];
    let (argv, env) = command_line(inst, role, spec, &expand_prompt(inst, role, spec));
    let file = role.file.display();
    let too_long = |what: &str, len: usize| {
        anyhow::anyhow!(
            "role file {file}: {what} is {len} bytes long (placeholders filled in); the system takes {MAX_ARG_BYTES} at most: pass a long prompt as {{prompt_file}}"
        )
    };
    for (i, a) in argv.iter().enumerate() {
        if a.contains('\0') {
            bail!("role file {file}: command[{i}] contains a NUL byte (placeholders filled in); remove it");
        }
        if a.len() > MAX_ARG_BYTES {
            return Err(too_long(&format!("command[{i}]"), a.len()));
        }
    }
    for (k, v) in &env {
        if k.is_empty() || k.contains(['=', '\0']) {
            bail!("role file {file}: env key {k:?} is not a variable name; use letters, digits and '_'");
        }
        if v.contains('\0') {
            bail!(
                "role file {file}: env.{k} contains a NUL byte (placeholders filled in); remove it"
            );
        }
        if k.len() + 1 + v.len() > MAX_ARG_BYTES {
            return Err(too_long(&format!("env.{k}"), k.len() + 1 + v.len()));
        }
    }
    let total: usize = argv.iter().map(|a| a.len() + 1).sum::<usize>()
        + env
            .iter()
            .map(|(k, v)| k.len() + v.len() + 2)
            .sum::<usize>();
    if total > max_exec_bytes() {
        bail!(
            "role file {file}: command and env are {total} bytes together (placeholders filled in), more than the system passes to a program; pass a long prompt as {{prompt_file}}"
        );
    }
    let path = env
        .iter()
        .find(|(k, _)| k == "PATH")
        .map_or_else(|| default_path.to_owned(), |(_, v)| v.into());
    check_program(&argv[0], &path, &inst.worktree, repo, head_tree)
        .map_err(|why| anyhow::anyhow!("role file {file}: command[0] {why}"))?;
    Ok(())
}

/// The longest single argument or `KEY=value` Linux passes to a program
/// (`MAX_ARG_STRLEN`, 32 pages, less the NUL): longer fails the spawn with E2BIG.
const MAX_ARG_BYTES: usize = 32 * 4096 - 1;

/// What a program's argv and env may hold together: half of `ARG_MAX`, leaving the
/// other half to the environment the instance inherits.
fn max_exec_bytes() -> usize {
    // SAFETY: sysconf(3) reads a system limit.
    let arg_max = unsafe { libc::sysconf(libc::_SC_ARG_MAX) };
    usize::try_from(arg_max).map_or(128 * 1024, |m| m / 2)
}

/// Finds the program `prog` as `execvp` will in the instance's worktree (which does
/// not exist yet: it will be a checkout of HEAD, so paths inside it are looked up in
/// HEAD's tree). A name with a `/` is a path, relative to the worktree; a bare name
/// is searched on `path`. The file must be executable and start with `#!` or be an
/// ELF binary. Returns why it would not start.
fn check_program(
    prog: &str,
    path: &std::ffi::OsStr,
    worktree: &Path,
    repo: &git2::Repository,
    head: &git2::Tree,
) -> std::result::Result<(), String> {
    // In the worktree-to-be: look the file up in HEAD's tree.
    let in_head = |rel: &Path| -> std::result::Result<(), String> {
        let mut clean = PathBuf::new();
        for c in rel.components() {
            match c {
                std::path::Component::CurDir => {}
                std::path::Component::Normal(n) => clean.push(n),
                _ => {
                    return Err(format!(
                        "{prog:?} leads out of the instance's worktree; give an absolute path, or one below {{config_dir}}"
                    ))
                }
            }
        }
        match head.get_path(&clean) {
            // A link: where it leads is the checkout's business.
            Ok(e) if e.filemode() == 0o120000 => Ok(()),
            Ok(e) if e.filemode() == 0o100755 => {
                let blob = repo
                    .find_blob(e.id())
                    .map_err(|e| format!("{prog:?}: reading it from HEAD: {}", e.message()))?;
                runnable(prog, &blob.content()[..blob.size().min(4)])
            }
            Ok(e) if e.kind() == Some(git2::ObjectType::Blob) => Err(format!(
                "{prog:?} is not executable in HEAD; `git update-index --chmod=+x {}` and commit, or start it with `sh`",
                clean.display()
            )),
            _ => Err(format!(
                "{prog:?} is not a file of HEAD, which the instance's worktree checks out; commit it, or give an absolute path"
            )),
        }
    };
    let on_disk = |p: &Path| -> std::result::Result<(), String> {
        let meta = std::fs::metadata(p).map_err(|_| {
            format!(
                "{prog:?} ({}) does not exist; install it, or fix the path",
                p.display()
            )
        })?;
        if !meta.is_file() {
            return Err(format!("{prog:?} ({}) is not a file", p.display()));
        }
        if !is_executable(p) {
            return Err(format!(
                "{prog:?} ({}) is not executable; `chmod +x {}`",
                p.display(),
                p.display()
            ));
        }
        let mut start = [0u8; 4];
        let n = std::fs::File::open(p)
            .and_then(|mut f| std::io::Read::read(&mut f, &mut start))
            .unwrap_or(0);
        runnable(&p.display().to_string(), &start[..n])
    };
    if prog.is_empty() {
        return Err("is empty; give the program to start".into());
    }
    if prog.contains('/') {
        let p = Path::new(prog);
        return match p.strip_prefix(worktree) {
            Ok(rel) => in_head(rel),
            Err(_) if p.is_absolute() => on_disk(p),
            Err(_) => in_head(p),
        };
    }
    for dir in std::env::split_paths(path) {
        // An empty or relative PATH entry is relative to the worktree.
        let inside = match dir.strip_prefix(worktree) {
            Ok(rel) => Some(rel.to_path_buf()),
            Err(_) if dir.is_relative() => Some(dir.clone()),
            Err(_) => None,
        };
        if let Some(rel) = inside {
            if in_head(&rel.join(prog)).is_ok() {
                return Ok(());
            }
            continue;
        }
        let cand = dir.join(prog);
        if cand.is_file() && is_executable(&cand) {
            return on_disk(&cand);
        }
    }
    Err(format!(
        "{prog:?} is not on PATH; install it, or give its absolute path"
    ))
}

/// Whether a file starting with `start` can be exec'd: a `#!` script or an ELF
/// binary. The kernel refuses anything else (ENOEXEC) and, unlike execvp(3), the
/// spawn does not retry it with `/bin/sh`.
fn runnable(what: &str, start: &[u8]) -> std::result::Result<(), String> {
    if start.starts_with(b"#!") || start.starts_with(b"\x7fELF") {
        Ok(())
    } else {
        Err(format!(
            "{what:?} is neither a script with a `#!` line nor a program; add `#!/bin/sh` as its first line, or start it with `sh`"
        ))
    }
}

/// Whether this process may execute `p` (access(2) with `X_OK`).
fn is_executable(p: &Path) -> bool {
    use std::os::unix::ffi::OsStrExt;
    let Ok(c) = std::ffi::CString::new(p.as_os_str().as_bytes()) else {
        return false;
    };
    // SAFETY: access(2) on a NUL-terminated path.
    unsafe { libc::access(c.as_ptr(), libc::X_OK) == 0 }
}

/// Every instance of the run, with its worktree, branch, log and prompt file.
fn plan_instances(spec: &RunSpec) -> Vec<Instance> {
    let dir = run_dir(&spec.work_tree, &spec.run);
    let mut instances = vec![];
    for (ri, role) in spec.roles.iter().enumerate() {
        for id in role.instance_ids() {
            let stem = id.file_stem();
            let worktree = dir.join("worktrees").join(&stem);
            let branch = format!("mara/{}/{stem}", spec.run);
            let log = dir.join("logs").join(format!("{stem}.log"));
            let prompt_file = dir.join("prompts").join(format!("{stem}.md"));
            instances.push(Instance {
                place: Place {
                    worktree: worktree.to_string_lossy().into_owned(),
                    branch,
                    log: log.to_string_lossy().into_owned(),
                },
                id,
                role: ri,
                worktree,
                prompt_file,
                state: State::Waiting,
            });
        }
    }
    instances
}

/// The placeholders of an instance's command, prompt and env (`{prompt}` aside).
fn placeholders(inst: &Instance, role: &Role, spec: &RunSpec) -> BTreeMap<&'static str, String> {
    let mut vars: BTreeMap<&str, String> = BTreeMap::new();
    vars.insert("instance", inst.id.to_string());
    vars.insert("role", role.id.clone());
    vars.insert("n", inst.id.number().to_string());
    vars.insert("run", spec.run.to_string());
    vars.insert("worktree", inst.place.worktree.clone());
    vars.insert("branch", inst.place.branch.clone());
    vars.insert("config_dir", spec.config_dir.to_string_lossy().into_owned());
    vars.insert(
        "prompt_file",
        inst.prompt_file.to_string_lossy().into_owned(),
    );
    vars
}

/// The instance's prompt, placeholders filled in.
fn expand_prompt(inst: &Instance, role: &Role, spec: &RunSpec) -> String {
    expand(&role.spec.prompt, &placeholders(inst, role, spec))
}

/// The instance's argv and its role file's env, placeholders filled in.
fn command_line(
    inst: &Instance,
    role: &Role,
    spec: &RunSpec,
    prompt: &str,
) -> (Vec<String>, Vec<(String, String)>) {
    let mut vars = placeholders(inst, role, spec);
    vars.insert("prompt", prompt.to_owned());
    let argv = role.spec.command.iter().map(|a| expand(a, &vars)).collect();
    let env = role
        .spec
        .env
        .iter()
        .map(|(k, v)| (k.clone(), expand(v, &vars)))
        .collect();
    (argv, env)
}

/// Prepares worktrees and branches, then runs every instance to its end. `checked`
/// is what [`preflight`] found for this `spec`.
pub fn run(ledger: &Ledger, spec: &RunSpec, checked: Checked) -> Result<Summary> {
    let started = Instant::now();
    let repo = ledger.repo();
    exclude_run_dirs(repo)?;
    let dirs = RunDirs::create(spec)?;
    let instances = plan_instances(spec);
    // git itself adds the worktrees, told exactly which repository and work tree
    // (the caller's GIT_DIR may be relative, and a GIT_WORK_TREE work tree may have
    // no `.git` of its own).
    let git_dir = repo
        .path()
        .canonicalize()
        .with_context(|| format!("finding {}", repo.path().display()))?;
    add_worktrees(&spec.work_tree, &git_dir, checked.head, &instances)?;
    install_signal_handlers();
    let runner = Runner {
        ledger,
        spec,
        path: checked.path,
        dirs,
    };
    let mut stalls = vec![];
    let (ended, stop) = runner.supervise(instances, started, &mut stalls)?;
    output::progress_clear(spec.progress);
    record_own_end(ledger, spec, stop.as_ref())?;
    let resolutions = match stop {
        None => integrator_step(ledger, spec)?,
        Some(_) => None,
    };
    tidy_up(&spec.work_tree, &git_dir);
    let interrupted = stop == Some(Stop::Interrupted);
    Ok(Summary {
        instances: ended,
        interrupted,
        elapsed: started.elapsed(),
        stalls,
        resolutions,
        stopped: match stop {
            Some(Stop::Stalled(why)) => Some(why),
            _ => None,
        },
    })
}

/// The integrator step: once every instance has ended, resolutions whose resolve
/// tasks are done but that are not merged yet (the resolver did not run `mara
/// integrate --continue`) are merged as `integrate --continue` does. Says what
/// happened, or `None` when nothing was left; a refusal is reported, not fatal.
fn integrator_step(ledger: &Ledger, spec: &RunSpec) -> Result<Option<String>> {
    let repo = ledger.repo();
    let into = format!("mara/{}/integration", spec.run);
    let tasks = ledger.read(|s| Ok(crate::integrate::resolve::resolve_tasks(&*s.full_board()?)))?;
    let pending = crate::integrate::resolve::pending(repo, &spec.run, &into, &tasks)?;
    if pending.is_empty() {
        return Ok(None);
    }
    let args = crate::commands::integrate::IntegrateArgs {
        cont: true,
        ..Default::default()
    };
    Ok(Some(
        match crate::commands::integrate::run_as(ledger, &spec.sender, args) {
            Ok(_) => format!(
                "integrator step: merged the resolution(s) {} into {into}",
                pending.join(", ")
            ),
            Err(e) => {
                let e = crate::error::CommandError::new(e);
                format!(
                    "integrator step: the resolution(s) {} did not merge: {}",
                    pending.join(", "),
                    e.message()
                )
            }
        },
    ))
}

/// Adds every instance's worktree on its new branch at `head`.
fn add_worktrees(
    main_dir: &Path,
    git_dir: &Path,
    head: git2::Oid,
    instances: &[Instance],
) -> Result<()> {
    for inst in instances {
        git_ok_env(
            main_dir,
            &[
                "worktree",
                "add",
                "-q",
                "-b",
                &inst.place.branch,
                &inst.place.worktree,
                &head.to_string(),
            ],
            &[
                ("GIT_DIR", git_dir.as_os_str()),
                ("GIT_WORK_TREE", main_dir.as_os_str()),
            ],
        )?;
    }
    Ok(())
}

/// The orchestrator is an instance on the board too: records that it is done.
fn record_own_end(ledger: &Ledger, spec: &RunSpec, stop: Option<&Stop>) -> Result<()> {
    if let Ok(me) = spec.sender.parse::<InstanceId>() {
        let (status, reason) = match stop {
            Some(Stop::Interrupted) => (InstanceStatus::Failed, Some("interrupted".to_owned())),
            Some(Stop::Stalled(_)) => (
                InstanceStatus::Failed,
                Some("stopped: the run stalled".to_owned()),
            ),
            None => (InstanceStatus::Exited, None),
        };
        let kind = EventKind::Status {
            instance: me,
            status,
            reason,
            place: None,
        };
        ledger.append(&spec.sender, |_, _| Ok(Draft::Write(kind.clone())))?;
    }
    Ok(())
}

/// The instances' own commits leave loose objects, and mara's events small packs.
/// Lets git tidy up now that no instance writes, off every claim's path (`--auto`
/// does nothing until there is enough to do).
fn tidy_up(main_dir: &Path, git_dir: &Path) {
    let _ = std::process::Command::new("git")
        .args(["gc", "--auto", "--quiet"])
        .current_dir(main_dir)
        .env("GIT_DIR", git_dir)
        .env("GIT_WORK_TREE", main_dir)
        .env_remove("GIT_INDEX_FILE")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status();
}

/// Why the run loop stopped every instance.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Stop {
    /// SIGINT or SIGTERM.
    Interrupted,
    /// The stall guard, with `on_stall: stop`; the one-line reason.
    Stalled(String),
}

impl Stop {
    /// Why an instance was stopped, in its status event.
    fn reason(&self) -> &'static str {
        match self {
            Stop::Interrupted => "stopped: the run was interrupted",
            Stop::Stalled(_) => "stopped: the run stalled (on_stall stop)",
        }
    }
}

/// What the run loop starts, stops and records instances with.
struct Runner<'a> {
    ledger: &'a Ledger,
    spec: &'a RunSpec,
    /// `PATH` for the instances.
    path: std::ffi::OsString,
    dirs: RunDirs,
}

impl Runner<'_> {
    /// Runs every instance to its end: starts the ready, reaps the ended, asks the
    /// stall guard, stops all of them on an interrupt or a stall that says stop.
    /// Returns how each ended, and why the run stopped them if it did; `stalls`
    /// gets a line per stall.
    fn supervise(
        &self,
        mut instances: Vec<Instance>,
        started: Instant,
        stalls: &mut Vec<String>,
    ) -> Result<(Vec<Ended>, Option<Stop>)> {
        let mut ended: Vec<Ended> = vec![];
        let mut last_progress = Instant::now() - Duration::from_secs(1);
        let mut last_stall_check = Instant::now();
        let mut stop: Option<Stop> = None;
        loop {
            if INTERRUPTED.load(Ordering::SeqCst) && stop.is_none() {
                stop = Some(Stop::Interrupted);
                output::progress_clear(self.spec.progress);
                output::progress("mara run: interrupted; stopping every instance");
            }
            if stop.is_none() && last_stall_check.elapsed() >= STALL_CHECK {
                last_stall_check = Instant::now();
                if let Some(why) = self.check_stall(stalls)? {
                    output::progress_clear(self.spec.progress);
                    output::progress(&format!("mara run: {why}; stopping every instance"));
                    stop = Some(Stop::Stalled(why));
                }
            }
            if stop.is_none() {
                self.start_ready(&mut instances, &mut ended)?;
            }
            for inst in instances.iter_mut() {
                ended.extend(self.reap(inst, stop.as_ref())?);
            }
            if stop.is_some() {
                // Never-started instances are simply not run.
                for inst in instances.iter_mut() {
                    if matches!(inst.state, State::Waiting) {
                        inst.state = State::Ended;
                    }
                }
            }
            if instances.iter().all(|i| matches!(i.state, State::Ended)) {
                break;
            }
            if self.spec.progress && last_progress.elapsed() > Duration::from_millis(200) {
                last_progress = Instant::now();
                self.draw_progress(&instances, ended.len(), started)?;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        Ok((ended, stop))
    }

    /// Asks the stall guard; on a stall not recorded yet, records one `stall` event
    /// (once per stalled period: the event marks the last progress as reported) and
    /// acts by the run's `on_stall`: warn on stderr, post an `alert` to a role, or
    /// stop. Returns the one-line reason when the run must stop.
    fn check_stall(&self, stalls: &mut Vec<String>) -> Result<Option<String>> {
        let ledger = self.ledger;
        let now = crate::ledger::now();
        let flags = ledger.read(|s| ledger.stall_flags(s, now))?;
        if flags
            .last_progress
            .as_ref()
            .is_none_or(|p| p.stall_seq.is_some())
            || stall_event(&flags).is_none()
        {
            return Ok(None);
        }
        // Judged again on the tip the event goes on, at the event's own time: a
        // progress meanwhile ends the stall, and another writer may have recorded it.
        let written = ledger.append(&self.spec.sender, |snap, ts| {
            let flags = ledger.stall_flags(snap, ts)?;
            let recorded = flags.last_progress.as_ref().and_then(|p| p.stall_seq);
            Ok(match stall_event(&flags).filter(|_| recorded.is_none()) {
                Some(kind) => Draft::Write(kind),
                None => Draft::Noop(String::new()),
            })
        })?;
        let crate::ledger::Outcome::Written(appended) = written else {
            return Ok(None);
        };
        let at = appended.event.ts;
        let flags = ledger.read(|s| ledger.stall_flags(s, at))?;
        let said = format!("run {} {}", self.spec.run, flags.lines(at).join("; "));
        stalls.push(said.clone());
        match &flags.on_stall {
            OnStall::Warn => output::warn(&said),
            OnStall::Notify(role) => {
                output::warn(&format!("{said}; told the {role} role"));
                let kind = EventKind::Message {
                    kind: "alert".to_owned(),
                    text: format!(
                        "{said}. See `mara status`; answer the open questions, or take a task that is ready"
                    ),
                    to: Some(role.clone()),
                    task: None,
                    reply_to: None,
                };
                ledger.append(&self.spec.sender, |_, _| Ok(Draft::Write(kind.clone())))?;
            }
            OnStall::Stop => return Ok(Some(said)),
        }
        Ok(None)
    }

    /// Starts every waiting instance whose role's predecessors (`after`) have all
    /// ended; one that cannot start ends failed. With a review step the review role
    /// starts with everyone else, whatever its `after` says: its work (done tasks)
    /// comes while the others work, and it waits for it (`claim --next --wait`).
    fn start_ready(&self, instances: &mut [Instance], ended: &mut Vec<Ended>) -> Result<()> {
        let roles = &self.spec.roles;
        let ended_roles: Vec<usize> = (0..roles.len())
            .filter(|r| {
                instances
                    .iter()
                    .filter(|i| i.role == *r)
                    .all(|i| matches!(i.state, State::Ended))
            })
            .collect();
        for inst in instances.iter_mut() {
            if !matches!(inst.state, State::Waiting) {
                continue;
            }
            let reviews = self.spec.seed.coordination.review_role.as_deref()
                == Some(roles[inst.role].id.as_str());
            let ready = reviews
                || roles[inst.role].spec.after.iter().all(|a| {
                    roles
                        .iter()
                        .position(|r| &r.id == a)
                        .is_some_and(|ri| ended_roles.contains(&ri))
                });
            if ready {
                ended.extend(self.launch(inst)?);
            }
        }
        Ok(())
    }

    /// Starts one instance, with its status events; returns how it ended when it
    /// could not start.
    fn launch(&self, inst: &mut Instance) -> Result<Option<Ended>> {
        let (ledger, spec) = (self.ledger, self.spec);
        let role = &spec.roles[inst.role];
        status_event(ledger, &spec.sender, inst, InstanceStatus::Starting, None)?;
        match start(inst, role, spec, &self.path, &self.dirs) {
            Ok(child) => {
                status_event(ledger, &spec.sender, inst, InstanceStatus::Running, None)?;
                inst.state = State::Running {
                    child,
                    started: Instant::now(),
                    stopping: None,
                };
                Ok(None)
            }
            Err(e) => {
                let why = format!("could not start: {e:#}");
                inst.state = State::Ended;
                Ok(Some(finish(
                    ledger,
                    spec,
                    inst,
                    InstanceStatus::Failed,
                    Some(why),
                )?))
            }
        }
    }

    /// Reaps, times out or stops a running instance; returns how it ended once it
    /// has. Stopping is SIGTERM to the group, then SIGKILL after the grace period;
    /// all instances get their grace at once.
    fn reap(&self, inst: &mut Instance, stop: Option<&Stop>) -> Result<Option<Ended>> {
        let State::Running {
            child,
            started,
            stopping,
        } = &mut inst.state
        else {
            return Ok(None);
        };
        let limit = self.spec.seed.instance_timeout(&self.spec.roles[inst.role]);
        if stopping.is_none() {
            let why = if let Some(stop) = stop {
                Some(stop.reason().to_owned())
            } else if limit.is_some_and(|l| started.elapsed() > Duration::from_secs(l)) {
                Some(format!(
                    "stopped at its time limit of {}s",
                    limit.unwrap_or(0)
                ))
            } else {
                None
            };
            if let Some(why) = why {
                signal_group(child, libc::SIGTERM);
                *stopping = Some((Instant::now() + GRACE, why));
            }
        }
        let outcome = match (child.try_wait()?, stopping.as_ref()) {
            (Some(_), Some((_, why))) => {
                signal_group(child, libc::SIGKILL);
                Some((InstanceStatus::Failed, Some(why.clone())))
            }
            (Some(status), None) => {
                // The leader is done; its helpers must not outlive it.
                signal_group(child, libc::SIGKILL);
                Some(if status.success() {
                    (InstanceStatus::Exited, None)
                } else {
                    (
                        InstanceStatus::Failed,
                        Some(format!("exited with {status}")),
                    )
                })
            }
            (None, Some((deadline, why))) if Instant::now() >= *deadline => {
                signal_group(child, libc::SIGKILL);
                let _ = child.wait();
                Some((InstanceStatus::Failed, Some(why.clone())))
            }
            (None, _) => None,
        };
        let Some((status, reason)) = outcome else {
            return Ok(None);
        };
        inst.state = State::Ended;
        Ok(Some(finish(self.ledger, self.spec, inst, status, reason)?))
    }

    /// Redraws the progress line: instances running, ended and waiting, the board's
    /// tasks, the time so far.
    fn draw_progress(&self, instances: &[Instance], ended: usize, started: Instant) -> Result<()> {
        let running = instances
            .iter()
            .filter(|i| matches!(i.state, State::Running { .. }))
            .count();
        let board = self.ledger.read(|s| s.full_board())?;
        output::progress_line(&format!(
            "mara run {}: {running} running, {ended} ended, {} waiting | tasks {} | {:.0}s",
            self.spec.run,
            instances.len() - running - ended,
            board.counts(),
            started.elapsed().as_secs_f64()
        ));
        Ok(())
    }
}

/// Records how an instance ended and releases what it still held.
fn finish(
    ledger: &Ledger,
    spec: &RunSpec,
    inst: &Instance,
    status: InstanceStatus,
    reason: Option<String>,
) -> Result<Ended> {
    status_event(ledger, &spec.sender, inst, status, reason.clone())?;
    let why = format!(
        "{} {}{}",
        inst.id,
        status,
        reason.as_ref().map_or(String::new(), |r| format!(": {r}"))
    );
    let released = release_claims(ledger, &spec.sender, &inst.id, &why)?;
    Ok(Ended {
        id: inst.id.clone(),
        status,
        reason,
        place: inst.place.clone(),
        released,
    })
}

/// The run's folders that instances' files go to, opened without following links.
struct RunDirs {
    logs: SafeDir,
    prompts: SafeDir,
}

impl RunDirs {
    /// Creates the run's folders for logs, prompts and worktrees.
    fn create(spec: &RunSpec) -> Result<RunDirs> {
        let (main_dir, run) = (&spec.work_tree, &spec.run);
        let dirs = RunDirs {
            logs: open_run_dir(main_dir, run, &["logs"])?,
            prompts: open_run_dir(main_dir, run, &["prompts"])?,
        };
        open_run_dir(main_dir, run, &["worktrees"])?;
        Ok(dirs)
    }
}

/// Spawns one instance in its worktree, in a process group of its own.
fn start(
    inst: &Instance,
    role: &Role,
    spec: &RunSpec,
    path: &std::ffi::OsStr,
    dirs: &RunDirs,
) -> Result<Child> {
    let prompt = expand_prompt(inst, role, spec);
    let stem = inst.id.file_stem();
    dirs.prompts
        .write(&format!("{stem}.md"), prompt.as_bytes())?;
    let (argv, env) = command_line(inst, role, spec, &prompt);
    let log = dirs.logs.create(&format!("{stem}.log"))?;
    let mut cmd = Command::new(&argv[0]);
    cmd.args(&argv[1..])
        .current_dir(&inst.worktree)
        .env("PATH", path)
        .env("MARA_RUN", spec.run.as_str())
        .env("MARA_INSTANCE", inst.id.to_string())
        .env("MARA_ROLE", &role.id)
        .env("MARA_WORKTREE", &inst.worktree)
        .env("MARA_RUN_DIR", run_dir(&spec.work_tree, &spec.run))
        .env_remove("GIT_DIR")
        .env_remove("GIT_WORK_TREE")
        .env_remove("GIT_INDEX_FILE")
        .stdin(Stdio::null())
        .stdout(log.try_clone()?)
        .stderr(log)
        // Its own process group: a stop reaches the agent's children too, and the
        // terminal's Ctrl-C reaches only mara, which stops them in order.
        .process_group(0);
    for (k, v) in &env {
        cmd.env(k, v);
    }
    cmd.spawn()
        .with_context(|| format!("starting `{}` for {}", argv.join(" "), inst.id))
}
