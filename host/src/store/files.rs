//! The file store for uploads of more than [`INLINE_MAX`] bytes (smaller ones are kept in the
//! database with their job, see [`crate::store`]): one directory per submission,
//! `<data_dir>/files/<data_id>/`, holding the sample alone under its sanitized display name
//! ([`crate::sample::sanitize_file_name`]), so that it can be handed to plugins as a
//! [`Sample`] as it is.
//!
//! Guarantees:
//! - every path is opened through a capability ([`cap_std::fs::Dir`]) on the `files`
//!   directory, and the only names used below it are a data id (32 lowercase hex, checked) and
//!   a sanitized file name (checked again here): nothing a client sends can reach outside;
//! - a large upload is written to `files/.incoming/<random>` while it arrives, hashed on the way,
//!   fsynced, and only then moved into place ([`FileStore::commit`], which fsyncs both
//!   directories): a file in a data id's directory is always complete;
//! - an upload that is dropped before it is committed deletes its temporary file.

use std::io::{self, Write};
use std::path::{Path, PathBuf};

use cap_std::ambient_authority;
use cap_std::fs::{Dir, OpenOptions};
use md5::Md5;
use sha1::Sha1;
use sha2::{Digest, Sha256};

use crate::fileinfo::{self, Fingerprint};
use crate::sample::{Sample, sanitize_file_name};

/// Directory of uploads in progress, under the files root.
const INCOMING: &str = ".incoming";

/// Uploads up to this size are kept in the database with their job rather than as files: a
/// small submission then costs no file, no directory and no fsync of its own (its bytes share
/// the job's commit). Larger uploads are streamed to a file. The server reserves a place in
/// its queue before it reads a body, so uploads held in memory take at most `max_queue` times
/// this (25 MiB with the default queue of 100).
pub const INLINE_MAX: u64 = 256 * 1024;

/// How many leading bytes type detection looks at (as [`fileinfo::fingerprint`] does).
const SNIFF_BYTES: usize = 8192;

/// The file store. Cheap to clone.
#[derive(Debug)]
pub struct FileStore {
    root: PathBuf,
    dir: Dir,
}

impl Clone for FileStore {
    fn clone(&self) -> Self {
        FileStore {
            root: self.root.clone(),
            dir: self
                .dir
                .try_clone()
                .expect("a directory handle can be duplicated"),
        }
    }
}

/// Whether `id` has the shape of a data id: 32 lowercase hexadecimal characters.
pub fn is_data_id(id: &str) -> bool {
    id.len() == 32
        && id
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

fn invalid(what: String) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidInput, what)
}

fn check_names(data_id: &str, file_name: &str) -> io::Result<()> {
    if !is_data_id(data_id) {
        return Err(invalid(format!("{data_id:?} is not a data id")));
    }
    if sanitize_file_name(file_name) != file_name {
        return Err(invalid(format!(
            "{file_name:?} is not a sanitized file name"
        )));
    }
    Ok(())
}

impl FileStore {
    /// Open (creating it) the store at `root`, and empty its directory of unfinished uploads.
    /// The root is made private to Cordon's user (mode 0700): it holds untrusted files.
    pub fn open(root: &Path) -> io::Result<FileStore> {
        use std::os::unix::fs::PermissionsExt;
        std::fs::create_dir_all(root.join(INCOMING))?;
        std::fs::set_permissions(root, std::fs::Permissions::from_mode(0o700))?;
        let root = std::path::absolute(root)?;
        let dir = Dir::open_ambient_dir(&root, ambient_authority())?;
        let store = FileStore { root, dir };
        store.dir.remove_dir_all(INCOMING)?;
        store.dir.create_dir(INCOMING)?;
        Ok(store)
    }

    /// The store's root directory (`<data_dir>/files`).
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Start an upload of `expected` bytes: kept in memory when it is at most [`INLINE_MAX`]
    /// bytes (the caller stores it in the database), else written to a new temporary file
    /// under `.incoming`.
    pub fn incoming(&self, expected: u64) -> io::Result<IncomingFile> {
        let sink = if expected <= INLINE_MAX {
            Sink::Memory(Vec::with_capacity(expected as usize))
        } else {
            let dir = self.dir.open_dir(INCOMING)?;
            let name = uuid::Uuid::new_v4().simple().to_string();
            let file = dir.open_with(&name, OpenOptions::new().write(true).create_new(true))?;
            Sink::File {
                file: file.into_std(),
                staged: Staged {
                    dir,
                    name,
                    committed: false,
                },
            }
        };
        Ok(IncomingFile {
            sink,
            md5: Md5::new(),
            sha1: Sha1::new(),
            sha256: Sha256::new(),
            head: Vec::with_capacity(SNIFF_BYTES),
            size: 0,
        })
    }

    /// Move a finished upload to `files/<data_id>/<file_name>`, read-only, and fsync both
    /// directories: once this returns, the file survives a crash.
    pub fn commit(&self, mut staged: Staged, data_id: &str, file_name: &str) -> io::Result<()> {
        check_names(data_id, file_name)?;
        self.dir.create_dir(data_id)?;
        let target = self.dir.open_dir(data_id)?;
        let incoming = self.dir.open_dir(INCOMING)?;
        incoming.rename(&staged.name, &target, file_name)?;
        staged.committed = true;
        let mut perms = target.metadata(file_name)?.permissions();
        perms.set_readonly(true);
        target.set_permissions(file_name, perms)?;
        // cap-std's directory handles are O_PATH and cannot be fsynced: open the (checked)
        // paths for that. `.incoming` needs none: it is emptied at every start.
        for dir in [self.root.join(data_id), self.root.clone()] {
            std::fs::File::open(dir)?.sync_all()?;
        }
        Ok(())
    }

    /// The stored file of `data_id` as a sample for plugins.
    pub fn sample(&self, data_id: &str, file_name: &str) -> io::Result<Sample> {
        check_names(data_id, file_name)?;
        Sample::existing(&self.root.join(data_id), file_name)
    }

    /// Whether `data_id` has a stored file named `file_name`.
    pub fn exists(&self, data_id: &str, file_name: &str) -> bool {
        check_names(data_id, file_name).is_ok()
            && self.dir.is_file(Path::new(data_id).join(file_name))
    }

    /// Delete `data_id`'s directory and its file; a directory that does not exist is not an
    /// error.
    pub fn remove(&self, data_id: &str) -> io::Result<()> {
        if !is_data_id(data_id) {
            return Err(invalid(format!("{data_id:?} is not a data id")));
        }
        match self.dir.remove_dir_all(data_id) {
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
            other => other,
        }
    }

    /// The data ids that have a directory.
    pub fn data_ids(&self) -> io::Result<Vec<String>> {
        let mut ids = Vec::new();
        for entry in self.dir.entries()? {
            let name = entry?.file_name();
            if let Some(name) = name.to_str().filter(|n| is_data_id(n)) {
                ids.push(name.to_owned());
            }
        }
        Ok(ids)
    }
}

/// An upload being received: hashed as it arrives, kept in memory or written to a temporary
/// file. Dropped before [`IncomingFile::finish`], its file is deleted.
pub struct IncomingFile {
    sink: Sink,
    md5: Md5,
    sha1: Sha1,
    sha256: Sha256,
    head: Vec<u8>,
    size: u64,
}

/// Where an upload's bytes go.
enum Sink {
    Memory(Vec<u8>),
    File { file: std::fs::File, staged: Staged },
}

impl IncomingFile {
    /// Append `chunk`. An upload kept in memory refuses to grow past [`INLINE_MAX`].
    pub fn write(&mut self, chunk: &[u8]) -> io::Result<()> {
        match &mut self.sink {
            Sink::Memory(bytes) => {
                if (bytes.len() + chunk.len()) as u64 > INLINE_MAX {
                    return Err(invalid(format!(
                        "an upload announced as small grew past {INLINE_MAX} bytes"
                    )));
                }
                bytes.extend_from_slice(chunk);
            }
            Sink::File { file, .. } => file.write_all(chunk)?,
        }
        self.md5.update(chunk);
        self.sha1.update(chunk);
        self.sha256.update(chunk);
        if self.head.len() < SNIFF_BYTES {
            let take = (SNIFF_BYTES - self.head.len()).min(chunk.len());
            self.head.extend_from_slice(&chunk[..take]);
        }
        self.size += chunk.len() as u64;
        Ok(())
    }

    /// Bytes written so far.
    pub fn size(&self) -> u64 {
        self.size
    }

    /// Finish the upload (a file is fsynced) and return it with its fingerprint (hashes and
    /// type, as [`fileinfo::fingerprint`] computes them).
    pub fn finish(self) -> io::Result<Received> {
        let content = match self.sink {
            Sink::Memory(bytes) => Content::Inline(bytes),
            Sink::File { file, staged } => {
                file.sync_all()?;
                Content::Staged(staged)
            }
        };
        let (mime, description) = fileinfo::detect_type(&self.head);
        let fingerprint = Fingerprint {
            size: self.size,
            md5: hex::encode(self.md5.finalize()),
            sha1: hex::encode(self.sha1.finalize()),
            sha256: hex::encode(self.sha256.finalize()),
            mime,
            description,
        };
        Ok(Received {
            fingerprint,
            content,
        })
    }
}

/// A complete upload, not stored yet.
pub struct Received {
    /// What the file is.
    pub fingerprint: Fingerprint,
    /// Its bytes.
    pub content: Content,
}

/// Where a complete upload's bytes are.
pub enum Content {
    /// In memory (at most [`INLINE_MAX`] bytes): to be stored in the database with the job.
    Inline(Vec<u8>),
    /// In an fsynced temporary file: to be moved into place with [`FileStore::commit`].
    Staged(Staged),
}

/// An fsynced upload in `.incoming`, not yet moved into place. Dropped without
/// [`FileStore::commit`], its file is deleted.
pub struct Staged {
    dir: Dir,
    name: String,
    committed: bool,
}

impl Drop for Staged {
    fn drop(&mut self) {
        if !self.committed {
            let _ = self.dir.remove_file(&self.name);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn staged(received: Received) -> Staged {
        match received.content {
            Content::Staged(staged) => staged,
            Content::Inline(_) => panic!("a large upload was kept in memory"),
        }
    }

    fn incoming_count(root: &Path) -> usize {
        std::fs::read_dir(root.join(INCOMING)).unwrap().count()
    }

    #[test]
    fn a_small_upload_is_hashed_in_memory_and_makes_no_file() {
        let tmp = tempfile::tempdir().unwrap();
        let store = FileStore::open(&tmp.path().join("files")).unwrap();
        let mut up = store.incoming(11).unwrap();
        up.write(b"hello ").unwrap();
        up.write(b"world").unwrap();
        assert_eq!(incoming_count(store.root()), 0);
        let received = up.finish().unwrap();
        assert_eq!(received.fingerprint.size, 11);
        assert_eq!(received.fingerprint.md5, "5eb63bbbe01eeed093cb22bb8f5acdc3");
        assert!(matches!(received.content, Content::Inline(ref b) if b == b"hello world"));
        // One that lied about its size is refused rather than held in memory without bound.
        let mut up = store.incoming(1).unwrap();
        up.write(&vec![0; INLINE_MAX as usize]).unwrap();
        assert!(up.write(b"1").is_err());
    }

    #[test]
    fn a_large_upload_is_hashed_committed_and_removed() {
        let tmp = tempfile::tempdir().unwrap();
        let store = FileStore::open(&tmp.path().join("files")).unwrap();
        let body: Vec<u8> = (0..INLINE_MAX + 5).map(|i| (i % 251) as u8).collect();
        let mut up = store.incoming(body.len() as u64).unwrap();
        for chunk in body.chunks(10_000) {
            up.write(chunk).unwrap();
        }
        assert_eq!(incoming_count(store.root()), 1);
        let received = up.finish().unwrap();
        assert_eq!(received.fingerprint.size, body.len() as u64);
        assert_eq!(
            received.fingerprint.sha256,
            hex::encode(Sha256::digest(&body))
        );
        let id = "0123456789abcdef0123456789abcdef";
        store.commit(staged(received), id, "big.bin").unwrap();
        let sample = store.sample(id, "big.bin").unwrap();
        assert_eq!(std::fs::read(sample.path()).unwrap(), body);
        assert_eq!(store.data_ids().unwrap(), vec![id.to_owned()]);
        assert_eq!(incoming_count(store.root()), 0);
        store.remove(id).unwrap();
        assert!(!tmp.path().join("files").join(id).exists());
    }

    #[test]
    fn dropped_uploads_leave_nothing_and_names_are_checked() {
        let tmp = tempfile::tempdir().unwrap();
        let store = FileStore::open(tmp.path()).unwrap();
        let large = INLINE_MAX + 1;
        let mut up = store.incoming(large).unwrap();
        up.write(b"x").unwrap();
        drop(up);
        let up = store.incoming(large).unwrap().finish().unwrap();
        drop(up);
        assert_eq!(incoming_count(tmp.path()), 0);
        let up = staged(store.incoming(large).unwrap().finish().unwrap());
        assert!(store.commit(up, "../../etc", "x").is_err());
        let up = staged(store.incoming(large).unwrap().finish().unwrap());
        assert!(
            store
                .commit(up, "0123456789abcdef0123456789abcdef", "../x")
                .is_err()
        );
        assert_eq!(incoming_count(tmp.path()), 0);
        assert!(
            store
                .sample("0123456789abcdef0123456789abcdef", "..")
                .is_err()
        );
        assert!(store.remove("..").is_err());
    }
}
