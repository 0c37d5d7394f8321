//! Sharded checkpoints: `model.safetensors.index.json` or
//! `pytorch_model.bin.index.json` (`{"metadata": {"total_size": N},
//! "weight_map": {tensor: shard}}`) given together with its shard files.
//! Reports missing shards as an error and disagreements between index and
//! shards as notes, then lists the union of the shards' tensors.

use super::{detect, read_checkpoint, Format};
use crate::checkpoint::Checkpoint;
use crate::error::{err, ErrorKind, Result};
use crate::source::{read_vec, ByteSource};
use std::collections::{BTreeMap, HashMap};

/// Index files are small; a larger one is refused.
pub const MAX_INDEX_BYTES: u64 = 64 * 1024 * 1024;

#[derive(serde::Deserialize)]
struct Index {
    #[serde(default)]
    metadata: BTreeMap<String, serde_json::Value>,
    weight_map: serde_json::Map<String, serde_json::Value>,
}

pub fn looks_like_index(source: &dyn ByteSource) -> Result<bool> {
    if source.len() > MAX_INDEX_BYTES {
        return Ok(false);
    }
    let bytes = read_vec(source, 0, source.len())?;
    Ok(serde_json::from_slice::<Index>(&bytes).is_ok())
}

fn base_name(path: &str) -> &str {
    path.rsplit(['/', '\\']).next().unwrap_or(path)
}

pub fn read(sources: &[&dyn ByteSource]) -> Result<Checkpoint> {
    let mut index_source = None;
    let mut shards: HashMap<String, &dyn ByteSource> = HashMap::new();
    for source in sources {
        match detect(*source)? {
            Format::ShardIndex => {
                if index_source.replace(*source).is_some() {
                    return Err(err(ErrorKind::BadArgument, "more than one shard index given"));
                }
            }
            Format::Json => {
                return Err(err(ErrorKind::BadArgument, "a JSON file that is not a shard index was given as a checkpoint (a config? pass it with --config)")
                    .in_file(source.name()))
            }
            _ => {
                shards.insert(base_name(source.name()).to_string(), *source);
            }
        }
    }
    let Some(index_source) = index_source else {
        return Err(err(
            ErrorKind::BadArgument,
            format!("{} checkpoint files but no *.index.json: give one checkpoint, or the shards with their index", sources.len()),
        ));
    };
    let name = index_source.name().to_string();
    if index_source.len() > MAX_INDEX_BYTES {
        return Err(err(ErrorKind::LimitExceeded, "shard index larger than 64 MiB").in_file(&name));
    }
    let bytes = read_vec(index_source, 0, index_source.len())?;
    let index: Index = serde_json::from_slice(&bytes).map_err(|e| {
        err(ErrorKind::BadShards, format!("invalid shard index: {e}")).in_file(&name)
    })?;
    // A set, not a scan of a list: an index that names a new shard for
    // every tensor would make a scan quadratic.
    let mut shard_set: std::collections::BTreeSet<String> = std::collections::BTreeSet::new();
    let mut expected: HashMap<String, String> = HashMap::new();
    for (tensor, shard) in &index.weight_map {
        let shard = shard.as_str().ok_or_else(|| {
            err(
                ErrorKind::BadShards,
                format!("weight_map entry {tensor:?} is not a file name"),
            )
            .in_file(&name)
        })?;
        if !shard_set.contains(shard) {
            shard_set.insert(shard.to_string());
        }
        expected.insert(tensor.clone(), shard.to_string());
    }
    let shard_order: Vec<String> = shard_set.into_iter().collect();
    let missing: Vec<&String> = shard_order
        .iter()
        .filter(|s| !shards.contains_key(base_name(s)))
        .take(20)
        .collect();
    if !missing.is_empty() {
        return Err(err(
            ErrorKind::BadShards,
            format!(
                "missing shard file(s): {}; give them together with the index",
                missing
                    .iter()
                    .map(|s| s.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        )
        .in_file(&name));
    }
    let mut checkpoint = Checkpoint::new(&name, "", index_source.len());
    checkpoint.metadata = index.metadata.clone();
    let mut format = String::new();
    let mut bytes_read = index_source.bytes_read();
    for shard_name in &shard_order {
        let source = shards[base_name(shard_name)];
        let shard = read_checkpoint(source)?;
        format = if shard.format == "safetensors" {
            "safetensors-sharded"
        } else {
            "pytorch-sharded"
        }
        .to_string();
        checkpoint.file_bytes += shard.file_bytes;
        bytes_read += shard.bytes_read;
        for mut tensor in shard.tensors {
            match expected.get(&tensor.name) {
                Some(listed) if base_name(listed) == base_name(shard_name) => {}
                Some(listed) => checkpoint.notes.push(format!(
                    "index puts {:?} in {listed} but it is in {shard_name}",
                    tensor.name
                )),
                None => checkpoint.notes.push(format!(
                    "{:?} is in {shard_name} but not in the index",
                    tensor.name
                )),
            }
            tensor.file = Some(shard_name.clone());
            checkpoint.tensors.push(tensor);
        }
        checkpoint.values.extend(shard.values);
        if let Some(audit) = shard.pickle_audit {
            let merged =
                checkpoint
                    .pickle_audit
                    .get_or_insert_with(|| crate::checkpoint::PickleAudit {
                        weights_only_loads: true,
                        ..Default::default()
                    });
            crate::format::pytorch::merge_audit(merged, audit);
        }
    }
    let present: std::collections::HashSet<&str> =
        checkpoint.tensors.iter().map(|t| t.name.as_str()).collect();
    let mut absent: Vec<&String> = expected
        .keys()
        .filter(|k| !present.contains(k.as_str()))
        .collect();
    absent.sort();
    for tensor in absent {
        checkpoint.notes.push(format!(
            "index lists {tensor:?} in {} but no shard has it",
            expected[tensor]
        ));
    }
    for (name, shard) in shards.keys().map(|k| (k, k)) {
        if !shard_order.iter().any(|s| base_name(s) == name) {
            checkpoint
                .notes
                .push(format!("{shard} was given but the index does not use it"));
        }
    }
    checkpoint.format = format;
    checkpoint.bytes_read = bytes_read;
    Ok(checkpoint)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::source::SliceSource;

    #[test]
    fn an_index_naming_a_shard_per_tensor_fails_fast() {
        // 200k tensors, each in its own (missing) shard.
        let mut map = serde_json::Map::new();
        for i in 0..200_000 {
            map.insert(
                format!("t{i}"),
                serde_json::json!(format!("s{i}.safetensors")),
            );
        }
        let text = serde_json::json!({ "weight_map": map }).to_string();
        let index = SliceSource::new("model.safetensors.index.json", text.as_bytes());
        let start = std::time::Instant::now();
        let error = read(&[&index]).unwrap_err();
        assert_eq!(error.kind, ErrorKind::BadShards, "{error}");
        assert!(
            error.message.len() < 2_000,
            "the message lists at most 20 shards"
        );
        assert!(start.elapsed().as_secs() < 10);
    }
}
