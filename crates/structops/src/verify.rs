//! The runtime's side of verification: what `structops-verifier` asks about the world
//! outside a program's instructions, answered from a loaded [`ProgBody`].
//!
//! [`ProgEnv`] implements [`VerifierEnv`] the way the kernel's `bpf_verifier_ops` of
//! each program type do:
//!
//! - **maps**: the maps `prog_load` resolved for the program's `LD_IMM64` references
//!   (`BPF_PSEUDO_MAP_FD`/`_VALUE` by descriptor, `_IDX`/`_IDX_VALUE` by `fd_array`
//!   index), with their type, sizes, flags, and the constant contents of frozen
//!   read-only arrays (`bpf_map_is_rdonly`);
//! - **helpers**: [`crate::helpers::func_proto`] for built-in helpers (the per-type
//!   `get_func_proto` tables with their capability gates), then the host helpers the
//!   embedder registered for the program type;
//! - **context**: `is_valid_access` of each type — `xdp_md` for XDP
//!   (`xdp_is_valid_access`), `__sk_buff` for socket filters
//!   (`sk_filter_is_valid_access`), tc (`tc_cls_act_is_valid_access`) and cgroup skb
//!   (`cg_skb_is_valid_access`), `pt_regs` for kprobes, the tracepoint and raw
//!   tracepoint buffers, `bpf_perf_event_data`, syscall programs' argument buffer,
//!   and the member's arguments for struct_ops (`btf_ctx_access`, simplified: pointers
//!   to structs become trusted `PTR_TO_BTF_ID`);
//! - **packets**: `may_access_direct_pkt_data`; **`LD_ABS`**: `may_access_skb`;
//! - **return values**: `check_return_code`;
//! - **host BTF**: the runtime's registered vmlinux ([`Runtime::register_host_btf`]),
//!   what `PTR_TO_BTF_ID` registers, struct_ops arguments and kfunc prototypes are
//!   typed in;
//! - **kfuncs**: the runtime's kfunc registry ([`Runtime::register_kfunc`]), those the
//!   program's type may call, with their `KF_*` flags. Every registered kfunc is
//!   described to the verifier as `KF_TRUSTED_ARGS`: since Linux 6.18 the kernel
//!   treats kfunc pointer arguments as trusted by default (the flag no longer exists
//!   there), so a registered kfunc's pointer arguments must be trusted, non-NULL
//!   pointers, as the verifier's own vmlinux test setup also assumes;
//! - **struct_ops types**: the registered ops type a program's `attach_btf_id` names
//!   ([`ProgEnv::struct_ops_type`], through [`crate::struct_ops::VerifierOps`]): its
//!   members, `check_member`, helpers (`get_func_proto`, with the host helpers
//!   registered for struct_ops programs and the type's `arg_btf_id`s), context
//!   retyping and writable fields; [`struct_ops_attach`] tells the verifier which
//!   member a program implements;
//! - **map pointers**: loads through `CONST_PTR_TO_MAP` that the verifier accepts read
//!   the kernel's `struct bpf_map`; [`rewrite_map_ptr_loads`] gives them the values a
//!   kernel-layout image of the map holds.
//!
//! The context layouts are the ones test runs build ([`crate::ctx`]): the uapi structs
//! themselves, so every access `is_valid_access` allows lands inside them, followed by
//! the runtime's 64-bit packet pointers, which the loads of the uapi's 32-bit `data`,
//! `data_end` and `data_meta` are rewritten to after verification
//! ([`VerifierEnv::convert_ctx_access`], the kernel's `convert_ctx_accesses`).

use std::collections::HashMap;
use std::sync::Arc;

use structops_btf::ext::FuncInfo;
use structops_btf::{Btf, TypeKind};
use structops_isa::{Imm64, Insn, Op, Program};
use structops_verifier::{
    CtxAccess, CtxField, KfuncDesc, KfuncFlags as VKfuncFlags, LogOptions, MapInfo,
    MapRef as VMapRef, PacketAccess, Privileges, ReturnRule, SockPtr, StructOpsAttach,
    StructOpsType, VerifierEnv, VerifyError,
};

use crate::caps::Capabilities;
use crate::ctx::{SK_BUFF_SIZE, SkBuff, XDP_MD_SIZE, XdpBuff};
use crate::errno::Errno;
use crate::helpers::{self, HelperProto};
use crate::kfunc::{Kfunc, KfuncFlags};
use crate::maps::{Map, MapType};
use crate::prog::{AttachType, MapRef, ProgType};
use crate::runtime::Runtime;

/// `BPF_F_RDONLY_PROG`.
const BPF_F_RDONLY_PROG: u32 = 1 << 7;
/// `BPF_F_WRONLY_PROG`.
const BPF_F_WRONLY_PROG: u32 = 1 << 8;
/// `BPF_LDX | BPF_MEM | BPF_W`.
const LDX_MEM_W: u8 = 0x61;
/// `BPF_LDX | BPF_MEM | BPF_DW`.
const LDX_MEM_DW: u8 = 0x79;
/// `sizeof(struct pt_regs)` on x86-64.
const PT_REGS_SIZE: i32 = 168;
/// `sizeof(struct bpf_perf_event_data)` on x86-64: `pt_regs`, `sample_period`, `addr`.
const PERF_EVENT_DATA_SIZE: i32 = PT_REGS_SIZE + 16;
/// `PERF_MAX_TRACE_SIZE`.
const PERF_MAX_TRACE_SIZE: i32 = 2048;
/// `MAX_BPF_FUNC_ARGS`.
const MAX_BPF_FUNC_ARGS: i32 = 12;

/// Offsets in `struct __sk_buff`.
mod skb {
    pub const MARK: i32 = 8;
    pub const QUEUE_MAPPING: i32 = 12;
    pub const PRIORITY: i32 = 32;
    pub const TC_INDEX: i32 = 44;
    pub const CB: i32 = 48;
    pub const CB_END: i32 = 68;
    pub const TC_CLASSID: i32 = 72;
    pub const DATA: i32 = 76;
    pub const DATA_END: i32 = 80;
    pub const FAMILY: i32 = 88;
    pub const REMOTE_IP4: i32 = 92;
    pub const LOCAL_IP4: i32 = 96;
    pub const REMOTE_IP6: i32 = 100;
    pub const LOCAL_IP6: i32 = 116;
    pub const LOCAL_PORT_END: i32 = 140;
    pub const DATA_META: i32 = 140;
    pub const FLOW_KEYS: i32 = 144;
    pub const TSTAMP: i32 = 152;
    pub const WIRE_LEN: i32 = 160;
    pub const SK: i32 = 168;
    pub const TSTAMP_TYPE: i32 = 180;
    pub const HWTSTAMP: i32 = 184;
}

/// Is `off` inside the 4-byte field at `field` (`bpf_ctx_range`)?
fn in_u32(off: i32, field: i32) -> bool {
    (field..field + 4).contains(&off)
}

/// Is `off` inside the 8-byte field at `field` (`bpf_ctx_range` of a `__u64` or
/// `bpf_ctx_range_ptr`)?
fn in_u64(off: i32, field: i32) -> bool {
    (field..field + 8).contains(&off)
}

/// `bpf_ctx_narrow_access_ok`.
fn narrow_ok(size: u32, size_default: u32) -> bool {
    size <= size_default && size.is_power_of_two()
}

/// `bpf_skb_is_valid_access`: the rules every `__sk_buff` type shares. `Some(field)`
/// when allowed.
fn skb_valid(off: i32, size: u32, write: bool, field: CtxField) -> Option<CtxField> {
    let s = size as i32;
    if off < 0 || off >= SK_BUFF_SIZE as i32 || s == 0 || off % s != 0 {
        return None;
    }
    let ok = if (skb::CB..skb::CB_END).contains(&off) {
        off + s <= skb::CB_END
    } else if in_u32(off, skb::DATA)
        || in_u32(off, skb::DATA_META)
        || in_u32(off, skb::DATA_END)
        || (skb::REMOTE_IP6..skb::LOCAL_IP6 + 16).contains(&off)
        || in_u32(off, skb::REMOTE_IP4)
        || in_u32(off, skb::LOCAL_IP4)
    {
        // Packet pointers and addresses: whole fields only.
        size == 4
    } else if in_u64(off, skb::FLOW_KEYS) {
        false
    } else if in_u64(off, skb::HWTSTAMP) {
        !write && size == 8
    } else if in_u64(off, skb::TSTAMP) {
        size == 8
    } else if in_u64(off, skb::SK) {
        // `PTR_TO_SOCK_COMMON_OR_NULL`: the socket the packet belongs to (a test run's
        // skb has the kernel's dummy socket, see `crate::test_run`).
        return (!write && size == 8).then_some(CtxField::Sock {
            kind: SockPtr::SockCommon,
            maybe_null: true,
        });
    } else if (skb::TSTAMP_TYPE..skb::HWTSTAMP).contains(&off) {
        false
    } else if write {
        size == 4
    } else {
        narrow_ok(size, 4)
    };
    ok.then_some(field)
}

/// The packet pointer a `__sk_buff` field loads, if it is one.
fn skb_packet_field(off: i32, meta: bool) -> CtxField {
    if in_u32(off, skb::DATA) {
        CtxField::PacketData
    } else if in_u32(off, skb::DATA_END) {
        CtxField::PacketEnd
    } else if meta && in_u32(off, skb::DATA_META) {
        CtxField::PacketMeta
    } else {
        CtxField::Scalar
    }
}

/// `sk_filter_is_valid_access`.
fn sk_filter_access(off: i32, size: u32, write: bool) -> Option<CtxField> {
    let denied = in_u32(off, skb::TC_CLASSID)
        || in_u32(off, skb::DATA)
        || in_u32(off, skb::DATA_META)
        || in_u32(off, skb::DATA_END)
        || (skb::FAMILY..skb::LOCAL_PORT_END).contains(&off)
        || in_u64(off, skb::TSTAMP)
        || in_u32(off, skb::WIRE_LEN)
        || in_u64(off, skb::HWTSTAMP);
    if denied || (write && !(skb::CB..skb::CB_END).contains(&off)) {
        return None;
    }
    skb_valid(off, size, write, CtxField::Scalar)
}

/// `tc_cls_act_is_valid_access`.
fn tc_access(off: i32, size: u32, write: bool) -> Option<CtxField> {
    if write {
        let writable = in_u32(off, skb::MARK)
            || in_u32(off, skb::TC_INDEX)
            || in_u32(off, skb::PRIORITY)
            || in_u32(off, skb::TC_CLASSID)
            || (skb::CB..skb::CB_END).contains(&off)
            || in_u64(off, skb::TSTAMP)
            || in_u32(off, skb::QUEUE_MAPPING);
        if !writable {
            return None;
        }
    }
    if (skb::FAMILY..skb::LOCAL_PORT_END).contains(&off) {
        return None;
    }
    if off == skb::TSTAMP_TYPE {
        return (size == 1).then_some(CtxField::Scalar);
    }
    skb_valid(off, size, write, skb_packet_field(off, true))
}

/// `cg_skb_is_valid_access`.
fn cg_skb_access(off: i32, size: u32, write: bool, bpf_capable: bool) -> Option<CtxField> {
    if in_u32(off, skb::TC_CLASSID) || in_u32(off, skb::DATA_META) || in_u32(off, skb::WIRE_LEN) {
        return None;
    }
    if (in_u32(off, skb::DATA) || in_u32(off, skb::DATA_END)) && !bpf_capable {
        return None;
    }
    if write {
        let writable = in_u32(off, skb::MARK)
            || in_u32(off, skb::PRIORITY)
            || (skb::CB..skb::CB_END).contains(&off)
            || (in_u64(off, skb::TSTAMP) && bpf_capable);
        if !writable {
            return None;
        }
    }
    skb_valid(off, size, write, skb_packet_field(off, false))
}

/// `xdp_is_valid_access` with `__is_valid_xdp_access` (no offloaded programs here).
fn xdp_access(off: i32, size: u32, write: bool, expected: AttachType) -> Option<CtxField> {
    // egress_ifindex is only for devmap programs.
    if expected != AttachType::XDP_DEVMAP && off == 20 {
        return None;
    }
    if write {
        return None;
    }
    if off < 0 || off >= XDP_MD_SIZE as i32 || size != 4 || off % 4 != 0 {
        return None;
    }
    Some(match off {
        0 => CtxField::PacketData,
        4 => CtxField::PacketEnd,
        8 => CtxField::PacketMeta,
        _ => CtxField::Scalar,
    })
}

/// `off % size == 0` and `[off, off + size)` inside `[lo, hi)`, read only.
fn plain_read(off: i32, size: u32, write: bool, lo: i32, hi: i32) -> Option<CtxField> {
    let s = size as i32;
    (!write && s > 0 && off >= lo && off < hi && off % s == 0).then_some(CtxField::Scalar)
}

/// `btf_ctx_access` for a struct_ops member, simplified: each argument is an 8-byte
/// slot read whole; a pointer to a struct becomes a trusted `PTR_TO_BTF_ID` (maybe
/// NULL for `__nullable` arguments), anything else a scalar.
fn struct_ops_access(btf: &Btf, proto: u32, off: i32, size: u32, write: bool) -> Option<CtxField> {
    if write || off < 0 || off % 8 != 0 {
        return None;
    }
    let (_, params) = btf.func_proto(proto).ok()?;
    let param = params.get((off / 8) as usize)?;
    let ty = btf.skip_modifiers(param.ty).ok()?;
    let pointee = match btf.ty(ty).ok().map(|t| &t.kind) {
        Some(TypeKind::Ptr { target }) => btf.skip_modifiers(*target).ok(),
        _ => None,
    };
    let is_struct = pointee
        .and_then(|p| btf.ty(p).ok())
        .is_some_and(|t| matches!(t.kind, TypeKind::Struct(_)));
    match (pointee, is_struct) {
        (Some(p), true) => {
            if size != 8 {
                return None;
            }
            let nullable = btf
                .name(param.name_off)
                .is_ok_and(|n| n.ends_with("__nullable"));
            Some(CtxField::BtfId {
                btf_id: p,
                maybe_null: nullable,
                trusted: true,
            })
        }
        _ => (size <= 8 && off % size as i32 == 0).then_some(CtxField::Scalar),
    }
}

/// What `prog_load` established about a program before verification: the facts the
/// verifier's questions are answered from.
pub(crate) struct LoadFacts<'a> {
    pub prog_type: ProgType,
    pub expected_attach_type: AttachType,
    /// `attach_btf_id` as submitted (for struct_ops, the ops struct in the host BTF).
    pub attach_btf_id: u32,
    /// The attach BTF and, for struct_ops, the member's `FUNC_PROTO` id in it.
    pub attach: Option<(&'a Btf, u32)>,
    pub caps: Capabilities,
    pub gpl_compatible: bool,
    pub sleepable: bool,
    /// The instructions as submitted (map references as descriptors or indices).
    pub insns: &'a [Insn],
    pub func_info: &'a [FuncInfo],
    pub used_maps: &'a [Arc<Map>],
    pub map_refs: &'a [(usize, MapRef)],
}

/// The verifier's view of one program being loaded into a [`Runtime`].
pub(crate) struct ProgEnv<'a> {
    rt: &'a Runtime,
    facts: &'a LoadFacts<'a>,
    /// The host BTF at load time.
    host: Option<Arc<Btf>>,
    /// `LD_IMM64` map references of the submitted instructions to `used_maps` indices.
    maps: HashMap<VMapRef, usize>,
    /// Host helpers registered for this program type, at load time.
    host_helpers: Vec<HelperProto>,
    /// The registered ops type a struct_ops program attaches to, when there is one.
    struct_ops: Option<crate::struct_ops::VerifierOps>,
}

impl<'a> ProgEnv<'a> {
    /// The environment of the program `facts` describe, loaded into `rt`.
    pub(crate) fn new(rt: &'a Runtime, facts: &'a LoadFacts<'a>) -> ProgEnv<'a> {
        let maps = map_indices(facts);
        let host_helpers: Vec<HelperProto> = rt
            .progs
            .helpers
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .filter(|h| h.prog_types.is_empty() || h.prog_types.contains(&facts.prog_type))
            .map(|h| h.proto)
            .collect();
        let struct_ops = (facts.prog_type == ProgType::STRUCT_OPS)
            .then(|| rt.struct_ops_find(facts.attach_btf_id))
            .flatten()
            .map(|t| {
                crate::struct_ops::VerifierOps::new(t, facts.caps)
                    .with_host_helpers(host_helpers.clone())
            });
        ProgEnv {
            rt,
            facts,
            host: rt.host_btf().map(|h| h.object().btf().clone()),
            maps,
            host_helpers,
            struct_ops,
        }
    }

    /// The verifier's description of a registered kfunc (see the module docs on
    /// `KF_TRUSTED_ARGS`).
    fn kfunc_desc(k: &Kfunc) -> KfuncDesc {
        let pairs = [
            (KfuncFlags::ACQUIRE, VKfuncFlags::ACQUIRE),
            (KfuncFlags::RELEASE, VKfuncFlags::RELEASE),
            (KfuncFlags::RET_NULL, VKfuncFlags::RET_NULL),
            (KfuncFlags::SLEEPABLE, VKfuncFlags::SLEEPABLE),
            (KfuncFlags::DESTRUCTIVE, VKfuncFlags::DESTRUCTIVE),
            (KfuncFlags::RCU, VKfuncFlags::RCU),
            (KfuncFlags::ITER_NEW, VKfuncFlags::ITER_NEW),
            (KfuncFlags::ITER_NEXT, VKfuncFlags::ITER_NEXT),
            (KfuncFlags::ITER_DESTROY, VKfuncFlags::ITER_DESTROY),
        ];
        let flags = pairs
            .iter()
            .filter(|(ours, _)| k.flags.contains(*ours))
            .fold(VKfuncFlags::TRUSTED_ARGS, |acc, (_, v)| acc.with(*v));
        KfuncDesc {
            name: k.name.clone(),
            btf_id: k.btf_id,
            flags,
        }
    }

    fn map_info(map: &Map) -> MapInfo {
        let flags = map.map_flags();
        let rdonly_prog = flags & BPF_F_RDONLY_PROG != 0;
        let frozen_value = (rdonly_prog
            && map.is_frozen()
            && map.map_type() == MapType::Array
            && map.max_entries() == 1)
            .then(|| {
                let guard = crate::read_lock();
                let p = map.lookup_ptr(&0u32.to_ne_bytes(), &guard)?;
                let len = map.value_size() as usize;
                // SAFETY: an array value of `value_size` bytes, alive while `guard` is
                // held; the map is frozen, so nothing writes it.
                Some(unsafe { std::slice::from_raw_parts(p.as_ptr(), len) }.to_vec())
            })
            .flatten();
        MapInfo {
            map_type: map.map_type().raw(),
            key_size: map.key_size(),
            value_size: map.value_size(),
            max_entries: map.max_entries(),
            flags,
            rdonly_prog,
            wronly_prog: flags & BPF_F_WRONLY_PROG != 0,
            frozen_value,
            name: map.name().to_owned(),
            direct_value: map.map_type() == MapType::Array,
        }
    }
}

/// The verifier's keys of a program's map references, to `used_maps` indices.
fn map_indices(facts: &LoadFacts<'_>) -> HashMap<VMapRef, usize> {
    let mut maps = HashMap::new();
    for &(pc, r) in facts.map_refs {
        let idx = match r {
            MapRef::Map { map } | MapRef::Value { map, .. } => map,
        };
        if let Some(key) = submitted_map_ref(facts.insns, pc) {
            maps.insert(key, idx);
        }
    }
    maps
}

/// A kernel-layout image of `map`'s struct (`struct bpf_array`, `struct bpf_htab`, ...
/// as the host BTF lays it out, [`structops_verifier::map_btf_struct_name`]): what a
/// program reading through the map's pointer sees. The runtime's maps are not kernel
/// structs, so the image holds what the kernel's would for the map's identity — in the
/// embedded `struct bpf_map`: `map_type`, `key_size`, `value_size`, `max_entries`,
/// `map_extra`, `map_flags`, `id`, `numa_node` (`NUMA_NO_NODE`), the BTF type ids and
/// `name`; in `struct bpf_array`: `elem_size` and `index_mask` — and zero everywhere
/// else: pointers (the runtime has no `ops`, `btf` or `inner_map_meta` objects to point
/// to), locks, counters and the map's internal state. `None` if the host BTF lacks the
/// struct.
pub fn map_image(btf: &Btf, map: &Map) -> Option<Vec<u8>> {
    let info = map.info();
    let sid = structops_verifier::map_btf_struct_name(info.map_type)
        .and_then(|n| btf.find_by_name_kind(n, structops_btf::Kind::Struct))?;
    let size = btf.size_of(sid).ok()? as usize;
    let mut image = vec![0u8; size];
    let (map_member, map_bits) = btf.member_by_name(sid, "map").ok()??;
    let base = (map_bits / 8) as usize;
    // Writes `bytes` into member `name` of the struct `id` at `at`, if its size matches.
    let put = |image: &mut Vec<u8>, id: u32, at: usize, name: &str, bytes: &[u8]| {
        let Ok(Some((m, bits))) = btf.member_by_name(id, name) else {
            return;
        };
        if btf.size_of(m.ty).ok() != Some(bytes.len() as u32) {
            return;
        }
        let o = at + (bits / 8) as usize;
        if let Some(dst) = image.get_mut(o..o + bytes.len()) {
            dst.copy_from_slice(bytes);
        }
    };
    let m = map_member.ty;
    put(
        &mut image,
        m,
        base,
        "map_type",
        &info.map_type.to_ne_bytes(),
    );
    put(
        &mut image,
        m,
        base,
        "key_size",
        &info.key_size.to_ne_bytes(),
    );
    put(
        &mut image,
        m,
        base,
        "value_size",
        &info.value_size.to_ne_bytes(),
    );
    put(
        &mut image,
        m,
        base,
        "max_entries",
        &info.max_entries.to_ne_bytes(),
    );
    put(
        &mut image,
        m,
        base,
        "map_extra",
        &info.map_extra.to_ne_bytes(),
    );
    put(
        &mut image,
        m,
        base,
        "map_flags",
        &info.map_flags.to_ne_bytes(),
    );
    put(&mut image, m, base, "id", &info.id.to_ne_bytes());
    put(&mut image, m, base, "numa_node", &(-1i32).to_ne_bytes());
    put(
        &mut image,
        m,
        base,
        "btf_key_type_id",
        &info.btf_key_type_id.to_ne_bytes(),
    );
    put(
        &mut image,
        m,
        base,
        "btf_value_type_id",
        &info.btf_value_type_id.to_ne_bytes(),
    );
    put(
        &mut image,
        m,
        base,
        "btf_vmlinux_value_type_id",
        &info.btf_vmlinux_value_type_id.to_ne_bytes(),
    );
    let mut name = [0u8; 16];
    let n = info.name.len().min(15);
    name[..n].copy_from_slice(&info.name.as_bytes()[..n]);
    put(&mut image, m, base, "name", &name);
    if structops_verifier::map_btf_struct_name(info.map_type) == Some("bpf_array") {
        // `array_map_alloc`: elements are 8-byte aligned; the index mask covers the
        // next power of two.
        let elem_size = info.value_size.next_multiple_of(8);
        let index_mask = info
            .max_entries
            .max(1)
            .checked_next_power_of_two()
            .map_or(u32::MAX, |p| p - 1);
        put(&mut image, sid, 0, "elem_size", &elem_size.to_ne_bytes());
        put(&mut image, sid, 0, "index_mask", &index_mask.to_ne_bytes());
    }
    Some(image)
}

/// After verification: each load through a map pointer the verifier accepted
/// ([`structops_verifier::VerifiedProgram::map_ptr_loads`]) becomes a move of the value
/// the map's kernel-layout image ([`map_image`]) holds at that offset, since the map
/// behind the pointer is known at load time and its struct is not a kernel struct here.
/// The move keeps the instruction count: `rD = imm` (sign-extended) when the value fits,
/// `wD = imm` (zero-extended) for other 32-bit values. `EINVAL`, with a log line, for
/// loads the runtime cannot give a fixed value: through an inner map (a map-of-maps
/// lookup result), through different maps on different paths, or of a 64-bit value
/// that fits neither move.
pub(crate) fn rewrite_map_ptr_loads(
    rt: &Runtime,
    facts: &LoadFacts<'_>,
    proof: &structops_verifier::VerifiedProgram,
    xlated: &mut [Insn],
    log: &mut String,
) -> Result<(), Errno> {
    if proof.map_ptr_loads().is_empty() {
        return Ok(());
    }
    let host = rt.host_btf().ok_or(Errno::EINVAL)?;
    let btf = host.btf();
    let maps = map_indices(facts);
    let mut refuse = |pc: usize, why: &str| {
        log.push_str(&format!(
            "structops: map pointer read at insn {pc}: {why}\n"
        ));
        Err(Errno::EINVAL)
    };
    for load in proof.map_ptr_loads() {
        let pc = load.pc;
        let [Some(r)] = load.maps.as_slice() else {
            return refuse(
                pc,
                "the map must be one map known at load time (not an inner map, not different maps on different paths)",
            );
        };
        let Some(map) = maps.get(r).and_then(|&i| facts.used_maps.get(i)) else {
            return refuse(pc, "unknown map");
        };
        let Some(image) = map_image(btf, map) else {
            return refuse(pc, "no kernel struct for the map in the host BTF");
        };
        let (Ok(off), Some(insn)) = (usize::try_from(load.off), xlated.get(pc).copied()) else {
            return refuse(pc, "bad load");
        };
        let Some(bytes) = image.get(off..off + load.size as usize) else {
            return refuse(pc, "outside the map's struct");
        };
        let mut w = [0u8; 8];
        w[..bytes.len()].copy_from_slice(bytes);
        let raw = u64::from_ne_bytes(w);
        // BPF_LDX | BPF_MEMSX sign-extends.
        let value = if insn.code & 0xe0 == 0x80 {
            let shift = 64 - 8 * load.size;
            (((raw << shift) as i64) >> shift) as u64
        } else {
            raw
        };
        let dst = insn.dst_reg();
        xlated[pc] = if let Ok(v) = i32::try_from(value as i64) {
            // BPF_ALU64 | BPF_MOV | BPF_K
            Insn::new(0xb7, dst, 0, 0, v)
        } else if let Ok(v) = u32::try_from(value) {
            // BPF_ALU | BPF_MOV | BPF_K: zero-extends.
            Insn::new(0xb4, dst, 0, 0, v as i32)
        } else {
            return refuse(pc, "a 64-bit value no move immediate holds");
        };
    }
    Ok(())
}

/// The verifier's key for the map reference of the `LD_IMM64` at `pc` as submitted.
fn submitted_map_ref(insns: &[Insn], pc: usize) -> Option<VMapRef> {
    let prog = Program::decode(insns.get(pc..pc + 2)?).ok()?;
    let (_, op) = prog.iter().next()?;
    match op {
        Op::LdImm64 { imm, .. } => match imm {
            Imm64::MapFd { fd } | Imm64::MapValue { fd, .. } => Some(VMapRef::Fd(fd)),
            Imm64::MapIdx { idx } | Imm64::MapIdxValue { idx, .. } => Some(VMapRef::Idx(idx)),
            _ => None,
        },
        _ => None,
    }
}

impl VerifierEnv for ProgEnv<'_> {
    fn host_btf(&self) -> Option<&Btf> {
        self.host.as_deref()
    }

    fn kfunc(&self, btf_id: u32) -> Option<KfuncDesc> {
        let table = self
            .rt
            .progs
            .kfuncs
            .read()
            .unwrap_or_else(|p| p.into_inner());
        table
            .get(btf_id)
            .filter(|k| k.allowed_for(self.facts.prog_type))
            .map(Self::kfunc_desc)
    }

    /// The struct_ops type registered for the host BTF struct `btf_id`
    /// ([`Runtime::struct_ops_find`]), as looked up when the environment was made.
    fn struct_ops_type(&self, btf_id: u32) -> Option<&dyn StructOpsType> {
        self.struct_ops
            .as_ref()
            .filter(|t| t.ops_type().type_id() == btf_id)
            .map(|t| t as &dyn StructOpsType)
    }

    fn map(&self, map: VMapRef) -> Option<MapInfo> {
        let idx = *self.maps.get(&map)?;
        self.facts.used_maps.get(idx).map(|m| Self::map_info(m))
    }

    fn inner_map(&self, map: VMapRef) -> Option<MapInfo> {
        let idx = *self.maps.get(&map)?;
        let t = self.facts.used_maps.get(idx)?.inner_template()?;
        // `bpf_map_meta_alloc` copies no name and makes no direct value address.
        Some(MapInfo {
            map_type: t.map_type.raw(),
            key_size: t.key_size,
            value_size: t.value_size,
            max_entries: t.max_entries,
            flags: t.map_flags,
            rdonly_prog: t.map_flags & BPF_F_RDONLY_PROG != 0,
            wronly_prog: t.map_flags & BPF_F_WRONLY_PROG != 0,
            frozen_value: None,
            name: String::new(),
            direct_value: false,
        })
    }

    fn helper(&self, id: i32) -> Option<HelperProto> {
        if let Some(p) = helpers::func_proto(self.facts.prog_type, id, self.facts.caps) {
            return Some(*p);
        }
        if helpers::builtin(id).is_some() {
            return None;
        }
        self.host_helpers.iter().find(|p| p.id == id).copied()
    }

    /// `arg<N>_btf_id` of a helper: what the struct_ops type that hands the helper out
    /// says ([`crate::StructOps::helper_arg_btf_id`]).
    fn helper_arg_btf_id(&self, helper: i32, arg: usize) -> Option<u32> {
        self.struct_ops
            .as_ref()
            .and_then(|t| t.helper_arg_btf_id(helper, arg))
    }

    fn helper_name(&self, id: i32) -> Option<String> {
        structops_isa::helper_name(id)
            .map(str::to_owned)
            .or_else(|| {
                self.host_helpers
                    .iter()
                    .find(|p| p.id == id)
                    .map(|p| format!("bpf_{}", p.name))
            })
    }

    fn ctx_access(&self, off: i32, size: u32, write: bool) -> Option<CtxField> {
        let b = self.facts;
        match b.prog_type {
            ProgType::XDP => xdp_access(off, size, write, b.expected_attach_type),
            ProgType::SOCKET_FILTER => sk_filter_access(off, size, write),
            ProgType::SCHED_CLS | ProgType::SCHED_ACT => tc_access(off, size, write),
            ProgType::CGROUP_SKB => cg_skb_access(off, size, write, b.caps.bpf()),
            ProgType::KPROBE => plain_read(off, size, write, 0, PT_REGS_SIZE)
                .filter(|_| off + size as i32 <= PT_REGS_SIZE),
            ProgType::TRACEPOINT => plain_read(off, size, write, 8, PERF_MAX_TRACE_SIZE),
            ProgType::RAW_TRACEPOINT | ProgType::RAW_TRACEPOINT_WRITABLE => {
                plain_read(off, size, write, 0, 8 * MAX_BPF_FUNC_ARGS)
            }
            ProgType::PERF_EVENT => {
                let f = plain_read(off, size, write, 0, PERF_EVENT_DATA_SIZE)?;
                if off >= PT_REGS_SIZE {
                    narrow_ok(size, 8).then_some(f)
                } else {
                    (size == 8).then_some(f)
                }
            }
            ProgType::SYSCALL => {
                let s = size as i32;
                (s > 0 && (0..i32::from(u16::MAX)).contains(&off) && off % s == 0)
                    .then_some(CtxField::Scalar)
            }
            ProgType::STRUCT_OPS => {
                let (btf, proto) = b.attach?;
                struct_ops_access(btf, proto, off, size, write)
            }
            _ => None,
        }
    }

    /// `xdp_convert_ctx_access` / `bpf_convert_ctx_access` for what this runtime's
    /// contexts need: the 32-bit uapi packet pointers (`data`, `data_end`,
    /// `data_meta` of `xdp_md` and `__sk_buff`) become 64-bit loads of the real
    /// pointers behind the uapi view ([`XdpBuff::DATA`] and friends, [`SkBuff::DATA`],
    /// [`SkBuff::DATA_END`]; an skb run has no metadata, so its `data_meta` is
    /// `data`), so packets may live anywhere in memory. Every other field the program
    /// may touch is the uapi struct itself, narrow loads included.
    fn convert_ctx_access(&self, a: &CtxAccess, insn: Insn) -> Option<Vec<Insn>> {
        if a.write || a.size != 4 || insn.code != LDX_MEM_W {
            return None;
        }
        let off = match (self.facts.prog_type, a.field) {
            (ProgType::XDP, CtxField::PacketData) => XdpBuff::DATA,
            (ProgType::XDP, CtxField::PacketEnd) => XdpBuff::DATA_END,
            (ProgType::XDP, CtxField::PacketMeta) => XdpBuff::DATA_META,
            (
                ProgType::SCHED_CLS | ProgType::SCHED_ACT | ProgType::CGROUP_SKB,
                CtxField::PacketData | CtxField::PacketMeta,
            ) => SkBuff::DATA,
            (
                ProgType::SCHED_CLS | ProgType::SCHED_ACT | ProgType::CGROUP_SKB,
                CtxField::PacketEnd,
            ) => SkBuff::DATA_END,
            _ => return None,
        };
        let off = i16::try_from(off).ok()?;
        Some(vec![Insn::new(
            LDX_MEM_DW,
            insn.dst_reg(),
            insn.src_reg(),
            off,
            0,
        )])
    }

    fn packet_access(&self) -> PacketAccess {
        match self.facts.prog_type {
            ProgType::SCHED_CLS | ProgType::SCHED_ACT | ProgType::XDP => PacketAccess::ReadWrite,
            ProgType::CGROUP_SKB => PacketAccess::Read,
            _ => PacketAccess::None,
        }
    }

    fn may_access_skb(&self) -> bool {
        matches!(
            self.facts.prog_type,
            ProgType::SOCKET_FILTER | ProgType::SCHED_CLS | ProgType::SCHED_ACT
        )
    }

    fn return_rule(&self) -> ReturnRule {
        let b = self.facts;
        match b.prog_type {
            ProgType::CGROUP_SKB if b.expected_attach_type == AttachType::CGROUP_INET_EGRESS => {
                ReturnRule::Range { min: 0, max: 3 }
            }
            ProgType::CGROUP_SKB
            | ProgType::CGROUP_SOCK
            | ProgType::SOCK_OPS
            | ProgType::CGROUP_DEVICE
            | ProgType::CGROUP_SYSCTL
            | ProgType::CGROUP_SOCKOPT => ReturnRule::Range { min: 0, max: 1 },
            ProgType::STRUCT_OPS => {
                let void = b
                    .attach
                    .and_then(|(btf, proto)| btf.func_proto(proto).ok())
                    .is_some_and(|(ret, _)| ret == 0);
                if void {
                    ReturnRule::Void
                } else {
                    ReturnRule::Any
                }
            }
            _ => ReturnRule::Any,
        }
    }
}

/// The struct_ops member a program implements, for the verifier: `Some` makes it take
/// the context, helpers, writable fields and return rule from the ops type that
/// [`ProgEnv::struct_ops_type`] finds. `prog_load` refuses struct_ops programs whose
/// `attach_btf_id` is not a type registered with [`Runtime::register_struct_ops`]
/// (`ENOTSUPP`, as the kernel), so for them this is always `Some`.
fn struct_ops_attach(env: &ProgEnv<'_>) -> Option<StructOpsAttach> {
    env.struct_ops.as_ref().map(|_| StructOpsAttach {
        btf_id: env.facts.attach_btf_id,
        member_idx: env.facts.expected_attach_type.0,
    })
}

/// What verification of one program produced.
pub(crate) type Verdict = Result<structops_verifier::VerifiedProgram, VerifyError>;

/// Runs the verifier on the program `facts` describe, loaded into `rt` (the kernel's
/// `bpf_check` after the structural passes `prog_load` made). The log at `log_level`
/// is appended to `log`; on rejection the error line is appended even at level 0, so
/// the caller always learns why.
pub(crate) fn verify(
    rt: &Runtime,
    facts: &LoadFacts<'_>,
    log_level: u32,
    log: &mut String,
) -> Verdict {
    let env = ProgEnv::new(rt, facts);
    let caps = facts.caps;
    let info = structops_verifier::ProgInfo {
        gpl_compatible: facts.gpl_compatible,
        sleepable: facts.sleepable,
        privileges: Privileges {
            bpf_capable: caps.bpf(),
            allow_ptr_leaks: caps.perfmon(),
            allow_uninit_stack: caps.perfmon(),
        },
        func_info: facts.func_info.iter().map(|f| f.insn_off).collect(),
        struct_ops: struct_ops_attach(&env),
    };
    let opts = LogOptions {
        level: log_level & 3,
        stats: log_level & 4 != 0,
    };
    let start = std::time::Instant::now();
    let verdict = structops_verifier::verify_with_limits(
        facts.insns,
        &info,
        &env,
        &opts,
        &rt.progs.verifier_limits,
    );
    let usec = start.elapsed().as_micros();
    let text = match &verdict {
        Ok(v) => v.log().to_owned(),
        Err(e) if e.log.is_empty() => format!("{}\n", e.message),
        Err(e) => e.log.clone(),
    };
    if opts.stats {
        log.push_str(&with_verification_time(&text, usec));
    } else {
        log.push_str(&text);
    }
    verdict
}

/// `print_verification_stats`: with `BPF_LOG_STATS`, `verification time N usec` comes
/// right before the final `processed ...` line (at the end when there is none).
fn with_verification_time(log: &str, usec: u128) -> String {
    let line = format!("verification time {usec} usec\n");
    let at = if log.starts_with("processed ") {
        Some(0)
    } else {
        log.rfind("\nprocessed ").map(|i| i + 1)
    };
    match at {
        Some(i) => format!("{}{line}{}", &log[..i], &log[i..]),
        None => format!("{log}{line}"),
    }
}

/// The errno a rejection makes `prog_load` return.
pub(crate) fn errno_of(e: &VerifyError) -> Errno {
    Errno(e.errno)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sk_buff_rules_follow_the_kernel() {
        // Socket filters: no packet pointers, cb[] writable, narrow reads of len.
        assert_eq!(sk_filter_access(0, 1, false), Some(CtxField::Scalar));
        assert_eq!(sk_filter_access(0, 8, false), None);
        assert_eq!(sk_filter_access(skb::DATA, 4, false), None);
        assert_eq!(
            sk_filter_access(skb::CB + 8, 8, true),
            Some(CtxField::Scalar)
        );
        assert_eq!(sk_filter_access(skb::CB + 16, 8, false), None);
        assert_eq!(sk_filter_access(skb::MARK, 4, true), None);
        // tc: packet pointers, writable mark, no writes to len, tstamp_type bytes only.
        assert_eq!(tc_access(skb::DATA, 4, false), Some(CtxField::PacketData));
        assert_eq!(
            tc_access(skb::DATA_END, 4, false),
            Some(CtxField::PacketEnd)
        );
        assert_eq!(
            tc_access(skb::DATA_META, 4, false),
            Some(CtxField::PacketMeta)
        );
        assert_eq!(tc_access(skb::DATA, 2, false), None);
        assert_eq!(tc_access(skb::MARK, 4, true), Some(CtxField::Scalar));
        assert_eq!(tc_access(0, 4, true), None);
        assert_eq!(
            tc_access(skb::TSTAMP_TYPE, 1, false),
            Some(CtxField::Scalar)
        );
        let sk = Some(CtxField::Sock {
            kind: SockPtr::SockCommon,
            maybe_null: true,
        });
        assert_eq!(tc_access(skb::SK, 8, false), sk);
        assert_eq!(sk_filter_access(skb::SK, 8, false), sk);
        assert_eq!(tc_access(skb::SK, 4, false), None);
        assert_eq!(tc_access(skb::SK, 8, true), None);
        assert_eq!(tc_access(SK_BUFF_SIZE as i32, 4, false), None);
        // cgroup skb: no data_meta, data only with CAP_BPF.
        assert_eq!(
            cg_skb_access(skb::DATA, 4, false, true),
            Some(CtxField::PacketData)
        );
        assert_eq!(cg_skb_access(skb::DATA, 4, false, false), None);
        assert_eq!(cg_skb_access(skb::DATA_META, 4, false, true), None);
    }

    #[test]
    fn verification_time_precedes_the_stats_line() {
        assert_eq!(
            with_verification_time("0: exit\nprocessed 1 insns\n", 7),
            "0: exit\nverification time 7 usec\nprocessed 1 insns\n"
        );
        assert_eq!(
            with_verification_time("processed 1 insns\n", 3),
            "verification time 3 usec\nprocessed 1 insns\n"
        );
        assert_eq!(with_verification_time("", 3), "verification time 3 usec\n");
    }

    #[test]
    fn xdp_md_rules_follow_the_kernel() {
        let x = AttachType(0);
        assert_eq!(xdp_access(0, 4, false, x), Some(CtxField::PacketData));
        assert_eq!(xdp_access(8, 4, false, x), Some(CtxField::PacketMeta));
        assert_eq!(xdp_access(12, 4, false, x), Some(CtxField::Scalar));
        assert_eq!(xdp_access(20, 4, false, x), None, "egress_ifindex");
        assert_eq!(
            xdp_access(20, 4, false, AttachType::XDP_DEVMAP),
            Some(CtxField::Scalar)
        );
        assert_eq!(xdp_access(12, 2, false, x), None);
        assert_eq!(xdp_access(12, 4, true, x), None);
        assert_eq!(xdp_access(24, 4, false, x), None);
    }
}
