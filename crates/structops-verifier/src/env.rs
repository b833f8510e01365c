//! What the runtime tells the verifier: the [`VerifierEnv`] trait and the
//! facts it hands out (maps, context fields, helper prototypes).
//!
//! The verifier never depends on the runtime; every fact about the world
//! outside the instructions (the kernel's `bpf_prog_ops`/`bpf_verifier_ops`,
//! `bpf_map`, `get_func_proto`, `is_valid_access`) comes in through here.

use crate::proto::HelperProto;

/// How a `LD_IMM64` names a map (its pseudo source).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum MapRef {
    /// `BPF_PSEUDO_MAP_FD` / `BPF_PSEUDO_MAP_VALUE`: a map fd.
    Fd(i32),
    /// `BPF_PSEUDO_MAP_IDX` / `BPF_PSEUDO_MAP_IDX_VALUE`: index into `fd_array`.
    Idx(u32),
}

/// A map as the verifier sees it (the fields of `struct bpf_map` it reads).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MapInfo {
    /// The map's `BPF_MAP_TYPE_*` number.
    pub map_type: u32,
    /// `key_size`.
    pub key_size: u32,
    /// `value_size`.
    pub value_size: u32,
    /// `max_entries`.
    pub max_entries: u32,
    /// `map_flags`.
    pub flags: u32,
    /// `BPF_F_RDONLY_PROG`: programs may not write its values.
    pub rdonly_prog: bool,
    /// `BPF_F_WRONLY_PROG`: programs may not read its values.
    pub wronly_prog: bool,
    /// Frozen with read-only program access: constant values (`bpf_map_is_rdonly`),
    /// so loads from it become known scalars. The bytes of the single value.
    pub frozen_value: Option<Vec<u8>>,
    /// The map's name (printed in level-2 logs as `map=NAME`).
    pub name: String,
    /// Whether `BPF_PSEUDO_MAP_VALUE` (direct value address) is allowed:
    /// the kernel's `map_direct_value_addr` (arrays with one entry).
    pub direct_value: bool,
}

/// `BPF_MAP_TYPE_RINGBUF`.
pub const MAP_TYPE_RINGBUF: u32 = 27;
/// `BPF_MAP_TYPE_PROG_ARRAY`.
pub const MAP_TYPE_PROG_ARRAY: u32 = 3;

/// What a context field load produces (`bpf_insn_access_aux.reg_type`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CtxField {
    /// An unknown scalar.
    Scalar,
    /// `PTR_TO_PACKET` (`data`).
    PacketData,
    /// `PTR_TO_PACKET_END` (`data_end`).
    PacketEnd,
    /// `PTR_TO_PACKET_META` (`data_meta`).
    PacketMeta,
    /// `PTR_TO_BTF_ID` of this type id in the host BTF.
    BtfId {
        /// Type id of the pointee.
        btf_id: u32,
        /// May be NULL (`PTR_MAYBE_NULL`, the `__nullable` struct_ops args).
        maybe_null: bool,
        /// Trusted (`PTR_TRUSTED`): struct_ops and tracing arguments.
        trusted: bool,
    },
}

/// Whether direct packet access is allowed and how (`may_access_direct_pkt_data`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PacketAccess {
    /// No packet pointers in this program type.
    None,
    /// Read only (socket filters, cgroup skb).
    Read,
    /// Read and write (XDP, tc).
    ReadWrite,
}

/// What the main program's `exit` must leave in `r0` (`check_return_code`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ReturnRule {
    /// Anything the kernel allows for the type: no check beyond `R0 !read_ok`
    /// and `R0 leaks addr` for unprivileged programs.
    Any,
    /// A `void` struct_ops member: `r0` is not looked at.
    Void,
    /// A scalar in `min..=max` ("At program exit the register R0 has ...").
    Range {
        /// Smallest allowed value.
        min: i32,
        /// Largest allowed value.
        max: i32,
    },
}

/// The runtime's side of verification.
pub trait VerifierEnv {
    /// The map a `LD_IMM64` names, or `None` if there is no such map
    /// (the kernel answers `EBADF` for an fd it cannot resolve).
    fn map(&self, map: MapRef) -> Option<MapInfo>;

    /// The prototype of helper `id` for this program, or `None` if this
    /// program may not call it (the kernel's `get_func_proto`).
    fn helper(&self, id: i32) -> Option<HelperProto>;

    /// Context access at `off` of `size` bytes (`is_valid_access`): `None`
    /// when not allowed, otherwise what a load produces.
    fn ctx_access(&self, off: i32, size: u32, write: bool) -> Option<CtxField>;

    /// Direct packet access of this program type.
    fn packet_access(&self) -> PacketAccess {
        PacketAccess::None
    }

    /// Whether `LD_ABS`/`LD_IND` are allowed (`may_access_skb`: socket filters and
    /// tc programs).
    fn may_access_skb(&self) -> bool {
        false
    }

    /// What `r0` must hold at the main program's exit.
    fn return_rule(&self) -> ReturnRule {
        ReturnRule::Any
    }

    /// Name printed for a helper in logs (`call NAME#id`); defaults to the
    /// kernel's name for the id.
    fn helper_name(&self, id: i32) -> Option<String> {
        structops_isa::helper_name(id).map(str::to_owned)
    }
}

/// Who loads the program: the capability-derived switches of `bpf_check`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Privileges {
    /// `CAP_BPF`: bounded loops, bpf-to-bpf calls, precision tracking.
    pub bpf_capable: bool,
    /// `CAP_PERFMON` (`allow_ptr_leaks`): pointers may be leaked into maps,
    /// returned, compared and partially copied.
    pub allow_ptr_leaks: bool,
    /// `CAP_PERFMON` (`allow_uninit_stack`): uninitialized stack may be read.
    pub allow_uninit_stack: bool,
}

impl Privileges {
    /// Root: `CAP_BPF`, `CAP_PERFMON` and `CAP_SYS_ADMIN`, as struct_ops loads need.
    pub const ROOT: Privileges = Privileges {
        bpf_capable: true,
        allow_ptr_leaks: true,
        allow_uninit_stack: true,
    };

    /// `CAP_BPF` without `CAP_PERFMON`: loops and calls, but no pointer
    /// leaks and no uninitialized stack reads.
    pub const BPF_ONLY: Privileges = Privileges {
        bpf_capable: true,
        allow_ptr_leaks: false,
        allow_uninit_stack: false,
    };
}

impl Default for Privileges {
    fn default() -> Self {
        Privileges::ROOT
    }
}

/// Per-load attributes the verifier needs besides the instructions.
#[derive(Clone, Debug, Default)]
pub struct ProgInfo {
    /// The license is GPL-compatible (`gpl_only` helpers allowed).
    pub gpl_compatible: bool,
    /// `BPF_F_SLEEPABLE`.
    pub sleepable: bool,
    /// Capability switches.
    pub privileges: Privileges,
    /// Subprogram start instructions from BTF `func_info` (besides 0); the
    /// kernel checks they agree with the call targets.
    pub func_info: Vec<u32>,
}

/// Log options (`log_level` of `BPF_PROG_LOAD`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct LogOptions {
    /// 0: no log, 1: instructions of each path and the error, 2: also the
    /// register state at each branch and after each instruction.
    pub level: u32,
    /// `BPF_LOG_STATS` (4): the stats line even at level 0.
    pub stats: bool,
}
