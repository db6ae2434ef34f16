//! The inventory at run time: the configuration file's plugins and workflows, plus the
//! changes admins made over the API.
//!
//! Guarantees:
//! - a change is validated with the rules of the configuration file
//!   ([`config::plugin_from_table`], [`config::workflow_from_table`]), every workflow's
//!   references are checked again, and every plugin is loaded, **before** anything changes;
//!   a refused change changes nothing;
//! - an accepted change is recorded in the database, then the new inventory replaces the old
//!   one in one atomic swap: new submissions use it, scans in flight keep the `Arc<Workflow>`
//!   (and so the plugins) they started with;
//! - at start-up the recorded changes are replayed, in order, on top of the configuration
//!   file; a change that no longer applies (the file changed meanwhile) is skipped with an
//!   error in the log, and the server starts with the rest;
//! - changes are serialized: two admins cannot interleave theirs.
//!
//! In an API definition, `module = "sha256:<hex>"` names a module uploaded with
//! `POST /admin/modules` (stored as `<data_dir>/modules/<hex>.wasm`); relative paths start
//! at the data directory.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};

use chrono::{DateTime, Utc};

use super::error::ApiError;
use crate::config::{self, Config, LoadContext};
use crate::executor::Executor;
use crate::plugin::Role;
use crate::plugin::inventory::{Inventory, InventoryError};
use crate::store::{InventoryChange, Store};

/// What a change is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Kind {
    /// A plugin.
    Plugin,
    /// A workflow.
    Workflow,
}

impl Kind {
    /// `plugin` or `workflow`.
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Plugin => "plugin",
            Kind::Workflow => "workflow",
        }
    }

    fn parse(s: &str) -> Option<Kind> {
        match s {
            "plugin" => Some(Kind::Plugin),
            "workflow" => Some(Kind::Workflow),
            _ => None,
        }
    }
}

/// One change: a definition put (added or replaced) or removed.
#[derive(Debug, Clone)]
pub struct Change {
    /// Plugin or workflow.
    pub kind: Kind,
    /// Its name.
    pub name: String,
    /// The new definition (a JSON object with the fields of a `[[plugin]]` or `[[workflow]]`
    /// table); `None` removes it.
    pub definition: Option<serde_json::Value>,
}

/// The inventory in force.
#[derive(Debug, Clone)]
pub struct Current {
    /// The configuration it was loaded from (file plus changes).
    pub config: Config,
    /// Plugins loaded, workflows resolved.
    pub inventory: Inventory,
    /// Definitions that came from the API, as sent, by kind and name.
    pub api_defined: BTreeMap<(Kind, String), serde_json::Value>,
    /// When this inventory was put in force.
    pub loaded_at: DateTime<Utc>,
}

/// The inventory in force and the means to change it.
pub struct LiveInventory {
    current: RwLock<Arc<Current>>,
    changing: tokio::sync::Mutex<()>,
    ctx: LoadContext,
    modules_dir: PathBuf,
    executor: Executor,
}

/// Why a change was refused.
#[derive(Debug)]
enum Refusal {
    Invalid(Vec<String>),
    NotFound(String),
    Conflict(String),
}

impl From<Refusal> for ApiError {
    fn from(r: Refusal) -> ApiError {
        match r {
            Refusal::Invalid(problems) => ApiError::bad_request(problems.join("; ")),
            Refusal::NotFound(m) => ApiError::not_found(m),
            Refusal::Conflict(m) => ApiError::conflict(m),
        }
    }
}

impl std::fmt::Display for Refusal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Refusal::Invalid(p) => f.write_str(&p.join("; ")),
            Refusal::NotFound(m) | Refusal::Conflict(m) => f.write_str(m),
        }
    }
}

/// Where uploaded modules live: `<data_dir>/modules`.
pub fn modules_dir(data_dir: &Path) -> PathBuf {
    data_dir.join("modules")
}

impl LiveInventory {
    /// Start from the configuration file (`config`, already loaded as `inventory`) and replay
    /// the recorded changes. Blocking: compiles modules; call it on a blocking thread.
    pub fn start(
        config: Config,
        inventory: Inventory,
        changes: Vec<InventoryChange>,
        executor: Executor,
        ctx: LoadContext,
        modules_dir: PathBuf,
    ) -> Result<LiveInventory, InventoryError> {
        let mut config_now = config;
        let mut api_defined = BTreeMap::new();
        for change in changes {
            let Some(kind) = Kind::parse(&change.kind) else {
                tracing::error!(seq = change.seq, kind = %change.kind, "unknown inventory change; skipped");
                continue;
            };
            let c = Change {
                kind,
                name: change.name.clone(),
                definition: change.definition,
            };
            match apply(&config_now, &c, &ctx, &modules_dir) {
                Ok(next) => {
                    if kind == Kind::Plugin
                        && let Some(spec) = next.plugins.iter().find(|p| p.name.as_str() == c.name)
                        && let Err(e) = executor.prepare(spec.clone())
                    {
                        tracing::error!(seq = change.seq, error = %e, "a plugin changed over the API no longer loads; change skipped");
                        continue;
                    }
                    config_now = next;
                    match c.definition {
                        Some(d) => api_defined.insert((kind, c.name), d),
                        None => api_defined.remove(&(kind, c.name)),
                    };
                }
                Err(e) => tracing::error!(
                    seq = change.seq,
                    kind = kind.as_str(),
                    name = %change.name,
                    problem = %e,
                    "an inventory change made over the API no longer applies; skipped"
                ),
            }
        }
        let inventory = Inventory::load(&config_now, &executor, Some(&inventory))?;
        Ok(LiveInventory {
            current: RwLock::new(Arc::new(Current {
                config: config_now,
                inventory,
                api_defined,
                loaded_at: Utc::now(),
            })),
            changing: tokio::sync::Mutex::new(()),
            ctx,
            modules_dir,
            executor,
        })
    }

    /// The inventory in force.
    pub fn current(&self) -> Arc<Current> {
        self.current
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Where uploaded modules are stored.
    pub fn modules_dir(&self) -> &Path {
        &self.modules_dir
    }

    /// Validate, load, record and put in force one change. `by` is recorded with it.
    pub async fn change(
        &self,
        store: &Store,
        change: Change,
        by: &str,
    ) -> Result<Arc<Current>, ApiError> {
        let _serialized = self.changing.lock().await;
        let current = self.current();
        let next_config = apply(&current.config, &change, &self.ctx, &self.modules_dir)?;
        let executor = self.executor.clone();
        let old = current.clone();
        let loaded = {
            let next_config = next_config.clone();
            tokio::task::spawn_blocking(move || {
                Inventory::load(&next_config, &executor, Some(&old.inventory))
            })
            .await
            .expect("loading plugins does not panic")
        };
        let inventory = loaded.map_err(|e| ApiError::bad_request(one_line(&e.to_string())))?;
        store
            .append_inventory_change(
                change.kind.as_str(),
                &change.name,
                change.definition.clone(),
                by,
            )
            .await?;
        let removed = change.definition.is_none();
        let mut api_defined = current.api_defined.clone();
        match change.definition {
            Some(d) => api_defined.insert((change.kind, change.name.clone()), d),
            None => api_defined.remove(&(change.kind, change.name.clone())),
        };
        let next = Arc::new(Current {
            config: next_config,
            inventory,
            api_defined,
            loaded_at: Utc::now(),
        });
        *self.current.write().unwrap_or_else(|p| p.into_inner()) = next.clone();
        tracing::info!(
            kind = change.kind.as_str(),
            name = %change.name,
            by,
            removed,
            "inventory changed"
        );
        Ok(next)
    }
}

fn one_line(s: &str) -> String {
    s.split('\n')
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect::<Vec<_>>()
        .join(" ")
}

/// JSON object → TOML table, refusing `null` (leave the field out instead).
fn to_table(value: &serde_json::Value) -> Result<toml::Table, Vec<String>> {
    fn convert(path: &str, v: &serde_json::Value) -> Result<toml::Value, String> {
        use serde_json::Value as J;
        Ok(match v {
            J::Null => {
                return Err(format!(
                    "field `{path}`: null is not allowed; leave the field out"
                ));
            }
            J::Bool(b) => toml::Value::Boolean(*b),
            J::Number(n) => match n.as_i64() {
                Some(i) => toml::Value::Integer(i),
                None => match n.as_f64() {
                    Some(f) => toml::Value::Float(f),
                    None => return Err(format!("field `{path}`: number out of range")),
                },
            },
            J::String(s) => toml::Value::String(s.clone()),
            J::Array(a) => toml::Value::Array(
                a.iter()
                    .map(|x| convert(path, x))
                    .collect::<Result<_, _>>()?,
            ),
            J::Object(o) => {
                let mut t = toml::Table::new();
                for (k, x) in o {
                    t.insert(k.clone(), convert(&format!("{path}.{k}"), x)?);
                }
                toml::Value::Table(t)
            }
        })
    }
    match convert("", value) {
        Ok(toml::Value::Table(t)) => Ok(t),
        Ok(_) => Err(vec!["the body must be a JSON object".into()]),
        Err(e) => Err(vec![e.replace("field `.", "field `")]),
    }
}

/// `module = "sha256:<hex>"` → the uploaded module's path.
fn resolve_module(table: &mut toml::Table, modules_dir: &Path) -> Result<(), Vec<String>> {
    let Some(toml::Value::String(module)) = table.get("module") else {
        return Ok(());
    };
    let Some(hex) = module.strip_prefix("sha256:") else {
        return Ok(());
    };
    let hex = hex.to_ascii_lowercase();
    if hex.len() != 64 || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(vec![format!(
            "field `module`: {module:?}: after sha256: give the 64 hex digits that POST /admin/modules answered"
        )]);
    }
    let path = modules_dir.join(format!("{hex}.wasm"));
    if !path.is_file() {
        return Err(vec![format!(
            "field `module`: no uploaded module has sha256 {hex}; upload it with POST /admin/modules first"
        )]);
    }
    table.insert(
        "module".into(),
        toml::Value::String(path.display().to_string()),
    );
    Ok(())
}

/// Problems with workflows' references to plugins (missing, or of the wrong role).
fn reference_problems(config: &Config) -> Vec<String> {
    let mut problems = Vec::new();
    for w in &config.workflows {
        for (list, role) in [
            (&w.scanners, Role::Scanner),
            (&w.post_actions, Role::PostAction),
        ] {
            for name in list {
                match config.plugins.iter().find(|p| &p.name == name) {
                    None => problems.push(format!(
                        "workflow {:?} uses plugin {:?}; change or remove the workflow first",
                        w.name,
                        name.as_str()
                    )),
                    Some(p) if p.role != role => problems.push(format!(
                        "workflow {:?} uses {:?} as a {role}, but it would be a {}",
                        w.name,
                        name.as_str(),
                        p.role
                    )),
                    Some(_) => {}
                }
            }
        }
    }
    problems
}

/// `config` with `change` applied and checked.
fn apply(
    config: &Config,
    change: &Change,
    ctx: &LoadContext,
    modules_dir: &Path,
) -> Result<Config, Refusal> {
    let mut next = config.clone();
    match (&change.definition, change.kind) {
        (Some(definition), kind) => {
            let mut table = to_table(definition).map_err(Refusal::Invalid)?;
            match table.get("name") {
                None => {
                    table.insert("name".into(), toml::Value::String(change.name.clone()));
                }
                Some(toml::Value::String(n)) if *n == change.name => {}
                Some(_) => {
                    return Err(Refusal::Invalid(vec![format!(
                        "field `name`: must be {:?}, the name in the URL (or left out)",
                        change.name
                    )]));
                }
            }
            if kind == Kind::Plugin {
                resolve_module(&mut table, modules_dir).map_err(Refusal::Invalid)?;
                let spec = config::plugin_from_table(table, ctx).map_err(Refusal::Invalid)?;
                match next.plugins.iter_mut().find(|p| p.name == spec.name) {
                    Some(p) => *p = spec,
                    None => next.plugins.push(spec),
                }
                let problems = reference_problems(&next);
                if !problems.is_empty() {
                    return Err(Refusal::Conflict(problems.join("; ")));
                }
            } else {
                let spec =
                    config::workflow_from_table(table, &next.plugins).map_err(Refusal::Invalid)?;
                match next.workflows.iter_mut().find(|w| w.name == spec.name) {
                    Some(w) => *w = spec,
                    None => next.workflows.push(spec),
                }
            }
        }
        (None, Kind::Plugin) => {
            let before = next.plugins.len();
            next.plugins.retain(|p| p.name.as_str() != change.name);
            if next.plugins.len() == before {
                return Err(Refusal::NotFound(format!(
                    "no plugin is named {:?}",
                    change.name
                )));
            }
            let problems = reference_problems(&next);
            if !problems.is_empty() {
                return Err(Refusal::Conflict(problems.join("; ")));
            }
        }
        (None, Kind::Workflow) => {
            if !next.workflows.iter().any(|w| w.name == change.name) {
                return Err(Refusal::NotFound(format!(
                    "no workflow is named {:?}",
                    change.name
                )));
            }
            if next.default_workflow == change.name {
                return Err(Refusal::Conflict(format!(
                    "{:?} is the default workflow; it cannot be removed",
                    change.name
                )));
            }
            next.workflows.retain(|w| w.name != change.name);
        }
    }
    Ok(next)
}
