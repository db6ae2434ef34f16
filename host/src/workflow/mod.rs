//! Workflows (MetaDefender's rules) and the per-file pipeline: scanners run concurrently, their
//! verdicts combine into one result by [`crate::verdict::PRIORITY`], the workflow decides
//! whether that result blocks the file, then post actions run in order. Progress reaches 100
//! only at the very end, in `process_info` and `scan_results` together.

mod pipeline;

use std::sync::Arc;

use chrono::{DateTime, Utc};

use crate::config::WorkflowSpec;
use crate::executor::Plugin;

pub use pipeline::{CancelToken, RERUN_PAUSES, run};

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
    /// A new id: a version 7 UUID as 32 lowercase hex characters. Its first 48 bits are the
    /// time in milliseconds and the rest a counter and random bits, so ids sort by creation
    /// and each new job's rows go to the right edge of the database's id indexes instead of
    /// a random page of each (fewer pages written per file). Clients treat the id as opaque;
    /// who may read a job is decided by its owner, not by the id being hard to guess.
    pub fn new_data_id() -> String {
        uuid::Uuid::now_v7().simple().to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn data_ids_are_32_lowercase_hex_digits_in_the_order_they_were_made() {
        let ids: Vec<String> = (0..1000).map(|_| Submission::new_data_id()).collect();
        for id in &ids {
            assert_eq!(id.len(), 32, "{id}");
            assert!(
                id.bytes()
                    .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)),
                "{id}"
            );
        }
        let mut sorted = ids.clone();
        sorted.sort();
        sorted.dedup();
        assert_eq!(sorted, ids, "ids are distinct and sort in creation order");
    }
}
