//! Property test of the zip reader: torch-format archives laid out every
//! way a valid zip may be (local-header padding of any size on any entry,
//! entries in any physical order, extra fields of other kinds, data
//! descriptors or none) are rebuilt from tests/fixtures/integrity/original.pt
//! (written by torch) with a seeded generator. For each layout, every offset
//! ckptcheck reports as read is where the bytes really are, every offset it
//! only predicts says so, confirmed offsets are all real, and the scan
//! gives each tensor the statistics of its real bytes.

use ckptcheck::format;
use ckptcheck::scan::scan_checkpoints;
use ckptcheck::source::{ByteSource, SliceSource};
use std::path::Path;

#[path = "support/rng.rs"]
mod rng;
use rng::Rng;

struct Entry {
    name: Vec<u8>,
    data: Vec<u8>,
    crc: u32,
}

fn u16_at(b: &[u8], i: usize) -> usize {
    u16::from_le_bytes([b[i], b[i + 1]]) as usize
}
fn u32_at(b: &[u8], i: usize) -> usize {
    u32::from_le_bytes([b[i], b[i + 1], b[i + 2], b[i + 3]]) as usize
}

/// The entries of a small zip, in central-directory order.
fn entries(zip: &[u8]) -> Vec<Entry> {
    let eocd = (0..zip.len() - 21)
        .rev()
        .find(|&i| zip[i..i + 4] == [0x50, 0x4b, 0x05, 0x06])
        .expect("end record");
    let count = u16_at(zip, eocd + 10);
    let mut at = u32_at(zip, eocd + 16);
    let mut out = Vec::new();
    for _ in 0..count {
        assert_eq!(u32_at(zip, at), 0x0201_4b50);
        let crc = u32_at(zip, at + 16) as u32;
        let size = u32_at(zip, at + 24);
        let (name_len, extra_len, comment_len) = (
            u16_at(zip, at + 28),
            u16_at(zip, at + 30),
            u16_at(zip, at + 32),
        );
        let header = u32_at(zip, at + 42);
        let name = zip[at + 46..at + 46 + name_len].to_vec();
        let start = header + 30 + u16_at(zip, header + 26) + u16_at(zip, header + 28);
        out.push(Entry {
            name,
            data: zip[start..start + size].to_vec(),
            crc,
        });
        at += 46 + name_len + extra_len + comment_len;
    }
    out
}

/// How one layout places entries.
struct Layout {
    /// Physical order of the entries (indices into the central order).
    order: Vec<usize>,
    /// Extra padding bytes per entry beyond torch's 64-byte alignment.
    padding: Vec<usize>,
    /// An extra field of another kind (id 0xcafe) before torch's padding.
    foreign_extra: Vec<usize>,
    data_descriptor: Vec<bool>,
}

/// Build the zip; returns it and each entry's real data offset.
fn build(entries: &[Entry], layout: &Layout) -> (Vec<u8>, Vec<u64>) {
    let mut zip = Vec::new();
    let mut header_at = vec![0usize; entries.len()];
    let mut data_at = vec![0u64; entries.len()];
    for &index in &layout.order {
        let entry = &entries[index];
        let header = zip.len();
        header_at[index] = header;
        let mut extra = Vec::new();
        if layout.foreign_extra[index] > 0 {
            extra.extend_from_slice(&0xcafeu16.to_le_bytes());
            extra.extend_from_slice(&(layout.foreign_extra[index] as u16).to_le_bytes());
            extra.extend(std::iter::repeat_n(7u8, layout.foreign_extra[index]));
        }
        // torch's "FB" padding field, aligned to 64, plus the extra padding.
        let before = header + 30 + entry.name.len() + extra.len() + 4;
        let pad = before.div_ceil(64) * 64 - before + layout.padding[index];
        extra.extend_from_slice(b"FB");
        extra.extend_from_slice(&(pad as u16).to_le_bytes());
        extra.extend(std::iter::repeat_n(b'Z', pad));
        let descriptor = layout.data_descriptor[index];
        let flags: u16 = if descriptor { 0x0808 } else { 0x0800 };
        let (crc, size) = if descriptor {
            (0, 0)
        } else {
            (entry.crc, entry.data.len() as u32)
        };
        zip.extend_from_slice(&0x0403_4b50u32.to_le_bytes());
        zip.extend_from_slice(&20u16.to_le_bytes());
        zip.extend_from_slice(&flags.to_le_bytes());
        zip.extend_from_slice(&[0; 6]); // method 0 (stored), time, date
        zip.extend_from_slice(&crc.to_le_bytes());
        zip.extend_from_slice(&size.to_le_bytes());
        zip.extend_from_slice(&size.to_le_bytes());
        zip.extend_from_slice(&(entry.name.len() as u16).to_le_bytes());
        zip.extend_from_slice(&(extra.len() as u16).to_le_bytes());
        zip.extend_from_slice(&entry.name);
        zip.extend_from_slice(&extra);
        data_at[index] = zip.len() as u64;
        zip.extend_from_slice(&entry.data);
        if descriptor {
            zip.extend_from_slice(&0x0807_4b50u32.to_le_bytes());
            zip.extend_from_slice(&entry.crc.to_le_bytes());
            zip.extend_from_slice(&(entry.data.len() as u32).to_le_bytes());
            zip.extend_from_slice(&(entry.data.len() as u32).to_le_bytes());
        }
    }
    let directory = zip.len();
    for (index, entry) in entries.iter().enumerate() {
        let flags: u16 = if layout.data_descriptor[index] {
            0x0808
        } else {
            0x0800
        };
        zip.extend_from_slice(&0x0201_4b50u32.to_le_bytes());
        zip.extend_from_slice(&20u16.to_le_bytes());
        zip.extend_from_slice(&20u16.to_le_bytes());
        zip.extend_from_slice(&flags.to_le_bytes());
        zip.extend_from_slice(&[0; 6]);
        zip.extend_from_slice(&entry.crc.to_le_bytes());
        zip.extend_from_slice(&(entry.data.len() as u32).to_le_bytes());
        zip.extend_from_slice(&(entry.data.len() as u32).to_le_bytes());
        zip.extend_from_slice(&(entry.name.len() as u16).to_le_bytes());
        zip.extend_from_slice(&[0; 12]); // extra, comment, disk, attributes
        zip.extend_from_slice(&(header_at[index] as u32).to_le_bytes());
        zip.extend_from_slice(&entry.name);
    }
    let directory_len = zip.len() - directory;
    zip.extend_from_slice(&0x0605_4b50u32.to_le_bytes());
    zip.extend_from_slice(&[0; 4]);
    zip.extend_from_slice(&(entries.len() as u16).to_le_bytes());
    zip.extend_from_slice(&(entries.len() as u16).to_le_bytes());
    zip.extend_from_slice(&(directory_len as u32).to_le_bytes());
    zip.extend_from_slice(&(directory as u32).to_le_bytes());
    zip.extend_from_slice(&[0; 2]);
    (zip, data_at)
}

#[test]
fn every_reported_offset_and_every_scanned_byte_is_the_real_one() {
    let original = std::fs::read(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/integrity/original.pt"),
    )
    .expect("read");
    let entries = entries(&original);
    let storage_entry = |key: &str| {
        entries
            .iter()
            .position(|e| e.name.ends_with(format!("/data/{key}").as_bytes()))
            .expect("storage entry")
    };
    let original_source = SliceSource::new("original.pt", &original);
    let original_checkpoint = format::read_checkpoint(&original_source).expect("original");
    let reference = scan_checkpoints(
        &[(
            &original_checkpoint,
            vec![&original_source as &dyn ByteSource],
        )],
        &mut |_, _| true,
    )
    .expect("scan");
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    let n = entries.len();
    let (mut predicted_seen, mut layouts) = (0, 0);
    for case in 0..300 {
        // Half the cases keep torch's layout except for a few entries (the
        // reader then predicts, and must mark and confirm); the others are
        // random throughout.
        let few = case % 2 == 0;
        let mut order: Vec<usize> = (0..n).collect();
        if !few {
            for i in (1..n).rev() {
                order.swap(i, rng.below(i as u64 + 1) as usize);
            }
        }
        let mut layout = Layout {
            order,
            padding: vec![0; n],
            foreign_extra: vec![0; n],
            data_descriptor: vec![true; n],
        };
        let touched = if few { 1 + rng.below(3) as usize } else { n };
        for _ in 0..touched {
            let index = rng.below(n as u64) as usize;
            layout.padding[index] = match rng.below(3) {
                0 => 64 * (1 + rng.below(4) as usize),
                1 => rng.below(300) as usize,
                _ => 0,
            };
            layout.foreign_extra[index] = if rng.below(3) == 0 {
                rng.below(40) as usize
            } else {
                0
            };
            layout.data_descriptor[index] = rng.below(2) == 0;
        }
        let (zip, data_at) = build(&entries, &layout);
        let source = SliceSource::new(format!("layout{case}.pt"), &zip);
        let mut checkpoint =
            format::read_checkpoint(&source).unwrap_or_else(|e| panic!("case {case}: {e}"));
        for tensor in &checkpoint.tensors {
            let storage = tensor.storage.as_deref().expect("storage");
            let real = data_at[storage_entry(storage)];
            match &tensor.predicted_offset {
                None => assert_eq!(tensor.offset, Some(real), "case {case}: {}", tensor.name),
                Some(_) => predicted_seen += (tensor.offset != Some(real)) as usize,
            }
        }
        let report = scan_checkpoints(
            &[(&checkpoint, vec![&source as &dyn ByteSource])],
            &mut |_, _| true,
        )
        .unwrap_or_else(|e| panic!("case {case}: {e}"));
        assert_eq!(report.tensors, reference.tensors, "case {case}");
        assert_eq!(report.summary, reference.summary, "case {case}");
        format::confirm_offsets(&mut checkpoint, &[&source]).expect("confirm");
        for tensor in &checkpoint.tensors {
            let real = data_at[storage_entry(tensor.storage.as_deref().expect("storage"))];
            assert_eq!(
                tensor.offset,
                Some(real),
                "case {case}: confirmed {}",
                tensor.name
            );
        }
        layouts += 1;
    }
    assert_eq!(layouts, 300);
    // The generator must reach the dangerous case: predictions that are
    // wrong (and marked) on entries the sample did not look at.
    assert!(
        predicted_seen > 10,
        "wrong predictions seen: {predicted_seen}"
    );
}
