//! The structops verifier: the security boundary between untrusted BPF
//! programs and the host process that runs them.
//!
//! JIT code runs inside the host, so a program may only run after this
//! crate has proven it safe: every load and store in bounds and initialized,
//! typed pointers into host structs followed through BTF, writes only where
//! the ops type allows, termination, bounded stack and call depth. This
//! crate is the only one able to construct a [`VerifiedProgram`] (its fields
//! are private and [`verify`] is its only constructor). The runtime runs a
//! program unchecked, on the JIT or the interpreter, only when it holds one;
//! `structops-vm`'s unchecked entry points are `unsafe` for any other caller.
//!
//! Verification is the kernel's: a path-sensitive abstract interpretation
//! whose verdicts must equal those of Linux's `kernel/bpf/verifier.c` on
//! the same program (the running kernel is the oracle of our tests). The
//! entry point is [`verify`]; the runtime supplies program facts through
//! [`env::VerifierEnv`]. `docs/verifier.md` describes the rules covered and
//! how they are tested. Its numeric foundation, reproduced exactly:
//!
//! - [`tnum`]: tristate numbers ([`Tnum`]), which bits of a value are known.
//! - [`scalar`]: [`ScalarValue`], a tnum plus signed and unsigned bounds of
//!   the 64-bit value and of its low 32 bits, and the kernel's
//!   synchronisation between them ([`ScalarValue::sync`]).
//! - [`alu`]: what every ALU and ALU64 instruction does to a scalar.
//! - [`branch`]: whether a conditional jump is decided, and what each side
//!   of an undecided one learns.
//! - [`mod@print`]: the scalar's text in the kernel's level-2 verifier log.
//!
//! # Example
//!
//! ```
//! use structops_isa::{AluOp, Bits, Cond};
//! use structops_verifier::{alu, branch, ScalarValue};
//!
//! // r0 = bpf_get_prandom_u32(); r0 &= 255
//! let r0 = ScalarValue::unknown();
//! let r0 = alu::alu(&r0, AluOp::And, &ScalarValue::from_imm(255), Bits::B64);
//! assert_eq!(
//!     r0.log().to_string(),
//!     "scalar(smin=smin32=0,smax=umax=smax32=umax32=255,var_off=(0x0; 0xff))"
//! );
//!
//! // if r0 > 100 goto ...: both sides are possible; the fall-through
//! // side knows r0 <= 100, and the tnum learns that bit 7 is clear.
//! let k = ScalarValue::from_imm(100);
//! assert_eq!(branch::branch_taken(&r0, &k, Cond::Gt, Bits::B64), None);
//! let sides = branch::refine(&r0, &k, Cond::Gt, Bits::B64);
//! assert_eq!(
//!     sides.not_taken.0.log().to_string(),
//!     "scalar(smin=smin32=0,smax=umax=smax32=umax32=100,var_off=(0x0; 0x7f))"
//! );
//! // ... and there, r0 > 200 can never hold.
//! let k = ScalarValue::from_imm(200);
//! assert_eq!(branch::branch_taken(&sides.not_taken.0, &k, Cond::Gt, Bits::B64), Some(false));
//! ```

#![warn(missing_docs)]

pub mod alu;
pub mod branch;
mod btf_ptr;
mod calls;
mod cfg;
pub mod env;
pub mod error;
pub mod facts;
mod iter;
mod kfunc;
mod live_regs;
mod liveness;
mod mem;
mod precision;
pub mod print;
pub mod proto;
mod prune;
pub mod rewrite;
pub mod scalar;
mod sock;
pub mod state;
pub mod tnum;
mod verifier;

#[cfg(test)]
mod btf_tests;
#[cfg(test)]
mod kernel_diff;
#[cfg(test)]
mod loop_cases;
#[cfg(test)]
mod rewrite_tests;
#[cfg(test)]
mod tests;

pub use env::{
    CtxAccess, CtxField, FieldTrust, HookError, KfuncDesc, KfuncFlags, LogOptions, MapInfo,
    MapPtrLoad, MapRef, PacketAccess, Privileges, ProgInfo, ReturnRule, SockPtr, StructOpsAttach,
    StructOpsType, VerifierEnv, map_btf_struct_name,
};
pub use error::VerifyError;
pub use facts::InsnFacts;
pub use print::{ScalarLog, Snum, Unum, write_scalar_ranges};
pub use rewrite::{Rewrite, RewriteError};
pub use scalar::{BoundsViolation, ScalarValue};
pub use structops_btf::Btf;
pub use tnum::Tnum;
pub use verifier::{COMPLEXITY_LIMIT_INSNS, MAX_BPF_STACK, MAX_CALL_FRAMES, Stats};

use structops_isa::Insn;

/// A program the verifier accepted: the only way to obtain one is
/// [`verify`], so holding one proves the instructions passed every check
/// for the environment they were verified against.
///
/// Its instructions are the ones to run: the checked ones with the
/// environment's context rewrites spliced in
/// ([`VerifierEnv::convert_ctx_access`]); [`VerifiedProgram::rewrite`] says
/// what moved. [`VerifiedProgram::facts`] are what execution may rely on to
/// skip work (see [`facts`]).
#[derive(Debug, Clone)]
pub struct VerifiedProgram {
    insns: Vec<Insn>,
    stats: Stats,
    log: String,
    stack_depth: Vec<usize>,
    subprogs: Vec<usize>,
    map_ptr_loads: Vec<MapPtrLoad>,
    rewrite: Rewrite,
    facts: Vec<InsnFacts>,
}

impl VerifiedProgram {
    /// The instructions to run: the verified ones after the context
    /// rewrites.
    pub fn insns(&self) -> &[Insn] {
        &self.insns
    }

    /// Verification statistics.
    pub fn stats(&self) -> Stats {
        self.stats
    }

    /// The verifier log (empty at log level 0).
    pub fn log(&self) -> &str {
        &self.log
    }

    /// Stack bytes used by each subprogram, in subprogram order.
    pub fn stack_depth(&self) -> &[usize] {
        &self.stack_depth
    }

    /// Start instruction of each subprogram (the first is 0), in the
    /// rewritten numbering.
    pub fn subprogs(&self) -> &[usize] {
        &self.subprogs
    }

    /// The loads through map pointers, by instruction of the submitted program
    /// (before [`VerifiedProgram::rewrite`]) ([`MapPtrLoad`]).
    pub fn map_ptr_loads(&self) -> &[MapPtrLoad] {
        &self.map_ptr_loads
    }

    /// The post-verification rewrite: which submitted instructions were
    /// replaced and where every submitted index went. Apply it to another
    /// form of the submitted program (the runtime's translated one) with
    /// [`Rewrite::apply`]; move `func_info`/`line_info` offsets with
    /// [`Rewrite::new_index`].
    pub fn rewrite(&self) -> &Rewrite {
        &self.rewrite
    }

    /// What the verifier proved about each slot of [`VerifiedProgram::insns`].
    pub fn facts(&self) -> &[InsnFacts] {
        &self.facts
    }

    /// Gives back the instructions.
    pub fn into_insns(self) -> Vec<Insn> {
        self.insns
    }
}

/// Verifies `insns` as `BPF_PROG_LOAD` would, against the facts `env`
/// supplies (mirrors `bpf_check`), then applies the environment's context
/// rewrites (`convert_ctx_accesses`) and gathers the [`InsnFacts`].
///
/// # Errors
///
/// [`VerifyError`] with the kernel's errno and message, and the log.
///
/// # Example
///
/// A program type whose context is 8 read-only bytes of scalars: a program
/// reading inside them is accepted (and runs on the interpreter), one reading
/// past them is refused with the kernel's errno and message.
///
/// ```
/// use structops_verifier::proto::HelperProto;
/// use structops_verifier::{
///     CtxField, LogOptions, MapInfo, MapRef, Privileges, ProgInfo, VerifierEnv, verify,
/// };
/// use structops_vm::{Code, Interpreter, NoEnv, Region};
///
/// struct Ctx8;
///
/// impl VerifierEnv for Ctx8 {
///     fn map(&self, _: MapRef) -> Option<MapInfo> {
///         None
///     }
///     fn helper(&self, _: i32) -> Option<HelperProto> {
///         None
///     }
///     fn ctx_access(&self, off: i32, size: u32, write: bool) -> Option<CtxField> {
///         let inside = off >= 0 && off as u32 + size <= 8;
///         (inside && !write).then_some(CtxField::Scalar)
///     }
/// }
///
/// let info = ProgInfo { privileges: Privileges::ROOT, ..ProgInfo::default() };
/// let log = LogOptions { level: 1, stats: false };
/// let good = structops_isa::assemble("r0 = *(u32 *)(r1 +4)\nr0 *= 3\nexit")?;
/// let verified = verify(&good.encode(), &info, &Ctx8, &log)?;
/// assert_eq!(verified.stats().insn_processed, 3);
///
/// let code = Code::new(&structops_isa::decode(verified.insns())?);
/// let mut ctx = [0u8; 8];
/// ctx[4..].copy_from_slice(&14u32.to_ne_bytes());
/// let r0 = Interpreter::new().run_checked(&code, &mut NoEnv, Region::read_write(&mut ctx), &[])?;
/// assert_eq!(r0, 42);
///
/// let bad = structops_isa::assemble("r0 = *(u32 *)(r1 +8)\nexit")?;
/// let err = verify(&bad.encode(), &info, &Ctx8, &log).unwrap_err();
/// assert_eq!((err.errno, err.pc), (13, 0)); // EACCES at insn 0
/// assert_eq!(err.message, "invalid bpf_context access off=8 size=4");
/// assert!(err.log.contains("0: (61) r0 = *(u32 *)(r1 +8)"), "{}", err.log);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub fn verify(
    insns: &[Insn],
    info: &ProgInfo,
    env: &dyn VerifierEnv,
    log: &LogOptions,
) -> Result<VerifiedProgram, VerifyError> {
    verify_with_limits(insns, info, env, log, &Limits::default())
}

/// Bounds on one verification beyond the kernel's own limits (1M processed
/// instructions, 8192 pending branches), which bound the work but leave the
/// memory of remembered states and of the log large: a loop that checkpoints
/// every few instructions with a full stack keeps gigabytes of states before it
/// reaches the instruction limit, and a log of every instruction of it is as
/// large. The kernel has no bound on state memory (its allocations fail with
/// `ENOMEM` when memory runs out) and bounds the log by the caller's buffer
/// (`ENOSPC` when it is too small); [`Limits::default`] bounds neither.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    /// Most bytes of remembered states ([`state::State::approx_bytes`]); past
    /// it verification fails with `ENOMEM`.
    pub state_memory: u64,
    /// Most bytes of log; past it verification stops with `ENOSPC` (the kernel
    /// verifies to the end, keeps the last `log_size` bytes and then returns
    /// `ENOSPC` if the program was accepted; stopping early keeps the memory
    /// bounded).
    pub log_size: u64,
}

impl Default for Limits {
    /// No bound beyond the kernel's.
    fn default() -> Limits {
        Limits {
            state_memory: u64::MAX,
            log_size: u64::MAX,
        }
    }
}

/// [`verify`] with `limits`.
///
/// # Errors
///
/// As [`verify`]; `ENOMEM` when the remembered states pass
/// [`Limits::state_memory`], `ENOSPC` when the log passes [`Limits::log_size`].
pub fn verify_with_limits(
    insns: &[Insn],
    info: &ProgInfo,
    env: &dyn VerifierEnv,
    log: &LogOptions,
    limits: &Limits,
) -> Result<VerifiedProgram, VerifyError> {
    let mut v = verifier::Verifier::new(insns, env, info, *log);
    v.set_limits(limits);
    v.run()?;
    let misconfigured = |v: &mut verifier::Verifier<'_>, pc: usize| VerifyError {
        errno: error::EINVAL,
        pc,
        message: "bpf verifier is misconfigured".to_owned(),
        log: std::mem::take(&mut v.log),
    };
    let rewrite = match convert_ctx_accesses(&v, insns, env) {
        Ok(r) => r,
        Err(pc) => return Err(misconfigured(&mut v, pc)),
    };
    let rewritten = match rewrite.apply(insns) {
        Ok(r) => r,
        Err(RewriteError::Range { pc }) => {
            return Err(VerifyError {
                errno: error::ERANGE,
                pc,
                message: format!("insn {pc} cannot be patched due to 16-bit range"),
                log: std::mem::take(&mut v.log),
            });
        }
        Err(RewriteError::Length { .. }) => return Err(misconfigured(&mut v, 0)),
    };
    let facts = insn_facts(&v, insns, &rewrite, &rewritten);
    let subprogs = v
        .cfg
        .subprogs
        .iter()
        .map(|&s| rewrite.new_index(s).unwrap_or(s))
        .collect();
    Ok(VerifiedProgram {
        insns: rewritten,
        stats: v.stats,
        log: std::mem::take(&mut v.log),
        stack_depth: v.stack_depth.clone(),
        subprogs,
        rewrite,
        facts,
        map_ptr_loads: std::mem::take(&mut v.map_ptr_loads).into_values().collect(),
    })
}

/// `convert_ctx_accesses`: asks the environment for the replacement of
/// every context access some path reached. `Err(pc)` when a replacement
/// is empty, does not decode, or jumps out of itself.
fn convert_ctx_accesses(
    v: &verifier::Verifier<'_>,
    insns: &[Insn],
    env: &dyn VerifierEnv,
) -> Result<Rewrite, usize> {
    let mut patches = Vec::new();
    for (pc, aux) in v.aux.iter().enumerate() {
        let (Some(access), true, Some(&insn)) = (aux.ctx, aux.seen, insns.get(pc)) else {
            continue;
        };
        let Some(repl) = env.convert_ctx_access(&access, insn) else {
            continue;
        };
        let prog = structops_isa::Program::decode(&repl).map_err(|_| pc)?;
        let contained = prog.iter().all(|(at, op)| {
            let local = matches!(
                op,
                structops_isa::Op::Call(structops_isa::CallTarget::Local { .. })
                    | structops_isa::Op::LdImm64 {
                        imm: structops_isa::Imm64::Func { .. },
                        ..
                    }
            );
            !local
                && op
                    .jump_offset()
                    .is_none_or(|_| op.jump_target(at).is_some_and(|t| t <= repl.len()))
        });
        if repl.is_empty() || !contained {
            return Err(pc);
        }
        patches.push((pc, repl));
    }
    Ok(Rewrite::new(insns.len(), patches))
}

/// The [`InsnFacts`] of the rewritten program: zero extensions from the
/// final instructions, divisors from the path walk (moved to their new
/// index, dropped where a pruned continuation may have seen other values).
fn insn_facts(
    v: &verifier::Verifier<'_>,
    insns: &[Insn],
    rewrite: &Rewrite,
    rewritten: &[Insn],
) -> Vec<InsnFacts> {
    let zext = facts::zext_redundant(&facts::decode_ops(rewritten));
    let mut out: Vec<InsnFacts> = zext
        .into_iter()
        .map(|z| InsnFacts {
            zext_redundant: z,
            ..InsnFacts::default()
        })
        .collect();
    let tainted = if v.fact_taint.is_empty() {
        vec![false; insns.len()]
    } else {
        facts::reachable(&facts::decode_ops(insns), &v.fact_taint, &v.cfg.subprogs)
    };
    for (&start, &depth) in v.cfg.subprogs.iter().zip(&v.stack_depth) {
        if let Some(f) = rewrite.new_index(start).and_then(|i| out.get_mut(i)) {
            f.frame_depth = u16::try_from(depth).ok();
        }
    }
    for (pc, aux) in v.aux.iter().enumerate() {
        if aux.probe_mem
            && let Some(f) = rewrite.new_index(pc).and_then(|i| out.get_mut(i))
        {
            f.probe_mem = true;
        }
        let Some(d) = aux.divisor else { continue };
        if tainted.get(pc).copied().unwrap_or(true) {
            continue;
        }
        if let Some(f) = rewrite.new_index(pc).and_then(|i| out.get_mut(i)) {
            f.divisor_nonzero = d.nonzero;
            f.divisor_not_minus_one = d.not_minus_one;
        }
    }
    out
}
