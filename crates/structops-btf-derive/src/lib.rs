//! `#[derive(Btf)]`: BTF for Rust host types.
//!
//! A host declares its ops tables and state structs in Rust; the verifier types pointers
//! into them through BTF. This derive implements `structops_btf::BtfType` for
//!
//! - `#[repr(C)]` structs with named fields (`packed` and `align` are allowed),
//! - `#[repr(C)]` unions,
//! - fieldless enums with `#[repr(C)]` or an integer repr (`u8` ... `u64`, `i8` ... `i64`,
//!   `usize`, `isize`),
//!
//! so that `structops_btf::BtfTypes` can emit them. How primitive Rust types map to
//! BTF is documented in `structops_btf::host`: the names and encodings are vmlinux's.
//!
//! # Layout
//!
//! The generated code reads the layout rustc actually chose: member bit offsets come from
//! `core::mem::offset_of!` and sizes from `size_of`, so the BTF cannot disagree with the
//! Rust type. Union members are all at offset 0. Enum sizes are `size_of::<Self>()`, so an
//! enum's repr decides whether it becomes an `ENUM` (1, 2 or 4 bytes) or an `ENUM64`. With
//! an integer repr the enum is signed when the repr is; with `#[repr(C)]` it is signed when
//! a value is negative (as clang emits for C, whose enums are then `int`).
//!
//! # Attributes
//!
//! - On the type: `#[btf(name = "c_name")]` gives the BTF name (default: the Rust name);
//!   `#[btf(crate = "path::to::structops_btf")]` says where the runtime crate is, for
//!   crates that rename or re-export it.
//! - On a field: `#[btf(name = "c_name")]` renames the member;
//!   `#[btf(typedef = "u64, __u64")]` wraps the member's type in typedefs, outermost first
//!   (here `u64` → `__u64` → `long long unsigned int`), to reproduce a kernel typedef chain;
//!   `#[btf(params = "sk, ack, acked")]` names the parameters of a function pointer member;
//!   `#[btf(bitfields = "icsk_ca_state:5, icsk_ca_initialized:1")]` on an integer field
//!   makes it the storage unit of C bitfields: the field itself is not a member, each
//!   `name:width` is one, low bits first (x86-64 and arm64 order), and an empty name
//!   (`:3`) is unnamed padding. The struct then gets BTF's kind flag, as clang emits for
//!   structs with bitfields (bit offsets must fit in 24 bits, so the struct must be under
//!   2 MiB). Rust reads and writes the bits through the storage field.
//! - On an enum variant: `#[btf(name = "C_NAME")]` renames the enumerator.
//!
//! Names must be C identifiers. Renaming must not make two members (or enumerators) share a
//! name.
//!
//! # Function pointer members
//!
//! A member of type `unsafe extern "C" fn(..) -> R` (or `extern "C" fn`, or an `Option` of
//! either, which is the nullable C function pointer) becomes `PTR` → `FUNC_PROTO`. Rust
//! allows names in function pointer types, and the derive uses them as the BTF parameter
//! names: `Option<unsafe extern "C" fn(sk: *mut Sock, ack: u32)>`. `params = ".."` overrides
//! them; `_` or no name leaves a parameter unnamed. A return type of `()` (or none) is
//! `void`, and `...` (variadic) is encoded as BTF's trailing `void` parameter. Only the C ABI
//! is accepted. Identical signatures share one prototype.
//!
//! # Rejected at compile time
//!
//! Generic types, types without the right repr, tuple structs (BTF members need names; use
//! named fields), enums with data, `#[repr(u128)]`/`#[repr(i128)]` enums, zero-sized members
//! such as `PhantomData` (a zero-length array `[T; 0]` written with a literal `0` is allowed:
//! it is C's flexible array member), Rust-ABI function pointers, and bad names. Bitfields
//! have no Rust equivalent; declare them on their storage field with `bitfields`.
//!
//! # Example
//!
//! ```
//! use std::ffi::c_void;
//! use structops_btf::{BtfTypes, Kind};
//! use structops_btf_derive::Btf;
//!
//! #[derive(Btf)]
//! #[repr(C)]
//! struct Node {
//!     next: *mut Node,
//!     #[btf(name = "priv")]
//!     private: *mut c_void,
//!     weight: [u16; 4],
//! }
//!
//! #[derive(Btf)]
//! #[repr(C)]
//! struct NodeOps {
//!     visit: Option<unsafe extern "C" fn(node: *mut Node, depth: u32) -> i32>,
//!     #[btf(typedef = "u64, __u64")]
//!     flags: u64,
//! }
//!
//! let mut types = BtfTypes::new();
//! let ops = types.id_of::<NodeOps>();
//! let btf = types.build();
//! assert_eq!(btf.find_by_name_kind("NodeOps", Kind::Struct), Some(ops));
//!
//! // `flags` is `u64`, a typedef of `__u64`, as in the kernel's headers.
//! let (m, bit) = btf.member_by_name(ops, "flags").unwrap().unwrap();
//! assert_eq!((btf.type_name(m.ty).unwrap(), bit), ("u64", 64));
//! assert_eq!(btf.type_name(btf.resolve(m.ty).unwrap()).unwrap(), "long long unsigned int");
//!
//! // `visit` points to a prototype whose first parameter is `struct Node *node`.
//! let (m, bit) = btf.member_by_name(ops, "visit").unwrap().unwrap();
//! assert_eq!(bit, 0);
//! let proto = btf.func_ptr_proto(m.ty).unwrap().unwrap();
//! let (ret, params) = btf.func_proto(proto).unwrap();
//! assert_eq!(btf.type_name(ret).unwrap(), "int");
//! assert_eq!(btf.name(params[0].name_off).unwrap(), "node");
//! let node = btf.find_by_name_kind("Node", Kind::Struct).unwrap();
//! assert_eq!(btf.ty(params[0].ty).unwrap().target(), Some(node));
//!
//! // Offsets and sizes are rustc's own.
//! let (_, bit) = btf.member_by_name(node, "weight").unwrap().unwrap();
//! assert_eq!(bit as usize, 8 * std::mem::offset_of!(Node, weight));
//! assert_eq!(btf.size_of(node).unwrap() as usize, size_of::<Node>());
//! ```

mod attr;
mod expand;

use proc_macro::TokenStream;

/// Implements `structops_btf::BtfType` for a `#[repr(C)]` struct or union or a fieldless
/// enum. See the [crate documentation](crate) for the mapping and the `#[btf(...)]`
/// attributes.
#[proc_macro_derive(Btf, attributes(btf))]
pub fn derive_btf(input: TokenStream) -> TokenStream {
    let input = syn::parse_macro_input!(input as syn::DeriveInput);
    expand::derive(&input)
        .unwrap_or_else(syn::Error::into_compile_error)
        .into()
}
