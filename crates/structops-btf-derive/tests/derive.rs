//! Behaviour of `#[derive(Btf)]`: recursion, unions, enums, arrays, renames, typedefs,
//! function pointers and agreement with rustc's layout.

use std::ffi::c_void;
use std::mem::{ManuallyDrop, offset_of, size_of};

use structops_btf::{
    Btf, BtfType, BtfTypes, INT_BOOL, INT_SIGNED, Kind, TypeId, TypeKind, structurally_equal,
};
use structops_btf_derive::Btf;

/// Emits `T` and round-trips the result through the wire format and the checked parser.
fn btf_of<T: BtfType>() -> (Btf, TypeId) {
    let mut types = BtfTypes::new();
    let id = types.id_of::<T>();
    let btf = Btf::parse(&types.encode()).expect("derived BTF parses");
    (btf, id)
}

/// The `(name, type, bit offset)` members of composite `id`.
fn members(btf: &Btf, id: TypeId) -> Vec<(String, TypeId, u32)> {
    let c = btf.ty(id).unwrap().composite().expect("a composite");
    c.members
        .iter()
        .map(|m| {
            (
                btf.name(m.name_off).unwrap().to_owned(),
                m.ty,
                m.bit_offset(c.kflag),
            )
        })
        .collect()
}

#[derive(Btf)]
#[repr(C)]
struct Node {
    next: *mut Node,
    prev: *mut Self,
    value: u32,
}

#[test]
fn recursive_struct_through_pointers() {
    let (btf, id) = btf_of::<Node>();
    assert_eq!(btf.ty(id).unwrap().kind(), Kind::Struct);
    let m = members(&btf, id);
    assert_eq!(m.len(), 3);
    // Both pointers are the same PTR, and it points back at the struct.
    assert_eq!(m[0].1, m[1].1);
    assert_eq!(btf.ty(m[0].1).unwrap().kind, TypeKind::Ptr { target: id });
    // Exactly one struct named Node.
    assert_eq!(btf.ids_by_name("Node"), &[id]);
}

#[derive(Btf)]
#[repr(C)]
struct Parent {
    first_child: *mut Child,
    count: usize,
}

#[derive(Btf)]
#[repr(C)]
struct Child {
    parent: *const Parent,
    sibling: *mut Child,
}

#[test]
fn mutual_recursion_and_const_pointers() {
    let (btf, parent) = btf_of::<Parent>();
    let child = btf.find_by_name_kind("Child", Kind::Struct).unwrap();
    let pm = members(&btf, parent);
    assert_eq!(
        btf.ty(pm[0].1).unwrap().kind,
        TypeKind::Ptr { target: child }
    );
    let cm = members(&btf, child);
    // *const Parent is `const struct Parent *`: PTR -> CONST -> Parent.
    let TypeKind::Ptr { target } = btf.ty(cm[0].1).unwrap().kind else {
        panic!("not a pointer");
    };
    assert_eq!(
        btf.ty(target).unwrap().kind,
        TypeKind::Const { target: parent }
    );
    assert_eq!(
        btf.ty(cm[1].1).unwrap().kind,
        TypeKind::Ptr { target: child }
    );
}

#[derive(Btf)]
#[repr(C)]
union Value {
    word: u64,
    half: [u32; 2],
    byte: u8,
    ptr: *mut c_void,
    flag: bool,
    real: f64,
    boxed: ManuallyDrop<Pair>,
}

#[derive(Btf, Clone, Copy)]
#[repr(C)]
struct Pair {
    a: u8,
    b: u64,
}

#[test]
fn union_members_all_at_zero() {
    let (btf, id) = btf_of::<Value>();
    let t = btf.ty(id).unwrap();
    assert_eq!(t.kind(), Kind::Union);
    assert_eq!(btf.size_of(id).unwrap() as usize, size_of::<Value>());
    let m = members(&btf, id);
    assert_eq!(m.len(), 7);
    assert!(m.iter().all(|(_, _, off)| *off == 0));
    let flag = &m[4];
    assert_eq!(
        btf.ty(flag.1).unwrap().kind,
        TypeKind::Int {
            size: 1,
            encoding: INT_BOOL,
            offset: 0,
            bits: 8
        }
    );
    assert_eq!(btf.ty(m[5].1).unwrap().kind, TypeKind::Float { size: 8 });
    // ManuallyDrop<Pair> is Pair.
    assert_eq!(btf.type_name(m[6].1).unwrap(), "Pair");
    assert_eq!(btf.ty(m[3].1).unwrap().kind, TypeKind::Ptr { target: 0 });
}

#[derive(Btf, Clone, Copy)]
#[repr(u8)]
#[btf(name = "state")]
enum State {
    Idle = 1,
    Busy = 7,
    #[btf(name = "STATE_DONE")]
    Done = 200,
}

#[derive(Btf)]
#[repr(i16)]
enum Delta {
    Down = -3,
    Up = 3,
}

#[derive(Btf)]
#[repr(C)]
enum Plain {
    A,
    B,
    C = 10,
}

#[derive(Btf)]
#[repr(C)]
enum Negative {
    Minus = -1,
    Zero,
}

#[derive(Btf)]
#[repr(u64)]
enum Wide {
    Big = u64::MAX,
    Small = 1,
}

fn enum_values(btf: &Btf, id: TypeId) -> (u32, bool, Vec<(String, u64)>) {
    let e = btf.ty(id).unwrap().enum_body().expect("an enum");
    let values = e
        .values
        .iter()
        .map(|v| (btf.name(v.name_off).unwrap().to_owned(), v.value))
        .collect();
    (e.size, e.signed, values)
}

#[test]
fn enums_take_size_signedness_and_values_from_the_repr() {
    let (btf, id) = btf_of::<State>();
    assert_eq!(btf.ty(id).unwrap().kind(), Kind::Enum);
    assert_eq!(btf.type_name(id).unwrap(), "state");
    assert_eq!(
        enum_values(&btf, id),
        (
            1,
            false,
            vec![
                ("Idle".into(), 1),
                ("Busy".into(), 7),
                ("STATE_DONE".into(), 200)
            ]
        )
    );

    let (btf, id) = btf_of::<Delta>();
    let (size, signed, values) = enum_values(&btf, id);
    assert_eq!((size, signed), (2, true));
    assert_eq!(values[0], ("Down".into(), (-3i32) as u32 as u64));

    let (btf, id) = btf_of::<Plain>();
    assert_eq!(
        enum_values(&btf, id),
        (
            size_of::<Plain>() as u32,
            false,
            vec![("A".into(), 0), ("B".into(), 1), ("C".into(), 10)]
        )
    );

    let (btf, id) = btf_of::<Negative>();
    let (size, signed, _) = enum_values(&btf, id);
    assert_eq!((size, signed), (4, true));

    let (btf, id) = btf_of::<Wide>();
    assert_eq!(btf.ty(id).unwrap().kind(), Kind::Enum64);
    assert_eq!(
        enum_values(&btf, id),
        (
            8,
            false,
            vec![("Big".into(), u64::MAX), ("Small".into(), 1)]
        )
    );
}

#[derive(Btf)]
#[repr(C)]
struct Grid {
    cells: [[u16; 3]; 2],
    rows: [*mut Grid; 4],
    tail: [u32; 0],
}

#[test]
fn arrays_of_arrays_and_flexible_arrays() {
    let (btf, id) = btf_of::<Grid>();
    let m = members(&btf, id);
    let TypeKind::Array { elem, len, .. } = btf.ty(m[0].1).unwrap().kind else {
        panic!("cells is not an array");
    };
    assert_eq!(len, 2);
    let TypeKind::Array {
        elem: inner,
        len: inner_len,
        ..
    } = btf.ty(elem).unwrap().kind
    else {
        panic!("cells[0] is not an array");
    };
    assert_eq!(inner_len, 3);
    assert_eq!(btf.type_name(inner).unwrap(), "short unsigned int");
    assert_eq!(btf.size_of(m[0].1).unwrap(), 12);
    let TypeKind::Array { elem, len, .. } = btf.ty(m[1].1).unwrap().kind else {
        panic!("rows is not an array");
    };
    assert_eq!(len, 4);
    assert_eq!(btf.ty(elem).unwrap().kind, TypeKind::Ptr { target: id });
    let TypeKind::Array { len, .. } = btf.ty(m[2].1).unwrap().kind else {
        panic!("tail is not an array");
    };
    assert_eq!(len, 0);
    assert_eq!(m[2].2 as usize, 8 * offset_of!(Grid, tail));
}

#[derive(Btf)]
#[repr(C)]
#[btf(name = "sock_state")]
struct SockState {
    #[btf(name = "snd_cwnd")]
    cwnd: u32,
    r#type: u8,
    #[btf(typedef = "u64, __u64")]
    bytes: u64,
    #[btf(typedef = "s32")]
    delta: i32,
}

#[test]
fn renames_raw_identifiers_and_typedef_chains() {
    let (btf, id) = btf_of::<SockState>();
    assert_eq!(btf.type_name(id).unwrap(), "sock_state");
    assert!(btf.find_by_name_kind("SockState", Kind::Struct).is_none());
    let m = members(&btf, id);
    let names: Vec<&str> = m.iter().map(|(n, _, _)| n.as_str()).collect();
    assert_eq!(names, ["snd_cwnd", "type", "bytes", "delta"]);
    // bytes: u64 -> __u64 -> long long unsigned int
    let u64_td = btf.ty(m[2].1).unwrap();
    assert_eq!(btf.type_name(m[2].1).unwrap(), "u64");
    let inner = u64_td.target().unwrap();
    assert_eq!(btf.ty(inner).unwrap().kind(), Kind::Typedef);
    assert_eq!(btf.type_name(inner).unwrap(), "__u64");
    let base = btf.ty(inner).unwrap().target().unwrap();
    assert_eq!(btf.type_name(base).unwrap(), "long long unsigned int");
    assert_eq!(
        btf.resolve(m[3].1).unwrap(),
        btf.find_by_name_kind("int", Kind::Int).unwrap()
    );
}

#[derive(Btf)]
#[repr(C)]
struct Mixed {
    a: u8,
    b: u64,
    c: u16,
    d: [u8; 3],
    e: u32,
    f: Pair,
    g: bool,
    h: Option<unsafe extern "C" fn()>,
}

#[derive(Btf)]
#[repr(C, packed)]
struct Packed {
    a: u8,
    b: u64,
    c: u16,
}

#[derive(Btf)]
#[repr(C, align(16))]
struct Aligned {
    a: u8,
    b: u32,
}

#[test]
fn offsets_and_sizes_agree_with_rustc() {
    let (btf, id) = btf_of::<Mixed>();
    let expected = [
        ("a", offset_of!(Mixed, a)),
        ("b", offset_of!(Mixed, b)),
        ("c", offset_of!(Mixed, c)),
        ("d", offset_of!(Mixed, d)),
        ("e", offset_of!(Mixed, e)),
        ("f", offset_of!(Mixed, f)),
        ("g", offset_of!(Mixed, g)),
        ("h", offset_of!(Mixed, h)),
    ];
    let got: Vec<(String, u32)> = members(&btf, id)
        .into_iter()
        .map(|(n, _, o)| (n, o))
        .collect();
    let want: Vec<(String, u32)> = expected
        .iter()
        .map(|&(n, o)| (n.to_owned(), 8 * o as u32))
        .collect();
    assert_eq!(got, want);
    assert_eq!(btf.size_of(id).unwrap() as usize, size_of::<Mixed>());
    // The nested struct's own layout is rustc's too.
    let pair = btf.find_by_name_kind("Pair", Kind::Struct).unwrap();
    assert_eq!(members(&btf, pair)[1].2 as usize, 8 * offset_of!(Pair, b));

    let (btf, id) = btf_of::<Packed>();
    let offs: Vec<u32> = members(&btf, id).iter().map(|m| m.2).collect();
    assert_eq!(offs, [0, 8, 72]);
    assert_eq!(btf.size_of(id).unwrap(), 11);

    let (btf, id) = btf_of::<Aligned>();
    assert_eq!(btf.size_of(id).unwrap(), 16);
    assert_eq!(members(&btf, id)[1].2 as usize, 8 * offset_of!(Aligned, b));
}

#[derive(Btf)]
#[repr(C)]
struct Callbacks {
    named: Option<unsafe extern "C" fn(sk: *mut Node, ack: u32, acked: u32)>,
    #[btf(params = "sk, ack, acked")]
    attr_named: Option<unsafe extern "C" fn(*mut Node, u32, u32)>,
    #[btf(params = "ctx, _")]
    overridden: unsafe extern "C" fn(sk: *mut Node, flags: u64) -> bool,
    unnamed: Option<extern "C" fn(_: *const c_void, u32) -> u8>,
    variadic: Option<unsafe extern "C" fn(fmt: *const u8, ...) -> i32>,
    nested: *mut Option<unsafe extern "C" fn(u32) -> u32>,
}

fn params_of(btf: &Btf, ptr: TypeId) -> (TypeId, Vec<(String, TypeId)>) {
    let proto = btf
        .func_ptr_proto(ptr)
        .unwrap()
        .expect("a function pointer");
    let (ret, params) = btf.func_proto(proto).unwrap();
    (
        ret,
        params
            .iter()
            .map(|p| (btf.name(p.name_off).unwrap().to_owned(), p.ty))
            .collect(),
    )
}

#[test]
fn function_pointer_members() {
    let (btf, id) = btf_of::<Callbacks>();
    let m = members(&btf, id);
    let node = btf.find_by_name_kind("Node", Kind::Struct).unwrap();

    let (ret, named) = params_of(&btf, m[0].1);
    assert_eq!(ret, 0, "no return type is void");
    let names: Vec<&str> = named.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(names, ["sk", "ack", "acked"]);
    assert_eq!(
        btf.ty(named[0].1).unwrap().kind,
        TypeKind::Ptr { target: node }
    );
    // Same signature and names: the same pointer type.
    assert_eq!(m[0].1, m[1].1);

    let (ret, over) = params_of(&btf, m[2].1);
    assert_eq!(btf.type_name(ret).unwrap(), "_Bool");
    let names: Vec<&str> = over.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(names, ["ctx", ""]);
    assert_eq!(btf.type_name(over[1].1).unwrap(), "long long unsigned int");

    let (ret, unnamed) = params_of(&btf, m[3].1);
    assert_eq!(btf.type_name(ret).unwrap(), "unsigned char");
    assert!(unnamed.iter().all(|(n, _)| n.is_empty()));

    let (ret, var) = params_of(&btf, m[4].1);
    assert_eq!(btf.type_name(ret).unwrap(), "int");
    assert_eq!(var.len(), 2);
    assert_eq!(
        var[1],
        (String::new(), 0),
        "`...` is a trailing void parameter"
    );

    // A function pointer below a pointer goes through the trait impls (no names).
    let TypeKind::Ptr { target } = btf.ty(m[5].1).unwrap().kind else {
        panic!("nested is not a pointer");
    };
    let (ret, nested) = params_of(&btf, target);
    assert_eq!(btf.type_name(ret).unwrap(), "unsigned int");
    assert_eq!(nested.len(), 1);
}

#[derive(Btf)]
#[repr(C)]
struct UsesPairTwice {
    left: Pair,
    right: *mut Pair,
    state: State,
}

#[derive(Btf)]
#[repr(C)]
struct Empty;

#[test]
fn shared_types_are_emitted_once_across_roots() {
    let mut types = BtfTypes::new();
    let a = types.id_of::<UsesPairTwice>();
    let b = types.id_of::<Mixed>();
    let again = types.id_of::<UsesPairTwice>();
    let e = types.id_of::<Empty>();
    assert_eq!(a, again);
    assert_ne!(a, b);
    let btf = Btf::parse(&types.encode()).unwrap();
    assert_eq!(btf.ids_by_name("Pair").len(), 1);
    assert_eq!(btf.ids_by_name("unsigned char").len(), 1);
    assert_eq!(btf.size_of(e).unwrap(), 0);
    assert_eq!(
        members(
            &btf,
            btf.find_by_name_kind("UsesPairTwice", Kind::Struct)
                .unwrap()
        )[2]
        .2 as usize,
        8 * offset_of!(UsesPairTwice, state)
    );
}

mod runtime {
    pub use structops_btf::*;
}

#[derive(Btf)]
#[repr(C)]
#[btf(crate = "crate::runtime", name = "renamed_crate")]
struct ThroughReexport {
    f: Option<unsafe extern "C" fn(x: i32) -> i64>,
}

#[test]
fn crate_path_attribute() {
    let (btf, id) = btf_of::<ThroughReexport>();
    assert_eq!(btf.type_name(id).unwrap(), "renamed_crate");
    let (ret, _) = params_of(&btf, members(&btf, id)[0].1);
    assert_eq!(btf.type_name(ret).unwrap(), "long long int");
}

#[test]
fn same_declaration_twice_is_structurally_equal() {
    // Two tables built in different orders give different ids but equal structure.
    let mut t1 = BtfTypes::new();
    t1.id_of::<Value>();
    let a = t1.id_of::<Callbacks>();
    let mut t2 = BtfTypes::new();
    let b = t2.id_of::<Callbacks>();
    let (x, y) = (t1.build(), t2.build());
    assert_ne!(a, b);
    assert_eq!(structurally_equal(&x, a, &y, b), Ok(()));
    let int = y.find_by_name_kind("int", Kind::Int).unwrap();
    assert_eq!(
        y.ty(int).unwrap().kind,
        TypeKind::Int {
            size: 4,
            encoding: INT_SIGNED,
            offset: 0,
            bits: 32
        }
    );
}

/// `inet_connection_sock`'s `icsk_ca_state:5, icsk_ca_initialized:1, ...` byte.
#[derive(Btf)]
#[repr(C)]
struct WithBits {
    head: u32,
    #[btf(bitfields = "state:5, initialized:1, :1, locked:1")]
    flags: u8,
    tail: u8,
}

#[test]
fn bitfields_become_members_of_a_kind_flag_struct() {
    let mut types = BtfTypes::new();
    let id = types.id_of::<WithBits>();
    let btf = types.build();
    let t = btf.ty(id).unwrap();
    let c = t.composite().unwrap();
    assert!(c.kflag, "a struct with bitfields has the kind flag");
    let names: Vec<&str> = c
        .members
        .iter()
        .map(|m| btf.name(m.name_off).unwrap())
        .collect();
    assert_eq!(names, ["head", "state", "initialized", "locked", "tail"]);
    // (bit offset, bitfield size) as BTF encodes them with the kind flag.
    let layout: Vec<(u32, u32)> = c
        .members
        .iter()
        .map(|m| (m.offset & 0x00ff_ffff, m.offset >> 24))
        .collect();
    assert_eq!(layout, [(0, 0), (32, 5), (37, 1), (39, 1), (40, 0)]);
    // The member lookups decode the kind flag: `state` is at bit 32.
    let (_, bit) = btf.member_by_name(id, "state").unwrap().unwrap();
    assert_eq!(bit, 32);
    assert!(btf.member_by_name(id, "flags").unwrap().is_none());
    assert_eq!(btf.size_of(id).unwrap() as usize, size_of::<WithBits>());
    let _ = WithBits {
        head: 0,
        flags: 0,
        tail: 0,
    };
}
