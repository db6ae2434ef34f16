//! `filetype`: an example scanner that reports files whose content does not match their
//! extension (an executable named `invoice.pdf`).
//!
//! The content type comes from the file's magic bytes (the `infer` crate, on the first
//! 64 KiB); the extension from the file name (the last component of the path). Each known
//! extension lists the content types it accepts, synonyms included (`jpg`/`jpeg`,
//! `tif`/`tiff`, `htm`/`html`, a `.docx` or `.jar` that is a plain zip, ...). A known
//! extension whose content is a known type it does not accept gives File type Mismatch (17)
//! with a threat like `"extension .pdf but content is application/x-executable (elf)"`.
//! Unknown content, no extension or an unknown extension is not a mismatch: No Threat
//! Detected (0). Text extensions (`.txt`, `.json`, source code, ...) accept any content that
//! looks like text, so a text file that happens to start with two "magic" letters (`BM`,
//! `MZ`) is not flagged.

use cordon_plugin_sdk::{ResultCode, SampleFile, ScanReport};

/// How much of the file the content detection looks at.
const HEAD_BYTES: usize = 64 * 1024;

/// When the extension table was last updated (ms since epoch): 2026-01-01T00:00:00Z.
const DEF_TIME: u64 = 1_767_225_600_000;

/// Content types (by `infer`'s extension name) that text extensions accept.
const TEXT: &[&str] = &["html", "xml", "sh", "pem"];
/// Zip-based formats: each is also a valid zip, and a zip may be any of them.
const ZIP: &[&str] = &[
    "zip", "docx", "xlsx", "pptx", "odt", "ods", "odp", "epub", "ora",
];
/// OLE compound files (legacy Office, MSI): `infer` cannot always tell them apart.
const OLE: &[&str] = &["doc", "xls", "ppt", "msi"];
/// ISO base media files (the `ftyp` family).
const ISO_MEDIA: &[&str] = &["mp4", "m4v", "m4a", "mov"];
/// Portable executables.
const PE: &[&str] = &["exe", "dll"];

/// Known extensions and the content types they accept. An extension may appear once.
const TABLE: &[(&[&str], &[&[&str]])] = &[
    // Images.
    (&["jpg", "jpeg", "jpe", "jfif", "pjpeg", "pjp"], &[&["jpg"]]),
    (&["png", "apng"], &[&["png"]]),
    (&["gif"], &[&["gif"]]),
    (&["webp"], &[&["webp"]]),
    (&["bmp", "dib"], &[&["bmp"]]),
    (&["tif", "tiff", "cr2"], &[&["tif", "cr2"]]),
    (&["ico"], &[&["ico"]]),
    (&["psd"], &[&["psd"]]),
    (&["heic", "heif", "avif"], &[&["heif", "avif"]]),
    (&["jxl"], &[&["jxl"]]),
    (&["jp2", "j2k", "jpf", "jpx"], &[&["jp2"]]),
    (&["jxr", "wdp", "hdp"], &[&["jxr"]]),
    (&["djvu", "djv"], &[&["djvu"]]),
    (&["dwg"], &[&["dwg"]]),
    // Documents.
    (&["pdf"], &[&["pdf"]]),
    (&["ps", "eps"], &[&["ps"]]),
    (&["rtf"], &[&["rtf"]]),
    (
        &[
            "doc", "dot", "xls", "xlt", "ppt", "pot", "pps", "msi", "msp", "msg",
        ],
        &[OLE],
    ),
    (&["docx", "docm", "dotx", "dotm"], &[ZIP]),
    (&["xlsx", "xlsm", "xltx", "xltm"], &[ZIP]),
    (&["pptx", "pptm", "potx", "ppsx"], &[ZIP]),
    (&["odt", "ott", "ods", "ots", "odp", "otp", "odg"], &[ZIP]),
    (&["epub"], &[ZIP]),
    (&["mobi"], &[&["mobi"]]),
    // Archives.
    (
        &[
            "zip", "jar", "war", "ear", "apk", "aar", "xpi", "whl", "nupkg", "vsix", "ipa", "kmz",
            "ora",
        ],
        &[ZIP],
    ),
    (&["gz", "tgz", "svgz"], &[&["gz"]]),
    (&["bz2", "tbz", "tbz2"], &[&["bz2"]]),
    (&["bz3"], &[&["bz3"]]),
    (&["xz", "txz"], &[&["xz"]]),
    (&["7z"], &[&["7z"]]),
    (&["rar"], &[&["rar"]]),
    (&["tar"], &[&["tar"]]),
    (&["zst", "tzst"], &[&["zst"]]),
    (&["lz4"], &[&["lz4"]]),
    (&["lz"], &[&["lz"]]),
    (&["z"], &[&["z"]]),
    (&["cab"], &[&["cab"]]),
    (&["deb"], &[&["deb", "ar"]]),
    (&["a", "ar"], &[&["ar"]]),
    (&["rpm"], &[&["rpm"]]),
    (&["cpio"], &[&["cpio"]]),
    (&["crx"], &[&["crx"]]),
    (&["par2"], &[&["par2"]]),
    (&["sqlite", "sqlite3", "db3"], &[&["sqlite"]]),
    (&["qcow2"], &[&["qcow2"]]),
    (&["swf"], &[&["swf"]]),
    (&["dcm"], &[&["dcm"]]),
    (&["nes"], &[&["nes"]]),
    // Executables and code.
    (
        &[
            "exe", "dll", "sys", "scr", "cpl", "ocx", "efi", "drv", "mui",
        ],
        &[PE],
    ),
    (&["so", "ko"], &[&["elf"]]),
    (&["o"], &[&["elf", "obj"]]),
    (&["wasm"], &[&["wasm"]]),
    (&["class"], &[&["class"]]),
    (&["dex"], &[&["dex"]]),
    (&["bc"], &[&["bc"]]),
    (&["der", "cer", "crt"], &[&["der", "pem"]]),
    // Audio and video.
    (
        &["mp4", "m4v", "m4a", "m4b", "m4p", "mov", "qt", "3gp", "3g2"],
        &[ISO_MEDIA],
    ),
    (&["mkv", "mka", "mks", "webm"], &[&["mkv", "webm"]]),
    (&["avi"], &[&["avi"]]),
    (&["wmv", "wma", "asf"], &[&["wmv"]]),
    (&["mpg", "mpeg", "m2p", "vob"], &[&["mpg"]]),
    (&["flv"], &[&["flv"]]),
    (&["mid", "midi"], &[&["midi"]]),
    (&["mp3"], &[&["mp3"]]),
    (&["ogg", "oga", "ogv", "opus", "spx"], &[&["ogg", "opus"]]),
    (&["flac"], &[&["flac"]]),
    (&["wav"], &[&["wav"]]),
    (&["amr"], &[&["amr"]]),
    (&["aac"], &[&["aac"]]),
    (&["aif", "aiff", "aifc"], &[&["aiff"]]),
    (&["dsf"], &[&["dsf"]]),
    (&["ape"], &[&["ape"]]),
    // Fonts.
    (&["woff"], &[&["woff"]]),
    (&["woff2"], &[&["woff2"]]),
    (&["ttf", "otf"], &[&["ttf", "otf"]]),
    (&["eot"], &[&["eot"]]),
    // Text: markup, data, scripts and source code.
    (
        &[
            "html", "htm", "xhtml", "shtml", "xml", "svg", "xsd", "xsl", "xslt", "rss", "atom",
            "plist", "kml", "gpx", "xaml",
        ],
        &[TEXT],
    ),
    (
        &[
            "txt", "text", "log", "csv", "tsv", "md", "markdown", "rst", "json", "yaml", "yml",
            "toml", "ini", "cfg", "conf", "tex", "sql", "pem", "key",
        ],
        &[TEXT],
    ),
    (
        &[
            "sh", "bash", "zsh", "ksh", "py", "pl", "rb", "php", "js", "mjs", "cjs", "ts", "lua",
            "tcl", "awk", "ps1", "bat", "cmd", "c", "h", "cc", "cpp", "hpp", "rs", "go", "java",
            "cs", "css",
        ],
        &[TEXT],
    ),
];

/// The content types `extension` (lowercase) accepts; `None` when the extension is unknown.
fn accepted(extension: &str) -> Option<impl Iterator<Item = &'static str>> {
    TABLE
        .iter()
        .find(|(extensions, _)| extensions.contains(&extension))
        .map(|(_, groups)| groups.iter().flat_map(|group| group.iter().copied()))
}

/// Whether `extension` is a text extension: one that accepts any content that looks like text.
fn is_text_extension(extension: &str) -> bool {
    accepted(extension).is_some_and(|mut kinds| kinds.any(|kind| kind == "html"))
}

/// Whether `head` looks like text: no NUL byte and valid UTF-8 (a character cut off at the
/// end of the head is allowed).
fn looks_like_text(head: &[u8]) -> bool {
    if head.contains(&0) {
        return false;
    }
    match std::str::from_utf8(head) {
        Ok(_) => true,
        Err(err) => err.error_len().is_none(),
    }
}

/// The mismatch between `extension` and the content `head`, described, if there is one.
fn mismatch(extension: Option<&str>, head: &[u8]) -> Option<String> {
    let extension = extension?.to_ascii_lowercase();
    let mut kinds = accepted(&extension)?;
    let content = infer::get(head)?;
    let kind = content.extension().to_ascii_lowercase();
    if kinds.any(|accepted| accepted == kind) {
        return None;
    }
    if is_text_extension(&extension) && looks_like_text(head) {
        return None;
    }
    Some(format!(
        "extension .{extension} but content is {} ({})",
        content.mime_type(),
        content.extension()
    ))
}

fn scan(file: &mut SampleFile) -> std::io::Result<ScanReport> {
    let head = file.head(HEAD_BYTES)?;
    let report = match mismatch(file.extension().as_deref(), &head) {
        Some(threat) => ScanReport::new(ResultCode::FileTypeMismatch, threat),
        None => ScanReport::clean(),
    };
    Ok(report.with_def_time(DEF_TIME))
}

// `fn main` (a WASI command on wasm32-wasip1, an executable natively) and, on wasm32-wasip2,
// the `scan` export of Cordon's `scanner` component world. The scanner needs nothing of the
// plugin's input (the file's name is its path's), so the plugin does not read it.
cordon_plugin_sdk::file_scanner_main!(scan);

#[cfg(test)]
mod tests {
    use super::*;
    use cordon_plugin_sdk::testing::{self, Sample};

    /// A minimal 64-bit little-endian ELF header (infer wants more than 52 bytes).
    fn elf() -> Vec<u8> {
        let mut bytes = b"\x7fELF\x02\x01\x01\x00".to_vec();
        bytes.resize(128, 0);
        bytes
    }
    const PNG: &[u8] = b"\x89PNG\r\n\x1a\n\0\0\0\rIHDR\0\0\0\x01\0\0\0\x01\x08\x06\0\0\0";
    const JPEG: &[u8] = b"\xff\xd8\xff\xe0\0\x10JFIF\0\x01\x01\0\0\x01\0\x01\0\0";
    const PDF: &[u8] = b"%PDF-1.7\n%\xe2\xe3\xcf\xd3\n1 0 obj\n<<>>\nendobj\n";
    const ZIP_BYTES: &[u8] =
        b"PK\x03\x04\x14\0\0\0\x08\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\x05\0\0\0hello";
    const GZIP: &[u8] = b"\x1f\x8b\x08\0\0\0\0\0\0\x03\x03\0\0\0\0\0\0\0\0\0";

    fn check(name: &str, content: &[u8]) -> ScanReport {
        testing::scan_file(scan, Sample::bytes(name, content)).unwrap()
    }

    #[test]
    fn an_executable_named_pdf_is_a_mismatch() {
        let report = check("invoice.pdf", &elf());
        assert_eq!(report.result(), ResultCode::FileTypeMismatch);
        assert_eq!(
            report.threat_found(),
            "extension .pdf but content is application/x-executable (elf)"
        );
        assert_eq!(report.def_time_ms(), DEF_TIME);

        let report = check("photo.JPG", b"MZ\x90\0\x03\0\0\0\x04\0\0\0\xff\xff\0\0");
        assert_eq!(report.result(), ResultCode::FileTypeMismatch);
        assert!(
            report
                .threat_found()
                .starts_with("extension .jpg but content is"),
            "{}",
            report.threat_found()
        );
    }

    #[test]
    fn matching_content_is_clean() {
        for (name, content) in [
            ("a.png", PNG),
            ("a.jpg", JPEG),
            ("a.jpeg", JPEG),
            ("A.JPE", JPEG),
            ("doc.pdf", PDF),
            ("a.zip", ZIP_BYTES),
            ("a.tar.gz", GZIP),
            ("a.tgz", GZIP),
        ] {
            assert_eq!(
                check(name, content),
                ScanReport::clean().with_def_time(DEF_TIME),
                "{name}"
            );
        }
        assert_eq!(
            check("prog.so", &elf()).result(),
            ResultCode::NoThreatDetected
        );
    }

    #[test]
    fn synonyms_and_container_formats_are_equal() {
        // A zip is acceptable as any zip-based format and vice versa.
        for name in ["a.docx", "a.xlsx", "a.jar", "a.apk", "a.odt", "a.epub"] {
            assert_eq!(
                check(name, ZIP_BYTES).result(),
                ResultCode::NoThreatDetected,
                "{name}"
            );
        }
        assert_eq!(
            mismatch(Some("tiff"), b"II*\0\x08\0\0\0\0\0\0\0\0\0\0\0"),
            None
        );
        assert_eq!(
            mismatch(Some("htm"), b"<!DOCTYPE html><html><body></body></html>"),
            None
        );
        assert_eq!(
            mismatch(Some("xhtml"), b"<?xml version=\"1.0\"?><html/>"),
            None
        );
        assert_eq!(
            mismatch(Some("py"), b"#!/usr/bin/env python3\nprint(1)\n"),
            None
        );
    }

    #[test]
    fn a_wrong_known_type_is_a_mismatch() {
        let report = check("image.png", JPEG);
        assert_eq!(report.result(), ResultCode::FileTypeMismatch);
        assert_eq!(
            report.threat_found(),
            "extension .png but content is image/jpeg (jpg)"
        );
        assert_eq!(check("a.docx", PDF).result(), ResultCode::FileTypeMismatch);
        assert_eq!(
            check("notes.txt", &elf()).result(),
            ResultCode::FileTypeMismatch
        );
        assert_eq!(
            check("page.html", PNG).result(),
            ResultCode::FileTypeMismatch
        );
    }

    #[test]
    fn unknown_content_extension_or_none_is_not_a_mismatch() {
        // Unknown content.
        assert_eq!(
            check("a.pdf", b"just some text").result(),
            ResultCode::NoThreatDetected
        );
        assert_eq!(
            check("empty.png", b"").result(),
            ResultCode::NoThreatDetected
        );
        // No extension.
        assert_eq!(
            check("README", &elf()).result(),
            ResultCode::NoThreatDetected
        );
        assert_eq!(
            check(".bashrc", &elf()).result(),
            ResultCode::NoThreatDetected
        );
        assert_eq!(
            check("trailing.", &elf()).result(),
            ResultCode::NoThreatDetected
        );
        // Unknown extension.
        assert_eq!(
            check("data.xyz123", &elf()).result(),
            ResultCode::NoThreatDetected
        );
        assert_eq!(
            check("firmware.bin", &elf()).result(),
            ResultCode::NoThreatDetected
        );
    }

    #[test]
    fn text_that_starts_like_a_magic_number_is_not_a_mismatch() {
        assert_eq!(
            check("cars.txt", b"BMW and Audi\n").result(),
            ResultCode::NoThreatDetected
        );
        assert_eq!(
            check("names.csv", b"MZ,Mozambique\n").result(),
            ResultCode::NoThreatDetected
        );
        // But binary content is.
        assert_eq!(
            check("names.csv", b"MZ\x90\0\x03\0\0\0").result(),
            ResultCode::FileTypeMismatch
        );
    }

    #[test]
    fn the_table_lists_each_extension_once_in_lowercase() {
        let mut seen = std::collections::BTreeSet::new();
        for (extensions, _) in TABLE {
            for extension in *extensions {
                assert_eq!(*extension, extension.to_ascii_lowercase());
                assert!(seen.insert(*extension), "{extension} listed twice");
            }
        }
    }
}
