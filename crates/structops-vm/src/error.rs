//! [`VmError`], the one error type of a run.

use thiserror::Error;

/// Why a run stopped before the program returned.
///
/// Every variant names `pc`, the slot index of the instruction that was
/// executing (for `LD_IMM64` the index of its first slot), counted in the
/// program that was running at the time (after a tail call, the target).
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum VmError {
    /// Checked mode: a load, store, atomic or helper access touches bytes
    /// outside every region the program may use.
    #[error("insn {pc}: {} of {len} bytes at {addr:#x} is outside every allowed region", if *write { "write" } else { "read" })]
    OutOfBounds {
        /// Slot index.
        pc: usize,
        /// First byte of the access.
        addr: u64,
        /// Access size in bytes.
        len: u64,
        /// Whether the access writes.
        write: bool,
    },
    /// Checked mode: a read of stack bytes that nothing has written since
    /// their frame was entered.
    #[error("insn {pc}: read of {len} bytes at {addr:#x} touches uninitialized stack")]
    UninitializedRead {
        /// Slot index.
        pc: usize,
        /// First byte of the access.
        addr: u64,
        /// Access size in bytes.
        len: u64,
    },
    /// An atomic operation on an address that is not a multiple of its
    /// width (the verifier always rejects these; atomics cannot be split).
    #[error("insn {pc}: atomic access of {len} bytes at {addr:#x} is misaligned")]
    MisalignedAtomic {
        /// Slot index.
        pc: usize,
        /// The address.
        addr: u64,
        /// Access size in bytes.
        len: u64,
    },
    /// Checked mode: the run executed more instructions than the configured
    /// limit ([`Config::step_limit`](crate::Config::step_limit)).
    #[error("insn {pc}: instruction limit of {limit} reached")]
    InstructionLimit {
        /// Slot index of the instruction that would have exceeded the limit.
        pc: usize,
        /// The limit.
        limit: u64,
    },
    /// A bpf-to-bpf call (or a callback) would need more than
    /// [`MAX_CALL_FRAMES`](crate::MAX_CALL_FRAMES) frames.
    #[error("insn {pc}: call nesting exceeds {max_frames} frames")]
    CallDepthExceeded {
        /// Slot index of the call.
        pc: usize,
        /// The frame limit.
        max_frames: usize,
    },
    /// A jump leads outside the program or into the second slot of an
    /// `LD_IMM64`.
    #[error("insn {pc}: jump to slot {target} is not the start of an instruction")]
    BadJump {
        /// Slot index of the jump.
        pc: usize,
        /// The slot it targets (may be negative or past the end).
        target: i64,
    },
    /// A bpf-to-bpf call or a `BPF_PSEUDO_FUNC` load targets a slot that is
    /// not the start of an instruction.
    #[error("insn {pc}: call target slot {target} is not the start of an instruction")]
    BadCallTarget {
        /// Slot index of the call or load.
        pc: usize,
        /// The slot it targets (may be negative or past the end).
        target: i64,
    },
    /// Execution continued past the last instruction without an `exit`.
    #[error("insn {pc}: execution falls off the end of the program")]
    FellOffEnd {
        /// The slot just past the end, where execution arrived.
        pc: usize,
    },
    /// The program calls a helper the environment does not provide.
    #[error("insn {pc}: unknown helper #{id}")]
    UnknownHelper {
        /// Slot index of the call.
        pc: usize,
        /// Helper id.
        id: i32,
    },
    /// The program calls a kfunc the environment does not provide.
    #[error("insn {pc}: unknown kfunc btf_id {btf_id} (fd_array index {off})")]
    UnknownKfunc {
        /// Slot index of the call.
        pc: usize,
        /// BTF id of the `FUNC`.
        btf_id: u32,
        /// The call's `off` field (module BTF index into `fd_array`).
        off: i16,
    },
    /// An `LD_IMM64` whose pseudo source the loader should have rewritten
    /// (map fds, map values, ksyms) and the environment does not resolve.
    #[error("insn {pc}: ld_imm64 with pseudo source {src} was not resolved")]
    UnresolvedImm64 {
        /// Slot index of the load.
        pc: usize,
        /// The pseudo source (`src_reg`).
        src: u8,
    },
    /// A callback value handed to [`Caller::call_function`](crate::Caller::call_function)
    /// is not one a `BPF_PSEUDO_FUNC` load of this run produced.
    #[error("insn {pc}: {value:#x} is not a callback of this run")]
    BadCallback {
        /// Slot index of the helper call that tried to invoke it.
        pc: usize,
        /// The value.
        value: u64,
    },
    /// An instruction this interpreter does not execute, or one the
    /// environment declined (`LD_ABS`/`LD_IND` without packet access,
    /// arena `addr_space_cast`, tail calls without a program array).
    #[error("insn {pc}: {what} is not supported here")]
    Unsupported {
        /// Slot index.
        pc: usize,
        /// What was attempted.
        what: &'static str,
    },
    /// The JIT could not compile the program (at `pc` 0) or a tail-call
    /// or callback target (at the `pc` of the tail call or helper call).
    #[error("insn {pc}: JIT compilation failed: {source}")]
    Jit {
        /// Slot index.
        pc: usize,
        /// Why.
        #[source]
        source: crate::jit::JitError,
    },
    /// An error of the environment's own, raised by a helper, kfunc or
    /// lookup at `pc`.
    #[error("insn {pc}: {source}")]
    Env {
        /// Slot index of the call.
        pc: usize,
        /// The environment's error.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync + 'static>,
    },
}

impl VmError {
    /// The slot index the error is about.
    pub fn pc(&self) -> usize {
        match *self {
            VmError::OutOfBounds { pc, .. }
            | VmError::UninitializedRead { pc, .. }
            | VmError::MisalignedAtomic { pc, .. }
            | VmError::InstructionLimit { pc, .. }
            | VmError::CallDepthExceeded { pc, .. }
            | VmError::BadJump { pc, .. }
            | VmError::BadCallTarget { pc, .. }
            | VmError::FellOffEnd { pc }
            | VmError::UnknownHelper { pc, .. }
            | VmError::UnknownKfunc { pc, .. }
            | VmError::UnresolvedImm64 { pc, .. }
            | VmError::BadCallback { pc, .. }
            | VmError::Unsupported { pc, .. }
            | VmError::Jit { pc, .. }
            | VmError::Env { pc, .. } => pc,
        }
    }
}
