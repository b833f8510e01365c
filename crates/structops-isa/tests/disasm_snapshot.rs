//! Snapshot of the disassembly of a program holding every kind of op.

use structops_isa::disasm::{Bpftool, Lossless, Symbolizer};
use structops_isa::{
    AluOp, AtomicOp, Bits, CallTarget, Cond, Endian, Imm64, Op, Program, Reg, Source, Width,
    assemble, disassemble,
};

/// One op of every kind, in every width and source form.
fn every_op() -> Program {
    let mut ops = Vec::new();
    for bits in [Bits::B64, Bits::B32] {
        for op in AluOp::ALL {
            ops.push(Op::Alu {
                bits,
                op,
                dst: Reg::R1,
                src: Source::Imm(-7),
            });
            ops.push(Op::Alu {
                bits,
                op,
                dst: Reg::R2,
                src: Source::Reg(Reg::R3),
            });
        }
        ops.push(Op::Neg { bits, dst: Reg::R4 });
        ops.push(Op::MovSx {
            bits,
            dst: Reg::R5,
            src: Reg::R6,
            from: Width::B,
        });
        ops.push(Op::MovSx {
            bits,
            dst: Reg::R5,
            src: Reg::R6,
            from: Width::H,
        });
    }
    ops.push(Op::MovSx {
        bits: Bits::B64,
        dst: Reg::R5,
        src: Reg::R6,
        from: Width::W,
    });
    for width in [Width::H, Width::W, Width::DW] {
        for order in [Endian::Le, Endian::Be] {
            ops.push(Op::End {
                order,
                width,
                dst: Reg::R7,
            });
        }
        ops.push(Op::Bswap {
            width,
            dst: Reg::R8,
        });
    }
    ops.push(Op::AddrSpaceCast {
        dst: Reg::R1,
        src: Reg::R2,
        dst_as: 0,
        src_as: 1,
    });
    ops.push(Op::AddrSpaceCast {
        dst: Reg::R1,
        src: Reg::R2,
        dst_as: 1,
        src_as: 0,
    });
    for bits in [Bits::B64, Bits::B32] {
        for cond in Cond::ALL {
            ops.push(Op::Jmp {
                bits,
                cond,
                dst: Reg::R1,
                src: Source::Imm(-2),
                off: 3,
            });
            ops.push(Op::Jmp {
                bits,
                cond,
                dst: Reg::R1,
                src: Source::Reg(Reg::R9),
                off: -4,
            });
        }
    }
    ops.push(Op::Ja { off: 0 });
    ops.push(Op::Ja { off: -1 });
    ops.push(Op::Gotol { off: 100_000 });
    ops.push(Op::MayGoto { off: 2 });
    ops.push(Op::Call(CallTarget::Helper { id: 1 }));
    ops.push(Op::Call(CallTarget::Helper { id: 0 }));
    ops.push(Op::Call(CallTarget::Helper { id: 211 }));
    ops.push(Op::Call(CallTarget::Helper { id: 212 }));
    ops.push(Op::Call(CallTarget::Local { offset: 5 }));
    ops.push(Op::Call(CallTarget::Local { offset: -20 }));
    ops.push(Op::Call(CallTarget::Kfunc {
        btf_id: 12345,
        btf_fd_idx: 0,
    }));
    ops.push(Op::Call(CallTarget::Kfunc {
        btf_id: 678,
        btf_fd_idx: 2,
    }));
    ops.push(Op::Exit);
    for width in Width::ALL {
        ops.push(Op::Load {
            width,
            dst: Reg::R0,
            src: Reg::R1,
            off: 0,
        });
        ops.push(Op::Store {
            width,
            dst: Reg::R10,
            off: -8,
            src: Source::Reg(Reg::R1),
        });
        ops.push(Op::Store {
            width,
            dst: Reg::R10,
            off: -16,
            src: Source::Imm(-1),
        });
        ops.push(Op::LoadAcquire {
            width,
            dst: Reg::R0,
            src: Reg::R1,
            off: 8,
        });
        ops.push(Op::StoreRelease {
            width,
            dst: Reg::R1,
            off: -8,
            src: Reg::R2,
        });
    }
    for width in [Width::B, Width::H, Width::W] {
        ops.push(Op::LoadSx {
            width,
            dst: Reg::R2,
            src: Reg::R3,
            off: 12,
        });
        ops.push(Op::LdAbs { width, imm: 14 });
        ops.push(Op::LdInd {
            width,
            src: Reg::R7,
            imm: -2,
        });
    }
    for width in [Width::W, Width::DW] {
        for op in AtomicOp::ALL {
            ops.push(Op::Atomic {
                width,
                op,
                dst: Reg::R1,
                off: 16,
                src: Reg::R2,
            });
        }
    }
    for imm in [
        Imm64::Const(0),
        Imm64::Const(0xdead_beef_cafe_f00d),
        Imm64::MapFd { fd: 5 },
        Imm64::MapValue { fd: 5, offset: 24 },
        Imm64::BtfId {
            btf_id: 1000,
            btf_fd: 0,
        },
        Imm64::BtfId {
            btf_id: 1000,
            btf_fd: 7,
        },
        Imm64::Func { offset: 9 },
        Imm64::MapIdx { idx: 2 },
        Imm64::MapIdxValue { idx: 2, offset: 4 },
    ] {
        ops.push(Op::LdImm64 { dst: Reg::R1, imm });
    }
    ops.push(Op::Exit);
    Program::from_ops(ops)
}

#[test]
fn bpftool_listing() {
    let prog = every_op();
    insta::assert_snapshot!(disassemble(&prog, &Bpftool));
}

#[test]
fn lossless_listing_assembles_back() {
    let prog = every_op();
    let text = disassemble(&prog, &Lossless);
    insta::assert_snapshot!(text);
    assert_eq!(assemble(&text), Ok(prog));
}

#[test]
fn symbolizer_names_everything() {
    struct Env;
    impl Symbolizer for Env {
        fn local_call(&self, pc: usize, offset: i32) -> Option<String> {
            Some(format!(
                "{offset:+}#subprog_{}",
                pc as i64 + i64::from(offset) + 1
            ))
        }
        fn kfunc(&self, _pc: usize, btf_id: u32, _btf_fd_idx: i16) -> Option<String> {
            Some(format!("kfunc_{btf_id}"))
        }
        fn imm64(&self, _pc: usize, imm: &Imm64) -> Option<String> {
            match imm {
                Imm64::MapFd { fd } => Some(format!("map[name:my_map_{fd}]")),
                _ => None,
            }
        }
    }
    let prog: Program = [
        Op::Call(CallTarget::Local { offset: 2 }),
        Op::Call(CallTarget::Kfunc {
            btf_id: 77,
            btf_fd_idx: 0,
        }),
        Op::Call(CallTarget::Helper { id: 12 }),
        Op::LdImm64 {
            dst: Reg::R1,
            imm: Imm64::MapFd { fd: 3 },
        },
        Op::LdImm64 {
            dst: Reg::R2,
            imm: Imm64::Func { offset: -5 },
        },
        Op::Exit,
    ]
    .into_iter()
    .collect();
    insta::assert_snapshot!(disassemble(&prog, &Env));
}
