//! Type compatibility relations used to match a local spec against a candidate:
//! `bpf_core_fields_are_compat` (field relocations), `bpf_core_types_are_compat`
//! (type relocations) and `bpf_core_types_match` (`TYPE_MATCHES`).

use structops_btf::{Btf, INT_SIGNED, Kind, Type, TypeId, TypeKind};

use super::error::{CoreError, Result};

/// How deep libbpf lets the type comparisons recurse (its `depth` and `level` limits).
pub(crate) const MAX_DEPTH: i32 = 32;

/// Which relocation a comparison serves, to name it in errors.
#[derive(Clone, Copy)]
pub(crate) struct Ctx {
    pub(crate) local_root: TypeId,
    pub(crate) target_root: TypeId,
}

impl Ctx {
    fn too_deep(self) -> CoreError {
        CoreError::TooDeep {
            type_id: self.local_root,
            target_id: self.target_root,
        }
    }
}

fn is_any_enum(t: &Type) -> bool {
    matches!(t.kind(), Kind::Enum | Kind::Enum64)
}

/// Same kind, or both enums of either width (`btf_kind_core_compat`).
pub(crate) fn kind_core_compat(a: &Type, b: &Type) -> bool {
    a.kind() == b.kind() || (is_any_enum(a) && is_any_enum(b))
}

/// The bit offset of an `INT`'s value in its storage (non-zero only for the legacy
/// bitfield-like integers libbpf refuses to relocate).
fn int_offset(t: &Type) -> u8 {
    match t.kind {
        TypeKind::Int { offset, .. } => offset,
        _ => 0,
    }
}

fn int_encoding(t: &Type) -> u8 {
    match t.kind {
        TypeKind::Int { encoding, .. } => encoding,
        _ => 0,
    }
}

/// A type's `size` word for the kinds that have one.
fn sized(t: &Type) -> Option<u32> {
    match &t.kind {
        TypeKind::Int { size, .. } | TypeKind::Float { size } => Some(*size),
        TypeKind::Struct(c) | TypeKind::Union(c) => Some(c.size),
        TypeKind::Enum(e) | TypeKind::Enum64(e) => Some(e.size),
        _ => None,
    }
}

fn resolved(btf: &Btf, id: TypeId) -> Result<(TypeId, &Type)> {
    btf.resolved_ty(id).map_err(CoreError::btf(id))
}

fn name_of(btf: &Btf, name_off: u32, id: TypeId) -> Result<&str> {
    btf.name(name_off).map_err(CoreError::btf(id))
}

/// Field types compatible for a field relocation (`bpf_core_fields_are_compat`): any two
/// structs/unions; pointers; floats; ints without a legacy bit offset; enums and
/// forward declarations whose essential names agree (or one is anonymous); arrays of
/// compatible elements.
pub(crate) fn fields_are_compat(
    ctx: Ctx,
    local: &Btf,
    mut local_id: TypeId,
    targ: &Btf,
    mut targ_id: TypeId,
) -> Result<bool> {
    for _ in 0..MAX_DEPTH {
        let (lid, lt) = resolved(local, local_id)?;
        let (tid, tt) = resolved(targ, targ_id)?;
        if lt.is_composite() && tt.is_composite() {
            return Ok(true);
        }
        if !kind_core_compat(lt, tt) {
            return Ok(false);
        }
        match &lt.kind {
            TypeKind::Ptr { .. } | TypeKind::Float { .. } => return Ok(true),
            TypeKind::Fwd { .. } | TypeKind::Enum(_) | TypeKind::Enum64(_) => {
                let ln = Btf::essential_name(name_of(local, lt.name_off, lid)?);
                let tn = Btf::essential_name(name_of(targ, tt.name_off, tid)?);
                return Ok(ln.is_empty() || tn.is_empty() || ln == tn);
            }
            TypeKind::Int { .. } => return Ok(int_offset(lt) == 0 && int_offset(tt) == 0),
            TypeKind::Array { elem, .. } => {
                let TypeKind::Array { elem: telem, .. } = tt.kind else {
                    return Ok(false);
                };
                local_id = *elem;
                targ_id = telem;
            }
            _ => return Ok(false),
        }
    }
    Err(ctx.too_deep())
}

/// Types compatible for a type relocation (`__bpf_core_types_are_compat`). The roots'
/// names were already matched by candidate search; below them names are ignored. Same
/// kind throughout (enum and enum64 mix), ints without a legacy bit offset, pointers and
/// arrays by their targets, function prototypes by arity and recursively by parameter
/// and return types.
pub(crate) fn types_are_compat(
    ctx: Ctx,
    local: &Btf,
    mut local_id: TypeId,
    targ: &Btf,
    mut targ_id: TypeId,
    level: i32,
) -> Result<bool> {
    let lt = local.ty(local_id).map_err(CoreError::btf(local_id))?;
    let tt = targ.ty(targ_id).map_err(CoreError::btf(targ_id))?;
    if !kind_core_compat(lt, tt) {
        return Ok(false);
    }
    for _ in 0..MAX_DEPTH {
        let (_, lt) = resolved(local, local_id)?;
        let (_, tt) = resolved(targ, targ_id)?;
        if !kind_core_compat(lt, tt) {
            return Ok(false);
        }
        match (&lt.kind, &tt.kind) {
            (
                TypeKind::Void
                | TypeKind::Struct(_)
                | TypeKind::Union(_)
                | TypeKind::Enum(_)
                | TypeKind::Enum64(_)
                | TypeKind::Fwd { .. },
                _,
            ) => return Ok(true),
            (TypeKind::Int { .. }, _) => {
                return Ok(int_offset(lt) == 0 && int_offset(tt) == 0);
            }
            (TypeKind::Ptr { target: l }, TypeKind::Ptr { target: t }) => {
                local_id = *l;
                targ_id = *t;
            }
            (TypeKind::Array { elem: l, .. }, TypeKind::Array { elem: t, .. }) => {
                local_id = *l;
                targ_id = *t;
            }
            (
                TypeKind::FuncProto {
                    ret: lret,
                    params: lp,
                },
                TypeKind::FuncProto {
                    ret: tret,
                    params: tp,
                },
            ) => {
                if lp.len() != tp.len() {
                    return Ok(false);
                }
                for (l, t) in lp.iter().zip(tp) {
                    if level <= 0 {
                        return Err(ctx.too_deep());
                    }
                    let (l, _) = resolved(local, l.ty)?;
                    let (t, _) = resolved(targ, t.ty)?;
                    if !types_are_compat(ctx, local, l, targ, t, level - 1)? {
                        return Ok(false);
                    }
                }
                local_id = resolved(local, *lret)?.0;
                targ_id = resolved(targ, *tret)?.0;
            }
            _ => return Ok(false),
        }
    }
    Err(ctx.too_deep())
}

/// Names equal modulo flavor suffix; an anonymous target matches only an anonymous local
/// (`bpf_core_names_match`).
fn names_match(
    local: &Btf,
    local_off: u32,
    lid: TypeId,
    targ: &Btf,
    targ_off: u32,
    tid: TypeId,
) -> Result<bool> {
    let ln = name_of(local, local_off, lid)?;
    let tn = name_of(targ, targ_off, tid)?;
    if tn.is_empty() {
        return Ok(ln.is_empty());
    }
    Ok(Btf::essential_name(ln) == Btf::essential_name(tn))
}

/// Same size, and every local enumerator has a target enumerator of the same essential
/// name (`bpf_core_enums_match`); values are not compared.
fn enums_match(
    local: &Btf,
    lid: TypeId,
    lt: &Type,
    targ: &Btf,
    tid: TypeId,
    tt: &Type,
) -> Result<bool> {
    let (Some(lb), Some(tb)) = (lt.enum_body(), tt.enum_body()) else {
        return Ok(false);
    };
    if lb.size != tb.size || lb.values.len() > tb.values.len() {
        return Ok(false);
    }
    for l in &lb.values {
        let mut matched = false;
        for t in &tb.values {
            if names_match(local, l.name_off, lid, targ, t.name_off, tid)? {
                matched = true;
                break;
            }
        }
        if !matched {
            return Ok(false);
        }
    }
    Ok(true)
}

/// Every local member has a target member of the same name whose type matches
/// (`bpf_core_composites_match`).
#[expect(clippy::too_many_arguments, reason = "mirrors libbpf's signature")]
fn composites_match(
    ctx: Ctx,
    local: &Btf,
    lid: TypeId,
    lt: &Type,
    targ: &Btf,
    tid: TypeId,
    tt: &Type,
    behind_ptr: bool,
    level: i32,
) -> Result<bool> {
    let (Some(lc), Some(tc)) = (lt.composite(), tt.composite()) else {
        return Ok(false);
    };
    if lc.members.len() > tc.members.len() {
        return Ok(false);
    }
    for lm in &lc.members {
        let mut matched = false;
        for tm in &tc.members {
            if !names_match(local, lm.name_off, lid, targ, tm.name_off, tid)? {
                continue;
            }
            if types_match(ctx, local, lm.ty, targ, tm.ty, behind_ptr, level - 1)? {
                matched = true;
                break;
            }
        }
        if !matched {
            return Ok(false);
        }
    }
    Ok(true)
}

/// The `TYPE_MATCHES` relation (`__bpf_core_types_match`): names agree modulo flavor at
/// every level (after skipping modifiers and typedefs); kinds agree (a struct/union
/// behind a pointer also matches a forward declaration of the same flavor, and enum
/// matches enum64); ints by size and signedness; enums by size and enumerator names;
/// composites member by member; arrays by length and element; function prototypes by
/// arity, parameters and return type.
pub(crate) fn types_match(
    ctx: Ctx,
    local: &Btf,
    mut local_id: TypeId,
    targ: &Btf,
    mut targ_id: TypeId,
    mut behind_ptr: bool,
    level: i32,
) -> Result<bool> {
    if level <= 0 {
        return Err(ctx.too_deep());
    }
    for _ in 0..MAX_DEPTH {
        let (lid, lt) = resolved(local, local_id)?;
        let (tid, tt) = resolved(targ, targ_id)?;
        if !names_match(local, lt.name_off, lid, targ, tt.name_off, tid)? {
            return Ok(false);
        }
        let (lk, tk) = (lt.kind(), tt.kind());
        match &lt.kind {
            TypeKind::Void => return Ok(lk == tk),
            TypeKind::Fwd { union: lf } => {
                let lf = *lf;
                if behind_ptr {
                    if lk == tk {
                        return Ok(lf == tt.kflag());
                    }
                    return Ok((tk == Kind::Struct && !lf) || (tk == Kind::Union && lf));
                }
                return Ok(lk == tk && lf == tt.kflag());
            }
            TypeKind::Enum(_) | TypeKind::Enum64(_) => {
                if !is_any_enum(tt) {
                    return Ok(false);
                }
                return enums_match(local, lid, lt, targ, tid, tt);
            }
            TypeKind::Struct(_) | TypeKind::Union(_) => {
                if behind_ptr {
                    if lk == tk {
                        return Ok(true);
                    }
                    if tk != Kind::Fwd {
                        return Ok(false);
                    }
                    return Ok((lk == Kind::Union) == tt.kflag());
                }
                if lk != tk {
                    return Ok(false);
                }
                return composites_match(ctx, local, lid, lt, targ, tid, tt, behind_ptr, level);
            }
            TypeKind::Int { .. } => {
                if lk != tk {
                    return Ok(false);
                }
                let ls = int_encoding(lt) & INT_SIGNED;
                let ts = int_encoding(tt) & INT_SIGNED;
                return Ok(sized(lt) == sized(tt) && ls == ts);
            }
            TypeKind::Ptr { target } => {
                let TypeKind::Ptr { target: t } = tt.kind else {
                    return Ok(false);
                };
                behind_ptr = true;
                local_id = *target;
                targ_id = t;
            }
            TypeKind::Array { elem, len, .. } => {
                let TypeKind::Array {
                    elem: telem,
                    len: tlen,
                    ..
                } = tt.kind
                else {
                    return Ok(false);
                };
                if *len != tlen {
                    return Ok(false);
                }
                local_id = *elem;
                targ_id = telem;
            }
            TypeKind::FuncProto { ret, params } => {
                let TypeKind::FuncProto {
                    ret: tret,
                    params: tparams,
                } = &tt.kind
                else {
                    return Ok(false);
                };
                if params.len() != tparams.len() {
                    return Ok(false);
                }
                for (l, t) in params.iter().zip(tparams) {
                    if !types_match(ctx, local, l.ty, targ, t.ty, behind_ptr, level - 1)? {
                        return Ok(false);
                    }
                }
                local_id = *ret;
                targ_id = *tret;
            }
            _ => return Ok(false),
        }
    }
    Err(ctx.too_deep())
}

/// The field's integer encoding, for the load-size adjustment rule.
pub(crate) fn int_encoding_of(t: &Type) -> Option<u8> {
    match t.kind {
        TypeKind::Int { encoding, .. } => Some(encoding),
        _ => None,
    }
}

/// The `size` word of an int or enum (the storage unit of a bitfield).
pub(crate) fn storage_size(t: &Type) -> Option<u32> {
    match &t.kind {
        TypeKind::Int { size, .. } => Some(*size),
        TypeKind::Enum(e) | TypeKind::Enum64(e) => Some(e.size),
        _ => None,
    }
}
