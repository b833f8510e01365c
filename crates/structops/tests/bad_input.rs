//! Bad input to the runtime's `bpf(2)` face that the other suites leave out (see the "Bad
//! input" tables of `docs/CONFORMANCE.md`): map commands given buffers shorter than the
//! map's key or value (the Rust analog of a key or value pointer the kernel cannot copy,
//! `EFAULT` from `__bpf_copy_key` / `copy_from_user` / `copy_to_user`), NULL keys,
//! keys on key-less maps, unknown flags per command; and link and info commands given
//! descriptors of the wrong kind of object. Every expectation follows
//! `kernel/bpf/syscall.c` (6.12): the key is copied before the map type is looked at,
//! and a value is copied out only after the operation found something.

use structops::maps::*;
use structops::struct_ops::LinkCreateAttr;
use structops::struct_ops::link::BPF_STRUCT_OPS;
use structops::{Errno, ObjInfo, ProgLoadAttr, ProgType, Runtime, RuntimeConfig};
use structops_btf::{BtfBuilder, INT_SIGNED};
use structops_isa::assemble;

const NCPUS: u32 = 2;

fn rt() -> Runtime {
    Runtime::new(RuntimeConfig {
        ncpus: NCPUS,
        ..RuntimeConfig::default()
    })
}

/// The keyed map types whose values the syscall side reads and writes as bytes.
const KEYED: [MapType; 6] = [
    MapType::Hash,
    MapType::Array,
    MapType::PercpuHash,
    MapType::PercpuArray,
    MapType::LruHash,
    MapType::LruPercpuHash,
];

/// The value buffer a syscall moves for a map of `ty` with 8-byte values: one 8-byte
/// slot per CPU for per-CPU maps (`bpf_map_value_size`).
fn value_len(ty: MapType) -> usize {
    if ty.is_percpu() {
        8 * NCPUS as usize
    } else {
        8
    }
}

#[test]
fn short_keys_and_values_are_efault_on_every_keyed_map() {
    let rt = rt();
    let key = 1u32.to_ne_bytes();
    let short_key = [1u8; 3];
    for ty in KEYED {
        let m = rt
            .map_create(&MapCreateAttr::new(ty, 4, 8, 4))
            .unwrap_or_else(|e| panic!("{ty:?}: {e:?}"));
        let vl = value_len(ty);
        let value = vec![7u8; vl];
        rt.map_update_elem(&m, Some(&key), &value, BPF_ANY).unwrap();
        let mut out = vec![0u8; vl];
        let mut next = [0u8; 4];
        let cases: [(&str, Result<(), Errno>); 12] = [
            (
                "update, 3-byte key",
                rt.map_update_elem(&m, Some(&short_key), &value, BPF_ANY),
            ),
            (
                "update, NULL key",
                rt.map_update_elem(&m, None, &value, BPF_ANY),
            ),
            (
                "update, value one byte short",
                rt.map_update_elem(&m, Some(&key), &value[..vl - 1], BPF_ANY),
            ),
            (
                "lookup, 3-byte key",
                rt.map_lookup_elem(&m, Some(&short_key), &mut out, 0),
            ),
            (
                "lookup, NULL key",
                rt.map_lookup_elem(&m, None, &mut out, 0),
            ),
            (
                "lookup, output one byte short",
                rt.map_lookup_elem(&m, Some(&key), &mut out[..vl - 1], 0),
            ),
            (
                "delete, 3-byte key",
                rt.map_delete_elem(&m, Some(&short_key)),
            ),
            ("delete, NULL key", rt.map_delete_elem(&m, None)),
            (
                "get_next_key, 3-byte key",
                rt.map_get_next_key(&m, Some(&short_key), &mut next),
            ),
            (
                "get_next_key, 3-byte output",
                rt.map_get_next_key(&m, None, &mut next[..3]),
            ),
            (
                "lookup_and_delete, 3-byte key",
                rt.map_lookup_and_delete_elem(&m, Some(&short_key), &mut out, 0),
            ),
            (
                "lookup_and_delete, NULL key",
                rt.map_lookup_and_delete_elem(&m, None, &mut out, 0),
            ),
        ];
        for (what, got) in cases {
            assert_eq!(got, Err(Errno::EFAULT), "{ty:?}: {what}");
        }
        // A longer buffer is read only up to the map's size, as the kernel copies
        // key_size / value_size bytes from a larger user buffer.
        let mut long_key = key.to_vec();
        long_key.extend([0xee; 4]);
        let mut long_out = vec![0u8; vl + 4];
        rt.map_lookup_elem(&m, Some(&long_key), &mut long_out, 0)
            .unwrap_or_else(|e| panic!("{ty:?}: long buffers: {e:?}"));
        assert_eq!(&long_out[..vl], &value[..], "{ty:?}");
        // Nothing above changed the element.
        rt.map_lookup_elem(&m, Some(&key), &mut out, 0).unwrap();
        assert_eq!(out, value, "{ty:?}: the element survived");
    }
}

#[test]
fn unknown_flags_are_einval_on_every_keyed_map() {
    let rt = rt();
    let key = 1u32.to_ne_bytes();
    for ty in KEYED {
        let m = rt.map_create(&MapCreateAttr::new(ty, 4, 8, 4)).unwrap();
        let vl = value_len(ty);
        let value = vec![7u8; vl];
        let mut out = vec![0u8; vl];
        rt.map_update_elem(&m, Some(&key), &value, BPF_ANY).unwrap();
        // BPF_NOEXIST|BPF_EXIST, an unknown bit, BPF_F_LOCK without a bpf_spin_lock.
        for flags in [3u64, 8, 1 << 40, BPF_F_LOCK] {
            assert_eq!(
                rt.map_update_elem(&m, Some(&key), &value, flags),
                Err(Errno::EINVAL),
                "{ty:?}: update flags {flags:#x}"
            );
        }
        for flags in [1u64, 8, BPF_F_LOCK] {
            assert_eq!(
                rt.map_lookup_elem(&m, Some(&key), &mut out, flags),
                Err(Errno::EINVAL),
                "{ty:?}: lookup flags {flags:#x}"
            );
        }
        assert_eq!(
            rt.map_lookup_and_delete_elem(&m, Some(&key), &mut out, BPF_F_LOCK),
            Err(Errno::EINVAL),
            "{ty:?}: lookup_and_delete with BPF_F_LOCK"
        );
        rt.map_lookup_elem(&m, Some(&key), &mut out, 0).unwrap();
        assert_eq!(out, value, "{ty:?}: the element survived");
    }
}

#[test]
fn keyless_maps_refuse_keys_and_short_values() {
    let rt = rt();
    for ty in [MapType::Queue, MapType::Stack] {
        let m = rt.map_create(&MapCreateAttr::new(ty, 0, 8, 4)).unwrap();
        let v = 5u64.to_ne_bytes();
        let mut out = [0u8; 8];
        // A key pointer, even an empty one, on a map with key_size 0 (`___bpf_copy_key`).
        assert_eq!(
            rt.map_update_elem(&m, Some(&[]), &v, BPF_ANY),
            Err(Errno::EINVAL),
            "{ty:?}: push with a key"
        );
        assert_eq!(
            rt.map_lookup_elem(&m, Some(&[0; 4]), &mut out, 0),
            Err(Errno::EINVAL),
            "{ty:?}: peek with a key"
        );
        assert_eq!(
            rt.map_update_elem(&m, None, &v[..7], BPF_ANY),
            Err(Errno::EFAULT),
            "{ty:?}: push, value one byte short"
        );
        // Flags on a pop (`map_lookup_and_delete_elem`: queues and stacks take none).
        rt.map_update_elem(&m, None, &v, BPF_ANY).unwrap();
        assert_eq!(
            rt.map_lookup_and_delete_elem(&m, None, &mut out, 4),
            Err(Errno::EINVAL),
            "{ty:?}: pop with flags"
        );
        assert_eq!(
            rt.map_lookup_and_delete_elem(&m, None, &mut out[..7], 0),
            Err(Errno::EFAULT),
            "{ty:?}: pop into a short buffer"
        );
    }
}

/// One object of every kind a descriptor can name, installed.
struct Fds {
    map: u32,
    btf: u32,
    prog: u32,
    host: u32,
}

fn fds(rt: &Runtime) -> Fds {
    let map = rt
        .map_create(&MapCreateAttr::new(MapType::Array, 4, 8, 1))
        .unwrap();
    let mut b = BtfBuilder::new();
    b.add_int("int", 4, INT_SIGNED);
    let btf = rt.btf_load(&b.encode()).unwrap();
    let prog = rt
        .prog_load(&ProgLoadAttr::new(
            ProgType::SOCKET_FILTER,
            assemble("r0 = 0\nexit").unwrap().encode(),
            "GPL",
        ))
        .unwrap();
    Fds {
        map: rt.fd_install(map).unwrap(),
        btf: rt.fd_install(btf).unwrap(),
        prog: rt.fd_install(prog).unwrap(),
        host: rt.fd_install(rt.host_object_new()).unwrap(),
    }
}

#[test]
fn link_create_on_the_wrong_kind_of_descriptor() {
    let rt = rt();
    let f = fds(&rt);
    let link = |map_fd: u32, attach_type: u32| {
        rt.link_create(&LinkCreateAttr {
            map_fd,
            attach_type,
            ..LinkCreateAttr::default()
        })
        .err()
    };
    // `bpf_struct_ops_link_create`: `bpf_map_get` refuses what is not a map, then the
    // map must be a struct_ops map.
    assert_eq!(
        link(f.map, BPF_STRUCT_OPS),
        Some(Errno::EINVAL),
        "array map"
    );
    assert_eq!(link(f.btf, BPF_STRUCT_OPS), Some(Errno::EINVAL), "btf");
    assert_eq!(link(f.prog, BPF_STRUCT_OPS), Some(Errno::EINVAL), "prog");
    assert_eq!(link(f.host, BPF_STRUCT_OPS), Some(Errno::EINVAL), "host");
    assert_eq!(link(9999, BPF_STRUCT_OPS), Some(Errno::EBADF), "unused fd");
    // Other attach types need a program link, which this runtime does not have; the
    // kernel's `bpf_prog_get` refuses a map descriptor with EINVAL too.
    for at in [0u32, 37, BPF_STRUCT_OPS + 1, u32::MAX] {
        assert_eq!(link(f.map, at), Some(Errno::EINVAL), "attach type {at}");
        assert_eq!(link(f.prog, at), Some(Errno::EINVAL), "attach type {at}");
    }
    assert_eq!(
        rt.get_next_id(structops::ObjKind::Link, 0),
        Err(Errno::ENOENT)
    );
}

#[test]
fn info_and_close_on_bad_descriptors() {
    let rt = rt();
    let f = fds(&rt);
    assert!(matches!(rt.obj_get_info(f.map), Ok(ObjInfo::Map(_))));
    assert!(matches!(rt.obj_get_info(f.btf), Ok(ObjInfo::Btf(_))));
    assert!(matches!(rt.obj_get_info(f.prog), Ok(ObjInfo::Prog(_))));
    // A host object is not a BPF object (the kernel: a socket fd, EINVAL).
    assert_eq!(rt.obj_get_info(f.host).err(), Some(Errno::EINVAL));
    assert_eq!(rt.obj_get_info(9999).err(), Some(Errno::EBADF));
    rt.fd_close(f.map).unwrap();
    assert_eq!(rt.fd_close(f.map), Err(Errno::EBADF), "closed twice");
    assert_eq!(rt.obj_get_info(f.map).err(), Some(Errno::EBADF));
    assert_eq!(rt.fd_get(u32::MAX).err(), Some(Errno::EBADF));
    // A program array takes program descriptors only; a map-in-map takes maps only.
    let pa = rt
        .map_create(&MapCreateAttr::new(MapType::ProgArray, 4, 4, 2))
        .unwrap();
    for (fd, what) in [(f.btf, "btf"), (f.host, "host")] {
        assert_eq!(
            rt.map_update_elem(&pa, Some(&0u32.to_ne_bytes()), &fd.to_ne_bytes(), BPF_ANY),
            Err(Errno::EINVAL),
            "prog array slot <- {what}"
        );
    }
    let inner = rt
        .map_create(&MapCreateAttr::new(MapType::Array, 4, 8, 1))
        .unwrap();
    let inner_fd = rt.fd_install(inner).unwrap();
    let mut outer = MapCreateAttr::new(MapType::ArrayOfMaps, 4, 4, 2);
    outer.inner_map_fd = inner_fd;
    let outer = rt.map_create(&outer).unwrap();
    for (fd, what) in [(f.btf, "btf"), (f.prog, "prog"), (f.host, "host")] {
        assert_eq!(
            rt.map_update_elem(
                &outer,
                Some(&0u32.to_ne_bytes()),
                &fd.to_ne_bytes(),
                BPF_ANY
            ),
            Err(Errno::EINVAL),
            "map-in-map slot <- {what}"
        );
    }
    assert_eq!(
        rt.map_update_elem(
            &outer,
            Some(&0u32.to_ne_bytes()),
            &9999u32.to_ne_bytes(),
            BPF_ANY
        ),
        Err(Errno::EBADF),
        "map-in-map slot <- unused fd"
    );
}

/// `BPF_BTF_LOAD` of malformed blobs: the runtime gives the errno of the kernel's checks
/// (`structops-btf`'s `btf_load_kernel` compares those with the kernel blob for blob), a
/// log that ends in the reason, and publishes nothing.
#[test]
fn btf_load_refuses_malformed_blobs_and_publishes_nothing() {
    let rt = rt();
    let mut b = BtfBuilder::new();
    b.add_int("int", 4, INT_SIGNED);
    let good = b.encode();
    let mut bad_magic = good.clone();
    bad_magic[0] ^= 0xff;
    let mut version = good.clone();
    version[2] = 2;
    let mut trailing = good.clone();
    trailing.push(0);
    let huge = vec![0u8; structops_btf::BTF_MAX_SIZE + 1];
    for (what, blob, errno, last) in [
        ("empty", Vec::new(), Errno::EINVAL, "hdr_len not found"),
        (
            "5 bytes",
            good[..5].to_vec(),
            Errno::EINVAL,
            "hdr_len not found",
        ),
        ("bad magic", bad_magic, Errno::EINVAL, "Invalid magic"),
        ("version 2", version, Errno::ENOTSUPP, "Unsupported version"),
        (
            "trailing byte",
            trailing,
            Errno::EINVAL,
            "Unsupported section found",
        ),
        ("over BTF_MAX_SIZE", huge, Errno::E2BIG, ""),
    ] {
        let mut log = String::new();
        let got = rt.btf_load_with_log(&blob, &mut log).err();
        assert_eq!(got, Some(errno), "{what}: {log}");
        assert_eq!(log.lines().last().unwrap_or(""), last, "{what}");
        assert_eq!(
            rt.btf_load(&blob).err(),
            Some(errno),
            "{what} without a log"
        );
    }
    assert_eq!(
        rt.get_next_id(structops::ObjKind::Btf, 0),
        Err(Errno::ENOENT),
        "nothing published"
    );
    assert!(rt.btf_load(&good).is_ok());
}
