//! Pre-0.1.10 tar torch reader.
#![no_main]
use ckptcheck::format::pytorch::legacy;
use ckptcheck::source::SliceSource;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = legacy::read_tar(&SliceSource::new("fuzz.tar", data));
});
