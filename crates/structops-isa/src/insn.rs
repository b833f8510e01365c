//! The raw 8-byte instruction, `struct bpf_insn`.

use std::fmt;

use thiserror::Error;

/// Size in bytes of one instruction slot.
pub const INSN_SIZE: usize = 8;

/// One raw eBPF instruction slot, laid out exactly like the kernel's
/// `struct bpf_insn`.
///
/// ```text
/// byte 0     code
/// byte 1     dst_reg (low nibble) | src_reg (high nibble)
/// bytes 2-3  off  (i16, little endian)
/// bytes 4-7  imm  (i32, little endian)
/// ```
///
/// The register nibbles are kept packed so that the in-memory layout matches
/// the kernel's bitfields on little-endian machines; use [`Insn::dst_reg`] and
/// [`Insn::src_reg`] to read them. An `Insn` carries no validity guarantee:
/// decode it into an [`Op`](crate::Op) for that.
#[repr(C)]
#[derive(Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct Insn {
    /// The opcode byte.
    pub code: u8,
    regs: u8,
    /// The signed 16-bit offset field.
    pub off: i16,
    /// The signed 32-bit immediate field.
    pub imm: i32,
}

impl Insn {
    /// Builds an instruction from its fields. Only the low four bits of `dst`
    /// and `src` are kept, as the kernel's 4-bit bitfields would keep them.
    pub const fn new(code: u8, dst: u8, src: u8, off: i16, imm: i32) -> Self {
        Self {
            code,
            regs: (dst & 0x0f) | ((src & 0x0f) << 4),
            off,
            imm,
        }
    }

    /// The destination register number (0 to 15; only 0 to 10 are valid).
    pub const fn dst_reg(&self) -> u8 {
        self.regs & 0x0f
    }

    /// The source register number (0 to 15; doubles as the pseudo-source
    /// selector of `LD_IMM64` and `CALL`).
    pub const fn src_reg(&self) -> u8 {
        self.regs >> 4
    }

    /// Replaces the destination register nibble (low four bits of `dst`).
    pub const fn set_dst_reg(&mut self, dst: u8) {
        self.regs = (self.regs & 0xf0) | (dst & 0x0f);
    }

    /// Replaces the source register nibble (low four bits of `src`); loaders
    /// use this to set the pseudo source of `LD_IMM64` and `CALL`.
    pub const fn set_src_reg(&mut self, src: u8) {
        self.regs = (self.regs & 0x0f) | ((src & 0x0f) << 4);
    }

    /// Whether this slot is the first half of a two-slot `LD_IMM64`
    /// (the check loaders use to step over the second half).
    pub const fn is_ld_imm64(&self) -> bool {
        self.code == crate::opcode::LD_IMM64
    }

    /// Decodes one slot from its 8 little-endian bytes.
    pub const fn from_bytes(b: [u8; INSN_SIZE]) -> Self {
        Self {
            code: b[0],
            regs: b[1],
            off: i16::from_le_bytes([b[2], b[3]]),
            imm: i32::from_le_bytes([b[4], b[5], b[6], b[7]]),
        }
    }

    /// Encodes this slot as 8 little-endian bytes.
    pub const fn to_bytes(&self) -> [u8; INSN_SIZE] {
        let off = self.off.to_le_bytes();
        let imm = self.imm.to_le_bytes();
        [
            self.code, self.regs, off[0], off[1], imm[0], imm[1], imm[2], imm[3],
        ]
    }

    /// Parses a byte buffer (for example an ELF program section) into slots.
    ///
    /// # Errors
    ///
    /// [`ParseError::InvalidLength`] when `bytes.len()` is not a multiple of 8.
    pub fn parse_slice(bytes: &[u8]) -> Result<Vec<Insn>, ParseError> {
        let chunks = bytes.chunks_exact(INSN_SIZE);
        if !chunks.remainder().is_empty() {
            return Err(ParseError::InvalidLength { len: bytes.len() });
        }
        Ok(chunks
            .map(|c| {
                let mut b = [0u8; INSN_SIZE];
                b.copy_from_slice(c);
                Insn::from_bytes(b)
            })
            .collect())
    }

    /// Serialises slots back into little-endian bytes.
    pub fn slice_to_bytes(insns: &[Insn]) -> Vec<u8> {
        insns.iter().flat_map(|i| i.to_bytes()).collect()
    }
}

impl fmt::Debug for Insn {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Insn")
            .field("code", &format_args!("{:#04x}", self.code))
            .field("dst_reg", &self.dst_reg())
            .field("src_reg", &self.src_reg())
            .field("off", &self.off)
            .field("imm", &self.imm)
            .finish()
    }
}

/// Errors from splitting bytes into instruction slots.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum ParseError {
    /// The buffer does not hold a whole number of 8-byte instructions.
    #[error("instruction buffer of {len} bytes is not a multiple of 8")]
    InvalidLength {
        /// Length of the rejected buffer in bytes.
        len: usize,
    },
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layout_matches_struct_bpf_insn() {
        assert_eq!(std::mem::size_of::<Insn>(), 8);
        assert_eq!(std::mem::align_of::<Insn>(), 4);
        assert_eq!(std::mem::offset_of!(Insn, code), 0);
        assert_eq!(std::mem::offset_of!(Insn, regs), 1);
        assert_eq!(std::mem::offset_of!(Insn, off), 2);
        assert_eq!(std::mem::offset_of!(Insn, imm), 4);
    }

    #[test]
    fn register_nibbles_are_packed_like_the_kernel() {
        // `(bf) r1 = r10` is bf a1 00 00 00 00 00 00 in a little-endian dump.
        let insn = Insn::new(0xbf, 1, 10, 0, 0);
        assert_eq!(insn.to_bytes(), [0xbf, 0xa1, 0, 0, 0, 0, 0, 0]);
        assert_eq!(insn.dst_reg(), 1);
        assert_eq!(insn.src_reg(), 10);
    }

    #[test]
    fn bytes_round_trip() {
        let insn = Insn::new(0x63, 10, 1, -4, 0x1234_5678);
        let b = insn.to_bytes();
        assert_eq!(b, [0x63, 0x1a, 0xfc, 0xff, 0x78, 0x56, 0x34, 0x12]);
        assert_eq!(Insn::from_bytes(b), insn);
    }

    #[test]
    fn setters_touch_only_their_nibble() {
        let mut insn = Insn::new(0x18, 3, 0, 0, 7);
        insn.set_src_reg(1);
        assert_eq!((insn.dst_reg(), insn.src_reg()), (3, 1));
        insn.set_dst_reg(0x1f);
        assert_eq!((insn.dst_reg(), insn.src_reg()), (15, 1));
        assert!(insn.is_ld_imm64());
    }

    #[test]
    fn parse_slice_rejects_partial_instructions() {
        assert_eq!(
            Insn::parse_slice(&[0; 12]),
            Err(ParseError::InvalidLength { len: 12 })
        );
        let insns = Insn::parse_slice(&[0x95, 0, 0, 0, 0, 0, 0, 0]).unwrap();
        assert_eq!(insns, vec![Insn::new(0x95, 0, 0, 0, 0)]);
        assert_eq!(
            Insn::slice_to_bytes(&insns),
            vec![0x95, 0, 0, 0, 0, 0, 0, 0]
        );
        assert_eq!(Insn::parse_slice(&[]), Ok(vec![]));
    }
}
