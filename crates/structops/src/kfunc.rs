//! kfuncs: host functions that programs call by BTF id (`BPF_PSEUDO_KFUNC_CALL`).
//!
//! The host registers a function under the name of a `FUNC` in its BTF (the runtime's
//! vmlinux, [`crate::Runtime::register_host_btf`]); the `FUNC`'s prototype is what the
//! verifier checks calls against, and its flags say how (the kernel's `KF_*` from
//! `include/linux/btf.h`). A program's call instruction carries the `FUNC`'s BTF id in
//! `imm` (libbpf resolves `__ksym` externs to it), which is how the runtime finds the
//! implementation while the program runs.

use std::collections::BTreeMap;
use std::fmt;
use std::ops::BitOr;

use structops_btf::{Btf, Kind, TypeId};
use structops_obj::ProgType;

use crate::errno::Errno;
use crate::helpers::HostFn;

/// kfunc flags (`KF_*`).
#[derive(Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct KfuncFlags(u32);

impl KfuncFlags {
    /// No flags.
    pub const NONE: KfuncFlags = KfuncFlags(0);
    /// `KF_ACQUIRE`: returns a referenced pointer the program must release.
    pub const ACQUIRE: KfuncFlags = KfuncFlags(1 << 0);
    /// `KF_RELEASE`: releases the referenced pointer it is passed.
    pub const RELEASE: KfuncFlags = KfuncFlags(1 << 1);
    /// `KF_RET_NULL`: the returned pointer may be NULL.
    pub const RET_NULL: KfuncFlags = KfuncFlags(1 << 2);
    /// `KF_TRUSTED_ARGS`: pointer arguments must be trusted.
    pub const TRUSTED_ARGS: KfuncFlags = KfuncFlags(1 << 4);
    /// `KF_SLEEPABLE`: may sleep; only sleepable programs may call it.
    pub const SLEEPABLE: KfuncFlags = KfuncFlags(1 << 5);
    /// `KF_DESTRUCTIVE`: has destructive side effects (needs `CAP_SYS_BOOT` in the
    /// kernel; here, `CAP_SYS_ADMIN`).
    pub const DESTRUCTIVE: KfuncFlags = KfuncFlags(1 << 6);
    /// `KF_RCU`: takes RCU-protected or trusted pointers.
    pub const RCU: KfuncFlags = KfuncFlags(1 << 7);

    /// The raw `KF_*` bits.
    pub const fn bits(self) -> u32 {
        self.0
    }

    /// The flags with raw `KF_*` bits `bits`.
    pub const fn from_bits(bits: u32) -> KfuncFlags {
        KfuncFlags(bits)
    }

    /// Does this set contain every flag of `other`?
    pub const fn contains(self, other: KfuncFlags) -> bool {
        self.0 & other.0 == other.0
    }
}

impl BitOr for KfuncFlags {
    type Output = KfuncFlags;
    fn bitor(self, rhs: KfuncFlags) -> KfuncFlags {
        KfuncFlags(self.0 | rhs.0)
    }
}

impl fmt::Debug for KfuncFlags {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let names = [
            (Self::ACQUIRE, "KF_ACQUIRE"),
            (Self::RELEASE, "KF_RELEASE"),
            (Self::RET_NULL, "KF_RET_NULL"),
            (Self::TRUSTED_ARGS, "KF_TRUSTED_ARGS"),
            (Self::SLEEPABLE, "KF_SLEEPABLE"),
            (Self::DESTRUCTIVE, "KF_DESTRUCTIVE"),
            (Self::RCU, "KF_RCU"),
        ];
        let mut set = f.debug_set();
        for (flag, name) in names {
            if self.contains(flag) {
                set.entry(&format_args!("{name}"));
            }
        }
        set.finish()
    }
}

/// A registered kfunc.
#[derive(Clone)]
pub struct Kfunc {
    /// Its name (the `FUNC`'s name in the host BTF).
    pub name: String,
    /// BTF id of the `FUNC` in the host BTF.
    pub btf_id: TypeId,
    /// BTF id of its `FUNC_PROTO`.
    pub proto_id: TypeId,
    /// Its flags.
    pub flags: KfuncFlags,
    /// Program types that may call it (the kernel's per-type kfunc sets); empty means
    /// every type.
    pub prog_types: Vec<ProgType>,
    /// The implementation.
    pub func: HostFn,
}

impl fmt::Debug for Kfunc {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Kfunc")
            .field("name", &self.name)
            .field("btf_id", &self.btf_id)
            .field("flags", &self.flags)
            .field("prog_types", &self.prog_types)
            .finish_non_exhaustive()
    }
}

impl Kfunc {
    /// May a program of `ty` call it?
    pub fn allowed_for(&self, ty: ProgType) -> bool {
        self.prog_types.is_empty() || self.prog_types.contains(&ty)
    }
}

/// The kfuncs a runtime knows, by BTF id.
#[derive(Debug, Default)]
pub(crate) struct KfuncTable {
    by_id: BTreeMap<TypeId, Kfunc>,
}

impl KfuncTable {
    /// Registers `name` from `host`: `ENOENT` if `host` has no `FUNC` of that name,
    /// `EINVAL` if its type is not a `FUNC_PROTO`, `EEXIST` if it is registered.
    pub(crate) fn register(
        &mut self,
        host: &Btf,
        name: &str,
        flags: KfuncFlags,
        prog_types: Vec<ProgType>,
        func: HostFn,
    ) -> Result<TypeId, Errno> {
        let btf_id = host
            .find_by_name_kind(name, Kind::Func)
            .ok_or(Errno::ENOENT)?;
        let proto_id = host
            .ty(btf_id)
            .ok()
            .and_then(|t| t.target())
            .filter(|&p| host.ty(p).is_ok_and(|t| t.kind() == Kind::FuncProto))
            .ok_or(Errno::EINVAL)?;
        if self.by_id.contains_key(&btf_id) {
            return Err(Errno::EEXIST);
        }
        self.by_id.insert(
            btf_id,
            Kfunc {
                name: name.to_string(),
                btf_id,
                proto_id,
                flags,
                prog_types,
                func,
            },
        );
        Ok(btf_id)
    }

    /// Removes the kfunc with `btf_id`; `ENOENT` if there is none.
    pub(crate) fn unregister(&mut self, btf_id: TypeId) -> Result<(), Errno> {
        self.by_id.remove(&btf_id).map(drop).ok_or(Errno::ENOENT)
    }

    pub(crate) fn get(&self, btf_id: TypeId) -> Option<&Kfunc> {
        self.by_id.get(&btf_id)
    }

    pub(crate) fn clear(&mut self) {
        self.by_id.clear();
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use structops_btf::{BtfBuilder, INT_SIGNED, Linkage};

    use super::*;

    #[test]
    fn register_by_name() {
        let mut b = BtfBuilder::new();
        let int = b.add_int("int", 4, INT_SIGNED);
        let proto = b.add_func_proto(int, &[("x", int)]);
        let f = b.add_func("host_double", proto, Linkage::Global);
        let btf = b.build();
        let mut t = KfuncTable::default();
        let func: HostFn = Arc::new(|_, args| Ok(args[0] * 2));
        assert_eq!(
            t.register(&btf, "nope", KfuncFlags::NONE, vec![], func.clone()),
            Err(Errno::ENOENT)
        );
        let id = t
            .register(
                &btf,
                "host_double",
                KfuncFlags::ACQUIRE | KfuncFlags::RET_NULL,
                vec![ProgType::XDP],
                func.clone(),
            )
            .unwrap();
        assert_eq!(id, f);
        assert_eq!(
            t.register(&btf, "host_double", KfuncFlags::NONE, vec![], func),
            Err(Errno::EEXIST)
        );
        let k = t.get(id).unwrap();
        assert_eq!(k.proto_id, proto);
        assert!(k.allowed_for(ProgType::XDP) && !k.allowed_for(ProgType::SCHED_CLS));
        assert_eq!(format!("{:?}", k.flags), "{KF_ACQUIRE, KF_RET_NULL}");
        assert_eq!(t.unregister(id), Ok(()));
        assert_eq!(t.unregister(id), Err(Errno::ENOENT));
    }
}
