//! Property tests: encode/decode, bytes, and disassemble/assemble round trips.

mod common;

use proptest::prelude::*;
use structops_isa::disasm::{Bpftool, Lossless, op_text};
use structops_isa::{
    CallTarget, Imm64, Insn, Op, Program, assemble, decode, decode_at, disassemble, format_op,
};

/// Whether bpftool's own spelling of `op` is unambiguous (see
/// `disasm::Lossless` for the exceptions).
fn bpftool_spelling_is_exact(op: &Op) -> bool {
    !matches!(
        op,
        Op::LdImm64 {
            imm: Imm64::BtfId { .. } | Imm64::MapIdx { .. },
            ..
        } | Op::Call(CallTarget::Kfunc { btf_fd_idx: ..=-1 | 1.., .. })
    )
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn encode_then_decode_is_identity(op in common::op()) {
        let enc = op.encode();
        prop_assert_eq!(enc.len(), op.slots());
        prop_assert_eq!(decode_at(&enc, 0), Ok((op, op.slots())));
        prop_assert_eq!(op.validate(), Ok(()));
        prop_assert_eq!(enc[0].code, op.code());
    }

    #[test]
    fn raw_slots_decode_or_fail_cleanly(insns in common::raw_program()) {
        match decode(&insns) {
            Ok(prog) => {
                prop_assert_eq!(prog.encode(), insns.clone());
                prop_assert_eq!(prog.slot_count(), insns.len());
            }
            Err(e) => {
                prop_assert!(e.pc() < insns.len().max(1));
                // The error is about the first bad slot: everything before
                // it decodes.
                let mut pc = 0;
                while pc < e.pc() {
                    let (_, n) = decode_at(&insns, pc).expect("prefix decodes");
                    pc += n;
                }
                prop_assert_eq!(pc, e.pc());
            }
        }
    }

    #[test]
    fn raw_bytes_decode_or_fail_cleanly(bytes in proptest::collection::vec(any::<u8>(), 0..80)) {
        if let Ok(prog) = Program::from_bytes(&bytes) {
            prop_assert_eq!(prog.to_bytes(), bytes);
        }
    }

    #[test]
    fn insn_bytes_round_trip(insn in common::raw_insn()) {
        prop_assert_eq!(Insn::from_bytes(insn.to_bytes()), insn);
    }

    #[test]
    fn lossless_text_assembles_back(op in common::op(), pc in 0usize..100) {
        let line = format_op(&op, pc, &Lossless);
        prop_assert_eq!(structops_isa::assemble_line(&line), Ok(op), "{}", line);
        prop_assert_eq!(op.to_string().parse::<Op>(), Ok(op));
    }

    #[test]
    fn bpftool_text_assembles_back(op in common::op()) {
        prop_assume!(bpftool_spelling_is_exact(&op));
        let text = op_text(&op, 0, &Bpftool);
        prop_assert_eq!(text.parse::<Op>(), Ok(op), "{}", text);
    }

    #[test]
    fn listings_assemble_back(ops in proptest::collection::vec(common::op(), 0..20)) {
        let prog = Program::from_ops(ops.into_iter().filter(bpftool_spelling_is_exact));
        let text = disassemble(&prog, &Bpftool);
        prop_assert_eq!(assemble(&text), Ok(prog), "{}", text);
    }
}
