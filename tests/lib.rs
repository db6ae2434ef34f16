//! Shared support for Cordon's integration tests (the `integration` test binary).
//!
//! The example plugins are built from source by `build.rs` (through `cordon-build-support`)
//! on the first build of this crate: every binary of `example-plugins/` as a wasm32-wasip1
//! module and as a native executable, some also as wasm32-wasip2 components, and the C
//! plugins. Their paths are the constants of [`artifacts`].

/// Absolute paths of the example plugins, built from source by `build.rs`.
///
/// For every binary `<bin>` of package `<package>` of `example-plugins/` there are two
/// constants: `WASM_<NAME>` (the wasm32-wasip1 module) and `NATIVE_<NAME>` (the native
/// executable of the same source), where `<NAME>` is the binary's name in SHOUTY_SNAKE_CASE,
/// prefixed with the package's when they differ:
///
/// - scanners written with the SDK: `EICAR`, `SHA256_BLOCKLIST`, `FILETYPE`;
/// - hostile plugins (package `hostile`): `HOSTILE_LOOP`, `HOSTILE_MEMBOMB`,
///   `HOSTILE_FLOOD_STDOUT`, `HOSTILE_FLOOD_STDERR`, `HOSTILE_SLEEP`, `HOSTILE_BAD_JSON`,
///   `HOSTILE_TRAP`, `HOSTILE_PANIC`, `HOSTILE_SCRIPTED`, `HOSTILE_ESCAPE`,
///   `HOSTILE_EXIT_BIG`, `HOSTILE_FD_BOMB`, `HOSTILE_LOCKED_DIR`, `HOSTILE_DISK_FILL`.
///
/// Built for wasm32-wasip2 as well, as components: `WASM_P2_EICAR` (the same source as
/// `WASM_EICAR`; a component of the `scanner` world, through the SDK's `file_scanner_main!`) and
/// `WASM_P2_HOSTILE_<NAME>` for every hostile plugin (WASI p2 command components).
///
/// Written in C and built with clang for WASI: `WASM_C_PE_DETECTOR`
/// (`example-plugins/c/pe-detector.c`, Suspicious (2) for Windows PE executables).
///
/// The native script plugins, from the source tree: `NATIVE_SCRIPTS_DIR`,
/// `NATIVE_EXEC_DETECTOR`, `NATIVE_QUARANTINE`, `NATIVE_HOSTILE_SCRIPTS_DIR`,
/// `NATIVE_HOSTILE_GRANDCHILD`, `NATIVE_HOSTILE_FORK_AND_EXIT`, `NATIVE_HOSTILE_DAEMON`.
/// [`artifacts::ALL`] lists every constant as `(name, path)`.
///
/// What each plugin does is documented at the top of its source file.
pub mod artifacts {
    include!(concat!(env!("OUT_DIR"), "/plugins.rs"));
}
