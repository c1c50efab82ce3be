//! Shared helpers of the integration tests: a scratch git repository in a
//! `TempDir`, and the real `mara` binary run with a clean, fixed environment.

#![allow(dead_code)] // not every test module uses every helper

use std::ffi::OsString;
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use tempfile::TempDir;

/// The binary under test.
pub const MARA: &str = env!("CARGO_BIN_EXE_mara");

/// What one run of a process produced.
#[derive(Debug, Clone)]
pub struct Out {
    pub stdout: String,
    pub stderr: String,
    /// The exit code; -1 when the process was killed by a signal.
    pub code: i32,
}

impl Out {
    pub fn from_output(o: Output) -> Out {
        Out {
            stdout: String::from_utf8_lossy(&o.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&o.stderr).into_owned(),
            code: o.status.code().unwrap_or(-1),
        }
    }

    /// Panics with everything the process said unless it exited with `code`.
    #[track_caller]
    pub fn expect_code(&self, code: i32, what: &str) -> &Out {
        assert_eq!(
            self.code, code,
            "{what}: expected exit {code}, got {}\nstdout:\n{}\nstderr:\n{}",
            self.code, self.stdout, self.stderr
        );
        self
    }

    /// Asserts exit 0.
    #[track_caller]
    pub fn ok(&self, what: &str) -> &Out {
        self.expect_code(0, what)
    }

    /// Asserts that stderr contains `needle`.
    #[track_caller]
    pub fn stderr_has(&self, needle: &str) -> &Out {
        assert!(
            self.stderr.contains(needle),
            "stderr does not contain {needle:?}\nexit {}\nstderr:\n{}",
            self.code,
            self.stderr
        );
        self
    }
}

/// The test process's own `PATH`, so the children find `git` and `sh`.
#[allow(clippy::disallowed_methods)] // tests read their own environment, not mara's
fn parent_path() -> OsString {
    std::env::var_os("PATH").unwrap_or_else(|| OsString::from("/usr/local/bin:/usr/bin:/bin"))
}

/// Clears the environment of `cmd` and sets the fixed one every child gets: no
/// system or global git config, a fixed author and committer, UTC, the C locale,
/// `HOME` inside the test's directory and no inherited `MARA_*` or `GIT_*`.
pub fn clean_env<'a>(cmd: &'a mut Command, home: &Path) -> &'a mut Command {
    cmd.env_clear()
        .env("PATH", parent_path())
        .env("HOME", home)
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .env("GIT_CONFIG_GLOBAL", "/dev/null")
        .env("GIT_AUTHOR_NAME", "Test Author")
        .env("GIT_AUTHOR_EMAIL", "author@example.invalid")
        .env("GIT_COMMITTER_NAME", "Test Committer")
        .env("GIT_COMMITTER_EMAIL", "committer@example.invalid")
        .env("TZ", "UTC")
        .env("LC_ALL", "C")
        .stdin(Stdio::null())
}

/// Runs `git args` in `dir` with the clean environment and `envs` on top; returns
/// its stdout, or panics with the command line and git's stderr.
#[track_caller]
pub fn git_env(dir: &Path, args: &[&str], envs: &[(&str, &str)]) -> String {
    let mut cmd = Command::new("git");
    clean_env(&mut cmd, dir);
    let out = cmd
        .args(args)
        .envs(envs.iter().copied())
        .current_dir(dir)
        .output()
        .expect("git runs");
    git_stdout(dir, args, out)
}

/// git's stdout, or a panic with the command line and git's stderr.
#[track_caller]
fn git_stdout(dir: &Path, args: &[&str], out: Output) -> String {
    assert!(
        out.status.success(),
        "`git {}` in {} failed ({}):\n{}",
        args.join(" "),
        dir.display(),
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).expect("git prints UTF-8 here")
}

/// Runs `git args` in `dir`; returns its stdout or panics with the command line
/// and git's stderr.
#[track_caller]
pub fn git(dir: &Path, args: &[&str]) -> String {
    git_env(dir, args, &[])
}

/// Runs `git args` in `dir` with `input` on its stdin (`git mktree`,
/// `git hash-object --stdin`); returns its stdout trimmed, or panics with git's stderr.
#[track_caller]
pub fn git_input(dir: &Path, args: &[&str], input: &[u8]) -> String {
    use std::io::Write;
    let mut cmd = Command::new("git");
    clean_env(&mut cmd, dir);
    let mut child = cmd
        .args(args)
        .current_dir(dir)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("git runs");
    child
        .stdin
        .take()
        .expect("stdin is piped")
        .write_all(input)
        .expect("writing git's stdin");
    let out = child.wait_with_output().expect("git runs");
    git_stdout(dir, args, out).trim().to_owned()
}

/// Writes a tree with git plumbing, as a hostile instance would: `entries` are
/// `(mode, type, id, name)` lines for `git mktree`, which takes any name (`..`,
/// `.git`) and any mode (links, submodules). Returns the tree's id.
#[track_caller]
pub fn mktree<S: AsRef<str>>(dir: &Path, entries: &[(S, S, S, S)]) -> String {
    let text: String = entries
        .iter()
        .map(|(mode, kind, id, name)| {
            let [mode, kind, id, name] = [mode, kind, id, name].map(AsRef::as_ref);
            format!("{mode} {kind} {id}\t{name}\n")
        })
        .collect();
    git_input(dir, &["mktree", "--missing"], text.as_bytes())
}

/// Writes `data` as a blob; returns its id.
#[track_caller]
pub fn blob(dir: &Path, data: &[u8]) -> String {
    git_input(dir, &["hash-object", "-w", "--stdin"], data)
}

/// The commit `refs/mara/<run>` points at.
#[track_caller]
pub fn ref_tip(dir: &Path, run: &str) -> String {
    git(dir, &["rev-parse", &format!("refs/mara/{run}")])
        .trim()
        .to_owned()
}

/// The subjects of the run's commits, newest first.
#[track_caller]
pub fn subjects(dir: &Path, run: &str) -> Vec<String> {
    git(dir, &["log", "--format=%s", &format!("refs/mara/{run}")])
        .lines()
        .map(str::to_owned)
        .collect()
}

/// How many commits of the run have a subject starting with `prefix`.
#[track_caller]
pub fn count_commits_with_subject(dir: &Path, run: &str, prefix: &str) -> usize {
    subjects(dir, run)
        .iter()
        .filter(|s| s.starts_with(prefix))
        .count()
}

/// The newest subject on the run's ref.
#[track_caller]
pub fn newest_subject(dir: &Path, run: &str) -> String {
    subjects(dir, run)
        .into_iter()
        .next()
        .expect("the run has commits")
}

/// The holder an "X is held by ROLE#N" message names, if any.
pub fn held_by(stderr: &str, task: &str) -> Option<String> {
    let marker = format!("{task} is held by ");
    let start = stderr.find(&marker)? + marker.len();
    let holder: String = stderr[start..]
        .chars()
        .take_while(|c| c.is_ascii_alphanumeric() || matches!(c, '#' | '_' | '-'))
        .collect();
    Some(holder)
}

/// A scratch repository: `git init -b main` with one commit, in a temporary
/// directory that also holds the children's `HOME`.
pub struct TestRepo {
    /// Keeps the directory alive; removed on drop.
    pub tmp: TempDir,
    /// The repository's worktree (canonical path).
    pub dir: PathBuf,
    /// `HOME` of every child process.
    pub home: PathBuf,
}

/// A fresh temporary directory and its canonical path (removed with the `TempDir`).
pub fn scratch(prefix: &str) -> (TempDir, PathBuf) {
    let tmp = tempfile::Builder::new()
        .prefix(prefix)
        .tempdir()
        .expect("a temporary directory");
    let root = tmp
        .path()
        .canonicalize()
        .expect("the temporary directory has a canonical path");
    (tmp, root)
}

impl TestRepo {
    /// A repository with one commit on `main`, and no run yet.
    pub fn new() -> TestRepo {
        let (tmp, root) = scratch("mara-it-");
        let dir = root.join("repo");
        let home = root.join("home");
        std::fs::create_dir_all(&dir).expect("creating the repository directory");
        std::fs::create_dir_all(&home).expect("creating HOME");
        git(&dir, &["init", "-q", "-b", "main"]);
        std::fs::write(dir.join("README.md"), "# scratch\n").expect("writing README.md");
        git(&dir, &["add", "README.md"]);
        git(&dir, &["commit", "-q", "-m", "initial commit"]);
        TestRepo { tmp, dir, home }
    }

    /// A repository with a run `run` created by `mara init --run run`.
    pub fn with_run(run: &str) -> TestRepo {
        let r = TestRepo::new();
        r.mara(&["init", "--run", run]).ok("mara init");
        r
    }

    /// The root of the temporary directory (parent of the repository).
    pub fn root(&self) -> PathBuf {
        self.dir
            .parent()
            .expect("the repository has a parent")
            .to_path_buf()
    }

    /// A `mara` command with the clean environment, `envs` on top, in `cwd` (the
    /// repository by default). Not started: spawn it, or use [`TestRepo::mara_in`].
    pub fn mara_command(
        &self,
        args: &[&str],
        envs: &[(&str, &str)],
        cwd: Option<&Path>,
    ) -> Command {
        let mut cmd = Command::new(MARA);
        clean_env(&mut cmd, &self.home);
        cmd.args(args)
            .envs(envs.iter().copied())
            .current_dir(cwd.unwrap_or(&self.dir))
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        cmd
    }

    /// Runs `mara args` with extra `envs`, in `cwd` (the repository by default).
    pub fn mara_in(&self, args: &[&str], envs: &[(&str, &str)], cwd: Option<&Path>) -> Out {
        let out = self
            .mara_command(args, envs, cwd)
            .output()
            .expect("the mara binary runs");
        Out::from_output(out)
    }

    /// Runs `mara args` in the repository.
    pub fn mara(&self, args: &[&str]) -> Out {
        self.mara_in(args, &[], None)
    }

    /// Runs `mara args` in the repository as `instance` (through `MARA_INSTANCE`).
    pub fn mara_as(&self, instance: &str, args: &[&str]) -> Out {
        self.mara_in(args, &[("MARA_INSTANCE", instance)], None)
    }

    /// `git args` in the repository.
    #[track_caller]
    pub fn git(&self, args: &[&str]) -> String {
        git(&self.dir, args)
    }

    /// The tip of `refs/mara/<run>`.
    #[track_caller]
    pub fn tip(&self, run: &str) -> String {
        ref_tip(&self.dir, run)
    }

    /// `mara board --json`, parsed.
    #[track_caller]
    pub fn board(&self) -> serde_json::Value {
        let out = self.mara(&["board", "--json"]);
        out.ok("mara board --json");
        serde_json::from_str(&out.stdout).expect("board --json prints one JSON value")
    }

    /// One task of `mara board --json`.
    #[track_caller]
    pub fn task(&self, id: &str) -> serde_json::Value {
        let board = self.board();
        board["tasks"]
            .as_array()
            .expect("tasks is a list")
            .iter()
            .find(|t| t["id"] == id)
            .unwrap_or_else(|| panic!("task {id} is not on the board: {board}"))
            .clone()
    }

    /// Status and holder of one task on the board.
    #[track_caller]
    pub fn task_state(&self, id: &str) -> (String, Option<String>) {
        let task = self.task(id);
        (
            task["status"]
                .as_str()
                .expect("status is a string")
                .to_owned(),
            task["claimed_by"].as_str().map(str::to_owned),
        )
    }

    /// Asserts that `mara verify` exits 0.
    #[track_caller]
    pub fn verify_ok(&self) {
        self.mara(&["verify"]).ok("mara verify");
    }

    /// Plans one task per number in `numbers`, id `id(i)`, title `task {i}`, in one
    /// `mara plan`.
    pub fn plan_numbered(
        &self,
        numbers: impl IntoIterator<Item = usize>,
        id: impl Fn(usize) -> String,
    ) {
        let plan: Vec<serde_json::Value> = numbers
            .into_iter()
            .map(|i| serde_json::json!({"id": id(i), "title": format!("task {i}")}))
            .collect();
        let p = self.write_outside("plan.json", &serde_json::Value::Array(plan).to_string());
        self.mara(&["plan", p.to_str().expect("a UTF-8 path")])
            .ok("mara plan");
    }

    /// Writes a file below the temporary root (outside the repository) and
    /// returns its path.
    /// The tree of `commit` with the file at `path` set to `contents`, built in a
    /// scratch index (the way a hand-forged board commit is made).
    pub fn tree_with(&self, commit: &str, path: &str, contents: &str) -> String {
        let index = self.root().join("scratch-index");
        let index = index.to_str().expect("a UTF-8 path");
        let env = [("GIT_INDEX_FILE", index)];
        git_env(&self.dir, &["read-tree", commit], &env);
        let file = self.write_outside("scratch-blob", contents);
        let blob = git(
            &self.dir,
            &["hash-object", "-w", file.to_str().expect("a UTF-8 path")],
        )
        .trim()
        .to_owned();
        let info = format!("100644,{blob},{path}");
        git_env(
            &self.dir,
            &["update-index", "--add", "--cacheinfo", &info],
            &env,
        );
        git_env(&self.dir, &["write-tree"], &env).trim().to_owned()
    }

    pub fn write_outside(&self, name: &str, contents: &str) -> PathBuf {
        let p = self.root().join(name);
        std::fs::write(&p, contents).expect("writing a file outside the repository");
        p
    }
}

/// Runs `cmd` with stdout and stderr piped; kills it and panics once it has run
/// for `limit`. Returns what it printed and how long it ran.
#[track_caller]
pub fn output_within(mut cmd: Command, limit: Duration, what: &str) -> (Out, Duration) {
    fn drain(mut from: impl std::io::Read + Send + 'static) -> std::thread::JoinHandle<Vec<u8>> {
        std::thread::spawn(move || {
            let mut buf = vec![];
            let _ = from.read_to_end(&mut buf);
            buf
        })
    }
    let started = Instant::now();
    let mut child = cmd
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("{what}: the process does not start: {e}"));
    let stdout = drain(child.stdout.take().expect("stdout is piped"));
    let stderr = drain(child.stderr.take().expect("stderr is piped"));
    let status = loop {
        if let Some(s) = child.try_wait().expect("polling the child") {
            break s;
        }
        if started.elapsed() > limit {
            let _ = child.kill();
            let _ = child.wait();
            panic!("{what}: still running after {limit:?}, killed");
        }
        std::thread::sleep(Duration::from_millis(2));
    };
    let took = started.elapsed();
    let out = Output {
        status,
        stdout: stdout.join().expect("the stdout reader"),
        stderr: stderr.join().expect("the stderr reader"),
    };
    (Out::from_output(out), took)
}

/// The crate's folder: the seed's `mara.json` and `roles/` live there.
pub const SEED: &str = env!("CARGO_MANIFEST_DIR");

/// The folder of the test's configs (outside the repository): `<tmp>/cfg`.
pub fn cfg_dir(r: &TestRepo) -> PathBuf {
    let d = r.root().join("cfg");
    std::fs::create_dir_all(d.join("roles")).expect("creating the config folder");
    d
}

/// Copies the seed's `mara.json`, role files and scripted agent into `<tmp>/cfg`;
/// returns the copied `mara.json`.
pub fn copy_seed(r: &TestRepo) -> PathBuf {
    let cfg = cfg_dir(r);
    for entry in std::fs::read_dir(Path::new(SEED).join("roles")).expect("reading roles/") {
        let entry = entry.expect("a roles/ entry");
        std::fs::copy(entry.path(), cfg.join("roles").join(entry.file_name()))
            .expect("copying a role file");
    }
    let config = cfg.join("mara.json");
    std::fs::copy(Path::new(SEED).join("mara.json"), &config).expect("copying mara.json");
    config
}

/// Runs `f` and asserts that the run's ref did not move.
#[track_caller]
pub fn assert_ref_unchanged<T>(repo: &TestRepo, run: &str, f: impl FnOnce() -> T) -> T {
    let before = repo.tip(run);
    let count_before = subjects(&repo.dir, run).len();
    let v = f();
    assert_eq!(repo.tip(run), before, "refs/mara/{run} moved");
    assert_eq!(subjects(&repo.dir, run).len(), count_before);
    v
}

/// The shared remote: a bare repository `proj.git`, served by a `git daemon` or
/// reached by its path. The daemon is killed when this is dropped.
pub struct Origin {
    /// Keeps the directory alive; removed on drop (after the daemon is gone).
    pub _tmp: TempDir,
    /// The daemon's base path; holds `proj.git`.
    pub root: PathBuf,
    /// The bare repository.
    pub bare: PathBuf,
    /// What clones put in `git remote add origin`.
    pub url: String,
    pub daemon: Option<Child>,
}

/// A port nobody listens on right now.
pub fn free_port() -> u16 {
    TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
        .expect("binding 127.0.0.1:0")
        .local_addr()
        .expect("the listener has an address")
        .port()
}

impl Origin {
    pub fn bare_only() -> (TempDir, PathBuf, PathBuf) {
        let (tmp, root) = scratch("mara-it-origin-");
        let bare = root.join("proj.git");
        git(
            &root,
            &["init", "--bare", "-q", bare.to_str().expect("UTF-8 path")],
        );
        (tmp, root, bare)
    }

    /// A bare repository served read-write by `git daemon` on a free port.
    pub fn daemon() -> Origin {
        let (tmp, root, bare) = Origin::bare_only();
        let root_s = root.to_str().expect("UTF-8 path").to_owned();
        let daemon = PathBuf::from(git(&root, &["--exec-path"]).trim()).join("git-daemon");
        // The port can be taken between dropping the probe listener and the
        // daemon's bind: then the daemon exits and we try another one.
        for _ in 0..5 {
            let port = free_port();
            let log = std::fs::File::create(root.join(format!("daemon-{port}.log")))
                .expect("creating the daemon's log");
            // The `git-daemon` program itself: `git daemon` would run it as a child
            // of a `git` wrapper that a SIGKILL leaves orphaned, still listening.
            let mut cmd = Command::new(&daemon);
            clean_env(&mut cmd, &root);
            let mut child = cmd
                .args([
                    "--reuseaddr",
                    "--listen=127.0.0.1",
                    &format!("--port={port}"),
                    &format!("--base-path={root_s}"),
                    "--export-all",
                    "--enable=receive-pack",
                    &root_s,
                ])
                .current_dir(&root)
                .stdout(Stdio::null())
                .stderr(log)
                .spawn()
                .expect("git daemon starts");
            let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
            let started = Instant::now();
            let ready = loop {
                if TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok() {
                    break true;
                }
                if child.try_wait().expect("polling git daemon").is_some() {
                    break false; // it exited: the port was taken
                }
                if started.elapsed() > Duration::from_secs(5) {
                    break false;
                }
                std::thread::sleep(Duration::from_millis(20));
            };
            if ready {
                return Origin {
                    _tmp: tmp,
                    root,
                    bare,
                    url: format!("git://127.0.0.1:{port}/proj.git"),
                    daemon: Some(child),
                };
            }
            let _ = child.kill();
            let _ = child.wait();
        }
        panic!("git daemon did not start (logs in {})", root.display());
    }

    /// A bare repository that clones reach by its filesystem path.
    pub fn path() -> Origin {
        let (tmp, root, bare) = Origin::bare_only();
        let url = bare.to_str().expect("UTF-8 path").to_owned();
        Origin {
            _tmp: tmp,
            root,
            bare,
            url,
            daemon: None,
        }
    }

    /// Stops the daemon: the remote becomes unreachable.
    pub fn kill_daemon(&mut self) {
        if let Some(mut c) = self.daemon.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// `git --git-dir <bare> args`.
    #[track_caller]
    pub fn git(&self, args: &[&str]) -> String {
        let mut full = vec!["--git-dir", self.bare.to_str().expect("UTF-8 path")];
        full.extend_from_slice(args);
        git(&self.root, &full)
    }

    /// The remote's tip of `refs/mara/<run>`.
    #[track_caller]
    pub fn tip(&self, run: &str) -> String {
        self.git(&["rev-parse", &format!("refs/mara/{run}")])
            .trim()
            .to_owned()
    }

    /// The remote's subjects of the run, newest first.
    #[track_caller]
    pub fn subjects(&self, run: &str) -> Vec<String> {
        self.git(&["log", "--format=%s", &format!("refs/mara/{run}")])
            .lines()
            .map(str::to_owned)
            .collect()
    }

    #[track_caller]
    pub fn count(&self, run: &str, prefix: &str) -> usize {
        self.subjects(run)
            .iter()
            .filter(|s| s.starts_with(prefix))
            .count()
    }

    /// A new clone: a plain `git init -q` repository with `origin` pointing here.
    pub fn clone_repo(&self, name: &str) -> TestRepo {
        let (tmp, root) = scratch("mara-it-clone-");
        let dir = root.join(name);
        let home = root.join("home");
        std::fs::create_dir_all(&dir).expect("creating the clone's directory");
        std::fs::create_dir_all(&home).expect("creating HOME");
        git(&dir, &["init", "-q"]);
        git(&dir, &["remote", "add", "origin", &self.url]);
        TestRepo { tmp, dir, home }
    }
}

impl Drop for Origin {
    fn drop(&mut self) {
        self.kill_daemon();
    }
}
