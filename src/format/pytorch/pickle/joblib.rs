//! joblib's inline arrays: `joblib.dump` writes each numpy array as a
//! `joblib.numpy_pickle.NumpyArrayWrapper` object whose BUILD is followed,
//! in the same stream, by the array's raw bytes (after one padding-length
//! byte and that much padding, since joblib 0.12), or for object arrays by
//! a nested protocol 5 pickle; joblib's unpickler reads them on BUILD.
//! Without this, every joblib file holding an array would read as a
//! malformed pickle. The raw bytes are skipped, never interpreted; a nested
//! pickle is interpreted like any other, and its globals join the audit.

use super::vm::{bad, Machine, Object, Reduce, Value};
use crate::error::{err, ErrorKind, Result};

/// What follows a wrapper's BUILD in the stream.
pub(super) enum Inline {
    /// Raw bytes of this many elements of this size, after padding when
    /// `aligned`.
    Bytes {
        count: u64,
        item: u64,
        aligned: bool,
    },
    /// An object array: a nested pickle.
    Pickle,
}

fn entry<'a>(entries: &'a [(Value, Value)], key: &str) -> Option<&'a Value> {
    entries
        .iter()
        .find(|(k, _)| matches!(k, Value::Str(s) if &**s == key))
        .map(|(_, v)| v)
}

/// Bytes of one element of a numpy dtype string (`f4`, `<i8`, `U10`,
/// `b1`); `None` for object dtypes and anything unknown.
fn item_size(dtype: &str) -> Option<u64> {
    let text = dtype.trim_start_matches(['<', '>', '|', '=']);
    let kind = text.chars().next()?;
    let count: u64 = text.get(1..)?.parse().ok()?;
    match kind {
        'b' | 'i' | 'u' | 'f' | 'c' | 'm' | 'M' | 'S' | 'V' => Some(count),
        'U' => count.checked_mul(4),
        _ => None,
    }
}

/// When `target` is a joblib array wrapper being built with `state`, what
/// follows in the stream.
pub(super) fn inline_after_build<R: Reduce>(
    machine: &Machine<R>,
    target: &Value,
    state: &Value,
    offset: u64,
) -> Result<Option<Inline>> {
    let Some(Object::Call(call)) = machine.object(target) else {
        return Ok(None);
    };
    if machine.global_of(&call.func) != Some(("joblib.numpy_pickle", "NumpyArrayWrapper")) {
        return Ok(None);
    }
    let Some(Object::Dict { entries, .. }) = machine.object(state) else {
        return Err(bad("joblib array wrapper without its state", offset));
    };
    let count = match entry(entries, "shape").and_then(|s| machine.object(s)) {
        Some(Object::Tuple(dims)) => dims.iter().try_fold(1u64, |total, dim| match dim {
            Value::Int(d) if *d >= 0 => total.checked_mul(*d as u64),
            _ => None,
        }),
        _ => None,
    }
    .ok_or_else(|| bad("joblib array wrapper with an invalid shape", offset))?;
    // The dtype is `numpy.dtype(name, False, True)`, recorded as a call.
    let dtype = match entry(entries, "dtype").and_then(|d| machine.object(d)) {
        Some(Object::Call(call)) => match machine.object(&call.args) {
            Some(Object::Tuple(items)) => match items.first() {
                Some(Value::Str(name)) => Some(name.to_string()),
                _ => None,
            },
            _ => None,
        },
        _ => None,
    }
    .ok_or_else(|| bad("joblib array wrapper without a dtype", offset))?;
    if dtype
        .trim_start_matches(['<', '>', '|', '='])
        .starts_with('O')
    {
        return Ok(Some(Inline::Pickle));
    }
    let item = item_size(&dtype).ok_or_else(|| {
        err(
            ErrorKind::BadPickle,
            format!("joblib array of dtype {dtype:?}, whose inline bytes cannot be sized"),
        )
        .at(offset)
    })?;
    let aligned = entry(entries, "numpy_array_alignment_bytes").is_some();
    Ok(Some(Inline::Bytes {
        count,
        item,
        aligned,
    }))
}

#[cfg(test)]
mod tests {
    use super::item_size;

    #[test]
    fn numpy_dtype_strings_are_sized() {
        let cases = [
            ("f4", Some(4)),
            ("<f8", Some(8)),
            ("|b1", Some(1)),
            ("i8", Some(8)),
            ("U10", Some(40)),
            ("S3", Some(3)),
            ("c16", Some(16)),
            ("O8", None),
            ("x", None),
        ];
        for (dtype, size) in cases {
            assert_eq!(item_size(dtype), size, "{dtype}");
        }
    }
}
