//! The structops verifier: the security boundary between untrusted BPF
//! programs and the host process that runs them.
//!
//! JIT code runs inside the host, so a program may only run after this
//! crate has proven it safe: every load and store in bounds and initialized,
//! typed pointers into host structs followed through BTF, writes only where
//! the ops type allows, termination, bounded stack and call depth. This
//! crate will be the only one able to construct the `VerifiedProgram` that
//! the runtime and the JIT accept; no other path produces one.
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
//! - [`print`]: the scalar's text in the kernel's level-2 verifier log.
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
mod iter;
mod kfunc;
mod live_regs;
mod liveness;
mod mem;
mod precision;
pub mod print;
pub mod proto;
mod prune;
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
mod tests;

pub use env::{
    CtxField, FieldTrust, HookError, KfuncDesc, KfuncFlags, LogOptions, MapInfo, MapPtrLoad,
    MapRef, PacketAccess, Privileges, ProgInfo, ReturnRule, SockPtr, StructOpsAttach,
    StructOpsType, VerifierEnv, map_btf_struct_name,
};
pub use error::VerifyError;
pub use print::{ScalarLog, Snum, Unum, write_scalar_ranges};
pub use scalar::{BoundsViolation, ScalarValue};
pub use structops_btf::Btf;
pub use tnum::Tnum;
pub use verifier::{COMPLEXITY_LIMIT_INSNS, MAX_BPF_STACK, MAX_CALL_FRAMES, Stats};

use structops_isa::Insn;

/// A program the verifier accepted: the only way to obtain one is
/// [`verify`], so holding one proves the instructions passed every check
/// for the environment they were verified against.
#[derive(Debug, Clone)]
pub struct VerifiedProgram {
    insns: Vec<Insn>,
    stats: Stats,
    log: String,
    stack_depth: Vec<usize>,
    subprogs: Vec<usize>,
    map_ptr_loads: Vec<MapPtrLoad>,
}

impl VerifiedProgram {
    /// The verified instructions.
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

    /// Start instruction of each subprogram (the first is 0).
    pub fn subprogs(&self) -> &[usize] {
        &self.subprogs
    }

    /// The loads through map pointers, by instruction ([`MapPtrLoad`]).
    pub fn map_ptr_loads(&self) -> &[MapPtrLoad] {
        &self.map_ptr_loads
    }

    /// Gives back the instructions.
    pub fn into_insns(self) -> Vec<Insn> {
        self.insns
    }
}

/// Verifies `insns` as `BPF_PROG_LOAD` would, against the facts `env`
/// supplies (mirrors `bpf_check`).
///
/// # Errors
///
/// [`VerifyError`] with the kernel's errno and message, and the log.
pub fn verify(
    insns: &[Insn],
    info: &ProgInfo,
    env: &dyn VerifierEnv,
    log: &LogOptions,
) -> Result<VerifiedProgram, VerifyError> {
    let mut v = verifier::Verifier::new(insns, env, info, *log);
    v.run()?;
    Ok(VerifiedProgram {
        insns: insns.to_vec(),
        stats: v.stats,
        log: std::mem::take(&mut v.log),
        stack_depth: v.stack_depth.clone(),
        subprogs: v.cfg.subprogs.clone(),
        map_ptr_loads: std::mem::take(&mut v.map_ptr_loads).into_values().collect(),
    })
}
