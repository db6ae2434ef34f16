//! The sample: the one file a scan is about, alone in a directory of its own.
//!
//! Every runtime sees the file the same way: a process gets its absolute path as the last
//! argument, a wasm plugin gets a read-only preopen of the directory (so it sees this file and
//! nothing else), a webhook gets the path in `resource_path`. The file keeps a sanitized form
//! of its display name, extension included, so that plugins that look at extensions work.

use std::io;
use std::path::{Path, PathBuf};

/// Where wasm plugins see the sample's directory.
pub const GUEST_DIR: &str = "/scan";

/// A file to scan, alone in its directory.
#[derive(Debug)]
pub struct Sample {
    dir: PathBuf,
    file_name: String,
    /// Present when the directory is temporary and goes away with the sample.
    _temp: Option<tempfile::TempDir>,
}

impl Sample {
    /// Copy `source` into a fresh temporary directory under `work_root`, named after
    /// `display_name`. The copy is made read-only. Used by `cordon scan`, which must not hand
    /// the user's own file to plugins.
    pub fn copy_from(source: &Path, display_name: &str, work_root: &Path) -> io::Result<Sample> {
        std::fs::create_dir_all(work_root)?;
        let temp = tempfile::Builder::new()
            .prefix("sample-")
            .tempdir_in(work_root)?;
        let file_name = sanitize_file_name(display_name);
        let path = temp.path().join(&file_name);
        std::fs::copy(source, &path)?;
        set_read_only(&path)?;
        Ok(Sample {
            dir: std::path::absolute(temp.path())?,
            file_name,
            _temp: Some(temp),
        })
    }

    /// Write `bytes` into a fresh temporary directory under `work_root`.
    pub fn from_bytes(bytes: &[u8], display_name: &str, work_root: &Path) -> io::Result<Sample> {
        std::fs::create_dir_all(work_root)?;
        let temp = tempfile::Builder::new()
            .prefix("sample-")
            .tempdir_in(work_root)?;
        let file_name = sanitize_file_name(display_name);
        let path = temp.path().join(&file_name);
        std::fs::write(&path, bytes)?;
        set_read_only(&path)?;
        Ok(Sample {
            dir: std::path::absolute(temp.path())?,
            file_name,
            _temp: Some(temp),
        })
    }

    /// A sample that already sits alone in `dir` (the server's file store keeps one directory
    /// per submission). The directory is not removed when the sample is dropped.
    pub fn existing(dir: &Path, file_name: &str) -> io::Result<Sample> {
        let dir = std::path::absolute(dir)?;
        let meta = std::fs::metadata(dir.join(file_name))?;
        if !meta.is_file() {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("{} is not a regular file", dir.join(file_name).display()),
            ));
        }
        Ok(Sample {
            dir,
            file_name: file_name.to_owned(),
            _temp: None,
        })
    }

    /// The directory that holds the sample and nothing else.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The sample's file name inside [`Sample::dir`].
    pub fn file_name(&self) -> &str {
        &self.file_name
    }

    /// The sample's absolute path on the host.
    pub fn path(&self) -> PathBuf {
        self.dir.join(&self.file_name)
    }

    /// The sample's path as a wasm plugin sees it: `/scan/<file name>`.
    pub fn guest_path(&self) -> String {
        format!("{GUEST_DIR}/{}", self.file_name)
    }
}

fn set_read_only(path: &Path) -> io::Result<()> {
    let mut perms = std::fs::metadata(path)?.permissions();
    perms.set_readonly(true);
    std::fs::set_permissions(path, perms)
}

/// The longest file name a sample gets (extension included).
const MAX_FILE_NAME: usize = 100;

/// Turn a client-supplied display name into a safe file name: the last path component only,
/// ASCII letters, digits, `.`, `-` and `_` (anything else becomes `_`), no leading dot, at most
/// 100 characters with the extension kept. Never empty: `sample` when nothing is left.
pub fn sanitize_file_name(display_name: &str) -> String {
    let base = display_name
        .rsplit(['/', '\\'])
        .next()
        .unwrap_or(display_name);
    let mut name: String = base
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_') {
                c
            } else {
                '_'
            }
        })
        .collect();
    while name.starts_with('.') {
        name.remove(0);
    }
    if name.len() > MAX_FILE_NAME {
        // Keep a short extension, cut the stem.
        let ext = name
            .rfind('.')
            .map(|i| name[i..].to_owned())
            .filter(|e| e.len() <= 16)
            .unwrap_or_default();
        name.truncate(MAX_FILE_NAME - ext.len());
        name.push_str(&ext);
    }
    if name.is_empty() || name.chars().all(|c| c == '.' || c == '_') {
        return "sample".to_owned();
    }
    name
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sanitize_keeps_extension_and_drops_paths() {
        assert_eq!(sanitize_file_name("report.pdf"), "report.pdf");
        assert_eq!(sanitize_file_name("../../etc/passwd"), "passwd");
        assert_eq!(sanitize_file_name("C:\\Users\\me\\a b.exe"), "a_b.exe");
        assert_eq!(sanitize_file_name(".bashrc"), "bashrc");
        assert_eq!(sanitize_file_name(""), "sample");
        assert_eq!(sanitize_file_name(".."), "sample");
        assert_eq!(sanitize_file_name("файл.txt"), "____.txt");
        let long = format!("{}.docx", "a".repeat(300));
        let s = sanitize_file_name(&long);
        assert_eq!(s.len(), MAX_FILE_NAME);
        assert!(s.ends_with(".docx"));
    }

    #[test]
    fn a_sample_is_alone_and_read_only() {
        let root = tempfile::tempdir().unwrap();
        let s = Sample::from_bytes(b"hello", "x/y/hello.txt", root.path()).unwrap();
        assert_eq!(s.file_name(), "hello.txt");
        assert!(s.path().is_absolute());
        let entries: Vec<_> = std::fs::read_dir(s.dir()).unwrap().collect();
        assert_eq!(entries.len(), 1);
        assert!(
            std::fs::metadata(s.path())
                .unwrap()
                .permissions()
                .readonly()
        );
        assert_eq!(s.guest_path(), "/scan/hello.txt");
        let dir = s.dir().to_owned();
        drop(s);
        assert!(!dir.exists());
    }
}
