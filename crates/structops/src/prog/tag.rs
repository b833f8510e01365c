//! The program tag: the first 8 bytes of a SHA-1 digest over the instructions as
//! submitted, with map references blanked (the kernel's `bpf_prog_calc_tag`).
//!
//! Map descriptors differ from load to load, so the `imm` of both slots of an
//! `LD_IMM64` with `BPF_PSEUDO_MAP_FD` or `BPF_PSEUDO_MAP_VALUE` are zeroed before
//! hashing (the second slot only when it is a well-formed second half). The digest is
//! plain SHA-1 (FIPS 180-4) of the 8-byte instruction encodings.

use structops_isa::Insn;
use structops_isa::opcode as oc;

/// `BPF_LD | BPF_IMM | BPF_DW`.
const LD_IMM64: u8 = 0x18;

/// The 8-byte tag of `insns` (`bpf_prog_info.tag`).
pub(crate) fn prog_tag(insns: &[Insn]) -> [u8; 8] {
    let mut bytes = Vec::with_capacity(insns.len() * 8);
    let mut was_ld_map = false;
    for insn in insns {
        let mut i = *insn;
        if !was_ld_map
            && i.code == LD_IMM64
            && (i.src_reg() == oc::PSEUDO_MAP_FD || i.src_reg() == oc::PSEUDO_MAP_VALUE)
        {
            was_ld_map = true;
            i.imm = 0;
        } else if was_ld_map && i.code == 0 && i.dst_reg() == 0 && i.src_reg() == 0 && i.off == 0 {
            was_ld_map = false;
            i.imm = 0;
        } else {
            was_ld_map = false;
        }
        bytes.extend_from_slice(&i.to_bytes());
    }
    let d = sha1(&bytes);
    let mut tag = [0u8; 8];
    tag.copy_from_slice(d.get(..8).unwrap_or(&[0; 8]));
    tag
}

/// SHA-1 of `data` (FIPS 180-4, section 6.1).
pub(crate) fn sha1(data: &[u8]) -> [u8; 20] {
    let mut h: [u32; 5] = [
        0x6745_2301,
        0xefcd_ab89,
        0x98ba_dcfe,
        0x1032_5476,
        0xc3d2_e1f0,
    ];
    let bit_len = (data.len() as u64).wrapping_mul(8);
    let mut msg = data.to_vec();
    msg.push(0x80);
    while msg.len() % 64 != 56 {
        msg.push(0);
    }
    msg.extend_from_slice(&bit_len.to_be_bytes());
    for block in msg.chunks_exact(64) {
        let mut w = [0u32; 80];
        for (t, word) in block.chunks_exact(4).enumerate() {
            if let (Some(slot), Ok(b)) = (w.get_mut(t), <[u8; 4]>::try_from(word)) {
                *slot = u32::from_be_bytes(b);
            }
        }
        for t in 16..80 {
            w[t] = (w[t - 3] ^ w[t - 8] ^ w[t - 14] ^ w[t - 16]).rotate_left(1);
        }
        let [mut a, mut b, mut c, mut d, mut e] = h;
        for (t, &wt) in w.iter().enumerate() {
            let (f, k) = match t {
                0..=19 => ((b & c) | (!b & d), 0x5a82_7999),
                20..=39 => (b ^ c ^ d, 0x6ed9_eba1),
                40..=59 => ((b & c) | (b & d) | (c & d), 0x8f1b_bcdc),
                _ => (b ^ c ^ d, 0xca62_c1d6),
            };
            let tmp = a
                .rotate_left(5)
                .wrapping_add(f)
                .wrapping_add(e)
                .wrapping_add(k)
                .wrapping_add(wt);
            e = d;
            d = c;
            c = b.rotate_left(30);
            b = a;
            a = tmp;
        }
        for (hv, v) in h.iter_mut().zip([a, b, c, d, e]) {
            *hv = hv.wrapping_add(v);
        }
    }
    let mut out = [0u8; 20];
    for (o, v) in out.chunks_exact_mut(4).zip(h) {
        o.copy_from_slice(&v.to_be_bytes());
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hex(b: &[u8]) -> String {
        b.iter().map(|x| format!("{x:02x}")).collect()
    }

    #[test]
    fn sha1_known_answers() {
        assert_eq!(hex(&sha1(b"")), "da39a3ee5e6b4b0d3255bfef95601890afd80709");
        assert_eq!(
            hex(&sha1(b"abc")),
            "a9993e364706816aba3e25717850c26c9cd0d89d"
        );
        assert_eq!(
            hex(&sha1(
                b"abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq"
            )),
            "84983e441c3bd26ebaae4aa1f95129e5e54670f1"
        );
        // 55, 56 and 64 bytes: the padding boundary cases.
        assert_eq!(
            hex(&sha1(&[b'a'; 64])),
            "0098ba824b5c16427bd7a1122a5a442a25ec644d"
        );
    }

    #[test]
    fn map_fds_do_not_change_the_tag() {
        let prog = |fd: i32| {
            vec![
                Insn::new(LD_IMM64, 1, oc::PSEUDO_MAP_FD, 0, fd),
                Insn::new(0, 0, 0, 0, 0),
                Insn::new(0xb7, 0, 0, 0, 0),
                Insn::new(0x95, 0, 0, 0, 0),
            ]
        };
        assert_eq!(prog_tag(&prog(3)), prog_tag(&prog(77)));
        let mut other = prog(3);
        other[2].imm = 1;
        assert_ne!(prog_tag(&prog(3)), prog_tag(&other));
    }
}
