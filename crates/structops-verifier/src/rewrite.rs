//! Rewrites after verification: splicing replacement instructions into a
//! verified program while keeping every relative reference right (the
//! kernel's `bpf_patch_insn_data` with `adjust_jmp_off`,
//! `adjust_subprog_starts` and `bpf_adj_linfo`).
//!
//! A [`Rewrite`] is a list of patches (old instruction index, replacement
//! instructions) plus the map from old to new instruction indices. It is
//! computed once, on the instructions the verifier checked, and can be
//! applied to any other form of the same program with the same slots (the
//! runtime's translated form, whose `LD_IMM64`s hold map addresses rather
//! than descriptors): jumps, bpf-to-bpf calls and `BPF_PSEUDO_FUNC` loads
//! outside the patches are re-aimed at the new index of their old target.
//! A jump to a patched instruction lands on the first instruction of its
//! replacement, as in the kernel.

use structops_isa::Insn;
use thiserror::Error;

/// `BPF_JMP`.
const CLASS_JMP: u8 = 0x05;
/// `BPF_JMP32`.
const CLASS_JMP32: u8 = 0x06;
/// `BPF_CALL`.
const OP_CALL: u8 = 0x80;
/// `BPF_EXIT`.
const OP_EXIT: u8 = 0x90;
/// `BPF_JA`.
const OP_JA: u8 = 0x00;
/// `BPF_LD | BPF_IMM | BPF_DW`.
const LD_IMM64: u8 = 0x18;
/// `BPF_PSEUDO_CALL`.
const PSEUDO_CALL: u8 = 1;
/// `BPF_PSEUDO_FUNC`.
const PSEUDO_FUNC: u8 = 4;

/// Why a [`Rewrite`] could not be applied.
#[derive(Clone, Debug, PartialEq, Eq, Error)]
pub enum RewriteError {
    /// The instructions are not the program the rewrite was computed for.
    #[error("rewrite of a {expected}-instruction program applied to {got} instructions")]
    Length {
        /// Instructions of the verified program.
        expected: usize,
        /// Instructions given.
        got: usize,
    },
    /// A relative reference no longer fits its field (the kernel's
    /// "insn N cannot be patched due to 16-bit range"), or points outside
    /// the program.
    #[error("insn {pc} cannot be patched due to 16-bit range")]
    Range {
        /// Old index of the instruction.
        pc: usize,
    },
}

/// Patches of a verified program and where each old instruction went.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Rewrite {
    /// `(old index, replacement)`, ascending by index.
    patches: Vec<(usize, Vec<Insn>)>,
    /// New index of each old index, plus the new length at the end.
    starts: Vec<usize>,
}

impl Rewrite {
    /// The rewrite of an `len`-instruction program replacing, for each
    /// `(index, insns)` of `patches`, the instruction at `index` by `insns`
    /// (non-empty; at most one patch per index).
    pub(crate) fn new(len: usize, mut patches: Vec<(usize, Vec<Insn>)>) -> Rewrite {
        patches.sort_by_key(|(at, _)| *at);
        patches.dedup_by_key(|(at, _)| *at);
        patches.retain(|(at, insns)| *at < len && !insns.is_empty());
        let mut starts = Vec::with_capacity(len + 1);
        let mut next = 0usize;
        let mut it = patches.iter().peekable();
        for i in 0..len {
            starts.push(next);
            match it.peek() {
                Some((at, insns)) if *at == i => {
                    next += insns.len();
                    it.next();
                }
                _ => next += 1,
            }
        }
        starts.push(next);
        Rewrite { patches, starts }
    }

    /// Whether nothing changes.
    pub fn is_identity(&self) -> bool {
        self.patches.is_empty()
    }

    /// The patched instruction indices (old numbering), ascending.
    pub fn patched(&self) -> impl Iterator<Item = usize> + '_ {
        self.patches.iter().map(|(at, _)| *at)
    }

    /// Instructions of the program before the rewrite.
    pub fn old_len(&self) -> usize {
        self.starts.len().saturating_sub(1)
    }

    /// Instructions after the rewrite.
    pub fn new_len(&self) -> usize {
        self.starts.last().copied().unwrap_or(0)
    }

    /// Where old instruction `old` starts after the rewrite (`old_len()`
    /// maps to the new length); `None` past the end.
    pub fn new_index(&self, old: usize) -> Option<usize> {
        self.starts.get(old).copied()
    }

    /// Applies the patches to `insns`, a form of the verified program with
    /// the same slots.
    ///
    /// # Errors
    ///
    /// [`RewriteError::Length`] for another program,
    /// [`RewriteError::Range`] when a moved reference no longer fits.
    pub fn apply(&self, insns: &[Insn]) -> Result<Vec<Insn>, RewriteError> {
        let n = self.old_len();
        if insns.len() != n {
            return Err(RewriteError::Length {
                expected: n,
                got: insns.len(),
            });
        }
        if self.is_identity() {
            return Ok(insns.to_vec());
        }
        let mut out = Vec::with_capacity(self.new_len());
        let mut patches = self.patches.iter().peekable();
        let mut i = 0;
        while i < n {
            if let Some((_, repl)) = patches.next_if(|(at, _)| *at == i) {
                out.extend_from_slice(repl);
                i += 1;
                continue;
            }
            let insn = insns[i];
            out.push(self.moved(i, insn)?);
            if insn.code == LD_IMM64 {
                // The second slot carries no reference.
                if let Some(&second) = insns.get(i + 1) {
                    out.push(second);
                }
                i += 2;
            } else {
                i += 1;
            }
        }
        Ok(out)
    }

    /// `insn`, old instruction `pc`, with its relative reference (if any)
    /// aimed at its old target's new index.
    fn moved(&self, pc: usize, insn: Insn) -> Result<Insn, RewriteError> {
        let class = insn.code & 0x07;
        let op = insn.code & 0xf0;
        let (rel, in_imm) = match class {
            CLASS_JMP if op == OP_CALL && insn.src_reg() == PSEUDO_CALL => {
                (i64::from(insn.imm), true)
            }
            CLASS_JMP | CLASS_JMP32 if op == OP_CALL => return Ok(insn),
            CLASS_JMP | CLASS_JMP32 if op == OP_EXIT => return Ok(insn),
            CLASS_JMP32 if op == OP_JA => (i64::from(insn.imm), true),
            CLASS_JMP | CLASS_JMP32 => (i64::from(insn.off), false),
            _ if insn.code == LD_IMM64 && insn.src_reg() == PSEUDO_FUNC => {
                (i64::from(insn.imm), true)
            }
            _ => return Ok(insn),
        };
        let target = pc as i64 + rel + 1;
        let range = RewriteError::Range { pc };
        let new_target = usize::try_from(target)
            .ok()
            .and_then(|t| self.new_index(t))
            .ok_or(range.clone())?;
        let new_pc = self.new_index(pc).ok_or(range.clone())?;
        let new_rel = new_target as i64 - new_pc as i64 - 1;
        let mut out = insn;
        if in_imm {
            out.imm = i32::try_from(new_rel).map_err(|_| range)?;
        } else {
            out.off = i16::try_from(new_rel).map_err(|_| range)?;
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use structops_isa::assemble;

    fn insns(src: &str) -> Vec<Insn> {
        assemble(src).unwrap().encode()
    }

    #[test]
    fn jumps_calls_and_func_loads_follow_their_targets() {
        // 0: r2 = *(u32 *)(r1 +0)      patched into 3 insns
        // 1: if r2 == 0 goto pc+2 (-> 4)
        // 2: call pc+3 (-> 6)
        // 3: goto pc-4 (-> 0, the patch's first insn)
        // 4: r0 = 0
        // 5: exit
        // 6: r0 = 1 (subprogram)
        // 7: exit
        let prog = insns(
            "r2 = *(u32 *)(r1 +0)\nif r2 == 0 goto pc+2\ncall pc+3\ngoto pc-4\nr0 = 0\nexit\nr0 = 1\nexit",
        );
        let repl = insns("r2 = *(u64 *)(r1 +24)\nr2 &= 255\nr2 += 1");
        let rw = Rewrite::new(prog.len(), vec![(0, repl.clone())]);
        assert_eq!((rw.old_len(), rw.new_len()), (8, 10));
        assert_eq!(rw.new_index(0), Some(0));
        assert_eq!(rw.new_index(1), Some(3));
        assert_eq!(rw.new_index(6), Some(8));
        assert_eq!(rw.new_index(8), Some(10));
        let out = rw.apply(&prog).unwrap();
        let expect = insns(
            "r2 = *(u64 *)(r1 +24)\nr2 &= 255\nr2 += 1\nif r2 == 0 goto pc+2\ncall pc+3\ngoto pc-6\nr0 = 0\nexit\nr0 = 1\nexit",
        );
        assert_eq!(out, expect);
        assert_eq!(
            rw.apply(&prog[..3]),
            Err(RewriteError::Length {
                expected: 8,
                got: 3
            })
        );
    }

    #[test]
    fn ld_imm64_func_and_gotol_are_moved_and_second_slots_kept() {
        // 0-1: r2 = subprog at 5 (BPF_PSEUDO_FUNC, imm 3)
        // 2: r1 = *(u32 *)(r1 +4)   patched into 2
        // 3: gotol +0 (-> 4)
        // 4: exit
        // 5: r0 = 0
        // 6: exit
        let mut prog = insns("r2 = 0 ll\nr1 = *(u32 *)(r1 +4)\nr0 = 0\nexit\nr0 = 0\nexit");
        prog[0] = Insn::new(LD_IMM64, 2, PSEUDO_FUNC, 0, 2);
        prog[3] = Insn::new(CLASS_JMP32 | OP_JA, 0, 0, 0, 0);
        let rw = Rewrite::new(
            prog.len(),
            vec![(2, insns("r1 = *(u64 *)(r1 +32)\nr1 += 0"))],
        );
        let out = rw.apply(&prog).unwrap();
        assert_eq!(out.len(), 8);
        assert_eq!((out[0].imm, out[1]), (3, prog[1]), "callback now at 6");
        assert_eq!(out[4].imm, 0, "gotol target moved with it");
    }

    #[test]
    fn offsets_that_no_longer_fit_are_refused() {
        let mut src = String::from("r2 = *(u32 *)(r1 +0)\nif r2 == 0 goto pc+32767\n");
        for _ in 0..32767 {
            src.push_str("r0 = 0\n");
        }
        src.push_str("exit");
        let prog = insns(&src);
        let rw = Rewrite::new(prog.len(), vec![(2, insns("r0 = 0\nr0 = 1"))]);
        assert_eq!(rw.apply(&prog), Err(RewriteError::Range { pc: 1 }));
    }
}
