//! Criterion suite of the **call** benchmark (see `structops_bench::call`): the
//! `member_call` group times the native member, the JIT entry point and the
//! interpreter entry point side by side in one run.

use std::hint::black_box;

use criterion::{Criterion, criterion_group, criterion_main};
use structops_bench::call::{self, State};

fn bench_call(c: &mut Criterion) {
    let members = call::members().expect("members");
    let mut state = State { v: 40 };
    let p: *mut State = &mut state;
    let mut group = c.benchmark_group("member_call");
    for &(name, op) in &members.ops {
        group.bench_function(name, |b| b.iter(|| black_box(call::call_once(op, p))));
    }
    group.finish();
}

criterion_group!(benches, bench_call);
criterion_main!(benches);
