//! `cordon plugin new NAME [--dir DIR]`: a new scanner plugin crate on the plugin SDK.
//!
//! The crate is ready as it is: `cargo test` passes (its unit tests use the SDK's harness),
//! `cargo build --release --target wasm32-wasip1` gives a WASI command module and `--target
//! wasm32-wasip2` a component of the `scanner` world, both accepted by `cordon plugin check`.
//! It is its own workspace (an empty `[workspace]` table), so it builds wherever it is created.
//!
//! It depends on the SDK by path: by default the `plugin-sdk/` directory of the Cordon checkout
//! this binary was built from, when it still exists; else by version (`cordon-plugin-sdk =
//! "0.1"`, which needs the SDK published to a registry the machine can reach).

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use serde::Serialize;

use super::ToolError;

/// The SDK directory of the checkout this binary was built from.
pub const BUILT_SDK_DIR: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../plugin-sdk");

/// The SDK version a scaffold asks for when it has no path to the SDK.
pub const SDK_VERSION_REQ: &str = "0.1";

/// Where the scaffold's SDK dependency comes from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum SdkSource {
    /// A path dependency on this directory.
    Path(PathBuf),
    /// A registry dependency with this version requirement.
    Version(String),
}

impl SdkSource {
    /// The checkout's `plugin-sdk/` when it exists (absolute), else [`SDK_VERSION_REQ`].
    pub fn default_for_this_build() -> SdkSource {
        match std::fs::canonicalize(BUILT_SDK_DIR) {
            Ok(dir) if dir.join("Cargo.toml").is_file() => SdkSource::Path(dir),
            _ => SdkSource::Version(SDK_VERSION_REQ.to_owned()),
        }
    }

    fn dependency_line(&self) -> String {
        match self {
            SdkSource::Path(dir) => format!(
                "cordon-plugin-sdk = {{ path = {} }}",
                toml_string(&dir.to_string_lossy())
            ),
            SdkSource::Version(req) => format!("cordon-plugin-sdk = {}", toml_string(req)),
        }
    }
}

/// What was created.
#[derive(Debug, Clone, Serialize)]
pub struct Scaffold {
    /// The crate's name.
    pub name: String,
    /// Its directory.
    pub dir: PathBuf,
    /// The files written, relative to `dir`.
    pub files: Vec<PathBuf>,
    /// Where its SDK dependency comes from.
    pub sdk: SdkSource,
}

impl Scaffold {
    /// What was made and what to do next, for people.
    pub fn render(&self) -> String {
        let mut out = String::new();
        let _ = writeln!(
            out,
            "created the scanner plugin {:?} in {}",
            self.name,
            self.dir.display()
        );
        for file in &self.files {
            let _ = writeln!(out, "  {}", file.display());
        }
        match &self.sdk {
            SdkSource::Path(dir) => {
                let _ = writeln!(out, "cordon-plugin-sdk from {}", dir.display());
            }
            SdkSource::Version(req) => {
                let _ = writeln!(
                    out,
                    "cordon-plugin-sdk {req} from the registry (this binary's checkout is gone; \
                     pass --sdk-path to use a local copy)"
                );
            }
        }
        let _ = writeln!(out, "next:");
        let _ = writeln!(out, "  cd {}", self.dir.display());
        let _ = writeln!(out, "  cargo test");
        let _ = writeln!(out, "  cargo build --release --target wasm32-wasip1");
        let _ = writeln!(
            out,
            "  cordon plugin check target/wasm32-wasip1/release/{}.wasm",
            self.name
        );
        let _ = writeln!(
            out,
            "  cordon plugin run target/wasm32-wasip1/release/{}.wasm SOME-FILE",
            self.name
        );
        out
    }
}

/// Check that `name` can be a Cargo package and binary name: an ASCII letter, then ASCII
/// letters, digits, `-` or `_`, at most 64 characters, and not a name Cargo reserves.
pub fn validate_name(name: &str) -> Result<(), ToolError> {
    const RESERVED: &[&str] = &[
        "test",
        "build",
        "deps",
        "examples",
        "core",
        "std",
        "alloc",
        "proc_macro",
        "proc-macro",
        "self",
        "super",
        "crate",
        "Self",
        "fn",
        "mod",
        "use",
        "struct",
        "enum",
        "impl",
        "match",
        "type",
        "let",
        "loop",
        "while",
        "for",
        "if",
        "else",
        "return",
        "true",
        "false",
    ];
    let invalid = |why: &str| {
        Err(ToolError::Invalid(format!(
            "{name:?} cannot be a plugin crate's name: {why}"
        )))
    };
    let mut chars = name.chars();
    match chars.next() {
        None => return invalid("it is empty"),
        Some(c) if !c.is_ascii_alphabetic() => {
            return invalid("it must start with an ASCII letter");
        }
        Some(_) => {}
    }
    if let Some(c) = chars.find(|c| !(c.is_ascii_alphanumeric() || *c == '-' || *c == '_')) {
        return invalid(&format!(
            "{c:?} is not allowed; use ASCII letters, digits, - and _"
        ));
    }
    if name.len() > 64 {
        return invalid("it is longer than 64 characters");
    }
    if RESERVED.contains(&name) {
        return invalid("Cargo or Rust reserves it");
    }
    Ok(())
}

/// Create the crate `name` in `dir` (default: `./<name>`), which must not exist or be empty.
pub fn scaffold(name: &str, dir: Option<&Path>, sdk: SdkSource) -> Result<Scaffold, ToolError> {
    validate_name(name)?;
    let dir = dir.map_or_else(|| PathBuf::from(name), Path::to_path_buf);
    if let Ok(mut entries) = std::fs::read_dir(&dir)
        && entries.next().is_some()
    {
        return Err(ToolError::Invalid(format!(
            "{} already exists and is not empty",
            dir.display()
        )));
    }
    let files: [(&str, String); 5] = [
        ("Cargo.toml", cargo_toml(name, &sdk)),
        (".cargo/config.toml", CARGO_CONFIG.to_owned()),
        ("src/main.rs", MAIN_RS.replace("{{name}}", name)),
        ("README.md", README_MD.replace("{{name}}", name)),
        (".gitignore", "/target\n".to_owned()),
    ];
    let mut written = Vec::new();
    for (relative, text) in files {
        let path = dir.join(relative);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).map_err(|source| ToolError::Write {
                path: parent.to_path_buf(),
                source,
            })?;
        }
        std::fs::write(&path, text).map_err(|source| ToolError::Write {
            path: path.clone(),
            source,
        })?;
        written.push(PathBuf::from(relative));
    }
    Ok(Scaffold {
        name: name.to_owned(),
        dir: std::path::absolute(&dir).unwrap_or(dir),
        files: written,
        sdk,
    })
}

fn cargo_toml(name: &str, sdk: &SdkSource) -> String {
    format!(
        r#"[package]
name = "{name}"
version = "0.1.0"
edition = "2024"
publish = false

[dependencies]
{sdk}

# A plugin is small, runs often and is compiled once by the host: optimise it fully and keep
# it lean. (On wasm a panic traps whatever this says; natively it aborts.)
[profile.release]
opt-level = 3
lto = true
codegen-units = 1
panic = "abort"
strip = true

# Its own workspace, also when it sits inside another one.
[workspace]
"#,
        sdk = sdk.dependency_line()
    )
}

/// A TOML basic string.
fn toml_string(text: &str) -> String {
    toml::Value::String(text.to_owned()).to_string()
}

const MAIN_RS: &str = r#"//! `{{name}}`: a Cordon scanner plugin.
//!
//! It reports a file as Suspicious (2) when it contains the marker `DO-NOT-SHIP` anywhere
//! (including across the boundary between two chunks read), and as No Threat Detected (0)
//! otherwise. Replace `scan` with your own detection; keep it a function from the input and
//! the open file to a report, and `scanner_main!` keeps it a valid plugin for every target.

use std::ops::ControlFlow;

use cordon_plugin_sdk::{Input, SampleFile, ScanReport};

/// When this scanner's rules last changed, in ms since the Unix epoch (2026-01-01T00:00:00Z).
/// A constant: a plugin's clock is not to be trusted, and the host never needs one.
const DEF_TIME: u64 = 1_767_225_600_000;

/// What this scanner looks for.
const MARKER: &[u8] = b"DO-NOT-SHIP";

/// The threat name it reports.
const THREAT: &str = "Marker.DoNotShip";

fn scan(_input: &Input, file: &mut SampleFile) -> std::io::Result<ScanReport> {
    let report = if contains_marker(file, SampleFile::DEFAULT_CHUNK_SIZE)? {
        ScanReport::suspicious(THREAT)
    } else {
        ScanReport::clean()
    };
    Ok(report.with_def_time(DEF_TIME))
}

/// Whether the file contains [`MARKER`], read in chunks of `chunk_size` bytes: the file is
/// streamed, never held whole in memory (wasm plugins have a memory cap).
fn contains_marker(file: &mut SampleFile, chunk_size: usize) -> std::io::Result<bool> {
    // The last MARKER.len() - 1 bytes seen, followed by the current chunk.
    let mut window: Vec<u8> = Vec::new();
    let mut found = false;
    file.read_chunks(chunk_size, |chunk| {
        window.extend_from_slice(chunk);
        found = window.windows(MARKER.len()).any(|w| w == MARKER);
        let keep = window.len().min(MARKER.len() - 1);
        window.drain(..window.len() - keep);
        if found {
            ControlFlow::Break(())
        } else {
            ControlFlow::Continue(())
        }
    })?;
    Ok(found)
}

// `fn main` (a WASI command on wasm32-wasip1, an executable natively) and, on wasm32-wasip2,
// the `scan` export of Cordon's `scanner` component world. A scanner that needs nothing of
// its input can be a function of the file alone, `fn scan(file: &mut SampleFile)`, under
// `file_scanner_main!`: the plugin then does not read the input, which takes about a quarter
// off a wasm scan of a small file.
cordon_plugin_sdk::scanner_main!(scan);

#[cfg(test)]
mod tests {
    use super::*;
    use cordon_plugin_sdk::ResultCode;
    use cordon_plugin_sdk::testing::{self, Sample};

    #[test]
    fn finds_the_marker() {
        let report = testing::scan(scan, Sample::bytes("notes.txt", "x DO-NOT-SHIP y")).unwrap();
        assert_eq!(report.result(), ResultCode::Suspicious);
        assert_eq!(report.threat_found(), THREAT);
    }

    #[test]
    fn other_files_are_clean() {
        for content in ["", "hello", "DO-NOT-SHI", "O-NOT-SHIP"] {
            let report = testing::scan(scan, Sample::bytes("a.txt", content)).unwrap();
            assert_eq!(report, ScanReport::clean().with_def_time(DEF_TIME), "{content:?}");
        }
    }

    #[test]
    fn finds_the_marker_across_chunks() {
        for chunk_size in [1, 3, 11, 64] {
            for offset in 0..40 {
                let mut content = vec![b'.'; offset];
                content.extend_from_slice(MARKER);
                let found = testing::with_sample(
                    Sample::bytes("x.bin", &content),
                    |_: &Input, file: &mut SampleFile| contains_marker(file, chunk_size),
                )
                .unwrap();
                assert!(found, "chunk size {chunk_size}, offset {offset}");
            }
        }
    }

    #[test]
    fn the_full_run_prints_the_contract_json() {
        let run = testing::run_scanner(scan, Sample::bytes("a.txt", "DO-NOT-SHIP"));
        assert_eq!(run.exit_code, 0, "{}", run.stderr);
        assert_eq!(
            run.stdout,
            "{\"def_time\":1767225600000,\"scan_result_i\":2,\"threat_found\":\"Marker.DoNotShip\"}\n"
        );
    }

    #[test]
    fn the_component_path_gives_the_same_report() {
        let sample = || Sample::bytes("a.txt", "DO-NOT-SHIP");
        assert_eq!(
            testing::scan_component(scan, sample()),
            Ok(testing::scan(scan, sample()).unwrap())
        );
    }
}
"#;

/// The wasm builds' flags: the example plugins' own file, so that the two cannot drift apart.
const CARGO_CONFIG: &str = include_str!("../../../example-plugins/.cargo/config.toml");

const README_MD: &str = r#"# {{name}}

A [Cordon](https://github.com/cordon-scan/cordon) scanner plugin, written with the plugin SDK
(`cordon-plugin-sdk`). It reports files that contain `DO-NOT-SHIP` as Suspicious; make
`scan` in `src/main.rs` your own.

```sh
rustup target add wasm32-wasip1 wasm32-wasip2       # once
cargo test                                          # the unit tests, natively
cargo build --release --target wasm32-wasip1        # a WASI command module
cargo build --release --target wasm32-wasip2        # a component of the cordon:plugin/scanner world
cordon plugin check target/wasm32-wasip1/release/{{name}}.wasm          # does the host accept it?
cordon plugin run target/wasm32-wasip1/release/{{name}}.wasm SOME-FILE  # run it as the host does
```

Then add it to a Cordon configuration:

```toml
[[plugin]]
name = "{{name}}"
role = "scanner"
runtime = "wasm"
module = "target/wasm32-wasip1/release/{{name}}.wasm"
```
"#;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_must_be_crate_names() {
        for good in ["my-scanner", "x", "Scanner_2"] {
            assert!(validate_name(good).is_ok(), "{good}");
        }
        for bad in [
            "",
            "2fast",
            "-x",
            "my scanner",
            "é",
            "test",
            "self",
            &"x".repeat(65),
        ] {
            assert!(validate_name(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn a_scaffold_is_written_and_refuses_to_overwrite() {
        let temp = tempfile::tempdir().unwrap();
        let dir = temp.path().join("marker");
        let sdk = SdkSource::Path(PathBuf::from("/opt/sdk \"quoted\""));
        let made = scaffold("marker", Some(&dir), sdk).unwrap();
        assert_eq!(made.files.len(), 5);
        let config: toml::Table = std::fs::read_to_string(dir.join(".cargo/config.toml"))
            .unwrap()
            .parse()
            .unwrap();
        for target in ["wasm32-wasip1", "wasm32-wasip2"] {
            let flags = config["target"][target]["rustflags"].as_array().unwrap();
            assert!(
                flags
                    .iter()
                    .any(|f| f.as_str() == Some("link-arg=--initial-heap=1048576")),
                "{target}: {flags:?}"
            );
        }
        let manifest = std::fs::read_to_string(dir.join("Cargo.toml")).unwrap();
        let parsed: toml::Table = manifest.parse().unwrap();
        assert_eq!(
            parsed["dependencies"]["cordon-plugin-sdk"]["path"].as_str(),
            Some("/opt/sdk \"quoted\"")
        );
        assert_eq!(parsed["package"]["name"].as_str(), Some("marker"));
        assert!(parsed.contains_key("workspace"));
        let main = std::fs::read_to_string(dir.join("src/main.rs")).unwrap();
        assert!(main.contains("scanner_main!(scan)"));
        assert!(!main.contains("{{name}}"));
        let again = scaffold("marker", Some(&dir), SdkSource::Version("0.1".into()));
        assert!(matches!(again, Err(ToolError::Invalid(m)) if m.contains("not empty")));
    }

    #[test]
    fn the_built_sdk_dir_is_this_checkout() {
        assert!(Path::new(BUILT_SDK_DIR).join("src/lib.rs").is_file());
        assert!(matches!(
            SdkSource::default_for_this_build(),
            SdkSource::Path(_)
        ));
    }
}
