//! Kernel differential for maps: the same sequences of map create / update / lookup /
//! delete / get_next_key / freeze / get_fd_by_id run through raw `bpf(2)` on the running
//! kernel and through [`structops::Runtime`], step by step, with the same results,
//! outputs and errnos. Skips with a printed reason without root or BPF.

#[path = "common/kernel.rs"]
mod kernel;

use std::collections::BTreeMap;

use structops::maps::*;
use structops::{Errno, HostObject, MapHandle, Runtime, RuntimeConfig};
use structops_btf::{BtfBuilder, INT_SIGNED, Linkage, VarSecInfo};

/// `BPF_MAP_LOOKUP_AND_DELETE_ELEM`.
const BPF_MAP_LOOKUP_AND_DELETE_ELEM: u32 = 21;

/// An object a step refers to, translated to each backend's descriptor.
#[derive(Clone, Copy, Debug)]
enum Ref {
    Map(usize),
    Btf(usize),
    Host(usize),
    Vmlinux,
    Raw(u32),
}

/// Key or value bytes, or a descriptor of an object.
#[derive(Clone, Debug)]
enum Val {
    Bytes(Vec<u8>),
    Fd(Ref),
}

#[derive(Clone, Debug)]
enum Step {
    Create {
        attr: MapCreateAttr,
        btf: Option<Ref>,
        inner: Option<Ref>,
    },
    Lookup {
        m: usize,
        key: Option<Val>,
        flags: u64,
    },
    Update {
        m: usize,
        key: Option<Val>,
        value: Val,
        flags: u64,
    },
    Delete {
        m: usize,
        key: Option<Val>,
    },
    /// `BPF_MAP_LOOKUP_AND_DELETE_ELEM`: the output is the value.
    LookupAndDelete {
        m: usize,
        key: Option<Val>,
        flags: u64,
    },
    NextKey {
        m: usize,
        key: Option<Val>,
    },
    Freeze {
        m: usize,
    },
    /// `get_next_key` from NULL until `ENOENT`; the output is every key in order.
    Walk {
        m: usize,
    },
    Reopen {
        m: usize,
        flags: u32,
    },
    Info {
        m: usize,
    },
    BtfLoad {
        data: Vec<u8>,
    },
    Host,
}

type Outcome = Result<Vec<u8>, Errno>;

trait Backend {
    fn fd(&self, r: Ref) -> u32;
    fn create(&mut self, a: &MapCreateAttr) -> Result<(), Errno>;
    fn lookup(&mut self, m: usize, k: Option<&[u8]>, out: &mut [u8], f: u64) -> Result<(), Errno>;
    fn update(&mut self, m: usize, k: Option<&[u8]>, v: &[u8], f: u64) -> Result<(), Errno>;
    fn delete(&mut self, m: usize, k: Option<&[u8]>) -> Result<(), Errno>;
    fn lookup_and_delete(
        &mut self,
        m: usize,
        k: Option<&[u8]>,
        out: &mut [u8],
        f: u64,
    ) -> Result<(), Errno>;
    fn next_key(&mut self, m: usize, k: Option<&[u8]>, out: &mut [u8]) -> Result<(), Errno>;
    fn freeze(&mut self, m: usize) -> Result<(), Errno>;
    fn map_id(&self, m: usize) -> u32;
    fn reopen(&mut self, id: u32, flags: u32) -> Result<(), Errno>;
    fn info(&self, m: usize) -> Result<Vec<u8>, Errno>;
    fn btf_load(&mut self, data: &[u8]) -> Result<(), Errno>;
    fn host(&mut self);
}

// ---------------------------------------------------------------------------------------
// The kernel

struct Kernel {
    maps: Vec<i32>,
    btfs: Vec<i32>,
    hosts: Vec<i32>,
    vmlinux: i32,
}

impl Kernel {
    fn new() -> Kernel {
        Kernel {
            maps: vec![],
            btfs: vec![],
            hosts: vec![],
            vmlinux: kernel::vmlinux_btf_fd().unwrap_or(-1),
        }
    }
}

impl Drop for Kernel {
    fn drop(&mut self) {
        for &fd in self.maps.iter().chain(&self.btfs).chain(&self.hosts) {
            kernel::close(fd);
        }
        kernel::close(self.vmlinux);
    }
}

impl Backend for Kernel {
    fn fd(&self, r: Ref) -> u32 {
        match r {
            Ref::Map(i) => self.maps[i] as u32,
            Ref::Btf(i) => self.btfs[i] as u32,
            Ref::Host(i) => self.hosts[i] as u32,
            Ref::Vmlinux => self.vmlinux as u32,
            Ref::Raw(x) => x,
        }
    }
    fn create(&mut self, a: &MapCreateAttr) -> Result<(), Errno> {
        let fd = kernel::map_create(a)?;
        self.maps.push(fd);
        Ok(())
    }
    fn lookup(&mut self, m: usize, k: Option<&[u8]>, out: &mut [u8], f: u64) -> Result<(), Errno> {
        kernel::lookup(self.maps[m], k, out, f)
    }
    fn update(&mut self, m: usize, k: Option<&[u8]>, v: &[u8], f: u64) -> Result<(), Errno> {
        kernel::update(self.maps[m], k, v, f)
    }
    fn delete(&mut self, m: usize, k: Option<&[u8]>) -> Result<(), Errno> {
        kernel::delete(self.maps[m], k)
    }
    fn lookup_and_delete(
        &mut self,
        m: usize,
        k: Option<&[u8]>,
        out: &mut [u8],
        f: u64,
    ) -> Result<(), Errno> {
        let mut at = kernel::Attr::new();
        at.u32(0, self.maps[m] as u32)
            .u64(8, k.map_or(0, |k| k.as_ptr() as u64))
            .u64(16, out.as_mut_ptr() as u64)
            .u64(24, f);
        kernel::sys_bpf(BPF_MAP_LOOKUP_AND_DELETE_ELEM, &mut at).map(drop)
    }
    fn next_key(&mut self, m: usize, k: Option<&[u8]>, out: &mut [u8]) -> Result<(), Errno> {
        kernel::next_key(self.maps[m], k, out)
    }
    fn freeze(&mut self, m: usize) -> Result<(), Errno> {
        kernel::freeze(self.maps[m])
    }
    fn map_id(&self, m: usize) -> u32 {
        kernel::map_info(self.maps[m]).map_or(0, |i| i[1])
    }
    fn reopen(&mut self, id: u32, flags: u32) -> Result<(), Errno> {
        let fd = kernel::get_fd_by_id(kernel::MAP_GET_FD_BY_ID, id, flags)?;
        self.maps.push(fd);
        Ok(())
    }
    fn info(&self, m: usize) -> Result<Vec<u8>, Errno> {
        let i = kernel::map_info(self.maps[m])?;
        let name = kernel::map_name(self.maps[m])?;
        Ok(info_bytes(
            [
                i[0],
                i[2],
                i[3],
                i[4],
                i[5],
                u32::from(i[6] != 0),
                i[7],
                i[8],
            ],
            &name,
        ))
    }
    fn btf_load(&mut self, data: &[u8]) -> Result<(), Errno> {
        let fd = kernel::btf_load(data)?;
        self.btfs.push(fd);
        Ok(())
    }
    fn host(&mut self) {
        self.hosts.push(kernel::socket());
    }
}

fn info_bytes(v: [u32; 8], name: &str) -> Vec<u8> {
    let mut out: Vec<u8> = v.iter().flat_map(|x| x.to_ne_bytes()).collect();
    out.extend_from_slice(name.as_bytes());
    out
}

// ---------------------------------------------------------------------------------------
// The runtime

struct Ours {
    rt: Runtime,
    maps: Vec<(MapHandle, u32)>,
    btfs: Vec<u32>,
    hosts: Vec<(HostObject, u32)>,
    vmlinux: u32,
}

impl Ours {
    fn new(ncpus: u32) -> Ours {
        let rt = Runtime::new(RuntimeConfig {
            ncpus,
            ..RuntimeConfig::default()
        });
        let mut b = BtfBuilder::new();
        b.add_int("int", 4, INT_SIGNED);
        let host = rt.register_host_btf(b.build()).unwrap();
        let vmlinux = rt.fd_install(host).unwrap();
        Ours {
            rt,
            maps: vec![],
            btfs: vec![],
            hosts: vec![],
            vmlinux,
        }
    }
}

impl Backend for Ours {
    fn fd(&self, r: Ref) -> u32 {
        match r {
            Ref::Map(i) => self.maps[i].1,
            Ref::Btf(i) => self.btfs[i],
            Ref::Host(i) => self.hosts[i].1,
            Ref::Vmlinux => self.vmlinux,
            Ref::Raw(x) => x,
        }
    }
    fn create(&mut self, a: &MapCreateAttr) -> Result<(), Errno> {
        let h = self.rt.map_create(a)?;
        let fd = self.rt.fd_install(h.clone()).unwrap();
        self.maps.push((h, fd));
        Ok(())
    }
    fn lookup(&mut self, m: usize, k: Option<&[u8]>, out: &mut [u8], f: u64) -> Result<(), Errno> {
        self.rt.map_lookup_elem(&self.maps[m].0, k, out, f)
    }
    fn update(&mut self, m: usize, k: Option<&[u8]>, v: &[u8], f: u64) -> Result<(), Errno> {
        self.rt.map_update_elem(&self.maps[m].0, k, v, f)
    }
    fn delete(&mut self, m: usize, k: Option<&[u8]>) -> Result<(), Errno> {
        self.rt.map_delete_elem(&self.maps[m].0, k)
    }
    fn lookup_and_delete(
        &mut self,
        m: usize,
        k: Option<&[u8]>,
        out: &mut [u8],
        f: u64,
    ) -> Result<(), Errno> {
        self.rt
            .map_lookup_and_delete_elem(&self.maps[m].0, k, out, f)
    }
    fn next_key(&mut self, m: usize, k: Option<&[u8]>, out: &mut [u8]) -> Result<(), Errno> {
        self.rt.map_get_next_key(&self.maps[m].0, k, out)
    }
    fn freeze(&mut self, m: usize) -> Result<(), Errno> {
        self.rt.map_freeze(&self.maps[m].0)
    }
    fn map_id(&self, m: usize) -> u32 {
        self.maps[m].0.id()
    }
    fn reopen(&mut self, id: u32, flags: u32) -> Result<(), Errno> {
        let h = self.rt.map_get_fd_by_id(id, flags)?;
        let fd = self.rt.fd_install(h.clone()).unwrap();
        self.maps.push((h, fd));
        Ok(())
    }
    fn info(&self, m: usize) -> Result<Vec<u8>, Errno> {
        let i = self.rt.map_info(&self.maps[m].0);
        Ok(info_bytes(
            [
                i.map_type,
                i.key_size,
                i.value_size,
                i.max_entries,
                i.map_flags,
                u32::from(i.btf_id != 0),
                i.btf_key_type_id,
                i.btf_value_type_id,
            ],
            &i.name,
        ))
    }
    fn btf_load(&mut self, data: &[u8]) -> Result<(), Errno> {
        let h = self.rt.btf_load(data)?;
        self.btfs.push(self.rt.fd_install(h).unwrap());
        Ok(())
    }
    fn host(&mut self) {
        let h = self.rt.host_object_new();
        let fd = self.rt.fd_install(h.clone()).unwrap();
        self.hosts.push((h, fd));
    }
}

// ---------------------------------------------------------------------------------------
// Running a case on a backend

fn bytes(b: &dyn Backend, v: &Val) -> Vec<u8> {
    match v {
        Val::Bytes(x) => x.clone(),
        Val::Fd(r) => b.fd(*r).to_ne_bytes().to_vec(),
    }
}

/// What each created map slot is, for buffer sizes and id translation.
#[derive(Clone, Copy)]
struct SlotMeta {
    ty: u32,
    key_size: u32,
    value_size: u32,
}

fn sys_value_size(s: SlotMeta, ncpus: u32) -> usize {
    match MapType::from_raw(s.ty) {
        Some(t) if t.is_percpu() => s.value_size.next_multiple_of(8) as usize * ncpus as usize,
        Some(t) if t.is_fd_map() => 4,
        _ => s.value_size as usize,
    }
}

fn run(b: &mut dyn Backend, steps: &[Step], ncpus: u32) -> Vec<Outcome> {
    let mut slots: Vec<SlotMeta> = vec![];
    let mut out = vec![];
    for s in steps {
        let key = |b: &dyn Backend, k: &Option<Val>| k.as_ref().map(|v| bytes(b, v));
        // A step on a map whose creation failed (in both, or the case already differs).
        let target = match s {
            Step::Lookup { m, .. }
            | Step::LookupAndDelete { m, .. }
            | Step::Update { m, .. }
            | Step::Delete { m, .. }
            | Step::NextKey { m, .. }
            | Step::Freeze { m }
            | Step::Walk { m }
            | Step::Reopen { m, .. }
            | Step::Info { m } => Some(*m),
            _ => None,
        };
        if target.is_some_and(|m| m >= slots.len()) {
            out.push(Err(Errno(-1)));
            continue;
        }
        let r: Outcome = match s {
            Step::Create { attr, btf, inner } => {
                let mut a = attr.clone();
                if let Some(r) = btf {
                    a.btf_fd = b.fd(*r);
                }
                if let Some(r) = inner {
                    a.inner_map_fd = b.fd(*r);
                }
                let r = b.create(&a);
                if r.is_ok() {
                    slots.push(SlotMeta {
                        ty: a.map_type,
                        key_size: a.key_size,
                        value_size: a.value_size,
                    });
                }
                r.map(|_| vec![])
            }
            Step::Lookup { m, key: k, flags } => {
                let k = key(b, k);
                let mut v = vec![0u8; sys_value_size(slots[*m], ncpus)];
                b.lookup(*m, k.as_deref(), &mut v, *flags)
                    .map(|_| translate_id(b, &slots, *m, v))
            }
            Step::Update {
                m,
                key: k,
                value,
                flags,
            } => {
                let k = key(b, k);
                let v = bytes(b, value);
                b.update(*m, k.as_deref(), &v, *flags).map(|_| vec![])
            }
            Step::Delete { m, key: k } => {
                let k = key(b, k);
                b.delete(*m, k.as_deref()).map(|_| vec![])
            }
            Step::LookupAndDelete { m, key: k, flags } => {
                let k = key(b, k);
                let mut v = vec![0u8; sys_value_size(slots[*m], ncpus)];
                b.lookup_and_delete(*m, k.as_deref(), &mut v, *flags)
                    .map(|_| v)
            }
            Step::NextKey { m, key: k } => {
                let k = key(b, k);
                let mut v = vec![0u8; slots[*m].key_size as usize];
                b.next_key(*m, k.as_deref(), &mut v).map(|_| v)
            }
            Step::Freeze { m } => b.freeze(*m).map(|_| vec![]),
            Step::Walk { m } => {
                let ks = slots[*m].key_size as usize;
                let mut all = vec![];
                let mut prev: Option<Vec<u8>> = None;
                let mut res = Ok(());
                for _ in 0..10_000 {
                    let mut v = vec![0u8; ks];
                    match b.next_key(*m, prev.as_deref(), &mut v) {
                        Ok(()) => {
                            all.extend_from_slice(&v);
                            prev = Some(v);
                        }
                        Err(Errno::ENOENT) => break,
                        Err(e) => {
                            res = Err(e);
                            break;
                        }
                    }
                }
                res.map(|_| all)
            }
            Step::Reopen { m, flags } => {
                let id = b.map_id(*m);
                let r = b.reopen(id, *flags);
                if r.is_ok() {
                    slots.push(slots[*m]);
                }
                r.map(|_| vec![])
            }
            Step::Info { m } => b.info(*m),
            Step::BtfLoad { data } => b.btf_load(data).map(|_| vec![]),
            Step::Host => {
                b.host();
                Ok(vec![])
            }
        };
        out.push(r);
    }
    out
}

/// Ids of inner maps differ between backends: report the slot instead.
fn translate_id(b: &dyn Backend, slots: &[SlotMeta], m: usize, v: Vec<u8>) -> Vec<u8> {
    let ty = MapType::from_raw(slots[m].ty);
    if !matches!(ty, Some(MapType::ArrayOfMaps | MapType::HashOfMaps)) {
        return v;
    }
    let id = u32::from_ne_bytes(v[..4].try_into().unwrap());
    let slot = (0..slots.len()).find(|&i| b.map_id(i) == id);
    (slot.map_or(u32::MAX, |s| s as u32)).to_ne_bytes().to_vec()
}

// ---------------------------------------------------------------------------------------
// Cases

struct Case {
    group: String,
    label: String,
    steps: Vec<Step>,
}

fn test_btf() -> Vec<u8> {
    let mut b = BtfBuilder::new();
    let int = b.add_int("int", 4, INT_SIGNED); // 1
    let u64t = b.add_int("u64", 8, 0); // 2
    b.add_struct("val8", 8, &[("a", int, 0), ("b", int, 32)]); // 3
    b.add_typedef("u32t", int); // 4
    b.add_const(int); // 5
    b.add_int("char", 1, 0); // 6
    b.add_array(int, int, 4); // 7: 16 bytes
    b.add_ptr(int); // 8
    let var = b.add_var("x", int, Linkage::Global); // 9
    b.add_datasec(
        ".data",
        4,
        &[VarSecInfo {
            ty: var,
            offset: 0,
            size: 4,
        }],
    ); // 10
    b.add_func_proto(int, &[]); // 11
    b.add_struct("val4", 4, &[("a", int, 0)]); // 12
    b.add_fwd("fw", false); // 13
    b.add_struct("z", 0, &[]); // 14
    b.add_int("short", 2, INT_SIGNED); // 15
    b.add_struct("key8", 8, &[("k", u64t, 0)]); // 16
    b.encode()
}

fn create(attr: MapCreateAttr) -> Step {
    Step::Create {
        attr,
        btf: None,
        inner: None,
    }
}

fn k32(x: u32) -> Option<Val> {
    Some(Val::Bytes(x.to_ne_bytes().to_vec()))
}

struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
    fn pick<T: Copy>(&mut self, xs: &[T]) -> T {
        xs[self.below(xs.len() as u64) as usize]
    }
}

const ALL_TYPES: [MapType; 14] = [
    MapType::Hash,
    MapType::Array,
    MapType::ProgArray,
    MapType::PercpuHash,
    MapType::PercpuArray,
    MapType::LruHash,
    MapType::LruPercpuHash,
    MapType::ArrayOfMaps,
    MapType::HashOfMaps,
    MapType::SkStorage,
    MapType::Ringbuf,
    MapType::TaskStorage,
    MapType::Queue,
    MapType::Stack,
];

/// Sizes and flags a map of `ty` can be created with.
fn valid(ty: MapType) -> MapCreateAttr {
    match ty {
        MapType::Array | MapType::PercpuArray => MapCreateAttr::new(ty, 4, 8, 4),
        MapType::ProgArray | MapType::ArrayOfMaps => MapCreateAttr::new(ty, 4, 4, 4),
        MapType::HashOfMaps => MapCreateAttr::new(ty, 4, 4, 4),
        MapType::Ringbuf => MapCreateAttr::new(ty, 0, 0, 4096),
        MapType::Queue | MapType::Stack => MapCreateAttr::new(ty, 0, 8, 4),
        MapType::SkStorage | MapType::TaskStorage => {
            let mut a = MapCreateAttr::new(ty, 4, 8, 0).flags(BPF_F_NO_PREALLOC);
            a.btf_key_type_id = 1;
            a.btf_value_type_id = 3;
            a
        }
        _ => MapCreateAttr::new(ty, 4, 8, 4),
    }
}

/// Setup every create case starts from: a BTF object (btf 0) and an inner-map template
/// (map 0).
fn prelude() -> Vec<Step> {
    vec![
        Step::BtfLoad { data: test_btf() },
        create(MapCreateAttr::new(MapType::Array, 4, 8, 4)),
    ]
}

fn with_refs(ty: MapType, attr: MapCreateAttr) -> Step {
    let needs_btf = attr.btf_key_type_id != 0 || attr.btf_value_type_id != 0;
    Step::Create {
        attr,
        btf: needs_btf.then_some(Ref::Btf(0)),
        inner: matches!(ty, MapType::ArrayOfMaps | MapType::HashOfMaps).then_some(Ref::Map(0)),
    }
}

fn create_cases() -> Vec<Case> {
    let mut cases = vec![];
    let mut push = |group: &str, label: String, extra: Vec<Step>| {
        let mut steps = prelude();
        let n = extra.len();
        steps.extend(extra);
        if n > 0 {
            // Describe whatever got created last (map 1 if the create succeeded).
            steps.push(Step::Info { m: 1 });
        }
        cases.push(Case {
            group: group.into(),
            label,
            steps,
        });
    };
    for ty in ALL_TYPES {
        let g = format!("create {ty:?}");
        // Sizes.
        for ks in [0u32, 1, 4, 8, 64] {
            for vs in [0u32, 1, 4, 8, 4096] {
                for max in [0u32, 1, 7, 4096] {
                    let mut a = valid(ty);
                    a.key_size = ks;
                    a.value_size = vs;
                    a.max_entries = max;
                    push(&g, format!("k{ks} v{vs} max{max}"), vec![with_refs(ty, a)]);
                }
            }
        }
        // Value-size limits.
        for vs in [32768u32, 32769, 65407, 65408, 1 << 22, i32::MAX as u32 + 1] {
            let mut a = valid(ty);
            a.value_size = vs;
            a.max_entries = a.max_entries.min(1).max(u32::from(
                ty != MapType::SkStorage && ty != MapType::TaskStorage,
            ));
            if ty == MapType::Ringbuf {
                continue;
            }
            push(&g, format!("value_size {vs}"), vec![with_refs(ty, a)]);
        }
        // Every flag alone, and the interesting pairs.
        let mut flag_sets: Vec<u32> = (0..19).map(|b| 1u32 << b).collect();
        flag_sets.extend([
            0,
            BPF_F_RDONLY | BPF_F_WRONLY,
            BPF_F_RDONLY_PROG | BPF_F_WRONLY_PROG,
            BPF_F_NO_PREALLOC | BPF_F_NO_COMMON_LRU,
            BPF_F_NO_COMMON_LRU | BPF_F_NUMA_NODE,
            BPF_F_MMAPABLE | BPF_F_RDONLY_PROG,
            BPF_F_INNER_MAP | BPF_F_MMAPABLE,
            BPF_F_NO_PREALLOC | BPF_F_ZERO_SEED,
            BPF_F_NO_PREALLOC | BPF_F_CLONE,
            BPF_F_NO_PREALLOC | BPF_F_RDONLY,
            u32::MAX,
        ]);
        for f in flag_sets {
            let mut a = valid(ty);
            let base = a.map_flags;
            a.map_flags = f | if f == 0 { base } else { 0 };
            push(&g, format!("flags {f:#x}"), vec![with_refs(ty, a.clone())]);
            if is_local_storage(ty) {
                a.map_flags |= BPF_F_NO_PREALLOC;
                push(
                    &g,
                    format!("flags {f:#x}|NO_PREALLOC"),
                    vec![with_refs(ty, a)],
                );
            }
        }
        // NUMA nodes, map_extra, ifindex, vmlinux value type, key type without value.
        for (label, f) in [
            ("numa 0", (BPF_F_NUMA_NODE, 0u32)),
            ("numa 1", (BPF_F_NUMA_NODE, 1)),
            ("numa 4096", (BPF_F_NUMA_NODE, 4096)),
            ("numa ignored", (0, 77)),
        ] {
            let mut a = valid(ty);
            a.map_flags |= f.0;
            a.numa_node = f.1;
            push(&g, label.into(), vec![with_refs(ty, a)]);
        }
        let mut a = valid(ty);
        a.map_extra = 1;
        push(&g, "map_extra".into(), vec![with_refs(ty, a)]);
        let mut a = valid(ty);
        a.map_ifindex = 0x7fff_0000;
        push(&g, "ifindex".into(), vec![with_refs(ty, a)]);
        let mut a = valid(ty);
        a.btf_vmlinux_value_type_id = 1;
        push(&g, "vmlinux value type".into(), vec![with_refs(ty, a)]);
        let mut a = valid(ty);
        a.btf_key_type_id = 1;
        a.btf_value_type_id = 0;
        push(
            &g,
            "key type without value type".into(),
            vec![with_refs(ty, a)],
        );
        // Names.
        let names: [&[u8]; 8] = [
            b"good.name_9",
            b"bad-name",
            b"fifteen_chars_x",
            b"",
            b"sp ace",
            b"\xc0latin",
            b"\xd7times",
            b"\xf7div",
        ];
        for n in names {
            let mut a = valid(ty);
            a.map_name = [0; 16];
            a.map_name[..n.len()].copy_from_slice(n);
            push(
                &g,
                format!("name {:?}", String::from_utf8_lossy(n)),
                vec![with_refs(ty, a)],
            );
        }
        let mut a = valid(ty);
        a.map_name = [b'a'; 16];
        push(&g, "name without NUL".into(), vec![with_refs(ty, a)]);
        // BTF key/value types.
        let btf_pairs: [(u32, u32, &str); 18] = [
            (1, 3, "int/val8"),
            (4, 3, "typedef key"),
            (5, 3, "const key"),
            (0, 3, "void key"),
            (1, 12, "value size mismatch"),
            (3, 3, "struct key"),
            (15, 3, "short key"),
            (6, 3, "char key"),
            (1, 7, "array value"),
            (1, 8, "ptr value"),
            (1, 13, "fwd value"),
            (1, 11, "func_proto value"),
            (1, 9999, "value id out of range"),
            (9999, 3, "key id out of range"),
            (0, 10, "datasec value"),
            (1, 10, "datasec value with key"),
            (1, 2, "u64 value"),
            (16, 2, "struct key8"),
        ];
        for (k, v, label) in btf_pairs {
            for (vs, max) in [(None, None), (Some(16u32), None), (Some(4), Some(1u32))] {
                let mut a = valid(ty);
                a.btf_key_type_id = k;
                a.btf_value_type_id = v;
                if let Some(vs) = vs {
                    a.value_size = vs;
                }
                if let Some(m) = max {
                    a.max_entries = m;
                }
                if k == 16 || k == 3 {
                    a.key_size = 8;
                }
                if k == 15 {
                    a.key_size = 2;
                }
                if k == 6 {
                    a.key_size = 1;
                }
                push(
                    &g,
                    format!("btf {label} v{} max{}", a.value_size, a.max_entries),
                    vec![with_refs(ty, a)],
                );
            }
        }
        for (r, label) in [
            (Ref::Vmlinux, "vmlinux btf"),
            (Ref::Raw(0x7fff_fff0), "bad btf fd"),
            (Ref::Map(0), "map fd as btf fd"),
        ] {
            let mut a = valid(ty);
            a.btf_key_type_id = 1;
            a.btf_value_type_id = 3;
            push(
                &g,
                label.into(),
                vec![Step::Create {
                    attr: a,
                    btf: Some(r),
                    inner: matches!(ty, MapType::ArrayOfMaps | MapType::HashOfMaps)
                        .then_some(Ref::Map(0)),
                }],
            );
        }
    }
    // Inner-map templates of every type, and bad inner fds.
    for outer in [MapType::ArrayOfMaps, MapType::HashOfMaps] {
        let g = format!("create {outer:?} inner");
        for inner in ALL_TYPES {
            let mut ia = valid(inner);
            let needs_btf = ia.btf_value_type_id != 0;
            let mut steps = vec![Step::Create {
                attr: ia.clone(),
                btf: needs_btf.then_some(Ref::Btf(0)),
                inner: matches!(inner, MapType::ArrayOfMaps | MapType::HashOfMaps)
                    .then_some(Ref::Map(0)),
            }];
            steps.push(Step::Create {
                attr: valid(outer),
                btf: None,
                inner: Some(Ref::Map(1)),
            });
            steps.push(Step::Info { m: 2 });
            ia.map_flags = 0;
            let mut all = prelude();
            all.extend(steps);
            cases.push(Case {
                group: g.clone(),
                label: format!("inner {inner:?}"),
                steps: all,
            });
        }
        for (r, label) in [
            (Ref::Raw(0x7fff_fff0), "bad inner fd"),
            (Ref::Btf(0), "btf fd as inner"),
        ] {
            let mut all = prelude();
            all.push(Step::Create {
                attr: valid(outer),
                btf: None,
                inner: Some(r),
            });
            cases.push(Case {
                group: g.clone(),
                label: label.into(),
                steps: all,
            });
        }
    }
    // Unknown and unsupported type numbers that the kernel also refuses.
    for t in [0u32, 34, 100, u32::MAX] {
        let mut a = MapCreateAttr::new(MapType::Array, 4, 4, 1);
        a.map_type = t;
        let mut all = prelude();
        all.push(create(a));
        cases.push(Case {
            group: "create unknown type".into(),
            label: format!("type {t}"),
            steps: all,
        });
    }
    cases
}

fn is_local_storage(ty: MapType) -> bool {
    matches!(ty, MapType::SkStorage | MapType::TaskStorage)
}

/// A random operation sequence on a map of `attr` (map 1 after the prelude).
fn random_ops(attr: MapCreateAttr, seed: u64, n: usize, ncpus: u32) -> Vec<Step> {
    let mut rng = Rng(seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1);
    let ty = MapType::from_raw(attr.map_type).unwrap();
    let ks = attr.key_size as usize;
    let vsize = if ty.is_percpu() {
        attr.value_size.next_multiple_of(8) as usize * ncpus as usize
    } else {
        attr.value_size as usize
    };
    let domain = u64::from(attr.max_entries.max(4)) * 2;
    let mut steps = prelude();
    steps.push(create(attr.clone()));
    let key = |rng: &mut Rng| -> Option<Val> {
        let x = rng.below(domain + 2);
        let mut k = vec![0u8; ks];
        for (i, b) in k.iter_mut().enumerate() {
            *b = (x >> (8 * (i % 8))) as u8;
        }
        if ks >= 4 {
            k[..4].copy_from_slice(&(x as u32).to_ne_bytes());
        }
        Some(Val::Bytes(k))
    };
    for _ in 0..n {
        let op = rng.below(100);
        let k = if rng.below(50) == 0 {
            None
        } else {
            key(&mut rng)
        };
        let step = match op {
            0..=39 => {
                let flags = rng.pick(&[0u64, 0, 0, 1, 1, 2, 2, 3, 4, 8]);
                let mut v = vec![0u8; vsize];
                for b in v.iter_mut() {
                    *b = rng.next() as u8;
                }
                // Per-CPU values beyond value_size in each slot are not stored: keep
                // them zero so the comparison of lookups is meaningful.
                if ty.is_percpu() {
                    let stride = attr.value_size.next_multiple_of(8) as usize;
                    for (i, b) in v.iter_mut().enumerate() {
                        if i % stride >= attr.value_size as usize {
                            *b = 0;
                        }
                    }
                }
                Step::Update {
                    m: 1,
                    key: k,
                    value: Val::Bytes(v),
                    flags,
                }
            }
            40..=64 => Step::Lookup {
                m: 1,
                key: k,
                flags: rng.pick(&[0u64, 0, 0, 0, 4, 8]),
            },
            65..=79 => Step::Delete { m: 1, key: k },
            80..=98 => Step::NextKey {
                m: 1,
                key: if rng.below(4) == 0 { None } else { k },
            },
            _ => {
                if rng.below(8) == 0 {
                    Step::Freeze { m: 1 }
                } else {
                    Step::Info { m: 1 }
                }
            }
        };
        steps.push(step);
    }
    // Walk every key at the end.
    steps.push(Step::Walk { m: 1 });
    steps
}

/// A random sequence on a queue or stack of `attr` (map 1 after the prelude): pushes
/// (`BPF_MAP_UPDATE_ELEM`) with every flag combination, peeks (`LOOKUP`), pops
/// (`LOOKUP_AND_DELETE`), and the operations such maps refuse, mostly with the NULL key
/// they take.
fn random_queue_ops(attr: MapCreateAttr, seed: u64, n: usize) -> Vec<Step> {
    let mut rng = Rng(seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1);
    let vs = attr.value_size as usize;
    let mut steps = prelude();
    steps.push(create(attr));
    for _ in 0..n {
        let key = match rng.below(20) {
            0 => Some(Val::Bytes(vec![])),
            1 => k32(0),
            _ => None,
        };
        let op = rng.below(100);
        let step = match op {
            0..=39 => {
                let mut v = vec![0u8; vs];
                for b in v.iter_mut() {
                    *b = rng.next() as u8;
                }
                Step::Update {
                    m: 1,
                    key,
                    value: Val::Bytes(v),
                    flags: rng.pick(&[0u64, 0, 0, 0, 2, 2, 1, 3, 4, 8]),
                }
            }
            40..=59 => Step::Lookup {
                m: 1,
                key,
                flags: rng.pick(&[0u64, 0, 0, 0, 4, 8]),
            },
            60..=84 => Step::LookupAndDelete {
                m: 1,
                key,
                flags: rng.pick(&[0u64, 0, 0, 0, 0, 1, 4, 8]),
            },
            85..=90 => Step::Delete { m: 1, key },
            91..=96 => Step::NextKey { m: 1, key },
            _ => {
                if rng.below(10) == 0 {
                    Step::Freeze { m: 1 }
                } else {
                    Step::Info { m: 1 }
                }
            }
        };
        steps.push(step);
    }
    // Drain what is left.
    for _ in 0..attr_max(&steps) + 1 {
        steps.push(Step::LookupAndDelete {
            m: 1,
            key: None,
            flags: 0,
        });
    }
    steps
}

/// `max_entries` of the map a queue sequence creates (map 1).
fn attr_max(steps: &[Step]) -> u32 {
    steps
        .iter()
        .filter_map(|s| match s {
            Step::Create { attr, .. } => Some(attr.max_entries),
            _ => None,
        })
        .nth(1)
        .unwrap_or(0)
}

fn sequence_cases(ncpus: u32) -> Vec<Case> {
    let mut cases = vec![];
    let z = BPF_F_ZERO_SEED;
    let configs: Vec<(&str, MapCreateAttr)> = vec![
        ("ARRAY", MapCreateAttr::new(MapType::Array, 4, 12, 8)),
        (
            "ARRAY mmapable",
            MapCreateAttr::new(MapType::Array, 4, 8, 8).flags(BPF_F_MMAPABLE),
        ),
        (
            "PERCPU_ARRAY",
            MapCreateAttr::new(MapType::PercpuArray, 4, 12, 8),
        ),
        ("HASH", MapCreateAttr::new(MapType::Hash, 4, 12, 8).flags(z)),
        (
            "HASH k8",
            MapCreateAttr::new(MapType::Hash, 8, 8, 8).flags(z),
        ),
        (
            "HASH k3",
            MapCreateAttr::new(MapType::Hash, 3, 8, 8).flags(z),
        ),
        (
            "HASH k13",
            MapCreateAttr::new(MapType::Hash, 13, 8, 8).flags(z),
        ),
        (
            "HASH no_prealloc",
            MapCreateAttr::new(MapType::Hash, 4, 8, 8).flags(z | BPF_F_NO_PREALLOC),
        ),
        (
            "PERCPU_HASH",
            MapCreateAttr::new(MapType::PercpuHash, 4, 12, 8).flags(z),
        ),
        (
            "PERCPU_HASH no_prealloc",
            MapCreateAttr::new(MapType::PercpuHash, 4, 8, 8).flags(z | BPF_F_NO_PREALLOC),
        ),
        (
            "LRU_HASH",
            MapCreateAttr::new(MapType::LruHash, 4, 8, 8).flags(z),
        ),
        (
            "LRU_HASH 64",
            MapCreateAttr::new(MapType::LruHash, 4, 8, 64).flags(z),
        ),
        (
            "LRU_HASH no_common",
            MapCreateAttr::new(MapType::LruHash, 4, 8, 8).flags(z | BPF_F_NO_COMMON_LRU),
        ),
        (
            "LRU_PERCPU_HASH",
            MapCreateAttr::new(MapType::LruPercpuHash, 4, 8, 8).flags(z),
        ),
        (
            "LRU_PERCPU_HASH no_common",
            MapCreateAttr::new(MapType::LruPercpuHash, 4, 8, 9).flags(z | BPF_F_NO_COMMON_LRU),
        ),
        ("RINGBUF", MapCreateAttr::new(MapType::Ringbuf, 0, 0, 4096)),
    ];
    // STRUCTOPS_DIFF_SEEDS raises the number of random sequences per configuration.
    let seeds: u64 = std::env::var("STRUCTOPS_DIFF_SEEDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(12);
    for (name, attr) in configs {
        for seed in 0..seeds {
            cases.push(Case {
                group: format!("ops {name}"),
                label: format!("seed {seed}"),
                steps: random_ops(attr.clone(), seed, 300, ncpus),
            });
        }
    }
    let queues = [
        ("QUEUE", MapCreateAttr::new(MapType::Queue, 0, 8, 4)),
        ("QUEUE v3", MapCreateAttr::new(MapType::Queue, 0, 3, 7)),
        ("QUEUE max1", MapCreateAttr::new(MapType::Queue, 0, 16, 1)),
        ("STACK", MapCreateAttr::new(MapType::Stack, 0, 8, 4)),
        ("STACK v5", MapCreateAttr::new(MapType::Stack, 0, 5, 9)),
    ];
    for (name, attr) in queues {
        for seed in 0..seeds {
            cases.push(Case {
                group: format!("ops {name}"),
                label: format!("seed {seed}"),
                steps: random_queue_ops(attr.clone(), seed, 300),
            });
        }
    }
    cases
}

/// Hand-written sequences: access modes, freeze, fd maps, local storage.
fn scenario_cases() -> Vec<Case> {
    let mut cases = vec![];
    let v8 = |x: u64| Val::Bytes(x.to_ne_bytes().to_vec());
    let mut add = |group: &str, label: &str, extra: Vec<Step>| {
        let mut steps = prelude();
        steps.extend(extra);
        cases.push(Case {
            group: group.into(),
            label: label.into(),
            steps,
        });
    };
    // Freeze and access modes on an array and a hash.
    for ty in [MapType::Array, MapType::Hash] {
        let g = format!("modes {ty:?}");
        let base = MapCreateAttr::new(ty, 4, 8, 4);
        add(
            &g,
            "freeze",
            vec![
                create(base.clone()),
                Step::Update {
                    m: 1,
                    key: k32(1),
                    value: v8(5),
                    flags: 0,
                },
                Step::Freeze { m: 1 },
                Step::Freeze { m: 1 },
                Step::Update {
                    m: 1,
                    key: k32(1),
                    value: v8(6),
                    flags: 0,
                },
                Step::Delete { m: 1, key: k32(1) },
                Step::Lookup {
                    m: 1,
                    key: k32(1),
                    flags: 0,
                },
                Step::NextKey { m: 1, key: None },
                Step::Reopen { m: 1, flags: 0 },
                Step::Update {
                    m: 2,
                    key: k32(1),
                    value: v8(6),
                    flags: 0,
                },
                Step::Info { m: 1 },
            ],
        );
        for (flags, label) in [(BPF_F_RDONLY, "rdonly"), (BPF_F_WRONLY, "wronly")] {
            add(
                &g,
                label,
                vec![
                    create(base.clone().flags(flags)),
                    Step::Update {
                        m: 1,
                        key: k32(1),
                        value: v8(5),
                        flags: 0,
                    },
                    Step::Lookup {
                        m: 1,
                        key: k32(1),
                        flags: 0,
                    },
                    Step::NextKey { m: 1, key: None },
                    Step::Delete { m: 1, key: k32(1) },
                    Step::Freeze { m: 1 },
                    Step::Info { m: 1 },
                    Step::Reopen { m: 1, flags: 0 },
                    Step::Update {
                        m: 2,
                        key: k32(1),
                        value: v8(7),
                        flags: 0,
                    },
                    Step::Lookup {
                        m: 2,
                        key: k32(1),
                        flags: 0,
                    },
                    Step::Reopen {
                        m: 2,
                        flags: BPF_F_RDONLY,
                    },
                    Step::Update {
                        m: 3,
                        key: k32(1),
                        value: v8(8),
                        flags: 0,
                    },
                    Step::Reopen {
                        m: 2,
                        flags: BPF_F_WRONLY,
                    },
                    Step::Lookup {
                        m: 4,
                        key: k32(1),
                        flags: 0,
                    },
                    Step::Freeze { m: 4 },
                    Step::Update {
                        m: 2,
                        key: k32(1),
                        value: v8(9),
                        flags: 0,
                    },
                    Step::Reopen {
                        m: 2,
                        flags: BPF_F_RDONLY | BPF_F_WRONLY,
                    },
                    Step::Reopen {
                        m: 2,
                        flags: 1 << 5,
                    },
                ],
            );
        }
        add(
            &g,
            "rdonly_prog",
            vec![
                create(base.clone().flags(BPF_F_RDONLY_PROG)),
                Step::Update {
                    m: 1,
                    key: k32(2),
                    value: v8(5),
                    flags: 0,
                },
                Step::Lookup {
                    m: 1,
                    key: k32(2),
                    flags: 0,
                },
                Step::Freeze { m: 1 },
            ],
        );
    }
    // PROG_ARRAY: no program descriptors in either case here.
    add(
        "fd maps PROG_ARRAY",
        "ops",
        vec![
            create(MapCreateAttr::new(MapType::ProgArray, 4, 4, 4)),
            Step::Lookup {
                m: 1,
                key: k32(0),
                flags: 0,
            },
            Step::Lookup {
                m: 1,
                key: k32(9),
                flags: 0,
            },
            Step::Update {
                m: 1,
                key: k32(0),
                value: Val::Fd(Ref::Map(0)),
                flags: 0,
            },
            Step::Update {
                m: 1,
                key: k32(0),
                value: Val::Fd(Ref::Raw(0x7fff_fff0)),
                flags: 0,
            },
            Step::Update {
                m: 1,
                key: k32(0),
                value: Val::Fd(Ref::Map(0)),
                flags: 1,
            },
            Step::Update {
                m: 1,
                key: k32(7),
                value: Val::Fd(Ref::Map(0)),
                flags: 0,
            },
            Step::Delete { m: 1, key: k32(0) },
            Step::Delete { m: 1, key: k32(9) },
            Step::NextKey { m: 1, key: None },
            Step::NextKey { m: 1, key: k32(3) },
            Step::NextKey { m: 1, key: k32(77) },
            Step::Freeze { m: 1 },
            Step::Info { m: 1 },
        ],
    );
    // Maps of maps with compatible and incompatible inner maps.
    for outer in [MapType::ArrayOfMaps, MapType::HashOfMaps] {
        let mut steps = vec![
            // map 1: the outer map (template: map 0, ARRAY 4/8/4); zero seed so that
            // a hash of maps iterates in the same order.
            Step::Create {
                attr: if outer == MapType::HashOfMaps {
                    valid(outer).flags(BPF_F_ZERO_SEED)
                } else {
                    valid(outer)
                },
                btf: None,
                inner: Some(Ref::Map(0)),
            },
            // map 2: compatible; map 3: other max_entries; map 4: other type;
            // map 5: other value size; map 6: compatible with a name
            create(MapCreateAttr::new(MapType::Array, 4, 8, 4)),
            create(MapCreateAttr::new(MapType::Array, 4, 8, 5)),
            create(MapCreateAttr::new(MapType::Hash, 4, 8, 4)),
            create(MapCreateAttr::new(MapType::Array, 4, 16, 4)),
            create(MapCreateAttr::new(MapType::Array, 4, 8, 4).name("inner")),
            create(MapCreateAttr::new(MapType::Array, 4, 8, 4).flags(BPF_F_RDONLY_PROG)),
        ];
        for (i, m) in [2usize, 3, 4, 5, 6, 7].iter().enumerate() {
            steps.push(Step::Update {
                m: 1,
                key: k32(i as u32),
                value: Val::Fd(Ref::Map(*m)),
                flags: 0,
            });
        }
        steps.extend([
            Step::Update {
                m: 1,
                key: k32(1),
                value: Val::Fd(Ref::Raw(0x7fff_fff0)),
                flags: 0,
            },
            Step::Update {
                m: 1,
                key: k32(1),
                value: Val::Fd(Ref::Btf(0)),
                flags: 0,
            },
            Step::Update {
                m: 1,
                key: k32(1),
                value: Val::Fd(Ref::Map(2)),
                flags: 1,
            },
            Step::Update {
                m: 1,
                key: k32(0),
                value: Val::Fd(Ref::Map(6)),
                flags: 1,
            },
            Step::Update {
                m: 1,
                key: k32(0),
                value: Val::Fd(Ref::Map(6)),
                flags: 2,
            },
            Step::Update {
                m: 1,
                key: k32(3),
                value: Val::Fd(Ref::Map(6)),
                flags: 2,
            },
            Step::Update {
                m: 1,
                key: k32(3),
                value: Val::Fd(Ref::Map(6)),
                flags: 9,
            },
            Step::Update {
                m: 1,
                key: k32(99),
                value: Val::Fd(Ref::Map(2)),
                flags: 0,
            },
            Step::Lookup {
                m: 1,
                key: k32(0),
                flags: 0,
            },
            Step::Lookup {
                m: 1,
                key: k32(1),
                flags: 0,
            },
            Step::Lookup {
                m: 1,
                key: k32(99),
                flags: 0,
            },
            Step::NextKey { m: 1, key: None },
            Step::NextKey { m: 1, key: k32(0) },
            Step::Delete { m: 1, key: k32(0) },
            Step::Delete { m: 1, key: k32(0) },
            Step::Delete { m: 1, key: k32(99) },
            Step::Lookup {
                m: 1,
                key: k32(0),
                flags: 0,
            },
            Step::Info { m: 1 },
        ]);
        add(&format!("fd maps {outer:?}"), "ops", steps);
        // The inner template flag: any max_entries fits.
        add(
            &format!("fd maps {outer:?}"),
            "BPF_F_INNER_MAP",
            vec![
                create(MapCreateAttr::new(MapType::Array, 4, 8, 4).flags(BPF_F_INNER_MAP)),
                Step::Create {
                    attr: valid(outer),
                    btf: None,
                    inner: Some(Ref::Map(1)),
                },
                create(MapCreateAttr::new(MapType::Array, 4, 8, 9).flags(BPF_F_INNER_MAP)),
                create(MapCreateAttr::new(MapType::Array, 4, 8, 9)),
                Step::Update {
                    m: 2,
                    key: k32(0),
                    value: Val::Fd(Ref::Map(3)),
                    flags: 0,
                },
                Step::Update {
                    m: 2,
                    key: k32(1),
                    value: Val::Fd(Ref::Map(4)),
                    flags: 0,
                },
                Step::Lookup {
                    m: 2,
                    key: k32(0),
                    flags: 0,
                },
            ],
        );
    }
    // Local storage: sockets in the kernel, host objects here.
    {
        let ty = MapType::SkStorage;
        let mut a = valid(ty);
        a.value_size = 8;
        let mut steps = vec![
            Step::Create {
                attr: a,
                btf: Some(Ref::Btf(0)),
                inner: None,
            },
            Step::Host,
            Step::Host,
        ];
        let h = |i| Some(Val::Fd(Ref::Host(i)));
        steps.extend([
            Step::Lookup {
                m: 1,
                key: h(0),
                flags: 0,
            },
            Step::Update {
                m: 1,
                key: h(0),
                value: v8(11),
                flags: 2,
            },
            Step::Update {
                m: 1,
                key: h(0),
                value: v8(11),
                flags: 0,
            },
            Step::Update {
                m: 1,
                key: h(0),
                value: v8(12),
                flags: 1,
            },
            Step::Update {
                m: 1,
                key: h(0),
                value: v8(13),
                flags: 2,
            },
            Step::Update {
                m: 1,
                key: h(1),
                value: v8(21),
                flags: 1,
            },
            Step::Update {
                m: 1,
                key: h(1),
                value: v8(21),
                flags: 3,
            },
            Step::Update {
                m: 1,
                key: h(1),
                value: v8(21),
                flags: 4,
            },
            Step::Update {
                m: 1,
                key: h(1),
                value: v8(21),
                flags: 8,
            },
            Step::Lookup {
                m: 1,
                key: h(0),
                flags: 0,
            },
            Step::Lookup {
                m: 1,
                key: h(1),
                flags: 0,
            },
            Step::Lookup {
                m: 1,
                key: Some(Val::Fd(Ref::Map(0))),
                flags: 0,
            },
            Step::Lookup {
                m: 1,
                key: Some(Val::Fd(Ref::Raw(0x7fff_fff0))),
                flags: 0,
            },
            Step::Update {
                m: 1,
                key: Some(Val::Fd(Ref::Map(0))),
                value: v8(1),
                flags: 0,
            },
            Step::Update {
                m: 1,
                key: Some(Val::Fd(Ref::Raw(0x7fff_fff0))),
                value: v8(1),
                flags: 0,
            },
            Step::Delete {
                m: 1,
                key: Some(Val::Fd(Ref::Map(0))),
            },
            Step::NextKey { m: 1, key: None },
            Step::NextKey { m: 1, key: h(0) },
            Step::Delete { m: 1, key: h(0) },
            Step::Delete { m: 1, key: h(0) },
            Step::Lookup {
                m: 1,
                key: h(0),
                flags: 0,
            },
            Step::Lookup {
                m: 1,
                key: h(1),
                flags: 0,
            },
            Step::Freeze { m: 1 },
            Step::Update {
                m: 1,
                key: h(1),
                value: v8(1),
                flags: 0,
            },
            Step::Info { m: 1 },
        ]);
        add(&format!("local storage {ty:?}"), "ops", steps);
    }
    // get_fd_by_id edge cases (no map has this id in either).
    add(
        "ids",
        "get_fd_by_id",
        vec![
            create(MapCreateAttr::new(MapType::Array, 4, 8, 4)),
            Step::Reopen {
                m: 1,
                flags: 1 << 2,
            },
            Step::Reopen {
                m: 1,
                flags: BPF_F_RDONLY,
            },
            Step::Info { m: 2 },
        ],
    );
    // Queues and stacks through read-only, write-only and frozen handles; pop needs
    // both rights.
    for ty in [MapType::Queue, MapType::Stack] {
        let g = format!("modes {ty:?}");
        let pop = |m: usize| Step::LookupAndDelete {
            m,
            key: None,
            flags: 0,
        };
        let push = |m: usize, x: u64, flags: u64| Step::Update {
            m,
            key: None,
            value: v8(x),
            flags,
        };
        let peek = |m: usize| Step::Lookup {
            m,
            key: None,
            flags: 0,
        };
        add(
            &g,
            "handles",
            vec![
                create(MapCreateAttr::new(ty, 0, 8, 2)),
                push(1, 1, 0),
                push(1, 2, 0),
                push(1, 3, 0),
                push(1, 3, BPF_EXIST),
                Step::Reopen {
                    m: 1,
                    flags: BPF_F_RDONLY,
                },
                Step::Reopen {
                    m: 1,
                    flags: BPF_F_WRONLY,
                },
                push(2, 4, 0),
                peek(2),
                pop(2),
                push(3, 4, BPF_EXIST),
                peek(3),
                pop(3),
                pop(1),
                Step::Freeze { m: 1 },
                push(1, 5, 0),
                peek(1),
                pop(1),
                Step::Info { m: 1 },
            ],
        );
        add(
            &g,
            "created write-only",
            vec![
                create(MapCreateAttr::new(ty, 0, 8, 2).flags(BPF_F_WRONLY)),
                push(1, 1, 0),
                peek(1),
                pop(1),
                Step::Info { m: 1 },
            ],
        );
    }
    // lookup_and_delete on the hash maps (copy, then delete) and on types without it.
    for ty in [
        MapType::Hash,
        MapType::PercpuHash,
        MapType::LruHash,
        MapType::Array,
        MapType::Ringbuf,
    ] {
        let g = format!("lookup_and_delete {ty:?}");
        let a = valid(ty);
        let ks = a.key_size as usize;
        let key = Some(Val::Bytes(vec![1; ks]));
        let vs = if ty.is_percpu() {
            8 * kernel::possible_cpus() as usize
        } else {
            8
        };
        let mut steps = vec![create(a)];
        if ty != MapType::Ringbuf {
            steps.push(Step::Update {
                m: 1,
                key: key.clone(),
                value: Val::Bytes((0..vs as u8).collect()),
                flags: 0,
            });
        }
        for flags in [0u64, 4, 1] {
            steps.push(Step::LookupAndDelete {
                m: 1,
                key: key.clone(),
                flags,
            });
        }
        steps.push(Step::LookupAndDelete {
            m: 1,
            key: None,
            flags: 0,
        });
        steps.push(Step::Walk { m: 1 });
        add(&g, "ops", steps);
    }
    cases
}

// ---------------------------------------------------------------------------------------

#[derive(Default)]
struct Tally {
    cases: usize,
    steps: usize,
    errs: usize,
    mismatched_cases: usize,
}

#[test]
fn kernel_differential_maps() {
    if let Some(why) = kernel::unavailable() {
        println!("SKIP kernel_differential_maps: {why}");
        return;
    }
    let ncpus = kernel::possible_cpus();
    // Per-CPU LRU lists and pending lists depend on the CPU: run everything on CPU 0 in
    // both.
    assert!(kernel::pin_to_cpu(0), "sched_setaffinity");
    structops::cpu::set_current_cpu(Some(0));

    // Id commands at their edges (ids themselves differ between the two).
    let o = Ours::new(ncpus);
    let max = i32::MAX as u32;
    assert_eq!(
        kernel::get_next_id(kernel::MAP_GET_NEXT_ID, max).err(),
        o.rt.get_next_id(structops::ObjKind::Map, max).err()
    );
    assert_eq!(
        kernel::get_next_id(kernel::BTF_GET_NEXT_ID, max).err(),
        o.rt.get_next_id(structops::ObjKind::Btf, max).err()
    );
    assert_eq!(
        kernel::get_fd_by_id(kernel::MAP_GET_FD_BY_ID, max - 1, 0).err(),
        o.rt.map_get_fd_by_id(max - 1, 0).err()
    );
    drop(o);

    let mut all = create_cases();
    all.extend(sequence_cases(ncpus));
    all.extend(scenario_cases());

    let mut table: BTreeMap<String, Tally> = BTreeMap::new();
    let mut failures = vec![];
    for case in &all {
        let mut k = Kernel::new();
        let mut o = Ours::new(ncpus);
        let kr = run(&mut k, &case.steps, ncpus);
        let or = run(&mut o, &case.steps, ncpus);
        drop(k);
        let t = table.entry(case.group.clone()).or_default();
        t.cases += 1;
        t.steps += kr.len();
        t.errs += kr.iter().filter(|r| r.is_err()).count();
        if let Some(i) = (0..kr.len()).find(|&i| kr[i] != or[i]) {
            t.mismatched_cases += 1;
            if failures.len() < 40 {
                failures.push(format!(
                    "{} / {}: step {i} {:?}\n    kernel: {:?}\n    ours:   {:?}",
                    case.group, case.label, case.steps[i], kr[i], or[i]
                ));
            }
        }
    }
    println!(
        "{:<34} {:>6} {:>7} {:>7} {:>9}",
        "group", "cases", "steps", "errnos", "mismatch"
    );
    let mut total = Tally::default();
    for (g, t) in &table {
        println!(
            "{:<34} {:>6} {:>7} {:>7} {:>9}",
            g, t.cases, t.steps, t.errs, t.mismatched_cases
        );
        total.cases += t.cases;
        total.steps += t.steps;
        total.errs += t.errs;
        total.mismatched_cases += t.mismatched_cases;
    }
    println!(
        "{:<34} {:>6} {:>7} {:>7} {:>9}",
        "TOTAL", total.cases, total.steps, total.errs, total.mismatched_cases
    );
    for f in &failures {
        println!("{f}");
    }
    assert!(
        failures.is_empty(),
        "{} cases differ",
        total.mismatched_cases
    );
}
