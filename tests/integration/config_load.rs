//! Loading a configuration: the built-in default works on a fresh data directory (and refuses
//! to scan what is not a regular file), and bad configuration is refused at load with a
//! message naming the plugin, the field and the problem, for every problem at once.

use cordon::host::{Host, HostError, ScanError};
use cordon_tests::artifacts::{NATIVE_QUARANTINE, WASM_EICAR, WASM_HOSTILE_LOOP, WASM_P2_EICAR};

fn load(toml: &str) -> Result<Host, HostError> {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("not-wasm.wasm"),
        b"MZ\x90\0 this is a PE file",
    )
    .unwrap();
    std::fs::write(
        dir.path().join("imports-env.wasm"),
        wat::parse_str(
            r#"(module (import "env" "open_socket" (func)) (memory (export "memory") 1)
                       (func (export "_start")))"#,
        )
        .unwrap(),
    )
    .unwrap();
    std::fs::write(
        dir.path().join("library.wasm"),
        wat::parse_str(r#"(module (memory (export "memory") 1) (func (export "scan")))"#).unwrap(),
    )
    .unwrap();
    let path = dir.path().join("cordon.toml");
    std::fs::write(&path, toml).unwrap();
    let result = Host::load(Some(&path), &dir.path().join("data"));
    // Keep the directory alive until loading is done.
    drop(dir);
    result
}

fn refusal(toml: &str) -> String {
    match load(toml) {
        Ok(_) => panic!("configuration should be refused:\n{toml}"),
        Err(e) => e.to_string(),
    }
}

#[tokio::test]
async fn the_built_in_default_scans_on_a_fresh_data_directory() {
    let dir = tempfile::tempdir().unwrap();
    let host = Host::load(None, &dir.path().join("data")).expect("the default loads");
    let eicar = dir.path().join("eicar.com");
    std::fs::write(
        &eicar,
        br"X5O!P%@AP[4\PZX54(P^)7CC)7}$EICAR-STANDARD-ANTIVIRUS-TEST-FILE!$H+H*",
    )
    .unwrap();
    let result = host.scan_path(&eicar, None, "tester").await.unwrap();
    assert_eq!(result.process_info.result, "Blocked");
    assert_eq!(result.scan_results.scan_all_result_i.value(), 1);
    assert_eq!(result.scan_results.total_avs, 4);
    for engine in ["EICAR", "SHA256 Blocklist", "FileType", "ExecDetector"] {
        let e = &result.scan_results.scan_details[engine];
        assert!(e.failure.is_none(), "{engine}: {:?}", e.failure);
    }
    // The quarantine post action copied the blocked file into the data directory.
    let quarantined: Vec<_> = std::fs::read_dir(dir.path().join("data/quarantine"))
        .unwrap()
        .collect();
    assert_eq!(quarantined.len(), 1);
    assert_eq!(
        result.process_info.post_processing.actions_ran,
        "Quarantine"
    );

    // A second host on the same data directory loads the modules from the cache.
    let again = Host::load(None, &dir.path().join("data")).unwrap();
    assert!(again.inventory.plugin("EICAR").unwrap().info().from_cache);
}

/// `cordon scan` on something that is not a regular file says what it is and does not wait:
/// a FIFO with no writer used to hold it forever.
#[test]
fn scanning_what_is_not_a_regular_file_is_refused_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let host =
        std::sync::Arc::new(Host::load(None, &dir.path().join("data")).expect("the default loads"));
    let fifo = dir.path().join("fifo");
    let made = std::process::Command::new("mkfifo")
        .arg(&fifo)
        .status()
        .unwrap();
    assert!(made.success());
    for (path, what) in [
        (fifo.clone(), "a FIFO"),
        (std::path::PathBuf::from("/dev/zero"), "a character device"),
        (dir.path().to_owned(), "a directory"),
    ] {
        // On a thread and runtime of its own, so that a scan that blocks fails the test (the
        // thread is left behind) instead of hanging it.
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn({
            let (host, path) = (host.clone(), path.clone());
            move || {
                let runtime = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .unwrap();
                let _ = tx.send(runtime.block_on(host.scan_path(&path, None, "tester")));
            }
        });
        let scanned = rx
            .recv_timeout(std::time::Duration::from_secs(60))
            .unwrap_or_else(|_| panic!("scanning {} blocked", path.display()));
        let e = scanned.expect_err("refused");
        assert!(matches!(e, ScanError::Io { .. }), "{e:?}");
        assert_eq!(
            e.to_string(),
            format!(
                "cannot read {}: it is {what}, not a regular file",
                path.display()
            )
        );
    }
}

#[test]
fn binaries_the_host_would_refuse_are_refused_at_load_with_the_plugin_named() {
    let message = refusal(
        r#"
        [[plugin]]
        name = "NotWasm"
        role = "scanner"
        runtime = "wasm"
        module = "not-wasm.wasm"

        [[plugin]]
        name = "Networked"
        role = "scanner"
        runtime = "wasm"
        module = "imports-env.wasm"

        [[plugin]]
        name = "Library"
        role = "scanner"
        runtime = "wasm"
        module = "library.wasm"

        [[plugin]]
        name = "Ghost"
        role = "scanner"
        runtime = "process"
        command = "/nonexistent/scanner --fast"

        [[plugin]]
        name = "Gopher"
        role = "post_action"
        runtime = "webhook"
        url = "gopher://127.0.0.1/"

        [[workflow]]
        name = "w"
        scanners = ["NotWasm"]
        "#,
    );
    assert!(
        message.contains("5 plugins could not be loaded"),
        "{message}"
    );
    assert!(
        message.contains("plugin \"NotWasm\"") && message.contains("is not WebAssembly"),
        "{message}"
    );
    assert!(
        message.contains("plugin \"Networked\"") && message.contains("imports `env::open_socket`"),
        "{message}"
    );
    assert!(
        message.contains("plugin \"Library\"") && message.contains("exports no `_start`"),
        "{message}"
    );
    assert!(
        message.contains("plugin \"Ghost\"") && message.contains("/nonexistent/scanner"),
        "{message}"
    );
    assert!(
        message.contains("plugin \"Gopher\"") && message.contains("http"),
        "{message}"
    );
}

/// An SDK plugin starts with 1 MiB of stack and 1 MiB of heap (the example plugins' build
/// flags): under a `max_memory_bytes` of 1 MiB it could never be instantiated, so it is refused
/// at load, as a module and as a component, with what it needs; with 4 MiB it loads.
#[test]
fn a_memory_limit_below_what_the_module_needs_to_start_is_refused_at_load() {
    let config = |limit: u64| {
        format!(
            r#"
            [[plugin]]
            name = "Tight"
            role = "scanner"
            runtime = "wasm"
            module = "{WASM_EICAR}"
            max_memory_bytes = {limit}

            [[plugin]]
            name = "Tight component"
            role = "scanner"
            runtime = "wasm"
            module = "{WASM_P2_EICAR}"
            max_memory_bytes = {limit}

            [[workflow]]
            name = "w"
            scanners = ["Tight", "Tight component"]
            "#
        )
    };
    let message = refusal(&config(1 << 20));
    assert!(
        message.contains("2 plugins could not be loaded"),
        "{message}"
    );
    for name in ["Tight", "Tight component"] {
        let line = message
            .lines()
            .find(|l| l.contains(&format!("plugin \"{name}\"")))
            .unwrap_or_else(|| panic!("{name} is not named:\n{message}"));
        assert!(
            line.contains("limits.max_memory_bytes allows (1.0 MiB (1048576 bytes))")
                && line.contains("just to start")
                && line.contains("Raise max_memory_bytes to at least"),
            "{line}"
        );
    }
    load(&config(4 << 20)).expect("4 MiB is enough to start the example plugin");
}

#[test]
fn configuration_errors_are_all_reported_with_plugin_and_field() {
    let message = refusal(&format!(
        r#"
        [[plugin]]
        name = "A name far too long"
        role = "scanner"
        runtime = "wasm"
        module = "{WASM_EICAR}"

        [[plugin]]
        name = "Dup"
        role = "scanner"
        runtime = "wasm"
        module = "{WASM_EICAR}"

        [[plugin]]
        name = "Dup"
        role = "scanner"
        runtime = "wasm"
        module = "{WASM_HOSTILE_LOOP}"
        timeout_ms = 0

        [[plugin]]
        name = "Missing"
        role = "scanner"
        runtime = "wasm"
        module = "no/such/file.wasm"

        [[plugin]]
        name = "Unknown"
        role = "scanner"
        runtime = "process"
        command = "{NATIVE_QUARANTINE}"
        colour = "blue"

        [[workflow]]
        name = "w"
        scanners = ["Dup", "Nobody"]
        "#
    ));
    for expected in [
        "plugin \"A name far too long\": field `name`",
        "plugin \"Dup\": field `timeout_ms`: must be greater than 0",
        "plugin \"Missing\": field `module`: module file",
        "plugin \"Unknown\": unknown field `colour`",
        "workflow \"w\": field `scanners`: no plugin is named \"Nobody\"",
    ] {
        assert!(
            message.contains(expected),
            "missing {expected:?} in:\n{message}"
        );
    }
}
