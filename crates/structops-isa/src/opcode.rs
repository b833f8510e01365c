//! Opcode field constants of the eBPF instruction encoding.
//!
//! An eBPF opcode byte is split into fields whose meaning depends on the
//! instruction class (the low three bits):
//!
//! ```text
//! ALU / ALU64 / JMP / JMP32:  op (4 bits) | source (1 bit) | class (3 bits)
//! LD / LDX / ST / STX:        mode (3 bits) | size (2 bits) | class (3 bits)
//! ```
//!
//! The values mirror `include/uapi/linux/bpf_common.h` and
//! `include/uapi/linux/bpf.h`. Names drop the kernel's `BPF_` prefix because
//! they live in this module; combine them with `|` exactly as the kernel does
//! (`opcode::ALU64 | opcode::ADD | opcode::K`).

// ---------------------------------------------------------------------------
// Classes.

/// Class: non-register loads (`LD_IMM64`, legacy `LD_ABS`/`LD_IND`).
pub const LD: u8 = 0x00;
/// Class: register-based loads, `dst = *(size *)(src + off)`.
pub const LDX: u8 = 0x01;
/// Class: immediate stores, `*(size *)(dst + off) = imm`.
pub const ST: u8 = 0x02;
/// Class: register stores and atomics, `*(size *)(dst + off) = src`.
pub const STX: u8 = 0x03;
/// Class: 32-bit arithmetic on the low halves of registers (`wN`).
pub const ALU: u8 = 0x04;
/// Class: 64-bit jumps, calls and exit.
pub const JMP: u8 = 0x05;
/// Class: jumps that compare the low 32 bits of their operands.
pub const JMP32: u8 = 0x06;
/// Class: 64-bit arithmetic on full registers (`rN`).
pub const ALU64: u8 = 0x07;

// ---------------------------------------------------------------------------
// Sizes (load/store classes).

/// Size: 32-bit word.
pub const W: u8 = 0x00;
/// Size: 16-bit half word.
pub const H: u8 = 0x08;
/// Size: 8-bit byte.
pub const B: u8 = 0x10;
/// Size: 64-bit double word.
pub const DW: u8 = 0x18;

// ---------------------------------------------------------------------------
// Modes (load/store classes).

/// Mode: 64-bit immediate (`LD | IMM | DW`, two instruction slots).
pub const IMM: u8 = 0x00;
/// Mode: legacy packet load `r0 = *(size *)skb[imm]`.
pub const ABS: u8 = 0x20;
/// Mode: legacy packet load `r0 = *(size *)skb[src + imm]`.
pub const IND: u8 = 0x40;
/// Mode: regular memory access `*(size *)(reg + off)`.
pub const MEM: u8 = 0x60;
/// Mode: sign-extending load `dst = *(s8/s16/s32 *)(src + off)` (cpu v4).
pub const MEMSX: u8 = 0x80;
/// Mode: atomic read-modify-write; the operation is in `imm`.
pub const ATOMIC: u8 = 0xc0;

// ---------------------------------------------------------------------------
// Source operand bit (ALU/JMP classes).

/// Source: the immediate `imm` is the second operand.
pub const K: u8 = 0x00;
/// Source: the register `src` is the second operand.
pub const X: u8 = 0x08;

// ---------------------------------------------------------------------------
// ALU operations.

/// `dst += src`
pub const ADD: u8 = 0x00;
/// `dst -= src`
pub const SUB: u8 = 0x10;
/// `dst *= src`
pub const MUL: u8 = 0x20;
/// `dst /= src` (unsigned; signed when `off == 1`)
pub const DIV: u8 = 0x30;
/// `dst |= src`
pub const OR: u8 = 0x40;
/// `dst &= src`
pub const AND: u8 = 0x50;
/// `dst <<= src`
pub const LSH: u8 = 0x60;
/// `dst >>= src` (logical)
pub const RSH: u8 = 0x70;
/// `dst = -dst`
pub const NEG: u8 = 0x80;
/// `dst %= src` (unsigned; signed when `off == 1`)
pub const MOD: u8 = 0x90;
/// `dst ^= src`
pub const XOR: u8 = 0xa0;
/// `dst = src` (sign-extending from `off` bits when `off` is 8, 16 or 32)
pub const MOV: u8 = 0xb0;
/// `dst s>>= src` (arithmetic shift right)
pub const ARSH: u8 = 0xc0;
/// `dst = byte_swap(dst)`; direction in the source bit, width in `imm`
pub const END: u8 = 0xd0;

/// `END` source bit: convert to little endian (with `ALU64`: unconditional swap).
pub const TO_LE: u8 = 0x00;
/// `END` source bit: convert to big endian.
pub const TO_BE: u8 = 0x08;

/// `off` of `ALU64 | MOV | X` that makes it an arena `addr_space_cast`.
pub const ADDR_SPACE_CAST: i16 = 1;

// ---------------------------------------------------------------------------
// Jump operations.

/// `goto pc + off` (`JMP`) or `goto pc + imm` (`JMP32`, "gotol")
pub const JA: u8 = 0x00;
/// `if dst == src goto pc + off`
pub const JEQ: u8 = 0x10;
/// `if dst > src goto pc + off` (unsigned)
pub const JGT: u8 = 0x20;
/// `if dst >= src goto pc + off` (unsigned)
pub const JGE: u8 = 0x30;
/// `if dst & src goto pc + off`
pub const JSET: u8 = 0x40;
/// `if dst != src goto pc + off`
pub const JNE: u8 = 0x50;
/// `if dst s> src goto pc + off` (signed)
pub const JSGT: u8 = 0x60;
/// `if dst s>= src goto pc + off` (signed)
pub const JSGE: u8 = 0x70;
/// `call imm` (helper, bpf-to-bpf or kfunc, selected by `src_reg`)
pub const CALL: u8 = 0x80;
/// `return r0`
pub const EXIT: u8 = 0x90;
/// `if dst < src goto pc + off` (unsigned)
pub const JLT: u8 = 0xa0;
/// `if dst <= src goto pc + off` (unsigned)
pub const JLE: u8 = 0xb0;
/// `if dst s< src goto pc + off` (signed)
pub const JSLT: u8 = 0xc0;
/// `if dst s<= src goto pc + off` (signed)
pub const JSLE: u8 = 0xd0;
/// Conditional pseudo jump; the condition is in `src_reg` (`may_goto`)
pub const JCOND: u8 = 0xe0;

/// `JCOND` condition in `src_reg`: jump unless the loop budget is exhausted.
pub const MAY_GOTO: u8 = 0;

// ---------------------------------------------------------------------------
// Atomic operations (stored in `imm` of `STX | ATOMIC`).

/// Atomic flag: also load the old value into the source register.
pub const FETCH: i32 = 0x01;
/// `*(dst + off) += src` (atomic; same value as [`ADD`])
pub const ATOMIC_ADD: i32 = ADD as i32;
/// `*(dst + off) |= src` (atomic; same value as [`OR`])
pub const ATOMIC_OR: i32 = OR as i32;
/// `*(dst + off) &= src` (atomic; same value as [`AND`])
pub const ATOMIC_AND: i32 = AND as i32;
/// `*(dst + off) ^= src` (atomic; same value as [`XOR`])
pub const ATOMIC_XOR: i32 = XOR as i32;
/// `src = xchg(dst + off, src)`
pub const XCHG: i32 = 0xe0 | FETCH;
/// `r0 = cmpxchg(dst + off, r0, src)`
pub const CMPXCHG: i32 = 0xf0 | FETCH;
/// `dst = load_acquire(src + off)` (Linux 6.15+)
pub const LOAD_ACQ: i32 = 0x100;
/// `store_release(dst + off, src)` (Linux 6.15+)
pub const STORE_REL: i32 = 0x110;

// ---------------------------------------------------------------------------
// Pseudo sources of `LD_IMM64` (in `src_reg`).

/// `LD_IMM64` source: a plain 64-bit constant.
pub const PSEUDO_IMM: u8 = 0;
/// `LD_IMM64` source: `imm` is a map fd; loads the map pointer.
pub const PSEUDO_MAP_FD: u8 = 1;
/// `LD_IMM64` source: `imm` is a map fd, second `imm` an offset into its value.
pub const PSEUDO_MAP_VALUE: u8 = 2;
/// `LD_IMM64` source: `imm` is a kernel BTF id of a variable (ksym).
pub const PSEUDO_BTF_ID: u8 = 3;
/// `LD_IMM64` source: `imm` is the pc-relative offset of a callback function.
pub const PSEUDO_FUNC: u8 = 4;
/// `LD_IMM64` source: `imm` is an index into `fd_array`; loads the map pointer.
pub const PSEUDO_MAP_IDX: u8 = 5;
/// `LD_IMM64` source: `fd_array` index plus an offset into the map's value.
pub const PSEUDO_MAP_IDX_VALUE: u8 = 6;

// ---------------------------------------------------------------------------
// Pseudo sources of `CALL` (in `src_reg`).

/// `CALL` source: `imm` is a helper function id.
pub const CALL_HELPER: u8 = 0;
/// `CALL` source: `imm` is the pc-relative offset of a BPF subprogram.
pub const PSEUDO_CALL: u8 = 1;
/// `CALL` source: `imm` is a kfunc BTF id, `off` the `fd_array` index of its module BTF.
pub const PSEUDO_KFUNC_CALL: u8 = 2;

// ---------------------------------------------------------------------------
// Whole opcodes that stand alone.

/// `dst = imm64` (first slot of the two-slot 64-bit immediate load).
pub const LD_IMM64: u8 = LD | IMM | DW;
/// `call imm`.
pub const CALL_CODE: u8 = JMP | CALL;
/// `exit`.
pub const EXIT_CODE: u8 = JMP | EXIT;
/// `goto pc + off`.
pub const JA_CODE: u8 = JMP | JA;
/// `gotol pc + imm`.
pub const GOTOL_CODE: u8 = JMP32 | JA;
/// `may_goto pc + off`.
pub const MAY_GOTO_CODE: u8 = JMP | JCOND;

// ---------------------------------------------------------------------------
// Field extraction (the kernel's `BPF_CLASS`, `BPF_SIZE`, ... macros).

/// The class bits of an opcode (`BPF_CLASS`).
pub const fn class(code: u8) -> u8 {
    code & 0x07
}

/// The size bits of a load/store opcode (`BPF_SIZE`).
pub const fn size(code: u8) -> u8 {
    code & 0x18
}

/// The mode bits of a load/store opcode (`BPF_MODE`).
pub const fn mode(code: u8) -> u8 {
    code & 0xe0
}

/// The operation bits of an ALU/JMP opcode (`BPF_OP`).
pub const fn op(code: u8) -> u8 {
    code & 0xf0
}

/// The source bit of an ALU/JMP opcode (`BPF_SRC`).
pub const fn src(code: u8) -> u8 {
    code & 0x08
}

/// Number of addressable registers, r0 to r10 (`MAX_BPF_REG`).
pub const MAX_REG: u8 = 11;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn composed_opcodes_match_kernel_values() {
        assert_eq!(ALU64 | MOV | K, 0xb7);
        assert_eq!(ALU64 | MOV | X, 0xbf);
        assert_eq!(STX | MEM | W, 0x63);
        assert_eq!(LDX | MEM | W, 0x61);
        assert_eq!(JMP | JEQ | K, 0x15);
        assert_eq!(JMP32 | JEQ | K, 0x16);
        assert_eq!(CALL_CODE, 0x85);
        assert_eq!(EXIT_CODE, 0x95);
        assert_eq!(LD_IMM64, 0x18);
        assert_eq!(STX | ATOMIC | DW, 0xdb);
        assert_eq!(MAY_GOTO_CODE, 0xe5);
        assert_eq!(LDX | MEMSX | B, 0x91);
    }

    #[test]
    fn field_extraction() {
        assert_eq!(class(0xdb), STX);
        assert_eq!(size(0xdb), DW);
        assert_eq!(mode(0xdb), ATOMIC);
        assert_eq!(op(0x5f), AND);
        assert_eq!(src(0x5f), X);
    }
}
