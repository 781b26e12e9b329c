//! Embeds the sample GCN alerts of `tests/data/samples` for `alerthost demo`.

use std::fmt::Write as _;
use std::path::Path;

fn main() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/data/samples");
    println!("cargo::rerun-if-changed={}", root.display());
    let mut files = Vec::new();
    for kind in ["voevent", "json", "binary"] {
        let dir = root.join(kind);
        let entries = std::fs::read_dir(&dir)
            .unwrap_or_else(|e| panic!("cannot read the sample alerts in {}: {e}", dir.display()));
        for entry in entries {
            let path = entry.expect("list sample alerts").path();
            files.push((
                format!("{kind}/{}", path.file_name().unwrap().to_string_lossy()),
                path,
            ));
        }
    }
    files.sort();
    let mut code = String::from(
        "/// Sample alerts: (kind/file name, bytes).\npub static SAMPLES: &[(&str, &[u8])] = &[\n",
    );
    for (name, path) in &files {
        writeln!(
            code,
            "    ({name:?}, include_bytes!({:?})),",
            path.canonicalize().unwrap()
        )
        .unwrap();
    }
    code.push_str("];\n");
    let out = Path::new(&std::env::var("OUT_DIR").unwrap()).join("samples.rs");
    std::fs::write(out, code).expect("write samples.rs");
}
