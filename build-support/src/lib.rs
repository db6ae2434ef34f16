//! Build-script helpers: build Cordon's example plugins from source and find the artifacts.
//!
//! The example plugins (`example-plugins/`) are their own Cargo workspace. A build script of
//! the main workspace calls [`build_example_plugins`], which runs a nested
//! `cargo build --release` on that workspace, for wasm32-wasip1 or natively, into
//! `<main target dir>/example-plugins/` (its own target directory, so the nested build never
//! waits on a lock the outer build holds), and returns the path of every binary it built.
//! Nothing built is committed: a fresh checkout builds its plugins on its first build. The
//! pattern is the one of wasmtime's `crates/test-programs/artifacts/build.rs`.
//!
//! Use it as a build-dependency only:
//!
//! ```toml
//! [build-dependencies]
//! cordon-build-support.workspace = true
//! ```
//!
//! The host embeds the three example scanners it ships as built-ins; its `build.rs` would be:
//!
//! ```no_run
//! use cordon_build_support::{Target, build_example_plugins};
//!
//! fn main() {
//!     let built = build_example_plugins(Target::Wasm32Wasip1, &["eicar", "sha256-blocklist", "filetype"]);
//!     for (env, bin) in [
//!         ("CORDON_BUILTIN_EICAR", "eicar"),
//!         ("CORDON_BUILTIN_SHA256_BLOCKLIST", "sha256-blocklist"),
//!         ("CORDON_BUILTIN_FILETYPE", "filetype"),
//!     ] {
//!         println!("cargo:rustc-env={env}={}", built.path(bin).display());
//!     }
//! }
//! ```
//!
//! and the host's code `include_bytes!(env!("CORDON_BUILTIN_EICAR"))`. The `tests` crate's
//! `build.rs` builds every plugin for wasm32-wasip1 and natively, the SDK scanner `eicar` and the
//! hostile plugins also for wasm32-wasip2 (components), the C plugins with
//! [`build_c_plugins`], and writes path constants instead.
//!
//! What a call does:
//! - makes sure the Rust target is installed: when `$(rustc --print sysroot)/lib/rustlib/<triple>`
//!   is missing it runs `rustup target add <triple>`, and panics with a clear message if that
//!   fails (so a fresh machine needs no manual step);
//! - runs `cargo build --release --manifest-path <repo>/example-plugins/Cargo.toml --target
//!   <triple> [-p <package>]...` with the same `cargo` and `rustc` as the outer build, minus
//!   the environment of the outer build that must not leak into it (its target directory,
//!   target, rustflags, wrappers, package variables); on failure it panics with the nested
//!   build's output;
//! - prints `cargo:rerun-if-changed` for the example plugins' sources and manifests and the
//!   SDK's, so the build script runs again exactly when a plugin could have changed (the
//!   nested cargo then rebuilds only what changed).

use std::collections::BTreeMap;
use std::env;
use std::ffi::OsString;
use std::fmt;
use std::path::{Path, PathBuf};
use std::process::Command;

/// What to build the example plugins for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Target {
    /// `wasm32-wasip1`: WASI preview 1 modules, the `wasm` runtime. Binaries end in `.wasm`.
    Wasm32Wasip1,
    /// `wasm32-wasip2`: WASI preview 2 components. Binaries end in `.wasm`.
    Wasm32Wasip2,
    /// The target the calling build script builds for (its `TARGET`), for the `process`
    /// runtime. Built with an explicit `--target` so the output path is predictable.
    Native,
}

impl Target {
    /// The target triple. For [`Target::Native`], the `TARGET` variable Cargo gives build
    /// scripts (falling back to `HOST`).
    ///
    /// # Panics
    ///
    /// For [`Target::Native`] outside a build script (neither variable set).
    pub fn triple(self) -> String {
        match self {
            Target::Wasm32Wasip1 => "wasm32-wasip1".to_owned(),
            Target::Wasm32Wasip2 => "wasm32-wasip2".to_owned(),
            Target::Native => env::var("TARGET")
                .or_else(|_| env::var("HOST"))
                .expect("Target::Native needs TARGET or HOST: call it from a build script"),
        }
    }

    /// Whether binaries for this target are wasm (`<bin>.wasm`).
    pub fn is_wasm(self) -> bool {
        matches!(self, Target::Wasm32Wasip1 | Target::Wasm32Wasip2)
    }
}

impl fmt::Display for Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.triple())
    }
}

/// One built binary.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Artifact {
    /// The package it belongs to, for example `"hostile"`.
    pub package: String,
    /// The binary's name, for example `"flood-stdout"`.
    pub bin: String,
    /// Absolute path of the binary: `<dir>/<triple>/release/<bin>.wasm` for wasm,
    /// `<dir>/<triple>/release/<bin>` natively.
    pub path: PathBuf,
}

impl Artifact {
    /// A name for a Rust constant: the binary's name in SHOUTY_SNAKE_CASE, prefixed with the
    /// package's when they differ: `eicar` → `EICAR`, `sha256-blocklist` →
    /// `SHA256_BLOCKLIST`, `hostile`'s `flood-stdout` → `HOSTILE_FLOOD_STDOUT`.
    pub fn const_name(&self) -> String {
        if self.bin == self.package {
            shouty(&self.bin)
        } else {
            format!("{}_{}", shouty(&self.package), shouty(&self.bin))
        }
    }
}

/// `flood-stdout` → `FLOOD_STDOUT`.
fn shouty(name: &str) -> String {
    name.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_uppercase()
            } else {
                '_'
            }
        })
        .collect()
}

/// The binaries one [`build_example_plugins`] call built.
#[derive(Debug, Clone)]
pub struct Artifacts {
    /// What they were built for.
    pub target: Target,
    /// The target triple.
    pub triple: String,
    /// The nested build's target directory: `<main target dir>/example-plugins`.
    pub target_dir: PathBuf,
    /// Every binary, sorted by package then name.
    pub artifacts: Vec<Artifact>,
}

impl Artifacts {
    /// The binary named `bin`, if it was built.
    pub fn get(&self, bin: &str) -> Option<&Artifact> {
        self.artifacts.iter().find(|artifact| artifact.bin == bin)
    }

    /// The path of the binary named `bin`.
    ///
    /// # Panics
    ///
    /// When no binary of that name was built (a typo, or its package was not requested).
    pub fn path(&self, bin: &str) -> &Path {
        match self.get(bin) {
            Some(artifact) => &artifact.path,
            None => panic!(
                "no example plugin binary {bin:?} was built for {}; built: {:?}",
                self.triple,
                self.artifacts.iter().map(|a| &a.bin).collect::<Vec<_>>()
            ),
        }
    }

    /// Every binary.
    pub fn iter(&self) -> impl Iterator<Item = &Artifact> {
        self.artifacts.iter()
    }
}

/// The repository's root (the main workspace's directory).
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("build-support lives in the repository root")
        .to_path_buf()
}

/// `<repo>/example-plugins`: the example plugins' workspace.
pub fn example_plugins_dir() -> PathBuf {
    repo_root().join("example-plugins")
}

/// `<repo>/example-plugins/native`: the example native plugins (shell scripts).
pub fn native_scripts_dir() -> PathBuf {
    example_plugins_dir().join("native")
}

/// `<repo>/example-plugins/hostile/native`: the hostile native plugins (shell scripts).
pub fn hostile_native_scripts_dir() -> PathBuf {
    example_plugins_dir().join("hostile").join("native")
}

/// `<repo>/example-plugins/c`: the example plugins written in C (one `.c` file each).
pub fn c_plugins_dir() -> PathBuf {
    example_plugins_dir().join("c")
}

/// The Debian packages that [`build_c_plugins`] needs: clang, the WebAssembly linker, the WASI
/// C library and compiler-rt's builtins for wasm32.
pub const C_TOOLCHAIN_PACKAGES: &str = "clang lld wasi-libc libclang-rt-dev-wasm32";

/// Builds every C example plugin (`example-plugins/c/<name>.c`) to a WASI command module
/// (wasm32-wasip1) with clang, and returns them as the artifacts of package `"c"` (so
/// `pe-detector.c` has the constant name `C_PE_DETECTOR`).
///
/// Each file is compiled and linked alone: `clang --target=wasm32-wasi -O2 -Wall -Wextra
/// -Werror -Wl,--strip-all [--sysroot=<sysroot>] -o <dir>/<name>.wasm <name>.c`, into
/// `<main target dir>/example-plugins/c/wasm32-wasip1/`. The compiler is `$CORDON_WASI_CC`,
/// else `clang`. The sysroot is `$CORDON_WASI_SYSROOT`, else `/usr/share/wasi-sysroot` when it
/// exists (Debian 13 and later), else none: Debian 12's clang finds wasi-libc in
/// `/usr/lib/wasm32-wasi` by itself. Call it from a build script; it prints
/// `cargo:rerun-if-changed` for the sources and `cargo:rerun-if-env-changed` for both
/// variables.
///
/// # Panics
///
/// When there is no C source, or a compile fails (with the compiler's output and the Debian
/// packages to install, [`C_TOOLCHAIN_PACKAGES`]; `scripts/test` installs them).
pub fn build_c_plugins() -> Artifacts {
    let sources_dir = c_plugins_dir();
    println!("cargo:rerun-if-changed={}", sources_dir.display());
    println!("cargo:rerun-if-env-changed=CORDON_WASI_CC");
    println!("cargo:rerun-if-env-changed=CORDON_WASI_SYSROOT");
    let mut sources: Vec<PathBuf> = std::fs::read_dir(&sources_dir)
        .unwrap_or_else(|err| panic!("cannot read {}: {err}", sources_dir.display()))
        .filter_map(Result::ok)
        .map(|entry| entry.path())
        .filter(|path| path.extension().is_some_and(|ext| ext == "c"))
        .collect();
    sources.sort();
    assert!(
        !sources.is_empty(),
        "no C plugin source (*.c) in {}",
        sources_dir.display()
    );

    let target = Target::Wasm32Wasip1;
    let triple = target.triple();
    let target_dir = main_target_dir().join("example-plugins").join("c");
    let out_dir = target_dir.join(&triple);
    std::fs::create_dir_all(&out_dir)
        .unwrap_or_else(|err| panic!("cannot create {}: {err}", out_dir.display()));
    let cc = env::var_os("CORDON_WASI_CC").unwrap_or_else(|| "clang".into());
    let sysroot = env::var_os("CORDON_WASI_SYSROOT")
        .map(PathBuf::from)
        .or_else(|| Some(PathBuf::from("/usr/share/wasi-sysroot")).filter(|dir| dir.is_dir()));

    let mut artifacts = Vec::new();
    for source in sources {
        println!("cargo:rerun-if-changed={}", source.display());
        let stem = source
            .file_stem()
            .map(|stem| stem.to_string_lossy().into_owned())
            .unwrap_or_default();
        let output = out_dir.join(format!("{stem}.wasm"));
        let mut command = Command::new(&cc);
        command.arg("--target=wasm32-wasi").args([
            "-O2",
            "-Wall",
            "-Wextra",
            "-Werror",
            "-Wl,--strip-all",
        ]);
        if let Some(sysroot) = &sysroot {
            command.arg(format!("--sysroot={}", sysroot.display()));
        }
        command.arg("-o").arg(&output).arg(&source);
        let result = command.output();
        let failure = match &result {
            Ok(out) if out.status.success() => None,
            Ok(out) => Some(format!(
                "{}\n{}{}",
                out.status,
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            )),
            Err(err) => Some(format!("cannot run {}: {err}", cc.to_string_lossy())),
        };
        if let Some(failure) = failure {
            panic!(
                "building the C example plugin {} for WASI failed.\ncommand: {command:?}\n\
                 {failure}\nIt needs clang, wasm-ld and wasi-libc: on Debian, `apt-get install \
                 {C_TOOLCHAIN_PACKAGES}` (./scripts/test does it when it runs as root).",
                source.display()
            );
        }
        artifacts.push(Artifact {
            package: "c".to_owned(),
            bin: stem,
            path: output,
        });
    }
    Artifacts {
        target,
        triple,
        target_dir,
        artifacts,
    }
}

/// Builds example plugins in release mode for `target` and returns every binary built.
///
/// `packages` names the packages of the example-plugins workspace to build (`"eicar"`,
/// `"sha256-blocklist"`, `"filetype"`, `"hostile"`); empty builds all of them. Call it from a
/// build script: it reads `OUT_DIR` (to find the target directory) and prints
/// `cargo:rerun-if-changed` lines.
///
/// # Panics
///
/// When the target cannot be installed, the nested build fails (its output is in the panic
/// message), or an expected binary is missing.
pub fn build_example_plugins(target: Target, packages: &[&str]) -> Artifacts {
    let triple = target.triple();
    let plugins = example_plugins_dir();
    emit_rerun_if_changed(&plugins);
    ensure_target_installed(&triple);

    let target_dir = main_target_dir().join("example-plugins");
    let mut command = Command::new(env::var_os("CARGO").unwrap_or_else(|| "cargo".into()));
    command
        .current_dir(&plugins)
        .arg("build")
        .arg("--release")
        .arg("--manifest-path")
        .arg(plugins.join("Cargo.toml"))
        .arg("--target")
        .arg(&triple)
        .arg("--message-format=json-render-diagnostics");
    if packages.is_empty() {
        command.arg("--workspace");
    }
    for package in packages {
        command.arg("-p").arg(package);
    }
    scrub_env(&mut command);
    command.env("CARGO_TARGET_DIR", &target_dir);

    let output = command
        .output()
        .unwrap_or_else(|err| panic!("cannot run the nested cargo ({command:?}): {err}"));
    let stdout = String::from_utf8_lossy(&output.stdout);
    if !output.status.success() {
        panic!(
            "building the example plugins for {triple} failed ({}).\ncommand: {command:?}\n\
             --- stderr ---\n{}\n--- messages ---\n{}",
            output.status,
            String::from_utf8_lossy(&output.stderr),
            rendered_messages(&stdout),
        );
    }

    let mut artifacts = BTreeMap::new();
    for line in stdout.lines() {
        let Ok(message) = serde_json::from_str::<serde_json::Value>(line) else {
            continue;
        };
        if message["reason"] != "compiler-artifact" {
            continue;
        }
        let is_bin = message["target"]["kind"]
            .as_array()
            .is_some_and(|kinds| kinds.iter().any(|kind| kind == "bin"));
        let (Some(bin), Some(executable)) = (
            message["target"]["name"].as_str(),
            message["executable"].as_str(),
        ) else {
            continue;
        };
        if !is_bin {
            continue;
        }
        let package = package_name(&message).unwrap_or_else(|| bin.to_owned());
        let path = PathBuf::from(executable);
        assert!(
            path.is_file(),
            "the nested build reported {} but it is not there",
            path.display()
        );
        artifacts.insert(
            (package.clone(), bin.to_owned()),
            Artifact {
                package,
                bin: bin.to_owned(),
                path,
            },
        );
    }
    assert!(
        !artifacts.is_empty(),
        "building the example plugins for {triple} produced no binary (packages {packages:?})"
    );
    for package in packages {
        assert!(
            artifacts.keys().any(|(built, _)| built == package),
            "package {package:?} of the example plugins produced no binary for {triple}"
        );
    }
    Artifacts {
        target,
        triple,
        target_dir,
        artifacts: artifacts.into_values().collect(),
    }
}

/// The package name of a `compiler-artifact` message: from its `package_id`, which is
/// `path+file:///…/example-plugins/hostile#0.1.0` (or `…#name@0.1.0` when the directory and
/// package names differ) in current Cargo.
fn package_name(message: &serde_json::Value) -> Option<String> {
    let id = message["package_id"].as_str()?;
    if let Some((_, fragment)) = id.rsplit_once('#') {
        if let Some((name, _version)) = fragment.split_once('@') {
            return Some(name.to_owned());
        }
        let path = id.split_once('#')?.0;
        return path.rsplit('/').next().map(str::to_owned);
    }
    // The old format: "name version (source)".
    id.split_whitespace().next().map(str::to_owned)
}

/// The rendered compiler messages of a failed build, for the panic message.
fn rendered_messages(stdout: &str) -> String {
    stdout
        .lines()
        .filter_map(|line| serde_json::from_str::<serde_json::Value>(line).ok())
        .filter_map(|message| message["message"]["rendered"].as_str().map(str::to_owned))
        .collect::<Vec<_>>()
        .join("\n")
}

/// The main build's target directory: the nearest ancestor of `OUT_DIR` that Cargo marked with
/// `CACHEDIR.TAG`; else `CARGO_TARGET_DIR` if absolute; else `<repo>/target`.
fn main_target_dir() -> PathBuf {
    if let Some(out_dir) = env::var_os("OUT_DIR") {
        let out_dir = PathBuf::from(out_dir);
        if let Some(dir) = out_dir
            .ancestors()
            .skip(1)
            .find(|dir| dir.join("CACHEDIR.TAG").is_file())
        {
            return dir.to_path_buf();
        }
        // `<target>/[<triple>/]<profile>/build/<pkg>-<hash>/out`
        if let Some(build) = out_dir
            .ancestors()
            .find(|dir| dir.file_name().is_some_and(|name| name == "build"))
            && let Some(target) = build.parent().and_then(Path::parent)
        {
            return target.to_path_buf();
        }
    }
    if let Some(dir) = env::var_os("CARGO_TARGET_DIR").map(PathBuf::from)
        && dir.is_absolute()
    {
        return dir;
    }
    repo_root().join("target")
}

/// Removes from the nested cargo's environment what the outer build set for itself.
fn scrub_env(command: &mut Command) {
    const EXACT: &[&str] = &[
        "CARGO_TARGET_DIR",
        "CARGO_BUILD_TARGET",
        "CARGO_BUILD_TARGET_DIR",
        "CARGO_BUILD_RUSTFLAGS",
        "CARGO_ENCODED_RUSTFLAGS",
        "CARGO_ENCODED_RUSTDOCFLAGS",
        "RUSTFLAGS",
        "RUSTDOCFLAGS",
        "RUSTC_WORKSPACE_WRAPPER",
        "CARGO_PRIMARY_PACKAGE",
        "CARGO_CRATE_NAME",
        "CARGO_BIN_NAME",
        "CARGO_RUSTC_CURRENT_DIR",
        "OUT_DIR",
        "TARGET",
        "HOST",
        "PROFILE",
        "OPT_LEVEL",
        "DEBUG",
        "NUM_JOBS",
        "RUSTC_LINKER",
        "CARGO_MAKEFLAGS",
        "MAKEFLAGS",
        "MFLAGS",
    ];
    const PREFIXES: &[&str] = &[
        "CARGO_MANIFEST_",
        "CARGO_PKG_",
        "CARGO_CFG_",
        "CARGO_FEATURE_",
        "CARGO_PROFILE_",
        "DEP_",
    ];
    for (key, _) in env::vars_os() {
        let Some(key) = key.to_str() else { continue };
        if EXACT.contains(&key) || PREFIXES.iter().any(|prefix| key.starts_with(prefix)) {
            command.env_remove(key);
        }
    }
}

/// Installs the Rust target `triple` with rustup when the sysroot lacks it.
fn ensure_target_installed(triple: &str) {
    let rustc = env::var_os("RUSTC").unwrap_or_else(|| OsString::from("rustc"));
    let sysroot = Command::new(&rustc)
        .args(["--print", "sysroot"])
        .output()
        .ok()
        .filter(|output| output.status.success())
        .map(|output| PathBuf::from(String::from_utf8_lossy(&output.stdout).trim()));
    let Some(sysroot) = sysroot else {
        panic!("cannot run `{} --print sysroot`", rustc.to_string_lossy());
    };
    if sysroot.join("lib/rustlib").join(triple).is_dir() {
        return;
    }
    println!("cargo:warning=installing the Rust target {triple} (rustup target add {triple})");
    let status = Command::new("rustup")
        .args(["target", "add", triple])
        .status();
    match status {
        Ok(status) if status.success() => {}
        Ok(status) => panic!(
            "the Rust target {triple} is not installed and `rustup target add {triple}` failed \
             ({status}); install it by hand to build the example plugins"
        ),
        Err(err) => panic!(
            "the Rust target {triple} is not installed and rustup could not be run ({err}); \
             install the target for this toolchain ({}) to build the example plugins",
            sysroot.display()
        ),
    }
}

/// Prints `cargo:rerun-if-changed` for everything a plugin binary depends on in this
/// repository: the example-plugins manifests and every member directory (not a `target/`
/// inside it, which a direct `cargo test` there creates), the SDK's sources and manifest, and
/// the main workspace manifest the SDK inherits from.
fn emit_rerun_if_changed(plugins: &Path) {
    let root = repo_root();
    let mut paths = vec![
        plugins.join("Cargo.toml"),
        plugins.join("Cargo.lock"),
        // The wasm builds' flags.
        plugins.join(".cargo/config.toml"),
        root.join("plugin-sdk/src"),
        root.join("plugin-sdk/Cargo.toml"),
        root.join("Cargo.toml"),
        // The SDK's wasm32-wasip2 build generates bindings from the WIT package.
        root.join("wit"),
    ];
    if let Ok(entries) = std::fs::read_dir(plugins) {
        let mut dirs: Vec<PathBuf> = entries
            .filter_map(Result::ok)
            .map(|entry| entry.path())
            .filter(|path| path.is_dir())
            .filter(|path| {
                let name = path.file_name().unwrap_or_default();
                name != "target" && !name.to_string_lossy().starts_with('.')
            })
            .collect();
        dirs.sort();
        paths.extend(dirs);
    }
    for path in paths {
        println!("cargo:rerun-if-changed={}", path.display());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn constant_names() {
        let artifact = |package: &str, bin: &str| Artifact {
            package: package.to_owned(),
            bin: bin.to_owned(),
            path: PathBuf::new(),
        };
        assert_eq!(artifact("eicar", "eicar").const_name(), "EICAR");
        assert_eq!(
            artifact("sha256-blocklist", "sha256-blocklist").const_name(),
            "SHA256_BLOCKLIST"
        );
        assert_eq!(
            artifact("hostile", "flood-stdout").const_name(),
            "HOSTILE_FLOOD_STDOUT"
        );
        assert_eq!(artifact("c", "pe-detector").const_name(), "C_PE_DETECTOR");
    }

    #[test]
    fn package_names_from_ids() {
        let name = |id: &str| package_name(&serde_json::json!({ "package_id": id }));
        assert_eq!(
            name("path+file:///r/example-plugins/hostile#0.1.0").as_deref(),
            Some("hostile")
        );
        assert_eq!(
            name("path+file:///r/example-plugins/x#sha256-blocklist@0.1.0").as_deref(),
            Some("sha256-blocklist")
        );
        assert_eq!(
            name("eicar 0.1.0 (path+file:///r/example-plugins/eicar)").as_deref(),
            Some("eicar")
        );
    }

    #[test]
    fn the_example_plugins_are_where_expected() {
        assert!(example_plugins_dir().join("Cargo.toml").is_file());
        assert!(native_scripts_dir().join("exec-detector.sh").is_file());
        assert!(hostile_native_scripts_dir().join("grandchild.sh").is_file());
        assert!(c_plugins_dir().join("pe-detector.c").is_file());
    }
}
