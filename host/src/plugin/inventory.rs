//! The inventory: every plugin loaded and ready, and every workflow resolved to its plugins.
//!
//! An inventory is immutable. A change (a new configuration, a plugin added over the API)
//! builds a new one; a scan holds the `Arc<Workflow>` it started with, so scans in flight
//! finish with the plugins they started with.

use std::collections::BTreeMap;
use std::sync::Arc;

use crate::config::Config;
use crate::executor::{Executor, LoadError, Plugin};
use crate::plugin::PluginName;
use crate::workflow::Workflow;

/// Plugins and workflows, ready to scan.
#[derive(Debug, Clone)]
pub struct Inventory {
    plugins: BTreeMap<PluginName, Arc<Plugin>>,
    workflows: BTreeMap<String, Arc<Workflow>>,
    default_workflow: String,
}

/// Plugins that could not be loaded: every one, each with its reason.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{} plugin{} could not be loaded:{}", .0.len(), if .0.len() == 1 { "" } else { "s" },
        .0.iter().map(|e| format!("\n  - {e}")).collect::<String>())]
pub struct InventoryError(pub Vec<LoadError>);

impl Inventory {
    /// Load every plugin of `config` (compile, link, resolve) and resolve the workflows.
    /// Plugins already loaded in `reuse` with an identical definition are kept as they are.
    pub fn load(
        config: &Config,
        executor: &Executor,
        reuse: Option<&Inventory>,
    ) -> Result<Inventory, InventoryError> {
        let mut plugins = BTreeMap::new();
        let mut errors = Vec::new();
        for spec in &config.plugins {
            let kept = reuse
                .and_then(|inv| inv.plugins.get(&spec.name))
                .filter(|p| p.spec() == spec);
            if let Some(plugin) = kept {
                plugins.insert(spec.name.clone(), plugin.clone());
                continue;
            }
            match executor.prepare(spec.clone()) {
                Ok(plugin) => {
                    tracing::info!(
                        plugin = %spec.name,
                        role = %spec.role,
                        runtime = %spec.runtime.kind(),
                        load_us = plugin.info().load_micros,
                        from_cache = plugin.info().from_cache,
                        "plugin loaded"
                    );
                    plugins.insert(spec.name.clone(), Arc::new(plugin));
                }
                Err(e) => errors.push(e),
            }
        }
        if !errors.is_empty() {
            return Err(InventoryError(errors));
        }
        let workflows = config
            .workflows
            .iter()
            .map(|spec| {
                let resolve = |names: &[PluginName]| {
                    names.iter().map(|n| plugins[n].clone()).collect::<Vec<_>>()
                };
                let workflow = Workflow {
                    scanners: resolve(&spec.scanners),
                    post_actions: resolve(&spec.post_actions),
                    spec: spec.clone(),
                };
                (spec.name.clone(), Arc::new(workflow))
            })
            .collect();
        Ok(Inventory {
            plugins,
            workflows,
            default_workflow: config.default_workflow.clone(),
        })
    }

    /// The workflow named `name`, or the default one when `name` is `None`.
    pub fn workflow(&self, name: Option<&str>) -> Option<Arc<Workflow>> {
        self.workflows
            .get(name.unwrap_or(&self.default_workflow))
            .cloned()
    }

    /// The default workflow's name.
    pub fn default_workflow(&self) -> &str {
        &self.default_workflow
    }

    /// Every workflow, by name.
    pub fn workflows(&self) -> impl Iterator<Item = &Arc<Workflow>> {
        self.workflows.values()
    }

    /// Every plugin, by name.
    pub fn plugins(&self) -> impl Iterator<Item = &Arc<Plugin>> {
        self.plugins.values()
    }

    /// What the workflows cannot do as configured, for the log (see
    /// [`WorkflowSpec::post_action_warnings`](crate::config::WorkflowSpec::post_action_warnings)).
    pub fn warnings(&self) -> Vec<String> {
        self.workflows()
            .flat_map(|w| {
                w.spec
                    .post_action_warnings(w.post_actions.iter().map(|p| p.spec()))
            })
            .collect()
    }

    /// The plugin named `name`.
    pub fn plugin(&self, name: &str) -> Option<&Arc<Plugin>> {
        PluginName::new(name)
            .ok()
            .and_then(|n| self.plugins.get(&n))
    }
}
