//! The globals ckptcheck's pickle machine reaches in each file, as one JSON
//! line per file: what `fuzz/agree_with_cpython.py` compares with the
//! globals CPython's own unpickler asks for on the same bytes. Every pickle
//! of the stream is read back to back (as a loader that calls `pickle.load`
//! again would), and a stream that breaks keeps the globals named before
//! the break. Like the audit, it reads the stream twice: as joblib.load
//! does (inline array bytes skipped) and as plain pickle.load does.
//!
//!   cargo run --release --example pickle_globals -- FILE...

use ckptcheck::format::pytorch::pickle;
use ckptcheck::source::{ByteSource, FileSource};

fn main() {
    for path in std::env::args().skip(1) {
        let source = match FileSource::open(std::path::Path::new(&path)) {
            Ok(source) => source,
            Err(error) => {
                eprintln!("{error}");
                continue;
            }
        };
        let mut globals: Vec<(String, String)> = Vec::new();
        let mut outcome = "ok".to_string();
        let mut pickles = 0;
        for plain in [false, true] {
            let mut budget = pickle::MAX_WORK;
            let (read, broken) = pickle::read_stream(&source, 0, source.len(), &mut budget, plain);
            globals.extend(read.iter().flat_map(|p| p.globals.iter().cloned()));
            if let Some(broken) = broken {
                globals.extend(broken.reached);
                if !plain {
                    outcome = format!("{:?}", broken.error.kind);
                }
            }
            if !plain {
                pickles = read.len();
            }
        }
        globals.sort();
        globals.dedup();
        let line = serde_json::json!({
            "file": path,
            "outcome": outcome,
            "pickles": pickles,
            "globals": globals.iter().map(|(m, n)| [m, n]).collect::<Vec<_>>(),
        });
        println!("{line}");
    }
}
