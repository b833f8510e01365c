//! The eBPF engines of structops: the reference interpreter and the Cranelift
//! JIT ([`jit`]).
//!
//! The interpreter runs a decoded [`structops_isa::Program`] with the
//! semantics of the kernel's `___bpf_prog_run` together with the verifier's
//! run-time rewrites, in one of two modes:
//!
//! - **checked** ([`Interpreter::run_checked`], safe): every load, store
//!   and atomic is compared with the memory the program may use (its live
//!   stack frames, the context, extra [`Region`]s, regions the environment
//!   grants); reads of never-written stack bytes and runaway loops are
//!   caught too. Any violation ends the run with a typed [`VmError`], never
//!   a crash. Tests and fuzzing use this mode, on any program.
//! - **unchecked** ([`Interpreter::run_unchecked`], `unsafe`): the fast
//!   path for programs the verifier accepted; memory is accessed directly.
//!
//! The JIT ([`JitProgram`]) compiles the same [`Code`] to native code with
//! the unchecked interpreter's results (run on x86-64 hosts; see [`jit`] for
//! the details); [`Interpreter::run`] runs a program
//! on either [`Engine`], and [`EntryPoint`] wraps one as a native
//! `extern "C"` function with a struct_ops member's signature.
//!
//! The runtime supplies helpers, kfuncs, tail-call targets and packet
//! loads through the [`Env`] trait; helpers share one native ABI with the
//! JIT ([`NativeFn`], see [`mod@env`]).
//!
//! # Semantics
//!
//! - ALU: 32-bit operations zero-extend the destination; shift amounts are
//!   masked (`& 63`, `& 31`); division by zero yields 0 and modulo by zero
//!   leaves the destination (zero-extended for 32 bits); signed
//!   `MIN / -1` is `MIN` and `MIN % -1` is 0, as the kernel's patched
//!   instructions compute them (the verifier's `do_misc_fixups`).
//! - Byte swaps act on the host's byte order (`le16` truncates on
//!   little-endian hosts, `be16` and `bswap16` swap).
//! - `may_goto`: each function invocation has a budget of
//!   [`BPF_MAX_LOOPS`]; while it lasts, `may_goto` falls through and
//!   spends one unit, then it jumps.
//! - bpf-to-bpf calls get a fresh, zeroed 512-byte frame; `r6` to `r9`
//!   and `r10` are restored on return; at most [`MAX_CALL_FRAMES`] frames.
//! - `bpf_tail_call` (helper 12) is executed by the interpreter, with the
//!   environment looking up the target ([`Env::tail_call`]); at most
//!   [`MAX_TAIL_CALL_CNT`] per run, counted over the whole run (as the
//!   x86-64 JIT counts them across subprograms); the target replaces the
//!   current function in its frame.
//! - Atomics are real atomic operations on the target memory (fetching
//!   ones sequentially consistent, the others relaxed), and must be
//!   naturally aligned in both modes.
//! - `LD_IMM64` with pseudo sources other than constants and
//!   `BPF_PSEUDO_FUNC` is resolved by [`Env::resolve_imm64`]; a runtime
//!   rewrites those before execution, as the kernel's verifier does.
//!   `BPF_PSEUDO_FUNC` loads produce opaque callback values that helpers
//!   invoke with [`Caller::call_function`].
//! - Malformed control flow (a jump out of the program or into the middle
//!   of an `LD_IMM64`, falling off the end) is a typed error when reached.
//!
//! # Example
//!
//! ```
//! use structops_vm::{Code, Interpreter, NoEnv, Region, VmError};
//!
//! let prog = structops_isa::assemble(
//!     "
//!     r2 = *(u64 *)(r1 +0)
//!     r0 = 100
//!     r0 /= r2          ; division by zero yields 0
//!     *(u64 *)(r10 -8) = r0
//!     r0 = *(u64 *)(r10 -8)
//!     exit
//!     ",
//! )?;
//! let code = Code::new(&prog);
//! let mut vm = Interpreter::new();
//!
//! let mut args = [7u64];
//! let r0 = vm.run_checked(&code, &mut NoEnv, Region::read_write_u64s(&mut args), &[])?;
//! assert_eq!(r0, 14);
//!
//! let mut args = [0u64];
//! let r0 = vm.run_checked(&code, &mut NoEnv, Region::read_write_u64s(&mut args), &[])?;
//! assert_eq!(r0, 0);
//!
//! // Reading past the context is caught, with the instruction's pc.
//! let bad = structops_isa::assemble("r0 = *(u64 *)(r1 +8)\nexit")?;
//! let err = vm
//!     .run_checked(&Code::new(&bad), &mut NoEnv, Region::read_write_u64s(&mut args), &[])
//!     .unwrap_err();
//! assert!(matches!(err, VmError::OutOfBounds { pc: 0, len: 8, write: false, .. }));
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

#![warn(missing_docs)]

#[cfg(not(target_pointer_width = "64"))]
compile_error!("structops-vm keeps host addresses in 64-bit BPF registers; it needs a 64-bit host");

mod alu;
pub mod code;
pub mod env;
pub mod error;
pub mod interp;
pub mod jit;
pub mod memory;

pub use code::{BPF_FUNC_TAIL_CALL, Code, InsnFacts};
pub use env::{Env, NativeCall, NativeFn, NoEnv, TailCallTarget};
pub use error::VmError;
pub use interp::{
    BPF_MAX_LOOPS, Caller, Config, DEFAULT_STEP_LIMIT, Interpreter, MAX_TAIL_CALL_CNT, Mode,
};
pub use jit::{
    ArgKind, Engine, EntryEnv, EntryPoint, FuncModel, JitError, JitOptions, JitProgram,
    MachineCode, NullaryHelpers, RetKind, Target, emit_entry_machine_code, emit_machine_code,
};
pub use memory::{Access, MAX_CALL_FRAMES, Region, STACK_SIZE};
