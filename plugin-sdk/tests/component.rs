//! The component path (what a wasm32-wasip2 build of `scanner_main!` / `post_action_main!`
//! runs when the host calls `scan` / `execute`), exercised natively through the harness: the
//! same author function gives the same report as the command path, and every failure maps to
//! the WIT `error` case it documents.

use std::io;

use cordon_plugin_sdk::testing::{self, Sample};
use cordon_plugin_sdk::{ComponentError, Input, ResultCode, SampleFile, ScanReport};

/// Reports the file's first byte as Suspicious when it is `!`, fails on an empty file with a
/// plain error and on a file named `*.io` with an I/O error.
fn scanner(input: &Input, file: &mut SampleFile) -> Result<ScanReport, Box<dyn std::error::Error>> {
    if file.name().ends_with(".io") {
        return Err(Box::new(io::Error::other("disk on fire")));
    }
    let head = file.head(1)?;
    match head.first() {
        None => Err("empty file".into()),
        Some(b'!') => {
            Ok(ScanReport::suspicious(format!("bang in {}", input.file_name())).with_def_time(42))
        }
        Some(_) => Ok(ScanReport::clean().with_def_time(42)),
    }
}

fn io_scanner(_: &Input, file: &mut SampleFile) -> io::Result<ScanReport> {
    if file.size()? == 0 {
        return Err(io::Error::new(
            io::ErrorKind::UnexpectedEof,
            "nothing to read",
        ));
    }
    Ok(ScanReport::clean())
}

#[test]
fn the_component_path_gives_the_command_path_s_report() {
    for content in ["!alert", "fine"] {
        let sample = || Sample::bytes("x.txt", content);
        let via_component = testing::scan_component(scanner, sample()).unwrap();
        let via_command = testing::run_scanner(scanner, sample()).report().unwrap();
        assert_eq!(via_component, via_command, "{content}");
    }
    let report = testing::scan_component(scanner, Sample::bytes("x.txt", "!")).unwrap();
    assert_eq!(report.result(), ResultCode::Suspicious);
    assert_eq!(
        report.threat_found(),
        "bang in x.txt",
        "the input comes from result-json"
    );
    assert_eq!(report.def_time_ms(), 42);
}

#[test]
fn errors_map_to_the_wit_error_cases() {
    // A plain error of the author function: `other`, with its text.
    assert_eq!(
        testing::scan_component(scanner, Sample::bytes("x.txt", "")),
        Err(ComponentError::Other("empty file".into()))
    );
    // An io::Error returned directly: `io`.
    assert_eq!(
        testing::scan_component(io_scanner, Sample::bytes("x.txt", "")),
        Err(ComponentError::Io("nothing to read".into()))
    );
    // An io::Error behind another error type is not recognised: `other`.
    assert_eq!(
        testing::scan_component(scanner, Sample::bytes("x.io", "a")),
        Err(ComponentError::Other("disk on fire".into()))
    );
}

#[test]
fn bad_input_and_missing_files_are_reported_not_scanned() {
    let dir = tempfile_dir();
    let path = dir.join("a.txt");
    std::fs::write(&path, "!").unwrap();
    let path = path.to_str().unwrap();

    let error = testing::scan_component_raw(scanner, "not json", path).unwrap_err();
    assert!(
        matches!(error, ComponentError::InvalidInput(_)),
        "{error:?}"
    );
    let error = testing::scan_component_raw(scanner, "[1, 2]", path).unwrap_err();
    assert!(
        matches!(error, ComponentError::InvalidInput(_)),
        "{error:?}"
    );
    let error = testing::scan_component_raw(scanner, "{}", "").unwrap_err();
    assert!(
        matches!(error, ComponentError::InvalidInput(ref m) if m.contains("path is empty")),
        "{error:?}"
    );
    let missing = dir.join("missing.bin");
    let error = testing::scan_component_raw(scanner, "{}", missing.to_str().unwrap()).unwrap_err();
    assert!(
        matches!(error, ComponentError::Io(ref m) if m.starts_with("cannot open") && m.contains("missing.bin")),
        "{error:?}"
    );
    // Input the command path accepts, the component path accepts too.
    assert!(testing::scan_component_raw(scanner, "{}", path).is_ok());
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn post_actions_take_the_component_path_too() {
    fn act(input: &Input, _file: &mut SampleFile) -> Result<(), String> {
        if input.is_blocked() {
            Err(format!("refusing {}", input.file_name()))
        } else {
            Ok(())
        }
    }
    assert_eq!(
        testing::post_action_component(act, Sample::bytes("a.txt", "x")),
        Ok(())
    );
    assert_eq!(
        testing::post_action_component(
            act,
            Sample::bytes("a.txt", "x").with_process_result("Blocked")
        ),
        Err(ComponentError::Other("refusing a.txt".into()))
    );
}

#[test]
fn component_errors_display_their_case() {
    assert_eq!(ComponentError::Io("x".into()).to_string(), "I/O error: x");
    assert_eq!(
        ComponentError::InvalidInput("y".into()).to_string(),
        "invalid input: y"
    );
    assert_eq!(ComponentError::Other("z".into()).to_string(), "z");
}

fn tempfile_dir() -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("cordon-sdk-component-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}
