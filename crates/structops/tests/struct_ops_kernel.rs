//! Errno parity of struct_ops with the running kernel: one scenario — map create, update,
//! lookup, delete, `get_next_key`, freeze, link create, link update, link detach and link
//! info, with `tcp_congestion_ops` and `bpf_dummy_ops` — runs as the identical sequence of
//! commands against the kernel (raw `bpf(2)`) and against a [`Runtime`] whose host BTF
//! is `/sys/kernel/btf/vmlinux` (so type ids are the kernel's) and which registers twins
//! of the two ops types (`tcp_congestion_ops` with `net/ipv4/bpf_tcp_ca.c` and
//! `tcp_cong.c` rules, `bpf_dummy_ops` from the library). Every row's outcome (errno, or
//! the looked-up state and refcnt, or which map a link shows) must be equal; the table is
//! printed.
//!
//! Kernel state outlives the test process (an INUSE struct_ops map stays registered after
//! its fd is closed), so everything created is torn down on every path (links detached,
//! maps deleted, fds closed), and the congestion-control names are unique per run.
//! Skips with a printed reason without root, BPF or struct_ops in the kernel.

#[path = "common/kernel.rs"]
#[expect(
    dead_code,
    reason = "shared bpf(2) helpers; this test needs only some of them"
)]
mod kernel;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use structops::struct_ops::{MAP_TYPE_STRUCT_OPS, MemberInfo};
use structops::{
    Errno, FdObject, Link, LinkCreateAttr, LinkUpdateAttr, MapCreateAttr, MapType, OpsTable,
    ProgLoadAttr, ProgType, Runtime, RuntimeConfig, StructOps, StructOpsDesc,
};
use structops_btf::{Btf, BtfBuilder, INT_SIGNED, Kind};
use structops_isa::assemble;

use kernel::Attr;

const LINK_CREATE: u32 = 28;
const LINK_UPDATE: u32 = 29;
const LINK_DETACH: u32 = 34;
const BPF_STRUCT_OPS: u32 = 44;
const BPF_F_LINK: u32 = 1 << 13;
const BPF_F_VTYPE_BTF_OBJ_FD: u32 = 1 << 15;
const BPF_F_REPLACE: u32 = 1 << 2;
const BAD_FD: u32 = 9999;

/// One side of the comparison: the kernel or the runtime, both addressed through
/// descriptors.
trait Side {
    fn map_create(&mut self, a: &MapCreateAttr) -> Result<u32, Errno>;
    fn prog_load(&mut self, a: &ProgLoadAttr) -> Result<u32, Errno>;
    fn update(&mut self, fd: u32, key: u32, v: &[u8], flags: u64) -> Result<(), Errno>;
    fn lookup(&mut self, fd: u32, key: u32, flags: u64, out: &mut [u8]) -> Result<(), Errno>;
    fn delete(&mut self, fd: u32, key: u32) -> Result<(), Errno>;
    fn next_key(&mut self, fd: u32, key: Option<u32>) -> Result<u32, Errno>;
    fn freeze(&mut self, fd: u32) -> Result<(), Errno>;
    fn map_id(&mut self, fd: u32) -> u32;
    fn link_create(&mut self, map_fd: u32) -> Result<u32, Errno> {
        self.link_create_as(map_fd, BPF_STRUCT_OPS)
    }
    /// `BPF_LINK_CREATE` with `attach_type`: `fd` is `map_fd` for `BPF_STRUCT_OPS`,
    /// `prog_fd` otherwise (a union in the kernel).
    fn link_create_as(&mut self, fd: u32, attach_type: u32) -> Result<u32, Errno>;
    fn link_update(&mut self, link: u32, new: u32, flags: u32, old: u32) -> Result<(), Errno>;
    fn link_detach(&mut self, link: u32) -> Result<(), Errno>;
    fn link_map_id(&mut self, link: u32) -> Result<u32, Errno>;
    fn close(&mut self, fd: u32);
    /// A BTF object the maps can name (`btf_fd`).
    fn obj_btf(&self) -> u32;
    /// The host's own BTF as a descriptor.
    fn host_btf(&self) -> u32;
}

// ---------------------------------------------------------------------------------------
// The kernel side.

struct KernelSide {
    btf: u32,
    vmlinux: u32,
    /// Every fd opened, closed on drop; struct_ops maps deleted and links detached first.
    fds: Vec<u32>,
    st_maps: Vec<u32>,
    links: Vec<u32>,
}

impl KernelSide {
    fn new() -> Option<KernelSide> {
        let vmlinux = kernel::vmlinux_btf_fd()? as u32;
        let mut b = BtfBuilder::new();
        b.add_int("int", 4, INT_SIGNED);
        let btf = kernel::btf_load(&b.build().encode()).ok()? as u32;
        Some(KernelSide {
            btf,
            vmlinux,
            fds: vec![btf, vmlinux],
            st_maps: Vec::new(),
            links: Vec::new(),
        })
    }
}

impl Drop for KernelSide {
    fn drop(&mut self) {
        for l in std::mem::take(&mut self.links) {
            let _ = self.link_detach(l);
        }
        for &m in &self.st_maps {
            let _ = kernel::delete(m as i32, Some(&0u32.to_ne_bytes()));
        }
        for &fd in &self.fds {
            kernel::close(fd as i32);
        }
    }
}

impl Side for KernelSide {
    fn map_create(&mut self, a: &MapCreateAttr) -> Result<u32, Errno> {
        let mut at = Attr::new();
        at.u32(0, a.map_type)
            .u32(4, a.key_size)
            .u32(8, a.value_size)
            .u32(12, a.max_entries)
            .u32(16, a.map_flags)
            .u32(20, a.inner_map_fd)
            .u32(24, a.numa_node);
        at.0[28..44].copy_from_slice(&a.map_name);
        at.u32(44, a.map_ifindex)
            .u32(48, a.btf_fd)
            .u32(52, a.btf_key_type_id)
            .u32(56, a.btf_value_type_id)
            .u32(60, a.btf_vmlinux_value_type_id)
            .u64(64, a.map_extra)
            .u32(72, a.value_type_btf_obj_fd as u32)
            .u32(76, a.map_token_fd as u32);
        let fd = kernel::sys_bpf(kernel::MAP_CREATE, &mut at)? as u32;
        self.fds.push(fd);
        if a.map_type == MAP_TYPE_STRUCT_OPS {
            self.st_maps.push(fd);
        }
        Ok(fd)
    }

    fn prog_load(&mut self, a: &ProgLoadAttr) -> Result<u32, Errno> {
        let fd = kernel::prog_load(a, 0).map_err(|(e, _)| e)? as u32;
        self.fds.push(fd);
        Ok(fd)
    }

    fn update(&mut self, fd: u32, key: u32, v: &[u8], flags: u64) -> Result<(), Errno> {
        kernel::update(fd as i32, Some(&key.to_ne_bytes()), v, flags)
    }

    fn lookup(&mut self, fd: u32, key: u32, flags: u64, out: &mut [u8]) -> Result<(), Errno> {
        kernel::lookup(fd as i32, Some(&key.to_ne_bytes()), out, flags)
    }

    fn delete(&mut self, fd: u32, key: u32) -> Result<(), Errno> {
        kernel::delete(fd as i32, Some(&key.to_ne_bytes()))
    }

    fn next_key(&mut self, fd: u32, key: Option<u32>) -> Result<u32, Errno> {
        let mut out = [0xffu8; 4];
        let k = key.map(u32::to_ne_bytes);
        kernel::next_key(fd as i32, k.as_ref().map(|k| &k[..]), &mut out)?;
        Ok(u32::from_ne_bytes(out))
    }

    fn freeze(&mut self, fd: u32) -> Result<(), Errno> {
        kernel::freeze(fd as i32)
    }

    fn map_id(&mut self, fd: u32) -> u32 {
        kernel::map_info(fd as i32).map_or(0, |i| i[1])
    }

    fn link_create_as(&mut self, fd: u32, attach_type: u32) -> Result<u32, Errno> {
        let mut at = Attr::new();
        at.u32(0, fd).u32(8, attach_type);
        let fd = kernel::sys_bpf(LINK_CREATE, &mut at)? as u32;
        self.fds.push(fd);
        self.links.push(fd);
        Ok(fd)
    }

    fn link_update(&mut self, link: u32, new: u32, flags: u32, old: u32) -> Result<(), Errno> {
        let mut at = Attr::new();
        at.u32(0, link).u32(4, new).u32(8, flags).u32(12, old);
        kernel::sys_bpf(LINK_UPDATE, &mut at).map(drop)
    }

    fn link_detach(&mut self, link: u32) -> Result<(), Errno> {
        let mut at = Attr::new();
        at.u32(0, link);
        kernel::sys_bpf(LINK_DETACH, &mut at).map(drop)
    }

    fn link_map_id(&mut self, link: u32) -> Result<u32, Errno> {
        let mut info = [0u8; 64];
        let mut at = Attr::new();
        at.u32(0, link)
            .u32(4, info.len() as u32)
            .u64(8, info.as_mut_ptr() as u64);
        kernel::sys_bpf(kernel::OBJ_GET_INFO_BY_FD, &mut at)?;
        Ok(u32::from_ne_bytes(info[16..20].try_into().unwrap()))
    }

    fn close(&mut self, fd: u32) {
        self.fds.retain(|&f| f != fd);
        self.links.retain(|&f| f != fd);
        kernel::close(fd as i32);
    }

    fn obj_btf(&self) -> u32 {
        self.btf
    }

    fn host_btf(&self) -> u32 {
        self.vmlinux
    }
}

// ---------------------------------------------------------------------------------------
// The runtime side, with a tcp_congestion_ops twin.

/// `TCP_CONG_MASK` (6.18: `NON_RESTRICTED | NEEDS_ECN | NEEDS_ACCECN`).
const TCP_CONG_MASK: u32 = 0x7;

/// The twin of `bpf_tcp_congestion_ops` with `tcp_cong.c`'s registry: names are unique
/// (the kernel's built-in algorithms are there from the start).
struct TcpTwin {
    name_off: usize,
    flags_off: usize,
    registered: Mutex<HashMap<String, usize>>,
}

impl TcpTwin {
    fn name(&self, kdata: &[u8]) -> String {
        let n = &kdata[self.name_off..self.name_off + 16];
        let end = n.iter().position(|&c| c == 0).unwrap_or(16);
        String::from_utf8_lossy(&n[..end]).into_owned()
    }
}

/// `tcp_validate_congestion_control`.
fn tcp_validate(t: &OpsTable) -> Result<(), Errno> {
    let has = |n: &str| t.member_by_name(n).is_some();
    if !has("ssthresh") || !has("undo_cwnd") || !(has("cong_avoid") || has("cong_control")) {
        return Err(Errno::EINVAL);
    }
    Ok(())
}

impl StructOps for TcpTwin {
    fn init_member(&self, m: &MemberInfo, kdata: &mut [u8], udata: &[u8]) -> Result<bool, Errno> {
        match m.name.as_str() {
            "flags" => {
                let o = self.flags_off;
                let f = u32::from_ne_bytes(udata[o..o + 4].try_into().unwrap());
                if f & !TCP_CONG_MASK != 0 {
                    return Err(Errno::EINVAL);
                }
                kdata[o..o + 4].copy_from_slice(&udata[o..o + 4]);
                Ok(true)
            }
            "name" => {
                // `bpf_obj_name_cpy`: NUL-terminated in 16 bytes, [A-Za-z0-9_.], not
                // empty.
                let o = self.name_off;
                let src = &udata[o..o + 16];
                let end = src.iter().position(|&c| c == 0).ok_or(Errno::EINVAL)?;
                let ok = src[..end]
                    .iter()
                    .all(|&c| c.is_ascii_alphanumeric() || c == b'_' || c == b'.');
                if end == 0 || !ok {
                    return Err(Errno::EINVAL);
                }
                kdata[o..o + end].copy_from_slice(&src[..end]);
                Ok(true)
            }
            _ => Ok(false),
        }
    }

    fn validate(&self, t: &OpsTable) -> Result<(), Errno> {
        tcp_validate(t)
    }

    fn reg(&self, t: &Arc<OpsTable>, _: Option<&Link>) -> Result<(), Errno> {
        tcp_validate(t)?;
        let name = self.name(t.kdata());
        let mut r = self.registered.lock().unwrap();
        if r.contains_key(&name) {
            return Err(Errno::EEXIST);
        }
        r.insert(name, Arc::as_ptr(t) as usize);
        Ok(())
    }

    fn unreg(&self, t: &Arc<OpsTable>, _: Option<&Link>) {
        let name = self.name(t.kdata());
        let mut r = self.registered.lock().unwrap();
        if r.get(&name) == Some(&(Arc::as_ptr(t) as usize)) {
            r.remove(&name);
        }
    }

    fn has_update(&self) -> bool {
        true
    }

    /// `tcp_update_congestion_control`.
    fn update(&self, new: &Arc<OpsTable>, old: &Arc<OpsTable>, _: &Link) -> Result<(), Errno> {
        let name = self.name(new.kdata());
        let old_name = self.name(old.kdata());
        let mut r = self.registered.lock().unwrap();
        let existing = r.get(&old_name).copied();
        if existing.is_none() || old_name != name {
            return Err(Errno::EINVAL);
        }
        if existing != Some(Arc::as_ptr(old) as usize) {
            return Err(Errno::EINVAL);
        }
        r.insert(name, Arc::as_ptr(new) as usize);
        Ok(())
    }
}

struct RtSide {
    rt: Runtime,
    btf: u32,
    host: u32,
}

impl RtSide {
    fn new(vmlinux: Btf) -> RtSide {
        let rt = Runtime::new(RuntimeConfig {
            run_unverified: true,
            ..RuntimeConfig::default()
        });
        rt.register_host_btf(vmlinux).unwrap();
        let host = rt.fd_install(rt.host_btf().unwrap()).unwrap();
        let mut b = BtfBuilder::new();
        b.add_int("int", 4, INT_SIGNED);
        let btf = rt.btf_load(&b.build().encode()).unwrap();
        let btf = rt.fd_install(btf).unwrap();
        RtSide { rt, btf, host }
    }

    fn link(&self, fd: u32) -> Result<structops::LinkHandle, Errno> {
        match self.rt.fd_get(fd)? {
            FdObject::Link(l) => Ok(l),
            _ => Err(Errno::EINVAL),
        }
    }

    fn map(&self, fd: u32) -> Result<structops::MapHandle, Errno> {
        match self.rt.fd_get(fd)? {
            FdObject::Map(m) => Ok(m),
            _ => Err(Errno::EINVAL),
        }
    }
}

impl Side for RtSide {
    fn map_create(&mut self, a: &MapCreateAttr) -> Result<u32, Errno> {
        let m = self.rt.map_create(a)?;
        self.rt.fd_install(m)
    }

    fn prog_load(&mut self, a: &ProgLoadAttr) -> Result<u32, Errno> {
        let p = self.rt.prog_load(a)?;
        self.rt.fd_install(p)
    }

    fn update(&mut self, fd: u32, key: u32, v: &[u8], flags: u64) -> Result<(), Errno> {
        let m = self.map(fd)?;
        self.rt
            .map_update_elem(&m, Some(&key.to_ne_bytes()), v, flags)
    }

    fn lookup(&mut self, fd: u32, key: u32, flags: u64, out: &mut [u8]) -> Result<(), Errno> {
        let m = self.map(fd)?;
        self.rt
            .map_lookup_elem(&m, Some(&key.to_ne_bytes()), out, flags)
    }

    fn delete(&mut self, fd: u32, key: u32) -> Result<(), Errno> {
        let m = self.map(fd)?;
        self.rt.map_delete_elem(&m, Some(&key.to_ne_bytes()))
    }

    fn next_key(&mut self, fd: u32, key: Option<u32>) -> Result<u32, Errno> {
        let m = self.map(fd)?;
        let mut out = [0xffu8; 4];
        let k = key.map(u32::to_ne_bytes);
        self.rt
            .map_get_next_key(&m, k.as_ref().map(|k| &k[..]), &mut out)?;
        Ok(u32::from_ne_bytes(out))
    }

    fn freeze(&mut self, fd: u32) -> Result<(), Errno> {
        let m = self.map(fd)?;
        self.rt.map_freeze(&m)
    }

    fn map_id(&mut self, fd: u32) -> u32 {
        self.map(fd).map_or(0, |m| m.id())
    }

    fn link_create_as(&mut self, fd: u32, attach_type: u32) -> Result<u32, Errno> {
        let l = self.rt.link_create(&LinkCreateAttr {
            map_fd: fd,
            attach_type,
            ..LinkCreateAttr::default()
        })?;
        self.rt.fd_install(l)
    }

    fn link_update(&mut self, link: u32, new: u32, flags: u32, old: u32) -> Result<(), Errno> {
        if flags & !BPF_F_REPLACE != 0 {
            return Err(Errno::EINVAL);
        }
        let l = self.link(link)?;
        self.rt.link_update(
            &l,
            &LinkUpdateAttr {
                new_map_fd: new,
                flags,
                old_map_fd: old,
            },
        )
    }

    fn link_detach(&mut self, link: u32) -> Result<(), Errno> {
        let l = self.link(link)?;
        self.rt.link_detach(&l)
    }

    fn link_map_id(&mut self, link: u32) -> Result<u32, Errno> {
        Ok(self.link(link)?.info().map_id)
    }

    fn close(&mut self, fd: u32) {
        let _ = self.rt.fd_close(fd);
    }

    fn obj_btf(&self) -> u32 {
        self.btf
    }

    fn host_btf(&self) -> u32 {
        self.host
    }
}

// ---------------------------------------------------------------------------------------
// The scenario.

/// Facts about the host types (the same on both sides: the same BTF).
struct Types {
    tcp: u32,
    tcp_value: u32,
    tcp_value_size: u32,
    dummy: u32,
    dummy_value: u32,
    dummy_value_size: u32,
    /// Byte offsets in the tcp value (data at 64 included).
    off: HashMap<&'static str, usize>,
    /// Member indexes in tcp_congestion_ops.
    idx: HashMap<&'static str, u32>,
    /// Data size of tcp_congestion_ops.
    tcp_size: usize,
}

fn types(btf: &Btf) -> Types {
    let tcp = btf
        .find_by_name_kind("tcp_congestion_ops", Kind::Struct)
        .unwrap();
    let tcp_value = btf
        .find_by_name_kind("bpf_struct_ops_tcp_congestion_ops", Kind::Struct)
        .unwrap();
    let dummy = btf
        .find_by_name_kind("bpf_dummy_ops", Kind::Struct)
        .unwrap();
    let dummy_value = btf
        .find_by_name_kind("bpf_struct_ops_bpf_dummy_ops", Kind::Struct)
        .unwrap();
    let c = btf.ty(tcp).unwrap().composite().unwrap().clone();
    let mut off = HashMap::new();
    let mut idx = HashMap::new();
    for name in [
        "ssthresh",
        "cong_avoid",
        "undo_cwnd",
        "cong_control",
        "name",
        "owner",
        "list",
        "key",
        "flags",
        "release",
    ] {
        let (i, m) = c
            .members
            .iter()
            .enumerate()
            .find(|(_, m)| btf.name(m.name_off).unwrap() == name)
            .unwrap();
        off.insert(name, 64 + (m.bit_offset(c.kflag) / 8) as usize);
        idx.insert(name, i as u32);
    }
    let size = |id| btf.ty(id).unwrap().composite().unwrap().size;
    Types {
        tcp,
        tcp_value,
        tcp_value_size: size(tcp_value),
        dummy,
        dummy_value,
        dummy_value_size: size(dummy_value),
        off,
        idx,
        tcp_size: c.size as usize,
    }
}

/// The outcome of one row, as printed and compared.
fn res<T>(r: Result<T, Errno>) -> String {
    match r {
        Ok(_) => "ok".into(),
        Err(e) => e.to_string(),
    }
}

struct Run<'a> {
    s: &'a mut dyn Side,
    t: &'a Types,
    rows: Vec<(String, String)>,
}

impl Run<'_> {
    fn row(&mut self, what: &str, outcome: String) {
        self.rows.push((what.to_string(), outcome));
    }

    fn attr(&self, value_id: u32, value_size: u32, flags: u32) -> MapCreateAttr {
        MapCreateAttr {
            map_type: MAP_TYPE_STRUCT_OPS,
            key_size: 4,
            value_size,
            max_entries: 1,
            map_flags: flags,
            btf_fd: self.s.obj_btf(),
            btf_vmlinux_value_type_id: value_id,
            ..MapCreateAttr::default()
        }
        .name("st_ops")
    }

    fn tcp_attr(&self, flags: u32) -> MapCreateAttr {
        self.attr(self.t.tcp_value, self.t.tcp_value_size, flags)
    }

    fn create(&mut self, what: &str, a: &MapCreateAttr) -> Option<u32> {
        let r = self.s.map_create(a);
        self.row(what, res(r));
        r.ok()
    }

    /// A tcp value: programs for ssthresh, cong_avoid, undo_cwnd and a name.
    fn tcp_value(&self, name: &str, progs: &[(&str, u32)]) -> Vec<u8> {
        let mut v = vec![0u8; self.t.tcp_value_size as usize];
        for &(m, fd) in progs {
            let o = self.t.off[m];
            v[o..o + 8].copy_from_slice(&u64::from(fd).to_ne_bytes());
        }
        let o = self.t.off["name"];
        v[o..o + name.len()].copy_from_slice(name.as_bytes());
        v
    }

    fn lookup_row(&mut self, what: &str, fd: u32) {
        let mut out = vec![0xaau8; self.t.tcp_value_size.max(self.t.dummy_value_size) as usize];
        let r = self.s.lookup(fd, 0, 0, &mut out);
        let outcome = match r {
            Err(e) => e.to_string(),
            Ok(()) => {
                let g = |o: usize| u32::from_ne_bytes(out[o..o + 4].try_into().unwrap());
                let progs = ["ssthresh", "cong_avoid", "undo_cwnd"]
                    .iter()
                    .filter(|m| out[self.t.off[*m]..self.t.off[*m] + 8] != [0; 8])
                    .count();
                let zero_rest = out[8..64].iter().all(|&b| b == 0);
                format!(
                    "refcnt={} state={} progs={progs} hdr_zero={zero_rest}",
                    g(0),
                    g(4)
                )
            }
        };
        self.row(what, outcome);
    }

    fn link_map_row(&mut self, what: &str, link: u32, names: &[(&str, u32)]) {
        let r = self.s.link_map_id(link);
        let outcome = match r {
            Err(e) => e.to_string(),
            Ok(0) => "map_id=0".into(),
            Ok(id) => {
                let n = names
                    .iter()
                    .find(|(_, fd)| self.s.map_id(*fd) == id)
                    .map_or("?", |(n, _)| n);
                format!("map_id={n}")
            }
        };
        self.row(what, outcome);
    }

    fn prog(&mut self, what: &str, ty: ProgType, btf_id: u32, idx: u32) -> u32 {
        let mut a = ProgLoadAttr::new(ty, assemble("r0 = 1\nexit").unwrap().encode(), "GPL")
            .name("st_prog");
        a.attach_btf_id = btf_id;
        a.expected_attach_type = idx;
        let r = self.s.prog_load(&a);
        self.row(what, res(r));
        r.unwrap_or(BAD_FD)
    }
}

fn scenario(s: &mut dyn Side, t: &Types, tag: &str) -> Vec<(String, String)> {
    let mut r = Run {
        s,
        t,
        rows: Vec::new(),
    };
    let n1 = format!("{tag}a");
    let n2 = format!("{tag}b");
    // Programs.
    let ss = r.prog(
        "prog ssthresh",
        ProgType::STRUCT_OPS,
        t.tcp,
        t.idx["ssthresh"],
    );
    let ca = r.prog(
        "prog cong_avoid",
        ProgType::STRUCT_OPS,
        t.tcp,
        t.idx["cong_avoid"],
    );
    let undo = r.prog(
        "prog undo_cwnd",
        ProgType::STRUCT_OPS,
        t.tcp,
        t.idx["undo_cwnd"],
    );
    let ss2 = r.prog(
        "prog ssthresh #2",
        ProgType::STRUCT_OPS,
        t.tcp,
        t.idx["ssthresh"],
    );
    let xdp = r.prog("prog xdp", ProgType::XDP, 0, 0);
    let dummy_p = r.prog("prog dummy test_1", ProgType::STRUCT_OPS, t.dummy, 0);
    let full = |name: &str| -> Vec<(&'static str, u32)> {
        let _ = name;
        vec![("ssthresh", ss), ("cong_avoid", ca), ("undo_cwnd", undo)]
    };

    // ---- create
    let a = r.tcp_attr(0);
    let m1 = r.create("create tcp", &a).unwrap_or(BAD_FD);
    r.create(
        "create key_size=8",
        &MapCreateAttr {
            key_size: 8,
            ..a.clone()
        },
    );
    r.create(
        "create max_entries=2",
        &MapCreateAttr {
            max_entries: 2,
            ..a.clone()
        },
    );
    r.create(
        "create flags=RDONLY",
        &MapCreateAttr {
            map_flags: 1 << 3,
            ..a.clone()
        },
    );
    r.create(
        "create flags=NO_PREALLOC",
        &MapCreateAttr {
            map_flags: 1,
            ..a.clone()
        },
    );
    r.create(
        "create flags=RDONLY|WRONLY",
        &MapCreateAttr {
            map_flags: 3 << 3,
            ..a.clone()
        },
    );
    r.create(
        "create vmlinux_value_type_id=0",
        &MapCreateAttr {
            btf_vmlinux_value_type_id: 0,
            ..a.clone()
        },
    );
    r.create(
        "create value type = ops struct",
        &MapCreateAttr {
            btf_vmlinux_value_type_id: t.tcp,
            ..a.clone()
        },
    );
    r.create(
        "create value type of no ops (int)",
        &MapCreateAttr {
            btf_vmlinux_value_type_id: 1,
            ..a.clone()
        },
    );
    r.create(
        "create value_size-1",
        &MapCreateAttr {
            value_size: a.value_size - 1,
            ..a.clone()
        },
    );
    r.create(
        "create ARRAY with vmlinux type",
        &MapCreateAttr {
            map_type: 2,
            ..a.clone()
        },
    );
    r.create(
        "create + btf_value_type_id",
        &MapCreateAttr {
            btf_value_type_id: 1,
            ..a.clone()
        },
    );
    let host = r.s.host_btf();
    r.create(
        "create btf_fd=vmlinux",
        &MapCreateAttr {
            btf_fd: host,
            ..a.clone()
        },
    );
    r.create(
        "create btf_fd=bad",
        &MapCreateAttr {
            btf_fd: BAD_FD,
            ..a.clone()
        },
    );
    r.create(
        "create btf_fd=prog",
        &MapCreateAttr {
            btf_fd: ss,
            ..a.clone()
        },
    );
    r.create(
        "create map_extra=1",
        &MapCreateAttr {
            map_extra: 1,
            ..a.clone()
        },
    );
    r.create("create bad name", &a.clone().name("bad name"));
    r.create(
        "create VTYPE_BTF_OBJ_FD=vmlinux",
        &MapCreateAttr {
            map_flags: BPF_F_VTYPE_BTF_OBJ_FD,
            value_type_btf_obj_fd: host as i32,
            ..a.clone()
        },
    );
    let da = r.attr(t.dummy_value, t.dummy_value_size, 0);
    let d1 = r.create("create dummy", &da).unwrap_or(BAD_FD);
    let dl = r
        .create(
            "create dummy link map",
            &MapCreateAttr {
                map_flags: BPF_F_LINK,
                ..da.clone()
            },
        )
        .unwrap_or(BAD_FD);
    r.create(
        "create dummy value_size of tcp",
        &MapCreateAttr {
            value_size: t.tcp_value_size,
            ..da.clone()
        },
    );

    // ---- INIT map: lookup, next key, freeze, delete
    r.lookup_row("lookup INIT", m1);
    let mut out = vec![0u8; t.tcp_value_size as usize];
    let x = r.s.lookup(m1, 1, 0, &mut out);
    r.row("lookup key=1", res(x));
    let x = r.s.lookup(m1, 0, 4, &mut out);
    r.row("lookup flags=F_LOCK", res(x));
    let x = r.s.lookup(m1, 0, 8, &mut out);
    r.row("lookup flags=8", res(x));
    let x = r.s.next_key(m1, None);
    r.row("next_key NULL", format!("{x:?}"));
    let x = r.s.next_key(m1, Some(0));
    r.row("next_key 0", format!("{x:?}"));
    let x = r.s.next_key(m1, Some(3));
    r.row("next_key 3", format!("{x:?}"));
    let x = r.s.freeze(m1);
    r.row("freeze", res(x));
    let x = r.s.delete(m1, 0);
    r.row("delete INIT", res(x));

    // ---- update errors
    let good = r.tcp_value(&n1, &full(&n1));
    let up = |r: &mut Run<'_>, what: &str, fd: u32, key: u32, v: &[u8], flags: u64| {
        let x = r.s.update(fd, key, v, flags);
        r.row(what, res(x));
    };
    up(&mut r, "update flags=1", m1, 0, &good, 1);
    up(&mut r, "update flags=F_LOCK", m1, 0, &good, 4);
    up(&mut r, "update key=1", m1, 1, &good, 0);
    let mut v = good.clone();
    v[12] = 1;
    up(&mut r, "update hole in header", m1, 0, &v, 0);
    let mut v = good.clone();
    let tail = t.off["release"] + 8;
    if tail < 64 + t.tcp_size {
        v[tail] = 1;
        up(&mut r, "update hole after last member", m1, 0, &v, 0);
    }
    let mut v = good.clone();
    v[4] = 1;
    up(&mut r, "update state!=0", m1, 0, &v, 0);
    let mut v = good.clone();
    v[0] = 1;
    up(&mut r, "update refcnt!=0", m1, 0, &v, 0);
    let v = r.tcp_value("", &full(""));
    up(&mut r, "update empty name", m1, 0, &v, 0);
    let v = r.tcp_value("a b", &full(""));
    up(&mut r, "update bad name", m1, 0, &v, 0);
    let mut v = good.clone();
    v[t.off["flags"]] = 0x80;
    up(&mut r, "update flags member 0x80", m1, 0, &v, 0);
    let mut v = good.clone();
    v[t.off["key"]] = 1;
    up(&mut r, "update key member!=0", m1, 0, &v, 0);
    let mut v = good.clone();
    v[t.off["list"]] = 1;
    up(&mut r, "update list member!=0", m1, 0, &v, 0);
    let v = r.tcp_value(
        &n1,
        &[
            ("ssthresh", BAD_FD),
            ("cong_avoid", ca),
            ("undo_cwnd", undo),
        ],
    );
    up(&mut r, "update prog fd bad", m1, 0, &v, 0);
    let v = r.tcp_value(
        &n1,
        &[("ssthresh", m1), ("cong_avoid", ca), ("undo_cwnd", undo)],
    );
    up(&mut r, "update prog fd = map", m1, 0, &v, 0);
    let v = r.tcp_value(
        &n1,
        &[("ssthresh", ca), ("cong_avoid", ca), ("undo_cwnd", undo)],
    );
    up(&mut r, "update prog of other member", m1, 0, &v, 0);
    let v = r.tcp_value(
        &n1,
        &[("ssthresh", xdp), ("cong_avoid", ca), ("undo_cwnd", undo)],
    );
    up(&mut r, "update XDP prog", m1, 0, &v, 0);
    let v = r.tcp_value(
        &n1,
        &[
            ("ssthresh", dummy_p),
            ("cong_avoid", ca),
            ("undo_cwnd", undo),
        ],
    );
    up(&mut r, "update prog of other ops type", m1, 0, &v, 0);
    let v = r.tcp_value(&n1, &[("cong_avoid", ca), ("undo_cwnd", undo)]);
    up(&mut r, "update no ssthresh (validate)", m1, 0, &v, 0);
    let v = r.tcp_value(&n1, &[("ssthresh", ss), ("undo_cwnd", undo)]);
    up(&mut r, "update no cong_avoid (validate)", m1, 0, &v, 0);
    r.lookup_row("lookup after failed updates", m1);
    let mut v = good.clone();
    v[t.off["owner"]] = 1;
    up(&mut r, "update owner member!=0", m1, 0, &v, 0);
    r.lookup_row("lookup after owner!=0", m1);
    let v = r.tcp_value("reno", &full(""));
    up(&mut r, "update name of a builtin CA", m1, 0, &v, 0);

    // ---- successful update, EBUSY, duplicate name, delete
    up(&mut r, "update ok", m1, 0, &good, 0);
    r.lookup_row("lookup INUSE", m1);
    up(&mut r, "update again", m1, 0, &good, 0);
    let m2 = r.create("create tcp #2", &a).unwrap_or(BAD_FD);
    up(&mut r, "update #2 same name (reg)", m2, 0, &good, 0);
    r.lookup_row("lookup #2", m2);
    let x = r.s.link_create(m1);
    r.row("link_create non-link map", res(x));
    let x = r.s.delete(m1, 5);
    r.row("delete INUSE key=5", res(x));
    r.lookup_row("lookup TOBEFREE", m1);
    let x = r.s.delete(m1, 0);
    r.row("delete TOBEFREE", res(x));
    up(&mut r, "update TOBEFREE", m1, 0, &good, 0);
    up(&mut r, "update #2 after delete", m2, 0, &good, 0);
    let x = r.s.delete(m2, 0);
    r.row("delete #2", res(x));

    // ---- dummy
    let dv = vec![0u8; t.dummy_value_size as usize];
    up(&mut r, "dummy update zeros", d1, 0, &dv, 0);
    let mut dv2 = dv.clone();
    dv2[64..72].copy_from_slice(&u64::from(dummy_p).to_ne_bytes());
    up(&mut r, "dummy update with prog", d1, 0, &dv2, 0);
    r.lookup_row("dummy lookup", d1);
    let x = r.s.delete(d1, 0);
    r.row("dummy delete", res(x));
    let x = r.s.link_create(dl);
    r.row("dummy link_create INIT", res(x));
    up(&mut r, "dummy link map update", dl, 0, &dv, 0);

    // ---- links
    let la = r.tcp_attr(BPF_F_LINK);
    let l1 = r.create("create link map L1", &la).unwrap_or(BAD_FD);
    let x = r.s.link_create(l1);
    r.row("link_create L1 INIT", res(x));
    let lval = r.tcp_value(&n2, &full(&n2));
    up(&mut r, "update L1", l1, 0, &lval, 0);
    r.lookup_row("lookup L1 READY", l1);
    let x = r.s.delete(l1, 0);
    r.row("delete link map", res(x));
    let x = r.s.link_create(BAD_FD);
    r.row("link_create bad fd", res(x));
    let x = r.s.link_create(ss);
    r.row("link_create prog fd", res(x));
    let x = r.s.link_create(r.s.obj_btf());
    r.row("link_create btf fd", res(x));
    let k1 = r.s.link_create(l1);
    r.row("link_create L1", res(k1));
    let k1 = k1.unwrap_or(BAD_FD);
    r.lookup_row("lookup L1 linked", l1);
    let x = r.s.link_create(l1);
    r.row("link_create L1 again (reg)", res(x));
    r.link_map_row("link info", k1, &[("L1", l1)]);
    let l2 = r.create("create link map L2", &la).unwrap_or(BAD_FD);
    let x = r.s.link_update(k1, l2, 0, 0);
    r.row("link_update to INIT map", res(x));
    let lval2 = r.tcp_value(
        &n2,
        &[("ssthresh", ss2), ("cong_avoid", ca), ("undo_cwnd", undo)],
    );
    up(&mut r, "update L2", l2, 0, &lval2, 0);
    let x = r.s.link_update(k1, l2, 1, 0);
    r.row("link_update flags=1", res(x));
    let x = r.s.link_update(k1, l2, 0, l1);
    r.row("link_update old fd w/o REPLACE", res(x));
    let x = r.s.link_update(k1, l2, BPF_F_REPLACE, l2);
    r.row("link_update REPLACE wrong old", res(x));
    let x = r.s.link_update(k1, l2, BPF_F_REPLACE, BAD_FD);
    r.row("link_update REPLACE bad old fd", res(x));
    let x = r.s.link_update(k1, m2, 0, 0);
    r.row("link_update to non-link map", res(x));
    let x = r.s.link_update(k1, BAD_FD, 0, 0);
    r.row("link_update bad new fd", res(x));
    let x = r.s.link_update(BAD_FD, l2, 0, 0);
    r.row("link_update bad link fd", res(x));
    let x = r.s.link_update(l1, l2, 0, 0);
    r.row("link_update link fd = map", res(x));
    // Descriptors of the wrong kind, and attach types other than BPF_STRUCT_OPS.
    let arr = r
        .create(
            "create plain array",
            &MapCreateAttr::new(MapType::Array, 4, 8, 1),
        )
        .unwrap_or(BAD_FD);
    let x = r.s.link_create(arr);
    r.row("link_create array map", res(x));
    for (fd, what) in [(l1, "link map"), (ss, "struct_ops prog"), (xdp, "xdp prog")] {
        for at in [0u32, u32::MAX] {
            let x = r.s.link_create_as(fd, at);
            r.row(&format!("link_create {what} attach_type {at}"), res(x));
        }
    }
    let btf = r.s.obj_btf();
    for (fd, what) in [
        (arr, "array map"),
        (ss, "prog"),
        (btf, "btf"),
        (dl, "dummy INIT map"),
    ] {
        let x = r.s.link_update(k1, fd, 0, 0);
        r.row(&format!("link_update to {what}"), res(x));
        let x = r.s.link_update(k1, l2, BPF_F_REPLACE, fd);
        r.row(&format!("link_update REPLACE old = {what}"), res(x));
    }
    let x = r.s.link_update(k1, l2, BPF_F_REPLACE << 1, 0);
    r.row("link_update flags=8", res(x));
    r.link_map_row("link info after bad updates", k1, &[("L1", l1)]);
    let l3 = r.create("create link map L3", &la).unwrap_or(BAD_FD);
    let other = r.tcp_value(&n1, &full(&n1));
    up(&mut r, "update L3 other name", l3, 0, &other, 0);
    let x = r.s.link_update(k1, l3, 0, 0);
    r.row("link_update other name (update)", res(x));
    let x = r.s.link_update(k1, l2, BPF_F_REPLACE, l1);
    r.row("link_update REPLACE L1->L2", res(x));
    r.link_map_row("link info after update", k1, &[("L1", l1), ("L2", l2)]);
    r.lookup_row("lookup L1 after update", l1);
    r.lookup_row("lookup L2 after update", l2);
    let x = r.s.link_update(k1, l1, 0, 0);
    r.row("link_update back to L1", res(x));
    r.link_map_row("link info back", k1, &[("L1", l1), ("L2", l2)]);
    let x = r.s.link_detach(k1);
    r.row("link_detach", res(x));
    let x = r.s.link_detach(k1);
    r.row("link_detach again", res(x));
    r.link_map_row("link info detached", k1, &[("L1", l1), ("L2", l2)]);
    let x = r.s.link_update(k1, l2, 0, 0);
    r.row("link_update detached", res(x));
    r.lookup_row("lookup L1 after detach", l1);
    let x = r.s.link_detach(l1);
    r.row("link_detach map fd", res(x));
    // Release on close: a closed link unregisters, so the name is free again.
    let k2 = r.s.link_create(l1);
    r.row("link_create L1 after detach", res(k2));
    if let Ok(k2) = k2 {
        r.s.close(k2);
    }
    let k3 = r.s.link_create(l1);
    r.row("link_create L1 after close", res(k3));
    r.lookup_row("lookup L1 relinked", l1);
    if let Ok(k3) = k3 {
        let x = r.s.link_detach(k3);
        r.row("link_detach #3", res(x));
    }
    r.rows
}

#[test]
fn struct_ops_errno_parity() {
    if let Some(why) = kernel::unavailable() {
        println!("skipped: {why}");
        return;
    }
    let raw = match std::fs::read("/sys/kernel/btf/vmlinux") {
        Ok(r) => r,
        Err(e) => {
            println!("skipped: /sys/kernel/btf/vmlinux: {e}");
            return;
        }
    };
    let vmlinux = Btf::parse(&raw).unwrap();
    if vmlinux
        .find_by_name_kind("bpf_struct_ops_tcp_congestion_ops", Kind::Struct)
        .is_none()
        || vmlinux
            .find_by_name_kind("bpf_struct_ops_bpf_dummy_ops", Kind::Struct)
            .is_none()
    {
        println!("skipped: the kernel has no tcp_congestion_ops or bpf_dummy_ops struct_ops");
        return;
    }
    let t = types(&vmlinux);
    // Unique congestion-control names for this run (15 characters at most).
    let tag = format!("so{}x", std::process::id() % 100_000);

    let mut ours = RtSide::new(vmlinux.clone());
    let name_off = t.off["name"] - 64;
    let flags_off = t.off["flags"] - 64;
    let twin = Arc::new(TcpTwin {
        name_off,
        flags_off,
        registered: Mutex::new(
            ["reno", "cubic", "bbr"]
                .iter()
                .map(|n| (n.to_string(), 0))
                .collect(),
        ),
    });
    ours.rt
        .register_struct_ops(
            StructOpsDesc::new("tcp_congestion_ops", twin.clone()).unsupported("get_info"),
        )
        .unwrap();
    ours.rt.register_dummy_ops().unwrap();
    let rt_rows = scenario(&mut ours, &t, &tag);

    let Some(mut k) = KernelSide::new() else {
        println!("skipped: no vmlinux BTF fd or BTF_LOAD failed");
        return;
    };
    let k_rows = scenario(&mut k, &t, &tag);
    drop(k);

    println!("{:<40} {:<45} {:<45}", "command", "kernel", "runtime");
    let mut diffs = Vec::new();
    for ((what, kr), (what2, rr)) in k_rows.iter().zip(&rt_rows) {
        assert_eq!(what, what2);
        let mark = if kr == rr { "" } else { "   <-- DIFFERS" };
        println!("{what:<40} {kr:<45} {rr:<45}{mark}");
        if kr != rr {
            diffs.push(what.clone());
        }
    }
    assert_eq!(k_rows.len(), rt_rows.len());
    assert!(
        diffs.is_empty(),
        "rows that differ from the kernel: {diffs:?}"
    );
    // Everything the twin registered was unregistered again.
    let left: Vec<String> = twin
        .registered
        .lock()
        .unwrap()
        .keys()
        .filter(|n| n.starts_with(&tag))
        .cloned()
        .collect();
    assert!(left.is_empty(), "{left:?}");
}
