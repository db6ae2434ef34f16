//! `eicar`: an example scanner that detects the EICAR anti-virus test string anywhere in a file.
//!
//! The file is streamed in 1 MiB chunks and searched with `memchr`'s `memmem` finder; a match
//! that spans two chunks is found by also searching the seam (the tail of the previous chunk
//! joined to the head of the next). Found: Infected (1), threat
//! `"EICAR-Test-File (not a virus)"`; otherwise No Threat Detected (0).
//!
//! The detection lives in this library so that the same code runs as the plugin (`main.rs`,
//! built for wasm32-wasip1, wasm32-wasip2 and natively) and natively in-process, for Cordon's
//! large-file benchmark (`host/benches/large_files.rs`).

use std::ops::ControlFlow;

use cordon_plugin_sdk::{Input, SampleFile, ScanReport};
use memchr::memmem::Finder;

/// The 68-byte EICAR test string.
pub const EICAR: &[u8] = br"X5O!P%@AP[4\PZX54(P^)7CC)7}$EICAR-STANDARD-ANTIVIRUS-TEST-FILE!$H+H*";

/// The threat name reported for a match.
pub const THREAT: &str = "EICAR-Test-File (not a virus)";

/// When this scanner's one "definition" was written (ms since epoch): 2026-01-01T00:00:00Z.
pub const DEF_TIME: u64 = 1_767_225_600_000;

/// The scanner: Infected when the file contains [`EICAR`], else No Threat Detected.
pub fn scan(_input: &Input, file: &mut SampleFile) -> std::io::Result<ScanReport> {
    let found = contains_eicar(file, SampleFile::DEFAULT_CHUNK_SIZE)?;
    let report = if found {
        ScanReport::infected(THREAT)
    } else {
        ScanReport::clean()
    };
    Ok(report.with_def_time(DEF_TIME))
}

/// Whether the file contains [`EICAR`], reading it in chunks of `chunk_size` bytes.
pub fn contains_eicar(file: &mut SampleFile, chunk_size: usize) -> std::io::Result<bool> {
    let finder = Finder::new(EICAR);
    let overlap = EICAR.len() - 1;
    // The last `overlap` bytes seen so far, and a scratch buffer for the seam.
    let mut tail: Vec<u8> = Vec::with_capacity(overlap);
    let mut seam: Vec<u8> = Vec::with_capacity(2 * overlap);
    let mut found = false;
    file.read_chunks(chunk_size, |chunk| {
        if !tail.is_empty() {
            seam.clear();
            seam.extend_from_slice(&tail);
            seam.extend_from_slice(&chunk[..chunk.len().min(overlap)]);
            found = finder.find(&seam).is_some();
        }
        found = found || finder.find(chunk).is_some();
        if found {
            return ControlFlow::Break(());
        }
        if chunk.len() >= overlap {
            tail.clear();
            tail.extend_from_slice(&chunk[chunk.len() - overlap..]);
        } else {
            tail.extend_from_slice(chunk);
            let excess = tail.len().saturating_sub(overlap);
            tail.drain(..excess);
        }
        ControlFlow::Continue(())
    })?;
    Ok(found)
}

#[cfg(test)]
mod tests {
    use super::*;
    use cordon_plugin_sdk::ResultCode;
    use cordon_plugin_sdk::testing::{self, Sample};

    #[test]
    fn detects_the_eicar_file() {
        let report = testing::scan(scan, Sample::bytes("eicar.com", EICAR)).unwrap();
        assert_eq!(report, ScanReport::infected(THREAT).with_def_time(DEF_TIME));
        assert_eq!(report.result(), ResultCode::Infected);
    }

    #[test]
    fn clean_files_are_clean() {
        for content in [&b""[..], b"hello", &EICAR[..EICAR.len() - 1], &EICAR[1..]] {
            let report = testing::scan(scan, Sample::bytes("a.txt", content)).unwrap();
            assert_eq!(report, ScanReport::clean().with_def_time(DEF_TIME));
        }
    }

    #[test]
    fn detects_the_string_anywhere_and_across_chunk_boundaries() {
        // Small chunks make the string span one, two or three chunks at every offset.
        for chunk_size in [1, 7, 67, 68, 69, 100] {
            for offset in 0..150 {
                let mut content = vec![b'.'; offset];
                content.extend_from_slice(EICAR);
                content.extend_from_slice(b"trailer");
                let found = testing::with_sample(
                    Sample::bytes("x.bin", &content),
                    |_: &Input, file: &mut SampleFile| contains_eicar(file, chunk_size),
                )
                .unwrap();
                assert!(found, "chunk size {chunk_size}, offset {offset}");
                // And a near miss is not a match.
                let last = content.len() - "trailer".len() - 1;
                content[last] = b'?';
                let found = testing::with_sample(
                    Sample::bytes("x.bin", &content),
                    |_: &Input, file: &mut SampleFile| contains_eicar(file, chunk_size),
                )
                .unwrap();
                assert!(!found, "chunk size {chunk_size}, offset {offset}");
            }
        }
    }

    #[test]
    fn detects_the_string_at_the_end_of_a_large_file() {
        let mut content = vec![0u8; 3 * SampleFile::DEFAULT_CHUNK_SIZE - 10];
        content.extend_from_slice(EICAR);
        let report = testing::scan(scan, Sample::bytes("big.bin", &content)).unwrap();
        assert_eq!(report.result(), ResultCode::Infected);
    }

    #[test]
    fn the_full_run_prints_the_contract_json() {
        let run = testing::run_scanner(scan, Sample::bytes("eicar.txt", EICAR));
        assert_eq!(run.exit_code, 0);
        assert_eq!(
            run.stdout,
            "{\"def_time\":1767225600000,\"scan_result_i\":1,\"threat_found\":\"EICAR-Test-File (not a virus)\"}\n"
        );
    }
}
