//! Parse + relocate `bpf_cubic.bpf.o` from the conformance corpus (skipped with a note
//! when the corpus is not built): `Object::parse_with`, then the load steps that need
//! no kernel (struct_ops binding and CO-RE against the object's own BTF are not
//! meaningful, so the bench relocates calls and data only, and separately measures
//! struct_ops + CO-RE against `/sys/kernel/btf/vmlinux` when it is readable).

use std::path::Path;

use criterion::{Criterion, criterion_group, criterion_main};
use structops_btf::Btf;
use structops_obj::core_relo::CoreTarget;
use structops_obj::{CoreEngine, Object, ParseOptions};

fn bench(c: &mut Criterion) {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../conformance/build/corpus/bpf_cubic.bpf.o");
    let Ok(bytes) = std::fs::read(&path) else {
        eprintln!(
            "skipped: {} not built (run conformance/build.sh)",
            path.display()
        );
        return;
    };
    let opts = ParseOptions::for_path("bpf_cubic.bpf.o");
    c.bench_function("parse bpf_cubic", |b| {
        b.iter(|| Object::parse_with(std::hint::black_box(&bytes), &opts))
    });
    c.bench_function("parse + relocate bpf_cubic", |b| {
        b.iter(|| {
            let obj = Object::parse_with(std::hint::black_box(&bytes), &opts).ok()?;
            obj.relocate(&|m| m as i32).ok()
        })
    });
    let Some(vmlinux) = std::fs::read("/sys/kernel/btf/vmlinux")
        .ok()
        .and_then(|b| Btf::parse(&b).ok())
    else {
        eprintln!("skipped: no /sys/kernel/btf/vmlinux for the full pipeline");
        return;
    };
    let target = CoreTarget::new(&vmlinux);
    c.bench_function("parse + struct_ops + CO-RE + relocate bpf_cubic", |b| {
        b.iter(|| {
            let mut obj = Object::parse_with(std::hint::black_box(&bytes), &opts).ok()?;
            obj.init_struct_ops(&vmlinux).ok()?;
            obj.relocate_core_with(&CoreEngine::new(&target)).ok()?;
            obj.relocate(&|m| m as i32).ok()
        })
    });
}

criterion_group!(benches, bench);
criterion_main!(benches);
