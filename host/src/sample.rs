//! The sample: the one file a scan is about, alone in a directory of its own.
//!
//! Every runtime sees the file the same way: a process gets its absolute path as the last
//! argument, a wasm plugin gets a read-only preopen of the directory (so it sees this file and
//! nothing else), a webhook gets the path in `resource_path`. The file keeps a sanitized form
//! of its display name, extension included, so that plugins that look at extensions work.
//! The path is valid while the file's workflow runs: the server places small files in reusable
//! slots ([`SlotPool`]), where the next file may take the same path afterwards.

use std::fs::File;
use std::io::{self, Read};
use std::os::unix::fs::{FileExt, MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use crate::executor::wasm::PreopenCache;

/// Where wasm plugins see the sample's directory.
pub const GUEST_DIR: &str = "/scan";

/// A file to scan, alone in its directory.
#[derive(Debug)]
pub struct Sample {
    dir: PathBuf,
    file_name: String,
    /// The directory as wasm plugins' preopen, opened once for all of them (a slot's is the
    /// slot's own, kept across the samples it holds).
    preopen: Arc<PreopenCache>,
    /// What happens to the directory when the sample is dropped.
    _guard: Guard,
}

/// What a sample's directory is, and what dropping the sample does to it.
#[derive(Debug)]
enum Guard {
    /// Someone else's directory: left as it is.
    Borrowed,
    /// A temporary directory: removed.
    Temp { _dir: tempfile::TempDir },
    /// A slot of a [`SlotPool`]: given back to the pool (or deleted, see [`SlotPool`]).
    Slot { _lease: SlotLease },
}

impl Sample {
    /// Copy the file `source` (opened with [`open_regular_file`]) into a fresh temporary
    /// directory under `work_root`, named after `display_name`. The copy is made read-only.
    /// Used by `cordon scan`, which must not hand the user's own file to plugins. A file that
    /// grows past `max_bytes` while it is copied is refused (error kind `FileTooLarge`): the
    /// caller checked its size before, and plugins get no more than was allowed.
    pub fn copy_from(
        source: &File,
        display_name: &str,
        work_root: &Path,
        max_bytes: u64,
    ) -> io::Result<Sample> {
        std::fs::create_dir_all(work_root)?;
        let temp = tempfile::Builder::new()
            .prefix("sample-")
            .tempdir_in(work_root)?;
        let file_name = sanitize_file_name(display_name);
        let path = temp.path().join(&file_name);
        let copied = {
            let mut copy = std::fs::File::create_new(&path)?;
            io::copy(&mut source.take(max_bytes.saturating_add(1)), &mut copy)?
        };
        if copied > max_bytes {
            return Err(io::Error::new(
                io::ErrorKind::FileTooLarge,
                format!("it grew past the limit of {max_bytes} bytes while it was copied"),
            ));
        }
        set_read_only(&path)?;
        Ok(Sample {
            dir: std::path::absolute(temp.path())?,
            file_name,
            preopen: Arc::default(),
            _guard: Guard::Temp { _dir: temp },
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
            preopen: Arc::default(),
            _guard: Guard::Temp { _dir: temp },
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
            preopen: Arc::default(),
            _guard: Guard::Borrowed,
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

    /// The sample's directory as wasm plugins' preopen.
    pub(crate) fn preopen(&self) -> &PreopenCache {
        &self.preopen
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

/// Reusable directories for samples that are held in memory (the server keeps small uploads in
/// its database): each slot is a directory holding one read-only file, rewritten in place for
/// each sample (renamed to the sample's name, written over, cut to length). Placing a sample in a slot
/// creates no file and no directory, which on some filesystems is most of what a small scan
/// costs. A slot is lent to one sample at a time and grows the pool only when every slot is in
/// use, so there are as many slots as scans ever ran at once.
///
/// When a sample is dropped its slot is reused only if it still holds exactly its file, still
/// read-only (a native plugin runs as Cordon's user and could have added or replaced files, or
/// made the file writable): otherwise the
/// slot is deleted, so nothing one scan left behind is seen by the next. A free slot keeps its
/// last sample's bytes (in a directory only Cordon's user can open) until the next scan
/// overwrites them; the database holds the same bytes anyway.
#[derive(Debug)]
pub struct SlotPool {
    root: PathBuf,
    free: Mutex<Vec<Slot>>,
    next: AtomicU64,
}

/// A slot: its directory, a write handle on its one file, that file's current name, and the
/// directory as wasm plugins' preopen (opened by the first wasm scan in the slot, closed when
/// the slot is deleted).
#[derive(Debug)]
struct Slot {
    dir: PathBuf,
    /// The directory's device and inode: a slot whose path now names another directory is
    /// not reused, since its preopen still shows the one it was made with.
    dir_id: (u64, u64),
    file: File,
    name: String,
    preopen: Arc<PreopenCache>,
}

/// A slot lent to a sample; given back to its pool on drop.
#[derive(Debug)]
struct SlotLease {
    pool: Arc<SlotPool>,
    slot: Option<Slot>,
}

impl SlotPool {
    /// Use `root` for slots, removing whatever a previous run left in it. The directory
    /// itself is kept (it may be a mount point: slots on a tmpfs), and made private to
    /// Cordon's user (mode 0700).
    pub fn open(root: &Path) -> io::Result<Arc<SlotPool>> {
        use std::os::unix::fs::PermissionsExt;
        std::fs::create_dir_all(root)?;
        // Emptied below: never through a link to some other directory.
        if std::fs::symlink_metadata(root)?.file_type().is_symlink() {
            return Err(io::Error::other(format!(
                "{} is a symbolic link; the scan slots need a directory of their own \
                 (a mount point is fine)",
                root.display()
            )));
        }
        for entry in std::fs::read_dir(root)? {
            let entry = entry?;
            if entry.file_type()?.is_dir() {
                std::fs::remove_dir_all(entry.path())?;
            } else {
                std::fs::remove_file(entry.path())?;
            }
        }
        std::fs::set_permissions(root, std::fs::Permissions::from_mode(0o700))?;
        Ok(Arc::new(SlotPool {
            root: std::path::absolute(root)?,
            free: Mutex::new(Vec::new()),
            next: AtomicU64::new(0),
        }))
    }

    /// Slots not lent out.
    #[cfg(test)]
    fn idle(&self) -> usize {
        self.free.lock().unwrap_or_else(|p| p.into_inner()).len()
    }

    /// `bytes` as a sample named after `display_name`, in a free slot (a new one when none
    /// is free).
    pub fn sample(self: &Arc<Self>, bytes: &[u8], display_name: &str) -> io::Result<Sample> {
        let file_name = sanitize_file_name(display_name);
        let free = self.free.lock().unwrap_or_else(|p| p.into_inner()).pop();
        let mut slot = match free {
            Some(slot) => slot,
            None => self.new_slot(&file_name)?,
        };
        let placed = (|| {
            if slot.name != file_name {
                std::fs::rename(slot.dir.join(&slot.name), slot.dir.join(&file_name))?;
                slot.name.clone_from(&file_name);
            }
            // Written over the previous sample, then cut to length: never truncated to zero
            // first, which makes ext4 flush the file to disk when it is next closed.
            slot.file.write_all_at(bytes, 0)?;
            slot.file.set_len(bytes.len() as u64)
        })();
        if let Err(e) = placed {
            let _ = std::fs::remove_dir_all(&slot.dir);
            return Err(e);
        }
        Ok(Sample {
            dir: slot.dir.clone(),
            file_name,
            preopen: slot.preopen.clone(),
            _guard: Guard::Slot {
                _lease: SlotLease {
                    pool: self.clone(),
                    slot: Some(slot),
                },
            },
        })
    }

    fn new_slot(&self, file_name: &str) -> io::Result<Slot> {
        let n = self.next.fetch_add(1, Ordering::Relaxed);
        let dir = self.root.join(n.to_string());
        std::fs::create_dir(&dir)?;
        let made = std::fs::metadata(&dir)?;
        let dir_id = (made.dev(), made.ino());
        // Read-only for every later open; this handle, opened at creation, can still write.
        let file = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o400)
            .open(dir.join(file_name))?;
        Ok(Slot {
            dir,
            dir_id,
            file,
            name: file_name.to_owned(),
            preopen: Arc::new(PreopenCache::expecting(dir_id.0, dir_id.1)),
        })
    }
}

impl Slot {
    /// Whether the slot's path still names its directory, and the directory holds exactly
    /// this slot's file, read-only, and nothing else.
    fn intact(&self) -> bool {
        use std::os::unix::fs::PermissionsExt;
        let only_ours = || -> io::Result<bool> {
            let now = std::fs::metadata(&self.dir)?;
            if (now.dev(), now.ino()) != self.dir_id {
                return Ok(false);
            }
            let mut entries = std::fs::read_dir(&self.dir)?;
            let Some(first) = entries.next() else {
                return Ok(false);
            };
            let first = first?;
            let meta = first.metadata()?;
            Ok(entries.next().is_none()
                && first.file_name() == self.name.as_str()
                && meta.ino() == self.file.metadata()?.ino()
                && meta.permissions().mode() & 0o7777 == 0o400)
        };
        only_ours().unwrap_or(false)
    }
}

impl Drop for SlotLease {
    fn drop(&mut self) {
        let Some(slot) = self.slot.take() else { return };
        if slot.intact() {
            self.pool
                .free
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .push(slot);
        } else {
            tracing::warn!(
                slot = %slot.dir.display(),
                "a scan left its sample directory changed; deleting it"
            );
            let _ = std::fs::remove_dir_all(&slot.dir);
        }
    }
}

/// Open `path` (following symlinks) for reading, if it is a regular file. A directory, FIFO,
/// socket or device is refused with an error that says which it is, and never waited on: the
/// type is checked before the open, and the open itself does not block (`O_NONBLOCK`, which
/// does nothing to a regular file's reads), so a FIFO put in the file's place between the two
/// is refused too instead of holding the caller until something writes to it.
pub fn open_regular_file(path: &Path) -> io::Result<File> {
    let kind = std::fs::metadata(path)?.file_type();
    if !kind.is_file() {
        return Err(not_regular(kind));
    }
    open_without_waiting(path)
}

/// The open of [`open_regular_file`], after its check of the type: without blocking, then the
/// type checked again on what was opened.
fn open_without_waiting(path: &Path) -> io::Result<File> {
    use rustix::fs::OFlags;
    let file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags((OFlags::NONBLOCK | OFlags::NOCTTY).bits() as i32)
        .open(path)?;
    let kind = file.metadata()?.file_type();
    if !kind.is_file() {
        return Err(not_regular(kind));
    }
    Ok(file)
}

/// Why a file of type `kind` is not scanned.
fn not_regular(kind: std::fs::FileType) -> io::Error {
    use std::os::unix::fs::FileTypeExt;
    let what = if kind.is_dir() {
        "a directory"
    } else if kind.is_fifo() {
        "a FIFO"
    } else if kind.is_socket() {
        "a socket"
    } else if kind.is_char_device() {
        "a character device"
    } else if kind.is_block_device() {
        "a block device"
    } else {
        "of an unknown kind"
    };
    io::Error::new(
        io::ErrorKind::InvalidInput,
        format!("it is {what}, not a regular file"),
    )
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
    fn the_slot_directory_is_emptied_at_start_but_never_through_a_link() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("scan");
        std::fs::create_dir_all(root.join("7")).unwrap();
        std::fs::write(root.join("7").join("left.txt"), b"x").unwrap();
        std::fs::write(root.join("stray"), b"x").unwrap();
        SlotPool::open(&root).unwrap();
        assert_eq!(std::fs::read_dir(&root).unwrap().count(), 0, "emptied");
        // A link in its place is refused, and what it points to is left alone.
        let elsewhere = dir.path().join("elsewhere");
        std::fs::create_dir(&elsewhere).unwrap();
        std::fs::write(elsewhere.join("keep.txt"), b"x").unwrap();
        std::fs::remove_dir(&root).unwrap();
        std::os::unix::fs::symlink(&elsewhere, &root).unwrap();
        let err = SlotPool::open(&root).unwrap_err();
        assert!(err.to_string().contains("symbolic link"), "{err}");
        assert!(elsewhere.join("keep.txt").exists());
    }
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

    /// Runs `f` on another thread and fails if it has not returned within a minute: a
    /// regression that blocks fails the test instead of hanging the suite.
    fn without_hanging<R: Send + 'static>(what: &str, f: impl FnOnce() -> R + Send + 'static) -> R {
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let _ = tx.send(f());
        });
        rx.recv_timeout(std::time::Duration::from_secs(60))
            .unwrap_or_else(|_| panic!("{what} blocked"))
    }

    fn fifo_in(dir: &Path) -> PathBuf {
        let fifo = dir.join("fifo");
        rustix::fs::mknodat(
            rustix::fs::CWD,
            &fifo,
            rustix::fs::FileType::Fifo,
            rustix::fs::Mode::RUSR | rustix::fs::Mode::WUSR,
            0,
        )
        .unwrap();
        fifo
    }

    #[test]
    fn only_regular_files_are_opened_and_a_fifo_is_refused_without_waiting() {
        let dir = tempfile::tempdir().unwrap();
        let regular = dir.path().join("file.txt");
        std::fs::write(&regular, b"abc").unwrap();
        let link = dir.path().join("link");
        std::os::unix::fs::symlink(&regular, &link).unwrap();
        for path in [&regular, &link] {
            let mut bytes = String::new();
            open_regular_file(path)
                .unwrap()
                .read_to_string(&mut bytes)
                .unwrap();
            assert_eq!(bytes, "abc", "{}", path.display());
        }

        let fifo = fifo_in(dir.path());
        let fifo_link = dir.path().join("fifo-link");
        std::os::unix::fs::symlink(&fifo, &fifo_link).unwrap();
        for (path, what) in [
            (dir.path().to_owned(), "a directory"),
            (PathBuf::from("/dev/null"), "a character device"),
            (fifo.clone(), "a FIFO"),
            (fifo_link, "a FIFO"),
        ] {
            let shown = path.display().to_string();
            let e = without_hanging(&shown, move || open_regular_file(&path)).unwrap_err();
            assert_eq!(e.kind(), io::ErrorKind::InvalidInput, "{shown}");
            assert_eq!(
                e.to_string(),
                format!("it is {what}, not a regular file"),
                "{shown}"
            );
        }
        assert_eq!(
            open_regular_file(&dir.path().join("missing"))
                .unwrap_err()
                .kind(),
            io::ErrorKind::NotFound
        );
    }

    /// The open after the check of the type, alone, as when a FIFO takes the file's place
    /// between the two: it does not wait for a writer, and refuses what it opened.
    #[test]
    fn a_fifo_that_replaces_the_file_after_the_check_is_refused_without_waiting() {
        let dir = tempfile::tempdir().unwrap();
        let fifo = fifo_in(dir.path());
        let e =
            without_hanging("the open of a FIFO", move || open_without_waiting(&fifo)).unwrap_err();
        assert_eq!(e.to_string(), "it is a FIFO, not a regular file");
    }

    #[test]
    fn a_copy_stops_at_its_limit() {
        let root = tempfile::tempdir().unwrap();
        let source = root.path().join("source.bin");
        std::fs::write(&source, b"0123456789").unwrap();
        let work = root.path().join("work");
        let open = || open_regular_file(&source).unwrap();

        let exact = Sample::copy_from(&open(), "s.bin", &work, 10).unwrap();
        assert_eq!(std::fs::read(exact.path()).unwrap(), b"0123456789");
        assert!(
            std::fs::metadata(exact.path())
                .unwrap()
                .permissions()
                .readonly()
        );

        // As when the file grew after its size was checked.
        let e = Sample::copy_from(&open(), "s.bin", &work, 9).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::FileTooLarge);
        assert!(e.to_string().contains("limit of 9 bytes"), "{e}");
        drop(exact);
        // Nothing is left behind by the copy refused or by the sample dropped.
        assert_eq!(std::fs::read_dir(&work).unwrap().count(), 0);
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

    fn names(dir: &Path) -> Vec<String> {
        let mut v: Vec<String> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        v.sort();
        v
    }

    #[test]
    fn slots_are_reused_in_place() {
        let root = tempfile::tempdir().unwrap();
        let pool = SlotPool::open(&root.path().join("slots")).unwrap();
        let a = pool.sample(b"first sample", "dir/a.txt").unwrap();
        assert_eq!(a.file_name(), "a.txt");
        assert_eq!(std::fs::read(a.path()).unwrap(), b"first sample");
        assert_eq!(names(a.dir()), ["a.txt"]);
        assert!(
            std::fs::metadata(a.path())
                .unwrap()
                .permissions()
                .readonly()
        );
        // Both lent out at once: two slots.
        let b = pool.sample(b"second", "b.bin").unwrap();
        assert_ne!(a.dir(), b.dir());
        let (a_dir, a_ino) = (
            a.dir().to_owned(),
            std::fs::metadata(a.path()).unwrap().ino(),
        );
        drop(a);
        assert_eq!(pool.idle(), 1);
        // The free slot is reused: same directory and file, new name, new content, shorter.
        let c = pool.sample(b"x", "c.exe").unwrap();
        assert_eq!(c.dir(), a_dir);
        assert_eq!(names(c.dir()), ["c.exe"]);
        assert_eq!(std::fs::read(c.path()).unwrap(), b"x");
        assert_eq!(std::fs::metadata(c.path()).unwrap().ino(), a_ino);
        assert_eq!(c.guest_path(), "/scan/c.exe");
        drop((b, c));
        assert_eq!(pool.idle(), 2);
        assert_eq!(names(&root.path().join("slots")).len(), 2);
    }

    #[test]
    fn a_slot_changed_by_a_scan_is_deleted_not_reused() {
        use std::os::unix::fs::PermissionsExt;
        let root = tempfile::tempdir().unwrap();
        let pool = SlotPool::open(&root.path().join("slots")).unwrap();
        // A file planted beside the sample.
        let s = pool.sample(b"one", "one.txt").unwrap();
        let dir = s.dir().to_owned();
        std::fs::write(dir.join("planted"), b"for the next scan").unwrap();
        drop(s);
        assert!(!dir.exists());
        assert_eq!(pool.idle(), 0);
        // The sample replaced by another file of the same name.
        let s = pool.sample(b"two", "two.txt").unwrap();
        let dir = s.dir().to_owned();
        std::fs::remove_file(s.path()).unwrap();
        std::fs::write(s.path(), b"replaced").unwrap();
        drop(s);
        assert!(!dir.exists());
        // The sample made writable.
        let s = pool.sample(b"mode", "mode.txt").unwrap();
        let dir = s.dir().to_owned();
        std::fs::set_permissions(s.path(), std::fs::Permissions::from_mode(0o600)).unwrap();
        drop(s);
        assert!(!dir.exists());
        // The directory swapped for a look-alike holding the same file (same inode, same name,
        // still read-only): the slot's preopen would still show the directory moved away.
        let s = pool.sample(b"swap", "swap.txt").unwrap();
        let dir = s.dir().to_owned();
        let moved = root.path().join("moved");
        std::fs::rename(&dir, &moved).unwrap();
        std::fs::create_dir(&dir).unwrap();
        std::fs::rename(moved.join("swap.txt"), s.path()).unwrap();
        drop(s);
        assert!(!dir.exists());
        assert_eq!(pool.idle(), 0);
        // The sample deleted.
        let s = pool.sample(b"three", "three.txt").unwrap();
        let dir = s.dir().to_owned();
        std::fs::remove_file(s.path()).unwrap();
        drop(s);
        assert!(!dir.exists());
        assert_eq!(pool.idle(), 0);
        // Then a fresh slot still works, and a new pool empties what an old run left.
        let s = pool.sample(b"four", "four.txt").unwrap();
        assert_eq!(std::fs::read(s.path()).unwrap(), b"four");
        let pool = SlotPool::open(&root.path().join("slots")).unwrap();
        assert!(names(&root.path().join("slots")).is_empty());
        assert_eq!(pool.idle(), 0);
        drop(s); // Its slot went with the old run: nothing to give back.
        assert_eq!(pool.idle(), 0);
    }
}
