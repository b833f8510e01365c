//! The BTF type model: one [`Type`] per type id, mirroring `struct btf_type` and the
//! kind-specific records that follow it in `include/uapi/linux/btf.h`.

use std::fmt;

/// A BTF type id. Id 0 is `void`; real types start at 1.
pub type TypeId = u32;

/// The numeric BTF kinds (`BTF_KIND_*`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[repr(u8)]
pub enum Kind {
    /// `void` (id 0 only; kind 0 is rejected elsewhere).
    Void = 0,
    /// Integer.
    Int = 1,
    /// Pointer.
    Ptr = 2,
    /// Array.
    Array = 3,
    /// Struct.
    Struct = 4,
    /// Union.
    Union = 5,
    /// Enumeration of up to 32-bit values.
    Enum = 6,
    /// Forward declaration.
    Fwd = 7,
    /// Typedef.
    Typedef = 8,
    /// `volatile` modifier.
    Volatile = 9,
    /// `const` modifier.
    Const = 10,
    /// `restrict` modifier.
    Restrict = 11,
    /// Function.
    Func = 12,
    /// Function prototype.
    FuncProto = 13,
    /// Variable.
    Var = 14,
    /// Section of variables.
    Datasec = 15,
    /// Floating point.
    Float = 16,
    /// Declaration tag.
    DeclTag = 17,
    /// Type tag.
    TypeTag = 18,
    /// Enumeration of up to 64-bit values.
    Enum64 = 19,
}

impl Kind {
    /// The kind for a raw `BTF_KIND_*` value, if it is known.
    pub fn from_raw(raw: u32) -> Option<Kind> {
        Some(match raw {
            0 => Kind::Void,
            1 => Kind::Int,
            2 => Kind::Ptr,
            3 => Kind::Array,
            4 => Kind::Struct,
            5 => Kind::Union,
            6 => Kind::Enum,
            7 => Kind::Fwd,
            8 => Kind::Typedef,
            9 => Kind::Volatile,
            10 => Kind::Const,
            11 => Kind::Restrict,
            12 => Kind::Func,
            13 => Kind::FuncProto,
            14 => Kind::Var,
            15 => Kind::Datasec,
            16 => Kind::Float,
            17 => Kind::DeclTag,
            18 => Kind::TypeTag,
            19 => Kind::Enum64,
            _ => return None,
        })
    }

    /// The kind's name as the kernel and bpftool print it (`STRUCT`, `FUNC_PROTO`, ...).
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Void => "UNKNOWN",
            Kind::Int => "INT",
            Kind::Ptr => "PTR",
            Kind::Array => "ARRAY",
            Kind::Struct => "STRUCT",
            Kind::Union => "UNION",
            Kind::Enum => "ENUM",
            Kind::Fwd => "FWD",
            Kind::Typedef => "TYPEDEF",
            Kind::Volatile => "VOLATILE",
            Kind::Const => "CONST",
            Kind::Restrict => "RESTRICT",
            Kind::Func => "FUNC",
            Kind::FuncProto => "FUNC_PROTO",
            Kind::Var => "VAR",
            Kind::Datasec => "DATASEC",
            Kind::Float => "FLOAT",
            Kind::DeclTag => "DECL_TAG",
            Kind::TypeTag => "TYPE_TAG",
            Kind::Enum64 => "ENUM64",
        }
    }
}

impl fmt::Display for Kind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// `BTF_INT_SIGNED`: the integer is signed.
pub const INT_SIGNED: u8 = 1 << 0;
/// `BTF_INT_CHAR`: the integer is a character type.
pub const INT_CHAR: u8 = 1 << 1;
/// `BTF_INT_BOOL`: the integer is a boolean.
pub const INT_BOOL: u8 = 1 << 2;

/// Linkage of a `FUNC` (`enum btf_func_linkage`) or a `VAR` (`enum btf_var_linkage`; there
/// only `Static` = 0 and `Global` = 1, the kernel's "allocated" linkage, exist).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Linkage {
    /// `BTF_FUNC_STATIC` / `BTF_VAR_STATIC`.
    Static,
    /// `BTF_FUNC_GLOBAL` / `BTF_VAR_GLOBAL_ALLOCATED`.
    Global,
    /// `BTF_FUNC_EXTERN` / `BTF_VAR_GLOBAL_EXTERN`.
    Extern,
    /// Any other raw value (rejected by validation, kept so printing stays faithful).
    Other(u32),
}

impl Linkage {
    /// Decodes a raw linkage value.
    pub fn from_raw(raw: u32) -> Linkage {
        match raw {
            0 => Linkage::Static,
            1 => Linkage::Global,
            2 => Linkage::Extern,
            n => Linkage::Other(n),
        }
    }

    /// The raw value.
    pub fn raw(self) -> u32 {
        match self {
            Linkage::Static => 0,
            Linkage::Global => 1,
            Linkage::Extern => 2,
            Linkage::Other(n) => n,
        }
    }
}

/// A struct or union member (`struct btf_member`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Member {
    /// Offset of the name in the string section.
    pub name_off: u32,
    /// The member's type.
    pub ty: TypeId,
    /// The raw `offset` field: a bit offset, or with the composite's kind flag set,
    /// `bitfield_size << 24 | bit_offset`.
    pub offset: u32,
}

impl Member {
    /// The member's offset in bits from the start of the composite.
    pub fn bit_offset(&self, kflag: bool) -> u32 {
        if kflag {
            self.offset & 0x00ff_ffff
        } else {
            self.offset
        }
    }

    /// The bitfield width in bits, or 0 for a plain member (or when the composite has no
    /// kind flag, in which case bitfields are described by the member's `INT` type).
    pub fn bitfield_size(&self, kflag: bool) -> u32 {
        if kflag { self.offset >> 24 } else { 0 }
    }
}

/// A struct or union body.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Composite {
    /// Size in bytes.
    pub size: u32,
    /// The kind flag: member offsets carry bitfield sizes.
    pub kflag: bool,
    /// The members, in declaration order.
    pub members: Vec<Member>,
}

/// One enumerator of an `ENUM` or `ENUM64`. The value is stored widened to 64 bits: for an
/// `ENUM` the raw 32-bit value is zero-extended, so `value as u32` recovers it exactly.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Enumerator {
    /// Offset of the name in the string section.
    pub name_off: u32,
    /// The raw value bits.
    pub value: u64,
}

/// An enum body (`ENUM` or `ENUM64`).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct EnumBody {
    /// Size in bytes (1, 2, 4 or 8).
    pub size: u32,
    /// The kind flag: values are signed.
    pub signed: bool,
    /// The enumerators.
    pub values: Vec<Enumerator>,
}

/// A function prototype parameter (`struct btf_param`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Param {
    /// Offset of the name in the string section (0 for unnamed).
    pub name_off: u32,
    /// The parameter's type; 0 as the last parameter means `...` (varargs).
    pub ty: TypeId,
}

/// A variable in a `DATASEC` (`struct btf_var_secinfo`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct VarSecInfo {
    /// The `VAR` (or `FUNC` for `.ksyms`) type.
    pub ty: TypeId,
    /// Byte offset in the section.
    pub offset: u32,
    /// Byte size.
    pub size: u32,
}

/// The kind-specific part of a type.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum TypeKind {
    /// `void`, only at id 0.
    Void,
    /// `BTF_KIND_INT`.
    Int {
        /// Size in bytes.
        size: u32,
        /// `INT_SIGNED` | `INT_CHAR` | `INT_BOOL`.
        encoding: u8,
        /// Bit offset of the value within its storage.
        offset: u8,
        /// Number of value bits.
        bits: u8,
    },
    /// `BTF_KIND_PTR`.
    Ptr {
        /// Pointee.
        target: TypeId,
    },
    /// `BTF_KIND_ARRAY`.
    Array {
        /// Element type.
        elem: TypeId,
        /// Index type.
        index: TypeId,
        /// Number of elements.
        len: u32,
    },
    /// `BTF_KIND_STRUCT`.
    Struct(Composite),
    /// `BTF_KIND_UNION`.
    Union(Composite),
    /// `BTF_KIND_ENUM`.
    Enum(EnumBody),
    /// `BTF_KIND_ENUM64`.
    Enum64(EnumBody),
    /// `BTF_KIND_FWD`.
    Fwd {
        /// Forward-declares a union (else a struct).
        union: bool,
    },
    /// `BTF_KIND_TYPEDEF`.
    Typedef {
        /// Aliased type.
        target: TypeId,
    },
    /// `BTF_KIND_VOLATILE`.
    Volatile {
        /// Modified type.
        target: TypeId,
    },
    /// `BTF_KIND_CONST`.
    Const {
        /// Modified type.
        target: TypeId,
    },
    /// `BTF_KIND_RESTRICT`.
    Restrict {
        /// Modified type.
        target: TypeId,
    },
    /// `BTF_KIND_FUNC`.
    Func {
        /// The `FUNC_PROTO`.
        proto: TypeId,
        /// Linkage.
        linkage: Linkage,
    },
    /// `BTF_KIND_FUNC_PROTO`.
    FuncProto {
        /// Return type (0 = void).
        ret: TypeId,
        /// Parameters.
        params: Vec<Param>,
    },
    /// `BTF_KIND_VAR`.
    Var {
        /// Variable type.
        ty: TypeId,
        /// Linkage.
        linkage: Linkage,
    },
    /// `BTF_KIND_DATASEC`.
    Datasec {
        /// Section size in bytes (0 in objects before libbpf fixes it up).
        size: u32,
        /// Variables.
        vars: Vec<VarSecInfo>,
    },
    /// `BTF_KIND_FLOAT`.
    Float {
        /// Size in bytes.
        size: u32,
    },
    /// `BTF_KIND_DECL_TAG`.
    DeclTag {
        /// Tagged type.
        target: TypeId,
        /// -1 for the declaration itself, else the member/parameter index.
        component_idx: i32,
        /// The kind flag (set for `__attribute__((...))`-style tags).
        kflag: bool,
    },
    /// `BTF_KIND_TYPE_TAG`.
    TypeTag {
        /// Tagged type.
        target: TypeId,
        /// The kind flag.
        kflag: bool,
    },
}

/// One BTF type: its name and its kind-specific body.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Type {
    /// Offset of the name in the string section (0 = anonymous).
    pub name_off: u32,
    /// The body.
    pub kind: TypeKind,
}

impl Type {
    /// The [`Kind`] of this type.
    pub fn kind(&self) -> Kind {
        match &self.kind {
            TypeKind::Void => Kind::Void,
            TypeKind::Int { .. } => Kind::Int,
            TypeKind::Ptr { .. } => Kind::Ptr,
            TypeKind::Array { .. } => Kind::Array,
            TypeKind::Struct(_) => Kind::Struct,
            TypeKind::Union(_) => Kind::Union,
            TypeKind::Enum(_) => Kind::Enum,
            TypeKind::Enum64(_) => Kind::Enum64,
            TypeKind::Fwd { .. } => Kind::Fwd,
            TypeKind::Typedef { .. } => Kind::Typedef,
            TypeKind::Volatile { .. } => Kind::Volatile,
            TypeKind::Const { .. } => Kind::Const,
            TypeKind::Restrict { .. } => Kind::Restrict,
            TypeKind::Func { .. } => Kind::Func,
            TypeKind::FuncProto { .. } => Kind::FuncProto,
            TypeKind::Var { .. } => Kind::Var,
            TypeKind::Datasec { .. } => Kind::Datasec,
            TypeKind::Float { .. } => Kind::Float,
            TypeKind::DeclTag { .. } => Kind::DeclTag,
            TypeKind::TypeTag { .. } => Kind::TypeTag,
        }
    }

    /// The single type this one refers to, for the kinds that refer to exactly one
    /// (pointer, modifiers, typedef, func, var, tags). `None` for the others.
    pub fn target(&self) -> Option<TypeId> {
        match &self.kind {
            TypeKind::Ptr { target }
            | TypeKind::Typedef { target }
            | TypeKind::Volatile { target }
            | TypeKind::Const { target }
            | TypeKind::Restrict { target }
            | TypeKind::DeclTag { target, .. }
            | TypeKind::TypeTag { target, .. } => Some(*target),
            TypeKind::Func { proto, .. } => Some(*proto),
            TypeKind::Var { ty, .. } => Some(*ty),
            _ => None,
        }
    }

    /// The members of a struct or union, else `None`.
    pub fn composite(&self) -> Option<&Composite> {
        match &self.kind {
            TypeKind::Struct(c) | TypeKind::Union(c) => Some(c),
            _ => None,
        }
    }

    /// The body of an `ENUM` or `ENUM64`, else `None`.
    pub fn enum_body(&self) -> Option<&EnumBody> {
        match &self.kind {
            TypeKind::Enum(e) | TypeKind::Enum64(e) => Some(e),
            _ => None,
        }
    }

    /// Is this a `const`, `volatile`, `restrict` or type tag (a modifier that does not
    /// change layout)?
    pub fn is_modifier(&self) -> bool {
        matches!(
            self.kind(),
            Kind::Const | Kind::Volatile | Kind::Restrict | Kind::TypeTag
        )
    }

    /// Is this a struct or union?
    pub fn is_composite(&self) -> bool {
        matches!(self.kind(), Kind::Struct | Kind::Union)
    }

    /// The number of trailing records (`vlen`) this type has in the wire format.
    pub fn vlen(&self) -> usize {
        match &self.kind {
            TypeKind::Struct(c) | TypeKind::Union(c) => c.members.len(),
            TypeKind::Enum(e) | TypeKind::Enum64(e) => e.values.len(),
            TypeKind::FuncProto { params, .. } => params.len(),
            TypeKind::Datasec { vars, .. } => vars.len(),
            TypeKind::Func { linkage, .. } => linkage.raw() as usize,
            _ => 0,
        }
    }

    /// The kind flag bit this type has in the wire format.
    pub fn kflag(&self) -> bool {
        match &self.kind {
            TypeKind::Struct(c) | TypeKind::Union(c) => c.kflag,
            TypeKind::Enum(e) | TypeKind::Enum64(e) => e.signed,
            TypeKind::Fwd { union } => *union,
            TypeKind::DeclTag { kflag, .. } | TypeKind::TypeTag { kflag, .. } => *kflag,
            _ => false,
        }
    }
}
