//! Archives that are not checkpoints but hold pickles, looked into for the
//! pickle audit: a zip without `data.pkl` (a `.npz` with object arrays, a
//! pickle under another name or path, entries flagged as encrypted but
//! stored in the clear) and a 7z archive. Deflated zip entries and 7z's
//! LZMA2 streams are inflated within caps; each pickle found gets the
//! audit's verdict (`not_checkpoint.rs`), the worst one speaking for the
//! archive.

use super::not_checkpoint::{audit_stream_until, npy_data_start, pickle_file_error, StreamAudit};
use super::pytorch::pickle;
use crate::error::{err, Error, ErrorKind};
use crate::source::{read_vec, ByteSource};

/// Entries of a zip looked into, inflated bytes of one entry and of all,
/// at most: a compressed `.npz` or a zip bomb costs no more than this.
const MAX_ZIP_ENTRIES_AUDITED: usize = 4096;
const MAX_INFLATED_ENTRY: usize = 64 << 20;
const MAX_INFLATED_TOTAL: usize = 256 << 20;

/// What one entry of a zip holds, for the audit.
enum EntryPickle {
    /// A `.npy` object array or a pickle, read symbolically.
    Audited(Box<StreamAudit>),
    /// Not a pickle (text, numbers, encrypted bytes).
    NoPickle,
}

/// Audit one entry's bytes (`source` from `start` to `end`): a `.npy`
/// holding objects or anything that reads as a pickle.
fn audit_entry(source: &dyn ByteSource, start: u64, end: u64, budget: &mut u64) -> EntryPickle {
    let Ok(prefix) = read_vec(source, start, (end - start).min(512)) else {
        return EntryPickle::NoPickle;
    };
    if prefix.starts_with(b"\x93NUMPY") {
        let object = String::from_utf8_lossy(&prefix).contains("'descr': '|O'");
        return match npy_data_start(&prefix).filter(|_| object) {
            Some(data) => EntryPickle::Audited(Box::new(audit_stream_until(
                source,
                start + data,
                end,
                budget,
            ))),
            None => EntryPickle::NoPickle,
        };
    }
    let proto_header = matches!(prefix.as_slice(), [0x80, 2..=5, ..]);
    let protocol_0 = prefix
        .first()
        .is_some_and(|b| b"(}])cNIKJLFSVXUTGMdlitop".contains(b));
    if !proto_header && !protocol_0 {
        return EntryPickle::NoPickle;
    }
    let stream = audit_stream_until(source, start, end, budget);
    if proto_header || stream.is_pickle() {
        EntryPickle::Audited(Box::new(stream))
    } else {
        EntryPickle::NoPickle
    }
}

/// A zip that is not a `torch.save` checkpoint but holds pickles (a `.npz`
/// with object arrays, a pickle under another name or path, entries
/// flagged as encrypted but stored in the clear): each entry is looked
/// into, deflated ones inflated within a cap, and every pickle gets the
/// audit's verdict. None when no entry holds a pickle.
pub fn identify_zip_contents(
    source: &dyn ByteSource,
    archive: &super::pytorch::zip::ZipArchive,
) -> Option<Error> {
    let name = source.name();
    let mut inflated_total = 0usize;
    // One work budget for every pickle in the archive.
    let mut budget = pickle::MAX_WORK;
    let mut found: Vec<(String, StreamAudit)> = Vec::new();
    let mut skipped: Vec<String> = Vec::new();
    for entry in archive.entries.iter().take(MAX_ZIP_ENTRIES_AUDITED) {
        let Ok((start, method)) = archive.raw_data(source, entry) else {
            continue;
        };
        let verdict = match method {
            0 => audit_entry(source, start, start + entry.compressed_size, &mut budget),
            8 => {
                let room = MAX_INFLATED_ENTRY.min(MAX_INFLATED_TOTAL - inflated_total);
                let inflated = read_vec(source, start, entry.compressed_size.min(room as u64))
                    .ok()
                    .and_then(|deflated| {
                        miniz_oxide::inflate::decompress_to_vec_with_limit(&deflated, room).ok()
                    });
                let Some(bytes) = inflated else {
                    skipped.push(format!("{} (inflates past {} MiB)", entry.name, room >> 20));
                    continue;
                };
                inflated_total += bytes.len();
                let inner = crate::source::SliceSource::new(name, &bytes);
                audit_entry(&inner, 0, bytes.len() as u64, &mut budget)
            }
            other => {
                skipped.push(format!("{} (compression method {other})", entry.name));
                continue;
            }
        };
        if let EntryPickle::Audited(stream) = verdict {
            found.push((entry.name.clone(), *stream));
        }
    }
    if found.is_empty() {
        return None;
    }
    let npz = archive
        .entries
        .iter()
        .all(|entry| entry.name.ends_with(".npy"));
    let what = if npz {
        format!(
            "a NumPy `.npz` archive, not a torch.save checkpoint; {} of its arrays hold{} pickled objects",
            found.len(),
            if found.len() == 1 { "s" } else { "" }
        )
    } else {
        let names: Vec<&str> = found
            .iter()
            .map(|(entry, _)| entry.as_str())
            .take(8)
            .collect();
        format!(
            "a zip archive that is not a torch.save checkpoint (no data.pkl), holding {} pickle{} ({})",
            found.len(),
            if found.len() == 1 { "" } else { "s" },
            names.join(", ")
        )
    };
    let what = match skipped.len() {
        0 => what,
        n if n <= 8 => format!("{what}; not looked into: {}", skipped.join(", ")),
        n => format!(
            "{what}; not looked into: {} and {} more",
            skipped[..8].join(", "),
            n - 8
        ),
    };
    // One verdict for the whole archive: the worst entry decides, named.
    let worst = found
        .iter()
        .position(|(_, stream)| match stream {
            StreamAudit::Read { audit, .. } => audit.is_unsafe(),
            StreamAudit::Truncated { reached, .. } => reached.is_unsafe(),
            StreamAudit::Malformed { .. } => true,
        })
        .unwrap_or(0);
    let (entry, stream) = found.swap_remove(worst);
    let (cause, fix) = if npz {
        (
            "numpy-npz",
            "`numpy.load(path, allow_pickle=True)` runs a pickle: only on a file you trust",
        )
    } else {
        (
            "zip-pickle",
            "load the pickle inside only if you trust it (a pickle can run code); save weights with `torch.save(model.state_dict(), path)` or safetensors",
        )
    };
    Some(pickle_file_error(
        source,
        stream,
        cause,
        format!("{what}; entry {entry}"),
        fix,
    ))
}

/// A 7z archive. Its packed streams lie between its 32-byte signature
/// header and the header it points to: stored ("Copy") files are their
/// bytes, back to back; LZMA2 (the default of 7-Zip and py7zr) is
/// inflated within the zip cap. A pickle found either way is audited;
/// other methods (LZMA, PPMd, BCJ filters) are not inflated, and the
/// verdict says so.
pub(super) fn seven_zip(source: &dyn ByteSource, prefix: &[u8]) -> Error {
    let name = source.name();
    let next_header = prefix
        .get(12..20)
        .and_then(|b| b.try_into().ok())
        .map(u64::from_le_bytes)
        .unwrap_or(0);
    let packed_end = 32u64.saturating_add(next_header).min(source.len());
    let fix = "torch.load, pickle.load and numpy.load do not open 7z archives: extract it (7z x) and check the files inside";
    let mut budget = pickle::MAX_WORK;
    let audited = |entry| match entry {
        EntryPickle::Audited(stream) => Some(*stream),
        EntryPickle::NoPickle => None,
    };
    let stored = (packed_end > 32)
        .then(|| audit_entry(source, 32, packed_end, &mut budget))
        .and_then(audited);
    let stream = stored.or_else(|| {
        let packed = read_vec(source, 32, (packed_end - 32).min(MAX_INFLATED_ENTRY as u64)).ok()?;
        let bytes = inflate_lzma2(&packed)?;
        let inner = crate::source::SliceSource::new(name, &bytes);
        audited(audit_entry(&inner, 0, bytes.len() as u64, &mut budget))
    });
    match stream {
        Some(stream) => pickle_file_error(
            source,
            stream,
            "7z-archive",
            "a 7z archive holding a pickle, not a checkpoint".to_string(),
            fix,
        ),
        None => err(
            ErrorKind::UnsupportedFormat,
            "a 7z archive, not a checkpoint; its contents are compressed with a method ckptcheck does not inflate (it reads stored and LZMA2 streams), so the pickles it may hold are not audited",
        )
        .in_file(name)
        .because("7z-archive", fix),
    }
}

/// An LZMA2 stream inflated to at most `MAX_INFLATED_ENTRY` bytes (the
/// dictionary never needs to be larger than what is produced), or None
/// when it is not one.
fn inflate_lzma2(packed: &[u8]) -> Option<Vec<u8>> {
    use std::io::Read;
    let dictionary =
        (MAX_INFLATED_ENTRY as u32).min((packed.len() as u32).saturating_mul(64).max(1 << 16));
    let reader = lzma_rust2::Lzma2Reader::new(packed, dictionary.next_power_of_two(), None);
    let mut out = Vec::new();
    // A stream cut at the cap still shows its first pickles; one that is
    // not LZMA2 fails at once.
    match reader.take(MAX_INFLATED_ENTRY as u64).read_to_end(&mut out) {
        Ok(_) => Some(out),
        Err(_) if !out.is_empty() => Some(out),
        Err(_) => None,
    }
}
