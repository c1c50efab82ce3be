//! The seed's run configuration (`mara.json`), accepted as the seed writes it.

use std::path::Path;

use anyhow::{bail, Context, Result};
use serde::Deserialize;

use crate::board::{LockMode, DEFAULT_CLAIM_TIMEOUT_SEC};

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
}

/// The `outputs` block.
#[derive(Deserialize, Debug, Clone)]
#[serde(deny_unknown_fields)]
pub struct Outputs {
    pub pattern: String,
}

/// Longest lease we accept: a week. Longer is almost surely a typo.
pub const MAX_CLAIM_TIMEOUT_SEC: u64 = 7 * 24 * 3600;

impl SeedConfig {
    /// Reads and checks a config file; errors name the file and the key.
    pub fn load(path: &Path) -> Result<SeedConfig> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("reading config {}", path.display()))?;
        let cfg: SeedConfig = serde_json::from_str(&text)
            .map_err(|e| anyhow::anyhow!("config {}: {e}", path.display()))?;
        cfg.check()
            .map_err(|e| anyhow::anyhow!("config {}: {e}", path.display()))?;
        Ok(cfg)
    }

    fn check(&self) -> Result<()> {
        if let Some(t) = self.coordination.claim_timeout_sec {
            if t == 0 || t > MAX_CLAIM_TIMEOUT_SEC {
                bail!(
                    "coordination.claim_timeout_sec is {t}; use 1 to {MAX_CLAIM_TIMEOUT_SEC} seconds"
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

    /// The lease length this config asks for.
    pub fn claim_timeout_sec(&self) -> u64 {
        self.coordination
            .claim_timeout_sec
            .unwrap_or(DEFAULT_CLAIM_TIMEOUT_SEC)
    }
}
