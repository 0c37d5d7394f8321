//! The zip container of `torch.save` (torch >= 1.6): reads the end of central
//! directory (ZIP64 too), the central directory, and local headers only for
//! the entries asked for, so a file with thousands of storages costs one read
//! of the directory plus one small read per storage. Entries are stored (torch
//! never compresses); a compressed entry is refused with a clear error rather
//! than inflated, which also rules out zip bombs.
//! Spec: PKWARE APPNOTE 6.3; caffe2/serialize/inline_container.cc.

use crate::error::{err, Error, ErrorKind, Result};
use crate::source::{read_vec, ByteSource, Cursor};

const EOCD_SIGNATURE: u32 = 0x0605_4b50;
const ZIP64_LOCATOR_SIGNATURE: u32 = 0x0706_4b50;
const ZIP64_EOCD_SIGNATURE: u32 = 0x0606_4b50;
const CENTRAL_SIGNATURE: u32 = 0x0201_4b50;
const LOCAL_SIGNATURE: u32 = 0x0403_4b50;
/// Largest directory we read; torch writes about 100 bytes per storage.
const MAX_DIRECTORY_BYTES: u64 = 256 * 1024 * 1024;
const MAX_ENTRIES: u64 = 10_000_000;

/// True when the file starts with a local file header.
pub fn sniff(prefix: &[u8]) -> bool {
    prefix.starts_with(b"PK\x03\x04")
}

#[derive(Debug, Clone, PartialEq)]
pub struct ZipEntry {
    pub name: String,
    pub method: u16,
    pub compressed_size: u64,
    pub size: u64,
    pub header_offset: u64,
}

pub struct ZipArchive {
    pub entries: Vec<ZipEntry>,
}

fn bad_zip(message: impl Into<String>) -> Error {
    err(ErrorKind::BadZip, message)
}

impl ZipArchive {
    pub fn read(source: &dyn ByteSource) -> Result<ZipArchive> {
        let name = source.name();
        read_directory(source).map_err(|e| e.in_file(name))
    }

    pub fn find(&self, name: &str) -> Option<&ZipEntry> {
        self.entries.iter().find(|entry| entry.name == name)
    }

    /// Where `PyTorchStreamWriter` puts an entry's data: after the 30-byte
    /// local header, the name, a 4-byte "FB" extra header (plus ZIP64 fields
    /// for big entries), padded up to a multiple of 64 bytes
    /// (caffe2/serialize/inline_container.cc `getPadding`).
    pub fn torch_data_offset(entry: &ZipEntry) -> u64 {
        let mut start = entry.header_offset + 30 + entry.name.len() as u64 + 4;
        if entry.size >= 0xffff_ffff || entry.header_offset >= 0xffff_ffff {
            start += 4;
            if entry.size >= 0xffff_ffff {
                start += 16;
            }
            if entry.header_offset >= 0xffff_ffff {
                start += 8;
            }
        }
        start.div_ceil(64) * 64
    }

    /// Absolute offset of an entry's data, from its local header (torch pads
    /// the local extra field to align data to 64 bytes, so the central
    /// directory's extra length does not tell it).
    pub fn data_offset(&self, source: &dyn ByteSource, entry: &ZipEntry) -> Result<u64> {
        let (start, local_method) = read_local_header(
            source,
            &entry.name,
            entry.header_offset,
            entry.compressed_size,
        )?;
        if entry.method != 0 || local_method != 0 {
            return Err(bad_zip(format!(
                "zip entry {:?} is compressed (method {}); torch.save stores entries uncompressed and ckptcheck does not inflate them",
                entry.name,
                entry.method.max(local_method)
            ))
            .at(entry.header_offset)
            .in_file(source.name()));
        }
        // A stored entry's data is its bytes: a size that differs from the
        // stored length would let readers run past the entry (or the file).
        if entry.size != entry.compressed_size {
            return Err(bad_zip(format!(
                "stored zip entry {:?} declares {} bytes but stores {}",
                entry.name, entry.size, entry.compressed_size
            ))
            .at(entry.header_offset)
            .in_file(source.name()));
        }
        Ok(start)
    }
}

impl ZipArchive {
    /// Where an entry's data starts and how it is compressed, from its
    /// local header, compressed or not (for the audit of zips that are not
    /// checkpoints; checkpoints go through `data_offset`).
    pub fn raw_data(&self, source: &dyn ByteSource, entry: &ZipEntry) -> Result<(u64, u16)> {
        read_local_header(
            source,
            &entry.name,
            entry.header_offset,
            entry.compressed_size,
        )
    }
}

/// Where a stored entry's data starts, read from its local header the way
/// torch's reader (miniz) finds it: the local header's own name and extra
/// lengths decide, whatever the central directory says. Errors when the
/// header is missing, says the entry is compressed, or the data would run
/// past the end of the file.
pub fn local_data_offset(
    source: &dyn ByteSource,
    entry_name: &str,
    header_offset: u64,
    size: u64,
) -> Result<u64> {
    let (start, local_method) = read_local_header(source, entry_name, header_offset, size)?;
    if local_method != 0 {
        return Err(bad_zip(format!(
            "the local header of zip entry {entry_name:?} says it is compressed (method {local_method}); ckptcheck does not inflate entries"
        ))
        .at(header_offset)
        .in_file(source.name()));
    }
    Ok(start)
}

/// The data start and compression method a local header gives, after
/// checking its signature and that `size` bytes of data fit in the file.
fn read_local_header(
    source: &dyn ByteSource,
    entry_name: &str,
    header_offset: u64,
    size: u64,
) -> Result<(u64, u16)> {
    let header = read_vec(source, header_offset, 30).map_err(|e| e.for_tensor(entry_name))?;
    let u16_at = |i: usize| u16::from_le_bytes([header[i], header[i + 1]]);
    let signature = u32::from_le_bytes([header[0], header[1], header[2], header[3]]);
    if signature != LOCAL_SIGNATURE {
        return Err(bad_zip(format!("entry {entry_name:?} has no local header"))
            .at(header_offset)
            .in_file(source.name()));
    }
    let start = header_offset + 30 + u16_at(26) as u64 + u16_at(28) as u64;
    let end = start
        .checked_add(size)
        .ok_or_else(|| bad_zip("entry size overflows").in_file(source.name()))?;
    if end > source.len() {
        return Err(err(
            ErrorKind::Truncated,
            format!(
                "zip entry {entry_name:?} needs bytes up to {end} but the file has {}",
                source.len()
            ),
        )
        .at(start)
        .in_file(source.name()));
    }
    Ok((start, u16_at(8)))
}

fn read_directory(source: &dyn ByteSource) -> Result<ZipArchive> {
    let file_len = source.len();
    // The EOCD record is 22 bytes plus a comment of at most 65535 bytes;
    // torch writes no comment, so look at the last 1 KiB first.
    let find = |tail: &[u8]| {
        (0..tail.len().saturating_sub(21))
            .rev()
            .find(|&i| tail.get(i..i + 4) == Some(&EOCD_SIGNATURE.to_le_bytes()[..]))
    };
    let mut tail_len = file_len.min(1024);
    let mut tail = read_vec(source, file_len - tail_len, tail_len)?;
    let mut found = find(&tail);
    if found.is_none() && file_len > tail_len {
        tail_len = file_len.min(22 + 65_535);
        tail = read_vec(source, file_len - tail_len, tail_len)?;
        found = find(&tail);
    }
    let tail_start = file_len - tail_len;
    let eocd_pos = found.ok_or_else(|| {
        bad_zip("no end-of-central-directory record: not a zip file or truncated")
    })?;
    let eocd = &tail[eocd_pos..];
    let u16_at = |b: &[u8], i: usize| u16::from_le_bytes([b[i], b[i + 1]]) as u64;
    let u32_at =
        |b: &[u8], i: usize| u32::from_le_bytes([b[i], b[i + 1], b[i + 2], b[i + 3]]) as u64;
    let mut entry_count = u16_at(eocd, 10);
    let mut directory_size = u32_at(eocd, 12);
    let mut directory_offset = u32_at(eocd, 16);
    let eocd_offset = tail_start + eocd_pos as u64;

    let needs_zip64 =
        entry_count == 0xffff || directory_size == 0xffff_ffff || directory_offset == 0xffff_ffff;
    if eocd_offset >= 20 {
        let locator = read_vec(source, eocd_offset - 20, 20)?;
        if u32_at(&locator, 0) == ZIP64_LOCATOR_SIGNATURE as u64 {
            let record_offset = u64::from_le_bytes(
                locator[8..16]
                    .try_into()
                    .map_err(|_| bad_zip("bad locator"))?,
            );
            let record = read_vec(source, record_offset, 56).map_err(|e| {
                bad_zip(format!(
                    "ZIP64 end-of-directory record out of range: {}",
                    e.message
                ))
                .at(eocd_offset - 20)
            })?;
            if u32_at(&record, 0) != ZIP64_EOCD_SIGNATURE as u64 {
                return Err(bad_zip("ZIP64 locator points at no ZIP64 record").at(record_offset));
            }
            let u64_at =
                |i: usize| u64::from_le_bytes(record[i..i + 8].try_into().unwrap_or([0; 8]));
            entry_count = u64_at(32);
            directory_size = u64_at(40);
            directory_offset = u64_at(48);
        } else if needs_zip64 {
            return Err(bad_zip("directory needs ZIP64 but has no ZIP64 locator").at(eocd_offset));
        }
    }
    if entry_count > MAX_ENTRIES {
        return Err(err(
            ErrorKind::LimitExceeded,
            format!("zip declares {entry_count} entries"),
        )
        .at(eocd_offset));
    }
    if directory_size > MAX_DIRECTORY_BYTES {
        return Err(err(
            ErrorKind::LimitExceeded,
            format!("zip directory of {directory_size} bytes"),
        )
        .at(eocd_offset));
    }
    let directory_end = directory_offset
        .checked_add(directory_size)
        .ok_or_else(|| bad_zip("directory range overflows"))?;
    if directory_end > eocd_offset {
        return Err(bad_zip(format!(
            "central directory {directory_offset}..{directory_end} runs past its end record at {eocd_offset}"
        ))
        .at(eocd_offset));
    }
    // Each entry takes at least 46 bytes: a count the directory cannot hold
    // is a lie, caught before allocating for it.
    if entry_count.saturating_mul(46) > directory_size {
        return Err(bad_zip(format!(
            "zip declares {entry_count} entries but its directory has only {directory_size} bytes"
        ))
        .at(eocd_offset));
    }
    let mut cursor = Cursor::with_limit(source, directory_offset, directory_end);
    let mut entries = Vec::with_capacity(entry_count as usize);
    for _ in 0..entry_count {
        let entry_offset = cursor.position();
        if cursor.u32_le()? != CENTRAL_SIGNATURE {
            return Err(bad_zip("bad central directory entry signature").at(entry_offset));
        }
        let fixed: [u8; 42] = cursor.array()?;
        let u16f = |i: usize| u16::from_le_bytes([fixed[i], fixed[i + 1]]);
        let u32f = |i: usize| {
            u32::from_le_bytes([fixed[i], fixed[i + 1], fixed[i + 2], fixed[i + 3]]) as u64
        };
        let method = u16f(6);
        let mut compressed_size = u32f(16);
        let mut size = u32f(20);
        let name_len = u16f(24) as u64;
        let extra_len = u16f(26) as u64;
        let comment_len = u16f(28) as u64;
        let mut header_offset = u32f(38);
        let name = std::str::from_utf8(cursor.take_slice(name_len)?)
            .map_err(|_| bad_zip("zip entry name is not UTF-8").at(entry_offset))?
            .to_string();
        let extra = cursor.take(extra_len)?;
        cursor.take_slice(comment_len)?;
        // ZIP64 extended information: only the fields saturated in the
        // fixed record are present, in this order.
        let mut position = 0usize;
        while position + 4 <= extra.len() {
            let id = u16::from_le_bytes([extra[position], extra[position + 1]]);
            let len = u16::from_le_bytes([extra[position + 2], extra[position + 3]]) as usize;
            let body = extra
                .get(position + 4..position + 4 + len)
                .ok_or_else(|| bad_zip("zip extra field overruns").at(entry_offset))?;
            if id == 0x0001 {
                let mut fields = body
                    .chunks_exact(8)
                    .map(|c| u64::from_le_bytes(c.try_into().unwrap_or([0; 8])));
                if size == 0xffff_ffff {
                    size = fields
                        .next()
                        .ok_or_else(|| bad_zip("ZIP64 field missing size").at(entry_offset))?;
                }
                if compressed_size == 0xffff_ffff {
                    compressed_size = fields.next().ok_or_else(|| {
                        bad_zip("ZIP64 field missing compressed size").at(entry_offset)
                    })?;
                }
                if header_offset == 0xffff_ffff {
                    header_offset = fields
                        .next()
                        .ok_or_else(|| bad_zip("ZIP64 field missing offset").at(entry_offset))?;
                }
            }
            position += 4 + len;
        }
        if header_offset >= directory_offset {
            return Err(bad_zip(format!(
                "entry {name:?} starts inside the central directory"
            ))
            .at(entry_offset));
        }
        entries.push(ZipEntry {
            name,
            method,
            compressed_size,
            size,
            header_offset,
        });
    }
    Ok(ZipArchive { entries })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::source::SliceSource;

    #[test]
    fn garbage_and_lying_directories_are_bad_zips() {
        let cases: Vec<(Vec<u8>, ErrorKind)> = vec![
            (b"PK\x03\x04 no directory here".to_vec(), ErrorKind::BadZip),
            // An end record claiming 60000 entries in a 10-byte directory.
            (
                {
                    let mut b = vec![0u8; 10];
                    b.extend_from_slice(&EOCD_SIGNATURE.to_le_bytes());
                    b.extend_from_slice(&[
                        0, 0, 0, 0, 0x60, 0xea, 0x60, 0xea, 10, 0, 0, 0, 0, 0, 0, 0, 0, 0,
                    ]);
                    b
                },
                ErrorKind::BadZip,
            ),
        ];
        for (bytes, kind) in cases {
            let source = SliceSource::new("z.pt", &bytes);
            let error = ZipArchive::read(&source).err().expect("must fail");
            assert_eq!(error.kind, kind, "{error}");
            assert_eq!(error.file.as_deref(), Some("z.pt"));
        }
    }
}
