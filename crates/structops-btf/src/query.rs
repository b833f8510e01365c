//! Queries over a [`Btf`]: modifier and typedef resolution, sizes and alignment, member
//! lookup, function prototypes.

use crate::Btf;
use crate::error::{BtfError, Result};
use crate::types::*;

/// How far reference chains (modifiers, typedefs, arrays, nested anonymous members) are
/// followed before giving up; the kernel's `MAX_RESOLVE_DEPTH` is 32.
pub const MAX_RESOLVE_DEPTH: usize = 32;

/// Size of a pointer on the BPF target.
pub const PTR_SIZE: u32 = 8;

impl Btf {
    /// Follows `const`/`volatile`/`restrict`/type tags from `id` (not typedefs), like the
    /// kernel's `btf_type_skip_modifiers` without typedef skipping.
    pub fn skip_modifiers(&self, mut id: TypeId) -> Result<TypeId> {
        for _ in 0..=MAX_RESOLVE_DEPTH {
            let t = self.ty(id)?;
            if !t.is_modifier() {
                return Ok(id);
            }
            id = t.target().unwrap_or(0);
        }
        Err(BtfError::ChainTooDeep { id })
    }

    /// Follows modifiers and typedefs from `id` to the underlying type (the kernel's
    /// `btf_type_skip_modifiers`, libbpf's `skip_mods_and_typedefs`).
    pub fn resolve(&self, start: TypeId) -> Result<TypeId> {
        let mut id = start;
        for _ in 0..=MAX_RESOLVE_DEPTH {
            let t = self.ty(id)?;
            if !(t.is_modifier() || t.kind() == Kind::Typedef) {
                return Ok(id);
            }
            id = t.target().unwrap_or(0);
        }
        Err(BtfError::ChainTooDeep { id: start })
    }

    /// The resolved type (see [`Btf::resolve`]).
    pub fn resolved_ty(&self, id: TypeId) -> Result<(TypeId, &Type)> {
        let id = self.resolve(id)?;
        Ok((id, self.ty(id)?))
    }

    /// Byte size of a type, like libbpf's `btf__resolve_size`: arrays multiply, pointers are
    /// 8 bytes, modifiers/typedefs/vars resolve, and `void`, functions and forward
    /// declarations have no size.
    pub fn size_of(&self, start: TypeId) -> Result<u32> {
        let mut id = start;
        let mut mult: u64 = 1;
        for _ in 0..=MAX_RESOLVE_DEPTH {
            let t = self.ty(id)?;
            let size = match &t.kind {
                TypeKind::Int { size, .. } | TypeKind::Float { size } => *size,
                TypeKind::Struct(c) | TypeKind::Union(c) => c.size,
                TypeKind::Enum(e) | TypeKind::Enum64(e) => e.size,
                TypeKind::Datasec { size, .. } => *size,
                TypeKind::Ptr { .. } => PTR_SIZE,
                TypeKind::Array { elem, len, .. } => {
                    mult = mult.checked_mul(*len as u64).ok_or(BtfError::BadSize {
                        id: start,
                        reason: "array size overflows",
                    })?;
                    id = *elem;
                    continue;
                }
                TypeKind::Typedef { target }
                | TypeKind::Const { target }
                | TypeKind::Volatile { target }
                | TypeKind::Restrict { target }
                | TypeKind::TypeTag { target, .. }
                | TypeKind::Var { ty: target, .. }
                | TypeKind::DeclTag { target, .. } => {
                    id = *target;
                    continue;
                }
                TypeKind::Void
                | TypeKind::Fwd { .. }
                | TypeKind::Func { .. }
                | TypeKind::FuncProto { .. } => {
                    return Err(BtfError::BadSize {
                        id: start,
                        reason: "type has no size",
                    });
                }
            };
            let total = (size as u64).checked_mul(mult).ok_or(BtfError::BadSize {
                id: start,
                reason: "size overflows",
            })?;
            return u32::try_from(total).map_err(|_| BtfError::BadSize {
                id: start,
                reason: "size exceeds u32",
            });
        }
        Err(BtfError::ChainTooDeep { id: start })
    }

    /// Natural alignment of a type in bytes, like libbpf's `btf__align_of`: the size of
    /// scalars (capped at 8), the largest member alignment of composites (1 for packed
    /// composites whose members sit at unaligned offsets).
    pub fn align_of(&self, start: TypeId) -> Result<u32> {
        self.align_of_depth(start, 0)
    }

    fn align_of_depth(&self, start: TypeId, depth: usize) -> Result<u32> {
        if depth > MAX_RESOLVE_DEPTH {
            return Err(BtfError::ChainTooDeep { id: start });
        }
        let (id, t) = self.resolved_ty(start)?;
        Ok(match &t.kind {
            TypeKind::Int { size, .. } | TypeKind::Float { size } => (*size).clamp(1, 8),
            TypeKind::Enum(e) | TypeKind::Enum64(e) => e.size.clamp(1, 8),
            TypeKind::Ptr { .. } => PTR_SIZE,
            TypeKind::Array { elem, .. } => self.align_of_depth(*elem, depth + 1)?,
            TypeKind::Struct(c) | TypeKind::Union(c) => {
                let mut max = 1;
                for m in &c.members {
                    let a = self.align_of_depth(m.ty, depth + 1)?;
                    let bit = m.bit_offset(c.kflag);
                    // A member at an offset its alignment does not divide means the
                    // composite is packed.
                    if m.bitfield_size(c.kflag) == 0 && bit % (8 * a) != 0 {
                        return Ok(1);
                    }
                    max = max.max(a);
                }
                if c.size % max != 0 {
                    return Ok(1);
                }
                max
            }
            _ => {
                return Err(BtfError::BadSize {
                    id,
                    reason: "type has no alignment",
                });
            }
        })
    }

    /// Finds member `name` of the struct/union `id` (after resolving typedefs and
    /// modifiers), descending into anonymous struct/union members like the kernel's
    /// `btf_find_member` / libbpf's field lookup. Returns the member and its absolute bit
    /// offset from the start of `id`, or `None` if there is no such member.
    pub fn member_by_name(&self, id: TypeId, name: &str) -> Result<Option<(Member, u32)>> {
        self.member_by_name_depth(id, name, 0)
    }

    fn member_by_name_depth(
        &self,
        id: TypeId,
        name: &str,
        depth: usize,
    ) -> Result<Option<(Member, u32)>> {
        if depth > MAX_RESOLVE_DEPTH {
            return Err(BtfError::ChainTooDeep { id });
        }
        let (rid, t) = self.resolved_ty(id)?;
        let c = t.composite().ok_or(BtfError::WrongKind {
            id: rid,
            actual: t.kind(),
            expected: "struct or union",
        })?;
        for m in &c.members {
            let off = m.bit_offset(c.kflag);
            if m.name_off != 0 {
                if self.name(m.name_off)? == name {
                    return Ok(Some((*m, off)));
                }
                continue;
            }
            let (_, mt) = self.resolved_ty(m.ty)?;
            if mt.is_composite()
                && let Some((inner, ioff)) = self.member_by_name_depth(m.ty, name, depth + 1)?
            {
                return Ok(Some((inner, off + ioff)));
            }
        }
        Ok(None)
    }

    /// The parameters and return type of a function prototype. `id` may name a `FUNC`,
    /// a `FUNC_PROTO`, or a pointer/typedef/modifier chain leading to one (as a function
    /// pointer member does).
    pub fn func_proto(&self, id: TypeId) -> Result<(TypeId, &[Param])> {
        let mut cur = id;
        for _ in 0..=MAX_RESOLVE_DEPTH {
            let (rid, t) = self.resolved_ty(cur)?;
            match &t.kind {
                TypeKind::FuncProto { ret, params } => return Ok((*ret, params)),
                TypeKind::Func { proto, .. } | TypeKind::Ptr { target: proto } => cur = *proto,
                _ => {
                    return Err(BtfError::WrongKind {
                        id: rid,
                        actual: t.kind(),
                        expected: "func proto",
                    });
                }
            }
        }
        Err(BtfError::ChainTooDeep { id })
    }

    /// If `id` resolves to a pointer to a function prototype (a function-pointer member),
    /// the prototype's id.
    pub fn func_ptr_proto(&self, id: TypeId) -> Result<Option<TypeId>> {
        let (_, t) = self.resolved_ty(id)?;
        if let TypeKind::Ptr { target } = t.kind {
            let (pid, pt) = self.resolved_ty(target)?;
            if pt.kind() == Kind::FuncProto {
                return Ok(Some(pid));
            }
        }
        Ok(None)
    }

    /// Is `id` (after resolution) an integer, enum or pointer — a scalar that fits a
    /// register?
    pub fn is_scalar(&self, id: TypeId) -> Result<bool> {
        let (_, t) = self.resolved_ty(id)?;
        Ok(matches!(
            t.kind(),
            Kind::Int | Kind::Enum | Kind::Enum64 | Kind::Ptr
        ))
    }

    /// A type's name with its flavor suffix stripped, as libbpf does for CO-RE and
    /// struct_ops matching (`bpf_core_essential_name_len`): the suffix starts at the last
    /// `___` that has a non-underscore character on each side.
    pub fn essential_name(name: &str) -> &str {
        let b = name.as_bytes();
        let n = b.len();
        if n >= 5 {
            for i in (0..=n - 5).rev() {
                if b[i] != b'_' && &b[i + 1..i + 4] == b"___" && b[i + 4] != b'_' {
                    return &name[..i + 1];
                }
            }
        }
        name
    }
}
