//! Smoke test: every plugin the build script built, and every script plugin, is where its
//! constant says.

use std::path::Path;

use cordon_tests::artifacts;

#[test]
fn every_artifact_exists() {
    assert!(!artifacts::ALL.is_empty());
    for (name, path) in artifacts::ALL {
        let path = Path::new(path);
        assert!(
            path.is_absolute(),
            "{name}: {} is not absolute",
            path.display()
        );
        assert!(path.exists(), "{name}: {} does not exist", path.display());
    }
}

#[test]
fn wasm_artifacts_are_wasm_modules_and_native_ones_are_executable() {
    use std::os::unix::fs::PermissionsExt;
    for (name, path) in artifacts::ALL {
        if name.starts_with("WASM_") {
            let bytes = std::fs::read(path).unwrap();
            assert_eq!(&bytes[..4], b"\0asm", "{name}");
        } else if !name.ends_with("_DIR") {
            let mode = std::fs::metadata(path).unwrap().permissions().mode();
            assert_ne!(mode & 0o111, 0, "{name}: {path} is not executable");
        }
    }
    for name in [
        "EICAR",
        "SHA256_BLOCKLIST",
        "FILETYPE",
        "HOSTILE_SCRIPTED",
        "HOSTILE_ESCAPE",
    ] {
        for prefix in ["WASM", "NATIVE"] {
            let full = format!("{prefix}_{name}");
            assert!(
                artifacts::ALL.iter().any(|(n, _)| *n == full),
                "{full} is missing"
            );
        }
    }
}
