//! Matching a local spec against one target candidate (`bpf_core_spec_match` and
//! `bpf_core_match_member`), producing the candidate's own spec.

use structops_btf::ext::CoreReloKind;
use structops_btf::{Btf, TypeId, TypeKind};

use super::compat::{Ctx, MAX_DEPTH, fields_are_compat, types_are_compat, types_match};
use super::error::{CoreError, Result};
use super::spec::{
    Accessor, SPEC_MAX_LEN, Spec, add_elem_bits, enumerator_name_off, is_flex_array,
};

/// Finds, in target struct/union `targ_id` (descending into anonymous members), the
/// member named like the local accessor's member, and checks field compatibility. On a
/// match the member's accessor is pushed on `spec` and its type id returned.
///
/// Like libbpf, every member tried is pushed on `spec.raw` (and its offset added) and
/// popped again when it is not the one; a name match with an incompatible type ends the
/// search as "no match" without popping.
fn match_member(
    ctx: Ctx,
    local: &Btf,
    local_acc: &Accessor,
    targ: &Btf,
    targ_id: TypeId,
    spec: &mut Spec,
) -> Result<Option<TypeId>> {
    let (targ_id, tt) = targ.resolved_ty(targ_id).map_err(CoreError::btf(targ_id))?;
    let Some(tc) = tt.composite() else {
        return Ok(None);
    };
    let lt = local
        .ty(local_acc.type_id)
        .map_err(CoreError::btf(local_acc.type_id))?;
    let Some(local_member) = lt
        .composite()
        .and_then(|c| c.members.get(local_acc.idx as usize))
    else {
        return Ok(None);
    };
    let local_name = local_acc.name.as_deref().unwrap_or("");

    for (i, m) in tc.members.iter().enumerate() {
        let bit = m.bit_offset(tc.kflag);
        if spec.raw.len() == SPEC_MAX_LEN {
            return Err(CoreError::SpecTooLong {
                type_id: ctx.local_root,
                max: SPEC_MAX_LEN,
            });
        }
        spec.bit_offset = spec
            .bit_offset
            .checked_add(bit)
            .ok_or(CoreError::OffsetOverflow {
                type_id: ctx.local_root,
            })?;
        spec.raw.push(i as u32);

        let targ_name = targ.name(m.name_off).map_err(CoreError::btf(targ_id))?;
        if targ_name.is_empty() {
            if let Some(next) = match_member(ctx, local, local_acc, targ, m.ty, spec)? {
                return Ok(Some(next));
            }
        } else if targ_name == local_name {
            if !fields_are_compat(ctx, local, local_member.ty, targ, m.ty)? {
                return Ok(None);
            }
            spec.accessors.push(Accessor {
                type_id: targ_id,
                idx: i as u32,
                name: Some(targ_name.into()),
            });
            return Ok(Some(m.ty));
        }
        spec.bit_offset = spec.bit_offset.wrapping_sub(bit);
        spec.raw.pop();
    }
    Ok(None)
}

/// Tries to match `local_spec` (built against `local`) to candidate `targ_id` of `targ`.
/// Returns the candidate's spec when it matches, `None` when it does not.
pub(crate) fn spec_match(
    local: &Btf,
    local_spec: &Spec,
    targ: &Btf,
    targ_id: TypeId,
) -> Result<Option<Spec>> {
    let ctx = Ctx {
        local_root: local_spec.root_type_id,
        target_root: targ_id,
    };
    let mut spec = Spec::empty(targ_id, local_spec.relo_kind);
    let kind = local_spec.relo_kind;

    if kind.is_type() {
        let root = local_spec.root_type_id;
        let ok = if kind == CoreReloKind::TypeMatches {
            types_match(ctx, local, root, targ, targ_id, false, MAX_DEPTH)?
        } else {
            types_are_compat(ctx, local, root, targ, targ_id, MAX_DEPTH)?
        };
        return Ok(ok.then_some(spec));
    }

    let Some(first) = local_spec.accessors.first() else {
        return Ok(None);
    };

    if kind.is_enumval() {
        let (tid, tt) = targ.resolved_ty(targ_id).map_err(CoreError::btf(targ_id))?;
        let Some(body) = tt.enum_body() else {
            return Ok(None);
        };
        let local_ess = Btf::essential_name(first.name.as_deref().unwrap_or(""));
        for i in 0..body.values.len() {
            let off = enumerator_name_off(tt, i).unwrap_or(0);
            let name = targ.name(off).map_err(CoreError::btf(tid))?;
            if Btf::essential_name(name) == local_ess {
                spec.accessors.push(Accessor {
                    type_id: tid,
                    idx: i as u32,
                    name: Some(name.into()),
                });
                spec.raw.push(i as u32);
                return Ok(Some(spec));
            }
        }
        return Ok(None);
    }

    let mut targ_id = targ_id;
    for (i, local_acc) in local_spec.accessors.iter().enumerate() {
        let (tid, tt) = targ.resolved_ty(targ_id).map_err(CoreError::btf(targ_id))?;
        targ_id = tid;
        if local_acc.name.is_some() {
            match match_member(ctx, local, local_acc, targ, targ_id, &mut spec)? {
                Some(next) => targ_id = next,
                None => return Ok(None),
            }
            continue;
        }
        // The root accessor indexes the root type itself (`&p[n]`); later unnamed
        // accessors index an array.
        if i > 0 {
            let TypeKind::Array { elem, len, .. } = tt.kind else {
                return Ok(None);
            };
            let flex = is_flex_array(targ, spec.accessors.last(), len);
            if !flex && local_acc.idx >= len {
                return Ok(None);
            }
            targ_id = targ.resolve(elem).map_err(CoreError::btf(elem))?;
        }
        if spec.raw.len() == SPEC_MAX_LEN {
            return Err(CoreError::SpecTooLong {
                type_id: ctx.local_root,
                max: SPEC_MAX_LEN,
            });
        }
        spec.accessors.push(Accessor {
            type_id: targ_id,
            idx: local_acc.idx,
            name: None,
        });
        spec.raw.push(local_acc.idx);
        let size = targ.size_of(targ_id).map_err(CoreError::btf(targ_id))?;
        spec.bit_offset = add_elem_bits(spec.bit_offset, local_acc.idx, size, ctx.local_root)?;
    }
    Ok(Some(spec))
}
