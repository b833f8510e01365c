//! Post-verification rewrites and facts through [`crate::verify`]: context
//! conversions spliced in with every reference moved, and the facts of each
//! kind.

use structops_isa::{Insn, assemble};

use crate::env::{
    CtxAccess, CtxField, LogOptions, MapInfo, MapRef, PacketAccess, ProgInfo, VerifierEnv,
};
use crate::proto::HelperProto;
use crate::tests::Mock;
use crate::{InsnFacts, VerifiedProgram, verify};

/// The mock XDP environment whose context is an `xdp_buff` with the three
/// packet pointers as 64-bit fields at 24, 32 and 40 (as the runtime's),
/// and which widens `rx_queue_index` (off 16) into two instructions, to
/// exercise a growing patch.
struct Converting(Mock);

impl VerifierEnv for Converting {
    fn map(&self, m: MapRef) -> Option<MapInfo> {
        self.0.map(m)
    }

    fn helper(&self, id: i32) -> Option<HelperProto> {
        self.0.helper(id)
    }

    fn ctx_access(&self, off: i32, size: u32, write: bool) -> Option<CtxField> {
        self.0.ctx_access(off, size, write)
    }

    fn packet_access(&self) -> PacketAccess {
        PacketAccess::ReadWrite
    }

    fn convert_ctx_access(&self, a: &CtxAccess, insn: Insn) -> Option<Vec<Insn>> {
        let (d, s) = (insn.dst_reg(), insn.src_reg());
        let wide = |off: i16| Insn::new(0x79, d, s, off, 0);
        match (a.field, a.off) {
            (CtxField::PacketData, _) => Some(vec![wide(24)]),
            (CtxField::PacketEnd, _) => Some(vec![wide(32)]),
            (CtxField::PacketMeta, _) => Some(vec![wide(40)]),
            (CtxField::Scalar, 16) => Some(vec![insn, Insn::new(0x54, d, 0, 0, 0xff)]),
            _ => None,
        }
    }
}

fn verify_in(env: &dyn VerifierEnv, src: &str) -> VerifiedProgram {
    let info = ProgInfo {
        gpl_compatible: true,
        ..ProgInfo::default()
    };
    let prog = assemble(src).unwrap().encode();
    match verify(
        &prog,
        &info,
        env,
        &LogOptions {
            level: 1,
            stats: false,
        },
    ) {
        Ok(p) => p,
        Err(e) => panic!("rejected: {e}\n{}", e.log),
    }
}

fn encode(src: &str) -> Vec<Insn> {
    assemble(src).unwrap().encode()
}

#[test]
fn context_loads_are_converted_and_references_moved() {
    let src = "
        r6 = r1
        r2 = *(u32 *)(r6 +0)
        r3 = *(u32 *)(r6 +4)
        r4 = r2
        r4 += 14
        if r4 > r3 goto pc+4
        r0 = *(u8 *)(r2 +0)
        r5 = *(u32 *)(r6 +16)
        call pc+3
        exit
        r0 = 1
        exit
        r0 = 2
        exit
    ";
    let env = Converting(Mock::default());
    let p = verify_in(&env, src);
    let expect = encode(
        "
        r6 = r1
        r2 = *(u64 *)(r6 +24)
        r3 = *(u64 *)(r6 +32)
        r4 = r2
        r4 += 14
        if r4 > r3 goto pc+5
        r0 = *(u8 *)(r2 +0)
        r5 = *(u32 *)(r6 +16)
        w5 &= 255
        call pc+3
        exit
        r0 = 1
        exit
        r0 = 2
        exit
    ",
    );
    assert_eq!(p.insns(), expect.as_slice());
    assert_eq!(p.subprogs(), &[0, 13]);
    let rw = p.rewrite();
    assert_eq!(rw.patched().collect::<Vec<_>>(), [1, 2, 7]);
    assert_eq!((rw.new_index(8), rw.new_index(12)), (Some(9), Some(13)));
    assert_eq!(p.facts().len(), p.insns().len());
    // The same rewrite applies to another form of the program.
    assert_eq!(rw.apply(&encode(src)).unwrap(), expect);
    // Without conversions nothing changes.
    let plain = verify_in(&Mock::default(), src);
    assert_eq!(plain.insns(), encode(src).as_slice());
    assert!(plain.rewrite().is_identity());
}

#[test]
fn an_empty_conversion_is_a_misconfigured_verifier() {
    struct Empty(Mock);
    impl VerifierEnv for Empty {
        fn map(&self, m: MapRef) -> Option<MapInfo> {
            self.0.map(m)
        }
        fn helper(&self, id: i32) -> Option<HelperProto> {
            self.0.helper(id)
        }
        fn ctx_access(&self, off: i32, size: u32, write: bool) -> Option<CtxField> {
            self.0.ctx_access(off, size, write)
        }
        fn convert_ctx_access(&self, _: &CtxAccess, _: Insn) -> Option<Vec<Insn>> {
            Some(Vec::new())
        }
    }
    let prog = encode("r0 = *(u32 *)(r1 +12)\nexit");
    let e = verify(
        &prog,
        &ProgInfo::default(),
        &Empty(Mock::default()),
        &LogOptions::default(),
    )
    .unwrap_err();
    assert_eq!(
        (e.errno, e.pc, e.message.as_str()),
        (22, 0, "bpf verifier is misconfigured")
    );
}

fn facts(src: &str) -> Vec<InsnFacts> {
    verify_in(&Mock::default(), src).facts().to_vec()
}

#[test]
fn zero_extension_facts() {
    let f = facts(
        "
        w1 = 3
        w1 *= 5
        r0 = r1
        w2 = 7
        *(u32 *)(r10 -4) = r2
        exit
    ",
    );
    let z: Vec<bool> = f.iter().map(|f| f.zext_redundant).collect();
    assert_eq!(z, [true, false, false, true, false, false]);
}

#[test]
fn divisor_facts() {
    let f = facts(
        "
        call bpf_get_prandom_u32
        r2 = r0
        r2 &= 7
        r2 += 1
        r1 = 100
        r1 /= r2
        r3 = r0
        r3 |= 1
        r1 s/= r3
        w1 %= w3
        r1 %= r0
        r0 = 0
        exit
    ",
    );
    let d = |i: usize| (f[i].divisor_nonzero, f[i].divisor_not_minus_one);
    assert_eq!(d(5), (true, true), "1..=8");
    assert_eq!(d(8), (true, false), "odd, may be -1");
    assert_eq!(d(9), (true, false), "odd low half, may be -1");
    assert_eq!(d(10), (false, false), "anything");
    assert_eq!(d(4), (false, false), "not a division");
}

/// Two paths meet at 12 with `r2` = 1 (explored first, and remembered
/// there) and `r2` = `second` (pruned there); the division after it keeps
/// its fact only if pruning did not rely on `r2` being imprecise.
fn divisor_after_merge(second: i32) -> (bool, String) {
    let src = format!(
        "
        call bpf_get_prandom_u32
        r6 = r0
        r2 = {second}
        if r6 == 0 goto pc+1
        r2 = 1
        goto pc+0
        r1 = 0
        r1 = 0
        r1 = 0
        r1 = 0
        r1 = 0
        goto pc+0
        r1 = 100
        r1 /= r2
        r0 = 0
        exit
    "
    );
    let p = verify_in(&Mock::default(), &src);
    (p.facts()[13].divisor_nonzero, p.log().to_owned())
}

#[test]
fn pruning_through_imprecise_registers_drops_divisor_facts() {
    let (same, log) = divisor_after_merge(1);
    assert!(log.contains("12: safe"), "{log}");
    assert!(same, "pruned against an identical state: the fact holds");
    let (zero, log) = divisor_after_merge(0);
    assert!(
        log.contains("12: safe"),
        "the r2 = 0 path was pruned:\n{log}"
    );
    assert!(
        !log.contains("13: (3f)"),
        "and never reached the division itself:\n{log}"
    );
    assert!(!zero, "that path divides by zero");
}
