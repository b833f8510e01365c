//! Building BTF programmatically and encoding it to the wire format.

use std::collections::HashMap;

use crate::Btf;
use crate::parse::{BTF_MAGIC, BTF_VERSION, Endian, HEADER_LEN};
use crate::types::*;

/// Builds a BTF type table: add strings and types, then [`BtfBuilder::build`] a [`Btf`] or
/// [`BtfBuilder::encode`] the wire format. Strings are deduplicated.
///
/// Ids are handed out in order starting at 1. For recursive types, [`BtfBuilder::reserve`]
/// an id first and [`BtfBuilder::set`] its body once the referenced ids exist, or refer
/// to the id a type will get ([`BtfBuilder::next_id`]):
///
/// ```
/// use structops_btf::{BtfBuilder, INT_SIGNED, dump};
///
/// let mut b = BtfBuilder::new();
/// let int = b.add_int("int", 4, INT_SIGNED);
/// // struct node { struct node *next; int val; }: the pointer comes first and names
/// // the id the struct is about to get.
/// let next = b.add_ptr(b.next_id() + 1);
/// let node = b.add_struct("node", 16, &[("next", next, 0), ("val", int, 64)]);
/// let btf = b.build();
/// btf.validate()?; // the kernel's BPF_BTF_LOAD checks
/// assert_eq!(btf.size_of(node)?, 16);
///
/// let mut header = Vec::new();
/// dump::c_header_types(&btf, [node], &mut header)?;
/// let header = String::from_utf8(header)?;
/// assert!(header.contains("struct node {\n\tstruct node *next;\n\tint val;\n};"), "{header}");
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Clone, Debug)]
pub struct BtfBuilder {
    types: Vec<Type>,
    strings: Vec<u8>,
    string_offsets: HashMap<Box<str>, u32>,
}

impl Default for BtfBuilder {
    fn default() -> Self {
        Self::new()
    }
}

impl BtfBuilder {
    /// An empty builder (only `void` and the empty string).
    pub fn new() -> BtfBuilder {
        let mut string_offsets = HashMap::new();
        string_offsets.insert("".into(), 0);
        BtfBuilder {
            types: vec![Type {
                name_off: 0,
                kind: TypeKind::Void,
            }],
            strings: vec![0],
            string_offsets,
        }
    }

    /// A builder that starts with every type and string of `btf`, to extend it.
    pub fn from_btf(btf: &Btf) -> BtfBuilder {
        let mut b = BtfBuilder {
            types: btf.types().to_vec(),
            strings: btf.strings().to_vec(),
            string_offsets: HashMap::new(),
        };
        let mut off = 0usize;
        for s in btf.strings().split(|&c| c == 0) {
            if let Ok(s) = std::str::from_utf8(s) {
                b.string_offsets.entry(s.into()).or_insert(off as u32);
            }
            off += s.len() + 1;
        }
        b
    }

    /// Adds `s` to the string section (once) and returns its offset.
    pub fn add_string(&mut self, s: &str) -> u32 {
        if let Some(&off) = self.string_offsets.get(s) {
            return off;
        }
        let off = self.strings.len() as u32;
        self.strings.extend_from_slice(s.as_bytes());
        self.strings.push(0);
        self.string_offsets.insert(s.into(), off);
        off
    }

    /// The id the next added type will get.
    pub fn next_id(&self) -> TypeId {
        self.types.len() as TypeId
    }

    /// Adds a type as is and returns its id.
    pub fn add_type(&mut self, t: Type) -> TypeId {
        self.types.push(t);
        self.types.len() as TypeId - 1
    }

    /// Reserves an id (holding a placeholder `INT`) to be filled by [`BtfBuilder::set`].
    pub fn reserve(&mut self) -> TypeId {
        self.add_type(Type {
            name_off: 0,
            kind: TypeKind::Int {
                size: 0,
                encoding: 0,
                offset: 0,
                bits: 0,
            },
        })
    }

    /// Replaces the type at `id`. Returns false (and changes nothing) if `id` is 0 or was
    /// never handed out.
    pub fn set(&mut self, id: TypeId, t: Type) -> bool {
        match self.types.get_mut(id as usize) {
            Some(slot) if id != 0 => {
                *slot = t;
                true
            }
            _ => false,
        }
    }

    fn named(&mut self, name: &str, kind: TypeKind) -> TypeId {
        let name_off = self.add_string(name);
        self.add_type(Type { name_off, kind })
    }

    /// Adds an `INT` of `size` bytes using all its bits; `encoding` is a combination of
    /// [`INT_SIGNED`], [`INT_CHAR`], [`INT_BOOL`].
    pub fn add_int(&mut self, name: &str, size: u32, encoding: u8) -> TypeId {
        let bits = (size * 8).min(128) as u8;
        self.named(
            name,
            TypeKind::Int {
                size,
                encoding,
                offset: 0,
                bits,
            },
        )
    }

    /// Adds a `FLOAT`.
    pub fn add_float(&mut self, name: &str, size: u32) -> TypeId {
        self.named(name, TypeKind::Float { size })
    }

    /// Adds a `PTR` to `target`.
    pub fn add_ptr(&mut self, target: TypeId) -> TypeId {
        self.add_type(Type {
            name_off: 0,
            kind: TypeKind::Ptr { target },
        })
    }

    /// Adds a `CONST` of `target`.
    pub fn add_const(&mut self, target: TypeId) -> TypeId {
        self.add_type(Type {
            name_off: 0,
            kind: TypeKind::Const { target },
        })
    }

    /// Adds a `VOLATILE` of `target`.
    pub fn add_volatile(&mut self, target: TypeId) -> TypeId {
        self.add_type(Type {
            name_off: 0,
            kind: TypeKind::Volatile { target },
        })
    }

    /// Adds a `TYPEDEF` named `name` for `target`.
    pub fn add_typedef(&mut self, name: &str, target: TypeId) -> TypeId {
        self.named(name, TypeKind::Typedef { target })
    }

    /// Adds an `ARRAY` of `len` `elem`s indexed by `index`.
    pub fn add_array(&mut self, elem: TypeId, index: TypeId, len: u32) -> TypeId {
        self.add_type(Type {
            name_off: 0,
            kind: TypeKind::Array { elem, index, len },
        })
    }

    fn members(&mut self, members: &[(&str, TypeId, u32)]) -> Vec<Member> {
        members
            .iter()
            .map(|&(n, ty, offset)| Member {
                name_off: self.add_string(n),
                ty,
                offset,
            })
            .collect()
    }

    /// Adds a `STRUCT` with `(name, type, bit offset)` members and no bitfields.
    pub fn add_struct(&mut self, name: &str, size: u32, members: &[(&str, TypeId, u32)]) -> TypeId {
        let members = self.members(members);
        self.named(
            name,
            TypeKind::Struct(Composite {
                size,
                kflag: false,
                members,
            }),
        )
    }

    /// Adds a `UNION` with `(name, type, bit offset)` members.
    pub fn add_union(&mut self, name: &str, size: u32, members: &[(&str, TypeId, u32)]) -> TypeId {
        let members = self.members(members);
        self.named(
            name,
            TypeKind::Union(Composite {
                size,
                kflag: false,
                members,
            }),
        )
    }

    /// Adds a `STRUCT` (or `UNION`) with the kind flag set, so that members may be
    /// bitfields: `(name, type, bit offset, bitfield size or 0)`.
    pub fn add_bitfield_composite(
        &mut self,
        union: bool,
        name: &str,
        size: u32,
        members: &[(&str, TypeId, u32, u8)],
    ) -> TypeId {
        let members = members
            .iter()
            .map(|&(n, ty, bit, bits)| Member {
                name_off: self.add_string(n),
                ty,
                offset: (bits as u32) << 24 | (bit & 0x00ff_ffff),
            })
            .collect();
        let c = Composite {
            size,
            kflag: true,
            members,
        };
        let kind = if union {
            TypeKind::Union(c)
        } else {
            TypeKind::Struct(c)
        };
        self.named(name, kind)
    }

    /// Adds an enum of `size` bytes; an `ENUM64` when `size` is 8, else an `ENUM` (values
    /// truncated to 32 bits).
    pub fn add_enum(
        &mut self,
        name: &str,
        size: u32,
        signed: bool,
        values: &[(&str, i64)],
    ) -> TypeId {
        let values = values
            .iter()
            .map(|&(n, v)| Enumerator {
                name_off: self.add_string(n),
                value: if size == 8 { v as u64 } else { v as u32 as u64 },
            })
            .collect();
        let body = EnumBody {
            size,
            signed,
            values,
        };
        let kind = if size == 8 {
            TypeKind::Enum64(body)
        } else {
            TypeKind::Enum(body)
        };
        self.named(name, kind)
    }

    /// Adds a `FWD` declaration.
    pub fn add_fwd(&mut self, name: &str, union: bool) -> TypeId {
        self.named(name, TypeKind::Fwd { union })
    }

    /// Adds a `FUNC_PROTO` returning `ret` with `(name, type)` parameters.
    pub fn add_func_proto(&mut self, ret: TypeId, params: &[(&str, TypeId)]) -> TypeId {
        let params = params
            .iter()
            .map(|&(n, ty)| Param {
                name_off: self.add_string(n),
                ty,
            })
            .collect();
        self.add_type(Type {
            name_off: 0,
            kind: TypeKind::FuncProto { ret, params },
        })
    }

    /// Adds a `FUNC`.
    pub fn add_func(&mut self, name: &str, proto: TypeId, linkage: Linkage) -> TypeId {
        self.named(name, TypeKind::Func { proto, linkage })
    }

    /// Adds a `VAR`.
    pub fn add_var(&mut self, name: &str, ty: TypeId, linkage: Linkage) -> TypeId {
        self.named(name, TypeKind::Var { ty, linkage })
    }

    /// Adds a `DATASEC`.
    pub fn add_datasec(&mut self, name: &str, size: u32, vars: &[VarSecInfo]) -> TypeId {
        self.named(
            name,
            TypeKind::Datasec {
                size,
                vars: vars.to_vec(),
            },
        )
    }

    /// Adds a `DECL_TAG` `tag` on `target` (`component_idx` -1 for the declaration).
    pub fn add_decl_tag(&mut self, tag: &str, target: TypeId, component_idx: i32) -> TypeId {
        self.named(
            tag,
            TypeKind::DeclTag {
                target,
                component_idx,
                kflag: false,
            },
        )
    }

    /// Adds a `TYPE_TAG` `tag` on `target`.
    pub fn add_type_tag(&mut self, tag: &str, target: TypeId) -> TypeId {
        self.named(
            tag,
            TypeKind::TypeTag {
                target,
                kflag: false,
            },
        )
    }

    /// The types added so far, by id.
    pub fn types(&self) -> &[Type] {
        &self.types
    }

    /// Finishes into a [`Btf`].
    pub fn build(self) -> Btf {
        Btf::from_parts(self.types, self.strings, Endian::Little)
    }

    /// Encodes the wire format (little-endian).
    pub fn encode(&self) -> Vec<u8> {
        encode(&self.types[1..], &self.strings)
    }
}

fn put(out: &mut Vec<u8>, v: u32) {
    out.extend_from_slice(&v.to_le_bytes());
}

/// Encodes `types` (ids from 1) and `strings` as a little-endian BTF blob.
pub(crate) fn encode(types: &[Type], strings: &[u8]) -> Vec<u8> {
    let mut t = Vec::with_capacity(types.len() * 24);
    for ty in types {
        let kind = ty.kind() as u32;
        let vlen = ty.vlen() as u32 & 0xffff;
        let info = (ty.kflag() as u32) << 31 | kind << 24 | vlen;
        put(&mut t, ty.name_off);
        put(&mut t, info);
        match &ty.kind {
            TypeKind::Void => put(&mut t, 0),
            TypeKind::Int {
                size,
                encoding,
                offset,
                bits,
            } => {
                put(&mut t, *size);
                put(
                    &mut t,
                    ((*encoding as u32) & 0x0f) << 24 | (*offset as u32) << 16 | *bits as u32,
                );
            }
            TypeKind::Ptr { target }
            | TypeKind::Typedef { target }
            | TypeKind::Volatile { target }
            | TypeKind::Const { target }
            | TypeKind::Restrict { target }
            | TypeKind::TypeTag { target, .. } => put(&mut t, *target),
            TypeKind::Array { elem, index, len } => {
                put(&mut t, 0);
                put(&mut t, *elem);
                put(&mut t, *index);
                put(&mut t, *len);
            }
            TypeKind::Struct(c) | TypeKind::Union(c) => {
                put(&mut t, c.size);
                for m in &c.members {
                    put(&mut t, m.name_off);
                    put(&mut t, m.ty);
                    put(&mut t, m.offset);
                }
            }
            TypeKind::Enum(e) => {
                put(&mut t, e.size);
                for v in &e.values {
                    put(&mut t, v.name_off);
                    put(&mut t, v.value as u32);
                }
            }
            TypeKind::Enum64(e) => {
                put(&mut t, e.size);
                for v in &e.values {
                    put(&mut t, v.name_off);
                    put(&mut t, v.value as u32);
                    put(&mut t, (v.value >> 32) as u32);
                }
            }
            TypeKind::Fwd { .. } => put(&mut t, 0),
            TypeKind::Func { proto, .. } => put(&mut t, *proto),
            TypeKind::FuncProto { ret, params } => {
                put(&mut t, *ret);
                for p in params {
                    put(&mut t, p.name_off);
                    put(&mut t, p.ty);
                }
            }
            TypeKind::Var { ty, linkage } => {
                put(&mut t, *ty);
                put(&mut t, linkage.raw());
            }
            TypeKind::Datasec { size, vars } => {
                put(&mut t, *size);
                for v in vars {
                    put(&mut t, v.ty);
                    put(&mut t, v.offset);
                    put(&mut t, v.size);
                }
            }
            TypeKind::Float { size } => put(&mut t, *size),
            TypeKind::DeclTag {
                target,
                component_idx,
                ..
            } => {
                put(&mut t, *target);
                put(&mut t, *component_idx as u32);
            }
        }
    }
    let mut out = Vec::with_capacity(HEADER_LEN + t.len() + strings.len());
    out.extend_from_slice(&BTF_MAGIC.to_le_bytes());
    out.push(BTF_VERSION);
    out.push(0);
    put(&mut out, HEADER_LEN as u32);
    put(&mut out, 0);
    put(&mut out, t.len() as u32);
    put(&mut out, t.len() as u32);
    put(&mut out, strings.len() as u32);
    out.extend_from_slice(&t);
    out.extend_from_slice(strings);
    out
}
