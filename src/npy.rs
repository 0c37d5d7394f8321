//! NumPy `.npy` files, version 1.0-3.0, for the forward pass's input and
//! output: float32 (`<f4`) images and int64 (`<i8`) token ids in, float32
//! out. The header is parsed strictly (a Python dict literal with `descr`,
//! `fortran_order` and `shape`); anything else is an error naming what is
//! wrong, never a guess. Format: numpy/lib/format.py and
//! https://numpy.org/doc/stable/reference/generated/numpy.lib.format.html

use crate::error::{err, ErrorKind, Result};

const MAGIC: &[u8] = b"\x93NUMPY";
/// Largest array read (elements); an input is an image or a token list.
const MAX_ELEMENTS: u64 = 1 << 28;

/// An array read from a `.npy` file.
#[derive(Debug, Clone, PartialEq)]
pub enum Array {
    F32 { shape: Vec<usize>, data: Vec<f32> },
    I64 { shape: Vec<usize>, data: Vec<i64> },
}

impl Array {
    pub fn shape(&self) -> &[usize] {
        match self {
            Array::F32 { shape, .. } | Array::I64 { shape, .. } => shape,
        }
    }
}

fn bad(message: impl Into<String>) -> crate::Error {
    err(ErrorKind::BadArgument, message)
}

/// Where a .npy file's header text starts and how long it is: format 1
/// has a 2-byte length, 2 and 3 a 4-byte one. `bytes` may be a prefix.
pub fn header_span(bytes: &[u8]) -> Result<(usize, usize)> {
    if bytes.get(..6) != Some(MAGIC) {
        return Err(bad("not a .npy file (no \\x93NUMPY magic)"));
    }
    let major = *bytes.get(6).ok_or_else(|| bad("truncated .npy header"))?;
    let (header_len, header_start): (usize, usize) = match major {
        1 => {
            let b = bytes
                .get(8..10)
                .ok_or_else(|| bad("truncated .npy header"))?;
            (u16::from_le_bytes([b[0], b[1]]) as usize, 10)
        }
        2 | 3 => {
            let b = bytes
                .get(8..12)
                .ok_or_else(|| bad("truncated .npy header"))?;
            (u32::from_le_bytes([b[0], b[1], b[2], b[3]]) as usize, 12)
        }
        v => return Err(bad(format!(".npy format version {v} is not supported"))),
    };
    Ok((header_start, header_len))
}

/// Parse a whole `.npy` file.
pub fn read(bytes: &[u8]) -> Result<Array> {
    let (header_start, header_len) = header_span(bytes)?;
    let header_end = header_start
        .checked_add(header_len)
        .filter(|end| *end <= bytes.len())
        .ok_or_else(|| bad(".npy header runs past the end of the file"))?;
    let header = std::str::from_utf8(&bytes[header_start..header_end])
        .map_err(|_| bad(".npy header is not text"))?;
    let (descr, fortran, shape) = parse_header(header)?;
    if fortran {
        return Err(bad(
            ".npy array is in Fortran order; save it with np.ascontiguousarray",
        ));
    }
    let numel = shape
        .iter()
        .try_fold(1u64, |acc, d| acc.checked_mul(*d as u64))
        .filter(|n| *n <= MAX_ELEMENTS)
        .ok_or_else(|| bad(format!(".npy shape {shape:?} is too large")))? as usize;
    let data = &bytes[header_end..];
    let element = match descr.as_str() {
        "<f4" | "<i8" => if descr == "<f4" { 4 } else { 8 },
        other => {
            return Err(bad(format!(
                ".npy dtype {other:?}: expected float32 ('<f4') for an image or int64 ('<i8') for token ids"
            )))
        }
    };
    if data.len() != numel * element {
        return Err(bad(format!(
            ".npy data is {} bytes, the header's shape {shape:?} needs {}",
            data.len(),
            numel * element
        )));
    }
    Ok(if element == 4 {
        Array::F32 {
            shape,
            data: data
                .chunks_exact(4)
                .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
                .collect(),
        }
    } else {
        Array::I64 {
            shape,
            data: data
                .chunks_exact(8)
                .map(|c| i64::from_le_bytes([c[0], c[1], c[2], c[3], c[4], c[5], c[6], c[7]]))
                .collect(),
        }
    })
}

/// `{'descr': '<f4', 'fortran_order': False, 'shape': (1, 3), }` -> parts.
fn parse_header(header: &str) -> Result<(String, bool, Vec<usize>)> {
    let text = header.trim_end_matches(['\n', ' ', '\x20']).trim();
    let inner = text
        .strip_prefix('{')
        .and_then(|t| t.strip_suffix('}'))
        .ok_or_else(|| bad(".npy header is not a dict"))?;
    let mut descr = None;
    let mut fortran = None;
    let mut shape = None;
    let mut rest = inner.trim();
    while !rest.is_empty() {
        let (key, after) = quoted(rest)?;
        let after = after
            .trim_start()
            .strip_prefix(':')
            .ok_or_else(|| bad(".npy header: expected ':' after a key"))?
            .trim_start();
        let after = match key.as_str() {
            "descr" => {
                let (value, after) = quoted(after)?;
                descr = Some(value);
                after
            }
            "fortran_order" => {
                if let Some(a) = after.strip_prefix("False") {
                    fortran = Some(false);
                    a
                } else if let Some(a) = after.strip_prefix("True") {
                    fortran = Some(true);
                    a
                } else {
                    return Err(bad(".npy header: fortran_order must be True or False"));
                }
            }
            "shape" => {
                let close = after
                    .find(')')
                    .ok_or_else(|| bad(".npy header: shape is not a tuple"))?;
                let tuple = after
                    .get(..close)
                    .and_then(|t| t.strip_prefix('('))
                    .ok_or_else(|| bad(".npy header: shape is not a tuple"))?;
                let dims = tuple
                    .split(',')
                    .map(str::trim)
                    .filter(|d| !d.is_empty())
                    .map(|d| {
                        d.parse::<usize>()
                            .map_err(|_| bad(format!(".npy header: bad dimension {d:?}")))
                    })
                    .collect::<Result<Vec<usize>>>()?;
                shape = Some(dims);
                &after[close + 1..]
            }
            other => return Err(bad(format!(".npy header: unexpected key {other:?}"))),
        };
        rest = after.trim_start();
        rest = rest.strip_prefix(',').unwrap_or(rest).trim_start();
    }
    match (descr, fortran, shape) {
        (Some(d), Some(f), Some(s)) => Ok((d, f, s)),
        _ => Err(bad(".npy header lacks descr, fortran_order or shape")),
    }
}

/// A `'...'` or `"..."` string at the start of `text`, and what follows.
fn quoted(text: &str) -> Result<(String, &str)> {
    let quote = text
        .chars()
        .next()
        .filter(|c| *c == '\'' || *c == '"')
        .ok_or_else(|| bad(".npy header: expected a quoted key or value"))?;
    let body = &text[1..];
    let end = body
        .find(quote)
        .ok_or_else(|| bad(".npy header: unterminated string"))?;
    Ok((body[..end].to_string(), &body[end + 1..]))
}

/// A float32 `.npy` file (version 1.0, header padded to 64 bytes as NumPy
/// writes it).
pub fn write_f32(shape: &[usize], data: &[f32]) -> Vec<u8> {
    let dims: Vec<String> = shape.iter().map(|d| d.to_string()).collect();
    let tuple = if dims.len() == 1 {
        format!("({},)", dims[0])
    } else {
        format!("({})", dims.join(", "))
    };
    let mut header = format!("{{'descr': '<f4', 'fortran_order': False, 'shape': {tuple}, }}");
    let unpadded = MAGIC.len() + 4 + header.len() + 1;
    header.push_str(&" ".repeat((64 - unpadded % 64) % 64));
    header.push('\n');
    let mut out = Vec::with_capacity(10 + header.len() + data.len() * 4);
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(&[1, 0]);
    out.extend_from_slice(&(header.len() as u16).to_le_bytes());
    out.extend_from_slice(header.as_bytes());
    for v in data {
        out.extend_from_slice(&v.to_le_bytes());
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn npy(header: &str, data: &[u8]) -> Vec<u8> {
        let mut out = MAGIC.to_vec();
        out.extend_from_slice(&[1, 0]);
        out.extend_from_slice(&(header.len() as u16).to_le_bytes());
        out.extend_from_slice(header.as_bytes());
        out.extend_from_slice(data);
        out
    }

    #[test]
    fn writes_what_it_reads_and_pads_like_numpy() {
        let bytes = write_f32(&[1, 3], &[1.0, -2.5, 3.0]);
        assert_eq!((bytes.len() - 12) % 64, 0);
        assert_eq!(
            read(&bytes).unwrap(),
            Array::F32 {
                shape: vec![1, 3],
                data: vec![1.0, -2.5, 3.0]
            }
        );
    }

    #[test]
    fn reads_int64_token_ids() {
        let mut data = Vec::new();
        for v in [101i64, 7, 102] {
            data.extend_from_slice(&v.to_le_bytes());
        }
        let bytes = npy(
            "{'descr': '<i8', 'fortran_order': False, 'shape': (1, 3), }\n",
            &data,
        );
        assert_eq!(
            read(&bytes).unwrap(),
            Array::I64 {
                shape: vec![1, 3],
                data: vec![101, 7, 102]
            }
        );
    }

    #[test]
    fn every_malformed_header_is_an_error_that_says_why() {
        let check = |bytes: Vec<u8>, want: &str| {
            let error = read(&bytes).unwrap_err();
            assert_eq!(error.kind, ErrorKind::BadArgument);
            assert!(
                error.message.contains(want),
                "{} does not contain {want}",
                error.message
            );
        };
        check(b"PK\x03\x04".to_vec(), "magic");
        check(
            npy(
                "{'descr': '>f8', 'fortran_order': False, 'shape': (1,), }",
                &[0; 8],
            ),
            "float32",
        );
        check(
            npy(
                "{'descr': '<f4', 'fortran_order': True, 'shape': (1,), }",
                &[0; 4],
            ),
            "Fortran",
        );
        check(
            npy(
                "{'descr': '<f4', 'fortran_order': False, 'shape': (2,), }",
                &[0; 4],
            ),
            "needs 8",
        );
        check(npy("{'descr': '<f4', 'shape': (1,), }", &[0; 4]), "lacks");
        check(
            npy(
                "{'descr': '<f4', 'fortran_order': False, 'shape': (x,), }",
                &[0; 4],
            ),
            "bad dimension",
        );
        check(
            npy(
                "{'descr': '<f4', 'fortran_order': False, 'shape': (1,), 'extra': 1}",
                &[0; 4],
            ),
            "unexpected key",
        );
        let mut long = npy(
            "{'descr': '<f4', 'fortran_order': False, 'shape': (1,), }",
            &[],
        );
        long[8] = 0xff;
        check(long, "past the end");
    }
}
