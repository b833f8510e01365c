//! Parsing raw BTF (`.BTF` sections, `/sys/kernel/btf/*`) into a [`Btf`].
//!
//! The reader is bounds-checked at every step: a hostile input gets a [`BtfError`] naming
//! the byte offset or type id, never a panic, and allocation is bounded by the input size
//! (a record count is only trusted after the bytes it implies are known to be present).

use crate::Btf;
use crate::error::{BtfError, Result};
use crate::types::*;

/// `BTF_MAGIC`.
pub const BTF_MAGIC: u16 = 0xeb9f;
/// `BTF_VERSION`.
pub const BTF_VERSION: u8 = 1;
/// The kernel's `BTF_MAX_SIZE`: the largest BTF blob `BPF_BTF_LOAD` accepts.
pub const BTF_MAX_SIZE: usize = 16 * 1024 * 1024;
/// `BTF_MAX_TYPE`: the largest type id.
pub const BTF_MAX_TYPE: u32 = 0x000f_ffff;
/// `BTF_MAX_NAME_OFFSET`: the largest string offset.
pub const BTF_MAX_NAME_OFFSET: u32 = 0x00ff_ffff;
/// `BTF_MAX_VLEN`.
pub const BTF_MAX_VLEN: u32 = 0xffff;
/// Size of `struct btf_header` (version 1).
pub const HEADER_LEN: usize = 24;

/// Byte order of a BTF blob. Objects built for `bpfel` and every kernel this project
/// targets are little-endian; big-endian input (`bpfeb`) is read too, as libbpf does.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Endian {
    /// Little-endian.
    Little,
    /// Big-endian.
    Big,
}

/// A checked little/big-endian cursor over a byte slice.
#[derive(Clone, Copy)]
pub(crate) struct Reader<'a> {
    pub(crate) data: &'a [u8],
    pub(crate) endian: Endian,
}

impl<'a> Reader<'a> {
    pub(crate) fn bytes(&self, offset: usize, len: usize) -> Result<&'a [u8]> {
        let end = offset.checked_add(len);
        match end {
            Some(end) if end <= self.data.len() => Ok(&self.data[offset..end]),
            _ => Err(BtfError::Truncated {
                offset,
                need: len,
                have: self.data.len().saturating_sub(offset),
            }),
        }
    }

    pub(crate) fn u8(&self, offset: usize) -> Result<u8> {
        Ok(self.bytes(offset, 1)?[0])
    }

    pub(crate) fn u32(&self, offset: usize) -> Result<u32> {
        let b = self.bytes(offset, 4)?;
        let a = [b[0], b[1], b[2], b[3]];
        Ok(match self.endian {
            Endian::Little => u32::from_le_bytes(a),
            Endian::Big => u32::from_be_bytes(a),
        })
    }
}

/// The decoded `struct btf_header`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Header {
    /// Byte order of the blob.
    pub endian: Endian,
    /// Header length (24 for version 1; larger headers must have zero tails).
    pub hdr_len: u32,
    /// Type section offset, relative to the end of the header.
    pub type_off: u32,
    /// Type section length.
    pub type_len: u32,
    /// String section offset, relative to the end of the header.
    pub str_off: u32,
    /// String section length.
    pub str_len: u32,
}

impl Header {
    /// Reads and checks the header of a BTF blob (mirrors `btf_parse_hdr`).
    pub fn parse(data: &[u8]) -> Result<Header> {
        if data.len() < 8 {
            return Err(BtfError::Truncated {
                offset: 0,
                need: 8,
                have: data.len(),
            });
        }
        let endian = match [data[0], data[1]] {
            [0x9f, 0xeb] => Endian::Little,
            [0xeb, 0x9f] => Endian::Big,
            m => {
                return Err(BtfError::BadMagic {
                    magic: u16::from_le_bytes(m),
                });
            }
        };
        let r = Reader { data, endian };
        let version = r.u8(2)?;
        if version != BTF_VERSION {
            return Err(BtfError::BadVersion { version });
        }
        let flags = r.u8(3)?;
        if flags != 0 {
            return Err(BtfError::BadFlags { flags });
        }
        let hdr_len = r.u32(4)?;
        if (hdr_len as usize) < HEADER_LEN {
            return Err(BtfError::BadHeader {
                reason: "hdr_len shorter than struct btf_header",
            });
        }
        // The header itself must be present; a longer header must be zero past what we know.
        let hdr_bytes = r.bytes(0, hdr_len as usize)?;
        if hdr_bytes[HEADER_LEN..].iter().any(|&b| b != 0) {
            return Err(BtfError::BadHeader {
                reason: "unsupported btf_header fields are not zero",
            });
        }
        let h = Header {
            endian,
            hdr_len,
            type_off: r.u32(8)?,
            type_len: r.u32(12)?,
            str_off: r.u32(16)?,
            str_len: r.u32(20)?,
        };
        h.check_sections(data.len())?;
        Ok(h)
    }

    /// Checks section placement as `btf_check_sec_info` does: both sections inside the
    /// data, 4-byte aligned type section, types before strings, no overlap.
    fn check_sections(&self, total: usize) -> Result<()> {
        let body = total - self.hdr_len as usize;
        let t_end = self.type_off as u64 + self.type_len as u64;
        let s_end = self.str_off as u64 + self.str_len as u64;
        if t_end > body as u64 || s_end > body as u64 {
            return Err(BtfError::BadHeader {
                reason: "section extends past the end of the data",
            });
        }
        if !self.type_off.is_multiple_of(4) {
            return Err(BtfError::BadHeader {
                reason: "type section is not 4-byte aligned",
            });
        }
        if !self.type_len.is_multiple_of(4) {
            return Err(BtfError::BadHeader {
                reason: "type section length is not a multiple of 4",
            });
        }
        if self.type_len > 0 && self.str_len > 0 {
            let overlap = (self.type_off as u64) < s_end && (self.str_off as u64) < t_end;
            if overlap {
                return Err(BtfError::BadHeader {
                    reason: "type and string sections overlap",
                });
            }
        }
        Ok(())
    }
}

/// Parses the type records in `types` (the type section) into `out`, starting at
/// `first_id` (1 for base BTF; the base's type count for split BTF).
pub(crate) fn parse_types(r: Reader<'_>, first_id: u32, out: &mut Vec<Type>) -> Result<()> {
    let mut off = 0usize;
    let len = r.data.len();
    let mut id = first_id;
    while off < len {
        if id > BTF_MAX_TYPE {
            return Err(BtfError::TooManyTypes { max: BTF_MAX_TYPE });
        }
        let name_off = r.u32(off)?;
        let info = r.u32(off + 4)?;
        let size_or_type = r.u32(off + 8)?;
        let vlen = (info & 0xffff) as usize;
        let raw_kind = (info >> 24) & 0x1f;
        let kflag = info >> 31 != 0;
        let rec = off;
        off += 12;
        if info & !0x9f00_ffff != 0 {
            // The kernel's BTF_INFO_MASK: bits 16-23 and 29-30 are reserved.
            return Err(BtfError::InvalidType {
                id,
                kind: Kind::from_raw(raw_kind).unwrap_or(Kind::Void),
                reason: format!("Invalid btf_info:{info:x}"),
            });
        }
        let kind = Kind::from_raw(raw_kind)
            .filter(|k| *k != Kind::Void)
            .ok_or(BtfError::UnknownKind {
                id,
                offset: rec,
                kind: raw_kind,
            })?;
        // Bounded preallocation: never more records than the remaining bytes can hold.
        let cap = |rec_size: usize| vlen.min((len - off.min(len)) / rec_size);
        let body = match kind {
            Kind::Void => TypeKind::Void,
            Kind::Int => {
                let v = r.u32(off)?;
                off += 4;
                if v & !0x0fff_ffff != 0 {
                    return Err(BtfError::InvalidType {
                        id,
                        kind,
                        reason: format!("Invalid int_data:{v:x}"),
                    });
                }
                TypeKind::Int {
                    size: size_or_type,
                    encoding: ((v >> 24) & 0x0f) as u8,
                    offset: ((v >> 16) & 0xff) as u8,
                    bits: (v & 0xff) as u8,
                }
            }
            Kind::Ptr => TypeKind::Ptr {
                target: size_or_type,
            },
            Kind::Typedef => TypeKind::Typedef {
                target: size_or_type,
            },
            Kind::Volatile => TypeKind::Volatile {
                target: size_or_type,
            },
            Kind::Const => TypeKind::Const {
                target: size_or_type,
            },
            Kind::Restrict => TypeKind::Restrict {
                target: size_or_type,
            },
            Kind::TypeTag => TypeKind::TypeTag {
                target: size_or_type,
                kflag,
            },
            Kind::Array => {
                let t = TypeKind::Array {
                    elem: r.u32(off)?,
                    index: r.u32(off + 4)?,
                    len: r.u32(off + 8)?,
                };
                off += 12;
                t
            }
            Kind::Struct | Kind::Union => {
                let mut members = Vec::with_capacity(cap(12));
                for _ in 0..vlen {
                    members.push(Member {
                        name_off: r.u32(off)?,
                        ty: r.u32(off + 4)?,
                        offset: r.u32(off + 8)?,
                    });
                    off += 12;
                }
                let c = Composite {
                    size: size_or_type,
                    kflag,
                    members,
                };
                if kind == Kind::Struct {
                    TypeKind::Struct(c)
                } else {
                    TypeKind::Union(c)
                }
            }
            Kind::Enum => {
                let mut values = Vec::with_capacity(cap(8));
                for _ in 0..vlen {
                    values.push(Enumerator {
                        name_off: r.u32(off)?,
                        value: r.u32(off + 4)? as u64,
                    });
                    off += 8;
                }
                TypeKind::Enum(EnumBody {
                    size: size_or_type,
                    signed: kflag,
                    values,
                })
            }
            Kind::Enum64 => {
                let mut values = Vec::with_capacity(cap(12));
                for _ in 0..vlen {
                    let lo = r.u32(off + 4)? as u64;
                    let hi = r.u32(off + 8)? as u64;
                    values.push(Enumerator {
                        name_off: r.u32(off)?,
                        value: hi << 32 | lo,
                    });
                    off += 12;
                }
                TypeKind::Enum64(EnumBody {
                    size: size_or_type,
                    signed: kflag,
                    values,
                })
            }
            Kind::Fwd => TypeKind::Fwd { union: kflag },
            Kind::Func => TypeKind::Func {
                proto: size_or_type,
                linkage: Linkage::from_raw(vlen as u32),
            },
            Kind::FuncProto => {
                let mut params = Vec::with_capacity(cap(8));
                for _ in 0..vlen {
                    params.push(Param {
                        name_off: r.u32(off)?,
                        ty: r.u32(off + 4)?,
                    });
                    off += 8;
                }
                TypeKind::FuncProto {
                    ret: size_or_type,
                    params,
                }
            }
            Kind::Var => {
                let linkage = Linkage::from_raw(r.u32(off)?);
                off += 4;
                TypeKind::Var {
                    ty: size_or_type,
                    linkage,
                }
            }
            Kind::Datasec => {
                let mut vars = Vec::with_capacity(cap(12));
                for _ in 0..vlen {
                    vars.push(VarSecInfo {
                        ty: r.u32(off)?,
                        offset: r.u32(off + 4)?,
                        size: r.u32(off + 8)?,
                    });
                    off += 12;
                }
                TypeKind::Datasec {
                    size: size_or_type,
                    vars,
                }
            }
            Kind::Float => TypeKind::Float { size: size_or_type },
            Kind::DeclTag => {
                let component_idx = r.u32(off)? as i32;
                off += 4;
                TypeKind::DeclTag {
                    target: size_or_type,
                    component_idx,
                    kflag,
                }
            }
        };
        // Kinds whose vlen must be zero keep it zero; a non-zero vlen there is a
        // validation error, but we must still have consumed the record correctly, which
        // we did (those kinds have no trailing vlen records in the wire format).
        if vlen != 0
            && matches!(
                kind,
                Kind::Int
                    | Kind::Ptr
                    | Kind::Array
                    | Kind::Fwd
                    | Kind::Typedef
                    | Kind::Volatile
                    | Kind::Const
                    | Kind::Restrict
                    | Kind::Var
                    | Kind::Float
                    | Kind::DeclTag
                    | Kind::TypeTag
            )
        {
            return Err(BtfError::InvalidType {
                id,
                kind,
                reason: "vlen != 0".into(),
            });
        }
        if kflag
            && matches!(
                kind,
                Kind::Int
                    | Kind::Ptr
                    | Kind::Array
                    | Kind::Typedef
                    | Kind::Volatile
                    | Kind::Const
                    | Kind::Restrict
                    | Kind::Func
                    | Kind::FuncProto
                    | Kind::Var
                    | Kind::Datasec
                    | Kind::Float
            )
        {
            return Err(BtfError::InvalidType {
                id,
                kind,
                reason: "Invalid btf_info kind_flag".into(),
            });
        }
        out.push(Type {
            name_off,
            kind: body,
        });
        id += 1;
    }
    Ok(())
}

impl Btf {
    /// Parses a BTF blob (a `.BTF` section or `/sys/kernel/btf/vmlinux`).
    ///
    /// This checks the wire format only (header, section bounds, record lengths, known
    /// kinds, string section termination), as libbpf's `btf__new` does. Call
    /// [`Btf::validate`] for the kernel's full semantic checks.
    ///
    /// ```
    /// use structops_btf::{Btf, BtfBuilder, BtfError, Kind, INT_SIGNED};
    ///
    /// let mut b = BtfBuilder::new();
    /// let int = b.add_int("int", 4, INT_SIGNED);
    /// let ptr = b.add_ptr(int);
    /// let bytes = b.encode();
    ///
    /// let btf = Btf::parse(&bytes)?;
    /// assert_eq!(btf.len(), 3); // void, int, int *
    /// assert_eq!(btf.find_by_name_kind("int", Kind::Int), Some(int));
    /// assert_eq!(btf.size_of(ptr)?, 8);
    ///
    /// // Every read is checked: short or foreign input is an error, never a panic.
    /// assert!(matches!(Btf::parse(&bytes[..10]), Err(BtfError::Truncated { .. })));
    /// let mut foreign = bytes.clone();
    /// foreign[0] = 0;
    /// assert!(matches!(Btf::parse(&foreign), Err(BtfError::BadMagic { .. })));
    /// # Ok::<(), BtfError>(())
    /// ```
    pub fn parse(data: &[u8]) -> Result<Btf> {
        if data.len() > BTF_MAX_SIZE {
            return Err(BtfError::TooLarge {
                size: data.len(),
                max: BTF_MAX_SIZE,
            });
        }
        let h = Header::parse(data)?;
        let body = &data[h.hdr_len as usize..];
        let strings = &body[h.str_off as usize..(h.str_off + h.str_len) as usize];
        check_strings(strings)?;
        let types = &body[h.type_off as usize..(h.type_off + h.type_len) as usize];
        let mut out = Vec::with_capacity(1 + types.len() / 16);
        out.push(Type {
            name_off: 0,
            kind: TypeKind::Void,
        });
        parse_types(
            Reader {
                data: types,
                endian: h.endian,
            },
            1,
            &mut out,
        )?;
        Ok(Btf::from_parts(out, strings.to_vec(), h.endian))
    }
}

/// Checks the string section as the kernel's `btf_parse_str_sec` does: non-empty, starts
/// with the empty string, ends with NUL, and fits the name-offset space.
fn check_strings(s: &[u8]) -> Result<()> {
    if s.is_empty() {
        return Err(BtfError::BadStrings {
            reason: "string section is empty",
        });
    }
    if s[0] != 0 {
        return Err(BtfError::BadStrings {
            reason: "string section does not start with an empty string",
        });
    }
    if s[s.len() - 1] != 0 {
        return Err(BtfError::BadStrings {
            reason: "string section is not NUL-terminated",
        });
    }
    if s.len() - 1 > BTF_MAX_NAME_OFFSET as usize {
        return Err(BtfError::BadStrings {
            reason: "string section too large",
        });
    }
    Ok(())
}
