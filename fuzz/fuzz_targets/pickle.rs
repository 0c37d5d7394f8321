//! The symbolic pickle interpreter and the object-graph walk on a bare
//! pickle (no storages exist, so tensors fail to locate: that is fine).
#![no_main]
use ckptcheck::checkpoint::Checkpoint;
use ckptcheck::format::pytorch::{self, pickle, walk};
use ckptcheck::source::{Cursor, SliceSource};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let source = SliceSource::new("fuzz.pkl", data);
    let mut cursor = Cursor::new(&source, 0);
    if let Ok(pickle) = pickle::interpret(&mut cursor) {
        let _ = pytorch::audit(&[&pickle]);
        let mut checkpoint = Checkpoint::new("fuzz.pkl", "pickle", data.len() as u64);
        let _ = walk::walk(&pickle, &Default::default(), &mut checkpoint);
    }
});
