//! The value printer against real bpftool: create `ARRAY` maps with BTF in the kernel,
//! fill them, and compare `bpftool map dump` (plain and `-j`) with our rendering.

mod common;

use std::process::Command;

use common::*;
use structops_btf::value::{
    Formatted, Style, ValuePrinter, map_dump_plain, map_dump_plain_percpu, map_entry_json,
};
use structops_btf::{
    Btf, BtfBuilder, Composite, INT_BOOL, INT_CHAR, INT_SIGNED, Linkage, Member, Type, TypeId,
    TypeKind, VarSecInfo,
};

/// The BTF of the test maps: key `__u32`, a rich value struct, and a `.data`-style section.
struct Fixture {
    btf: Btf,
    key: TypeId,
    value: TypeId,
    value_size: u32,
    datasec: TypeId,
    datasec_size: u32,
}

fn fixture() -> Fixture {
    let mut b = BtfBuilder::new();
    let u32_ = b.add_int("__u32", 4, 0);
    let int = b.add_int("int", 4, INT_SIGNED);
    let u8_ = b.add_int("unsigned char", 1, 0);
    let s8 = b.add_int("signed char", 1, INT_SIGNED);
    let u16_ = b.add_int("unsigned short", 2, 0);
    let s16 = b.add_int("short", 2, INT_SIGNED);
    let u64_ = b.add_int("unsigned long long", 8, 0);
    let s64 = b.add_int("long long", 8, INT_SIGNED);
    let chr = b.add_int("char", 1, INT_CHAR);
    let boolean = b.add_int("_Bool", 1, INT_BOOL);
    let u128_ = b.add_int("unsigned __int128", 16, 0);
    let s128 = b.add_int("__int128", 16, INT_SIGNED);
    // An int with a bit offset (pre-kflag bitfield encoding) and an irregular width.
    let odd_name = b.add_string("odd");
    let odd = b.add_type(Type {
        name_off: odd_name,
        kind: TypeKind::Int {
            size: 4,
            encoding: 0,
            offset: 0,
            bits: 20,
        },
    });
    let color = b.add_enum(
        "color",
        4,
        false,
        &[("RED", 0), ("GREEN", 1), ("MAX", 0xffff_ffff)],
    );
    let small = b.add_enum("small", 1, true, &[("NEG", -3), ("POS", 3)]);
    let big = b.add_enum("big", 8, false, &[("HUGE", 1 << 40), ("ONE", 1)]);
    let name = b.add_array(chr, int, 8);
    let bytes = b.add_array(u8_, int, 4);
    let cchr = b.add_const(chr);
    let cname = b.add_array(cchr, int, 6);
    let td = b.add_typedef("u16_t", u16_);
    let vol = b.add_volatile(td);
    let pt = b.add_struct("pt", 8, &[("x", int, 0), ("y", int, 32)]);
    let pts = b.add_array(pt, int, 2);
    let grid = b.add_array(bytes, int, 2);
    let anon = b.add_union("", 8, &[("as_u64", u64_, 0), ("as_s64", s64, 0)]);
    let flags = b.add_bitfield_composite(
        false,
        "flags",
        4,
        &[
            ("a", u32_, 0, 1),
            ("b", u32_, 1, 3),
            ("c", int, 4, 5),
            ("d", color, 9, 7),
            ("e", u32_, 16, 16),
        ],
    );
    let node = b.reserve();
    let node_ptr = b.add_ptr(node);
    let proto = b.add_func_proto(int, &[("n", node_ptr)]);
    let fptr = b.add_ptr(proto);
    let members: Vec<(&str, TypeId)> = vec![
        ("u8", u8_),
        ("s8", s8),
        ("u16", u16_),
        ("s16", s16),
        ("u32", u32_),
        ("s32", int),
        ("u64", u64_),
        ("s64", s64),
        ("c", chr),
        ("c2", chr),
        ("ok", boolean),
        ("odd", odd),
        ("color", color),
        ("color2", color),
        ("small", small),
        ("big", big),
        ("big2", big),
        ("name", name),
        ("bytes", bytes),
        ("cname", cname),
        ("short_t", vol),
        ("pts", pts),
        ("grid", grid),
        ("", anon),
        ("flags", flags),
        ("next", node_ptr),
        ("cb", fptr),
        ("wide", u128_),
        ("swide", s128),
    ];
    // Lay members out with natural alignment.
    let mut off = 0u32;
    let mut ms = Vec::new();
    for (n, ty) in &members {
        let size = b.clone().build().size_of(*ty).unwrap();
        let align = b.clone().build().align_of(*ty).unwrap();
        off = off.div_ceil(align) * align;
        ms.push(Member {
            name_off: b.add_string(n),
            ty: *ty,
            offset: off * 8,
        });
        off += size;
    }
    let size = off.div_ceil(16) * 16;
    let value = node;
    let node_name = b.add_string("value_t");
    b.set(
        node,
        Type {
            name_off: node_name,
            kind: TypeKind::Struct(Composite {
                size,
                kflag: false,
                members: ms,
            }),
        },
    );
    let v1 = b.add_var("counter", u64_, Linkage::Global);
    let v2 = b.add_var("label", name, Linkage::Static);
    let v3 = b.add_var("where", pt, Linkage::Global);
    let datasec = b.add_datasec(
        ".data",
        32,
        &[
            VarSecInfo {
                ty: v1,
                offset: 0,
                size: 8,
            },
            VarSecInfo {
                ty: v2,
                offset: 8,
                size: 8,
            },
            VarSecInfo {
                ty: v3,
                offset: 16,
                size: 8,
            },
        ],
    );
    Fixture {
        btf: b.build(),
        key: u32_,
        value,
        value_size: size,
        datasec,
        datasec_size: 32,
    }
}

/// Deterministic value bytes for entry `i`, with strings and enums that exercise both
/// the named and the numeric paths.
fn value_bytes(f: &Fixture, i: u32) -> Vec<u8> {
    let mut rng = Rng(0xfeed + u64::from(i));
    let mut v: Vec<u8> = (0..f.value_size).map(|_| rng.next() as u8).collect();
    let t = f.btf.ty(f.value).unwrap();
    let c = t.composite().unwrap();
    for m in &c.members {
        let name = f.btf.name(m.name_off).unwrap();
        let o = (m.offset / 8) as usize;
        match (name, i) {
            ("name", 0) => v[o..o + 8].copy_from_slice(b"hi bpf\0\0"),
            ("name", 1) => v[o..o + 8].copy_from_slice(b"a\\b\"c\0xy"),
            ("cname", _) => v[o..o + 6].copy_from_slice(b"const\0"),
            ("c", 0) => v[o] = b'A',
            ("c", 1) => v[o] = 0x07,
            ("c2", _) => v[o] = 0xc8,
            ("color", _) => v[o..o + 4].copy_from_slice(&(i % 2).to_le_bytes()),
            ("color2", _) => v[o..o + 4].copy_from_slice(&u32::MAX.to_le_bytes()),
            ("small", _) => v[o] = if i == 0 { (-3i8) as u8 } else { 0x80 },
            ("big", _) => v[o..o + 8].copy_from_slice(&(1u64 << 40).to_le_bytes()),
            ("ok", _) => v[o] = i as u8,
            ("next", 2) => v[o..o + 8].copy_from_slice(&[0; 8]),
            _ => {}
        }
    }
    v
}

fn datasec_bytes() -> Vec<u8> {
    let mut v = vec![0u8; 32];
    v[0..8].copy_from_slice(&0x1234_5678_9abcu64.to_le_bytes());
    v[8..16].copy_from_slice(b"global\0\0");
    v[16..20].copy_from_slice(&(-7i32).to_le_bytes());
    v[20..24].copy_from_slice(&9i32.to_le_bytes());
    v
}

fn bpftool(args: &[&str]) -> Option<String> {
    let out = Command::new("bpftool").args(args).output().ok()?;
    if !out.status.success() {
        println!(
            "bpftool {args:?} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        return None;
    }
    Some(String::from_utf8_lossy(&out.stdout).into_owned())
}

#[test]
fn ours_matches_bpftool_map_dump() {
    if let Some(why) = kernel_unavailable() {
        println!("skipping: {why}");
        return;
    }
    if bpftool(&["version"]).is_none() {
        println!("skipping: bpftool not available");
        return;
    }
    let f = fixture();
    assert_eq!(Btf::parse_for_load(&f.btf.encode()).err(), None);
    let btf_fd = kernel_load_fd(&f.btf.encode()).expect("BTF loads");
    let printer = ValuePrinter::new(&f.btf);

    // A struct-valued array map.
    let map = create_array_map(&btf_fd, "so_values", 4, f.value_size, 3, f.key, f.value)
        .expect("map create");
    let mut entries = Vec::new();
    for i in 0..3u32 {
        let v = value_bytes(&f, i);
        map_update(&map, &i.to_le_bytes(), &v).expect("update");
        let k = printer.format(f.key, &i.to_le_bytes()).unwrap();
        let fv = printer.format(f.value, &v).unwrap();
        entries.push((i.to_le_bytes().to_vec(), v, k, fv));
    }
    let id = map_id(&map).unwrap().to_string();
    let plain = bpftool(&["map", "dump", "id", &id]).expect("bpftool map dump");
    println!("bpftool map dump:\n{plain}");
    let ours_plain = map_dump_plain(entries.iter().map(|(_, _, k, v)| (Some(k), v)));
    if plain != ours_plain {
        println!("--- bpftool\n{plain}\n--- ours\n{ours_plain}");
    }
    assert_eq!(plain, ours_plain, "plain map dump differs");
    let json = bpftool(&["-j", "map", "dump", "id", &id]).expect("bpftool -j map dump");
    let theirs: serde_json::Value = serde_json::from_str(&json).expect("bpftool JSON");
    let ours = serde_json::Value::Array(
        entries
            .iter()
            .map(|(k, v, fk, fv)| map_entry_json(k, v, Some((Some(fk), fv))))
            .collect(),
    );
    if theirs != ours {
        println!(
            "--- bpftool\n{}\n--- ours\n{}",
            serde_json::to_string_pretty(&theirs).unwrap(),
            serde_json::to_string_pretty(&ours).unwrap()
        );
    }
    assert_eq!(theirs, ours, "JSON map dump differs");

    // A global-data map: no key type, the value is a DATASEC.
    let map = create_array_map(&btf_fd, "so_data", 4, f.datasec_size, 1, 0, f.datasec)
        .expect("datasec map create");
    let d = datasec_bytes();
    map_update(&map, &0u32.to_le_bytes(), &d).expect("update");
    let fv: Formatted = printer.format(f.datasec, &d).unwrap();
    let id = map_id(&map).unwrap().to_string();
    let plain = bpftool(&["map", "dump", "id", &id]).expect("bpftool map dump");
    assert_eq!(
        plain,
        map_dump_plain([(None, &fv)]),
        "plain datasec dump differs"
    );
    let json = bpftool(&["-j", "map", "dump", "id", &id]).expect("bpftool -j map dump");
    let theirs: serde_json::Value = serde_json::from_str(&json).expect("bpftool JSON");
    let ours = serde_json::json!([map_entry_json(&0u32.to_le_bytes(), &d, Some((None, &fv)))]);
    assert_eq!(theirs, ours, "JSON datasec dump differs");
    println!(
        "bpftool agrees on {} struct entries and one .data entry",
        entries.len()
    );
    // Our compact JSON text parses to the same value.
    let text = fv.to_text(Style::Json);
    assert_eq!(
        serde_json::from_str::<serde_json::Value>(&text).unwrap(),
        fv.to_json()
    );

    // A per-CPU map of the section type: one value per possible CPU.
    let Some(ncpu) = possible_cpus() else {
        println!("skipping the per-CPU part: no /sys/devices/system/cpu/possible");
        return;
    };
    let map = create_map(
        &btf_fd,
        6,
        "so_percpu",
        [4, f.datasec_size, 2, f.key, f.datasec],
    )
    .expect("percpu map create");
    let stride = (f.datasec_size as usize).div_ceil(8) * 8;
    let mut expected = Vec::new();
    for k in 0..2u32 {
        let mut buf = vec![0u8; stride * ncpu];
        let mut values = Vec::new();
        for cpu in 0..ncpu {
            let mut d = datasec_bytes();
            d[0] = (k * 16 + cpu as u32) as u8;
            buf[cpu * stride..cpu * stride + d.len()].copy_from_slice(&d);
            values.push(printer.format(f.datasec, &d).unwrap());
        }
        map_update(&map, &k.to_le_bytes(), &buf).expect("percpu update");
        expected.push((printer.format(f.key, &k.to_le_bytes()).unwrap(), values));
    }
    let id = map_id(&map).unwrap().to_string();
    let plain = bpftool(&["map", "dump", "id", &id]).expect("bpftool map dump");
    let ours = map_dump_plain_percpu(expected.iter().map(|(k, v)| (Some(k), v.as_slice())));
    if plain != ours {
        println!("--- bpftool\n{plain}\n--- ours\n{ours}");
    }
    assert_eq!(plain, ours, "per-CPU plain dump differs");
}
