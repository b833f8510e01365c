//! Differential test of `Btf::parse_for_load` against the running kernel's
//! `BPF_BTF_LOAD`: valid blobs of every kind, hand-made invalid blobs (one or more per
//! kernel check), and seeded random mutations. Accept/reject, errno and the full level-1
//! log must match.

mod common;

use common::*;
use structops_btf::{Btf, BtfBuilder, INT_CHAR, INT_SIGNED, Linkage, VarSecInfo};

const INT: u32 = 1;
const PTR: u32 = 2;
const ARRAY: u32 = 3;
const STRUCT: u32 = 4;
const UNION: u32 = 5;
const ENUM: u32 = 6;
const FWD: u32 = 7;
const TYPEDEF: u32 = 8;
const VOLATILE: u32 = 9;
const CONST: u32 = 10;
const RESTRICT: u32 = 11;
const FUNC: u32 = 12;
const FUNC_PROTO: u32 = 13;
const VAR: u32 = 14;
const DATASEC: u32 = 15;
const FLOAT: u32 = 16;
const DECL_TAG: u32 = 17;
const TYPE_TAG: u32 = 18;
const ENUM64: u32 = 19;

const LOG_SIZE: usize = 1 << 22;

/// The string table the hand-made cases use.
const STRS: &[u8] =
    b"\0int\0char\0foo\0bar\0x\0y\0.data\0tag\0bad name\x001abc\0a.b\0sec\x01\0u8\0long\0\xc0\xe9\0";

/// Offset of `s` in [`STRS`].
fn s(s: impl AsRef<[u8]>) -> u32 {
    let s = s.as_ref();
    let needle: Vec<u8> = [&[0u8][..], s, &[0u8][..]].concat();
    STRS.windows(needle.len())
        .position(|w| w == needle.as_slice())
        .map(|p| p as u32 + 1)
        .unwrap_or_else(|| panic!("string {s:?} not in table"))
}

fn int(name: u32, size: u32, enc: u32, off: u32, bits: u32) -> Raw {
    rec(name, INT, 0, false, size, &[enc << 24 | off << 16 | bits])
}

/// `[1] int` (signed, 4 bytes), then `more`.
fn base(more: Vec<Raw>) -> Vec<u8> {
    let mut v = vec![int(s("int"), 4, 1, 0, 32)];
    v.extend(more);
    blob(&v, STRS)
}

/// A blob from header fields and a body.
fn hdr_blob(magic: u16, version: u8, flags: u8, words: [u32; 5], body: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    out.extend_from_slice(&magic.to_le_bytes());
    out.push(version);
    out.push(flags);
    for w in words {
        out.extend_from_slice(&w.to_le_bytes());
    }
    out.extend_from_slice(body);
    out
}

/// Valid blobs built with `BtfBuilder`, covering every kind.
fn valid_blobs() -> Vec<(String, Vec<u8>)> {
    let mut out = Vec::new();
    let mut b = BtfBuilder::new();
    let int = b.add_int("int", 4, INT_SIGNED);
    let uint = b.add_int("unsigned int", 4, 0);
    let chr = b.add_int("char", 1, INT_CHAR);
    let u128_ = b.add_int("__int128 unsigned", 16, 0);
    let boolean = b.add_int("_Bool", 1, structops_btf::INT_BOOL);
    let long = b.add_int("long", 8, INT_SIGNED);
    let node = b.reserve();
    let node_ptr = b.add_ptr(node);
    let carr = b.add_array(chr, int, 16);
    let inner = b.add_union("", 8, &[("u", uint, 0), ("l", long, 0)]);
    let e32 = b.add_enum(
        "color",
        4,
        false,
        &[("RED", 0), ("GREEN", 1), ("BLUE", 0xffff_fffe)],
    );
    let e64 = b.add_enum("big", 8, true, &[("NEG", -5), ("HUGE", 1 << 40)]);
    let dbl = b.add_float("double", 8);
    let bits = b.add_bitfield_composite(
        false,
        "flags",
        8,
        &[
            ("a", uint, 0, 3),
            ("b", uint, 3, 5),
            ("c", e32, 8, 4),
            ("d", uint, 32, 0),
        ],
    );
    let body = structops_btf::Type {
        name_off: b.add_string("node"),
        kind: structops_btf::TypeKind::Struct(structops_btf::Composite {
            size: 88,
            kflag: false,
            members: vec![
                structops_btf::Member {
                    name_off: b.add_string("next"),
                    ty: node_ptr,
                    offset: 0,
                },
                structops_btf::Member {
                    name_off: b.add_string("name"),
                    ty: carr,
                    offset: 64,
                },
                structops_btf::Member {
                    name_off: 0,
                    ty: inner,
                    offset: 192,
                },
                structops_btf::Member {
                    name_off: b.add_string("color"),
                    ty: e32,
                    offset: 256,
                },
                structops_btf::Member {
                    name_off: b.add_string("big"),
                    ty: e64,
                    offset: 320,
                },
                structops_btf::Member {
                    name_off: b.add_string("d"),
                    ty: dbl,
                    offset: 384,
                },
                structops_btf::Member {
                    name_off: b.add_string("f"),
                    ty: bits,
                    offset: 448,
                },
                structops_btf::Member {
                    name_off: b.add_string("wide"),
                    ty: u128_,
                    offset: 512,
                },
                structops_btf::Member {
                    name_off: b.add_string("ok"),
                    ty: boolean,
                    offset: 640,
                },
            ],
        }),
    };
    b.set(node, body);
    let fwd = b.add_fwd("opaque", false);
    let fwd_u = b.add_fwd("opaque_u", true);
    let fwd_ptr = b.add_ptr(fwd);
    let _ = b.add_ptr(fwd_u);
    let cint = b.add_const(int);
    let vint = b.add_volatile(cint);
    let rptr = b.add_type(structops_btf::Type {
        name_off: 0,
        kind: structops_btf::TypeKind::Restrict { target: node_ptr },
    });
    let td = b.add_typedef("node_t", node);
    let tag = b.add_type_tag("user", int);
    let tag_ptr = b.add_ptr(tag);
    let proto = b.add_func_proto(int, &[("n", node_ptr), ("x", vint), ("r", rptr)]);
    let vproto = b.add_func_proto(0, &[("fmt", fwd_ptr), ("", 0)]);
    let fptr = b.add_ptr(proto);
    let ops = b.add_struct("ops", 16, &[("f", fptr, 0), ("t", tag_ptr, 64)]);
    let f = b.add_func("do_thing", proto, Linkage::Global);
    let g = b.add_func("do_va", vproto, Linkage::Static);
    let v1 = b.add_var("counter", int, Linkage::Global);
    let v2 = b.add_var("the_node", td, Linkage::Static);
    let v3 = b.add_var("the_ops", ops, Linkage::Global);
    b.add_datasec(
        ".data",
        120,
        &[
            VarSecInfo {
                ty: v1,
                offset: 0,
                size: 4,
            },
            VarSecInfo {
                ty: v2,
                offset: 8,
                size: 88,
            },
            VarSecInfo {
                ty: v3,
                offset: 96,
                size: 16,
            },
        ],
    );
    b.add_decl_tag("hot", f, -1);
    b.add_decl_tag("nonnull", f, 0);
    b.add_decl_tag("field", node, 1);
    b.add_decl_tag("var_tag", v1, -1);
    b.add_decl_tag("td_tag", td, -1);
    b.add_decl_tag("va", g, -1);
    let _ = b.add_array(node, int, 2);
    let _ = b.add_array(carr, int, 0);
    out.push(("every kind".to_string(), b.encode()));

    // Small focused ones.
    let mut b = BtfBuilder::new();
    let i = b.add_int("int", 4, INT_SIGNED);
    b.add_typedef("void_t", 0);
    let p = b.add_ptr(0);
    b.add_const(p);
    b.add_volatile(0);
    let _ = i;
    out.push(("void modifiers".to_string(), b.encode()));

    let mut b = BtfBuilder::new();
    let s = b.reserve();
    let p = b.add_ptr(s);
    let t = b.add_typedef("list_t", p);
    let body = structops_btf::Type {
        name_off: b.add_string("list"),
        kind: structops_btf::TypeKind::Struct(structops_btf::Composite {
            size: 16,
            kflag: false,
            members: vec![
                structops_btf::Member {
                    name_off: b.add_string("next"),
                    ty: t,
                    offset: 0,
                },
                structops_btf::Member {
                    name_off: b.add_string("prev"),
                    ty: p,
                    offset: 64,
                },
            ],
        }),
    };
    b.set(s, body);
    out.push(("self-referential list".to_string(), b.encode()));

    // A chain of 31 typedefs resolves (32 stack slots including the first).
    let mut b = BtfBuilder::new();
    let mut prev = b.add_int("int", 4, INT_SIGNED);
    for n in 0..20 {
        prev = b.add_typedef(&format!("t{n}"), prev);
    }
    out.push(("typedef chain".to_string(), b.encode()));

    let mut b = BtfBuilder::new();
    let i = b.add_int("int", 4, INT_SIGNED);
    let e = b.add_enum("small", 1, true, &[("M", -1)]);
    let e2 = b.add_enum("mid", 2, false, &[]);
    b.add_struct("s", 8, &[("a", e, 0), ("b", e2, 16), ("c", i, 32)]);
    b.add_float("half", 2);
    b.add_float("ldbl", 16);
    b.add_float("x87", 12);
    out.push(("enums and floats".to_string(), b.encode()));
    out
}

/// Hand-made invalid (and a few edge-valid) blobs, one or more per kernel check.
fn invalid_blobs() -> Vec<(String, Vec<u8>)> {
    let mut v: Vec<(String, Vec<u8>)> = Vec::new();
    let mut add = |name: &str, b: Vec<u8>| v.push((name.to_string(), b));
    let good = base(vec![]);
    let tl = 16u32; // one INT record
    let sl = STRS.len() as u32;

    // --- header (btf_parse_hdr, btf_check_sec_info) ---
    add("empty", vec![]);
    add("7 bytes", good[..7].to_vec());
    add(
        "hdr_len past end",
        hdr_blob(0xeb9f, 1, 0, [100, 0, 0, 0, 0], &[]),
    );
    {
        let mut b = hdr_blob(0xeb9f, 1, 0, [32, 0, tl, tl, sl], &[0; 8]);
        b.extend_from_slice(&good[24..]);
        add("hdr_len 32, zero tail", b.clone());
        b[30] = 1;
        add("hdr_len 32, non-zero tail", b);
    }
    {
        let mut b = good.clone();
        b[0] = 0x9e;
        add("bad magic", b);
        let mut b = good.clone();
        b[0] = 0xeb;
        b[1] = 0x9f;
        add("big-endian magic", b);
        let mut b = good.clone();
        b[2] = 2;
        add("version 2", b);
        let mut b = good.clone();
        b[3] = 1;
        add("flags 1", b);
    }
    add("no data", hdr_blob(0xeb9f, 1, 0, [24, 0, 0, 0, 0], &[]));
    {
        let mut b = good.clone();
        put32(&mut b, 4, 12);
        add("hdr_len 12", b);
        let mut b = good.clone();
        put32(&mut b, 4, 4);
        add("hdr_len 4", b);
    }
    {
        let mut b = good.clone();
        put32(&mut b, 8, 1 << 20);
        add("type_off past end", b);
        let mut b = good.clone();
        put32(&mut b, 8, 4);
        put32(&mut b, 16, tl + 4);
        b.splice(24..24, [0u8; 4]);
        add("gap before types", b);
        let mut b = good.clone();
        put32(&mut b, 16, tl - 4);
        add("sections overlap", b);
        let mut b = good.clone();
        put32(&mut b, 20, sl + 100);
        add("string section too long", b);
        let mut b = good.clone();
        b.extend_from_slice(&[0; 4]);
        add("trailing data", b);
        let mut b = good.clone();
        put32(&mut b, 12, tl - 4);
        put32(&mut b, 16, tl - 4);
        b.drain(24 + tl as usize - 4..24 + tl as usize);
        add("type section 12 bytes", b);
        let mut b = good.clone();
        put32(&mut b, 12, 0xffff_fff0);
        add("type_len wraps", b);
        let mut b = good.clone();
        put32(&mut b, 16, 0x8000_0000);
        add("str_off huge", b);
    }
    {
        // Strings first, then types: the string section is not at the end.
        let mut body = STRS.to_vec();
        while !body.len().is_multiple_of(4) {
            body.push(0);
        }
        let so = body.len() as u32;
        let types = type_bytes(&[int(s("int"), 4, 1, 0, 32)]);
        body.extend_from_slice(&types);
        add(
            "strings before types",
            hdr_blob(0xeb9f, 1, 0, [24, so, tl, 0, so], &body),
        );
    }
    {
        let body = b"\0ab\0cd\0";
        add(
            "no types, unaligned type_off",
            hdr_blob(0xeb9f, 1, 0, [24, 7, 0, 0, 7], body),
        );
        let body = b"\0abcdef\0";
        add("no types", hdr_blob(0xeb9f, 1, 0, [24, 8, 0, 0, 8], body));
    }
    {
        let t = type_bytes(&[int(1, 4, 1, 0, 32)]);
        add("strings empty", blob_bytes(&t, b""));
        add("strings not NUL-first", blob_bytes(&t, b"xint\0"));
        add("strings not NUL-ended", blob_bytes(&t, b"\0int"));
        add(
            "strings only NUL",
            blob_bytes(&type_bytes(&[int(0, 4, 1, 0, 32)]), b"\0"),
        );
    }

    // --- btf_check_meta ---
    add(
        "record truncated",
        blob_bytes(&[1, 0, 0, 0, 0, 0, 0, 1], STRS),
    );
    add(
        "second record truncated",
        blob_bytes(
            &[type_bytes(&[int(s("int"), 4, 1, 0, 32)]), vec![0; 8]].concat(),
            STRS,
        ),
    );
    add(
        "reserved info bits",
        base(vec![Raw {
            name_off: 0,
            info: info(PTR, 0, false) | 1 << 16,
            size_or_type: 1,
            extra: vec![],
        }]),
    );
    add(
        "info bit 29",
        base(vec![Raw {
            name_off: 0,
            info: info(PTR, 0, false) | 1 << 29,
            size_or_type: 1,
            extra: vec![],
        }]),
    );
    add("kind 0", base(vec![rec(0, 0, 0, false, 0, &[])]));
    add("kind 20", base(vec![rec(0, 20, 0, false, 0, &[])]));
    add("kind 31", base(vec![rec(0, 31, 0, false, 0, &[])]));
    add(
        "name_off past strings",
        base(vec![rec(sl, TYPEDEF, 0, false, 1, &[])]),
    );
    add(
        "name_off huge",
        base(vec![rec(1 << 24, TYPEDEF, 0, false, 1, &[])]),
    );

    // INT
    add(
        "int meta_left",
        blob_bytes(&type_bytes(&[rec(s("int"), INT, 0, false, 4, &[])]), STRS),
    );
    add("int vlen", base(vec![rec(s("x"), INT, 1, false, 4, &[32])]));
    add("int kflag", base(vec![rec(s("x"), INT, 0, true, 4, &[32])]));
    add(
        "int reserved data bits",
        base(vec![int(s("x"), 4, 0x10, 0, 32)]),
    );
    add("int 129 bits", base(vec![int(s("x"), 17, 0, 0, 129)]));
    add(
        "int bits+offset > 128",
        base(vec![int(s("x"), 16, 0, 8, 124)]),
    );
    add("int bits exceed size", base(vec![int(s("x"), 1, 0, 0, 9)]));
    add(
        "int offset exceeds size",
        base(vec![int(s("x"), 1, 0, 4, 5)]),
    );
    add("int encoding 3", base(vec![int(s("x"), 4, 3, 0, 32)]));
    add("int encoding 8", base(vec![int(s("x"), 4, 8, 0, 32)]));
    add("int no name", base(vec![int(0, 4, 0, 0, 32)]));
    add(
        "int weird name",
        base(vec![int(s("bad name"), 4, 0, 0, 32)]),
    );
    add("int size 0 bits 0", base(vec![int(s("x"), 0, 0, 0, 0)]));
    add("int size 3", base(vec![int(s("x"), 3, 0, 0, 24)]));

    // PTR and modifiers (btf_ref_type_check_meta)
    add("ptr vlen", base(vec![rec(0, PTR, 1, false, 1, &[])]));
    add("ptr kflag", base(vec![rec(0, PTR, 0, true, 1, &[])]));
    add(
        "ptr type_id > max",
        base(vec![rec(0, PTR, 0, false, 0x10_0000, &[])]),
    );
    add("ptr named", base(vec![rec(s("x"), PTR, 0, false, 1, &[])]));
    add(
        "const named",
        base(vec![rec(s("x"), CONST, 0, false, 1, &[])]),
    );
    add(
        "volatile named",
        base(vec![rec(s("x"), VOLATILE, 0, false, 1, &[])]),
    );
    add(
        "restrict kflag",
        base(vec![rec(0, RESTRICT, 0, true, 1, &[])]),
    );
    add(
        "typedef no name",
        base(vec![rec(0, TYPEDEF, 0, false, 1, &[])]),
    );
    add(
        "typedef bad name",
        base(vec![rec(s("1abc"), TYPEDEF, 0, false, 1, &[])]),
    );
    add(
        "typedef dotted name",
        base(vec![rec(s("a.b"), TYPEDEF, 0, false, 1, &[])]),
    );
    add(
        "typedef latin-1 name",
        base(vec![rec(s(b"\xc0\xe9"), TYPEDEF, 0, false, 1, &[])]),
    );
    add(
        "type_tag no name",
        base(vec![rec(0, TYPE_TAG, 0, false, 1, &[])]),
    );
    add(
        "type_tag kflag",
        base(vec![rec(s("tag"), TYPE_TAG, 0, true, 1, &[])]),
    );
    add(
        "type_tag odd name",
        base(vec![rec(s("bad name"), TYPE_TAG, 0, false, 1, &[])]),
    );

    // FWD
    add("fwd vlen", base(vec![rec(s("foo"), FWD, 1, false, 0, &[])]));
    add("fwd type", base(vec![rec(s("foo"), FWD, 0, false, 1, &[])]));
    add("fwd no name", base(vec![rec(0, FWD, 0, false, 0, &[])]));
    add(
        "fwd bad name",
        base(vec![rec(s("bad name"), FWD, 0, true, 0, &[])]),
    );

    // ARRAY
    add(
        "array meta_left",
        blob_bytes(
            &type_bytes(&[
                int(s("int"), 4, 1, 0, 32),
                rec(0, ARRAY, 0, false, 0, &[1, 1]),
            ]),
            STRS,
        ),
    );
    add(
        "array named",
        base(vec![rec(s("x"), ARRAY, 0, false, 0, &[1, 1, 2])]),
    );
    add(
        "array vlen",
        base(vec![rec(0, ARRAY, 1, false, 0, &[1, 1, 2])]),
    );
    add(
        "array kflag",
        base(vec![rec(0, ARRAY, 0, true, 0, &[1, 1, 2])]),
    );
    add(
        "array size",
        base(vec![rec(0, ARRAY, 0, false, 8, &[1, 1, 2])]),
    );
    add(
        "array elem 0",
        base(vec![rec(0, ARRAY, 0, false, 0, &[0, 1, 2])]),
    );
    add(
        "array elem > max",
        base(vec![rec(0, ARRAY, 0, false, 0, &[0x10_0000, 1, 2])]),
    );
    add(
        "array index 0",
        base(vec![rec(0, ARRAY, 0, false, 0, &[1, 0, 2])]),
    );

    // STRUCT / UNION
    add(
        "struct meta_left",
        blob_bytes(
            &type_bytes(&[
                int(s("int"), 4, 1, 0, 32),
                rec(s("foo"), STRUCT, 2, false, 8, &[s("x"), 1, 0]),
            ]),
            STRS,
        ),
    );
    add(
        "struct bad name",
        base(vec![rec(s("1abc"), STRUCT, 0, false, 0, &[])]),
    );
    add(
        "member name_off invalid",
        base(vec![rec(s("foo"), STRUCT, 1, false, 4, &[sl + 3, 1, 0])]),
    );
    add(
        "member bad name",
        base(vec![rec(
            s("foo"),
            STRUCT,
            1,
            false,
            4,
            &[s("bad name"), 1, 0],
        )]),
    );
    add(
        "member void",
        base(vec![rec(s("foo"), STRUCT, 1, false, 4, &[s("x"), 0, 0])]),
    );
    add(
        "member type > max",
        base(vec![rec(
            s("foo"),
            STRUCT,
            1,
            false,
            4,
            &[s("x"), 0x10_0000, 0],
        )]),
    );
    add(
        "union member offset",
        base(vec![rec(s("foo"), UNION, 1, false, 8, &[s("x"), 1, 32])]),
    );
    add(
        "member offsets decrease",
        base(vec![rec(
            s("foo"),
            STRUCT,
            2,
            false,
            8,
            &[s("x"), 1, 32, s("y"), 1, 0],
        )]),
    );
    add(
        "member offset past size",
        base(vec![rec(s("foo"), STRUCT, 1, false, 4, &[s("x"), 1, 40])]),
    );
    add(
        "anonymous struct, no members",
        base(vec![rec(0, STRUCT, 0, false, 0, &[])]),
    );

    // ENUM / ENUM64
    add(
        "enum meta_left",
        blob_bytes(
            &type_bytes(&[rec(s("foo"), ENUM, 2, false, 4, &[s("x"), 1])]),
            STRS,
        ),
    );
    add(
        "enum size 3",
        base(vec![rec(s("foo"), ENUM, 0, false, 3, &[])]),
    );
    add(
        "enum size 16",
        base(vec![rec(s("foo"), ENUM, 0, false, 16, &[])]),
    );
    add(
        "enum size 0",
        base(vec![rec(s("foo"), ENUM, 0, false, 0, &[])]),
    );
    add(
        "enum bad name",
        base(vec![rec(s("bad name"), ENUM, 0, false, 4, &[])]).to_vec(),
    );
    add(
        "enumerator name_off invalid",
        base(vec![rec(s("foo"), ENUM, 1, false, 4, &[sl, 1])]),
    );
    add(
        "enumerator anonymous",
        base(vec![rec(
            s("foo"),
            ENUM,
            2,
            true,
            4,
            &[s("x"), 0xffff_ffff, 0, 1],
        )]),
    );
    add(
        "enumerator bad name",
        base(vec![rec(s("foo"), ENUM, 1, false, 4, &[s("1abc"), 1])]),
    );
    add(
        "enum64 meta_left",
        blob_bytes(
            &type_bytes(&[rec(s("foo"), ENUM64, 1, false, 8, &[s("x"), 1])]),
            STRS,
        ),
    );
    add(
        "enum64 size 5",
        base(vec![rec(s("foo"), ENUM64, 0, false, 5, &[])]),
    );
    add(
        "enum64 anonymous enumerator",
        base(vec![rec(s("foo"), ENUM64, 1, true, 8, &[0, 1, 2])]),
    );
    add(
        "enum64 signed values ok",
        base(vec![rec(
            s("foo"),
            ENUM64,
            2,
            true,
            8,
            &[s("x"), 0xffff_fffe, 0xffff_ffff, s("y"), 5, 0],
        )]),
    );

    // FUNC_PROTO / FUNC
    add(
        "func_proto meta_left",
        blob_bytes(
            &type_bytes(&[
                int(s("int"), 4, 1, 0, 32),
                rec(0, FUNC_PROTO, 2, false, 1, &[s("x"), 1]),
            ]),
            STRS,
        ),
    );
    add(
        "func_proto named",
        base(vec![rec(s("foo"), FUNC_PROTO, 0, false, 1, &[])]),
    );
    add(
        "func_proto kflag",
        base(vec![rec(0, FUNC_PROTO, 0, true, 1, &[])]),
    );
    add(
        "func no name",
        base(vec![
            rec(0, FUNC_PROTO, 0, false, 1, &[]),
            rec(0, FUNC, 0, false, 2, &[]),
        ]),
    );
    add(
        "func bad name",
        base(vec![
            rec(0, FUNC_PROTO, 0, false, 1, &[]),
            rec(s("bad name"), FUNC, 0, false, 2, &[]),
        ]),
    );
    add(
        "func extern linkage",
        base(vec![
            rec(0, FUNC_PROTO, 0, false, 1, &[]),
            rec(s("foo"), FUNC, 2, false, 2, &[]),
        ]),
    );
    add(
        "func kflag",
        base(vec![
            rec(0, FUNC_PROTO, 0, false, 1, &[]),
            rec(s("foo"), FUNC, 0, true, 2, &[]),
        ]),
    );
    add(
        "func to int",
        base(vec![rec(s("foo"), FUNC, 0, false, 1, &[])]),
    );
    add(
        "func to nothing",
        base(vec![rec(s("foo"), FUNC, 1, false, 77, &[])]),
    );
    add(
        "func unnamed arg",
        base(vec![
            rec(0, FUNC_PROTO, 2, false, 1, &[s("x"), 1, 0, 1]),
            rec(s("foo"), FUNC, 0, false, 2, &[]),
        ]),
    );
    add(
        "proto returns var",
        base(vec![
            rec(s("x"), VAR, 0, false, 1, &[0]),
            rec(0, FUNC_PROTO, 0, false, 2, &[]),
        ]),
    );
    add(
        "proto returns fwd",
        base(vec![
            rec(s("foo"), FWD, 0, false, 0, &[]),
            rec(0, FUNC_PROTO, 0, false, 2, &[]),
        ]),
    );
    add(
        "proto returns missing",
        base(vec![rec(0, FUNC_PROTO, 0, false, 9, &[])]),
    );
    add(
        "proto returns proto",
        base(vec![rec(0, FUNC_PROTO, 0, false, 2, &[])]),
    );
    add(
        "proto void arg in the middle",
        base(vec![rec(
            0,
            FUNC_PROTO,
            2,
            false,
            1,
            &[s("x"), 0, s("y"), 1],
        )]),
    );
    add(
        "proto named vararg",
        base(vec![rec(
            0,
            FUNC_PROTO,
            2,
            false,
            1,
            &[s("x"), 1, s("y"), 0],
        )]),
    );
    add(
        "proto only vararg",
        base(vec![rec(0, FUNC_PROTO, 1, false, 1, &[0, 0])]),
    );
    add(
        "proto arg bad name",
        base(vec![rec(0, FUNC_PROTO, 1, false, 1, &[s("1abc"), 1])]),
    );
    add(
        "proto arg name_off invalid",
        base(vec![rec(0, FUNC_PROTO, 1, false, 1, &[sl + 8, 1])]),
    );
    add(
        "proto arg missing type",
        base(vec![rec(0, FUNC_PROTO, 1, false, 1, &[s("x"), 50])]),
    );
    add(
        "proto arg is datasec",
        base(vec![
            rec(s("x"), VAR, 0, false, 1, &[0]),
            rec(s(".data"), DATASEC, 1, false, 4, &[2, 0, 4]),
            rec(0, FUNC_PROTO, 1, false, 1, &[s("y"), 3]),
        ]),
    );
    add(
        "proto arg loops",
        base(vec![
            rec(s("x"), TYPEDEF, 0, false, 3, &[]),
            rec(s("y"), TYPEDEF, 0, false, 2, &[]),
            rec(0, FUNC_PROTO, 1, false, 1, &[s("y"), 2]),
        ]),
    );

    // VAR
    add(
        "var meta_left",
        blob_bytes(
            &type_bytes(&[
                int(s("int"), 4, 1, 0, 32),
                rec(s("x"), VAR, 0, false, 1, &[]),
            ]),
            STRS,
        ),
    );
    add("var vlen", base(vec![rec(s("x"), VAR, 1, false, 1, &[0])]));
    add("var kflag", base(vec![rec(s("x"), VAR, 0, true, 1, &[0])]));
    add("var no name", base(vec![rec(0, VAR, 0, false, 1, &[0])]));
    add(
        "var dotted name",
        base(vec![rec(s("a.b"), VAR, 0, false, 1, &[1])]),
    );
    add("var void", base(vec![rec(s("x"), VAR, 0, false, 0, &[0])]));
    add(
        "var extern",
        base(vec![rec(s("x"), VAR, 0, false, 1, &[2])]),
    );
    add(
        "var of fwd",
        base(vec![
            rec(s("foo"), FWD, 0, false, 0, &[]),
            rec(s("x"), VAR, 0, false, 2, &[0]),
        ]),
    );
    add(
        "var of var",
        base(vec![
            rec(s("y"), VAR, 0, false, 1, &[0]),
            rec(s("x"), VAR, 0, false, 2, &[0]),
        ]),
    );
    add(
        "var of missing",
        base(vec![rec(s("x"), VAR, 0, false, 40, &[0])]),
    );
    add(
        "var of const void",
        base(vec![
            rec(0, CONST, 0, false, 0, &[]),
            rec(s("x"), VAR, 0, false, 2, &[0]),
        ]),
    );

    // DATASEC
    let var = || rec(s("x"), VAR, 0, false, 1, &[1]);
    add(
        "datasec meta_left",
        blob_bytes(
            &type_bytes(&[
                int(s("int"), 4, 1, 0, 32),
                var(),
                rec(s(".data"), DATASEC, 2, false, 8, &[2, 0, 4]),
            ]),
            STRS,
        ),
    );
    add(
        "datasec size 0",
        base(vec![
            var(),
            rec(s(".data"), DATASEC, 1, false, 0, &[2, 0, 4]),
        ]),
    );
    add(
        "datasec kflag",
        base(vec![
            var(),
            rec(s(".data"), DATASEC, 1, true, 4, &[2, 0, 4]),
        ]),
    );
    add(
        "datasec no name",
        base(vec![var(), rec(0, DATASEC, 1, false, 4, &[2, 0, 4])]),
    );
    add(
        "datasec unprintable name",
        base(vec![
            var(),
            rec(s("sec\x01"), DATASEC, 1, false, 4, &[2, 0, 4]),
        ]),
    );
    add(
        "datasec spaced name ok",
        base(vec![
            var(),
            rec(s("bad name"), DATASEC, 1, false, 4, &[2, 0, 4]),
        ]),
    );
    add(
        "datasec latin-1 name ok",
        base(vec![
            var(),
            rec(s(b"\xc0\xe9"), DATASEC, 1, false, 4, &[2, 0, 4]),
        ]),
    );
    add(
        "vsi type 0",
        base(vec![
            var(),
            rec(s(".data"), DATASEC, 1, false, 4, &[0, 0, 4]),
        ]),
    );
    add(
        "vsi unsorted",
        base(vec![
            var(),
            rec(s("y"), VAR, 0, false, 1, &[1]),
            rec(s(".data"), DATASEC, 2, false, 8, &[2, 4, 4, 3, 0, 4]),
        ]),
    );
    add(
        "vsi overlapping",
        base(vec![
            var(),
            rec(s("y"), VAR, 0, false, 1, &[1]),
            rec(s(".data"), DATASEC, 2, false, 8, &[2, 0, 4, 3, 2, 4]),
        ]),
    );
    add(
        "vsi offset past size",
        base(vec![
            var(),
            rec(s(".data"), DATASEC, 1, false, 4, &[2, 4, 4]),
        ]),
    );
    add(
        "vsi size 0",
        base(vec![
            var(),
            rec(s(".data"), DATASEC, 1, false, 4, &[2, 0, 0]),
        ]),
    );
    add(
        "vsi size > sec",
        base(vec![
            var(),
            rec(s(".data"), DATASEC, 1, false, 4, &[2, 0, 8]),
        ]),
    );
    add(
        "vsi end past size",
        base(vec![
            var(),
            rec(s(".data"), DATASEC, 1, false, 8, &[2, 6, 4]),
        ]),
    );
    add(
        "vsi offset+size wraps",
        base(vec![
            var(),
            rec(
                s(".data"),
                DATASEC,
                1,
                false,
                0xffff_fff0,
                &[2, 0xffff_ffe0, 0x40],
            ),
        ]),
    );
    add(
        "vsi not a var",
        base(vec![
            var(),
            rec(s(".data"), DATASEC, 1, false, 4, &[1, 0, 4]),
        ]),
    );
    add(
        "vsi is a func",
        base(vec![
            rec(0, FUNC_PROTO, 0, false, 0, &[]),
            rec(s("foo"), FUNC, 0, false, 2, &[]),
            rec(s(".data"), DATASEC, 1, false, 4, &[3, 0, 4]),
        ]),
    );
    add(
        "vsi too small for var",
        base(vec![
            var(),
            rec(s(".data"), DATASEC, 1, false, 4, &[2, 0, 2]),
        ]),
    );
    add(
        "vsi missing",
        base(vec![
            var(),
            rec(s(".data"), DATASEC, 1, false, 4, &[9, 0, 4]),
        ]),
    );

    // FLOAT
    add(
        "float vlen",
        base(vec![rec(s("x"), FLOAT, 1, false, 8, &[])]),
    );
    add(
        "float kflag",
        base(vec![rec(s("x"), FLOAT, 0, true, 8, &[])]),
    );
    add(
        "float size 6",
        base(vec![rec(s("x"), FLOAT, 0, false, 6, &[])]),
    );
    add(
        "float anonymous",
        base(vec![rec(0, FLOAT, 0, false, 4, &[])]),
    );

    // DECL_TAG
    add(
        "decl_tag meta_left",
        blob_bytes(
            &type_bytes(&[
                int(s("int"), 4, 1, 0, 32),
                rec(s("tag"), DECL_TAG, 0, false, 1, &[]),
            ]),
            STRS,
        ),
    );
    add(
        "decl_tag empty",
        base(vec![rec(0, DECL_TAG, 0, false, 1, &[u32::MAX])]),
    );
    add(
        "decl_tag vlen",
        base(vec![rec(s("tag"), DECL_TAG, 1, false, 1, &[u32::MAX])]),
    );
    add(
        "decl_tag kflag",
        base(vec![
            rec(s("x"), VAR, 0, false, 1, &[0]),
            rec(s("tag"), DECL_TAG, 0, true, 2, &[u32::MAX]),
        ]),
    );
    add(
        "decl_tag idx -2",
        base(vec![rec(
            s("tag"),
            DECL_TAG,
            0,
            false,
            1,
            &[(-2i32) as u32],
        )]),
    );
    add(
        "decl_tag on int",
        base(vec![rec(s("tag"), DECL_TAG, 0, false, 1, &[u32::MAX])]),
    );
    add(
        "decl_tag on missing",
        base(vec![rec(s("tag"), DECL_TAG, 0, false, 50, &[u32::MAX])]),
    );
    add(
        "decl_tag on var, idx 0",
        base(vec![
            rec(s("x"), VAR, 0, false, 1, &[0]),
            rec(s("tag"), DECL_TAG, 0, false, 2, &[0]),
        ]),
    );
    add(
        "decl_tag on typedef, idx 0",
        base(vec![
            rec(s("x"), TYPEDEF, 0, false, 1, &[]),
            rec(s("tag"), DECL_TAG, 0, false, 2, &[0]),
        ]),
    );
    add(
        "decl_tag on struct, idx past members",
        base(vec![
            rec(s("foo"), STRUCT, 1, false, 4, &[s("x"), 1, 0]),
            rec(s("tag"), DECL_TAG, 0, false, 2, &[1]),
        ]),
    );
    add(
        "decl_tag on func, idx past args",
        base(vec![
            rec(0, FUNC_PROTO, 1, false, 1, &[s("x"), 1]),
            rec(s("foo"), FUNC, 0, false, 2, &[]),
            rec(s("tag"), DECL_TAG, 0, false, 3, &[1]),
        ]),
    );
    add(
        "decl_tag on decl_tag",
        base(vec![
            rec(s("x"), VAR, 0, false, 1, &[0]),
            rec(s("tag"), DECL_TAG, 0, false, 2, &[u32::MAX]),
            rec(s("tag"), DECL_TAG, 0, false, 3, &[u32::MAX]),
        ]),
    );
    add(
        "decl_tag on bad func",
        base(vec![
            rec(s("foo"), FUNC, 0, false, 1, &[]),
            rec(s("tag"), DECL_TAG, 0, false, 2, &[u32::MAX]),
        ]),
    );

    // --- resolution ---
    add("ptr to missing", base(vec![rec(0, PTR, 0, false, 9, &[])]));
    add(
        "ptr to var",
        base(vec![
            rec(s("x"), VAR, 0, false, 1, &[0]),
            rec(0, PTR, 0, false, 2, &[]),
        ]),
    );
    add(
        "ptr to decl_tag",
        base(vec![
            rec(s("x"), VAR, 0, false, 1, &[0]),
            rec(s("tag"), DECL_TAG, 0, false, 2, &[u32::MAX]),
            rec(0, PTR, 0, false, 3, &[]),
        ]),
    );
    add(
        "ptr to func ok",
        base(vec![
            rec(0, FUNC_PROTO, 0, false, 0, &[]),
            rec(s("foo"), FUNC, 0, false, 2, &[]),
            rec(0, PTR, 0, false, 3, &[]),
        ]),
    );
    add(
        "typedef to missing",
        base(vec![rec(s("x"), TYPEDEF, 0, false, 5, &[])]),
    );
    add(
        "typedef loop",
        base(vec![
            rec(s("x"), TYPEDEF, 0, false, 3, &[]),
            rec(s("y"), TYPEDEF, 0, false, 2, &[]),
        ]),
    );
    add(
        "const self loop",
        base(vec![rec(0, CONST, 0, false, 2, &[])]),
    );
    add(
        "ptr loop through typedef",
        base(vec![
            rec(0, PTR, 0, false, 3, &[]),
            rec(s("x"), TYPEDEF, 0, false, 2, &[]),
        ]),
    );
    add(
        "ptr to ptr to ptr loop",
        base(vec![
            rec(0, PTR, 0, false, 3, &[]),
            rec(0, PTR, 0, false, 2, &[]),
        ]),
    );
    {
        let mut chain = Vec::new();
        for i in 0..40u32 {
            chain.push(rec(
                0,
                CONST,
                0,
                false,
                if i == 39 { 1 } else { i + 3 },
                &[],
            ));
        }
        add("const chain of 40", base(chain));
        let mut chain = Vec::new();
        for i in 0..31u32 {
            chain.push(rec(
                0,
                CONST,
                0,
                false,
                if i == 30 { 1 } else { i + 3 },
                &[],
            ));
        }
        add("const chain of 31", base(chain));
        let mut chain = Vec::new();
        for i in 0..32u32 {
            chain.push(rec(
                0,
                CONST,
                0,
                false,
                if i == 31 { 1 } else { i + 3 },
                &[],
            ));
        }
        add("const chain of 32", base(chain));
        let mut chain = Vec::new();
        for i in 0..40u32 {
            chain.push(rec(
                0,
                VOLATILE,
                0,
                false,
                if i == 0 { 1 } else { i + 1 },
                &[],
            ));
        }
        add("reversed chain of 40", base(chain));
        let mut chain = vec![rec(s("tag"), TYPE_TAG, 0, false, 3, &[])];
        chain.push(rec(0, CONST, 0, false, 1, &[]));
        add("type_tag before const ok", base(chain));
        add(
            "const before type_tag",
            base(vec![
                rec(0, CONST, 0, false, 3, &[]),
                rec(s("tag"), TYPE_TAG, 0, false, 1, &[]),
            ]),
        );
        add(
            "ptr between tag and const ok",
            base(vec![
                rec(0, CONST, 0, false, 3, &[]),
                rec(0, PTR, 0, false, 4, &[]),
                rec(s("tag"), TYPE_TAG, 0, false, 1, &[]),
            ]),
        );
        add(
            "typedef before type_tag",
            base(vec![
                rec(s("x"), TYPEDEF, 0, false, 3, &[]),
                rec(s("tag"), TYPE_TAG, 0, false, 1, &[]),
            ]),
        );
    }
    add(
        "struct contains itself",
        base(vec![rec(s("foo"), STRUCT, 1, false, 4, &[s("x"), 2, 0])]),
    );
    add(
        "struct contains itself via typedef",
        base(vec![
            rec(s("foo"), STRUCT, 1, false, 4, &[s("x"), 3, 0]),
            rec(s("bar"), TYPEDEF, 0, false, 2, &[]),
        ]),
    );
    add(
        "struct contains array of itself",
        base(vec![
            rec(s("foo"), STRUCT, 1, false, 4, &[s("x"), 3, 0]),
            rec(0, ARRAY, 0, false, 0, &[2, 1, 1]),
        ]),
    );
    add(
        "array of itself",
        base(vec![rec(0, ARRAY, 0, false, 0, &[2, 1, 1])]),
    );
    add(
        "mutual structs via pointers ok",
        base(vec![
            rec(s("foo"), STRUCT, 1, false, 8, &[s("x"), 4, 0]),
            rec(s("bar"), STRUCT, 1, false, 8, &[s("y"), 5, 0]),
            rec(0, PTR, 0, false, 3, &[]),
            rec(0, PTR, 0, false, 2, &[]),
        ]),
    );
    add(
        "array index is struct",
        base(vec![
            rec(s("foo"), STRUCT, 0, false, 4, &[]),
            rec(0, ARRAY, 0, false, 0, &[1, 2, 4]),
        ]),
    );
    add(
        "array index is fwd",
        base(vec![
            rec(s("foo"), FWD, 0, false, 0, &[]),
            rec(0, ARRAY, 0, false, 0, &[1, 2, 4]),
        ]),
    );
    add(
        "array index is bitfield int",
        base(vec![
            int(s("x"), 4, 0, 0, 31),
            rec(0, ARRAY, 0, false, 0, &[1, 2, 4]),
        ]),
    );
    add(
        "array index is 3-byte int",
        base(vec![
            int(s("x"), 4, 0, 0, 24),
            rec(0, ARRAY, 0, false, 0, &[1, 2, 4]),
        ]),
    );
    add(
        "array index is typedef int ok",
        base(vec![
            rec(s("x"), TYPEDEF, 0, false, 1, &[]),
            rec(0, ARRAY, 0, false, 0, &[1, 2, 4]),
        ]),
    );
    add(
        "array index missing",
        base(vec![rec(0, ARRAY, 0, false, 0, &[1, 7, 4])]),
    );
    add(
        "array elem is proto",
        base(vec![
            rec(0, FUNC_PROTO, 0, false, 1, &[]),
            rec(0, ARRAY, 0, false, 0, &[2, 1, 4]),
        ]),
    );
    add(
        "array elem is var",
        base(vec![
            rec(s("x"), VAR, 0, false, 1, &[0]),
            rec(0, ARRAY, 0, false, 0, &[2, 1, 4]),
        ]),
    );
    add(
        "array elem is typedef void",
        base(vec![
            rec(s("x"), TYPEDEF, 0, false, 0, &[]),
            rec(0, ARRAY, 0, false, 0, &[2, 1, 4]),
        ]),
    );
    add(
        "array of bitfield int",
        base(vec![
            int(s("x"), 4, 0, 0, 30),
            rec(0, ARRAY, 0, false, 0, &[2, 1, 4]),
        ]),
    );
    add(
        "array size overflow",
        base(vec![rec(0, ARRAY, 0, false, 0, &[1, 1, 0x4000_0000])]),
    );
    add(
        "array size just fits",
        base(vec![rec(0, ARRAY, 0, false, 0, &[1, 1, 0x3fff_ffff])]),
    );
    add(
        "2d array overflow",
        base(vec![
            rec(0, ARRAY, 0, false, 0, &[1, 1, 0x1000]),
            rec(0, ARRAY, 0, false, 0, &[2, 1, 0x10_0000]),
        ]),
    );
    add(
        "member fwd",
        base(vec![
            rec(s("foo"), FWD, 0, false, 0, &[]),
            rec(s("bar"), STRUCT, 1, false, 4, &[s("x"), 2, 0]),
        ]),
    );
    add(
        "member func_proto",
        base(vec![
            rec(0, FUNC_PROTO, 0, false, 1, &[]),
            rec(s("bar"), STRUCT, 1, false, 8, &[s("x"), 2, 0]),
        ]),
    );
    add(
        "member var",
        base(vec![
            rec(s("y"), VAR, 0, false, 1, &[0]),
            rec(s("bar"), STRUCT, 1, false, 8, &[s("x"), 2, 0]),
        ]),
    );
    add(
        "member missing",
        base(vec![rec(s("bar"), STRUCT, 1, false, 8, &[s("x"), 20, 0])]),
    );
    add(
        "int member exceeds",
        base(vec![rec(
            s("foo"),
            STRUCT,
            2,
            false,
            6,
            &[s("x"), 1, 0, s("y"), 1, 32],
        )]),
    );
    add(
        "int member exact ok",
        base(vec![rec(
            s("foo"),
            STRUCT,
            2,
            false,
            8,
            &[s("x"), 1, 0, s("y"), 1, 32],
        )]),
    );
    add(
        "int member unaligned ok",
        base(vec![rec(s("foo"), STRUCT, 1, false, 8, &[s("x"), 1, 3])]),
    );
    add(
        "int member unaligned exceeds",
        base(vec![rec(s("foo"), STRUCT, 1, false, 4, &[s("x"), 1, 3])]),
    );
    add(
        "int bitfield type exceeds",
        base(vec![
            int(s("x"), 4, 0, 6, 20),
            rec(s("foo"), STRUCT, 1, false, 3, &[s("x"), 2, 0]),
        ]),
    );
    add(
        "int member 128 copy bits",
        base(vec![
            int(s("x"), 16, 0, 0, 128),
            rec(s("foo"), STRUCT, 1, false, 32, &[s("x"), 2, 4]),
        ]),
    );
    add(
        "ptr member unaligned",
        base(vec![
            rec(0, PTR, 0, false, 1, &[]),
            rec(s("foo"), STRUCT, 1, false, 16, &[s("x"), 2, 4]),
        ]),
    );
    add(
        "ptr member exceeds",
        base(vec![
            rec(0, PTR, 0, false, 1, &[]),
            rec(s("foo"), STRUCT, 1, false, 12, &[s("x"), 2, 64]),
        ]),
    );
    add(
        "struct member unaligned",
        base(vec![
            rec(s("foo"), STRUCT, 0, false, 4, &[]),
            rec(s("bar"), STRUCT, 1, false, 16, &[s("x"), 2, 4]),
        ]),
    );
    add(
        "struct member exceeds",
        base(vec![
            rec(s("foo"), STRUCT, 0, false, 8, &[]),
            rec(s("bar"), STRUCT, 1, false, 12, &[s("x"), 2, 32]),
        ]),
    );
    add(
        "enum member exceeds",
        base(vec![
            rec(s("foo"), ENUM, 0, false, 8, &[]),
            rec(s("bar"), STRUCT, 1, false, 12, &[s("x"), 2, 64]),
        ]),
    );
    add(
        "enum member unaligned",
        base(vec![
            rec(s("foo"), ENUM, 0, false, 4, &[]),
            rec(s("bar"), STRUCT, 1, false, 12, &[s("x"), 2, 60]),
        ]),
    );
    add(
        "array member exceeds",
        base(vec![
            rec(0, ARRAY, 0, false, 0, &[1, 1, 3]),
            rec(s("bar"), STRUCT, 1, false, 12, &[s("x"), 2, 32]),
        ]),
    );
    add(
        "array member unaligned",
        base(vec![
            rec(0, ARRAY, 0, false, 0, &[1, 1, 1]),
            rec(s("bar"), STRUCT, 1, false, 12, &[s("x"), 2, 33]),
        ]),
    );
    add(
        "float member misaligned",
        base(vec![
            rec(s("x"), FLOAT, 0, false, 8, &[]),
            rec(s("bar"), STRUCT, 1, false, 16, &[s("x"), 2, 32]),
        ]),
    );
    add(
        "float member exceeds",
        base(vec![
            rec(s("x"), FLOAT, 0, false, 16, &[]),
            rec(s("bar"), STRUCT, 1, false, 16, &[s("x"), 2, 64]),
        ]),
    );
    add(
        "float12 member ok",
        base(vec![
            rec(s("x"), FLOAT, 0, false, 12, &[]),
            rec(s("bar"), STRUCT, 1, false, 16, &[s("x"), 2, 0]),
        ]),
    );
    add(
        "typedef void member",
        base(vec![
            rec(s("x"), TYPEDEF, 0, false, 0, &[]),
            rec(s("bar"), STRUCT, 1, false, 16, &[s("x"), 2, 0]),
        ]),
    );
    add(
        "const fwd member",
        base(vec![
            rec(s("foo"), FWD, 0, false, 0, &[]),
            rec(0, CONST, 0, false, 2, &[]),
            rec(s("bar"), STRUCT, 1, false, 16, &[s("x"), 3, 0]),
        ]),
    );
    add(
        "typedef member exceeds",
        base(vec![
            rec(s("x"), TYPEDEF, 0, false, 1, &[]),
            rec(s("bar"), STRUCT, 1, false, 2, &[s("x"), 2, 0]),
        ]),
    );
    // Kind-flag composites.
    add(
        "kflag int bitfield too wide",
        base(vec![rec(
            s("foo"),
            STRUCT,
            1,
            true,
            8,
            &[s("x"), 1, 33 << 24],
        )]),
    );
    add(
        "kflag int bitfield ok",
        base(vec![rec(
            s("foo"),
            STRUCT,
            2,
            true,
            8,
            &[s("x"), 1, 3 << 24, s("y"), 1, 5 << 24 | 3],
        )]),
    );
    add(
        "kflag int bitfield exceeds",
        base(vec![rec(
            s("foo"),
            STRUCT,
            1,
            true,
            4,
            &[s("x"), 1, 20 << 24 | 20],
        )]),
    );
    add(
        "kflag irregular int base",
        base(vec![
            int(s("x"), 4, 0, 0, 31),
            rec(s("foo"), STRUCT, 1, true, 4, &[s("x"), 2, 3 << 24]),
        ]),
    );
    add(
        "kflag int unaligned offset",
        base(vec![rec(s("foo"), STRUCT, 1, true, 8, &[s("x"), 1, 4])]),
    );
    add(
        "kflag int128 copy bits",
        base(vec![
            int(s("x"), 16, 0, 0, 128),
            rec(s("foo"), STRUCT, 1, true, 32, &[s("x"), 2, 128 << 24 | 4]),
        ]),
    );
    add(
        "kflag ptr bitfield",
        base(vec![
            rec(0, PTR, 0, false, 1, &[]),
            rec(s("foo"), STRUCT, 1, true, 8, &[s("x"), 2, 8 << 24]),
        ]),
    );
    add(
        "kflag ptr ok",
        base(vec![
            rec(0, PTR, 0, false, 1, &[]),
            rec(s("foo"), STRUCT, 1, true, 8, &[s("x"), 2, 0]),
        ]),
    );
    add(
        "kflag enum bitfield 33",
        base(vec![
            rec(s("bar"), ENUM, 0, false, 4, &[]),
            rec(s("foo"), STRUCT, 1, true, 8, &[s("x"), 2, 33 << 24]),
        ]),
    );
    add(
        "kflag enum unaligned",
        base(vec![
            rec(s("bar"), ENUM, 0, false, 4, &[]),
            rec(s("foo"), STRUCT, 1, true, 8, &[s("x"), 2, 3]),
        ]),
    );
    add(
        "kflag enum exceeds",
        base(vec![
            rec(s("bar"), ENUM, 0, false, 4, &[]),
            rec(s("foo"), STRUCT, 1, true, 4, &[s("x"), 2, 30 << 24 | 8]),
        ]),
    );
    add(
        "kflag enum64 ok",
        base(vec![
            rec(s("bar"), ENUM64, 0, false, 8, &[]),
            rec(s("foo"), STRUCT, 1, true, 8, &[s("x"), 2, 0]),
        ]),
    );
    add(
        "kflag typedef int bitfield",
        base(vec![
            rec(s("x"), TYPEDEF, 0, false, 1, &[]),
            rec(s("foo"), STRUCT, 1, true, 4, &[s("x"), 2, 40 << 24]),
        ]),
    );
    add(
        "kflag float bitfield",
        base(vec![
            rec(s("x"), FLOAT, 0, false, 4, &[]),
            rec(s("foo"), STRUCT, 1, true, 4, &[s("x"), 2, 2 << 24]),
        ]),
    );
    add(
        "kflag union member offset",
        base(vec![rec(
            s("foo"),
            UNION,
            1,
            true,
            8,
            &[s("x"), 1, 3 << 24 | 1],
        )]),
    );
    add(
        "kflag struct bitfield size ignored by meta",
        base(vec![rec(
            s("foo"),
            STRUCT,
            1,
            true,
            4,
            &[s("x"), 1, 0xff00_0000],
        )]),
    );
    v
}

/// The bytes of section `name` of a little-endian ELF64 file.
fn elf_section(data: &[u8], name: &str) -> Option<Vec<u8>> {
    let u16_at = |o: usize| Some(u16::from_le_bytes(data.get(o..o + 2)?.try_into().ok()?));
    let u32_at = |o: usize| Some(u32::from_le_bytes(data.get(o..o + 4)?.try_into().ok()?));
    let u64_at = |o: usize| Some(u64::from_le_bytes(data.get(o..o + 8)?.try_into().ok()?));
    let shoff = u64_at(0x28)? as usize;
    let shentsize = u16_at(0x3a)? as usize;
    let shnum = u16_at(0x3c)? as usize;
    let shstrndx = u16_at(0x3e)? as usize;
    let sh = |i: usize| shoff + i * shentsize;
    let strtab = u64_at(sh(shstrndx) + 24)? as usize;
    for i in 0..shnum {
        let name_off = u32_at(sh(i))? as usize;
        let n = data.get(strtab + name_off..)?;
        let end = n.iter().position(|&b| b == 0)?;
        if &n[..end] == name.as_bytes() {
            let off = u64_at(sh(i) + 24)? as usize;
            let size = u64_at(sh(i) + 32)? as usize;
            return data.get(off..off + size).map(<[u8]>::to_vec);
        }
    }
    None
}

/// The `.BTF` sections of the project's own BPF objects (`bpf/*.bpf.o`), as clang wrote
/// them (before any libbpf fix-ups).
fn object_btfs() -> Vec<(String, Vec<u8>)> {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../bpf");
    let mut out = Vec::new();
    let Ok(entries) = std::fs::read_dir(&dir) else {
        return out;
    };
    let mut paths: Vec<_> = entries.filter_map(|e| e.ok().map(|e| e.path())).collect();
    paths.sort();
    for p in paths {
        if p.to_string_lossy().ends_with(".bpf.o")
            && let Ok(data) = std::fs::read(&p)
            && let Some(btf) = elf_section(&data, ".BTF")
        {
            out.push((p.file_name().unwrap().to_string_lossy().into_owned(), btf));
        }
    }
    out
}

struct Tally {
    /// Distinct kernel error messages seen (digits and names blanked).
    messages: std::collections::BTreeSet<String>,
    total: usize,
    errno_agree: usize,
    log_agree: usize,
    log_compared: usize,
    failures: Vec<String>,
}

impl Tally {
    fn new() -> Tally {
        Tally {
            messages: std::collections::BTreeSet::new(),
            total: 0,
            errno_agree: 0,
            log_agree: 0,
            log_compared: 0,
            failures: Vec::new(),
        }
    }

    /// Runs one blob through both and records the comparison. Returns our errno.
    fn check(&mut self, name: &str, blob: &[u8]) -> i32 {
        let mut ours_log = String::new();
        let ours = Btf::parse_for_load_with_log(blob, &mut ours_log);
        let our_errno = ours.as_ref().err().map_or(0, |e| e.errno.0);
        // Our own error text must be the tail of our full log for type errors.
        if let Err(e) = &ours
            && let Some(last) = e.log.lines().last()
        {
            assert!(
                ours_log.contains(last),
                "{name}: error line {last:?} missing from the full log"
            );
        }
        // The lenient model check must agree with the raw one on anything we accept.
        if let Ok(btf) = &ours {
            assert_eq!(btf.check_load(), Ok(()), "{name}: check_load disagrees");
        }
        let k = kernel_load(blob, LOG_SIZE);
        self.total += 1;
        if let (Err(e), Some(_)) = (&ours, &k.log)
            && let Some(last) = e.log.lines().last()
        {
            // "[5] STRUCT foo size=8 vlen=2 Member exceeds struct_size" -> the message.
            let msg = last
                .rsplit_once(|c: char| c.is_ascii_digit())
                .map_or(last, |(_, m)| m);
            self.messages.insert(format!("{} {}", e.errno, msg.trim()));
        }
        let errno_ok = k.errno == our_errno;
        if errno_ok {
            self.errno_agree += 1;
        }
        let mut log_ok = true;
        if let Some(klog) = &k.log {
            self.log_compared += 1;
            log_ok = *klog == ours_log;
            if log_ok {
                self.log_agree += 1;
            }
        }
        if !errno_ok || !log_ok {
            let ktail: String = k
                .log
                .as_deref()
                .map(|l| l.lines().rev().take(3).collect::<Vec<_>>().join(" | "))
                .unwrap_or_default();
            let otail: String = ours_log
                .lines()
                .rev()
                .take(3)
                .collect::<Vec<_>>()
                .join(" | ");
            self.failures.push(format!(
                "{name}: kernel errno {} ours {}\n  kernel log tail: {ktail}\n  our log tail:    {otail}",
                k.errno, our_errno
            ));
        }
        our_errno
    }

    fn report(&self, what: &str) {
        println!(
            "{what}: {} blobs, errno agreement {}/{}, log agreement {}/{}, {} distinct errors",
            self.total,
            self.errno_agree,
            self.total,
            self.log_agree,
            self.log_compared,
            self.messages.len()
        );
        for f in self.failures.iter().take(40) {
            println!("  MISMATCH {f}");
        }
    }
}

fn skip() -> bool {
    if let Some(why) = kernel_unavailable() {
        println!("skipping kernel differential test: {why}");
        return true;
    }
    false
}

#[test]
fn valid_blobs_agree_with_kernel() {
    if skip() {
        return;
    }
    let mut t = Tally::new();
    let mut ours = Vec::new();
    for (name, b) in valid_blobs() {
        ours.push((t.check(&name, &b), name));
    }
    t.report("valid");
    for (errno, name) in ours {
        if errno != 0 {
            let b = valid_blobs()
                .into_iter()
                .find(|(n, _)| *n == name)
                .unwrap()
                .1;
            println!("{:?}", Btf::parse_for_load(&b));
        }
        assert_eq!(errno, 0, "{name}: we reject a valid blob");
    }
    assert!(t.failures.is_empty(), "{} mismatches", t.failures.len());
}

#[test]
fn invalid_blobs_agree_with_kernel() {
    if skip() {
        return;
    }
    let cases = invalid_blobs();
    assert!(cases.len() >= 100, "only {} cases", cases.len());
    let mut t = Tally::new();
    let mut rejected = 0;
    for (name, b) in &cases {
        if t.check(name, b) != 0 {
            rejected += 1;
        }
    }
    t.report("hand-made");
    println!("  ({rejected} of {} rejected)", cases.len());
    assert!(rejected >= 100, "only {rejected} cases are rejections");
    assert!(t.failures.is_empty(), "{} mismatches", t.failures.len());
}

/// Roughly what libbpf does before loading an object's BTF: extern functions and
/// variables become global, and each `DATASEC` gets the size its entries span.
fn sanitize(raw: &[u8]) -> Option<Vec<u8>> {
    use structops_btf::{Type, TypeKind};
    let btf = Btf::parse(raw).ok()?;
    let mut b = BtfBuilder::from_btf(&btf);
    for (id, t) in btf.types().iter().enumerate().skip(1) {
        let kind = match &t.kind {
            TypeKind::Func { proto, linkage } if *linkage == Linkage::Extern => TypeKind::Func {
                proto: *proto,
                linkage: Linkage::Global,
            },
            TypeKind::Var { ty, linkage } if *linkage == Linkage::Extern => TypeKind::Var {
                ty: *ty,
                linkage: Linkage::Global,
            },
            TypeKind::Datasec { size: 0, vars } => {
                let mut vars = vars.clone();
                let mut off = 0;
                for v in &mut vars {
                    v.offset = v.offset.max(off);
                    off = v.offset + v.size;
                }
                TypeKind::Datasec {
                    size: off.max(1),
                    vars,
                }
            }
            _ => continue,
        };
        b.set(
            id as u32,
            Type {
                name_off: t.name_off,
                kind,
            },
        );
    }
    Some(b.encode())
}

#[test]
fn object_btf_agrees_with_kernel() {
    if skip() {
        return;
    }
    let objs = object_btfs();
    if objs.is_empty() {
        println!("skipping: no bpf/*.bpf.o objects");
        return;
    }
    let mut t = Tally::new();
    for (name, b) in &objs {
        let errno = t.check(name, b);
        let why = Btf::parse_for_load(b)
            .err()
            .map(|e| e.log)
            .unwrap_or_default();
        println!("  {name}: errno {errno} {why:?}");
        if let Some(fixed) = sanitize(b) {
            let errno = t.check(&format!("{name} (sanitized)"), &fixed);
            let why = Btf::parse_for_load(&fixed)
                .err()
                .map(|e| e.log)
                .unwrap_or_default();
            println!("  {name} sanitized: errno {errno} {why:?}");
        }
    }
    t.report("object .BTF");
    assert!(t.failures.is_empty(), "{} mismatches", t.failures.len());
}

/// Applies one random edit to `b`.
fn mutate(rng: &mut Rng, b: &mut Vec<u8>) {
    let interesting = [
        0u32,
        1,
        2,
        3,
        4,
        7,
        8,
        12,
        16,
        24,
        31,
        32,
        33,
        64,
        128,
        255,
        0xffff,
        0x10000,
        0xfffff,
        0x100000,
        0x7fff_ffff,
        0x8000_0000,
        0xffff_fffe,
        0xffff_ffff,
    ];
    let len = b.len();
    // The type section of the (unmutated) header, for edits that keep the header intact.
    let type_words = if len >= 28 { (len - 24) / 4 } else { 0 };
    match rng.below(20) {
        0..=6 if type_words > 0 => {
            // A bit of the type or string section.
            let bit = rng.below((len as u64 - 24) * 8) as usize;
            b[24 + bit / 8] ^= 1 << (bit % 8);
        }
        7..=12 if type_words > 0 => {
            // An aligned word (most of the structure lives in the type section).
            let off = 24 + 4 * rng.below(type_words as u64) as usize;
            let v = if rng.below(2) == 0 {
                interesting[rng.below(interesting.len() as u64) as usize]
            } else {
                let cur = u32::from_le_bytes(b[off..off + 4].try_into().unwrap());
                cur.wrapping_add(rng.below(5) as u32).wrapping_sub(2)
            };
            put32(b, off, v);
        }
        13 | 14 if type_words > 0 => {
            // The kind byte of some word, as if it were a type's info.
            let off = 24 + 4 * rng.below(type_words as u64) as usize;
            b[off + 3] = rng.below(21) as u8 | if rng.below(4) == 0 { 0x80 } else { 0 };
        }
        15 if len >= 24 => {
            // A header field.
            let off = 4 * (1 + rng.below(5) as usize);
            let cur = u32::from_le_bytes(b[off..off + 4].try_into().unwrap());
            let v = match rng.below(3) {
                0 => interesting[rng.below(interesting.len() as u64) as usize],
                1 => cur.wrapping_add(4),
                _ => cur.wrapping_sub(4),
            };
            put32(b, off, v);
        }
        16 => {
            let cut = rng.below(len as u64 + 1) as usize;
            b.truncate(cut);
        }
        17 => {
            // Any bit, header included.
            let bit = rng.below(len as u64 * 8) as usize;
            b[bit / 8] ^= 1 << (bit % 8);
        }
        _ => {
            let at = rng.below(len as u64 + 1) as usize;
            let n = 1 + rng.below(8) as usize;
            let bytes: Vec<u8> = (0..n).map(|_| rng.next() as u8).collect();
            b.splice(at..at, bytes);
        }
    }
}

#[test]
fn random_mutations_agree_with_kernel() {
    if skip() {
        return;
    }
    let seeds: Vec<Vec<u8>> = valid_blobs()
        .into_iter()
        .map(|(_, b)| b)
        .chain(
            invalid_blobs()
                .into_iter()
                .map(|(_, b)| b)
                .filter(|b| b.len() > 40),
        )
        .chain(
            object_btfs()
                .into_iter()
                .flat_map(|(_, b)| sanitize(&b).into_iter().chain([b])),
        )
        .collect();
    println!("{} seed blobs", seeds.len());
    let mut rng = Rng(0x5eed_b7f0);
    let mut t = Tally::new();
    let n = 6000;
    let mut accepted = 0;
    for i in 0..n {
        let mut b = seeds[rng.below(seeds.len() as u64) as usize].clone();
        let edits = 1 + rng.below(3);
        for _ in 0..edits {
            if b.len() < 8 {
                break;
            }
            mutate(&mut rng, &mut b);
        }
        if t.check(&format!("mutation #{i}"), &b) == 0 {
            accepted += 1;
        }
    }
    t.report("mutations");
    println!("  ({accepted} of {n} accepted)");
    assert!(t.failures.is_empty(), "{} mismatches", t.failures.len());
}

#[test]
fn vmlinux_validates() {
    let Ok(data) = std::fs::read("/sys/kernel/btf/vmlinux") else {
        println!("skipping: /sys/kernel/btf/vmlinux not readable");
        return;
    };
    let start = std::time::Instant::now();
    let lenient = Btf::parse(&data).map(|b| b.len());
    println!(
        "parse(vmlinux) (libbpf-lenient, for scale): {lenient:?} in {:?}",
        start.elapsed()
    );
    let start = std::time::Instant::now();
    let btf = Btf::parse_for_load(&data);
    let elapsed = start.elapsed();
    println!(
        "parse_for_load(vmlinux): {:?} in {elapsed:?}",
        btf.as_ref().map(|b| b.len())
    );
    let btf = btf.expect("vmlinux must pass the kernel's checks");
    let start = std::time::Instant::now();
    assert_eq!(btf.validate(), Ok(()));
    println!("validate(vmlinux): {:?}", start.elapsed());
    // The kernel agrees (when we may ask it).
    if kernel_unavailable().is_none() {
        let start = std::time::Instant::now();
        let k = kernel_load(&data, 0);
        println!("the kernel's BPF_BTF_LOAD(vmlinux): {:?}", start.elapsed());
        assert_eq!(
            k.errno, 0,
            "the kernel rejects its own vmlinux BTF as user BTF"
        );
    }
}
