//! [`Code`]: a decoded [`Program`] lowered once into the flat instruction
//! form the interpreter dispatches on.
//!
//! Lowering resolves every jump and call offset to an instruction index,
//! specialises each op by width and operand form (so the hot loop does one
//! `match`, not three nested ones), pre-extends immediates, and turns every
//! structural problem (a jump into the second slot of an `LD_IMM64`, out of
//! the program, falling off the end) into a trap instruction that reports a
//! typed error only if execution reaches it. Lowering itself never fails.

use std::sync::{Arc, OnceLock};

use structops_isa::{
    AluOp, AtomicOp, Bits, CallTarget, Cond, Endian, Imm64, Op, Program, Reg, Source, Width,
};

/// Helper id of `bpf_tail_call`, which the interpreter implements itself
/// (the kernel's verifier rewrites it into `BPF_TAIL_CALL` the same way).
pub const BPF_FUNC_TAIL_CALL: i32 = 12;

/// A program prepared for the interpreter. Cheap to clone (reference
/// counted) and immutable, so one `Code` can be shared by many threads and
/// handed out as a tail-call target.
#[derive(Clone, Debug)]
pub struct Code {
    inner: Arc<CodeInner>,
}

#[derive(Debug)]
pub(crate) struct CodeInner {
    /// The lowered instructions: one per op, then [`Inst::Trap`] for
    /// falling off the end, then one trap per bad jump or call target.
    pub(crate) insts: Box<[Inst]>,
    /// Slot index of each op (parallel to the first `ops` entries of `insts`).
    pub(crate) pcs: Box<[usize]>,
    /// What each trap instruction reports.
    pub(crate) traps: Box<[Trap]>,
    /// `LD_IMM64` payloads the environment resolves at run time.
    pub(crate) imm64: Box<[(usize, Imm64)]>,
    /// Number of slots of the source program.
    pub(crate) slot_count: usize,
    /// What a verifier proved about each op (parallel to `pcs`), or empty.
    pub(crate) facts: Box<[InsnFacts]>,
    /// The program compiled by the JIT, once asked for ([`Code::jit`]).
    pub(crate) jit: OnceLock<Result<crate::jit::JitProgram, crate::jit::JitError>>,
}

/// What a trap instruction reports when execution reaches it.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Trap {
    /// A jump at `pc` to a slot that starts no instruction.
    BadJump { pc: usize, target: i64 },
    /// A call or `BPF_PSEUDO_FUNC` load at `pc` of a slot that starts no
    /// instruction.
    BadCallTarget { pc: usize, target: i64 },
    /// Execution arrived at slot `pc`, just past the end.
    FellOffEnd { pc: usize },
    /// An op at `pc` this interpreter does not execute.
    Unsupported { pc: usize, what: &'static str },
}

/// What a verifier proved about one instruction slot that lets the JIT
/// drop work (the runtime fills these from `structops-verifier`'s facts).
/// The default claims nothing; the interpreter ignores facts.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct InsnFacts {
    /// A 32-bit ALU instruction whose destination's upper 32 bits nothing
    /// reads before they are overwritten: its result need not be
    /// zero-extended.
    pub zext_redundant: bool,
    /// A division or modulo by a register that is never zero (in the
    /// operation's width): no zero-divisor branch.
    pub divisor_nonzero: bool,
    /// A division or modulo by a register that is never `-1` (in the
    /// operation's width): no `MIN / -1` branch for signed ones.
    pub divisor_not_minus_one: bool,
    /// A load whose base may be any address (the kernel's `BPF_PROBE_MEM`):
    /// a pointer the program read out of a host struct, which the host does
    /// not vouch for. Both engines run it as a probe: the environment
    /// ([`crate::Env::probe_read`]) reads it if the memory is readable, and
    /// the result is 0 otherwise. Unlike the other facts, this one adds
    /// work; dropping it from a program that needs it is unsound.
    pub probe_mem: bool,
    /// At the first instruction of a function: the stack bytes it uses below
    /// `r10` (its verified depth). The JIT then clears only those on entry
    /// instead of the whole 512-byte frame; a program that reads deeper would
    /// see stale bytes, which only a verifier's depth rules out.
    pub frame_depth: Option<u16>,
}

impl Code {
    /// Lowers `prog`. Never fails: problems that only matter if reached
    /// become trap instructions (see the module docs).
    pub fn new(prog: &Program) -> Code {
        Code::lower(prog, &[])
    }

    /// Lowers `prog` with `facts`, one per instruction slot (missing ones
    /// claim nothing), which the JIT uses to skip the checks and zero
    /// extensions they prove unnecessary.
    ///
    /// # Safety
    ///
    /// Every fact must hold on every execution of the compiled code: a
    /// division whose divisor is claimed non-zero but is zero makes the
    /// native division fault, which ends the process. Only a verifier's
    /// facts about the program it accepted give that guarantee.
    pub unsafe fn with_facts(prog: &Program, facts: &[InsnFacts]) -> Code {
        Code::lower(prog, facts)
    }

    fn lower(prog: &Program, facts: &[InsnFacts]) -> Code {
        let n = prog.len();
        let mut low = Lowering {
            prog,
            n,
            traps: Vec::new(),
            imm64: Vec::new(),
        };
        let mut insts = Vec::with_capacity(n + 1);
        let mut pcs = Vec::with_capacity(n);
        for (pc, op) in prog.iter() {
            let probe = facts.get(pc).is_some_and(|f| f.probe_mem);
            insts.push(match op {
                Op::Load {
                    width,
                    dst,
                    src,
                    off,
                } if probe => Inst::ProbeLoad {
                    width,
                    signed: false,
                    d: r(dst),
                    s: r(src),
                    off,
                },
                Op::LoadSx {
                    width,
                    dst,
                    src,
                    off,
                } if probe => Inst::ProbeLoad {
                    width,
                    signed: width != Width::DW,
                    d: r(dst),
                    s: r(src),
                    off,
                },
                _ => low.lower(pc, op),
            });
            pcs.push(pc);
        }
        // The instruction past the end: reached by falling through the
        // last op or by a jump to exactly `slot_count`.
        let mut traps = vec![Trap::FellOffEnd {
            pc: prog.slot_count(),
        }];
        traps.append(&mut low.traps);
        for i in 0..traps.len() {
            insts.push(Inst::Trap {
                idx: u32::try_from(i).unwrap_or(u32::MAX),
            });
        }
        let op_facts = if facts.is_empty() {
            Box::default()
        } else {
            pcs.iter()
                .map(|&pc| facts.get(pc).copied().unwrap_or_default())
                .collect()
        };
        Code {
            inner: Arc::new(CodeInner {
                insts: insts.into_boxed_slice(),
                pcs: pcs.into_boxed_slice(),
                traps: traps.into_boxed_slice(),
                imm64: low.imm64.into_boxed_slice(),
                slot_count: prog.slot_count(),
                facts: op_facts,
                jit: OnceLock::new(),
            }),
        }
    }

    /// Number of instruction slots of the source program.
    pub fn slot_count(&self) -> usize {
        self.inner.slot_count
    }

    /// Number of ops of the source program.
    pub fn len(&self) -> usize {
        self.inner.pcs.len()
    }

    /// Whether the source program has no ops.
    pub fn is_empty(&self) -> bool {
        self.inner.pcs.is_empty()
    }

    /// Whether `self` and `other` are the same prepared program (not just
    /// equal ones).
    pub fn ptr_eq(&self, other: &Code) -> bool {
        Arc::ptr_eq(&self.inner, &other.inner)
    }

    pub(crate) fn inner(&self) -> &Arc<CodeInner> {
        &self.inner
    }
}

impl From<&Program> for Code {
    fn from(prog: &Program) -> Code {
        Code::new(prog)
    }
}

impl CodeInner {
    /// What a verifier proved about instruction `idx` (nothing for
    /// traps and for code lowered without facts).
    pub(crate) fn facts_of(&self, idx: usize) -> InsnFacts {
        self.facts.get(idx).copied().unwrap_or_default()
    }

    /// The slot index of instruction `idx`, for error reports. Trap
    /// instructions report their own pc; indices past everything (which
    /// the interpreter never produces) map to the slot count.
    pub(crate) fn slot_of(&self, idx: usize) -> usize {
        match self.pcs.get(idx) {
            Some(&pc) => pc,
            None => self.slot_count,
        }
    }
}

/// The specialised instruction. Register fields hold 0 to 10; jump and
/// call targets (`t`) are instruction indices; `k` immediates are already
/// sign- (64-bit ops) or zero- (32-bit ops) extended as the op needs.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Inst {
    Add64X {
        d: u8,
        s: u8,
    },
    Sub64X {
        d: u8,
        s: u8,
    },
    Mul64X {
        d: u8,
        s: u8,
    },
    Div64X {
        d: u8,
        s: u8,
    },
    SDiv64X {
        d: u8,
        s: u8,
    },
    Mod64X {
        d: u8,
        s: u8,
    },
    SMod64X {
        d: u8,
        s: u8,
    },
    Or64X {
        d: u8,
        s: u8,
    },
    And64X {
        d: u8,
        s: u8,
    },
    Xor64X {
        d: u8,
        s: u8,
    },
    Lsh64X {
        d: u8,
        s: u8,
    },
    Rsh64X {
        d: u8,
        s: u8,
    },
    Arsh64X {
        d: u8,
        s: u8,
    },
    Mov64X {
        d: u8,
        s: u8,
    },
    Add64K {
        d: u8,
        k: u64,
    },
    Sub64K {
        d: u8,
        k: u64,
    },
    Mul64K {
        d: u8,
        k: u64,
    },
    Div64K {
        d: u8,
        k: u64,
    },
    SDiv64K {
        d: u8,
        k: u64,
    },
    Mod64K {
        d: u8,
        k: u64,
    },
    SMod64K {
        d: u8,
        k: u64,
    },
    Or64K {
        d: u8,
        k: u64,
    },
    And64K {
        d: u8,
        k: u64,
    },
    Xor64K {
        d: u8,
        k: u64,
    },
    Lsh64K {
        d: u8,
        k: u64,
    },
    Rsh64K {
        d: u8,
        k: u64,
    },
    Arsh64K {
        d: u8,
        k: u64,
    },
    Mov64K {
        d: u8,
        k: u64,
    },
    Add32X {
        d: u8,
        s: u8,
    },
    Sub32X {
        d: u8,
        s: u8,
    },
    Mul32X {
        d: u8,
        s: u8,
    },
    Div32X {
        d: u8,
        s: u8,
    },
    SDiv32X {
        d: u8,
        s: u8,
    },
    Mod32X {
        d: u8,
        s: u8,
    },
    SMod32X {
        d: u8,
        s: u8,
    },
    Or32X {
        d: u8,
        s: u8,
    },
    And32X {
        d: u8,
        s: u8,
    },
    Xor32X {
        d: u8,
        s: u8,
    },
    Lsh32X {
        d: u8,
        s: u8,
    },
    Rsh32X {
        d: u8,
        s: u8,
    },
    Arsh32X {
        d: u8,
        s: u8,
    },
    Mov32X {
        d: u8,
        s: u8,
    },
    Add32K {
        d: u8,
        k: u32,
    },
    Sub32K {
        d: u8,
        k: u32,
    },
    Mul32K {
        d: u8,
        k: u32,
    },
    Div32K {
        d: u8,
        k: u32,
    },
    SDiv32K {
        d: u8,
        k: u32,
    },
    Mod32K {
        d: u8,
        k: u32,
    },
    SMod32K {
        d: u8,
        k: u32,
    },
    Or32K {
        d: u8,
        k: u32,
    },
    And32K {
        d: u8,
        k: u32,
    },
    Xor32K {
        d: u8,
        k: u32,
    },
    Lsh32K {
        d: u8,
        k: u32,
    },
    Rsh32K {
        d: u8,
        k: u32,
    },
    Arsh32K {
        d: u8,
        k: u32,
    },
    Mov32K {
        d: u8,
        k: u32,
    },
    Neg64 {
        d: u8,
    },
    Neg32 {
        d: u8,
    },
    /// `dst = (s8/s16/s32)src` as a 64-bit value.
    MovSx64 {
        d: u8,
        s: u8,
        from: Width,
    },
    /// `wdst = (s8/s16)wsrc`, zero-extended.
    MovSx32 {
        d: u8,
        s: u8,
        from: Width,
    },
    /// Keep the low 16 bits (`le16` on a little-endian host).
    Trunc16 {
        d: u8,
    },
    /// Keep the low 32 bits.
    Trunc32 {
        d: u8,
    },
    /// Swap the low 16 bits, clearing the rest (`be16`, `bswap16`).
    Swap16 {
        d: u8,
    },
    /// Swap the low 32 bits, clearing the rest.
    Swap32 {
        d: u8,
    },
    /// Swap all 64 bits.
    Swap64 {
        d: u8,
    },
    /// No effect (`le64` on a little-endian host).
    Nop,

    Jeq64X {
        d: u8,
        s: u8,
        t: u32,
    },
    Jne64X {
        d: u8,
        s: u8,
        t: u32,
    },
    Jgt64X {
        d: u8,
        s: u8,
        t: u32,
    },
    Jge64X {
        d: u8,
        s: u8,
        t: u32,
    },
    Jlt64X {
        d: u8,
        s: u8,
        t: u32,
    },
    Jle64X {
        d: u8,
        s: u8,
        t: u32,
    },
    Jsgt64X {
        d: u8,
        s: u8,
        t: u32,
    },
    Jsge64X {
        d: u8,
        s: u8,
        t: u32,
    },
    Jslt64X {
        d: u8,
        s: u8,
        t: u32,
    },
    Jsle64X {
        d: u8,
        s: u8,
        t: u32,
    },
    Jset64X {
        d: u8,
        s: u8,
        t: u32,
    },
    Jeq64K {
        d: u8,
        k: u64,
        t: u32,
    },
    Jne64K {
        d: u8,
        k: u64,
        t: u32,
    },
    Jgt64K {
        d: u8,
        k: u64,
        t: u32,
    },
    Jge64K {
        d: u8,
        k: u64,
        t: u32,
    },
    Jlt64K {
        d: u8,
        k: u64,
        t: u32,
    },
    Jle64K {
        d: u8,
        k: u64,
        t: u32,
    },
    Jsgt64K {
        d: u8,
        k: u64,
        t: u32,
    },
    Jsge64K {
        d: u8,
        k: u64,
        t: u32,
    },
    Jslt64K {
        d: u8,
        k: u64,
        t: u32,
    },
    Jsle64K {
        d: u8,
        k: u64,
        t: u32,
    },
    Jset64K {
        d: u8,
        k: u64,
        t: u32,
    },
    Jeq32X {
        d: u8,
        s: u8,
        t: u32,
    },
    Jne32X {
        d: u8,
        s: u8,
        t: u32,
    },
    Jgt32X {
        d: u8,
        s: u8,
        t: u32,
    },
    Jge32X {
        d: u8,
        s: u8,
        t: u32,
    },
    Jlt32X {
        d: u8,
        s: u8,
        t: u32,
    },
    Jle32X {
        d: u8,
        s: u8,
        t: u32,
    },
    Jsgt32X {
        d: u8,
        s: u8,
        t: u32,
    },
    Jsge32X {
        d: u8,
        s: u8,
        t: u32,
    },
    Jslt32X {
        d: u8,
        s: u8,
        t: u32,
    },
    Jsle32X {
        d: u8,
        s: u8,
        t: u32,
    },
    Jset32X {
        d: u8,
        s: u8,
        t: u32,
    },
    Jeq32K {
        d: u8,
        k: u32,
        t: u32,
    },
    Jne32K {
        d: u8,
        k: u32,
        t: u32,
    },
    Jgt32K {
        d: u8,
        k: u32,
        t: u32,
    },
    Jge32K {
        d: u8,
        k: u32,
        t: u32,
    },
    Jlt32K {
        d: u8,
        k: u32,
        t: u32,
    },
    Jle32K {
        d: u8,
        k: u32,
        t: u32,
    },
    Jsgt32K {
        d: u8,
        k: u32,
        t: u32,
    },
    Jsge32K {
        d: u8,
        k: u32,
        t: u32,
    },
    Jslt32K {
        d: u8,
        k: u32,
        t: u32,
    },
    Jsle32K {
        d: u8,
        k: u32,
        t: u32,
    },
    Jset32K {
        d: u8,
        k: u32,
        t: u32,
    },
    /// `goto`/`gotol`.
    Ja {
        t: u32,
    },
    /// Jump once the frame's loop budget is spent, else spend one unit.
    MayGoto {
        t: u32,
    },
    /// bpf-to-bpf call of the subprogram starting at instruction `t`.
    Call {
        t: u32,
    },
    /// Helper call (never `bpf_tail_call`, which is [`Inst::TailCall`]).
    Helper {
        id: i32,
    },
    /// `bpf_tail_call(ctx, prog_array, index)`.
    TailCall,
    /// kfunc call.
    Kfunc {
        btf_id: u32,
        off: i16,
    },
    Exit,

    LdB {
        d: u8,
        s: u8,
        off: i16,
    },
    LdH {
        d: u8,
        s: u8,
        off: i16,
    },
    LdW {
        d: u8,
        s: u8,
        off: i16,
    },
    LdDW {
        d: u8,
        s: u8,
        off: i16,
    },
    LdSxB {
        d: u8,
        s: u8,
        off: i16,
    },
    LdSxH {
        d: u8,
        s: u8,
        off: i16,
    },
    LdSxW {
        d: u8,
        s: u8,
        off: i16,
    },
    StBX {
        d: u8,
        s: u8,
        off: i16,
    },
    StHX {
        d: u8,
        s: u8,
        off: i16,
    },
    StWX {
        d: u8,
        s: u8,
        off: i16,
    },
    StDWX {
        d: u8,
        s: u8,
        off: i16,
    },
    StBK {
        d: u8,
        off: i16,
        k: u64,
    },
    StHK {
        d: u8,
        off: i16,
        k: u64,
    },
    StWK {
        d: u8,
        off: i16,
        k: u64,
    },
    StDWK {
        d: u8,
        off: i16,
        k: u64,
    },
    /// Read-modify-write on 32 (`wide == false`) or 64 bits.
    Atomic {
        op: AtomicOp,
        wide: bool,
        d: u8,
        s: u8,
        off: i16,
    },
    LoadAcquire {
        width: Width,
        d: u8,
        s: u8,
        off: i16,
    },
    StoreRelease {
        width: Width,
        d: u8,
        s: u8,
        off: i16,
    },
    /// `dst =` the callback address of the subprogram at instruction `t`.
    LdFunc {
        d: u8,
        t: u32,
    },
    /// `dst =` what the environment resolves `imm64[idx]` to.
    LdImm64Env {
        d: u8,
        idx: u32,
    },
    LdAbs {
        width: Width,
        k: i32,
    },
    LdInd {
        width: Width,
        s: u8,
        k: i32,
    },
    /// `dst = *(width *)(src + off)` as a probe (`BPF_PROBE_MEM`, or
    /// `BPF_PROBE_MEMSX` when `signed`): the environment reads it if it
    /// can, else `dst = 0`.
    ProbeLoad {
        width: Width,
        signed: bool,
        d: u8,
        s: u8,
        off: i16,
    },
    /// Reports `traps[idx]`.
    Trap {
        idx: u32,
    },
}

struct Lowering<'a> {
    prog: &'a Program,
    n: usize,
    traps: Vec<Trap>,
    imm64: Vec<(usize, Imm64)>,
}

/// The slot `pc + off + 1`, as the kernel computes jump targets.
fn relative(pc: usize, off: i64) -> i64 {
    i64::try_from(pc)
        .unwrap_or(i64::MAX)
        .saturating_add(off)
        .saturating_add(1)
}

fn r(reg: Reg) -> u8 {
    reg.num()
}

impl Lowering<'_> {
    /// Index of a new trap instruction reporting `trap`: traps come after
    /// the ops and the fall-off-the-end trap.
    fn trap(&mut self, trap: Trap) -> u32 {
        self.traps.push(trap);
        u32::try_from(self.n + self.traps.len()).unwrap_or(u32::MAX)
    }

    fn trap_inst(&mut self, trap: Trap) -> Inst {
        // `trap()` returns an instruction index; the trap table index is
        // one less than its position after the fall-off trap.
        self.traps.push(trap);
        Inst::Trap {
            idx: u32::try_from(self.traps.len()).unwrap_or(u32::MAX),
        }
    }

    /// The instruction index a jump at `pc` with offset `off` lands on; a
    /// trap reporting [`Trap::BadJump`] when that is not an instruction.
    fn jump(&mut self, pc: usize, off: i64) -> u32 {
        let target = relative(pc, off);
        let idx = usize::try_from(target).ok().and_then(|slot| {
            if slot == self.prog.slot_count() {
                Some(self.n)
            } else {
                self.prog.index_of_pc(slot)
            }
        });
        match idx.and_then(|i| u32::try_from(i).ok()) {
            Some(i) => i,
            None => self.trap(Trap::BadJump { pc, target }),
        }
    }

    /// The instruction index of the subprogram a call or `BPF_PSEUDO_FUNC`
    /// at `pc` names, or the target slot when it names none.
    fn subprog(&self, pc: usize, off: i64) -> Result<u32, i64> {
        let target = relative(pc, off);
        usize::try_from(target)
            .ok()
            .and_then(|slot| self.prog.index_of_pc(slot))
            .and_then(|i| u32::try_from(i).ok())
            .ok_or(target)
    }

    fn lower(&mut self, pc: usize, op: Op) -> Inst {
        match op {
            Op::Alu { bits, op, dst, src } => alu(bits, op, r(dst), src),
            Op::Neg { bits, dst } => match bits {
                Bits::B64 => Inst::Neg64 { d: r(dst) },
                Bits::B32 => Inst::Neg32 { d: r(dst) },
            },
            Op::MovSx {
                bits,
                dst,
                src,
                from,
            } => match bits {
                Bits::B64 => Inst::MovSx64 {
                    d: r(dst),
                    s: r(src),
                    from,
                },
                Bits::B32 => Inst::MovSx32 {
                    d: r(dst),
                    s: r(src),
                    from,
                },
            },
            Op::End { order, width, dst } => {
                // Conversion to the host's own order truncates; to the
                // other order swaps.
                let native = match order {
                    Endian::Le => cfg!(target_endian = "little"),
                    Endian::Be => cfg!(target_endian = "big"),
                };
                let d = r(dst);
                match (native, width) {
                    (true, Width::B | Width::H) => Inst::Trunc16 { d },
                    (true, Width::W) => Inst::Trunc32 { d },
                    (true, Width::DW) => Inst::Nop,
                    (false, w) => swap(w, d),
                }
            }
            Op::Bswap { width, dst } => swap(width, r(dst)),
            Op::AddrSpaceCast { .. } => self.trap_inst(Trap::Unsupported {
                pc,
                what: "addr_space_cast (arena memory)",
            }),
            Op::Jmp {
                bits,
                cond,
                dst,
                src,
                off,
            } => {
                let t = self.jump(pc, i64::from(off));
                jmp(bits, cond, r(dst), src, t)
            }
            Op::Ja { off } => Inst::Ja {
                t: self.jump(pc, i64::from(off)),
            },
            Op::Gotol { off } => Inst::Ja {
                t: self.jump(pc, i64::from(off)),
            },
            Op::MayGoto { off } => Inst::MayGoto {
                t: self.jump(pc, i64::from(off)),
            },
            Op::Call(CallTarget::Local { offset }) => match self.subprog(pc, i64::from(offset)) {
                Ok(t) => Inst::Call { t },
                Err(target) => self.trap_inst(Trap::BadCallTarget { pc, target }),
            },
            Op::Call(CallTarget::Helper { id }) if id == BPF_FUNC_TAIL_CALL => Inst::TailCall,
            Op::Call(CallTarget::Helper { id }) => Inst::Helper { id },
            Op::Call(CallTarget::Kfunc { btf_id, btf_fd_idx }) => Inst::Kfunc {
                btf_id,
                off: btf_fd_idx,
            },
            Op::Exit => Inst::Exit,
            Op::Load {
                width,
                dst,
                src,
                off,
            } => {
                let (d, s) = (r(dst), r(src));
                match width {
                    Width::B => Inst::LdB { d, s, off },
                    Width::H => Inst::LdH { d, s, off },
                    Width::W => Inst::LdW { d, s, off },
                    Width::DW => Inst::LdDW { d, s, off },
                }
            }
            Op::LoadSx {
                width,
                dst,
                src,
                off,
            } => {
                let (d, s) = (r(dst), r(src));
                match width {
                    Width::B => Inst::LdSxB { d, s, off },
                    Width::H => Inst::LdSxH { d, s, off },
                    // Decoding never produces a 64-bit sign-extending load;
                    // it would be a plain load.
                    Width::W => Inst::LdSxW { d, s, off },
                    Width::DW => Inst::LdDW { d, s, off },
                }
            }
            Op::Store {
                width,
                dst,
                off,
                src,
            } => store(width, r(dst), off, src),
            Op::Atomic {
                width,
                op,
                dst,
                off,
                src,
            } => match width {
                Width::W | Width::DW => Inst::Atomic {
                    op,
                    wide: width == Width::DW,
                    d: r(dst),
                    s: r(src),
                    off,
                },
                Width::B | Width::H => self.trap_inst(Trap::Unsupported {
                    pc,
                    what: "atomic read-modify-write narrower than 32 bits",
                }),
            },
            Op::LoadAcquire {
                width,
                dst,
                src,
                off,
            } => Inst::LoadAcquire {
                width,
                d: r(dst),
                s: r(src),
                off,
            },
            Op::StoreRelease {
                width,
                dst,
                off,
                src,
            } => Inst::StoreRelease {
                width,
                d: r(dst),
                s: r(src),
                off,
            },
            Op::LdImm64 {
                dst,
                imm: Imm64::Const(k),
            } => Inst::Mov64K { d: r(dst), k },
            Op::LdImm64 {
                dst,
                imm: Imm64::Func { offset },
            } => match self.subprog(pc, i64::from(offset)) {
                Ok(t) => Inst::LdFunc { d: r(dst), t },
                Err(target) => self.trap_inst(Trap::BadCallTarget { pc, target }),
            },
            Op::LdImm64 { dst, imm } => {
                self.imm64.push((pc, imm));
                Inst::LdImm64Env {
                    d: r(dst),
                    idx: u32::try_from(self.imm64.len() - 1).unwrap_or(u32::MAX),
                }
            }
            Op::LdAbs { width, imm } => Inst::LdAbs { width, k: imm },
            Op::LdInd { width, src, imm } => Inst::LdInd {
                width,
                s: r(src),
                k: imm,
            },
        }
    }
}

fn swap(width: Width, d: u8) -> Inst {
    match width {
        Width::B | Width::H => Inst::Swap16 { d },
        Width::W => Inst::Swap32 { d },
        Width::DW => Inst::Swap64 { d },
    }
}

fn store(width: Width, d: u8, off: i16, src: Source) -> Inst {
    match src {
        Source::Reg(s) => {
            let s = r(s);
            match width {
                Width::B => Inst::StBX { d, s, off },
                Width::H => Inst::StHX { d, s, off },
                Width::W => Inst::StWX { d, s, off },
                Width::DW => Inst::StDWX { d, s, off },
            }
        }
        Source::Imm(imm) => {
            // The immediate is sign-extended to 64 bits; narrower stores
            // keep its low bytes.
            let k = imm as i64 as u64;
            match width {
                Width::B => Inst::StBK { d, off, k },
                Width::H => Inst::StHK { d, off, k },
                Width::W => Inst::StWK { d, off, k },
                Width::DW => Inst::StDWK { d, off, k },
            }
        }
    }
}

fn alu(bits: Bits, op: AluOp, d: u8, src: Source) -> Inst {
    use AluOp::*;
    match (bits, src) {
        (Bits::B64, Source::Reg(s)) => {
            let s = r(s);
            match op {
                Add => Inst::Add64X { d, s },
                Sub => Inst::Sub64X { d, s },
                Mul => Inst::Mul64X { d, s },
                Div => Inst::Div64X { d, s },
                SDiv => Inst::SDiv64X { d, s },
                Mod => Inst::Mod64X { d, s },
                SMod => Inst::SMod64X { d, s },
                Or => Inst::Or64X { d, s },
                And => Inst::And64X { d, s },
                Xor => Inst::Xor64X { d, s },
                Lsh => Inst::Lsh64X { d, s },
                Rsh => Inst::Rsh64X { d, s },
                Arsh => Inst::Arsh64X { d, s },
                Mov => Inst::Mov64X { d, s },
            }
        }
        (Bits::B64, Source::Imm(imm)) => {
            let k = imm as i64 as u64;
            match op {
                Add => Inst::Add64K { d, k },
                Sub => Inst::Sub64K { d, k },
                Mul => Inst::Mul64K { d, k },
                Div => Inst::Div64K { d, k },
                SDiv => Inst::SDiv64K { d, k },
                Mod => Inst::Mod64K { d, k },
                SMod => Inst::SMod64K { d, k },
                Or => Inst::Or64K { d, k },
                And => Inst::And64K { d, k },
                Xor => Inst::Xor64K { d, k },
                Lsh => Inst::Lsh64K { d, k: k & 63 },
                Rsh => Inst::Rsh64K { d, k: k & 63 },
                Arsh => Inst::Arsh64K { d, k: k & 63 },
                Mov => Inst::Mov64K { d, k },
            }
        }
        (Bits::B32, Source::Reg(s)) => {
            let s = r(s);
            match op {
                Add => Inst::Add32X { d, s },
                Sub => Inst::Sub32X { d, s },
                Mul => Inst::Mul32X { d, s },
                Div => Inst::Div32X { d, s },
                SDiv => Inst::SDiv32X { d, s },
                Mod => Inst::Mod32X { d, s },
                SMod => Inst::SMod32X { d, s },
                Or => Inst::Or32X { d, s },
                And => Inst::And32X { d, s },
                Xor => Inst::Xor32X { d, s },
                Lsh => Inst::Lsh32X { d, s },
                Rsh => Inst::Rsh32X { d, s },
                Arsh => Inst::Arsh32X { d, s },
                Mov => Inst::Mov32X { d, s },
            }
        }
        (Bits::B32, Source::Imm(imm)) => {
            let k = imm as u32;
            match op {
                Add => Inst::Add32K { d, k },
                Sub => Inst::Sub32K { d, k },
                Mul => Inst::Mul32K { d, k },
                Div => Inst::Div32K { d, k },
                SDiv => Inst::SDiv32K { d, k },
                Mod => Inst::Mod32K { d, k },
                SMod => Inst::SMod32K { d, k },
                Or => Inst::Or32K { d, k },
                And => Inst::And32K { d, k },
                Xor => Inst::Xor32K { d, k },
                Lsh => Inst::Lsh32K { d, k: k & 31 },
                Rsh => Inst::Rsh32K { d, k: k & 31 },
                Arsh => Inst::Arsh32K { d, k: k & 31 },
                Mov => Inst::Mov32K { d, k },
            }
        }
    }
}

fn jmp(bits: Bits, cond: Cond, d: u8, src: Source, t: u32) -> Inst {
    use Cond::*;
    match (bits, src) {
        (Bits::B64, Source::Reg(s)) => {
            let s = r(s);
            match cond {
                Eq => Inst::Jeq64X { d, s, t },
                Ne => Inst::Jne64X { d, s, t },
                Gt => Inst::Jgt64X { d, s, t },
                Ge => Inst::Jge64X { d, s, t },
                Lt => Inst::Jlt64X { d, s, t },
                Le => Inst::Jle64X { d, s, t },
                Sgt => Inst::Jsgt64X { d, s, t },
                Sge => Inst::Jsge64X { d, s, t },
                Slt => Inst::Jslt64X { d, s, t },
                Sle => Inst::Jsle64X { d, s, t },
                Set => Inst::Jset64X { d, s, t },
            }
        }
        (Bits::B64, Source::Imm(imm)) => {
            let k = imm as i64 as u64;
            match cond {
                Eq => Inst::Jeq64K { d, k, t },
                Ne => Inst::Jne64K { d, k, t },
                Gt => Inst::Jgt64K { d, k, t },
                Ge => Inst::Jge64K { d, k, t },
                Lt => Inst::Jlt64K { d, k, t },
                Le => Inst::Jle64K { d, k, t },
                Sgt => Inst::Jsgt64K { d, k, t },
                Sge => Inst::Jsge64K { d, k, t },
                Slt => Inst::Jslt64K { d, k, t },
                Sle => Inst::Jsle64K { d, k, t },
                Set => Inst::Jset64K { d, k, t },
            }
        }
        (Bits::B32, Source::Reg(s)) => {
            let s = r(s);
            match cond {
                Eq => Inst::Jeq32X { d, s, t },
                Ne => Inst::Jne32X { d, s, t },
                Gt => Inst::Jgt32X { d, s, t },
                Ge => Inst::Jge32X { d, s, t },
                Lt => Inst::Jlt32X { d, s, t },
                Le => Inst::Jle32X { d, s, t },
                Sgt => Inst::Jsgt32X { d, s, t },
                Sge => Inst::Jsge32X { d, s, t },
                Slt => Inst::Jslt32X { d, s, t },
                Sle => Inst::Jsle32X { d, s, t },
                Set => Inst::Jset32X { d, s, t },
            }
        }
        (Bits::B32, Source::Imm(imm)) => {
            let k = imm as u32;
            match cond {
                Eq => Inst::Jeq32K { d, k, t },
                Ne => Inst::Jne32K { d, k, t },
                Gt => Inst::Jgt32K { d, k, t },
                Ge => Inst::Jge32K { d, k, t },
                Lt => Inst::Jlt32K { d, k, t },
                Le => Inst::Jle32K { d, k, t },
                Sgt => Inst::Jsgt32K { d, k, t },
                Sge => Inst::Jsge32K { d, k, t },
                Slt => Inst::Jslt32K { d, k, t },
                Sle => Inst::Jsle32K { d, k, t },
                Set => Inst::Jset32K { d, k, t },
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use structops_isa::assemble;

    #[test]
    fn instructions_stay_small() {
        // One cache line holds four instructions.
        assert!(std::mem::size_of::<Inst>() <= 16);
    }

    #[test]
    fn jumps_resolve_to_instruction_indices_across_ld_imm64() {
        let prog = assemble("r1 = 0x1122334455667788\nif r1 == 0 goto pc+2\nr0 = 1 ll\nexit")
            .expect("assembles");
        let code = Code::new(&prog);
        // Slot 2 jumps to slot 5 (pc + 2 + 1), which is op 3 (`exit`).
        assert!(matches!(code.inner.insts[1], Inst::Jeq64K { t: 3, .. }));
        assert_eq!(code.slot_count(), 6);
        assert_eq!(code.len(), 4);
        assert_eq!(code.inner.slot_of(3), 5);
    }

    #[test]
    fn bad_targets_become_traps_that_name_the_jump() {
        // Jump into the second slot of the LD_IMM64, and past the end.
        let prog = assemble("if r1 == 0 goto pc+1\nr0 = 0 ll\nif r1 == 1 goto pc+5\nexit")
            .expect("assembles");
        let code = Code::new(&prog);
        let Inst::Jeq64K { t, .. } = code.inner.insts[0] else {
            panic!("not a jump: {:?}", code.inner.insts[0]);
        };
        let Inst::Trap { idx } = code.inner.insts[t as usize] else {
            panic!("not a trap");
        };
        assert!(matches!(
            code.inner.traps[idx as usize],
            Trap::BadJump { pc: 0, target: 2 }
        ));
        let Inst::Jeq64K { t, .. } = code.inner.insts[2] else {
            panic!("not a jump");
        };
        let Inst::Trap { idx } = code.inner.insts[t as usize] else {
            panic!("not a trap");
        };
        assert!(matches!(
            code.inner.traps[idx as usize],
            Trap::BadJump { pc: 3, target: 9 }
        ));
    }

    #[test]
    fn jump_to_the_end_reaches_the_fall_off_trap() {
        let prog = assemble("if r1 == 0 goto pc+1\nexit").expect("assembles");
        let code = Code::new(&prog);
        let Inst::Jeq64K { t, .. } = code.inner.insts[0] else {
            panic!("not a jump");
        };
        assert_eq!(t, 2);
        assert!(matches!(code.inner.insts[2], Inst::Trap { idx: 0 }));
        assert!(matches!(code.inner.traps[0], Trap::FellOffEnd { pc: 2 }));
    }
}
