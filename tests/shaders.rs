//! Every WGSL kernel in src/gpu/kernels/ parses and validates with naga (the
//! shader compiler wgpu itself uses), so a broken shader fails plain
//! `cargo test` on a machine without a GPU. Each file must also start with
//! its header comment: what it computes, its bindings, its dispatch.

use std::path::Path;

fn kernels() -> Vec<(String, String)> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("src/gpu/kernels");
    let mut out: Vec<(String, String)> = std::fs::read_dir(&dir)
        .expect("kernels folder")
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|e| e == "wgsl"))
        .map(|p| {
            let name = p.file_name().expect("name").to_string_lossy().to_string();
            (name, std::fs::read_to_string(&p).expect("read"))
        })
        .collect();
    out.sort();
    out
}

#[test]
fn every_kernel_validates_with_naga() {
    let kernels = kernels();
    assert!(
        kernels.len() >= 12,
        "expected the 12 kernels, found {}",
        kernels.len()
    );
    for (name, source) in &kernels {
        let module = naga::front::wgsl::parse_str(source)
            .unwrap_or_else(|e| panic!("{name}: {}", e.emit_to_string(source)));
        naga::valid::Validator::new(
            naga::valid::ValidationFlags::all(),
            naga::valid::Capabilities::empty(),
        )
        .validate(&module)
        .unwrap_or_else(|e| panic!("{name}: {}", e.emit_to_string(source)));
        assert!(!module.entry_points.is_empty(), "{name}: no entry point");
        for entry in &module.entry_points {
            assert_eq!(
                entry.stage,
                naga::ShaderStage::Compute,
                "{name}: {}",
                entry.name
            );
        }
    }
}

#[test]
fn every_kernel_starts_with_its_header_comment() {
    for (name, source) in kernels() {
        assert!(
            source.starts_with(&format!("// {name}:")),
            "{name}: first line must be `// {name}: what it computes`"
        );
        let header: String = source
            .lines()
            .take_while(|l| l.starts_with("//"))
            .collect::<Vec<_>>()
            .join("\n");
        for word in ["Bindings", "Dispatch"] {
            assert!(
                header.contains(word),
                "{name}: the header comment must describe {word}"
            );
        }
    }
}
