//! Access specs: the parsed form of a relocation's access string against one BTF
//! (libbpf's `bpf_core_spec`, built by `bpf_core_parse_spec`, printed by
//! `bpf_core_format_spec`).

use std::fmt;

use structops_btf::ext::CoreReloKind;
use structops_btf::{Btf, Kind, Type, TypeId, TypeKind};

use super::error::{CoreError, Result};

/// Most accessors a spec may hold, high-level or raw (libbpf's `BPF_CORE_SPEC_MAX_LEN`).
pub const SPEC_MAX_LEN: usize = 64;

/// One high-level step of a spec: a named struct/union member, an array element, or
/// (for enumerator relocations) an enumerator.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Accessor {
    /// For a member: the struct/union holding it (modifiers and typedefs skipped). For an
    /// array element: the element type. For an enumerator: the enum.
    pub type_id: TypeId,
    /// Member, element or enumerator index.
    pub idx: u32,
    /// Member or enumerator name; `None` for array element accesses.
    pub name: Option<Box<str>>,
}

/// A relocation's access path resolved against one BTF (the local program's or a target
/// candidate's).
///
/// Field relocations carry one accessor per named member or array index (anonymous
/// members are walked through but only appear in `raw`); enumerator relocations carry
/// exactly one accessor; type relocations carry none.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Spec {
    /// The root type, as named by the relocation or the candidate (not resolved).
    pub root_type_id: TypeId,
    /// The relocation kind this spec was built for.
    pub relo_kind: CoreReloKind,
    /// High-level accessors: named members and array indices only.
    pub accessors: Vec<Accessor>,
    /// Low-level accessors, one per access string element, anonymous members included.
    pub raw: Vec<u32>,
    /// Bit offset of the accessed field from the start of the root object.
    pub bit_offset: u32,
}

impl Spec {
    pub(crate) fn empty(root_type_id: TypeId, relo_kind: CoreReloKind) -> Spec {
        Spec {
            root_type_id,
            relo_kind,
            accessors: Vec::new(),
            raw: Vec::new(),
            bit_offset: 0,
        }
    }

    /// A printable form of this spec in libbpf's debug-log format, e.g.
    /// `<byte_off> [7] struct task_struct___my.comm[3] (0:2:3 @ offset 1755)`.
    /// `btf` must be the BTF the spec was built against.
    pub fn display<'a>(&'a self, btf: &'a Btf) -> impl fmt::Display + 'a {
        SpecDisplay { spec: self, btf }
    }
}

struct SpecDisplay<'a> {
    spec: &'a Spec,
    btf: &'a Btf,
}

/// libbpf's lower-case kind names (`btf_kind_str`).
pub(crate) fn kind_name(kind: Kind) -> &'static str {
    match kind {
        Kind::Void => "void",
        Kind::Int => "int",
        Kind::Ptr => "ptr",
        Kind::Array => "array",
        Kind::Struct => "struct",
        Kind::Union => "union",
        Kind::Enum => "enum",
        Kind::Fwd => "fwd",
        Kind::Typedef => "typedef",
        Kind::Volatile => "volatile",
        Kind::Const => "const",
        Kind::Restrict => "restrict",
        Kind::Func => "func",
        Kind::FuncProto => "func_proto",
        Kind::Var => "var",
        Kind::Datasec => "datasec",
        Kind::Float => "float",
        Kind::DeclTag => "decl_tag",
        Kind::TypeTag => "type_tag",
        Kind::Enum64 => "enum64",
    }
}

impl fmt::Display for SpecDisplay<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let spec = self.spec;
        let btf = self.btf;
        let root = spec.root_type_id;
        let (kind, name) = match btf.ty(root) {
            Ok(t) => (kind_name(t.kind()), btf.name(t.name_off).unwrap_or("")),
            Err(_) => ("unknown", ""),
        };
        let name = if name.is_empty() { "<anon>" } else { name };
        write!(f, "<{}> [{root}] {kind} {name}", spec.relo_kind.as_str())?;
        if spec.relo_kind.is_type() {
            return Ok(());
        }
        if spec.relo_kind.is_enumval() {
            let body = btf
                .resolved_ty(root)
                .ok()
                .map(|(_, t)| t)
                .and_then(|t| t.enum_body().map(|b| (t.kind(), b)));
            let idx = spec.raw.first().copied().unwrap_or(0) as usize;
            if let Some((k, body)) = body
                && let Some(e) = body.values.get(idx)
            {
                let ename = btf.name(e.name_off).unwrap_or("");
                match (k, body.signed) {
                    (Kind::Enum, true) => write!(f, "::{ename} = {}", e.value as u32 as i32)?,
                    (Kind::Enum, false) => write!(f, "::{ename} = {}", e.value as u32)?,
                    (_, true) => write!(f, "::{ename} = {}", e.value as i64)?,
                    (_, false) => write!(f, "::{ename} = {}", e.value)?,
                }
            }
            return Ok(());
        }
        for (i, acc) in spec.accessors.iter().enumerate() {
            match &acc.name {
                Some(n) => write!(f, ".{n}")?,
                None if i > 0 || acc.idx > 0 => write!(f, "[{}]", acc.idx)?,
                None => {}
            }
        }
        f.write_str(" (")?;
        for (i, r) in spec.raw.iter().enumerate() {
            if i > 0 {
                f.write_str(":")?;
            }
            write!(f, "{r}")?;
        }
        if !spec.bit_offset.is_multiple_of(8) {
            write!(
                f,
                " @ offset {}.{})",
                spec.bit_offset / 8,
                spec.bit_offset % 8
            )
        } else {
            write!(f, " @ offset {})", spec.bit_offset / 8)
        }
    }
}

/// Why an access string failed to parse, before it is tied to a type.
enum AccessError {
    Invalid(&'static str),
    TooLong,
}

/// Parses one `%d` the way `sscanf` does: leading white space, an optional sign, then
/// decimal digits. Returns the value and the bytes consumed.
fn scan_int(s: &[u8]) -> Option<(i64, usize)> {
    let mut i = 0;
    while s
        .get(i)
        .is_some_and(|&c| matches!(c, b' ' | b'\t' | b'\n' | 0x0b | 0x0c | b'\r'))
    {
        i += 1;
    }
    let mut neg = false;
    if let Some(&c) = s.get(i)
        && (c == b'+' || c == b'-')
    {
        neg = c == b'-';
        i += 1;
    }
    let start = i;
    let mut v: i64 = 0;
    while let Some(&c) = s.get(i) {
        if !c.is_ascii_digit() {
            break;
        }
        // Saturate: anything past i32 is rejected by the caller anyway.
        v = v.saturating_mul(10).saturating_add(i64::from(c - b'0'));
        i += 1;
    }
    if i == start {
        return None;
    }
    Some((if neg { -v } else { v }, i))
}

/// Splits `"0:1:2"` into raw indices (the loop at the top of `bpf_core_parse_spec`).
fn parse_access(access: &str) -> std::result::Result<Vec<u32>, AccessError> {
    let mut s = access.as_bytes();
    let mut raw = Vec::new();
    while let Some(&c) = s.first() {
        if c == b':' {
            s = s.get(1..).unwrap_or_default();
        }
        let (v, used) = scan_int(s).ok_or(AccessError::Invalid("expected an index"))?;
        if v < 0 {
            return Err(AccessError::Invalid("negative index"));
        }
        let v = i32::try_from(v).map_err(|_| AccessError::Invalid("index out of range"))?;
        if raw.len() == SPEC_MAX_LEN {
            return Err(AccessError::TooLong);
        }
        raw.push(v as u32);
        s = s.get(used..).unwrap_or_default();
    }
    Ok(raw)
}

/// `idx * size * 8` added to `bit_offset`, as libbpf's spec arithmetic, but checked.
pub(crate) fn add_elem_bits(bit_offset: u32, idx: u32, size: u32, type_id: TypeId) -> Result<u32> {
    u64::from(idx)
        .checked_mul(u64::from(size))
        .and_then(|b| b.checked_mul(8))
        .and_then(|b| b.checked_add(u64::from(bit_offset)))
        .and_then(|b| u32::try_from(b).ok())
        .ok_or(CoreError::OffsetOverflow { type_id })
}

/// Is the array reached through accessor `prev` a flexible array member: the last member
/// of its struct, with zero elements (libbpf's `is_flex_arr`)?
pub(crate) fn is_flex_array(btf: &Btf, prev: Option<&Accessor>, nelems: u32) -> bool {
    let Some(prev) = prev else { return false };
    if prev.name.is_none() || nelems > 0 {
        return false;
    }
    btf.ty(prev.type_id)
        .is_ok_and(|t| (t.vlen() as i64) - 1 == i64::from(prev.idx))
}

/// The enumerator name offsets of an `ENUM`/`ENUM64`.
pub(crate) fn enumerator_name_off(t: &Type, idx: usize) -> Option<u32> {
    t.enum_body()
        .and_then(|b| b.values.get(idx))
        .map(|e| e.name_off)
}

/// Parses `access` for a relocation of `kind` rooted at local type `type_id` into a
/// [`Spec`], validating it against `btf` and computing the field's bit offset. Mirrors
/// `bpf_core_parse_spec`.
///
/// Type relocations need the access string `"0"` and give an empty spec; enumerator
/// relocations need a single index into an enum; field relocations walk members (also
/// through anonymous ones) and array elements, where only a flexible array member may
/// be indexed past its length.
pub fn parse_spec(btf: &Btf, type_id: TypeId, kind: CoreReloKind, access: &str) -> Result<Spec> {
    let invalid = |reason: &'static str| CoreError::InvalidAccessString {
        type_id,
        access: access.to_string(),
        reason,
    };
    if access.is_empty() || access.starts_with(':') {
        return Err(invalid("empty or starts with ':'"));
    }
    let mut spec = Spec::empty(type_id, kind);
    if kind.is_type() {
        if access != "0" {
            return Err(invalid("type relocations need access string \"0\""));
        }
        return Ok(spec);
    }
    spec.raw = match parse_access(access) {
        Ok(raw) => raw,
        Err(AccessError::Invalid(reason)) => return Err(invalid(reason)),
        // libbpf fails every parse error with -EINVAL, this one too.
        Err(AccessError::TooLong) => return Err(invalid("more than 64 indices")),
    };
    let Some(&first) = spec.raw.first() else {
        return Err(invalid("no index"));
    };
    let (mut id, t) = btf.resolved_ty(type_id).map_err(CoreError::btf(type_id))?;

    if kind.is_enumval() {
        let vlen = t.enum_body().map_or(0, |b| b.values.len());
        if t.enum_body().is_none() {
            return Err(invalid("enumerator relocation on a non-enum type"));
        }
        if spec.raw.len() > 1 || first as usize >= vlen {
            return Err(invalid("enumerator index out of range"));
        }
        let name_off = enumerator_name_off(t, first as usize).unwrap_or(0);
        let name = btf.name(name_off).map_err(CoreError::btf(id))?;
        spec.accessors.push(Accessor {
            type_id: id,
            idx: first,
            name: Some(name.into()),
        });
        return Ok(spec);
    }

    spec.accessors.push(Accessor {
        type_id: id,
        idx: first,
        name: None,
    });
    let size = btf.size_of(id).map_err(CoreError::btf(id))?;
    spec.bit_offset = add_elem_bits(0, first, size, type_id)?;

    for i in 1..spec.raw.len() {
        let idx = spec.raw.get(i).copied().unwrap_or(0);
        let (rid, t) = btf.resolved_ty(id).map_err(CoreError::btf(id))?;
        id = rid;
        match &t.kind {
            TypeKind::Struct(c) | TypeKind::Union(c) => {
                let m = c
                    .members
                    .get(idx as usize)
                    .ok_or_else(|| invalid("member index out of range"))?;
                spec.bit_offset = spec
                    .bit_offset
                    .checked_add(m.bit_offset(c.kflag))
                    .ok_or(CoreError::OffsetOverflow { type_id })?;
                if m.name_off != 0 {
                    let name = btf.name(m.name_off).map_err(CoreError::btf(id))?;
                    if name.is_empty() {
                        return Err(invalid("member with an empty name"));
                    }
                    spec.accessors.push(Accessor {
                        type_id: id,
                        idx,
                        name: Some(name.into()),
                    });
                }
                id = m.ty;
            }
            TypeKind::Array { elem, len, .. } => {
                let elem_id = btf.resolve(*elem).map_err(CoreError::btf(*elem))?;
                let flex = is_flex_array(btf, spec.accessors.last(), *len);
                if !flex && idx >= *len {
                    return Err(invalid("array index out of bounds"));
                }
                spec.accessors.push(Accessor {
                    type_id: elem_id,
                    idx,
                    name: None,
                });
                let size = btf.size_of(elem_id).map_err(CoreError::btf(elem_id))?;
                spec.bit_offset = add_elem_bits(spec.bit_offset, idx, size, type_id)?;
                id = elem_id;
            }
            _ => {
                return Err(CoreError::UnexpectedKind {
                    type_id,
                    access: access.to_string(),
                    index: i,
                    captured: id,
                    kind: t.kind(),
                });
            }
        }
    }
    Ok(spec)
}
