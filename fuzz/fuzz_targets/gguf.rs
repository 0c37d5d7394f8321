//! GGUF key/value and tensor-info reader.
#![no_main]
use ckptcheck::format::gguf;
use ckptcheck::source::SliceSource;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = gguf::read(&SliceSource::new("fuzz.gguf", data));
});
