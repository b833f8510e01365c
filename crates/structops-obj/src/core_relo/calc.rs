//! Computing a relocation's values from a local spec and a target spec
//! (`bpf_core_calc_relo` and its field/type/enumerator helpers).

use structops_btf::ext::CoreReloKind;
use structops_btf::{Btf, INT_SIGNED, Kind, TypeId, TypeKind};

use super::compat::{int_encoding_of, storage_size};
use super::error::{CoreError, Result};
use super::spec::Spec;

/// The outcome of a relocation, ready to patch into its instruction (libbpf's
/// `bpf_core_relo_res`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ReloValues {
    /// The value the compiler put in the instruction (from the local BTF); checked
    /// before patching when `validate` is set.
    pub orig_val: u64,
    /// The value to patch in.
    pub new_val: u64,
    /// Resolution failed in a way that must not fail the load: the instruction is
    /// replaced by an invalid helper call (see [`POISON_IMM`](super::POISON_IMM)).
    pub poison: bool,
    /// Whether `orig_val` must match the instruction (off for bitfield aspects that the
    /// compiler may compute differently, and for type ids that linking may renumber).
    pub validate: bool,
    /// The field's size changed in a way a load/store cannot absorb (not both pointers,
    /// not both unsigned ints); a load/store carrying this relocation is poisoned.
    pub fail_memsz_adjust: bool,
    /// Local field size in bytes, for load/store size adjustment (0 if not a plain
    /// byte-offset field relocation).
    pub orig_sz: u32,
    /// Local field type id (resolved).
    pub orig_type_id: TypeId,
    /// Target field size in bytes.
    pub new_sz: u32,
    /// Target field type id (resolved).
    pub new_type_id: TypeId,
}

/// One side's field relocation value (`bpf_core_calc_field_relo`).
struct FieldValue {
    val: u64,
    field_sz: u32,
    type_id: TypeId,
    validate: bool,
}

fn size_of(btf: &Btf, id: TypeId) -> Result<u32> {
    btf.size_of(id).map_err(CoreError::btf(id))
}

/// Field relocation value against one spec; `Ok(None)` asks for poisoning (no target).
fn calc_field(
    kind: CoreReloKind,
    local_root: TypeId,
    side: Option<(&Btf, &Spec)>,
) -> Result<Option<FieldValue>> {
    let mut out = FieldValue {
        val: 0,
        field_sz: 0,
        type_id: 0,
        validate: true,
    };
    if kind == CoreReloKind::FieldExists {
        out.val = u64::from(side.is_some());
        return Ok(Some(out));
    }
    let Some((btf, spec)) = side else {
        return Ok(None);
    };
    let Some(acc) = spec.accessors.last() else {
        return Err(CoreError::InvalidAccessString {
            type_id: local_root,
            access: String::new(),
            reason: "field relocation without accessors",
        });
    };

    if acc.name.is_none() {
        // An array element (or the root object itself).
        match kind {
            CoreReloKind::FieldByteOffset => {
                out.val = u64::from(spec.bit_offset / 8);
                out.field_sz = size_of(btf, acc.type_id)?;
                out.type_id = acc.type_id;
            }
            CoreReloKind::FieldByteSize => out.val = u64::from(size_of(btf, acc.type_id)?),
            _ => {
                return Err(CoreError::ArrayAccess {
                    type_id: local_root,
                    kind: kind.as_str(),
                });
            }
        }
        return Ok(Some(out));
    }

    let t = btf.ty(acc.type_id).map_err(CoreError::btf(acc.type_id))?;
    let Some((m, kflag)) = t
        .composite()
        .and_then(|c| c.members.get(acc.idx as usize).map(|m| (m, c.kflag)))
    else {
        return Err(CoreError::Btf {
            type_id: acc.type_id,
            source: structops_btf::BtfError::WrongKind {
                id: acc.type_id,
                actual: t.kind(),
                expected: "struct or union with the accessed member",
            },
        });
    };
    let (field_type_id, mt) = btf.resolved_ty(m.ty).map_err(CoreError::btf(m.ty))?;
    let bit_off = spec.bit_offset;
    let mut bit_sz = m.bitfield_size(kflag);
    let bitfield = bit_sz > 0;
    let byte_off: u32;
    let mut byte_sz: u32;
    if bitfield {
        byte_sz = storage_size(mt)
            .filter(|&s| s > 0)
            .ok_or(CoreError::BadBitfieldType {
                type_id: local_root,
                member_type: field_type_id,
            })?;
        let mut off = bit_off / 8 / byte_sz * byte_sz;
        // Grow the load until it covers the whole bitfield.
        while u64::from(bit_off) + u64::from(bit_sz) - u64::from(off) * 8 > u64::from(byte_sz) * 8 {
            if byte_sz >= 8 {
                return Err(CoreError::BitfieldTooWide {
                    type_id: local_root,
                    kind: kind.as_str(),
                });
            }
            byte_sz *= 2;
            off = bit_off / 8 / byte_sz * byte_sz;
        }
        byte_off = off;
    } else {
        byte_sz = size_of(btf, field_type_id)?;
        byte_off = bit_off / 8;
        bit_sz = byte_sz.wrapping_mul(8);
    }
    // Bitfield aspects may legitimately differ from what the compiler computed, so only
    // signedness and the right shift are checked for them.
    out.validate = !bitfield;

    match kind {
        CoreReloKind::FieldByteOffset => {
            out.val = u64::from(byte_off);
            if !bitfield {
                out.field_sz = byte_sz;
                out.type_id = field_type_id;
            }
        }
        CoreReloKind::FieldByteSize => out.val = u64::from(byte_sz),
        CoreReloKind::FieldSigned => {
            let signed = match &mt.kind {
                TypeKind::Enum(e) | TypeKind::Enum64(e) => e.signed,
                TypeKind::Int { encoding, .. } => encoding & INT_SIGNED != 0,
                _ => false,
            };
            out.val = u64::from(signed);
            out.validate = true;
        }
        CoreReloKind::FieldLshiftU64 => {
            // Little-endian: shift the field's top bit up to bit 63 of a u64 holding the
            // `byte_sz` bytes loaded at `byte_off`. libbpf computes this in u32.
            let used = bit_off
                .wrapping_add(bit_sz)
                .wrapping_sub(byte_off.wrapping_mul(8));
            out.val = u64::from(64u32.wrapping_sub(used));
        }
        CoreReloKind::FieldRshiftU64 => {
            out.val = u64::from(64u32.wrapping_sub(bit_sz));
            out.validate = true;
        }
        _ => {
            return Err(CoreError::InvalidAccessString {
                type_id: local_root,
                access: String::new(),
                reason: "not a field relocation",
            });
        }
    }
    Ok(Some(out))
}

/// Type relocation value against one spec (`bpf_core_calc_type_relo`); a missing target
/// gives 0 for every type relocation kind.
fn calc_type(kind: CoreReloKind, side: Option<(&Btf, &Spec)>) -> Result<(u64, bool)> {
    let Some((btf, spec)) = side else {
        return Ok((0, true));
    };
    Ok(match kind {
        CoreReloKind::TypeIdTarget | CoreReloKind::TypeIdLocal => {
            (u64::from(spec.root_type_id), false)
        }
        CoreReloKind::TypeExists | CoreReloKind::TypeMatches => (1, true),
        CoreReloKind::TypeSize => (u64::from(size_of(btf, spec.root_type_id)?), true),
        _ => (0, true),
    })
}

/// Enumerator relocation value against one spec (`bpf_core_calc_enumval_relo`);
/// `Ok(None)` asks for poisoning.
fn calc_enumval(kind: CoreReloKind, side: Option<(&Btf, &Spec)>) -> Result<Option<u64>> {
    if kind == CoreReloKind::EnumvalExists {
        return Ok(Some(u64::from(side.is_some())));
    }
    let Some((btf, spec)) = side else {
        return Ok(None);
    };
    let Some(acc) = spec.accessors.first() else {
        return Ok(None);
    };
    let t = btf.ty(acc.type_id).map_err(CoreError::btf(acc.type_id))?;
    let value = t
        .enum_body()
        .and_then(|b| b.values.get(acc.idx as usize))
        .map(|e| e.value)
        .unwrap_or(0);
    // A 32-bit enumerator is an `__s32` in BTF: libbpf sign-extends it.
    Ok(Some(if t.kind() == Kind::Enum {
        value as u32 as i32 as i64 as u64
    } else {
        value
    }))
}

/// Computes the relocation's original and new values from the local spec and, if a
/// candidate matched, its spec (`bpf_core_calc_relo`).
pub(crate) fn calc_relo(
    local: &Btf,
    local_spec: &Spec,
    target: Option<(&Btf, &Spec)>,
) -> Result<ReloValues> {
    let kind = local_spec.relo_kind;
    let root = local_spec.root_type_id;
    let mut res = ReloValues {
        validate: true,
        ..ReloValues::default()
    };
    if kind.is_field() {
        let Some(l) = calc_field(kind, root, Some((local, local_spec)))? else {
            res.poison = true;
            return Ok(res);
        };
        res.orig_val = l.val;
        res.orig_sz = l.field_sz;
        res.orig_type_id = l.type_id;
        res.validate = l.validate;
        let Some(t) = calc_field(kind, root, target)? else {
            res.poison = true;
            return Ok(res);
        };
        res.new_val = t.val;
        res.new_sz = t.field_sz;
        res.new_type_id = t.type_id;
        if res.orig_sz != res.new_sz
            && let Some((targ, _)) = target
        {
            // Only pointers (32-bit kernel pointers read into 64-bit slots) and unsigned
            // integers survive a change of access size; anything else would read a wrong
            // value.
            let ot = local
                .ty(res.orig_type_id)
                .map_err(CoreError::btf(res.orig_type_id))?;
            let nt = targ
                .ty(res.new_type_id)
                .map_err(CoreError::btf(res.new_type_id))?;
            let both_ptr = ot.kind() == Kind::Ptr && nt.kind() == Kind::Ptr;
            let both_unsigned = matches!(
                (int_encoding_of(ot), int_encoding_of(nt)),
                (Some(a), Some(b)) if a != INT_SIGNED && b != INT_SIGNED
            );
            res.fail_memsz_adjust = !(both_ptr || both_unsigned);
        }
    } else if kind.is_type() {
        let (orig, validate) = calc_type(kind, Some((local, local_spec)))?;
        res.orig_val = orig;
        res.validate = validate;
        res.new_val = calc_type(kind, target)?.0;
    } else {
        match calc_enumval(kind, Some((local, local_spec)))? {
            Some(v) => res.orig_val = v,
            None => {
                res.poison = true;
                return Ok(res);
            }
        }
        match calc_enumval(kind, target)? {
            Some(v) => res.new_val = v,
            None => res.poison = true,
        }
    }
    Ok(res)
}
