//! Helper functions by id: the prototypes the verifier checks calls against, which
//! program types may call which helper, and host-registered helpers.
//!
//! A [`HelperProto`] is the verifier's `struct bpf_func_proto` (re-exported from
//! `structops_verifier::proto`): the return type, the five argument types (the
//! kernel's `ARG_*` with their `MEM_*`/`PTR_MAYBE_NULL`/`OBJ_RELEASE` flags),
//! `gpl_only`, whether it may sleep and whether it accepts packet pointers.
//! [`builtin`] gives the prototypes of the helpers this runtime implements, with the
//! kernel's `BPF_FUNC_*` ids ([`KNOWN_HELPERS`] a few more it verifies calls of but
//! does not implement); [`func_proto`] answers "may a program of this type call
//! helper `id`", mirroring the kernel's per-type `get_func_proto` tables
//! (`bpf_base_func_proto`, `xdp_func_proto`, `sk_filter_func_proto`,
//! `cg_skb_func_proto`, `tc_cls_act_func_proto`) including their capability gates.
//!
//! `bpf_sk_storage_get`/`bpf_sk_storage_delete` are for struct_ops programs, whose
//! host hands them socket pointers; the host says which [`crate::HostObject`] owns a
//! socket's storage ([`crate::Runtime::set_storage_owner`]).
//!
//! The socket helpers (`bpf_sk_lookup_tcp` and friends) are the kernel's, but this
//! runtime has no sockets: lookups return NULL, as the kernel's do when no socket
//! matches the tuple, and the casts (`bpf_sk_fullsock`, `bpf_tcp_sock`,
//! `bpf_get_listener_sock`) answer for the only socket a program can hold, the dummy
//! socket of an skb test run.
//!
//! The implementations live in [`crate::exec`], which dispatches calls by id while a
//! program runs. The kernel's `bpf_snprintf`/`bpf_trace_printk` format rules are in
//! [`printf`].

pub mod printf;

use std::fmt;
use std::sync::Arc;

use structops_obj::ProgType;
use structops_vm::{Caller, VmError};

use crate::caps::Capabilities;

/// `BPF_FUNC_map_lookup_elem`.
pub const BPF_FUNC_MAP_LOOKUP_ELEM: i32 = 1;
/// `BPF_FUNC_map_update_elem`.
pub const BPF_FUNC_MAP_UPDATE_ELEM: i32 = 2;
/// `BPF_FUNC_map_delete_elem`.
pub const BPF_FUNC_MAP_DELETE_ELEM: i32 = 3;
/// `BPF_FUNC_ktime_get_ns`.
pub const BPF_FUNC_KTIME_GET_NS: i32 = 5;
/// `BPF_FUNC_trace_printk`.
pub const BPF_FUNC_TRACE_PRINTK: i32 = 6;
/// `BPF_FUNC_get_prandom_u32`.
pub const BPF_FUNC_GET_PRANDOM_U32: i32 = 7;
/// `BPF_FUNC_get_smp_processor_id`.
pub const BPF_FUNC_GET_SMP_PROCESSOR_ID: i32 = 8;
/// `BPF_FUNC_tail_call`.
pub const BPF_FUNC_TAIL_CALL: i32 = 12;
/// `BPF_FUNC_get_numa_node_id`.
pub const BPF_FUNC_GET_NUMA_NODE_ID: i32 = 42;
/// `BPF_FUNC_xdp_adjust_head`.
pub const BPF_FUNC_XDP_ADJUST_HEAD: i32 = 44;
/// `BPF_FUNC_xdp_adjust_meta`.
pub const BPF_FUNC_XDP_ADJUST_META: i32 = 54;
/// `BPF_FUNC_xdp_adjust_tail`.
pub const BPF_FUNC_XDP_ADJUST_TAIL: i32 = 65;
/// `BPF_FUNC_sk_lookup_tcp`.
pub const BPF_FUNC_SK_LOOKUP_TCP: i32 = 84;
/// `BPF_FUNC_sk_lookup_udp`.
pub const BPF_FUNC_SK_LOOKUP_UDP: i32 = 85;
/// `BPF_FUNC_sk_release`.
pub const BPF_FUNC_SK_RELEASE: i32 = 86;
/// `BPF_FUNC_map_push_elem`.
pub const BPF_FUNC_MAP_PUSH_ELEM: i32 = 87;
/// `BPF_FUNC_map_pop_elem`.
pub const BPF_FUNC_MAP_POP_ELEM: i32 = 88;
/// `BPF_FUNC_map_peek_elem`.
pub const BPF_FUNC_MAP_PEEK_ELEM: i32 = 89;
/// `BPF_FUNC_spin_lock`.
pub const BPF_FUNC_SPIN_LOCK: i32 = 93;
/// `BPF_FUNC_spin_unlock`.
pub const BPF_FUNC_SPIN_UNLOCK: i32 = 94;
/// `BPF_FUNC_sk_fullsock`.
pub const BPF_FUNC_SK_FULLSOCK: i32 = 95;
/// `BPF_FUNC_tcp_sock`.
pub const BPF_FUNC_TCP_SOCK: i32 = 96;
/// `BPF_FUNC_get_listener_sock`.
pub const BPF_FUNC_GET_LISTENER_SOCK: i32 = 98;
/// `BPF_FUNC_skc_lookup_tcp`.
pub const BPF_FUNC_SKC_LOOKUP_TCP: i32 = 99;
/// `BPF_FUNC_sk_storage_get`.
pub const BPF_FUNC_SK_STORAGE_GET: i32 = 107;
/// `BPF_FUNC_sk_storage_delete`.
pub const BPF_FUNC_SK_STORAGE_DELETE: i32 = 108;
/// `BPF_FUNC_probe_read_kernel`.
pub const BPF_FUNC_PROBE_READ_KERNEL: i32 = 113;
/// `BPF_FUNC_probe_read_kernel_str`.
pub const BPF_FUNC_PROBE_READ_KERNEL_STR: i32 = 115;
/// `BPF_FUNC_jiffies64`.
pub const BPF_FUNC_JIFFIES64: i32 = 118;
/// `BPF_FUNC_ktime_get_boot_ns`.
pub const BPF_FUNC_KTIME_GET_BOOT_NS: i32 = 125;
/// `BPF_FUNC_ringbuf_output`.
pub const BPF_FUNC_RINGBUF_OUTPUT: i32 = 130;
/// `BPF_FUNC_ringbuf_reserve`.
pub const BPF_FUNC_RINGBUF_RESERVE: i32 = 131;
/// `BPF_FUNC_ringbuf_submit`.
pub const BPF_FUNC_RINGBUF_SUBMIT: i32 = 132;
/// `BPF_FUNC_ringbuf_discard`.
pub const BPF_FUNC_RINGBUF_DISCARD: i32 = 133;
/// `BPF_FUNC_ringbuf_query`.
pub const BPF_FUNC_RINGBUF_QUERY: i32 = 134;
/// `BPF_FUNC_ktime_get_coarse_ns`.
pub const BPF_FUNC_KTIME_GET_COARSE_NS: i32 = 160;
/// `BPF_FUNC_for_each_map_elem`.
pub const BPF_FUNC_FOR_EACH_MAP_ELEM: i32 = 164;
/// `BPF_FUNC_snprintf`.
pub const BPF_FUNC_SNPRINTF: i32 = 165;
/// `BPF_FUNC_xdp_get_buff_len`.
pub const BPF_FUNC_XDP_GET_BUFF_LEN: i32 = 188;
/// `BPF_FUNC_xdp_load_bytes`.
pub const BPF_FUNC_XDP_LOAD_BYTES: i32 = 189;
/// `BPF_FUNC_xdp_store_bytes`.
pub const BPF_FUNC_XDP_STORE_BYTES: i32 = 190;
/// `BPF_FUNC_loop`.
pub const BPF_FUNC_LOOP: i32 = 181;

pub use structops_verifier::proto::{Arg, ArgType, HelperProto, Ret, RetType, TypeFlags};

const fn proto(id: i32, name: &'static str, ret: Ret, args: [Arg; 5]) -> HelperProto {
    HelperProto {
        id,
        name,
        ret,
        args,
        gpl_only: false,
        might_sleep: false,
        pkt_access: false,
    }
}

const fn a(ty: ArgType) -> Arg {
    Arg::new(ty)
}

const fn af(ty: ArgType, flags: TypeFlags) -> Arg {
    Arg::with(ty, flags)
}

const D: Arg = Arg::DONTCARE;
const NO_ARGS: [Arg; 5] = [D; 5];

/// `RET_PTR_TO_MAP_VALUE_OR_NULL`.
const RET_MAP_VALUE_OR_NULL: Ret = Ret {
    ty: RetType::PtrToMapValue,
    flags: TypeFlags::PTR_MAYBE_NULL,
};
/// `RET_PTR_TO_RINGBUF_MEM_OR_NULL`.
const RET_RINGBUF_MEM_OR_NULL: Ret = Ret {
    ty: RetType::PtrToMem,
    flags: TypeFlags::PTR_MAYBE_NULL.union(TypeFlags::MEM_RINGBUF),
};
/// `RET_PTR_TO_SOCKET_OR_NULL`.
const RET_SOCKET_OR_NULL: Ret = Ret {
    ty: RetType::PtrToSocket,
    flags: TypeFlags::PTR_MAYBE_NULL,
};
/// `RET_PTR_TO_SOCK_COMMON_OR_NULL`.
const RET_SOCK_COMMON_OR_NULL: Ret = Ret {
    ty: RetType::PtrToSockCommon,
    flags: TypeFlags::PTR_MAYBE_NULL,
};
/// `RET_PTR_TO_TCP_SOCK_OR_NULL`.
const RET_TCP_SOCK_OR_NULL: Ret = Ret {
    ty: RetType::PtrToTcpSock,
    flags: TypeFlags::PTR_MAYBE_NULL,
};
/// The arguments of the socket lookups (`bpf_sk_lookup_tcp_proto` and its tc and
/// XDP twins): context, tuple, tuple size, netns id, flags.
const SK_LOOKUP_ARGS: [Arg; 5] = [
    a(ArgType::PtrToCtx),
    af(ArgType::PtrToMem, TypeFlags::MEM_RDONLY),
    a(ArgType::ConstSizeOrZero),
    a(ArgType::Anything),
    a(ArgType::Anything),
];
/// `ARG_PTR_TO_UNINIT_MAP_VALUE` as `bpf_map_pop_elem_proto` has it.
const UNINIT_MAP_VALUE: Arg = af(
    ArgType::PtrToMapValue,
    TypeFlags::MEM_UNINIT.union(TypeFlags::MEM_WRITE),
);

/// `ARG_PTR_TO_UNINIT_MEM`.
const UNINIT_MEM: Arg = af(
    ArgType::PtrToMem,
    TypeFlags::MEM_UNINIT.union(TypeFlags::MEM_WRITE),
);
/// `ARG_PTR_TO_MEM | MEM_RDONLY`.
const RDONLY_MEM: Arg = af(ArgType::PtrToMem, TypeFlags::MEM_RDONLY);

/// The prototypes of every helper this runtime implements, in id order.
pub static BUILTIN_HELPERS: &[HelperProto] = &[
    HelperProto {
        pkt_access: true,
        ..proto(
            BPF_FUNC_MAP_LOOKUP_ELEM,
            "map_lookup_elem",
            RET_MAP_VALUE_OR_NULL,
            [a(ArgType::ConstMapPtr), a(ArgType::PtrToMapKey), D, D, D],
        )
    },
    HelperProto {
        pkt_access: true,
        ..proto(
            BPF_FUNC_MAP_UPDATE_ELEM,
            "map_update_elem",
            Ret::INTEGER,
            [
                a(ArgType::ConstMapPtr),
                a(ArgType::PtrToMapKey),
                a(ArgType::PtrToMapValue),
                a(ArgType::Anything),
                D,
            ],
        )
    },
    HelperProto {
        pkt_access: true,
        ..proto(
            BPF_FUNC_MAP_DELETE_ELEM,
            "map_delete_elem",
            Ret::INTEGER,
            [a(ArgType::ConstMapPtr), a(ArgType::PtrToMapKey), D, D, D],
        )
    },
    proto(BPF_FUNC_KTIME_GET_NS, "ktime_get_ns", Ret::INTEGER, NO_ARGS),
    HelperProto {
        gpl_only: true,
        ..proto(
            BPF_FUNC_TRACE_PRINTK,
            "trace_printk",
            Ret::INTEGER,
            [RDONLY_MEM, a(ArgType::ConstSize), D, D, D],
        )
    },
    proto(
        BPF_FUNC_GET_PRANDOM_U32,
        "get_prandom_u32",
        Ret::INTEGER,
        NO_ARGS,
    ),
    proto(
        BPF_FUNC_GET_SMP_PROCESSOR_ID,
        "get_smp_processor_id",
        Ret::INTEGER,
        NO_ARGS,
    ),
    proto(
        BPF_FUNC_TAIL_CALL,
        "tail_call",
        Ret::VOID,
        [
            a(ArgType::PtrToCtx),
            a(ArgType::ConstMapPtr),
            a(ArgType::Anything),
            D,
            D,
        ],
    ),
    proto(
        BPF_FUNC_GET_NUMA_NODE_ID,
        "get_numa_node_id",
        Ret::INTEGER,
        NO_ARGS,
    ),
    proto(
        BPF_FUNC_XDP_ADJUST_HEAD,
        "xdp_adjust_head",
        Ret::INTEGER,
        [a(ArgType::PtrToCtx), a(ArgType::Anything), D, D, D],
    ),
    proto(
        BPF_FUNC_XDP_ADJUST_META,
        "xdp_adjust_meta",
        Ret::INTEGER,
        [a(ArgType::PtrToCtx), a(ArgType::Anything), D, D, D],
    ),
    proto(
        BPF_FUNC_XDP_ADJUST_TAIL,
        "xdp_adjust_tail",
        Ret::INTEGER,
        [a(ArgType::PtrToCtx), a(ArgType::Anything), D, D, D],
    ),
    HelperProto {
        pkt_access: true,
        ..proto(
            BPF_FUNC_SK_LOOKUP_TCP,
            "sk_lookup_tcp",
            RET_SOCKET_OR_NULL,
            SK_LOOKUP_ARGS,
        )
    },
    HelperProto {
        pkt_access: true,
        ..proto(
            BPF_FUNC_SK_LOOKUP_UDP,
            "sk_lookup_udp",
            RET_SOCKET_OR_NULL,
            SK_LOOKUP_ARGS,
        )
    },
    proto(
        BPF_FUNC_SK_RELEASE,
        "sk_release",
        Ret::INTEGER,
        [
            af(ArgType::PtrToBtfIdSockCommon, TypeFlags::OBJ_RELEASE),
            D,
            D,
            D,
            D,
        ],
    ),
    proto(
        BPF_FUNC_MAP_PUSH_ELEM,
        "map_push_elem",
        Ret::INTEGER,
        [
            a(ArgType::ConstMapPtr),
            a(ArgType::PtrToMapValue),
            a(ArgType::Anything),
            D,
            D,
        ],
    ),
    proto(
        BPF_FUNC_MAP_POP_ELEM,
        "map_pop_elem",
        Ret::INTEGER,
        [a(ArgType::ConstMapPtr), UNINIT_MAP_VALUE, D, D, D],
    ),
    proto(
        BPF_FUNC_MAP_PEEK_ELEM,
        "map_peek_elem",
        Ret::INTEGER,
        [a(ArgType::ConstMapPtr), UNINIT_MAP_VALUE, D, D, D],
    ),
    proto(
        BPF_FUNC_SPIN_LOCK,
        "spin_lock",
        Ret::VOID,
        [a(ArgType::PtrToSpinLock), D, D, D, D],
    ),
    proto(
        BPF_FUNC_SPIN_UNLOCK,
        "spin_unlock",
        Ret::VOID,
        [a(ArgType::PtrToSpinLock), D, D, D, D],
    ),
    proto(
        BPF_FUNC_SK_FULLSOCK,
        "sk_fullsock",
        RET_SOCKET_OR_NULL,
        [a(ArgType::PtrToSockCommon), D, D, D, D],
    ),
    proto(
        BPF_FUNC_TCP_SOCK,
        "tcp_sock",
        RET_TCP_SOCK_OR_NULL,
        [a(ArgType::PtrToSockCommon), D, D, D, D],
    ),
    proto(
        BPF_FUNC_GET_LISTENER_SOCK,
        "get_listener_sock",
        RET_SOCKET_OR_NULL,
        [a(ArgType::PtrToSockCommon), D, D, D, D],
    ),
    HelperProto {
        pkt_access: true,
        ..proto(
            BPF_FUNC_SKC_LOOKUP_TCP,
            "skc_lookup_tcp",
            RET_SOCK_COMMON_OR_NULL,
            SK_LOOKUP_ARGS,
        )
    },
    // `bpf_sk_storage_get_proto`: the value to create from may be NULL (zeroed).
    proto(
        BPF_FUNC_SK_STORAGE_GET,
        "sk_storage_get",
        RET_MAP_VALUE_OR_NULL,
        [
            a(ArgType::ConstMapPtr),
            a(ArgType::PtrToBtfIdSockCommon),
            af(ArgType::PtrToMapValue, TypeFlags::PTR_MAYBE_NULL),
            a(ArgType::Anything),
            D,
        ],
    ),
    // `bpf_sk_storage_delete_proto`.
    proto(
        BPF_FUNC_SK_STORAGE_DELETE,
        "sk_storage_delete",
        Ret::INTEGER,
        [
            a(ArgType::ConstMapPtr),
            a(ArgType::PtrToBtfIdSockCommon),
            D,
            D,
            D,
        ],
    ),
    HelperProto {
        gpl_only: true,
        ..proto(
            BPF_FUNC_PROBE_READ_KERNEL,
            "probe_read_kernel",
            Ret::INTEGER,
            [
                UNINIT_MEM,
                a(ArgType::ConstSizeOrZero),
                a(ArgType::Anything),
                D,
                D,
            ],
        )
    },
    HelperProto {
        gpl_only: true,
        ..proto(
            BPF_FUNC_PROBE_READ_KERNEL_STR,
            "probe_read_kernel_str",
            Ret::INTEGER,
            [
                UNINIT_MEM,
                a(ArgType::ConstSizeOrZero),
                a(ArgType::Anything),
                D,
                D,
            ],
        )
    },
    proto(BPF_FUNC_JIFFIES64, "jiffies64", Ret::INTEGER, NO_ARGS),
    proto(
        BPF_FUNC_KTIME_GET_BOOT_NS,
        "ktime_get_boot_ns",
        Ret::INTEGER,
        NO_ARGS,
    ),
    proto(
        BPF_FUNC_RINGBUF_OUTPUT,
        "ringbuf_output",
        Ret::INTEGER,
        [
            a(ArgType::ConstMapPtr),
            RDONLY_MEM,
            a(ArgType::ConstSizeOrZero),
            a(ArgType::Anything),
            D,
        ],
    ),
    proto(
        BPF_FUNC_RINGBUF_RESERVE,
        "ringbuf_reserve",
        RET_RINGBUF_MEM_OR_NULL,
        [
            a(ArgType::ConstMapPtr),
            a(ArgType::ConstAllocSizeOrZero),
            a(ArgType::Anything),
            D,
            D,
        ],
    ),
    proto(
        BPF_FUNC_RINGBUF_SUBMIT,
        "ringbuf_submit",
        Ret::VOID,
        [
            af(ArgType::PtrToRingbufMem, TypeFlags::OBJ_RELEASE),
            a(ArgType::Anything),
            D,
            D,
            D,
        ],
    ),
    proto(
        BPF_FUNC_RINGBUF_DISCARD,
        "ringbuf_discard",
        Ret::VOID,
        [
            af(ArgType::PtrToRingbufMem, TypeFlags::OBJ_RELEASE),
            a(ArgType::Anything),
            D,
            D,
            D,
        ],
    ),
    proto(
        BPF_FUNC_RINGBUF_QUERY,
        "ringbuf_query",
        Ret::INTEGER,
        [a(ArgType::ConstMapPtr), a(ArgType::Anything), D, D, D],
    ),
    proto(
        BPF_FUNC_KTIME_GET_COARSE_NS,
        "ktime_get_coarse_ns",
        Ret::INTEGER,
        NO_ARGS,
    ),
    proto(
        BPF_FUNC_FOR_EACH_MAP_ELEM,
        "for_each_map_elem",
        Ret::INTEGER,
        [
            a(ArgType::ConstMapPtr),
            a(ArgType::PtrToFunc),
            af(ArgType::PtrToStack, TypeFlags::PTR_MAYBE_NULL),
            a(ArgType::Anything),
            D,
        ],
    ),
    HelperProto {
        gpl_only: true,
        ..proto(
            BPF_FUNC_SNPRINTF,
            "snprintf",
            Ret::INTEGER,
            [
                af(ArgType::PtrToMem, TypeFlags::PTR_MAYBE_NULL),
                a(ArgType::ConstSizeOrZero),
                a(ArgType::PtrToConstStr),
                af(
                    ArgType::PtrToMem,
                    TypeFlags::PTR_MAYBE_NULL.union(TypeFlags::MEM_RDONLY),
                ),
                a(ArgType::ConstSizeOrZero),
            ],
        )
    },
    proto(
        BPF_FUNC_LOOP,
        "loop",
        Ret::INTEGER,
        [
            a(ArgType::Scalar),
            a(ArgType::PtrToFunc),
            af(ArgType::PtrToStack, TypeFlags::PTR_MAYBE_NULL),
            a(ArgType::Anything),
            D,
        ],
    ),
    proto(
        BPF_FUNC_XDP_GET_BUFF_LEN,
        "xdp_get_buff_len",
        Ret::INTEGER,
        [a(ArgType::PtrToCtx), D, D, D, D],
    ),
    proto(
        BPF_FUNC_XDP_LOAD_BYTES,
        "xdp_load_bytes",
        Ret::INTEGER,
        [
            a(ArgType::PtrToCtx),
            a(ArgType::Anything),
            UNINIT_MEM,
            a(ArgType::ConstSize),
            D,
        ],
    ),
    proto(
        BPF_FUNC_XDP_STORE_BYTES,
        "xdp_store_bytes",
        Ret::INTEGER,
        [
            a(ArgType::PtrToCtx),
            a(ArgType::Anything),
            RDONLY_MEM,
            a(ArgType::ConstSize),
            D,
        ],
    ),
];

/// `BPF_FUNC_get_current_comm`.
pub const BPF_FUNC_GET_CURRENT_COMM: i32 = 16;
/// `BPF_FUNC_skb_load_bytes`.
pub const BPF_FUNC_SKB_LOAD_BYTES: i32 = 26;
/// `BPF_FUNC_redirect`.
pub const BPF_FUNC_REDIRECT: i32 = 23;
/// `BPF_FUNC_csum_diff`.
pub const BPF_FUNC_CSUM_DIFF: i32 = 28;
/// `BPF_FUNC_get_current_task`.
pub const BPF_FUNC_GET_CURRENT_TASK: i32 = 35;
/// `BPF_FUNC_copy_from_user`.
pub const BPF_FUNC_COPY_FROM_USER: i32 = 148;

/// Kernel helpers whose prototypes the verifier checks programs against, but which
/// this runtime does not implement: programs calling them verify as in the kernel, and
/// a run that reaches the call stops with `UnknownHelper`.
pub static KNOWN_HELPERS: &[HelperProto] = &[
    proto(
        BPF_FUNC_GET_CURRENT_COMM,
        "get_current_comm",
        Ret::INTEGER,
        [UNINIT_MEM, a(ArgType::ConstSize), D, D, D],
    ),
    proto(
        BPF_FUNC_SKB_LOAD_BYTES,
        "skb_load_bytes",
        Ret::INTEGER,
        [
            a(ArgType::PtrToCtx),
            a(ArgType::Anything),
            UNINIT_MEM,
            a(ArgType::ConstSize),
            D,
        ],
    ),
    HelperProto {
        pkt_access: true,
        ..proto(
            BPF_FUNC_CSUM_DIFF,
            "csum_diff",
            Ret::INTEGER,
            [
                af(
                    ArgType::PtrToMem,
                    TypeFlags::PTR_MAYBE_NULL.union(TypeFlags::MEM_RDONLY),
                ),
                a(ArgType::ConstSizeOrZero),
                af(
                    ArgType::PtrToMem,
                    TypeFlags::PTR_MAYBE_NULL.union(TypeFlags::MEM_RDONLY),
                ),
                a(ArgType::ConstSizeOrZero),
                a(ArgType::Anything),
            ],
        )
    },
    // `bpf_redirect_proto` (tc) and `bpf_xdp_redirect_proto` (XDP) have the same
    // signature: an ifindex and flags. There are no devices to redirect to here.
    proto(
        BPF_FUNC_REDIRECT,
        "redirect",
        Ret::INTEGER,
        [a(ArgType::Anything), a(ArgType::Anything), D, D, D],
    ),
    proto(
        BPF_FUNC_GET_CURRENT_TASK,
        "get_current_task",
        Ret::INTEGER,
        NO_ARGS,
    ),
    HelperProto {
        gpl_only: true,
        might_sleep: true,
        ..proto(
            BPF_FUNC_COPY_FROM_USER,
            "copy_from_user",
            Ret::INTEGER,
            [
                UNINIT_MEM,
                a(ArgType::ConstSizeOrZero),
                a(ArgType::Anything),
                D,
                D,
            ],
        )
    },
];

/// The prototype of built-in helper `id`, whatever the program type.
pub fn builtin(id: i32) -> Option<&'static HelperProto> {
    BUILTIN_HELPERS.iter().find(|p| p.id == id)
}

/// The prototype of a built-in or known (unimplemented) helper `id`.
fn any_proto(id: i32) -> Option<&'static HelperProto> {
    builtin(id).or_else(|| KNOWN_HELPERS.iter().find(|p| p.id == id))
}

/// Helpers of `bpf_base_func_proto` that need no capability.
const BASE_UNPRIV: &[i32] = &[
    BPF_FUNC_MAP_LOOKUP_ELEM,
    BPF_FUNC_MAP_UPDATE_ELEM,
    BPF_FUNC_MAP_DELETE_ELEM,
    BPF_FUNC_MAP_PUSH_ELEM,
    BPF_FUNC_MAP_POP_ELEM,
    BPF_FUNC_MAP_PEEK_ELEM,
    BPF_FUNC_GET_PRANDOM_U32,
    BPF_FUNC_GET_SMP_PROCESSOR_ID,
    BPF_FUNC_GET_NUMA_NODE_ID,
    BPF_FUNC_TAIL_CALL,
    BPF_FUNC_KTIME_GET_NS,
    BPF_FUNC_KTIME_GET_BOOT_NS,
    BPF_FUNC_RINGBUF_OUTPUT,
    BPF_FUNC_RINGBUF_RESERVE,
    BPF_FUNC_RINGBUF_SUBMIT,
    BPF_FUNC_RINGBUF_DISCARD,
    BPF_FUNC_RINGBUF_QUERY,
];

/// Helpers of `bpf_base_func_proto` that need `CAP_BPF`.
const BASE_BPF: &[i32] = &[
    BPF_FUNC_SPIN_LOCK,
    BPF_FUNC_SPIN_UNLOCK,
    BPF_FUNC_JIFFIES64,
    BPF_FUNC_FOR_EACH_MAP_ELEM,
    BPF_FUNC_LOOP,
];

/// Helpers of `bpf_base_func_proto` that need `CAP_PERFMON`.
const BASE_PERFMON: &[i32] = &[
    BPF_FUNC_TRACE_PRINTK,
    BPF_FUNC_GET_CURRENT_COMM,
    BPF_FUNC_PROBE_READ_KERNEL,
    BPF_FUNC_PROBE_READ_KERNEL_STR,
    BPF_FUNC_SNPRINTF,
    BPF_FUNC_KTIME_GET_COARSE_NS,
];

/// The socket lookups and their release (`bpf_sk_lookup_tcp` and friends), which XDP,
/// tc and cgroup skb programs may call. This runtime has no sockets: lookups find
/// nothing and return NULL, as the kernel's do when no socket matches the tuple.
const SOCK_LOOKUP: &[i32] = &[
    BPF_FUNC_SK_LOOKUP_TCP,
    BPF_FUNC_SK_LOOKUP_UDP,
    BPF_FUNC_SKC_LOOKUP_TCP,
    BPF_FUNC_SK_RELEASE,
];

/// `bpf_base_func_proto`: what every program type may call, gated by the loader's
/// capabilities as the kernel gates it (`CAP_BPF`, then `CAP_PERFMON`).
fn base_func_proto(id: i32, caps: Capabilities) -> bool {
    BASE_UNPRIV.contains(&id)
        || (caps.bpf() && BASE_BPF.contains(&id))
        || (caps.bpf() && caps.perfmon() && BASE_PERFMON.contains(&id))
}

/// May a program of `prog_type`, loaded with `caps`, call built-in helper `id`? Returns
/// the prototype if so (the kernel's `env->ops->get_func_proto(id, prog)` returning
/// non-NULL).
///
/// Program types this runtime does not run get the base set.
pub fn func_proto(
    prog_type: ProgType,
    id: i32,
    caps: Capabilities,
) -> Option<&'static HelperProto> {
    let p = any_proto(id)?;
    let allowed = match prog_type {
        ProgType::XDP => {
            matches!(
                id,
                BPF_FUNC_XDP_ADJUST_HEAD
                    | BPF_FUNC_XDP_ADJUST_META
                    | BPF_FUNC_XDP_ADJUST_TAIL
                    | BPF_FUNC_XDP_GET_BUFF_LEN
                    | BPF_FUNC_XDP_LOAD_BYTES
                    | BPF_FUNC_XDP_STORE_BYTES
                    | BPF_FUNC_GET_SMP_PROCESSOR_ID
                    | BPF_FUNC_CSUM_DIFF
                    | BPF_FUNC_REDIRECT
            ) || SOCK_LOOKUP.contains(&id)
                || base_func_proto(id, caps)
        }
        ProgType::SOCKET_FILTER => {
            // `sk_filter_func_proto` falls back to `bpf_sk_base_func_proto`, which is
            // the base set here.
            id == BPF_FUNC_SKB_LOAD_BYTES || base_func_proto(id, caps)
        }
        ProgType::CGROUP_SKB => {
            // `cg_skb_func_proto`: the socket helpers, then `sk_filter_func_proto`.
            matches!(
                id,
                BPF_FUNC_SKB_LOAD_BYTES
                    | BPF_FUNC_SK_FULLSOCK
                    | BPF_FUNC_TCP_SOCK
                    | BPF_FUNC_GET_LISTENER_SOCK
            ) || SOCK_LOOKUP.contains(&id)
                || base_func_proto(id, caps)
        }
        ProgType::SCHED_CLS | ProgType::SCHED_ACT => {
            matches!(
                id,
                BPF_FUNC_SKB_LOAD_BYTES
                    | BPF_FUNC_CSUM_DIFF
                    | BPF_FUNC_REDIRECT
                    | BPF_FUNC_SK_FULLSOCK
                    | BPF_FUNC_TCP_SOCK
                    | BPF_FUNC_GET_LISTENER_SOCK
            ) || SOCK_LOOKUP.contains(&id)
                || base_func_proto(id, caps)
        }
        ProgType::KPROBE
        | ProgType::TRACEPOINT
        | ProgType::PERF_EVENT
        | ProgType::RAW_TRACEPOINT => {
            // `bpf_tracing_func_proto`.
            matches!(
                id,
                BPF_FUNC_GET_CURRENT_TASK | BPF_FUNC_COPY_FROM_USER | BPF_FUNC_GET_CURRENT_COMM
            ) || base_func_proto(id, caps)
        }
        // Socket storage needs a socket, which only struct_ops hosts hand programs
        // (`bpf_tcp_ca_get_func_proto`); the ops type's own filter
        // (`StructOps::helper_allowed`) decides per member before this is asked.
        ProgType::STRUCT_OPS
            if matches!(id, BPF_FUNC_SK_STORAGE_GET | BPF_FUNC_SK_STORAGE_DELETE) =>
        {
            true
        }
        _ => {
            !matches!(
                id,
                BPF_FUNC_SK_STORAGE_GET
                    | BPF_FUNC_SK_STORAGE_DELETE
                    | BPF_FUNC_SKB_LOAD_BYTES
                    | BPF_FUNC_CSUM_DIFF
                    | BPF_FUNC_REDIRECT
                    | BPF_FUNC_GET_CURRENT_TASK
                    | BPF_FUNC_COPY_FROM_USER
                    | BPF_FUNC_XDP_ADJUST_HEAD
                    | BPF_FUNC_XDP_ADJUST_META
                    | BPF_FUNC_XDP_ADJUST_TAIL
                    | BPF_FUNC_XDP_GET_BUFF_LEN
                    | BPF_FUNC_XDP_LOAD_BYTES
                    | BPF_FUNC_XDP_STORE_BYTES
            ) && base_func_proto(id, caps)
        }
    };
    allowed.then_some(p)
}

/// The implementation of a host helper or kfunc: called with the five argument
/// registers and the running program ([`Caller`]: check, read and write its memory,
/// grant it regions). Returns the new `r0`, or an error that ends the run.
///
/// In checked runs the implementation must validate every pointer argument through the
/// [`Caller`] before using it; in unchecked runs (verified programs only) the prototype's
/// guarantees hold.
pub type HostFn = Arc<dyn Fn(&mut Caller<'_>, [u64; 5]) -> Result<u64, VmError> + Send + Sync>;

/// A helper the host registers with [`crate::Runtime::register_helper`].
#[derive(Clone)]
pub struct HostHelper {
    /// Its prototype (`id` must not be a built-in helper's).
    pub proto: HelperProto,
    /// Program types that may call it; empty means every type.
    pub prog_types: Vec<ProgType>,
    /// The implementation.
    pub func: HostFn,
}

impl fmt::Debug for HostHelper {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HostHelper")
            .field("proto", &self.proto)
            .field("prog_types", &self.prog_types)
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_match_the_kernel_names() {
        for p in BUILTIN_HELPERS {
            assert_eq!(
                structops_isa::helper_name(p.id).and_then(|n| n.strip_prefix("bpf_")),
                Some(p.name),
                "helper #{}",
                p.id
            );
        }
        let mut ids: Vec<i32> = BUILTIN_HELPERS.iter().map(|p| p.id).collect();
        let n = ids.len();
        ids.sort_unstable();
        ids.dedup();
        assert_eq!(ids.len(), n, "no duplicate ids");
    }

    #[test]
    fn capability_gates_follow_bpf_base_func_proto() {
        let none = Capabilities::NONE;
        let bpf = Capabilities::BPF;
        let all = Capabilities::ALL;
        let sf = ProgType::SOCKET_FILTER;
        assert!(func_proto(sf, BPF_FUNC_MAP_LOOKUP_ELEM, none).is_some());
        assert!(func_proto(sf, BPF_FUNC_LOOP, none).is_none());
        assert!(func_proto(sf, BPF_FUNC_LOOP, bpf).is_some());
        assert!(func_proto(sf, BPF_FUNC_TRACE_PRINTK, bpf).is_none());
        assert!(func_proto(sf, BPF_FUNC_TRACE_PRINTK, bpf | Capabilities::PERFMON).is_some());
        assert!(func_proto(sf, BPF_FUNC_XDP_ADJUST_HEAD, all).is_none());
        assert!(func_proto(ProgType::XDP, BPF_FUNC_XDP_ADJUST_HEAD, none).is_some());
        assert!(func_proto(ProgType::STRUCT_OPS, 9999, all).is_none());
        let lookup = builtin(BPF_FUNC_MAP_LOOKUP_ELEM).unwrap();
        assert_eq!(lookup.args[0].ty, ArgType::ConstMapPtr);
        assert!(lookup.ret.flags.contains(TypeFlags::PTR_MAYBE_NULL));
        let submit = builtin(BPF_FUNC_RINGBUF_SUBMIT).unwrap();
        assert!(submit.args[0].flags.contains(TypeFlags::OBJ_RELEASE));
        assert_eq!(
            format!(
                "{:?}",
                builtin(BPF_FUNC_PROBE_READ_KERNEL).unwrap().args[0].flags
            ),
            "{MEM_UNINIT, MEM_WRITE}"
        );
    }
}
