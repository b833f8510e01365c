//! Translation of lowered [`Code`] into Cranelift IR, one Cranelift
//! function per BPF function.
//!
//! # Shape of the generated code
//!
//! Every BPF function (the entry at instruction 0 and every target of a
//! bpf-to-bpf call or a `BPF_PSEUDO_FUNC` load) becomes a native function
//!
//! ```text
//! fn(state: *mut JitState, fp: u64, prog: u64, r1, r2, r3, r4, r5) -> r0
//! ```
//!
//! in the target's default calling convention. `fp` is the frame pointer
//! (`r10`) of the function's 512-byte frame in the interpreter's stack,
//! `prog` the index of the running program among the programs of the run
//! (the entry program, then tail-call targets), which callback values
//! carry as the interpreter's do. A function consists of the instructions
//! reachable from its entry without following calls; a pre-pass makes
//! one block per jump target and per fall-through successor of a branch.
//! BPF registers are `Variable`s.
//!
//! Everything the interpreter's environment provides (helpers, kfuncs,
//! tail-call lookups, `LD_IMM64` resolution, packet loads, errors) is a
//! call into a Rust shim of [`super::runtime`]. Before such a call the
//! registers are spilled into the state so the shim (and the helper's
//! [`Caller`](crate::Caller)) sees them. A shim that fails sets
//! `state.status`; the code checks it after every shim call and every
//! call of a BPF function and returns at once, so an error unwinds the
//! native frames by ordinary returns. Nothing traps: division by zero,
//! `INT_MIN / -1`, misaligned atomics, call depth and malformed control
//! flow are all explicit branches.

use cranelift_codegen::Context;
use cranelift_codegen::control::ControlPlane;
use cranelift_codegen::ir::condcodes::IntCC;
use cranelift_codegen::ir::types::{I8, I16, I32, I64, I64X2};
use cranelift_codegen::ir::{
    AbiParam, AtomicRmwOp, Block, ExtFuncData, ExternalName, FuncRef, Function, InstBuilder,
    MemFlagsData, SigRef, Signature, StackSlotData, StackSlotKind, Type, UserExternalName,
    UserFuncName, Value,
};
use cranelift_codegen::isa::TargetIsa;
use cranelift_codegen::{FinalizedMachReloc, FinalizedRelocTarget};
use cranelift_frontend::{FunctionBuilder, FunctionBuilderContext, Variable};
use structops_isa::{AtomicOp, Width};

use super::runtime::{self, Shims, state_offsets};
use super::{JitError, JitOptions};
use crate::code::{CodeInner, InsnFacts, Inst};
use crate::interp::{BPF_MAX_LOOPS, CALLBACK_TAG};
use crate::memory::STACK_SIZE;

/// `BPF_FUNC_loop`, which the JIT may inline ([`FunctionTranslator::inline_loop`]).
const BPF_FUNC_LOOP: i32 = 181;

/// One compiled function: its entry instruction, machine code, and the
/// relocations (calls of other functions of the same program) to apply
/// once the functions are laid out.
pub(crate) struct CompiledFunction {
    /// Instruction index of the BPF function's first instruction.
    pub(crate) entry: u32,
    /// Machine code.
    pub(crate) code: Vec<u8>,
    /// Calls of other functions: `(offset in code, kind, target entry, addend)`.
    pub(crate) relocs: Vec<Relocation>,
    /// The final IR, when asked for.
    pub(crate) ir: Option<String>,
}

/// A relocation inside one function's code.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Relocation {
    pub(crate) offset: u32,
    pub(crate) kind: cranelift_codegen::binemit::Reloc,
    /// Entry instruction of the called function.
    pub(crate) target: u32,
    pub(crate) addend: i64,
}

/// Reusable translation state: the Cranelift context and the frontend's
/// builder context are kept across functions and programs.
pub(crate) struct Translator<'isa> {
    isa: &'isa dyn TargetIsa,
    ctx: Context,
    fctx: FunctionBuilderContext,
    ctrl: ControlPlane,
}

/// The instruction indices where BPF functions start: 0, then every call
/// and `BPF_PSEUDO_FUNC` target, ascending.
pub(crate) fn function_entries(code: &CodeInner) -> Vec<u32> {
    let mut entries = vec![0u32];
    for inst in code.insts.iter() {
        if let Inst::Call { t } | Inst::LdFunc { t, .. } = *inst {
            entries.push(t);
        }
    }
    entries.sort_unstable();
    entries.dedup();
    entries
}

/// The signature every BPF function gets.
pub(crate) fn bpf_signature(isa: &dyn TargetIsa) -> Signature {
    let mut sig = Signature::new(isa.default_call_conv());
    for _ in 0..8 {
        sig.params.push(AbiParam::new(I64));
    }
    sig.returns.push(AbiParam::new(I64));
    sig
}

/// The signature of every shim: `(state, pc, arg, prog, a, b) -> u64`.
fn shim_signature(isa: &dyn TargetIsa) -> Signature {
    let mut sig = Signature::new(isa.default_call_conv());
    for _ in 0..6 {
        sig.params.push(AbiParam::new(I64));
    }
    sig.returns.push(AbiParam::new(I64));
    sig
}

/// The successors of instruction `idx` inside its function (calls return
/// to `idx + 1`).
fn successors(inst: Inst, idx: usize) -> ([Option<usize>; 2], bool) {
    let next = Some(idx + 1);
    // (successors, whether the instruction branches conditionally)
    match inst {
        Inst::Exit | Inst::Trap { .. } => ([None, None], false),
        Inst::Ja { t } => ([Some(t as usize), None], false),
        Inst::MayGoto { t } => ([Some(t as usize), next], true),
        Inst::Jeq64X { t, .. }
        | Inst::Jne64X { t, .. }
        | Inst::Jgt64X { t, .. }
        | Inst::Jge64X { t, .. }
        | Inst::Jlt64X { t, .. }
        | Inst::Jle64X { t, .. }
        | Inst::Jsgt64X { t, .. }
        | Inst::Jsge64X { t, .. }
        | Inst::Jslt64X { t, .. }
        | Inst::Jsle64X { t, .. }
        | Inst::Jset64X { t, .. }
        | Inst::Jeq64K { t, .. }
        | Inst::Jne64K { t, .. }
        | Inst::Jgt64K { t, .. }
        | Inst::Jge64K { t, .. }
        | Inst::Jlt64K { t, .. }
        | Inst::Jle64K { t, .. }
        | Inst::Jsgt64K { t, .. }
        | Inst::Jsge64K { t, .. }
        | Inst::Jslt64K { t, .. }
        | Inst::Jsle64K { t, .. }
        | Inst::Jset64K { t, .. }
        | Inst::Jeq32X { t, .. }
        | Inst::Jne32X { t, .. }
        | Inst::Jgt32X { t, .. }
        | Inst::Jge32X { t, .. }
        | Inst::Jlt32X { t, .. }
        | Inst::Jle32X { t, .. }
        | Inst::Jsgt32X { t, .. }
        | Inst::Jsge32X { t, .. }
        | Inst::Jslt32X { t, .. }
        | Inst::Jsle32X { t, .. }
        | Inst::Jset32X { t, .. }
        | Inst::Jeq32K { t, .. }
        | Inst::Jne32K { t, .. }
        | Inst::Jgt32K { t, .. }
        | Inst::Jge32K { t, .. }
        | Inst::Jlt32K { t, .. }
        | Inst::Jle32K { t, .. }
        | Inst::Jsgt32K { t, .. }
        | Inst::Jsge32K { t, .. }
        | Inst::Jslt32K { t, .. }
        | Inst::Jsle32K { t, .. }
        | Inst::Jset32K { t, .. } => ([Some(t as usize), next], true),
        _ => ([next, None], false),
    }
}

/// Operand of a two-operand ALU or jump instruction.
#[derive(Clone, Copy)]
enum Operand {
    Reg(u8),
    Imm(u64),
}

/// The arithmetic families, so 64/32-bit and register/immediate forms
/// share one translation.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Alu {
    Add,
    Sub,
    Mul,
    Div,
    SDiv,
    Mod,
    SMod,
    Or,
    And,
    Xor,
    Lsh,
    Rsh,
    Arsh,
    Mov,
}

/// Decomposes an ALU instruction: (op, 64-bit?, dst, operand).
fn alu_parts(inst: Inst) -> Option<(Alu, bool, u8, Operand)> {
    use Operand::{Imm, Reg};
    let k32 = |k: u32| Imm(u64::from(k));
    Some(match inst {
        Inst::Add64X { d, s } => (Alu::Add, true, d, Reg(s)),
        Inst::Sub64X { d, s } => (Alu::Sub, true, d, Reg(s)),
        Inst::Mul64X { d, s } => (Alu::Mul, true, d, Reg(s)),
        Inst::Div64X { d, s } => (Alu::Div, true, d, Reg(s)),
        Inst::SDiv64X { d, s } => (Alu::SDiv, true, d, Reg(s)),
        Inst::Mod64X { d, s } => (Alu::Mod, true, d, Reg(s)),
        Inst::SMod64X { d, s } => (Alu::SMod, true, d, Reg(s)),
        Inst::Or64X { d, s } => (Alu::Or, true, d, Reg(s)),
        Inst::And64X { d, s } => (Alu::And, true, d, Reg(s)),
        Inst::Xor64X { d, s } => (Alu::Xor, true, d, Reg(s)),
        Inst::Lsh64X { d, s } => (Alu::Lsh, true, d, Reg(s)),
        Inst::Rsh64X { d, s } => (Alu::Rsh, true, d, Reg(s)),
        Inst::Arsh64X { d, s } => (Alu::Arsh, true, d, Reg(s)),
        Inst::Mov64X { d, s } => (Alu::Mov, true, d, Reg(s)),
        Inst::Add64K { d, k } => (Alu::Add, true, d, Imm(k)),
        Inst::Sub64K { d, k } => (Alu::Sub, true, d, Imm(k)),
        Inst::Mul64K { d, k } => (Alu::Mul, true, d, Imm(k)),
        Inst::Div64K { d, k } => (Alu::Div, true, d, Imm(k)),
        Inst::SDiv64K { d, k } => (Alu::SDiv, true, d, Imm(k)),
        Inst::Mod64K { d, k } => (Alu::Mod, true, d, Imm(k)),
        Inst::SMod64K { d, k } => (Alu::SMod, true, d, Imm(k)),
        Inst::Or64K { d, k } => (Alu::Or, true, d, Imm(k)),
        Inst::And64K { d, k } => (Alu::And, true, d, Imm(k)),
        Inst::Xor64K { d, k } => (Alu::Xor, true, d, Imm(k)),
        Inst::Lsh64K { d, k } => (Alu::Lsh, true, d, Imm(k)),
        Inst::Rsh64K { d, k } => (Alu::Rsh, true, d, Imm(k)),
        Inst::Arsh64K { d, k } => (Alu::Arsh, true, d, Imm(k)),
        Inst::Mov64K { d, k } => (Alu::Mov, true, d, Imm(k)),
        Inst::Add32X { d, s } => (Alu::Add, false, d, Reg(s)),
        Inst::Sub32X { d, s } => (Alu::Sub, false, d, Reg(s)),
        Inst::Mul32X { d, s } => (Alu::Mul, false, d, Reg(s)),
        Inst::Div32X { d, s } => (Alu::Div, false, d, Reg(s)),
        Inst::SDiv32X { d, s } => (Alu::SDiv, false, d, Reg(s)),
        Inst::Mod32X { d, s } => (Alu::Mod, false, d, Reg(s)),
        Inst::SMod32X { d, s } => (Alu::SMod, false, d, Reg(s)),
        Inst::Or32X { d, s } => (Alu::Or, false, d, Reg(s)),
        Inst::And32X { d, s } => (Alu::And, false, d, Reg(s)),
        Inst::Xor32X { d, s } => (Alu::Xor, false, d, Reg(s)),
        Inst::Lsh32X { d, s } => (Alu::Lsh, false, d, Reg(s)),
        Inst::Rsh32X { d, s } => (Alu::Rsh, false, d, Reg(s)),
        Inst::Arsh32X { d, s } => (Alu::Arsh, false, d, Reg(s)),
        Inst::Mov32X { d, s } => (Alu::Mov, false, d, Reg(s)),
        Inst::Add32K { d, k } => (Alu::Add, false, d, k32(k)),
        Inst::Sub32K { d, k } => (Alu::Sub, false, d, k32(k)),
        Inst::Mul32K { d, k } => (Alu::Mul, false, d, k32(k)),
        Inst::Div32K { d, k } => (Alu::Div, false, d, k32(k)),
        Inst::SDiv32K { d, k } => (Alu::SDiv, false, d, k32(k)),
        Inst::Mod32K { d, k } => (Alu::Mod, false, d, k32(k)),
        Inst::SMod32K { d, k } => (Alu::SMod, false, d, k32(k)),
        Inst::Or32K { d, k } => (Alu::Or, false, d, k32(k)),
        Inst::And32K { d, k } => (Alu::And, false, d, k32(k)),
        Inst::Xor32K { d, k } => (Alu::Xor, false, d, k32(k)),
        Inst::Lsh32K { d, k } => (Alu::Lsh, false, d, k32(k)),
        Inst::Rsh32K { d, k } => (Alu::Rsh, false, d, k32(k)),
        Inst::Arsh32K { d, k } => (Alu::Arsh, false, d, k32(k)),
        Inst::Mov32K { d, k } => (Alu::Mov, false, d, k32(k)),
        _ => return None,
    })
}

/// Conditions of jumps; `Set` is `dst & src != 0`.
#[derive(Clone, Copy)]
enum Cond {
    Cc(IntCC),
    Set,
}

/// Decomposes a conditional jump: (condition, 64-bit?, dst, operand, target).
fn jump_parts(inst: Inst) -> Option<(Cond, bool, u8, Operand, u32)> {
    use IntCC::*;
    use Operand::{Imm, Reg};
    let c = Cond::Cc;
    let k32 = |k: u32| Imm(u64::from(k));
    Some(match inst {
        Inst::Jeq64X { d, s, t } => (c(Equal), true, d, Reg(s), t),
        Inst::Jne64X { d, s, t } => (c(NotEqual), true, d, Reg(s), t),
        Inst::Jgt64X { d, s, t } => (c(UnsignedGreaterThan), true, d, Reg(s), t),
        Inst::Jge64X { d, s, t } => (c(UnsignedGreaterThanOrEqual), true, d, Reg(s), t),
        Inst::Jlt64X { d, s, t } => (c(UnsignedLessThan), true, d, Reg(s), t),
        Inst::Jle64X { d, s, t } => (c(UnsignedLessThanOrEqual), true, d, Reg(s), t),
        Inst::Jsgt64X { d, s, t } => (c(SignedGreaterThan), true, d, Reg(s), t),
        Inst::Jsge64X { d, s, t } => (c(SignedGreaterThanOrEqual), true, d, Reg(s), t),
        Inst::Jslt64X { d, s, t } => (c(SignedLessThan), true, d, Reg(s), t),
        Inst::Jsle64X { d, s, t } => (c(SignedLessThanOrEqual), true, d, Reg(s), t),
        Inst::Jset64X { d, s, t } => (Cond::Set, true, d, Reg(s), t),
        Inst::Jeq64K { d, k, t } => (c(Equal), true, d, Imm(k), t),
        Inst::Jne64K { d, k, t } => (c(NotEqual), true, d, Imm(k), t),
        Inst::Jgt64K { d, k, t } => (c(UnsignedGreaterThan), true, d, Imm(k), t),
        Inst::Jge64K { d, k, t } => (c(UnsignedGreaterThanOrEqual), true, d, Imm(k), t),
        Inst::Jlt64K { d, k, t } => (c(UnsignedLessThan), true, d, Imm(k), t),
        Inst::Jle64K { d, k, t } => (c(UnsignedLessThanOrEqual), true, d, Imm(k), t),
        Inst::Jsgt64K { d, k, t } => (c(SignedGreaterThan), true, d, Imm(k), t),
        Inst::Jsge64K { d, k, t } => (c(SignedGreaterThanOrEqual), true, d, Imm(k), t),
        Inst::Jslt64K { d, k, t } => (c(SignedLessThan), true, d, Imm(k), t),
        Inst::Jsle64K { d, k, t } => (c(SignedLessThanOrEqual), true, d, Imm(k), t),
        Inst::Jset64K { d, k, t } => (Cond::Set, true, d, Imm(k), t),
        Inst::Jeq32X { d, s, t } => (c(Equal), false, d, Reg(s), t),
        Inst::Jne32X { d, s, t } => (c(NotEqual), false, d, Reg(s), t),
        Inst::Jgt32X { d, s, t } => (c(UnsignedGreaterThan), false, d, Reg(s), t),
        Inst::Jge32X { d, s, t } => (c(UnsignedGreaterThanOrEqual), false, d, Reg(s), t),
        Inst::Jlt32X { d, s, t } => (c(UnsignedLessThan), false, d, Reg(s), t),
        Inst::Jle32X { d, s, t } => (c(UnsignedLessThanOrEqual), false, d, Reg(s), t),
        Inst::Jsgt32X { d, s, t } => (c(SignedGreaterThan), false, d, Reg(s), t),
        Inst::Jsge32X { d, s, t } => (c(SignedGreaterThanOrEqual), false, d, Reg(s), t),
        Inst::Jslt32X { d, s, t } => (c(SignedLessThan), false, d, Reg(s), t),
        Inst::Jsle32X { d, s, t } => (c(SignedLessThanOrEqual), false, d, Reg(s), t),
        Inst::Jset32X { d, s, t } => (Cond::Set, false, d, Reg(s), t),
        Inst::Jeq32K { d, k, t } => (c(Equal), false, d, k32(k), t),
        Inst::Jne32K { d, k, t } => (c(NotEqual), false, d, k32(k), t),
        Inst::Jgt32K { d, k, t } => (c(UnsignedGreaterThan), false, d, k32(k), t),
        Inst::Jge32K { d, k, t } => (c(UnsignedGreaterThanOrEqual), false, d, k32(k), t),
        Inst::Jlt32K { d, k, t } => (c(UnsignedLessThan), false, d, k32(k), t),
        Inst::Jle32K { d, k, t } => (c(UnsignedLessThanOrEqual), false, d, k32(k), t),
        Inst::Jsgt32K { d, k, t } => (c(SignedGreaterThan), false, d, k32(k), t),
        Inst::Jsge32K { d, k, t } => (c(SignedGreaterThanOrEqual), false, d, k32(k), t),
        Inst::Jslt32K { d, k, t } => (c(SignedLessThan), false, d, k32(k), t),
        Inst::Jsle32K { d, k, t } => (c(SignedLessThanOrEqual), false, d, k32(k), t),
        Inst::Jset32K { d, k, t } => (Cond::Set, false, d, k32(k), t),
        _ => return None,
    })
}

/// The process's constant-blinding key (see [`JitOptions::blind_constants`]):
/// random, drawn on first use from the standard library's per-process
/// random hash keys, and never in code, only in this static.
fn blind_key() -> &'static u64 {
    static KEY: std::sync::OnceLock<u64> = std::sync::OnceLock::new();
    KEY.get_or_init(|| {
        use std::hash::{BuildHasher, Hasher};
        let mut h = std::collections::hash_map::RandomState::new().build_hasher();
        h.write_u64(std::process::id().into());
        // Never 0, so blinding always changes the constant.
        h.finish() | 1
    })
}

/// A constant of type `ty` (I32 or I64) holding the low bits of `v`;
/// Cranelift wants narrow constants zero-extended.
fn konst(builder: &mut FunctionBuilder<'_>, ty: Type, v: u64) -> Value {
    let v = if ty == I32 { v & 0xffff_ffff } else { v };
    builder.ins().iconst(ty, v as i64)
}

/// Memory flags of program loads and stores: the verifier proved them
/// valid, so they cannot trap; they may be misaligned.
fn mem() -> MemFlagsData {
    MemFlagsData::new().with_notrap()
}

/// Memory flags of atomics, which are aligned (checked before).
fn atomic_mem() -> MemFlagsData {
    MemFlagsData::trusted()
}

impl<'isa> Translator<'isa> {
    /// A translator for `isa`.
    pub(crate) fn new(isa: &'isa dyn TargetIsa) -> Translator<'isa> {
        Translator {
            isa,
            ctx: Context::new(),
            fctx: FunctionBuilderContext::new(),
            ctrl: ControlPlane::default(),
        }
    }

    /// Translates and compiles the BPF function starting at instruction
    /// `entry` of `code`.
    pub(crate) fn compile_function(
        &mut self,
        code: &CodeInner,
        entry: u32,
        shims: &Shims,
        options: &JitOptions,
    ) -> Result<CompiledFunction, JitError> {
        self.ctx.clear();
        self.ctx.func =
            Function::with_name_signature(UserFuncName::user(0, entry), bpf_signature(self.isa));
        {
            let builder = FunctionBuilder::new(&mut self.ctx.func, &mut self.fctx);
            let mut fx = FunctionTranslator::new(builder, code, self.isa, shims, options);
            fx.translate(entry as usize)?;
            fx.builder.seal_all_blocks();
            fx.builder.finalize(self.isa.frontend_config());
        }
        let ir = if options.keep_ir
            || log::log_enabled!(target: "structops_vm::jit", log::Level::Trace)
        {
            let text = self.ctx.func.display().to_string();
            log::trace!(target: "structops_vm::jit", "function at insn {entry}:\n{text}");
            options.keep_ir.then_some(text)
        } else {
            None
        };
        let (code, raw_relocs) = {
            let compiled =
                self.ctx
                    .compile(self.isa, &mut self.ctrl)
                    .map_err(|e| JitError::Codegen {
                        entry,
                        message: format!("{:?}", e.inner),
                    })?;
            (
                compiled.code_buffer().to_vec(),
                compiled.buffer.relocs().to_vec(),
            )
        };
        let relocs = raw_relocs
            .iter()
            .map(|r| relocation(r, &self.ctx.func))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(CompiledFunction {
            entry,
            code,
            relocs,
            ir,
        })
    }
}

/// An entry point with the program compiled into it (see
/// [`Translator::compile_inline_entry`]).
pub(crate) struct InlineEntry<'p> {
    /// The entry point's native signature.
    pub(crate) sig: Signature,
    /// Emits, in the entry block whose parameters are the native
    /// arguments, the code that fills the context array; returns its
    /// address (`r1`).
    pub(crate) prologue: &'p mut dyn FnMut(&mut FunctionBuilder<'_>, &[Value]) -> Value,
    /// The native return type (`None`: `void`); `r0` is truncated to it.
    pub(crate) ret: Option<Type>,
    /// `(data, ctx) -> u64`, called when the program fails at run time;
    /// the entry point then returns 0.
    pub(crate) fault_shim: u64,
    /// The shim's first argument.
    pub(crate) data: u64,
}

/// How a translated function ends: as a BPF function returning `r0`, or
/// as an entry point returning the member's native result.
#[derive(Clone, Copy)]
enum Exit {
    Function,
    Entry {
        ret: Option<Type>,
        fault_shim: u64,
        data: u64,
        ctx: Value,
    },
}

impl Translator<'_> {
    /// Compiles the single-function program `code`, which calls nothing in
    /// its environment, *into* an entry point: the native arguments are
    /// stored into the context array and the program's instructions follow
    /// in the same native function, its 512-byte frame in the entry's own
    /// stack frame, and `exit` returns the member's result. No run state,
    /// no call, no status check: the per-call cost of a direct native
    /// call plus the context stores.
    pub(crate) fn compile_inline_entry(
        &mut self,
        code: &CodeInner,
        shims: &Shims,
        options: &JitOptions,
        entry: InlineEntry<'_>,
    ) -> Result<Vec<u8>, JitError> {
        self.ctx.clear();
        self.ctx.func = Function::with_name_signature(UserFuncName::user(1, 0), entry.sig);
        {
            let mut builder = FunctionBuilder::new(&mut self.ctx.func, &mut self.fctx);
            let block = builder.create_block();
            builder.append_block_params_for_function_params(block);
            builder.switch_to_block(block);
            let params = builder.block_params(block).to_vec();
            let ctx = (entry.prologue)(&mut builder, &params);
            let frame = builder.create_sized_stack_slot(StackSlotData::new(
                StackSlotKind::ExplicitSlot,
                STACK_SIZE as u32,
                4,
            ));
            let fp = builder.ins().stack_addr(I64, frame, STACK_SIZE as i32);
            let zero = builder.ins().iconst(I64, 0);
            let exit = Exit::Entry {
                ret: entry.ret,
                fault_shim: entry.fault_shim,
                data: entry.data,
                ctx,
            };
            let start = Start {
                state: zero,
                fp,
                prog: zero,
                args: [ctx, zero, zero, zero, zero],
            };
            let mut fx = FunctionTranslator::with_start(
                builder, code, self.isa, shims, options, start, exit,
            );
            fx.translate(0)?;
            fx.builder.seal_all_blocks();
            fx.builder.finalize(self.isa.frontend_config());
        }
        if log::log_enabled!(target: "structops_vm::jit", log::Level::Trace) {
            log::trace!(
                target: "structops_vm::jit",
                "inline entry point:\n{}",
                self.ctx.func.display()
            );
        }
        let compiled =
            self.ctx
                .compile(self.isa, &mut self.ctrl)
                .map_err(|e| JitError::Codegen {
                    entry: 0,
                    message: format!("inline entry point: {:?}", e.inner),
                })?;
        if !compiled.buffer.relocs().is_empty() {
            return Err(JitError::Relocation {
                kind: "a relocation in an inline entry point",
            });
        }
        Ok(compiled.code_buffer().to_vec())
    }
}

/// The values a function starts with.
struct Start {
    state: Value,
    fp: Value,
    prog: Value,
    /// `r1` to `r5`.
    args: [Value; 5],
}

/// Turns a Cranelift relocation into ours: only calls of other BPF
/// functions of the program are expected.
fn relocation(r: &FinalizedMachReloc, func: &Function) -> Result<Relocation, JitError> {
    let FinalizedRelocTarget::ExternalName(ExternalName::User(name)) = &r.target else {
        return Err(JitError::Relocation {
            kind: "a relocation that is not a call of a BPF function",
        });
    };
    let Some(target) = func.params.user_named_funcs().get(*name) else {
        return Err(JitError::Relocation {
            kind: "a call of an undeclared function",
        });
    };
    Ok(Relocation {
        offset: r.offset,
        kind: r.kind,
        target: target.index,
        addend: r.addend,
    })
}

/// The state of translating one function.
struct FunctionTranslator<'a, 'b> {
    builder: FunctionBuilder<'a>,
    code: &'b CodeInner,
    isa: &'b dyn TargetIsa,
    shims: &'b Shims,
    options: &'b JitOptions,
    /// r0 to r10.
    regs: [Variable; 11],
    /// The function's `may_goto` budget.
    may_goto: Variable,
    /// Block of each instruction that starts one.
    blocks: Vec<Option<Block>>,
    /// Function parameters.
    state: Value,
    fp: Value,
    prog: Value,
    /// Returns 0 (the run is failing; `state.status` says why).
    fail_block: Block,
    bpf_sig: Option<SigRef>,
    shim_sig: Option<SigRef>,
    /// Imported BPF functions, by entry instruction.
    funcs: Vec<(u32, FuncRef)>,
    /// Whether the code reads `r10`: only then can it reach its frame,
    /// and only then is the frame zeroed.
    uses_frame: bool,
    /// How the function returns.
    exit: Exit,
    /// With [`JitOptions::blind_constants`]: the blinding key loaded from
    /// data memory at entry, and its value.
    blind: Option<(Value, u64)>,
}

impl<'a, 'b> FunctionTranslator<'a, 'b> {
    fn new(
        mut builder: FunctionBuilder<'a>,
        code: &'b CodeInner,
        isa: &'b dyn TargetIsa,
        shims: &'b Shims,
        options: &'b JitOptions,
    ) -> FunctionTranslator<'a, 'b> {
        let entry = builder.create_block();
        builder.append_block_params_for_function_params(entry);
        builder.switch_to_block(entry);
        let params = builder.block_params(entry).to_vec();
        let zero = builder.ins().iconst(I64, 0);
        // The signature has eight parameters: (state, fp, prog, r1..r5).
        let v = |i: usize| params.get(i).copied().unwrap_or(zero);
        let start = Start {
            state: v(0),
            fp: v(1),
            prog: v(2),
            args: [v(3), v(4), v(5), v(6), v(7)],
        };
        FunctionTranslator::with_start(builder, code, isa, shims, options, start, Exit::Function)
    }

    /// A translator continuing in the builder's current block, with the
    /// function's starting values already computed.
    fn with_start(
        mut builder: FunctionBuilder<'a>,
        code: &'b CodeInner,
        isa: &'b dyn TargetIsa,
        shims: &'b Shims,
        options: &'b JitOptions,
        start: Start,
        exit: Exit,
    ) -> FunctionTranslator<'a, 'b> {
        let regs = std::array::from_fn(|_| builder.declare_var(I64));
        let may_goto = builder.declare_var(I32);
        let fail_block = builder.create_block();
        builder.set_cold_block(fail_block);
        let mut fx = FunctionTranslator {
            builder,
            code,
            isa,
            shims,
            options,
            regs,
            may_goto,
            blocks: vec![None; code.insts.len()],
            state: start.state,
            fp: start.fp,
            prog: start.prog,
            fail_block,
            bpf_sig: None,
            shim_sig: None,
            funcs: Vec::new(),
            uses_frame: false,
            exit,
            blind: None,
        };
        if options.blind_constants {
            let key = blind_key();
            let addr = fx.iconst(std::ptr::from_ref(key).expose_provenance() as u64);
            let loaded =
                fx.builder
                    .ins()
                    .load(I64, MemFlagsData::trusted().with_readonly(), addr, 0);
            fx.blind = Some((loaded, *key));
        }
        let zero = fx.builder.ins().iconst(I64, 0);
        for (i, var) in regs.iter().enumerate() {
            let value = match i {
                1..=5 => start.args.get(i - 1).copied().unwrap_or(zero),
                10 => start.fp,
                _ => zero,
            };
            fx.builder.def_var(*var, value);
        }
        let budget = fx.builder.ins().iconst(I32, i64::from(BPF_MAX_LOOPS));
        fx.builder.def_var(may_goto, budget);
        fx
    }

    fn reg(&mut self, n: u8) -> Value {
        if n >= 10 {
            self.uses_frame = true;
        }
        let var = self.regs[usize::from(n).min(10)];
        self.builder.use_var(var)
    }

    fn set(&mut self, n: u8, v: Value) {
        let var = self.regs[usize::from(n).min(10)];
        self.builder.def_var(var, v);
    }

    fn iconst(&mut self, v: u64) -> Value {
        self.builder.ins().iconst(I64, v as i64)
    }

    /// An immediate of the program, of type `ty` (I32 or I64): a constant,
    /// or with constant blinding `(k ^ key) ^ loaded key`, which no
    /// optimization can fold back into `k` (the key is only known in
    /// memory).
    fn prog_const(&mut self, ty: Type, k: u64) -> Value {
        let Some((loaded, key)) = self.blind else {
            return konst(&mut self.builder, ty, k);
        };
        let c = konst(&mut self.builder, ty, k ^ key);
        let kv = if ty == I32 {
            self.builder.ins().ireduce(I32, loaded)
        } else {
            loaded
        };
        self.builder.ins().bxor(c, kv)
    }

    fn block(&mut self, idx: usize) -> Block {
        match self.blocks.get(idx).copied().flatten() {
            Some(b) => b,
            None => {
                let b = self.builder.create_block();
                if let Some(slot) = self.blocks.get_mut(idx) {
                    *slot = Some(b);
                }
                b
            }
        }
    }

    /// Zeroes the function's 512-byte frame, as the interpreter does on
    /// entry to every frame.
    /// With a verified `depth` ([`InsnFacts::frame_depth`]), only the bytes the
    /// function uses, rounded up to 16.
    fn zero_frame(&mut self, depth: Option<u16>) {
        let bytes = depth.map_or(STACK_SIZE, |d| {
            usize::from(d).next_multiple_of(16).min(STACK_SIZE)
        });
        if bytes == 0 {
            return;
        }
        let zero = self.builder.ins().iconst(I64, 0);
        let zero = self.builder.ins().splat(I64X2, zero);
        let base = self.builder.ins().iadd_imm_s(self.fp, -(bytes as i64));
        for i in 0..bytes / 16 {
            self.builder
                .ins()
                .store(mem(), zero, base, i32::try_from(i * 16).unwrap_or(0));
        }
    }

    /// Translates the function starting at instruction `start`.
    fn translate(&mut self, start: usize) -> Result<(), JitError> {
        let insts = &self.code.insts;
        let n = insts.len();
        // Reachability and block starts.
        let mut reachable = vec![false; n];
        let mut block_start = vec![false; n];
        let mut work = vec![start];
        if start < n {
            reachable[start] = true;
            block_start[start] = true;
        }
        while let Some(idx) = work.pop() {
            let Some(&inst) = insts.get(idx) else {
                continue;
            };
            let (succ, branches) = successors(inst, idx);
            let is_jump = matches!(inst, Inst::Ja { .. });
            for s in succ {
                let Some(s) = s else { continue };
                if s >= n {
                    // Cannot happen: lowering ends the instructions with
                    // traps. Treated as falling off the end.
                    continue;
                }
                // Targets of jumps and both successors of branches start
                // blocks; so does the fall-through of a tail call.
                if branches || is_jump || matches!(inst, Inst::TailCall) {
                    block_start[s] = true;
                }
                if !reachable[s] {
                    reachable[s] = true;
                    work.push(s);
                }
            }
        }
        // Zeroing the frame goes in a block filled last, once it is known
        // whether the function reads r10 at all: a function that never
        // does cannot reach its frame (callees get their own).
        let prologue = self.options.zero_stack.then(|| {
            let p = self.builder.create_block();
            self.builder.ins().jump(p, &[]);
            p
        });
        if start >= n {
            if let Some(p) = prologue {
                self.builder.switch_to_block(p);
            }
            self.fail(runtime::FAIL_FELL_OFF, self.code.slot_count as u64, 0, 0);
            return Ok(());
        }
        let first = self.block(start);
        if prologue.is_none() {
            self.builder.ins().jump(first, &[]);
        }
        let mut open = false;
        for idx in 0..n {
            if !reachable[idx] {
                continue;
            }
            if block_start[idx] || !open {
                let b = self.block(idx);
                if open {
                    self.builder.ins().jump(b, &[]);
                }
                self.builder.switch_to_block(b);
                open = true;
            }
            let Some(&inst) = insts.get(idx) else {
                continue;
            };
            open = self.instruction(inst, idx)?;
            if open && idx + 1 >= n {
                // Falls past the last instruction: unreachable (lowering
                // ends with traps), but never leave a block unterminated.
                self.fail(runtime::FAIL_FELL_OFF, self.code.slot_count as u64, 0, 0);
                open = false;
            }
        }
        if let Some(p) = prologue {
            self.builder.switch_to_block(p);
            if self.uses_frame {
                let depth = self.code.facts_of(start).frame_depth;
                self.zero_frame(depth);
            }
            self.builder.ins().jump(first, &[]);
        }
        // The shared failure exit.
        self.builder.switch_to_block(self.fail_block);
        self.return_failure();
        Ok(())
    }

    fn shim_sig(&mut self) -> SigRef {
        match self.shim_sig {
            Some(s) => s,
            None => {
                let s = self.builder.import_signature(shim_signature(self.isa));
                self.shim_sig = Some(s);
                s
            }
        }
    }

    fn bpf_sig(&mut self) -> SigRef {
        match self.bpf_sig {
            Some(s) => s,
            None => {
                let s = self.builder.import_signature(bpf_signature(self.isa));
                self.bpf_sig = Some(s);
                s
            }
        }
    }

    fn func_ref(&mut self, entry: u32) -> FuncRef {
        if let Some(&(_, f)) = self.funcs.iter().find(|(e, _)| *e == entry) {
            return f;
        }
        let sig = self.bpf_sig();
        let name = self
            .builder
            .func
            .declare_imported_user_function(UserExternalName::new(0, entry));
        let f = self.builder.import_function(ExtFuncData {
            name: ExternalName::user(name),
            signature: sig,
            colocated: true,
            patchable: false,
        });
        self.funcs.push((entry, f));
        f
    }

    /// Stores r0 to r10 into `state.regs` for a shim and its `Caller`.
    fn spill(&mut self) {
        for i in 0..11u8 {
            let v = self.reg(i);
            let off = state_offsets::REGS + 8 * i32::from(i);
            self.builder
                .ins()
                .store(MemFlagsData::trusted(), v, self.state, off);
        }
    }

    /// Calls shim `addr` with `(state, pc, arg, prog, a, b)`; returns its
    /// result.
    fn call_shim(&mut self, addr: u64, pc: u64, arg: u64, a: Value, b: Value) -> Value {
        let sig = self.shim_sig();
        let callee = self.iconst(addr);
        let pc = self.iconst(pc);
        let arg = self.iconst(arg);
        let args = [self.state, pc, arg, self.prog, a, b];
        let call = self.builder.ins().call_indirect(sig, callee, &args);
        match self.builder.inst_results(call).first() {
            Some(&v) => v,
            None => self.builder.ins().iconst(I64, 0),
        }
    }

    /// A call of the BPF function at instruction `t` (from the instruction at `idx`)
    /// with `args` in `r1` to `r5`, in a new frame: the call-depth check, the call, the
    /// status check. Returns the callee's `r0`.
    fn call_function(&mut self, idx: usize, t: u32, args: [Value; 5]) -> Value {
        let top = self.builder.ins().load(
            I64,
            MemFlagsData::trusted(),
            self.state,
            state_offsets::STACK_TOP,
        );
        let callee_fp = self.builder.ins().iadd_imm_s(self.fp, STACK_SIZE as i64);
        let too_deep = self
            .builder
            .ins()
            .icmp(IntCC::UnsignedGreaterThan, callee_fp, top);
        let deep = self.builder.create_block();
        let ok = self.builder.create_block();
        self.builder.set_cold_block(deep);
        self.builder.ins().brif(too_deep, deep, &[], ok, &[]);
        self.builder.switch_to_block(deep);
        let pc = self.slot(idx);
        self.fail(runtime::FAIL_CALL_DEPTH, pc, 0, 0);
        self.builder.switch_to_block(ok);
        let f = self.func_ref(t);
        let [a, b, c, d, e] = args;
        let call = self
            .builder
            .ins()
            .call(f, &[self.state, callee_fp, self.prog, a, b, c, d, e]);
        let r0 = match self.builder.inst_results(call).first() {
            Some(&v) => v,
            None => self.builder.ins().iconst(I64, 0),
        };
        self.check_status();
        r0
    }

    /// Helper `id` called through the helper shim (registers spilled first), then the
    /// status check. Returns `r0`.
    fn call_helper(&mut self, idx: usize, id: i32) -> Value {
        self.spill();
        let zero = self.iconst(0);
        let pc = self.slot(idx);
        let r0 = self.call_shim(self.shims.helper, pc, id as u32 as u64, zero, zero);
        self.check_status();
        r0
    }

    /// Whether the program loads any callback (`BPF_PSEUDO_FUNC`).
    fn has_callbacks(&self) -> bool {
        self.code
            .insts
            .iter()
            .any(|i| matches!(i, Inst::LdFunc { .. }))
    }

    /// `bpf_loop` (helper 181) as a native loop of direct calls into the callback,
    /// as the kernel's verifier inlines it (`inline_bpf_loop`), when the environment
    /// allows it for this run ([`crate::Env::inline_bpf_loop`]), the flags are 0, the
    /// count is within `BPF_MAX_LOOPS` and the callback is one of this program's;
    /// otherwise the helper call as usual, which also reports the errors. Same
    /// results: `i + 1` when the callback returns non-zero at `i`, else the count.
    fn inline_loop(&mut self, idx: usize) {
        let pc = self.slot(idx);
        let mut targets: Vec<u32> = self
            .code
            .insts
            .iter()
            .filter_map(|i| match *i {
                Inst::LdFunc { t, .. } => Some(t),
                _ => None,
            })
            .collect();
        targets.sort_unstable();
        targets.dedup();
        let (nr, cb, ctx, flags) = (self.reg(1), self.reg(2), self.reg(3), self.reg(4));
        let done = self.builder.create_block();
        self.builder.append_block_param(done, I64);
        let slow = self.builder.create_block();
        let zero = self.iconst(0);
        let allowed = self.call_shim(self.shims.inline_loop, pc, 0, zero, zero);
        self.check_status();
        let nr = self.builder.ins().ireduce(I32, nr);
        let nr = self.builder.ins().uextend(I64, nr);
        let small =
            self.builder
                .ins()
                .icmp_imm_s(IntCC::UnsignedLessThanOrEqual, nr, BPF_MAX_LOOPS as i64);
        let no_flags = self.builder.ins().icmp_imm_s(IntCC::Equal, flags, 0);
        let ok = self.builder.ins().icmp_imm_s(IntCC::NotEqual, allowed, 0);
        let go = self.builder.ins().band(small, no_flags);
        let go = self.builder.ins().band(go, ok);
        // The callback value this code's `LdFunc` of `t` makes is `tag | t`.
        let tag = self.builder.ins().band_imm_s(self.prog, 0xffff);
        let tag = self.builder.ins().ishl_imm_s(tag, 32);
        let tag = self.builder.ins().bor_imm_s(tag, CALLBACK_TAG as i64);
        let mut next = self.builder.create_block();
        self.builder.ins().brif(go, next, &[], slow, &[]);
        for (n, &t) in targets.iter().enumerate() {
            self.builder.switch_to_block(next);
            let want = self.builder.ins().bor_imm_s(tag, i64::from(t));
            let hit = self.builder.ins().icmp(IntCC::Equal, cb, want);
            let body = self.builder.create_block();
            next = if n + 1 == targets.len() {
                slow
            } else {
                self.builder.create_block()
            };
            self.builder.ins().brif(hit, body, &[], next, &[]);
            self.builder.switch_to_block(body);
            self.loop_calls(idx, t, nr, ctx, done);
        }
        self.builder.set_cold_block(slow);
        self.builder.switch_to_block(slow);
        let r0 = self.call_helper(idx, BPF_FUNC_LOOP);
        self.builder.ins().jump(done, &[r0.into()]);
        self.builder.switch_to_block(done);
        if let Some(&r0) = self.builder.block_params(done).first() {
            self.set(0, r0);
        }
    }

    /// The loop of [`FunctionTranslator::inline_loop`] for callback `t`: calls it with
    /// `(i, ctx)` for `i` in `0..nr`, then jumps to `done` with the result.
    fn loop_calls(&mut self, idx: usize, t: u32, nr: Value, ctx: Value, done: Block) {
        let header = self.builder.create_block();
        self.builder.append_block_param(header, I64);
        let zero = self.iconst(0);
        self.builder.ins().jump(header, &[zero.into()]);
        self.builder.switch_to_block(header);
        let i = match self.builder.block_params(header).first() {
            Some(&i) => i,
            None => zero,
        };
        let more = self.builder.ins().icmp(IntCC::UnsignedLessThan, i, nr);
        let call = self.builder.create_block();
        self.builder.ins().brif(more, call, &[], done, &[i.into()]);
        self.builder.switch_to_block(call);
        let zero = self.iconst(0);
        let r0 = self.call_function(idx, t, [i, ctx, zero, zero, zero]);
        let next = self.builder.ins().iadd_imm_s(i, 1);
        let stop = self.builder.ins().icmp_imm_s(IntCC::NotEqual, r0, 0);
        self.builder
            .ins()
            .brif(stop, done, &[next.into()], header, &[next.into()]);
    }

    /// Branches to the failure exit when `state.status` is set.
    fn check_status(&mut self) {
        let status = self.builder.ins().load(
            I64,
            MemFlagsData::trusted(),
            self.state,
            state_offsets::STATUS,
        );
        let ok = self.builder.create_block();
        self.builder
            .ins()
            .brif(status, self.fail_block, &[], ok, &[]);
        self.builder.switch_to_block(ok);
    }

    /// Reports failure `what` through the error shim and returns.
    fn fail(&mut self, what: u64, pc: u64, a: u64, b: u64) {
        let (a, b) = (self.iconst(a), self.iconst(b));
        self.fail_values(what, pc, a, b);
    }

    fn fail_values(&mut self, what: u64, pc: u64, a: Value, b: Value) {
        if let Exit::Entry { .. } = self.exit {
            // No run state to report into: the entry point's fault shim
            // counts the failure.
            self.builder.ins().jump(self.fail_block, &[]);
            return;
        }
        self.call_shim(self.shims.fail, pc, what, a, b);
        self.return_failure();
    }

    /// Returns after a failure: 0 from a BPF function (the state holds the
    /// error), or the fault shim's 0 from an entry point.
    fn return_failure(&mut self) {
        match self.exit {
            Exit::Function => {
                let zero = self.builder.ins().iconst(I64, 0);
                self.builder.ins().return_(&[zero]);
            }
            Exit::Entry {
                ret,
                fault_shim,
                data,
                ctx,
            } => {
                let mut sig = Signature::new(self.isa.default_call_conv());
                sig.params.push(AbiParam::new(I64));
                sig.params.push(AbiParam::new(I64));
                sig.returns.push(AbiParam::new(I64));
                let sig = self.builder.import_signature(sig);
                let f = self.iconst(fault_shim);
                let data = self.iconst(data);
                let call = self.builder.ins().call_indirect(sig, f, &[data, ctx]);
                let r0 = match self.builder.inst_results(call).first() {
                    Some(&v) => v,
                    None => self.builder.ins().iconst(I64, 0),
                };
                self.return_native(ret, r0);
            }
        }
    }

    /// An entry point's return of `r0` as the native type `ret`.
    fn return_native(&mut self, ret: Option<Type>, r0: Value) {
        match ret {
            None => {
                self.builder.ins().return_(&[]);
            }
            Some(t) if t == I64 => {
                self.builder.ins().return_(&[r0]);
            }
            Some(t) => {
                let v = self.builder.ins().ireduce(t, r0);
                self.builder.ins().return_(&[v]);
            }
        }
    }

    fn slot(&self, idx: usize) -> u64 {
        self.code.slot_of(idx) as u64
    }

    /// `reg(base) + off`.
    fn address(&mut self, base: u8, off: i16) -> Value {
        let b = self.reg(base);
        self.builder.ins().iadd_imm_s(b, i64::from(off))
    }

    /// Fails with a misaligned-atomic error unless `addr` is a multiple
    /// of `len`.
    fn check_aligned(&mut self, idx: usize, addr: Value, len: u64) {
        if len <= 1 {
            return;
        }
        let low = self.builder.ins().band_imm_s(addr, (len - 1) as i64);
        let bad = self.builder.create_block();
        let ok = self.builder.create_block();
        self.builder.set_cold_block(bad);
        self.builder.ins().brif(low, bad, &[], ok, &[]);
        self.builder.switch_to_block(bad);
        let len = self.iconst(len);
        let pc = self.slot(idx);
        self.fail_values(runtime::FAIL_MISALIGNED, pc, addr, len);
        self.builder.switch_to_block(ok);
    }

    /// Translates one instruction; returns whether control falls through
    /// to the next one.
    fn instruction(&mut self, inst: Inst, idx: usize) -> Result<bool, JitError> {
        if let Some((op, wide, d, src)) = alu_parts(inst) {
            let facts = self.code.facts_of(idx);
            self.alu(op, wide, d, src, facts);
            return Ok(true);
        }
        if let Some((cond, wide, d, src, t)) = jump_parts(inst) {
            self.cond_jump(cond, wide, d, src, t as usize, idx);
            return Ok(false);
        }
        let ins_ty = |w: Width| match w {
            Width::B => I8,
            Width::H => I16,
            Width::W => I32,
            Width::DW => I64,
        };
        match inst {
            Inst::Neg64 { d } => {
                let v = self.reg(d);
                let r = self.builder.ins().ineg(v);
                self.set(d, r);
            }
            Inst::Neg32 { d } => {
                let v = self.reg(d);
                let v = self.builder.ins().ireduce(I32, v);
                let r = self.builder.ins().ineg(v);
                let r = self.builder.ins().uextend(I64, r);
                self.set(d, r);
            }
            Inst::MovSx64 { d, s, from } => {
                let v = self.reg(s);
                let r = if from == Width::DW {
                    v
                } else {
                    let narrow = self.builder.ins().ireduce(ins_ty(from), v);
                    self.builder.ins().sextend(I64, narrow)
                };
                self.set(d, r);
            }
            Inst::MovSx32 { d, s, from } => {
                let v = self.reg(s);
                let r = match from {
                    Width::B | Width::H => {
                        let narrow = self.builder.ins().ireduce(ins_ty(from), v);
                        let wide = self.builder.ins().sextend(I32, narrow);
                        self.builder.ins().uextend(I64, wide)
                    }
                    Width::W | Width::DW => {
                        let narrow = self.builder.ins().ireduce(I32, v);
                        self.builder.ins().uextend(I64, narrow)
                    }
                };
                self.set(d, r);
            }
            Inst::Trunc16 { d } => {
                let v = self.reg(d);
                let r = self.builder.ins().band_imm_s(v, 0xffff);
                self.set(d, r);
            }
            Inst::Trunc32 { d } => {
                let v = self.reg(d);
                let narrow = self.builder.ins().ireduce(I32, v);
                let r = self.builder.ins().uextend(I64, narrow);
                self.set(d, r);
            }
            Inst::Swap16 { d } | Inst::Swap32 { d } => {
                let ty = if matches!(inst, Inst::Swap16 { .. }) {
                    I16
                } else {
                    I32
                };
                let v = self.reg(d);
                let narrow = self.builder.ins().ireduce(ty, v);
                let swapped = self.builder.ins().bswap(narrow);
                let r = self.builder.ins().uextend(I64, swapped);
                self.set(d, r);
            }
            Inst::Swap64 { d } => {
                let v = self.reg(d);
                let r = self.builder.ins().bswap(v);
                self.set(d, r);
            }
            Inst::Nop => {}
            Inst::Ja { t } => {
                let b = self.block(t as usize);
                self.builder.ins().jump(b, &[]);
                return Ok(false);
            }
            Inst::MayGoto { t } => {
                // While budget remains, spend one unit and fall through;
                // once it is spent, jump.
                let budget = self.builder.use_var(self.may_goto);
                let one = self.builder.ins().iconst(I32, 1);
                let one_less = self.builder.ins().isub(budget, one);
                let zero = self.builder.ins().iconst(I32, 0);
                let next = self.builder.ins().select(budget, one_less, zero);
                self.builder.def_var(self.may_goto, next);
                let (taken, fall) = (self.block(t as usize), self.block(idx + 1));
                self.builder.ins().brif(budget, fall, &[], taken, &[]);
                return Ok(false);
            }
            Inst::Call { t } => {
                let args = [1, 2, 3, 4, 5].map(|r| self.reg(r));
                let r0 = self.call_function(idx, t, args);
                self.set(0, r0);
            }
            Inst::Helper { id } if id == BPF_FUNC_LOOP && self.has_callbacks() => {
                self.inline_loop(idx);
            }
            Inst::Helper { id }
                if let Some(n) = self.options.nullary_helpers.filter(|n| n.covers(id)) =>
            {
                // A direct native call: no program state is read, none changes.
                let mut sig = Signature::new(self.isa.default_call_conv());
                sig.params.push(AbiParam::new(I64));
                sig.params.push(AbiParam::new(I64));
                sig.returns.push(AbiParam::new(I64));
                let sig = self.builder.import_signature(sig);
                let callee = self.iconst(n.func as usize as u64);
                let args = [self.iconst(id as u32 as u64), self.iconst(n.data)];
                let call = self.builder.ins().call_indirect(sig, callee, &args);
                let r0 = match self.builder.inst_results(call).first() {
                    Some(&v) => v,
                    None => self.builder.ins().iconst(I64, 0),
                };
                self.set(0, r0);
            }
            Inst::Helper { id } => {
                let r0 = self.call_helper(idx, id);
                self.set(0, r0);
            }
            Inst::Kfunc { btf_id, off } => {
                self.spill();
                let zero = self.iconst(0);
                let pc = self.slot(idx);
                let arg = u64::from(btf_id) | (u64::from(off as u16) << 32);
                let r0 = self.call_shim(self.shims.kfunc, pc, arg, zero, zero);
                self.set(0, r0);
                self.check_status();
            }
            Inst::TailCall => {
                self.spill();
                let zero = self.iconst(0);
                let pc = self.slot(idx);
                let target = self.call_shim(self.shims.tail_call, pc, 0, zero, zero);
                self.check_status();
                let go = self.builder.create_block();
                let fall = self.block(idx + 1);
                self.builder.ins().brif(target, go, &[], fall, &[]);
                self.builder.switch_to_block(go);
                // The target replaces this function: same frame (which it
                // zeroes), same arguments; its result is ours.
                let prog = self.builder.ins().load(
                    I64,
                    MemFlagsData::trusted(),
                    self.state,
                    state_offsets::TAIL_PROG,
                );
                let sig = self.bpf_sig();
                let mut args = vec![self.state, self.fp, prog];
                for r in 1..=5 {
                    args.push(self.reg(r));
                }
                let call = self.builder.ins().call_indirect(sig, target, &args);
                let r0 = match self.builder.inst_results(call).first() {
                    Some(&v) => v,
                    None => self.builder.ins().iconst(I64, 0),
                };
                self.exit_with(r0);
                return Ok(false);
            }
            Inst::Exit => {
                let r0 = self.reg(0);
                self.exit_with(r0);
                return Ok(false);
            }
            Inst::LdB { d, s, off } => self.load(d, s, off, I8, false),
            Inst::LdH { d, s, off } => self.load(d, s, off, I16, false),
            Inst::LdW { d, s, off } => self.load(d, s, off, I32, false),
            Inst::LdDW { d, s, off } => self.load(d, s, off, I64, false),
            Inst::LdSxB { d, s, off } => self.load(d, s, off, I8, true),
            Inst::LdSxH { d, s, off } => self.load(d, s, off, I16, true),
            Inst::LdSxW { d, s, off } => self.load(d, s, off, I32, true),
            Inst::StBX { d, s, off } => {
                let v = self.reg(s);
                self.store(d, off, I8, v);
            }
            Inst::StHX { d, s, off } => {
                let v = self.reg(s);
                self.store(d, off, I16, v);
            }
            Inst::StWX { d, s, off } => {
                let v = self.reg(s);
                self.store(d, off, I32, v);
            }
            Inst::StDWX { d, s, off } => {
                let v = self.reg(s);
                self.store(d, off, I64, v);
            }
            Inst::StBK { d, off, k } => {
                let v = self.prog_const(I64, k);
                self.store(d, off, I8, v);
            }
            Inst::StHK { d, off, k } => {
                let v = self.prog_const(I64, k);
                self.store(d, off, I16, v);
            }
            Inst::StWK { d, off, k } => {
                let v = self.prog_const(I64, k);
                self.store(d, off, I32, v);
            }
            Inst::StDWK { d, off, k } => {
                let v = self.prog_const(I64, k);
                self.store(d, off, I64, v);
            }
            Inst::Atomic {
                op,
                wide,
                d,
                s,
                off,
            } => self.atomic(idx, op, wide, d, s, off),
            Inst::LoadAcquire { width, d, s, off } => {
                let addr = self.address(s, off);
                self.check_aligned(idx, addr, width.bytes() as u64);
                let ty = ins_ty(width);
                let v = self.builder.ins().atomic_load(ty, atomic_mem(), addr);
                let v = if ty == I64 {
                    v
                } else {
                    self.builder.ins().uextend(I64, v)
                };
                self.set(d, v);
            }
            Inst::StoreRelease { width, d, s, off } => {
                let addr = self.address(d, off);
                self.check_aligned(idx, addr, width.bytes() as u64);
                let ty = ins_ty(width);
                let v = self.reg(s);
                let v = if ty == I64 {
                    v
                } else {
                    self.builder.ins().ireduce(ty, v)
                };
                self.builder.ins().atomic_store(atomic_mem(), v, addr);
            }
            Inst::LdFunc { d, t } => {
                let prog = self.builder.ins().band_imm_s(self.prog, 0xffff);
                let prog = self.builder.ins().ishl_imm_s(prog, 32);
                let v = self
                    .builder
                    .ins()
                    .bor_imm_s(prog, (CALLBACK_TAG | u64::from(t)) as i64);
                self.set(d, v);
            }
            Inst::LdImm64Env { d, idx: k } => {
                let zero = self.iconst(0);
                let pc = self.slot(idx);
                let v = self.call_shim(self.shims.ld_imm64, pc, u64::from(k), zero, zero);
                self.set(d, v);
                self.check_status();
            }
            Inst::LdAbs { width, k } => self.packet_load(idx, width, k, None),
            Inst::LdInd { width, s, k } => self.packet_load(idx, width, k, Some(s)),
            Inst::ProbeLoad {
                width,
                signed,
                d,
                s,
                off,
            } => {
                let addr = self.address(s, off);
                let pc = self.slot(idx);
                let arg = width.bytes() as u64 | (u64::from(signed) << 8);
                let zero = self.iconst(0);
                let v = self.call_shim(self.shims.probe_load, pc, arg, addr, zero);
                self.check_status();
                self.set(d, v);
            }
            Inst::Trap { idx: trap } => {
                let pc = self.slot(idx);
                self.fail(runtime::FAIL_TRAP, pc, u64::from(trap), 0);
                return Ok(false);
            }
            // Every ALU op and conditional jump was handled above.
            _ => {
                return Err(JitError::Unsupported {
                    what: "an instruction form the translator does not know",
                });
            }
        }
        Ok(true)
    }

    /// Returns `r0` from the function (capturing registers first, if
    /// asked).
    fn exit_with(&mut self, r0: Value) {
        if let Exit::Entry { ret, .. } = self.exit {
            self.return_native(ret, r0);
            return;
        }
        if self.options.capture_registers {
            self.set(0, r0);
            self.spill();
        }
        self.builder.ins().return_(&[r0]);
    }

    fn load(&mut self, d: u8, s: u8, off: i16, ty: Type, signed: bool) {
        let base = self.reg(s);
        let off = i32::from(off);
        let ins = self.builder.ins();
        let v = match (ty, signed) {
            (I8, false) => ins.uload8(I64, mem(), base, off),
            (I16, false) => ins.uload16(I64, mem(), base, off),
            (I32, false) => ins.uload32(mem(), base, off),
            (I8, true) => ins.sload8(I64, mem(), base, off),
            (I16, true) => ins.sload16(I64, mem(), base, off),
            (I32, true) => ins.sload32(mem(), base, off),
            _ => ins.load(I64, mem(), base, off),
        };
        self.set(d, v);
    }

    fn store(&mut self, d: u8, off: i16, ty: Type, v: Value) {
        let base = self.reg(d);
        let off = i32::from(off);
        let ins = self.builder.ins();
        match ty {
            I8 => ins.istore8(mem(), v, base, off),
            I16 => ins.istore16(mem(), v, base, off),
            I32 => ins.istore32(mem(), v, base, off),
            _ => ins.store(mem(), v, base, off),
        };
    }

    fn atomic(&mut self, idx: usize, op: AtomicOp, wide: bool, d: u8, s: u8, off: i16) {
        let addr = self.address(d, off);
        let ty = if wide { I64 } else { I32 };
        self.check_aligned(idx, addr, if wide { 8 } else { 4 });
        let src = self.reg(s);
        let narrow = |fx: &mut Self, v: Value| {
            if wide {
                v
            } else {
                fx.builder.ins().ireduce(I32, v)
            }
        };
        let widen = |fx: &mut Self, v: Value| {
            if wide {
                v
            } else {
                fx.builder.ins().uextend(I64, v)
            }
        };
        let x = narrow(self, src);
        if op == AtomicOp::CmpXchg {
            let r0 = self.reg(0);
            let expected = narrow(self, r0);
            let old = self
                .builder
                .ins()
                .atomic_cas(atomic_mem(), addr, expected, x);
            let old = widen(self, old);
            self.set(0, old);
            return;
        }
        let rmw = match op {
            AtomicOp::Add | AtomicOp::FetchAdd => AtomicRmwOp::Add,
            AtomicOp::And | AtomicOp::FetchAnd => AtomicRmwOp::And,
            AtomicOp::Or | AtomicOp::FetchOr => AtomicRmwOp::Or,
            AtomicOp::Xor | AtomicOp::FetchXor => AtomicRmwOp::Xor,
            AtomicOp::Xchg | AtomicOp::CmpXchg => AtomicRmwOp::Xchg,
        };
        let old = self
            .builder
            .ins()
            .atomic_rmw(ty, atomic_mem(), rmw, addr, x);
        if op.fetches() {
            let old = widen(self, old);
            self.set(s, old);
        }
    }

    fn packet_load(&mut self, idx: usize, width: Width, k: i32, src: Option<u8>) {
        self.spill();
        let pc = self.slot(idx);
        let arg = width.bytes() as u64
            | (u64::from(k as u32) << 8)
            | src.map_or(0, |s| (u64::from(s) | 0x10) << 40);
        let zero = self.iconst(0);
        let v = self.call_shim(self.shims.load_packet, pc, arg, zero, zero);
        // Status 0: the value; PACKET_EXIT: out of bounds, return 0 at
        // once; anything else: an error.
        let status = self.builder.ins().load(
            I64,
            MemFlagsData::trusted(),
            self.state,
            state_offsets::STATUS,
        );
        let ok = self.builder.create_block();
        let not_ok = self.builder.create_block();
        self.builder.set_cold_block(not_ok);
        self.builder.ins().brif(status, not_ok, &[], ok, &[]);
        self.builder.switch_to_block(not_ok);
        let is_exit =
            self.builder
                .ins()
                .icmp_imm_s(IntCC::Equal, status, runtime::STATUS_PACKET_EXIT as i64);
        let exit = self.builder.create_block();
        self.builder
            .ins()
            .brif(is_exit, exit, &[], self.fail_block, &[]);
        self.builder.switch_to_block(exit);
        let zero = self.builder.ins().iconst(I64, 0);
        self.builder.ins().store(
            MemFlagsData::trusted(),
            zero,
            self.state,
            state_offsets::STATUS,
        );
        self.exit_with(zero);
        self.builder.switch_to_block(ok);
        self.set(0, v);
    }

    fn cond_jump(&mut self, cond: Cond, wide: bool, d: u8, src: Operand, t: usize, idx: usize) {
        let taken = self.block(t);
        let fall = self.block(idx + 1);
        if t == idx + 1 {
            self.builder.ins().jump(fall, &[]);
            return;
        }
        let ty = if wide { I64 } else { I32 };
        let mut a = self.reg(d);
        if !wide {
            a = self.builder.ins().ireduce(I32, a);
        }
        let c = match src {
            Operand::Reg(s) => {
                let mut b = self.reg(s);
                if !wide {
                    b = self.builder.ins().ireduce(I32, b);
                }
                match cond {
                    Cond::Cc(cc) => self.builder.ins().icmp(cc, a, b),
                    Cond::Set => self.builder.ins().band(a, b),
                }
            }
            Operand::Imm(k) => {
                let b = self.prog_const(ty, k);
                match cond {
                    Cond::Cc(cc) => self.builder.ins().icmp(cc, a, b),
                    Cond::Set => self.builder.ins().band(a, b),
                }
            }
        };
        self.builder.ins().brif(c, taken, &[], fall, &[]);
    }

    /// A two-operand ALU instruction. With [`InsnFacts::zext_redundant`],
    /// 32-bit operations whose low half does not depend on the operands'
    /// upper halves are done on the 64-bit registers as they are: the
    /// result's upper half is garbage nobody reads (not with
    /// [`JitOptions::capture_registers`], which shows it).
    fn alu(&mut self, op: Alu, wide: bool, d: u8, src: Operand, facts: InsnFacts) {
        let low_only = matches!(
            op,
            Alu::Add | Alu::Sub | Alu::Mul | Alu::Or | Alu::And | Alu::Xor | Alu::Mov
        );
        if !wide && low_only && facts.zext_redundant && !self.options.capture_registers {
            let b = match src {
                Operand::Reg(s) => self.reg(s),
                Operand::Imm(k) => self.prog_const(I64, k),
            };
            let r = if op == Alu::Mov {
                b
            } else {
                let a = self.reg(d);
                let ins = self.builder.ins();
                match op {
                    Alu::Add => ins.iadd(a, b),
                    Alu::Sub => ins.isub(a, b),
                    Alu::Mul => ins.imul(a, b),
                    Alu::Or => ins.bor(a, b),
                    Alu::And => ins.band(a, b),
                    _ => ins.bxor(a, b),
                }
            };
            self.set(d, r);
            return;
        }
        let ty = if wide { I64 } else { I32 };
        let operand = |fx: &mut Self| -> Value {
            let v = match src {
                Operand::Reg(s) => fx.reg(s),
                Operand::Imm(k) => return fx.prog_const(ty, k),
            };
            if wide {
                v
            } else {
                fx.builder.ins().ireduce(I32, v)
            }
        };
        if op == Alu::Mov {
            let v = operand(self);
            let v = if wide {
                v
            } else {
                self.builder.ins().uextend(I64, v)
            };
            self.set(d, v);
            return;
        }
        let a = self.reg(d);
        let a = if wide {
            a
        } else {
            self.builder.ins().ireduce(I32, a)
        };
        let b = operand(self);
        let ins = self.builder.ins();
        let r = match op {
            Alu::Add => ins.iadd(a, b),
            Alu::Sub => ins.isub(a, b),
            Alu::Mul => ins.imul(a, b),
            Alu::Or => ins.bor(a, b),
            Alu::And => ins.band(a, b),
            Alu::Xor => ins.bxor(a, b),
            // Cranelift masks shift amounts by the type's width, exactly
            // as BPF does.
            Alu::Lsh => ins.ishl(a, b),
            Alu::Rsh => ins.ushr(a, b),
            Alu::Arsh => ins.sshr(a, b),
            Alu::Div | Alu::SDiv | Alu::Mod | Alu::SMod => {
                let imm = match src {
                    Operand::Imm(k) if wide => Some(k),
                    Operand::Imm(k) => Some(u64::from(k as u32)),
                    Operand::Reg(_) => None,
                };
                self.division(op, ty, a, b, imm, facts)
            }
            Alu::Mov => b,
        };
        let r = if wide {
            r
        } else {
            self.builder.ins().uextend(I64, r)
        };
        self.set(d, r);
    }

    /// Division and modulo without traps: a zero divisor gives 0
    /// (division) or the dividend (modulo); signed `MIN / -1` is `MIN`
    /// and `MIN % -1` is 0 (the verifier's `do_misc_fixups` patches).
    /// Known divisors (immediates) skip the checks they make unnecessary,
    /// and so do register divisors the verifier proved non-zero or not
    /// `-1` ([`InsnFacts`]).
    fn division(
        &mut self,
        op: Alu,
        ty: Type,
        a: Value,
        b: Value,
        imm: Option<u64>,
        facts: InsnFacts,
    ) -> Value {
        let all_ones: u64 = if ty == I64 {
            u64::MAX
        } else {
            u64::from(u32::MAX)
        };
        let signed = matches!(op, Alu::SDiv | Alu::SMod);
        let is_div = matches!(op, Alu::Div | Alu::SDiv);
        if let Some(k) = imm {
            if k == 0 {
                return if is_div {
                    self.builder.ins().iconst(ty, 0)
                } else {
                    a
                };
            }
            if signed && k == all_ones {
                return if is_div {
                    self.builder.ins().ineg(a)
                } else {
                    self.builder.ins().iconst(ty, 0)
                };
            }
            let ins = self.builder.ins();
            return match op {
                Alu::Div => ins.udiv(a, b),
                Alu::SDiv => ins.sdiv(a, b),
                Alu::Mod => ins.urem(a, b),
                _ => ins.srem(a, b),
            };
        }
        let (nonzero, not_m1) = (facts.divisor_nonzero, facts.divisor_not_minus_one);
        if nonzero && (!signed || not_m1) {
            let ins = self.builder.ins();
            return match op {
                Alu::Div => ins.udiv(a, b),
                Alu::SDiv => ins.sdiv(a, b),
                Alu::Mod => ins.urem(a, b),
                _ => ins.srem(a, b),
            };
        }
        let one = self.builder.ins().iconst(ty, 1);
        if signed && nonzero {
            // Only -1 needs care.
            let m1 = konst(&mut self.builder, ty, all_ones);
            let is_m1 = self.builder.ins().icmp(IntCC::Equal, b, m1);
            let safe = self.builder.ins().select(is_m1, one, b);
            let (q, m1_case) = if is_div {
                (self.builder.ins().sdiv(a, safe), self.builder.ins().ineg(a))
            } else {
                (
                    self.builder.ins().srem(a, safe),
                    self.builder.ins().iconst(ty, 0),
                )
            };
            return self.builder.ins().select(is_m1, m1_case, q);
        }
        let is_zero = self.builder.ins().icmp_imm_s(IntCC::Equal, b, 0);
        if !signed || not_m1 {
            let safe = self.builder.ins().select(is_zero, one, b);
            let ins = self.builder.ins();
            let q = match (is_div, signed) {
                (true, false) => ins.udiv(a, safe),
                (false, false) => ins.urem(a, safe),
                (true, true) => ins.sdiv(a, safe),
                (false, true) => ins.srem(a, safe),
            };
            let fallback = if is_div {
                self.builder.ins().iconst(ty, 0)
            } else {
                a
            };
            return self.builder.ins().select(is_zero, fallback, q);
        }
        // Signed: -1 divides without the instruction (which would fault
        // on MIN / -1): quotient -a, remainder 0.
        let m1 = konst(&mut self.builder, ty, all_ones);
        let is_m1 = self.builder.ins().icmp(IntCC::Equal, b, m1);
        let special = self.builder.ins().bor(is_zero, is_m1);
        let safe = self.builder.ins().select(special, one, b);
        let ins = self.builder.ins();
        let q = if is_div {
            ins.sdiv(a, safe)
        } else {
            ins.srem(a, safe)
        };
        let (zero_case, m1_case) = if is_div {
            let z = self.builder.ins().iconst(ty, 0);
            (z, self.builder.ins().ineg(a))
        } else {
            (a, self.builder.ins().iconst(ty, 0))
        };
        let r = self.builder.ins().select(is_m1, m1_case, q);
        self.builder.ins().select(is_zero, zero_case, r)
    }
}
