//! `sha256-blocklist`: an example scanner that blocks files by SHA-256.
//!
//! The blocklist is compiled in from `blocklist.txt` (lines `<sha256> <threat label>`, `#`
//! comments). The file's hash comes from the input's `file_info.sha256` when the host gave a
//! well-formed one, else it is computed by streaming the file. A listed hash gives Skipped
//! Infected (8, "Blocklisted" in MetaDefender v5) with threat `"Blocklisted: <label>"`;
//! anything else No Threat Detected (0).

use cordon_plugin_sdk::{Input, ResultCode, SampleFile, ScanReport, is_sha256_hex};
use sha2::{Digest, Sha256};

/// The blocklist, as written in `blocklist.txt`.
const BLOCKLIST: &str = include_str!("../blocklist.txt");

/// When the blocklist was last updated (ms since epoch): 2026-01-01T00:00:00Z.
const DEF_TIME: u64 = 1_767_225_600_000;

/// One blocklist entry.
#[derive(Debug, PartialEq, Eq)]
struct Entry<'a> {
    /// Lowercase hex.
    sha256: String,
    label: &'a str,
}

/// Parses the blocklist text; a malformed line is an error naming its line number.
fn parse_blocklist(text: &str) -> Result<Vec<Entry<'_>>, String> {
    let mut entries = Vec::new();
    for (index, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let (hash, label) = line
            .split_once(char::is_whitespace)
            .map(|(hash, label)| (hash, label.trim()))
            .unwrap_or((line, ""));
        if !is_sha256_hex(hash) || label.is_empty() {
            return Err(format!(
                "blocklist.txt line {}: expected `<sha256> <threat label>`, got {line:?}",
                index + 1
            ));
        }
        entries.push(Entry {
            sha256: hash.to_ascii_lowercase(),
            label,
        });
    }
    Ok(entries)
}

fn scan(input: &Input, file: &mut SampleFile) -> Result<ScanReport, String> {
    let blocklist = parse_blocklist(BLOCKLIST)?;
    let sha256 = match input.sha256().filter(|hash| is_sha256_hex(hash)) {
        Some(given) => given.to_ascii_lowercase(),
        None => sha256_of(file).map_err(|err| format!("cannot read {}: {err}", file.name()))?,
    };
    let report = match blocklist.iter().find(|entry| entry.sha256 == sha256) {
        Some(entry) => ScanReport::new(
            ResultCode::BLOCKLISTED,
            format!("Blocklisted: {}", entry.label),
        ),
        None => ScanReport::clean(),
    };
    Ok(report.with_def_time(DEF_TIME))
}

/// The file's SHA-256, lowercase hex, computed by streaming it.
fn sha256_of(file: &mut SampleFile) -> std::io::Result<String> {
    let mut hasher = Sha256::new();
    file.for_each_chunk(|chunk| hasher.update(chunk))?;
    Ok(hasher
        .finalize()
        .iter()
        .map(|byte| format!("{byte:02x}"))
        .collect())
}

// `fn main` (a WASI command on wasm32-wasip1, an executable natively) and, on wasm32-wasip2,
// the `scan` export of Cordon's `scanner` component world.
cordon_plugin_sdk::scanner_main!(scan);

#[cfg(test)]
mod tests {
    use super::*;
    use cordon_plugin_sdk::serde_json::json;
    use cordon_plugin_sdk::testing::{self, Sample, default_input};

    const EICAR: &[u8] = br"X5O!P%@AP[4\PZX54(P^)7CC)7}$EICAR-STANDARD-ANTIVIRUS-TEST-FILE!$H+H*";
    const EICAR_SHA256: &str = "275a021bbfb6489e54d471899f7db9d1663fc695ec2fe2a2c4538aabf651fd0f";

    fn with_sha256(name: &str, content: &[u8], sha256: &str) -> Sample {
        let mut input = default_input(name, content.len() as u64);
        input["file_info"]["sha256"] = json!(sha256);
        Sample::bytes(name, content).with_input(input)
    }

    #[test]
    fn the_blocklist_is_well_formed_and_lists_eicar() {
        let entries = parse_blocklist(BLOCKLIST).unwrap();
        assert!(entries.contains(&Entry {
            sha256: EICAR_SHA256.to_owned(),
            label: "EICAR-Test-File"
        }));
    }

    #[test]
    fn malformed_lines_are_reported() {
        assert!(parse_blocklist("# c\n\n").unwrap().is_empty());
        let err = parse_blocklist("# c\nabc Label\n").unwrap_err();
        assert!(err.contains("line 2"), "{err}");
        assert!(parse_blocklist(&format!("{EICAR_SHA256}\n")).is_err());
        assert_eq!(
            parse_blocklist(&format!("{}\tTab Label \n", EICAR_SHA256.to_uppercase())).unwrap(),
            [Entry {
                sha256: EICAR_SHA256.to_owned(),
                label: "Tab Label"
            }]
        );
    }

    #[test]
    fn computes_the_hash_when_the_input_has_none() {
        // The harness leaves hashes empty, so this computes the SHA-256.
        let report = testing::scan(scan, Sample::bytes("eicar.com", EICAR)).unwrap();
        assert_eq!(report.result(), ResultCode::SkippedInfected);
        assert_eq!(report.threat_found(), "Blocklisted: EICAR-Test-File");
        assert_eq!(report.def_time_ms(), DEF_TIME);

        let report =
            testing::scan(scan, Sample::bytes("marker.txt", "cordon blocklist test\n")).unwrap();
        assert_eq!(
            report.threat_found(),
            "Blocklisted: Cordon-Blocklist-Test-Marker"
        );

        let report = testing::scan(scan, Sample::bytes("a.txt", "hello")).unwrap();
        assert_eq!(report, ScanReport::clean().with_def_time(DEF_TIME));
    }

    #[test]
    fn uses_the_hash_from_the_input_when_well_formed() {
        // The content is harmless but the host says its hash is EICAR's: the given hash wins.
        let report = testing::scan(scan, with_sha256("a.txt", b"harmless", EICAR_SHA256)).unwrap();
        assert_eq!(report.result(), ResultCode::SkippedInfected);
        let report = testing::scan(
            scan,
            with_sha256("a.txt", b"harmless", &EICAR_SHA256.to_uppercase()),
        )
        .unwrap();
        assert_eq!(report.result(), ResultCode::SkippedInfected);
        // And the reverse: a clean given hash for EICAR content is trusted too.
        let clean = "0".repeat(64);
        let report = testing::scan(scan, with_sha256("e.com", EICAR, &clean)).unwrap();
        assert_eq!(report.result(), ResultCode::NoThreatDetected);
    }

    #[test]
    fn a_malformed_hash_in_the_input_is_ignored() {
        for bad in [
            "",
            "275a021b",
            "zz5a021bbfb6489e54d471899f7db9d1663fc695ec2fe2a2c4538aabf651fd0f",
        ] {
            let report = testing::scan(scan, with_sha256("e.com", EICAR, bad)).unwrap();
            assert_eq!(report.result(), ResultCode::SkippedInfected, "{bad:?}");
        }
    }

    #[test]
    fn hashes_large_files_in_chunks() {
        let content = vec![7u8; 2 * SampleFile::DEFAULT_CHUNK_SIZE + 3];
        let hash = testing::with_sample(
            Sample::bytes("big", &content),
            |_: &Input, file: &mut SampleFile| sha256_of(file),
        )
        .unwrap();
        let expected: String = Sha256::digest(&content)
            .iter()
            .map(|byte| format!("{byte:02x}"))
            .collect();
        assert_eq!(hash, expected);
        // A known value: the empty file.
        let empty = testing::with_sample(
            Sample::bytes("e", ""),
            |_: &Input, file: &mut SampleFile| sha256_of(file),
        )
        .unwrap();
        assert_eq!(
            empty,
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
    }
}
