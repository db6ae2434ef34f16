//! The MetaDefender-shaped result JSON (`metadefender-compat.md` section 5): what
//! `GET /file/{data_id}` answers, what `cordon scan` prints, and what plugins get on stdin.
//!
//! Every field that strict public clients require is always present; Cordon's own additions
//! (the `failure` of an engine or post action) are extra fields that tolerant parsers ignore.

use std::collections::BTreeMap;

use chrono::{DateTime, SecondsFormat, Utc};
use serde::{Deserialize, Serialize};

use crate::fileinfo::Fingerprint;
use crate::verdict::ResultCode;

/// `process_info.result` while the pipeline runs.
pub const PROCESSING: &str = "Processing";
/// `process_info.result` for a file the workflow lets through.
pub const ALLOWED: &str = "Allowed";
/// `process_info.result` for a file the workflow blocks.
pub const BLOCKED: &str = "Blocked";

/// The whole result of one file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ScanResult {
    /// 32 lowercase hex characters.
    pub data_id: String,
    /// What the file is.
    pub file_info: FileInfo,
    /// How the file was processed and the final decision.
    pub process_info: ProcessInfo,
    /// The engines' results.
    pub scan_results: ScanResults,
    /// Post actions that ran; present when the workflow has post actions.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub post_action: Option<PostActionSummary>,
    /// The submission's `metadata` header, passed to every plugin.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metadata: Option<serde_json::Value>,
}

/// `file_info`: all eight fields that strict clients require, always present.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FileInfo {
    /// The name the client gave (`filename` header), or the file's own name.
    pub display_name: String,
    /// Size in bytes.
    pub file_size: u64,
    /// MIME type detected from the content.
    pub file_type: String,
    /// A description of the type, for people.
    pub file_type_description: String,
    /// Lowercase hex.
    pub md5: String,
    /// Lowercase hex.
    pub sha1: String,
    /// Lowercase hex.
    pub sha256: String,
    /// When the file was received (ISO-8601 UTC with milliseconds).
    pub upload_timestamp: String,
}

impl FileInfo {
    /// The `file_info` of a file named `display_name`, received at `uploaded`.
    pub fn new(display_name: &str, file: &Fingerprint, uploaded: DateTime<Utc>) -> FileInfo {
        FileInfo {
            display_name: display_name.to_owned(),
            file_size: file.size,
            file_type: file.mime.clone(),
            file_type_description: file.description.clone(),
            md5: file.md5.clone(),
            sha1: file.sha1.clone(),
            sha256: file.sha256.clone(),
            upload_timestamp: iso_millis(uploaded),
        }
    }
}

/// `process_info`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ProcessInfo {
    /// `""` when allowed, else the overall result string (`"Infected"`...).
    pub blocked_reason: String,
    /// Every reason the file is blocked.
    pub blocked_reasons: Vec<String>,
    /// Always false: Cordon does not skip scanning by file type.
    pub file_type_skipped_scan: bool,
    /// The workflow (rule) name.
    pub profile: String,
    /// 0 to 100; 100 only when the whole pipeline, post actions included, is done.
    pub progress_percentage: u8,
    /// `Processing`, then `Allowed` or `Blocked`.
    pub result: String,
    /// The submitting client's `user_agent` header.
    pub user_agent: String,
    /// Who submitted the file.
    pub username: String,
    /// The distinct engine results, highest priority first.
    pub verdicts: Vec<String>,
    /// Milliseconds between upload and the start of processing.
    pub queue_time: i64,
    /// Milliseconds of processing; -1 until the pipeline is done.
    pub processing_time: i64,
    /// Post-processing summary: five strings, `""` when empty.
    pub post_processing: PostProcessing,
}

impl ProcessInfo {
    /// Decide the file: `result` `Blocked` with `overall` as the reason when `blocked`, else
    /// `Allowed` with no reason.
    pub fn decide(&mut self, overall: ResultCode, blocked: bool) {
        if blocked {
            self.result = BLOCKED.to_owned();
            self.blocked_reason = overall.as_str().to_owned();
            self.blocked_reasons = vec![overall.as_str().to_owned()];
        } else {
            self.result = ALLOWED.to_owned();
            self.blocked_reason.clear();
            self.blocked_reasons.clear();
        }
    }
}

/// `process_info.post_processing`: always present, all five strings (the Assemblyline client
/// crashes without it).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct PostProcessing {
    /// `"<name> failed"` entries joined with `" | "`.
    pub actions_failed: String,
    /// Names of post actions that succeeded, joined with `" | "`.
    pub actions_ran: String,
    /// Not used by Cordon: `""`.
    pub converted_destination: String,
    /// Not used by Cordon: `""`.
    pub converted_to: String,
    /// Not used by Cordon: `""`.
    pub copy_move_destination: String,
}

/// `scan_results`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ScanResults {
    /// Same as the top-level `data_id`.
    pub data_id: String,
    /// 0 to 100, together with `process_info.progress_percentage`.
    pub progress_percentage: u8,
    /// The overall result as a string.
    pub scan_all_result_a: String,
    /// The overall result code; 255 while in progress.
    pub scan_all_result_i: ResultCode,
    /// When scanning started (ISO-8601 UTC with milliseconds).
    pub start_time: String,
    /// Number of engines in the workflow.
    pub total_avs: u32,
    /// Milliseconds from the start of scanning to the end of the pipeline.
    pub total_time: u64,
    /// One entry per engine that finished, under its name.
    pub scan_details: BTreeMap<String, EngineResult>,
}

/// One engine's entry in `scan_details`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EngineResult {
    /// The engine's definition time, ISO-8601 UTC with milliseconds.
    pub def_time: String,
    /// `<name>_<runtime>` ([`Plugin::engine_id`](crate::executor::Plugin::engine_id);
    /// MetaDefender leaves an external scanner's id to the host).
    pub eng_id: String,
    /// Always `"local"`.
    pub location: String,
    /// The engine's verdict.
    pub scan_result_i: ResultCode,
    /// Milliseconds the engine ran.
    pub scan_time: u64,
    /// The threat's description; `""` when none.
    pub threat_found: String,
    /// Milliseconds between the start of scanning and the engine's start.
    pub wait_time: u64,
    /// Cordon's addition: why the engine's result is Failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failure: Option<FailureReport>,
    /// Cordon's addition: the engine's peak memory in bytes, where its runtime measures it
    /// (wasm: linear memory; a native plugin: its memory cgroup's peak, all its processes
    /// together, where it runs in one whose peak the kernel keeps; absent for webhooks).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub peak_memory_bytes: Option<u64>,
    /// Cordon's addition: the most processes and threads a native engine ran at once, where
    /// its cgroup tells (absent for wasm plugins and webhooks).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub peak_processes: Option<u64>,
    /// Cordon's addition: why the engine was run again, one entry per earlier run, in order:
    /// each stopped for what Cordon and its plugins together, or the machine, ran short of
    /// (`memory_limit` or `process_limit`, not at its own limit); absent when it ran once.
    /// The rest of the entry is its last run's.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub reruns: Vec<Rerun>,
}

/// One run of an engine before its last: why it failed, in the `failure` object's form, and
/// how long it ran.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Rerun {
    /// Why the run failed.
    #[serde(flatten)]
    pub failure: FailureReport,
    /// Milliseconds the run took (0 in results stored before Cordon recorded it).
    #[serde(default)]
    pub scan_time: u64,
}

/// Why a plugin's outcome counts as failed, for the plugin's author and the operator.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FailureReport {
    /// A stable label: `timeout`, `memory_limit`, `open_files_limit`, `disk_limit`,
    /// `process_limit`, `trap`, `signal`, `output_too_large`, `transport`, `could_not_start`,
    /// `plugin_error` (a component's typed error), `exit_code`, `http_status`,
    /// `invalid_output`.
    pub kind: String,
    /// What happened, precisely (for invalid output: which field and why).
    pub message: String,
    /// The exit code or HTTP status, when the plugin finished by itself.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exit: Option<i64>,
    /// The end of what the plugin wrote to stderr (at most 1 KiB), when anything.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub stderr: String,
}

/// The `post_action` object.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct PostActionSummary {
    /// One entry per post action that ran, in order.
    pub details: Vec<PostActionDetail>,
    /// Always 0: Cordon's post actions do not block files.
    pub total_blocked: u32,
    /// Post actions that ran.
    pub total_executed: u32,
    /// Post actions that failed.
    pub total_failed: u32,
    /// Post actions in the workflow.
    pub total_post_action: u32,
    /// Post actions that succeeded.
    pub total_success: u32,
}

/// One post action's record.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PostActionDetail {
    /// Milliseconds it ran.
    pub duration: u64,
    /// Its name.
    pub name: String,
    /// Exit code (process, wasm) or HTTP status (webhook); -1 when it did not finish.
    pub return_value: i64,
    /// 35 for success, 37 for failure (the seed's numbers).
    pub verdict: u32,
    /// Cordon's addition: why it failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failure: Option<FailureReport>,
    /// Cordon's addition: its peak memory in bytes, where its runtime measures it (as
    /// [`EngineResult::peak_memory_bytes`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub peak_memory_bytes: Option<u64>,
    /// Cordon's addition: the most processes and threads it ran at once (as
    /// [`EngineResult::peak_processes`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub peak_processes: Option<u64>,
}

/// `post_action.details[].verdict` of a post action that succeeded.
pub const POST_ACTION_SUCCESS: u32 = 35;
/// `post_action.details[].verdict` of a post action that failed.
pub const POST_ACTION_FAILURE: u32 = 37;

/// Render a time the way MetaDefender does: `2017-04-27T13:05:20.435Z`.
pub fn iso_millis(time: DateTime<Utc>) -> String {
    time.to_rfc3339_opts(SecondsFormat::Millis, true)
}

/// Render milliseconds since the epoch as [`iso_millis`]; `None` when out of range.
pub fn iso_from_epoch_millis(ms: i64) -> Option<String> {
    DateTime::<Utc>::from_timestamp_millis(ms).map(iso_millis)
}

impl ScanResult {
    /// The stdin line for plugins: this result without `extracted_files` (Cordon never
    /// produces that field), as one compact JSON line ending in `\n`.
    pub fn to_plugin_stdin(&self) -> Vec<u8> {
        let mut line = serde_json::to_vec(self).expect("a ScanResult always serializes");
        line.push(b'\n');
        line
    }

    /// Whether the whole pipeline is done.
    pub fn is_final(&self) -> bool {
        self.process_info.progress_percentage == 100
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn iso_rendering_matches_metadefender() {
        assert_eq!(
            iso_from_epoch_millis(1491288912392).unwrap(),
            "2017-04-04T06:55:12.392Z"
        );
        assert_eq!(
            iso_from_epoch_millis(0).unwrap(),
            "1970-01-01T00:00:00.000Z"
        );
    }

    #[test]
    fn a_rerun_is_a_failure_object_with_its_time_and_reads_from_results_stored_before() {
        let rerun = Rerun {
            failure: FailureReport {
                kind: "process_limit".into(),
                message: "refused".into(),
                exit: None,
                stderr: String::new(),
            },
            scan_time: 12,
        };
        assert_eq!(
            serde_json::to_value(&rerun).unwrap(),
            serde_json::json!({"kind": "process_limit", "message": "refused", "scan_time": 12})
        );
        // A result stored before runs were timed has no `scan_time`.
        let old: Rerun =
            serde_json::from_value(serde_json::json!({"kind": "memory_limit", "message": "oom"}))
                .unwrap();
        assert_eq!(
            (old.failure.kind.as_str(), old.scan_time),
            ("memory_limit", 0)
        );
    }
}
