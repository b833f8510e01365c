//! BTF, the BPF Type Format: parse, validate, query, encode and pretty-print.
//!
//! [`Btf`] owns a parsed type table and its string section. It is built either by
//! [`Btf::parse`] from raw bytes (an object's `.BTF` section, `/sys/kernel/btf/vmlinux`) or
//! by [`BtfBuilder`] for host types declared in Rust. Queries follow the kernel's and
//! libbpf's definitions (`btf_type_skip_modifiers`, `btf__resolve_size`, member bit
//! offsets with and without the kind flag, ...). [`Btf::validate`] runs the kernel's
//! `BPF_BTF_LOAD` checks; [`dump`] writes bpftool's raw and C-header formats, [`value`]
//! prints values as bpftool does, [`ext`] parses `.BTF.ext`, and [`host`] builds BTF for
//! `#[repr(C)]` Rust types.
//!
//! ```
//! use structops_btf::{BtfBuilder, Btf, Kind};
//!
//! let mut b = BtfBuilder::new();
//! let int = b.add_int("int", 4, structops_btf::INT_SIGNED);
//! let s = b.add_struct("point", 8, &[("x", int, 0), ("y", int, 32)]);
//! let btf = Btf::parse(&b.encode()).unwrap();
//! assert_eq!(btf.find_by_name_kind("point", Kind::Struct), Some(s));
//! assert_eq!(btf.size_of(s).unwrap(), 8);
//! let (m, off) = btf.member_by_name(s, "y").unwrap().unwrap();
//! assert_eq!((btf.name(m.name_off).unwrap(), off), ("y", 32));
//! ```

mod builder;
pub mod dump;
mod error;
pub mod ext;
pub mod host;
mod parse;
mod query;
mod types;
mod validate;
pub mod value;

pub use builder::BtfBuilder;
pub use error::{BtfError, Result};
pub use host::{BtfType, BtfTypes, structurally_equal};
pub use parse::{
    BTF_MAGIC, BTF_MAX_NAME_OFFSET, BTF_MAX_SIZE, BTF_MAX_TYPE, BTF_MAX_VLEN, BTF_VERSION, Endian,
    HEADER_LEN, Header,
};
pub use types::*;
pub use validate::{BtfLoadError, Errno};

use std::collections::HashMap;
use std::sync::OnceLock;

/// A parsed BTF type table with its strings.
///
/// Type id `n` is `types()[n]`; id 0 is `void`.
#[derive(Debug)]
pub struct Btf {
    types: Vec<Type>,
    strings: Vec<u8>,
    endian: Endian,
    /// Lazily built index from name to the ids carrying it (in id order).
    by_name: OnceLock<HashMap<Box<str>, Vec<TypeId>>>,
}

impl Clone for Btf {
    fn clone(&self) -> Self {
        Btf::from_parts(self.types.clone(), self.strings.clone(), self.endian)
    }
}

impl PartialEq for Btf {
    fn eq(&self, other: &Self) -> bool {
        self.types == other.types && self.strings == other.strings
    }
}

impl Eq for Btf {}

impl Btf {
    pub(crate) fn from_parts(types: Vec<Type>, strings: Vec<u8>, endian: Endian) -> Btf {
        Btf {
            types,
            strings,
            endian,
            by_name: OnceLock::new(),
        }
    }

    /// All types, indexed by id (index 0 is `void`).
    pub fn types(&self) -> &[Type] {
        &self.types
    }

    /// Number of type ids, including `void` (so the largest id is `len() - 1`).
    pub fn len(&self) -> u32 {
        self.types.len() as u32
    }

    /// True if there are no types besides `void`.
    pub fn is_empty(&self) -> bool {
        self.types.len() <= 1
    }

    /// The raw string section.
    pub fn strings(&self) -> &[u8] {
        &self.strings
    }

    /// Byte order the blob was read in.
    pub fn endian(&self) -> Endian {
        self.endian
    }

    /// The type with id `id`.
    pub fn ty(&self, id: TypeId) -> Result<&Type> {
        self.types.get(id as usize).ok_or(BtfError::NoSuchType {
            id,
            count: self.len(),
        })
    }

    /// The string at offset `off` in the string section.
    pub fn name(&self, off: u32) -> Result<&str> {
        let bytes = self
            .strings
            .get(off as usize..)
            .ok_or(BtfError::BadStringOffset { offset: off })?;
        let end = bytes
            .iter()
            .position(|&b| b == 0)
            .ok_or(BtfError::BadStringOffset { offset: off })?;
        std::str::from_utf8(&bytes[..end]).map_err(|_| BtfError::BadStringOffset { offset: off })
    }

    /// The name of type `id` (`""` for anonymous types).
    pub fn type_name(&self, id: TypeId) -> Result<&str> {
        self.name(self.ty(id)?.name_off)
    }

    fn name_index(&self) -> &HashMap<Box<str>, Vec<TypeId>> {
        self.by_name.get_or_init(|| {
            let mut map: HashMap<Box<str>, Vec<TypeId>> = HashMap::new();
            for (id, t) in self.types.iter().enumerate().skip(1) {
                if t.name_off == 0 {
                    continue;
                }
                if let Ok(n) = self.name(t.name_off) {
                    map.entry(n.into()).or_default().push(id as TypeId);
                }
            }
            map
        })
    }

    /// Every type id named `name`, in id order.
    pub fn ids_by_name(&self, name: &str) -> &[TypeId] {
        self.name_index().get(name).map_or(&[], |v| v.as_slice())
    }

    /// The first type named `name` with kind `kind` (like `btf__find_by_name_kind`).
    pub fn find_by_name_kind(&self, name: &str, kind: Kind) -> Option<TypeId> {
        self.ids_by_name(name)
            .iter()
            .copied()
            .find(|&id| self.types[id as usize].kind() == kind)
    }

    /// Encodes this BTF back to its wire format (little-endian, header version 1, types
    /// then strings). Parsing the result gives back an equal `Btf`.
    pub fn encode(&self) -> Vec<u8> {
        builder::encode(&self.types[1..], &self.strings)
    }
}

#[cfg(test)]
mod tests;
