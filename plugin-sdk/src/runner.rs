//! The one code path from an invocation (stdin bytes, the path argument) to an outcome (exit
//! code, stdout, stderr). [`run_scanner`](crate::run_scanner) and
//! [`run_post_action`](crate::run_post_action) feed it the real process; the
//! [`testing`](crate::testing) harness feeds it a sample, so tests exercise the same code.

use std::any::Any;
use std::ffi::OsString;
use std::fmt::Display;
use std::io;
use std::panic::{self, AssertUnwindSafe};

use crate::{ComponentError, Input, SampleFile, ScanReport};

/// What the plugin process does once the author's function returned.
#[derive(Debug)]
pub(crate) struct Outcome {
    /// 0 on success, 1 on any failure.
    pub exit_code: i32,
    /// What goes to stdout: the report's JSON line for a scanner that succeeded, else nothing.
    pub stdout: String,
    /// The failure message, prefixed with the plugin name; empty on success.
    pub stderr: String,
    /// The failure was a panic, which the panic hook already reported on stderr.
    pub panicked: bool,
}

impl Outcome {
    fn success(stdout: String) -> Outcome {
        Outcome {
            exit_code: 0,
            stdout,
            stderr: String::new(),
            panicked: false,
        }
    }

    fn failure(name: &str, failure: Failure) -> Outcome {
        let (message, panicked) = match failure {
            Failure::Error(message) => (message, false),
            Failure::Panic(message) => (format!("panicked: {message}"), true),
        };
        Outcome {
            exit_code: 1,
            stdout: String::new(),
            stderr: format!("{name}: {message}\n"),
            panicked,
        }
    }
}

/// Why the plugin fails.
pub(crate) enum Failure {
    /// Bad input, unreadable file, or the author's function returned an error.
    Error(String),
    /// The author's function panicked (only reachable where panics unwind).
    Panic(String),
}

/// Parses stdin and opens the file named by the path argument.
pub(crate) fn prepare(
    stdin: io::Result<Vec<u8>>,
    path: Option<OsString>,
) -> Result<(Input, SampleFile), Failure> {
    let stdin = stdin.map_err(|err| Failure::Error(format!("cannot read stdin: {err}")))?;
    let text = std::str::from_utf8(&stdin)
        .map_err(|err| Failure::Error(format!("stdin is not UTF-8: {err}")))?;
    let input = Input::from_json(text).map_err(|err| Failure::Error(err.to_string()))?;
    Ok((input, open(path)?))
}

/// Opens the file named by the path argument.
fn open(path: Option<OsString>) -> Result<SampleFile, Failure> {
    let path = path.ok_or_else(|| {
        Failure::Error("no file to scan: its path must be the last argument".to_owned())
    })?;
    SampleFile::open(&path).map_err(|err| {
        Failure::Error(format!(
            "cannot open {}: {err}",
            std::path::Path::new(&path).display()
        ))
    })
}

/// Calls `f`, turning an error or a panic into a [`Failure`].
pub(crate) fn call<T, E, F>(f: F) -> Result<T, Failure>
where
    F: FnOnce() -> Result<T, E>,
    E: Display,
{
    match panic::catch_unwind(AssertUnwindSafe(f)) {
        Ok(Ok(value)) => Ok(value),
        Ok(Err(err)) => Err(Failure::Error(err.to_string())),
        Err(payload) => Err(Failure::Panic(panic_message(payload.as_ref()))),
    }
}

/// Runs a scanner invocation to its outcome.
pub(crate) fn scanner<F, E>(
    name: &str,
    stdin: io::Result<Vec<u8>>,
    path: Option<OsString>,
    scanner: F,
) -> Outcome
where
    F: FnOnce(&Input, &mut SampleFile) -> Result<ScanReport, E>,
    E: Display,
{
    let result =
        prepare(stdin, path).and_then(|(input, mut file)| call(|| scanner(&input, &mut file)));
    scanned(name, result)
}

/// Runs the invocation of a scanner that judges the file alone
/// ([`file_scanner_main!`](crate::file_scanner_main)) to its outcome: stdin is never read.
pub(crate) fn file_scanner<F, E>(name: &str, path: Option<OsString>, scanner: F) -> Outcome
where
    F: FnOnce(&mut SampleFile) -> Result<ScanReport, E>,
    E: Display,
{
    let result = open(path).and_then(|mut file| call(|| scanner(&mut file)));
    scanned(name, result)
}

/// A scanner's outcome: its report's JSON line, or its failure.
fn scanned(name: &str, result: Result<ScanReport, Failure>) -> Outcome {
    match result {
        Ok(report) => Outcome::success(format!("{}\n", report.to_json())),
        Err(failure) => Outcome::failure(name, failure),
    }
}

/// Runs a post action invocation to its outcome.
pub(crate) fn post_action<F, E>(
    name: &str,
    stdin: io::Result<Vec<u8>>,
    path: Option<OsString>,
    action: F,
) -> Outcome
where
    F: FnOnce(&Input, &mut SampleFile) -> Result<(), E>,
    E: Display,
{
    let result =
        prepare(stdin, path).and_then(|(input, mut file)| call(|| action(&input, &mut file)));
    match result {
        Ok(()) => Outcome::success(String::new()),
        Err(failure) => Outcome::failure(name, failure),
    }
}

/// Runs a component plugin's call (wasm32-wasip2, the `scanner` or `post-action` world of
/// `wit/plugin.wit`) to its typed result: parses `result_json` (the `input` record's
/// `result-json`, the same JSON a command plugin reads on stdin), opens `path` (its `path`) and
/// calls `f`.
///
/// Input that does not parse is [`ComponentError::InvalidInput`]; a file that cannot be opened,
/// or an [`io::Error`] returned by `f`, is [`ComponentError::Io`]; any other error of `f`, or a
/// panic where panics unwind, is [`ComponentError::Other`].
pub(crate) fn component_call<T, E, F>(
    result_json: &str,
    path: &str,
    f: F,
) -> Result<T, ComponentError>
where
    F: FnOnce(&Input, &mut SampleFile) -> Result<T, E>,
    E: Display + 'static,
{
    let input = Input::from_json(result_json)
        .map_err(|err| ComponentError::InvalidInput(err.to_string()))?;
    component_file_call(path, |file| f(&input, file))
}

/// [`component_call`] for a function of the file alone: the `result-json` is not parsed.
pub(crate) fn component_file_call<T, E, F>(path: &str, f: F) -> Result<T, ComponentError>
where
    F: FnOnce(&mut SampleFile) -> Result<T, E>,
    E: Display + 'static,
{
    if path.is_empty() {
        return Err(ComponentError::InvalidInput(
            "no file to scan: the input's path is empty".to_owned(),
        ));
    }
    let mut file = SampleFile::open(path)
        .map_err(|err| ComponentError::Io(format!("cannot open {path}: {err}")))?;
    let mut io_error = false;
    let result = call(|| {
        f(&mut file).inspect_err(|err| {
            io_error = (err as &dyn Any).is::<io::Error>();
        })
    });
    match result {
        Ok(value) => Ok(value),
        Err(Failure::Error(message)) if io_error => Err(ComponentError::Io(message)),
        Err(Failure::Error(message)) => Err(ComponentError::Other(message)),
        Err(Failure::Panic(message)) => Err(ComponentError::Other(format!("panicked: {message}"))),
    }
}

/// The text of a panic payload.
pub(crate) fn panic_message(payload: &(dyn Any + Send)) -> String {
    if let Some(text) = payload.downcast_ref::<&str>() {
        (*text).to_owned()
    } else if let Some(text) = payload.downcast_ref::<String>() {
        text.clone()
    } else {
        "a panic without a message".to_owned()
    }
}

/// The plugin's name: the last component of `argv[0]`. The host passes the plugin's registered
/// name as `argv[0]` to wasm plugins; a native process gets its executable's path.
pub(crate) fn plugin_name(argv0: Option<&OsString>) -> String {
    argv0
        .map(std::path::Path::new)
        .and_then(|path| path.file_name())
        .map(|name| name.to_string_lossy().into_owned())
        .filter(|name| !name.is_empty())
        .unwrap_or_else(|| "plugin".to_owned())
}
