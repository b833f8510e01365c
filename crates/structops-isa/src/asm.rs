//! A small text assembler for tests, reading the disassembler's own syntax.
//!
//! Every line the [disassembler](crate::disasm) prints with the
//! [`Lossless`](crate::disasm::Lossless) symbolizer assembles back into the
//! same op; lines printed with [`Bpftool`](crate::disasm::Bpftool) do too,
//! except the spellings bpftool shares between sources (see `Lossless`).
//! Prefixes are tolerated: `   3: (b7) r0 = 0` reads like `r0 = 0` (the
//! `(b7)` opcode must then match). Everything from a `;` on is a comment,
//! so verifier-log lines with register states read as well.
//!
//! Two conventions resolve what the printed syntax leaves open:
//!
//! - `rN = 0x...` (a hex literal) is a 64-bit `LD_IMM64` constant, because
//!   the disassembler prints those in hex and `mov` immediates in decimal.
//!   `rN = 5 ll` is also an `LD_IMM64`, as in LLVM's syntax.
//! - `call NAME#N` is a kfunc call when `NAME` is `kernel-function` or
//!   `kernel-function[M]`, and a helper call otherwise; `N` is the id.
//!
//! Jump and call targets are `pc+N` / `pc-N`, or a label: a line holding
//! only `name:` labels the next instruction. `call NAME` without `#ID`
//! calls the helper `NAME` if there is one (`call bpf_ktime_get_ns`), and
//! the subprogram labelled `NAME` otherwise.
//!
//! ```
//! use structops_isa::{asm::assemble, Op};
//!
//! let prog = assemble("
//!     r0 = 0
//!     if r1 == 0x0 goto out
//!     r0 += 1
//! out:
//!     exit
//! ")?;
//! assert_eq!(prog.op_at(1).and_then(|op| op.jump_target(1)), Some(3));
//! assert_eq!("r0 = 0".parse::<Op>()?.to_string(), "r0 = 0");
//! # Ok::<(), structops_isa::asm::AsmError>(())
//! ```

use std::collections::HashMap;
use std::str::FromStr;

use thiserror::Error;

use crate::decode::{DecodeError, Program};
use crate::helpers::helper_id;
use crate::op::{AluOp, AtomicOp, Bits, CallTarget, Cond, Endian, Imm64, Op, Source, Width};
use crate::reg::Reg;

/// Why a line does not assemble. `line` counts from 1.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum AsmError {
    /// The text is not an instruction in the accepted syntax.
    #[error("line {line}: {expected} expected at `{rest}`")]
    Syntax {
        /// Line number.
        line: usize,
        /// What the parser was looking for.
        expected: &'static str,
        /// The unparsed rest of the line.
        rest: String,
    },
    /// A number does not fit the field it is written into.
    #[error("line {line}: {value} does not fit in {field}")]
    OutOfRange {
        /// Line number.
        line: usize,
        /// The number as written.
        value: i128,
        /// The field it was meant for.
        field: &'static str,
    },
    /// A jump names a label no line defines.
    #[error("line {line}: unknown label `{label}`")]
    UnknownLabel {
        /// Line number of the jump.
        line: usize,
        /// The label.
        label: String,
    },
    /// Two lines define the same label.
    #[error("line {line}: label `{label}` is defined twice")]
    DuplicateLabel {
        /// Line number of the second definition.
        line: usize,
        /// The label.
        label: String,
    },
    /// The `(xx)` prefix does not match the instruction's opcode.
    #[error("line {line}: prefix says opcode {found:02x}, instruction is {expected:02x}")]
    OpcodeMismatch {
        /// Line number.
        line: usize,
        /// The opcode of the prefix.
        found: u8,
        /// The opcode of the parsed instruction.
        expected: u8,
    },
    /// The parsed instruction is not a valid encoding (for example an atomic
    /// `add` on a byte).
    #[error("line {line}: {source}")]
    Invalid {
        /// Line number.
        line: usize,
        /// What decoding says about the encoded instruction.
        source: DecodeError,
    },
}

/// A jump or call target as written.
enum Target {
    Rel(i64),
    Label(String),
}

/// Character cursor over one line.
struct Cur<'a> {
    s: &'a str,
    pos: usize,
    line: usize,
}

impl<'a> Cur<'a> {
    fn rest(&self) -> &'a str {
        self.s.get(self.pos..).unwrap_or("")
    }

    fn ws(&mut self) {
        let r = self.rest();
        self.pos += r.len() - r.trim_start().len();
    }

    fn err(&self, expected: &'static str) -> AsmError {
        AsmError::Syntax {
            line: self.line,
            expected,
            rest: self.rest().to_owned(),
        }
    }

    fn range(&self, value: i128, field: &'static str) -> AsmError {
        AsmError::OutOfRange {
            line: self.line,
            value,
            field,
        }
    }

    /// Consumes `t` (after optional whitespace) if it is next.
    fn eat(&mut self, t: &str) -> bool {
        self.ws();
        if self.rest().starts_with(t) {
            self.pos += t.len();
            true
        } else {
            false
        }
    }

    fn expect(&mut self, t: &'static str) -> Result<(), AsmError> {
        if self.eat(t) {
            Ok(())
        } else {
            Err(self.err(t))
        }
    }

    fn at_end(&mut self) -> bool {
        self.ws();
        self.rest().is_empty()
    }

    fn end(&mut self) -> Result<(), AsmError> {
        if self.at_end() {
            Ok(())
        } else {
            Err(self.err("end of line"))
        }
    }

    /// An identifier-like word (`[A-Za-z0-9_.-]`), possibly empty.
    fn word(&mut self) -> &'a str {
        self.ws();
        let r = self.rest();
        let n = r
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_' || c == '.' || c == '-'))
            .unwrap_or(r.len());
        self.pos += n;
        r.get(..n).unwrap_or("")
    }

    fn peek_reg(&mut self) -> bool {
        self.ws();
        let b = self.rest().as_bytes();
        matches!(b.first(), Some(b'r' | b'w')) && b.get(1).is_some_and(u8::is_ascii_digit)
    }

    /// A register with its width letter: `r3` or `w3`.
    fn reg(&mut self) -> Result<(Bits, Reg), AsmError> {
        if !self.peek_reg() {
            return Err(self.err("register"));
        }
        let r = self.rest();
        let bits = if r.starts_with('w') {
            Bits::B32
        } else {
            Bits::B64
        };
        let digits = r
            .get(1..)
            .unwrap_or("")
            .bytes()
            .take_while(u8::is_ascii_digit)
            .count();
        let n: u8 = r
            .get(1..1 + digits)
            .and_then(|d| d.parse().ok())
            .ok_or_else(|| self.err("register number"))?;
        let reg = Reg::new(n).ok_or_else(|| self.err("register r0 to r10"))?;
        self.pos += 1 + digits;
        Ok((bits, reg))
    }

    /// A 64-bit register (`rN`).
    fn rreg(&mut self) -> Result<Reg, AsmError> {
        match self.reg()? {
            (Bits::B64, r) => Ok(r),
            (Bits::B32, _) => Err(self.err("64-bit register rN")),
        }
    }

    fn peek_int(&mut self) -> bool {
        self.ws();
        let r = self.rest();
        let r = r.strip_prefix(['+', '-']).unwrap_or(r);
        r.as_bytes().first().is_some_and(u8::is_ascii_digit)
    }

    /// A signed decimal or `0x` hex integer; returns the value and whether
    /// it was written in hex.
    fn int_hex(&mut self) -> Result<(i128, bool), AsmError> {
        if !self.peek_int() {
            return Err(self.err("number"));
        }
        let r = self.rest();
        let (neg, body) = match r.as_bytes().first() {
            Some(b'-') => (true, r.get(1..).unwrap_or("")),
            Some(b'+') => (false, r.get(1..).unwrap_or("")),
            _ => (false, r),
        };
        let sign_len = r.len() - body.len();
        let (hex, digits) = match body.strip_prefix("0x").or_else(|| body.strip_prefix("0X")) {
            Some(h) => (true, h),
            None => (false, body),
        };
        let n = digits
            .bytes()
            .take_while(|c| {
                if hex {
                    c.is_ascii_hexdigit()
                } else {
                    c.is_ascii_digit()
                }
            })
            .count();
        let text = digits.get(..n).unwrap_or("");
        let mag = i128::from_str_radix(text, if hex { 16 } else { 10 })
            .map_err(|_| self.err("number"))?;
        self.pos += sign_len + (body.len() - digits.len()) + n;
        Ok((if neg { -mag } else { mag }, hex))
    }

    fn int(&mut self) -> Result<i128, AsmError> {
        Ok(self.int_hex()?.0)
    }

    /// A 32-bit immediate; values up to `u32::MAX` wrap, because the
    /// disassembler prints jump immediates as unsigned hex.
    fn imm32(&mut self) -> Result<i32, AsmError> {
        let v = self.int()?;
        if let Ok(i) = i32::try_from(v) {
            Ok(i)
        } else if let Ok(u) = u32::try_from(v) {
            Ok(u as i32)
        } else {
            Err(self.range(v, "a 32-bit immediate"))
        }
    }

    fn u32(&mut self) -> Result<u32, AsmError> {
        let v = self.int()?;
        u32::try_from(v).map_err(|_| self.range(v, "an unsigned 32-bit field"))
    }

    fn i16(&mut self) -> Result<i16, AsmError> {
        let v = self.int()?;
        i16::try_from(v).map_err(|_| self.range(v, "a 16-bit offset"))
    }

    /// `pc+N`, `pc-N` or a label.
    fn target(&mut self) -> Result<Target, AsmError> {
        if self.eat("pc") {
            if !self.peek_int() {
                return Err(self.err("pc offset"));
            }
            let v = self.int()?;
            let v = i64::try_from(v).map_err(|_| self.range(v, "a jump offset"))?;
            Ok(Target::Rel(v))
        } else {
            let w = self.word();
            if w.is_empty() {
                Err(self.err("jump target"))
            } else {
                Ok(Target::Label(w.to_owned()))
            }
        }
    }

    /// `u32` / `s16` ... inside `*(TY *)`; returns the width and signedness.
    fn ctype(&mut self) -> Result<(Width, bool), AsmError> {
        let w = self.word();
        let (signed, bits) = match w.as_bytes().first() {
            Some(b'u') => (false, w.get(1..)),
            Some(b's') => (true, w.get(1..)),
            _ => return Err(self.err("u8, u16, u32, u64, s8, s16 or s32")),
        };
        bits.and_then(|b| b.parse::<i64>().ok())
            .and_then(Width::from_bits)
            .map(|width| (width, signed))
            .ok_or_else(|| self.err("a C integer type"))
    }

    /// `(TY *)(rN +OFF)` (the part after `*` of a memory operand).
    fn mem_operand(&mut self) -> Result<(Width, bool, Reg, i16), AsmError> {
        self.expect("(")?;
        let (width, signed) = self.ctype()?;
        self.expect("*")?;
        self.expect(")")?;
        self.expect("(")?;
        let base = self.rreg()?;
        let off = if self.peek_int() { self.i16()? } else { 0 };
        self.expect(")")?;
        Ok((width, signed, base, off))
    }

    /// `*(TY *)(rN +OFF)`.
    fn deref(&mut self) -> Result<(Width, bool, Reg, i16), AsmError> {
        self.expect("*")?;
        self.mem_operand()
    }
}

const ALU_SYMBOLS: [(&str, AluOp); 14] = [
    // Longest spellings first so `s>>=` wins over `>>=`.
    ("s>>=", AluOp::Arsh),
    ("<<=", AluOp::Lsh),
    (">>=", AluOp::Rsh),
    ("s/=", AluOp::SDiv),
    ("s%=", AluOp::SMod),
    ("+=", AluOp::Add),
    ("-=", AluOp::Sub),
    ("*=", AluOp::Mul),
    ("/=", AluOp::Div),
    ("%=", AluOp::Mod),
    ("|=", AluOp::Or),
    ("&=", AluOp::And),
    ("^=", AluOp::Xor),
    ("=", AluOp::Mov),
];

const COND_SYMBOLS: [(&str, Cond); 11] = [
    ("s>=", Cond::Sge),
    ("s<=", Cond::Sle),
    ("s>", Cond::Sgt),
    ("s<", Cond::Slt),
    ("==", Cond::Eq),
    ("!=", Cond::Ne),
    (">=", Cond::Ge),
    ("<=", Cond::Le),
    (">", Cond::Gt),
    ("<", Cond::Lt),
    ("&", Cond::Set),
];

/// One parsed line: the op and, for a jump to a label, the label.
struct Parsed {
    op: Op,
    label: Option<String>,
}

impl Parsed {
    fn op(op: Op) -> Self {
        Parsed { op, label: None }
    }
}

/// Builds a jump/call op with a relative target, or leaves a label fixup.
fn with_target(
    target: Target,
    build: impl Fn(i64) -> Result<Op, AsmError>,
) -> Result<Parsed, AsmError> {
    match target {
        Target::Rel(off) => Ok(Parsed::op(build(off)?)),
        Target::Label(l) => Ok(Parsed {
            op: build(0)?,
            label: Some(l),
        }),
    }
}

fn off16(line: usize, off: i64) -> Result<i16, AsmError> {
    i16::try_from(off).map_err(|_| AsmError::OutOfRange {
        line,
        value: off.into(),
        field: "a 16-bit jump offset",
    })
}

fn off32(line: usize, off: i64) -> Result<i32, AsmError> {
    i32::try_from(off).map_err(|_| AsmError::OutOfRange {
        line,
        value: off.into(),
        field: "a 32-bit jump offset",
    })
}

/// Re-targets a jump or call at `pc` to slot `to`.
fn retarget(op: Op, line: usize, pc: usize, to: usize) -> Result<Op, AsmError> {
    let off = to as i64 - pc as i64 - 1;
    Ok(match op {
        Op::Jmp {
            bits,
            cond,
            dst,
            src,
            ..
        } => Op::Jmp {
            bits,
            cond,
            dst,
            src,
            off: off16(line, off)?,
        },
        Op::Ja { .. } => Op::Ja {
            off: off16(line, off)?,
        },
        Op::MayGoto { .. } => Op::MayGoto {
            off: off16(line, off)?,
        },
        Op::Gotol { .. } => Op::Gotol {
            off: off32(line, off)?,
        },
        Op::Call(CallTarget::Local { .. }) => Op::Call(CallTarget::Local {
            offset: off32(line, off)?,
        }),
        other => other,
    })
}

/// Parses one instruction (no prefix, no comment).
fn parse_insn(c: &mut Cur<'_>) -> Result<Parsed, AsmError> {
    let line = c.line;
    if c.eat("exit") {
        return Ok(Parsed::op(Op::Exit));
    }
    if c.eat("gotol") {
        let t = c.target()?;
        return with_target(t, |o| {
            Ok(Op::Gotol {
                off: off32(line, o)?,
            })
        });
    }
    if c.eat("goto") {
        let t = c.target()?;
        return with_target(t, |o| {
            Ok(Op::Ja {
                off: off16(line, o)?,
            })
        });
    }
    if c.eat("may_goto") {
        let t = c.target()?;
        return with_target(t, |o| {
            Ok(Op::MayGoto {
                off: off16(line, o)?,
            })
        });
    }
    if c.eat("call") {
        return parse_call(c);
    }
    if c.eat("if") {
        return parse_cond_jump(c);
    }
    if c.eat("lock") {
        let (width, signed, dst, off) = c.deref()?;
        if signed {
            return Err(c.err("unsigned type"));
        }
        let op = if c.eat("+=") {
            AtomicOp::Add
        } else if c.eat("&=") {
            AtomicOp::And
        } else if c.eat("|=") {
            AtomicOp::Or
        } else if c.eat("^=") {
            AtomicOp::Xor
        } else {
            return Err(c.err("+=, &=, |= or ^="));
        };
        let src = c.rreg()?;
        return Ok(Parsed::op(Op::Atomic {
            width,
            op,
            dst,
            off,
            src,
        }));
    }
    if c.eat("store_release") {
        c.expect("(")?;
        let (width, _, dst, off) = c.mem_operand()?;
        c.expect(",")?;
        let src = c.rreg()?;
        c.expect(")")?;
        return Ok(Parsed::op(Op::StoreRelease {
            width,
            dst,
            off,
            src,
        }));
    }
    c.ws();
    if c.rest().starts_with('*') {
        let (width, signed, dst, off) = c.deref()?;
        if signed {
            return Err(c.err("unsigned type"));
        }
        c.expect("=")?;
        let src = if c.peek_reg() {
            Source::Reg(c.rreg()?)
        } else {
            Source::Imm(c.imm32()?)
        };
        return Ok(Parsed::op(Op::Store {
            width,
            dst,
            off,
            src,
        }));
    }
    let (bits, dst) = c.reg()?;
    let op = ALU_SYMBOLS
        .iter()
        .find(|(s, _)| c.eat(s))
        .map(|&(_, op)| op)
        .ok_or_else(|| c.err("assignment operator"))?;
    if op != AluOp::Mov {
        let src = if c.peek_reg() {
            let (b, s) = c.reg()?;
            if b != bits {
                return Err(c.err("register of the same width"));
            }
            Source::Reg(s)
        } else {
            Source::Imm(c.imm32()?)
        };
        return Ok(Parsed::op(Op::Alu { bits, op, dst, src }));
    }
    parse_assign(c, bits, dst).map(Parsed::op)
}

/// The right-hand side of `rN = ...` / `wN = ...`.
fn parse_assign(c: &mut Cur<'_>, bits: Bits, dst: Reg) -> Result<Op, AsmError> {
    let need64 = |c: &Cur<'_>| {
        if bits == Bits::B64 {
            Ok(())
        } else {
            Err(c.err("64-bit destination rN"))
        }
    };
    c.ws();
    // Negation: `rN = -rN`.
    if c.rest().starts_with('-') && {
        let mut probe = Cur {
            s: c.s,
            pos: c.pos + 1,
            line: c.line,
        };
        probe.peek_reg()
    } {
        c.pos += 1;
        let (b, r) = c.reg()?;
        if b != bits || r != dst {
            return Err(c.err("the destination register"));
        }
        return Ok(Op::Neg { bits, dst });
    }
    // Sign-extending move: `rN = (s8)rM`.
    if c.eat("(") {
        let (from, signed) = c.ctype()?;
        c.expect(")")?;
        let (b, src) = c.reg()?;
        if !signed || b != bits {
            return Err(c.err("(s8), (s16) or (s32) and a register of the same width"));
        }
        return Ok(Op::MovSx {
            bits,
            dst,
            src,
            from,
        });
    }
    if c.peek_reg() {
        let (b, src) = c.reg()?;
        if b != bits {
            return Err(c.err("register of the same width"));
        }
        return Ok(Op::Alu {
            bits,
            op: AluOp::Mov,
            dst,
            src: Source::Reg(src),
        });
    }
    if c.peek_int() {
        let (v, hex) = c.int_hex()?;
        let ll = c.eat("ll");
        if hex || ll {
            need64(c)?;
            let imm = u64::try_from(v)
                .ok()
                .or_else(|| i64::try_from(v).ok().map(|v| v as u64))
                .ok_or_else(|| c.range(v, "a 64-bit immediate"))?;
            return Ok(Op::LdImm64 {
                dst,
                imm: Imm64::Const(imm),
            });
        }
        let imm = i32::try_from(v).map_err(|_| c.range(v, "a 32-bit immediate"))?;
        return Ok(Op::Alu {
            bits,
            op: AluOp::Mov,
            dst,
            src: Source::Imm(imm),
        });
    }
    if c.rest().starts_with('*') {
        let save = c.pos;
        c.expect("*")?;
        c.expect("(")?;
        let (width, signed) = c.ctype()?;
        c.expect("*")?;
        c.expect(")")?;
        if c.eat("skb") {
            need64(c)?;
            if dst != Reg::R0 || signed {
                return Err(c.err("r0 = *(uN *)skb[...]"));
            }
            c.expect("[")?;
            let op = if c.peek_reg() {
                let src = c.rreg()?;
                c.expect("+")?;
                let imm = c.imm32()?;
                Op::LdInd { width, src, imm }
            } else {
                Op::LdAbs {
                    width,
                    imm: c.imm32()?,
                }
            };
            c.expect("]")?;
            return Ok(op);
        }
        c.pos = save;
        let (width, signed, src, off) = c.deref()?;
        need64(c)?;
        return Ok(if signed {
            Op::LoadSx {
                width,
                dst,
                src,
                off,
            }
        } else {
            Op::Load {
                width,
                dst,
                src,
                off,
            }
        });
    }
    let word = c.word();
    need64(c)?;
    match word {
        "le16" | "le32" | "le64" | "be16" | "be32" | "be64" | "bswap16" | "bswap32" | "bswap64" => {
            let (name, bits_text) = word.split_at(word.len() - 2);
            let width = bits_text
                .parse::<i64>()
                .ok()
                .and_then(Width::from_bits)
                .ok_or_else(|| c.err("16, 32 or 64"))?;
            let r = c.rreg()?;
            if r != dst {
                return Err(c.err("the destination register"));
            }
            Ok(match name {
                "le" => Op::End {
                    order: Endian::Le,
                    width,
                    dst,
                },
                "be" => Op::End {
                    order: Endian::Be,
                    width,
                    dst,
                },
                _ => Op::Bswap { width, dst },
            })
        }
        "addr_space_cast" => {
            c.expect("(")?;
            let src = c.rreg()?;
            c.expect(",")?;
            let dst_as = c.int()?;
            c.expect(",")?;
            let src_as = c.int()?;
            c.expect(")")?;
            let dst_as = u16::try_from(dst_as).map_err(|_| c.range(dst_as, "an address space"))?;
            let src_as = u16::try_from(src_as).map_err(|_| c.range(src_as, "an address space"))?;
            Ok(Op::AddrSpaceCast {
                dst,
                src,
                dst_as,
                src_as,
            })
        }
        "load_acquire" => {
            c.expect("(")?;
            let (width, _, src, off) = c.mem_operand()?;
            c.expect(")")?;
            Ok(Op::LoadAcquire {
                width,
                dst,
                src,
                off,
            })
        }
        "map" => parse_map(c, dst),
        "btf" => {
            c.expect("[")?;
            c.expect("id:")?;
            let btf_id = c.u32()?;
            c.expect("]")?;
            let btf_fd = if c.eat("[") {
                c.expect("fd:")?;
                let fd = c.imm32()?;
                c.expect("]")?;
                fd
            } else {
                0
            };
            Ok(Op::LdImm64 {
                dst,
                imm: Imm64::BtfId { btf_id, btf_fd },
            })
        }
        "subprog" => {
            c.expect("[")?;
            let offset = c.imm32()?;
            c.expect("]")?;
            Ok(Op::LdImm64 {
                dst,
                imm: Imm64::Func { offset },
            })
        }
        w if w.starts_with("atomic") => parse_atomic_call(c, w, dst),
        _ => Err(c.err("an operand")),
    }
}

/// `map[id:N]`, `map[id:N][0]+OFF`, `map[idx:N]` and `map[idx:N]+OFF`.
fn parse_map(c: &mut Cur<'_>, dst: Reg) -> Result<Op, AsmError> {
    c.expect("[")?;
    let imm = if c.eat("idx:") {
        let idx = c.u32()?;
        c.expect("]")?;
        if c.eat("+") {
            Imm64::MapIdxValue {
                idx,
                offset: c.u32()?,
            }
        } else {
            Imm64::MapIdx { idx }
        }
    } else {
        c.expect("id:")?;
        let fd = c.imm32()?;
        c.expect("]")?;
        if c.eat("[") {
            c.expect("0")?;
            c.expect("]")?;
            c.expect("+")?;
            Imm64::MapValue {
                fd,
                offset: c.u32()?,
            }
        } else {
            Imm64::MapFd { fd }
        }
    };
    Ok(Op::LdImm64 { dst, imm })
}

/// `atomic[64]_fetch_OP(...)`, `atomic[64]_xchg(...)`,
/// `atomic[64]_cmpxchg(...)`; `word` is the function name.
fn parse_atomic_call(c: &mut Cur<'_>, word: &str, dst: Reg) -> Result<Op, AsmError> {
    let (is64, name) = match word.strip_prefix("atomic64_") {
        Some(n) => (true, n),
        None => (false, word.strip_prefix("atomic_").unwrap_or("")),
    };
    let op = match name {
        "fetch_add" => AtomicOp::FetchAdd,
        "fetch_and" => AtomicOp::FetchAnd,
        "fetch_or" => AtomicOp::FetchOr,
        "fetch_xor" => AtomicOp::FetchXor,
        "xchg" => AtomicOp::Xchg,
        "cmpxchg" => AtomicOp::CmpXchg,
        _ => return Err(c.err("atomic operation")),
    };
    c.expect("(")?;
    let (width, _, base, off) = c.mem_operand()?;
    c.expect(",")?;
    if op == AtomicOp::CmpXchg {
        if c.rreg()? != Reg::R0 {
            return Err(c.err("r0"));
        }
        c.expect(",")?;
    }
    let src = c.rreg()?;
    c.expect(")")?;
    let loaded = if op == AtomicOp::CmpXchg {
        Reg::R0
    } else {
        src
    };
    if dst != loaded || is64 != (width == Width::DW) {
        return Err(c.err("matching result register and width"));
    }
    Ok(Op::Atomic {
        width,
        op,
        dst: base,
        off,
        src,
    })
}

fn parse_call(c: &mut Cur<'_>) -> Result<Parsed, AsmError> {
    let line = c.line;
    c.ws();
    if c.rest().starts_with("pc") {
        let t = c.target()?;
        // A symbolizer may append `#name` to the offset.
        if c.eat("#") {
            c.pos = c.s.len();
        }
        return with_target(t, |o| {
            Ok(Op::Call(CallTarget::Local {
                offset: off32(line, o)?,
            }))
        });
    }
    let rest = c.rest();
    let Some(hash) = rest.rfind('#') else {
        // `call NAME`: a helper by name, otherwise a subprogram label.
        let name = c.word();
        if let Some(id) = helper_id(name) {
            return Ok(Parsed::op(Op::Call(CallTarget::Helper { id })));
        }
        if name.is_empty() {
            return Err(c.err("call target"));
        }
        return Ok(Parsed {
            op: Op::Call(CallTarget::Local { offset: 0 }),
            label: Some(name.to_owned()),
        });
    };
    let name = rest.get(..hash).unwrap_or("").trim();
    c.pos += hash + 1;
    let kfunc_idx = if name == "kernel-function" {
        Some(0)
    } else if let Some(idx) = name
        .strip_prefix("kernel-function[")
        .and_then(|r| r.strip_suffix(']'))
    {
        Some(
            idx.parse::<i16>()
                .map_err(|_| c.err("kfunc module index"))?,
        )
    } else {
        None
    };
    let id = c.imm32()?;
    Ok(Parsed::op(Op::Call(match kfunc_idx {
        Some(btf_fd_idx) => CallTarget::Kfunc {
            btf_id: id as u32,
            btf_fd_idx,
        },
        None => CallTarget::Helper { id },
    })))
}

fn parse_cond_jump(c: &mut Cur<'_>) -> Result<Parsed, AsmError> {
    let line = c.line;
    let (bits, dst) = c.reg()?;
    let cond = COND_SYMBOLS
        .iter()
        .find(|(s, _)| c.eat(s))
        .map(|&(_, cond)| cond)
        .ok_or_else(|| c.err("comparison operator"))?;
    let src = if c.peek_reg() {
        let (b, s) = c.reg()?;
        if b != bits {
            return Err(c.err("register of the same width"));
        }
        Source::Reg(s)
    } else {
        Source::Imm(c.imm32()?)
    };
    c.expect("goto")?;
    let t = c.target()?;
    with_target(t, |o| {
        Ok(Op::Jmp {
            bits,
            cond,
            dst,
            src,
            off: off16(line, o)?,
        })
    })
}

/// Strips the `N:` and `(xx)` prefixes and the comment of a line; returns
/// the remaining text and the opcode of the `(xx)` prefix, if any.
fn strip_line(text: &str) -> (&str, Option<u8>) {
    let text = text.split(';').next().unwrap_or("").trim();
    // `  12: ` slot index.
    let text = match text.split_once(':') {
        Some((n, rest)) if !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()) => rest.trim(),
        _ => text,
    };
    // `(b7) ` opcode.
    let b = text.as_bytes();
    if b.first() == Some(&b'(')
        && b.get(3) == Some(&b')')
        && let Some(code) = text.get(1..3).and_then(|h| u8::from_str_radix(h, 16).ok())
    {
        return (text.get(4..).unwrap_or("").trim(), Some(code));
    }
    (text, None)
}

fn parse_line(text: &str, line: usize) -> Result<Parsed, AsmError> {
    let (body, code) = strip_line(text);
    let mut c = Cur {
        s: body,
        pos: 0,
        line,
    };
    let parsed = parse_insn(&mut c)?;
    c.end()?;
    if let Err(source) = parsed.op.validate() {
        return Err(AsmError::Invalid { line, source });
    }
    if let Some(found) = code {
        let expected = parsed.op.code();
        if found != expected {
            return Err(AsmError::OpcodeMismatch {
                line,
                found,
                expected,
            });
        }
    }
    Ok(parsed)
}

/// Whether a stripped line is a label definition; returns the label.
fn label_def(text: &str) -> Option<&str> {
    let (body, _) = strip_line(text);
    let name = body.strip_suffix(':')?.trim();
    let ok = !name.is_empty()
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'.')
        && !name.bytes().all(|b| b.is_ascii_digit());
    ok.then_some(name)
}

/// Assembles one instruction. Jump targets must be `pc+N`/`pc-N`.
///
/// # Errors
///
/// An [`AsmError`] for line 1.
pub fn assemble_line(text: &str) -> Result<Op, AsmError> {
    let parsed = parse_line(text, 1)?;
    match parsed.label {
        Some(label) => Err(AsmError::UnknownLabel { line: 1, label }),
        None => Ok(parsed.op),
    }
}

/// Assembles a program: one instruction per line, blank lines and `;`
/// comments ignored, `name:` lines defining labels.
///
/// # Errors
///
/// The first line's [`AsmError`].
///
/// ```
/// use structops_isa::{AsmError, assemble, disasm::Bpftool, disassemble};
///
/// let prog = assemble(
///     "
///     r0 = 0x100000000 ll     ; LD_IMM64 takes two slots
/// halve:
///     r0 >>= 1
///     if r0 > 0x1 goto halve
///     call bpf_ktime_get_ns
///     exit
///     ",
/// )?;
/// assert_eq!((prog.ops().len(), prog.encode().len()), (5, 6));
/// // The label became a jump offset: slot 3 jumps back to slot 2.
/// assert_eq!(prog.op_at(3).and_then(|op| op.jump_target(3)), Some(2));
/// assert!(disassemble(&prog, &Bpftool).contains("   4: (85) call bpf_ktime_get_ns#5\n"));
///
/// // Errors name the line.
/// assert!(matches!(assemble("r0 = 1\ngoto nowhere"), Err(AsmError::UnknownLabel { line: 2, .. })));
/// # Ok::<(), AsmError>(())
/// ```
pub fn assemble(text: &str) -> Result<Program, AsmError> {
    let mut labels: HashMap<&str, usize> = HashMap::new();
    let mut parsed: Vec<(usize, usize, Parsed)> = Vec::new();
    let mut pc = 0usize;
    for (i, raw) in text.lines().enumerate() {
        let line = i + 1;
        if strip_line(raw).0.is_empty() {
            continue;
        }
        if let Some(name) = label_def(raw) {
            if labels.insert(name, pc).is_some() {
                return Err(AsmError::DuplicateLabel {
                    line,
                    label: name.to_owned(),
                });
            }
            continue;
        }
        let p = parse_line(raw, line)?;
        let slots = p.op.slots();
        parsed.push((line, pc, p));
        pc += slots;
    }
    let mut prog = Program::default();
    for (line, pc, p) in parsed {
        let op = match p.label {
            None => p.op,
            Some(label) => {
                let to = *labels
                    .get(label.as_str())
                    .ok_or(AsmError::UnknownLabel { line, label })?;
                retarget(p.op, line, pc, to)?
            }
        };
        prog.push(op);
    }
    Ok(prog)
}

impl FromStr for Op {
    type Err = AsmError;

    /// [`assemble_line`].
    fn from_str(s: &str) -> Result<Op, AsmError> {
        assemble_line(s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn op(s: &str) -> Op {
        s.parse().unwrap_or_else(|e| panic!("{s}: {e}"))
    }

    #[test]
    fn parses_disassembler_lines() {
        assert_eq!(
            op("   0: (b7) r0 = 0"),
            Op::Alu {
                bits: Bits::B64,
                op: AluOp::Mov,
                dst: Reg::R0,
                src: Source::Imm(0)
            }
        );
        assert_eq!(
            op("(63) *(u32 *)(r10 -4) = r1"),
            Op::Store {
                width: Width::W,
                dst: Reg::R10,
                off: -4,
                src: Source::Reg(Reg::R1)
            }
        );
        assert_eq!(
            op("if w0 s>= 0xffffffff goto pc-3"),
            Op::Jmp {
                bits: Bits::B32,
                cond: Cond::Sge,
                dst: Reg::R0,
                src: Source::Imm(-1),
                off: -3
            }
        );
        assert_eq!(
            op("r1 = 0x1"),
            Op::LdImm64 {
                dst: Reg::R1,
                imm: Imm64::Const(1)
            }
        );
        assert_eq!(
            op("r1 = -1 ll"),
            Op::LdImm64 {
                dst: Reg::R1,
                imm: Imm64::Const(u64::MAX)
            }
        );
        assert_eq!(
            op("call bpf_map_lookup_elem#1"),
            Op::Call(CallTarget::Helper { id: 1 })
        );
        assert_eq!(
            op("call bpf_ktime_get_ns"),
            Op::Call(CallTarget::Helper { id: 5 })
        );
        assert_eq!(
            op("call kernel-function[3]#77"),
            Op::Call(CallTarget::Kfunc {
                btf_id: 77,
                btf_fd_idx: 3
            })
        );
        assert_eq!(
            op("call pc+4#bpf_prog_1234_sub"),
            Op::Call(CallTarget::Local { offset: 4 })
        );
        assert_eq!(
            op("r2 = atomic64_fetch_add((u64 *)(r1 +0), r2)"),
            Op::Atomic {
                width: Width::DW,
                op: AtomicOp::FetchAdd,
                dst: Reg::R1,
                off: 0,
                src: Reg::R2
            }
        );
        // Verifier-log lines carry register state after `;`.
        assert_eq!(op("2: (95) exit  ; R0_w=0"), Op::Exit);
    }

    #[test]
    fn reports_errors_with_lines() {
        assert!(matches!(
            "r11 = 0".parse::<Op>(),
            Err(AsmError::Syntax { line: 1, .. })
        ));
        assert!(matches!(
            "(b4) r0 = 0".parse::<Op>(),
            Err(AsmError::OpcodeMismatch {
                found: 0xb4,
                expected: 0xb7,
                ..
            })
        ));
        assert!(matches!(
            "lock *(u8 *)(r1 +0) += r2".parse::<Op>(),
            Err(AsmError::Invalid { .. })
        ));
        assert!(matches!(
            "r0 = 4294967296".parse::<Op>(),
            Err(AsmError::OutOfRange { .. })
        ));
        assert!(matches!(
            "w1 += r2".parse::<Op>(),
            Err(AsmError::Syntax { .. })
        ));
        assert!(matches!(
            assemble("exit\ngoto nowhere"),
            Err(AsmError::UnknownLabel { line: 2, .. })
        ));
        assert!(matches!(
            assemble("a:\na:\nexit"),
            Err(AsmError::DuplicateLabel { line: 2, .. })
        ));
        assert!(matches!(
            assemble("r0 = 0\nexit extra"),
            Err(AsmError::Syntax { line: 2, .. })
        ));
    }

    #[test]
    fn labels_count_ld_imm64_as_two_slots() {
        let prog =
            assemble("start:\n r1 = 0x10\n if r1 > 5 goto done\n goto start\n done:\n exit\n")
                .unwrap();
        assert_eq!(
            prog.op_at(2),
            Some(Op::Jmp {
                bits: Bits::B64,
                cond: Cond::Gt,
                dst: Reg::R1,
                src: Source::Imm(5),
                off: 1
            })
        );
        assert_eq!(prog.op_at(3), Some(Op::Ja { off: -4 }));
    }
}
