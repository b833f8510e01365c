//! Dumping a [`Btf`] as text: bpftool's `raw` listing (plain and JSON) and a compilable C
//! header (`format c`).
//!
//! - [`raw`] and [`raw_json`] print every type exactly as `bpftool btf dump file FILE
//!   format raw` (and `bpftool -j ...`) of bpftool 7.1 do, byte for byte, including its
//!   quirks (`(anon)` names, sign-extended `ENUM` values in JSON, `LL`/`ULL` suffixes on
//!   `ENUM64` values). [`raw_ids`] prints chosen ids only, as bpftool does for a map's key
//!   and value.
//! - [`c_header`] writes a C header defining every type, ordered so that each type is
//!   defined before it is embedded, in the way libbpf's `btf_dump` does for `bpftool btf
//!   dump file vmlinux format c`. [`c_header_types`] writes only some types and what they
//!   need, and [`CDumper`] gives step-by-step control.
//!
//! Nothing here patches the BTF: an object's `.BTF` section is printed as it is stored.
//! bpftool does the same (`btf__parse_elf` hands the section to `btf__new` without the
//! `DATASEC` size and offset fix-ups that only `bpf_object__open` performs), so dumping a
//! section extracted from an object matches `bpftool btf dump file OBJ.o format raw`.
//!
//! ```
//! use structops_btf::{BtfBuilder, INT_SIGNED, dump};
//!
//! let mut b = BtfBuilder::new();
//! let int = b.add_int("int", 4, INT_SIGNED);
//! b.add_struct("point", 8, &[("x", int, 0), ("y", int, 32)]);
//! let btf = b.build();
//!
//! let mut text = Vec::new();
//! dump::raw(&btf, &mut text).unwrap();
//! assert_eq!(
//!     String::from_utf8(text).unwrap(),
//!     "[1] INT 'int' size=4 bits_offset=0 nr_bits=32 encoding=SIGNED\n\
//!      [2] STRUCT 'point' size=8 vlen=2\n\
//!      \t'x' type_id=1 bits_offset=0\n\
//!      \t'y' type_id=1 bits_offset=32\n"
//! );
//!
//! let mut header = Vec::new();
//! dump::c_header(&btf, &mut header).unwrap();
//! let header = String::from_utf8(header).unwrap();
//! assert!(header.contains("struct point {\n\tint x;\n\tint y;\n};\n"));
//! ```

mod c;
mod fmt;
mod raw;

pub use c::{CDumper, c_header, c_header_types};
pub use raw::{RawFormat, raw, raw_ids, raw_json};

use crate::error::BtfError;
use crate::types::TypeId;

/// An error while dumping BTF.
#[derive(Debug, thiserror::Error)]
pub enum DumpError {
    /// Writing the output failed.
    #[error("writing the BTF dump failed: {source}")]
    Io {
        /// The writer's error.
        #[from]
        source: std::io::Error,
    },
    /// A type id given to dump does not exist.
    #[error("BTF type id {id} out of range (have {count} types)")]
    NoSuchType {
        /// The id asked for.
        id: TypeId,
        /// Number of ids, including `void`.
        count: u32,
    },
    /// A type's name (or a member's, parameter's or enumerator's) could not be read.
    #[error("BTF type [{id}]: {source}")]
    Name {
        /// The type whose name, or whose component's name, is bad.
        id: TypeId,
        /// What is wrong with it.
        source: BtfError,
    },
    /// A chain of references is cyclic or nests deeper than the dumper follows.
    #[error("BTF type [{id}]: {what} nests deeper than {limit} levels or is cyclic")]
    TooDeep {
        /// Where the chain was when the limit was hit.
        id: TypeId,
        /// Which walk hit it.
        what: &'static str,
        /// The limit.
        limit: usize,
    },
    /// Types that must each be defined before the other (a loop of embedded types or of
    /// anonymous types), which C cannot express.
    #[error("BTF type [{id}]: unsatisfiable type cycle")]
    Cycle {
        /// A type on the cycle.
        id: TypeId,
    },
}
