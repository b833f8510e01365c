//! kfuncs: host functions that programs call by BTF id (`BPF_PSEUDO_KFUNC_CALL`).
//!
//! The host registers a function under the name of a `FUNC` in its BTF (the runtime's
//! vmlinux, [`crate::Runtime::register_host_btf`]); the `FUNC`'s prototype is what the
//! verifier checks calls against, and its flags say how (the kernel's `KF_*` from
//! `include/linux/btf.h`). A program's call instruction carries the `FUNC`'s BTF id in
//! `imm` (libbpf resolves `__ksym` externs to it), which is how the runtime finds the
//! implementation while the program runs.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::ops::BitOr;
use std::sync::Arc;

use structops_btf::{Btf, Kind, TypeId};
use structops_obj::ProgType;

use structops_vm::{Caller, VmError};

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
    /// `KF_ITER_NEW`: constructs the open-coded iterator its first argument points
    /// to (a `struct bpf_iter_<type>` on the program's stack).
    pub const ITER_NEW: KfuncFlags = KfuncFlags(1 << 8);
    /// `KF_ITER_NEXT`: advances the iterator; returns NULL once it is drained, and
    /// keeps returning NULL.
    pub const ITER_NEXT: KfuncFlags = KfuncFlags(1 << 9);
    /// `KF_ITER_DESTROY`: destroys the iterator.
    pub const ITER_DESTROY: KfuncFlags = KfuncFlags(1 << 10);

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
            (Self::ITER_NEW, "KF_ITER_NEW"),
            (Self::ITER_NEXT, "KF_ITER_NEXT"),
            (Self::ITER_DESTROY, "KF_ITER_DESTROY"),
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
    /// Ids of the built-in kfuncs ([`builtins`]) bound to the current host BTF.
    builtin: BTreeSet<TypeId>,
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
        self.builtin.clear();
    }

    /// Binds the built-in kfuncs to `host`, the new host BTF: the previous host
    /// BTF's bindings go, and each built-in whose `FUNC` `host` has is registered
    /// for every program type (the kernel's common kfunc set). A kfunc the host
    /// registered itself under the same name stays.
    pub(crate) fn bind_builtins(&mut self, host: &Btf) {
        for id in std::mem::take(&mut self.builtin) {
            self.by_id.remove(&id);
        }
        for (name, flags, func) in builtins() {
            if let Ok(id) = self.register(host, name, flags, Vec::new(), func) {
                self.builtin.insert(id);
            }
        }
    }
}

/// `BPF_MAX_LOOPS`: the longest range `bpf_iter_num_new` accepts.
const BPF_MAX_LOOPS: i64 = 1 << 23;

/// The kfuncs every runtime offers when its host BTF declares them: the open-coded
/// number iterator (`kernel/bpf/bpf_iter.c`), which `bpf_for` and `bpf_repeat`
/// expand to.
fn builtins() -> Vec<(&'static str, KfuncFlags, HostFn)> {
    vec![
        (
            "bpf_iter_num_new",
            KfuncFlags::ITER_NEW,
            Arc::new(iter_num_new),
        ),
        (
            "bpf_iter_num_next",
            KfuncFlags::ITER_NEXT | KfuncFlags::RET_NULL,
            Arc::new(iter_num_next),
        ),
        (
            "bpf_iter_num_destroy",
            KfuncFlags::ITER_DESTROY,
            Arc::new(iter_num_destroy),
        ),
    ]
}

/// Stores an iterator's state: `struct bpf_iter_num_kern { int cur; int end; }`,
/// the 8 bytes of `struct bpf_iter_num` on the program's stack.
fn iter_num_store(caller: &mut Caller<'_>, it: u64, cur: i32, end: i32) -> Result<(), VmError> {
    let mut b = [0u8; 8];
    b[..4].copy_from_slice(&cur.to_ne_bytes());
    b[4..].copy_from_slice(&end.to_ne_bytes());
    caller.write(it, &b)
}

/// An `int` kfunc result as the program's `r0` sees it (the low 32 bits).
fn int_ret(v: i32) -> u64 {
    u64::from(v as u32)
}

/// `bpf_iter_num_new(it, start, end)`: iterates `start..end`; an empty range is
/// fine. `start > end` fails with `-EINVAL` and a range longer than
/// `BPF_MAX_LOOPS` with `-E2BIG`; a failed iterator is drained from the start.
fn iter_num_new(caller: &mut Caller<'_>, a: [u64; 5]) -> Result<u64, VmError> {
    let (it, start, end) = (a[0], a[1] as i32, a[2] as i32);
    let err = if start > end {
        Some(Errno::EINVAL)
    } else if i64::from(end) - i64::from(start) > BPF_MAX_LOOPS {
        Some(Errno::E2BIG)
    } else {
        None
    };
    match err {
        Some(e) => {
            iter_num_store(caller, it, 0, 0)?;
            Ok(int_ret(-e.0))
        }
        None => {
            // next() increments first, so it yields `start` first.
            iter_num_store(caller, it, start.wrapping_sub(1), end)?;
            Ok(0)
        }
    }
}

/// `bpf_iter_num_next(it)`: a pointer to the next value (the iterator's `cur`
/// field), or NULL once the range is done (and from then on).
fn iter_num_next(caller: &mut Caller<'_>, a: [u64; 5]) -> Result<u64, VmError> {
    let it = a[0];
    let mut b = [0u8; 8];
    caller.read(it, &mut b)?;
    let [c0, c1, c2, c3, e0, e1, e2, e3] = b;
    let cur = i32::from_ne_bytes([c0, c1, c2, c3]);
    let end = i32::from_ne_bytes([e0, e1, e2, e3]);
    // `cur + 1` wraps in 32 bits before the comparison, as in the kernel.
    if i64::from(cur.wrapping_add(1)) >= i64::from(end) {
        iter_num_store(caller, it, 0, 0)?;
        return Ok(0);
    }
    iter_num_store(caller, it, cur.wrapping_add(1), end)?;
    Ok(it)
}

/// `bpf_iter_num_destroy(it)`.
fn iter_num_destroy(caller: &mut Caller<'_>, a: [u64; 5]) -> Result<u64, VmError> {
    iter_num_store(caller, a[0], 0, 0)?;
    Ok(0)
}

#[cfg(test)]
mod tests {
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

    /// A host BTF with `pad` unrelated types first (so ids move between
    /// versions) and the number iterator's `FUNC`s.
    fn iter_btf(pad: usize, with_destroy: bool) -> Btf {
        let mut b = BtfBuilder::new();
        for i in 0..pad {
            b.add_int(&format!("pad{i}"), 4, 0);
        }
        let int = b.add_int("int", 4, INT_SIGNED);
        let it = b.add_struct("bpf_iter_num", 8, &[]);
        let it_ptr = b.add_ptr(it);
        let new = b.add_func_proto(int, &[("it", it_ptr), ("start", int), ("end", int)]);
        let int_ptr = b.add_ptr(int);
        let next = b.add_func_proto(int_ptr, &[("it", it_ptr)]);
        b.add_func("bpf_iter_num_new", new, Linkage::Global);
        b.add_func("bpf_iter_num_next", next, Linkage::Global);
        if with_destroy {
            let destroy = b.add_func_proto(0, &[("it", it_ptr)]);
            b.add_func("bpf_iter_num_destroy", destroy, Linkage::Global);
        }
        b.build()
    }

    #[test]
    fn builtins_follow_the_host_btf() {
        let mut t = KfuncTable::default();
        let v1 = iter_btf(0, true);
        t.bind_builtins(&v1);
        let id = |btf: &Btf, n: &str| btf.find_by_name_kind(n, Kind::Func).unwrap();
        let next1 = id(&v1, "bpf_iter_num_next");
        let k = t.get(next1).unwrap();
        assert_eq!(k.name, "bpf_iter_num_next");
        assert_eq!(k.flags, KfuncFlags::ITER_NEXT | KfuncFlags::RET_NULL);
        assert!(k.allowed_for(ProgType::XDP) && k.allowed_for(ProgType::STRUCT_OPS));
        assert_eq!(
            t.get(id(&v1, "bpf_iter_num_destroy")).unwrap().flags,
            KfuncFlags::ITER_DESTROY
        );
        // A new host BTF rebinds them: the old ids go, a missing FUNC is not offered.
        let v2 = iter_btf(3, false);
        t.bind_builtins(&v2);
        let next2 = id(&v2, "bpf_iter_num_next");
        assert_ne!(next1, next2);
        assert!(t.get(next1).is_none());
        assert_eq!(
            t.get(next2).unwrap().flags,
            KfuncFlags::ITER_NEXT | KfuncFlags::RET_NULL
        );
        assert_eq!(t.by_id.len(), 2);
        // A kfunc the host registered under a built-in's name stays its own.
        let mut t = KfuncTable::default();
        let own: HostFn = Arc::new(|_, _| Ok(7));
        let new1 = t
            .register(&v1, "bpf_iter_num_new", KfuncFlags::NONE, vec![], own)
            .unwrap();
        t.bind_builtins(&v1);
        assert_eq!(t.get(new1).unwrap().flags, KfuncFlags::NONE);
        assert!(t.get(next1).is_some());
    }
}
