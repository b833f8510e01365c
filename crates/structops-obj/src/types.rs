//! The uapi enums a BPF object refers to: program types, attach types and map types,
//! with libbpf's names for them.

/// A BPF program type (`enum bpf_prog_type`).
///
/// A plain `u32` newtype rather than an enum: values the kernel does not know yet
/// must round-trip unchanged.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub struct ProgType(pub u32);

impl ProgType {
    /// `BPF_PROG_TYPE_UNSPEC`.
    pub const UNSPEC: ProgType = ProgType(0);
    /// `BPF_PROG_TYPE_SOCKET_FILTER`.
    pub const SOCKET_FILTER: ProgType = ProgType(1);
    /// `BPF_PROG_TYPE_KPROBE`.
    pub const KPROBE: ProgType = ProgType(2);
    /// `BPF_PROG_TYPE_SCHED_CLS`.
    pub const SCHED_CLS: ProgType = ProgType(3);
    /// `BPF_PROG_TYPE_SCHED_ACT`.
    pub const SCHED_ACT: ProgType = ProgType(4);
    /// `BPF_PROG_TYPE_TRACEPOINT`.
    pub const TRACEPOINT: ProgType = ProgType(5);
    /// `BPF_PROG_TYPE_XDP`.
    pub const XDP: ProgType = ProgType(6);
    /// `BPF_PROG_TYPE_PERF_EVENT`.
    pub const PERF_EVENT: ProgType = ProgType(7);
    /// `BPF_PROG_TYPE_CGROUP_SKB`.
    pub const CGROUP_SKB: ProgType = ProgType(8);
    /// `BPF_PROG_TYPE_CGROUP_SOCK`.
    pub const CGROUP_SOCK: ProgType = ProgType(9);
    /// `BPF_PROG_TYPE_LWT_IN`.
    pub const LWT_IN: ProgType = ProgType(10);
    /// `BPF_PROG_TYPE_LWT_OUT`.
    pub const LWT_OUT: ProgType = ProgType(11);
    /// `BPF_PROG_TYPE_LWT_XMIT`.
    pub const LWT_XMIT: ProgType = ProgType(12);
    /// `BPF_PROG_TYPE_SOCK_OPS`.
    pub const SOCK_OPS: ProgType = ProgType(13);
    /// `BPF_PROG_TYPE_SK_SKB`.
    pub const SK_SKB: ProgType = ProgType(14);
    /// `BPF_PROG_TYPE_CGROUP_DEVICE`.
    pub const CGROUP_DEVICE: ProgType = ProgType(15);
    /// `BPF_PROG_TYPE_SK_MSG`.
    pub const SK_MSG: ProgType = ProgType(16);
    /// `BPF_PROG_TYPE_RAW_TRACEPOINT`.
    pub const RAW_TRACEPOINT: ProgType = ProgType(17);
    /// `BPF_PROG_TYPE_CGROUP_SOCK_ADDR`.
    pub const CGROUP_SOCK_ADDR: ProgType = ProgType(18);
    /// `BPF_PROG_TYPE_LWT_SEG6LOCAL`.
    pub const LWT_SEG6LOCAL: ProgType = ProgType(19);
    /// `BPF_PROG_TYPE_LIRC_MODE2`.
    pub const LIRC_MODE2: ProgType = ProgType(20);
    /// `BPF_PROG_TYPE_SK_REUSEPORT`.
    pub const SK_REUSEPORT: ProgType = ProgType(21);
    /// `BPF_PROG_TYPE_FLOW_DISSECTOR`.
    pub const FLOW_DISSECTOR: ProgType = ProgType(22);
    /// `BPF_PROG_TYPE_CGROUP_SYSCTL`.
    pub const CGROUP_SYSCTL: ProgType = ProgType(23);
    /// `BPF_PROG_TYPE_RAW_TRACEPOINT_WRITABLE`.
    pub const RAW_TRACEPOINT_WRITABLE: ProgType = ProgType(24);
    /// `BPF_PROG_TYPE_CGROUP_SOCKOPT`.
    pub const CGROUP_SOCKOPT: ProgType = ProgType(25);
    /// `BPF_PROG_TYPE_TRACING`.
    pub const TRACING: ProgType = ProgType(26);
    /// `BPF_PROG_TYPE_STRUCT_OPS`.
    pub const STRUCT_OPS: ProgType = ProgType(27);
    /// `BPF_PROG_TYPE_EXT`.
    pub const EXT: ProgType = ProgType(28);
    /// `BPF_PROG_TYPE_LSM`.
    pub const LSM: ProgType = ProgType(29);
    /// `BPF_PROG_TYPE_SK_LOOKUP`.
    pub const SK_LOOKUP: ProgType = ProgType(30);
    /// `BPF_PROG_TYPE_SYSCALL`.
    pub const SYSCALL: ProgType = ProgType(31);
    /// `BPF_PROG_TYPE_NETFILTER`.
    pub const NETFILTER: ProgType = ProgType(32);

    /// libbpf's name for this value (`libbpf_bpf_*_type_str`), if it is known.
    pub fn name(self) -> Option<&'static str> {
        Some(match self.0 {
            0 => "unspec",
            1 => "socket_filter",
            2 => "kprobe",
            3 => "sched_cls",
            4 => "sched_act",
            5 => "tracepoint",
            6 => "xdp",
            7 => "perf_event",
            8 => "cgroup_skb",
            9 => "cgroup_sock",
            10 => "lwt_in",
            11 => "lwt_out",
            12 => "lwt_xmit",
            13 => "sock_ops",
            14 => "sk_skb",
            15 => "cgroup_device",
            16 => "sk_msg",
            17 => "raw_tracepoint",
            18 => "cgroup_sock_addr",
            19 => "lwt_seg6local",
            20 => "lirc_mode2",
            21 => "sk_reuseport",
            22 => "flow_dissector",
            23 => "cgroup_sysctl",
            24 => "raw_tracepoint_writable",
            25 => "cgroup_sockopt",
            26 => "tracing",
            27 => "struct_ops",
            28 => "ext",
            29 => "lsm",
            30 => "sk_lookup",
            31 => "syscall",
            32 => "netfilter",
            _ => return None,
        })
    }
}

impl std::fmt::Display for ProgType {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.name() {
            Some(n) => f.write_str(n),
            None => write!(f, "unknown({})", self.0),
        }
    }
}

/// A BPF attach type (`enum bpf_attach_type`). For struct_ops programs libbpf stores the
/// member index here instead.
///
/// A plain `u32` newtype rather than an enum: values the kernel does not know yet
/// must round-trip unchanged.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub struct AttachType(pub u32);

impl AttachType {
    /// `BPF_CGROUP_INET_INGRESS`.
    pub const CGROUP_INET_INGRESS: AttachType = AttachType(0);
    /// `BPF_CGROUP_INET_EGRESS`.
    pub const CGROUP_INET_EGRESS: AttachType = AttachType(1);
    /// `BPF_CGROUP_INET_SOCK_CREATE`.
    pub const CGROUP_INET_SOCK_CREATE: AttachType = AttachType(2);
    /// `BPF_CGROUP_SOCK_OPS`.
    pub const CGROUP_SOCK_OPS: AttachType = AttachType(3);
    /// `BPF_SK_SKB_STREAM_PARSER`.
    pub const SK_SKB_STREAM_PARSER: AttachType = AttachType(4);
    /// `BPF_SK_SKB_STREAM_VERDICT`.
    pub const SK_SKB_STREAM_VERDICT: AttachType = AttachType(5);
    /// `BPF_CGROUP_DEVICE`.
    pub const CGROUP_DEVICE: AttachType = AttachType(6);
    /// `BPF_SK_MSG_VERDICT`.
    pub const SK_MSG_VERDICT: AttachType = AttachType(7);
    /// `BPF_CGROUP_INET4_BIND`.
    pub const CGROUP_INET4_BIND: AttachType = AttachType(8);
    /// `BPF_CGROUP_INET6_BIND`.
    pub const CGROUP_INET6_BIND: AttachType = AttachType(9);
    /// `BPF_CGROUP_INET4_CONNECT`.
    pub const CGROUP_INET4_CONNECT: AttachType = AttachType(10);
    /// `BPF_CGROUP_INET6_CONNECT`.
    pub const CGROUP_INET6_CONNECT: AttachType = AttachType(11);
    /// `BPF_CGROUP_INET4_POST_BIND`.
    pub const CGROUP_INET4_POST_BIND: AttachType = AttachType(12);
    /// `BPF_CGROUP_INET6_POST_BIND`.
    pub const CGROUP_INET6_POST_BIND: AttachType = AttachType(13);
    /// `BPF_CGROUP_UDP4_SENDMSG`.
    pub const CGROUP_UDP4_SENDMSG: AttachType = AttachType(14);
    /// `BPF_CGROUP_UDP6_SENDMSG`.
    pub const CGROUP_UDP6_SENDMSG: AttachType = AttachType(15);
    /// `BPF_LIRC_MODE2`.
    pub const LIRC_MODE2: AttachType = AttachType(16);
    /// `BPF_FLOW_DISSECTOR`.
    pub const FLOW_DISSECTOR: AttachType = AttachType(17);
    /// `BPF_CGROUP_SYSCTL`.
    pub const CGROUP_SYSCTL: AttachType = AttachType(18);
    /// `BPF_CGROUP_UDP4_RECVMSG`.
    pub const CGROUP_UDP4_RECVMSG: AttachType = AttachType(19);
    /// `BPF_CGROUP_UDP6_RECVMSG`.
    pub const CGROUP_UDP6_RECVMSG: AttachType = AttachType(20);
    /// `BPF_CGROUP_GETSOCKOPT`.
    pub const CGROUP_GETSOCKOPT: AttachType = AttachType(21);
    /// `BPF_CGROUP_SETSOCKOPT`.
    pub const CGROUP_SETSOCKOPT: AttachType = AttachType(22);
    /// `BPF_TRACE_RAW_TP`.
    pub const TRACE_RAW_TP: AttachType = AttachType(23);
    /// `BPF_TRACE_FENTRY`.
    pub const TRACE_FENTRY: AttachType = AttachType(24);
    /// `BPF_TRACE_FEXIT`.
    pub const TRACE_FEXIT: AttachType = AttachType(25);
    /// `BPF_MODIFY_RETURN`.
    pub const MODIFY_RETURN: AttachType = AttachType(26);
    /// `BPF_LSM_MAC`.
    pub const LSM_MAC: AttachType = AttachType(27);
    /// `BPF_TRACE_ITER`.
    pub const TRACE_ITER: AttachType = AttachType(28);
    /// `BPF_CGROUP_INET4_GETPEERNAME`.
    pub const CGROUP_INET4_GETPEERNAME: AttachType = AttachType(29);
    /// `BPF_CGROUP_INET6_GETPEERNAME`.
    pub const CGROUP_INET6_GETPEERNAME: AttachType = AttachType(30);
    /// `BPF_CGROUP_INET4_GETSOCKNAME`.
    pub const CGROUP_INET4_GETSOCKNAME: AttachType = AttachType(31);
    /// `BPF_CGROUP_INET6_GETSOCKNAME`.
    pub const CGROUP_INET6_GETSOCKNAME: AttachType = AttachType(32);
    /// `BPF_XDP_DEVMAP`.
    pub const XDP_DEVMAP: AttachType = AttachType(33);
    /// `BPF_CGROUP_INET_SOCK_RELEASE`.
    pub const CGROUP_INET_SOCK_RELEASE: AttachType = AttachType(34);
    /// `BPF_XDP_CPUMAP`.
    pub const XDP_CPUMAP: AttachType = AttachType(35);
    /// `BPF_SK_LOOKUP`.
    pub const SK_LOOKUP: AttachType = AttachType(36);
    /// `BPF_XDP`.
    pub const XDP: AttachType = AttachType(37);
    /// `BPF_SK_SKB_VERDICT`.
    pub const SK_SKB_VERDICT: AttachType = AttachType(38);
    /// `BPF_SK_REUSEPORT_SELECT`.
    pub const SK_REUSEPORT_SELECT: AttachType = AttachType(39);
    /// `BPF_SK_REUSEPORT_SELECT_OR_MIGRATE`.
    pub const SK_REUSEPORT_SELECT_OR_MIGRATE: AttachType = AttachType(40);
    /// `BPF_PERF_EVENT`.
    pub const PERF_EVENT: AttachType = AttachType(41);
    /// `BPF_TRACE_KPROBE_MULTI`.
    pub const TRACE_KPROBE_MULTI: AttachType = AttachType(42);
    /// `BPF_LSM_CGROUP`.
    pub const LSM_CGROUP: AttachType = AttachType(43);
    /// `BPF_STRUCT_OPS`.
    pub const STRUCT_OPS: AttachType = AttachType(44);
    /// `BPF_NETFILTER`.
    pub const NETFILTER: AttachType = AttachType(45);
    /// `BPF_TCX_INGRESS`.
    pub const TCX_INGRESS: AttachType = AttachType(46);
    /// `BPF_TCX_EGRESS`.
    pub const TCX_EGRESS: AttachType = AttachType(47);
    /// `BPF_TRACE_UPROBE_MULTI`.
    pub const TRACE_UPROBE_MULTI: AttachType = AttachType(48);
    /// `BPF_CGROUP_UNIX_CONNECT`.
    pub const CGROUP_UNIX_CONNECT: AttachType = AttachType(49);
    /// `BPF_CGROUP_UNIX_SENDMSG`.
    pub const CGROUP_UNIX_SENDMSG: AttachType = AttachType(50);
    /// `BPF_CGROUP_UNIX_RECVMSG`.
    pub const CGROUP_UNIX_RECVMSG: AttachType = AttachType(51);
    /// `BPF_CGROUP_UNIX_GETPEERNAME`.
    pub const CGROUP_UNIX_GETPEERNAME: AttachType = AttachType(52);
    /// `BPF_CGROUP_UNIX_GETSOCKNAME`.
    pub const CGROUP_UNIX_GETSOCKNAME: AttachType = AttachType(53);
    /// `BPF_NETKIT_PRIMARY`.
    pub const NETKIT_PRIMARY: AttachType = AttachType(54);
    /// `BPF_NETKIT_PEER`.
    pub const NETKIT_PEER: AttachType = AttachType(55);
    /// `BPF_TRACE_KPROBE_SESSION`.
    pub const TRACE_KPROBE_SESSION: AttachType = AttachType(56);

    /// libbpf's name for this value (`libbpf_bpf_*_type_str`), if it is known.
    pub fn name(self) -> Option<&'static str> {
        Some(match self.0 {
            0 => "cgroup_inet_ingress",
            1 => "cgroup_inet_egress",
            2 => "cgroup_inet_sock_create",
            3 => "cgroup_sock_ops",
            4 => "sk_skb_stream_parser",
            5 => "sk_skb_stream_verdict",
            6 => "cgroup_device",
            7 => "sk_msg_verdict",
            8 => "cgroup_inet4_bind",
            9 => "cgroup_inet6_bind",
            10 => "cgroup_inet4_connect",
            11 => "cgroup_inet6_connect",
            12 => "cgroup_inet4_post_bind",
            13 => "cgroup_inet6_post_bind",
            14 => "cgroup_udp4_sendmsg",
            15 => "cgroup_udp6_sendmsg",
            16 => "lirc_mode2",
            17 => "flow_dissector",
            18 => "cgroup_sysctl",
            19 => "cgroup_udp4_recvmsg",
            20 => "cgroup_udp6_recvmsg",
            21 => "cgroup_getsockopt",
            22 => "cgroup_setsockopt",
            23 => "trace_raw_tp",
            24 => "trace_fentry",
            25 => "trace_fexit",
            26 => "modify_return",
            27 => "lsm_mac",
            28 => "trace_iter",
            29 => "cgroup_inet4_getpeername",
            30 => "cgroup_inet6_getpeername",
            31 => "cgroup_inet4_getsockname",
            32 => "cgroup_inet6_getsockname",
            33 => "xdp_devmap",
            34 => "cgroup_inet_sock_release",
            35 => "xdp_cpumap",
            36 => "sk_lookup",
            37 => "xdp",
            38 => "sk_skb_verdict",
            39 => "sk_reuseport_select",
            40 => "sk_reuseport_select_or_migrate",
            41 => "perf_event",
            42 => "trace_kprobe_multi",
            43 => "lsm_cgroup",
            44 => "struct_ops",
            45 => "netfilter",
            46 => "tcx_ingress",
            47 => "tcx_egress",
            48 => "trace_uprobe_multi",
            49 => "cgroup_unix_connect",
            50 => "cgroup_unix_sendmsg",
            51 => "cgroup_unix_recvmsg",
            52 => "cgroup_unix_getpeername",
            53 => "cgroup_unix_getsockname",
            54 => "netkit_primary",
            55 => "netkit_peer",
            56 => "trace_kprobe_session",
            _ => return None,
        })
    }
}

impl std::fmt::Display for AttachType {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.name() {
            Some(n) => f.write_str(n),
            None => write!(f, "unknown({})", self.0),
        }
    }
}

/// A BPF map type (`enum bpf_map_type`).
///
/// A plain `u32` newtype rather than an enum: values the kernel does not know yet
/// must round-trip unchanged.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub struct MapType(pub u32);

impl MapType {
    /// `BPF_MAP_TYPE_UNSPEC`.
    pub const UNSPEC: MapType = MapType(0);
    /// `BPF_MAP_TYPE_HASH`.
    pub const HASH: MapType = MapType(1);
    /// `BPF_MAP_TYPE_ARRAY`.
    pub const ARRAY: MapType = MapType(2);
    /// `BPF_MAP_TYPE_PROG_ARRAY`.
    pub const PROG_ARRAY: MapType = MapType(3);
    /// `BPF_MAP_TYPE_PERF_EVENT_ARRAY`.
    pub const PERF_EVENT_ARRAY: MapType = MapType(4);
    /// `BPF_MAP_TYPE_PERCPU_HASH`.
    pub const PERCPU_HASH: MapType = MapType(5);
    /// `BPF_MAP_TYPE_PERCPU_ARRAY`.
    pub const PERCPU_ARRAY: MapType = MapType(6);
    /// `BPF_MAP_TYPE_STACK_TRACE`.
    pub const STACK_TRACE: MapType = MapType(7);
    /// `BPF_MAP_TYPE_CGROUP_ARRAY`.
    pub const CGROUP_ARRAY: MapType = MapType(8);
    /// `BPF_MAP_TYPE_LRU_HASH`.
    pub const LRU_HASH: MapType = MapType(9);
    /// `BPF_MAP_TYPE_LRU_PERCPU_HASH`.
    pub const LRU_PERCPU_HASH: MapType = MapType(10);
    /// `BPF_MAP_TYPE_LPM_TRIE`.
    pub const LPM_TRIE: MapType = MapType(11);
    /// `BPF_MAP_TYPE_ARRAY_OF_MAPS`.
    pub const ARRAY_OF_MAPS: MapType = MapType(12);
    /// `BPF_MAP_TYPE_HASH_OF_MAPS`.
    pub const HASH_OF_MAPS: MapType = MapType(13);
    /// `BPF_MAP_TYPE_DEVMAP`.
    pub const DEVMAP: MapType = MapType(14);
    /// `BPF_MAP_TYPE_SOCKMAP`.
    pub const SOCKMAP: MapType = MapType(15);
    /// `BPF_MAP_TYPE_CPUMAP`.
    pub const CPUMAP: MapType = MapType(16);
    /// `BPF_MAP_TYPE_XSKMAP`.
    pub const XSKMAP: MapType = MapType(17);
    /// `BPF_MAP_TYPE_SOCKHASH`.
    pub const SOCKHASH: MapType = MapType(18);
    /// `BPF_MAP_TYPE_CGROUP_STORAGE`.
    pub const CGROUP_STORAGE: MapType = MapType(19);
    /// `BPF_MAP_TYPE_REUSEPORT_SOCKARRAY`.
    pub const REUSEPORT_SOCKARRAY: MapType = MapType(20);
    /// `BPF_MAP_TYPE_PERCPU_CGROUP_STORAGE`.
    pub const PERCPU_CGROUP_STORAGE: MapType = MapType(21);
    /// `BPF_MAP_TYPE_QUEUE`.
    pub const QUEUE: MapType = MapType(22);
    /// `BPF_MAP_TYPE_STACK`.
    pub const STACK: MapType = MapType(23);
    /// `BPF_MAP_TYPE_SK_STORAGE`.
    pub const SK_STORAGE: MapType = MapType(24);
    /// `BPF_MAP_TYPE_DEVMAP_HASH`.
    pub const DEVMAP_HASH: MapType = MapType(25);
    /// `BPF_MAP_TYPE_STRUCT_OPS`.
    pub const STRUCT_OPS: MapType = MapType(26);
    /// `BPF_MAP_TYPE_RINGBUF`.
    pub const RINGBUF: MapType = MapType(27);
    /// `BPF_MAP_TYPE_INODE_STORAGE`.
    pub const INODE_STORAGE: MapType = MapType(28);
    /// `BPF_MAP_TYPE_TASK_STORAGE`.
    pub const TASK_STORAGE: MapType = MapType(29);
    /// `BPF_MAP_TYPE_BLOOM_FILTER`.
    pub const BLOOM_FILTER: MapType = MapType(30);
    /// `BPF_MAP_TYPE_USER_RINGBUF`.
    pub const USER_RINGBUF: MapType = MapType(31);
    /// `BPF_MAP_TYPE_CGRP_STORAGE`.
    pub const CGRP_STORAGE: MapType = MapType(32);
    /// `BPF_MAP_TYPE_ARENA`.
    pub const ARENA: MapType = MapType(33);

    /// libbpf's name for this value (`libbpf_bpf_*_type_str`), if it is known.
    pub fn name(self) -> Option<&'static str> {
        Some(match self.0 {
            0 => "unspec",
            1 => "hash",
            2 => "array",
            3 => "prog_array",
            4 => "perf_event_array",
            5 => "percpu_hash",
            6 => "percpu_array",
            7 => "stack_trace",
            8 => "cgroup_array",
            9 => "lru_hash",
            10 => "lru_percpu_hash",
            11 => "lpm_trie",
            12 => "array_of_maps",
            13 => "hash_of_maps",
            14 => "devmap",
            15 => "sockmap",
            16 => "cpumap",
            17 => "xskmap",
            18 => "sockhash",
            19 => "cgroup_storage",
            20 => "reuseport_sockarray",
            21 => "percpu_cgroup_storage",
            22 => "queue",
            23 => "stack",
            24 => "sk_storage",
            25 => "devmap_hash",
            26 => "struct_ops",
            27 => "ringbuf",
            28 => "inode_storage",
            29 => "task_storage",
            30 => "bloom_filter",
            31 => "user_ringbuf",
            32 => "cgrp_storage",
            33 => "arena",
            _ => return None,
        })
    }
}

impl std::fmt::Display for MapType {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.name() {
            Some(n) => f.write_str(n),
            None => write!(f, "unknown({})", self.0),
        }
    }
}

impl MapType {
    /// Is this a map-in-map type (`ARRAY_OF_MAPS` or `HASH_OF_MAPS`)?
    pub fn is_map_in_map(self) -> bool {
        self == MapType::ARRAY_OF_MAPS || self == MapType::HASH_OF_MAPS
    }

    /// Is this a ring buffer (`RINGBUF` or `USER_RINGBUF`)?
    pub fn is_ringbuf(self) -> bool {
        self == MapType::RINGBUF || self == MapType::USER_RINGBUF
    }
}

/// Map creation flags (`BPF_F_*` for `BPF_MAP_CREATE`) that libbpf sets itself.
pub mod map_flags {
    /// `BPF_F_RDONLY_PROG`: programs may only read the map.
    pub const RDONLY_PROG: u32 = 1 << 7;
    /// `BPF_F_MMAPABLE`: user space may mmap() the map.
    pub const MMAPABLE: u32 = 1 << 10;
    /// `BPF_F_LINK`: a struct_ops map attached through a link.
    pub const LINK: u32 = 1 << 13;
}

/// Program load flags (`BPF_F_*` for `BPF_PROG_LOAD`) that libbpf derives from SEC().
pub mod prog_flags {
    /// `BPF_F_SLEEPABLE`.
    pub const SLEEPABLE: u32 = 1 << 4;
    /// `BPF_F_XDP_HAS_FRAGS`.
    pub const XDP_HAS_FRAGS: u32 = 1 << 5;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_match_uapi() {
        assert_eq!(ProgType::STRUCT_OPS.0, 27);
        assert_eq!(ProgType::NETFILTER.0, 32);
        assert_eq!(AttachType::TRACE_KPROBE_SESSION.0, 56);
        assert_eq!(AttachType::TCX_INGRESS.0, 46);
        assert_eq!(MapType::STRUCT_OPS.0, 26);
        assert_eq!(MapType::ARENA.0, 33);
        assert_eq!(ProgType::SCHED_CLS.to_string(), "sched_cls");
        assert_eq!(MapType(99).to_string(), "unknown(99)");
    }
}
