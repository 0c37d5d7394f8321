//! A shard index (the fuzzed bytes) given with the two real shards of
//! tests/fixtures/formats/sharded, so index/shard cross-checks run too.
#![no_main]
use ckptcheck::format;
use ckptcheck::source::{ByteSource, SliceSource};
use libfuzzer_sys::fuzz_target;

const SHARD_1: &[u8] =
    include_bytes!("../../tests/fixtures/formats/sharded/model-00001-of-00002.safetensors");
const SHARD_2: &[u8] =
    include_bytes!("../../tests/fixtures/formats/sharded/model-00002-of-00002.safetensors");

fuzz_target!(|data: &[u8]| {
    let index = SliceSource::new("model.safetensors.index.json", data);
    let one = SliceSource::new("model-00001-of-00002.safetensors", SHARD_1);
    let two = SliceSource::new("model-00002-of-00002.safetensors", SHARD_2);
    let sources: [&dyn ByteSource; 3] = [&one, &two, &index];
    let _ = format::read_files(&sources);
});
