//! The object model and the load steps on this crate's own test objects
//! (`tests/data/*.bpf.c`), with host facts made up in the test: no kernel needed.

use structops_btf::{BtfBuilder, INT_SIGNED, Kind};
use structops_isa::Insn;
use structops_obj::externs::KcfgType;
use structops_obj::{
    Error, ExternHost, ExternKind, KsymResolver, KsymTarget, MapKind, MapType, NoKsyms, Object,
    ParseOptions, ProgType, RelocError, Slot, StructOpsError,
};

fn data(name: &str) -> Vec<u8> {
    std::fs::read(format!("{}/tests/data/{name}", env!("CARGO_MANIFEST_DIR"))).expect("test object")
}

fn open(name: &str) -> Object {
    Object::parse_with(&data(name), &ParseOptions::for_path(name)).expect("parses")
}

#[test]
fn maps_are_named_and_ordered_like_libbpf() {
    let obj = open("features.bpf.o");
    let names: Vec<(&str, MapKind)> = obj.maps().iter().map(|m| (m.name(), m.kind())).collect();
    assert_eq!(
        names,
        vec![
            // .maps variables in section order, as libbpf sorts the DATASEC.
            ("inner1", MapKind::User),
            ("inner2", MapKind::User),
            ("outer", MapKind::User),
            ("jmp", MapKind::User),
            ("hmap", MapKind::User),
            ("rb", MapKind::User),
            ("features.data", MapKind::Data),
            ("features.rodata", MapKind::Rodata),
            (".data.custom", MapKind::Data),
            (".rodata.custom", MapKind::Rodata),
            ("features.bss", MapKind::Bss),
            ("feature.kconfig", MapKind::Kconfig),
        ]
    );
    let rb = obj.map("rb").unwrap();
    assert_eq!((rb.map_type(), rb.max_entries()), (MapType::RINGBUF, 8192));
    let outer = obj.map("outer").unwrap();
    assert_eq!(outer.value_size(), 4);
    assert_eq!(outer.inner_map().map(|m| m.key_size()), Some(4));
    assert_eq!(
        outer.init_slots(),
        &[Some(Slot::Map(0)), None, Some(Slot::Map(1))]
    );
    let tail = obj.program_index("tail_a").unwrap();
    assert_eq!(
        obj.map("jmp").unwrap().init_slots(),
        &[None, Some(Slot::Program(tail))]
    );
    let ro = obj.map("features.rodata").unwrap();
    assert_eq!(ro.map_flags() & (1 << 7), 1 << 7, "BPF_F_RDONLY_PROG");
    assert_eq!(ro.real_name(), Some(".rodata"));
    assert_eq!(ro.initial_value(), 7i32.to_le_bytes());
    let custom = obj.map(".data.custom").unwrap();
    assert_eq!(custom.kernel_name(), ".data.custom");
    assert_eq!(custom.initial_value(), 3i32.to_le_bytes());
}

#[test]
fn programs_sections_and_autoload() {
    let obj = open("features.bpf.o");
    let tc = obj.program("tc_off").unwrap();
    assert!(!tc.autoload());
    assert_eq!(
        (tc.section_name(), tc.prog_type()),
        ("tc", ProgType::SCHED_CLS)
    );
    let weird = obj.program("weird").unwrap();
    assert_eq!(weird.prog_type(), ProgType::UNSPEC);
    let subs: Vec<&str> = obj
        .programs()
        .iter()
        .filter(|p| p.is_subprog())
        .map(|p| p.name())
        .collect();
    assert_eq!(subs.len(), 3, "{subs:?}");
    assert!(subs.contains(&"global_helper") && subs.contains(&"static_helper"));
    // Subprograms are not found by name as entry programs.
    assert!(obj.program("global_helper").is_none());
}

#[test]
fn externs_are_sorted_and_resolved() {
    let mut obj = open("features.bpf.o");
    let names: Vec<&str> = obj.externs().iter().map(|e| e.name()).collect();
    // kconfig by alignment (desc), size (asc), name; then ksyms by name.
    assert_eq!(
        names,
        vec![
            "CONFIG_BPF_JIT",
            "CONFIG_HZ",
            "CONFIG_STRUCTOPS_DOES_NOT_EXIST",
            "LINUX_KERNEL_VERSION",
            "CONFIG_BPF_SYSCALL",
            "CONFIG_LOCALVERSION",
            "bpf_prog_active",
            "bpf_rcu_read_lock",
            "bpf_rcu_read_unlock",
            "bpf_structops_no_such_kfunc",
        ]
    );
    let local = obj
        .externs()
        .iter()
        .find(|e| e.name() == "CONFIG_LOCALVERSION")
        .unwrap();
    assert_eq!(local.kcfg().map(|k| k.ty), Some(KcfgType::CharArr));

    struct Host;
    impl KsymResolver for Host {
        fn kfunc(&self, name: &str) -> Option<KsymTarget> {
            (name == "bpf_rcu_read_lock" || name == "bpf_rcu_read_unlock").then_some(KsymTarget {
                btf_id: 77,
                ..KsymTarget::default()
            })
        }
        fn var(&self, _: &str) -> Option<KsymTarget> {
            None
        }
        fn kallsyms(&self, name: &str) -> Option<u64> {
            (name == "bpf_prog_active").then_some(0x1122_3344_5566_7788)
        }
    }
    let host = ExternHost {
        kernel_version: 0x0006_0c00,
        has_bpf_cookie: true,
        has_syscall_wrapper: true,
        extra_kconfig: None,
        system_kconfig: Some(
            "CONFIG_HZ=250\nCONFIG_BPF_SYSCALL=y\nCONFIG_BPF_JIT=y\nCONFIG_LOCALVERSION=\"-x\"\n",
        ),
        ksyms: &Host,
    };
    obj.resolve_externs(&host).unwrap();
    let kcfg = obj.map("feature.kconfig").unwrap();
    let off = |n: &str| {
        obj.externs()
            .iter()
            .find(|e| e.name() == n)
            .and_then(|e| e.kcfg())
            .map(|k| k.data_off as usize)
            .unwrap()
    };
    let v = kcfg.initial_value();
    assert_eq!(v[off("CONFIG_HZ")..][..4], 250i32.to_ne_bytes());
    assert_eq!(v[off("CONFIG_BPF_JIT")..][..4], 1u32.to_ne_bytes());
    assert_eq!(
        v[off("LINUX_KERNEL_VERSION")..][..4],
        0x0006_0c00u32.to_ne_bytes()
    );
    assert_eq!(v[off("CONFIG_BPF_SYSCALL")], 1);
    assert_eq!(&v[off("CONFIG_LOCALVERSION")..][..3], b"-x\0");

    let linked = obj.relocate(&|m| 1000 + m as i32).unwrap();
    let kp = linked.iter().find(|l| l.name == "kp").unwrap();
    let kfunc_calls: Vec<&Insn> = kp
        .insns
        .iter()
        .filter(|i| i.code == 0x85 && i.src_reg() == 2)
        .collect();
    assert_eq!(kfunc_calls.len(), 2);
    assert!(kfunc_calls.iter().all(|i| i.imm == 77 && i.off == 0));
    // The unresolved weak kfunc is poisoned as libbpf does: a helper call to
    // 2002000000 + its extern index.
    let weak_idx = obj
        .externs()
        .iter()
        .position(|e| e.name() == "bpf_structops_no_such_kfunc")
        .unwrap() as i32;
    assert!(
        kp.insns
            .iter()
            .any(|i| i.code == 0x85 && i.src_reg() == 0 && i.imm == 2_002_000_000 + weak_idx)
    );
    // The typeless ksym is its address, split over the two halves of ld_imm64.
    let ld = kp
        .insns
        .iter()
        .position(|i| i.code == 0x18 && i.imm == 0x5566_7788)
        .unwrap();
    assert_eq!(kp.insns[ld + 1].imm, 0x1122_3344);
}

#[test]
fn strong_externs_must_resolve() {
    let mut obj = open("features.bpf.o");
    let host = ExternHost {
        kernel_version: 1,
        has_bpf_cookie: false,
        has_syscall_wrapper: false,
        extra_kconfig: Some("CONFIG_HZ=100\nCONFIG_BPF_SYSCALL=n\n"),
        system_kconfig: Some(""),
        ksyms: &NoKsyms,
    };
    let err = obj.resolve_externs(&host).unwrap_err();
    assert!(matches!(err, Error::Extern { .. }), "{err}");
    assert_eq!(err.libbpf_errno(), 22);
}

#[test]
fn subprograms_are_appended_in_first_use_order() {
    let obj = open("features.bpf.o");
    let linked = obj.relocate(&|m| 100 + m as i32).unwrap();
    let names: Vec<&str> = linked.iter().map(|l| l.name.as_str()).collect();
    assert_eq!(
        names,
        vec!["tail_a", "xdp_main", "sock_main", "kp", "weird"]
    );
    let own = |n: &str| obj.program(n).unwrap().insn_cnt();
    let sub = |n: &str| {
        obj.programs()
            .iter()
            .find(|p| p.is_subprog() && p.name() == n)
            .unwrap()
            .insn_cnt()
    };
    // sock_main calls static_helper first, then global_helper (which calls
    // static_helper again: appended once).
    let sock = linked.iter().find(|l| l.name == "sock_main").unwrap();
    assert_eq!(
        sock.insns.len(),
        own("sock_main") + sub("static_helper") + sub("global_helper")
    );
    for l in &linked {
        // Every BPF-to-BPF call lands inside the program.
        for (i, insn) in l.insns.iter().enumerate() {
            if insn.code == 0x85 && insn.src_reg() == 1 {
                let t = i as i64 + 1 + i64::from(insn.imm);
                assert!(
                    t >= 0 && (t as usize) < l.insns.len(),
                    "{}: call at {i}",
                    l.name
                );
            }
        }
    }
    // xdp_main: the bpf_loop callback is a BPF_PSEUDO_FUNC load of an appended subprogram.
    let xdp = linked.iter().find(|l| l.name == "xdp_main").unwrap();
    let cb = xdp
        .insns
        .iter()
        .position(|i| i.code == 0x18 && i.src_reg() == 4)
        .unwrap();
    let target = cb as i64 + 1 + i64::from(xdp.insns[cb].imm);
    assert!(target as usize >= own("xdp_main"));
    // Global data loads are MAP_VALUE loads of the data map, offset in the second imm.
    let data_map = obj
        .maps()
        .iter()
        .position(|m| m.name() == "features.data")
        .unwrap() as i32;
    assert!(
        xdp.insns
            .iter()
            .any(|i| i.code == 0x18 && i.src_reg() == 2 && i.imm == 100 + data_map)
    );
    // func_info is rebased: one record per function, in instruction units.
    let fi = xdp.func_info.as_ref().unwrap();
    assert_eq!(fi[0].insn_off, 0);
    assert!(
        fi.iter()
            .skip(1)
            .all(|r| r.insn_off as usize >= own("xdp_main"))
    );
}

#[test]
fn maps_not_created_poison_their_loads() {
    let mut obj = open("minimal.bpf.o");
    obj.map_mut("counts").unwrap().set_autocreate(false);
    let linked = obj.relocate(&|_| 5).unwrap();
    let insns = &linked[0].insns;
    let i = insns.iter().position(|i| i.imm == 2_001_000_000).unwrap();
    assert_eq!(insns[i + 1], Insn::new(0x85, 0, 0, 0, 2_001_000_000));
}

/// A target BTF with the kernel's struct_ops types, in a different member order from
/// the object's local copies.
fn struct_ops_target() -> structops_btf::Btf {
    let mut b = BtfBuilder::new();
    let u32t = b.add_int("unsigned int", 4, 0);
    let int = b.add_int("int", 4, INT_SIGNED);
    let ch = b.add_int("char", 1, INT_SIGNED);
    let sock = b.add_fwd("sock", false);
    let psock = b.add_ptr(sock);
    let proto = b.add_func_proto(u32t, &[("sk", psock)]);
    let fp = b.add_ptr(proto);
    let name = b.add_array(ch, u32t, 16);
    let ops = b.add_struct(
        "tcp_congestion_ops",
        56,
        &[
            ("flags", u32t, 0),
            ("init", fp, 64),
            ("ssthresh", fp, 128),
            ("cong_avoid", fp, 192),
            ("undo_cwnd", fp, 256),
            ("name", name, 320),
        ],
    );
    b.add_struct(
        "bpf_struct_ops_tcp_congestion_ops",
        64,
        &[("refcnt", int, 0), ("data", ops, 64)],
    );
    let dproto = b.add_func_proto(int, &[]);
    let dfp = b.add_ptr(dproto);
    let dummy = b.add_struct(
        "bpf_dummy_ops",
        24,
        &[
            ("test_1", dfp, 0),
            ("test_2", dfp, 64),
            ("test_sleepable", dfp, 128),
        ],
    );
    b.add_struct(
        "bpf_struct_ops_bpf_dummy_ops",
        32,
        &[("refcnt", int, 0), ("data", dummy, 64)],
    );
    b.build()
}

#[test]
fn struct_ops_bind_by_member_name() {
    let mut obj = open("struct_ops.bpf.o");
    let cc = obj.map("structops_cc").unwrap();
    assert_eq!(cc.struct_ops_type(), Some("tcp_congestion_ops"));
    assert_eq!(
        cc.struct_ops().unwrap().type_name(),
        "tcp_congestion_ops___local"
    );
    assert!(!cc.is_link());
    assert!(!obj.map("structops_off").unwrap().autocreate());
    assert!(obj.map("structops_dummy").unwrap().is_link());

    let target = struct_ops_target();
    obj.init_struct_ops(&target).unwrap();
    let ops_id = target
        .find_by_name_kind("tcp_congestion_ops", Kind::Struct)
        .unwrap();
    for (prog, member) in [
        ("so_init", 1),
        ("so_ssthresh", 2),
        ("so_cong_avoid", 3),
        ("so_undo_cwnd", 4),
    ] {
        let p = obj.program(prog).unwrap();
        assert_eq!(
            (p.attach_btf_id(), p.expected_attach_type().0),
            (ops_id, member),
            "{prog}"
        );
        assert!(p.autoload(), "{prog}");
    }
    assert_eq!(
        obj.program("so_sleepable")
            .unwrap()
            .expected_attach_type()
            .0,
        2
    );
    let cc = obj.map("structops_cc").unwrap();
    assert_eq!(cc.value_size(), 64);
    let st = cc.struct_ops().unwrap();
    let kern = st.kern().unwrap();
    assert_eq!(kern.data_offset, 8);
    assert_eq!(&kern.vdata[8 + 40..8 + 52], b"structops_cc");
    let v = st.kern_value(&|p| 0x100 + p as i64).unwrap();
    let ssthresh = obj.program_index("so_ssthresh").unwrap() as i64;
    assert_eq!(v[8 + 16..8 + 24], (0x100 + ssthresh).to_ne_bytes());

    // The unreferenced struct_ops program is refused at load, as libbpf does.
    let unused = obj.program_index("so_unused").unwrap();
    assert!(matches!(
        obj.check_loadable(unused),
        Err(Error::Link {
            source: RelocError::UnreferencedStructOps,
            ..
        })
    ));
}

#[test]
fn struct_ops_member_missing_in_kernel_must_be_zero() {
    let mut obj = open("struct_ops.bpf.o");
    // Bind a program to the member the kernel lacks.
    let init = obj.program_index("so_init").unwrap();
    let cc = obj
        .map_mut("structops_cc")
        .unwrap()
        .struct_ops_mut()
        .unwrap();
    assert!(cc.set_program(4, Some(init)));
    let err = obj.init_struct_ops(&struct_ops_target()).unwrap_err();
    assert!(
        matches!(&err, Error::StructOps { source: StructOpsError::MemberMissing { member }, .. } if member == "structops_not_in_kernel"),
        "{err}"
    );
    assert_eq!(err.libbpf_errno(), 95);
}

#[test]
fn big_endian_objects_read_alike() {
    let le = open("minimal.bpf.o");
    let be = Object::parse_with(
        &data("minimal.bpfeb.o"),
        &ParseOptions::for_path("minimal.bpfeb.o"),
    )
    .unwrap();
    assert!(be.is_big_endian() && !le.is_big_endian());
    assert_eq!(be.programs()[0].insns(), le.programs()[0].insns());
    assert_eq!(be.maps()[0].max_entries(), 16);
    assert_eq!(be.license(), "GPL");
}

#[test]
fn legacy_maps_section_is_refused() {
    let mut bytes = data("minimal.bpf.o");
    // Rename ".maps" to "maps" in the section name table.
    // (the last occurrence: the section name table follows the BTF strings)
    let pos = bytes.windows(6).rposition(|w| w == b".maps\0").unwrap();
    bytes[pos..pos + 6].copy_from_slice(b"maps\0\0");
    let err = Object::parse(&bytes).unwrap_err();
    assert!(matches!(err, Error::LegacyMaps), "{err}");
    assert_eq!(err.libbpf_errno(), 95);
}

#[test]
fn non_bpf_input_is_a_typed_error() {
    assert!(matches!(
        Object::parse(b"not an elf"),
        Err(Error::Elf { .. })
    ));
    let ok = data("minimal.bpf.o");
    assert!(Object::parse(&ok[..64]).is_err());
    assert!(matches!(
        open("minimal.bpf.o").externs().first().map(|e| e.kind()),
        None | Some(ExternKind::Ksym(_))
    ));
}

/// `sh_size` of the first `SHT_NOBITS` section header of an ELF64 little-endian object:
/// its byte offset in the file.
fn nobits_size_offset(bytes: &[u8]) -> usize {
    let u16_at = |o: usize| u16::from_le_bytes([bytes[o], bytes[o + 1]]) as usize;
    let shoff = u64::from_le_bytes(bytes[0x28..0x30].try_into().unwrap()) as usize;
    let (shentsize, shnum) = (u16_at(0x3a), u16_at(0x3c));
    (0..shnum)
        .map(|i| shoff + i * shentsize)
        .find(|&h| u32::from_le_bytes(bytes[h + 4..h + 8].try_into().unwrap()) == 8)
        .expect("a .bss section")
        + 32
}

/// A `.bss` larger than a kernel array map value may be (`KMALLOC_MAX_SIZE`, 4 MiB) is
/// refused with `E2BIG` before anything is allocated for it; one of exactly 4 MiB opens.
/// (Found by the mutation test: one flipped bit in a section header asked for 16 MiB.)
#[test]
fn oversized_bss_is_e2big_not_an_allocation() {
    let mut bytes = std::fs::read(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../bpf/cache_policy.bpf.o"
    ))
    .expect("committed fixture");
    let at = nobits_size_offset(&bytes);
    let limit = structops_obj::MAX_ZEROED_MAP_SIZE as u64;
    assert_eq!(limit, 4 << 20);
    bytes[at..at + 8].copy_from_slice(&(limit + 1).to_le_bytes());
    let err = Object::parse(&bytes).unwrap_err();
    assert_eq!(err.libbpf_errno(), 7, "{err}"); // E2BIG
    assert!(err.to_string().contains("4 MiB"), "{err}");
    bytes[at..at + 8].copy_from_slice(&limit.to_le_bytes());
    let obj = Object::parse(&bytes).expect("a 4 MiB .bss opens");
    let bss = obj
        .maps()
        .iter()
        .find(|m| m.kind() == MapKind::Bss)
        .expect("the .bss map");
    assert_eq!(bss.value_size() as u64, limit);
}
