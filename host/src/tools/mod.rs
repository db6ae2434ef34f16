//! The plugin developer's tools behind `cordon plugin check|run|new`.
//!
//! - [`check`]: what a wasm binary is, what it imports (and whether the sandbox provides it),
//!   what it exports, its size and compile time, and whether the host accepts it: the answer
//!   comes from the executor's own loading code ([`WasmRuntime::prepare_bytes`]), so `check`
//!   refuses exactly what the host refuses, with the host's reason.
//! - [`run`]: runs a plugin on one file exactly as the host does ([`Executor::prepare`],
//!   [`Executor::invoke`]) and shows everything: the stdin sent, raw stdout and stderr, exit
//!   code, duration, peak memory, and the contract's judgement ([`crate::contract`]).
//! - [`scaffold`]: a new plugin crate on the SDK that builds to wasm and passes its own test.
//!
//! Each tool returns a serializable report (`--json`) that also renders for people.
//!
//! [`WasmRuntime::prepare_bytes`]: crate::executor::wasm::WasmRuntime::prepare_bytes
//! [`Executor::prepare`]: crate::executor::Executor::prepare
//! [`Executor::invoke`]: crate::executor::Executor::invoke

pub mod check;
pub mod command;
pub mod run;
pub mod scaffold;

pub use command::{PluginCommand, run_command};

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use crate::executor::{Executor, ExecutorConfig, ExecutorError};

/// Exit status of `cordon plugin check` when the host accepts the binary, and of `cordon
/// plugin run` when the plugin met the contract.
pub const EXIT_OK: u8 = 0;
/// Exit status of `cordon plugin check` when the host refuses the binary, and of `cordon
/// plugin run` when the plugin broke the contract (or the host refused to load it).
pub const EXIT_FAILED: u8 = 1;

/// Why a tool could not do its job at all (as opposed to a plugin that fails: that is in the
/// tool's report).
#[derive(Debug, thiserror::Error)]
pub enum ToolError {
    /// A file could not be read.
    #[error("cannot read {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// A file or directory could not be written.
    #[error("cannot write {path}: {source}")]
    Write {
        /// The file or directory.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The executor could not start.
    #[error(transparent)]
    Executor(#[from] ExecutorError),
    /// An argument is not usable; the message says which and why.
    #[error("{0}")]
    Invalid(String),
}

/// An executor for one tool run, with its data directory: `data_dir` when given (its
/// compiled-module cache is then used and filled), else a fresh temporary directory that is
/// removed when this is dropped.
pub struct ToolHost {
    /// The executor, configured like the host's.
    pub executor: Executor,
    /// The data directory in use.
    pub data_dir: PathBuf,
    _temp: Option<tempfile::TempDir>,
}

impl ToolHost {
    /// Set up an executor under `data_dir`, or under a temporary directory.
    pub fn new(data_dir: Option<&Path>) -> Result<ToolHost, ToolError> {
        let (temp, data_dir) = match data_dir {
            Some(dir) => (None, dir.to_path_buf()),
            None => {
                let temp = tempfile::Builder::new()
                    .prefix("cordon-plugin-")
                    .tempdir()
                    .map_err(|source| ToolError::Write {
                        path: std::env::temp_dir(),
                        source,
                    })?;
                let dir = temp.path().to_path_buf();
                (Some(temp), dir)
            }
        };
        let mut config = ExecutorConfig::under(&data_dir);
        // One plugin at a time: no need to reserve a large pool.
        config.max_concurrent_wasm = 2;
        Ok(ToolHost {
            executor: Executor::new(&config)?,
            data_dir,
            _temp: temp,
        })
    }
}

/// How many bytes of a stream [`show_bytes`] shows by default.
pub const SHOW_BYTES_DEFAULT: usize = 4096;

/// `bytes` as text for a terminal: valid UTF-8 as is, except control characters other than
/// newline and tab, which are escaped (`\r`, `\u{1b}`), and invalid bytes as `\xNN`. At most
/// `limit` bytes are shown; the rest is summarized as `… (N more bytes)`.
pub fn show_bytes(bytes: &[u8], limit: usize) -> String {
    let shown = &bytes[..bytes.len().min(limit)];
    let mut out = String::with_capacity(shown.len());
    for chunk in shown.utf8_chunks() {
        for c in chunk.valid().chars() {
            match c {
                '\n' | '\t' => out.push(c),
                '\r' => out.push_str("\\r"),
                c if c.is_control() => {
                    let _ = write!(out, "\\u{{{:x}}}", c as u32);
                }
                c => out.push(c),
            }
        }
        for b in chunk.invalid() {
            let _ = write!(out, "\\x{b:02x}");
        }
    }
    let rest = bytes.len() - shown.len();
    if rest > 0 {
        let _ = write!(
            out,
            "… ({rest} more byte{})",
            if rest == 1 { "" } else { "s" }
        );
    }
    out
}

/// A number of bytes for people: `1.5 MiB (1572864 bytes)`.
pub fn human_bytes(bytes: u64) -> String {
    const UNITS: [&str; 4] = ["KiB", "MiB", "GiB", "TiB"];
    if bytes < 1024 {
        return format!("{bytes} bytes");
    }
    let mut value = bytes as f64 / 1024.0;
    let mut unit = 0;
    while value >= 1024.0 && unit + 1 < UNITS.len() {
        value /= 1024.0;
        unit += 1;
    }
    format!("{value:.1} {} ({bytes} bytes)", UNITS[unit])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bytes_are_shown_escaped_and_truncated() {
        assert_eq!(show_bytes(b"{\"a\": 1}\n", 100), "{\"a\": 1}\n");
        assert_eq!(
            show_bytes(b"a\r\x1b[0m\xff\xfeb", 100),
            "a\\r\\u{1b}[0m\\xff\\xfeb"
        );
        assert_eq!(show_bytes("été".as_bytes(), 100), "été");
        assert_eq!(show_bytes(b"abcdef", 4), "abcd… (2 more bytes)");
        // A multi-byte character cut by the limit shows as bytes, not as a broken character.
        assert_eq!(show_bytes("aé".as_bytes(), 2), "a\\xc3… (1 more byte)");
    }

    #[test]
    fn sizes_for_people() {
        assert_eq!(human_bytes(512), "512 bytes");
        assert_eq!(human_bytes(1536), "1.5 KiB (1536 bytes)");
        assert_eq!(human_bytes(64 << 20), "64.0 MiB (67108864 bytes)");
    }
}
