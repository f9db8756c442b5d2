//! Replays every saved fuzz corpus file (fuzz/corpus/<target>/*) through the same target
//! functions the fuzzer runs (fuzz/targets.rs), without the fuzzer: none may panic.
//! New crashes found by scripts/fuzz are minimized and saved there, so they stay fixed.
#![allow(clippy::unwrap_used)]

#[path = "../../../fuzz/targets.rs"]
mod targets;

use std::path::Path;

#[test]
fn saved_fuzz_corpora_do_not_panic() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fuzz/corpus");
    let mut total = 0usize;
    for (name, target) in targets::TARGETS {
        let dir = root.join(name);
        let mut files: Vec<_> = std::fs::read_dir(&dir)
            .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
            .map(|e| e.unwrap().path())
            .filter(|p| p.is_file())
            .collect();
        files.sort();
        assert!(!files.is_empty(), "no corpus for {name}");
        for f in &files {
            let data = std::fs::read(f).unwrap();
            let r = std::panic::catch_unwind(|| target(&data));
            assert!(r.is_ok(), "{name}: {} panicked", f.display());
        }
        eprintln!("{name}: {} inputs replayed", files.len());
        total += files.len();
    }
    eprintln!("{total} fuzz corpus inputs replayed");
}
