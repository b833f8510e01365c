//! **call**: the cost of calling a struct_ops member.
//!
//! The host calls `int (*op)(struct state *, int)` through a function pointer, where
//! the member is
//!
//! - the reference: a native `extern "C"` function doing `return state->v + x;`;
//! - the one-line BPF program doing the same behind a JIT [`EntryPoint`] (what a
//!   struct_ops map hands the host);
//! - the same program behind an interpreter entry point (for context: the cost when the
//!   JIT is off).
//!
//! Target: the JIT entry point at most 1.5 ns above the native call (the kernel's
//! trampoline costs about 6 ns over its direct call).

use std::ffi::c_void;
use std::hint::black_box;
use std::sync::Arc;

use structops_vm::{ArgKind, Code, Engine, EntryPoint, FuncModel, NoEnv, RetKind};

use crate::{BenchError, Report, Row, Settings, Target};

/// The host's `struct state`.
#[repr(C)]
#[derive(Debug)]
pub struct State {
    /// The value the member adds to.
    pub v: u32,
}

/// The member's native signature.
pub type Op = unsafe extern "C" fn(*mut State, i32) -> i32;

/// The native member.
#[inline(never)]
unsafe extern "C" fn native_op(state: *mut State, x: i32) -> i32 {
    // SAFETY: the caller passes a valid state.
    unsafe { ((*state).v as i32).wrapping_add(x) }
}

/// `return state->v + x;` as clang emits it for a struct_ops program: the arguments
/// come from the context array.
pub const PROGRAM: &str = "
    r2 = *(u64 *)(r1 +0)
    r0 = *(u32 *)(r2 +0)
    r3 = *(u64 *)(r1 +8)
    r0 += r3
    exit
";

/// The members to call, each checked to compute `state->v + x`.
pub struct Members {
    /// `(name, function pointer)`: native first.
    pub ops: Vec<(&'static str, Op)>,
    /// Keeps the entry points' code mapped while `ops` is used.
    _entries: Vec<EntryPoint>,
}

impl std::fmt::Debug for Members {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Members")
            .field("ops", &self.ops.iter().map(|(n, _)| n).collect::<Vec<_>>())
            .finish_non_exhaustive()
    }
}

/// Name of the native reference.
pub const NATIVE: &str = "native extern \"C\" call";
/// Name of the JIT entry point.
pub const JIT: &str = "JIT entry point";
/// Name of the interpreter entry point.
pub const INTERP: &str = "interpreter entry point";

/// Builds the members and checks each one's results.
///
/// # Errors
///
/// [`BenchError::Jit`] if an entry point cannot be built, [`BenchError::Mismatch`] if
/// one computes something else than the native member.
pub fn members() -> Result<Members, BenchError> {
    let what = || "call: one-line program".to_string();
    let prog = structops_isa::assemble(PROGRAM).map_err(|e| BenchError::Decode {
        what: what(),
        message: e.to_string(),
    })?;
    let code = Code::new(&prog);
    let model =
        FuncModel::new(vec![ArgKind::Ptr, ArgKind::I32], RetKind::I32).map_err(|source| {
            BenchError::Jit {
                what: what(),
                source,
            }
        })?;
    let mut entries = Vec::new();
    let mut ops: Vec<(&'static str, Op)> = vec![(NATIVE, native_op)];
    for (name, engine) in [(JIT, Engine::Jit), (INTERP, Engine::Interp)] {
        let entry = EntryPoint::new(&code, &model, engine, Arc::new(NoEnv)).map_err(|source| {
            BenchError::Jit {
                what: what(),
                source,
            }
        })?;
        // SAFETY: the entry point was built for `Op`'s signature; `entries` keeps it.
        let op = unsafe { std::mem::transmute::<*const c_void, Op>(entry.as_ptr()) };
        ops.push((name, op));
        entries.push(entry);
    }
    let mut state = State { v: 40 };
    for &(name, op) in &ops {
        for x in [2, -50, i32::MAX] {
            // SAFETY: a valid state; the program reads `v` only.
            let got = unsafe { op(&mut state, x) };
            let want = 40i32.wrapping_add(x);
            if got != want {
                return Err(BenchError::Mismatch {
                    what: what(),
                    engine: name,
                    got: got as u32 as u64,
                    want: want as u32 as u64,
                });
            }
        }
    }
    Ok(Members {
        ops,
        _entries: entries,
    })
}

/// One call of `op` with opaque arguments (what every figure times).
#[inline(always)]
pub fn call_once(op: Op, state: *mut State) -> i32 {
    let op = black_box(op);
    // SAFETY: `op` is one of [`members`]' checked members and `state` is valid.
    unsafe { op(black_box(state), black_box(2)) }
}

/// The quick mode: ns per call of each member, next to the native call.
///
/// # Errors
///
/// As [`members`].
pub fn run(settings: &Settings) -> Result<Report, BenchError> {
    let m = members()?;
    let mut state = State { v: 40 };
    let p: *mut State = &mut state;
    let times: Vec<(&str, f64)> = m
        .ops
        .iter()
        .map(|&(name, op)| {
            (
                name,
                crate::ns_per_iter(settings, || {
                    black_box(call_once(op, p));
                }),
            )
        })
        .collect();
    let native = times.first().map_or(0.0, |t| t.1);
    let mut report = Report::new("call");
    for &(name, ns) in &times {
        report.rows.push(match name {
            NATIVE => Row::plain(name, ns, "ns/call"),
            JIT => Row::judged(name, ns, "ns/call", NATIVE, native, Target::AtMostPlus(1.5)),
            _ => Row::beside(name, ns, "ns/call", NATIVE, native),
        });
    }
    Ok(report)
}
