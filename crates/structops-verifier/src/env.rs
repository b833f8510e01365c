//! What the runtime tells the verifier: the [`VerifierEnv`] trait and the
//! facts it hands out (maps, context fields, helper prototypes).
//!
//! The verifier never depends on the runtime; every fact about the world
//! outside the instructions (the kernel's `bpf_prog_ops`/`bpf_verifier_ops`,
//! `bpf_map`, `get_func_proto`, `is_valid_access`) comes in through here.

use structops_btf::Btf;
use structops_isa::Insn;

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

/// `map->ops->map_btf_id`: the name of the kernel struct behind a map of
/// `BPF_MAP_TYPE_*` `map_type` (what a program reads through a map pointer,
/// `check_ptr_to_map_access`), or `None` for types the kernel gives none.
pub fn map_btf_struct_name(map_type: u32) -> Option<&'static str> {
    Some(match map_type {
        1 | 5 | 9 | 10 | 13 => "bpf_htab",
        2 | 3 | 4 | 6 | 8 | 12 => "bpf_array",
        7 => "bpf_stack_map",
        11 => "lpm_trie",
        14 | 25 => "bpf_dtab",
        15 => "bpf_stab",
        16 => "bpf_cpu_map",
        17 => "xsk_map",
        18 => "bpf_shtab",
        19 | 21 => "bpf_cgroup_storage_map",
        20 => "reuseport_array",
        22 | 23 => "bpf_queue_stack",
        24 | 28 | 29 | 32 => "bpf_local_storage_map",
        26 => "bpf_struct_ops_map",
        27 | 31 => "bpf_ringbuf_map",
        30 => "bpf_bloom_filter",
        33 => "bpf_arena",
        _ => return None,
    })
}

/// A load through a map pointer (`CONST_PTR_TO_MAP`) the verifier accepted:
/// the program reads the kernel's `struct bpf_map` (inside the map type's
/// struct, [`map_btf_struct_name`]) of a map known at load time. A runtime
/// whose maps are not kernel structs must give such loads the values the
/// kernel's struct would hold.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MapPtrLoad {
    /// The load instruction.
    pub pc: usize,
    /// Byte offset read in the map's struct.
    pub off: i32,
    /// Bytes read.
    pub size: u32,
    /// The maps the pointer was to, over every path reaching the load: the
    /// `LD_IMM64` reference, or `None` for an inner map (a map-of-maps
    /// lookup result, not known until the program runs).
    pub maps: Vec<Option<MapRef>>,
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
    /// A socket pointer (`PTR_TO_SOCKET`, `PTR_TO_SOCK_COMMON`, ...), e.g.
    /// `__sk_buff->sk` as `PTR_TO_SOCK_COMMON_OR_NULL`.
    Sock {
        /// Which socket view.
        kind: SockPtr,
        /// May be NULL (`PTR_MAYBE_NULL`): the program must check it first.
        maybe_null: bool,
    },
}

/// The socket pointer types (`PTR_TO_SOCKET` and friends): which uapi view of
/// a kernel socket loads through the pointer see.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum SockPtr {
    /// `PTR_TO_SOCKET`: a full socket, all of `struct bpf_sock`.
    Socket,
    /// `PTR_TO_SOCK_COMMON`: `struct bpf_sock` without the full-socket fields
    /// (`type` to `priority`).
    SockCommon,
    /// `PTR_TO_TCP_SOCK`: `struct bpf_tcp_sock`.
    TcpSock,
    /// `PTR_TO_XDP_SOCK`: `struct bpf_xdp_sock`.
    XdpSock,
}

/// A context access the verifier allowed at one instruction: what
/// `is_valid_access` was asked and answered (the kernel keeps the same in
/// `bpf_insn_aux_data`: `ctx_field_size`, `ptr_type`), handed to
/// [`VerifierEnv::convert_ctx_access`] after verification.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CtxAccess {
    /// Byte offset in the context (the instruction's `off`: a context
    /// pointer never carries an offset of its own).
    pub off: i32,
    /// Access size in bytes.
    pub size: u32,
    /// A store (`true`) or a load.
    pub write: bool,
    /// What the load produces.
    pub field: CtxField,
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

    /// The inner-map template of the map of maps `map` refers to (the
    /// kernel's `map->inner_map_meta`): what a non-NULL lookup result in it
    /// points to (`CONST_PTR_TO_MAP`). `None` for other maps.
    fn inner_map(&self, map: MapRef) -> Option<MapInfo> {
        let _ = map;
        None
    }

    /// The prototype of helper `id` for this program, or `None` if this
    /// program may not call it (the kernel's `get_func_proto`).
    fn helper(&self, id: i32) -> Option<HelperProto>;

    /// Context access at `off` of `size` bytes (`is_valid_access`): `None`
    /// when not allowed, otherwise what a load produces.
    fn ctx_access(&self, off: i32, size: u32, write: bool) -> Option<CtxField>;

    /// `convert_ctx_access`: the instructions that replace the verified
    /// context access `insn` (a load or store through the context pointer)
    /// in the program that runs, or `None` to keep it as it is. Called once
    /// per context-accessing instruction after verification succeeded; the
    /// verifier splices the replacement in and moves jumps, calls,
    /// subprogram starts and instruction indices accordingly (see
    /// [`crate::Rewrite`]). The replacement must not jump out of itself.
    /// An empty replacement fails the load ("bpf verifier is
    /// misconfigured"), as a kernel `convert_ctx_access` returning 0 does.
    fn convert_ctx_access(&self, access: &CtxAccess, insn: Insn) -> Option<Vec<Insn>> {
        let _ = (access, insn);
        None
    }

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

    /// The host BTF (the kernel's `btf_vmlinux`): what `PTR_TO_BTF_ID`
    /// registers, struct_ops members and kfuncs are typed in. `None`: the
    /// host has no BTF, so typed pointers cannot be followed at all.
    fn host_btf(&self) -> Option<&Btf> {
        None
    }

    /// The registered struct_ops type whose host BTF struct id is
    /// `btf_id` (`bpf_struct_ops_find`), with its verifier hooks.
    fn struct_ops_type(&self, btf_id: u32) -> Option<&dyn StructOpsType> {
        let _ = btf_id;
        None
    }

    /// The kfunc with host BTF `FUNC` id `btf_id`, if this program may call
    /// it (`btf_kfunc_id_set_contains` for the program's type and ops).
    fn kfunc(&self, btf_id: u32) -> Option<KfuncDesc> {
        let _ = btf_id;
        None
    }

    /// The struct a helper's `ARG_PTR_TO_BTF_ID` argument `arg` (0-based)
    /// must point to (`arg_btf_id` of `bpf_func_proto`); `None` accepts any
    /// `PTR_TO_BTF_ID`.
    fn helper_arg_btf_id(&self, helper: i32, arg: usize) -> Option<u32> {
        let _ = (helper, arg);
        None
    }

    /// Whether pointer member `field` of the host struct `btf_id` keeps the
    /// trust of the pointer it was read through (the kernel's
    /// `BTF_TYPE_SAFE_TRUSTED` / `BTF_TYPE_SAFE_RCU` lists).
    fn field_trust(&self, btf_id: u32, field: &str) -> FieldTrust {
        let _ = (btf_id, field);
        FieldTrust::None
    }
}

/// How a pointer read from a trusted struct is typed (`type_is_trusted`,
/// `type_is_rcu`, ... of `check_ptr_to_btf_access`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum FieldTrust {
    /// Not listed: an RCU-less walk (untrusted, or plain in an RCU section).
    #[default]
    None,
    /// `BTF_TYPE_SAFE_TRUSTED`: stays `PTR_TRUSTED`.
    Trusted,
    /// `BTF_TYPE_SAFE_TRUSTED_OR_NULL`: `PTR_TRUSTED | PTR_MAYBE_NULL`.
    TrustedOrNull,
    /// `BTF_TYPE_SAFE_RCU`: `MEM_RCU` inside an RCU section.
    Rcu,
    /// `BTF_TYPE_SAFE_RCU_OR_NULL`: `MEM_RCU | PTR_MAYBE_NULL`.
    RcuOrNull,
}

/// A refusal by an ops type's hook: the errno and the log line.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HookError {
    /// The errno (`EACCES`, `EINVAL`, `ENOTSUPP`, ...).
    pub errno: i32,
    /// The message the kernel logs (empty for hooks that log nothing).
    pub message: String,
}

impl HookError {
    /// `EACCES` with `message`.
    pub fn eacces(message: impl Into<String>) -> HookError {
        HookError {
            errno: crate::error::EACCES,
            message: message.into(),
        }
    }
}

/// A struct_ops type as the verifier sees it: the kernel's
/// `struct bpf_struct_ops` plus its `bpf_verifier_ops`.
pub trait StructOpsType {
    /// Its name (`st_ops->name`, the host BTF struct's name).
    fn name(&self) -> &str;

    /// Whether the member at byte offset `moff` has an implementation the
    /// host can call (`bpf_struct_ops_supported`: a `cfi_stubs` entry).
    fn member_supported(&self, moff: u32) -> bool {
        let _ = moff;
        true
    }

    /// `check_member`: may this program implement member `member_idx` (at
    /// byte offset `moff`)? An errno refuses ("attach to unsupported member").
    fn check_member(&self, member_idx: u32, moff: u32, sleepable: bool) -> Result<(), i32> {
        let _ = (member_idx, moff, sleepable);
        Ok(())
    }

    /// The `btf_struct_access` hook for writes through a `PTR_TO_BTF_ID` of
    /// struct `btf_id` at `off`, `size` bytes. `None`: the type has no hook,
    /// so every write is refused with "only read is supported".
    fn struct_write(
        &self,
        btf: &Btf,
        btf_id: u32,
        off: i32,
        size: u32,
    ) -> Option<Result<(), HookError>> {
        let _ = (btf, btf_id, off, size);
        None
    }

    /// The helper `id` for a program implementing member `member_idx`
    /// (`get_func_proto` of the type's verifier ops), `None` if unavailable.
    fn helper(&self, id: i32, member_idx: u32) -> Option<HelperProto>;

    /// Whether argument `arg` of member `member_idx` is `__nullable` (may be
    /// NULL, so programs must check it) or `__ref` (a reference the program
    /// owns), as the host declared it: `(nullable, refcounted)`. Adds to what
    /// the stub function `<ops>__<member>` in the host BTF says.
    fn arg_marks(&self, member_idx: u32, arg: u32) -> (bool, bool) {
        let _ = (member_idx, arg);
        (false, false)
    }

    /// `is_valid_access` retyping of a context argument: the struct id a
    /// pointer argument of struct `btf_id` is seen as (tcp_congestion_ops
    /// promotes `sock` to `tcp_sock`).
    fn ctx_arg_btf_id(&self, btf_id: u32) -> u32 {
        btf_id
    }
}

/// `KF_*` flags of a kfunc (`BTF_ID_FLAGS`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub struct KfuncFlags(u32);

impl KfuncFlags {
    /// No flags.
    pub const NONE: KfuncFlags = KfuncFlags(0);
    /// `KF_ACQUIRE`: returns a reference the program must release.
    pub const ACQUIRE: KfuncFlags = KfuncFlags(1 << 0);
    /// `KF_RELEASE`: releases the reference it is passed.
    pub const RELEASE: KfuncFlags = KfuncFlags(1 << 1);
    /// `KF_RET_NULL`: the returned pointer may be NULL.
    pub const RET_NULL: KfuncFlags = KfuncFlags(1 << 2);
    /// `KF_TRUSTED_ARGS`: pointer arguments must be trusted and non-NULL.
    pub const TRUSTED_ARGS: KfuncFlags = KfuncFlags(1 << 4);
    /// `KF_SLEEPABLE`: only sleepable programs may call it.
    pub const SLEEPABLE: KfuncFlags = KfuncFlags(1 << 5);
    /// `KF_DESTRUCTIVE`: needs `CAP_SYS_BOOT`.
    pub const DESTRUCTIVE: KfuncFlags = KfuncFlags(1 << 6);
    /// `KF_RCU`: pointer arguments may also be RCU pointers.
    pub const RCU: KfuncFlags = KfuncFlags(1 << 7);
    /// `KF_ITER_NEW`: constructs an open-coded iterator in the stack slot
    /// its first argument points to.
    pub const ITER_NEW: KfuncFlags = KfuncFlags(1 << 8);
    /// `KF_ITER_NEXT`: advances the iterator its first argument points to.
    pub const ITER_NEXT: KfuncFlags = KfuncFlags(1 << 9);
    /// `KF_ITER_DESTROY`: destroys the iterator its first argument points to.
    pub const ITER_DESTROY: KfuncFlags = KfuncFlags(1 << 10);
    /// `KF_RCU_PROTECTED`: the returned pointer is `MEM_RCU`.
    pub const RCU_PROTECTED: KfuncFlags = KfuncFlags(1 << 11);

    /// Whether every flag of `o` is set.
    pub const fn has(self, o: KfuncFlags) -> bool {
        self.0 & o.0 == o.0 && o.0 != 0
    }

    /// The union.
    pub const fn with(self, o: KfuncFlags) -> KfuncFlags {
        KfuncFlags(self.0 | o.0)
    }

    /// The raw bits (the kernel's values).
    pub const fn bits(self) -> u32 {
        self.0
    }
}

/// A kfunc the program may call: its host BTF function and flags.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KfuncDesc {
    /// Its name.
    pub name: String,
    /// The `FUNC` type id in the host BTF (the call's `imm`).
    pub btf_id: u32,
    /// Its flags.
    pub flags: KfuncFlags,
}

/// Which struct_ops member a program implements: `attach_btf_id` and
/// `expected_attach_type` of `BPF_PROG_LOAD`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct StructOpsAttach {
    /// Host BTF id of the ops struct (`attach_btf_id`); 0 means none given.
    pub btf_id: u32,
    /// Member index (`expected_attach_type`).
    pub member_idx: u32,
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
    /// A `BPF_PROG_TYPE_STRUCT_OPS` program: the member it implements. The
    /// context, helpers, writable fields and return rule then come from the
    /// ops type ([`VerifierEnv::struct_ops_type`]), as `check_struct_ops_btf_id`
    /// sets them up.
    pub struct_ops: Option<StructOpsAttach>,
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
