//! `tcp_congestion_ops`: the verifier side of the kernel's `net/ipv4/bpf_tcp_ca.c` (Linux
//! 6.18), for a host BTF that has the kernel's TCP types (`/sys/kernel/btf/vmlinux`).
//!
//! This mirrors `bpf_tcp_congestion_ops` and its `bpf_tcp_ca_verifier_ops` — what decides
//! whether a congestion-control program loads — without a TCP stack behind it:
//!
//! - **members** ([`STUBS`]): the function members with a `cfi_stubs` entry may be
//!   implemented; `get_info` may not (the kernel has no stub for it);
//! - **context** (`bpf_tcp_ca_is_valid_access`): a member's `struct sock *` argument is a
//!   trusted `struct tcp_sock *`;
//! - **writes** (`bpf_tcp_ca_btf_struct_access`): only through a `tcp_sock`, and only
//!   `sk_pacing_rate`, `sk_pacing_status`, `icsk_ca_priv` (anywhere inside),
//!   `icsk_ack.pending`, `snd_cwnd`, `snd_cwnd_cnt`, `snd_cwnd_stamp`, `snd_ssthresh`,
//!   `ecn_flags` and `app_limited`, each starting at the field;
//! - **helpers** (`bpf_tcp_ca_get_func_proto`): the base set, `ktime_get_coarse_ns`,
//!   `tcp_send_ack` (first argument a `tcp_sock`), `sk_storage_get`/`_delete` and, except
//!   in `release`, `setsockopt`/`getsockopt`. Those the runtime does not implement
//!   resolve to host helpers registered for struct_ops programs
//!   ([`crate::Runtime::register_helper`]), which a TCP host provides;
//! - **kfuncs** ([`KFUNCS`]): the names the kernel's congestion controls register for
//!   struct_ops programs (`tcp_cong.c`, `tcp_cubic.c`, `tcp_bbr.c`, `tcp_dctcp.c`); a
//!   host registers its implementations under these names ([`crate::Runtime::register_kfunc`]);
//! - **map updates**: `init_member` (`name`, `flags`) and `validate`
//!   (`tcp_validate_congestion_control`) as the kernel.
//!
//! There is no TCP host here, so [`TcpCongOps::reg`](StructOps::reg) refuses
//! (`EOPNOTSUPP`, as `bpf_dummy_ops` does): programs load and maps can be created, but a
//! table cannot be registered. The TCP host keeps these rules by building its own
//! [`StructOps`] on [`TcpCaRules`] (or wrapping [`TcpCongOps`]) and adding `reg`, `unreg`
//! and `update` on its congestion-control registry.

use std::sync::Arc;

use structops_btf::{Btf, Kind, TypeId};

use super::{Link, MemberInfo, OpsTable, OpsType, StructOps, StructOpsDesc};
use crate::errno::Errno;
use crate::runtime::Runtime;

/// The ops type's name.
pub const NAME: &str = "tcp_congestion_ops";

/// `TCP_CONG_MASK` (6.18: `TCP_CONG_NON_RESTRICTED | TCP_CONG_NEEDS_ECN |
/// TCP_CONG_NEEDS_ACCECN`): the flags a program's table may set.
pub const TCP_CONG_MASK: u32 = 0x7;

/// The function members with a `cfi_stubs` entry (`__bpf_ops_tcp_congestion_ops`).
pub const STUBS: &[&str] = &[
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

/// The kfuncs the kernel's congestion controls register for `BPF_PROG_TYPE_STRUCT_OPS`
/// (no `KF_*` flags in their `BTF_ID_FLAGS`; 6.18 treats their pointer arguments as
/// trusted).
pub const KFUNCS: &[&str] = &[
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

/// `BPF_FUNC_setsockopt`.
const FUNC_SETSOCKOPT: i32 = 49;
/// `BPF_FUNC_getsockopt`.
const FUNC_GETSOCKOPT: i32 = 57;
/// `BPF_FUNC_sk_storage_get`.
const FUNC_SK_STORAGE_GET: i32 = 107;
/// `BPF_FUNC_sk_storage_delete`.
const FUNC_SK_STORAGE_DELETE: i32 = 108;
/// `BPF_FUNC_tcp_send_ack`.
pub const FUNC_TCP_SEND_ACK: i32 = 116;
/// `BPF_FUNC_ktime_get_coarse_ns`.
const FUNC_KTIME_GET_COARSE_NS: i32 = 160;

/// One writable field of `tcp_sock`: writes start at `start` (anywhere in
/// `[start, end)` when `range`) and end by `end`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Writable {
    start: u32,
    end: u32,
    range: bool,
}

/// The facts `bpf_tcp_ca_init` and the verifier hooks take from the host BTF.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TcpCaRules {
    sock: TypeId,
    tcp_sock: TypeId,
    sock_common: TypeId,
    writable: Vec<Writable>,
    name_off: usize,
    flags_off: usize,
}

/// `(byte offset, byte size)` of member path `a.b` in struct `s` of `btf`.
fn member(btf: &Btf, s: &str, path: &str) -> Option<(u32, u32)> {
    let mut id = btf.find_by_name_kind(s, Kind::Struct)?;
    let (mut bits, mut size) = (0, 0);
    for part in path.split('.') {
        let (m, off) = btf.member_by_name(id, part).ok()??;
        bits += off;
        id = m.ty;
        size = btf.size_of(m.ty).ok()?;
    }
    Some((bits / 8, size))
}

impl TcpCaRules {
    /// `bpf_tcp_ca_init` plus the offsets the hooks use: `EINVAL` when `btf` lacks
    /// `sock`, `tcp_sock`, `sock_common`, `tcp_congestion_ops` or a writable field.
    pub fn new(btf: &Btf) -> Result<TcpCaRules, Errno> {
        let id = |n: &str| btf.find_by_name_kind(n, Kind::Struct).ok_or(Errno::EINVAL);
        let field = |s: &str, p: &str| member(btf, s, p).ok_or(Errno::EINVAL);
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
            let (start, size) = field(s, p)?;
            writable.push(Writable {
                start,
                end: start + size,
                range: false,
            });
        }
        let (start, size) = field("inet_connection_sock", "icsk_ca_priv")?;
        writable.push(Writable {
            start,
            end: start + size,
            range: true,
        });
        Ok(TcpCaRules {
            sock: id("sock")?,
            tcp_sock: id("tcp_sock")?,
            sock_common: id("sock_common")?,
            writable,
            name_off: field(NAME, "name")?.0 as usize,
            flags_off: field(NAME, "flags")?.0 as usize,
        })
    }

    /// `tcp_sock`'s id in the host BTF.
    pub fn tcp_sock_id(&self) -> TypeId {
        self.tcp_sock
    }

    /// `bpf_tcp_ca_btf_struct_access`: may a program write `size` bytes at `off` of
    /// host struct `btf_id`? `Err` carries the kernel's log line (`EACCES`).
    pub fn struct_write(&self, btf_id: u32, off: i32, size: u32) -> Result<(), String> {
        if btf_id != self.tcp_sock {
            return Err("only read is supported".to_string());
        }
        let hit = u32::try_from(off).ok().and_then(|o| {
            self.writable
                .iter()
                .find(|w| o == w.start || (w.range && o > w.start && o < w.end))
        });
        let Some(w) = hit else {
            return Err(format!("no write support to tcp_sock at off {off}"));
        };
        if i64::from(off) + i64::from(size) > i64::from(w.end) {
            return Err(format!(
                "write access at off {off} with size {size} beyond the member of tcp_sock ended at {}",
                w.end
            ));
        }
        Ok(())
    }

    /// `bpf_tcp_ca_get_func_proto`, as availability: the base set (the runtime's
    /// built-in helpers struct_ops programs may call), `ktime_get_coarse_ns`,
    /// `tcp_send_ack`, `sk_storage_get`/`_delete`, and `setsockopt`/`getsockopt`
    /// except in `release`.
    pub fn helper_allowed(&self, helper_id: i32, member: &MemberInfo) -> bool {
        match helper_id {
            FUNC_TCP_SEND_ACK
            | FUNC_SK_STORAGE_GET
            | FUNC_SK_STORAGE_DELETE
            | FUNC_KTIME_GET_COARSE_NS => true,
            FUNC_SETSOCKOPT | FUNC_GETSOCKOPT => member.name != "release",
            id => crate::helpers::builtin(id).is_some(),
        }
    }

    /// `arg1_btf_id` of `bpf_tcp_send_ack_proto` (`tcp_sock`) and of the socket
    /// helpers (`sock_common`, what `ARG_PTR_TO_BTF_ID_SOCK_COMMON` accepts).
    pub fn helper_arg_btf_id(&self, helper_id: i32, arg: usize) -> Option<u32> {
        match (helper_id, arg) {
            (FUNC_TCP_SEND_ACK, 0) => Some(self.tcp_sock),
            (FUNC_SK_STORAGE_GET | FUNC_SK_STORAGE_DELETE, 1)
            | (FUNC_SETSOCKOPT | FUNC_GETSOCKOPT, 0) => Some(self.sock_common),
            _ => None,
        }
    }

    /// `bpf_tcp_ca_is_valid_access`: a `struct sock *` argument is a `tcp_sock`.
    pub fn ctx_arg_btf_id(&self, btf_id: u32) -> u32 {
        if btf_id == self.sock {
            self.tcp_sock
        } else {
            btf_id
        }
    }

    /// `bpf_tcp_ca_init_member`: `flags` (only [`TCP_CONG_MASK`] bits) and `name`
    /// (`bpf_obj_name_cpy`: non-empty, NUL-terminated within 16 bytes, `[A-Za-z0-9_.]`)
    /// are copied from the user's data; other members are not handled.
    pub fn init_member(
        &self,
        member: &MemberInfo,
        kdata: &mut [u8],
        udata: &[u8],
    ) -> Result<bool, Errno> {
        match member.name.as_str() {
            "flags" => {
                let o = self.flags_off;
                let src = udata.get(o..o + 4).ok_or(Errno::EINVAL)?;
                let mut w = [0u8; 4];
                w.copy_from_slice(src);
                if u32::from_ne_bytes(w) & !TCP_CONG_MASK != 0 {
                    return Err(Errno::EINVAL);
                }
                kdata
                    .get_mut(o..o + 4)
                    .ok_or(Errno::EINVAL)?
                    .copy_from_slice(&w);
                Ok(true)
            }
            "name" => {
                let o = self.name_off;
                let src = udata.get(o..o + 16).ok_or(Errno::EINVAL)?;
                let end = src.iter().position(|&c| c == 0).ok_or(Errno::EINVAL)?;
                let valid = src[..end]
                    .iter()
                    .all(|&c| c.is_ascii_alphanumeric() || c == b'_' || c == b'.');
                if end == 0 || !valid {
                    return Err(Errno::EINVAL);
                }
                kdata
                    .get_mut(o..o + end)
                    .ok_or(Errno::EINVAL)?
                    .copy_from_slice(&src[..end]);
                Ok(true)
            }
            _ => Ok(false),
        }
    }

    /// The name a table's `kdata` holds (up to its NUL).
    pub fn name_of(&self, kdata: &[u8]) -> String {
        let n = kdata.get(self.name_off..self.name_off + 16).unwrap_or(&[]);
        let end = n.iter().position(|&c| c == 0).unwrap_or(n.len());
        String::from_utf8_lossy(&n[..end]).into_owned()
    }
}

/// `tcp_validate_congestion_control`: `ssthresh`, `undo_cwnd` and one of `cong_avoid`
/// or `cong_control` must be implemented.
pub fn validate(table: &OpsTable) -> Result<(), Errno> {
    let has = |n: &str| table.member_by_name(n).is_some();
    if !has("ssthresh") || !has("undo_cwnd") || !(has("cong_avoid") || has("cong_control")) {
        return Err(Errno::EINVAL);
    }
    Ok(())
}

/// `bpf_tcp_congestion_ops` without a TCP host: the verifier hooks and map-update
/// checks of [`TcpCaRules`]; `reg` refuses with `EOPNOTSUPP`.
#[derive(Debug)]
pub struct TcpCongOps {
    rules: TcpCaRules,
}

impl TcpCongOps {
    /// The callbacks for the host BTF `btf` (`EINVAL` as [`TcpCaRules::new`]).
    pub fn new(btf: &Btf) -> Result<TcpCongOps, Errno> {
        Ok(TcpCongOps {
            rules: TcpCaRules::new(btf)?,
        })
    }

    /// The rules.
    pub fn rules(&self) -> &TcpCaRules {
        &self.rules
    }
}

impl StructOps for TcpCongOps {
    /// `bpf_tcp_ca_init`: the BTF registered against must be the one the rules came
    /// from.
    fn init(&self, btf: &Btf) -> Result<(), Errno> {
        if TcpCaRules::new(btf)? != self.rules {
            return Err(Errno::EINVAL);
        }
        Ok(())
    }

    fn init_member(
        &self,
        member: &MemberInfo,
        kdata: &mut [u8],
        udata: &[u8],
    ) -> Result<bool, Errno> {
        self.rules.init_member(member, kdata, udata)
    }

    fn validate(&self, table: &OpsTable) -> Result<(), Errno> {
        validate(table)
    }

    /// No TCP host: a table cannot be registered.
    fn reg(&self, _: &Arc<OpsTable>, _: Option<&Link>) -> Result<(), Errno> {
        Err(Errno::EOPNOTSUPP)
    }

    fn unreg(&self, _: &Arc<OpsTable>, _: Option<&Link>) {}

    fn helper_allowed(&self, helper_id: i32, member: &MemberInfo) -> bool {
        self.rules.helper_allowed(helper_id, member)
    }

    fn helper_arg_btf_id(&self, _: &Btf, helper_id: i32, arg: usize) -> Option<u32> {
        self.rules.helper_arg_btf_id(helper_id, arg)
    }

    fn ctx_arg_btf_id(&self, _: &Btf, btf_id: u32) -> u32 {
        self.rules.ctx_arg_btf_id(btf_id)
    }

    fn struct_write(
        &self,
        _: &Btf,
        btf_id: u32,
        off: i32,
        size: u32,
    ) -> Option<Result<(), String>> {
        Some(self.rules.struct_write(btf_id, off, size))
    }
}

/// The registration of `tcp_congestion_ops` with callbacks `ops`: every function member
/// of the host BTF's struct that is not in [`STUBS`] is unsupported. `EINVAL` if `btf`
/// has no such struct.
pub fn desc(btf: &Btf, ops: Arc<dyn StructOps>) -> Result<StructOpsDesc, Errno> {
    let id = btf
        .find_by_name_kind(NAME, Kind::Struct)
        .ok_or(Errno::EINVAL)?;
    let c = btf
        .ty(id)
        .ok()
        .and_then(|t| t.composite())
        .ok_or(Errno::EINVAL)?;
    let mut d = StructOpsDesc::new(NAME, ops);
    for m in &c.members {
        let name = btf.name(m.name_off).unwrap_or("");
        let is_func = btf.func_ptr_proto(m.ty).ok().flatten().is_some();
        if is_func && !STUBS.contains(&name) {
            d = d.unsupported(name);
        }
    }
    Ok(d)
}

impl Runtime {
    /// Registers the `tcp_congestion_ops` twin without a TCP host ([`TcpCongOps`]):
    /// its types must be in the host BTF (vmlinux has them). Errors as
    /// [`Runtime::register_struct_ops`], and `EINVAL` without the TCP types.
    pub fn register_tcp_congestion_ops(&self) -> Result<Arc<OpsType>, Errno> {
        let host = self.host_btf().ok_or(Errno::EINVAL)?;
        let btf = host.btf();
        let ops = Arc::new(TcpCongOps::new(btf)?);
        self.register_struct_ops(desc(btf, ops)?)
    }
}
