//! What ships inside the `cordon` binary so that it runs with no set-up: the example plugins
//! (wasm modules built from `example-plugins/` by the build, native scripts) and the default
//! configuration that uses them.

use std::io;
use std::path::Path;

/// The configuration used when none is given (`cordon config default` prints it).
pub const DEFAULT_CONFIG: &str = include_str!("default-config.toml");

/// Built-in wasm modules, by the name used in `module = "builtin:<name>"`.
const MODULES: &[(&str, &[u8])] = &[
    ("eicar", include_bytes!(env!("CORDON_BUILTIN_EICAR"))),
    (
        "sha256-blocklist",
        include_bytes!(env!("CORDON_BUILTIN_SHA256_BLOCKLIST")),
    ),
    ("filetype", include_bytes!(env!("CORDON_BUILTIN_FILETYPE"))),
];

/// Built-in native scripts, by the name used in `command = "builtin:<name> ..."`.
const SCRIPTS: &[(&str, &str)] = &[
    (
        "exec-detector.sh",
        include_str!("../../example-plugins/native/exec-detector.sh"),
    ),
    (
        "quarantine.sh",
        include_str!("../../example-plugins/native/quarantine.sh"),
    ),
];

/// The bytes of built-in module `name`, with its name.
pub fn module(name: &str) -> Option<(&'static str, &'static [u8])> {
    MODULES.iter().find(|(n, _)| *n == name).copied()
}

/// Names of the built-in modules.
pub fn module_names() -> Vec<&'static str> {
    MODULES.iter().map(|(n, _)| *n).collect()
}

/// Names of the built-in scripts.
pub fn script_names() -> Vec<&'static str> {
    SCRIPTS.iter().map(|(n, _)| *n).collect()
}

/// Write the built-in scripts into `dir` (mode 0755), replacing stale copies, so that process
/// plugins can run them.
pub fn install_scripts(dir: &Path) -> io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::create_dir_all(dir)?;
    for (name, text) in SCRIPTS {
        let path = dir.join(name);
        let current = std::fs::read_to_string(&path).ok();
        if current.as_deref() != Some(*text) {
            let tmp = dir.join(format!(".{name}.tmp"));
            std::fs::write(&tmp, text)?;
            std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(0o755))?;
            std::fs::rename(&tmp, &path)?;
        }
    }
    Ok(())
}
