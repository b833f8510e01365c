//! BTF for host types declared in Rust.
//!
//! A host (the program that embeds structops) declares its ops tables and state structs as
//! `#[repr(C)]` Rust types. The verifier types pointers into those structs through BTF, so
//! each such type implements [`BtfType`], normally through `#[derive(Btf)]` from the
//! `structops-btf-derive` crate. [`BtfTypes`] collects the BTF of any number of Rust types
//! into one table, emitting every Rust type once (shared types are shared, recursive types
//! through raw pointers work).
//!
//! # How Rust types map to BTF
//!
//! The host's BTF plays the role of the kernel's vmlinux BTF, so primitive types get the
//! names and encodings that pahole gives the equivalent C types in vmlinux:
//!
//! | Rust | BTF |
//! |---|---|
//! | `u8`, `i8` | `INT 'unsigned char'` (no encoding), `INT 'signed char'` (SIGNED) |
//! | [`CChar`] | `INT 'char'`, no encoding (the kernel is built with `-funsigned-char`) |
//! | `u16`, `i16` | `INT 'short unsigned int'`, `INT 'short int'` |
//! | `u32`, `i32` | `INT 'unsigned int'`, `INT 'int'` |
//! | `u64`, `i64` | `INT 'long long unsigned int'`, `INT 'long long int'`: what the kernel's `u64`/`__u64` and `s64`/`__s64` resolve to |
//! | `usize`, `isize` | `INT 'long unsigned int'`, `INT 'long int'`: C's `unsigned long` and `long` |
//! | `u128`, `i128` | `INT '__int128 unsigned'`, `INT '__int128'` |
//! | `bool` | `INT '_Bool'` (BOOL) |
//! | `f32`, `f64` | `FLOAT 'float'`, `FLOAT 'double'` |
//! | `*mut T`, `NonNull<T>`, `Option<NonNull<T>>` | `PTR` → `T` |
//! | `*const T` | `PTR` → `CONST` → `T`, as C's `const T *` |
//! | `*mut c_void`, `*const c_void` | `PTR` → `void`, `PTR` → `CONST` → `void` |
//! | `[T; N]` | `ARRAY` of `N` `T`, indexed by `int` (as pahole emits; clang uses `__ARRAY_SIZE_TYPE__`) |
//! | `extern "C" fn(A, B) -> R`, `Option<...>` of it | `PTR` → `FUNC_PROTO` (`()` returns `void`) |
//! | `ManuallyDrop<T>` | `T` |
//!
//! So a C `unsigned long` field is `usize` in Rust, and a C `u64` field is `u64`. Since
//! Rust's `core::ffi::c_ulong` is an alias of `u64`, it maps to `long long unsigned int`,
//! not to `long unsigned int`; write `usize` where the C side says `unsigned long`. To
//! reproduce a kernel typedef chain (`u64` → `__u64` → `long long unsigned int`), the derive
//! accepts `#[btf(typedef = "u64, __u64")]` on a field.
//!
//! Bitfields have no Rust equivalent and are not supported.

mod compare;

pub use compare::{CompareError, Side, structurally_equal};

use std::collections::HashMap;
use std::ffi::c_void;
use std::mem::ManuallyDrop;
use std::ptr::NonNull;

use crate::Btf;
use crate::builder::BtfBuilder;
use crate::types::{Composite, INT_BOOL, INT_SIGNED, Member, Type, TypeId, TypeKind};

/// A Rust type with a BTF description.
///
/// Implement it with `#[derive(Btf)]` (crate `structops-btf-derive`) for `#[repr(C)]`
/// structs, unions and fieldless enums. Manual implementations emit their type through the
/// [`BtfTypes`] methods and return its id; they must not call
/// [`BtfType::btf_type`] of other types directly, but [`BtfTypes::id_of`], which
/// memoizes. A type that can be reached again from its own members (through a pointer)
/// must first [`BtfTypes::reserve`] its id, then fill it in, as the derive does.
#[diagnostic::on_unimplemented(
    message = "`{Self}` has no BTF description",
    label = "no BTF for this type",
    note = "derive it with `#[derive(Btf)]` on a `#[repr(C)]` type, or implement `BtfType` by hand"
)]
pub trait BtfType: 'static {
    /// Emits the BTF of `Self` (and of every type it refers to) into `b` and returns the
    /// id of `Self`. Called at most once per [`BtfTypes`] by [`BtfTypes::id_of`].
    fn btf_type(b: &mut BtfTypes) -> TypeId;
}

/// What a raw pointer may point to: any [`BtfType`], or `c_void` (BTF `void`, id 0).
#[diagnostic::on_unimplemented(
    message = "`{Self}` has no BTF description, so pointers to it have none",
    label = "no BTF for the pointee",
    note = "derive it with `#[derive(Btf)]` on a `#[repr(C)]` type, or point to `c_void`"
)]
pub trait BtfPointee: 'static {
    /// The id of the pointee type in `b`.
    fn pointee_id(b: &mut BtfTypes) -> TypeId;
}

impl<T: BtfType> BtfPointee for T {
    fn pointee_id(b: &mut BtfTypes) -> TypeId {
        b.id_of::<T>()
    }
}

impl BtfPointee for c_void {
    fn pointee_id(_: &mut BtfTypes) -> TypeId {
        0
    }
}

/// What a function pointer may return: any [`BtfType`], or `()` (BTF `void`, id 0).
pub trait BtfReturn: 'static {
    /// The id of the return type in `b`.
    fn return_id(b: &mut BtfTypes) -> TypeId;
}

impl<T: BtfType> BtfReturn for T {
    fn return_id(b: &mut BtfTypes) -> TypeId {
        b.id_of::<T>()
    }
}

impl BtfReturn for () {
    fn return_id(_: &mut BtfTypes) -> TypeId {
        0
    }
}

/// A type whose `Option` has the same representation, `None` being the null pointer
/// (function pointers and [`NonNull`]); `Option<T>` then has the same BTF as `T`.
pub trait BtfNullable: BtfType {}

impl<T: BtfNullable> BtfType for Option<T> {
    fn btf_type(b: &mut BtfTypes) -> TypeId {
        b.id_of::<T>()
    }
}

/// C's plain `char`, a distinct BTF type from `signed char` (`i8`) and `unsigned char`
/// (`u8`). Its BTF is `INT 'char'` with no encoding, as in vmlinux (the kernel is built
/// with `-funsigned-char`), so the value is held unsigned.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[repr(transparent)]
pub struct CChar(pub u8);

/// A function prototype's identity: return type and `(name, type)` parameters.
type ProtoKey = (TypeId, Vec<(Box<str>, TypeId)>);

/// Collects the BTF of Rust types into one table.
///
/// Every Rust type is emitted once ([`BtfTypes::id_of`] memoizes by
/// [`std::any::TypeId`]), and anonymous derived types (pointers, `const`, typedefs,
/// arrays, function prototypes) are deduplicated by content, so a struct whose members
/// share a function signature shares one `PTR` → `FUNC_PROTO`, as clang and pahole emit.
#[derive(Debug, Default)]
pub struct BtfTypes {
    builder: BtfBuilder,
    by_rust: HashMap<std::any::TypeId, TypeId>,
    ptrs: HashMap<TypeId, TypeId>,
    consts: HashMap<TypeId, TypeId>,
    typedefs: HashMap<(Box<str>, TypeId), TypeId>,
    arrays: HashMap<(TypeId, u32), TypeId>,
    protos: HashMap<ProtoKey, TypeId>,
    ints: HashMap<(Box<str>, u32, u8), TypeId>,
}

/// `(name, type, bit offset)` members as `(.., bitfield size 0)`.
fn without_bitfields<'a>(members: &[(&'a str, TypeId, u32)]) -> Vec<(&'a str, TypeId, u32, u8)> {
    members.iter().map(|&(n, t, o)| (n, t, o, 0)).collect()
}

impl BtfTypes {
    /// An empty table.
    pub fn new() -> BtfTypes {
        BtfTypes::default()
    }

    /// A table that appends to `builder` (for example one made by
    /// [`BtfBuilder::from_btf`] to extend a base BTF).
    pub fn from_builder(builder: BtfBuilder) -> BtfTypes {
        BtfTypes {
            builder,
            ..BtfTypes::default()
        }
    }

    /// The id of `T`, emitting its BTF on first use.
    pub fn id_of<T: BtfType>(&mut self) -> TypeId {
        let key = std::any::TypeId::of::<T>();
        if let Some(&id) = self.by_rust.get(&key) {
            return id;
        }
        let id = T::btf_type(self);
        self.by_rust.insert(key, id);
        id
    }

    /// The id `T` already has, if it was emitted (or reserved).
    pub fn get<T: BtfType>(&self) -> Option<TypeId> {
        self.by_rust.get(&std::any::TypeId::of::<T>()).copied()
    }

    /// Reserves the id of `T` before its body is known, so that types reached from its
    /// members can point back at it. Fill it with [`BtfTypes::set_struct`],
    /// [`BtfTypes::set_union`] or [`BtfTypes::set`]. Returns the id already recorded for
    /// `T` if there is one.
    pub fn reserve<T: BtfType>(&mut self) -> TypeId {
        let key = std::any::TypeId::of::<T>();
        if let Some(&id) = self.by_rust.get(&key) {
            return id;
        }
        let id = self.builder.reserve();
        self.by_rust.insert(key, id);
        id
    }

    /// Replaces the type at `id` (see [`BtfBuilder::set`]). Returns false, changing
    /// nothing, if `id` is 0 or was never handed out.
    pub fn set(&mut self, id: TypeId, t: Type) -> bool {
        self.builder.set(id, t)
    }

    /// Fills the reserved `id` with a `STRUCT` named `name` of `size` bytes and
    /// `(name, type, bit offset)` members. Returns false if `id` was never handed out.
    pub fn set_struct(
        &mut self,
        id: TypeId,
        name: &str,
        size: u32,
        members: &[(&str, TypeId, u32)],
    ) -> bool {
        self.set_struct_bits(id, name, size, &without_bitfields(members))
    }

    /// Fills the reserved `id` with a `UNION` (see [`BtfTypes::set_struct`]).
    pub fn set_union(
        &mut self,
        id: TypeId,
        name: &str,
        size: u32,
        members: &[(&str, TypeId, u32)],
    ) -> bool {
        self.set_union_bits(id, name, size, &without_bitfields(members))
    }

    fn composite_bits(&mut self, members: &[(&str, TypeId, u32, u8)], size: u32) -> Composite {
        let kflag = members.iter().any(|m| m.3 != 0);
        let members = members
            .iter()
            .map(|&(name, ty, offset, bits)| Member {
                name_off: self.builder.add_string(name),
                ty,
                offset: if kflag {
                    u32::from(bits) << 24 | (offset & 0x00ff_ffff)
                } else {
                    offset
                },
            })
            .collect();
        Composite {
            size,
            kflag,
            members,
        }
    }

    /// Fills the reserved `id` with a `STRUCT` whose members are `(name, type, bit
    /// offset, bitfield size or 0)`: with any bitfield, the kind flag is set and offsets
    /// must fit in 24 bits. Returns false if `id` was never handed out.
    pub fn set_struct_bits(
        &mut self,
        id: TypeId,
        name: &str,
        size: u32,
        members: &[(&str, TypeId, u32, u8)],
    ) -> bool {
        let c = self.composite_bits(members, size);
        self.set_named(id, name, TypeKind::Struct(c))
    }

    /// Fills the reserved `id` with a `UNION` (see [`BtfTypes::set_struct_bits`]).
    pub fn set_union_bits(
        &mut self,
        id: TypeId,
        name: &str,
        size: u32,
        members: &[(&str, TypeId, u32, u8)],
    ) -> bool {
        let c = self.composite_bits(members, size);
        self.set_named(id, name, TypeKind::Union(c))
    }

    fn set_named(&mut self, id: TypeId, name: &str, kind: TypeKind) -> bool {
        let name_off = self.builder.add_string(name);
        self.set(id, Type { name_off, kind })
    }

    /// Adds an enum of `size` bytes: an `ENUM64` when `size` is 8, else an `ENUM`. Values
    /// are given as their 64-bit two's complement bits; `signed` is the kind flag.
    pub fn add_enum(
        &mut self,
        name: &str,
        size: u32,
        signed: bool,
        values: &[(&str, i64)],
    ) -> TypeId {
        self.builder.add_enum(name, size, signed, values)
    }

    /// An `INT` named `name` of `size` bytes with `encoding`, added once.
    pub fn int(&mut self, name: &str, size: u32, encoding: u8) -> TypeId {
        let key = (Box::from(name), size, encoding);
        if let Some(&id) = self.ints.get(&key) {
            return id;
        }
        let id = self.builder.add_int(name, size, encoding);
        self.ints.insert(key, id);
        id
    }

    /// A `PTR` to `target`, added once per target.
    pub fn ptr(&mut self, target: TypeId) -> TypeId {
        if let Some(&id) = self.ptrs.get(&target) {
            return id;
        }
        let id = self.builder.add_ptr(target);
        self.ptrs.insert(target, id);
        id
    }

    /// A `CONST` of `target`, added once per target.
    pub fn const_of(&mut self, target: TypeId) -> TypeId {
        if let Some(&id) = self.consts.get(&target) {
            return id;
        }
        let id = self.builder.add_const(target);
        self.consts.insert(target, id);
        id
    }

    /// A `TYPEDEF` named `name` for `target`, added once per name and target.
    pub fn typedef(&mut self, name: &str, target: TypeId) -> TypeId {
        let key = (Box::from(name), target);
        if let Some(&id) = self.typedefs.get(&key) {
            return id;
        }
        let id = self.builder.add_typedef(name, target);
        self.typedefs.insert(key, id);
        id
    }

    /// An `ARRAY` of `len` `elem`s, indexed by `int`, added once per element type and
    /// length.
    pub fn array(&mut self, elem: TypeId, len: u32) -> TypeId {
        if let Some(&id) = self.arrays.get(&(elem, len)) {
            return id;
        }
        let index = self.id_of::<i32>();
        let id = self.builder.add_array(elem, index, len);
        self.arrays.insert((elem, len), id);
        id
    }

    /// A `FUNC_PROTO` returning `ret` (0 for `void`) with `(name, type)` parameters (`""`
    /// for an unnamed one; a last parameter of type 0 means `...`), added once per
    /// signature and names.
    pub fn func_proto(&mut self, ret: TypeId, params: &[(&str, TypeId)]) -> TypeId {
        let key = (
            ret,
            params
                .iter()
                .map(|&(n, t)| (Box::from(n), t))
                .collect::<Vec<_>>(),
        );
        if let Some(&id) = self.protos.get(&key) {
            return id;
        }
        let id = self.builder.add_func_proto(ret, params);
        self.protos.insert(key, id);
        id
    }

    /// The types emitted so far.
    pub fn builder(&self) -> &BtfBuilder {
        &self.builder
    }

    /// The underlying builder, to add types the Rust side has no equivalent for.
    pub fn builder_mut(&mut self) -> &mut BtfBuilder {
        &mut self.builder
    }

    /// The underlying builder, giving up the memo tables.
    pub fn into_builder(self) -> BtfBuilder {
        self.builder
    }

    /// Finishes into a [`Btf`].
    pub fn build(self) -> Btf {
        self.builder.build()
    }

    /// Encodes the wire format (little-endian).
    pub fn encode(&self) -> Vec<u8> {
        self.builder.encode()
    }
}

/// The BTF of `T` alone (and of the types it refers to), with the id of `T` in it.
pub fn btf_of<T: BtfType>() -> (Btf, TypeId) {
    let mut b = BtfTypes::new();
    let id = b.id_of::<T>();
    (b.build(), id)
}

macro_rules! int_impls {
    ($($t:ty => $name:literal, $enc:expr;)*) => {$(
        impl BtfType for $t {
            fn btf_type(b: &mut BtfTypes) -> TypeId {
                b.int($name, size_of::<$t>() as u32, $enc)
            }
        }
    )*};
}

int_impls! {
    u8 => "unsigned char", 0;
    i8 => "signed char", INT_SIGNED;
    CChar => "char", 0;
    u16 => "short unsigned int", 0;
    i16 => "short int", INT_SIGNED;
    u32 => "unsigned int", 0;
    i32 => "int", INT_SIGNED;
    u64 => "long long unsigned int", 0;
    i64 => "long long int", INT_SIGNED;
    usize => "long unsigned int", 0;
    isize => "long int", INT_SIGNED;
    u128 => "__int128 unsigned", 0;
    i128 => "__int128", INT_SIGNED;
    bool => "_Bool", INT_BOOL;
}

impl BtfType for f32 {
    fn btf_type(b: &mut BtfTypes) -> TypeId {
        b.builder.add_float("float", 4)
    }
}

impl BtfType for f64 {
    fn btf_type(b: &mut BtfTypes) -> TypeId {
        b.builder.add_float("double", 8)
    }
}

impl<T: BtfPointee + ?Sized> BtfType for *mut T {
    fn btf_type(b: &mut BtfTypes) -> TypeId {
        let target = T::pointee_id(b);
        b.ptr(target)
    }
}

impl<T: BtfPointee + ?Sized> BtfType for *const T {
    fn btf_type(b: &mut BtfTypes) -> TypeId {
        let target = T::pointee_id(b);
        let c = b.const_of(target);
        b.ptr(c)
    }
}

impl<T: BtfPointee> BtfType for NonNull<T> {
    fn btf_type(b: &mut BtfTypes) -> TypeId {
        b.id_of::<*mut T>()
    }
}

impl<T: BtfPointee> BtfNullable for NonNull<T> {}

impl<T: BtfType> BtfType for ManuallyDrop<T> {
    fn btf_type(b: &mut BtfTypes) -> TypeId {
        b.id_of::<T>()
    }
}

impl<T: BtfType, const N: usize> BtfType for [T; N] {
    fn btf_type(b: &mut BtfTypes) -> TypeId {
        const {
            assert!(
                N <= u32::MAX as usize,
                "BTF array lengths are 32-bit; this array is longer"
            )
        };
        let elem = b.id_of::<T>();
        b.array(elem, N as u32)
    }
}

macro_rules! fn_impls {
    ($($a:ident)*) => {
        impl<R: BtfReturn, $($a: BtfType),*> BtfType for unsafe extern "C" fn($($a),*) -> R {
            fn btf_type(b: &mut BtfTypes) -> TypeId {
                let ret = R::return_id(b);
                let params = [$(("", b.id_of::<$a>())),*];
                let proto = b.func_proto(ret, &params);
                b.ptr(proto)
            }
        }
        impl<R: BtfReturn, $($a: BtfType),*> BtfNullable for unsafe extern "C" fn($($a),*) -> R {}
        impl<R: BtfReturn, $($a: BtfType),*> BtfType for extern "C" fn($($a),*) -> R {
            fn btf_type(b: &mut BtfTypes) -> TypeId {
                b.id_of::<unsafe extern "C" fn($($a),*) -> R>()
            }
        }
        impl<R: BtfReturn, $($a: BtfType),*> BtfNullable for extern "C" fn($($a),*) -> R {}
    };
}

fn_impls!();
fn_impls!(A1);
fn_impls!(A1 A2);
fn_impls!(A1 A2 A3);
fn_impls!(A1 A2 A3 A4);
fn_impls!(A1 A2 A3 A4 A5);
fn_impls!(A1 A2 A3 A4 A5 A6);
fn_impls!(A1 A2 A3 A4 A5 A6 A7);
fn_impls!(A1 A2 A3 A4 A5 A6 A7 A8);
fn_impls!(A1 A2 A3 A4 A5 A6 A7 A8 A9);
fn_impls!(A1 A2 A3 A4 A5 A6 A7 A8 A9 A10);
fn_impls!(A1 A2 A3 A4 A5 A6 A7 A8 A9 A10 A11);
fn_impls!(A1 A2 A3 A4 A5 A6 A7 A8 A9 A10 A11 A12);

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Kind;

    #[test]
    fn primitives_match_vmlinux_names_and_encodings() {
        let mut b = BtfTypes::new();
        let cases: [(TypeId, &str, u32, u8); 8] = [
            (b.id_of::<u8>(), "unsigned char", 1, 0),
            (b.id_of::<i8>(), "signed char", 1, INT_SIGNED),
            (b.id_of::<CChar>(), "char", 1, 0),
            (b.id_of::<u16>(), "short unsigned int", 2, 0),
            (b.id_of::<u64>(), "long long unsigned int", 8, 0),
            (b.id_of::<usize>(), "long unsigned int", 8, 0),
            (b.id_of::<isize>(), "long int", 8, INT_SIGNED),
            (b.id_of::<bool>(), "_Bool", 1, INT_BOOL),
        ];
        let btf = b.build();
        for (id, name, size, enc) in cases {
            assert_eq!(btf.type_name(id).unwrap(), name);
            match btf.ty(id).unwrap().kind {
                TypeKind::Int {
                    size: s,
                    encoding,
                    offset,
                    bits,
                } => {
                    assert_eq!((s, encoding, offset, bits as u32), (size, enc, 0, size * 8));
                }
                ref k => panic!("{name}: {k:?}"),
            }
        }
    }

    #[test]
    fn pointers_are_deduplicated_and_const_pointers_point_to_const() {
        let mut b = BtfTypes::new();
        let p1 = b.id_of::<*mut u32>();
        let p2 = b.id_of::<NonNull<u32>>();
        let p3 = b.id_of::<Option<NonNull<u32>>>();
        let cp = b.id_of::<*const u32>();
        let vp = b.id_of::<*mut c_void>();
        let cvp = b.id_of::<*const c_void>();
        assert_eq!((p1, p1), (p2, p3));
        let btf = b.build();
        let c = btf.ty(cp).unwrap().target().unwrap();
        assert_eq!(btf.ty(c).unwrap().kind(), Kind::Const);
        assert_eq!(
            btf.type_name(btf.ty(c).unwrap().target().unwrap()).unwrap(),
            "unsigned int"
        );
        assert_eq!(btf.ty(vp).unwrap().kind, TypeKind::Ptr { target: 0 });
        let cv = btf.ty(cvp).unwrap().target().unwrap();
        assert_eq!(btf.ty(cv).unwrap().kind, TypeKind::Const { target: 0 });
    }

    #[test]
    fn fn_pointers_share_protos_and_unit_returns_void() {
        let mut b = BtfTypes::new();
        let f1 = b.id_of::<Option<unsafe extern "C" fn(*mut u8, i32)>>();
        let f2 = b.id_of::<extern "C" fn(*mut u8, i32)>();
        let f3 = b.id_of::<unsafe extern "C" fn() -> u64>();
        assert_eq!(f1, f2);
        assert_ne!(f1, f3);
        let btf = b.build();
        let proto = btf.func_ptr_proto(f1).unwrap().unwrap();
        let (ret, params) = btf.func_proto(proto).unwrap();
        assert_eq!(ret, 0);
        assert_eq!(params.len(), 2);
        assert_eq!(btf.type_name(params[1].ty).unwrap(), "int");
        let proto3 = btf.func_ptr_proto(f3).unwrap().unwrap();
        let (ret3, params3) = btf.func_proto(proto3).unwrap();
        assert_eq!(btf.type_name(ret3).unwrap(), "long long unsigned int");
        assert!(params3.is_empty());
    }

    #[test]
    fn arrays_nest_outer_first_and_index_by_int() {
        let (btf, id) = btf_of::<[[u16; 3]; 2]>();
        let TypeKind::Array { elem, index, len } = btf.ty(id).unwrap().kind else {
            panic!("not an array");
        };
        assert_eq!(len, 2);
        assert_eq!(btf.type_name(index).unwrap(), "int");
        let TypeKind::Array { len: inner, .. } = btf.ty(elem).unwrap().kind else {
            panic!("not an array");
        };
        assert_eq!(inner, 3);
        assert_eq!(btf.size_of(id).unwrap(), 12);
    }

    #[test]
    fn encoded_host_btf_parses_back() {
        let mut b = BtfTypes::new();
        b.id_of::<[*const c_void; 4]>();
        b.id_of::<Option<unsafe extern "C" fn(f64, bool) -> f32>>();
        let bytes = b.encode();
        let parsed = Btf::parse(&bytes).unwrap();
        assert_eq!(parsed, b.build());
    }
}
