//! Kernel-free tests of the runtime: every map type's program side, capabilities, the id
//! and handle life cycle, BTF objects, mmap and freeze, local storage owners.

use std::ops::ControlFlow;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};

use structops::maps::ringbuf::{BPF_RB_AVAIL_DATA, BPF_RB_FORCE_WAKEUP};
use structops::maps::*;
use structops::{
    Capabilities, Errno, FdObject, ObjInfo, ObjKind, Runtime, RuntimeConfig, TailCallTarget,
};
use structops_btf::{BtfBuilder, INT_SIGNED};

fn rt(ncpus: u32) -> Runtime {
    Runtime::new(RuntimeConfig {
        ncpus,
        ..RuntimeConfig::default()
    })
}

fn k(x: u32) -> [u8; 4] {
    x.to_ne_bytes()
}

#[test]
fn array_semantics() {
    let rt = rt(2);
    let m = rt
        .map_create(&MapCreateAttr::new(MapType::Array, 4, 12, 3))
        .unwrap();
    let v = [7u8; 12];
    assert_eq!(
        rt.map_update_elem(&m, Some(&k(3)), &v, BPF_ANY),
        Err(Errno::E2BIG)
    );
    assert_eq!(
        rt.map_update_elem(&m, Some(&k(0)), &v, BPF_NOEXIST),
        Err(Errno::EEXIST)
    );
    assert_eq!(
        rt.map_update_elem(&m, Some(&k(0)), &v, 3),
        Err(Errno::EINVAL)
    );
    assert_eq!(
        rt.map_update_elem(&m, Some(&k(0)), &v, BPF_F_LOCK),
        Err(Errno::EINVAL)
    );
    rt.map_update_elem(&m, Some(&k(1)), &v, BPF_EXIST).unwrap();
    assert_eq!(rt.map_delete_elem(&m, Some(&k(1))), Err(Errno::EINVAL));
    let mut out = [0u8; 12];
    rt.map_lookup_elem(&m, Some(&k(1)), &mut out, 0).unwrap();
    assert_eq!(out, v);
    assert_eq!(
        rt.map_lookup_elem(&m, Some(&k(9)), &mut out, 0),
        Err(Errno::ENOENT)
    );
    assert_eq!(
        rt.map_lookup_elem(&m, None, &mut out, 0),
        Err(Errno::EFAULT)
    );
    assert_eq!(
        rt.map_lookup_elem(&m, Some(&[1]), &mut out, 0),
        Err(Errno::EFAULT)
    );
    let mut nk = [0u8; 4];
    rt.map_get_next_key(&m, Some(&k(77)), &mut nk).unwrap();
    assert_eq!(nk, k(0));
    rt.map_get_next_key(&m, Some(&k(1)), &mut nk).unwrap();
    assert_eq!(nk, k(2));
    assert_eq!(
        rt.map_get_next_key(&m, Some(&k(2)), &mut nk),
        Err(Errno::ENOENT)
    );
    // Program side: stable addresses, elem_size 16 apart.
    let g = structops::read_lock();
    let p0 = m.lookup_ptr(&k(0), &g).unwrap();
    let p1 = m.lookup_ptr(&k(1), &g).unwrap();
    assert_eq!(p1.as_ptr() as usize - p0.as_ptr() as usize, 16);
    assert!(m.lookup_ptr(&k(3), &g).is_none());
    let (base, elem) = m.array_layout().unwrap();
    assert_eq!((base, elem), (p0, 16));
    assert_eq!(
        m.direct_value_addr(0),
        Err(Errno::ENOTSUPP),
        "max_entries != 1"
    );
}

#[test]
fn global_data_mmap_and_freeze() {
    let rt = rt(1);
    let m = rt
        .map_create(&MapCreateAttr::new(MapType::Array, 4, 100, 1).flags(BPF_F_MMAPABLE))
        .unwrap();
    assert_eq!(m.direct_value_addr(100), Err(Errno::EINVAL));
    let p = m.direct_value_addr(4).unwrap();
    {
        let mm = rt.map_mmap(&m, true).unwrap();
        assert_eq!(mm.len(), 4096);
        assert_eq!(mm.as_ptr() as usize % 4096, 0);
        assert_eq!(mm.as_ptr() as usize + 4, p.as_ptr() as usize);
        // SAFETY: inside the 4096-byte mapping.
        unsafe { mm.as_ptr().add(4).write(0xab) };
        assert_eq!(
            rt.map_freeze(&m),
            Err(Errno::EBUSY),
            "writable mapping exists"
        );
    }
    let mut out = [0u8; 100];
    rt.map_lookup_elem(&m, Some(&k(0)), &mut out, 0).unwrap();
    assert_eq!(out[4], 0xab);
    rt.map_freeze(&m).unwrap();
    assert_eq!(
        rt.map_freeze(&m),
        Err(Errno::EPERM),
        "frozen maps are read-only"
    );
    assert_eq!(rt.map_mmap(&m, true).err(), Some(Errno::EPERM));
    assert!(rt.map_mmap(&m, false).is_ok());
    assert_eq!(
        rt.map_update_elem(&m, Some(&k(0)), &out, 0),
        Err(Errno::EPERM)
    );
    // Programs still write a frozen map.
    m.update_from_prog(&k(0), &[1u8; 100], BPF_ANY, &structops::read_lock())
        .unwrap();
    let plain = rt
        .map_create(&MapCreateAttr::new(MapType::Array, 4, 8, 1))
        .unwrap();
    assert_eq!(rt.map_mmap(&plain, false).err(), Some(Errno::EINVAL));
    let ro = rt
        .map_create(
            &MapCreateAttr::new(MapType::Array, 4, 8, 1).flags(BPF_F_MMAPABLE | BPF_F_RDONLY_PROG),
        )
        .unwrap();
    assert_eq!(rt.map_mmap(&ro, true).err(), Some(Errno::EACCES));
}

#[test]
fn percpu_slots() {
    let rt = rt(3);
    let a = rt
        .map_create(&MapCreateAttr::new(MapType::PercpuArray, 4, 4, 2))
        .unwrap();
    let h = rt
        .map_create(&MapCreateAttr::new(MapType::PercpuHash, 4, 4, 2))
        .unwrap();
    let g = structops::read_lock();
    for cpu in 0..3u32 {
        structops::cpu::set_current_cpu(Some(cpu));
        a.update_from_prog(&k(1), &(10 + cpu).to_ne_bytes(), BPF_ANY, &g)
            .unwrap();
    }
    structops::cpu::set_current_cpu(Some(1));
    h.update_from_prog(&k(5), &7u32.to_ne_bytes(), BPF_ANY, &g)
        .unwrap();
    structops::cpu::set_current_cpu(None);
    let mut out = [0u8; 24];
    rt.map_lookup_elem(&a, Some(&k(1)), &mut out, 0).unwrap();
    let words: Vec<u32> = out
        .chunks(8)
        .map(|c| u32::from_ne_bytes(c[..4].try_into().unwrap()))
        .collect();
    assert_eq!(words, vec![10, 11, 12]);
    rt.map_lookup_elem(&h, Some(&k(5)), &mut out, 0).unwrap();
    assert_eq!(&out[8..12], &7u32.to_ne_bytes(), "CPU 1 has the value");
    assert_eq!(&out[0..4], &[0; 4], "other CPUs are zeroed");
    // The syscall side writes all slots.
    let all: Vec<u8> = (0..3u32).flat_map(|c| [c as u8; 8]).collect();
    rt.map_update_elem(&h, Some(&k(5)), &all, BPF_EXIST)
        .unwrap();
    structops::cpu::set_current_cpu(Some(2));
    let p = h.lookup_ptr(&k(5), &g).unwrap();
    // SAFETY: a 4-byte per-CPU value under `g`.
    assert_eq!(unsafe { p.cast::<[u8; 4]>().read() }, [2; 4]);
    structops::cpu::set_current_cpu(None);
    assert_eq!(
        rt.map_update_elem(&h, Some(&k(6)), &all, BPF_F_LOCK),
        Err(Errno::EINVAL)
    );
}

#[test]
fn hash_full_and_replace() {
    let rt = rt(1);
    for flags in [0, BPF_F_NO_PREALLOC] {
        let m = rt
            .map_create(&MapCreateAttr::new(MapType::Hash, 4, 8, 2).flags(flags))
            .unwrap();
        let v = [1u8; 8];
        rt.map_update_elem(&m, Some(&k(1)), &v, BPF_ANY).unwrap();
        rt.map_update_elem(&m, Some(&k(2)), &v, BPF_ANY).unwrap();
        assert_eq!(
            rt.map_update_elem(&m, Some(&k(3)), &v, BPF_ANY),
            Err(Errno::E2BIG)
        );
        rt.map_update_elem(&m, Some(&k(2)), &[2; 8], BPF_ANY)
            .unwrap();
        assert_eq!(
            rt.map_update_elem(&m, Some(&k(3)), &v, BPF_EXIST),
            Err(Errno::ENOENT)
        );
        rt.map_delete_elem(&m, Some(&k(1))).unwrap();
        assert_eq!(rt.map_delete_elem(&m, Some(&k(1))), Err(Errno::ENOENT));
        rt.map_update_elem(&m, Some(&k(3)), &v, BPF_NOEXIST)
            .unwrap();
        assert_eq!(m.hash_len(), 2);
    }
}

#[test]
fn lru_evicts_instead_of_failing() {
    let rt = rt(1);
    let m = rt
        .map_create(&MapCreateAttr::new(MapType::LruHash, 4, 8, 4))
        .unwrap();
    for i in 0..20u32 {
        rt.map_update_elem(&m, Some(&k(i)), &[i as u8; 8], BPF_ANY)
            .unwrap();
    }
    assert!(m.hash_len() <= 4);
    let mut out = [0u8; 8];
    rt.map_lookup_elem(&m, Some(&k(19)), &mut out, 0).unwrap();
    assert_eq!(out, [19; 8], "the newest element survives");
    assert_eq!(
        rt.map_create(&MapCreateAttr::new(MapType::LruHash, 4, 8, 4).flags(BPF_F_NO_PREALLOC))
            .err(),
        Some(Errno::ENOTSUPP)
    );
}

struct Prog(u32, Arc<AtomicU32>);

impl TailCallTarget for Prog {
    fn prog_id(&self) -> u32 {
        self.0
    }
}

impl Drop for Prog {
    fn drop(&mut self) {
        self.1.fetch_add(1, Ordering::SeqCst);
    }
}

#[test]
fn prog_array_slots_and_uref_clear() {
    let rt = rt(1);
    let m = rt
        .map_create(&MapCreateAttr::new(MapType::ProgArray, 4, 4, 4))
        .unwrap();
    let dropped = Arc::new(AtomicU32::new(0));
    m.prog_array_update(1, Some(Arc::new(Prog(42, dropped.clone()))))
        .unwrap();
    assert_eq!(
        m.prog_array_update(4, Some(Arc::new(Prog(1, dropped.clone())))),
        Err(Errno::E2BIG)
    );
    let mut out = [0u8; 4];
    rt.map_lookup_elem(&m, Some(&k(1)), &mut out, 0).unwrap();
    assert_eq!(u32::from_ne_bytes(out), 42);
    {
        let g = structops::read_lock();
        assert_eq!(m.tail_call_target(1, &g).map(|p| p.prog_id()), Some(42));
        assert!(m.tail_call_target(0, &g).is_none());
    }
    // Dropping the last user handle empties the array (breaking tail-call cycles) even
    // though an internal reference keeps the map.
    let internal = m.object().clone();
    drop(m);
    for _ in 0..64 {
        drop(structops::read_lock());
        crossbeam_flush();
    }
    let g = structops::read_lock();
    assert!(internal.tail_call_target(1, &g).is_none());
}

fn crossbeam_flush() {
    let g = structops::read_lock();
    g.flush();
}

#[test]
fn maps_of_maps_program_side() {
    let rt = rt(1);
    let tmpl = rt
        .map_create(&MapCreateAttr::new(MapType::Array, 4, 8, 1))
        .unwrap();
    let tfd = rt.fd_install(tmpl.clone()).unwrap();
    let mut a = MapCreateAttr::new(MapType::HashOfMaps, 4, 4, 8);
    a.inner_map_fd = tfd;
    let outer = rt.map_create(&a).unwrap();
    let inner = rt
        .map_create(&MapCreateAttr::new(MapType::Array, 4, 8, 1))
        .unwrap();
    let ifd = rt.fd_install(inner.clone()).unwrap();
    rt.map_update_elem(&outer, Some(&k(3)), &ifd.to_ne_bytes(), BPF_ANY)
        .unwrap();
    let mut out = [0u8; 4];
    rt.map_lookup_elem(&outer, Some(&k(3)), &mut out, 0)
        .unwrap();
    assert_eq!(u32::from_ne_bytes(out), inner.id());
    let g = structops::read_lock();
    assert_eq!(outer.inner_map(&k(3), &g).map(|m| m.id()), Some(inner.id()));
    let p = outer.lookup_ptr(&k(3), &g).unwrap();
    assert_eq!(p.as_ptr() as *const Map, Arc::as_ptr(inner.object()));
    // The outer map holds the inner one after every user handle is gone.
    let id = inner.id();
    rt.fd_close(ifd).unwrap();
    drop(inner);
    assert!(rt.map_get_fd_by_id(id, 0).is_ok());
    assert_eq!(rt.fd_close(ifd), Err(Errno::EBADF));
}

#[test]
fn ringbuf_through_the_map() {
    let rt = rt(1);
    assert_eq!(
        rt.map_create(&MapCreateAttr::new(MapType::Ringbuf, 0, 0, 4096 * 3))
            .err(),
        Some(Errno::EINVAL)
    );
    let m = rt
        .map_create(&MapCreateAttr::new(MapType::Ringbuf, 0, 0, 8192))
        .unwrap();
    let rb = m.ringbuf().unwrap();
    rb.output(b"hello", BPF_RB_FORCE_WAKEUP).unwrap();
    let s = rb.reserve(3, 0).unwrap();
    // SAFETY: 3 reserved bytes, committed through the helper path.
    unsafe {
        s.as_ptr().copy_from_nonoverlapping(b"abc".as_ptr(), 3);
        structops::maps::ringbuf::commit_sample(s, 0, false);
    }
    assert_eq!(rb.query(BPF_RB_AVAIL_DATA), 16 + 16);
    let mut got = vec![];
    rb.consume(|r| {
        got.push(r.to_vec());
        ControlFlow::Continue(())
    });
    assert_eq!(got, vec![b"hello".to_vec(), b"abc".to_vec()]);
    let mut out = [0u8; 0];
    assert_eq!(
        rt.map_lookup_elem(&m, None, &mut out, 0),
        Err(Errno::ENOTSUPP)
    );
    assert_eq!(
        rt.map_lookup_elem(&m, Some(&[]), &mut out, 0),
        Err(Errno::EINVAL)
    );
}

fn storage_btf(rt: &Runtime) -> u32 {
    let mut b = BtfBuilder::new();
    let int = b.add_int("int", 4, INT_SIGNED);
    b.add_struct("v", 8, &[("a", int, 0), ("b", int, 32)]);
    let h = rt.btf_load(&b.encode()).unwrap();
    rt.fd_install(h).unwrap()
}

#[test]
fn host_object_local_storage() {
    let rt = rt(1);
    let btf_fd = storage_btf(&rt);
    let mut a = MapCreateAttr::new(MapType::SkStorage, 4, 8, 0).flags(BPF_F_NO_PREALLOC);
    a.btf_fd = btf_fd;
    a.btf_key_type_id = 1;
    a.btf_value_type_id = 2;
    let m = rt.map_create(&a).unwrap();
    let owner = rt.host_object_new();
    let ofd = rt.fd_install(owner.clone()).unwrap();
    let g = structops::read_lock();
    assert!(m.storage_get(&owner, None, 0, &g).is_none());
    let p = m
        .storage_get(&owner, Some(&[5; 8]), BPF_LOCAL_STORAGE_GET_F_CREATE, &g)
        .unwrap();
    // SAFETY: an 8-byte value under `g`.
    assert_eq!(unsafe { p.cast::<[u8; 8]>().read() }, [5; 8]);
    let mut out = [0u8; 8];
    rt.map_lookup_elem(&m, Some(&ofd.to_ne_bytes()), &mut out, 0)
        .unwrap();
    assert_eq!(out, [5; 8]);
    assert_eq!(m.storage_len(), 1);
    // Releasing the owner deletes its values; the pointer stays readable under `g`.
    owner.release();
    // SAFETY: freed only after `g` is dropped.
    assert_eq!(unsafe { p.cast::<[u8; 8]>().read() }, [5; 8]);
    drop(g);
    assert_eq!(
        rt.map_lookup_elem(&m, Some(&ofd.to_ne_bytes()), &mut out, 0),
        Err(Errno::ENOENT)
    );
    assert_eq!(m.storage_len(), 0);
    assert_eq!(
        rt.map_update_elem(&m, Some(&ofd.to_ne_bytes()), &out, 0),
        Err(Errno::ENOENT),
        "a released owner takes no new values"
    );
    // Dropping the last reference to an owner also deletes.
    let o2 = rt.host_object_new();
    m.storage_get(
        &o2,
        None,
        BPF_LOCAL_STORAGE_GET_F_CREATE,
        &structops::read_lock(),
    )
    .unwrap();
    assert_eq!(m.storage_len(), 1);
    drop(o2);
    assert_eq!(m.storage_len(), 0);
    assert_eq!(
        rt.map_delete_elem(&m, Some(&btf_fd.to_ne_bytes())),
        Err(Errno::ENOTSOCK)
    );
}

#[test]
fn capabilities() {
    let rt = rt(1);
    let admin_map = rt
        .map_create(&MapCreateAttr::new(MapType::Array, 4, 4, 1))
        .unwrap();
    rt.set_caps(Capabilities::NONE);
    assert_eq!(
        rt.map_create(&MapCreateAttr::new(MapType::Array, 4, 4, 1))
            .err(),
        Some(Errno::EPERM),
        "unprivileged_bpf_disabled"
    );
    rt.set_caps(Capabilities::BPF);
    assert!(
        rt.map_create(&MapCreateAttr::new(MapType::LruHash, 4, 4, 1))
            .is_ok()
    );
    assert_eq!(
        rt.map_create(&MapCreateAttr::new(MapType::Hash, 4, 4, 1).flags(BPF_F_ZERO_SEED))
            .err(),
        Some(Errno::EPERM)
    );
    assert_eq!(rt.get_next_id(ObjKind::Map, 0), Err(Errno::EPERM));
    assert_eq!(
        rt.get_next_id(ObjKind::Map, i32::MAX as u32),
        Err(Errno::EINVAL)
    );
    assert_eq!(
        rt.map_get_fd_by_id(admin_map.id(), 0).err(),
        Some(Errno::EPERM)
    );
    assert_eq!(rt.btf_get_fd_by_id(1).err(), Some(Errno::EPERM));
    let unpriv = Runtime::new(RuntimeConfig {
        caps: Capabilities::NONE,
        unprivileged_bpf_disabled: false,
        ..RuntimeConfig::default()
    });
    assert!(
        unpriv
            .map_create(&MapCreateAttr::new(MapType::Hash, 4, 4, 1))
            .is_ok()
    );
    assert_eq!(
        unpriv
            .map_create(&MapCreateAttr::new(MapType::LruHash, 4, 4, 1))
            .err(),
        Some(Errno::EPERM)
    );
    assert_eq!(unpriv.btf_load(&[]).err(), Some(Errno::EPERM));
}

#[test]
fn ids_handles_and_info() {
    let rt = rt(1);
    let mut b = BtfBuilder::new();
    b.add_int("int", 4, INT_SIGNED);
    let host = rt.register_host_btf(b.build()).unwrap();
    assert!(host.info().kernel_btf);
    assert_eq!(host.info().name, "vmlinux");
    let m1 = rt
        .map_create(&MapCreateAttr::new(MapType::Hash, 4, 4, 1).name("one"))
        .unwrap();
    let m2 = rt
        .map_create(&MapCreateAttr::new(MapType::Hash, 4, 4, 1).flags(BPF_F_RDONLY))
        .unwrap();
    assert_eq!((m1.id(), m2.id()), (1, 2));
    assert_eq!(rt.get_next_id(ObjKind::Map, 0), Ok(1));
    assert_eq!(rt.get_next_id(ObjKind::Map, 1), Ok(2));
    assert_eq!(rt.get_next_id(ObjKind::Map, 2), Err(Errno::ENOENT));
    assert_eq!(rt.get_next_id(ObjKind::Btf, 0), Ok(host.id()));
    assert_eq!(rt.get_next_id(ObjKind::Prog, 0), Err(Errno::ENOENT));
    assert_eq!(
        rt.map_info(&m2).map_flags,
        0,
        "RDONLY belongs to the handle"
    );
    assert_eq!(
        rt.map_update_elem(&m2, Some(&k(1)), &k(1), 0),
        Err(Errno::EPERM)
    );
    let rw = rt.map_get_fd_by_id(m2.id(), 0).unwrap();
    rt.map_update_elem(&rw, Some(&k(1)), &k(1), 0).unwrap();
    assert_eq!(
        rt.map_get_fd_by_id(m2.id(), 3 << 3).err(),
        Some(Errno::EINVAL)
    );
    assert_eq!(rt.map_get_fd_by_id(m2.id(), 1).err(), Some(Errno::EINVAL));
    let id1 = m1.id();
    drop(m1);
    assert_eq!(rt.map_get_fd_by_id(id1, 0).err(), Some(Errno::ENOENT));
    let m3 = rt
        .map_create(&MapCreateAttr::new(MapType::Hash, 4, 4, 1))
        .unwrap();
    assert_eq!(m3.id(), 3, "ids are not reused at once");
    // Maps cannot use the host BTF; info through descriptors.
    let hfd = rt.fd_install(host.clone()).unwrap();
    let mut a = MapCreateAttr::new(MapType::Hash, 4, 4, 1);
    a.btf_fd = hfd;
    a.btf_key_type_id = 1;
    a.btf_value_type_id = 1;
    assert_eq!(rt.map_create(&a).err(), Some(Errno::EACCES));
    let mfd = rt.fd_install(m3.clone()).unwrap();
    match rt.obj_get_info(mfd).unwrap() {
        ObjInfo::Map(i) => assert_eq!((i.id, i.map_type), (3, MapType::Hash.raw())),
        other => panic!("{other:?}"),
    }
    assert!(matches!(rt.obj_get_info(hfd), Ok(ObjInfo::Btf(_))));
    assert_eq!(rt.obj_get_info(999).err(), Some(Errno::EBADF));
    assert!(matches!(rt.fd_get(mfd), Ok(FdObject::Map(_))));
    // A loaded BTF keeps its bytes and is reachable by id.
    let mut b = BtfBuilder::new();
    b.add_int("int", 4, INT_SIGNED);
    let raw = b.encode();
    let btf = rt.btf_load(&raw).unwrap();
    assert_eq!(btf.raw(), &raw[..]);
    assert_eq!(btf.info().btf_size as usize, raw.len());
    assert!(!btf.info().kernel_btf);
    assert_eq!(rt.btf_get_fd_by_id(btf.id()).unwrap().id(), btf.id());
    assert_eq!(rt.btf_load(&raw[..10]).err(), Some(Errno::EINVAL));
}
