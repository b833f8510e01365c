//! `.BTF.ext`: per-section function info, line info and CO-RE relocation records.
//!
//! Layout (libbpf's `btf_ext_header` and friends): a header with offsets of up to three
//! subsections; each subsection starts with a `u32` record size, followed by groups of
//! `{sec_name_off, num_info}` and `num_info` records. Records may be larger than the
//! fields known here (newer producers); only the known prefix is read.

use crate::error::{BtfError, Result};
use crate::parse::{Endian, Reader};

/// `bpf_func_info`: a function starts at `insn_off` with BTF `FUNC` type `type_id`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FuncInfo {
    /// Byte offset of the instruction in the ELF section (libbpf converts to instruction
    /// index when loading).
    pub insn_off: u32,
    /// The `FUNC` type id.
    pub type_id: u32,
}

/// `bpf_line_info`: source position of the instruction at `insn_off`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LineInfo {
    /// Byte offset of the instruction in the ELF section.
    pub insn_off: u32,
    /// String offset of the file name.
    pub file_name_off: u32,
    /// String offset of the source line text.
    pub line_off: u32,
    /// `line << 10 | column`.
    pub line_col: u32,
}

impl LineInfo {
    /// Source line number.
    pub fn line(&self) -> u32 {
        self.line_col >> 10
    }

    /// Source column.
    pub fn column(&self) -> u32 {
        self.line_col & 0x3ff
    }
}

/// The kind of a CO-RE relocation (`enum bpf_core_relo_kind`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum CoreReloKind {
    /// Field byte offset.
    FieldByteOffset,
    /// Field byte size.
    FieldByteSize,
    /// Field existence (1/0).
    FieldExists,
    /// Field signedness (1/0).
    FieldSigned,
    /// Bitfield left shift for extraction through a u64.
    FieldLshiftU64,
    /// Bitfield right shift for extraction through a u64.
    FieldRshiftU64,
    /// Local type id.
    TypeIdLocal,
    /// Target type id.
    TypeIdTarget,
    /// Type existence (1/0).
    TypeExists,
    /// Type size.
    TypeSize,
    /// Enumerator existence (1/0).
    EnumvalExists,
    /// Enumerator value.
    EnumvalValue,
    /// Type layout match (1/0).
    TypeMatches,
}

impl CoreReloKind {
    /// Decodes a raw `bpf_core_relo_kind`.
    pub fn from_raw(raw: u32) -> Option<CoreReloKind> {
        use CoreReloKind::*;
        Some(match raw {
            0 => FieldByteOffset,
            1 => FieldByteSize,
            2 => FieldExists,
            3 => FieldSigned,
            4 => FieldLshiftU64,
            5 => FieldRshiftU64,
            6 => TypeIdLocal,
            7 => TypeIdTarget,
            8 => TypeExists,
            9 => TypeSize,
            10 => EnumvalExists,
            11 => EnumvalValue,
            12 => TypeMatches,
            _ => return None,
        })
    }

    /// The raw value.
    pub fn raw(self) -> u32 {
        self as u32
    }

    /// libbpf's name for the kind (as in its debug log).
    pub fn as_str(self) -> &'static str {
        use CoreReloKind::*;
        match self {
            FieldByteOffset => "byte_off",
            FieldByteSize => "byte_sz",
            FieldExists => "field_exists",
            FieldSigned => "signed",
            FieldLshiftU64 => "lshift_u64",
            FieldRshiftU64 => "rshift_u64",
            TypeIdLocal => "local_type_id",
            TypeIdTarget => "target_type_id",
            TypeExists => "type_exists",
            TypeMatches => "type_matches",
            TypeSize => "type_size",
            EnumvalExists => "enumval_exists",
            EnumvalValue => "enumval_value",
        }
    }

    /// Is this a field-based relocation (access string walks members)?
    pub fn is_field(self) -> bool {
        use CoreReloKind::*;
        matches!(
            self,
            FieldByteOffset
                | FieldByteSize
                | FieldExists
                | FieldSigned
                | FieldLshiftU64
                | FieldRshiftU64
        )
    }

    /// Is this a type-based relocation?
    pub fn is_type(self) -> bool {
        use CoreReloKind::*;
        matches!(
            self,
            TypeIdLocal | TypeIdTarget | TypeExists | TypeMatches | TypeSize
        )
    }

    /// Is this an enumerator-based relocation?
    pub fn is_enumval(self) -> bool {
        matches!(
            self,
            CoreReloKind::EnumvalExists | CoreReloKind::EnumvalValue
        )
    }
}

/// `bpf_core_relo`: one CO-RE relocation.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CoreRelo {
    /// Byte offset of the instruction in the ELF section.
    pub insn_off: u32,
    /// The local (program BTF) root type id.
    pub type_id: u32,
    /// String offset of the access string (`"0:1:2"`).
    pub access_str_off: u32,
    /// The relocation kind.
    pub kind: CoreReloKind,
}

/// Records of one kind for one ELF section.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SecInfo<T> {
    /// String offset (in the object's `.BTF` strings) of the ELF section name.
    pub sec_name_off: u32,
    /// The records.
    pub records: Vec<T>,
}

/// A parsed `.BTF.ext` section.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct BtfExt {
    /// Function info per section.
    pub func_info: Vec<SecInfo<FuncInfo>>,
    /// Raw record size of func_info records in the input.
    pub func_info_rec_size: u32,
    /// Line info per section.
    pub line_info: Vec<SecInfo<LineInfo>>,
    /// Raw record size of line_info records in the input.
    pub line_info_rec_size: u32,
    /// CO-RE relocations per section.
    pub core_relos: Vec<SecInfo<CoreRelo>>,
}

const EXT_MIN_HDR: usize = 24;
const EXT_FULL_HDR: usize = 32;

impl BtfExt {
    /// Parses `.BTF.ext` bytes. Every read is bounds-checked.
    pub fn parse(data: &[u8]) -> Result<BtfExt> {
        if data.len() < 8 {
            return Err(BtfError::BadExt {
                offset: 0,
                reason: "shorter than the header",
            });
        }
        let endian = match [data[0], data[1]] {
            [0x9f, 0xeb] => Endian::Little,
            [0xeb, 0x9f] => Endian::Big,
            _ => {
                return Err(BtfError::BadExt {
                    offset: 0,
                    reason: "bad magic",
                });
            }
        };
        let r = Reader { data, endian };
        if r.u8(2)? != 1 {
            return Err(BtfError::BadExt {
                offset: 2,
                reason: "unsupported version",
            });
        }
        if r.u8(3)? != 0 {
            return Err(BtfError::BadExt {
                offset: 3,
                reason: "unsupported flags",
            });
        }
        let hdr_len = r.u32(4)? as usize;
        if hdr_len < EXT_MIN_HDR || hdr_len > data.len() {
            return Err(BtfError::BadExt {
                offset: 4,
                reason: "bad header length",
            });
        }
        let body = Reader {
            data: &data[hdr_len..],
            endian,
        };
        let sub = |off_at: usize| -> Result<Option<Reader<'_>>> {
            let off = r.u32(off_at)? as usize;
            let len = r.u32(off_at + 4)? as usize;
            if len == 0 {
                return Ok(None);
            }
            let bytes = body.bytes(off, len).map_err(|_| BtfError::BadExt {
                offset: hdr_len + off,
                reason: "subsection extends past the end",
            })?;
            Ok(Some(Reader {
                data: bytes,
                endian,
            }))
        };
        let mut ext = BtfExt::default();
        if let Some(s) = sub(8)? {
            let (size, secs) = parse_sub(s, 8, |r, o| {
                Ok(FuncInfo {
                    insn_off: r.u32(o)?,
                    type_id: r.u32(o + 4)?,
                })
            })?;
            ext.func_info_rec_size = size;
            ext.func_info = secs;
        }
        if let Some(s) = sub(16)? {
            let (size, secs) = parse_sub(s, 16, |r, o| {
                Ok(LineInfo {
                    insn_off: r.u32(o)?,
                    file_name_off: r.u32(o + 4)?,
                    line_off: r.u32(o + 8)?,
                    line_col: r.u32(o + 12)?,
                })
            })?;
            ext.line_info_rec_size = size;
            ext.line_info = secs;
        }
        if hdr_len >= EXT_FULL_HDR
            && let Some(s) = sub(24)?
        {
            let (_, secs) = parse_sub(s, 16, |r, o| {
                let raw = r.u32(o + 12)?;
                Ok(CoreRelo {
                    insn_off: r.u32(o)?,
                    type_id: r.u32(o + 4)?,
                    access_str_off: r.u32(o + 8)?,
                    kind: CoreReloKind::from_raw(raw).ok_or(BtfError::BadExt {
                        offset: o + 12,
                        reason: "unknown CO-RE relocation kind",
                    })?,
                })
            })?;
            ext.core_relos = secs;
        }
        Ok(ext)
    }
}

/// Parses one subsection: record size, then `{sec_name_off, num_info, records}` groups.
fn parse_sub<T>(
    r: Reader<'_>,
    min_rec: usize,
    read: impl Fn(&Reader<'_>, usize) -> Result<T>,
) -> Result<(u32, Vec<SecInfo<T>>)> {
    let rec_size = r.u32(0)? as usize;
    if rec_size < min_rec || !rec_size.is_multiple_of(4) {
        return Err(BtfError::BadExt {
            offset: 0,
            reason: "bad record size",
        });
    }
    let mut off = 4usize;
    let mut secs = Vec::new();
    while off < r.data.len() {
        let sec_name_off = r.u32(off)?;
        let num = r.u32(off + 4)? as usize;
        off += 8;
        if num == 0 {
            return Err(BtfError::BadExt {
                offset: off,
                reason: "section with zero records",
            });
        }
        let need = num.checked_mul(rec_size).ok_or(BtfError::BadExt {
            offset: off,
            reason: "record count overflows",
        })?;
        r.bytes(off, need).map_err(|_| BtfError::BadExt {
            offset: off,
            reason: "records extend past the subsection",
        })?;
        let mut records = Vec::with_capacity(num);
        for i in 0..num {
            records.push(read(&r, off + i * rec_size)?);
        }
        off += need;
        secs.push(SecInfo {
            sec_name_off,
            records,
        });
    }
    Ok((rec_size as u32, secs))
}
