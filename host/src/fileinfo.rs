//! What a file is: its hashes (md5, sha1, sha256 in one pass) and its type, detected from its
//! content (magic bytes, via the `infer` crate), never from its name.

use std::io::{self, Read};
use std::path::Path;

use md5::Md5;
use sha1::Sha1;
use sha2::{Digest, Sha256};

/// Hashes and type of a file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fingerprint {
    /// Size in bytes.
    pub size: u64,
    /// Lowercase hex.
    pub md5: String,
    /// Lowercase hex.
    pub sha1: String,
    /// Lowercase hex.
    pub sha256: String,
    /// MIME type.
    pub mime: String,
    /// For people, e.g. `PDF document`.
    pub description: String,
}

/// How many leading bytes type detection looks at.
const SNIFF_BYTES: usize = 8192;

/// Read `path` once: hash it and detect its type.
pub fn fingerprint(path: &Path) -> io::Result<Fingerprint> {
    let mut file = std::fs::File::open(path)?;
    let mut md5 = Md5::new();
    let mut sha1 = Sha1::new();
    let mut sha256 = Sha256::new();
    let mut head = Vec::with_capacity(SNIFF_BYTES);
    let mut buf = vec![0u8; 256 << 10];
    let mut size = 0u64;
    loop {
        let n = match file.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        let chunk = &buf[..n];
        md5.update(chunk);
        sha1.update(chunk);
        sha256.update(chunk);
        if head.len() < SNIFF_BYTES {
            let take = (SNIFF_BYTES - head.len()).min(n);
            head.extend_from_slice(&chunk[..take]);
        }
        size += n as u64;
    }
    let (mime, description) = detect_type(&head);
    Ok(Fingerprint {
        size,
        md5: hex::encode(md5.finalize()),
        sha1: hex::encode(sha1.finalize()),
        sha256: hex::encode(sha256.finalize()),
        mime,
        description,
    })
}

/// MIME type and description from the first bytes of a file.
pub fn detect_type(head: &[u8]) -> (String, String) {
    if head.is_empty() {
        return ("application/x-empty".into(), "Empty file".into());
    }
    if let Some(kind) = infer::get(head) {
        let ext = kind.extension().to_ascii_uppercase();
        let description = match kind.matcher_type() {
            infer::MatcherType::App => format!("{ext} executable"),
            infer::MatcherType::Archive => format!("{ext} archive"),
            infer::MatcherType::Audio => format!("{ext} audio"),
            infer::MatcherType::Book => format!("{ext} e-book"),
            infer::MatcherType::Doc => format!("{ext} document"),
            infer::MatcherType::Font => format!("{ext} font"),
            infer::MatcherType::Image => format!("{ext} image"),
            infer::MatcherType::Text => format!("{ext} text"),
            infer::MatcherType::Video => format!("{ext} video"),
            infer::MatcherType::Custom => format!("{ext} file"),
        };
        return (kind.mime_type().to_owned(), description);
    }
    if looks_like_text(head) {
        ("text/plain".into(), "Text".into())
    } else {
        ("application/octet-stream".into(), "Binary data".into())
    }
}

/// UTF-8 without control characters other than whitespace (a cut multi-byte character at the
/// end of the sniffed bytes is allowed).
fn looks_like_text(head: &[u8]) -> bool {
    let valid = match std::str::from_utf8(head) {
        Ok(s) => s,
        Err(e) if e.error_len().is_none() => {
            std::str::from_utf8(&head[..e.valid_up_to()]).unwrap_or_default()
        }
        Err(_) => return false,
    };
    valid
        .chars()
        .all(|c| !c.is_control() || matches!(c, '\n' | '\r' | '\t' | '\x0c'))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hashes_match_known_values() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("abc");
        std::fs::write(&p, b"abc").unwrap();
        let f = fingerprint(&p).unwrap();
        assert_eq!(f.size, 3);
        assert_eq!(f.md5, "900150983cd24fb0d6963f7d28e17f72");
        assert_eq!(f.sha1, "a9993e364706816aba3e25717850c26c9cd0d89d");
        assert_eq!(
            f.sha256,
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
        assert_eq!(f.mime, "text/plain");
    }

    #[test]
    fn types_come_from_content() {
        assert_eq!(detect_type(b"%PDF-1.7\n").0, "application/pdf");
        assert_eq!(detect_type(b"PK\x03\x04rest").0, "application/zip");
        let elf = std::fs::read("/bin/true").expect("/bin/true exists on Linux");
        assert_eq!(
            detect_type(&elf[..SNIFF_BYTES]).0,
            "application/x-executable"
        );
        assert_eq!(detect_type(b"").0, "application/x-empty");
        assert_eq!(
            detect_type(&[0u8, 1, 2, 3, 255]).0,
            "application/octet-stream"
        );
        assert_eq!(detect_type("héllo".as_bytes()).0, "text/plain");
    }
}
