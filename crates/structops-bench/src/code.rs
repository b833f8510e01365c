//! **code**: the quality of the JIT's code.
//!
//! Four kernels written once in C (`bpf/bench/bench.h`): an FNV-1a hash loop, a
//! branchy tokenizer state machine, binary searches over a map-value-like sorted array
//! and a CUBIC-style `cong_avoid` step with its integer cube root. Each is compiled by
//! `clang -O2 --target=bpf` (`bpf/bench/code.bpf.o`, a struct_ops-style program reading
//! its two arguments from the context array) and natively by the `cc` crate
//! (`bpf/bench/native.c`, see `build.rs`). The host calls each through the same native
//! signature `u64 f(const void *input, u32 arg)`:
//!
//! - **native**: the natively compiled function (the reference);
//! - **JIT**: the BPF program behind a JIT [`EntryPoint`] (as a struct_ops member);
//! - **interpreter**: the same program behind an interpreter entry point;
//! - **rbpf interpreter** and **rbpf JIT**: the same bytecode on the `rbpf` crate
//!   (`EbpfVmMbuff`: the context array is rbpf's metadata buffer, the input its memory).
//!
//! The programs run without our verifier: they are pure computations on host memory
//! whose pointer arguments a struct_ops host would describe with its own BTF types, and
//! the JIT compiles exactly what the runtime compiles after verification
//! ([`structops_vm::JitProgram`] of the same [`Code`]). Every engine's result is
//! checked against native code before anything is timed.
//!
//! Target: the geometric mean of the JIT's time over native time at most 1.3.

use std::ffi::c_void;
use std::hint::black_box;
use std::sync::Arc;

use structops_obj::Object;
use structops_vm::{ArgKind, Code, Engine, EntryPoint, FuncModel, NoEnv, RetKind};

use crate::{BenchError, Report, Row, Settings, Target};

/// The BPF object: `bpf/bench/code.bpf.o`.
pub const OBJECT: &[u8] = include_bytes!("../../../bpf/bench/code.bpf.o");

/// How the native side was compiled.
pub const NATIVE_COMPILER: &str = env!("STRUCTOPS_BENCH_NATIVE_CC");

/// A kernel's native signature.
pub type KernelFn = unsafe extern "C" fn(*const c_void, u32) -> u64;

unsafe extern "C" {
    fn structops_native_bench_fnv1a(input: *const c_void, arg: u32) -> u64;
    fn structops_native_bench_tokens(input: *const c_void, arg: u32) -> u64;
    fn structops_native_bench_bsearch(input: *const c_void, arg: u32) -> u64;
    fn structops_native_bench_cubic(input: *const c_void, arg: u32) -> u64;
}

/// Bytes of `struct bench_buf`.
const BUF_LEN: usize = 256;
/// Keys of `struct bench_table`.
const TABLE_LEN: usize = 256;

/// One kernel with its input, ready to run on every engine.
pub struct Kernel {
    /// The program's name in the object (and the kernel's, in `bench.h`).
    pub name: &'static str,
    /// What it is.
    pub description: &'static str,
    /// The native function.
    pub native: KernelFn,
    /// The input, 8-byte aligned.
    input: Vec<u64>,
    /// Its size in bytes.
    input_len: usize,
    /// The second argument.
    pub arg: u32,
    /// The program's bytecode (rbpf's input).
    pub bytecode: Vec<u8>,
    /// BPF instructions (slots).
    pub insns: usize,
    code: Code,
    jit: EntryPoint,
    interp: EntryPoint,
}

impl std::fmt::Debug for Kernel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Kernel")
            .field("name", &self.name)
            .field("insns", &self.insns)
            .finish_non_exhaustive()
    }
}

/// Name of the native reference.
pub const NATIVE: &str = "native";
/// The engines besides native, in report order.
pub const ENGINES: [&str; 4] = ["JIT", "interpreter", "rbpf interpreter", "rbpf JIT"];

impl Kernel {
    /// The input's address.
    pub fn input_ptr(&self) -> *const c_void {
        self.input.as_ptr().cast()
    }

    /// The native function.
    pub fn native_fn(&self) -> KernelFn {
        self.native
    }

    /// The JIT entry point as a native function (valid while `self` lives).
    pub fn jit_fn(&self) -> KernelFn {
        // SAFETY: built with the model (Ptr, U32) -> U64, which is `KernelFn`.
        unsafe { std::mem::transmute::<*const c_void, KernelFn>(self.jit.as_ptr()) }
    }

    /// The interpreter entry point as a native function (valid while `self` lives).
    pub fn interp_fn(&self) -> KernelFn {
        // SAFETY: as for `jit_fn`.
        unsafe { std::mem::transmute::<*const c_void, KernelFn>(self.interp.as_ptr()) }
    }

    /// The compiled [`Code`].
    pub fn code(&self) -> &Code {
        &self.code
    }

    /// A copy of the input's bytes (rbpf's memory).
    pub fn input_bytes(&self) -> Vec<u8> {
        self.input
            .iter()
            .flat_map(|w| w.to_ne_bytes())
            .take(self.input_len)
            .collect()
    }

    /// rbpf's metadata buffer for input bytes at `mem`: the context array
    /// `{ (u64)mem, (u64)arg }`.
    pub fn rbpf_mbuff(&self, mem: &[u8]) -> Vec<u8> {
        let mut m = (mem.as_ptr() as u64).to_ne_bytes().to_vec();
        m.extend_from_slice(&u64::from(self.arg).to_ne_bytes());
        m
    }

    /// Calls `f` (one of this kernel's functions) on the input.
    #[inline(always)]
    pub fn call(&self, f: KernelFn) -> u64 {
        let f = black_box(f);
        // SAFETY: every `KernelFn` of a kernel reads its input within its size.
        unsafe { f(black_box(self.input_ptr()), black_box(self.arg)) }
    }
}

fn words_of(bytes: &[u8]) -> Vec<u64> {
    bytes
        .chunks(8)
        .map(|c| {
            let mut w = [0u8; 8];
            w[..c.len()].copy_from_slice(c);
            u64::from_ne_bytes(w)
        })
        .collect()
}

/// A request-like text: words, numbers, quoted strings with escapes.
fn text() -> Vec<u8> {
    let line = b"GET /index.html HTTP/1.1 Host: example \"quoted \\\"x\\\" text\" 12345 \
                 len=42 id_7 0x1f ";
    line.iter().copied().cycle().take(BUF_LEN).collect()
}

fn table() -> Vec<u8> {
    let mut b = (TABLE_LEN as u32).to_ne_bytes().to_vec();
    for i in 0..TABLE_LEN as u32 {
        b.extend_from_slice(&(i * 16 + i % 7).to_ne_bytes());
    }
    b
}

fn cubic_state() -> Vec<u8> {
    // cnt, last_max_cwnd, origin_point, k, delay_min, epoch_start, ack_cnt, tcp_cwnd,
    // snd_cwnd, snd_cwnd_cnt
    [0u32, 120, 0, 0, 20, 0, 0, 0, 100, 0]
        .iter()
        .flat_map(|v| v.to_ne_bytes())
        .collect()
}

/// Loads the four kernels and checks that every engine agrees with native code.
///
/// # Errors
///
/// A [`BenchError`] if the object does not parse, a program does not compile, or an
/// engine's result differs from native code's.
pub fn kernels() -> Result<Vec<Kernel>, BenchError> {
    let obj = Object::parse(OBJECT).map_err(|e| BenchError::Object {
        what: "bpf/bench/code.bpf.o".into(),
        source: Box::new(e),
    })?;
    let linked = obj.relocate(&|_| -1).map_err(|e| BenchError::Object {
        what: "bpf/bench/code.bpf.o: relocation".into(),
        source: Box::new(e),
    })?;
    let specs: [(&'static str, &'static str, KernelFn, Vec<u8>, u32); 4] = [
        (
            "bench_fnv1a",
            "FNV-1a hash of 256 bytes",
            structops_native_bench_fnv1a,
            text(),
            BUF_LEN as u32,
        ),
        (
            "bench_tokens",
            "tokenizer state machine over 256 bytes",
            structops_native_bench_tokens,
            text(),
            BUF_LEN as u32,
        ),
        (
            "bench_bsearch",
            "32 binary searches in 256 sorted keys",
            structops_native_bench_bsearch,
            table(),
            0x1234_5678,
        ),
        (
            "bench_cubic",
            "CUBIC cong_avoid: 8 ACKs, a loss, 2 cube roots",
            structops_native_bench_cubic,
            cubic_state(),
            1000,
        ),
    ];
    let model =
        FuncModel::new(vec![ArgKind::Ptr, ArgKind::U32], RetKind::U64).map_err(|source| {
            BenchError::Jit {
                what: "code: function model".into(),
                source,
            }
        })?;
    let mut out = Vec::new();
    for (name, description, native, input, arg) in specs {
        let what = || format!("bpf/bench/code.bpf.o: {name}");
        let l = linked
            .iter()
            .find(|l| l.name == name)
            .ok_or_else(|| BenchError::Decode {
                what: what(),
                message: "no such program".into(),
            })?;
        let prog = structops_isa::Program::decode(&l.insns).map_err(|e| BenchError::Decode {
            what: what(),
            message: e.to_string(),
        })?;
        let code = Code::new(&prog);
        let entry = |engine| {
            EntryPoint::new(&code, &model, engine, Arc::new(NoEnv)).map_err(|source| {
                BenchError::Jit {
                    what: what(),
                    source,
                }
            })
        };
        let k = Kernel {
            name,
            description,
            native,
            input_len: input.len(),
            input: words_of(&input),
            arg,
            bytecode: structops_isa::Insn::slice_to_bytes(&l.insns),
            insns: l.insns.len(),
            jit: entry(Engine::Jit)?,
            interp: entry(Engine::Interp)?,
            code,
        };
        let want = k.call(k.native);
        for (engine, got) in [
            ("JIT", k.call(k.jit_fn())),
            ("interpreter", k.call(k.interp_fn())),
        ] {
            if got != want {
                return Err(BenchError::Mismatch {
                    what: what(),
                    engine,
                    got,
                    want,
                });
            }
        }
        out.push(k);
    }
    Ok(out)
}

/// rbpf's interpreter on a kernel: its result, or why it cannot run it.
pub fn rbpf_interp(k: &Kernel) -> Result<u64, String> {
    let mem = k.input_bytes();
    let mbuff = k.rbpf_mbuff(&mem);
    let vm = rbpf::EbpfVmMbuff::new(Some(&k.bytecode)).map_err(|e| e.to_string())?;
    vm.execute_program(&mem, &mbuff).map_err(|e| e.to_string())
}

/// Times rbpf's interpreter on `k` (`None`, with the reason, when it cannot run it or
/// disagrees with native code).
pub fn time_rbpf_interp(settings: &Settings, k: &Kernel) -> Result<f64, String> {
    let want = k.call(k.native);
    let got = rbpf_interp(k)?;
    if got != want {
        return Err(format!("returned {got:#x}, native code {want:#x}"));
    }
    let mem = k.input_bytes();
    let mbuff = k.rbpf_mbuff(&mem);
    let vm = rbpf::EbpfVmMbuff::new(Some(&k.bytecode)).map_err(|e| e.to_string())?;
    Ok(crate::ns_per_iter(settings, || {
        black_box(vm.execute_program(black_box(&mem), black_box(&mbuff)).ok());
    }))
}

/// Times rbpf's x86-64 JIT on `k` (see [`time_rbpf_interp`]).
pub fn time_rbpf_jit(settings: &Settings, k: &Kernel) -> Result<f64, String> {
    if !cfg!(target_arch = "x86_64") {
        return Err("rbpf's JIT is x86-64 only".into());
    }
    let want = k.call(k.native);
    let mut mem = k.input_bytes();
    let mut mbuff = k.rbpf_mbuff(&mem);
    let mut vm = rbpf::EbpfVmMbuff::new(Some(&k.bytecode)).map_err(|e| e.to_string())?;
    vm.jit_compile().map_err(|e| format!("jit_compile: {e}"))?;
    // SAFETY: the program reads the metadata buffer's two words and the input within
    // its size (checked by running it in rbpf's bounds-checking interpreter first).
    let got = unsafe { vm.execute_program_jit(&mut mem, &mut mbuff) }.map_err(|e| e.to_string())?;
    if got != want {
        return Err(format!("returned {got:#x}, native code {want:#x}"));
    }
    Ok(crate::ns_per_iter(settings, || {
        // SAFETY: as above.
        black_box(unsafe { vm.execute_program_jit(black_box(&mut mem), &mut mbuff) }.ok());
    }))
}

/// The quick mode: ns per call of each kernel on each engine, next to native code, and
/// the geometric mean of the JIT's ratios.
///
/// # Errors
///
/// As [`kernels`].
pub fn run(settings: &Settings) -> Result<Report, BenchError> {
    let kernels = kernels()?;
    let mut report = Report::new("code");
    let mut jit_ratios = Vec::new();
    let mut rbpf_ratios = Vec::new();
    for k in &kernels {
        let native = crate::ns_per_iter(settings, || {
            black_box(k.call(k.native));
        });
        let jit = crate::ns_per_iter(settings, || {
            black_box(k.call(k.jit_fn()));
        });
        let interp = crate::ns_per_iter(settings, || {
            black_box(k.call(k.interp_fn()));
        });
        let label = |engine: &str| format!("{} ({}): {engine}", k.name, k.description);
        let reference = format!("native ({NATIVE_COMPILER})");
        report
            .rows
            .push(Row::plain(label(NATIVE), native, "ns/call"));
        report.rows.push(Row::beside(
            label("JIT"),
            jit,
            "ns/call",
            &reference,
            native,
        ));
        jit_ratios.push(jit / native);
        report.rows.push(Row::beside(
            label("interpreter"),
            interp,
            "ns/call",
            &reference,
            native,
        ));
        match time_rbpf_interp(settings, k) {
            Ok(ns) => report.rows.push(Row::beside(
                label("rbpf interpreter"),
                ns,
                "ns/call",
                &reference,
                native,
            )),
            Err(e) => report
                .skipped
                .push(format!("{}: rbpf interpreter: {e}", k.name)),
        }
        match time_rbpf_jit(settings, k) {
            Ok(ns) => {
                rbpf_ratios.push(ns / native);
                report.rows.push(Row::beside(
                    label("rbpf JIT"),
                    ns,
                    "ns/call",
                    &reference,
                    native,
                ));
            }
            Err(e) => report.skipped.push(format!("{}: rbpf JIT: {e}", k.name)),
        }
    }
    if let Some(g) = crate::geomean(&jit_ratios) {
        report.rows.push(Row::judged(
            "geometric mean of JIT / native",
            g,
            "x",
            "native",
            1.0,
            Target::AtMostTimes(1.3),
        ));
    }
    if rbpf_ratios.len() == kernels.len()
        && let Some(g) = crate::geomean(&rbpf_ratios)
    {
        report.rows.push(Row::beside(
            "geometric mean of rbpf JIT / native",
            g,
            "x",
            "native",
            1.0,
        ));
    }
    Ok(report)
}
