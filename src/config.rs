//! The seed's run configuration (`mara.json`), accepted as the seed writes it.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::{anyhow, bail, Context, Result};
use serde::Deserialize;

use crate::board::{LockMode, OnStall, RunConfig, DEFAULT_CLAIM_TIMEOUT_SEC, MAX_HANDOFFS};
use crate::ids::{InstanceId, RunId};

/// Parses JSON into `T`; the error names `what` (the file), the key path
/// (`roles[1].instances`) and serde's reason with line and column.
pub fn parse_json<T: serde::de::DeserializeOwned>(text: &str, what: &str) -> Result<T> {
    // serde_json would only say "expected value at line 1 column 1".
    if text.starts_with('\u{feff}') {
        bail!("{what} starts with a byte order mark (U+FEFF); save it as UTF-8 without a BOM");
    }
    let mut de = serde_json::Deserializer::from_str(text);
    let value = serde_path_to_error::deserialize(&mut de).map_err(|e| {
        let path = e.path().to_string();
        if path == "." || path.is_empty() {
            anyhow!("{what}: {}", e.inner())
        } else {
            anyhow!("{what}: {path}: {}", e.inner())
        }
    })?;
    de.end().map_err(|e| anyhow!("{what}: {e}"))?;
    Ok(value)
}

/// Like [`parse_json`], from an already parsed value.
pub fn from_value<T: serde::de::DeserializeOwned>(v: serde_json::Value, what: &str) -> Result<T> {
    serde_path_to_error::deserialize(v).map_err(|e| {
        let path = e.path().to_string();
        if path == "." || path.is_empty() {
            anyhow!("{what}: {}", e.inner())
        } else {
            anyhow!("{what}: {path}: {}", e.inner())
        }
    })
}

/// The whole file: roles, coordination settings, output naming.
#[derive(Deserialize, Debug, Clone, Default)]
#[serde(deny_unknown_fields)]
pub struct SeedConfig {
    #[serde(default)]
    pub roles: Vec<RoleRef>,
    #[serde(default)]
    pub coordination: Coordination,
    #[serde(default)]
    pub outputs: Option<Outputs>,
    #[serde(default)]
    pub integration: Option<IntegrationCfg>,
}

/// The `integration` block.
#[derive(Deserialize, Debug, Clone, Default)]
#[serde(deny_unknown_fields)]
pub struct IntegrationCfg {
    /// The role that gets a task for each conflict the integrator leaves (default
    /// `integrator`).
    pub resolver_role: Option<String>,
}

/// One role of the run: `{ "id": "implementer", "file": "roles/implementer.json", "instances": 2 }`.
#[derive(Deserialize, Debug, Clone)]
#[serde(deny_unknown_fields)]
pub struct RoleRef {
    pub id: String,
    pub file: String,
    pub instances: u32,
}

/// The `coordination` block.
#[derive(Deserialize, Debug, Clone, Default)]
#[serde(deny_unknown_fields)]
pub struct Coordination {
    /// Where `mara export` writes the board (the seed's path, `<run_id>` filled in).
    pub task_board: Option<String>,
    /// Where `mara export` writes the channel.
    pub channel: Option<String>,
    pub lock_mode: Option<LockMode>,
    pub claim_timeout_sec: Option<u64>,
    /// The git remote whose ref is the lock when `lock_mode` is `remote`.
    pub remote: Option<String>,
    /// Time limit of every instance, unless its role file sets `timeout_sec`.
    pub instance_timeout_sec: Option<u64>,
    /// How far an event's time may run ahead of a writer's clock (default 300).
    pub max_clock_skew_sec: Option<u64>,
    /// The role that reviews done tasks (a review step); none by default.
    pub review_role: Option<String>,
    /// Longest pause between fetches of a waiting command in remote mode (default 2).
    pub poll_sec: Option<u64>,
    /// Seconds without a claim, done, review or integration, while instances are
    /// live, that make the run stalled (default 600).
    pub stall_after_sec: Option<u64>,
    /// What `mara run` does on a stall: `"warn"` (default), `"notify <role>"`,
    /// `"stop"`.
    pub on_stall: Option<OnStall>,
    /// How often a task may be released or reclaimed before it is flagged
    /// (default 5).
    pub max_handoffs: Option<u32>,
}

/// The `outputs` block.
#[derive(Deserialize, Debug, Clone)]
#[serde(deny_unknown_fields)]
pub struct Outputs {
    pub pattern: String,
}

/// Longest lease we accept: a week. Longer is almost surely a typo.
pub const MAX_CLAIM_TIMEOUT_SEC: u64 = crate::board::MAX_SECONDS;

pub use crate::board::seconds_in_range;

impl SeedConfig {
    /// Reads and checks a config file; errors name the file and the key.
    pub fn load(path: &Path) -> Result<SeedConfig> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("reading config {}", path.display()))?;
        let cfg: SeedConfig = parse_json(&text, &format!("config {}", path.display()))?;
        cfg.check()
            .map_err(|e| anyhow::anyhow!("config {}: {e}", path.display()))?;
        Ok(cfg)
    }

    fn check(&self) -> Result<()> {
        let c = &self.coordination;
        for (key, sec) in [
            ("claim_timeout_sec", c.claim_timeout_sec),
            ("max_clock_skew_sec", c.max_clock_skew_sec),
            ("instance_timeout_sec", c.instance_timeout_sec),
            ("poll_sec", c.poll_sec),
            ("stall_after_sec", c.stall_after_sec),
        ] {
            if let Some(t) = sec.filter(|t| !seconds_in_range(*t)) {
                bail!("coordination.{key} is {t}; use 1 to {MAX_CLAIM_TIMEOUT_SEC} seconds");
            }
        }
        if let Some(r) = &c.review_role {
            self.check_role_named(&format!("coordination.review_role is {r:?}"), r)
                .map_err(|e| anyhow!("{e} or drop the review step"))?;
        }
        if let Some(m) = c.max_handoffs.filter(|m| *m > MAX_HANDOFFS) {
            bail!("coordination.max_handoffs is {m}; use 0 to {MAX_HANDOFFS}");
        }
        if let Some(OnStall::Notify(r)) = &c.on_stall {
            self.check_role_named(&format!("coordination.on_stall notifies {r:?}"), r)?;
        }
        if let Some(r) = self
            .integration
            .as_ref()
            .and_then(|i| i.resolver_role.as_ref())
        {
            self.check_role_named(&format!("integration.resolver_role is {r:?}"), r)?;
        }
        if let Some(o) = &self.outputs {
            let p = &o.pattern;
            if p.trim().is_empty()
                || p.starts_with('/')
                || p.split('/').any(|c| c == ".." || c.is_empty())
                || p.chars().any(|c| c.is_control())
                || !p.contains("<role>")
                || !p.contains("<instance>")
            {
                bail!(
                    "outputs.pattern {p:?} must be a relative file name with <role> and <instance>, like \"<role>_<instance>.md\""
                );
            }
        }
        if self.coordination.lock_mode == Some(LockMode::Remote)
            && self.coordination.remote.is_none()
        {
            bail!("coordination.lock_mode is \"remote\" but coordination.remote names no remote; add \"remote\": \"origin\"");
        }
        Ok(())
    }

    /// A role a key names must be one of the config's roles, when it lists any.
    fn check_role_named(&self, what: &str, role: &str) -> Result<()> {
        if !self.roles.is_empty() && !self.roles.iter().any(|x| x.id == role) {
            bail!(
                "{what}, which is none of the config's roles ({}); name one of them",
                self.roles
                    .iter()
                    .map(|x| x.id.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            );
        }
        Ok(())
    }

    /// The names of the config's roles, when it has any (stored with the run, so
    /// the board knows which roles exist).
    pub fn role_names(&self) -> Option<Vec<String>> {
        (!self.roles.is_empty()).then(|| self.roles.iter().map(|r| r.id.clone()).collect())
    }

    /// The lease length this config asks for.
    pub fn claim_timeout_sec(&self) -> u64 {
        self.coordination
            .claim_timeout_sec
            .unwrap_or(DEFAULT_CLAIM_TIMEOUT_SEC)
    }

    /// The settings a new run stores from this config (`init` and `run`), with
    /// what the command line chose for the lease and the lock.
    pub fn run_config(
        &self,
        run: RunId,
        claim_timeout_sec: u64,
        lock_mode: LockMode,
        remote: Option<String>,
    ) -> RunConfig {
        RunConfig {
            lock_mode,
            remote,
            outputs_pattern: self.outputs.as_ref().map(|o| o.pattern.clone()),
            max_clock_skew_sec: self.coordination.max_clock_skew_sec,
            review_role: self.coordination.review_role.clone(),
            poll_sec: self.coordination.poll_sec,
            roles: self.role_names(),
            stall_after_sec: self.coordination.stall_after_sec,
            on_stall: self.coordination.on_stall.clone(),
            max_handoffs: self.coordination.max_handoffs,
            resolver_role: self
                .integration
                .as_ref()
                .and_then(|i| i.resolver_role.clone()),
            ..RunConfig::new(run, claim_timeout_sec)
        }
    }
}

/// Most instances of one role we start.
pub const MAX_INSTANCES: u32 = 32;

/// How to start an instance of a role: `roles/<role>.json`.
#[derive(Deserialize, Debug, Clone)]
#[serde(deny_unknown_fields)]
pub struct RoleFile {
    /// argv; placeholders: `{prompt}`, `{prompt_file}`, `{instance}`, `{role}`,
    /// `{n}`, `{run}`, `{worktree}`, `{branch}`, `{config_dir}`.
    pub command: Vec<String>,
    /// What the instance is told to do (placeholders as in `command`).
    #[serde(default)]
    pub prompt: String,
    /// Extra environment (placeholders as in `command`).
    #[serde(default)]
    pub env: BTreeMap<String, String>,
    /// Roles whose instances must all have ended before this role starts.
    #[serde(default)]
    pub after: Vec<String>,
    /// Time limit of each instance, in seconds.
    #[serde(default)]
    pub timeout_sec: Option<u64>,
}

/// A role of a run, checked and with its role file read.
#[derive(Debug, Clone)]
pub struct Role {
    pub id: String,
    pub instances: u32,
    pub file: PathBuf,
    pub spec: RoleFile,
}

impl Role {
    /// The ids of its instances: `<role>#1` ... `<role>#<instances>`.
    pub fn instance_ids(&self) -> Vec<InstanceId> {
        (1..=self.instances)
            .map(|n| InstanceId::new(&self.id, n).expect("role ids are checked at load"))
            .collect()
    }
}

impl SeedConfig {
    /// Reads and checks every role file, relative to `base` (the config's folder).
    /// Errors name the config, the key and the role file.
    pub fn load_roles(&self, config_path: &Path) -> Result<Vec<Role>> {
        let base = config_path.parent().unwrap_or(Path::new("."));
        let cfg = config_path.display();
        if self.roles.is_empty() {
            bail!("config {cfg}: roles is empty; list at least one role");
        }
        let mut roles: Vec<Role> = vec![];
        for (i, r) in self.roles.iter().enumerate() {
            InstanceId::new(&r.id, 1).map_err(|_| {
                anyhow!(
                    "config {cfg}: roles[{i}].id {:?} is not a role name (lower-case letters, digits, '-', '_')",
                    r.id
                )
            })?;
            if roles.iter().any(|o| o.id == r.id) {
                bail!("config {cfg}: roles[{i}].id {:?} is listed twice", r.id);
            }
            if r.instances == 0 || r.instances > MAX_INSTANCES {
                bail!(
                    "config {cfg}: roles[{i}].instances is {}; use 1 to {MAX_INSTANCES}",
                    r.instances
                );
            }
            let file = base.join(&r.file);
            let text = std::fs::read_to_string(&file)
                .map_err(|e| anyhow!("config {cfg}: roles[{i}].file {}: {e}", file.display()))?;
            let spec: RoleFile = parse_json(&text, &format!("role file {}", file.display()))?;
            if spec.command.is_empty() || spec.command[0].trim().is_empty() {
                bail!(
                    "role file {}: command is empty; give the argv to start an instance",
                    file.display()
                );
            }
            if let Some(t) = spec.timeout_sec.filter(|t| !seconds_in_range(*t)) {
                bail!(
                    "role file {}: timeout_sec is {t}; use 1 to {MAX_CLAIM_TIMEOUT_SEC}",
                    file.display()
                );
            }
            for k in spec.env.keys() {
                if k.is_empty() || k.contains('=') || k.contains('\0') || k.starts_with("MARA_") {
                    bail!(
                        "role file {}: env key {k:?} is not allowed (MARA_* are set by mara)",
                        file.display()
                    );
                }
            }
            roles.push(Role {
                id: r.id.clone(),
                instances: r.instances,
                file,
                spec,
            });
        }
        for r in &roles {
            for a in &r.spec.after {
                if !roles.iter().any(|o| &o.id == a) {
                    bail!(
                        "role file {}: after names {a:?}, which is not a role of {cfg}",
                        r.file.display()
                    );
                }
            }
        }
        // `after` must not loop: repeatedly take the roles whose predecessors are taken.
        let mut done: Vec<&str> = vec![];
        while done.len() < roles.len() {
            let before = done.len();
            for r in &roles {
                if !done.contains(&r.id.as_str())
                    && r.spec.after.iter().all(|a| done.contains(&a.as_str()))
                {
                    done.push(&r.id);
                }
            }
            if done.len() == before {
                bail!("config {cfg}: the roles' `after` lists wait for each other in a cycle");
            }
        }
        Ok(roles)
    }

    /// The time limit of an instance of `role`, if any.
    pub fn instance_timeout(&self, role: &Role) -> Option<u64> {
        role.spec
            .timeout_sec
            .or(self.coordination.instance_timeout_sec)
    }
}
