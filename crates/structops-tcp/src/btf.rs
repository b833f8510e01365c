//! The host BTF: the [`crate::types`] structs, the `tcp_congestion_ops` value type, and a
//! `FUNC` for every kfunc the host exports (`KFUNCS`), with the kernel's prototypes.

use structops::struct_ops::add_value_type;
use structops_btf::{Btf, BtfTypes, Linkage, TypeId};

use crate::types::{
    AckSample, RateSample, Sock, TcpCaEvent, TcpCaState, TcpCongestionOps, TcpSock,
};

/// The argument shapes of the kfuncs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Proto {
    /// `void (struct sock *sk)`
    Void,
    /// `u32 (struct sock *sk)`
    U32,
    /// `void (struct sock *sk, u32 ack, u32 acked)`
    CongAvoid,
    /// `void (struct sock *sk, u8 new_state)`
    State,
    /// `void (struct sock *sk, enum tcp_ca_event ev)`
    Event,
    /// `void (struct sock *sk, u32 flags)`
    Flags,
    /// `void (struct sock *sk, const struct ack_sample *sample)`
    Acked,
    /// `void (struct sock *sk, u32 ack, int flag, const struct rate_sample *rs)`
    Control,
    /// `u32 (struct tcp_sock *tp, u32 acked)`
    SlowStart,
    /// `void (struct tcp_sock *tp, u32 w, u32 acked)`
    Ai,
}

/// The kfuncs the host exports, with their prototypes: the names
/// `structops::struct_ops::tcp_ca::KFUNCS` lists (those of `tcp_cong.c`, `tcp_cubic.c`,
/// `tcp_bbr.c` and `tcp_dctcp.c`).
const KFUNCS: &[(&str, Proto)] = &[
    ("tcp_reno_ssthresh", Proto::U32),
    ("tcp_reno_cong_avoid", Proto::CongAvoid),
    ("tcp_reno_undo_cwnd", Proto::U32),
    ("tcp_slow_start", Proto::SlowStart),
    ("tcp_cong_avoid_ai", Proto::Ai),
    ("cubictcp_init", Proto::Void),
    ("cubictcp_recalc_ssthresh", Proto::U32),
    ("cubictcp_cong_avoid", Proto::CongAvoid),
    ("cubictcp_state", Proto::State),
    ("cubictcp_cwnd_event", Proto::Event),
    ("cubictcp_acked", Proto::Acked),
    ("bbr_init", Proto::Void),
    ("bbr_main", Proto::Control),
    ("bbr_sndbuf_expand", Proto::U32),
    ("bbr_undo_cwnd", Proto::U32),
    ("bbr_cwnd_event", Proto::Event),
    ("bbr_ssthresh", Proto::U32),
    ("bbr_min_tso_segs", Proto::U32),
    ("bbr_set_state", Proto::State),
    ("dctcp_init", Proto::Void),
    ("dctcp_update_alpha", Proto::Flags),
    ("dctcp_cwnd_event", Proto::Event),
    ("dctcp_ssthresh", Proto::U32),
    ("dctcp_cwnd_undo", Proto::U32),
    ("dctcp_state", Proto::State),
];

/// The names of the kfuncs in the host BTF.
pub fn kfunc_names() -> impl Iterator<Item = &'static str> {
    KFUNCS.iter().map(|(n, _)| *n)
}

/// The host BTF of the TCP host. Its `tcp_congestion_ops` has Linux 6.18's members; the
/// socket structs have the fields [`crate::types`] documents.
pub fn host_btf() -> Btf {
    let mut t = BtfTypes::new();
    t.id_of::<TcpSock>();
    t.id_of::<TcpCaState>();
    let ops = t.id_of::<TcpCongestionOps>();
    let sk = t.id_of::<*mut Sock>();
    let tp = t.id_of::<*mut TcpSock>();
    let u32_ = t.id_of::<u32>();
    let u8_ = t.id_of::<u8>();
    let int = t.id_of::<i32>();
    let ev = t.id_of::<TcpCaEvent>();
    let sample = t.id_of::<*const AckSample>();
    let rs = t.id_of::<*const RateSample>();
    let mut protos: Vec<(Proto, TypeId)> = Vec::new();
    for &(name, p) in KFUNCS {
        let proto = match protos.iter().find(|(q, _)| *q == p) {
            Some(&(_, id)) => id,
            None => {
                let id = match p {
                    Proto::Void => t.func_proto(0, &[("sk", sk)]),
                    Proto::U32 => t.func_proto(u32_, &[("sk", sk)]),
                    Proto::CongAvoid => {
                        t.func_proto(0, &[("sk", sk), ("ack", u32_), ("acked", u32_)])
                    }
                    Proto::State => t.func_proto(0, &[("sk", sk), ("new_state", u8_)]),
                    Proto::Event => t.func_proto(0, &[("sk", sk), ("ev", ev)]),
                    Proto::Flags => t.func_proto(0, &[("sk", sk), ("flags", u32_)]),
                    Proto::Acked => t.func_proto(0, &[("sk", sk), ("sample", sample)]),
                    Proto::Control => {
                        t.func_proto(0, &[("sk", sk), ("ack", u32_), ("flag", int), ("rs", rs)])
                    }
                    Proto::SlowStart => t.func_proto(u32_, &[("tp", tp), ("acked", u32_)]),
                    Proto::Ai => t.func_proto(0, &[("tp", tp), ("w", u32_), ("acked", u32_)]),
                };
                protos.push((p, id));
                id
            }
        };
        t.builder_mut().add_func(name, proto, Linkage::Global);
    }
    let mut b = t.into_builder();
    // `ops` is a struct of `b`, so this cannot fail.
    let _ = add_value_type(&mut b, ops, "tcp_congestion_ops");
    b.build()
}

#[cfg(test)]
mod tests {
    use super::*;
    use structops::struct_ops::tcp_ca::{KFUNCS as KERNEL_KFUNCS, TcpCaRules};
    use structops_btf::Kind;

    #[test]
    fn the_host_btf_has_what_the_tcp_ca_rules_need() {
        let btf = host_btf();
        let rules = TcpCaRules::new(&btf).expect("sock, tcp_sock, writable fields, ops");
        assert_eq!(
            btf.find_by_name_kind("tcp_sock", Kind::Struct),
            Some(rules.tcp_sock_id())
        );
        let ops = btf
            .find_by_name_kind("tcp_congestion_ops", Kind::Struct)
            .unwrap();
        assert_eq!(
            btf.size_of(ops).unwrap() as usize,
            size_of::<TcpCongestionOps>()
        );
        assert_eq!(
            size_of::<TcpCongestionOps>(),
            152,
            "Linux 6.18's members, unaligned"
        );
        let (_, bit) = btf.member_by_name(ops, "init").unwrap().unwrap();
        assert_eq!(bit, 136 * 8, "init at the kernel's offset");
        assert!(
            btf.find_by_name_kind("bpf_struct_ops_tcp_congestion_ops", Kind::Struct)
                .is_some()
        );
        let icsk = btf
            .find_by_name_kind("inet_connection_sock", Kind::Struct)
            .unwrap();
        let (m, bit) = btf.member_by_name(icsk, "icsk_ca_state").unwrap().unwrap();
        assert_eq!(
            bit as usize,
            8 * std::mem::offset_of!(crate::types::InetConnectionSock, icsk_ca_bits)
        );
        assert_eq!(m.offset >> 24, 5, "a 5-bit bitfield");
        for name in KERNEL_KFUNCS {
            assert!(
                btf.find_by_name_kind(name, Kind::Func).is_some(),
                "kfunc {name}"
            );
        }
        assert_eq!(kfunc_names().count(), KERNEL_KFUNCS.len());
    }
}
