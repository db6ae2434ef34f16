//! Workflows (MetaDefender's rules) and the per-file pipeline: scanners run concurrently, their
//! verdicts combine into one result by [`crate::verdict::PRIORITY`], the workflow decides
//! whether that result blocks the file, then post actions run in order. Progress reaches 100
//! only at the very end, in `process_info` and `scan_results` together.

mod pipeline;

use std::sync::Arc;

use chrono::{DateTime, Utc};

use crate::config::WorkflowSpec;
use crate::executor::Plugin;

pub use pipeline::{CancelToken, run};

/// A workflow with its plugins loaded.
#[derive(Debug)]
pub struct Workflow {
    /// Its definition.
    pub spec: WorkflowSpec,
    /// Its scanners, in definition order.
    pub scanners: Vec<Arc<Plugin>>,
    /// Its post actions, in the order they run.
    pub post_actions: Vec<Arc<Plugin>>,
}

/// Who submitted a file, and how: what the result reports besides the scan itself.
#[derive(Debug, Clone)]
pub struct Submission {
    /// The result's id: 32 lowercase hex characters.
    pub data_id: String,
    /// The name the client gave the file.
    pub display_name: String,
    /// The client's `user_agent` header.
    pub user_agent: String,
    /// Who submitted it.
    pub username: String,
    /// The `metadata` header, parsed; given to every plugin.
    pub metadata: Option<serde_json::Value>,
    /// When the file was received.
    pub received: DateTime<Utc>,
}

impl Submission {
    /// A new id: a random UUID as 32 lowercase hex characters.
    pub fn new_data_id() -> String {
        uuid::Uuid::new_v4().simple().to_string()
    }
}
