//! Map lookup cost: the program-side hash lookup (what `bpf_map_lookup_elem` does) next
//! to a `std::collections::HashMap` with the same key and value sizes, the syscall-side
//! lookup (a copy), and the array lookup.

use std::collections::HashMap;
use std::hint::black_box;

use criterion::{Criterion, criterion_group, criterion_main};
use structops::{BPF_ANY, MapCreateAttr, MapType, Runtime};

const N: u32 = 1024;

fn lookups(c: &mut Criterion) {
    let rt = Runtime::default();
    let hash = rt
        .map_create(&MapCreateAttr::new(MapType::Hash, 4, 8, N))
        .unwrap();
    let array = rt
        .map_create(&MapCreateAttr::new(MapType::Array, 4, 8, N))
        .unwrap();
    let mut std_map: HashMap<[u8; 4], [u8; 8]> = HashMap::new();
    for k in 0..N {
        let v = u64::from(k).to_ne_bytes();
        rt.map_update_elem(&hash, Some(&k.to_ne_bytes()), &v, BPF_ANY)
            .unwrap();
        rt.map_update_elem(&array, Some(&k.to_ne_bytes()), &v, BPF_ANY)
            .unwrap();
        std_map.insert(k.to_ne_bytes(), v);
    }
    let keys: Vec<[u8; 4]> = (0..N)
        .map(|k| (k.wrapping_mul(2_654_435_761) % N).to_ne_bytes())
        .collect();

    let mut g = c.benchmark_group("lookup");
    g.bench_function("hash map, program side (guard held)", |b| {
        let guard = structops::read_lock();
        let mut i = 0usize;
        b.iter(|| {
            i = (i + 1) % keys.len();
            black_box(hash.lookup_ptr(black_box(&keys[i]), &guard))
        })
    });
    g.bench_function("hash map, program side (pin per lookup)", |b| {
        let mut i = 0usize;
        b.iter(|| {
            i = (i + 1) % keys.len();
            let guard = structops::read_lock();
            black_box(hash.lookup_ptr(black_box(&keys[i]), &guard).is_some())
        })
    });
    g.bench_function("std HashMap<[u8; 4], [u8; 8]> (SipHash)", |b| {
        let mut i = 0usize;
        b.iter(|| {
            i = (i + 1) % keys.len();
            black_box(std_map.get(black_box(&keys[i])))
        })
    });
    g.bench_function("hash map, syscall side (copy out)", |b| {
        let mut i = 0usize;
        let mut v = [0u8; 8];
        b.iter(|| {
            i = (i + 1) % keys.len();
            black_box(rt.map_lookup_elem(&hash, Some(black_box(&keys[i])), &mut v, 0))
        })
    });
    g.bench_function("array map, program side", |b| {
        let guard = structops::read_lock();
        let mut i = 0usize;
        b.iter(|| {
            i = (i + 1) % keys.len();
            black_box(array.lookup_ptr(black_box(&keys[i]), &guard))
        })
    });
    g.finish();
}

criterion_group!(benches, lookups);
criterion_main!(benches);
