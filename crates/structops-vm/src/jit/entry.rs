//! Native entry points: [`EntryPoint`], a plain `extern "C"` function with
//! a struct_ops member's signature ([`FuncModel`]) that runs a program.
//!
//! The kernel's trampoline (`arch_prepare_bpf_trampoline`, with the
//! function model `btf_distill_func_proto` derives from BTF) stores the
//! native arguments into a `u64` array on its stack and calls the program
//! with `r1` pointing at it. An entry point does the same, generated with
//! Cranelift for the member's exact signature:
//!
//! ```text
//! ret member(a0, a1, ..) {
//!     u64 ctx[slots];               // each argument fills 1 or 2 slots
//!     ctx[..] = a0, a1, ..;         // extended to 64 bits
//!     r0 = program(ctx);            // see below
//!     return (ret)r0;               // truncated to the return type
//! }
//! ```
//!
//! How `program(ctx)` runs depends on the program:
//!
//! - **inline**: a JIT-compiled program of a single BPF function that
//!   needs no environment (no helper, kfunc, tail call, bpf-to-bpf call,
//!   callback, environment-resolved `LD_IMM64` or packet load) is compiled
//!   into the entry point: the context stores are followed by the
//!   program's own instructions, its frame is in the entry's native frame,
//!   and `exit` returns the member's result. A call costs what a native
//!   call of the same code costs, plus the context stores.
//! - **direct**: any other JIT-compiled program that needs no environment
//!   is called directly. Its run state and its stack frames live in the
//!   entry point's own native frame: no interpreter, no allocation, no
//!   lock and no atomic read-modify-write on the way.
//! - **through the runtime**: every other program, and every program when
//!   the engine is [`Engine::Interp`], goes through a Rust function that
//!   runs it with a per-thread [`Interpreter`] and the environment an
//!   [`EntryEnv`] lends for the call.
//!
//! A verified program cannot fail at run time; if one does anyway (an
//! environment error, a panic in a helper), the member returns 0 and the
//! failure is counted ([`EntryPoint::faults`]) and logged at warn level,
//! since a native caller has no way to receive an error and a panic must
//! not unwind into it.
//!
//! # Arguments and slots
//!
//! As in the kernel: at most [`MAX_ARGS`] arguments; integers and pointers
//! take one slot, structs passed by value (at most 16 bytes, integer
//! fields only) take `size / 8` rounded up; at most [`MAX_ARGS`] slots in
//! all. Narrow integers are zero- or sign-extended into their slot as
//! their type says; the unused high bytes of a struct's last slot are
//! zero. Struct arguments follow the platform ABI (System V x86-64: in two
//! registers if two are left, else wholly on the stack while later
//! arguments still use registers; AAPCS64: likewise, but no argument after
//! a struct that went to the stack uses a register).
//!
//! # Lifetime
//!
//! An [`EntryPoint`] is reference counted. Its code lives in its own W^X
//! pages, which hold the address of the compiled program; the entry point
//! keeps that program (and the [`Code`]) alive, and the pages are unmapped
//! when the last clone is dropped. The host must not call the function
//! pointer after that.

use std::cell::RefCell;
use std::ffi::c_void;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use super::NullaryHelpers;

use cranelift_codegen::Context;
use cranelift_codegen::control::ControlPlane;
use cranelift_codegen::ir::condcodes::IntCC;
use cranelift_codegen::ir::types::{I8, I16, I32, I64};
use cranelift_codegen::ir::{
    AbiParam, Function, InstBuilder, MemFlagsData, Signature, StackSlotData, StackSlotKind, Type,
    UserFuncName, Value,
};
use cranelift_codegen::isa::TargetIsa;
use cranelift_frontend::{FunctionBuilder, FunctionBuilderContext};

use super::memory::ExecMemory;
use super::runtime::Shims;
use super::runtime::{STATUS_OK, state_offsets};
use super::translate::{InlineEntry, Translator, bpf_signature};
use super::{Engine, JitError, JitOptions, JitProgram, Target, build_isa, host_isa};
use crate::code::{Code, Inst};
use crate::env::{Env, NoEnv};
use crate::error::VmError;
use crate::interp::Interpreter;
use crate::memory::{MAX_CALL_FRAMES, STACK_SIZE};

/// Most arguments, and most context slots, a member may have (the
/// kernel's `MAX_BPF_FUNC_ARGS`).
pub const MAX_ARGS: usize = 12;

/// Largest struct passed by value (as `btf_distill_func_proto` allows).
pub const MAX_STRUCT_ARG_SIZE: u8 = 16;

/// One argument of a member's native signature.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ArgKind {
    /// `u8` (and `bool`): zero-extended into its slot.
    U8,
    /// `u16`: zero-extended.
    U16,
    /// `u32`: zero-extended.
    U32,
    /// `u64`.
    U64,
    /// `s8`: sign-extended into its slot.
    I8,
    /// `s16`: sign-extended.
    I16,
    /// `s32` (and enums with negative values): sign-extended.
    I32,
    /// `s64`.
    I64,
    /// Any pointer.
    Ptr,
    /// A struct or union of `size` bytes (1 to 16) passed by value; its
    /// fields must be integers (the integer register class).
    Struct {
        /// Size in bytes.
        size: u8,
    },
}

impl ArgKind {
    /// Context slots (`u64`s) the argument fills.
    pub fn slots(self) -> usize {
        match self {
            ArgKind::Struct { size } => usize::from(size).div_ceil(8),
            _ => 1,
        }
    }

    /// The slot values of a native argument given as its bytes in
    /// little-endian order (`raw`; integers in the low bytes), as an
    /// entry point stores them.
    pub fn slot_values(self, raw: u128) -> [u64; 2] {
        let lo = raw as u64;
        let hi = (raw >> 64) as u64;
        match self {
            ArgKind::U8 => [u64::from(lo as u8), 0],
            ArgKind::U16 => [u64::from(lo as u16), 0],
            ArgKind::U32 => [u64::from(lo as u32), 0],
            ArgKind::I8 => [lo as i8 as i64 as u64, 0],
            ArgKind::I16 => [lo as i16 as i64 as u64, 0],
            ArgKind::I32 => [lo as i32 as i64 as u64, 0],
            ArgKind::U64 | ArgKind::I64 | ArgKind::Ptr => [lo, 0],
            ArgKind::Struct { size } => {
                let mask = |bytes: u8| match bytes {
                    0 => 0,
                    1..=7 => (1u64 << (8 * bytes)) - 1,
                    _ => u64::MAX,
                };
                [lo & mask(size.min(8)), hi & mask(size.saturating_sub(8))]
            }
        }
    }
}

/// The return type of a member.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum RetKind {
    /// `void`: `r0` is dropped.
    Void,
    /// `u8` (and `bool`): the low byte of `r0`.
    U8,
    /// `u16`.
    U16,
    /// `u32`.
    U32,
    /// `u64`.
    U64,
    /// `s8`: the low byte of `r0`, sign-extended.
    I8,
    /// `s16`.
    I16,
    /// `s32` (`int`).
    I32,
    /// `s64`.
    I64,
    /// A pointer.
    Ptr,
}

impl RetKind {
    /// What the native function returns for `r0`, widened to 64 bits as
    /// the return type's signedness says (0 for `void`).
    pub fn from_r0(self, r0: u64) -> u64 {
        match self {
            RetKind::Void => 0,
            RetKind::U8 => u64::from(r0 as u8),
            RetKind::U16 => u64::from(r0 as u16),
            RetKind::U32 => u64::from(r0 as u32),
            RetKind::I8 => r0 as i8 as i64 as u64,
            RetKind::I16 => r0 as i16 as i64 as u64,
            RetKind::I32 => r0 as i32 as i64 as u64,
            RetKind::U64 | RetKind::I64 | RetKind::Ptr => r0,
        }
    }
}

/// A member's native signature, as the kernel's `btf_func_model`
/// describes it: what the entry point receives and how it fills the
/// context array.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct FuncModel {
    /// The arguments in order.
    pub args: Vec<ArgKind>,
    /// The return type.
    pub ret: RetKind,
}

impl FuncModel {
    /// A model, checked as [`FuncModel::validate`] does.
    ///
    /// # Errors
    ///
    /// [`JitError::FuncModel`] when the kernel would refuse the signature.
    pub fn new(args: Vec<ArgKind>, ret: RetKind) -> Result<FuncModel, JitError> {
        let model = FuncModel { args, ret };
        model.validate()?;
        Ok(model)
    }

    /// Checks the limits `btf_distill_func_proto` and the x86-64
    /// trampoline impose: at most [`MAX_ARGS`] arguments and slots,
    /// structs of 1 to [`MAX_STRUCT_ARG_SIZE`] bytes.
    ///
    /// # Errors
    ///
    /// [`JitError::FuncModel`] naming the limit.
    pub fn validate(&self) -> Result<(), JitError> {
        if self.args.len() > MAX_ARGS {
            return Err(JitError::FuncModel {
                reason: "more than 12 arguments",
            });
        }
        for arg in &self.args {
            if let ArgKind::Struct { size } = *arg
                && !(1..=MAX_STRUCT_ARG_SIZE).contains(&size)
            {
                return Err(JitError::FuncModel {
                    reason: "a struct argument of 0 or more than 16 bytes",
                });
            }
        }
        if self.slots() > MAX_ARGS {
            return Err(JitError::FuncModel {
                reason: "arguments filling more than 12 context slots",
            });
        }
        Ok(())
    }

    /// Context slots of all arguments.
    pub fn slots(&self) -> usize {
        self.args.iter().map(|a| a.slots()).sum()
    }

    /// The context array an entry point builds for native arguments given
    /// as raw little-endian bytes (see [`ArgKind::slot_values`]); for
    /// running the same call through an interpreter.
    pub fn context(&self, raw_args: &[u128]) -> Vec<u64> {
        let mut ctx = Vec::with_capacity(self.slots());
        for (kind, &raw) in self.args.iter().zip(raw_args) {
            let values = kind.slot_values(raw);
            ctx.extend_from_slice(&values[..kind.slots()]);
        }
        ctx
    }
}

/// Lends the environment a program runs with when a call of an entry
/// point goes through the runtime (see the
/// [JIT module docs](crate::jit#entry-points)).
pub trait EntryEnv: Send + Sync {
    /// Calls `run` with the environment for one call.
    ///
    /// # Errors
    ///
    /// Whatever `run` returns.
    fn with_env(
        &self,
        run: &mut dyn FnMut(&mut dyn Env) -> Result<u64, VmError>,
    ) -> Result<u64, VmError>;
}

impl EntryEnv for NoEnv {
    fn with_env(
        &self,
        run: &mut dyn FnMut(&mut dyn Env) -> Result<u64, VmError>,
    ) -> Result<u64, VmError> {
        run(&mut NoEnv)
    }
}

/// What the code of an entry point refers to by address.
struct EntryData {
    code: Code,
    /// The compiled program when the engine is the JIT.
    prog: Option<JitProgram>,
    env: Arc<dyn EntryEnv>,
    faults: AtomicU64,
}

struct EntryInner {
    /// Declared first: the code goes before what it refers to.
    mem: ExecMemory,
    data: Box<EntryData>,
    model: FuncModel,
    direct: bool,
    inline: bool,
}

/// A native function with a member's signature that runs a program. Cheap
/// to clone; the code is unmapped with the last clone. See the
/// [JIT module docs](crate::jit#entry-points).
///
/// ```
/// use std::sync::Arc;
/// use structops_vm::{ArgKind, Code, Engine, EntryPoint, FuncModel, NoEnv, RetKind};
///
/// // int scaled_sum(int a, unsigned short b) { return a + 2 * b; }
/// let prog = structops_isa::assemble(
///     "
///     r0 = *(u64 *)(r1 +0)     ; a, sign-extended into its slot
///     r2 = *(u64 *)(r1 +8)     ; b, zero-extended
///     r2 <<= 1
///     r0 += r2
///     exit
///     ",
/// )?;
/// let code = Code::new(&prog);
/// let model = FuncModel::new(vec![ArgKind::I32, ArgKind::U16], RetKind::I32)?;
/// for engine in [Engine::Jit, Engine::Interp] {
///     let entry = EntryPoint::new(&code, &model, engine, Arc::new(NoEnv))?;
///     // SAFETY: the model is `int (int, unsigned short)`; the program reads only its
///     // two context slots, and `entry` outlives the calls.
///     let f: unsafe extern "C" fn(i32, u16) -> i32 = unsafe { std::mem::transmute(entry.as_ptr()) };
///     // SAFETY: as above.
///     assert_eq!(unsafe { f(-10, 3) }, -4);
///     assert_eq!(unsafe { f(5, u16::MAX) }, 5 + 2 * 65535);
///     assert_eq!(entry.faults(), 0);
/// }
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Clone)]
pub struct EntryPoint {
    inner: Arc<EntryInner>,
}

impl std::fmt::Debug for EntryPoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EntryPoint")
            .field("model", &self.inner.model)
            .field("direct", &self.inner.direct)
            .field("addr", &self.inner.mem.addr())
            .finish_non_exhaustive()
    }
}

/// Whether the program calls into its environment at run time (helpers
/// compiled as direct native calls, `nullary`, do not count).
fn needs_env(code: &Code, nullary: Option<&NullaryHelpers>) -> bool {
    code.inner().insts.iter().any(|inst| {
        if let Inst::Helper { id } = inst {
            return !nullary.is_some_and(|n| n.covers(*id));
        }
        matches!(
            inst,
            Inst::TailCall
                | Inst::Kfunc { .. }
                | Inst::LdFunc { .. }
                | Inst::LdImm64Env { .. }
                | Inst::LdAbs { .. }
                | Inst::LdInd { .. }
                | Inst::ProbeLoad { .. }
        )
    })
}

impl EntryPoint {
    /// An entry point with signature `model` running `code` on `engine`
    /// (the JIT compiles with default options through [`Code::jit`]).
    ///
    /// # Errors
    ///
    /// [`JitError::FuncModel`] for a model the kernel refuses; a
    /// [`JitError`] when the host has no code generator or compilation
    /// fails.
    pub fn new(
        code: &Code,
        model: &FuncModel,
        engine: Engine,
        env: Arc<dyn EntryEnv>,
    ) -> Result<EntryPoint, JitError> {
        let prog = match engine {
            Engine::Jit => Some(code.jit()?.clone()),
            Engine::Interp => None,
        };
        EntryPoint::build(code, prog, model, env)
    }

    /// An entry point running `prog`, which must have been compiled from
    /// `code` (for programs compiled with non-default options).
    ///
    /// # Errors
    ///
    /// As for [`EntryPoint::new`]; [`JitError::WrongCode`] when `prog`
    /// was compiled from other code.
    pub fn with_program(
        code: &Code,
        prog: &JitProgram,
        model: &FuncModel,
        env: Arc<dyn EntryEnv>,
    ) -> Result<EntryPoint, JitError> {
        if !prog.compiled_from(code) {
            return Err(JitError::WrongCode);
        }
        EntryPoint::build(code, Some(prog.clone()), model, env)
    }

    fn build(
        code: &Code,
        prog: Option<JitProgram>,
        model: &FuncModel,
        env: Arc<dyn EntryEnv>,
    ) -> Result<EntryPoint, JitError> {
        model.validate()?;
        let isa = host_isa()?;
        let data = Box::new(EntryData {
            code: code.clone(),
            prog,
            env,
            faults: AtomicU64::new(0),
        });
        let data_addr = std::ptr::from_ref::<EntryData>(&data).expose_provenance() as u64;
        let direct = match &data.prog {
            Some(p) if !needs_env(code, p.options().nullary_helpers.as_ref()) => {
                p.entry().map(|f| {
                    (
                        f as usize as u64,
                        p.function_count().clamp(1, MAX_CALL_FRAMES),
                    )
                })
            }
            _ => None,
        };
        let call = match direct {
            Some((addr, frames)) => Callee::Direct {
                addr,
                frames,
                fault: shim_direct_fault as ShimFn as usize as u64,
            },
            None => Callee::Runtime {
                shim: shim_run as ShimFn as usize as u64,
            },
        };
        let target = Target::host().ok_or(JitError::UnsupportedTarget {
            reason: "no code generator for this architecture",
        })?;
        // A single BPF function that needs nothing from its environment is
        // compiled into the entry point itself.
        let inline = match (&data.prog, direct) {
            (Some(p), Some(_)) if p.function_count() == 1 && !p.captures_registers() => {
                Some(*p.options())
            }
            _ => None,
        };
        let bytes = match inline {
            Some(options) => emit_inline_entry(isa, target, model, code, &options, data_addr)?,
            None => emit_entry(isa, target, model, call, data_addr)?,
        };
        let mem = ExecMemory::new(&bytes, |_, _| Ok(()))?;
        Ok(EntryPoint {
            inner: Arc::new(EntryInner {
                mem,
                data,
                model: model.clone(),
                direct: direct.is_some(),
                inline: inline.is_some(),
            }),
        })
    }

    /// The native function. Transmute it to the `unsafe extern "C" fn`
    /// type of the model; calling it runs the program unchecked (the
    /// program must be verified, and the arguments valid for it), and
    /// only while a clone of this entry point is alive.
    pub fn as_ptr(&self) -> *const c_void {
        std::ptr::with_exposed_provenance(self.inner.mem.addr() as usize)
    }

    /// The signature.
    pub fn model(&self) -> &FuncModel {
        &self.inner.model
    }

    /// Whether calls go straight into JIT code (see the
    /// [JIT module docs](crate::jit#entry-points)).
    pub fn is_direct(&self) -> bool {
        self.inner.direct
    }

    /// Whether the program is compiled into the entry point itself (a
    /// direct program of a single BPF function): no call between the two.
    pub fn is_inline(&self) -> bool {
        self.inner.inline
    }

    /// Calls that failed at run time and returned 0.
    pub fn faults(&self) -> u64 {
        self.inner.data.faults.load(Ordering::Relaxed)
    }

    /// The machine code of the entry point itself.
    pub fn machine_code(&self) -> &[u8] {
        self.inner.mem.bytes()
    }

    /// Bytes of memory the entry point's own code occupies: its machine code rounded
    /// up to whole pages (each entry point is a mapping of its own). The compiled
    /// program it calls, if any, is not included.
    pub fn mapped_size(&self) -> usize {
        self.inner.mem.mapped_len()
    }
}

/// `(data, ctx) -> r0`, the Rust functions entry points call.
type ShimFn = unsafe extern "C" fn(*const EntryData, *mut u64) -> u64;

/// What the generated code calls after filling the context.
#[derive(Clone, Copy, Debug)]
enum Callee {
    /// The compiled entry function at `addr`, with `frames` stack frames;
    /// `fault` is called when the run state reports an error.
    Direct {
        addr: u64,
        frames: usize,
        fault: u64,
    },
    /// A runtime shim.
    Runtime { shim: u64 },
}

thread_local! {
    static INTERPRETER: RefCell<Interpreter> = RefCell::new(Interpreter::new());
}

fn record_fault(data: &EntryData, what: &dyn std::fmt::Display) {
    data.faults.fetch_add(1, Ordering::Relaxed);
    log::warn!(target: "structops_vm::jit", "entry point call failed, returning 0: {what}");
}

/// Runs the program of `data` on `ctx` with a per-thread interpreter (a
/// fresh one when a helper re-enters).
unsafe extern "C" fn shim_run(data: *const EntryData, ctx: *mut u64) -> u64 {
    // SAFETY: `data` is the entry point's, alive while its code runs.
    let data = unsafe { &*data };
    let ctx = ctx.expose_provenance() as u64;
    let result = catch_unwind(AssertUnwindSafe(|| {
        data.env.with_env(&mut |env| {
            let run = |vm: &mut Interpreter, env: &mut dyn Env| {
                // SAFETY: the caller of the entry point promised a verified
                // program and valid arguments.
                unsafe {
                    match &data.prog {
                        Some(prog) => vm.run_compiled(prog, &data.code, env, ctx),
                        None => vm.run_unchecked(&data.code, env, ctx),
                    }
                }
            };
            INTERPRETER.with(|cell| match cell.try_borrow_mut() {
                Ok(mut vm) => run(&mut vm, env),
                Err(_) => run(&mut Interpreter::new(), env),
            })
        })
    }));
    match result {
        Ok(Ok(r0)) => r0,
        Ok(Err(e)) => {
            record_fault(data, &e);
            0
        }
        Err(_) => {
            record_fault(data, &"the environment panicked");
            0
        }
    }
}

/// Counts a failed direct call (the code only reaches shims that report
/// failures, which leave no error value behind in a direct run).
unsafe extern "C" fn shim_direct_fault(data: *const EntryData, _: *mut u64) -> u64 {
    // SAFETY: as for `shim_run`.
    let data = unsafe { &*data };
    record_fault(data, &"a run-time fault in JIT code");
    0
}

/// One native parameter of the generated function.
#[derive(Clone, Copy, Debug)]
enum Param {
    /// Slot `slot` of the context, of kind `kind` (`half` 1 is a struct's
    /// second eightbyte).
    Arg {
        kind: ArgKind,
        slot: usize,
        half: u8,
    },
    /// An unused register, so that what follows goes on the stack.
    Padding,
}

/// The native parameters of `model` on `target`, in the order the target's
/// calling convention assigns them when every parameter is an `i64` or
/// narrower: register arguments first, then stack arguments.
fn native_params(model: &FuncModel, target: Target) -> Vec<Param> {
    let regs = match target {
        Target::X86_64 => 6,
        Target::Aarch64 => 8,
    };
    let mut next = 0usize;
    let mut in_regs = Vec::new();
    let mut on_stack = Vec::new();
    let mut slot = 0usize;
    for &kind in &model.args {
        let n = kind.slots();
        let halves = (0..n as u8).map(|half| Param::Arg {
            kind,
            slot: slot + usize::from(half),
            half,
        });
        if next + n <= regs {
            in_regs.extend(halves);
            next += n;
        } else {
            on_stack.extend(halves);
            if target == Target::Aarch64 {
                // AAPCS64 C.13: nothing after this goes in registers.
                next = regs;
            }
        }
        slot += n;
    }
    if !on_stack.is_empty() {
        in_regs.resize(regs.max(in_regs.len()), Param::Padding);
    }
    in_regs.extend(on_stack);
    in_regs
}

fn arg_type(kind: ArgKind) -> Type {
    match kind {
        ArgKind::U8 | ArgKind::I8 => I8,
        ArgKind::U16 | ArgKind::I16 => I16,
        ArgKind::U32 | ArgKind::I32 => I32,
        _ => I64,
    }
}

fn ret_param(ret: RetKind) -> Option<AbiParam> {
    Some(match ret {
        RetKind::Void => return None,
        RetKind::U8 => AbiParam::new(I8).uext(),
        RetKind::U16 => AbiParam::new(I16).uext(),
        RetKind::U32 => AbiParam::new(I32).uext(),
        RetKind::I8 => AbiParam::new(I8).sext(),
        RetKind::I16 => AbiParam::new(I16).sext(),
        RetKind::I32 => AbiParam::new(I32).sext(),
        RetKind::U64 | RetKind::I64 | RetKind::Ptr => AbiParam::new(I64),
    })
}

/// The 64-bit slot value of native parameter `v`.
fn slot_value(b: &mut FunctionBuilder<'_>, kind: ArgKind, half: u8, v: Value) -> Value {
    match kind {
        ArgKind::U8 | ArgKind::U16 | ArgKind::U32 => b.ins().uextend(I64, v),
        ArgKind::I8 | ArgKind::I16 | ArgKind::I32 => b.ins().sextend(I64, v),
        ArgKind::U64 | ArgKind::I64 | ArgKind::Ptr => v,
        ArgKind::Struct { size } => {
            let bytes = if half == 0 {
                size.min(8)
            } else {
                size.saturating_sub(8)
            };
            if bytes >= 8 {
                v
            } else {
                let mask = (1i64 << (8 * bytes)) - 1;
                b.ins().band_imm_s(v, mask)
            }
        }
    }
}

/// Generates the entry point's machine code for `isa`.
fn emit_entry(
    isa: &dyn TargetIsa,
    target: Target,
    model: &FuncModel,
    callee: Callee,
    data_addr: u64,
) -> Result<Vec<u8>, JitError> {
    let params = native_params(model, target);
    let sig = native_signature(isa, model, &params);
    let mut func = Function::with_name_signature(UserFuncName::user(1, 0), sig);
    let mut fctx = FunctionBuilderContext::new();
    {
        let mut b = FunctionBuilder::new(&mut func, &mut fctx);
        let block = b.create_block();
        b.append_block_params_for_function_params(block);
        b.switch_to_block(block);
        let flags = MemFlagsData::trusted();
        let values = b.block_params(block).to_vec();
        let ctx = fill_context(&mut b, model, &params, &values);
        let data = b.ins().iconst(I64, data_addr as i64);
        let r0 = match callee {
            Callee::Direct {
                addr,
                frames,
                fault,
            } => {
                // The run state's leading fields, which are all the code
                // touches; `vm` null marks a direct run for the fault shim.
                let state_size = (state_offsets::VM + 8) as u32;
                let state_slot = b.create_sized_stack_slot(StackSlotData::new(
                    StackSlotKind::ExplicitSlot,
                    state_size,
                    4,
                ));
                let stack_slot = b.create_sized_stack_slot(StackSlotData::new(
                    StackSlotKind::ExplicitSlot,
                    (frames * STACK_SIZE) as u32,
                    4,
                ));
                let state = b.ins().stack_addr(I64, state_slot, 0);
                let stack = b.ins().stack_addr(I64, stack_slot, 0);
                let zero = b.ins().iconst(I64, 0);
                let top = b.ins().iadd_imm_s(stack, (frames * STACK_SIZE) as i64);
                b.ins().store(flags, zero, state, state_offsets::STATUS);
                b.ins().store(flags, top, state, state_offsets::STACK_TOP);
                b.ins().store(flags, zero, state, state_offsets::TAIL_PROG);
                b.ins().store(flags, zero, state, state_offsets::VM);
                let fp = b.ins().iadd_imm_s(stack, STACK_SIZE as i64);
                let bpf_sig = b.import_signature(bpf_signature(isa));
                let f = b.ins().iconst(I64, addr as i64);
                let call = b.ins().call_indirect(
                    bpf_sig,
                    f,
                    &[state, fp, zero, ctx, zero, zero, zero, zero],
                );
                let r0 = first_result(&b, call)?;
                let status = b.ins().load(I64, flags, state, state_offsets::STATUS);
                let failed = b
                    .ins()
                    .icmp_imm_s(IntCC::NotEqual, status, STATUS_OK as i64);
                let cold = b.create_block();
                let done = b.create_block();
                b.append_block_param(done, I64);
                b.set_cold_block(cold);
                b.ins().brif(failed, cold, &[], done, &[r0.into()]);
                b.switch_to_block(cold);
                let shim_sig = b.import_signature(shim_signature(isa));
                let fault = b.ins().iconst(I64, fault as i64);
                let call = b.ins().call_indirect(shim_sig, fault, &[data, ctx]);
                let z = first_result(&b, call)?;
                b.ins().jump(done, &[z.into()]);
                b.switch_to_block(done);
                b.block_params(done)[0]
            }
            Callee::Runtime { shim } => {
                let shim_sig = b.import_signature(shim_signature(isa));
                let f = b.ins().iconst(I64, shim as i64);
                let call = b.ins().call_indirect(shim_sig, f, &[data, ctx]);
                first_result(&b, call)?
            }
        };
        match ret_param(model.ret) {
            None => {
                b.ins().return_(&[]);
            }
            Some(p) if p.value_type == I64 => {
                b.ins().return_(&[r0]);
            }
            Some(p) => {
                let v = b.ins().ireduce(p.value_type, r0);
                b.ins().return_(&[v]);
            }
        }
        b.seal_all_blocks();
        b.finalize(isa.frontend_config());
    }
    log::trace!(target: "structops_vm::jit", "entry point {model:?}:\n{}", func.display());
    let mut ctx = Context::for_function(func);
    let compiled = ctx
        .compile(isa, &mut ControlPlane::default())
        .map_err(|e| JitError::Codegen {
            entry: 0,
            message: format!("entry point: {:?}", e.inner),
        })?;
    if !compiled.buffer.relocs().is_empty() {
        return Err(JitError::Relocation {
            kind: "a relocation in an entry point",
        });
    }
    Ok(compiled.code_buffer().to_vec())
}

/// The native signature of an entry point for `model` on `target`.
fn native_signature(isa: &dyn TargetIsa, model: &FuncModel, params: &[Param]) -> Signature {
    let mut sig = Signature::new(isa.default_call_conv());
    for p in params {
        sig.params.push(AbiParam::new(match *p {
            Param::Arg { kind, .. } => arg_type(kind),
            Param::Padding => I64,
        }));
    }
    sig.returns.extend(ret_param(model.ret));
    sig
}

/// Stores the native arguments `values` (one per entry of `params`) into a
/// new context array in the frame; returns its address.
fn fill_context(
    b: &mut FunctionBuilder<'_>,
    model: &FuncModel,
    params: &[Param],
    values: &[Value],
) -> Value {
    let flags = MemFlagsData::trusted();
    let ctx_size = (8 * model.slots()).max(8) as u32;
    let ctx_slot =
        b.create_sized_stack_slot(StackSlotData::new(StackSlotKind::ExplicitSlot, ctx_size, 3));
    let ctx = b.ins().stack_addr(I64, ctx_slot, 0);
    for (p, &v) in params.iter().zip(values) {
        if let Param::Arg { kind, slot, half } = *p {
            let word = slot_value(b, kind, half, v);
            b.ins().store(flags, word, ctx, (8 * slot) as i32);
        }
    }
    ctx
}

/// An entry point with the single-function program `code` compiled into
/// it (see [`Translator::compile_inline_entry`]).
fn emit_inline_entry(
    isa: &dyn TargetIsa,
    target: Target,
    model: &FuncModel,
    code: &Code,
    options: &JitOptions,
    data_addr: u64,
) -> Result<Vec<u8>, JitError> {
    let params = native_params(model, target);
    let sig = native_signature(isa, model, &params);
    let mut prologue =
        |b: &mut FunctionBuilder<'_>, values: &[Value]| fill_context(b, model, &params, values);
    let entry = InlineEntry {
        sig,
        prologue: &mut prologue,
        ret: ret_param(model.ret).map(|p| p.value_type),
        fault_shim: shim_direct_fault as ShimFn as usize as u64,
        data: data_addr,
    };
    Translator::new(isa).compile_inline_entry(code.inner(), &Shims::host(), options, entry)
}

/// The result of a call returning one value.
fn first_result(
    b: &FunctionBuilder<'_>,
    call: cranelift_codegen::ir::Inst,
) -> Result<Value, JitError> {
    b.inst_results(call)
        .first()
        .copied()
        .ok_or(JitError::Unsupported {
            what: "a call without a result in an entry point",
        })
}

/// `(data, ctx) -> u64`.
fn shim_signature(isa: &dyn TargetIsa) -> Signature {
    let mut sig = Signature::new(isa.default_call_conv());
    sig.params.push(AbiParam::new(I64));
    sig.params.push(AbiParam::new(I64));
    sig.returns.push(AbiParam::new(I64));
    sig
}

/// Machine code of an entry point for `model` on `target` that would call
/// a compiled program at a placeholder address; for tests and inspection
/// of targets that cannot run here.
///
/// # Errors
///
/// As for [`EntryPoint::new`].
pub fn emit_entry_machine_code(model: &FuncModel, target: Target) -> Result<Vec<u8>, JitError> {
    model.validate()?;
    let isa = build_isa(target)?;
    let callee = Callee::Direct {
        addr: 0x1000,
        frames: 1,
        fault: 0x2000,
    };
    emit_entry(&*isa, target, model, callee, 0x3000)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn arg_slots(params: &[Param]) -> Vec<Option<usize>> {
        params
            .iter()
            .map(|p| match p {
                Param::Arg { slot, .. } => Some(*slot),
                Param::Padding => None,
            })
            .collect()
    }

    #[test]
    fn struct_that_does_not_fit_goes_to_the_stack_and_later_args_use_registers_on_x86() {
        use ArgKind::*;
        let model = FuncModel::new(
            vec![U64, U64, U64, U64, U64, Struct { size: 16 }, U32],
            RetKind::I32,
        )
        .unwrap();
        let p = native_params(&model, Target::X86_64);
        // Registers: the five u64s and the u32 (slot 7); then the struct.
        assert_eq!(
            arg_slots(&p),
            vec![
                Some(0),
                Some(1),
                Some(2),
                Some(3),
                Some(4),
                Some(7),
                Some(5),
                Some(6)
            ]
        );
        let p = native_params(&model, Target::Aarch64);
        // Eight registers fit everything.
        assert_eq!(arg_slots(&p), (0..8).map(Some).collect::<Vec<_>>());
    }

    #[test]
    fn aarch64_sends_everything_after_a_spilled_struct_to_the_stack() {
        use ArgKind::*;
        let mut args = vec![U64; 7];
        args.push(Struct { size: 12 });
        args.push(U8);
        let model = FuncModel::new(args, RetKind::Void).unwrap();
        let p = native_params(&model, Target::Aarch64);
        let mut want: Vec<Option<usize>> = (0..7).map(Some).collect();
        want.push(None);
        want.extend([Some(7), Some(8), Some(9)]);
        assert_eq!(arg_slots(&p), want);
    }

    #[test]
    fn models_beyond_the_kernel_limits_are_refused() {
        use ArgKind::*;
        assert!(matches!(
            FuncModel::new(vec![U64; 13], RetKind::Void),
            Err(JitError::FuncModel { .. })
        ));
        assert!(matches!(
            FuncModel::new(vec![Struct { size: 17 }], RetKind::Void),
            Err(JitError::FuncModel { .. })
        ));
        assert!(matches!(
            FuncModel::new(vec![Struct { size: 0 }], RetKind::Void),
            Err(JitError::FuncModel { .. })
        ));
        let mut args = vec![U64; 11];
        args.push(Struct { size: 9 });
        assert!(matches!(
            FuncModel::new(args, RetKind::Void),
            Err(JitError::FuncModel { .. })
        ));
        assert!(FuncModel::new(vec![U64; 12], RetKind::U64).is_ok());
    }

    #[test]
    fn slot_values_extend_and_mask() {
        assert_eq!(ArgKind::I8.slot_values(0x80), [u64::MAX - 0x7f, 0]);
        assert_eq!(ArgKind::U8.slot_values(0x1ff), [0xff, 0]);
        assert_eq!(
            ArgKind::Struct { size: 12 }.slot_values(u128::MAX),
            [u64::MAX, 0xffff_ffff]
        );
        assert_eq!(
            ArgKind::Struct { size: 3 }.slot_values(u128::MAX),
            [0xff_ffff, 0]
        );
        assert_eq!(RetKind::I16.from_r0(0x1_8000), (-32768i64) as u64);
        assert_eq!(RetKind::U32.from_r0(u64::MAX), 0xffff_ffff);
    }

    #[test]
    fn entry_points_generate_for_both_targets() {
        use ArgKind::*;
        let models = [
            FuncModel::new(vec![], RetKind::Void).unwrap(),
            FuncModel::new(vec![Ptr, I32], RetKind::I32).unwrap(),
            FuncModel::new(
                vec![U8, I16, U32, I64, Ptr, U64, U64, U64, U64, I8, U16, I32],
                RetKind::I8,
            )
            .unwrap(),
            FuncModel::new(
                vec![
                    U64,
                    U64,
                    U64,
                    U64,
                    U64,
                    Struct { size: 16 },
                    U8,
                    Struct { size: 5 },
                ],
                RetKind::U16,
            )
            .unwrap(),
        ];
        for target in [Target::X86_64, Target::Aarch64] {
            for model in &models {
                let code = emit_entry_machine_code(model, target).unwrap();
                assert!(!code.is_empty(), "{target:?} {model:?}");
                if target == Target::Aarch64 {
                    // Fixed-width instructions.
                    assert_eq!(code.len() % 4, 0);
                }
            }
        }
    }
}
