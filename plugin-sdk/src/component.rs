//! WebAssembly components of Cordon's WIT worlds (`wit/plugin.wit`, package
//! `cordon:plugin@0.1.0`). Only on `wasm32-wasip2`.
//!
//! [`scanner_main!`](crate::scanner_main) and [`post_action_main!`](crate::post_action_main)
//! use this module to export, next to `main`, the world's function (`scan` or `execute`) on
//! top of the same author function. You normally never touch it; it is public for the macros
//! and for authors who implement a world's `Guest` trait by hand:
//!
//! ```ignore
//! use cordon_plugin_sdk::component::scanner::{self, Error, Guest, Input, Verdict};
//!
//! struct MyScanner;
//!
//! impl Guest for MyScanner {
//!     fn scan(input: Input) -> Result<Verdict, Error> {
//!         cordon_plugin_sdk::component::scan(my_scan_function, input)
//!     }
//! }
//!
//! scanner::export_scanner!(MyScanner with_types_in cordon_plugin_sdk::component::scanner);
//! ```
//!
//! How the typed call maps onto the SDK's types:
//! - the `input` record's `result-json` (the one-line JSON a command plugin reads on stdin)
//!   becomes the [`Input`]; its `path` (`/scan/<name>`) is opened as the
//!   [`SampleFile`];
//! - a [`ScanReport`] becomes the `verdict` record: same `def-time`, the
//!   `result-code` case whose position is the MetaDefender code, same `threat-found`;
//! - a [`ComponentError`] becomes the `error` variant case of the same
//!   name (`io`, `invalid-input`, `other`). The host then records the scan as Failed (3), or the
//!   post action as failed, with the message.
//!
//! A panic cannot unwind on wasm: it traps, and the host reports the trap (Failed).

#![allow(missing_docs)]

/// Bindings of the `scanner` world: `Guest` (with `scan`), `Input`, `Verdict`, `Error`,
/// `ResultCode`, and the `export_scanner!` macro.
pub mod scanner {
    wit_bindgen::generate!({
        path: "../wit",
        world: "cordon:plugin/scanner",
        pub_export_macro: true,
        export_macro_name: "export_scanner",
        default_bindings_module: "::cordon_plugin_sdk::component::scanner",
        runtime_path: "::cordon_plugin_sdk::component::wit_bindgen_rt",
        // Only a plugin that exports the world (through `export_scanner!`) carries the
        // world's type information; a plugin that does not must not import its types.
        disable_custom_section_link_helpers: true,
    });

    pub use self::cordon::plugin::types::ResultCode;
}

/// Bindings of the `post-action` world: `Guest` (with `execute`), `Input`, `Error`, and the
/// `export_post_action!` macro.
pub mod post_action {
    wit_bindgen::generate!({
        path: "../wit",
        world: "cordon:plugin/post-action",
        pub_export_macro: true,
        export_macro_name: "export_post_action",
        default_bindings_module: "::cordon_plugin_sdk::component::post_action",
        runtime_path: "::cordon_plugin_sdk::component::wit_bindgen_rt",
        disable_custom_section_link_helpers: true,
    });
}

/// wit-bindgen's runtime support, for the generated bindings.
#[doc(hidden)]
pub use wit_bindgen::rt as wit_bindgen_rt;

use std::fmt::Display;

use crate::{ComponentError, Input, ResultCode, SampleFile, ScanReport, runner};

/// The `scan` export of a scanner-world component: runs `scanner` on the typed input.
pub fn scan<F, E>(scanner: F, input: scanner::Input) -> Result<scanner::Verdict, scanner::Error>
where
    F: FnOnce(&Input, &mut SampleFile) -> Result<ScanReport, E>,
    E: Display + 'static,
{
    verdict(runner::component_call(
        &input.result_json,
        &input.path,
        scanner,
    ))
}

/// The `scan` export of a scanner-world component built with
/// [`file_scanner_main!`](crate::file_scanner_main): runs `scanner` on the input's file alone,
/// without parsing its `result-json`.
pub fn scan_file<F, E>(
    scanner: F,
    input: scanner::Input,
) -> Result<scanner::Verdict, scanner::Error>
where
    F: FnOnce(&mut SampleFile) -> Result<ScanReport, E>,
    E: Display + 'static,
{
    verdict(runner::component_file_call(&input.path, scanner))
}

/// A scanner's report as the world's `verdict`, or its failure as the world's `error`.
fn verdict(result: Result<ScanReport, ComponentError>) -> Result<scanner::Verdict, scanner::Error> {
    match result {
        Ok(report) => Ok(scanner::Verdict {
            def_time: report.def_time_ms(),
            code: result_code(report.result()),
            threat_found: report.threat_found().to_owned(),
        }),
        Err(error) => Err(match error {
            ComponentError::Io(m) => scanner::Error::Io(m),
            ComponentError::InvalidInput(m) => scanner::Error::InvalidInput(m),
            ComponentError::Other(m) => scanner::Error::Other(m),
        }),
    }
}

/// The `execute` export of a post-action-world component: runs `action` on the typed input.
pub fn execute<F, E>(action: F, input: post_action::Input) -> Result<(), post_action::Error>
where
    F: FnOnce(&Input, &mut SampleFile) -> Result<(), E>,
    E: Display + 'static,
{
    runner::component_call(&input.result_json, &input.path, action).map_err(|error| match error {
        ComponentError::Io(m) => post_action::Error::Io(m),
        ComponentError::InvalidInput(m) => post_action::Error::InvalidInput(m),
        ComponentError::Other(m) => post_action::Error::Other(m),
    })
}

/// The WIT `result-code` case of a code: the case at position `code.code()`.
fn result_code(code: ResultCode) -> scanner::ResultCode {
    use scanner::ResultCode as W;
    match code {
        ResultCode::NoThreatDetected => W::NoThreatDetected,
        ResultCode::Infected => W::Infected,
        ResultCode::Suspicious => W::Suspicious,
        ResultCode::Failed => W::Failed,
        ResultCode::CleanedDeleted => W::CleanedDeleted,
        ResultCode::Unknown => W::Unknown,
        ResultCode::Quarantined => W::Quarantined,
        ResultCode::SkippedClean => W::SkippedClean,
        ResultCode::SkippedInfected => W::SkippedInfected,
        ResultCode::ExceededArchiveDepth => W::ExceededArchiveDepth,
        ResultCode::NotScanned => W::NotScanned,
        ResultCode::Aborted => W::Aborted,
        ResultCode::EncryptedArchive => W::EncryptedArchive,
        ResultCode::ExceededArchiveSize => W::ExceededArchiveSize,
        ResultCode::ExceededArchiveFileNumber => W::ExceededArchiveFileNumber,
        ResultCode::PasswordProtectedDocument => W::PasswordProtectedDocument,
        ResultCode::ExceededArchiveTimeout => W::ExceededArchiveTimeout,
        ResultCode::FileTypeMismatch => W::FileTypeMismatch,
        ResultCode::PotentiallyVulnerableFile => W::PotentiallyVulnerableFile,
        ResultCode::Canceled => W::Canceled,
        ResultCode::SensitiveDataFound => W::SensitiveDataFound,
        ResultCode::YaraRuleMatched => W::YaraRuleMatched,
        ResultCode::PotentiallyUnwantedProgram => W::PotentiallyUnwantedProgram,
        ResultCode::UnsupportedFileType => W::UnsupportedFileType,
    }
}

/// Exports `scan` of the scanner world on top of a scanner function, through `$export`
/// ([`scan`], or [`scan_file`] for a function of the file alone; used by
/// [`scanner_main!`](crate::scanner_main) and
/// [`file_scanner_main!`](crate::file_scanner_main)).
#[doc(hidden)]
#[macro_export]
macro_rules! __export_scanner_component {
    ($export:path, $scanner:path) => {
        const _: () = {
            struct CordonScannerComponent;

            impl $crate::component::scanner::Guest for CordonScannerComponent {
                fn scan(
                    input: $crate::component::scanner::Input,
                ) -> ::core::result::Result<
                    $crate::component::scanner::Verdict,
                    $crate::component::scanner::Error,
                > {
                    $export($scanner, input)
                }
            }

            $crate::component::scanner::export_scanner!(
                CordonScannerComponent with_types_in $crate::component::scanner
            );
        };
    };
}

/// Exports `execute` of the post-action world on top of a post action function (used by
/// [`post_action_main!`](crate::post_action_main)).
#[doc(hidden)]
#[macro_export]
macro_rules! __export_post_action_component {
    ($action:path) => {
        const _: () = {
            struct CordonPostActionComponent;

            impl $crate::component::post_action::Guest for CordonPostActionComponent {
                fn execute(
                    input: $crate::component::post_action::Input,
                ) -> ::core::result::Result<(), $crate::component::post_action::Error> {
                    $crate::component::execute($action, input)
                }
            }

            $crate::component::post_action::export_post_action!(
                CordonPostActionComponent with_types_in $crate::component::post_action
            );
        };
    };
}
