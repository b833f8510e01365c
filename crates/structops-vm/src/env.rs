//! [`Env`]: what the runtime provides to a running program (helpers,
//! kfuncs, tail-call targets, `LD_IMM64` resolution, packet loads).
//!
//! # The helper ABI, shared with the JIT
//!
//! A helper is ultimately a native function of five `u64` arguments
//! returning `u64`, exactly as in the kernel, plus one pointer of context
//! that the runtime chooses per helper ([`NativeFn`], [`NativeCall`]). The
//! context pointer goes *last*, so that on x86-64 and arm64 the five BPF
//! argument registers map onto the first five native argument registers
//! unchanged and the context takes the sixth; a JIT calls a helper with a
//! single `mov` for the context and a `call`.
//!
//! [`Env::native_helper`] returns that function for a helper id. The
//! interpreter's unchecked (fast) mode calls it directly, so the interpreter
//! and the JIT run the very same helper code. Checked mode never calls it:
//! it goes through [`Env::call_helper`], which receives a [`Caller`] to
//! validate pointer arguments against the regions the program may use
//! (that validation is the environment's job; the interpreter cannot know
//! which arguments are pointers) and to grant new regions, such as the map
//! value a lookup returns. A runtime typically implements `call_helper` as
//! "check the pointer arguments, then call the native function".
//!
//! Errors cannot cross the native ABI; a native helper reports failure the
//! kernel's way, in its return value.

use std::ffi::c_void;

use structops_isa::{Imm64, Width};

use crate::code::Code;
use crate::error::VmError;
use crate::interp::Caller;

/// A native helper or kfunc: the five BPF argument registers, then the
/// context pointer of its [`NativeCall`]. Returns the new `r0`.
pub type NativeFn = unsafe extern "C" fn(u64, u64, u64, u64, u64, *mut c_void) -> u64;

/// A native function together with the context it is called with.
#[derive(Clone, Copy, Debug)]
pub struct NativeCall {
    /// The function.
    pub func: NativeFn,
    /// Passed as its sixth argument, unchanged.
    pub data: *mut c_void,
}

impl NativeCall {
    /// Calls the function with `args` and the context.
    ///
    /// # Safety
    ///
    /// Whoever produced this `NativeCall` defines when calling it is sound;
    /// for [`Env::native_helper`], that is: with the arguments of a program
    /// the verifier accepted.
    pub unsafe fn call(&self, args: [u64; 5]) -> u64 {
        let [a, b, c, d, e] = args;
        // SAFETY: forwarded to the caller's contract.
        unsafe { (self.func)(a, b, c, d, e, self.data) }
    }
}

/// The result of looking up a tail-call target, mirroring the three exits
/// of the kernel's `BPF_TAIL_CALL` (`___bpf_prog_run`): an index past the
/// array does not count towards the limit, an empty slot does.
#[derive(Clone, Debug)]
pub enum TailCallTarget {
    /// `index >= max_entries`: fall through, not counted.
    OutOfRange,
    /// The slot is empty: fall through, counted.
    Empty,
    /// Continue in this program, counted.
    Program(Code),
}

/// What the runtime provides to a running program. Every method has a
/// default that refuses with a typed error, so a test environment only
/// implements what it needs ([`NoEnv`] implements nothing).
///
/// `pc` arguments are the slot index of the instruction being executed;
/// put them into the errors you return.
pub trait Env {
    /// Calls helper `id` with `args` (`r1` to `r5`); the result becomes
    /// `r0`. `caller` checks, reads and writes program memory and grants
    /// regions (checked mode), and calls back into BPF (`bpf_loop`).
    /// Never called for `bpf_tail_call` (id 12), see [`Env::tail_call`].
    ///
    /// # Errors
    ///
    /// [`VmError::UnknownHelper`] by default; whatever the helper reports.
    fn call_helper(
        &mut self,
        pc: usize,
        id: i32,
        args: [u64; 5],
        caller: &mut Caller<'_>,
    ) -> Result<u64, VmError> {
        let _ = (args, caller);
        Err(VmError::UnknownHelper { pc, id })
    }

    /// The native implementation of helper `id`, if there is one. The
    /// unchecked interpreter (and the JIT) call it instead of
    /// [`Env::call_helper`]; it must then behave the same for every program
    /// the verifier accepts. See the [module docs](self).
    fn native_helper(&self, id: i32) -> Option<NativeCall> {
        let _ = id;
        None
    }

    /// Calls the kfunc with BTF id `btf_id` (`off` is the call's module
    /// index into `fd_array`, 0 for the host's own BTF).
    ///
    /// # Errors
    ///
    /// [`VmError::UnknownKfunc`] by default; whatever the kfunc reports.
    fn call_kfunc(
        &mut self,
        pc: usize,
        btf_id: u32,
        off: i16,
        args: [u64; 5],
        caller: &mut Caller<'_>,
    ) -> Result<u64, VmError> {
        let _ = (args, caller);
        Err(VmError::UnknownKfunc { pc, btf_id, off })
    }

    /// The native implementation of a kfunc, used like
    /// [`Env::native_helper`].
    fn native_kfunc(&self, btf_id: u32, off: i16) -> Option<NativeCall> {
        let _ = (btf_id, off);
        None
    }

    /// The 64-bit value of an `LD_IMM64` whose pseudo source is not 0 and
    /// not `BPF_PSEUDO_FUNC` (the interpreter resolves those itself). A
    /// runtime rewrites these before execution, as the kernel's verifier
    /// does (`resolve_pseudo_ldimm64`), so this is for running unrewritten
    /// programs in tests; its result is used as is, in both modes (a map
    /// value address is not granted by this; grant it with a region).
    ///
    /// # Errors
    ///
    /// [`VmError::UnresolvedImm64`] by default.
    fn resolve_imm64(&mut self, pc: usize, imm: &Imm64) -> Result<u64, VmError> {
        Err(VmError::UnresolvedImm64 {
            pc,
            src: imm.pseudo_src(),
        })
    }

    /// Looks up entry `index` of the program array `map` (the value of
    /// `r2` at the `bpf_tail_call`).
    ///
    /// # Errors
    ///
    /// [`VmError::Unsupported`] by default.
    fn tail_call(&mut self, pc: usize, map: u64, index: u32) -> Result<TailCallTarget, VmError> {
        let _ = (map, index);
        Err(VmError::Unsupported {
            pc,
            what: "bpf_tail_call",
        })
    }

    /// A probe load (the kernel's `BPF_PROBE_MEM`, see
    /// [`crate::InsnFacts::probe_mem`]): fills `buf` with the bytes at
    /// `addr` and returns `true` if they may be read, or returns `false`
    /// and the load yields 0, as a faulting probe does in the kernel. The
    /// address is whatever the program loaded from a host struct: NULL, a
    /// freed object, anything. Called in every mode, and it must answer the
    /// same in every mode so that the engines agree.
    ///
    /// The default reads nothing.
    fn probe_read(
        &mut self,
        pc: usize,
        addr: u64,
        buf: &mut [u8],
        caller: &mut Caller<'_>,
    ) -> bool {
        let _ = (pc, addr, buf, caller);
        false
    }

    /// Whether JIT code may run helper 181 itself, as the kernel's `bpf_loop`
    /// (calls of the callback with `(i, ctx)` until it returns non-zero or the
    /// count is reached; `-EINVAL` for flags, `-E2BIG` above `1 << 23`), instead
    /// of calling [`Env::call_helper`] or [`Env::native_helper`] for it: when the
    /// environment's helper 181 is exactly that and needs no per-call work of its
    /// own (a trace, checks). Asked at every such call. The default is `false`.
    fn inline_bpf_loop(&self) -> bool {
        false
    }

    /// Legacy packet load for `LD_ABS`/`LD_IND`: `width` bytes at packet
    /// offset `offset` of the skb `ctx` (the value of `r6`), converted from
    /// network byte order. `Ok(None)` means the offset is out of bounds:
    /// the program then returns 0, as the kernel's `bpf_gen_ld_abs` does.
    ///
    /// # Errors
    ///
    /// [`VmError::Unsupported`] by default.
    fn load_packet(
        &mut self,
        pc: usize,
        ctx: u64,
        offset: i32,
        width: Width,
    ) -> Result<Option<u64>, VmError> {
        let _ = (ctx, offset, width);
        Err(VmError::Unsupported {
            pc,
            what: "LD_ABS/LD_IND packet access",
        })
    }
}

/// An environment with nothing in it: every helper, kfunc, tail call and
/// pseudo `LD_IMM64` is an error.
#[derive(Clone, Copy, Debug, Default)]
pub struct NoEnv;

impl Env for NoEnv {}
