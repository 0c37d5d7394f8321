//! Legacy (pre-zip) torch.save reader: five pickles and raw storages.
#![no_main]
use ckptcheck::format::pytorch::legacy;
use ckptcheck::source::SliceSource;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = legacy::read_legacy(&SliceSource::new("fuzz.pt", data));
});
