//! Random-access byte sources. Every parser reads through `ByteSource`, so the
//! same code reads a slice in tests, a file natively and a `Blob` in a Web
//! Worker, and every source counts the bytes it actually read (reports carry
//! `bytes_read` next to `file_bytes` to prove that a 10 GB file was not read
//! whole). This module knows nothing of the web: the Blob source lives in
//! `web.rs`.

use crate::error::{err, ErrorKind, Result};
use std::cell::Cell;

/// A read-only, random-access view of one file.
pub trait ByteSource {
    /// The file's name as the user gave it, for error messages.
    fn name(&self) -> &str;
    /// Total length in bytes.
    fn len(&self) -> u64;
    /// Fill `buf` with the bytes at `offset`. Errors if the range leaves the
    /// file.
    fn read_exact_at(&self, offset: u64, buf: &mut [u8]) -> Result<()>;
    /// Bytes read so far through this source.
    fn bytes_read(&self) -> u64;

    /// This source, when it may be read from several threads at once (a
    /// native file: the scan reads it in parallel). Sources over JS objects
    /// are not.
    fn as_sync(&self) -> Option<&(dyn ByteSource + Sync)> {
        None
    }

    fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Say which small ranges are about to be read, so that a source
    /// over the network fetches them together instead of one round trip
    /// each. Local sources ignore it.
    fn prefetch(&self, _ranges: &[(u64, u64)]) {}

    /// For a file at a URL: the requests sent and bytes fetched so far.
    fn remote_stats(&self) -> Option<RemoteStats> {
        None
    }
}

/// Requests and bytes that crossed the network for one source read from a
/// URL (`crate::remote`).
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct RemoteStats {
    /// GET and HEAD requests sent (retries of one request count once).
    pub requests: u64,
    /// Body bytes received.
    pub bytes_fetched: u64,
}

/// Largest single read a parser may ask for. Every declared length passes
/// through this cap before memory is allocated for it.
pub const MAX_READ: u64 = 256 * 1024 * 1024;

/// Read `len` bytes at `offset` into a new vector, after checking the range
/// against the file and the read cap.
pub fn read_vec(source: &dyn ByteSource, offset: u64, len: u64) -> Result<Vec<u8>> {
    check_range(source, offset, len)?;
    if len > MAX_READ {
        return Err(err(
            ErrorKind::LimitExceeded,
            format!("refusing to read {len} bytes at once (limit {MAX_READ})"),
        )
        .at(offset)
        .in_file(source.name()));
    }
    let len = usize::try_from(len)
        .map_err(|_| err(ErrorKind::LimitExceeded, "length does not fit in memory"))?;
    let mut buf = vec![0u8; len];
    source.read_exact_at(offset, &mut buf)?;
    Ok(buf)
}

/// Error unless `offset..offset+len` lies inside the file.
pub fn check_range(source: &dyn ByteSource, offset: u64, len: u64) -> Result<()> {
    let end = offset.checked_add(len).ok_or_else(|| {
        err(ErrorKind::LimitExceeded, "byte range overflows u64")
            .at(offset)
            .in_file(source.name())
    })?;
    if end > source.len() {
        return Err(err(
            ErrorKind::Truncated,
            format!(
                "file ends at byte {} but a read needs bytes {offset}..{end}",
                source.len()
            ),
        )
        .at(offset)
        .in_file(source.name()));
    }
    Ok(())
}

/// A source over bytes in memory (tests, fixtures, generated demos).
pub struct SliceSource<'a> {
    name: String,
    bytes: &'a [u8],
    read: Cell<u64>,
}

impl<'a> SliceSource<'a> {
    pub fn new(name: impl Into<String>, bytes: &'a [u8]) -> Self {
        SliceSource {
            name: name.into(),
            bytes,
            read: Cell::new(0),
        }
    }
}

impl ByteSource for SliceSource<'_> {
    fn name(&self) -> &str {
        &self.name
    }
    fn len(&self) -> u64 {
        self.bytes.len() as u64
    }
    fn read_exact_at(&self, offset: u64, buf: &mut [u8]) -> Result<()> {
        check_range(self, offset, buf.len() as u64)?;
        let start = usize::try_from(offset)
            .map_err(|_| err(ErrorKind::Truncated, "offset beyond memory").at(offset))?;
        let chunk = self
            .bytes
            .get(start..start + buf.len())
            .ok_or_else(|| err(ErrorKind::Truncated, "read past end").at(offset))?;
        buf.copy_from_slice(chunk);
        self.read.set(self.read.get() + buf.len() as u64);
        Ok(())
    }
    fn bytes_read(&self) -> u64 {
        self.read.get()
    }
}

/// A native file read with positional reads (no mmap, no whole-file read).
#[cfg(not(target_arch = "wasm32"))]
pub struct FileSource {
    name: String,
    file: std::fs::File,
    len: u64,
    read: std::sync::atomic::AtomicU64,
}

#[cfg(not(target_arch = "wasm32"))]
impl FileSource {
    pub fn open(path: &std::path::Path) -> Result<Self> {
        let name = path.display().to_string();
        // Look before opening: opening a FIFO blocks until a writer comes,
        // and a pipe or terminal has no positions to read at.
        let metadata = std::fs::metadata(path)
            .map_err(|e| err(ErrorKind::Io, format!("cannot open: {e}")).in_file(&name))?;
        if !metadata.is_file() {
            return Err(err(
                ErrorKind::Io,
                format!(
                    "not a regular file ({}): ckptcheck reads a checkpoint at byte positions, so save the stream to a file first",
                    file_kind(&metadata)
                ),
            )
            .in_file(&name));
        }
        let file = std::fs::File::open(path)
            .map_err(|e| err(ErrorKind::Io, format!("cannot open: {e}")).in_file(&name))?;
        let len = file
            .metadata()
            .map_err(|e| err(ErrorKind::Io, format!("cannot stat: {e}")).in_file(&name))?
            .len();
        Ok(FileSource {
            name,
            file,
            len,
            read: std::sync::atomic::AtomicU64::new(0),
        })
    }

    /// Copy `len` bytes at `offset` into `out` inside the kernel where it
    /// can (`copy_file_range` on Linux, through `std::io::copy`), for the
    /// writer's verbatim ranges. The range is checked like any read.
    pub fn copy_range_to(&self, offset: u64, len: u64, out: &mut std::fs::File) -> Result<()> {
        use std::io::{Read, Seek, SeekFrom};
        check_range(self, offset, len)?;
        let mut input = &self.file;
        let failed =
            |e: std::io::Error| err(ErrorKind::Io, format!("cannot copy: {e}")).in_file(&self.name);
        input.seek(SeekFrom::Start(offset)).map_err(failed)?;
        let copied = std::io::copy(&mut input.take(len), out).map_err(failed)?;
        if copied != len {
            return Err(err(
                ErrorKind::Truncated,
                format!("copied {copied} of {len} bytes"),
            )
            .in_file(&self.name)
            .at(offset));
        }
        self.read
            .fetch_add(len, std::sync::atomic::Ordering::Relaxed);
        Ok(())
    }
}

/// What a non-regular file is, in words.
#[cfg(not(target_arch = "wasm32"))]
fn file_kind(metadata: &std::fs::Metadata) -> &'static str {
    let file_type = metadata.file_type();
    if file_type.is_dir() {
        return "a folder";
    }
    #[cfg(unix)]
    {
        use std::os::unix::fs::FileTypeExt;
        if file_type.is_fifo() {
            return "a FIFO or pipe";
        }
        if file_type.is_char_device() {
            return "a character device";
        }
        if file_type.is_block_device() {
            return "a block device";
        }
        if file_type.is_socket() {
            return "a socket";
        }
    }
    "not a plain file"
}

#[cfg(not(target_arch = "wasm32"))]
impl ByteSource for FileSource {
    fn name(&self) -> &str {
        &self.name
    }
    fn len(&self) -> u64 {
        self.len
    }
    fn read_exact_at(&self, offset: u64, buf: &mut [u8]) -> Result<()> {
        check_range(self, offset, buf.len() as u64)?;
        #[cfg(unix)]
        {
            use std::os::unix::fs::FileExt;
            self.file.read_exact_at(buf, offset).map_err(|e| {
                err(ErrorKind::Io, format!("read failed: {e}"))
                    .at(offset)
                    .in_file(&self.name)
            })?;
        }
        #[cfg(not(unix))]
        {
            use std::io::{Read, Seek, SeekFrom};
            let mut file = &self.file;
            file.seek(SeekFrom::Start(offset))
                .and_then(|_| file.read_exact(buf))
                .map_err(|e| {
                    err(ErrorKind::Io, format!("read failed: {e}"))
                        .at(offset)
                        .in_file(&self.name)
                })?;
        }
        self.read
            .fetch_add(buf.len() as u64, std::sync::atomic::Ordering::Relaxed);
        Ok(())
    }
    fn bytes_read(&self) -> u64 {
        self.read.load(std::sync::atomic::Ordering::Relaxed)
    }
    fn as_sync(&self) -> Option<&(dyn ByteSource + Sync)> {
        Some(self)
    }
}

/// A buffered forward reader over a source, for formats that are a stream of
/// small records (pickles, GGUF headers). It reads in chunks so that a header
/// made of thousands of tiny fields costs a few reads, not thousands.
pub struct Cursor<'s> {
    source: &'s dyn ByteSource,
    position: u64,
    buffer: Vec<u8>,
    buffer_start: u64,
    /// Reads never go at or past this offset (the end of a zip entry, say).
    limit: u64,
}

const CURSOR_CHUNK: u64 = 64 * 1024;

impl<'s> Cursor<'s> {
    pub fn new(source: &'s dyn ByteSource, position: u64) -> Self {
        Self::with_limit(source, position, source.len())
    }

    pub fn with_limit(source: &'s dyn ByteSource, position: u64, limit: u64) -> Self {
        Cursor {
            source,
            position,
            buffer: Vec::new(),
            buffer_start: 0,
            limit: limit.min(source.len()),
        }
    }

    pub fn position(&self) -> u64 {
        self.position
    }

    pub fn source_name(&self) -> &str {
        self.source.name()
    }

    pub fn remaining(&self) -> u64 {
        self.limit.saturating_sub(self.position)
    }

    pub fn seek(&mut self, position: u64) {
        self.position = position;
    }

    /// Make the next `len` bytes available in the buffer and return where
    /// they start in it. Errors with `Truncated` if they are not in the file
    /// (or before the limit), before allocating anything for them.
    fn fill(&mut self, len: u64) -> Result<usize> {
        if len > self.remaining() {
            return Err(err(
                ErrorKind::Truncated,
                format!("needs {len} bytes but only {} remain", self.remaining()),
            )
            .at(self.position)
            .in_file(self.source.name()));
        }
        let buffer_end = self.buffer_start + self.buffer.len() as u64;
        if self.position < self.buffer_start || self.position + len > buffer_end {
            let chunk = len.max(CURSOR_CHUNK.min(self.limit - self.position));
            self.buffer = read_vec(self.source, self.position, chunk)?;
            self.buffer_start = self.position;
        }
        Ok((self.position - self.buffer_start) as usize)
    }

    /// Borrow the next `len` bytes (no allocation for small reads).
    #[inline]
    pub fn take_slice(&mut self, len: u64) -> Result<&[u8]> {
        // Fast path: the bytes are already buffered (the buffer never holds
        // bytes at or past `limit`, so no limit check is needed).
        let start = self.position.wrapping_sub(self.buffer_start);
        if self.position >= self.buffer_start
            && start <= self.buffer.len() as u64
            && len <= self.buffer.len() as u64 - start
        {
            self.position += len;
            let start = start as usize;
            return Ok(&self.buffer[start..start + len as usize]);
        }
        let start = self.fill(len)?;
        self.position += len;
        Ok(&self.buffer[start..start + len as usize])
    }

    /// Take the next `len` bytes as an owned vector.
    pub fn take(&mut self, len: u64) -> Result<Vec<u8>> {
        Ok(self.take_slice(len)?.to_vec())
    }

    #[inline]
    pub fn u8(&mut self) -> Result<u8> {
        Ok(self.take_slice(1)?[0])
    }

    pub fn array<const N: usize>(&mut self) -> Result<[u8; N]> {
        let bytes = self.take_slice(N as u64)?;
        let mut out = [0u8; N];
        out.copy_from_slice(bytes);
        Ok(out)
    }

    pub fn u16_le(&mut self) -> Result<u16> {
        Ok(u16::from_le_bytes(self.array()?))
    }
    pub fn u32_le(&mut self) -> Result<u32> {
        Ok(u32::from_le_bytes(self.array()?))
    }
    pub fn u64_le(&mut self) -> Result<u64> {
        Ok(u64::from_le_bytes(self.array()?))
    }
    pub fn i32_le(&mut self) -> Result<i32> {
        Ok(i32::from_le_bytes(self.array()?))
    }
    pub fn i64_le(&mut self) -> Result<i64> {
        Ok(i64::from_le_bytes(self.array()?))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slice_source_counts_bytes_and_rejects_reads_past_the_end() {
        let bytes = [1u8, 2, 3, 4, 5];
        let source = SliceSource::new("five.bin", &bytes);
        let mut buf = [0u8; 2];
        source.read_exact_at(3, &mut buf).unwrap();
        assert_eq!(buf, [4, 5]);
        assert_eq!(source.bytes_read(), 2);
        let error = source.read_exact_at(4, &mut buf).unwrap_err();
        assert_eq!(error.kind, ErrorKind::Truncated);
        assert_eq!(error.file.as_deref(), Some("five.bin"));
    }

    #[test]
    fn cursor_reads_in_chunks_and_reports_truncation_before_allocating() {
        let bytes: Vec<u8> = (0..=255).collect();
        let source = SliceSource::new("ramp.bin", &bytes);
        let mut cursor = Cursor::new(&source, 10);
        assert_eq!(cursor.u8().unwrap(), 10);
        assert_eq!(cursor.u16_le().unwrap(), u16::from_le_bytes([11, 12]));
        let error = cursor.take(u64::MAX / 2).unwrap_err();
        assert_eq!(error.kind, ErrorKind::Truncated);
        // One chunked read served both small reads.
        assert_eq!(source.bytes_read(), 246);
    }
}
