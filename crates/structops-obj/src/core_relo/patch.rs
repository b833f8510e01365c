//! Applying a resolved relocation to its instruction (`bpf_core_patch_insn`) and
//! poisoning instructions whose relocation could not be resolved
//! (`bpf_core_poison_insn`).

use structops_btf::ext::CoreRelo;
use structops_isa::{Insn, opcode};

use super::calc::ReloValues;
use super::error::{CoreError, Result};

/// The immediate of a poisoned instruction: `call 0xbad2310` ("bad relo"). If the
/// instruction is reachable the verifier rejects it with
/// `invalid func unknown#195896080`; if it is dead code it is removed.
pub const POISON_IMM: i32 = 0x0bad_2310;

/// Which instruction field a patch rewrote.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PatchedField {
    /// The 32-bit immediate of an ALU/ALU64 instruction with a constant operand.
    Imm,
    /// The 16-bit offset of a load or store.
    Off,
    /// The 64-bit immediate of an `LD_IMM64` (both slots).
    Imm64,
}

/// Why an instruction was poisoned instead of patched.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PoisonReason {
    /// No target candidate matched and the relocation kind has no "missing" value.
    Unresolved,
    /// A load/store's access size would have to change for a field whose type does
    /// not allow that (libbpf: "accesses field incorrectly").
    BadMemSize,
}

/// What [`patch`] did to the instruction.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PatchOutcome {
    /// The field was rewritten from `old` to `new`.
    Patched {
        /// The rewritten field.
        field: PatchedField,
        /// Its previous value (sign-extended for `imm`/`off`).
        old: i64,
        /// The new value.
        new: u64,
        /// `(old, new)` access size in bytes when a load/store's size was changed too.
        mem_size: Option<(u32, u32)>,
    },
    /// The instruction (both slots of an `LD_IMM64`) was replaced by `call 0xbad2310`.
    Poisoned {
        /// Why.
        reason: PoisonReason,
        /// How many slots were overwritten (1, or 2 for `LD_IMM64`).
        slots: usize,
    },
}

fn is_ld_imm64(insn: &Insn) -> bool {
    insn.code == opcode::LD_IMM64
}

/// Replaces the instruction at `insn_idx` (both slots for `LD_IMM64`) with an invalid
/// helper call, keeping the program's length and jump targets intact.
fn poison(insns: &mut [Insn], insn_idx: usize, reason: PoisonReason) -> PatchOutcome {
    let slots = match insns.get(insn_idx) {
        Some(i) if is_ld_imm64(i) => 2,
        _ => 1,
    };
    for slot in insns.iter_mut().skip(insn_idx).take(slots) {
        *slot = Insn::new(opcode::CALL_CODE, 0, 0, 0, POISON_IMM);
    }
    PatchOutcome::Poisoned { reason, slots }
}

fn size_bytes(code: u8) -> i32 {
    match code & 0x18 {
        opcode::DW => 8,
        opcode::W => 4,
        opcode::H => 2,
        _ => 1,
    }
}

fn size_code(bytes: u32) -> Option<u8> {
    match bytes {
        8 => Some(opcode::DW),
        4 => Some(opcode::W),
        2 => Some(opcode::H),
        1 => Some(opcode::B),
        _ => None,
    }
}

/// The section-relative instruction index a relocation record names (`insn_off / 8`);
/// libbpf rejects offsets that are not a multiple of 8.
pub fn relo_insn_index(relo: &CoreRelo) -> Result<usize> {
    if !relo.insn_off.is_multiple_of(8) {
        return Err(CoreError::MisalignedInsnOff {
            insn_off: relo.insn_off,
        });
    }
    Ok((relo.insn_off / 8) as usize)
}

/// Checks that the instruction at `insn_idx` exists and, for an `LD_IMM64`, that its
/// second slot does too (libbpf checks this before resolving the relocation).
pub fn check_insn(insns: &[Insn], insn_idx: usize) -> Result<()> {
    let insn = insns.get(insn_idx).ok_or(CoreError::InsnOutOfRange {
        insn_idx,
        len: insns.len(),
    })?;
    if is_ld_imm64(insn) && insn_idx + 1 >= insns.len() {
        return Err(CoreError::LdImm64Truncated { insn_idx });
    }
    Ok(())
}

/// Patches the instruction at `insn_idx` of `insns` (a program's instructions, in the
/// program's own numbering) with a resolved relocation. Mirrors `bpf_core_patch_insn`:
///
/// - ALU/ALU64 with an immediate operand: `imm` is checked against `orig_val` (when
///   `validate`) and replaced by `new_val` (truncated to 32 bits);
/// - LDX/ST/STX: `off` is checked and replaced (it must fit in `i16`); when the field's
///   size changed the access size is changed too, or the instruction is poisoned if
///   the field's type does not allow that;
/// - `LD_IMM64` (plain, no pseudo source): the 64-bit immediate across both slots.
///
/// A poisoned relocation turns the instruction into `call 0xbad2310` instead. On error
/// the instructions are left unchanged.
pub fn patch(insns: &mut [Insn], insn_idx: usize, res: &ReloValues) -> Result<PatchOutcome> {
    check_insn(insns, insn_idx)?;
    let insn = insns.get(insn_idx).copied().unwrap_or_default();
    let unrecognized = CoreError::UnrecognizedInsn {
        insn_idx,
        code: insn.code,
        src: insn.src_reg(),
        dst: insn.dst_reg(),
        off: insn.off,
        imm: insn.imm,
    };
    match opcode::class(insn.code) {
        opcode::ALU | opcode::ALU64 => {
            if insn.code & opcode::X != 0 {
                return Err(unrecognized);
            }
            if res.poison {
                return Ok(poison(insns, insn_idx, PoisonReason::Unresolved));
            }
            let got = i64::from(insn.imm);
            if res.validate && got as u64 != res.orig_val {
                return Err(CoreError::UnexpectedValue {
                    insn_idx,
                    class: "ALU/ALU64",
                    got,
                    expected: res.orig_val,
                    new: res.new_val,
                });
            }
            if let Some(slot) = insns.get_mut(insn_idx) {
                slot.imm = res.new_val as i32;
            }
            Ok(PatchOutcome::Patched {
                field: PatchedField::Imm,
                old: got,
                new: res.new_val,
                mem_size: None,
            })
        }
        opcode::LDX | opcode::ST | opcode::STX => {
            if res.poison {
                return Ok(poison(insns, insn_idx, PoisonReason::Unresolved));
            }
            let got = i64::from(insn.off);
            if res.validate && got as u64 != res.orig_val {
                return Err(CoreError::UnexpectedValue {
                    insn_idx,
                    class: "LDX/ST/STX",
                    got,
                    expected: res.orig_val,
                    new: res.new_val,
                });
            }
            if res.new_val > i16::MAX as u64 {
                return Err(CoreError::OffsetTooBig {
                    insn_idx,
                    value: res.new_val,
                });
            }
            if res.fail_memsz_adjust {
                return Ok(poison(insns, insn_idx, PoisonReason::BadMemSize));
            }
            let mut code = insn.code;
            let mut mem_size = None;
            if res.new_sz != res.orig_sz {
                let have = size_bytes(insn.code);
                if i64::from(have) != i64::from(res.orig_sz) {
                    return Err(CoreError::UnexpectedMemSize {
                        insn_idx,
                        got: have,
                        expected: res.orig_sz,
                    });
                }
                let new_code = size_code(res.new_sz).ok_or(CoreError::InvalidNewMemSize {
                    insn_idx,
                    size: res.new_sz,
                })?;
                code = (insn.code & 0xe0) | new_code | opcode::class(insn.code);
                mem_size = Some((res.orig_sz, res.new_sz));
            }
            if let Some(slot) = insns.get_mut(insn_idx) {
                slot.off = res.new_val as i16;
                slot.code = code;
            }
            Ok(PatchOutcome::Patched {
                field: PatchedField::Off,
                old: got,
                new: res.new_val,
                mem_size,
            })
        }
        opcode::LD => {
            let next = insns.get(insn_idx + 1).copied();
            let well_formed = is_ld_imm64(&insn)
                && insn.src_reg() == 0
                && insn.off == 0
                && next.is_some_and(|n| {
                    n.code == 0 && n.dst_reg() == 0 && n.src_reg() == 0 && n.off == 0
                });
            let Some(next) = next.filter(|_| well_formed) else {
                return Err(CoreError::LdImm64Form { insn_idx });
            };
            if res.poison {
                return Ok(poison(insns, insn_idx, PoisonReason::Unresolved));
            }
            let imm = u64::from(insn.imm as u32) | (u64::from(next.imm as u32) << 32);
            if res.validate && imm != res.orig_val {
                return Err(CoreError::UnexpectedValue {
                    insn_idx,
                    class: "LDIMM64",
                    got: imm as i64,
                    expected: res.orig_val,
                    new: res.new_val,
                });
            }
            if let Some(slot) = insns.get_mut(insn_idx) {
                slot.imm = res.new_val as i32;
            }
            if let Some(slot) = insns.get_mut(insn_idx + 1) {
                slot.imm = (res.new_val >> 32) as i32;
            }
            Ok(PatchOutcome::Patched {
                field: PatchedField::Imm64,
                old: imm as i64,
                new: res.new_val,
                mem_size: None,
            })
        }
        _ => Err(unrecognized),
    }
}
