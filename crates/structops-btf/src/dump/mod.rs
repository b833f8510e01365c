//! Dumping a [`Btf`](crate::Btf) as text: bpftool's `raw` listing (plain and JSON) and a compilable C
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
    /// The C dump of this BTF would take more steps than its size justifies (hostile
    /// BTF whose declarations expand exponentially).
    #[error("BTF type [{id}]: C dump exceeds its budget of {budget} steps")]
    TooComplex {
        /// The type being written when the budget ran out.
        id: TypeId,
        /// The budget.
        budget: u64,
    },
    /// One type's C definition would exceed the output limit.
    #[error("BTF type [{id}]: C definition exceeds {limit} bytes")]
    TooLarge {
        /// The type being written.
        id: TypeId,
        /// The limit in bytes.
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::types::*;
    use crate::{Btf, BtfBuilder};
    use proptest::prelude::*;

    /// A generated type: raw kind, name index, target, size, and (name index, type,
    /// offset or value) records.
    type Spec = (u8, u32, u32, u32, Vec<(u8, u32, u32)>);

    /// Any type, with references anywhere in `0..n + 2` (so some dangle), names drawn
    /// from a small pool (so some repeat), and arbitrary sizes and offsets.
    fn any_type(n: u32) -> impl Strategy<Value = Spec> {
        (
            1u8..=19,
            0u32..8,
            0u32..n + 2,
            0u32..4096,
            proptest::collection::vec((0u8..8, 0u32..n + 2, 0u32..1 << 26), 0..5),
        )
    }

    fn build(spec: &[Spec]) -> Btf {
        const NAMES: [&str; 8] = ["", "a", "b", "a", "int", "__builtin_va_list", "x\\y", "t"];
        let mut b = BtfBuilder::new();
        let names: Vec<u32> = NAMES.iter().map(|n| b.add_string(n)).collect();
        let name = |i: u8| names[i as usize % names.len()];
        for (kind, name_ix, target, size, recs) in spec {
            let members = recs
                .iter()
                .map(|&(nm, ty, offset)| Member {
                    name_off: name(nm),
                    ty,
                    offset,
                })
                .collect();
            let values: Vec<Enumerator> = recs
                .iter()
                .map(|&(nm, _, v)| Enumerator {
                    name_off: name(nm),
                    value: u64::from(v) << (v % 40),
                })
                .collect();
            let body = |values| EnumBody {
                size: size % 9,
                signed: size % 2 == 1,
                values,
            };
            let kind = match Kind::from_raw(u32::from(*kind)).unwrap_or(Kind::Int) {
                Kind::Void | Kind::Int => TypeKind::Int {
                    size: size % 17,
                    encoding: (size % 5) as u8,
                    offset: (size % 3) as u8,
                    bits: (size % 129) as u8,
                },
                Kind::Ptr => TypeKind::Ptr { target: *target },
                Kind::Array => TypeKind::Array {
                    elem: *target,
                    index: 1,
                    len: *size,
                },
                Kind::Struct => TypeKind::Struct(Composite {
                    size: *size,
                    kflag: size % 2 == 0,
                    members,
                }),
                Kind::Union => TypeKind::Union(Composite {
                    size: *size,
                    kflag: size % 2 == 0,
                    members,
                }),
                Kind::Enum => TypeKind::Enum(body(values)),
                Kind::Enum64 => TypeKind::Enum64(body(values)),
                Kind::Fwd => TypeKind::Fwd {
                    union: size % 2 == 0,
                },
                Kind::Typedef => TypeKind::Typedef { target: *target },
                Kind::Volatile => TypeKind::Volatile { target: *target },
                Kind::Const => TypeKind::Const { target: *target },
                Kind::Restrict => TypeKind::Restrict { target: *target },
                Kind::Func => TypeKind::Func {
                    proto: *target,
                    linkage: Linkage::from_raw(size % 4),
                },
                Kind::FuncProto => TypeKind::FuncProto {
                    ret: *target,
                    params: recs
                        .iter()
                        .map(|&(nm, ty, _)| Param {
                            name_off: name(nm),
                            ty,
                        })
                        .collect(),
                },
                Kind::Var => TypeKind::Var {
                    ty: *target,
                    linkage: Linkage::from_raw(size % 4),
                },
                Kind::Datasec => TypeKind::Datasec {
                    size: *size,
                    vars: recs
                        .iter()
                        .map(|&(_, ty, offset)| VarSecInfo {
                            ty,
                            offset,
                            size: 4,
                        })
                        .collect(),
                },
                Kind::Float => TypeKind::Float { size: size % 17 },
                Kind::DeclTag => TypeKind::DeclTag {
                    target: *target,
                    component_idx: *size as i32 - 1,
                    kflag: false,
                },
                Kind::TypeTag => TypeKind::TypeTag {
                    target: *target,
                    kflag: false,
                },
            };
            b.add_type(Type {
                name_off: name(*name_ix as u8),
                kind,
            });
        }
        b.build()
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(512))]

        /// Arbitrary (dangling, cyclic, nonsensical) type tables: every dumper returns,
        /// with output or a typed error, and never panics.
        #[test]
        fn dumpers_never_panic(spec in (1u32..24).prop_flat_map(|n| proptest::collection::vec(any_type(n), n as usize))) {
            let btf = build(&spec);
            let mut text = Vec::new();
            raw(&btf, &mut text).unwrap();
            let lines = text.split(|&c| c == b'\n').filter(|l| l.first() == Some(&b'[')).count();
            prop_assert_eq!(lines, spec.len());
            let mut json = Vec::new();
            raw_json(&btf, true, &mut json).unwrap();
            prop_assert!(json.ends_with(b"}\n"), "json ends badly");
            let mut header = Vec::new();
            match c_header(&btf, &mut header) {
                Ok(()) => prop_assert!(header.ends_with(b"#endif /* __VMLINUX_H__ */\n"), "header ends badly"),
                Err(e) => prop_assert!(!matches!(e, DumpError::Io { .. }), "{e}"),
            }
        }
    }

    /// Function prototypes whose parameters point, through distinct pointers, at the
    /// next prototype: C spells such a declaration out in full, which doubles at every
    /// level. The dump stops at its budget instead of running for ever.
    #[test]
    fn exponential_declarations_hit_the_budget() {
        let mut b = BtfBuilder::new();
        let int = b.add_int("int", 4, crate::INT_SIGNED);
        let mut proto = b.add_func_proto(int, &[("", int)]);
        for _ in 0..80 {
            let p1 = b.add_ptr(proto);
            let p2 = b.add_ptr(proto);
            proto = b.add_func_proto(int, &[("", p1), ("", p2)]);
        }
        let fp = b.add_ptr(proto);
        b.add_struct("s", 8, &[("f", fp, 0)]);
        let btf = b.build();
        let err = c_header(&btf, &mut Vec::new()).unwrap_err();
        assert!(matches!(err, DumpError::TooComplex { .. }), "{err}");
    }

    /// A struct with a 4 GiB hole writes one padding array, not half a billion lines.
    #[test]
    fn huge_gaps_become_arrays() {
        let mut b = BtfBuilder::new();
        let char_ = b.add_int("char", 1, crate::INT_CHAR);
        b.add_bitfield_composite(
            false,
            "holey",
            u32::MAX,
            &[("a", char_, 3, 2), ("z", char_, 0x00ff_fff0, 3)],
        );
        let btf = b.build();
        let mut out = Vec::new();
        c_header(&btf, &mut out).unwrap();
        let text = String::from_utf8(out).unwrap();
        assert!(text.len() < 4096, "{text}");
        assert!(
            text.contains("\tchar: 3;\n\tchar a: 2;\n\tchar: 3;\n\tchar __pad_2_0[2097149];\n"),
            "{text}"
        );
        assert!(
            text.contains("\tchar z: 3;\n\tchar: 5;\n\tchar __pad_2_1[4292870144];\n"),
            "{text}"
        );
    }

    #[test]
    fn raw_void_and_pretty_empty() {
        let btf = BtfBuilder::new().build();
        let mut out = Vec::new();
        raw_json(&btf, true, &mut out).unwrap();
        // bpftool's writer: an empty array stays on the name's line.
        assert_eq!(String::from_utf8(out).unwrap(), "{\n    \"types\": []\n}\n");
        let mut out = Vec::new();
        raw(&btf, &mut out).unwrap();
        assert!(out.is_empty());
    }
}
