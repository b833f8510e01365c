//! Capabilities the embedder grants, the analog of the kernel's `CAP_*` checks.

use std::fmt;
use std::ops::BitOr;

/// A set of capabilities, checked by privileged commands exactly where the kernel checks
/// the corresponding `CAP_*`.
///
/// As in the kernel's `bpf_token_capable`/`bpf_capable`, [`Capabilities::SYS_ADMIN`]
/// implies the others.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct Capabilities(u32);

impl Capabilities {
    /// No capabilities: an unprivileged caller.
    pub const NONE: Capabilities = Capabilities(0);
    /// `CAP_BPF`: privileged map types, BTF load, program load.
    pub const BPF: Capabilities = Capabilities(1 << 0);
    /// `CAP_PERFMON`: pointer leaks and tracing helpers.
    pub const PERFMON: Capabilities = Capabilities(1 << 1);
    /// `CAP_NET_ADMIN`: networking map types and program types.
    pub const NET_ADMIN: Capabilities = Capabilities(1 << 2);
    /// `CAP_SYS_ADMIN`: id iteration, `*_GET_FD_BY_ID`, `BPF_F_ZERO_SEED`; implies the rest.
    pub const SYS_ADMIN: Capabilities = Capabilities(1 << 3);
    /// Everything (what root has).
    pub const ALL: Capabilities = Capabilities(0b1111);

    /// Does this set contain every capability in `other`, literally (no implication)?
    pub fn contains(self, other: Capabilities) -> bool {
        self.0 & other.0 == other.0
    }

    /// The kernel's `capable(CAP_SYS_ADMIN)`.
    pub fn sys_admin(self) -> bool {
        self.contains(Self::SYS_ADMIN)
    }

    /// The kernel's `bpf_capable()`: `CAP_BPF` or `CAP_SYS_ADMIN`.
    pub fn bpf(self) -> bool {
        self.contains(Self::BPF) || self.sys_admin()
    }

    /// `perfmon_capable()`: `CAP_PERFMON` or `CAP_SYS_ADMIN`.
    pub fn perfmon(self) -> bool {
        self.contains(Self::PERFMON) || self.sys_admin()
    }

    /// `bpf_token_capable(NULL, CAP_NET_ADMIN)`: `CAP_NET_ADMIN` or `CAP_SYS_ADMIN`.
    pub fn net_admin(self) -> bool {
        self.contains(Self::NET_ADMIN) || self.sys_admin()
    }
}

impl BitOr for Capabilities {
    type Output = Capabilities;
    fn bitor(self, rhs: Capabilities) -> Capabilities {
        Capabilities(self.0 | rhs.0)
    }
}

impl fmt::Debug for Capabilities {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let names = [
            (Self::BPF, "CAP_BPF"),
            (Self::PERFMON, "CAP_PERFMON"),
            (Self::NET_ADMIN, "CAP_NET_ADMIN"),
            (Self::SYS_ADMIN, "CAP_SYS_ADMIN"),
        ];
        let mut set = f.debug_set();
        for (c, n) in names {
            if self.contains(c) {
                set.entry(&format_args!("{n}"));
            }
        }
        set.finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sys_admin_implies_others() {
        let admin = Capabilities::SYS_ADMIN;
        assert!(admin.bpf() && admin.perfmon() && admin.net_admin());
        let bpf = Capabilities::BPF;
        assert!(bpf.bpf() && !bpf.sys_admin() && !bpf.net_admin());
        assert!(!Capabilities::NONE.bpf());
        assert_eq!(
            format!("{:?}", Capabilities::BPF | Capabilities::NET_ADMIN),
            "{CAP_BPF, CAP_NET_ADMIN}"
        );
    }
}
