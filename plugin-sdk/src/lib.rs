//! Write Cordon scanners and post actions in Rust.
//!
//! A Cordon plugin is a program that looks at one file. The same source builds as a WASI module
//! (`--target wasm32-wasip1`, the sandboxed runtime), as a WebAssembly component of Cordon's
//! `scanner` world (`--target wasm32-wasip2`, same sandbox, typed input and verdict) and as a
//! native executable (the `process` runtime), and this crate gives all three the same shape:
//! you write one function, from the typed [`Input`] and the open [`SampleFile`] to a
//! [`ScanReport`], and [`scanner_main!`] does the rest of the contract. The [`testing`] module
//! runs that same function under plain `cargo test`.
//!
//! # A complete scanner
//!
//! `Cargo.toml`:
//!
//! ```toml
//! [package]
//! name = "marker"
//! edition = "2024"
//!
//! [dependencies]
//! cordon-plugin-sdk = "0.1"
//!
//! [profile.release]
//! lto = true
//! codegen-units = 1
//! panic = "abort"
//! strip = true
//! ```
//!
//! `src/main.rs`:
//!
//! ```no_run
//! use cordon_plugin_sdk::{Input, SampleFile, ScanReport};
//! use std::ops::ControlFlow;
//!
//! /// When the rules below last changed, in ms since the Unix epoch (2026-01-01).
//! const DEF_TIME: u64 = 1_767_225_600_000;
//! const MARKER: &[u8] = b"DO-NOT-SHIP";
//!
//! /// Flags files that contain the marker (this simple version misses a marker that spans
//! /// two chunks).
//! fn scan(input: &Input, file: &mut SampleFile) -> std::io::Result<ScanReport> {
//!     if input.metadata_field("trusted") == Some(&cordon_plugin_sdk::serde_json::Value::Bool(true)) {
//!         return Ok(ScanReport::clean().with_def_time(DEF_TIME));
//!     }
//!     let mut found = false;
//!     file.read_chunks(SampleFile::DEFAULT_CHUNK_SIZE, |chunk| {
//!         found = chunk.windows(MARKER.len()).any(|window| window == MARKER);
//!         if found { ControlFlow::Break(()) } else { ControlFlow::Continue(()) }
//!     })?;
//!     let report = if found {
//!         ScanReport::infected("Marker.DoNotShip")
//!     } else {
//!         ScanReport::clean()
//!     };
//!     Ok(report.with_def_time(DEF_TIME))
//! }
//!
//! cordon_plugin_sdk::scanner_main!(scan);
//!
//! #[cfg(test)]
//! mod tests {
//!     use cordon_plugin_sdk::testing::{self, Sample};
//!     use cordon_plugin_sdk::ResultCode;
//!
//!     #[test]
//!     fn finds_the_marker() {
//!         let report = testing::scan(super::scan, Sample::bytes("a.txt", "x DO-NOT-SHIP y")).unwrap();
//!         assert_eq!(report.result(), ResultCode::Infected);
//!     }
//! }
//! ```
//!
//! Build it with `cargo build --release --target wasm32-wasip1` (a WASI command module) or
//! `--target wasm32-wasip2` (a component; `rustup target add wasm32-wasip1 wasm32-wasip2`
//! once) for the `wasm` runtime, or plainly for the `process` runtime; test it with `cargo
//! test`. `cordon plugin check target/wasm32-wasip1/release/marker.wasm` tells whether the host
//! accepts the binary, and `cordon plugin run <wasm> <file>` runs it as the host would. (`serde_json` is
//! re-exported as [`serde_json`] for reading metadata.)
//!
//! Two flags make a wasm build cheaper to run; `cordon plugin new` writes them into the new
//! crate's `.cargo/config.toml`:
//!
//! ```toml
//! [target.wasm32-wasip1]
//! rustflags = ["-C", "target-feature=+simd128", "-C", "link-arg=--initial-heap=1048576"]
//! ```
//!
//! `+simd128` lets loops and crates use WebAssembly SIMD. `--initial-heap` starts the module
//! with 1 MiB of heap, so that a scan's first allocations do not grow its memory: each growth
//! is a system call in the host, undone by another before the next scan (a 4 KiB scan of the
//! EICAR example plugin takes about a fifth less time with it). The module then needs about
//! 2.1 MiB of memory to start (1 MiB of stack, the heap, its data); Cordon refuses to load a
//! plugin whose `max_memory_bytes` is below what its module needs to start, and says so.
//!
//! # The contract
//!
//! Cordon runs every plugin under one contract, MetaDefender Core's "External Scanner" and
//! "Post Action" contract, whatever the runtime:
//!
//! - **stdin**: the current scan result JSON (MetaDefender's result shape, without
//!   `extracted_files`) as one compact line ending in `"\n"`. The submission's metadata travels
//!   in it as a top-level `"metadata"` object, absent when none was given. [`Input`] reads it,
//!   tolerating unknown and missing fields.
//! - **argv**: the path of the file to scan is the **last** argument. A wasm plugin gets
//!   exactly `[<plugin name>, "/scan/<file name>"]`; a native process gets the absolute path,
//!   after whatever arguments its command line has.
//! - **a scanner** exits 0 and prints exactly one JSON object:
//!   `{"def_time": <integer ms since epoch, >= 0>, "scan_result_i": <a code of the table>,
//!   "threat_found": <string, "" when clean>}`. Anything else (another exit code, no JSON,
//!   a field missing or of the wrong type, a code outside the table, a crash, a timeout) makes
//!   the scanner's result **Failed (3)**, with the reason kept by the host. [`ScanReport`] and
//!   [`ResultCode`] can only express valid output: 255 "In Progress" is not a [`ResultCode`].
//! - **a post action** exits 0 for success and anything else for failure; its stdout is
//!   ignored.
//!
//! A scanner that needs nothing of the input may leave stdin unread: [`file_scanner_main!`]
//! runs a function of the file alone and never reads it, which saves a wasm plugin the time
//! reading and parsing it takes.
//!
//! [`run_scanner`] and [`run_post_action`] (which [`scanner_main!`] and [`post_action_main!`]
//! call from `main`) implement all of it: they read all of stdin, parse
//! it (not JSON is a failure), take the last argument as the path, open the file, call your
//! function and print the report. If your function returns an error, or panics where panics
//! unwind (native builds without `panic = "abort"`), the plugin prints `<plugin name>:
//! <message>` on stderr, nothing on stdout, and exits with code 1: a clean failure the host
//! reports as Failed, with your message.
//!
//! Write diagnostics with `eprintln!`, never `println!`: stdout must hold the report alone.
//!
//! ## Panics and traps
//!
//! On `wasm32-wasip1` and `wasm32-wasip2` a panic cannot unwind: after the panic message is
//! printed on stderr the module traps (`unreachable`). The host reports a trap as Failed too, so the file is never
//! reported clean; returning an error is still better, since its message is kept as the
//! reason. The same holds natively for builds with `panic = "abort"` (the process aborts with
//! `SIGABRT`).
//!
//! # WebAssembly components
//!
//! Built for `wasm32-wasip2`, a plugin is a WebAssembly component. With [`scanner_main!`]
//! (or [`post_action_main!`]) it exports the `scan` function of the `scanner` world (or
//! `execute` of the `post-action` world) of Cordon's WIT package `cordon:plugin@0.1.0`
//! (`wit/plugin.wit`), generated with `wit-bindgen` on that target only. The host calls that
//! function with a typed `input` record instead of writing stdin, and gets back a typed
//! `verdict` or `error` instead of reading stdout, under the same sandbox and limits. Your
//! function does not change:
//!
//! - the record's `result-json` (the same one-line JSON a command reads on stdin) becomes the
//!   [`Input`], and its `path` (`/scan/<name>`) is opened as the [`SampleFile`];
//! - your [`ScanReport`] becomes the `verdict` (same `def_time`, code and threat);
//! - an error becomes the WIT `error`: [`ComponentError::Io`] when your function's error type
//!   is [`std::io::Error`] (or the file cannot be opened), [`ComponentError::Other`] for any
//!   other error, with its message; input that is not JSON is [`ComponentError::InvalidInput`]. The host reports the
//!   scan as Failed (3) with that message.
//!
//! The component still has `main` (it also exports `wasi:cli/run`), so it runs as a command
//! too; Cordon prefers the world's function. The module `component` (only compiled for
//! `wasm32-wasip2`) holds the bindings, for authors who implement the world by hand.
//! [`testing::scan_component`] exercises this path natively.
//!
//! # The sandbox
//!
//! A plugin is untrusted code; the host enforces the contract around it, and your plugin
//! should expect these limits rather than work around them.
//!
//! A **wasm** plugin (WASI preview 1 module or preview 2 component under wasmtime) can:
//! - read stdin, write stdout and stderr (both capped in size: output past the cap fails the
//!   scan), and get its two arguments;
//! - read its one file: the host preopens a directory, read-only, that holds that file alone,
//!   at `/scan`. It cannot write or create files there, and sees no other file of the host;
//! - allocate memory up to the host's memory cap (a failed allocation traps), and run until
//!   the host's deadline (then it is interrupted and reported Failed).
//!
//! It cannot: see any environment variable (the environment is empty), open sockets (no
//! network at all: `TcpStream::connect` returns an "unsupported" error), spawn processes,
//! reach any path outside `/scan`, or use the clock or sleeping to outlast its deadline (time
//! spent sleeping counts against it). Do not derive `def_time` from the clock: give it as a
//! constant with [`ScanReport::with_def_time`] (0 is valid).
//!
//! A **native process** plugin runs as a child process of the host with an empty environment
//! (no `PATH`, no `HOME`), in its own process group (on timeout the whole group is killed,
//! grandchildren included), under resource limits (rlimits on memory, CPU time, file size and
//! open files) and, where the kernel allows, further Linux sandboxing. It gets the absolute path
//! of the file; treat it as read-only. Its output is capped like a wasm plugin's.
//!
//! # Testing
//!
//! [`testing::scan`] runs your scanner function natively on a [`testing::Sample`] (bytes or a
//! file on disk) with an input generated from the file, and returns your function's result;
//! [`testing::run_scanner`] goes through the full contract and returns exit code, stdout and
//! stderr; [`testing::scan_component`] goes through the component path and returns the
//! report or the [`ComponentError`]. See the [`testing`] module.

#![deny(missing_docs)]

// The component bindings name this crate by its path (`::cordon_plugin_sdk::...`), also from
// inside it.
extern crate self as cordon_plugin_sdk;

#[cfg(all(target_os = "wasi", target_env = "p2"))]
pub mod component;
mod input;
mod report;
mod runner;
mod sample;
pub mod testing;

use std::ffi::OsString;
use std::fmt::{self, Display};
use std::io::{self, Read, Write};

pub use input::{
    EngineResult, FileInfo, Input, InputError, PostProcessing, ProcessInfo, ScanResults,
    is_sha256_hex,
};
pub use report::{ResultCode, ScanReport, UnknownResultCode};
pub use sample::SampleFile;
pub use serde_json;

/// Runs a scanner: the `main` of a scanner plugin.
///
/// Reads the input from stdin, opens the file named by the last argument, calls `scanner`,
/// prints its [`ScanReport`] as one JSON line and exits 0. When the input cannot be read, the
/// file cannot be opened, `scanner` returns an error or panics (where panics unwind), it prints
/// `<plugin name>: <message>` on stderr, nothing on stdout, and exits 1.
///
/// Prefer [`scanner_main!`]: it does the same, but returns from `main` on success instead of
/// exiting (under wasmtime an explicit exit, even with status 0, costs a captured backtrace:
/// about 40 µs a scan on the EICAR example), and it also builds the `wasm32-wasip2` component.
///
/// ```no_run
/// fn scan(
///     _input: &cordon_plugin_sdk::Input,
///     _file: &mut cordon_plugin_sdk::SampleFile,
/// ) -> Result<cordon_plugin_sdk::ScanReport, String> {
///     Ok(cordon_plugin_sdk::ScanReport::clean())
/// }
///
/// fn main() {
///     cordon_plugin_sdk::run_scanner(scan)
/// }
/// ```
pub fn run_scanner<F, E>(scanner: F) -> !
where
    F: FnOnce(&Input, &mut SampleFile) -> Result<ScanReport, E>,
    E: Display,
{
    // Returns only when the scan succeeded; a failure has already exited non-zero.
    __scanner_main(scanner);
    std::process::exit(0)
}

/// Runs a post action: the `main` of a post action plugin.
///
/// Reads the input from stdin, opens the file named by the last argument, calls `action` and
/// exits 0 when it returns `Ok`. On any failure it prints `<plugin name>: <message>` on stderr
/// and exits 1. Post actions usually look at [`Input::is_blocked`] and
/// [`SampleFile::path`]. Prefer [`post_action_main!`], which returns from `main` instead of
/// exiting (see [`run_scanner`]) and also builds the `wasm32-wasip2` component.
///
/// ```no_run
/// fn act(
///     input: &cordon_plugin_sdk::Input,
///     file: &mut cordon_plugin_sdk::SampleFile,
/// ) -> Result<(), String> {
///     if input.is_blocked() {
///         eprintln!("{} was blocked", file.name());
///     }
///     Ok(())
/// }
///
/// fn main() {
///     cordon_plugin_sdk::run_post_action(act)
/// }
/// ```
pub fn run_post_action<F, E>(action: F) -> !
where
    F: FnOnce(&Input, &mut SampleFile) -> Result<(), E>,
    E: Display,
{
    // Returns only when the action succeeded; a failure has already exited non-zero.
    __post_action_main(action);
    std::process::exit(0)
}

/// Defines a scanner plugin's entry points on top of one scanner function:
/// `cordon_plugin_sdk::scanner_main!(scan);`.
///
/// From the same source it gives:
/// - natively and on `wasm32-wasip1`: `fn main` as [`run_scanner`] of the function, a
///   command that reads stdin, scans the file named by its last argument and prints the
///   verdict. Unlike [`run_scanner`], this `main` returns when the scan succeeds rather than
///   calling `std::process::exit(0)`: under wasmtime an explicit exit is an error with a
///   captured backtrace, which cost the EICAR example about 40 µs per scan;
/// - on `wasm32-wasip2`: a component that exports the `scan` function of the `scanner` world
///   of `wit/plugin.wit` (typed input in, typed verdict or error out; see [WebAssembly
///   components](crate#webassembly-components)) and still has that `main` (the component also
///   exports `wasi:cli/run`; Cordon calls `scan` when a component has it).
///
/// The function is any path to a `fn(&Input, &mut SampleFile) -> Result<ScanReport, E>` where
/// `E: Display + 'static` (a `String`, an [`std::io::Error`], your own error type).
#[macro_export]
macro_rules! scanner_main {
    ($scanner:path) => {
        fn main() {
            $crate::__scanner_main($scanner)
        }

        $crate::__export_scanner_component!($crate::component::scan, $scanner);
    };
}

/// [`scanner_main!`] for a scanner that judges the file alone:
/// `cordon_plugin_sdk::file_scanner_main!(scan);` with `scan` any path to a
/// `fn(&mut SampleFile) -> Result<ScanReport, E>` (`E: Display + 'static`).
///
/// The same entry points, the same contract, the same failures, except that the plugin never
/// reads its input: `main` does not read stdin, and the component does not parse the input
/// record's `result-json`. A scanner that needs nothing of the input (a signature search, a
/// file type check) saves what reading and parsing it costs: in a wasm scan of a small file
/// that is about a quarter of the time the plugin takes (the EICAR example, a 4 KiB file:
/// BENCHMARKS.md, figure 3). Leaving stdin unread is within the contract: the host does not
/// wait for a plugin to read it.
///
/// Test it with [`testing::scan_file`] (the function on a sample) and
/// [`testing::run_file_scanner`] (the whole contract of this entry point). The other
/// [`testing`] functions take a function of the input and the file: give them a closure that
/// leaves the input aside, as in `testing::scan_component(|_, file| scan(file), sample)`.
///
/// ```no_run
/// use cordon_plugin_sdk::{SampleFile, ScanReport};
///
/// /// Flags empty files.
/// fn scan(file: &mut SampleFile) -> std::io::Result<ScanReport> {
///     Ok(match file.size()? {
///         0 => ScanReport::suspicious("Empty.File"),
///         _ => ScanReport::clean(),
///     })
/// }
///
/// cordon_plugin_sdk::file_scanner_main!(scan);
/// ```
#[macro_export]
macro_rules! file_scanner_main {
    ($scanner:path) => {
        fn main() {
            $crate::__file_scanner_main($scanner)
        }

        $crate::__export_scanner_component!($crate::component::scan_file, $scanner);
    };
}

/// Defines a post action plugin's entry points on top of one function:
/// `cordon_plugin_sdk::post_action_main!(act);`.
///
/// Like [`scanner_main!`]: `fn main` as [`run_post_action`] of the function everywhere, and on
/// `wasm32-wasip2` also the `execute` export of the `post-action` world.
#[macro_export]
macro_rules! post_action_main {
    ($action:path) => {
        fn main() {
            $crate::__post_action_main($action)
        }

        $crate::__export_post_action_component!($action);
    };
}

/// Outside wasm32-wasip2 there is no component to export.
#[cfg(not(all(target_os = "wasi", target_env = "p2")))]
#[doc(hidden)]
#[macro_export]
macro_rules! __export_scanner_component {
    ($export:path, $scanner:path) => {};
}

/// Outside wasm32-wasip2 there is no component to export.
#[cfg(not(all(target_os = "wasi", target_env = "p2")))]
#[doc(hidden)]
#[macro_export]
macro_rules! __export_post_action_component {
    ($action:path) => {};
}

/// Why a component plugin could not do its job: the cases of the WIT `error` variant
/// (`wit/plugin.wit`) that a `wasm32-wasip2` build returns instead of exiting 1. The host
/// records the message; the scan is then Failed (3), or the post action failed.
///
/// [`testing::scan_component`] returns it, so that the component path can be tested natively.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ComponentError {
    /// The file could not be opened or read: the author function returned an
    /// [`std::io::Error`], or the path of the input could not be opened.
    Io(String),
    /// The input's `result-json` is not a JSON object, or its path is empty.
    InvalidInput(String),
    /// The author function returned another error (its `Display` text), or panicked where
    /// panics unwind.
    Other(String),
}

impl fmt::Display for ComponentError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ComponentError::Io(m) => write!(f, "I/O error: {m}"),
            ComponentError::InvalidInput(m) => write!(f, "invalid input: {m}"),
            ComponentError::Other(m) => f.write_str(m),
        }
    }
}

impl std::error::Error for ComponentError {}

/// The plugin name and the path argument; installs the panic hook.
fn start() -> (String, Option<OsString>) {
    let args: Vec<OsString> = std::env::args_os().collect();
    let name = runner::plugin_name(args.first());
    let hook_name = name.clone();
    std::panic::set_hook(Box::new(move |info| {
        let message = info.payload_as_str().unwrap_or("a panic without a message");
        match info.location() {
            Some(location) => eprintln!("{hook_name}: panicked at {location}: {message}"),
            None => eprintln!("{hook_name}: panicked: {message}"),
        }
    }));
    let path = if args.len() >= 2 {
        args.last().cloned()
    } else {
        None
    };
    (name, path)
}

fn read_stdin() -> io::Result<Vec<u8>> {
    // Room for the usual input up front: `read_to_end` on an empty vector starts with a small
    // probing read and grows from there, and in a wasm plugin every read is a call into the host.
    let mut stdin = Vec::with_capacity(16 << 10);
    io::stdin().lock().read_to_end(&mut stdin)?;
    Ok(stdin)
}

/// Prints the outcome's stdout and stderr; returns the exit code (1 when stdout fails).
fn report(name: &str, outcome: runner::Outcome) -> i32 {
    if !outcome.stdout.is_empty() {
        let mut stdout = io::stdout().lock();
        if let Err(err) = stdout
            .write_all(outcome.stdout.as_bytes())
            .and_then(|()| stdout.flush())
        {
            eprintln!("{name}: cannot write the report to stdout: {err}");
            return 1;
        }
    }
    // A panic was already reported by the hook.
    if !outcome.stderr.is_empty() && !outcome.panicked {
        let _ = io::stderr().lock().write_all(outcome.stderr.as_bytes());
    }
    outcome.exit_code
}

/// Prints the outcome and exits with its code when that is not 0; returns (for `main` to
/// return) when it is: a WASI command whose `main` returns ends without calling `proc_exit`,
/// which wasmtime turns into an error with a captured backtrace, the costliest part of ending
/// an instance.
fn finish(name: &str, outcome: runner::Outcome) {
    let code = report(name, outcome);
    if code != 0 {
        std::process::exit(code)
    }
}

/// [`run_scanner`] for [`scanner_main!`]: returns on success instead of exiting.
#[doc(hidden)]
pub fn __scanner_main<F, E>(scanner: F)
where
    F: FnOnce(&Input, &mut SampleFile) -> Result<ScanReport, E>,
    E: Display,
{
    let (name, path) = start();
    let outcome = runner::scanner(&name, read_stdin(), path, scanner);
    finish(&name, outcome)
}

/// The `main` of [`file_scanner_main!`]: [`__scanner_main`] without reading stdin.
#[doc(hidden)]
pub fn __file_scanner_main<F, E>(scanner: F)
where
    F: FnOnce(&mut SampleFile) -> Result<ScanReport, E>,
    E: Display,
{
    let (name, path) = start();
    let outcome = runner::file_scanner(&name, path, scanner);
    finish(&name, outcome)
}

/// [`run_post_action`] for [`post_action_main!`]: returns on success instead of exiting.
#[doc(hidden)]
pub fn __post_action_main<F, E>(action: F)
where
    F: FnOnce(&Input, &mut SampleFile) -> Result<(), E>,
    E: Display,
{
    let (name, path) = start();
    let outcome = runner::post_action(&name, read_stdin(), path, action);
    finish(&name, outcome)
}
