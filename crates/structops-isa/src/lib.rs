//! The eBPF instruction set, cpu v1 to v4: raw encoding, a typed [`Op`]
//! decoded once, a disassembler that prints exactly what
//! `bpftool prog dump xlated` prints, and a small assembler for tests.
//!
//! Every later stage of structops (object loader, verifier, interpreter,
//! JIT) matches on [`Op`] instead of picking opcode bits apart again.
//!
//! # Layout
//!
//! - [`insn`]: [`Insn`], the 8-byte `struct bpf_insn`, and byte parsing.
//! - [`opcode`]: the opcode field constants (`opcode::ALU64 | opcode::ADD`).
//! - [`op`]: [`Op`] and its operand types, and [`Op::encode`].
//! - [`decode`](mod@decode): [`decode()`] / [`Program`] with the kernel's structural
//!   checks and a typed [`DecodeError`].
//! - [`disasm`]: [`disassemble`] and the [`Symbolizer`] trait.
//! - [`asm`]: [`assemble`], the inverse of the disassembler.
//! - [`helpers`]: the kernel's helper names by id.
//!
//! # Example
//!
//! ```
//! use structops_isa::{decode, disasm::Bpftool, disassemble, Insn, Op, Reg, Source};
//!
//! // r0 = 0; r1 = r10; r1 += -4; exit
//! let bytes = [
//!     0xb7, 0x00, 0, 0, 0, 0, 0, 0,
//!     0xbf, 0xa1, 0, 0, 0, 0, 0, 0,
//!     0x07, 0x01, 0, 0, 0xfc, 0xff, 0xff, 0xff,
//!     0x95, 0x00, 0, 0, 0, 0, 0, 0,
//! ];
//! let insns = Insn::parse_slice(&bytes)?;
//! let prog = decode(&insns)?;
//!
//! match prog.ops()[2] {
//!     Op::Alu { dst, src: Source::Imm(imm), .. } => assert_eq!((dst, imm), (Reg::R1, -4)),
//!     other => panic!("unexpected {other:?}"),
//! }
//! assert_eq!(
//!     disassemble(&prog, &Bpftool),
//!     "   0: (b7) r0 = 0\n   1: (bf) r1 = r10\n   2: (07) r1 += -4\n   3: (95) exit\n",
//! );
//! assert_eq!(prog.encode(), insns);
//!
//! // The assembler reads the same syntax back.
//! let again = structops_isa::assemble("r0 = 0\nr1 = r10\nr1 += -4\nexit")?;
//! assert_eq!(again, prog);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

#![warn(missing_docs)]

pub mod asm;
pub mod decode;
pub mod disasm;
pub mod helpers;
pub mod insn;
pub mod op;
pub mod opcode;
pub mod reg;

pub use asm::{AsmError, assemble, assemble_line};
pub use decode::{DecodeError, Error, Field, Program, decode, decode_at};
pub use disasm::{Symbolizer, disassemble, format_op};
pub use helpers::{helper_id, helper_name};
pub use insn::{INSN_SIZE, Insn, ParseError};
pub use op::{AluOp, AtomicOp, Bits, CallTarget, Cond, Encoded, Endian, Imm64, Op, Source, Width};
pub use reg::Reg;
