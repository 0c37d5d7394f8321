//! torch.save zip reader (directory, local headers, data.pkl, storages).
#![no_main]
use ckptcheck::format::pytorch;
use ckptcheck::source::SliceSource;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = pytorch::read_zip(&SliceSource::new("fuzz.pt", data));
});
