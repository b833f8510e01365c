//! Structural comparison of types across two BTF tables (for example a host's derived BTF
//! against the kernel's vmlinux BTF).

use std::collections::{HashSet, VecDeque};
use std::fmt::{self, Write as _};

use crate::Btf;
use crate::error::BtfError;
use crate::types::{Type, TypeId, TypeKind};

/// Which of the two compared tables an error is about.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Side {
    /// The first (`a`) table.
    Left,
    /// The second (`b`) table.
    Right,
}

impl fmt::Display for Side {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Side::Left => "left",
            Side::Right => "right",
        })
    }
}

/// Why two types are not structurally equal.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum CompareError {
    /// The types at `path` differ.
    #[error("at {path}: {what}\n  left  [{left_id}] {left}\n  right [{right_id}] {right}")]
    Mismatch {
        /// Where, from the compared roots: `bpf_dummy_ops.test_2 -> * -> (param 3)`.
        path: String,
        /// Id of the differing type on the left.
        left_id: TypeId,
        /// Id of the differing type on the right.
        right_id: TypeId,
        /// The left type, as bpftool's raw dump prints it.
        left: String,
        /// The right type, as bpftool's raw dump prints it.
        right: String,
        /// What differs.
        what: String,
    },
    /// A type could not be read (a dangling id or string offset).
    #[error("at {path}: {side} BTF is broken: {source}")]
    Btf {
        /// Where, from the compared roots.
        path: String,
        /// Which table.
        side: Side,
        /// The underlying error.
        source: BtfError,
    },
}

/// Checks that type `a_id` of `a` and type `b_id` of `b` describe the same C type,
/// following every reference, so that ids and string offsets may differ between the two
/// tables. Types are equal when, recursively:
///
/// - their kinds and names are equal (anonymous types have the name `""`);
/// - `INT`s have equal size, encoding, bit offset and bit count; `FLOAT`s equal size;
/// - pointers, `const`/`volatile`/`restrict`, type tags and typedefs refer to equal types
///   (typedefs are not looked through: `u32` and `unsigned int` differ);
/// - `ARRAY`s have equal lengths and element types. Index types are not compared: pahole
///   indexes by `int` and clang by `__ARRAY_SIZE_TYPE__`, and neither affects layout;
/// - `STRUCT`s and `UNION`s have equal sizes and the same members in the same order, with
///   equal names, bit offsets, bitfield sizes and types (the kind flag is only an
///   encoding choice, so effective offsets are compared, not raw ones);
/// - `ENUM`s and `ENUM64`s have equal sizes, signedness and enumerators (names, values);
/// - `FWD`s forward-declare the same kind;
/// - `FUNC_PROTO`s have equal return types and parameter types. Parameter names are
///   compared only when both are non-empty: clang and pahole leave the parameters of
///   function pointer types unnamed, while a Rust declaration may name them;
/// - `FUNC`s and `VAR`s have equal linkage and types; `DATASEC`s equal sizes and
///   variables; `DECL_TAG`s equal component indexes and targets.
///
/// Recursive types are compared coinductively: a pair already under comparison is taken
/// as equal. The first difference found, nearest to the roots, is returned with its path.
pub fn structurally_equal(
    a: &Btf,
    a_id: TypeId,
    b: &Btf,
    b_id: TypeId,
) -> Result<(), CompareError> {
    let root = match a.type_name(a_id) {
        Ok(n) if !n.is_empty() => n.to_owned(),
        _ => format!("[{a_id}]"),
    };
    let mut cmp = Comparer {
        a,
        b,
        seen: HashSet::new(),
        queue: VecDeque::new(),
    };
    cmp.push(a_id, b_id, root);
    while let Some((x, y, path)) = cmp.queue.pop_front() {
        cmp.compare(x, y, &path)?;
    }
    Ok(())
}

struct Comparer<'a> {
    a: &'a Btf,
    b: &'a Btf,
    seen: HashSet<(TypeId, TypeId)>,
    queue: VecDeque<(TypeId, TypeId, String)>,
}

impl Comparer<'_> {
    fn push(&mut self, x: TypeId, y: TypeId, path: String) {
        if self.seen.insert((x, y)) {
            self.queue.push_back((x, y, path));
        }
    }

    fn read<'b>(
        &self,
        btf: &'b Btf,
        side: Side,
        id: TypeId,
        path: &str,
    ) -> Result<&'b Type, CompareError> {
        btf.ty(id).map_err(|source| CompareError::Btf {
            path: path.to_owned(),
            side,
            source,
        })
    }

    fn str<'b>(
        &self,
        btf: &'b Btf,
        side: Side,
        off: u32,
        path: &str,
    ) -> Result<&'b str, CompareError> {
        btf.name(off).map_err(|source| CompareError::Btf {
            path: path.to_owned(),
            side,
            source,
        })
    }

    fn mismatch(&self, x: TypeId, y: TypeId, path: &str, what: impl Into<String>) -> CompareError {
        CompareError::Mismatch {
            path: path.to_owned(),
            left_id: x,
            right_id: y,
            left: describe(self.a, x),
            right: describe(self.b, y),
            what: what.into(),
        }
    }

    fn compare(&mut self, x: TypeId, y: TypeId, path: &str) -> Result<(), CompareError> {
        let (a, b) = (self.a, self.b);
        let tx = self.read(a, Side::Left, x, path)?;
        let ty = self.read(b, Side::Right, y, path)?;
        if tx.kind() != ty.kind() {
            return Err(self.mismatch(x, y, path, "kinds differ"));
        }
        let nx = self.str(a, Side::Left, tx.name_off, path)?;
        let ny = self.str(b, Side::Right, ty.name_off, path)?;
        if nx != ny {
            return Err(self.mismatch(x, y, path, "names differ"));
        }
        match (&tx.kind, &ty.kind) {
            (TypeKind::Void, TypeKind::Void) => {}
            (
                TypeKind::Int {
                    size: s1,
                    encoding: e1,
                    offset: o1,
                    bits: b1,
                },
                TypeKind::Int {
                    size: s2,
                    encoding: e2,
                    offset: o2,
                    bits: b2,
                },
            ) => {
                if s1 != s2 {
                    return Err(self.mismatch(x, y, path, "sizes differ"));
                }
                if e1 != e2 {
                    return Err(self.mismatch(x, y, path, "encodings differ"));
                }
                if (o1, b1) != (o2, b2) {
                    return Err(self.mismatch(x, y, path, "bit offsets or bit counts differ"));
                }
            }
            (TypeKind::Float { size: s1 }, TypeKind::Float { size: s2 }) => {
                if s1 != s2 {
                    return Err(self.mismatch(x, y, path, "sizes differ"));
                }
            }
            (TypeKind::Ptr { target: t1 }, TypeKind::Ptr { target: t2 }) => {
                self.push(*t1, *t2, format!("{path} -> *"));
            }
            (TypeKind::Typedef { target: t1 }, TypeKind::Typedef { target: t2 })
            | (TypeKind::Const { target: t1 }, TypeKind::Const { target: t2 })
            | (TypeKind::Volatile { target: t1 }, TypeKind::Volatile { target: t2 })
            | (TypeKind::Restrict { target: t1 }, TypeKind::Restrict { target: t2 }) => {
                let step = tx.kind().as_str().to_ascii_lowercase();
                self.push(*t1, *t2, format!("{path} -> {step}"));
            }
            (
                TypeKind::TypeTag {
                    target: t1,
                    kflag: k1,
                },
                TypeKind::TypeTag {
                    target: t2,
                    kflag: k2,
                },
            ) => {
                if k1 != k2 {
                    return Err(self.mismatch(x, y, path, "kind flags differ"));
                }
                self.push(*t1, *t2, format!("{path} -> type_tag"));
            }
            (
                TypeKind::Array {
                    elem: e1, len: l1, ..
                },
                TypeKind::Array {
                    elem: e2, len: l2, ..
                },
            ) => {
                if l1 != l2 {
                    return Err(self.mismatch(x, y, path, "array lengths differ"));
                }
                self.push(*e1, *e2, format!("{path}[]"));
            }
            (TypeKind::Struct(c1), TypeKind::Struct(c2))
            | (TypeKind::Union(c1), TypeKind::Union(c2)) => {
                if c1.size != c2.size {
                    return Err(self.mismatch(x, y, path, "sizes differ"));
                }
                if c1.members.len() != c2.members.len() {
                    return Err(self.mismatch(x, y, path, "member counts differ"));
                }
                for (i, (m1, m2)) in c1.members.iter().zip(&c2.members).enumerate() {
                    let n1 = self.str(a, Side::Left, m1.name_off, path)?;
                    let n2 = self.str(b, Side::Right, m2.name_off, path)?;
                    if n1 != n2 {
                        return Err(self.mismatch(
                            x,
                            y,
                            path,
                            format!("member {i} is '{n1}' on the left, '{n2}' on the right"),
                        ));
                    }
                    let (o1, o2) = (m1.bit_offset(c1.kflag), m2.bit_offset(c2.kflag));
                    if o1 != o2 {
                        return Err(self.mismatch(
                            x,
                            y,
                            path,
                            format!("member '{n1}' is at bit {o1} on the left, {o2} on the right"),
                        ));
                    }
                    let (f1, f2) = (m1.bitfield_size(c1.kflag), m2.bitfield_size(c2.kflag));
                    if f1 != f2 {
                        return Err(self.mismatch(
                            x,
                            y,
                            path,
                            format!(
                                "member '{n1}' has bitfield size {f1} on the left, {f2} on the right"
                            ),
                        ));
                    }
                    let step = if n1.is_empty() {
                        format!("(member {i})")
                    } else {
                        n1.to_owned()
                    };
                    self.push(m1.ty, m2.ty, format!("{path}.{step}"));
                }
            }
            (TypeKind::Enum(e1), TypeKind::Enum(e2))
            | (TypeKind::Enum64(e1), TypeKind::Enum64(e2)) => {
                if e1.size != e2.size {
                    return Err(self.mismatch(x, y, path, "sizes differ"));
                }
                if e1.signed != e2.signed {
                    return Err(self.mismatch(x, y, path, "signedness differs"));
                }
                if e1.values.len() != e2.values.len() {
                    return Err(self.mismatch(x, y, path, "enumerator counts differ"));
                }
                for (v1, v2) in e1.values.iter().zip(&e2.values) {
                    let n1 = self.str(a, Side::Left, v1.name_off, path)?;
                    let n2 = self.str(b, Side::Right, v2.name_off, path)?;
                    if n1 != n2 || v1.value != v2.value {
                        return Err(self.mismatch(
                            x,
                            y,
                            path,
                            format!(
                                "enumerator {n1} = {} on the left, {n2} = {} on the right",
                                v1.value, v2.value
                            ),
                        ));
                    }
                }
            }
            (TypeKind::Fwd { union: u1 }, TypeKind::Fwd { union: u2 }) => {
                if u1 != u2 {
                    return Err(self.mismatch(
                        x,
                        y,
                        path,
                        "forward declarations of different kinds",
                    ));
                }
            }
            (
                TypeKind::FuncProto {
                    ret: r1,
                    params: p1,
                },
                TypeKind::FuncProto {
                    ret: r2,
                    params: p2,
                },
            ) => {
                if p1.len() != p2.len() {
                    return Err(self.mismatch(x, y, path, "parameter counts differ"));
                }
                for (i, (q1, q2)) in p1.iter().zip(p2).enumerate() {
                    let n1 = self.str(a, Side::Left, q1.name_off, path)?;
                    let n2 = self.str(b, Side::Right, q2.name_off, path)?;
                    if !n1.is_empty() && !n2.is_empty() && n1 != n2 {
                        return Err(self.mismatch(
                            x,
                            y,
                            path,
                            format!("parameter {i} is '{n1}' on the left, '{n2}' on the right"),
                        ));
                    }
                    let name = if n1.is_empty() { n2 } else { n1 };
                    self.push(q1.ty, q2.ty, format!("{path} -> (param {i} '{name}')"));
                }
                self.push(*r1, *r2, format!("{path} -> (return)"));
            }
            (
                TypeKind::Func {
                    proto: f1,
                    linkage: l1,
                },
                TypeKind::Func {
                    proto: f2,
                    linkage: l2,
                },
            )
            | (
                TypeKind::Var {
                    ty: f1,
                    linkage: l1,
                },
                TypeKind::Var {
                    ty: f2,
                    linkage: l2,
                },
            ) => {
                if l1 != l2 {
                    return Err(self.mismatch(x, y, path, "linkages differ"));
                }
                self.push(*f1, *f2, format!("{path} -> type"));
            }
            (
                TypeKind::Datasec { size: s1, vars: v1 },
                TypeKind::Datasec { size: s2, vars: v2 },
            ) => {
                if s1 != s2 || v1.len() != v2.len() {
                    return Err(self.mismatch(x, y, path, "sizes or variable counts differ"));
                }
                for (i, (w1, w2)) in v1.iter().zip(v2).enumerate() {
                    if (w1.offset, w1.size) != (w2.offset, w2.size) {
                        return Err(self.mismatch(
                            x,
                            y,
                            path,
                            format!("variable {i} has a different offset or size"),
                        ));
                    }
                    self.push(w1.ty, w2.ty, format!("{path} -> (var {i})"));
                }
            }
            (
                TypeKind::DeclTag {
                    target: t1,
                    component_idx: c1,
                    kflag: k1,
                },
                TypeKind::DeclTag {
                    target: t2,
                    component_idx: c2,
                    kflag: k2,
                },
            ) => {
                if (c1, k1) != (c2, k2) {
                    return Err(self.mismatch(x, y, path, "component index or kind flag differ"));
                }
                self.push(*t1, *t2, format!("{path} -> decl_tag"));
            }
            // Kinds were checked equal above, so this arm is never reached.
            _ => return Err(self.mismatch(x, y, path, "kinds differ")),
        }
        Ok(())
    }
}

/// One type in the style of bpftool's raw dump (`STRUCT 'name' size=4 vlen=1`).
fn describe(btf: &Btf, id: TypeId) -> String {
    let Ok(t) = btf.ty(id) else {
        return format!("<no type {id}>");
    };
    let name = match btf.name(t.name_off) {
        Ok("") => "(anon)".to_owned(),
        Ok(n) => n.to_owned(),
        Err(_) => format!("<bad name offset {}>", t.name_off),
    };
    let mut s = format!("{} '{name}'", t.kind().as_str());
    // Writing to a String cannot fail.
    let _ = match &t.kind {
        TypeKind::Void => Ok(()),
        TypeKind::Int {
            size,
            encoding,
            offset,
            bits,
        } => write!(
            s,
            " size={size} bits_offset={offset} nr_bits={bits} encoding={}",
            encoding_name(*encoding)
        ),
        TypeKind::Float { size } => write!(s, " size={size}"),
        TypeKind::Array { elem, index, len } => {
            write!(s, " type_id={elem} index_type_id={index} nr_elems={len}")
        }
        TypeKind::Struct(c) | TypeKind::Union(c) => {
            let _ = write!(s, " size={} vlen={}", c.size, c.members.len());
            for m in &c.members {
                let n = btf.name(m.name_off).unwrap_or("?");
                let _ = write!(
                    s,
                    " '{n}' type_id={} bits_offset={}",
                    m.ty,
                    m.bit_offset(c.kflag)
                );
                let bf = m.bitfield_size(c.kflag);
                if bf != 0 {
                    let _ = write!(s, " bitfield_size={bf}");
                }
            }
            Ok(())
        }
        TypeKind::Enum(e) | TypeKind::Enum64(e) => {
            let _ = write!(
                s,
                " encoding={} size={} vlen={}",
                if e.signed { "SIGNED" } else { "UNSIGNED" },
                e.size,
                e.values.len()
            );
            for v in &e.values {
                let n = btf.name(v.name_off).unwrap_or("?");
                let _ = write!(s, " '{n}' val={}", v.value);
            }
            Ok(())
        }
        TypeKind::Fwd { union } => {
            write!(s, " fwd_kind={}", if *union { "union" } else { "struct" })
        }
        TypeKind::FuncProto { ret, params } => {
            let _ = write!(s, " ret_type_id={ret} vlen={}", params.len());
            for p in params {
                let n = match btf.name(p.name_off) {
                    Ok("") => "(anon)",
                    Ok(n) => n,
                    Err(_) => "?",
                };
                let _ = write!(s, " '{n}' type_id={}", p.ty);
            }
            Ok(())
        }
        TypeKind::Func { proto, linkage } | TypeKind::Var { ty: proto, linkage } => {
            write!(s, " type_id={proto} linkage={linkage:?}")
        }
        TypeKind::Datasec { size, vars } => write!(s, " size={size} vlen={}", vars.len()),
        TypeKind::DeclTag {
            target,
            component_idx,
            ..
        } => write!(s, " type_id={target} component_idx={component_idx}"),
        TypeKind::Ptr { target }
        | TypeKind::Typedef { target }
        | TypeKind::Volatile { target }
        | TypeKind::Const { target }
        | TypeKind::Restrict { target }
        | TypeKind::TypeTag { target, .. } => write!(s, " type_id={target}"),
    };
    s
}

fn encoding_name(e: u8) -> String {
    let mut parts = Vec::new();
    if e & crate::types::INT_SIGNED != 0 {
        parts.push("SIGNED");
    }
    if e & crate::types::INT_CHAR != 0 {
        parts.push("CHAR");
    }
    if e & crate::types::INT_BOOL != 0 {
        parts.push("BOOL");
    }
    if parts.is_empty() {
        "(none)".to_owned()
    } else {
        parts.join("|")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{BtfBuilder, INT_SIGNED};

    fn dummy(a3_name: &str, a3_enc: u8, param_name: &str) -> (Btf, TypeId) {
        let mut b = BtfBuilder::new();
        let int = b.add_int("int", 4, INT_SIGNED);
        let ch = b.add_int(a3_name, 1, a3_enc);
        let state = b.add_struct("state", 4, &[("val", int, 0)]);
        let sp = b.add_ptr(state);
        let proto = b.add_func_proto(int, &[(param_name, sp), ("", ch)]);
        let fp = b.add_ptr(proto);
        let ops = b.add_struct("ops", 16, &[("f", fp, 0), ("g", fp, 64)]);
        (b.build(), ops)
    }

    #[test]
    fn equal_despite_ids_and_param_names() {
        let (a, ai) = dummy("char", 0, "cb");
        let (b, bi) = dummy("char", 0, "");
        assert_eq!(structurally_equal(&a, ai, &b, bi), Ok(()));
    }

    #[test]
    fn mismatch_names_the_path_and_both_types() {
        let (a, ai) = dummy("char", 0, "cb");
        let (b, bi) = dummy("signed char", INT_SIGNED, "cb");
        let err = structurally_equal(&a, ai, &b, bi).unwrap_err();
        let CompareError::Mismatch {
            ref path, ref what, ..
        } = err
        else {
            panic!("{err:?}");
        };
        assert_eq!(path, "ops.f -> * -> (param 1 '')");
        assert_eq!(what, "names differ");
        let msg = err.to_string();
        assert!(msg.contains("INT 'char'"), "{msg}");
        assert!(msg.contains("INT 'signed char'"), "{msg}");
    }

    #[test]
    fn differing_param_names_mismatch_when_both_named() {
        let (a, ai) = dummy("char", 0, "cb");
        let (b, bi) = dummy("char", 0, "ctx");
        let err = structurally_equal(&a, ai, &b, bi).unwrap_err();
        assert!(matches!(err, CompareError::Mismatch { ref path, .. } if path == "ops.f -> *"));
    }

    #[test]
    fn recursive_types_terminate() {
        let mut b = BtfBuilder::new();
        let node = b.reserve();
        let p = b.add_ptr(node);
        let int = b.add_int("int", 4, INT_SIGNED);
        let name = b.add_string("node");
        let next = b.add_string("next");
        let v = b.add_string("v");
        b.set(
            node,
            Type {
                name_off: name,
                kind: TypeKind::Struct(crate::Composite {
                    size: 16,
                    kflag: false,
                    members: vec![
                        crate::Member {
                            name_off: next,
                            ty: p,
                            offset: 0,
                        },
                        crate::Member {
                            name_off: v,
                            ty: int,
                            offset: 64,
                        },
                    ],
                }),
            },
        );
        let btf = b.build();
        assert_eq!(structurally_equal(&btf, node, &btf, node), Ok(()));
        let err = structurally_equal(&btf, node, &btf, p).unwrap_err();
        assert!(matches!(err, CompareError::Mismatch { ref what, .. } if what == "kinds differ"));
    }

    #[test]
    fn dangling_ids_are_errors_not_panics() {
        let mut b = BtfBuilder::new();
        let p = b.add_ptr(99);
        let btf = b.build();
        let err = structurally_equal(&btf, p, &btf, p).unwrap_err();
        assert!(matches!(
            err,
            CompareError::Btf {
                side: Side::Left,
                source: BtfError::NoSuchType { id: 99, .. },
                ..
            }
        ));
    }
}
