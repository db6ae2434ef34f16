//! `cordon scan` and `cordon config` as a user runs them: the real binary, the built-in
//! default configuration, and the exit statuses the README documents (0 allowed, 1 blocked,
//! 2 could not scan).

use std::path::Path;
use std::process::{Command, Output};

use serde_json::Value;

const EICAR: &[u8] = br"X5O!P%@AP[4\PZX54(P^)7CC)7}$EICAR-STANDARD-ANTIVIRUS-TEST-FILE!$H+H*";

fn cordon(data_dir: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_cordon"))
        .args(args)
        .arg("--data-dir")
        .arg(data_dir)
        .env_remove("RUST_LOG")
        .output()
        .expect("the cordon binary runs")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

#[test]
fn scan_prints_the_result_and_exits_by_the_decision() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let clean = dir.path().join("notes.txt");
    std::fs::write(&clean, "nothing to see here\n").unwrap();
    let eicar = dir.path().join("eicar.com");
    std::fs::write(&eicar, EICAR).unwrap();

    let out = cordon(&data, &["scan", clean.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(0), "allowed: {}", text(&out.stderr));
    let result: Value = serde_json::from_slice(&out.stdout).expect("stdout is the result JSON");
    assert_eq!(result["process_info"]["result"], "Allowed");
    assert_eq!(result["process_info"]["progress_percentage"], 100);
    assert_eq!(result["file_info"]["display_name"], "notes.txt");
    assert_eq!(result["scan_results"]["total_avs"], 4);

    let out = cordon(&data, &["scan", eicar.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1), "blocked: {}", text(&out.stderr));
    let result: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(result["process_info"]["result"], "Blocked");
    assert_eq!(result["scan_results"]["scan_all_result_a"], "Infected");
    assert_eq!(
        result["scan_results"]["scan_details"]["EICAR"]["threat_found"],
        "EICAR-Test-File (not a virus)"
    );
    // The user's own file is untouched; the quarantine holds a copy.
    assert_eq!(std::fs::read(&eicar).unwrap(), EICAR);
    assert_eq!(
        std::fs::read_dir(data.join("quarantine")).unwrap().count(),
        1
    );
}

#[test]
fn summary_is_a_table_for_people() {
    let dir = tempfile::tempdir().unwrap();
    let eicar = dir.path().join("eicar.com");
    std::fs::write(&eicar, EICAR).unwrap();
    let out = cordon(
        &dir.path().join("data"),
        &["scan", "--summary", eicar.to_str().unwrap()],
    );
    assert_eq!(out.status.code(), Some(1));
    let table = text(&out.stdout);
    let header = table.lines().next().unwrap();
    for column in ["ENGINE", "VERDICT", "THREAT", "TIME", "FAILURE"] {
        assert!(header.contains(column), "{header}");
    }
    let eicar_row = table
        .lines()
        .find(|l| l.starts_with("EICAR "))
        .expect("an EICAR row");
    assert!(
        eicar_row.contains("1 Infected") && eicar_row.contains("EICAR-Test-File"),
        "{eicar_row}"
    );
    assert!(table.contains("Quarantine (post action)"), "{table}");
    assert!(table.contains("eicar.com: Blocked (Infected)"), "{table}");
}

#[test]
fn what_cannot_be_scanned_exits_2_with_a_reason() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");

    let out = cordon(
        &data,
        &["scan", dir.path().join("missing.bin").to_str().unwrap()],
    );
    assert_eq!(out.status.code(), Some(2));
    assert!(
        text(&out.stderr).contains("missing.bin"),
        "{}",
        text(&out.stderr)
    );
    assert!(out.stdout.is_empty());

    let sample = dir.path().join("a.txt");
    std::fs::write(&sample, "x").unwrap();
    let out = cordon(
        &data,
        &["scan", "--workflow", "Nope", sample.to_str().unwrap()],
    );
    assert_eq!(out.status.code(), Some(2));
    assert!(
        text(&out.stderr).contains("no workflow is named \"Nope\""),
        "{}",
        text(&out.stderr)
    );

    let config = dir.path().join("bad.toml");
    std::fs::write(
        &config,
        "[[plugin]]\nname = \"Slow\"\nrole = \"scanner\"\nruntime = \"webhook\"\nurl = \"http://127.0.0.1:9/\"\ntimeout_ms = 0\n\n[[workflow]]\nname = \"w\"\nscanners = [\"Slow\"]\n",
    )
    .unwrap();
    let out = cordon(
        &data,
        &[
            "scan",
            "--config",
            config.to_str().unwrap(),
            sample.to_str().unwrap(),
        ],
    );
    assert_eq!(out.status.code(), Some(2));
    let err = text(&out.stderr);
    assert!(
        err.contains("plugin \"Slow\": field `timeout_ms`: must be greater than 0"),
        "{err}"
    );
}

#[test]
fn config_default_and_check_describe_the_built_in_setup() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let out = Command::new(env!("CARGO_BIN_EXE_cordon"))
        .args(["config", "default"])
        .output()
        .unwrap();
    assert!(out.status.success());
    let default = text(&out.stdout);
    assert!(default.contains("module = \"builtin:eicar\""), "{default}");

    // The printed default is a valid configuration file in its own right.
    let path = dir.path().join("cordon.toml");
    std::fs::write(&path, &default).unwrap();
    let out = cordon(
        &data,
        &["config", "check", "--config", path.to_str().unwrap()],
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    let listing = text(&out.stdout);
    for plugin in [
        "EICAR",
        "SHA256 Blocklist",
        "FileType",
        "ExecDetector",
        "Quarantine",
    ] {
        assert!(listing.contains(plugin), "{listing}");
    }
    assert!(listing.contains("\"File scan\" (default)"), "{listing}");
    // The quarantine's sandbox lets it write its folder, and the listing says so.
    let quarantine = listing.lines().find(|l| l.contains("Quarantine")).unwrap();
    assert!(
        quarantine.ends_with(&format!(
            "sandbox also writes {}",
            data.join("quarantine").display()
        )),
        "{quarantine}"
    );
}
