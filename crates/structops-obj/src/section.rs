//! libbpf's SEC() conventions: which program type, expected attach type and load flags a
//! section name implies (`section_defs[]` and `sec_def_matches` in libbpf 1.5).

use crate::types::{AttachType, ProgType, prog_flags};

/// No special handling.
const SEC_NONE: u32 = 0;
/// The expected attach type is dropped on kernels that do not know it.
pub const SEC_EXP_ATTACH_OPT: u32 = 1;
/// Legacy marker for `BPF_PROG_ATTACH`-style programs (unused by libbpf itself).
pub const SEC_ATTACHABLE: u32 = 2;
/// Both of the above.
const SEC_ATTACHABLE_OPT: u32 = SEC_ATTACHABLE | SEC_EXP_ATTACH_OPT;
/// The attach target is a BTF id named after the `/` of the section name.
pub const SEC_ATTACH_BTF: u32 = 4;
/// The program may sleep (`BPF_F_SLEEPABLE`).
pub const SEC_SLEEPABLE: u32 = 8;
/// The XDP program handles multi-buffer frames (`BPF_F_XDP_HAS_FRAGS`).
pub const SEC_XDP_FRAGS: u32 = 16;
/// USDT probes (uprobe-multi attach type when the kernel has it).
pub const SEC_USDT: u32 = 32;

/// One entry of libbpf's section table.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SecDef {
    /// The pattern: `"name"` (exact), `"name/"` (prefix) or `"name+"` (exact or
    /// `name/...`).
    pub pattern: &'static str,
    /// The program type it implies.
    pub prog_type: ProgType,
    /// The expected attach type it implies.
    pub expected_attach_type: AttachType,
    /// `SEC_*` flags.
    pub flags: u32,
}

impl SecDef {
    /// Does `sec_name` (already stripped of a leading `?`) match this entry, by libbpf's
    /// `sec_def_matches`?
    pub fn matches(&self, sec_name: &str) -> bool {
        let p = self.pattern;
        if let Some(prefix) = p.strip_suffix('+') {
            match sec_name.strip_prefix(prefix) {
                Some(rest) => rest.is_empty() || rest.starts_with('/'),
                None => false,
            }
        } else if p.ends_with('/') {
            sec_name.starts_with(p)
        } else {
            sec_name == p
        }
    }

    /// The `BPF_PROG_LOAD` flags libbpf's `libbpf_prepare_prog_load` adds for this
    /// section (sleepable, XDP frags).
    pub fn prog_flags(&self) -> u32 {
        let mut f = 0;
        if self.flags & SEC_SLEEPABLE != 0 {
            f |= prog_flags::SLEEPABLE;
        }
        if self.prog_type == ProgType::XDP && self.flags & SEC_XDP_FRAGS != 0 {
            f |= prog_flags::XDP_HAS_FRAGS;
        }
        f
    }
}

const fn def(
    pattern: &'static str,
    prog_type: ProgType,
    expected_attach_type: AttachType,
    flags: u32,
) -> SecDef {
    SecDef {
        pattern,
        prog_type,
        expected_attach_type,
        flags,
    }
}

/// libbpf 1.5's `section_defs[]`, in its order (the first match wins).
pub static SECTION_DEFS: &[SecDef] = &[
    def("socket", ProgType::SOCKET_FILTER, AttachType(0), SEC_NONE),
    def(
        "sk_reuseport/migrate",
        ProgType::SK_REUSEPORT,
        AttachType::SK_REUSEPORT_SELECT_OR_MIGRATE,
        SEC_ATTACHABLE,
    ),
    def(
        "sk_reuseport",
        ProgType::SK_REUSEPORT,
        AttachType::SK_REUSEPORT_SELECT,
        SEC_ATTACHABLE,
    ),
    def("kprobe+", ProgType::KPROBE, AttachType(0), SEC_NONE),
    def("uprobe+", ProgType::KPROBE, AttachType(0), SEC_NONE),
    def("uprobe.s+", ProgType::KPROBE, AttachType(0), SEC_SLEEPABLE),
    def("kretprobe+", ProgType::KPROBE, AttachType(0), SEC_NONE),
    def("uretprobe+", ProgType::KPROBE, AttachType(0), SEC_NONE),
    def(
        "uretprobe.s+",
        ProgType::KPROBE,
        AttachType(0),
        SEC_SLEEPABLE,
    ),
    def(
        "kprobe.multi+",
        ProgType::KPROBE,
        AttachType::TRACE_KPROBE_MULTI,
        SEC_NONE,
    ),
    def(
        "kretprobe.multi+",
        ProgType::KPROBE,
        AttachType::TRACE_KPROBE_MULTI,
        SEC_NONE,
    ),
    def(
        "kprobe.session+",
        ProgType::KPROBE,
        AttachType::TRACE_KPROBE_SESSION,
        SEC_NONE,
    ),
    def(
        "uprobe.multi+",
        ProgType::KPROBE,
        AttachType::TRACE_UPROBE_MULTI,
        SEC_NONE,
    ),
    def(
        "uretprobe.multi+",
        ProgType::KPROBE,
        AttachType::TRACE_UPROBE_MULTI,
        SEC_NONE,
    ),
    def(
        "uprobe.multi.s+",
        ProgType::KPROBE,
        AttachType::TRACE_UPROBE_MULTI,
        SEC_SLEEPABLE,
    ),
    def(
        "uretprobe.multi.s+",
        ProgType::KPROBE,
        AttachType::TRACE_UPROBE_MULTI,
        SEC_SLEEPABLE,
    ),
    def("ksyscall+", ProgType::KPROBE, AttachType(0), SEC_NONE),
    def("kretsyscall+", ProgType::KPROBE, AttachType(0), SEC_NONE),
    def("usdt+", ProgType::KPROBE, AttachType(0), SEC_USDT),
    def(
        "usdt.s+",
        ProgType::KPROBE,
        AttachType(0),
        SEC_USDT | SEC_SLEEPABLE,
    ),
    def(
        "tc/ingress",
        ProgType::SCHED_CLS,
        AttachType::TCX_INGRESS,
        SEC_NONE,
    ),
    def(
        "tc/egress",
        ProgType::SCHED_CLS,
        AttachType::TCX_EGRESS,
        SEC_NONE,
    ),
    def(
        "tcx/ingress",
        ProgType::SCHED_CLS,
        AttachType::TCX_INGRESS,
        SEC_NONE,
    ),
    def(
        "tcx/egress",
        ProgType::SCHED_CLS,
        AttachType::TCX_EGRESS,
        SEC_NONE,
    ),
    def("tc", ProgType::SCHED_CLS, AttachType(0), SEC_NONE),
    def("classifier", ProgType::SCHED_CLS, AttachType(0), SEC_NONE),
    def("action", ProgType::SCHED_ACT, AttachType(0), SEC_NONE),
    def(
        "netkit/primary",
        ProgType::SCHED_CLS,
        AttachType::NETKIT_PRIMARY,
        SEC_NONE,
    ),
    def(
        "netkit/peer",
        ProgType::SCHED_CLS,
        AttachType::NETKIT_PEER,
        SEC_NONE,
    ),
    def("tracepoint+", ProgType::TRACEPOINT, AttachType(0), SEC_NONE),
    def("tp+", ProgType::TRACEPOINT, AttachType(0), SEC_NONE),
    def(
        "raw_tracepoint+",
        ProgType::RAW_TRACEPOINT,
        AttachType(0),
        SEC_NONE,
    ),
    def("raw_tp+", ProgType::RAW_TRACEPOINT, AttachType(0), SEC_NONE),
    def(
        "raw_tracepoint.w+",
        ProgType::RAW_TRACEPOINT_WRITABLE,
        AttachType(0),
        SEC_NONE,
    ),
    def(
        "raw_tp.w+",
        ProgType::RAW_TRACEPOINT_WRITABLE,
        AttachType(0),
        SEC_NONE,
    ),
    def(
        "tp_btf+",
        ProgType::TRACING,
        AttachType::TRACE_RAW_TP,
        SEC_ATTACH_BTF,
    ),
    def(
        "fentry+",
        ProgType::TRACING,
        AttachType::TRACE_FENTRY,
        SEC_ATTACH_BTF,
    ),
    def(
        "fmod_ret+",
        ProgType::TRACING,
        AttachType::MODIFY_RETURN,
        SEC_ATTACH_BTF,
    ),
    def(
        "fexit+",
        ProgType::TRACING,
        AttachType::TRACE_FEXIT,
        SEC_ATTACH_BTF,
    ),
    def(
        "fentry.s+",
        ProgType::TRACING,
        AttachType::TRACE_FENTRY,
        SEC_ATTACH_BTF | SEC_SLEEPABLE,
    ),
    def(
        "fmod_ret.s+",
        ProgType::TRACING,
        AttachType::MODIFY_RETURN,
        SEC_ATTACH_BTF | SEC_SLEEPABLE,
    ),
    def(
        "fexit.s+",
        ProgType::TRACING,
        AttachType::TRACE_FEXIT,
        SEC_ATTACH_BTF | SEC_SLEEPABLE,
    ),
    def("freplace+", ProgType::EXT, AttachType(0), SEC_ATTACH_BTF),
    def("lsm+", ProgType::LSM, AttachType::LSM_MAC, SEC_ATTACH_BTF),
    def(
        "lsm.s+",
        ProgType::LSM,
        AttachType::LSM_MAC,
        SEC_ATTACH_BTF | SEC_SLEEPABLE,
    ),
    def(
        "lsm_cgroup+",
        ProgType::LSM,
        AttachType::LSM_CGROUP,
        SEC_ATTACH_BTF,
    ),
    def(
        "iter+",
        ProgType::TRACING,
        AttachType::TRACE_ITER,
        SEC_ATTACH_BTF,
    ),
    def(
        "iter.s+",
        ProgType::TRACING,
        AttachType::TRACE_ITER,
        SEC_ATTACH_BTF | SEC_SLEEPABLE,
    ),
    def("syscall", ProgType::SYSCALL, AttachType(0), SEC_SLEEPABLE),
    def(
        "xdp.frags/devmap",
        ProgType::XDP,
        AttachType::XDP_DEVMAP,
        SEC_XDP_FRAGS,
    ),
    def(
        "xdp/devmap",
        ProgType::XDP,
        AttachType::XDP_DEVMAP,
        SEC_ATTACHABLE,
    ),
    def(
        "xdp.frags/cpumap",
        ProgType::XDP,
        AttachType::XDP_CPUMAP,
        SEC_XDP_FRAGS,
    ),
    def(
        "xdp/cpumap",
        ProgType::XDP,
        AttachType::XDP_CPUMAP,
        SEC_ATTACHABLE,
    ),
    def("xdp.frags", ProgType::XDP, AttachType::XDP, SEC_XDP_FRAGS),
    def("xdp", ProgType::XDP, AttachType::XDP, SEC_ATTACHABLE_OPT),
    def("perf_event", ProgType::PERF_EVENT, AttachType(0), SEC_NONE),
    def("lwt_in", ProgType::LWT_IN, AttachType(0), SEC_NONE),
    def("lwt_out", ProgType::LWT_OUT, AttachType(0), SEC_NONE),
    def("lwt_xmit", ProgType::LWT_XMIT, AttachType(0), SEC_NONE),
    def(
        "lwt_seg6local",
        ProgType::LWT_SEG6LOCAL,
        AttachType(0),
        SEC_NONE,
    ),
    def(
        "sockops",
        ProgType::SOCK_OPS,
        AttachType::CGROUP_SOCK_OPS,
        SEC_ATTACHABLE_OPT,
    ),
    def(
        "sk_skb/stream_parser",
        ProgType::SK_SKB,
        AttachType::SK_SKB_STREAM_PARSER,
        SEC_ATTACHABLE_OPT,
    ),
    def(
        "sk_skb/stream_verdict",
        ProgType::SK_SKB,
        AttachType::SK_SKB_STREAM_VERDICT,
        SEC_ATTACHABLE_OPT,
    ),
    def(
        "sk_skb/verdict",
        ProgType::SK_SKB,
        AttachType::SK_SKB_VERDICT,
        SEC_ATTACHABLE_OPT,
    ),
    def("sk_skb", ProgType::SK_SKB, AttachType(0), SEC_NONE),
    def(
        "sk_msg",
        ProgType::SK_MSG,
        AttachType::SK_MSG_VERDICT,
        SEC_ATTACHABLE_OPT,
    ),
    def(
        "lirc_mode2",
        ProgType::LIRC_MODE2,
        AttachType::LIRC_MODE2,
        SEC_ATTACHABLE_OPT,
    ),
    def(
        "flow_dissector",
        ProgType::FLOW_DISSECTOR,
        AttachType::FLOW_DISSECTOR,
        SEC_ATTACHABLE_OPT,
    ),
    def(
        "cgroup_skb/ingress",
        ProgType::CGROUP_SKB,
        AttachType::CGROUP_INET_INGRESS,
        SEC_ATTACHABLE_OPT,
    ),
    def(
        "cgroup_skb/egress",
        ProgType::CGROUP_SKB,
        AttachType::CGROUP_INET_EGRESS,
        SEC_ATTACHABLE_OPT,
    ),
    def("cgroup/skb", ProgType::CGROUP_SKB, AttachType(0), SEC_NONE),
    def(
        "cgroup/sock_create",
        ProgType::CGROUP_SOCK,
        AttachType::CGROUP_INET_SOCK_CREATE,
        SEC_ATTACHABLE,
    ),
    def(
        "cgroup/sock_release",
        ProgType::CGROUP_SOCK,
        AttachType::CGROUP_INET_SOCK_RELEASE,
        SEC_ATTACHABLE,
    ),
    def(
        "cgroup/sock",
        ProgType::CGROUP_SOCK,
        AttachType::CGROUP_INET_SOCK_CREATE,
        SEC_ATTACHABLE_OPT,
    ),
    def(
        "cgroup/post_bind4",
        ProgType::CGROUP_SOCK,
        AttachType::CGROUP_INET4_POST_BIND,
        SEC_ATTACHABLE,
    ),
    def(
        "cgroup/post_bind6",
        ProgType::CGROUP_SOCK,
        AttachType::CGROUP_INET6_POST_BIND,
        SEC_ATTACHABLE,
    ),
    def(
        "cgroup/bind4",
        ProgType::CGROUP_SOCK_ADDR,
        AttachType::CGROUP_INET4_BIND,
        SEC_ATTACHABLE,
    ),
    def(
        "cgroup/bind6",
        ProgType::CGROUP_SOCK_ADDR,
        AttachType::CGROUP_INET6_BIND,
        SEC_ATTACHABLE,
    ),
    def(
        "cgroup/connect4",
        ProgType::CGROUP_SOCK_ADDR,
        AttachType::CGROUP_INET4_CONNECT,
        SEC_ATTACHABLE,
    ),
    def(
        "cgroup/connect6",
        ProgType::CGROUP_SOCK_ADDR,
        AttachType::CGROUP_INET6_CONNECT,
        SEC_ATTACHABLE,
    ),
    def(
        "cgroup/connect_unix",
        ProgType::CGROUP_SOCK_ADDR,
        AttachType::CGROUP_UNIX_CONNECT,
        SEC_ATTACHABLE,
    ),
    def(
        "cgroup/sendmsg4",
        ProgType::CGROUP_SOCK_ADDR,
        AttachType::CGROUP_UDP4_SENDMSG,
        SEC_ATTACHABLE,
    ),
    def(
        "cgroup/sendmsg6",
        ProgType::CGROUP_SOCK_ADDR,
        AttachType::CGROUP_UDP6_SENDMSG,
        SEC_ATTACHABLE,
    ),
    def(
        "cgroup/sendmsg_unix",
        ProgType::CGROUP_SOCK_ADDR,
        AttachType::CGROUP_UNIX_SENDMSG,
        SEC_ATTACHABLE,
    ),
    def(
        "cgroup/recvmsg4",
        ProgType::CGROUP_SOCK_ADDR,
        AttachType::CGROUP_UDP4_RECVMSG,
        SEC_ATTACHABLE,
    ),
    def(
        "cgroup/recvmsg6",
        ProgType::CGROUP_SOCK_ADDR,
        AttachType::CGROUP_UDP6_RECVMSG,
        SEC_ATTACHABLE,
    ),
    def(
        "cgroup/recvmsg_unix",
        ProgType::CGROUP_SOCK_ADDR,
        AttachType::CGROUP_UNIX_RECVMSG,
        SEC_ATTACHABLE,
    ),
    def(
        "cgroup/getpeername4",
        ProgType::CGROUP_SOCK_ADDR,
        AttachType::CGROUP_INET4_GETPEERNAME,
        SEC_ATTACHABLE,
    ),
    def(
        "cgroup/getpeername6",
        ProgType::CGROUP_SOCK_ADDR,
        AttachType::CGROUP_INET6_GETPEERNAME,
        SEC_ATTACHABLE,
    ),
    def(
        "cgroup/getpeername_unix",
        ProgType::CGROUP_SOCK_ADDR,
        AttachType::CGROUP_UNIX_GETPEERNAME,
        SEC_ATTACHABLE,
    ),
    def(
        "cgroup/getsockname4",
        ProgType::CGROUP_SOCK_ADDR,
        AttachType::CGROUP_INET4_GETSOCKNAME,
        SEC_ATTACHABLE,
    ),
    def(
        "cgroup/getsockname6",
        ProgType::CGROUP_SOCK_ADDR,
        AttachType::CGROUP_INET6_GETSOCKNAME,
        SEC_ATTACHABLE,
    ),
    def(
        "cgroup/getsockname_unix",
        ProgType::CGROUP_SOCK_ADDR,
        AttachType::CGROUP_UNIX_GETSOCKNAME,
        SEC_ATTACHABLE,
    ),
    def(
        "cgroup/sysctl",
        ProgType::CGROUP_SYSCTL,
        AttachType::CGROUP_SYSCTL,
        SEC_ATTACHABLE,
    ),
    def(
        "cgroup/getsockopt",
        ProgType::CGROUP_SOCKOPT,
        AttachType::CGROUP_GETSOCKOPT,
        SEC_ATTACHABLE,
    ),
    def(
        "cgroup/setsockopt",
        ProgType::CGROUP_SOCKOPT,
        AttachType::CGROUP_SETSOCKOPT,
        SEC_ATTACHABLE,
    ),
    def(
        "cgroup/dev",
        ProgType::CGROUP_DEVICE,
        AttachType::CGROUP_DEVICE,
        SEC_ATTACHABLE_OPT,
    ),
    def("struct_ops+", ProgType::STRUCT_OPS, AttachType(0), SEC_NONE),
    def(
        "struct_ops.s+",
        ProgType::STRUCT_OPS,
        AttachType(0),
        SEC_SLEEPABLE,
    ),
    def(
        "sk_lookup",
        ProgType::SK_LOOKUP,
        AttachType::SK_LOOKUP,
        SEC_ATTACHABLE,
    ),
    def(
        "netfilter",
        ProgType::NETFILTER,
        AttachType::NETFILTER,
        SEC_NONE,
    ),
];

/// The first section definition matching `sec_name` (libbpf's `find_sec_def` without
/// custom handlers), or `None`: libbpf then leaves the program type `UNSPEC` and fails
/// only when the program is loaded.
pub fn find_sec_def(sec_name: &str) -> Option<&'static SecDef> {
    SECTION_DEFS.iter().find(|d| d.matches(sec_name))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lookup(s: &str) -> Option<(ProgType, AttachType, u32)> {
        find_sec_def(s).map(|d| (d.prog_type, d.expected_attach_type, d.prog_flags()))
    }

    #[test]
    fn struct_ops_sections() {
        assert_eq!(
            lookup("struct_ops"),
            Some((ProgType::STRUCT_OPS, AttachType(0), 0))
        );
        assert_eq!(
            lookup("struct_ops/init"),
            Some((ProgType::STRUCT_OPS, AttachType(0), 0))
        );
        assert_eq!(
            lookup("struct_ops.s/x"),
            Some((ProgType::STRUCT_OPS, AttachType(0), prog_flags::SLEEPABLE))
        );
        // "struct_opsX" is neither exact nor followed by '/'.
        assert_eq!(lookup("struct_opsX"), None);
        assert_eq!(
            lookup("struct_ops.s"),
            Some((ProgType::STRUCT_OPS, AttachType(0), prog_flags::SLEEPABLE))
        );
    }

    #[test]
    fn common_sections() {
        assert_eq!(lookup("socket").map(|x| x.0), Some(ProgType::SOCKET_FILTER));
        assert_eq!(lookup("socket/1"), None);
        assert_eq!(
            lookup("kprobe/do_sys_open").map(|x| x.0),
            Some(ProgType::KPROBE)
        );
        assert_eq!(
            lookup("fentry/tcp_v4_rcv"),
            Some((ProgType::TRACING, AttachType::TRACE_FENTRY, 0))
        );
        assert_eq!(
            lookup("fexit/x").map(|x| x.1),
            Some(AttachType::TRACE_FEXIT)
        );
        assert_eq!(
            lookup("fmod_ret/x").map(|x| x.1),
            Some(AttachType::MODIFY_RETURN)
        );
        assert_eq!(
            lookup("tp/syscalls/sys_enter_open").map(|x| x.0),
            Some(ProgType::TRACEPOINT)
        );
        assert_eq!(
            lookup("raw_tp/sys_enter").map(|x| x.0),
            Some(ProgType::RAW_TRACEPOINT)
        );
        assert_eq!(
            lookup("tp_btf/x").map(|x| x.1),
            Some(AttachType::TRACE_RAW_TP)
        );
        assert_eq!(lookup("xdp"), Some((ProgType::XDP, AttachType::XDP, 0)));
        assert_eq!(
            lookup("xdp.frags"),
            Some((ProgType::XDP, AttachType::XDP, prog_flags::XDP_HAS_FRAGS))
        );
        assert_eq!(lookup("tc"), Some((ProgType::SCHED_CLS, AttachType(0), 0)));
        assert_eq!(
            lookup("tcx/ingress"),
            Some((ProgType::SCHED_CLS, AttachType::TCX_INGRESS, 0))
        );
        assert_eq!(lookup("classifier").map(|x| x.0), Some(ProgType::SCHED_CLS));
        assert_eq!(lookup("action").map(|x| x.0), Some(ProgType::SCHED_ACT));
        assert_eq!(
            lookup("cgroup_skb/egress").map(|x| x.1),
            Some(AttachType::CGROUP_INET_EGRESS)
        );
        assert_eq!(
            lookup("sockops").map(|x| x.1),
            Some(AttachType::CGROUP_SOCK_OPS)
        );
        assert_eq!(
            lookup("sk_skb/stream_parser").map(|x| x.1),
            Some(AttachType::SK_SKB_STREAM_PARSER)
        );
        assert_eq!(lookup("sk_skb").map(|x| x.1), Some(AttachType(0)));
        assert_eq!(lookup("sk_skb/other"), None);
        assert_eq!(
            lookup("sk_msg").map(|x| x.1),
            Some(AttachType::SK_MSG_VERDICT)
        );
        assert_eq!(
            lookup("sk_reuseport").map(|x| x.1),
            Some(AttachType::SK_REUSEPORT_SELECT)
        );
        assert_eq!(
            lookup("lsm/file_open"),
            Some((ProgType::LSM, AttachType::LSM_MAC, 0))
        );
        assert_eq!(
            lookup("lsm.s/file_open").map(|x| x.2),
            Some(prog_flags::SLEEPABLE)
        );
        assert_eq!(
            lookup("iter/task").map(|x| x.1),
            Some(AttachType::TRACE_ITER)
        );
        assert_eq!(
            lookup("syscall"),
            Some((ProgType::SYSCALL, AttachType(0), prog_flags::SLEEPABLE))
        );
        assert_eq!(lookup(".text"), None);
        assert_eq!(lookup("license"), None);
    }
}
