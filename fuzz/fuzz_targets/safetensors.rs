//! safetensors header reader on arbitrary bytes: any result but a panic,
//! a hang or an allocation beyond the caps is fine.
#![no_main]
use ckptcheck::format::safetensors;
use ckptcheck::source::SliceSource;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = safetensors::read(&SliceSource::new("fuzz.safetensors", data));
});
