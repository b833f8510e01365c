//! A verifier environment backed by the running kernel's BTF
//! (`/sys/kernel/btf/vmlinux`) with the kernel's two struct_ops types
//! described by their verifier hooks, as Linux 6.18 registers them:
//! `bpf_dummy_ops` (`net/bpf/bpf_dummy_struct_ops.c`) and
//! `tcp_congestion_ops` (`net/ipv4/bpf_tcp_ca.c`, kfuncs of
//! `tcp_cong.c`, `tcp_cubic.c`, `tcp_bbr.c`, `tcp_dctcp.c`).

use std::collections::HashMap;

use structops_btf::{Btf, Kind};
use structops_verifier::proto::{Arg, ArgType, HelperProto, Ret, RetType, TypeFlags};
use structops_verifier::{
    CtxField, HookError, KfuncDesc, KfuncFlags, MapInfo, MapRef, StructOpsType, VerifierEnv,
};

/// The running kernel's BTF, or why it is missing.
pub fn vmlinux() -> Result<Btf, String> {
    let bytes = std::fs::read("/sys/kernel/btf/vmlinux")
        .map_err(|e| format!("/sys/kernel/btf/vmlinux: {e}"))?;
    Btf::parse(&bytes).map_err(|e| format!("vmlinux BTF: {e}"))
}

fn struct_id(btf: &Btf, name: &str) -> Option<u32> {
    btf.find_by_name_kind(name, Kind::Struct)
}

/// `(byte offset, byte size)` of member path `a.b` in struct `s`.
pub fn member(btf: &Btf, s: &str, path: &str) -> Option<(u32, u32)> {
    let mut id = struct_id(btf, s)?;
    let mut bits = 0;
    let mut size = 0;
    for part in path.split('.') {
        let (m, off) = btf.member_by_name(id, part).ok()??;
        bits += off;
        id = m.ty;
        size = btf.size_of(m.ty).ok()?;
    }
    Some((bits / 8, size))
}

/// Member names of struct `id`, by index.
fn member_names(btf: &Btf, id: u32) -> Vec<String> {
    btf.ty(id)
        .ok()
        .and_then(|t| t.composite())
        .map(|c| {
            c.members
                .iter()
                .map(|m| btf.name(m.name_off).unwrap_or("").to_owned())
                .collect()
        })
        .unwrap_or_default()
}

fn member_off(btf: &Btf, id: u32, name: &str) -> Option<u32> {
    btf.member_by_name(id, name).ok()?.map(|(_, bits)| bits / 8)
}

const fn a(ty: ArgType) -> Arg {
    Arg::new(ty)
}

fn proto(id: i32, name: &'static str, ret: Ret, args: [Arg; 5]) -> HelperProto {
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

/// The helpers of `bpf_base_func_proto` that a privileged struct_ops
/// program can call, with the kernel's prototypes (the subset the corpus
/// and the cases use).
fn base_helper(id: i32) -> Option<HelperProto> {
    let d = Arg::DONTCARE;
    let map_value_or_null = Ret {
        ty: RetType::PtrToMapValue,
        flags: TypeFlags::PTR_MAYBE_NULL,
    };
    Some(match id {
        1 => proto(
            id,
            "map_lookup_elem",
            map_value_or_null,
            [a(ArgType::ConstMapPtr), a(ArgType::PtrToMapKey), d, d, d],
        ),
        2 => proto(
            id,
            "map_update_elem",
            Ret::INTEGER,
            [
                a(ArgType::ConstMapPtr),
                a(ArgType::PtrToMapKey),
                a(ArgType::PtrToMapValue),
                a(ArgType::Anything),
                d,
            ],
        ),
        3 => proto(
            id,
            "map_delete_elem",
            Ret::INTEGER,
            [a(ArgType::ConstMapPtr), a(ArgType::PtrToMapKey), d, d, d],
        ),
        5 => proto(id, "ktime_get_ns", Ret::INTEGER, [d; 5]),
        7 => proto(id, "get_prandom_u32", Ret::INTEGER, [d; 5]),
        8 => proto(id, "get_smp_processor_id", Ret::INTEGER, [d; 5]),
        118 => proto(id, "jiffies64", Ret::INTEGER, [d; 5]),
        125 => proto(id, "ktime_get_boot_ns", Ret::INTEGER, [d; 5]),
        160 => proto(id, "ktime_get_coarse_ns", Ret::INTEGER, [d; 5]),
        _ => return None,
    })
}

/// `bpf_dummy_ops`: no helpers, writes only into `bpf_dummy_ops_state`,
/// only `test_sleepable` may be sleepable.
pub struct DummyOps {
    state_id: u32,
    state_size: u32,
    sleepable_moff: u32,
    stub_moffs: Vec<u32>,
}

impl StructOpsType for DummyOps {
    fn name(&self) -> &str {
        "bpf_dummy_ops"
    }

    fn member_supported(&self, moff: u32) -> bool {
        self.stub_moffs.contains(&moff)
    }

    fn check_member(&self, _idx: u32, moff: u32, sleepable: bool) -> Result<(), i32> {
        if moff != self.sleepable_moff && sleepable {
            return Err(22);
        }
        Ok(())
    }

    fn struct_write(
        &self,
        _btf: &Btf,
        btf_id: u32,
        off: i32,
        size: u32,
    ) -> Option<Result<(), HookError>> {
        if btf_id != self.state_id {
            return Some(Err(HookError::eacces(
                "only access to bpf_dummy_ops_state is supported",
            )));
        }
        if i64::from(off) + i64::from(size) > i64::from(self.state_size) {
            return Some(Err(HookError::eacces(format!(
                "write access at off {off} with size {size}"
            ))));
        }
        Some(Ok(()))
    }

    fn helper(&self, _id: i32, _member_idx: u32) -> Option<HelperProto> {
        // bpf_dummy_verifier_ops has no get_func_proto.
        None
    }
}

/// `tcp_congestion_ops`: the `bpf_tcp_ca` verifier ops.
pub struct TcpCongOps {
    sock_id: u32,
    tcp_sock_id: u32,
    sock_common_id: u32,
    members: Vec<String>,
    stub_moffs: Vec<u32>,
    /// `(start, end)` byte ranges of tcp_sock a program may write: a write
    /// must start at `start` (or anywhere inside for `icsk_ca_priv`).
    writable: Vec<(u32, u32, bool)>,
}

impl StructOpsType for TcpCongOps {
    fn name(&self) -> &str {
        "tcp_congestion_ops"
    }

    fn member_supported(&self, moff: u32) -> bool {
        self.stub_moffs.contains(&moff)
    }

    fn struct_write(
        &self,
        _btf: &Btf,
        btf_id: u32,
        off: i32,
        size: u32,
    ) -> Option<Result<(), HookError>> {
        if btf_id != self.tcp_sock_id {
            return Some(Err(HookError::eacces("only read is supported")));
        }
        let Ok(o) = u32::try_from(off) else {
            return Some(Err(HookError::eacces(format!(
                "no write support to tcp_sock at off {off}"
            ))));
        };
        let hit = self
            .writable
            .iter()
            .find(|&&(start, end, range)| o == start || (range && o >= start && o < end));
        let Some(&(_, end, _)) = hit else {
            return Some(Err(HookError::eacces(format!(
                "no write support to tcp_sock at off {off}"
            ))));
        };
        if o + size > end {
            return Some(Err(HookError::eacces(format!(
                "write access at off {off} with size {size} beyond the member of tcp_sock ended at {end}"
            ))));
        }
        Some(Ok(()))
    }

    fn helper(&self, id: i32, member_idx: u32) -> Option<HelperProto> {
        let d = Arg::DONTCARE;
        let release = self
            .members
            .get(member_idx as usize)
            .is_some_and(|m| m == "release");
        let sk = Arg::new(ArgType::PtrToBtfId);
        Some(match id {
            116 => proto(
                id,
                "tcp_send_ack",
                Ret::INTEGER,
                [sk, a(ArgType::Anything), d, d, d],
            ),
            107 => proto(
                id,
                "sk_storage_get",
                Ret {
                    ty: RetType::PtrToMapValue,
                    flags: TypeFlags::PTR_MAYBE_NULL,
                },
                [
                    a(ArgType::ConstMapPtr),
                    // `bpf_sk_storage_get_proto`: ARG_PTR_TO_BTF_ID_SOCK_COMMON.
                    a(ArgType::PtrToBtfIdSockCommon),
                    Arg::with(ArgType::PtrToMapValue, TypeFlags::PTR_MAYBE_NULL),
                    a(ArgType::Anything),
                    d,
                ],
            ),
            108 => proto(
                id,
                "sk_storage_delete",
                Ret::INTEGER,
                [
                    a(ArgType::ConstMapPtr),
                    // `bpf_sk_storage_get_proto`: ARG_PTR_TO_BTF_ID_SOCK_COMMON.
                    a(ArgType::PtrToBtfIdSockCommon),
                    d,
                    d,
                    d,
                ],
            ),
            49 if !release => proto(
                id,
                "setsockopt",
                Ret::INTEGER,
                [
                    sk,
                    a(ArgType::Anything),
                    a(ArgType::Anything),
                    Arg::with(ArgType::PtrToMem, TypeFlags::MEM_RDONLY),
                    a(ArgType::ConstSize),
                ],
            ),
            57 if !release => proto(
                id,
                "getsockopt",
                Ret::INTEGER,
                [
                    sk,
                    a(ArgType::Anything),
                    a(ArgType::Anything),
                    Arg::with(
                        ArgType::PtrToMem,
                        TypeFlags::MEM_UNINIT.union(TypeFlags::MEM_WRITE),
                    ),
                    a(ArgType::ConstSize),
                ],
            ),
            49 | 57 => return None,
            _ => return base_helper(id),
        })
    }

    fn ctx_arg_btf_id(&self, btf_id: u32) -> u32 {
        if btf_id == self.sock_id {
            self.tcp_sock_id
        } else {
            btf_id
        }
    }
}

/// The kfuncs registered for `BPF_PROG_TYPE_STRUCT_OPS` by the TCP
/// congestion controls (no flags in their `BTF_ID_FLAGS`; 6.18 treats
/// their pointer arguments as trusted).
const TCP_KFUNCS: &[&str] = &[
    "tcp_reno_ssthresh",
    "tcp_reno_cong_avoid",
    "tcp_reno_undo_cwnd",
    "tcp_slow_start",
    "tcp_cong_avoid_ai",
    "cubictcp_init",
    "cubictcp_recalc_ssthresh",
    "cubictcp_cong_avoid",
    "cubictcp_state",
    "cubictcp_cwnd_event",
    "cubictcp_acked",
    "bbr_init",
    "bbr_main",
    "bbr_sndbuf_expand",
    "bbr_undo_cwnd",
    "bbr_cwnd_event",
    "bbr_ssthresh",
    "bbr_min_tso_segs",
    "bbr_set_state",
    "dctcp_init",
    "dctcp_update_alpha",
    "dctcp_cwnd_event",
    "dctcp_ssthresh",
    "dctcp_cwnd_undo",
    "dctcp_state",
];

/// The kernel's host facts for struct_ops programs, plus the maps of one load.
pub struct KernelOps {
    pub btf: Btf,
    dummy_id: u32,
    tcp_id: u32,
    dummy: DummyOps,
    tcp: TcpCongOps,
    kfuncs: HashMap<u32, KfuncDesc>,
    /// Maps by fd.
    pub maps: HashMap<i32, MapInfo>,
}

impl KernelOps {
    /// Describes the two ops types from the running kernel's BTF.
    pub fn new(btf: Btf) -> Result<KernelOps, String> {
        let need = |n: &str| struct_id(&btf, n).ok_or_else(|| format!("no struct {n}"));
        let dummy_id = need("bpf_dummy_ops")?;
        let tcp_id = need("tcp_congestion_ops")?;
        let state_id = need("bpf_dummy_ops_state")?;
        let state_size = btf.size_of(state_id).map_err(|e| e.to_string())?;
        let moff =
            |id: u32, n: &str| member_off(&btf, id, n).ok_or_else(|| format!("no member {n}"));
        let dummy = DummyOps {
            state_id,
            state_size,
            sleepable_moff: moff(dummy_id, "test_sleepable")?,
            stub_moffs: ["test_1", "test_2", "test_sleepable"]
                .iter()
                .map(|n| moff(dummy_id, n))
                .collect::<Result<_, _>>()?,
        };
        let stubbed = [
            "ssthresh",
            "cong_avoid",
            "set_state",
            "cwnd_event",
            "in_ack_event",
            "pkts_acked",
            "min_tso_segs",
            "cong_control",
            "undo_cwnd",
            "sndbuf_expand",
            "init",
            "release",
        ];
        let m = |s: &str, p: &str| member(&btf, s, p).ok_or_else(|| format!("no {s}.{p}"));
        let mut writable = Vec::new();
        for (s, p) in [
            ("sock", "sk_pacing_rate"),
            ("sock", "sk_pacing_status"),
            ("inet_connection_sock", "icsk_ack.pending"),
            ("tcp_sock", "snd_cwnd"),
            ("tcp_sock", "snd_cwnd_cnt"),
            ("tcp_sock", "snd_cwnd_stamp"),
            ("tcp_sock", "snd_ssthresh"),
            ("tcp_sock", "ecn_flags"),
            ("tcp_sock", "app_limited"),
        ] {
            let (o, sz) = m(s, p)?;
            writable.push((o, o + sz, false));
        }
        let (o, sz) = m("inet_connection_sock", "icsk_ca_priv")?;
        writable.push((o, o + sz, true));
        let tcp = TcpCongOps {
            sock_id: need("sock")?,
            tcp_sock_id: need("tcp_sock")?,
            sock_common_id: need("sock_common")?,
            members: member_names(&btf, tcp_id),
            stub_moffs: stubbed
                .iter()
                .map(|n| moff(tcp_id, n))
                .collect::<Result<_, _>>()?,
            writable,
        };
        let mut kfuncs = HashMap::new();
        for name in TCP_KFUNCS {
            if let Some(id) = btf.find_by_name_kind(name, Kind::Func) {
                kfuncs.insert(
                    id,
                    KfuncDesc {
                        name: (*name).to_owned(),
                        btf_id: id,
                        flags: KfuncFlags::TRUSTED_ARGS,
                    },
                );
            }
        }
        Ok(KernelOps {
            btf,
            dummy_id,
            tcp_id,
            dummy,
            tcp,
            kfuncs,
            maps: HashMap::new(),
        })
    }

    /// `(struct id, member index)` of `STRUCT.MEMBER` (`#N`: raw index).
    pub fn target(&self, s: &str, m: &str) -> Result<(u32, u32), String> {
        let id = struct_id(&self.btf, s).ok_or_else(|| format!("no struct {s}"))?;
        if let Some(n) = m.strip_prefix('#') {
            return n
                .parse()
                .map(|n| (id, n))
                .map_err(|_| format!("bad index {m}"));
        }
        member_names(&self.btf, id)
            .iter()
            .position(|x| x == m)
            .map(|i| (id, i as u32))
            .ok_or_else(|| format!("no member {m} in {s}"))
    }
}

impl VerifierEnv for KernelOps {
    fn map(&self, map: MapRef) -> Option<MapInfo> {
        match map {
            MapRef::Fd(fd) => self.maps.get(&fd).cloned(),
            MapRef::Idx(_) => None,
        }
    }

    fn helper(&self, id: i32) -> Option<HelperProto> {
        base_helper(id)
    }

    fn ctx_access(&self, _off: i32, _size: u32, _write: bool) -> Option<CtxField> {
        None
    }

    fn host_btf(&self) -> Option<&Btf> {
        Some(&self.btf)
    }

    fn struct_ops_type(&self, btf_id: u32) -> Option<&dyn StructOpsType> {
        if btf_id == self.dummy_id {
            Some(&self.dummy)
        } else if btf_id == self.tcp_id {
            Some(&self.tcp)
        } else {
            None
        }
    }

    fn kfunc(&self, btf_id: u32) -> Option<KfuncDesc> {
        self.kfuncs.get(&btf_id).cloned()
    }

    fn helper_arg_btf_id(&self, helper: i32, arg: usize) -> Option<u32> {
        match (helper, arg) {
            (116, 0) => Some(self.tcp.tcp_sock_id),
            (107 | 108, 1) | (49 | 57, 0) => Some(self.tcp.sock_common_id),
            _ => None,
        }
    }
}
