//! The file to scan, opened read-only.

use std::fs::File;
use std::io::{self, Read, Seek, SeekFrom};
use std::ops::ControlFlow;
use std::path::{Path, PathBuf};

/// The file to scan: an open, read-only [`File`] with its path and name.
///
/// It implements [`Read`] and [`Seek`], so any parser that takes a reader works on it. For
/// whole-file scans, [`read_chunks`](SampleFile::read_chunks) streams the file in large chunks
/// without holding it in memory (files can be far larger than a wasm plugin's memory cap);
/// [`bytes`](SampleFile::bytes) reads it all at once when you know it is small.
///
/// In a wasm plugin every read is a call into the host, so read in large chunks
/// ([`DEFAULT_CHUNK_SIZE`](SampleFile::DEFAULT_CHUNK_SIZE), 128 KiB) rather than small ones.
#[derive(Debug)]
pub struct SampleFile {
    file: File,
    path: PathBuf,
    name: String,
}

impl SampleFile {
    /// The chunk size [`for_each_chunk`](SampleFile::for_each_chunk) uses: 128 KiB. Large
    /// enough that a call into the host costs little beside the copy, small enough that a chunk
    /// is still in the processor's cache when it is searched, and that a wasm plugin dirties
    /// few pages of its memory, which the host resets after every scan. On Cordon's large-file
    /// benchmark it scanned 1 MiB files faster than chunks of 64 KiB, 256 KiB or 1 MiB.
    pub const DEFAULT_CHUNK_SIZE: usize = 128 << 10;

    /// Opens `path` for reading.
    pub fn open(path: impl Into<PathBuf>) -> io::Result<SampleFile> {
        let path = path.into();
        let file = File::open(&path)?;
        let name = path
            .file_name()
            .map(|name| name.to_string_lossy().into_owned())
            .unwrap_or_default();
        Ok(SampleFile { file, path, name })
    }

    /// The path the plugin was given: for a wasm plugin `/scan/<name>`, for a native process the
    /// absolute path on the host.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The file's name: the last component of its path (the host keeps the submitted name's
    /// extension). Not valid UTF-8 parts are replaced by U+FFFD.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The extension of [`name`](SampleFile::name), lowercased, without the dot; `None` when the
    /// name has none (`"README"`, `".bashrc"`).
    pub fn extension(&self) -> Option<String> {
        Path::new(&self.name)
            .extension()
            .map(|ext| ext.to_string_lossy().to_ascii_lowercase())
            .filter(|ext| !ext.is_empty())
    }

    /// The file's size in bytes, from its metadata.
    pub fn size(&self) -> io::Result<u64> {
        Ok(self.file.metadata()?.len())
    }

    /// The underlying file.
    pub fn file(&mut self) -> &mut File {
        &mut self.file
    }

    /// Reads the whole file, from the start, into memory. Meant for small files: a wasm plugin
    /// that reads a large file this way runs into its memory cap. Use
    /// [`read_chunks`](SampleFile::read_chunks) to stream.
    pub fn bytes(&mut self) -> io::Result<Vec<u8>> {
        self.file.seek(SeekFrom::Start(0))?;
        let mut bytes = Vec::with_capacity(self.size().unwrap_or(0).min(1 << 26) as usize);
        self.file.read_to_end(&mut bytes)?;
        Ok(bytes)
    }

    /// Reads up to `limit` bytes from the start of the file: the header, for magic numbers.
    pub fn head(&mut self, limit: usize) -> io::Result<Vec<u8>> {
        self.file.seek(SeekFrom::Start(0))?;
        let mut bytes = Vec::with_capacity(limit.min(1 << 26));
        (&mut self.file)
            .take(limit as u64)
            .read_to_end(&mut bytes)?;
        Ok(bytes)
    }

    /// Streams the file from the start in chunks of `chunk_size` bytes (every chunk is full
    /// except the last, so chunk boundaries do not depend on how the host serves reads) and
    /// calls `visit` on each. `visit` returns [`ControlFlow::Break`] to stop early. Returns the
    /// number of bytes read. An empty file gives no chunk.
    ///
    /// A pattern can span two chunks: keep the tail of the previous chunk if you search for
    /// one, or use a streaming matcher.
    ///
    /// ```no_run
    /// # use cordon_plugin_sdk::SampleFile;
    /// # use std::ops::ControlFlow;
    /// # fn demo(file: &mut SampleFile) -> std::io::Result<()> {
    /// let mut zeros = 0u64;
    /// file.read_chunks(SampleFile::DEFAULT_CHUNK_SIZE, |chunk| {
    ///     zeros += chunk.iter().filter(|&&b| b == 0).count() as u64;
    ///     ControlFlow::Continue(())
    /// })?;
    /// # Ok(()) }
    /// ```
    pub fn read_chunks<F>(&mut self, chunk_size: usize, mut visit: F) -> io::Result<u64>
    where
        F: FnMut(&[u8]) -> ControlFlow<()>,
    {
        assert!(chunk_size > 0, "chunk_size must be positive");
        self.file.seek(SeekFrom::Start(0))?;
        // No larger than the file (plus one byte, to see its end in one read): a 4 KiB sample
        // does not cost a zeroed full-size buffer, and the pages of linear memory it would touch.
        let buffer_size = match self.size() {
            Ok(size) => chunk_size.min(
                usize::try_from(size)
                    .unwrap_or(usize::MAX)
                    .saturating_add(1),
            ),
            Err(_) => chunk_size,
        };
        let mut buffer = vec![0u8; buffer_size];
        let mut total = 0u64;
        loop {
            let filled = fill(&mut self.file, &mut buffer)?;
            if filled == 0 {
                break;
            }
            total += filled as u64;
            if visit(&buffer[..filled]).is_break() || filled < buffer.len() {
                break;
            }
        }
        Ok(total)
    }

    /// [`read_chunks`](SampleFile::read_chunks) with
    /// [`DEFAULT_CHUNK_SIZE`](SampleFile::DEFAULT_CHUNK_SIZE), for a visitor that never stops
    /// early.
    pub fn for_each_chunk<F>(&mut self, mut visit: F) -> io::Result<u64>
    where
        F: FnMut(&[u8]),
    {
        self.read_chunks(SampleFile::DEFAULT_CHUNK_SIZE, |chunk| {
            visit(chunk);
            ControlFlow::Continue(())
        })
    }
}

/// Reads until `buffer` is full or the file ends; returns how many bytes were read.
fn fill(file: &mut File, buffer: &mut [u8]) -> io::Result<usize> {
    let mut filled = 0;
    while filled < buffer.len() {
        match file.read(&mut buffer[filled..]) {
            Ok(0) => break,
            Ok(n) => filled += n,
            Err(err) if err.kind() == io::ErrorKind::Interrupted => continue,
            Err(err) => return Err(err),
        }
    }
    Ok(filled)
}

impl Read for SampleFile {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.file.read(buf)
    }
}

impl Seek for SampleFile {
    fn seek(&mut self, pos: SeekFrom) -> io::Result<u64> {
        self.file.seek(pos)
    }
}
