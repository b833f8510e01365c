//! The disassembler: the kernel's `print_bpf_insn()` text, as
//! `bpftool prog dump xlated` prints it.
//!
//! The output matches `kernel/bpf/disasm.c` of Linux 6.12 character for
//! character (decimal ALU and store immediates, hex jump immediates, `%+d`
//! offsets, `w` registers for 32-bit ALU and jumps, `le`/`be`/`bswap`,
//! `s/=`, `(s8)` moves, `gotol`, `may_goto`), extended with the 6.15
//! spellings of `load_acquire` and `store_release`. Names that depend on the
//! environment (helpers, kfuncs, subprograms, maps) come from a
//! [`Symbolizer`]; [`Bpftool`] reproduces what `bpftool` prints without
//! kernel symbols, and [`Lossless`] adds spellings the
//! [assembler](crate::asm) needs to rebuild every op exactly.

use std::fmt::{self, Write as _};

use crate::decode::Program;
use crate::helpers::helper_name;
use crate::op::{AtomicOp, CallTarget, Endian, Imm64, Op, Source, Width};
use crate::reg::Reg;

/// Supplies names for the parts of an instruction that refer to things
/// outside it. Each method returns `None` to fall back to the kernel's own
/// default text; all methods default to `None` except [`Symbolizer::helper`],
/// which consults the built-in [helper table](crate::helpers).
pub trait Symbolizer {
    /// The name printed in `call NAME#id` for a helper call at `pc`.
    /// Without a name the kernel prints `unknown`.
    fn helper(&self, pc: usize, id: i32) -> Option<String> {
        let _ = pc;
        helper_name(id).map(str::to_owned)
    }

    /// The text after `call pc` for a bpf-to-bpf call at `pc` (for example
    /// `+5#my_subprog`). The default is the offset, `%+d`.
    fn local_call(&self, pc: usize, offset: i32) -> Option<String> {
        let _ = (pc, offset);
        None
    }

    /// The name printed in `call NAME#btf_id` for a kfunc call at `pc`.
    /// The default is `kernel-function`.
    fn kfunc(&self, pc: usize, btf_id: u32, btf_fd_idx: i16) -> Option<String> {
        let _ = (pc, btf_id, btf_fd_idx);
        None
    }

    /// The right-hand side of `rN = ...` for an `LD_IMM64` at `pc`. The
    /// default is bpftool's: `map[id:N]`, `map[id:N][0]+OFF`,
    /// `map[idx:N]+OFF`, `subprog[%+d]`, otherwise the 64-bit value in hex.
    fn imm64(&self, pc: usize, imm: &Imm64) -> Option<String> {
        let _ = (pc, imm);
        None
    }
}

/// What `bpftool prog dump xlated` prints when it cannot resolve kernel
/// symbols: helper names from the built-in table, `call pc%+d`,
/// `kernel-function` for kfuncs, and bpftool's `print_imm()` for `LD_IMM64`.
#[derive(Clone, Copy, Debug, Default)]
pub struct Bpftool;

impl Symbolizer for Bpftool {}

/// Like [`Bpftool`], but spells the few operands bpftool prints ambiguously
/// so that the [assembler](crate::asm) can rebuild every op exactly:
/// `btf[id:N]` / `btf[id:N][fd:M]` for `BPF_PSEUDO_BTF_ID`, `map[idx:N]` for
/// `BPF_PSEUDO_MAP_IDX`, and `kernel-function[M]` for kfuncs whose module
/// BTF index `M` is not 0. [`Op`]'s `Display` uses it.
#[derive(Clone, Copy, Debug, Default)]
pub struct Lossless;

impl Symbolizer for Lossless {
    fn kfunc(&self, _pc: usize, _btf_id: u32, btf_fd_idx: i16) -> Option<String> {
        (btf_fd_idx != 0).then(|| format!("kernel-function[{btf_fd_idx}]"))
    }

    fn imm64(&self, _pc: usize, imm: &Imm64) -> Option<String> {
        match *imm {
            Imm64::BtfId { btf_id, btf_fd: 0 } => Some(format!("btf[id:{btf_id}]")),
            Imm64::BtfId { btf_id, btf_fd } => Some(format!("btf[id:{btf_id}][fd:{btf_fd}]")),
            Imm64::MapIdx { idx } => Some(format!("map[idx:{idx}]")),
            _ => None,
        }
    }
}

/// bpftool's `print_imm()` for the pseudo sources it names.
fn default_imm64(imm: &Imm64) -> String {
    match *imm {
        Imm64::MapFd { fd } => format!("map[id:{}]", fd as u32),
        Imm64::MapValue { fd, offset } => format!("map[id:{}][0]+{offset}", fd as u32),
        Imm64::MapIdxValue { idx, offset } => format!("map[idx:{idx}]+{offset}"),
        Imm64::Func { offset } => format!("subprog[{offset:+}]"),
        _ => format!("{:#x}", imm.raw()),
    }
}

fn mem(width: Width, base: Reg, off: i16) -> String {
    format!("*({} *)({base} {off:+})", width.unsigned_name())
}

fn atomic_suffix(width: Width) -> &'static str {
    if width == Width::DW { "64" } else { "" }
}

/// Writes the instruction text after the `(code) ` prefix.
fn write_text(out: &mut String, op: &Op, pc: usize, sym: &dyn Symbolizer) -> fmt::Result {
    match *op {
        Op::Alu { bits, op, dst, src } => {
            let p = bits.reg_prefix();
            match src {
                Source::Imm(imm) => write!(out, "{p}{} {} {imm}", dst.num(), op.symbol()),
                Source::Reg(s) => write!(out, "{p}{} {} {p}{}", dst.num(), op.symbol(), s.num()),
            }
        }
        Op::Neg { bits, dst } => {
            let p = bits.reg_prefix();
            write!(out, "{p}{0} = -{p}{0}", dst.num())
        }
        Op::MovSx {
            bits,
            dst,
            src,
            from,
        } => {
            let p = bits.reg_prefix();
            write!(
                out,
                "{p}{} = ({}){p}{}",
                dst.num(),
                from.signed_name(),
                src.num()
            )
        }
        Op::End { order, width, dst } => {
            let o = match order {
                Endian::Le => "le",
                Endian::Be => "be",
            };
            write!(out, "{dst} = {o}{} {dst}", width.bits())
        }
        Op::Bswap { width, dst } => write!(out, "{dst} = bswap{} {dst}", width.bits()),
        Op::AddrSpaceCast {
            dst,
            src,
            dst_as,
            src_as,
        } => write!(out, "{dst} = addr_space_cast({src}, {dst_as}, {src_as})"),
        Op::Jmp {
            bits,
            cond,
            dst,
            src,
            off,
        } => {
            let p = bits.reg_prefix();
            match src {
                Source::Imm(imm) => write!(
                    out,
                    "if {p}{} {} {:#x} goto pc{off:+}",
                    dst.num(),
                    cond.symbol(),
                    imm as u32
                ),
                Source::Reg(s) => write!(
                    out,
                    "if {p}{} {} {p}{} goto pc{off:+}",
                    dst.num(),
                    cond.symbol(),
                    s.num()
                ),
            }
        }
        Op::Ja { off } => write!(out, "goto pc{off:+}"),
        Op::Gotol { off } => write!(out, "gotol pc{off:+}"),
        Op::MayGoto { off } => write!(out, "may_goto pc{off:+}"),
        Op::Call(CallTarget::Helper { id }) => {
            let name = sym.helper(pc, id);
            write!(out, "call {}#{id}", name.as_deref().unwrap_or("unknown"))
        }
        Op::Call(CallTarget::Local { offset }) => match sym.local_call(pc, offset) {
            Some(text) => write!(out, "call pc{text}"),
            None => write!(out, "call pc{offset:+}"),
        },
        Op::Call(CallTarget::Kfunc { btf_id, btf_fd_idx }) => {
            let name = sym.kfunc(pc, btf_id, btf_fd_idx);
            write!(
                out,
                "call {}#{}",
                name.as_deref().unwrap_or("kernel-function"),
                btf_id as i32
            )
        }
        Op::Exit => out.write_str("exit"),
        Op::Load {
            width,
            dst,
            src,
            off,
        } => write!(out, "{dst} = {}", mem(width, src, off)),
        Op::LoadSx {
            width,
            dst,
            src,
            off,
        } => write!(out, "{dst} = *({} *)({src} {off:+})", width.signed_name()),
        Op::Store {
            width,
            dst,
            off,
            src,
        } => match src {
            Source::Imm(imm) => write!(out, "{} = {imm}", mem(width, dst, off)),
            Source::Reg(s) => write!(out, "{} = {s}", mem(width, dst, off)),
        },
        Op::Atomic {
            width,
            op,
            dst,
            off,
            src,
        } => {
            let ty = width.unsigned_name();
            let n = atomic_suffix(width);
            let fetch = |name: &str| {
                format!("{src} = atomic{n}_fetch_{name}(({ty} *)({dst} {off:+}), {src})")
            };
            match op {
                AtomicOp::Add => write!(out, "lock {} += {src}", mem(width, dst, off)),
                AtomicOp::And => write!(out, "lock {} &= {src}", mem(width, dst, off)),
                AtomicOp::Or => write!(out, "lock {} |= {src}", mem(width, dst, off)),
                AtomicOp::Xor => write!(out, "lock {} ^= {src}", mem(width, dst, off)),
                AtomicOp::FetchAdd => out.write_str(&fetch("add")),
                AtomicOp::FetchAnd => out.write_str(&fetch("and")),
                AtomicOp::FetchOr => out.write_str(&fetch("or")),
                AtomicOp::FetchXor => out.write_str(&fetch("xor")),
                AtomicOp::Xchg => {
                    write!(
                        out,
                        "{src} = atomic{n}_xchg(({ty} *)({dst} {off:+}), {src})"
                    )
                }
                AtomicOp::CmpXchg => write!(
                    out,
                    "r0 = atomic{n}_cmpxchg(({ty} *)({dst} {off:+}), r0, {src})"
                ),
            }
        }
        Op::LoadAcquire {
            width,
            dst,
            src,
            off,
        } => write!(
            out,
            "{dst} = load_acquire(({} *)({src} {off:+}))",
            width.unsigned_name()
        ),
        Op::StoreRelease {
            width,
            dst,
            off,
            src,
        } => write!(
            out,
            "store_release(({} *)({dst} {off:+}), {src})",
            width.unsigned_name()
        ),
        Op::LdImm64 { dst, imm } => {
            let text = sym.imm64(pc, &imm).unwrap_or_else(|| default_imm64(&imm));
            write!(out, "{dst} = {text}")
        }
        Op::LdAbs { width, imm } => {
            write!(out, "r0 = *({} *)skb[{imm}]", width.unsigned_name())
        }
        Op::LdInd { width, src, imm } => {
            write!(out, "r0 = *({} *)skb[{src} + {imm}]", width.unsigned_name())
        }
    }
}

/// The instruction text without the opcode prefix (`r0 = 0`), with names
/// from `sym` for an op at slot `pc`.
pub fn op_text(op: &Op, pc: usize, sym: &dyn Symbolizer) -> String {
    let mut s = String::new();
    // Writing into a String cannot fail.
    let _ = write_text(&mut s, op, pc, sym);
    s
}

/// One line of `print_bpf_insn()` output without the newline:
/// `(b7) r0 = 0`.
pub fn format_op(op: &Op, pc: usize, sym: &dyn Symbolizer) -> String {
    format!("({:02x}) {}", op.code(), op_text(op, pc, sym))
}

/// The whole program as `bpftool prog dump xlated` prints it: one line per
/// op, `%4u: ` slot index, then [`format_op`], each ending in `\n`.
///
/// ```
/// use structops_isa::disasm::{Bpftool, Lossless};
/// use structops_isa::{Insn, decode, disassemble};
///
/// // r1 = 0x2a ll; r0 = *(u32 *)(r1 +8); call 12; exit, as raw bytes
/// let bytes = [
///     0x18, 0x01, 0, 0, 0x2a, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
///     0x61, 0x10, 8, 0, 0, 0, 0, 0,
///     0x85, 0, 0, 0, 12, 0, 0, 0,
///     0x95, 0, 0, 0, 0, 0, 0, 0,
/// ];
/// let prog = decode(&Insn::parse_slice(&bytes)?)?;
/// assert_eq!(
///     disassemble(&prog, &Bpftool),
///     "   0: (18) r1 = 0x2a\n   \
///         2: (61) r0 = *(u32 *)(r1 +8)\n   \
///         3: (85) call bpf_tail_call#12\n   \
///         4: (95) exit\n",
/// );
/// // `Lossless` spells what the assembler needs to rebuild the program exactly.
/// let text = disassemble(&prog, &Lossless);
/// let lines: Vec<&str> = text.lines().map(|l| l.split_once(") ").map_or(l, |(_, op)| op)).collect();
/// assert_eq!(structops_isa::assemble(&lines.join("\n"))?, prog);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub fn disassemble(prog: &Program, sym: &dyn Symbolizer) -> String {
    let mut out = String::new();
    for (pc, op) in prog.iter() {
        let _ = writeln!(out, "{pc:4}: {}", format_op(&op, pc, sym));
    }
    out
}

impl fmt::Display for Op {
    /// The [`Lossless`] instruction text without the opcode prefix, which
    /// [`str::parse`] turns back into the same op.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&op_text(self, 0, &Lossless))
    }
}

impl fmt::Display for Program {
    /// [`disassemble`] with the [`Bpftool`] symbolizer.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&disassemble(self, &Bpftool))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::insn::Insn;
    use crate::op::{AluOp, Bits, Cond};

    fn line(insns: &[Insn]) -> String {
        let (op, _) = crate::decode::decode_at(insns, 0).unwrap();
        format_op(&op, 0, &Bpftool)
    }

    fn l1(code: u8, dst: u8, src: u8, off: i16, imm: i32) -> String {
        line(&[Insn::new(code, dst, src, off, imm)])
    }

    #[test]
    fn brief_examples() {
        assert_eq!(l1(0xb7, 0, 0, 0, 0), "(b7) r0 = 0");
        assert_eq!(l1(0xbf, 1, 10, 0, 0), "(bf) r1 = r10");
        assert_eq!(l1(0x07, 1, 0, 0, -4), "(07) r1 += -4");
        assert_eq!(l1(0x63, 10, 1, -4, 0), "(63) *(u32 *)(r10 -4) = r1");
        assert_eq!(l1(0x61, 0, 1, 0, 0), "(61) r0 = *(u32 *)(r1 +0)");
        assert_eq!(l1(0x15, 0, 0, 1, 0), "(15) if r0 == 0x0 goto pc+1");
        assert_eq!(l1(0x16, 0, 0, 1, 0), "(16) if w0 == 0x0 goto pc+1");
        assert_eq!(l1(0x85, 0, 0, 0, 1), "(85) call bpf_map_lookup_elem#1");
        assert_eq!(
            line(&[Insn::new(0x18, 1, 1, 0, 5), Insn::new(0, 0, 0, 0, 0)]),
            "(18) r1 = map[id:5]"
        );
        assert_eq!(l1(0xdb, 1, 2, 0, 0), "(db) lock *(u64 *)(r1 +0) += r2");
        assert_eq!(l1(0x95, 0, 0, 0, 0), "(95) exit");
    }

    #[test]
    fn immediates_follow_disasm_c() {
        // Jump immediates are `0x%x` of the 32-bit value.
        assert_eq!(l1(0x55, 3, 0, -2, -1), "(55) if r3 != 0xffffffff goto pc-2");
        // ST immediates are `%d`.
        assert_eq!(l1(0x7a, 10, 0, -8, -1), "(7a) *(u64 *)(r10 -8) = -1");
        // ALU32 uses w registers.
        assert_eq!(l1(0xcc, 1, 2, 0, 0), "(cc) w1 s>>= w2");
        assert_eq!(l1(0x84, 1, 0, 0, 0), "(84) w1 = -w1");
        // END always prints r registers.
        assert_eq!(l1(0xdc, 1, 0, 0, 16), "(dc) r1 = be16 r1");
        assert_eq!(l1(0xd4, 1, 0, 0, 64), "(d4) r1 = le64 r1");
        assert_eq!(l1(0xd7, 1, 0, 0, 32), "(d7) r1 = bswap32 r1");
        assert_eq!(l1(0x3f, 1, 2, 1, 0), "(3f) r1 s/= r2");
        assert_eq!(l1(0x97, 1, 0, 1, 3), "(97) r1 s%= 3");
        assert_eq!(l1(0xbf, 1, 2, 32, 0), "(bf) r1 = (s32)r2");
        assert_eq!(l1(0xbc, 1, 2, 16, 0), "(bc) w1 = (s16)w2");
        assert_eq!(l1(0x91, 1, 2, 3, 0), "(91) r1 = *(s8 *)(r2 +3)");
        assert_eq!(l1(0x06, 0, 0, 0, 70000), "(06) gotol pc+70000");
        assert_eq!(l1(0xe5, 0, 0, -3, 0), "(e5) may_goto pc-3");
        assert_eq!(l1(0x30, 0, 0, 0, 12), "(30) r0 = *(u8 *)skb[12]");
        assert_eq!(l1(0x48, 0, 7, 0, -2), "(48) r0 = *(u16 *)skb[r7 + -2]");
        assert_eq!(l1(0xbf, 1, 2, 1, 1), "(bf) r1 = addr_space_cast(r2, 0, 1)");
    }

    #[test]
    fn atomics() {
        assert_eq!(
            l1(0xc3, 1, 2, 4, 0x51),
            "(c3) r2 = atomic_fetch_and((u32 *)(r1 +4), r2)"
        );
        assert_eq!(
            l1(0xdb, 1, 2, -8, 0xe1),
            "(db) r2 = atomic64_xchg((u64 *)(r1 -8), r2)"
        );
        assert_eq!(
            l1(0xdb, 1, 2, 0, 0xf1),
            "(db) r0 = atomic64_cmpxchg((u64 *)(r1 +0), r0, r2)"
        );
        assert_eq!(
            l1(0xcb, 0, 1, 0, 0x100),
            "(cb) r0 = load_acquire((u16 *)(r1 +0))"
        );
        assert_eq!(
            l1(0xdb, 1, 2, 8, 0x110),
            "(db) store_release((u64 *)(r1 +8), r2)"
        );
    }

    #[test]
    fn calls_and_symbolizers() {
        assert_eq!(l1(0x85, 0, 0, 0, 9999), "(85) call unknown#9999");
        assert_eq!(l1(0x85, 0, 1, 0, 5), "(85) call pc+5");
        assert_eq!(l1(0x85, 0, 1, 0, -7), "(85) call pc-7");
        assert_eq!(l1(0x85, 0, 2, 3, 1234), "(85) call kernel-function#1234");

        struct Names;
        impl Symbolizer for Names {
            fn local_call(&self, pc: usize, offset: i32) -> Option<String> {
                Some(format!(
                    "{offset:+}#sub_at_{}",
                    pc as i64 + i64::from(offset) + 1
                ))
            }
            fn kfunc(&self, _pc: usize, btf_id: u32, _idx: i16) -> Option<String> {
                (btf_id == 7).then(|| "bpf_rcu_read_lock".to_owned())
            }
            fn helper(&self, _pc: usize, id: i32) -> Option<String> {
                Some(format!("helper_{id}"))
            }
        }
        let call = |target| format_op(&Op::Call(target), 10, &Names);
        assert_eq!(
            call(CallTarget::Local { offset: 5 }),
            "(85) call pc+5#sub_at_16"
        );
        assert_eq!(
            call(CallTarget::Kfunc {
                btf_id: 7,
                btf_fd_idx: 0
            }),
            "(85) call bpf_rcu_read_lock#7"
        );
        assert_eq!(call(CallTarget::Helper { id: 1 }), "(85) call helper_1#1");
    }

    #[test]
    fn ld_imm64_spellings() {
        let show = |imm, sym: &dyn Symbolizer| op_text(&Op::LdImm64 { dst: Reg::R2, imm }, 0, sym);
        assert_eq!(show(Imm64::Const(0), &Bpftool), "r2 = 0x0");
        assert_eq!(
            show(Imm64::Const(0xdead_beef_0000_0001), &Bpftool),
            "r2 = 0xdeadbeef00000001"
        );
        assert_eq!(
            show(Imm64::MapValue { fd: 3, offset: 16 }, &Bpftool),
            "r2 = map[id:3][0]+16"
        );
        assert_eq!(
            show(Imm64::MapIdxValue { idx: 1, offset: 0 }, &Bpftool),
            "r2 = map[idx:1]+0"
        );
        assert_eq!(
            show(Imm64::Func { offset: -4 }, &Bpftool),
            "r2 = subprog[-4]"
        );
        assert_eq!(
            show(
                Imm64::BtfId {
                    btf_id: 9,
                    btf_fd: 1
                },
                &Bpftool
            ),
            "r2 = 0x100000009"
        );
        assert_eq!(show(Imm64::MapIdx { idx: 2 }, &Bpftool), "r2 = 0x2");
        assert_eq!(
            show(
                Imm64::BtfId {
                    btf_id: 9,
                    btf_fd: 1
                },
                &Lossless
            ),
            "r2 = btf[id:9][fd:1]"
        );
        assert_eq!(show(Imm64::MapIdx { idx: 2 }, &Lossless), "r2 = map[idx:2]");
    }

    #[test]
    fn program_listing_pads_slot_numbers() {
        let prog = Program::from_ops([
            Op::LdImm64 {
                dst: Reg::R1,
                imm: Imm64::Const(1),
            },
            Op::Jmp {
                bits: Bits::B64,
                cond: Cond::Eq,
                dst: Reg::R1,
                src: Source::Imm(1),
                off: 0,
            },
            Op::Alu {
                bits: Bits::B32,
                op: AluOp::Mov,
                dst: Reg::R0,
                src: Source::Imm(0),
            },
            Op::Exit,
        ]);
        assert_eq!(
            prog.to_string(),
            "   0: (18) r1 = 0x1\n   2: (15) if r1 == 0x1 goto pc+0\n   3: (b4) w0 = 0\n   4: (95) exit\n"
        );
    }
}
