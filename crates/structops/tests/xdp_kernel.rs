//! Kernel differential for `BPF_PROG_TEST_RUN` on packet programs: every XDP program
//! (and every `tc`/socket-filter program, which the same harness can run through the
//! kernel's skb test run) of the project's fixtures (`bpf/*.bpf.o`) and of the
//! conformance corpus (`conformance/build/corpus`, `conformance/build/xdp`) runs in the
//! running kernel and in [`structops::Runtime`] on the same packets; `retval`,
//! `data_size_out`, `data_out` and the errno must be equal, and so must the contents of
//! the object's maps after the runs.
//!
//! Kernel side, without libbpf: the object is parsed and relocated by `structops-obj`
//! (externs with the runtime's kconfig, CO-RE against `/sys/kernel/btf/vmlinux`), its
//! BTF loaded with `BTF_LOAD`, its maps created with `BPF_MAP_CREATE` (BTF type ids,
//! global data filled, `.rodata`/`.kconfig` frozen, map-in-map and program-array slots
//! filled), each program loaded with `BPF_PROG_LOAD` (func_info, line_info) and run
//! with `BPF_PROG_TEST_RUN`. Our side: the same object through
//! [`structops::loader::ObjectLoader`] into a runtime whose host BTF is the same
//! vmlinux BTF, once per engine (one test for the interpreter, one for the JIT).
//! Programs our verifier accepts run unchecked on that engine (a verified program on
//! another engine is a failure); programs it rejects are loaded unverified
//! (`run_unverified`) and run in the interpreter's checked mode, and are listed as
//! verifier gaps.
//!
//! Each program is loaded fresh on both sides (its own maps), so programs of one object
//! do not see each other's map updates. Maps the selftests' user-space halves fill
//! (the tunnels' `vip2tnl`, the load balancers' VIPs, rings and reals) get the same
//! entries on both sides ([`seeds`]) so that the packets reach the encapsulation paths. Programs the kernel refuses to load or run are
//! listed as "kernel cannot test-run"; programs we cannot run are listed with the reason
//! and must be in [`KNOWN_GAPS`]. Skips with a printed reason without root or BPF.

#[path = "common/kernel.rs"]
#[expect(
    dead_code,
    reason = "shared bpf(2) helpers; this test needs only the map and program ones"
)]
mod kernel;

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use structops::helpers::HostFn;
use structops::loader::{LoadOptions, LoadedObject, MIRRORED_KERNEL_VERSION, ObjectLoader};
use structops::{
    Engine, KfuncFlags, MapCreateAttr, ProgLoadAttr, ProgType, RunMode, Runtime, RuntimeConfig,
    TestRun,
};
use structops_btf::Btf;
use structops_obj::core_relo::CoreTarget;
use structops_obj::{
    BtfKsyms, CoreEngine, ExternHost, KsymResolver, KsymTarget, MapKind, MapType, Object,
    ParseOptions, Slot,
};

use kernel::OwnedFds;

/// A program we cannot run yet: `object:program`, then text its failure must contain
/// (so that a different failure is not hidden) and the reason.
type Gap = (&'static str, (&'static str, &'static str));

const CAST_TO_KERN_CTX: (&str, &str) = (
    "bpf_cast_to_kern_ctx",
    "kfunc bpf_cast_to_kern_ctx: the runtime has no kernel sk_buff to hand out",
);
const LINKED_LIST: (&str, &str) = (
    "bpf_obj_new_impl",
    "kfuncs bpf_obj_new_impl/bpf_list_* (allocated objects, graph types) are not in the \
     runtime",
);
const CHECK_MTU: (&str, &str) = (
    "unknown helper #163",
    "helper bpf_check_mtu is not in the runtime",
);
const SET_TUNNEL_KEY: (&str, &str) = (
    "unknown helper #21",
    "helper bpf_skb_set_tunnel_key is not in the runtime (no tunnel metadata)",
);
const DYNPTR_XDP: (&str, &str) = (
    "bpf_dynptr_from_xdp",
    "kfuncs bpf_dynptr_from_xdp/bpf_dynptr_slice are not in the runtime",
);
const CPUMAP: (&str, &str) = (
    "map 'cpu_map': create failed: EINVAL",
    "BPF_MAP_TYPE_CPUMAP (and bpf_redirect_map) are not in the runtime",
);
const DEVMAP: (&str, &str) = (
    "create failed: EINVAL",
    "BPF_MAP_TYPE_DEVMAP (and bpf_redirect_map) are not in the runtime",
);
const DEVMAP_HASH: (&str, &str) = (
    "map 'map_all': create failed: EINVAL",
    "BPF_MAP_TYPE_DEVMAP_HASH (and bpf_redirect_map) are not in the runtime",
);
const CONNTRACK: (&str, &str) = (
    "ct_lookup",
    "conntrack kfuncs bpf_xdp_ct_lookup/bpf_skb_ct_lookup are not in the runtime",
);
const LPM_TRIE: (&str, &str) = (
    "map 'v4_lpm_val_map': create failed: EINVAL",
    "BPF_MAP_TYPE_LPM_TRIE is not in the runtime",
);

/// Programs we cannot run yet. A program that fails on our side and is not listed
/// here, or fails for another reason than its entry's, fails the test; one listed here
/// that now runs is reported so that the entry can be removed.
const KNOWN_GAPS: &[Gap] = &[
    ("core_local.bpf.o:core_local_direct", CAST_TO_KERN_CTX),
    ("linked_list.bpf.o:map_list_push_pop", LINKED_LIST),
    ("linked_list.bpf.o:inner_map_list_push_pop", LINKED_LIST),
    ("linked_list.bpf.o:global_list_push_pop", LINKED_LIST),
    ("linked_list.bpf.o:global_list_push_pop_nested", LINKED_LIST),
    ("linked_list.bpf.o:global_list_array_push_pop", LINKED_LIST),
    ("linked_list.bpf.o:map_list_push_pop_multiple", LINKED_LIST),
    (
        "linked_list.bpf.o:inner_map_list_push_pop_multiple",
        LINKED_LIST,
    ),
    (
        "linked_list.bpf.o:global_list_push_pop_multiple",
        LINKED_LIST,
    ),
    ("linked_list.bpf.o:map_list_in_list", LINKED_LIST),
    ("linked_list.bpf.o:inner_map_list_in_list", LINKED_LIST),
    ("linked_list.bpf.o:global_list_in_list", LINKED_LIST),
    ("test_check_mtu.bpf.o:xdp_use_helper_basic", CHECK_MTU),
    ("test_check_mtu.bpf.o:xdp_use_helper", CHECK_MTU),
    ("test_check_mtu.bpf.o:xdp_exceed_mtu", CHECK_MTU),
    ("test_check_mtu.bpf.o:xdp_minus_delta", CHECK_MTU),
    ("test_check_mtu.bpf.o:xdp_input_len", CHECK_MTU),
    ("test_check_mtu.bpf.o:xdp_input_len_exceed", CHECK_MTU),
    ("test_check_mtu.bpf.o:tc_use_helper", CHECK_MTU),
    ("test_check_mtu.bpf.o:tc_exceed_mtu", CHECK_MTU),
    ("test_check_mtu.bpf.o:tc_exceed_mtu_da", CHECK_MTU),
    ("test_check_mtu.bpf.o:tc_minus_delta", CHECK_MTU),
    ("test_check_mtu.bpf.o:tc_input_len", CHECK_MTU),
    ("test_check_mtu.bpf.o:tc_input_len_exceed", CHECK_MTU),
    ("test_l4lb.bpf.o:balancer_ingress", SET_TUNNEL_KEY),
    (
        "test_parse_tcp_hdr_opt_dynptr.bpf.o:xdp_ingress_v6",
        DYNPTR_XDP,
    ),
    ("test_xdp_with_cpumap_helpers.bpf.o:xdp_redir_prog", CPUMAP),
    ("test_xdp_with_cpumap_helpers.bpf.o:xdp_dummy_prog", CPUMAP),
    ("test_xdp_with_cpumap_helpers.bpf.o:xdp_dummy_cm", CPUMAP),
    (
        "test_xdp_with_cpumap_helpers.bpf.o:xdp_dummy_cm_frags",
        CPUMAP,
    ),
    ("test_xdp_with_devmap_helpers.bpf.o:xdp_redir_prog", DEVMAP),
    ("test_xdp_with_devmap_helpers.bpf.o:xdp_dummy_prog", DEVMAP),
    ("test_xdp_with_devmap_helpers.bpf.o:xdp_dummy_dm", DEVMAP),
    (
        "test_xdp_with_devmap_helpers.bpf.o:xdp_dummy_dm_frags",
        DEVMAP,
    ),
    ("xdp_features.bpf.o:xdp_tester_check_tx", CPUMAP),
    ("xdp_features.bpf.o:xdp_tester_check_rx", CPUMAP),
    ("xdp_features.bpf.o:xdp_do_pass", CPUMAP),
    ("xdp_features.bpf.o:xdp_do_drop", CPUMAP),
    ("xdp_features.bpf.o:xdp_do_aborted", CPUMAP),
    ("xdp_features.bpf.o:xdp_do_tx", CPUMAP),
    ("xdp_features.bpf.o:xdp_do_redirect", CPUMAP),
    ("xdp_features.bpf.o:xdp_do_redirect_cpumap", CPUMAP),
    ("xdp_redirect_map.bpf.o:xdp_redirect_map_0", DEVMAP),
    ("xdp_redirect_map.bpf.o:xdp_redirect_map_1", DEVMAP),
    ("xdp_redirect_map.bpf.o:xdp_redirect_map_2", DEVMAP),
    (
        "xdp_redirect_multi_kern.bpf.o:xdp_redirect_map_multi_prog",
        DEVMAP_HASH,
    ),
    (
        "xdp_redirect_multi_kern.bpf.o:xdp_redirect_map_all_prog",
        DEVMAP_HASH,
    ),
    ("xdp_redirect_multi_kern.bpf.o:xdp_devmap_prog", DEVMAP_HASH),
    ("xdp_synproxy_kern.bpf.o:syncookie_xdp", CONNTRACK),
    ("xdp_synproxy_kern.bpf.o:syncookie_tc", CONNTRACK),
    ("xdpwall.bpf.o:edgewall", LPM_TRIE),
];

/// Program types the harness runs.
const PACKET_TYPES: [ProgType; 3] = [ProgType::XDP, ProgType::SCHED_CLS, ProgType::SOCKET_FILTER];

/// `BPF_MAP_TYPE_STRUCT_OPS`.
const MAP_TYPE_STRUCT_OPS: u32 = 26;

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn objects_in(dir: &Path) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(dir)
        .map(|d| {
            d.filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| p.to_string_lossy().ends_with(".bpf.o"))
                .collect()
        })
        .unwrap_or_default();
    v.sort();
    v
}

// ---- packets ----

/// xorshift64*: a seeded, reproducible byte source.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    fn bytes(&mut self, n: usize) -> Vec<u8> {
        (0..n).map(|_| self.next() as u8).collect()
    }
}

const DST_MAC: [u8; 6] = [0x02, 0x00, 0x00, 0x00, 0x00, 0x02];
const SRC_MAC: [u8; 6] = [0x02, 0x00, 0x00, 0x00, 0x00, 0x01];

fn eth(ethertype: u16) -> Vec<u8> {
    let mut p = DST_MAC.to_vec();
    p.extend_from_slice(&SRC_MAC);
    p.extend_from_slice(&ethertype.to_be_bytes());
    p
}

fn csum(data: &[u8]) -> u16 {
    let mut s: u32 = data
        .chunks(2)
        .map(|c| u32::from(u16::from_be_bytes([c[0], *c.get(1).unwrap_or(&0)])))
        .sum();
    while s > 0xffff {
        s = (s & 0xffff) + (s >> 16);
    }
    !(s as u16)
}

fn ipv4(proto: u8, l4: &[u8]) -> Vec<u8> {
    let total = (20 + l4.len()) as u16;
    let mut h = vec![0x45, 0];
    h.extend_from_slice(&total.to_be_bytes());
    h.extend_from_slice(&[0x12, 0x34, 0x40, 0x00, 64, proto, 0, 0]);
    h.extend_from_slice(&[10, 0, 0, 1, 10, 0, 0, 2]);
    let c = csum(&h);
    h[10..12].copy_from_slice(&c.to_be_bytes());
    h.extend_from_slice(l4);
    h
}

fn ipv6(next: u8, l4: &[u8]) -> Vec<u8> {
    let mut h = vec![0x60, 0, 0, 0];
    h.extend_from_slice(&(l4.len() as u16).to_be_bytes());
    h.extend_from_slice(&[next, 64]);
    h.extend_from_slice(&[0xfc, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1]);
    h.extend_from_slice(&[0xfc, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2]);
    h.extend_from_slice(l4);
    h
}

fn tcp(sport: u16, dport: u16, flags: u8, payload: &[u8]) -> Vec<u8> {
    let mut t = sport.to_be_bytes().to_vec();
    t.extend_from_slice(&dport.to_be_bytes());
    t.extend_from_slice(&[0, 0, 0, 1, 0, 0, 0, 0, 0x50, flags, 0xff, 0xff, 0, 0, 0, 0]);
    t.extend_from_slice(payload);
    t
}

fn udp(sport: u16, dport: u16, payload: &[u8]) -> Vec<u8> {
    let mut u = sport.to_be_bytes().to_vec();
    u.extend_from_slice(&dport.to_be_bytes());
    u.extend_from_slice(&((8 + payload.len()) as u16).to_be_bytes());
    u.extend_from_slice(&[0, 0]);
    u.extend_from_slice(payload);
    u
}

fn frame(ethertype: u16, l3: &[u8]) -> Vec<u8> {
    let mut p = eth(ethertype);
    p.extend_from_slice(l3);
    p
}

/// A context given as `ctx_in` (and read back from `ctx_out`).
#[derive(Clone, Copy)]
enum Ctx {
    /// No `ctx_in`/`ctx_out`.
    None,
    /// XDP only: `struct xdp_md` with `data` = this many bytes of metadata before the
    /// packet, `data_end` = the input's length, on the loopback device's queue 0.
    XdpMeta(u32),
    /// skb only: `struct __sk_buff` with `mark`, `priority` and `cb[]` set.
    Skb,
}

/// One input: `(name, packet, repeat, context)`.
type Input = (&'static str, Vec<u8>, u32, Ctx);

/// `ctx_in` of `ctx` for `data` run by a program of type `ty`; `None` when the input
/// does not apply to the type, `Some(None)` for no context.
fn ctx_bytes(ctx: Ctx, ty: ProgType, data: &[u8]) -> Option<Option<Vec<u8>>> {
    match ctx {
        Ctx::None => Some(None),
        Ctx::XdpMeta(meta) if ty == ProgType::XDP => {
            let words = [meta, data.len() as u32, 0, 1, 0, 0];
            Some(Some(words.iter().flat_map(|w| w.to_ne_bytes()).collect()))
        }
        Ctx::Skb if ty != ProgType::XDP => {
            let mut c = vec![0u8; 192];
            let mut put = |off: usize, v: u32| c[off..off + 4].copy_from_slice(&v.to_ne_bytes());
            put(8, 0x1234); // mark
            put(32, 7); // priority
            put(48, 0xdead_beef); // cb[0]
            put(64, 42); // cb[4]
            Some(Some(c))
        }
        _ => None,
    }
}

/// The inputs every program runs on.
fn inputs() -> Vec<Input> {
    let mut rng = Rng(0x005e_ed0f_0dd5_u64);
    let payload: Vec<u8> = (0..32u8).collect();
    let ipv4_tcp = frame(0x0800, &ipv4(6, &tcp(40000, 80, 0x02, &payload)));
    let ipv4_udp = frame(0x0800, &ipv4(17, &udp(5353, 53, &payload)));
    let ipv6_tcp = frame(0x86dd, &ipv6(6, &tcp(40001, 443, 0x12, &payload)));
    let ipv6_udp = frame(0x86dd, &ipv6(17, &udp(40002, 4789, &payload)));
    let mut arp = eth(0x0806);
    arp.extend_from_slice(&[0, 1, 8, 0, 6, 4, 0, 1]);
    arp.extend_from_slice(&SRC_MAC);
    arp.extend_from_slice(&[10, 0, 0, 1]);
    arp.extend_from_slice(&[0; 6]);
    arp.extend_from_slice(&[10, 0, 0, 2]);
    let mut vlan = DST_MAC.to_vec();
    vlan.extend_from_slice(&SRC_MAC);
    vlan.extend_from_slice(&[0x81, 0x00, 0x00, 0x64, 0x08, 0x00]);
    vlan.extend_from_slice(&ipv4(17, &udp(1000, 2000, &payload)));
    let runt = eth(0x0800);
    let mut minimal = frame(0x0800, &ipv4(17, &udp(7, 7, &[0xaa; 18])));
    minimal.resize(60, 0);
    let big = frame(
        0x0800,
        &ipv4(6, &tcp(12345, 8080, 0x18, &rng.bytes(1500 - 54))),
    );
    let ipip = frame(0x0800, &ipv4(4, &ipv4(6, &tcp(1, 2, 0x10, &payload))));
    vec![
        ("ipv4-tcp", ipv4_tcp.clone(), 1, Ctx::None),
        ("ipv4-tcp ctx", ipv4_tcp.clone(), 1, Ctx::Skb),
        ("ipv4-tcp meta 8", ipv4_tcp.clone(), 1, Ctx::XdpMeta(8)),
        ("ipv6-udp meta 32", ipv6_udp.clone(), 1, Ctx::XdpMeta(32)),
        ("ipv4-udp", ipv4_udp.clone(), 1, Ctx::None),
        ("ipv6-tcp", ipv6_tcp, 1, Ctx::None),
        ("ipv6-udp", ipv6_udp.clone(), 1, Ctx::None),
        ("arp", arp, 1, Ctx::None),
        ("vlan", vlan, 1, Ctx::None),
        ("ipip", ipip, 1, Ctx::None),
        ("runt-14", runt, 1, Ctx::None),
        ("min-60", minimal, 1, Ctx::None),
        ("mtu-1500", big, 1, Ctx::None),
        ("random-64", rng.bytes(64), 1, Ctx::None),
        ("random-333", rng.bytes(333), 1, Ctx::None),
        ("random-1024", rng.bytes(1024), 1, Ctx::None),
        ("ipv4-tcp x7", ipv4_tcp, 7, Ctx::None),
        ("ipv4-udp x3", ipv4_udp, 3, Ctx::None),
    ]
}

// ---- map contents the selftests' user-space halves set up ----

/// An entry written into a map on both sides after loading and before the runs, so
/// the inputs reach the programs' deeper paths (the load balancers' and tunnels'
/// encapsulation), as the selftests' user-space halves do.
struct Seed {
    /// Object file names the seed applies to.
    objects: &'static [&'static str],
    map: &'static str,
    key: Vec<u8>,
    value: Vec<u8>,
}

/// `v4` (network order, as in the packets) in a 16-byte address union.
fn addr_v4(a: [u8; 4]) -> Vec<u8> {
    let mut v = a.to_vec();
    v.resize(16, 0);
    v
}

fn addr_v6(last: u8) -> Vec<u8> {
    let mut v = vec![0xfc];
    v.resize(15, 0);
    v.push(last);
    v
}

/// `struct vip` of test_iptunnel_common.h / `struct vip_definition`: address union,
/// `__be16` port, `__u16` family, `__u8` protocol, padded to 24 bytes.
fn vip_key(addr: Vec<u8>, port: u16, family: u16, proto: u8) -> Vec<u8> {
    let mut k = addr;
    k.extend_from_slice(&port.to_be_bytes());
    k.extend_from_slice(&family.to_ne_bytes());
    k.push(proto);
    k.resize(24, 0);
    k
}

fn seeds() -> Vec<Seed> {
    const TUNNELS: &[&str] = &[
        "test_xdp.bpf.o",
        "test_xdp_loop.bpf.o",
        "test_xdp_dynptr.bpf.o",
    ];
    const BALANCERS: &[&str] = &[
        "test_xdp_noinline.bpf.o",
        "test_l4lb.bpf.o",
        "test_l4lb_noinline.bpf.o",
    ];
    let u32b = |v: u32| v.to_ne_bytes().to_vec();
    // `struct iptnl_info`: saddr, daddr, family, dmac.
    let tnl = |saddr: Vec<u8>, daddr: Vec<u8>, family: u16| {
        let mut v = saddr;
        v.extend_from_slice(&daddr);
        v.extend_from_slice(&family.to_ne_bytes());
        v.extend_from_slice(&[0x02, 0, 0, 0, 0, 0x0a]);
        v
    };
    // `struct real_definition`: address union, flags (F_IPV6 = 1), padded to 20.
    let real = |addr: Vec<u8>, flags: u8| {
        let mut v = addr;
        v.push(flags);
        v.resize(20, 0);
        v
    };
    let seed = |objects, map, key, value| Seed {
        objects,
        map,
        key,
        value,
    };
    let mut v = vec![
        seed(
            TUNNELS,
            "vip2tnl",
            vip_key(addr_v4([10, 0, 0, 2]), 80, 2, 6),
            tnl(addr_v4([10, 1, 1, 1]), addr_v4([10, 2, 2, 2]), 2),
        ),
        seed(
            TUNNELS,
            "vip2tnl",
            vip_key(addr_v6(2), 443, 10, 6),
            tnl(addr_v6(0x11), addr_v6(0x12), 10),
        ),
        // vip_meta {flags, vip_num}: the IPv4 VIP (family left 0, as the programs
        // build the key) is number 0, the IPv6 one number 1.
        seed(
            BALANCERS,
            "vip_map",
            vip_key(addr_v4([10, 0, 0, 2]), 80, 0, 6),
            [u32b(0), u32b(0)].concat(),
        ),
        seed(
            BALANCERS,
            "vip_map",
            vip_key(addr_v6(2), 443, 0, 6),
            [u32b(0), u32b(1)].concat(),
        ),
        seed(BALANCERS, "reals", u32b(1), real(addr_v4([10, 3, 3, 3]), 0)),
        seed(BALANCERS, "reals", u32b(2), real(addr_v6(0x33), 1)),
    ];
    // Two ring slots per VIP: VIP 0 to real 1, VIP 1 to real 2.
    for (slot, real) in [(0, 1), (1, 1), (2, 2), (3, 2)] {
        v.push(seed(BALANCERS, "ch_rings", u32b(slot), u32b(real)));
    }
    // ctl_array: the egress MAC (test_xdp_noinline) or interface (test_l4lb).
    for pos in 0..3 {
        v.push(seed(
            BALANCERS,
            "ctl_array",
            u32b(pos),
            vec![0x02, 0, 0, 0, 0, 0x0b, 0, 0],
        ));
    }
    v
}

// ---- the kernel side ----

/// An object's maps and one program, in the kernel.
struct KernelObject {
    /// `(name, fd, type, key_size, value_size)` of every created map.
    maps: Vec<(String, i32, MapType, u32, u32)>,
    prog: i32,
    _fds: OwnedFds,
}

/// Kconfig beyond the runtime's own that the fixtures read (`globals.bpf.o`), given to
/// both sides.
const EXTRA_KCONFIG: &str = "CONFIG_TCP_CONG_CUBIC=m\n";

/// `__ksym` resolution on both sides: kfuncs and typed variables from vmlinux BTF,
/// typeless symbols from `/proc/kallsyms` (libbpf's sources for them).
struct HostKsyms<'a> {
    btf: BtfKsyms<'a>,
    kallsyms: String,
}

impl KsymResolver for HostKsyms<'_> {
    fn kfunc(&self, name: &str) -> Option<KsymTarget> {
        self.btf.kfunc(name)
    }
    fn var(&self, name: &str) -> Option<KsymTarget> {
        self.btf.var(name)
    }
    fn kallsyms(&self, name: &str) -> Option<u64> {
        self.kallsyms.lines().find_map(|l| {
            let mut f = l.split_whitespace();
            let addr = f.next()?;
            let _kind = f.next()?;
            (f.next()? == name).then(|| u64::from_str_radix(addr, 16).ok())?
        })
    }
}

/// The externs every load sees, on both sides: the runtime's kconfig and kernel
/// version plus [`EXTRA_KCONFIG`], ksyms from vmlinux and kallsyms.
fn extern_host<'a>(kconfig: &'a str, ksyms: &'a HostKsyms<'a>) -> ExternHost<'a> {
    ExternHost {
        kernel_version: MIRRORED_KERNEL_VERSION,
        has_bpf_cookie: true,
        has_syscall_wrapper: true,
        extra_kconfig: Some(EXTRA_KCONFIG),
        system_kconfig: Some(kconfig),
        ksyms,
    }
}

/// Why the kernel refused, as one line.
fn kernel_refusal(what: &str, errno: structops::Errno, log: &str) -> String {
    // The verifier's reason comes before its statistics lines.
    let last = log
        .lines()
        .rev()
        .find(|l| {
            let l = l.trim();
            !l.is_empty()
                && !l.starts_with("processed ")
                && !l.starts_with("verification time")
                && !l.starts_with("stack depth")
        })
        .unwrap_or("");
    if last.is_empty() {
        format!("{what}: {errno}")
    } else {
        format!("{what}: {errno} ({last})")
    }
}

impl KernelObject {
    /// Loads `prog` of the object in `bytes` the way libbpf would, with only that
    /// program autoloaded.
    fn load(
        bytes: &[u8],
        path: &str,
        prog: &str,
        vmlinux: &Btf,
        kconfig: &str,
        ksyms: &HostKsyms<'_>,
    ) -> Result<KernelObject, String> {
        let mut fds = OwnedFds::default();
        let mut obj = Object::parse_with(bytes, &ParseOptions::for_path(path))
            .map_err(|e| format!("parse: {e}"))?;
        select(&mut obj, prog);
        // BTF_LOAD; as libbpf, an object whose BTF the kernel refuses loads without it.
        let btf_fd = obj
            .btf()
            .and_then(|b| kernel::btf_load(&b.encode()).ok())
            .map(|fd| fds.own(fd));
        obj.resolve_externs(&extern_host(kconfig, ksyms))
            .map_err(|e| format!("externs: {e}"))?;
        let core_target = CoreTarget::new(vmlinux);
        obj.relocate_core_with(&CoreEngine::new(&core_target))
            .map_err(|e| format!("CO-RE: {e}"))?;

        let mut map_fds: Vec<Option<i32>> = Vec::new();
        let mut maps = Vec::new();
        for m in obj.maps() {
            if !m.autocreate() || m.map_type().0 == MAP_TYPE_STRUCT_OPS {
                map_fds.push(None);
                continue;
            }
            let fd = create_map(&mut fds, m, btf_fd)?;
            map_fds.push(Some(fd));
            maps.push((
                m.name().to_string(),
                fd,
                m.map_type(),
                m.key_size(),
                m.value_size(),
            ));
            if m.kind().is_internal() {
                let mut value = m.initial_value().to_vec();
                value.resize(m.value_size() as usize, 0);
                kernel::update(fd, Some(&0u32.to_ne_bytes()), &value, 0)
                    .map_err(|e| format!("map '{}': global data: {e}", m.name()))?;
                if matches!(m.kind(), MapKind::Rodata | MapKind::Kconfig) {
                    kernel::freeze(fd).map_err(|e| format!("map '{}': freeze: {e}", m.name()))?;
                }
            }
        }
        let map_fd = |i: usize| map_fds.get(i).copied().flatten().unwrap_or(-1);
        let linked = obj
            .relocate(&map_fd)
            .map_err(|e| format!("relocate: {e}"))?;
        let mut prog_fds: BTreeMap<usize, i32> = BTreeMap::new();
        let mut main = None;
        for l in &linked {
            let p = &obj.programs()[l.program];
            let mut attr = ProgLoadAttr::new(p.prog_type(), l.insns.clone(), obj.license())
                .name(&l.name)
                .expected_attach_type(p.expected_attach_type())
                .flags(p.prog_flags());
            attr.kern_version = obj.kern_version().unwrap_or(0);
            attr.attach_btf_id = p.attach_btf_id();
            if let Some(fd) = btf_fd {
                if let Some(fi) = &l.func_info {
                    attr = attr.func_info(fd as u32, fi);
                }
                if let Some(li) = &l.line_info {
                    attr = attr.line_info(fd as u32, li);
                }
            }
            let fd = match kernel::prog_load(&attr, 0) {
                Ok(fd) => fds.own(fd),
                Err((errno, _)) => {
                    let log = kernel::prog_load(&attr, 1).err().map(|(_, l)| l);
                    return Err(kernel_refusal(
                        "BPF_PROG_LOAD",
                        errno,
                        log.as_deref().unwrap_or(""),
                    ));
                }
            };
            prog_fds.insert(l.program, fd);
            if l.name == prog {
                main = Some(fd);
            }
        }
        // Initial slots of program arrays and maps of maps.
        for (m, fd) in obj.maps().iter().zip(&map_fds) {
            let Some(fd) = *fd else { continue };
            for (i, slot) in m.init_slots().iter().enumerate() {
                let value = match slot {
                    Some(Slot::Map(idx)) => map_fd(*idx),
                    Some(Slot::Program(idx)) => prog_fds.get(idx).copied().unwrap_or(-1),
                    None => -1,
                };
                if value < 0 {
                    continue;
                }
                kernel::update(fd, Some(&(i as u32).to_ne_bytes()), &value.to_ne_bytes(), 0)
                    .map_err(|e| format!("map '{}': slot {i}: {e}", m.name()))?;
            }
        }
        let prog = main.ok_or_else(|| format!("program '{prog}' not relocated"))?;
        Ok(KernelObject {
            maps,
            prog,
            _fds: fds,
        })
    }
}

/// Autoload only `prog` (libbpf's `bpf_program__set_autoload`).
fn select(obj: &mut Object, prog: &str) {
    for p in obj.programs_mut() {
        if !p.is_subprog() {
            let on = p.name() == prog;
            p.set_autoload(on);
        }
    }
}

/// `bpf_object__create_map` in the kernel (inner-map template first; retried without
/// BTF when the kernel refuses the type ids, as libbpf does).
fn create_map(
    fds: &mut OwnedFds,
    m: &structops_obj::Map,
    btf_fd: Option<i32>,
) -> Result<i32, String> {
    let mut attr = MapCreateAttr {
        map_type: m.map_type().0,
        key_size: m.key_size(),
        value_size: m.value_size(),
        max_entries: m.max_entries(),
        map_flags: m.map_flags(),
        numa_node: m.numa_node(),
        map_extra: m.map_extra(),
        ..MapCreateAttr::default()
    }
    .name(m.kernel_name());
    if let Some(fd) = btf_fd
        && m.btf_value_type_id() != 0
    {
        attr.btf_fd = fd as u32;
        attr.btf_key_type_id = m.btf_key_type_id();
        attr.btf_value_type_id = m.btf_value_type_id();
    }
    let mut inner = OwnedFds::default();
    if let Some(i) = m.inner_map() {
        attr.inner_map_fd = create_map(&mut inner, i, btf_fd)? as u32;
    }
    let created = match kernel::map_create(&attr) {
        Err(_) if attr.btf_value_type_id != 0 => {
            attr.btf_fd = 0;
            attr.btf_key_type_id = 0;
            attr.btf_value_type_id = 0;
            kernel::map_create(&attr)
        }
        other => other,
    };
    created
        .map(|fd| fds.own(fd))
        .map_err(|e| format!("map '{}': BPF_MAP_CREATE: {e}", m.name()))
}

// ---- comparison ----

/// What one program's differential found.
enum Outcome {
    /// Both sides ran every input; `diffs` lists what differed.
    Compared {
        inputs: usize,
        equal: usize,
        diffs: Vec<String>,
        /// The kernel's retvals (errno as `-errno`) and how often each came, to show
        /// which paths the inputs reached.
        retvals: BTreeMap<i64, usize>,
        /// Why our verifier rejected it (it then ran checked, loaded unverified);
        /// `None`: verified, so it ran unchecked.
        rejection: Option<String>,
    },
    /// The kernel refused to load or run it.
    KernelCannot(String),
    /// We could not load or run it.
    OursCannot(String),
}

/// The result of one test run: errno (0 on success), retval, data_size_out, data_out.
type RunResult = (i32, u32, u32, Vec<u8>);

fn run_result(r: Result<(), structops::Errno>, t: &TestRun) -> RunResult {
    (
        r.err().map_or(0, |e| e.0),
        t.retval,
        t.data_size_out,
        t.data_out.clone().unwrap_or_default(),
    )
}

fn describe(r: &RunResult) -> String {
    let hex: String = r.3.iter().take(48).map(|b| format!("{b:02x}")).collect();
    format!(
        "errno {} retval {} size {} data {hex}{}",
        r.0,
        r.1,
        r.2,
        if r.3.len() > 48 { ".." } else { "" }
    )
}

/// The first differing byte of two outputs, for the report.
fn first_diff(a: &[u8], b: &[u8]) -> String {
    match a.iter().zip(b).position(|(x, y)| x != y) {
        Some(i) => format!(
            "first differing byte at {i}: kernel {:#04x} ours {:#04x}",
            a[i], b[i]
        ),
        None => format!("lengths {} vs {}", a.len(), b.len()),
    }
}

/// Map types whose contents can be compared key by key (values are plain bytes).
fn comparable(t: MapType) -> bool {
    matches!(
        t,
        MapType::HASH
            | MapType::ARRAY
            | MapType::PERCPU_HASH
            | MapType::PERCPU_ARRAY
            | MapType::LRU_HASH
            | MapType::LRU_PERCPU_HASH
    )
}

fn is_percpu(t: MapType) -> bool {
    matches!(
        t,
        MapType::PERCPU_HASH | MapType::PERCPU_ARRAY | MapType::LRU_PERCPU_HASH
    )
}

/// Compares every comparable map of the kernel object with ours; returns the
/// differences and how many maps were compared.
fn compare_maps(
    rt: &Runtime,
    k: &KernelObject,
    ours: &LoadedObject,
    ncpus: u32,
) -> (usize, Vec<String>) {
    let mut diffs = Vec::new();
    let mut compared = 0;
    for (name, fd, ty, key_size, value_size) in &k.maps {
        if !comparable(*ty) {
            continue;
        }
        let Some(our) = ours.map(name) else {
            diffs.push(format!("map '{name}': missing on our side"));
            continue;
        };
        compared += 1;
        let vlen = if is_percpu(*ty) {
            (*value_size as usize).next_multiple_of(8) * ncpus as usize
        } else {
            *value_size as usize
        };
        let mut kernel_keys = 0usize;
        let mut key: Option<Vec<u8>> = None;
        loop {
            let mut next = vec![0u8; *key_size as usize];
            if kernel::next_key(*fd, key.as_deref(), &mut next).is_err() {
                break;
            }
            kernel_keys += 1;
            let mut kv = vec![0u8; vlen];
            let mut ov = vec![0u8; vlen];
            let kr = kernel::lookup(*fd, Some(&next), &mut kv, 0);
            let or = rt.map_lookup_elem(our, Some(&next), &mut ov, 0);
            if kr != or || kv != ov {
                diffs.push(format!(
                    "map '{name}' key {:02x?}: kernel {kr:?} {:02x?} ours {or:?} {:02x?}",
                    next, kv, ov
                ));
            }
            key = Some(next);
            if kernel_keys > 100_000 {
                break;
            }
        }
        let mut our_keys = 0usize;
        let mut key: Option<Vec<u8>> = None;
        loop {
            let mut next = vec![0u8; *key_size as usize];
            if rt.map_get_next_key(our, key.as_deref(), &mut next).is_err() {
                break;
            }
            our_keys += 1;
            key = Some(next);
            if our_keys > 100_000 {
                break;
            }
        }
        if our_keys != kernel_keys {
            diffs.push(format!(
                "map '{name}': {kernel_keys} keys in the kernel, {our_keys} ours"
            ));
        }
    }
    (compared, diffs)
}

/// What every program's differential shares.
struct Harness<'a> {
    rt: &'a Runtime,
    vmlinux: &'a Btf,
    ksyms: &'a HostKsyms<'a>,
    inputs: &'a [Input],
    seeds: &'a [Seed],
    /// The engine verified programs must run on.
    engine: Engine,
}

/// Runs one program of one object on both sides; counts the maps compared.
fn differential(
    h: &Harness<'_>,
    bytes: &[u8],
    path: &str,
    prog: &str,
    ty: ProgType,
    maps_compared: &mut usize,
) -> Outcome {
    let (rt, vmlinux, ksyms, inputs) = (h.rt, h.vmlinux, h.ksyms, h.inputs);
    let kconfig = rt.kconfig();
    let k = match KernelObject::load(bytes, path, prog, vmlinux, &kconfig, ksyms) {
        Ok(k) => k,
        Err(e) => return Outcome::KernelCannot(e),
    };
    let mut loader = match ObjectLoader::open(bytes, path) {
        Ok(l) => l,
        Err(e) => return Outcome::OursCannot(format!("open: {e}")),
    };
    loader.select_programs(&[prog]);
    let opts = LoadOptions {
        kconfig: Some(EXTRA_KCONFIG),
        ksyms: Some(ksyms),
        ..LoadOptions::default()
    };
    let ours = match loader.load(rt, &opts) {
        Ok(o) => o,
        Err(e) => return Outcome::OursCannot(format!("load: {e}")),
    };
    let Some(our_prog) = ours.prog(prog) else {
        return Outcome::OursCannot(format!("program '{prog}' not loaded"));
    };
    if our_prog.is_verified() && our_prog.engine() != h.engine {
        return Outcome::OursCannot(format!(
            "verified, but runs on {:?} instead of {:?}",
            our_prog.engine(),
            h.engine
        ));
    }
    let rejection = our_prog
        .rejection()
        .map(|e| format!("insn {}: {} (errno {})", e.pc, e.message, e.errno));
    for seed in h.seeds.iter().filter(|s| s.objects.contains(&path)) {
        let (Some((_, fd, _, key_size, value_size)), Some(our)) =
            (k.maps.iter().find(|m| m.0 == seed.map), ours.map(seed.map))
        else {
            panic!("{path}: seed for map '{}' that does not exist", seed.map);
        };
        assert_eq!(
            (seed.key.len(), seed.value.len()),
            (*key_size as usize, *value_size as usize),
            "{path}: seed for map '{}' has the wrong sizes",
            seed.map
        );
        let kr = kernel::update(*fd, Some(&seed.key), &seed.value, 0);
        let or = rt.map_update_elem(our, Some(&seed.key), &seed.value, 0);
        assert_eq!(kr, Ok(()), "{path}: seeding '{}' in the kernel", seed.map);
        assert_eq!(or, Ok(()), "{path}: seeding '{}' in the runtime", seed.map);
    }
    let mut diffs = Vec::new();
    let mut equal = 0;
    let mut kernel_ran = 0;
    let mut retvals = BTreeMap::new();
    let mut ran = 0;
    for (name, data, repeat, ctx) in inputs {
        let Some(ctx_in) = ctx_bytes(*ctx, ty, data) else {
            continue;
        };
        ran += 1;
        let new_run = || TestRun {
            data_in: data.clone(),
            data_out: Some(Vec::new()),
            repeat: *repeat,
            // Verified programs run unchecked, the rest (loaded unverified) checked.
            mode: RunMode::Auto,
            ctx_out: ctx_in.as_ref().map(|_| Vec::new()),
            ctx_size_out: ctx_in.as_ref().map_or(0, |c| c.len() as u32),
            ctx_in: ctx_in.clone(),
            ..TestRun::default()
        };
        let mut kt = new_run();
        let kr = kernel::prog_test_run(k.prog, &mut kt);
        if kr != Err(structops::Errno::ENOTSUPP) {
            kernel_ran += 1;
        }
        let kres = run_result(kr, &kt);
        let key = if kres.0 == 0 {
            i64::from(kres.1)
        } else {
            -i64::from(kres.0)
        };
        *retvals.entry(key).or_default() += 1;
        let mut ot = new_run();
        let or = rt.prog_test_run(our_prog, &mut ot);
        if let Some(fault) = &ot.fault {
            return Outcome::OursCannot(format!("input {name}: run stopped: {fault}"));
        }
        let ores = run_result(or, &ot);
        if kt.ctx_out != ot.ctx_out || kt.ctx_size_out != ot.ctx_size_out {
            diffs.push(format!(
                "input {name}: ctx_out kernel {:02x?} ({}) ours {:02x?} ({})",
                kt.ctx_out, kt.ctx_size_out, ot.ctx_out, ot.ctx_size_out
            ));
        }
        if kres == ores {
            equal += 1;
        } else {
            diffs.push(format!(
                "input {name}: kernel [{}] ours [{}]; {}",
                describe(&kres),
                describe(&ores),
                first_diff(&kres.3, &ores.3)
            ));
        }
    }
    if kernel_ran == 0 {
        return Outcome::KernelCannot("BPF_PROG_TEST_RUN: ENOTSUPP".into());
    }
    let (n, map_diffs) = compare_maps(rt, &k, &ours, rt.ncpus());
    *maps_compared += n;
    diffs.extend(map_diffs);
    Outcome::Compared {
        inputs: ran,
        equal,
        diffs,
        retvals,
        rejection,
    }
}

fn type_name(t: ProgType) -> &'static str {
    match t {
        ProgType::XDP => "xdp",
        ProgType::SCHED_CLS => "tc",
        ProgType::SOCKET_FILTER => "socket",
        _ => "?",
    }
}

/// The interpreter's side of the differential.
#[test]
fn packet_programs_match_the_kernel_interp() {
    packet_programs_match_the_kernel(Engine::Interp);
}

/// The JIT's side of the differential.
#[test]
fn packet_programs_match_the_kernel_jit() {
    packet_programs_match_the_kernel(Engine::Jit);
}

/// Every packet program of the fixtures and the corpus, on `engine`, against the kernel.
fn packet_programs_match_the_kernel(engine: Engine) {
    if let Some(why) = kernel::unavailable() {
        println!("skipped: {why}");
        return;
    }
    let vmlinux_bytes = match std::fs::read("/sys/kernel/btf/vmlinux") {
        Ok(b) => b,
        Err(e) => {
            println!("skipped: /sys/kernel/btf/vmlinux: {e}");
            return;
        }
    };
    let mut dirs = vec![root().join("bpf")];
    let corpus = root().join("conformance/build/corpus");
    if corpus.join("MANIFEST").exists() {
        dirs.push(corpus);
        dirs.push(root().join("conformance/build/xdp"));
    } else {
        println!(
            "note: no conformance build at {} (run `bash conformance/build.sh`); fixtures only",
            corpus.display()
        );
    }
    let start = std::time::Instant::now();
    let ncpus = kernel::possible_cpus();
    let rt = Runtime::new(RuntimeConfig {
        ncpus,
        run_unverified: true,
        engine,
        ..RuntimeConfig::default()
    });
    rt.register_host_btf(Btf::parse(&vmlinux_bytes).unwrap())
        .unwrap();
    let host = rt.host_btf().unwrap();
    let vmlinux: &Btf = host.object().btf();
    // kfuncs the packet programs call whose effect a test run cannot observe.
    for name in ["bpf_rcu_read_lock", "bpf_rcu_read_unlock"] {
        let f: HostFn = Arc::new(|_, _| Ok(0));
        rt.register_kfunc(name, KfuncFlags::NONE, Vec::new(), f)
            .unwrap();
    }
    let ksyms = HostKsyms {
        btf: BtfKsyms { btf: vmlinux },
        kallsyms: std::fs::read_to_string("/proc/kallsyms").unwrap_or_default(),
    };
    // Per-CPU values land in slot 0 on both sides.
    assert!(kernel::pin_to_cpu(0), "cannot pin to CPU 0");
    structops::cpu::set_current_cpu(Some(0));
    let inputs = inputs();
    let seeds = seeds();
    let harness = Harness {
        seeds: &seeds,
        rt: &rt,
        vmlinux,
        ksyms: &ksyms,
        inputs: &inputs,
        engine,
    };

    let mut rows: Vec<(String, &'static str, Outcome)> = Vec::new();
    let mut maps_compared = 0;
    let mut objects = 0;
    for dir in &dirs {
        for path in objects_in(dir) {
            let bytes = std::fs::read(&path).unwrap();
            let label = path.file_name().unwrap().to_string_lossy().into_owned();
            // The file name names the object (and prefixes its internal maps) on both
            // sides, and keeps the report short.
            let path_s = label.clone();
            let Ok(obj) = Object::parse_with(&bytes, &ParseOptions::for_path(&path_s)) else {
                continue;
            };
            let progs: Vec<(String, ProgType)> = obj
                .programs()
                .iter()
                .filter(|p| !p.is_subprog() && PACKET_TYPES.contains(&p.prog_type()))
                .map(|p| (p.name().to_string(), p.prog_type()))
                .collect();
            if progs.is_empty() {
                continue;
            }
            objects += 1;
            for (prog, ty) in progs {
                let outcome =
                    differential(&harness, &bytes, &path_s, &prog, ty, &mut maps_compared);
                rows.push((format!("{label}:{prog}"), type_name(ty), outcome));
            }
        }
    }

    // The summary table.
    let mut table = String::new();
    let mut compared = 0;
    let mut runs = 0;
    let mut different = Vec::new();
    let mut kernel_cannot = 0;
    let mut ours_unexpected = Vec::new();
    let mut ours_known = 0;
    let mut stale_gaps = Vec::new();
    let mut verified = 0;
    let mut rejected: Vec<String> = Vec::new();
    writeln!(
        table,
        "{:<58} {:<6} {:>6} {:>6} {:>5}  status",
        "object:program", "type", "inputs", "equal", "diff"
    )
    .unwrap();
    for (name, ty, outcome) in &rows {
        let gap = KNOWN_GAPS.iter().find(|(n, _)| n == name).map(|(_, g)| g);
        let (inputs, equal, ndiff, status) = match outcome {
            Outcome::Compared {
                inputs,
                equal,
                diffs,
                retvals,
                rejection,
            } => {
                compared += 1;
                match rejection {
                    None => verified += 1,
                    Some(r) => rejected.push(format!("{name}: {r}")),
                }
                runs += inputs;
                if let Some((_, why)) = gap {
                    stale_gaps.push(format!("{name} ({why})"));
                }
                for d in diffs {
                    different.push(format!("{name}: {d}"));
                }
                let seen: Vec<String> = retvals.iter().map(|(r, n)| format!("{r}x{n}")).collect();
                let status = format!(
                    "{} (retvals {}) {}",
                    if diffs.is_empty() {
                        "equal"
                    } else {
                        "DIFFERENT"
                    },
                    seen.join(" "),
                    if rejection.is_none() {
                        "verified, unchecked"
                    } else {
                        "UNVERIFIED, checked"
                    }
                );
                (*inputs, *equal, diffs.len(), status)
            }
            Outcome::KernelCannot(why) => {
                kernel_cannot += 1;
                (0, 0, 0, format!("kernel cannot test-run: {why}"))
            }
            Outcome::OursCannot(why) => match gap {
                Some((needle, reason)) if why.contains(needle) => {
                    ours_known += 1;
                    (0, 0, 0, format!("known gap: {reason}"))
                }
                _ => {
                    ours_unexpected.push(format!("{name}: {why}"));
                    (0, 0, 0, format!("OURS FAILED: {why}"))
                }
            },
        };
        writeln!(
            table,
            "{name:<58} {ty:<6} {inputs:>6} {equal:>6} {ndiff:>5}  {status}"
        )
        .unwrap();
    }
    println!("{table}");
    println!(
        "engine {engine:?}: {objects} objects, {} programs: {compared} compared ({runs} runs, {maps_compared} maps \
         compared), {kernel_cannot} the kernel cannot test-run, {ours_known} known gaps, {} \
         unexpected failures on our side; {:.1} s",
        rows.len(),
        ours_unexpected.len(),
        start.elapsed().as_secs_f64()
    );
    // The kernel accepted every compared program, so each rejection here is a
    // precision gap of our verifier.
    println!(
        "verifier: {verified} of {compared} compared programs verified (the kernel accepted all \
         {compared}); {} rejected (loaded unverified, run checked):",
        rejected.len()
    );
    for r in &rejected {
        println!("  verifier gap: {r}");
    }
    for ty in ["xdp", "tc", "socket"] {
        let of_type = rows.iter().filter(|(_, t, _)| *t == ty);
        let (mut n, mut cmp, mut kc, mut oc) = (0, 0, 0, 0);
        for (_, _, o) in of_type {
            n += 1;
            match o {
                Outcome::Compared { .. } => cmp += 1,
                Outcome::KernelCannot(_) => kc += 1,
                Outcome::OursCannot(_) => oc += 1,
            }
        }
        println!(
            "  {ty}: {n} programs, {cmp} compared, {kc} the kernel cannot test-run, {oc} we \
             cannot run"
        );
    }
    for s in &stale_gaps {
        println!("note: KNOWN_GAPS entry now runs, remove it: {s}");
    }
    assert!(
        rows.iter().any(|(n, t, o)| *t == "xdp"
            && n.starts_with("maps.bpf.o:")
            && matches!(o, Outcome::Compared { .. })),
        "the fixture's XDP program was not compared"
    );
    assert!(
        different.is_empty(),
        "differences:\n{}",
        different.join("\n")
    );
    assert!(
        ours_unexpected.is_empty(),
        "programs we cannot run that are not in KNOWN_GAPS:\n{}",
        ours_unexpected.join("\n")
    );
}
