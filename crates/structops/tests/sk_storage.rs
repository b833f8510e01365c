//! `bpf_sk_storage_get` / `bpf_sk_storage_delete` for struct_ops programs: a host ops
//! type whose members take a `struct sock *`, an `SK_STORAGE` map, and the host's
//! storage-owner hook ([`Runtime::set_storage_owner`]) mapping socket addresses to
//! [`HostObject`]s. The same call sequence runs on the interpreter, the JIT and the
//! interpreter's checked mode, with the results of `net/core/bpf_sk_storage.c`:
//! NULL without `BPF_SK_STORAGE_GET_F_CREATE` (or with unknown flags, or for what is no
//! socket), a value created from the program's initial value, `-EINVAL` from `delete`
//! for what is no socket and `-ENOENT` when there is nothing to delete. (Which programs
//! the verifier accepts is checked against the kernel by the verifier suite's
//! `tcp_sk_storage_*` cases.)

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use structops::struct_ops::{MAP_TYPE_STRUCT_OPS, add_value_type};
use structops::{
    Engine, Errno, HostObject, Link, MapCreateAttr, MapHandle, OpsTable, ProgLoadAttr, ProgType,
    Runtime, RuntimeConfig, StructOps, StructOpsDesc,
};
use structops_btf::{BtfBuilder, INT_SIGNED, TypeId};
use structops_isa::assemble;

/// `BPF_MAP_TYPE_SK_STORAGE`.
const SK_STORAGE: u32 = 24;
/// `BPF_F_NO_PREALLOC`.
const NO_PREALLOC: u32 = 1;
/// Members of `struct sk_ops`.
const GET: u32 = 0;
const DEL: u32 = 1;
/// Offset of the ops struct in its map value.
const DATA: usize = 64;

/// A host that keeps the one registered table.
#[derive(Default)]
struct Host {
    table: Mutex<Option<Arc<OpsTable>>>,
}

impl StructOps for Host {
    fn reg(&self, t: &Arc<OpsTable>, _: Option<&Link>) -> Result<(), Errno> {
        *self.table.lock().unwrap() = Some(t.clone());
        Ok(())
    }

    fn unreg(&self, _: &Arc<OpsTable>, _: Option<&Link>) {
        *self.table.lock().unwrap() = None;
    }
}

/// `struct sock_common { int skc_family; int pad; }`, `struct sock { struct sock_common
/// __sk_common; long sk_x; }` and `struct sk_ops { int (*get)(struct sock *, u64 flags);
/// int (*del)(struct sock *); }`, with the ops value type. Returns `sk_ops`'s id.
fn host_btf(rt: &Runtime) -> TypeId {
    let mut b = BtfBuilder::new();
    let int = b.add_int("int", 4, INT_SIGNED);
    let u64t = b.add_int("unsigned long long", 8, 0);
    let common = b.add_struct(
        "sock_common",
        8,
        &[("skc_family", int, 0), ("pad", int, 32)],
    );
    let sock = b.add_struct(
        "sock",
        16,
        &[("__sk_common", common, 0), ("sk_x", u64t, 64)],
    );
    let psock = b.add_ptr(sock);
    let get = b.add_func_proto(int, &[("sk", psock), ("flags", u64t)]);
    let del = b.add_func_proto(int, &[("sk", psock)]);
    let pget = b.add_ptr(get);
    let pdel = b.add_ptr(del);
    let ops = b.add_struct("sk_ops", 16, &[("get", pget, 0), ("del", pdel, 64)]);
    add_value_type(&mut b, ops, "sk_ops").unwrap();
    rt.register_host_btf(b.build()).unwrap();
    ops
}

/// An `SK_STORAGE` map of `u64` values (its BTF: `int` key, `unsigned long long` value).
fn storage_map(rt: &Runtime) -> (MapHandle, u32) {
    let mut b = BtfBuilder::new();
    b.add_int("int", 4, INT_SIGNED);
    b.add_int("unsigned long long", 8, 0);
    let btf = rt.btf_load(&b.build().encode()).unwrap();
    let btf_fd = rt.fd_install(btf).unwrap();
    let m = rt
        .map_create(&MapCreateAttr {
            map_type: SK_STORAGE,
            key_size: 4,
            value_size: 8,
            max_entries: 0,
            map_flags: NO_PREALLOC,
            btf_fd,
            btf_key_type_id: 1,
            btf_value_type_id: 2,
            ..MapCreateAttr::default()
        })
        .unwrap();
    let fd = rt.fd_install(m.clone()).unwrap();
    (m, fd)
}

/// `get(sk, flags)`: the socket's value, created from 41 with `flags`, incremented;
/// -1 when the helper returns NULL.
fn get_src(map_fd: u32) -> String {
    format!(
        "r6 = *(u64 *)(r1 +0)
         r4 = *(u64 *)(r1 +8)
         *(u64 *)(r10 -8) = 41
         r1 = map[id:{map_fd}]
         r2 = r6
         r3 = r10
         r3 += -8
         call bpf_sk_storage_get
         if r0 == 0 goto none
         r1 = *(u64 *)(r0 +0)
         r1 += 1
         *(u64 *)(r0 +0) = r1
         r0 = r1
         exit
         none:
         r0 = -1
         exit"
    )
}

/// `del(sk)`: `bpf_sk_storage_delete`'s result.
fn del_src(map_fd: u32) -> String {
    format!(
        "r2 = *(u64 *)(r1 +0)
         r1 = map[id:{map_fd}]
         call bpf_sk_storage_delete
         exit"
    )
}

/// How a member is called.
#[derive(Clone, Copy, Debug)]
enum How {
    Engine(Engine),
    Checked,
}

struct Fixture {
    rt: Runtime,
    host: Arc<Host>,
    map: MapHandle,
    how: How,
}

impl Fixture {
    fn new(how: How) -> Fixture {
        let engine = match how {
            How::Engine(e) => e,
            How::Checked => Engine::Interp,
        };
        let rt = Runtime::new(RuntimeConfig {
            ncpus: 1,
            engine,
            ..RuntimeConfig::default()
        });
        let ops = host_btf(&rt);
        let host = Arc::new(Host::default());
        rt.register_struct_ops(StructOpsDesc::new("sk_ops", host.clone()))
            .unwrap();
        let (map, map_fd) = storage_map(&rt);
        let mut fds = Vec::new();
        for (idx, src) in [(GET, get_src(map_fd)), (DEL, del_src(map_fd))] {
            let mut a = ProgLoadAttr::new(
                ProgType::STRUCT_OPS,
                assemble(&src).unwrap().encode(),
                "GPL",
            );
            a.attach_btf_id = ops;
            a.expected_attach_type = idx;
            let mut log = String::new();
            let p = rt
                .prog_load_with_log(&a, &mut log)
                .unwrap_or_else(|e| panic!("member {idx}: {e:?}\n{log}"));
            assert!(p.is_verified(), "member {idx}");
            assert_eq!(p.engine(), engine);
            fds.push(rt.fd_install(p).unwrap());
        }
        let value_type = rt
            .host_btf()
            .unwrap()
            .btf()
            .find_by_name_kind("bpf_struct_ops_sk_ops", structops_btf::Kind::Struct)
            .unwrap();
        let st = rt
            .map_create(
                &MapCreateAttr {
                    map_type: MAP_TYPE_STRUCT_OPS,
                    key_size: 4,
                    value_size: 128,
                    max_entries: 1,
                    btf_vmlinux_value_type_id: value_type,
                    ..MapCreateAttr::default()
                }
                .name("sk_ops"),
            )
            .unwrap();
        let mut v = vec![0u8; 128];
        for (i, fd) in fds.iter().enumerate() {
            v[DATA + 8 * i..DATA + 8 * i + 8].copy_from_slice(&u64::from(*fd).to_ne_bytes());
        }
        rt.map_update_elem(&st, Some(&0u32.to_ne_bytes()), &v, 0)
            .unwrap();
        assert!(host.table.lock().unwrap().is_some(), "registered");
        Fixture { rt, host, map, how }
    }

    /// Calls `member` with `args`, as a signed 32-bit result.
    fn call(&self, member: u32, args: &[u64]) -> i32 {
        let t = self.host.table.lock().unwrap().clone().unwrap();
        let r = match self.how {
            How::Engine(_) => t.call(&self.rt, member, args),
            How::Checked => t.call_checked(&self.rt, member, args, &[]),
        };
        r.unwrap_or_else(|e| panic!("{:?} member {member}: {e:?}", self.how)) as u32 as i32
    }

    fn get(&self, sk: u64, flags: u64) -> i32 {
        self.call(GET, &[sk, flags])
    }

    fn del(&self, sk: u64) -> i32 {
        self.call(DEL, &[sk])
    }
}

/// Sockets at stable addresses (the vector is never grown); the helpers never dereference
/// them: the hook looks them up.
struct Sockets {
    mem: Vec<[u64; 2]>,
    owners: Arc<Mutex<HashMap<u64, HostObject>>>,
}

impl Sockets {
    fn new(n: usize) -> Sockets {
        Sockets {
            mem: vec![[0u64; 2]; n],
            owners: Arc::new(Mutex::new(HashMap::new())),
        }
    }

    fn addr(&self, i: usize) -> u64 {
        self.mem[i].as_ptr() as u64
    }

    /// Makes socket `i` a live socket of the host.
    fn add(&self, i: usize) -> HostObject {
        let o = HostObject::new();
        self.owners.lock().unwrap().insert(self.addr(i), o.clone());
        o
    }

    fn hook(&self) -> structops::StorageOwner {
        let owners = self.owners.clone();
        Arc::new(move |addr| owners.lock().unwrap().get(&addr).cloned())
    }
}

const EINVAL: i32 = -22;
const ENOENT: i32 = -2;

fn scenario(how: How) {
    let f = Fixture::new(how);
    let socks = Sockets::new(3);
    let (a, b, c) = (socks.addr(0), socks.addr(1), socks.addr(2));
    // No hook: no socket is known.
    assert_eq!(f.get(a, 1), -1, "{how:?}: no hook, get");
    assert_eq!(f.del(a), EINVAL, "{how:?}: no hook, delete");
    f.rt.set_storage_owner(Some(socks.hook()));
    let _oa = socks.add(0);
    let ob = socks.add(1);
    assert_eq!(f.get(a, 0), -1, "{how:?}: no value, no create");
    assert_eq!(f.get(a, 1), 42, "{how:?}: created from 41");
    assert_eq!(f.get(a, 0), 43, "{how:?}: found");
    assert_eq!(f.get(a, 1), 44, "{how:?}: found, create flag ignored");
    assert_eq!(f.get(b, 1), 42, "{how:?}: another socket's own value");
    assert_eq!(f.get(a, 2), -1, "{how:?}: unknown flags");
    assert_eq!(f.get(c, 1), -1, "{how:?}: not a socket of the host");
    assert_eq!(f.del(c), EINVAL, "{how:?}: delete on what is no socket");
    assert_eq!(f.map.storage_len(), 2);
    // The syscall side sees what the programs wrote (key: the owner's descriptor).
    let fd = f.rt.fd_install(ob.clone()).unwrap();
    let mut out = [0u8; 8];
    f.rt.map_lookup_elem(&f.map, Some(&fd.to_ne_bytes()), &mut out, 0)
        .unwrap();
    assert_eq!(u64::from_ne_bytes(out), 42);
    f.rt.fd_close(fd).unwrap();
    assert_eq!(f.del(a), 0, "{how:?}: delete");
    assert_eq!(f.del(a), ENOENT, "{how:?}: nothing left to delete");
    assert_eq!(f.get(a, 0), -1, "{how:?}: deleted");
    assert_eq!(f.get(a, 1), 42, "{how:?}: created again");
    // A released owner (a socket going away): nothing is found or created.
    ob.release();
    assert_eq!(f.get(b, 1), -1, "{how:?}: released owner");
    assert_eq!(f.del(b), ENOENT, "{how:?}: released owner, delete");
    assert_eq!(f.map.storage_len(), 1);
    f.rt.set_storage_owner(None);
    assert_eq!(f.get(a, 0), -1, "{how:?}: hook removed");
}

#[test]
fn sk_storage_on_the_interpreter() {
    scenario(How::Engine(Engine::Interp));
}

#[test]
fn sk_storage_on_the_jit() {
    if structops_vm::Target::host().is_none() {
        println!("skipped: no JIT for this host");
        return;
    }
    scenario(How::Engine(Engine::Jit));
}

#[test]
fn sk_storage_checked() {
    scenario(How::Checked);
}
