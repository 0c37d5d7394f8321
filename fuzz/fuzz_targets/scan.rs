//! Format detection, any reader, then the weight scan over whatever tensors
//! the reader accepted (seeded with every fixture format).
#![no_main]
use ckptcheck::scan;
use ckptcheck::source::{ByteSource, SliceSource};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let source = SliceSource::new("fuzz.bin", data);
    let sources: [&dyn ByteSource; 1] = [&source];
    let _ = scan::scan_sources(&sources, &mut |done, total| {
        assert!(done <= total);
        true
    });
});
