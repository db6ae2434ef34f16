//! `eicar`: an example scanner that detects the EICAR anti-virus test string anywhere in a file.
//!
//! The file is streamed in chunks and searched with a skip search ([`find`]); a match that
//! spans two chunks is found by also searching the seam (the tail of the previous chunk joined
//! to the head of the next). Found: Infected (1), threat `"EICAR-Test-File (not a virus)"`;
//! otherwise No Threat Detected (0).
//!
//! Why a skip search rather than a SIMD one such as `memchr::memmem`: the string is 68 bytes
//! long, so one pair of adjacent bytes in every 67 is enough to rule out every place it could
//! start, and of the 65,536 possible pairs only 67 occur in it. The search reads those pairs
//! and compares the string only where a pair occurs in it: about one time in a thousand on
//! random data, never on zeros or lowercase text. That is less work than reading every byte,
//! even 32 at a time, and it needs no SIMD, which WebAssembly offers only 16 bytes wide: the
//! wasm build searches at about two thirds of the native speed, where `memmem` ran at a fifth,
//! and either way faster than the file can be read. Its worst case stays linear: a file made
//! of the string's own pairs costs a pass over the string's 67 pairs per 67 bytes, and each
//! comparison stops at its first differing byte.
//!
//! The detection lives in this library so that the same code runs as the plugin (`main.rs`,
//! built for wasm32-wasip1, wasm32-wasip2 and natively) and natively in-process, for Cordon's
//! large-file benchmark (`host/benches/large_files.rs`).

use std::ops::ControlFlow;

use cordon_plugin_sdk::{SampleFile, ScanReport};

/// The 68-byte EICAR test string.
pub const EICAR: &[u8] = br"X5O!P%@AP[4\PZX54(P^)7CC)7}$EICAR-STANDARD-ANTIVIRUS-TEST-FILE!$H+H*";

/// The threat name reported for a match.
pub const THREAT: &str = "EICAR-Test-File (not a virus)";

/// When this scanner's one "definition" was written (ms since epoch): 2026-01-01T00:00:00Z.
pub const DEF_TIME: u64 = 1_767_225_600_000;

/// The scanner: Infected when the file contains [`EICAR`], else No Threat Detected. It needs
/// nothing of the plugin's input, and the plugin does not read it (`file_scanner_main!`).
pub fn scan(file: &mut SampleFile) -> std::io::Result<ScanReport> {
    let found = contains_eicar(file, SampleFile::DEFAULT_CHUNK_SIZE)?;
    let report = if found {
        ScanReport::infected(THREAT)
    } else {
        ScanReport::clean()
    };
    Ok(report.with_def_time(DEF_TIME))
}

/// Which pairs of adjacent bytes (bigrams) occur in [`EICAR`]: bit `b0 << 8 | b1` of this
/// 65,536-bit set, for [`find`]. The string has 67 bigrams, so a random bigram is in the set
/// about one time in a thousand.
const BIGRAMS: [u64; 1024] = {
    let mut set = [0u64; 1024];
    let mut k = 0;
    while k + 1 < EICAR.len() {
        let bigram = (EICAR[k] as usize) << 8 | EICAR[k + 1] as usize;
        set[bigram >> 6] |= 1 << (bigram & 63);
        k += 1;
    }
    set
};

/// Where [`EICAR`] first occurs in `haystack`, if it does.
///
/// A bigram filter (a q-gram variant of Skip Search, Charras, Lecroq and Pehoushek, 1998):
/// every 67th pair of adjacent bytes is a probe, at positions 66, 133, 200 and so on, so that
/// each occurrence of the 68-byte string, which holds 67 pairs, contains exactly one probe. A
/// probe whose pair does not occur in the string rules out every occurrence around it;
/// otherwise each place the pair takes in the string gives one candidate start to compare. No
/// probe depends on another and the test almost never passes, so the processor predicts its
/// branch and overlaps the reads. Four probes are tested per round of the loop.
pub fn find(haystack: &[u8]) -> Option<usize> {
    const STRIDE: usize = EICAR.len() - 1;
    /// Probes per round of the fast loop: one loop test (and one check of wasmtime's epoch
    /// deadline, in a wasm build) for four probes.
    const ROUND: usize = 4;
    let in_set = |probe: usize| {
        let bigram = usize::from(haystack[probe]) << 8 | usize::from(haystack[probe + 1]);
        BIGRAMS[bigram >> 6] >> (bigram & 63) & 1 != 0
    };
    let mut probe = STRIDE - 1;
    // The fast loop: four probes with no branch between them, while all four pairs are whole.
    while probe + (ROUND - 1) * STRIDE + 1 < haystack.len() {
        let any = in_set(probe)
            | in_set(probe + STRIDE)
            | in_set(probe + 2 * STRIDE)
            | in_set(probe + 3 * STRIDE);
        if any {
            for p in (0..ROUND).map(|i| probe + i * STRIDE) {
                if let Some(start) = candidates(haystack, p) {
                    return Some(start);
                }
            }
        }
        probe += ROUND * STRIDE;
    }
    while probe + 1 < haystack.len() {
        if in_set(probe)
            && let Some(start) = candidates(haystack, probe)
        {
            return Some(start);
        }
        probe += STRIDE;
    }
    None
}

/// The earliest occurrence of [`EICAR`] whose probe is the pair at `probe`: each place the pair
/// takes in the string gives one candidate start, tried in increasing order.
fn candidates(haystack: &[u8], probe: usize) -> Option<usize> {
    let (b0, b1) = (haystack[probe], haystack[probe + 1]);
    (0..EICAR.len() - 1)
        .rev()
        .filter(|&k| EICAR[k] == b0 && EICAR[k + 1] == b1)
        // `k` is at most 66 and the first probe is at 66, so `probe - k` does not underflow.
        .map(|k| probe - k)
        .find(|&start| haystack.get(start..start + EICAR.len()) == Some(EICAR))
}

/// Whether the file contains [`EICAR`], reading it in chunks of `chunk_size` bytes.
pub fn contains_eicar(file: &mut SampleFile, chunk_size: usize) -> std::io::Result<bool> {
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
            found = find(&seam).is_some();
        }
        found = found || find(chunk).is_some();
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
    use cordon_plugin_sdk::testing::{self, Sample};
    use cordon_plugin_sdk::{Input, ResultCode};

    /// The plain search `find` must agree with.
    fn naive(haystack: &[u8]) -> Option<usize> {
        haystack.windows(EICAR.len()).position(|w| w == EICAR)
    }

    #[test]
    fn the_skip_search_agrees_with_a_plain_search() {
        // Haystacks the search handles differently: bytes absent from the string (no probe
        // passes), the string's own bytes (probes that pass, partial matches), its suffixes
        // and prefixes repeated, and the string itself at every offset with bytes spoiled.
        let mut haystacks: Vec<Vec<u8>> = vec![
            Vec::new(),
            vec![b'H'; 500],
            vec![0; 500],
            EICAR.repeat(3),
            EICAR[EICAR.len() - 10..].repeat(40),
            EICAR[..EICAR.len() - 1].repeat(5),
        ];
        let mut x: u32 = 0x9E37_79B9;
        for len in [67, 68, 69, 300] {
            // Pseudo-random text over the string's own alphabet: the search's worst inputs.
            let random: Vec<u8> = (0..len)
                .map(|_| {
                    x ^= x << 13;
                    x ^= x >> 17;
                    x ^= x << 5;
                    EICAR[x as usize % EICAR.len()]
                })
                .collect();
            haystacks.push(random);
        }
        // Offsets past four strides, so that the string falls in each probe of the fast loop's
        // rounds and in the loop that finishes the haystack.
        for offset in 0..300 {
            let mut h = vec![b'.'; offset];
            h.extend_from_slice(EICAR);
            h.extend_from_slice(&EICAR[..20]);
            for spoil in [None, Some(0), Some(1), Some(33), Some(66), Some(67)] {
                let mut h = h.clone();
                if let Some(i) = spoil {
                    h[offset + i] = b'?';
                }
                haystacks.push(h);
            }
        }
        for h in &haystacks {
            assert_eq!(
                find(h),
                naive(h),
                "haystack {:?}",
                String::from_utf8_lossy(h)
            );
        }
        // The string at two places: the first is the one found.
        let mut two = b"..".to_vec();
        two.extend_from_slice(EICAR);
        two.extend_from_slice(EICAR);
        assert_eq!(find(&two), Some(2));
    }

    #[test]
    fn detects_the_eicar_file() {
        let report = testing::scan_file(scan, Sample::bytes("eicar.com", EICAR)).unwrap();
        assert_eq!(report, ScanReport::infected(THREAT).with_def_time(DEF_TIME));
        assert_eq!(report.result(), ResultCode::Infected);
    }

    #[test]
    fn clean_files_are_clean() {
        for content in [&b""[..], b"hello", &EICAR[..EICAR.len() - 1], &EICAR[1..]] {
            let report = testing::scan_file(scan, Sample::bytes("a.txt", content)).unwrap();
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
        let report = testing::scan_file(scan, Sample::bytes("big.bin", &content)).unwrap();
        assert_eq!(report.result(), ResultCode::Infected);
    }

    #[test]
    fn the_full_run_prints_the_contract_json() {
        let run = testing::run_file_scanner(scan, Sample::bytes("eicar.txt", EICAR));
        assert_eq!(run.exit_code, 0);
        assert_eq!(
            run.stdout,
            "{\"def_time\":1767225600000,\"scan_result_i\":1,\"threat_found\":\"EICAR-Test-File (not a virus)\"}\n"
        );
    }
}
