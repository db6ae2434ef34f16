//! The file store: one directory per submission, `<data_dir>/files/<data_id>/`, holding the
//! sample alone under its sanitized display name ([`crate::sample::sanitize_file_name`]), so
//! that it can be handed to plugins as a [`Sample`] as it is.
//!
//! Guarantees:
//! - every path is opened through a capability ([`cap_std::fs::Dir`]) on the `files`
//!   directory, and the only names used below it are a data id (32 lowercase hex, checked) and
//!   a sanitized file name (checked again here): nothing a client sends can reach outside;
//! - an upload is written to `files/.incoming/<random>` while it arrives, hashed on the way,
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

    /// Start an upload: a new temporary file under `.incoming`.
    pub fn incoming(&self) -> io::Result<IncomingFile> {
        let dir = self.dir.open_dir(INCOMING)?;
        let name = uuid::Uuid::new_v4().simple().to_string();
        let file = dir.open_with(&name, OpenOptions::new().write(true).create_new(true))?;
        Ok(IncomingFile {
            dir,
            name,
            file: Some(file.into_std()),
            md5: Md5::new(),
            sha1: Sha1::new(),
            sha256: Sha256::new(),
            head: Vec::with_capacity(SNIFF_BYTES),
            size: 0,
        })
    }

    /// Move a finished upload to `files/<data_id>/<file_name>`, read-only, and fsync both
    /// directories: once this returns, the file survives a crash.
    pub fn commit(&self, mut upload: Received, data_id: &str, file_name: &str) -> io::Result<()> {
        check_names(data_id, file_name)?;
        self.dir.create_dir(data_id)?;
        let target = self.dir.open_dir(data_id)?;
        let incoming = self.dir.open_dir(INCOMING)?;
        incoming.rename(&upload.name, &target, file_name)?;
        upload.committed = true;
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

/// An upload being written: hashed as it arrives. Dropped before [`IncomingFile::finish`], its
/// file is deleted.
pub struct IncomingFile {
    dir: Dir,
    name: String,
    file: Option<std::fs::File>,
    md5: Md5,
    sha1: Sha1,
    sha256: Sha256,
    head: Vec<u8>,
    size: u64,
}

impl IncomingFile {
    /// Append `chunk`.
    pub fn write(&mut self, chunk: &[u8]) -> io::Result<()> {
        self.file.as_mut().expect("not finished").write_all(chunk)?;
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

    /// fsync the file and return it with its fingerprint (hashes and type, as
    /// [`fileinfo::fingerprint`] computes them).
    pub fn finish(mut self) -> io::Result<Received> {
        let file = self.file.take().expect("not finished");
        file.sync_all()?;
        drop(file);
        let (mime, description) = fileinfo::detect_type(&self.head);
        let fingerprint = Fingerprint {
            size: self.size,
            md5: hex::encode(self.md5.clone().finalize()),
            sha1: hex::encode(self.sha1.clone().finalize()),
            sha256: hex::encode(self.sha256.clone().finalize()),
            mime,
            description,
        };
        let dir = self.dir.try_clone()?;
        let name = std::mem::take(&mut self.name);
        Ok(Received {
            dir,
            name,
            fingerprint,
            committed: false,
        })
    }
}

impl Drop for IncomingFile {
    fn drop(&mut self) {
        if !self.name.is_empty() {
            self.file.take();
            let _ = self.dir.remove_file(&self.name);
        }
    }
}

/// A complete, fsynced upload not yet moved into place. Dropped without
/// [`FileStore::commit`], its file is deleted.
pub struct Received {
    dir: Dir,
    name: String,
    /// What the file is.
    pub fingerprint: Fingerprint,
    committed: bool,
}

impl Drop for Received {
    fn drop(&mut self) {
        if !self.committed {
            let _ = self.dir.remove_file(&self.name);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_upload_is_hashed_committed_and_removed() {
        let tmp = tempfile::tempdir().unwrap();
        let store = FileStore::open(&tmp.path().join("files")).unwrap();
        let mut up = store.incoming().unwrap();
        up.write(b"hello ").unwrap();
        up.write(b"world").unwrap();
        let received = up.finish().unwrap();
        assert_eq!(received.fingerprint.size, 11);
        assert_eq!(received.fingerprint.md5, "5eb63bbbe01eeed093cb22bb8f5acdc3");
        let id = "0123456789abcdef0123456789abcdef";
        store.commit(received, id, "hello.txt").unwrap();
        let sample = store.sample(id, "hello.txt").unwrap();
        assert_eq!(std::fs::read(sample.path()).unwrap(), b"hello world");
        assert_eq!(store.data_ids().unwrap(), vec![id.to_owned()]);
        assert_eq!(
            std::fs::read_dir(tmp.path().join("files/.incoming"))
                .unwrap()
                .count(),
            0
        );
        store.remove(id).unwrap();
        assert!(!tmp.path().join("files").join(id).exists());
    }

    #[test]
    fn dropped_uploads_leave_nothing_and_names_are_checked() {
        let tmp = tempfile::tempdir().unwrap();
        let store = FileStore::open(tmp.path()).unwrap();
        let mut up = store.incoming().unwrap();
        up.write(b"x").unwrap();
        drop(up);
        let up = store.incoming().unwrap().finish().unwrap();
        drop(up);
        assert_eq!(
            std::fs::read_dir(tmp.path().join(INCOMING))
                .unwrap()
                .count(),
            0
        );
        let up = store.incoming().unwrap().finish().unwrap();
        assert!(store.commit(up, "../../etc", "x").is_err());
        let up = store.incoming().unwrap().finish().unwrap();
        assert!(
            store
                .commit(up, "0123456789abcdef0123456789abcdef", "../x")
                .is_err()
        );
        assert!(
            store
                .sample("0123456789abcdef0123456789abcdef", "..")
                .is_err()
        );
        assert!(store.remove("..").is_err());
    }
}
