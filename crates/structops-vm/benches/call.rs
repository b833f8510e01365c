//! Call overhead of a struct_ops member: a host calling
//! `int (*op)(struct state *, int)` through a function pointer, where the
//! member is
//!
//! - `native`: a Rust `extern "C"` function doing the same work;
//! - `jit_entry`: the one-line BPF program `return state->v + x;` behind a
//!   JIT [`EntryPoint`] (default options: a function zeroes its 512-byte
//!   frame on entry, as the interpreter does, but only if it reads `r10`,
//!   which this one does not);
//! - `jit_entry_no_zero_stack`: the same compiled without frame zeroing
//!   (what the kernel's JIT does; verified programs cannot observe it);
//! - `interp_entry`: the same program behind an interpreter entry point;
//! - `native_mmap` (x86-64 only): the native function's three instructions
//!   (`mov (%rdi),%eax; add %esi,%eax; ret`) copied into an anonymous
//!   read+execute mapping, to separate the cost of calling into JIT-style
//!   memory far from the binary from the cost of the entry point's work.
//!
//! All go through `black_box`ed pointers, so each is a real indirect call.
//! The figures of one run are printed side by side by Criterion in the
//! `member_call` group; the target is `jit_entry` ≤ `native` + 1.5 ns.

use std::ffi::c_void;
use std::hint::black_box;
use std::sync::Arc;

use criterion::{Criterion, criterion_group, criterion_main};
use structops_vm::{
    ArgKind, Code, Engine, EntryPoint, FuncModel, JitOptions, JitProgram, NoEnv, RetKind,
};

/// The host's `struct state`.
#[repr(C)]
struct State {
    v: u32,
}

type Op = unsafe extern "C" fn(*mut State, i32) -> i32;

/// The native member.
#[inline(never)]
unsafe extern "C" fn native_op(state: *mut State, x: i32) -> i32 {
    // SAFETY: the caller passes a valid state.
    unsafe { ((*state).v as i32).wrapping_add(x) }
}

/// `return state->v + x;` as clang emits it for a struct_ops program:
/// the arguments come from the context array.
const PROGRAM: &str = "
    r2 = *(u64 *)(r1 +0)
    r0 = *(u32 *)(r2 +0)
    r3 = *(u64 *)(r1 +8)
    r0 += r3
    exit
";

fn bench_call(c: &mut Criterion) {
    let code = Code::new(&structops_isa::assemble(PROGRAM).expect("program"));
    let model = FuncModel::new(vec![ArgKind::Ptr, ArgKind::I32], RetKind::I32).expect("model");
    let jit = EntryPoint::new(&code, &model, Engine::Jit, Arc::new(NoEnv)).expect("jit entry");
    let no_zero = JitProgram::compile(
        &code,
        &JitOptions {
            zero_stack: false,
            ..JitOptions::default()
        },
    )
    .expect("compile");
    let jit_no_zero =
        EntryPoint::with_program(&code, &no_zero, &model, Arc::new(NoEnv)).expect("entry");
    let interp =
        EntryPoint::new(&code, &model, Engine::Interp, Arc::new(NoEnv)).expect("interp entry");
    assert!(jit.is_direct() && jit_no_zero.is_direct() && !interp.is_direct());
    let as_op = |p: *const c_void| {
        // SAFETY: every entry point was built for `Op`'s signature.
        unsafe { std::mem::transmute::<*const c_void, Op>(p) }
    };
    let members: [(&str, Op); 4] = [
        ("native", native_op),
        ("jit_entry", as_op(jit.as_ptr())),
        ("jit_entry_no_zero_stack", as_op(jit_no_zero.as_ptr())),
        ("interp_entry", as_op(interp.as_ptr())),
    ];
    let mapped = mapped_native();
    let mut members = members.to_vec();
    if let Some(p) = mapped {
        members.insert(1, ("native_mmap", as_op(p.cast())));
    }
    let mut state = State { v: 40 };
    for &(name, op) in &members {
        // SAFETY: a valid state; the program reads `v` only.
        let r = unsafe { op(&mut state, 2) };
        assert_eq!(r, 42, "{name}");
        // SAFETY: as above.
        assert_eq!(unsafe { op(&mut state, -50) }, -10, "{name}");
    }
    let mut group = c.benchmark_group("member_call");
    for &(name, op) in &members {
        group.bench_function(name, |b| {
            let state: *mut State = &mut state;
            b.iter(|| {
                let op = black_box(op);
                // SAFETY: as above.
                unsafe { op(black_box(state), black_box(2)) }
            })
        });
    }
    group.finish();
}

/// The native member's code in its own read+execute mapping (leaked).
fn mapped_native() -> Option<*const u8> {
    if !cfg!(target_arch = "x86_64") {
        return None;
    }
    const CODE: [u8; 5] = [0x8b, 0x07, 0x01, 0xf0, 0xc3];
    // SAFETY: a fresh private anonymous mapping, written and then made
    // read+execute before use.
    unsafe {
        let p = libc::mmap(
            std::ptr::null_mut(),
            4096,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
            -1,
            0,
        );
        if p == libc::MAP_FAILED {
            return None;
        }
        std::ptr::copy_nonoverlapping(CODE.as_ptr(), p.cast::<u8>(), CODE.len());
        if libc::mprotect(p, 4096, libc::PROT_READ | libc::PROT_EXEC) != 0 {
            return None;
        }
        Some(p.cast::<u8>().cast_const())
    }
}

criterion_group!(benches, bench_call);
criterion_main!(benches);
