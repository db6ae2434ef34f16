//! The host: configuration, executor and inventory put together, and a scan of one file from
//! start to result. The CLI and the server are thin layers over this.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use chrono::Utc;
use tracing::Instrument;

use crate::builtin;
use crate::config::{self, Config, ConfigError, LoadContext};
use crate::executor::{Executor, ExecutorConfig, ExecutorError};
use crate::fileinfo;
use crate::plugin::inventory::{Inventory, InventoryError};
use crate::result::ScanResult;
use crate::sample::Sample;
use crate::workflow::{self, CancelToken, Submission, Workflow};

/// Why the host could not start.
#[derive(Debug, thiserror::Error)]
pub enum HostError {
    /// The configuration was refused.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// A plugin could not be loaded.
    #[error(transparent)]
    Inventory(#[from] InventoryError),
    /// The executor could not start.
    #[error(transparent)]
    Executor(#[from] ExecutorError),
    /// The data directory could not be prepared.
    #[error("data directory {path}: {source}")]
    DataDir {
        /// The directory.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
}

/// Why a file could not be scanned at all (as opposed to a plugin failing, which is a result).
#[derive(Debug, thiserror::Error)]
pub enum ScanError {
    /// No workflow has that name.
    #[error("no workflow is named {0:?}; `cordon config show` lists them")]
    UnknownWorkflow(String),
    /// The file is larger than the workflow allows.
    #[error("the file is {size} bytes; workflow {workflow:?} accepts at most {max} bytes")]
    TooLarge {
        /// The file's size.
        size: u64,
        /// The workflow's `max_file_size_bytes`.
        max: u64,
        /// The workflow.
        workflow: String,
    },
    /// The file could not be read or copied.
    #[error("cannot read {path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
}

/// Where Cordon keeps its data when not told: `$CORDON_DATA_DIR`, else
/// `$XDG_DATA_HOME/cordon`, else `~/.local/share/cordon`, else `./cordon-data`.
pub fn default_data_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("CORDON_DATA_DIR") {
        return PathBuf::from(dir);
    }
    if let Some(dir) = std::env::var_os("XDG_DATA_HOME") {
        return PathBuf::from(dir).join("cordon");
    }
    if let Some(home) = std::env::var_os("HOME") {
        return PathBuf::from(home).join(".local/share/cordon");
    }
    PathBuf::from("cordon-data")
}

/// Configuration, executor and loaded plugins.
pub struct Host {
    /// Runs plugins.
    pub executor: Executor,
    /// The loaded plugins and workflows.
    pub inventory: Inventory,
    /// The configuration the inventory was loaded from.
    pub config: Config,
    /// Cordon's data directory.
    pub data_dir: PathBuf,
}

impl Host {
    /// Load `config_path` (or the built-in default) with data under `data_dir`.
    pub fn load(config_path: Option<&Path>, data_dir: &Path) -> Result<Host, HostError> {
        let data_dir = std::path::absolute(data_dir).map_err(|source| HostError::DataDir {
            path: data_dir.to_owned(),
            source,
        })?;
        let scripts = data_dir.join("builtin");
        builtin::install_scripts(&scripts).map_err(|source| HostError::DataDir {
            path: scripts.clone(),
            source,
        })?;
        let config = match config_path {
            Some(path) => config::load_file(path, &data_dir, &scripts)?,
            None => config::parse(
                builtin::DEFAULT_CONFIG,
                "the built-in default configuration",
                &LoadContext {
                    base_dir: data_dir.clone(),
                    data_dir: data_dir.clone(),
                    builtin_scripts_dir: scripts,
                    config_file: None,
                },
            )?,
        };
        let executor = Executor::new(&ExecutorConfig::under(&data_dir))?;
        let inventory = Inventory::load(&config, &executor, None)?;
        Ok(Host {
            executor,
            inventory,
            config,
            data_dir,
        })
    }

    /// The workflow named `name`, or the default.
    pub fn workflow(&self, name: Option<&str>) -> Result<Arc<Workflow>, ScanError> {
        self.inventory.workflow(name).ok_or_else(|| {
            ScanError::UnknownWorkflow(name.unwrap_or(self.inventory.default_workflow()).to_owned())
        })
    }

    /// Scan the file at `path` (a copy of it: plugins never get the caller's own file).
    pub async fn scan_path(
        &self,
        path: &Path,
        workflow: Option<&str>,
        username: &str,
    ) -> Result<ScanResult, ScanError> {
        let received = Utc::now();
        let workflow = self.workflow(workflow)?;
        let io = |source| ScanError::Io {
            path: path.to_owned(),
            source,
        };
        let source = crate::sample::open_regular_file(path).map_err(io)?;
        let size = source.metadata().map_err(io)?.len();
        let max = workflow.spec.max_file_size_bytes;
        if size > max {
            return Err(ScanError::TooLarge {
                size,
                max,
                workflow: workflow.spec.name.clone(),
            });
        }
        let display_name = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_else(|| "sample".to_owned());
        let work = self.data_dir.join("work");
        let (sample, file) = {
            let name = display_name.clone();
            tokio::task::spawn_blocking(move || {
                let sample = Sample::copy_from(&source, &name, &work, max)?;
                let file = fileinfo::fingerprint(&sample.path())?;
                Ok::<_, std::io::Error>((sample, file))
            })
            .await
            .expect("fingerprinting does not panic")
            .map_err(io)?
        };
        let submission = Submission {
            data_id: Submission::new_data_id(),
            display_name,
            user_agent: "cordon-cli".to_owned(),
            username: username.to_owned(),
            metadata: None,
            received,
        };
        let span = tracing::info_span!("scan", data_id = %submission.data_id);
        Ok(workflow::run(
            &self.executor,
            &workflow,
            &sample,
            &file,
            &submission,
            &CancelToken::new(),
            &|_| {},
        )
        .instrument(span)
        .await)
    }
}
