//! A native test harness: unit-test a plugin with plain `cargo test`, no wasm, no host.
//!
//! Pass the same function you give [`run_scanner`](crate::run_scanner) and a [`Sample`]:
//!
//! ```
//! use cordon_plugin_sdk::testing::{self, Sample};
//! use cordon_plugin_sdk::{Input, ResultCode, SampleFile, ScanReport};
//!
//! fn scan(_input: &Input, file: &mut SampleFile) -> std::io::Result<ScanReport> {
//!     let head = file.head(4)?;
//!     Ok(if head == b"\x7fELF" {
//!         ScanReport::suspicious("ELF executable")
//!     } else {
//!         ScanReport::clean()
//!     })
//! }
//!
//! let report = testing::scan(scan, Sample::bytes("a.bin", b"\x7fELF\x02\x01")).unwrap();
//! assert_eq!(report.result(), ResultCode::Suspicious);
//!
//! let report = testing::scan(scan, Sample::bytes("notes.txt", "hello")).unwrap();
//! assert_eq!(report, ScanReport::clean());
//! ```
//!
//! [`scan`] and [`post_action`] call your function directly and return what it returned (a
//! panic in it fails the test as usual); [`with_sample`] does the same for any function. [`run_scanner`] and [`run_post_action`] go through
//! the whole contract instead: the input serialized on one stdin line, the path as the last
//! argument, errors and panics turned into exit code 1 with a message on stderr; they return
//! the [`Run`], exactly what the host would see. [`scan_component`] and
//! [`post_action_component`] go through the path of a `wasm32-wasip2` component instead: the
//! input handed over as JSON text, the file opened from its path, and errors returned as the
//! [`ComponentError`] the component would return.
//!
//! The input is generated from the sample (see [`default_input`]): `display_name` and
//! `file_size` are filled in, the hashes are left empty (this crate computes none), the
//! workflow is `"test"`. Change it with [`Sample::with_input`], [`Sample::with_metadata`],
//! [`Sample::with_workflow`] or [`Sample::with_process_result`].

use std::ffi::OsString;
use std::fmt::Display;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use serde_json::{Value, json};

use crate::{ComponentError, Input, SampleFile, ScanReport, runner};

/// A file to run a plugin on, with the input JSON it gets.
#[derive(Debug, Clone)]
pub struct Sample {
    name: String,
    source: Source,
    input: Option<Value>,
    metadata: Option<Value>,
    workflow: Option<String>,
    process_result: Option<String>,
}

#[derive(Debug, Clone)]
enum Source {
    Bytes(Vec<u8>),
    Path(PathBuf),
}

impl Sample {
    /// A file named `name` (one path component, extension included: `"invoice.pdf"`) holding
    /// `bytes`. It is written to a fresh temporary directory, alone, as the host does, and
    /// removed afterwards.
    pub fn bytes(name: impl Into<String>, bytes: impl AsRef<[u8]>) -> Sample {
        let name = name.into();
        assert!(
            !name.is_empty()
                && name != "."
                && name != ".."
                && !name.contains('/')
                && !name.contains('\\'),
            "a sample name is one path component, got {name:?}"
        );
        Sample {
            name,
            source: Source::Bytes(bytes.as_ref().to_vec()),
            input: None,
            metadata: None,
            workflow: None,
            process_result: None,
        }
    }

    /// An existing file, used in place (it is only read).
    pub fn path(path: impl Into<PathBuf>) -> Sample {
        let path = path.into();
        let name = path
            .file_name()
            .map(|name| name.to_string_lossy().into_owned())
            .unwrap_or_default();
        Sample {
            name,
            source: Source::Path(path),
            input: None,
            metadata: None,
            workflow: None,
            process_result: None,
        }
    }

    /// Replaces the generated input with `input` (the other `with_*` settings still apply on
    /// top of it). It need not be complete: the plugin's [`Input`] tolerates missing fields.
    pub fn with_input(mut self, input: Value) -> Sample {
        self.input = Some(input);
        self
    }

    /// Sets the submission's `metadata` object.
    pub fn with_metadata(mut self, metadata: Value) -> Sample {
        self.metadata = Some(metadata);
        self
    }

    /// Sets the workflow name (`process_info.profile`).
    pub fn with_workflow(mut self, workflow: impl Into<String>) -> Sample {
        self.workflow = Some(workflow.into());
        self
    }

    /// Sets `process_info.result`: `"Blocked"` or `"Allowed"` for a post action (the default
    /// is `"Processing"`, what scanners see).
    pub fn with_process_result(mut self, result: impl Into<String>) -> Sample {
        self.process_result = Some(result.into());
        self
    }

    /// The file's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The input JSON the plugin gets on stdin, for a file of `size` bytes.
    fn input_json(&self, size: u64) -> Value {
        let mut input = self
            .input
            .clone()
            .unwrap_or_else(|| default_input(&self.name, size));
        if let Some(object) = input.as_object_mut() {
            if let Some(metadata) = &self.metadata {
                object.insert("metadata".to_owned(), metadata.clone());
            }
            for (key, value) in [
                ("profile", &self.workflow),
                ("result", &self.process_result),
            ] {
                if let Some(value) = value {
                    let info = object.entry("process_info").or_insert_with(|| json!({}));
                    if let Some(info) = info.as_object_mut() {
                        info.insert(key.to_owned(), Value::String(value.clone()));
                    }
                }
            }
        }
        input
    }

    /// Puts the file on disk; the guard removes what it created.
    fn materialize(&self) -> Materialized {
        match &self.source {
            Source::Path(path) => Materialized {
                path: path.clone(),
                temp_dir: None,
            },
            Source::Bytes(bytes) => {
                static COUNTER: AtomicU64 = AtomicU64::new(0);
                let dir = std::env::temp_dir().join(format!(
                    "cordon-plugin-sdk-test-{}-{}",
                    std::process::id(),
                    COUNTER.fetch_add(1, Ordering::Relaxed)
                ));
                let _ = std::fs::remove_dir_all(&dir);
                std::fs::create_dir_all(&dir)
                    .unwrap_or_else(|err| panic!("cannot create {}: {err}", dir.display()));
                let path = dir.join(&self.name);
                std::fs::write(&path, bytes)
                    .unwrap_or_else(|err| panic!("cannot write {}: {err}", path.display()));
                Materialized {
                    path,
                    temp_dir: Some(dir),
                }
            }
        }
    }
}

struct Materialized {
    path: PathBuf,
    temp_dir: Option<PathBuf>,
}

impl Materialized {
    fn size(&self) -> u64 {
        std::fs::metadata(&self.path)
            .map(|meta| meta.len())
            .unwrap_or(0)
    }
}

impl Drop for Materialized {
    fn drop(&mut self) {
        if let Some(dir) = &self.temp_dir {
            let _ = std::fs::remove_dir_all(dir);
        }
    }
}

/// The input the harness generates for a file named `name` of `size` bytes: the full
/// MetaDefender shape a scanner sees while the pipeline runs (result `"Processing"`, overall
/// result 255 "In Progress", no engine results yet), workflow `"test"`, hashes empty.
pub fn default_input(name: &str, size: u64) -> Value {
    let data_id = "0123456789abcdef0123456789abcdef";
    json!({
        "data_id": data_id,
        "file_info": {
            "display_name": name,
            "file_size": size,
            "file_type": "",
            "file_type_description": "",
            "md5": "",
            "sha1": "",
            "sha256": "",
            "upload_timestamp": "2026-01-01T00:00:00.000Z"
        },
        "process_info": {
            "blocked_reason": "",
            "blocked_reasons": [],
            "file_type_skipped_scan": false,
            "post_processing": {
                "actions_failed": "",
                "actions_ran": "",
                "converted_destination": "",
                "converted_to": "",
                "copy_move_destination": ""
            },
            "processing_time": -1,
            "profile": "test",
            "progress_percentage": 0,
            "queue_time": 0,
            "result": "Processing",
            "user_agent": "",
            "username": "",
            "verdicts": []
        },
        "scan_results": {
            "data_id": data_id,
            "progress_percentage": 0,
            "scan_all_result_a": "In Progress",
            "scan_all_result_i": 255,
            "scan_details": {},
            "start_time": "2026-01-01T00:00:00.000Z",
            "total_avs": 0,
            "total_time": 0
        }
    })
}

/// Calls `scanner` on `sample` the way [`run_scanner`](crate::run_scanner) would, and returns
/// what it returned. The input is serialized to one line and parsed back, as in a real run.
///
/// # Panics
///
/// When the sample cannot be put on disk or opened, or when the generated input does not
/// parse (a bad [`Sample::with_input`]); and when `scanner` panics.
pub fn scan<F, E>(scanner: F, sample: Sample) -> Result<ScanReport, E>
where
    F: FnOnce(&Input, &mut SampleFile) -> Result<ScanReport, E>,
{
    let report = with_sample(sample, scanner)?;
    // What the plugin prints must read back as the host reads it.
    let printed: ScanReport =
        serde_json::from_str(&report.to_json()).expect("a ScanReport reads back");
    assert_eq!(printed, report);
    Ok(report)
}

/// [`scan`] for a scanner that judges the file alone
/// ([`file_scanner_main!`](crate::file_scanner_main)): calls `scanner` on the open `sample`.
pub fn scan_file<F, E>(scanner: F, sample: Sample) -> Result<ScanReport, E>
where
    F: FnOnce(&mut SampleFile) -> Result<ScanReport, E>,
{
    scan(|_: &Input, file: &mut SampleFile| scanner(file), sample)
}

/// Calls `action` on `sample` the way [`run_post_action`](crate::run_post_action) would, and
/// returns what it returned. See [`scan`] for the panics.
pub fn post_action<F, E>(action: F, sample: Sample) -> Result<(), E>
where
    F: FnOnce(&Input, &mut SampleFile) -> Result<(), E>,
{
    with_sample(sample, action)
}

/// Calls any function on `sample` with its input and the open file, for testing a plugin's
/// helpers (a hash, a header parser) on the same footing as the plugin itself:
///
/// ```
/// use cordon_plugin_sdk::testing::{self, Sample};
/// use cordon_plugin_sdk::{Input, SampleFile};
///
/// let size = testing::with_sample(Sample::bytes("a.txt", "four"), |_: &Input, file: &mut SampleFile| {
///     file.size().unwrap()
/// });
/// assert_eq!(size, 4);
/// ```
///
/// See [`scan`] for the panics.
pub fn with_sample<T, F>(sample: Sample, f: F) -> T
where
    F: FnOnce(&Input, &mut SampleFile) -> T,
{
    let file = sample.materialize();
    let (input, mut sample_file) = open(&sample, &file);
    f(&input, &mut sample_file)
}

fn open(sample: &Sample, file: &Materialized) -> (Input, SampleFile) {
    let line = stdin_line(sample, file);
    let input = Input::from_json(&line).unwrap_or_else(|err| panic!("the test input: {err}"));
    let sample_file = SampleFile::open(&file.path)
        .unwrap_or_else(|err| panic!("cannot open {}: {err}", file.path.display()));
    (input, sample_file)
}

fn stdin_line(sample: &Sample, file: &Materialized) -> String {
    let mut line =
        serde_json::to_string(&sample.input_json(file.size())).expect("a JSON value serializes");
    line.push('\n');
    line
}

/// What the host would see from one run of a plugin.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Run {
    /// The exit code: 0 on success, 1 on failure.
    pub exit_code: i32,
    /// Everything written to stdout: a scanner's one JSON line on success, else nothing.
    pub stdout: String,
    /// The failure message, prefixed with the plugin name; empty on success.
    pub stderr: String,
}

impl Run {
    /// Whether the run succeeded (exit code 0).
    pub fn success(&self) -> bool {
        self.exit_code == 0
    }

    /// The scanner's report as the host reads it from stdout; `None` when the run failed or
    /// stdout is not a valid report.
    pub fn report(&self) -> Option<ScanReport> {
        if self.exit_code != 0 {
            return None;
        }
        serde_json::from_str(self.stdout.trim()).ok()
    }
}

impl From<runner::Outcome> for Run {
    fn from(outcome: runner::Outcome) -> Run {
        Run {
            exit_code: outcome.exit_code,
            stdout: outcome.stdout,
            stderr: outcome.stderr,
        }
    }
}

/// The name [`run_scanner`] and [`run_post_action`] give the plugin (`argv[0]`).
pub const PLUGIN_NAME: &str = "test-plugin";

/// Runs `scanner` on `sample` through the whole contract, as
/// [`run_scanner`](crate::run_scanner) in a plugin process does, and returns what the host
/// would see. Errors and panics become exit code 1 with a message on stderr.
pub fn run_scanner<F, E>(scanner: F, sample: Sample) -> Run
where
    F: FnOnce(&Input, &mut SampleFile) -> Result<ScanReport, E>,
    E: Display,
{
    let file = sample.materialize();
    let stdin = stdin_line(&sample, &file).into_bytes();
    runner::scanner(PLUGIN_NAME, Ok(stdin), Some(path_arg(&file.path)), scanner).into()
}

/// Runs `scanner`, a function of the file alone, on `sample` through the whole contract, as
/// the `main` of [`file_scanner_main!`](crate::file_scanner_main) in a plugin process does:
/// nothing is read from stdin. Errors and panics become exit code 1 with a message on stderr.
pub fn run_file_scanner<F, E>(scanner: F, sample: Sample) -> Run
where
    F: FnOnce(&mut SampleFile) -> Result<ScanReport, E>,
    E: Display,
{
    let file = sample.materialize();
    runner::file_scanner(PLUGIN_NAME, Some(path_arg(&file.path)), scanner).into()
}

/// Runs `action` on `sample` through the whole contract, as
/// [`run_post_action`](crate::run_post_action) in a plugin process does.
pub fn run_post_action<F, E>(action: F, sample: Sample) -> Run
where
    F: FnOnce(&Input, &mut SampleFile) -> Result<(), E>,
    E: Display,
{
    let file = sample.materialize();
    let stdin = stdin_line(&sample, &file).into_bytes();
    runner::post_action(PLUGIN_NAME, Ok(stdin), Some(path_arg(&file.path)), action).into()
}

/// Runs `scanner` with raw stdin bytes and an optional path argument, as a host would invoke
/// it, for testing how a plugin copes with input the typed [`Sample`] cannot express (not
/// JSON, no path argument).
pub fn run_scanner_raw<F, E>(scanner: F, stdin: &[u8], path: Option<&Path>) -> Run
where
    F: FnOnce(&Input, &mut SampleFile) -> Result<ScanReport, E>,
    E: Display,
{
    runner::scanner(PLUGIN_NAME, Ok(stdin.to_vec()), path.map(path_arg), scanner).into()
}

fn path_arg(path: &Path) -> OsString {
    std::path::absolute(path)
        .unwrap_or_else(|_| path.to_owned())
        .into_os_string()
}

/// Calls `scanner` on `sample` the way a `wasm32-wasip2` component built with
/// [`scanner_main!`](crate::scanner_main) does when the host calls its `scan` export: the
/// input's JSON is handed over as the `input` record's `result-json` text and the file is
/// opened from its `path`. Returns the report, or the [`ComponentError`] the component would
/// return as the WIT `error` (an [`std::io::Error`] from `scanner` is `Io`, any other error
/// `Other`).
///
/// ```
/// use cordon_plugin_sdk::testing::{self, Sample};
/// use cordon_plugin_sdk::{ComponentError, Input, SampleFile, ScanReport};
///
/// fn scan(_input: &Input, file: &mut SampleFile) -> Result<ScanReport, String> {
///     match file.size().map_err(|e| e.to_string())? {
///         0 => Err("empty file".to_owned()),
///         _ => Ok(ScanReport::clean()),
///     }
/// }
///
/// assert_eq!(testing::scan_component(scan, Sample::bytes("a.txt", "x")), Ok(ScanReport::clean()));
/// assert_eq!(
///     testing::scan_component(scan, Sample::bytes("a.txt", "")),
///     Err(ComponentError::Other("empty file".to_owned()))
/// );
/// ```
///
/// # Panics
///
/// When the sample cannot be put on disk.
pub fn scan_component<F, E>(scanner: F, sample: Sample) -> Result<ScanReport, ComponentError>
where
    F: FnOnce(&Input, &mut SampleFile) -> Result<ScanReport, E>,
    E: Display + 'static,
{
    let file = sample.materialize();
    let json = stdin_line(&sample, &file);
    let path = path_arg(&file.path);
    runner::component_call(json.trim_end(), &path.to_string_lossy(), scanner)
}

/// Calls `action` on `sample` the way a `wasm32-wasip2` component built with
/// [`post_action_main!`](crate::post_action_main) does when the host calls its `execute`
/// export. See [`scan_component`].
pub fn post_action_component<F, E>(action: F, sample: Sample) -> Result<(), ComponentError>
where
    F: FnOnce(&Input, &mut SampleFile) -> Result<(), E>,
    E: Display + 'static,
{
    let file = sample.materialize();
    let json = stdin_line(&sample, &file);
    let path = path_arg(&file.path);
    runner::component_call(json.trim_end(), &path.to_string_lossy(), action)
}

/// Calls `scanner` as a component's `scan` export would be called, with a raw `result-json`
/// text and `path`, for testing what the typed [`Sample`] cannot express (input that is not
/// JSON, a path that does not exist).
pub fn scan_component_raw<F, E>(
    scanner: F,
    result_json: &str,
    path: &str,
) -> Result<ScanReport, ComponentError>
where
    F: FnOnce(&Input, &mut SampleFile) -> Result<ScanReport, E>,
    E: Display + 'static,
{
    runner::component_call(result_json, path, scanner)
}
