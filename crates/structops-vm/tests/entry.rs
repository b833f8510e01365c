//! Native entry points called from the host through plain function
//! pointers, on both engines, against the interpreter run on the context
//! array the kernel's trampoline would build for the same call.

#![cfg(target_arch = "x86_64")]

use std::ffi::c_void;
use std::sync::Arc;

use structops_vm::{
    ArgKind, Caller, Code, Engine, EntryEnv, EntryPoint, Env, FuncModel, Interpreter, NoEnv,
    RetKind, VmError,
};

fn code(src: &str) -> Code {
    Code::new(&structops_isa::assemble(src).unwrap())
}

const ENGINES: [Engine; 2] = [Engine::Jit, Engine::Interp];

/// `r0 = sum over slots of ctx[i] * (2i + 3)`, then `r0 ^= r0 >> 29`.
fn weighted_sum(slots: usize) -> Code {
    let mut src = String::from("r0 = 0\n");
    for i in 0..slots {
        src.push_str(&format!(
            "r2 = *(u64 *)(r1 +{})\nr2 *= {}\nr0 += r2\n",
            8 * i,
            2 * i + 3
        ));
    }
    src.push_str("r3 = r0\nr3 >>= 29\nr0 ^= r3\nexit");
    code(&src)
}

/// `r0` of the interpreter for `ctx`.
fn reference(code: &Code, ctx: &[u64]) -> u64 {
    let mut ctx = ctx.to_vec();
    ctx.push(0);
    let mut vm = Interpreter::new();
    // SAFETY: the programs only read the context.
    unsafe {
        vm.run_unchecked(code, &mut NoEnv, ctx.as_mut_ptr() as u64)
            .unwrap()
    }
}

fn entry(code: &Code, model: &FuncModel, engine: Engine) -> EntryPoint {
    let e = EntryPoint::new(code, model, engine, Arc::new(NoEnv)).unwrap();
    assert_eq!(e.is_direct(), engine == Engine::Jit);
    e
}

/// Calls `$p` as `unsafe extern "C" fn(u64, ..) -> u64` with the arguments.
macro_rules! call_u64 {
    (@ty $a:expr) => { u64 };
    ($p:expr; $($a:expr),*) => {{
        // SAFETY: the entry point was built for this many u64 arguments.
        unsafe {
            let f: unsafe extern "C" fn($(call_u64!(@ty $a)),*) -> u64 =
                std::mem::transmute::<*const c_void, _>($p);
            f($($a),*)
        }
    }};
}

#[test]
fn zero_to_twelve_u64_arguments() {
    let v: Vec<u64> = (0..12u64)
        .map(|i| {
            0x9e37_79b9_7f4a_7c15u64
                .wrapping_mul(i + 1)
                .rotate_left(i as u32 * 5)
        })
        .collect();
    for n in 0..=12usize {
        let model = FuncModel::new(vec![ArgKind::U64; n], RetKind::U64).unwrap();
        let code = weighted_sum(n);
        let want = reference(&code, &v[..n]);
        for engine in ENGINES {
            let e = entry(&code, &model, engine);
            let p = e.as_ptr();
            let got = match n {
                0 => call_u64!(p;),
                1 => call_u64!(p; v[0]),
                2 => call_u64!(p; v[0], v[1]),
                3 => call_u64!(p; v[0], v[1], v[2]),
                4 => call_u64!(p; v[0], v[1], v[2], v[3]),
                5 => call_u64!(p; v[0], v[1], v[2], v[3], v[4]),
                6 => call_u64!(p; v[0], v[1], v[2], v[3], v[4], v[5]),
                7 => call_u64!(p; v[0], v[1], v[2], v[3], v[4], v[5], v[6]),
                8 => call_u64!(p; v[0], v[1], v[2], v[3], v[4], v[5], v[6], v[7]),
                9 => call_u64!(p; v[0], v[1], v[2], v[3], v[4], v[5], v[6], v[7], v[8]),
                10 => call_u64!(p; v[0], v[1], v[2], v[3], v[4], v[5], v[6], v[7], v[8], v[9]),
                11 => {
                    call_u64!(p; v[0], v[1], v[2], v[3], v[4], v[5], v[6], v[7], v[8], v[9], v[10])
                }
                _ => {
                    call_u64!(p; v[0], v[1], v[2], v[3], v[4], v[5], v[6], v[7], v[8], v[9], v[10], v[11])
                }
            };
            assert_eq!(got, want, "{n} arguments, {engine:?}");
            assert_eq!(e.faults(), 0);
        }
    }
}

#[test]
fn narrow_arguments_are_extended_by_their_signedness() {
    use ArgKind::*;
    let model = FuncModel::new(
        vec![U8, I8, U16, I16, U32, I32, I64, Ptr, U8, I8, I16, I32],
        RetKind::U64,
    )
    .unwrap();
    let code = weighted_sum(12);
    let mut x = 7u8;
    let ptr = &raw mut x;
    let raw: [u128; 12] = [
        0xf1,
        0x81,
        0xfff3,
        0x8004,
        0xffff_fff5,
        0x8000_0006,
        (-7i64) as u64 as u128,
        ptr as u64 as u128,
        0x7f,
        0x7f,
        0x7fff,
        0x7fff_ffff,
    ];
    let want = reference(&code, &model.context(&raw));
    type F =
        unsafe extern "C" fn(u8, i8, u16, i16, u32, i32, i64, *mut u8, u8, i8, i16, i32) -> u64;
    for engine in ENGINES {
        let e = entry(&code, &model, engine);
        // SAFETY: the signature of the model.
        let got = unsafe {
            let f = std::mem::transmute::<*const c_void, F>(e.as_ptr());
            f(
                0xf1,
                -127,
                0xfff3,
                -32764,
                0xffff_fff5,
                -2147483642,
                -7,
                ptr,
                0x7f,
                0x7f,
                0x7fff,
                0x7fff_ffff,
            )
        };
        assert_eq!(got, want, "{engine:?}");
    }
}

#[repr(C)]
#[derive(Clone, Copy)]
struct S16 {
    a: u64,
    b: u64,
}

#[repr(C)]
#[derive(Clone, Copy)]
struct S12 {
    a: u64,
    b: u32,
}

#[repr(C)]
#[derive(Clone, Copy)]
struct S6 {
    a: u32,
    b: u16,
}

fn raw16(s: S16) -> u128 {
    u128::from(s.a) | (u128::from(s.b) << 64)
}

#[test]
fn struct_arguments_in_registers() {
    use ArgKind::*;
    let model = FuncModel::new(
        vec![
            Struct { size: 16 },
            U32,
            Struct { size: 6 },
            Struct { size: 12 },
        ],
        RetKind::U64,
    )
    .unwrap();
    assert_eq!(model.slots(), 6);
    let code = weighted_sum(6);
    let s16 = S16 {
        a: 0x1111_2222_3333_4444,
        b: 0x5555_6666_7777_8888,
    };
    let s6 = S6 {
        a: 0xdead_beef,
        b: 0xcafe,
    };
    let s12 = S12 {
        a: 0x0123_4567_89ab_cdef,
        b: 0xfedc_ba98,
    };
    let raw = [
        raw16(s16),
        0x9999_aaaa,
        u128::from(s6.a) | (u128::from(s6.b) << 32),
        u128::from(s12.a) | (u128::from(s12.b) << 64),
    ];
    let ctx = model.context(&raw);
    assert_eq!(ctx[0], s16.a);
    assert_eq!(ctx[1], s16.b);
    assert_eq!(ctx[3], 0xcafe_dead_beef);
    assert_eq!(ctx[5], 0xfedc_ba98);
    let want = reference(&code, &ctx);
    type F = unsafe extern "C" fn(S16, u32, S6, S12) -> u64;
    for engine in ENGINES {
        let e = entry(&code, &model, engine);
        // SAFETY: the signature of the model.
        let got = unsafe {
            std::mem::transmute::<*const c_void, F>(e.as_ptr())(s16, 0x9999_aaaa, s6, s12)
        };
        assert_eq!(got, want, "{engine:?}");
    }
}

#[test]
fn a_struct_that_does_not_fit_in_registers_goes_to_the_stack() {
    use ArgKind::*;
    // Five registers used, the struct needs two: it goes on the stack and
    // the u64 after it takes the sixth register; then more stack.
    let model = FuncModel::new(
        vec![
            U64,
            U64,
            U64,
            U64,
            U64,
            Struct { size: 16 },
            U64,
            Struct { size: 12 },
            I32,
            U8,
        ],
        RetKind::U64,
    )
    .unwrap();
    assert_eq!(model.slots(), 12);
    let code = weighted_sum(12);
    let s16 = S16 {
        a: 0xaaaa_0000_0000_0001,
        b: 0xbbbb_0000_0000_0002,
    };
    let s12 = S12 {
        a: 0xcccc_0000_0000_0003,
        b: 0xdddd_0004,
    };
    let raw = [
        1,
        2,
        3,
        4,
        5,
        raw16(s16),
        6,
        u128::from(s12.a) | (u128::from(s12.b) << 64),
        (-9i32) as u32 as u128,
        0xee,
    ];
    let want = reference(&code, &model.context(&raw));
    type F = unsafe extern "C" fn(u64, u64, u64, u64, u64, S16, u64, S12, i32, u8) -> u64;
    for engine in ENGINES {
        let e = entry(&code, &model, engine);
        // SAFETY: the signature of the model.
        let got = unsafe {
            std::mem::transmute::<*const c_void, F>(e.as_ptr())(
                1, 2, 3, 4, 5, s16, 6, s12, -9, 0xee,
            )
        };
        assert_eq!(got, want, "{engine:?}");
    }
}

/// Returns `ctx[0]` in every return type.
#[test]
fn every_return_width_truncates_and_extends_r0() {
    let code = code("r0 = *(u64 *)(r1 +0)\nexit");
    let values = [
        0u64,
        0x7f,
        0x80,
        0xff,
        0x1_7fff,
        0x8000,
        0xffff_ffff,
        0x8000_0000,
        0x1234_5678_9abc_def0,
        u64::MAX,
    ];
    macro_rules! check {
        ($kind:expr, $t:ty) => {
            let model = FuncModel::new(vec![ArgKind::U64], $kind).unwrap();
            for engine in ENGINES {
                let e = entry(&code, &model, engine);
                // SAFETY: the signature of the model.
                let f = unsafe {
                    std::mem::transmute::<*const c_void, unsafe extern "C" fn(u64) -> $t>(
                        e.as_ptr(),
                    )
                };
                for &v in &values {
                    let r0 = reference(&code, &[v]);
                    assert_eq!(r0, v);
                    // SAFETY: as above.
                    let got = unsafe { f(v) };
                    assert_eq!(got, r0 as $t, "{:?} {engine:?} {v:#x}", $kind);
                    assert_eq!(got as i128 as u64, $kind.from_r0(r0) as $t as i128 as u64);
                }
            }
        };
    }
    check!(RetKind::U8, u8);
    check!(RetKind::U16, u16);
    check!(RetKind::U32, u32);
    check!(RetKind::U64, u64);
    check!(RetKind::I8, i8);
    check!(RetKind::I16, i16);
    check!(RetKind::I32, i32);
    check!(RetKind::I64, i64);
    check!(RetKind::Ptr, usize);
}

#[test]
fn void_members_run_for_their_effects() {
    let code = code(
        "r2 = *(u64 *)(r1 +0)\nr3 = *(u64 *)(r1 +8)\nr3 *= 3\n*(u64 *)(r2 +0) = r3\nr0 = 99\nexit",
    );
    let model = FuncModel::new(vec![ArgKind::Ptr, ArgKind::U64], RetKind::Void).unwrap();
    for engine in ENGINES {
        let e = entry(&code, &model, engine);
        let mut out = 0u64;
        // SAFETY: the signature of the model; the program writes 8 bytes at `out`.
        unsafe {
            let f = std::mem::transmute::<*const c_void, unsafe extern "C" fn(*mut u64, u64)>(
                e.as_ptr(),
            );
            f(&mut out, 14);
        }
        assert_eq!(out, 42, "{engine:?}");
    }
}

#[test]
fn stack_and_bpf_to_bpf_calls_run_directly() {
    // A callee with its own frame, reading the caller's stack through a pointer.
    let code = code(
        "r6 = *(u64 *)(r1 +0)\n*(u64 *)(r10 -8) = r6\nr1 = r10\nr1 += -8\ncall f\nr0 += 1\nexit\n\
         f:\nr2 = *(u64 *)(r1 +0)\n*(u64 *)(r10 -16) = r2\nr0 = *(u64 *)(r10 -16)\nr0 *= 5\nexit",
    );
    let model = FuncModel::new(vec![ArgKind::U64], RetKind::U64).unwrap();
    for engine in ENGINES {
        let e = entry(&code, &model, engine);
        let got = call_u64!(e.as_ptr(); 8);
        assert_eq!(got, 41, "{engine:?}");
        assert_eq!(got, reference(&code, &[8]));
    }
}

/// A helper returning `ctx`-independent state, lent per call.
struct Clock(u64);

impl Env for Clock {
    fn call_helper(
        &mut self,
        pc: usize,
        id: i32,
        _: [u64; 5],
        _: &mut Caller<'_>,
    ) -> Result<u64, VmError> {
        match id {
            5 => Ok(self.0),
            _ => Err(VmError::UnknownHelper { pc, id }),
        }
    }
}

struct ClockEnv(u64);

impl EntryEnv for ClockEnv {
    fn with_env(
        &self,
        run: &mut dyn FnMut(&mut dyn Env) -> Result<u64, VmError>,
    ) -> Result<u64, VmError> {
        run(&mut Clock(self.0))
    }
}

#[test]
fn programs_calling_helpers_run_through_the_runtime_with_the_lent_environment() {
    let code = code("r6 = *(u64 *)(r1 +0)\ncall bpf_ktime_get_ns\nr0 += r6\nexit");
    let model = FuncModel::new(vec![ArgKind::U64], RetKind::U64).unwrap();
    for engine in ENGINES {
        let e = EntryPoint::new(&code, &model, engine, Arc::new(ClockEnv(1000))).unwrap();
        assert!(!e.is_direct());
        assert_eq!(call_u64!(e.as_ptr(); 23), 1023, "{engine:?}");
        assert_eq!(e.faults(), 0);
        // Without the helper the call fails: 0, counted.
        let bare = EntryPoint::new(&code, &model, engine, Arc::new(NoEnv)).unwrap();
        assert_eq!(call_u64!(bare.as_ptr(); 23), 0, "{engine:?}");
        assert_eq!(bare.faults(), 1);
    }
}

#[test]
fn the_entry_point_keeps_the_program_alive() {
    let model = FuncModel::new(vec![ArgKind::U64, ArgKind::U64], RetKind::U64).unwrap();
    let e = {
        let code = weighted_sum(2);
        let e = entry(&code, &model, Engine::Jit);
        e.clone()
    };
    // The code and its compiled program were dropped by the caller.
    let want = reference(&weighted_sum(2), &[5, 6]);
    assert_eq!(call_u64!(e.as_ptr(); 5, 6), want);
    let copy = e.clone();
    drop(e);
    assert_eq!(call_u64!(copy.as_ptr(); 5, 6), want);
    assert!(!copy.machine_code().is_empty());
}

#[test]
fn entry_points_are_shared_between_threads() {
    let model = FuncModel::new(vec![ArgKind::U64, ArgKind::U64], RetKind::U64).unwrap();
    let code = weighted_sum(2);
    for engine in ENGINES {
        let e = entry(&code, &model, engine);
        let handles: Vec<_> = (0..4u64)
            .map(|t| {
                let e = e.clone();
                let code = code.clone();
                std::thread::spawn(move || {
                    for i in 0..1000u64 {
                        let got = call_u64!(e.as_ptr(); t, i);
                        assert_eq!(got, reference(&code, &[t, i]));
                    }
                })
            })
            .collect();
        for h in handles {
            h.join().unwrap();
        }
    }
}

#[test]
fn single_function_programs_are_compiled_into_the_entry_point() {
    let model = FuncModel::new(vec![ArgKind::Ptr, ArgKind::I32], RetKind::I32).unwrap();
    // `return state->v + x;`: one function, no environment.
    let one =
        code("r2 = *(u64 *)(r1 +0)\nr0 = *(u32 *)(r2 +0)\nr3 = *(u64 *)(r1 +8)\nr0 += r3\nexit");
    // The same through a bpf-to-bpf call: direct, but not inline.
    let two = code(
        "r2 = *(u64 *)(r1 +0)\nr3 = *(u64 *)(r1 +8)\ncall f\nexit\nf:\nr0 = *(u32 *)(r2 +0)\nr0 += r3\nexit",
    );
    let mut state = 40u32;
    for (c, inline) in [(&one, true), (&two, false)] {
        for engine in ENGINES {
            let e = entry(c, &model, engine);
            assert_eq!(e.is_inline(), inline && engine == Engine::Jit, "{engine:?}");
            // SAFETY: the model's signature; the program reads `*state` only.
            let f = unsafe {
                std::mem::transmute::<*const c_void, unsafe extern "C" fn(*mut u32, i32) -> i32>(
                    e.as_ptr(),
                )
            };
            for x in [2, -50, i32::MAX] {
                // SAFETY: as above.
                let got = unsafe { f(&mut state, x) };
                assert_eq!(got, 40i32.wrapping_add(x), "{engine:?} inline {inline}");
            }
            assert_eq!(e.faults(), 0);
        }
    }
    // A fault inside an inline entry (a misaligned atomic, which a
    // verifier would refuse) returns 0 and is counted.
    let bad = code("r2 = *(u64 *)(r1 +0)\nr3 = 1\nlock *(u32 *)(r2 +1) += r3\nr0 = 9\nexit");
    let e = entry(&bad, &model, Engine::Jit);
    assert!(e.is_inline());
    let mut words = [0u32; 2];
    // SAFETY: the model's signature; the program touches `words` only.
    let f = unsafe {
        std::mem::transmute::<*const c_void, unsafe extern "C" fn(*mut u32, i32) -> i32>(e.as_ptr())
    };
    // SAFETY: as above.
    assert_eq!(unsafe { f(words.as_mut_ptr(), 0) }, 0);
    assert_eq!(e.faults(), 1);
    assert_eq!(words, [0, 0]);
}

#[test]
fn run_time_faults_return_zero_and_are_counted() {
    // Unbounded recursion (a verifier rejects it): the call depth check fails.
    let code = code("r0 = 5\ncall f\nexit\nf:\ncall f\nr0 = 7\nexit");
    let model = FuncModel::new(vec![], RetKind::I32).unwrap();
    for engine in ENGINES {
        let e = entry(&code, &model, engine);
        // SAFETY: the signature of the model.
        let f = unsafe {
            std::mem::transmute::<*const c_void, unsafe extern "C" fn() -> i32>(e.as_ptr())
        };
        // SAFETY: as above.
        assert_eq!(unsafe { f() }, 0, "{engine:?}");
        // SAFETY: as above.
        assert_eq!(unsafe { f() }, 0, "{engine:?}");
        assert_eq!(e.faults(), 2, "{engine:?}");
    }
}
