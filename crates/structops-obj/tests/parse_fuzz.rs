//! Malformed input never panics: truncated and bit-flipped copies of real objects
//! (this crate's test objects, the project's `bpf/*.bpf.o` fixtures and, when built,
//! a few corpus objects) always parse to an object or a typed error, and a parsed
//! object always relocates to programs or a typed error.

use std::path::{Path, PathBuf};

use proptest::prelude::*;
use structops_obj::{Object, ParseOptions};

fn seeds() -> Vec<Vec<u8>> {
    let here = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut paths: Vec<PathBuf> = Vec::new();
    for dir in [
        here.join("tests/data"),
        here.join("../../bpf"),
        here.join("../../conformance/build/corpus"),
    ] {
        if let Ok(d) = std::fs::read_dir(&dir) {
            let mut v: Vec<PathBuf> = d
                .filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| p.to_string_lossy().ends_with(".o"))
                .collect();
            v.sort();
            // Keep the run bounded: a handful per directory.
            paths.extend(v.into_iter().take(8));
        }
    }
    let seeds: Vec<Vec<u8>> = paths.iter().filter_map(|p| std::fs::read(p).ok()).collect();
    assert!(!seeds.is_empty(), "no seed objects found");
    seeds
}

/// Parses and, on success, runs every pure load step that needs no host data.
fn exercise(bytes: &[u8]) {
    let opts = ParseOptions::named("fuzz");
    let Ok(mut obj) = Object::parse_with(bytes, &opts) else {
        return;
    };
    let _ = obj.relocate(&|m| m as i32);
    if let Some(btf) = obj.btf().cloned() {
        // The object's own BTF as a (wrong) target: must fail cleanly, not panic.
        let _ = obj.init_struct_ops(&btf);
        let _ = obj.relocate_core(&btf);
        let _ = obj.relocate(&|m| m as i32);
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, .. ProptestConfig::default() })]

    #[test]
    fn truncated_objects_do_not_panic(seed in 0usize..64, cut in 0.0f64..1.0) {
        let seeds = seeds();
        let data = &seeds[seed % seeds.len()];
        let len = ((data.len() as f64) * cut) as usize;
        exercise(&data[..len]);
    }

    #[test]
    fn bit_flipped_objects_do_not_panic(
        seed in 0usize..64,
        flips in proptest::collection::vec((0.0f64..1.0, 0u8..8), 1..16),
    ) {
        let seeds = seeds();
        let mut data = seeds[seed % seeds.len()].clone();
        for (pos, bit) in flips {
            let i = ((data.len() as f64) * pos) as usize % data.len().max(1);
            if let Some(b) = data.get_mut(i) {
                *b ^= 1 << bit;
            }
        }
        exercise(&data);
    }

    #[test]
    fn random_bytes_do_not_panic(data in proptest::collection::vec(any::<u8>(), 0..512)) {
        exercise(&data);
    }
}

#[test]
fn every_seed_parses_unmodified() {
    for (i, s) in seeds().iter().enumerate() {
        if let Err(e) = Object::parse(s) {
            panic!("seed {i} fails to parse: {e}");
        }
    }
}
