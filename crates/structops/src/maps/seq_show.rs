//! The kernel's `btf_type_seq_show`: a value printed through its BTF type the way a
//! pinned map's file in bpffs shows it (`map_seq_show_elem`), with the flags the
//! kernel uses there (no member names, compact, zeros shown, pointers shown raw).
//!
//! - A struct or union is `{` then every member's value followed by `,`, then `}`.
//! - An array is `[` then every element followed by `,`, then `]`. Arrays of 1-byte
//!   integers are strings: printable bytes as `'c'`, others as numbers, up to the first
//!   NUL, which ends the array.
//! - Integers are decimal (signed per their encoding); bitfields are extracted.
//! - Enums print the name of the matching enumerator, else the number.
//! - Pointers print as `0x` and 16 hex digits.
//!
//! Only the kernel's format is reproduced, for the value types struct_ops maps have;
//! kinds without a value form (functions, floats) print nothing.

use std::fmt::Write as _;

use structops_btf::{Btf, TypeId, TypeKind};

/// Deepest nesting followed (the kernel's `BTF_SHOW_MAX_ITER` is 10; types here are
/// shallow, and this bounds malformed input).
const MAX_DEPTH: u32 = 32;

/// `value` (at least the type's size) shown as type `id` of `btf`; `None` when the value
/// is too short for the type or the type cannot be resolved.
pub(crate) fn seq_show(btf: &Btf, id: TypeId, value: &[u8]) -> Option<String> {
    let mut out = String::new();
    show(btf, id, value, 0, &mut out)?;
    Some(out)
}

/// `n` bytes at `off` of `data` as a little-endian integer.
fn read(data: &[u8], off: usize, n: usize) -> Option<u64> {
    let b = data.get(off..off.checked_add(n)?)?;
    let mut w = [0u8; 8];
    w.get_mut(..n)?.copy_from_slice(b);
    Some(u64::from_le_bytes(w))
}

/// `v`, `bits` wide, as a signed number.
fn sign_extend(v: u64, bits: u32) -> i64 {
    if bits == 0 || bits >= 64 {
        return v as i64;
    }
    let shift = 64 - bits;
    ((v << shift) as i64) >> shift
}

fn show(btf: &Btf, id: TypeId, data: &[u8], depth: u32, out: &mut String) -> Option<()> {
    if depth > MAX_DEPTH {
        return None;
    }
    let (_, t) = btf.resolved_ty(id).ok()?;
    match &t.kind {
        TypeKind::Int {
            size,
            encoding,
            offset,
            bits,
        } => {
            let n = (*size as usize).min(8);
            let raw = read(data, 0, n)?;
            let bits = u32::from(*bits).min(64);
            let v = if bits < 64 {
                (raw >> offset) & ((1u64 << bits) - 1)
            } else {
                raw
            };
            if encoding & structops_btf::INT_SIGNED != 0 {
                let _ = write!(out, "{}", sign_extend(v, bits));
            } else {
                let _ = write!(out, "{v}");
            }
        }
        TypeKind::Ptr { .. } => {
            let _ = write!(out, "0x{:016x}", read(data, 0, 8)?);
        }
        TypeKind::Enum(e) | TypeKind::Enum64(e) => {
            let n = (e.size as usize).min(8);
            let raw = read(data, 0, n)?;
            let bits = (n * 8) as u32;
            let mask = if bits >= 64 {
                u64::MAX
            } else {
                (1u64 << bits) - 1
            };
            match e.values.iter().find(|v| v.value & mask == raw & mask) {
                Some(v) => out.push_str(btf.name(v.name_off).ok()?),
                None if e.signed => {
                    let _ = write!(out, "{}", sign_extend(raw, bits));
                }
                None => {
                    let _ = write!(out, "{raw}");
                }
            }
        }
        TypeKind::Struct(c) | TypeKind::Union(c) => {
            out.push('{');
            for m in &c.members {
                let bit_off = m.bit_offset(c.kflag);
                let width = m.bitfield_size(c.kflag);
                let start = (bit_off / 8) as usize;
                if width > 0 {
                    // A bitfield: `width` bits from `bit_off`, in up to 8 bytes.
                    let shift = bit_off % 8;
                    let n = ((shift + width).div_ceil(8) as usize).min(8);
                    let raw = read(data, start, n)? >> shift;
                    let v = if width >= 64 {
                        raw
                    } else {
                        raw & ((1u64 << width) - 1)
                    };
                    let signed = matches!(
                        btf.resolved_ty(m.ty).ok().map(|(_, t)| &t.kind),
                        Some(TypeKind::Int { encoding, .. }) if encoding & structops_btf::INT_SIGNED != 0
                    );
                    if signed {
                        let _ = write!(out, "{}", sign_extend(v, width));
                    } else {
                        let _ = write!(out, "{v}");
                    }
                } else {
                    show(btf, m.ty, data.get(start..)?, depth + 1, out)?;
                }
                out.push(',');
            }
            out.push('}');
        }
        TypeKind::Array { elem, len, .. } => {
            let elem_size = btf.size_of(*elem).ok()? as usize;
            let is_bytes = elem_size == 1
                && matches!(
                    btf.resolved_ty(*elem).ok().map(|(_, t)| &t.kind),
                    Some(TypeKind::Int { .. })
                );
            out.push('[');
            for i in 0..*len as usize {
                let at = i.checked_mul(elem_size)?;
                if is_bytes {
                    let b = *data.get(at)?;
                    if b == 0 {
                        break;
                    }
                    if b.is_ascii_graphic() || b == b' ' {
                        let _ = write!(out, "'{}'", b as char);
                    } else {
                        show(btf, *elem, data.get(at..)?, depth + 1, out)?;
                    }
                } else {
                    show(btf, *elem, data.get(at..)?, depth + 1, out)?;
                }
                out.push(',');
            }
            out.push(']');
        }
        _ => {}
    }
    Some(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use structops_btf::{BtfBuilder, INT_SIGNED};

    #[test]
    fn the_kernels_compact_format() {
        let mut b = BtfBuilder::new();
        let int = b.add_int("int", 4, INT_SIGNED);
        let u32t = b.add_int("unsigned int", 4, 0);
        let chr = b.add_int("char", 1, INT_SIGNED);
        let name = b.add_array(chr, int, 8);
        let state = b.add_enum("st", 4, false, &[("ST_INIT", 0), ("ST_READY", 1)]);
        let inner = b.add_struct("inner", 4, &[("counter", int, 0)]);
        let ptr = b.add_ptr(0);
        let s = b.add_struct(
            "s",
            32,
            &[
                ("refs", inner, 0),
                ("state", state, 32),
                ("name", name, 64),
                ("p", ptr, 128),
                ("k", u32t, 192),
            ],
        );
        let btf = b.build();
        let mut v = vec![0u8; 32];
        assert_eq!(
            seq_show(&btf, s, &v).unwrap(),
            "{{0,},ST_INIT,[],0x0000000000000000,0,}"
        );
        v[..4].copy_from_slice(&(-3i32).to_le_bytes());
        v[4] = 1;
        v[8..12].copy_from_slice(b"reno");
        v[16..24].copy_from_slice(&0x2au64.to_le_bytes());
        v[24..28].copy_from_slice(&7u32.to_le_bytes());
        assert_eq!(
            seq_show(&btf, s, &v).unwrap(),
            "{{-3,},ST_READY,['r','e','n','o',],0x000000000000002a,7,}"
        );
        // Too short a value: no output rather than a panic.
        assert!(seq_show(&btf, s, &v[..10]).is_none());
    }
}
